"""test_channels.py: replicas added to and removed from a running master.

A second replica is added while mail keeps arriving (LMTP deliveries and
an IMAP session that was open before the change): the channel goes into
the config, tandemd gets SIGHUP (it publishes the live channel list and
starts the new channel's rolling client), and `tandem sync -A` fills the
new replica. No window loses a change: at the end both replicas equal the
master. Then the first replica is removed the same way, and the second
keeps replicating.
"""
import imaplib
import os
import signal
import smtplib
import threading
import time

from tlib import Daemon, Instance, Suite, free_port, make_message, wait_equal, wait_for, wait_log

t = Suite("channels")
started = []


def replica(root, name):
    inst = Instance(root=os.path.join(root, name))
    text = open(inst.conf).read().replace("admins: admin\n", "admins: admin repl\n")
    open(inst.conf, "w").write(text)
    inst.ok(["user", "add", "repl"], "replpw\n")
    port = free_port()
    d = Daemon(inst, services=("sync",), ports={"sync": port})
    started.append(d)
    return inst, port


def set_channels(conf, chans, hosts):
    """Rewrites the channel lines of a master's config."""
    lines = [l for l in open(conf).read().splitlines()
             if not l.startswith("sync_log_channels:") and "_sync_host:" not in l]
    lines.append("sync_log_channels: " + " ".join(chans))
    lines += [f"{c}_sync_host: 127.0.0.1:{hosts[c]}" for c in chans]
    open(conf, "w").write("\n".join(lines) + "\n")


import tempfile
root = tempfile.mkdtemp(prefix="tandem-chan-")
try:
    r1, p1 = replica(root, "r1")
    r2, p2 = replica(root, "r2")
    m = Instance(root=os.path.join(root, "m"), channels="one",
                 extra_conf="sync_authname: repl\nsync_password: replpw\nsync_repeat_interval: 0\n")
    set_channels(m.conf, ["one"], {"one": p1})
    for u in ["alice", "bob"]:
        m.ok(["user", "add", u], "pw\n")
    d = Daemon(m, services=("lmtp", "imap"))
    started.append(d)
    sent = []
    stop = threading.Event()
    errors = []

    def deliver_loop():
        i = 0
        while not stop.is_set():
            try:
                l = smtplib.LMTP("127.0.0.1", d.port["lmtp"])
                l.sendmail("s@example.net", ["alice", "bob"], make_message(t.rng, 1000 + i))
                l.quit()
                sent.append(i)
            except Exception as e:  # noqa: BLE001
                errors.append(repr(e))
            i += 1
            time.sleep(0.01)

    with t.case("a second replica added to a running master misses nothing"):
        # an IMAP session opened before the change, writing through it
        im = imaplib.IMAP4("127.0.0.1", d.port["imap"])
        im.login("alice", "pw")
        im.select("INBOX")
        th = threading.Thread(target=deliver_loop)
        th.start()
        wait_for(lambda: len(sent) >= 3 or errors, 30, "deliveries under way")
        set_channels(m.conf, ["one", "two"], {"one": p1, "two": p2})
        d.proc.send_signal(signal.SIGHUP)
        # the reload: the new channel is published and its client started
        wait_log(d, "event=sync_client_start channel=two", 30)
        r = m.run(["sync", "-n", "two", "-o", "-A"], timeout=120)
        t.eq(r.returncode, 0, f"sync -A of the new replica: {r.stderr[-400:]}")
        # changes through the old session after the reload, and more mail
        for k in range(5):
            im.append("INBOX", "(\\Flagged)", None, make_message(t.rng, 500 + k))
        im.store("1:3", "+FLAGS", "(\\Seen)")
        im.create("INBOX.Added")
        n_after = len(sent)
        wait_for(lambda: len(sent) >= n_after + 3 or errors, 30, "deliveries after the reload")
        stop.set()
        th.join()
        im.logout()
        t.eq(errors, [], "every delivery was accepted")
        t.check(len(sent) > 5, f"deliveries went on during the change ({len(sent)})")
        for chan in ["one", "two"]:
            ok, out = wait_equal(m, chan)
            t.check(ok, f"replica of channel {chan} equals the master: {out[-600:]}")
        log = d.log()
        t.check("event=sync_client_start channel=two" in log, "tandemd started the new channel's client")
        for name, rep in (("one", r1), ("two", r2)):
            t.imap_equal((m, d.port["imap"]), rep, f"replica of channel {name}", passwords={"alice": "pw", "bob": "pw"})

    with t.case("a replica removed: its client stops, the other goes on"):
        set_channels(m.conf, ["two"], {"two": p2})
        d.proc.send_signal(signal.SIGHUP)
        wait_log(d, "reason=channel_removed", 30)
        t.check("event=channel_removed channel=one" in d.log(), "the removal is logged")
        t.check("reason=channel_removed" in d.log(), "the removed channel's client stopped")
        for i in range(5):
            l = smtplib.LMTP("127.0.0.1", d.port["lmtp"])
            l.sendmail("s@example.net", ["bob"], make_message(t.rng, 2000 + i))
            l.quit()
        ok, out = wait_equal(m, "two")
        t.check(ok, f"the remaining replica keeps up: {out[-600:]}")
        t.imap_equal((m, d.port["imap"]), r2, "the remaining replica", passwords={"alice": "pw", "bob": "pw"})
        confdir = [l.split(":", 1)[1].strip() for l in open(m.conf) if l.startswith("configdirectory:")][0]
        t.eq(open(os.path.join(confdir, "sync", "channels")).read().split(), ["two"],
             "the published channel list")
finally:
    for s in reversed(started):
        s.stop()
    import shutil
    shutil.rmtree(root, ignore_errors=True)
t.done()
