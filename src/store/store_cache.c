/* store_cache.c: the message cache of a user database: per message file
 * (GUID), the strings FETCH answers ENVELOPE, BODYSTRUCTURE and BODY
 * with. They are derived data: written with the record that adds a GUID
 * (store_append, store_deliver, store_apply_mailbox) by the opener's
 * cache_fn, read in bulk by store_cache_range, and losing them loses
 * nothing (FETCH reads the message file instead). The store never parses
 * a message itself.
 */
#include "store/store-private.h"

#include "lib/fsutil.h"
#include "lib/xalloc.h"

#include <stdio.h>
#include <string.h>

/* A rowid table with a unique index on guid. Until 2026-12-06 it was a
 * WITHOUT ROWID table keyed by guid; its rows (~700 bytes, and up to
 * MSGCACHE_HEADERS_MAX more with the header block) are far past what
 * SQLite advises for one (about a twentieth of a page), and its random
 * keys split its wide pages: inserting 10,000 rows of this shape in
 * batches of 60 took 0.69-0.92 s of CPU against 0.23-0.34 s, reading them
 * back by guid in random order 0.36-0.49 s against 0.12-0.20, and the
 * file was 12 % larger (docs/benchmarks.md). A database made before keeps
 * its table (CREATE ... IF NOT EXISTS): every statement here works on
 * both. */
const char store_cache_schema[] =
	"CREATE TABLE IF NOT EXISTS cache(guid TEXT NOT NULL UNIQUE, envelope BLOB, bodystructure BLOB,"
	" body BLOB, headers BLOB);";

int store_cache_migrate(struct ustore *u, struct terr *err)
{
	/* a cache table made before the headers column (ALTER TABLE ADD
	 * COLUMN changes the schema only: old rows read NULL). Looked at
	 * inside the write lock: two processes opening an old database at
	 * once add it once. */
	if (store_sql_exec(u->db, "BEGIN IMMEDIATE;", err) < 0)
		return -1;
	sqlite3_stmt *s = NULL;
	int has = sqlite3_prepare_v2(u->db, "SELECT headers FROM cache LIMIT 0;", -1, &s, NULL) == SQLITE_OK;
	sqlite3_finalize(s);
	if ((!has && store_sql_exec(u->db, "ALTER TABLE cache ADD COLUMN headers BLOB;", err) < 0) ||
	    store_sql_exec(u->db, "COMMIT;", err) < 0) {
		sqlite3_exec(u->db, "ROLLBACK;", NULL, NULL, NULL);
		return -1;
	}
	return 0;
}

void store_cache_strings_free(struct store_cache_strings *cs)
{
	buf_free(&cs->envelope);
	buf_free(&cs->bodystructure);
	buf_free(&cs->body);
	buf_free(&cs->headers);
}

static int cache_has(struct ustore *u, const char *guid, struct terr *err)
{
	return store_stmt_exists(&u->sql, "SELECT 1 FROM cache WHERE guid = ?;", guid, "cache", err);
}

static void bind_buf(sqlite3_stmt *s, int col, const struct buf *b)
{
	sqlite3_bind_blob(s, col, b->ptr ? b->ptr : "", (int)b->len, SQLITE_STATIC);
}

/* INSERT OR IGNORE of one row; s is the prepared statement (reset here). */
static int cache_insert(struct ustore *u, sqlite3_stmt *s, const char *guid,
			const struct store_cache_strings *cs, struct terr *err)
{
	sqlite3_reset(s);
	sqlite3_bind_text(s, 1, guid, -1, SQLITE_STATIC);
	bind_buf(s, 2, &cs->envelope);
	bind_buf(s, 3, &cs->bodystructure);
	bind_buf(s, 4, &cs->body);
	if (cs->headers.ptr)
		bind_buf(s, 5, &cs->headers);
	else
		sqlite3_bind_null(s, 5);
	if (sqlite3_step(s) != SQLITE_DONE)
		return store_sql_fail(u->db, "cache insert", err);
	return 0;
}

static sqlite3_stmt *prepare_insert(struct ustore *u, struct terr *err)
{
	return store_stmt(&u->sql, "INSERT OR IGNORE INTO cache(guid, envelope, bodystructure, body, headers)"
					" VALUES(?, ?, ?, ?, ?);", err);
}

int store_cache_add(struct store *st, struct ustore *u, const char *guid, const void *data, size_t len,
		    struct terr *err)
{
	if (!st->cache_fn)
		return 0;
	int has = cache_has(u, guid, err);
	if (has != 0)
		return has < 0 ? -1 : 0;
	if (strcmp(st->memo_guid, guid) != 0) {
		/* not the message of the last call (a delivery to several owners
		 * asks for the same one in a row): compute its strings once */
		struct buf file = BUF_INIT;
		if (!data) {
			struct buf path = BUF_INIT;
			struct terr e2 = { 0 };
			store_blob_path(u, guid, &path);
			int rc = fs_read_file(path.ptr, (size_t)st->maxmessagesize, &file, &e2);
			buf_free(&path);
			if (rc < 0) {
				buf_free(&file);
				return 0;	/* FETCH will find the problem itself */
			}
			data = file.ptr ? file.ptr : "";
			len = file.len;
		}
		store_cache_strings_free(&st->memo);
		memset(&st->memo, 0, sizeof st->memo);
		st->cache_fn(data, len, &st->memo);
		snprintf(st->memo_guid, sizeof st->memo_guid, "%s", guid);
		buf_free(&file);
	}
	sqlite3_stmt *s = prepare_insert(u, err);
	int rc = s ? cache_insert(u, s, guid, &st->memo, err) : -1;
	store_stmt_put(&u->sql, s);
	return rc;
}

int store_cache_gc(struct ustore *u, struct terr *err)
{
	return store_sql_exec(u->db, "DELETE FROM cache WHERE guid NOT IN (SELECT guid FROM records);", err);
}

static const char *col_blob(sqlite3_stmt *s, int col, size_t *len_r)
{
	if (sqlite3_column_type(s, col) == SQLITE_NULL) {
		*len_r = 0;
		return NULL;
	}
	const char *p = sqlite3_column_blob(s, col);
	*len_r = (size_t)sqlite3_column_bytes(s, col);
	return p ? p : "";
}

int store_cache_range(struct store *st, const char *mboxname, uint32_t uid_lo, uint32_t uid_hi,
		      store_cache_cb *cb, void *rock, struct terr *err)
{
	struct ustore *u;
	if (store_ustore_for_mailbox(st, mboxname, 0, &u, err) < 0)
		return -1;
	sqlite3_stmt *s = store_stmt(&u->sql,
		"SELECT r.uid, r.guid, c.envelope, c.bodystructure, c.body FROM records r"
		" LEFT JOIN cache c ON c.guid = r.guid"
		" WHERE r.mailbox_id = (SELECT id FROM mailboxes WHERE name = ?)"
		" AND r.uid BETWEEN ? AND ? AND (r.sysflags & 32) = 0 ORDER BY r.uid;", err);
	if (!s)
		return -1;
	sqlite3_bind_text(s, 1, mboxname, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, uid_lo);
	sqlite3_bind_int64(s, 3, uid_hi);
	int rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct store_cache_row row;
		row.uid = (uint32_t)sqlite3_column_int64(s, 0);
		row.guid = (const char *)sqlite3_column_text(s, 1);
		row.envelope = col_blob(s, 2, &row.envelope_len);
		row.bodystructure = col_blob(s, 3, &row.bodystructure_len);
		row.body = col_blob(s, 4, &row.body_len);
		if (cb(&row, rock))
			break;
	}
	store_stmt_put(&u->sql, s);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return store_sql_fail(u->db, "cache range", err);
	return 0;
}

int store_cache_headers(struct store *st, const char *mboxname, const char *guid, struct buf *out,
			struct terr *err)
{
	struct ustore *u;
	if (store_ustore_for_mailbox(st, mboxname, 0, &u, err) < 0)
		return -1;
	sqlite3_stmt *s = store_stmt(&u->sql, "SELECT headers FROM cache WHERE guid = ?;", err);
	if (!s)
		return -1;
	sqlite3_bind_text(s, 1, guid, -1, SQLITE_STATIC);
	int rc = sqlite3_step(s), found = 0;
	if (rc == SQLITE_ROW && sqlite3_column_type(s, 0) != SQLITE_NULL) {
		buf_append(out, sqlite3_column_blob(s, 0), (size_t)sqlite3_column_bytes(s, 0));
		found = 1;
	}
	store_stmt_put(&u->sql, s);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return store_sql_fail(u->db, "cache headers", err);
	return found;
}

int store_cache_read_begin(struct store *st, const char *mboxname, int *begun_r, struct terr *err)
{
	struct ustore *u;
	*begun_r = 0;
	if (store_ustore_for_mailbox(st, mboxname, 0, &u, err) < 0)
		return -1;
	if (!sqlite3_get_autocommit(u->db))
		return 0;
	if (store_sql_exec(u->db, "BEGIN;", err) < 0)
		return -1;
	*begun_r = 1;
	return 0;
}

void store_cache_read_end(struct store *st, const char *mboxname, int begun)
{
	struct ustore *u;
	struct terr err = { 0 };
	if (!begun || store_ustore_for_mailbox(st, mboxname, 0, &u, &err) < 0)
		return;
	/* a read transaction: nothing to keep */
	if (!sqlite3_get_autocommit(u->db))
		(void)store_sql_exec(u->db, "ROLLBACK;", &err);
}

int store_cache_put(struct store *st, const char *mboxname, const char *const *guids,
		    const struct store_cache_strings *strs, size_t n, struct terr *err)
{
	if (n == 0)
		return 0;
	struct ustore *u;
	if (store_ustore_for_mailbox(st, mboxname, 0, &u, err) < 0)
		return -1;
	struct utx tx;
	if (utx_begin(&tx, st, u, err) < 0)
		return -1;
	sqlite3_stmt *s = prepare_insert(u, err);
	int rc = s ? 0 : -1;
	for (size_t i = 0; rc == 0 && i < n; i++)
		rc = cache_insert(u, s, guids[i], &strs[i], err);
	store_stmt_put(&u->sql, s);
	if (rc == 0)
		rc = utx_commit(&tx, err);
	utx_rollback(&tx);
	return rc;
}
