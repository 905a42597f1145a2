/* sync_client_mailbox.c: replicating mailboxes, one and in batches.
 *
 * Mailbox batch (reference §6.2-6.4):
 *   GET MAILBOXES (names) -> the replica's state of each;
 *   a local mailbox whose uniqueid the replica has under another name of
 *     the batch -> APPLY RENAME first;
 *   a name gone locally but present on the replica -> APPLY UNMAILBOX;
 *   same header and CRCs -> nothing to send;
 *   else incremental: records with modseq > the replica's HIGHESTMODSEQ,
 *     bodies of new records via APPLY RESERVE + APPLY MESSAGE, then
 *     APPLY MAILBOX with SINCE_MODSEQ/SINCE_CRC*; a refusal
 *     (IMAP_SYNC_CHECKSUM / IMAP_SYNC_CHANGED) -> a full update with every
 *     record.
 */
#include "sync/sync_client.h"
#include "sync/sync_client-private.h"

#include "lib/limits.h"
#include "lib/log.h"
#include "lib/xalloc.h"
#include "names/mboxname.h"
#include "store/store.h"
#include "sync/sync.h"

#include <string.h>
#include <strings.h>

void syncc_collect_remote(void *rock, struct dlist *kv)
{
	struct remotes *rs = rock;
	const char *name;
	if (strcasecmp(kv->key, "MAILBOX") || dlist_get_str(kv, "MBOXNAME", &name) < 0)
		return;
	rs->r = xrealloc(rs->r, (rs->n + 1) * sizeof *rs->r);
	rs->r[rs->n].name = xstrdup(name);
	/* keep the kvlist: move it out of the caller's ownership */
	rs->r[rs->n++].kv = dlist_take_items(kv, "MAILBOX");
}

void syncc_remotes_free(struct remotes *rs)
{
	for (size_t i = 0; i < rs->n; i++) {
		free(rs->r[i].name);
		dlist_free(&rs->r[i].kv);
	}
	free(rs->r);
	rs->r = NULL;
	rs->n = 0;
}

const struct dlist *syncc_remote_by_name(const struct remotes *rs, const char *name)
{
	for (size_t i = 0; i < rs->n; i++)
		if (!strcmp(rs->r[i].name, name))
			return rs->r[i].kv;
	return NULL;
}

const char *syncc_remote_by_uniqueid(const struct remotes *rs, const char *uniqueid)
{
	for (size_t i = 0; i < rs->n; i++) {
		const char *u;
		if (dlist_get_str(rs->r[i].kv, "UNIQUEID", &u) == 0 && !strcmp(u, uniqueid))
			return rs->r[i].name;
	}
	return NULL;
}

/* Uploads the bodies of the records the replica may lack: RESERVE, then
 * MESSAGE for what it reports missing. */

void syncc_collect_missing(void *rock, struct dlist *kv)
{
	struct missing *m = rock;
	if (strcasecmp(kv->key, "MISSING") || kv->type != DL_LIST)
		return;
	for (size_t i = 0; i < kv->n; i++) {
		const char *g = dlist_cstr(kv->items[i]);
		if (g) {
			m->guids = xrealloc(m->guids, (m->n + 1) * sizeof *m->guids);
			m->guids[m->n++] = xstrdup(g);
		}
	}
}

static int upload_bodies(struct syncc *sc, const char *name, const struct dlist *records, uint32_t above_uid,
			 struct terr *err)
{
	struct dlist *res = dlist_new(DL_KVLIST, "RESERVE");
	dlist_add_str(res, "PARTITION", "default");
	dlist_add_str(dlist_add_list(res, "MBOXNAME"), NULL, name);
	struct dlist *guids = dlist_add_list(res, "GUID");
	for (size_t i = 0; i < records->n; i++) {
		const struct dlist *r = records->items[i];
		uint32_t uid;
		char g[41];
		const struct dlist *fl = dlist_get_list(r, "FLAGS");
		int expunged = 0;
		for (size_t k = 0; fl && k < fl->n; k++)
			if (dlist_cstr(fl->items[k]) && !strcasecmp(dlist_cstr(fl->items[k]), "\\Expunged"))
				expunged = 1;
		if (expunged || dlist_get_num32(r, "UID", &uid) < 0 || uid <= above_uid || dlist_get_guid(r, "GUID", g) < 0)
			continue;
		dlist_add_str(guids, NULL, g);
	}
	int rc = 0;
	if (guids->n) {
		struct missing m = { NULL, 0 };
		syncc_cmd_dlist(sc, "APPLY", res);
		rc = syncc_roundtrip(sc, syncc_collect_missing, &m, err);
		struct dlist *msg = NULL;
		size_t bytes = 0;
		for (size_t i = 0; rc == 0 && i <= m.n; i++) {
			if (msg && (i == m.n || msg->n >= SYNC_MAX_MESSAGE_FILES || bytes >= SYNCC_MESSAGE_BATCH_BYTES)) {
				syncc_cmd_dlist(sc, "APPLY", msg);
				dlist_free(&msg);
				bytes = 0;
				rc = syncc_roundtrip(sc, NULL, NULL, err);
			}
			if (i == m.n || rc < 0)
				break;
			if (syncc_add_body(sc, &msg, name, m.guids[i], &bytes, err) < 0) {	/* by reference */
				rc = -1;
				break;
			}
			sc->stats.messages++;
		}
		dlist_free(&msg);
		for (size_t i = 0; i < m.n; i++)
			free(m.guids[i]);
		free(m.guids);
	}
	dlist_free(&res);
	return rc;
}

int syncc_header_equal(const struct dlist *local, const struct dlist *remote)
{
	static const char *const keys[] = { "UNIQUEID", "LAST_UID", "HIGHESTMODSEQ", "UIDVALIDITY", "SYNC_CRC",
					    "SYNC_CRC_ANNOT", "ACL", "RECENTUID", "OPTIONS" };
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
		const char *a = dlist_cstr(dlist_get(local, keys[i])), *b = dlist_cstr(dlist_get(remote, keys[i]));
		if (!a || !b || strcmp(a, b))
			return 0;
	}
	return 1;
}

/* One APPLY MAILBOX of name: full (every record) or incremental (records
 * above the replica's HIGHESTMODSEQ, with SINCE_*). */
void syncc_remote_nums(const struct dlist *remote, struct rstate_nums *n)
{
	memset(n, 0, sizeof *n);
	if (!remote)
		return;
	dlist_get_num64(remote, "HIGHESTMODSEQ", &n->modseq);
	dlist_get_num32(remote, "LAST_UID", &n->last_uid);
	dlist_get_num32(remote, "SYNC_CRC", &n->crc);
	dlist_get_num32(remote, "SYNC_CRC_ANNOT", &n->crc_annot);
}

static int push_mailbox(struct syncc *sc, const char *name, int full, const struct dlist *remote, struct terr *err)
{
	struct dlist *mb = NULL;
	struct rstate_nums rn;
	syncc_remote_nums(remote, &rn);
	uint64_t rms = rn.modseq;
	uint32_t rlast = rn.last_uid, rcrc = rn.crc, rannot = rn.crc_annot;
	if (sync_mailbox_dlist(sc->st, name, 1, full ? 0 : rms, &mb, err) < 0)
		return -1;
	if (!full) {
		dlist_add_num(mb, "SINCE_MODSEQ", rms);
		dlist_add_num(mb, "SINCE_CRC", rcrc);
		dlist_add_num(mb, "SINCE_CRC_ANNOT", rannot);
	}
	const struct dlist *records = dlist_get_list(mb, "RECORD");
	int rc = upload_bodies(sc, name, records, full ? 0 : rlast, err);
	if (rc == 0) {
		/* RECORD must be last, after SINCE_*: move it to the end */
		for (size_t i = 0; i + 1 < mb->n; i++)
			if (mb->items[i] == records) {
				memmove(&mb->items[i], &mb->items[i + 1], (mb->n - i - 1) * sizeof *mb->items);
				mb->items[mb->n - 1] = (struct dlist *)records;
				break;
			}
		syncc_rcache_drop(sc, name);
		syncc_cmd_dlist(sc, "APPLY", mb);
		rc = syncc_roundtrip(sc, NULL, NULL, err);
	}
	if (rc == 0)
		syncc_rcache_put(sc, name, mb);
	dlist_free(&mb);
	if (rc == 0)
		sc->stats.mailboxes++;
	return rc;
}

/* Sends one mailbox: incremental when `remote` is given and compatible,
 * else (or when refused) full. A full update the replica refuses as a
 * split brain (IMAP_SYNC_CHECKSUM) is reconciled first (the replica's
 * own messages are copied back, syncc_reconcile) and sent again; in
 * repair mode a same-name mailbox with another uniqueid is renamed aside
 * on the replica first. */
static int sync_one(struct syncc *sc, const char *name, struct store_mailbox *mbx, const struct dlist *remote,
		    int follow, struct terr *err);

int syncc_sync_one(struct syncc *sc, const char *name, const struct dlist *remote, struct terr *err)
{
	return sync_one(sc, name, NULL, remote, 1, err);
}

/* APPLY RENAME from -> to on the replica (the sync cache forgets both). */
static int replica_rename(struct syncc *sc, const char *from, const char *to, uint32_t uidvalidity, struct terr *err)
{
	struct dlist *rn = dlist_new(DL_KVLIST, "RENAME");
	dlist_add_str(rn, "OLDMBOXNAME", from);
	dlist_add_str(rn, "NEWMBOXNAME", to);
	dlist_add_str(rn, "PARTITION", "default");
	dlist_add_num(rn, "UIDVALIDITY", uidvalidity);
	syncc_rcache_drop(sc, from);
	syncc_rcache_drop(sc, to);
	syncc_cmd_dlist(sc, "APPLY", rn);
	dlist_free(&rn);
	int rc = syncc_roundtrip(sc, NULL, NULL, err);
	char q[LOGQ_MAX], q2[LOGQ_MAX];
	if (rc == 0)
		log_notice("event=sync_rename channel=%s mailbox=%s newname=%s", sc->channel, logq(q, from), logq(q2, to));
	return rc;
}

/* The replica refused name with IMAP_MAILBOX_MOVED and holds no mailbox
 * of that name: it may hold our uniqueid under another name (a rename
 * whose old name was replicated in an earlier pass). GET UNIQUEIDS finds
 * it; it is renamed to name there and name is synced again. -1 (with err
 * untouched) when that is not the case. */
static int sync_moved(struct syncc *sc, const char *name, struct terr *err)
{
	struct store_mailbox_info mi;
	struct terr e2 = { 0 };
	if (store_mailbox_get(sc->st, name, &mi, &e2) < 0)
		return -1;
	struct dlist *get = dlist_new(DL_LIST, "UNIQUEIDS");
	dlist_add_str(get, NULL, mi.uniqueid);
	syncc_cmd_dlist(sc, "GET", get);
	dlist_free(&get);
	struct remotes rs = { NULL, 0 };
	int rc = -1;
	if (syncc_roundtrip(sc, syncc_collect_remote, &rs, &e2) < 0) {
		if (e2.code == TE_IO)
			*err = e2;
		goto out;
	}
	const char *old = syncc_remote_by_uniqueid(&rs, mi.uniqueid);
	if (!old || !strcmp(old, name))
		goto out;
	if (replica_rename(sc, old, name, mi.uidvalidity, &e2) < 0) {
		*err = e2;
		goto out;
	}
	rc = sync_one(sc, name, NULL, syncc_remote_by_name(&rs, old), 0, err);
out:
	syncc_remotes_free(&rs);
	store_mailbox_info_free(&mi);
	return rc;
}

/* mbx: the mailbox opened by the caller, or NULL (then found by name) */
static int sync_one(struct syncc *sc, const char *name, struct store_mailbox *mbx, const struct dlist *remote,
		    int follow, struct terr *err)
{
	int incremental = remote != NULL && !sc->repair;
	int other_uniqueid = 0;
	if (remote) {
		struct dlist *mb = NULL;
		const char *lu, *ru;
		if ((mbx ? sync_mailbox_dlist_mb(mbx, 0, 0, &mb, err) : sync_mailbox_dlist(sc->st, name, 0, 0, &mb, err)) < 0)
			return -1;
		int same = dlist_get_str(mb, "UNIQUEID", &lu) == 0 && dlist_get_str(remote, "UNIQUEID", &ru) == 0 &&
			   !strcmp(lu, ru);
		int equal = same && syncc_header_equal(mb, remote);
		dlist_free(&mb);
		if (equal && !sc->repair) {
			syncc_rcache_put(sc, name, remote);
			return 0;
		}
		incremental = incremental && same;
		other_uniqueid = !same;
	}
	char q[LOGQ_MAX];
	if (incremental || (!remote && !sc->repair)) {
		/* in parts (sync_batchsize), pipelined; a new mailbox needs no RESERVE */
		if (syncc_stream_one(sc, name, remote, err) == 0)
			return 0;
		if (err->code != TE_CHECKSUM && err->code != TE_CHANGED && err->code != TE_MOVED)
			return -1;
		log_notice("event=sync_full_update channel=%s mailbox=%s reason=\"%s\"", sc->channel, logq(q, name),
			   err->msg);
	}
	if (push_mailbox(sc, name, 1, remote, err) == 0)
		return 0;
	struct terr e2 = { 0 };
	if (err->code == TE_CHECKSUM && sc->o.no_copyback) {
		terr_set(err, TE_CHECKSUM, "split brain not reconciled (-O: no copy-back): %.400s", err->msg);
		return -1;
	}
	if (err->code == TE_CHECKSUM) {
		for (int resends = 0; resends <= SYNC_RACE_RESENDS; resends++) {
			int r = syncc_reconcile(sc, name, &e2);
			if (r < 0) {
				terr_set(err, e2.code == TE_IO ? TE_IO : TE_CHECKSUM, "split brain not reconciled: %s",
					 e2.msg);
				return -1;
			}
			if (r == 1) {
				/* the replica holds nothing the master lacks (now): another
				 * client of the channel sent newer state between our read
				 * and our APPLY; read the master again and resend */
				if (resends == SYNC_RACE_RESENDS)
					break;
				log_notice("event=sync_resend channel=%s mailbox=%s resend=%d reason=\"%s\"",
					   sc->channel, logq(q, name), resends + 1, err->msg);
			}
			if (push_mailbox(sc, name, 1, NULL, err) == 0)
				return 0;
			if (err->code != TE_CHECKSUM)
				break;
		}
		return -1;
	}
	if (err->code == TE_MOVED && sc->repair && other_uniqueid) {
		if (syncc_rename_aside(sc, name, remote, &e2) < 0) {
			*err = e2;
			return -1;
		}
		return push_mailbox(sc, name, 1, NULL, err);
	}
	if (err->code == TE_MOVED && !other_uniqueid && follow)
		return sync_moved(sc, name, err);
	return -1;
}

/* sync_one, with the outcome noted for the failed list: a failure other
 * than the connection's is isolated (recorded for retry, the rest of the
 * channel goes on). */
static int sync_one_noted(struct syncc *sc, const char *name, struct store_mailbox *mbx, const struct dlist *remote,
			  struct terr *err)
{
	if (sync_one(sc, name, mbx, remote, 1, err) == 0) {
		syncc_note_synced(sc, name);
		return 0;
	}
	char q[LOGQ_MAX];
	log_warn("event=sync_mailbox_fail channel=%s mailbox=%s error=\"%s\"", sc->channel, logq(q, name), err->msg);
	if (err->code != TE_IO)
		syncc_note_failed(sc, name, err->msg);
	return -1;
}

struct uid_find {
	const char *uniqueid;
	char *name;
	uint32_t uidvalidity;
};

static int uid_find_cb(const struct store_mailbox_info *mi, void *rock)
{
	struct uid_find *uf = rock;
	if (!uf->name && !strcmp(mi->uniqueid, uf->uniqueid)) {
		uf->name = xstrdup(mi->name);
		uf->uidvalidity = mi->uidvalidity;
	}
	return 0;
}

/* A name gone here that the replica holds (`remote`): when its uniqueid
 * is one of our mailboxes under another name (of the same owner), the
 * mailbox was renamed and the new name's change was (or will be) in
 * another pass. The replica's copy is renamed to our name (never kept as
 * replica-only, never deleted) and synced. 1 done (or failed and
 * recorded), 0 not a rename, -1 the connection failed. */
static int follow_uniqueid(struct syncc *sc, const char *gone, const struct dlist *remote, struct terr *err)
{
	const char *ru = dlist_cstr(dlist_get(remote, "UNIQUEID"));
	struct buf owner = BUF_INIT;
	struct terr e2 = { 0 };
	struct uid_find uf = { ru, NULL, 0 };
	if (!ru || mboxname_owner(gone, &owner, &e2) < 0 || !strncmp(gone, "DELETED.", 8) ||
	    store_mailbox_list(sc->st, buf_cstr(&owner), uid_find_cb, &uf, &e2) < 0 || !uf.name ||
	    !strcmp(uf.name, gone)) {
		buf_free(&owner);
		free(uf.name);
		return 0;
	}
	buf_free(&owner);
	int rc = 1;
	if (replica_rename(sc, gone, uf.name, uf.uidvalidity, &e2) < 0) {
		/* our name is taken there (another uniqueid): left to the
		 * sync of that name (and to repair) */
		rc = e2.code == TE_IO ? (*err = e2, -1) : 0;
	} else {
		syncc_note_synced(sc, gone);
		if (sync_one_noted(sc, uf.name, NULL, remote, &e2) < 0 && e2.code == TE_IO) {
			*err = e2;
			rc = -1;
		}
	}
	free(uf.name);
	return rc;
}

/* The log says name was deleted, and it exists here again with another
 * uniqueid: when the replica's same-name mailbox is the deleted one (its
 * uniqueid is nowhere here), it goes (APPLY UNMAILBOX) before the new one
 * is sent. 1 when it went, 0 when left alone, -1 on a lost connection. */
static int drop_recreated(struct syncc *sc, const char *name, const struct store_mailbox_info *mi,
			  const struct dlist *remote, struct terr *err)
{
	const char *ru = dlist_cstr(dlist_get(remote, "UNIQUEID"));
	struct buf owner = BUF_INIT;
	struct terr e2 = { 0 };
	struct uid_find uf = { ru, NULL, 0 };
	if (!ru || !strcmp(ru, mi->uniqueid) || mboxname_owner(name, &owner, &e2) < 0 ||
	    store_mailbox_list(sc->st, buf_cstr(&owner), uid_find_cb, &uf, &e2) < 0 || uf.name) {
		buf_free(&owner);
		free(uf.name);
		return 0;
	}
	buf_free(&owner);
	struct dlist *un = dlist_new(DL_STR, "UNMAILBOX");
	buf_appends(&un->s, name);
	syncc_rcache_drop(sc, name);
	syncc_cmd_dlist(sc, "APPLY", un);
	dlist_free(&un);
	char q[LOGQ_MAX];
	log_notice("event=sync_recreated channel=%s mailbox=%s old_uniqueid=%s uniqueid=%s", sc->channel, logq(q, name),
		   ru, mi->uniqueid);
	if (syncc_roundtrip(sc, NULL, NULL, &e2) < 0 && e2.code != TE_NOTFOUND) {
		if (e2.code == TE_IO) {
			*err = e2;
			return -1;
		}
		return 0;
	}
	return 1;
}

/* 1 when the replica's mailbox under name (remote) has another uniqueid
 * than ours (mi) and that uniqueid was deleted here (a tombstone of the
 * owner's): evidence that the master removed it, as an UNMAILBOX line is.
 * A replica-only mailbox (split brain) has no tombstone here. */
static int remote_deleted_here(struct syncc *sc, const char *name, const struct store_mailbox_info *mi,
			       const struct dlist *remote)
{
	const char *ru = dlist_cstr(dlist_get(remote, "UNIQUEID"));
	struct terr e2 = { 0 };
	return ru && strcmp(ru, mi->uniqueid) != 0 && store_mailbox_was_deleted(sc->st, name, ru, &e2) == 1;
}

/* Syncs a batch of mailbox names (present locally or not). A name gone
 * here but present on the replica is removed there only with unmailbox
 * (an UNMAILBOX line: the master deleted it); otherwise it is kept and
 * reported as a replica-only mailbox (a rename in the batch is matched by
 * uniqueid first, as Cyrus's folder pass does). */
int syncc_sync_batch(struct syncc *sc, char **names, size_t n, int unmailbox, struct terr *err)
{
	return syncc_sync_batch_x(sc, names, n, unmailbox, 0, err);
}

/* nostream: mailboxes the replica lacks go one by one (sync_one), not
 * streamed together (the retry of those a stream could not send). */
int syncc_sync_batch_x(struct syncc *sc, char **names, size_t n, int unmailbox, int nostream, struct terr *err)
{
	if (n == 0)
		return 0;
	if (sc->careful) {
		/* one mailbox at a time, the one under way known (see
		 * SYNCC_CAREFUL_AFTER) */
		if (n > 1) {
			int failed = 0;
			for (size_t i = 0; i < n; i++) {
				struct terr e2 = { 0 };
				if (syncc_sync_batch_x(sc, &names[i], 1, unmailbox, 1, &e2) < 0) {
					*err = e2;
					failed = 1;
					if (e2.code == TE_IO)
						return -1;
				}
			}
			return failed ? -1 : 0;
		}
		snprintf(sc->current, sizeof sc->current, "%s", names[0]);
		nostream = 1;
	}
	char **slow = NULL;
	if (!unmailbox && !sc->repair && !sc->careful && sc->nrcache) {
		slow = xcalloc(n, sizeof *slow);
		size_t nslow = 0;
		if (syncc_fast_batch(sc, names, n, slow, &nslow, err) < 0) {
			free(slow);
			return -1;
		}
		names = slow;
		n = nslow;
		if (n == 0) {
			free(slow);
			return 0;
		}
	}
	struct dlist *get = dlist_new(DL_LIST, "MAILBOXES");
	for (size_t i = 0; i < n; i++)
		dlist_add_str(get, NULL, names[i]);
	struct remotes rs = { NULL, 0 };
	syncc_cmd_dlist(sc, "GET", get);
	dlist_free(&get);
	int rc = syncc_roundtrip(sc, syncc_collect_remote, &rs, err);
	if (rc < 0 && err->code != TE_IO) {
		/* the replica cannot tell the state of one of them (a damaged
		 * database, ...): asked one by one, only that one fails and the
		 * rest goes on */
		syncc_remotes_free(&rs);
		if (n == 1) {
			char q[LOGQ_MAX];
			log_warn("event=sync_mailbox_fail channel=%s mailbox=%s error=\"%s\"", sc->channel, logq(q, names[0]),
				 err->msg);
			syncc_note_failed(sc, names[0], err->msg);
			rc = 0;
		} else {
			rc = 0;
			for (size_t i = 0; i < n && rc == 0; i++) {
				struct terr e2 = { 0 };
				if (syncc_sync_batch_x(sc, &names[i], 1, unmailbox, nostream, &e2) < 0 && e2.code == TE_IO) {
					*err = e2;
					rc = -1;
				}
			}
		}
		free(slow);
		return rc;
	}
	int failed = 0;
	char **gone = xcalloc(n, sizeof *gone), **fresh = xcalloc(n, sizeof *fresh);
	size_t ngone = 0, nfresh = 0;
	/* renames first (the replica holds the mailbox under another name),
	 * then the rest: a name freed by a rename may be taken by a new
	 * mailbox, which must not meet the old one there. Among the renames,
	 * those whose new name is free on the replica go first: in a chain
	 * (D -> A, then B -> D, in one pass) the replica's D must move to A
	 * before B can take the name D */
	size_t *order = xcalloc(n, sizeof *order), nord = 0;
	if (n == 1)
		order[nord++] = 0;	/* nothing to order: no extra lookup */
	for (int tier = 0; tier < 3 && n > 1; tier++)
		for (size_t i = 0; i < n; i++) {
			struct store_mailbox_info mi;
			struct terr e2 = { 0 };
			int t = 2;	/* not a rename */
			if (store_mailbox_get(sc->st, names[i], &mi, &e2) == 0) {
				const char *elsewhere = syncc_remote_by_uniqueid(&rs, mi.uniqueid);
				if (elsewhere && strcmp(elsewhere, names[i]) != 0)
					t = syncc_remote_by_name(&rs, names[i]) ? 1 : 0;
				store_mailbox_info_free(&mi);
			}
			if (t == tier)
				order[nord++] = i;
		}
	for (size_t oi = 0; rc == 0 && oi < nord; oi++) {
		size_t i = order[oi];
		struct store_mailbox *mbx;
		struct terr e2 = { 0 };
		/* resolved once for this pass: its state here, its header in sync_one */
		if (store_mailbox_open(sc->st, names[i], &mbx, &e2) < 0) {
			if (e2.code != TE_NOTFOUND) {
				*err = e2;
				failed = 1;
				continue;
			}
			gone[ngone++] = names[i];	/* after the renames of the batch */
			continue;
		}
		const struct store_mailbox_info mi = *store_mailbox_state(mbx);
		const struct dlist *remote = syncc_remote_by_name(&rs, names[i]);
		const char *elsewhere = syncc_remote_by_uniqueid(&rs, mi.uniqueid);
		if (elsewhere && strcmp(elsewhere, names[i]) && !remote) {
			if (replica_rename(sc, elsewhere, names[i], mi.uidvalidity, &e2) == 0) {
				/* the renamed mailbox is now the remote state of this name
				 * (elsewhere is that entry's own name: it goes last) */
				for (size_t k = 0; k < rs.n; k++)
					if (rs.r[k].name == elsewhere) {
						rs.r[k].name = xstrdup(names[i]);
						free((char *)elsewhere);
						break;
					}
				remote = syncc_remote_by_name(&rs, names[i]);
			}
		}
		/* the replica's same-name mailbox is one deleted here: the log
		 * said so (UNMAILBOX), or its uniqueid has a tombstone here (it
		 * was renamed away and deleted under its new name while this
		 * name got a new mailbox, all since the last pass) */
		if (remote && (unmailbox || remote_deleted_here(sc, names[i], &mi, remote))) {
			int d = drop_recreated(sc, names[i], &mi, remote, &e2);
			if (d < 0) {
				*err = e2;
				rc = -1;
				store_mailbox_close(&mbx);
				break;
			}
			if (d > 0)
				remote = NULL;	/* a new mailbox there now */
		}
		if (!remote && !sc->repair && !nostream) {
			fresh[nfresh++] = names[i];	/* streamed together below */
		} else if (sync_one_noted(sc, names[i], mbx, remote, &e2) < 0) {
			*err = e2;
			if (e2.code == TE_IO)
				rc = -1;
		}
		store_mailbox_close(&mbx);
	}
	if (rc == 0 && nfresh) {
		size_t nretry = 0;
		struct terr e2 = { 0 };
		if (syncc_stream_new_mailboxes(sc, fresh, nfresh, fresh, &nretry, &e2) < 0) {
			*err = e2;
			rc = -1;
		} else if (nretry && syncc_sync_batch_x(sc, fresh, nretry, 0, 1, &e2) < 0) {
			*err = e2;
			failed = 1;
			if (e2.code == TE_IO)
				rc = -1;
		}
	}
	free(fresh);
	free(order);
	for (size_t i = 0; rc == 0 && i < ngone; i++) {
		struct terr e2 = { 0 };
		const struct dlist *remote = syncc_remote_by_name(&rs, gone[i]);
		if (!remote) {
			syncc_note_synced(sc, gone[i]);
			continue;	/* not there, or renamed to a name of the batch */
		}
		int r = follow_uniqueid(sc, gone[i], remote, &e2);
		if (r != 0) {
			if (r < 0) {
				*err = e2;
				if (e2.code == TE_IO)
					rc = -1;
			}
			continue;
		}
		/* the replica's mailbox under this name is one deleted here
		 * (renamed, then deleted, in logs it has not heard yet): it goes
		 * too; anything else only the replica holds is kept (split brain) */
		const char *ru = dlist_cstr(dlist_get(remote, "UNIQUEID"));
		int deleted = ru ? store_mailbox_was_deleted(sc->st, gone[i], ru, &e2) : 0;
		if (deleted < 0) {
			*err = e2;
			failed = 1;
			continue;
		}
		if (!unmailbox && !deleted) {
			syncc_note_replica_only(sc, gone[i]);
			syncc_note_synced(sc, gone[i]);
			continue;
		}
		struct dlist *un = dlist_new(DL_STR, "UNMAILBOX");
		buf_appends(&un->s, gone[i]);
		syncc_rcache_drop(sc, gone[i]);
		syncc_cmd_dlist(sc, "APPLY", un);
		dlist_free(&un);
		if (syncc_roundtrip(sc, NULL, NULL, &e2) < 0 && e2.code != TE_NOTFOUND) {
			*err = e2;
			failed = 1;
			if (e2.code == TE_IO)
				rc = -1;
		} else {
			syncc_note_synced(sc, gone[i]);
		}
	}
	free(gone);
	syncc_remotes_free(&rs);
	free(slow);
	if (rc == 0)
		sc->current[0] = '\0';	/* its session survived it */
	return rc < 0 || failed ? -1 : 0;
}
