/* mutf7.c: IMAP modified UTF-7 (RFC 3501 5.1.3): printable ASCII stands
 * for itself ('&' as "&-"); anything else is UTF-16 in a modified base64
 * ("," for "/") between '&' and '-'. */
#include "names/mboxname.h"

#include <stdint.h>
#include <string.h>

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

static int b64val(unsigned char c)
{
	const char *p = c ? strchr(b64, c) : NULL;
	return p ? (int)(p - b64) : -1;
}

/* Decodes one shifted run s[0..n) (between '&' and '-') into UTF-16
 * units; returns the count, -1 if invalid. */
static int decode_run(const char *s, size_t n, uint16_t *units, size_t max)
{
	uint32_t bits = 0;
	int nbits = 0;
	size_t nu = 0;
	for (size_t i = 0; i < n; i++) {
		int v = b64val((unsigned char)s[i]);
		if (v < 0)
			return -1;
		bits = (bits << 6) | (uint32_t)v;
		nbits += 6;
		if (nbits >= 16) {
			nbits -= 16;
			if (nu >= max)
				return -1;
			units[nu++] = (uint16_t)(bits >> nbits);
			bits &= (1u << nbits) - 1;
		}
	}
	if (nbits >= 6 || bits != 0 || nu == 0)	/* leftover must be < 6 zero bits */
		return -1;
	return (int)nu;
}

/* Appends the UTF-8 of a run's UTF-16 units; -1 on bad surrogates or a
 * unit that should have been written directly. */
static int units_to_utf8(const uint16_t *u, int n, struct buf *out)
{
	for (int i = 0; i < n; i++) {
		uint32_t cp = u[i];
		if (cp >= 0xd800 && cp <= 0xdbff) {
			if (i + 1 >= n || u[i + 1] < 0xdc00 || u[i + 1] > 0xdfff)
				return -1;
			cp = 0x10000 + ((cp - 0xd800) << 10) + (u[++i] - 0xdc00);
		} else if (cp >= 0xdc00 && cp <= 0xdfff) {
			return -1;
		} else if (cp < 0x80) {
			/* printable ASCII must be written as itself, and control
			 * characters (U+0000..U+001F, U+007F) are no part of a name
			 * (docs/names.md) */
			return -1;
		}
		if (out) {
			if (cp < 0x80) {
				buf_putc(out, (char)cp);
			} else if (cp < 0x800) {
				buf_putc(out, (char)(0xc0 | (cp >> 6)));
				buf_putc(out, (char)(0x80 | (cp & 0x3f)));
			} else if (cp < 0x10000) {
				buf_putc(out, (char)(0xe0 | (cp >> 12)));
				buf_putc(out, (char)(0x80 | ((cp >> 6) & 0x3f)));
				buf_putc(out, (char)(0x80 | (cp & 0x3f)));
			} else {
				buf_putc(out, (char)(0xf0 | (cp >> 18)));
				buf_putc(out, (char)(0x80 | ((cp >> 12) & 0x3f)));
				buf_putc(out, (char)(0x80 | ((cp >> 6) & 0x3f)));
				buf_putc(out, (char)(0x80 | (cp & 0x3f)));
			}
		}
	}
	return 0;
}

static int walk(const char *s, size_t len, struct buf *out)
{
	uint16_t units[1024];
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c > 0x7e)
			return -1;
		if (c != '&') {
			if (out)
				buf_putc(out, (char)c);
			continue;
		}
		size_t j = i + 1;
		while (j < len && s[j] != '-')
			j++;
		if (j >= len)
			return -1;
		if (j == i + 1) {
			if (out)
				buf_putc(out, '&');
		} else {
			int n = decode_run(s + i + 1, j - i - 1, units, sizeof units / sizeof units[0]);
			if (n < 0 || units_to_utf8(units, n, out) < 0)
				return -1;
		}
		i = j;
	}
	return 0;
}

int mutf7_valid(const char *s, size_t len)
{
	return walk(s, len, NULL) == 0;
}

int mutf7_to_utf8(const char *s, size_t len, struct buf *out, struct terr *err)
{
	buf_reset(out);
	if (walk(s, len, out) < 0)
		return terr_set(err, TE_INVALID, "bad modified UTF-7");
	return 0;
}

static void flush_run(const uint16_t *u, size_t n, struct buf *out)
{
	buf_putc(out, '&');
	uint32_t bits = 0;
	int nbits = 0;
	for (size_t i = 0; i < n; i++) {
		bits = (bits << 16) | u[i];
		nbits += 16;
		while (nbits >= 6) {
			nbits -= 6;
			buf_putc(out, b64[(bits >> nbits) & 0x3f]);
		}
		bits &= (1u << nbits) - 1;
	}
	if (nbits)
		buf_putc(out, b64[(bits << (6 - nbits)) & 0x3f]);
	buf_putc(out, '-');
}

int mutf7_from_utf8(const char *utf8, size_t len, struct buf *out, struct terr *err)
{
	buf_reset(out);
	uint16_t run[1024];
	size_t nrun = 0;
	const unsigned char *p = (const unsigned char *)utf8;
	size_t i = 0;
	while (i < len) {
		uint32_t cp;
		int extra;
		unsigned char c = p[i];
		if (c < 0x80) {
			cp = c;
			extra = 0;
		} else if ((c & 0xe0) == 0xc0) {
			cp = c & 0x1f;
			extra = 1;
		} else if ((c & 0xf0) == 0xe0) {
			cp = c & 0x0f;
			extra = 2;
		} else if ((c & 0xf8) == 0xf0) {
			cp = c & 0x07;
			extra = 3;
		} else {
			return terr_set(err, TE_INVALID, "bad UTF-8 at byte %zu", i);
		}
		if (extra && i + (size_t)extra >= len)
			return terr_set(err, TE_INVALID, "truncated UTF-8 at byte %zu", i);
		for (int k = 1; k <= extra; k++) {
			if ((p[i + (size_t)k] & 0xc0) != 0x80)
				return terr_set(err, TE_INVALID, "bad UTF-8 at byte %zu", i);
			cp = (cp << 6) | (p[i + (size_t)k] & 0x3f);
		}
		static const uint32_t minval[] = { 0, 0x80, 0x800, 0x10000 };
		if (cp < minval[extra] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return terr_set(err, TE_INVALID, "bad UTF-8 at byte %zu", i);
		if (cp < 0x20 || cp == 0x7f)
			return terr_set(err, TE_INVALID, "control character at byte %zu", i);
		i += (size_t)extra + 1;
		if (cp >= 0x20 && cp <= 0x7e) {
			if (nrun) {
				flush_run(run, nrun, out);
				nrun = 0;
			}
			if (cp == '&')
				buf_appends(out, "&-");
			else
				buf_putc(out, (char)cp);
			continue;
		}
		if (nrun + 2 > sizeof run / sizeof run[0]) {
			flush_run(run, nrun, out);
			nrun = 0;
		}
		if (cp >= 0x10000) {
			cp -= 0x10000;
			run[nrun++] = (uint16_t)(0xd800 + (cp >> 10));
			run[nrun++] = (uint16_t)(0xdc00 + (cp & 0x3ff));
		} else {
			run[nrun++] = (uint16_t)cp;
		}
	}
	if (nrun)
		flush_run(run, nrun, out);
	return 0;
}
