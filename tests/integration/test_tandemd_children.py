"""test_tandemd_children.py: a SIGKILLed tandemd takes its children with it
(sessions and sync clients: PR_SET_PDEATHSIG); a channel's sync client
holds a lock a second client cannot take (`tandem sync -r` is refused
while tandemd's runs); a starting tandemd stops a stale client of its
instance (one left holding the lock) and starts its own; a second
tandemd of a running instance refuses to start. Bounded waits,
no timing asserts."""
import os
import re
import signal
import smtplib
import socket
import subprocess
import time

from tlib import BIN, Daemon, Pair, Suite, make_message, wait_equal
from tlib import proc_alive as alive, proc_children as children

t = Suite("tandemd-children")
pair = Pair()
m = pair.master
d = None


def wait_for(cond, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def sync_client_pids(log):
    return [int(p) for p in re.findall(r"event=sync_client_start channel=repl1 pid=(\d+)", log)]


try:
    m.ok(["user", "add", "--no-password", "alice"])
    d = Daemon(m, services=("lmtp", "imap"))
    with t.case("tandemd runs a sync client and sessions"):
        t.check(wait_for(lambda: sync_client_pids(d.log())), "sync client started")
        imap = socket.create_connection(("127.0.0.1", d.port["imap"]))
        imap.recv(4096)
        lmtp = socket.create_connection(("127.0.0.1", d.port["lmtp"]))
        lmtp.recv(4096)
        t.check(wait_for(lambda: len(children(d.proc.pid)) >= 3), "three children (sync client, imap, lmtp)")
        kids = children(d.proc.pid)

    with t.case("a second sync client of the channel cannot take its lock"):
        r = m.run(["sync", "-n", "repl1", "-r"], timeout=30)
        t.eq(r.returncode, 1, "tandem sync -r refused")
        t.check("another sync client" in r.stderr, f"says why: {r.stderr.strip()}")

    with t.case("a second tandemd of the instance refuses to start (and stops nothing)"):
        r = subprocess.run([os.path.join(BIN, "tandemd"), "-C", m.conf, "-f"], capture_output=True, text=True,
                           timeout=60)
        t.eq(r.returncode, 1, "exit 1")
        t.check(f"another tandemd (pid {d.proc.pid})" in r.stderr, f"says why: {r.stderr.strip()}")
        t.check(all(alive(p) for p in kids), "the first one's children run on")

    with t.case("SIGKILL of tandemd: every child exits"):
        d.proc.send_signal(signal.SIGKILL)
        d.proc.wait()
        t.check(wait_for(lambda: not any(alive(p) for p in kids)),
                f"children gone: {[p for p in kids if alive(p)]}")
        imap.close()
        lmtp.close()

    with t.case("a starting tandemd stops a stale client of its instance"):
        # a rolling client started by hand holds the channel's lock
        stale = subprocess.Popen([os.path.join(BIN, "tandem"), "-C", m.conf, "sync", "-n", "repl1", "-r"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        confdir = [l.split(":", 1)[1].strip() for l in open(m.conf) if l.startswith("configdirectory:")][0]
        lock = os.path.join(confdir, "sync", "repl1", "client-0.lock")
        t.check(wait_for(lambda: os.path.exists(lock) and open(lock).read().strip() == str(stale.pid)),
                "the hand-run client holds the lock")
        logfile = d.logfile
        d.proc = subprocess.Popen([os.path.join(BIN, "tandemd"), "-C", m.conf, "-f"],
                                  stdout=subprocess.DEVNULL, stderr=open(logfile, "a"))
        t.check(wait_for(lambda: stale.poll() is not None), "the stale client was stopped")
        t.check(f"event=stale_sync_client lock={lock} pid={stale.pid}" in d.log(), "logged")
        t.check(wait_for(lambda: len(sync_client_pids(d.log())) >= 2), "tandemd started its own client")
        l = smtplib.LMTP("127.0.0.1", d.port["lmtp"])
        l.sendmail("s@example.net", ["alice"], make_message(t.rng, 1))
        l.quit()
        ok, out = wait_equal(m, "repl1")
        t.check(ok, "replicated by the new client: " + out[-300:])
finally:
    if d:
        d.stop()
    pair.cleanup()
t.done()
