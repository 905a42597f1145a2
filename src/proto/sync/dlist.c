/* dlist.c: DLIST values, framing, parsing and printing (see dlist.h). */
#include "proto/sync/dlist.h"

#include "lib/limits.h"
#include "lib/xalloc.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* ---- values -------------------------------------------------------------------- */

struct dlist *dlist_new(enum dlist_type type, const char *key)
{
	struct dlist *d = xcalloc(1, sizeof *d);
	d->type = type;
	d->key = key ? xstrdup(key) : NULL;
	d->fd = -1;
	return d;
}

void dlist_free(struct dlist **dp)
{
	struct dlist *d = *dp;
	if (!d)
		return;
	for (size_t i = 0; i < d->n; i++)
		dlist_free(&d->items[i]);
	free(d->items);
	free(d->key);
	free(d->part);
	free(d->path);
	if (d->fd >= 0)
		close(d->fd);
	buf_free(&d->s);
	free(d);
	*dp = NULL;
}

struct dlist *dlist_add(struct dlist *parent, struct dlist *child)
{
	if (parent->n == parent->cap)
		parent->items = xrealloc(parent->items, (parent->cap = parent->cap ? parent->cap * 2 : 8) *
							       sizeof *parent->items);
	parent->items[parent->n++] = child;
	return child;
}

struct dlist *dlist_add_bytes(struct dlist *kv, const char *key, const void *value, size_t len)
{
	struct dlist *d = dlist_new(DL_STR, key);
	buf_append(&d->s, value, len);
	return dlist_add(kv, d);
}

struct dlist *dlist_add_str(struct dlist *kv, const char *key, const char *value)
{
	if (!value)
		return dlist_add_nil(kv, key);
	return dlist_add_bytes(kv, key, value, strlen(value));
}

struct dlist *dlist_add_nil(struct dlist *kv, const char *key)
{
	return dlist_add(kv, dlist_new(DL_NIL, key));
}

struct dlist *dlist_add_num(struct dlist *kv, const char *key, uint64_t value)
{
	char n[32];
	snprintf(n, sizeof n, "%" PRIu64, value);
	return dlist_add_str(kv, key, n);
}

struct dlist *dlist_add_hex64(struct dlist *kv, const char *key, uint64_t value)
{
	char n[32];
	snprintf(n, sizeof n, "%016" PRIx64, value);
	return dlist_add_str(kv, key, n);
}

struct dlist *dlist_add_flag(struct dlist *list, const char *flag)
{
	struct dlist *d = dlist_new(DL_FLAG, NULL);
	buf_appends(&d->s, flag);
	return dlist_add(list, d);
}

struct dlist *dlist_add_list(struct dlist *kv, const char *key)
{
	return dlist_add(kv, dlist_new(DL_LIST, key));
}

struct dlist *dlist_add_kvlist(struct dlist *kv, const char *key)
{
	return dlist_add(kv, dlist_new(DL_KVLIST, key));
}

struct dlist *dlist_add_file(struct dlist *list, const char *key, const char *part, const char *guid,
			     const void *data, size_t len)
{
	struct dlist *d = dlist_new(DL_FILE, key);
	d->part = xstrdup(part);
	snprintf(d->guid, sizeof d->guid, "%s", guid);
	buf_append(&d->s, data, len);
	d->size = len;
	return dlist_add(list, d);
}

struct dlist *dlist_add_file_ref(struct dlist *list, const char *key, const char *part, const char *guid,
				 const char *path, uint64_t size)
{
	struct dlist *d = dlist_new(DL_FILE, key);
	d->part = xstrdup(part);
	snprintf(d->guid, sizeof d->guid, "%s", guid);
	d->path = xstrdup(path);
	d->size = size;
	d->external = 1;
	return dlist_add(list, d);
}

struct dlist *dlist_add_file_fd(struct dlist *list, const char *key, const char *part, const char *guid,
				const char *path, int fd, uint64_t size)
{
	struct dlist *d = dlist_add_file_ref(list, key, part, guid, path, size);
	d->fd = fd;
	return d;
}

const struct dlist *dlist_get(const struct dlist *kv, const char *key)
{
	if (!kv || kv->type != DL_KVLIST)
		return NULL;
	for (size_t i = 0; i < kv->n; i++)
		if (kv->items[i]->key && !strcmp(kv->items[i]->key, key))
			return kv->items[i];
	return NULL;
}

const char *dlist_cstr(const struct dlist *d)
{
	if (!d || (d->type != DL_STR && d->type != DL_FLAG))
		return NULL;
	if (memchr(buf_cstr(&d->s), '\0', d->s.len))
		return NULL;
	return buf_cstr(&d->s);
}

int dlist_get_str(const struct dlist *kv, const char *key, const char **s_r)
{
	const char *s = dlist_cstr(dlist_get(kv, key));
	if (!s)
		return -1;
	*s_r = s;
	return 0;
}

int dlist_num64(const struct dlist *d, uint64_t *v_r)
{
	const char *s = dlist_cstr(d);
	if (!s || !*s)
		return -1;
	uint64_t v = 0;
	for (const char *p = s; *p; p++) {
		unsigned dgt = (unsigned)(*p - '0');
		if (!isdigit((unsigned char)*p) || v > UINT64_MAX / 10 || (v == UINT64_MAX / 10 && dgt > UINT64_MAX % 10))
			return -1;
		v = v * 10 + dgt;
	}
	*v_r = v;
	return 0;
}

int dlist_get_num64(const struct dlist *kv, const char *key, uint64_t *v_r)
{
	return dlist_num64(dlist_get(kv, key), v_r);
}

int dlist_get_num32(const struct dlist *kv, const char *key, uint32_t *v_r)
{
	uint64_t v;
	if (dlist_get_num64(kv, key, &v) < 0)
		return -1;
	*v_r = (uint32_t)v;
	return 0;
}

int dlist_get_hex64(const struct dlist *kv, const char *key, uint64_t *v_r)
{
	const char *s = dlist_cstr(dlist_get(kv, key));
	if (!s || !*s || strlen(s) > 16)
		return -1;
	uint64_t v = 0;
	for (const char *p = s; *p; p++) {
		if (!isxdigit((unsigned char)*p))
			return -1;
		v = v * 16 + (uint64_t)(isdigit((unsigned char)*p) ? *p - '0' : tolower((unsigned char)*p) - 'a' + 10);
	}
	*v_r = v;
	return 0;
}

int dlist_get_guid(const struct dlist *kv, const char *key, char guid_r[41])
{
	const char *s = dlist_cstr(dlist_get(kv, key));
	if (!s || strlen(s) != 40)
		return -1;
	for (int i = 0; i < 40; i++) {
		if (!isxdigit((unsigned char)s[i]))
			return -1;
		guid_r[i] = (char)tolower((unsigned char)s[i]);
	}
	guid_r[40] = '\0';
	return 0;
}

const struct dlist *dlist_get_list(const struct dlist *kv, const char *key)
{
	const struct dlist *d = dlist_get(kv, key);
	return d && d->type == DL_LIST ? d : NULL;
}

const struct dlist *dlist_get_kvlist(const struct dlist *kv, const char *key)
{
	const struct dlist *d = dlist_get(kv, key);
	return d && d->type == DL_KVLIST ? d : NULL;
}

/* ---- framing ------------------------------------------------------------------------ */

static int is_ws(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v';
}

static int is_atom_end(char c)
{
	return is_ws(c) || c == '(' || c == ')' || c == '"';
}

void dlist_frame_init(struct dlist_frame *f)
{
	memset(f, 0, sizeof *f);
}

static void first_token(struct dlist_frame *f, const char *tok, size_t n)
{
	static const char *const keyed[] = { "GET", "APPLY", "RESTORE", "*" };
	static const char *const plain[] = { "OK", "NO", "BAD", "+" };
	if (f->need != 0)
		return;
	for (size_t i = 0; i < 4; i++)
		if (strlen(keyed[i]) == n && !strncasecmp(tok, keyed[i], n)) {
			f->need = 3;
			return;
		}
	for (size_t i = 0; i < 4; i++)
		if (strlen(plain[i]) == n && !strncasecmp(tok, plain[i], n)) {
			f->need = -1;
			return;
		}
	f->need = 1;
}

/* Parses "{N}" / "{N+}" / "%{part guid size}" headers: returns the
 * position after the LF, 0 for need more, -1 bad. */
static long long literal_header(const char *in, size_t len, size_t p, int file, uint64_t *size_r,
				struct terr *err)
{
	size_t max = file ? IMAP_SYNC_MAX_FILE_HEADER : 32;
	const char *close = memchr(in + p, '}', len - p < max ? len - p : max);
	if (!close) {
		if (len - p >= max)
			return terr_set(err, TE_INVALID, "bad %sliteral header at byte %zu", file ? "file " : "", p);
		return 0;
	}
	const char *num = close;
	while (num > in + p && isdigit((unsigned char)num[-1]))
		num--;
	const char *numend = close;
	if (!file && close[-1] == '+') {
		numend = close - 1;
		num = numend;
		while (num > in + p && isdigit((unsigned char)num[-1]))
			num--;
	}
	if (num == numend || (!file && num != in + p + 1) || (file && num[-1] != ' '))
		return terr_set(err, TE_INVALID, "bad %sliteral header at byte %zu", file ? "file " : "", p);
	uint64_t v = 0;
	for (const char *q = num; q < numend; q++) {
		if (v > (UINT64_MAX - 9) / 10)
			return terr_set(err, TE_TOOBIG, "literal size too big at byte %zu", p);
		v = v * 10 + (uint64_t)(*q - '0');
	}
	size_t q = (size_t)(close - in) + 1;
	if (q < len && in[q] == '\r')
		q++;
	if (q >= len)
		return 0;
	if (in[q] != '\n')
		return terr_set(err, TE_INVALID, "literal header not followed by a line end at byte %zu", p);
	if (file ? v > (uint64_t)DLIST_MAX_FILE : v > DLIST_MAX_LITERAL)
		return terr_set(err, TE_TOOBIG, "%sliteral of %" PRIu64 " bytes is over the limit of %ld", file ? "file " : "",
				v, file ? (long)DLIST_MAX_FILE : (long)DLIST_MAX_LITERAL);
	*size_r = v;
	return (long long)q + 1;
}

/* The words of a file literal header "part guid size" (h..h+hl, without
 * the braces): 0 when the partition is a name and the GUID 40 hex digits
 * (lower-cased into guid), -1 when not. */
static int file_words(const char *h, size_t hl, char part[65], char guid[41])
{
	const char *sp1 = memchr(h, ' ', hl);
	const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', hl - (size_t)(sp1 + 1 - h)) : NULL;
	if (!sp1 || !sp2 || sp1 == h || sp1 - h > 64 || sp2 - sp1 - 1 != 40)
		return -1;
	for (const char *q = h; q < sp1; q++)
		if (!isalnum((unsigned char)*q) && *q != '-' && *q != '_' && *q != '.')
			return -1;
	for (size_t i = 0; i < 40; i++) {
		if (!isxdigit((unsigned char)sp1[1 + i]))
			return -1;
		guid[i] = (char)tolower((unsigned char)sp1[1 + i]);
	}
	guid[40] = '\0';
	memcpy(part, h, (size_t)(sp1 - h));
	part[sp1 - h] = '\0';
	return 0;
}

long long dlist_frame_scan(struct dlist_frame *f, const char *in, size_t len, struct terr *err)
{
	size_t p = f->pos;
	for (;;) {
		if (f->skip) {
			uint64_t take = len - p < f->skip ? len - p : f->skip;
			p += (size_t)take;
			f->skip -= take;
			if (f->skip) {
				f->pos = p;
				return 0;
			}
			continue;
		}
		if (p > (size_t)DLIST_MAX_COMMAND_BYTES)
			return terr_set(err, TE_TOOBIG, "command over %ld bytes", (long)DLIST_MAX_COMMAND_BYTES);
		if (p >= len) {
			f->pos = p;
			return 0;
		}
		if (f->need < 0) {
			const char *nl = memchr(in + p, '\n', len - p);
			if (!nl) {
				if (len > DLIST_MAX_ATOM)
					return terr_set(err, TE_TOOBIG, "response line over %d bytes", DLIST_MAX_ATOM);
				f->pos = len;
				return 0;
			}
			return (long long)(nl - in) + 1;
		}
		char c = in[p];
		if (is_ws(c)) {
			if (c == '\n' && f->depth == 0 && f->ntokens >= f->need)
				return (long long)p + 1;
			p++;
			continue;
		}
		size_t start = p;
		int token = 0;
		if (c == '(') {
			if (++f->depth > DLIST_MAX_DEPTH)
				return terr_set(err, TE_INVALID, "nesting deeper than %d at byte %zu", DLIST_MAX_DEPTH, p);
			p++;
			continue;
		}
		if (c == ')') {
			if (f->depth == 0)
				return terr_set(err, TE_INVALID, "unbalanced ')' at byte %zu", p);
			p++;
			token = --f->depth == 0;
		} else if (c == '%') {
			if (p + 1 >= len) {
				f->pos = p;
				return 0;
			}
			if (in[p + 1] == '(') {
				if (++f->depth > DLIST_MAX_DEPTH)
					return terr_set(err, TE_INVALID, "nesting deeper than %d at byte %zu", DLIST_MAX_DEPTH, p);
				p += 2;
				continue;
			}
			if (in[p + 1] != '{')
				return terr_set(err, TE_INVALID, "'%%' not followed by '(' or '{' at byte %zu", p);
			uint64_t size;
			long long q = literal_header(in, len, p + 1, 1, &size, err);
			if (q < 0)
				return -1;
			if (q == 0) {
				f->pos = p;
				return 0;
			}
			if (f->files) {
				/* the bytes are the caller's: announce the literal */
				const char *close = memchr(in + p + 2, '}', (size_t)q - p - 2);
				memset(&f->file, 0, sizeof f->file);
				f->file.ok = file_words(in + p + 2, (size_t)(close - in - p - 2), f->file.part,
							f->file.guid) == 0;
				f->file.size = size;
				f->nfiles++;
				if (f->depth == 0) {
					f->ntokens++;
					if (f->ntokens == 1 && f->need == 0)
						f->need = 1;
				}
				f->pos = (size_t)q;
				return DLIST_FRAME_FILE;
			}
			p = (size_t)q;
			f->skip = size;
			token = f->depth == 0;
		} else if (c == '{') {
			uint64_t size;
			long long q = literal_header(in, len, p, 0, &size, err);
			if (q < 0)
				return -1;
			if (q == 0) {
				f->pos = p;
				return 0;
			}
			p = (size_t)q;
			f->skip = size;
			token = f->depth == 0;
		} else if (c == '"') {
			size_t q = p + 1;
			while (q < len && in[q] != '"') {
				if (in[q] == '\r' || in[q] == '\n')
					return terr_set(err, TE_INVALID, "line end inside a quoted string at byte %zu", q);
				q += in[q] == '\\' ? 2 : 1;
			}
			if (q >= len) {
				if (len - p > DLIST_MAX_ATOM)
					return terr_set(err, TE_TOOBIG, "quoted string over %d bytes", DLIST_MAX_ATOM);
				f->pos = p;
				return 0;
			}
			p = q + 1;
			token = f->depth == 0;
		} else {
			size_t q = p;
			while (q < len && !is_atom_end(in[q]))
				q++;
			if (q >= len) {
				if (len - p > DLIST_MAX_ATOM)
					return terr_set(err, TE_TOOBIG, "word over %d bytes", DLIST_MAX_ATOM);
				f->pos = p;
				return 0;
			}
			p = q;
			if (f->depth == 0) {
				token = 1;
				if (f->ntokens == 0)
					first_token(f, in + start, q - start);
			}
		}
		if (token) {
			f->ntokens++;
			if (f->ntokens == 1 && f->need == 0)
				f->need = 1;
		}
	}
}

/* ---- parsing ----------------------------------------------------------------------------- */

struct parser {
	const char *in;
	size_t len, p;
	struct terr *err;
	size_t items;
	unsigned flags;
};

static int perr(struct parser *P, const char *what)
{
	return terr_set(P->err, TE_INVALID, "%s at byte %zu", what, P->p);
}

static void skip_ws(struct parser *P)
{
	while (P->p < P->len && is_ws(P->in[P->p]))
		P->p++;
}

/* Reads a literal's size and moves past its header; -1 on error. */
static int read_literal(struct parser *P, int file, uint64_t *size)
{
	long long q = literal_header(P->in, P->len, P->p + (file ? 1 : 0), file, size, P->err);
	if (q <= 0) {
		if (q == 0)
			perr(P, "truncated literal");
		return -1;
	}
	P->p = (size_t)q;
	if (file && (P->flags & DLIST_FILES_OUTSIDE))
		return 0;	/* the bytes were streamed elsewhere */
	if (*size > P->len - P->p)
		return perr(P, "literal runs past the end");
	return 0;
}

static struct dlist *parse_value(struct parser *P, int depth);

/* A string token: atom, quoted or literal (keys and values). kind_r:
 * 0 atom, 1 quoted, 2 literal. */
static int parse_string(struct parser *P, struct buf *out, int *kind_r)
{
	buf_reset(out);
	char c = P->in[P->p];
	if (c == '"') {
		P->p++;
		while (P->p < P->len && P->in[P->p] != '"') {
			if (P->in[P->p] == '\\' && P->p + 1 < P->len)
				P->p++;
			buf_putc(out, P->in[P->p++]);
		}
		if (P->p >= P->len)
			return perr(P, "unterminated quoted string");
		P->p++;
		*kind_r = 1;
		return 0;
	}
	if (c == '{') {
		uint64_t size;
		if (read_literal(P, 0, &size) < 0)
			return -1;
		buf_append(out, P->in + P->p, (size_t)size);
		P->p += (size_t)size;
		*kind_r = 2;
		return 0;
	}
	if (c == '%')	/* a key: "%(" or "%{" is framed as a list or a file literal */
		return perr(P, "a key cannot start with '%'");
	size_t s = P->p;
	while (P->p < P->len && !is_atom_end(P->in[P->p]))
		P->p++;
	if (P->p == s)
		return perr(P, "expected a value");
	buf_append(out, P->in + s, P->p - s);
	*kind_r = 0;
	return 0;
}

static struct dlist *parse_value(struct parser *P, int depth)
{
	skip_ws(P);
	if (P->p >= P->len) {
		perr(P, "expected a value");
		return NULL;
	}
	if (depth > DLIST_MAX_DEPTH || ++P->items > DLIST_MAX_ITEMS) {
		perr(P, depth > DLIST_MAX_DEPTH ? "nesting too deep" : "too many items");
		return NULL;
	}
	char c = P->in[P->p];
	struct dlist *d = NULL;
	if (c == '(' || (c == '%' && P->p + 1 < P->len && P->in[P->p + 1] == '(')) {
		int kv = c == '%';
		P->p += kv ? 2 : 1;
		d = dlist_new(kv ? DL_KVLIST : DL_LIST, NULL);
		struct buf key = BUF_INIT;
		for (;;) {
			skip_ws(P);
			if (P->p >= P->len) {
				perr(P, "unterminated list");
				goto fail;
			}
			if (P->in[P->p] == ')') {
				P->p++;
				break;
			}
			int kind;
			if (kv && parse_string(P, &key, &kind) < 0)
				goto fail;
			struct dlist *item = parse_value(P, depth + 1);
			if (!item)
				goto fail;
			if (kv)
				item->key = xstrdup(buf_cstr(&key));
			dlist_add(d, item);
		}
		buf_free(&key);
		return d;
fail:
		buf_free(&key);
		dlist_free(&d);
		return NULL;
	}
	if (c == '%' && P->p + 1 < P->len && P->in[P->p + 1] == '{') {
		uint64_t size;
		size_t hdr = P->p + 2;
		if (read_literal(P, 1, &size) < 0)
			return NULL;
		/* "%{part guid size}": the header words */
		const char *close = memchr(P->in + hdr, '}', P->p - hdr);
		char part[65], guid[41];
		if (file_words(P->in + hdr, (size_t)(close - (P->in + hdr)), part, guid) < 0) {
			perr(P, "bad file literal header (want a partition name and a 40-digit hex GUID)");
			return NULL;
		}
		d = dlist_new(DL_FILE, NULL);
		d->part = xstrdup(part);
		memcpy(d->guid, guid, sizeof d->guid);
		d->size = size;
		if (P->flags & DLIST_FILES_OUTSIDE) {
			d->external = 1;
			return d;
		}
		buf_append(&d->s, P->in + P->p, (size_t)size);
		P->p += (size_t)size;
		return d;
	}
	if (c == '%') {
		perr(P, "'%' not followed by '(' or '{'");
		return NULL;
	}
	if (c == ')') {
		perr(P, "unexpected ')'");
		return NULL;
	}
	d = dlist_new(DL_STR, NULL);
	int kind;
	if (parse_string(P, &d->s, &kind) < 0) {
		dlist_free(&d);
		return NULL;
	}
	if (kind == 0 && d->s.len == 3 && !memcmp(d->s.ptr, "NIL", 3))
		d->type = DL_NIL;
	else if (kind == 0 && d->s.ptr[0] == '\\')
		d->type = DL_FLAG;
	return d;
}

int dlist_parse(const char *in, size_t len, struct dlist **list_r, struct terr *err)
{
	return dlist_parse_ext(in, len, 0, list_r, err);
}

void dlist_each_file(struct dlist *d, void (*fn)(void *rock, struct dlist *file), void *rock)
{
	if (!d)
		return;
	if (d->type == DL_FILE)
		fn(rock, d);
	for (size_t i = 0; i < d->n; i++)
		dlist_each_file(d->items[i], fn, rock);
}

int dlist_parse_ext(const char *in, size_t len, unsigned flags, struct dlist **list_r, struct terr *err)
{
	struct parser P = { in, len, 0, err, 0, flags };
	struct dlist *line = dlist_new(DL_LIST, NULL);
	for (;;) {
		skip_ws(&P);
		if (P.p >= len)
			break;
		struct dlist *v = parse_value(&P, 1);
		if (!v) {
			dlist_free(&line);
			return -1;
		}
		dlist_add(line, v);
	}
	*list_r = line;
	return 0;
}

struct dlist *dlist_take_keyed(struct dlist *line, size_t i)
{
	if (!line || line->n < i + 2 || line->items[i]->type != DL_STR || !dlist_cstr(line->items[i]))
		return NULL;
	struct dlist *v = line->items[i + 1];
	free(v->key);
	v->key = xstrdup(dlist_cstr(line->items[i]));
	line->items[i + 1] = dlist_new(DL_NIL, NULL);	/* the line keeps a placeholder */
	return v;
}

/* ---- printing ------------------------------------------------------------------------------- */

static void print_string(struct buf *out, const char *s, size_t n, enum dlist_literal lit)
{
	if (n == 0) {
		buf_appends(out, "\"\"");
		return;
	}
	int atom = n < 1024 && !(n == 3 && !memcmp(s, "NIL", 3));
	int quotable = n < 1024;
	for (size_t i = 0; i < n && (atom || quotable); i++) {
		unsigned char c = (unsigned char)s[i];
		if (c >= 0x80 || c < 0x20 || c == 0x7f || strchr(" {()\"%*\\", c))
			atom = 0;
		if (c >= 0x80 || c == '\r' || c == '\n' || c == '"' || c == '%' || c == '\\' || c == '\0')
			quotable = 0;
	}
	if (atom) {
		buf_append(out, s, n);
	} else if (quotable) {
		buf_putc(out, '"');
		buf_append(out, s, n);
		buf_putc(out, '"');
	} else {
		buf_printf(out, "{%zu%s}\r\n", n, lit == DLIST_LIT_CLIENT ? "+" : "");
		buf_append(out, s, n);
	}
}

static void print_value(struct buf *out, const struct dlist *d, enum dlist_literal lit, struct dlist_refs *refs);

static void print_keyed(struct buf *out, const struct dlist *d, enum dlist_literal lit, struct dlist_refs *refs)
{
	if (d->key) {
		print_string(out, d->key, strlen(d->key), lit);
		buf_putc(out, ' ');
	}
	print_value(out, d, lit, refs);
}

static void print_value(struct buf *out, const struct dlist *d, enum dlist_literal lit, struct dlist_refs *refs)
{
	switch (d->type) {
	case DL_NIL:
		buf_appends(out, "NIL");
		break;
	case DL_STR:
		print_string(out, d->s.ptr ? d->s.ptr : "", d->s.len, lit);
		break;
	case DL_FLAG:
		buf_append(out, d->s.ptr ? d->s.ptr : "", d->s.len);
		break;
	case DL_LIST:
	case DL_KVLIST:
		buf_appends(out, d->type == DL_KVLIST ? "%(" : "(");
		for (size_t i = 0; i < d->n; i++) {
			if (i)
				buf_putc(out, ' ');
			if (d->type == DL_KVLIST)
				print_keyed(out, d->items[i], lit, refs);
			else
				print_value(out, d->items[i], lit, refs);
		}
		buf_putc(out, ')');
		break;
	case DL_FILE:
		if (d->external) {
			/* the bytes are not here: the writer sends them at refs' offset */
			buf_printf(out, "%%{%s %s %llu}\r\n", d->part ? d->part : "default", d->guid,
				   (unsigned long long)d->size);
			if (refs) {
				if (refs->n == refs->cap)
					refs->v = xrealloc(refs->v, (refs->cap = refs->cap ? 2 * refs->cap : 16) *
								     sizeof *refs->v);
				struct dlist_ref *rf = &refs->v[refs->n++];
				memset(rf, 0, sizeof *rf);
				rf->at = out->len;
				rf->path = xstrdup(d->path ? d->path : "");
				/* the open file goes with the ref (printed once to be
				 * sent; a second print opens the path) */
				rf->fd = d->fd;
				((struct dlist *)d)->fd = -1;
				snprintf(rf->hdr.part, sizeof rf->hdr.part, "%s", d->part ? d->part : "default");
				memcpy(rf->hdr.guid, d->guid, sizeof rf->hdr.guid);
				rf->hdr.size = d->size;
				rf->hdr.ok = 1;
			}
			break;
		}
		buf_printf(out, "%%{%s %s %zu}\r\n", d->part ? d->part : "default", d->guid, d->s.len);
		buf_append(out, d->s.ptr ? d->s.ptr : "", d->s.len);
		break;
	}
}

void dlist_print_value(struct buf *out, const struct dlist *d, enum dlist_literal lit)
{
	print_value(out, d, lit, NULL);
}

void dlist_print(struct buf *out, const struct dlist *d, enum dlist_literal lit)
{
	print_keyed(out, d, lit, NULL);
}

void dlist_print_refs(struct buf *out, const struct dlist *d, enum dlist_literal lit, struct dlist_refs *refs)
{
	print_keyed(out, d, lit, refs);
}

void dlist_refs_reset(struct dlist_refs *refs)
{
	for (size_t i = 0; i < refs->n; i++) {
		free(refs->v[i].path);
		if (refs->v[i].fd >= 0)
			close(refs->v[i].fd);
	}
	refs->n = 0;
}

void dlist_refs_free(struct dlist_refs *refs)
{
	dlist_refs_reset(refs);
	free(refs->v);
	memset(refs, 0, sizeof *refs);
}

struct dlist *dlist_take_items(struct dlist *kv, const char *key)
{
	struct dlist *copy = dlist_new(DL_KVLIST, key);
	copy->items = kv->items;
	copy->n = kv->n;
	copy->cap = kv->cap;
	kv->items = NULL;
	kv->n = kv->cap = 0;
	return copy;
}
