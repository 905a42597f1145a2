"""faultlib.py: the fault-injection suite's machinery (standard library only).

A Cluster is a master tandemd (imap + lmtp, one rolling sync client for
its channel) and a replica tandemd (sync), each restartable after a
SIGKILL on the same ports; optionally a Proxy (a TCP relay thread that can
cut every connection and refuse new ones) between the master's sync client
and the replica. A Workload drives LMTP deliveries (recording every
recipient answered 250 with the message's Message-ID) and IMAP flag
changes, expunges, moves, creates and renames. settle() waits until the
channel has nothing pending and compare --bodies is equal; missing()
lists acknowledged messages absent from the master or the replica.
"""
import hashlib
import imaplib
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

from tlib import BIN, Instance, free_port, make_message

TANDEMD = os.path.join(BIN, "tandemd")
PASSWORD = "pw"


class Node:
    """One tandemd with a fixed config and fixed ports; start() again after kill9()."""

    def __init__(self, inst, services, ports=None, extra_conf=""):
        self.inst = inst
        self.services = services
        self.port = {s: (ports or {}).get(s) or free_port() for s in services}
        with open(inst.conf, "a") as f:
            f.write("".join(f"{s}_listen: 127.0.0.1:{p}\n" for s, p in self.port.items()))
            f.write("allowplaintext: yes\n" + extra_conf)
        self.logfile = os.path.join(inst.root, "tandemd.log")
        self.proc = None
        self.start()

    def start(self, timeout=15):
        self.proc = subprocess.Popen([TANDEMD, "-C", self.inst.conf, "-f"], stdout=subprocess.DEVNULL,
                                     stderr=open(self.logfile, "a"))
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tandemd exited {self.proc.returncode}: {self.log()[-2000:]}")
            try:
                for p in self.port.values():
                    socket.create_connection(("127.0.0.1", p), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("tandemd did not start listening: " + self.log()[-2000:])

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill9(self):
        """SIGKILL tandemd's whole process group: sessions and sync clients too."""
        if self.alive():
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.proc:
            self.proc.wait()
        # children re-parented to init die with the group; give the kernel a moment
        time.sleep(0.05)

    def stop(self, timeout=30):
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def log(self):
        try:
            return open(self.logfile, errors="replace").read()
        except OSError:
            return ""

    def sync_client_pid(self, channel):
        """The pid of the running sync client of `channel` (from the log), or None."""
        if not self.alive():
            return None
        pids = re.findall(rf"event=sync_client_start channel={re.escape(channel)} pid=(\d+)", self.log())
        for pid in reversed(pids):
            try:
                stat = open(f"/proc/{pid}/stat").read()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2:].split()
            if int(fields[1]) == self.proc.pid and fields[0] != "Z":
                return int(pid)
        return None


class Proxy:
    """A TCP relay 127.0.0.1:port -> 127.0.0.1:target in a thread.
    cut() closes every relayed connection and stops listening (new
    connections are refused); restore() listens again on the same port."""

    def __init__(self, target):
        self.target = target
        self.port = free_port()
        self.lock = threading.Lock()
        self.conns = []
        self.lsock = None
        self.running = True
        self.cuts = 0
        self.relayed = 0
        self._listen()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _listen(self):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(16)
        s.setblocking(False)
        self.lsock = s

    def cut(self):
        with self.lock:
            self.cuts += 1
            if self.lsock:
                self.lsock.close()
                self.lsock = None
            for a, b in self.conns:
                for s in (a, b):
                    try:
                        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                    except OSError:
                        pass
                    s.close()
            self.conns = []

    def restore(self):
        with self.lock:
            if self.lsock is None:
                self._listen()

    def close(self):
        self.running = False
        self.cut()
        self.thread.join(2)

    def _loop(self):
        while self.running:
            with self.lock:
                socks = ([self.lsock] if self.lsock else []) + [s for c in self.conns for s in c]
            if not socks:
                time.sleep(0.02)
                continue
            try:
                ready, _, _ = select.select(socks, [], [], 0.05)
            except (OSError, ValueError):
                continue
            with self.lock:
                for s in ready:
                    if s is self.lsock:
                        self._accept()
                    else:
                        self._pump(s)

    def _accept(self):
        try:
            c, _ = self.lsock.accept()
        except OSError:
            return
        try:
            u = socket.create_connection(("127.0.0.1", self.target), timeout=2)
        except OSError:
            c.close()
            return
        c.setblocking(True)
        u.setblocking(True)
        self.conns.append((c, u))
        self.relayed += 1

    def _pump(self, s):
        pair = next((c for c in self.conns if s in c), None)
        if pair is None:
            return
        other = pair[1] if s is pair[0] else pair[0]
        try:
            data = s.recv(65536)
            if data:
                other.sendall(data)
                return
        except OSError:
            pass
        self.conns.remove(pair)
        for x in pair:
            x.close()


class Cluster:
    """Master (imap, lmtp, rolling sync client of `channel`) + replica (sync)."""

    def __init__(self, channel="repl1", replica_root=None, proxy=False, users=("alice", "bob"), extra_master=""):
        self.root = tempfile.mkdtemp(prefix="tandem-faults-")
        self.channel = channel
        self.users = list(users)
        self.master_node = self.replica_node = self.proxy = None
        try:
            self._setup(replica_root, proxy, extra_master)
        except Exception:
            self.cleanup()
            raise

    def _setup(self, replica_root, proxy, extra_master):
        channel = self.channel
        rroot = replica_root or os.path.join(self.root, "r")
        os.makedirs(os.path.join(self.root, "m"))
        os.makedirs(rroot, exist_ok=True)
        self.replica = Instance(root=rroot)
        text = open(self.replica.conf).read().replace("admins: admin\n", "admins: admin repl\n")
        open(self.replica.conf, "w").write(text)
        self.replica.ok(["user", "add", "repl"], "replpw\n")
        self.replica_node = Node(self.replica, ("sync",))
        sync_port = self.replica_node.port["sync"]
        if proxy:
            self.proxy = Proxy(sync_port)
            sync_port = self.proxy.port
        self.master = Instance(root=os.path.join(self.root, "m"), channels=channel,
                               extra_conf=f"{channel}_sync_host: 127.0.0.1:{sync_port}\nsync_authname: repl\n"
                                          "sync_password: replpw\nsync_repeat_interval: 0\n"
                                          "sync_reconnect_minwait: 200ms\nsync_reconnect_maxwait: 1s\n"
                                          "client_timeout: 2s\n" + extra_master)
        for u in self.users:
            self.master.ok(["user", "add", u], PASSWORD + "\n")
        self.master_node = Node(self.master, ("imap", "lmtp"))

    def status(self):
        r = self.master.run(["status", "-n", self.channel])
        return r.stdout + r.stderr

    def pending(self):
        m = re.search(r"pending_lines=(\d+)", self.status())
        return int(m.group(1)) if m else -1

    def compare(self, *users, bodies=True):
        r = self.master.run(["compare", "-n", self.channel, "-o"] + (["--bodies"] if bodies else []) + list(users),
                            timeout=120)
        return r.returncode, r.stdout + r.stderr

    def settle(self, timeout=30):
        """Waits until nothing is pending, no mailbox is listed as failed and
        compare --bodies is equal. Returns (done, seconds, last compare output)."""
        t0 = time.time()
        out = ""
        while time.time() - t0 < timeout:
            st = self.status()
            if "pending_lines=0" in st and "state=failed" not in st:
                rc, out = self.compare()
                if rc == 0:
                    return True, time.time() - t0, out
            time.sleep(0.3)
        rc, out = self.compare()
        return rc == 0 and "state=failed" not in self.status(), time.time() - t0, out

    def cleanup(self):
        for n in (self.master_node, self.replica_node):
            if n:
                n.kill9()
        if self.proxy:
            self.proxy.close()
        if not os.environ.get("TANDEM_KEEP"):
            shutil.rmtree(self.root, ignore_errors=True)


def lmtp_deliver(port, rcpts, data, timeout=10):
    """One LMTP transaction. Returns {rcpt: reply code}; a recipient whose
    final reply never came (connection lost) maps to None."""
    res = {r: None for r in rcpts}
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    f = s.makefile("rb")

    def reply():
        code = None
        while True:
            line = f.readline()
            if not line:
                raise ConnectionError("lmtp: connection closed")
            code = int(line[:3])
            if line[3:4] != b"-":
                return code

    try:
        reply()
        s.sendall(b"LHLO faults.example\r\n")
        reply()
        s.sendall(b"MAIL FROM:<sender@example.net>\r\n")
        if reply() != 250:
            return res
        accepted = []
        for r in rcpts:
            s.sendall(f"RCPT TO:<{r}>\r\n".encode())
            code = reply()
            if code == 250:
                accepted.append(r)
            else:
                res[r] = code
        if not accepted:
            return res
        s.sendall(b"DATA\r\n")
        if reply() != 354:
            return res
        body = data.replace(b"\r\n.", b"\r\n..")
        if body.startswith(b"."):
            body = b"." + body
        s.sendall(body + (b"" if body.endswith(b"\r\n") else b"\r\n") + b".\r\n")
        for r in accepted:
            res[r] = reply()
        try:
            s.sendall(b"QUIT\r\n")
        except OSError:
            pass
    except (OSError, ConnectionError, ValueError):
        pass
    finally:
        s.close()
    return res


def message_id(data):
    m = re.search(rb"(?im)^Message-ID:\s*(<[^>\r\n]*>)", data.split(b"\r\n\r\n", 1)[0])
    return m.group(1).decode() if m else None


class Workload:
    """Random LMTP deliveries and IMAP changes against the master.
    acked: {(user, message-id)} answered 250; doomed: {(user, message-id)}
    an expunge was attempted on (whatever its outcome)."""

    def __init__(self, cluster, rng):
        self.c = cluster
        self.rng = rng
        self.acked = set()
        self.doomed = set()
        self.counter = 0
        self.imap = {}
        self.boxes = {u: ["INBOX"] for u in cluster.users}
        self.nboxes = 0
        self.stats = {}
        self.errors = 0

    def _count(self, what):
        self.stats[what] = self.stats.get(what, 0) + 1

    def close(self):
        for conn in self.imap.values():
            try:
                conn.logout()
            except Exception:
                pass
        self.imap = {}

    def step(self):
        ops = [(self.deliver, 50), (self.flags, 15), (self.expunge, 8), (self.move, 8), (self.create, 4),
               (self.rename, 3)]
        op = self.rng.choices([o for o, _ in ops], [w for _, w in ops])[0]
        try:
            op()
        except (OSError, imaplib.IMAP4.error, imaplib.IMAP4.abort, EOFError, ConnectionError):
            self.errors += 1
            self.close()
            time.sleep(0.05)

    def deliver(self):
        self.counter += 1
        i = self.counter
        users = self.rng.sample(self.c.users, self.rng.randint(1, len(self.c.users)))
        rcpts = []
        for u in users:
            boxes = [b for b in self.boxes[u] if b != "INBOX"]
            if boxes and self.rng.random() < 0.3:
                rcpts.append(f"{u}+{self.rng.choice(boxes)[len('INBOX.'):]}")
            else:
                rcpts.append(u)
        data = make_message(self.rng, i, self.rng.randint(300, 6000))
        mid = message_id(data)
        res = lmtp_deliver(self.c.master_node.port["lmtp"], rcpts, data)
        for r, code in res.items():
            if code == 250:
                self.acked.add((r.split("+")[0], mid))
        self._count("deliver")

    def _conn(self, user):
        conn = self.imap.get(user)
        if conn is None:
            conn = imaplib.IMAP4("127.0.0.1", self.c.master_node.port["imap"], timeout=10)
            conn.login(user, PASSWORD)
            self.imap[user] = conn
            typ, data = conn.list('""', '"*"')
            if typ == "OK":
                names = []
                for line in data:
                    if line is None:
                        continue
                    m = re.match(rb'\(.*?\) (?:"."|NIL) "?([^"]*)"?$', line)
                    if m:
                        names.append(m.group(1).decode())
                if names:
                    self.boxes[user] = names
        return conn

    def _select(self):
        user = self.rng.choice(self.c.users)
        conn = self._conn(user)
        box = self.rng.choice(self.boxes[user])
        typ, _ = conn.select(box)
        if typ != "OK":
            self.imap.pop(user, None)
            conn.logout()
            return None, None, None
        typ, data = conn.uid("SEARCH", "ALL")
        uids = data[0].split() if typ == "OK" and data and data[0] else []
        return user, conn, uids

    def flags(self):
        user, conn, uids = self._select()
        if not uids:
            return
        pick = self.rng.sample(uids, min(len(uids), self.rng.randint(1, 4)))
        flag = self.rng.choice(["\\Seen", "\\Flagged", "$Label1", "\\Answered"])
        conn.uid("STORE", b",".join(pick).decode(), self.rng.choice(["+FLAGS", "-FLAGS"]), f"({flag})")
        self._count("flags")

    def expunge(self):
        user, conn, uids = self._select()
        if not uids:
            return
        uid = self.rng.choice(uids).decode()
        typ, data = conn.uid("FETCH", uid, "(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
        mid = None
        for part in data or []:
            if isinstance(part, tuple):
                mid = message_id(part[1].rstrip(b"\r\n") + b"\r\n\r\n")
        if mid is None:
            return
        self.doomed.add((user, mid))
        conn.uid("STORE", uid, "+FLAGS", "(\\Deleted)")
        conn.uid("EXPUNGE", uid)
        self._count("expunge")

    def move(self):
        user, conn, uids = self._select()
        if not uids or len(self.boxes[user]) < 2:
            return
        pick = self.rng.sample(uids, min(len(uids), self.rng.randint(1, 3)))
        dest = self.rng.choice(self.boxes[user])
        conn.uid("MOVE", b",".join(pick).decode(), dest)
        self._count("move")

    def create(self):
        user = self.rng.choice(self.c.users)
        conn = self._conn(user)
        self.nboxes += 1
        name = f"INBOX.F{self.nboxes}x{self.rng.randrange(1000)}"
        typ, _ = conn.create(name)
        if typ == "OK":
            self.boxes[user].append(name)
        self._count("create")

    def rename(self):
        user = self.rng.choice(self.c.users)
        conn = self._conn(user)
        boxes = [b for b in self.boxes[user] if b != "INBOX"]
        if not boxes:
            return
        old = self.rng.choice(boxes)
        self.nboxes += 1
        new = f"INBOX.R{self.nboxes}x{self.rng.randrange(1000)}"
        conn.select("INBOX")	# never rename the selected mailbox
        typ, _ = conn.rename(old, new)
        if typ == "OK":
            self.boxes[user] = [new if b == old else b for b in self.boxes[user]]
        self._count("rename")


def master_messages(cluster):
    """{(user, message-id): set of GUIDs} on the master, over IMAP (GUID = SHA-1 of the bytes)."""
    found = {}
    for u in cluster.users:
        conn = imaplib.IMAP4("127.0.0.1", cluster.master_node.port["imap"], timeout=30)
        conn.login(u, PASSWORD)
        typ, data = conn.list('""', '"*"')
        names = []
        for line in data:
            m = re.match(rb'\(.*?\) (?:"."|NIL) "?([^"]*)"?$', line or b"")
            if m:
                names.append(m.group(1).decode())
        for box in names:
            typ, _ = conn.select(box, readonly=True)
            if typ != "OK":
                continue
            typ, data = conn.uid("FETCH", "1:*", "(BODY.PEEK[])")
            for part in data or []:
                if isinstance(part, tuple):
                    body = part[1]
                    found.setdefault((u, message_id(body)), set()).add(hashlib.sha1(body).hexdigest())
        conn.logout()
    return found


def replica_guids(cluster):
    """{user: set of GUIDs} on the replica (tandem message list on its store)."""
    out = cluster.replica.ok(["mailbox", "list"])
    guids = {u: set() for u in cluster.users}
    for line in out.splitlines():
        name = line.split("\t")[0]
        parts = name.split(".")
        if len(parts) < 2 or parts[0] != "user" or parts[1] not in guids:
            continue
        for row in cluster.replica.messages(name):
            guids[parts[1]].add(row[5])
    return guids


def missing(cluster, acked, doomed=()):
    """(missing on the master, missing on the replica): acknowledged
    (user, message-id) pairs not found, ignoring those an expunge was tried on."""
    want = set(acked) - set(doomed)
    on_master = master_messages(cluster)
    on_replica = replica_guids(cluster)
    miss_m = sorted(k for k in want if k not in on_master)
    miss_r = sorted(k for k in want if k in on_master and not (on_master[k] & on_replica.get(k[0], set())))
    return miss_m, miss_r


def duplicates(inst, users):
    """[(user, GUID, "mailbox/uid ...")] for messages stored more than once among a
    user's mailboxes of an Instance."""
    dup = []
    for u in users:
        where = {}
        for line in inst.ok(["mailbox", "list", u]).splitlines():
            box = line.split("\t")[0]
            for row in inst.messages(box):
                where.setdefault(row[5], []).append(f"{box}/{row[0]}")
        dup += [(u, g, " ".join(w)) for g, w in where.items() if len(w) > 1]
    return dup
