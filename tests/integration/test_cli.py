"""test_cli.py: the `tandem` admin command end to end on a real instance:
init, users, mailboxes, delivery, flags, expunge, dump, synclog, check,
and bad input (clear error, exit code, nothing changed)."""
import os
import re
import subprocess

from tlib import TANDEM, Instance, Suite, make_message, sha1

t = Suite("cli")
inst = Instance(channels="repl1")
try:
    with t.case("help and usage exit codes"):
        r = inst.run(["--help"], conf=False)
        t.eq(r.returncode, 0, "tandem --help")
        t.check("deliver" in r.stdout, "help lists commands")
        for cmd in ["init", "user", "mailbox", "deliver", "message", "synclog", "check", "config"]:
            r = inst.run([cmd, "--help"])
            t.eq(r.returncode, 0, f"{cmd} --help")
            t.check("usage:" in r.stdout, f"{cmd} --help prints usage")
        r = inst.run(["--version"], conf=False)
        t.eq(r.returncode, 0, "tandem --version")
        t.check(re.match(r"tandem \d+\.\d+\.\d+\n", r.stdout) is not None, f"version line: {r.stdout!r}")
        t.check("Cyrus 3.6 replication" in r.stdout and "SQLite 3." in r.stdout, f"protocols and libraries: {r.stdout!r}")
        version = r.stdout.split()[1]
        hdr = open(os.path.join(os.path.dirname(TANDEM), "..", "src", "lib", "version.h")).read()
        t.check(f'"{version}"' in hdr, "the version comes from src/lib/version.h")
        t.eq(inst.run(["frobnicate"]).returncode, 2, "unknown command")
        t.eq(inst.run(["user", "zap"]).returncode, 2, "unknown subcommand")

    with t.case("init refuses an existing instance"):
        r = inst.run(["init", inst.dir], conf=False)
        t.eq(r.returncode, 1, "second init")
        t.check("already holds an instance" in r.stderr, f"error says why: {r.stderr}")
        t.check(os.path.exists(os.path.join(inst.dir, "tls", "cert.pem")), "certificate made")
        r = subprocess.run(["openssl", "x509", "-noout", "-subject", "-in",
                            os.path.join(inst.dir, "tls", "cert.pem")], capture_output=True, text=True)
        t.check("test.example" in r.stdout, f"certificate names the server: {r.stdout}")

    with t.case("users: add, duplicate, list, passwd, bad names"):
        t.eq(inst.run(["user", "add", "alice"], "pw1\n").returncode, 0, "add alice")
        t.eq(inst.run(["user", "add", "--no-password", "bob"]).returncode, 0, "add bob")
        r = inst.run(["user", "add", "alice"], "pw\n")
        t.eq(r.returncode, 1, "duplicate add")
        t.check("already exists" in r.stderr, r.stderr)
        r = inst.run(["user", "add", "bad user"], "pw\n")
        t.eq(r.returncode, 1, "bad userid")
        r = inst.run(["user", "add", "carol"], "")
        t.eq(r.returncode, 1, "empty password refused")
        t.check("password" in r.stderr, r.stderr)
        t.eq(inst.ok(["user", "list"]).split(), ["alice", "bob"], "user list")
        t.eq(inst.run(["user", "passwd", "alice"], "pw2\n").returncode, 0, "passwd")
        t.eq(inst.run(["user", "passwd", "nobody"], "pw2\n").returncode, 1, "passwd of a missing user")

    with t.case("mailboxes: create, list, rename keeps uniqueid, delete"):
        inst.ok(["mailbox", "create", "user.alice.Work"])
        inst.ok(["mailbox", "create", "user.alice.Work.Old"])
        rows = [l.split("\t") for l in inst.ok(["mailbox", "list", "alice"]).splitlines()]
        names = [r[0] for r in rows]
        t.eq(names, ["user.alice", "user.alice.Work", "user.alice.Work.Old"], "list")
        uid_before = dict((r[0], r[4]) for r in rows)["user.alice.Work"]
        inst.ok(["mailbox", "rename", "user.alice.Work", "user.alice.Jobs"])
        rows = [l.split("\t") for l in inst.ok(["mailbox", "list", "alice"]).splitlines()]
        d = dict((r[0], r[4]) for r in rows)
        t.eq(d.get("user.alice.Jobs"), uid_before, "uniqueid kept across rename")
        t.check("user.alice.Jobs.Old" in d, "children renamed")
        inst.ok(["mailbox", "delete", "user.alice.Jobs.Old"])
        t.eq(inst.run(["mailbox", "delete", "user.alice.Jobs.Old"]).returncode, 1, "delete twice")
        t.eq(inst.run(["mailbox", "create", "user.alice.Jobs"]).returncode, 1, "create existing")
        t.eq(inst.run(["mailbox", "create", "user.nobody.X"]).returncode, 1, "missing user")
        r = inst.run(["mailbox", "create", "user.alice.bad&name"])
        t.check(r.returncode != 0 and "UTF-7" in r.stderr, f"bad modified UTF-7 refused: {r.stderr}")
        r = inst.run(["mailbox", "create", "user.alice." + "x" * 600])
        t.check(r.returncode != 0, "over-long name refused")
        t.eq(inst.run(["mailbox", "list", "nobody"]).returncode, 1, "list of a missing user")

    with t.case("deliver: stored byte for byte, LF made CRLF, per-recipient results"):
        m = make_message(t.rng, 1)
        r = inst.run(["deliver", "alice", "bob", "alice+Jobs"], m)
        t.eq(r.returncode, 0, f"deliver: {r.stdout} {r.stderr}")
        t.eq(r.stdout.count("delivered"), 3, r.stdout)
        msgs = inst.messages("user.alice")
        t.eq(len(msgs), 1, "alice INBOX has 1")
        t.eq(msgs[0][5], sha1(m), "GUID is the SHA-1 of the bytes")
        r = inst.run(["message", "fetch", "user.alice", "1"])
        t.eq(r.stdout.encode(), m, "fetched bytes equal delivered bytes")
        lf = b"Subject: lf\n\nline\n"
        inst.ok(["deliver", "bob"], lf)
        got = inst.run(["message", "fetch", "user.bob", "2"]).stdout.encode()
        t.eq(got, b"Subject: lf\r\n\r\nline\r\n", "bare LF stored as CRLF")
        r = inst.run(["deliver", "alice", "nobody"], m)
        t.eq(r.returncode, 67, "one unknown recipient fails the command (EX_NOUSER)")
        t.check("alice: delivered" in r.stdout and "nobody: failed" in r.stdout, r.stdout)
        t.eq(len(inst.messages("user.alice")), 2, "the good recipient still got it")
        r = inst.run(["deliver", "alice"], b"")
        t.eq(r.returncode, 65, "empty message refused (EX_DATAERR)")

    with t.case("flags and expunge, UIDs only grow"):
        inst.ok(["deliver", "--flags", "\\Seen $Label1", "--date", "1704067200", "alice"], make_message(t.rng, 2))
        msgs = inst.messages("user.alice")
        t.eq(msgs[-1][2], "\\Seen $Label1", "initial flags")
        t.eq(msgs[-1][3], 1704067200, "internal date")
        inst.ok(["message", "flag", "user.alice", "1,2", "+\\Deleted"])
        t.eq(inst.ok(["message", "expunge", "user.alice"]).strip(), "2 expunged", "expunge \\Deleted")
        t.eq([m[0] for m in inst.messages("user.alice")], [3], "only UID 3 left")
        t.eq([m[0] for m in inst.messages("user.alice", expunged=True)], [1, 2, 3], "expunged kept")
        inst.ok(["deliver", "alice"], make_message(t.rng, 3))
        t.eq([m[0] for m in inst.messages("user.alice")], [3, 4], "next UID is 4")
        r = inst.run(["message", "flag", "user.alice", "3", "+\\Bogus"])
        t.eq(r.returncode, 1, "unknown system flag refused")

    with t.case("change log has every change"):
        log = open(os.path.join(inst.dir, "conf", "sync", "repl1", "log")).read()
        for line in ["MAILBOX user.alice\n", "APPEND user.alice\n", "RENAME user.alice.Work user.alice.Jobs\n",
                     "UNMAILBOX user.alice.Jobs.Old\n", "APPEND user.bob\n", "APPEND user.alice.Jobs\n"]:
            t.check(line in log, f"log has {line.strip()}")
        r = inst.run(["synclog", "-u", "alice"])
        t.eq(r.returncode, 0, "synclog -u")
        r = inst.run(["synclog", "SEEN bob abc"])
        t.eq(r.returncode, 0, "synclog raw line")
        log = open(os.path.join(inst.dir, "conf", "sync", "repl1", "log")).read()
        t.check(log.endswith("USER alice\nSEEN bob abc\n"), "synclog lines appended")
        t.eq(inst.run(["synclog", "BOGUS x"]).returncode, 2, "bad raw line refused")

    with t.case("user del removes the user and logs UNUSER"):
        inst.ok(["user", "del", "bob"])
        t.eq(inst.ok(["user", "list"]).split(), ["alice"], "bob gone")
        t.eq(inst.run(["mailbox", "list", "bob"]).returncode, 1, "bob's mailboxes gone")
        log = open(os.path.join(inst.dir, "conf", "sync", "repl1", "log")).read()
        t.check("UNUSER bob\n" in log, "UNUSER logged")

    with t.case("check finds a damaged file"):
        r = inst.run(["check", "--bodies"])
        t.eq(r.returncode, 0, f"clean store: {r.stdout}")
        guid = inst.messages("user.alice")[0][5]
        path = os.path.join(inst.dir, "spool", "user", "alice", "blobs", guid[:2], guid)
        data = open(path, "rb").read()
        with open(path, "wb") as f:
            f.write(data[:-1] + b"X")
        r = inst.run(["check", "--bodies"])
        t.eq(r.returncode, 1, "damage found")
        t.check("sha1_mismatch" in r.stdout, r.stdout)
        with open(path, "wb") as f:
            f.write(data)

    with t.case("config errors name file and line"):
        bad = os.path.join(inst.root, "bad.conf")
        with open(bad, "w") as f:
            f.write("configdirectory: /tmp/x\nsync_hots: foo\n")
        r = inst.run(["-C", bad, "config"], conf=False)
        t.eq(r.returncode, 2, "bad config exit code")
        t.check("bad.conf:2" in r.stderr and "sync_hots" in r.stderr, f"message: {r.stderr}")
        r = inst.run(["-C", os.path.join(inst.root, "missing.conf"), "user", "list"], conf=False)
        t.eq(r.returncode, 2, "missing config")
        t.eq(inst.run(["config"]).returncode, 0, "good config")
finally:
    inst.cleanup()
t.done()
