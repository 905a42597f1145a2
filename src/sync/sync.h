/* sync.h: the replication engine's shared pieces: a stored mailbox as the
 * protocol's MAILBOX kvlist, and a received MAILBOX kvlist as an apply
 * request for the store. Transport-free (no sockets). */
#ifndef TANDEM_SYNC_H
#define TANDEM_SYNC_H

#include "lib/err.h"
#include "proto/sync/dlist.h"
#include "store/store.h"

/* The MAILBOX kvlist of a stored mailbox, keys in Cyrus's order
 * (reference §4.5). with_records: 0 none (GET MAILBOXES), else every
 * record (expunged ones included) with modseq > since_modseq. */
int sync_mailbox_dlist(struct store *st, const char *name, int with_records, uint64_t since_modseq,
		       struct dlist **mb_r, struct terr *err);
/* The same of an open mailbox (its state as read at store_mailbox_open). */
int sync_mailbox_dlist_mb(struct store_mailbox *mb, int with_records, uint64_t since_modseq, struct dlist **mb_r,
			  struct terr *err);

/* A MAILBOX kvlist as a store_apply. The strings point into mb (keep it
 * alive); records are allocated: free with sync_apply_free. Missing or
 * ill-typed required keys: TE_INVALID. */
int sync_apply_from_dlist(const struct dlist *mb, struct store_apply *a, struct terr *err);
void sync_apply_free(struct store_apply *a);

/* Cyrus's completion line for an error: its token first, as Cyrus's
 * client parses it ("NO IMAP_SYNC_CHECKSUM Checksum Failure"). Errors of
 * the replica itself (I/O, disk full, a damaged database, quota, ...)
 * carry err's message after the token ("NO IMAP_IOERROR System I/O
 * error: <cause>", at most SYNC_NO_CAUSE_MAX characters, one line) so the
 * master's status shows the real cause. The text may live in a static
 * buffer: valid until the next call. */
#define SYNC_NO_CAUSE_MAX 400
const char *sync_no_text(const struct terr *err);

#endif
