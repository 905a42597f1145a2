/* cmd_append.c: APPEND (RFC 3501 6.3.11) with UIDPLUS's
 * [APPENDUID uidvalidity uid-set] (RFC 4315) and MULTIAPPEND (RFC 3502:
 * several messages, stored in one transaction, all or none).
 *
 * The message bytes come either in the command (the parser's buffered
 * mode) or as IMAP_DATA chunks the session gathered in s->appendmsg, one
 * message after the other (their literal sizes split them).
 * The target needs the i right; flags the user could not set with STORE
 * (s for \Seen, t for \Deleted, w for the others) are dropped.
 */
#include "imapd/imapd-private.h"

#include "lib/xalloc.h"
#include "store/store.h"


/* Parses the flag list and keeps what the rights allow; -1 with BAD set. */
static int append_flags(struct imapd_session *s, int has_flags, const struct imap_strlist *flags, unsigned rights,
			unsigned *sys_r, struct buf *kw_r)
{
	struct buf list = BUF_INIT;
	struct terr err = { 0 };
	*sys_r = 0;
	if (!has_flags)
		return 0;
	for (size_t i = 0; i < flags->count; i++) {
		if (i)
			buf_putc(&list, ' ');
		buf_appends(&list, flags->v[i]);
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
	size_t n = 1 + a->nmore;
	struct buf name = BUF_INIT, ids = BUF_INIT;
	struct buf *kw = xcalloc(n, sizeof *kw);
	struct store_append_msg *msgs = xcalloc(n, sizeof *msgs);
	uint32_t *uids = xcalloc(n, sizeof *uids);
	struct store_mailbox_info mi = { 0 };
	struct terr err = { 0 };
	unsigned rights = 0;
	if (imapd_target_get(s, a->mailbox, &name, &mi, &rights) < 0)
		goto out;
	size_t off = 0, total = 0;
	for (size_t i = 0; i < n; i++) {
		const struct imap_append_part *pt = i ? &a->more[i - 1] : NULL;
		int has_flags = pt ? pt->has_flags : a->has_flags, has_date = pt ? pt->has_date : a->has_date;
		const struct imap_strlist *flags = pt ? &pt->flags : &a->flags;
		uint64_t size = pt ? pt->size : a->size;
		const char *given = pt ? pt->message : a->message;
		unsigned sys = 0;
		if (append_flags(s, has_flags, flags, rights, &sys, &kw[i]) < 0)
			goto out;
		msgs[i].opts.sysflags = sys;
		msgs[i].opts.keywords = kw[i].len ? kw[i].ptr : NULL;
		msgs[i].opts.internaldate = has_date ? (int64_t)(pt ? pt->date : a->date) : 0;
		if (given) {
			msgs[i].data = given;
		} else if (off + size <= s->appendmsg.len) {
			msgs[i].data = s->appendmsg.ptr + off;
			off += (size_t)size;
		} else {
			imapd_no(s, NULL, "Message data missing");
			goto out;
		}
		msgs[i].len = (size_t)size;
		if (msgs[i].len == 0) {
			imapd_no(s, NULL, "Empty message");
			goto out;
		}
		if ((long long)msgs[i].len > s->maxmsg) {
			imapd_no(s, "TOOBIG", "Message too big");
			goto out;
		}
		total += msgs[i].len;
	}
	if (store_append_multi(s->st, name.ptr, msgs, n, uids, &err) < 0) {
		imapd_no_err(s, "append", &err);
		goto out;
	}
	/* the UIDs are consecutive: one message "u", several "lo:hi" */
	buf_printf(&ids, "APPENDUID %u %u", mi.uidvalidity, uids[0]);
	if (n > 1)
		buf_printf(&ids, ":%u", uids[n - 1]);
	imapd_ok(s, ids.ptr, "APPEND completed");
	imapd_log_event(s, "append", name.ptr, "uid=%u messages=%zu size=%zu", uids[0], n, total);
out:
	store_mailbox_info_free(&mi);
	buf_free(&name);
	buf_free(&ids);
	for (size_t i = 0; i < n; i++)
		buf_free(&kw[i]);
	free(kw);
	free(msgs);
	free(uids);
	return 0;
}
