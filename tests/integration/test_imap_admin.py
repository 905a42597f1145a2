"""test_imap_admin.py: what admins' tools do over IMAP, as against Cyrus:
the full CAPABILITY before login, an admin's CREATE user.zed (the user
and its INBOX) and DELETE user.zed (the whole user), both replicated
(checked with a replica and `tandem compare`), a user refused both, and
cyradm's cm/lm/dm when cyradm is installed."""
import os
import shutil
import subprocess

from imapraw import Raw
import re
import time

from tlib import wait_equal, Daemon, Pair, Suite, lmtp_send, make_message

t = Suite("imap_admin")
pair = Pair()
m = pair.master
d = None


def chk(r, cond, msg):
    return t.check(cond, f"{msg}\n--- exchange ---\n{r.exchange()}")


def users(inst):
    return set(inst.ok(["user", "list"]).split())


def synced(what):
    # the master's tandemd runs the channel's rolling client (a second one
    # by hand would be refused: one client per channel): wait for it
    ok, out = wait_equal(m, pair.channel, timeout=60)
    t.check(ok, f"{what}: master == replica:\n{out}")


try:
    m.ok(["user", "add", "admin"], stdin="adminpw\n")
    m.ok(["user", "add", "alice"], stdin="alicepw\n")
    d = Daemon(m, services=("imap", "lmtp"), extra_conf="failedloginpause: 0\n")
    t.eq(pair.sync("-A").returncode, 0, "initial sync")

    with t.case("CAPABILITY before login lists the full set (as Cyrus), with AUTH=PLAIN"):
        r = Raw(d.port["imap"])
        u, tagged = r.cmd("CAPABILITY")
        caps = b"".join(u).split()
        for c in (b"IMAP4rev1", b"AUTH=PLAIN", b"ACL", b"NAMESPACE", b"QUOTA", b"METADATA", b"LIST-EXTENDED",
                  b"IDLE", b"UIDPLUS", b"CONDSTORE"):
            chk(r, c in caps, f"{c!r} before login")
        chk(r, b"X-REPLICATION" not in caps, "no admin-only capability before login")
        r.login("admin", "adminpw")
        u, _ = r.cmd("CAPABILITY")
        chk(r, b"X-REPLICATION" in b"".join(u), "admins get X-REPLICATION after login")
        r.close()

    with t.case("an admin's CREATE user.zed makes the user; DELETE user.zed removes it; both replicate"):
        r = Raw(d.port["imap"]).login("admin", "adminpw")
        _, tagged = r.cmd("CREATE user.zed")
        chk(r, tagged.startswith(b"OK"), "CREATE user.zed")
        t.check("zed" in users(m), "zed is a user")
        _, tagged = r.cmd("CREATE user.zed.Work")
        chk(r, tagged.startswith(b"OK"), "CREATE user.zed.Work")
        m.ok(["deliver", "zed"], make_message(t.rng, 1))
        synced("after CREATE")
        t.check("zed" in users(pair.replica), "zed on the replica")
        r.cmd("SELECT user.zed")
        _, tagged = r.cmd("DELETE user.zed")
        chk(r, tagged.startswith(b"OK"), "DELETE user.zed")
        t.check("zed" not in users(m), "zed is gone")
        names = m.ok(["mailbox", "list"])
        t.check("user.zed" not in names, f"and its mailboxes: {names}")
        _, tagged = r.cmd("FETCH 1 FLAGS")
        chk(r, tagged.startswith(b"BAD"), "the deleted user's mailbox was unselected")
        synced("after DELETE")
        t.check("zed" not in users(pair.replica), "zed gone on the replica")
        _, tagged = r.cmd("DELETE user.admin")
        chk(r, tagged.startswith(b"NO"), "an admin cannot delete themselves")
        r.close()

    with t.case("a user may neither create another user nor delete their own INBOX"):
        r = Raw(d.port["imap"]).login("alice", "alicepw")
        _, tagged = r.cmd("CREATE user.yan")
        chk(r, tagged.startswith(b"NO"), "CREATE user.yan refused")
        _, tagged = r.cmd("DELETE INBOX")
        chk(r, tagged.startswith(b"NO"), "DELETE INBOX refused")
        r.close()
        t.check("yan" not in users(m) and "alice" in users(m), "nothing changed")

    with t.case("cyradm: cm user.zed, lm, dm user.zed"):
        if not shutil.which("cyradm"):
            print("  cyradm not installed (Debian: cyrus-admin): skipped")
        else:
            script = "cm user.zed\nlm user.zed*\ndm user.zed\nlm user.zed*\n"
            r = subprocess.run(["cyradm", "--norc", "--notls", "--user", "admin", "--password", "adminpw",
                                "--auth", "PLAIN", "--port", str(d.port["imap"]), "127.0.0.1"],
                               input=script.encode(), capture_output=True, timeout=60)
            out = r.stdout.decode() + r.stderr.decode()
            t.eq(r.returncode, 0, f"cyradm: {out}")
            t.check(out.count("user.zed (") == 1 and "cyradm: cannot" not in out and "NO " not in out,
                    f"cm listed once, dm removed it: {out}")
            t.check("zed" not in users(m), "zed gone after dm")
            synced("after cyradm")
    with t.case("LMTP: a rejected recipient (550 5.1.1) is one key=value log line"):
        t.eq(lmtp_send(d.port["lmtp"], "nosuch@example.com", make_message(t.rng, 2)), 550, "550 for an unknown user")
        lines = []
        for _ in range(100):
            lines = [ln for ln in d.log().splitlines() if "event=rcpt_rejected" in ln]
            if lines:
                break
            time.sleep(0.05)
        t.eq(len(lines), 1, f"one line: {lines}")
        t.check(lines and re.search(r"event=rcpt_rejected session=\S+ rcpt=\S*nosuch@example.com\S* code=550 "
                                    r"status=5\.1\.1 reason=no_such_user$", lines[0]), f"the line: {lines}")

finally:
    if d:
        d.stop()
    pair.cleanup()
t.done()
