"""test_sync_regressions.py: replication paths that broke when tried from
outside (issue "One replication engine"), each with the scenario that
found it:

1. A shared (non-user) mailbox crashed the replica's sync session (NULL
   owner): `tandem mailbox create shared.news` + `tandem sync -A`; in
   rolling mode the crash looked like a lost connection and stalled the
   whole channel. Now it replicates, -A and rolling, with its messages.
2. A master set up as Cyrus's guide shows (sync_log + sync_host, no
   sync_log_channels) wrote the default channel's log but tandemd started
   no client for it: nothing replicated. Now the default channel runs like
   a named one, and `tandem status` shows it.
3. `tandem sync -A` into a real Cyrus 3.6 lost the subscriptions of the
   users it created: APPLY SUB reached Cyrus before the user's INBOX, and
   Cyrus filed it where its IMAP server never reads it. A user's parts now
   go in Cyrus's order (mailboxes, then subscriptions). Shared mailboxes
   replicate both ways with Cyrus too (`sync_client -m shared.news`).
4. A replica's session that dies while it applies one mailbox (its
   process crashes) looked like a lost connection: the pass was replayed
   forever and the whole channel stalled. Now, after two lost passes the
   client goes one mailbox at a time, charges the one under way, and after
   three tries leaves it on the failed list (retried with backoff) while
   the rest of the channel flows. The crash is injected on the replica
   with TANDEM_TEST_CRASH_APPLY (a test-only fault hook).
5. sync_rightnow_channel was documented as synchronous but nothing read it
   (tandemd said so at start). It is implemented now (test_rightnow.py); a
   rightnow channel that is not one of the logged channels (repl9 here)
   changes nothing: deliveries are acknowledged and replicated as before.
Every scenario ends with `tandem compare` and the same questions asked of
both IMAP servers.
"""
import imaplib
import os
import re
import tempfile

import cyrus

from tlib import allow_replication, cyrus_skip_reason, Daemon, Instance, Pair, Suite, free_port, make_message, wait_equal

t = Suite("sync-regressions")


def imap_view(port, user, pw, boxes):
    """What an IMAP client sees of some mailboxes: per mailbox the STATUS
    numbers and (uid, flags, size, body) of every message."""
    im = imaplib.IMAP4("127.0.0.1", port)
    im.login(user, pw)
    view = {}
    for mb in boxes:
        st = im.status(mb, "(MESSAGES UIDNEXT UIDVALIDITY HIGHESTMODSEQ)")
        if st[0] != "OK":
            view[mb] = None
            continue
        im.select(mb, readonly=True)
        typ, data = im.uid("FETCH", "1:*", "(FLAGS RFC822.SIZE BODY.PEEK[])")
        msgs = []
        for d in data:
            if isinstance(d, tuple):
                head = d[0].decode()
                uid = int(re.search(r"UID (\d+)", head).group(1))
                flags = sorted(f for f in re.search(r"FLAGS \(([^)]*)\)", head).group(1).split() if f != "\\Recent")
                size = int(re.search(r"RFC822.SIZE (\d+)", head).group(1))
                msgs.append((uid, flags, size, d[1]))
        view[mb] = (st[1][0].split(b" ", 1)[1], sorted(msgs))
    im.logout()
    return view


pair = Pair()
m, r = pair.master, pair.replica
md = rd = None
try:
    for inst in (m, r):
        inst.ok(["user", "add", "admin"], "adminpw\n")
    m.ok(["user", "add", "--no-password", "alice"])

    with t.case("a shared mailbox with tandem sync -A (the replica's session crashed)"):
        m.ok(["mailbox", "create", "shared.news"])
        res = pair.sync("-A")
        t.eq(res.returncode, 0, f"sync -A: {res.stderr[-400:]}")
        t.check("shared.news" in r.ok(["mailbox", "list"]), "shared.news exists on the replica")
        t.check("signal" not in pair.daemon.log() and "event=session_crash" not in pair.daemon.log(),
                "no replica session died")
        rc, out = pair.compare()
        t.eq(rc, 0, f"master == replica: {out}")

    with t.case("a shared mailbox in rolling replication: messages, flags, and the channel flows"):
        md = Daemon(m, services=("imap",))
        im = imaplib.IMAP4("127.0.0.1", md.port["imap"])
        im.login("admin", "adminpw")
        typ, boxes = im.list()
        names = [b.decode().rsplit(" ", 1)[1].strip('"') for b in boxes]
        shared = [n for n in names if n.endswith("news")]
        t.check(len(shared) == 1, f"the admin sees the shared mailbox over IMAP: {names}")
        shared = shared[0] if shared else "shared.news"
        for i in range(3):
            t.eq(im.append(shared, "(\\Flagged)", None, make_message(t.rng, i))[0], "OK", f"APPEND {i} to {shared}")
        im.select(shared)
        im.store("1", "+FLAGS", "(\\Seen $Label1)")
        im.logout()
        m.ok(["deliver", "alice"], make_message(t.rng, 10))
        ok, out = wait_equal(m, "repl1", timeout=60)
        t.check(ok, f"rolling: master == replica: {out}")
        t.eq(len(r.messages("user.alice")), 1, "a later delivery to another user arrived (no stall)")
        t.eq(len(r.messages("shared.news")), 3, "the shared mailbox's messages arrived")
        st = m.ok(["status", "-n", "repl1"])
        t.check("state=failed" not in st and "pending_lines=0" in st, f"nothing failed or pending: {st}")
        # the replica's IMAP: its tandemd again, serving imap instead of sync
        pair.stop_replica()
        text = open(r.conf).read()
        open(r.conf, "w").write("\n".join(l for l in text.splitlines()
                                          if not l.startswith(("sync_listen", "allowplaintext"))) + "\n")
        rd = Daemon(r, services=("imap",))
        mv = imap_view(md.port["imap"], "admin", "adminpw", [shared])
        rv = imap_view(rd.port["imap"], "admin", "adminpw", [shared])
        t.eq(rv, mv, "IMAP shows the same shared mailbox on both sides")
        rd.stop()
        rd = None
        md.stop()
        md = None
finally:
    for d in (md, rd):
        if d:
            d.stop()
    pair.cleanup()

# ---- a replica session that dies on one mailbox ----------------------------------------------
os.environ["TANDEM_TEST_CRASH_APPLY"] = "user.alice.Bad"
pair = Pair()
os.environ.pop("TANDEM_TEST_CRASH_APPLY")
m, r = pair.master, pair.replica
md = None
try:
    with t.case("a replica session that dies on one mailbox: isolated, the channel flows"):
        m.ok(["user", "add", "--no-password", "alice"])
        m.ok(["user", "add", "--no-password", "bob"])
        m.ok(["mailbox", "create", "user.alice.Bad"])
        md = Daemon(m, services=("imap",))
        m.ok(["deliver", "alice", "alice+Bad", "bob"], make_message(t.rng, 70))
        import time
        deadline = time.time() + 90
        st = ""
        while time.time() < deadline:
            st = m.ok(["status", "-n", "repl1"])
            if "mailbox=user.alice.Bad state=failed" in st and "pending_lines=0" in st:
                break
            time.sleep(0.2)
        t.check("mailbox=user.alice.Bad state=failed" in st, f"the mailbox is on the failed list: {st}")
        t.check("session ended" in st, f"with the cause: {st}")
        t.check("pending_lines=0" in st, f"the log was consumed: {st}")
        m.ok(["deliver", "bob"], make_message(t.rng, 71))
        ok = False
        while time.time() < deadline and not ok:
            ok = len(r.messages("user.bob")) == 2 if "user.bob" in r.ok(["mailbox", "list"]) else False
            time.sleep(0.2)
        t.check(ok, "bob's later mail arrived past the failing mailbox")
        t.eq(len(r.messages("user.alice")), 1, "alice's INBOX arrived")
        log = md.log()
        t.check("event=sync_careful " in log and "event=sync_lost_session" in log,
                "the client went careful and charged the mailbox")
        md.stop()
        md = None
        # the cause goes away (the replica restarts without the hook): a
        # one-shot sync of the mailbox replicates it, and the pair is equal
        pair.stop_replica()
        pair.start_replica()
        res = pair.sync("-m", "user.alice.Bad")
        t.eq(res.returncode, 0, f"sync -m once the replica is well: {res.stderr[-300:]}")
        rc, out = pair.compare()
        t.eq(rc, 0, f"master == replica: {out}")
        t.imap_equal(m, r, "after the mailbox came back")
finally:
    if md:
        md.stop()
    pair.cleanup()

# ---- the csync port before login ---------------------------------------------------------
pair = Pair()
try:
    with t.case("csync before login: a huge command closes the session; COMPRESS needs a login"):
        import socket
        from tlib import CsyncConn
        c = CsyncConn(pair.port)
        t.eq(c.cmd(b"COMPRESS DEFLATE")[-1], b"NO Please authenticate first", "COMPRESS before login")
        guid = "0" * 40
        c.s.sendall(f"APPLY MESSAGE (%{{default {guid} 20000000}}\r\n".encode())
        sent, closed = 0, False
        chunk = b"x" * 65536
        try:
            while sent < 64 * 1024 * 1024:
                c.s.sendall(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            closed = True
        if not closed:
            try:
                closed = c.s.recv(4096) is not None
            except OSError:
                closed = True
        t.check(closed and sent < 16 * 1024 * 1024,
                f"the server closed the connection after {sent} bytes (not 64 MB)")
        log = pair.daemon.log()
        t.check("before authentication" in log, "logged as a bad command before authentication")
        c2 = CsyncConn(pair.port)
        t.eq(c2.auth("repl", "replpw"), b"OK Success (no protection)", "a well-behaved client still logs in")
finally:
    pair.cleanup()

# ---- the default (unnamed) channel -----------------------------------------------------------
rroot = Instance()
allow_replication(rroot)
sport = free_port()
rdaemon = Daemon(rroot, services=("sync",), ports={"sync": sport})
master = Instance(extra_conf="")
# as Cyrus's replication guide: sync_log and sync_host, no channel list
text = open(master.conf).read()
text = "\n".join(l for l in text.splitlines() if not l.startswith("sync_log_channels")) + "\n"
text += (f"sync_log: yes\nsync_host: 127.0.0.1:{sport}\nsync_authname: repl\nsync_password: replpw\n"
         "sync_repeat_interval: 0\nsync_rightnow_channel: repl9\n")
open(master.conf, "w").write(text)
mdaemon = None
try:
    with t.case("the default channel replicates from tandemd (Cyrus guide's set-up)"):
        master.ok(["user", "add", "--no-password", "bob"])
        mdaemon = Daemon(master, services=("imap",))
        for i in range(3):
            master.ok(["deliver", "bob"], make_message(t.rng, 20 + i))
        ok, out = wait_equal(master, "", timeout=60)
        t.check(ok, f"master == replica on the default channel: {out}")
        t.eq(len(rroot.messages("user.bob")), 3, "bob's mail is on the replica")
        st = master.ok(["status"])
        t.check('channel="" pending_lines=0' in st, f"tandem status shows the default channel: {st}")
        log = mdaemon.log()
        t.check("event=sync_client_start channel= " in log, "tandemd started the default channel's client")
        t.check("event=config_unsupported" not in log, "sync_rightnow_channel is no longer unsupported")
        t.check("event=rightnow_" not in log, "a rightnow channel that is not logged to waits for nothing")
        t.check("event=config_warning option=sync_rightnow_channel channel=repl9" in log,
                "and tandemd says so at start")
        mdaemon.stop()
        mdaemon = None
        t.imap_equal(master, rroot, "the default channel's pair")
finally:
    if mdaemon:
        mdaemon.stop()
    rdaemon.stop()
    master.cleanup()
    rroot.cleanup()

# ---- with a real Cyrus 3.6 ---------------------------------------------------------------
if cyrus_skip_reason():
    t.skip(cyrus_skip_reason(), "the Cyrus cases: Cyrus 3.6 is not installed or not root "
           "(make check installs it: scripts/deps.sh check)", 2)
    t.done()
croot = tempfile.mkdtemp(prefix="tandem-cyrus-", dir="/tmp")
os.chmod(croot, 0o755)
started = []
try:
    cr = cyrus.Cyrus(croot, "cyrus-replica", sync_server=True, admins="admin repl")
    started.append(cr)
    tm = Instance(root=os.path.join(croot, "tm"), channels="cy")

    with t.case("tandem sync -A into Cyrus: new users keep their subscriptions; a shared mailbox goes too"):
        tm.ok(["user", "add", "erin"], "erinpw\n")
        tm.ok(["mailbox", "create", "user.erin.Lists"])
        tm.ok(["mailbox", "create", "shared.board"])
        tm.ok(["deliver", "erin+Lists"], make_message(t.rng, 40))
        td = Daemon(tm, services=("imap",))
        im = imaplib.IMAP4("127.0.0.1", td.port["imap"])
        im.login("erin", "erinpw")
        t.eq(im.subscribe("INBOX.Lists")[0], "OK", "erin subscribes to Lists on tandem")
        t.eq(im.subscribe("INBOX")[0], "OK", "erin subscribes to INBOX on tandem")
        im.logout()
        td.stop()
        # the replica is configured only now: no rolling client ran before -A
        with open(tm.conf, "a") as f:
            f.write(f"cy_sync_host: 127.0.0.1:{cr.sync_port}\nsync_authname: repl\nsync_password: replpw\n")
        r2 = tm.run(["sync", "-n", "cy", "-o", "-A"])
        t.eq(r2.returncode, 0, f"tandem sync -A into Cyrus: {r2.stderr[-500:]}")
        cr.add_login("erin", "erinpw")
        im = cr.imap("erin", "erinpw")
        lsub = [x.decode() for x in im.lsub('""', "*")[1] if x]
        im.logout()
        t.eq(len(lsub), 2, f"Cyrus's LSUB shows erin's two subscriptions: {lsub}")
        t.check(any("Lists" in l for l in lsub), f"Cyrus's LSUB shows erin's Lists: {lsub}")
        im = cr.imap()
        names = [x.decode() for x in im.list()[1] if x]
        im.logout()
        t.check(any("shared.board" in n or n.endswith(" board") or n.endswith(' "board"') for n in names),
                f"the shared mailbox is on Cyrus: {names}")
        r3 = tm.run(["compare", "-n", "cy", "-o", "--bodies"])
        t.eq(r3.returncode, 0, f"tandem compare against Cyrus: {r3.stdout[-500:]}")

    with t.case("Cyrus sync_client -m shared.news into tandem (the replica's session crashed)"):
        trep = allow_replication(Instance(root=os.path.join(croot, "trep")))
        tport = free_port()
        tdaemon = Daemon(trep, services=("sync",), ports={"sync": tport})
        started.append(tdaemon)
        cm = cyrus.Cyrus(croot, "cyrus-master", sync_to=tport)
        started.append(cm)
        im = cm.imap()
        t.eq(im.create("shared.news")[0], "OK", "create shared.news on Cyrus")
        im.setacl("shared.news", "admin", "lrswipkxtecdan")
        for i in range(2):
            t.eq(im.append("shared.news", "(\\Flagged)", None, make_message(t.rng, 60 + i))[0], "OK", "APPEND")
        im.logout()
        r4 = cm.sync_client("-m", "shared.news")
        t.eq(r4.returncode, 0, f"sync_client -m shared.news: {r4.stdout[-300:]} {r4.stderr[-300:]}")
        rows = trep.messages("shared.news")
        t.eq(len(rows), 2, "both messages are on tandem")
        t.check(all("\\Flagged" in row[2] for row in rows), f"with their flags: {rows}")
        t.eq([l for l in tdaemon.log().splitlines() if "event=apply_fail" in l], [], "tandem refused nothing")
finally:
    for c in started:
        c.stop()
    import shutil
    shutil.rmtree(croot, ignore_errors=True)

t.done()
