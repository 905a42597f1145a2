"""test_sync_server.py: the sync server on the wire, raw csync bytes.
Authentication rules, bad commands (an error reply, the session goes on,
nothing changes), a body whose SHA-1 does not match its GUID and a record
whose body was never sent (refused before anything is committed), a stale
master (IMAP_SYNC_CHECKSUM), APPLY EXPUNGE keeping the modseq (a replay
and bad targets), QUOTA/UNQUOTA, ANNOTATION/UNANNOTATION, the LOCAL_*
commands, RESTORE refused with a NO that changes nothing, a staged body
moved into place by its first APPLY MAILBOX and linked for the others
(nothing left staged after RESTART), and EXIT."""
import base64
import glob
import hashlib
import os
import socket
import subprocess
import time

from tlib import CsyncConn as Conn, Daemon, Instance, Suite

t = Suite("sync-server")
inst = Instance()
text = open(inst.conf).read().replace("admins: admin\n", "admins: admin repl\n")
open(inst.conf, "w").write(text)
inst.ok(["user", "add", "repl"], "replpw\n")
inst.ok(["user", "add", "plain"], "plainpw\n")
d = Daemon(inst, services=("sync", "imap"))




msg = b"From: a@example.com\r\nSubject: raw\r\n\r\nhello over csync\r\n"
guid = hashlib.sha1(msg).hexdigest().encode()


def wait_for(cond, timeout=10):
    end = time.time() + timeout
    while time.time() < end:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def mailbox(uid_guid=guid, hms=5, last_uid=1, flags=b"\\Seen", name=b"user.zed"):
    return (b"APPLY MAILBOX %(UNIQUEID testuniqueid0000000000001 MBOXNAME " + name +
            b" SYNC_CRC 0 LAST_UID " + str(last_uid).encode() + b" HIGHESTMODSEQ " + str(hms).encode() +
            b" RECENTUID 0 RECENTTIME 0 LAST_APPENDDATE 0 POP3_LAST_LOGIN 0 POP3_SHOW_AFTER 0"
            b" UIDVALIDITY 1700000000 PARTITION default ACL \"zed\tlrswipkxtecdan\t\" OPTIONS P RECORD (%(UID 1"
            b" MODSEQ " + str(hms).encode() + b" LAST_UPDATED 1700000000 FLAGS (" + flags + b") INTERNALDATE"
            b" 1700000000 SIZE " + str(len(msg)).encode() + b" GUID " + uid_guid + b")))")


try:
    c = Conn(d.port["sync"])
    with t.case("banner and authentication"):
        t.check(b"* SASL PLAIN" in c.banner and b"* SIEVE-MAILBOX" in c.banner, f"banner: {c.banner}")
        t.eq(c.cmd(b"GET MAILBOXES (user.zed)")[-1], b"NO Please authenticate first", "GET before login")
        t.check(c.auth("repl", "wrong").startswith(b"NO"), "wrong password refused")
        c2 = Conn(d.port["sync"])
        t.check(c2.auth("plain", "plainpw").startswith(b"NO"), "a non-admin cannot authenticate")
        t.eq(c.auth("repl", "replpw"), b"OK Success (no protection)", "admin login")
        t.eq(c.cmd(b"APPLY CAPABILITIES (SIEVE-MAILBOX)"), [b"* ENABLED (SIEVE-MAILBOX)", b"OK success"], "capabilities")

    def empty():
        return c.cmd(b"GET MAILBOXES (user.zed)") == [b"OK success"]

    with t.case("bad commands get an error reply and the session goes on"):
        t.eq(c.cmd(b"BLAH")[-1], b"BAD IMAP_PROTOCOL_ERROR Unrecognized command", "unknown command")
        t.eq(c.cmd(b"APPLY MAILBOX %[x]")[-1], b"BAD IMAP_PROTOCOL_ERROR Failed to parse APPLY line", "bad DLIST")
        t.eq(c.cmd(b"APPLY FROBNICATE x")[-1], b"NO IMAP_PROTOCOL_ERROR Protocol error", "unknown APPLY key")
        t.eq(c.cmd(b"APPLY MAILBOX %(UNIQUEID x MBOXNAME user.zed HIGHESTMODSEQ 2)")[-1],
             b"NO IMAP_PROTOCOL_BAD_PARAMETERS", "missing keys")
        t.eq(c.cmd(b"NOOP")[-1], b"OK Noop completed", "still serving")
        t.check(empty(), "nothing was created")

    with t.case("a body that does not hash to its GUID is refused as it arrives, nothing committed"):
        bad = msg.replace(b"hello", b"HELLO")
        r = c.cmd(b"APPLY MESSAGE (%{default " + guid + b" " + str(len(bad)).encode() + b"}\r\n" + bad + b")")[-1]
        t.eq(r, b"NO IMAP_PROTOCOL_ERROR message body " + guid + b" hashes to " +
             hashlib.sha1(bad).hexdigest().encode(), "APPLY MESSAGE refused with the cause")
        t.check(c.cmd(mailbox())[-1].startswith(b"NO IMAP_PROTOCOL_ERROR"), "APPLY MAILBOX refused: no body")
        t.check(empty(), "replica unchanged")
        t.eq(c.cmd(b"NOOP")[-1], b"OK Noop completed", "the session goes on")
        t.eq(glob.glob(os.path.join(inst.dir, "spool", "**", guid.decode()), recursive=True), [],
             "the bad body is nowhere: not in a blobs directory, not staged")
        c.cmd(b"RESTART")
        t.eq(os.listdir(os.path.join(inst.dir, "spool", "tmp", "sync")), [], "nothing left in tmp/sync")

    with t.case("a new record whose body was never sent is refused, nothing committed"):
        r = c.cmd(mailbox())[-1]
        t.check(r.startswith(b"NO IMAP_PROTOCOL_ERROR"), f"refused: {r}")
        t.check(empty(), "replica unchanged")

    with t.case("a valid apply, then APPLY EXPUNGE keeps the modseq, then a stale apply is refused"):
        t.eq(c.cmd(b"APPLY RESERVE %(PARTITION default MBOXNAME (user.zed) GUID (" + guid + b"))"),
             [b"* MISSING (" + guid + b")", b"OK success"], "RESERVE reports the missing body")
        t.eq(c.cmd(b"APPLY MESSAGE (%{default " + guid + b" " + str(len(msg)).encode() + b"}\r\n" + msg + b")")[-1],
             b"OK success", "MESSAGE")
        t.eq(c.cmd(mailbox())[-1], b"OK success", "MAILBOX")
        full = b"\n".join(c.cmd(b"GET FULLMAILBOX user.zed"))
        t.check(b"UID 1 MODSEQ 5" in full and guid in full, "the record is there")
        t.eq(c.cmd(mailbox())[-1], b"OK success", "the same apply again is harmless")
        t.eq(c.cmd(b"APPLY EXPUNGE %(MBOXNAME user.zed UNIQUEID testuniqueid0000000000001 UID (1))")[-1],
             b"OK success", "EXPUNGE")
        full = b"\n".join(c.cmd(b"GET FULLMAILBOX user.zed"))
        t.check(b"UID 1 MODSEQ 5" in full and b"\\Expunged" in full, f"expunged, same modseq: {full[:300]}")
        t.eq(c.cmd(b"APPLY EXPUNGE %(MBOXNAME user.zed UNIQUEID otheruniqueid UID (1))")[-1],
             b"NO IMAP_MAILBOX_MOVED Mailbox exists with another name or uniqueid", "EXPUNGE with a wrong uniqueid")
        t.eq(c.cmd(mailbox(hms=3))[-1], b"NO IMAP_SYNC_CHECKSUM Checksum Failure", "stale master refused")
        c.s.sendall(b"GET FETCH %(MBOXNAME user.zed PARTITION default UNIQUEID testuniqueid0000000000001 GUID " +
                    guid + b" UID 1)\r\n")
        lines = []
        while not lines or lines[-1] not in (b"OK success",) and not lines[-1].startswith((b"NO", b"BAD")):
            lines.append(c.line())
        got = b"\r\n".join(lines)
        t.eq(lines[-1], b"OK success", "GET FETCH answered")
        t.check(got.startswith(b"* MESSAGE %{default " + guid) and msg.rstrip(b"\r\n") in got,
                "the body comes back as a file literal")

    with t.case("APPLY EXPUNGE: the CRC follows, a replay changes nothing, bad targets get a clear NO"):
        before = c.cmd(b"GET MAILBOXES (user.zed)")
        t.check(b"SYNC_CRC 0 " in before[0], f"only an expunged record: basic CRC 0: {before}")
        t.eq(c.cmd(b"APPLY EXPUNGE %(MBOXNAME user.zed UNIQUEID testuniqueid0000000000001 UID (1))")[-1],
             b"OK success", "the same EXPUNGE again")
        t.eq(c.cmd(b"GET MAILBOXES (user.zed)"), before, "a replayed EXPUNGE changes nothing (not even the modseq)")
        t.eq(c.cmd(b"APPLY EXPUNGE %(MBOXNAME user.zed UNIQUEID testuniqueid0000000000001 UID (7))")[-1],
             b"OK success", "EXPUNGE of a UID the mailbox never had")
        t.eq(c.cmd(b"GET MAILBOXES (user.zed)"), before, "changes nothing")
        t.eq(c.cmd(b"APPLY EXPUNGE %(MBOXNAME user.nobody UNIQUEID x UID (1))")[-1],
             b"NO IMAP_MAILBOX_NONEXISTENT No Such Mailbox", "EXPUNGE in a mailbox that does not exist")
        t.eq(c.cmd(b"APPLY EXPUNGE %(MBOXNAME user.zed UNIQUEID testuniqueid0000000000001)")[-1],
             b"NO IMAP_PROTOCOL_BAD_PARAMETERS", "EXPUNGE without UIDs")

    with t.case("a staged body moves into place once, other mailboxes link it, RESTART leaves nothing staged"):
        m3 = b"From: b@example.com\r\nSubject: moved\r\nMessage-ID: <m3@x>\r\n\r\nmoved, then linked\r\n"
        g3 = hashlib.sha1(m3).hexdigest().encode()

        def mbox3(name, uniq):
            return (b"APPLY MAILBOX %(UNIQUEID " + uniq + b" MBOXNAME " + name + b" SYNC_CRC 0 LAST_UID 1"
                    b" HIGHESTMODSEQ 2 RECENTUID 0 RECENTTIME 0 LAST_APPENDDATE 0 POP3_LAST_LOGIN 0"
                    b" POP3_SHOW_AFTER 0 UIDVALIDITY 1700000001 PARTITION default ACL \"\" OPTIONS P RECORD"
                    b" (%(UID 1 MODSEQ 2 LAST_UPDATED 1700000000 FLAGS () INTERNALDATE 1700000000 SIZE " +
                    str(len(m3)).encode() + b" GUID " + g3 + b")))")
        t.eq(c.cmd(b"APPLY MESSAGE (%{default " + g3 + b" " + str(len(m3)).encode() + b"}\r\n" + m3 + b")")[-1],
             b"OK success", "MESSAGE")
        staged = os.listdir(os.path.join(inst.dir, "spool", "tmp", "sync"))
        t.eq(len(staged), 1, "the body is staged in tmp/sync")
        t.eq(c.cmd(mbox3(b"user.mva", b"mvuniq000000000000000001"))[-1], b"OK success", "first mailbox")
        t.eq(os.listdir(os.path.join(inst.dir, "spool", "tmp", "sync")), [],
             "the staged file was moved into place (not linked)")
        t.eq(c.cmd(mbox3(b"user.mva.Sent", b"mvuniq000000000000000002"))[-1], b"OK success",
             "the same owner's other mailbox: the file is there already")
        t.eq(c.cmd(mbox3(b"user.mvb", b"mvuniq000000000000000003"))[-1], b"OK success",
             "another owner's mailbox: linked from where it went")
        t.eq(c.cmd(b"RESTART")[-1], b"OK Restarting", "RESTART")
        files = glob.glob(os.path.join(inst.dir, "spool", "**", "blobs", "*", g3.decode()), recursive=True)
        t.eq(len(files), 2, f"one message file per owner: {files}")
        t.check(all(os.stat(f).st_nlink == 2 and open(f, "rb").read() == m3 for f in files),
                "the same bytes, one inode (a hard link), RESTART removed neither")
        t.eq(os.listdir(os.path.join(inst.dir, "spool", "tmp", "sync")), [], "nothing left in tmp/sync")
        import sqlite3
        rows = 0
        for db in glob.glob(os.path.join(inst.dir, "spool", "**", "meta.db"), recursive=True):
            con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
            try:
                rows += con.execute("SELECT count(*) FROM cache WHERE guid = ?"
                                    " AND instr(CAST(envelope AS TEXT), '\"moved\"') > 0", (g3.decode(),)).fetchone()[0]
            except sqlite3.Error:
                pass
            con.close()
        t.eq(rows, 2, "each owner has the cache row (built from the bytes in memory, then from the file)")
        for name in (b"user.mva", b"user.mva.Sent", b"user.mvb"):
            full = b"\n".join(c.cmd(b"GET FULLMAILBOX " + name))
            t.check(g3 in full and b"UID 1 MODSEQ 2" in full, f"{name}: the record is there")

    with t.case("a message file a crash cut short (unreferenced, wrong size) is replaced by the checked body"):
        m4 = b"From: c@example.com\r\nSubject: cut short\r\n\r\nthe whole body this time\r\n"
        g4 = hashlib.sha1(m4).hexdigest()
        short = os.path.join(inst.dir, "spool", "user", "mva", "blobs", g4[:2], g4)
        os.makedirs(os.path.dirname(short), exist_ok=True)
        open(short, "wb").close()	# what a crash before the syncfs can leave (ext4: delayed allocation)
        t.eq(c.cmd(b"APPLY MESSAGE (%{default " + g4.encode() + b" " + str(len(m4)).encode() + b"}\r\n" + m4 +
                   b")")[-1], b"OK success", "MESSAGE")
        ap = (b"APPLY MAILBOX %(UNIQUEID mvuniq000000000000000004 MBOXNAME user.mva.Cut SYNC_CRC 0 LAST_UID 1"
              b" HIGHESTMODSEQ 3 RECENTUID 0 RECENTTIME 0 LAST_APPENDDATE 0 POP3_LAST_LOGIN 0 POP3_SHOW_AFTER 0"
              b" UIDVALIDITY 1700000002 PARTITION default ACL \"\" OPTIONS P RECORD (%(UID 1 MODSEQ 3"
              b" LAST_UPDATED 1700000000 FLAGS () INTERNALDATE 1700000000 SIZE " + str(len(m4)).encode() +
              b" GUID " + g4.encode() + b")))")
        t.eq(c.cmd(ap)[-1], b"OK success", "MAILBOX")
        t.eq(open(short, "rb").read(), m4, "the file now holds the body")
        t.eq(c.cmd(b"RESTART")[-1], b"OK Restarting", "RESTART")
        t.eq(os.listdir(os.path.join(inst.dir, "spool", "tmp", "sync")), [], "nothing left in tmp/sync")

    inst.ok(["user", "add", "--no-password", "yan"])

    def get_user(u=b"yan"):
        return c.cmd(b"GET USER " + u)

    with t.case("APPLY QUOTA then UNQUOTA"):
        t.eq(c.cmd(b"APPLY QUOTA %(ROOT user.yan STORAGE 1000)")[-1], b"OK success", "QUOTA")
        t.eq(c.cmd(b"GET QUOTA user.yan")[0][:40], b"* QUOTA %(ROOT user.yan LIMIT 1000 STORA", "the quota is set")
        t.check(b"QUOTAROOT user.yan" in get_user()[0], "the mailbox names its quota root")
        t.eq(c.cmd(b"APPLY UNQUOTA user.yan")[-1], b"OK success", "UNQUOTA")
        t.eq(c.cmd(b"GET QUOTA user.yan"), [b"OK success"], "GET QUOTA lists nothing after UNQUOTA")
        t.check(b"QUOTAROOT" not in get_user()[0], f"no quota root left: {get_user()[0][:300]}")
        t.eq(c.cmd(b"APPLY UNQUOTA user.yan")[-1], b"OK success", "UNQUOTA of a root with no quota")

    with t.case("APPLY ANNOTATION then UNANNOTATION"):
        t.eq(c.cmd(b'APPLY ANNOTATION %(MBOXNAME user.yan ENTRY /comment USERID "" VALUE hello)')[-1],
             b"OK success", "ANNOTATION (shared)")
        t.eq(c.cmd(b"APPLY ANNOTATION %(MBOXNAME user.yan ENTRY /comment USERID yan VALUE mine)")[-1],
             b"OK success", "ANNOTATION (private)")
        t.eq(sorted(c.cmd(b"GET ANNOTATION user.yan")),
             sorted([b'* ANNOTATION %(MBOXNAME user.yan ENTRY /comment USERID "" VALUE hello)',
                     b"* ANNOTATION %(MBOXNAME user.yan ENTRY /comment USERID yan VALUE mine)", b"OK success"]),
             "both are there")
        t.eq(c.cmd(b'APPLY UNANNOTATION %(MBOXNAME user.yan ENTRY /comment USERID "")')[-1], b"OK success",
             "UNANNOTATION of the shared one")
        t.eq(c.cmd(b"GET ANNOTATION user.yan"),
             [b"* ANNOTATION %(MBOXNAME user.yan ENTRY /comment USERID yan VALUE mine)", b"OK success"],
             "only the private one is left")
        t.eq(c.cmd(b"APPLY UNANNOTATION %(MBOXNAME user.yan ENTRY /comment USERID yan)")[-1], b"OK success",
             "UNANNOTATION of the private one")
        t.eq(c.cmd(b"GET ANNOTATION user.yan"), [b"OK success"], "none left")
        t.eq(c.cmd(b"APPLY UNANNOTATION %(MBOXNAME user.yan ENTRY /comment)")[-1],
             b"NO IMAP_PROTOCOL_BAD_PARAMETERS", "UNANNOTATION without USERID")

    sub_mbox = (b"%(UNIQUEID subuniqueid000000000000001 MBOXNAME user.yan.Sub SYNC_CRC 0 LAST_UID 0"
                b" HIGHESTMODSEQ 1 RECENTUID 0 RECENTTIME 0 LAST_APPENDDATE 0 POP3_LAST_LOGIN 0 POP3_SHOW_AFTER 0"
                b" UIDVALIDITY 1700000001 PARTITION default ACL \"yan\tlrswipkxtecdan\t\" OPTIONS P RECORD ())")

    with t.case("LOCAL_MAILBOX, LOCAL_RENAME, LOCAL_UNMAILBOX, LOCAL_UNUSER"):
        t.eq(c.cmd(b"APPLY LOCAL_MAILBOX " + sub_mbox)[-1], b"OK success", "LOCAL_MAILBOX")
        got = c.cmd(b"GET MAILBOXES (user.yan.Sub)")
        t.check(len(got) == 2 and b"UNIQUEID subuniqueid000000000000001 MBOXNAME user.yan.Sub " in got[0],
                f"created with its uniqueid: {got}")
        t.eq(c.cmd(b"APPLY LOCAL_RENAME %(OLDMBOXNAME user.yan.Sub NEWMBOXNAME user.yan.Sub2 PARTITION default)")[-1],
             b"OK success", "LOCAL_RENAME")
        got = c.cmd(b"GET MAILBOXES (user.yan.Sub user.yan.Sub2)")
        t.check(len(got) == 2 and b"UNIQUEID subuniqueid000000000000001 MBOXNAME user.yan.Sub2 " in got[0],
                f"renamed, same uniqueid, old name gone: {got}")
        t.eq(c.cmd(b"APPLY LOCAL_UNMAILBOX user.yan.Sub2")[-1], b"OK success", "LOCAL_UNMAILBOX")
        t.eq(c.cmd(b"GET MAILBOXES (user.yan.Sub2)"), [b"OK success"], "deleted")
        t.eq(c.cmd(b"APPLY LOCAL_UNUSER yan")[-1], b"OK success", "LOCAL_UNUSER")
        t.eq(get_user(), [b"OK success"], "the user is gone")
        t.eq(inst.run(["mailbox", "list", "yan"]).stdout, "", "no mailbox of yan left")
        t.eq(c.cmd(b"APPLY LOCAL_UNUSER yan")[-1], b"OK success", "LOCAL_UNUSER of a user that is gone")

    with t.case("RESTORE is refused with a NO and changes nothing"):
        inst.ok(["user", "add", "--no-password", "yan"])
        before = (get_user(), inst.ok(["mailbox", "list"]), c.cmd(b"GET MAILBOXES (user.yan.Sub)"))
        for cmd in [b"RESTORE MAILBOX " + sub_mbox, b"RESTORE UNMAILBOX user.yan",
                    b"RESTORE RENAME %(OLDMBOXNAME user.yan NEWMBOXNAME user.yan.X PARTITION default)"]:
            r = c.cmd(cmd)
            t.eq(len(r), 1, f"{cmd[:30]!r}: one reply line")
            t.check(r[-1].startswith(b"NO "), f"{cmd[:30]!r}: a NO: {r}")
        after = (get_user(), inst.ok(["mailbox", "list"]), c.cmd(b"GET MAILBOXES (user.yan.Sub)"))
        t.eq(after, before, "the replica is unchanged")
        t.eq(c.cmd(b"NOOP")[-1], b"OK Noop completed", "the session goes on")

    with t.case("a bad body refuses its whole APPLY MESSAGE; bodies staged before stay"):
        a = b"From: a@example.com\r\nSubject: a\r\n\r\nfirst\r\n"
        b = b"From: a@example.com\r\nSubject: b\r\n\r\nsecond\r\n"
        ga, gb = (hashlib.sha1(x).hexdigest().encode() for x in (a, b))
        lit = lambda g, x: b"%{default " + g + b" " + str(len(x)).encode() + b"}\r\n" + x
        t.eq(c.cmd(b"APPLY MESSAGE (" + lit(ga, a) + b")")[-1], b"OK success", "a staged")
        r = c.cmd(b"APPLY MESSAGE (" + lit(gb, b) + b" " + lit(gb, a) + b")")[-1]
        t.check(r.startswith(b"NO IMAP_PROTOCOL_ERROR message body " + gb), f"refused: {r}")
        box = lambda g, x: (b"APPLY MAILBOX %(UNIQUEID testuniqueid0000000000009 MBOXNAME user.zed.s SYNC_CRC 0"
                            b" LAST_UID 1 HIGHESTMODSEQ 5 RECENTUID 0 RECENTTIME 0 LAST_APPENDDATE 0 POP3_LAST_LOGIN 0"
                            b" POP3_SHOW_AFTER 0 UIDVALIDITY 1700000000 PARTITION default ACL \"zed\tlrswipkxtecdan\t\""
                            b" OPTIONS P RECORD (%(UID 1 MODSEQ 5 LAST_UPDATED 1700000000 FLAGS () INTERNALDATE"
                            b" 1700000000 SIZE " + str(len(x)).encode() + b" GUID " + g + b")))")
        t.check(c.cmd(box(gb, b))[-1].startswith(b"NO IMAP_PROTOCOL_ERROR"), "b (good, but in the refused command) not staged")
        t.eq(c.cmd(box(ga, a))[-1], b"OK success", "a, staged before, is applied")
        t.eq([m[5] for m in inst.messages("user.zed.s")], [ga.decode()], "the replica has a")
        c.cmd(b"RESTART")

    with t.case("a 100 MB APPLY MESSAGE streams to disk: the session stays under 64 MB"):
        # two 50 MB bodies (the per-message limit is 100 MB), made fast:
        # one repeated 1 MB block
        block = (b"x" * 1023 + b"\n") * 1024
        nblocks = 50
        head = b"From: big@example.com\r\nSubject: big\r\n\r\n"
        hs = []
        for i in range(2):
            h = hashlib.sha1(head + str(i).encode())
            for _ in range(nblocks):
                h.update(block)
            hs.append(h.hexdigest().encode())
        size = len(head) + 1 + nblocks * len(block)
        pids = set(subprocess.run(["pgrep", "-P", str(d.proc.pid)], capture_output=True, text=True).stdout.split())
        big = Conn(d.port["sync"])
        t.eq(big.auth("repl", "replpw"), b"OK Success (no protection)", "login")
        session = sorted(set(subprocess.run(["pgrep", "-P", str(d.proc.pid)], capture_output=True,
                                            text=True).stdout.split()) - pids)
        t.eq(len(session), 1, "one new session process")
        big.s.sendall(b"APPLY MESSAGE (")
        for i in range(2):
            big.s.sendall(b" %{default " + hs[i] + b" " + str(size).encode() + b"}\r\n" + head + str(i).encode())
            for _ in range(nblocks):
                big.s.sendall(block)
        big.s.sendall(b")\r\n")
        t.eq(big.line(), b"OK success", "staged")
        hwm = [int(line.split()[1]) for line in open(f"/proc/{session[0]}/status") if line.startswith("VmHWM:")]
        print(f"  session peak RSS (VmHWM) after 100 MB of bodies: {hwm[0] if hwm else '?'} kB")
        t.check(hwm and hwm[0] < 64 * 1024, f"peak RSS of the session {hwm} kB (< 64 MB for 100 MB of bodies)")
        stage = glob.glob(os.path.join(inst.dir, "**", "tmp", "sync"), recursive=True)
        staged = [f for sd in stage for f in os.listdir(sd)]
        t.eq(len(staged), 2, f"two staging files: {staged}")
        t.eq(big.cmd(b"EXIT"), [b"OK Finished"], "EXIT")
        big.s.close()
        t.check(wait_for(lambda: not [f for sd in stage for f in os.listdir(sd)]),
                "the session removed its staging files")

    with t.case("over IMAP too: a 100 MB SYNCAPPLY MESSAGE streams to disk, a bad body is refused"):
        pids = set(subprocess.run(["pgrep", "-P", str(d.proc.pid)], capture_output=True, text=True).stdout.split())
        im = socket.create_connection(("127.0.0.1", d.port["imap"]), timeout=60)
        f = im.makefile("rb")
        f.readline()
        session = sorted(set(subprocess.run(["pgrep", "-P", str(d.proc.pid)], capture_output=True,
                                            text=True).stdout.split()) - pids)
        t.eq(len(session), 1, "one new IMAP session process")

        def tagged(tag):
            while True:
                line = f.readline()
                if not line or line.startswith(tag + b" "):
                    return line.rstrip(b"\r\n")

        im.sendall(b"a LOGIN repl replpw\r\n")
        t.check(tagged(b"a").startswith(b"a OK"), "the repl admin logs in over IMAP")
        im.sendall(b"b SYNCAPPLY MESSAGE (")
        for i in range(2):
            im.sendall(b" %{default " + hs[i] + b" " + str(size).encode() + b"}\r\n" + head + str(i).encode())
            for _ in range(nblocks):
                im.sendall(block)
        im.sendall(b")\r\n")
        t.eq(tagged(b"b"), b"b OK success", "staged over IMAP")
        hwm = [int(line.split()[1]) for line in open(f"/proc/{session[0]}/status") if line.startswith("VmHWM:")]
        print(f"  IMAP session peak RSS (VmHWM) after 100 MB of bodies: {hwm[0] if hwm else '?'} kB")
        t.check(hwm and hwm[0] < 64 * 1024, f"peak RSS of the IMAP session {hwm} kB (< 64 MB for 100 MB of bodies)")
        bad = b"From: a@example.com\r\nSubject: bad\r\n\r\nnot what the GUID says\r\n"
        im.sendall(b"c SYNCAPPLY MESSAGE (%{default " + hs[0] + b" " + str(len(bad)).encode() + b"}\r\n" + bad + b")\r\n")
        r = tagged(b"c")
        t.check(r.startswith(b"c NO IMAP_PROTOCOL_ERROR message body"), f"a body that does not hash to its GUID: {r}")
        im.sendall(b"d NOOP\r\n")
        t.check(tagged(b"d").startswith(b"d OK"), "the session goes on")
        im.sendall(b"e LOGOUT\r\n")
        tagged(b"e")
        im.close()
        stage = glob.glob(os.path.join(inst.dir, "**", "tmp", "sync"), recursive=True)
        t.check(wait_for(lambda: not [x for sd in stage for x in os.listdir(sd)]),
                "the IMAP session removed its staging files")

    with t.case("EXIT"):
        t.eq(c.cmd(b"EXIT"), [b"OK Finished"], "EXIT")
finally:
    d.stop()
    inst.cleanup()
t.done()
