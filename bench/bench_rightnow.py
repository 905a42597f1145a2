"""bench_rightnow.py: LMTP latency with synchronous replication on and off.

A master tandemd and a replica tandemd on loopback (tests/integration's
Pair), the master's channel repl1 replicated by its rolling client. For
each mode, BENCH_N (200) messages of about 4 KB go to one user over one
LMTP connection, one at a time; each sendmail() (MAIL, RCPT, DATA, 250) is
timed. Then BENCH_N more over 4 concurrent connections, for the throughput
under group commit. Prints one JSON line per mode. Not a test: it never
fails on a number; `make bench` runs it (not make check).

    TANDEM_BIN=bin python3 bench/bench_rightnow.py
"""
import json
import os
import smtplib
import statistics
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
import tlib  # noqa: E402

N = int(os.environ.get("BENCH_N", "200"))


def run(mode):
    extra = "sync_rightnow_channel: repl1\n" if mode == "on" else ""
    pair = tlib.Pair(extra_master=extra)
    d = None
    try:
        pair.master.ok(["user", "add", "--no-password", "alice"])
        d = tlib.Daemon(pair.master, services=("lmtp",))
        ok, _ = tlib.wait_equal(pair.master, "repl1", timeout=60)
        import random
        rng = random.Random(1)
        msgs = [tlib.make_message(rng, i, 4000) for i in range(N)]
        l = smtplib.LMTP("127.0.0.1", d.port["lmtp"])
        lat = []
        for m in msgs:
            t0 = time.perf_counter()
            l.sendmail("s@example.net", ["alice"], m)
            lat.append(time.perf_counter() - t0)
        l.quit()

        def worker(part):
            c = smtplib.LMTP("127.0.0.1", d.port["lmtp"])
            for m in part:
                c.sendmail("s@example.net", ["alice"], m)
            c.quit()

        parts = [msgs[k::4] for k in range(4)]
        t0 = time.perf_counter()
        ths = [threading.Thread(target=worker, args=(p,)) for p in parts]
        for th in ths:
            th.start()
        for th in ths:
            th.join()
        conc = time.perf_counter() - t0
        eq, _ = tlib.wait_equal(pair.master, "repl1", timeout=120)
        lat.sort()
        return {"bench": "rightnow", "mode": mode, "n": N,
                "lmtp_ms_median": round(statistics.median(lat) * 1000, 2),
                "lmtp_ms_p90": round(lat[int(len(lat) * 0.9)] * 1000, 2),
                "lmtp_ms_p95": round(lat[int(len(lat) * 0.95)] * 1000, 2),
                "lmtp_ms_max": round(lat[-1] * 1000, 2),
                "concurrent4_msgs_per_s": round(N / conc, 1),
                "replica_equal": eq,
                "rightnow_problems": sum(1 for x in d.log().splitlines()
                                         if "event=rightnow_timeout" in x or "event=rightnow_refused" in x)}
    finally:
        if d:
            d.stop()
        pair.cleanup()


for mode in ("off", "on"):
    print(json.dumps(run(mode)), flush=True)
