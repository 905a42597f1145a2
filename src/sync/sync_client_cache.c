/* sync_client_cache.c: the sync cache (each mailbox's header as the replica
 * holds it) and the one-round-trip pass it allows (fast_batch). */
#include "sync/sync_client.h"
#include "sync/sync_client-private.h"

#include "conf/conf.h"
#include "lib/log.h"
#include "lib/xalloc.h"
#include "net/conn.h"
#include "store/store.h"
#include "sync/sync.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* Header keys kept per mailbox: what syncc_header_equal and an incremental
 * APPLY MAILBOX (SINCE_*) need. */
static const char *const rcache_keys[] = { "UNIQUEID", "LAST_UID", "HIGHESTMODSEQ", "UIDVALIDITY", "SYNC_CRC",
					   "SYNC_CRC_ANNOT", "ACL", "RECENTUID", "OPTIONS" };
#define NRCACHE_KEYS (sizeof rcache_keys / sizeof rcache_keys[0])

/* ---- the index by name ------------------------------------------------
 * A channel's cache holds up to SYNCC_RCACHE_MAX mailboxes and every
 * mailbox of a pass looks itself up: a linear search made an initial sync
 * of 10,000 mailboxes quadratic (a third of the client's CPU). */

static uint64_t name_hash(const char *s)
{
	uint64_t h = 14695981039346656037ULL;	/* FNV-1a */
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h;
}

static size_t slot_of(const struct syncc *sc, size_t pos)
{
	size_t mask = sc->rcache_nslots - 1;
	size_t j = (size_t)sc->rcache[pos].hash & mask;
	while (sc->rcache_slots[j] != pos + 1)
		j = (j + 1) & mask;
	return j;
}

static void slot_put(struct syncc *sc, size_t pos)
{
	size_t mask = sc->rcache_nslots - 1;
	size_t j = (size_t)sc->rcache[pos].hash & mask;
	while (sc->rcache_slots[j])
		j = (j + 1) & mask;
	sc->rcache_slots[j] = (uint32_t)(pos + 1);
}

/* Empties slot s, moving back the entries of its probe run that would no
 * longer be found past the hole (deletion without tombstones). */
static void slot_remove(struct syncc *sc, size_t s)
{
	size_t mask = sc->rcache_nslots - 1;
	for (size_t j = (s + 1) & mask; sc->rcache_slots[j]; j = (j + 1) & mask) {
		size_t home = (size_t)sc->rcache[sc->rcache_slots[j] - 1].hash & mask;
		/* j's entry may move to s when its home is not in (s, j] */
		int between = s < j ? (home > s && home <= j) : (home > s || home <= j);
		if (!between) {
			sc->rcache_slots[s] = sc->rcache_slots[j];
			s = j;
		}
	}
	sc->rcache_slots[s] = 0;
}

static void slots_grow(struct syncc *sc)
{
	size_t n = sc->rcache_nslots ? sc->rcache_nslots * 2 : 64;
	free(sc->rcache_slots);
	sc->rcache_slots = xcalloc(n, sizeof *sc->rcache_slots);
	sc->rcache_nslots = n;
	for (size_t i = 0; i < sc->nrcache; i++)
		slot_put(sc, i);
}

static struct syncc_rstate *rcache_find(struct syncc *sc, const char *name)
{
	if (!sc->nrcache)
		return NULL;
	uint64_t h = name_hash(name);
	size_t mask = sc->rcache_nslots - 1;
	for (size_t j = (size_t)h & mask; sc->rcache_slots[j]; j = (j + 1) & mask) {
		struct syncc_rstate *r = &sc->rcache[sc->rcache_slots[j] - 1];
		if (r->hash == h && !strcmp(r->name, name))
			return r;
	}
	return NULL;
}

void syncc_rcache_drop(struct syncc *sc, const char *name)
{
	struct syncc_rstate *r = rcache_find(sc, name);
	if (!r)
		return;
	size_t pos = (size_t)(r - sc->rcache), last = sc->nrcache - 1;
	slot_remove(sc, slot_of(sc, pos));
	free(r->name);
	if (pos != last) {
		/* the last entry fills the hole: its slot now names pos */
		sc->rcache_slots[slot_of(sc, last)] = (uint32_t)(pos + 1);
		*r = sc->rcache[last];
	}
	sc->nrcache--;
}

void syncc_rcache_clear(struct syncc *sc)
{
	for (size_t i = 0; i < sc->nrcache; i++)
		free(sc->rcache[i].name);
	free(sc->rcache);
	free(sc->rcache_slots);
	sc->rcache = NULL;
	sc->rcache_slots = NULL;
	sc->nrcache = sc->rcache_cap = sc->rcache_nslots = 0;
}

/* After the replica accepted mb (an APPLY MAILBOX): its header is now the
 * replica's. */
void syncc_rcache_put(struct syncc *sc, const char *name, const struct dlist *mb)
{
	if (sc->nrcache >= SYNCC_RCACHE_MAX)
		syncc_rcache_clear(sc);	/* crude, but a cache miss only costs a GET */
	const char *v[NRCACHE_KEYS];
	size_t len = strlen(name) + 1;
	for (size_t i = 0; i < NRCACHE_KEYS; i++) {
		v[i] = dlist_cstr(dlist_get(mb, rcache_keys[i]));
		if (!v[i]) {
			syncc_rcache_drop(sc, name);
			return;
		}
		len += strlen(v[i]) + 1;
	}
	char *block = xmalloc(len), *p = block;
	p = stpcpy(p, name) + 1;
	for (size_t i = 0; i < NRCACHE_KEYS; i++)
		p = stpcpy(p, v[i]) + 1;
	struct syncc_rstate *r = rcache_find(sc, name);
	if (!r) {
		if (sc->nrcache == sc->rcache_cap) {
			sc->rcache_cap = sc->rcache_cap ? sc->rcache_cap * 2 : 64;
			sc->rcache = xrealloc(sc->rcache, sc->rcache_cap * sizeof *sc->rcache);
		}
		if ((sc->nrcache + 1) * 2 > sc->rcache_nslots)
			slots_grow(sc);
		r = &sc->rcache[sc->nrcache];
		r->name = block;
		r->hash = name_hash(name);
		slot_put(sc, sc->nrcache++);
	} else {
		free(r->name);	/* the same name: the hash and slot stay */
		r->name = block;
	}
}

struct dlist *syncc_rstate_hdr(const struct syncc_rstate *r)
{
	struct dlist *hdr = dlist_new(DL_KVLIST, "MAILBOX");
	const char *p = r->name + strlen(r->name) + 1;
	for (size_t i = 0; i < NRCACHE_KEYS; i++) {
		dlist_add_str(hdr, rcache_keys[i], p);
		p += strlen(p) + 1;
	}
	return hdr;
}

int syncc_rec_is_expunged(const struct dlist *r)
{
	const struct dlist *fl = dlist_get_list(r, "FLAGS");
	for (size_t k = 0; fl && k < fl->n; k++)
		if (dlist_cstr(fl->items[k]) && !strcasecmp(dlist_cstr(fl->items[k]), "\\Expunged"))
			return 1;
	return 0;
}

struct fast_item {
	char *name;
	struct dlist *mb;	/* the APPLY MAILBOX to send */
	int ok;
};

struct guidset {
	char (*g)[41];
	char **owner_mbox;	/* a mailbox of the body's owner, to read it */
	size_t n;
};

static int guidset_has(const struct guidset *gs, const char *g)
{
	for (size_t i = 0; i < gs->n; i++)
		if (!strcmp(gs->g[i], g))
			return 1;
	return 0;
}

static void guidset_add(struct guidset *gs, const char *g, const char *mbox)
{
	gs->g = xrealloc(gs->g, (gs->n + 1) * sizeof *gs->g);
	gs->owner_mbox = xrealloc(gs->owner_mbox, (gs->n + 1) * sizeof *gs->owner_mbox);
	snprintf(gs->g[gs->n], sizeof gs->g[0], "%s", g);
	gs->owner_mbox[gs->n++] = (char *)mbox;
}

static void guidset_free(struct guidset *gs)
{
	free(gs->g);
	free(gs->owner_mbox);
	memset(gs, 0, sizeof *gs);
}

/* Prepares the incremental APPLY MAILBOX of a mailbox whose replica
 * state is cached: 1 prepared, 0 nothing to send (equal), -1 not for
 * the fast path (no cache entry, gone, another uniqueid, an error). */
static int fast_prepare(struct syncc *sc, const char *name, struct fast_item *it, struct guidset *known,
			struct guidset *fresh)
{
	struct syncc_rstate *r = rcache_find(sc, name);
	if (!r)
		return -1;
	struct terr err = { 0 };
	struct dlist *local = NULL;
	/* the mailbox is resolved once for the header and the records */
	struct store_mailbox *mbx;
	if (store_mailbox_open(sc->st, name, &mbx, &err) < 0)
		return -1;
	if (sync_mailbox_dlist_mb(mbx, 0, 0, &local, &err) < 0) {
		store_mailbox_close(&mbx);
		return -1;
	}
	struct dlist *hdr = syncc_rstate_hdr(r);
	const char *lu = dlist_cstr(dlist_get(local, "UNIQUEID")), *ru = dlist_cstr(dlist_get(hdr, "UNIQUEID"));
	int same = lu && ru && !strcmp(lu, ru);
	int equal = same && syncc_header_equal(local, hdr);
	dlist_free(&local);
	if (!same || equal) {
		dlist_free(&hdr);
		store_mailbox_close(&mbx);
		return same ? 0 : -1;
	}
	struct rstate_nums rn;
	syncc_remote_nums(hdr, &rn);
	dlist_free(&hdr);
	uint64_t rms = rn.modseq;
	uint32_t rlast = rn.last_uid, rcrc = rn.crc, rannot = rn.crc_annot;
	struct dlist *mb = NULL;
	int rc = sync_mailbox_dlist_mb(mbx, 1, rms, &mb, &err);
	store_mailbox_close(&mbx);
	if (rc < 0)
		return -1;
	dlist_add_num(mb, "SINCE_MODSEQ", rms);
	dlist_add_num(mb, "SINCE_CRC", rcrc);
	dlist_add_num(mb, "SINCE_CRC_ANNOT", rannot);
	const struct dlist *records = dlist_get_list(mb, "RECORD");
	size_t nnew = 0;
	for (size_t i = 0; records && i < records->n; i++) {
		uint32_t uid;
		nnew += dlist_get_num32(records->items[i], "UID", &uid) == 0 && uid > rlast;
	}
	if ((long long)nnew > conf_int(sc->conf, "sync_batchsize")) {
		dlist_free(&mb);	/* in parts: the general path */
		return -1;
	}
	for (size_t i = 0; records && i + 1 < mb->n; i++)
		if (mb->items[i] == records) {	/* RECORD goes last, after SINCE_* */
			memmove(&mb->items[i], &mb->items[i + 1], (mb->n - i - 1) * sizeof *mb->items);
			mb->items[mb->n - 1] = (struct dlist *)records;
			break;
		}
	for (size_t i = 0; records && i < records->n; i++) {
		const struct dlist *rec = records->items[i];
		uint32_t uid;
		char g[41];
		if (dlist_get_num32(rec, "UID", &uid) < 0 || dlist_get_guid(rec, "GUID", g) < 0)
			continue;
		if (uid <= rlast) {
			/* the replica had this record, so it has its body */
			if (!guidset_has(known, g))
				guidset_add(known, g, it->name);
		} else if (!syncc_rec_is_expunged(rec) && !guidset_has(fresh, g)) {
			guidset_add(fresh, g, it->name);
		}
	}
	it->mb = mb;
	return 1;
}

/* The rolling pass's fast path: every mailbox of names whose replica
 * state is cached goes in one pipelined write (the new bodies in APPLY
 * MESSAGE, one APPLY MAILBOX each, and RESTART) and one wait: one round
 * trip, where the general path needs GET MAILBOXES, RESERVE, MESSAGE
 * and MAILBOX. A body the replica has already (a copy or move of a
 * message it holds) is not sent again: its GUID is among the records
 * the replica had. Names that cannot go this way, or that the replica
 * refuses (its state was not what the cache said), are returned in
 * slow[] for the general path. -1 only when the connection failed. */
int syncc_fast_batch(struct syncc *sc, char **names, size_t n, char **slow, size_t *nslow, struct terr *err)
{
	struct fast_item *items = xcalloc(n ? n : 1, sizeof *items);
	struct guidset known = { 0 }, fresh = { 0 };
	size_t nitems = 0;
	*nslow = 0;
	for (size_t i = 0; i < n; i++) {
		items[nitems].name = names[i];
		int r = fast_prepare(sc, names[i], &items[nitems], &known, &fresh);
		if (r < 0)
			slow[(*nslow)++] = names[i];
		else if (r > 0)
			nitems++;
		else
			syncc_note_synced(sc, names[i]);
	}
	int rc = 0;
	if (!nitems)
		goto out;
	/* the bodies, in APPLY MESSAGE batches */
	size_t nsent = 0, nmsgcmds = 0;
	struct dlist *msg = NULL;
	size_t bytes = 0;
	for (size_t i = 0; i <= fresh.n; i++) {
		if (msg && (i == fresh.n || msg->n >= SYNC_MAX_MESSAGE_FILES || bytes >= SYNCC_MESSAGE_BATCH_BYTES ||
			    nmsgcmds + nitems + 2 >= SYNCC_MAX_PIPELINE)) {
			syncc_cmd_dlist(sc, "APPLY", msg);
			syncc_send(sc);
			nmsgcmds++;
			dlist_free(&msg);
			bytes = 0;
		}
		if (i == fresh.n)
			break;
		if (guidset_has(&known, fresh.g[i]))
			continue;
		struct terr e2 = { 0 };
		/* by reference (syncc_add_body); a missing file: its mailbox's
		 * APPLY fails and the general path reports it */
		if (syncc_add_body(sc, &msg, fresh.owner_mbox[i], fresh.g[i], &bytes, &e2) < 0)
			continue;
		nsent++;
	}
	for (size_t i = 0; i < nitems; i++) {
		syncc_rcache_drop(sc, items[i].name);	/* until the replica says OK */
		syncc_cmd_dlist(sc, "APPLY", items[i].mb);
		syncc_send(sc);
	}
	buf_reset(&sc->out);
	buf_appends(&sc->out, "RESTART\r\n");
	syncc_send(sc);
	if (syncc_flush(sc, err) < 0) {
		rc = -1;
		goto out;
	}
	sc->stats.roundtrips++;
	/* the answers, in order */
	for (size_t i = 0; i < nmsgcmds; i++) {
		struct terr e2 = { 0 };
		if (syncc_recv(sc, NULL, NULL, &e2) < 0 && e2.code == TE_IO) {
			*err = e2;
			rc = -1;
			goto out;
		}
	}
	sc->stats.messages += nsent;
	char q[LOGQ_MAX];
	for (size_t i = 0; i < nitems; i++) {
		struct terr e2 = { 0 };
		if (syncc_recv(sc, NULL, NULL, &e2) == 0) {
			syncc_rcache_put(sc, items[i].name, items[i].mb);
			sc->stats.mailboxes++;
			syncc_note_synced(sc, items[i].name);
			continue;
		}
		if (e2.code == TE_IO) {
			*err = e2;
			rc = -1;
			goto out;
		}
		log_notice("event=sync_cache_miss channel=%s mailbox=%s reason=\"%s\"", sc->channel,
			   logq(q, items[i].name), e2.msg);
		slow[(*nslow)++] = items[i].name;
	}
	struct terr e3 = { 0 };
	if (syncc_recv(sc, NULL, NULL, &e3) < 0 && e3.code == TE_IO) {
		*err = e3;
		rc = -1;
	}
out:
	for (size_t i = 0; i < nitems; i++)
		dlist_free(&items[i].mb);
	free(items);
	guidset_free(&known);
	guidset_free(&fresh);
	return rc;
}
