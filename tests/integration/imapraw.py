"""imapraw.py: a line-level IMAP client for exact-response tests (the
same shape as test_imap.py's Raw): r = Raw(port).login(user, pw);
untagged, tagged = r.cmd("SELECT INBOX"); r.exchange() for reports."""
import re
import socket
import ssl


class Raw:
    def __init__(self, port, tls=False, timeout=10):
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if tls:  # imaps with tandem init's self-signed certificate
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            s = ctx.wrap_socket(s)
        self.s = s
        self.f = s.makefile("rb")
        self.ex = []
        self.n = 0
        self.greeting = self.line()

    def line(self):
        data = self.f.readline()
        if not data:
            raise EOFError("connection closed")
        while True:  # a literal at the end of the line: read it and the rest
            m = re.search(rb"\{(\d+)\}\r\n$", data)
            if not m:
                break
            data += self.f.read(int(m.group(1)))
            data += self.f.readline()
        self.ex.append(b"S: " + data)
        return data

    def send(self, data):
        self.ex.append(b"C: " + data)
        self.s.sendall(data)

    def cmd(self, text, literal=None):
        """Sends 'tag text' (a literal after the + continuation); returns
        (untagged lines, tagged line without the tag)."""
        if isinstance(text, str):
            text = text.encode()
        self.n += 1
        tag = b"t%d" % self.n
        self.ex = []
        if literal is not None:
            self.send(tag + b" " + text + b" {%d}\r\n" % len(literal))
            cont = self.line()
            if not cont.startswith(b"+"):
                return [], cont
            self.send(literal + b"\r\n")
        else:
            self.send(tag + b" " + text + b"\r\n")
        untagged = []
        while True:
            ln = self.line()
            if ln.startswith(tag + b" "):
                return untagged, ln[len(tag) + 1:]
            untagged.append(ln)

    def login(self, user, pw):
        _, r = self.cmd(f"LOGIN {user} {pw}")
        if not r.startswith(b"OK"):
            raise RuntimeError(f"login {user}: {r!r}")
        return self

    def exchange(self):
        return b"".join(self.ex).decode("utf-8", "replace")

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass
