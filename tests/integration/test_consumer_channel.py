"""test_consumer_channel.py: a consumer channel (one without sync_host)
feeding another program through `tandem synclog --follow CHANNEL`.

The consumer is a small Python script that reads its standard input one
byte at a time and appends each whole line to a file (as an indexer would
process it). Lines are written to the channel by a writer thread (one
`tandem synclog` per line, each line distinct) and by LMTP deliveries to
a running tandemd, which must start no sync client for the channel. While
lines keep coming, the follower is stopped with SIGTERM and started again,
the consumer is killed outright (SIGKILL) and started again, and the
follower itself is killed outright: every line reaches the consumer, in
order; exactly once across the clean stops and the consumer's death, at
least once across the follower's SIGKILL. A replica still logs to
squatter (sync_log_unsuppressable_channels) while it suppresses its other
channels.
"""
import os
import signal
import smtplib
import subprocess
import sys
import threading

from tlib import TANDEM, Daemon, Instance, Pair, Suite, wait_for, wait_log

t = Suite("consumer_channel")
pipelines = []      # every one started, ended at the end whatever happened

CONSUMER = r"""
import os, sys, time
out = open(sys.argv[1], "ab")
raw = sys.stdin.buffer.raw
pause = sys.argv[1] + ".pause"
while True:
    while os.path.exists(pause):   # the test holds the consumer still
        time.sleep(0.02)
    line = raw.readline()          # one byte at a time: nothing read is left unprocessed
    if not line:
        break
    if line.endswith(b"\n"):
        out.write(line)
        out.flush()
"""


class Pipeline:
    """`tandem synclog --follow CHANNEL | consumer.py OUT` as two processes."""

    def __init__(self, inst, channel, out, script, extra=()):
        self.follower = subprocess.Popen([TANDEM, "-C", inst.conf, "synclog", "--follow", channel] + list(extra),
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.consumer = subprocess.Popen([sys.executable, script, out], stdin=self.follower.stdout)
        self.follower.stdout.close()    # the consumer holds the read end alone
        pipelines.append(self)

    def stop_follower(self, sig=signal.SIGTERM):
        self.follower.send_signal(sig)
        rc = self.follower.wait(60)
        err = self.follower.stderr.read().decode()
        self.consumer.wait(60)          # EOF once the follower is gone
        return rc, err

    def kill_consumer(self):
        self.consumer.kill()
        self.consumer.wait(60)
        rc = self.follower.wait(60)     # its next write fails, or it sees the reader gone
        return rc, self.follower.stderr.read().decode()


def end_all():
    """Ends every pipeline still running (one a failed case left)."""
    for p in pipelines:
        for proc in (p.follower, p.consumer):
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def lines_of(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode().splitlines()
    except FileNotFoundError:
        return []


def run_writer(inst, names, done):
    for n in names:
        inst.ok(["synclog", "-u", n])
    done.set()


root = None
try:
    inst = Instance(channels="squatter")
    root = inst.root
    script = os.path.join(root, "consumer.py")
    with open(script, "w") as f:
        f.write(CONSUMER)
    out = os.path.join(root, "indexed.txt")
    inst.ok(["user", "add", "bob"], "pw\n")
    sqdir = os.path.join(inst.dir, "conf", "sync", "squatter")

    with t.case("the follower refuses a channel with a sync_host and one not logged to"):
        other = Instance(channels="repl1 squatter", extra_conf="repl1_sync_host: 127.0.0.1:9\n")
        r = other.run(["synclog", "--follow", "repl1"])
        t.eq(r.returncode, 2, "a replica's channel")
        t.check("sync_host" in r.stderr, r.stderr)
        r = other.run(["synclog", "--follow", "nosuch"])
        t.eq(r.returncode, 2, "a channel not in sync_log_channels")
        other.cleanup()

    with t.case("tandemd runs no sync client for a consumer channel; deliveries reach the consumer"):
        d = Daemon(inst, services=("lmtp",))
        log = wait_log(d, "event=started")
        t.check("sync_clients=0" in log, "sync_clients=0 in: " + log[-400:])
        p = Pipeline(inst, "squatter", out, script)
        for i in range(3):
            lm = smtplib.LMTP("127.0.0.1", d.port["lmtp"])
            lm.sendmail("a@example.net", ["bob"], f"Subject: m{i}\r\n\r\nbody {i}\r\n")
            lm.quit()
        wait_for(lambda: lines_of(out).count("APPEND user.bob") >= 3, what="3 APPEND lines at the consumer")
        t.eq(lines_of(out).count("APPEND user.bob"), 3, "each delivery's APPEND once")
        t.check("sync_client_start" not in d.log(), "no sync client started")
        rc, err = p.stop_follower()
        t.eq(rc, 0, "SIGTERM ends the follower cleanly: " + err)
        t.check("reason=stopped" in err, err)
        d.stop()
        wait_for(lambda: not os.path.exists(os.path.join(sqdir, "log-run")), what="log-run removed")

    end_all()
    with t.case("rotations, follower restarts (SIGTERM) and a consumer killed: every line exactly once, in order"):
        if os.path.exists(out):
            os.unlink(out)
        names = [f"u{i:04d}" for i in range(240)]
        done = threading.Event()
        w = threading.Thread(target=run_writer, args=(inst, names, done))
        w.start()
        want = [f"USER {n}" for n in names]
        p = Pipeline(inst, "squatter", out, script)
        wait_for(lambda: len(lines_of(out)) >= 40, what="40 lines")
        rc, err = p.stop_follower()
        t.eq(rc, 0, "first follower stopped: " + err)
        p = Pipeline(inst, "squatter", out, script)
        wait_for(lambda: len(lines_of(out)) >= 100, what="100 lines")
        rc, err = p.kill_consumer()
        t.eq(rc, 1, "the follower says the consumer is gone: " + err)
        t.check("consumer_gone" in err, err)
        p = Pipeline(inst, "squatter", out, script)
        wait_for(lambda: len(lines_of(out)) >= 160, what="160 lines")
        rc, err = p.stop_follower()
        t.eq(rc, 0, "third follower stopped: " + err)
        w.join(300)
        t.check(done.is_set(), "the writer finished")
        p = Pipeline(inst, "squatter", out, script, extra=["--once"])
        t.eq(p.follower.wait(120), 0, "the last follower drains the log and ends")
        p.consumer.wait(60)
        got = lines_of(out)
        t.eq(len(got), len(want), "lines at the consumer")
        t.check(got == want, "every line once, in order (first difference at "
                f"{next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), None)})")
        t.check(not os.path.exists(os.path.join(sqdir, "log-run")) and not os.path.exists(os.path.join(sqdir, "log")),
                "the log is consumed and removed")

    end_all()
    with t.case("a consumer killed with lines unread in the pipe: they go to the next consumer, once"):
        if os.path.exists(out):
            os.unlink(out)
        pause = out + ".pause"
        open(pause, "w").close()
        try:
            p = Pipeline(inst, "squatter", out, script)
            names = [f"p{i:04d}" for i in range(20)]
            for n in names:
                inst.ok(["synclog", "-u", n])
            state = os.path.join(sqdir, "follow")
            # some taken and written to the pipe (the position is saved
            # after each write), not read: log-run waits for the consumer,
            # the rest waits in log
            wait_for(lambda: os.path.exists(state) and os.path.exists(os.path.join(sqdir, "log-run")),
                     what="lines written into the pipe")
            rc, err = p.kill_consumer()
        finally:
            os.unlink(pause)
        t.eq(rc, 1, "the follower ends: " + err)
        t.eq(lines_of(out), [], "the paused consumer processed nothing")
        p = Pipeline(inst, "squatter", out, script, extra=["--once"])
        t.eq(p.follower.wait(120), 0, "the next follower")
        p.consumer.wait(60)
        t.eq(lines_of(out), [f"USER {n}" for n in names], "the unread lines, once, in order")

    end_all()
    with t.case("a follower killed outright: nothing lost (at least once), the next one goes on"):
        if os.path.exists(out):
            os.unlink(out)
        names = [f"k{i:04d}" for i in range(120)]
        done = threading.Event()
        w = threading.Thread(target=run_writer, args=(inst, names, done))
        w.start()
        p = Pipeline(inst, "squatter", out, script)
        wait_for(lambda: len(lines_of(out)) >= 30, what="30 lines")
        p.stop_follower(signal.SIGKILL)
        w.join(300)
        p = Pipeline(inst, "squatter", out, script, extra=["--once"])
        t.eq(p.follower.wait(120), 0, "the next follower drains the log")
        p.consumer.wait(60)
        got = lines_of(out)
        want = [f"USER {n}" for n in names]
        firsts = list(dict.fromkeys(got))
        t.check(firsts == want, "every line at least once, in order of first arrival")
        t.check(len(got) >= len(want), f"{len(got)} lines for {len(want)}")

    end_all()
    with t.case("a replica logs to squatter (unsuppressable) and not to its other channels"):
        pair = Pair(extra_master="")
        try:
            with open(pair.replica.conf, "a") as f:
                f.write("sync_log: yes\nsync_log_channels: squatter other\n")
            pair.stop_replica()
            pair.start_replica()
            pair.master.ok(["user", "add", "carol"], "pw\n")
            pair.master.ok(["deliver", "carol"], b"Subject: x\r\n\r\nhello\r\n")
            t.eq(pair.sync("-u", "carol").returncode, 0, "sync to the replica")
            rsync = os.path.join(pair.replica.dir, "conf", "sync")
            sq = os.path.join(rsync, "squatter", "log")
            text = open(sq).read() if os.path.exists(sq) else ""
            t.check("APPEND user.carol" in text, "the replica's squatter log has the APPEND: " + text)
            t.check(not os.path.exists(os.path.join(rsync, "other", "log")), "nothing logged to 'other'")
            r = pair.replica.run(["synclog", "--follow", "squatter", "--once"])
            t.eq(r.returncode, 0, "a follower on the replica: " + r.stderr)
            t.check("APPEND user.carol" in r.stdout, r.stdout)
        finally:
            pair.cleanup()
finally:
    end_all()
    if root:
        inst.cleanup()
t.done()
