"""tlib.py: the integration tests' harness (Python standard library only).

Starts nothing by itself: it makes instances in temp dirs, runs the real
`tandem` binary, and counts checks. Each test file does

    t = Suite("name")
    with t.case("what"):
        t.check(cond, "message")
    t.done()            # prints RESULT passed=N failed=M skipped=K, exits 0/1

A case passes when none of its checks failed and it raised nothing.

A part that cannot run here calls t.skip(reason, what) (reason: a short
word such as "cyrus", "root" or "mount"). A skip is loud: done() exits 1
unless the environment variable TANDEM_ALLOW_SKIP names the reason
(comma-separated, or "all"), e.g. TANDEM_ALLOW_SKIP=cyrus,root.
"""
import base64
import contextlib
import hashlib
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import traceback

TOP = os.environ.get("TANDEM_TOP") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("TANDEM_BIN") or os.path.join(TOP, "bin")
TANDEM = os.path.join(BIN, "tandem")


class Suite:
    def __init__(self, name):
        self.name = name
        self.passed = 0
        self.failed = 0
        self._case_failed = False
        self.skipped = 0
        self.skips = []         # [(reason, what)]
        seed = os.environ.get("TANDEM_SEED")
        self.seed = int(seed) if seed else random.randrange(1 << 30)
        self.rng = random.Random(self.seed)
        print(f"{name}: seed {self.seed} (rerun with TANDEM_SEED={self.seed})")

    @contextlib.contextmanager
    def case(self, what):
        self._case_failed = False
        try:
            yield
        except Exception:
            self._case_failed = True
            print(f"  exception in {what}:\n" + traceback.format_exc())
        if self._case_failed:
            self.failed += 1
            print(f"FAIL {what}")
        else:
            self.passed += 1
            print(f"PASS {what}")

    def check(self, cond, msg):
        if not cond:
            self._case_failed = True
            print(f"  check failed: {msg}")
        return cond

    def eq(self, got, want, msg):
        return self.check(got == want, f"{msg}: got {got!r}, want {want!r}")

    def imap_equal(self, a, b, what, **kw):
        """A check that tlib.imap_oracle finds a and b equal as their IMAP
        clients see them (arguments as imap_oracle's)."""
        ok, out = imap_oracle(a, b, **kw)
        return self.check(ok, f"{what}: the IMAP oracle sees differences:\n{out}")

    def skip(self, reason, what, count=1):
        """Records that `what` (count cases) did not run, because of `reason`
        (a short word: "cyrus", "root", "mount"...). Prints a SKIP line."""
        self.skipped += count
        self.skips.append((reason, what))
        allowed = "allowed by TANDEM_ALLOW_SKIP" if skip_allowed(reason) else \
            f"NOT allowed: set TANDEM_ALLOW_SKIP={reason} to accept it"
        print(f"SKIP reason={reason} {what} ({allowed})")

    def done(self):
        print(f"RESULT passed={self.passed} failed={self.failed} skipped={self.skipped}")
        refused = sorted({r for r, _ in self.skips if not skip_allowed(r)})
        if refused:
            print(f"{self.name}: skipped for {','.join(refused)} without TANDEM_ALLOW_SKIP naming it: failing")
        sys.exit(1 if self.failed or refused else 0)


def skip_allowed(reason):
    """Whether TANDEM_ALLOW_SKIP (comma- or space-separated reasons, or
    "all") accepts a skip for `reason`."""
    allowed = set(re.split(r"[,\s]+", os.environ.get("TANDEM_ALLOW_SKIP", "").strip())) - {""}
    return "all" in allowed or reason in allowed


def cyrus_skip_reason():
    """None when a real Cyrus 3.6 can run here, else the skip reason:
    "root" (Cyrus's tests run it as the cyrus user) or "cyrus" (not
    installed)."""
    if os.geteuid() != 0:
        return "root"
    if not (os.path.exists("/usr/lib/cyrus/bin/master") and os.path.exists("/usr/lib/cyrus/bin/sync_client")):
        return "cyrus"
    return None


class Instance:
    """A tandem instance made with `tandem init` in a temp dir."""

    def __init__(self, root=None, channels=None, extra_conf=""):
        self.own_root = root is None
        self.root = root or tempfile.mkdtemp(prefix="tandem-it-")
        self.dir = os.path.join(self.root, "inst")
        # the listeners are the Daemon's (free loopback ports)
        args = ["init", "--servername", "test.example", "--no-listen"]
        if channels:
            args += ["--channels", channels]
        r = self.run(args + [self.dir], conf=False)
        if r.returncode != 0:
            raise RuntimeError(f"tandem init failed: {r.stderr}")
        self.conf = os.path.join(self.dir, "tandem.conf")
        if extra_conf:
            with open(self.conf, "a") as f:
                f.write(extra_conf)

    def run(self, args, stdin=b"", conf=True, timeout=60):
        cmd = [TANDEM] + (["-C", self.conf] if conf else []) + list(args)
        if isinstance(stdin, str):
            stdin = stdin.encode()
        return _run(cmd, stdin, timeout)

    def ok(self, args, stdin=b""):
        r = self.run(args, stdin)
        if r.returncode != 0:
            raise RuntimeError(f"tandem {' '.join(args)} failed ({r.returncode}): {r.stderr}")
        return r.stdout

    def messages(self, mailbox, expunged=False):
        """[(uid, modseq, flags, internaldate, size, guid)] of a mailbox."""
        args = ["message", "list"] + (["--expunged"] if expunged else []) + [mailbox]
        out = self.ok(args)
        rows = []
        for line in out.splitlines():
            uid, modseq, flags, idate, size, guid = line.split("\t")
            rows.append((int(uid), int(modseq), flags.strip("()"), int(idate), int(size), guid))
        return rows

    def cleanup(self):
        if self.own_root:
            shutil.rmtree(self.root, ignore_errors=True)


class Result:
    def __init__(self, rc, out, err):
        self.returncode, self.stdout, self.stderr = rc, out, err


def _run(cmd, stdin, timeout):
    p = subprocess.run(cmd, input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    return Result(p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace"))


def make_message(rng, i, size=None):
    """A deterministic RFC 5322 message (CRLF) of about `size` bytes."""
    size = size or rng.randint(200, 4000)
    head = (f"From: sender{i}@example.net\r\nTo: rcpt@example.com\r\n"
            f"Subject: test message {i}\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
            f"Message-ID: <{i}.{rng.randrange(1 << 40)}@example.net>\r\n\r\n")
    body = []
    n = len(head)
    while n < size:
        line = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz ") for _ in range(70)) + "\r\n"
        body.append(line)
        n += len(line)
    return (head + "".join(body)).encode()


def sha1(data):
    return hashlib.sha1(data).hexdigest()


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Daemon:
    """A running `tandemd -f` for an Instance, on free loopback ports.

    d = Daemon(inst, services=("imap", "lmtp")); d.port["imap"]; d.stop()
    Its log (stderr) is in d.logfile; d.log() returns it.
    """

    def __init__(self, inst, services=("imap", "imaps", "lmtp"), extra_conf="", ports=None):
        import time
        self.inst = inst
        self.port = {}
        lines = []
        for s in services:
            self.port[s] = (ports or {}).get(s) or free_port()
            lines.append(f"{s}_listen: 127.0.0.1:{self.port[s]}")
        with open(inst.conf, "a") as f:
            f.write("\n".join(lines) + "\nallowplaintext: yes\n" + extra_conf)
        self.logfile = os.path.join(inst.root, f"tandemd-{len(os.listdir(inst.root))}.log")
        self.proc = subprocess.Popen([os.path.join(BIN, "tandemd"), "-C", inst.conf, "-f"],
                                     stdout=subprocess.DEVNULL, stderr=open(self.logfile, "w"))
        deadline = time.time() + 10
        import socket
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tandemd exited {self.proc.returncode}: {self.log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port[services[0]]), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("tandemd did not start listening: " + self.log())

    def log(self):
        try:
            return open(self.logfile).read()
        except OSError:
            return ""

    def stop(self, timeout=30):
        import signal
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def allow_replication(inst, user="repl", password="replpw"):
    """Makes inst a replica a master may feed: `user` (with password) is
    an admin there. Returns inst."""
    text = open(inst.conf).read().replace("admins: admin\n", f"admins: admin {user}\n")
    open(inst.conf, "w").write(text)
    inst.ok(["user", "add", user], password + "\n")
    return inst


class Pair:
    """A master Instance and a replica Instance (with its tandemd serving
    the sync port, or with transport="imap" its IMAP port: the SYNC*
    commands), wired as channel `channel` of the master."""

    def __init__(self, channel="repl1", extra_master="", transport="csync"):
        import tempfile
        self.root = tempfile.mkdtemp(prefix="tandem-pair-")
        self.channel = channel
        self.service = "imap" if transport == "imap" else "sync"
        self.port = free_port()
        os.makedirs(os.path.join(self.root, "m"))
        os.makedirs(os.path.join(self.root, "r"))
        self.master = Instance(root=os.path.join(self.root, "m"), channels=channel,
                               extra_conf=f"{channel}_sync_host: 127.0.0.1:{self.port}\nsync_authname: repl\n"
                                          f"sync_password: replpw\nsync_repeat_interval: 0\n"
                                          f"{channel}_sync_shutdown_file: {self.root}/shutdown\n" + extra_master)
        self.replica = Instance(root=os.path.join(self.root, "r"))
        allow_replication(self.replica)
        self.daemon = None
        self.start_replica()

    def start_replica(self):
        if self.daemon is None:
            self.daemon = Daemon(self.replica, services=(self.service,), ports={self.service: self.port})
        else:
            self._restart()

    def _restart(self):
        import time
        self.daemon.proc = subprocess.Popen([os.path.join(BIN, "tandemd"), "-C", self.replica.conf, "-f"],
                                            stdout=subprocess.DEVNULL, stderr=open(self.daemon.logfile, "a"))
        import socket
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        return self.daemon

    def stop_replica(self):
        if self.daemon:
            self.daemon.stop()

    def sync(self, *args, timeout=120):
        return self.master.run(["sync", "-n", self.channel, "-o"] + list(args), timeout=timeout)

    def compare(self):
        r = self.master.run(["compare", "-n", self.channel, "-o"])
        return r.returncode, r.stdout + r.stderr

    def cleanup(self):
        self.stop_replica()
        shutil.rmtree(self.root, ignore_errors=True)


class CsyncConn:
    """A raw csync connection; replies are lists of lines, a literal's bytes
    kept inside its line."""

    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.buf = b""
        self.banner = []
        while True:
            line = self.line()
            self.banner.append(line)
            if line.startswith(b"* OK"):
                break

    def _raw_line(self):
        while b"\n" not in self.buf:
            chunk = self.s.recv(65536)
            if not chunk:
                raise EOFError
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line + b"\n"

    def _take(self, n):
        while len(self.buf) < n:
            chunk = self.s.recv(65536)
            if not chunk:
                raise EOFError
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def line(self):
        out = b""
        while True:
            part = self._raw_line()
            m = re.search(rb"\{(\d+)\+?\}\r?\n$", part)
            if not m:
                return (out + part).rstrip(b"\r\n")
            out += part + self._take(int(m.group(1)))

    def cmd(self, data):
        self.s.sendall(data if data.endswith(b"\r\n") else data + b"\r\n")
        out = []
        while True:
            line = self.line()
            out.append(line)
            if not line.startswith(b"*"):
                return out

    def auth(self, user, pw):
        tok = base64.b64encode(b"\0" + user.encode() + b"\0" + pw.encode())
        return self.cmd(b"AUTHENTICATE PLAIN " + tok)[-1]


def lmtp_send(port, rcpt, msg):
    """Delivers msg to one recipient over LMTP; the reply code (250, or
    the refusal's code)."""
    import smtplib
    l = smtplib.LMTP("127.0.0.1", port)
    try:
        l.sendmail("s@example.net", [rcpt], msg)
        return 250
    except smtplib.SMTPRecipientsRefused as e:
        return list(e.recipients.values())[0][0]
    finally:
        l.close()


def wait_equal(inst, chan, timeout=30):
    """Polls `tandem compare -n chan` on a master until it reports the
    replica equal: (True, output), or (False, the last output)."""
    import time
    deadline = time.time() + timeout
    out = ""
    while time.time() < deadline:
        r = inst.run(["compare", "-n", chan, "-o"])
        out = r.stdout + r.stderr
        if r.returncode == 0:
            return True, out
        time.sleep(0.3)
    return False, out



def proc_children(pid):
    """pids whose parent is pid (from /proc)."""
    out = []
    for e in os.listdir("/proc"):
        if not e.isdigit():
            continue
        try:
            stat = open(f"/proc/{e}/stat").read()
        except OSError:
            continue
        if int(stat[stat.rindex(")") + 2:].split()[1]) == pid:
            out.append(int(e))
    return out


def proc_alive(pid):
    """pid exists and is not a zombie."""
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"

def wait_for(predicate, timeout=30, what="the condition", interval=0.05):
    """Polls predicate() until it returns something true; returns that
    value. Raises AssertionError naming `what` (and the last value) after
    `timeout` seconds: deadlines are generous, tests assert outcomes, not
    durations."""
    import time
    deadline = time.time() + timeout
    last = None
    while True:
        last = predicate()
        if last:
            return last
        if time.time() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r:.300})")
        time.sleep(interval)


def wait_log(daemon, needle, timeout=30, after=0):
    """Waits until daemon's log (from byte offset `after`) contains
    `needle` (a string or a compiled regex); returns the log."""
    def seen():
        text = daemon.log()[after:]
        hit = needle.search(text) if hasattr(needle, "search") else needle in text
        return text if hit else None
    return wait_for(seen, timeout, f"{getattr(needle, 'pattern', needle)!r} in {daemon.logfile}")


# ---- the independent IMAP oracle ----------------------------------------------

ORACLE_PW = "oracle-pw"


class OracleDaemon:
    """A read-side tandemd for an Instance that has none serving IMAP: its
    own config file (a copy with sync_log off, so it starts no sync client
    and cannot replicate anything itself; its own pid file; IMAP on a free
    loopback port). The Instance's tandem.conf is not touched."""

    def __init__(self, inst):
        import time
        self.port = free_port()
        keep = [l for l in open(inst.conf).read().splitlines()
                if not re.match(r"^\s*(\w+_listen|sync_log|pidfile|allowplaintext)\s*:", l)]
        self.root = tempfile.mkdtemp(prefix="tandem-oracle-")
        self.conf = os.path.join(self.root, "oracle.conf")
        open(self.conf, "w").write("\n".join(keep) + f"\nimap_listen: 127.0.0.1:{self.port}\nsync_log: 0\n"
                                   f"allowplaintext: yes\npidfile: {self.root}/tandemd.pid\n")
        self.logfile = os.path.join(self.root, "tandemd.log")
        self.proc = subprocess.Popen([os.path.join(BIN, "tandemd"), "-C", self.conf, "-f"],
                                     stdout=subprocess.DEVNULL, stderr=open(self.logfile, "w"))
        deadline = time.time() + 20
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"oracle tandemd exited {self.proc.returncode}: {open(self.logfile).read()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                if time.time() > deadline:
                    raise RuntimeError("oracle tandemd did not start listening")
                time.sleep(0.05)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.root, ignore_errors=True)


def _users(inst):
    r = inst.run(["user", "list"])
    return sorted(l.split("\t")[0].strip() for l in r.stdout.splitlines() if l.strip())


def imap_oracle(a, b, users=None, passwords=None, ignore_users=("repl",)):
    """Decides "these two tandem instances are equal" the way their IMAP
    clients would, independently of tandem's `compare`: for every user,
    logs in to both sides' IMAP and compares imapview.client_view (folders,
    subscriptions, UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ, per-UID flags,
    MODSEQ, RFC822.SIZE, INTERNALDATE, SHA-1 of BODY.PEEK[], GETACL,
    GETMETADATA, GETQUOTAROOT).

    a, b: an Instance, or (Instance, IMAP port) when a tandemd already
    serves its IMAP; an Instance alone gets a read-only OracleDaemon for the
    check. users: default, every user of a (both sides must have the same
    users, apart from ignore_users: the replica's own replication admin).
    passwords: {user: password} for users whose password the test knows
    (and logs in with later); the others get ORACLE_PW. Either is set on
    both sides with `tandem user passwd` (passwords are not replicated, so
    this changes nothing the check compares). Returns (True, "") or
    (False, the differences)."""
    import imapview
    sides = []
    started = []
    try:
        for side in (a, b):
            inst, port = side if isinstance(side, tuple) else (side, None)
            if port is None:
                d = OracleDaemon(inst)
                started.append(d)
                port = d.port
            sides.append((inst, port))
        diffs = []
        ua = [u for u in _users(sides[0][0]) if u not in ignore_users]
        ub = [u for u in _users(sides[1][0]) if u not in ignore_users]
        if users is None:
            users = ua
            if ua != ub:
                diffs.append(f"users: {ua} != {ub}")
        pw = dict(passwords or {})
        for u in users:
            # the known password (or ORACLE_PW) set on both sides
            pw.setdefault(u, ORACLE_PW)
            for inst, _ in sides:
                inst.run(["user", "passwd", u], f"{pw[u]}\n")
            views = []
            for k, (inst, port) in enumerate(sides):
                try:
                    v = imapview.client_view(port, u, pw[u])
                    if "INBOX" not in v.get("list", {}):
                        diffs.append(f"user {u}: side {k + 1} lists no INBOX: {v.get('list')}")
                except Exception as e:  # noqa: BLE001
                    v = {"error": repr(e)}
                    diffs.append(f"user {u}: side {k + 1}: {e!r}")
                views.append(v)
            diffs += [f"user {u}: {d}" for d in imapview.view_diffs(views[0], views[1])]
        return (not diffs), "\n".join(diffs[:60])
    finally:
        for d in started:
            d.stop()
