"""test_crash.py: deliveries and flag changes killed with SIGKILL at
random moments. Afterwards every delivery that was acknowledged (exit 0)
is present and intact (bytes re-hashed against the GUID), the store checks
clean (files, sizes, SHA-1s, UIDs, modseqs, CRCs), and every acknowledged
message has its APPEND line in the change log."""
import os
import signal
import subprocess
import time

from tlib import TANDEM, Instance, Suite, make_message, sha1

t = Suite("crash")
inst = Instance(channels="repl1")
ROUNDS = int(os.environ.get("TANDEM_CRASH_ROUNDS", "150"))
try:
    inst.ok(["user", "add", "--no-password", "alice"])
    inst.ok(["mailbox", "create", "user.alice.Box"])
    acked = {}          # sha1 -> message bytes
    killed = 0          # SIGKILLs sent
    confirmed = 0       # ... that landed before the process ended (returncode -9)
    with t.case(f"{ROUNDS} operations, about half killed with SIGKILL"):
        for i in range(ROUNDS):
            m = make_message(t.rng, i, t.rng.randint(500, 60000))
            target = t.rng.choice(["alice", "alice+Box"])
            if t.rng.random() < 0.2:
                cmd = [TANDEM, "-C", inst.conf, "message", "flag",
                       "user.alice" if target == "alice" else "user.alice.Box",
                       str(t.rng.randint(1, 20)), t.rng.choice(["+\\Seen", "-\\Seen", "+$x", "=\\Flagged"])]
                data = b""
            else:
                cmd = [TANDEM, "-C", inst.conf, "deliver", target]
                data = m
            p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            kill_after = t.rng.random() * 0.03 if t.rng.random() < 0.6 else None
            try:
                if kill_after is not None:
                    p.stdin.write(data)
                    p.stdin.close()
                    time.sleep(kill_after)
                    p.send_signal(signal.SIGKILL)
                    p.wait()
                    out = p.stdout.read()
                    p.stdout.close()
                    p.stderr.close()
                    killed += 1
                    if p.returncode == -signal.SIGKILL:
                        confirmed += 1
                else:
                    out, _ = p.communicate(data)
            except BrokenPipeError:
                p.wait()
                out = p.stdout.read()
            if p.returncode == 0 and data:
                t.check(b"delivered" in out, f"round {i}: exit 0 says delivered")
                acked[sha1(m)] = m
        print(f"  {len(acked)} deliveries acknowledged, {killed} SIGKILLs sent, {confirmed} landed mid-operation")
        t.check(killed > ROUNDS // 4, "enough operations were killed")
        t.check(confirmed > ROUNDS // 5, f"enough kills landed before the operation ended ({confirmed})")

    with t.case("every acknowledged delivery is present and intact"):
        present = {}
        for box in ["user.alice", "user.alice.Box"]:
            for uid, _, _, _, size, guid in inst.messages(box):
                present[guid] = (box, uid, size)
        missing = [g for g in acked if g not in present]
        t.eq(missing, [], "acknowledged messages missing")
        for g, m in list(acked.items())[:40]:
            box, uid, size = present.get(g, (None, None, None))
            if box:
                r = subprocess.run([TANDEM, "-C", inst.conf, "message", "fetch", box, str(uid)],
                                   capture_output=True)
                t.eq(r.returncode, 0, f"fetch {box} {uid}")
                t.eq(sha1(r.stdout), g, f"bytes of {box} {uid} hash to their GUID")
                t.eq(size, len(m), f"size of {g}")

    with t.case("killed after the change-log line, before COMMIT, the file's fsyncs still running"):
        # store_deliver makes the message file durable in a thread beside
        # the change-log append; TANDEM_TEST_KILL_BEFORE_COMMIT kills the
        # process once the line is durable, before it waits for the file:
        # nothing is acknowledged or committed, and the same bytes can be
        # delivered again (the file may be there already, under its name
        # or in tmp/).
        logp = os.path.join(inst.dir, "conf", "sync", "repl1", "log")
        for k in range(4):
            m = make_message(t.rng, 90000 + k // 2, 20000)	# each message twice
            before = len(inst.messages("user.alice"))
            lines0 = open(logp).read().count("APPEND user.alice\n") if os.path.exists(logp) else 0
            env = dict(os.environ, TANDEM_TEST_KILL_BEFORE_COMMIT="1")
            p = subprocess.run([TANDEM, "-C", inst.conf, "deliver", "alice"], input=m, capture_output=True,
                               env=env, timeout=60)
            t.eq(p.returncode, -signal.SIGKILL, f"kill {k}: killed by the hook")
            t.check(b"delivered" not in p.stdout, f"kill {k}: not acknowledged")
            lines1 = open(logp).read().count("APPEND user.alice\n")
            t.eq(lines1, lines0 + 1, f"kill {k}: the change-log line was durable before the kill")
            t.eq(len(inst.messages("user.alice")), before, f"kill {k}: nothing committed")
            if k % 2 == 1:
                r = inst.run(["deliver", "alice"], m)
                t.eq(r.returncode, 0, f"kill {k}: the same message delivered again: {r.stderr}")
                rows = [row for row in inst.messages("user.alice") if row[5] == sha1(m)]
                t.eq(len(rows), 1, f"kill {k}: present once")
                if rows:
                    f = subprocess.run([TANDEM, "-C", inst.conf, "message", "fetch", "user.alice", str(rows[0][0])],
                                       capture_output=True)
                    t.eq(sha1(f.stdout), sha1(m), f"kill {k}: its bytes hash to its GUID")
                acked[sha1(m)] = m

    with t.case("store checks clean after the crashes (files, SHA-1, CRCs)"):
        r = inst.run(["check", "--bodies"])
        t.eq(r.returncode, 0, f"check: {r.stdout}{r.stderr}")

    with t.case("every acknowledged message has its change-log line"):
        log = open(os.path.join(inst.dir, "conf", "sync", "repl1", "log")).read()
        appends = log.count("APPEND user.alice\n") + log.count("APPEND user.alice.Box\n")
        t.check(appends >= len(acked), f"{appends} APPEND lines for {len(acked)} acknowledged messages")

    with t.case("the store still works after the crashes"):
        r = inst.run(["deliver", "alice"], make_message(t.rng, 99999))
        t.eq(r.returncode, 0, f"deliver: {r.stderr}")
finally:
    inst.cleanup()
t.done()
