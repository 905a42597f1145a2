"""test_isolation.py: one mailbox that always fails to replicate never
stalls its channel. It is recorded with its error (tandem status), the
rest keeps replicating, it is retried with backoff, and once the cause is
fixed it replicates and leaves the failed list."""
import time

from tlib import Pair, Suite, make_message

t = Suite("isolation")
pair = Pair()
m, r = pair.master, pair.replica
try:
    # the replica already has a user.alice.Bad with another uniqueid and a message:
    # APPLY MAILBOX answers IMAP_MAILBOX_MOVED for it, every time
    r.ok(["user", "add", "--no-password", "alice"])
    r.ok(["mailbox", "create", "user.alice.Bad"])
    r.ok(["deliver", "alice+Bad"], make_message(t.rng, 0))
    m.ok(["user", "add", "--no-password", "alice"])
    m.ok(["mailbox", "create", "user.alice.Bad"])
    m.ok(["user", "add", "--no-password", "bob"])

    with t.case("the failing mailbox is recorded, the channel goes on"):
        m.ok(["deliver", "alice", "bob", "alice+Bad"], make_message(t.rng, 1))
        res = pair.sync("-r", "-1")
        t.eq(res.returncode, 0, f"rolling pass completes: {res.stderr[-300:]}")
        st = m.ok(["status", "-n", "repl1"])
        t.check("mailbox=user.alice.Bad state=failed" in st and "IMAP_MAILBOX_MOVED" in st, f"status: {st}")
        t.check("pending_lines=0" in st, f"the log was consumed: {st}")
        m.ok(["deliver", "bob"], make_message(t.rng, 2))
        t.eq(pair.sync("-r", "-1").returncode, 0, "next pass")
        out = pair.master.run(["compare", "-n", "repl1", "-o", "bob"])
        t.eq(out.returncode, 0, f"bob replicated past the failure: {out.stdout}")
        t.eq(len(r.messages("user.alice")), 1, "alice's INBOX replicated")
        bad = pair.sync("-m", "user.alice.Bad")
        t.eq(bad.returncode, 1, "a one-shot run of the failing mailbox reports the failure")

    with t.case("fixed: retried with backoff, replicated, off the list"):
        r.ok(["mailbox", "delete", "user.alice.Bad"])
        time.sleep(2.5)	# first retry after 2 s
        t.eq(pair.sync("-r", "-1").returncode, 0, "pass with the retry")
        st = m.ok(["status", "-n", "repl1"])
        t.check("state=failed" not in st, f"no failure left: {st}")
        rc, out = pair.compare()
        t.eq(rc, 0, f"master == replica: {out}")
finally:
    pair.cleanup()
t.done()
