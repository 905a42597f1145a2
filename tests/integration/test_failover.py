"""test_failover.py: `tandem failover` switches master and replica cleanly.

Two instances A and B, each with tandemd serving LMTP, IMAP and the sync
port, each with a channel to the other. Roles: A master, B replica. A
replica refuses clients' changes (LMTP 451, IMAP NO [UNAVAILABLE]); a
master refuses APPLY from anyone else. `failover demote` on A drains its
channel, checks B equal and makes A a replica; `failover promote` on B
makes it the master and its tandemd starts replicating back to A. A
demote with something left unsent is refused and changes nothing.
"""
import imaplib
import os
import shutil
import smtplib
import tempfile
import time

from tlib import Daemon, Instance, Suite, free_port, lmtp_send, make_message, wait_equal, wait_log

t = Suite("failover")
root = tempfile.mkdtemp(prefix="tandem-failover-")
started = []


def instance(name, peer_chan, peer_port, own_port):
    inst = Instance(root=os.path.join(root, name), channels=peer_chan,
                    extra_conf=f"{peer_chan}_sync_host: 127.0.0.1:{peer_port}\nsync_authname: repl\n"
                               "sync_password: replpw\nsync_repeat_interval: 0\n"
                               "sync_reconnect_minwait: 200ms\nsync_reconnect_maxwait: 1s\n")
    text = open(inst.conf).read().replace("admins: admin\n", "admins: admin repl\n")
    open(inst.conf, "w").write(text)
    inst.ok(["user", "add", "repl"], "replpw\n")
    inst.sync_port = own_port
    return inst


def start(inst):
    # a restart: back to the config without the previous run's listeners
    if hasattr(inst, "base_conf"):
        open(inst.conf, "w").write(inst.base_conf)
    inst.base_conf = open(inst.conf).read()
    d = Daemon(inst, services=("lmtp", "imap", "sync"), ports={"sync": inst.sync_port})
    started.append(d)
    return d


try:
    pa, pb = free_port(), free_port()
    A = instance("a", "tob", pb, pa)
    B = instance("b", "toa", pa, pb)
    for inst in (A, B):
        inst.ok(["user", "add", "alice"], "pw\n")
    t.eq(A.run(["failover", "promote"]).returncode, 0, "A becomes the master")
    r = B.run(["failover", "demote", "--force", "--timeout", "1"])
    t.eq(r.returncode, 0, f"B becomes a replica: {r.stdout}{r.stderr}")
    da, db = start(A), start(B)

    with t.case("master A replicates to B; B refuses clients' changes"):
        for i in range(8):
            t.eq(lmtp_send(da.port["lmtp"], "alice", make_message(t.rng, i)), 250, "delivery to A")
        im = imaplib.IMAP4("127.0.0.1", da.port["imap"])
        im.login("alice", "pw")
        im.select("INBOX")
        im.store("1:3", "+FLAGS", "(\\Flagged)")
        im.logout()
        ok, out = wait_equal(A, "tob")
        t.check(ok, f"B equals A: {out[-500:]}")
        t.eq(lmtp_send(db.port["lmtp"], "alice", make_message(t.rng, 99)), 451, "LMTP to the replica: 451")
        im = imaplib.IMAP4("127.0.0.1", db.port["imap"])
        im.login("alice", "pw")
        typ, data = im.append("INBOX", None, None, make_message(t.rng, 98))
        t.check(typ == "NO" and b"UNAVAILABLE" in data[0], f"APPEND on the replica refused: {typ} {data}")
        typ, data = im.select("INBOX", readonly=True)
        t.eq(typ, "OK", "reading on the replica works")
        im.logout()

    with t.case("demote A, promote B: B takes mail and replicates back to A"):
        # a session open across the demotion: its process has seen the
        # role before (a write), and must see the change at its next write
        # (each process keeps the role and stats the file per write command)
        old_session = imaplib.IMAP4("127.0.0.1", da.port["imap"])
        old_session.login("alice", "pw")
        old_session.select("INBOX")
        typ, _ = old_session.store("1", "+FLAGS", "(\\Answered)")
        t.eq(typ, "OK", "a write in a session on the master")
        r = A.run(["failover", "demote", "--timeout", "20"])
        t.eq(r.returncode, 0, f"demote A: {r.stdout}{r.stderr}")
        t.check("replica_equal=yes" in r.stdout, f"demote checked the replica: {r.stdout}")
        t.eq(A.run(["failover", "status"]).stdout.splitlines()[0], "role=replica", "A is a replica")
        r = B.run(["failover", "promote"])
        t.eq(r.returncode, 0, f"promote B: {r.stdout}{r.stderr}")
        # promote signals B's tandemd, which starts B's sync client to A
        wait_log(db, "event=sync_client_start channel=toa", 30)
        t.eq(lmtp_send(da.port["lmtp"], "alice", make_message(t.rng, 97)), 451, "LMTP to the demoted A: 451")
        try:
            typ, data = old_session.store("2", "+FLAGS", "(\\Answered)")
        except imaplib.IMAP4.error as e:
            typ, data = "NO", [str(e).encode()]
        t.check(typ == "NO" and b"UNAVAILABLE" in data[0],
                f"the session opened before the demotion is refused its next write: {typ} {data}")
        try:
            old_session.logout()
        except (imaplib.IMAP4.error, OSError):
            pass
        for i in range(5):
            t.eq(lmtp_send(db.port["lmtp"], "alice", make_message(t.rng, 200 + i)), 250, "delivery to the new master B")
        ok, out = wait_equal(B, "toa")
        t.check(ok, f"A equals B after the switch: {out[-500:]}")
        t.imap_equal((B, db.port["imap"]), (A, da.port["imap"]), "A equals B after the switch",
                     passwords={"alice": "pw"})
        t.eq(len(A.messages("user.alice")), 13, "A has every message")

    with t.case("an old master cannot push into the new master"):
        # A, demoted, got mail behind everyone's back (the admin tool's
        # direct path does not check the role; over LMTP A's tandemd would
        # refuse it as a replica) and pushes as if it were still the master
        A.ok(["deliver", "--direct", "alice"], make_message(t.rng, 150))
        r = A.run(["sync", "-n", "tob", "-o", "-u", "alice"])
        t.check(r.returncode != 0 and "master now" in r.stderr, f"APPLY from A refused by B: {r.stderr[-300:]}")
        t.eq(len(B.messages("user.alice")), 13, "B did not take A's stray message")

    with t.case("demote with changes left unsent is refused and changes nothing"):
        # B's sync client was connected, idle: A's session ends at once, so
        # A exits by itself on SIGTERM (0), inside a deadline shorter than
        # the 30 s idle timeout (Daemon.stop kills it after that: -9)
        t.eq(da.stop(timeout=25), 0, "A stopped cleanly with an idle sync session open")
        t.check("event=stopped" in da.log() and "event=stop_kill" not in da.log(),
                f"A's sessions ended without a kill: {da.log()[-400:]}")
        for i in range(3):
            t.eq(lmtp_send(db.port["lmtp"], "alice", make_message(t.rng, 300 + i)), 250, "delivery to B while A is down")
        r = B.run(["failover", "demote", "--timeout", "2"])
        t.eq(r.returncode, 1, f"demote refused: {r.stdout}")
        t.check("left_unsent=" in r.stdout, "it says what is left")
        t.eq(B.run(["failover", "status"]).stdout.splitlines()[0], "role=master", "B is still the master")
        t.eq(lmtp_send(db.port["lmtp"], "alice", make_message(t.rng, 310)), 250, "B takes mail again")
        da = start(A)
        ok, out = wait_equal(B, "toa")
        t.check(ok, f"A catches up once back: {out[-500:]}")
        t.imap_equal((B, db.port["imap"]), (A, da.port["imap"]), "A caught up", passwords={"alice": "pw"})
finally:
    for s in reversed(started):
        s.stop()
    shutil.rmtree(root, ignore_errors=True)
t.done()
