"""test_sieve.py: Sieve scripts replicate both ways Cyrus 3.6 does it.

1. Legacy per-script commands (a client that does not send APPLY
   CAPABILITIES (SIEVE-MAILBOX), reference §4.3.15): raw csync into tandem's
   sync server: APPLY SIEVE / ACTIVATE_SIEVE / UNACTIVATE_SIEVE / UNSIEVE
   (only <name>.script is stored, activation by <name>.bc), GET META's
   SIEVE lines (GUID = SHA-1 of the script, as Cyrus's content id), GET
   FETCH_SIEVE, a replay of everything changes nothing, and a #sieve
   mailbox is neither accepted nor shown on such a connection.
2. With a real Cyrus 3.6 (skipped without it): the same legacy commands
   get the same answers from Cyrus's sync_server as from tandem's; and with
   SIEVE-MAILBOX, scripts uploaded over ManageSieve (timsieved) reach
   tandem as user.<u>.#sieve (MBOXTYPE f, one message per script, the
   active one \\Flagged) with Cyrus's sync_client -u, and tandem's sync
   client gives a second Cyrus the same scripts and active script
   (LISTSCRIPTS, GETSCRIPT), also after a change of the active script and
   a deleted script.
"""
import base64
import hashlib
import os
import re
import shutil
import socket
import tempfile

import cyrus
from tlib import CsyncConn as Conn, Daemon, Instance, Suite, free_port, cyrus_skip_reason

t = Suite("sieve")


def cyrus_uid():
    import pwd
    return pwd.getpwnam("cyrus").pw_uid




def lit(data):
    return b"{" + str(len(data)).encode() + b"+}\r\n" + data


def put(user, fname, script, last_update=1700000000):
    return (b"APPLY SIEVE %(USERID " + user + b" FILENAME " + fname + b" LAST_UPDATE " +
            str(last_update).encode() + b" CONTENT " + lit(script) + b")")


def meta_sieve(c, user):
    """GET META's SIEVE lines, LAST_UPDATE of scripts replaced by T."""
    lines = c.cmd(b"GET META " + user)
    out = [re.sub(rb"LAST_UPDATE [1-9]\d*", b"LAST_UPDATE T", l) for l in lines if l.startswith(b"* SIEVE ")]
    return out, lines[-1]


def sline(name, script):
    return (b"* SIEVE %(FILENAME " + name + b".script LAST_UPDATE T GUID " +
            hashlib.sha1(script).hexdigest().encode() + b" ISACTIVE 0)")


def bcline(name):
    return b"* SIEVE %(FILENAME " + name + b".bc LAST_UPDATE 0 GUID " + b"0" * 40 + b" ISACTIVE 1)"


MAIN = b'require "fileinto";\r\nif header :contains "subject" "list" { fileinto "INBOX.Lists"; }\r\n'
VAC = b'require "vacation";\r\nvacation :days 3 "Away";\r\n'

# The legacy sequence of part 1, also sent to a real Cyrus in part 2:
# (command, expected final line) pairs and the META expected after it.
LEGACY = [
    (put(b"fred", b"main.script", MAIN), b"OK success"),
    (put(b"fred", b"vacation.script", VAC), b"OK success"),
    (put(b"fred", b"main.bc", b"bytecode"), b"OK success"),	# not a .script: ignored
    (put(b"fred", b"notes.txt", b"x"), b"OK success"),	# ignored
    (b"APPLY ACTIVATE_SIEVE %(USERID fred FILENAME main.bc)", b"OK success"),
]
LEGACY_META = [sline(b"main", MAIN), bcline(b"main"), sline(b"vacation", VAC)]

root = tempfile.mkdtemp(prefix="tandem-sieve-", dir="/tmp")
os.chmod(root, 0o755)
started = []


def tandem_replica(name):
    inst = Instance(root=os.path.join(root, name))
    text = open(inst.conf).read().replace("admins: admin\n", "admins: admin repl\n")
    open(inst.conf, "w").write(text)
    inst.ok(["user", "add", "repl"], "replpw\n")
    d = Daemon(inst, services=("sync",))
    started.append(d)
    return inst, d


try:
    # ---- 1. legacy commands into tandem -----------------------------------------------
    inst, d = tandem_replica("legacy")
    inst.ok(["user", "add", "--no-password", "fred"])
    c = Conn(d.port["sync"])
    t.eq(c.auth("repl", "replpw"), b"OK Success (no protection)", "login")

    with t.case("APPLY SIEVE / ACTIVATE_SIEVE, then GET META lists the scripts (only <name>.script kept)"):
        t.check(c.cmd(put(b"nobody", b"main.script", MAIN))[-1].startswith(b"NO"), "a user without mailboxes")
        for cmd, want in LEGACY:
            t.eq(c.cmd(cmd)[-1], want, cmd[:60])
        t.eq(meta_sieve(c, b"fred"), (LEGACY_META, b"OK success"), "META SIEVE lines")
        user = b"\n".join(c.cmd(b"GET USER fred"))
        t.check(bcline(b"main") in user and b"main.script" in user, "GET USER has the SIEVE lines too")

    with t.case("GET FETCH_SIEVE"):
        r = c.cmd(b"GET FETCH_SIEVE %(USERID fred FILENAME vacation.script)")
        t.eq(r, [b"* SIEVE %(USERID fred FILENAME vacation.script CONTENT {" + str(len(VAC)).encode() + b"}\r\n" +
                  VAC + b")", b"OK success"], "the script's bytes")
        for f in [b"vacation.bc", b"nosuch.script"]:
            t.eq(c.cmd(b"GET FETCH_SIEVE %(USERID fred FILENAME " + f + b")"),
                 [b"NO IMAP_MAILBOX_NONEXISTENT No Such Mailbox"], f"FETCH_SIEVE {f}")
        t.eq(c.cmd(b"GET FETCH_SIEVE %(USERID nobody FILENAME main.script)")[-1],
             b"NO IMAP_MAILBOX_NONEXISTENT No Such Mailbox", "unknown user")

    with t.case("a replay of every command changes nothing"):
        for cmd, want in LEGACY:
            t.eq(c.cmd(cmd)[-1], want, "replayed " + cmd[:40].decode())
        t.eq(meta_sieve(c, b"fred"), (LEGACY_META, b"OK success"), "META after the replay")

    with t.case("bad commands change nothing"):
        t.eq(c.cmd(b"APPLY ACTIVATE_SIEVE %(USERID fred FILENAME nosuch.bc)")[-1],
             b"NO IMAP_MAILBOX_NONEXISTENT No Such Mailbox", "activating an unknown script")
        t.eq(c.cmd(b"APPLY SIEVE %(USERID fred FILENAME x.script CONTENT {5+}\r\nkeep;)")[-1],
             b"NO IMAP_PROTOCOL_BAD_PARAMETERS", "no LAST_UPDATE")
        t.eq(c.cmd(b"APPLY SIEVE %(USERID fred FILENAME ../x.script LAST_UPDATE 1 CONTENT {5+}\r\nkeep;)")[-1],
             b"NO IMAP_PROTOCOL_BAD_PARAMETERS", "a name with /")
        t.eq(c.cmd(b"APPLY UNSIEVE %(FILENAME main.script)")[-1], b"NO IMAP_PROTOCOL_BAD_PARAMETERS", "no USERID")
        t.eq(meta_sieve(c, b"fred"), (LEGACY_META, b"OK success"), "META unchanged")

    with t.case("UNACTIVATE_SIEVE, ACTIVATE another, UNSIEVE (twice), UNSIEVE of the active one"):
        t.eq(c.cmd(b"APPLY UNACTIVATE_SIEVE %(USERID fred)")[-1], b"OK success", "UNACTIVATE")
        t.eq(c.cmd(b"APPLY UNACTIVATE_SIEVE %(USERID fred)")[-1], b"OK success", "UNACTIVATE again")
        t.eq(meta_sieve(c, b"fred")[0], [sline(b"main", MAIN), sline(b"vacation", VAC)], "no active script")
        t.eq(c.cmd(b"APPLY ACTIVATE_SIEVE %(USERID fred FILENAME vacation.bc)")[-1], b"OK success", "ACTIVATE")
        t.eq(meta_sieve(c, b"fred")[0], [sline(b"main", MAIN), sline(b"vacation", VAC), bcline(b"vacation")],
             "vacation active")
        for _ in range(2):
            t.eq(c.cmd(b"APPLY UNSIEVE %(USERID fred FILENAME main.script)")[-1], b"OK success", "UNSIEVE main")
        t.eq(c.cmd(b"APPLY UNSIEVE %(USERID fred FILENAME vacation.bc)")[-1], b"OK success", "UNSIEVE of a .bc")
        t.eq(meta_sieve(c, b"fred")[0], [sline(b"vacation", VAC), bcline(b"vacation")], "main gone")
        t.eq(c.cmd(b"APPLY UNSIEVE %(USERID fred FILENAME vacation.script)")[-1], b"OK success", "UNSIEVE active")
        t.eq(meta_sieve(c, b"fred"), ([], b"OK success"), "no scripts left")
        t.eq(c.cmd(b"APPLY UNSIEVE %(USERID nobody FILENAME main.script)")[-1], b"OK success", "unknown user")

    with t.case("a #sieve mailbox needs SIEVE-MAILBOX on the connection"):
        script = b"From: <fred@test>\r\nSubject: s\r\nContent-Type: application/sieve; charset=utf-8\r\n\r\nkeep;\r\n"
        g = hashlib.sha1(script).hexdigest().encode()
        box = (b"APPLY MAILBOX %(UNIQUEID sieveuniqueid000000000001 MBOXNAME user.fred.#sieve MBOXTYPE f"
               b" LAST_UID 1 HIGHESTMODSEQ 4 RECENTUID 0 RECENTTIME 0 LAST_APPENDDATE 0 POP3_LAST_LOGIN 0"
               b" POP3_SHOW_AFTER 0 UIDVALIDITY 1700000000 PARTITION default ACL \"fred\tlrswipkxtecdan\t\""
               b" OPTIONS P RECORD (%(UID 1 MODSEQ 4 LAST_UPDATED 1700000000 FLAGS (\\Flagged)"
               b" INTERNALDATE 1700000000 SIZE " + str(len(script)).encode() + b" GUID " + g + b")))")
        msgcmd = b"APPLY MESSAGE (%{default " + g + b" " + str(len(script)).encode() + b"}\r\n" + script + b")"
        t.eq(c.cmd(msgcmd)[-1], b"OK success", "MESSAGE")
        t.eq(c.cmd(box)[-1], b"NO IMAP_PROTOCOL_BAD_PARAMETERS", "refused without SIEVE-MAILBOX")
        c2 = Conn(d.port["sync"])
        c2.auth("repl", "replpw")
        t.eq(c2.cmd(b"APPLY CAPABILITIES (SIEVE-MAILBOX)")[-1], b"OK success", "enable")
        c2.cmd(msgcmd)
        t.eq(c2.cmd(box)[-1], b"OK success", "accepted with SIEVE-MAILBOX")
        got = c2.cmd(b"GET MAILBOXES (user.fred.#sieve)")
        t.check(len(got) == 2 and b"MBOXTYPE f" in got[0], f"shown with SIEVE-MAILBOX: {got}")
        t.check(b"user.fred.#sieve" in b"".join(c2.cmd(b"GET USER fred")), "GET USER lists it")
        t.eq(c.cmd(b"GET MAILBOXES (user.fred.#sieve)"), [b"OK success"], "hidden without SIEVE-MAILBOX")
        t.check(b"#sieve" not in b"".join(c.cmd(b"GET USER fred")), "GET USER hides it")
        c2.cmd(put(b"fred", b"main.script", MAIN))
        t.eq(meta_sieve(c2, b"fred"), ([], b"OK success"), "no SIEVE lines with SIEVE-MAILBOX")
        t.eq(meta_sieve(c, b"fred")[0], [sline(b"main", MAIN)], "SIEVE lines without it")
        c2.cmd(b"EXIT")

    t.eq(c.cmd(b"EXIT"), [b"OK Finished"], "EXIT")
    fails = [l for l in d.log().splitlines() if "level=err" in l]
    t.eq(fails, [], "no errors in tandem's log")

    # ---- 2. with a real Cyrus 3.6 ------------------------------------------------------
    if cyrus_skip_reason():
        t.skip(cyrus_skip_reason(), "the Cyrus parts (Cyrus 3.6 is not installed or not root)", count=4)
    else:
        cr = cyrus.Cyrus(root, "cyrus-legacy", sync_server=True, admins="admin repl")
        started.append(cr)

        with t.case("the legacy commands get the same answers from Cyrus's sync_server and tandem's"):
            inst2, d2 = tandem_replica("legacy2")
            inst2.ok(["user", "add", "--no-password", "fred"])
            im = cr.imap()
            t.eq(im.create("user.fred")[0], "OK", "create user.fred on Cyrus")
            im.logout()
            answers = {}
            for who, port in [("cyrus", cr.sync_port), ("tandem", d2.port["sync"])]:
                k = Conn(port)
                k.auth("repl", "replpw")
                got = [k.cmd(cmd)[-1] for cmd, _ in LEGACY]
                got.append(meta_sieve(k, b"fred"))
                got.append(k.cmd(b"GET FETCH_SIEVE %(USERID fred FILENAME main.script)"))
                got.append(k.cmd(b"APPLY UNACTIVATE_SIEVE %(USERID fred)")[-1])
                got.append(meta_sieve(k, b"fred"))
                got.append(k.cmd(b"APPLY UNSIEVE %(USERID fred FILENAME main.script)")[-1])
                got.append(meta_sieve(k, b"fred"))
                answers[who] = got
                k.cmd(b"EXIT")
            t.eq(answers["tandem"], answers["cyrus"], "tandem answers as Cyrus 3.6")
            t.eq(answers["cyrus"][len(LEGACY)], (LEGACY_META, b"OK success"), "Cyrus's META as expected")
            extra = {}
            for who, port in [("cyrus", cr.sync_port), ("tandem", d2.port["sync"])]:
                k = Conn(port)
                k.auth("repl", "replpw")
                extra[who] = [k.cmd(b"APPLY UNSIEVE %(USERID fred FILENAME main.script)")[-1],
                              k.cmd(b"APPLY ACTIVATE_SIEVE %(USERID fred FILENAME nosuch.bc)")[-1]]
                k.cmd(b"EXIT")
            # deliberate difference: a replayed UNSIEVE is OK on tandem, an error on Cyrus
            t.eq(extra["cyrus"], [b"NO Unknown error", b"NO Unknown error"], "Cyrus: UNSIEVE of a missing script, "
                 "ACTIVATE of an unknown one")
            t.eq(extra["tandem"], [b"OK success", b"NO IMAP_MAILBOX_NONEXISTENT No Such Mailbox"], "tandem: the same")

        sport = free_port()
        rep = Instance(root=os.path.join(root, "rep"))
        text = open(rep.conf).read().replace("admins: admin\n", "admins: admin repl\n")
        open(rep.conf, "w").write(text + "sync_authname: repl\nsync_password: replpw\n")
        rep.ok(["user", "add", "repl"], "replpw\n")
        drep = Daemon(rep, services=("sync",), ports={"sync": sport})
        started.append(drep)
        cm = cyrus.Cyrus(root, "cyrus-master", sync_to=sport, sieve=True)
        started.append(cm)
        cr2 = cyrus.Cyrus(root, "cyrus-replica", sync_server=True, admins="admin repl", sieve=True)
        started.append(cr2)
        for cy in (cm, cr2):
            cy.add_login("alice", "alicepw")

        def tandem_sieve():
            """{script name: (flags, script bytes)} of tandem's user.alice.#sieve."""
            out = {}
            for uid, _, flags, _, _, _ in rep.messages("user.alice.#sieve"):
                m = rep.run(["message", "fetch", "user.alice.#sieve", str(uid)])
                raw = m.stdout.encode()
                head, _, body = raw.partition(b"\r\n\r\n") if b"\r\n\r\n" in raw else raw.partition(b"\n\n")
                name = re.search(rb"^Subject: (.*?)\r?$", head, re.M).group(1).decode()
                out[name] = (flags, body)
            return out

        def replica_scripts():
            ms = cr2.managesieve("alice", "alicepw")
            try:
                return {n: (a, ms.getscript(n)) for n, a in ms.listscripts()}
            finally:
                ms.logout()

        def sync_on():
            r = cm.sync_client("-u", "alice")
            t.eq(r.returncode, 0, f"Cyrus sync_client -u alice: {r.stderr[-300:]}")
            r = rep.run(["sync", "-S", f"127.0.0.1:{cr2.sync_port}", "-o", "-u", "alice"])
            t.eq(r.returncode, 0, f"tandem sync -u alice to the second Cyrus: {r.stderr[-500:]}")
            r = rep.run(["compare", "-S", f"127.0.0.1:{cr2.sync_port}", "--bodies", "alice"])
            t.eq(r.returncode, 0, f"tandem compare with the second Cyrus: {r.stdout[-500:]} {r.stderr[-300:]}")

        with t.case("SIEVE-MAILBOX: ManageSieve on Cyrus -> tandem (#sieve) -> a second Cyrus"):
            im = cm.imap()
            t.eq(im.create("user.alice")[0], "OK", "create user.alice on Cyrus")
            im.logout()
            cm.put_sieve("alice", "alicepw", "vacation", VAC, activate=False)
            cm.put_sieve("alice", "alicepw", "main", MAIN)
            sync_on()
            boxes = [l.split("\t")[0] for l in rep.ok(["mailbox", "list", "alice"]).splitlines()]
            t.check("user.alice.#sieve" in boxes, f"tandem has user.alice.#sieve: {boxes}")
            k = Conn(sport)
            k.auth("repl", "replpw")
            k.cmd(b"APPLY CAPABILITIES (SIEVE-MAILBOX)")
            t.check(b"MBOXTYPE f " in k.cmd(b"GET MAILBOXES (user.alice.#sieve)")[0], "MBOXTYPE f kept")
            k.cmd(b"EXIT")
            got = tandem_sieve()
            t.eq(sorted(got), ["main", "vacation"], "one message per script")
            t.eq(got.get("main", ("", b""))[1].replace(b"\r\n", b"\n"), MAIN.replace(b"\r\n", b"\n"),
                 "main's bytes")
            t.eq({n: f for n, (f, _) in got.items()}, {"main": "\\Flagged", "vacation": ""}, "the active one flagged")
            t.eq(replica_scripts(), {"main": (True, MAIN), "vacation": (False, VAC)},
                 "the second Cyrus has the same scripts, main active")
            fails = [l for l in drep.log().splitlines() if "event=apply_fail" in l]
            t.eq(fails, [], "tandem refused nothing")

        with t.case("SIEVE-MAILBOX: another script made active, one deleted, one added"):
            ms = cm.managesieve("alice", "alicepw")
            ms.setactive("vacation")
            ms.deletescript("main")
            ms.putscript("spam", b"discard;\r\n")
            ms.logout()
            sync_on()
            got = tandem_sieve()
            t.eq({n: f for n, (f, _) in got.items()}, {"vacation": "\\Flagged", "spam": ""},
                 "tandem: vacation active, main gone")
            t.eq(replica_scripts(), {"vacation": (True, VAC), "spam": (False, b"discard;\r\n")},
                 "the second Cyrus follows")

        with t.case("SIEVE-MAILBOX over the IMAP transport: Cyrus -> tandem's imapd -> Cyrus's imapd"):
            rep3 = Instance(root=os.path.join(root, "rep3"))
            text = open(rep3.conf).read().replace("admins: admin\n", "admins: admin repl\n")
            open(rep3.conf, "w").write(text + "sync_authname: repl\nsync_password: replpw\n")
            rep3.ok(["user", "add", "repl"], "replpw\n")
            d3 = Daemon(rep3, services=("imap",))
            started.append(d3)
            alt = os.path.join(cm.dir, "imapd-via-imap.conf")
            text = open(cm.conf).read().replace(f"sync_port: {sport}", f"sync_port: {d3.port['imap']}")
            open(alt, "w").write(text.replace("sync_try_imap: 0", "sync_try_imap: 1"))
            os.chown(alt, cyrus_uid(), -1)
            r = cyrus.as_cyrus([os.path.join(cyrus.LIBEXEC, "sync_client"), "-C", alt, "-u", "alice"], cwd=cm.dir,
                               capture_output=True, text=True, timeout=120)
            t.eq(r.returncode, 0, f"Cyrus sync_client -u alice over IMAP: {r.stderr[-300:]}")
            boxes = [l.split("\t")[0] for l in rep3.ok(["mailbox", "list", "alice"]).splitlines()]
            t.check("user.alice.#sieve" in boxes, f"tandem has user.alice.#sieve: {boxes}")
            t.eq([l for l in d3.log().splitlines() if "event=apply_fail" in l], [], "tandem refused nothing")
            cr3 = cyrus.Cyrus(root, "cyrus-replica3", admins="admin repl", sieve=True)
            started.append(cr3)
            cr3.add_login("alice", "alicepw")
            r = rep3.run(["sync", "-S", f"127.0.0.1:{cr3.imap_port}", "-o", "-u", "alice"])
            t.eq(r.returncode, 0, f"tandem sync -u alice over IMAP: {r.stderr[-500:]}")
            t.check("transport=imap" in r.stderr, "the IMAP transport was used")
            ms = cr3.managesieve("alice", "alicepw")
            got = ms.listscripts()
            ms.logout()
            t.eq(sorted(got), [("spam", False), ("vacation", True)], "the third Cyrus has the scripts")
finally:
    for s in reversed(started):
        s.stop()
    shutil.rmtree(root, ignore_errors=True)
t.done()
