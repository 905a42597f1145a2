/* fuzz_imap.c: libFuzzer target for the IMAP parser and response writer.
 *
 * Input layout: byte 0 = options (bit 0 after login, bit 1 buffered,
 * bit 2 reject every continuation, bits 3-4 message limit), bytes 1-4 =
 * a pattern of piece sizes (0 = the rest), the remainder = what a client
 * sends. The remainder is parsed whole and in the pieces of the pattern,
 * and in the other buffering mode: the transcripts of events must be the
 * same. Then the writer is checked against the parser: a string written
 * as astring/string parses back to itself, a UID list written as a
 * sequence set contains exactly those UIDs, a date-time round-trips.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "proto/imap/imap_parser.h"
#include "proto/imap/imap_write.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct imap_drive_opts {
	int auth;		/* IMAP_MODE_AUTH */
	int buffered;
	uint64_t max_message;	/* 0: default */
	int reject_sync;	/* reject every IMAP_CONTINUE */
	/* size pattern for the pieces: piece i has sizes[i % nsizes] bytes
	 * (0 in sizes means "all the rest"); NULL: chunk */
	const uint8_t *sizes;
	size_t nsizes;
};

static inline void imap_drive_data(struct buf *t, struct buf *data, const char *what)
{
	if (data->len == 0)
		return;
	uint32_t h = 2166136261u;	/* FNV-1a: a fingerprint of big data */
	for (size_t i = 0; i < data->len; i++)
		h = (h ^ (unsigned char)data->ptr[i]) * 16777619u;
	buf_printf(t, "%s len=%zu fnv=%08x", what, data->len, h);
	if (data->len <= 80) {
		buf_appends(t, " \"");
		for (size_t i = 0; i < data->len; i++) {
			unsigned char c = (unsigned char)data->ptr[i];
			if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\')
				buf_printf(t, "\\x%02x", c);
			else
				buf_putc(t, (char)c);
		}
		buf_putc(t, '"');
	}
	buf_putc(t, '\n');
	buf_reset(data);
}

/* Returns 1 when the parser died (fatal error). */
static inline int imap_drive_events(struct imap_parser *p, const char *d, size_t left,
				    const struct imap_drive_opts *o, struct buf *t,
				    struct buf *data)
{
	for (;;) {
		size_t used = 0;
		int ev = imap_parser_feed(p, d, left, &used);
		d += used;
		left -= used;
		if (ev == IMAP_NEED_MORE) {
			if (left != 0)
				buf_appends(t, "BUG: NEED_MORE with input left\n");
			return 0;
		}
		switch (ev) {
		case IMAP_COMMAND: {
			const struct imap_cmd *c = imap_parser_command(p);
			/* buffered mode: show the bytes like streamed DATA */
			if (c->id == IMAP_CMD_APPEND && c->u.append.message)
				buf_append(data, c->u.append.message, (size_t)c->u.append.size);
			if ((c->id == IMAP_CMD_SYNCGET || c->id == IMAP_CMD_SYNCAPPLY ||
			     c->id == IMAP_CMD_SYNCRESTORE) && c->u.sync.raw)
				buf_append(data, c->u.sync.raw, (size_t)c->u.sync.len);
			imap_drive_data(t, data, "DATA");
			buf_appends(t, "CMD ");
			imap_cmd_dump(t, c);
			buf_putc(t, '\n');
			if (c->id == IMAP_CMD_IDLE)
				imap_parser_expect(p, IMAP_EXPECT_DONE);
			if (c->id == IMAP_CMD_AUTHENTICATE && !c->u.authenticate.ir)
				imap_parser_expect(p, IMAP_EXPECT_LINE);
			break;
		}
		case IMAP_CONTINUE: {
			const struct imap_pending *pd = imap_parser_pending(p);
			buf_printf(t, "CONT size=%llu%s\n", (unsigned long long)pd->size,
				   pd->is_message ? " message" : "");
			if (o->reject_sync) {
				imap_parser_reject_literal(p);
				buf_appends(t, "REJECT\n");
			}
			break;
		}
		case IMAP_DATA: {
			const void *ptr;
			size_t n;
			imap_parser_data(p, &ptr, &n);
			if (n == 0)
				buf_appends(t, "BUG: empty DATA\n");
			buf_append(data, ptr, n);
			break;
		}
		case IMAP_ERROR: {
			const struct imap_error *e = imap_parser_error(p);
			buf_reset(data);
			buf_printf(t, "ERR %s %s%s%s%s pos=%llu%s: %s\n", e->tag ? e->tag : "*",
				   e->resp == IMAP_RESP_NO ? "NO" : "BAD", e->code ? " [" : "",
				   e->code ? e->code : "", e->code ? "]" : "",
				   (unsigned long long)e->pos, e->fatal ? " FATAL" : "", e->msg);
			if (e->fatal)
				return 1;
			break;
		}
		case IMAP_DONE:
			buf_appends(t, "DONE\n");
			break;
		case IMAP_LINE: {
			size_t n;
			const char *l = imap_parser_line(p, &n);
			buf_printf(t, "LINE \"%.*s\"\n", (int)n, l);
			break;
		}
		default:
			buf_printf(t, "BUG: event %d\n", ev);
			return 1;
		}
	}
}

/* Feeds in[0..len) in pieces of chunk bytes (0: all at once); returns the
 * malloc'd transcript. */
static inline char *imap_drive(const char *in, size_t len, size_t chunk,
			       const struct imap_drive_opts *o)
{
	struct imap_parser *p = imap_parser_new();
	struct buf t = BUF_INIT, data = BUF_INIT;
	if (o->auth)
		imap_parser_set_mode(p, IMAP_MODE_AUTH);
	imap_parser_set_buffered(p, o->buffered);
	if (o->max_message)
		imap_parser_set_max_message(p, o->max_message);
	size_t off = 0, piece = 0;
	while (off < len) {
		size_t n = len - off;
		if (o->sizes && o->nsizes) {
			size_t s = o->sizes[piece++ % o->nsizes];
			if (s && s < n)
				n = s;
		} else if (chunk && chunk < n) {
			n = chunk;
		}
		if (imap_drive_events(p, in + off, n, o, &t, &data))
			break;
		off += n;
	}
	/* one more call with no input: pending events must come out */
	if (off >= len)
		imap_drive_events(p, "", 0, o, &t, &data);
	/* data of an unfinished command is not shown: buffered mode cannot */
	buf_free(&data);
	imap_parser_free(&p);
	return buf_release(&t);
}


static void fail(const char *what, const char *a, const char *b)
{
	fprintf(stderr, "fuzz_imap: %s\n--- 1:\n%s\n--- 2:\n%s\n", what, a ? a : "", b ? b : "");
	abort();
}

/* Parses "A1 LOGIN <w1> <w2>\r\n" and returns the command or NULL. */
static const struct imap_cmd *parse_line(struct imap_parser *p, const struct buf *in)
{
	size_t off = 0, used;
	while (off < in->len) {
		int ev = imap_parser_feed(p, in->ptr + off, in->len - off, &used);
		off += used;
		if (ev == IMAP_COMMAND)
			return imap_parser_command(p);
		if (ev == IMAP_ERROR)
			return NULL;
	}
	return NULL;
}

static void check_writer(const uint8_t *d, size_t n)
{
	/* strings: written, parsed back (NUL cannot be sent in IMAP) */
	size_t sl = n < 300 ? n : 300;
	if (!memchr(d, 0, sl)) {
		struct buf in = BUF_INIT;
		buf_appends(&in, "A1 LOGIN ");
		imap_write_astring(&in, (const char *)d, sl);
		buf_putc(&in, ' ');
		imap_write_string(&in, (const char *)d, sl);
		buf_appends(&in, "\r\n");
		struct imap_parser *p = imap_parser_new();
		imap_parser_set_mode(p, IMAP_MODE_AUTH);
		const struct imap_cmd *c = parse_line(p, &in);
		if (!c || strlen(c->u.login.user) != sl || memcmp(c->u.login.user, d, sl) != 0 ||
		    strlen(c->u.login.password) != sl || memcmp(c->u.login.password, d, sl) != 0)
			fail("astring round trip", buf_cstr(&in), c ? c->u.login.user : "(error)");
		imap_parser_free(&p);
		buf_free(&in);
	}

	/* sequence sets: a sorted list of UIDs from the bytes */
	uint32_t uids[64];
	size_t nu = 0;
	uint32_t v = 0;
	for (size_t i = 0; i < n && nu < 64; i++) {
		v += (uint32_t)(d[i] % 5) + (d[i] > 250 ? 100000u : 0u);
		if (v == 0)
			continue;
		uids[nu++] = v;
	}
	if (nu > 0) {
		struct buf in = BUF_INIT;
		buf_appends(&in, "A1 UID FETCH ");
		imap_write_seqset(&in, uids, nu);
		buf_appends(&in, " UID\r\n");
		struct imap_parser *p = imap_parser_new();
		imap_parser_set_mode(p, IMAP_MODE_AUTH);
		const struct imap_cmd *c = parse_line(p, &in);
		if (!c)
			fail("seqset does not parse", buf_cstr(&in), NULL);
		for (size_t k = 0; k < nu * 3; k++) {
			uint32_t x = uids[k / 3] + (uint32_t)(k % 3) - 1;
			int want = 0;
			for (size_t i = 0; i < nu; i++)
				want |= uids[i] == x;
			if (x && imap_seqset_contains(&c->u.fetch.set, x, uids[nu - 1]) != want)
				fail("seqset contents", buf_cstr(&in), NULL);
		}
		imap_parser_free(&p);
		buf_free(&in);
	}

	/* date-time round trip */
	if (n >= 6) {
		int64_t t = 0;
		for (int i = 0; i < 5; i++)
			t = (t << 8) | d[i];
		t %= 253402300800LL - 86400;	/* years 1970..9999 */
		int tz = ((int)d[5] - 128) * 7;	/* within +-15 hours */
		struct buf b = BUF_INIT;
		imap_write_datetime(&b, (time_t)t, tz);
		time_t back;
		int tzb;
		if (imap_datetime_parse(b.ptr + 1, b.len - 2, &back, &tzb) < 0 ||
		    back != (time_t)t || tzb != tz)
			fail("date-time round trip", buf_cstr(&b), NULL);
		buf_free(&b);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 5)
		return 0;
	struct imap_drive_opts o;
	memset(&o, 0, sizeof(o));
	o.auth = data[0] & 1;
	o.buffered = (data[0] >> 1) & 1;
	o.reject_sync = (data[0] >> 2) & 1;
	static const uint64_t maxmsg[4] = { 0, 100, 4096, 1 };
	o.max_message = maxmsg[(data[0] >> 3) & 3];
	uint8_t sizes[4];
	for (int i = 0; i < 4; i++)
		sizes[i] = data[1 + i] % 32;
	const char *in = (const char *)data + 5;
	size_t len = size - 5;

	char *whole = imap_drive(in, len, 0, &o);
	struct imap_drive_opts op = o;
	op.sizes = sizes;
	op.nsizes = 4;
	char *pieces = imap_drive(in, len, 0, &op);
	if (strcmp(whole, pieces) != 0)
		fail("pieces differ from whole", whole, pieces);
	struct imap_drive_opts ob = o;
	ob.buffered = !o.buffered;
	char *other = imap_drive(in, len, 0, &ob);
	if (strcmp(whole, other) != 0)
		fail("buffered differs from streaming", whole, other);
	/* the driver's own markers start a line; client text never does */
	if (strncmp(whole, "BUG:", 4) == 0 || strstr(whole, "\nBUG:"))
		fail("driver saw a bug", whole, NULL);
	free(whole);
	free(pieces);
	free(other);

	check_writer((const uint8_t *)in, len);
	return 0;
}
