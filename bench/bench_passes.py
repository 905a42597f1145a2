"""bench_passes.py: the rolling client's passes and the replica's syncs under
a paced LMTP load (issue 12's rolling latency).

  BENCH_BINS="/tmp/base-bin bin" BENCH_REPS=3 python3 bench/bench_passes.py

For each repetition and each build (alternating, the order rotating): a
fresh master + replica pair as bench_lmtp_rolling.py makes them
(`sync_log: yes`, `sync_repeat_interval: 0`), BENCH_BG_RATE (200) msg/s of
workload mail over BENCH_BG_CONNS (4) paced LMTP connections; after 2 s,
BENCH_PASS_S (10) s of `strace -f -c` of the replica's tandemd tree (its
fdatasync, fsync and syncfs calls: the disk flushes of its applies); then
the master's `event=sync_pass ms=` lines of the whole run (one per pass:
take, send, the replica's answers, done). One JSON line per build with
each run's counts and pass times and their medians. Not a test: nothing
fails on a number. Needs strace.
"""
import json
import os
import re
import signal
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

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
BINS = os.environ.get("BENCH_BINS", "bin").split()
REPS = int(os.environ.get("BENCH_REPS", "3"))
RATE = float(os.environ.get("BENCH_BG_RATE", "200"))
CONNS = int(os.environ.get("BENCH_BG_CONNS", "4"))
TRACE_S = float(os.environ.get("BENCH_PASS_S", "10"))


def descendants(pid):
    """pid and every process below it (from /proc)."""
    kids = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                ppid = int(open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += kids.get(p, [])
    return out


def strace_counts(text):
    """{syscall: calls} from strace -c's table."""
    calls = {}
    for line in text.splitlines():
        f = line.split()
        if len(f) >= 5 and f[-1] in ("fdatasync", "fsync", "syncfs") and f[3].isdigit():
            calls[f[-1]] = int(f[3])
    return calls


def one_run(binpath, base, rep):
    bench_sync.BIN = os.path.join(TOP, binpath)
    bench_sync.TANDEM = os.path.join(bench_sync.BIN, "tandem")
    root = tempfile.mkdtemp(prefix="bench-passes-", dir=base)
    bg = None
    try:
        master, replica, lp = bench_sync.start_rolling_pair(root)
        bg = PacedLMTP(lp, CONNS, RATE, lambda k, i: workload.message(800 + rep, k * 100000 + i))
        bg.start()
        time.sleep(2.0)
        args = []
        for p in descendants(replica.proc.pid):
            args += ["-p", str(p)]
        st = subprocess.Popen(["strace", "-f", "-c", "-e", "trace=fdatasync,fsync,syncfs"] + args,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        time.sleep(TRACE_S)
        st.send_signal(signal.SIGINT)
        calls = strace_counts(st.communicate(timeout=60)[1])
        sent, wall = bg.stop()
        master.stop()
        replica.stop()
        ms = sorted(int(x) for x in re.findall(r"event=sync_pass channel=\S+ ms=(\d+)",
                                               open(os.path.join(root, "master.log")).read()))
        q = lambda p: ms[min(len(ms) - 1, int(p * len(ms)))] if ms else None  # noqa: E731
        return {"replica_fdatasync": calls.get("fdatasync", 0), "replica_fsync": calls.get("fsync", 0),
                "replica_syncfs": calls.get("syncfs", 0), "passes": len(ms),
                "pass_ms_p50": q(0.5), "pass_ms_p90": q(0.9),
                "pass_ms_mean": round(statistics.mean(ms), 1) if ms else None,
                "msgs_per_s": round(sent / wall, 1)}
    finally:
        if bg:
            bg.halt.set()
        remove_later(root)


def main():
    base = os.environ.get("BENCH_TMP", os.path.join(TOP, "build"))
    os.makedirs(base, exist_ok=True)
    try:
        res = alternating(BINS, REPS, lambda b, rep: one_run(b, base, rep))
    finally:
        remove_left()
    for b in BINS:
        out = {"bench": "rolling_passes_under_load", "who": b, "rate": RATE, "trace_s": TRACE_S, "runs": res[b]}
        for k in res[b][0]:
            vals = [r[k] for r in res[b] if r[k] is not None]
            if vals:
                out["median_" + k] = statistics.median(vals)
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
