/* mime_ctype.c: structured MIME field values: Content-Type and
 * Content-Disposition "token[/token] *(; attribute=value)" with comments
 * and quoted strings (RFC 2045 5.1, RFC 2183), RFC 2231 parameter
 * continuations and charsets, Content-Language lists and single tokens.
 * The input is an unfolded field value; broken values are read as far as
 * they make sense (a missing ';', a value with spaces in it). */
#include "proto/mime/mime-private.h"

#include "lib/xalloc.h"

#include <stdio.h>
#include <string.h>

static int is_tspecial(char c)
{
	return strchr("()<>@,;:\\\"/[]?=", c) != NULL;
}

/* RFC 2045 token character. */
static int is_tokenc(char c)
{
	unsigned char u = (unsigned char)c;
	return u > 32 && u < 127 && !is_tspecial(c);
}

/* A looser attribute/value character for broken mail. */
static int is_loosec(char c)
{
	unsigned char u = (unsigned char)c;
	return u > 32 && u != 127 && c != ';' && c != '"' && c != '(' && c != '=';
}

void mime_skip_cfws(const char *s, size_t len, size_t *p)
{
	size_t i = *p;
	while (i < len) {
		char c = s[i];
		if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
			i++;
		} else if (c == '(') {
			size_t depth = 0;
			for (; i < len; i++) {
				if (s[i] == '\\' && i + 1 < len) {
					i++;
				} else if (s[i] == '(') {
					depth++;
				} else if (s[i] == ')') {
					if (--depth == 0) {
						i++;
						break;
					}
				}
			}
		} else {
			break;
		}
	}
	*p = i;
}

static char *take_token(const char *s, size_t len, size_t *p)
{
	size_t i = *p;
	while (i < len && is_tokenc(s[i]))
		i++;
	if (i == *p)
		return NULL;
	char *t = xstrndup(s + *p, i - *p);
	mime_lower(t);
	*p = i;
	return t;
}

/* A quoted string at s[*p] == '"', unescaped into out. */
static void take_quoted(const char *s, size_t len, size_t *p, struct buf *out)
{
	size_t i = *p + 1;
	for (; i < len && s[i] != '"'; i++) {
		if (s[i] == '\\' && i + 1 < len)
			i++;
		buf_putc(out, s[i]);
	}
	*p = i < len ? i + 1 : len;
}

static void skip_to_semicolon(const char *s, size_t len, size_t *p)
{
	size_t i = *p;
	while (i < len && s[i] != ';') {
		if (s[i] == '"') {
			struct buf junk = BUF_INIT;
			take_quoted(s, len, &i, &junk);
			buf_free(&junk);
		} else {
			i++;
		}
	}
	*p = i;
}

/* At s[p] starts "attribute [CFWS] =": a parameter without its ';'. */
static int looks_like_param(const char *s, size_t len, size_t p)
{
	size_t i = p;
	while (i < len && is_loosec(s[i]))
		i++;
	if (i == p)
		return 0;
	mime_skip_cfws(s, len, &i);
	return i < len && s[i] == '=';
}

struct raw_param {
	char *base;	/* lowercase, without section and '*' */
	char *value;
	int section;	/* -1: none */
	int ext;	/* value is charset'lang'%XX (RFC 2231) */
	int used;
};

static void split_name(struct raw_param *rp, char *name)
{
	size_t n = strlen(name);
	rp->section = -1;
	rp->ext = 0;
	if (n > 1 && name[n - 1] == '*') {
		rp->ext = 1;
		name[--n] = '\0';
	}
	char *star = strrchr(name, '*');
	if (star && star != name && star[1] != '\0') {
		const char *d = star + 1;
		size_t nd = strspn(d, "0123456789");
		if (d[nd] == '\0' && nd <= 3 && !(nd > 1 && d[0] == '0')) {
			int v = 0;
			for (size_t i = 0; i < nd; i++)
				v = v * 10 + (d[i] - '0');
			rp->section = v;
			*star = '\0';
		}
	}
	rp->base = name;
}

static int attr_char(unsigned char c)
{
	return c > 32 && c < 127 && c != '*' && c != '\'' && c != '%' &&
	       !is_tspecial((char)c);
}

static void append_param(struct mime_param ***tail, const char *base, int ext,
			 char *value)
{
	struct mime_param *p = xcalloc(1, sizeof(*p));
	size_t n = strlen(base);
	p->name = xmalloc(n + 2);
	memcpy(p->name, base, n);
	if (ext)
		p->name[n++] = '*';
	p->name[n] = '\0';
	p->value = value;
	**tail = p;
	*tail = &p->next;
}

/* RFC 2231 3-4: joins name*0, name*1... and keeps the extended form
 * (name* = charset'lang'%XX) so clients can decode it. */
static struct mime_param *merge_params(struct raw_param *raw, size_t n)
{
	struct mime_param *head = NULL, **tail = &head;
	for (size_t i = 0; i < n; i++) {
		if (raw[i].used)
			continue;
		if (raw[i].section < 0) {
			raw[i].used = 1;
			append_param(&tail, raw[i].base, raw[i].ext,
				     xstrdup(raw[i].value));
			continue;
		}
		/* Sections of this base, in section order, up to a gap. */
		int have0 = 0;
		for (size_t j = i; j < n; j++)
			if (!raw[j].used && raw[j].section == 0 &&
			    strcmp(raw[j].base, raw[i].base) == 0)
				have0 = 1;
		if (!have0) {
			raw[i].used = 1;
			char *name = xmalloc(strlen(raw[i].base) + 8);
			sprintf(name, "%s*%d", raw[i].base, raw[i].section);
			append_param(&tail, name, raw[i].ext, xstrdup(raw[i].value));
			free(name);
			continue;
		}
		size_t segs[MIME_MAX_PARAMS];
		size_t nsegs = 0;
		int any_ext = 0;
		for (int sec = 0; nsegs < MIME_MAX_PARAMS; sec++) {
			size_t found = n;
			for (size_t j = i; j < n; j++)
				if (!raw[j].used && raw[j].section == sec &&
				    strcmp(raw[j].base, raw[i].base) == 0) {
					found = j;
					break;
				}
			if (found == n)
				break;
			raw[found].used = 1;
			segs[nsegs++] = found;
			any_ext |= raw[found].ext;
		}
		/* Duplicates and sections after a gap are dropped. */
		for (size_t j = i; j < n; j++)
			if (raw[j].section >= 0 &&
			    strcmp(raw[j].base, raw[i].base) == 0)
				raw[j].used = 1;
		struct buf v = BUF_INIT;
		if (any_ext && !raw[segs[0]].ext)
			buf_appends(&v, "''");
		for (size_t k = 0; k < nsegs; k++) {
			const struct raw_param *rp = &raw[segs[k]];
			if (!any_ext || rp->ext) {
				buf_appends(&v, rp->value);
				continue;
			}
			for (const char *c = rp->value; *c; c++) {
				if (attr_char((unsigned char)*c))
					buf_putc(&v, *c);
				else
					buf_printf(&v, "%%%02X", (unsigned char)*c);
			}
		}
		append_param(&tail, raw[i].base, any_ext, buf_release(&v));
	}
	return head;
}

int mime_ctype_parse(const char *s, size_t len, char **type_r,
		     char **subtype_r, struct mime_param **params_r)
{
	size_t p = 0;
	*type_r = NULL;
	if (subtype_r)
		*subtype_r = NULL;
	*params_r = NULL;

	mime_skip_cfws(s, len, &p);
	char *type = take_token(s, len, &p);
	if (!type)
		return -1;
	char *subtype = NULL;
	if (subtype_r) {
		mime_skip_cfws(s, len, &p);
		if (p < len && s[p] == '/') {
			p++;
			mime_skip_cfws(s, len, &p);
			subtype = take_token(s, len, &p);
		}
		if (!subtype) {
			free(type);
			return -1;
		}
	}

	struct raw_param raw[MIME_MAX_PARAMS];
	size_t nraw = 0;
	struct buf v = BUF_INIT;
	while (nraw < MIME_MAX_PARAMS) {
		mime_skip_cfws(s, len, &p);
		if (p >= len)
			break;
		if (s[p] == ';') {
			p++;
			mime_skip_cfws(s, len, &p);
			if (p >= len)
				break;
			if (s[p] == ';')
				continue;
		} else if (!looks_like_param(s, len, p)) {
			skip_to_semicolon(s, len, &p);
			continue;
		}
		size_t a = p;
		while (p < len && is_loosec(s[p]))
			p++;
		if (p == a) {
			skip_to_semicolon(s, len, &p);
			continue;
		}
		char *name = xstrndup(s + a, p - a);
		mime_skip_cfws(s, len, &p);
		if (p >= len || s[p] != '=') {
			free(name);
			skip_to_semicolon(s, len, &p);
			continue;
		}
		p++;
		mime_skip_cfws(s, len, &p);
		buf_reset(&v);
		if (p < len && s[p] == '"') {
			take_quoted(s, len, &p, &v);
		} else {
			size_t b = p;
			/* '=' is let in: boundary==_Part_1 is common */
			while (p < len && (is_loosec(s[p]) || s[p] == '='))
				p++;
			buf_append(&v, s + b, p - b);
			size_t q = p;
			mime_skip_cfws(s, len, &q);
			if (q < len && s[q] != ';' && !looks_like_param(s, len, q)) {
				/* "name=foo bar.pdf": keep the rest */
				size_t e = q;
				skip_to_semicolon(s, len, &e);
				while (e > p && (s[e - 1] == ' ' || s[e - 1] == '\t'))
					e--;
				buf_append(&v, s + p, e - p);
				p = e;
			}
		}
		mime_lower(name);
		struct raw_param *rp = &raw[nraw++];
		memset(rp, 0, sizeof(*rp));
		split_name(rp, name);
		/* NULs were dropped by the unfolding; keep C strings. */
		rp->value = xstrdup(buf_cstr(&v));
	}
	buf_free(&v);

	*params_r = merge_params(raw, nraw);
	for (size_t i = 0; i < nraw; i++) {
		free(raw[i].base);
		free(raw[i].value);
	}
	*type_r = type;
	if (subtype_r)
		*subtype_r = subtype;
	return 0;
}

void mime_params_free(struct mime_param *p)
{
	while (p) {
		struct mime_param *next = p->next;
		free(p->name);
		free(p->value);
		free(p);
		p = next;
	}
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int mime_param_get(const struct mime_param *list, const char *name,
		   struct buf *value_r)
{
	size_t n = strlen(name);
	for (const struct mime_param *p = list; p; p = p->next) {
		size_t pn = strlen(p->name);
		int ext = pn > 0 && p->name[pn - 1] == '*';
		if (pn - (size_t)ext != n || !mime_eq_nocase(p->name, n, name))
			continue;
		if (!ext) {
			buf_appends(value_r, p->value);
			return 1;
		}
		/* charset'language'percent-encoded */
		const char *v = p->value, *q1 = strchr(v, '\''), *q2 = NULL;
		if (q1)
			q2 = strchr(q1 + 1, '\'');
		char *charset = NULL;
		if (q1 && q2) {
			charset = xstrndup(v, (size_t)(q1 - v));
			v = q2 + 1;
		}
		struct buf raw = BUF_INIT;
		for (; *v; v++) {
			int h, l;
			if (*v == '%' && (h = hexval(v[1])) >= 0 &&
			    (l = hexval(v[2])) >= 0) {
				buf_putc(&raw, (char)(h * 16 + l));
				v += 2;
			} else {
				buf_putc(&raw, *v);
			}
		}
		if (charset && *charset)
			mime_charset_to_utf8(charset, raw.ptr ? raw.ptr : "", raw.len,
					     value_r);
		else
			buf_append(value_r, raw.ptr ? raw.ptr : "", raw.len);
		buf_free(&raw);
		free(charset);
		return 1;
	}
	return 0;
}

void mime_lang_parse(const char *s, size_t len, char ***tags_r,
		     size_t *ntags_r)
{
	char **tags = NULL;
	size_t n = 0, p = 0;
	while (p < len && n < MIME_MAX_PARAMS) {
		mime_skip_cfws(s, len, &p);
		if (p >= len)
			break;
		if (s[p] == ',' || s[p] == ';' || s[p] == '"' || s[p] == '=') {
			p++;
			continue;
		}
		size_t a = p;
		while (p < len && is_loosec(s[p]) && s[p] != ',')
			p++;
		if (p == a) {
			p++;
			continue;
		}
		tags = xrealloc(tags, (n + 1) * sizeof(*tags));
		tags[n++] = xstrndup(s + a, p - a);
	}
	*tags_r = tags;
	*ntags_r = n;
}

char *mime_token_parse(const char *s, size_t len)
{
	size_t p = 0;
	mime_skip_cfws(s, len, &p);
	return take_token(s, len, &p);
}
