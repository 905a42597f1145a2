/* store_message.c: append, delivery to several mailboxes, flags,
 * expunge and reading records. Every change keeps the mailbox's
 * SYNC_CRC / SYNC_CRC_ANNOT current by XORing the record's old
 * contribution out and its new one in (synccrc.h). */
#include "store/store-private.h"

#include "lib/sha1.h"

#include "lib/fsutil.h"
#include "lib/limits.h"
#include "lib/log.h"
#include "lib/xalloc.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <stdio.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

static const struct { unsigned bit; const char *name; } sysflag_names[] = {
	{ SYSFLAG_DELETED, "\\Deleted" }, { SYSFLAG_ANSWERED, "\\Answered" },
	{ SYSFLAG_FLAGGED, "\\Flagged" }, { SYSFLAG_DRAFT, "\\Draft" },
	{ SYSFLAG_EXPUNGED, "\\Expunged" }, { SYSFLAG_SEEN, "\\Seen" },
};

static int keyword_valid(const char *k, size_t n)
{
	if (n == 0 || n > MAX_FLAG_NAME)
		return 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)k[i];
		if (c <= ' ' || c >= 0x7f || strchr("(){%*\"\\]", c))
			return 0;
	}
	return 1;
}

int store_flags_parse(const char *list, unsigned *sysflags_r, struct buf *keywords_r,
		      struct terr *err)
{
	*sysflags_r = 0;
	buf_reset(keywords_r);
	for (const char *p = list ? list : ""; *p;) {
		while (*p == ' ' || *p == '(' || *p == ')')
			p++;
		const char *e = p;
		while (*e && *e != ' ' && *e != '(' && *e != ')')
			e++;
		size_t n = (size_t)(e - p);
		if (n == 0)
			break;
		if (*p == '\\') {
			unsigned bit = 0;
			for (size_t i = 0; i < sizeof sysflag_names / sizeof sysflag_names[0]; i++)
				if (strlen(sysflag_names[i].name) == n && !strncasecmp(p, sysflag_names[i].name, n))
					bit = sysflag_names[i].bit;
			if (!bit && !(n == 7 && !strncasecmp(p, "\\Recent", 7)))
				return terr_set(err, TE_INVALID, "unknown system flag '%.*s'", (int)n, p);
			*sysflags_r |= bit;
		} else {
			if (!keyword_valid(p, n))
				return terr_set(err, TE_INVALID, "bad flag name '%.*s'", (int)n, p);
			if (keywords_r->len)
				buf_putc(keywords_r, ' ');
			buf_append(keywords_r, p, n);
		}
		p = e;
	}
	return 0;
}

void store_flags_format(unsigned sysflags, const char *keywords, struct buf *out)
{
	size_t start = out->len;
	for (size_t i = 0; i < sizeof sysflag_names / sizeof sysflag_names[0]; i++) {
		if (!(sysflags & sysflag_names[i].bit))
			continue;
		if (out->len > start)
			buf_putc(out, ' ');
		buf_appends(out, sysflag_names[i].name);
	}
	if (keywords && *keywords) {
		if (out->len > start)
			buf_putc(out, ' ');
		buf_appends(out, keywords);
	}
}

void store_record_free(struct store_record *r)
{
	free(r->keywords);
	r->keywords = NULL;
}

/* ---- keyword sets (space-separated, case-insensitive) ------------------ */

static int kw_has(const char *set, const char *k, size_t n)
{
	for (const char *p = set; p && *p;) {
		while (*p == ' ')
			p++;
		const char *e = p;
		while (*e && *e != ' ')
			e++;
		if ((size_t)(e - p) == n && n && !strncasecmp(p, k, n))
			return 1;
		p = e;
	}
	return 0;
}

/* out = a op b, keeping a's order then b's. */
static void kw_combine(const char *a, const char *b, enum store_flag_op op, struct buf *out)
{
	buf_reset(out);
	const char *first = op == STORE_FLAGS_SET ? b : a;
	for (const char *p = first; p && *p;) {
		while (*p == ' ')
			p++;
		const char *e = p;
		while (*e && *e != ' ')
			e++;
		size_t n = (size_t)(e - p);
		int keep = n > 0 && !(op == STORE_FLAGS_REMOVE && kw_has(b, p, n)) && !kw_has(out->ptr, p, n);
		if (keep) {
			if (out->len)
				buf_putc(out, ' ');
			buf_append(out, p, n);
		}
		p = e;
	}
	if (op != STORE_FLAGS_ADD)
		return;
	for (const char *p = b; p && *p;) {
		while (*p == ' ')
			p++;
		const char *e = p;
		while (*e && *e != ' ')
			e++;
		size_t n = (size_t)(e - p);
		if (n && !kw_has(out->ptr, p, n)) {
			if (out->len)
				buf_putc(out, ' ');
			buf_append(out, p, n);
		}
		p = e;
	}
}

/* Replaces each keyword by the mailbox flag table's spelling, adding new
 * ones to the table (at most MAX_USER_FLAGS). */
static int kw_canonical(struct ustore *u, int64_t mailbox_id, const char *in, struct buf *out,
			struct terr *err)
{
	buf_reset(out);
	for (const char *p = in; p && *p;) {
		while (*p == ' ')
			p++;
		const char *e = p;
		while (*e && *e != ' ')
			e++;
		size_t n = (size_t)(e - p);
		if (n == 0)
			break;
		if (!keyword_valid(p, n))
			return terr_set(err, TE_INVALID, "bad flag name '%.*s'", (int)n, p);
		sqlite3_stmt *s = store_stmt(&u->sql,
			"SELECT name FROM keywords WHERE mailbox_id = ? AND name = ? COLLATE NOCASE;", err);
		if (!s)
			return -1;
		sqlite3_bind_int64(s, 1, mailbox_id);
		sqlite3_bind_text(s, 2, p, (int)n, SQLITE_STATIC);
		struct buf name = BUF_INIT;
		int step = sqlite3_step(s);
		if (step == SQLITE_ROW)
			buf_appends(&name, (const char *)sqlite3_column_text(s, 0));
		if (store_stmt_done(&u->sql, s, step, "keyword", err) < 0)
			return -1;	/* an error is not a new keyword */
		if (!name.len) {
			s = store_stmt(&u->sql,
				"INSERT INTO keywords(mailbox_id, slot, name) SELECT ?1, count(*), ?2"
				" FROM keywords WHERE mailbox_id = ?1 RETURNING slot;", err);
			if (!s)
				return -1;
			sqlite3_bind_int64(s, 1, mailbox_id);
			sqlite3_bind_text(s, 2, p, (int)n, SQLITE_STATIC);
			int rc = sqlite3_step(s);
			int slot = rc == SQLITE_ROW ? sqlite3_column_int(s, 0) : -1;
			store_stmt_put(&u->sql, s);
			if (rc != SQLITE_ROW)
				return store_sql_fail(u->db, "keyword", err);
			if (slot >= MAX_USER_FLAGS)
				return terr_set(err, TE_INVALID, "too many user flags in the mailbox (limit %d)",
						MAX_USER_FLAGS);
			buf_append(&name, p, n);
		}
		if (!kw_has(out->ptr, name.ptr, name.len)) {
			if (out->len)
				buf_putc(out, ' ');
			buf_append(out, name.ptr, name.len);
		}
		buf_free(&name);
		p = e;
	}
	return 0;
}

/* ---- append -------------------------------------------------------------- */

static int check_message(struct store *st, size_t len, struct terr *err)
{
	if (len == 0)
		return terr_set(err, TE_INVALID, "empty message");
	if ((long long)len > st->maxmessagesize)
		return terr_set(err, TE_TOOBIG, "message of %zu bytes is over the limit of %lld bytes", len,
				st->maxmessagesize);
	return 0;
}

/* Inserts a live record into the mailbox of row and brings the row's
 * LAST_UID, HIGHESTMODSEQ and both CRCs along (the caller writes the row
 * back with store_mbox_update_counters). kw must be canonical. */
static int record_insert(struct ustore *u, struct mbox_row *row, uint32_t uid, uint64_t modseq, int64_t now,
			 unsigned sysflags, const char *kw, int64_t internaldate, uint32_t size, const char *guid,
			 struct terr *err)
{
	sqlite3_stmt *s = store_stmt(&u->sql,
		"INSERT INTO records(mailbox_id, uid, modseq, last_updated, sysflags, keywords,"
		" internaldate, size, guid, savedate, createdmodseq) VALUES(?,?,?,?,?,?,?,?,?,?,?);", err);
	if (!s)
		return -1;
	sqlite3_bind_int64(s, 1, row->id);
	sqlite3_bind_int64(s, 2, uid);
	sqlite3_bind_int64(s, 3, (sqlite3_int64)modseq);
	sqlite3_bind_int64(s, 4, now);
	sqlite3_bind_int64(s, 5, sysflags);
	sqlite3_bind_text(s, 6, kw, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 7, internaldate);
	sqlite3_bind_int64(s, 8, size);
	sqlite3_bind_text(s, 9, guid, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 10, now);
	sqlite3_bind_int64(s, 11, (sqlite3_int64)modseq);
	int sr = sqlite3_step(s);
	store_stmt_put(&u->sql, s);
	if (sr != SQLITE_DONE)
		return store_sql_fail(u->db, "insert record", err);
	row->last_uid = uid;
	row->highestmodseq = modseq;
	row->sync_crc ^= synccrc_record(uid, modseq, now, sysflags, kw, internaldate, guid);
	row->sync_crc_annot ^= synccrc_annot_virtual(uid, 0, now, modseq);
	return 0;
}

/* A delivery's wait for its message file (store_blob_write_start), once
 * the change-log line is durable and before COMMIT. The test hook
 * TANDEM_TEST_KILL_BEFORE_COMMIT=1 (test_crash) kills the process right
 * there: the log line durable, the file's fsyncs perhaps still running,
 * nothing committed. */
static int deliver_before_commit(void *arg, struct terr *err)
{
	static int hook = -1;
	if (hook < 0) {
		const char *h = getenv("TANDEM_TEST_KILL_BEFORE_COMMIT");
		hook = h && *h == '1';
	}
	if (hook)
		raise(SIGKILL);
	return store_blob_wait(arg, err);
}

/* The part of an append that runs under the user's lock: n messages in
 * one transaction (one modseq), all or none. The message files must
 * already be durable in u's blob directory, or with pending (a
 * delivery's one message, its file still being made durable) the commit
 * waits for it, after the change-log line. */
static int append_locked(struct store *st, struct ustore *u, const char *mboxname,
			 const struct store_append_msg *msgs, size_t n, char (*guids)[41],
			 uint32_t *uids_r, struct blob_pending *pending, struct terr *err)
{
	struct utx tx;
	struct buf kw = BUF_INIT, path = BUF_INIT;
	int rc = -1;
	if (utx_begin(&tx, st, u, err) < 0)
		return -1;
	if (pending) {
		tx.before_commit = deliver_before_commit;
		tx.before_commit_arg = pending;
	}
	struct mbox_row row;
	if (store_mbox_row(u, mboxname, &row, err) < 0)
		goto out;
	uint64_t modseq;
	if (utx_modseq(&tx, &modseq, err) < 0)
		goto out;
	int64_t now = store_now(), bytes = 0;
	for (size_t i = 0; i < n; i++) {
		const struct store_append_opts *opts = &msgs[i].opts;
		/* The file was written before the lock: make sure a concurrent
		 * gc did not take it (it spares young files; this is the belt
		 * to its braces). */
		buf_reset(&path);
		store_blob_path(u, guids[i], &path);
		struct stat sb;
		if (!pending && stat(path.ptr, &sb) < 0 &&
		    store_blob_write(st, u, msgs[i].data, msgs[i].len, guids[i], err) < 0)
			goto out;
		if (kw_canonical(u, row.id, opts->keywords, &kw, err) < 0)
			goto out;
		uint32_t uid = row.last_uid + 1;
		unsigned sysflags = opts->sysflags & ~(unsigned)SYSFLAG_EXPUNGED;
		int64_t internaldate = opts->internaldate ? opts->internaldate : now;
		if (record_insert(u, &row, uid, modseq, now, sysflags, buf_cstr(&kw), internaldate,
				  (uint32_t)msgs[i].len, guids[i], err) < 0)
			goto out;
		if (store_cache_add(st, u, guids[i], msgs[i].data, msgs[i].len, err) < 0)
			goto out;
		bytes += (int64_t)msgs[i].len;
	}
	if (store_quota_charge(&tx, row.quotaroot, bytes, (int64_t)n, 1, err) < 0)
		goto out;
	if (store_mbox_update_counters(&tx, &row, err) < 0)
		goto out;
	sqlite3_stmt *s = store_stmt(&u->sql, "UPDATE mailboxes SET exists_count = exists_count + ?,"
				     " last_appenddate = ? WHERE id = ?;", err);
	if (!s)
		goto out;
	sqlite3_bind_int64(s, 1, (sqlite3_int64)n);
	sqlite3_bind_int64(s, 2, now);
	sqlite3_bind_int64(s, 3, row.id);
	int sr = sqlite3_step(s);
	store_stmt_put(&u->sql, s);
	if (sr != SQLITE_DONE) {
		store_sql_fail(u->db, "update mailbox", err);
		goto out;
	}
	if (utx_log(&tx, "APPEND", mboxname, NULL, err) < 0 ||
	    utx_log(&tx, "MAILBOX", mboxname, NULL, err) < 0 || utx_commit(&tx, err) < 0)
		goto out;
	/* the UIDs only now: callers take a set UID for a stored message */
	char q[LOGQ_MAX];
	for (size_t i = 0; i < n; i++) {
		uint32_t uid = row.last_uid - (uint32_t)(n - 1 - i);
		if (uids_r)
			uids_r[i] = uid;
		log_info("event=append mailbox=%s uid=%u size=%zu guid=%s modseq=%llu", logq(q, mboxname), uid,
			 msgs[i].len, guids[i], (unsigned long long)modseq);
	}
	rc = 0;
out:
	utx_rollback(&tx);
	buf_free(&kw);
	buf_free(&path);
	return rc;
}

int store_append_multi(struct store *st, const char *mboxname, const struct store_append_msg *msgs, size_t n,
		       uint32_t *uids_r, struct terr *err)
{
	if (n == 0)
		return terr_set(err, TE_INVALID, "no message");
	for (size_t i = 0; i < n; i++)
		if (check_message(st, msgs[i].len, err) < 0)
			return -1;
	struct ustore *u;
	if (store_ustore_for_mailbox(st, mboxname, 0, &u, err) < 0)
		return -1;
	struct mbox_row row;
	if (store_mbox_row(u, mboxname, &row, err) < 0)	/* fail before writing a file */
		return -1;
	char (*guids)[41] = xmalloc(n * sizeof *guids);
	int rc = 0;
	for (size_t i = 0; i < n && rc == 0; i++) {
		sha1_hex(msgs[i].data, msgs[i].len, guids[i]);
		rc = store_blob_write(st, u, msgs[i].data, msgs[i].len, guids[i], err);
	}
	if (rc == 0)
		rc = append_locked(st, u, mboxname, msgs, n, guids, uids_r, NULL, err);
	free(guids);
	return rc;
}

int store_append(struct store *st, const char *mboxname, const void *data, size_t len,
		 const struct store_append_opts *opts, uint32_t *uid_r, struct terr *err)
{
	struct store_append_msg m = { data, len, { 0, NULL, 0 } };
	if (opts)
		m.opts = *opts;
	return store_append_multi(st, mboxname, &m, 1, uid_r, err);
}

int store_deliver(struct store *st, const char *const *mboxnames, size_t n, const void *data,
		  size_t len, const struct store_append_opts *opts, uint32_t *uids,
		  struct terr *errs, struct terr *err)
{
	if (check_message(st, len, err) < 0) {
		for (size_t i = 0; i < n; i++)
			errs[i] = *err;
		return -1;
	}
	char guid[41];
	sha1_hex(data, len, guid);
	struct ustore *written = NULL;	/* an owner that has the file already */
	int ok = 0;
	/* one wait for the replica (sync_rightnow_channel) for all of them */
	store_commit_defer(st);
	for (size_t i = 0; i < n; i++) {
		struct ustore *u;
		terr_clear(&errs[i]);
		uids[i] = 0;
		/* No read of the mailbox's row before the file: append_locked
		 * reads it in its write transaction (a transaction less per
		 * recipient, its locks and its page reads). A mailbox missing
		 * there (deleted since RCPT, or named by tandem deliver) leaves
		 * its file young and unreferenced, for the blob gc. */
		if (store_ustore_for_mailbox(st, mboxnames[i], 0, &u, &errs[i]) < 0)
			continue;
		/* The first owner's file is made durable beside its change-log
		 * line (store_blob_write_start); the others link to it once it
		 * is there. */
		struct blob_pending *pend = NULL;
		int rc;
		if (!written)
			rc = store_blob_write_start(st, u, data, len, guid, &pend, &errs[i]);
		else
			rc = store_blob_link(st, written, u, guid, &errs[i]);
		if (rc < 0)
			continue;
		struct store_append_msg m = { data, len, { 0, NULL, 0 } };
		if (opts)
			m.opts = *opts;
		char g[1][41];
		memcpy(g[0], guid, sizeof g[0]);
		rc = append_locked(st, u, mboxnames[i], &m, 1, g, &uids[i], pend, &errs[i]);
		/* a commit (rc 0) waited for the file already; a failure
		 * before the commit did not */
		int durable = !pend || store_blob_wait(pend, NULL) == 0;
		store_blob_pending_free(&pend);
		if (rc == 0)
			ok++;
		/* `written` may be evicted from the cache by later opens: keep
		 * the latest owner that has the file. */
		if (durable)
			written = u;
	}
	store_commit_flush(st);
	if (!ok)
		return terr_set(err, n ? errs[0].code : TE_INVALID, "%s", n ? errs[0].msg : "no recipients");
	return 0;
}

/* ---- flags and expunge --------------------------------------------------- */

static void rec_from_stmt(sqlite3_stmt *s, struct store_record *r)
{
	r->uid = (uint32_t)sqlite3_column_int64(s, 0);
	r->modseq = (uint64_t)sqlite3_column_int64(s, 1);
	r->last_updated = sqlite3_column_int64(s, 2);
	r->sysflags = (unsigned)sqlite3_column_int64(s, 3);
	r->keywords = xstrdup((const char *)sqlite3_column_text(s, 4));
	r->internaldate = sqlite3_column_int64(s, 5);
	r->size = (uint32_t)sqlite3_column_int64(s, 6);
	snprintf(r->guid, sizeof r->guid, "%s", (const char *)sqlite3_column_text(s, 7));
	r->savedate = sqlite3_column_int64(s, 8);
	r->createdmodseq = (uint64_t)sqlite3_column_int64(s, 9);
	r->thrid = (uint64_t)sqlite3_column_int64(s, 10);
}

static uint32_t rec_crc(const struct store_record *r)
{
	return synccrc_record(r->uid, r->modseq, r->last_updated, r->sysflags, r->keywords,
			      r->internaldate, r->guid);
}

/* Real per-record annotations' CRC contribution of one UID. */
static int rec_annot_crc(struct ustore *u, int64_t mailbox_id, uint32_t uid, uint32_t *crc_r,
			 struct terr *err)
{
	sqlite3_stmt *s = store_stmt(&u->sql, "SELECT entry, userid, value FROM annotations"
						   " WHERE mailbox_id = ? AND uid = ?;", err);
	if (!s)
		return -1;
	sqlite3_bind_int64(s, 1, mailbox_id);
	sqlite3_bind_int64(s, 2, uid);
	uint32_t crc = 0;
	while (sqlite3_step(s) == SQLITE_ROW)
		crc ^= synccrc_annot_entry(uid, (const char *)sqlite3_column_text(s, 0),
					   (const char *)sqlite3_column_text(s, 1), sqlite3_column_blob(s, 2),
					   (size_t)sqlite3_column_bytes(s, 2));
	store_stmt_put(&u->sql, s);
	*crc_r = crc;
	return 0;
}

static int rec_update(struct ustore *u, int64_t mailbox_id, const struct store_record *r,
		      struct terr *err)
{
	sqlite3_stmt *s = store_stmt(&u->sql,
		"UPDATE records SET modseq = ?, last_updated = ?, sysflags = ?, keywords = ?"
		" WHERE mailbox_id = ? AND uid = ?;", err);
	if (!s)
		return -1;
	sqlite3_bind_int64(s, 1, (sqlite3_int64)r->modseq);
	sqlite3_bind_int64(s, 2, r->last_updated);
	sqlite3_bind_int64(s, 3, r->sysflags);
	sqlite3_bind_text(s, 4, r->keywords, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 5, mailbox_id);
	sqlite3_bind_int64(s, 6, r->uid);
	int rc = sqlite3_step(s) == SQLITE_DONE ? 0 : store_sql_fail(u->db, "update record", err);
	store_stmt_put(&u->sql, s);
	return rc;
}

static int uid_cmp(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

/* Loads the records to change: the given UIDs, or (uids NULL) those with
 * \Deleted. Expunged records are never returned. One statement for both
 * (and for every caller: STORE, EXPUNGE, COPY, MOVE): the records of a
 * UID range, stepped once per run of consecutive UIDs (1:* is one run),
 * the rest chosen here. A session's first STORE or EXPUNGE prepares it,
 * and each distinct statement costs its prepare again in every process
 * that opens the database; the `uid IN (SELECT value FROM json_each(?))`
 * it replaces was the dearest of a mix session's (~60 us). */
static int load_records(struct ustore *u, int64_t mailbox_id, const uint32_t *uids, size_t nuids,
			struct store_record **recs_r, size_t *n_r, struct terr *err)
{
	static const char sql[] = "SELECT uid, modseq, last_updated, sysflags, keywords, internaldate, size,"
				  " guid, savedate, createdmodseq, thrid FROM records WHERE mailbox_id = ?"
				  " AND uid BETWEEN ? AND ? ORDER BY uid;";
	uint32_t all[2] = { 0, UINT32_MAX };
	uint32_t *set = NULL;
	size_t nset = 0;
	if (uids) {
		if (!nuids) {
			*recs_r = NULL;
			*n_r = 0;
			return 0;
		}
		set = xmalloc(nuids * sizeof *set);
		memcpy(set, uids, nuids * sizeof *set);
		qsort(set, nuids, sizeof *set, uid_cmp);
		for (size_t i = 0; i < nuids; i++)
			if (!nset || set[i] != set[nset - 1])
				set[nset++] = set[i];
	}
	sqlite3_stmt *s = store_stmt(&u->sql, sql, err);
	if (!s) {
		free(set);
		return -1;
	}
	size_t n = 0, cap = 16;
	struct store_record *recs = xmalloc(cap * sizeof *recs);
	int rc = SQLITE_DONE;
	for (size_t i = 0; i < (uids ? nset : 1) && rc == SQLITE_DONE;) {
		uint32_t lo = uids ? set[i] : all[0], hi = lo;
		if (uids)
			while (++i < nset && set[i] == hi + 1)
				hi++;
		else
			hi = all[1], i++;
		sqlite3_reset(s);
		sqlite3_bind_int64(s, 1, mailbox_id);
		sqlite3_bind_int64(s, 2, lo);
		sqlite3_bind_int64(s, 3, hi);
		while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
			unsigned flags = (unsigned)sqlite3_column_int64(s, 3);
			if ((flags & SYSFLAG_EXPUNGED) || (!uids && !(flags & SYSFLAG_DELETED)))
				continue;
			if (n == cap)
				recs = xrealloc(recs, (cap *= 2) * sizeof *recs);
			rec_from_stmt(s, &recs[n++]);
		}
	}
	store_stmt_put(&u->sql, s);
	free(set);
	if (rc != SQLITE_DONE) {
		for (size_t i = 0; i < n; i++)
			store_record_free(&recs[i]);
		free(recs);
		return store_sql_fail(u->db, "records", err);
	}
	*recs_r = recs;
	*n_r = n;
	return 0;
}

static void free_records(struct store_record *recs, size_t n)
{
	for (size_t i = 0; i < n; i++)
		store_record_free(&recs[i]);
	free(recs);
}

int store_set_flags(struct store *st, const char *mboxname, const uint32_t *uids, size_t nuids,
		    enum store_flag_op op, unsigned sysflags, const char *keywords,
		    uint64_t unchangedsince, struct buf *failed_r, struct terr *err)
{
	struct ustore *u;
	if (store_ustore_for_mailbox(st, mboxname, 0, &u, err) < 0)
		return -1;
	if (!uids)
		return terr_set(err, TE_INVALID, "no UIDs given");
	sysflags &= ~(unsigned)SYSFLAG_EXPUNGED;
	struct utx tx;
	if (utx_begin(&tx, st, u, err) < 0)
		return -1;
	struct store_record *recs = NULL;
	size_t n = 0, changed = 0;
	struct buf kw = BUF_INIT, nk = BUF_INIT;
	int rc = -1;
	struct mbox_row row;
	if (store_mbox_row(u, mboxname, &row, err) < 0 ||
	    kw_canonical(u, row.id, keywords, &kw, err) < 0 ||
	    load_records(u, row.id, uids, nuids, &recs, &n, err) < 0)
		goto out;
	int64_t now = store_now();
	for (size_t i = 0; i < n; i++) {
		struct store_record *r = &recs[i];
		unsigned nf = op == STORE_FLAGS_SET ? sysflags :
			      op == STORE_FLAGS_ADD ? r->sysflags | sysflags : r->sysflags & ~sysflags;
		kw_combine(r->keywords, kw.ptr, op, &nk);
		if (nf == r->sysflags && !strcmp(buf_cstr(&nk), r->keywords))
			continue;
		if (unchangedsince && r->modseq > unchangedsince) {
			if (failed_r)
				buf_printf(failed_r, "%s%u", failed_r->len ? "," : "", r->uid);
			continue;
		}
		uint64_t modseq;
		if (utx_modseq(&tx, &modseq, err) < 0)
			goto out;
		row.sync_crc ^= rec_crc(r);
		r->sysflags = nf;
		free(r->keywords);
		r->keywords = xstrdup(buf_cstr(&nk));
		r->modseq = modseq;
		r->last_updated = now;
		row.sync_crc ^= rec_crc(r);
		row.highestmodseq = modseq;
		if (rec_update(u, row.id, r, err) < 0)
			goto out;
		changed++;
	}
	if (changed) {
		if (store_mbox_update_counters(&tx, &row, err) < 0 ||
		    utx_log(&tx, "MAILBOX", mboxname, NULL, err) < 0 || utx_commit(&tx, err) < 0)
			goto out;
		char q[LOGQ_MAX];
		log_info("event=flags mailbox=%s changed=%zu modseq=%llu", logq(q, mboxname), changed,
			 (unsigned long long)row.highestmodseq);
	}
	rc = 0;
out:
	utx_rollback(&tx);
	free_records(recs, n);
	buf_free(&kw);
	buf_free(&nk);
	return rc;
}

int store_expunge(struct store *st, const char *mboxname, const uint32_t *uids, size_t nuids,
		  size_t *count_r, struct terr *err)
{
	struct ustore *u;
	if (store_ustore_for_mailbox(st, mboxname, 0, &u, err) < 0)
		return -1;
	struct utx tx;
	if (utx_begin(&tx, st, u, err) < 0)
		return -1;
	struct store_record *recs = NULL;
	size_t n = 0;
	int rc = -1;
	struct mbox_row row;
	if (store_mbox_row(u, mboxname, &row, err) < 0 ||
	    load_records(u, row.id, uids, nuids, &recs, &n, err) < 0)
		goto out;
	int64_t now = store_now(), bytes = 0;
	for (size_t i = 0; i < n; i++) {
		struct store_record *r = &recs[i];
		uint64_t modseq;
		uint32_t acrc;
		if (utx_modseq(&tx, &modseq, err) < 0 || rec_annot_crc(u, row.id, r->uid, &acrc, err) < 0)
			goto out;
		row.sync_crc ^= rec_crc(r);
		row.sync_crc_annot ^= acrc ^ synccrc_annot_virtual(r->uid, r->thrid, r->savedate,
								   r->createdmodseq);
		r->sysflags |= SYSFLAG_EXPUNGED;
		r->modseq = modseq;
		r->last_updated = now;
		row.highestmodseq = modseq;
		bytes += r->size;
		if (rec_update(u, row.id, r, err) < 0)
			goto out;
	}
	if (n) {
		sqlite3_stmt *s = store_stmt(&u->sql, "UPDATE mailboxes SET exists_count ="
							   " exists_count - ? WHERE id = ?;", err);
		if (!s)
			goto out;
		sqlite3_bind_int64(s, 1, (sqlite3_int64)n);
		sqlite3_bind_int64(s, 2, row.id);
		int sr = sqlite3_step(s);
		store_stmt_put(&u->sql, s);
		if (sr != SQLITE_DONE) {
			store_sql_fail(u->db, "expunge", err);
			goto out;
		}
		if (store_quota_charge(&tx, row.quotaroot, -bytes, -(int64_t)n, 0, err) < 0 ||
		    store_mbox_update_counters(&tx, &row, err) < 0 ||
		    utx_log(&tx, "MAILBOX", mboxname, NULL, err) < 0 || utx_commit(&tx, err) < 0)
			goto out;
		char q[LOGQ_MAX];
		log_info("event=expunge mailbox=%s count=%zu modseq=%llu", logq(q, mboxname), n,
			 (unsigned long long)row.highestmodseq);
	}
	if (count_r)
		*count_r = n;
	rc = 0;
out:
	utx_rollback(&tx);
	free_records(recs, n);
	return rc;
}

/* Inserts a copy of r as uid in the mailbox of row (same owner: the file
 * and its cache row are shared). */
static int copy_insert(struct utx *tx, struct mbox_row *row, const struct store_record *r, uint32_t uid,
		       uint64_t modseq, int64_t now, struct terr *err)
{
	struct buf kw = BUF_INIT;
	int rc = kw_canonical(tx->u, row->id, r->keywords, &kw, err);
	if (rc == 0)
		rc = record_insert(tx->u, row, uid, modseq, now, r->sysflags & ~(unsigned)SYSFLAG_EXPUNGED,
				   buf_cstr(&kw), r->internaldate, r->size, r->guid, err);
	buf_free(&kw);
	return rc;
}

static int add_exists(struct ustore *u, int64_t id, int64_t delta, int appended, int64_t now, struct terr *err)
{
	sqlite3_stmt *s = store_stmt(&u->sql, appended ?
		"UPDATE mailboxes SET exists_count = exists_count + ?, last_appenddate = ? WHERE id = ?;" :
		"UPDATE mailboxes SET exists_count = exists_count + ? WHERE id = ? OR ? = 0;", err);
	if (!s)
		return -1;
	sqlite3_bind_int64(s, 1, delta);
	sqlite3_bind_int64(s, 2, appended ? now : id);
	sqlite3_bind_int64(s, 3, appended ? id : 1);
	int rc = sqlite3_step(s) == SQLITE_DONE ? 0 : store_sql_fail(u->db, "update mailbox", err);
	store_stmt_put(&u->sql, s);
	return rc;
}

int store_copy(struct store *st, const char *src, const uint32_t *uids, size_t nuids, const char *dst, int move,
	       uint32_t *src_uids_r, uint32_t *dst_uids_r, size_t *count_r, struct terr *err)
{
	struct ustore *u, *ud;
	*count_r = 0;
	if (store_ustore_for_mailbox(st, src, 0, &u, err) < 0 || store_ustore_for_mailbox(st, dst, 0, &ud, err) < 0)
		return -1;
	if (u != ud)
		return terr_set(err, TE_INVALID, "copy between owners is not one transaction");
	struct utx tx;
	if (utx_begin(&tx, st, u, err) < 0)
		return -1;
	struct store_record *recs = NULL;
	size_t n = 0;
	int rc = -1;
	struct mbox_row srow, drow;
	if (store_mbox_row(u, src, &srow, err) < 0 || store_mbox_row(u, dst, &drow, err) < 0 ||
	    load_records(u, srow.id, uids, nuids, &recs, &n, err) < 0)
		goto out;
	int64_t now = store_now(), bytes = 0;
	uint64_t modseq;
	if (n && utx_modseq(&tx, &modseq, err) < 0)
		goto out;
	for (size_t i = 0; i < n; i++)
		bytes += recs[i].size;
	if (n && store_quota_charge(&tx, drow.quotaroot, bytes, (int64_t)n, 1, err) < 0)
		goto out;
	int same = !strcmp(src, dst);
	for (size_t i = 0; i < n; i++) {
		struct store_record *r = &recs[i];
		uint32_t uid = (same ? srow.last_uid : drow.last_uid) + 1;
		if (copy_insert(&tx, same ? &srow : &drow, r, uid, modseq, now, err) < 0)
			goto out;
		if (src_uids_r)
			src_uids_r[i] = r->uid;
		if (dst_uids_r)
			dst_uids_r[i] = uid;
		if (!move)
			continue;
		uint32_t acrc;
		if (rec_annot_crc(u, srow.id, r->uid, &acrc, err) < 0)
			goto out;
		srow.sync_crc ^= rec_crc(r);
		srow.sync_crc_annot ^= acrc ^ synccrc_annot_virtual(r->uid, r->thrid, r->savedate, r->createdmodseq);
		r->sysflags |= SYSFLAG_EXPUNGED;
		r->modseq = modseq;
		r->last_updated = now;
		srow.highestmodseq = modseq;
		if (rec_update(u, srow.id, r, err) < 0)
			goto out;
	}
	if (n) {
		if (add_exists(u, (same ? srow : drow).id, (int64_t)n, 1, now, err) < 0)
			goto out;
		if (move && (add_exists(u, srow.id, -(int64_t)n, 0, now, err) < 0 ||
			     store_quota_charge(&tx, srow.quotaroot, -bytes, -(int64_t)n, 0, err) < 0))
			goto out;
		if ((!same && store_mbox_update_counters(&tx, &drow, err) < 0) ||
		    ((move || same) && store_mbox_update_counters(&tx, &srow, err) < 0))
			goto out;
		if (utx_log(&tx, "APPEND", dst, NULL, err) < 0 || utx_log(&tx, "MAILBOX", dst, NULL, err) < 0 ||
		    (move && !same && utx_log(&tx, "MAILBOX", src, NULL, err) < 0) || utx_commit(&tx, err) < 0)
			goto out;
		char q1[LOGQ_MAX], q2[LOGQ_MAX];
		log_info("event=%s mailbox=%s target=%s count=%zu modseq=%llu", move ? "move" : "copy", logq(q1, src),
			 logq(q2, dst), n, (unsigned long long)modseq);
	}
	*count_r = n;
	rc = 0;
out:
	utx_rollback(&tx);
	free_records(recs, n);
	return rc;
}

int store_records_of(struct ustore *u, int64_t mailbox_id, uint64_t since_modseq, int with_expunged,
		     store_record_cb *cb, void *rock, struct terr *err)
{
	/* one statement with and without the expunged ones (they are left
	 * out here): a prepare less in a session that asks for both (SELECT
	 * for the live ones, the refresh after a change for all) */
	sqlite3_stmt *s = store_stmt(&u->sql,
		"SELECT uid, modseq, last_updated, sysflags, keywords, internaldate, size, guid, savedate,"
		" createdmodseq, thrid FROM records WHERE mailbox_id = ? AND modseq > ? ORDER BY uid;", err);
	if (!s)
		return -1;
	sqlite3_bind_int64(s, 1, mailbox_id);
	sqlite3_bind_int64(s, 2, (sqlite3_int64)since_modseq);
	int rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (!with_expunged && (sqlite3_column_int64(s, 3) & SYSFLAG_EXPUNGED))
			continue;
		struct store_record r;
		rec_from_stmt(s, &r);
		int stop = cb(&r, rock);
		store_record_free(&r);
		if (stop)
			break;
	}
	return store_stmt_done(&u->sql, s, rc, "records", err);
}

int store_records(struct store *st, const char *mboxname, uint64_t since_modseq, int with_expunged,
		  store_record_cb *cb, void *rock, struct terr *err)
{
	struct ustore *u;
	if (store_ustore_for_mailbox(st, mboxname, 0, &u, err) < 0)
		return -1;
	struct mbox_row row;
	if (store_mbox_row(u, mboxname, &row, err) < 0)
		return -1;
	return store_records_of(u, row.id, since_modseq, with_expunged, cb, rock, err);
}

int store_message_path(struct store *st, const char *mboxname, const char *guid, struct buf *path_r,
		       struct terr *err)
{
	struct ustore *u;
	if (store_ustore_for_mailbox(st, mboxname, 0, &u, err) < 0)
		return -1;
	return store_blob_path(u, guid, path_r);
}

int store_message_open(struct store *st, const char *mboxname, const char *guid, struct store_blobdir *bd,
		       int *fd_r, uint64_t *size_r, struct buf *path_r, struct terr *err)
{
	struct ustore *u;
	*fd_r = -1;
	if (store_ustore_for_mailbox(st, mboxname, 0, &u, err) < 0)
		return -1;
	store_blob_path(u, guid, path_r);
	if (!bd->dir || strcmp(bd->dir, u->dir)) {
		store_blobdir_close(bd);
		bd->fd = store_blobs_open(u);	/* -1 (no blobs/ yet): by path */
		bd->dir = xstrdup(u->dir);
	}
	/* "xx/<guid>" under blobs/, as store_blob_path names it */
	char rel[64];
	snprintf(rel, sizeof rel, "%.2s/%s", guid, guid);
	int fd = bd->fd >= 0 ? openat(bd->fd, rel, O_RDONLY | O_CLOEXEC) : open(path_r->ptr, O_RDONLY | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT && bd->fd >= 0) {
		/* the kept directory may be an old one (the user removed and
		 * made again since): once more by the whole path */
		store_blobdir_close(bd);
		fd = open(path_r->ptr, O_RDONLY | O_CLOEXEC);
	}
	struct stat sb;
	if (fd < 0)
		return errno == ENOENT ? terr_set(err, TE_NOTFOUND, "no message file %s", path_r->ptr)
				       : terr_errno(err, errno, "message file %s", path_r->ptr);
	if (fstat(fd, &sb) < 0) {
		int e = errno;
		close(fd);
		return terr_errno(err, e, "message file %s", path_r->ptr);
	}
	*fd_r = fd;
	*size_r = (uint64_t)sb.st_size;
	return 0;
}

void store_blobdir_close(struct store_blobdir *bd)
{
	if (bd->fd >= 0)
		close(bd->fd);
	free(bd->dir);
	bd->fd = -1;
	bd->dir = NULL;
}

int store_blob_read(struct store *st, struct ustore *u, const char *guid, struct buf *out, struct terr *err)
{
	struct buf path = BUF_INIT;
	store_blob_path(u, guid, &path);
	size_t start = out->len;
	int rc = fs_read_file(path.ptr, (size_t)st->maxmessagesize, out, err);
	buf_free(&path);
	if (rc < 0)
		return -1;
	char got[41];
	sha1_hex(out->ptr + start, out->len - start, got);
	if (strcmp(got, guid) != 0)
		return terr_set(err, TE_CORRUPT, "message file %s has SHA-1 %s", guid, got);
	return 0;
}

int store_message_read(struct store *st, const char *mboxname, const char *guid, struct buf *out,
		       struct terr *err)
{
	struct ustore *u;
	if (store_ustore_for_mailbox(st, mboxname, 0, &u, err) < 0)
		return -1;
	return store_blob_read(st, u, guid, out, err);
}
