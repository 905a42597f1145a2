/* view.c: the selected mailbox as this session's client knows it.
 *
 * The sequence map (msgs) is a snapshot of the mailbox's live records.
 * Polling compares it with the store: records whose modseq is above the
 * last HIGHESTMODSEQ seen are read (expunged ones included) and applied
 * (gone / new / dirty flags). When the live count still disagrees with
 * the store's (an expunge that kept its modseq, as a replica applying
 * APPLY EXPUNGE does), the whole UID list is compared. Announcing then
 * sends, in this order: EXPUNGE for gone messages in descending sequence
 * order (so each number stays valid), FLAGS when new keywords appeared,
 * EXISTS and RECENT, and FETCH FLAGS for messages changed by others (or
 * by our own STORE, which relies on this to answer).
 *
 * \Recent: the mailbox's mark (store_recent_take) is the highest UID a
 * session has taken. A SELECT, and every poll that finds new messages,
 * raises it to the mailbox's last UID; the messages between the old mark
 * and the new one are recent here and in no other session. EXAMINE only
 * reads the mark. A failure to read or raise it is logged and the
 * messages are then simply not recent.
 */
#include "imapd/imapd-private.h"

#include "lib/log.h"
#include "lib/xalloc.h"
#include "proto/imap/imap_write.h"
#include "store/store.h"

#include <string.h>
#include <strings.h>

static int kw_known(const struct buf *set, const char *k, size_t n)
{
	for (const char *p = set->ptr; p && *p;) {
		const char *e = strchr(p, ' ');
		size_t len = e ? (size_t)(e - p) : strlen(p);
		if (len == n && !strncasecmp(p, k, n))
			return 1;
		p = e ? e + 1 : p + len;
	}
	return 0;
}

/* Adds the keywords of one message to the mailbox's set. */
static void kw_learn(struct imapd_view *v, const char *kws)
{
	for (const char *p = kws; p && *p;) {
		while (*p == ' ')
			p++;
		const char *e = strchr(p, ' ');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		if (n && !kw_known(&v->keywords, p, n)) {
			if (v->keywords.len)
				buf_putc(&v->keywords, ' ');
			buf_append(&v->keywords, p, n);
		}
		p += n;
	}
}

static size_t kw_count(const struct buf *set)
{
	size_t n = 0;
	for (size_t i = 0; i < set->len; i++)
		n += set->ptr[i] == ' ';
	return set->len ? n + 1 : 0;
}

static void msg_set(struct imapd_msg *m, const struct store_record *r)
{
	m->uid = r->uid;
	m->size = r->size;
	m->sysflags = r->sysflags & ~(unsigned)SYSFLAG_EXPUNGED;
	m->modseq = r->modseq;
	m->internaldate = r->internaldate;
	m->savedate = r->savedate;
	m->thrid = r->thrid;
	free(m->keywords);
	m->keywords = r->keywords && *r->keywords ? xstrdup(r->keywords) : NULL;
	memcpy(m->guid, r->guid, sizeof m->guid);
}

static struct imapd_msg *msg_push(struct imapd_view *v)
{
	if (v->n == v->cap) {
		v->cap = v->cap ? v->cap * 2 : 64;
		v->msgs = xrealloc(v->msgs, v->cap * sizeof *v->msgs);
	}
	struct imapd_msg *m = &v->msgs[v->n++];
	memset(m, 0, sizeof *m);
	return m;
}

struct vanished_ctx {
	const struct imap_seqset *within;
	uint32_t max;
	uint32_t *uids;
	size_t n;
};

static int vanished_cb(const struct store_record *r, void *rock)
{
	struct vanished_ctx *c = rock;
	if (!(r->sysflags & SYSFLAG_EXPUNGED))
		return 0;
	if (c->within && !imap_seqset_contains(c->within, r->uid, c->max))
		return 0;
	c->uids = xrealloc(c->uids, (c->n + 1) * sizeof *c->uids);
	c->uids[c->n++] = r->uid;
	return 0;
}

void imapd_view_vanished_earlier(struct imapd_session *s, uint64_t since, const struct imap_seqset *within)
{
	struct imapd_view *v = s->sel;
	struct vanished_ctx c = { within, v->last_uid, NULL, 0 };
	struct terr err = { 0 };
	if (store_records(s->st, v->name, since, 1, vanished_cb, &c, &err) < 0)
		log_warn("event=vanished_fail session=%s mailbox=%s error=\"%s\"", s->env->session_id, v->name, err.msg);
	if (c.n) {
		struct buf line = BUF_INIT;
		buf_appends(&line, "* VANISHED (EARLIER) ");
		imap_write_seqset(&line, c.uids, c.n);	/* store_records: ascending UIDs */
		buf_appends(&line, "\r\n");
		buf_append(&s->out, line.ptr, line.len);
		imapd_maybe_flush(s);
		buf_free(&line);
	}
	free(c.uids);
}

long imapd_view_find(const struct imapd_view *v, uint32_t uid)
{
	size_t lo = 0, hi = v->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (v->msgs[mid].uid < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < v->n && v->msgs[lo].uid == uid ? (long)lo : -1;
}

static int load_cb(const struct store_record *r, void *rock)
{
	struct imapd_view *v = rock;
	if (v->n && r->uid <= v->msgs[v->n - 1].uid)
		return 0;	/* never: records come in UID order */
	msg_set(msg_push(v), r);
	kw_learn(v, r->keywords);
	return 0;
}

/* Decides \Recent for the messages with UIDs above v->recent_upto, up to
 * last_uid. */
static void recent_decide(struct imapd_session *s, struct imapd_view *v, uint32_t last_uid)
{
	if (last_uid <= v->recent_upto)
		return;
	struct terr err = { 0 };
	uint32_t mark;
	int rc = v->take_recent ? store_recent_take(s->st, v->name, v->uniqueid, last_uid, &mark, &err)
				: store_recent_get(s->st, v->name, v->uniqueid, &mark, &err);
	if (rc < 0) {
		log_warn("event=recent_fail session=%s mailbox=%s error=\"%s\"", s->env->session_id, v->name,
			 err.msg);
		mark = last_uid;
	}
	uint32_t from = mark > v->recent_upto ? mark : v->recent_upto;
	for (size_t i = v->n; i-- > 0 && v->msgs[i].uid > from;)
		if (!v->msgs[i].recent && !v->msgs[i].gone) {
			v->msgs[i].recent = 1;
			v->nrecent++;
		}
	v->recent_upto = last_uid;
}

int imapd_view_open(struct imapd_session *s, const struct store_mailbox_info *mi, int readonly, unsigned rights,
		    int take_recent, struct imapd_view **v_r, struct terr *err)
{
	struct imapd_view *v = xcalloc(1, sizeof *v);
	v->name = xstrdup(mi->name);
	v->uniqueid = xstrdup(mi->uniqueid);
	v->uidvalidity = mi->uidvalidity;
	v->last_uid = mi->last_uid;
	v->highestmodseq = mi->highestmodseq;
	v->readonly = readonly;
	v->rights = rights;
	if (store_records(s->st, mi->name, 0, 0, load_cb, v, err) < 0) {
		imapd_view_free(&v);
		return -1;
	}
	v->announced = v->n;
	v->nkeywords_sent = kw_count(&v->keywords);
	v->take_recent = take_recent;
	recent_decide(s, v, mi->last_uid);
	v->nrecent_sent = v->nrecent;
	v->seen_private = imapd_seen_private(s, v->name);
	*v_r = v;
	if (v->seen_private) {
		struct imapd_view *keep = s->sel;
		s->sel = v;
		imapd_seen_overlay(s, 1);
		s->sel = keep;
	}
	return 0;
}

void imapd_view_free(struct imapd_view **vp)
{
	struct imapd_view *v = *vp;
	if (!v)
		return;
	for (size_t i = 0; i < v->n; i++)
		free(v->msgs[i].keywords);
	free(v->msgs);
	free(v->name);
	free(v->uniqueid);
	buf_free(&v->keywords);
	free(v);
	*vp = NULL;
}

static size_t live_count(const struct imapd_view *v)
{
	size_t n = 0;
	for (size_t i = 0; i < v->n; i++)
		n += !v->msgs[i].gone;
	return n;
}

static void msg_gone(struct imapd_view *v, struct imapd_msg *m)
{
	m->gone = 1;
	m->dirty = 0;
	if (m->recent) {
		m->recent = 0;
		v->nrecent--;
	}
}

static int poll_cb(const struct store_record *r, void *rock)
{
	struct imapd_view *v = rock;
	long i = imapd_view_find(v, r->uid);
	if (r->sysflags & SYSFLAG_EXPUNGED) {
		if (i >= 0 && !v->msgs[i].gone)
			msg_gone(v, &v->msgs[i]);
		return 0;
	}
	if (i >= 0) {
		struct imapd_msg *m = &v->msgs[i];
		if (m->gone)
			return 0;
		const char *old = m->keywords ? m->keywords : "";
		if (m->sysflags != (r->sysflags & ~(unsigned)SYSFLAG_EXPUNGED) || strcmp(old, r->keywords ? r->keywords : ""))
			m->dirty = 1;
		if (m->modseq != r->modseq)
			m->dirty = 1;
		msg_set(m, r);
		kw_learn(v, r->keywords);
		return 0;
	}
	if (v->n && r->uid < v->msgs[v->n - 1].uid) {
		/* a UID below ones we hold appeared: only a replica being
		 * repaired does that; the client sees it after a reselect */
		return 0;
	}
	msg_set(msg_push(v), r);
	kw_learn(v, r->keywords);
	return 0;
}

/* The full comparison: every live UID of the store against the map. */
struct full_ctx {
	struct imapd_view *v;
	unsigned char *seen;
};

static int full_cb(const struct store_record *r, void *rock)
{
	struct full_ctx *fc = rock;
	long i = imapd_view_find(fc->v, r->uid);
	if (i >= 0)
		fc->seen[i] = 1;
	return 0;
}

static int full_compare(struct imapd_session *s, struct terr *err)
{
	struct imapd_view *v = s->sel;
	struct full_ctx fc = { v, xcalloc(v->n ? v->n : 1, 1) };
	int rc = store_records(s->st, v->name, 0, 0, full_cb, &fc, err);
	if (rc == 0)
		for (size_t i = 0; i < v->n; i++)
			if (!fc.seen[i] && !v->msgs[i].gone)
				msg_gone(v, &v->msgs[i]);
	free(fc.seen);
	return rc;
}

int imapd_view_poll(struct imapd_session *s)
{
	struct imapd_view *v = s->sel;
	struct store_mailbox_info mi = { 0 };
	struct terr err = { 0 };
	if (store_mailbox_get(s->st, v->name, &mi, &err) < 0) {
		if (err.code == TE_NOTFOUND)
			return -1;
		log_warn("event=poll_fail session=%s mailbox=%s error=\"%s\"", s->env->session_id, v->name, err.msg);
		return 0;
	}
	int rc = 0;
	if (strcmp(mi.uniqueid, v->uniqueid) != 0) {
		rc = -1;	/* deleted and created again under the same name */
		goto out;
	}
	if (mi.highestmodseq != v->highestmodseq) {
		if (store_records(s->st, v->name, v->highestmodseq, 1, poll_cb, v, &err) < 0) {
			log_warn("event=poll_fail session=%s mailbox=%s error=\"%s\"", s->env->session_id, v->name,
				 err.msg);
			goto out;
		}
		v->highestmodseq = mi.highestmodseq;
		v->last_uid = mi.last_uid;
		recent_decide(s, v, mi.last_uid);
	}
	if (live_count(v) != mi.exists && full_compare(s, &err) < 0)
		log_warn("event=poll_fail session=%s mailbox=%s error=\"%s\"", s->env->session_id, v->name, err.msg);
	imapd_seen_overlay(s, 0);
out:
	store_mailbox_info_free(&mi);
	return rc;
}

void imapd_view_announce(struct imapd_session *s, int allow_expunge, int with_uid)
{
	struct imapd_view *v = s->sel;
	/* gone messages the client never heard of go silently; the others
	 * only when EXPUNGE is allowed now, from the highest number down */
	size_t keep = 0;
	uint32_t *vanished = NULL;	/* QRESYNC: their UIDs, descending */
	size_t nvanished = 0;
	for (size_t i = v->n; i-- > 0;) {
		struct imapd_msg *m = &v->msgs[i];
		if (!m->gone)
			continue;
		if (i < v->announced) {
			if (!allow_expunge)
				continue;
			if (s->qresync) {
				vanished = xrealloc(vanished, (nvanished + 1) * sizeof *vanished);
				vanished[nvanished++] = m->uid;
			} else {
				imapd_printf(s, "* %zu EXPUNGE\r\n", i + 1);
			}
			v->announced--;
		}
		free(m->keywords);
		m->keywords = NULL;
		m->uid = 0;	/* marks it for removal below */
	}
	for (size_t i = 0; i < v->n; i++)
		if (v->msgs[i].uid)
			v->msgs[keep++] = v->msgs[i];
	v->n = keep;
	if (nvanished) {
		struct buf line = BUF_INIT;
		for (size_t a = 0, b = nvanished - 1; a < b; a++, b--) {	/* ascending */
			uint32_t t = vanished[a];
			vanished[a] = vanished[b];
			vanished[b] = t;
		}
		buf_appends(&line, "* VANISHED ");
		imap_write_seqset(&line, vanished, nvanished);
		buf_appends(&line, "\r\n");
		buf_append(&s->out, line.ptr, line.len);
		buf_free(&line);
	}
	free(vanished);
	size_t nk = kw_count(&v->keywords);
	if (nk != v->nkeywords_sent) {
		imapd_printf(s, "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft%s%s)\r\n",
			     v->keywords.len ? " " : "", buf_cstr(&v->keywords));
		imapd_printf(s, "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft%s%s \\*)] Flags\r\n",
			     v->keywords.len ? " " : "", buf_cstr(&v->keywords));
		v->nkeywords_sent = nk;
	}
	if (v->n != v->announced) {
		imapd_printf(s, "* %zu EXISTS\r\n", v->n);
		v->announced = v->n;
		if (v->nrecent != v->nrecent_sent) {
			imapd_printf(s, "* %zu RECENT\r\n", v->nrecent);
			v->nrecent_sent = v->nrecent;
		}
	}
	struct buf line = BUF_INIT;
	for (size_t i = 0; i < v->n; i++) {
		struct imapd_msg *m = &v->msgs[i];
		if (!m->dirty || m->gone)
			continue;
		m->dirty = 0;
		buf_reset(&line);
		buf_printf(&line, "* %zu FETCH (", i + 1);
		if (with_uid || s->qresync)	/* RFC 7162 3.2.4: always the UID */
			buf_printf(&line, "UID %u ", m->uid);
		buf_appends(&line, "FLAGS ");
		imapd_write_flags(&line, m->recent, m->sysflags, m->keywords);
		if (s->condstore)
			buf_printf(&line, " MODSEQ (%llu)", (unsigned long long)m->modseq);
		buf_appends(&line, ")\r\n");
		buf_append(&s->out, line.ptr, line.len);
		imapd_maybe_flush(s);
	}
	buf_free(&line);
}

int imapd_view_seq_valid(const struct imapd_view *v, const struct imap_seqset *set)
{
	for (size_t r = 0; !set->saved && r < set->count; r++) {
		uint32_t lo = set->ranges[r].lo, hi = set->ranges[r].hi;
		if ((lo != IMAP_SEQ_STAR && lo > v->announced) || (hi != IMAP_SEQ_STAR && hi > v->announced))
			return 0;
	}
	return 1;
}

size_t imapd_view_resolve(const struct imapd_view *v, const struct imap_seqset *set, int uid, size_t **idx_r)
{
	*idx_r = NULL;
	if (set->saved || v->n == 0)
		return 0;
	/* a difference array: O(messages + ranges) whatever the ranges */
	int *diff = xcalloc(v->n + 1, sizeof *diff);
	uint32_t maxuid = v->msgs[v->n - 1].uid;
	for (size_t r = 0; r < set->count; r++) {
		uint32_t lo = set->ranges[r].lo, hi = set->ranges[r].hi;
		size_t a, b;	/* index range [a, b) */
		if (uid) {
			lo = lo == IMAP_SEQ_STAR ? maxuid : lo;
			hi = hi == IMAP_SEQ_STAR ? maxuid : hi;
			if (lo > hi) {
				uint32_t t = lo;
				lo = hi;
				hi = t;
			}
			size_t l = 0, h = v->n;
			while (l < h) {
				size_t mid = l + (h - l) / 2;
				if (v->msgs[mid].uid < lo)
					l = mid + 1;
				else
					h = mid;
			}
			a = l;
			h = v->n;
			while (l < h) {
				size_t mid = l + (h - l) / 2;
				if (v->msgs[mid].uid <= hi)
					l = mid + 1;
				else
					h = mid;
			}
			b = l;
		} else {
			uint32_t n = (uint32_t)v->n;
			lo = lo == IMAP_SEQ_STAR ? n : lo;
			hi = hi == IMAP_SEQ_STAR ? n : hi;
			if (lo > hi) {
				uint32_t t = lo;
				lo = hi;
				hi = t;
			}
			if (lo > n)
				continue;
			if (hi > n)
				hi = n;
			a = lo - 1;
			b = hi;
		}
		if (a < b) {
			diff[a]++;
			diff[b]--;
		}
	}
	size_t count = 0;
	size_t *idx = xmalloc(v->n * sizeof *idx);
	int on = 0;
	for (size_t i = 0; i < v->n; i++) {
		on += diff[i];
		if (on > 0)
			idx[count++] = i;
	}
	free(diff);
	if (!count) {
		free(idx);
		idx = NULL;
	}
	*idx_r = idx;
	return count;
}
