/* stats_http.c: the head of one HTTP/1.x request, for the metrics
 * endpoint (see stats_http_parse in stats.h). No I/O: the caller keeps
 * the bytes received and calls again with more. Everything is checked
 * against the METRICS_* limits of lib/limits.h as soon as the bytes are
 * there, so garbage is refused at once, not after the head limit. */
#include "stats/stats.h"

#include <string.h>

static int is_tchar(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c && strchr("!#$%&'*+-.^_`|~", c));
}

static int bad(int *status_r, int status)
{
	*status_r = status;
	return -1;
}

/* Line [p, end) (its LF at end) without a CR before the LF; -1 for a CR
 * elsewhere or a control character (TAB allowed where tab_ok). */
static int line_len(const char *p, const char *end, int tab_ok, size_t *len_r)
{
	size_t n = (size_t)(end - p);
	if (n && p[n - 1] == '\r')
		n--;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];
		if ((c < 0x20 && !(tab_ok && c == '\t')) || c == 0x7f)
			return -1;
	}
	*len_r = n;
	return 0;
}

/* The bytes after the last complete line: only legal characters so far
 * (a lone CR is accepted only as the last byte). */
static int partial_ok(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];
		if (c == '\r' && i + 1 == n)
			return 1;
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return 0;
	}
	return 1;
}

static int request_line(const char *p, size_t n, struct stats_http_req *req, int *status_r)
{
	const char *sp1 = memchr(p, ' ', n);
	if (!sp1)
		return bad(status_r, 400);
	size_t ml = (size_t)(sp1 - p);
	if (ml == 0)
		return bad(status_r, 400);
	for (size_t i = 0; i < ml; i++)
		if (!is_tchar((unsigned char)p[i]))
			return bad(status_r, 400);
	const char *t = sp1 + 1;
	const char *sp2 = memchr(t, ' ', n - (size_t)(t - p));
	if (!sp2 || sp2 == t)
		return bad(status_r, 400);
	size_t tl = (size_t)(sp2 - t);
	const char *v = sp2 + 1;
	size_t vl = n - (size_t)(v - p);
	if (memchr(v, ' ', vl))
		return bad(status_r, 400);
	if (vl != 8 || memcmp(v, "HTTP/", 5) || v[6] != '.' || v[5] < '0' || v[5] > '9' || v[7] < '0' || v[7] > '9')
		return bad(status_r, 400);
	if (v[5] != '1')
		return bad(status_r, 505);
	if (tl > METRICS_MAX_TARGET)
		return bad(status_r, 414);
	if (t[0] != '/')
		return bad(status_r, 400);
	for (size_t i = 0; i < tl; i++)
		if ((unsigned char)t[i] <= 0x20 || (unsigned char)t[i] >= 0x7f)
			return bad(status_r, 400);
	if (ml >= sizeof req->method)
		return bad(status_r, 501);
	memcpy(req->method, p, ml);
	req->method[ml] = '\0';
	if (strcmp(req->method, "GET") && strcmp(req->method, "HEAD"))
		return bad(status_r, 405);
	const char *q = memchr(t, '?', tl);
	size_t pl = q ? (size_t)(q - t) : tl;
	memcpy(req->path, t, pl);
	req->path[pl] = '\0';
	return 0;
}

static int ieq(const char *a, size_t n, const char *b)
{
	if (strlen(b) != n)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char x = a[i] >= 'A' && a[i] <= 'Z' ? (char)(a[i] + 32) : a[i];
		if (x != b[i])
			return 0;
	}
	return 1;
}

static int header_line(const char *p, size_t n, int *status_r)
{
	if (p[0] == ' ' || p[0] == '\t')
		return bad(status_r, 400);	/* obsolete line folding */
	const char *colon = memchr(p, ':', n);
	if (!colon || colon == p)
		return bad(status_r, 400);
	size_t nl = (size_t)(colon - p);
	for (size_t i = 0; i < nl; i++)
		if (!is_tchar((unsigned char)p[i]))
			return bad(status_r, 400);
	const char *v = colon + 1;
	size_t vl = n - nl - 1;
	while (vl && (*v == ' ' || *v == '\t')) {
		v++;
		vl--;
	}
	while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
		vl--;
	if (ieq(p, nl, "transfer-encoding"))
		return bad(status_r, 400);	/* no bodies */
	if (ieq(p, nl, "content-length")) {
		if (!vl)
			return bad(status_r, 400);
		for (size_t i = 0; i < vl; i++)
			if (v[i] != '0')
				return bad(status_r, 400);
	}
	return 0;
}

int stats_http_parse(const char *in, size_t len, struct stats_http_req *req, size_t *used_r, int *status_r)
{
	*status_r = 0;
	size_t off = 0;
	int nlines = 0;
	for (;;) {
		const char *lf = off < len ? memchr(in + off, '\n', len - off) : NULL;
		if (!lf) {
			size_t rest = len - off;
			if (!partial_ok(in + off, rest))
				return bad(status_r, 400);
			if (nlines == 0 && rest > METRICS_MAX_REQUEST_LINE)
				return bad(status_r, 414);
			if (len > METRICS_MAX_HEAD)
				return bad(status_r, 431);
			return 0;
		}
		size_t end = (size_t)(lf - in) + 1;
		if (end > METRICS_MAX_HEAD)
			return bad(status_r, 431);
		size_t n;
		if (line_len(in + off, lf, nlines > 0, &n) < 0)
			return bad(status_r, 400);
		if (nlines == 0) {
			if (n > METRICS_MAX_REQUEST_LINE)
				return bad(status_r, 414);
			if (request_line(in + off, n, req, status_r) < 0)
				return -1;
		} else if (n == 0) {
			*used_r = end;
			return 1;
		} else {
			if (nlines > METRICS_MAX_HEADERS)
				return bad(status_r, 431);
			if (header_line(in + off, n, status_r) < 0)
				return -1;
		}
		nlines++;
		off = end;
	}
}
