/* sync_client_log.c: a change log reduced to work and run (reference
 * §7.6): which users, mailboxes, subscriptions, seen states and quotas it
 * names, and the order they go in (a deleted user first, then mailboxes
 * in batches, quotas, seen, subscriptions, deleted mailboxes, users). The
 * rolling schedule around it is src/syncc/syncc_rolling.c. */
#include "sync/sync_client.h"
#include "sync/sync_client-private.h"

#include "chlog/chlog.h"
#include "lib/log.h"
#include "names/mboxname.h"
#include "store/store.h"

#include <stdio.h>
#include <string.h>

/* A user the log says was deleted. Gone here: APPLY UNUSER. Made again
 * since (the same log, or a later one already replicated): when the
 * replica's INBOX is another incarnation (another uniqueid), the replica
 * drops that one first (APPLY UNUSER) and the whole user is sent again
 * (added to users); when it is this one, only the whole-user sync. This
 * runs before the log's mailboxes, so a new INBOX never meets the old. */
static int unuser_first(struct syncc *sc, const char *user, struct names *users, struct terr *err)
{
	int ex = store_user_exists(sc->st, user, err);
	if (ex < 0)
		return -1;
	int drop = !ex;
	if (ex) {
		struct buf inbox = BUF_INIT;
		struct store_mailbox_info mi;
		struct terr e2 = { 0 };
		if (mboxname_user_inbox(user, &inbox, &e2) == 0 && store_mailbox_get(sc->st, inbox.ptr, &mi, &e2) == 0) {
			struct remotes rs = { NULL, 0 };
			struct dlist *get = dlist_new(DL_LIST, "MAILBOXES");
			dlist_add_str(get, NULL, inbox.ptr);
			syncc_cmd_dlist(sc, "GET", get);
			dlist_free(&get);
			int rc = syncc_roundtrip(sc, syncc_collect_remote, &rs, err);
			const struct dlist *remote = rc == 0 ? syncc_remote_by_name(&rs, inbox.ptr) : NULL;
			const char *ruid;
			drop = remote && dlist_get_str(remote, "UNIQUEID", &ruid) == 0 && strcmp(ruid, mi.uniqueid) != 0;
			syncc_remotes_free(&rs);
			store_mailbox_info_free(&mi);
			if (rc < 0) {
				buf_free(&inbox);
				return -1;
			}
		}
		buf_free(&inbox);
		syncc_names_add(users, user);
	}
	return drop ? syncc_send_unuser(sc, user, err) : 0;
}

/* Reduces and runs the entries of one log (reference §7.6). */
static int run_entries(struct syncc *sc, const struct chlog_entry *es, size_t n, struct terr *err)
{
	struct names mboxes = { NULL, 0 }, users = { NULL, 0 }, unusers = { NULL, 0 }, unmboxes = { NULL, 0 };
	struct names subs = { NULL, 0 }, seen = { NULL, 0 }, quotas = { NULL, 0 };
	for (size_t i = 0; i < n; i++) {
		const char *k = es[i].keyword, *a1 = buf_cstr(&es[i].arg1), *a2 = buf_cstr(&es[i].arg2);
		if (!strcmp(k, "APPEND") || !strcmp(k, "MAILBOX"))
			syncc_names_add(&mboxes, a1);
		else if (!strcmp(k, "DOUBLEMAILBOX") || !strcmp(k, "RENAME")) {
			syncc_names_add(&mboxes, a1);
			if (es[i].nargs > 1)
				syncc_names_add(&mboxes, a2);
		} else if (!strcmp(k, "UNMAILBOX"))
			syncc_names_add(&unmboxes, a1);
		else if (!strcmp(k, "USER") || !strcmp(k, "META") || !strcmp(k, "SIEVE"))
			syncc_names_add(&users, a1);
		else if (!strcmp(k, "UNUSER"))
			syncc_names_add(&unusers, a1);
		else if ((!strcmp(k, "SUB") || !strcmp(k, "UNSUB")) && es[i].nargs > 1) {
			char pair[2 * MAX_MBOXNAME + 2];
			snprintf(pair, sizeof pair, "%s%c%s", a1, '\x01', a2);
			syncc_names_add(&subs, pair);
		} else if (!strcmp(k, "SEEN") && es[i].nargs > 1) {
			char pair[2 * MAX_MBOXNAME + 2];
			snprintf(pair, sizeof pair, "%s%c%s", a1, '\x01', a2);
			syncc_names_add(&seen, pair);
		} else if (!strcmp(k, "QUOTA"))
			syncc_names_add(&quotas, a1);
		else if (!strcmp(k, "ANNOTATION") && *a1)
			syncc_names_add(&mboxes, a1);
	}
	/* a name also deleted in this log is handled by the UNMAILBOX batch
	 * alone (synced if it exists again, removed there if not) */
	for (size_t i = 0; i < mboxes.n; i++)
		for (size_t k = 0; k < unmboxes.n; k++)
			if (!strcmp(mboxes.v[i], unmboxes.v[k])) {
				free(mboxes.v[i]);
				mboxes.v[i--] = mboxes.v[--mboxes.n];
				break;
			}
	int failed = 0;
	struct terr e2 = { 0 };
	for (size_t i = 0; i < unusers.n && !failed; i++)
		if (unuser_first(sc, unusers.v[i], &users, &e2) < 0) {
			*err = e2;
			failed = 1;
		}
	/* mailboxes that killed the replica's session wait for their retry */
	syncc_skip_quarantined(sc, mboxes.v, &mboxes.n);
	syncc_skip_quarantined(sc, unmboxes.v, &unmboxes.n);
	/* mailboxes, in batches by owner (renames within a user need both names in one batch) */
	if (!failed && mboxes.n && syncc_sync_batch(sc, mboxes.v, mboxes.n, 0, &e2) < 0) {
		*err = e2;
		failed = 1;
	}
	for (size_t i = 0; i < quotas.n && !failed; i++) {
		struct store_quota q;
		if (store_quota_get(sc->st, quotas.v[i], &q, &e2) == 0) {
			struct dlist *kv = dlist_new(DL_KVLIST, "QUOTA");
			dlist_add_str(kv, "ROOT", q.root);
			/* no limit is no key (LIMIT 0 would be a quota of nothing) */
			if (q.storage_limit >= 0) {
				dlist_add_num(kv, "LIMIT", (uint64_t)q.storage_limit);
				dlist_add_num(kv, "STORAGE", (uint64_t)q.storage_limit);
			}
			if (q.message_limit >= 0)
				dlist_add_num(kv, "MESSAGE", (uint64_t)q.message_limit);
			syncc_cmd_dlist(sc, "APPLY", kv);
			dlist_free(&kv);
			store_quota_free(&q);
		} else if (e2.code != TE_NOTFOUND) {
			*err = e2;	/* not "absent": the replica's quota must not be deleted */
			failed = 1;
			break;
		} else {
			struct dlist *kv = dlist_new(DL_STR, "UNQUOTA");
			buf_appends(&kv->s, quotas.v[i]);
			syncc_cmd_dlist(sc, "APPLY", kv);
			dlist_free(&kv);
		}
		if (syncc_roundtrip(sc, NULL, NULL, &e2) < 0) {
			*err = e2;
			failed = 1;
		}
	}
	for (size_t i = 0; i < seen.n && !failed; i++) {
		char *sep = strchr(seen.v[i], '\x01');
		*sep = '\0';
		struct store_seen sv;
		if (store_seen_get(sc->st, seen.v[i], sep + 1, &sv, &e2) == 0) {
			struct dlist *kv = dlist_new(DL_KVLIST, "SEEN");
			dlist_add_str(kv, "USERID", seen.v[i]);
			dlist_add_str(kv, "UNIQUEID", sep + 1);
			dlist_add_num(kv, "LASTREAD", (uint64_t)sv.lastread);
			dlist_add_num(kv, "LASTUID", sv.lastuid);
			dlist_add_num(kv, "LASTCHANGE", (uint64_t)sv.lastchange);
			dlist_add_str(kv, "SEENUIDS", sv.seenuids);
			free(sv.seenuids);
			syncc_cmd_dlist(sc, "APPLY", kv);
			dlist_free(&kv);
			if (syncc_roundtrip(sc, NULL, NULL, &e2) < 0) {
				*err = e2;
				failed = 1;
			}
		} else if (e2.code != TE_NOTFOUND) {
			*err = e2;
			failed = 1;
		}
		*sep = '\x01';
	}
	for (size_t i = 0; i < subs.n && !failed; i++) {
		char *sep = strchr(subs.v[i], '\x01');
		*sep = '\0';
		struct names mine = { NULL, 0 };
		int on = 0, lrc = store_subs_list(sc->st, subs.v[i], syncc_subs_cb, &mine, &e2);
		for (size_t k = 0; lrc == 0 && k < mine.n; k++)
			on |= !strcmp(mine.v[k], sep + 1);
		syncc_names_free(&mine);
		if (lrc < 0 && e2.code != TE_NOTFOUND) {
			*err = e2;	/* not "unsubscribed" */
			failed = 1;
		} else if (lrc < 0) {
			/* no such user here (any more): its UNUSER is in a log */
		} else if (syncc_send_sub(sc, subs.v[i], sep + 1, on, &e2) < 0) {
			*err = e2;
			failed = 1;
		}
		*sep = '\x01';
	}
	if (!failed && unmboxes.n && syncc_sync_batch(sc, unmboxes.v, unmboxes.n, 1, &e2) < 0) {
		*err = e2;
		failed = 1;
	}
	if (!failed && users.n && syncc_users(sc, (const char *const *)users.v, users.n, &e2) < 0) {
		*err = e2;
		failed = 1;
	}
	syncc_names_free(&mboxes);
	syncc_names_free(&users);
	syncc_names_free(&unusers);
	syncc_names_free(&unmboxes);
	syncc_names_free(&subs);
	syncc_names_free(&seen);
	syncc_names_free(&quotas);
	if (!failed && sc->since_restart)
		syncc_simple(sc, "RESTART", &e2);
	return failed ? -1 : 0;
}

int syncc_entries(struct syncc *sc, const struct chlog_entry *es, size_t n, struct terr *err)
{
	return run_entries(sc, es, n, err);
}

/* One-shot modes report isolated mailbox failures as a failure. */
int syncc_oneshot_result(struct syncc *sc, int rc, struct terr *err)
{
	if (rc == 0 && sc->nfailed) {
		terr_set(err, TE_PERM, "%zu mailbox%s failed, first %s: %s", sc->nfailed, sc->nfailed == 1 ? "" : "es",
			 sc->failed[0].name, sc->failed[0].error);
		rc = -1;
	}
	/* what replicated leaves the channel's failed list */
	struct terr e2 = { 0 };
	if (syncc_failed_merge(sc, 0, &e2) < 0)
		log_warn("event=sync_state_fail channel=%s error=\"%s\"", sc->channel, e2.msg);
	return rc;
}

int syncc_logfile(struct syncc *sc, const char *path, struct terr *err)
{
	struct chlog_entry *es = NULL;
	size_t bad = 0;
	int n = chlog_read_file(path, &es, &bad, err);
	if (n < 0)
		return -1;
	int rc = run_entries(sc, es, (size_t)n, err);
	chlog_entries_free(es, (size_t)n);
	return rc;
}
