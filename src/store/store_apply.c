/* store_apply.c: a replica applying a master's mailbox state (Cyrus's
 * APPLY MAILBOX, reference §4.3.5), with the same checks and the same
 * idempotency: replaying an identical apply changes nothing.
 *
 * Order: (1) every new record's body is written as a message file, its
 * SHA-1 checked against its GUID, and the batch made durable with one
 * syncfs(); (2) one transaction on the
 * owner's database: create the mailbox when new, check SINCE_*, check the
 * master is not stale, dry-run every record (nothing written if one
 * fails), then rewrite/append the records keeping the master's UIDs and
 * modseqs, set the header, log (when this replica logs); (3) compare
 * the resulting CRCs with the master's, still inside the transaction,
 * then commit. A CRC mismatch of an incremental apply (SINCE_MODSEQ)
 * rolls everything back: the master's picture of the replica was wrong
 * (e.g. the replica changed on its own and its HIGHESTMODSEQ is no point
 * of the master's history, so records at or below it were not sent), and
 * keeping the header would move LAST_UID past records never written. A
 * full update's changes stay despite a mismatch, as in Cyrus.
 *
 * In a batch (store_apply_batch_*, a replica's pipelined APPLY MAILBOX),
 * step (1) of every apply runs as it is added, one syncfs covers them
 * all, then steps (2)-(3) run in order, consecutive applies of one owner
 * in one transaction (a savepoint each), committed once.
 */
#include "store/store-private.h"

#include "lib/log.h"
#include "lib/sha1.h"
#include "lib/xalloc.h"
#include "names/mboxname.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static unsigned long relaxed_user_rows;	/* for the tests */

unsigned long store_apply_relaxed_user_rows(void)
{
	return __atomic_load_n(&relaxed_user_rows, __ATOMIC_RELAXED);
}

/* The users.db row of userid (INSERT OR IGNORE), then its database.
 *
 * relax (a replica's batch, store_apply_batch_add): the row is committed
 * at synchronous=NORMAL, without the WAL fdatasync a FULL commit costs
 * (one per new user, serial, before its bodies), and *relaxed_r is set
 * when a row was added: the batch's syncfs of the config directory's
 * file system (batch_flush: folded into the bodies' one when it is the
 * same file system) makes it durable before any commit of the batch, so
 * before any answer. Every other users.db write stays FULL: the
 * connection is set back at once. The crash orders:
 *  - the row lost, the owner's store there: impossible for a store with
 *    anything committed in it (the row is durable before the batch's
 *    first commit); an empty store without its row is what the master's
 *    next apply of the user finds, and that apply adds the row again;
 *  - the row there, the store not: the next apply of the user makes the
 *    store (store_ustore), as for a user added by tandem user add;
 *  - both lost: nothing of the batch was answered OK, so the master sends
 *    its applies again, and an apply is idempotent.
 * GET USER reads the row (store_user_exists): one that joins the batch is
 * answered after the batch's run, so after that syncfs (and it joins only
 * when no apply of the batch is its user's); a user without its row
 * answers as unknown, and the master then sends it whole, which adds the
 * row again. */
static int user_ensure(struct store *st, const char *userid, int relax, int *relaxed_r, struct terr *err)
{
	if (store_users_open(st, err) < 0)
		return -1;
	if (relax && sqlite3_exec(st->usersdb, "PRAGMA synchronous=NORMAL;", NULL, NULL, NULL) != SQLITE_OK)
		relax = 0;	/* FULL, as outside a batch */
	sqlite3_stmt *s = store_stmt(&st->usersql,
		"INSERT OR IGNORE INTO users(userid, pwhash, created) VALUES(?, NULL, ?);", err);
	int rc = -1;
	if (s) {
		sqlite3_bind_text(s, 1, userid, -1, SQLITE_STATIC);
		sqlite3_bind_int64(s, 2, store_now());
		rc = sqlite3_step(s) == SQLITE_DONE ? 0 : store_sql_fail(st->usersdb, "add user", err);
		store_stmt_put(&st->usersql, s);
	}
	if (rc == 0 && relax && sqlite3_changes(st->usersdb) > 0) {
		*relaxed_r = 1;
		__atomic_add_fetch(&relaxed_user_rows, 1, __ATOMIC_RELAXED);
	}
	if (relax && sqlite3_exec(st->usersdb, "PRAGMA synchronous=FULL;", NULL, NULL, NULL) != SQLITE_OK) {
		/* no later write may inherit NORMAL: the connection goes */
		log_err("event=sync_restore_fail db=users.db for=apply error=\"%s\" action=closed",
			sqlite3_errmsg(st->usersdb));
		store_users_drop(st);
	}
	/* and its (maybe empty) database: seen state, subscriptions and
	 * Sieve scripts can come before any mailbox, as on Cyrus */
	struct ustore *u;
	if (rc == 0)
		rc = store_ustore(st, userid, 1, &u, err);
	return rc;
}

int store_user_ensure(struct store *st, const char *userid, struct terr *err)
{
	return user_ensure(st, userid, 0, NULL, err);
}

int store_owner_ensure(struct store *st, const char *mboxname, struct terr *err)
{
	struct buf owner = BUF_INIT;
	struct ustore *u;
	int rc = store_name_owner(mboxname, &owner, err);
	if (rc == 0 && *buf_cstr(&owner))
		rc = store_user_ensure(st, owner.ptr, err);
	else if (rc == 0)
		rc = store_ustore(st, "", 1, &u, err);	/* shared mailboxes' store */
	buf_free(&owner);
	return rc;
}

/* Is (crc, annot) "matching" (ours): zero on either side matches (§5.4). */
static int crc_match(uint32_t a, uint32_t b)
{
	return a == 0 || b == 0 || a == b;
}

struct rrec {
	int found;
	uint64_t modseq;
	int64_t last_updated;
	unsigned sysflags;
	char keywords[2048];
	int64_t internaldate;
	uint32_t size;
	char guid[41];
	int64_t savedate;
	uint64_t createdmodseq;
	uint64_t thrid;
};

static int load_rrec(struct ustore *u, int64_t mbox_id, uint32_t uid, struct rrec *r, struct terr *err)
{
	sqlite3_stmt *s = store_stmt(&u->sql,
		"SELECT modseq, last_updated, sysflags, keywords, internaldate, size, guid, savedate, createdmodseq,"
		" thrid FROM records WHERE mailbox_id = ? AND uid = ?;", err);
	if (!s)
		return -1;
	sqlite3_bind_int64(s, 1, mbox_id);
	sqlite3_bind_int64(s, 2, uid);
	memset(r, 0, sizeof *r);
	int step = sqlite3_step(s);
	if (step == SQLITE_ROW) {
		r->found = 1;
		r->modseq = (uint64_t)sqlite3_column_int64(s, 0);
		r->last_updated = sqlite3_column_int64(s, 1);
		r->sysflags = (unsigned)sqlite3_column_int64(s, 2);
		snprintf(r->keywords, sizeof r->keywords, "%s", (const char *)sqlite3_column_text(s, 3));
		r->internaldate = sqlite3_column_int64(s, 4);
		r->size = (uint32_t)sqlite3_column_int64(s, 5);
		snprintf(r->guid, sizeof r->guid, "%s", (const char *)sqlite3_column_text(s, 6));
		r->savedate = sqlite3_column_int64(s, 7);
		r->createdmodseq = (uint64_t)sqlite3_column_int64(s, 8);
		r->thrid = (uint64_t)sqlite3_column_int64(s, 9);
	}
	/* an error is not a missing record (it would be written again) */
	return store_stmt_done(&u->sql, s, step, "record", err);
}

static uint32_t crc_of(uint32_t uid, const struct rrec *r)
{
	return synccrc_record(uid, r->modseq, r->last_updated, r->sysflags, r->keywords, r->internaldate, r->guid);
}

static uint32_t annot_of(uint32_t uid, const struct rrec *r)
{
	if (r->sysflags & SYSFLAG_EXPUNGED)
		return 0;
	return synccrc_annot_virtual(uid, r->thrid, r->savedate, r->createdmodseq);
}

static void rrec_from_apply(struct rrec *r, const struct store_apply_record *a)
{
	r->found = 1;
	r->modseq = a->modseq;
	r->last_updated = a->last_updated;
	r->sysflags = a->sysflags;
	snprintf(r->keywords, sizeof r->keywords, "%s", a->keywords ? a->keywords : "");
	r->internaldate = a->internaldate;
	r->size = a->size;
	memcpy(r->guid, a->guid, sizeof r->guid);
	r->savedate = a->savedate;
	r->createdmodseq = a->createdmodseq;
	r->thrid = a->thrid;
}

/* Per record of an apply, what steps (1) and the dry run learnt. */
enum { REC_HAVE_BODY = 1, REC_FOUND = 2 };

/* Writes the message files new records need (step 1), not yet flushed
 * (*written_r: how many were placed; the caller's syncfs makes them
 * durable before any record names them); flags[i] gets REC_HAVE_BODY for
 * each record whose message file is known to be there now (the dry run
 * need not look again). */
static int write_bodies(struct store *st, struct ustore *u, const struct store_apply *a, unsigned char *flags,
			int *written_r, struct terr *err)
{
	struct buf path = BUF_INIT;
	int rc = 0, written = 0;
	int blobs_fd = -1, blobs_tried = 0;	/* blobs/, open: staged bodies placed by name in it */
	for (size_t i = 0; i < a->nrecs && rc == 0; i++) {
		const struct store_apply_record *r = &a->recs[i];
		if (r->sysflags & SYSFLAG_EXPUNGED)
			continue;
		const char *staged;
		int bf = a->body_file ? a->body_file(a->body_rock, r->guid, &staged) : -1;
		if (bf >= 0) {
			/* a staged file, checked against its GUID when it arrived:
			 * moved (or linked) into place; one already there is kept */
			int moved = 0;
			if (!blobs_tried++)
				blobs_fd = store_blobs_open(u);
			rc = store_blob_adopt_at(st, u, &blobs_fd, staged, r->guid, bf == 0 && a->body_taken != NULL,
						 &moved, err);
			if (rc == 0 && moved) {
				store_blob_path(u, r->guid, &path);
				a->body_taken(a->body_rock, r->guid, path.ptr);
			}
			flags[i] |= rc == 0 ? REC_HAVE_BODY : 0;
			written++;
			continue;
		}
		store_blob_path(u, r->guid, &path);
		struct stat sb;
		if (stat(path.ptr, &sb) == 0) {
			flags[i] |= REC_HAVE_BODY;
			continue;
		}
		const void *data;
		size_t len;
		if (!a->body || a->body(a->body_rock, r->guid, &data, &len) < 0) {
			/* fine if the record already exists on the replica: checked in the dry run */
			continue;
		}
		char got[41];
		sha1_hex(data, len, got);
		if (strcmp(got, r->guid) != 0) {
			rc = terr_set(err, TE_CORRUPT, "message body for %s hashes to %s", r->guid, got);
			break;
		}
		/* one syncfs for the whole batch instead of two fsyncs per file */
		rc = store_blob_write2(st, u, data, len, r->guid, 0, err);
		flags[i] |= rc == 0 ? REC_HAVE_BODY : 0;
		written++;
	}
	*written_r = written;
	if (blobs_fd >= 0)
		close(blobs_fd);
	buf_free(&path);
	return rc;
}

/* The cache row of a new live record, from the body's bytes when the
 * caller still holds them in memory, or else from the message file. */
static int cache_new_record(struct store *st, struct ustore *u, const struct store_apply *a, const char *guid,
			    struct terr *err)
{
	const void *data = NULL;
	size_t len = 0;
	if (a->body && a->body(a->body_rock, guid, &data, &len) < 0)
		data = NULL;	/* read from the message file */
	return store_cache_add(st, u, guid, data, len, err);
}

/* 1 when the mailbox may have annotations of UIDs above uid (rows of
 * records a new record would have to replace), 0 when not, -1 on error. */
static int annots_above(struct ustore *u, int64_t mbox_id, uint32_t uid, struct terr *err)
{
	sqlite3_stmt *s = store_stmt(&u->sql, "SELECT 1 FROM annotations WHERE mailbox_id = ? AND uid > ? LIMIT 1;",
				     err);
	if (!s)
		return -1;
	sqlite3_bind_int64(s, 1, mbox_id);
	sqlite3_bind_int64(s, 2, uid);
	int step = sqlite3_step(s), found = step == SQLITE_ROW;
	if (store_stmt_done(&u->sql, s, step, "annotations", err) < 0)
		return -1;
	return found;
}

static int create_row(struct utx *tx, const struct store_apply *a, int64_t *id_r, struct terr *err)
{
	sqlite3_stmt *s = store_stmt(&tx->u->sql,
		"INSERT INTO mailboxes(name, uniqueid, mboxtype, sync_crc_annot, highestmodseq, uidvalidity, partition,"
		" acl, options, createdmodseq, foldermodseq) VALUES(?, ?, ?, ?, 0, ?, ?, ?, ?, ?, ?) RETURNING id;", err);
	if (!s)
		return -1;
	sqlite3_bind_text(s, 1, a->name, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, a->uniqueid, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 3, a->mboxtype ? a->mboxtype : "", -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 4, SYNCCRC_ANNOT_START);
	sqlite3_bind_int64(s, 5, a->uidvalidity);
	sqlite3_bind_text(s, 6, tx->st->partition, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 7, a->acl ? a->acl : "", -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 8, a->options ? a->options : "", -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 9, (sqlite3_int64)a->createdmodseq);
	sqlite3_bind_int64(s, 10, (sqlite3_int64)(a->foldermodseq ? a->foldermodseq : a->highestmodseq));
	int rc = sqlite3_step(s) == SQLITE_ROW ? 0 : store_sql_fail(tx->u->db, "create mailbox", err);
	if (rc == 0)
		*id_r = sqlite3_column_int64(s, 0);
	store_stmt_put(&tx->u->sql, s);
	return rc;
}

static int delete_row(struct utx *tx, int64_t id, struct terr *err)
{
	sqlite3_stmt *s = store_stmt(&tx->u->sql, "DELETE FROM mailboxes WHERE id = ?;", err);
	if (!s)
		return -1;
	sqlite3_bind_int64(s, 1, id);
	int rc = sqlite3_step(s) == SQLITE_DONE ? 0 : store_sql_fail(tx->u->db, "delete mailbox", err);
	store_stmt_put(&tx->u->sql, s);
	return rc;
}

/* Replaces the real annotations of one UID (0: the mailbox) with those
 * of the apply; returns the CRC contribution removed XOR added (for a
 * live record; 0 for the mailbox). */
static int replace_annots(struct utx *tx, int64_t mbox_id, uint32_t uid, int old_live, int new_live,
			  const struct store_apply *a, uint64_t modseq, uint32_t *crc_delta, struct terr *err)
{
	struct ustore *u = tx->u;
	uint32_t delta = 0;
	sqlite3_stmt *s = store_stmt(&u->sql, "SELECT entry, userid, value FROM annotations WHERE mailbox_id = ?"
						   " AND uid = ?;", err);
	if (!s)
		return -1;
	sqlite3_bind_int64(s, 1, mbox_id);
	sqlite3_bind_int64(s, 2, uid);
	while (sqlite3_step(s) == SQLITE_ROW)
		if (uid && old_live)
			delta ^= synccrc_annot_entry(uid, (const char *)sqlite3_column_text(s, 0),
						     (const char *)sqlite3_column_text(s, 1), sqlite3_column_blob(s, 2),
						     (size_t)sqlite3_column_bytes(s, 2));
	store_stmt_put(&u->sql, s);
	s = store_stmt(&u->sql, "DELETE FROM annotations WHERE mailbox_id = ? AND uid = ?;", err);
	if (!s)
		return -1;
	sqlite3_bind_int64(s, 1, mbox_id);
	sqlite3_bind_int64(s, 2, uid);
	int rc = sqlite3_step(s) == SQLITE_DONE ? 0 : store_sql_fail(u->db, "annotations", err);
	store_stmt_put(&u->sql, s);
	for (size_t i = 0; rc == 0 && i < a->nannots; i++) {
		const struct store_apply_annot *an = &a->annots[i];
		if (an->uid != uid || an->len == 0)
			continue;
		s = store_stmt(&u->sql, "INSERT OR REPLACE INTO annotations VALUES(?, ?, ?, ?, ?, ?);", err);
		if (!s)
			return -1;
		sqlite3_bind_int64(s, 1, mbox_id);
		sqlite3_bind_int64(s, 2, uid);
		sqlite3_bind_text(s, 3, an->entry, -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 4, an->userid, -1, SQLITE_STATIC);
		sqlite3_bind_blob(s, 5, an->value, (int)an->len, SQLITE_STATIC);
		sqlite3_bind_int64(s, 6, (sqlite3_int64)modseq);
		rc = sqlite3_step(s) == SQLITE_DONE ? 0 : store_sql_fail(u->db, "annotations", err);
		store_stmt_put(&u->sql, s);
		if (uid && new_live)
			delta ^= synccrc_annot_entry(uid, an->entry, an->userid, an->value, an->len);
	}
	*crc_delta = delta;
	return rc;
}

static int write_record(struct ustore *u, int64_t mbox_id, uint32_t uid, const struct rrec *r, int insert,
			struct terr *err)
{
	sqlite3_stmt *s = store_stmt(&u->sql, insert ?
		"INSERT INTO records(modseq, last_updated, sysflags, keywords, internaldate, size, guid, savedate,"
		" createdmodseq, thrid, mailbox_id, uid) VALUES(?,?,?,?,?,?,?,?,?,?,?,?);" :
		"UPDATE records SET modseq = ?, last_updated = ?, sysflags = ?, keywords = ?, internaldate = ?, size = ?,"
		" guid = ?, savedate = ?, createdmodseq = ?, thrid = ? WHERE mailbox_id = ? AND uid = ?;", err);
	if (!s)
		return -1;
	sqlite3_bind_int64(s, 1, (sqlite3_int64)r->modseq);
	sqlite3_bind_int64(s, 2, r->last_updated);
	sqlite3_bind_int64(s, 3, r->sysflags);
	sqlite3_bind_text(s, 4, r->keywords, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 5, r->internaldate);
	sqlite3_bind_int64(s, 6, r->size);
	sqlite3_bind_text(s, 7, r->guid, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 8, r->savedate);
	sqlite3_bind_int64(s, 9, (sqlite3_int64)r->createdmodseq);
	sqlite3_bind_int64(s, 10, (sqlite3_int64)r->thrid);
	sqlite3_bind_int64(s, 11, mbox_id);
	sqlite3_bind_int64(s, 12, uid);
	int rc = sqlite3_step(s) == SQLITE_DONE ? 0 : store_sql_fail(u->db, "write record", err);
	store_stmt_put(&u->sql, s);
	return rc;
}

/* Step (3), inside the still open transaction: do the mailbox's CRCs
 * now match the master's? Recomputed from the records before saying no.
 * Returns 1 when they match, 0 (err set) when not. */
static int final_crc_check(struct store *st, const struct store_apply *a, const struct mbox_row *row,
			   struct terr *err)
{
	if (crc_match(a->sync_crc, row->sync_crc) && crc_match(a->sync_crc_annot, row->sync_crc_annot))
		return 1;
	uint32_t c = row->sync_crc, an = row->sync_crc_annot;
	store_mailbox_verify_crc(st, a->name, &c, &an, NULL);
	if (crc_match(a->sync_crc, c) && crc_match(a->sync_crc_annot, an))
		return 1;
	terr_set(err, TE_CHECKSUM, "%s: CRC %u/%u after applying, the master has %u/%u", a->name, c, an, a->sync_crc,
		 a->sync_crc_annot);
	return 0;
}

static int apply_records_in(struct store *st, struct utx *tx, struct ustore *u, const struct store_apply *a,
			    unsigned char *flags, struct buf *root_buf, uint32_t *crc_r, struct terr *err)
{
	char q[LOGQ_MAX];
	struct mbox_row row;
	struct terr e2;
	int exists = store_mbox_row(u, a->name, &row, &e2) == 0;
	if (!exists && a->has_since && a->since_modseq) {
		/* an incremental update of a mailbox that is not here: the part
		 * before it was refused (a client keeps several parts in flight) */
		terr_set(err, TE_CHANGED, "%s: an update since modseq %llu, and no such mailbox here", a->name,
			 (unsigned long long)a->since_modseq);
		return -1;
	}
	if (exists && strcmp(row.uniqueid, a->uniqueid) != 0) {
		if (!a->force && row.last_uid != 0) {
			terr_set(err, TE_MOVED, "mailbox %s exists with uniqueid %s, not %s", a->name, row.uniqueid,
				 a->uniqueid);
			return -1;
		}
		if (delete_row(tx, row.id, err) < 0)
			return -1;
		exists = 0;
	}
	if (!exists) {
		sqlite3_stmt *s = store_stmt(&u->sql, "SELECT name FROM mailboxes WHERE uniqueid = ?;", err);
		if (!s)
			return -1;
		sqlite3_bind_text(s, 1, a->uniqueid, -1, SQLITE_STATIC);
		int step = sqlite3_step(s), other = step == SQLITE_ROW;
		if (store_stmt_done(&u->sql, s, step, "mailbox uniqueid", err) < 0)
			return -1;
		if (other) {
			terr_set(err, TE_MOVED, "uniqueid %s belongs to another mailbox than %s", a->uniqueid, a->name);
			return -1;
		}
		memset(&row, 0, sizeof row);
		if (create_row(tx, a, &row.id, err) < 0)
			return -1;
		row.sync_crc_annot = SYNCCRC_ANNOT_START;
		if (store_quotaroot_for(u, a->name, root_buf, err) < 0)
			return -1;
		snprintf(row.quotaroot, sizeof row.quotaroot, "%s", buf_cstr(root_buf));
	} else {
		if (a->has_since && a->since_modseq &&
		    (a->since_modseq != row.highestmodseq || !crc_match(a->since_crc, row.sync_crc) ||
		     !crc_match(a->since_crc_annot, row.sync_crc_annot))) {
			terr_set(err, TE_CHANGED, "%s changed since the master's last sync (modseq %llu, master based on %llu)",
				 a->name, (unsigned long long)row.highestmodseq, (unsigned long long)a->since_modseq);
			return -1;
		}
		if (!a->force && (a->highestmodseq < row.highestmodseq || a->last_uid < row.last_uid)) {
			terr_set(err, TE_CHECKSUM, "%s: the master's state is older than the replica's (modseq %llu < %llu or"
				 " last_uid %u < %u)", a->name, (unsigned long long)a->highestmodseq,
				 (unsigned long long)row.highestmodseq, a->last_uid, row.last_uid);
			return -1;
		}
	}
	/* Dry run: nothing is written if any record conflicts. No record
	 * lies above the mailbox's LAST_UID (an invariant `tandem check`
	 * checks; the records' primary key refuses a second one): a record
	 * above it is new without a lookup (all of a new mailbox's, and the
	 * parts of an initial sync after the first). */
	uint32_t replica_last = row.last_uid;
	for (size_t i = 0; i < a->nrecs; i++) {
		const struct store_apply_record *m = &a->recs[i];
		struct rrec r;
		if (m->uid > replica_last)
			memset(&r, 0, sizeof r);
		else if (load_rrec(u, row.id, m->uid, &r, err) < 0)
			return -1;
		int mexp = (m->sysflags & SYSFLAG_EXPUNGED) != 0;
		flags[i] |= r.found ? REC_FOUND : 0;
		if (r.found) {
			int rexp = (r.sysflags & SYSFLAG_EXPUNGED) != 0;
			if (mexp && rexp)
				continue;
			if (strcmp(r.guid, m->guid) != 0) {
				terr_set(err, TE_CHECKSUM, "%s uid %u: GUID %s on the replica, %s on the master", a->name, m->uid,
					 r.guid, m->guid);
				return -1;
			}
			if (!a->force && r.modseq > m->modseq) {
				terr_set(err, TE_CHECKSUM, "%s uid %u: replica's record is newer", a->name, m->uid);
				return -1;
			}
			if (rexp && !mexp) {
				terr_set(err, TE_CHECKSUM, "%s uid %u: expunged on the replica only", a->name, m->uid);
				return -1;
			}
		} else if (m->uid <= replica_last) {
			if (!mexp) {
				terr_set(err, TE_CHECKSUM, "%s uid %u: missing on the replica below its last UID", a->name, m->uid);
				return -1;
			}
		} else if (!mexp && !(flags[i] & REC_HAVE_BODY)) {
			struct buf p = BUF_INIT;
			store_blob_path(u, m->guid, &p);
			struct stat sb;
			int have = stat(p.ptr, &sb) == 0;
			buf_free(&p);
			if (!have) {
				terr_set(err, TE_NOTFOUND, "%s uid %u: the body of %s was not sent", a->name, m->uid, m->guid);
				return -1;
			}
		}
	}
	/* Real pass. A record the dry run did not find is new (nothing
	 * between wrote it: the transaction is open); a new record has
	 * annotations to replace only when the apply carries some or rows
	 * above the replica's last UID exist (asked once, not per record). */
	int64_t bytes = 0, msgs = 0;
	int appended = 0;
	int old_annots = a->nannots ? 1 : exists ? annots_above(u, row.id, replica_last, err) : 0;
	if (old_annots < 0)
		return -1;
	for (size_t i = 0; i < a->nrecs; i++) {
		const struct store_apply_record *m = &a->recs[i];
		struct rrec r, n;
		if (!(flags[i] & REC_FOUND))
			memset(&r, 0, sizeof r);
		else if (load_rrec(u, row.id, m->uid, &r, err) < 0)
			return -1;
		int mexp = (m->sysflags & SYSFLAG_EXPUNGED) != 0;
		if (r.found && mexp && (r.sysflags & SYSFLAG_EXPUNGED))
			continue;
		if (!r.found && m->uid <= replica_last)
			continue;	/* expunged on the master and unknown here */
		rrec_from_apply(&n, m);
		if (r.found) {
			row.sync_crc ^= crc_of(m->uid, &r) ^ crc_of(m->uid, &n);
			row.sync_crc_annot ^= annot_of(m->uid, &r) ^ annot_of(m->uid, &n);
			if (!(r.sysflags & SYSFLAG_EXPUNGED) && mexp) {
				bytes -= r.size;
				msgs--;
			}
		} else {
			row.sync_crc ^= crc_of(m->uid, &n);
			row.sync_crc_annot ^= annot_of(m->uid, &n);
			if (!mexp) {
				bytes += n.size;
				msgs++;
				appended = 1;
			}
		}
		if (write_record(u, row.id, m->uid, &n, !r.found, err) < 0)
			return -1;
		if (!r.found && !mexp && cache_new_record(st, u, a, m->guid, err) < 0)
			return -1;
		uint32_t adelta = 0;
		int old_live = r.found && !(r.sysflags & SYSFLAG_EXPUNGED);
		if ((r.found || old_annots) &&
		    replace_annots(tx, row.id, m->uid, old_live, !mexp, a, m->modseq, &adelta, err) < 0)
			return -1;
		row.sync_crc_annot ^= adelta;
	}
	if (a->has_mbox_annots) {
		uint32_t unused;
		if (replace_annots(tx, row.id, 0, 0, 0, a, a->foldermodseq, &unused, err) < 0)
			return -1;
	}
	if (store_quota_charge(tx, row.quotaroot, bytes, msgs, 0, err) < 0)
		return -1;
	sqlite3_stmt *s = store_stmt(&u->sql,
		"UPDATE mailboxes SET last_uid = ?, highestmodseq = ?, recentuid = ?, recenttime = ?, last_appenddate = ?,"
		" pop3_last_login = ?, pop3_show_after = ?, uidvalidity = max(uidvalidity, ?), acl = ?, options = ?,"
		" createdmodseq = ?, foldermodseq = ?, xconvmodseq = ?, raclmodseq = ?, sync_crc = ?, sync_crc_annot = ?,"
		" exists_count = exists_count + ?, mboxtype = ?, quotaroot = ? WHERE id = ?;", err);
	if (!s)
		return -1;
	sqlite3_bind_int64(s, 1, a->last_uid > row.last_uid ? a->last_uid : row.last_uid);
	sqlite3_bind_int64(s, 2, (sqlite3_int64)a->highestmodseq);
	sqlite3_bind_int64(s, 3, a->recentuid);
	sqlite3_bind_int64(s, 4, a->recenttime);
	sqlite3_bind_int64(s, 5, a->last_appenddate);
	sqlite3_bind_int64(s, 6, a->pop3_last_login);
	sqlite3_bind_int64(s, 7, a->pop3_show_after);
	sqlite3_bind_int64(s, 8, a->uidvalidity);
	sqlite3_bind_text(s, 9, a->acl ? a->acl : "", -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 10, a->options ? a->options : "", -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 11, (sqlite3_int64)a->createdmodseq);
	sqlite3_bind_int64(s, 12, (sqlite3_int64)(a->foldermodseq ? a->foldermodseq : a->highestmodseq));
	sqlite3_bind_int64(s, 13, (sqlite3_int64)a->xconvmodseq);
	sqlite3_bind_int64(s, 14, (sqlite3_int64)a->raclmodseq);
	sqlite3_bind_int64(s, 15, row.sync_crc);
	sqlite3_bind_int64(s, 16, row.sync_crc_annot);
	sqlite3_bind_int64(s, 17, msgs);
	sqlite3_bind_text(s, 18, a->mboxtype ? a->mboxtype : "", -1, SQLITE_STATIC);
	/* a new mailbox's root was found above (the replica's own quota roots
	 * decide, as they do for its charges) */
	sqlite3_bind_text(s, 19, row.quotaroot, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 20, row.id);
	int sr = sqlite3_step(s);
	store_stmt_put(&u->sql, s);
	if (sr != SQLITE_DONE) {
		store_sql_fail(u->db, "update mailbox", err);
		return -1;
	}
	if (utx_modseq_atleast(tx, a->highestmodseq, err) < 0)
		return -1;
	int crc_ok = final_crc_check(st, a, &row, err);
	if (!crc_ok && a->has_since && a->since_modseq) {
		/* an incremental apply is all or nothing: the master's picture
		 * of this mailbox was wrong, it follows with a full update */
		log_notice("event=apply_mailbox_rolled_back mailbox=%s records=%zu reason=crc", logq(q, a->name),
			   a->nrecs);
		return -1;
	}
	if ((appended && utx_log(tx, "APPEND", a->name, NULL, err) < 0) || utx_log(tx, "MAILBOX", a->name, NULL, err) < 0)
		return -1;
	*crc_r = row.sync_crc;
	return crc_ok ? 0 : 1;
}

/* Steps (2) and (3) of an apply inside the owner's open transaction tx
 * (its bodies flushed): 0 when applied, 1 when applied but the CRCs of a
 * full update do not match (err set; the changes stay, as in Cyrus), -1
 * (err set) when its changes must be rolled back. */
static int apply_records(struct store *st, struct utx *tx, const struct store_apply *a, unsigned char *flags,
			 uint32_t *crc_r, struct terr *err)
{
	struct buf root = BUF_INIT;	/* the quota root of a new mailbox */
	int rc = apply_records_in(st, tx, tx->u, a, flags, &root, crc_r, err);
	buf_free(&root);
	return rc;
}

/* ---- applies in batches ------------------------------------------------------------- */

/* One apply of a batch: step (1) done by store_apply_batch_add. */
struct bapply {
	const struct store_apply *a;
	char *owner;
	char *dir;		/* the owner's directory (its file system is flushed) */
	unsigned char *flags;
	int written;		/* bodies placed: the flush must cover them */
	int rc;			/* of run: 0, -1 */
	int keep;		/* run: applied, records kept (rc -1: a full update's CRC mismatch) */
	int relaxed;		/* run: committed at synchronous=NORMAL, durable at the closing syncfs */
	int fresh_log;		/* run: its owner's first commit, at OFF (the log new) */
	uint32_t crc;
	struct terr err;
};

struct store_apply_batch {
	struct store *st;
	struct bapply *v;
	size_t n, cap;
	char *ensured;		/* the owner last made sure of (users.db row and
				 * database): the next apply of the same owner in
				 * this batch skips it (a users.db write transaction
				 * each; nothing in a batch removes a user) */
	int plain;		/* store_apply_mailbox: a batch of one, every sync
				 * where it was (users.db FULL, owner_make's own) */
	unsigned long owners_made;	/* new owners' directories whose
					 * directory fsyncs batch_flush makes */
	unsigned long users_relaxed;	/* users.db rows committed at NORMAL:
					 * batch_flush syncs the config directory */
};

struct store_apply_batch *store_apply_batch_new(struct store *st)
{
	struct store_apply_batch *b = xcalloc(1, sizeof *b);
	b->st = st;
	return b;
}

static void batch_clear(struct store_apply_batch *b)
{
	free(b->ensured);
	b->ensured = NULL;
	b->owners_made = 0;
	b->users_relaxed = 0;
	for (size_t i = 0; i < b->n; i++) {
		free(b->v[i].owner);
		free(b->v[i].dir);
		free(b->v[i].flags);
	}
	b->n = 0;
}

void store_apply_batch_free(struct store_apply_batch **bp)
{
	struct store_apply_batch *b = *bp;
	if (!b)
		return;
	batch_clear(b);
	free(b->v);
	free(b);
	*bp = NULL;
}

size_t store_apply_batch_count(const struct store_apply_batch *b)
{
	return b->n;
}

int store_apply_batch_add(struct store_apply_batch *b, const struct store_apply *a, struct terr *err)
{
	struct store *st = b->st;
	struct buf owner = BUF_INIT;
	struct ustore *u;
	unsigned char *flags = NULL;
	int written = 0;
	if (!a->uniqueid || !a->name || !*a->uniqueid) {
		terr_set(err, TE_INVALID, "UNIQUEID and MBOXNAME are required");
		goto fail;
	}
	if (store_name_owner(a->name, &owner, err) < 0)
		goto fail;
	/* a new owner's users.db row and directory: their syncs are left to
	 * batch_flush's syncfs (user_ensure, owner_make), counted here even
	 * when this apply fails below (the directory stays: the flush must
	 * cover it for a later apply of the batch) */
	int relax = !b->plain, ur = 0, urc = 0;
	unsigned long made0 = st->owners_deferred;
	st->owner_sync_defer = relax;
	if (*buf_cstr(&owner) && !(b->ensured && !strcmp(b->ensured, owner.ptr))) {
		urc = userid_validate(owner.ptr, 1, err) < 0 || user_ensure(st, owner.ptr, relax, &ur, err) < 0 ? -1 : 0;
		if (urc == 0) {
			free(b->ensured);
			b->ensured = xstrdup(owner.ptr);
		}
	}
	if (urc == 0)
		urc = store_ustore(st, buf_cstr(&owner), 1, &u, err);
	st->owner_sync_defer = 0;
	b->users_relaxed += ur;
	b->owners_made += st->owners_deferred - made0;
	if (urc < 0)
		goto fail;
	for (size_t i = 1; i < a->nrecs; i++)
		if (a->recs[i].uid <= a->recs[i - 1].uid) {
			terr_set(err, TE_INVALID, "records not in ascending UID order");
			goto fail;
		}
	flags = xcalloc(a->nrecs ? a->nrecs : 1, 1);
	if (write_bodies(st, u, a, flags, &written, err) < 0)
		goto fail;
	if (b->n == b->cap) {
		b->cap = b->cap ? 2 * b->cap : 16;
		b->v = xrealloc(b->v, b->cap * sizeof *b->v);
	}
	struct bapply *e = &b->v[b->n++];
	memset(e, 0, sizeof *e);
	e->a = a;
	e->owner = xstrdup(buf_cstr(&owner));
	e->dir = xstrdup(u->dir);
	e->flags = flags;
	e->written = written;
	buf_free(&owner);
	return 0;
fail:
	free(flags);
	buf_free(&owner);
	return -1;
}

static unsigned long batch_syncfs;	/* for the tests: the batches' syncfs calls */

unsigned long store_apply_batch_syncfs(void)
{
	return batch_syncfs;
}

/* The syncfs of dir's file system unless devs already holds it (then 0);
 * 1 when synced; -1 (err set) when dir is not there, -2 (err set, *dev_r
 * its device) when the sync failed. */
static int flush_fs(const char *dir, dev_t *devs, size_t *ndev, size_t maxdev, dev_t *dev_r, struct terr *err)
{
	struct stat sb;
	if (stat(dir, &sb) < 0)
		return terr_errno(err, errno, "stat %s", dir);
	*dev_r = sb.st_dev;
	for (size_t k = 0; k < *ndev; k++)
		if (devs[k] == sb.st_dev)
			return 0;
	batch_syncfs++;
	if (store_blob_sync_dir(dir, err) < 0)
		return -2;
	if (*ndev < maxdev)
		devs[(*ndev)++] = sb.st_dev;
	return 1;
}

/* Fails the applies still live whose directory is on dev (all: every one). */
static void fail_on_dev(struct store_apply_batch *b, dev_t dev, int all, const struct terr *err)
{
	for (size_t j = 0; j < b->n; j++) {
		struct stat sj;
		struct bapply *f = &b->v[j];
		if (!f->rc && (all || (stat(f->dir, &sj) == 0 && sj.st_dev == dev))) {
			f->rc = -1;
			f->err = *err;
		}
	}
}

/* Makes durable, before any commit of the batch, everything its adds
 * left to it: the bodies placed, the new owners' directories (owner_make:
 * made under <partition>/tmp and renamed into the partition, so on that
 * file system) and the users.db rows committed at NORMAL (the config
 * directory's file system): one syncfs per file system, normally one in
 * all. A failure fails the applies on that file system (all of them: a
 * new owner's directory may be among what is not known durable; for the
 * config directory, every apply: a new user's row may be). */
static void batch_flush(struct store_apply_batch *b)
{
	dev_t devs[8], dev;
	size_t ndev = 0, maxdev = sizeof devs / sizeof devs[0];
	for (size_t i = 0; i < b->n; i++) {
		struct bapply *e = &b->v[i];
		if (!e->written || e->rc)
			continue;
		struct terr err = { 0 };
		int r = flush_fs(e->dir, devs, &ndev, maxdev, &dev, &err);
		if (r == -1) {	/* its directory not there: this apply */
			e->rc = -1;
			e->err = err;
		} else if (r == -2) {
			fail_on_dev(b, dev, 0, &err);
		}
	}
	if (b->owners_made) {
		struct buf tmp = BUF_INIT;
		struct terr err = { 0 };
		buf_printf(&tmp, "%s/tmp", b->st->partition_path);
		int r = flush_fs(tmp.ptr, devs, &ndev, maxdev, &dev, &err);
		if (r < 0)
			fail_on_dev(b, dev, r == -1, &err);
		buf_free(&tmp);
	}
	if (b->users_relaxed) {
		struct terr err = { 0 };
		if (flush_fs(b->st->configdir, devs, &ndev, maxdev, &dev, &err) < 0)
			fail_on_dev(b, 0, 1, &err);
	}
}

/* The applies v[0..n) of one owner in one transaction: each inside its
 * own savepoint (a refused one is rolled back alone), one COMMIT (one
 * change-log append and one WAL flush) for all. relax: the COMMIT runs at
 * synchronous=NORMAL (no WAL flush: the caller's closing syncfs makes it
 * durable before any answer), and the applies are marked relaxed. */
static void batch_run_owner(struct store *st, struct bapply *v, size_t n, int relax)
{
	struct ustore *u = NULL;
	struct utx tx = { 0 };
	struct terr err = { 0 };
	size_t live = 0;
	for (size_t i = 0; i < n; i++)
		live += v[i].rc == 0;
	if (!live)
		return;
	if (store_ustore(st, v[0].owner, 1, &u, &err) < 0)
		goto fail_all;
	/* a new owner's first commit: no sync at all (its log's header and
	 * directory too are made durable by the closing syncfs) */
	int fresh = relax && store_ustore_wal_fresh(u);
	if (relax && store_ustore_set_sync(u, fresh ? -1 : 0) < 0)
		relax = fresh = 0;	/* FULL, as a batch of one owner commits */
	if (utx_begin(&tx, st, u, &err) < 0)
		goto fail_all;
	for (size_t i = 0; i < n; i++) {
		struct bapply *e = &v[i];
		if (e->rc < 0)
			continue;
		size_t loglen = tx.log.len;
		if (live > 1 && store_sql_exec(u->db, "SAVEPOINT apply;", &err) < 0)
			goto fail_all;
		int r = apply_records(st, &tx, e->a, e->flags, &e->crc, &e->err);
		if (r < 0 && live > 1) {
			/* this apply's changes only; an error that ended the
			 * whole transaction (SQLite rolls back on some I/O
			 * errors) fails the applies before it too */
			struct terr e2;
			buf_truncate(&tx.log, loglen);
			if (sqlite3_get_autocommit(u->db) ||
			    store_sql_exec(u->db, "ROLLBACK TO apply; RELEASE apply;", &e2) < 0) {
				err = e->err;
				e->rc = -1;
				goto fail_all;
			}
		} else if (live > 1 && store_sql_exec(u->db, "RELEASE apply;", &e->err) < 0) {
			r = -1;
			err = e->err;
			e->rc = -1;
			goto fail_all;
		}
		e->rc = r == 0 ? 0 : -1;
		e->keep = r >= 0;
		if (r < 0 && live == 1) {
			utx_rollback(&tx);
			if (relax)
				store_ustore_restore_sync(st, u, "apply");
			return;
		}
	}
	if (utx_commit(&tx, &err) < 0)
		goto fail_all;
	if (relax)
		store_ustore_restore_sync(st, u, "apply");
	char q[LOGQ_MAX];
	for (size_t i = 0; i < n; i++) {
		v[i].relaxed = relax && v[i].keep;
		v[i].fresh_log = fresh && v[i].keep;
		if (v[i].keep)
			log_info("event=apply_mailbox mailbox=%s records=%zu modseq=%llu crc=%u", logq(q, v[i].a->name),
				 v[i].a->nrecs, (unsigned long long)v[i].a->highestmodseq, v[i].crc);
	}
	return;
fail_all:
	utx_rollback(&tx);
	if (relax && u)
		store_ustore_restore_sync(st, u, "apply");
	for (size_t i = 0; i < n; i++)
		if (v[i].rc == 0 || v[i].keep) {
			v[i].rc = -1;
			v[i].keep = 0;
			v[i].err = err;
		}
}

static unsigned long relaxed_batches;	/* for the tests */

unsigned long store_apply_relaxed_batches(void)
{
	return relaxed_batches;
}

/* The owners' groups of consecutive applies: their count (those with an
 * apply still live). */
static size_t batch_live_owners(const struct store_apply_batch *b)
{
	size_t groups = 0;
	for (size_t i = 0; i < b->n;) {
		size_t j = i, live = 0;
		for (; j < b->n && !strcmp(b->v[j].owner, b->v[i].owner); j++)
			live += b->v[j].rc == 0;
		groups += live > 0;
		i = j;
	}
	return groups;
}

/* For a batch of one live owner: whether its log has no header yet (its
 * first commit: store_ustore_wal_fresh). */
static int batch_fresh_owner(struct store_apply_batch *b)
{
	for (size_t i = 0; i < b->n; i++) {
		if (b->v[i].rc)
			continue;
		struct ustore *u;
		struct terr err = { 0 };
		return store_ustore(b->st, b->v[i].owner, 0, &u, &err) == 0 && store_ustore_wal_fresh(u);
	}
	return 0;
}

/* After relaxed commits: one syncfs per file system holding a relaxed
 * owner's database makes their WAL frames (and a new log's directory
 * entry) durable. A failure fails the applies whose commit it covered:
 * their changes are in the database but not known to be on disk; the
 * master sends them again (an apply is idempotent). */
static void batch_sync_commits(struct store_apply_batch *b)
{
	for (size_t i = 0; i < b->n; i++) {
		struct bapply *e = &b->v[i];
		if (!e->relaxed)
			continue;
		struct terr err = { 0 };
		struct stat sb = { 0 };
		/* fault injection for the tests: the closing syncfs fails as
		 * on a failing disk (TANDEM_TEST_FAIL_COMMIT_SYNC=1) */
		const char *fail = getenv("TANDEM_TEST_FAIL_COMMIT_SYNC");
		batch_syncfs++;
		int rc = stat(e->dir, &sb) < 0 ? terr_errno(&err, errno, "stat %s", e->dir)
			 : fail && *fail	? terr_errno(&err, EIO, "syncfs %s", e->dir)
						: store_blob_sync_dir(e->dir, &err);
		/* every later relaxed apply on the same file system is
		 * covered by this sync (or fails with it) */
		for (size_t j = i; j < b->n; j++) {
			struct stat sj;
			struct bapply *f = &b->v[j];
			if (!f->relaxed || (j > i && (stat(f->dir, &sj) < 0 || sj.st_dev != sb.st_dev)))
				continue;
			f->relaxed = 0;
			if (rc < 0) {
				f->rc = -1;
				f->keep = 0;
				f->err = err;
			} else if (f->fresh_log) {
				/* its new log's directory entry is durable now: the
				 * connection's next FULL commit need not sync it */
				struct ustore *u;
				struct terr e2 = { 0 };
				if (store_ustore(b->st, f->owner, 0, &u, &e2) == 0)
					store_ustore_wal_durable(u);
			}
		}
		if (rc < 0)
			log_err("event=apply_sync_fail dir=%s error=\"%s\"", e->dir, err.msg);
	}
}

void store_apply_batch_run(struct store_apply_batch *b, int *rcs, struct terr *errs)
{
	/* fault injection for the tests (docs/testing.md): the process dies
	 * before the batch's first syncfs, its new owners' directories and
	 * users.db rows placed but not yet known durable, as a crash would */
	const char *crash_flush = getenv("TANDEM_TEST_CRASH_BATCH_FLUSH");
	for (size_t k = 0; crash_flush && *crash_flush && k < b->n; k++)
		if (!strcmp(crash_flush, b->v[k].a->name))
			raise(SIGKILL);
	batch_flush(b);
	/* Two owners or more: each commits without its own WAL flush and one
	 * syncfs covers them all afterwards (one sync where there were one
	 * fdatasync per owner, serial); one owner commits FULL, unless its
	 * log is fresh (a new user's first apply on a rolling replica: FULL
	 * would sync the log's header, the commit and the log's directory,
	 * three serial syncs where the closing syncfs is one). */
	int relax = batch_live_owners(b) >= 2 || (!b->plain && batch_fresh_owner(b));
	for (size_t i = 0; i < b->n;) {
		size_t j = i + 1;
		while (j < b->n && !strcmp(b->v[j].owner, b->v[i].owner))
			j++;
		/* fault injection for the tests (docs/testing.md): the process
		 * dies inside a shared flush, after the batch's syncfs and the
		 * commits of the owners before this mailbox's, as a crash would */
		const char *crash = getenv("TANDEM_TEST_CRASH_BATCH");
		for (size_t k = i; crash && *crash && b->n > 1 && k < j; k++)
			if (!strcmp(crash, b->v[k].a->name))
				raise(SIGKILL);
		batch_run_owner(b->st, &b->v[i], j - i, relax);
		i = j;
	}
	if (relax) {
		batch_sync_commits(b);
		relaxed_batches++;
	}
	for (size_t i = 0; i < b->n; i++) {
		rcs[i] = b->v[i].rc;
		errs[i] = b->v[i].err;
	}
	batch_clear(b);
}

int store_apply_mailbox(struct store *st, const struct store_apply *a, struct terr *err)
{
	struct store_apply_batch b = { .st = st, .plain = 1 };
	int rc = store_apply_batch_add(&b, a, err);
	if (rc == 0) {
		store_apply_batch_run(&b, &rc, err);
		free(b.v);
	}
	free(b.ensured);
	return rc;
}

int store_apply_expunge(struct store *st, const char *name, const char *uniqueid, const uint32_t *uids,
			size_t n, struct terr *err)
{
	struct ustore *u;
	if (store_ustore_for_mailbox(st, name, 0, &u, err) < 0)
		return -1;
	struct utx tx;
	if (utx_begin(&tx, st, u, err) < 0)
		return -1;
	int rc = -1;
	struct mbox_row row;
	if (store_mbox_row(u, name, &row, err) < 0)
		goto out;
	if (strcmp(row.uniqueid, uniqueid) != 0) {
		terr_set(err, TE_MOVED, "%s has uniqueid %s, not %s", name, row.uniqueid, uniqueid);
		goto out;
	}
	int64_t bytes = 0, msgs = 0;
	for (size_t i = 0; i < n; i++) {
		struct rrec r;
		if (load_rrec(u, row.id, uids[i], &r, err) < 0)
			goto out;
		if (!r.found || (r.sysflags & SYSFLAG_EXPUNGED))
			continue;
		/* expunged without a new modseq, so the next incremental sync matches */
		struct rrec e = r;
		e.sysflags |= SYSFLAG_EXPUNGED;
		uint32_t adelta;
		struct store_apply none = { 0 };
		row.sync_crc ^= crc_of(uids[i], &r);
		row.sync_crc_annot ^= annot_of(uids[i], &r);
		if (write_record(u, row.id, uids[i], &e, 0, err) < 0 ||
		    replace_annots(&tx, row.id, uids[i], 1, 0, &none, r.modseq, &adelta, err) < 0)
			goto out;
		row.sync_crc_annot ^= adelta;
		bytes -= r.size;
		msgs--;
	}
	sqlite3_stmt *s = store_stmt(&u->sql, "UPDATE mailboxes SET sync_crc = ?, sync_crc_annot = ?,"
						   " exists_count = exists_count + ? WHERE id = ?;", err);
	if (!s)
		goto out;
	sqlite3_bind_int64(s, 1, row.sync_crc);
	sqlite3_bind_int64(s, 2, row.sync_crc_annot);
	sqlite3_bind_int64(s, 3, msgs);
	sqlite3_bind_int64(s, 4, row.id);
	int sr = sqlite3_step(s);
	store_stmt_put(&u->sql, s);
	if (sr != SQLITE_DONE) {
		store_sql_fail(u->db, "expunge", err);
		goto out;
	}
	if (store_quota_charge(&tx, row.quotaroot, bytes, msgs, 0, err) < 0 ||
	    utx_log(&tx, "MAILBOX", name, NULL, err) < 0 || utx_commit(&tx, err) < 0)
		goto out;
	rc = 0;
out:
	utx_rollback(&tx);
	return rc;
}
