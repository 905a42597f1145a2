/* mime_sort.c: what SORT and THREAD (RFC 5256) compare: the base subject
 * (2.1) and the first address of an address field (3: FROM, TO, CC the
 * addr-mailbox; RFC 5957 DISPLAYFROM, DISPLAYTO the display name, else
 * the address). Bytes in, bytes out: no I/O. */
#include "proto/mime/mime-private.h"

#include <string.h>
#include <strings.h>

static int is_wsp(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static int starts_ci(const char *s, size_t n, const char *w)
{
	size_t k = strlen(w);
	return n >= k && !strncasecmp(s, w, k);
}

/* subj-blob = "[" *BLOBCHAR "]" *WSP at s; its length, or 0. */
static size_t blob_len(const char *s, size_t n)
{
	if (n == 0 || s[0] != '[')
		return 0;
	size_t i = 1;
	while (i < n && s[i] != '[' && s[i] != ']')
		i++;
	if (i >= n || s[i] != ']')
		return 0;
	i++;
	while (i < n && s[i] == ' ')
		i++;
	return i;
}

/* subj-refwd = ("re" / ("fw" ["d"])) *WSP [subj-blob] ":" at s; its
 * length, or 0. */
static size_t refwd_len(const char *s, size_t n)
{
	size_t i;
	if (starts_ci(s, n, "re"))
		i = 2;
	else if (starts_ci(s, n, "fwd"))
		i = 3;
	else if (starts_ci(s, n, "fw"))
		i = 2;
	else
		return 0;
	while (i < n && s[i] == ' ')
		i++;
	i += blob_len(s + i, n - i);
	if (i < n && s[i] == ':')
		return i + 1;
	return 0;
}

/* subj-leader = (*subj-blob subj-refwd) / WSP at s; its length, or 0. */
static size_t leader_len(const char *s, size_t n)
{
	if (n && s[0] == ' ')
		return 1;
	size_t i = 0, b;
	while ((b = blob_len(s + i, n - i)) > 0)
		i += b;
	size_t r = refwd_len(s + i, n - i);
	return r ? i + r : 0;
}

int mime_base_subject(const char *subject, size_t len, struct buf *out)
{
	struct buf w = BUF_INIT;
	int reply = 0;
	/* (1) runs of white space to one space */
	for (size_t i = 0; i < len; i++) {
		if (is_wsp(subject[i])) {
			if (w.len == 0 || w.ptr[w.len - 1] != ' ')
				buf_putc(&w, ' ');
		} else {
			buf_putc(&w, subject[i]);
		}
	}
	const char *s = w.ptr ? w.ptr : "";
	size_t a = 0, e = w.len;
	for (;;) {
		/* (2) trailers: "(fwd)" and white space */
		for (;;) {
			if (e > a && s[e - 1] == ' ') {
				e--;
			} else if (e - a >= 5 && !strncasecmp(s + e - 5, "(fwd)", 5)) {
				e -= 5;
				reply = 1;
			} else {
				break;
			}
		}
		/* (3)-(5) leaders, and a blob when something follows it */
		for (;;) {
			size_t l = leader_len(s + a, e - a);
			if (l) {
				if (s[a] != ' ')
					reply = 1;
				a += l;
				continue;
			}
			size_t b = blob_len(s + a, e - a);
			if (b && a + b < e) {
				a += b;
				continue;
			}
			break;
		}
		/* (6) "[fwd:" ... "]" */
		if (e - a >= 6 && !strncasecmp(s + a, "[fwd:", 5) && s[e - 1] == ']') {
			a += 5;
			e -= 1;
			reply = 1;
			continue;
		}
		break;
	}
	buf_append(out, s + a, e - a);
	buf_free(&w);
	return reply;
}

int mime_sort_address(const struct mime_message *msg, const char *field, int display, struct buf *out)
{
	const struct mime_part *r = msg->root;
	size_t it = r->hdr_off;
	struct mime_field f;
	if (!mime_header_find(msg->data, r->hdr_off, r->hdr_len, field, &it, &f))
		return 0;
	struct buf v = BUF_INIT;
	mime_unfold(msg->data + f.value_off, f.value_len, &v);
	struct mime_addr *list = mime_addr_parse(buf_cstr(&v), v.len);
	const struct mime_addr *a = list;
	while (a && !a->host)
		a = a->next;	/* group starts and ends */
	int found = a != NULL;
	if (a && display && a->name && *a->name) {
		mime_decode_words(a->name, strlen(a->name), out);
	} else if (a && display) {
		buf_appends(out, a->mailbox ? a->mailbox : "");
		if (*a->host) {
			buf_putc(out, '@');
			buf_appends(out, a->host);
		}
	} else if (a) {
		buf_appends(out, a->mailbox ? a->mailbox : "");
	}
	mime_addr_free(list);
	buf_free(&v);
	return found;
}

/* ---- PREVIEW (RFC 8970) ------------------------------------------------------ */

/* The first text/plain leaf that is not an attachment, else the first
 * such text/html one (not inside enclosed messages). */
static const struct mime_part *preview_part(const struct mime_part *p, const char *subtype)
{
	if (p->children) {
		for (const struct mime_part *c = p->children; c; c = c->next) {
			const struct mime_part *r = preview_part(c, subtype);
			if (r)
				return r;
		}
		return NULL;
	}
	if (p->message || strcmp(p->type, "text") != 0 || strcmp(p->subtype, subtype) != 0)
		return NULL;
	if (p->disposition && !strcmp(p->disposition, "attachment"))
		return NULL;
	return p;
}

/* HTML to its text, roughly: tags and comments dropped, a few entities
 * decoded, scripts and styles left out. */
static void html_text(const char *s, size_t n, struct buf *out)
{
	static const struct {
		const char *ent, *txt;
	} ents[] = { { "&amp;", "&" }, { "&lt;", "<" }, { "&gt;", ">" }, { "&quot;", "\"" },
		     { "&#39;", "'" }, { "&nbsp;", " " }, { "&apos;", "'" } };
	for (size_t i = 0; i < n;) {
		if (s[i] == '<') {
			const char *skip_to = NULL;
			if (n - i >= 4 && !strncmp(s + i, "<!--", 4))
				skip_to = "-->";
			else if (n - i >= 7 && !strncasecmp(s + i, "<script", 7))
				skip_to = "</script>";
			else if (n - i >= 6 && !strncasecmp(s + i, "<style", 6))
				skip_to = "</style>";
			size_t j = i + 1;
			if (skip_to) {
				size_t k = strlen(skip_to);
				while (j + k <= n && strncasecmp(s + j, skip_to, k) != 0)
					j++;
				j = j + k <= n ? j + k : n;
			} else {
				while (j < n && s[j] != '>')
					j++;
				j = j < n ? j + 1 : n;
			}
			buf_putc(out, ' ');
			i = j;
			continue;
		}
		if (s[i] == '&') {
			size_t e;
			for (e = 0; e < sizeof ents / sizeof ents[0]; e++) {
				size_t k = strlen(ents[e].ent);
				if (n - i >= k && !strncasecmp(s + i, ents[e].ent, k)) {
					buf_appends(out, ents[e].txt);
					i += k;
					break;
				}
			}
			if (e < sizeof ents / sizeof ents[0])
				continue;
		}
		buf_putc(out, s[i++]);
	}
}

void mime_preview(const struct mime_message *msg, size_t max_chars, struct buf *out)
{
	const struct mime_part *p = preview_part(msg->root, "plain");
	int html = 0;
	if (!p) {
		p = preview_part(msg->root, "html");
		html = p != NULL;
	}
	if (!p)
		return;
	struct buf text = BUF_INIT, plain = BUF_INIT;
	mime_part_text(msg, p, &text);
	if (html) {
		html_text(text.ptr ? text.ptr : "", text.len, &plain);
		buf_free(&text);
		text = plain;
	}
	/* white space runs made one space, control bytes dropped, trimmed,
	 * cut after max_chars characters (never inside one) */
	size_t chars = 0;
	int space = 1;
	for (size_t i = 0; i < text.len && chars < max_chars; i++) {
		unsigned char c = (unsigned char)text.ptr[i];
		if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
			if (!space) {
				buf_putc(out, ' ');
				chars++;
			}
			space = 1;
			continue;
		}
		if (c < 0x20 || c == 0x7f)
			continue;
		size_t k = 1;
		if (c >= 0xC0)
			while (i + k < text.len && ((unsigned char)text.ptr[i + k] & 0xC0) == 0x80)
				k++;
		else if (c >= 0x80)
			continue;	/* a stray continuation byte */
		buf_append(out, text.ptr + i, k);
		i += k - 1;
		chars++;
		space = 0;
	}
	while (out->len && out->ptr[out->len - 1] == ' ')
		buf_truncate(out, out->len - 1);
	buf_free(&text);
}
