/* fuzz_mime.c: libFuzzer target for src/proto/mime.
 *
 * Any input is a message: it is parsed, ENVELOPE / BODY / BODYSTRUCTURE
 * are written and checked to be well-formed IMAP (balanced parentheses,
 * only NIL, numbers, quoted strings and exact literals), a set of
 * sections is resolved and checked to stay inside the message, the part
 * tree offsets are checked, and the search and date helpers run. Small
 * inputs are also fed to the header scanner one byte at a time and must
 * give the same fields as when fed whole, and are parsed as a section
 * spec.
 */
#include "proto/mime/mime.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c) do { if (!(c)) abort(); } while (0)

/* Accepts the IMAP data items our writers produce; returns the end. */
static size_t imap_value(const char *s, size_t len, size_t p, int depth)
{
	CHECK(p < len && depth < 4 * MIME_MAX_DEPTH + 8);
	if (s[p] == '(') {
		p++;
		while (p < len && s[p] != ')') {
			p = imap_value(s, len, p, depth + 1);
			if (p < len && s[p] == ' ')
				p++;
		}
		CHECK(p < len);
		return p + 1;
	}
	if (s[p] == '"') {
		for (p++; p < len && s[p] != '"'; p++) {
			CHECK(s[p] != '\r' && s[p] != '\n' && s[p] != '\0');
			if (s[p] == '\\') {
				p++;
				CHECK(p < len && (s[p] == '"' || s[p] == '\\'));
			}
		}
		CHECK(p < len);
		return p + 1;
	}
	if (s[p] == '{') {
		size_t n = 0;
		for (p++; p < len && s[p] >= '0' && s[p] <= '9'; p++)
			n = n * 10 + (size_t)(s[p] - '0');
		CHECK(p + 3 <= len && s[p] == '}' && s[p + 1] == '\r' && s[p + 2] == '\n');
		p += 3;
		CHECK(n <= len - p && !memchr(s + p, '\0', n));
		return p + n;
	}
	if (len - p >= 3 && memcmp(s + p, "NIL", 3) == 0)
		return p + 3;
	CHECK(s[p] >= '0' && s[p] <= '9');
	while (p < len && s[p] >= '0' && s[p] <= '9')
		p++;
	return p;
}

static void check_item(const struct buf *b)
{
	CHECK(b->len > 0 && b->ptr[0] == '(');
	CHECK(imap_value(b->ptr, b->len, 0, 0) == b->len);
}

static void check_part(const struct mime_message *m, const struct mime_part *p,
		       size_t lo, size_t hi)
{
	CHECK(p->hdr_off >= lo && p->hdr_off + p->hdr_len == p->body_off);
	CHECK(p->body_off + p->body_len <= hi && hi <= m->len);
	CHECK(p->depth <= MIME_MAX_DEPTH && p->type && p->subtype);
	size_t end = p->body_off + p->body_len;
	for (const struct mime_part *c = p->children; c; c = c->next)
		check_part(m, c, p->body_off, end);
	if (p->message)
		check_part(m, p->message, p->body_off, end);
}

static void header_bytewise(const char *d, size_t size)
{
	struct mime_field whole[64], inc;
	size_t nwhole = 0, pos = 0;
	while (nwhole < 64 && mime_header_next(d, size, &pos, 1, &whole[nwhole]) == 1)
		nwhole++;
	size_t have = 0, n = 0;
	pos = 0;
	while (n < nwhole) {
		int at_eof = have == size;
		int r = mime_header_next(d, have, &pos, at_eof, &inc);
		if (r == MIME_NEED_MORE) {
			CHECK(!at_eof);
			have++;
			continue;
		}
		CHECK(r == 1 && memcmp(&inc, &whole[n], sizeof(inc)) == 0);
		n++;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *d = (const char *)data;
	struct mime_message *m = mime_parse(d, size);
	struct buf b = BUF_INIT, scratch = BUF_INIT;

	CHECK(m->nparts >= 1 && m->nparts <= MIME_MAX_PARTS + 1);
	check_part(m, m->root, 0, size);

	mime_envelope_write(m, &b);
	check_item(&b);
	for (int ext = 0; ext <= 1; ext++) {
		buf_reset(&b);
		mime_bodystructure_write(m, ext, &b);
		check_item(&b);
	}

	static const char *const specs[] = {
		"", "HEADER", "TEXT", "1", "2", "1.MIME", "1.1", "1.2", "2.1.3",
		"1.HEADER", "2.TEXT", "1.1.HEADER", "3.MIME",
		"HEADER.FIELDS (From Subject Content-Type)",
		"HEADER.FIELDS.NOT (Received)", "2.HEADER.FIELDS (To)",
	};
	for (size_t i = 0; i < sizeof(specs) / sizeof(specs[0]); i++) {
		struct mime_section sec;
		struct terr err;
		const char *p;
		size_t len;
		CHECK(mime_section_parse(specs[i], strlen(specs[i]), &sec, NULL, &err) == 0);
		if (mime_section_fetch(m, &sec, &scratch, &p, &len, &err) == 0) {
			int in_msg = p >= m->data && len <= m->len &&
				     (size_t)(p - m->data) <= m->len - len;
			int in_scratch = p == buf_cstr(&scratch) && len == scratch.len;
			CHECK(in_msg || in_scratch);
		} else {
			CHECK(err.code == TE_NOTFOUND);
		}
		mime_section_clear(&sec);
	}

	(void)mime_search_header(m, "subject", "re", 2);
	(void)mime_search_header(m, "from", "", 0);
	(void)mime_search_body(m, "the", 3);
	(void)mime_search_text(m, "\xc3\xa9t\xc3\xa9", 6);
	time_t t;
	int tz;
	(void)mime_message_date(m, &t, &tz);
	buf_reset(&b);
	(void)mime_header_value(m, "subject", &b);
	/* SORT/THREAD, PREVIEW and BINARY helpers */
	struct buf k = BUF_INIT;
	(void)mime_base_subject(b.ptr ? b.ptr : "", b.len, &k);
	CHECK(k.len <= b.len);
	buf_reset(&k);
	(void)mime_sort_address(m, "from", 0, &k);
	(void)mime_sort_address(m, "to", 1, &k);
	buf_reset(&k);
	mime_preview(m, 256, &k);
	buf_reset(&k);
	static const uint32_t paths[][2] = { { 1, 0 }, { 2, 0 }, { 1, 1 }, { 2, 1 } };
	for (size_t i = 0; i < 4; i++) {
		struct terr e2;
		buf_reset(&k);
		(void)mime_section_binary(m, paths[i], paths[i][1] ? 2 : 1, &k, &e2);
	}
	buf_free(&k);

	if (size < 2048) {
		header_bytewise(d, size);
		struct mime_section sec;
		struct terr err;
		size_t pos;
		if (mime_section_parse(d, size, &sec, &pos, &err) < 0)
			CHECK(pos <= size);
		mime_section_clear(&sec);
		buf_reset(&b);
		mime_decode_words(d, size, &b);
		(void)mime_date_parse(d, size, &t, &tz);
		buf_reset(&b);
		buf_append(&b, d, size);
		mime_fold(b.ptr, b.len);
		(void)mime_match(d, size, "ab", 2);
	}

	buf_free(&b);
	buf_free(&scratch);
	mime_message_free(&m);
	return 0;
}
