/* cmd_select.c: SELECT, EXAMINE (with CONDSTORE, RFC 7162), CLOSE and
 * UNSELECT (RFC 3691). SELECT takes the mailbox's \Recent messages
 * (view.c); EXAMINE shows them without taking them (RFC 3501 6.3.2). */
#include "imapd/imapd-private.h"

#include "lib/xalloc.h"
#include "store/store.h"

#include <string.h>

static void write_flag_lists(struct imapd_session *s, const struct imapd_view *v)
{
	const char *kw = buf_cstr(&v->keywords), *sp = *kw ? " " : "";
	imapd_printf(s, "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft%s%s)\r\n", sp, kw);
	if (v->readonly)
		imapd_printf(s, "* OK [PERMANENTFLAGS ()] Read-only mailbox\r\n");
	else
		imapd_printf(s, "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft%s%s%s)] Ok\r\n",
			     sp, kw, (v->rights & IMAPD_R_WRITE) ? " \\*" : "");
}

/* RFC 7162 3.2.5: what changed since the client's modseq: the UIDs
 * expunged, then the flags of the messages changed (both among the UIDs
 * it knows, when it said which). */
static void qresync_catch_up(struct imapd_session *s, const struct imap_select *q)
{
	struct imapd_view *v = s->sel;
	imapd_view_vanished_earlier(s, q->q_modseq, q->q_has_known ? &q->q_known : NULL);
	struct buf line = BUF_INIT;
	for (size_t i = 0; i < v->n; i++) {
		const struct imapd_msg *m = &v->msgs[i];
		if (m->modseq <= q->q_modseq ||
		    (q->q_has_known && !imap_seqset_contains(&q->q_known, m->uid, v->last_uid)))
			continue;
		buf_reset(&line);
		buf_printf(&line, "* %zu FETCH (UID %u FLAGS ", i + 1, m->uid);
		imapd_write_flags(&line, m->recent, m->sysflags, m->keywords);
		buf_printf(&line, " MODSEQ (%llu))\r\n", (unsigned long long)m->modseq);
		buf_append(&s->out, line.ptr, line.len);
		imapd_maybe_flush(s);
	}
	buf_free(&line);
}

int imapd_cmd_select(struct imapd_session *s, const struct imap_cmd *cmd)
{
	int examine = cmd->id == IMAP_CMD_EXAMINE;
	struct buf name = BUF_INIT;
	struct store_mailbox_info mi = { 0 };
	struct terr err = { 0 };
	unsigned rights = 0;
	if (cmd->u.select.qresync && !s->qresync) {
		imapd_bad(s, NULL, "QRESYNC is not enabled");	/* RFC 7162 3.2.5 */
		return 0;
	}
	/* a SELECT, even a failing one, leaves the selected state first */
	if (s->sel && s->qresync)
		imapd_printf(s, "* OK [CLOSED] Previous mailbox closed\r\n");	/* RFC 7162 3.2.11 */
	imapd_view_free(&s->sel);
	imapd_loaded_clear(&s->cur);
	if (imapd_mailbox_get(s, cmd->u.select.mailbox, IMAPD_R_READ, &name, &mi, &rights) < 0)
		goto out;
	if (mi.mboxtype && *mi.mboxtype) {
		imapd_no(s, "CANNOT", "Invalid mailbox type");	/* a #sieve folder is not mail */
		goto out;
	}
	if (cmd->u.select.condstore)
		s->condstore = 1;
	int readonly = examine || server_role_refuses_writes(s->env->conf) ||
		       !(rights & (IMAPD_R_SEEN | IMAPD_R_WRITE | IMAPD_R_DELETE_MSG | IMAPD_R_EXPUNGE));
	struct imapd_view *v;
	if (imapd_view_open(s, &mi, readonly, rights, !examine, &v, &err) < 0) {
		imapd_no_err(s, "select", &err);
		goto out;
	}
	s->sel = v;
	write_flag_lists(s, v);
	imapd_printf(s, "* %zu EXISTS\r\n* %zu RECENT\r\n", v->n, v->nrecent);
	for (size_t i = 0; i < v->n; i++)
		if (!(v->msgs[i].sysflags & SYSFLAG_SEEN)) {
			imapd_printf(s, "* OK [UNSEEN %zu] First unseen\r\n", i + 1);
			break;
		}
	imapd_printf(s, "* OK [UIDVALIDITY %u] Ok\r\n* OK [UIDNEXT %u] Ok\r\n", v->uidvalidity, v->last_uid + 1);
	imapd_printf(s, "* OK [HIGHESTMODSEQ %llu] Ok\r\n", (unsigned long long)v->highestmodseq);
	imapd_printf(s, "* OK [MAILBOXID (%s)] Ok\r\n", v->uniqueid);
	if (cmd->u.select.qresync && cmd->u.select.q_uidvalidity == v->uidvalidity)
		qresync_catch_up(s, &cmd->u.select);
	imapd_ok(s, readonly ? "READ-ONLY" : "READ-WRITE", "%s completed", examine ? "EXAMINE" : "SELECT");
	imapd_log_event(s, examine ? "examine" : "select", v->name, "exists=%zu", v->n);
out:
	store_mailbox_info_free(&mi);
	buf_free(&name);
	return 0;
}

int imapd_cmd_close(struct imapd_session *s, const struct imap_cmd *cmd)
{
	(void)cmd;
	struct imapd_view *v = s->sel;
	struct terr err = { 0 };
	if (!v->readonly && (v->rights & IMAPD_R_EXPUNGE)) {
		/* expunge silently (no EXPUNGE responses after CLOSE) */
		uint32_t *uids = xmalloc((v->n ? v->n : 1) * sizeof *uids);
		size_t n = 0, count = 0;
		for (size_t i = 0; i < v->n; i++)
			if (!v->msgs[i].gone && (v->msgs[i].sysflags & SYSFLAG_DELETED))
				uids[n++] = v->msgs[i].uid;
		if (n && store_expunge(s->st, v->name, uids, n, &count, &err) < 0)
			imapd_no_err(s, "close_expunge", &err);
		else if (count)
			imapd_log_event(s, "expunge", v->name, "count=%zu via=close", count);
		free(uids);
	}
	imapd_view_free(&s->sel);
	imapd_loaded_clear(&s->cur);
	return 0;
}

int imapd_cmd_unselect(struct imapd_session *s, const struct imap_cmd *cmd)
{
	(void)cmd;
	imapd_view_free(&s->sel);
	imapd_loaded_clear(&s->cur);
	return 0;
}
