"""test_cyrus_compat.py: an operator's Cyrus 3.6 habits start tandem.

Config: keys of a Cyrus imapd.conf that tandem does not use (a Cyrus 3.6
option, sasl_*, the replication guide's repl1_shutdown_file, a service
override, a metapartition) start tandemd with exactly one warning each
(`tandemd -n` on stderr, a start in its log as event=config_ignored); a
typo of a tandem key stays an error for -n, a start and `tandem config`.

Flags: Cyrus's sync_client flags are accepted by `tandem sync`:
BlueMind's `-t 1800 -n core -l -r` (here with -F, Cyrus's shutdown file),
-t's new session between passes, -C CONFIG after the command, -f FILE of
users with -u, -w, -s, -L, -N, -p, flags clustered as getopt takes them
(-loNL), and -O, which leaves a split brain
unreconciled (nothing copied back) where a plain sync copies back.
"""
import os
import subprocess

from tlib import BIN, TANDEM, Daemon, Instance, Pair, Suite, make_message, sha1, wait_for

t = Suite("cyrus_compat")

CYRUS_KEYS = {
    "sasl_pwcheck_method": "saslauthd",
    "sasl_mech_list": "PLAIN LOGIN",
    "repl1_shutdown_file": "/run/cyrus/sync/repl1_shutdown",
    "duplicate_db_path": "/var/lib/cyrus/deliver.db",
    "lmtp_admins": "postman",
    "metapartition-default": "/var/spool/cyrus/meta",
    "sievedir": "/var/lib/cyrus/sieve",
    "repl1_sync_cache_db": "twoskip",
}


def tandemd(conf, *args):
    return subprocess.run([os.path.join(BIN, "tandemd"), "-C", conf] + list(args), capture_output=True,
                          text=True, timeout=60)


with t.case("Cyrus keys tandem does not use: one warning each, tandemd -n and a start go on"):
    inst = Instance(channels="repl1", extra_conf="repl1_sync_host: 127.0.0.1:9\n" +
                    "".join(f"{k}: {v}\n" for k, v in CYRUS_KEYS.items()))
    r = tandemd(inst.conf, "-n")
    t.eq(r.returncode, 0, "tandemd -n: " + r.stderr)
    t.check("configuration OK" in r.stdout, r.stdout)
    warnings = [ln for ln in r.stderr.splitlines() if "warning:" in ln]
    t.eq(len(warnings), len(CYRUS_KEYS), "one warning per key: " + r.stderr)
    for k in CYRUS_KEYS:
        t.eq(sum(f": {k}: " in w for w in warnings), 1, f"{k} warned once")
    t.check(any("repl1_sync_shutdown_file" in w for w in warnings), "the hint for repl1_shutdown_file")
    c = inst.run(["config"])
    t.eq(c.returncode, 0, "tandem config: " + c.stderr)
    t.eq(c.stderr.count("warning:"), len(CYRUS_KEYS), "tandem config warns too")
    d = Daemon(inst, services=("imap",))
    log = wait_for(lambda: "event=started" in d.log() and d.log(), what="tandemd started")
    t.eq(log.count("event=config_ignored"), len(CYRUS_KEYS), "a start logs each key once")
    d.stop()
    inst.cleanup()

with t.case("a typo of a tandem key stays an error"):
    inst = Instance(extra_conf="sync_repeat_intervall: 3\nimap_listen: 127.0.0.1:1\n")
    r = tandemd(inst.conf, "-n")
    t.eq(r.returncode, 2, "tandemd -n")
    t.check("unknown option 'sync_repeat_intervall'" in r.stderr, r.stderr)
    r = tandemd(inst.conf, "-f")
    t.eq(r.returncode, 2, "tandemd -f")
    t.eq(inst.run(["config"]).returncode, 2, "tandem config")
    inst.cleanup()

pair = Pair()
m, rep = pair.master, pair.replica
try:
    with t.case("BlueMind's sync_client line: -t 1800 -n CHANNEL -l -r (and -F, Cyrus's shutdown file)"):
        m.ok(["user", "add", "--no-password", "bob"])
        stop = os.path.join(pair.root, "stop-F")
        errf = os.path.join(pair.root, "rolling.log")
        p = subprocess.Popen([TANDEM, "-C", m.conf, "sync", "-t", "1800", "-n", "repl1", "-l", "-r", "-F", stop],
                             stdout=subprocess.DEVNULL, stderr=open(errf, "w"))
        m.ok(["deliver", "bob"], make_message(t.rng, 1))
        wait_for(lambda: rep.run(["message", "list", "user.bob"]).stdout.count("\n") == 1,
                 what="bob's message on the replica")
        open(stop, "w").close()
        t.eq(p.wait(60), 0, "the -F file ends the rolling client")
        t.check(not os.path.exists(stop), "the shutdown file is removed, as Cyrus does")

    with t.case("-t SECONDS: a new session between passes once the session is that old"):
        errf = os.path.join(pair.root, "rolling-t.log")
        stop = os.path.join(pair.root, "stop-t")
        p = subprocess.Popen([TANDEM, "-C", m.conf, "sync", "-n", "repl1", "-t", "1", "-R", "-F", stop],
                             stdout=subprocess.DEVNULL, stderr=open(errf, "w"))
        wait_for(lambda: "event=sync_session_restart" in open(errf).read(), what="a session restart")
        m.ok(["deliver", "bob"], make_message(t.rng, 2))
        wait_for(lambda: rep.run(["message", "list", "user.bob"]).stdout.count("\n") == 2,
                 what="replication goes on after the restart")
        open(stop, "w").close()
        t.eq(p.wait(60), 0, "stopped")

    with t.case("-C CONFIG after the command, -f FILE of users with -u, -w, -s, -L -N -p"):
        for u in ("carol", "dave"):
            m.ok(["user", "add", "--no-password", u])
            m.ok(["deliver", u], make_message(t.rng, 3))
        names = os.path.join(pair.root, "users.txt")
        with open(names, "w") as f:
            f.write("carol\n\n  dave \n")
        env = dict(os.environ)
        env.pop("TANDEM_CONF", None)
        r = subprocess.run([TANDEM, "sync", "-C", m.conf, "-n", "repl1", "-o", "-w", "1", "-f", names, "-u"],
                           capture_output=True, text=True, env=env, timeout=120)
        t.eq(r.returncode, 0, "sync -C -w -f -u: " + r.stderr[-500:])
        for u in ("carol", "dave"):
            t.eq(rep.run(["message", "list", f"user.{u}"]).stdout.count("\n"), 1, f"{u} replicated")
        m.ok(["deliver", "carol"], make_message(t.rng, 4))
        r = pair.sync("-L", "-N", "-p", "default", "-s", "carol")
        t.eq(r.returncode, 0, "sync -L -N -p -s: " + r.stderr[-500:])
        t.eq(rep.run(["message", "list", "user.carol"]).stdout.count("\n"), 2, "-s synced carol")
        m.ok(["deliver", "carol"], make_message(t.rng, 5))
        r = m.run(["sync", "-n", "repl1", "-loNL", "-u", "carol"])
        t.eq(r.returncode, 0, "clustered flags, as getopt takes them (-loNL): " + r.stderr[-500:])
        t.eq(rep.run(["message", "list", "user.carol"]).stdout.count("\n"), 3, "carol synced")
        rc, out = pair.compare()
        t.eq(rc, 0, "compare equal: " + out[-500:])

    with t.case("-O: a split brain is not reconciled (nothing copied back); without -O it is"):
        theirs = make_message(t.rng, 50)
        m.ok(["deliver", "dave"], make_message(t.rng, 51))
        rep.ok(["deliver", "dave"], theirs)
        r = pair.sync("-O", "-u", "dave")
        t.eq(r.returncode, 1, "sync -O fails the mailbox: " + r.stderr[-500:])
        t.check("no copy-back" in r.stderr, r.stderr[-500:])
        t.check(sha1(theirs) not in [row[5] for row in m.messages("user.dave")], "nothing copied back")
        r = pair.sync("-u", "dave")
        t.eq(r.returncode, 0, "a plain sync reconciles: " + r.stderr[-500:])
        t.check(sha1(theirs) in [row[5] for row in m.messages("user.dave")], "the replica's message copied back")
finally:
    pair.cleanup()
t.done()
