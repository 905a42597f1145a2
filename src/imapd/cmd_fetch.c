/* cmd_fetch.c: FETCH and UID FETCH (RFC 3501 6.4.5), with CHANGEDSINCE
 * and MODSEQ (RFC 7162).
 *
 * Items that read the message (ENVELOPE, BODY[...], BODYSTRUCTURE ...)
 * load it once per message; BODY[] and RFC822.SIZE need no parse. Items
 * that read the body without .PEEK set \Seen first (one store call for
 * the whole set), and those messages' responses carry the new FLAGS.
 */
#include "imapd/imapd-private.h"

#include "lib/xalloc.h"
#include "proto/imap/imap_write.h"
#include "proto/mime/mime.h"
#include "store/store.h"

#include <string.h>

static int sets_seen(const struct imap_fetch_att *a)
{
	return (a->item == IMAP_FETCH_BODY_SECTION && !a->peek) || a->item == IMAP_FETCH_RFC822 ||
	       a->item == IMAP_FETCH_RFC822_TEXT;
}

static int needs_parse(const struct imap_fetch_att *a)
{
	switch (a->item) {
	case IMAP_FETCH_ENVELOPE:
	case IMAP_FETCH_RFC822_HEADER:
	case IMAP_FETCH_RFC822_TEXT:
	case IMAP_FETCH_BODY:
	case IMAP_FETCH_BODYSTRUCTURE:
		return 1;
	case IMAP_FETCH_BODY_SECTION:
		return a->section.nparts > 0 || a->section.spec != IMAP_SECT_ALL;
	default:
		return 0;
	}
}

static int needs_load(const struct imap_fetch_att *a)
{
	return needs_parse(a) || a->item == IMAP_FETCH_RFC822 || a->item == IMAP_FETCH_BODY_SECTION;
}

static enum mime_section_text spec_of(enum imap_section_spec sp)
{
	switch (sp) {
	case IMAP_SECT_HEADER:
		return MIME_SECTION_HEADER;
	case IMAP_SECT_HEADER_FIELDS:
		return MIME_SECTION_HEADER_FIELDS;
	case IMAP_SECT_HEADER_FIELDS_NOT:
		return MIME_SECTION_HEADER_FIELDS_NOT;
	case IMAP_SECT_TEXT:
		return MIME_SECTION_TEXT;
	case IMAP_SECT_MIME:
		return MIME_SECTION_MIME;
	default:
		return MIME_SECTION_NONE;
	}
}

/* The bytes of a section of the loaded message: 1 found (data/len set,
 * maybe in scratch), 0 no such part. */
static int section_bytes(struct imapd_session *s, const struct imap_section *sec, struct buf *scratch,
			 const char **data, size_t *len)
{
	const struct imapd_loaded *l = &s->cur;
	if (sec->nparts == 0 && sec->spec == IMAP_SECT_ALL) {
		*data = l->data.ptr ? l->data.ptr : "";
		*len = l->data.len;
		return 1;
	}
	if (sec->nparts > MIME_SECTION_MAX_PATH)
		return 0;
	struct mime_section ms;
	memset(&ms, 0, sizeof ms);
	ms.npath = sec->nparts;
	for (size_t i = 0; i < sec->nparts; i++)
		ms.path[i] = sec->parts[i];
	ms.text = spec_of(sec->spec);
	for (size_t i = 0; i < sec->fields.count; i++)
		mime_section_add_field(&ms, sec->fields.v[i], strlen(sec->fields.v[i]));
	struct terr err = { 0 };
	int found = mime_section_fetch(l->mime, &ms, scratch, data, len, &err) == 0;
	mime_section_clear(&ms);
	return found;
}

static void write_section(struct imapd_session *s, const struct imap_fetch_att *a, struct buf *b, struct buf *scratch)
{
	const char *data;
	size_t len;
	int found = section_bytes(s, &a->section, scratch, &data, &len);
	buf_printf(b, "BODY[%s]", a->section.text ? a->section.text : "");
	if (a->partial)
		buf_printf(b, "<%u>", a->offset);
	buf_putc(b, ' ');
	if (!found) {
		buf_appends(b, "NIL");
		return;
	}
	if (a->partial) {
		if (a->offset >= len) {
			len = 0;
		} else {
			data += a->offset;
			len -= a->offset;
			if (len > a->length)
				len = a->length;
		}
	}
	imap_write_literal(b, data, len);
}

static void write_part(struct buf *b, const char *name, const struct imapd_loaded *l, int header)
{
	const struct mime_part *root = l->mime->root;
	size_t off = header ? root->hdr_off : root->body_off, len = header ? root->hdr_len : root->body_len;
	buf_printf(b, "%s ", name);
	imap_write_literal(b, l->data.ptr + off, len);
}

/* One message's response into b; -1 when it could not be read. */
static int fetch_one(struct imapd_session *s, size_t i, const struct imap_fetch *f, int uid_cmd, struct buf *b,
		     struct buf *scratch)
{
	struct imapd_view *v = s->sel;
	struct imapd_msg *m = &v->msgs[i];
	int load = 0, parse = 0, has_uid = 0, has_flags = 0, has_modseq = 0;
	for (size_t k = 0; k < f->natts; k++) {
		load |= needs_load(&f->atts[k]);
		parse |= needs_parse(&f->atts[k]);
		has_uid |= f->atts[k].item == IMAP_FETCH_UID;
		has_flags |= f->atts[k].item == IMAP_FETCH_FLAGS;
		has_modseq |= f->atts[k].item == IMAP_FETCH_MODSEQ;
	}
	if (load && imapd_load(s, v->name, m, parse) < 0)
		return -1;
	buf_printf(b, "* %zu FETCH (", i + 1);
	int first = 1;
	if (uid_cmd && !has_uid) {
		buf_printf(b, "UID %u", m->uid);
		first = 0;
	}
	for (size_t k = 0; k < f->natts; k++) {
		const struct imap_fetch_att *a = &f->atts[k];
		if (!first)
			buf_putc(b, ' ');
		first = 0;
		switch (a->item) {
		case IMAP_FETCH_ENVELOPE:
			buf_appends(b, "ENVELOPE ");
			mime_envelope_write(s->cur.mime, b);
			break;
		case IMAP_FETCH_FLAGS:
			buf_appends(b, "FLAGS ");
			imapd_write_flags(b, m->sysflags, m->keywords);
			break;
		case IMAP_FETCH_INTERNALDATE:
			buf_appends(b, "INTERNALDATE ");
			imap_write_datetime(b, (time_t)m->internaldate, 0);
			break;
		case IMAP_FETCH_RFC822:
			buf_appends(b, "RFC822 ");
			imap_write_literal(b, s->cur.data.ptr ? s->cur.data.ptr : "", s->cur.data.len);
			break;
		case IMAP_FETCH_RFC822_HEADER:
			write_part(b, "RFC822.HEADER", &s->cur, 1);
			break;
		case IMAP_FETCH_RFC822_TEXT:
			write_part(b, "RFC822.TEXT", &s->cur, 0);
			break;
		case IMAP_FETCH_RFC822_SIZE:
			buf_printf(b, "RFC822.SIZE %u", m->size);
			break;
		case IMAP_FETCH_BODY:
			buf_appends(b, "BODY ");
			mime_bodystructure_write(s->cur.mime, 0, b);
			break;
		case IMAP_FETCH_BODYSTRUCTURE:
			buf_appends(b, "BODYSTRUCTURE ");
			mime_bodystructure_write(s->cur.mime, 1, b);
			break;
		case IMAP_FETCH_UID:
			buf_printf(b, "UID %u", m->uid);
			break;
		case IMAP_FETCH_MODSEQ:
			buf_printf(b, "MODSEQ (%llu)", (unsigned long long)m->modseq);
			break;
		case IMAP_FETCH_BODY_SECTION:
			write_section(s, a, b, scratch);
			break;
		}
	}
	int changed = m->seen_fetch || m->dirty;
	if (changed) {
		/* \Seen was just set (by us or meanwhile by someone): say so */
		if (!has_flags) {
			buf_appends(b, first ? "FLAGS " : " FLAGS ");
			imapd_write_flags(b, m->sysflags, m->keywords);
			first = 0;
		}
		m->seen_fetch = 0;
		m->dirty = 0;
	}
	if ((f->has_changedsince || (s->condstore && changed)) && !has_modseq)
		buf_printf(b, "%sMODSEQ (%llu)", first ? "" : " ", (unsigned long long)m->modseq);
	buf_appends(b, ")\r\n");
	return 0;
}

/* Sets \Seen on the unseen messages among idx (one store call). */
static void mark_seen(struct imapd_session *s, const size_t *idx, size_t n)
{
	struct imapd_view *v = s->sel;
	uint32_t *uids = xmalloc((n ? n : 1) * sizeof *uids);
	size_t k = 0;
	for (size_t j = 0; j < n; j++) {
		struct imapd_msg *m = &v->msgs[idx[j]];
		if (!m->gone && !(m->sysflags & SYSFLAG_SEEN))
			uids[k++] = m->uid;
	}
	struct terr err = { 0 };
	if (k && v->seen_private) {
		/* another user's \Seen: their seen state (seen.c) */
		if (imapd_seen_change(s, idx, n, 1, &err) < 0)
			imapd_log_event(s, "seen_fail", v->name, "error=\"%s\"", err.msg);
		for (size_t j = 0; j < n; j++)
			if (!v->msgs[idx[j]].gone)
				v->msgs[idx[j]].seen_fetch = 1;
	} else if (k && store_set_flags(s->st, v->name, uids, k, STORE_FLAGS_ADD, SYSFLAG_SEEN, NULL, 0, NULL, &err) == 0) {
		imapd_view_poll(s);
		for (size_t j = 0; j < k; j++) {
			long i = imapd_view_find(v, uids[j]);
			if (i >= 0)
				v->msgs[i].seen_fetch = 1;
		}
	} else if (k) {
		imapd_log_event(s, "seen_fail", v->name, "error=\"%s\"", err.msg);
	}
	free(uids);
}

int imapd_cmd_fetch(struct imapd_session *s, const struct imap_cmd *cmd)
{
	const struct imap_fetch *f = &cmd->u.fetch;
	struct imapd_view *v = s->sel;
	int seen = 0;
	for (size_t k = 0; k < f->natts; k++) {
		seen |= sets_seen(&f->atts[k]);
		if (f->atts[k].item == IMAP_FETCH_MODSEQ)
			s->condstore = 1;
	}
	if (f->has_changedsince)
		s->condstore = 1;
	if (!cmd->uid && !imapd_view_seq_valid(v, &f->set)) {
		imapd_bad(s, NULL, "Invalid message sequence number");
		return 0;
	}
	size_t *idx;
	size_t n = imapd_view_resolve(v, &f->set, cmd->uid, &idx);
	if (seen && !v->readonly && (v->rights & IMAPD_R_SEEN))
		mark_seen(s, idx, n);
	struct buf b = BUF_INIT, scratch = BUF_INIT;
	size_t failed = 0;
	for (size_t j = 0; j < n && !s->dead; j++) {
		struct imapd_msg *m = &v->msgs[idx[j]];
		if (f->has_changedsince && m->modseq <= f->changedsince)
			continue;
		buf_reset(&b);
		if (fetch_one(s, idx[j], f, cmd->uid, &b, &scratch) < 0) {
			failed++;
			continue;
		}
		buf_append(&s->out, b.ptr, b.len);
		imapd_maybe_flush(s);
	}
	buf_free(&b);
	buf_free(&scratch);
	free(idx);
	if (failed)
		imapd_no(s, "SERVERBUG", "%zu message(s) could not be read", failed);
	return 0;
}
