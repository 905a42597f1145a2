"""bench_deliver.py: local durable delivery with `tandem deliver`.

1,000 messages of 2-50 KB (bench/workload.py, seed 1) delivered each by
its own `tandem deliver` process (as an MTA's local delivery would), into
a fresh instance on the repository's file system whose tandemd runs with
LMTP on a unix socket (lmtp_listen), so a deliver that is an LMTP client
of tandemd uses it. BENCH_DELIVER_CONC (default "1,8") says how many
deliver processes run at once (8: an MTA's parallel local deliveries).
Folder messages go as `-m FOLDER USER` (the folders grant anyone "p", a
plus-addressing setup) when the binary has -m, else as USER+FOLDER.

BENCH_DELIVER_BASE=DIR (a copy of bin/ from before a change) runs that
build too, interleaved with bin/ (alternating which goes first) in the
same run: the only fair comparison on a shared machine. BENCH_REPS
repetitions (default 3); medians are reported. CPU per message is the
deliver processes' CPU (getrusage of reaped children) plus tandemd's and
its session processes' (from /proc, before and after). Then a separate
pass of 200 deliveries per build and concurrency runs under
`strace -f -c` (tandemd included) to count fsync/fdatasync/syncfs calls
per message (strace slows it, so only counts and shares are quoted).

bin/ runs twice: as bin/tandem-deliver (the same command linked with libc
only, what an MTA runs) and as `tandem deliver`. Prints one JSON line; its
top-level figures are bin/'s first program at concurrency 1, "runs" has
every build x program x concurrency.
"""
import json
import os
import pickle
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
import workload  # noqa: E402

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
BIN = os.path.join(TOP, "bin")
N = int(os.environ.get("BENCH_N", "1000"))
REPS = int(os.environ.get("BENCH_REPS", "3"))
CONCS = [int(c) for c in os.environ.get("BENCH_DELIVER_CONC", "1,8").split(",")]
FSYNC_N = int(os.environ.get("BENCH_DELIVER_FSYNC_N", "200"))
TICK = os.sysconf("SC_CLK_TCK")


def has_m(bindir):
    r = subprocess.run([os.path.join(bindir, "tandem"), "deliver", "--help"], capture_output=True, text=True)
    return "-m FOLDER" in r.stdout


def deliver_cmd(bindir, prog, conf):
    """The command line up to the recipients: `tandem -C CONF deliver`, or
    bin/tandem-deliver (the same command linked with libc only)."""
    if prog == "tandem-deliver":
        return [os.path.join(bindir, "tandem-deliver"), "-C", conf]
    return [os.path.join(bindir, "tandem"), "-C", conf, "deliver"]


def setup(root, bindir):
    tandem = os.path.join(bindir, "tandem")
    d = os.path.join(root, "inst")
    subprocess.run([tandem, "init", "--no-listen", "--channels", "repl1", d], check=True, capture_output=True)
    conf = os.path.join(d, "tandem.conf")
    with open(conf, "a") as f:
        f.write(f"\nlmtp_listen: {d}/lmtp.sock\n")
    for u in workload.USERS:
        subprocess.run([tandem, "-C", conf, "user", "add", "--no-password", u], check=True, capture_output=True)
        for fo in workload.FOLDERS[1:]:
            subprocess.run([tandem, "-C", conf, "mailbox", "create", f"user.{u}.{fo}"], check=True,
                           capture_output=True)
            subprocess.run([tandem, "-C", conf, "mailbox", "setacl", f"user.{u}.{fo}", "anyone", "p"],
                           check=True, capture_output=True)
    return conf


def start_tandemd(bindir, conf, wrap=()):
    sock = os.path.join(os.path.dirname(conf), "lmtp.sock")
    p = subprocess.Popen(list(wrap) + [os.path.join(bindir, "tandemd"), "-C", conf, "-f"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 10
    import socket
    while time.time() < deadline:
        try:
            s = socket.socket(socket.AF_UNIX)
            s.connect(sock)
            s.close()
            return p
        except OSError:
            time.sleep(0.05)
    p.kill()
    raise RuntimeError("tandemd did not start")


def stop_tandemd(p):
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(30)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def tree_cpu(pid):
    """CPU seconds of pid (with its reaped children) and of its live
    descendants, from /proc."""
    stats = {}
    for e in os.listdir("/proc"):
        if e.isdigit():
            try:
                s = open(f"/proc/{e}/stat").read()
            except OSError:
                continue
            f = s[s.rindex(")") + 2:].split()
            stats[int(e)] = (int(f[1]), sum(int(x) for x in f[11:15]))
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        if p in stats:
            total += stats[p][1]
            todo += [c for c, (pp, _) in stats.items() if pp == p]
    return total / TICK


def argv_for(bindir, prog, conf, user, folder, use_m):
    a = deliver_cmd(bindir, prog, conf)
    if folder and use_m:
        return a + ["-m", folder, user]
    return a + [user + ("+" + folder if folder else "")]


def deliver_all(bindir, prog, conf, msgs, conc, use_m):
    """Wall seconds and the deliver processes' CPU seconds."""
    jobs = list(msgs)
    lock = threading.Lock()
    errors = []

    def worker():
        while True:
            with lock:
                if not jobs or errors:
                    return
                user, folder, data = jobs.pop(0)
            r = subprocess.run(argv_for(bindir, prog, conf, user, folder, use_m), input=data, capture_output=True)
            if r.returncode != 0:
                with lock:
                    errors.append(r.stdout.decode() + r.stderr.decode())

    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    ts = [threading.Thread(target=worker) for _ in range(conc)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    wall = time.monotonic() - t0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if errors:
        raise RuntimeError(errors[0])
    return wall, (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)


def one_run(bindir, prog, msgs, conc, base):
    root = tempfile.mkdtemp(prefix="bench-deliver-", dir=base)
    try:
        conf = setup(root, bindir)
        d = start_tandemd(bindir, conf)
        try:
            c0 = tree_cpu(d.pid)
            wall, cpu = deliver_all(bindir, prog, conf, msgs, conc, has_m(bindir))
            dcpu = tree_cpu(d.pid) - c0
        finally:
            stop_tandemd(d)
        return wall, cpu, dcpu
    finally:
        shutil.rmtree(root, ignore_errors=True)


def drive(bindir, prog, conf, conc, path):
    """The strace pass's inside (run under strace -f): tandemd and the
    deliveries, so every fsync of either is counted."""
    msgs = pickle.load(open(path, "rb"))
    d = start_tandemd(bindir, conf)
    try:
        deliver_all(bindir, prog, conf, msgs, conc, has_m(bindir))
    finally:
        stop_tandemd(d)


def fsync_pass(bindir, prog, msgs, conc, base):
    root = tempfile.mkdtemp(prefix="bench-deliver-", dir=base)
    try:
        conf = setup(root, bindir)
        out = os.path.join(root, "strace.txt")
        pk = os.path.join(root, "msgs.pickle")
        pickle.dump(msgs, open(pk, "wb"))
        t0 = time.monotonic()
        subprocess.run(["strace", "-f", "-c", "-e", "trace=fsync,fdatasync,syncfs", "-o", out, sys.executable,
                        os.path.abspath(__file__), "_drive", bindir, prog, conf, str(conc), pk], check=True,
                       capture_output=True)
        wall = time.monotonic() - t0
        calls, secs = 0, 0.0
        for line in open(out):
            parts = line.split()
            if len(parts) >= 5 and parts[-1] in ("fsync", "fdatasync", "syncfs"):
                secs += float(parts[1])
                calls += int(parts[3])
        return {"messages": len(msgs), "calls": calls, "calls_per_message": round(calls / len(msgs), 2),
                "fsync_seconds": round(secs, 3), "wall_seconds_under_strace": round(wall, 3),
                "share": round(secs / wall, 3)}
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "_drive":
        drive(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), sys.argv[6])
        return
    msgs = [workload.message(1, i) for i in range(N)]
    total = sum(len(m[2]) for m in msgs)
    base = os.environ.get("BENCH_TMP", os.path.join(TOP, "build"))
    os.makedirs(base, exist_ok=True)
    builds = [("bin", BIN, "tandem")]
    if os.path.exists(os.path.join(BIN, "tandem-deliver")):
        builds.insert(0, ("bin", BIN, "tandem-deliver"))
    if os.environ.get("BENCH_DELIVER_BASE"):
        builds.append(("base", os.path.abspath(os.environ["BENCH_DELIVER_BASE"]), "tandem"))
    res = {(b, p, c): [] for b, _, p in builds for c in CONCS}
    for rep in range(REPS):
        order = builds if rep % 2 == 0 else builds[::-1]
        for conc in CONCS:
            for name, bindir, prog in order:
                res[(name, prog, conc)].append(one_run(bindir, prog, msgs, conc, base))
    fs = {}
    if shutil.which("strace"):
        for conc in CONCS:
            for name, bindir, prog in builds:
                fs[(name, prog, conc)] = fsync_pass(bindir, prog, msgs[:FSYNC_N], conc, base)
    runs = []
    for (name, prog, conc), rs in res.items():
        med = statistics.median(w for w, _, _ in rs)
        runs.append({"build": name, "program": prog, "conc": conc, "wall_s": [round(w, 3) for w, _, _ in rs],
                     "median_wall_s": round(med, 3), "msgs_per_s": round(N / med, 1),
                     "cpu_ms_per_msg_deliver": round(1000 * statistics.median(c for _, c, _ in rs) / N, 2),
                     "cpu_ms_per_msg_tandemd": round(1000 * statistics.median(d for _, _, d in rs) / N, 2),
                     "cpu_ms_per_msg": round(1000 * statistics.median(c + d for _, c, d in rs) / N, 2),
                     "fsync": fs.get((name, prog, conc))})
    top = next(r for r in runs if r["build"] == "bin" and r["conc"] == CONCS[0])
    print(json.dumps({"bench": "deliver", "messages": N, "bytes": total, "reps": REPS, "conc": top["conc"],
                      "wall_s": top["wall_s"], "median_wall_s": top["median_wall_s"],
                      "msgs_per_s": top["msgs_per_s"], "mb_per_s": round(total / top["median_wall_s"] / 1e6, 2),
                      "cpu_ms_per_msg": top["cpu_ms_per_msg"], "fsync": top["fsync"], "runs": runs}))


if __name__ == "__main__":
    main()
