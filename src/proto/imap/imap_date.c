/* imap_date.c: IMAP dates to time_t.
 *
 * date      = 1*2DIGIT "-" Mon "-" 4DIGIT          (SEARCH keys)
 * date-time = DQUOTE 2(SP/DIGIT) "-" Mon "-" 4DIGIT SP
 *             2DIGIT ":" 2DIGIT ":" 2DIGIT SP ("+"/"-") 4DIGIT DQUOTE
 * (the quotes are already removed by the tokenizer). Conversion is done
 * with our own civil-date arithmetic: no locale, no TZ, no timegm().
 */
#include <string.h>

#include "proto/imap/imap_private.h"

static const char *const months[12] = {
	"Jan", "Feb", "Mar", "Apr", "May", "Jun",
	"Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
};

static int leap(int y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int mdays(int y, int m)
{
	static const int d[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	return m == 2 && leap(y) ? 29 : d[m - 1];
}

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian). */
static int64_t days_from_civil(int y, int m, int d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static int digits(const char *s, size_t n, int *v)
{
	int x = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		x = x * 10 + (s[i] - '0');
	}
	*v = x;
	return 0;
}

/* "d-Mon-yyyy" or "dd-Mon-yyyy" at s; *used gets its length. */
static int parse_day(const char *s, size_t len, int space_ok, int *y, int *m, int *d,
		     size_t *used)
{
	size_t dl;
	if (len >= 2 && s[1] == '-')
		dl = 1;
	else if (len >= 3 && s[2] == '-')
		dl = 2;
	else
		return -1;
	const char *ds = s;
	size_t dn = dl;
	if (dl == 2 && s[0] == ' ' && space_ok) {
		ds = s + 1;
		dn = 1;
	}
	if (digits(ds, dn, d) < 0 || len < dl + 9 || s[dl + 4] != '-')
		return -1;
	*m = 0;
	for (int i = 0; i < 12; i++)
		if (imap_word_eq(s + dl + 1, 3, months[i]))
			*m = i + 1;
	if (*m == 0 || digits(s + dl + 5, 4, y) < 0)
		return -1;
	if (*d < 1 || *d > mdays(*y, *m))
		return -1;
	*used = dl + 9;
	return 0;
}

int imap_date_parse(const char *s, size_t len, time_t *t_r)
{
	int y, m, d;
	size_t used;
	if (parse_day(s, len, 0, &y, &m, &d, &used) < 0 || used != len)
		return -1;
	*t_r = (time_t)(days_from_civil(y, m, d) * 86400);
	return 0;
}

int imap_datetime_parse(const char *s, size_t len, time_t *t_r, int *tzoff_r)
{
	int y, m, d, hh, mm, ss, zh, zm;
	size_t used;
	/* RFC 3501: the day is 2 characters, " 1" or "01"; "1" is accepted */
	if (parse_day(s, len, 1, &y, &m, &d, &used) < 0 || len != used + 15)
		return -1;
	const char *t = s + used;
	if (t[0] != ' ' || t[3] != ':' || t[6] != ':' || t[9] != ' ' ||
	    (t[10] != '+' && t[10] != '-'))
		return -1;
	if (digits(t + 1, 2, &hh) < 0 || digits(t + 4, 2, &mm) < 0 ||
	    digits(t + 7, 2, &ss) < 0 || digits(t + 11, 2, &zh) < 0 ||
	    digits(t + 13, 2, &zm) < 0)
		return -1;
	if (hh > 23 || mm > 59 || ss > 60 || zm > 59)
		return -1;
	int off = zh * 60 + zm;
	if (t[10] == '-')
		off = -off;
	int64_t secs = days_from_civil(y, m, d) * 86400 + hh * 3600 + mm * 60 + ss;
	*t_r = (time_t)(secs - (int64_t)off * 60);
	if (tzoff_r)
		*tzoff_r = off;
	return 0;
}
