#!/bin/sh
# cyrus-to-tandem-failover.sh: the planned switch from a Cyrus 3.6 master
# replicating into tandem to tandem as the master, with the old Cyrus as
# tandem's replica. Run it on the tandem host, as root (or as a user that
# may run Cyrus's sync_client as the cyrus user and stop/start Cyrus).
#
# Steps (each one logged and checked; the script stops at the first failure):
#   1. check: tandem is a replica, its channel $CHANNEL points back at Cyrus
#      (the Cyrus IMAP port or its csync port), Cyrus's config is readable
#   2. drain Cyrus: one pass of Cyrus's sync_client over its sync log (or,
#      when Cyrus's own rolling client runs, wait for its log to empty)
#   3. compare tandem with Cyrus (tandem compare over Cyrus's IMAP port);
#      different after $COMPARE_TRIES drain+compare rounds: stop
#   4. stop Cyrus ($CYRUS_STOP), then one last sync_client pass for what
#      was delivered after the compare, and check Cyrus's sync log is empty
#   5. promote tandem (tandem failover promote): it takes mail from now on
#   6. start Cyrus as tandem's replica ($CYRUS_START_REPLICA)
#   7. tandem sync -A to Cyrus, then tandem compare until equal; summary
# docs/migrating-from-cyrus.md explains it. Every site-specific value below
# is a variable with Debian 12 defaults; set them in the environment.
# Cyrus's files (its imapd.conf, sync log, pid file, sync_client) are used on
# this host, or on Cyrus's host through CYRUS_SSH (a command that runs its
# arguments there as one shell command line, like ssh).
#
# usage: cyrus-to-tandem-failover.sh [-n] [-h]
#   -n  dry run: run the checks of step 1, print the other steps' commands
# Exit: 0 switched; 1 a step failed (the log says which and what state the
# pair is in); 2 bad usage or configuration.

set -u

# ---- site-specific settings (environment overrides) -------------------------
TANDEM=${TANDEM:-tandem}                            # the tandem admin command
TANDEM_CONF=${TANDEM_CONF:-/etc/tandem.conf}        # tandem's config
CHANNEL=${CHANNEL:-cyrus}                           # tandem's channel to Cyrus
CYRUS_HOST=${CYRUS_HOST:-}                          # Cyrus host; empty: from the channel's sync_host
CYRUS_IMAP_PORT=${CYRUS_IMAP_PORT:-143}             # Cyrus imapd port
CYRUS_CSYNC_PORT=${CYRUS_CSYNC_PORT:-2005}          # Cyrus sync_server (csync) port
CYRUS_IMAP=${CYRUS_IMAP:-}                          # host:port compared in step 3; empty: CYRUS_HOST:CYRUS_IMAP_PORT
CYRUS_SSH=${CYRUS_SSH:-}                            # empty: Cyrus is on this host; else e.g. "ssh root@cyrus.example.com"
CYRUS_CONF=${CYRUS_CONF:-/etc/imapd.conf}           # Cyrus master's imapd.conf
CYRUS_SYNC_CLIENT=${CYRUS_SYNC_CLIENT:-/usr/lib/cyrus/bin/sync_client}
CYRUS_RUN_AS=${CYRUS_RUN_AS:-runuser -u cyrus --}   # prefix to run a Cyrus tool as the cyrus user
CYRUS_SYNC_CHANNEL=${CYRUS_SYNC_CHANNEL:-}          # Cyrus sync_log_channels name, if Cyrus uses one
CYRUS_SYNC_DIR=${CYRUS_SYNC_DIR:-}                  # Cyrus's sync log dir; empty: <configdirectory>/sync[/<channel>]
CYRUS_ROLLING=${CYRUS_ROLLING:-auto}                # Cyrus's rolling sync_client running: yes, no, auto (pgrep)
CYRUS_STOP=${CYRUS_STOP:-systemctl stop cyrus-imapd}
CYRUS_PIDFILE=${CYRUS_PIDFILE:-/run/cyrus-master.pid}   # checked gone after CYRUS_STOP; empty: not checked
CYRUS_START_REPLICA=${CYRUS_START_REPLICA:-}        # starts Cyrus as tandem's replica (required)
CYRUS_SYNC_TIMEOUT=${CYRUS_SYNC_TIMEOUT:-600}       # seconds for one sync_client pass (it retries forever)
DRAIN_TIMEOUT=${DRAIN_TIMEOUT:-300}                 # seconds to wait for Cyrus's rolling client's log to empty
STOP_TIMEOUT=${STOP_TIMEOUT:-60}                    # seconds for Cyrus's master to be gone after CYRUS_STOP
WAIT_TIMEOUT=${WAIT_TIMEOUT:-120}                   # seconds for the new replica to answer and compare equal
COMPARE_TRIES=${COMPARE_TRIES:-3}                   # drain+compare rounds in step 3
REPL_LOGIN=${REPL_LOGIN:-}                          # Cyrus's login on tandem; empty: Cyrus's sync_authname
FAILOVER_LOG=${FAILOVER_LOG:-}                      # also append the log here

DRY=0
STEP=0
START_TIME=$(date +%s)

usage() {
	sed -n '2,/bad usage or configuration/p' "$0" | sed 's/^# \{0,1\}//'
}

while getopts nh opt; do
	case $opt in
	n) DRY=1 ;;
	h) usage; exit 0 ;;
	*) usage >&2; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
[ $# -eq 0 ] || { usage >&2; exit 2; }

# ---- logging and checked execution -------------------------------------------
log() {
	line="$(date -u '+%Y-%m-%dT%H:%M:%SZ') step=$STEP $*"
	printf '%s\n' "$line"
	[ -z "$FAILOVER_LOG" ] || printf '%s\n' "$line" >>"$FAILOVER_LOG"
}

# what to do after a failure depends on how far we got
state_note() {
	if [ "$STEP" -le 3 ]; then
		echo "nothing was changed: Cyrus is still the master, tandem still its replica"
	elif [ "$STEP" -eq 4 ]; then
		echo "Cyrus may be stopped and tandem is still a replica: fix the cause and run again, or roll back by starting Cyrus as the master"
	else
		echo "tandem is the master now and takes mail; Cyrus is not (yet) a working replica: fix it, then run '$TANDEM -C $TANDEM_CONF sync -n $CHANNEL -A -o' and 'compare'"
	fi
}

die() {
	log "result=failed error=\"$*\""
	log "state=\"$(state_note)\""
	exit 1
}

step() {
	STEP=$1
	shift
	log "begin=\"$*\""
}

# run CMD...: logs it, runs it (not in a dry run), logs its exit status;
# its output goes to the log with a "| " prefix. Returns its exit status.
run() {
	if [ "$DRY" -eq 1 ]; then
		log "would_run=\"$*\""
		return 0
	fi
	log "run=\"$*\""
	out=$("$@" 2>&1)
	rc=$?
	[ -z "$out" ] || printf '%s\n' "$out" | sed 's/^/  | /' | while IFS= read -r l; do log "$l"; done
	log "exit=$rc"
	return $rc
}

# run_sh STRING: the same for an operator-provided shell command
run_sh() {
	run sh -c "$1"
}

tandem() {
	"$TANDEM" -C "$TANDEM_CONF" "$@"
}

# conf_get NAME: tandem's effective value of an option ('tandem config')
conf_get() {
	printf '%s\n' "$TCONFIG" | sed -n "s/^$1:[[:space:]]*//p" | sed 's/[[:space:]]*#.*$//' | head -n 1
}

# cyrus_sh STRING: a shell command where Cyrus's files are (CYRUS_SSH)
cyrus_sh() {
	if [ -n "$CYRUS_SSH" ]; then
		# shellcheck disable=SC2086  # CYRUS_SSH is a word list
		$CYRUS_SSH "$1"
	else
		sh -c "$1"
	fi
}

# cyrus_opt NAME: an option of Cyrus's imapd.conf (read in step 1)
cyrus_opt() {
	printf '%s\n' "$CCONF" | sed -n "s/^$1:[[:space:]]*//p" | sed 's/[[:space:]]*$//' | tail -n 1
}

cyrus_sync_client() {
	chan=""
	[ -z "$CYRUS_SYNC_CHANNEL" ] || chan="-n $CYRUS_SYNC_CHANNEL"
	# shellcheck disable=SC2086  # CYRUS_RUN_AS and chan are word lists
	run timeout "$CYRUS_SYNC_TIMEOUT" $CYRUS_SSH $CYRUS_RUN_AS "$CYRUS_SYNC_CLIENT" -C "$CYRUS_CONF" $chan "$@"
}

# the size in bytes of what Cyrus's sync log holds (log and log-run)
cyrus_log_bytes() {
	n=$(cyrus_sh "cat '$CYRUS_SYNC_DIR/log' '$CYRUS_SYNC_DIR/log-run' 2>/dev/null | wc -c" | tr -cd '0-9')
	echo "${n:-0}"
}

cyrus_rolling_running() {
	case $CYRUS_ROLLING in
	yes) return 0 ;;
	no) return 1 ;;
	*) cyrus_sh "pgrep -f 'sync_client( .*)? -[rR]'" >/dev/null 2>&1 ;;
	esac
}

drain() {
	if cyrus_rolling_running; then
		log "cyrus_rolling_client=running waiting_for=\"$CYRUS_SYNC_DIR/log to empty\""
		[ "$DRY" -eq 1 ] && return 0
		deadline=$(($(date +%s) + DRAIN_TIMEOUT))
		while [ "$(cyrus_log_bytes)" -gt 0 ]; do
			[ "$(date +%s)" -lt "$deadline" ] || die "Cyrus's sync log still holds $(cyrus_log_bytes) bytes after ${DRAIN_TIMEOUT}s: is its rolling client stuck? (Cyrus's logs)"
			sleep 1
		done
		log "cyrus_sync_log=empty"
	else
		cyrus_sync_client -R -1 || die "Cyrus's sync_client pass failed (or took over ${CYRUS_SYNC_TIMEOUT}s: is tandem's sync port reachable?)"
	fi
}

compare_with() {
	if [ -n "$1" ]; then
		run "$TANDEM" -C "$TANDEM_CONF" compare -n "$CHANNEL" -S "$1" -o
	else
		run "$TANDEM" -C "$TANDEM_CONF" compare -n "$CHANNEL" -o
	fi
}

# only_own_login_differs: the last compare's differences are all tandem
# mailboxes of the login Cyrus's sync_client uses on tandem (a tandem login
# always has an INBOX, a Cyrus one need not): user.$REPL_LOGIN or below,
# missing on Cyrus
only_own_login_differs() {
	total=$(printf '%s\n' "$out" | sed -n 's/^\([0-9][0-9]*\) differences\{0,1\}$/\1/p' | tail -n 1)
	[ -n "$total" ] && [ "$total" -gt 0 ] || return 1
	own=$(printf '%s\n' "$out" | grep -c "^mailbox=user\.$REPL_LOGIN\(\.[^ ]*\)\{0,1\} difference=missing_on_replica\$")
	[ "$own" -eq "$total" ]
}

# ---- 1. checks ------------------------------------------------------------------
step 1 "check tandem's channel to Cyrus and the roles"
command -v "$TANDEM" >/dev/null 2>&1 || { log "error=\"no tandem command: $TANDEM\""; exit 2; }
TCONFIG=$(tandem config 2>&1) || { log "error=\"tandem config: $TCONFIG\""; exit 2; }
channels=$(conf_get sync_log_channels)
case " $(echo "$channels" | tr ',' ' ') " in
*" $CHANNEL "*) ;;
*) log "error=\"channel $CHANNEL is not in tandem's sync_log_channels ($channels)\""; exit 2 ;;
esac
shost=$(conf_get "${CHANNEL}_sync_host")
[ -n "$shost" ] || shost=$(conf_get sync_host)
sport=$(conf_get "${CHANNEL}_sync_port")
[ -n "$sport" ] || sport=$(conf_get sync_port)
[ -n "$shost" ] || { log "error=\"tandem has no ${CHANNEL}_sync_host (nor sync_host): the channel back to Cyrus\""; exit 2; }
hostpart=${shost%%/*}
case $hostpart in
*:*) chost=${hostpart%:*}; cport=${hostpart##*:} ;;
*) chost=$hostpart; cport=$sport ;;
esac
[ -n "$cport" ] || { log "error=\"${CHANNEL}_sync_host=$shost has no port: give Cyrus's csync ($CYRUS_CSYNC_PORT) or IMAP ($CYRUS_IMAP_PORT) port\""; exit 2; }
if [ "$cport" = "$CYRUS_CSYNC_PORT" ]; then
	transport=csync
elif [ "$cport" = "$CYRUS_IMAP_PORT" ]; then
	transport=imap
else
	log "error=\"${CHANNEL}_sync_host=$shost: port $cport is neither CYRUS_CSYNC_PORT=$CYRUS_CSYNC_PORT nor CYRUS_IMAP_PORT=$CYRUS_IMAP_PORT\""
	exit 2
fi
if [ -n "$CYRUS_HOST" ] && [ "$CYRUS_HOST" != "$chost" ]; then
	log "error=\"${CHANNEL}_sync_host=$shost is not CYRUS_HOST=$CYRUS_HOST\""
	exit 2
fi
CYRUS_HOST=$chost
[ -n "$CYRUS_IMAP" ] || CYRUS_IMAP="$CYRUS_HOST:$CYRUS_IMAP_PORT"
AUTHNAME=$(conf_get "${CHANNEL}_sync_authname")
[ -n "$AUTHNAME" ] || AUTHNAME=$(conf_get sync_authname)
[ -n "$AUTHNAME" ] || { log "error=\"tandem has no sync_authname: a Cyrus admin that tandem logs in as\""; exit 2; }
log "channel=$CHANNEL cyrus=$shost transport=$transport compare_before_switch=$CYRUS_IMAP"
role=$(tandem failover status 2>&1 | head -n 1)
[ "$role" = "role=replica" ] ||
	{ log "error=\"tandem must be Cyrus's replica (tandem failover demote --force), it says: $role\""; exit 2; }
log "tandem_$role"
CCONF=$(cyrus_sh "cat '$CYRUS_CONF'") || { log "error=\"cannot read Cyrus's config $CYRUS_CONF${CYRUS_SSH:+ via $CYRUS_SSH}\""; exit 2; }
if [ -z "$CYRUS_SYNC_DIR" ]; then
	cdir=$(cyrus_opt configdirectory)
	[ -n "$cdir" ] || cdir=/var/lib/cyrus
	CYRUS_SYNC_DIR="$cdir/sync"
	[ -z "$CYRUS_SYNC_CHANNEL" ] || CYRUS_SYNC_DIR="$CYRUS_SYNC_DIR/$CYRUS_SYNC_CHANNEL"
fi
[ -n "$REPL_LOGIN" ] || REPL_LOGIN=$(cyrus_opt sync_authname)
[ -n "$REPL_LOGIN" ] || REPL_LOGIN=$AUTHNAME
case $(cyrus_opt sync_log) in
1|yes|on|true|t) ;;
*) log "error=\"$CYRUS_CONF has no 'sync_log: 1': Cyrus is not a replicating master\""; exit 2 ;;
esac
cyrus_sh "test -x '$CYRUS_SYNC_CLIENT'" || { log "error=\"no $CYRUS_SYNC_CLIENT\""; exit 2; }
if [ -z "$CYRUS_START_REPLICA" ] && [ "$DRY" -eq 0 ]; then
	log "error=\"set CYRUS_START_REPLICA: the command that starts Cyrus as tandem's replica (see docs/migrating-from-cyrus.md)\""
	exit 2
fi
log "cyrus_conf=$CYRUS_CONF cyrus_sync_log=$CYRUS_SYNC_DIR pending_bytes=$(cyrus_log_bytes) ok=yes"

# ---- 2 and 3. drain and compare --------------------------------------------------
try=1
while :; do
	step 2 "drain Cyrus's sync log into tandem (round $try)"
	drain
	step 3 "compare tandem with Cyrus over IMAP (round $try)"
	if compare_with "$CYRUS_IMAP"; then
		log "equal=yes"
		break
	fi
	if only_own_login_differs; then
		log "equal=yes ignored=\"the replication login's own mailboxes (user.$REPL_LOGIN), which tandem's 'user add' made; Cyrus has none\""
		break
	fi
	[ "$try" -lt "$COMPARE_TRIES" ] || die "tandem differs from Cyrus after $try rounds (lines above): find the cause (Cyrus's logs; Cyrus's sync_client -u USER) and run again"
	try=$((try + 1))
done

# ---- 4. stop Cyrus ------------------------------------------------------------------
step 4 "stop Cyrus and send what it took after the compare"
run_sh "$CYRUS_STOP" || die "CYRUS_STOP failed: $CYRUS_STOP"
if [ -n "$CYRUS_PIDFILE" ] && [ "$DRY" -eq 0 ]; then
	pid=$(cyrus_sh "head -n 1 '$CYRUS_PIDFILE'" 2>/dev/null | tr -cd '0-9')
	if [ -n "$pid" ]; then
		deadline=$(($(date +%s) + STOP_TIMEOUT))
		while cyrus_sh "kill -0 $pid" 2>/dev/null; do
			[ "$(date +%s)" -lt "$deadline" ] || die "Cyrus's master (pid $pid) still runs ${STOP_TIMEOUT}s after CYRUS_STOP"
			sleep 1
		done
	fi
	log "cyrus_master=stopped pid=${pid:-none}"
fi
cyrus_sync_client -R -1 || die "the last sync_client pass failed: Cyrus is stopped, tandem still a replica"
if [ "$DRY" -eq 0 ]; then
	left=$(cyrus_log_bytes)
	[ "$left" -eq 0 ] || die "Cyrus's sync log still holds $left bytes after the last pass"
fi
log "cyrus_sync_log=empty"

# ---- 5. promote tandem -------------------------------------------------------------
step 5 "promote tandem to master"
run "$TANDEM" -C "$TANDEM_CONF" failover promote || die "tandem failover promote failed"
if [ "$DRY" -eq 0 ]; then
	role=$(tandem failover status 2>&1 | head -n 1)
	[ "$role" = "role=master" ] || die "tandem failover status says $role after promote"
	log "tandem_$role takes_mail=yes"
fi

# ---- 6. Cyrus as the replica -------------------------------------------------------
step 6 "start Cyrus as tandem's replica"
run_sh "$CYRUS_START_REPLICA" || die "CYRUS_START_REPLICA failed: $CYRUS_START_REPLICA"

# ---- 7. catch up and check --------------------------------------------------------
step 7 "full sync from tandem to Cyrus, then compare"
deadline=$(($(date +%s) + WAIT_TIMEOUT))
until run "$TANDEM" -C "$TANDEM_CONF" sync -n "$CHANNEL" -A -o; do
	[ "$(date +%s)" -lt "$deadline" ] || die "tandem sync -A to Cyrus ($shost) failed for ${WAIT_TIMEOUT}s"
	sleep 2
done
until compare_with ""; do
	# tandem takes mail now: its rolling client may still be sending some
	[ "$(date +%s)" -lt "$deadline" ] || die "Cyrus (replica) still differs from tandem after ${WAIT_TIMEOUT}s"
	sleep 2
done
log "equal=yes"

STEP="done"
log "summary: tandem ($TANDEM_CONF) is the master and takes mail (LMTP, IMAP)"
log "summary: Cyrus at $shost ($transport) is its replica, equal to it; tandem's channel $CHANNEL replicates to it"
log "summary: took $(($(date +%s) - START_TIME))s; point the MTA (LMTP) and the IMAP clients at tandem"
[ "$DRY" -eq 0 ] || log "summary: dry run, nothing was changed"
exit 0
