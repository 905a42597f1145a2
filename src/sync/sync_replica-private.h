/* sync_replica-private.h: shared by the files of the replica engine
 * (sync_replica.c: the table, staging, APPLY; sync_replica_get.c: GET;
 * sync_replica_sieve.c: Sieve). Not for use outside src/sync/. */
#ifndef TANDEM_SYNC_REPLICA_PRIVATE_H
#define TANDEM_SYNC_REPLICA_PRIVATE_H

#include "lib/buf.h"
#include "lib/err.h"
#include "lib/sha1.h"

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

/* A command of the batch (sync_replica_defer): an APPLY MAILBOX whose
 * bodies are placed (a, kv: its parsed form and command), or a reply
 * known already (line: APPLY MESSAGE, or an APPLY MAILBOX refused before
 * its transaction). */
struct rdefer {
	char *line;
	struct dlist *kv;
	struct store_apply *a;
	char key[16];
};

struct store_apply;
struct store_apply_batch;

struct sync_replica {
	struct sync_replica_opts o;
	struct rdefer *defer;	/* the batch, in the order of the commands */
	size_t ndefer, capdefer;
	size_t nbatch;		/* of those, in the store's batch */
	uint64_t batch_bytes;	/* their new bodies */
	struct store_apply_batch *batch;
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
	size_t npending;
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
