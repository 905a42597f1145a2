"""test_sync_server.py: the sync server on the wire, raw csync bytes.
Authentication rules, bad commands (an error reply, the session goes on,
nothing changes), a body whose SHA-1 does not match its GUID and a record
whose body was never sent (refused before anything is committed), a stale
master (IMAP_SYNC_CHECKSUM), APPLY EXPUNGE keeping the modseq, and EXIT."""
import base64
import hashlib
import socket

from tlib import CsyncConn as Conn, Daemon, Instance, Suite

t = Suite("sync-server")
inst = Instance()
text = open(inst.conf).read().replace("admins: admin\n", "admins: admin repl\n")
open(inst.conf, "w").write(text)
inst.ok(["user", "add", "repl"], "replpw\n")
inst.ok(["user", "add", "plain"], "plainpw\n")
d = Daemon(inst, services=("sync",))




msg = b"From: a@example.com\r\nSubject: raw\r\n\r\nhello over csync\r\n"
guid = hashlib.sha1(msg).hexdigest().encode()


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

    with t.case("a body that does not hash to its GUID is refused, nothing committed"):
        bad = msg.replace(b"hello", b"HELLO")
        t.eq(c.cmd(b"APPLY MESSAGE (%{default " + guid + b" " + str(len(bad)).encode() + b"}\r\n" + bad + b")")[-1],
             b"OK success", "staged")
        t.check(c.cmd(mailbox())[-1].startswith(b"NO"), "APPLY MAILBOX refused")
        t.check(empty(), "replica unchanged")
        c.cmd(b"RESTART")

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

    with t.case("EXIT"):
        t.eq(c.cmd(b"EXIT"), [b"OK Finished"], "EXIT")
finally:
    d.stop()
    inst.cleanup()
t.done()
