"""test_imap_rfc.py: RFC behaviour of tandemd's IMAP that clients rely on,
checked on the exact responses: \\Recent (RFC 3501 2.3.2: exactly one
session has it), ID with large parameter lists (RFC 2971), STORE NIL,
LIST (SUBSCRIBED RECURSIVEMATCH) (RFC 5258), SEARCH FROM through CFWS,
CONDSTORE's HIGHESTMODSEQ on first use and SEARCH RETURN (MIN/MAX) MODSEQ
(RFC 7162), LSUB without deleted folders, AUTHENTICATE LOGIN (as Cyrus
offers it; Python's imaplib as the client) and UNAUTHENTICATE (RFC 8437)."""
import base64
import imaplib
import os
import re

from imapraw import Raw
from tlib import Daemon, Instance, Suite, make_message

t = Suite("imap_rfc")
PW = {"alice": "alicepw", "bob": "bobpw", "admin": "adminpw"}


def chk(r, cond, msg):
    ex = r.exchange()
    if len(ex) > 3000:
        ex = ex[:1500] + " ... " + ex[-1500:]
    return t.check(cond, f"{msg}\n--- exchange ---\n{ex}")


def login(user):
    return Raw(d.port["imap"]).login(user, PW[user])


def chlog_lines():
    try:
        return open(os.path.join(inst.dir, "conf", "sync", "repl1", "log"), "rb").read().splitlines()
    except OSError:
        return []


def search_nums(untagged):
    for ln in untagged:
        if ln.startswith(b"* SEARCH"):
            return [int(x) for x in ln.split()[2:]]
    return None


inst = Instance(channels="repl1")
d = None
try:
    for u, pw in PW.items():
        inst.ok(["user", "add", u], stdin=pw + "\n")
    for i in range(1, 3):
        inst.ok(["deliver", "alice"], stdin=make_message(t.rng, i))
    inst.ok(["mailbox", "create", "user.alice.Other"])
    d = Daemon(inst, services=("imap",), extra_conf="failedloginpause: 0\n")

    # ------------------------------------------------------------- \Recent
    with t.case("\\Recent: the first SELECT takes it, a second session and a later SELECT do not"):
        e = login("alice")
        u, tagged = e.cmd("EXAMINE INBOX")
        chk(e, b"* 2 RECENT\r\n" in u, "EXAMINE shows the 2 recent messages")
        u, tagged = e.cmd("FETCH 1:* FLAGS")
        chk(e, all(b"\\Recent" in ln for ln in u) and len(u) == 2, "EXAMINE: FETCH FLAGS has \\Recent")
        before = len(chlog_lines())
        a = login("alice")
        u, tagged = a.cmd("SELECT INBOX")
        chk(a, b"* 2 RECENT\r\n" in u, "EXAMINE did not take them: SELECT gets 2 RECENT")
        t.eq(len(chlog_lines()), before, "taking \\Recent writes no change-log line")
        b = login("alice")
        u, tagged = b.cmd("SELECT INBOX")
        chk(b, b"* 0 RECENT\r\n" in u, "a second session gets 0 RECENT")
        u, _ = b.cmd("SEARCH RECENT")
        chk(b, search_nums(u) == [], "second session: SEARCH RECENT finds none")
        u, _ = b.cmd("SEARCH OLD")
        chk(b, search_nums(u) == [1, 2], "second session: SEARCH OLD finds all")
        u, _ = a.cmd("SEARCH RECENT")
        chk(a, search_nums(u) == [1, 2], "first session: SEARCH RECENT 1 2")
        u, _ = a.cmd("SEARCH NEW")
        chk(a, search_nums(u) == [1, 2], "first session: SEARCH NEW 1 2 (unseen)")
        a.cmd("STORE 1 +FLAGS (\\Seen)")
        u, _ = a.cmd("SEARCH NEW")
        chk(a, search_nums(u) == [2], "SEARCH NEW leaves out the seen one")
        u, _ = a.cmd("SEARCH OLD")
        chk(a, search_nums(u) == [], "first session: SEARCH OLD finds none")
        u, _ = a.cmd("FETCH 2 FLAGS")
        chk(a, u and b"FLAGS (\\Recent)" in u[0], "FETCH FLAGS (\\Recent)")
        s = login("alice")
        u, _ = s.cmd("STATUS INBOX (RECENT MESSAGES)")
        chk(s, u and b"RECENT 0" in u[0], "STATUS from a third session: RECENT 0")
        inst.ok(["deliver", "alice"], stdin=make_message(t.rng, 3))
        u, _ = s.cmd("STATUS INBOX (RECENT)")
        chk(s, u and b"RECENT 1" in u[0], "a new delivery: STATUS RECENT 1")
        u, _ = b.cmd("NOOP")
        chk(b, b"* 3 EXISTS\r\n" in u and b"* 1 RECENT\r\n" in u, "the session that polls first takes it")
        u, _ = a.cmd("NOOP")
        chk(a, b"* 3 EXISTS\r\n" in u and not any(b"RECENT" in ln for ln in u), "the other gets no new RECENT")
        u, _ = a.cmd("STATUS INBOX (RECENT)")
        chk(a, u and b"RECENT 2" in u[0], "STATUS of the selected mailbox: this session's recent count")
        u, _ = s.cmd("STATUS INBOX (RECENT)")
        chk(s, u and b"RECENT 0" in u[0], "STATUS after it was taken: RECENT 0")
        # a COPY from another session into the selected mailbox is recent for the selecting one
        s.cmd("SELECT INBOX.Other")
        s.cmd("APPEND INBOX.Other", literal=make_message(t.rng, 4))
        s.cmd("SELECT INBOX.Other")
        u, tagged = s.cmd("COPY 1 INBOX")
        chk(s, tagged.startswith(b"OK"), "COPY")
        u, _ = a.cmd("NOOP")
        chk(a, b"* 4 EXISTS\r\n" in u and b"* 3 RECENT\r\n" in u, "a copied-in message is recent")
        u, _ = a.cmd("UID FETCH 4 FLAGS")
        chk(a, u and b"\\Recent" in u[0], "and FETCH shows \\Recent")
        for c in (a, b, e, s):
            c.cmd("LOGOUT")
            c.close()
        a = login("alice")
        u, _ = a.cmd("SELECT INBOX")
        chk(a, b"* 0 RECENT\r\n" in u, "a later SELECT: nothing recent any more")
        a.close()
        log = d.log()
        t.check("recent_fail" not in log, "no recent_fail in the log")

    # ------------------------------------------------------------ ID, NIL
    with t.case("ID with RFC 2971's 30 pairs of 30 + 1024 bytes before login (~32 KB)"):
        r = Raw(d.port["imap"])
        pairs = " ".join('"%s" "%s"' % (("f%02d" % i).ljust(30, "x"), chr(97 + i % 26) * 1024) for i in range(30))
        t.check(len(pairs) > 31 * 1024, "the command is over 31 KB")
        u, tagged = r.cmd("ID (%s)" % pairs)
        chk(r, tagged.startswith(b"OK") and any(ln.startswith(b"* ID (") for ln in u), "ID answered")
        u, tagged = r.cmd("LOGIN alice " + "p" * 9000)
        chk(r, tagged.startswith(b"BAD"), "the next command has the pre-login line limit again")
        r.close()

    with t.case("STORE 1 +FLAGS NIL stores the keyword NIL (as Cyrus)"):
        r = login("alice")
        r.cmd("SELECT INBOX")
        u, tagged = r.cmd("STORE 1 +FLAGS NIL")
        chk(r, tagged.startswith(b"OK"), "STORE +FLAGS NIL is OK")
        chk(r, any(b"FETCH" in ln and b"NIL" in ln for ln in u), "FETCH FLAGS with NIL")
        u, tagged = r.cmd("FETCH 1 FLAGS")
        chk(r, u and re.search(rb"FLAGS \([^)]*\bNIL\b", u[0]), "FETCH FLAGS shows NIL")
        u, tagged = r.cmd("STORE 1 -FLAGS (NIL)")
        u, tagged = r.cmd("FETCH 1 FLAGS")
        chk(r, u and not re.search(rb"\bNIL\b", u[0]), "-FLAGS (NIL) removes it")
        r.close()

    # ------------------------------------------------------------ LIST/LSUB
    with t.case("LIST (SUBSCRIBED RECURSIVEMATCH): no redundant parent; CHILDINFO as RFC 5258 4"):
        r = login("alice")
        for c in ("CREATE INBOX.Par", "CREATE INBOX.Par.Kid", "SUBSCRIBE INBOX.Par.Kid"):
            _, tagged = r.cmd(c)
            chk(r, tagged.startswith(b"OK"), c)
        u, tagged = r.cmd('LIST (SUBSCRIBED RECURSIVEMATCH) "" "*"')
        names = [ln for ln in u if ln.startswith(b"* LIST")]
        chk(r, any(ln.endswith(b' INBOX.Par.Kid\r\n') for ln in names), "the subscribed child is listed")
        chk(r, not any(b' INBOX.Par ' in ln or ln.endswith(b" INBOX.Par\r\n") for ln in names),
            "its unsubscribed parent is not")
        u, tagged = r.cmd('LIST (SUBSCRIBED RECURSIVEMATCH) "" "INBOX.%"')
        chk(r, any(ln == b'* LIST (\\HasChildren) "." INBOX.Par ("CHILDINFO" ("SUBSCRIBED"))\r\n' for ln in u),
            "with %: the parent with CHILDINFO, as the child is not listed")
        r.cmd("SUBSCRIBE INBOX.Par")
        u, tagged = r.cmd('LIST (SUBSCRIBED RECURSIVEMATCH) "" "*"')
        chk(r, any(b' INBOX.Par ("CHILDINFO" ("SUBSCRIBED"))' in ln and b"\\Subscribed" in ln for ln in u),
            "a subscribed parent: listed with CHILDINFO")
        r.close()

    with t.case("LSUB leaves out subscribed folders that no longer exist (as Cyrus)"):
        r = login("alice")
        r.cmd("CREATE INBOX.Gone")
        r.cmd("SUBSCRIBE INBOX.Gone")
        u, _ = r.cmd('LSUB "" "*"')
        chk(r, any(ln.endswith(b" INBOX.Gone\r\n") for ln in u), "listed while it exists")
        r.cmd("DELETE INBOX.Gone")
        r.cmd("SUBSCRIBE INBOX.Gone")  # a subscription to a missing name, if the server keeps one
        u, _ = r.cmd('LSUB "" "*"')
        chk(r, not any(ln.endswith(b" INBOX.Gone\r\n") for ln in u), "gone after DELETE")
        u, _ = r.cmd('LSUB "" "INBOX.%"')
        chk(r, any(ln.endswith(b" INBOX.Par\r\n") and b"Noselect" not in ln for ln in u), "LSUB INBOX.% still lists INBOX.Par")
        r.close()

    # ------------------------------------------------------------ SEARCH
    with t.case("SEARCH FROM user-from@domain.org finds From: <user-from (comment)@ (comment) domain.org>"):
        r = login("alice")
        r.cmd("CREATE INBOX.Cfws")
        msg = (b"From: <user-from (comment)@ (comment) domain.org>\r\nTo: a@example.com\r\n"
               b"Subject: cfws\r\n\r\nbody\r\n")
        _, tagged = r.cmd("APPEND INBOX.Cfws", literal=msg)
        chk(r, tagged.startswith(b"OK"), "APPEND")
        r.cmd("SELECT INBOX.Cfws")
        u, _ = r.cmd("SEARCH FROM user-from@domain.org")
        chk(r, search_nums(u) == [1], "found")
        u, _ = r.cmd("SEARCH FROM other@domain.org")
        chk(r, search_nums(u) == [], "another address is not")
        r.close()

    # ------------------------------------------------------------ CONDSTORE
    with t.case("CONDSTORE: the first FETCH MODSEQ sends * OK [HIGHESTMODSEQ n]; ENABLE when selected too"):
        r = login("alice")
        u, _ = r.cmd("SELECT INBOX")
        hms = [re.search(rb"HIGHESTMODSEQ (\d+)", ln) for ln in u]
        hms = [int(m.group(1)) for m in hms if m][0]
        u, tagged = r.cmd("FETCH 1 (MODSEQ)")
        chk(r, any(ln == b"* OK [HIGHESTMODSEQ %d] Highest\r\n" % hms for ln in u), "HIGHESTMODSEQ sent")
        u, tagged = r.cmd("FETCH 1 (MODSEQ)")
        chk(r, not any(b"HIGHESTMODSEQ" in ln for ln in u), "only the first time")
        r.close()
        r = login("alice")
        r.cmd("SELECT INBOX")
        u, _ = r.cmd("ENABLE CONDSTORE")
        chk(r, any(b"* OK [HIGHESTMODSEQ" in ln for ln in u) and any(b"ENABLED CONDSTORE" in ln for ln in u),
            "ENABLE CONDSTORE while selected")
        r.close()

    with t.case("SEARCH RETURN (MIN)/(MAX) with MODSEQ: that message's modseq (RFC 7162 3.1.5)"):
        r = login("alice")
        r.cmd("SELECT INBOX")
        u, _ = r.cmd("FETCH 1:* (UID MODSEQ)")
        ms = {}
        for ln in u:
            m = re.search(rb"\* (\d+) FETCH .*MODSEQ \((\d+)\)", ln)
            if m:
                ms[int(m.group(1))] = int(m.group(2))
        r.cmd("STORE 2 +FLAGS (\\Flagged)")  # message 2 gets the highest modseq
        u, _ = r.cmd("FETCH 2 (MODSEQ)")
        ms[2] = int(re.search(rb"MODSEQ \((\d+)\)", b"".join(u)).group(1))
        t.check(ms[2] > ms[1] and ms[2] > max(v for k, v in ms.items() if k != 2), f"modseqs {ms}")
        u, _ = r.cmd("SEARCH RETURN (MIN) MODSEQ 1")
        chk(r, any(ln.endswith(b"MIN 1 MODSEQ %d\r\n" % ms[1]) for ln in u), "MIN: message 1's modseq")
        n = max(ms)
        u, _ = r.cmd("SEARCH RETURN (MAX) MODSEQ 1")
        chk(r, any(ln.endswith(b"MAX %d MODSEQ %d\r\n" % (n, ms[n])) for ln in u), "MAX: the last message's")
        u, _ = r.cmd("SEARCH RETURN (MIN MAX) MODSEQ 1")
        chk(r, any(ln.endswith(b"MODSEQ %d\r\n" % max(ms[1], ms[n])) for ln in u), "MIN MAX: the higher")
        u, _ = r.cmd("SEARCH RETURN (ALL) MODSEQ 1")
        chk(r, any(ln.endswith(b"MODSEQ %d\r\n" % max(ms.values())) for ln in u), "ALL: the highest of all")
        r.close()

    # ------------------------------------------------------------ MULTIAPPEND
    with t.case("MULTIAPPEND: several messages in one APPEND, APPENDUID lo:hi; all or none; APPENDLIMIT"):
        r = login("alice")
        u, _ = r.cmd("CAPABILITY")
        caps = b"".join(u).split()
        chk(r, b"MULTIAPPEND" in caps and any(c.startswith(b"APPENDLIMIT=") for c in caps), "advertised")
        r.cmd("CREATE INBOX.Multi")
        m1, m2, m3 = (make_message(t.rng, 40 + i, 300) for i in range(3))
        data = (b"APPEND INBOX.Multi (\\Seen) {%d+}\r\n" % len(m1) + m1 +
                b' (\\Flagged) "05-Dec-2024 10:00:00 +0000" {%d+}\r\n' % len(m2) + m2 +
                b" {%d+}\r\n" % len(m3) + m3)
        u, tagged = r.cmd(data)
        mm = re.search(rb"\[APPENDUID (\d+) 1:3\]", tagged)
        chk(r, tagged.startswith(b"OK") and mm, "OK [APPENDUID v 1:3]")
        rows = inst.messages("user.alice.Multi")
        t.eq([x[0] for x in rows], [1, 2, 3], "three records")
        t.check("\\Seen" in rows[0][2] and "\\Flagged" in rows[1][2] and rows[2][2] == "", f"flags: {rows}")
        r.cmd("SELECT INBOX.Multi")
        for i, m in enumerate((m1, m2, m3), 1):
            u, _ = r.cmd("FETCH %d BODY.PEEK[]" % i)
            chk(r, u and u[0].endswith(m + b")\r\n"), f"message {i} byte-exact")
        a = login("admin")
        _, tagged = a.cmd("SETQUOTA user.alice.Multi (STORAGE 3)")
        chk(a, tagged.startswith(b"OK"), "quota set")
        a.close()
        big = [make_message(t.rng, 50 + i, 1500) for i in range(2)]
        data = b"APPEND INBOX.Multi {%d+}\r\n" % len(big[0]) + big[0] + b" {%d+}\r\n" % len(big[1]) + big[1]
        _, tagged = r.cmd(data)
        chk(r, tagged.startswith(b"NO") and b"OVERQUOTA" in tagged, "over quota together: NO [OVERQUOTA]")
        t.eq(len(inst.messages("user.alice.Multi")), 3, "and neither was stored")
        r.close()

    # ------------------------------------------------------------ OBJECTID, SAVEDATE
    with t.case("OBJECTID (RFC 8474) and SAVEDATE (RFC 8514), ids as Cyrus 3.6 makes them"):
        import hashlib
        r = login("alice")
        _, tagged = r.cmd("CREATE INBOX.Obj")
        mid = re.search(rb"\[MAILBOXID \(([A-Za-z0-9_-]+)\)\]", tagged)
        chk(r, tagged.startswith(b"OK") and mid, "CREATE answers [MAILBOXID (id)]")
        msg = b"From: a@x\r\nSubject: s\r\nMessage-ID: <o1@x>\r\n\r\nbody\r\n"
        r.cmd("APPEND INBOX.Obj", literal=msg)
        u, _ = r.cmd("SELECT INBOX.Obj")
        chk(r, mid and b"* OK [MAILBOXID (%s)] Ok\r\n" % mid.group(1) in u, "SELECT: the same MAILBOXID")
        u, _ = r.cmd("STATUS INBOX.Obj (MAILBOXID)")
        chk(r, mid and u and u[0].endswith(b"(MAILBOXID (%s))\r\n" % mid.group(1)), "STATUS MAILBOXID")
        eid = b"M" + hashlib.sha1(msg).hexdigest()[:24].encode()
        u, _ = r.cmd("FETCH 1 (EMAILID THREADID SAVEDATE)")
        chk(r, u and re.match(rb'\* 1 FETCH \(EMAILID \(%s\) THREADID NIL SAVEDATE "\d\d-\w{3}-\d{4} '
                              rb'\d\d:\d\d:\d\d \+0000"\)\r\n' % eid, u[0]), "FETCH EMAILID THREADID SAVEDATE")
        for key, want in ((b"EMAILID " + eid, [1]), (b"EMAILID M000", []), (b"THREADID T0000000000000001", []),
                          (b"SAVEDATESUPPORTED", [1]), (b"SAVEDSINCE 1-Jan-2020", [1]), (b"SAVEDBEFORE 1-Jan-2020", [])):
            u, _ = r.cmd(b"SEARCH " + key)
            chk(r, search_nums(u) == want, f"SEARCH {key!r}")
        _, tagged = r.cmd("SEARCH EMAILID bad!")
        chk(r, tagged.startswith(b"BAD"), "an id with a character RFC 8474 does not allow is BAD")
        r.close()

    with t.case("PREVIEW (RFC 8970): the first text, white space made one, at most 256 characters"):
        r = login("alice")
        r.cmd("CREATE INBOX.Prev")
        long_text = "word " * 100
        msg = ("From: a@x\r\nSubject: p\r\nContent-Type: text/plain\r\n\r\n  Hello,\r\n\r\n  " + long_text + "\r\n").encode()
        r.cmd("APPEND INBOX.Prev", literal=msg)
        r.cmd("SELECT INBOX.Prev")
        u, tagged = r.cmd("FETCH 1 (PREVIEW)")
        want = ("Hello, " + long_text)[:256].rstrip()
        chk(r, u and u[0] == ('* 1 FETCH (PREVIEW "%s")\r\n' % want).encode(), "PREVIEW")
        u, tagged = r.cmd("FETCH 1 (PREVIEW (LAZY))")
        chk(r, tagged.startswith(b"OK") and u and b"PREVIEW \"Hello," in u[0], "PREVIEW (LAZY)")
        r.close()

    with t.case("BINARY (RFC 3516): decoded parts, literal8 for NUL bytes, BINARY.SIZE, UNKNOWN-CTE, APPEND ~{n}"):
        import base64
        blob = bytes(range(0, 40))
        msg = (b"From: a@x\r\nSubject: b\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n"
               b"--XX\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
               b"Caf=C3=A9 =\r\nau lait=3D\r\n--XX\r\nContent-Type: application/octet-stream\r\n"
               b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.b64encode(blob) + b"\r\n--XX\r\n"
               b"Content-Type: text/plain\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\nbegin 644 x\r\n--XX--\r\n")
        r = login("alice")
        r.cmd("CREATE INBOX.Bin")
        r.cmd("APPEND INBOX.Bin", literal=msg)
        raw = b"Subject: nul\r\n\r\na\x00b\r\n"
        _, tagged = r.cmd(b"APPEND INBOX.Bin ~{%d+}\r\n" % len(raw) + raw)
        chk(r, tagged.startswith(b"OK"), "APPEND with a literal8")
        r.cmd("SELECT INBOX.Bin")
        text = "Caf\u00e9 au lait=".encode()
        for cmd, want in (("FETCH 1 (BINARY.PEEK[1])", b"* 1 FETCH (BINARY[1] {%d}\r\n%s)\r\n" % (len(text), text)),
                          ("FETCH 1 (BINARY.PEEK[2])", b"* 1 FETCH (BINARY[2] ~{40}\r\n" + blob + b")\r\n"),
                          ("FETCH 1 (BINARY.SIZE[2] BINARY.SIZE[1])",
                           b"* 1 FETCH (BINARY.SIZE[2] 40 BINARY.SIZE[1] %d)\r\n" % len(text)),
                          ("FETCH 1 (BINARY.PEEK[2]<0.3>)", b"* 1 FETCH (BINARY[2]<0> ~{3}\r\n" + blob[:3] + b")\r\n"),
                          ("FETCH 2 (BODY.PEEK[])", b"* 2 FETCH (BODY[] ~{%d}\r\n%s)\r\n" % (len(raw), raw))):
            u, tagged = r.cmd(cmd)
            chk(r, tagged.startswith(b"OK") and b"".join(u) == want, cmd)
        u, tagged = r.cmd("FETCH 1 (BINARY.PEEK[3])")
        chk(r, tagged.startswith(b"NO [UNKNOWN-CTE]"), "an unknown encoding: NO [UNKNOWN-CTE]")
        u, tagged = r.cmd("FETCH 1 (FLAGS)")
        chk(r, u and b"\\Seen" not in u[0], "BINARY.PEEK left \\Seen alone")
        r.cmd("FETCH 1 (BINARY[1])")
        u, tagged = r.cmd("FETCH 1 (FLAGS)")
        chk(r, u and b"\\Seen" in u[0], "BINARY set \\Seen")
        r.close()

    with t.case("QRESYNC (RFC 7162 3.2): SELECT catch-up, VANISHED, UID FETCH VANISHED, CLOSED, UIDs in FETCH"):
        r = login("alice")
        r.cmd("CREATE INBOX.Q")
        for i in range(8):
            r.cmd("APPEND INBOX.Q", literal=make_message(t.rng, 60 + i, 300))
        u, _ = r.cmd("SELECT INBOX.Q (CONDSTORE)")
        text = b"".join(u)
        uv = int(re.search(rb"UIDVALIDITY (\d+)", text).group(1))
        hm = int(re.search(rb"HIGHESTMODSEQ (\d+)", text).group(1))
        r.cmd("STORE 2,5 +FLAGS.SILENT (\\Flagged)")
        r.cmd("STORE 3,7 +FLAGS.SILENT (\\Deleted)")
        r.cmd("EXPUNGE")
        r.cmd("UNSELECT")
        _, tagged = r.cmd("SELECT INBOX.Q (QRESYNC (%d %d))" % (uv, hm))
        chk(r, tagged.startswith(b"BAD"), "QRESYNC parameter before ENABLE QRESYNC: BAD")
        u, _ = r.cmd("ENABLE QRESYNC")
        chk(r, b"* ENABLED QRESYNC\r\n" in u, "ENABLE QRESYNC")
        u, tagged = r.cmd("SELECT INBOX.Q (QRESYNC (%d %d))" % (uv, hm))
        fetches = [ln for ln in u if b" FETCH " in ln]
        chk(r, tagged.startswith(b"OK") and b"* VANISHED (EARLIER) 3,7\r\n" in u, "VANISHED (EARLIER) 3,7")
        chk(r, len(fetches) == 2 and re.match(rb"\* 2 FETCH \(UID 2 FLAGS \(\\Flagged\) MODSEQ \(\d+\)\)", fetches[0])
            and re.match(rb"\* 4 FETCH \(UID 5 FLAGS \(\\Flagged\) MODSEQ \(\d+\)\)", fetches[1]),
            "FETCH of the two changed messages")
        u, tagged = r.cmd("SELECT INBOX.Q (QRESYNC (%d %d 1:4))" % (uv, hm))
        chk(r, b"* OK [CLOSED] Previous mailbox closed\r\n" in u, "CLOSED for the mailbox left")
        chk(r, b"* VANISHED (EARLIER) 3\r\n" in u and len([ln for ln in u if b" FETCH " in ln]) == 1,
            "known UIDs 1:4 limit VANISHED and FETCH")
        u, _ = r.cmd("SELECT INBOX.Q (QRESYNC (%d %d))" % (uv + 1, hm))
        chk(r, not any(b"VANISHED" in ln or b" FETCH " in ln for ln in u), "another UIDVALIDITY: no catch-up")
        u, tagged = r.cmd("UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)" % hm)
        chk(r, tagged.startswith(b"OK") and u and u[0] == b"* VANISHED (EARLIER) 3,7\r\n" and len(u) == 3,
            "UID FETCH (CHANGEDSINCE VANISHED)")
        _, tagged = r.cmd("FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)" % hm)
        chk(r, tagged.startswith(b"BAD"), "VANISHED without UID: BAD")
        u, _ = r.cmd("STORE 1 +FLAGS (\\Deleted)")
        chk(r, u and re.match(rb"\* 1 FETCH \(UID 1 FLAGS", u[0]), "a FETCH always has the UID")
        u, _ = r.cmd("EXPUNGE")
        chk(r, u == [b"* VANISHED 1\r\n"], "EXPUNGE answers VANISHED")
        o = login("alice")
        o.cmd("SELECT INBOX.Q")
        o.cmd("STORE 1 +FLAGS.SILENT (\\Deleted)")
        o.cmd("EXPUNGE")
        o.close()
        u, _ = r.cmd("NOOP")
        chk(r, b"* VANISHED 2\r\n" in u, "another session's expunge: VANISHED")
        r.close()

    with t.case("CATENATE (RFC 4469): TEXT and URL parts, SECTION and PARTIAL, BADURL, with MULTIAPPEND"):
        r = login("alice")
        r.cmd("CREATE INBOX.CatSrc")
        r.cmd("CREATE INBOX.Cat")
        src = b"From: a@x\r\nSubject: src\r\n\r\nthe source body\r\n"
        r.cmd("APPEND INBOX.CatSrc", literal=src)
        u, _ = r.cmd("STATUS INBOX.CatSrc (UIDVALIDITY)")
        uv = int(re.search(rb"UIDVALIDITY (\d+)", u[0]).group(1))
        head, tail = b"From: b@x\r\nSubject: cat\r\n\r\n", b"-- \r\nsig\r\n"
        cmd = (b'APPEND INBOX.Cat (\\Seen) CATENATE (TEXT {%d+}\r\n%s URL "/INBOX.CatSrc;UIDVALIDITY=%d/;UID=1/;SECTION=TEXT"'
               b' TEXT {%d+}\r\n%s URL "imap://alice@test.example/INBOX.CatSrc/;UID=1/;PARTIAL=0.4")'
               % (len(head), head, uv, len(tail), tail))
        _, tagged = r.cmd(cmd)
        chk(r, tagged.startswith(b"OK [APPENDUID"), "APPEND CATENATE")
        want = head + b"the source body\r\n" + tail + src[:4]
        r.cmd("SELECT INBOX.Cat")
        u, _ = r.cmd("FETCH 1 (FLAGS BODY.PEEK[])")
        chk(r, u and u[0].endswith(b"{%d}\r\n%s)\r\n" % (len(want), want)) and b"\\Seen" in u[0], "the message as built")
        for bad in (b'"/INBOX.CatSrc/;UID=99"', b'"/INBOX.CatSrc;UIDVALIDITY=%d/;UID=1"' % (uv + 1),
                    b'"/INBOX.NoSuch/;UID=1"', b'"/user.bob/;UID=1"', b'"relative;UID=1"',
                    b'"imap://alice@elsewhere.example/INBOX.CatSrc/;UID=1"', b'"/INBOX.CatSrc/;UID=1;URLAUTH=x"'):
            _, tagged = r.cmd(b"APPEND INBOX.Cat CATENATE (TEXT {3+}\r\nabc URL " + bad + b")")
            chk(r, tagged.startswith(b"NO [BADURL "), f"BADURL for {bad!r}")
        m1 = b"Subject: plain\r\n\r\nx\r\n"
        cmd = (b"APPEND INBOX.Cat {%d+}\r\n%s CATENATE (URL \"/INBOX.CatSrc/;UID=1\")" % (len(m1), m1))
        _, tagged = r.cmd(cmd)
        chk(r, re.match(rb"OK \[APPENDUID \d+ 2:3\]", tagged), "MULTIAPPEND with a literal and a CATENATE")
        u, _ = r.cmd("UID FETCH 2:3 (BODY.PEEK[])")
        chk(r, len(u) == 2 and u[0].endswith(m1 + b")\r\n") and u[1].endswith(src + b")\r\n"), "both stored")
        u, _ = r.cmd("CAPABILITY")
        chk(r, b"CATENATE" in b"".join(u).split(), "CATENATE advertised")
        r.close()

    # ------------------------------------------------- AUTHENTICATE LOGIN
    with t.case("AUTHENTICATE LOGIN: imaplib logs in with it; the initial response; a wrong password; a cancel"):
        m = imaplib.IMAP4("127.0.0.1", d.port["imap"])
        t.check("AUTH=LOGIN" in m.capabilities, f"AUTH=LOGIN advertised: {m.capabilities}")
        asked = []

        def answer(challenge):
            asked.append(challenge)
            return {b"Username:": b"alice", b"Password:": b"alicepw"}.get(challenge, b"?")
        typ, _ = m.authenticate("LOGIN", answer)
        t.check(typ == "OK" and asked == [b"Username:", b"Password:"], f"imaplib: {typ} after {asked}")
        typ, data = m.select("INBOX", readonly=True)
        t.check(typ == "OK" and int(data[0]) >= 2, f"alice's INBOX selected: {typ} {data}")
        m.logout()
        m = imaplib.IMAP4("127.0.0.1", d.port["imap"])
        try:
            m.authenticate("LOGIN", lambda c: b"alice" if c == b"Username:" else b"wrong")
            t.check(False, "a wrong password was accepted")
        except imaplib.IMAP4.error as e:
            t.check("AUTHENTICATIONFAILED" in str(e), f"wrong password: {e}")
        m.logout()
        r = Raw(d.port["imap"])
        r.send(b"a1 AUTHENTICATE LOGIN " + base64.b64encode(b"bob") + b"\r\n")
        cont = r.line()
        chk(r, cont == b"+ UGFzc3dvcmQ6\r\n", "with SASL-IR the user name is the initial response: Password: next")
        r.send(base64.b64encode(b"bobpw") + b"\r\n")
        ln = r.line()
        chk(r, ln.startswith(b"a1 OK [CAPABILITY "), "bob logged in")
        r.close()
        r = Raw(d.port["imap"])
        r.send(b"a1 AUTHENTICATE LOGIN\r\n")
        chk(r, r.line() == b"+ VXNlcm5hbWU6\r\n", "Username: first")
        r.send(b"*\r\n")
        chk(r, r.line().startswith(b"a1 BAD"), "a cancelled exchange is BAD")
        r.send(b"a2 AUTHENTICATE LOGIN !!!\r\n")
        chk(r, r.line().startswith(b"a2 BAD"), "an initial response that is not base64 is BAD")
        u, tagged = r.cmd("SELECT INBOX")
        chk(r, tagged.startswith(b"BAD"), "still not logged in")
        r.close()
        r = Raw(d.port["imap"])  # a fresh one: BADs in a row end a session
        r.send(b"a3 AUTHENTICATE LOGIN\r\n")
        r.line()
        r.send(b"not base64!\r\n")
        chk(r, r.line().startswith(b"a3 BAD"), "a user name that is not base64 is BAD")
        r.send(b"a4 AUTHENTICATE LOGIN " + base64.b64encode(b"alice\0bob") + b"\r\n")
        chk(r, r.line().startswith(b"a4 BAD"), "a user name with a NUL is BAD")
        r.close()

    # ------------------------------------------------------ UNAUTHENTICATE
    with t.case("UNAUTHENTICATE: back to not authenticated, the mailbox closed without expunge, another user after"):
        r = Raw(d.port["imap"])
        u, tagged = r.cmd("UNAUTHENTICATE")
        chk(r, tagged.startswith(b"BAD"), "refused before login")
        r.login("alice", PW["alice"])
        u, _ = r.cmd("CAPABILITY")
        chk(r, b"UNAUTHENTICATE" in b"".join(u).split(), "advertised")
        r.cmd("ENABLE CONDSTORE")
        u, _ = r.cmd("SELECT INBOX")
        n = [int(ln.split()[1]) for ln in u if ln.endswith(b" EXISTS\r\n")][0]
        u, tagged = r.cmd("STORE 1 +FLAGS (\\Deleted)")
        chk(r, tagged.startswith(b"OK") and u and b"MODSEQ" in u[0],
            "a message marked \\Deleted; CONDSTORE on: the FETCH has MODSEQ")
        u, tagged = r.cmd("UNAUTHENTICATE")
        chk(r, tagged.startswith(b"OK [CAPABILITY ") and b" AUTH=PLAIN" in tagged and not u,
            "OK with the capabilities of a fresh connection")
        for c in ("SELECT INBOX", "NOOP\r\nt99 FETCH 1 FLAGS", "LIST \"\" *"):
            u, tagged = r.cmd(c.split("\r\n")[0])
            if c.startswith("NOOP"):
                chk(r, tagged.startswith(b"OK"), "NOOP works before login")
            else:
                chk(r, tagged.startswith(b"BAD"), f"{c}: not allowed any more")
        r.login("bob", PW["bob"])
        u, tagged = r.cmd("SELECT INBOX")
        chk(r, tagged.startswith(b"OK"), "bob's INBOX")
        u, tagged = r.cmd("GETACL user.alice")
        chk(r, tagged.startswith(b"NO"), "bob has none of alice's rights")
        _, tagged = r.cmd("UNAUTHENTICATE")
        r.login("alice", PW["alice"])
        u, _ = r.cmd("SELECT INBOX")
        m = [int(ln.split()[1]) for ln in u if ln.endswith(b" EXISTS\r\n")][0]
        chk(r, m == n, f"nothing expunged by UNAUTHENTICATE ({n} -> {m})")
        u, _ = r.cmd("FETCH 1 FLAGS")
        chk(r, u and b"\\Deleted" in u[0], "the \\Deleted flag is kept")
        u, _ = r.cmd("STORE 1 -FLAGS (\\Deleted)")
        chk(r, u and b"MODSEQ" not in u[0], "CONDSTORE enabled before UNAUTHENTICATE is not on")
        r.cmd("LOGOUT")
        r.close()

    # -------------------------------------------- header keys from the cache
    with t.case("SEARCH/SORT/THREAD on headers and FETCH HEADER.FIELDS read the message cache, not the file"):
        inst.ok(["user", "add", "--no-password", "dora"])
        msgs = [b"From: Zed Writer <zed@example.org>\r\nTo: dora@example.org\r\nSubject: beta report\r\n"
                b"Date: Tue, 3 Feb 2026 10:00:00 +0000\r\nMessage-ID: <b@x>\r\nX-Tag: blue\r\n\r\nbody one\r\n",
                b"From: Amy Author <amy@example.org>\r\nTo: dora@example.org\r\nSubject: Re: beta report\r\n"
                b"Date: Wed, 4 Feb 2026 10:00:00 +0000\r\nMessage-ID: <c@x>\r\nIn-Reply-To: <b@x>\r\n"
                b"References: <b@x>\r\n\r\nbody two\r\n"]
        for m in msgs:
            inst.ok(["deliver", "dora"], stdin=m)
        # the message files go away: what still answers came from the cache
        gone = 0
        for dirpath, _, files in os.walk(os.path.join(inst.dir, "spool")):
            for f in files:
                p = os.path.join(dirpath, f)
                if "/dora/" in p and os.path.getsize(p) in (len(msgs[0]), len(msgs[1])) and open(p, "rb").read() in msgs:
                    os.rename(p, p + ".away")
                    gone += 1
        t.check(gone == 2, f"both message files moved away ({gone})")
        r = Raw(d.port["imap"])
        r.cmd("AUTHENTICATE PLAIN " + base64.b64encode(b"dora\0admin\0adminpw").decode())
        r.cmd("SELECT INBOX")
        for q, want in (("SEARCH FROM amy", b"* SEARCH 2"), ("SEARCH HEADER X-Tag blue", b"* SEARCH 1"),
                        ("SEARCH SENTBEFORE 4-Feb-2026", b"* SEARCH 1"), ("SEARCH SUBJECT beta", b"* SEARCH 1 2"),
                        ("SORT (FROM) UTF-8 ALL", b"* SORT 2 1"), ("THREAD REFERENCES UTF-8 ALL", b"* THREAD (1 2)")):
            u, tagged = r.cmd(q)
            chk(r, tagged.startswith(b"OK") and u and u[0].rstrip() == want, f"{q}: {want!r}")
        u, tagged = r.cmd("FETCH 1:2 (BODY.PEEK[HEADER.FIELDS (Subject)] ENVELOPE)")
        chk(r, tagged.startswith(b"OK") and len(u) == 2 and b"Subject: Re: beta report" in u[1], "FETCH HEADER.FIELDS")
        u, tagged = r.cmd("SEARCH BODY one")
        chk(r, not tagged.startswith(b"OK") or u == [b"* SEARCH\r\n"], "a body key needs the file: it is not found")
        r.close()
        for dirpath, _, files in os.walk(os.path.join(inst.dir, "spool")):
            for f in files:
                if f.endswith(".away"):
                    os.rename(os.path.join(dirpath, f), os.path.join(dirpath, f[:-5]))

finally:
    if d:
        d.stop()
    inst.cleanup()
t.done()
