/* cmd_store.c: STORE and UID STORE (RFC 3501 6.4.6) with CONDSTORE's
 * UNCHANGEDSINCE and [MODIFIED set] (RFC 7162 3.1.3).
 *
 * The store changes the flags; the answer (FETCH FLAGS, with MODSEQ under
 * CONDSTORE) is sent by the dispatcher's poll/announce, which finds the
 * changed messages dirty. Every message of the set that was not refused
 * by UNCHANGEDSINCE is marked dirty so the client hears its flags even
 * when they did not change. For .SILENT the dirty bits are cleared again
 * after polling here (under CONDSTORE a FETCH with just the MODSEQ still
 * goes out for the changed messages, RFC 7162 3.1.3).
 *
 * Rights (RFC 4314 4): \Seen needs s, \Deleted needs t, anything else w;
 * flags the user may not change are left alone silently.
 */
#include "imapd/imapd-private.h"

#include "lib/xalloc.h"
#include "proto/imap/imap_write.h"
#include "store/store.h"

#include <stdlib.h>
#include <string.h>

#define ALL_SYSFLAGS (SYSFLAG_SEEN | SYSFLAG_DELETED | SYSFLAG_ANSWERED | SYSFLAG_FLAGGED | SYSFLAG_DRAFT)

/* System flags the rights allow to change. */
static unsigned allowed_sysflags(unsigned rights)
{
	unsigned m = 0;
	if (rights & IMAPD_R_SEEN)
		m |= SYSFLAG_SEEN;
	if (rights & IMAPD_R_DELETE_MSG)
		m |= SYSFLAG_DELETED;
	if (rights & IMAPD_R_WRITE)
		m |= SYSFLAG_ANSWERED | SYSFLAG_FLAGGED | SYSFLAG_DRAFT;
	return m;
}

/* Joins the flag list and parses it; -1 with a BAD set. */
static int parse_flags(struct imapd_session *s, const struct imap_strlist *fl, unsigned *sys_r, struct buf *kw_r)
{
	struct buf list = BUF_INIT;
	struct terr err = { 0 };
	for (size_t i = 0; i < fl->count; i++) {
		if (i)
			buf_putc(&list, ' ');
		buf_appends(&list, fl->v[i]);
	}
	int rc = store_flags_parse(buf_cstr(&list), sys_r, kw_r, &err);
	buf_free(&list);
	if (rc < 0)
		imapd_bad(s, NULL, "Invalid flag in list");
	return rc;
}

struct store_req {
	const char *mbox;
	enum store_flag_op op;
	unsigned sysflags;
	const char *keywords;	/* NULL: keywords untouched */
	uint64_t unchangedsince;
	struct buf failed;	/* "uid,uid" refused by UNCHANGEDSINCE */
};

static int call_store(struct imapd_session *s, struct store_req *rq, const uint32_t *uids, size_t n,
		      enum store_flag_op op, unsigned sysflags, const char *keywords)
{
	struct terr err = { 0 };
	if (!n)
		return 0;
	if (store_set_flags(s->st, rq->mbox, uids, n, op, sysflags, keywords, rq->unchangedsince, &rq->failed,
			    &err) < 0) {
		imapd_no_err(s, "store", &err);
		return -1;
	}
	return 0;
}

/* FLAGS (...) with some flags forbidden: messages are grouped by the
 * forbidden system flags they have now, which each group keeps. Without
 * w the keywords cannot be replaced, so only the system flags are set
 * with ADD and REMOVE. */
static int store_set_partial(struct imapd_session *s, struct store_req *rq, const uint32_t *uids,
			     const size_t *idx, size_t n, unsigned allowed)
{
	struct imapd_view *v = s->sel;
	unsigned want = rq->sysflags & allowed;
	if (!(v->rights & IMAPD_R_WRITE)) {
		if (call_store(s, rq, uids, n, STORE_FLAGS_ADD, want, NULL) < 0)
			return -1;
		return call_store(s, rq, uids, n, STORE_FLAGS_REMOVE, allowed & ~want, NULL);
	}
	unsigned forbidden = (SYSFLAG_SEEN | SYSFLAG_DELETED) & ~allowed;
	uint32_t *group = xmalloc(n * sizeof *group);
	int rc = 0;
	/* every subset of the (at most two) forbidden flags */
	for (unsigned keep = 0; keep <= forbidden && rc == 0; keep++) {
		if (keep & ~forbidden)
			continue;
		size_t g = 0;
		for (size_t i = 0; i < n; i++)
			if ((v->msgs[idx[i]].sysflags & forbidden) == keep)
				group[g++] = uids[i];
		rc = call_store(s, rq, group, g, STORE_FLAGS_SET, want | keep, rq->keywords);
	}
	free(group);
	return rc;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

/* "1,5,3" to a sorted array; returns the count. */
static size_t parse_uid_list(const char *s, uint32_t **out)
{
	size_t n = 0, cap = 0;
	uint32_t *v = NULL;
	while (s && *s) {
		char *end;
		unsigned long u = strtoul(s, &end, 10);
		if (end == s)
			break;
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			v = xrealloc(v, cap * sizeof *v);
		}
		v[n++] = (uint32_t)u;
		s = *end == ',' ? end + 1 : end;
	}
	if (n)
		qsort(v, n, sizeof *v, cmp_u32);
	*out = v;
	return n;
}

/* Marks the messages stored dirty (not the refused ones) and returns the
 * refused ones as the set of the [MODIFIED] code (UIDs or sequence
 * numbers) in code. */
static void mark_results(struct imapd_session *s, const size_t *idx, size_t n, const char *failed, int uid,
			 int silent, struct buf *code)
{
	struct imapd_view *v = s->sel;
	uint32_t *fu;
	size_t nf = parse_uid_list(failed, &fu);
	uint32_t *nums = xmalloc((nf ? nf : 1) * sizeof *nums);
	size_t nn = 0;
	for (size_t i = 0; i < n; i++) {
		struct imapd_msg *m = &v->msgs[idx[i]];
		int refused = nf && bsearch(&m->uid, fu, nf, sizeof *fu, cmp_u32);
		if (refused)
			nums[nn++] = uid ? m->uid : (uint32_t)(idx[i] + 1);
		else if (!m->gone && !silent)
			m->dirty = 1;
	}
	if (nn) {
		buf_appends(code, "MODIFIED ");
		imap_write_seqset(code, nums, nn);
	}
	free(nums);
	free(fu);
}

/* .SILENT: the changed messages get no FETCH FLAGS; under CONDSTORE they
 * get FETCH (MODSEQ) so the client's cache stays right. */
static void silence(struct imapd_session *s, const size_t *idx, size_t n, int uid)
{
	struct imapd_view *v = s->sel;
	for (size_t i = 0; i < n; i++) {
		struct imapd_msg *m = &v->msgs[idx[i]];
		if (!m->dirty || m->gone)
			continue;
		m->dirty = 0;
		if (!s->condstore || idx[i] >= v->announced)
			continue;
		imapd_printf(s, "* %zu FETCH (", idx[i] + 1);
		if (uid || s->qresync)	/* RFC 7162 3.2.4 */
			imapd_printf(s, "UID %u ", m->uid);
		imapd_printf(s, "MODSEQ (%llu))\r\n", (unsigned long long)m->modseq);
	}
}

int imapd_cmd_store(struct imapd_session *s, const struct imap_cmd *cmd)
{
	const struct imap_store *st = &cmd->u.store;
	struct imapd_view *v = s->sel;
	if (v->readonly) {
		imapd_no(s, "READ-ONLY", "Mailbox is read-only");
		return 0;
	}
	unsigned sys = 0;
	struct buf kw = BUF_INIT, code = BUF_INIT;
	if (parse_flags(s, &st->flags, &sys, &kw) < 0)
		goto out;
	if (st->has_unchangedsince)
		imapd_condstore_enable(s);	/* a CONDSTORE enabling command (RFC 7162 3.1) */
	/* start from the store's current flags: the grouping below and the
	 * answers rely on them */
	if (imapd_view_poll(s) < 0)
		goto out;	/* the dispatcher's own poll says BYE */
	if (!cmd->uid && !imapd_view_seq_valid(v, &st->set)) {
		imapd_bad(s, NULL, "Invalid message sequence number");
		goto out;
	}
	size_t *idx;
	size_t n = imapd_view_resolve(v, &st->set, cmd->uid, &idx);
	/* the live messages of the set to change: their indexes and UIDs.
	 * UNCHANGEDSINCE refuses a message whose modseq is above it even
	 * when the STORE would not change it (RFC 7162 3.1.3); the store
	 * checks again inside its transaction. */
	struct buf failed = BUF_INIT;
	uint64_t since = st->has_unchangedsince ? st->unchangedsince : 0;
	size_t *live = xmalloc((n ? n : 1) * sizeof *live);
	uint32_t *uids = xmalloc((n ? n : 1) * sizeof *uids);
	size_t nu = 0;
	for (size_t i = 0; i < n; i++) {
		const struct imapd_msg *m = &v->msgs[idx[i]];
		if (m->gone)
			continue;
		if (st->has_unchangedsince && m->modseq > since) {
			buf_printf(&failed, "%s%u", failed.len ? "," : "", m->uid);
			continue;
		}
		live[nu] = idx[i];
		uids[nu++] = m->uid;
	}
	unsigned allowed = allowed_sysflags(v->rights);
	struct store_req rq = { v->name, STORE_FLAGS_SET, sys, kw.ptr, since, failed };
	if (st->op == IMAP_STORE_ADD)
		rq.op = STORE_FLAGS_ADD;
	else if (st->op == IMAP_STORE_REMOVE)
		rq.op = STORE_FLAGS_REMOVE;
	int rc = 0;
	if (v->seen_private && (allowed & SYSFLAG_SEEN)) {
		/* this user's \Seen is their seen state (seen.c); the records'
		 * \Seen is the owner's and stays as it is */
		int touch = rq.op == STORE_FLAGS_SET || (sys & SYSFLAG_SEEN);
		int on = rq.op != STORE_FLAGS_REMOVE && (sys & SYSFLAG_SEEN);
		struct terr err = { 0 };
		if (touch && imapd_seen_change(s, live, nu, on, &err) < 0) {
			imapd_no_err(s, "store_seen", &err);
			rc = -1;
		}
		allowed &= ~(unsigned)SYSFLAG_SEEN;
		sys &= ~(unsigned)SYSFLAG_SEEN;
		rq.sysflags = sys;
		if (rq.op != STORE_FLAGS_SET && !sys && !kw.len)
			nu = 0;	/* nothing left for the records */
	}
	if (rc < 0 || nu == 0) {
		/* nothing to change */
	} else if (rq.op == STORE_FLAGS_SET && allowed != ALL_SYSFLAGS) {
		rc = store_set_partial(s, &rq, uids, live, nu, allowed);
	} else {
		const char *k = (v->rights & IMAPD_R_WRITE) ? rq.keywords : NULL;
		rc = call_store(s, &rq, uids, nu, rq.op, sys & allowed, k);
	}
	if (rc == 0) {
		if (imapd_view_poll(s) == 0) {
			mark_results(s, idx, n, buf_cstr(&rq.failed), cmd->uid, st->silent, &code);
			if (st->silent)
				silence(s, idx, n, cmd->uid);
		}
		if (code.len)
			imapd_ok(s, code.ptr, "Conditional STORE failed for some messages");
		imapd_log_event(s, "store", v->name, "count=%zu refused=%s", nu, code.len ? "yes" : "no");
	}
	buf_free(&rq.failed);
	free(uids);
	free(live);
	free(idx);
out:
	buf_free(&kw);
	buf_free(&code);
	return 0;
}
