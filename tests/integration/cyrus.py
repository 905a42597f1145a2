"""cyrus.py: a throwaway real Cyrus IMAP 3.6 instance for interoperation
tests (Debian's cyrus-imapd / cyrus-replication packages), following
../shared/reference/running-cyrus.md: its own imapd.conf and cyrus.conf in
a temp dir (every cmd= with -C), the configdirectory's sub-directories,
SASL users in its own sasldb (realm = servername), Cyrus's `master` run as
the cyrus user with -d and a pid file, ports on 127.0.0.1, stopped by pid.
"""
import imaplib
import os
import signal
import smtplib
import socket
import subprocess
import time

from tlib import free_port

LIBEXEC = "/usr/lib/cyrus/bin"


def available():
    return os.path.exists(os.path.join(LIBEXEC, "master")) and os.path.exists(os.path.join(LIBEXEC, "sync_client"))


def as_cyrus(args, **kw):
    return subprocess.run(["setpriv", "--reuid=cyrus", "--regid=mail", "--init-groups"] + args, **kw)


class Cyrus:
    def __init__(self, root, name, sync_server=False, sync_to=None, admins="admin"):
        self.dir = os.path.join(root, name)
        self.name = name
        self.imap_port, self.lmtp_port = free_port(), free_port()
        self.sync_port = free_port() if sync_server else None
        cfg = os.path.join(self.dir, "config")
        for sub in ["db", "socket", "proc", "lock", "log", "msg", "sync", "user", "quota"]:
            os.makedirs(os.path.join(cfg, sub))
        os.makedirs(os.path.join(self.dir, "spool"))
        self.conf = os.path.join(self.dir, "imapd.conf")
        lines = [f"servername: {name}", f"configdirectory: {cfg}", f"partition-default: {self.dir}/spool",
                 "defaultpartition: default", f"admins: {admins}", "altnamespace: no", "unixhierarchysep: no",
                 "virtdomains: off", "allowplaintext: yes", "sasl_pwcheck_method: auxprop",
                 "sasl_auxprop_plugin: sasldb", f"sasl_sasldb_path: {self.dir}/sasldb2", "sasl_mech_list: PLAIN",
                 "lmtp_downcase_rcpt: yes"]
        if sync_to:
            lines += ["sync_log: 1", "sync_host: 127.0.0.1", f"sync_port: {sync_to}", "sync_try_imap: 0",
                      "sync_authname: repl", "sync_password: replpw"]
        open(self.conf, "w").write("\n".join(lines) + "\n")
        services = [f'imap cmd="imapd -C {self.conf}" listen="127.0.0.1:{self.imap_port}" prefork=0',
                    f'lmtp cmd="lmtpd -C {self.conf} -a" listen="127.0.0.1:{self.lmtp_port}" prefork=0']
        if self.sync_port:
            services.append(f'syncserver cmd="sync_server -C {self.conf}" listen="127.0.0.1:{self.sync_port}" prefork=0')
        open(os.path.join(self.dir, "cyrus.conf"), "w").write(
            "START {\n  recover cmd=\"ctl_cyrusdb -C %s -r\"\n}\nSERVICES {\n  %s\n}\nEVENTS {\n}\n"
            % (self.conf, "\n  ".join(services)))
        for user, pw in [("admin", "adminpw"), ("repl", "replpw")]:
            subprocess.run(["saslpasswd2", "-p", "-c", "-f", f"{self.dir}/sasldb2", "-u", name, user],
                           input=pw.encode(), check=True)
        os.chmod(root, 0o755)
        subprocess.run(["chown", "-R", "cyrus:mail", self.dir], check=True)
        self.pidfile = os.path.join(self.dir, "master.pid")
        as_cyrus([os.path.join(LIBEXEC, "master"), "-C", self.conf, "-M", os.path.join(self.dir, "cyrus.conf"),
                  "-p", self.pidfile, "-d", "-L", os.path.join(self.dir, "master.out")], cwd=self.dir, check=True)
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.imap_port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"Cyrus {name} did not start")

    def imap(self, user="admin", password="adminpw"):
        im = imaplib.IMAP4("127.0.0.1", self.imap_port)
        im.login(user, password)
        return im

    def add_login(self, user, password):
        """A SASL password for a mail user (the mailbox is created apart)."""
        subprocess.run(["saslpasswd2", "-p", "-c", "-f", f"{self.dir}/sasldb2", "-u", self.name, user],
                       input=password.encode(), check=True)
        subprocess.run(["chown", "cyrus:mail", f"{self.dir}/sasldb2"], check=True)

    def deliver(self, rcpt, msg):
        l = smtplib.LMTP("127.0.0.1", self.lmtp_port)
        l.sendmail("sender@example.net", [rcpt], msg)
        l.close()

    def sync_client(self, *args, timeout=120):
        return as_cyrus([os.path.join(LIBEXEC, "sync_client"), "-C", self.conf] + list(args), cwd=self.dir,
                        capture_output=True, text=True, timeout=timeout)

    def stop(self):
        try:
            pid = int(open(self.pidfile).read().split()[0])
        except (OSError, ValueError, IndexError):
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        for _ in range(100):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
        os.kill(pid, signal.SIGKILL)
