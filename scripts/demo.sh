#!/bin/sh
# scripts/demo.sh (make demo): tandem end to end on this machine, in ./demo.
# Creates an instance, adds users, delivers mail through the durable
# delivery path, and shows the mailboxes, the messages and the change log
# the replicas will read. Safe to run again: ./demo is made anew.
set -eu
cd "$(dirname "$0")/.."
T=bin/tandem
D=demo
rm -rf "$D"
step() { printf '\n== %s\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

step "A new instance with a change log for one replication channel (repl1)"
run $T init --servername master.demo --channels repl1 "$D/master"
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

printf '\nThe instance stays in %s/master; remove it with: rm -rf %s\n' "$D" "$D"
