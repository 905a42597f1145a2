"""test_splitbrain.py: split brain after a hard failover (modeled on
Cassandane's splitbrain tests). Divergence is made by changing the replica
directly (tandem -C replica.conf ...) while no sync runs; then the master
syncs. Nothing that exists on either side is ever lost: the replica's own
messages are copied back into the master under new UIDs, a same-name
mailbox with another uniqueid is renamed aside on the replica by repair,
a replica-only mailbox is kept. Each case ends with compare equal and
every message that ever existed present (by GUID)."""
import json

from tlib import Pair, Suite, make_message, sha1

t = Suite("splitbrain")


def live_guids(inst, mailbox):
    return sorted(row[5] for row in inst.messages(mailbox))


def all_live(inst, user):
    out = []
    for line in inst.ok(["mailbox", "list", user]).splitlines():
        out += live_guids(inst, line.split("\t")[0])
    return sorted(out)


def fresh(user="alice", n=3):
    pair = Pair()
    m, r = pair.master, pair.replica
    m.ok(["user", "add", "--no-password", user])
    for i in range(n):
        m.ok(["deliver", user], make_message(t.rng, i))
    res = pair.sync("-u", user)
    t.eq(res.returncode, 0, f"initial sync: {res.stderr[-300:]}")
    return pair


def equal(pair, what):
    rc, out = pair.compare()
    t.eq(rc, 0, f"{what}: compare equal:\n{out[-1500:]}")
    t.imap_equal(pair.master, pair.replica, what)


try:
    with t.case("both sides got new mail after a hard failover (same UIDs, different GUIDs)"):
        pair = fresh()
        m, r = pair.master, pair.replica
        mine = [make_message(t.rng, 100 + i) for i in range(2)]
        theirs = [make_message(t.rng, 200 + i) for i in range(3)]
        for b in mine:
            m.ok(["deliver", "alice"], b)
        for b in theirs:
            r.ok(["deliver", "alice"], b)
        m.ok(["message", "flag", "user.alice", "4", "+\\Flagged"])
        r.ok(["message", "flag", "user.alice", "5", "+\\Seen $replica"])
        res = pair.sync("-u", "alice")
        t.eq(res.returncode, 0, f"sync after the split brain: {res.stderr[-800:]}")
        t.check("event=splitbrain_copyback" in res.stderr, "copy-back logged")
        want = sorted(sha1(b) for b in mine + theirs)
        got = live_guids(m, "user.alice")
        t.check(all(g in got for g in want), f"every new message on the master: {want} in {got}")
        t.eq(len(got), 3 + 5, "no duplicates, nothing lost")
        t.eq(live_guids(r, "user.alice"), got, "replica equal to the master")
        flags = {row[5]: row[2] for row in m.messages("user.alice")}
        t.check("$replica" in flags[sha1(theirs[1])], f"replica's flags kept: {flags}")
        st = m.ok(["status", "-n", "repl1"])
        t.eq(st.count("splitbrain=copyback"), 3, f"status lists the copy-backs: {st}")
        t.check("splitbrain=renumber" in st, f"status lists the renumbered: {st}")
        equal(pair, "after copy-back")
        pair.cleanup()

    with t.case("master expunge, replica keeps (and flags it)"):
        pair = fresh()
        m, r = pair.master, pair.replica
        gone = m.messages("user.alice")[0][5]
        m.ok(["message", "expunge", "user.alice", "1"])
        r.ok(["message", "flag", "user.alice", "1", "+\\Flagged"])
        r.ok(["deliver", "alice"], make_message(t.rng, 300))
        res = pair.sync("-u", "alice")
        t.eq(res.returncode, 0, f"sync: {res.stderr[-800:]}")
        t.check(gone not in live_guids(r, "user.alice"), "the master's expunge wins on the replica")
        t.eq(len(live_guids(m, "user.alice")), 3, "replica's new message copied back")
        equal(pair, "master expunge")
        pair.cleanup()

    with t.case("replica expunge, master keeps"):
        pair = fresh()
        m, r = pair.master, pair.replica
        gone = m.messages("user.alice")[1][5]
        r.ok(["message", "expunge", "user.alice", "2"])
        r.ok(["deliver", "alice"], make_message(t.rng, 400))
        m.ok(["deliver", "alice"], make_message(t.rng, 401))
        res = pair.sync("-u", "alice")
        t.eq(res.returncode, 0, f"sync: {res.stderr[-800:]}")
        t.check(gone not in live_guids(m, "user.alice"), "the replica's expunge wins (as Cyrus)")
        t.eq(len(live_guids(m, "user.alice")), 4, "both new messages live")
        equal(pair, "replica expunge")
        pair.cleanup()

    with t.case("both: expunges and new mail on both sides, rolling replication"):
        pair = fresh(n=6)
        m, r = pair.master, pair.replica
        t.eq(pair.sync("-r", "-1").returncode, 0, "log consumed")
        m.ok(["message", "expunge", "user.alice", "1"])
        r.ok(["message", "expunge", "user.alice", "2"])
        new_r = [make_message(t.rng, 500 + i) for i in range(3)]
        new_m = [make_message(t.rng, 600 + i) for i in range(2)]
        for b in new_r:
            r.ok(["deliver", "alice"], b)
        for b in new_m:
            m.ok(["deliver", "alice"], b)
        res = pair.sync("-r", "-1")
        t.eq(res.returncode, 0, f"rolling pass: {res.stderr[-800:]}")
        got = live_guids(m, "user.alice")
        t.check(all(sha1(b) in got for b in new_r + new_m), "every new message live on the master")
        t.eq(len(got), 6 - 2 + 5, "count")
        equal(pair, "both")
        pair.cleanup()

    with t.case("replica flag change + master delivery, rolling: merged, the new UID kept"):
        # The replica's own change bumps its HIGHESTMODSEQ to the modseq the
        # master gives its new message: the incremental update (records
        # above the replica's modseq) misses it and fails the CRC check; it
        # must leave the replica untouched (no LAST_UID without the record),
        # so the master's message is not renumbered.
        pair = fresh()
        m, r = pair.master, pair.replica
        t.eq(pair.sync("-r", "-1").returncode, 0, "log consumed")
        r.ok(["message", "flag", "user.alice", "3", "+$behind"])
        new = make_message(t.rng, 900)
        m.ok(["deliver", "alice"], new)
        print("  modseqs before: master", [(x[0], x[1]) for x in m.messages("user.alice", expunged=True)],
              "replica", [(x[0], x[1]) for x in r.messages("user.alice", expunged=True)])
        res = pair.sync("-r", "-1")
        t.eq(res.returncode, 0, f"rolling pass: {res.stderr[-800:]}")
        t.check("event=splitbrain_renumber" not in res.stderr, f"nothing renumbered: {res.stderr[-1200:]}")
        for side, inst in (("master", m), ("replica", r)):
            rows = {x[0]: x for x in inst.messages("user.alice", expunged=True)}
            t.eq(sorted(rows), [1, 2, 3, 4], f"{side}: UIDs 1-4, no expunged copy: {rows}")
            t.eq(rows.get(4, (0,) * 6)[5], sha1(new), f"{side}: the new message keeps UID 4")
            t.check("$behind" in rows.get(3, (0, 0, ""))[2], f"{side}: the replica's flag merged: {rows.get(3)}")
        equal(pair, "replica flag change")
        t.eq(pair.sync("-r", "-1").returncode, 0, "next pass")
        equal(pair, "still equal")
        pair.cleanup()

    with t.case("same name, different uniqueid: renamed aside on the replica by repair"):
        pair = fresh()
        m, r = pair.master, pair.replica
        m.ok(["mailbox", "create", "user.alice.Work"])
        m.ok(["deliver", "alice+Work"], make_message(t.rng, 700))
        r.ok(["mailbox", "create", "user.alice.Work"])
        rb = make_message(t.rng, 701)
        r.ok(["deliver", "alice+Work"], rb)
        res = pair.sync("-u", "alice")
        t.eq(res.returncode, 1, "plain sync isolates it (IMAP_MAILBOX_MOVED)")
        res = m.run(["repair", "-n", "repl1", "-o", "--json", "-u", "alice"])
        t.eq(res.returncode, 0, f"repair: {res.stdout[-800:]} {res.stderr[-800:]}")
        doc = json.loads(res.stdout)
        t.eq(len(doc["renamed"]), 1, f"renamed reported: {doc}")
        names = [l.split("\t")[0] for l in r.ok(["mailbox", "list", "alice"]).splitlines()]
        aside = [n for n in names if n.startswith("user.alice.Work-splitbrain-")]
        t.eq(len(aside), 1, f"aside on the replica: {names}")
        t.eq(live_guids(r, aside[0]), [sha1(rb)], "the replica's mail kept aside")
        t.eq(live_guids(r, "user.alice.Work"), live_guids(m, "user.alice.Work"), "master's mailbox applied")
        res = m.run(["repair", "-n", "repl1", "-o", "--json", "--copy-back-mailboxes", "-u", "alice"])
        t.eq(res.returncode, 0, f"copy the aside mailbox back: {res.stderr[-500:]}")
        t.eq(live_guids(m, aside[0]), [sha1(rb)], "now on the master too")
        equal(pair, "different uniqueid")
        pair.cleanup()

    with t.case("replica-only mailbox: kept and reported, not deleted"):
        pair = fresh()
        m, r = pair.master, pair.replica
        r.ok(["mailbox", "create", "user.alice.Failover"])
        fb = make_message(t.rng, 800)
        r.ok(["deliver", "alice+Failover"], fb)
        res = pair.sync("-u", "alice")
        t.eq(res.returncode, 0, f"sync: {res.stderr[-500:]}")
        t.check("event=splitbrain_replica_only" in res.stderr, "reported in the log")
        t.eq(live_guids(r, "user.alice.Failover"), [sha1(fb)], "kept on the replica")
        st = m.ok(["status", "-n", "repl1"])
        t.check("splitbrain=replica_only mailbox=user.alice.Failover" in st, f"status: {st}")
        res = m.run(["repair", "-n", "repl1", "-o", "--json", "-u", "alice"])
        doc = json.loads(res.stdout)
        t.eq(res.returncode, 0, "repair succeeds, the mailbox is kept")
        t.check(not doc["equal"] and doc["kept"] and doc["kept"][0]["mailbox"] == "user.alice.Failover",
                f"kept listed: {doc}")
        res = m.run(["repair", "-n", "repl1", "-o", "--json", "--copy-back-mailboxes", "-u", "alice"])
        doc = json.loads(res.stdout)
        t.eq(res.returncode, 0, f"copy back when asked: {res.stderr[-300:]}")
        t.eq(live_guids(m, "user.alice.Failover"), [sha1(fb)], "copied to the master")
        equal(pair, "replica-only mailbox")
        pair.cleanup()
finally:
    pass
t.done()
