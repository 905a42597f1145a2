"""test_repair.py: `tandem repair` makes a replica equal to its master
(a damaged message file, a missing mailbox, missing messages, flag drift),
never deleting what only the replica holds; `compare --json` and
`repair --json` print one JSON document."""
import json
import os

from tlib import Pair, Suite, make_message

t = Suite("repair")
pair = Pair()
m, r = pair.master, pair.replica


def repair(*args):
    res = m.run(["repair", "-n", "repl1", "-o", "--json"] + list(args))
    try:
        doc = json.loads(res.stdout)
    except ValueError:
        doc = None
    t.check(doc is not None, f"repair --json printed JSON: {res.stdout[-500:]} {res.stderr[-500:]}")
    return res.returncode, doc or {}


def compare_json(*args):
    res = m.run(["compare", "-n", "repl1", "-o", "--json"] + list(args))
    return res.returncode, json.loads(res.stdout)


try:
    for u in ["alice", "bob"]:
        m.ok(["user", "add", "--no-password", u])
    m.ok(["mailbox", "create", "user.alice.Work"])
    for i in range(8):
        m.ok(["deliver", t.rng.choice(["alice", "bob", "alice+Work"])], make_message(t.rng, i))
    # the cases below damage and flag alice's first INBOX message: whatever the seed, she has one
    m.ok(["deliver", "alice"], make_message(t.rng, 8))
    t.eq(pair.sync("-A").returncode, 0, "initial sync")

    with t.case("compare --json when equal"):
        rc, doc = compare_json()
        t.eq(rc, 0, "exit 0")
        t.eq((doc["equal"], doc["differences"]), (True, []), f"equal: {doc}")

    with t.case("a damaged message file on the replica: found by compare --bodies, fixed by repair"):
        uid, guid = [(l.split("\t")[0], l.split("\t")[5]) for l in r.ok(["message", "list", "user.alice"]).splitlines()][0]
        path = os.path.join(r.dir, "spool", "user", "alice", "blobs", guid[:2], guid)
        good = open(path, "rb").read()
        with open(path, "wb") as f:
            f.write(good[:-3] + b"XYZ")
        rc, doc = compare_json("--bodies", "alice")
        t.eq(rc, 1, "difference found")
        kinds = [d["kind"] for d in doc["differences"]]
        t.check("replica_body" in kinds, f"replica_body reported: {doc}")
        rc, doc = repair("--bodies", "-u", "alice")
        t.eq(rc, 0, f"repair: {doc}")
        t.check(doc.get("repaired"), f"repaired listed: {doc}")
        t.eq(open(path, "rb").read(), good, "the file is whole again")
        t.eq(m.run(["compare", "-n", "repl1", "-o", "--bodies", "alice"]).returncode, 0, "compare --bodies clean")
        t.imap_equal(m, r, "after repair --bodies (the body's SHA-1 as clients fetch it)", users=["alice"])

    with t.case("missing mailbox, missing messages, flag drift: all fixed"):
        r.ok(["mailbox", "delete", "user.alice.Work"])
        rows = r.messages("user.bob")
        if rows:
            r.ok(["message", "flag", "user.bob", str(rows[0][0]), "+\\Flagged $drift"])
        # messages the replica never got: delivered with logging to nowhere
        for i in range(3):
            m.ok(["deliver", "bob"], make_message(t.rng, 100 + i))
        rc, doc = compare_json()
        t.eq(rc, 1, "compare sees the differences")
        kinds = sorted({d["kind"] for d in doc["differences"]})
        t.check("missing_on_replica" in kinds, f"missing mailbox: {kinds}")
        rc, doc = repair("-A")
        t.eq(rc, 0, f"repair -A: {doc}")
        t.eq(doc.get("equal"), True, f"equal afterwards: {doc}")
        rc, out = pair.compare()
        t.eq(rc, 0, f"compare equal: {out}")
        # a flag change made later on the replica is merged, as Cyrus does (both sides agree)
        t.eq(m.messages("user.bob"), r.messages("user.bob"), "bob's flags agree on both sides")
        t.imap_equal(m, r, "after repair -A")

    with t.case("repair -m of one mailbox; --dry-run changes nothing"):
        r.ok(["message", "flag", "user.alice", "1", "+$x"])
        rc, doc = repair("--dry-run", "-m", "user.alice")
        t.eq(doc.get("equal"), False, "dry run reports the drift")
        t.check("$x" in r.messages("user.alice")[0][2], "dry run left it")
        rc, doc = repair("-m", "user.alice")
        t.eq(rc, 0, f"repair -m: {doc}")
        t.eq(m.messages("user.alice")[0][2], r.messages("user.alice")[0][2], "flags agree (the later change kept)")
        t.eq(pair.compare()[0], 0, "compare equal")
        t.imap_equal(m, r, "after repair -m")

    with t.case("repair never deletes the replica's own messages"):
        extra = make_message(t.rng, 300)
        r.ok(["deliver", "alice"], extra)
        rc, doc = repair("-u", "alice")
        t.eq(rc, 0, f"repair: {doc}")
        t.eq(len(doc.get("copied_back", [])), 1, f"copied back: {doc}")
        from tlib import sha1
        t.check(sha1(extra) in [x[5] for x in m.messages("user.alice")], "on the master now")
        rc, out = pair.compare()
        t.eq(rc, 0, f"compare equal: {out}")
        t.imap_equal(m, r, "after the copy-back")
finally:
    pair.cleanup()
t.done()
