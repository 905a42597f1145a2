"""test_session_reuse.py: tandemd's session processes serve one connection
after another (maxuse, maxspare, spare_timeout), and nothing of a session
reaches the next one in the same process.

With maxspare 1 there is one idle process per service, so consecutive
connections land in the same process (its pid is in every log line):
- user A logs in, selects, ENABLEs CONDSTORE, IDLEs, COMPRESSes and logs
  out; user B, next in the same process, gets a fresh greeting (plain
  text: no COMPRESS left), pre-login capabilities, commands needing a
  login refused, no mailbox selected, no CONDSTORE (no MODSEQ in its
  FETCH), none of A's mailboxes;
- a session that ends otherwise (a failed login, too many bad commands,
  a timeout) takes its process with it; maxuse N: N connections, then the process
  exits; maxuse 1: a fresh process per connection;
- a reload lets the idle process go (it ran the old config); an idle
  process exits after spare_timeout; SIGTERM of tandemd ends idle
  processes at once;
- maxperhost and imap_maxchild count connections, not idle processes;
- TLS sessions (imaps, STARTTLS) and LMTP processes are reused too, the
  next client of a process starting in the clear;
- a client that comes back from its address (127.0.1.N) is handed to the
  process that served it last, not to the one idle last;
- a process keeps its users' databases open between sessions, and a user
  deleted and created again, or moved away (tandem move-user) and created
  again, meanwhile gets its new database, not the kept one.
Bounded waits, no timing asserts."""
import os
import re
import signal
import smtplib
import socket
import time
import zlib

from imapraw import Raw
from tlib import Daemon, Instance, Suite, allow_replication, lmtp_send, make_message, wait_for, wait_log
from tlib import proc_alive as alive, proc_children as children

t = Suite("session-reuse")
inst = Instance()
d = None

CONNECT = re.compile(r"\[(\d+)\] level=info event=connect service=(\w+) session=(\S+)")


def connects(service="imap"):
    """[(pid, session id)] of the service's connections, in order."""
    return [(int(p), sid) for p, svc, sid in CONNECT.findall(d.log()) if svc == service]


def imap(service="imap"):
    """A new IMAP connection: (Raw, pid of the process serving it, session id)."""
    n = len(connects(service))
    r = Raw(d.port[service], tls=service == "imaps")
    wait_for(lambda: len(connects(service)) > n, what="the connect line")
    pid, sid = connects(service)[n]
    return r, pid, sid


def fds(pid):
    """The files pid has open (/proc/PID/fd targets)."""
    out = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            out.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            pass
    return out


def wait_idle(pid, after):
    """Waits until tandemd has taken pid for idle (its debug line)."""
    wait_log(d, f"event=session_idle pid={pid} ", after=after)


def close(r):
    r.f.close()
    r.s.close()


def logout(r):
    _, tagged = r.cmd("LOGOUT")
    close(r)
    return tagged


def restart(conf):
    """A reload with conf's extra lines (replacing the previous ones;
    maxspare 1 unless they set it)."""
    if "maxspare" not in conf:
        conf += "maxspare: 1\n"
    global d
    text = open(inst.conf).read()
    text = text.split("# reuse-test\n")[0] + "# reuse-test\n" + conf
    open(inst.conf, "w").write(text)
    mark = len(d.log())
    d.proc.send_signal(signal.SIGHUP)
    log = wait_log(d, re.compile("event=reload(_fail)? "), after=mark)
    assert "reload_fail" not in log, log


try:
    for u in ("alice", "bob"):
        inst.ok(["user", "add", u], stdin=f"{u}-pw\n".encode())
    d = Daemon(inst, services=("imap", "imaps", "lmtp"),
               extra_conf="loglevel: debug\n# reuse-test\nmaxspare: 1\n")
    for u in ("alice", "bob"):
        for i in range(2):
            t.eq(lmtp_send(d.port["lmtp"], f"{u}@test.example", make_message(t.rng, i)), 250, f"delivered to {u}")
    inst.ok(["mailbox", "create", "user.alice.Private"])

    with t.case("one process serves consecutive connections; user B sees nothing of user A's session"):
        mark = len(d.log())
        a, pid_a, sid_a = imap()
        _, tg = a.cmd("LOGIN alice alice-pw")
        t.check(tg.startswith(b"OK"), f"A logs in: {tg!r}")
        _, tg = a.cmd("ENABLE CONDSTORE")
        t.check(tg.startswith(b"OK"), "A enables CONDSTORE")
        _, tg = a.cmd("SELECT INBOX")
        t.check(tg.startswith(b"OK"), "A selects")
        a.send(b"i1 IDLE\r\n")
        t.check(a.line().startswith(b"+"), "A idles")
        a.send(b"DONE\r\n")
        while not a.line().startswith(b"i1 "):
            pass
        _, tg = a.cmd("COMPRESS DEFLATE")
        t.check(tg.startswith(b"OK"), f"A compresses: {tg!r}")
        comp, decomp = zlib.compressobj(wbits=-15), zlib.decompressobj(wbits=-15)
        a.s.sendall(comp.compress(b"z1 LOGOUT\r\n") + comp.flush(zlib.Z_SYNC_FLUSH))
        got = b""
        while b"z1 OK" not in got:
            chunk = a.s.recv(4096)
            if not chunk:
                break
            got += decomp.decompress(chunk)
        t.check(b"z1 OK" in got, f"A logs out compressed: {got!r}")
        close(a)
        wait_idle(pid_a, mark)

        b, pid_b, sid_b = imap()
        t.eq(pid_b, pid_a, "B is served by A's process")
        t.check(sid_b != sid_a, f"a session id of its own ({sid_a} then {sid_b})")
        t.check(b.greeting.startswith(b"* OK [CAPABILITY ") and b"AUTH=PLAIN" in b.greeting,
                f"a fresh plain-text greeting with pre-login capabilities: {b.greeting!r}")
        un, tg = b.cmd("CAPABILITY")
        caps = b"".join(un)
        t.check(b"AUTH=PLAIN" in caps and b"COMPRESS=DEFLATE" in caps, f"pre-login, uncompressed: {caps!r}")
        # (two: the third BAD before login ends a session)
        for cmd in ("SELECT INBOX", "STATUS INBOX (MESSAGES)"):
            _, tg = b.cmd(cmd)
            t.check(tg.startswith(b"BAD"), f"{cmd} before login refused: {tg!r}")
        _, tg = b.cmd("LOGIN bob bob-pw")
        t.check(tg.startswith(b"OK"), f"B logs in: {tg!r}")
        _, tg = b.cmd("FETCH 1 (FLAGS)")
        t.check(tg.startswith(b"BAD"), f"no mailbox selected: {tg!r}")
        un, _ = b.cmd("LIST \"\" *")
        t.check(not any(b"alice" in ln for ln in un), f"none of A's mailboxes listed: {un!r}")
        _, tg = b.cmd("SELECT user.alice")
        t.check(tg.startswith(b"NO"), f"A's INBOX not selectable: {tg!r}")
        _, tg = b.cmd("SELECT INBOX")
        t.check(tg.startswith(b"OK"), "B selects its own INBOX")
        un, tg = b.cmd("STORE 1 +FLAGS (\\Flagged)")
        t.check(tg.startswith(b"OK") and un and not any(b"MODSEQ" in ln for ln in un),
                f"no CONDSTORE (no MODSEQ in FETCH): {un!r}")
        un, _ = b.cmd("FETCH 1:* (UID)")
        t.eq(len(un), 2, "B's own two messages")
        mark = len(d.log())
        logout(b)
        wait_idle(pid_a, mark)

    with t.case("TLS sessions (imaps, STARTTLS) leave their process reusable, each starting in the clear"):
        mark = len(d.log())
        pids = []
        for i in range(2):
            r, pid, _ = imap("imaps")
            pids.append(pid)
            _, tg = r.cmd("LOGIN alice alice-pw")
            t.check(tg.startswith(b"OK"), f"imaps login: {tg!r}")
            m2 = len(d.log())
            logout(r)
            wait_idle(pid, m2)
        t.eq(pids[0], pids[1], "one imaps process")
        r, pid, _ = imap()
        _, tg = r.cmd("STARTTLS")
        t.check(tg.startswith(b"OK"), f"STARTTLS: {tg!r}")
        import ssl
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        r.s = ctx.wrap_socket(r.s)
        r.f = r.s.makefile("rb")
        _, tg = r.cmd("LOGIN bob bob-pw")
        t.check(tg.startswith(b"OK"), f"login over STARTTLS: {tg!r}")
        m2 = len(d.log())
        logout(r)
        wait_idle(pid, m2)
        r2, pid2, _ = imap()
        t.eq(pid2, pid, "the same process next")
        t.check(b"STARTTLS" in r2.greeting, f"the next client starts in the clear: {r2.greeting!r}")
        _, tg = r2.cmd("NOOP")
        t.check(tg.startswith(b"OK"), "plain text works")
        m2 = len(d.log())
        logout(r2)
        wait_idle(pid, m2)
        t.check("fd_leak" not in d.log()[mark:], "no descriptor left behind")
        pid_a = pid

    with t.case("a failed login ends the process after its session"):
        mark = len(d.log())
        c, pid_c, _ = imap()
        t.eq(pid_c, pid_a, "the idle process serves it")
        _, tg = c.cmd("LOGIN alice wrong")
        t.check(tg.startswith(b"NO"), "failed login")
        _, tg = c.cmd("LOGIN alice alice-pw")
        t.check(tg.startswith(b"OK"), "then a good one")
        logout(c)
        t.check(wait_for(lambda: not alive(pid_c), what="the process to exit"), "the process exited")
        t.check(f"event=session_idle pid={pid_c} " not in d.log()[mark:], "it never went idle")
        e, pid_e, _ = imap()
        t.check(pid_e != pid_c, "the next connection gets a new process")
        logout(e)
        wait_idle(pid_e, mark)

    with t.case("too many bad commands end the process"):
        mark = len(d.log())
        c, pid_c, _ = imap()
        t.eq(pid_c, pid_e, "the idle process serves it")
        for i in range(3):
            c.send(b"x%d FOO\r\n" % i)
        try:
            while True:
                c.line()
        except (EOFError, OSError):
            pass
        t.check(wait_for(lambda: not alive(pid_c), what="the process to exit"), "the process exited")

    with t.case("a session that timed out ends its process"):
        restart("preauth_timeout: 1s\n")
        mark = len(d.log())
        c, pid_c, _ = imap()
        line = c.line()
        t.check(b"BYE" in line, f"autologout before login: {line!r}")
        t.check(wait_for(lambda: not alive(pid_c), what="the process to exit"), "the process exited")
        t.check(f"event=session_idle pid={pid_c} " not in d.log()[mark:], "it never went idle")
        close(c)
        restart("")

    with t.case("a client that closes between commands leaves the process reusable"):
        mark = len(d.log())
        c, pid_c, _ = imap()
        c.cmd("LOGIN alice alice-pw")
        close(c)
        wait_idle(pid_c, mark)
        c2, pid_c2, _ = imap()
        t.eq(pid_c2, pid_c, "same process")
        mark = len(d.log())
        logout(c2)
        wait_idle(pid_c, mark)

    with t.case("a reload lets the idle process go; maxuse 3: three connections, then exit"):
        old = pid_c
        mark = len(d.log())
        restart("maxuse: 3\n")
        t.check(wait_for(lambda: not alive(old), what="the idle process to exit"), "the idle process of the old config exited")
        pids = []
        for i in range(4):
            mark = len(d.log())
            c, pid, _ = imap()
            pids.append(pid)
            logout(c)
            if i < 2 or i == 3:
                wait_idle(pid, mark)
        t.check(old not in pids, "no connection for the old process")
        t.check(pids[0] == pids[1] == pids[2], f"three connections in one process: {pids}")
        t.check(pids[3] != pids[0], f"the fourth in a new one: {pids}")
        t.check(wait_for(lambda: not alive(pids[0]), what="the used-up process to exit"), "it exited after maxuse")

    with t.case("maxuse 1: a fresh process per connection"):
        last = pids[3]
        restart("maxuse: 1\n")
        wait_for(lambda: not alive(last), what="the idle process to exit")
        pids = []
        for i in range(3):
            c, pid, _ = imap()
            pids.append(pid)
            logout(c)
            wait_for(lambda: not alive(pid), what="the process to exit")
        t.eq(len(set(pids)), 3, f"three processes: {pids}")

    with t.case("maxperhost counts connections, not idle processes"):
        restart("maxperhost: 2\nmaxspare: 4\n")
        mark = len(d.log())
        held = [imap() for _ in range(2)]
        for r, pid, _ in held:
            logout(r)
        for r, pid, _ in held:
            wait_idle(pid, mark)
        pids = {pid for _, pid, _ in held}
        t.eq(len(pids), 2, "two idle processes")
        conns = [Raw(d.port["imap"]) for _ in range(3)]
        greet = [c.greeting for c in conns]
        t.check(greet[0].startswith(b"* OK") and greet[1].startswith(b"* OK"), "two connections served")
        t.check(b"Too many" in greet[2], f"the third refused (reason=host_limit) with idle processes around: {greet[2]!r}")
        t.check("reason=host_limit" in d.log()[mark:], "logged as host_limit")
        for c in conns[:2]:
            logout(c)
        close(conns[2])

    with t.case("imap_maxchild counts connections, not idle processes"):
        restart("imap_maxchild: 2\nmaxperhost: 0\nmaxspare: 4\n")
        mark = len(d.log())
        held = [imap() for _ in range(2)]
        for r, pid, _ in held:
            logout(r)
        for r, pid, _ in held:
            wait_idle(pid, mark)
        conns = [Raw(d.port["imap"]) for _ in range(3)]
        greet = [c.greeting for c in conns]
        t.check(greet[0].startswith(b"* OK") and greet[1].startswith(b"* OK"), "two connections served")
        t.check(b"Too many" in greet[2], f"the third refused: {greet[2]!r}")
        t.check("reason=service_limit" in d.log()[mark:], "logged as service_limit")
        pids = {int(p) for p, svc, _ in CONNECT.findall(d.log()[mark:]) if svc == "imap"}
        t.eq(len(pids), 2, f"served by the two processes, no third forked: {pids}")
        for c in conns[:2]:
            logout(c)
        close(conns[2])

    with t.case("an idle process exits after spare_timeout"):
        restart("spare_timeout: 1s\n")
        mark = len(d.log())
        c, pid, _ = imap()
        logout(c)
        wait_idle(pid, mark)
        t.check(wait_for(lambda: not alive(pid), timeout=30, what="the idle process to exit"),
                "it exited by itself")
        t.check(f"pid={pid} service=imap reason=spare_timeout" in d.log()[mark:], "logged why")

    with t.case("LMTP processes are reused"):
        restart("")
        mark = len(d.log())
        for i in range(3):
            mark = len(d.log())
            n = len(connects("lmtp"))
            l = smtplib.LMTP("127.0.0.1", d.port["lmtp"])
            l.sendmail("s@example.net", ["alice@test.example"], make_message(t.rng, 10 + i))
            l.quit()
            wait_for(lambda: len(connects("lmtp")) > n, what="the connect line")
            pid = connects("lmtp")[n][0]
            wait_idle(pid, mark)
        lp = [p for p, _ in connects("lmtp")[-3:]]
        t.check(lp[0] == lp[1] == lp[2], f"one LMTP process: {lp}")
        t.eq(len(inst.messages("user.alice")), 5, "every delivery stored")

    with t.case("a client that comes back from its address gets the process that served it last"):
        restart("maxspare: 4\n")
        mark = len(d.log())

        def imap_from(src):
            n = len(connects())
            plain = socket.create_connection
            socket.create_connection = lambda a, *args, **kw: plain(a, *args, source_address=(src, 0), **kw)
            try:
                r = Raw(d.port["imap"])
            finally:
                socket.create_connection = plain
            wait_for(lambda: len(connects()) > n, what="the connect line")
            return r, connects()[n][0]

        ra, pa = imap_from("127.0.1.1")
        rb, pb = imap_from("127.0.1.2")
        t.check(pa != pb, "two processes")
        logout(ra)
        wait_idle(pa, mark)
        logout(rb)
        wait_idle(pb, mark)	# the one idle last
        m2 = len(d.log())
        ra, pid = imap_from("127.0.1.1")
        t.eq(pid, pa, "127.0.1.1 back to its process, not the one idle last")
        logout(ra)
        wait_idle(pa, m2)
        rc, pid = imap_from("127.0.1.3")
        t.eq(pid, pa, "a new address: the process idle last")
        logout(rc)

    with t.case("a process keeps its users' databases open between sessions; a user deleted and created again is opened afresh"):
        mark = len(d.log())
        a, pid, _ = imap()
        _, tg = a.cmd("LOGIN alice alice-pw")
        un, tg = a.cmd("SELECT INBOX")
        t.check(tg.startswith(b"OK") and b"* 5 EXISTS\r\n" in un, f"alice's five messages: {un!r}")
        logout(a)
        wait_idle(pid, mark)
        t.check("fd_leak" not in d.log()[mark:], "the kept handles are not taken for a leak")
        t.check(any(f.endswith("/user/alice/meta.db") for f in fds(pid)),
                f"alice's database open in the idle process: {fds(pid)}")
        t.check(any(f.endswith("/users.db") for f in fds(pid)), "users.db too")
        # another process deletes alice and creates her again
        inst.ok(["user", "del", "alice"])
        inst.ok(["user", "add", "alice"], stdin=b"alice-pw2\n")
        t.eq(lmtp_send(d.port["lmtp"], "alice@test.example", make_message(t.rng, 40)), 250, "delivered to the new alice")
        mark = len(d.log())
        a, pid2, _ = imap()
        t.eq(pid2, pid, "the same process serves the next session")
        _, tg = a.cmd("LOGIN alice alice-pw")
        t.check(tg.startswith(b"NO"), f"the old password is gone: {tg!r}")
        close(a)
        t.check(wait_for(lambda: not alive(pid), what="the process to exit"), "(a failed login ends it)")
        mark = len(d.log())
        a, pid, _ = imap()
        _, tg = a.cmd("LOGIN alice alice-pw2")
        t.check(tg.startswith(b"OK"), f"the new alice logs in: {tg!r}")
        un, tg = a.cmd("SELECT INBOX")
        t.check(tg.startswith(b"OK") and b"* 1 EXISTS\r\n" in un, f"the new alice's one message: {un!r}")
        logout(a)
        wait_idle(pid, mark)
        # again, with the process holding the new alice's database
        inst.ok(["user", "del", "alice"])
        inst.ok(["user", "add", "alice"], stdin=b"alice-pw3\n")
        inst.ok(["mailbox", "create", "user.alice.Fresh"])
        mark = len(d.log())
        a, pid2, _ = imap()
        t.eq(pid2, pid, "the same process")
        _, tg = a.cmd("LOGIN alice alice-pw3")
        t.check(tg.startswith(b"OK"), f"logs in with the password of the third alice: {tg!r}")
        un, tg = a.cmd("SELECT INBOX")
        t.check(tg.startswith(b"OK") and b"* 0 EXISTS\r\n" in un, f"an empty INBOX, not the old one: {un!r}")
        un, _ = a.cmd('LIST "" *')
        t.check(any(b"Fresh" in ln for ln in un), f"the new mailbox listed: {un!r}")
        logout(a)
        wait_idle(pid, mark)
        t.check(not any(f.endswith("(deleted)") for f in fds(pid)), f"no deleted file held: {fds(pid)}")
        t.check("fd_leak" not in d.log()[mark:], "no descriptor leak")

    with t.case("a user moved away, then created again, between sessions of one process: the kept database is not used"):
        tgt = allow_replication(Instance())
        dt = Daemon(tgt, services=("sync",))
        text = open(inst.conf).read()
        head, tail = text.split("# reuse-test\n")
        open(inst.conf, "w").write(head + "sync_authname: repl\nsync_password: replpw\n# reuse-test\n" + tail)
        try:
            inst.ok(["user", "add", "carol"], stdin=b"carol-pw\n")
            for i in range(2):
                t.eq(lmtp_send(d.port["lmtp"], "carol@test.example", make_message(t.rng, 60 + i)), 250, "to carol")
            mark = len(d.log())
            a, pid, _ = imap()
            _, tg = a.cmd("LOGIN carol carol-pw")
            un, tg = a.cmd("SELECT INBOX")
            t.check(b"* 2 EXISTS\r\n" in un, f"carol's two messages: {un!r}")
            logout(a)
            wait_idle(pid, mark)
            t.check(any(f.endswith("/user/carol/meta.db") for f in fds(pid)), "carol's database kept")
            inst.ok(["move-user", "-S", f"127.0.0.1:{dt.port['sync']}", "carol"])
            t.check(any(f.endswith("/user/carol/meta.db (deleted)") for f in fds(pid)),
                    f"the idle process holds the moved user's old file: {fds(pid)}")
            mark = len(d.log())
            a, pid2, _ = imap()
            t.eq(pid2, pid, "the same process")
            _, tg = a.cmd("LOGIN carol carol-pw")
            t.check(tg.startswith(b"NO") and b"UNAVAILABLE" in tg and b"moved" in tg, f"moved: {tg!r}")
            logout(a)
            wait_idle(pid, mark)
            inst.ok(["user", "unmove", "carol"])
            inst.ok(["user", "add", "carol"], stdin=b"carol-pw2\n")
            t.eq(lmtp_send(d.port["lmtp"], "carol@test.example", make_message(t.rng, 70)), 250, "to the new carol")
            mark = len(d.log())
            a, pid2, _ = imap()
            t.eq(pid2, pid, "the same process")
            _, tg = a.cmd("LOGIN carol carol-pw2")
            t.check(tg.startswith(b"OK"), f"the new carol logs in: {tg!r}")
            un, tg = a.cmd("SELECT INBOX")
            t.check(tg.startswith(b"OK") and b"* 1 EXISTS\r\n" in un, f"the new carol's one message: {un!r}")
            logout(a)
            wait_idle(pid, mark)
            t.check(not any(f.endswith("(deleted)") for f in fds(pid)), f"no deleted file held: {fds(pid)}")
        finally:
            dt.stop()
            tgt.cleanup()

    with t.case("SIGTERM of tandemd ends idle processes at once"):
        mark = len(d.log())
        c, pid, _ = imap()
        logout(c)
        wait_idle(pid, mark)
        kids = children(d.proc.pid)
        t.check(pid in kids, "an idle process runs")
        rc = d.stop()
        t.eq(rc, 0, "tandemd stopped cleanly")
        t.check(wait_for(lambda: not any(alive(k) for k in kids), timeout=10, what="every child to exit"),
                "no child left")
        t.check("event=stop_kill" not in d.log(), "none had to be killed")
finally:
    if os.environ.get("KEEP"):
        print(d.logfile)
        inst.own_root = False
    if d:
        d.stop()
    inst.cleanup()
t.done()
