"""bench_shards.py: a sharded channel's catch-up, 1 shard vs 4.

For each shard count, a master and a tandem replica (tests/integration's
Pair): 20 users, the replica stopped, BENCH_SHARDS_N deliveries (default
2,000: LMTP transactions of 20 recipients over 4 connections) logged, then
the replica started and the time until every shard's log is consumed
measured (it includes up to sync_reconnect_maxwait, 300 ms, of reconnect
wait). Prints one JSON line: {"bench": "shards", ...}. Was the last case
of test_shards.py; make check now only checks the catch-up is correct.
"""
import json
import os
import re
import socket
import sys
import threading
import time
import random

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "integration"))
from tlib import Daemon, Pair, make_message  # noqa: E402

N = int(os.environ.get("BENCH_SHARDS_N", "2000"))
USERS = [f"user{i:02d}" for i in range(20)]


def pending(inst):
    m = re.search(r"^channel=sh pending_lines=(\d+)", inst.ok(["status", "-n", "sh"]), re.M)
    return int(m.group(1)) if m else -1


def lmtp_tx(port, msgs):
    s = socket.create_connection(("127.0.0.1", port), timeout=120)
    f = s.makefile("rb")

    def reply():
        while True:
            line = f.readline()
            if not line:
                raise RuntimeError("LMTP closed")
            if line[3:4] != b"-":
                return line
    reply()
    s.sendall(b"LHLO bench\r\n")
    reply()
    for msg in msgs:
        s.sendall(b"MAIL FROM:<s@example.net>\r\n")
        reply()
        for u in USERS:
            s.sendall(f"RCPT TO:<{u}>\r\n".encode())
            reply()
        s.sendall(b"DATA\r\n")
        reply()
        s.sendall(msg.replace(b"\r\n.", b"\r\n..") + b".\r\n")
        for _ in USERS:
            r = reply()
            if not r.startswith(b"2"):
                raise RuntimeError(f"LMTP: {r!r}")
    s.sendall(b"QUIT\r\n")
    s.close()


def run(shards):
    p = Pair(channel="sh", extra_master=f"sh_sync_shards: {shards}\nsync_reconnect_minwait: 100ms\n"
                                        "sync_reconnect_maxwait: 300ms\n")
    dd = None
    try:
        for u in USERS:
            p.master.ok(["user", "add", "--no-password", u])
        p.stop_replica()
        dd = Daemon(p.master, services=("lmtp",))
        rng = random.Random(1)
        msgs = [make_message(rng, i, 600) for i in range(N // len(USERS))]
        ths = [threading.Thread(target=lmtp_tx, args=(dd.port["lmtp"], msgs[k::4])) for k in range(4)]
        for th in ths:
            th.start()
        for th in ths:
            th.join()
        lines = pending(p.master)
        t0 = time.time()
        p.start_replica()
        while pending(p.master) != 0 and time.time() - t0 < 600:
            time.sleep(0.05)
        el = time.time() - t0
        equal = p.compare()[0] == 0
        return {"seconds": round(el, 3), "lines": lines, "equal": equal}
    finally:
        if dd:
            dd.stop()
        p.cleanup()


res = {n: run(n) for n in (1, 4)}
out = {"bench": "shards", "deliveries": N, "one_shard": res[1], "four_shards": res[4],
       "speedup": round(res[1]["seconds"] / res[4]["seconds"], 2) if res[4]["seconds"] > 0 else None}
print(json.dumps(out), flush=True)
