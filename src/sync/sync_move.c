/* sync_move.c: syncc_move_user (sync_move.h): copy live, lock, final
 * pass, compare, remove; unlock on any failure. */
#include "sync/sync_move.h"
#include "sync/sync_client.h"
#include "sync/sync_client-private.h"

#include "chlog/chlog.h"
#include "lib/log.h"
#include "lib/xalloc.h"
#include "names/mboxname.h"
#include "store/store.h"
#include "store/store_move.h"

#include <string.h>
#include <strings.h>
#include <time.h>

struct move {
	struct syncc *sc;
	const struct syncc_move_opts *mo;
	struct syncc_move_progress p;
	struct timespec t0;
	unsigned long msg_base;
	unsigned long long byte_base;
};

static double since_s(const struct timespec *t0)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - t0->tv_sec) + (double)(now.tv_nsec - t0->tv_nsec) / 1e9;
}

static void report(struct move *mv, const char *phase)
{
	struct syncc_stats s;
	syncc_get_stats(mv->sc, &s);
	mv->p.phase = phase;
	mv->p.elapsed_s = since_s(&mv->t0);
	unsigned long m = s.messages - mv->msg_base;
	unsigned long long b = s.bytes_sent - mv->byte_base;
	mv->p.messages_done = m < mv->p.messages_total ? m : mv->p.messages_total;
	mv->p.bytes_done = b < mv->p.bytes_total ? b : mv->p.bytes_total;
	mv->p.eta_s = -1;
	if (mv->p.bytes_done && mv->p.bytes_total)
		mv->p.eta_s = mv->p.elapsed_s * (double)(mv->p.bytes_total - mv->p.bytes_done) / (double)mv->p.bytes_done;
	else if (!mv->p.bytes_total)
		mv->p.eta_s = 0;
	if (mv->mo->progress)
		mv->mo->progress(mv->mo->rock, &mv->p);
}

static int stopped(const struct move *mv, struct terr *err)
{
	if (mv->mo->stop && *mv->mo->stop)
		return terr_set(err, TE_CHANGED, "interrupted");
	return 0;
}

/* A failure the client isolated (the pass went on) fails the move too. */
static int pass_result(struct syncc *sc, int rc, struct terr *err)
{
	if (rc == 0 && sc->nfailed)
		return terr_set(err, TE_PERM, "mailbox %s failed: %s", sc->failed[0].name, sc->failed[0].error);
	return rc;
}

/* The user's mailboxes here: names (for the copy) and uniqueids (for
 * target_is_ours). */
struct totals {
	struct names names, uniqueids;
};

static int count_record(const struct store_record *r, void *rock)
{
	struct move *mv = rock;
	mv->p.messages_total++;
	mv->p.bytes_total += r->size;
	return 0;
}

static int total_mailbox(const struct store_mailbox_info *mi, void *rock)
{
	struct totals *t = rock;
	syncc_names_add(&t->names, mi->name);
	syncc_names_add(&t->uniqueids, mi->uniqueid);
	return 0;
}

/* The target's mailboxes of the user must be copies of ours (a run that
 * failed earlier): same uniqueid as one here, or one deleted here. */
static int target_is_ours(struct move *mv, const struct totals *t, struct terr *err)
{
	struct syncc *sc = mv->sc;
	struct remotes rs = { NULL, 0 };
	struct dlist *get = dlist_new(DL_STR, "USER");
	buf_appends(&get->s, mv->mo->user);
	syncc_cmd_dlist(sc, "GET", get);
	dlist_free(&get);
	int rc = syncc_roundtrip(sc, syncc_collect_remote, &rs, err);
	for (size_t i = 0; rc == 0 && i < rs.n; i++) {
		const char *uid = NULL;
		dlist_get_str(rs.r[i].kv, "UNIQUEID", &uid);
		int known = 0;
		for (size_t k = 0; uid && k < t->uniqueids.n; k++)
			known |= !strcmp(t->uniqueids.v[k], uid);
		struct terr e2 = { 0 };
		if (!known && uid && store_mailbox_was_deleted(sc->st, rs.r[i].name, uid, &e2) == 1)
			known = 1;
		if (!known)
			rc = terr_set(err, TE_EXISTS,
				      "the target already holds %s (uniqueid %s) that is no copy of this store's:"
				      " the user exists there; nothing was sent", rs.r[i].name, uid ? uid : "-");
	}
	syncc_remotes_free(&rs);
	return rc;
}

/* The quota of the user's INBOX root, if it has one (a whole-user pass
 * does not carry quotas: the change log's QUOTA lines do). */
static int send_quota(struct move *mv, struct terr *err)
{
	struct buf root = BUF_INIT, line = BUF_INIT;
	struct store_quota q;
	struct terr e2 = { 0 };
	int rc = mboxname_user_inbox(mv->mo->user, &root, err);
	if (rc == 0 && store_quota_get(mv->sc->st, root.ptr, &q, &e2) == 0) {
		store_quota_free(&q);
		struct chlog_entry e;
		memset(&e, 0, sizeof e);
		buf_printf(&line, "QUOTA %s", root.ptr);
		rc = chlog_parse_line(line.ptr, line.len, &e, err);
		if (rc == 0)
			rc = syncc_entries(mv->sc, &e, 1, err);
		chlog_entry_free(&e);
	} else if (rc == 0 && e2.code != TE_NOTFOUND) {
		*err = e2;
		rc = -1;
	}
	buf_free(&root);
	buf_free(&line);
	return rc;
}

static int live_copy(struct move *mv, const struct totals *t, struct terr *err)
{
	struct syncc *sc = mv->sc;
	const char *user = mv->mo->user;
	/* mailbox by mailbox, for the progress */
	for (size_t i = 0; i < t->names.n; i++) {
		if (stopped(mv, err) < 0)
			return -1;
		char *one = t->names.v[i];
		if (pass_result(sc, syncc_sync_batch(sc, &one, 1, 0, err), err) < 0)
			return -1;
		mv->p.mailboxes_done = i + 1;
		report(mv, "copy");
	}
	if (send_quota(mv, err) < 0)
		return -1;
	int max = mv->mo->max_passes > 0 ? mv->mo->max_passes : SYNCC_MOVE_MAX_PASSES;
	unsigned long settled = mv->mo->settled ? mv->mo->settled : SYNCC_MOVE_SETTLED;
	for (int pass = 1; pass <= max; pass++) {
		if (stopped(mv, err) < 0)
			return -1;
		struct syncc_stats before, after;
		syncc_get_stats(sc, &before);
		if (pass_result(sc, syncc_users(sc, &user, 1, err), err) < 0)
			return -1;
		syncc_get_stats(sc, &after);
		unsigned long sent = after.messages - before.messages;
		mv->p.pass = pass;
		log_info("event=move_user_pass user=%s target=%s pass=%d messages=%lu bytes=%lu", user, mv->mo->target,
			 pass, sent, after.bytes_sent - before.bytes_sent);
		report(mv, "catch-up");
		if (sent <= settled)
			break;
	}
	return 0;
}

/* Bodies the target was seen to hold right (mailbox, UID, GUID), checked
 * before the lock so that the check under the lock fetches only the new
 * ones: an open-addressing set of "mailbox\1uid\1guid" strings. */
struct bodyset {
	char **slot;
	size_t cap, n;
	struct buf key;
};

static uint64_t fnv1a(const char *s)
{
	uint64_t h = 1469598103934665603ULL;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h;
}

static const char *body_key(struct bodyset *bs, const char *mailbox, uint32_t uid, const char *guid)
{
	buf_reset(&bs->key);
	buf_printf(&bs->key, "%s\x01%u\x01%s", mailbox, uid, guid);
	return bs->key.ptr;
}

static char **body_slot(struct bodyset *bs, const char *k)
{
	size_t i = (size_t)fnv1a(k) & (bs->cap - 1);
	while (bs->slot[i] && strcmp(bs->slot[i], k))
		i = (i + 1) & (bs->cap - 1);
	return &bs->slot[i];
}

static int body_known(void *rock, const char *mailbox, uint32_t uid, const char *guid)
{
	struct bodyset *bs = rock;
	return bs->cap && *body_slot(bs, body_key(bs, mailbox, uid, guid)) != NULL;
}

static void body_checked(void *rock, const char *mailbox, uint32_t uid, const char *guid)
{
	struct bodyset *bs = rock;
	if (2 * (bs->n + 1) > bs->cap) {
		struct bodyset big = { xcalloc(bs->cap ? 2 * bs->cap : 1024, sizeof (char *)), bs->cap ? 2 * bs->cap : 1024,
				       bs->n, BUF_INIT };
		for (size_t i = 0; i < bs->cap; i++)
			if (bs->slot[i])
				*body_slot(&big, bs->slot[i]) = bs->slot[i];
		free(bs->slot);
		bs->slot = big.slot;
		bs->cap = big.cap;
	}
	char **sl = body_slot(bs, body_key(bs, mailbox, uid, guid));
	if (!*sl) {
		*sl = xstrdup(bs->key.ptr);
		bs->n++;
	}
}

static void bodyset_free(struct bodyset *bs)
{
	for (size_t i = 0; i < bs->cap; i++)
		free(bs->slot[i]);
	free(bs->slot);
	buf_free(&bs->key);
}

/* Before the lock: every body the target holds by now, checked (what
 * differs otherwise is the live user moving on; the check under the lock
 * decides). */
static int verify_bodies(struct move *mv, struct terr *err)
{
	struct buf lines = BUF_INIT;
	int ndiff = 0;
	syncc_compare_bodies(mv->sc, 1);
	int rc = syncc_compare(mv->sc, &mv->mo->user, 1, &lines, &ndiff, err);
	syncc_compare_bodies(mv->sc, 0);
	buf_free(&lines);
	if (rc == 0)
		report(mv, "verify");
	return rc;
}

/* After the lock: the last pass and the check. */
static int final_check(struct move *mv, struct terr *err)
{
	struct syncc *sc = mv->sc;
	const char *user = mv->mo->user;
	if (pass_result(sc, syncc_users(sc, &user, 1, err), err) < 0 || send_quota(mv, err) < 0)
		return -1;
	mv->p.pass++;
	report(mv, "final");
	if (stopped(mv, err) < 0)
		return -1;
	struct buf lines = BUF_INIT;
	int ndiff = 0;
	syncc_compare_bodies(sc, 1);
	int rc = syncc_compare(sc, &user, 1, &lines, &ndiff, err);
	syncc_compare_bodies(sc, 0);
	if (rc == 0 && ndiff)
		rc = terr_set(err, TE_CHECKSUM, "compare found %d difference%s after the final pass", ndiff,
			      ndiff == 1 ? "" : "s");
	if (rc < 0 && mv->mo->report)
		buf_append(mv->mo->report, lines.ptr ? lines.ptr : "", lines.len);
	buf_free(&lines);
	if (rc == 0)
		report(mv, "compare");
	return rc;
}

int syncc_move_user(struct syncc *sc, const struct syncc_move_opts *mo, struct terr *err)
{
	struct move mv = { .sc = sc, .mo = mo };
	clock_gettime(CLOCK_MONOTONIC, &mv.t0);
	struct syncc_stats s0;
	syncc_get_stats(sc, &s0);
	mv.msg_base = s0.messages;
	mv.byte_base = s0.bytes_sent;
	const char *user = mo->user;
	const char *phase = "start";
	int locked = 0;
	struct timespec t_locked = mv.t0;
	struct totals t = { { NULL, 0 }, { NULL, 0 } };
	log_info("event=move_user_start user=%s target=%s channel=%s", user, mo->target, sc->channel);
	int rc = 0;
	int ex = store_user_exists(sc->st, user, err);
	if (ex == 0)
		rc = terr_set(err, TE_NOTFOUND, "user '%s' does not exist here", user);
	else if (ex < 0)
		rc = -1;
	if (rc == 0)
		rc = store_mailbox_list(sc->st, user, total_mailbox, &t, err);
	for (size_t i = 0; rc == 0 && i < t.names.n; i++)
		rc = store_records(sc->st, t.names.v[i], 0, 0, count_record, &mv, err);
	mv.p.mailboxes_total = t.names.n;
	if (rc == 0) {
		phase = "check_target";
		rc = target_is_ours(&mv, &t, err);
	}
	if (rc == 0) {
		phase = "copy";
		syncc_get_stats(sc, &s0);	/* the progress counts what the copy sends */
		mv.msg_base = s0.messages;
		mv.byte_base = s0.bytes_sent;
		report(&mv, "copy");
		rc = live_copy(&mv, &t, err);
	}
	struct bodyset bs = { NULL, 0, 0, BUF_INIT };
	sc->body_known = body_known;
	sc->body_checked = body_checked;
	sc->body_rock = &bs;
	if (rc == 0) {
		phase = "verify";
		rc = verify_bodies(&mv, err);
	}
	if (rc == 0)
		rc = stopped(&mv, err);
	if (rc == 0) {
		phase = "lock";
		rc = store_move_lock(sc->st, user, mo->target, err);
		locked = rc == 0;
	}
	if (rc == 0) {
		clock_gettime(CLOCK_MONOTONIC, &t_locked);
		log_info("event=move_user_locked user=%s target=%s elapsed_s=%.3f", user, mo->target, since_s(&mv.t0));
		report(&mv, "locked");
		phase = "final";
		rc = final_check(&mv, err);
	}
	if (rc == 0)
		rc = stopped(&mv, err);
	double locked_s = 0;
	if (rc == 0) {
		locked_s = since_s(&t_locked);
		phase = "finish";
		rc = store_move_finish(sc->st, user, err);
	}
	if (rc == 0) {
		struct syncc_stats s1;
		syncc_get_stats(sc, &s1);
		log_info("event=move_user_done user=%s target=%s mailboxes=%zu messages=%lu bytes=%llu passes=%d"
			 " elapsed_s=%.3f locked_s=%.3f removal_s=%.3f", user, mo->target, t.names.n,
			 mv.p.messages_total, mv.p.bytes_total, mv.p.pass, since_s(&mv.t0), locked_s,
			 since_s(&t_locked) - locked_s);
		report(&mv, "done");
	} else {
		char q[LOGQ_MAX];
		int unlocked = 0;
		struct terr e2 = { 0 };
		if (locked) {
			unlocked = store_move_unlock(sc->st, user, &e2) == 0;
			if (!unlocked)
				log_err("event=move_user_unlock_fail user=%s error=\"%s\" action=\"tandem user unmove %s\"",
					user, e2.msg, user);
		}
		log_warn("event=move_user_failed user=%s target=%s phase=%s locked=%d unlocked=%d error=%s", user,
			 mo->target, phase, locked, unlocked, logq(q, err->msg));
	}
	sc->body_known = NULL;
	sc->body_checked = NULL;
	sc->body_rock = NULL;
	bodyset_free(&bs);
	syncc_names_free(&t.names);
	syncc_names_free(&t.uniqueids);
	return rc;
}
