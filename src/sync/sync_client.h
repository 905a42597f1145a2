/* sync_client.h: the sync client (struct syncc): pushes a master's changes to one replica over
 * the Cyrus 3.6 csync protocol (reference §2, §4, §6, §7).
 *
 * A struct syncc is one channel's client: its connection (with SASL
 * PLAIN, optional STARTTLS, COMPRESS DEFLATE) and the work: users,
 * mailboxes, a whole change-log file, or rolling replication of the
 * channel's log. Every change-log entry is consumed (log-run removed)
 * only after the replica answered OK for all the work it names.
 */
#ifndef TANDEM_SYNC_CLIENT_H
#define TANDEM_SYNC_CLIENT_H

#include <stddef.h>

#include "lib/err.h"

struct conf;
struct store;
struct syncc;
struct sync_transport;

struct syncc_opts {
	const char *channel;	/* NULL or "" = the default channel */
	const char *server;	/* -S: overrides <channel>_sync_host */
	int verbose;		/* -v: log each command */
	int require_compress;	/* -z */
	int connect_once;	/* -o: give up instead of retrying the connection */
	int delay_set;		/* -d: delay_ms replaces sync_repeat_interval */
	long long delay_ms;
	/* Cyrus's sync_client -F: replaces <channel>_sync_shutdown_file. */
	const char *shutdown_file;
	/* Cyrus's -t: a rolling client reconnects (a new session) between
	 * passes once its session is this many seconds old; 0: never. */
	long long session_restart_s;
	/* Cyrus's -O: a mailbox the replica refuses as a split brain
	 * (IMAP_SYNC_CHECKSUM) fails instead of being reconciled (nothing of
	 * the replica's is copied back into this master). */
	int no_copyback;
	/* The shard (0 .. <channel>_sync_shards - 1) a rolling client
	 * replicates; its log, log-run and failed list are in
	 * sync/<channel>/<shard>/. Ignored when the channel has 1 shard. */
	int shard;
	/* Rolling mode: when *stop becomes non-zero (tandemd's SIGTERM), the
	 * client sends what is logged so far (one last pass) and returns. */
	volatile int *stop;
	/* Instead of the network: a function that returns a connected
	 * transport (an in-process replica: tests, sync_pipe_new), or NULL
	 * with err. */
	struct sync_transport *(*connect)(void *rock, struct terr *err);
	void *connect_rock;
};

struct syncc *syncc_new(const struct conf *conf, struct store *st, const struct syncc_opts *o);
void syncc_free(struct syncc **sc);

/* Connects (with backoff unless connect_once) and authenticates; a
 * client that is connected stays as it is. */
int syncc_connect(struct syncc *sc, struct terr *err);
void syncc_disconnect(struct syncc *sc);

/* One-shot work; each returns 0, or -1 when something failed (the rest
 * is still done). */
int syncc_users(struct syncc *sc, const char *const *users, size_t n, struct terr *err);
int syncc_mailboxes(struct syncc *sc, const char *const *names, size_t n, struct terr *err);
int syncc_all(struct syncc *sc, struct terr *err);
/* Replays a change-log file (never renamed or removed). */
int syncc_logfile(struct syncc *sc, const char *path, struct terr *err);

/* Rolling replication of the channel's log until the shutdown file
 * appears (or once with one_pass). Returns 0 on a clean stop. */
int syncc_rolling(struct syncc *sc, int one_pass, struct terr *err);

/* Compares every mailbox of the given users (all users and shared
 * mailboxes when n is 0) with the replica: header keys and every record
 * (UID, MODSEQ, dates, size, GUID, flags). One line per difference in
 * report; *ndiff counts them. */
struct buf;
/* With on, compare also fetches every live message body from the
 * replica (GET FETCH) and checks its SHA-1 against its GUID. */
void syncc_compare_bodies(struct syncc *sc, int on);
int syncc_compare(struct syncc *sc, const char *const *users, size_t n, struct buf *report, int *ndiff,
		  struct terr *err);

/* After one-shot work (-u/-m/-A/-f): mailboxes that failed (isolated
 * during the run so the others went on) turn rc into -1 with err. */
int syncc_oneshot_result(struct syncc *sc, int rc, struct terr *err);
/* The channel's state: pending change-log lines, and the mailboxes that
 * failed to replicate (state file <configdir>/sync/<channel>/failed,
 * retried with backoff by the rolling client). One key=value line each. */
int syncc_status(const struct conf *conf, const char *channel, struct buf *out, struct terr *err);
/* A sharded channel's status has one line per shard ("channel=C shard=K
 * pending_lines=N", its failed mailboxes with shard=K) after the total
 * ("channel=C pending_lines=T shards=N", with logs left in another
 * layout by a change of the shard count). */
/* <channel>_sync_shards, 1 .. 16. */
int syncc_channel_shards(const struct conf *conf, const char *channel);
/* The directory index of a client's shard: -1 when the channel has one
 * shard (the plain layout), else shard (for chlog_shard_path). */
int syncc_shard_dir(const struct conf *conf, const char *channel, int shard);

/* Repair (tandem repair): makes the replica equal to the master for the
 * users, mailboxes (internal names) or everything (all) named. Each
 * mailbox that compares different gets a full update; what only the
 * replica holds is copied back first (never deleted); a same-name mailbox
 * with another uniqueid on the replica is renamed aside there; a mailbox
 * only on the replica is kept and reported, or copied to the master with
 * copy_mailboxes. bodies: also fetch and check every replica body (a
 * damaged one is sent again). Returns 0 when everything found was
 * repaired (kept replica-only mailboxes do not count), -1 otherwise. */
struct syncc_repair_opts {
	const char *const *users;
	size_t nusers;
	const char *const *mailboxes;
	size_t nmailboxes;
	int all;
	int copy_mailboxes;
	int bodies;
	int dry_run;		/* only compare and report */
};
int syncc_repair(struct syncc *sc, const struct syncc_repair_opts *ro, struct terr *err);

/* One JSON document of what compare/repair found and did:
 * {"equal": bool, "differences": [{"mailbox","kind","detail"}],
 *  "repaired": [...], "remaining": [...], "kept": [...], "renamed": [...],
 *  "copied_back": [{"mailbox","replica_uid","new_uid","guid"}],
 *  "renumbered": [{"mailbox","old_uid","new_uid","guid"}]}. */
void syncc_report_json(const struct syncc *sc, int equal, struct buf *out);
/* After syncc_repair: 1 when nothing is left different or kept (after a
 * dry run: when nothing was found). */
int syncc_report_equal(const struct syncc *sc, int dry_run);

/* Counters for logs and benchmarks. */
struct syncc_stats {
	unsigned long commands, mailboxes, messages, bytes_sent;
	unsigned long roundtrips;	/* writes the client waited on */
};
void syncc_get_stats(const struct syncc *sc, struct syncc_stats *out);

#endif
