"""test_cyrus_failover.py: the Cyrus -> tandem failover drill (issue 5).

A real Cyrus 3.6 master with mail (users, folders, flags, another user's
\\Seen, subscriptions, annotations, quota, ACL) replicates into a tandem
replica (Cyrus's sync_client -A, then more changes left in its sync log).
contrib/cyrus-to-tandem-failover.sh then does the planned switch with its
variables pointed at the throwaway Cyrus: drain (sync_client -R -1),
compare over Cyrus's IMAP port, stop (kill the master by pid), promote
tandem, start the same Cyrus directory with a replica config (sync_server
on the csync port of tandem's channel; its syslog caught in a mount
namespace), tandem sync -A and compare. Then tandem takes deliveries over
LMTP and changes over IMAP, its rolling client replicates them, and
Cyrus, now the replica, must show every user what tandem shows;
tandem compare is equal; Cyrus logged no sync error.

Run twice: tandem's channel back to Cyrus over csync (Cyrus's sync_server)
and over IMAP (Cyrus's imapd, with Cyrus's files reached through
CYRUS_SSH, here a local stand-in for ssh). Also: the dry run changes
nothing, bad settings exit 2, a failed drain stops before anything changes.
"""
import imaplib
import os
import re
import shutil
import smtplib
import socket
import subprocess
import tempfile
import threading
import time

import cyrus
from imapview import bodies_of, flags_of, metadata_pairs
from tlib import BIN, TOP, Daemon, Instance, Suite, free_port, lmtp_send, make_message, wait_equal, cyrus_skip_reason

t = Suite("cyrus-failover")
if cyrus_skip_reason():
    t.skip(cyrus_skip_reason(), "every case: Cyrus 3.6 is not installed or not root "
           "(make check installs it: scripts/deps.sh check)", count=5)
    t.done()

imaplib.Commands.setdefault("GETMETADATA", ("AUTH", "SELECTED"))
imaplib.Commands.setdefault("SETMETADATA", ("AUTH", "SELECTED"))
SCRIPT = os.path.join(TOP, "contrib", "cyrus-to-tandem-failover.sh")
root = tempfile.mkdtemp(prefix="tandem-cyrus-failover-", dir="/tmp")
os.chmod(root, 0o755)
started = []
USERS = {"alice": "alicepw", "bob": "bobpw"}
SETUID = "setpriv --reuid=cyrus --regid=mail --init-groups"
SYNC_ERRORS = re.compile(r"SYNCERROR|IOERROR|DBERROR|IMAP_SYNC_CHECKSUM|IMAP_PROTOCOL|sync_server.*(fail|error)", re.I)


class SyslogCatcher:
    """A datagram socket that collects what a Cyrus in its own mount
    namespace sends to /dev/log (cyrus.Cyrus.replica_start_command)."""

    def __init__(self, path):
        self.path = path
        self.lines = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        os.chmod(path, 0o666)
        self.sock.settimeout(0.2)
        self.running = True
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        while self.running:
            try:
                self.lines.append(self.sock.recv(65536).decode("utf-8", "replace"))
            except socket.timeout:
                continue
            except OSError:
                return

    def stop(self):
        self.running = False
        self.thread.join()
        self.sock.close()


def namespaces_work():
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", "true"], capture_output=True)
    return r.returncode == 0


# ---- what a user sees (as test_cyrus_state.py) ---------------------------------
def answers(im, folders):
    """Subscriptions, folders, special-use, quota, and per folder: flags,
    bodies, metadata; the ACL of INBOX.Work."""
    a = {}
    a["lsub"] = sorted(x.decode() for x in im.lsub('""', "*")[1] if x)
    a["list"] = sorted(x.decode() for x in im.list('""', "*")[1] if x)
    typ, data = im.getquotaroot("INBOX")
    a["quota"] = [x.decode() if isinstance(x, bytes) else str(x) for x in data if x] if typ == "OK" else typ
    for mb in folders:
        a[f"flags {mb}"] = flags_of(im, mb)
        a[f"bodies {mb}"] = bodies_of(im, mb)
        typ, data = im._simple_command("GETMETADATA", mb, "(/shared/comment /private/comment)")
        typ, data = im._untagged_response(typ, data, "METADATA")
        a[f"metadata {mb}"] = metadata_pairs(data) if typ == "OK" else typ
    typ, data = im.getacl("INBOX.Work")
    a["acl"] = [x.decode() for x in data] if typ == "OK" else typ
    return a


def tandem_imap(port, user, pw):
    im = imaplib.IMAP4("127.0.0.1", port)
    im.login(user, pw)
    return im


def compare_users(cy, tandem_port, what):
    folders = {"alice": ["INBOX", "INBOX.Work", "INBOX.Sent", "INBOX.Later"], "bob": ["INBOX", "INBOX.Drafts"]}
    for user, pw in USERS.items():
        ci, ti = cy.imap(user, pw), tandem_imap(tandem_port, user, pw)
        ca, ta = answers(ci, folders[user]), answers(ti, folders[user])
        for k in ta:
            t.eq(ca.get(k), ta[k], f"{what}: {user}'s {k} (Cyrus vs tandem)")
        ci.logout()
        ti.logout()
    ci, ti = cy.imap("bob", "bobpw"), tandem_imap(tandem_port, "bob", "bobpw")
    t.eq(flags_of(ci, "user.alice.Work"), flags_of(ti, "user.alice.Work"),
         f"{what}: bob's view (his own \\Seen) of user.alice.Work")
    ci.logout()
    ti.logout()


def drill(transport):
    """One drill with tandem's channel back to Cyrus over `transport`
    (csync: Cyrus's sync_server port; imap: Cyrus's imapd port)."""
    top = os.path.join(root, transport)
    os.makedirs(top)
    os.chmod(top, 0o755)
    sport, csport = free_port(), free_port()
    cm = cyrus.Cyrus(top, f"cyrus-{transport}", sync_to=sport, admins="admin repl")
    started.append(cm)
    for u, pw in USERS.items():
        cm.add_login(u, pw)
    # tandem: Cyrus's replica, with channel "cy" back to Cyrus (csync: the
    # sync_server port its replica config will have; imap: its imapd)
    back = csport if transport == "csync" else cm.imap_port
    rep = Instance(root=os.path.join(top, "t"), channels="cy",
                   extra_conf=f"cy_sync_host: 127.0.0.1:{back}\nsync_authname: repl\nsync_password: replpw\n"
                              "sync_repeat_interval: 0\nsync_reconnect_minwait: 200ms\n"
                              "sync_reconnect_maxwait: 1s\n")
    text = open(rep.conf).read().replace("admins: admin\n", "admins: admin repl\n")
    open(rep.conf, "w").write(text)
    # a replica before anything is in its change log: demote runs one sync
    # pass to the channel's host (here Cyrus, the master) even with --force
    rep.run(["failover", "demote", "--force", "--timeout", "0"])
    t.eq(rep.ok(["failover", "status"]).splitlines()[0], "role=replica", "tandem starts as a replica")
    rep.ok(["user", "add", "repl"], "replpw\n")
    d = Daemon(rep, services=("sync", "imap", "lmtp"), ports={"sync": sport})
    started.append(d)

    with t.case(f"{transport}: Cyrus master with mail replicates into tandem (sync_client -A, then more in its sync log)"):
        cyrus.sample_state(cm, t, t.rng, messages=6, extra=("user.alice.Later", "user.bob.Drafts"))
        r = cm.sync_client("-A")
        t.eq(r.returncode, 0, f"sync_client -A: {r.stdout[-300:]} {r.stderr[-300:]}")
        for u, pw in USERS.items():
            rep.ok(["user", "passwd", u], pw + "\n")
        # left in Cyrus's sync log for the script's drain
        for i in range(6, 10):
            cm.deliver(["alice", "alice+Work", "bob"][i % 3], make_message(t.rng, i))
        al = cm.imap("alice", "alicepw")
        al.subscribe("INBOX.Later")
        al.select("INBOX")
        al.store("2", "+FLAGS", "(\\Answered $Todo)")
        al.store("1", "-FLAGS", "(\\Flagged)")
        al.logout()
        bo = cm.imap("bob", "bobpw")
        bo.subscribe("INBOX.Drafts")
        bo.select("user.alice.Work")
        bo.store("2", "+FLAGS", "(\\Seen)")
        bo.logout()
        t.check(os.path.getsize(os.path.join(cm.dir, "config", "sync", "log")) > 0, "Cyrus's sync log holds changes")
        t.eq(lmtp_send(d.port["lmtp"], "alice", make_message(t.rng, 90)), 451, "tandem, a replica, answers LMTP 451")

    env = dict(os.environ, TANDEM=os.path.join(BIN, "tandem"), TANDEM_CONF=rep.conf, CHANNEL="cy",
               CYRUS_CSYNC_PORT=str(csport), CYRUS_IMAP_PORT=str(cm.imap_port), CYRUS_CONF=cm.conf,
               CYRUS_RUN_AS=SETUID, CYRUS_ROLLING="no", CYRUS_PIDFILE=cm.pidfile,
               CYRUS_STOP=f"kill $(cat {cm.pidfile})", CYRUS_SYNC_TIMEOUT="30", WAIT_TIMEOUT="30",
               FAILOVER_LOG=os.path.join(top, "failover.log"))
    if transport == "imap":
        # Cyrus "elsewhere": its files reached through CYRUS_SSH (here a
        # stand-in for ssh that runs its arguments as one sh command line)
        fake_ssh = os.path.join(top, "fake-ssh")
        open(fake_ssh, "w").write('#!/bin/sh\nexec sh -c "$*"\n')
        os.chmod(fake_ssh, 0o755)
        env["CYRUS_SSH"] = fake_ssh
    cm.replica_config(sync_port=csport)
    if namespaces_work():
        catcher = SyslogCatcher(os.path.join(top, "cyrus-syslog.sock"))
        catchers.append(catcher)
        env["CYRUS_START_REPLICA"] = cm.replica_start_command(syslog_socket=catcher.path)
    else:
        catcher = None
        print("note: no mount namespaces here: Cyrus's syslog is not checked")
        env["CYRUS_START_REPLICA"] = cm.replica_start_command()

    with t.case(f"{transport}: the script's dry run checks and prints the steps, changes nothing"):
        r = subprocess.run(["sh", SCRIPT, "-n"], env=dict(env, FAILOVER_LOG=""), capture_output=True, text=True,
                           timeout=60, cwd=top)
        t.eq(r.returncode, 0, f"dry run: {r.stdout[-1500:]} {r.stderr[-500:]}")
        for what in ["sync_client", "compare -n cy", "kill $(cat", "failover promote", "master-replica.out",
                     "sync -n cy -A -o"]:
            t.check(what in r.stdout, f"the dry run shows {what!r}")
        t.check(f"transport={transport}" in r.stdout, f"it found the {transport} channel")
        t.eq(rep.ok(["failover", "status"]).splitlines()[0], "role=replica", "tandem is still a replica")
        t.check(os.path.getsize(os.path.join(cm.dir, "config", "sync", "log")) > 0, "Cyrus's log was not drained")
        bad = subprocess.run(["sh", SCRIPT], env=dict(env, CHANNEL="nope"), capture_output=True, text=True,
                             timeout=60, cwd=top)
        t.eq(bad.returncode, 2, f"a channel that is not configured is refused: {bad.stdout[-300:]}")
        bad = subprocess.run(["sh", SCRIPT], env=dict(env, CYRUS_START_REPLICA=""), capture_output=True,
                             text=True, timeout=60, cwd=top)
        t.eq(bad.returncode, 2, f"no CYRUS_START_REPLICA is refused: {bad.stdout[-300:]}")

    with t.case(f"{transport}: a failed step stops the script before anything changes"):
        r = subprocess.run(["sh", SCRIPT], env=dict(env, CYRUS_SYNC_CLIENT="/bin/false", FAILOVER_LOG=""),
                           capture_output=True, text=True, timeout=60, cwd=top)
        t.eq(r.returncode, 1, f"the drain failed: {r.stdout[-800:]}")
        t.check("step=2 result=failed" in r.stdout and "step=3" not in r.stdout, "it stopped at step 2")
        t.check("nothing was changed" in r.stdout, "it says what state the pair is in")
        t.eq(rep.ok(["failover", "status"]).splitlines()[0], "role=replica", "tandem is still a replica")
        t.check(cm.wait_listening(cm.imap_port, 1), "Cyrus still runs")

    with t.case(f"{transport}: the script switches: Cyrus stopped, tandem master, Cyrus its replica, equal"):
        start = time.time()
        r = subprocess.run(["sh", SCRIPT], env=env, capture_output=True, text=True, timeout=240, cwd=top)
        print(f"  script took {time.time() - start:.1f}s")
        t.eq(r.returncode, 0, f"script: {r.stdout[-3000:]} {r.stderr[-500:]}")
        for s in range(1, 8):
            t.check(f"step={s} begin=" in r.stdout, f"step {s} logged")
        t.check("result=failed" not in r.stdout, "no step failed")
        t.check("summary:" in r.stdout, "a summary")
        t.check(os.path.exists(env["FAILOVER_LOG"]) and "summary:" in open(env["FAILOVER_LOG"]).read(),
                "the log file has it too")
        t.eq(rep.ok(["failover", "status"]).splitlines()[0], "role=master", "tandem is the master")
        t.check(cm.wait_listening(csport, 5), "Cyrus's sync_server listens (replica mode)")
        r = rep.run(["compare", "-n", "cy", "-o", "--bodies"])
        t.eq(r.returncode, 0, f"tandem compare --bodies with Cyrus: {r.stdout[-800:]}")
        compare_users(cm, d.port["imap"], "right after the switch")

    with t.case(f"{transport}: tandem takes LMTP and IMAP changes; Cyrus, its replica, follows"):
        for i in range(20, 26):
            t.eq(lmtp_send(d.port["lmtp"], ["alice", "alice+Work", "bob"][i % 3], make_message(t.rng, i)), 250,
                 "LMTP delivery to tandem")
        al = tandem_imap(d.port["imap"], "alice", "alicepw")
        t.eq(al.create("INBOX.Later.Sub")[0], "OK", "CREATE on tandem")
        al.subscribe("INBOX.Later.Sub")
        al.unsubscribe("INBOX.Sent")
        al.select("INBOX")
        al.store("1:3", "+FLAGS", "(\\Flagged $Done)")
        al.store("2", "+FLAGS", "(\\Deleted)")
        al.expunge()
        t.eq(al.append("INBOX.Sent", "(\\Seen)", None, make_message(t.rng, 40))[0], "OK", "APPEND on tandem")
        al._simple_command("SETMETADATA", "INBOX.Work", '(/shared/comment "after the switch")')
        al.setacl("INBOX.Work", "bob", "lrsw")
        al.logout()
        bo = tandem_imap(d.port["imap"], "bob", "bobpw")
        bo.select("user.alice.Work")
        bo.store("3", "+FLAGS", "(\\Seen)")
        bo.select("INBOX")
        bo.store("1", "+FLAGS", "(\\Seen)")
        bo.logout()
        ok, out = wait_equal(rep, "cy")
        t.check(ok, f"tandem's rolling client made Cyrus equal: {out[-800:]}")
        compare_users(cm, d.port["imap"], "after changes on tandem")
        r = rep.run(["compare", "-n", "cy", "-o", "--bodies"])
        t.eq(r.returncode, 0, f"tandem compare --bodies: {r.stdout[-800:]}")
        t.eq([l for l in d.log().splitlines() if "event=apply_fail" in l or "splitbrain" in l], [],
             "tandem logged no refused apply and no split brain")
        if catcher:
            time.sleep(0.5)
            errs = [l for l in catcher.lines if SYNC_ERRORS.search(l)]
            t.eq(errs, [], "Cyrus (replica) logged no sync error")
            service = "syncserver" if transport == "csync" else "imap"
            t.check(any(f"cyrus/{service}[" in l and " repl PLAIN User logged in" in l for l in catcher.lines),
                    f"Cyrus's syslog was caught and shows tandem's logins to its {service}")


catchers = []
try:
    for transport in ("csync", "imap"):
        drill(transport)
finally:
    for s in reversed(started):
        s.stop()
    for c in catchers:
        c.stop()
        open(c.path + ".txt", "w").write("\n".join(c.lines) + "\n")
    if os.environ.get("KEEP"):
        print("kept", root)
    else:
        shutil.rmtree(root, ignore_errors=True)
t.done()
