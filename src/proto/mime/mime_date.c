/* mime_date.c: RFC 5322 3.3 date-time to time_t, for SEARCH SENTBEFORE /
 * SENTON / SENTSINCE and SORT DATE. Obsolete and common broken forms are
 * read too: no day name, 2-digit (+1900 or +2000) and 3-digit (+1900)
 * years, no seconds, named and military zones (RFC 5322 4.3; military
 * ones count as +0000 as it advises), comments, '-' between the date
 * parts, a missing zone (+0000), and the asctime() order
 * "Mon Jan  2 15:04:05 2006". The conversion uses no time zone database
 * and no locale. */
#include "proto/mime/mime-private.h"

#include <string.h>

struct dscan {
	const char *s;
	size_t len, p;
};

static void skip(struct dscan *d)
{
	for (;;) {
		mime_skip_cfws(d->s, d->len, &d->p);
		if (d->p < d->len && (d->s[d->p] == ',' || d->s[d->p] == '-' ||
				      d->s[d->p] == '/')) {
			/* separators we tolerate between the parts */
			if (d->s[d->p] == '-' && d->p + 1 < d->len &&
			    d->s[d->p + 1] >= '0' && d->s[d->p + 1] <= '9' &&
			    d->p > 0 && d->s[d->p - 1] == ' ')
				return;	/* a zone like -0500 */
			d->p++;
			continue;
		}
		return;
	}
}

static int is_alpha(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* Reads up to max digits; returns how many were read. */
static int number(struct dscan *d, int max, int *v_r)
{
	int n = 0, v = 0;
	while (d->p < d->len && n < max && is_digit(d->s[d->p])) {
		v = v * 10 + (d->s[d->p++] - '0');
		n++;
	}
	*v_r = v;
	return n;
}

static size_t word(struct dscan *d, const char **w_r)
{
	size_t a = d->p;
	while (d->p < d->len && is_alpha(d->s[d->p]))
		d->p++;
	*w_r = d->s + a;
	return d->p - a;
}

static int month_of(const char *w, size_t n)
{
	static const char months[] = "janfebmaraprmayjunjulaugsepoctnovdec";
	if (n < 3)
		return -1;
	for (int m = 0; m < 12; m++)
		if (mime_eq_nocase(w, 3, (char[]){ months[m * 3], months[m * 3 + 1],
						   months[m * 3 + 2], '\0' }))
			return m + 1;
	return -1;
}

static int weekday(const char *w, size_t n)
{
	static const char days[] = "montuewedthufrisatsun";
	if (n < 3)
		return 0;
	for (int i = 0; i < 7; i++)
		if (mime_eq_nocase(w, 3, (char[]){ days[i * 3], days[i * 3 + 1],
						   days[i * 3 + 2], '\0' }))
			return 1;
	return 0;
}

/* Zone names of RFC 5322 4.3, in minutes east of UTC. */
static int zone_of(const char *w, size_t n, int *off_r)
{
	static const struct { const char *name; int hours; } zones[] = {
		{ "ut", 0 }, { "utc", 0 }, { "gmt", 0 }, { "z", 0 },
		{ "est", -5 }, { "edt", -4 }, { "cst", -6 }, { "cdt", -5 },
		{ "mst", -7 }, { "mdt", -6 }, { "pst", -8 }, { "pdt", -7 },
	};
	for (size_t i = 0; i < sizeof(zones) / sizeof(zones[0]); i++)
		if (mime_eq_nocase(w, n, zones[i].name)) {
			*off_r = zones[i].hours * 60;
			return 1;
		}
	if (n == 1 && w[0] != 'j' && w[0] != 'J') {	/* military */
		*off_r = 0;
		return 1;
	}
	return 0;
}

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar. */
static long long days_from_civil(long long y, int m, int d)
{
	y -= m <= 2;
	long long era = (y >= 0 ? y : y - 399) / 400;
	long long yoe = y - era * 400;
	long long doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	long long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static int days_in_month(int y, int m)
{
	static const int dm[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
	return m == 2 && leap ? 29 : dm[m - 1];
}

static int read_time(struct dscan *d, int *h, int *mi, int *sec)
{
	if (number(d, 2, h) == 0 || d->p >= d->len || d->s[d->p] != ':')
		return -1;
	d->p++;
	if (number(d, 2, mi) != 2)
		return -1;
	*sec = 0;
	if (d->p < d->len && d->s[d->p] == ':') {
		d->p++;
		if (number(d, 2, sec) != 2)
			return -1;
	}
	return 0;
}

static int read_year(struct dscan *d, int *y)
{
	int n = number(d, 4, y);
	if (n == 2)
		*y += *y < 50 ? 2000 : 1900;
	else if (n == 3)
		*y += 1900;
	else if (n != 4)
		return -1;
	return 0;
}

int mime_date_parse(const char *s, size_t len, time_t *t_r, int *tzoff_r)
{
	struct dscan d = { s, len, 0 };
	const char *w;
	size_t wn;
	int day, mon, year, h, mi, sec, off = 0;

	skip(&d);
	wn = word(&d, &w);
	if (wn > 0 && !weekday(w, wn) && month_of(w, wn) < 0)
		return -1;
	if (wn > 0 && weekday(w, wn)) {
		skip(&d);
		wn = word(&d, &w);
	}
	if (wn > 0) {
		/* asctime order: month day time year [zone] */
		if ((mon = month_of(w, wn)) < 0)
			return -1;
		skip(&d);
		if (number(&d, 2, &day) == 0)
			return -1;
		skip(&d);
		if (read_time(&d, &h, &mi, &sec) < 0)
			return -1;
		skip(&d);
		if (read_year(&d, &year) < 0)
			return -1;
	} else {
		if (number(&d, 2, &day) == 0)
			return -1;
		skip(&d);
		wn = word(&d, &w);
		if ((mon = month_of(w, wn)) < 0)
			return -1;
		skip(&d);
		if (read_year(&d, &year) < 0)
			return -1;
		skip(&d);
		if (read_time(&d, &h, &mi, &sec) < 0)
			return -1;
	}
	skip(&d);
	if (d.p < d.len && (d.s[d.p] == '+' || d.s[d.p] == '-')) {
		int sign = d.s[d.p] == '-' ? -1 : 1, z;
		d.p++;
		if (number(&d, 4, &z) != 4 || z % 100 > 59)
			return -1;
		off = sign * ((z / 100) * 60 + z % 100);
	} else if ((wn = word(&d, &w)) > 0) {
		if (!zone_of(w, wn, &off))
			off = 0;	/* unknown zone name: as -0000 */
	}
	if (day < 1 || day > days_in_month(year, mon) || h > 23 || mi > 59 ||
	    sec > 60)
		return -1;
	long long t = days_from_civil(year, mon, day) * 86400LL +
		      h * 3600 + mi * 60 + sec - off * 60LL;
	*t_r = (time_t)t;
	*tzoff_r = off;
	return 0;
}

int mime_message_date(const struct mime_message *msg, time_t *t_r,
		      int *tzoff_r)
{
	const struct mime_part *r = msg->root;
	size_t it = r->hdr_off;
	struct mime_field f;
	if (!mime_header_find(msg->data, r->hdr_off, r->hdr_len, "date", &it, &f))
		return -1;
	struct buf v = BUF_INIT;
	mime_unfold(msg->data + f.value_off, f.value_len, &v);
	int rc = mime_date_parse(buf_cstr(&v), v.len, t_r, tzoff_r);
	buf_free(&v);
	return rc;
}
