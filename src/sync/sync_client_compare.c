/* sync_client_compare.c: compare: the master's mailboxes against the
 * replica's (headers, records and, when asked, bodies), reported as
 * text and as items. */
#include "sync/sync_client.h"
#include "sync/sync_client-private.h"

#include "lib/sha1.h"
#include "lib/log.h"
#include "store/store.h"
#include "sync/sync.h"

#include <stdarg.h>
#include <string.h>
#include <strings.h>

/* A difference as a structured item too (for --json). */
static void note_diff(struct syncc *sc, const char *name, const char *kind, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void note_diff(struct syncc *sc, const char *name, const char *kind, const char *fmt, ...)
{
	struct buf d = BUF_INIT;
	va_list ap;
	va_start(ap, fmt);
	buf_vprintf(&d, fmt, ap);
	va_end(ap);
	syncc_items_add(&sc->diffs, name, kind, buf_cstr(&d));
	buf_free(&d);
}


static const char *rec_text(const struct dlist *r, struct buf *b)
{
	buf_reset(b);
	static const char *const keys[] = { "UID", "MODSEQ", "LAST_UPDATED", "INTERNALDATE", "SIZE", "GUID" };
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
		const char *v = dlist_cstr(dlist_get(r, keys[i]));
		buf_printf(b, "%s=%s ", keys[i], v ? v : "-");
	}
	const struct dlist *fl = dlist_get_list(r, "FLAGS");
	buf_appends(b, "FLAGS=(");
	for (size_t i = 0; fl && i < fl->n; i++)
		buf_printf(b, "%s%s", i ? " " : "", dlist_cstr(fl->items[i]) ? dlist_cstr(fl->items[i]) : "?");
	buf_putc(b, ')');
	return b->ptr;
}

static int rec_expunged(const struct dlist *r)
{
	const struct dlist *fl = dlist_get_list(r, "FLAGS");
	for (size_t k = 0; fl && k < fl->n; k++)
		if (dlist_cstr(fl->items[k]) && !strcasecmp(dlist_cstr(fl->items[k]), "\\Expunged"))
			return 1;
	return 0;
}

struct fetch_rock {
	int got;		/* 1 file, -1 NIL */
	char sha[41];
};

static void fetch_cb(void *rock, struct dlist *kv)
{
	struct fetch_rock *fr = rock;
	if (strcasecmp(kv->key, "MESSAGE"))
		return;
	if (kv->type == DL_FILE) {
		fr->got = 1;
		sha1_hex(kv->s.ptr ? kv->s.ptr : "", kv->s.len, fr->sha);
	} else {
		fr->got = -1;
	}
}

/* Fetches every live record's body from the replica and checks its SHA-1. */
static int compare_bodies(struct syncc *sc, const char *name, const struct dlist *remote, struct buf *report,
			  int *ndiff, struct terr *err)
{
	const struct dlist *recs = dlist_get_list(remote, "RECORD");
	const char *uniqueid = dlist_cstr(dlist_get(remote, "UNIQUEID"));
	char q[LOGQ_MAX];
	for (size_t i = 0; recs && i < recs->n; i++) {
		const struct dlist *r = recs->items[i];
		const struct dlist *fl = dlist_get_list(r, "FLAGS");
		int expunged = 0;
		for (size_t k = 0; fl && k < fl->n; k++)
			expunged |= dlist_cstr(fl->items[k]) && !strcasecmp(dlist_cstr(fl->items[k]), "\\Expunged");
		char guid[41];
		uint32_t uid;
		if (expunged || dlist_get_guid(r, "GUID", guid) < 0 || dlist_get_num32(r, "UID", &uid) < 0)
			continue;
		if (sc->body_known && sc->body_known(sc->body_rock, name, uid, guid))
			continue;
		struct dlist *f = dlist_new(DL_KVLIST, "FETCH");
		dlist_add_str(f, "MBOXNAME", name);
		dlist_add_str(f, "PARTITION", "default");
		dlist_add_str(f, "UNIQUEID", uniqueid ? uniqueid : "");
		dlist_add_str(f, "GUID", guid);
		dlist_add_num(f, "UID", uid);
		syncc_cmd_dlist(sc, "GET", f);
		dlist_free(&f);
		struct fetch_rock fr = { 0, "" };
		struct terr e2 = { 0 };
		if (syncc_roundtrip(sc, fetch_cb, &fr, &e2) < 0 && e2.code == TE_IO) {
			*err = e2;
			return -1;
		}
		if (fr.got != 1 || strcmp(fr.sha, guid)) {
			buf_printf(report, "mailbox=%s uid=%u guid=%s difference=replica_body %s\n", logq(q, name), uid, guid,
				   fr.got == 1 ? "sha1_mismatch" : fr.got == -1 ? "damaged" : "missing");
			note_diff(sc, name, "replica_body", "uid=%u guid=%s %s", uid, guid,
				  fr.got == 1 ? "sha1_mismatch" : fr.got == -1 ? "damaged" : "missing");
			(*ndiff)++;
		} else if (sc->body_checked) {
			sc->body_checked(sc->body_rock, name, uid, guid);
		}
	}
	return 0;
}

/* Records are paired by UID. Not differences: a record expunged on both
 * sides, and a record expunged on one side and absent on the other
 * (absent_expunged): a replica never needs the history of a message it
 * never saw live, an APPLY MAILBOX does not write an expunged record below
 * the replica's LAST_UID, and the sync CRCs leave expunged records out
 * (Cyrus's too). So compare, repair (which acts on compare's differences)
 * and the sync itself agree on what "equal" means. */
int syncc_compare_mailbox(struct syncc *sc, const char *name, struct buf *report, int *ndiff, struct terr *err)
{
	struct dlist *local = NULL, *remote = NULL;
	struct terr e2 = { 0 };
	int have_local = sync_mailbox_dlist(sc->st, name, 1, 0, &local, &e2) == 0;
	if (!have_local && e2.code != TE_NOTFOUND) {
		*err = e2;
		return -1;
	}
	struct dlist *get = dlist_new(DL_STR, "FULLMAILBOX");
	buf_appends(&get->s, name);
	syncc_cmd_dlist(sc, "GET", get);
	dlist_free(&get);
	if (syncc_roundtrip(sc, syncc_take_mailbox, &remote, &e2) < 0 && e2.code != TE_NOTFOUND) {
		dlist_free(&local);
		*err = e2;
		return -1;
	}
	char q[LOGQ_MAX];
	if (!have_local || !remote) {
		if (have_local || remote) {
			buf_printf(report, "mailbox=%s difference=%s\n", logq(q, name),
				   have_local ? "missing_on_replica" : "only_on_replica");
			note_diff(sc, name, have_local ? "missing_on_replica" : "only_on_replica", "%s", "");
			(*ndiff)++;
		}
		dlist_free(&local);
		dlist_free(&remote);
		return 0;
	}
	static const char *const keys[] = { "UNIQUEID", "MBOXTYPE", "SYNC_CRC", "SYNC_CRC_ANNOT", "LAST_UID",
					    "HIGHESTMODSEQ", "RECENTUID", "UIDVALIDITY", "ACL", "OPTIONS" };
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
		const char *a = dlist_cstr(dlist_get(local, keys[i])), *b = dlist_cstr(dlist_get(remote, keys[i]));
		if ((a || b) && (!a || !b || strcmp(a, b))) {
			buf_printf(report, "mailbox=%s difference=header key=%s master=%s replica=%s\n", logq(q, name),
				   keys[i], a ? a : "-", b ? b : "-");
			note_diff(sc, name, "header", "key=%s master=%s replica=%s", keys[i], a ? a : "-", b ? b : "-");
			(*ndiff)++;
		}
	}
	const struct dlist *lr = dlist_get_list(local, "RECORD"), *rr = dlist_get_list(remote, "RECORD");
	size_t i = 0, k = 0;
	struct buf ta = BUF_INIT, tb = BUF_INIT;
	while (lr && rr && (i < lr->n || k < rr->n)) {
		uint32_t ua = UINT32_MAX, ub = UINT32_MAX;
		if (i < lr->n)
			dlist_get_num32(lr->items[i], "UID", &ua);
		if (k < rr->n)
			dlist_get_num32(rr->items[k], "UID", &ub);
		if (ua < ub && rec_expunged(lr->items[i])) {
			i++;	/* expunged here, never on the replica: see absent_expunged */
		} else if (ub < ua && rec_expunged(rr->items[k])) {
			k++;
		} else if (ua < ub) {
			buf_printf(report, "mailbox=%s uid=%u difference=record_missing_on_replica master=\"%s\"\n", logq(q, name),
				   ua, rec_text(lr->items[i], &ta));
			note_diff(sc, name, "record_missing_on_replica", "uid=%u master=%s", ua, ta.ptr);
			(*ndiff)++;
			i++;
		} else if (ub < ua) {
			buf_printf(report, "mailbox=%s uid=%u difference=record_only_on_replica replica=\"%s\"\n", logq(q, name),
				   ub, rec_text(rr->items[k], &tb));
			note_diff(sc, name, "record_only_on_replica", "uid=%u replica=%s", ub, tb.ptr);
			(*ndiff)++;
			k++;
		} else if (rec_expunged(lr->items[i]) && rec_expunged(rr->items[k])) {
			/* expunged on both sides: nothing left to replicate (an APPLY
			 * MAILBOX leaves such records alone), whatever else differs */
			i++;
			k++;
		} else {
			if (strcmp(rec_text(lr->items[i], &ta), rec_text(rr->items[k], &tb))) {
				buf_printf(report, "mailbox=%s uid=%u difference=record master=\"%s\" replica=\"%s\"\n",
					   logq(q, name), ua, ta.ptr, tb.ptr);
				note_diff(sc, name, "record", "uid=%u master=%s replica=%s", ua, ta.ptr, tb.ptr);
				(*ndiff)++;
			}
			i++;
			k++;
		}
	}
	buf_free(&ta);
	buf_free(&tb);
	int rc = sc->compare_bodies ? compare_bodies(sc, name, remote, report, ndiff, err) : 0;
	dlist_free(&local);
	dlist_free(&remote);
	return rc;
}

void syncc_compare_bodies(struct syncc *sc, int on)
{
	sc->compare_bodies = on;
}

int syncc_compare(struct syncc *sc, const char *const *users, size_t nusers, struct buf *report, int *ndiff,
		  struct terr *err)
{
	struct names who = { NULL, 0 };
	*ndiff = 0;
	if (nusers)
		for (size_t i = 0; i < nusers; i++)
			syncc_names_add(&who, users[i]);
	else if (store_user_list(sc->st, syncc_all_users_cb, &who, err) < 0)
		return -1;
	int rc = 0;
	for (size_t u = 0; u < who.n && rc == 0; u++) {
		struct names mb = { NULL, 0 };
		struct dlist *get = dlist_new(DL_STR, "USER");
		buf_appends(&get->s, who.v[u]);
		syncc_cmd_dlist(sc, "GET", get);
		dlist_free(&get);
		rc = syncc_roundtrip(sc, syncc_collect_names, &mb, err);
		struct terr e2;
		if (rc == 0 && store_mailbox_list(sc->st, who.v[u], syncc_list_cb, &mb, &e2) < 0 && e2.code != TE_NOTFOUND)
			rc = -1;
		for (size_t i = 0; rc == 0 && i < mb.n; i++)
			rc = syncc_compare_mailbox(sc, mb.v[i], report, ndiff, err);
		syncc_names_free(&mb);
	}
	if (rc == 0 && !nusers) {
		struct names shared = { NULL, 0 };
		store_mailbox_list(sc->st, "", syncc_list_cb, &shared, err);
		for (size_t i = 0; rc == 0 && i < shared.n; i++)
			rc = syncc_compare_mailbox(sc, shared.v[i], report, ndiff, err);
		syncc_names_free(&shared);
	}
	syncc_names_free(&who);
	return rc;
}
