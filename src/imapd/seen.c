/* seen.c: \Seen of a user who does not own the selected mailbox.
 *
 * As in Cyrus, the owner's \Seen is a flag of the message record, while
 * everyone else's (other users, admins, everyone on a shared mailbox)
 * lives in that user's seen state for the mailbox's uniqueid: a sequence
 * set of UIDs (store_seen_get/set, replicated with APPLY SEEN). The view
 * keeps the session user's \Seen in its messages' sysflags either way;
 * for such a view this file overlays the seen set after every load and
 * poll, and writes changes of \Seen to the seen state instead of the
 * records.
 */
#include "imapd/imapd-private.h"

#include "lib/xalloc.h"
#include "proto/imap/imap_write.h"
#include "store/store.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

int imapd_seen_private(const struct imapd_session *s, const char *internal)
{
	struct buf owner = BUF_INIT;
	int own = mboxname_owner(internal, &owner, NULL) == 1 && s->user && !strcmp(owner.ptr, s->user);
	buf_free(&owner);
	return !own;
}

/* Next range of a "1:3,5,7:*" set; 0 at the end. */
static int next_range(const char **p, uint32_t *lo, uint32_t *hi)
{
	char *end;
	while (**p == ',')
		(*p)++;
	if (!**p)
		return 0;
	unsigned long a = strtoul(*p, &end, 10), b = a;
	if (end == *p)
		return 0;
	*p = end;
	if (**p == ':') {
		(*p)++;
		if (**p == '*') {
			b = UINT32_MAX;
			(*p)++;
		} else {
			b = strtoul(*p, &end, 10);
			*p = end;
		}
	}
	*lo = (uint32_t)(a < b ? a : b);
	*hi = (uint32_t)(a < b ? b : a);
	return 1;
}

struct range {
	uint32_t lo, hi;
};

static int cmp_range(const void *a, const void *b)
{
	const struct range *x = a, *y = b;
	return x->lo < y->lo ? -1 : x->lo > y->lo;
}

void imapd_seen_overlay(struct imapd_session *s, int initial)
{
	struct imapd_view *v = s->sel;
	if (!v || !v->seen_private)
		return;
	struct store_seen seen = { 0 };
	struct terr err = { 0 };
	const char *set = "";
	if (store_seen_get(s->st, s->user, v->uniqueid, &seen, &err) == 0)
		set = seen.seenuids ? seen.seenuids : "";
	/* the set's ranges in order, then one walk along the messages
	 * (ascending UIDs): O(messages + ranges) per poll */
	size_t n = 0, cap = 0;
	struct range *r = NULL;
	uint32_t lo, hi;
	for (const char *p = set; next_range(&p, &lo, &hi);) {
		if (n == cap)
			r = xrealloc(r, (cap = cap ? 2 * cap : 16) * sizeof *r);
		r[n++] = (struct range){ lo, hi };
	}
	if (n > 1)
		qsort(r, n, sizeof *r, cmp_range);
	size_t k = 0;
	uint32_t reach = 0;	/* highest UID covered by the ranges passed so far */
	for (size_t i = 0; i < v->n; i++) {
		struct imapd_msg *m = &v->msgs[i];
		while (k < n && r[k].lo <= m->uid) {
			if (r[k].hi > reach)
				reach = r[k].hi;
			k++;
		}
		unsigned want = k && m->uid <= reach ? SYSFLAG_SEEN : 0;
		if ((m->sysflags & SYSFLAG_SEEN) == want)
			continue;
		m->sysflags = (m->sysflags & ~(unsigned)SYSFLAG_SEEN) | want;
		if (!initial && !m->gone)
			m->dirty = 1;
	}
	free(r);
	free(seen.seenuids);
}

int imapd_seen_change(struct imapd_session *s, const size_t *idx, size_t n, int on, struct terr *err)
{
	struct imapd_view *v = s->sel;
	if (!n)
		return 0;
	imapd_seen_overlay(s, 0);
	for (size_t i = 0; i < n; i++) {
		struct imapd_msg *m = &v->msgs[idx[i]];
		if (m->gone)
			continue;
		unsigned want = on ? SYSFLAG_SEEN : 0;
		if ((m->sysflags & SYSFLAG_SEEN) != want) {
			m->sysflags = (m->sysflags & ~(unsigned)SYSFLAG_SEEN) | want;
			m->dirty = 1;
		}
	}
	uint32_t *uids = xmalloc((v->n ? v->n : 1) * sizeof *uids);
	size_t k = 0;
	for (size_t i = 0; i < v->n; i++)
		if (!v->msgs[i].gone && (v->msgs[i].sysflags & SYSFLAG_SEEN))
			uids[k++] = v->msgs[i].uid;
	struct buf set = BUF_INIT;
	imap_write_seqset(&set, uids, k);
	free(uids);
	time_t now = time(NULL);
	struct store_seen seen = { now, v->last_uid, now, (char *)buf_cstr(&set) };
	int rc = store_seen_set(s->st, s->user, v->uniqueid, &seen, err);
	buf_free(&set);
	return rc;
}
