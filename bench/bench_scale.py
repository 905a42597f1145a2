"""bench_scale.py: the initial sync at scale, a master filled once and kept.

bench_throughput.py's `scale` (make bench) fills a fresh master for every
run; this one keeps it, for A/B runs and profiles of builds against the
same store:

  python3 bench/bench_scale.py fill DIR        # BENCH_SCALE_N (20000) messages over
                                               # BENCH_SCALE_USERS (1,000) x
                                               # BENCH_SCALE_FOLDERS (10), into DIR/master
  python3 bench/bench_scale.py sync DIR BIN... # BENCH_REPS (3) timed `tandem sync -A`
                                               # of DIR/master into a fresh replica of
                                               # each build, alternating

One JSON line per sync: wall s, msg/s, client and replica CPU ms a message
(the replica's also as user and sys), peak RSS of both. BENCH_SCALE_TRACE=strace
runs the client and the replica under `strace -f -c -w` (syscall counts and
waits, into DIR/<tag>.{client,replica}.strace); BENCH_SCALE_TRACE=perf runs the
replica's tandemd under `perf record --call-graph dwarf` (DIR/<tag>.perf.data),
BENCH_SCALE_TRACE=perf-client the client (DIR/<tag>.client.perf.data).
The replicas' trees are kept until the end (benchlib.remove_later: removing
inodes right before a run slows its file creates on ext4 without a
journal). Not a test: nothing fails on a number.
"""
import json
import os
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import bench_throughput as bt  # noqa: E402
from benchlib import free_port, remove_later, remove_left, run, wait_port  # noqa: E402
from bench_sync import Inst  # noqa: E402

N = int(os.environ.get("BENCH_SCALE_N", "20000"))
TRACE = os.environ.get("BENCH_SCALE_TRACE", "")


def fill(root):
    """The master (bench_throughput.fill_scale_master): N messages over
    1,000 users x 10 folders, as make bench's scale run has them."""
    os.makedirs(root, exist_ok=True)
    _, total, fill_s = bt.fill_scale_master(root, N)
    print(json.dumps({"bench": "scale_fill", "messages": N, "users": bt.SCALE_USERS, "folders": bt.SCALE_FOLDERS,
                      "mb": round(total / 1e6), "fill_s": round(fill_s, 1)}), flush=True)


def start_replica(bindir, replica, port, tag):
    argv = [os.path.join(bindir, "tandemd"), "-C", replica.conf, "-f"]
    if TRACE == "perf":
        argv = ["perf", "record", "-q", "--call-graph", "dwarf,16384", "-F", "299",
                "-o", os.path.join(os.path.dirname(replica.dir), tag + ".perf.data")] + argv
    elif TRACE == "strace":
        argv = ["strace", "-f", "-c", "-w", "-o", os.path.join(os.path.dirname(replica.dir), tag + ".replica.strace")] + argv
    replica.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=open(replica.dir + ".log", "a"))
    wait_port(port, replica.proc)


def sync_once(root, bindir, tag):
    class Master:
        conf = os.path.join(root, "master", "tandem.conf")
    tandem = os.path.join(bindir, "tandem")
    sp = free_port()
    replica = Inst(root, "replica-" + tag, f"sync_listen: 127.0.0.1:{sp}\nallowplaintext: yes\n")
    remove_later(replica.dir)
    run(tandem, "-C", replica.conf, "user", "add", "repl", input=b"replpw\n")
    text = open(Master.conf).read()
    open(Master.conf, "w").write(re.sub(r"repl1_sync_host: .*\n", "", text) + f"repl1_sync_host: 127.0.0.1:{sp}\n")
    start_replica(bindir, replica, sp, tag)
    client = tandem
    if TRACE == "strace":
        client = os.path.join(root, tag + ".client.sh")
        with open(client, "w") as f:
            f.write(f"#!/bin/sh\nexec strace -f -c -w -o {os.path.join(root, tag + '.client.strace')} {tandem} \"$@\"\n")
        os.chmod(client, 0o755)
    elif TRACE == "perf-client":
        client = os.path.join(root, tag + ".client.sh")
        with open(client, "w") as f:
            f.write(f"#!/bin/sh\nexec perf record -q --call-graph dwarf,16384 -F 299 "
                    f"-o {os.path.join(root, tag + '.client.perf.data')} {tandem} \"$@\"\n")
        os.chmod(client, 0o755)
    w, cc, rc, ch, rh, ru, rs = bt.timed_sync(client, Master, replica)
    if TRACE == "strace":
        # strace does not pass a SIGTERM on: the daemon under it gets it
        pid = replica.proc.pid
        for kid in open(f"/proc/{pid}/task/{pid}/children").read().split():
            os.kill(int(kid), signal.SIGTERM)
    replica.stop()
    print(json.dumps({"bench": "scale_sync", "bin": bindir, "tag": tag, "messages": N, "wall_s": round(w, 2),
                      "msgs_per_s": round(N / w), "client_cpu_ms_per_msg": round(1000 * cc / N, 3),
                      "replica_cpu_ms_per_msg": round(1000 * rc / N, 3),
                      "replica_user_ms_per_msg": round(1000 * ru / N, 3),
                      "replica_sys_ms_per_msg": round(1000 * rs / N, 3),
                      "client_hwm_mb": round(ch / 1024, 1), "replica_hwm_mb": round(rh / 1024, 1)}), flush=True)


def main():
    if len(sys.argv) < 3 or sys.argv[1] not in ("fill", "sync") or (sys.argv[1] == "sync" and len(sys.argv) < 4):
        sys.exit(__doc__)
    root = os.path.abspath(sys.argv[2])
    if sys.argv[1] == "fill":
        fill(root)
        return
    try:
        for rep in range(bt.REPS):
            for i, b in enumerate(sys.argv[3:]):
                sync_once(root, b, f"r{rep}-b{i}-{int(time.time())}")
    finally:
        remove_left()


if __name__ == "__main__":
    main()
