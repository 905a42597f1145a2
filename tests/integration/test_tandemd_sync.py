"""test_tandemd_sync.py: tandemd runs one rolling sync client per channel.
Mail delivered over LMTP to the master shows up on the replica without
any hand-run command; a second channel whose replica is down does not
hold the first back; the client is restarted when it dies; SIGTERM
drains what is logged before tandemd exits."""
import os
import re
import signal
import smtplib
import subprocess
import time

from tlib import Daemon, Pair, Suite, free_port, make_message, wait_for, wait_log

t = Suite("tandemd-sync")
dead_port = free_port()
pair = Pair(extra_master=f"sync_log_channels: repl1 down\ndown_sync_host: 127.0.0.1:{dead_port}\n"
                         "sync_reconnect_minwait: 200ms\nsync_reconnect_maxwait: 1s\n"
                         "sync_drain_timeout: 3s\n")
# Pair wrote "sync_log_channels" through tandem init; drop that first line
conf = open(pair.master.conf).read()
first = conf.index("sync_log_channels: repl1\n")
open(pair.master.conf, "w").write(conf[:first] + conf[first + len("sync_log_channels: repl1\n"):])
m = pair.master
d = None


def wait_equal(timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pair.compare()[0] == 0:
            return True
        time.sleep(0.2)
    return False


try:
    for u in ["alice", "bob"]:
        m.ok(["user", "add", "--no-password", u])
    d = Daemon(m, services=("lmtp",))
    with t.case("LMTP deliveries reach the replica by themselves"):
        # (the latency itself is measured by make bench: bench/bench_sync.py)
        for i in range(10):
            l = smtplib.LMTP("127.0.0.1", d.port["lmtp"])
            l.sendmail("s@example.net", ["alice", "bob"], make_message(t.rng, i))
            l.quit()
            want = i + 1
            wait_for(lambda: len(pair.replica.run(["message", "list", "user.alice"]).stdout.splitlines()) >= want,
                     30, f"delivery {want} on the replica")
        t.check(wait_equal(), "master == replica")
        t.imap_equal(m, pair.replica, "after the LMTP deliveries")
        log = d.log()
        t.check("event=sync_client_start channel=repl1" in log, "client of repl1 started")
        t.check("event=sync_client_start channel=down" in log, "client of the down channel started")

    with t.case("the down channel keeps its log; repl1 keeps replicating"):
        down_log = os.path.join(m.dir, "conf", "sync", "down")
        files = os.listdir(down_log)
        t.check("log" in files or "log-run" in files, f"down channel's log kept: {files}")
        st = dict((l.split()[0], l) for l in m.ok(["status"]).splitlines() if "oldest_pending_s=" in l)
        lag_down = int(st["channel=down"].split("oldest_pending_s=")[1])
        lag_repl1 = int(st["channel=repl1"].split("oldest_pending_s=")[1])
        t.check(lag_down >= 1 or lag_down == -1, f"status shows the down channel's lag: {st}")
        t.eq(lag_repl1, 0, "and none on the live one")

    with t.case("the client makes the next log; a change after an idle time shows its own age"):
        # the rolling client makes the next log, empty, when it takes one
        # (docs/changelog.md, "The next log"): writers do not create logs
        repl1_log = os.path.join(m.dir, "conf", "sync", "repl1", "log")
        wait_for(lambda: os.path.exists(repl1_log) and os.path.getsize(repl1_log) == 0, 10,
                 "an empty next log made by the client")
        time.sleep(3.2)	# the empty log ages
        pid = int(re.findall(r"event=sync_client_start channel=repl1 pid=(\d+)", d.log())[-1])
        os.kill(pid, signal.SIGSTOP)	# hold the client: the change stays pending
        try:
            l = smtplib.LMTP("127.0.0.1", d.port["lmtp"])
            l.sendmail("s@example.net", ["alice"], make_message(t.rng, 99))
            l.quit()
            t.check(os.path.getsize(repl1_log) > 0, "the change went into the client's log")
            stamp = int(os.getxattr(repl1_log, "user.tandem.first_line_at"))
            t.check(abs(stamp - time.time()) < 3, f"its first line's time is stamped: {stamp}")
            st = dict((l.split()[0], l) for l in m.ok(["status"]).splitlines() if "oldest_pending_s=" in l)
            lag = int(st["channel=repl1"].split("oldest_pending_s=")[1])
            t.check(0 <= lag <= 1, f"the lag is the change's age, not the log's (born 3 s before): {lag}")
        finally:
            os.kill(pid, signal.SIGCONT)
        t.check(wait_equal(), "replicated once the client goes on")

    with t.case("a killed sync client is restarted"):
        # the running client of each channel, as tandemd logged it
        pids = {}
        for chan, pid in re.findall(r"event=sync_client_start channel=(\S+) pid=(\d+)", d.log()):
            pids[chan] = int(pid)
        t.eq(sorted(pids), ["down", "repl1"], "one client per channel logged")
        children = set(subprocess.run(["pgrep", "-P", str(d.proc.pid)], capture_output=True,
                                      text=True).stdout.split())
        killed = 0
        for chan, pid in pids.items():
            t.check(str(pid) in children, f"client of {chan} (pid {pid}) is tandemd's child")
            os.kill(pid, signal.SIGKILL)
            killed += 1
        t.eq(killed, 2, "killed both sync clients")
        for chan, pid in pids.items():
            # tandemd reaped it and saw the SIGKILL (128 + 9)
            wait_log(d, f"event=sync_client_exit channel={chan} pid={pid} status=137", 30)
        # and started a new client for the live channel
        wait_for(lambda: [p for p in re.findall(r"event=sync_client_start channel=repl1 pid=(\d+)", d.log())
                          if int(p) != pids["repl1"]], 60, "a new client of repl1")
        l = smtplib.LMTP("127.0.0.1", d.port["lmtp"])
        l.sendmail("s@example.net", ["alice"], make_message(t.rng, 50))
        l.quit()
        t.check(wait_equal(), "replicating again after the kill")
        t.check("event=sync_client_exit" in d.log(), "exit logged")

    with t.case("SIGTERM drains the change log before exit"):
        pair.stop_replica()
        for i in range(5):
            m.ok(["deliver", "bob"], make_message(t.rng, 60 + i))
        pair.start_replica()
        d.proc.send_signal(signal.SIGTERM)
        t.eq(d.proc.wait(60), 0, "tandemd exit status")
        t.eq(pair.compare()[0], 0, "everything logged was sent before exit")
        t.imap_equal(m, pair.replica, "after the drain")
        t.check("event=sync_drain channel=repl1" in d.log(), "drain logged")
        # the down channel could not drain: tandemd says what it leaves behind
        left = [l for l in d.log().splitlines() if "event=drain_incomplete channel=down" in l]
        t.check(left and int(left[0].split("pending_lines=")[1].split()[0]) > 0,
                f"what was left unsent is logged: {left}")
finally:
    if d:
        d.stop()
    pair.cleanup()
t.done()
