/* sync_client-private.h: the client half of the replication engine: its
 * state (struct syncc) and helpers, shared by the files that plan and
 * send (src/sync/sync_client_*.c: wire, mailbox, bulk, cache, users,
 * compare, split) and the thin client around them (src/syncc/: the
 * lifecycle, connecting, the rolling schedule, the failed list). Not for
 * use outside those two folders. */
#ifndef TANDEM_SYNC_CLIENT_PRIVATE_H
#define TANDEM_SYNC_CLIENT_PRIVATE_H

#include <openssl/ssl.h>
#include <stdint.h>

#include "lib/buf.h"
#include "lib/limits.h"
#include "proto/sync/dlist.h"
#include "store/store.h"
#include "sync/sync_client.h"

struct store_mailbox_info;

/* A mailbox that failed to replicate (not a connection problem). In the
 * channel's state file: every failed try counts in attempts (a rolling
 * pass that touches the mailbox is a try too); wait is the backoff step,
 * doubled only by a try that fails when the retry was due, so passes
 * touching the mailbox early do not push it to the cap. */
struct failed {
	char *name;
	char *error;
	int attempts;
	long long next_retry;	/* epoch seconds: the last failure + wait */
	long long wait;		/* seconds */
};

/* Commands one pipelined write may hold (MESSAGE batches, MAILBOXes,
 * RESTART); more go in the next round trip. */
#define SYNCC_MAX_PIPELINE 64
/* zlib level of what the client sends under COMPRESS DEFLATE: 1, the
 * fastest (see conn_compress_level in src/net/conn.h). */
#define SYNCC_DEFLATE_LEVEL 1
/* Mailboxes in the sync cache; past it the cache starts again (a miss
 * costs one GET MAILBOXES). */
#define SYNCC_RCACHE_MAX 100000

/* First backoff step of a failing mailbox's retries, seconds; the cap
 * is the option sync_retry_maxwait. */
#define SYNCC_RETRY_MIN_S 2

/* A replica session that dies (its process crashed, the connection
 * dropped) while a pass is under way looks like a lost connection. After
 * SYNCC_CAREFUL_AFTER such passes in a row the client works carefully:
 * one mailbox at a time, so the one being applied when the session died
 * is known; it is charged a failed try with SYNCC_LOST_SESSION in its
 * error, and after SYNCC_QUARANTINE_TRIES of them it is left out of
 * rolling passes until its retry is due (the rest of the channel flows). */
#define SYNCC_CAREFUL_AFTER 2
#define SYNCC_QUARANTINE_TRIES 3
#define SYNCC_LOST_SESSION "the replica's session ended while applying it"

/* One reported item of compare/repair/split brain (see syncc_report_json). */
struct syncc_item {
	char *mailbox, *kind, *detail;
	uint32_t replica_uid, new_uid;
	char guid[41];
};

struct syncc_items {
	struct syncc_item *v;
	size_t n;
};

struct syncc {
	const struct conf *conf;
	struct failed *failed;	/* failures of the current pass */
	size_t nfailed;
	char **synced;		/* mailboxes the current pass replicated (or found equal) */
	size_t nsynced;
	struct store *st;
	struct syncc_opts o;
	char channel[MAX_CHANNEL_NAME + 1];
	struct sync_transport *t;	/* NULL: not connected */
	SSL_CTX *tls;
	struct buf out;
	struct dlist_refs refs;	/* by-reference bodies of out (sent from their files) */
	/* the blobs/ directory of the owner whose bodies were last sized
	 * (syncc_add_body opens each message file in it: one path walk per
	 * owner, not two per message) */
	struct store_blobdir blobs;
	struct syncc_stats stats;
	int cap_starttls, cap_compress, cap_sieve;
	int compare_bodies;
	/* with compare_bodies: bodies already checked (move-user checks
	 * them before its lock, then only the new ones): body_known says
	 * whether to skip a record, body_checked hears of each one found
	 * right; NULL: every body is fetched */
	int (*body_known)(void *rock, const char *mailbox, uint32_t uid, const char *guid);
	void (*body_checked)(void *rock, const char *mailbox, uint32_t uid, const char *guid);
	void *body_rock;
	/* the replica speaks the protocol inside IMAP (reference §2.10) */
	int imap;
	int cap_sasl_ir, cap_replication;
	/* repair mode: full updates only, and a same-name mailbox with
	 * another uniqueid is renamed aside on the replica */
	int repair;
	/* careful mode (SYNCC_CAREFUL_AFTER): one mailbox at a time, the one
	 * under way in current ("" between mailboxes) */
	int careful;
	char current[MAX_MBOXNAME + 1];
	unsigned long since_restart;	/* commands sent since the last RESTART */
	/* the sync cache: each mailbox's header as the replica holds it
	 * after our last APPLY MAILBOX it accepted; lets a rolling pass skip
	 * GET MAILBOXES and RESERVE and send one pipelined round trip */
	struct syncc_rstate {
		/* the name, then (after its NUL) the header's values in the
		 * order of rcache_keys (sync_client_cache.c), each ending in a
		 * NUL: one allocation, ~150 bytes a mailbox (a dlist of the
		 * same was ~2.9 KB: 29 MB at 10,000 mailboxes) */
		char *name;
		uint64_t hash;	/* of name, for rcache_slots */
	} *rcache;
	size_t nrcache, rcache_cap;
	/* rcache's index by name: open addressing, linear probing, each slot
	 * 0 (empty) or 1 + an index into rcache; nslots a power of two at
	 * least twice nrcache (sync_client_cache.c) */
	uint32_t *rcache_slots;
	size_t rcache_nslots;
	/* what compare, copy-back and repair found and did */
	struct syncc_items diffs, copied, renumbered, repaired, kept, renamed, remaining;
	/* the waiters of synchronous replication (src/syncc/syncc_rightnow.c),
	 * NULL unless this is the rolling client of sync_rightnow_channel */
	struct syncc_rn *rn;
	/* the published state of a rolling client (src/syncc/syncc_publish.c),
	 * NULL for one-shot work */
	struct syncc_pub *pub;
};

/* syncc_publish.c: a rolling client's client.state (src/stats/stats.h):
 * open at the start of syncc_rolling, close ("stopped") at its end; the
 * others are no-ops without it. */
void syncc_pub_open(struct syncc *sc);
void syncc_pub_close(struct syncc *sc);
/* A transition: "connecting", "connected", "backoff" (until: epoch
 * seconds of the next attempt), "draining"; error kept when not NULL. */
void syncc_pub_state(struct syncc *sc, const char *state, long long until, const char *error);
/* A pass on a log-run ended (ok or not) after ns nanoseconds. */
void syncc_pub_pass(struct syncc *sc, int ok, unsigned long long ns, const char *error);
/* Connected with nothing to send: refreshes last_success (at most every
 * STATS_IDLE_REFRESH_S). */
void syncc_pub_idle(struct syncc *sc);

/* syncc_rightnow.c: the rolling client's side of sync_rightnow_channel.
 * open: listens when sc's channel is the rightnow one (0 also when it is
 * not; -1 when it cannot listen: logged, the sessions then do not wait). */
struct pollfd;
int syncc_rn_open(struct syncc *sc);
void syncc_rn_close(struct syncc *sc);
/* The listen socket and the waiters' fds for poll (0 without rn). */
size_t syncc_rn_pollfds(struct syncc *sc, struct pollfd *pf, size_t max);
/* Accepts and reads waiters, answers those already covered; 1 when some
 * wait for a pass. */
int syncc_rn_service(struct syncc *sc);
/* Around a pass on log-run: begin notes its inode and size (after
 * chlog_take); end answers its waiters: OK (NO when nfailed mailboxes
 * failed), or NO no when the pass failed (no non-NULL). */
void syncc_rn_pass_begin(struct syncc *sc);
void syncc_rn_pass_end(struct syncc *sc, const char *no, size_t nfailed);
/* Answers every waiter NO cause (the replica is unreachable). */
void syncc_rn_refuse_all(struct syncc *sc, const char *cause);
/* Sleeps ms (a backoff), answering every waiter NO cause meanwhile. */
void syncc_rn_sleep(struct syncc *sc, long long ms, const char *cause);

typedef void data_fn(void *rock, struct dlist *kv);

/* Sends sc->out (one command) and reads its response: data lines go to
 * cb; 0 on OK, -1 with err (TE_CHECKSUM, TE_CHANGED, TE_MOVED,
 * TE_NOTFOUND from the NO code, TE_IO on the connection). */
int syncc_roundtrip(struct syncc *sc, data_fn *cb, void *rock, struct terr *err);
/* The same in two halves, for pipelining: send queues sc->out (not
 * flushed) and remembers its tag; recv reads the response of the oldest
 * command not answered yet. */
void syncc_send(struct syncc *sc);
/* Writes what syncc_send queued (-1 with err TE_IO: the connection is lost). */
int syncc_flush(struct syncc *sc, struct terr *err);
int syncc_recv(struct syncc *sc, data_fn *cb, void *rock, struct terr *err);
/* The sync cache (see struct syncc): forget one mailbox, or all. */
void syncc_rcache_drop(struct syncc *sc, const char *name);
void syncc_rcache_clear(struct syncc *sc);
/* Puts "<verb> <dlist>\r\n" in sc->out. */
void syncc_cmd_dlist(struct syncc *sc, const char *verb, const struct dlist *d);
/* One mailbox: incremental when remote allows, else full; copy-back of a
 * split brain (syncc_reconcile) when the replica refuses the full update. */
int syncc_sync_one(struct syncc *sc, const char *name, const struct dlist *remote, struct terr *err);
/* Compares one mailbox (differences to report and to sc->diffs). */
int syncc_compare_mailbox(struct syncc *sc, const char *name, struct buf *report, int *ndiff, struct terr *err);

/* ---- shared between the files of the split client (syncc_*.c) ---- */

/* Bytes of message bodies per APPLY MESSAGE: bounds the replica's memory
 * for one command. */
#define SYNCC_MESSAGE_BATCH_BYTES (32L * 1024 * 1024)

/* The replica's state of one mailbox (GET MAILBOXES, GET USER). */
struct remote {
	char *name;
	struct dlist *kv;
};

/* The replica's state of several mailboxes. */
struct remotes {
	struct remote *r;
	size_t n;
};

/* GUIDs the replica reports missing (RESERVE). */
struct missing {
	char **guids;
	size_t n;
};

/* Names (mailboxes, users, subscriptions), each once. */
struct names {
	char **v;
	size_t n;
};

/* A set of GUIDs (open addressing; the table doubles at half full). */
struct gset {
	char (*g)[41];
	size_t n, cap;
};

/* What a command in a stream is (struct spend). */
enum spend_kind { SP_MESSAGE, SP_MAILBOX, SP_OTHER };

/* One mailbox of a stream and its outcome. */
struct sitem {
	char *name;
	struct dlist *mb;	/* the snapshot; after the last part its header is the replica's */
	int state;		/* 0 going, 1 done, -1 failed */
	struct terr *err;	/* why it failed (syncc_item_fail), else NULL:
				 * an initial sync holds an item per mailbox */
	unsigned parts;
};

/* A command in flight. SP_OTHER: data lines go to cb; its failure goes
 * to *oerr (when set and still clear); *done is set once answered. */
struct spend {
	enum spend_kind kind;
	size_t item;
	int last;
	data_fn *cb;
	void *rock;
	struct terr *oerr;
	int *done;
};

/* A pipelined stream of commands over several mailboxes (syncc_bulk.c). */
struct stream {
	struct syncc *sc;
	struct spend q[SYNCC_MAX_PIPELINE];
	size_t qfirst, qn, mb_inflight;
	struct gset sent;	/* bodies staged on the replica by this stream */
	struct sitem *it;
	size_t nit, itcap;
	unsigned long bodies, bodies_staged;	/* sent; sent since the last RESTART */
};

/* syncc_wire.c */
/* Sends one plain command line and waits for its OK. */
int syncc_simple(struct syncc *sc, const char *line, struct terr *err);

/* syncc_mailbox.c */
/* Runs change-log entries as a rolling pass would (sync_client_log.c). */
struct chlog_entry;
int syncc_entries(struct syncc *sc, const struct chlog_entry *es, size_t n, struct terr *err);
/* data_fn: each MAILBOX line of a GET into a struct remotes. */
void syncc_collect_remote(void *rock, struct dlist *kv);
/* Frees a struct remotes. */
void syncc_remotes_free(struct remotes *rs);
/* The replica's state of the mailbox name, or NULL. */
const struct dlist *syncc_remote_by_name(const struct remotes *rs, const char *name);
/* The replica's name of the mailbox with this uniqueid, or NULL. */
const char *syncc_remote_by_uniqueid(const struct remotes *rs, const char *uniqueid);
/* data_fn: the GUIDs of a MISSING line into a struct missing. */
void syncc_collect_missing(void *rock, struct dlist *kv);
/* 1 when the local and the replica's headers say the same state. */
int syncc_header_equal(const struct dlist *local, const struct dlist *remote);
/* Syncs a batch of mailbox names (see syncc_sync_batch_x, nostream 0). */
int syncc_sync_batch(struct syncc *sc, char **names, size_t n, int unmailbox, struct terr *err);
/* A batch; unmailbox: names gone here go on the replica; nostream: new ones one by one. */
int syncc_sync_batch_x(struct syncc *sc, char **names, size_t n, int unmailbox, int nostream, struct terr *err);

/* syncc_bulk.c */
/* Adds the body of guid (a message file of mailbox name) to the APPLY
 * MESSAGE list *msg (made on first use) by reference: the transport reads
 * the file into the connection when the command is sent (bodies never
 * whole in memory); *bytes grows by its size. -1 (err) when it has no
 * file. The replica checks each body against its GUID as it arrives. */
int syncc_add_body(struct syncc *sc, struct dlist **msg, const char *name, const char *guid, size_t *bytes,
		   struct terr *err);
/* Reads the answer of the oldest command in flight; -1: the connection failed. */
int syncc_stream_recv(struct stream *s, struct terr *err);
/* Sends sc->out now (flushed) and remembers it as pe. */
int syncc_stream_send_pe(struct stream *s, const struct spend *pe, struct terr *err);
/* Reads every answer still due in the stream. */
int syncc_stream_drain(struct stream *s, struct terr *err);
/* Streams one mailbox's update in parts from the replica's state remote (or NULL). */
int syncc_stream_mailbox(struct stream *s, size_t idx, const struct dlist *remote, struct terr *err);
/* Adds an item (a mailbox) to the stream; returns its index. */
size_t syncc_stream_add(struct stream *s, const char *name);
/* Starts a stream over sc with one item per name. */
void syncc_stream_init(struct stream *s, struct syncc *sc, char **names, size_t n);
/* RESTART in the stream when bodies were staged since the last one. */
int syncc_stream_restart(struct stream *s, struct terr *err);
/* The end of a stream: RESTART when needed, every answer read. */
int syncc_stream_finish(struct stream *s, struct terr *err);
/* Marks an item failed with e (its first failure is kept). */
void syncc_item_fail(struct sitem *it, const struct terr *e);
/* Why an item did not finish, into *e. */
void syncc_item_err(const struct sitem *it, struct terr *e);
/* Frees a stream's items and state. */
void syncc_stream_free(struct stream *s);
/* One mailbox's update in parts, incremental from remote or whole when NULL. */
int syncc_stream_one(struct syncc *sc, const char *name, const struct dlist *remote, struct terr *err);
/* Mailboxes the replica lacks, in one stream; failures go to retry[]. */
int syncc_stream_new_mailboxes(struct syncc *sc, char **names, size_t n, char **retry, size_t *nretry,
			       struct terr *err);

/* syncc_cache.c */
/* The sync cache: after the replica accepted mb, its header is the replica's. */
void syncc_rcache_put(struct syncc *sc, const char *name, const struct dlist *mb);
/* A cached header as a MAILBOX kvlist of its keys (the caller frees it). */
struct dlist *syncc_rstate_hdr(const struct syncc_rstate *r);
/* 1 when a record's FLAGS hold \Expunged. */
int syncc_rec_is_expunged(const struct dlist *r);
/* The one-round-trip pass from the sync cache; the rest goes to slow[]. */
int syncc_fast_batch(struct syncc *sc, char **names, size_t n, char **slow, size_t *nslow, struct terr *err);

/* syncc_users.c */
/* Adds s to the list unless it is there already. */
void syncc_names_add(struct names *ns, const char *s);
/* Frees a struct names. */
void syncc_names_free(struct names *ns);
/* store_mailbox_list callback: each name into a struct names. */
int syncc_list_cb(const struct store_mailbox_info *mi, void *rock);
/* data_fn: each MAILBOX line's MBOXNAME into a struct names. */
void syncc_collect_names(void *rock, struct dlist *kv);
/* store_subs_list callback: each name into a struct names. */
int syncc_subs_cb(const char *name, void *rock);
/* APPLY UNUSER: the replica drops user (the sync cache is cleared). */
int syncc_send_unuser(struct syncc *sc, const char *user, struct terr *err);
/* APPLY SUB (on) or UNSUB of mbox for user on the replica. */
int syncc_send_sub(struct syncc *sc, const char *user, const char *mbox, int on, struct terr *err);
/* store_user_list callback: each userid into a struct names. */
int syncc_all_users_cb(const char *userid, void *rock);

/* syncc_failed.c */
/* Marks name as replicated (or found equal) by the current work. */
void syncc_note_synced(struct syncc *sc, const char *name);
/* Records a mailbox that failed (isolated: the rest goes on). */
void syncc_note_failed(struct syncc *sc, const char *name, const char *error);
/* Forgets the current work's results. */
void syncc_work_clear(struct syncc *sc);
/* Frees a failed list. */
void syncc_failed_free(struct failed *v, size_t n);
/* Reads the failed list of this client's directory. */
int syncc_failed_load(const struct syncc *sc, struct failed **v_r, size_t *n_r, struct terr *err);
/* Merges the current work's results into the failed list (record 0: failures not added). */
int syncc_failed_merge(struct syncc *sc, int record, struct terr *err);
/* Retries the failed mailboxes that are due. */
int syncc_failed_retry(struct syncc *sc, struct terr *err);
/* After a lost connection in careful mode: the mailbox under way is
 * charged a failed try (SYNCC_LOST_SESSION) and the list saved. */
void syncc_charge_lost_session(struct syncc *sc, const struct terr *cause);
/* Leaves out of names[] (compacting it, *n updated) the mailboxes in
 * quarantine: failed SYNCC_QUARANTINE_TRIES times with SYNCC_LOST_SESSION
 * and not due for a retry yet. */
void syncc_skip_quarantined(struct syncc *sc, char **names, size_t *n);

/* syncc_rolling.c */
/* A file of this client's directory: the channel's, or its shard's. */
void syncc_shard_path(const struct syncc *sc, const char *file, struct buf *out);

/* syncc_mailbox.c */
/* The numbers of a replica's MAILBOX header an update starts from (0
 * when remote is NULL: the replica has no such mailbox). */
struct rstate_nums {
	uint64_t modseq;
	uint32_t last_uid, crc, crc_annot;
};
void syncc_remote_nums(const struct dlist *remote, struct rstate_nums *n);

/* syncc_split.c */
/* A data_fn: the first MAILBOX data line, kept in *(struct dlist **)rock. */
void syncc_take_mailbox(void *rock, struct dlist *kv);
void syncc_items_add(struct syncc_items *it, const char *mailbox, const char *kind, const char *detail);
void syncc_items_free(struct syncc_items *it);
/* Split brain: merges the replica's records the master lacks into the
 * master (copied back under new UIDs, never overwritten), renumbers the
 * master's records the replica holds differently, and marks expunged on
 * the replica what the master now holds elsewhere. 0 when something was
 * reconciled (push again), 1 when there was nothing to do, -1 on error. */
int syncc_reconcile(struct syncc *sc, const char *name, struct terr *err);
/* Renames the replica's same-name mailbox with another uniqueid aside
 * (<name>-splitbrain-<its uniqueid's first 8 characters>). */
int syncc_rename_aside(struct syncc *sc, const char *name, const struct dlist *remote, struct terr *err);
/* A mailbox found only on the replica: logged and noted in the state. */
void syncc_note_replica_only(struct syncc *sc, const char *name);
/* Appends the channel's split-brain notes to a status report. */
void syncc_splitbrain_status(const struct conf *conf, const char *channel, struct buf *out);

#endif
