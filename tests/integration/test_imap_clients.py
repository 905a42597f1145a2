"""test_imap_clients.py: a real IMAP client against tandemd. mbsync (Debian
isync) mirrors a user's whole tree (INBOX and nested folders, with flags)
to a local Maildir and back: the Maildir files must equal the delivered
bodies, and flags, new messages and new folders made in the Maildir must
reach the server (checked with imaplib), as must changes made on the
server reach the Maildir. (LMTP with swaks is in test_lmtp.py.)"""
import imaplib
import os
import shutil
import subprocess
import tempfile

from tlib import Daemon, Instance, Suite, make_message

t = Suite("imap_clients")
inst = Instance()
d = None
tmp = tempfile.mkdtemp(prefix="tandem-mbsync-")


def mbsync():
    r = subprocess.run(["mbsync", "-c", rc, "-a"], capture_output=True, text=True, timeout=60)
    return r.returncode, r.stdout + r.stderr


def maildir_files(folder):
    """{filename: bytes} of a Maildir folder's cur/ and new/."""
    out = {}
    for sub in ("cur", "new"):
        p = os.path.join(maildir, folder, sub)
        if os.path.isdir(p):
            for name in os.listdir(p):
                out[os.path.join(sub, name)] = open(os.path.join(p, name), "rb").read()
    return out


def as_delivered(data):
    """A Maildir file as the server holds it: mbsync writes Maildir files
    with LF line ends and adds an X-TUID header (its own bookkeeping) to
    the messages it copies in; undo exactly that."""
    head, sep, body = data.partition(b"\n\n")
    head = b"\n".join(ln for ln in head.split(b"\n") if not ln.startswith(b"X-TUID: "))
    return (head + sep + body).replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def strip_tuid(data):
    """A server copy uploaded by mbsync, less the X-TUID header mbsync added
    (line ends untouched: the server must hold CRLF)."""
    head, sep, body = data.partition(b"\r\n\r\n")
    head = b"\r\n".join(ln for ln in head.split(b"\r\n") if not ln.startswith(b"X-TUID: "))
    return head + sep + body


def mflags(name):
    return name.rsplit(":2,", 1)[1] if ":2," in name else ""


def server(mbox, what="(FLAGS BODY.PEEK[])"):
    """[(flags bytes, body)] of a mailbox, by sequence number."""
    M = imaplib.IMAP4("127.0.0.1", d.port["imap"])
    M.login("alice", "alicepw")
    typ, data = M.select(mbox, readonly=True)
    if typ != "OK":
        M.logout()
        return None
    out = []
    if int(data[0]):
        typ, data = M.fetch("1:*", what)
        for item in data:
            if isinstance(item, tuple):
                out.append((item[0], item[1]))
    M.logout()
    return out


if not shutil.which("mbsync"):
    print("mbsync (Debian isync) is not installed: run make check (scripts/deps.sh check)")
    with t.case("mbsync is installed"):
        t.check(False, "mbsync missing")
    t.done()

try:
    inst.ok(["user", "add", "alice"], stdin="alicepw\n")
    inst.ok(["mailbox", "create", "user.alice.Lists"])
    inst.ok(["mailbox", "create", "user.alice.Lists.Cyrus"])
    inst.ok(["mailbox", "create", "user.alice.Sent"])
    delivered = {"INBOX": [], "Lists": [], "Lists/Cyrus": [], "Sent": []}
    for i, (dest, flags) in enumerate([("alice", "\\Seen"), ("alice", ""), ("alice", "\\Flagged"),
                                       ("alice+Lists", ""), ("alice+Lists", "\\Seen \\Answered"),
                                       ("alice+Lists.Cyrus", ""), ("alice+Sent", "\\Seen")]):
        m = make_message(t.rng, i)
        inst.ok(["deliver"] + (["--flags", flags] if flags else []) + [dest], stdin=m)
        folder = {"alice": "INBOX", "alice+Lists": "Lists", "alice+Lists.Cyrus": "Lists/Cyrus",
                  "alice+Sent": "Sent"}[dest]
        delivered[folder].append((m, flags))
    # tandem deliver takes folder names with '/'; check they landed where meant
    for mb, want in [("user.alice", 3), ("user.alice.Lists", 2), ("user.alice.Lists.Cyrus", 1),
                     ("user.alice.Sent", 1)]:
        if len(inst.messages(mb)) != want:
            raise RuntimeError(f"setup: {mb} has {len(inst.messages(mb))} messages, want {want}")
    d = Daemon(inst, services=("imap",))
    maildir = os.path.join(tmp, "mail")
    os.makedirs(maildir)
    rc = os.path.join(tmp, "mbsyncrc")
    with open(rc, "w") as f:
        f.write(f"""IMAPAccount tandem
Host 127.0.0.1
Port {d.port["imap"]}
User alice
Pass alicepw
SSLType None
AuthMechs LOGIN

IMAPStore remote
Account tandem

MaildirStore local
Path {maildir}/
Inbox {maildir}/INBOX
SubFolders Verbatim

Channel all
Far :remote:
Near :local:
Patterns *
Create Both
SyncState *
Sync All
""")

    with t.case("first mbsync mirrors INBOX and the nested folders with their flags"):
        code, out = mbsync()
        t.eq(code, 0, f"mbsync: {out}")
        for folder, msgs in delivered.items():
            files = maildir_files(folder)
            t.eq(sorted(as_delivered(b) for b in files.values()), sorted(m for m, _ in msgs),
                 f"{folder}: Maildir bodies equal the delivered")
            for name, body in files.items():
                body = as_delivered(body)
                want = [fl for m, fl in msgs if m == body]
                if want:
                    letters = "".join(sorted({"\\Seen": "S", "\\Flagged": "F", "\\Answered": "R"}[x]
                                             for x in want[0].split()))
                    t.eq(mflags(name), letters, f"{folder}/{name}: Maildir flags")

    with t.case("flags and a new message in the Maildir reach the server"):
        inbox = maildir_files("INBOX")
        unseen = [n for n, b in inbox.items() if as_delivered(b) == delivered["INBOX"][1][0]][0]
        src = os.path.join(maildir, "INBOX", unseen)
        base = os.path.basename(unseen).rsplit(":2,", 1)[0]
        os.rename(src, os.path.join(maildir, "INBOX", "cur", base + ":2,FS"))
        newmsg = make_message(t.rng, 100)
        with open(os.path.join(maildir, "Lists", "new", "1700000000.test.host"), "wb") as f:
            f.write(newmsg)
        os.makedirs(os.path.join(maildir, "Local", "cur"))
        os.makedirs(os.path.join(maildir, "Local", "new"))
        os.makedirs(os.path.join(maildir, "Local", "tmp"))
        localmsg = make_message(t.rng, 101)
        with open(os.path.join(maildir, "Local", "cur", "1700000001.test.host:2,S"), "wb") as f:
            f.write(localmsg)
        code, out = mbsync()
        t.eq(code, 0, f"mbsync: {out}")
        s = server("INBOX")
        t.check(s is not None and len(s) == 3, f"INBOX still 3 messages: {s and len(s)}")
        fl = [h for h, b in (s or []) if b == delivered["INBOX"][1][0]]
        t.check(fl and b"\\Seen" in fl[0] and b"\\Flagged" in fl[0], f"\\Seen \\Flagged on the server: {fl}")
        s = server("INBOX.Lists")
        # mbsync puts its X-TUID header into what it uploads too
        t.check(s is not None and newmsg in [strip_tuid(b) for _, b in s],
                "the new Maildir message is on the server, byte-exact but for X-TUID"
                f" (got {[b[:120] for _, b in s or []]})")
        s = server("INBOX.Local")
        t.check(s is not None and [strip_tuid(b) for _, b in s] == [localmsg],
                f"new folder INBOX.Local created with its message: {s}")
        t.check(s and b"\\Seen" in s[0][0], "its \\Seen flag")

    with t.case("changes made on the server reach the Maildir"):
        M = imaplib.IMAP4("127.0.0.1", d.port["imap"])
        M.login("alice", "alicepw")
        M.select("INBOX.Lists.Cyrus")
        M.store("1", "+FLAGS", "(\\Seen \\Answered)")
        srvmsg = make_message(t.rng, 102)
        typ, _ = M.append("INBOX.Sent", "(\\Seen)", None, srvmsg)
        t.eq(typ, "OK", "APPEND")
        M.logout()
        code, out = mbsync()
        t.eq(code, 0, f"mbsync: {out}")
        files = maildir_files("Lists/Cyrus")
        t.eq([mflags(n) for n in files], ["RS"], "flags pulled to the Maildir")
        t.check(srvmsg in [as_delivered(b) for b in maildir_files("Sent").values()], "server APPEND pulled to the Maildir")

    with t.case("a third run changes nothing and the store checks clean"):
        before = {f: sorted(maildir_files(f)) for f in ["INBOX", "Lists", "Lists/Cyrus", "Sent", "Local"]}
        code, out = mbsync()
        t.eq(code, 0, f"mbsync: {out}")
        after = {f: sorted(maildir_files(f)) for f in before}
        t.eq(after, before, "Maildir unchanged")
        r = inst.run(["check", "--bodies"])
        t.eq(r.returncode, 0, r.stdout + r.stderr)
        t.check(d.proc.poll() is None, "tandemd alive")
finally:
    if d:
        d.stop()
    inst.cleanup()
    shutil.rmtree(tmp, ignore_errors=True)
t.done()
