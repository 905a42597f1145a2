"""profile.py: where the time goes (docs/benchmarks.md, "Where the time goes").

Not a benchmark of record: it runs one initial sync and one LMTP run with
rolling replication under a profiler and leaves the raw output in
build/profile/ for reading.

  python3 bench/profile.py sync   # initial sync of BENCH_SYNC_N (2000) messages
  python3 bench/profile.py lmtp   # BENCH_LMTP_N (1000) LMTP deliveries over
                                  # BENCH_CONNS (8) connections, rolling
                                  # replication on (sync_repeat_interval 0)

PROFILE_TOOL=perf (default): `perf record -g` of the sync client and of the
replica's tandemd tree (or the master's tandemd in lmtp mode), then
`perf report --no-children --sort dso,symbol` into *.txt.
PROFILE_DWARF=1: call graphs by DWARF unwinding (`--call-graph dwarf`: the
callers of libc's memchr/malloc, which frame pointers do not show).
PROFILE_TOOL=strace: `strace -f -c` of the same processes (syscall counts and
times), plus a per-message fsync/fdatasync/syncfs count; PROFILE_WALL=1 adds
-w (wall time inside each call: how long syncfs and fdatasync wait).
PROFILE_STRACE="-k -e trace=fcntl,newfstatat": instead of -c, every such call
with its stack (strace -k) into *.strace-k.txt: where each comes from.
"""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
import workload  # noqa: E402
from benchlib import free_port, run, wait_port  # noqa: E402
from bench_sync import TANDEM, BIN, Inst, deliver_lmtp, make_pair  # noqa: E402

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
OUT = os.path.join(TOP, "build", "profile")
TOOL = os.environ.get("PROFILE_TOOL", "perf")


def wrap(name, argv):
    """argv run under the profiler, its output named after name."""
    if TOOL == "strace" and os.environ.get("PROFILE_STRACE"):
        # e.g. PROFILE_STRACE="-k -e trace=fcntl,stat,newfstatat": every call with its stack, for where
        return ["strace", "-f"] + os.environ["PROFILE_STRACE"].split() + ["-o", os.path.join(OUT, name + ".strace-k.txt")] + argv
    if TOOL == "strace":
        return ["strace", "-f", "-c"] + (["-w"] if os.environ.get("PROFILE_WALL") else []) + ["-o", os.path.join(OUT, name + ".strace.txt")] + argv
    cg = ["--call-graph", "dwarf,16384", "-F", "1999"] if os.environ.get("PROFILE_DWARF") else ["-g"]
    return ["perf", "record", "-q"] + cg + ["-o", os.path.join(OUT, name + ".perf.data")] + argv


def start(inst, port, name):
    inst.proc = subprocess.Popen(wrap(name, [os.path.join(BIN, "tandemd"), "-C", inst.conf, "-f"]),
                                 stdout=subprocess.DEVNULL, stderr=open(inst.dir + ".log", "a"))
    wait_port(port, inst.proc)


def stop(inst):
    """SIGTERM to tandemd itself (the profiler's child); the profiler then
    writes its file and exits."""
    if inst.proc and inst.proc.poll() is None:
        try:
            kids = open(f"/proc/{inst.proc.pid}/task/{inst.proc.pid}/children").read().split()
        except OSError:
            kids = []
        for k in kids:
            os.kill(int(k), signal.SIGTERM)
        if not kids:
            inst.proc.terminate()
        inst.proc.wait(120)


def report(name, nmsgs):
    if TOOL == "strace" and os.environ.get("PROFILE_STRACE"):
        print(f"{name}: {os.path.join(OUT, name + '.strace-k.txt')}")
        return
    if TOOL == "strace":
        path = os.path.join(OUT, name + ".strace.txt")
        calls = {}
        for line in open(path):
            f = line.split()
            if len(f) >= 5 and f[-1] in ("fsync", "fdatasync", "syncfs", "write", "rename", "openat", "fcntl",
                                         "newfstatat", "pread64", "pwrite64", "close", "mkdir", "getpid"):
                calls[f[-1]] = int(f[3])
            elif len(f) >= 4 and f[-1] == "total":
                calls["total"] = int(f[3])
        per = {k: round(v / nmsgs, 2) for k, v in calls.items()}
        print(f"{name}: per message {per}")
        return
    data = os.path.join(OUT, name + ".perf.data")
    txt = os.path.join(OUT, name + ".perf.txt")
    with open(txt, "w") as f:
        subprocess.run(["perf", "report", "-i", data, "--no-children", "--sort", "dso,symbol", "--stdio",
                        "-g", "none", "--percent-limit", "0.5"], stdout=f, stderr=subprocess.DEVNULL)
    print(f"{name}: {txt}")


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else "sync"
    os.makedirs(OUT, exist_ok=True)
    base = os.environ.get("BENCH_TMP", os.path.join(TOP, "build"))
    root = tempfile.mkdtemp(prefix="profile-", dir=base)
    try:
        lp, sp = free_port(), free_port()
        if mode == "sync":
            n = int(os.environ.get("BENCH_SYNC_N", "2000"))
            msgs = [workload.message(1, i) for i in range(n)]
            master, replica = make_pair(root, lp, sp, "sync_log: no\n")
            master.start(lp)
            deliver_lmtp(lp, msgs, 4)
            master.stop()
            start(replica, sp, "sync-replica")
            t0 = time.monotonic()
            subprocess.run(wrap("sync-client", [TANDEM, "-C", master.conf, "sync", "-n", "repl1", "-o", "-A"]),
                           check=True, capture_output=True)
            wall = time.monotonic() - t0
            stop(replica)
            print(f"initial sync of {n} messages: {wall:.2f} s wall (under {TOOL})")
            report("sync-client", n)
            report("sync-replica", n)
        else:
            n = int(os.environ.get("BENCH_LMTP_N", "1000"))
            conns = int(os.environ.get("BENCH_CONNS", "8"))
            msgs = [workload.message(1, i) for i in range(n)]
            master, replica = make_pair(root, lp, sp, "sync_log: yes\nsync_repeat_interval: 0\n")
            start(replica, sp, "lmtp-replica")
            start(master, lp, "lmtp-master")
            time.sleep(1.0)
            wall = deliver_lmtp(lp, msgs, conns)
            time.sleep(2.0)	# the rolling client catches up
            stop(master)
            stop(replica)
            print(f"LMTP {n} messages over {conns} connections: {wall:.2f} s wall (under {TOOL})")
            report("lmtp-master", n)
            report("lmtp-replica", n)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
