/* cmd_search.c: SEARCH and UID SEARCH (RFC 3501 6.4.4), with MODSEQ
 * (RFC 7162 3.1.5) and ESEARCH RETURN options (RFC 4731).
 *
 * The parsed key tree is first compiled into a private tree: sequence
 * sets become per-message bitmaps (one O(messages + ranges) pass each)
 * and the children of AND/OR are ordered cheapest first, so that flag,
 * size and date keys can rule a message out before its bytes are read.
 * Evaluation is then O(messages * keys). A message is loaded (and
 * parsed) only when a header, body or Date: key of it is reached, and at
 * most once per message.
 *
 * Choices: RECENT, NEW and OLD use the session's \Recent (view.c); SENT*
 * keys fall back to the internal date when the message has no valid
 * Date: field; OLDER/YOUNGER (RFC 5032 WITHIN) compare the internal date
 * with the time the command started; "$" and RETURN (SAVE) are BAD (no
 * SEARCHRES). imapd_search_run is shared with SORT and THREAD
 * (cmd_sort.c).
 */
#include "imapd/imapd-private.h"

#include "lib/xalloc.h"
#include "store/store.h"
#include "proto/imap/imap_write.h"
#include "proto/mime/mime.h"
#include "store/synccrc.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define DAY_SECONDS 86400

/* How much work a key costs per message. */
enum cost { COST_META = 0, COST_DATE = 1, COST_HEADER = 2, COST_BODY = 3 };

struct snode {
	const struct imap_search_key *k;
	unsigned char *bits;	/* UID, SEQSET: 1 per message index in the set */
	unsigned sysflag;	/* KEYWORD/UNKEYWORD naming a \flag: its bit */
	int never;		/* KEYWORD/UNKEYWORD naming \Recent or unknown \flag */
	enum cost cost;		/* of this node and its descendants (max) */
	struct snode *child, *next;
};

/* One message while it is evaluated. */
struct ectx {
	struct imapd_session *s;
	size_t i;
	const struct imapd_msg *m;
	int loaded;		/* 0 not tried, 1 s->cur.mime is this one, -1 failed */
	int hloaded;		/* the same for its header alone (need_header) */
	int have_sent;		/* 0 not computed, 1 sent_day valid */
	time_t sent_day;
	size_t *failed;
	int64_t now;
};

/* ---- compiling the key tree ------------------------------------------------ */

static enum cost key_cost(enum imap_skey key)
{
	switch (key) {
	case IMAP_SK_SENTBEFORE:
	case IMAP_SK_SENTON:
	case IMAP_SK_SENTSINCE:
		return COST_DATE;
	case IMAP_SK_BCC:
	case IMAP_SK_CC:
	case IMAP_SK_FROM:
	case IMAP_SK_HEADER:
	case IMAP_SK_SUBJECT:
	case IMAP_SK_TO:
		return COST_HEADER;
	case IMAP_SK_BODY:
	case IMAP_SK_TEXT:
		return COST_BODY;
	default:
		return COST_META;
	}
}

static unsigned sysflag_named(const char *flag, int *never)
{
	static const struct {
		const char *name;
		unsigned bit;
	} t[] = {
		{ "\\Seen", SYSFLAG_SEEN }, { "\\Answered", SYSFLAG_ANSWERED },
		{ "\\Flagged", SYSFLAG_FLAGGED }, { "\\Deleted", SYSFLAG_DELETED },
		{ "\\Draft", SYSFLAG_DRAFT },
	};
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
		if (!strcasecmp(flag, t[i].name))
			return t[i].bit;
	*never = 1;
	return 0;
}

/* Orders a sibling list by cost, stable: one bucket per cost, O(n). */
static struct snode *sort_by_cost(struct snode *list)
{
	struct snode *head[COST_BODY + 1] = { NULL }, **tail[COST_BODY + 1];
	for (int c = 0; c <= COST_BODY; c++)
		tail[c] = &head[c];
	while (list) {
		struct snode *x = list;
		list = list->next;
		x->next = NULL;
		*tail[x->cost] = x;
		tail[x->cost] = &x->next;
	}
	struct snode *out = NULL, **o = &out;
	for (int c = 0; c <= COST_BODY; c++) {
		*o = head[c];
		if (head[c])
			o = tail[c];
	}
	return out;
}

static struct snode *compile(const struct imapd_view *v, const struct imap_search_key *k, int *saved);

static struct snode *compile_one(const struct imapd_view *v, const struct imap_search_key *k, int *saved)
{
	struct snode *n = xcalloc(1, sizeof *n);
	n->k = k;
	n->cost = key_cost(k->key);
	if (k->key == IMAP_SK_UID || k->key == IMAP_SK_SEQSET) {
		if (k->set.saved)
			*saved = 1;
		n->bits = xcalloc(v->n ? v->n : 1, 1);
		size_t *idx;
		size_t cnt = imapd_view_resolve(v, &k->set, k->key == IMAP_SK_UID, &idx);
		for (size_t j = 0; j < cnt; j++)
			n->bits[idx[j]] = 1;
		free(idx);
	} else if ((k->key == IMAP_SK_KEYWORD || k->key == IMAP_SK_UNKEYWORD) && k->str && k->str[0] == '\\') {
		n->sysflag = sysflag_named(k->str, &n->never);
	}
	if (k->child) {
		n->child = sort_by_cost(compile(v, k->child, saved));
		for (struct snode *c = n->child; c; c = c->next)
			if (c->cost > n->cost)
				n->cost = c->cost;
	}
	return n;
}

/* Compiles k and its following siblings. */
static struct snode *compile(const struct imapd_view *v, const struct imap_search_key *k, int *saved)
{
	struct snode *head = NULL, **tail = &head;
	for (; k; k = k->next) {
		*tail = compile_one(v, k, saved);
		tail = &(*tail)->next;
	}
	return head;
}

static void snode_free(struct snode *n)
{
	while (n) {
		struct snode *next = n->next;
		snode_free(n->child);
		free(n->bits);
		free(n);
		n = next;
	}
}

/* ---- evaluating one message ---------------------------------------------------- */

static const struct mime_message *need_mime(struct ectx *c)
{
	if (c->loaded == 0) {
		const struct imapd_view *v = c->s->sel;
		c->loaded = imapd_load(c->s, v->name, c->m, 1) == 0 && c->s->cur.mime ? 1 : -1;
		if (c->loaded < 0)
			(*c->failed)++;
	}
	return c->loaded > 0 ? c->s->cur.mime : NULL;
}

/* The message's top-level header: from the message cache when the whole
 * message is not loaded already (imapd_load_header). */
static const struct mime_message *need_header(struct ectx *c)
{
	if (c->loaded > 0)
		return c->s->cur.mime;
	if (c->loaded < 0)
		return NULL;
	if (c->hloaded == 0) {
		const struct imapd_view *v = c->s->sel;
		c->hloaded = imapd_load_header(c->s, v->name, c->m) ? 1 : -1;
		if (c->hloaded < 0) {
			c->loaded = -1;	/* the file could not be read either */
			(*c->failed)++;
		}
	}
	return c->hloaded > 0 ? c->s->cur.mime : NULL;
}

/* 1 when the space-separated list holds word (case-insensitive). */
static int has_keyword(const char *list, const char *word)
{
	size_t wl = strlen(word);
	if (!list || wl == 0)
		return 0;
	for (const char *p = list; *p;) {
		while (*p == ' ')
			p++;
		const char *e = p;
		while (*e && *e != ' ')
			e++;
		if ((size_t)(e - p) == wl && !strncasecmp(p, word, wl))
			return 1;
		p = e;
	}
	return 0;
}

static int keyword_set(const struct snode *n, const struct imapd_msg *m)
{
	if (n->never)
		return 0;
	if (n->sysflag)
		return (m->sysflags & n->sysflag) != 0;
	return has_keyword(m->keywords, n->k->str);
}

/* The UTC day (00:00) of t. */
static time_t day_of(int64_t t)
{
	int64_t d = t / DAY_SECONDS;
	if (t % DAY_SECONDS < 0)
		d--;
	return (time_t)(d * DAY_SECONDS);
}

/* The day the Date: field was written, or the internal date's day. */
static int sent_day(struct ectx *c, time_t *day_r)
{
	if (!c->have_sent) {
		const struct mime_message *mm = need_header(c);
		if (!mm)
			return -1;
		time_t t;
		int tz;
		if (mime_message_date(mm, &t, &tz) == 0)
			c->sent_day = day_of((int64_t)t + (int64_t)tz * 60);
		else
			c->sent_day = day_of(c->m->internaldate);
		c->have_sent = 1;
	}
	*day_r = c->sent_day;
	return 0;
}

static int date_cmp(enum imap_skey key, time_t day, time_t want)
{
	switch (key) {
	case IMAP_SK_BEFORE:
	case IMAP_SK_SENTBEFORE:
		return day < want;
	case IMAP_SK_ON:
	case IMAP_SK_SENTON:
		return day == want;
	default:	/* SINCE, SENTSINCE */
		return day >= want;
	}
}

static int header_key(struct ectx *c, const char *field, const char *needle)
{
	const struct mime_message *mm = need_header(c);
	return mm && mime_search_header(mm, field, needle, strlen(needle));
}

static int eval(struct ectx *c, const struct snode *n);

static int eval_all(struct ectx *c, const struct snode *n)
{
	for (; n; n = n->next)
		if (!eval(c, n))
			return 0;
	return 1;
}

static int eval_flags(const struct snode *n, const struct imapd_msg *m)
{
	unsigned f = m->sysflags;
	switch (n->k->key) {
	case IMAP_SK_ANSWERED:
		return (f & SYSFLAG_ANSWERED) != 0;
	case IMAP_SK_DELETED:
		return (f & SYSFLAG_DELETED) != 0;
	case IMAP_SK_DRAFT:
		return (f & SYSFLAG_DRAFT) != 0;
	case IMAP_SK_FLAGGED:
		return (f & SYSFLAG_FLAGGED) != 0;
	case IMAP_SK_SEEN:
		return (f & SYSFLAG_SEEN) != 0;
	case IMAP_SK_UNANSWERED:
		return !(f & SYSFLAG_ANSWERED);
	case IMAP_SK_UNDELETED:
		return !(f & SYSFLAG_DELETED);
	case IMAP_SK_UNDRAFT:
		return !(f & SYSFLAG_DRAFT);
	case IMAP_SK_UNFLAGGED:
		return !(f & SYSFLAG_FLAGGED);
	case IMAP_SK_UNSEEN:
		return !(f & SYSFLAG_SEEN);
	case IMAP_SK_KEYWORD:
		return keyword_set(n, m);
	case IMAP_SK_UNKEYWORD:
		return !keyword_set(n, m);
	default:
		return 0;
	}
}

static int eval(struct ectx *c, const struct snode *n)
{
	const struct imap_search_key *k = n->k;
	const struct imapd_msg *m = c->m;
	time_t day;
	switch (k->key) {
	case IMAP_SK_ALL:
		return 1;
	case IMAP_SK_OLD:
		return !m->recent;
	case IMAP_SK_NEW:
		return m->recent && !(m->sysflags & SYSFLAG_SEEN);
	case IMAP_SK_RECENT:
		return m->recent;
	case IMAP_SK_AND:
		return eval_all(c, n->child);
	case IMAP_SK_NOT:
		return !eval(c, n->child);
	case IMAP_SK_OR:
		return eval(c, n->child) || (n->child->next && eval(c, n->child->next));
	case IMAP_SK_UID:
	case IMAP_SK_SEQSET:
		return n->bits[c->i];
	case IMAP_SK_EMAILID: {
		char id[26];
		imapd_emailid(m, id);
		return !strcmp(id, k->str);
	}
	case IMAP_SK_THREADID: {
		char id[18];
		return imapd_threadid(m, id) == 0 && !strcmp(id, k->str);
	}
	case IMAP_SK_SAVEDATESUPPORTED:
		return 1;
	case IMAP_SK_SAVEDBEFORE:
		return date_cmp(IMAP_SK_BEFORE, day_of(m->savedate ? m->savedate : m->internaldate), k->date);
	case IMAP_SK_SAVEDON:
		return date_cmp(IMAP_SK_ON, day_of(m->savedate ? m->savedate : m->internaldate), k->date);
	case IMAP_SK_SAVEDSINCE:
		return date_cmp(IMAP_SK_SINCE, day_of(m->savedate ? m->savedate : m->internaldate), k->date);
	case IMAP_SK_OLDER:
		return c->now - m->internaldate > (int64_t)k->num;
	case IMAP_SK_YOUNGER:
		return c->now - m->internaldate <= (int64_t)k->num;
	case IMAP_SK_LARGER:
		return m->size > k->num;
	case IMAP_SK_SMALLER:
		return m->size < k->num;
	case IMAP_SK_MODSEQ:
		return m->modseq >= k->num;
	case IMAP_SK_BEFORE:
	case IMAP_SK_ON:
	case IMAP_SK_SINCE:
		return date_cmp(k->key, day_of(m->internaldate), k->date);
	case IMAP_SK_SENTBEFORE:
	case IMAP_SK_SENTON:
	case IMAP_SK_SENTSINCE:
		return sent_day(c, &day) == 0 && date_cmp(k->key, day, k->date);
	case IMAP_SK_BCC:
		return header_key(c, "Bcc", k->str);
	case IMAP_SK_CC:
		return header_key(c, "Cc", k->str);
	case IMAP_SK_FROM:
		return header_key(c, "From", k->str);
	case IMAP_SK_TO:
		return header_key(c, "To", k->str);
	case IMAP_SK_SUBJECT:
		return header_key(c, "Subject", k->str);
	case IMAP_SK_HEADER:
		return header_key(c, k->field, k->str);
	case IMAP_SK_BODY:
		return need_mime(c) && mime_search_body(c->s->cur.mime, k->str, strlen(k->str));
	case IMAP_SK_TEXT:
		return need_mime(c) && mime_search_text(c->s->cur.mime, k->str, strlen(k->str));
	default:
		return eval_flags(n, m);
	}
}

/* ---- the reply --------------------------------------------------------------------- */

enum { RET_MIN = IMAPD_RET_MIN, RET_MAX = IMAPD_RET_MAX, RET_COUNT = IMAPD_RET_COUNT, RET_ALL = IMAPD_RET_ALL };

int imapd_search_return_opts(struct imapd_session *s, const struct imap_search *q)
{
	unsigned r = 0;
	for (size_t i = 0; i < q->ret.count; i++) {
		const char *o = q->ret.v[i];
		if (!strcmp(o, "MIN"))
			r |= RET_MIN;
		else if (!strcmp(o, "MAX"))
			r |= RET_MAX;
		else if (!strcmp(o, "COUNT"))
			r |= RET_COUNT;
		else if (!strcmp(o, "ALL"))
			r |= RET_ALL;
		else if (!strcmp(o, "SAVE")) {
			imapd_bad(s, NULL, "RETURN (SAVE) is not supported");
			return -1;
		} else {
			imapd_bad(s, NULL, "Unknown RETURN option");
			return -1;
		}
	}
	return (int)(r ? r : RET_ALL);
}

static void write_search(struct buf *b, const uint32_t *nums, size_t n, int modseq, uint64_t top)
{
	buf_appends(b, "* SEARCH");
	for (size_t j = 0; j < n; j++)
		buf_printf(b, " %u", nums[j]);
	if (modseq && n)
		buf_printf(b, " (MODSEQ %llu)", (unsigned long long)top);
	buf_appends(b, "\r\n");
}

void imapd_write_esearch(struct buf *b, const char *tag, int uid, unsigned ret, const uint32_t *nums, size_t n,
			 int modseq, uint64_t top, uint64_t first_ms, uint64_t last_ms)
{
	if (!(ret & (RET_ALL | RET_COUNT))) {
		top = 0;
		if ((ret & RET_MIN) && first_ms > top)
			top = first_ms;
		if ((ret & RET_MAX) && last_ms > top)
			top = last_ms;
	}
	buf_appends(b, "* ESEARCH (TAG ");
	imap_write_string(b, tag, strlen(tag));
	buf_putc(b, ')');
	if (uid)
		buf_appends(b, " UID");
	if ((ret & RET_MIN) && n)
		buf_printf(b, " MIN %u", nums[0]);
	if ((ret & RET_MAX) && n)
		buf_printf(b, " MAX %u", nums[n - 1]);
	if (ret & RET_COUNT)
		buf_printf(b, " COUNT %zu", n);
	if ((ret & RET_ALL) && n) {
		buf_appends(b, " ALL ");
		imap_write_seqset(b, nums, n);
	}
	if (modseq && n)
		buf_printf(b, " MODSEQ %llu", (unsigned long long)top);
	buf_appends(b, "\r\n");
}

static int charset_ok(const char *cs)
{
	return !cs || !strcasecmp(cs, "UTF-8") || !strcasecmp(cs, "US-ASCII");
}

long imapd_search_run(struct imapd_session *s, const struct imap_search *q, size_t **idx_r, size_t *failed_r)
{
	struct imapd_view *v = s->sel;
	*idx_r = NULL;
	int saved = 0;
	struct snode *root = compile(v, q->root, &saved);
	if (saved) {
		snode_free(root);
		imapd_bad(s, NULL, "$ (SEARCHRES) is not supported");
		return -1;
	}
	if (imap_search_uses_modseq(q->root))
		imapd_condstore_enable(s);
	size_t *idx = xmalloc((v->n ? v->n : 1) * sizeof *idx), n = 0;
	int64_t now = (int64_t)time(NULL);
	/* header keys read cache rows: one read transaction for all */
	int begun = 0;
	struct terr err = { 0 };
	if (root && root->cost > COST_META && store_cache_read_begin(s->st, v->name, &begun, &err) < 0)
		begun = 0;	/* each read then locks alone */
	for (size_t i = 0; i < v->n; i++) {
		const struct imapd_msg *m = &v->msgs[i];
		if (m->gone)
			continue;
		struct ectx c = { .s = s, .i = i, .m = m, .failed = failed_r, .now = now };
		if (eval(&c, root))
			idx[n++] = i;
	}
	store_cache_read_end(s->st, v->name, begun);
	snode_free(root);
	*idx_r = idx;
	return (long)n;
}

int imapd_cmd_search(struct imapd_session *s, const struct imap_cmd *cmd)
{
	const struct imap_search *q = &cmd->u.search;
	struct imapd_view *v = s->sel;
	if (!charset_ok(q->charset)) {
		imapd_no(s, "BADCHARSET (UTF-8 US-ASCII)", "Unsupported charset");
		return 0;
	}
	int ret = 0;
	if (q->has_return && (ret = imapd_search_return_opts(s, q)) < 0)
		return 0;
	size_t *idx, failed = 0;
	long cnt = imapd_search_run(s, q, &idx, &failed);
	if (cnt < 0)
		return 0;
	int modseq = imap_search_uses_modseq(q->root);
	size_t n = (size_t)cnt;
	uint32_t *nums = xmalloc((n ? n : 1) * sizeof *nums);
	uint64_t top = 0, first_ms = 0, last_ms = 0;
	for (size_t j = 0; j < n; j++) {
		const struct imapd_msg *m = &v->msgs[idx[j]];
		nums[j] = cmd->uid ? m->uid : (uint32_t)(idx[j] + 1);
		if (m->modseq > top)
			top = m->modseq;
		if (j == 0)
			first_ms = m->modseq;
		last_ms = m->modseq;
	}
	free(idx);
	struct buf b = BUF_INIT;
	if (q->has_return)
		imapd_write_esearch(&b, cmd->tag, cmd->uid, (unsigned)ret, nums, n, modseq, top, first_ms, last_ms);
	else
		write_search(&b, nums, n, modseq, top);
	buf_append(&s->out, b.ptr, b.len);
	imapd_maybe_flush(s);
	buf_free(&b);
	free(nums);
	if (failed)
		imapd_no(s, "SERVERBUG", "%zu message(s) could not be read", failed);
	return 0;
}
