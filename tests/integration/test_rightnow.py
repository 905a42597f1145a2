"""test_rightnow.py: synchronous replication (sync_rightnow_channel).

With the option on, a change's acknowledgement goes out only once the
channel's replica has it, so each check below reads the replica right after
the LMTP 250 or the IMAP OK, with no waiting or polling:
(a) master tandemd + replica tandemd: each LMTP delivery and each IMAP
    APPEND is on the replica when acknowledged, also with 4 concurrent LMTP
    connections (20 deliveries); admin commands (user add/delete) too; a
    sharded channel (each shard's client answers its own waiters);
(b) the replica stopped (and one that never answers, for the timeout):
    LMTP still answers 250 (within a generous bound),
    the master logs one event=rightnow_timeout or rightnow_refused line with
    channel, user and mailbox, `tandem status` counts it, and once the
    replica is back the rolling client replicates the mail (master ==
    replica);
(c) a real Cyrus 3.6 replica as the rightnow channel's: after the LMTP 250
    the message is already in Cyrus (its own IMAP says so).
"""
import imaplib
import os
import re
import smtplib
import tempfile
import threading
import time

import cyrus
from tlib import allow_replication, Daemon, Instance, Pair, Suite, free_port, make_message, sha1, wait_equal

t = Suite("rightnow")
# sync_rightnow_timeout is 10s where the replica is up: a pass slowed down by a loaded test machine
# must not turn into a timeout (the checks read the replica right after the ack, with no retry)
FROM = "s@example.net"


def lmtp_guid(msg):
    """The GUID of msg as tandem's LMTP stores it (Return-Path added)."""
    return sha1(f"Return-Path: <{FROM}>\r\n".encode() + msg)


def guids(inst, mailbox):
    return {row[5] for row in inst.messages(mailbox)}


def status_counts(inst, chan):
    out = inst.ok(["status", "-n", chan])
    m = re.search(r"rightnow=on ok=(\d+) timeouts=(\d+) refused=(\d+)", out)
    return (int(m.group(1)), int(m.group(2)), int(m.group(3))) if m else None, out


pair = Pair(extra_master="sync_rightnow_channel: repl1\nsync_rightnow_timeout: 10s\n"
                         "sync_reconnect_minwait: 200ms\nsync_reconnect_maxwait: 1s\n")
m, r = pair.master, pair.replica
d = None
try:
    m.ok(["user", "add", "alice"], "alicepw\n")
    m.ok(["user", "add", "--no-password", "bob"])
    d = Daemon(m, services=("lmtp", "imap"))
    ok, out = wait_equal(m, "repl1")
    t.check(ok, f"the users reached the replica: {out}")

    with t.case("(a) each LMTP 250 comes after the replica has the message"):
        for i in range(5):
            msg = make_message(t.rng, i)
            l = smtplib.LMTP("127.0.0.1", d.port["lmtp"])
            l.sendmail(FROM, ["alice"], msg)
            l.quit()
            t.check(lmtp_guid(msg) in guids(r, "user.alice"), f"delivery {i} is on the replica at its 250")
        t.check(lmtp_guid(msg) in guids(m, "user.alice"), "(the GUID is computed as the master stores it)")
        msg = make_message(t.rng, 50)
        l = smtplib.LMTP("127.0.0.1", d.port["lmtp"])
        l.sendmail(FROM, ["alice", "bob"], msg)
        l.quit()
        t.check(lmtp_guid(msg) in guids(r, "user.alice") and lmtp_guid(msg) in guids(r, "user.bob"),
                "a delivery to two recipients is on the replica for both at the 250s")

    with t.case("(a) each IMAP APPEND OK comes after the replica has the message"):
        im = imaplib.IMAP4("127.0.0.1", d.port["imap"])
        im.login("alice", "alicepw")
        t.eq(im.create("INBOX.Sent")[0], "OK", "CREATE")
        t.check(len(r.messages("user.alice.Sent")) == 0, "the new folder is on the replica at CREATE's OK")
        for i in range(3):
            msg = make_message(t.rng, 100 + i)
            t.eq(im.append("INBOX.Sent", "(\\Seen)", None, msg)[0], "OK", "APPEND")
            t.check(sha1(msg) in guids(r, "user.alice.Sent"), f"APPEND {i} is on the replica at its OK")
        im.select("INBOX.Sent")
        t.eq(im.uid("STORE", "1", "+FLAGS", "(\\Flagged)")[0], "OK", "STORE")
        t.check("\\Flagged" in r.messages("user.alice.Sent")[0][2], "the flag is on the replica at STORE's OK")
        im.logout()

    with t.case("(a) every other kind of IMAP change is on the replica at its OK"):
        im = imaplib.IMAP4("127.0.0.1", d.port["imap"])
        im.login("alice", "alicepw")

        def rmb():
            return {l.split("\t")[0]: l.split("\t") for l in r.ok(["mailbox", "list", "alice"]).splitlines()}

        def rrows(mb):
            return r.messages(mb) if mb in rmb() else []

        t.eq(im.create("INBOX.Keep")[0], "OK", "CREATE")
        t.eq(im.create("INBOX.Old")[0], "OK", "CREATE")
        im.select("INBOX.Sent")
        n_keep = len(rrows("user.alice.Keep"))
        t.eq(im.uid("COPY", "1", "INBOX.Keep")[0], "OK", "COPY")
        t.eq(len(rrows("user.alice.Keep")), n_keep + 1, "COPY: the copy is on the replica at the OK")
        t.eq(im.uid("MOVE", "2", "INBOX.Keep")[0], "OK", "MOVE")
        t.eq(len(rrows("user.alice.Keep")), n_keep + 2, "MOVE: the moved message is there at the OK")
        t.check(all(row[0] != 2 for row in rrows("user.alice.Sent")), "MOVE: and gone from its source there")
        t.eq(im.uid("STORE", "3", "+FLAGS", "(\\Deleted)")[0], "OK", "STORE \\Deleted")
        t.eq(im.expunge()[0], "OK", "EXPUNGE")
        t.check(all(row[0] != 3 for row in rrows("user.alice.Sent")), "EXPUNGE: expunged on the replica at the OK")
        im.close()
        t.eq(im.rename("INBOX.Old", "INBOX.New")[0], "OK", "RENAME")
        t.check("user.alice.New" in rmb() and "user.alice.Old" not in rmb(), "RENAME: renamed there at the OK")
        t.eq(im.delete("INBOX.New")[0], "OK", "DELETE")
        t.check("user.alice.New" not in rmb(), "DELETE: deleted there at the OK")
        t.eq(im.setacl("INBOX.Keep", "bob", "lr")[0], "OK", "SETACL")
        t.check(re.search(r"bob\s+lr\b", r.ok(["dump", "user.alice.Keep"])) is not None,
                "SETACL: the ACL is there at the OK")
        t.eq(im.subscribe("INBOX.Keep")[0], "OK", "SUBSCRIBE")
        typ, data = im.xatom("SETMETADATA", 'INBOX.Keep (/private/comment "kept")')
        t.eq(typ, "OK", "SETMETADATA")
        dump = r.ok(["dump", "user.alice.Keep"])
        t.check("kept" in dump, "SETMETADATA: the annotation is there at the OK")
        im.logout()

    with t.case("SIGKILL of the master right after a 250: the message is on the replica"):
        import signal
        msg = make_message(t.rng, 700)
        l = smtplib.LMTP("127.0.0.1", d.port["lmtp"])
        l.sendmail(FROM, ["alice"], msg)
        d.proc.send_signal(signal.SIGKILL)
        d.proc.wait()
        t.check(lmtp_guid(msg) in guids(r, "user.alice"), "the acknowledged message survived its master on the replica")
        # the same tandemd again (its config already names the ports)
        import subprocess
        from tlib import BIN
        d.proc = subprocess.Popen([os.path.join(BIN, "tandemd"), "-C", m.conf, "-f"],
                                  stdout=subprocess.DEVNULL, stderr=open(d.logfile, "a"))
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                smtplib.LMTP("127.0.0.1", d.port["lmtp"]).quit()
                break
            except OSError:
                time.sleep(0.1)

    with t.case("(a) 20 deliveries over 4 concurrent LMTP connections: each on the replica at its 250"):
        missing, errors = [], []

        def worker(k):
            try:
                l = smtplib.LMTP("127.0.0.1", d.port["lmtp"])
                for i in range(5):
                    msg = make_message(t.rng, 1000 + 10 * k + i)
                    l.sendmail(FROM, ["bob"], msg)
                    if lmtp_guid(msg) not in guids(r, "user.bob"):
                        missing.append((k, i))
                l.quit()
            except Exception as e:  # noqa: BLE001 (reported below)
                errors.append(repr(e))

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(120)
        t.eq(errors, [], "every delivery answered 250")
        t.eq(missing, [], "no delivery acknowledged before the replica had it")
        t.eq(len(r.messages("user.bob")), 21, "the 20 messages are on the replica")
        counts, st = status_counts(m, "repl1")
        t.check(counts is not None and counts[0] >= 30, f"tandem status counts the waits: {st}")
        log = d.log()
        t.check("event=rightnow_listen channel=repl1" in log, "the rolling client listens")
        t.eq([l for l in log.splitlines() if "event=rightnow_timeout" in l or "event=rightnow_refused" in l], [],
             "no wait timed out or was refused while the replica was up")

    with t.case("(b) the replica down: LMTP still answers 250, logged and counted, replicated later"):
        before, _ = status_counts(m, "repl1")
        pair.stop_replica()
        msg = make_message(t.rng, 500)
        t0 = time.time()
        l = smtplib.LMTP("127.0.0.1", d.port["lmtp"])
        l.sendmail(FROM, ["alice"], msg)
        l.quit()
        took = time.time() - t0
        t.check(took < 30, f"the 250 was not held forever ({took:.1f} s)")
        t.check(lmtp_guid(msg) not in guids(r, "user.alice"), "(the replica does not have it)")
        time.sleep(0.2)  # the session logs before it answers; the log file is written by then
        lines = [l for l in d.log().splitlines() if "event=rightnow_timeout" in l or "event=rightnow_refused" in l]
        t.eq(len(lines), 1, f"one line for the delivery: {lines}")
        t.check(lines and "channel=repl1" in lines[0] and "user=alice" in lines[0] and
                "mailbox=user.alice" in lines[0], f"with channel, user and mailbox: {lines}")
        after, st = status_counts(m, "repl1")
        t.check(after is not None and after[1] + after[2] == before[1] + before[2] + 1,
                f"tandem status counts it: {st}")
        t.check('last_cause="' in st, f"and says why: {st}")
        pair.start_replica()
        ok, out = wait_equal(m, "repl1", timeout=60)
        t.check(ok, f"the rolling client replicated it once the replica was back: {out}")
        t.check(lmtp_guid(msg) in guids(r, "user.alice"), "the message is on the replica")
        msg2 = make_message(t.rng, 501)
        l = smtplib.LMTP("127.0.0.1", d.port["lmtp"])
        l.sendmail(FROM, ["alice"], msg2)
        l.quit()
        t.check(lmtp_guid(msg2) in guids(r, "user.alice"), "synchronous again: the next 250 follows the replica")

    with t.case("admin changes wait too: tandem user add / mailbox create / user del"):
        m.ok(["user", "add", "--no-password", "dave"])
        t.eq(r.messages("user.dave"), [], "dave's INBOX is on the replica when user add exits")
        m.ok(["mailbox", "create", "user.dave.Work"])
        t.eq(r.messages("user.dave.Work"), [], "the folder is on the replica when mailbox create exits")
        m.ok(["user", "del", "dave"])
        t.check(r.run(["message", "list", "user.dave"]).returncode != 0,
                "dave is gone from the replica when user del exits")

    with t.case("a client that sends garbage on the rightnow socket is closed; the rest goes on"):
        import socket
        sock = os.path.join(m.dir, "config", "sync", "repl1", "rightnow.sock")
        conf = open(m.conf).read()
        cdir = re.search(r"^configdirectory:\s*(\S+)", conf, re.M).group(1)
        sock = os.path.join(cdir, "sync", "repl1", "rightnow.sock")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect(sock)
        s.sendall(b"HELLO there\n")
        t.eq(s.recv(100), b"", "closed without an answer")
        s.close()
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect(sock)
        s.sendall(b"WAIT 1 2 3\n")  # a file that is neither the log nor log-run: long done
        t.eq(s.recv(100), b"OK\n", "a WAIT for a position already replicated is answered at once")
        s.close()
        msg = make_message(t.rng, 600)
        l = smtplib.LMTP("127.0.0.1", d.port["lmtp"])
        l.sendmail(FROM, ["alice"], msg)
        l.quit()
        t.check(lmtp_guid(msg) in guids(r, "user.alice"), "deliveries stay synchronous")

    with t.case("the pair as IMAP clients see it"):
        ok, out = wait_equal(m, "repl1", timeout=60)
        t.check(ok, f"master == replica: {out}")
        t.imap_equal((m, d.port["imap"]), r, "after every synchronous change above", passwords={"alice": "alicepw"})
finally:
    if d:
        d.stop()
    pair.cleanup()

# ---- a replica that accepts the connection and never answers: the timeout ----------------------
import socket  # noqa: E402

silent = socket.socket()
silent.bind(("127.0.0.1", 0))
silent.listen(16)  # connections complete in the backlog; nothing is ever read or written
mi = Instance(channels="repl1",
              extra_conf=f"repl1_sync_host: 127.0.0.1:{silent.getsockname()[1]}\nsync_authname: repl\n"
                         "sync_password: replpw\nsync_repeat_interval: 0\nsync_rightnow_channel: repl1\n"
                         "sync_rightnow_timeout: 500ms\n")
d = None
try:
    mi.ok(["user", "add", "--no-password", "erin"])
    d = Daemon(mi, services=("lmtp",))
    with t.case("a replica that never answers: the 250 goes out after sync_rightnow_timeout, logged once"):
        msg = make_message(t.rng, 900)
        t0 = time.time()
        l = smtplib.LMTP("127.0.0.1", d.port["lmtp"])
        l.sendmail(FROM, ["erin"], msg)
        l.quit()
        took = time.time() - t0
        t.check(took < 30, f"the 250 was not held forever ({took:.1f} s)")
        t.check(lmtp_guid(msg) in guids(mi, "user.erin"), "the message is stored on the master")
        time.sleep(0.2)
        lines = [x for x in d.log().splitlines() if "event=rightnow_timeout" in x]
        t.eq(len(lines), 1, f"one rightnow_timeout line: {lines}")
        t.check(lines and "channel=repl1 user=erin mailbox=user.erin" in lines[0], f"naming it: {lines}")
        counts, st = status_counts(mi, "repl1")
        t.check(counts is not None and counts[1] == 1, f"tandem status counts one timeout: {st}")
        t.check("pending_lines=0" not in st, f"the change stays in the log for the rolling client: {st}")
finally:
    if d:
        d.stop()
    mi.cleanup()
    silent.close()

# ---- a sharded rightnow channel: one socket per shard ------------------------------------------
pair = Pair(extra_master="sync_rightnow_channel: repl1\nsync_rightnow_timeout: 10s\nrepl1_sync_shards: 2\n")
m, r = pair.master, pair.replica
d = None
try:
    users = ["alice", "bob", "carol", "dave"]
    for u in users:
        m.ok(["user", "add", "--no-password", u])
    d = Daemon(m, services=("lmtp",))
    ok, out = wait_equal(m, "repl1")
    t.check(ok, f"the users reached the replica: {out}")

    with t.case("sharded channel: each shard's client answers its own waiters"):
        for i, u in enumerate(users * 2):
            msg = make_message(t.rng, 800 + i)
            l = smtplib.LMTP("127.0.0.1", d.port["lmtp"])
            l.sendmail(FROM, [u], msg)
            l.quit()
            t.check(lmtp_guid(msg) in guids(r, f"user.{u}"), f"delivery {i} to {u} is on the replica at its 250")
        log = d.log()
        t.check("rightnow.sock" in log and log.count("event=rightnow_listen channel=repl1") == 2,
                "both shards' clients listen")
        t.eq([l for l in log.splitlines() if "event=rightnow_timeout" in l or "event=rightnow_refused" in l], [],
             "no timeout or refusal")
        ok, out = wait_equal(m, "repl1")
        t.check(ok, f"master == replica: {out}")
finally:
    if d:
        d.stop()
    pair.cleanup()

# ---- turned on by a reload (SIGHUP) -----------------------------------------------------------------
import signal  # noqa: E402

pair = Pair()
m, r = pair.master, pair.replica
d = None
try:
    m.ok(["user", "add", "--no-password", "frank"])
    d = Daemon(m, services=("lmtp",))
    with t.case("sync_rightnow_channel set by a reload: the next sessions wait"):
        t.check("event=rightnow_listen" not in d.log(), "(not listening before)")
        with open(m.conf, "a") as f:
            f.write("sync_rightnow_channel: repl1\nsync_rightnow_timeout: 10s\n")
        d.proc.send_signal(signal.SIGHUP)
        deadline = time.time() + 30
        while time.time() < deadline and "event=rightnow_listen channel=repl1" not in d.log():
            time.sleep(0.1)
        t.check("event=rightnow_listen channel=repl1" in d.log(), "the restarted client listens")
        for i in range(3):
            msg = make_message(t.rng, 950 + i)
            l = smtplib.LMTP("127.0.0.1", d.port["lmtp"])
            l.sendmail(FROM, ["frank"], msg)
            l.quit()
            t.check(lmtp_guid(msg) in guids(r, "user.frank"), f"delivery {i} is on the replica at its 250")
finally:
    if d:
        d.stop()
    pair.cleanup()

# ---- the default channel ("" as in sync_log_channels) ---------------------------------------------
rroot = Instance()
allow_replication(rroot)
sport = free_port()
rdaemon = Daemon(rroot, services=("sync",), ports={"sync": sport})
master = Instance()
text = open(master.conf).read()
text = "\n".join(x for x in text.splitlines() if not x.startswith("sync_log_channels")) + "\n"
text += (f"sync_log: yes\nsync_host: 127.0.0.1:{sport}\nsync_authname: repl\nsync_password: replpw\n"
         "sync_repeat_interval: 0\nsync_rightnow_channel: \"\"\nsync_rightnow_timeout: 10s\n")
open(master.conf, "w").write(text)
d = None
try:
    master.ok(["user", "add", "--no-password", "gina"])
    d = Daemon(master, services=("lmtp",))
    with t.case('sync_rightnow_channel: "" makes the default channel synchronous'):
        for i in range(3):
            msg = make_message(t.rng, 980 + i)
            l = smtplib.LMTP("127.0.0.1", d.port["lmtp"])
            l.sendmail(FROM, ["gina"], msg)
            l.quit()
            t.check(lmtp_guid(msg) in guids(rroot, "user.gina"), f"delivery {i} is on the replica at its 250")
        st = master.ok(["status"])
        t.check('channel="" rightnow=on ok=' in st, f"tandem status shows it: {st}")
        t.check("config_warning" not in d.log(), "no warning")
finally:
    if d:
        d.stop()
    rdaemon.stop()
    master.cleanup()
    rroot.cleanup()

# ---- a real Cyrus 3.6 as the rightnow replica ------------------------------------------------
if not cyrus.available() or os.geteuid() != 0:
    print("SKIP: Cyrus 3.6 is not installed or not root")
    t.done()
croot = tempfile.mkdtemp(prefix="tandem-cyrus-", dir="/tmp")
os.chmod(croot, 0o755)
started = []
try:
    cr = cyrus.Cyrus(croot, "cyrus-replica", sync_server=True, admins="admin repl")
    started.append(cr)
    tm = Instance(root=os.path.join(croot, "tm"), channels="cy",
                  extra_conf=f"cy_sync_host: 127.0.0.1:{cr.sync_port}\nsync_authname: repl\n"
                             "sync_password: replpw\nsync_try_imap: no\nsync_repeat_interval: 0\n"
                             "sync_rightnow_channel: cy\nsync_rightnow_timeout: 10s\n")
    tm.ok(["user", "add", "carol"], "carolpw\n")
    td = Daemon(tm, services=("lmtp",))
    started.append(td)
    cr.add_login("carol", "carolpw")
    ok, out = wait_equal(tm, "cy", timeout=60)
    t.check(ok, f"carol reached Cyrus: {out}")

    with t.case("(c) Cyrus replica: after each LMTP 250 the message is already in Cyrus"):
        for i in range(3):
            msg = make_message(t.rng, 700 + i)
            l = smtplib.LMTP("127.0.0.1", td.port["lmtp"])
            l.sendmail(FROM, ["carol"], msg)
            l.quit()
            im = cr.imap("carol", "carolpw")
            typ, data = im.select("INBOX", readonly=True)
            t.eq(typ, "OK", "SELECT INBOX on Cyrus")
            t.eq(int(data[0]), i + 1, f"Cyrus's INBOX has delivery {i} at its 250")
            typ, data = im.fetch(str(i + 1), "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
            t.check(f"test message {700 + i}".encode() in data[0][1], f"and it is that message: {data}")
            im.logout()
        t.eq([l for l in td.log().splitlines() if "event=rightnow_" in l and "listen" not in l], [],
             "no timeout or refusal")
        r3 = tm.run(["compare", "-n", "cy", "-o", "--bodies"])
        t.eq(r3.returncode, 0, f"tandem compare against Cyrus: {r3.stdout[-500:]}")
finally:
    for c in started:
        c.stop()
    import shutil
    shutil.rmtree(croot, ignore_errors=True)

t.done()
