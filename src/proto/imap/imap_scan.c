/* imap_scan.c: finds a literal header at the end of a line, byte by byte.
 *
 * The scanner keeps only the candidate header (from a "{" that starts a
 * token to its "}"), so arbitrarily long lines are followed in constant
 * memory. It is what lets the parser step over the literals of a command
 * it already rejected, and frame the raw SYNC* commands whose lines it
 * does not tokenize. A "{" counts only at a token start (after SP, HTAB,
 * "(" or the line start), optionally prefixed by "%" (DLIST file literal)
 * or "~" (literal8); a quoted string cannot span lines, so a "}" right
 * before CRLF can only close a header.
 */
#include <string.h>

#include "proto/imap/imap_private.h"

static int is_boundary(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '(';
}

void imap_scan_init(struct imap_scan *s)
{
	s->state = 0;
	s->file = 0;
	s->prev = ' ';
	s->prev2 = ' ';
	s->hlen = 0;
}

void imap_scan_byte(struct imap_scan *s, unsigned char c)
{
	if (s->state == 2) {
		/* "}" seen: only CR may come before the LF */
		if (c == '\r' && s->prev == '}') {
			s->prev2 = s->prev;
			s->prev = c;
			return;
		}
		s->state = 0;
	}
	if (c == '{' && s->state == 0) {
		int prefixed = (s->prev == '%' || s->prev == '~') && is_boundary(s->prev2);
		if (is_boundary(s->prev) || prefixed) {
			s->state = 1;
			s->file = prefixed && s->prev == '%';
			s->hlen = 0;
		}
	} else if (s->state == 1) {
		if (c == '}') {
			s->state = 2;
		} else if (s->hlen >= sizeof(s->hdr) || c == '\r' ||
			   (!s->file && !((c >= '0' && c <= '9') || c == '+'))) {
			s->state = 0;
		} else {
			s->hdr[s->hlen++] = (char)c;
		}
	}
	s->prev2 = s->prev;
	s->prev = c;
}

/* Decimal digits d[0..n) to *v; -1 when empty or not digits, -2 when
 * over 32 bits. */
static int scan_number(const char *d, size_t n, uint64_t *v)
{
	uint64_t x = 0;
	if (n == 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (d[i] < '0' || d[i] > '9')
			return -1;
		x = x * 10 + (uint64_t)(d[i] - '0');
		if (x > 0xffffffffu)
			return -2;
	}
	*v = x;
	return 0;
}

int imap_scan_eol(struct imap_scan *s, uint64_t *size_r, int *nonsync_r, int *file_r)
{
	int closed = s->state == 2;
	int file = s->file;
	const char *h = s->hdr;
	size_t n = s->hlen;
	int rc = IMAP_SCAN_NONE;

	imap_scan_init(s);
	if (!closed)
		return IMAP_SCAN_NONE;
	*file_r = file;
	if (file) {
		/* "partition guid size": three non-empty words */
		const char *sp1 = memchr(h, ' ', n);
		const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', n - (size_t)(sp1 + 1 - h)) : NULL;
		if (!sp1 || sp1 == h || !sp2 || sp2 == sp1 + 1)
			return IMAP_SCAN_NONE;
		size_t off = (size_t)(sp2 + 1 - h);
		int r = scan_number(h + off, n - off, size_r);
		if (r == -1)
			return IMAP_SCAN_NONE;
		*nonsync_r = 1;
		return r == -2 ? IMAP_SCAN_BAD : IMAP_SCAN_LITERAL;
	}
	int plus = n > 0 && h[n - 1] == '+';
	int r = scan_number(h, n - (size_t)plus, size_r);
	if (r == -1)
		return IMAP_SCAN_NONE;
	*nonsync_r = plus;
	rc = r == -2 ? IMAP_SCAN_BAD : IMAP_SCAN_LITERAL;
	return rc;
}
