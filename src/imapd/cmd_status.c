/* cmd_status.c: STATUS (RFC 3501 6.3.10, HIGHESTMODSEQ from RFC 7162,
 * SIZE from RFC 8438, DELETED from RFC 9051) and the "* STATUS" line that
 * LIST-STATUS (RFC 5819) sends too. RECENT: for the selected mailbox the
 * session's own \Recent messages, else those no session has taken yet
 * (above the mailbox's mark, view.c), as Cyrus counts them. */
#include "imapd/imapd-private.h"

#include "proto/imap/imap_write.h"
#include "store/store.h"

#include <string.h>

/* What the message records give: counts and sizes of the live ones. */
struct status_counts {
	uint32_t messages, unseen, deleted, recent;
	uint32_t recent_mark;	/* UIDs above it are not taken yet */
	uint64_t size;
};

static int count_record(const struct store_record *r, void *rock)
{
	struct status_counts *c = rock;
	c->messages++;
	c->size += r->size;
	if (!(r->sysflags & SYSFLAG_SEEN))
		c->unseen++;
	if (r->sysflags & SYSFLAG_DELETED)
		c->deleted++;
	if (r->uid > c->recent_mark)
		c->recent++;
	return 0;
}

static void put_item(struct buf *b, int *first, const char *name, unsigned long long v)
{
	buf_printf(b, "%s%s %llu", *first ? "" : " ", name, v);
	*first = 0;
}

static void write_items(struct buf *b, const struct store_mailbox_info *mi, const struct status_counts *c,
			unsigned items)
{
	int first = 1;
	buf_putc(b, '(');
	if (items & IMAP_STATUS_MESSAGES)
		put_item(b, &first, "MESSAGES", c->messages);
	if (items & IMAP_STATUS_RECENT)
		put_item(b, &first, "RECENT", c->recent);
	if (items & IMAP_STATUS_UIDNEXT)
		put_item(b, &first, "UIDNEXT", (unsigned long long)mi->last_uid + 1);
	if (items & IMAP_STATUS_UIDVALIDITY)
		put_item(b, &first, "UIDVALIDITY", mi->uidvalidity);
	if (items & IMAP_STATUS_UNSEEN)
		put_item(b, &first, "UNSEEN", c->unseen);
	if (items & IMAP_STATUS_HIGHESTMODSEQ)
		put_item(b, &first, "HIGHESTMODSEQ", (unsigned long long)mi->highestmodseq);
	if (items & IMAP_STATUS_SIZE)
		put_item(b, &first, "SIZE", (unsigned long long)c->size);
	if (items & IMAP_STATUS_DELETED)
		put_item(b, &first, "DELETED", c->deleted);
	if (items & IMAP_STATUS_MAILBOXID) {
		buf_printf(b, "%sMAILBOXID (%s)", first ? "" : " ", mi->uniqueid);
		first = 0;
	}
	buf_appends(b, ")\r\n");
}

int imapd_status_write(struct imapd_session *s, const char *internal, const char *external, unsigned items)
{
	struct store_mailbox_info mi = { 0 };
	struct status_counts c = { 0 };
	struct terr err = { 0 };
	if (store_mailbox_get(s->st, internal, &mi, &err) < 0) {
		imapd_no_err(s, "status", &err);
		return -1;
	}
	unsigned need = IMAP_STATUS_MESSAGES | IMAP_STATUS_UNSEEN | IMAP_STATUS_SIZE | IMAP_STATUS_DELETED |
			IMAP_STATUS_RECENT;
	int selected = s->sel && !strcmp(s->sel->uniqueid, mi.uniqueid);
	if ((items & IMAP_STATUS_RECENT) && !selected &&
	    store_recent_get(s->st, internal, mi.uniqueid, &c.recent_mark, &err) < 0) {
		store_mailbox_info_free(&mi);
		imapd_no_err(s, "status", &err);
		return -1;
	}
	if ((items & need) && store_records(s->st, internal, 0, 0, count_record, &c, &err) < 0) {
		store_mailbox_info_free(&mi);
		imapd_no_err(s, "status", &err);
		return -1;
	}
	if (selected)
		c.recent = (uint32_t)s->sel->nrecent;
	buf_appends(&s->out, "* STATUS ");
	imap_write_astring(&s->out, external, strlen(external));
	buf_putc(&s->out, ' ');
	write_items(&s->out, &mi, &c, items);
	store_mailbox_info_free(&mi);
	imapd_maybe_flush(s);
	return 0;
}

int imapd_cmd_status(struct imapd_session *s, const struct imap_cmd *cmd)
{
	struct buf name = BUF_INIT;
	struct store_mailbox_info mi = { 0 };
	if (imapd_mailbox_get(s, cmd->u.status.mailbox, IMAPD_R_READ, &name, &mi, NULL) == 0) {
		if (imapd_status_write(s, name.ptr, cmd->u.status.mailbox, cmd->u.status.items) == 0)
			imapd_ok(s, NULL, "STATUS completed");
		store_mailbox_info_free(&mi);
	}
	buf_free(&name);
	return 0;
}
