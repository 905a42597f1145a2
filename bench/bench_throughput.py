"""bench_throughput.py: the throughput issue's two figures, for before/after
comparisons of builds (TANDEM_BIN=/path/to/bin; default ./bin).

1. Initial sync of BENCH_SYNC_N (2000) workload messages into an empty
   replica (`tandem sync -A`, csync): median wall s of BENCH_REPS (3), with
   the client's and the replica's CPU seconds.
2. LMTP delivery with rolling replication on (sync_repeat_interval 0):
   BENCH_LMTP_N (1000) messages over 8 connections and over 1, into a
   master whose tandemd runs the channel's sync client: msgs/s of the
   deliveries, and the seconds until the replica has them all.
Prints one JSON line per figure. Not a test: nothing fails on a number.
"""
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
import workload  # noqa: E402
from benchlib import free_port, run  # noqa: E402
from bench_sync import BIN, TANDEM, deliver_lmtp, make_pair, tree_cpu  # noqa: E402

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


def initial_sync(base):
    walls, ccpu, rcpu = [], [], []
    msgs = [workload.message(1, i) for i in range(N)]
    for _ in range(REPS):
        root = tempfile.mkdtemp(prefix="bench-tp-", dir=base)
        try:
            lp, sp = free_port(), free_port()
            master, replica = make_pair(root, lp, sp, "sync_log: no\n" + EXTRA)
            master.start(lp)
            deliver_lmtp(lp, msgs, 4)
            master.stop()
            replica.start(sp)
            c0, r0, t0 = os.times(), tree_cpu(replica.proc.pid), time.monotonic()
            run(TANDEM, "-C", master.conf, "sync", "-n", "repl1", "-o", "-A")
            walls.append(time.monotonic() - t0)
            c1 = os.times()
            ccpu.append(c1.children_user + c1.children_system - c0.children_user - c0.children_system)
            rcpu.append(tree_cpu(replica.proc.pid) - r0)
            replica.stop()
        finally:
            shutil.rmtree(root, ignore_errors=True)
    med = statistics.median(walls)
    print(json.dumps({"bench": "tp_initial_sync", "bin": BIN, "extra": EXTRA, "messages": N, "wall_s": [round(w, 3) for w in walls],
                      "msgs_per_s": round(N / med, 1), "client_cpu_s": round(statistics.median(ccpu), 3),
                      "replica_cpu_s": round(statistics.median(rcpu), 3)}), flush=True)


def lmtp_rolling(base, conns):
    rates, catch = [], []
    for rep in range(REPS):
        msgs = [workload.message(50 + rep, i) for i in range(LN)]
        root = tempfile.mkdtemp(prefix="bench-tp-", dir=base)
        try:
            lp, sp = free_port(), free_port()
            master, replica = make_pair(root, lp, sp, "sync_log: yes\nsync_repeat_interval: 0\n" + EXTRA)
            replica.start(sp)
            master.start(lp)
            time.sleep(1.0)
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
    what = sys.argv[1:] or ["sync", "lmtp8", "lmtp1"]
    if "sync" in what:
        initial_sync(base)
    if "lmtp8" in what:
        lmtp_rolling(base, 8)
    if "lmtp1" in what:
        lmtp_rolling(base, 1)


if __name__ == "__main__":
    main()
