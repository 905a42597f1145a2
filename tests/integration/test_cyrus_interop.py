"""test_cyrus_interop.py: tandem and a real Cyrus IMAP 3.6 (Debian's
packages) replicate to each other, over csync and over IMAP (SYNCGET /
SYNCAPPLY, reference §2.10).

1. Cyrus master -> tandem replica: Cyrus's own sync_client (-A, then
   rolling -R -1 after renames, flag changes and new mail) into tandem's
   sync server. Every APPLY MAILBOX passes tandem's CRC check (so tandem
   computes Cyrus's SYNC_CRC and SYNC_CRC_ANNOT), and tandem holds what
   Cyrus's IMAP shows: mailboxes, UIDVALIDITY, UIDs, modseqs, flags, and
   bodies byte for byte (SHA-1).
2. tandem master -> Cyrus replica: tandem's sync client (-A, then rolling)
   into Cyrus's sync_server; Cyrus accepts every command, and `tandem
   compare --bodies` (GET FULLMAILBOX + GET FETCH from Cyrus) finds no
   difference; with sync_batchsize 100 a 300-message mailbox goes in
   parts (partial APPLY MAILBOX states, reference §6.6) that Cyrus takes.
3. Both directions again over the IMAP transport: Cyrus's sync_client with
   sync_try_imap into tandem's imapd, and tandem's sync client into Cyrus's
   imapd, with the same equality checks.
"""
import os
import re
import shutil
import tempfile

import subprocess

import cyrus
from tlib import Daemon, Instance, Suite, free_port, make_message, cyrus_skip_reason

t = Suite("cyrus-interop")
if cyrus_skip_reason():
    t.skip(cyrus_skip_reason(), "every case: Cyrus 3.6 is not installed or not root "
           "(make check installs it: scripts/deps.sh check)", count=9)
    t.done()

# Cyrus runs as the cyrus user: its directories must be reachable by it, so
# not under the test runner's private (0700) TMPDIR.
root = tempfile.mkdtemp(prefix="tandem-cyrus-", dir="/tmp")
os.chmod(root, 0o755)
started = []


def cyrus_state(cy, mailbox):
    """UIDVALIDITY and [(uid, modseq, flags, sha1)], as Cyrus's IMAP shows them."""
    im = cy.imap()
    st = im.status(mailbox, "(UIDVALIDITY)")[1][0].decode()
    uidvalidity = int(re.search(r"UIDVALIDITY (\d+)", st).group(1))
    rows = cyrus.fetch_rows(im, mailbox, drop=("\\Recent", "\\Seen"))
    im.logout()
    return uidvalidity, rows


def tandem_state(inst, mailbox):
    rows = []
    for uid, modseq, flags, _, _, guid in inst.messages(mailbox):
        rows.append((uid, modseq, sorted(f for f in flags.split() if f != "\\Seen"), guid))
    uv = [l.split("\t")[2] for l in inst.ok(["mailbox", "list"]).splitlines() if l.split("\t")[0] == mailbox]
    return int(uv[0]) if uv else None, rows


try:
    # ---- 1. Cyrus master -> tandem replica -------------------------------------------------
    rep = Instance(root=os.path.join(root, "t"))
    os.makedirs(rep.root, exist_ok=True)
    text = open(rep.conf).read().replace("admins: admin\n", "admins: admin repl\n")
    open(rep.conf, "w").write(text)
    rep.ok(["user", "add", "repl"], "replpw\n")
    sport = free_port()
    d = Daemon(rep, services=("sync",), ports={"sync": sport})
    started.append(d)
    cm = cyrus.Cyrus(root, "cyrus-master", sync_to=sport)
    started.append(cm)
    boxes = ["user.alice", "user.alice.Work", "user.bob"]

    def check_cyrus_to_tandem(what):
        for mb in boxes:
            cu, crows = cyrus_state(cm, mb)
            tu, trows = tandem_state(rep, mb)
            t.eq(tu, cu, f"{what}: UIDVALIDITY of {mb}")
            t.eq(trows, crows, f"{what}: records of {mb} (uid, modseq, flags, body SHA-1)")
        fails = [l for l in d.log().splitlines() if "event=apply_fail" in l]
        t.eq(fails, [], f"{what}: tandem refused nothing Cyrus sent")

    with t.case("Cyrus sync_client -A into tandem"):
        im = cm.imap()
        for mb in boxes:
            t.eq(im.create(mb)[0], "OK", f"create {mb} on Cyrus")
            im.setacl(mb, "admin", "lrswipkxtecdan")
            im.setacl(mb, "anyone", "p")
        for i in range(6):
            cm.deliver(t.rng.choice(["alice", "alice+Work", "bob"]), make_message(t.rng, i))
        im.select("user.alice")
        im.store("1", "+FLAGS", "(\\Flagged $Label1)")
        im.store("2", "+FLAGS", "(\\Deleted)")
        im.expunge()
        im.logout()
        r = cm.sync_client("-A")
        t.eq(r.returncode, 0, f"sync_client -A: {r.stdout[-300:]} {r.stderr[-300:]}")
        check_cyrus_to_tandem("after -A")

    with t.case("Cyrus sync_client rolling (-R -1): rename, flags, new mail, new folder"):
        im = cm.imap()
        t.eq(im.rename("user.alice.Work", "user.alice.Jobs")[0], "OK", "rename on Cyrus")
        boxes[1] = "user.alice.Jobs"
        im.create("user.bob.New")
        im.setacl("user.bob.New", "admin", "lrswipkxtecdan")
        boxes.append("user.bob.New")
        im.select("user.alice")
        im.store("1", "-FLAGS", "(\\Flagged)")
        im.store("1", "+FLAGS", "(\\Answered)")
        im.logout()
        cm.deliver("bob", make_message(t.rng, 50))
        r = cm.sync_client("-R", "-1")
        t.eq(r.returncode, 0, f"sync_client -R -1: {r.stderr[-300:]}")
        check_cyrus_to_tandem("after the rolling pass")
        t.check(any("user.alice.Jobs" in l for l in rep.ok(["mailbox", "list", "alice"]).splitlines()),
                "renamed mailbox present on tandem")

    with t.case("Cyrus sync_client -A over IMAP into tandem's imapd"):
        rep2 = Instance(root=os.path.join(root, "t2"))
        text = open(rep2.conf).read().replace("admins: admin\n", "admins: admin repl\n")
        open(rep2.conf, "w").write(text)
        rep2.ok(["user", "add", "repl"], "replpw\n")
        d2 = Daemon(rep2, services=("imap",))
        started.append(d2)
        # the same Cyrus master, with a config that points its client at
        # tandem's IMAP port and lets it use the IMAP transport
        alt = os.path.join(cm.dir, "imapd-via-imap.conf")
        text = open(cm.conf).read().replace(f"sync_port: {sport}", f"sync_port: {d2.port['imap']}")
        open(alt, "w").write(text.replace("sync_try_imap: 0", "sync_try_imap: 1"))
        subprocess.run(["chown", "cyrus:mail", alt], check=True)
        r = cyrus.as_cyrus([os.path.join(cyrus.LIBEXEC, "sync_client"), "-C", alt, "-v", "-A"], cwd=cm.dir,
                           capture_output=True, text=True, timeout=120)
        t.eq(r.returncode, 0, f"sync_client -A over IMAP: {r.stdout[-300:]} {r.stderr[-300:]}")
        for mb in boxes:
            t.eq(tandem_state(rep2, mb), cyrus_state(cm, mb), f"over IMAP: {mb} (UIDVALIDITY, records)")
        log = d2.log()
        t.check("event=login" in log and "user=repl" in log and "admin=1" in log,
                "Cyrus's client logged in to tandem's imapd as an admin")
        t.eq([l for l in log.splitlines() if "event=apply_fail" in l], [], "tandem refused nothing")

    with t.case("Cyrus sync_client rolling (-R -1) over IMAP into tandem's imapd"):
        im = cm.imap()
        im.select("user.alice")
        im.store("1", "+FLAGS", "(\\Seen $Label2)")
        im.logout()
        cm.deliver("bob", make_message(t.rng, 60))
        cm.deliver("alice", make_message(t.rng, 61))
        # the rolling pass consumes the log both replicas' changes are in;
        # the csync replica catches up with -u afterwards
        r = cyrus.as_cyrus([os.path.join(cyrus.LIBEXEC, "sync_client"), "-C", alt, "-R", "-1"], cwd=cm.dir,
                           capture_output=True, text=True, timeout=120)
        t.eq(r.returncode, 0, f"sync_client -R -1 over IMAP: {r.stdout[-300:]} {r.stderr[-300:]}")
        for mb in boxes:
            t.eq(tandem_state(rep2, mb), cyrus_state(cm, mb), f"rolling over IMAP: {mb}")
        r = cm.sync_client("-u", "alice", "bob")
        t.eq(r.returncode, 0, f"sync_client -u to the csync replica: {r.stderr[-300:]}")

    # ---- 2. tandem master -> Cyrus replica ---------------------------------------------------
    cr = cyrus.Cyrus(root, "cyrus-replica", sync_server=True, admins="admin repl")
    started.append(cr)
    tm = Instance(root=os.path.join(root, "tm"), channels="cy",
                  extra_conf=f"cy_sync_host: 127.0.0.1:{cr.sync_port}\nsync_authname: repl\nsync_password: replpw\n")

    with t.case("round trip: Cyrus -> tandem -> a second Cyrus loses nothing"):
        with open(rep.conf, "a") as f:
            f.write("sync_authname: repl\nsync_password: replpw\n")
        r = rep.run(["sync", "-S", f"127.0.0.1:{cr.sync_port}", "-o", "-u", "alice", "bob"])
        t.eq(r.returncode, 0, f"tandem -> second Cyrus: {r.stderr[-500:]}")
        for mb in boxes:
            t.eq(cyrus_state(cr, mb), cyrus_state(cm, mb), f"the two Cyrus instances agree on {mb}")
        im1, im2 = cm.imap(), cr.imap()
        for mb in boxes:
            a = im1.status(mb, "(UIDVALIDITY UIDNEXT HIGHESTMODSEQ MESSAGES)")[1][0]
            b = im2.status(mb, "(UIDVALIDITY UIDNEXT HIGHESTMODSEQ MESSAGES)")[1][0]
            t.eq(b, a, f"STATUS of {mb} (UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ, MESSAGES)")
        im1.logout()
        im2.logout()

    with t.case("tandem sync -A into Cyrus sync_server"):
        for u in ["carol", "dave"]:
            tm.ok(["user", "add", "--no-password", u])
        tm.ok(["mailbox", "create", "user.carol.Lists"])
        for i in range(6):
            tm.ok(["deliver", t.rng.choice(["carol", "dave", "carol+Lists"])], make_message(t.rng, 100 + i))
        tm.ok(["message", "flag", "user.carol", "1", "+\\Flagged $Label1"])
        tm.run(["message", "flag", "user.carol", "2", "+\\Deleted"])
        tm.ok(["message", "expunge", "user.carol"])
        r = tm.run(["sync", "-n", "cy", "-o", "-A"])
        t.eq(r.returncode, 0, f"tandem sync -A: {r.stderr[-500:]}")
        r = tm.run(["compare", "-n", "cy", "-o", "--bodies", "carol", "dave"])
        t.eq(r.returncode, 0, f"compare with Cyrus: {r.stdout[-800:]}")

    with t.case("tandem rolling into Cyrus: rename, delete, flags, new mail"):
        tm.ok(["mailbox", "rename", "user.carol.Lists", "user.carol.Archive"])
        tm.ok(["mailbox", "create", "user.dave.Tmp"])
        tm.ok(["deliver", "dave+Tmp"], make_message(t.rng, 200))
        tm.ok(["mailbox", "delete", "user.dave.Tmp"])
        tm.ok(["message", "flag", "user.dave", "1", "+\\Answered work"])
        tm.ok(["deliver", "carol"], make_message(t.rng, 201))
        r = tm.run(["sync", "-n", "cy", "-o", "-r", "-1"])
        t.eq(r.returncode, 0, f"rolling pass: {r.stderr[-500:]}")
        r = tm.run(["compare", "-n", "cy", "-o", "--bodies", "carol", "dave"])
        t.eq(r.returncode, 0, f"compare with Cyrus: {r.stdout[-800:]}")
        im = cr.imap()
        names = [x.decode() for x in im.list('""', '"user.*"')[1]]
        t.check(any("user.carol.Archive" in n for n in names) and not any("user.dave.Tmp" in n for n in names),
                f"Cyrus shows the rename and the delete: {names}")
        im.logout()
    with t.case("tandem sync_batchsize 100 into Cyrus: 300 messages in 3+ APPLY MAILBOX parts, then 250 more"):
        tb = Instance(root=os.path.join(root, "tb"), channels="cyb",
                      extra_conf=f"cyb_sync_host: 127.0.0.1:{cr.sync_port}\nsync_authname: repl\n"
                                 "sync_password: replpw\nsync_batchsize: 100\n")
        tb.ok(["user", "add", "--no-password", "frank"])

        def parts(stderr):
            return sum(1 for l in stderr.splitlines() if "event=sync_send" in l and 'command="APPLY MAILBOX' in l)
        for i in range(300):
            tb.ok(["deliver", "frank"], make_message(t.rng, 400 + i, size=t.rng.randint(300, 2000)))
        tb.ok(["message", "flag", "user.frank", "20", "+\\Flagged $Work"])
        tb.ok(["message", "flag", "user.frank", "30", "+\\Deleted"])
        tb.ok(["message", "expunge", "user.frank"])
        r = tb.run(["sync", "-n", "cyb", "-o", "-v", "-u", "frank"], timeout=300)
        t.eq(r.returncode, 0, f"tandem sync -u in parts: {r.stderr[-500:]}")
        t.check(parts(r.stderr) >= 3, f"APPLY MAILBOX commands: {parts(r.stderr)}, want 3 or more")
        t.check("sync_full_update" not in r.stderr, "Cyrus accepted every part (no full update)")
        r = tb.run(["compare", "-n", "cyb", "-o", "--bodies", "frank"], timeout=300)
        t.eq(r.returncode, 0, f"compare with Cyrus: {r.stdout[-800:]}")
        for i in range(250):
            tb.ok(["deliver", "frank"], make_message(t.rng, 800 + i, size=t.rng.randint(300, 2000)))
        tb.ok(["message", "flag", "user.frank", "5", "+\\Answered"])
        r = tb.run(["sync", "-n", "cyb", "-o", "-v", "-u", "frank"], timeout=300)
        t.eq(r.returncode, 0, f"incremental sync in parts: {r.stderr[-500:]}")
        t.check(parts(r.stderr) >= 3, f"APPLY MAILBOX commands: {parts(r.stderr)}, want 3 or more")
        t.check("sync_full_update" not in r.stderr, "Cyrus accepted every incremental part")
        r = tb.run(["compare", "-n", "cyb", "-o", "--bodies", "frank"], timeout=300)
        t.eq(r.returncode, 0, f"compare with Cyrus: {r.stdout[-800:]}")

    with t.case("tandem sync -A over IMAP into Cyrus imapd"):
        tm2 = Instance(root=os.path.join(root, "tm2"), channels="cyi",
                       extra_conf=f"cyi_sync_host: 127.0.0.1:{cr.imap_port}\nsync_authname: repl\n"
                                  "sync_password: replpw\n")
        tm2.ok(["user", "add", "--no-password", "erin"])
        tm2.ok(["mailbox", "create", "user.erin.Projects"])
        for i in range(5):
            tm2.ok(["deliver", t.rng.choice(["erin", "erin+Projects"])], make_message(t.rng, 300 + i))
        tm2.ok(["message", "flag", "user.erin", "1", "+\\Flagged $Label2"])
        r = tm2.run(["sync", "-n", "cyi", "-o", "-A"])
        t.eq(r.returncode, 0, f"tandem sync -A over IMAP: {r.stderr[-500:]}")
        t.check("transport=imap" in r.stderr, "the IMAP transport was used")
        tm2.ok(["deliver", "erin"], make_message(t.rng, 310))
        tm2.ok(["mailbox", "rename", "user.erin.Projects", "user.erin.Done"])
        r = tm2.run(["sync", "-n", "cyi", "-o", "-r", "-1"])
        t.eq(r.returncode, 0, f"rolling pass over IMAP: {r.stderr[-500:]}")
        r = tm2.run(["compare", "-n", "cyi", "-o", "--bodies", "erin"])
        t.eq(r.returncode, 0, f"compare with Cyrus over IMAP: {r.stdout[-800:]}")

finally:
    for s in reversed(started):
        s.stop()
    shutil.rmtree(root, ignore_errors=True)
t.done()
