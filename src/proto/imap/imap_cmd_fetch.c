/* imap_cmd_fetch.c: grammars of FETCH and STORE.
 *
 * FETCH attributes come from the tokenizer as atoms; BODY[...]<...> and
 * BODY.PEEK[...]<...> arrive as one atom that spans the brackets, and
 * the section inside is parsed here: part numbers, HEADER,
 * HEADER.FIELDS[.NOT] (list), TEXT, MIME, then an optional <offset.len>.
 * CONDSTORE modifiers: FETCH (CHANGEDSINCE n), STORE (UNCHANGEDSINCE n).
 */
#include <string.h>

#include "proto/imap/imap_private.h"

/* RFC 7162 mod-sequence-valzer: 0 .. 2^63-1 */
#define MODSEQ_MAX 0x7fffffffffffffffULL

static const struct {
	const char *name;
	enum imap_fetch_item item;
} simple_atts[] = {
	{ "ENVELOPE", IMAP_FETCH_ENVELOPE },
	{ "FLAGS", IMAP_FETCH_FLAGS },
	{ "INTERNALDATE", IMAP_FETCH_INTERNALDATE },
	{ "RFC822", IMAP_FETCH_RFC822 },
	{ "RFC822.HEADER", IMAP_FETCH_RFC822_HEADER },
	{ "RFC822.SIZE", IMAP_FETCH_RFC822_SIZE },
	{ "RFC822.TEXT", IMAP_FETCH_RFC822_TEXT },
	{ "BODY", IMAP_FETCH_BODY },
	{ "BODYSTRUCTURE", IMAP_FETCH_BODYSTRUCTURE },
	{ "UID", IMAP_FETCH_UID },
	{ "MODSEQ", IMAP_FETCH_MODSEQ },
	{ "EMAILID", IMAP_FETCH_EMAILID },
	{ "THREADID", IMAP_FETCH_THREADID },
	{ "SAVEDATE", IMAP_FETCH_SAVEDATE },
	{ "PREVIEW", IMAP_FETCH_PREVIEW },
};

static const enum imap_fetch_item macro_fast[] = {
	IMAP_FETCH_FLAGS, IMAP_FETCH_INTERNALDATE, IMAP_FETCH_RFC822_SIZE,
};
static const enum imap_fetch_item macro_all[] = {
	IMAP_FETCH_FLAGS, IMAP_FETCH_INTERNALDATE, IMAP_FETCH_RFC822_SIZE,
	IMAP_FETCH_ENVELOPE,
};
static const enum imap_fetch_item macro_full[] = {
	IMAP_FETCH_FLAGS, IMAP_FETCH_INTERNALDATE, IMAP_FETCH_RFC822_SIZE,
	IMAP_FETCH_ENVELOPE, IMAP_FETCH_BODY,
};

static int is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* A number at s[*i] (digits, at most 32 bits); nz: no zero allowed. */
static int num32(const char *s, size_t n, size_t *i, int nz, uint32_t *v_r)
{
	size_t j = *i;
	uint64_t v = 0;
	if (j >= n || !is_digit(s[j]))
		return -1;
	while (j < n && is_digit(s[j])) {
		v = v * 10 + (uint64_t)(s[j] - '0');
		if (v > 0xffffffffu)
			return -1;
		j++;
	}
	if (nz && v == 0)
		return -1;
	*v_r = (uint32_t)v;
	*i = j;
	return 0;
}

/* The header-list "(" astring *(SP astring) ")" at t[*i]. */
static int header_list(struct imap_cp *cp, const char *t, size_t n, size_t *i,
		       struct imap_strlist *fields)
{
	size_t j = *i, count = 0;
	if (j >= n || t[j] != '(')
		return -1;
	/* upper bound on names: one per byte */
	const char **v = imap_cp_alloc(cp, (n - j) * sizeof(*v));
	j++;
	for (;;) {
		if (j < n && t[j] == ')' && count > 0)
			break;
		if (count > 0) {
			if (j >= n || t[j] != ' ')
				return -1;
			j++;
		}
		if (j < n && t[j] == '"') {
			size_t k = j + 1, o = 0;
			char *d = imap_cp_alloc(cp, n - j);
			while (k < n && t[k] != '"') {
				if (t[k] == '\\' && k + 1 < n)
					k++;
				d[o++] = t[k++];
			}
			if (k >= n || o == 0)
				return -1;
			v[count++] = d;
			j = k + 1;
		} else {
			size_t k = j;
			while (k < n && t[k] != ' ' && t[k] != ')' && t[k] != '(' && t[k] != '"')
				k++;
			if (k == j)
				return -1;
			v[count++] = imap_arena_strndup(&cp->p->arena, t + j, k - j);
			j = k;
		}
	}
	fields->count = count;
	fields->v = v;
	*i = j + 1;
	return 0;
}

/* The section text t[0..n) (between the brackets). */
static int section(struct imap_cp *cp, const struct imap_arg *at, const char *t, size_t n,
		   struct imap_section *sec)
{
	size_t i = 0, np = 0;
	uint32_t *parts = imap_cp_alloc(cp, (n / 2 + 1) * sizeof(*parts));
	int want_text = 0;

	sec->text = imap_arena_strndup(&cp->p->arena, t, n);
	while (i < n && is_digit(t[i])) {
		if (num32(t, n, &i, 1, &parts[np]) < 0)
			return imap_cp_fail(cp, at, "invalid section part number");
		np++;
		want_text = 0;
		if (i < n && t[i] == '.') {
			i++;
			want_text = 1;
			if (i < n && is_digit(t[i]))
				continue;
		}
		break;
	}
	sec->nparts = np;
	sec->parts = parts;
	if (i == n) {
		if (want_text)
			return imap_cp_fail(cp, at, "section ends with \".\"");
		sec->spec = IMAP_SECT_ALL;
		return 0;
	}
	if (np > 0 && !want_text)
		return imap_cp_fail(cp, at, "invalid section");
	size_t w = i;
	while (w < n && t[w] != ' ')
		w++;
	const char *word = t + i;
	size_t wl = w - i;
	if (imap_word_eq(word, wl, "HEADER")) {
		sec->spec = IMAP_SECT_HEADER;
	} else if (imap_word_eq(word, wl, "TEXT")) {
		sec->spec = IMAP_SECT_TEXT;
	} else if (imap_word_eq(word, wl, "MIME")) {
		if (np == 0)
			return imap_cp_fail(cp, at, "MIME needs a part number");
		sec->spec = IMAP_SECT_MIME;
	} else if (imap_word_eq(word, wl, "HEADER.FIELDS") ||
		   imap_word_eq(word, wl, "HEADER.FIELDS.NOT")) {
		sec->spec = wl == 13 ? IMAP_SECT_HEADER_FIELDS : IMAP_SECT_HEADER_FIELDS_NOT;
		if (w >= n)
			return imap_cp_fail(cp, at, "HEADER.FIELDS needs a list of names");
		w++;
		if (header_list(cp, t, n, &w, &sec->fields) < 0)
			return imap_cp_fail(cp, at, "invalid header field list");
	} else {
		return imap_cp_fail(cp, at, "unknown section");
	}
	if (w != n)
		return imap_cp_fail(cp, at, "unexpected text in section");
	return 0;
}

/* BODY[...]<...> or BODY.PEEK[...]<...>: s[0..n) is the whole atom. */
static int body_section(struct imap_cp *cp, const struct imap_arg *at, const char *s, size_t n,
			size_t open, struct imap_fetch_att *att)
{
	/* the tokenizer put the matching "]" in; find it outside quotes */
	size_t close = open + 1;
	int inq = 0;
	while (close < n) {
		if (inq && s[close] == '\\') {
			close += 2;
			continue;
		}
		if (s[close] == '"')
			inq = !inq;
		else if (!inq && s[close] == ']')
			break;
		close++;
	}
	if (close >= n)
		return imap_cp_fail(cp, at, "section without \"]\"");
	att->item = IMAP_FETCH_BODY_SECTION;
	if (section(cp, at, s + open + 1, close - open - 1, &att->section) < 0)
		return -1;
	size_t i = close + 1;
	if (i == n)
		return 0;
	if (s[i] != '<')
		return imap_cp_fail(cp, at, "unexpected text after section");
	i++;
	if (num32(s, n, &i, 0, &att->offset) < 0 || i >= n || s[i] != '.')
		return imap_cp_fail(cp, at, "invalid partial <offset.length>");
	i++;
	if (num32(s, n, &i, 1, &att->length) < 0 || i + 1 != n || s[i] != '>')
		return imap_cp_fail(cp, at, "invalid partial <offset.length>");
	att->partial = 1;
	return 0;
}

static int fetch_att(struct imap_cp *cp, const struct imap_arg *x, struct imap_fetch_att *att)
{
	if (x->type != IMAP_ARG_ATOM)
		return imap_cp_fail(cp, x, "fetch attribute must be an atom");
	const char *s = x->str;
	size_t n = x->len;
	const char *br = memchr(s, '[', n);
	memset(att, 0, sizeof(*att));
	if (br) {
		size_t open = (size_t)(br - s);
		int binary = 0;
		if (imap_word_eq(s, open, "BODY.PEEK")) {
			att->peek = 1;
		} else if (imap_word_eq(s, open, "BINARY") || imap_word_eq(s, open, "BINARY.PEEK")) {
			binary = IMAP_FETCH_BINARY;
			att->peek = open == 11;
		} else if (imap_word_eq(s, open, "BINARY.SIZE")) {
			binary = IMAP_FETCH_BINARY_SIZE;
		} else if (!imap_word_eq(s, open, "BODY")) {
			return imap_cp_fail(cp, x, "unknown fetch attribute");
		}
		if (body_section(cp, x, s, n, open, att) < 0)
			return -1;
		if (binary) {	/* RFC 3516: section-binary is part numbers only */
			if (att->section.spec != IMAP_SECT_ALL)
				return imap_cp_fail(cp, x, "BINARY takes part numbers only");
			if (binary == IMAP_FETCH_BINARY_SIZE && att->partial)
				return imap_cp_fail(cp, x, "BINARY.SIZE takes no partial");
			att->item = (enum imap_fetch_item)binary;
		}
		return 0;
	}
	for (size_t i = 0; i < sizeof(simple_atts) / sizeof(simple_atts[0]); i++) {
		if (imap_word_eq(s, n, simple_atts[i].name)) {
			att->item = simple_atts[i].item;
			return 0;
		}
	}
	return imap_cp_fail(cp, x, "unknown fetch attribute");
}

static void expand_macro(struct imap_cp *cp, struct imap_fetch *f, const char *name,
			 const enum imap_fetch_item *items, size_t n)
{
	struct imap_fetch_att *atts = imap_cp_alloc(cp, n * sizeof(*atts));
	for (size_t i = 0; i < n; i++)
		atts[i].item = items[i];
	f->macro = name;
	f->atts = atts;
	f->natts = n;
}

#define NITEMS(a) (sizeof(a) / sizeof((a)[0]))

int imap_parse_fetch(struct imap_cp *cp, struct imap_cmd *cmd, const struct imap_arg *a)
{
	struct imap_fetch *f = &cmd->u.fetch;
	if (imap_get_seqset(cp, &a, &f->set) < 0)
		return -1;
	if (!a)
		return imap_cp_fail(cp, NULL, "missing fetch attributes");
	if (imap_arg_is_atom(a, "ALL")) {
		expand_macro(cp, f, "ALL", macro_all, NITEMS(macro_all));
	} else if (imap_arg_is_atom(a, "FAST")) {
		expand_macro(cp, f, "FAST", macro_fast, NITEMS(macro_fast));
	} else if (imap_arg_is_atom(a, "FULL")) {
		expand_macro(cp, f, "FULL", macro_full, NITEMS(macro_full));
	} else if (a->type == IMAP_ARG_LIST) {
		if (a->count == 0)
			return imap_cp_fail(cp, a, "empty fetch attribute list");
		struct imap_fetch_att *atts = imap_cp_alloc(cp, a->count * sizeof(*atts));
		size_t n = 0;
		for (const struct imap_arg *x = a->child; x; x = x->next) {
			struct imap_fetch_att *att = &atts[n++];
			if (fetch_att(cp, x, att) < 0)
				return -1;
			if (att->item == IMAP_FETCH_PREVIEW && x->next && x->next->type == IMAP_ARG_LIST) {
				/* RFC 8970: PREVIEW (LAZY) */
				x = x->next;
				for (const struct imap_arg *m = x->child; m; m = m->next) {
					if (!imap_arg_is_atom(m, "LAZY"))
						return imap_cp_fail(cp, m, "unknown PREVIEW modifier");
					att->lazy = 1;
				}
			}
		}
		f->atts = atts;
		f->natts = n;
	} else {
		struct imap_fetch_att *att = imap_cp_alloc(cp, sizeof(*att));
		if (fetch_att(cp, a, att) < 0)
			return -1;
		f->atts = att;
		f->natts = 1;
	}
	a = a->next;
	if (a && a->type == IMAP_ARG_LIST) {
		const struct imap_arg *mods = a;
		for (const struct imap_arg *x = a->child; x;) {
			if (imap_arg_is_atom(x, "VANISHED")) {	/* RFC 7162 3.2.6 */
				f->vanished = 1;
				x = x->next;
				continue;
			}
			if (!imap_arg_is_atom(x, "CHANGEDSINCE"))
				return imap_cp_fail(cp, x, "unknown FETCH modifier");
			x = x->next;
			if (imap_get_number(cp, &x, "CHANGEDSINCE value", MODSEQ_MAX,
					    &f->changedsince) < 0)
				return -1;
			f->has_changedsince = 1;
		}
		if (f->vanished && (!cmd->uid || !f->has_changedsince))
			return imap_cp_fail(cp, mods, "VANISHED needs UID FETCH and CHANGEDSINCE");
		a = a->next;
	}
	return imap_get_end(cp, a);
}

int imap_parse_store(struct imap_cp *cp, struct imap_cmd *cmd, const struct imap_arg *a)
{
	struct imap_store *st = &cmd->u.store;
	if (imap_get_seqset(cp, &a, &st->set) < 0)
		return -1;
	if (a && a->type == IMAP_ARG_LIST) {
		for (const struct imap_arg *x = a->child; x;) {
			if (!imap_arg_is_atom(x, "UNCHANGEDSINCE"))
				return imap_cp_fail(cp, x, "unknown STORE modifier");
			x = x->next;
			if (imap_get_number(cp, &x, "UNCHANGEDSINCE value", MODSEQ_MAX,
					    &st->unchangedsince) < 0)
				return -1;
			st->has_unchangedsince = 1;
		}
		a = a->next;
	}
	const char *item;
	const struct imap_arg *at = a;
	if (imap_get_atom(cp, &a, "store item", &item) < 0)
		return -1;
	size_t n = strlen(item);
	st->op = IMAP_STORE_SET;
	if (n > 0 && (item[0] == '+' || item[0] == '-')) {
		st->op = item[0] == '+' ? IMAP_STORE_ADD : IMAP_STORE_REMOVE;
		item++;
		n--;
	}
	if (imap_word_eq(item, n, "FLAGS.SILENT"))
		st->silent = 1;
	else if (!imap_word_eq(item, n, "FLAGS"))
		return imap_cp_fail(cp, at, "store item must be [+|-]FLAGS[.SILENT]");
	if (!a)
		return imap_cp_fail(cp, NULL, "missing flags");
	if (imap_get_flags(cp, &a, 1, &st->flags) < 0)
		return -1;
	return imap_get_end(cp, a);
}
