"""bench_throughput.py: the throughput issue's two figures, for before/after
comparisons of builds (TANDEM_BIN=/path/to/bin; default ./bin).

1. Initial sync of BENCH_SYNC_N (2000) workload messages into an empty
   replica (`tandem sync -A`, csync): median wall s of BENCH_REPS (3), with
   the client's and the replica's CPU seconds and peak RSS (VmHWM of the
   client and of the replica's session). BENCH_BINS=dir1,dir2: builds to
   compare, alternating in the same run.
2. LMTP delivery with rolling replication on (sync_repeat_interval 0):
   BENCH_LMTP_N (1000) messages over 8 connections and over 1, into a
   master whose tandemd runs the channel's sync client: msgs/s of the
   deliveries, and the seconds until the replica has them all.
3. `scale` (make bench; not make check): the initial sync of BENCH_SCALE_N
   (100,000, 1.5 GB) messages over BENCH_SCALE_USERS (1,000) x
   BENCH_SCALE_FOLDERS (10): msg/s, CPU ms per message and peak RSS of each
   build of BENCH_BINS, to read against the 10,000-message run (the rate
   holds, RSS stays flat).
Prints one JSON line per figure. Not a test: nothing fails on a number.
"""
import json
import os
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
import workload  # noqa: E402
from benchlib import free_port, run, wait_port  # noqa: E402
from bench_sync import BIN, TANDEM, Inst, PeakSampler, deliver_lmtp, make_pair, run_peak, start_rolling_pair, tree_cpu_split  # noqa: E402

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
N = int(os.environ.get("BENCH_SYNC_N", "2000"))
LN = int(os.environ.get("BENCH_LMTP_N", "1000"))
REPS = int(os.environ.get("BENCH_REPS", "3"))
# more master configuration, e.g. "sync_compress: yes\n" (a build before that option ignores it)
EXTRA = os.environ.get("BENCH_MASTER_EXTRA", "").replace("\\n", "\n")


def replica_count(replica):
    total = 0
    for u in workload.USERS:
        path = os.path.join(replica.dir, "spool", "user", u, "meta.db")
        try:
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
            total += db.execute("SELECT coalesce(sum(exists_count), 0) FROM mailboxes").fetchone()[0]
            db.close()
        except sqlite3.Error:
            pass
    return total


def timed_sync(tandem, master, replica):
    """`tandem sync -A` from master into the running replica: wall s, client
    and replica CPU s, client and replica session peak RSS (VmHWM) kB, and
    the replica's CPU as user and sys s."""
    sampler = PeakSampler(replica.proc.pid)
    sampler.start()
    c0, r0, t0 = os.times(), tree_cpu_split(replica.proc.pid), time.monotonic()
    cpeak = run_peak(tandem, "-C", master.conf, "sync", "-n", "repl1", "-o", "-A")
    wall = time.monotonic() - t0
    c1 = os.times()
    r1 = tree_cpu_split(replica.proc.pid)
    ruser, rsys = r1[0] - r0[0], r1[1] - r0[1]
    rpeak = sampler.finish()
    return (wall, c1.children_user + c1.children_system - c0.children_user - c0.children_system, ruser + rsys,
            cpeak, rpeak, ruser, rsys)


# builds to compare, alternating in one run (comma-separated bin directories); default: this build
BINS = [b for b in os.environ.get("BENCH_BINS", BIN).split(",") if b]


def start_replica(bindir, replica, port):
    replica.proc = subprocess.Popen([os.path.join(bindir, "tandemd"), "-C", replica.conf, "-f"],
                                    stdout=subprocess.DEVNULL, stderr=open(replica.dir + ".log", "a"))
    wait_port(port, replica.proc)


def initial_sync(base):
    """The trees of every repetition are removed at the end, not between
    repetitions: on ext4 without a journal (this machine) an inode freed less
    than 30 s ago is skipped when a new one is allocated (recently_deleted),
    and every file create of the next sync then walks the thousands just freed:
    up to half the replica's CPU, an artefact of the benchmark."""
    res = {b: [] for b in BINS}
    roots = []
    msgs = [workload.message(1, i) for i in range(N)]
    try:
        for _ in range(REPS):
            for b in BINS:
                bindir = os.path.join(TOP, b)
                root = tempfile.mkdtemp(prefix="bench-tp-", dir=base)
                roots.append(root)
                lp, sp = free_port(), free_port()
                master, replica = make_pair(root, lp, sp, "sync_log: no\n" + EXTRA)
                master.start(lp)
                deliver_lmtp(lp, msgs, 4)
                master.stop()
                start_replica(bindir, replica, sp)
                res[b].append(timed_sync(os.path.join(bindir, "tandem"), master, replica))
                replica.stop()
    finally:
        for root in roots:
            shutil.rmtree(root, ignore_errors=True)
    for b, rs in res.items():
        if not rs:
            continue
        med = statistics.median(r[0] for r in rs)
        print(json.dumps({"bench": "tp_initial_sync", "bin": b, "extra": EXTRA, "messages": N,
                          "wall_s": [round(r[0], 3) for r in rs], "msgs_per_s": round(N / med, 1),
                          "client_cpu_s": round(statistics.median(r[1] for r in rs), 3),
                          "replica_cpu_s": round(statistics.median(r[2] for r in rs), 3),
                          "client_cpu_s_all": [round(r[1], 2) for r in rs],
                          "replica_cpu_s_all": [round(r[2], 2) for r in rs],
                          "replica_user_s": round(statistics.median(r[5] for r in rs), 3),
                          "replica_user_s_all": [round(r[5], 2) for r in rs],
                          "replica_sys_s_all": [round(r[6], 2) for r in rs],
                          "client_hwm_mb": round(max(r[3] for r in rs) / 1024, 1),
                          "replica_hwm_mb": round(max(r[4] for r in rs) / 1024, 1)}), flush=True)


SCALE_N = int(os.environ.get("BENCH_SCALE_N", "100000"))
SCALE_USERS = int(os.environ.get("BENCH_SCALE_USERS", "1000"))
SCALE_FOLDERS = int(os.environ.get("BENCH_SCALE_FOLDERS", "10"))
SCALE_BINS = BINS


def scale_message(i):
    """Message i of the scale run: the workload's sizes and shapes, spread
    evenly over SCALE_USERS users x SCALE_FOLDERS folders (INBOX and f1..)."""
    _, _, data = workload.message(2, i)
    u = i % SCALE_USERS
    f = (i // SCALE_USERS) % SCALE_FOLDERS
    return f"s{u:04d}", "" if f == 0 else f"f{f}", data


def fill_scale_master(root, n):
    """A master in root/master holding n messages over SCALE_USERS x
    SCALE_FOLDERS: the users, their folders (over one IMAP connection),
    then the messages over LMTP (8 connections, in chunks: 1.5 GB of
    messages never in memory at once). Left stopped. (master, bytes, s)."""
    import imaplib
    lp, ip = free_port(), free_port()
    master = Inst(root, "master", f"lmtp_listen: 127.0.0.1:{lp}\nimap_listen: 127.0.0.1:{ip}\n"
                                  "allowplaintext: yes\nsync_log: no\nsync_authname: repl\n"
                                  "sync_password: replpw\nsync_log_channels: repl1\n")
    t0 = time.monotonic()
    run(TANDEM, "-C", master.conf, "user", "add", "admin", input=b"adminpw\n")
    users = [f"s{u:04d}" for u in range(SCALE_USERS)]
    for u in users:
        run(TANDEM, "-C", master.conf, "user", "add", "--no-password", u)
    master.start(lp)
    try:
        im = imaplib.IMAP4("127.0.0.1", ip)
        im.login("admin", "adminpw")
        for u in users:
            for f in range(1, SCALE_FOLDERS):
                typ, _ = im.create(f"user.{u}.f{f}")
                if typ != "OK":
                    raise RuntimeError(f"CREATE user.{u}.f{f}: {typ}")
        im.logout()
        total = 0
        for lo in range(0, n, 10000):
            msgs = [scale_message(i) for i in range(lo, min(n, lo + 10000))]
            total += sum(len(m[2]) for m in msgs)
            deliver_lmtp(lp, msgs, 8)
    finally:
        master.stop()
    return master, total, time.monotonic() - t0


def scale(base):
    """Initial sync of SCALE_N messages over SCALE_USERS x SCALE_FOLDERS
    (default 100,000 = 1.5 GB, 1,000 x 10): the master is filled once (LMTP,
    8 connections; the folders are made over one IMAP connection), then each
    build of BENCH_BINS syncs it into an empty replica of its own, BENCH_REPS
    times, alternating (every tree is removed at the end: see initial_sync).
    Not in make check: minutes, and 1.5 GB of disk per replica."""
    root = tempfile.mkdtemp(prefix="bench-scale-", dir=base)
    master = None
    try:
        master, total, fill = fill_scale_master(root, SCALE_N)
        print(json.dumps({"bench": "tp_scale_fill", "messages": SCALE_N, "users": SCALE_USERS,
                          "folders": SCALE_FOLDERS, "mb": round(total / 1e6), "fill_s": round(fill, 1)}), flush=True)
        res = {b: [] for b in SCALE_BINS}
        for rep in range(REPS):
            for b in SCALE_BINS:
                bindir = os.path.join(TOP, b)
                tandem = os.path.join(bindir, "tandem")
                sp = free_port()
                rdir = f"replica-{rep}-{len(res[b])}-{os.path.basename(os.path.dirname(bindir + '/'))}"
                replica = Inst(root, rdir, f"sync_listen: 127.0.0.1:{sp}\nallowplaintext: yes\n")
                run(tandem, "-C", replica.conf, "user", "add", "repl", input=b"replpw\n")
                text = open(master.conf).read()
                text = re.sub(r"repl1_sync_host: .*\n", "", text) + f"repl1_sync_host: 127.0.0.1:{sp}\n"
                open(master.conf, "w").write(text)
                start_replica(bindir, replica, sp)
                w, cc, rc, ch, rh = timed_sync(tandem, master, replica)[:5]
                replica.stop()
                res[b].append((w, cc, rc, ch, rh))
                print(json.dumps({"bench": "tp_scale_rep", "bin": b, "rep": rep, "wall_s": round(w, 2),
                                  "msgs_per_s": round(SCALE_N / w, 1), "client_cpu_s": round(cc, 2),
                                  "replica_cpu_s": round(rc, 2), "client_hwm_mb": round(ch / 1024, 1),
                                  "replica_hwm_mb": round(rh / 1024, 1)}), flush=True)
        for b, rs in res.items():
            med = statistics.median(r[0] for r in rs)
            print(json.dumps({"bench": "tp_scale_sync", "bin": b, "messages": SCALE_N, "users": SCALE_USERS,
                              "folders": SCALE_FOLDERS, "mb": round(total / 1e6), "wall_s": [round(r[0], 2) for r in rs],
                              "msgs_per_s": round(SCALE_N / med, 1),
                              "client_cpu_ms_per_msg": round(1000 * statistics.median(r[1] for r in rs) / SCALE_N, 4),
                              "replica_cpu_ms_per_msg": round(1000 * statistics.median(r[2] for r in rs) / SCALE_N, 4),
                              "client_hwm_mb": round(max(r[3] for r in rs) / 1024, 1),
                              "replica_hwm_mb": round(max(r[4] for r in rs) / 1024, 1)}), flush=True)
    finally:
        if master:
            master.stop()
        shutil.rmtree(root, ignore_errors=True)


def lmtp_rolling(base, conns):
    rates, catch = [], []
    for rep in range(REPS):
        msgs = [workload.message(50 + rep, i) for i in range(LN)]
        root = tempfile.mkdtemp(prefix="bench-tp-", dir=base)
        try:
            master, replica, lp = start_rolling_pair(root, EXTRA)
            dt = deliver_lmtp(lp, msgs, conns)
            t0 = time.monotonic()
            while replica_count(replica) < LN and time.monotonic() - t0 < 120:
                time.sleep(0.05)
            catch.append(time.monotonic() - t0)
            rates.append(LN / dt)
            master.stop()
            replica.stop()
        finally:
            shutil.rmtree(root, ignore_errors=True)
    print(json.dumps({"bench": "tp_lmtp_rolling", "bin": BIN, "extra": EXTRA, "conns": conns, "messages": LN,
                      "msgs_per_s": [round(r, 1) for r in rates], "median_msgs_per_s": round(statistics.median(rates), 1),
                      "replica_behind_s": round(statistics.median(catch), 2)}), flush=True)


def main():
    base = os.environ.get("BENCH_TMP", os.path.join(TOP, "build"))
    os.makedirs(base, exist_ok=True)
    what = sys.argv[1:] or ["sync", "lmtp8", "lmtp1"]	# "scale": the 100,000-message run (make bench)
    if "sync" in what:
        initial_sync(base)
    if "lmtp8" in what:
        lmtp_rolling(base, 8)
    if "lmtp1" in what:
        lmtp_rolling(base, 1)
    if "scale" in what:
        scale(base)


if __name__ == "__main__":
    main()
