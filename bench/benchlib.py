"""benchlib.py: the small helpers the benchmarks share."""
import socket
import subprocess
import time


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def run(*args, **kw):
    return subprocess.run(list(args), check=True, capture_output=True, **kw)


def wait_port(p, proc):
    for _ in range(400):
        if proc.poll() is not None:
            raise RuntimeError("tandemd exited")
        try:
            socket.create_connection(("127.0.0.1", p), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.025)
    raise RuntimeError("no listener")


class PacedLMTP:
    """A background load: conns threads, each on its own LMTP connection to
    127.0.0.1:port, delivering rate messages per second in all, paced by
    the clock (a late one is not made up for by a burst). message(k, i)
    gives connection k's i-th message as (user, folder or "", bytes).
    start(), then stop(): (messages sent, seconds since start).

    The threads run in a child process of their own (forked: message may
    be a closure): in the bench's process they held the interpreter lock
    while making and sending messages, and a measuring loop beside them
    (bench_lmtp_rolling.py's 1 ms poll of the replica) waited for it up to
    Python's switch interval (5 ms) at a time, which the latency figures
    then counted as replication."""

    def __init__(self, port, conns, rate, message):
        import multiprocessing
        self.port, self.conns, self.rate, self.message = port, conns, rate, message
        ctx = multiprocessing.get_context("fork")
        self.halt = ctx.Event()
        self._sent = ctx.Value("q", 0)
        self._t0 = ctx.Value("d", 0.0)
        self.proc = ctx.Process(target=self._main, daemon=True)

    def _run(self, k):
        import smtplib
        conn = smtplib.LMTP("127.0.0.1", self.port)
        i = 0
        while not self.halt.is_set():
            user, folder, data = self.message(k, i)
            conn.sendmail("bench@example.net", [user + ("+" + folder if folder else "")], data)
            i += 1
            ahead = self._t0.value + i * self.conns / self.rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
        with self._sent.get_lock():
            self._sent.value += i
        conn.quit()

    def _main(self):
        import threading
        threads = [threading.Thread(target=self._run, args=(k,), daemon=True) for k in range(self.conns)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()

    def start(self):
        self._t0.value = time.monotonic()	# CLOCK_MONOTONIC: the same clock in the child
        self.proc.start()

    def stop(self):
        self.halt.set()
        self.proc.join(30)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
        return self._sent.value, time.monotonic() - self._t0.value


# Run trees removed at the end of a bench, not between its runs: on ext4
# without a journal (this VM's disk) a new inode is placed past every inode
# of its group freed in the last 60 s (360 s while the inode table block is
# dirty; `recently_deleted` in ext4's ialloc.c), one buffer lookup each, so
# the files of a run removed just before the next cost that run's every file
# and directory creation a scan: 30 % of the master's CPU in one profile
# (docs/benchmarks.md, "The master's CPU per delivery").
_left = []


def remove_later(path):
    """path (a run's tree) is removed by remove_left(), at the end of the bench."""
    _left.append(path)


def remove_left():
    import shutil
    while _left:
        shutil.rmtree(_left.pop(), ignore_errors=True)


def alternating(bins, reps, run):
    """{build: [run(build, rep) for each rep]}, the builds taking turns in an
    order that rotates between repetitions; each result printed to stderr."""
    import sys
    res = {b: [] for b in bins}
    for rep in range(reps):
        for b in bins[rep % len(bins):] + bins[:rep % len(bins)]:
            r = run(b, rep)
            res[b].append(r)
            print(f"  rep {rep} {b}: {r}", file=sys.stderr, flush=True)
    return res
