"""test_login_cache.py: tandemd's cache of verified logins
(server_authcache.h), seen through IMAP and the login's log line
(event=login ... auth_cache=hit|miss|off), never timed:
a repeated login of the same user and password is a hit; `tandem user
passwd` makes the old password fail at once and the new one work; a wrong
password after a cached right one still fails and is counted
(event=auth_fail); a deleted user's cached password fails; AUTHENTICATE
PLAIN shares the cache; with auth_cache_size 0 logins work without it."""
import base64
import imaplib
import re

from tlib import Daemon, Instance, Suite

t = Suite("login_cache")


def login(port, user, pw):
    """(True, None) or (False, the error)."""
    im = imaplib.IMAP4("127.0.0.1", port)
    try:
        im.login(user, pw)
        im.logout()
        return True
    except imaplib.IMAP4.error:
        try:
            im.shutdown()
        except OSError:
            pass
        return False


def logins(d, user):
    return re.findall(r"event=login\b[^\n]*user=" + re.escape(user) + r"\b[^\n]*auth_cache=(\w+)", d.log())


def auth_fails(d, user):
    return re.findall(r"event=auth_fail [^\n]*user=" + re.escape(user) + r" [^\n]*user_fails=(\d+)", d.log())


inst = Instance(extra_conf="failedloginpause: 10ms\n")
d = None
try:
    inst.ok(["user", "add", "alice"], "alicepw\n")
    inst.ok(["user", "add", "bob"], "bobpw\n")
    inst.ok(["user", "add", "carol"], "carolpw\n")
    d = Daemon(inst, services=("imap",))
    port = d.port["imap"]

    with t.case("a first login misses, the next ones hit"):
        for _ in range(3):
            t.check(login(port, "alice", "alicepw"), "login works")
        t.eq(logins(d, "alice"), ["miss", "hit", "hit"], "auth_cache of the three logins")

    with t.case("a wrong password after a cached right one fails and is counted"):
        before = len(auth_fails(d, "alice"))
        t.check(not login(port, "alice", "alicepw "), "a near miss fails")
        t.check(not login(port, "alice", "wrong"), "a wrong password fails")
        t.eq(auth_fails(d, "alice")[before:], ["1", "2"], "both counted as failures of alice")
        t.check(login(port, "alice", "alicepw"), "the right one still works (and clears the count)")
        t.eq(logins(d, "alice")[-1], "hit", "from the cache")

    with t.case("user passwd: the old password fails at once, the new one works"):
        t.check(login(port, "bob", "bobpw"), "bob logs in")
        t.check(login(port, "bob", "bobpw"), "bob again")
        t.eq(logins(d, "bob"), ["miss", "hit"], "cached")
        inst.ok(["user", "passwd", "bob"], "bobnew\n")
        t.check(not login(port, "bob", "bobpw"), "the old password fails right after passwd")
        t.eq(len(auth_fails(d, "bob")), 1, "and is counted")
        t.check(login(port, "bob", "bobnew"), "the new password works")
        t.check(login(port, "bob", "bobnew"), "twice")
        t.eq(logins(d, "bob"), ["miss", "hit", "miss", "hit"], "the new one is verified, then cached")
        inst.ok(["user", "passwd", "bob"], "bobpw\n")
        t.check(not login(port, "bob", "bobnew"), "changed back: the second password fails")
        t.check(login(port, "bob", "bobpw"), "the first works again")
        t.eq(logins(d, "bob")[-1], "miss", "under a new hash (new salt): verified again")

    with t.case("AUTHENTICATE PLAIN uses the same cache"):
        im = imaplib.IMAP4("127.0.0.1", port)
        tok = b"\0alice\0alicepw"
        im.authenticate("PLAIN", lambda _: tok)
        im.logout()
        t.eq(logins(d, "alice")[-1], "hit", "PLAIN hit alice's cached LOGIN")

    with t.case("a deleted user's cached password fails"):
        t.check(login(port, "carol", "carolpw"), "carol logs in")
        t.check(login(port, "carol", "carolpw"), "cached")
        inst.ok(["user", "del", "carol"])
        t.check(not login(port, "carol", "carolpw"), "fails once carol is deleted")
        inst.ok(["user", "add", "carol"], "carolpw\n")
        t.check(login(port, "carol", "carolpw"), "re-created carol logs in")
        t.eq(logins(d, "carol")[-1], "miss", "under the new hash")

    with t.case("a user that does not exist fails like a wrong password"):
        t.check(not login(port, "nosuch", "alicepw"), "fails")
        t.eq(len(auth_fails(d, "nosuch")), 1, "counted")
finally:
    if d:
        d.stop()
    inst.cleanup()

inst = Instance(extra_conf="failedloginpause: 10ms\nauth_cache_size: 0\n")
d = None
try:
    inst.ok(["user", "add", "alice"], "alicepw\n")
    d = Daemon(inst, services=("imap",))
    port = d.port["imap"]
    with t.case("auth_cache_size 0: logins work, nothing is cached"):
        t.check(login(port, "alice", "alicepw"), "login")
        t.check(login(port, "alice", "alicepw"), "again")
        t.check(not login(port, "alice", "wrong"), "a wrong password fails")
        inst.ok(["user", "passwd", "alice"], "alicenew\n")
        t.check(not login(port, "alice", "alicepw"), "the old password fails after passwd")
        t.check(login(port, "alice", "alicenew"), "the new one works")
        t.eq(logins(d, "alice"), ["off", "off", "off"], "auth_cache=off on every login")
finally:
    if d:
        d.stop()
    inst.cleanup()
t.done()
