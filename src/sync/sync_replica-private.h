/* sync_replica-private.h: shared by the files of the replica engine
 * (sync_replica.c: the table, staging, APPLY; sync_replica_get.c: GET;
 * sync_replica_sieve.c: Sieve). Not for use outside src/sync/. */
#ifndef TANDEM_SYNC_REPLICA_PRIVATE_H
#define TANDEM_SYNC_REPLICA_PRIVATE_H

#include "lib/buf.h"
#include "lib/err.h"
#include "lib/sha1.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include "sync/sync_replica.h"

/* A message body staged for this engine until RESTART: a file in the
 * partition's tmp/sync directory whose bytes hash to guid, or (taken) the
 * message file an APPLY MAILBOX moved it to, which is not ours to remove.
 * mem: its bytes too while they are small and not yet applied
 * (SYNC_BODY_MEM_MAX): the cache row is built from them. */
struct rstaged {
	char guid[41];
	char *path;
	uint64_t size;
	int taken;
	char *mem;
	size_t memlen;
};

/* The in-memory bytes of an apply's new bodies, looked up when it was
 * added to the batch (aligned with a->recs; NULL: read the file): the
 * flush thread builds the cache rows from these and never reads the
 * staged-body index, which the session thread changes meanwhile. */
struct rbodies {
	const struct store_apply *a;
	const void **data;
	size_t *len;
	size_t cur;		/* where the next lookup starts (records in order) */
};

/* A command of the batch (sync_replica_defer): an APPLY MAILBOX whose
 * bodies are placed (a, kv: its parsed form and command; bodies: its
 * in-memory bytes), one queued (kv only: it came while a flush was in
 * flight, and is checked and placed once that flush is done), or a
 * reply known already (line: APPLY MESSAGE, or an APPLY MAILBOX refused
 * before its transaction). */
struct rdefer {
	char *line;
	struct dlist *kv;
	struct store_apply *a;
	struct rbodies *bodies;
	int queued;
	char key[16];
	/* A GET or RESTART joined to the batch (sync_replica_join): a GET's
	 * data lines, run when it came (nothing before it in the batch
	 * touches its user) and handed to data_fn just before its line; a
	 * RESTART's unstaged bodies whose bytes the applies before it still
	 * hold for their cache rows (mems, mem_bytes), freed once its answer
	 * is handed out, after the batch's run. */
	struct dlist **data;
	size_t ndata;
	sync_data_fn *data_fn;
	void *data_rock;
	char **mems;
	size_t nmems;
	uint64_t mem_bytes;
};

/* A batch whose flush (syncfs, commits) runs on the flush thread while
 * the session thread reads, hashes and stages the next one (the csync
 * session: sync_replica_flush_start). What the two threads share, and
 * how:
 *   - the store (struct store, its user databases and change log) is the
 *     flush thread's alone while it runs: the session thread only creates
 *     staging files (store_stage_create: tmp/sync, its own counter) and
 *     queues APPLY MAILBOX without touching the store;
 *   - the batch (defer, batch) is moved here before the thread starts and
 *     read by the thread only; answers are made by the session thread
 *     after the join;
 *   - the bodies' bytes (rbodies) stay allocated until the join: only
 *     the session thread frees them, after it.
 * running: a flush was started and not yet finished (joined);
 * thread: it runs on a thread (0: it ran synchronously); done: set by the
 * thread as its last write (the join then does not wait), and efd made
 * readable, for a transport that waits for input or the flush at once. */
struct rflight {
	int running, thread;
	atomic_int done;
	int efd;		/* eventfd the thread writes when done (-1: none yet) */
	pthread_t th;
	struct rdefer *defer;
	size_t ndefer, cap;
	size_t nbatch;
	uint64_t bytes;
	struct store_apply_batch *batch;
	int *rcs;
	struct terr *errs;
};

struct store_apply;
struct store_apply_batch;

struct sync_replica {
	struct sync_replica_opts o;
	struct rdefer *defer;	/* the batch, in the order of the commands */
	size_t ndefer, capdefer;
	size_t nbatch;		/* of those, in the store's batch */
	uint64_t batch_bytes;	/* their new bodies */
	uint64_t batch_msg_bytes;	/* bodies its APPLY MESSAGE streamed (counted before
					 * their APPLY MAILBOX is placed: queued ones too) */
	struct store_apply_batch *batch;
	struct rflight fl;	/* the batch being flushed on the flush thread */
	size_t batch_max;	/* SYNC_APPLY_BATCH_MAX, or less (tests) */
	int flush_thread;	/* SYNC_APPLY_FLUSH_THREAD, or 1 (tests) */
	struct store *st;
	struct rstaged *staged;
	size_t nstaged, capstaged;
	size_t *hidx;		/* open addressing over staged: index + 1, 0 free */
	size_t hcap;
	uint64_t staged_bytes;	/* in tmp/sync, <= SYNC_MAX_STAGED_BYTES */
	uint64_t mem_bytes;	/* bodies held in memory (staged and pending), <= SYNC_BODY_MEM_TOTAL */
	/* The file literals of the command being read (sync_replica_file_*):
	 * checked files waiting for the command (APPLY MESSAGE stages them),
	 * the one arriving, and the first error (the command is refused). */
	struct rstaged *pending;
	size_t npending, cappending;
	uint64_t pending_bytes;
	struct {
		int fd;		/* -1: none open (or its bytes are skipped) */
		struct buf path;
		struct sha1_ctx sha;
		char guid[41];
		uint64_t size, got;
		int active;
		struct buf mem;	/* the bytes, when kept (keep) */
		int keep;
	} in;
	struct terr file_err;
	int sieve_mailbox;	/* APPLY CAPABILITIES enabled SIEVE-MAILBOX */
	unsigned long commands;
	sync_data_fn *data;	/* of the command running */
	void *data_rock;
	char reply[600];
};

/* A command's handler: 0 (answered "OK success"), or -1 with err (the
 * reply line is made from it in one place, sync_no_text). */
typedef int sync_cmd_fn(struct sync_replica *r, const struct dlist *kv, struct terr *err);

/* Sends one data line of the running command. */
void replica_data(struct sync_replica *r, const struct dlist *d);

/* Staged bodies. */
const struct rstaged *replica_staged(const struct sync_replica *r, const char *guid);
/* Stages bytes held in memory (the IMAP transport, the pipe) as a file. */
int replica_stage_bytes(struct sync_replica *r, const char *guid, const void *data, size_t len, struct terr *err);

/* 1 when MBOXTYPE says a #sieve mailbox that this connection must not
 * see (SIEVE-MAILBOX not enabled). */
int replica_sieve_hidden(const struct sync_replica *r, const struct dlist *mb);

/* sync_replica_get.c */
sync_cmd_fn get_mailboxes, get_fullmailbox, get_user, get_meta, get_uniqueids, get_quota, get_annotation,
	get_fetch;
/* sync_replica_sieve.c */
sync_cmd_fn get_fetch_sieve, apply_sieve, apply_unsieve, apply_activate_sieve, apply_unactivate_sieve;
/* GET META / GET USER: the legacy SIEVE lines (without SIEVE-MAILBOX). */
void replica_sieve_meta(struct sync_replica *r, const char *user);

#endif
