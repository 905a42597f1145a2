"""bench_disklimit.py: what this machine's disk allows for message bodies,
with nothing of tandem's in the way (issue 12: the ceilings of two layouts).

  python3 bench/bench_disklimit.py     # BENCH_DISK_N (10,000) bodies, BENCH_REPS (3)

Bodies of the workload's sizes (lognormal around 15 KB, the same seed every
run), written by one process:
- file per message: each body its own file in one of 256 `xx/` directories
  (made as first needed), a `syncfs` every BENCH_DISK_BATCH (100) bodies, as
  a replica's batch does (without the staging rename);
- pack: every body appended to one file, an `fdatasync` every batch.
Prints msg/s and the process's CPU per body for each. The trees stay under
BENCH_TMP (build/) until the end, then go (benchlib.remove_left). Not a test:
nothing fails on a number.
"""
import ctypes
import json
import os
import random
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from benchlib import remove_later, remove_left  # noqa: E402

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
N = int(os.environ.get("BENCH_DISK_N", "10000"))
BATCH = int(os.environ.get("BENCH_DISK_BATCH", "100"))
REPS = int(os.environ.get("BENCH_REPS", "3"))
_libc = ctypes.CDLL("libc.so.6", use_errno=True)


def syncfs(fd):
    if _libc.syncfs(fd) != 0:
        raise OSError(ctypes.get_errno(), "syncfs")


def cpu():
    t = os.times()
    return t.user + t.system


def files(root, sizes, blob, rnd):
    fd_dir = os.open(root, os.O_RDONLY)
    made = set()
    t0, c0 = time.monotonic(), cpu()
    for i, sz in enumerate(sizes):
        name = "%040x" % rnd.getrandbits(160)
        if name[:2] not in made:
            os.mkdir(os.path.join(root, name[:2]))
            made.add(name[:2])
        fd = os.open(os.path.join(root, name[:2], name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        os.write(fd, blob[:sz])
        os.close(fd)
        if (i + 1) % BATCH == 0:
            syncfs(fd_dir)
    syncfs(fd_dir)
    os.close(fd_dir)
    return len(sizes) / (time.monotonic() - t0), (cpu() - c0) / len(sizes) * 1000


def pack(root, sizes, blob):
    fd = os.open(os.path.join(root, "pack"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    t0, c0 = time.monotonic(), cpu()
    for i, sz in enumerate(sizes):
        os.write(fd, blob[:sz])
        if (i + 1) % BATCH == 0:
            os.fdatasync(fd)
    os.fdatasync(fd)
    os.close(fd)
    return len(sizes) / (time.monotonic() - t0), (cpu() - c0) / len(sizes) * 1000


def main():
    base = os.environ.get("BENCH_TMP", os.path.join(TOP, "build"))
    os.makedirs(base, exist_ok=True)
    rnd = random.Random(1)
    sizes = [max(1500, int(rnd.lognormvariate(9.3, 0.8))) for _ in range(N)]
    blob = os.urandom(max(sizes))
    runs = []
    try:
        for rep in range(REPS):
            root = tempfile.mkdtemp(prefix="bench-disk-", dir=base)
            remove_later(root)
            os.mkdir(os.path.join(root, "files"))
            os.mkdir(os.path.join(root, "pack"))
            f_rate, f_cpu = files(os.path.join(root, "files"), sizes, blob, random.Random(rep))
            p_rate, p_cpu = pack(os.path.join(root, "pack"), sizes, blob)
            run = {"file_msgs_per_s": round(f_rate), "file_cpu_ms": round(f_cpu, 3),
                   "pack_msgs_per_s": round(p_rate), "pack_cpu_ms": round(p_cpu, 3)}
            print(f"  rep {rep}: {run}", file=sys.stderr, flush=True)
            runs.append(run)
    finally:
        remove_left()
    med = lambda k: sorted(r[k] for r in runs)[len(runs) // 2]  # noqa: E731
    print(json.dumps({"bench": "disk_limit", "bodies": N, "mean_bytes": sum(sizes) // N, "batch": BATCH,
                      "runs": runs, "median_file_msgs_per_s": med("file_msgs_per_s"),
                      "median_pack_msgs_per_s": med("pack_msgs_per_s")}))


if __name__ == "__main__":
    main()
