/* mime_addr.c: RFC 5322 3.4 address lists for the IMAP ENVELOPE.
 *
 * The unfolded value is cut into tokens (atoms, quoted strings, comments,
 * domain literals, specials), then read address by address: a phrase
 * followed by ':' opens a group, ';' closes it, "phrase <route:addr>" is a
 * name-addr, anything else up to ',' is an addr-spec. Nothing is an error:
 * broken input gives the closest address (a missing domain is "", an
 * unclosed '<' or quote runs to the end). A trailing comment serves as the
 * display name when there is no phrase ("user@host (Full Name)"). Only
 * the first MIME_MAX_ADDRESS_LIST bytes of a field are read.
 */
#include "proto/mime/mime-private.h"

#include "lib/xalloc.h"

#include <stdint.h>
#include <string.h>

enum tok_kind { TK_ATOM, TK_QUOTED, TK_COMMENT, TK_DLIT, TK_SPECIAL };

struct tok {
	uint32_t off, len;	/* raw text, delimiters included */
	unsigned char kind;	/* enum tok_kind */
	unsigned char space_before;
};

struct toks {
	const char *s;
	struct tok *v;
	size_t n, cap;
};

static const char specials[] = "<>@,;:.\\]";

static void push(struct toks *t, enum tok_kind k, size_t off, size_t len,
		 int space)
{
	if (t->n == t->cap) {
		t->cap = t->cap ? t->cap * 2 : 16;
		t->v = xrealloc(t->v, t->cap * sizeof(*t->v));
	}
	t->v[t->n++] = (struct tok){ (uint32_t)off, (uint32_t)len,
				     (unsigned char)k, (unsigned char)space };
}

static void tokenize(struct toks *t, const char *s, size_t len)
{
	size_t i = 0;
	int space = 0;
	while (i < len) {
		char c = s[i];
		size_t a = i;
		if (c == ' ' || c == '\t') {
			space = 1;
			i++;
			continue;
		}
		if (c == '(' || c == '"' || c == '[') {
			char close = c == '(' ? ')' : c == '"' ? '"' : ']';
			size_t depth = 1;
			for (i++; i < len; i++) {
				if (s[i] == '\\' && i + 1 < len && c != '[') {
					i++;
				} else if (c == '(' && s[i] == '(') {
					depth++;
				} else if (s[i] == close && --depth == 0) {
					i++;
					break;
				}
			}
			push(t, c == '(' ? TK_COMMENT : c == '"' ? TK_QUOTED : TK_DLIT,
			     a, i - a, space);
			space = c == '(';	/* a comment separates like a blank */
			continue;
		}
		if (strchr(specials, c)) {
			push(t, TK_SPECIAL, a, 1, space);
			space = 0;
			i++;
			continue;
		}
		while (i < len && s[i] != ' ' && s[i] != '\t' && s[i] != '(' &&
		       s[i] != '"' && s[i] != '[' && !strchr(specials, s[i]))
			i++;
		push(t, TK_ATOM, a, i - a, space);
		space = 0;
	}
}

static int is_sp(const struct toks *t, size_t i, char c)
{
	return i < t->n && t->v[i].kind == TK_SPECIAL && t->s[t->v[i].off] == c;
}

/* Content of a quoted string or comment: delimiters off, escapes undone. */
static void unquote(const char *s, const struct tok *k, struct buf *out)
{
	size_t a = k->off + 1, e = k->off + k->len;
	char close = k->kind == TK_COMMENT ? ')' : '"';
	if (e > a && s[e - 1] == close)
		e--;
	for (size_t i = a; i < e; i++) {
		if (s[i] == '\\' && i + 1 < e)
			i++;
		buf_putc(out, s[i]);
	}
}

static char *release_or_null(struct buf *b)
{
	size_t n = b->len;
	while (n > 0 && (b->ptr[n - 1] == ' ' || b->ptr[n - 1] == '\t'))
		n--;
	if (n == 0) {
		buf_free(b);
		return NULL;
	}
	buf_truncate(b, n);
	return buf_release(b);
}

/* A phrase (display name, group name): words joined by single spaces,
 * quoted strings unquoted, comments left out. NULL when empty. */
static char *phrase(const struct toks *t, size_t a, size_t e)
{
	struct buf b = BUF_INIT;
	for (size_t i = a; i < e; i++) {
		const struct tok *k = &t->v[i];
		if (k->kind == TK_COMMENT)
			continue;
		if (b.len > 0 && k->space_before)
			buf_putc(&b, ' ');
		if (k->kind == TK_QUOTED)
			unquote(t->s, k, &b);
		else
			buf_append(&b, t->s + k->off, k->len);
	}
	return release_or_null(&b);
}

static char *first_comment(const struct toks *t, size_t a, size_t e)
{
	for (size_t i = a; i < e; i++) {
		if (t->v[i].kind != TK_COMMENT)
			continue;
		struct buf b = BUF_INIT;
		unquote(t->s, &t->v[i], &b);
		size_t lead = 0;
		while (lead < b.len && (b.ptr[lead] == ' ' || b.ptr[lead] == '\t'))
			lead++;
		buf_consume(&b, lead);
		char *r = release_or_null(&b);
		if (r)
			return r;
	}
	return NULL;
}

/* Raw text of tokens, comments left out; blanks kept between words
 * except next to '.' and '@'. */
static char *raw_join(const struct toks *t, size_t a, size_t e)
{
	struct buf b = BUF_INIT;
	int prev_dot = 1;
	for (size_t i = a; i < e; i++) {
		const struct tok *k = &t->v[i];
		if (k->kind == TK_COMMENT)
			continue;
		int dot = k->kind == TK_SPECIAL &&
			  (t->s[k->off] == '.' || t->s[k->off] == '@');
		if (b.len > 0 && k->space_before && !dot && !prev_dot)
			buf_putc(&b, ' ');
		buf_append(&b, t->s + k->off, k->len);
		prev_dot = dot;
	}
	char *r = buf_release(&b);
	return r;
}

static int only_comments(const struct toks *t, size_t a, size_t e)
{
	for (size_t i = a; i < e; i++)
		if (t->v[i].kind != TK_COMMENT)
			return 0;
	return 1;
}

/* Fills mailbox and host from the addr-spec tokens [a, e). */
static void addr_spec(const struct toks *t, size_t a, size_t e,
		      struct mime_addr *ad)
{
	size_t at = e;
	for (size_t i = a; i < e; i++)
		if (is_sp(t, i, '@'))
			at = i;
	if (at == e) {
		ad->mailbox = raw_join(t, a, e);
		ad->host = xstrdup("");	/* missing domain; NIL means group */
		return;
	}
	ad->mailbox = raw_join(t, a, at);
	ad->host = raw_join(t, at + 1, e);
}

static struct mime_addr *new_addr(struct mime_addr ***tail)
{
	struct mime_addr *ad = xcalloc(1, sizeof(*ad));
	**tail = ad;
	*tail = &ad->next;
	return ad;
}

struct mime_addr *mime_addr_parse(const char *s, size_t len)
{
	struct toks t = { s, NULL, 0, 0 };
	struct mime_addr *head = NULL, **tail = &head;
	int in_group = 0;

	if (len > MIME_MAX_ADDRESS_LIST) {
		/* keep whole addresses: cut at a comma */
		const char *comma = memrchr(s, ',', MIME_MAX_ADDRESS_LIST);
		len = comma ? (size_t)(comma - s) : MIME_MAX_ADDRESS_LIST;
	}
	tokenize(&t, s, len);
	size_t i = 0;
	while (i < t.n) {
		if (is_sp(&t, i, ',')) {
			i++;
			continue;
		}
		if (is_sp(&t, i, ';')) {
			if (in_group) {
				new_addr(&tail);	/* end of group */
				in_group = 0;
			}
			i++;
			continue;
		}
		/* ':' opens a group only after a phrase, not inside an
		 * address ("@a,@b:x@y" without its angle brackets) */
		size_t a = i;
		int at = 0;
		while (i < t.n && !is_sp(&t, i, ',') && !is_sp(&t, i, ';') &&
		       !(is_sp(&t, i, ':') && !at) && !is_sp(&t, i, '<'))
			at |= is_sp(&t, i++, '@');
		if (is_sp(&t, i, ':')) {
			if (!in_group) {
				struct mime_addr *g = new_addr(&tail);
				g->mailbox = phrase(&t, a, i);
				if (!g->mailbox)
					g->mailbox = xstrdup("");
				in_group = 1;
			}
			i++;
			continue;
		}
		if (is_sp(&t, i, '<')) {
			size_t name_end = i++, ab = i;
			while (i < t.n && !is_sp(&t, i, '>'))
				i++;
			size_t ae = i;
			if (i < t.n)
				i++;
			size_t tb = i;
			while (i < t.n && !is_sp(&t, i, ',') && !is_sp(&t, i, ';'))
				i++;
			struct mime_addr *ad = new_addr(&tail);
			ad->name = phrase(&t, a, name_end);
			if (!ad->name)
				ad->name = first_comment(&t, tb, i);
			/* obsolete source route: @a,@b: */
			if (is_sp(&t, ab, '@')) {
				size_t r = ab;
				while (r < ae && !is_sp(&t, r, ':'))
					r++;
				if (r < ae) {
					ad->adl = raw_join(&t, ab, r);
					ab = r + 1;
				}
			}
			addr_spec(&t, ab, ae, ad);
			continue;
		}
		if (a == i || only_comments(&t, a, i))
			continue;
		struct mime_addr *ad = new_addr(&tail);
		ad->name = first_comment(&t, a, i);
		addr_spec(&t, a, i, ad);
	}
	if (in_group)
		new_addr(&tail);
	free(t.v);
	return head;
}

void mime_addr_free(struct mime_addr *a)
{
	while (a) {
		struct mime_addr *next = a->next;
		free(a->name);
		free(a->adl);
		free(a->mailbox);
		free(a->host);
		free(a);
		a = next;
	}
}
