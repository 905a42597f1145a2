/* cmd_list.c: LIST (RFC 3501, LIST-EXTENDED RFC 5258, SPECIAL-USE RFC
 * 6154, LIST-STATUS RFC 5819, MYRIGHTS return RFC 8440), LSUB and
 * NAMESPACE.
 *
 * One LIST gathers the names it may talk about into a table sorted by
 * external name: the mailboxes the user may look up (own ones, and
 * other users' and shared ones with 'l'; admins see all), the user's
 * subscriptions when asked for, and every missing parent of those. Then
 * each name that matches a pattern is reported according to the
 * selection options; children are found by a binary search on
 * "<name><sep>". The walk stops at IMAP_MAX_LIST_MAILBOXES names.
 */
#include "imapd/imapd-private.h"

#include "lib/limits.h"
#include "lib/xalloc.h"
#include "proto/imap/imap_write.h"
#include "store/store.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct lentry {
	char *ext;		/* external name */
	char *internal;		/* NULL: not a mailbox */
	unsigned rights;
	unsigned exists : 1;
	unsigned subscribed : 1;
	signed char special;	/* special-use known: -1 not yet, 0 none, 1 some */
	char *specialuse;	/* "\Sent ..." once looked up */
};

struct ltable {
	struct imapd_session *s;
	struct lentry *v;
	size_t n, cap;
	int truncated;
};

/* ---- the table ---------------------------------------------------------- */

static struct lentry *table_add(struct ltable *t, const char *ext)
{
	if (t->n == t->cap) {
		t->cap = t->cap ? 2 * t->cap : 64;
		t->v = xrealloc(t->v, t->cap * sizeof *t->v);
	}
	struct lentry *e = &t->v[t->n++];
	memset(e, 0, sizeof *e);
	e->ext = xstrdup(ext);
	e->special = -1;
	return e;
}

static void table_free(struct ltable *t)
{
	for (size_t i = 0; i < t->n; i++) {
		free(t->v[i].ext);
		free(t->v[i].internal);
		free(t->v[i].specialuse);
	}
	free(t->v);
	t->v = NULL;
	t->n = t->cap = 0;
}

static int cmp_entry(const void *a, const void *b)
{
	const struct lentry *x = a, *y = b;
	int c = strcmp(x->ext, y->ext);
	if (c)
		return c;
	return (int)y->exists - (int)x->exists;	/* the real mailbox first */
}

/* Sorts by external name and merges entries of the same name. */
static void table_sort(struct ltable *t)
{
	if (t->n == 0)
		return;
	qsort(t->v, t->n, sizeof *t->v, cmp_entry);
	size_t w = 0;
	for (size_t i = 1; i < t->n; i++) {
		struct lentry *keep = &t->v[w], *e = &t->v[i];
		if (!strcmp(keep->ext, e->ext)) {
			keep->subscribed |= e->subscribed;
			if (!keep->internal) {
				keep->internal = e->internal;
				e->internal = NULL;
			}
			free(e->ext);
			free(e->internal);
			free(e->specialuse);
			continue;
		}
		t->v[++w] = *e;
	}
	t->n = w + 1;
}

/* First index whose name is >= key. */
static size_t lower_bound(const struct ltable *t, const char *key)
{
	size_t lo = 0, hi = t->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (strcmp(t->v[mid].ext, key) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static int full(struct ltable *t)
{
	if (t->n < IMAP_MAX_LIST_MAILBOXES)
		return 0;
	t->truncated = 1;
	return 1;
}

/* ---- gathering ------------------------------------------------------------ */

/* Cyrus's delayed-delete copies are not shown to users. */
static int is_deleted_copy(const char *internal)
{
	const char *bang = strchr(internal, '!');
	const char *rest = bang ? bang + 1 : internal;
	return !strncmp(rest, "DELETED.", 8);
}

static int add_mailbox(const struct store_mailbox_info *mi, void *rock)
{
	struct ltable *t = rock;
	struct imapd_session *s = t->s;
	if (full(t))
		return 1;
	if (!s->isadmin && is_deleted_copy(mi->name))
		return 0;
	if (mi->mboxtype && *mi->mboxtype)
		return 0;	/* not mail (a #sieve folder): hidden, as Cyrus does */
	unsigned r = imapd_rights(s, mi->name, mi->acl);
	if (!(r & IMAPD_R_LOOKUP))
		return 0;
	struct buf ext = BUF_INIT;
	imapd_name_out(s, mi->name, &ext);
	struct lentry *e = table_add(t, ext.ptr);
	e->internal = xstrdup(mi->name);
	e->rights = r;
	e->exists = 1;
	buf_free(&ext);
	return 0;
}

static int walk_user(const char *userid, void *rock)
{
	struct ltable *t = rock;
	struct terr err = { 0 };
	if (!strcmp(userid, t->s->user))
		return 0;
	if (store_mailbox_list(t->s->st, userid, add_mailbox, t, &err) < 0)
		imapd_log_event(t->s, "list_walk_failed", NULL, "owner=%s", userid);
	return t->truncated;
}

/* The mailboxes the user may see; others' only when others is set. */
static int gather_mailboxes(struct ltable *t, int others, struct terr *err)
{
	struct imapd_session *s = t->s;
	if (s->isadmin && others)
		return store_mailbox_list(s->st, NULL, add_mailbox, t, err);
	if (store_mailbox_list(s->st, s->user, add_mailbox, t, err) < 0)
		return -1;
	if (!others || t->truncated)
		return 0;
	if (store_user_list(s->st, walk_user, t, err) < 0)
		return -1;
	if (t->truncated)
		return 0;
	return store_mailbox_list(s->st, "", add_mailbox, t, err);
}

static int add_sub(const char *name, void *rock)
{
	struct ltable *t = rock;
	if (full(t))
		return 1;
	struct buf ext = BUF_INIT;
	imapd_name_out(t->s, name, &ext);
	struct lentry *e = table_add(t, ext.ptr);
	e->subscribed = 1;
	buf_free(&ext);
	return 0;
}

/* Adds every missing parent ("a" and "a/b" for "a/b/c"). */
static void add_parents(struct ltable *t)
{
	char sep = t->s->ns.sep;
	size_t n = t->n;
	struct buf p = BUF_INIT;
	for (size_t i = 0; i < n && !t->truncated; i++) {
		const char *name = t->v[i].ext;
		for (const char *c = strchr(name + 1, sep); c && c[1]; c = strchr(c + 1, sep)) {
			buf_reset(&p);
			buf_append(&p, name, (size_t)(c - name));
			if (full(t))
				break;
			table_add(t, p.ptr);
		}
	}
	buf_free(&p);
	table_sort(t);
}

/* ---- what one LIST asks for ----------------------------------------------- */

struct lreq {
	int lsub;
	int extended;
	unsigned sel, ret, status_items;
	struct buf *pats;	/* reference + pattern, one per pattern */
	size_t npats;
	char sep;
};

/* 1 when the name matches a pattern; *pct_r: one it matches ends in '%'. */
static int match_any(const struct lreq *q, const char *name, int *pct_r)
{
	int m = 0;
	*pct_r = 0;
	for (size_t i = 0; i < q->npats; i++) {
		const struct buf *p = &q->pats[i];
		if (!imapd_pattern_match(p->ptr, p->len, name, strlen(name), q->sep))
			continue;
		m = 1;
		if (p->len && p->ptr[p->len - 1] == '%')
			*pct_r = 1;
	}
	return m;
}

/* Does a pattern reach past the user's INBOX hierarchy? */
static int needs_others(const struct lreq *q)
{
	for (size_t i = 0; i < q->npats; i++) {
		const struct buf *p = &q->pats[i];
		if (!(p->len >= 5 && !strncasecmp(p->ptr, "INBOX", 5) && (p->len == 5 || p->ptr[5] == q->sep)))
			return 1;
	}
	return 0;
}

static const char *entry_specialuse(struct ltable *t, struct lentry *e)
{
	if (e->special < 0) {
		struct buf b = BUF_INIT;
		/* only the user's own mailboxes: cheap, and as Cyrus shows them */
		const char *x = e->ext;
		char sep = t->s->ns.sep;
		int own = !strncasecmp(x, "INBOX", 5) && (x[5] == '\0' || x[5] == sep);
		if (e->exists && e->internal && own)
			imapd_specialuse_get(t->s, e->internal, &b);
		e->special = b.len > 0;
		e->specialuse = buf_release(&b);
	}
	return e->special ? e->specialuse : "";
}

/* Does e meet the selection options (RFC 5258 3.1)? */
static int meets(struct ltable *t, const struct lreq *q, struct lentry *e)
{
	if (q->lsub)	/* a subscription whose mailbox is gone: left out, as Cyrus does */
		return e->subscribed && e->exists;
	if ((q->sel & IMAP_LIST_SEL_SUBSCRIBED) && !e->subscribed)
		return 0;
	if (q->sel & IMAP_LIST_SEL_SPECIAL_USE)
		return e->exists && *entry_specialuse(t, e);
	if (!(q->sel & IMAP_LIST_SEL_SUBSCRIBED))
		return e->exists;
	return 1;
}

struct kids {
	int exist;	/* an existing descendant */
	int meet;	/* a descendant meeting the selection options */
	int meet_unlisted;	/* one of those that no pattern matches */
};

static int match_any(const struct lreq *q, const char *name, int *pct_r);

static struct kids find_kids(struct ltable *t, const struct lreq *q, size_t i)
{
	struct kids k = { 0, 0, 0 };
	struct buf pre = BUF_INIT;
	buf_appends(&pre, t->v[i].ext);
	buf_putc(&pre, q->sep);
	int want_meet = q->lsub || (q->sel & IMAP_LIST_SEL_RECURSIVEMATCH);
	for (size_t j = lower_bound(t, pre.ptr); j < t->n && !strncmp(t->v[j].ext, pre.ptr, pre.len); j++) {
		struct lentry *d = &t->v[j];
		k.exist |= d->exists;
		if (want_meet && !k.meet_unlisted && meets(t, q, d)) {
			int pct;
			k.meet = 1;
			k.meet_unlisted = !match_any(q, d->ext, &pct);
		}
		if (k.exist && (k.meet_unlisted || !want_meet))
			break;
	}
	buf_free(&pre);
	return k;
}

static void add_attr(struct buf *b, const char *a)
{
	if (b->len)
		buf_putc(b, ' ');
	buf_appends(b, a);
}

static void write_childinfo(struct buf *out, const struct lreq *q)
{
	buf_appends(out, " (\"CHILDINFO\" (");
	int first = 1;
	if (q->sel & IMAP_LIST_SEL_SUBSCRIBED) {
		buf_appends(out, "\"SUBSCRIBED\"");
		first = 0;
	}
	if (q->sel & IMAP_LIST_SEL_SPECIAL_USE)
		buf_appends(out, first ? "\"SPECIAL-USE\"" : " \"SPECIAL-USE\"");
	buf_appends(out, "))");
}

static void write_line(struct imapd_session *s, const struct lreq *q, const char *attrs, const char *name,
		       int childinfo)
{
	buf_printf(&s->out, "* %s (%s) \"%c\" ", q->lsub ? "LSUB" : "LIST", attrs, q->sep);
	imap_write_astring(&s->out, name, strlen(name));
	if (childinfo)
		write_childinfo(&s->out, q);
	buf_appends(&s->out, "\r\n");
}

/* The extra responses after a LIST line: STATUS, MYRIGHTS. */
static void write_returns(struct ltable *t, const struct lreq *q, const struct lentry *e)
{
	struct imapd_session *s = t->s;
	if (!e->exists || !e->internal)
		return;
	if ((q->ret & IMAP_LIST_RET_STATUS) && (e->rights & IMAPD_R_READ)) {
		/* a mailbox whose status fails is skipped (RFC 5819 2) */
		if (imapd_status_write(s, e->internal, e->ext, q->status_items) < 0)
			s->res.resp = NULL;
	}
	if (q->ret & IMAP_LIST_RET_MYRIGHTS) {
		buf_appends(&s->out, "* MYRIGHTS ");
		imap_write_astring(&s->out, e->ext, strlen(e->ext));
		buf_putc(&s->out, ' ');
		struct buf r = BUF_INIT;
		imapd_rights_format(e->rights, &r);
		imap_write_astring(&s->out, r.ptr ? r.ptr : "", r.len);
		buf_free(&r);
		buf_appends(&s->out, "\r\n");
	}
}

/* Reports one table entry if the request wants it. */
static void list_entry(struct ltable *t, const struct lreq *q, size_t i, struct buf *attrs)
{
	struct lentry *e = &t->v[i];
	int pct;
	if (!match_any(q, e->ext, &pct))
		return;
	struct kids k = find_kids(t, q, i);
	int me = meets(t, q, e);
	int recursive = !q->lsub && (q->sel & IMAP_LIST_SEL_RECURSIVEMATCH);
	/* CHILDINFO on a name that meets the options itself whenever a child
	 * does; a name that does not is reported for it only when such a
	 * child is not listed too (RFC 5258 4: no redundant CHILDINFO) */
	int childinfo = recursive && (me ? k.meet : k.meet_unlisted);
	int plain = q->lsub ? 0 : !(q->sel & (IMAP_LIST_SEL_SUBSCRIBED | IMAP_LIST_SEL_SPECIAL_USE));
	/* a level of hierarchy a trailing '%' stops at (RFC 3501 6.3.8) */
	int level = pct && !me && (q->lsub ? k.meet : plain && k.exist);
	if (!me && !childinfo && !level)
		return;
	buf_reset(attrs);
	if (q->lsub) {
		if (!e->exists || !me) {
			add_attr(attrs, "\\Noselect");
		} else {
			/* as Cyrus 3.6 does: \HasChildren and special-use on LSUB too */
			if (k.exist)
				add_attr(attrs, "\\HasChildren");
			if (*entry_specialuse(t, e))
				add_attr(attrs, entry_specialuse(t, e));
		}
	} else {
		if (!e->exists)
			add_attr(attrs, q->extended ? "\\NonExistent" : "\\Noselect");
		if (k.exist)
			add_attr(attrs, "\\HasChildren");
		else if (e->exists)
			add_attr(attrs, "\\HasNoChildren");
		if (e->subscribed && (q->sel & IMAP_LIST_SEL_SUBSCRIBED || q->ret & IMAP_LIST_RET_SUBSCRIBED))
			add_attr(attrs, "\\Subscribed");
		if (e->exists && (!q->extended || (q->ret & IMAP_LIST_RET_SPECIAL_USE) ||
				  (q->sel & IMAP_LIST_SEL_SPECIAL_USE))) {
			const char *su = entry_specialuse(t, e);
			if (*su)
				add_attr(attrs, su);
		}
	}
	write_line(t->s, q, buf_cstr(attrs), e->ext, childinfo);
	if (!q->lsub)
		write_returns(t, q, e);
	imapd_maybe_flush(t->s);
}

/* reference + pattern (RFC 3501 6.3.8: a plain concatenation). */
static void join_pattern(char sep, const char *ref, const char *pat, struct buf *out)
{
	buf_reset(out);
	buf_appends(out, ref);
	if (out->len && out->ptr[out->len - 1] == sep && pat[0] == sep)
		pat++;
	buf_appends(out, pat);
}

static void run_list(struct imapd_session *s, struct lreq *q)
{
	struct ltable t = { 0 };
	struct terr err = { 0 };
	t.s = s;
	int want_subs = q->lsub || (q->sel & IMAP_LIST_SEL_SUBSCRIBED) || (q->ret & IMAP_LIST_RET_SUBSCRIBED);
	if (gather_mailboxes(&t, needs_others(q), &err) < 0) {
		imapd_no_err(s, "list", &err);
		goto out;
	}
	if (want_subs && !t.truncated && store_subs_list(s->st, s->user, add_sub, &t, &err) < 0) {
		imapd_no_err(s, "list_subs", &err);
		goto out;
	}
	table_sort(&t);
	add_parents(&t);
	struct buf attrs = BUF_INIT;
	for (size_t i = 0; i < t.n; i++)
		list_entry(&t, q, i, &attrs);
	buf_free(&attrs);
	if (t.truncated) {
		imapd_log_event(s, "list_truncated", NULL, "limit=%d", IMAP_MAX_LIST_MAILBOXES);
		imapd_no(s, "LIMIT", "Too many mailboxes; the list is incomplete");
	} else {
		imapd_ok(s, NULL, "%s completed", q->lsub ? "LSUB" : "LIST");
	}
out:
	table_free(&t);
}

static int list_or_lsub(struct imapd_session *s, const struct imap_cmd *cmd, int lsub)
{
	const struct imap_list *l = &cmd->u.list;
	struct lreq q = { 0 };
	q.lsub = lsub;
	q.extended = !lsub && l->extended;
	q.sel = lsub ? 0 : l->sel;
	q.ret = lsub ? 0 : l->ret;
	q.status_items = l->status_items;
	q.sep = s->ns.sep;
	q.pats = xcalloc(l->patterns.count ? l->patterns.count : 1, sizeof *q.pats);
	int root = 0;
	for (size_t i = 0; i < l->patterns.count; i++) {
		if (!*l->patterns.v[i]) {
			root = 1;	/* LIST "" "": the delimiter and root */
			continue;
		}
		join_pattern(q.sep, l->ref ? l->ref : "", l->patterns.v[i], &q.pats[q.npats++]);
	}
	if (root && !lsub)
		imapd_printf(s, "* LIST (\\Noselect) \"%c\" \"\"\r\n", q.sep);
	if (q.npats)
		run_list(s, &q);
	for (size_t i = 0; i < q.npats; i++)
		buf_free(&q.pats[i]);
	free(q.pats);
	return 0;
}

int imapd_cmd_list(struct imapd_session *s, const struct imap_cmd *cmd)
{
	return list_or_lsub(s, cmd, 0);
}

int imapd_cmd_lsub(struct imapd_session *s, const struct imap_cmd *cmd)
{
	return list_or_lsub(s, cmd, 1);
}

/* Cyrus's standard namespace: personal "INBOX<sep>", other users
 * "user<sep>", shared "". */
int imapd_cmd_namespace(struct imapd_session *s, const struct imap_cmd *cmd)
{
	(void)cmd;
	char c = s->ns.sep;
	imapd_printf(s, "* NAMESPACE ((\"INBOX%c\" \"%c\")) ((\"user%c\" \"%c\")) ((\"\" \"%c\"))\r\n", c, c, c, c, c);
	return 0;
}
