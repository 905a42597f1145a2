"""bench_sync.py: LMTP delivery, initial replication and rolling latency.

1. LMTP delivery rate into a tandemd master (bench/workload.py messages,
   seed 1), on 1 connection and on 4 concurrent connections.
2. Initial sync: `tandem sync -A` of the delivered messages into an empty
   replica (a fresh tandemd each repetition): wall time, messages/s, MB/s,
   CPU seconds of the sync client and of the replica's tandemd tree.
3. Rolling latency: the master's tandemd runs the channel's sync client;
   200 messages delivered one at a time over LMTP (seeded pauses of 0-1 s
   as in the Cyrus reference run, shortened by BENCH_PAUSE_MAX); latency =
   LMTP 250 until the replica's mailbox has the new UID (read from its
   SQLite database every 2 ms).
4. Round trips and bytes per replicated APPEND (the client's counters).
Prints JSON lines. Sizes: BENCH_SYNC_N (default 1000).
"""
import json
import os
import random
import shutil
import smtplib
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
import workload  # noqa: E402
from benchlib import free_port, run, wait_port  # noqa: E402

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
BIN = os.path.join(TOP, os.environ.get("TANDEM_BIN", "bin"))	# another build: TANDEM_BIN=/path/bin
TANDEM = os.path.join(BIN, "tandem")
N = int(os.environ.get("BENCH_SYNC_N", "1000"))
REPS = int(os.environ.get("BENCH_REPS", "3"))
LAT_N = int(os.environ.get("BENCH_LAT_N", "200"))
PAUSE_MAX = float(os.environ.get("BENCH_PAUSE_MAX", "1.0"))
# "initial": only the initial sync (bench/run.sh's 10,000-message run)
ONLY = os.environ.get("BENCH_SYNC_ONLY", "")
# > 0: every message is this many MB (a base64 attachment) instead of the
# workload's 2-50 KB: shows the memory bodies take on both sides
BIG_MB = float(os.environ.get("BENCH_SYNC_BIG_MB", "0"))


def hwm_kb(pid):
    """Peak resident set (VmHWM) of a live process in kB, or 0."""
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class PeakSampler(threading.Thread):
    """The largest VmHWM seen among the children of a process (the replica's
    sessions), sampled every 20 ms until stopped: VmHWM only grows, so the
    last sample of a session is within 20 ms of its peak."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.peak, self.stop_ = pid, 0, threading.Event()

    def run(self):
        while not self.stop_.is_set():
            try:
                kids = [int(x) for x in open(f"/proc/{self.pid}/task/{self.pid}/children").read().split()]
            except OSError:
                kids = []
            for k in kids:
                self.peak = max(self.peak, hwm_kb(k))
            time.sleep(0.02)

    def finish(self):
        self.stop_.set()
        self.join()
        return self.peak


def run_peak(*args):
    """Runs a command; returns its peak resident set in kB: its VmHWM, read
    every 10 ms until it exits (VmHWM only grows). Not wait4's ru_maxrss,
    which counts the pages of this Python process the child had between
    fork and exec."""
    p = subprocess.Popen(list(args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    while True:
        pid, status, _ = os.wait4(p.pid, os.WNOHANG)
        if pid:
            break
        peak = max(peak, hwm_kb(p.pid))
        time.sleep(0.01)
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise RuntimeError(f"{args} failed: {p.stderr.read().decode()[-500:]}")
    return peak


def tree_cpu_split(pid):
    """(user, sys) CPU seconds, reaped children included, of a process and
    its live children. The user part is the steadier figure on this
    machine, where kernel time moves with other sessions' file deletions
    (bench_throughput.py's initial_sync: recently_deleted)."""
    tick = os.sysconf("SC_CLK_TCK")
    user = sys_ = 0.0
    pids = [pid]
    try:
        pids += [int(x) for x in open(f"/proc/{pid}/task/{pid}/children").read().split()]
    except OSError:
        pass
    for p in pids:
        try:
            f = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
            user += (int(f[11]) + int(f[13])) / tick
            sys_ += (int(f[12]) + int(f[14])) / tick
        except OSError:
            pass
    return user, sys_


def tree_cpu(pid):
    """CPU seconds (user+sys, incl. reaped children) of a process and its live children."""
    return sum(tree_cpu_split(pid))


class Inst:
    def __init__(self, root, name, extra):
        self.dir = os.path.join(root, name)
        run(TANDEM, "init", "--no-listen", "--servername", name, self.dir)
        self.conf = os.path.join(self.dir, "tandem.conf")
        text = open(self.conf).read().replace("admins: admin\n", "admins: admin repl\n")
        open(self.conf, "w").write(text + extra)
        self.proc = None

    def start(self, listen_port):
        self.proc = subprocess.Popen([os.path.join(BIN, "tandemd"), "-C", self.conf, "-f"],
                                     stdout=subprocess.DEVNULL, stderr=open(self.dir + ".log", "a"))
        wait_port(listen_port, self.proc)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(60)


def deliver_lmtp(p, msgs, conns):
    chunks = [msgs[i::conns] for i in range(conns)]

    def worker(chunk):
        l = smtplib.LMTP("127.0.0.1", p)
        for user, folder, data in chunk:
            l.sendmail("bench@example.net", [user + ("+" + folder if folder else "")], data)
        l.quit()

    t0 = time.monotonic()
    th = [threading.Thread(target=worker, args=(c,)) for c in chunks]
    for x in th:
        x.start()
    for x in th:
        x.join()
    return time.monotonic() - t0


def make_pair(root, lmtp_port, sync_port, extra_master=""):
    master = Inst(root, "master", f"lmtp_listen: 127.0.0.1:{lmtp_port}\nsync_authname: repl\nsync_password: replpw\n"
                                  "sync_log_channels: repl1\n"
                                  f"repl1_sync_host: 127.0.0.1:{sync_port}\n{extra_master}")
    replica = Inst(root, "replica", f"sync_listen: 127.0.0.1:{sync_port}\nallowplaintext: yes\n")
    run(TANDEM, "-C", replica.conf, "user", "add", "repl", input=b"replpw\n")
    for u in workload.USERS:
        run(TANDEM, "-C", master.conf, "user", "add", "--no-password", u)
        for f in workload.FOLDERS[1:]:
            run(TANDEM, "-C", master.conf, "mailbox", "create", f"user.{u}.{f}")
    return master, replica


def start_rolling_pair(root, extra=""):
    """make_pair with rolling replication at interval 0 (tandemd runs the
    client; extra: more master configuration), both started and given a
    second: (master, replica, the master's LMTP port)."""
    lp, sp = free_port(), free_port()
    master, replica = make_pair(root, lp, sp, "sync_log: yes\nsync_repeat_interval: 0\n" + extra)
    replica.start(sp)
    master.start(lp)
    time.sleep(1.0)
    return master, replica, lp


def big_message(i):
    import base64
    rnd = random.Random(i)
    raw = rnd.randbytes(int(BIG_MB * 1e6 * 3 / 4))
    b64 = base64.encodebytes(raw).replace(b"\n", b"\r\n")
    user = workload.USERS[i % len(workload.USERS)]
    return user, "", (f"From: big@example.net\r\nTo: {user}@example.com\r\nSubject: big {i}\r\n"
                      f"Message-ID: <big-{i}@example.net>\r\nMIME-Version: 1.0\r\n"
                      "Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
                      ).encode() + b64



def replicated_after(lmtp, dbpath, data, poll_s):
    """Seconds from LMTP-delivering data to user00 (lmtp: an open smtplib.LMTP)
    until the replica's user00 INBOX (dbpath: its meta.db, read-only) has a
    higher last_uid; 10 s at most."""
    db, before = None, None
    try:
        db = sqlite3.connect(f"file:{dbpath}?mode=ro", uri=True)
        before = db.execute("SELECT last_uid FROM mailboxes WHERE name='user.user00'").fetchone()[0]
    except (sqlite3.Error, TypeError):
        pass
    lmtp.sendmail("bench@example.net", ["user00"], data)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 10:
        try:
            if db is None:
                db = sqlite3.connect(f"file:{dbpath}?mode=ro", uri=True)
            now = db.execute("SELECT last_uid FROM mailboxes WHERE name='user.user00'").fetchone()[0]
            if before is None or now > before:
                break
        except (sqlite3.Error, TypeError):
            pass
        time.sleep(poll_s)
    waited = time.monotonic() - t0
    if db:
        db.close()
    return waited

def main():
    base = os.environ.get("BENCH_TMP", os.path.join(TOP, "build"))
    os.makedirs(base, exist_ok=True)
    msgs = [workload.message(1, i) for i in range(N)] if not BIG_MB else [big_message(i) for i in range(N)]
    total = sum(len(m[2]) for m in msgs)
    root = tempfile.mkdtemp(prefix="bench-sync-", dir=base)
    results = []
    try:
        lp, sp = free_port(), free_port()
        # sync_log off on the master while loading, so the initial sync is measured alone
        master, replica = make_pair(root, lp, sp, "sync_log: no\n")
        master.start(lp)
        rate1 = deliver_lmtp(lp, msgs[: N // 2], 1)
        rate4 = deliver_lmtp(lp, msgs[N // 2:], 4)
        master.stop()
        results.append({"bench": "lmtp", "messages_1conn": N // 2, "s_1conn": round(rate1, 3),
                        "msgs_per_s_1conn": round((N // 2) / rate1, 1), "messages_4conn": N - N // 2,
                        "s_4conn": round(rate4, 3), "msgs_per_s_4conn": round((N - N // 2) / rate4, 1)})
        if ONLY != "initial":
            print(json.dumps(results[-1]), flush=True)
        stored = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in
                     os.walk(os.path.join(master.dir, "spool")) for f in fs if len(f) == 40)
        walls, ccpu, rcpu, crss, rrss = [], [], [], [], []
        for _ in range(REPS):
            shutil.rmtree(os.path.join(replica.dir, "spool"))
            shutil.rmtree(os.path.join(replica.dir, "conf"))
            os.makedirs(os.path.join(replica.dir, "spool"))
            os.makedirs(os.path.join(replica.dir, "conf"))
            run(TANDEM, "-C", replica.conf, "user", "add", "repl", input=b"replpw\n")
            replica.start(sp)
            c0 = os.times()
            r0 = tree_cpu(replica.proc.pid)
            sampler = PeakSampler(replica.proc.pid)
            sampler.start()
            t0 = time.monotonic()
            crss.append(run_peak(TANDEM, "-C", master.conf, "sync", "-n", "repl1", "-o", "-A"))
            walls.append(time.monotonic() - t0)
            rrss.append(sampler.finish())
            c1 = os.times()
            ccpu.append(c1.children_user + c1.children_system - c0.children_user - c0.children_system)
            rcpu.append(tree_cpu(replica.proc.pid) - r0)
            cmp_ = subprocess.run([TANDEM, "-C", master.conf, "compare", "-n", "repl1", "-o"], capture_output=True)
            replica.stop()
            if cmp_.returncode != 0:
                raise RuntimeError("replica differs after initial sync: " + cmp_.stdout.decode()[-500:])
        med = statistics.median(walls)
        results.append({"bench": "initial_sync", "messages": N, "bytes": stored, "reps": REPS,
                         "wall_s": [round(w, 3) for w in walls], "median_wall_s": round(med, 3),
                         "msgs_per_s": round(N / med, 1), "mb_per_s": round(stored / med / 1e6, 2),
                         "client_cpu_s": round(statistics.median(ccpu), 3),
                         "replica_cpu_s": round(statistics.median(rcpu), 3),
                         "client_peak_rss_kb": crss, "replica_session_peak_rss_kb": rrss,
                         "message_mb": BIG_MB or None, "equal": True})
        print(json.dumps(results[-1]), flush=True)
        if ONLY == "initial":
            return
        # rolling latency: logging on, the master's tandemd runs the client
        text = open(master.conf).read().replace("sync_log: no\n", "sync_log: yes\n")
        open(master.conf, "w").write(text)
        replica.start(sp)
        master.start(lp)
        rng = random.Random(7)
        dbpath = os.path.join(replica.dir, "spool", "user", "user00", "meta.db")
        time.sleep(1.0)
        lat = []
        l = smtplib.LMTP("127.0.0.1", lp)
        for i in range(LAT_N):
            time.sleep(rng.random() * PAUSE_MAX)
            _, _, data = workload.message(2, i)
            lat.append(replicated_after(l, dbpath, data, 0.002))
        l.quit()
        lat.sort()
        logtext = open(master.dir + ".log").read()
        passes = [line for line in logtext.splitlines() if "event=sync_pass" in line]
        master.stop()
        replica.stop()
        q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))]
        results.append({"bench": "latency", "n": LAT_N, "pause_max_s": PAUSE_MAX, "p50_s": round(q(0.5), 4),
                        "p95_s": round(q(0.95), 4), "max_s": round(lat[-1], 4), "passes": len(passes)})
        print(json.dumps(results[-1]), flush=True)
        # round trips per APPEND: after one warm-up delivery (which fills the
        # client's sync cache), 10 deliveries each replicated by its own pass;
        # the client's counters per pass (commands sent, round trips waited
        # for, bytes sent)
        master.start(lp)
        replica.start(sp)
        time.sleep(1.0)
        msgs = [workload.message(3, k)[2] for k in range(11)]
        l = smtplib.LMTP("127.0.0.1", lp)
        l.sendmail("bench@example.net", ["user01"], msgs[0])
        time.sleep(1.0)
        n0 = open(master.dir + ".log").read().count("event=sync_pass")
        for k in range(1, 11):
            l.sendmail("bench@example.net", ["user01"], msgs[k])
            time.sleep(0.5)
        l.quit()
        lines = [x for x in open(master.dir + ".log").read().splitlines() if "event=sync_pass" in x][n0:]
        master.stop()
        replica.stop()
        def field(x, k):
            return int(x.split(k + "=")[1].split()[0])
        cmds = [field(x, "commands") for x in lines]
        rts = [field(x, "roundtrips") for x in lines]
        wire = [field(x, "bytes") for x in lines]
        sizes = [len(m) for m in msgs[1:]]
        results.append({"bench": "append_round_trips", "passes": len(lines),
                        "commands_per_append": statistics.median(cmds) if cmds else None,
                        "round_trips_per_append": statistics.median(rts) if rts else None,
                        "bytes_per_append": statistics.median(wire) if wire else None,
                        "message_bytes_median": statistics.median(sizes),
                        "note": "one pipelined write: APPLY MESSAGE, APPLY MAILBOX, RESTART"})
        print(json.dumps(results[-1]), flush=True)
    finally:
        for inst in ("master", "replica"):
            pass
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
