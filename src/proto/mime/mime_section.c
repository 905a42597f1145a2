/* mime_section.c: BODY[section] (RFC 3501 6.4.5): parsing the section
 * text and resolving it to bytes.
 *
 * Part numbers: a message (the top one, or one enclosed in a
 * message/rfc822 part) has parts 1..n when its body is multipart, else
 * only part 1, which is its body. A multipart's part n is its n-th child;
 * a message/rfc822 part's part n is part n of the enclosed message.
 * HEADER, HEADER.FIELDS[.NOT] and TEXT apply to the top message (no part
 * number) or to a message/rfc822 part (its enclosed message); MIME to any
 * numbered part (its own header; for part 1 of a single-part message that
 * is the message header).
 */
#include "proto/mime/mime-private.h"

#include "lib/xalloc.h"

#include <string.h>

static int bad(struct terr *err, size_t *errpos_r, size_t pos, const char *what)
{
	if (errpos_r)
		*errpos_r = pos;
	return terr_set(err, TE_INVALID, "bad section at byte %zu: %s", pos, what);
}

static int has_word(const char *s, size_t len, size_t p, const char *w)
{
	size_t n = strlen(w);
	return len - p >= n && mime_eq_nocase(s + p, n, w);
}

static int astring_char(char c)
{
	unsigned char u = (unsigned char)c;
	/* ATOM-CHAR and "]" minus what ends a section here */
	return u > 32 && u < 127 && !strchr("(){%*\"\\]", c);
}

void mime_section_add_field(struct mime_section *sec, const char *name,
			    size_t len)
{
	sec->fields = xrealloc(sec->fields, (sec->nfields + 1) * sizeof(char *));
	sec->fields[sec->nfields++] = xstrndup(name, len);
}

void mime_section_clear(struct mime_section *sec)
{
	for (size_t i = 0; i < sec->nfields; i++)
		free(sec->fields[i]);
	free(sec->fields);
	memset(sec, 0, sizeof(*sec));
}

static int parse_fields(const char *s, size_t len, size_t *pp,
			struct mime_section *sec, size_t *errpos_r,
			struct terr *err)
{
	size_t p = *pp;
	if (p >= len || s[p] != ' ')
		return bad(err, errpos_r, p, "expected a space before the field list");
	p++;
	if (p >= len || s[p] != '(')
		return bad(err, errpos_r, p, "expected '('");
	p++;
	for (;;) {
		if (p < len && s[p] == '"') {
			struct buf b = BUF_INIT;
			size_t a = p++;
			for (; p < len && s[p] != '"'; p++) {
				if (s[p] == '\\' && p + 1 < len)
					p++;
				if (s[p] == '\r' || s[p] == '\n') {
					buf_free(&b);
					return bad(err, errpos_r, p, "line end in a quoted name");
				}
				buf_putc(&b, s[p]);
			}
			if (p >= len) {
				buf_free(&b);
				return bad(err, errpos_r, a, "unterminated quoted name");
			}
			p++;
			mime_section_add_field(sec, buf_cstr(&b), b.len);
			buf_free(&b);
		} else {
			size_t a = p;
			while (p < len && astring_char(s[p]))
				p++;
			if (p == a)
				return bad(err, errpos_r, p, "expected a header field name");
			mime_section_add_field(sec, s + a, p - a);
		}
		if (p < len && s[p] == ' ') {
			p++;
			continue;
		}
		if (p < len && s[p] == ')') {
			p++;
			break;
		}
		return bad(err, errpos_r, p, "expected ' ' or ')' in the field list");
	}
	*pp = p;
	return 0;
}

int mime_section_parse(const char *s, size_t len, struct mime_section *sec_r,
		       size_t *errpos_r, struct terr *err)
{
	size_t p = 0;
	memset(sec_r, 0, sizeof(*sec_r));
	if (errpos_r)
		*errpos_r = 0;

	while (p < len && s[p] >= '0' && s[p] <= '9') {
		size_t a = p;
		uint64_t v = 0;
		if (s[p] == '0')
			return bad(err, errpos_r, p, "part numbers start at 1");
		while (p < len && s[p] >= '0' && s[p] <= '9') {
			v = v * 10 + (uint64_t)(s[p] - '0');
			if (v > UINT32_MAX)
				return bad(err, errpos_r, a, "part number too large");
			p++;
		}
		if (sec_r->npath == MIME_SECTION_MAX_PATH) {
			if (errpos_r)
				*errpos_r = a;
			return terr_set(err, TE_NOTFOUND,
					"section nests deeper than any message can");
		}
		sec_r->path[sec_r->npath++] = (uint32_t)v;
		if (p == len)
			return 0;
		if (s[p] != '.')
			return bad(err, errpos_r, p, "expected '.' after a part number");
		p++;
		if (p == len)
			return bad(err, errpos_r, p, "expected a part number or a name");
	}

	if (p == len)
		return 0;	/* "" */
	if (has_word(s, len, p, "HEADER.FIELDS.NOT")) {
		sec_r->text = MIME_SECTION_HEADER_FIELDS_NOT;
		p += 17;
		if (parse_fields(s, len, &p, sec_r, errpos_r, err) < 0)
			return -1;
	} else if (has_word(s, len, p, "HEADER.FIELDS")) {
		sec_r->text = MIME_SECTION_HEADER_FIELDS;
		p += 13;
		if (parse_fields(s, len, &p, sec_r, errpos_r, err) < 0)
			return -1;
	} else if (has_word(s, len, p, "HEADER")) {
		sec_r->text = MIME_SECTION_HEADER;
		p += 6;
	} else if (has_word(s, len, p, "TEXT")) {
		sec_r->text = MIME_SECTION_TEXT;
		p += 4;
	} else if (sec_r->npath > 0 && has_word(s, len, p, "MIME")) {
		sec_r->text = MIME_SECTION_MIME;
		p += 4;
	} else {
		return bad(err, errpos_r, p,
			   "expected HEADER, HEADER.FIELDS, HEADER.FIELDS.NOT, TEXT or MIME");
	}
	if (p != len)
		return bad(err, errpos_r, p, "junk after the section");
	return 0;
}

/* Part n of a message whose top part is root. */
static const struct mime_part *message_part(const struct mime_part *root,
					    uint32_t n)
{
	if (!root->children)
		return n == 1 ? root : NULL;
	const struct mime_part *c = root->children;
	for (uint32_t i = 1; c && i < n; i++)
		c = c->next;
	return c;
}

static int field_listed(const struct mime_section *sec, const char *name,
			size_t len)
{
	for (size_t i = 0; i < sec->nfields; i++)
		if (mime_eq_nocase(name, len, sec->fields[i]))
			return 1;
	return 0;
}

static void build_fields(const struct mime_message *msg,
			 const struct mime_part *part,
			 const struct mime_section *sec, struct buf *out)
{
	const char *d = msg->data;
	size_t end = part->hdr_off + part->hdr_len, pos = part->hdr_off;
	int want = sec->text == MIME_SECTION_HEADER_FIELDS;
	struct mime_field f;

	for (;;) {
		size_t before = pos;
		int r = mime_header_next(d, end, &pos, 1, &f);
		if (r != 1) {
			/* the header's own empty line, as written */
			buf_append(out, d + before, pos - before);
			break;
		}
		if (f.name_len == 0 ||
		    field_listed(sec, d + f.off, f.name_len) != want)
			continue;
		buf_append(out, d + f.off, f.len);
		if (d[f.off + f.len - 1] != '\n')
			buf_appends(out, "\r\n");	/* last line of an
							 * all-header message */
	}
}

int mime_section_fetch(const struct mime_message *msg,
		       const struct mime_section *sec, struct buf *scratch,
		       const char **data_r, size_t *len_r, struct terr *err)
{
	const struct mime_part *cur = NULL;
	for (size_t i = 0; i < sec->npath; i++) {
		uint32_t n = sec->path[i];
		if (i == 0)
			cur = message_part(msg->root, n);
		else if (cur->children)
			cur = message_part(cur, n);
		else if (cur->message)
			cur = message_part(cur->message, n);
		else
			cur = NULL;
		if (!cur)
			return terr_set(err, TE_NOTFOUND, "no such body part");
	}

	const struct mime_part *target = msg->root;
	switch (sec->text) {
	case MIME_SECTION_NONE:
		if (!cur) {
			*data_r = msg->data;
			*len_r = msg->len;
		} else {
			*data_r = msg->data + cur->body_off;
			*len_r = cur->body_len;
		}
		return 0;
	case MIME_SECTION_MIME:
		if (!cur)
			return terr_set(err, TE_NOTFOUND, "MIME needs a part number");
		*data_r = msg->data + cur->hdr_off;
		*len_r = cur->hdr_len;
		return 0;
	case MIME_SECTION_HEADER:
	case MIME_SECTION_HEADER_FIELDS:
	case MIME_SECTION_HEADER_FIELDS_NOT:
	case MIME_SECTION_TEXT:
		break;
	}
	if (cur) {
		if (!cur->message)
			return terr_set(err, TE_NOTFOUND,
					"HEADER and TEXT need a message/rfc822 part");
		target = cur->message;
	}
	if (sec->text == MIME_SECTION_TEXT) {
		*data_r = msg->data + target->body_off;
		*len_r = target->body_len;
	} else if (sec->text == MIME_SECTION_HEADER) {
		*data_r = msg->data + target->hdr_off;
		*len_r = target->hdr_len;
	} else {
		buf_reset(scratch);
		build_fields(msg, target, sec, scratch);
		*data_r = buf_cstr(scratch);
		*len_r = scratch->len;
	}
	return 0;
}

int mime_section_binary(const struct mime_message *msg, const uint32_t *path, size_t npath, struct buf *out,
			struct terr *err)
{
	const struct mime_part *cur = NULL;
	for (size_t i = 0; i < npath; i++) {
		uint32_t n = path[i];
		if (i == 0)
			cur = message_part(msg->root, n);
		else if (cur->children)
			cur = message_part(cur, n);
		else if (cur->message)
			cur = message_part(cur->message, n);
		else
			cur = NULL;
		if (!cur)
			return terr_set(err, TE_NOTFOUND, "no such body part");
	}
	if (!cur) {	/* BINARY[]: the message as it is */
		buf_append(out, msg->data, msg->len);
		return 0;
	}
	const char *enc = cur->encoding;
	if (cur->children || cur->message || !enc || !strcmp(enc, "7bit") || !strcmp(enc, "8bit") ||
	    !strcmp(enc, "binary")) {
		buf_append(out, msg->data + cur->body_off, cur->body_len);
		return 0;
	}
	if (strcmp(enc, "base64") && strcmp(enc, "quoted-printable"))
		return terr_set(err, TE_INVALID, "unknown content-transfer-encoding %s", enc);
	mime_part_decode(msg, cur, out);
	return 0;
}
