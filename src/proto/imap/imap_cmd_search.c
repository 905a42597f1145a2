/* imap_cmd_search.c: the SEARCH grammar into a key tree.
 *
 * SEARCH [RETURN (opts)] [CHARSET name] key *(SP key): the top level is
 * an AND node; "( ... )" is an AND node; NOT has one child, OR two.
 * Recursion (parentheses, NOT, OR) is bounded by IMAP_MAX_NESTING.
 * Covers every RFC 3501 key, a bare sequence set, "$" (RFC 5182),
 * MODSEQ (RFC 7162) and OLDER/YOUNGER (RFC 5032). SORT and THREAD (RFC
 * 5256) are SEARCH with criteria or an algorithm in front and a required
 * charset.
 */
#include <string.h>

#include "proto/imap/imap_private.h"

#define MODSEQ_MAX 0x7fffffffffffffffULL

enum karg { K_NONE, K_STR, K_DATE, K_NUM, K_HEADER, K_FLAG, K_SET, K_NOT, K_OR, K_MODSEQ, K_SECONDS, K_OBJECTID };

static const struct {
	const char *name;
	enum imap_skey key;
	enum karg arg;
} keys[] = {
	{ "ALL", IMAP_SK_ALL, K_NONE },
	{ "ANSWERED", IMAP_SK_ANSWERED, K_NONE },
	{ "BCC", IMAP_SK_BCC, K_STR },
	{ "BEFORE", IMAP_SK_BEFORE, K_DATE },
	{ "BODY", IMAP_SK_BODY, K_STR },
	{ "CC", IMAP_SK_CC, K_STR },
	{ "DELETED", IMAP_SK_DELETED, K_NONE },
	{ "DRAFT", IMAP_SK_DRAFT, K_NONE },
	{ "FLAGGED", IMAP_SK_FLAGGED, K_NONE },
	{ "FROM", IMAP_SK_FROM, K_STR },
	{ "HEADER", IMAP_SK_HEADER, K_HEADER },
	{ "KEYWORD", IMAP_SK_KEYWORD, K_FLAG },
	{ "LARGER", IMAP_SK_LARGER, K_NUM },
	{ "NEW", IMAP_SK_NEW, K_NONE },
	{ "NOT", IMAP_SK_NOT, K_NOT },
	{ "OLD", IMAP_SK_OLD, K_NONE },
	{ "ON", IMAP_SK_ON, K_DATE },
	{ "OR", IMAP_SK_OR, K_OR },
	{ "RECENT", IMAP_SK_RECENT, K_NONE },
	{ "SEEN", IMAP_SK_SEEN, K_NONE },
	{ "SENTBEFORE", IMAP_SK_SENTBEFORE, K_DATE },
	{ "SENTON", IMAP_SK_SENTON, K_DATE },
	{ "SENTSINCE", IMAP_SK_SENTSINCE, K_DATE },
	{ "SINCE", IMAP_SK_SINCE, K_DATE },
	{ "SMALLER", IMAP_SK_SMALLER, K_NUM },
	{ "SUBJECT", IMAP_SK_SUBJECT, K_STR },
	{ "TEXT", IMAP_SK_TEXT, K_STR },
	{ "TO", IMAP_SK_TO, K_STR },
	{ "UID", IMAP_SK_UID, K_SET },
	{ "UNANSWERED", IMAP_SK_UNANSWERED, K_NONE },
	{ "UNDELETED", IMAP_SK_UNDELETED, K_NONE },
	{ "UNDRAFT", IMAP_SK_UNDRAFT, K_NONE },
	{ "UNFLAGGED", IMAP_SK_UNFLAGGED, K_NONE },
	{ "UNKEYWORD", IMAP_SK_UNKEYWORD, K_FLAG },
	{ "UNSEEN", IMAP_SK_UNSEEN, K_NONE },
	{ "MODSEQ", IMAP_SK_MODSEQ, K_MODSEQ },
	{ "OLDER", IMAP_SK_OLDER, K_SECONDS },
	{ "YOUNGER", IMAP_SK_YOUNGER, K_SECONDS },
	{ "EMAILID", IMAP_SK_EMAILID, K_OBJECTID },
	{ "THREADID", IMAP_SK_THREADID, K_OBJECTID },
	{ "SAVEDBEFORE", IMAP_SK_SAVEDBEFORE, K_DATE },
	{ "SAVEDON", IMAP_SK_SAVEDON, K_DATE },
	{ "SAVEDSINCE", IMAP_SK_SAVEDSINCE, K_DATE },
	{ "SAVEDATESUPPORTED", IMAP_SK_SAVEDATESUPPORTED, K_NONE },
};

static int skey(struct imap_cp *cp, const struct imap_arg **a, int depth,
		struct imap_search_key **k_r);

/* Keys from *a to the end of that list, as children of parent. */
static int skey_list(struct imap_cp *cp, const struct imap_arg *first, int depth,
		     struct imap_search_key *parent)
{
	struct imap_search_key **tail = &parent->child;
	const struct imap_arg *a = first;
	if (!a)
		return imap_cp_fail(cp, NULL, "missing search key");
	while (a) {
		if (skey(cp, &a, depth, tail) < 0)
			return -1;
		tail = &(*tail)->next;
	}
	return 0;
}

static int modseq_key(struct imap_cp *cp, const struct imap_arg **a, struct imap_search_key *k)
{
	const struct imap_arg *x = *a;
	if (x && (x->type == IMAP_ARG_QUOTED || x->type == IMAP_ARG_LITERAL)) {
		const char *type;
		const struct imap_arg *at;
		k->field = x->str;
		*a = x->next;
		at = *a;
		if (imap_get_atom(cp, a, "MODSEQ entry type", &type) < 0)
			return -1;
		if (!imap_word_eq(type, strlen(type), "priv") &&
		    !imap_word_eq(type, strlen(type), "shared") &&
		    !imap_word_eq(type, strlen(type), "all"))
			return imap_cp_fail(cp, at, "MODSEQ entry type must be priv, shared or all");
		k->entry_type = type;
	}
	return imap_get_number(cp, a, "MODSEQ value", MODSEQ_MAX, &k->num);
}

static int skey(struct imap_cp *cp, const struct imap_arg **a, int depth,
		struct imap_search_key **k_r)
{
	const struct imap_arg *x = *a;
	if (!x)
		return imap_cp_fail(cp, NULL, "missing search key");
	if (depth > IMAP_MAX_NESTING + 1)
		return imap_cp_fail(cp, x, "search keys nested too deep (limit %d)",
				    IMAP_MAX_NESTING);
	struct imap_search_key *k = imap_cp_alloc(cp, sizeof(*k));
	*k_r = k;
	if (x->type == IMAP_ARG_LIST) {
		k->key = IMAP_SK_AND;
		*a = x->next;
		return skey_list(cp, x->child, depth + 1, k);
	}
	if (x->type != IMAP_ARG_ATOM)
		return imap_cp_fail(cp, x, "search key must be an atom");
	*a = x->next;
	size_t i;
	for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if (imap_word_eq(x->str, x->len, keys[i].name))
			break;
	if (i == sizeof(keys) / sizeof(keys[0])) {
		char c = x->str[0];
		if ((c >= '0' && c <= '9') || c == '*' || c == '$') {
			k->key = IMAP_SK_SEQSET;
			*a = x;
			return imap_get_seqset(cp, a, &k->set);
		}
		return imap_cp_fail(cp, x, "unknown search key");
	}
	k->key = keys[i].key;
	const struct imap_arg *at = *a;
	const char *s;
	switch (keys[i].arg) {
	case K_NONE:
		return 0;
	case K_STR:
		return imap_get_astring(cp, a, keys[i].name, &k->str);
	case K_DATE:
		if (imap_get_astring(cp, a, "date", &s) < 0)
			return -1;
		if (imap_date_parse(s, strlen(s), &k->date) < 0)
			return imap_cp_fail(cp, at, "invalid date (expected e.g. 1-Feb-2024)");
		return 0;
	case K_NUM:
		return imap_get_number(cp, a, "size", 0xffffffffffffffffULL, &k->num);
	case K_OBJECTID: {	/* RFC 8474: 1*255(ALPHA / DIGIT / "_" / "-") */
		if (imap_get_astring(cp, a, keys[i].name, &k->str) < 0)
			return -1;
		size_t n = strlen(k->str);
		int ok = n >= 1 && n <= 255;
		for (size_t j = 0; ok && j < n; j++) {
			char c = k->str[j];
			ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
			     c == '-';
		}
		return ok ? 0 : imap_cp_fail(cp, at, "invalid object id");
	}
	case K_SECONDS:	/* RFC 5032: nz-number */
		if (imap_get_number(cp, a, "interval", 0xffffffffULL, &k->num) < 0)
			return -1;
		if (k->num == 0)
			return imap_cp_fail(cp, at, "interval must be at least 1");
		return 0;
	case K_HEADER:
		if (imap_get_astring(cp, a, "header field name", &k->field) < 0)
			return -1;
		return imap_get_astring(cp, a, "header value", &k->str);
	case K_FLAG:
		if (imap_get_atom(cp, a, "keyword", &k->str) < 0)
			return -1;
		if (!imap_flag_valid(k->str, strlen(k->str), 0) || k->str[0] == '\\')
			return imap_cp_fail(cp, at, "invalid keyword");
		return 0;
	case K_SET:
		return imap_get_seqset(cp, a, &k->set);
	case K_NOT:
		return skey(cp, a, depth + 1, &k->child);
	case K_OR:
		if (skey(cp, a, depth + 1, &k->child) < 0)
			return -1;
		return skey(cp, a, depth + 1, &k->child->next);
	case K_MODSEQ:
		return modseq_key(cp, a, k);
	}
	return imap_cp_fail(cp, x, "unknown search key");
}

/* [RETURN (opts)] */
static int parse_return(struct imap_cp *cp, struct imap_search *s, const struct imap_arg **ap)
{
	const struct imap_arg *a = *ap;
	if (!imap_arg_is_atom(a, "RETURN"))
		return 0;
	const struct imap_arg *opts;
	a = a->next;
	if (imap_get_list(cp, &a, "RETURN options", &opts) < 0)
		return -1;
	size_t n = 0;
	for (const struct imap_arg *x = opts; x; x = x->next)
		n++;
	const char **v = imap_cp_alloc(cp, (n ? n : 1) * sizeof(*v));
	n = 0;
	for (const struct imap_arg *x = opts; x; x = x->next) {
		if (x->type != IMAP_ARG_ATOM)
			return imap_cp_fail(cp, x, "RETURN option must be an atom");
		v[n++] = imap_cp_upper(cp, x->str);
	}
	s->has_return = 1;
	s->ret.count = n;
	s->ret.v = v;
	*ap = a;
	return 0;
}

/* The search keys after the charset (the top level is an AND node). */
static int parse_keys(struct imap_cp *cp, struct imap_search *s, const struct imap_arg *a)
{
	s->root = imap_cp_alloc(cp, sizeof(*s->root));
	s->root->key = IMAP_SK_AND;
	return skey_list(cp, a, 1, s->root);
}

int imap_parse_search(struct imap_cp *cp, struct imap_cmd *cmd, const struct imap_arg *a)
{
	struct imap_search *s = &cmd->u.search;
	if (parse_return(cp, s, &a) < 0)
		return -1;
	if (imap_arg_is_atom(a, "CHARSET")) {
		a = a->next;
		if (imap_get_astring(cp, &a, "charset", &s->charset) < 0)
			return -1;
	}
	return parse_keys(cp, s, a);
}

static const struct {
	const char *name;
	enum imap_sort_key key;
} sort_keys[] = {
	{ "ARRIVAL", IMAP_SORT_ARRIVAL }, { "CC", IMAP_SORT_CC }, { "DATE", IMAP_SORT_DATE },
	{ "FROM", IMAP_SORT_FROM }, { "SIZE", IMAP_SORT_SIZE }, { "SUBJECT", IMAP_SORT_SUBJECT },
	{ "TO", IMAP_SORT_TO }, { "DISPLAYFROM", IMAP_SORT_DISPLAYFROM }, { "DISPLAYTO", IMAP_SORT_DISPLAYTO },
};

/* SORT [RETURN (opts)] (criteria) charset keys (RFC 5256 3, RFC 5267). */
int imap_parse_sort(struct imap_cp *cp, struct imap_cmd *cmd, const struct imap_arg *a)
{
	struct imap_search *s = &cmd->u.search;
	const struct imap_arg *first;
	if (parse_return(cp, s, &a) < 0 || imap_get_list(cp, &a, "sort criteria", &first) < 0)
		return -1;
	size_t n = 0;
	for (const struct imap_arg *x = first; x; x = x->next)
		n++;
	if (n > IMAP_MAX_SORT_CRITERIA)
		return imap_cp_fail(cp, first, "too many sort criteria (limit %d)", IMAP_MAX_SORT_CRITERIA);
	struct imap_sort_crit *v = imap_cp_alloc(cp, (n ? n : 1) * sizeof(*v));
	size_t k = 0;
	int reverse = 0;
	for (const struct imap_arg *x = first; x; x = x->next) {
		if (x->type != IMAP_ARG_ATOM)
			return imap_cp_fail(cp, x, "sort criterion must be an atom");
		if (imap_word_eq(x->str, x->len, "REVERSE")) {
			if (reverse)
				return imap_cp_fail(cp, x, "REVERSE twice");
			reverse = 1;
			continue;
		}
		size_t i;
		for (i = 0; i < sizeof(sort_keys) / sizeof(sort_keys[0]); i++)
			if (imap_word_eq(x->str, x->len, sort_keys[i].name))
				break;
		if (i == sizeof(sort_keys) / sizeof(sort_keys[0]))
			return imap_cp_fail(cp, x, "unknown sort criterion");
		v[k].key = sort_keys[i].key;
		v[k++].reverse = reverse;
		reverse = 0;
	}
	if (reverse || k == 0)
		return imap_cp_fail(cp, NULL, reverse ? "REVERSE must precede a criterion" : "empty sort criteria");
	s->nsort = k;
	s->sort = v;
	if (imap_get_astring(cp, &a, "charset", &s->charset) < 0)
		return -1;
	return parse_keys(cp, s, a);
}

/* THREAD algorithm charset keys (RFC 5256 4). */
int imap_parse_thread(struct imap_cp *cp, struct imap_cmd *cmd, const struct imap_arg *a)
{
	struct imap_search *s = &cmd->u.search;
	const char *alg;
	const struct imap_arg *at = a;
	if (imap_get_atom(cp, &a, "thread algorithm", &alg) < 0)
		return -1;
	if (imap_word_eq(alg, strlen(alg), "ORDEREDSUBJECT"))
		s->thread = IMAP_THREAD_ORDEREDSUBJECT;
	else if (imap_word_eq(alg, strlen(alg), "REFERENCES"))
		s->thread = IMAP_THREAD_REFERENCES;
	else
		return imap_cp_fail(cp, at, "unknown thread algorithm");
	if (imap_get_astring(cp, &a, "charset", &s->charset) < 0)
		return -1;
	return parse_keys(cp, s, a);
}

int imap_search_uses_modseq(const struct imap_search_key *key)
{
	for (; key; key = key->next) {
		if (key->key == IMAP_SK_MODSEQ)
			return 1;
		if (key->child && imap_search_uses_modseq(key->child))
			return 1;
	}
	return 0;
}
