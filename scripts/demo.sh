#!/bin/sh
# scripts/demo.sh (make demo): tandem end to end on this machine, in ./demo.
# Creates a master instance, adds users, delivers mail through the durable
# delivery path, shows the mailboxes, messages and change log; then starts
# a replica and the master's tandemd on loopback, delivers over LMTP, and
# shows the mail replicated and the pair compared equal. Safe to run
# again: ./demo is made anew.
set -eu
cd "$(dirname "$0")/.."
T=bin/tandem
D=demo
rm -rf "$D"
step() { printf '\n== %s\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

step "A new instance with a change log for one replication channel (repl1)"
run $T init --no-listen --servername master.demo --channels repl1 "$D/master"
C="-C $D/master/tandem.conf"

step "Users (passwords from standard input, hashed with yescrypt)"
echo "alice-password" | run $T $C user add alice
echo "bob-password" | run $T $C user add bob
run $T $C mailbox create user.alice.Lists
run $T $C user list

step "Delivery: each message is fsynced, its metadata committed and its change-log line fsynced before 'delivered'"
for i in 1 2 3; do
	printf 'From: carol@example.net\r\nTo: alice@example.com\r\nSubject: demo message %s\r\nMessage-ID: <demo-%s@example.net>\r\n\r\nHello Alice, this is message %s.\r\n' "$i" "$i" "$i" \
		| run $T $C deliver alice bob
done
printf 'Subject: list mail\r\n\r\nfor the Lists folder\r\n' | run $T $C deliver alice+Lists

step "Flags and expunge"
run $T $C message flag user.alice 1 '+\Seen $Important'
run $T $C message flag user.alice 2 '+\Deleted'
run $T $C message expunge user.alice

step "Mailboxes (name, messages, UIDVALIDITY, highest modseq, uniqueid)"
run $T $C mailbox list

step "Alice's INBOX (UID, modseq, flags, internal date, size, GUID = SHA-1 of the bytes)"
run $T $C message list user.alice


step "The change log of channel repl1 (what a sync client will replicate)"
run cat "$D/master/conf/sync/repl1/log"

step "Consistency check of the whole store (files, SHA-1s, CRCs)"
run $T $C check --bodies

step "A replica on loopback: its tandemd serves the replication (csync) port"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
SP=$(free_port); LP=$(free_port)
run $T init --no-listen --servername replica.demo "$D/replica"
R="-C $D/replica/tandem.conf"
sed -i 's/^admins: admin$/admins: admin repl/' "$D/replica/tandem.conf"
printf 'sync_listen: 127.0.0.1:%s\nallowplaintext: yes\n' "$SP" >> "$D/replica/tandem.conf"
echo "replication-secret" | run $T $R user add repl
bin/tandemd $R -f 2> "$D/replica.log" &
RPID=$!
printf 'repl1_sync_host: 127.0.0.1:%s\nsync_authname: repl\nsync_password: replication-secret\nlmtp_listen: 127.0.0.1:%s\n' \
	"$SP" "$LP" >> "$D/master/tandem.conf"
step "The master's tandemd: LMTP for the MTA, and a rolling sync client for channel repl1"
bin/tandemd $C -f 2> "$D/master.log" &
MPID=$!
trap 'kill $MPID $RPID 2>/dev/null; wait 2>/dev/null' EXIT
sleep 1
step "Deliver over LMTP (Python's smtplib) to the master"
python3 - "$LP" <<'PY'
import smtplib, sys
# one connection per message: smtplib reads one DATA reply, LMTP sends one per recipient
for i in range(3):
    l = smtplib.LMTP("127.0.0.1", int(sys.argv[1]))
    msg = f"From: dave@example.net\r\nTo: bob@example.com\r\nSubject: over LMTP {i}\r\n\r\nReplicated at once.\r\n"
    print("LMTP:", l.sendmail("dave@example.net", ["bob", "alice+Lists"], msg) or "250 for every recipient")
    l.close()
PY
sleep 1
step "The replica has everything: same mailboxes, UIDs, modseqs, flags, GUIDs"
run $T $R mailbox list
run $T $R message list user.alice
step "tandem compare: every mailbox and record, master against replica"
run $T $C compare -n repl1
step "What the master's sync client did (its log)"
grep -E 'sync_(connect|pass)' "$D/master.log" | tail -5
kill $MPID $RPID 2>/dev/null; wait 2>/dev/null; trap - EXIT

printf '\nThe instances stay in %s (master, replica, logs); remove them with: rm -rf %s\n' "$D" "$D"
