"""profile_session.py: what one IMAP session costs the server, one client at
a time (issue 16's profile; not a test, not in make bench).

  MODE=mix N=60 python3 bench/profile_session.py

Starts a tandemd (from this tree's bin/) on loopback with one user whose
INBOX gets N+10 small messages, then runs N sessions of MODE and prints the
server CPU and minor page faults (tandemd, its children alive and reaped)
and the wall time per session. MODE: none (connect, greeting, LOGOUT), login, sel (LOGIN SELECT),
selfetch, mix (LOGIN SELECT FETCH STORE EXPUNGE LOGOUT: bench_login.py's
session), inone (the mix's commands N times inside one connection).
USERS=k: the sessions take k users in turn (u1..uk; default 1): with k over
STORE_KEEP_MAX no session finds its user's database kept by the process.
TANDEM_BIN=dir runs another build's tandemd (an A/B in one run). PERF=1 records `perf record -g` of tandemd and its sessions into
build/profile/session.perf.data (PERFARGS replaces "-F 4999": e.g.
"-e page-faults -c 1"). STRACE=1 writes `strace -f -c` of tandemd and its
sessions to build/profile/session.strace-c, STRACE=full every call with
its time (-f -T) to build/profile/session.strace (the CPU figures are
then strace's, not the server's). Needs root for perf and strace.
"""
import os
import signal
import smtplib
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
import bench_cyrus  # noqa: E402
from bench_cyrus import RawImap, Tandem  # noqa: E402
from benchlib import free_port  # noqa: E402
from tlib import proc_children  # noqa: E402
import bench_login as bl  # noqa: E402

MIX = ["SELECT INBOX", "FETCH 1:* (UID FLAGS RFC822.SIZE ENVELOPE)", "STORE 1 +FLAGS (\\Deleted)", "EXPUNGE"]
STEPS = {"none": [], "login": [], "sel": MIX[:1], "selfetch": MIX[:2], "mix": MIX}


def main():
    if os.environ.get("TANDEM_BIN"):  # another build's tandemd (A/B: TANDEM_BIN=/tmp/base-bin)
        bench_cyrus.BIN = os.path.abspath(os.environ["TANDEM_BIN"])
    mode = os.environ.get("MODE", "mix")
    n = int(os.environ.get("N", "60"))
    nusers = int(os.environ.get("USERS", "1"))
    if mode not in STEPS and mode != "inone":
        sys.exit(f"profile_session: unknown MODE {mode}")
    root = tempfile.mkdtemp(prefix="prof-session-", dir="/tmp")
    os.chmod(root, 0o755)
    lp, ip = free_port(), free_port()
    tm = Tandem(root, "tl", f"lmtp_listen: 127.0.0.1:{lp}\nimap_listen: 127.0.0.1:{ip}\n"
                            "allowplaintext: yes\nsync_log: no\n")
    perf = None
    try:
        users = [f"u{k + 1}" for k in range(nusers)]
        for u in users:
            tm.cli("user", "add", u, stdin=f"{u}-Secret9\n".encode())
        tm.start(lp)
        s = smtplib.LMTP("127.0.0.1", lp)
        for u in users:
            for i in range(n // nusers + 10):
                s.sendmail("a@example.net", [f"{u}@example.com"], bl.small_message(u, i))
        s.quit()
        for u in users:  # each in the login cache, as in bench_login.py's warm-up
            c = RawImap(ip, quickack=True)
            c.cmd(f"LOGIN {u} {u}-Secret9")
            c.cmd("LOGOUT")
            c.sock.close()
        pid = tm.proc.pid
        # tandemd and its idle session processes (perf follows the ones forked later)
        pids = ",".join(str(p) for p in [pid] + proc_children(pid))
        if os.environ.get("PERF"):
            out = os.path.join(HERE, "..", "build", "profile")
            os.makedirs(out, exist_ok=True)
            perf = subprocess.Popen(["perf", "record"] + os.environ.get("PERFARGS", "-F 4999").split() +
                                    ["-g", "-o", os.path.join(out, "session.perf.data"), "-p", pids],
                                    stderr=subprocess.DEVNULL)
            time.sleep(1)
        if os.environ.get("STRACE"):
            out = os.path.join(HERE, "..", "build", "profile")
            os.makedirs(out, exist_ok=True)
            full = os.environ["STRACE"] == "full"
            perf = subprocess.Popen(["strace", "-f"] + (["-T"] if full else ["-c"]) +
                                    ["-o", os.path.join(out, "session.strace" if full else "session.strace-c"),
                                    ] + [a for p in pids.split(",") for a in ("-p", p)], stderr=subprocess.DEVNULL)
            time.sleep(1)
        (cpu0, flt0), t0 = bl.server_usage(pid), time.monotonic()
        if mode == "inone":
            c = RawImap(ip, quickack=True)
            c.cmd("LOGIN u1 u1-Secret9")
            for _ in range(n):
                for cmd in MIX + ["UNSELECT"]:
                    c.cmd(cmd)
            c.cmd("LOGOUT")
            c.sock.close()
        else:
            for k in range(n):
                c = RawImap(ip, quickack=True)
                u = users[k % nusers]
                if mode != "none":
                    c.cmd(f"LOGIN {u} {u}-Secret9")
                for cmd in STEPS[mode]:
                    c.cmd(cmd)
                c.cmd("LOGOUT")
                c.sock.close()
        wall = time.monotonic() - t0
        time.sleep(0.3)  # the last session ends and is counted
        cpu, flt = bl.server_usage(pid)
        cpu, flt = cpu - cpu0, flt - flt0
        print(f"mode={mode} users={nusers} sessions={n} wall_ms_per={1000 * wall / n:.2f} server_cpu_ms_per={1000 * cpu / n:.2f}"
              f" page_faults_per={flt / n:.1f}")
    finally:
        if perf:
            perf.send_signal(signal.SIGINT)
            perf.wait()
        tm.proc.terminate()
        tm.proc.wait()
        subprocess.run(["rm", "-rf", root])


if __name__ == "__main__":
    main()
