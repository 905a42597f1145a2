/* cmd_append.c: APPEND (RFC 3501 6.3.11) with UIDPLUS's
 * [APPENDUID uidvalidity uid] (RFC 4315).
 *
 * The message bytes come either in the command (the parser's buffered
 * mode) or as IMAP_DATA chunks the session gathered in s->appendmsg.
 * The target needs the i right; flags the user could not set with STORE
 * (s for \Seen, t for \Deleted, w for the others) are dropped.
 */
#include "imapd/imapd-private.h"

#include "store/store.h"


/* Parses the flag list and keeps what the rights allow; -1 with BAD set. */
static int append_flags(struct imapd_session *s, const struct imap_append *a, unsigned rights, unsigned *sys_r,
			struct buf *kw_r)
{
	struct buf list = BUF_INIT;
	struct terr err = { 0 };
	*sys_r = 0;
	if (!a->has_flags)
		return 0;
	for (size_t i = 0; i < a->flags.count; i++) {
		if (i)
			buf_putc(&list, ' ');
		buf_appends(&list, a->flags.v[i]);
	}
	int rc = store_flags_parse(buf_cstr(&list), sys_r, kw_r, &err);
	buf_free(&list);
	if (rc < 0) {
		imapd_bad(s, NULL, "Invalid flag in list");
		return -1;
	}
	if (!(rights & IMAPD_R_SEEN))
		*sys_r &= ~(unsigned)SYSFLAG_SEEN;
	if (!(rights & IMAPD_R_DELETE_MSG))
		*sys_r &= ~(unsigned)SYSFLAG_DELETED;
	if (!(rights & IMAPD_R_WRITE)) {
		*sys_r &= SYSFLAG_SEEN | SYSFLAG_DELETED;
		buf_reset(kw_r);
	}
	return 0;
}

int imapd_cmd_append(struct imapd_session *s, const struct imap_cmd *cmd)
{
	const struct imap_append *a = &cmd->u.append;
	struct buf name = BUF_INIT, kw = BUF_INIT;
	struct store_mailbox_info mi = { 0 };
	struct terr err = { 0 };
	unsigned rights = 0, sys = 0;
	if (imapd_target_get(s, a->mailbox, &name, &mi, &rights) < 0 || append_flags(s, a, rights, &sys, &kw) < 0)
		goto out;
	const char *data = a->message ? a->message : s->appendmsg.ptr;
	size_t len = a->message ? (size_t)a->size : s->appendmsg.len;
	if (len == 0) {
		imapd_no(s, NULL, "Empty message");
		goto out;
	}
	if ((long long)len > s->maxmsg) {
		imapd_no(s, "TOOBIG", "Message too big");
		goto out;
	}
	struct store_append_opts o = { sys, kw.len ? kw.ptr : NULL, a->has_date ? (int64_t)a->date : 0 };
	uint32_t uid = 0;
	if (store_append(s->st, name.ptr, data, len, &o, &uid, &err) < 0) {
		imapd_no_err(s, "append", &err);
		goto out;
	}
	struct buf code = BUF_INIT;
	buf_printf(&code, "APPENDUID %u %u", mi.uidvalidity, uid);
	imapd_ok(s, code.ptr, "APPEND completed");
	buf_free(&code);
	imapd_log_event(s, "append", name.ptr, "uid=%u size=%zu", uid, len);
out:
	store_mailbox_info_free(&mi);
	buf_free(&name);
	buf_free(&kw);
	return 0;
}
