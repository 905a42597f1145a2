"""test_sync_pipeline.py: pipelined APPLY MAILBOX on the csync port
(issue 12): commands that arrive together are applied as one batch (their
bodies made durable by one syncfs, one transaction per run of one owner's
mailboxes) and answered in order; a refused mailbox inside a batch
changes nothing and leaves the others applied; an incremental update of a
mailbox that is not there is refused (the part before it was refused).
Then the replica session killed inside a batched flush (after the
batch's syncfs and the first owner's commit, TANDEM_TEST_CRASH_BATCH):
no answer of the batch went out before the kill, what was committed is
whole (tandem check), the answers of an earlier batch are all true, and
a master's `sync -A` against such a replica converges once it is
restarted. Then killed before a batch's first syncfs
(TANDEM_TEST_CRASH_BATCH_FLUSH), its new owners' directories and users.db
rows placed without their own syncs: with what a power cut could also
have lost of them taken away (a directory without its meta.db, a rename
lost with its build left behind, the users.db rows), the next `sync -A`
converges."""
import hashlib
import os
import shutil
import re

from tlib import CsyncConn as Conn, Daemon, Instance, Pair, Suite, allow_replication, make_message

t = Suite("sync-pipeline")


def body(i):
    return (b"From: a@example.com\r\nSubject: pipelined " + str(i).encode() +
            b"\r\n\r\nbody " + str(i).encode() + b"\r\n")


def guid(b):
    return hashlib.sha1(b).hexdigest().encode()


def apply_message(bodies):
    return (b"APPLY MESSAGE (" + b" ".join(b"%{default " + guid(b) + b" " + str(len(b)).encode() + b"}\r\n" + b
                                           for b in bodies) + b")\r\n")


def apply_mailbox(name, uniqueid, bodies, since=None):
    recs = b" ".join(b"%(UID " + str(i + 1).encode() + b" MODSEQ " + str(i + 2).encode() +
                     b" LAST_UPDATED 1700000000 FLAGS () INTERNALDATE 1700000000 SIZE " +
                     str(len(b)).encode() + b" GUID " + guid(b) + b")" for i, b in enumerate(bodies))
    hms = len(bodies) + 1
    sincekv = b"" if since is None else b" SINCE_MODSEQ " + str(since).encode() + b" SINCE_CRC 0 SINCE_CRC_ANNOT 0"
    return (b"APPLY MAILBOX %(UNIQUEID " + uniqueid + b" MBOXNAME " + name + b" SYNC_CRC 0 LAST_UID " +
            str(len(bodies)).encode() + b" HIGHESTMODSEQ " + str(hms).encode() +
            b" RECENTUID 0 RECENTTIME 0 LAST_APPENDDATE 0 POP3_LAST_LOGIN 0 POP3_SHOW_AFTER 0"
            b" UIDVALIDITY 1700000000 PARTITION default ACL \"\" OPTIONS P" + sincekv +
            b" RECORD (" + recs + b"))\r\n")


def uid(i):
    return b"pipelineuniqueid%08d" % i


def answers(c, n):
    """n answer lines (data lines skipped), or fewer when the connection ends."""
    out = []
    try:
        while len(out) < n:
            line = c.line()
            if not line.startswith(b"*"):
                out.append(line)
    except (EOFError, ConnectionError, OSError):
        pass
    return out


def replica_instance():
    inst = Instance()
    allow_replication(inst)
    return inst


def with_env(env, start):
    """start() with the environment variables env set, for the daemons it forks (test hooks)."""
    os.environ.update(env)
    try:
        return start()
    finally:
        for k in env:
            os.environ.pop(k)


def count(inst, name):
    if name not in [line.split("\t")[0] for line in inst.ok(["mailbox", "list"]).splitlines()]:
        return None
    return len(inst.messages(name))


# ---- batches on the wire ----------------------------------------------------------------------
inst = replica_instance()
d = Daemon(inst, services=("sync",))
try:
    with t.case("commands sent together: one batch, answered in order, a refused one alone"):
        c = Conn(d.port["sync"])
        t.eq(c.auth("repl", "replpw"), b"OK Success (no protection)", "login")
        bs = [body(i) for i in range(6)]
        missing = body(99)
        wire = (apply_message(bs) +
                apply_mailbox(b"user.ann", uid(1), bs[0:2]) +
                apply_mailbox(b"user.ann.Bad", uid(2), [missing]) +    # body never sent: refused
                apply_mailbox(b"user.ann.Sub", uid(3), bs[2:3]) +      # same owner, after the refusal
                apply_mailbox(b"user.bob", uid(4), bs[3:5]) +
                apply_mailbox(b"user.cat.New", uid(5), bs[5:6], since=7) +  # incremental, no such mailbox
                apply_mailbox(b"user.cat", uid(6), bs[5:6]) +
                b"NOOP\r\n")
        c.s.sendall(wire)
        got = answers(c, 8)
        t.eq(len(got), 8, f"eight answers: {got}")
        t.eq(got[0], b"OK success", "APPLY MESSAGE")
        t.eq(got[1], b"OK success", "user.ann")
        t.check(got[2].startswith(b"NO IMAP_PROTOCOL_ERROR"), f"user.ann.Bad refused: {got[2]}")
        t.eq(got[3], b"OK success", "user.ann.Sub, after a refused mailbox of the same owner")
        t.eq(got[4], b"OK success", "user.bob")
        t.check(got[5].startswith(b"NO IMAP_SYNC_CHANGED"), f"an update since a state that is not here: {got[5]}")
        t.eq(got[6], b"OK success", "user.cat")
        t.eq(got[7], b"OK Noop completed", "NOOP answered after the batch")
        t.eq(count(inst, "user.ann"), 2, "user.ann applied")
        t.eq(count(inst, "user.ann.Sub"), 1, "user.ann.Sub applied")
        t.eq(count(inst, "user.bob"), 2, "user.bob applied")
        t.eq(count(inst, "user.cat"), 1, "user.cat applied")
        t.eq(count(inst, "user.ann.Bad"), None, "the refused mailbox was not created")
        t.eq(count(inst, "user.cat.New"), None, "nor the incremental one")
        log = d.log()
        m = re.findall(r"event=apply_batch session=\S+ commands=(\d+) mailboxes=(\d+)", log)
        t.check(any(int(mb) >= 4 for _, mb in m), f"one batch of the mailboxes: {m}")
        chk = inst.run(["check"])
        t.eq(chk.returncode, 0, f"the replica checks clean: {chk.stdout}{chk.stderr}")

    with t.case("GET USER and RESTART inside a batch: one batch for two users, every answer in order"):
        c = Conn(d.port["sync"])
        t.eq(c.auth("repl", "replpw"), b"OK Success (no protection)", "login")
        b0, b1 = body(300), body(301)
        # the streaming client's order: the next user's GET USER, this user's parts, RESTART
        wire = (b"GET USER fay\r\n" +                       # nothing waits: answered at once
                apply_message([b0]) + apply_mailbox(b"user.fay", uid(30), [b0]) + b"RESTART\r\n" +
                b"GET USER gus\r\n" +                       # joins: nothing of the batch is gus's
                b"GET USER ann\r\n" +                       # joins: ann's state as it is (data lines)
                apply_message([b1]) + apply_mailbox(b"user.gus", uid(31), [b1]) + b"RESTART\r\n" +
                b"GET MAILBOXES (user.fay)\r\n" +           # fay is written by the batch: ends it
                b"NOOP\r\n")
        c.s.sendall(wire)
        lines = []
        try:
            while sum(1 for x in lines if not x.startswith(b"*")) < 11:
                lines.append(c.line())
        except (EOFError, ConnectionError, OSError):
            pass
        shown = [re.sub(rb"^\* (\w+) .*MBOXNAME (\S+).*", rb"* \1 \2", x) for x in lines]
        t.eq(shown, [b"OK success",                                      # GET USER fay
                     b"OK success", b"OK success", b"OK Restarting",     # fay's parts, RESTART
                     b"OK success",                                      # GET USER gus
                     b"* MAILBOX user.ann", b"* MAILBOX user.ann.Sub", b"OK success",  # GET USER ann
                     b"OK success", b"OK success", b"OK Restarting",     # gus's parts, RESTART
                     b"* MAILBOX user.fay", b"OK success",               # after the batch's commit
                     b"OK Noop completed"], "answers in the order of the commands")
        m = re.findall(r"event=apply_batch session=\S+ commands=(\d+) mailboxes=(\d+)", d.log())
        t.check(("8", "2") in m, f"one batch of eight commands, fay's and gus's mailboxes: {m}")
        t.eq(count(inst, "user.fay"), 1, "user.fay applied")
        t.eq(count(inst, "user.gus"), 1, "user.gus applied")
        t.eq(os.listdir(os.path.join(inst.dir, "spool", "tmp", "sync")), [], "nothing left staged")

    with t.case("a command waiting for its answer is never held back: one at a time, each answered"):
        b = body(200)
        t.eq(c.cmd(apply_message([b]))[-1], b"OK success", "APPLY MESSAGE alone")
        t.eq(c.cmd(apply_mailbox(b"user.dan", uid(7), [b]))[-1], b"OK success", "APPLY MAILBOX alone")
        t.eq(count(inst, "user.dan"), 1, "applied")
        t.eq(c.cmd(b"RESTART")[-1], b"OK Restarting", "RESTART")
finally:
    d.stop()
    inst.cleanup()

# ---- killed inside a batched flush ------------------------------------------------------------
inst = replica_instance()
d = with_env({"TANDEM_TEST_CRASH_BATCH": "user.gil"}, lambda: Daemon(inst, services=("sync",)))
try:
    with t.case("the session killed inside a batched flush: no answer of it went out, the store is whole"):
        c = Conn(d.port["sync"])
        t.eq(c.auth("repl", "replpw"), b"OK Success (no protection)", "login")
        bs = [body(300 + i) for i in range(8)]
        # a first batch, answered in full
        c.s.sendall(apply_message(bs[0:2]) + apply_mailbox(b"user.eve", uid(10), bs[0:1]) +
                    apply_mailbox(b"user.eve.Two", uid(11), bs[1:2]))
        first = answers(c, 3)
        t.eq(first, [b"OK success"] * 3, "the first batch answered")
        # the second: eve's and fay's mailboxes commit, the kill comes before gil's transaction
        c.s.sendall(apply_message(bs[2:8]) + apply_mailbox(b"user.eve.Three", uid(12), bs[2:4]) +
                    apply_mailbox(b"user.fay", uid(13), bs[4:5]) + apply_mailbox(b"user.gil", uid(14), bs[5:7]) +
                    apply_mailbox(b"user.hal", uid(15), bs[7:8]) + b"NOOP\r\n")
        second = answers(c, 6)
        t.eq(second, [], f"no answer of the killed batch went out: {second}")
        t.eq(count(inst, "user.eve"), 1, "an answered mailbox is there")
        t.eq(count(inst, "user.eve.Two"), 1, "every answered mailbox is there")
        for name in ("user.eve.Three", "user.fay", "user.gil", "user.hal"):
            n = count(inst, name)
            t.check(n in (None, {"user.eve.Three": 2, "user.fay": 1, "user.gil": 2, "user.hal": 1}[name]),
                    f"{name} whole or absent ({n})")
        t.eq(count(inst, "user.gil"), None, "the mailbox the session died before is absent")
        t.eq(count(inst, "user.hal"), None, "and the one after it")
        t.eq(count(inst, "user.fay"), 1, "the owner committed before the kill is there (flushed with the batch)")
        chk = inst.run(["check"])
        t.eq(chk.returncode, 0, f"the replica checks clean: {chk.stdout}{chk.stderr}")
finally:
    d.stop()
    inst.cleanup()

# ---- killed inside a flush running on the flush thread ------------------------------------------
# Batches of two commands (TANDEM_TEST_APPLY_BATCH_MAX): each full batch is
# flushed on the session's flush thread while the next commands are read
# and queued behind it; the kill comes on that thread, inside the second
# batch's flush, after fay's commit and before gil's.
inst = replica_instance()
d = with_env({"TANDEM_TEST_CRASH_BATCH": "user.gil", "TANDEM_TEST_APPLY_BATCH_MAX": "2"},
             lambda: Daemon(inst, services=("sync",)))
try:
    with t.case("the session killed inside a flush on the flush thread: only the earlier flush answered"):
        c = Conn(d.port["sync"])
        t.eq(c.auth("repl", "replpw"), b"OK Success (no protection)", "login")
        bs = [body(400 + i) for i in range(4)]
        c.s.sendall(apply_message(bs) + apply_mailbox(b"user.eve", uid(20), bs[0:1]) +
                    apply_mailbox(b"user.fay", uid(21), bs[1:2]) + apply_mailbox(b"user.gil", uid(22), bs[2:3]) +
                    apply_mailbox(b"user.hal", uid(23), bs[3:4]) + b"NOOP\r\n")
        got = answers(c, 6)
        t.eq(got, [b"OK success"] * 2, f"the first flush's answers only (APPLY MESSAGE, user.eve): {got}")
        t.eq(count(inst, "user.eve"), 1, "the answered mailbox is there")
        t.eq(count(inst, "user.gil"), None, "the mailbox the session died before is absent")
        t.eq(count(inst, "user.hal"), None, "and the one queued after it")
        t.check(count(inst, "user.fay") in (None, 1), "user.fay whole or absent (committed, never answered)")
        chk = inst.run(["check"])
        t.eq(chk.returncode, 0, f"the replica checks clean: {chk.stdout}{chk.stderr}")
finally:
    d.stop()
    inst.cleanup()

# ---- a master's sync against such a replica ----------------------------------------------------
pair = with_env({"TANDEM_TEST_CRASH_BATCH": "user.u3.F1"}, Pair)
m, r = pair.master, pair.replica
try:
    with t.case("sync -A into a replica that dies inside a batched flush, then again: equal"):
        n = 0
        for u in range(6):
            user = f"u{u}"
            m.ok(["user", "add", "--no-password", user])
            for f in range(3):
                m.ok(["mailbox", "create", f"user.{user}.F{f}"])
            for f in ["", "+F0", "+F1", "+F2"]:
                for _ in range(3):
                    m.ok(["deliver", user + f], make_message(t.rng, n, 2000 + 97 * n))
                    n += 1
        res = pair.sync("-A")
        t.check(res.returncode != 0, f"the first sync fails (the session died): {res.returncode}")
        chk = r.run(["check"])
        t.eq(chk.returncode, 0, f"the replica checks clean after the kill: {chk.stdout}{chk.stderr}")
        pair.stop_replica()
        pair.start_replica()   # without the hook
        res = pair.sync("-A")
        t.eq(res.returncode, 0, f"the second sync: {res.stdout}{res.stderr}")
        rc, out = pair.compare()
        t.eq(rc, 0, f"master == replica: {out}")
finally:
    pair.cleanup()

# ---- killed before a batch's syncfs: its new owners not yet durable -------------------------------
pair = with_env({"TANDEM_TEST_CRASH_BATCH_FLUSH": "user.n3.F1"}, Pair)
m, r = pair.master, pair.replica
try:
    with t.case("new owners placed, the replica killed before the batch's syncfs, their writes lost: sync -A converges"):
        import sqlite3
        import subprocess
        n = 0
        for u in range(6):
            user = f"n{u}"
            m.ok(["user", "add", "--no-password", user])
            for f in range(2):
                m.ok(["mailbox", "create", f"user.{user}.F{f}"])
            for f in ["", "+F0", "+F1"]:
                for _ in range(2):
                    m.ok(["deliver", user + f], make_message(t.rng, n, 1500 + 89 * n))
                    n += 1
        res = pair.sync("-A")
        t.check(res.returncode != 0, f"the first sync fails (the session died): {res.returncode}")
        pair.stop_replica()
        users_dir = os.path.join(r.dir, "spool", "user")
        lost = []   # owners placed by the killed batch: nothing committed in them
        for name in sorted(os.listdir(users_dir)):
            db = sqlite3.connect(os.path.join(users_dir, name, "meta.db"))
            if db.execute("SELECT count(*) FROM mailboxes").fetchone()[0] == 0:
                lost.append(name)
            db.close()
        t.check("n3" in lost and len(lost) >= 2, f"the killed batch made new owners, n3 among them: {lost}")
        # n3's directory lost its entries; the others' renames lost, their builds left by a dead process
        for f in os.listdir(os.path.join(users_dir, "n3")):
            p = os.path.join(users_dir, "n3", f)
            shutil.rmtree(p) if os.path.isdir(p) else os.unlink(p)
        child = subprocess.Popen(["true"])
        child.wait()
        for i, name in enumerate(x for x in lost if x != "n3"):
            os.rename(os.path.join(users_dir, name),
                      os.path.join(r.dir, "spool", "tmp", f"newowner-{child.pid}-{i + 1}"))
        db = sqlite3.connect(os.path.join(r.dir, "conf", "users.db"))
        db.executemany("DELETE FROM users WHERE userid = ?", [(x,) for x in lost])
        db.commit()
        db.close()
        pair.start_replica()   # without the hook
        res = pair.sync("-A")
        t.eq(res.returncode, 0, f"the second sync: {res.stdout}{res.stderr}")
        rc, out = pair.compare()
        t.eq(rc, 0, f"master == replica: {out}")
        db = sqlite3.connect(os.path.join(r.dir, "conf", "users.db"))
        have = {row[0] for row in db.execute("SELECT userid FROM users")}
        db.close()
        t.check(all(f"n{u}" in have for u in range(6)), f"every user's users.db row is back: {sorted(have)}")
        def gone(name):   # newowner-<pid>-...: its process is gone
            try:
                os.kill(int(name.split("-")[1]), 0)
                return False
            except ProcessLookupError:
                return True
        # (a live replica session's spares made ahead may be there: its own)
        left = [x for x in os.listdir(os.path.join(r.dir, "spool", "tmp")) if x.startswith("newowner-") and gone(x)]
        t.eq(left, [], "the dead processes' builds and spares removed")
        chk = r.run(["check"])
        t.eq(chk.returncode, 0, f"the replica checks clean: {chk.stdout}{chk.stderr}")
finally:
    pair.cleanup()

t.done()
