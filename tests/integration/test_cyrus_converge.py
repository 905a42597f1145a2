"""test_cyrus_converge.py: the convergence test's random sequences against a
real Cyrus 3.6 replica (the slow path of tests/unit/test_sync_converge.c).

For a few seeds: a tandem master replicates to Cyrus's sync_server over
csync with rolling passes (`tandem sync -r -1`) at random points of a random
sequence of changes made with the `tandem` admin command (users added and
deleted, folders created, renamed with their children and deleted,
deliveries to several users, flags with user flags, expunges, message and
mailbox annotations, shared mailboxes). At the end the pair must be equal
by `tandem compare --bodies` (the engine's view) and by what an IMAP client
sees on both sides (folders, UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ, per UID
flags and modseq, body SHA-1), as Cyrus's own imapd answers it.

TANDEM_CYRUS_SEEDS sets how many seeds (default 3); each seed is printed, and
TANDEM_CYRUS_SEED=S TANDEM_CYRUS_SEEDS=1 reruns one.
"""
import imaplib
import os
import random
import re
import shutil
import tempfile

import cyrus
from tlib import cyrus_skip_reason, Daemon, Instance, Suite, make_message

t = Suite("cyrus-converge")
if cyrus_skip_reason():
    t.skip(cyrus_skip_reason(), "the Cyrus cases: Cyrus 3.6 is not installed or not root "
           "(make check installs it: scripts/deps.sh check)", 1)
    t.done()

USERS = ["ann", "bob"]
FOLDERS = ["", ".Sent", ".A", ".A.B", ".Trash"]


def imap_state(im, mailboxes):
    """{mailbox: (status numbers, [(uid, modseq, flags, sha1)])} as an IMAP client sees it."""
    out = {}
    for mb in mailboxes:
        typ, st = im.status(mb, "(UIDVALIDITY UIDNEXT HIGHESTMODSEQ MESSAGES)")
        if typ != "OK":
            out[mb] = None
            continue
        nums = dict((k.decode(), int(v)) for k, v in re.findall(rb"([A-Z]+) (\d+)", st[0].split(b"(", 1)[1]))
        out[mb] = (nums, cyrus.fetch_rows(im, mb))
        im.unselect() if hasattr(im, "unselect") else im.close()
    return out


def listed(im):
    """The folders a user lists."""
    typ, data = im.list()
    return sorted(d.decode().rsplit(" ", 1)[1].strip('"') for d in data or [] if d)


def trace(*a):
    if os.environ.get("TANDEM_VERBOSE"):
        print("op", *a)


def random_op(rng, m, i):
    user = rng.choice(USERS)
    op = rng.randrange(100)
    mb = f"user.{user}{rng.choice(FOLDERS)}" if rng.randrange(6) else "shared.news"
    trace(i, op, user, mb)
    if op < 8:
        m.run(["user", "add", user], f"{user}pw\n")
    elif op < 10:
        trace("userdel", user, m.run(["user", "del", user]).returncode)
    elif op < 22:
        trace("create", mb, m.run(["mailbox", "create", mb]).returncode)
    elif op < 27:
        if mb != "shared.news" and mb != f"user.{user}":
            to = f"user.{user}{rng.choice(FOLDERS[1:])}"
            r = m.run(["mailbox", "rename", mb, to])
            trace("rename", mb, to, r.returncode)
    elif op < 30:
        if mb != f"user.{user}":
            trace("delete", mb, m.run(["mailbox", "delete", mb]).returncode)
    elif op < 60:
        rcpts = [f"{u}{('+' + f[1:]) if f else ''}" for u in rng.sample(USERS, rng.randint(1, 2))
                 for f in [rng.choice(FOLDERS)]]
        m.run(["deliver", "--flags", rng.choice(["", "\\Seen", "$Label1 \\Flagged"])] + rcpts,
              make_message(rng, i))
    elif op < 80:
        rows = m.run(["message", "list", mb]).stdout.split("\n")
        uids = [l.split("\t")[0] for l in rows if l]
        if uids:
            m.run(["message", "flag", mb, rng.choice(uids),
                   rng.choice(["+", "-", "="]) + rng.choice(["\\Seen", "\\Flagged $Label2", "\\Deleted", "work"])])
    elif op < 90:
        m.run(["message", "expunge", mb])
    else:
        rows = m.run(["message", "list", mb]).stdout.split("\n")
        uids = [l.split("\t")[0] for l in rows if l] + ["0"]
        m.run(["message", "annotate", mb, rng.choice(uids), "/comment", "", rng.choice(["", "a note", "x"])])


seeds = int(os.environ.get("TANDEM_CYRUS_SEEDS", "3"))
root = tempfile.mkdtemp(prefix="tandem-cyconv-", dir="/tmp")
os.chmod(root, 0o755)
try:
    for k in range(seeds):
        seed = int(os.environ["TANDEM_CYRUS_SEED"]) if os.environ.get("TANDEM_CYRUS_SEED") else t.rng.randrange(1 << 30)
        rng = random.Random(seed)
        cr = m = d = None
        with t.case(f"seed {seed}: random changes, rolling passes into Cyrus 3.6, then equal"):
            try:
                cr = cyrus.Cyrus(root, f"cyrus-replica{k}", sync_server=True, admins="admin repl")
                m = Instance(root=os.path.join(root, f"m{k}"), channels="cy",
                             extra_conf=f"cy_sync_host: 127.0.0.1:{cr.sync_port}\nsync_authname: repl\n"
                                        "sync_password: replpw\n")
                failures = []
                for i in range(60):
                    random_op(rng, m, i)
                    if rng.randrange(4) == 0:
                        trace("pass")
                        r = m.run(["sync", "-n", "cy", "-o", "-r", "-1"], timeout=120)
                        if r.returncode != 0:
                            failures.append(r.stderr[-300:])
                r = m.run(["sync", "-n", "cy", "-o", "-r", "-1"], timeout=120)
                if r.returncode != 0:
                    failures.append(r.stderr[-300:])
                t.eq(failures, [], "every rolling pass into Cyrus succeeded")
                st = m.ok(["status", "-n", "cy"])
                t.check("state=failed" not in st, f"no mailbox failed: {st}")
                c = m.run(["compare", "-n", "cy", "-o", "--bodies"], timeout=120)
                t.eq(c.returncode, 0, f"tandem compare --bodies: {c.stdout[-600:]}")
                d = Daemon(m, services=("imap",))
                for u in USERS:
                    cr.add_login(u, f"{u}pw")
                    exists = m.run(["user", "list"]).stdout.split()
                    if u not in exists:
                        continue
                    tm = imaplib.IMAP4("127.0.0.1", d.port["imap"])
                    tm.login(u, f"{u}pw")
                    cm = cr.imap(u, f"{u}pw")
                    tl, cl = listed(tm), listed(cm)
                    t.eq(tl, cl, f"{u} sees the same folders")
                    t.eq(imap_state(tm, tl), imap_state(cm, cl), f"{u} sees the same numbers, flags, modseqs, bodies")
                    tm.logout()
                    cm.logout()
            finally:
                if d:
                    d.stop()
                if cr:
                    cr.stop()
finally:
    shutil.rmtree(root, ignore_errors=True)

t.done()
