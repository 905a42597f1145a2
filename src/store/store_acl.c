/* store_acl.c: replacing a mailbox's ACL string, the one mailbox field
 * the IMAP ACL commands (SETACL, DELETEACL) change.
 *
 * Like every mutation it is one transaction: the mailbox gets a new
 * modseq (highestmodseq and foldermodseq, as Cyrus bumps both when an ACL
 * changes) and a MAILBOX change-log line, so replicas hear of it.
 */
#include "store/store-private.h"

#include "lib/log.h"

#include <string.h>
#include <strings.h>

void store_acl_each(const char *acl, store_acl_cb *cb, void *rock)
{
	const char *p = acl ? acl : "";
	while (*p) {
		const char *t1 = strchr(p, '\t');
		if (!t1)
			return;
		const char *r = t1 + 1;
		const char *t2 = strchr(r, '\t');
		size_t rlen = t2 ? (size_t)(t2 - r) : strlen(r);
		if (t1 > p)
			cb(p, (size_t)(t1 - p), r, rlen, rock);
		if (!t2)
			return;
		p = t2 + 1;
	}
}

static int acl_valid(const char *acl)
{
	for (const char *p = acl; *p; p++)
		if (*p == '\r' || *p == '\n')
			return 0;
	return 1;
}

static int update_acl(struct utx *tx, int64_t id, const char *acl, uint64_t modseq, struct terr *err)
{
	sqlite3_stmt *s = store_stmt(&tx->u->sql,
		"UPDATE mailboxes SET acl = ?, highestmodseq = ?, foldermodseq = ? WHERE id = ?;", err);
	if (!s)
		return -1;
	sqlite3_bind_text(s, 1, acl, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, (sqlite3_int64)modseq);
	sqlite3_bind_int64(s, 3, (sqlite3_int64)modseq);
	sqlite3_bind_int64(s, 4, id);
	int rc = sqlite3_step(s) == SQLITE_DONE ? 0 : store_sql_fail(tx->u->db, "set acl", err);
	store_stmt_put(&tx->u->sql, s);
	return rc;
}

int store_mailbox_set_acl(struct store *st, const char *name, const char *acl, struct terr *err)
{
	if (!acl || !acl_valid(acl))
		return terr_set(err, TE_INVALID, "bad ACL string");
	struct ustore *u;
	if (store_ustore_for_mailbox(st, name, 0, &u, err) < 0)
		return -1;
	struct utx tx = { 0 };
	if (utx_begin(&tx, st, u, err) < 0)
		return -1;
	int rc = -1;
	struct mbox_row row;
	uint64_t modseq;
	if (store_mbox_row(u, name, &row, err) < 0 || utx_modseq(&tx, &modseq, err) < 0 ||
	    update_acl(&tx, row.id, acl, modseq, err) < 0)
		goto out;
	if (utx_log(&tx, "MAILBOX", name, NULL, err) < 0 || utx_commit(&tx, err) < 0)
		goto out;
	char q[LOGQ_MAX];
	log_info("event=mailbox_acl mailbox=%s modseq=%llu", logq(q, name), (unsigned long long)modseq);
	rc = 0;
out:
	utx_rollback(&tx);
	return rc;
}

struct post_ctx {
	const char *sender;
	int pos, neg;
};

static void post_cb(const char *id, size_t idlen, const char *rights, size_t rlen, void *rock)
{
	struct post_ctx *pc = rock;
	int is_neg = idlen && id[0] == '-';
	if (is_neg) {
		id++;
		idlen--;
	}
	int match = (idlen == 6 && !memcmp(id, "anyone", 6)) || (idlen == 9 && !memcmp(id, "anonymous", 9)) ||
		    (pc->sender && *pc->sender && strlen(pc->sender) == idlen && !strncasecmp(id, pc->sender, idlen));
	if (match && memchr(rights, 'p', rlen)) {
		if (is_neg)
			pc->neg = 1;
		else
			pc->pos = 1;
	}
}

int store_acl_grants_post(const char *acl, const char *sender)
{
	struct post_ctx pc = { sender, 0, 0 };
	store_acl_each(acl, post_cb, &pc);
	return pc.pos && !pc.neg;
}
