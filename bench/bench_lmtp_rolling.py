"""bench_lmtp_rolling.py: LMTP delivery with rolling replication on, tandem
builds and Cyrus 3.6 side by side in one run (issue 12's LMTP goal).

  BENCH_BINS="/tmp/base-bin bin" python3 bench/bench_lmtp_rolling.py

For each repetition (BENCH_REPS, 3) and each connection count (BENCH_CONNS,
"8 1"), every contestant delivers BENCH_LMTP_N (1000) workload messages, in
an order that rotates between repetitions:
- each tandem build (BENCH_BINS, default "bin"): a fresh master + replica
  pair, `sync_log: yes`, `sync_repeat_interval: 0` (the master's tandemd runs
  the rolling client), as bench_throughput.py does;
- Cyrus 3.6 (when installed and root): one master with `sync_log: 1` and a
  rolling `sync_client -r` (`sync_repeat_interval: 0`) to a Cyrus replica,
  kept for the whole run (its mailboxes grow between repetitions).
Prints one JSON line per (contestant, connections) with the rates and
their median, then the ratios to Cyrus. Not a test: nothing fails on a
number.
"""
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "integration"))
import workload  # noqa: E402
import bench_sync  # noqa: E402
from benchlib import free_port  # noqa: E402
from bench_throughput import replica_count  # noqa: E402

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
N = int(os.environ.get("BENCH_LMTP_N", "1000"))
REPS = int(os.environ.get("BENCH_REPS", "3"))
CONNS = [int(x) for x in os.environ.get("BENCH_CONNS", "8 1").split()]
BINS = os.environ.get("BENCH_BINS", "bin").split()


def tandem_run(binpath, conns, msgs, base):
    bench_sync.BIN = os.path.join(TOP, binpath)
    bench_sync.TANDEM = os.path.join(bench_sync.BIN, "tandem")
    root = tempfile.mkdtemp(prefix="bench-lr-", dir=base)
    try:
        lp, sp = free_port(), free_port()
        master, replica = bench_sync.make_pair(root, lp, sp, "sync_log: yes\nsync_repeat_interval: 0\n")
        replica.start(sp)
        master.start(lp)
        time.sleep(1.0)
        dt = bench_sync.deliver_lmtp(lp, msgs, conns)
        t0 = time.monotonic()
        while replica_count(replica) < len(msgs) and time.monotonic() - t0 < 120:
            time.sleep(0.05)
        behind = time.monotonic() - t0
        master.stop()
        replica.stop()
        return len(msgs) / dt, behind
    finally:
        shutil.rmtree(root, ignore_errors=True)


class CyrusPair:
    def __init__(self, root):
        import cyrus
        from bench_cyrus import cyrus_create_user
        self.cr = cyrus.Cyrus(root, "cr", sync_server=True, admins="admin repl")
        self.cm = cyrus.Cyrus(root, "cm", sync_to=self.cr.sync_port)
        with open(self.cm.conf, "a") as f:
            f.write("sync_repeat_interval: 0\n")
        for u in workload.USERS:
            cyrus_create_user(self.cm, u)
            for folder in workload.FOLDERS[1:]:
                im = self.cm.imap()
                im.create(f"user.{u}.{folder}")
                im.setacl(f"user.{u}.{folder}", "anyone", "p")
                im.logout()
        r = self.cm.sync_client("-A", timeout=300)
        if r.returncode != 0:
            raise RuntimeError(f"Cyrus initial sync: {r.stderr}")
        self.client = subprocess.Popen(["setpriv", "--reuid=cyrus", "--regid=mail", "--init-groups",
                                        os.path.join(cyrus.LIBEXEC, "sync_client"), "-C", self.cm.conf, "-r"],
                                       cwd=self.cm.dir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def run(self, conns, msgs):
        return len(msgs) / bench_sync.deliver_lmtp(self.cm.lmtp_port, msgs, conns), None

    def stop(self):
        self.client.terminate()
        try:
            self.client.wait(10)
        except subprocess.TimeoutExpired:
            self.client.kill()
        self.cm.stop()
        self.cr.stop()


def main():
    base = os.environ.get("BENCH_TMP", os.path.join(TOP, "build"))
    os.makedirs(base, exist_ok=True)
    cy = None
    croot = None
    try:
        import cyrus
        if cyrus.available() and os.geteuid() == 0:
            croot = tempfile.mkdtemp(prefix="bench-lr-cyrus-", dir="/tmp")
            os.chmod(croot, 0o755)
            cy = CyrusPair(croot)
    except Exception as e:  # noqa: BLE001
        print(f"bench_lmtp_rolling: no Cyrus: {e}", file=sys.stderr)
        cy = None
    names = list(BINS) + (["cyrus"] if cy else [])
    rates = {(n, c): [] for n in names for c in CONNS}
    behind = {(n, c): [] for n in names for c in CONNS}
    try:
        for rep in range(REPS):
            for conns in CONNS:
                msgs = [workload.message(700 + 10 * rep + conns, i) for i in range(N)]	# Cyrus suppresses a Message-ID it has seen
                order = names[rep % len(names):] + names[:rep % len(names)]
                for name in order:
                    if name == "cyrus":
                        r, b = cy.run(conns, [(u, f, d) for u, f, d in msgs])
                    else:
                        r, b = tandem_run(name, conns, msgs, base)
                    rates[(name, conns)].append(r)
                    if b is not None:
                        behind[(name, conns)].append(b)
                    print(f"  rep {rep} conns {conns} {name}: {r:.1f} msg/s", file=sys.stderr, flush=True)
    finally:
        if cy:
            cy.stop()
        if croot:
            shutil.rmtree(croot, ignore_errors=True)
    for conns in CONNS:
        cmed = statistics.median(rates[("cyrus", conns)]) if cy else None
        for name in names:
            med = statistics.median(rates[(name, conns)])
            out = {"bench": "lmtp_rolling", "who": name, "conns": conns, "messages": N,
                   "msgs_per_s": [round(r, 1) for r in rates[(name, conns)]], "median_msgs_per_s": round(med, 1)}
            if behind[(name, conns)]:
                out["replica_behind_s"] = round(statistics.median(behind[(name, conns)]), 2)
            if cmed and name != "cyrus":
                out["ratio_to_cyrus"] = round(med / cmed, 2)
            print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
