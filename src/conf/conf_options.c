/* conf_options.c: every configuration option of tandem, one table.
 * Names, meanings and defaults are Cyrus 3.6's where Cyrus has the
 * option (reference §8); the doc line says "tandem only" where not.
 * etc/tandem.conf documents each one at length; a unit test checks that
 * it names every option of this table. */
#include "conf/conf-private.h"

#include "lib/limits.h"

#include <stddef.h>

#define MS(s) ((long long)(s) * 1000)
/* a limits.h number as a default text */
#define STR_(x) #x
#define STR(x) STR_(x)

const struct conf_option conf_options[] = {
	/* instance */
	{ "configdirectory", CT_PATH, NULL, 0, 0, 0, NULL,
	  "Directory of the instance's state: users.db, change logs, pid file (required)." },
	{ "partition-", CT_PATH, NULL, CF_PATTERN, 0, 0, NULL,
	  "partition-<name>: directory of a mail partition; partition-default is the usual one." },
	{ "defaultpartition", CT_STRING, "default", 0, 0, 0, NULL,
	  "Partition for new mailboxes." },
	{ "servername", CT_STRING, NULL, 0, 0, 0, NULL,
	  "Name in greetings and certificates (default: the host name)." },
	{ "admins", CT_LIST, NULL, 0, 0, 0, NULL,
	  "Users with administrative rights (the replication user must be one, on a replica)." },
	{ "virtdomains", CT_ENUM, "off", 0, 0, 0, "off userid on",
	  "Virtual domains: userids like alice@example.com, names like example.com!user.alice." },
	{ "unixhierarchysep", CT_BOOL, "no", 0, 0, 0, NULL,
	  "IMAP hierarchy separator '/' (yes) or '.' (no)." },
	{ "altnamespace", CT_BOOL, "no", 0, 0, 0, NULL,
	  "Cyrus's alternate namespace; tandem supports only 'no' for now." },
	{ "maxmessagesize", CT_BYTES, "0", 0, 0, 100LL * 1024 * 1024, NULL,
	  "Largest message accepted, bytes (K/M/G suffixes); 0 = the built-in 100M." },
	{ "allowplaintext", CT_BOOL, "no", 0, 0, 0, NULL,
	  "Allow LOGIN / AUTHENTICATE PLAIN without TLS." },
	{ "failedloginpause", CT_DURATION, "3s", 0, 0, MS(60), NULL,
	  "Pause before answering a failed login; doubled per recent failure of the user or address (max 30s)." },
	{ "preauth_timeout", CT_DURATION, STR(PREAUTH_TIMEOUT_MAX) "s", 0, MS(1), MS(PREAUTH_TIMEOUT_MAX), NULL,
	  "tandem only: close sessions not logged in by then (IMAP, sync port) and idle LMTP sessions." },
	/* session limits (Cyrus: maxchild of each cyrus.conf service entry) */
	{ "imap_maxchild", CT_INT, STR(IMAP_MAXCHILD_DEFAULT), 0, 1, MAX_SESSIONS, NULL,
	  "Most IMAP sessions at once (Cyrus's maxchild of the imap service)." },
	{ "imaps_maxchild", CT_INT, STR(IMAPS_MAXCHILD_DEFAULT), 0, 1, MAX_SESSIONS, NULL,
	  "Most imaps sessions at once." },
	{ "lmtp_maxchild", CT_INT, STR(LMTP_MAXCHILD_DEFAULT), 0, 1, MAX_SESSIONS, NULL,
	  "Most LMTP sessions at once." },
	{ "sync_maxchild", CT_INT, STR(SYNC_MAXCHILD_DEFAULT), 0, 1, MAX_SESSIONS, NULL,
	  "Most sync-port (csync) sessions at once; the four *_maxchild may sum to 2000 at most." },
	{ "maxperhost", CT_INT, STR(MAXPERHOST_DEFAULT), 0, 0, MAX_SESSIONS, NULL,
	  "tandem only: most sessions of one client address on one service (0: no limit; unix sockets exempt)." },
	{ "client_timeout", CT_DURATION, "10s", 0, MS(1), MS(600), NULL,
	  "Connect timeout of outgoing connections (sync client)." },
	{ "timeout", CT_INT, "32", 0, 30, 24 * 60, NULL,
	  "IMAP idle autologout, minutes (RFC 3501: at least 30)." },
	{ "lmtp_downcase_rcpt", CT_BOOL, "yes", 0, 0, 0, NULL,
	  "Lower-case the local part of LMTP recipients." },
	{ "lmtp_over_quota_perm_failure", CT_BOOL, "no", 0, 0, 0, NULL,
	  "Over-quota LMTP recipients get 552 (permanent) instead of 452." },
	{ "quotawarn", CT_INT, "90", 0, 0, 100, NULL,
	  "Percent of a quota at which IMAP warns." },
	{ "syslog_prefix", CT_STRING, NULL, 0, 0, 0, NULL,
	  "Program name in log lines (default tandemd)." },
	/* logging and processes (tandem only) */
	{ "syslog", CT_BOOL, "no", 0, 0, 0, NULL,
	  "tandem only: log to syslog (facility mail) instead of standard error." },
	{ "loglevel", CT_ENUM, "info", 0, 0, 0, "debug info notice warn error",
	  "tandem only: lowest level logged." },
	{ "pidfile", CT_PATH, NULL, 0, 0, 0, NULL,
	  "tandem only: tandemd's pid file (default <configdirectory>/tandemd.pid)." },
	/* listeners (tandem only; Cyrus puts these in cyrus.conf) */
	{ "imap_listen", CT_LIST, NULL, 0, 0, 0, NULL,
	  "tandem only: IMAP addresses (host:port, [v6]:port, *:port or /unix/path)." },
	{ "imaps_listen", CT_LIST, NULL, 0, 0, 0, NULL,
	  "tandem only: IMAP over implicit TLS addresses." },
	{ "lmtp_listen", CT_LIST, NULL, 0, 0, 0, NULL,
	  "tandem only: LMTP addresses (often a unix socket for the MTA)." },
	{ "sync_listen", CT_LIST, NULL, 0, 0, 0, NULL,
	  "tandem only: replication (csync) addresses, on a replica." },
	/* TLS */
	{ "tls_server_cert", CT_PATH, NULL, 0, 0, 0, NULL,
	  "Server certificate chain (PEM); enables STARTTLS and imaps." },
	{ "tls_server_key", CT_PATH, NULL, 0, 0, 0, NULL,
	  "Server private key (PEM)." },
	{ "tls_client_ca_file", CT_PATH, NULL, 0, 0, 0, NULL,
	  "CA certificates the sync client verifies replicas against (unset: not verified)." },
	/* replication: change log */
	{ "sync_log", CT_BOOL, "no", 0, 0, 0, NULL,
	  "Write every change to the change log of each channel." },
	{ "sync_log_channels", CT_LIST, NULL, 0, 0, 0, NULL,
	  "Channels (one per replica); \"\" is the default channel." },
	{ "sync_log_chain", CT_BOOL, "no", 0, 0, 0, NULL,
	  "On a replica: log what replication applies, to feed a further replica." },
	{ "sync_log_unsuppressable_channels", CT_LIST, "squatter", 0, 0, 0, NULL,
	  "Channels a replica logs to even without sync_log_chain." },
	/* replication: client, per channel */
	{ "sync_host", CT_STRING, NULL, CF_CHANNEL, 0, 0, NULL,
	  "Replica: host, host:port, host:port/tls, or /unix/path." },
	{ "sync_port", CT_STRING, NULL, CF_CHANNEL, 0, 0, NULL,
	  "Replica port (number or service name)." },
	{ "sync_compress", CT_ENUM, "auto", CF_CHANNEL, 0, 0, "auto yes no",
	  "tandem only: deflate the csync link when the replica offers it: yes, no, or auto (not to a replica on"
	  " this machine, where it costs the client more CPU than it saves; sync -z always compresses)." },
	{ "sync_try_imap", CT_BOOL, "yes", CF_CHANNEL, 0, 0, NULL,
	  "Try replication over IMAP before csync." },
	{ "sync_authname", CT_STRING, NULL, CF_CHANNEL, 0, 0, NULL,
	  "SASL user the sync client authenticates as." },
	{ "sync_password", CT_STRING, NULL, CF_CHANNEL | CF_SECRET, 0, 0, NULL,
	  "Its password." },
	{ "sync_realm", CT_STRING, NULL, CF_CHANNEL, 0, 0, NULL,
	  "SASL realm." },
	{ "sync_repeat_interval", CT_DURATION, "1s", CF_CHANNEL, 0, MS(3600), NULL,
	  "Rolling replication: least time between passes (0: poll every 100ms)." },
	{ "sync_shutdown_file", CT_PATH, NULL, CF_CHANNEL, 0, 0, NULL,
	  "A rolling sync client exits when this file appears." },
	{ "sync_cache_db_path", CT_PATH, NULL, CF_CHANNEL, 0, 0, NULL,
	  "Sync client's cache of replica state." },
	{ "sync_reconnect_minwait", CT_DURATION, "1s", CF_CHANNEL, 0, MS(3600), NULL,
	  "tandem only: first reconnect backoff step." },
	{ "sync_shards", CT_INT, "1", CF_CHANNEL, 1, 16, NULL,
	  "tandem only: shards of a channel (logs and sync clients, users split by a hash); change: drain first." },
	{ "sync_timeout", CT_DURATION, "30m", 0, MS(3), MS(86400), NULL,
	  "Network inactivity timeout of sync client and server." },
	{ "sync_reconnect_maxwait", CT_DURATION, "20m", 0, 0, MS(86400), NULL,
	  "Cap of the reconnect backoff (0: no cap)." },
	{ "sync_retry_maxwait", CT_DURATION, "5m", CF_CHANNEL, MS(1), MS(86400), NULL,
	  "tandem only: cap of the retry backoff of a mailbox that failed to replicate." },
	{ "sync_batchsize", CT_INT, "8192", 0, 1, 1000000, NULL,
	  "New messages per APPLY MAILBOX: a mailbox with more goes in parts (partial updates)." },
	{ "sync_rightnow_channel", CT_STRING, NULL, 0, 0, 0, NULL,
	  "Synchronous channel: each change is on its replica before it is acknowledged (or the timeout passed)." },
	{ "sync_rightnow_timeout", CT_DURATION, "2s", 0, 0, MS(3600), NULL,
	  "tandem only: longest wait of an acknowledgement for the rightnow replica (then it goes out anyway)." },
	{ "sync_drain_timeout", CT_DURATION, "60s", 0, 0, MS(86400), NULL,
	  "tandem only: how long SIGTERM waits for the sync clients to send what is logged." },
};
const unsigned conf_noptions = sizeof conf_options / sizeof conf_options[0];
