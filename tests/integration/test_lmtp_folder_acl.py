"""test_lmtp_folder_acl.py: LMTP user+folder files into the folder only when
the folder's ACL grants 'p' to anyone (or anonymous, or the envelope
sender), as Cyrus 3.6 does; else into the INBOX (docs/migrating-from-cyrus.md)."""
import smtplib

from tlib import Daemon, Instance, Suite, make_message

t = Suite("lmtp_folder_acl")
inst = Instance()
d = None
try:
    inst.ok(["user", "add", "--no-password", "alice"])
    for f in ["Private", "Public", "FromBoss", "Denied"]:
        inst.ok(["mailbox", "create", f"user.alice.{f}"])
    inst.ok(["mailbox", "setacl", "user.alice.Public", "anyone", "p"])
    inst.ok(["mailbox", "setacl", "user.alice.FromBoss", "boss@example.net", "lrsp"])
    inst.ok(["mailbox", "setacl", "user.alice.Denied", "anyone", "p"])
    inst.ok(["mailbox", "setacl", "user.alice.Denied", "-anyone", "p"])
    d = Daemon(inst, services=("lmtp",))

    def send(sender, rcpt, i):
        l = smtplib.LMTP("127.0.0.1", d.port["lmtp"])
        try:
            return l.sendmail(sender, [rcpt], make_message(t.rng, i))
        finally:
            l.close()

    def count(mb):
        return len(inst.messages(mb))

    with t.case("a folder without 'p' for strangers: the INBOX"):
        t.eq(send("x@example.net", "alice+Private", 1), {}, "accepted")
        t.eq(count("user.alice.Private"), 0, "not in the private folder")
        t.eq(count("user.alice"), 1, "in the INBOX")
        t.check("event=rcpt_folder_refused" in d.log() and "reason=acl_no_post" in d.log(), "logged")

    with t.case("anyone p: the folder"):
        t.eq(send("x@example.net", "alice+Public", 2), {}, "accepted")
        t.eq(count("user.alice.Public"), 1, "in the folder")

    with t.case("p for the envelope sender only"):
        send("boss@example.net", "alice+FromBoss", 3)
        t.eq(count("user.alice.FromBoss"), 1, "the sender with p: the folder")
        send("someone@example.net", "alice+FromBoss", 4)
        t.eq(count("user.alice.FromBoss"), 1, "another sender: not the folder")
        t.eq(count("user.alice"), 2, "... but the INBOX")

    with t.case("a negative right takes p back"):
        send("x@example.net", "alice+Denied", 5)
        t.eq(count("user.alice.Denied"), 0, "not in the folder")
        t.eq(count("user.alice"), 3, "in the INBOX")
finally:
    if d:
        d.stop()
    inst.cleanup()
t.done()
