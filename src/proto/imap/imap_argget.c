/* imap_argget.c: readers that take typed values off the argument tree.
 *
 * The typed grammars are written as sequences of these calls on a cursor
 * (const struct imap_arg **): each reads one argument, checks its type
 * and advances, or records "CMD: what is wrong" at the argument's offset.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "proto/imap/imap_private.h"

int imap_word_eq(const char *s, size_t len, const char *word)
{
	size_t wl = strlen(word);
	if (len != wl)
		return 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char a = (unsigned char)s[i], b = (unsigned char)word[i];
		if (a >= 'a' && a <= 'z')
			a = (unsigned char)(a - 'a' + 'A');
		if (b >= 'a' && b <= 'z')
			b = (unsigned char)(b - 'a' + 'A');
		if (a != b)
			return 0;
	}
	return 1;
}

int imap_arg_is_string(const struct imap_arg *a)
{
	return a && a->str && (a->type == IMAP_ARG_ATOM || a->type == IMAP_ARG_QUOTED ||
			       a->type == IMAP_ARG_LITERAL);
}

int imap_arg_is_atom(const struct imap_arg *a, const char *word)
{
	return a && a->type == IMAP_ARG_ATOM && imap_word_eq(a->str, a->len, word);
}

void *imap_cp_alloc(struct imap_cp *cp, size_t n)
{
	return imap_arena_alloc(&cp->p->arena, n);
}

int imap_cp_fail(struct imap_cp *cp, const struct imap_arg *at, const char *fmt, ...)
{
	char tmp[200];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	return imap_parser_fail(cp->p, IMAP_RESP_BAD, NULL, at ? at->pos : cp->end_pos, 0,
				"%s: %s", cp->cmdname, tmp);
}

const char *imap_cp_upper(struct imap_cp *cp, const char *s)
{
	size_t n = strlen(s);
	char *d = imap_arena_strndup(&cp->p->arena, s, n);
	for (size_t i = 0; i < n; i++)
		if (d[i] >= 'a' && d[i] <= 'z')
			d[i] = (char)(d[i] - 'a' + 'A');
	return d;
}

int imap_get_astring(struct imap_cp *cp, const struct imap_arg **a, const char *what,
		     const char **s_r)
{
	const struct imap_arg *x = *a;
	if (!x)
		return imap_cp_fail(cp, NULL, "missing %s", what);
	if (x->type == IMAP_ARG_LIST || !x->str)
		return imap_cp_fail(cp, x, "%s must be a string", what);
	*s_r = x->str;
	*a = x->next;
	return 0;
}

int imap_get_nstring(struct imap_cp *cp, const struct imap_arg **a, const char *what,
		     const char **s_r, size_t *len_r)
{
	const struct imap_arg *x = *a;
	if (!x)
		return imap_cp_fail(cp, NULL, "missing %s", what);
	if (x->type == IMAP_ARG_NIL) {
		*s_r = NULL;
		*len_r = 0;
	} else if (x->type == IMAP_ARG_QUOTED || (x->type == IMAP_ARG_LITERAL && x->str)) {
		*s_r = x->str;
		*len_r = x->len;
	} else {
		return imap_cp_fail(cp, x, "%s must be a string or NIL", what);
	}
	*a = x->next;
	return 0;
}

int imap_get_atom(struct imap_cp *cp, const struct imap_arg **a, const char *what,
		  const char **s_r)
{
	const struct imap_arg *x = *a;
	if (!x)
		return imap_cp_fail(cp, NULL, "missing %s", what);
	if (x->type != IMAP_ARG_ATOM && x->type != IMAP_ARG_NIL)
		return imap_cp_fail(cp, x, "%s must be an atom", what);
	*s_r = x->str;
	*a = x->next;
	return 0;
}

int imap_get_number(struct imap_cp *cp, const struct imap_arg **a, const char *what,
		    uint64_t max, uint64_t *n_r)
{
	const struct imap_arg *x = *a;
	if (!x)
		return imap_cp_fail(cp, NULL, "missing %s", what);
	if (x->type != IMAP_ARG_ATOM || x->len == 0)
		return imap_cp_fail(cp, x, "%s must be a number", what);
	uint64_t v = 0;
	for (size_t i = 0; i < x->len; i++) {
		char c = x->str[i];
		if (c < '0' || c > '9')
			return imap_cp_fail(cp, x, "%s must be a number", what);
		unsigned d = (unsigned)(c - '0');
		if (d > max || v > (max - d) / 10)
			return imap_cp_fail(cp, x, "%s out of range", what);
		v = v * 10 + d;
	}
	*n_r = v;
	*a = x->next;
	return 0;
}

int imap_get_list(struct imap_cp *cp, const struct imap_arg **a, const char *what,
		  const struct imap_arg **first_r)
{
	const struct imap_arg *x = *a;
	if (!x)
		return imap_cp_fail(cp, NULL, "missing %s", what);
	if (x->type != IMAP_ARG_LIST)
		return imap_cp_fail(cp, x, "%s must be a parenthesised list", what);
	*first_r = x->child;
	*a = x->next;
	return 0;
}

int imap_get_seqset(struct imap_cp *cp, const struct imap_arg **a, struct imap_seqset *set_r)
{
	const struct imap_arg *x = *a;
	if (!x)
		return imap_cp_fail(cp, NULL, "missing sequence set");
	if (x->type != IMAP_ARG_ATOM ||
	    imap_seqset_parse(&cp->p->arena, x->str, x->len, set_r) < 0)
		return imap_cp_fail(cp, x, "invalid sequence set");
	*a = x->next;
	return 0;
}

static int atom_char(unsigned char c)
{
	if (c <= 0x20 || c >= 0x7f)
		return 0;
	return !strchr("(){%*\"\\]", c);
}

int imap_flag_valid(const char *s, size_t len, int star_ok)
{
	size_t i = 0;
	if (len == 0 || len > MAX_FLAG_NAME)
		return 0;
	if (s[0] == '\\') {
		if (len == 2 && s[1] == '*')
			return star_ok;
		i = 1;
		if (len == 1)
			return 0;
	}
	for (; i < len; i++)
		if (!atom_char((unsigned char)s[i]))
			return 0;
	return 1;
}

int imap_get_flags(struct imap_cp *cp, const struct imap_arg **a, int bare_ok,
		   struct imap_strlist *flags_r)
{
	const struct imap_arg *x = *a, *first;
	if (!x)
		return imap_cp_fail(cp, NULL, "missing flag list");
	if (x->type == IMAP_ARG_LIST) {
		first = x->child;
		*a = x->next;
	} else if (bare_ok) {
		first = x;
		*a = NULL;
	} else {
		return imap_cp_fail(cp, x, "flags must be a parenthesised list");
	}
	size_t n = 0;
	for (const struct imap_arg *f = first; f; f = f->next)
		n++;
	const char **v = imap_cp_alloc(cp, (n ? n : 1) * sizeof(*v));
	n = 0;
	for (const struct imap_arg *f = first; f; f = f->next) {
		/* NIL is an atom here (a keyword named NIL, as Cyrus stores it) */
		if ((f->type != IMAP_ARG_ATOM && f->type != IMAP_ARG_NIL) || !imap_flag_valid(f->str, f->len, 0))
			return imap_cp_fail(cp, f, "invalid flag");
		v[n++] = f->str;
	}
	flags_r->count = n;
	flags_r->v = v;
	return 0;
}

int imap_get_end(struct imap_cp *cp, const struct imap_arg *a)
{
	if (a)
		return imap_cp_fail(cp, a, "unexpected extra arguments");
	return 0;
}

int imap_get_strlist(struct imap_cp *cp, const struct imap_arg *first, const char *what,
		     int empty_ok, struct imap_strlist *list_r)
{
	size_t n = 0;
	for (const struct imap_arg *x = first; x; x = x->next)
		n++;
	if (n == 0 && !empty_ok)
		return imap_cp_fail(cp, NULL, "empty %s list", what);
	const char **v = imap_cp_alloc(cp, (n ? n : 1) * sizeof(*v));
	n = 0;
	for (const struct imap_arg *x = first; x;) {
		if (imap_get_astring(cp, &x, what, &v[n]) < 0)
			return -1;
		n++;
	}
	list_r->count = n;
	list_r->v = v;
	return 0;
}
