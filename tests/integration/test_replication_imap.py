"""test_replication_imap.py: the same replication over the IMAP transport
(reference §2.10): the master's sync client logs in to the replica's
imapd as an admin and speaks SYNCGET / SYNCAPPLY. Each scenario ends with
`tandem compare` (itself over IMAP) reporting equality."""
from tlib import Pair, Suite, make_message

t = Suite("replication-imap")
pair = Pair(transport="imap")
m = pair.master


def equal(what):
    rc, out = pair.compare()
    t.eq(rc, 0, f"{what}: master == replica; compare said:\n{out}")
    r = pair.replica.run(["check", "--bodies"])
    t.eq(r.returncode, 0, f"{what}: replica store checks clean: {r.stdout}")
    # the replica's own imapd (the one the sync client talks to) answers the oracle
    t.imap_equal(m, (pair.replica, pair.port), what, ignore_users=("repl", "mallory"))


try:
    with t.case("initial sync -A over IMAP"):
        for u in ["alice", "bob"]:
            m.ok(["user", "add", "--no-password", u])
        m.ok(["mailbox", "create", "user.alice.Work"])
        for i in range(10):
            m.ok(["deliver", t.rng.choice(["alice", "bob", "alice+Work"])], make_message(t.rng, i))
        m.ok(["message", "flag", "user.alice", "1", "+\\Seen $Label1"])
        r = pair.sync("-A", "-v")
        t.eq(r.returncode, 0, f"sync -A: {r.stderr[-800:]}")
        t.check("transport=imap" in r.stderr, "the client used the IMAP transport")
        equal("after -A")

    with t.case("rolling over IMAP: deliveries, flags, expunge, rename, delete, big message"):
        t.eq(pair.sync("-r", "-1").returncode, 0, "first pass")
        m.ok(["deliver", "alice", "bob"], make_message(t.rng, 100))
        m.ok(["deliver", "bob"], make_message(t.rng, 101, size=3 * 1024 * 1024))
        m.ok(["message", "flag", "user.bob", "1,2", "+\\Flagged work"])
        m.ok(["message", "flag", "user.alice", "1", "+\\Deleted"])
        m.ok(["message", "expunge", "user.alice"])
        m.ok(["mailbox", "rename", "user.alice.Work", "user.alice.Jobs"])
        m.ok(["mailbox", "create", "user.bob.Tmp"])
        r = pair.sync("-r", "-1")
        t.eq(r.returncode, 0, f"pass 2: {r.stderr[-800:]}")
        m.ok(["mailbox", "delete", "user.bob.Tmp"])
        t.eq(pair.sync("-r", "-1").returncode, 0, "pass 3")
        equal("after rolling passes")
        names = [l.split("\t")[0] for l in pair.replica.ok(["mailbox", "list"]).splitlines()]
        t.check("user.alice.Jobs" in names and "user.bob.Tmp" not in names, f"rename and delete: {names}")

    with t.case("a non-admin gets BAD for SYNC* commands and changes nothing"):
        import imaplib
        pair.replica.ok(["user", "add", "mallory"], "pw\n")
        im = imaplib.IMAP4("127.0.0.1", pair.port)
        im.login("mallory", "pw")
        t.check("X-REPLICATION" not in im.capabilities, "no X-REPLICATION for a non-admin")
        tag = im._new_tag().decode()
        im.send(f"{tag} SYNCAPPLY UNMAILBOX user.alice\r\n".encode())
        line = im.readline().decode()
        t.check(line.startswith(f"{tag} BAD"), f"non-admin SYNCAPPLY: {line!r}")
        im.logout()
        equal("after the refused command")
finally:
    pair.cleanup()
t.done()
