/* imap_write.c: IMAP response syntax into a struct buf.
 *
 * String choice: atom when the bytes are a valid astring atom (and not
 * NIL), quoted when they are 7-bit text without CR/LF/NUL and shorter
 * than IMAP_WRITE_QUOTED_MAX, otherwise a synchronising-style literal
 * {N} (servers never wait for a continuation, so {N} is always right in
 * responses).
 */
#include <stdarg.h>
#include <string.h>

#include "proto/imap/imap_parser.h"
#include "proto/imap/imap_private.h"
#include "proto/imap/imap_write.h"

static int astring_char(unsigned char c)
{
	if (c <= 0x20 || c >= 0x7f)
		return 0;
	return !strchr("(){%*\"\\", c);
}

static int quotable(const char *s, size_t len)
{
	if (len >= IMAP_WRITE_QUOTED_MAX)
		return 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == 0 || c == '\r' || c == '\n' || c >= 0x80)
			return 0;
	}
	return 1;
}

void imap_write_quoted(struct buf *b, const char *s, size_t len)
{
	buf_putc(b, '"');
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		if (c == '\0' || c == '\r' || c == '\n')
			continue;
		if (c == '"' || c == '\\')
			buf_putc(b, '\\');
		buf_putc(b, c);
	}
	buf_putc(b, '"');
}

void imap_write_literal(struct buf *b, const char *s, size_t len)
{
	buf_printf(b, "{%zu}\r\n", len);
	buf_append(b, s, len);
}

void imap_write_string(struct buf *b, const char *s, size_t len)
{
	if (quotable(s, len))
		imap_write_quoted(b, s, len);
	else
		imap_write_literal(b, s, len);
}

void imap_write_nstring(struct buf *b, const char *s, size_t len)
{
	if (!s)
		buf_appends(b, "NIL");
	else
		imap_write_string(b, s, len);
}

void imap_write_astring(struct buf *b, const char *s, size_t len)
{
	int atom = len > 0 && len < IMAP_WRITE_QUOTED_MAX && !imap_word_eq(s, len, "NIL");
	for (size_t i = 0; atom && i < len; i++)
		atom = astring_char((unsigned char)s[i]);
	if (atom)
		buf_append(b, s, len);
	else
		imap_write_string(b, s, len);
}

/* y-m-d of a day count from 1970-01-01 (proleptic Gregorian). */
static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
	z += 719468;
	int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	int64_t doe = z - era * 146097;
	int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	int64_t mp = (5 * doy + 2) / 153;
	*d = (int)(doy - (153 * mp + 2) / 5 + 1);
	*m = (int)(mp < 10 ? mp + 3 : mp - 9);
	*y = yoe + era * 400 + (*m <= 2);
}

void imap_write_datetime(struct buf *b, time_t t, int tzoff)
{
	static const char *const mon[12] = {
		"Jan", "Feb", "Mar", "Apr", "May", "Jun",
		"Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
	};
	int64_t local = (int64_t)t + (int64_t)tzoff * 60;
	int64_t days = local / 86400, secs = local % 86400;
	if (secs < 0) {
		secs += 86400;
		days--;
	}
	int64_t y;
	int m, d;
	civil_from_days(days, &y, &m, &d);
	int off = tzoff < 0 ? -tzoff : tzoff;
	buf_printf(b, "\"%02d-%s-%04lld %02d:%02d:%02d %c%02d%02d\"", d, mon[m - 1],
		   (long long)y, (int)(secs / 3600), (int)(secs / 60 % 60), (int)(secs % 60),
		   tzoff < 0 ? '-' : '+', off / 60, off % 60);
}

void imap_write_flags(struct buf *b, const char *const *flags, size_t count)
{
	buf_putc(b, '(');
	for (size_t i = 0; i < count; i++) {
		if (i)
			buf_putc(b, ' ');
		buf_appends(b, flags[i]);
	}
	buf_putc(b, ')');
}

static void range_out(struct buf *b, uint32_t lo, uint32_t hi, int first)
{
	if (!first)
		buf_putc(b, ',');
	if (lo == hi)
		buf_printf(b, "%u", lo);
	else
		buf_printf(b, "%u:%u", lo, hi);
}

void imap_write_seqset(struct buf *b, const uint32_t *nums, size_t count)
{
	if (count == 0)
		return;
	uint32_t lo = nums[0], hi = nums[0];
	int first = 1;
	for (size_t i = 1; i < count; i++) {
		uint32_t n = nums[i];
		if (n == hi || (hi != UINT32_MAX && n == hi + 1)) {
			hi = n;
			continue;
		}
		range_out(b, lo, hi, first);
		first = 0;
		lo = hi = n;
	}
	range_out(b, lo, hi, first);
}

void imap_write_untagged(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	buf_appends(b, "* ");
	va_start(ap, fmt);
	buf_vprintf(b, fmt, ap);
	va_end(ap);
	buf_appends(b, "\r\n");
}

void imap_write_tagged(struct buf *b, const char *tag, const char *resp, const char *code,
		       const char *fmt, ...)
{
	va_list ap;
	buf_printf(b, "%s %s ", tag ? tag : "*", resp);
	if (code)
		buf_printf(b, "[%s] ", code);
	va_start(ap, fmt);
	buf_vprintf(b, fmt, ap);
	va_end(ap);
	buf_appends(b, "\r\n");
}

void imap_write_error(struct buf *b, const struct imap_error *err)
{
	const char *msg = err->msg ? err->msg : "protocol error";
	if (err->fatal) {
		buf_printf(b, "* BYE %s\r\n", msg);
		return;
	}
	imap_write_tagged(b, err->tag, err->resp == IMAP_RESP_NO ? "NO" : "BAD", err->code,
			  "%s", msg);
}
