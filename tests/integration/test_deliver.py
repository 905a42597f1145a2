"""test_deliver.py: `tandem deliver` as an LMTP client of tandemd (issue 12).

With a tandemd answering on lmtp_listen (TCP on the loopback or a unix
socket) deliver hands the message over LMTP and opens no store; without
one, or with --direct, --flags, --date or USER+folder, it stores the
message itself. Checked: the path taken and logged, per-recipient results
and exit codes on both paths, -m (Cyrus's rule: the folder when anyone,
anonymous or the sender may post, else the INBOX) and -r/-f giving the
same mailboxes and bytes on both paths, dot-stuffing and line ends, the
fall-back when tandemd is down or refuses the connection, no fall-back
(no second copy) once the message was sent, concurrent deliveries; and
bin/tandem-deliver, the same command linked with libc only, whose direct
path runs bin/tandem."""
import os
import shutil
import socket
import subprocess
import threading

from tlib import Daemon, Instance, Suite, make_message

t = Suite("deliver")
insts, daemons = [], []


def new_instance(extra_conf=""):
    inst = Instance(extra_conf=extra_conf)
    insts.append(inst)
    for u in ["alice", "bob"]:
        inst.ok(["user", "add", "--no-password", u])
    inst.ok(["mailbox", "create", "user.alice.Lists"])
    inst.ok(["mailbox", "setacl", "user.alice.Lists", "anyone", "p"])
    inst.ok(["mailbox", "create", "user.alice.Priv"])
    return inst


def fetch(inst, mailbox, uid):
    return inst.run(["message", "fetch", mailbox, str(uid)]).stdout.encode()


def fake_lmtp(path, handler):
    """A one-connection LMTP server on a unix socket, run by handler(conn)."""
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path)
    srv.listen(1)

    def run():
        c, _ = srv.accept()
        try:
            handler(c)
        finally:
            c.close()
            srv.close()
    th = threading.Thread(target=run, daemon=True)
    th.start()
    return th


try:
    with t.case("no lmtp_listen: the direct path, as before"):
        inst = new_instance()
        m = make_message(t.rng, 1)
        r = inst.run(["-v", "deliver", "alice", "bob"], m)
        t.eq(r.returncode, 0, r.stderr)
        t.check("alice: delivered mailbox=user.alice uid=1" in r.stdout, r.stdout)
        t.check("event=deliver_path path=direct reason=no_lmtp_listen" in r.stderr, r.stderr)
        t.eq(fetch(inst, "user.alice", 1), m, "stored byte for byte")

    inst = new_instance("maxmessagesize: 100K\n")
    d = Daemon(inst, services=("lmtp",))
    daemons.append(d)

    with t.case("tandemd on the loopback: LMTP, per-recipient results, exit 67 (EX_NOUSER) for an unknown one"):
        m = make_message(t.rng, 2)
        r = inst.run(["-v", "deliver", "alice", "bob", "nobody"], m)
        t.eq(r.returncode, 67, r.stderr)
        t.check("alice: delivered via=lmtp" in r.stdout and "bob: delivered via=lmtp" in r.stdout, r.stdout)
        t.check("nobody: failed (notfound) 550 5.1.1" in r.stdout, r.stdout)
        t.check(f"event=deliver_path path=lmtp addr=127.0.0.1:{d.port['lmtp']}" in r.stderr, r.stderr)
        t.check("event=deliver session=" in d.log() and "rcpt=alice" in d.log(), "tandemd delivered it")
        # LMTP's Return-Path first (the envelope sender, empty without -r)
        t.eq(fetch(inst, "user.alice", 1), b"Return-Path: <>\r\n" + m, "stored as LMTP stores it")
        t.eq(len(inst.messages("user.bob")), 1, "bob")

    with t.case("LMTP: bare LF made CRLF, dot lines stuffed, no final line end"):
        raw = b"Subject: dots\n\n.\n..two\n.x\nlast"
        inst.ok(["deliver", "bob"], raw)
        t.eq(fetch(inst, "user.bob", 2), b"Return-Path: <>\r\nSubject: dots\r\n\r\n.\r\n..two\r\n.x\r\nlast\r\n",
             "the bytes after the Return-Path line")

    with t.case("-r/-f and -m: the same mailboxes and bytes on both paths"):
        m = make_message(t.rng, 3)
        inst.ok(["mailbox", "setacl", "user.alice.Priv", "friend@example.net", "p"])
        got = {}
        for path in (["--direct"], []):
            got[bool(path)] = []
            for args, box in [(["-m", "Lists"], "user.alice.Lists"),             # anyone p: the folder
                              (["-m", "Priv"], "user.alice"),                     # no p: the INBOX
                              (["-r", "friend@example.net", "-m", "Priv"], "user.alice.Priv"),  # the sender's p
                              (["-f", "x@example.net", "-m", "NoSuch"], "user.alice")]:         # no folder
                before = len(inst.messages(box))
                r = inst.run(["-v", "deliver"] + path + args + ["alice"], m)
                t.eq(r.returncode, 0, f"{path} {args}: {r.stdout} {r.stderr}")
                t.check(("via=lmtp" in r.stdout) != bool(path), f"{path}: {r.stdout}")
                msgs = inst.messages(box)
                t.eq(len(msgs), before + 1, f"{path} {args} -> {box}")
                got[bool(path)].append(fetch(inst, box, msgs[-1][0]))
        t.eq(got[True][2:], got[False][2:], "with -r/-f: direct and LMTP stored the same bytes")
        t.check(got[False][2].startswith(b"Return-Path: <friend@example.net>\r\n"), "-r's Return-Path")
        t.eq([b"Return-Path: <>\r\n" + x for x in got[True][:2]], got[False][:2],
             "without -r: LMTP's empty Return-Path line, the direct path none (byte for byte)")

    with t.case("what LMTP cannot say goes direct: USER+folder (any ACL), --flags, --date"):
        m = make_message(t.rng, 4)
        r = inst.run(["-v", "deliver", "alice+Priv"], m)
        t.eq(r.returncode, 0, r.stderr)
        t.check("delivered mailbox=user.alice.Priv" in r.stdout, r.stdout)
        t.check("path=direct reason=folder" in r.stderr, r.stderr)
        t.eq(fetch(inst, "user.alice.Priv", inst.messages("user.alice.Priv")[-1][0]), m, "byte for byte")
        r = inst.run(["-v", "deliver", "--flags", "\\Seen", "--date", "1704067200", "bob"], m)
        t.eq(r.returncode, 0, r.stderr)
        t.check("path=direct reason=" in r.stderr, r.stderr)
        last = inst.messages("user.bob")[-1]
        t.eq((last[2], last[3]), ("\\Seen", 1704067200), "flags and date kept")

    with t.case("LMTP: empty and too big refused with exit 65 (EX_DATAERR); bad usage 2"):
        r = inst.run(["deliver", "alice"], b"")
        t.eq(r.returncode, 65, r.stdout)
        t.check("alice: failed (invalid) 554 5.6.0" in r.stdout, r.stdout)
        r = inst.run(["deliver", "alice"], b"Subject: big\r\n\r\n" + b"x" * 120000)
        t.eq(r.returncode, 65, "over maxmessagesize")
        t.eq(inst.run(["deliver", "-r", "a<b", "alice"], b"x").returncode, 2, "a sender with <")
        t.eq(inst.run(["deliver"], b"x").returncode, 2, "no recipient")
        t.eq(inst.run(["deliver", "--bogus", "alice"], b"x").returncode, 2, "unknown option")

    with t.case("8 deliveries at once over LMTP: every one stored, distinct UIDs"):
        before = len(inst.messages("user.bob"))
        procs = [subprocess.Popen([os.path.join(os.environ.get("TANDEM_BIN", "bin"), "tandem"), "-C", inst.conf,
                                   "deliver", "bob"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
                 for _ in range(8)]
        outs = [p.communicate(make_message(t.rng, 100 + i))[0].decode() for i, p in enumerate(procs)]
        t.eq([p.returncode for p in procs], [0] * 8, str(outs))
        t.check(all("via=lmtp" in o for o in outs), str(outs))
        uids = [x[0] for x in inst.messages("user.bob")]
        t.eq(len(uids), before + 8, "8 more")
        t.eq(len(set(uids)), len(uids), "distinct UIDs")

    lean = os.path.join(os.environ.get("TANDEM_BIN", "bin"), "tandem-deliver")

    def lean_run(args, data):
        return subprocess.run([lean, "-C", inst.conf] + args, input=data, capture_output=True)

    with t.case("bin/tandem-deliver: the same command linked with libc only, over LMTP"):
        if shutil.which("ldd"):
            libs = subprocess.run(["ldd", lean], capture_output=True, text=True).stdout
            t.check("libcrypto" not in libs and "libsqlite3" not in libs and "libssl" not in libs, libs)
        m = make_message(t.rng, 8)
        before = len(inst.messages("user.alice.Lists"))
        r = lean_run(["-v", "-r", "s@example.net", "-m", "Lists", "alice", "nobody"], m)
        t.eq(r.returncode, 67, r.stderr)
        out = r.stdout.decode()
        t.check("alice: delivered via=lmtp" in out and "nobody: failed (notfound) 550 5.1.1" in out, out)
        t.check("path=lmtp" in r.stderr.decode(), r.stderr)
        msgs = inst.messages("user.alice.Lists")
        t.eq(len(msgs), before + 1, "filed by -m")
        t.eq(fetch(inst, "user.alice.Lists", msgs[-1][0]), b"Return-Path: <s@example.net>\r\n" + m, "bytes")

    with t.case("bin/tandem-deliver: what must go direct runs bin/tandem with the message"):
        m = make_message(t.rng, 9)
        r = lean_run(["--flags", "\\Flagged", "alice+Priv"], m)
        t.eq(r.returncode, 0, r.stderr)
        t.check(b"alice+Priv: delivered mailbox=user.alice.Priv" in r.stdout, r.stdout)
        last = inst.messages("user.alice.Priv")[-1]
        t.eq(last[2], "\\Flagged", "flags applied by bin/tandem")
        t.eq(fetch(inst, "user.alice.Priv", last[0]), m, "the message passed on whole")
        t.eq(lean_run(["--bogus", "alice"], b"x").returncode, 2, "bad usage: 2")
        r = subprocess.run([lean, "-m", "Lists", "-C", inst.conf, "alice"], input=m, capture_output=True)
        t.eq(r.returncode, 0, r.stderr)
        t.check(b"alice: delivered via=lmtp" in r.stdout, "-C among the options, as Cyrus's deliver takes it")

    with t.case("tandemd stopped: the direct path, with a warning"):
        d.stop()
        before = len(inst.messages("user.alice"))
        r = inst.run(["deliver", "alice"], make_message(t.rng, 5))
        t.eq(r.returncode, 0, r.stderr)
        t.check("delivered mailbox=user.alice" in r.stdout, r.stdout)
        t.check("level=warn event=deliver_path path=direct reason=no_lmtp_answer" in r.stderr, r.stderr)
        t.eq(len(inst.messages("user.alice")), before + 1, "stored")
        big = make_message(t.rng, 10, 90000)
        r = lean_run(["alice", "nobody"], big)
        t.eq(r.returncode, 67, r.stderr)
        t.check(b"alice: delivered mailbox=user.alice" in r.stdout and b"nobody: failed" in r.stdout, r.stdout)
        t.check(b"reason=no_lmtp_answer" in r.stderr, r.stderr)
        t.eq(fetch(inst, "user.alice", inst.messages("user.alice")[-1][0]), big, "tandem-deliver's direct path")
        t.eq(inst.run(["check"]).returncode, 0, "the store checks clean")

    with t.case("tandemd stopped on a replica: refused with EX_TEMPFAIL (the MTA retries), --direct still writes"):
        confdir = [l.split(":", 1)[1].strip() for l in open(inst.conf) if l.startswith("configdirectory:")][0]
        rolefile = os.path.join(confdir, "role")
        with open(rolefile, "w") as f:
            f.write("replica\n")
        try:
            before = len(inst.messages("user.alice"))
            for run in (lambda a, m: inst.run(["deliver"] + a, m), lean_run):
                r = run(["alice"], make_message(t.rng, 11))
                t.eq(r.returncode, 75, f"{r.stdout} {r.stderr}")
                t.check("replica" in (r.stdout if isinstance(r.stdout, str) else r.stdout.decode()), r.stdout)
            t.eq(len(inst.messages("user.alice")), before, "nothing stored on the replica")
            r = inst.run(["deliver", "--direct", "alice"], make_message(t.rng, 12))
            t.eq(r.returncode, 0, "an administrator's explicit --direct")
        finally:
            os.unlink(rolefile)

    with t.case("tandemd on a unix socket: used, and deliver opens no store"):
        sock_inst = new_instance()
        sock = os.path.join(sock_inst.root, "lmtp.sock")
        ds = Daemon(sock_inst, services=("imap",), extra_conf=f"lmtp_listen: {sock}\n")
        daemons.append(ds)
        m = make_message(t.rng, 6)
        cmd = [os.path.join(os.environ.get("TANDEM_BIN", "bin"), "tandem"), "-C", sock_inst.conf, "-v", "deliver",
               "alice"]
        if shutil.which("strace"):
            trace = os.path.join(sock_inst.root, "strace.txt")
            cmd = ["strace", "-f", "-e", "trace=open,openat", "-o", trace] + cmd
        r = subprocess.run(cmd, input=m, capture_output=True)
        t.eq(r.returncode, 0, r.stderr)
        t.check(f"path=lmtp addr={sock}" in r.stderr.decode(), r.stderr)
        t.eq(fetch(sock_inst, "user.alice", 1), b"Return-Path: <>\r\n" + m, "stored")
        if shutil.which("strace"):
            opened = [l for l in open(trace) if sock_inst.dir in l and "tandem.conf" not in l]
            t.eq(opened, [], "no file of the instance but its config opened")
            t.check(not any("openssl.cnf" in l for l in open(trace)), "no OpenSSL configuration read")
        ds.stop()

    with t.case("a listener that refuses at once (421): the direct path"):
        fake = new_instance()
        path = os.path.join(fake.root, "fake.sock")
        with open(fake.conf, "a") as f:
            f.write(f"lmtp_listen: {path}\n")
        th = fake_lmtp(path, lambda c: c.sendall(b"421 4.3.2 Too many connections, try again later\r\n"))
        r = fake.run(["deliver", "alice"], make_message(t.rng, 7))
        th.join(5)
        t.eq(r.returncode, 0, r.stderr)
        t.check("delivered mailbox=user.alice uid=1" in r.stdout, r.stdout)
        t.check("reason=no_lmtp_answer" in r.stderr and "421" in r.stderr, r.stderr)

    with t.case("connection lost after the message was sent: a temporary failure, no second copy"):
        os.unlink(path)
        seen = {}

        def drop_after_data(c):
            f = c.makefile("rb")
            c.sendall(b"220 fake LMTP\r\n")
            while True:
                line = f.readline()
                if not line:
                    return
                verb = line[:4].upper()
                if verb == b"LHLO":
                    c.sendall(b"250-fake\r\n250 PIPELINING\r\n")
                elif verb in (b"MAIL", b"RCPT"):
                    c.sendall(b"250 2.1.0 Ok\r\n")
                elif verb == b"DATA":
                    c.sendall(b"354 go ahead\r\n")
                    body = b""
                    while not body.endswith(b"\r\n.\r\n"):
                        chunk = f.readline()
                        if not chunk:
                            return
                        body += chunk
                    seen["body"] = body
                    return  # closes without an answer
        th = fake_lmtp(path, drop_after_data)
        r = fake.run(["deliver", "alice"], b"Subject: x\r\n\r\n.hidden\r\n")
        th.join(5)
        t.eq(r.returncode, 75, r.stdout)  # EX_TEMPFAIL: the MTA keeps it and retries
        t.check("alice: failed (io)" in r.stdout, r.stdout)
        t.eq(seen.get("body"), b"Subject: x\r\n\r\n..hidden\r\n.\r\n", "dot-stuffed on the wire")
        t.eq(len(fake.messages("user.alice")), 1, "no direct copy after the message went out")
finally:
    for dd in daemons:
        dd.stop()
    for i in insts:
        i.cleanup()
t.done()
