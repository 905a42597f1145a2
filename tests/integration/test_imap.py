"""test_imap.py: tandemd's IMAP service driven by Python's imaplib and by a
raw line client (for exact responses): login, LOGINDISABLED and STARTTLS,
imaps, SELECT/EXAMINE, FETCH, STORE, COPY/MOVE, APPEND, EXPUNGE, SEARCH,
mailbox commands, NAMESPACE, two sessions, IDLE, CONDSTORE, ACL, QUOTA,
bad commands, and the change log that every change reaches."""
import imaplib
import os
import re
import socket
import ssl
import subprocess
import time

import imapraw
from tlib import BIN, Daemon, Instance, Suite, make_message, wait_for

t = Suite("imap")
imaplib.Commands.setdefault("MOVE", ("SELECTED",))
imaplib.Commands.setdefault("IDLE", ("AUTH", "SELECTED"))

PW = {"alice": "alicepw", "bob": "bobpw", "admin": "adminpw"}


def noverify():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Raw(imapraw.Raw):
    """imapraw's line-level client, logging in with the test's passwords."""

    def login(self, user):
        return super().login(user, PW[user])


def imap(user=None, tls=False):
    M = imaplib.IMAP4_SSL("127.0.0.1", d.port["imaps"], ssl_context=noverify()) if tls else \
        imaplib.IMAP4("127.0.0.1", d.port["imap"])
    if user:
        M.login(user, PW[user])
    return M


def fetch_one(M, what, msg, uid=False):
    """The first literal of a FETCH (the data item's bytes)."""
    typ, data = M.uid("FETCH", msg, what) if uid else M.fetch(msg, what)
    if typ != "OK":
        raise RuntimeError(f"FETCH {what}: {typ} {data}")
    for item in data:
        if isinstance(item, tuple):
            return item[0], item[1]
    return data[0], None


def store_body(mbox, uid):
    return subprocess.run([os.path.join(BIN, "tandem"), "-C", inst.conf, "message", "fetch", mbox, str(uid)],
                          capture_output=True).stdout


def uids(mbox):
    return [r[0] for r in inst.messages(mbox)]


def flags_of(mbox, uid):
    for r in inst.messages(mbox):
        if r[0] == uid:
            return r[2].split()
    return None


def chlog_lines():
    p = os.path.join(inst.dir, "conf", "sync", "repl1", "log")
    try:
        return open(p, "rb").read().decode("utf-8", "replace").splitlines()
    except OSError:
        return []


def raw_check(r, cond, msg):
    return t.check(cond, f"{msg}\n--- exchange ---\n{r.exchange()}")


MULTI = (b"From: Carol <carol@example.org>\r\nTo: alice@example.com\r\nSubject: multipart test\r\n"
         b"Date: Tue, 2 Jan 2024 10:00:00 +0000\r\nMessage-ID: <multi@example.org>\r\nMIME-Version: 1.0\r\n"
         b"Content-Type: multipart/mixed; boundary=\"XYZ\"\r\n\r\npreamble\r\n--XYZ\r\n"
         b"Content-Type: text/plain; charset=us-ascii\r\n\r\nfirst part text\r\n--XYZ\r\n"
         b"Content-Type: application/octet-stream; name=\"a.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
         b"AAECAwQF\r\n--XYZ--\r\n")

inst = Instance(channels="repl1")
d = None
d2 = None
inst2 = None
try:
    for u, pw in PW.items():
        inst.ok(["user", "add", u], stdin=pw + "\n")
    msgs = [make_message(t.rng, i) for i in range(1, 4)]
    for m in msgs:
        inst.ok(["deliver", "alice"], stdin=m)
    inst.ok(["deliver", "alice"], stdin=MULTI)
    msgs.append(MULTI)
    inst.ok(["mailbox", "create", "user.alice.Archive"])
    log_before = len(chlog_lines())
    d = Daemon(inst, services=("imap", "imaps", "lmtp"), extra_conf="failedloginpause: 0\n")

    # ---------------------------------------------------------------- login
    with t.case("CAPABILITY before login: IMAP4rev1, STARTTLS, AUTH=PLAIN (plaintext allowed)"):
        r = Raw(d.port["imap"])
        t.check(r.greeting.startswith(b"* OK"), f"greeting {r.greeting!r}")
        u, tagged = r.cmd("CAPABILITY")
        caps = b"".join(u)
        raw_check(r, tagged.startswith(b"OK") and b"IMAP4rev1" in caps and b"STARTTLS" in caps, "capabilities")
        raw_check(r, b"LOGINDISABLED" not in caps, "no LOGINDISABLED when allowplaintext: yes")
        r.close()

    with t.case("LOGIN: good password OK, bad password NO and event=login_fail, session goes on"):
        M = imap()
        try:
            M.login("alice", "wrong")
            t.check(False, "bad password accepted")
        except imaplib.IMAP4.error:
            pass
        r = Raw(d.port["imap"])
        _, tagged = r.cmd("LOGIN alice wrongpw")
        raw_check(r, tagged.startswith(b"NO"), "bad password gives NO")
        _, tagged = r.cmd("LOGIN nosuchuser whatever")
        raw_check(r, tagged.startswith(b"NO"), "unknown user gives NO")
        _, tagged = r.cmd("LOGIN alice alicepw")
        raw_check(r, tagged.startswith(b"OK"), "then the right password works on the same connection")
        r.close()
        typ, _ = M.login("alice", "alicepw")
        t.eq(typ, "OK", "imaplib login after a failure")
        M.logout()
        wait_for(lambda: re.search(r"event=login_fail .*user=alice", d.log()), 30, "login_fail logged for alice")

    with t.case("imaps: TLS from the first byte, login and SELECT"):
        M = imap("alice", tls=True)
        typ, data = M.select("INBOX")
        t.eq((typ, data), ("OK", [b"4"]), "SELECT over imaps")
        M.logout()

    # --------------------------------------------------------- select/fetch
    with t.case("SELECT: EXISTS, RECENT, FLAGS, PERMANENTFLAGS, UIDVALIDITY, UIDNEXT, READ-WRITE"):
        r = Raw(d.port["imap"]).login("alice")
        u, tagged = r.cmd("SELECT INBOX")
        text = b"".join(u)
        uv = [ln.split("\t")[2] for ln in inst.ok(["mailbox", "list", "alice"]).splitlines()
              if ln.split("\t")[0] == "user.alice"][0]
        raw_check(r, b"* 4 EXISTS\r\n" in text, "4 EXISTS")
        raw_check(r, re.search(rb"\* \d+ RECENT\r\n", text), "RECENT")
        raw_check(r, re.search(rb"\* FLAGS \([^)]*\\Seen", text), "FLAGS")
        raw_check(r, b"[PERMANENTFLAGS (" in text, "PERMANENTFLAGS")
        raw_check(r, f"[UIDVALIDITY {uv}]".encode() in text, f"UIDVALIDITY {uv}")
        raw_check(r, b"[UIDNEXT 5]" in text, "UIDNEXT 5")
        raw_check(r, tagged.startswith(b"OK [READ-WRITE]"), "tagged OK [READ-WRITE]")
        u, tagged = r.cmd("EXAMINE INBOX")
        raw_check(r, tagged.startswith(b"OK [READ-ONLY]"), "EXAMINE is READ-ONLY")
        u, tagged = r.cmd("SELECT INBOX.NoSuch")
        raw_check(r, tagged.startswith(b"NO"), "SELECT of a missing mailbox: NO")
        u, tagged = r.cmd("FETCH 1 FLAGS")
        raw_check(r, tagged.startswith(b"BAD"), "after a failed SELECT nothing is selected")
        r.close()

    with t.case("FETCH BODY[] is byte-exact; BODY[HEADER], BODY[1], <0.10>, ENVELOPE, BODYSTRUCTURE"):
        M = imap("alice")
        M.select("INBOX", readonly=True)
        for i, m in enumerate(msgs, 1):
            _, body = fetch_one(M, "(BODY.PEEK[])", str(i))
            t.eq(body, m, f"BODY[] of message {i} equals the delivered bytes")
            t.eq(body, store_body("user.alice", i), f"BODY[] of message {i} equals the store's")
        _, hdr = fetch_one(M, "(BODY.PEEK[HEADER])", "4")
        t.eq(hdr, MULTI[:MULTI.index(b"\r\n\r\n") + 4], "BODY[HEADER] with the blank line")
        _, p1 = fetch_one(M, "(BODY.PEEK[1])", "4")
        t.eq(p1, b"first part text", "BODY[1] of the multipart")
        _, p2 = fetch_one(M, "(BODY.PEEK[2])", "4")
        t.eq(p2, b"AAECAwQF", "BODY[2] is the still-encoded part")
        head, part = fetch_one(M, "(BODY.PEEK[]<0.10>)", "1")
        t.eq(part, msgs[0][:10], "partial <0.10>")
        t.check(b"BODY[]<0>" in head, f"partial answered as BODY[]<0>: {head!r}")
        typ, data = M.fetch("4", "(ENVELOPE)")
        env = b"".join(x if isinstance(x, bytes) else x[0] + x[1] for x in data)
        t.check(b"\"multipart test\"" in env and b"\"carol\" \"example.org\"" in env and
                b"\"Tue, 2 Jan 2024 10:00:00 +0000\"" in env and b"<multi@example.org>" in env,
                f"ENVELOPE: {env!r}")
        typ, data = M.fetch("4", "(BODYSTRUCTURE)")
        bs = b"".join(x if isinstance(x, bytes) else x[0] + x[1] for x in data).upper()
        t.check(b"(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\")" in bs and b"\"APPLICATION\" \"OCTET-STREAM\"" in bs
                and b"\"MIXED\"" in bs and b"\"BOUNDARY\" \"XYZ\"" in bs, f"BODYSTRUCTURE: {bs!r}")
        typ, data = M.fetch("1", "(UID RFC822.SIZE FLAGS INTERNALDATE)")
        t.check(typ == "OK" and f"RFC822.SIZE {len(msgs[0])}".encode() in data[0] and b"UID 1" in data[0],
                f"UID RFC822.SIZE: {data}")
        t.eq(flags_of("user.alice", 1), [], "PEEK on EXAMINE did not set \\Seen")
        M.logout()

    # ----------------------------------------------------------------- store
    with t.case("STORE +FLAGS/-FLAGS/FLAGS.SILENT and UID STORE"):
        r = Raw(d.port["imap"]).login("alice")
        r.cmd("SELECT INBOX")
        u, tagged = r.cmd("STORE 1 +FLAGS (\\Flagged $Label1)")
        raw_check(r, tagged.startswith(b"OK") and any(re.match(rb"\* 1 FETCH \(.*FLAGS \(.*\\Flagged", x)
                                                       for x in u), "STORE +FLAGS answers FETCH FLAGS")
        t.eq(sorted(flags_of("user.alice", 1)), ["$Label1", "\\Flagged"], "flags in the store")
        u, tagged = r.cmd("STORE 1 -FLAGS.SILENT ($Label1)")
        raw_check(r, tagged.startswith(b"OK") and not any(b"FETCH" in x for x in u), ".SILENT sends no FETCH")
        t.eq(flags_of("user.alice", 1), ["\\Flagged"], "flag removed")
        u, tagged = r.cmd("UID STORE 2 FLAGS (\\Seen \\Answered)")
        raw_check(r, tagged.startswith(b"OK") and any(re.match(rb"\* 2 FETCH \(.*UID 2", x) for x in u),
                  "UID STORE answers FETCH with UID")
        t.eq(sorted(flags_of("user.alice", 2)), ["\\Answered", "\\Seen"], "UID STORE flags")
        u, tagged = r.cmd("STORE 99 +FLAGS (\\Seen)")
        raw_check(r, tagged.startswith(b"BAD") or tagged.startswith(b"NO"), "STORE beyond EXISTS refused")
        u, tagged = r.cmd("UID STORE 99 +FLAGS (\\Seen)")
        raw_check(r, tagged.startswith(b"OK"), "UID STORE of a missing UID is OK and does nothing")
        u, tagged = r.cmd("STORE 1 +FLAGS (\\Recent)")
        raw_check(r, not tagged.startswith(b"OK") or "\\Recent" not in flags_of("user.alice", 1),
                  "\\Recent cannot be stored")
        r.close()

    # -------------------------------------------------------- copy/move/append
    with t.case("COPY answers COPYUID; MOVE moves with COPYUID and EXPUNGE"):
        r = Raw(d.port["imap"]).login("alice")
        r.cmd("SELECT INBOX")
        uv_arch = [ln.split("\t")[2] for ln in inst.ok(["mailbox", "list", "alice"]).splitlines()
                   if ln.split("\t")[0] == "user.alice.Archive"][0]
        u, tagged = r.cmd("COPY 1:2 INBOX.Archive")
        raw_check(r, tagged.startswith(f"OK [COPYUID {uv_arch} 1:2 1:2]".encode()) or
                  tagged.startswith(f"OK [COPYUID {uv_arch} 1,2 1,2]".encode()), "COPYUID")
        t.eq(uids("user.alice.Archive"), [1, 2], "copied")
        t.eq(store_body("user.alice.Archive", 1), msgs[0], "copy has the same bytes")
        t.eq(flags_of("user.alice.Archive", 1), ["\\Flagged"], "copy keeps flags")
        u, tagged = r.cmd("UID COPY 3 INBOX.NoSuch")
        raw_check(r, tagged.startswith(b"NO [TRYCREATE]"), "COPY to a missing mailbox: NO [TRYCREATE]")
        u, tagged = r.cmd("MOVE 3 INBOX.Archive")
        allt = b"".join(u) + tagged
        raw_check(r, f"[COPYUID {uv_arch} 3 3]".encode() in allt, "MOVE gives COPYUID")
        raw_check(r, b"* 3 EXPUNGE\r\n" in u, "MOVE expunges from the source")
        raw_check(r, tagged.startswith(b"OK"), "MOVE OK")
        t.eq(uids("user.alice"), [1, 2, 4], "source lost UID 3")
        t.eq(uids("user.alice.Archive"), [1, 2, 3], "target got it")
        u, tagged = r.cmd("UID MOVE 4 INBOX.Archive")
        raw_check(r, b"* 3 EXPUNGE\r\n" in u and tagged.startswith(b"OK"), "UID MOVE")
        t.eq(uids("user.alice"), [1, 2], "UID MOVE removed UID 4")
        t.eq(store_body("user.alice.Archive", 4), MULTI, "moved bytes")
        r.close()

    with t.case("APPEND with flags and date answers APPENDUID; bytes stored exactly"):
        M = imap("alice")
        m = make_message(t.rng, 50)
        typ, data = M.append("INBOX", "(\\Seen $Work)", imaplib.Time2Internaldate(1700000000), m)
        uv = [ln.split("\t")[2] for ln in inst.ok(["mailbox", "list", "alice"]).splitlines()
              if ln.split("\t")[0] == "user.alice"][0]
        t.eq(typ, "OK", f"APPEND: {data}")
        t.check(data and data[0].startswith(f"[APPENDUID {uv} 5]".encode()), f"APPENDUID: {data}")
        t.eq(store_body("user.alice", 5), m, "appended bytes")
        t.eq(sorted(flags_of("user.alice", 5)), ["$Work", "\\Seen"], "appended flags")
        t.eq([x[3] for x in inst.messages("user.alice") if x[0] == 5], [1700000000], "internal date")
        typ, data = M.append("INBOX.NoSuch", None, None, m)
        t.check(typ == "NO" and b"TRYCREATE" in data[0], f"APPEND to a missing mailbox: {typ} {data}")
        r = Raw(d.port["imap"]).login("alice")
        u, tagged = r.cmd("APPEND INBOX", literal=b"Subject: raw\r\n\r\nraw body\r\n")
        raw_check(r, tagged.startswith(b"OK [APPENDUID"), "raw APPEND")
        # LITERAL+: no continuation
        r.send(b"p1 APPEND INBOX {11+}\r\nSubject: p\r\n")
        r.send(b"\r\n")
        ln = r.line()
        raw_check(r, ln.startswith(b"p1 OK"), "APPEND with LITERAL+")
        r.close()
        M.logout()

    with t.case("EXPUNGE sends EXPUNGE per message; UID EXPUNGE only the given UIDs"):
        r = Raw(d.port["imap"]).login("alice")
        u, _ = r.cmd("SELECT INBOX")
        before = uids("user.alice")  # [1, 2, 5, 6, 7]
        t.eq(before, [1, 2, 5, 6, 7], "INBOX before")
        r.cmd("STORE 1,3,4 +FLAGS.SILENT (\\Deleted)")
        u, tagged = r.cmd("UID EXPUNGE 5")
        raw_check(r, u == [b"* 3 EXPUNGE\r\n"] and tagged.startswith(b"OK"), "UID EXPUNGE 5 only")
        t.eq(uids("user.alice"), [1, 2, 6, 7], "UID 5 gone, 1 and 6 kept")
        u, tagged = r.cmd("EXPUNGE")
        raw_check(r, u == [b"* 3 EXPUNGE\r\n", b"* 1 EXPUNGE\r\n"] or u == [b"* 1 EXPUNGE\r\n", b"* 2 EXPUNGE\r\n"],
                  "EXPUNGE of 1 and 6 (sequence numbers valid in order)")
        t.eq(uids("user.alice"), [2, 7], "after EXPUNGE")
        r.cmd("EXAMINE INBOX")
        u, tagged = r.cmd("EXPUNGE")
        raw_check(r, tagged.startswith(b"NO"), "EXPUNGE on a read-only mailbox: NO")
        r.close()

    # ------------------------------------------------------------- search
    with t.case("SEARCH FROM, SUBJECT, UNSEEN, UID range, OR/NOT, LARGER, SINCE"):
        inst.ok(["mailbox", "create", "user.alice.Search"])
        specs = [("zed@one.example", "apple pie", 300, "1704067200", "\\Seen"),    # 2024-01-01
                 ("amy@two.example", "banana split", 3000, "1709251200", ""),     # 2024-03-01
                 ("zed@one.example", "cherry tart", 1500, "1714521600", "\\Seen"),  # 2024-05-01
                 ("bob@three.example", "Apple crumble", 6000, "1719792000", "")]  # 2024-07-01
        for i, (frm, subj, size, date, flags) in enumerate(specs):
            body = f"From: {frm}\r\nSubject: {subj}\r\n\r\n".encode()
            body += b"x" * (size - len(body) - 2) + b"\r\n"
            args = ["deliver", "--date", date] + (["--flags", flags] if flags else []) + ["alice+Search"]
            inst.ok(args, stdin=body)
        r = Raw(d.port["imap"]).login("alice")
        r.cmd("SELECT INBOX.Search")

        def search(q, want, uid=False):
            u, tagged = r.cmd(("UID SEARCH " if uid else "SEARCH ") + q)
            got = None
            for ln in u:
                if ln.startswith(b"* SEARCH"):
                    got = [int(x) for x in ln[8:].split()]
            raw_check(r, tagged.startswith(b"OK") and got == want, f"SEARCH {q}: got {got}, want {want}")

        search("FROM zed", [1, 3])
        search("SUBJECT apple", [1, 4])
        search("UNSEEN", [2, 4])
        search("UID 2:3", [2, 3])
        search("2:*", [2, 3, 4], uid=True)
        search("OR FROM amy SUBJECT cherry", [2, 3])
        search("NOT FROM zed", [2, 4])
        search("LARGER 2000", [2, 4])
        search("SINCE 1-Apr-2024", [3, 4])
        search("BEFORE 1-Apr-2024 UNSEEN", [2])
        search("ALL", [1, 2, 3, 4])
        search("CHARSET UTF-8 SUBJECT banana", [2])
        search("FROM nobody", [])
        u, tagged = r.cmd("SEARCH FOO")
        raw_check(r, tagged.startswith(b"BAD"), "unknown SEARCH key: BAD")
        r.close()

    # ------------------------------------------------------------ mailboxes
    with t.case("CREATE/LIST/LSUB/SUBSCRIBE/STATUS/RENAME/DELETE"):
        r = Raw(d.port["imap"]).login("alice")
        u, tagged = r.cmd("CREATE INBOX.Projects")
        raw_check(r, tagged.startswith(b"OK"), "CREATE")
        u, tagged = r.cmd("CREATE INBOX.Projects.Tandem")
        raw_check(r, tagged.startswith(b"OK"), "CREATE nested")
        u, tagged = r.cmd("CREATE INBOX.Deep.Er")
        raw_check(r, tagged.startswith(b"OK"), "CREATE with a missing parent")
        u, tagged = r.cmd('LIST "" "INBOX.%"')
        raw_check(r, any(x.rstrip().endswith(b" INBOX.Deep") for x in u),
                  "the missing parent is listed by % (created, or \\Noselect: RFC 3501 6.3.8)")
        u, tagged = r.cmd("CREATE INBOX.Projects.Tandem")
        raw_check(r, tagged.startswith(b"NO"), "CREATE of an existing mailbox: NO")
        u, tagged = r.cmd('LIST "" "*"')
        names = [re.sub(rb'^\* LIST \([^)]*\) (?:"."|NIL) ', b"", x).strip() for x in u if x.startswith(b"* LIST")]
        raw_check(r, tagged.startswith(b"OK") and set([b"INBOX", b"INBOX.Archive", b"INBOX.Projects",
                                                        b"INBOX.Projects.Tandem", b"INBOX.Search"]) <= set(names),
                  f"LIST * names: {names}")
        raw_check(r, any(x.startswith(b"* LIST (") and b"\\HasChildren" in x and x.rstrip().endswith(b" INBOX.Projects")
                         for x in u), "the parent is listed with \\HasChildren (CHILDREN)")
        u, tagged = r.cmd('LIST "" "INBOX.%"')
        names = [x.rsplit(b" ", 1)[1].strip() for x in u if x.startswith(b"* LIST")]
        raw_check(r, b"INBOX.Projects.Tandem" not in names and b"INBOX.Projects" in names, "% does not descend")
        u, tagged = r.cmd('LIST "" ""')
        raw_check(r, any(b'"."' in x for x in u), "LIST \"\" \"\" gives the separator")
        u, tagged = r.cmd("SUBSCRIBE INBOX.Projects.Tandem")
        raw_check(r, tagged.startswith(b"OK"), "SUBSCRIBE")
        u, tagged = r.cmd('LSUB "" "*"')
        raw_check(r, any(x.rstrip().endswith(b"INBOX.Projects.Tandem") for x in u), "LSUB shows it")
        # exactly: no flags (the unsubscribed parent is not listed by *), the separator, the name
        raw_check(r, tagged.startswith(b"OK") and u == [b'* LSUB () "." INBOX.Projects.Tandem\r\n'],
                  f"the exact LSUB response: {u}")
        u, tagged = r.cmd("UNSUBSCRIBE INBOX.Projects.Tandem")
        u, tagged = r.cmd('LSUB "" "*"')
        raw_check(r, not any(x.rstrip().endswith(b"INBOX.Projects.Tandem") for x in u), "UNSUBSCRIBE")
        raw_check(r, tagged.startswith(b"OK") and u == [], f"LSUB after UNSUBSCRIBE lists nothing: {u}")
        r.cmd("SUBSCRIBE INBOX.Search")
        u, tagged = r.cmd("STATUS INBOX.Search (MESSAGES UNSEEN UIDNEXT UIDVALIDITY RECENT)")
        st = b"".join(u)
        raw_check(r, tagged.startswith(b"OK") and b"MESSAGES 4" in st and b"UNSEEN 2" in st and
                  b"UIDNEXT 5" in st and b"UIDVALIDITY" in st, "STATUS")
        u, tagged = r.cmd("RENAME INBOX.Projects INBOX.Work")
        raw_check(r, tagged.startswith(b"OK"), "RENAME with children")
        mbs = [ln.split("\t")[0] for ln in inst.ok(["mailbox", "list", "alice"]).splitlines()]
        t.check("user.alice.Work.Tandem" in mbs and "user.alice.Projects" not in mbs, f"renamed: {mbs}")
        u, tagged = r.cmd("RENAME INBOX.Search INBOX.Work")
        raw_check(r, tagged.startswith(b"NO"), "RENAME onto an existing mailbox: NO")
        u, tagged = r.cmd("DELETE INBOX.Work.Tandem")
        raw_check(r, tagged.startswith(b"OK"), "DELETE")
        u, tagged = r.cmd("DELETE INBOX")
        raw_check(r, tagged.startswith(b"NO"), "DELETE INBOX: NO")
        u, tagged = r.cmd("DELETE INBOX.Nope")
        raw_check(r, tagged.startswith(b"NO"), "DELETE of a missing mailbox: NO")
        mbs = [ln.split("\t")[0] for ln in inst.ok(["mailbox", "list", "alice"]).splitlines()]
        t.check("user.alice.Work.Tandem" not in mbs and "user.alice.Work" in mbs, f"deleted: {mbs}")
        u, tagged = r.cmd("CREATE INBOX.Sent (USE (\\Sent))")
        raw_check(r, tagged.startswith(b"OK"), "CREATE-SPECIAL-USE")
        u, tagged = r.cmd('LIST "" "INBOX.Sent"')
        raw_check(r, any(b"\\Sent" in x for x in u), "special use listed")
        r.close()

    with t.case("NAMESPACE"):
        r = Raw(d.port["imap"]).login("alice")
        u, tagged = r.cmd("NAMESPACE")
        raw_check(r, tagged.startswith(b"OK") and any(x.startswith(b'* NAMESPACE (("INBOX." "."))') for x in u),
                  "personal namespace INBOX. with '.'")
        r.close()

    # ------------------------------------------------------------ sessions
    with t.case("two sessions: flag change and append in one show in the other after NOOP"):
        a = Raw(d.port["imap"]).login("alice")
        b = Raw(d.port["imap"]).login("alice")
        a.cmd("SELECT INBOX")
        u, _ = b.cmd("SELECT INBOX")
        n = int([x for x in u if x.endswith(b" EXISTS\r\n")][0].split()[1])
        a.cmd("STORE 1 +FLAGS (\\Draft)")
        u, tagged = b.cmd("NOOP")
        raw_check(b, any(re.match(rb"\* 1 FETCH \(.*FLAGS \(.*\\Draft", x) for x in u), "flag change seen")
        a.cmd("APPEND INBOX", literal=b"Subject: from a\r\n\r\nhello\r\n")
        u, tagged = b.cmd("NOOP")
        raw_check(b, b"* %d EXISTS\r\n" % (n + 1) in u, "EXISTS after another session's APPEND")
        a.cmd("STORE %d +FLAGS.SILENT (\\Deleted)" % (n + 1))
        a.cmd("EXPUNGE")
        u, tagged = b.cmd("FETCH 1 FLAGS")
        raw_check(b, not any(b"EXPUNGE" in x for x in u), "no EXPUNGE after FETCH (RFC 3501 7.4.1)")
        u, tagged = b.cmd("NOOP")
        raw_check(b, b"* %d EXPUNGE\r\n" % (n + 1) in u, "EXPUNGE after NOOP")
        a.close()
        b.close()

    with t.case("IDLE wakes up by itself when another session APPENDs"):
        M = imap("alice")
        typ, data = M.select("INBOX")
        n = int(data[0])
        tag = M._new_tag()
        M.send(tag + b" IDLE\r\n")
        cont = M.readline()
        t.check(cont.startswith(b"+"), f"IDLE continuation: {cont!r}")
        # a generous deadline: the idle session sends nothing, so EXISTS
        # can only come from the server noticing the other session's APPEND
        M.sock.settimeout(30)
        other = imap("alice")
        other.append("INBOX", None, None, b"Subject: wake\r\n\r\nup\r\n")
        got = M.readline()
        t.eq(got, b"* %d EXISTS\r\n" % (n + 1), "EXISTS during IDLE, with no command from the client")
        M.send(b"DONE\r\n")
        while True:
            ln = M.readline()
            if ln.startswith(tag) or not ln:
                break
        t.check(ln.startswith(tag + b" OK"), f"IDLE ends with OK: {ln!r}")
        t.eq(M.noop()[0], "OK", "session goes on after IDLE")
        other.logout()
        M.logout()

    # ------------------------------------------------------------ condstore
    with t.case("CONDSTORE: SELECT (CONDSTORE), FETCH (MODSEQ), STORE UNCHANGEDSINCE"):
        r = Raw(d.port["imap"]).login("alice")
        u, tagged = r.cmd("SELECT INBOX (CONDSTORE)")
        hms = [re.search(rb"HIGHESTMODSEQ (\d+)", x) for x in u]
        hms = [int(m.group(1)) for m in hms if m]
        raw_check(r, tagged.startswith(b"OK") and hms, "HIGHESTMODSEQ in SELECT")
        u, tagged = r.cmd("FETCH 1 (MODSEQ)")
        m = re.search(rb"MODSEQ \((\d+)\)", b"".join(u))
        raw_check(r, m, "FETCH MODSEQ")
        ms = int(m.group(1)) if m else 0
        first_uid, want = [(x[0], x[1]) for x in inst.messages("user.alice")][0]
        t.eq(ms, want, "MODSEQ equals the store's")
        u, tagged = r.cmd(f"STORE 1 (UNCHANGEDSINCE {ms}) +FLAGS ($Cond)")
        raw_check(r, tagged.startswith(b"OK") and not tagged.startswith(b"OK [MODIFIED") and
                  any(re.search(rb"MODSEQ \((\d+)\)", x) and int(re.search(rb"MODSEQ \((\d+)\)", x).group(1)) > ms
                      for x in u), "STORE at the current modseq: applied, FETCH with a higher MODSEQ")
        u, tagged = r.cmd(f"STORE 1 (UNCHANGEDSINCE {ms}) -FLAGS ($Cond)")
        raw_check(r, tagged.startswith(b"OK [MODIFIED 1]"), "STORE with a stale modseq: [MODIFIED 1]")
        t.check("$Cond" in flags_of("user.alice", first_uid), "stale STORE changed nothing")
        u, tagged = r.cmd(f"FETCH 1:* (FLAGS) (CHANGEDSINCE {ms})")
        raw_check(r, tagged.startswith(b"OK") and any(x.startswith(b"* 1 FETCH") for x in u), "CHANGEDSINCE")
        r.close()

    # ------------------------------------------------------------- acl/quota
    with t.case("SETACL/GETACL/MYRIGHTS: bob reads alice's shared folder"):
        r = Raw(d.port["imap"]).login("alice")
        r.cmd("CREATE INBOX.Shared")
        r.cmd("APPEND INBOX.Shared", literal=b"Subject: shared\r\n\r\nfor bob\r\n")
        u, tagged = r.cmd("SETACL INBOX.Shared bob lrs")
        raw_check(r, tagged.startswith(b"OK"), "SETACL")
        u, tagged = r.cmd("GETACL INBOX.Shared")
        raw_check(r, any(x.startswith(b"* ACL INBOX.Shared") and b"bob lrs" in x and b"alice " in x for x in u),
                  "GETACL lists bob and alice")
        u, tagged = r.cmd("MYRIGHTS INBOX.Shared")
        raw_check(r, any(x.startswith(b"* MYRIGHTS INBOX.Shared") and b"a" in x.split()[-1] for x in u),
                  "owner has admin")
        b = Raw(d.port["imap"]).login("bob")
        u, tagged = b.cmd("MYRIGHTS user.alice.Shared")
        raw_check(b, any(x.rstrip() == b"* MYRIGHTS user.alice.Shared lrs" for x in u), "bob's rights")
        u, tagged = b.cmd('LIST "" "user.*"')
        raw_check(b, any(x.rstrip().endswith(b"user.alice.Shared") for x in u), "bob lists it")
        raw_check(b, not any(x.rstrip().endswith(b"user.alice.Archive") for x in u), "bob does not see the rest")
        u, tagged = b.cmd("SELECT user.alice.Shared")
        raw_check(b, tagged.startswith(b"OK") and b"* 1 EXISTS\r\n" in u, "bob selects it")
        u, tagged = b.cmd("FETCH 1 BODY[]")
        raw_check(b, b"for bob" in b"".join(u), "bob reads it")
        # bob's \Seen is his own (his seen state), not alice's flag
        raw_check(b, "\\Seen" not in flags_of("user.alice.Shared", 1), "bob's read leaves alice's record unseen")
        u, tagged = b.cmd("FETCH 1 FLAGS")
        raw_check(b, any(b"\\Seen" in x for x in u), "bob sees his own \\Seen")
        u, tagged = r.cmd("EXAMINE INBOX.Shared")
        u, tagged = r.cmd("FETCH 1 FLAGS")
        raw_check(r, not any(b"\\Seen" in x for x in u), "alice does not see bob's \\Seen")
        u, tagged = b.cmd("STORE 1 -FLAGS (\\Seen)")
        u, tagged = b.cmd("FETCH 1 FLAGS")
        raw_check(b, tagged.startswith(b"OK") and not any(b"\\Seen" in x for x in u), "bob clears his \\Seen")
        u, tagged = b.cmd("STORE 1 +FLAGS (\\Deleted)")
        raw_check(b, tagged.startswith(b"NO") or "\\Deleted" not in flags_of("user.alice.Shared", 1),
                  "bob may not set \\Deleted without t")
        u, tagged = b.cmd("SELECT user.alice.Archive")
        raw_check(b, tagged.startswith(b"NO"), "bob may not open alice's other folders")
        u, tagged = b.cmd("SETACL user.alice.Shared bob lrswipkxte")
        raw_check(b, tagged.startswith(b"NO"), "bob may not change the ACL")
        u, tagged = r.cmd("DELETEACL INBOX.Shared bob")
        u, tagged = b.cmd("NOOP")
        u, tagged = b.cmd("EXAMINE user.alice.Shared")
        raw_check(b, tagged.startswith(b"NO"), "access gone after DELETEACL")
        r.close()
        b.close()

    with t.case("COPY and MOVE into another owner's folder: in batches, flags and dates kept"):
        r = Raw(d.port["imap"]).login("alice")
        r.cmd("CREATE INBOX.Drop")
        u, tagged = r.cmd("SETACL INBOX.Drop bob lrsiwte")
        raw_check(r, tagged.startswith(b"OK"), "alice lets bob insert into INBOX.Drop")
        M = imap("bob")
        M.create("INBOX.Out")
        n = 70	# more than one copy batch (IMAPD_COPY_BATCH, 64)
        for i in range(n):
            typ, _ = M.append("INBOX.Out", "(\\Flagged)" if i % 2 else "()", imaplib.Time2Internaldate(1700000000 + i),
                              f"Subject: out {i}\r\nMessage-ID: <out{i}@x>\r\n\r\nbody {i}\r\n".encode())
        M.select("INBOX.Out")
        typ, data = M.uid("COPY", "1:*", "user.alice.Drop")
        t.eq(typ, "OK", f"UID COPY of {n} into alice's folder")
        _, code = M.response("COPYUID")	# the tagged OK's [COPYUID uidvalidity src dst]
        t.eq((code[-1] or b"").split()[1:], [f"1:{n}".encode()] * 2, f"COPYUID pairs {n} UIDs")
        rows = inst.messages("user.alice.Drop")
        t.eq(len(rows), n, "alice's folder holds every copy")
        t.eq([("\\Flagged" in rw[2]) for rw in rows], [bool(i % 2) for i in range(n)], "flags kept, in order")
        t.eq([rw[3] for rw in rows], [1700000000 + i for i in range(n)], "internal dates kept, in order")
        typ, data = M.uid("MOVE", "1:5", "user.alice.Drop")
        t.eq(typ, "OK", "UID MOVE into alice's folder")
        t.eq(len(inst.messages("user.alice.Drop")), n + 5, "moved ones arrived")
        t.eq(uids("user.bob.Out"), list(range(6, n + 1)), "moved ones left bob's folder")
        M.logout()
        r.cmd("DELETE INBOX.Drop")
        r.close()

    with t.case("SETQUOTA by an admin, GETQUOTAROOT by the user"):
        a = Raw(d.port["imap"]).login("admin")
        u, tagged = a.cmd("SETQUOTA user.bob (STORAGE 1000)")
        raw_check(a, tagged.startswith(b"OK"), "admin SETQUOTA")
        b = Raw(d.port["imap"]).login("bob")
        u, tagged = b.cmd("GETQUOTAROOT INBOX")
        # the root's name: Cyrus's user.bob, or INBOX in bob's own namespace; the same in both lines
        qr = [x.split()[3] for x in u if x.startswith(b"* QUOTAROOT INBOX ")]
        raw_check(b, tagged.startswith(b"OK") and qr and qr[0] in (b"user.bob", b"INBOX") and
                  any(re.match(rb"\* QUOTA " + re.escape(qr[0]) + rb" \(STORAGE \d+ 1000\)", x) for x in u),
                  "GETQUOTAROOT")
        u, tagged = b.cmd("SETQUOTA user.bob (STORAGE 99999)")
        raw_check(b, tagged.startswith(b"NO"), "a user may not raise its own quota")
        u, tagged = a.cmd("GETQUOTA user.bob")
        raw_check(a, any(re.match(rb"\* QUOTA user\.bob \(STORAGE \d+ 1000\)", x) for x in u), "GETQUOTA")
        big = b"Subject: big\r\n\r\n" + b"y" * (1100 * 1024) + b"\r\n"
        u, tagged = b.cmd("APPEND INBOX", literal=big)
        raw_check(b, tagged.startswith(b"NO [OVERQUOTA]"), "APPEND over quota: NO [OVERQUOTA]")
        a.close()
        b.close()

    with t.case("bad commands get BAD and the session goes on"):
        r = Raw(d.port["imap"])
        # before login 3 BADs in a row end the session: a NOOP between them
        for bad in ["FOO", "SELECT INBOX", "LOGIN", "FETCH 1 FLAGS"]:
            u, tagged = r.cmd(bad)
            raw_check(r, tagged.startswith(b"BAD"), f"{bad} before login is BAD")
            u, tagged = r.cmd("NOOP")
            raw_check(r, tagged.startswith(b"OK"), "NOOP after it")
        r.login("alice")
        for bad in ["FOO", "FETCH 1 FLAGS", "SELECT", "SELECT INBOX extra junk (", "LOGIN alice alicepw",
                    "CREATE", "STATUS INBOX (BOGUS)"]:
            u, tagged = r.cmd(bad)
            raw_check(r, tagged.startswith(b"BAD"), f"{bad!r} is BAD")
        r.cmd("SELECT INBOX")
        for bad in ["FETCH 1 (NOSUCHITEM)", "FETCH x FLAGS", "STORE 1 FLAGS", "STORE 1 BOGUS (\\Seen)", "COPY 1",
                    "UID FOO 1", "SEARCH", "FETCH 1 BODY[1.2.X]", "FETCH 99 FLAGS"]:
            u, tagged = r.cmd(bad)
            raw_check(r, tagged.startswith(b"BAD"), f"{bad!r} is BAD")
        r.send(b"\r\n")  # an empty line: ignored or BAD, the session goes on
        u, tagged = r.cmd("NOOP")
        raw_check(r, tagged.startswith(b"OK"), "NOOP still OK after an empty line")
        u, tagged = r.cmd("LOGOUT")
        raw_check(r, b"* BYE" in b"".join(u) and tagged.startswith(b"OK"), "LOGOUT")
        r.close()

    with t.case("three bad commands in a row before login end the session with BYE"):
        r = Raw(d.port["imap"])
        r.cmd("FOO")
        r.cmd("BAR")
        u, tagged = r.cmd("BAZ")
        raw_check(r, tagged.startswith(b"BAD"), "third BAD")
        try:
            ln = r.line()
        except (EOFError, ConnectionError) as e:
            ln = repr(e).encode()
        raw_check(r, ln.startswith(b"* BYE"), f"then BYE: {ln!r}")
        closed = False
        try:
            extra = r.line()
        except (EOFError, ConnectionError):
            closed = True
        raw_check(r, closed, f"the connection closes after BYE (not {extra if not closed else b''!r})")
        r.close()

    with t.case("UNSELECT leaves the mailbox without expunging; LISTRIGHTS"):
        r = Raw(d.port["imap"]).login("alice")
        u, tagged = r.cmd("UNSELECT")
        raw_check(r, tagged.startswith(b"BAD") or tagged.startswith(b"NO"), "UNSELECT with nothing selected is refused")
        u, tagged = r.cmd("SELECT INBOX")
        exists = int(re.search(rb"\* (\d+) EXISTS", b"".join(u)).group(1))
        raw_check(r, exists > 0, "INBOX has mail")
        u, tagged = r.cmd("STORE %d +FLAGS.SILENT (\\Deleted)" % exists)
        raw_check(r, tagged.startswith(b"OK"), "flag the last message \\Deleted")
        u, tagged = r.cmd("UNSELECT")
        raw_check(r, tagged.startswith(b"OK") and not any(b"EXPUNGE" in x for x in u),
                  f"UNSELECT: OK, no EXPUNGE: {u} {tagged}")
        u, tagged = r.cmd("FETCH 1 FLAGS")
        raw_check(r, tagged.startswith(b"BAD") or tagged.startswith(b"NO"), "no mailbox selected after UNSELECT")
        u, tagged = r.cmd("SELECT INBOX")
        raw_check(r, b"* %d EXISTS\r\n" % exists in u, f"nothing was expunged: {u}")
        u, tagged = r.cmd("FETCH %d FLAGS" % exists)
        raw_check(r, b"\\Deleted" in b"".join(u), "the \\Deleted flag is kept")
        r.cmd("STORE %d -FLAGS.SILENT (\\Deleted)" % exists)
        r.cmd("UNSELECT")
        # LISTRIGHTS (RFC 4314 3.7): the owner's implicit rights, then every other right on its own
        u, tagged = r.cmd("LISTRIGHTS INBOX alice")
        raw_check(r, tagged.startswith(b"OK") and len(u) == 1, f"LISTRIGHTS for the owner: {u} {tagged}")
        m = re.match(rb'^\* LISTRIGHTS INBOX alice "?([a-z]*)"?((?: [a-z])*)\r\n$', u[0] if u else b"")
        raw_check(r, m is not None, f"LISTRIGHTS line shape: {u}")
        if m:
            req, opt = m.group(1).decode(), m.group(2).decode().split()
            raw_check(r, sorted(req) == sorted("lkxan"), f"the owner always has l k x a n: {req}")
            raw_check(r, sorted(req + "".join(opt)) == sorted("lrswipkxtecdan"), f"every right listed once: {u}")
            raw_check(r, all(len(x) == 1 for x in opt), "each optional right on its own")
        u, tagged = r.cmd("LISTRIGHTS INBOX bob")
        raw_check(r, tagged.startswith(b"OK") and u == [b'* LISTRIGHTS INBOX bob "" l r s w i p k x t e c d a n\r\n'],
                  f"LISTRIGHTS for another user: nothing required, every right optional: {u}")
        r.cmd("LOGOUT")
        r.close()
        b = Raw(d.port["imap"]).login("bob")
        u, tagged = b.cmd("LISTRIGHTS user.alice bob")
        raw_check(b, tagged.startswith(b"NO") and not u, f"LISTRIGHTS without the a right: NO: {u} {tagged}")
        b.cmd("LOGOUT")
        b.close()

    with t.case("every IMAP change reached the change log"):
        lines = chlog_lines()[log_before:]
        text = "\n".join(lines)
        for want in ["MAILBOX user.alice", "MAILBOX user.alice.Archive", "MAILBOX user.alice.Search",
                     "user.alice.Work", "user.alice.Shared", "QUOTA user.bob"]:
            t.check(any(want in x for x in lines), f"'{want}' in the change log ({len(lines)} new lines):\n{text[-3000:]}")
        t.check(any(x.startswith("SUB ") or x.startswith("UNSUB") for x in lines) or
                any("SUB" in x for x in lines), "subscription change logged")
        # Cyrus's sync_log line for (un)subscribing: SUB <userid> <mailbox>
        for want in ["SUB alice user.alice.Projects.Tandem", "SUB alice user.alice.Search"]:
            t.check(want in lines, f"exact line '{want}' in the change log")
        st = inst.ok(["status"])
        m = re.search(r"pending_lines=(\d+)", st)
        t.check(m and int(m.group(1)) >= len(lines), f"tandem status: {st}")

    # ---------------------------------------------------- LOGINDISABLED
    with t.case("allowplaintext: no: LOGINDISABLED and STARTTLS, LOGIN refused, then STARTTLS and LOGIN"):
        inst2 = Instance()
        inst2.ok(["user", "add", "alice"], stdin="alicepw\n")
        d2 = Daemon(inst2, services=("imap",), extra_conf="failedloginpause: 0\n")
        d2.stop()
        text = open(inst2.conf).read().replace("allowplaintext: yes\n", "allowplaintext: no\n")
        open(inst2.conf, "w").write(text)
        d2.proc = subprocess.Popen([os.path.join(BIN, "tandemd"), "-C", inst2.conf, "-f"],
                                   stdout=subprocess.DEVNULL, stderr=open(d2.logfile, "a"))
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", d2.port["imap"]), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        M = imaplib.IMAP4("127.0.0.1", d2.port["imap"])
        t.check("LOGINDISABLED" in M.capabilities and "STARTTLS" in M.capabilities, f"caps {M.capabilities}")
        try:
            M.login("alice", "alicepw")
            t.check(False, "plaintext LOGIN accepted without TLS")
        except imaplib.IMAP4.error as e:
            t.check(True, str(e))
        typ, _ = M.starttls(ssl_context=noverify())
        t.eq(typ, "OK", "STARTTLS")
        t.check("LOGINDISABLED" not in M.capabilities and "STARTTLS" not in M.capabilities,
                f"caps after TLS {M.capabilities}")
        typ, _ = M.login("alice", "alicepw")
        t.eq(typ, "OK", "LOGIN over TLS")
        t.eq(M.select("INBOX")[0], "OK", "SELECT over STARTTLS")
        M.logout()

    with t.case("the daemon stayed healthy"):
        t.check(d.proc.poll() is None, "tandemd alive")
        log = d.log()
        t.check("level=crit" not in log and "AddressSanitizer" not in log, "no crit/ASan in the log")
        r = inst.run(["check", "--bodies"])
        t.eq(r.returncode, 0, r.stdout + r.stderr)
finally:
    if d:
        d.stop()
    if d2:
        d2.stop()
    inst.cleanup()
    if inst2:
        inst2.cleanup()
t.done()
