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
