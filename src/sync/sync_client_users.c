/* sync_client_users.c: whole users: names and work lists, subscriptions,
 * users pipelined (the next user's GET USER and mailboxes go out while
 * the replica applies the previous user's), and the entry points
 * syncc_users, syncc_mailboxes and syncc_all. */
#include "sync/sync_client.h"
#include "sync/sync_client-private.h"

#include "lib/log.h"
#include "lib/xalloc.h"
#include "names/mboxname.h"
#include "store/store.h"
#include "sync/sync.h"

#include <string.h>
#include <strings.h>

void syncc_names_add(struct names *ns, const char *s)
{
	for (size_t i = 0; i < ns->n; i++)
		if (!strcmp(ns->v[i], s))
			return;
	ns->v = xrealloc(ns->v, (ns->n + 1) * sizeof *ns->v);
	ns->v[ns->n++] = xstrdup(s);
}

void syncc_names_free(struct names *ns)
{
	for (size_t i = 0; i < ns->n; i++)
		free(ns->v[i]);
	free(ns->v);
	ns->v = NULL;
	ns->n = 0;
}

int syncc_list_cb(const struct store_mailbox_info *mi, void *rock)
{
	syncc_names_add(rock, mi->name);
	return 0;
}

void syncc_collect_names(void *rock, struct dlist *kv)
{
	const char *name;
	if (!strcasecmp(kv->key, "MAILBOX") && dlist_get_str(kv, "MBOXNAME", &name) == 0)
		syncc_names_add(rock, name);
}

int syncc_subs_cb(const char *name, void *rock)
{
	syncc_names_add(rock, name);
	return 0;
}

static void collect_lsub(void *rock, struct dlist *kv)
{
	if (strcasecmp(kv->key, "LSUB") || kv->type != DL_LIST)
		return;
	for (size_t i = 0; i < kv->n; i++)
		if (dlist_cstr(kv->items[i]))
			syncc_names_add(rock, dlist_cstr(kv->items[i]));
}

int syncc_send_unuser(struct syncc *sc, const char *user, struct terr *err)
{
	syncc_rcache_clear(sc);
	struct dlist *un = dlist_new(DL_STR, "UNUSER");
	buf_appends(&un->s, user);
	syncc_cmd_dlist(sc, "APPLY", un);
	dlist_free(&un);
	return syncc_roundtrip(sc, NULL, NULL, err);
}

int syncc_send_sub(struct syncc *sc, const char *user, const char *mbox, int on, struct terr *err)
{
	struct dlist *kv = dlist_new(DL_KVLIST, on ? "SUB" : "UNSUB");
	dlist_add_str(kv, "USERID", user);
	dlist_add_str(kv, "MBOXNAME", mbox);
	syncc_cmd_dlist(sc, "APPLY", kv);
	dlist_free(&kv);
	return syncc_roundtrip(sc, NULL, NULL, err);
}

/* A whole user: every mailbox (and the replica's extra ones removed),
 * subscriptions; a user gone locally is removed (APPLY UNUSER). */
static int sync_user(struct syncc *sc, const char *user, struct terr *err)
{
	int ex = store_user_exists(sc->st, user, err);
	if (ex < 0)
		return -1;
	if (!ex)
		return syncc_send_unuser(sc, user, err);
	struct names all = { NULL, 0 }, rsubs = { NULL, 0 }, lsubs = { NULL, 0 };
	struct dlist *get = dlist_new(DL_STR, "USER");
	buf_appends(&get->s, user);
	syncc_cmd_dlist(sc, "GET", get);
	dlist_free(&get);
	struct terr e2 = { 0 };
	int rc = syncc_roundtrip(sc, syncc_collect_names, &all, err);
	if (rc == 0)
		rc = store_mailbox_list(sc->st, user, syncc_list_cb, &all, err);
	if (rc == 0)
		rc = syncc_sync_batch(sc, all.v, all.n, 0, err);
	/* subscriptions: the replica's LSUB against ours */
	if (rc == 0) {
		get = dlist_new(DL_STR, "META");
		buf_appends(&get->s, user);
		syncc_cmd_dlist(sc, "GET", get);
		dlist_free(&get);
		if (syncc_roundtrip(sc, collect_lsub, &rsubs, &e2) == 0 &&
		    store_subs_list(sc->st, user, syncc_subs_cb, &lsubs, &e2) == 0) {
			for (size_t i = 0; rc == 0 && i < lsubs.n; i++) {
				int there = 0;
				for (size_t k = 0; k < rsubs.n; k++)
					there |= !strcmp(rsubs.v[k], lsubs.v[i]);
				if (!there)
					rc = syncc_send_sub(sc, user, lsubs.v[i], 1, err);
			}
			for (size_t i = 0; rc == 0 && i < rsubs.n; i++) {
				int here = 0;
				for (size_t k = 0; k < lsubs.n; k++)
					here |= !strcmp(rsubs.v[i], lsubs.v[k]);
				if (!here)
					rc = syncc_send_sub(sc, user, rsubs.v[i], 0, err);
			}
		}
	}
	syncc_names_free(&all);
	syncc_names_free(&rsubs);
	syncc_names_free(&lsubs);
	return rc;
}

/* The replica's view of one user (its GET USER): the state of each of
 * its mailboxes (as GET MAILBOXES gives it) and its subscriptions. */
struct uview {
	struct remotes rs;
	struct names lsub;
	int got_lsub;
	int done;		/* answered */
	int sent;
	struct terr err;	/* of the GET */
	struct terr uerr;	/* the user's first failure */
};

static void collect_user(void *rock, struct dlist *kv)
{
	struct uview *uv = rock;
	if (!strcasecmp(kv->key, "MAILBOX")) {
		syncc_collect_remote(&uv->rs, kv);
	} else if (!strcasecmp(kv->key, "LSUB")) {
		uv->got_lsub = 1;
		collect_lsub(&uv->lsub, kv);
	}
}

static int send_get_user(struct stream *s, const char *user, struct uview *uv, struct terr *err)
{
	struct dlist *get = dlist_new(DL_STR, "USER");
	buf_appends(&get->s, user);
	syncc_cmd_dlist(s->sc, "GET", get);
	dlist_free(&get);
	struct spend pe = { SP_OTHER, 0, 0, collect_user, uv, &uv->err, &uv->done };
	uv->sent = 1;
	return syncc_stream_send_pe(s, &pe, err);
}

/* Subscriptions: ours against the replica's LSUB (APPLY SUB / UNSUB go
 * in the stream; a failure lands in *uerr). */
static int stream_subs(struct stream *s, const char *user, struct uview *uv, struct terr *uerr, struct terr *err)
{
	struct syncc *sc = s->sc;
	struct names lsubs = { NULL, 0 };
	struct terr e2 = { 0 };
	if (store_subs_list(sc->st, user, syncc_subs_cb, &lsubs, &e2) < 0) {
		syncc_names_free(&lsubs);
		return 0;
	}
	int rc = 0;
	if (!uv->got_lsub && !uv->rs.n && lsubs.n) {
		/* a Cyrus replica leaves LSUB out of GET USER when the user has
		 * no mailbox there: ask for it (GET META) */
		struct dlist *get = dlist_new(DL_STR, "META");
		buf_appends(&get->s, user);
		syncc_cmd_dlist(sc, "GET", get);
		dlist_free(&get);
		int done = 0;
		struct spend pe = { SP_OTHER, 0, 0, collect_lsub, &uv->lsub, uerr, &done };
		rc = syncc_stream_send_pe(s, &pe, err);
		while (rc == 0 && !done)
			rc = syncc_stream_recv(s, err);
	}
	for (int on = 1; on >= 0 && rc == 0; on--) {
		const struct names *a = on ? &lsubs : &uv->lsub, *b = on ? &uv->lsub : &lsubs;
		for (size_t i = 0; rc == 0 && i < a->n; i++) {
			int there = 0;
			for (size_t k = 0; k < b->n; k++)
				there |= !strcmp(a->v[i], b->v[k]);
			if (there)
				continue;
			struct dlist *kv = dlist_new(DL_KVLIST, on ? "SUB" : "UNSUB");
			dlist_add_str(kv, "USERID", user);
			dlist_add_str(kv, "MBOXNAME", a->v[i]);
			syncc_cmd_dlist(sc, "APPLY", kv);
			dlist_free(&kv);
			struct spend pe = { SP_OTHER, 0, 0, NULL, NULL, uerr, NULL };
			rc = syncc_stream_send_pe(s, &pe, err);
		}
	}
	syncc_names_free(&lsubs);
	return rc;
}

/* GET USER of the users after k, up to SYNC_CLIENT_USERS_AHEAD of them,
 * that exist here and were not asked yet. */
static int ask_ahead(struct stream *s, const char *const *users, struct uview *uvs, size_t k, size_t n,
		     struct terr *err)
{
	int rc = 0;
	for (size_t j = k + 1; rc == 0 && j < n && j <= k + SYNC_CLIENT_USERS_AHEAD; j++) {
		struct terr e2 = { 0 };
		if (!uvs[j].sent && store_user_exists(s->sc->st, users[j], &e2) > 0)
			rc = send_get_user(s, users[j], &uvs[j], err);
	}
	return rc;
}

/* One user of users_streamed (users[k]), its GET USER answered: the
 * mailboxes the replica has (or has under another name, or only it has)
 * go the general way (syncc_sync_batch, after the stream is drained);
 * those it lacks are streamed. */
static int user_streamed(struct stream *s, const char *const *users, struct uview *uvs, size_t k, size_t n,
			 struct terr *err)
{
	const char *user = users[k];
	struct uview *uv = &uvs[k];
	struct terr *uerr = &uv->uerr;
	struct syncc *sc = s->sc;
	struct names local = { NULL, 0 }, general = { NULL, 0 }, fresh = { NULL, 0 };
	int rc = 0;
	/* The user's database is read in one read transaction (a snapshot)
	 * for the listing and again for the streamed mailboxes, not one per
	 * call (~20 a user: SQLite's locks, 4 fcntl each, and its checks of
	 * the log). Not around the general path, which may write (a split
	 * brain copied back). */
	struct buf inbox = BUF_INIT;
	struct terr e0 = { 0 };
	int reading = mboxname_user_inbox(user, &inbox, &e0) == 0 ? 0 : -1;
	if (reading == 0 && store_cache_read_begin(sc->st, inbox.ptr, &reading, &e0) < 0)
		reading = -1;
	if (store_mailbox_list(sc->st, user, syncc_list_cb, &local, uerr) < 0) {
		if (reading > 0)
			store_cache_read_end(sc->st, inbox.ptr, reading);
		buf_free(&inbox);
		syncc_names_free(&local);
		return 0;
	}
	for (size_t i = 0; i < local.n; i++) {
		struct store_mailbox_info mi;
		struct terr e2 = { 0 };
		int known = syncc_remote_by_name(&uv->rs, local.v[i]) != NULL;
		if (!known && store_mailbox_get(sc->st, local.v[i], &mi, &e2) == 0) {
			known = syncc_remote_by_uniqueid(&uv->rs, mi.uniqueid) != NULL;
			store_mailbox_info_free(&mi);
		}
		syncc_names_add(known ? &general : &fresh, local.v[i]);
	}
	for (size_t i = 0; i < uv->rs.n; i++)
		syncc_names_add(&general, uv->rs.r[i].name);
	if (general.n && reading > 0) {
		store_cache_read_end(sc->st, inbox.ptr, reading);
		reading = 0;
	}
	if (general.n) {
		struct terr e2 = { 0 };
		rc = syncc_stream_drain(s, err);
		if (rc == 0 && syncc_sync_batch(sc, general.v, general.n, 0, &e2) < 0) {
			if (!uerr->code)
				*uerr = e2;
			if (e2.code == TE_IO) {
				*err = e2;
				rc = -1;
			}
		}
	}
	if (rc == 0)
		rc = ask_ahead(s, users, uvs, k, n, err);
	if (reading == 0 && fresh.n && store_cache_read_begin(sc->st, inbox.ptr, &reading, &e0) < 0)
		reading = -1;
	for (size_t i = 0; rc == 0 && i < fresh.n; i++)
		rc = syncc_stream_mailbox(s, syncc_stream_add(s, fresh.v[i]), NULL, err);
	/* a user's parts in Cyrus's order: mailboxes, then subscriptions (a
	 * Cyrus replica files a SUB that comes before the user's INBOX exists
	 * where its IMAP server never reads it) */
	if (rc == 0)
		rc = stream_subs(s, user, uv, uerr, err);
	if (reading > 0)
		store_cache_read_end(sc->st, inbox.ptr, reading);
	buf_free(&inbox);
	if (rc == 0)
		rc = syncc_stream_restart(s, err);
	syncc_names_free(&local);
	syncc_names_free(&general);
	syncc_names_free(&fresh);
	return rc;
}

/* Whole users in one stream. The replica applies user k's last part
 * while the client reads and sends user k+1's first bodies: GET USER of
 * the next SYNC_CLIENT_USERS_AHEAD users goes out before user k's
 * mailboxes, and their answers (the replica's mailbox states, so no GET
 * MAILBOXES nor GET META) come back ahead of theirs (the replica answers
 * them inside its batch: one batch holds several users). Streamed mailboxes the replica refused are retried the
 * general way at the end. */
static int users_streamed(struct syncc *sc, const char *const *users, size_t n, struct terr *err)
{
	struct stream s;
	syncc_stream_init(&s, sc, NULL, 0);
	struct uview *uvs = xcalloc(n ? n : 1, sizeof *uvs);
	int rc = 0, failed = 0;
	for (size_t k = 0; k < n && rc == 0; k++) {
		struct terr *uerr = &uvs[k].uerr;
		int ex = store_user_exists(sc->st, users[k], uerr);
		if (ex > 0 && !uvs[k].sent)
			rc = send_get_user(&s, users[k], &uvs[k], err);
		while (rc == 0 && uvs[k].sent && !uvs[k].done)
			rc = syncc_stream_recv(&s, err);
		if (rc < 0)
			break;
		if (ex == 0) {	/* gone here: APPLY UNUSER */
			rc = syncc_stream_drain(&s, err);
			if (rc == 0 && sync_user(sc, users[k], uerr) < 0 && uerr->code == TE_IO) {
				*err = *uerr;
				rc = -1;
			}
		} else if (ex > 0 && !uvs[k].err.code) {
			rc = user_streamed(&s, users, uvs, k, n, err);
		} else if (ex > 0) {
			*uerr = uvs[k].err;
		}
	}
	if (rc == 0)
		rc = syncc_stream_finish(&s, err);
	for (size_t k = 0; k < n; k++)
		if (uvs[k].uerr.code) {
			log_warn("event=sync_user_fail channel=%s user=%s error=\"%s\"", sc->channel, users[k],
				 uvs[k].uerr.msg);
			if (rc == 0)
				*err = uvs[k].uerr;
			failed = 1;
		}
	struct names retry = { NULL, 0 };
	char q[LOGQ_MAX];
	for (size_t i = 0; rc == 0 && i < s.nit; i++) {
		if (s.it[i].state == 1) {
			syncc_note_synced(sc, s.it[i].name);
			continue;
		}
		log_notice("event=sync_stream_retry channel=%s mailbox=%s reason=\"%s\"", sc->channel,
			   logq(q, s.it[i].name), s.it[i].err ? s.it[i].err->msg : "");
		syncc_names_add(&retry, s.it[i].name);
	}
	if (rc == 0 && retry.n) {
		struct terr e2 = { 0 };
		if (syncc_sync_batch_x(sc, retry.v, retry.n, 0, 1, &e2) < 0) {
			*err = e2;
			failed = 1;
			rc = e2.code == TE_IO ? -1 : 0;
		}
	}
	syncc_names_free(&retry);
	for (size_t k = 0; k < n; k++) {
		syncc_remotes_free(&uvs[k].rs);
		syncc_names_free(&uvs[k].lsub);
	}
	free(uvs);
	syncc_stream_free(&s);
	return rc < 0 || failed ? -1 : 0;
}

int syncc_users(struct syncc *sc, const char *const *users, size_t n, struct terr *err)
{
	if (!sc->repair && !sc->careful) {
		/* each user once: a second pass would stream again what the
		 * replica was just asked about */
		struct names uniq = { NULL, 0 };
		for (size_t i = 0; i < n; i++)
			syncc_names_add(&uniq, users[i]);
		int rc = users_streamed(sc, (const char *const *)uniq.v, uniq.n, err);
		syncc_names_free(&uniq);
		return rc;
	}
	int failed = 0;
	for (size_t i = 0; i < n; i++) {
		struct terr e2 = { 0 };
		if (sync_user(sc, users[i], &e2) < 0) {
			log_warn("event=sync_user_fail channel=%s user=%s error=\"%s\"", sc->channel, users[i], e2.msg);
			*err = e2;
			failed = 1;
			if (e2.code == TE_IO)
				return -1;
		}
	}
	return failed ? -1 : 0;
}

int syncc_mailboxes(struct syncc *sc, const char *const *names, size_t n, struct terr *err)
{
	return syncc_sync_batch(sc, (char **)names, n, 0, err);
}

int syncc_all_users_cb(const char *userid, void *rock)
{
	syncc_names_add(rock, userid);
	return 0;
}

int syncc_all(struct syncc *sc, struct terr *err)
{
	struct names users = { NULL, 0 }, shared = { NULL, 0 };
	int rc = store_user_list(sc->st, syncc_all_users_cb, &users, err);
	if (rc == 0)
		rc = syncc_users(sc, (const char *const *)users.v, users.n, err);
	if (rc == 0 && store_mailbox_list(sc->st, "", syncc_list_cb, &shared, err) == 0)
		rc = syncc_sync_batch(sc, shared.v, shared.n, 0, err);
	syncc_names_free(&users);
	syncc_names_free(&shared);
	return rc;
}
