"""test_install.py: a service that starts.

`make install` into a DESTDIR puts the programs, the config (never over
an existing one; the example always as tandem.conf.example) and the
systemd unit (running as the system user tandem, with the installed
paths) in place, and creates no user. An instance made by the installed
`tandem init` starts: `tandemd -n` says OK, `tandemd -f` serves IMAP
(STARTTLS, login, the message) and LMTP (the unix socket init chose).
`tandemd -n` fails whenever a start fails (nothing to serve, a port taken,
no configdirectory) and passes while its own instance runs. `tandem sync
-A` shows its progress on a terminal and with --progress, not otherwise.
"""
import imaplib
import os
import pty
import re
import select
import shutil
import smtplib
import socket
import ssl
import subprocess
import tempfile

from tlib import TOP, Pair, Suite, free_port, make_message, wait_for

t = Suite("install")
root = tempfile.mkdtemp(prefix="tandem-install-")
dest = os.path.join(root, "dest")
procs = []


def make_install(*extra):
    return subprocess.run(["make", "-s", "-C", TOP, "install", f"DESTDIR={dest}", "PREFIX=/usr"] + list(extra),
                          capture_output=True, text=True, timeout=600)


def tandemd(conf, *args, timeout=60):
    return subprocess.run([os.path.join(dest, "usr/bin/tandemd"), "-C", conf] + list(args), capture_output=True,
                          text=True, timeout=timeout)


def tandem(*args, stdin=""):
    return subprocess.run([os.path.join(dest, "usr/bin/tandem")] + list(args), capture_output=True, text=True,
                          input=stdin, timeout=120)


def start(conf, logfile):
    p = subprocess.Popen([os.path.join(dest, "usr/bin/tandemd"), "-C", conf, "-f"], stdout=subprocess.DEVNULL,
                         stderr=open(logfile, "w"))
    procs.append(p)
    return p


try:
    with t.case("make install into a DESTDIR: programs, config, example, unit; no user created"):
        passwd = open("/etc/passwd").read()
        r = make_install()
        t.eq(r.returncode, 0, "make install: " + r.stderr[-800:])
        for f in ("usr/bin/tandem", "usr/bin/tandemd", "usr/bin/tandem-deliver"):
            t.check(os.access(os.path.join(dest, f), os.X_OK), f + " executable")
        conf = os.path.join(dest, "etc/tandem.conf")
        t.eq(open(conf).read(), open(os.path.join(TOP, "etc/tandem.conf")).read(), "etc/tandem.conf installed")
        t.check(os.path.exists(conf + ".example"), "the example beside it")
        unit = open(os.path.join(dest, "usr/lib/systemd/system/tandemd.service")).read()
        t.check("ExecStart=/usr/bin/tandemd -C /etc/tandem.conf -f" in unit, "the unit names the installed paths")
        t.check("ExecStartPre=/usr/bin/tandemd -C /etc/tandem.conf -n" in unit, "the unit checks first")
        t.check(re.search(r"^User=tandem$", unit, re.M) is not None, "the unit runs as tandem")
        t.eq(open("/etc/passwd").read(), passwd, "no user created")
        r = tandem("-C", conf, "config")
        t.eq(r.returncode, 0, "the installed config parses: " + r.stderr)

    with t.case("make install again keeps an edited config"):
        conf = os.path.join(dest, "etc/tandem.conf")
        with open(conf, "a") as f:
            f.write("# edited by the operator\n")
        edited = open(conf).read()
        r = make_install()
        t.eq(r.returncode, 0, "make install: " + r.stderr[-800:])
        t.eq(open(conf).read(), edited, "the edited config is kept")
        t.check("exists: kept" in r.stdout, r.stdout)

    inst = os.path.join(root, "inst")
    iport = free_port()
    with t.case("tandem init makes an instance that starts: IMAP and LMTP answer"):
        r = tandem("init", "--imap", f"127.0.0.1:{iport}", inst)
        t.eq(r.returncode, 0, "init: " + r.stderr)
        conf = os.path.join(inst, "tandem.conf")
        text = open(conf).read()
        t.check(f"imap_listen: 127.0.0.1:{iport}" in text, text)
        lmtp_sock = os.path.join(inst, "conf/socket/lmtp")
        t.check(f"lmtp_listen: {lmtp_sock}" in text, text)
        t.eq(tandem("-C", conf, "user", "add", "alice", stdin="alice-pw\n").returncode, 0, "user add")
        r = tandemd(conf, "-n")
        t.eq(r.returncode, 0, "tandemd -n: " + r.stderr)
        d = start(conf, os.path.join(root, "tandemd.log"))
        wait_for(lambda: os.path.exists(lmtp_sock) or d.poll() is not None, what="the LMTP socket")
        t.eq(d.poll(), None, "tandemd -f runs")
        lm = smtplib.LMTP(lmtp_sock)
        t.eq(lm.sendmail("a@example.net", ["alice"], make_message(t.rng, 1)), {}, "LMTP delivery")
        lm.quit()
        im = imaplib.IMAP4("127.0.0.1", iport)
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        im.starttls(ssl_context=ctx)
        im.login("alice", "alice-pw")
        typ, data = im.select("INBOX")
        t.eq((typ, data[0]), ("OK", b"1"), "the delivered message over IMAP")
        im.logout()
        r = tandemd(conf, "-n")
        t.eq(r.returncode, 0, "tandemd -n while its instance runs (its ports in use by itself): " + r.stderr)
        d.terminate()
        t.eq(d.wait(60), 0, "tandemd stops")

    with t.case("tandemd -n fails whenever a start fails"):
        conf = os.path.join(inst, "tandem.conf")
        # a port taken by another program
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", iport))
        s.listen(1)
        rn, rf = tandemd(conf, "-n"), tandemd(conf, "-f")
        s.close()
        t.eq((rn.returncode, rf.returncode), (2, 2), f"port in use: -n {rn.stderr} -f {rf.stderr}")
        t.check("in use" in rn.stderr, rn.stderr)
        # nothing to serve
        bare = os.path.join(root, "bare")
        t.eq(tandem("init", "--no-listen", bare).returncode, 0, "init --no-listen")
        bconf = os.path.join(bare, "tandem.conf")
        rn, rf = tandemd(bconf, "-n"), tandemd(bconf, "-f")
        t.eq((rn.returncode, rf.returncode), (2, 2), "nothing to serve")
        t.check("nothing to serve" in rn.stderr and "nothing to serve" in rf.stderr, rn.stderr + rf.stderr)
        # the configdirectory is gone
        with open(bconf, "a") as f:
            f.write(f"imap_listen: 127.0.0.1:{free_port()}\n")
        shutil.rmtree(os.path.join(bare, "conf"))
        rn, rf = tandemd(bconf, "-n"), tandemd(bconf, "-f")
        t.eq((rn.returncode, rf.returncode), (2, 2), f"no configdirectory: {rn.stderr} {rf.stderr}")

    pair = Pair()
    try:
        m = pair.master
        for i in range(5):
            m.ok(["user", "add", "--no-password", f"u{i}"])
            m.ok(["deliver", f"u{i}"], make_message(t.rng, i))

        with t.case("sync -A --progress: users done/total, messages, bytes, ETA as key=value lines"):
            r = pair.sync("-A", "--progress")
            t.eq(r.returncode, 0, "sync -A: " + r.stderr[-500:])
            lines = [ln for ln in r.stderr.splitlines() if ln.startswith("progress: ")]
            t.check(len(lines) >= 2, r.stderr[-500:])
            t.check(lines and lines[0].startswith("progress: users=0/5 "), lines[:1])
            last = dict(kv.split("=") for kv in lines[-1].split()[1:]) if lines else {}
            t.eq(last.get("users"), "5/5", "the last line")
            t.eq(last.get("messages"), "5", "messages sent")
            t.check(int(last.get("bytes", "0")) > 0 and "eta_s" in last, last)
            rc, out = pair.compare()
            t.eq(rc, 0, "replica equal: " + out[-300:])

        with t.case("sync -A shows its progress on a terminal only"):
            r = pair.sync("-A")
            t.eq(r.returncode, 0, "sync -A")
            t.check("progress" not in r.stderr and "users " not in r.stderr, "no progress when stderr is not a tty")
            mfd, sfd = pty.openpty()
            p = subprocess.Popen(["/bin/sh", "-c", 'exec "$@"', "sh", os.path.join(TOP, "bin/tandem"), "-C", m.conf,
                                  "sync", "-n", pair.channel, "-o", "-A"],
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=sfd)
            os.close(sfd)
            out = b""
            while True:
                rd, _, _ = select.select([mfd], [], [], 120)
                if not rd:
                    break
                try:
                    chunk = os.read(mfd, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                out += chunk
            os.close(mfd)
            t.eq(p.wait(60), 0, "sync -A on a terminal")
            text = out.decode("utf-8", "replace")
            t.check("\r" in text and "users 5/5" in text, "a redrawn progress line: " + repr(text[-300:]))
    finally:
        pair.cleanup()
finally:
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()
    shutil.rmtree(root, ignore_errors=True)
t.done()
