"""test_limits.py: strangers cannot shut a port for everyone. Each service
has its own session cap (<service>_maxchild) and one client address its
own share (maxperhost): idle never-authenticated sync-port connections
fill the sync service only, IMAP and LMTP keep serving, refused
connections get a short reply and event=session_refused. Connections that
do not log in are closed after preauth_timeout (IMAP, LMTP idle). A
config whose caps sum past 2000 is refused. Loopback only (127.0.0.x as
distinct client addresses), bounded counts, no timing asserts."""
import imaplib
import os
import smtplib
import socket
import subprocess
import time

from tlib import BIN, Daemon, Instance, Suite, make_message

t = Suite("limits")


def connect(port, src="127.0.0.1"):
    s = socket.socket()
    s.settimeout(30)
    s.bind((src, 0))
    s.connect(("127.0.0.1", port))
    return s


def first_line(s):
    data = b""
    while b"\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    return data.split(b"\n")[0]


def read_all(s):
    data = b""
    while True:
        try:
            chunk = s.recv(4096)
        except OSError:
            break
        if not chunk:
            break
        data += chunk
    return data


inst = Instance(extra_conf="sync_maxchild: 3\nlmtp_maxchild: 3\nimap_maxchild: 3\nmaxperhost: 2\n")
d = None
held = []
try:
    inst.ok(["user", "add", "alice"], "alicepw\n")
    d = Daemon(inst, services=("imap", "lmtp", "sync"))

    with t.case("idle sync-port strangers: per-host share, then the service cap"):
        for _ in range(2):
            s = connect(d.port["sync"])
            held.append(s)
            t.check(not first_line(s).startswith(b"* BYE"), "accepted")
        s = connect(d.port["sync"])
        t.check(first_line(s).startswith(b"* BYE Too many connections"), "a third from 127.0.0.1: refused")
        s.close()
        s = connect(d.port["sync"], "127.0.0.2")
        held.append(s)
        t.check(not first_line(s).startswith(b"* BYE"), "another address: accepted")
        s = connect(d.port["sync"], "127.0.0.3")
        t.check(first_line(s).startswith(b"* BYE Too many connections"), "past sync_maxchild: refused")
        s.close()
        log = d.log()
        t.check("event=session_refused service=sync peer=127.0.0.1 reason=host_limit limit=2" in log,
                "host_limit logged")
        t.check("event=session_refused service=sync peer=127.0.0.3 reason=service_limit limit=3" in log,
                "service_limit logged")

    with t.case("IMAP and LMTP still serve while the sync port is full"):
        c = imaplib.IMAP4("127.0.0.1", d.port["imap"])
        t.eq(c.login("alice", "alicepw")[0], "OK", "IMAP login")
        c.logout()
        l = smtplib.LMTP("127.0.0.1", d.port["lmtp"])
        t.eq(l.sendmail("s@example.net", ["alice"], make_message(t.rng, 1)), {}, "LMTP delivery")
        l.quit()
        t.eq(len(inst.messages("user.alice")), 1, "delivered")

    with t.case("LMTP past lmtp_maxchild: 421"):
        ls = [connect(d.port["lmtp"], f"127.0.0.{10 + i}") for i in range(3)]
        for s in ls:
            t.check(first_line(s).startswith(b"220 "), "greeted")
        s = connect(d.port["lmtp"], "127.0.0.20")
        t.check(first_line(s).startswith(b"421 4.3.2"), "the fourth: 421")
        for s in ls + [s]:
            s.close()

    with t.case("a closed session frees its place"):
        for s in held:
            s.close()
        held = []
        ok = False
        for _ in range(200):  # bounded: until tandemd has reaped the sessions
            s = connect(d.port["sync"], "127.0.0.3")
            line = first_line(s)
            s.close()
            if not line.startswith(b"* BYE"):
                ok = True
                break
            import time
            time.sleep(0.05)
        t.check(ok, "accepted again")
finally:
    for s in held:
        s.close()
    if d:
        d.stop()
    inst.cleanup()

inst = Instance(extra_conf="preauth_timeout: 1s\n")
d = None
try:
    inst.ok(["user", "add", "alice"], "alicepw\n")
    inst.ok(["user", "add", "admin"], "adminpw\n")
    d = Daemon(inst, services=("imap", "lmtp", "sync"))

    with t.case("a sync-port connection not logged in within preauth_timeout is closed; a logged-in one is not"):
        import base64
        s = connect(d.port["sync"])
        quiet = connect(d.port["sync"])
        chatty = connect(d.port["sync"])
        first_line(s)
        tok = base64.b64encode(b"\0admin\0adminpw")
        s.sendall(b"AUTHENTICATE PLAIN " + tok + b"\r\n")
        got = b""
        while b"OK Success" not in got:
            chunk = s.recv(4096)
            if not chunk:
                break
            got += chunk
        t.check(b"OK Success" in got, f"the admin logged in: {got[-100:]!r}")
        first_line(chatty)
        chatty.sendall(b"NOOP\r\n")
        rest = read_all(quiet)  # returns when tandem closes it
        t.check(rest.startswith(b"* "), f"banner, then closed: {rest[-100:]!r}")
        quiet.close()
        rest = read_all(chatty)
        t.check(b"OK Noop" in rest, f"a NOOP is answered, but does not keep it open: {rest[-100:]!r}")
        chatty.close()
        s.sendall(b"NOOP\r\n")
        t.check(b"OK Noop" in s.recv(4096), "the logged-in one is still served")
        s.close()

    with t.case("IMAP without login is closed after preauth_timeout"):
        s = connect(d.port["imap"])
        first_line(s)
        rest = read_all(s)
        t.check(b"* BYE Autologout" in rest, f"BYE: {rest!r}")
        s.close()

    with t.case("IMAP without login is closed after preauth_timeout even while it sends NOOPs"):
        s = connect(d.port["imap"])
        first_line(s)
        s.settimeout(0.3)
        got = b""
        for i in range(30):  # bounded: 30 NOOPs 0.3 s apart, far past the 1 s deadline
            time.sleep(0.3)
            try:
                s.sendall(b"n%d NOOP\r\n" % i)
            except OSError:
                break
            try:
                chunk = s.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                break
            if not chunk:
                break
            got += chunk
            if b"* BYE" in got:
                break
        t.check(b"* BYE Autologout" in got, f"BYE: {got[-200:]!r}")
        s.close()

    with t.case("an idle LMTP session is closed after preauth_timeout"):
        s = connect(d.port["lmtp"])
        first_line(s)
        s.sendall(b"LHLO x\r\n")
        rest = read_all(s)
        t.check(b"421 4.4.2" in rest, f"421: {rest[-200:]!r}")
        s.close()
        t.check("event=idle_timeout service=lmtp" in d.log(), "logged")

    with t.case("a logged-in IMAP session is not cut by preauth_timeout"):
        c = imaplib.IMAP4("127.0.0.1", d.port["imap"])
        c.login("alice", "alicepw")
        import time
        time.sleep(1.5)
        t.eq(c.noop()[0], "OK", "NOOP after the pre-login timeout")
        c.logout()
finally:
    if d:
        d.stop()
    inst.cleanup()

with t.case("caps summing past 2000 are refused"):
    inst = Instance(extra_conf="imap_maxchild: 1500\nimaps_maxchild: 600\nimap_listen: 127.0.0.1:1\n")
    r = subprocess.run([os.path.join(BIN, "tandemd"), "-C", inst.conf, "-n"], capture_output=True, text=True)
    t.eq(r.returncode, 2, "tandemd -n exits 2")
    t.check("2000" in r.stderr, f"says why: {r.stderr.strip()}")
    inst.cleanup()
t.done()
