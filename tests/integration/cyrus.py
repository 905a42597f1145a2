"""cyrus.py: a throwaway real Cyrus IMAP 3.6 instance for interoperation
tests (Debian's cyrus-imapd / cyrus-replication packages), following
../shared/reference/running-cyrus.md: its own imapd.conf and cyrus.conf in
a temp dir (every cmd= with -C), the configdirectory's sub-directories,
SASL users in its own sasldb (realm = servername), Cyrus's `master` run as
the cyrus user with -d and a pid file, ports on 127.0.0.1, stopped by pid.
"""
import base64
import imaplib
import os
import re
import signal
import smtplib
import socket
import sys
import subprocess
import time

from tlib import free_port

LIBEXEC = "/usr/lib/cyrus/bin"


def available():
    return os.path.exists(os.path.join(LIBEXEC, "master")) and os.path.exists(os.path.join(LIBEXEC, "sync_client"))


def as_cyrus(args, **kw):
    return subprocess.run(["setpriv", "--reuid=cyrus", "--regid=mail", "--init-groups"] + args, **kw)


class Cyrus:
    def __init__(self, root, name, sync_server=False, sync_to=None, admins="admin", sieve=False):
        self.dir = os.path.join(root, name)
        self.name = name
        self.imap_port, self.lmtp_port = free_port(), free_port()
        self.sync_port = free_port() if sync_server else None
        self.sieve_port = free_port() if sieve else None
        cfg = os.path.join(self.dir, "config")
        for sub in ["db", "socket", "proc", "lock", "log", "msg", "sync", "user", "quota"]:
            os.makedirs(os.path.join(cfg, sub))
        os.makedirs(os.path.join(self.dir, "spool"))
        os.makedirs(os.path.join(self.dir, "sieve"))
        self.conf = os.path.join(self.dir, "imapd.conf")
        lines = [f"servername: {name}", f"configdirectory: {cfg}", f"partition-default: {self.dir}/spool",
                 "defaultpartition: default", f"admins: {admins}", "altnamespace: no", "unixhierarchysep: no",
                 "virtdomains: off", "allowplaintext: yes", "sasl_pwcheck_method: auxprop",
                 "sasl_auxprop_plugin: sasldb", f"sasl_sasldb_path: {self.dir}/sasldb2", "sasl_mech_list: PLAIN",
                 "lmtp_downcase_rcpt: yes", f"sievedir: {self.dir}/sieve"]
        if sync_to:
            lines += ["sync_log: 1", "sync_host: 127.0.0.1", f"sync_port: {sync_to}", "sync_try_imap: 0",
                      "sync_authname: repl", "sync_password: replpw"]
        open(self.conf, "w").write("\n".join(lines) + "\n")
        services = [f'imap cmd="imapd -C {self.conf}" listen="127.0.0.1:{self.imap_port}" prefork=0',
                    f'lmtp cmd="lmtpd -C {self.conf} -a" listen="127.0.0.1:{self.lmtp_port}" prefork=0']
        if self.sync_port:
            services.append(f'syncserver cmd="sync_server -C {self.conf}" listen="127.0.0.1:{self.sync_port}" prefork=0')
        if self.sieve_port:
            services.append(f'sieve cmd="timsieved -C {self.conf}" listen="127.0.0.1:{self.sieve_port}" prefork=0')
        open(os.path.join(self.dir, "cyrus.conf"), "w").write(
            "START {\n  recover cmd=\"ctl_cyrusdb -C %s -r\"\n}\nSERVICES {\n  %s\n}\nEVENTS {\n}\n"
            % (self.conf, "\n  ".join(services)))
        for user, pw in [("admin", "adminpw"), ("repl", "replpw")]:
            subprocess.run(["saslpasswd2", "-p", "-c", "-f", f"{self.dir}/sasldb2", "-u", name, user],
                           input=pw.encode(), check=True)
        os.chmod(root, 0o755)
        subprocess.run(["chown", "-R", "cyrus:mail", self.dir], check=True)
        self.pidfile = os.path.join(self.dir, "master.pid")
        as_cyrus([os.path.join(LIBEXEC, "master"), "-C", self.conf, "-M", os.path.join(self.dir, "cyrus.conf"),
                  "-p", self.pidfile, "-d", "-L", os.path.join(self.dir, "master.out")], cwd=self.dir, check=True)
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.imap_port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"Cyrus {name} did not start")

    def imap(self, user="admin", password="adminpw"):
        im = imaplib.IMAP4("127.0.0.1", self.imap_port)
        im.login(user, password)
        return im

    def add_login(self, user, password):
        """A SASL password for a mail user (the mailbox is created apart)."""
        subprocess.run(["saslpasswd2", "-p", "-c", "-f", f"{self.dir}/sasldb2", "-u", self.name, user],
                       input=password.encode(), check=True)
        subprocess.run(["chown", "cyrus:mail", f"{self.dir}/sasldb2"], check=True)

    def deliver(self, rcpt, msg):
        l = smtplib.LMTP("127.0.0.1", self.lmtp_port)
        l.sendmail("sender@example.net", [rcpt], msg)
        l.close()

    def sync_client(self, *args, timeout=120):
        return as_cyrus([os.path.join(LIBEXEC, "sync_client"), "-C", self.conf] + list(args), cwd=self.dir,
                        capture_output=True, text=True, timeout=timeout)

    def managesieve(self, user, password):
        """A logged-in ManageSieve (RFC 5804) session to timsieved (needs sieve=True).

        Cyrus's timsieved (forked by its master per connection) has once in
        a CI run accepted a connection and sent no greeting for 30 s; what
        these tests check is replication, not timsieved, so a greeting that
        does not come is tried again (3 times, the wait printed)."""
        for attempt in range(3):
            try:
                return ManageSieve("127.0.0.1", self.sieve_port, user, password, greeting_timeout=20)
            except (TimeoutError, socket.timeout):
                print(f"  note: Cyrus {self.name}'s timsieved sent no greeting in 20 s (attempt {attempt + 1})",
                      file=sys.stderr, flush=True)
        return ManageSieve("127.0.0.1", self.sieve_port, user, password)

    def put_sieve(self, user, password, name, script, activate=True):
        """Uploads a Sieve script for user (PUTSCRIPT), and makes it the active one (SETACTIVE)."""
        ms = self.managesieve(user, password)
        try:
            ms.putscript(name, script)
            if activate:
                ms.setactive(name)
        finally:
            ms.logout()

    def stop(self):
        try:
            pid = int(open(self.pidfile).read().split()[0])
        except (OSError, ValueError, IndexError):
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        for _ in range(100):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
        os.kill(pid, signal.SIGKILL)


    def replica_config(self, sync_port=None, admins="admin repl"):
        """Writes imapd-replica.conf and cyrus-replica.conf beside this
        instance's own: the same configdirectory and spool (the old master
        coming back as a replica), no sync_* lines (so sync_log is off),
        `admins` including the replication user, and a syncserver service
        on sync_port (a free port when None). Returns the sync port."""
        self.sync_port = sync_port or free_port()
        self.replica_conf = os.path.join(self.dir, "imapd-replica.conf")
        keep = [l for l in open(self.conf).read().splitlines()
                if not l.startswith("sync_") and not l.startswith("admins:")]
        open(self.replica_conf, "w").write("\n".join(keep + [f"admins: {admins}"]) + "\n")
        c = self.replica_conf
        services = [f'imap cmd="imapd -C {c}" listen="127.0.0.1:{self.imap_port}" prefork=0',
                    f'lmtp cmd="lmtpd -C {c} -a" listen="127.0.0.1:{self.lmtp_port}" prefork=0',
                    f'syncserver cmd="sync_server -C {c}" listen="127.0.0.1:{self.sync_port}" prefork=0']
        self.replica_cyrus_conf = os.path.join(self.dir, "cyrus-replica.conf")
        open(self.replica_cyrus_conf, "w").write(
            "START {\n  recover cmd=\"ctl_cyrusdb -C %s -r\"\n}\nSERVICES {\n  %s\n}\nEVENTS {\n}\n"
            % (c, "\n  ".join(services)))
        subprocess.run(["chown", "cyrus:mail", self.replica_conf, self.replica_cyrus_conf], check=True)
        return self.sync_port

    def replica_start_command(self, syslog_socket=None):
        """The shell command that starts this instance's master with the
        replica config (replica_config first), as the cyrus user, -d with
        the same pid file. With syslog_socket (a bound AF_UNIX datagram
        socket), master and its children run in their own mount namespace
        whose /dev is a tmpfs of links to the real /dev (bound under the
        instance dir, in that namespace only) plus /dev/log -> the socket,
        so the caller reads Cyrus's syslog whether or not the host has a
        /dev/log."""
        import shlex
        master = ["setpriv", "--reuid=cyrus", "--regid=mail", "--init-groups",
                  os.path.join(LIBEXEC, "master"), "-C", self.replica_conf, "-M", self.replica_cyrus_conf,
                  "-p", self.pidfile, "-d", "-L", os.path.join(self.dir, "master-replica.out")]
        cmd = "cd %s && %s" % (shlex.quote(self.dir), " ".join(shlex.quote(a) for a in master))
        if not syslog_socket:
            return cmd
        realdev = os.path.join(self.dir, "realdev")
        os.makedirs(realdev, exist_ok=True)
        q = shlex.quote(realdev)
        inner = ("mount --rbind /dev %s && mount -t tmpfs -o mode=755 tmpfs /dev && "
                 "for f in %s/*; do ln -s \"$f\" /dev/; done && ln -sf %s /dev/log && %s"
                 % (q, q, shlex.quote(syslog_socket), cmd))
        return "unshare --mount --propagation private sh -c %s" % shlex.quote(inner)

    def wait_listening(self, port, timeout=20):
        """Waits until 127.0.0.1:port accepts a connection; False if not in time."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return True
            except OSError:
                time.sleep(0.1)
        return False

class ManageSieveError(Exception):
    pass


class ManageSieve:
    """A minimal ManageSieve client (RFC 5804): AUTHENTICATE "PLAIN",
    PUTSCRIPT, SETACTIVE, LISTSCRIPTS, GETSCRIPT, DELETESCRIPT, LOGOUT.
    Responses are parsed just enough for these commands."""

    def __init__(self, host, port, user, password, authz="", greeting_timeout=30):
        self.s = socket.create_connection((host, port), timeout=greeting_timeout)
        self.f = self.s.makefile("rb")
        try:
            self.capabilities = self._response()[0]
        except BaseException:
            self.s.close()
            raise
        self.s.settimeout(30)
        tok = base64.b64encode(f"{authz}\0{user}\0{password}".encode()).decode()
        self._send(f'AUTHENTICATE "PLAIN" "{tok}"\r\n'.encode())
        self._ok("AUTHENTICATE")

    def _send(self, data):
        self.s.sendall(data)

    def _response(self):
        """([data lines], status line): reads until OK/NO/BYE."""
        lines = []
        while True:
            line = self.f.readline()
            if not line:
                raise ManageSieveError("connection closed")
            line = line.rstrip(b"\r\n")
            if re.match(rb"^(OK|NO|BYE)\b", line):
                return lines, line
            m = re.search(rb"\{(\d+)\+?\}$", line)
            if m:
                data = self.f.read(int(m.group(1)))
                rest = self.f.readline().rstrip(b"\r\n")
                lines.append((line[:m.start()], data, rest))
            else:
                lines.append(line)

    def _ok(self, what):
        lines, status = self._response()
        if not status.startswith(b"OK"):
            raise ManageSieveError(f"{what}: {status!r}")
        return lines

    @staticmethod
    def _quote(s):
        return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'

    def putscript(self, name, script):
        if isinstance(script, str):
            script = script.encode()
        self._send(f"PUTSCRIPT {self._quote(name)} {{{len(script)}+}}\r\n".encode() + script + b"\r\n")
        self._ok("PUTSCRIPT")

    def setactive(self, name):
        self._send(f"SETACTIVE {self._quote(name)}\r\n".encode())
        self._ok("SETACTIVE")

    def deletescript(self, name):
        self._send(f"DELETESCRIPT {self._quote(name)}\r\n".encode())
        self._ok("DELETESCRIPT")

    def listscripts(self):
        """[(name, active)]."""
        self._send(b"LISTSCRIPTS\r\n")
        out = []
        for line in self._ok("LISTSCRIPTS"):
            if isinstance(line, tuple):
                out.append((line[1].decode(), b"ACTIVE" in line[2].upper()))
                continue
            m = re.match(rb'^"((?:[^"\\]|\\.)*)"\s*(ACTIVE)?', line, re.I)
            if m:
                out.append((re.sub(rb"\\(.)", rb"\1", m.group(1)).decode(), bool(m.group(2))))
        return out

    def getscript(self, name):
        self._send(f"GETSCRIPT {self._quote(name)}\r\n".encode())
        for line in self._ok("GETSCRIPT"):
            if isinstance(line, tuple):
                return line[1]
        return None

    def logout(self):
        try:
            self._send(b"LOGOUT\r\n")
            self._response()
        except (OSError, ManageSieveError):
            pass
        self.s.close()


# ---- what an IMAP client sees, and a sample of per-user state ------------------------------------

def fetch_rows(im, mailbox, drop=("\\Recent",)):
    """Selects mailbox read-only on an imaplib connection (Cyrus or tandem)
    and returns its records as an IMAP client sees them, sorted:
    [(uid, modseq, [flags without those in drop], SHA-1 of the body)]."""
    import hashlib
    im.select(mailbox, readonly=True)
    typ, data = im.uid("FETCH", "1:*", "(UID FLAGS MODSEQ BODY.PEEK[])")
    rows = []
    for d in data or []:
        if isinstance(d, tuple):
            head = d[0].decode()
            uid = int(re.search(r"UID (\d+)", head).group(1))
            modseq = int(re.search(r"MODSEQ \((\d+)\)", head).group(1))
            flags = sorted(f for f in re.search(r"FLAGS \(([^)]*)\)", head).group(1).split() if f not in drop)
            rows.append((uid, modseq, flags, hashlib.sha1(d[1]).hexdigest()))
    return sorted(rows)


def sample_state(cm, t, rng, messages=5, extra=()):
    """Gives a Cyrus master the per-user state the interop tests replicate:
    user.alice (+ .Work, .Sent with \\Sent special-use), user.bob and the
    mailboxes in extra; a quota; alice+Work deliverable (anyone p);
    `messages` deliveries spread over alice, alice+Work and bob; alice's
    subscriptions, flags, an ACL for bob, shared and private METADATA; bob's
    \\Seen in alice's Work. Checks each step with t."""
    from tlib import make_message
    im = cm.imap()
    for mb in ["user.alice", "user.alice.Work", "user.bob", *extra]:
        t.eq(im.create(mb)[0], "OK", f"create {mb} on Cyrus")
    t.eq(im._simple_command("CREATE", "user.alice.Sent", "(USE (\\Sent))")[0], "OK", "CREATE with USE \\Sent")
    t.eq(im.setquota("user.alice", "(STORAGE 50000)")[0], "OK", "SETQUOTA on Cyrus")
    im.setacl("user.alice.Work", "anyone", "p")	# so alice+Work delivers into it
    im.logout()
    for i in range(messages):
        cm.deliver(["alice", "alice+Work", "bob"][i % 3], make_message(rng, i))
    al = cm.imap("alice", "alicepw")
    al.subscribe("INBOX.Work")
    al.subscribe("INBOX.Sent")
    al.select("INBOX")
    al.store("1", "+FLAGS", "(\\Seen \\Flagged)")
    al.select("INBOX.Work")
    al.store("1", "+FLAGS", "($Label1)")
    al.setacl("INBOX.Work", "bob", "lrs")
    al._simple_command("SETMETADATA", "INBOX.Work", '(/shared/comment "work stuff" /private/comment "mine")')
    al.logout()
    bo = cm.imap("bob", "bobpw")
    bo.select("user.alice.Work")
    bo.store("1", "+FLAGS", "(\\Seen)")
    bo.logout()
