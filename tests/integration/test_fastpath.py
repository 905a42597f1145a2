"""test_fastpath.py: the rolling client's one-round-trip passes.

tandemd's rolling client keeps the replica's mailbox headers (the sync
cache) and, once a mailbox is in it, replicates a change with one
pipelined write and one wait. Checked through the client's own counters
(`event=sync_pass ... roundtrips=`) and, above all, by equality: a move
sends no body again, and a replica changed behind the client's
back makes the cached state wrong: the replica refuses the incremental
update, the client falls back to the general path, and the pair ends
equal.
"""
import imaplib
import smtplib
import time

from tlib import Daemon, Pair, Suite, make_message, wait_for

t = Suite("fastpath")
pair = Pair()
m, r = pair.master, pair.replica


def passes(d):
    out = []
    for line in d.log().splitlines():
        if "event=sync_pass" in line:
            f = dict(x.split("=", 1) for x in line.split() if "=" in x)
            out.append({k: int(f[k]) for k in ("commands", "roundtrips", "bytes")})
    return out


def settle(d, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        rc, out = pair.compare()
        if rc == 0:
            return True, out
        time.sleep(0.2)
    return False, out


try:
    m.ok(["user", "add", "alice"], "pw\n")
    m.ok(["mailbox", "create", "user.alice.Work"])
    d = Daemon(m, services=("lmtp", "imap"))

    with t.case("after the first pass, each delivery is one round trip"):
        for i in range(6):
            l = smtplib.LMTP("127.0.0.1", d.port["lmtp"])
            l.sendmail("s@example.net", ["alice"], make_message(t.rng, i, size=3000))
            l.quit()
            # one pass per delivery: wait until this one is on the replica
            wait_for(lambda: len(r.run(["message", "list", "user.alice"]).stdout.splitlines()) >= i + 1, 30,
                     f"delivery {i + 1} on the replica")
        ok, out = settle(d)
        t.check(ok, f"replica equal: {out[-400:]}")
        t.imap_equal((m, d.port["imap"]), r, "after the one-round-trip passes", passwords={"alice": "pw"})
        ps = [p for p in passes(d) if p["commands"]]
        t.check(len(ps) >= 4, f"passes seen: {ps}")
        t.eq([p["roundtrips"] for p in ps[2:]], [1] * len(ps[2:]), "one round trip per pass once cached")

    with t.case("a replica changed behind the client's back: refused, general path, equal"):
        # the replica's state no longer matches the client's cache
        r.ok(["message", "flag", "user.alice", "3", "+$behind"])
        l = smtplib.LMTP("127.0.0.1", d.port["lmtp"])
        l.sendmail("s@example.net", ["alice"], make_message(t.rng, 50))
        l.quit()
        ok, out = settle(d)
        if not ok:
            print("master:", m.messages("user.alice", expunged=True))
            print("replica:", r.messages("user.alice", expunged=True))
            print("\n".join(l for l in d.log().splitlines() if "sync" in l or "split" in l)[-3000:])
        renum = [x for x in d.log().splitlines() if "event=splitbrain_renumber" in x]
        # a new master message keeps its UID here: a stale cache is no split brain
        t.eq(renum, [], "no renumbering")
        t.check(ok, f"replica equal again: {out[-400:]}")
        t.imap_equal((m, d.port["imap"]), r, "after the stale cache", passwords={"alice": "pw"})
        t.check("event=sync_cache_miss" in d.log() or "event=sync_full_update" in d.log(),
                "the stale cache was noticed")
    d.stop()
finally:
    pair.cleanup()
t.done()
