"""test_authfail.py: failed logins are counted per user and per client
address across every session of tandemd: the pause grows with each
failure (failedloginpause doubled, read from event=auth_fail, not timed),
the third failure of a connection closes it (LOGIN and AUTHENTICATE),
another connection from another address inherits the user's count, a
good login clears the user's count. Loopback addresses 127.0.0.x stand for
distinct clients."""
import base64
import re
import socket

from tlib import Daemon, Instance, Suite

t = Suite("authfail")


class Raw:
    def __init__(self, port, src):
        self.s = socket.socket()
        self.s.settimeout(60)
        self.s.bind((src, 0))
        self.s.connect(("127.0.0.1", port))
        self.buf = b""
        self.line()

    def line(self):
        while b"\n" not in self.buf:
            chunk = self.s.recv(4096)
            if not chunk:
                out, self.buf = self.buf, b""
                return out
            self.buf += chunk
        out, self.buf = self.buf.split(b"\n", 1)
        return out.rstrip(b"\r")

    def cmd(self, tag, text):
        self.s.sendall(f"{tag} {text}\r\n".encode())
        lines = []
        while True:
            ln = self.line()
            lines.append(ln)
            if not ln or ln.startswith(tag.encode() + b" ") or ln == b"+ ":
                return lines

    def closed(self):
        try:
            rest = self.line()
            while rest:
                rest = self.line()
            return True
        except OSError:
            return True


def fails(log):
    return [(m.group(1), m.group(2), int(m.group(3)), int(m.group(4)), int(m.group(5)))
            for m in re.finditer(r"event=auth_fail service=imap session=\S+ addr=(\S+) user=(\S+) reason=\S+"
                                 r" session_fails=\d+ user_fails=(\d+) addr_fails=(\d+) pause_ms=(\d+)", log)]


inst = Instance(extra_conf="failedloginpause: 10ms\n")
d = None
try:
    inst.ok(["user", "add", "alice"], "alicepw\n")
    inst.ok(["user", "add", "bob"], "bobpw\n")
    d = Daemon(inst, services=("imap",))
    port = d.port["imap"]

    with t.case("three failed LOGINs: growing pause, then the connection is closed"):
        c = Raw(port, "127.0.0.1")
        for i in range(3):
            r = c.cmd(f"a{i}", "LOGIN alice wrong")
            t.check(any(b"NO [AUTHENTICATIONFAILED]" in ln for ln in r), f"failure {i + 1} answered NO")
        t.check(any(b"* BYE" in ln for ln in r) or c.closed(), "closed after the third")
        f = fails(d.log())
        t.eq([x[4] for x in f], [10, 20, 40], "pause doubles (failedloginpause 10ms)")
        t.eq([(x[0], x[1], x[2], x[3]) for x in f],
             [("127.0.0.1", "alice", 1, 1), ("127.0.0.1", "alice", 2, 2), ("127.0.0.1", "alice", 3, 3)],
             "address and user counted")

    with t.case("the user's count is shared by another connection from another address"):
        c = Raw(port, "127.0.0.2")
        c.cmd("b1", "LOGIN alice wrong")
        x = fails(d.log())[-1]
        t.eq((x[0], x[2], x[3], x[4]), ("127.0.0.2", 4, 1, 80), "user_fails 4 from another address")

    with t.case("the address's count applies to another user (AUTHENTICATE PLAIN too)"):
        c = Raw(port, "127.0.0.1")
        tok = base64.b64encode(b"\0bob\0wrong").decode()
        r = c.cmd("c1", f"AUTHENTICATE PLAIN {tok}")
        t.check(any(b"NO [AUTHENTICATIONFAILED]" in ln for ln in r), "NO")
        x = fails(d.log())[-1]
        t.eq((x[0], x[1], x[2], x[3], x[4]), ("127.0.0.1", "bob", 1, 4, 80), "addr_fails 4 for bob")
        r = c.cmd("c2", f"AUTHENTICATE PLAIN {tok}")
        r = c.cmd("c3", f"AUTHENTICATE PLAIN {tok}")
        t.check(any(b"* BYE" in ln for ln in r) or c.closed(), "closed after the third AUTHENTICATE")

    with t.case("a good login clears the user's count"):
        c = Raw(port, "127.0.0.3")
        r = c.cmd("d1", "LOGIN alice alicepw")
        t.check(any(ln.startswith(b"d1 OK") for ln in r), "logged in")
        c.cmd("d2", "LOGOUT")
        c = Raw(port, "127.0.0.4")
        c.cmd("e1", "LOGIN alice wrong")
        x = fails(d.log())[-1]
        t.eq((x[0], x[2], x[3], x[4]), ("127.0.0.4", 1, 1, 10), "counts start over")
finally:
    if d:
        d.stop()
    inst.cleanup()
t.done()
