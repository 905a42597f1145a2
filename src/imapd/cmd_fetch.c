/* cmd_fetch.c: FETCH and UID FETCH (RFC 3501 6.4.5), with CHANGEDSINCE
 * and MODSEQ (RFC 7162).
 *
 * When no item needs the message bytes (only UID FLAGS INTERNALDATE
 * RFC822.SIZE MODSEQ ENVELOPE BODYSTRUCTURE BODY), ENVELOPE/BODY/
 * BODYSTRUCTURE come from the store's message cache: one query per run
 * of up to FETCH_CACHE_RUN messages, no message file opened. A message
 * without a cache row is read and parsed as below, and its row is filled
 * (one transaction per run). Other items load the message once per
 * message; BODY[] and RFC822.SIZE need no parse. Items that read the body
 * without .PEEK set \Seen first (one store call for the whole set), and
 * those messages' responses carry the new FLAGS.
 */
#include "imapd/imapd-private.h"

#include "lib/limits.h"

#include "lib/xalloc.h"
#include "msgcache/msgcache.h"
#include "proto/imap/imap_write.h"
#include "proto/mime/mime.h"
#include "store/store.h"

#include <string.h>

static int sets_seen(const struct imap_fetch_att *a)
{
	return ((a->item == IMAP_FETCH_BODY_SECTION || a->item == IMAP_FETCH_BINARY) && !a->peek) ||
	       a->item == IMAP_FETCH_RFC822 ||
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
	case IMAP_FETCH_PREVIEW:
		return 1;
	case IMAP_FETCH_BINARY:
	case IMAP_FETCH_BINARY_SIZE:
		return a->section.nparts > 0;
	default:
		return 0;
	}
}

static int needs_load(const struct imap_fetch_att *a)
{
	return needs_parse(a) || a->item == IMAP_FETCH_RFC822 || a->item == IMAP_FETCH_BODY_SECTION ||
	       a->item == IMAP_FETCH_BINARY || a->item == IMAP_FETCH_BINARY_SIZE;
}

/* Answered from the top-level header alone (imapd_load_header: the
 * message cache's header block, no file opened): what a client's message
 * list asks for (BODY.PEEK[HEADER.FIELDS (...)], RFC822.HEADER, ENVELOPE). */
static int header_only(const struct imap_fetch_att *a)
{
	switch (a->item) {
	case IMAP_FETCH_ENVELOPE:
	case IMAP_FETCH_RFC822_HEADER:
		return 1;
	case IMAP_FETCH_BODY_SECTION:
		return a->section.nparts == 0 && (a->section.spec == IMAP_SECT_HEADER ||
						  a->section.spec == IMAP_SECT_HEADER_FIELDS ||
						  a->section.spec == IMAP_SECT_HEADER_FIELDS_NOT);
	default:
		return 0;
	}
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

/* A literal, or a literal8 (RFC 3516) when the bytes hold a NUL, which a
 * literal may not (RFC 3501 9: CHAR8), as Cyrus sends them. */
static void put_literal(struct buf *b, const char *data, size_t len)
{
	if (len && memchr(data, '\0', len))
		buf_putc(b, '~');
	imap_write_literal(b, data, len);
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
	put_literal(b, data, len);
}

/* BINARY[...] and BINARY.SIZE[...] (RFC 3516): 0, or -1 when the part's
 * encoding is unknown (the command then answers NO [UNKNOWN-CTE]). */
static int write_binary(struct imapd_session *s, const struct imap_fetch_att *a, struct buf *b, struct buf *scratch)
{
	const struct imapd_loaded *l = &s->cur;
	struct terr err = { 0 };
	const char *data = l->data.ptr ? l->data.ptr : "";
	size_t len = l->data.len;
	int rc = 0;
	buf_reset(scratch);
	if (a->section.nparts) {
		rc = mime_section_binary(l->mime, a->section.parts, a->section.nparts, scratch, &err);
		data = scratch->ptr ? scratch->ptr : "";
		len = scratch->len;
	}
	buf_appends(b, a->item == IMAP_FETCH_BINARY_SIZE ? "BINARY.SIZE[" : "BINARY[");
	for (size_t k = 0; k < a->section.nparts; k++)
		buf_printf(b, "%s%u", k ? "." : "", a->section.parts[k]);
	buf_putc(b, ']');
	if (a->item == IMAP_FETCH_BINARY && a->partial)
		buf_printf(b, "<%u>", a->offset);
	buf_putc(b, ' ');
	if (rc < 0) {
		buf_appends(b, "NIL");
		return err.code == TE_INVALID ? -1 : 0;
	}
	if (a->item == IMAP_FETCH_BINARY_SIZE) {
		buf_printf(b, "%zu", len);
		return 0;
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
	put_literal(b, data, len);
	return 0;
}

static void write_part(struct buf *b, const char *name, const struct imapd_loaded *l, int header)
{
	const struct mime_part *root = l->mime->root;
	size_t off = header ? root->hdr_off : root->body_off, len = header ? root->hdr_len : root->body_len;
	buf_printf(b, "%s ", name);
	put_literal(b, l->data.ptr + off, len);
}

/* ---- the message cache --------------------------------------------------- */

/* FETCH_CACHE_RUN and FETCH_CACHE_GAP are in lib/limits.h. */

enum { FC_ENVELOPE, FC_BODYSTRUCTURE, FC_BODY, FC_N };

/* The cached strings of one message of a run. */
struct fetch_cached {
	int have;			/* off/len valid (from the cache) */
	size_t off[FC_N], len[FC_N];	/* into fetch_cache.arena */
	int computed;			/* own holds them (read from the file) */
	struct store_cache_strings own;
};

struct fetch_cache {
	const struct imapd_view *v;
	const size_t *idx;		/* the run's messages */
	size_t n, pos;
	struct fetch_cached *e;		/* [n] */
	struct buf arena;
};

/* 1 when every item can be answered from the record or the cache, and
 * one of them needs the cache. */
static int cache_usable(const struct imap_fetch *f)
{
	int want = 0;
	for (size_t k = 0; k < f->natts; k++) {
		switch (f->atts[k].item) {
		case IMAP_FETCH_ENVELOPE:
		case IMAP_FETCH_BODYSTRUCTURE:
		case IMAP_FETCH_BODY:
			want = 1;
			break;
		case IMAP_FETCH_UID:
		case IMAP_FETCH_FLAGS:
		case IMAP_FETCH_INTERNALDATE:
		case IMAP_FETCH_RFC822_SIZE:
		case IMAP_FETCH_MODSEQ:
		case IMAP_FETCH_EMAILID:
		case IMAP_FETCH_THREADID:
		case IMAP_FETCH_SAVEDATE:
			break;
		default:
			return 0;
		}
	}
	return want;
}

/* End (exclusive) of the run starting at idx[j]. */
static size_t run_end(const struct imapd_view *v, const size_t *idx, size_t j, size_t n)
{
	size_t e = j + 1;
	while (e < n && e - j < FETCH_CACHE_RUN && v->msgs[idx[e]].uid - v->msgs[idx[e - 1]].uid <= FETCH_CACHE_GAP)
		e++;
	return e;
}

static void arena_put(struct fetch_cache *fc, struct fetch_cached *c, int which, const char *p, size_t len)
{
	c->off[which] = fc->arena.len;
	c->len[which] = len;
	buf_append(&fc->arena, p, len);
}

static int cache_row_cb(const struct store_cache_row *row, void *rock)
{
	struct fetch_cache *fc = rock;
	while (fc->pos < fc->n && fc->v->msgs[fc->idx[fc->pos]].uid < row->uid)
		fc->pos++;
	for (size_t p = fc->pos; p < fc->n && fc->v->msgs[fc->idx[p]].uid == row->uid; p++) {
		struct fetch_cached *c = &fc->e[p];
		if (!row->envelope || !row->bodystructure || !row->body ||
		    strcmp(row->guid, fc->v->msgs[fc->idx[p]].guid) != 0)
			continue;
		arena_put(fc, c, FC_ENVELOPE, row->envelope, row->envelope_len);
		arena_put(fc, c, FC_BODYSTRUCTURE, row->bodystructure, row->bodystructure_len);
		arena_put(fc, c, FC_BODY, row->body, row->body_len);
		c->have = 1;
	}
	return fc->pos >= fc->n;
}

/* Reads the cache rows of the run idx[0, n) (one query). */
static void cache_load(struct imapd_session *s, const size_t *idx, size_t n, struct fetch_cache *fc)
{
	struct imapd_view *v = s->sel;
	fc->v = v;
	fc->idx = idx;
	fc->n = n;
	fc->pos = 0;
	fc->e = xcalloc(n, sizeof *fc->e);
	buf_reset(&fc->arena);
	struct terr err = { 0 };
	if (store_cache_range(s->st, v->name, v->msgs[idx[0]].uid, v->msgs[idx[n - 1]].uid, cache_row_cb, fc,
			      &err) < 0)
		imapd_log_event(s, "cache_read_fail", v->name, "error=\"%s\"", err.msg);
}

/* A message without a cache row: its strings from the file. */
static int cache_miss(struct imapd_session *s, size_t i, struct fetch_cached *c)
{
	if (imapd_load(s, s->sel->name, &s->sel->msgs[i], 1) < 0)
		return -1;
	msgcache_from_mime(s->cur.mime, &c->own);
	c->computed = 1;
	return 0;
}

/* Writes the computed rows of live messages to the cache, frees the run. */
static void cache_done(struct imapd_session *s, struct fetch_cache *fc)
{
	const char **guids = xcalloc(fc->n ? fc->n : 1, sizeof *guids);
	struct store_cache_strings *strs = xcalloc(fc->n ? fc->n : 1, sizeof *strs);
	size_t k = 0;
	for (size_t p = 0; p < fc->n; p++) {
		const struct imapd_msg *m = &fc->v->msgs[fc->idx[p]];
		if (fc->e[p].computed && !m->gone) {
			guids[k] = m->guid;
			strs[k++] = fc->e[p].own;
		}
	}
	struct terr err = { 0 };
	if (k && store_cache_put(s->st, fc->v->name, guids, strs, k, &err) < 0)
		imapd_log_event(s, "cache_fill_fail", fc->v->name, "error=\"%s\"", err.msg);
	else if (k)
		imapd_log_event(s, "cache_fill", fc->v->name, "messages=%zu", k);
	for (size_t p = 0; p < fc->n; p++)
		store_cache_strings_free(&fc->e[p].own);
	free(guids);
	free(strs);
	free(fc->e);
	fc->e = NULL;
	fc->n = 0;
}

/* Appends one cached string of c. */
static void put_cached(struct buf *b, const struct fetch_cache *fc, const struct fetch_cached *c, int which)
{
	if (c->computed) {
		const struct buf *o = which == FC_ENVELOPE ? &c->own.envelope :
				      which == FC_BODYSTRUCTURE ? &c->own.bodystructure : &c->own.body;
		buf_append(b, o->ptr ? o->ptr : "", o->len);
		return;
	}
	if (c->len[which])
		buf_append(b, fc->arena.ptr + c->off[which], c->len[which]);
}

/* One message's response into b; -1 when it could not be read. With c
 * (cache_usable items only), ENVELOPE/BODY/BODYSTRUCTURE come from it. */
static int fetch_one(struct imapd_session *s, size_t i, const struct imap_fetch *f, int uid_cmd, struct buf *b,
		     struct buf *scratch, const struct fetch_cache *fc, const struct fetch_cached *c)
{
	struct imapd_view *v = s->sel;
	struct imapd_msg *m = &v->msgs[i];
	int load = 0, parse = 0, has_uid = 0, has_flags = 0, has_modseq = 0, hdr = 1;
	for (size_t k = 0; k < f->natts; k++) {
		load |= needs_load(&f->atts[k]);
		if (needs_load(&f->atts[k]) && !header_only(&f->atts[k]))
			hdr = 0;
		parse |= needs_parse(&f->atts[k]);
		has_uid |= f->atts[k].item == IMAP_FETCH_UID;
		has_flags |= f->atts[k].item == IMAP_FETCH_FLAGS;
		has_modseq |= f->atts[k].item == IMAP_FETCH_MODSEQ;
	}
	if (load && !c && (hdr ? !imapd_load_header(s, v->name, m) : imapd_load(s, v->name, m, parse) < 0))
		return -1;
	buf_printf(b, "* %zu FETCH (", i + 1);
	int first = 1;
	if ((uid_cmd || s->qresync) && !has_uid) {	/* RFC 7162 3.2.4 */
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
			if (c)
				put_cached(b, fc, c, FC_ENVELOPE);
			else
				mime_envelope_write(s->cur.mime, b);
			break;
		case IMAP_FETCH_FLAGS:
			buf_appends(b, "FLAGS ");
			imapd_write_flags(b, m->recent, m->sysflags, m->keywords);
			break;
		case IMAP_FETCH_INTERNALDATE:
			buf_appends(b, "INTERNALDATE ");
			imap_write_datetime(b, (time_t)m->internaldate, 0);
			break;
		case IMAP_FETCH_RFC822:
			buf_appends(b, "RFC822 ");
			put_literal(b, s->cur.data.ptr ? s->cur.data.ptr : "", s->cur.data.len);
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
			if (c)
				put_cached(b, fc, c, FC_BODY);
			else
				mime_bodystructure_write(s->cur.mime, 0, b);
			break;
		case IMAP_FETCH_BODYSTRUCTURE:
			buf_appends(b, "BODYSTRUCTURE ");
			if (c)
				put_cached(b, fc, c, FC_BODYSTRUCTURE);
			else
				mime_bodystructure_write(s->cur.mime, 1, b);
			break;
		case IMAP_FETCH_UID:
			buf_printf(b, "UID %u", m->uid);
			break;
		case IMAP_FETCH_MODSEQ:
			buf_printf(b, "MODSEQ (%llu)", (unsigned long long)m->modseq);
			break;
		case IMAP_FETCH_EMAILID: {
			char id[26];
			imapd_emailid(m, id);
			buf_printf(b, "EMAILID (%s)", id);
			break;
		}
		case IMAP_FETCH_THREADID: {
			char id[18];
			if (imapd_threadid(m, id) == 0)
				buf_printf(b, "THREADID (%s)", id);
			else
				buf_appends(b, "THREADID NIL");
			break;
		}
		case IMAP_FETCH_BINARY:
		case IMAP_FETCH_BINARY_SIZE:
			if (write_binary(s, a, b, scratch) < 0)
				s->unknown_cte = 1;
			break;
		case IMAP_FETCH_PREVIEW: {
			struct buf pv = BUF_INIT;
			mime_preview(s->cur.mime, IMAP_PREVIEW_CHARS, &pv);
			buf_appends(b, "PREVIEW ");
			imap_write_string(b, pv.ptr ? pv.ptr : "", pv.len);
			buf_free(&pv);
			break;
		}
		case IMAP_FETCH_SAVEDATE:
			buf_appends(b, "SAVEDATE ");
			imap_write_datetime(b, (time_t)(m->savedate ? m->savedate : m->internaldate), 0);
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
			imapd_write_flags(b, m->recent, m->sysflags, m->keywords);
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
			imapd_condstore_enable(s);
	}
	if (f->has_changedsince)
		imapd_condstore_enable(s);
	if (!cmd->uid && !imapd_view_seq_valid(v, &f->set)) {
		imapd_bad(s, NULL, "Invalid message sequence number");
		return 0;
	}
	if (f->vanished && !s->qresync) {
		imapd_bad(s, NULL, "QRESYNC is not enabled");	/* RFC 7162 3.2.6 */
		return 0;
	}
	if (f->vanished)
		imapd_view_vanished_earlier(s, f->changedsince, &f->set);
	size_t *idx;
	size_t n = imapd_view_resolve(v, &f->set, cmd->uid, &idx);
	if (seen && !v->readonly && (v->rights & IMAPD_R_SEEN))
		mark_seen(s, idx, n);
	struct buf b = BUF_INIT, scratch = BUF_INIT;
	size_t failed = 0;
	int use_cache = cache_usable(f);
	struct fetch_cache fc;
	memset(&fc, 0, sizeof fc);
	for (size_t j = 0; j < n && !s->dead;) {
		size_t end = use_cache ? run_end(v, idx, j, n) : n;
		if (use_cache)
			cache_load(s, idx + j, end - j, &fc);
		for (size_t k = j; k < end && !s->dead; k++) {
			struct imapd_msg *m = &v->msgs[idx[k]];
			if (f->has_changedsince && m->modseq <= f->changedsince)
				continue;
			struct fetch_cached *c = use_cache ? &fc.e[k - j] : NULL;
			buf_reset(&b);
			if ((c && !c->have && cache_miss(s, idx[k], c) < 0) ||
			    fetch_one(s, idx[k], f, cmd->uid, &b, &scratch, &fc, c) < 0) {
				failed++;
				continue;
			}
			buf_append(&s->out, b.ptr, b.len);
			imapd_maybe_flush(s);
		}
		if (use_cache)
			cache_done(s, &fc);
		j = end;
	}
	buf_free(&fc.arena);
	buf_free(&b);
	buf_free(&scratch);
	free(idx);
	if (failed)
		imapd_no(s, "SERVERBUG", "%zu message(s) could not be read", failed);
	else if (s->unknown_cte)	/* RFC 3516 */
		imapd_no(s, "UNKNOWN-CTE", "A part has a content-transfer-encoding this server cannot decode");
	s->unknown_cte = 0;
	return 0;
}
