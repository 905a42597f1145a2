"""bench_lmtp_rolling.py: LMTP delivery with rolling replication on, tandem
builds and Cyrus 3.6 side by side in one run (issue 12's LMTP goal).

  BENCH_BINS="/tmp/base-bin bin" python3 bench/bench_lmtp_rolling.py

For each repetition (BENCH_REPS, 3) and each connection count (BENCH_CONNS,
"8 1"), every contestant delivers BENCH_LMTP_N (1000) workload messages, in
an order that rotates between repetitions:
- each tandem build (BENCH_BINS, default "bin"): a fresh master + replica
  pair, `sync_log: yes`, `sync_repeat_interval: 0` (the master's tandemd runs
  the rolling client), as bench_throughput.py does;
- Cyrus 3.6 (when installed and root): one master with `sync_log: 1` and a
  rolling `sync_client -r` (`sync_repeat_interval: 0`) to a Cyrus replica,
  kept for the whole run (its mailboxes grow between repetitions).
Prints one JSON line per (contestant, connections) with the rates and
their median, the ratio to Cyrus, and for tandem the master's CPU per
message (tandemd's process tree: sessions and rolling client, from the
first delivery until the replica has them all). Not a test: nothing fails on a
number.

  BENCH_MODE=latency BENCH_BINS="..." python3 bench/bench_lmtp_rolling.py

Rolling latency under load (tandem builds only, alternating, BENCH_REPS
each): while background threads deliver BENCH_BG_RATE (200) msg/s to
user01..user09 (paced, over BENCH_BG_CONNS (4) connections), BENCH_LAT_N (100) deliveries to
user00 with random pauses of 0-0.2 s each wait until the replica's
user00 INBOX has them: p50/p95/max of LMTP 250 -> on the replica
(visible: the replica committed it), and of LMTP 250 -> acknowledged (the
master's change-log file that held its line is gone: the rolling client
removes a taken log only after the replica answered OK for all of it, so
this includes the replica's flush and the client's done). A delivery
whose line may be in the log or in the taken one waits for both
(conservative: up to one pass more).
"""
import json
import os
import random
import smtplib
import sqlite3
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "integration"))
import workload  # noqa: E402
import bench_sync  # noqa: E402
from benchlib import PacedLMTP, alternating, remove_later, remove_left  # noqa: E402
from bench_throughput import replica_count  # noqa: E402

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
N = int(os.environ.get("BENCH_LMTP_N", "1000"))
REPS = int(os.environ.get("BENCH_REPS", "3"))
CONNS = [int(x) for x in os.environ.get("BENCH_CONNS", "8 1").split()]
BINS = os.environ.get("BENCH_BINS", "bin").split()


def tandem_run(binpath, conns, msgs, base):
    bench_sync.BIN = os.path.join(TOP, binpath)
    bench_sync.TANDEM = os.path.join(bench_sync.BIN, "tandem")
    root = tempfile.mkdtemp(prefix="bench-lr-", dir=base)
    try:
        master, replica, lp = bench_sync.start_rolling_pair(root)
        cpu0 = bench_sync.tree_cpu(master.proc.pid)
        dt = bench_sync.deliver_lmtp(lp, msgs, conns)
        t0 = time.monotonic()
        while replica_count(replica) < len(msgs) and time.monotonic() - t0 < 120:
            time.sleep(0.05)
        behind = time.monotonic() - t0
        # the master's CPU (tandemd, its sessions and its rolling client)
        # per message, up to the replica having them all
        cpu = (bench_sync.tree_cpu(master.proc.pid) - cpu0) * 1000 / len(msgs)
        master.stop()
        replica.stop()
        return len(msgs) / dt, behind, cpu
    finally:
        remove_later(root)


class CyrusPair:
    def __init__(self, root):
        import cyrus
        from bench_cyrus import cyrus_create_user
        self.cr = cyrus.Cyrus(root, "cr", sync_server=True, admins="admin repl")
        self.cm = cyrus.Cyrus(root, "cm", sync_to=self.cr.sync_port)
        with open(self.cm.conf, "a") as f:
            f.write("sync_repeat_interval: 0\n")
        for u in workload.USERS:
            cyrus_create_user(self.cm, u)
            for folder in workload.FOLDERS[1:]:
                im = self.cm.imap()
                im.create(f"user.{u}.{folder}")
                im.setacl(f"user.{u}.{folder}", "anyone", "p")
                im.logout()
        r = self.cm.sync_client("-A", timeout=300)
        if r.returncode != 0:
            raise RuntimeError(f"Cyrus initial sync: {r.stderr}")
        self.client = subprocess.Popen(["setpriv", "--reuid=cyrus", "--regid=mail", "--init-groups",
                                        os.path.join(cyrus.LIBEXEC, "sync_client"), "-C", self.cm.conf, "-r"],
                                       cwd=self.cm.dir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def run(self, conns, msgs):
        return len(msgs) / bench_sync.deliver_lmtp(self.cm.lmtp_port, msgs, conns), None, None

    def stop(self):
        self.client.terminate()
        try:
            self.client.wait(10)
        except subprocess.TimeoutExpired:
            self.client.kill()
        # Cyrus's rolling sync_client detaches from setpriv: end the one
        # started with this master's config, by its pid
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                cmd = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
            except OSError:
                continue
            if cmd and cmd[0].endswith(b"/sync_client") and self.cm.conf.encode() in cmd:
                try:
                    os.kill(int(pid), 15)
                except OSError:
                    pass
        self.cm.stop()
        self.cr.stop()


def replicated_and_acked(lmtp, dbpath, chandir, data):
    """(visible s, acknowledged s) of one delivery to user00: LMTP 250 ->
    the replica's user00 INBOX has a higher last_uid; LMTP 250 -> every
    change-log file of the channel (chandir) that may hold its line has
    no name left (an open descriptor keeps its inode from being reused)."""
    db = sqlite3.connect(f"file:{dbpath}?mode=ro", uri=True)
    before = db.execute("SELECT last_uid FROM mailboxes WHERE name='user.user00'").fetchone()[0]
    lmtp.sendmail("bench@example.net", ["user00"], data)
    t0 = time.monotonic()
    fds = []
    for name in ("log", "log-run"):
        try:
            fd = os.open(os.path.join(chandir, name), os.O_RDONLY)
        except FileNotFoundError:
            continue
        if name == "log" and os.fstat(fd).st_size == 0:
            os.close(fd)	# the next log, made empty after our line was taken
            continue
        fds.append(fd)
    vis = ack = None
    while time.monotonic() - t0 < 10 and (vis is None or ack is None):
        now = time.monotonic() - t0
        if vis is None:
            try:
                if db.execute("SELECT last_uid FROM mailboxes WHERE name='user.user00'").fetchone()[0] > before:
                    vis = now
            except sqlite3.Error:
                pass
        if ack is None and all(os.fstat(fd).st_nlink == 0 for fd in fds):
            ack = now
        time.sleep(0.001)
    for fd in fds:
        os.close(fd)
    db.close()
    end = time.monotonic() - t0
    return (vis if vis is not None else end), (ack if ack is not None else end)


def latency_run(binpath, base, rep):
    bench_sync.BIN = os.path.join(TOP, binpath)
    bench_sync.TANDEM = os.path.join(bench_sync.BIN, "tandem")
    bg_rate = float(os.environ.get("BENCH_BG_RATE", "200"))
    lat_n = int(os.environ.get("BENCH_LAT_N", "100"))
    root = tempfile.mkdtemp(prefix="bench-lr-", dir=base)
    bg_conns = int(os.environ.get("BENCH_BG_CONNS", "4"))

    def bg_message(k, i):
        user, folder, data = workload.message(900 + rep, k * 100000 + i)
        return ("user01" if user == "user00" else user), folder, data

    bg = None
    try:
        master, replica, lp = bench_sync.start_rolling_pair(root)
        dbpath = os.path.join(replica.dir, "spool", "user", "user00", "meta.db")
        chandir = os.path.join(master.dir, "conf", "sync", "repl1")
        rng = random.Random(11 + rep)
        bg = PacedLMTP(lp, bg_conns, bg_rate, bg_message)
        bg.start()
        time.sleep(1.0)
        lat, acked = [], []
        l = smtplib.LMTP("127.0.0.1", lp)
        for i in range(lat_n):
            time.sleep(rng.random() * 0.2)
            _, _, data = workload.message(950 + rep, i)
            vis, ack = replicated_and_acked(l, dbpath, chandir, data)
            lat.append(vis)
            acked.append(ack)
        l.quit()
        sent, wall = bg.stop()
        master.stop()
        replica.stop()
        lat.sort()
        acked.sort()
        q = lambda v, p: round(v[min(len(v) - 1, int(p * len(v)))] * 1000, 1)  # noqa: E731
        return {"p50_ms": q(lat, 0.5), "p95_ms": q(lat, 0.95), "max_ms": q(lat, 1),
                "ack_p50_ms": q(acked, 0.5), "ack_p95_ms": q(acked, 0.95), "ack_max_ms": q(acked, 1),
                "bg_msgs_per_s": round(sent / wall, 1)}
    finally:
        if bg:
            bg.halt.set()
        remove_later(root)


def latency_main(base):
    res = alternating(BINS, REPS, lambda b, rep: latency_run(b, base, rep))
    for b in BINS:
        out = {"bench": "rolling_latency_under_load", "who": b, "runs": res[b]}
        for k in ("p50_ms", "p95_ms", "max_ms", "ack_p50_ms", "ack_p95_ms", "ack_max_ms", "bg_msgs_per_s"):
            out["median_" + k] = round(statistics.median(r[k] for r in res[b]), 1)
        print(json.dumps(out), flush=True)


def main():
    base = os.environ.get("BENCH_TMP", os.path.join(TOP, "build"))
    if os.environ.get("BENCH_MODE") == "latency":
        os.makedirs(base, exist_ok=True)
        try:
            latency_main(base)
        finally:
            remove_left()
        return
    os.makedirs(base, exist_ok=True)
    cy = None
    croot = None
    try:
        import cyrus
        if cyrus.available() and os.geteuid() == 0:
            croot = tempfile.mkdtemp(prefix="bench-lr-cyrus-", dir="/tmp")
            os.chmod(croot, 0o755)
            cy = CyrusPair(croot)
    except Exception as e:  # noqa: BLE001
        print(f"bench_lmtp_rolling: no Cyrus: {e}", file=sys.stderr)
        cy = None
    names = list(BINS) + (["cyrus"] if cy else [])
    rates = {(n, c): [] for n in names for c in CONNS}
    behind = {(n, c): [] for n in names for c in CONNS}
    cpu = {(n, c): [] for n in names for c in CONNS}
    try:
        for rep in range(REPS):
            for conns in CONNS:
                msgs = [workload.message(700 + 10 * rep + conns, i) for i in range(N)]	# Cyrus suppresses a Message-ID it has seen
                order = names[rep % len(names):] + names[:rep % len(names)]
                for name in order:
                    if name == "cyrus":
                        r, b, c = cy.run(conns, [(u, f, d) for u, f, d in msgs])
                    else:
                        r, b, c = tandem_run(name, conns, msgs, base)
                    rates[(name, conns)].append(r)
                    if b is not None:
                        behind[(name, conns)].append(b)
                    if c is not None:
                        cpu[(name, conns)].append(c)
                    print(f"  rep {rep} conns {conns} {name}: {r:.1f} msg/s"
                          + (f", master CPU {c:.2f} ms/msg" if c is not None else ""), file=sys.stderr, flush=True)
    finally:
        if cy:
            cy.stop()
        if croot:
            shutil.rmtree(croot, ignore_errors=True)
        remove_left()
    for conns in CONNS:
        cmed = statistics.median(rates[("cyrus", conns)]) if cy else None
        for name in names:
            med = statistics.median(rates[(name, conns)])
            out = {"bench": "lmtp_rolling", "who": name, "conns": conns, "messages": N,
                   "msgs_per_s": [round(r, 1) for r in rates[(name, conns)]], "median_msgs_per_s": round(med, 1)}
            if behind[(name, conns)]:
                out["replica_behind_s"] = round(statistics.median(behind[(name, conns)]), 2)
            if cpu[(name, conns)]:
                out["master_cpu_ms_per_msg"] = [round(x, 2) for x in cpu[(name, conns)]]
                out["median_master_cpu_ms_per_msg"] = round(statistics.median(cpu[(name, conns)]), 2)
            if cmed and name != "cyrus":
                out["ratio_to_cyrus"] = round(med / cmed, 2)
            print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
