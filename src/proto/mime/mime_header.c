/* mime_header.c: the header field scanner (RFC 5322 2.2, folding) and
 * small helpers over header fields. The scanner works on a buffer that
 * may still grow (it answers MIME_NEED_MORE), so LMTP or a test can feed
 * it a byte at a time; the MIME parser calls it on whole regions. */
#include "proto/mime/mime-private.h"

#include "lib/xalloc.h"

#include <string.h>

static int is_blank(char c)
{
	return c == ' ' || c == '\t';
}

int mime_header_next(const char *data, size_t len, size_t *pos, int at_eof,
		     struct mime_field *field_r)
{
	size_t p = *pos;

	if (p >= len) {
		if (!at_eof)
			return MIME_NEED_MORE;
		*pos = len;
		return 0;
	}
	/* The empty line ends the header. */
	if (data[p] == '\n') {
		*pos = p + 1;
		return 0;
	}
	if (data[p] == '\r') {
		if (p + 1 >= len && !at_eof)
			return MIME_NEED_MORE;
		if (p + 1 < len && data[p + 1] == '\n') {
			*pos = p + 2;
			return 0;
		}
	}

	size_t start = p, line = p, end, value_end, first_end = 0;
	size_t longest = 0;
	int first = 1;
	for (;;) {
		const char *nl = memchr(data + line, '\n', len - line);
		if (!nl) {
			if (!at_eof)
				return MIME_NEED_MORE;
			end = value_end = len;
			if (value_end > line && data[value_end - 1] == '\r')
				value_end--;
			if (len - line > longest)
				longest = len - line;
			if (first)
				first_end = len;
			break;
		}
		size_t lf = (size_t)(nl - data);
		if (lf - line > longest)
			longest = lf - line;
		if (first) {
			first_end = lf;
			first = 0;
		}
		if (lf + 1 >= len && !at_eof)
			return MIME_NEED_MORE;
		if (lf + 1 < len && is_blank(data[lf + 1])) {
			line = lf + 1;
			continue;
		}
		end = lf + 1;
		value_end = lf;
		if (value_end > line && data[value_end - 1] == '\r')
			value_end--;
		break;
	}

	memset(field_r, 0, sizeof(*field_r));
	field_r->off = start;
	field_r->len = end - start;
	field_r->too_long = longest > MAX_HEADER_LINE;
	field_r->value_off = start;
	field_r->value_len = value_end - start;

	const char *colon = memchr(data + start, ':', first_end - start);
	if (colon) {
		size_t c = (size_t)(colon - data), n = c;
		while (n > start && is_blank(data[n - 1]))
			n--;
		int ok = n > start;
		for (size_t i = start; ok && i < n; i++) {
			unsigned char ch = (unsigned char)data[i];
			if (ch < 33 || ch > 126)
				ok = 0;
		}
		if (ok) {
			field_r->name_len = n - start;
			field_r->value_off = c + 1;
			field_r->value_len = value_end > c + 1 ? value_end - (c + 1) : 0;
		}
	}
	*pos = end;
	return 1;
}

int mime_eq_nocase(const char *s, size_t len, const char *name)
{
	size_t n = strlen(name);
	if (n != len)
		return 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char a = (unsigned char)s[i], b = (unsigned char)name[i];
		if (a >= 'A' && a <= 'Z')
			a = (unsigned char)(a + 32);
		if (b >= 'A' && b <= 'Z')
			b = (unsigned char)(b + 32);
		if (a != b)
			return 0;
	}
	return 1;
}

int mime_field_is(const char *data, const struct mime_field *f,
		  const char *name)
{
	return f->name_len > 0 && mime_eq_nocase(data + f->off, f->name_len, name);
}

int mime_header_find(const char *data, size_t hdr_off, size_t hdr_len,
		     const char *name, size_t *iter, struct mime_field *f_r)
{
	size_t end = hdr_off + hdr_len;
	while (*iter < end) {
		if (mime_header_next(data, end, iter, 1, f_r) != 1)
			break;
		if (!f_r->too_long && mime_field_is(data, f_r, name))
			return 1;
	}
	*iter = end;
	return 0;
}

void mime_unfold(const char *s, size_t len, struct buf *out)
{
	size_t base = out->len;
	buf_reserve(out, len);
	out->ptr[out->len] = '\0';	/* reserve does not terminate */
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		if (c == '\r' || c == '\n' || c == '\0')
			continue;
		if (out->len == base && is_blank(c))
			continue;	/* leading blanks */
		buf_putc(out, c);
	}
	size_t n = out->len;
	while (n > base && is_blank(out->ptr[n - 1]))
		n--;
	buf_truncate(out, n);
}

char *mime_field_value(const char *data, const struct mime_field *f)
{
	struct buf b = BUF_INIT;
	mime_unfold(data + f->value_off, f->value_len, &b);
	if (!b.ptr)
		return xstrdup("");
	return buf_release(&b);
}

void mime_lower(char *s)
{
	for (; *s; s++)
		if (*s >= 'A' && *s <= 'Z')
			*s = (char)(*s + 32);
}
