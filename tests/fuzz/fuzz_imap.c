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
#include "../unit/imap_drive.h"


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
