/* syncc-private.h: the sync client's state and wire helpers, shared by
 * syncc.c (replication, compare) and syncc_split.c (split-brain copy-back,
 * repair, reports). Not for use outside src/syncc/. */
#ifndef TANDEM_SYNCC_PRIVATE_H
#define TANDEM_SYNCC_PRIVATE_H

#include <openssl/ssl.h>
#include <stdint.h>

#include "lib/buf.h"
#include "lib/limits.h"
#include "proto/sync/dlist.h"
#include "syncc/syncc.h"

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
	struct conn *c;
	SSL_CTX *tls;
	struct buf in, out;
	struct syncc_stats stats;
	int cap_starttls, cap_compress, cap_sieve;
	int compare_bodies;
	/* the IMAP transport (reference §2.10): the replica's imapd speaks
	 * the protocol inside SYNCGET/SYNCAPPLY; tags S0, S1, ... */
	int imap;
	int cap_sasl_ir, cap_replication;
	unsigned long tagn;
	char tag[24];
	/* repair mode: full updates only, and a same-name mailbox with
	 * another uniqueid is renamed aside on the replica */
	int repair;
	/* pipelining: the tags of commands sent and not answered yet, in
	 * order ("" on csync) */
	char ptags[SYNCC_MAX_PIPELINE][24];
	size_t pfirst, pcount;
	unsigned long since_restart;	/* commands sent since the last RESTART */
	/* the sync cache: each mailbox's header as the replica holds it
	 * after our last APPLY MAILBOX it accepted; lets a rolling pass skip
	 * GET MAILBOXES and RESERVE and send one pipelined round trip */
	struct syncc_rstate {
		char *name;
		struct dlist *hdr;
	} *rcache;
	size_t nrcache;
	/* what compare, copy-back and repair found and did */
	struct syncc_items diffs, copied, renumbered, repaired, kept, renamed, remaining;
};

typedef void data_fn(void *rock, struct dlist *kv);

/* Sends sc->out (one command) and reads its response: data lines go to
 * cb; 0 on OK, -1 with err (TE_CHECKSUM, TE_CHANGED, TE_MOVED,
 * TE_NOTFOUND from the NO code, TE_IO on the connection). */
int syncc_roundtrip(struct syncc *sc, data_fn *cb, void *rock, struct terr *err);
/* The same in two halves, for pipelining: send queues sc->out (not
 * flushed) and remembers its tag; recv reads the response of the oldest
 * command not answered yet. */
void syncc_send(struct syncc *sc);
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

/* syncc_split.c */
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
