/* mime_search.c: SEARCH helpers (RFC 3501 6.4.4): header lookups with
 * encoded-words decoded, body text of the text parts decoded to UTF-8, and
 * case-insensitive substring matching on folded UTF-8. An address field
 * (From, To, Cc, Bcc, Sender, Reply-To) also matches on its parsed
 * addresses, so comments and blanks inside an address do not hide it. Folding keeps the
 * byte length (only two-byte letters are mapped to two-byte letters), so
 * it works in place and a match in folded text is a match in the text. */
#include "proto/mime/mime-private.h"

#include <string.h>
#include <strings.h>

/* Small letter for a two-byte code point (0x80-0x7FF), or cp itself. */
static unsigned fold_cp(unsigned cp)
{
	if (cp >= 0xC0 && cp <= 0xDE && cp != 0xD7)
		return cp + 0x20;
	if (cp == 0x130)		/* dotted capital I: no same-size small */
		return cp;
	if ((cp >= 0x100 && cp <= 0x137) || (cp >= 0x14A && cp <= 0x177))
		return cp | 1;
	if ((cp >= 0x139 && cp <= 0x148) || (cp >= 0x179 && cp <= 0x17E))
		return (cp & 1) ? cp + 1 : cp;
	if (cp == 0x178)
		return 0xFF;
	if (cp >= 0x391 && cp <= 0x3A9 && cp != 0x3A2)
		return cp + 0x20;
	if (cp == 0x386)
		return 0x3AC;
	if (cp >= 0x388 && cp <= 0x38A)
		return cp + 37;
	if (cp == 0x38C)
		return 0x3CC;
	if (cp == 0x38E || cp == 0x38F)
		return cp + 63;
	if (cp == 0x3C2)		/* final sigma */
		return 0x3C3;
	if (cp >= 0x410 && cp <= 0x42F)
		return cp + 0x20;
	if (cp >= 0x400 && cp <= 0x40F)
		return cp + 0x50;
	return cp;
}

void mime_fold(char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c >= 'A' && c <= 'Z') {
			s[i] = (char)(c + 32);
		} else if (c >= 0xC2 && c <= 0xDF && i + 1 < len &&
			   ((unsigned char)s[i + 1] & 0xC0) == 0x80) {
			unsigned cp = ((c & 0x1Fu) << 6) | ((unsigned char)s[i + 1] & 0x3Fu);
			unsigned f = fold_cp(cp);
			s[i] = (char)(0xC0 | (f >> 6));
			s[i + 1] = (char)(0x80 | (f & 0x3F));
			i++;
		}
	}
}

static int folded_contains(struct buf *hay, const struct buf *needle)
{
	if (needle->len == 0)
		return 1;
	mime_fold(hay->ptr, hay->len);
	return hay->len >= needle->len &&
	       memmem(hay->ptr, hay->len, needle->ptr, needle->len) != NULL;
}

static void fold_needle(const char *needle, size_t nlen, struct buf *out)
{
	buf_append(out, needle, nlen);
	mime_fold(out->ptr, out->len);
}

int mime_match(const char *hay, size_t hlen, const char *needle, size_t nlen)
{
	struct buf h = BUF_INIT, n = BUF_INIT;
	fold_needle(needle, nlen, &n);
	buf_append(&h, hay, hlen);
	int r = folded_contains(&h, &n);
	buf_free(&h);
	buf_free(&n);
	return r;
}

static void decoded_value(const char *data, const struct mime_field *f,
			  struct buf *out)
{
	struct buf v = BUF_INIT;
	mime_unfold(data + f->value_off, f->value_len, &v);
	mime_decode_words(buf_cstr(&v), v.len, out);
	buf_free(&v);
}

int mime_header_value(const struct mime_message *msg, const char *name,
		      struct buf *out)
{
	const struct mime_part *r = msg->root;
	size_t it = r->hdr_off;
	struct mime_field f;
	if (!mime_header_find(msg->data, r->hdr_off, r->hdr_len, name, &it, &f))
		return 0;
	decoded_value(msg->data, &f, out);
	return 1;
}

static int is_address_field(const char *name)
{
	static const char *const fields[] = { "from", "to", "cc", "bcc", "sender", "reply-to" };
	for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
		if (!strcasecmp(name, fields[i]))
			return 1;
	return 0;
}

/* An address field as its addresses read it: "name <mailbox@host>, ..."
 * without the comments and folding whitespace RFC 5322 allows inside an
 * address ("<user (c)@ (c) example.org>" is user@example.org). */
static void address_text(const char *data, const struct mime_field *f, struct buf *out)
{
	struct buf v = BUF_INIT;
	mime_unfold(data + f->value_off, f->value_len, &v);
	struct mime_addr *list = mime_addr_parse(buf_cstr(&v), v.len);
	for (const struct mime_addr *a = list; a; a = a->next) {
		if (!a->host)
			continue;	/* group start or end */
		if (out->len)
			buf_appends(out, ", ");
		if (a->name && *a->name) {
			mime_decode_words(a->name, strlen(a->name), out);
			buf_putc(out, ' ');
		}
		buf_putc(out, '<');
		buf_appends(out, a->mailbox ? a->mailbox : "");
		if (*a->host) {
			buf_putc(out, '@');
			buf_appends(out, a->host);
		}
		buf_putc(out, '>');
	}
	mime_addr_free(list);
	buf_free(&v);
}

int mime_search_header(const struct mime_message *msg, const char *name,
		       const char *needle, size_t nlen)
{
	const struct mime_part *r = msg->root;
	size_t it = r->hdr_off;
	struct mime_field f;
	struct buf n = BUF_INIT, v = BUF_INIT;
	int found = 0;
	fold_needle(needle, nlen, &n);
	while (!found &&
	       mime_header_find(msg->data, r->hdr_off, r->hdr_len, name, &it, &f)) {
		buf_reset(&v);
		decoded_value(msg->data, &f, &v);
		found = folded_contains(&v, &n);
		if (!found && is_address_field(name)) {
			buf_reset(&v);
			address_text(msg->data, &f, &v);
			found = folded_contains(&v, &n);
		}
	}
	buf_free(&n);
	buf_free(&v);
	return found;
}

/* "Name: decoded value\n" for every parsed field of part's header. */
static void header_text(const struct mime_message *msg,
			const struct mime_part *part, struct buf *out)
{
	const char *d = msg->data;
	size_t end = part->hdr_off + part->hdr_len, pos = part->hdr_off;
	struct mime_field f;
	while (mime_header_next(d, end, &pos, 1, &f) == 1) {
		if (f.too_long || f.name_len == 0)
			continue;
		buf_append(out, d + f.off, f.name_len);
		buf_appends(out, ": ");
		decoded_value(d, &f, out);
		buf_putc(out, '\n');
	}
}

static void body_text(const struct mime_message *msg,
		      const struct mime_part *part, struct buf *out)
{
	if (part->children) {
		for (const struct mime_part *c = part->children; c; c = c->next)
			body_text(msg, c, out);
	} else if (part->message) {
		header_text(msg, part->message, out);
		body_text(msg, part->message, out);
	} else if (strcmp(part->type, "text") == 0) {
		mime_part_text(msg, part, out);
		buf_putc(out, '\n');
	}
}

void mime_body_text(const struct mime_message *msg, struct buf *out)
{
	body_text(msg, msg->root, out);
}

int mime_search_body(const struct mime_message *msg, const char *needle,
		     size_t nlen)
{
	if (nlen == 0)
		return 1;
	struct buf t = BUF_INIT, n = BUF_INIT;
	fold_needle(needle, nlen, &n);
	mime_body_text(msg, &t);
	int r = t.len > 0 && folded_contains(&t, &n);
	buf_free(&t);
	buf_free(&n);
	return r;
}

int mime_search_text(const struct mime_message *msg, const char *needle,
		     size_t nlen)
{
	if (nlen == 0)
		return 1;
	struct buf t = BUF_INIT, n = BUF_INIT;
	fold_needle(needle, nlen, &n);
	header_text(msg, msg->root, &t);
	int r = t.len > 0 && folded_contains(&t, &n);
	if (!r) {
		buf_reset(&t);
		mime_body_text(msg, &t);
		r = t.len > 0 && folded_contains(&t, &n);
	}
	buf_free(&t);
	buf_free(&n);
	return r;
}
