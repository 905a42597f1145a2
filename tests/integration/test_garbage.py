"""test_garbage.py: every port of one tandemd (imap, imaps, lmtp, sync) gets
random bytes, truncated commands, huge lines and literals announced then
dropped, ~200 connections in all with fixed seeds; then the daemon must
still serve IMAP and LMTP, be alive, log no crash, and have stored nothing.
A failing round prints its seed: rerun one with GARBAGE_ONLY=<seed>."""
import imaplib
import os
import random
import re
import smtplib
import socket
import ssl
import time

from tlib import Daemon, Instance, Suite, make_message

t = Suite("garbage")
ROUNDS = 200
BASE_SEED = 4242
ONLY = os.environ.get("GARBAGE_ONLY")


def noverify():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def rand_bytes(rng, n):
    return bytes(rng.randrange(256) for _ in range(n))


def rand_text(rng, n):
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789 ()[]{}<>\"\\*%.:+-") for _ in range(n)).encode()


# Valid beginnings per protocol; the generators cut them, garble them or
# leave a literal unsent. None of them completes a delivery or an APPEND.
IMAP_LINES = [b"a1 CAPABILITY\r\n", b"a2 LOGIN alice alicepw\r\n", b"a3 SELECT INBOX\r\n",
              b"a4 FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)] BODYSTRUCTURE)\r\n",
              b"a5 SEARCH OR FROM x (SUBJECT y NOT LARGER 10)\r\n", b"a6 UID FETCH 1:* (BODY[]<0.5>)\r\n",
              b"a7 STATUS INBOX (MESSAGES UIDNEXT)\r\n", b"a8 LIST \"\" *\r\n", b"a9 IDLE\r\n",
              b"a10 AUTHENTICATE PLAIN\r\n", b"a11 ID (\"name\" \"x\")\r\n", b"a12 NOOP\r\n",
              b"a13 ENABLE CONDSTORE\r\n", b"a14 COMPRESS DEFLATE\r\n", b"a15 STARTTLS\r\n"]
IMAP_LITERALS = [b"b1 APPEND INBOX (\\Seen) {%d}\r\n", b"b2 APPEND INBOX {%d+}\r\n", b"b3 LOGIN {%d}\r\n",
                 b"b4 LOGIN alice {%d+}\r\n", b"b5 SEARCH SUBJECT {%d}\r\n", b"b6 CREATE {%d}\r\n"]
LMTP_LINES = [b"LHLO x\r\n", b"MAIL FROM:<a@b>\r\n", b"RCPT TO:<alice>\r\n", b"DATA\r\n", b"RSET\r\n",
              b"NOOP\r\n", b"STARTTLS\r\n", b"MAIL FROM:<a@b> SIZE=100\r\n", b"RCPT TO:<alice+Folder>\r\n"]
SYNC_LINES = [b"A1 AUTHENTICATE PLAIN\r\n", b"A2 STARTTLS\r\n", b"A3 CAPABILITY\r\n",
              b"A4 GET USER alice\r\n", b"A5 GET MAILBOXES (user.alice)\r\n",
              b"A6 APPLY MESSAGE (%{default 0123456789012345678901234567890123456789 100}\r\n",
              b"A7 APPLY MAILBOX %(UNIQUEID x MBOXNAME user.alice.Evil LAST_UID 9 RECORD ())\r\n",
              b"A8 RESTART\r\n", b"A9 NOOP\r\n"]


def payload(rng, proto):
    """(description, list of byte chunks) for one connection."""
    kind = rng.choice(["random", "truncated", "huge", "literal", "mixed", "lmtp_data"])
    lines = {"imap": IMAP_LINES, "lmtp": LMTP_LINES, "sync": SYNC_LINES}[proto]
    if kind == "random":
        return kind, [rand_bytes(rng, rng.randint(1, 4096)) for _ in range(rng.randint(1, 3))]
    if kind == "truncated":
        chunks = [rng.choice(lines) for _ in range(rng.randint(0, 3))]
        ln = rng.choice(lines)
        return kind, chunks + [ln[:rng.randint(1, len(ln) - 1)]]
    if kind == "huge":
        n = rng.choice([70000, 300000, 1100000, 2500000])
        fill = rng.choice([b"A", b" ", b"(", b"\"", b"{", b"*"])
        head = rng.choice(lines)[:rng.randint(0, 12)]
        return kind, [head + fill * n + (b"\r\n" if rng.random() < 0.5 else b"")]
    if kind == "literal":
        if proto == "imap":
            pre = [b"a2 LOGIN alice alicepw\r\n", b"a3 SELECT INBOX\r\n"] if rng.random() < 0.6 else []
            n = rng.choice([10, 1000, 100000, 5000000, 4294967295, 99999999999999999999])
            lit = rng.choice(IMAP_LITERALS) % n
            part = rand_text(rng, rng.randint(0, min(n - 1, 3000))) if n > 1 else b""
            return kind, pre + [lit, part]
        if proto == "sync":
            n = rng.choice([10, 100000, 4294967295])
            return kind, [b"A1 APPLY MESSAGE (%%{default 0123456789012345678901234567890123456789 %d}\r\n" % n,
                          rand_text(rng, rng.randint(0, 500))]
        # LMTP: a message announced by DATA, then the connection dropped
        return kind, [b"LHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<alice>\r\nDATA\r\n",
                      b"Subject: dropped\r\n\r\n" + rand_text(rng, rng.randint(0, 3000))]
    if kind == "mixed":
        out = []
        for _ in range(rng.randint(2, 8)):
            r = rng.random()
            if r < 0.4:
                out.append(rng.choice(lines))
            elif r < 0.7:
                out.append(rand_text(rng, rng.randint(1, 200)) + b"\r\n")
            else:
                out.append(rand_bytes(rng, rng.randint(1, 200)))
        return kind, out
    # lmtp_data: for every protocol, a delivery cut before its final dot
    return kind, [b"LHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<alice>\r\nDATA\r\n" + rand_text(rng, 100) +
                  b"\r\n.." + rand_bytes(rng, 50)]


def one_round(seed):
    rng = random.Random(seed)
    port_name = rng.choice(["imap", "imaps", "lmtp", "sync"])
    proto = "imap" if port_name == "imaps" else port_name
    desc, chunks = payload(rng, proto)
    s = socket.create_connection(("127.0.0.1", d.port[port_name]), timeout=2)
    try:
        if port_name == "imaps" and rng.random() < 0.8:
            s = noverify().wrap_socket(s)
        s.settimeout(0.05)
        for c in chunks:
            try:
                s.sendall(c)
            except (socket.timeout, BlockingIOError):
                break  # the server stopped reading: that is fine
            try:
                s.recv(65536)
            except (socket.timeout, BlockingIOError, ssl.SSLWantReadError):
                pass
        if rng.random() < 0.3:
            s.shutdown(socket.SHUT_WR)
            try:
                s.recv(65536)
            except (socket.timeout, BlockingIOError, ssl.SSLWantReadError):
                pass
    except (OSError, ssl.SSLError):
        pass  # reset, closed by the server: expected for garbage
    finally:
        try:
            s.close()
        except OSError:
            pass
    return port_name, desc


def counts():
    out = {}
    for ln in inst.ok(["mailbox", "list"]).splitlines():
        f = ln.split("\t")
        out[f[0]] = int(f[1])
    return out


inst = Instance(channels="repl1")
d = None
try:
    inst.ok(["user", "add", "alice"], stdin="alicepw\n")
    for i in range(3):
        inst.ok(["deliver", "alice"], stdin=make_message(t.rng, i))
    d = Daemon(inst, services=("imap", "imaps", "lmtp", "sync"), extra_conf="failedloginpause: 0\n")
    before = counts()

    with t.case(f"{ROUNDS} garbage connections over imap, imaps, lmtp and sync"):
        seeds = [int(ONLY)] if ONLY else [BASE_SEED + i for i in range(ROUNDS)]
        start = time.time()
        for seed in seeds:
            try:
                port_name, desc = one_round(seed)
            except Exception as e:
                t.check(False, f"seed {seed}: the client failed: {e!r}")
                continue
            if not t.check(d.proc.poll() is None, f"seed {seed} ({port_name} {desc}): tandemd died"):
                break
            crash = re.search(r"event=session_crash.*|AddressSanitizer.*|runtime error.*", d.log())
            if not t.check(not crash, f"seed {seed} ({port_name} {desc}): {crash and crash.group(0)}"):
                break
            if time.time() - start > 40:
                print(f"  stopped after {seeds.index(seed) + 1} rounds (time box)")
                break

    time.sleep(0.5)  # sessions still reading their garbage finish

    with t.case("IMAP still serves: LOGIN, SELECT, FETCH"):
        M = imaplib.IMAP4("127.0.0.1", d.port["imap"])
        M.login("alice", "alicepw")
        typ, data = M.select("INBOX")
        t.eq((typ, data), ("OK", [str(before["user.alice"]).encode()]), "SELECT")
        typ, data = M.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        t.check(typ == "OK" and b"Subject: test message 0" in data[0][1], f"FETCH: {data}")
        M.logout()

    with t.case("imaps still serves"):
        M = imaplib.IMAP4_SSL("127.0.0.1", d.port["imaps"], ssl_context=noverify())
        M.login("alice", "alicepw")
        t.eq(M.select("INBOX")[0], "OK", "SELECT over imaps")
        M.logout()

    with t.case("nothing was stored by the garbage"):
        t.eq(counts(), before, "message counts of every mailbox")
        t.eq(inst.ok(["user", "list"]).split(), ["alice"], "no user made")

    with t.case("LMTP still delivers"):
        l = smtplib.LMTP("127.0.0.1", d.port["lmtp"])
        t.eq(l.sendmail("a@b", ["alice"], make_message(t.rng, 99)), {}, "delivered")
        l.quit()
        t.eq(counts()["user.alice"], before["user.alice"] + 1, "one more message")

    with t.case("the daemon is alive and logged no crash"):
        t.check(d.proc.poll() is None, "tandemd alive")
        log = d.log()
        for bad in ["level=crit", "event=session_crash", "AddressSanitizer", "runtime error", "Segmentation",
                    "SIGSEGV", "stack-buffer", "heap-buffer"]:
            t.check(bad not in log, f"'{bad}' in the log: " +
                    "\n".join(ln for ln in log.splitlines() if bad in ln)[:2000])
        r = inst.run(["check", "--bodies"])
        t.eq(r.returncode, 0, r.stdout + r.stderr)
finally:
    if d:
        d.stop()
    inst.cleanup()
t.done()
