"""test_metrics.py: tandemd's metrics endpoint (metrics_listen), scraped
over real TCP and parsed by a strict reader of the Prometheus text format
(0.0.4) written here: with the replica up (connected 1, nothing pending,
bytes sent, deliveries and refusals counted, histograms filled), with it
down (connected 0, pending grows), and after it comes back (recovered).
Strangers on the port: garbage, a TLS hello, unknown paths and methods
get their error codes; connections that send nothing or a byte now and
then (more than the endpoint serves at once) neither stop deliveries nor,
once they timed out, later scrapes; a killed metrics process is
restarted by tandemd."""
import imaplib
import math
import os
import re
import signal
import smtplib
import socket
import time

from tlib import Daemon, Instance, Pair, Suite, free_port, make_message, wait_for, wait_log

t = Suite("metrics")

NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


def parse_value(s):
    if s in ("+Inf", "Inf"):
        return math.inf
    if s == "-Inf":
        return -math.inf
    if s == "NaN":
        return math.nan
    if not re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", s):
        raise ValueError(f"bad value {s!r}")
    return float(s)


def parse_labels(s, i, where):
    """Parses {a="x",b="y"} from s[i] == '{'; returns (dict, index after '}')."""
    labels = {}
    i += 1
    while True:
        if s[i] == "}":
            return labels, i + 1
        m = LABEL.match(s, i)
        if not m:
            raise ValueError(f"{where}: bad label name at {s[i:]!r}")
        name = m.group(0)
        i = m.end()
        if s[i:i + 2] != '="':
            raise ValueError(f"{where}: expected =\" after {name}")
        i += 2
        v = []
        while s[i] != '"':
            if s[i] == "\\":
                nxt = s[i + 1]
                if nxt not in '\\"n':
                    raise ValueError(f"{where}: bad escape \\{nxt}")
                v.append("\n" if nxt == "n" else nxt)
                i += 2
            else:
                v.append(s[i])
                i += 1
        i += 1
        if name in labels:
            raise ValueError(f"{where}: label {name} twice")
        labels[name] = "".join(v)
        if s[i] == ",":
            i += 1
        elif s[i] != "}":
            raise ValueError(f"{where}: expected , or }} at {s[i:]!r}")


def family_of(name, types):
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and types.get(name[:-len(suffix)]) in ("histogram", "summary"):
            return name[:-len(suffix)]
    return name


def parse_prom(text):
    """A strict reader of the text format: every family has # HELP and
    # TYPE before its samples, its samples together, no series twice,
    histograms with cumulative buckets ending in +Inf == _count and a
    _sum. Returns {family: {"type", "samples": [(name, labels, value)]}}."""
    if not text.endswith("\n"):
        raise ValueError("the page does not end with a line feed")
    fams, types, helps, done, current = {}, {}, {}, set(), None
    seen = set()
    for n, line in enumerate(text[:-1].split("\n"), 1):
        where = f"line {n}: {line!r}"
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                name = parts[2]
                if not NAME.fullmatch(name):
                    raise ValueError(f"{where}: bad metric name")
                if name in done or (name in fams and fams[name]["samples"]):
                    raise ValueError(f"{where}: {parts[1]} after the family's samples")
                if parts[1] == "TYPE":
                    if name in types or len(parts) != 4 or parts[3] not in TYPES:
                        raise ValueError(f"{where}: bad or second TYPE")
                    types[name] = parts[3]
                else:
                    if name in helps:
                        raise ValueError(f"{where}: second HELP")
                    helps[name] = parts[3] if len(parts) == 4 else ""
                fams.setdefault(name, {"type": None, "samples": []})
                if current and current != name:
                    done.add(current)
                current = name
            continue
        if not line:
            raise ValueError(f"{where}: empty line")
        m = NAME.match(line)
        if not m:
            raise ValueError(f"{where}: bad sample name")
        name, i = m.group(0), m.end()
        labels = {}
        if i < len(line) and line[i] == "{":
            labels, i = parse_labels(line, i, where)
        if i >= len(line) or line[i] != " ":
            raise ValueError(f"{where}: expected a space before the value")
        rest = line[i + 1:].split(" ")
        if len(rest) not in (1, 2):
            raise ValueError(f"{where}: trailing fields")
        value = parse_value(rest[0])
        if len(rest) == 2 and not re.fullmatch(r"-?\d+", rest[1]):
            raise ValueError(f"{where}: bad timestamp")
        fam = family_of(name, types)
        if fam not in types or fam not in helps:
            raise ValueError(f"{where}: sample without # TYPE and # HELP of {fam}")
        if fam in done or (current != fam):
            raise ValueError(f"{where}: samples of {fam} not together")
        key = (name, tuple(sorted(labels.items())))
        if key in seen:
            raise ValueError(f"{where}: series twice")
        seen.add(key)
        fams[fam]["samples"].append((name, labels, value))
    for fam, f in fams.items():
        f["type"] = types.get(fam)
        if f["type"] is None:
            raise ValueError(f"{fam}: no # TYPE")
        if f["type"] == "counter" and any(v < 0 for _, _, v in f["samples"]):
            raise ValueError(f"{fam}: a negative counter")
        if f["type"] == "histogram":
            groups = {}
            for name, labels, v in f["samples"]:
                rest = tuple(sorted((k, x) for k, x in labels.items() if k != "le"))
                g = groups.setdefault(rest, {"buckets": [], "sum": None, "count": None})
                if name == fam + "_bucket":
                    g["buckets"].append((parse_value(labels["le"]), v))
                elif name == fam + "_sum":
                    g["sum"] = v
                elif name == fam + "_count":
                    g["count"] = v
                else:
                    raise ValueError(f"{fam}: stray sample {name}")
            for g in groups.values():
                les = [le for le, _ in g["buckets"]]
                counts = [c for _, c in g["buckets"]]
                if not les or les[-1] != math.inf or les != sorted(les) or counts != sorted(counts):
                    raise ValueError(f"{fam}: buckets not cumulative up to +Inf: {g['buckets']}")
                if g["count"] != counts[-1] or g["sum"] is None:
                    raise ValueError(f"{fam}: _count {g['count']} != +Inf bucket {counts[-1]} or no _sum")
    return fams


def http(port, raw, timeout=10):
    """Sends raw bytes, returns (status, headers dict, body) of the answer."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(raw)
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = dict((k.lower(), v.strip()) for k, v in (l.split(":", 1) for l in lines[1:]))
    return status, headers, body


def scrape(port):
    status, headers, body = http(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\nUser-Agent: test\r\n\r\n")
    if status != 200:
        raise AssertionError(f"scrape answered {status}")
    if headers.get("content-type") != "text/plain; version=0.0.4; charset=utf-8":
        raise AssertionError(f"content type {headers.get('content-type')}")
    if int(headers["content-length"]) != len(body):
        raise AssertionError("content-length differs from the body")
    return parse_prom(body.decode())


def value(fams, fam, name=None, **labels):
    """The value of the one sample of fam (or its sample name) with labels."""
    hits = [v for n, l, v in fams[fam]["samples"] if n == (name or fam) and all(l.get(k) == x for k, x in labels.items())]
    if len(hits) != 1:
        raise AssertionError(f"{fam} {labels}: {len(hits)} samples")
    return hits[0]


def _try_scrape():
    try:
        return scrape(mport)
    except (OSError, AssertionError, ValueError):
        return None


def deliver(port, rcpts, i):
    l = smtplib.LMTP("127.0.0.1", port)
    try:
        refused = l.sendmail("s@example.net", rcpts, make_message(t.rng, i))
    except smtplib.SMTPRecipientsRefused as e:
        refused = e.recipients
    l.quit()
    return refused


mport = free_port()
pair = Pair(extra_master=f"metrics_listen: 127.0.0.1:{mport}\nfailedloginpause: 0s\n"
                         "sync_reconnect_minwait: 200ms\nsync_reconnect_maxwait: 1s\n"
                         "sync_rightnow_channel: repl1\nsync_rightnow_timeout: 2s\n")
m = pair.master
d = None
try:
    m.ok(["user", "add", "alice"], "alicepw\n")
    d = Daemon(m, services=("lmtp", "imap"))
    lmtp = d.port["lmtp"]

    with t.case("the strict reader refuses what is not the format"):
        for bad in ["x 1\n", "# TYPE x counter\nx 1", "# HELP x h\n# TYPE x counter\nx{a=\"1\"} one\n",
                    "# HELP x h\n# TYPE x counter\n# HELP y h\n# TYPE y gauge\ny 1\nx 2\n",
                    "# HELP x h\n# TYPE x counter\nx 1\nx 2\n",
                    "# HELP h h\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n"]:
            try:
                parse_prom(bad)
                t.check(False, f"accepted {bad!r}")
            except ValueError:
                pass

    with t.case("replica up: a scrape parses; deliveries, refusals, sessions, histograms, the channel"):
        for i in range(5):
            t.eq(deliver(lmtp, ["alice"], i), {}, f"delivery {i}")
        refused = deliver(lmtp, ["alice", "nobody"], 5)
        t.check("nobody" in refused, f"nobody refused: {refused}")
        im = imaplib.IMAP4("127.0.0.1", d.port["imap"])
        try:
            im.login("alice", "wrong")
        except imaplib.IMAP4.error:
            pass
        im.logout()
        wait_for(lambda: m.ok(["status", "-n", "repl1"]).startswith("tandemd=running") and
                 "pending_lines=0" in m.ok(["status", "-n", "repl1"]), 30, "the channel caught up")
        # a client publishes successful passes at most once a second: wait for the last one
        f = wait_for(lambda: (lambda f: f if value(f, "tandem_sync_client_connected", channel="repl1") == 1 and
                              value(f, "tandem_sync_bytes_sent_total", channel="repl1") > 5000 else None)(
            scrape(mport)), 30, "connected 1, the passes published")
        t.eq(value(f, "tandem_lmtp_delivered_total"), 6, "6 recipients stored")
        t.eq(value(f, "tandem_lmtp_refused_total", reason="no_such_user"), 1, "one refused: no such user")
        t.check(value(f, "tandem_sessions_total", service="lmtp") >= 6, "LMTP sessions counted")
        t.check(value(f, "tandem_sessions_total", service="imap") >= 1, "IMAP session counted")
        t.eq(value(f, "tandem_auth_failures_total", service="imap"), 1, "the failed login")
        t.eq(value(f, "tandem_lmtp_delivery_seconds", "tandem_lmtp_delivery_seconds_count"), 6, "delivery latencies")
        t.check(value(f, "tandem_fsync_seconds", "tandem_fsync_seconds_count") >= 6, "fsync latencies")
        t.check(value(f, "tandem_sync_pass_duration_seconds", "tandem_sync_pass_duration_seconds_count") >= 1,
                "sync pass latencies")
        t.eq(value(f, "tandem_sync_pending_lines", channel="repl1"), 0, "nothing pending")
        t.eq(value(f, "tandem_sync_oldest_pending_seconds", channel="repl1"), 0, "no lag")
        t.check(value(f, "tandem_sync_bytes_sent_total", channel="repl1") > 5000, "the messages' bytes were sent")
        t.eq(value(f, "tandem_sync_failed_mailboxes", channel="repl1"), 0, "no failed mailbox")
        t.check(abs(value(f, "tandem_sync_last_success_timestamp_seconds", channel="repl1") - time.time()) < 3600,
                "a recent success")
        for fam in ("tandem_sync_pending_lines", "tandem_sync_client_connected", "tandem_lmtp_refused_total",
                    "tandem_lmtp_delivery_seconds", "tandem_sessions"):
            t.check(fam in f, f"{fam} is on the page")
        t.eq(f["tandem_sync_bytes_sent_total"]["type"], "counter", "bytes sent is a counter")
        t.eq(f["tandem_fsync_seconds"]["type"], "histogram", "fsync is a histogram")
        t.check(any(l.get("version") for _, l, _ in f["tandem_info"]["samples"]), "version label")
        t.check(value(f, "tandem_sync_rightnow_waits_total", channel="repl1", result="ok") >= 5,
                "synchronous replication: the acknowledgements that waited for the replica")

    with t.case("replica down: connected 0, pending grows; back: recovered"):
        sent_before = value(scrape(mport), "tandem_sync_bytes_sent_total", channel="repl1")
        pair.stop_replica()
        deliver(lmtp, ["alice"], 10)
        f = wait_for(lambda: (lambda f: f if value(f, "tandem_sync_client_connected", channel="repl1") == 0 and
                              value(f, "tandem_sync_pending_lines", channel="repl1") > 0 else None)(scrape(mport)),
                     30, "connected 0 and something pending")
        p1 = value(f, "tandem_sync_pending_lines", channel="repl1")
        t.check(value(f, "tandem_sync_client_running", channel="repl1") == 1, "the client still runs (backing off)")
        for i in range(3):
            deliver(lmtp, ["alice"], 11 + i)
        f = scrape(mport)
        t.check(value(f, "tandem_sync_pending_lines", channel="repl1") > p1, "pending grew with more deliveries")
        t.check(value(f, "tandem_sync_oldest_pending_seconds", channel="repl1") >= 0, "a lag is shown")
        t.check(value(f, "tandem_lmtp_delivered_total") >= 10, "deliveries go on while the replica is down")
        t.check(value(f, "tandem_sync_rightnow_waits_total", channel="repl1", result="refused") +
                value(f, "tandem_sync_rightnow_waits_total", channel="repl1", result="timeout") >= 1,
                "acknowledgements without the replica are counted")
        pair.start_replica()
        f = wait_for(lambda: (lambda f: f if value(f, "tandem_sync_client_connected", channel="repl1") == 1 and
                              value(f, "tandem_sync_pending_lines", channel="repl1") == 0 else None)(scrape(mport)),
                     60, "connected again and caught up")
        t.check(value(f, "tandem_sync_bytes_sent_total", channel="repl1") > sent_before, "bytes sent went on growing")
        t.check(value(f, "tandem_sync_pass_failures_total", channel="repl1") >= 1, "the failed pass is counted")
        t.eq(pair.compare()[0], 0, "master == replica")

    with t.case("strangers on the port get error codes"):
        t.eq(http(mport, b"GET /other HTTP/1.1\r\n\r\n")[0], 404, "unknown path")
        st, h, _ = http(mport, b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
        t.eq(st, 405, "POST")
        t.eq(h.get("allow"), "GET, HEAD", "Allow header")
        t.eq(http(mport, os.urandom(64).replace(b"\n", b"x") + b"\x00\r\n\r\n")[0], 400, "garbage")
        t.eq(http(mport, b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + b"\x00" * 40)[0], 400, "a TLS hello")
        t.eq(http(mport, b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\n\r\n")[0], 414, "a long target")
        t.eq(http(mport, b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 2000 + b"\r\n")[0], 431, "a huge head")
        st, h, body = http(mport, b"HEAD /metrics HTTP/1.0\r\n\r\n")
        t.check(st == 200 and body == b"" and int(h["content-length"]) > 1000, "HEAD: headers only")
        f = scrape(mport)
        t.check(value(f, "tandem_metrics_requests_total", result="error") >= 6, "errors counted")

    with t.case("silent and slow scrapers do not disturb deliveries, and time out"):
        held = []
        for i in range(12):  # more than METRICS_MAX_CONNS (8)
            s = socket.create_connection(("127.0.0.1", mport), timeout=30)
            s.sendall(b"GET /metrics HTTP/1.1\r\n" if i % 2 else b"G")
            held.append(s)
        for i in range(5):
            t.eq(deliver(lmtp, ["alice"], 20 + i), {}, f"delivery {i} while scrapers hang")
        # a byte now and then does not keep a connection: each is closed by
        # the endpoint (the recv sees the end) whatever it does
        for s in held[:4]:
            try:
                s.sendall(b"X")
            except OSError:
                pass
        closed = 0
        for s in held:
            try:
                s.settimeout(30)
                closed += s.recv(4096) is not None
            except OSError:
                closed += 1
            s.close()
        t.eq(closed, 12, "every held connection was ended by the endpoint")
        f = wait_for(lambda: _try_scrape(), 30, "a scrape once the slow ones are gone")
        t.check(value(f, "tandem_lmtp_delivered_total") >= 15, "the deliveries are counted")
        log = d.log()
        t.check("event=metrics_close reason=read_timeout" in log, "timeouts logged")
        t.check("session_crash" not in log, "no crash")

    with t.case("a killed metrics process is restarted by tandemd"):
        pids = re.findall(r"event=metrics_start pid=(\d+)", d.log())
        t.check(pids, "its pid is logged")
        os.kill(int(pids[-1]), signal.SIGKILL)
        wait_log(d, re.compile(r"event=metrics_exit pid=%s status=137" % pids[-1]))
        wait_for(lambda: len(re.findall(r"event=metrics_start pid=(\d+)", d.log())) > len(pids), 30, "a new one")
        f = wait_for(lambda: _try_scrape(), 30, "a scrape from the new process")
        t.check(value(f, "tandem_lmtp_delivered_total") >= 15, "the counters live in tandemd's segment: kept")

    with t.case("a reload restarts the metrics process with the new config"):
        n0 = len(re.findall(r"event=metrics_start pid=", d.log()))
        os.kill(d.proc.pid, signal.SIGHUP)
        wait_for(lambda: len(re.findall(r"event=metrics_start pid=", d.log())) > n0, 30, "a metrics process after the reload")
        f = wait_for(lambda: _try_scrape(), 30, "a scrape after the reload")
        t.check(value(f, "tandem_lmtp_delivered_total") >= 15, "counters kept over the reload")
        wait_for(lambda: (lambda f: f and value(f, "tandem_sync_client_connected", channel="repl1") == 1)(_try_scrape()),
                 30, "the channel's client (restarted by the reload) connected")
finally:
    if d:
        d.stop()
    pair.cleanup()

# a sharded channel whose replica is down: one series per shard
inst = Instance(channels="sh", extra_conf=f"sh_sync_shards: 3\nsh_sync_host: 127.0.0.1:{free_port()}\n"
                                          "sync_authname: repl\nsync_password: x\nsync_reconnect_minwait: 200ms\n"
                                          f"metrics_listen: 127.0.0.1:{mport}\n")
d = None
try:
    with t.case("a sharded channel: a shard label on each series"):
        for i, u in enumerate(["u1", "u2", "u3", "u4", "u5", "u6"]):
            inst.ok(["user", "add", "--no-password", u])
            inst.ok(["deliver", u], make_message(t.rng, 50 + i))
        d = Daemon(inst, services=("lmtp",))
        f = wait_for(_try_scrape, 30, "a scrape")
        shards = sorted(l["shard"] for _, l, _ in f["tandem_sync_pending_lines"]["samples"] if l["channel"] == "sh")
        t.eq(shards, ["0", "1", "2"], "one series per shard")
        total = sum(v for _, l, v in f["tandem_sync_pending_lines"]["samples"] if l["channel"] == "sh")
        st = inst.ok(["status", "-n", "sh"])
        want = int(re.search(r"^channel=sh pending_lines=(\d+)", st, re.M).group(1))
        t.eq(total, want, "the shards add up to the channel's total in tandem status")
        t.check(all(v == 0 for _, l, v in f["tandem_sync_client_connected"]["samples"]), "none connected")
finally:
    if d:
        d.stop()
    inst.cleanup()
t.done()
