"""test_lmtp.py: tandemd's LMTP service driven by Python's smtplib.LMTP and
by swaks: delivery with one reply per recipient, user+folder, unknown
users, quota, size limit, pipelining, garbage, STARTTLS, and SIGTERM
letting a delivery in progress finish."""
import os
import socket
import ssl
import subprocess
import time

from tlib import Daemon, Instance, Suite, make_message, sha1, wait_log

t = Suite("lmtp")
inst = Instance(channels="repl1", extra_conf="maxmessagesize: 200K\n")
d = None


def lmtp_raw(port, data, read_until=b"221", timeout=10):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(data)
    out = b""
    deadline = time.time() + timeout
    while read_until not in out and time.time() < deadline:
        chunk = s.recv(65536)
        if not chunk:
            break
        out += chunk
    s.close()
    return out.decode("utf-8", "replace")


try:
    for u in ["alice", "bob", "carol"]:
        inst.ok(["user", "add", "--no-password", u])
    inst.ok(["mailbox", "create", "user.alice.Lists"])
    inst.ok(["mailbox", "setacl", "user.alice.Lists", "anyone", "p"])  # user+folder needs p (Cyrus too)
    d = Daemon(inst, services=("lmtp",))
    port = d.port["lmtp"]
    import smtplib

    with t.case("LHLO lists the extensions"):
        l = smtplib.LMTP("127.0.0.1", port)
        code, text = l.ehlo("mta.test")
        t.eq(code, 250, "LHLO")
        for ext in [b"PIPELINING", b"8BITMIME", b"ENHANCEDSTATUSCODES", b"SIZE 204800", b"STARTTLS"]:
            t.check(ext in text, f"{ext} announced")
        l.quit()

    with t.case("one message to several recipients: per-recipient replies, stored once per user"):
        m = make_message(t.rng, 1)
        l = smtplib.LMTP("127.0.0.1", port)
        refused = l.sendmail("sender@example.net", ["alice", "bob", "nobody", "alice+Lists", "carol+NoSuch"], m)
        l.quit()
        t.eq(sorted(refused), ["nobody"], "only the unknown user is refused")
        t.eq(refused["nobody"][0], 550, "550 for an unknown user")
        a = inst.messages("user.alice")
        t.eq(len(a), 1, "alice INBOX")
        t.eq(len(inst.messages("user.alice.Lists")), 1, "alice+Lists in the folder")
        t.eq(len(inst.messages("user.carol")), 1, "carol+NoSuch falls back to the INBOX")
        body = subprocess.run([os.path.join(os.environ.get("TANDEM_BIN", "bin"), "tandem"), "-C", inst.conf,
                               "message", "fetch", "user.bob", "1"], capture_output=True).stdout
        t.check(body.startswith(b"Return-Path: <sender@example.net>\r\n"), "Return-Path added")
        t.eq(body[len(b"Return-Path: <sender@example.net>\r\n"):], m, "message stored byte for byte")

    with t.case("size limit: 552 from MAIL SIZE= and from DATA, session stays usable"):
        l = smtplib.LMTP("127.0.0.1", port)
        l.ehlo("x")
        code, _ = l.mail("a@b", ["SIZE=999999"])
        t.eq(code, 552, "MAIL with SIZE over the limit")
        l.rset()
        t.eq(l.noop()[0], 250, "session still works")
        l.quit()
        # Without SIZE= the limit is found during DATA: 552 per recipient,
        # and the session stays in sync for the next command.
        big = make_message(t.rng, 2, 300000).replace(b"\r\n.", b"\r\n..")
        out = lmtp_raw(port, b"LHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<alice>\r\nRCPT TO:<bob>\r\nDATA\r\n" + big +
                       b"\r\n.\r\nNOOP\r\nQUIT\r\n")
        t.eq(out.count("552 5.3.4"), 2, f"552 for each recipient: {out[-300:]!r}")
        t.check("250 2.0.0 Ok\r\n221" in out, "NOOP after the big message answered")

    with t.case("over quota: 452 4.2.2, nothing stored"):
        inst.ok(["mailbox", "list", "bob"])
        # a 1 KiB quota through the store (IMAP SETQUOTA comes with imapd)
        r = subprocess.run(["sqlite3", os.path.join(inst.dir, "spool", "user", "bob", "meta.db"),
                            "INSERT INTO quota VALUES('user.bob', 1, -1, 0, 0, 1);"
                            "UPDATE mailboxes SET quotaroot='user.bob';"], capture_output=True, text=True)
        t.eq(r.returncode, 0, f"quota set: {r.stderr}")
        before = len(inst.messages("user.bob"))
        l = smtplib.LMTP("127.0.0.1", port)
        refused = {}
        try:
            refused = l.sendmail("a@b", ["bob"], make_message(t.rng, 3, 5000))
        except smtplib.SMTPDataError as e:
            refused = {"bob": (e.smtp_code, e.smtp_error)}
        l.quit()
        t.eq(refused.get("bob", (0, b""))[0], 452, f"over quota reply: {refused}")
        t.check(b"4.2.2" in refused.get("bob", (0, b""))[1], "enhanced status 4.2.2")
        t.eq(len(inst.messages("user.bob")), before, "nothing stored")

    with t.case("pipelined session in one write"):
        m = b"Subject: piped\r\n\r\nhi\r\n"
        out = lmtp_raw(port, b"LHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<alice>\r\nRCPT TO:<carol>\r\nDATA\r\n" + m +
                       b".\r\nNOOP\r\nQUIT\r\n")
        codes = [line[:3] for line in out.split("\r\n") if line and line[3:4] == " "]
        t.eq(codes, ["220", "250", "250", "250", "250", "354", "250", "250", "250", "221"], f"replies: {out!r}")

    with t.case("garbage and bad commands get errors, the session goes on"):
        out = lmtp_raw(port, b"BLAH\r\nRCPT TO:<alice>\r\nLHLO x\r\nDATA\r\nMAIL FROM:bad\r\n" +
                       b"X" * 5000 + b"\r\nNOOP\r\nQUIT\r\n")
        for want in ["500 5.5.2 Unknown command", "503 5.5.1", "501 5.1.7", "500 5.5.2 Line too long", "221 2.0.0"]:
            t.check(want in out, f"'{want}' in {out!r}")
        rnd = bytes(t.rng.randrange(256) for _ in range(3000))
        lmtp_raw(port, rnd + b"\r\nQUIT\r\n", timeout=3)
        l = smtplib.LMTP("127.0.0.1", port)
        t.eq(l.noop()[0], 250, "server still serves after random bytes")
        l.quit()

    with t.case("STARTTLS then delivery"):
        l = smtplib.LMTP("127.0.0.1", port)
        l.ehlo("x")
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        code, _ = l.starttls(context=ctx)
        t.eq(code, 220, "STARTTLS")
        l.ehlo("x")
        refused = l.sendmail("a@b", ["alice"], make_message(t.rng, 4))
        t.eq(refused, {}, "delivered over TLS")
        l.quit()

    with t.case("swaks delivers over LMTP"):
        r = subprocess.run(["swaks", "--server", "127.0.0.1", "--port", str(port), "--protocol", "LMTP",
                            "--to", "carol", "--from", "swaks@example.net", "--body", "sent by swaks"],
                           capture_output=True, text=True, timeout=30)
        t.eq(r.returncode, 0, f"swaks: {r.stdout[-500:]}")
        t.check("250 2.1.5 Delivered" in r.stdout, "per-recipient 250")

    with t.case("SIGTERM lets the delivery in progress finish"):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        f = s.makefile("rb")
        f.readline()
        s.sendall(b"LHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<alice>\r\nDATA\r\n")
        for _ in range(7):
            f.readline()
        s.sendall(b"Subject: during shutdown\r\n\r\nfirst half\r\n")
        n_before = len(inst.messages("user.alice"))
        # and a second client, idle between commands: told at once
        idle = socket.create_connection(("127.0.0.1", port), timeout=10)
        fi = idle.makefile("rb")
        fi.readline()
        idle.sendall(b"LHLO y\r\n")
        while not fi.readline().startswith(b"250 "):
            pass
        d.proc.send_signal(15)
        wait_log(d, "event=stopping", 30)
        s.sendall(b"second half\r\n.\r\n")
        reply = f.readline()
        t.check(reply.startswith(b"250"), f"delivery acknowledged after SIGTERM: {reply!r}")
        rest = f.read()
        t.check(b"421" in rest, f"then 421 shutting down: {rest!r}")
        s.close()
        # the idle client does not hold tandemd up to its idle timeout
        # (30 s): tandemd exits by itself, cleanly, well inside it
        t.eq(d.proc.wait(25), 0, "tandemd exited 0 with an idle client connected")
        t.check(fi.readline().startswith(b"421"), "the idle client got 421")
        idle.close()
        t.eq(len(inst.messages("user.alice")), n_before + 1, "the message is stored")
        t.check("event=stopped" in d.log(), "stop logged")

    with t.case("the store checks clean"):
        r = inst.run(["check", "--bodies"])
        t.eq(r.returncode, 0, r.stdout)
finally:
    if d:
        d.stop()
    inst.cleanup()
t.done()
