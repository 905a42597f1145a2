/* store_mailbox.c: mailbox create, get, rename, delete, list, and the
 * quota-root bookkeeping that goes with names. */
#include "store/store-private.h"

#include "lib/log.h"
#include "lib/xalloc.h"
#include "names/mboxname.h"

#include <stdio.h>
#include <string.h>

#define MBOX_COLS \
	"uniqueid, name, mboxtype, sync_crc, sync_crc_annot, last_uid, highestmodseq, recentuid," \
	" recenttime, last_appenddate, pop3_last_login, pop3_show_after, xconvmodseq, raclmodseq," \
	" uidvalidity, partition, acl, options, quotaroot, createdmodseq, foldermodseq, exists_count"
static const char mbox_cols[] = MBOX_COLS;
/* the columns of store_mbox_info_from_row, then id (STORE_MBOX_ID_COL) */
const char store_mbox_select_by_name[] = "SELECT " MBOX_COLS ", id FROM mailboxes WHERE name = ?;";
const char store_mbox_select_by_id[] = "SELECT " MBOX_COLS ", id FROM mailboxes WHERE id = ?;";

static char *col_dup(sqlite3_stmt *s, int i)
{
	const unsigned char *t = sqlite3_column_text(s, i);
	return xstrdup(t ? (const char *)t : "");
}

void store_mbox_info_from_row(sqlite3_stmt *s, struct store_mailbox_info *mi)
{
	mi->uniqueid = col_dup(s, 0);
	mi->name = col_dup(s, 1);
	mi->mboxtype = col_dup(s, 2);
	mi->sync_crc = (uint32_t)sqlite3_column_int64(s, 3);
	mi->sync_crc_annot = (uint32_t)sqlite3_column_int64(s, 4);
	mi->last_uid = (uint32_t)sqlite3_column_int64(s, 5);
	mi->highestmodseq = (uint64_t)sqlite3_column_int64(s, 6);
	mi->recentuid = (uint32_t)sqlite3_column_int64(s, 7);
	mi->recenttime = sqlite3_column_int64(s, 8);
	mi->last_appenddate = sqlite3_column_int64(s, 9);
	mi->pop3_last_login = sqlite3_column_int64(s, 10);
	mi->pop3_show_after = sqlite3_column_int64(s, 11);
	mi->xconvmodseq = (uint64_t)sqlite3_column_int64(s, 12);
	mi->raclmodseq = (uint64_t)sqlite3_column_int64(s, 13);
	mi->uidvalidity = (uint32_t)sqlite3_column_int64(s, 14);
	mi->partition = col_dup(s, 15);
	mi->acl = col_dup(s, 16);
	mi->options = col_dup(s, 17);
	mi->quotaroot = col_dup(s, 18);
	mi->createdmodseq = (uint64_t)sqlite3_column_int64(s, 19);
	mi->foldermodseq = (uint64_t)sqlite3_column_int64(s, 20);
	mi->exists = (uint32_t)sqlite3_column_int64(s, 21);
}

void store_mailbox_info_free(struct store_mailbox_info *mi)
{
	free(mi->uniqueid);
	free(mi->name);
	free(mi->mboxtype);
	free(mi->partition);
	free(mi->acl);
	free(mi->options);
	free(mi->quotaroot);
	memset(mi, 0, sizeof *mi);
}

int store_mbox_row(struct ustore *u, const char *name, struct mbox_row *row, struct terr *err)
{
	sqlite3_stmt *s = store_stmt(&u->sql,
		"SELECT id, last_uid, highestmodseq, sync_crc, sync_crc_annot, quotaroot, uniqueid"
		" FROM mailboxes WHERE name = ?;", err);
	if (!s)
		return -1;
	sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	int rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		row->id = sqlite3_column_int64(s, 0);
		row->last_uid = (uint32_t)sqlite3_column_int64(s, 1);
		row->highestmodseq = (uint64_t)sqlite3_column_int64(s, 2);
		row->sync_crc = (uint32_t)sqlite3_column_int64(s, 3);
		row->sync_crc_annot = (uint32_t)sqlite3_column_int64(s, 4);
		snprintf(row->quotaroot, sizeof row->quotaroot, "%s", (const char *)sqlite3_column_text(s, 5));
		snprintf(row->uniqueid, sizeof row->uniqueid, "%s", (const char *)sqlite3_column_text(s, 6));
	}
	store_stmt_put(&u->sql, s);
	if (rc == SQLITE_ROW)
		return 0;
	if (rc == SQLITE_DONE)
		return terr_set(err, TE_NOTFOUND, "mailbox '%s' does not exist", name);
	return store_sql_fail(u->db, "mailbox", err);
}

int store_mbox_update_counters(struct utx *tx, const struct mbox_row *row, struct terr *err)
{
	sqlite3_stmt *s = store_stmt(&tx->u->sql,
		"UPDATE mailboxes SET last_uid = ?, highestmodseq = ?, sync_crc = ?, sync_crc_annot = ?"
		" WHERE id = ?;", err);
	if (!s)
		return -1;
	sqlite3_bind_int64(s, 1, row->last_uid);
	sqlite3_bind_int64(s, 2, (sqlite3_int64)row->highestmodseq);
	sqlite3_bind_int64(s, 3, row->sync_crc);
	sqlite3_bind_int64(s, 4, row->sync_crc_annot);
	sqlite3_bind_int64(s, 5, row->id);
	int rc = sqlite3_step(s) == SQLITE_DONE ? 0 : store_sql_fail(tx->u->db, "update mailbox", err);
	store_stmt_put(&tx->u->sql, s);
	return rc;
}

/* Is `parent` the name itself or a hierarchy parent of `name`? */
static int name_covers(const char *parent, const char *name)
{
	size_t n = strlen(parent);
	return strncmp(parent, name, n) == 0 && (name[n] == '\0' || name[n] == '.');
}

int store_quotaroot_for(struct ustore *u, const char *name, struct buf *root_r, struct terr *err)
{
	buf_reset(root_r);
	sqlite3_stmt *s = store_stmt(&u->sql, "SELECT root FROM quota;", err);
	if (!s)
		return -1;
	int step;
	while ((step = sqlite3_step(s)) == SQLITE_ROW) {
		const char *root = (const char *)sqlite3_column_text(s, 0);
		if (name_covers(root, name) && strlen(root) > root_r->len) {
			buf_reset(root_r);
			buf_appends(root_r, root);
		}
	}
	if (store_stmt_done(&u->sql, s, step, "find quota root", err) < 0)
		return -1;
	return 0;
}

int store_quota_charge(struct utx *tx, const char *root, int64_t bytes, int64_t messages,
		       int check, struct terr *err)
{
	if (!root || !*root)
		return 0;
	sqlite3_stmt *s;
	if (check && (bytes > 0 || messages > 0)) {
		s = store_stmt(&tx->u->sql,
			"SELECT storage_limit, message_limit, storage_used, message_used FROM quota"
			" WHERE root = ?;", err);
		if (!s)
			return -1;
		sqlite3_bind_text(s, 1, root, -1, SQLITE_STATIC);
		int over = 0, step = sqlite3_step(s);
		if (step == SQLITE_ROW) {
			int64_t sl = sqlite3_column_int64(s, 0), ml = sqlite3_column_int64(s, 1);
			int64_t su = sqlite3_column_int64(s, 2), mu = sqlite3_column_int64(s, 3);
			if (sl >= 0 && su + bytes > sl * 1024)
				over = 1;
			if (ml >= 0 && mu + messages > ml)
				over = 2;
		}
		if (store_stmt_done(&tx->u->sql, s, step, "quota", err) < 0)
			return -1;	/* an error is not "no limit" */
		if (over)
			return terr_set(err, TE_OVERQUOTA, "quota root '%s' would exceed its %s limit", root,
					over == 1 ? "storage" : "message");
	}
	s = store_stmt(&tx->u->sql,
		"UPDATE quota SET storage_used = max(0, storage_used + ?),"
		" message_used = max(0, message_used + ?) WHERE root = ?;", err);
	if (!s)
		return -1;
	sqlite3_bind_int64(s, 1, bytes);
	sqlite3_bind_int64(s, 2, messages);
	sqlite3_bind_text(s, 3, root, -1, SQLITE_STATIC);
	int rc = sqlite3_step(s) == SQLITE_DONE ? 0 : store_sql_fail(tx->u->db, "quota", err);
	store_stmt_put(&tx->u->sql, s);
	return rc;
}

/* New mailboxes get OPTIONS "P" (POP3 new-style UIDLs), as Cyrus 3.6 gives
 * them by default: a Cyrus replica keeps it, so a tandem master must
 * agree for the pair to compare equal. */
static void default_acl(const char *owner, struct buf *acl)
{
	if (*owner)
		buf_printf(acl, "%s\tlrswipkxtecdan\t", owner);
	else
		buf_appends(acl, "anyone\tlrs\t");
}

static int next_uidvalidity(struct utx *tx, uint32_t *v_r, struct terr *err)
{
	sqlite3_stmt *s = store_stmt(&tx->u->sql,
		"UPDATE meta SET value = max(value + 1, ?) WHERE key = 'uidvalidity' RETURNING value;", err);
	if (!s)
		return -1;
	sqlite3_bind_int64(s, 1, store_now());
	int rc = sqlite3_step(s) == SQLITE_ROW ? 0 : store_sql_fail(tx->u->db, "uidvalidity", err);
	if (rc == 0)
		*v_r = (uint32_t)sqlite3_column_int64(s, 0);
	store_stmt_put(&tx->u->sql, s);
	return rc;
}

int store_mailbox_create_owner(struct store *st, const char *name,
			       const struct store_mailbox_create_opts *opts, int create_owner,
			       struct terr *err)
{
	struct buf owner = BUF_INIT, acl = BUF_INIT, qroot = BUF_INIT;
	struct ustore *u;
	struct utx tx = { 0 };
	int rc = -1;
	if (store_name_owner(name, &owner, err) < 0)
		goto out;
	if (*buf_cstr(&owner) && !create_owner) {
		int ex = store_user_exists(st, owner.ptr, err);
		if (ex <= 0) {
			if (ex == 0)
				terr_set(err, TE_NOTFOUND, "user '%s' does not exist", owner.ptr);
			goto out;
		}
	}
	if (store_ustore(st, buf_cstr(&owner), 1, &u, err) < 0)
		goto out;
	if (utx_begin(&tx, st, u, err) < 0)
		goto out;
	struct mbox_row row;
	struct terr e2;
	if (store_mbox_row(u, name, &row, &e2) == 0) {
		terr_set(err, TE_EXISTS, "mailbox '%s' already exists", name);
		goto out;
	}
	char uniqueid[25];
	if (opts && opts->uniqueid)
		snprintf(uniqueid, sizeof uniqueid, "%s", opts->uniqueid);
	else
		store_random_uniqueid(uniqueid);
	uint32_t uidvalidity = opts ? opts->uidvalidity : 0;
	if (!uidvalidity && next_uidvalidity(&tx, &uidvalidity, err) < 0)
		goto out;
	uint64_t modseq;
	if (utx_modseq(&tx, &modseq, err) < 0)
		goto out;
	if (opts && opts->acl)
		buf_appends(&acl, opts->acl);
	else
		default_acl(buf_cstr(&owner), &acl);
	if (store_quotaroot_for(u, name, &qroot, err) < 0)
		goto out;
	sqlite3_stmt *s = store_stmt(&u->sql,
		"INSERT INTO mailboxes(name, uniqueid, mboxtype, sync_crc_annot, highestmodseq,"
		" uidvalidity, partition, acl, quotaroot, createdmodseq, foldermodseq, options)"
		" VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'P');", err);
	if (!s)
		goto out;
	sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, uniqueid, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 3, opts && opts->mboxtype ? opts->mboxtype : "", -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 4, SYNCCRC_ANNOT_START);
	sqlite3_bind_int64(s, 5, (sqlite3_int64)modseq);
	sqlite3_bind_int64(s, 6, uidvalidity);
	sqlite3_bind_text(s, 7, st->partition, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 8, acl.ptr, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 9, buf_cstr(&qroot), -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 10, (sqlite3_int64)modseq);
	sqlite3_bind_int64(s, 11, (sqlite3_int64)modseq);
	int sr = sqlite3_step(s);
	store_stmt_put(&u->sql, s);
	if (sr != SQLITE_DONE) {
		store_sql_fail(u->db, "create mailbox", err);
		if (err && err->code == TE_EXISTS)
			terr_set(err, TE_EXISTS, "a mailbox with uniqueid %s already exists", uniqueid);
		goto out;
	}
	if (utx_log(&tx, "MAILBOX", name, NULL, err) < 0 || utx_commit(&tx, err) < 0)
		goto out;
	char q[LOGQ_MAX];
	log_info("event=mailbox_create mailbox=%s uniqueid=%s", logq(q, name), uniqueid);
	rc = 0;
out:
	utx_rollback(&tx);
	buf_free(&owner);
	buf_free(&acl);
	buf_free(&qroot);
	return rc;
}

int store_mailbox_create(struct store *st, const char *name,
			 const struct store_mailbox_create_opts *opts, struct terr *err)
{
	/* RFC 3501 CREATE: the superior names a user's mailbox needs are
	 * created too (user.bob.A for user.bob.A.B), as Cyrus 3.6 does; a
	 * Cyrus replica would make them otherwise, and the pair would differ */
	struct buf owner = BUF_INIT, inbox = BUF_INIT, parent = BUF_INIT;
	struct terr e2 = { 0 };
	int rc = 0;
	if (store_name_owner(name, &owner, &e2) == 0 && *buf_cstr(&owner) &&
	    mboxname_user_inbox(owner.ptr, &inbox, &e2) == 0 && !strncmp(name, inbox.ptr, inbox.len) &&
	    name[inbox.len] == '.') {
		for (const char *p = strchr(name + inbox.len + 1, '.'); p && rc == 0; p = strchr(p + 1, '.')) {
			buf_reset(&parent);
			buf_append(&parent, name, (size_t)(p - name));
			struct store_mailbox_info mi;
			if (store_mailbox_get(st, parent.ptr, &mi, &e2) == 0) {
				store_mailbox_info_free(&mi);
				continue;
			}
			if (e2.code != TE_NOTFOUND) {
				*err = e2;
				rc = -1;
				break;
			}
			rc = store_mailbox_create_owner(st, parent.ptr, NULL, 0, err);
		}
	}
	buf_free(&owner);
	buf_free(&inbox);
	buf_free(&parent);
	return rc < 0 ? -1 : store_mailbox_create_owner(st, name, opts, 0, err);
}

int store_mailbox_get(struct store *st, const char *name, struct store_mailbox_info *mi,
		      struct terr *err)
{
	struct ustore *u;
	if (store_ustore_for_mailbox(st, name, 0, &u, err) < 0)
		return -1;
	struct buf sql = BUF_INIT;
	buf_printf(&sql, "SELECT %s FROM mailboxes WHERE name = ?;", mbox_cols);
	sqlite3_stmt *s = store_stmt(&u->sql, sql.ptr, err);
	buf_free(&sql);
	if (!s)
		return -1;
	sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	int rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		store_mbox_info_from_row(s, mi);
	store_stmt_put(&u->sql, s);
	if (rc == SQLITE_ROW)
		return 0;
	if (rc == SQLITE_DONE)
		return terr_set(err, TE_NOTFOUND, "mailbox '%s' does not exist", name);
	return store_sql_fail(u->db, "get mailbox", err);
}

struct list_ctx {
	store_mailbox_cb *cb;
	void *rock;
	int stop;
};

static int list_owner(struct store *st, const char *owner, struct list_ctx *lc, struct terr *err)
{
	struct ustore *u;
	struct terr e2;
	if (store_ustore(st, owner, 0, &u, &e2) < 0) {
		if (e2.code == TE_NOTFOUND)
			return 0;
		if (err)
			*err = e2;
		return -1;
	}
	struct buf sql = BUF_INIT;
	buf_printf(&sql, "SELECT %s FROM mailboxes ORDER BY name;", mbox_cols);
	sqlite3_stmt *s = store_stmt(&u->sql, sql.ptr, err);
	buf_free(&sql);
	if (!s)
		return -1;
	int rc = SQLITE_DONE;
	while (!lc->stop && (rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct store_mailbox_info mi;
		store_mbox_info_from_row(s, &mi);
		lc->stop = lc->cb(&mi, lc->rock);
		store_mailbox_info_free(&mi);
	}
	/* a database error is an error, never a shorter list */
	int failed = !lc->stop && rc != SQLITE_DONE ? store_sql_fail(u->db, "list mailboxes", err) : 0;
	store_stmt_put(&u->sql, s);
	return failed;
}

static int list_user_cb(const char *userid, void *rock)
{
	void **r = rock;
	struct store *st = r[0];
	struct list_ctx *lc = r[1];
	if (list_owner(st, userid, lc, r[2]) < 0) {
		r[3] = (void *)1;
		return 1;
	}
	return lc->stop;
}

int store_mailbox_list(struct store *st, const char *owner, store_mailbox_cb *cb, void *rock,
		       struct terr *err)
{
	struct list_ctx lc = { cb, rock, 0 };
	if (owner)
		return list_owner(st, owner, &lc, err);
	void *r[4] = { st, &lc, err, NULL };
	if (store_user_list(st, list_user_cb, r, err) < 0 || r[3])
		return -1;
	if (!lc.stop)
		return list_owner(st, "", &lc, err);
	return 0;
}

/* Renames within one owner's database. bump: give the renamed mailboxes a
 * new HIGHESTMODSEQ/FOLDERMODSEQ (a local rename); 0 keeps them (a
 * replica applying its master's rename, whose next APPLY MAILBOX carries
 * the master's modseqs). */
static int mailbox_rename(struct store *st, const char *oldname, const char *newname, int children, int bump,
			  struct terr *err);

int store_mailbox_rename(struct store *st, const char *oldname, const char *newname, int children,
			 struct terr *err)
{
	return mailbox_rename(st, oldname, newname, children, 1, err);
}

int store_apply_rename(struct store *st, const char *oldname, const char *newname, struct terr *err)
{
	return mailbox_rename(st, oldname, newname, 0, 0, err);
}

static int mailbox_rename(struct store *st, const char *oldname, const char *newname, int children, int bump,
			  struct terr *err)
{
	struct buf o1 = BUF_INIT, o2 = BUF_INIT, qroot = BUF_INIT, nn = BUF_INIT;
	struct utx tx = { 0 };
	struct ustore *u;
	int rc = -1;
	if (store_name_owner(oldname, &o1, err) < 0 || store_name_owner(newname, &o2, err) < 0)
		goto out;
	if (strcmp(buf_cstr(&o1), buf_cstr(&o2)) != 0) {
		terr_set(err, TE_INVALID, "renaming '%s' to another owner ('%s') is not supported yet",
			 oldname, newname);
		goto out;
	}
	if (store_ustore(st, buf_cstr(&o1), 0, &u, err) < 0)
		goto out;
	struct buf inbox = BUF_INIT;
	int is_inbox = *buf_cstr(&o1) && mboxname_user_inbox(o1.ptr, &inbox, NULL) == 0 &&
		       !strcmp(inbox.ptr, oldname);
	buf_free(&inbox);
	if (is_inbox) {
		terr_set(err, TE_INVALID, "renaming INBOX is not supported");
		goto out;
	}
	if (utx_begin(&tx, st, u, err) < 0)
		goto out;
	struct mbox_row row;
	struct terr e2;
	if (store_mbox_row(u, oldname, &row, err) < 0)
		goto out;
	if (store_mbox_row(u, newname, &row, &e2) == 0) {
		terr_set(err, TE_EXISTS, "mailbox '%s' already exists", newname);
		goto out;
	}
	/* with its children a mailbox cannot move below itself; alone it can
	 * (replication's APPLY RENAME moves one mailbox: A to A.B.C, its
	 * children already renamed away on the master) */
	if (children && name_covers(oldname, newname)) {
		terr_set(err, TE_INVALID, "cannot rename '%s' into itself", oldname);
		goto out;
	}
	uint64_t modseq;
	if (utx_modseq(&tx, &modseq, err) < 0)
		goto out;
	/* Collect the names to rename: the mailbox and, with children, every
	 * mailbox below it. */
	sqlite3_stmt *s = store_stmt(&u->sql,
		"SELECT name FROM mailboxes WHERE name = ?1 OR (?2 AND substr(name, 1, length(?1) + 1) = ?1 || '.')"
		" ORDER BY name;", err);
	if (!s)
		goto out;
	sqlite3_bind_text(s, 1, oldname, -1, SQLITE_STATIC);
	sqlite3_bind_int(s, 2, children);
	size_t n = 0, cap = 8;
	char **names = xmalloc(cap * sizeof *names);
	while (sqlite3_step(s) == SQLITE_ROW) {
		if (n == cap)
			names = xrealloc(names, (cap *= 2) * sizeof *names);
		names[n++] = xstrdup((const char *)sqlite3_column_text(s, 0));
	}
	store_stmt_put(&u->sql, s);
	rc = 0;
	for (size_t i = 0; i < n && rc == 0; i++) {
		buf_reset(&nn);
		buf_appends(&nn, newname);
		buf_appends(&nn, names[i] + strlen(oldname));
		rc = -1;
		if (mboxname_validate(nn.ptr, err) < 0)
			break;
		if (store_mbox_row(u, nn.ptr, &row, &e2) == 0) {
			terr_set(err, TE_EXISTS, "mailbox '%s' already exists", nn.ptr);
			break;
		}
		s = store_stmt(&u->sql, bump ? "UPDATE mailboxes SET name = ?, foldermodseq = ?,"
						    " highestmodseq = ? WHERE name = ?;" :
						    "UPDATE mailboxes SET name = ? WHERE name = ? AND ? AND ?;", err);
		if (!s)
			break;
		sqlite3_bind_text(s, 1, nn.ptr, -1, SQLITE_STATIC);
		if (bump) {
			sqlite3_bind_int64(s, 2, (sqlite3_int64)modseq);
			sqlite3_bind_int64(s, 3, (sqlite3_int64)modseq);
			sqlite3_bind_text(s, 4, names[i], -1, SQLITE_STATIC);
		} else {
			sqlite3_bind_text(s, 2, names[i], -1, SQLITE_STATIC);
			sqlite3_bind_int(s, 3, 1);
			sqlite3_bind_int(s, 4, 1);
		}
		int sr = sqlite3_step(s);
		store_stmt_put(&u->sql, s);
		if (sr != SQLITE_DONE) {
			store_sql_fail(u->db, "rename", err);
			break;
		}
		if (utx_log(&tx, "RENAME", names[i], nn.ptr, err) < 0 ||
		    utx_log(&tx, "MAILBOX", names[i], NULL, err) < 0 ||
		    utx_log(&tx, "MAILBOX", nn.ptr, NULL, err) < 0)
			break;
		rc = 0;
	}
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	if (rc < 0)
		goto out;
	rc = -1;
	/* Quota roots follow the new names. */
	s = store_stmt(&u->sql, "SELECT id, name, quotaroot FROM mailboxes;", err);
	if (!s)
		goto out;
	while (sqlite3_step(s) == SQLITE_ROW) {
		const char *name = (const char *)sqlite3_column_text(s, 1);
		const char *cur = (const char *)sqlite3_column_text(s, 2);
		if (store_quotaroot_for(u, name, &qroot, err) < 0)
			break;
		if (strcmp(cur, buf_cstr(&qroot)) != 0) {
			sqlite3_stmt *up = store_stmt(&u->sql,
				"UPDATE mailboxes SET quotaroot = ? WHERE id = ?;", err);
			if (!up)
				break;
			sqlite3_bind_text(up, 1, buf_cstr(&qroot), -1, SQLITE_STATIC);
			sqlite3_bind_int64(up, 2, sqlite3_column_int64(s, 0));
			sqlite3_step(up);
			store_stmt_put(&u->sql, up);
		}
	}
	store_stmt_put(&u->sql, s);
	if (utx_commit(&tx, err) < 0)
		goto out;
	char q1[LOGQ_MAX], q2[LOGQ_MAX];
	log_info("event=mailbox_rename mailbox=%s newname=%s", logq(q1, oldname), logq(q2, newname));
	rc = 0;
out:
	utx_rollback(&tx);
	buf_free(&o1);
	buf_free(&o2);
	buf_free(&qroot);
	buf_free(&nn);
	return rc;
}

static int mailbox_delete(struct store *st, const char *name, int allow_inbox, struct terr *err)
{
	struct buf owner = BUF_INIT, inbox = BUF_INIT;
	struct utx tx = { 0 };
	struct ustore *u;
	int rc = -1;
	if (store_name_owner(name, &owner, err) < 0)
		goto out;
	if (!allow_inbox && *buf_cstr(&owner) && mboxname_user_inbox(owner.ptr, &inbox, err) == 0 &&
	    !strcmp(inbox.ptr, name)) {
		terr_set(err, TE_INVALID, "a user's INBOX goes only with the user (tandem user del)");
		goto out;
	}
	if (store_ustore(st, buf_cstr(&owner), 0, &u, err) < 0)
		goto out;
	if (utx_begin(&tx, st, u, err) < 0)
		goto out;
	struct mbox_row row;
	if (store_mbox_row(u, name, &row, err) < 0)
		goto out;
	uint64_t modseq;
	if (utx_modseq(&tx, &modseq, err) < 0)
		goto out;
	sqlite3_stmt *s = store_stmt(&u->sql,
		"SELECT coalesce(sum(size), 0), count(*) FROM records WHERE mailbox_id = ? AND"
		" (sysflags & 32) = 0;", err);
	if (!s)
		goto out;
	sqlite3_bind_int64(s, 1, row.id);
	int64_t bytes = 0, msgs = 0;
	if (sqlite3_step(s) == SQLITE_ROW) {
		bytes = sqlite3_column_int64(s, 0);
		msgs = sqlite3_column_int64(s, 1);
	}
	store_stmt_put(&u->sql, s);
	if (store_quota_charge(&tx, row.quotaroot, -bytes, -msgs, 0, err) < 0)
		goto out;
	s = store_stmt(&u->sql, "INSERT OR REPLACE INTO tombstones VALUES(?, ?, ?, ?);", err);
	if (!s)
		goto out;
	sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, row.uniqueid, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 3, (sqlite3_int64)modseq);
	sqlite3_bind_int64(s, 4, store_now());
	int sr = sqlite3_step(s);
	store_stmt_put(&u->sql, s);
	if (sr != SQLITE_DONE) {
		store_sql_fail(u->db, "tombstone", err);
		goto out;
	}
	s = store_stmt(&u->sql, "DELETE FROM mailboxes WHERE id = ?;", err);
	if (!s)
		goto out;
	sqlite3_bind_int64(s, 1, row.id);
	sr = sqlite3_step(s);
	store_stmt_put(&u->sql, s);
	if (sr != SQLITE_DONE) {
		store_sql_fail(u->db, "delete mailbox", err);
		goto out;
	}
	if (store_recent_forget(u, row.uniqueid, err) < 0)
		goto out;
	if (utx_log(&tx, "UNMAILBOX", name, NULL, err) < 0 || utx_commit(&tx, err) < 0)
		goto out;
	char q[LOGQ_MAX];
	log_info("event=mailbox_delete mailbox=%s uniqueid=%s", logq(q, name), row.uniqueid);
	rc = store_blob_gc(st, u, err);
out:
	utx_rollback(&tx);
	buf_free(&owner);
	buf_free(&inbox);
	return rc;
}

int store_mailbox_delete(struct store *st, const char *name, struct terr *err)
{
	return mailbox_delete(st, name, 0, err);
}

int store_apply_unmailbox(struct store *st, const char *name, struct terr *err)
{
	return mailbox_delete(st, name, 1, err);
}

int store_mailbox_verify_crc(struct store *st, const char *name, uint32_t *crc_r,
			     uint32_t *annot_r, struct terr *err)
{
	struct ustore *u;
	if (store_ustore_for_mailbox(st, name, 0, &u, err) < 0)
		return -1;
	struct mbox_row row;
	if (store_mbox_row(u, name, &row, err) < 0)
		return -1;
	sqlite3_stmt *s = store_stmt(&u->sql,
		"SELECT uid, modseq, last_updated, sysflags, keywords, internaldate, guid, savedate,"
		" createdmodseq, thrid FROM records WHERE mailbox_id = ? AND (sysflags & 32) = 0;", err);
	if (!s)
		return -1;
	sqlite3_bind_int64(s, 1, row.id);
	uint32_t crc = 0, annot = SYNCCRC_ANNOT_START;
	while (sqlite3_step(s) == SQLITE_ROW) {
		uint32_t uid = (uint32_t)sqlite3_column_int64(s, 0);
		crc ^= synccrc_record(uid, (uint64_t)sqlite3_column_int64(s, 1), sqlite3_column_int64(s, 2),
				      (unsigned)sqlite3_column_int64(s, 3),
				      (const char *)sqlite3_column_text(s, 4), sqlite3_column_int64(s, 5),
				      (const char *)sqlite3_column_text(s, 6));
		annot ^= synccrc_annot_virtual(uid, (uint64_t)sqlite3_column_int64(s, 9),
					       sqlite3_column_int64(s, 7),
					       (uint64_t)sqlite3_column_int64(s, 8));
	}
	store_stmt_put(&u->sql, s);
	s = store_stmt(&u->sql,
		"SELECT a.uid, a.entry, a.userid, a.value FROM annotations a JOIN records r ON"
		" r.mailbox_id = a.mailbox_id AND r.uid = a.uid WHERE a.mailbox_id = ? AND a.uid > 0"
		" AND (r.sysflags & 32) = 0;", err);
	if (!s)
		return -1;
	sqlite3_bind_int64(s, 1, row.id);
	while (sqlite3_step(s) == SQLITE_ROW)
		annot ^= synccrc_annot_entry((uint32_t)sqlite3_column_int64(s, 0),
					     (const char *)sqlite3_column_text(s, 1),
					     (const char *)sqlite3_column_text(s, 2),
					     sqlite3_column_blob(s, 3), (size_t)sqlite3_column_bytes(s, 3));
	store_stmt_put(&u->sql, s);
	*crc_r = crc;
	*annot_r = annot;
	return crc == row.sync_crc && annot == row.sync_crc_annot;
}

int store_mailbox_was_deleted(struct store *st, const char *name, const char *uniqueid, struct terr *err)
{
	struct ustore *u;
	struct terr e2 = { 0 };
	if (store_ustore_for_mailbox(st, name, 0, &u, &e2) < 0) {
		if (e2.code == TE_NOTFOUND)
			return 0;
		*err = e2;
		return -1;
	}
	return store_stmt_exists(&u->sql, "SELECT 1 FROM tombstones WHERE uniqueid = ?;", uniqueid, "tombstones", err);
}
