/* cmd_quota.c: the QUOTA commands (RFC 2087, RFC 9208): GETQUOTA,
 * GETQUOTAROOT and SETQUOTA (admins only). Resources are STORAGE (KiB)
 * and MESSAGE (count). A quota root is a mailbox; it is shown to the
 * client by that mailbox's external name ("INBOX" for one's own).
 */
#include "imapd/imapd-private.h"

#include "proto/imap/imap_write.h"
#include "store/store.h"

#include <string.h>

/* Appends " (STORAGE used limit MESSAGE used limit)" for the set limits. */
static void put_resources(struct buf *b, const struct store_quota *q)
{
	const char *sp = "";
	buf_appends(b, " (");
	if (q->storage_limit >= 0) {
		buf_printf(b, "STORAGE %lld %lld", (long long)(q->storage_used / 1024), (long long)q->storage_limit);
		sp = " ";
	}
	if (q->message_limit >= 0)
		buf_printf(b, "%sMESSAGE %lld %lld", sp, (long long)q->message_used, (long long)q->message_limit);
	buf_putc(b, ')');
}

/* "* QUOTA root (...)" for an internal root name. 0, or -1 with *err set
 * (TE_NOTFOUND: no such quota root). */
static int write_quota(struct imapd_session *s, const char *root, struct terr *err)
{
	struct store_quota q = { 0 };
	if (store_quota_get(s->st, root, &q, err) < 0)
		return -1;
	struct buf line = BUF_INIT, ext = BUF_INIT;
	imapd_name_out(s, root, &ext);
	buf_appends(&line, "* QUOTA ");
	imap_write_astring(&line, ext.ptr, ext.len);
	put_resources(&line, &q);
	buf_appends(&line, "\r\n");
	buf_append(&s->out, line.ptr, line.len);
	buf_free(&ext);
	buf_free(&line);
	store_quota_free(&q);
	return 0;
}

/* May the user read the quota of this root? Admins and the root's owner
 * may; others need the read right on the root mailbox. */
static int may_read_quota(struct imapd_session *s, const char *root)
{
	if (s->isadmin)
		return 1;
	struct buf owner = BUF_INIT;
	int own = mboxname_owner(root, &owner, NULL) == 1 && !strcmp(owner.ptr, s->user);
	buf_free(&owner);
	if (own)
		return 1;
	struct store_mailbox_info mi = { 0 };
	struct terr err = { 0 };
	if (store_mailbox_get(s->st, root, &mi, &err) < 0)
		return 0;
	int ok = (imapd_rights(s, root, mi.acl) & IMAPD_R_READ) != 0;
	store_mailbox_info_free(&mi);
	return ok;
}

int imapd_cmd_getquota(struct imapd_session *s, const struct imap_cmd *cmd)
{
	struct buf root = BUF_INIT;
	struct terr err = { 0 };
	if (imapd_name_in(s, cmd->u.getquota.root, &root) < 0)
		goto out;
	if (!may_read_quota(s, root.ptr)) {
		imapd_no(s, "NOPERM", "Permission denied");
		goto out;
	}
	if (write_quota(s, root.ptr, &err) < 0) {
		if (err.code == TE_NOTFOUND || err.code == TE_INVALID)
			imapd_no(s, "NONEXISTENT", "No such quota root");
		else
			imapd_no_err(s, "getquota", &err);
	}
out:
	buf_free(&root);
	return 0;
}

int imapd_cmd_getquotaroot(struct imapd_session *s, const struct imap_cmd *cmd)
{
	struct buf name = BUF_INIT, line = BUF_INIT, ext = BUF_INIT;
	struct store_mailbox_info mi;
	struct terr err = { 0 };
	if (imapd_mailbox_get(s, cmd->u.mailbox.mailbox, 0, &name, &mi, NULL) < 0)
		goto out;
	imapd_name_out(s, name.ptr, &ext);
	buf_appends(&line, "* QUOTAROOT ");
	imap_write_astring(&line, ext.ptr, ext.len);
	if (*mi.quotaroot) {
		imapd_name_out(s, mi.quotaroot, &ext);
		buf_putc(&line, ' ');
		imap_write_astring(&line, ext.ptr, ext.len);
	}
	buf_appends(&line, "\r\n");
	buf_append(&s->out, line.ptr, line.len);
	if (*mi.quotaroot && write_quota(s, mi.quotaroot, &err) < 0 && err.code != TE_NOTFOUND)
		imapd_no_err(s, "getquotaroot", &err);
	store_mailbox_info_free(&mi);
out:
	buf_free(&ext);
	buf_free(&line);
	buf_free(&name);
	return 0;
}

/* SETQUOTA's resource list to limits (-1: none). -1 with a NO set for a
 * resource we do not have. */
static int parse_limits(struct imapd_session *s, const struct imap_cmd *cmd, int64_t *storage, int64_t *messages)
{
	*storage = *messages = -1;
	for (size_t i = 0; i < cmd->u.setquota.count; i++) {
		const struct imap_quota_res *r = &cmd->u.setquota.res[i];
		if (!strcmp(r->name, "STORAGE")) {
			*storage = (int64_t)r->limit;
		} else if (!strcmp(r->name, "MESSAGE")) {
			*messages = (int64_t)r->limit;
		} else {
			imapd_no(s, NULL, "Unsupported quota resource");
			return -1;
		}
	}
	return 0;
}

int imapd_cmd_setquota(struct imapd_session *s, const struct imap_cmd *cmd)
{
	struct buf root = BUF_INIT;
	struct store_mailbox_info mi = { 0 };
	struct terr err = { 0 };
	int64_t storage, messages;
	if (!s->isadmin) {
		imapd_no(s, "NOPERM", "Only administrators may set quotas");
		goto out;
	}
	if (parse_limits(s, cmd, &storage, &messages) < 0 || imapd_name_in(s, cmd->u.setquota.root, &root) < 0)
		goto out;
	if (store_mailbox_get(s->st, root.ptr, &mi, &err) < 0) {
		if (err.code == TE_NOTFOUND || err.code == TE_INVALID)
			imapd_no(s, "NONEXISTENT", "A quota root must be an existing mailbox");
		else
			imapd_no_err(s, "setquota", &err);
		goto out;
	}
	if (cmd->u.setquota.count == 0) {
		/* no limits left: the root goes */
		if (store_quota_delete(s->st, root.ptr, &err) < 0 && err.code != TE_NOTFOUND)
			imapd_no_err(s, "setquota", &err);
		else
			imapd_log_event(s, "setquota", root.ptr, "removed=1");
		goto out;
	}
	if (store_quota_set(s->st, root.ptr, storage, messages, &err) < 0) {
		imapd_no_err(s, "setquota", &err);
		goto out;
	}
	imapd_log_event(s, "setquota", root.ptr, "storage=%lld messages=%lld", (long long)storage,
			(long long)messages);
	if (write_quota(s, root.ptr, &err) < 0)
		imapd_no_err(s, "setquota", &err);
out:
	store_mailbox_info_free(&mi);
	buf_free(&root);
	return 0;
}
