"""test_move_user.py: tandem move-user (docs/operations.md "Moving a user").

A master (a tandemd with IMAP and LMTP, and a rolling replica of its own on
channel repl1) moves users to another tandem store and to a real Cyrus 3.6
store while LMTP deliveries keep arriving for them. TANDEM_TEST_MOVE_HOLD
holds each move right after the lock, so the checks of the locked state do
not depend on timing:

1. to tandem: while locked, a delivery gets 451 4.2.1 (another user's 250;
   one whose RCPT came before the lock gets it at DATA), the user's open IMAP
   sessions get * BYE [UNAVAILABLE] while idle and in IDLE, a login
   gets NO [UNAVAILABLE], `tandem user list` says "locked"; after it, the
   record "moved-to=" is listed, LMTP and IMAP keep answering with temporary
   errors (a wrong password learns nothing), every delivery answered 250 is
   on the target (counted by IMAP there) and, the 451 ones delivered to the
   target as the MTA would, none is lost; the target holds exactly what the
   master held when it was locked (uid, modseq, flags, dates, size, GUID);
   alice's quota went along; the removal replicated to the master's own
   replica; `user unmove`.
2. to Cyrus 3.6 (its sync_server): the same deliveries and checks, with
   Cyrus's IMAP showing every record and body.
3. failures: the target stops while the user is locked (the move fails,
   the user is unlocked, takes mail and logins, loses nothing; a second run
   finishes the move from the partial copy); SIGINT while locked; a wrong
   sync_password; a target that already holds the user; a target that is
   the master's own replica.
"""
import imaplib
import os
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import tempfile
import threading
import time

import cyrus
from tlib import (BIN, Daemon, Instance, Pair, Suite, allow_replication, cyrus_skip_reason, make_message,
                  wait_equal, wait_for)

t = Suite("move-user")
root = tempfile.mkdtemp(prefix="tandem-move-", dir="/tmp")
os.chmod(root, 0o755)
started = []


def lmtp_rcpt(port, rcpt, msg):
    """(code, text) of one delivery to rcpt."""
    l = smtplib.LMTP("127.0.0.1", port)
    try:
        l.sendmail("s@example.net", [rcpt], msg)
        return 250, ""
    except smtplib.SMTPRecipientsRefused as e:
        code, text = list(e.recipients.values())[0]
        return code, text.decode() if isinstance(text, bytes) else text
    except smtplib.SMTPDataError as e:
        return e.smtp_code, e.smtp_error.decode() if isinstance(e.smtp_error, bytes) else e.smtp_error
    finally:
        try:
            l.close()
        except OSError:
            pass


def msgid(msg):
    return re.search(rb"Message-ID: (<[^>]+>)", msg).group(1).decode()


class Deliveries(threading.Thread):
    """LMTP deliveries to one user until stopped; every answer recorded."""

    def __init__(self, port, rcpt, rng, base):
        super().__init__(daemon=True)
        self.port, self.rcpt, self.rng, self.base = port, rcpt, rng, base
        self.sent = []      # (message, code, text)
        self.halt = threading.Event()

    def run(self):
        i = 0
        while not self.halt.is_set():
            msg = make_message(self.rng, self.base + i, size=self.rng.randint(300, 3000))
            code, text = lmtp_rcpt(self.port, self.rcpt, msg)
            self.sent.append((msg, code, text))
            i += 1
            time.sleep(0.01)

    def stop(self):
        self.halt.set()
        self.join(30)


def imap_msgids(port, user, password, mailbox="INBOX"):
    """Message-IDs of a mailbox as the user's IMAP login sees them."""
    im = imaplib.IMAP4("127.0.0.1", port)
    im.login(user, password)
    im.select(mailbox, readonly=True)
    typ, data = im.uid("FETCH", "1:*", "(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
    ids = []
    for d in data:
        if isinstance(d, tuple):
            m = re.search(rb"<[^>]+>", d[1])
            if m:
                ids.append(m.group(0).decode())
    im.logout()
    return ids


def snapshot(inst, user):
    """{mailbox: (uidvalidity, [(uid, modseq, flags, internaldate, size, guid)])} from the admin tool."""
    out = {}
    for line in inst.ok(["mailbox", "list", user]).splitlines():
        f = line.split("\t")
        out[f[0]] = (int(f[2]), inst.messages(f[0]))
    return out


def move(inst, user, target, hold=None, extra=()):
    """Starts move-user (with --progress); returns the Popen and its stderr lines (a list that fills)."""
    env = dict(os.environ)
    if hold:
        env["TANDEM_TEST_MOVE_HOLD"] = hold
    p = subprocess.Popen([os.path.join(BIN, "tandem"), "-C", inst.conf, "move-user", "--progress", *extra,
                          "-S", target, user], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    lines = []

    def read():
        for l in p.stderr:
            lines.append(l.decode("utf-8", "replace"))
    p.reader = threading.Thread(target=read, daemon=True)
    p.reader.start()
    return p, lines


def finish(p, lines, timeout=120):
    out = p.stdout.read().decode()
    p.wait(timeout)
    p.reader.join(timeout)      # every stderr line read
    return p.returncode, out, "".join(lines)


def locked_line(lines, user):
    return wait_for(lambda: any(f"move {user}: locked" in l for l in lines), 60, f"{user} locked")


def user_list(inst):
    return inst.ok(["user", "list"]).splitlines()


def imap_session(port, user, password):
    """A raw logged-in IMAP session with INBOX selected (socket, file)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    f = s.makefile("rb")
    f.readline()
    for tag, cmd in (("a1", f"LOGIN {user} {password}"), ("a2", "SELECT INBOX")):
        s.sendall(f"{tag} {cmd}\r\n".encode())
        while True:
            line = f.readline()
            if line.startswith(tag.encode()):
                assert b" OK " in line, line
                break
    return s, f


_got = {}


def _read_bye(sess, f):
    """What the idle session was sent, once it holds a BYE (None before)."""
    sess.settimeout(0.5)
    try:
        _got[sess] = _got.get(sess, b"") + sess.recv(4096)
    except (socket.timeout, OSError):
        pass
    return _got.get(sess) if b"* BYE" in _got.get(sess, b"") else None


def imaplib_list(port, user, password):
    im = imaplib.IMAP4("127.0.0.1", port)
    im.login(user, password)
    data = im.list()[1]
    im.logout()
    return data


def set_quota(port, root, kib):
    im = imaplib.IMAP4("127.0.0.1", port)
    im.login("admin", "adminpw")
    typ, data = im.setquota(root, f"(STORAGE {kib})")
    im.logout()
    return typ


def quota_of(port, user, password):
    """The STORAGE limit of the user's INBOX quota root, as the user sees it (None without)."""
    im = imaplib.IMAP4("127.0.0.1", port)
    im.login(user, password)
    typ, data = im.getquotaroot("INBOX")
    im.logout()
    for part in data:
        for x in (part if isinstance(part, list) else [part]):
            m = re.search(rb"STORAGE \d+ (\d+)", x if isinstance(x, bytes) else b"")
            if m:
                return int(m.group(1))
    return None


def login_answer(port, user, password):
    """'OK' or the text of the NO of a LOGIN."""
    im = imaplib.IMAP4("127.0.0.1", port)
    try:
        im.login(user, password)
        im.logout()
        return "OK"
    except imaplib.IMAP4.error as e:
        return str(e)


def fill(inst, user, rng, n_inbox, n_work, base):
    """A user with a password, a folder, flags, a subscription and mail."""
    inst.ok(["user", "add", user], f"{user}pw\n")
    inst.ok(["mailbox", "create", f"user.{user}.Work"])
    for i in range(n_inbox):
        flags = rng.choice(["", "\\Seen", "\\Flagged $Label1", "\\Answered"])
        inst.ok(["deliver"] + (["--flags", flags] if flags else []) + [user], make_message(rng, base + i))
    for i in range(n_work):
        inst.ok(["deliver", f"{user}+Work"], make_message(rng, base + 500 + i))
    inst.ok(["message", "flag", f"user.{user}", "1,2,3", "+\\Deleted"])
    inst.ok(["message", "expunge", f"user.{user}"])


def restart(daemon):
    daemon.proc = subprocess.Popen([os.path.join(BIN, "tandemd"), "-C", daemon.inst.conf, "-f"],
                                   stdout=subprocess.DEVNULL, stderr=open(daemon.logfile, "a"))
    port = list(daemon.port.values())[0]
    wait_for(lambda: _connects(port), 20, "tandemd listening again")


def _connects(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


try:
    # the master: a Pair's master (rolling replica on repl1) with its own tandemd (imap, lmtp)
    pair = Pair(channel="repl1")
    started.append(pair)
    m = pair.master
    dm = Daemon(m, services=("imap", "lmtp"))
    started.append(dm)
    # a tandem target
    tgt = allow_replication(Instance(root=os.path.join(root, "tgt")))
    dt = Daemon(tgt, services=("sync", "imap", "lmtp"))
    started.append(dt)
    target = f"127.0.0.1:{dt.port['sync']}"
    try:
        fill(m, "alice", t.rng, 40, 8, 0)
        m.ok(["user", "add", "bob"], "bobpw\n")
        m.ok(["user", "add", "admin"], "adminpw\n")
    except Exception:
        raise

    with t.case("setup: alice has 37 live messages in her INBOX"):
        t.eq(len(m.messages("user.alice")), 37, "alice's INBOX")

    with t.case("move to tandem under deliveries: 451 4.2.1, BYE, NO [UNAVAILABLE] while locked"):
        t.eq(set_quota(dm.port["imap"], "user.alice", 500000), "OK", "a quota on alice")
        sess, sf = imap_session(dm.port["imap"], "alice", "alicepw")
        idler, idf = imap_session(dm.port["imap"], "alice", "alicepw")
        idler.sendall(b"i1 IDLE\r\n")
        t.check(idf.readline().startswith(b"+"), "IDLE started")
        m.ok(["message", "flag", "user.alice", "4", "+$Before"])
        dl = Deliveries(dm.port["lmtp"], "alice", t.rng, 1000)
        dl.start()
        wait_for(lambda: sum(1 for _, c, _ in dl.sent if c == 250) >= 5, 30, "deliveries before the move")
        # a session whose RCPT is accepted before the lock and whose DATA comes while locked
        early = smtplib.LMTP("127.0.0.1", dm.port["lmtp"])
        early.ehlo()
        early.mail("s@example.net")
        t.eq(early.rcpt("alice")[0], 250, "RCPT before the move")
        hold = os.path.join(root, "hold-alice")
        open(hold, "w").close()
        p, lines = move(m, "alice", target, hold)
        locked_line(lines, "alice")
        code, text = early.data(make_message(t.rng, 4999))
        early.close()
        t.check(code == 451 and b"4.2.1" in text, f"DATA after the lock: {code} {text!r}")
        # locked: mail and logins refused, other users go on, the session ends
        code, text = lmtp_rcpt(dm.port["lmtp"], "alice", make_message(t.rng, 5000))
        t.eq(code, 451, "a delivery while locked")
        t.check("4.2.1" in text and "being moved to" in text, f"451 4.2.1 naming the move: {text!r}")
        t.eq(lmtp_rcpt(dm.port["lmtp"], "bob", make_message(t.rng, 5001))[0], 250, "bob's delivery")
        bye = wait_for(lambda: _read_bye(sess, sf), 20, "BYE in alice's idle session")
        t.check(b"* BYE [UNAVAILABLE]" in bye, f"the session got BYE [UNAVAILABLE]: {bye!r}")
        bye = wait_for(lambda: _read_bye(idler, idf), 20, "BYE in alice's IDLE session")
        t.check(b"* BYE [UNAVAILABLE]" in bye, f"the IDLE session got BYE [UNAVAILABLE]: {bye!r}")
        ans = login_answer(dm.port["imap"], "alice", "alicepw")
        t.check("[UNAVAILABLE]" in ans and "being moved" in ans, f"login while locked: {ans}")
        t.check(f"alice\tlocked move-to={target}" in "\n".join(user_list(m)), f"user list: {user_list(m)}")
        held = snapshot(m, "alice")     # frozen: no write of alice commits while locked
        t.check(any("$Before" in r[2] for r in held["user.alice"][1]), "the flag set before the move is in it")
        os.unlink(hold)
        rc, out, err = finish(p, lines)
        t.eq(rc, 0, f"move-user: {out} {err[-2000:]}")
        t.check(f"user alice moved to {target}" in out, f"stdout: {out}")
        prog = [l for l in err.splitlines() if l.startswith("move alice:")]
        t.check(any(re.search(r"copy mailboxes 2/2 messages \d+/\d+ bytes .* eta", l) for l in prog),
                f"progress lines (mailboxes, messages, bytes, ETA): {prog[:3]}")
        for ev in ("move_user_start", "move_user_locked", "move_user_done"):
            t.check(re.search(rf"event={ev} user=alice target={re.escape(target)}", err), f"log has {ev}")
        # after: the record, temporary errors naming the new store
        t.check(f"alice\tmoved-to={target}" in "\n".join(user_list(m)), f"user list: {user_list(m)}")
        code, text = lmtp_rcpt(dm.port["lmtp"], "alice", make_message(t.rng, 5002))
        t.check(code == 451 and "4.2.1" in text and f"moved to {target}" in text, f"LMTP after: {code} {text}")
        ans = login_answer(dm.port["imap"], "alice", "alicepw")
        t.check("[UNAVAILABLE]" in ans and f"moved to {target}" in ans, f"login after: {ans}")
        ans = login_answer(dm.port["imap"], "alice", "wrong")
        t.check("AUTHENTICATIONFAILED" in ans and "moved" not in ans, f"a wrong password learns nothing: {ans}")
        dl.stop()
        # the target holds what the master held when it was locked
        tgt.ok(["user", "passwd", "alice"], "alicepw\n")
        t.eq(snapshot(tgt, "alice"), held, "target == master at the lock (uidvalidity, uid, modseq, flags, "
                                          "dates, size, guid)")
        # none lost: the 250s are on the target; the 451s go there as the MTA retries
        ok = [msgid(x) for x, c, _ in dl.sent if c == 250]
        refused = [(x, c, tx) for x, c, tx in dl.sent if c != 250]
        t.check(all(c == 451 and "4.2.1" in tx for _, c, tx in refused),
                f"every refusal is 451 4.2.1: {set((c, tx) for _, c, tx in refused)}")
        t.check(len(refused) >= 1, "some deliveries came while locked or after")
        print(f"  alice: {len(dl.sent)} deliveries during the move: {len(ok)} answered 250, {len(refused)} 451")
        on_target = imap_msgids(dt.port["imap"], "alice", "alicepw")
        t.check(set(ok) <= set(on_target), f"every 250 is on the target ({len(ok)} acknowledged, "
                                           f"{len(set(ok) - set(on_target))} missing)")
        for x, _, _ in refused:
            t.eq(lmtp_rcpt(dt.port["lmtp"], "alice", x)[0], 250, "a refused one, delivered to the target")
        every = [msgid(x) for x, _, _ in dl.sent]
        on_target = imap_msgids(dt.port["imap"], "alice", "alicepw")
        t.eq(sorted(set(every) - set(on_target)), [], "no delivery lost")
        t.check(len(on_target) == 37 + len(dl.sent), f"count by IMAP on the target: {len(on_target)} == "
                                                     f"37 + {len(dl.sent)}")
        t.eq(quota_of(dt.port["imap"], "alice", "alicepw"), 500000, "alice's quota on the target")
        t.check("INBOX.Work" in " ".join(str(x) for x in imaplib_list(dt.port["imap"], "alice", "alicepw")),
                "alice's folder is on the target")

    with t.case("the removal replicates to the master's own replica as the user's deletion"):
        ok, out = wait_equal(m, "repl1")
        t.check(ok, f"master and its replica equal: {out[-500:]}")
        t.check("alice" not in pair.replica.ok(["user", "list"]).split(), "alice gone from the replica")
        t.check("bob" in pair.replica.ok(["user", "list"]).split(), "bob still there")

    with t.case("user unmove clears the record"):
        r = m.run(["user", "unmove", "alice"])
        t.eq(r.returncode, 0, f"unmove: {r.stderr}")
        t.check(not any(l.startswith("alice") for l in user_list(m)), f"user list: {user_list(m)}")
        t.eq(lmtp_rcpt(dm.port["lmtp"], "alice", make_message(t.rng, 5003))[0], 550, "LMTP: no such user now")
        t.eq(m.run(["user", "unmove", "alice"]).returncode, 1, "a second unmove: no record")

    with t.case("refused: the target is the master's own replica"):
        r = m.run(["move-user", "-S", f"127.0.0.1:{pair.port}", "bob"])
        t.eq(r.returncode, 2, f"exit 2: {r.stderr}")
        t.check("replica of channel 'repl1'" in r.stderr, r.stderr)
        t.check("bob" in user_list(m) and "bob\t" not in "\n".join(user_list(m)), f"bob untouched: {user_list(m)}")

    with t.case("failure: the target stops while the user is locked; unlocked, nothing lost; a rerun ends it"):
        fill(m, "dave", t.rng, 20, 3, 2000)
        before = snapshot(m, "dave")
        hold = os.path.join(root, "hold-dave")
        open(hold, "w").close()
        p, lines = move(m, "dave", target, hold)
        locked_line(lines, "dave")
        dt.stop()
        os.unlink(hold)
        rc, out, err = finish(p, lines)
        t.eq(rc, 1, f"the move fails: {err[-1500:]}")
        t.check("was not moved" in err, err[-500:])
        t.check(re.search(r"event=move_user_failed user=dave .*phase=final locked=1 unlocked=1", err),
                "move_user_failed, unlocked")
        t.check("dave" in user_list(m), f"dave listed without a record: {user_list(m)}")
        t.eq(snapshot(m, "dave"), before, "dave's mail untouched")
        t.eq(lmtp_rcpt(dm.port["lmtp"], "dave", make_message(t.rng, 2900))[0], 250, "dave takes mail again")
        t.eq(login_answer(dm.port["imap"], "dave", "davepw"), "OK", "dave logs in again")
        restart(dt)
        before = snapshot(m, "dave")
        p, lines = move(m, "dave", target)
        rc, out, err = finish(p, lines)
        t.eq(rc, 0, f"the second run: {err[-1500:]}")
        t.eq(snapshot(tgt, "dave"), before, "target == master after the second run")

    with t.case("failure: an interrupt (SIGINT) while locked unlocks; nothing lost"):
        fill(m, "gina", t.rng, 10, 2, 6000)
        before = snapshot(m, "gina")
        hold = os.path.join(root, "hold-gina")
        open(hold, "w").close()
        p, lines = move(m, "gina", target, hold)
        locked_line(lines, "gina")
        p.send_signal(signal.SIGINT)
        rc, out, err = finish(p, lines)
        os.unlink(hold)
        t.eq(rc, 1, f"interrupted: {err[-800:]}")
        t.check(re.search(r"event=move_user_failed user=gina .*locked=1 unlocked=1 error=interrupted", err),
                f"move_user_failed error=interrupted, unlocked: {err[-800:]}")
        t.check("gina" in user_list(m) and "gina\t" not in "\n".join(user_list(m)), "gina live, no record")
        t.eq(snapshot(m, "gina"), before, "gina's mail untouched")
        t.eq(lmtp_rcpt(dm.port["lmtp"], "gina", make_message(t.rng, 6900))[0], 250, "gina takes mail")

    with t.case("failure: a wrong sync_password; nothing locked"):
        m.ok(["user", "add", "erin"], "erinpw\n")
        bad = os.path.join(root, "wrongpw.conf")
        open(bad, "w").write(open(m.conf).read().replace("sync_password: replpw", "sync_password: nope"))
        r = subprocess.run([os.path.join(BIN, "tandem"), "-C", bad, "move-user", "-S", target, "erin"],
                           capture_output=True, text=True, timeout=120)
        t.eq(r.returncode, 1, f"refused: {r.stderr[-500:]}")
        t.check("erin" in user_list(m) and "erin\t" not in "\n".join(user_list(m)), "erin live, no record")
        t.eq(lmtp_rcpt(dm.port["lmtp"], "erin", make_message(t.rng, 3000))[0], 250, "erin takes mail")

    with t.case("-n CHANNEL: the channel's credentials with -S; alone it names this store's replica"):
        r = m.run(["move-user", "-n", "repl1", "erin"])
        t.eq(r.returncode, 2, f"-n repl1 alone is refused: {r.stderr[-300:]}")
        p, lines = move(m, "erin", target, extra=("-n", "repl1"))
        rc, out, err = finish(p, lines)
        t.eq(rc, 0, f"-n repl1 -S target: {err[-800:]}")
        t.check(f"erin\tmoved-to={target}" in "\n".join(user_list(m)), f"user list: {user_list(m)}")

    with t.case("failure: the target already holds the user; nothing sent"):
        tgt.ok(["user", "add", "frank"], "x\n")
        m.ok(["user", "add", "frank"], "frankpw\n")
        m.ok(["deliver", "frank"], make_message(t.rng, 3100))
        r = m.run(["move-user", "-S", target, "frank"])
        t.eq(r.returncode, 1, f"refused: {r.stderr[-500:]}")
        t.check("already holds user.frank" in r.stderr, r.stderr[-500:])
        t.eq(len(tgt.messages("user.frank")), 0, "the target's frank untouched")
        t.eq(len(m.messages("user.frank")), 1, "frank untouched here")
        t.check("frank" in user_list(m), "frank live")

    # ---- to Cyrus 3.6 --------------------------------------------------------------------
    reason = cyrus_skip_reason()
    if reason:
        t.skip(reason, "move to a Cyrus 3.6 store (Cyrus not installed, or not root)")
    else:
        with t.case("move to Cyrus 3.6 under deliveries"):
            cy = cyrus.Cyrus(root, "cyrus-target", sync_server=True, admins="admin repl")
            started.append(cy)
            cy.add_login("carol", "carolpw")
            fill(m, "carol", t.rng, 30, 6, 4000)
            t.eq(set_quota(dm.port["imap"], "user.carol", 700000), "OK", "a quota on carol")
            dl = Deliveries(dm.port["lmtp"], "carol", t.rng, 4100)
            dl.start()
            wait_for(lambda: sum(1 for _, c, _ in dl.sent if c == 250) >= 5, 30, "deliveries before the move")
            hold = os.path.join(root, "hold-carol")
            open(hold, "w").close()
            ctarget = f"127.0.0.1:{cy.sync_port}"
            p, lines = move(m, "carol", ctarget, hold)
            locked_line(lines, "carol")
            code, text = lmtp_rcpt(dm.port["lmtp"], "carol", make_message(t.rng, 4900))
            t.check(code == 451 and "4.2.1" in text, f"a delivery while locked: {code} {text}")
            held = snapshot(m, "carol")
            os.unlink(hold)
            rc, out, err = finish(p, lines)
            t.eq(rc, 0, f"move-user to Cyrus: {out} {err[-2000:]}")
            t.check(f"carol\tmoved-to={ctarget}" in "\n".join(user_list(m)), f"user list: {user_list(m)}")
            dl.stop()
            # Cyrus's IMAP (carol's own login) shows what the master held at the lock
            im = imaplib.IMAP4("127.0.0.1", cy.imap_port)
            im.login("carol", "carolpw")
            for mb, (uv, recs) in sorted(held.items()):
                name = "INBOX" + mb[len("user.carol"):]
                st = im.status(name, "(UIDVALIDITY)")[1][0].decode()
                t.eq(int(re.search(r"UIDVALIDITY (\d+)", st).group(1)), uv, f"UIDVALIDITY of {name}")
                im.select(name, readonly=True)
                typ, data = im.uid("FETCH", "1:*", "(UID FLAGS MODSEQ RFC822.SIZE BODY.PEEK[])")
                rows = []
                for d in data:
                    if isinstance(d, tuple):
                        head = d[0].decode()
                        flags = re.search(r"FLAGS \(([^)]*)\)", head).group(1).split()
                        rows.append((int(re.search(r"UID (\d+)", head).group(1)),
                                     int(re.search(r"MODSEQ \((\d+)\)", head).group(1)),
                                     sorted(f for f in flags if f not in ("\\Recent", "\\Seen")),
                                     int(re.search(r"RFC822.SIZE (\d+)", head).group(1)),
                                     __import__("hashlib").sha1(d[1]).hexdigest()))
                want = [(u, ms, sorted(f for f in fl.split() if f != "\\Seen"), sz, g)
                        for u, ms, fl, _, sz, g in recs]
                t.eq(rows, want, f"{name} on Cyrus (uid, modseq, flags, size, body SHA-1)")
            im.logout()
            t.eq(quota_of(cy.imap_port, "carol", "carolpw"), 700000, "carol's quota on Cyrus")
            ok = [msgid(x) for x, c, _ in dl.sent if c == 250]
            refused = [x for x, c, _ in dl.sent if c != 250]
            print(f"  carol: {len(dl.sent)} deliveries during the move: {len(ok)} answered 250, {len(refused)} 451")
            on_cyrus = imap_msgids(cy.imap_port, "carol", "carolpw")
            t.check(set(ok) <= set(on_cyrus), f"every 250 is on Cyrus ({len(set(ok) - set(on_cyrus))} missing)")
            for x in refused:
                cy.deliver("carol", x)
            on_cyrus = imap_msgids(cy.imap_port, "carol", "carolpw")
            t.eq(sorted(set(msgid(x) for x, _, _ in dl.sent) - set(on_cyrus)), [], "no delivery lost")
            t.check(len(on_cyrus) == 27 + len(dl.sent), f"count on Cyrus: {len(on_cyrus)} == 27 + {len(dl.sent)}")
finally:
    for s in reversed(started):
        try:
            if isinstance(s, Pair):
                s.cleanup()
            else:
                s.stop()
        except Exception as e:  # noqa: BLE001
            print(f"  cleanup: {e!r}")
    shutil.rmtree(root, ignore_errors=True)
t.done()
