"""bench_deliver.py: local durable delivery with `tandem deliver`.

1,000 messages of 2-50 KB (bench/workload.py, seed 1) delivered one at a
time, each by its own `tandem deliver` process (as an MTA's local delivery
would), into a fresh instance on the repository's file system. Three
repetitions; the median is reported. A fourth pass runs under
`strace -f -c` to measure the time spent in fsync/fdatasync (strace slows
the run, so only the share is quoted, not the rate). Prints one JSON line.
"""
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
import workload  # noqa: E402

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
TANDEM = os.path.join(TOP, "bin", "tandem")
N = int(os.environ.get("BENCH_N", "1000"))
REPS = int(os.environ.get("BENCH_REPS", "3"))


def setup(root):
    d = os.path.join(root, "inst")
    subprocess.run([TANDEM, "init", "--channels", "repl1", d], check=True, capture_output=True)
    conf = os.path.join(d, "tandem.conf")
    for u in workload.USERS:
        subprocess.run([TANDEM, "-C", conf, "user", "add", "--no-password", u], check=True, capture_output=True)
        for f in workload.FOLDERS[1:]:
            subprocess.run([TANDEM, "-C", conf, "mailbox", "create", f"user.{u}.{f}"], check=True,
                           capture_output=True)
    return conf


def deliver_all(conf, msgs, prefix=()):
    t0 = time.monotonic()
    for user, folder, data in msgs:
        rcpt = user + ("+" + folder if folder else "")
        r = subprocess.run(list(prefix) + [TANDEM, "-C", conf, "deliver", rcpt], input=data, capture_output=True)
        if r.returncode != 0:
            raise RuntimeError(r.stderr.decode())
    return time.monotonic() - t0


def main():
    msgs = [workload.message(1, i) for i in range(N)]
    total = sum(len(m[2]) for m in msgs)
    base = os.environ.get("BENCH_TMP", os.path.join(TOP, "build"))
    os.makedirs(base, exist_ok=True)
    walls = []
    for _ in range(REPS):
        root = tempfile.mkdtemp(prefix="bench-deliver-", dir=base)
        try:
            conf = setup(root)
            walls.append(deliver_all(conf, msgs))
        finally:
            shutil.rmtree(root, ignore_errors=True)
    fsync = None
    if shutil.which("strace"):
        root = tempfile.mkdtemp(prefix="bench-deliver-", dir=base)
        try:
            conf = setup(root)
            out = os.path.join(root, "strace.txt")
            sub = msgs[:200]
            t0 = time.monotonic()
            subprocess.run(["strace", "-f", "-c", "-e", "trace=fsync,fdatasync", "-o", out, sys.executable,
                            "-c", "import sys,pickle,subprocess\n"
                            "for rc,d in pickle.load(sys.stdin.buffer):\n"
                            f"  subprocess.run(['{TANDEM}','-C','{conf}','deliver',rc],input=d,check=True,capture_output=True)"],
                           input=__import__("pickle").dumps([(u + ("+" + f if f else ""), d) for u, f, d in sub]),
                           check=True)
            wall = time.monotonic() - t0
            calls, secs = 0, 0.0
            for line in open(out):
                parts = line.split()
                if len(parts) >= 5 and parts[-1] in ("fsync", "fdatasync"):
                    secs += float(parts[1])
                    calls += int(parts[3])
            fsync = {"messages": len(sub), "calls": calls, "calls_per_message": round(calls / len(sub), 2),
                     "fsync_seconds": round(secs, 3), "wall_seconds_under_strace": round(wall, 3),
                     "share": round(secs / wall, 3)}
        finally:
            shutil.rmtree(root, ignore_errors=True)
    med = statistics.median(walls)
    print(json.dumps({"bench": "deliver", "messages": N, "bytes": total, "reps": REPS,
                      "wall_s": [round(w, 3) for w in walls], "median_wall_s": round(med, 3),
                      "msgs_per_s": round(N / med, 1), "mb_per_s": round(total / med / 1e6, 2),
                      "fsync": fsync}))


if __name__ == "__main__":
    main()
