"""bench_cyrus.py: tandem and Cyrus IMAP 3.6.1 (Debian's cyrus-imapd) side
by side, on the same messages (bench/workload.py) in the same run.

1. LMTP delivery of BENCH_CYRUS_N messages to the 10 workload users'
   INBOXes, over 1 connection and over 4 concurrent connections (one
   message per transaction): messages/s.
2. IMAP FETCH over a 1,000-message INBOX (filled by LMTP): after SELECT,
   a headers-only listing (UID FLAGS RFC822.SIZE INTERNALDATE ENVELOPE),
   BODYSTRUCTURE, and the full download (BODY.PEEK[]), each timed 5 times
   in one logged-in session after a warm-up; a minimal socket client reads
   the responses so the client's own cost stays small. Twice: with an
   ordinary client (delayed ACKs), and with TCP_QUICKACK re-armed before
   every recv. Cyrus's imapd holds its last small segment until the
   previous one is ACKed (Nagle), so an ordinary client often waits for its
   own delayed ACK (~40 ms per command on Linux); the quickack figures
   show the servers' own speed.
3. Initial sync of that INBOX into an empty replica: Cyrus sync_client -u
   into a fresh Cyrus sync_server, tandem sync -u into a fresh tandemd
   (both csync with deflate, each side negotiates it): wall s, messages/s.

Ratios are tandem/Cyrus on rates (>1: tandem faster), of the medians over
BENCH_REPS repetitions (default 3). Prints one JSON line per group.
Cyrus runs as the cyrus user, so everything lives under /tmp (mode 0755);
needs root and the cyrus-imapd / cyrus-replication packages.
"""
import json
import os
import re
import shutil
import smtplib
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.abspath(os.path.join(HERE, ".."))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(TOP, "tests", "integration"))
import workload  # noqa: E402
import cyrus  # noqa: E402
from benchlib import free_port, run, wait_port  # noqa: E402

BIN = os.path.join(TOP, "bin")
TANDEM = os.path.join(BIN, "tandem")
N = int(os.environ.get("BENCH_CYRUS_N", "1000"))
FETCH_N = int(os.environ.get("BENCH_CYRUS_FETCH_N", "1000"))
REPS = int(os.environ.get("BENCH_REPS", "3"))
FETCH_REPS = 5
READER, READER_PW = "reader", "readerpw"
FETCHES = [("list", "(UID FLAGS RFC822.SIZE INTERNALDATE ENVELOPE)"),
           ("bodystructure", "(BODYSTRUCTURE)"),
           ("full", "BODY.PEEK[]")]


def ratio(t, c):
    return round(t / c, 2) if c else None


def med(xs):
    return statistics.median(xs)


# ---- tandem ------------------------------------------------------------------------------------

class Tandem:
    """A tandem instance (tandem init) and its tandemd -f."""

    def __init__(self, root, name, extra):
        self.dir = os.path.join(root, name)
        run(TANDEM, "init", "--no-listen", "--servername", name, self.dir)
        self.conf = os.path.join(self.dir, "tandem.conf")
        text = open(self.conf).read().replace("admins: admin\n", "admins: admin repl\n")
        open(self.conf, "w").write(text + extra)
        self.proc = None

    def cli(self, *args, stdin=b""):
        return run(TANDEM, "-C", self.conf, *args, input=stdin)

    def start(self, listen_port):
        self.proc = subprocess.Popen([os.path.join(BIN, "tandemd"), "-C", self.conf, "-f"],
                                     stdout=subprocess.DEVNULL, stderr=open(self.dir + ".log", "a"))
        wait_port(listen_port, self.proc)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(60)


# ---- Cyrus -------------------------------------------------------------------------------------

def cyrus_create_user(cy, user, password=None):
    """user.<u> with admin all rights and anyone p (as the interop test does); a SASL password."""
    im = cy.imap()
    mb = "user." + user
    typ, data = im.create(mb)
    if typ != "OK":
        raise RuntimeError(f"Cyrus create {mb}: {data}")
    im.setacl(mb, "admin", "lrswipkxtecdan")
    im.setacl(mb, "anyone", "p")
    im.logout()
    if password:
        subprocess.run(["saslpasswd2", "-p", "-c", "-f", f"{cy.dir}/sasldb2", "-u", cy.name, user],
                       input=password.encode(), check=True)
        subprocess.run(["chown", "cyrus:mail", f"{cy.dir}/sasldb2"], check=True)


def cyrus_messages(cy, mailbox):
    im = cy.imap()
    st = im.status(mailbox, "(MESSAGES)")
    im.logout()
    if st[0] != "OK":
        return None
    return int(re.search(rb"MESSAGES (\d+)", st[1][0]).group(1))


# ---- LMTP --------------------------------------------------------------------------------------

def deliver_lmtp(p, msgs, conns):
    """Wall seconds to deliver [(rcpt, data)] over `conns` concurrent LMTP connections."""
    chunks = [msgs[i::conns] for i in range(conns)]
    errors = []

    def worker(chunk):
        try:
            l = smtplib.LMTP("127.0.0.1", p)
            for rcpt, data in chunk:
                l.sendmail("bench@example.net", [rcpt], data)
            l.quit()
        except Exception as e:  # noqa: BLE001 -- reported after the join
            errors.append(repr(e))

    t0 = time.monotonic()
    th = [threading.Thread(target=worker, args=(c,)) for c in chunks]
    for x in th:
        x.start()
    for x in th:
        x.join()
    dt = time.monotonic() - t0
    if errors:
        raise RuntimeError("LMTP delivery failed: " + errors[0])
    return dt


# ---- IMAP FETCH (a minimal client: literals are read, not parsed) ------------------------------

class RawImap:
    """One IMAP connection; reads responses into its own buffer (literals skipped, not parsed).
    quickack: re-arm TCP_QUICKACK before every recv, so the client never delays an ACK (a server
    that leaves Nagle on then does not stall 40 ms on its last small segment)."""

    def __init__(self, p, quickack=False):
        self.sock = socket.create_connection(("127.0.0.1", p))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.quickack = quickack and hasattr(socket, "TCP_QUICKACK")
        self.buf = b""
        self.pos = 0
        self.n = 0
        self.readline()

    def _more(self):
        if self.quickack:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        chunk = self.sock.recv(1 << 18)
        if not chunk:
            raise RuntimeError("connection closed")
        # keep what is unread and append: no copy of the whole buffer per
        # line (that would cost the client time proportional to the size
        # of the server's writes, and favour servers that write small)
        if self.pos:
            self.buf = self.buf[self.pos:]
            self.pos = 0
        self.buf += chunk

    def readline(self):
        while True:
            i = self.buf.find(b"\n", self.pos)
            if i >= 0:
                line = self.buf[self.pos:i + 1]
                self.pos = i + 1
                return line
            self._more()

    def skip(self, n):
        while len(self.buf) - self.pos < n:
            n -= len(self.buf) - self.pos
            self.buf = b""
            self.pos = 0
            self._more()
        self.pos += n

    def cmd(self, text):
        """Sends one command; returns (tagged line, untagged FETCH count, bytes read)."""
        self.n += 1
        tag = b"b%d" % self.n
        self.sock.sendall(tag + b" " + text.encode() + b"\r\n")
        fetches, nbytes = 0, 0
        while True:
            line = self.readline()
            nbytes += len(line)
            if line.startswith(b"* ") and b" FETCH " in line[:40]:
                fetches += 1
            while line.endswith(b"}\r\n"):
                lit = int(line[line.rindex(b"{") + 1:-3])
                self.skip(lit)
                nbytes += lit
                line = self.readline()
                nbytes += len(line)
            if line.startswith(tag + b" "):
                if not line[len(tag) + 1:].startswith(b"OK"):
                    raise RuntimeError(f"{text}: {line!r}")
                return line, fetches, nbytes

    def close(self):
        try:
            self.cmd("LOGOUT")
        except Exception:  # noqa: BLE001
            pass
        self.sock.close()


def fetch_bench(p, user, password, quickack=False):
    """{name: [seconds x FETCH_REPS]} over one session on INBOX."""
    c = RawImap(p, quickack)
    c.cmd(f"LOGIN {user} {password}")
    c.cmd("SELECT INBOX")
    out = {}
    for name, items in FETCHES:
        c.cmd(f"UID FETCH 1:* {items}")  # warm-up
        times = []
        for _ in range(FETCH_REPS):
            t0 = time.monotonic()
            _, got, _ = c.cmd(f"UID FETCH 1:* {items}")
            times.append(time.monotonic() - t0)
            if got != FETCH_N:
                raise RuntimeError(f"{name}: {got} FETCH responses, want {FETCH_N}")
        out[name] = times
    c.close()
    return out


# ---- the run -----------------------------------------------------------------------------------

def emit(obj):
    print(json.dumps(obj), flush=True)


def main():
    if not cyrus.available() or os.geteuid() != 0:
        print("bench_cyrus: SKIP (Cyrus 3.6 not installed or not root)", file=sys.stderr)
        return
    root = tempfile.mkdtemp(prefix="bench-cyrus-", dir="/tmp")
    os.chmod(root, 0o755)
    started = []
    try:
        # tandem master: LMTP + IMAP; its sync client points at a replica port
        lp, ip, sp = free_port(), free_port(), free_port()
        tm = Tandem(root, "tm", f"lmtp_listen: 127.0.0.1:{lp}\nimap_listen: 127.0.0.1:{ip}\nallowplaintext: yes\n"
                                f"sync_log: no\nsync_authname: repl\nsync_password: replpw\n"
                                f"sync_log_channels: repl1\nrepl1_sync_host: 127.0.0.1:{sp}\n"
                                # deflate on both, like for like (tandem's default skips it on loopback)
                                f"sync_compress: yes\n")
        for u in workload.USERS:
            tm.cli("user", "add", "--no-password", u)
        tm.cli("user", "add", READER, stdin=(READER_PW + "\n").encode())
        tm.start(lp)
        started.append(tm)
        # Cyrus master: LMTP + IMAP; sync_to is rewritten per repetition (a fresh replica each)
        cm = cyrus.Cyrus(root, "cm", sync_to=free_port())
        started.append(cm)
        for u in workload.USERS:
            cyrus_create_user(cm, u)
        cyrus_create_user(cm, READER, READER_PW)

        # 1. LMTP delivery, alternating the order of the two servers between repetitions
        for conns in (1, 4):
            tt, ct = [], []
            for rep in range(REPS):
                msgs = [workload.message(100 + 10 * conns + rep, i) for i in range(N)]
                msgs = [(u, d) for u, _, d in msgs]
                order = [("t", lp), ("c", cm.lmtp_port)]
                if rep % 2:
                    order.reverse()
                for who, p in order:
                    dt = deliver_lmtp(p, msgs, conns)
                    (tt if who == "t" else ct).append(dt)
            t_rate, c_rate = N / med(tt), N / med(ct)
            emit({"bench": "cyrus_lmtp", "conns": conns, "messages": N, "reps": REPS,
                  "tandem_s": [round(x, 3) for x in tt], "cyrus_s": [round(x, 3) for x in ct],
                  "tandem_msgs_per_s": round(t_rate, 1), "cyrus_msgs_per_s": round(c_rate, 1),
                  "ratio": ratio(t_rate, c_rate)})

        # 2. IMAP FETCH over a 1,000-message INBOX
        fill = [workload.message(9, i)[2] for i in range(FETCH_N)]
        fill_bytes = sum(len(d) for d in fill)
        fill = [(READER, d) for d in fill]
        deliver_lmtp(lp, fill, 4)
        deliver_lmtp(cm.lmtp_port, fill, 4)
        got = cyrus_messages(cm, "user." + READER)
        if got != FETCH_N:
            raise RuntimeError(f"Cyrus INBOX of {READER} has {got} messages, want {FETCH_N}")
        res = {}
        for q in (False, True):
            res[("t", q)] = fetch_bench(ip, READER, READER_PW, q)
            res[("c", q)] = fetch_bench(cm.imap_port, READER, READER_PW, q)
        for name, items in FETCHES:
            row = {"bench": "cyrus_fetch", "fetch": name, "items": items, "messages": FETCH_N,
                   "bytes": fill_bytes, "reps": FETCH_REPS}
            for q, sfx in ((False, ""), (True, "_quickack")):
                t_s, c_s = med(res[("t", q)][name]), med(res[("c", q)][name])
                row.update({"tandem_s" + sfx: round(t_s, 4), "cyrus_s" + sfx: round(c_s, 4),
                            "tandem_msgs_per_s" + sfx: round(FETCH_N / t_s, 1),
                            "cyrus_msgs_per_s" + sfx: round(FETCH_N / c_s, 1), "ratio" + sfx: ratio(c_s, t_s)})
            emit(row)

        # 3. initial sync of that INBOX into an empty replica (a fresh one per repetition)
        tm.stop()
        started.remove(tm)
        tw, cw = [], []
        for rep in range(REPS):
            # tandem: a fresh replica tandemd on sp
            tr = Tandem(root, f"tr{rep}", f"sync_listen: 127.0.0.1:{sp}\nallowplaintext: yes\n")
            tr.cli("user", "add", "repl", stdin=b"replpw\n")
            tr.start(sp)
            started.append(tr)
            t0 = time.monotonic()
            tm.cli("sync", "-n", "repl1", "-o", "-u", READER)
            tw.append(time.monotonic() - t0)
            cmp_ = subprocess.run([TANDEM, "-C", tm.conf, "compare", "-n", "repl1", "-o", READER],
                                  capture_output=True)
            tr.stop()
            started.remove(tr)
            if cmp_.returncode != 0:
                raise RuntimeError("tandem replica differs: " + cmp_.stdout.decode()[-500:])
            # Cyrus: a fresh replica, the master's client pointed at it by its own config file
            cr = cyrus.Cyrus(root, f"cr{rep}", sync_server=True, admins="admin repl")
            started.append(cr)
            alt = os.path.join(cm.dir, f"imapd-cr{rep}.conf")
            text = re.sub(r"(?m)^sync_port: \d+$", f"sync_port: {cr.sync_port}", open(cm.conf).read())
            open(alt, "w").write(text)
            subprocess.run(["chown", "cyrus:mail", alt], check=True)
            t0 = time.monotonic()
            r = cyrus.as_cyrus([os.path.join(cyrus.LIBEXEC, "sync_client"), "-C", alt, "-u", READER],
                               cwd=cm.dir, capture_output=True, text=True, timeout=300)
            cw.append(time.monotonic() - t0)
            if r.returncode != 0:
                raise RuntimeError(f"Cyrus sync_client: {r.stdout[-300:]} {r.stderr[-300:]}")
            got = cyrus_messages(cr, "user." + READER)
            cr.stop()
            started.remove(cr)
            if got != FETCH_N:
                raise RuntimeError(f"Cyrus replica has {got} messages, want {FETCH_N}")
        t_s, c_s = med(tw), med(cw)
        emit({"bench": "cyrus_initial_sync", "messages": FETCH_N, "bytes": fill_bytes, "reps": REPS,
              "tandem_wall_s": [round(x, 3) for x in tw], "cyrus_wall_s": [round(x, 3) for x in cw],
              "tandem_median_s": round(t_s, 3), "cyrus_median_s": round(c_s, 3),
              "tandem_msgs_per_s": round(FETCH_N / t_s, 1), "cyrus_msgs_per_s": round(FETCH_N / c_s, 1),
              "ratio": ratio(c_s, t_s)})
    finally:
        for s in reversed(started):
            try:
                s.stop()
            except Exception:  # noqa: BLE001
                pass
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
