"""test_isolation.py: one mailbox that always fails to replicate never
stalls its channel. It is recorded with its error (tandem status), the
rest keeps replicating, it is retried with backoff, and once the cause is
fixed it replicates and leaves the failed list.

Also: rolling passes that touch a failing mailbox count as tries but do
not push its next retry to the backoff cap; a pass or a `tandem sync -m`
that replicates it takes it off the list; the replica's real error (a
damaged database) reaches `tandem status` after Cyrus's token; a rename
whose old and new names are replicated in different passes is a rename on
the replica (never a replica-only copy plus a mailbox failing forever)."""
import os
import re
import shutil
import time

from tlib import Pair, Suite, make_message, wait_for

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
        # the first retry is due at the next_retry `tandem status` shows
        line = [l for l in m.ok(["status", "-n", "repl1"]).splitlines() if "mailbox=user.alice.Bad state=failed" in l]
        t.check(line and "next_retry=" in line[0], f"status shows when the retry is due: {line}")
        due = int(re.search(r"next_retry=(\d+)", line[0]).group(1)) if line and "next_retry=" in line[0] else 0
        wait_for(lambda: time.time() >= due + 1, 30, f"the retry time {due} (a whole second past it)")
        t.eq(pair.sync("-r", "-1").returncode, 0, "pass with the retry")
        st = m.ok(["status", "-n", "repl1"])
        t.check("state=failed" not in st, f"no failure left: {st}")
        rc, out = pair.compare()
        t.eq(rc, 0, f"master == replica: {out}")
        t.imap_equal(m, r, "master == replica")

    def failed_line(name):
        st = m.ok(["status", "-n", "repl1"])
        for line in st.splitlines():
            if f"mailbox={name} state=failed" in line:
                return line
        return None

    def conflict(name):
        """The replica holds `name` with another uniqueid: APPLY MAILBOX is refused."""
        r.ok(["mailbox", "create", name])
        r.ok(["deliver", "alice+" + name.split(".")[-1]], make_message(t.rng, 99))
        m.ok(["mailbox", "create", name])

    with t.case("passes touching a failing mailbox are tries, not a push to the cap; a pass that replicates it takes it off"):
        conflict("user.alice.Bad2")
        for i in range(6):
            m.ok(["deliver", "alice+Bad2"], make_message(t.rng, 10 + i))
            t.eq(pair.sync("-r", "-1").returncode, 0, f"pass {i}")
        line = failed_line("user.alice.Bad2") or ""
        attempts = int(re.search(r"attempts=(\d+)", line).group(1)) if "attempts=" in line else -1
        nxt = int(re.search(r"next_retry=(\d+)", line).group(1)) if "next_retry=" in line else 0
        t.eq(attempts, 6, f"each pass counted as a try: {line}")
        t.check(0 <= nxt - time.time() <= 3, f"next retry still 2 s after the last failure: {line}")
        r.ok(["mailbox", "delete", "user.alice.Bad2"])
        m.ok(["deliver", "alice+Bad2"], make_message(t.rng, 20))
        t.eq(pair.sync("-r", "-1").returncode, 0, "a pass touching it once fixed")
        t.eq(failed_line("user.alice.Bad2"), None, "the pass took it off the failed list")
        rc, out = pair.compare()
        t.eq(rc, 0, f"master == replica: {out}")
        t.imap_equal(m, r, "master == replica")

    with t.case("tandem sync -m of a failed mailbox, once fixed, takes it off the list"):
        conflict("user.alice.Bad3")
        m.ok(["deliver", "alice+Bad3"], make_message(t.rng, 30))
        t.eq(pair.sync("-r", "-1").returncode, 0, "pass")
        t.check(failed_line("user.alice.Bad3") is not None, "recorded as failed")
        r.ok(["mailbox", "delete", "user.alice.Bad3"])
        t.eq(pair.sync("-m", "user.alice.Bad3").returncode, 0, "sync -m once fixed")
        t.eq(failed_line("user.alice.Bad3"), None, "sync -m took it off the failed list")

    with t.case("the replica's real error reaches tandem status (a damaged database)"):
        m.ok(["user", "add", "--no-password", "carol"])
        m.ok(["deliver", "carol"], make_message(t.rng, 40))
        t.eq(pair.sync("-r", "-1").returncode, 0, "carol replicated")
        pair.stop_replica()
        udir = os.path.join(r.dir, "spool", "user", "carol")
        backup = os.path.join(pair.root, "carol-backup")
        shutil.copytree(udir, backup)
        for name in os.listdir(udir):
            if name.startswith("meta.db"):
                os.unlink(os.path.join(udir, name))
        with open(os.path.join(udir, "meta.db"), "wb") as f:
            f.write(b"this is not an SQLite database\n" * 200)
        pair.start_replica()
        m.ok(["deliver", "carol"], make_message(t.rng, 41))
        t.eq(pair.sync("-r", "-1").returncode, 0, "the pass goes past carol")
        line = failed_line("user.carol") or ""
        t.check("IMAP_IOERROR" in line and "Unknown error" not in line and "CHECKSUM" not in line,
                f"Cyrus's token first: {line}")
        t.check("database" in line, f"the cause is named: {line}")
        pair.stop_replica()
        shutil.rmtree(udir)
        shutil.copytree(backup, udir)
        pair.start_replica()
        t.eq(pair.sync("-m", "user.carol").returncode, 0, "sync -m once restored")
        t.eq(failed_line("user.carol"), None, "off the failed list")

    def replay(*lines):
        path = os.path.join(pair.root, "replay.log")
        with open(path, "w") as f:
            f.write("".join(x + "\n" for x in lines))
        res = pair.sync("-f", path)
        t.eq(res.returncode, 0, f"replay {lines}: {res.stderr[-500:]}")

    for k, order in enumerate(("old name first", "new name first")):
        with t.case(f"a rename replicated in two passes ({order}) is a rename on the replica"):
            t.eq(pair.sync("-r", "-1").returncode, 0, "the log drained")
            a, b = f"user.alice.Old{k}", f"user.alice.New{k}"
            m.ok(["mailbox", "create", a])
            m.ok(["deliver", f"alice+{a.split('.')[-1]}"], make_message(t.rng, 50))
            t.eq(pair.sync("-r", "-1").returncode, 0, "created and replicated")
            m.ok(["mailbox", "rename", a, b])
            first, second = (a, b) if order == "old name first" else (b, a)
            replay(f"MAILBOX {first}")
            replay(f"MAILBOX {second}")
            rc, out = pair.compare()
            t.eq(rc, 0, f"master == replica: {out}")
            t.imap_equal(m, r, f"master == replica after the rename ({order})")
            t.eq(failed_line(b), None, "the new name did not fail")
            names = [ln.split("\t")[0] for ln in r.ok(["mailbox", "list", "alice"]).splitlines()]
            t.check(a not in names and b in names, f"renamed on the replica: {names}")
            t.eq(len(r.messages(b)), 1, "its message came along")
finally:
    pair.cleanup()
t.done()
