/* imap_token.c: turns line segments into the generic argument tree.
 *
 * A command is a sequence of line segments separated by literals: each
 * segment is tokenized when its LF has arrived, and the tree (with its
 * stack of open parentheses) carries over from one segment to the next.
 * A segment that ends in a literal header gets a placeholder argument,
 * which the framing code fills with the literal bytes.
 *
 * Accepted syntax (liberal where clients are sloppy, strict where it
 * matters for framing): tokens separated by one or more SP; atoms are
 * runs of anything but SP, "(", ")", DQUOTE and control bytes (8-bit is
 * allowed); BODY[...], BODY.PEEK[...], BINARY[...] style atoms extend
 * over the brackets (spaces and parentheses included); quoted strings
 * take "\" before any byte; a literal header must end its segment.
 */
#include <string.h>

#include "proto/imap/imap_private.h"

void imap_tok_init(struct imap_tok *t)
{
	memset(t, 0, sizeof(*t));
	t->root.type = IMAP_ARG_LIST;
	t->stack[0].list = &t->root;
	t->stack[0].last = NULL;
}

static struct imap_arg *tok_add(struct imap_parser *p, enum imap_arg_type type, uint64_t pos)
{
	struct imap_tok *t = &p->tok;
	if (t->nargs >= IMAP_MAX_ARGS) {
		imap_parser_fail(p, IMAP_RESP_BAD, NULL, pos, 0,
				 "too many arguments (limit %d)", IMAP_MAX_ARGS);
		return NULL;
	}
	struct imap_arg *a = imap_arena_alloc(&p->arena, sizeof(*a));
	a->type = type;
	a->pos = pos;
	struct imap_tok_frame *f = &t->stack[t->depth];
	if (f->last)
		f->last->next = a;
	else
		f->list->child = a;
	f->last = a;
	f->list->count++;
	t->nargs++;
	return a;
}

struct imap_arg *imap_tok_last(struct imap_parser *p)
{
	return p->tok.stack[p->tok.depth].last;
}

/* Atoms whose "[" opens a section that may hold spaces and parentheses. */
static int bracket_atom(const char *s, size_t n)
{
	static const char *const names[] = {
		"BODY", "BODY.PEEK", "BINARY", "BINARY.PEEK", "BINARY.SIZE",
	};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (imap_word_eq(s, n, names[i]))
			return 1;
	return 0;
}

static int is_ctl(unsigned char c)
{
	return c < 0x20 || c == 0x7f;
}

/* Reads an atom at s[i]; returns the index after it, or 0 on error. */
static size_t tok_atom(struct imap_parser *p, const char *s, size_t n, size_t i, uint64_t pos0)
{
	size_t j = i;
	while (j < n) {
		unsigned char c = (unsigned char)s[j];
		if (c == ' ' || c == '(' || c == ')')
			break;
		if (c == '"') {
			imap_parser_fail(p, IMAP_RESP_BAD, NULL, pos0 + j, 0,
					 "unexpected quote inside an atom");
			return 0;
		}
		if (is_ctl(c)) {
			imap_parser_fail(p, IMAP_RESP_BAD, NULL, pos0 + j, 0,
					 "control character 0x%02x in an atom", c);
			return 0;
		}
		if (c == '[' && bracket_atom(s + i, j - i)) {
			/* section: up to the matching "]", quotes respected */
			size_t k = j + 1;
			int inq = 0;
			while (k < n) {
				unsigned char d = (unsigned char)s[k];
				if (inq && d == '\\' && k + 1 < n) {
					k += 2;
					continue;
				}
				if (d == '"')
					inq = !inq;
				else if (!inq && d == ']')
					break;
				else if (is_ctl(d)) {
					imap_parser_fail(p, IMAP_RESP_BAD, NULL, pos0 + k, 0,
							 "control character 0x%02x in a section", d);
					return 0;
				}
				k++;
			}
			if (k >= n) {
				imap_parser_fail(p, IMAP_RESP_BAD, NULL, pos0 + j, 0,
						 "section \"[\" without \"]\"");
				return 0;
			}
			j = k + 1;
			continue;
		}
		j++;
	}
	struct imap_arg *a = tok_add(p, IMAP_ARG_ATOM, pos0 + i);
	if (!a)
		return 0;
	if (imap_word_eq(s + i, j - i, "NIL"))
		a->type = IMAP_ARG_NIL;
	a->str = imap_arena_strndup(&p->arena, s + i, j - i);
	a->len = j - i;
	return j;
}

/* Reads a quoted string at s[i] == '"'; returns the index after it or 0. */
static size_t tok_quoted(struct imap_parser *p, const char *s, size_t n, size_t i, uint64_t pos0)
{
	size_t j = i + 1, len = 0;
	while (j < n && s[j] != '"') {
		unsigned char c = (unsigned char)s[j];
		if (c == '\\') {
			if (j + 1 >= n) {
				j = n;
				break;
			}
			c = (unsigned char)s[j + 1];
			j++;
		}
		if (c == '\0' || c == '\r' || c == '\n') {
			imap_parser_fail(p, IMAP_RESP_BAD, NULL, pos0 + j, 0,
					 "%s in a quoted string",
					 c == '\0' ? "NUL" : "CR or LF");
			return 0;
		}
		j++;
		len++;
	}
	if (j >= n) {
		imap_parser_fail(p, IMAP_RESP_BAD, NULL, pos0 + i, 0,
				 "quoted string without closing quote");
		return 0;
	}
	struct imap_arg *a = tok_add(p, IMAP_ARG_QUOTED, pos0 + i);
	if (!a)
		return 0;
	char *d = imap_arena_alloc(&p->arena, len + 1);
	size_t o = 0;
	for (size_t k = i + 1; k < j; k++) {
		if (s[k] == '\\')
			k++;
		d[o++] = s[k];
	}
	d[o] = '\0';
	a->str = d;
	a->len = len;
	return j + 1;
}

/* A literal header at s[i] ('{', or '~' before '{'); it must end the
 * segment. */
static int tok_literal(struct imap_parser *p, const char *s, size_t n, size_t i, uint64_t pos0,
		       uint64_t *size_r, int *nonsync_r)
{
	int binary = s[i] == '~';
	size_t j = i + 1 + (size_t)binary;
	uint64_t v = 0;
	size_t digits = 0;
	while (j < n && s[j] >= '0' && s[j] <= '9') {
		v = v * 10 + (uint64_t)(s[j] - '0');
		if (v > 0xffffffffu) {
			/* the client may send that many bytes: no way to resync */
			imap_parser_fail(p, IMAP_RESP_BAD, NULL, pos0 + i, 1,
					 "literal size out of range");
			return IMAP_TOK_ERROR;
		}
		digits++;
		j++;
	}
	int plus = j < n && s[j] == '+';
	j += (size_t)plus;
	if (digits == 0 || j >= n || s[j] != '}') {
		imap_parser_fail(p, IMAP_RESP_BAD, NULL, pos0 + i, 0, "bad literal header");
		return IMAP_TOK_ERROR;
	}
	if (j + 1 != n) {
		imap_parser_fail(p, IMAP_RESP_BAD, NULL, pos0 + i, 0,
				 "literal header not at the end of the line");
		return IMAP_TOK_ERROR;
	}
	if (binary && p->def->id != IMAP_CMD_APPEND) {
		/* RFC 3516: literal8 is for APPEND's message (NUL bytes are
		 * refused in every other literal anyway) */
		imap_parser_fail(p, IMAP_RESP_BAD, NULL, pos0 + i, 0,
				 "binary literals (~{N}) are only for APPEND");
		return IMAP_TOK_ERROR;
	}
	struct imap_arg *a = tok_add(p, IMAP_ARG_LITERAL, pos0 + i);
	if (!a)
		return IMAP_TOK_ERROR;
	a->len = (size_t)v;
	p->tok.need_sep = 1;
	*size_r = v;
	*nonsync_r = plus;
	return IMAP_TOK_LITERAL;
}

int imap_tok_run(struct imap_parser *p, const char *s, size_t n, uint64_t pos0,
		 uint64_t *size_r, int *nonsync_r)
{
	struct imap_tok *t = &p->tok;
	size_t i = 0;
	while (i < n) {
		unsigned char c = (unsigned char)s[i];
		if (c == ' ') {
			t->need_sep = 0;
			i++;
			continue;
		}
		if (c == ')') {
			if (t->depth == 0) {
				imap_parser_fail(p, IMAP_RESP_BAD, NULL, pos0 + i, 0,
						 "unexpected \")\"");
				return IMAP_TOK_ERROR;
			}
			t->depth--;
			t->need_sep = 1;
			i++;
			continue;
		}
		if (t->need_sep) {
			imap_parser_fail(p, IMAP_RESP_BAD, NULL, pos0 + i, 0,
					 "missing space between arguments");
			return IMAP_TOK_ERROR;
		}
		if (c == '(') {
			if (t->depth >= IMAP_MAX_NESTING) {
				imap_parser_fail(p, IMAP_RESP_BAD, NULL, pos0 + i, 0,
						 "parentheses nested too deep (limit %d)",
						 IMAP_MAX_NESTING);
				return IMAP_TOK_ERROR;
			}
			struct imap_arg *a = tok_add(p, IMAP_ARG_LIST, pos0 + i);
			if (!a)
				return IMAP_TOK_ERROR;
			t->depth++;
			t->stack[t->depth].list = a;
			t->stack[t->depth].last = NULL;
			i++;
			continue;
		}
		if (c == '{' || (c == '~' && i + 1 < n && s[i + 1] == '{'))
			return tok_literal(p, s, n, i, pos0, size_r, nonsync_r);
		size_t next = c == '"' ? tok_quoted(p, s, n, i, pos0) : tok_atom(p, s, n, i, pos0);
		if (next == 0)
			return IMAP_TOK_ERROR;
		i = next;
		t->need_sep = 1;
	}
	return IMAP_TOK_END;
}
