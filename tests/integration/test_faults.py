"""test_faults.py: fault injection on a running master + replica pair
(tandemd on both; the master's own rolling sync client replicates).

1. SIGKILL at random moments during a random workload (LMTP deliveries,
   IMAP flag changes, expunges, moves, creates, renames) of the master's
   tandemd (whole process group), of the replica's tandemd, or of the
   master's sync client only; restarted; afterwards the channel settles,
   `tandem compare --bodies` is equal, every message answered 250 is on
   both sides and both stores check clean. FAULTS_SEEDS seeds per kind
   (default 3), each printed; FAULTS_RUN=kind:seed[,kind:seed] reruns
   exactly those runs (kind: master, replica, syncclient).
2. The replication connection cut (a relay thread drops it and refuses
   new ones) for a few seconds during deliveries, then restored.
3. The replica's disk (a tmpfs) full: replication fails and is retried,
   deliveries to the master go on; freed: it catches up, nothing lost.
   Also: a 300-message MOVE killed half-way (each message must end up in
   exactly one of the two mailboxes).
4. One user's database corrupted on the replica: recorded as failed and
   listed by `tandem status`, the rest of the channel replicates past it;
   restored from a copy: `tandem sync -m` replicates it.
"""
import imaplib
import os
import random
import re
import shutil
import subprocess
import tempfile
import threading
import time

from faultlib import PASSWORD, Cluster, Workload, duplicates, missing
from tlib import Suite, make_message

t = Suite("faults")
SEEDS = int(os.environ.get("FAULTS_SEEDS", "3"))
WORKLOAD_S = float(os.environ.get("FAULTS_SECONDS", "4"))
SYNCCLIENT_KILLS = 2	# tandemd's restart backoff doubles per kill: 2 s, 4 s, ...


def final_checks(c, w, what):
    """The end-of-run checks shared by every case."""
    ok, secs, out = c.settle()
    t.check(ok, f"{what}: channel settled (nothing pending, no failed mailbox) and compare --bodies equal"
                f" (after {secs:.1f}s): {out[-1500:]}\n  status: {c.status()}")
    miss_m, miss_r = missing(c, w.acked, w.doomed)
    t.eq(miss_m[:10], [], f"{what}: acknowledged messages missing on the master ({len(miss_m)})")
    t.eq(miss_r[:10], [], f"{what}: acknowledged messages missing on the replica ({len(miss_r)})")
    t.eq(duplicates(c.master, c.users), [], f"{what}: messages duplicated on the master")
    t.eq(duplicates(c.replica, c.users), [], f"{what}: messages duplicated on the replica")
    for name, inst in (("master", c.master), ("replica", c.replica)):
        r = inst.run(["check", "--bodies"])
        t.eq(r.returncode, 0, f"{what}: {name} store checks clean: {r.stdout[-800:]}{r.stderr[-800:]}")
    master = (c.master, c.master_node.port["imap"]) if c.master_node.alive() else c.master
    ok = t.imap_equal(master, c.replica, what, passwords={u: PASSWORD for u in c.users}) and ok
    return ok


def killer(c, kind, rng, stop, record):
    """Kills `kind` at random moments until stop is set; restarts it."""
    try:
        while not stop.wait(rng.uniform(0.1, 0.7)):
            if kind == "master":
                c.master_node.kill9()
                record.append("master")
                stop.wait(rng.uniform(0.0, 0.6))
                c.master_node.start()
            elif kind == "replica":
                c.replica_node.kill9()
                record.append("replica")
                stop.wait(rng.uniform(0.0, 1.0))
                c.replica_node.start()
            else:
                if len(record) >= SYNCCLIENT_KILLS:
                    continue
                pid = c.master_node.sync_client_pid(c.channel)
                if pid:
                    os.kill(pid, 9)
                    record.append(f"syncclient:{pid}")
    except Exception as e:	# a restart that fails is a finding: keep it for the checks
        record.append(f"error: {e!r}")


def kill_run(kind, seed):
    rng = random.Random(seed)
    c = Cluster()
    w = Workload(c, rng)
    stop = threading.Event()
    record = []
    th = threading.Thread(target=killer, args=(c, kind, random.Random(seed * 7919 + 1), stop, record))
    try:
        th.start()
        t0 = time.time()
        while time.time() - t0 < WORKLOAD_S:
            w.step()
        stop.set()
        th.join(30)
        w.close()
        errors = [r for r in record if r.startswith("error")]
        t.eq(errors, [], f"{kind} seed {seed}: restarts")
        for node in (c.master_node, c.replica_node):
            if not node.alive():
                node.start()
        print(f"  {kind} seed {seed}: {len(record)} kills, ops {w.stats}, {len(w.acked)} acknowledged,"
              f" {w.errors} failed ops")
        t.check(len(record) > 0, f"{kind} seed {seed}: something was killed")
        if kind == "syncclient":
            exits = c.master_node.log().count("event=sync_client_exit")
            t.check(exits >= len(record), f"tandemd saw {exits} sync client exits for {len(record)} kills")
        if not final_checks(c, w, f"{kind} seed {seed}"):
            print(f"  REPRODUCE: FAULTS_RUN={kind}:{seed} python3 tests/integration/test_faults.py")
            print("  master log tail:\n" + c.master_node.log()[-3000:])
            print("  replica log tail:\n" + c.replica_node.log()[-2000:])
    finally:
        stop.set()
        th.join(30)
        c.cleanup()


def _children(pid):
    r = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return {int(x) for x in r.stdout.split()}


def _syscw(pid):
    """The write system calls a process has made (/proc/<pid>/io), or None."""
    try:
        for line in open(f"/proc/{pid}/io"):
            if line.startswith("syscw:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def move_killed_halfway(target="INBOX.Box", delays=(0, 0, 0.005, 0.02, 0.05, 0.1)):
    """A 300-message UID MOVE whose tandemd is killed mid-way: once the
    IMAP session has begun writing (its write count rose after the
    command was sent) and before the MOVE was answered. Each message must
    then be in exactly one place, and all or none moved. The target is
    another mailbox, or INBOX itself (RFC 6851 allows it: new UIDs, the old
    ones expunged; a kill between the copy and the expunge once left
    messages twice). Each attempt kills at another delay after the first
    write (a MOVE done message by message would be caught half-way by the
    longer ones); a MOVE that finished before the kill is moved back (or
    simply repeated) for the next attempt; at least one kill must land
    before the reply."""
    c = Cluster(users=("alice",))
    same = target == "INBOX"
    try:
        rng = random.Random(t.seed)
        for i in range(300):
            c.master.ok(["deliver", "alice"], make_message(rng, i, 2000))
        if not same:
            c.master.ok(["mailbox", "create", "user.alice." + target[len("INBOX."):]])
        landed = False
        for attempt, delay in enumerate(delays):
            old_uids = {row[0] for row in c.master.messages("user.alice")}
            conn = imaplib.IMAP4("127.0.0.1", c.master_node.port["imap"], timeout=30)
            conn.login("alice", "pw")
            conn.select("INBOX")
            # the process serving it (a new one, or an idle one reused):
            # its connect line names the client's port
            cport = conn.sock.getsockname()[1]
            found = re.findall(rf"\[(\d+)\] level=info event=connect service=imap session=\S+ "
                               rf"peer=127\.0\.0\.1:{cport}\b", c.master_node.log())
            session = sorted({int(p) for p in found} & _children(c.master_node.proc.pid))
            t.eq(len(session), 1, f"one session process: {session}")
            if len(session) != 1:
                break
            spid = session[0]
            base = _syscw(spid)
            tag = conn._new_tag()
            conn.send(tag + f" UID MOVE 1:* {target}\r\n".encode())
            t0 = time.time()
            while time.time() - t0 < 60:
                w = _syscw(spid)
                if w is None or w > base:
                    break
            time.sleep(delay)
            c.master_node.kill9()
            t.eq(c.master_node.proc.returncode, -9, "tandemd died of the SIGKILL")
            got = b""
            conn.sock.settimeout(5)
            try:
                while True:
                    chunk = conn.sock.recv(65536)
                    if not chunk:
                        break
                    got += chunk
            except OSError:
                pass
            rows = c.master.messages("user.alice")
            if same:
                inbox, box = len([r for r in rows if r[0] in old_uids]), len([r for r in rows if r[0] not in old_uids])
            else:
                inbox, box = len(rows), len(c.master.messages("user.alice.Box"))
            dup = duplicates(c.master, ["alice"])
            answered = tag + b" OK" in got
            print(f"  attempt {attempt}: SIGKILL {delay * 1000:.0f} ms after the first write,"
                  f" {'after' if answered else 'before'} the MOVE's reply: "
                  f"{'old UIDs' if same else 'INBOX'} {inbox}, {'new UIDs' if same else 'Box'} {box},"
                  f" twice {len(dup)}")
            t.eq(inbox + box, 300, f"messages in INBOX + {target} after a MOVE killed half-way")
            t.eq(len(dup), 0, "messages stored twice after a MOVE killed half-way")
            t.check(inbox in (0, 300), f"all or nothing moved (one transaction): {inbox} stayed, {box} moved")
            c.master_node.start()
            landed = landed or not answered
            if same or not box:
                continue	# nothing to undo: the next attempt moves (or renumbers) again
            # moved: everything back for the next attempt
            im = imaplib.IMAP4("127.0.0.1", c.master_node.port["imap"], timeout=30)
            im.login("alice", "pw")
            im.select("INBOX.Box")
            typ, _ = im.uid("MOVE", "1:*", "INBOX")
            t.eq(typ, "OK", "moved back for another try")
            im.logout()
        t.check(landed, f"a SIGKILL landed between the MOVE's first write and its reply in {len(delays)} tries")
    finally:
        c.cleanup()


runs = []
if os.environ.get("FAULTS_RUN"):
    for item in os.environ["FAULTS_RUN"].split(","):
        kind, seed = item.split(":")
        runs.append((kind, int(seed)))
else:
    for kind in ("master", "replica", "syncclient"):
        for k in range(SEEDS):
            runs.append((kind, t.seed + k))
for kind, seed in runs:
    with t.case(f"SIGKILL of the {kind} during a random workload, seed {seed}"):
        kill_run(kind, seed)
if os.environ.get("FAULTS_RUN"):
    t.done()

with t.case("a MOVE killed half-way leaves each message in one mailbox"):
    move_killed_halfway()

with t.case("a MOVE into its own mailbox killed half-way leaves each message once"):
    move_killed_halfway("INBOX")


with t.case("replication connection cut and restored during deliveries"):
    rng = random.Random(t.seed + 100)
    c = Cluster(proxy=True)
    w = Workload(c, rng)
    try:
        for _ in range(40):
            w.step()
        c.proxy.cut()
        cut_at = time.time()
        before = len(w.acked)
        pend = 0
        while time.time() - cut_at < rng.uniform(2.0, 4.0):
            w.step()
            pend = max(pend, c.pending())
        print(f"  cut for {time.time() - cut_at:.1f}s: {len(w.acked) - before} acknowledged meanwhile,"
              f" up to {pend} change-log lines pending")
        t.check(pend > 0, "changes were pending while cut")
        t.eq(c.proxy.lsock, None, "the relay refuses connections while cut")
        c.proxy.restore()
        for _ in range(20):
            w.step()
        w.close()
        final_checks(c, w, "after the cut")
        t.check(c.proxy.relayed >= 2, f"the sync client reconnected ({c.proxy.relayed} connections relayed)")
        t.check("event=sync_connect_fail" in c.master_node.log() or "sync_pass_fail" in c.master_node.log(),
                "the failure was logged")
    finally:
        c.cleanup()


def mount_tmpfs(size):
    root = tempfile.mkdtemp(prefix="tandem-faults-fs-")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", root], capture_output=True, text=True)
    if r.returncode != 0:
        os.rmdir(root)
        return None, r.stderr.strip()
    return root, None


root, why = mount_tmpfs("8m")
if root is None:
    t.skip("root" if os.geteuid() != 0 else "mount", f"replica disk full: cannot mount a tmpfs ({why}); needs root")
else:
    with t.case("replica disk full: retried, deliveries go on, caught up once freed"):
        rng = random.Random(t.seed + 200)
        c = Cluster(replica_root=root)
        w = Workload(c, rng)
        filler = os.path.join(root, "filler")
        try:
            for _ in range(20):
                w.deliver()
            t.check(c.settle()[0], "equal before the disk fills")
            st = os.statvfs(root)
            free = st.f_bavail * st.f_frsize
            with open(filler, "wb") as f:	# leave about 200 KB
                f.write(b"\0" * max(0, free - 200 * 1024))
            before = len(w.acked)
            failed = ""
            t0 = time.time()
            while time.time() - t0 < 20:
                for _ in range(3):
                    w.deliver()
                st = c.status()
                if "state=failed" in st or "sync_pass_fail" in c.master_node.log():
                    failed = st
                    if time.time() - t0 > 3:
                        break
                time.sleep(0.1)
            print(f"  {len(w.acked) - before} acknowledged while the replica's disk was full")
            print("  status: " + c.status().strip().replace("\n", "\n          "))
            logged = re.findall(r"event=sync_(?:pass|mailbox)_fail [^\n]*", c.master_node.log())
            if logged:
                print(f"  first failure logged: {logged[0][:300]}")
            t.check(bool(logged), "the master's sync client logged the failure")
            t.check(c.pending() > 0 or "state=failed" in c.status(),
                    f"tandem status reports the channel behind or failed: {c.status()}")
            t.check("No space" in c.master_node.log() + c.replica_node.log() or "nospace" in
                    c.master_node.log() + c.replica_node.log(), "the cause (no space) is named in a log")
            t.check(c.replica_node.alive(), "the replica's tandemd survived the full disk")
            t.eq(subprocess.run(["mountpoint", "-q", root]).returncode, 0, "still on the tmpfs")
            os.unlink(filler)
            w.close()	# no new changes: the retries alone must catch up
            final_checks(c, w, "after freeing the disk")
        finally:
            c.cleanup()
            subprocess.run(["umount", "-l", root])
            shutil.rmtree(root, ignore_errors=True)


with t.case("a user whose replica database is corrupt fails alone; sync -m repairs it once restored"):
    rng = random.Random(t.seed + 300)
    c = Cluster(users=("alice", "bob", "carol"))
    w = Workload(c, rng)
    try:
        for _ in range(30):
            w.step()
        t.check(c.settle()[0], "equal before the corruption")
        udir = os.path.join(c.replica.dir, "spool", "user", "carol")
        backup = os.path.join(c.root, "carol-backup")
        c.replica_node.kill9()
        shutil.copytree(udir, backup)
        for name in os.listdir(udir):
            if name.startswith("meta.db"):
                os.unlink(os.path.join(udir, name))
        with open(os.path.join(udir, "meta.db"), "wb") as f:
            f.write(b"this is not an SQLite database\n" * 200)
        c.replica_node.start()
        before = set(w.acked)
        carol = []
        for i in range(30):
            w.deliver()
            if i % 3 == 0:
                w.flags()
        w.close()
        for k in (w.acked - before):
            if k[0] == "carol":
                carol.append(k)
        t.check(len(carol) > 0, "some deliveries went to carol")
        deadline = time.time() + 20
        st = ""
        while time.time() < deadline:
            st = c.status()
            if "mailbox=user.carol state=failed" in st and "pending_lines=0" in st:
                break
            time.sleep(0.3)
        print("  status: " + st.strip().replace("\n", "\n          "))
        t.check("mailbox=user.carol state=failed" in st, f"tandem status lists user.carol as failed: {st}")
        t.check("pending_lines=0" in st, f"the channel went past it: {st}")
        t.check("user.alice " not in st and "user.bob " not in st, f"only carol failed: {st}")
        rc, out = c.compare("alice", "bob")
        t.eq(rc, 0, f"alice and bob replicated past carol: {out[-1000:]}")
        rc, out = c.compare("carol")
        t.eq(rc, 1, "carol differs")
        t.check(c.replica_node.alive(), "the replica's tandemd survived the corrupt database")
        # the cause fixed: the database restored from the copy (it is behind)
        c.master_node.kill9()	# no rolling client: the hand-run sync does it
        c.replica_node.kill9()
        shutil.rmtree(udir)
        shutil.copytree(backup, udir)
        c.replica_node.start()
        names = [ln.split("\t")[0] for ln in c.master.ok(["mailbox", "list", "carol"]).splitlines()]
        r = c.master.run(["sync", "-n", c.channel, "-o", "-m"] + names)
        t.eq(r.returncode, 0, f"tandem sync -m {' '.join(names)}: {r.stderr[-800:]}")
        rc, out = c.compare("carol")
        t.eq(rc, 0, f"carol equal after sync -m: {out[-1000:]}")
        st = c.status()
        t.check("state=failed" not in st, f"sync -m took carol off the failed list: {st}")
        c.master_node.start()
        for _ in range(5):
            w.deliver()
        w.close()
        final_checks(c, w, "after the repair")
    finally:
        c.cleanup()

t.done()
