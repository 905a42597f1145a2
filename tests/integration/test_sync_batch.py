"""test_sync_batch.py: sync_batchsize, a mailbox sent in parts.

A mailbox with more new messages than sync_batchsize goes to the replica
in several APPLY MAILBOX commands (Cyrus's partial updates, reference
§6.6): each part is a state the master passed through (LAST_UID and
HIGHESTMODSEQ capped, SYNC_CRC 0), the next part an incremental update
from it. Counted from the client's -v log (one event=sync_send line per
command) and checked by `tandem compare`: after an initial sync (records
flagged or expunged after later messages arrived, so some modseqs are
capped in a part), an incremental one, a rolling pass, over csync and
over the IMAP transport. The real-Cyrus case is in test_cyrus_interop.
"""
import random

from tlib import Pair, Suite, make_message

t = Suite("sync-batch")


def mailbox_cmds(stderr):
    """APPLY MAILBOX commands sent; none may have been refused (no fallback to a full update)."""
    t.check("event=sync_full_update" not in stderr and "event=sync_stream_retry" not in stderr,
            "no part was refused")
    return sum(1 for l in stderr.splitlines() if "event=sync_send" in l and 'command="APPLY MAILBOX' in l)


def deliver(inst, user, n, start):
    rng = random.Random(start)
    for i in range(n):
        inst.ok(["deliver", user], make_message(rng, start + i, size=rng.randint(300, 3000)))


for transport in ("csync", "imap"):
    pair = Pair(extra_master="sync_batchsize: 100\n", transport=transport)
    m = pair.master
    try:
        m.ok(["user", "add", "--no-password", "alice"])
        with t.case(f"{transport}: 300 messages, sync_batchsize 100: 3+ parts, equal"):
            deliver(m, "alice", 300, 1000)
            # changes after later deliveries: modseqs above a part's cut
            m.ok(["message", "flag", "user.alice", "20", "+\\Flagged $Work"])
            m.ok(["message", "flag", "user.alice", "150", "+\\Answered"])
            m.ok(["message", "flag", "user.alice", "30", "+\\Deleted"])
            m.ok(["message", "expunge", "user.alice"])
            r = pair.sync("-v", "-u", "alice")
            t.eq(r.returncode, 0, f"sync -u: {r.stderr[-400:]}")
            n = mailbox_cmds(r.stderr)
            t.check(n >= 3, f"APPLY MAILBOX commands: {n}, want 3 or more")
            rc, out = pair.compare()
            t.eq(rc, 0, f"compare: {out[-600:]}")
            t.eq(pair.replica.messages("user.alice"), m.messages("user.alice"), "records (UID, modseq, flags)")

        with t.case(f"{transport}: 250 more and a flag change: an incremental update in parts"):
            deliver(m, "alice", 250, 5000)
            m.ok(["message", "flag", "user.alice", "5", "+\\Flagged"])
            r = pair.sync("-v", "-u", "alice")
            t.eq(r.returncode, 0, f"sync -u: {r.stderr[-400:]}")
            n = mailbox_cmds(r.stderr)
            t.check(n >= 3, f"APPLY MAILBOX commands: {n}, want 3 or more")
            t.check(r.stderr.count("APPLY RESERVE") >= 1, "an incremental update reserves first")
            rc, out = pair.compare()
            t.eq(rc, 0, f"compare: {out[-600:]}")

        with t.case(f"{transport}: rolling pass of 150 new messages in parts"):
            deliver(m, "alice", 150, 9000)
            r = pair.sync("-v", "-r", "-1")
            t.eq(r.returncode, 0, f"rolling: {r.stderr[-400:]}")
            n = mailbox_cmds(r.stderr)
            t.check(n >= 2, f"APPLY MAILBOX commands: {n}, want 2 or more")
            rc, out = pair.compare()
            t.eq(rc, 0, f"compare: {out[-600:]}")
            t.imap_equal(m, (pair.replica, pair.port) if transport == "imap" else pair.replica, f"{transport}: at the end")
            t.eq(pair.replica.messages("user.alice"), m.messages("user.alice"), "records (UID, modseq, flags)")
    finally:
        pair.cleanup()

t.done()
