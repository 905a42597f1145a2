/* store_state.c: per-user state beside the mailboxes: subscriptions,
 * seen state on other users' mailboxes, annotations, quota roots and
 * Sieve scripts; and store_check_user. Each change is one transaction
 * with its change-log line, like every other store change. */
#include "store/store-private.h"

#include "lib/sha1.h"

#include "lib/fsutil.h"
#include "lib/limits.h"
#include "lib/log.h"
#include "lib/xalloc.h"
#include "names/mboxname.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

/* Runs one statement inside a transaction of `owner`'s database with one
 * change-log line (kw a1 a2). bind() binds the statement's parameters. */
typedef void bind_fn(sqlite3_stmt *s, const void *rock);

static int owner_tx_exec(struct store *st, const char *owner, const char *sql, bind_fn *bind,
			 const void *rock, const char *kw, const char *a1, const char *a2,
			 int *changes_r, struct terr *err)
{
	struct ustore *u;
	if (store_ustore(st, owner, 0, &u, err) < 0)
		return -1;
	struct utx tx;
	if (utx_begin(&tx, st, u, err) < 0)
		return -1;
	int rc = -1;
	sqlite3_stmt *s = store_stmt(&u->sql, sql, err);
	if (!s)
		goto out;
	bind(s, rock);
	int sr = sqlite3_step(s);
	store_stmt_put(&u->sql, s);
	if (sr != SQLITE_DONE && sr != SQLITE_ROW) {
		store_sql_fail(u->db, "update", err);
		goto out;
	}
	int changes = sqlite3_changes(u->db);
	if (changes_r)
		*changes_r = changes;
	if ((changes || !changes_r) && utx_log(&tx, kw, a1, a2, err) < 0)
		goto out;
	if (utx_commit(&tx, err) < 0)
		goto out;
	rc = 0;
out:
	utx_rollback(&tx);
	return rc;
}

/* ---- subscriptions ------------------------------------------------------ */

static void bind_name(sqlite3_stmt *s, const void *rock)
{
	sqlite3_bind_text(s, 1, rock, -1, SQLITE_STATIC);
}

int store_subscribe(struct store *st, const char *userid, const char *mboxname, int on,
		    struct terr *err)
{
	if (mboxname_validate(mboxname, err) < 0)
		return -1;
	int changes = 0;
	return owner_tx_exec(st, userid,
			     on ? "INSERT OR IGNORE INTO subs VALUES(?);" : "DELETE FROM subs WHERE mboxname = ?;",
			     bind_name, mboxname, "SUB", userid, mboxname, &changes, err);
}

int store_subs_list(struct store *st, const char *userid, store_name_cb *cb, void *rock,
		    struct terr *err)
{
	struct ustore *u;
	if (store_ustore(st, userid, 0, &u, err) < 0)
		return -1;
	sqlite3_stmt *s = store_stmt(&u->sql, "SELECT mboxname FROM subs ORDER BY mboxname;", err);
	if (!s)
		return -1;
	int step;
	while ((step = sqlite3_step(s)) == SQLITE_ROW)
		if (cb((const char *)sqlite3_column_text(s, 0), rock))
			break;
	if (store_stmt_done(&u->sql, s, step, "list subscriptions", err) < 0)
		return -1;
	return 0;
}

/* ---- seen ------------------------------------------------------------------ */

struct seen_bind {
	const char *uniqueid;
	const struct store_seen *seen;
};

static void bind_seen(sqlite3_stmt *s, const void *rock)
{
	const struct seen_bind *b = rock;
	sqlite3_bind_text(s, 1, b->uniqueid, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, b->seen->lastread);
	sqlite3_bind_int64(s, 3, b->seen->lastuid);
	sqlite3_bind_int64(s, 4, b->seen->lastchange);
	sqlite3_bind_text(s, 5, b->seen->seenuids ? b->seen->seenuids : "", -1, SQLITE_STATIC);
}

int store_seen_set(struct store *st, const char *userid, const char *uniqueid,
		   const struct store_seen *seen, struct terr *err)
{
	struct seen_bind b = { uniqueid, seen };
	return owner_tx_exec(st, userid, "INSERT OR REPLACE INTO seen VALUES(?, ?, ?, ?, ?);", bind_seen,
			     &b, "SEEN", userid, uniqueid, NULL, err);
}

int store_seen_get(struct store *st, const char *userid, const char *uniqueid,
		   struct store_seen *seen_r, struct terr *err)
{
	struct ustore *u;
	if (store_ustore(st, userid, 0, &u, err) < 0)
		return -1;
	sqlite3_stmt *s = store_stmt(&u->sql, "SELECT lastread, lastuid, lastchange, seenuids"
						   " FROM seen WHERE uniqueid = ?;", err);
	if (!s)
		return -1;
	sqlite3_bind_text(s, 1, uniqueid, -1, SQLITE_STATIC);
	int rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		seen_r->lastread = sqlite3_column_int64(s, 0);
		seen_r->lastuid = (uint32_t)sqlite3_column_int64(s, 1);
		seen_r->lastchange = sqlite3_column_int64(s, 2);
		seen_r->seenuids = xstrdup((const char *)sqlite3_column_text(s, 3));
	}
	if (store_stmt_done(&u->sql, s, rc, "get seen state", err) < 0)
		return -1;	/* BUSY or an I/O error is not "no seen state" */
	if (rc == SQLITE_ROW)
		return 0;
	return terr_set(err, TE_NOTFOUND, "no seen state of '%s' for %s", userid, uniqueid);
}

/* ---- annotations ------------------------------------------------------- */

int store_annot_set(struct store *st, const char *mboxname, uint32_t uid, const char *entry,
		    const char *userid, const void *value, size_t len, struct terr *err)
{
	if (!entry || !*entry || strlen(entry) > MAX_ANNOT_ENTRY || entry[0] != '/')
		return terr_set(err, TE_INVALID, "bad annotation entry name");
	if (len > MAX_ANNOT_VALUE)
		return terr_set(err, TE_TOOBIG, "annotation value over %d bytes", MAX_ANNOT_VALUE);
	struct ustore *u;
	if (store_ustore_for_mailbox(st, mboxname, 0, &u, err) < 0)
		return -1;
	struct utx tx;
	if (utx_begin(&tx, st, u, err) < 0)
		return -1;
	int rc = -1;
	struct mbox_row row;
	if (store_mbox_row(u, mboxname, &row, err) < 0)
		goto out;
	int live = 0;
	if (uid) {
		sqlite3_stmt *q = store_stmt(&u->sql, "SELECT sysflags FROM records WHERE"
							   " mailbox_id = ? AND uid = ?;", err);
		if (!q)
			goto out;
		sqlite3_bind_int64(q, 1, row.id);
		sqlite3_bind_int64(q, 2, uid);
		int step = sqlite3_step(q), found = step == SQLITE_ROW;
		live = found && !(sqlite3_column_int64(q, 0) & SYSFLAG_EXPUNGED);
		if (store_stmt_done(&u->sql, q, step, "annotation record", err) < 0)
			goto out;	/* an error, not "no such message" */
		if (!found) {
			terr_set(err, TE_NOTFOUND, "no message with UID %u in '%s'", uid, mboxname);
			goto out;
		}
	}
	/* XOR the old value's contribution out, the new one's in. */
	sqlite3_stmt *s = store_stmt(&u->sql, "SELECT value FROM annotations WHERE mailbox_id = ?"
						   " AND uid = ? AND entry = ? AND userid = ?;", err);
	if (!s)
		goto out;
	sqlite3_bind_int64(s, 1, row.id);
	sqlite3_bind_int64(s, 2, uid);
	sqlite3_bind_text(s, 3, entry, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 4, userid, -1, SQLITE_STATIC);
	if (sqlite3_step(s) == SQLITE_ROW && live)
		row.sync_crc_annot ^= synccrc_annot_entry(uid, entry, userid, sqlite3_column_blob(s, 0),
							  (size_t)sqlite3_column_bytes(s, 0));
	store_stmt_put(&u->sql, s);
	uint64_t modseq;
	if (utx_modseq(&tx, &modseq, err) < 0)
		goto out;
	if (len) {
		s = store_stmt(&u->sql, "INSERT OR REPLACE INTO annotations VALUES(?, ?, ?, ?, ?, ?);", err);
		if (!s)
			goto out;
		sqlite3_bind_int64(s, 1, row.id);
		sqlite3_bind_int64(s, 2, uid);
		sqlite3_bind_text(s, 3, entry, -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 4, userid, -1, SQLITE_STATIC);
		sqlite3_bind_blob(s, 5, value, (int)len, SQLITE_STATIC);
		sqlite3_bind_int64(s, 6, (sqlite3_int64)modseq);
		if (live)
			row.sync_crc_annot ^= synccrc_annot_entry(uid, entry, userid, value, len);
	} else {
		s = store_stmt(&u->sql, "DELETE FROM annotations WHERE mailbox_id = ? AND uid = ?"
					     " AND entry = ? AND userid = ?;", err);
		if (!s)
			goto out;
		sqlite3_bind_int64(s, 1, row.id);
		sqlite3_bind_int64(s, 2, uid);
		sqlite3_bind_text(s, 3, entry, -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 4, userid, -1, SQLITE_STATIC);
	}
	int sr = sqlite3_step(s);
	store_stmt_put(&u->sql, s);
	if (sr != SQLITE_DONE) {
		store_sql_fail(u->db, "annotation", err);
		goto out;
	}
	row.highestmodseq = modseq;
	if (uid) {
		s = store_stmt(&u->sql, "UPDATE records SET modseq = ? WHERE mailbox_id = ? AND uid = ?;", err);
		if (!s)
			goto out;
		/* the record's modseq changes, so does its basic CRC */
		sqlite3_stmt *q = store_stmt(&u->sql, "SELECT modseq, last_updated, sysflags, keywords,"
							   " internaldate, guid FROM records WHERE mailbox_id = ?"
							   " AND uid = ?;", err);
		if (!q) {
			store_stmt_put(&u->sql, s);
			goto out;
		}
		sqlite3_bind_int64(q, 1, row.id);
		sqlite3_bind_int64(q, 2, uid);
		if (sqlite3_step(q) == SQLITE_ROW && live) {
			uint64_t old = (uint64_t)sqlite3_column_int64(q, 0);
			int64_t lu = sqlite3_column_int64(q, 1);
			unsigned fl = (unsigned)sqlite3_column_int64(q, 2);
			const char *kw = (const char *)sqlite3_column_text(q, 3);
			int64_t idate = sqlite3_column_int64(q, 4);
			const char *guid = (const char *)sqlite3_column_text(q, 5);
			row.sync_crc ^= synccrc_record(uid, old, lu, fl, kw, idate, guid) ^
					synccrc_record(uid, modseq, lu, fl, kw, idate, guid);
		}
		store_stmt_put(&u->sql, q);
		sqlite3_bind_int64(s, 1, (sqlite3_int64)modseq);
		sqlite3_bind_int64(s, 2, row.id);
		sqlite3_bind_int64(s, 3, uid);
		sr = sqlite3_step(s);
		store_stmt_put(&u->sql, s);
		if (sr != SQLITE_DONE) {
			store_sql_fail(u->db, "annotation", err);
			goto out;
		}
	} else {
		s = store_stmt(&u->sql, "UPDATE mailboxes SET foldermodseq = ? WHERE id = ?;", err);
		if (!s)
			goto out;
		sqlite3_bind_int64(s, 1, (sqlite3_int64)modseq);
		sqlite3_bind_int64(s, 2, row.id);
		sqlite3_step(s);
		store_stmt_put(&u->sql, s);
	}
	if (store_mbox_update_counters(&tx, &row, err) < 0 ||
	    utx_log(&tx, uid ? "MAILBOX" : "ANNOTATION", mboxname, NULL, err) < 0 ||
	    utx_commit(&tx, err) < 0)
		goto out;
	rc = 0;
out:
	utx_rollback(&tx);
	return rc;
}

int store_annots_of(struct ustore *u, int64_t mailbox_id, int64_t uid, store_annot_cb *cb, void *rock,
		    struct terr *err)
{
	sqlite3_stmt *s = store_stmt(&u->sql,
		"SELECT uid, entry, userid, value, modseq FROM annotations WHERE mailbox_id = ?"
		" AND (? < 0 OR uid = ?) ORDER BY uid, entry, userid, value;", err);
	if (!s)
		return -1;
	sqlite3_bind_int64(s, 1, mailbox_id);
	sqlite3_bind_int64(s, 2, uid);
	sqlite3_bind_int64(s, 3, uid);
	int step;
	while ((step = sqlite3_step(s)) == SQLITE_ROW)
		if (cb((uint32_t)sqlite3_column_int64(s, 0), (const char *)sqlite3_column_text(s, 1),
		       (const char *)sqlite3_column_text(s, 2), sqlite3_column_blob(s, 3),
		       (size_t)sqlite3_column_bytes(s, 3), (uint64_t)sqlite3_column_int64(s, 4), rock))
			break;
	return store_stmt_done(&u->sql, s, step, "list annotations", err);
}

int store_annot_list(struct store *st, const char *mboxname, int64_t uid, store_annot_cb *cb,
		     void *rock, struct terr *err)
{
	struct ustore *u;
	if (store_ustore_for_mailbox(st, mboxname, 0, &u, err) < 0)
		return -1;
	struct mbox_row row;
	if (store_mbox_row(u, mboxname, &row, err) < 0)
		return -1;
	return store_annots_of(u, row.id, uid, cb, rock, err);
}

/* ---- quota ------------------------------------------------------------------ */

int store_quota_set(struct store *st, const char *root, int64_t storage_kib, int64_t messages,
		    struct terr *err)
{
	struct ustore *u;
	if (store_ustore_for_mailbox(st, root, 0, &u, err) < 0)
		return -1;
	struct utx tx;
	if (utx_begin(&tx, st, u, err) < 0)
		return -1;
	int rc = -1;
	uint64_t modseq;
	if (utx_modseq(&tx, &modseq, err) < 0)
		goto out;
	/* Usage from scratch over the mailboxes the root covers. */
	sqlite3_stmt *s = store_stmt(&u->sql,
		"SELECT coalesce(sum(r.size), 0), count(r.uid) FROM mailboxes m JOIN records r ON"
		" r.mailbox_id = m.id WHERE (m.name = ?1 OR substr(m.name, 1, length(?1) + 1) = ?1 || '.')"
		" AND (r.sysflags & 32) = 0;", err);
	if (!s)
		goto out;
	sqlite3_bind_text(s, 1, root, -1, SQLITE_STATIC);
	int64_t bytes = 0, msgs = 0;
	if (sqlite3_step(s) == SQLITE_ROW) {
		bytes = sqlite3_column_int64(s, 0);
		msgs = sqlite3_column_int64(s, 1);
	}
	store_stmt_put(&u->sql, s);
	s = store_stmt(&u->sql, "INSERT INTO quota VALUES(?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(root)"
				     " DO UPDATE SET storage_limit = ?2, message_limit = ?3, storage_used = ?4,"
				     " message_used = ?5, modseq = ?6;", err);
	if (!s)
		goto out;
	sqlite3_bind_text(s, 1, root, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, storage_kib);
	sqlite3_bind_int64(s, 3, messages);
	sqlite3_bind_int64(s, 4, bytes);
	sqlite3_bind_int64(s, 5, msgs);
	sqlite3_bind_int64(s, 6, (sqlite3_int64)modseq);
	int sr = sqlite3_step(s);
	store_stmt_put(&u->sql, s);
	if (sr != SQLITE_DONE) {
		store_sql_fail(u->db, "quota", err);
		goto out;
	}
	/* Mailboxes under the root whose current root is shorter move to it. */
	s = store_stmt(&u->sql, "UPDATE mailboxes SET quotaroot = ?1 WHERE (name = ?1 OR"
				     " substr(name, 1, length(?1) + 1) = ?1 || '.') AND length(quotaroot) <= length(?1);", err);
	if (!s)
		goto out;
	sqlite3_bind_text(s, 1, root, -1, SQLITE_STATIC);
	sr = sqlite3_step(s);
	store_stmt_put(&u->sql, s);
	if (sr != SQLITE_DONE) {
		store_sql_fail(u->db, "quota", err);
		goto out;
	}
	if (utx_log(&tx, "QUOTA", root, NULL, err) < 0 || utx_commit(&tx, err) < 0)
		goto out;
	rc = 0;
out:
	utx_rollback(&tx);
	return rc;
}

int store_quota_delete(struct store *st, const char *root, struct terr *err)
{
	struct ustore *u;
	if (store_ustore_for_mailbox(st, root, 0, &u, err) < 0)
		return -1;
	struct utx tx;
	if (utx_begin(&tx, st, u, err) < 0)
		return -1;
	int rc = -1;
	struct buf parent = BUF_INIT;
	sqlite3_stmt *s = store_stmt(&u->sql, "DELETE FROM quota WHERE root = ?;", err);
	if (!s)
		goto out;
	sqlite3_bind_text(s, 1, root, -1, SQLITE_STATIC);
	int sr = sqlite3_step(s);
	store_stmt_put(&u->sql, s);
	if (sr != SQLITE_DONE) {
		store_sql_fail(u->db, "quota", err);
		goto out;
	}
	if (sqlite3_changes(u->db) == 0) {
		terr_set(err, TE_NOTFOUND, "no quota root '%s'", root);
		goto out;
	}
	if (store_quotaroot_for(u, root, &parent, err) < 0)
		goto out;
	s = store_stmt(&u->sql, "UPDATE mailboxes SET quotaroot = ? WHERE quotaroot = ?;", err);
	if (!s)
		goto out;
	sqlite3_bind_text(s, 1, buf_cstr(&parent), -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, root, -1, SQLITE_STATIC);
	sqlite3_step(s);
	store_stmt_put(&u->sql, s);
	if (utx_log(&tx, "QUOTA", root, NULL, err) < 0 || utx_commit(&tx, err) < 0)
		goto out;
	rc = 0;
out:
	utx_rollback(&tx);
	buf_free(&parent);
	return rc;
}

int store_quota_get(struct store *st, const char *root, struct store_quota *q, struct terr *err)
{
	struct ustore *u;
	if (store_ustore_for_mailbox(st, root, 0, &u, err) < 0)
		return -1;
	sqlite3_stmt *s = store_stmt(&u->sql, "SELECT storage_limit, message_limit, storage_used,"
						   " message_used, modseq FROM quota WHERE root = ?;", err);
	if (!s)
		return -1;
	sqlite3_bind_text(s, 1, root, -1, SQLITE_STATIC);
	int rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		q->root = xstrdup(root);
		q->storage_limit = sqlite3_column_int64(s, 0);
		q->message_limit = sqlite3_column_int64(s, 1);
		q->storage_used = sqlite3_column_int64(s, 2);
		q->message_used = sqlite3_column_int64(s, 3);
		q->modseq = (uint64_t)sqlite3_column_int64(s, 4);
	}
	if (store_stmt_done(&u->sql, s, rc, "get quota", err) < 0)
		return -1;	/* BUSY or an I/O error is not "no quota" */
	if (rc == SQLITE_ROW)
		return 0;
	return terr_set(err, TE_NOTFOUND, "no quota root '%s'", root);
}

void store_quota_free(struct store_quota *q)
{
	x_free(&q->root);
}

/* ---- sieve ---------------------------------------------------------------- */

struct sieve_bind {
	const char *name;
	const void *script;
	size_t len;
};

static void bind_sieve(sqlite3_stmt *s, const void *rock)
{
	const struct sieve_bind *b = rock;
	sqlite3_bind_text(s, 1, b->name, -1, SQLITE_STATIC);
	sqlite3_bind_blob(s, 2, b->script, (int)b->len, SQLITE_STATIC);
	sqlite3_bind_int64(s, 3, store_now());
}

static int sieve_name_ok(const char *name, struct terr *err)
{
	if (!name || !*name || strlen(name) > 255 || strchr(name, '/') || name[0] == '.')
		return terr_set(err, TE_INVALID, "bad Sieve script name");
	return 0;
}

int store_sieve_put(struct store *st, const char *userid, const char *name, const void *script,
		    size_t len, struct terr *err)
{
	if (sieve_name_ok(name, err) < 0)
		return -1;
	if (len > MAX_SIEVE_SCRIPT)
		return terr_set(err, TE_TOOBIG, "Sieve script over %d bytes", MAX_SIEVE_SCRIPT);
	struct sieve_bind b = { name, script, len };
	return owner_tx_exec(st, userid,
			     "INSERT INTO sieve(name, script, modified) VALUES(?1, ?2, ?3) ON CONFLICT(name)"
			     " DO UPDATE SET script = ?2, modified = ?3;",
			     bind_sieve, &b, "META", userid, NULL, NULL, err);
}

int store_sieve_delete(struct store *st, const char *userid, const char *name, struct terr *err)
{
	int changes = 0;
	if (owner_tx_exec(st, userid, "DELETE FROM sieve WHERE name = ?;", bind_name, name, "META",
			  userid, NULL, &changes, err) < 0)
		return -1;
	return changes ? 0 : terr_set(err, TE_NOTFOUND, "no Sieve script '%s'", name);
}

int store_sieve_activate(struct store *st, const char *userid, const char *name, struct terr *err)
{
	int changes = 0;
	if (!name)
		return owner_tx_exec(st, userid, "UPDATE sieve SET active = 0 WHERE ?1 IS NULL OR 1;",
				     bind_name, NULL, "META", userid, NULL, NULL, err);
	if (owner_tx_exec(st, userid, "UPDATE sieve SET active = (name = ?1);", bind_name, name, "META",
			  userid, NULL, &changes, err) < 0)
		return -1;
	return 0;
}

int store_sieve_list(struct store *st, const char *userid, store_sieve_cb *cb, void *rock,
		     struct terr *err)
{
	struct ustore *u;
	if (store_ustore(st, userid, 0, &u, err) < 0)
		return -1;
	sqlite3_stmt *s = store_stmt(&u->sql, "SELECT name, script, active, modified FROM sieve"
						   " ORDER BY name;", err);
	if (!s)
		return -1;
	int step;
	while ((step = sqlite3_step(s)) == SQLITE_ROW)
		if (cb((const char *)sqlite3_column_text(s, 0), sqlite3_column_blob(s, 1),
		       (size_t)sqlite3_column_bytes(s, 1), sqlite3_column_int(s, 2),
		       sqlite3_column_int64(s, 3), rock))
			break;
	if (store_stmt_done(&u->sql, s, step, "list sieve scripts", err) < 0)
		return -1;
	return 0;
}

/* ---- consistency check ---------------------------------------------------- */

int store_check_user(struct store *st, const char *userid, int bodies, struct buf *report,
		     struct terr *err)
{
	struct ustore *u;
	if (store_ustore(st, userid, 0, &u, err) < 0)
		return -1;
	int problems = 0;
	sqlite3_stmt *m = store_stmt(&u->sql, "SELECT id, name, last_uid, highestmodseq FROM mailboxes"
						   " ORDER BY name;", err);
	if (!m)
		return -1;
	struct buf path = BUF_INIT, data = BUF_INIT;
	while (sqlite3_step(m) == SQLITE_ROW) {
		int64_t id = sqlite3_column_int64(m, 0);
		char *name = xstrdup((const char *)sqlite3_column_text(m, 1));
		uint32_t last_uid = (uint32_t)sqlite3_column_int64(m, 2);
		uint64_t hms = (uint64_t)sqlite3_column_int64(m, 3);
		sqlite3_stmt *r = store_stmt(&u->sql, "SELECT uid, modseq, size, guid, sysflags FROM records"
							   " WHERE mailbox_id = ? ORDER BY uid;", err);
		if (!r) {
			free(name);
			break;
		}
		sqlite3_bind_int64(r, 1, id);
		while (sqlite3_step(r) == SQLITE_ROW) {
			uint32_t uid = (uint32_t)sqlite3_column_int64(r, 0);
			uint64_t ms = (uint64_t)sqlite3_column_int64(r, 1);
			int64_t size = sqlite3_column_int64(r, 2);
			const char *guid = (const char *)sqlite3_column_text(r, 3);
			int expunged = (sqlite3_column_int64(r, 4) & SYSFLAG_EXPUNGED) != 0;
			if (uid > last_uid) {
				buf_printf(report, "mailbox=%s uid=%u problem=uid_above_last_uid last_uid=%u\n",
					   name, uid, last_uid);
				problems++;
			}
			if (ms > hms) {
				buf_printf(report, "mailbox=%s uid=%u problem=modseq_above_highestmodseq\n", name, uid);
				problems++;
			}
			if (expunged)
				continue;
			store_blob_path(u, guid, &path);
			struct stat sb;
			if (stat(path.ptr, &sb) < 0) {
				buf_printf(report, "mailbox=%s uid=%u guid=%s problem=file_missing\n", name, uid, guid);
				problems++;
				continue;
			}
			if (sb.st_size != size) {
				buf_printf(report, "mailbox=%s uid=%u guid=%s problem=size_mismatch size=%lld"
						   " file_size=%lld\n", name, uid, guid, (long long)size,
					   (long long)sb.st_size);
				problems++;
				continue;
			}
			if (bodies) {
				buf_reset(&data);
				struct terr e2;
				char got[41];
				if (fs_read_file(path.ptr, (size_t)st->maxmessagesize, &data, &e2) < 0) {
					buf_printf(report, "mailbox=%s uid=%u guid=%s problem=unreadable error=\"%s\"\n",
						   name, uid, guid, e2.msg);
					problems++;
				} else if (sha1_hex(data.ptr, data.len, got), strcmp(got, guid)) {
					buf_printf(report, "mailbox=%s uid=%u guid=%s problem=sha1_mismatch sha1=%s\n",
						   name, uid, guid, got);
					problems++;
				}
			}
		}
		store_stmt_put(&u->sql, r);
		uint32_t crc, annot;
		struct terr e2;
		int ok = store_mailbox_verify_crc(st, name, &crc, &annot, &e2);
		if (ok == 0) {
			buf_printf(report, "mailbox=%s problem=crc_mismatch computed_crc=%u computed_annot=%u\n",
				   name, crc, annot);
			problems++;
		} else if (ok < 0) {
			buf_printf(report, "mailbox=%s problem=crc_error error=\"%s\"\n", name, e2.msg);
			problems++;
		}
		free(name);
	}
	store_stmt_put(&u->sql, m);
	buf_free(&path);
	buf_free(&data);
	return problems;
}
