"""bench_login.py: logins under load, tandem beside Cyrus IMAP 3.6.1 in the
same run (issue 16, "Logins under load").

1. LOGIN latency: one client connects, logs in (timed: LOGIN sent to its
   tagged OK), logs out; BENCH_LOGIN_N times as the same user after a first
   (cold) login. tandem with its login cache (auth_cache_size default),
   tandem with auth_cache_size 0 (every login pays yescrypt), Cyrus
   (sasldb auxprop, PLAIN).
2. A login-heavy mix: BENCH_MIX_CLIENTS (50) client processes at once,
   each as its own user, each running BENCH_MIX_SESSIONS sessions of:
   connect, LOGIN, SELECT INBOX, FETCH 1:* (UID FLAGS RFC822.SIZE
   ENVELOPE), STORE 1 +FLAGS (\\Deleted), EXPUNGE, LOGOUT (6 commands; the
   INBOXes are filled by LMTP first with enough small messages). Commands
   per second over the wall time of the whole run, and the p50/p95 of the
   LOGINs inside it. Before the clock starts, each client logs in once
   (untimed warm-up, on every server): the timed sessions are those of a
   server that has been running, whose cache knows its users (the warm-up
   fills it; tandem is reloaded only to switch its cache between the t
   and t0 modes, which also empties it). Also the server's CPU and minor
   page faults per session: the master process, its children alive and
   reaped (/proc), over the run, divided by sessions.

Both clients re-arm TCP_QUICKACK before each read (bench_cyrus.py explains:
Cyrus otherwise stalls ~40 ms per command on the client's delayed ACK), so
the figures compare the servers' own work. Medians over BENCH_REPS
repetitions (default 3), the three servers alternating in order. One JSON
line per group. TANDEM_BIN=dir runs another build's tandemd (A/B: run
it with the base build and this one alternately, each beside Cyrus).
BENCH_MIX_ADDRS=1: each mix client connects from an address of its own
(127.0.1.N, both servers), as users' clients do, instead of all from 127.0.0.1;
BENCH_MIX_ADDRS=both (make bench): both, alternating within each repetition,
one login_mix line each (the one-address figure is the conservative one).
Cyrus 3.6 looks up the host name of every client address (get_clienthost in
imap/global.c: getnameinfo with NI_NAMEREQD, no imapd.conf switch), and
127.0.1.N has no name here: each lookup asks the DNS server, and some wait
5 s for its answer. tandem looks up no names. So that both servers do their
own work only, Cyrus runs in a mount namespace of its own whose /etc/hosts
(a copy, bind-mounted) names 127.0.1.1-N (the system's file is not touched;
where unshare is refused, the names are added to /etc/hosts for the run and
taken out again at its end, also on failure).
BENCH_PERF=file records tandem's mix runs with perf (PERFARGS, default "-F 999
--call-graph dwarf") into file.1, file.2, ... (a profile: its figures are not comparable).
Needs root and cyrus-imapd (Cyrus runs as cyrus).
"""
import json
import multiprocessing as mp
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
import bench_cyrus  # noqa: E402
import cyrus  # noqa: E402
from bench_cyrus import RawImap, Tandem, cyrus_create_user, deliver_lmtp  # noqa: E402
from benchlib import free_port  # noqa: E402

REPS = int(os.environ.get("BENCH_REPS", "3"))
MODES = os.environ.get("BENCH_LOGIN_MODES", "t,t0,c").split(",")
LOGIN_N = int(os.environ.get("BENCH_LOGIN_N", "30"))
CLIENTS = int(os.environ.get("BENCH_MIX_CLIENTS", "50"))
SESSIONS = int(os.environ.get("BENCH_MIX_SESSIONS", "10"))
# each mix client from 127.0.0.1 (False) or from its own 127.0.1.N (True)
ADDR_MODES = {"0": [False], "1": [True], "both": [False, True]}[os.environ.get("BENCH_MIX_ADDRS", "0")]
perf_out = os.environ.get("BENCH_PERF")  # a perf.data path: tandem's mix runs recorded (root)
perf_runs = 0
CMDS_PER_SESSION = 6
USERS = [f"mix{i:02d}" for i in range(CLIENTS)]


def pw(user):
    return user + "-Secret9"


def small_message(user, i):
    body = "".join(f"line {k} of a small benchmark message for the login mix\r\n" for k in range(20))
    return (f"From: sender{i % 13}@example.net\r\nTo: {user}@example.com\r\nSubject: mix {i}\r\n"
            f"Date: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <mix-{user}-{i}@example.net>\r\n"
            f"Content-Type: text/plain\r\n\r\n{body}").encode()


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def login_latency(port, user):
    """(cold ms, [warm ms x LOGIN_N])."""
    out = []
    for _ in range(LOGIN_N + 1):
        c = RawImap(port, quickack=True)
        t0 = time.monotonic()
        c.cmd(f"LOGIN {user} {pw(user)}")
        out.append((time.monotonic() - t0) * 1000)
        c.close()
    return out[0], out[1:]


def own_address(user):
    """In a mix client's process: its connections come from an address of its own (127.0.1.N), as
    users' clients do from theirs (BENCH_MIX_ADDRS=1)."""
    import socket
    src = f"127.0.1.{USERS.index(user) + 1}"
    plain = socket.create_connection

    def create_connection(address, *args, **kw):
        kw.setdefault("source_address", (src, 0))
        return plain(address, *args, **kw)
    socket.create_connection = create_connection


HOSTS_MARK = "# bench_login.py: mix client addresses"


def client_names():
    """/etc/hosts lines naming the mix clients' addresses (127.0.1.N)."""
    return "".join(f"127.0.1.{i + 1} mixclient{i + 1}.bench.invalid {HOSTS_MARK}\n" for i in range(CLIENTS))


def drop_client_names():
    """Takes bench_login.py's lines out of /etc/hosts (written in place: it may be a mount point)."""
    text = open("/etc/hosts").read()
    keep = "".join(l for l in text.splitlines(True) if HOSTS_MARK not in l)
    if keep != text:
        with open("/etc/hosts", "w") as f:
            f.write(keep)


def cyrus_with_client_names(root, cleanup):
    """Makes cyrus.Cyrus start its master where the mix clients' addresses have names: in a mount
    namespace of its own with a copy of /etc/hosts that names them, or, where unshare is refused,
    with the names added to /etc/hosts (cleanup gets the function that takes them out)."""
    plain = cyrus.as_cyrus
    if subprocess.run(["unshare", "-m", "--propagation", "private", "true"],
                      stderr=subprocess.DEVNULL).returncode != 0:
        drop_client_names()  # a run killed before its cleanup
        with open("/etc/hosts", "a") as f:
            f.write(client_names())
        cleanup.append(drop_client_names)
        print("bench_login: unshare refused; mix client names added to /etc/hosts for the run", file=sys.stderr)
        return
    hosts = os.path.join(root, "hosts")
    with open(hosts, "w") as f:
        f.write(open("/etc/hosts").read() + client_names())
    os.chmod(hosts, 0o644)

    def as_cyrus(args, **kw):
        if not os.path.basename(args[0]) == "master":
            return plain(args, **kw)
        return subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                               'mount --bind "$0" /etc/hosts && exec "$@"', hosts,
                               "setpriv", "--reuid=cyrus", "--regid=mail", "--init-groups"] + args, **kw)
    cyrus.as_cyrus = as_cyrus


def mix_client(port, user, own, ready, start, q):
    lat, cmds, warm = [], 0, False
    if own:
        own_address(user)
    try:
        # warm-up, untimed: one login of this user, as a server that has
        # been running a while has seen (both servers get it)
        c = RawImap(port, quickack=True)
        c.cmd(f"LOGIN {user} {pw(user)}")
        c.cmd("LOGOUT")
        c.sock.close()
        ready.put(user)
        warm = True
        start.wait()
        for _ in range(SESSIONS):
            c = RawImap(port, quickack=True)
            t0 = time.monotonic()
            c.cmd(f"LOGIN {user} {pw(user)}")
            lat.append((time.monotonic() - t0) * 1000)
            c.cmd("SELECT INBOX")
            c.cmd("FETCH 1:* (UID FLAGS RFC822.SIZE ENVELOPE)")
            c.cmd("STORE 1 +FLAGS (\\Deleted)")
            c.cmd("EXPUNGE")
            c.cmd("LOGOUT")
            c.sock.close()
            cmds += CMDS_PER_SESSION
        q.put((cmds, lat, None))
    except Exception as e:  # noqa: BLE001 -- reported by the parent
        if not warm:
            ready.put(None)
        q.put((cmds, lat, repr(e)))


def server_usage(root):
    """(CPU seconds, minor page faults) so far of process root, its live
    descendants and its reaped children: the CPU of each live descendant
    (utime + stime) and of root with its reaped children (cutime, cstime);
    the faults of each with its reaped children (minflt + cminflt)."""
    tck = os.sysconf("SC_CLK_TCK")
    kids = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                f = open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            kids.setdefault(int(f[1]), []).append((int(d), f))
    cpu, faults, stack, seen = 0.0, 0, [root], set()
    while stack:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        for child, f in kids.get(pid, []):
            cpu += (int(f[11]) + int(f[12])) / tck
            faults += int(f[7]) + int(f[8])
            stack.append(child)
    f = open(f"/proc/{root}/stat").read().rsplit(")", 1)[1].split()
    return cpu + sum(int(x) for x in f[11:15]) / tck, faults + int(f[7]) + int(f[8])


def perf_start(root):
    """perf record of root and its processes (and those it forks) into perf_out + .N."""
    global perf_runs
    perf_runs += 1
    pids = [root]
    for d in os.listdir("/proc"):
        try:
            if d.isdigit() and int(open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()[1]) == root:
                pids.append(int(d))
        except OSError:
            pass
    p = subprocess.Popen(["perf", "record"] + os.environ.get("PERFARGS", "-F 999 --call-graph dwarf").split() +
                         ["-o", f"{perf_out}.{perf_runs}", "-p", ",".join(map(str, pids))],
                         stderr=subprocess.DEVNULL)
    time.sleep(1)
    return p


def mix(port, root, own, profile=False):
    """(commands/s, login ms list, server CPU ms per session, page faults per session) of one run of CLIENTS x SESSIONS
    sessions; root: the server's master process (tandemd, Cyrus's master); own: each client
    from its own address (127.0.1.N), else all from 127.0.0.1. profile (and
    BENCH_PERF=file): the run recorded by perf into file.N (a profile, not a figure: perf
    slows the server)."""
    ctx = mp.get_context("fork")
    start, ready, q = ctx.Event(), ctx.Queue(), ctx.Queue()
    procs = [ctx.Process(target=mix_client, args=(port, u, own, ready, start, q)) for u in USERS]
    for p in procs:
        p.start()
    for _ in procs:
        ready.get(timeout=600)  # every warm-up done
    time.sleep(0.3)
    perf = perf_start(root) if perf_out and profile else None
    cpu0, flt0 = server_usage(root)
    t0 = time.monotonic()
    start.set()
    res = [q.get(timeout=600) for _ in procs]
    wall = time.monotonic() - t0
    if perf:
        perf.send_signal(signal.SIGINT)
        perf.wait()
    for p in procs:
        p.join()
    time.sleep(0.3)  # the last sessions exit and are reaped
    cpu, flt = server_usage(root)
    cpu, flt = cpu - cpu0, flt - flt0
    errors = [e for _, _, e in res if e]
    if errors:
        raise RuntimeError(f"{len(errors)} mix clients failed: {errors[0]}")
    cmds = sum(c for c, _, _ in res)
    lat = [x for _, l, _ in res for x in l]
    nsess = len(USERS) * SESSIONS
    return cmds / wall, lat, 1000 * cpu / nsess, flt / nsess


def set_cache(tm, on):
    """auth_cache_size default (on) or 0 (off), by a reload of the running tandemd when it is not
    so already. Only then: a reload lets every idle session process go (they run the old
    configuration), and Cyrus's processes are never restarted between repetitions, so a reload
    of tandem for nothing would time it with freshly forked processes beside a Cyrus whose
    processes have served the earlier repetitions."""
    if getattr(tm, "cache_on", True) == on:
        return
    tm.cache_on = on
    text = open(tm.conf).read().replace("auth_cache_size: 0\n", "")
    open(tm.conf, "w").write(text + ("" if on else "auth_cache_size: 0\n"))
    log = tm.dir + ".log"
    n = open(log).read().count("event=reload")
    tm.proc.send_signal(signal.SIGHUP)
    for _ in range(200):
        if open(log).read().count("event=reload") > n:
            return
        time.sleep(0.025)
    raise RuntimeError("tandemd did not reload")


def emit(obj):
    print(json.dumps(obj), flush=True)


def main():
    if os.environ.get("TANDEM_BIN"):  # another build's tandemd (A/B runs: TANDEM_BIN=/tmp/base-bin)
        bench_cyrus.BIN = os.path.abspath(os.environ["TANDEM_BIN"])
    if not cyrus.available() or os.geteuid() != 0:
        print("bench_login: SKIP (Cyrus 3.6 not installed or not root)", file=sys.stderr)
        return
    root = tempfile.mkdtemp(prefix="bench-login-", dir="/tmp")
    os.chmod(root, 0o755)
    started, cleanup = [], []
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # the cleanup below runs
    try:
        if True in ADDR_MODES:
            cyrus_with_client_names(root, cleanup)
        lp, ip = free_port(), free_port()
        tm = Tandem(root, "tl", f"lmtp_listen: 127.0.0.1:{lp}\nimap_listen: 127.0.0.1:{ip}\nallowplaintext: yes\n"
                                "sync_log: no\n")
        for u in USERS:
            tm.cli("user", "add", u, stdin=(pw(u) + "\n").encode())
        tm.start(lp)
        started.append(tm)
        cm = cyrus.Cyrus(root, "cl")
        started.append(cm)
        for u in USERS:
            cyrus_create_user(cm, u, pw(u))
        # enough messages for every expunge of every repetition, and some left
        t_need = 2 * len(ADDR_MODES) * REPS * SESSIONS + 10
        c_need = len(ADDR_MODES) * REPS * SESSIONS + 10
        deliver_lmtp(lp, [(u, small_message(u, i)) for i in range(t_need) for u in USERS], 4)
        deliver_lmtp(cm.lmtp_port, [(u, small_message(u, i)) for i in range(c_need) for u in USERS], 4)

        # 1. LOGIN latency (BENCH_LOGIN_N=0: skipped)
        lat = {"t": [], "t0": [], "c": []}
        cold = {"t": [], "t0": [], "c": []}
        for rep in range(REPS if LOGIN_N else 0):
            user = USERS[rep]
            order = ["t", "t0", "c"] if rep % 2 == 0 else ["c", "t0", "t"]
            for who in order:
                if who != "c":
                    set_cache(tm, who == "t")
                cl, warm = login_latency(cm.imap_port if who == "c" else ip, user)
                cold[who].append(cl)
                lat[who].append(warm)
        row = {"bench": "login_latency", "logins": LOGIN_N, "reps": REPS}
        for who, name in (("t", "tandem"), ("t0", "tandem_nocache"), ("c", "cyrus")):
            if not lat[who]:
                continue
            row[name + "_p50_ms"] = round(statistics.median(statistics.median(x) for x in lat[who]), 2)
            row[name + "_p95_ms"] = round(statistics.median(pct(x, 95) for x in lat[who]), 2)
            row[name + "_first_ms"] = round(statistics.median(cold[who]), 2)
        if LOGIN_N:
            emit(row)

        # 2. the login-heavy mix, per client address mode; tandem (with its cache) and Cyrus
        # alternate within each repetition, and so do the address modes. tandem without its
        # cache (t0) runs after all of them: switching the cache is a reload, which lets every
        # idle session process go, and tandem's timed runs are to be those of a server that
        # has been running, as Cyrus's are (its processes serve every repetition).
        cyrus_master = int(open(cm.pidfile).read().split()[0])
        res = {own: tuple({"t": [], "t0": [], "c": []} for _ in range(4)) for own in ADDR_MODES}

        def one_mix(who, own):
            rates, mlat, mcpu, mflt = res[own]
            if who != "c":
                set_cache(tm, who == "t")
            r, l, cpu, flt = mix(cm.imap_port if who == "c" else ip,
                                 cyrus_master if who == "c" else tm.proc.pid, own, who != "c")
            mflt[who].append(flt)
            rates[who].append(r)
            mlat[who].append(l)
            mcpu[who].append(cpu)
        for rep in range(REPS):
            order = ["t", "c"] if rep % 2 == 0 else ["c", "t"]
            for own in (ADDR_MODES if rep % 2 == 0 else ADDR_MODES[::-1]):
                for who in [w for w in order if w in MODES]:
                    one_mix(who, own)
        if "t0" in MODES:  # yescrypt at every login, whatever the address: one mode is enough
            for rep in range(REPS):
                one_mix("t0", ADDR_MODES[0])
        text = open(tm.dir + ".log").read()
        for own in ADDR_MODES:
            rates, mlat, mcpu, mflt = res[own]
            row = {"bench": "login_mix", "clients": CLIENTS, "sessions_per_client": SESSIONS,
                   "commands_per_session": CMDS_PER_SESSION, "reps": REPS,
                   "client_addresses": CLIENTS if own else 1}
            for who, name in (("t", "tandem"), ("t0", "tandem_nocache"), ("c", "cyrus")):
                if not rates[who]:
                    continue
                row[name + "_cmds_per_s"] = round(statistics.median(rates[who]), 1)
                row[name + "_runs"] = [round(x, 1) for x in rates[who]]
                row[name + "_login_p50_ms"] = round(statistics.median(statistics.median(x) for x in mlat[who]), 1)
                row[name + "_login_p95_ms"] = round(statistics.median(pct(x, 95) for x in mlat[who]), 1)
                row[name + "_server_cpu_ms_per_session"] = round(statistics.median(mcpu[who]), 1)
                row[name + "_page_faults_per_session"] = round(statistics.median(mflt[who]), 1)
            if rates["t"] and rates["c"]:
                row["ratio"] = round(row["tandem_cmds_per_s"] / row["cyrus_cmds_per_s"], 2)
            if rates["t0"] and rates["c"]:
                row["ratio_nocache"] = round(row["tandem_nocache_cmds_per_s"] / row["cyrus_cmds_per_s"], 2)
            # over the whole run (both modes when both ran)
            row["tandem_auth_cache"] = {k: text.count("auth_cache=" + k) for k in ("hit", "miss", "off")}
            row["tandem_auth_cache"]["unanswered"] = text.count("event=auth_cache_unanswered")
            row["load1"] = round(os.getloadavg()[0], 1)
            emit(row)
    finally:
        for s in reversed(started):
            try:
                s.stop()
            except Exception:  # noqa: BLE001
                pass
        for f in cleanup:
            f()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
