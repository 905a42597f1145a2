"""test_cyrus_state.py: per-user state replicated from a real Cyrus 3.6
master into tandem, checked by asking both servers the same IMAP
questions as the users themselves.

Cyrus's own sync_client, in its -u (users) and -m (mailboxes) modes,
into tandem's sync server. State covered: subscriptions, the owner's
\\Seen (in the records) and another user's \\Seen (seen database, APPLY
SEEN), shared and private mailbox annotations (METADATA), quota roots and
limits, special-use, ACLs; then -m of one mailbox after new mail.
"""
import os
import re
import shutil
import tempfile

import imaplib

import cyrus
from imapview import flags_of, metadata_pairs
from tlib import Daemon, Instance, Suite, free_port, make_message, cyrus_skip_reason

t = Suite("cyrus-state")
if cyrus_skip_reason():
    t.skip(cyrus_skip_reason(), "every case: Cyrus 3.6 is not installed or not root "
           "(make check installs it: scripts/deps.sh check)", count=2)
    t.done()

imaplib.Commands.setdefault("GETMETADATA", ("AUTH", "SELECTED"))
imaplib.Commands.setdefault("SETMETADATA", ("AUTH", "SELECTED"))
root = tempfile.mkdtemp(prefix="tandem-cyrus-", dir="/tmp")
os.chmod(root, 0o755)
started = []
USERS = {"alice": "alicepw", "bob": "bobpw"}


def answers(im, user):
    """What a user's client sees: subscriptions, flags, metadata, quota, special-use."""
    a = {}
    a["lsub"] = sorted(x.decode() for x in im.lsub('""', "*")[1] if x)
    a["list-special"] = sorted(x.decode() for x in im.list('""', "*")[1] if x and b"\\Sent" in x)
    typ, data = im.getquotaroot("INBOX")
    a["quota"] = [x.decode() if isinstance(x, bytes) else str(x) for x in data if x] if typ == "OK" else typ
    for mb in ["INBOX", "INBOX.Work"]:
        a[f"flags {mb}"] = flags_of(im, mb)
        typ, data = im._simple_command("GETMETADATA", mb, "(/shared/comment /private/comment)")
        typ, data = im._untagged_response(typ, data, "METADATA")
        a[f"metadata {mb}"] = metadata_pairs(data) if typ == "OK" else typ
    typ, data = im.getacl("INBOX.Work")
    a["acl"] = [x.decode() for x in data] if typ == "OK" else typ
    return a


def compare_users(cm, tandem_port, what):
    for user, pw in USERS.items():
        ci = cm.imap(user, pw)
        ti = imaplib.IMAP4("127.0.0.1", tandem_port)
        ti.login(user, pw)
        ca, ta = answers(ci, user), answers(ti, user)
        for k in ca:
            t.eq(ta.get(k), ca[k], f"{what}: {user}'s {k}")
        ci.logout()
        ti.logout()
    # another user's \Seen on alice's folder, as bob sees it
    ci, ti = cm.imap("bob", "bobpw"), imaplib.IMAP4("127.0.0.1", tandem_port)
    ti.login("bob", "bobpw")
    t.eq(flags_of(ti, "user.alice.Work"), flags_of(ci, "user.alice.Work"),
         f"{what}: bob's view (his own \\Seen) of user.alice.Work")
    ci.logout()
    ti.logout()


try:
    rep = Instance(root=os.path.join(root, "t"))
    text = open(rep.conf).read().replace("admins: admin\n", "admins: admin repl\n")
    open(rep.conf, "w").write(text)
    rep.ok(["user", "add", "repl"], "replpw\n")
    sport = free_port()
    d = Daemon(rep, services=("sync", "imap"), ports={"sync": sport})
    started.append(d)
    cm = cyrus.Cyrus(root, "cyrus-master", sync_to=sport)
    started.append(cm)
    for u, pw in USERS.items():
        cm.add_login(u, pw)

    with t.case("Cyrus sync_client -u: subscriptions, seen, annotations, quota, special-use, ACL"):
        cyrus.sample_state(cm, t, t.rng, messages=5)
        r = cm.sync_client("-u", "alice", "bob")
        t.eq(r.returncode, 0, f"sync_client -u: {r.stdout[-300:]} {r.stderr[-300:]}")
        for u, pw in USERS.items():
            rep.ok(["user", "passwd", u], pw + "\n")
        if os.environ.get("DEBUG_DUMP"):
            print(rep.ok(["dump", "user.alice.Sent"]))
        compare_users(cm, d.port["imap"], "after -u")
        t.eq([l for l in d.log().splitlines() if "event=apply_fail" in l], [], "tandem refused nothing")

    with t.case("Cyrus sync_client -m: one mailbox after new mail and flag changes"):
        cm.deliver("alice+Work", make_message(t.rng, 10))
        al = cm.imap("alice", "alicepw")
        al.select("INBOX.Work")
        al.store("1", "-FLAGS", "($Label1)")
        al.logout()
        r = cm.sync_client("-m", "user.alice.Work")
        t.eq(r.returncode, 0, f"sync_client -m: {r.stdout[-300:]} {r.stderr[-300:]}")
        compare_users(cm, d.port["imap"], "after -m")
finally:
    for s in reversed(started):
        s.stop()
    shutil.rmtree(root, ignore_errors=True)
t.done()
