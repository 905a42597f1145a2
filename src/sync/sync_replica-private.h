/* sync_replica-private.h: shared by the files of the replica engine
 * (sync_replica.c: the table, staging, APPLY; sync_replica_get.c: GET;
 * sync_replica_sieve.c: Sieve). Not for use outside src/sync/. */
#ifndef TANDEM_SYNC_REPLICA_PRIVATE_H
#define TANDEM_SYNC_REPLICA_PRIVATE_H

#include "lib/buf.h"
#include "lib/err.h"
#include "sync/sync_replica.h"

/* A message body staged for this engine until RESTART. */
struct rstaged {
	char guid[41];
	struct buf data;
};

struct sync_replica {
	struct sync_replica_opts o;
	struct store *st;
	struct rstaged *staged;
	size_t nstaged;
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
void replica_stage(struct sync_replica *r, const char *guid, const void *data, size_t len);

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
