"""test_status.py: `tandem status` and `tandem status --json` as a
monitoring check uses them: an instance without channels (tandemd
stopped, then running: pid, uptime, listeners), a running channel (its
client connected, its last success), a failed mailbox with its error,
the replica down (the client backing off with its error, pending lines
and bytes behind growing, --max-lag exits 1 once the oldest change is
older, not before), a killed client (tandemd's restart shows as
last_exit), tandemd stopped (the client no longer runs), bad usage."""
import json
import os
import re
import signal
import smtplib

from tlib import Daemon, Instance, Pair, Suite, make_message, wait_for

t = Suite("status")


def status(inst, *args):
    r = inst.run(["status"] + list(args))
    return r.returncode, r.stdout, r.stderr


def sjson(inst, *args):
    rc, out, err = status(inst, "--json", *args)
    try:
        return rc, json.loads(out)
    except ValueError:
        raise AssertionError(f"not JSON (rc {rc}): {out!r} {err!r}")


def channel(doc, name):
    hits = [c for c in doc["channels"] if c["channel"] == name]
    return hits[0] if len(hits) == 1 else None


def deliver(port, rcpts, i):
    l = smtplib.LMTP("127.0.0.1", port)
    l.sendmail("s@example.net", rcpts, make_message(t.rng, i))
    l.quit()


# ---------------------------------------------------------------- no channels
inst = Instance()
d = None
try:
    with t.case("no channels, tandemd stopped"):
        rc, out, err = status(inst)
        t.eq(rc, 0, f"exit 0: {err}")
        t.check(out.startswith("tandemd=stopped "), f"says tandemd is stopped: {out}")
        t.check("channels=0" in out, f"says there is no channel: {out}")
        rc, doc = sjson(inst)
        t.eq(rc, 0, "exit 0")
        t.eq(doc["tandemd"]["running"], False, "not running")
        t.eq(doc["channels"], [], "no channel")
        t.eq(doc["replication"], False, "replication off")
        t.eq(doc["stalled"], 0, "nothing stalled")
        t.check(doc["version"], "a version")

    with t.case("no channels, tandemd running: pid, uptime, listeners, version"):
        d = Daemon(inst, services=("imap", "lmtp"))
        rc, doc = sjson(inst, "--max-lag", "1s")
        t.eq(rc, 0, "exit 0 (no channel can stall)")
        td = doc["tandemd"]
        t.eq(td["running"], True, "running")
        t.eq(td["pid"], d.proc.pid, "tandemd's pid")
        t.check(td["uptime_s"] >= 0 and td["started"] > 0, f"uptime: {td}")
        t.eq(td["version"], doc["version"], "the daemon's version")
        ports = sorted((l["service"], l["port"]) for l in td["listeners"])
        t.eq(ports, sorted([("imap", d.port["imap"]), ("lmtp", d.port["lmtp"])]), "listeners with their ports")
        rc, out, _ = status(inst)
        t.check(out.startswith(f"tandemd=running pid={d.proc.pid} "), f"text: {out}")
        t.check(f"listener service=lmtp addr=127.0.0.1:{d.port['lmtp']} port={d.port['lmtp']}" in out, out)
        d.stop()
        d = None
        t.check(status(inst)[1].startswith("tandemd=stopped"), "stopped again")
finally:
    if d:
        d.stop()
    inst.cleanup()

# ---------------------------------------------------------------- a channel
pair = Pair(extra_master="sync_reconnect_minwait: 200ms\nsync_reconnect_maxwait: 1s\nsync_drain_timeout: 2s\n")
m, r = pair.master, pair.replica
d = None
try:
    m.ok(["user", "add", "--no-password", "alice"])
    # the replica holds user.alice.Bad with another uniqueid: it fails, always
    r.ok(["user", "add", "--no-password", "alice"])
    r.ok(["mailbox", "create", "user.alice.Bad"])
    r.ok(["deliver", "alice+Bad"], make_message(t.rng, 100))
    m.ok(["mailbox", "create", "user.alice.Bad"])
    m.ok(["deliver", "alice", "alice+Bad"], make_message(t.rng, 101))
    d = Daemon(m, services=("lmtp",))
    lmtp = d.port["lmtp"]

    with t.case("a running channel: its client connected, a success, a failed mailbox with its error"):
        deliver(lmtp, ["alice"], 0)

        def caught_up():
            rc, doc = sjson(m)
            c = channel(doc, "repl1")
            cl = c and c["clients"][0]
            # the failed list is written during the pass, the client's state file after it
            ok = cl and c["pending_lines"] == 0 and cl["state"] == "connected" and c["failed_mailboxes"] and \
                cl["passes"] >= 1 and cl["last_success"]
            return doc if ok else None
        doc = wait_for(caught_up, 30, "connected, caught up, the failure recorded, the pass published")
        c = channel(doc, "repl1")
        cl = c["clients"][0]
        t.eq(c["replica"], f"127.0.0.1:{pair.port}", "the replica")
        t.eq(c["shards"], 1, "one shard")
        t.eq(cl["shard"], None, "unsharded")
        t.check(cl["pid"] and os.path.exists(f"/proc/{cl['pid']}"), f"a live client pid: {cl}")
        t.check(cl["last_success"], f"a last success: {cl}")
        t.check(cl["bytes_sent"] > 0 and cl["passes"] >= 1, f"bytes and passes: {cl}")
        t.eq(c["bytes_behind"], 0, "nothing behind")
        fm = cl["failed_mailboxes"]
        t.check(len(fm) == 1 and fm[0]["mailbox"] == "user.alice.Bad" and fm[0]["error"] and fm[0]["attempts"] >= 1,
                f"the failed mailbox with its error: {fm}")
        t.eq(c["failed_mailboxes"], 1, "counted on the channel")
        rc, out, _ = status(m, "-n", "repl1")
        t.eq(rc, 0, "exit 0")
        t.check(re.search(r"^channel=repl1 pending_lines=0$", out, re.M), f"the total first, as before: {out}")
        t.check(re.search(rf"^channel=repl1 client=connected pid={cl['pid']} .*failed_mailboxes=1", out, re.M),
                f"client line: {out}")
        t.check("mailbox=user.alice.Bad state=failed" in out, "failed line as before")
        t.eq(sjson(m, "--max-lag", "60s")[0], 0, "not stalled")

    with t.case("replica down: backing off with its error, pending grows, --max-lag exits 1 past the lag"):
        pair.stop_replica()
        deliver(lmtp, ["alice"], 1)

        def backing_off():
            rc, doc = sjson(m)
            c = channel(doc, "repl1")
            return doc if c and c["clients"][0]["state"] in ("backoff", "connecting") and c["pending_lines"] > 0 \
                else None
        doc = wait_for(backing_off, 30, "the client backing off with pending lines")
        c = channel(doc, "repl1")
        cl = c["clients"][0]
        t.check(cl["error"], f"the connect error is shown: {cl}")
        if cl["state"] == "backoff":
            t.check(cl["backoff_until"] and cl["backoff_until"] >= cl["since"], f"until when: {cl}")
        p1, b1 = c["pending_lines"], c["bytes_behind"]
        t.check(b1 > 0, "bytes behind")
        deliver(lmtp, ["alice"], 2)
        c = channel(sjson(m)[1], "repl1")
        t.check(c["pending_lines"] > p1 and c["bytes_behind"] > b1, f"grew: {c}")
        t.check(c["oldest_pending_s"] >= 0, "the oldest pending change's age")
        t.eq(status(m, "--max-lag", "1h")[0], 0, "within an hour's lag: exit 0")
        rc, out, _ = wait_for(lambda: (lambda x: x if x[0] == 1 else None)(status(m, "--max-lag", "1s")), 30,
                              "exit 1 with --max-lag 1s once the oldest change is 2 s old")
        t.check(re.search(r"^channel=repl1 stalled=yes lag_s=\d+ max_lag_s=1$", out, re.M), f"stalled line: {out}")
        rc, doc = sjson(m, "--max-lag", "1s")
        t.eq(rc, 1, "--json exits 1 too")
        t.eq(doc["stalled"], 1, "one stalled channel")
        t.eq(channel(doc, "repl1")["stalled"], True, "the channel is stalled")
        t.eq(doc["max_lag_s"], 1, "max_lag_s")

    with t.case("back: caught up, exit 0"):
        pair.start_replica()
        wait_for(lambda: status(m, "--max-lag", "1s")[0] == 0 and
                 channel(sjson(m)[1], "repl1")["clients"][0]["state"] == "connected", 60, "caught up")
        t.eq(channel(sjson(m)[1], "repl1")["pending_lines"], 0, "nothing pending")

    with t.case("a killed client: tandemd restarts it, its exit shows"):
        old = channel(sjson(m)[1], "repl1")["clients"][0]["pid"]
        os.kill(old, signal.SIGKILL)

        def restarted():
            cl = channel(sjson(m)[1], "repl1")["clients"][0]
            return cl if cl["last_exit"] == 137 and cl["pid"] and cl["pid"] != old else None
        cl = wait_for(restarted, 30, "a new client, last_exit 137")
        t.check(cl["state"] in ("connected", "connecting", "starting"), f"running again: {cl}")
        rc, out, _ = status(m)
        t.check("last_exit=137" in out, f"text shows it: {out}")

    with t.case("tandemd stopped: the client no longer runs"):
        d.stop()
        d = None
        rc, doc = sjson(m)
        t.eq(rc, 0, "exit 0")
        t.eq(doc["tandemd"]["running"], False, "tandemd not running")
        cl = channel(doc, "repl1")["clients"][0]
        t.check(cl["state"] in ("stopped", "exited") and cl["pid"] is None, f"no client: {cl}")
        t.check(cl["last_success"], "its last success is still shown")
        rc, out, _ = status(m)
        t.check(out.startswith("tandemd=stopped") and re.search(r"client=(stopped|exited) pid=0", out), out)

    with t.case("bad usage exits 2"):
        for args in (["--max-lag"], ["--max-lag", "soon"], ["--max-lag", "5x"], ["--what"], ["-n"]):
            t.eq(status(m, *args)[0], 2, f"status {' '.join(args)}")
        t.eq(status(m, "--max-lag", "90")[0], 0, "a bare number is seconds")
finally:
    if d:
        d.stop()
    pair.cleanup()
t.done()
