"""test_chain.py: chained replication A -> B -> C. B has sync_log_chain:
what it applies from A is logged to its own channel, and B's tandemd runs
the sync client that feeds C. A change made on A reaches C."""
import os
import time

from tlib import Daemon, Instance, Pair, Suite, free_port, make_message

t = Suite("chain")
pair = Pair()                 # A (pair.master) -> B (pair.replica)
a, b = pair.master, pair.replica
c = Instance()
text = open(c.conf).read().replace("admins: admin\n", "admins: admin repl\n")
open(c.conf, "w").write(text)
c.ok(["user", "add", "repl"], "replpw\n")
c_port = free_port()
dc = None
try:
    dc = Daemon(c, services=("sync",), ports={"sync": c_port})
    # B: log what it applies, and feed C from its own channel
    pair.stop_replica()
    with open(b.conf, "a") as f:
        f.write(f"sync_log: yes\nsync_log_chain: yes\nsync_log_channels: toc\ntoc_sync_host: 127.0.0.1:{c_port}\n"
                "sync_authname: repl\nsync_password: replpw\n")
    pair.start_replica()

    with t.case("a change on A reaches C through B"):
        a.ok(["user", "add", "--no-password", "alice"])
        a.ok(["mailbox", "create", "user.alice.Work"])
        for i in range(5):
            a.ok(["deliver", "alice"], make_message(t.rng, i))
        a.ok(["message", "flag", "user.alice", "2", "+\\Flagged"])
        t.eq(pair.sync("-r", "-1").returncode, 0, "A -> B pass")
        deadline = time.time() + 20
        ok = False
        while time.time() < deadline and not ok:
            time.sleep(0.3)
            r = b.run(["compare", "-n", "toc", "-o", "alice"])
            ok = r.returncode == 0 and c.run(["mailbox", "list", "alice"]).returncode == 0
        t.check(ok, f"B == C: {r.stdout[-400:]}")
        t.eq(pair.compare()[0], 0, "A == B")
        ma = [l.split("\t")[1:] for l in a.ok(["message", "list", "user.alice"]).splitlines()]
        mc = [l.split("\t")[1:] for l in c.ok(["message", "list", "user.alice"]).splitlines()]
        t.eq(mc, ma, "C has A's records (modseqs, flags, dates, GUIDs)")
        t.check(os.path.exists(os.path.join(b.dir, "conf", "sync", "toc")), "B logged to its channel")
        t.imap_equal(a, b, "A == B")
        t.imap_equal(a, c, "A == C")
finally:
    if dc:
        dc.stop()
    pair.cleanup()
    c.cleanup()
t.done()
