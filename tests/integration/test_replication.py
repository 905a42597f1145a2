"""test_replication.py: a tandem master replicating to a tandem replica
over the Cyrus 3.6 csync protocol. Each scenario ends with `tandem
compare` (every mailbox, every record) reporting equality."""
import os
import signal
import subprocess
import time

from tlib import TANDEM, Pair, Suite, make_message, wait_for

t = Suite("replication")
pair = Pair()
m = pair.master


def equal(what):
    rc, out = pair.compare()
    t.eq(rc, 0, f"{what}: master == replica; compare said:\n{out}")
    r = pair.replica.run(["check", "--bodies"])
    t.eq(r.returncode, 0, f"{what}: replica store checks clean: {r.stdout}")
    t.imap_equal(m, pair.replica, what)


try:
    with t.case("initial sync -A of users, folders, messages, flags"):
        for u in ["alice", "bob"]:
            m.ok(["user", "add", "--no-password", u])
        m.ok(["mailbox", "create", "user.alice.Work"])
        for i in range(12):
            m.ok(["deliver", t.rng.choice(["alice", "bob", "alice+Work"])], make_message(t.rng, i))
        m.ok(["message", "flag", "user.alice", "1", "+\\Seen $Label1"])
        r = pair.sync("-A")
        t.eq(r.returncode, 0, f"sync -A: {r.stderr}")
        equal("after -A")

    with t.case("rolling: deliveries, flags, expunge, create, rename, delete, user add and delete"):
        # the -A run above left the log in place: consume it first
        t.eq(pair.sync("-r", "-1").returncode, 0, "first pass")
        m.ok(["deliver", "alice", "bob"], make_message(t.rng, 100))
        m.ok(["message", "flag", "user.bob", "1,2", "+\\Flagged work"])
        m.ok(["message", "flag", "user.alice", "1", "+\\Deleted"])
        m.ok(["message", "expunge", "user.alice"])
        m.ok(["mailbox", "create", "user.alice.Lists"])
        m.ok(["deliver", "alice+Lists"], make_message(t.rng, 101))
        m.ok(["mailbox", "rename", "user.alice.Work", "user.alice.Jobs"])
        m.ok(["mailbox", "create", "user.bob.Tmp"])
        r = pair.sync("-r", "-1")
        t.eq(r.returncode, 0, f"pass 2: {r.stderr}")
        m.ok(["mailbox", "delete", "user.bob.Tmp"])
        m.ok(["user", "add", "--no-password", "carol"])
        m.ok(["deliver", "carol"], make_message(t.rng, 102))
        r = pair.sync("-r", "-1")
        t.eq(r.returncode, 0, f"pass 3: {r.stderr}")
        equal("after rolling passes")
        names = [l.split("\t")[0] for l in pair.replica.ok(["mailbox", "list"]).splitlines()]
        t.check("user.alice.Jobs" in names and "user.alice.Work" not in names, f"rename replicated: {names}")
        t.check("user.bob.Tmp" not in names, "delete replicated")
        jobs_m = [l.split("\t")[4] for l in m.ok(["mailbox", "list", "alice"]).splitlines() if "Jobs" in l]
        jobs_r = [l.split("\t")[4] for l in pair.replica.ok(["mailbox", "list", "alice"]).splitlines() if "Jobs" in l]
        t.eq(jobs_r, jobs_m, "uniqueid kept across the rename")
        m.ok(["user", "del", "carol"])
        t.eq(pair.sync("-r", "-1").returncode, 0, "pass 4")
        t.eq(pair.replica.run(["mailbox", "list", "carol"]).returncode, 1, "user delete replicated")
        equal("after user delete")

    with t.case("the same log replayed twice changes nothing"):
        m.ok(["deliver", "alice"], make_message(t.rng, 200))
        m.ok(["message", "flag", "user.alice", "2", "+\\Answered"])
        log = os.path.join(m.dir, "conf", "sync", "repl1", "log")
        saved = os.path.join(pair.root, "saved-log")
        with open(log) as f, open(saved, "w") as g:
            g.write(f.read())
        t.eq(pair.sync("-f", saved).returncode, 0, "first replay")
        before = pair.replica.ok(["mailbox", "list"])
        t.eq(pair.sync("-f", saved).returncode, 0, "second replay")
        t.eq(pair.replica.ok(["mailbox", "list"]), before, "replica unchanged by the second replay")
        t.eq(pair.sync("-r", "-1").returncode, 0, "consume the log")
        equal("after replays")

    with t.case("replica down at start: the rolling client waits and catches up"):
        pair.stop_replica()
        for i in range(5):
            m.ok(["deliver", "bob"], make_message(t.rng, 300 + i))
        errlog = os.path.join(pair.root, "rolling.err")
        proc = subprocess.Popen([TANDEM, "-C", m.conf, "sync", "-n", "repl1", "-r"], stdout=subprocess.DEVNULL,
                                stderr=open(errlog, "w"))
        # it tried, failed, and tries again (two failed connects logged)
        wait_for(lambda: open(errlog).read().count("event=sync_connect_fail") >= 2 or proc.poll() is not None,
                 60, "two failed connects of the rolling client")
        t.check(proc.poll() is None, "client keeps retrying while the replica is down")
        t.check(open(errlog).read().count("event=sync_connect_fail") >= 2, "its retries are logged")
        pair.start_replica()
        deadline = time.time() + 30
        ok = False
        while time.time() < deadline and not ok:
            time.sleep(0.5)
            ok = pair.compare()[0] == 0
        t.check(ok, "caught up after the replica came back")
        open(os.path.join(pair.root, "shutdown"), "w").close()
        try:
            t.eq(proc.wait(15), 0, "rolling client stops on the shutdown file")
        except subprocess.TimeoutExpired:
            proc.kill()
            t.check(False, "rolling client did not stop")
        equal("after catching up")

    with t.case("sync client killed mid-batch, restarted: converges"):
        for i in range(150):
            m.ok(["deliver", t.rng.choice(["alice", "bob", "alice+Lists"])], make_message(t.rng, 400 + i, 20000))
        run = os.path.join(m.dir, "conf", "sync", "repl1", "log-run")
        proc = subprocess.Popen([TANDEM, "-C", m.conf, "sync", "-n", "repl1", "-r", "-1"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # kill it as soon as it has taken the log (mid-work: 150 messages
        # take far longer than the poll)
        deadline = time.time() + 10
        while not os.path.exists(run) and time.time() < deadline and proc.poll() is None:
            time.sleep(0.0005)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        t.check(os.path.exists(run), "log-run kept after the kill")
        r = pair.sync("-r", "-1")
        t.eq(r.returncode, 0, f"restarted pass: {r.stderr[-500:]}")
        t.check(not os.path.exists(run), "log-run consumed")
        equal("after the kill")

    with t.case("annotations: on messages (in the annotation CRC) and on mailboxes"):
        m.ok(["message", "annotate", "user.alice", "2", "/comment", "alice", "private note"])
        m.ok(["message", "annotate", "user.alice", "2", "/comment", "", "shared\r\nmulti-line"])
        m.ok(["message", "annotate", "user.alice", "0", "/comment", "", "Alice's inbox"])
        r = pair.sync("-r", "-1")
        t.eq(r.returncode, 0, f"pass: {r.stderr[-400:]}")
        equal("after annotations")
        dump = pair.replica.ok(["dump", "user.alice"])
        t.check("private note" in dump and "Alice's inbox" in dump, "replica holds both annotations")
        m.ok(["message", "annotate", "user.alice", "2", "/comment", "alice", ""])
        m.ok(["message", "annotate", "user.alice", "0", "/comment", "", ""])
        t.eq(pair.sync("-r", "-1").returncode, 0, "pass after removing")
        dump = pair.replica.ok(["dump", "user.alice"])
        t.check("private note" not in dump and "Alice's inbox" not in dump, "removals replicated")
        equal("after removing annotations")

    with t.case("compare --bodies finds a damaged message file on the replica"):
        r = m.run(["compare", "-n", "repl1", "-o", "--bodies", "alice"])
        t.eq(r.returncode, 0, f"clean: {r.stdout}")
        uid, guid = [(l.split("\t")[0], l.split("\t")[5]) for l in pair.replica.ok(["message", "list", "user.alice"]).splitlines()][0]
        path = os.path.join(pair.replica.dir, "spool", "user", "alice", "blobs", guid[:2], guid)
        good = open(path, "rb").read()
        with open(path, "wb") as f:
            f.write(good[:-3] + b"XYZ")
        r = m.run(["compare", "-n", "repl1", "-o", "--bodies", "alice"])
        t.eq(r.returncode, 1, "difference found")
        t.check(f"uid={uid} guid={guid} difference=replica_body damaged" in r.stdout, r.stdout)
        with open(path, "wb") as f:
            f.write(good)
        t.eq(m.run(["compare", "-n", "repl1", "-o", "--bodies", "alice"]).returncode, 0, "clean again")

    with t.case("randomized workload"):
        boxes = ["user.alice", "user.bob", "user.alice.Lists", "user.alice.Jobs"]
        for i in range(80):
            op = t.rng.random()
            box = t.rng.choice(boxes)
            user = box.split(".")[1]
            folder = box.split(".", 2)[2] if box.count(".") > 1 else ""
            if op < 0.5:
                m.ok(["deliver", user + ("+" + folder if folder else "")], make_message(t.rng, 1000 + i))
            elif op < 0.8:
                uid = str(t.rng.randint(1, 40))
                m.run(["message", "flag", box, uid, t.rng.choice(["+\\Seen", "-\\Seen", "+$x", "=\\Flagged"])])
            else:
                uid = str(t.rng.randint(1, 40))
                m.run(["message", "expunge", box, uid])
            if t.rng.random() < 0.1:
                t.eq(pair.sync("-r", "-1").returncode, 0, "intermediate pass")
        t.eq(pair.sync("-r", "-1").returncode, 0, "final pass")
        equal(f"after the random workload (seed {t.seed})")
finally:
    pair.cleanup()
t.done()
