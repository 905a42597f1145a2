"""test_sync_compress.py: sync_compress decides whether the csync link is
deflated. auto (the default): not to a replica on this machine (it cost
the client most of its CPU for nothing, docs/benchmarks.md); yes: when
the replica offers it; `tandem sync -z` always. Each way the replica ends
equal (the bodies cross the link either way)."""
import re

from tlib import Pair, Suite, make_message

t = Suite("sync_compress")
pair = Pair()
m, r = pair.master, pair.replica


def connect_compress(stderr):
    found = re.findall(r"event=sync_connect .*compress=(\d)", stderr)
    return found[-1] if found else None


def set_compress(value):
    text = open(m.conf).read()
    text = re.sub(r"\nrepl1_sync_compress: \w+\n", "\n", text)
    if value:
        text += f"repl1_sync_compress: {value}\n"
    open(m.conf, "w").write(text)


try:
    m.ok(["user", "add", "alice"], "pw\n")
    for i in range(3):
        m.ok(["deliver", "alice"], make_message(t.rng, i, size=20000))

    with t.case("auto: no deflate to a loopback replica, and the replica is equal"):
        res = pair.sync("-A")
        t.eq(res.returncode, 0, f"sync: {res.stderr[-400:]}")
        t.eq(connect_compress(res.stderr), "0", "compress=0 on 127.0.0.1")
        rc, out = pair.compare()
        t.eq(rc, 0, f"compare: {out[-400:]}")

    with t.case("yes: deflate when the replica offers it"):
        set_compress("yes")
        m.ok(["deliver", "alice"], make_message(t.rng, 10, size=20000))
        res = pair.sync("-A")
        t.eq(res.returncode, 0, f"sync: {res.stderr[-400:]}")
        t.eq(connect_compress(res.stderr), "1", "compress=1")
        rc, out = pair.compare()
        t.eq(rc, 0, f"compare: {out[-400:]}")

    with t.case("no, and -z overrides it"):
        set_compress("no")
        res = pair.sync("-A")
        t.eq(connect_compress(res.stderr), "0", "compress=0 with no")
        m.ok(["deliver", "alice"], make_message(t.rng, 11, size=20000))
        res = pair.sync("-z", "-A")
        t.eq(res.returncode, 0, f"sync -z: {res.stderr[-400:]}")
        t.eq(connect_compress(res.stderr), "1", "compress=1 with -z")
        rc, out = pair.compare()
        t.eq(rc, 0, f"compare: {out[-400:]}")

    with t.case("a bad value is refused by the configuration check"):
        set_compress("sometimes")
        res = m.run(["config"])
        t.check(res.returncode != 0, f"config check refuses it: {res.stdout[-300:]} {res.stderr[-300:]}")
        set_compress(None)
finally:
    pair.cleanup()
t.done()
