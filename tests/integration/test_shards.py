"""test_shards.py: a sharded channel (<channel>_sync_shards: 4).

The master's change log of channel "sh" is split by owner into
sync/sh/<k>/log (k = FNV-1a of the userid mod 4) and tandemd runs one
rolling sync client per shard. Deliveries to 20 users over LMTP in
parallel, plus IMAP changes (flags, a folder created, filled and renamed,
an expunge) reach a tandem replica; every shard carries lines; the
replica ends equal. A stopped shard client holds back only its own users;
killed, it is restarted by tandemd and catches up. `tandem status` shows
the shards. Last, a backlog logged while the replica was down is
replicated over 1 and over 4 shards (the speed-up of 4 shards over 1 is
measured by make bench: bench/bench_shards.py).
"""
import imaplib
import os
import re
import signal
import threading
import time

from tlib import Daemon, Pair, Suite, imap_oracle, make_message, wait_for

t = Suite("shards")
NSHARDS = 4
USERS = [f"user{i:02d}" for i in range(20)]


def fnv1a(s):
    h = 2166136261
    for b in s.encode():
        h ^= b
        h = (h * 16777619) & 0xFFFFFFFF
    return h


def shard_of(user, n=NSHARDS):
    return fnv1a(user) % n


def confdir(inst):
    return [l.split(":", 1)[1].strip() for l in open(inst.conf) if l.startswith("configdirectory:")][0]


def make_pair(shards):
    return Pair(channel="sh", extra_master=f"sh_sync_shards: {shards}\nsync_reconnect_minwait: 100ms\n"
                                           "sync_reconnect_maxwait: 300ms\n")


def wait_equal(pair, timeout=60, users=()):
    deadline = time.time() + timeout
    out = ""
    while time.time() < deadline:
        r = pair.master.run(["compare", "-n", "sh", "-o"] + list(users))
        out = r.stdout + r.stderr
        if r.returncode == 0:
            return True, out
        time.sleep(0.3)
    return False, out


def status(inst):
    return inst.ok(["status", "-n", "sh"])


def total_pending(inst):
    m = re.search(r"^channel=sh pending_lines=(\d+)", status(inst), re.M)
    return int(m.group(1)) if m else -1


class Lmtp:
    """A minimal LMTP client: one response per recipient after DATA
    (smtplib.LMTP reads only one, so it cannot do several transactions
    with several recipients on one connection)."""

    def __init__(self, port):
        import socket
        self.s = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.f = self.s.makefile("rb")
        self.reply()
        self.cmd("LHLO test.example")

    def reply(self):
        while True:
            line = self.f.readline().decode()
            if not line:
                raise RuntimeError("LMTP connection closed")
            if line[3:4] != "-":
                return line

    def cmd(self, line, want="2"):
        self.s.sendall(line.encode() + b"\r\n")
        r = self.reply()
        if not r.startswith(want):
            raise RuntimeError(f"LMTP {line!r}: {r.strip()}")
        return r

    def send(self, rcpts, msg):
        self.cmd("MAIL FROM:<s@example.net>")
        for u in rcpts:
            self.cmd(f"RCPT TO:<{u}>")
        self.cmd("DATA", "3")
        body = msg.replace(b"\r\n.", b"\r\n..")
        self.s.sendall(body + (b"" if body.endswith(b"\r\n") else b"\r\n") + b".\r\n")
        for u in rcpts:
            r = self.reply()
            if not r.startswith("2"):
                raise RuntimeError(f"LMTP delivery to {u}: {r.strip()}")

    def close(self):
        try:
            self.cmd("QUIT")
        finally:
            self.s.close()


def deliver_parallel(port, n_tx, rng, base, threads=4, rcpts_per_tx=None):
    """n_tx LMTP transactions, each to rcpts_per_tx users (all by default),
    over `threads` connections at once. Returns the errors."""
    errors = []
    msgs = [make_message(rng, base + i, 600) for i in range(n_tx)]

    def work(k):
        try:
            l = Lmtp(port)
            for i in range(k, n_tx, threads):
                users = USERS if not rcpts_per_tx else [USERS[(i + j) % len(USERS)] for j in range(rcpts_per_tx)]
                l.send(users, msgs[i])
            l.close()
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))
    ths = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for th in ths:
        th.start()
    for th in ths:
        th.join()
    return errors


def client_pids(d, shard):
    return re.findall(rf"event=sync_client_start channel=sh pid=(\d+) shard={shard}\b", d.log())


pair = make_pair(NSHARDS)
m = pair.master
d = None
try:
    t.check(len({shard_of(u) for u in USERS}) == NSHARDS, "the 20 users cover every shard")
    for u in USERS:
        m.ok(["user", "add", u], "pw\n")
    d = Daemon(m, services=("lmtp", "imap"))
    sync_dir = os.path.join(confdir(m), "sync", "sh")

    with t.case("tandemd starts one client per shard"):
        deadline = time.time() + 10
        while time.time() < deadline and not all(client_pids(d, k) for k in range(NSHARDS)):
            time.sleep(0.1)
        for k in range(NSHARDS):
            t.check(client_pids(d, k), f"client of shard {k} started")
        t.check(not client_pids(d, NSHARDS), "no fifth client")
        t.check("sh 4" in open(os.path.join(confdir(m), "sync", "channels")).read().split("\n"),
                "the published list carries the shard count")

    with t.case("parallel LMTP and IMAP changes reach the replica over 4 shards"):
        # hold the replica back a moment so the shard logs fill up
        pair.stop_replica()
        errs = deliver_parallel(d.port["lmtp"], 30, t.rng, 0, threads=5)
        t.eq(errs, [], "every delivery accepted")
        im_users = USERS[:6]
        for u in im_users:
            im = imaplib.IMAP4("127.0.0.1", d.port["imap"])
            im.login(u, "pw")
            im.create("INBOX.Work")
            im.append("INBOX.Work", "(\\Flagged)", None, make_message(t.rng, 900))
            im.select("INBOX")
            im.store("1:5", "+FLAGS", "(\\Seen)")
            im.store("6", "+FLAGS", "(\\Deleted)")
            im.expunge()
            im.rename("INBOX.Work", "INBOX.Archive")
            im.logout()
        seen = {}
        for k in range(NSHARDS):
            p = os.path.join(sync_dir, str(k))
            lines = ""
            for f in ("log", "log-run"):
                if os.path.exists(os.path.join(p, f)):
                    lines += open(os.path.join(p, f)).read()
            seen[k] = lines
            t.check(lines.strip() != "", f"shard {k}'s log has lines")
        # each line is in its owner's shard
        misplaced = []
        for k, text in seen.items():
            for line in text.splitlines():
                mm = re.match(r"(\w+) \"?(?:user\.)?([a-z0-9]+)", line)
                if mm and mm.group(2) in USERS and shard_of(mm.group(2)) != k:
                    misplaced.append((k, line))
        t.eq(misplaced, [], "lines in their owner's shard")
        t.check(not os.path.exists(os.path.join(sync_dir, "log")), "no unsharded log")
        st = status(m)
        t.check(re.search(r"^channel=sh pending_lines=\d+ shards=4", st, re.M), f"status total line: {st}")
        t.check(all(re.search(rf"^channel=sh shard={k} pending_lines=[1-9]", st, re.M) for k in range(NSHARDS)),
                f"status per shard: {st}")
        t.check(re.search(r"^channel=sh shard=0 oldest_pending_s=", st, re.M), "per-shard lag")
        pair.start_replica()
        ok, out = wait_equal(pair)
        t.check(ok, f"replica equals the master: {out[-800:]}")
        t.eq(total_pending(m), 0, "nothing pending")
        passes = {k: len(re.findall(rf"event=sync_pass channel=sh shard={k} ", d.log())) for k in range(NSHARDS)}
        t.check(all(passes.values()), f"every shard's client made passes: {passes}")

    with t.case("a stopped shard client holds back only its users; killed, it restarts and catches up"):
        victim = 2
        pid = int(client_pids(d, victim)[-1])
        os.kill(pid, signal.SIGSTOP)
        errs = deliver_parallel(d.port["lmtp"], 8, t.rng, 2000, threads=2)
        t.eq(errs, [], "deliveries accepted")
        others = [u for u in USERS if shard_of(u) != victim]
        mine = [u for u in USERS if shard_of(u) == victim]
        ok, out = wait_equal(pair, 30, others)
        t.check(ok, f"the other shards' users are equal: {out[-600:]}")
        st = status(m)
        t.check(re.search(rf"^channel=sh shard={victim} pending_lines=[1-9]", st, re.M),
                f"the stopped shard has pending lines: {st}")
        r = m.run(["compare", "-n", "sh", "-o"] + mine)
        t.check(r.returncode != 0, "its users are behind")
        os.kill(pid, signal.SIGKILL)
        deadline = time.time() + 15
        while time.time() < deadline and len(client_pids(d, victim)) < 2:
            time.sleep(0.1)
        t.check(re.search(rf"event=sync_client_exit channel=sh pid={pid} shard={victim} ", d.log()),
                "its exit is logged")
        t.check(len(client_pids(d, victim)) >= 2, "tandemd restarted it")
        t.eq([len(client_pids(d, k)) for k in range(NSHARDS) if k != victim], [1] * (NSHARDS - 1),
             "the other clients kept running")
        ok, out = wait_equal(pair, 30)
        t.check(ok, f"it caught up: {out[-600:]}")

    with t.case("failover status and the drain wait see every shard"):
        out = m.ok(["failover", "status"])
        t.check("channel=sh" in out, f"failover status: {out[-400:]}")

    d.stop()
    d = None

    with t.case("tandem sync -r -1 --shard K replicates one shard by hand"):
        for i, u in enumerate(USERS[:8]):
            m.ok(["deliver", u], make_message(t.rng, 900 + i))
        t.check(total_pending(m) > 0, "lines pending with no tandemd")
        for k in range(NSHARDS):
            r = m.run(["sync", "-n", "sh", "-o", "-r", "-1", "--shard", str(k)])
            t.eq(r.returncode, 0, f"shard {k} by hand: {r.stderr[-300:]}")
        t.eq(total_pending(m), 0, "every shard's log consumed")
        ok, out = wait_equal(pair, 20)
        t.check(ok, f"equal after the hand passes: {out[-400:]}")
        t.imap_equal(m, pair.replica, "after the hand passes", passwords={u: "pw" for u in USERS})
finally:
    if d:
        d.stop()
    pair.cleanup()


def backlog_run(shards, n_deliveries=200):
    """n_deliveries (LMTP, 20 recipients a transaction) logged while the
    replica was down, then replicated once it is back: (lines, every log
    consumed, equal), the compare output."""
    p = make_pair(shards)
    dd = None
    try:
        for u in USERS:
            p.master.ok(["user", "add", "--no-password", u])
        p.stop_replica()
        dd = Daemon(p.master, services=("lmtp",))
        errs = deliver_parallel(dd.port["lmtp"], n_deliveries // len(USERS), t.rng, 5000, threads=4)
        if errs:
            return None, errs
        lines = total_pending(p.master)
        p.start_replica()
        drained = True
        try:
            wait_for(lambda: total_pending(p.master) == 0, 300, f"{shards} shard(s) consuming their logs")
        except AssertionError as e:
            print(f"  {e}")
            drained = False
        ok, out = wait_equal(p, 60)
        ok2, out2 = imap_oracle(p.master, p.replica)
        return (lines, drained, ok and ok2), out + out2
    finally:
        if dd:
            dd.stop()
        p.cleanup()


with t.case("a backlog of 200 deliveries logged with the replica down: replicated over 1 and over 4 shards"):
    for n in (1, 4):
        r, out = backlog_run(n)
        t.check(r is not None, f"{n} shard(s): deliveries: {out}")
        if r:
            lines, drained, ok = r
            t.check(lines > 0, f"{n} shard(s): lines were pending while the replica was down ({lines})")
            t.check(drained, f"{n} shard(s): every shard's log consumed")
            t.check(ok, f"{n} shard(s): replica equal (tandem compare and the IMAP oracle): {str(out)[-400:]}")
t.done()
