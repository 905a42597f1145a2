/* sync_client_bulk.c: streamed updates for initial and large mailboxes:
 * partial APPLY MAILBOX parts (sync_batchsize), pipelined; several
 * mailboxes through one stream. */
#include "sync/sync_client.h"
#include "sync/sync_client-private.h"

#include "conf/conf.h"
#include "lib/log.h"
#include "lib/xalloc.h"
#include "net/conn.h"
#include "store/store.h"
#include "sync/sync.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

/* A mailbox's update is sent in parts (Cyrus's partial updates,
 * reference §6.6): each part is a consistent state, its LAST_UID and
 * HIGHESTMODSEQ capped so that they cover every record it holds
 * (SYNC_CRC 0: "anything"); the replica checks and commits it durably
 * like any APPLY MAILBOX, and the next part is an incremental update
 * from it (SINCE_MODSEQ); the last one carries the real header and CRCs.
 * A part holds at most sync_batchsize new messages and about
 * SYNCC_PART_BYTES of new bodies.
 *
 * Pipelining: the bodies of part k+1 (APPLY MESSAGE, only staged by the
 * replica) are read, compressed and sent while the replica applies part
 * k, and so is its APPLY MAILBOX: up to SYNC_CLIENT_MAILBOXES_INFLIGHT
 * parts (of this mailbox and the next ones) wait for their answers, so
 * that the replica finds several buffered and makes them durable with
 * one flush (sync_replica.h, "Pipelined APPLY"). A refused part gets the
 * parts of its mailbox behind it refused too (each is an incremental
 * update from the state the refused one would have made: IMAP_SYNC_CHANGED)
 * and changes nothing; the mailbox fails with the first refusal and is
 * retried the general way. Several mailboxes go through one stream the
 * same way. */

/* New bodies per part: small enough that the replica's apply of one part
 * overlaps the reading and compressing of the next. */
#define SYNCC_PART_BYTES (1024L * 1024)
#define SYNCC_PART_BYTES_MIN (128L * 1024)

static size_t gset_slot(const struct gset *s, const char *g)
{
	size_t h = 5381;
	for (const char *p = g; *p; p++)
		h = h * 33 + (unsigned char)*p;
	size_t i = h & (s->cap - 1);
	while (s->g[i][0] && strcmp(s->g[i], g))
		i = (i + 1) & (s->cap - 1);
	return i;
}

static int gset_has(const struct gset *s, const char *g)
{
	return s->cap && s->g[gset_slot(s, g)][0];
}

static void gset_add(struct gset *s, const char *g)
{
	if (2 * (s->n + 1) > s->cap) {
		struct gset big = { NULL, 0, s->cap ? 2 * s->cap : 256 };
		big.g = xcalloc(big.cap, sizeof *big.g);
		for (size_t i = 0; i < s->cap; i++)
			if (s->g[i][0])
				memcpy(big.g[gset_slot(&big, s->g[i])], s->g[i], 41);
		big.n = s->n;
		free(s->g);
		*s = big;
	}
	size_t i = gset_slot(s, g);
	if (!s->g[i][0]) {
		snprintf(s->g[i], sizeof s->g[i], "%s", g);
		s->n++;
	}
}

static void gset_free(struct gset *s)
{
	free(s->g);
	memset(s, 0, sizeof *s);
}

/* One record of a snapshot, as the planning needs it. */
struct prec {
	uint32_t uid;
	uint64_t modseq;
	uint32_t size;
	int expunged;
	char guid[41];
	struct dlist *modseq_item;	/* its MODSEQ value, capped in place while a part is printed */
};

/* Where a part ends: the records up to index end - 1, the state
 * (last_uid, modseq). The last part is the snapshot itself. */
struct cut {
	size_t end;
	uint32_t last_uid;
	uint64_t modseq;
};

static struct prec *snapshot_records(const struct dlist *records, size_t *n_r)
{
	size_t n = records ? records->n : 0;
	struct prec *v = xcalloc(n ? n : 1, sizeof *v);
	for (size_t i = 0; i < n; i++) {
		struct dlist *r = records->items[i];
		dlist_get_num32(r, "UID", &v[i].uid);
		dlist_get_num64(r, "MODSEQ", &v[i].modseq);
		dlist_get_num32(r, "SIZE", &v[i].size);
		if (dlist_get_guid(r, "GUID", v[i].guid) < 0)
			v[i].guid[0] = '\0';
		v[i].expunged = syncc_rec_is_expunged(r);
		for (size_t k = 0; k < r->n; k++)
			if (!strcmp(r->items[k]->key, "MODSEQ"))
				v[i].modseq_item = r->items[k];
	}
	*n_r = n;
	return v;
}

/* The parts of an update from the replica's (rlast, rms) to a snapshot
 * whose records (ascending UID, modseq > rms) are v[0..n) and whose
 * HIGHESTMODSEQ is hms: a cut after every `batch` new records (or
 * SYNCC_PART_BYTES of new bodies), at (LAST_UID, MODSEQ) = (the UID of
 * its last record, the least modseq of the records after it - 1), so
 * every later record is above the cut in both; the cut's modseq must be
 * above the previous one and below hms (else the cut moves on; when no
 * cut is possible the rest is one part). Returns the number of cuts. */
static size_t plan_cuts(const struct prec *v, size_t n, uint32_t rlast, uint64_t rms, uint64_t hms, size_t batch,
			struct cut **cuts_r)
{
	uint64_t *sufmin = xcalloc(n + 1, sizeof *sufmin);
	sufmin[n] = UINT64_MAX;
	for (size_t i = n; i-- > 0;)
		sufmin[i] = v[i].modseq < sufmin[i + 1] ? v[i].modseq : sufmin[i + 1];
	struct cut *cuts = NULL;
	size_t ncuts = 0, p = 0;
	uint64_t base = rms;
	while (p < n && v[p].uid <= rlast)
		p++;
	size_t left = 0;	/* new bodies from p on */
	for (size_t i = p; i < n; i++)
		left += v[i].expunged ? 0 : v[i].size;
	for (size_t part = 0;; part++) {
		/* the first parts grow from SYNCC_PART_BYTES_MIN and the last
		 * ones shrink to it: the replica starts early, and the client
		 * waits little for the last apply */
		size_t budget = (size_t)SYNCC_PART_BYTES_MIN << (part < 16 ? part : 16);
		if (budget > left / 2)
			budget = left / 2;
		if (budget > (size_t)SYNCC_PART_BYTES)
			budget = SYNCC_PART_BYTES;
		if (budget < (size_t)SYNCC_PART_BYTES_MIN)
			budget = left <= 2 * (size_t)SYNCC_PART_BYTES_MIN ? SIZE_MAX : SYNCC_PART_BYTES_MIN;
		size_t k = 0, bytes = 0, j = p;
		while (j < n && k < batch && bytes < budget) {
			bytes += v[j].expunged ? 0 : v[j].size;
			k++;
			j++;
		}
		if (j >= n)
			break;
		size_t e = j;	/* the part is v[..e) */
		while (e < n && !(sufmin[e] - 1 > base && sufmin[e] - 1 < hms))
			e++;
		if (e >= n)
			break;
		cuts = xrealloc(cuts, (ncuts + 1) * sizeof *cuts);
		cuts[ncuts++] = (struct cut){ e, v[e - 1].uid, sufmin[e] - 1 };
		for (size_t i = p; i < e; i++)
			left -= v[i].expunged ? 0 : v[i].size;
		base = sufmin[e] - 1;
		p = e;
	}
	free(sufmin);
	*cuts_r = cuts;
	return ncuts;
}

static void kv_set_num(struct dlist *kv, const char *key, uint64_t v)
{
	struct dlist *d = (struct dlist *)dlist_get(kv, key);
	if (!d)
		d = dlist_add_num(kv, key, v);
	buf_reset(&d->s);
	buf_printf(&d->s, "%llu", (unsigned long long)v);
}

/* Moves RECORD to the end of a MAILBOX kvlist (after SINCE_*). */
static void record_last(struct dlist *mb)
{
	const struct dlist *records = dlist_get_list(mb, "RECORD");
	for (size_t i = 0; records && i + 1 < mb->n; i++)
		if (mb->items[i] == records) {
			memmove(&mb->items[i], &mb->items[i + 1], (mb->n - i - 1) * sizeof *mb->items);
			mb->items[mb->n - 1] = (struct dlist *)records;
			break;
		}
}

/* Header keys a part changes, restored for the last part: the first
 * PART_KEYS_REPLICA are the replica's (0 for a new mailbox), as in
 * Cyrus's partial update; the others are the part's state. */
static const char *const part_keys[] = { "RECENTUID", "RECENTTIME", "POP3_LAST_LOGIN", "POP3_SHOW_AFTER",
					 "XCONVMODSEQ", "RACLMODSEQ", "LAST_UID", "HIGHESTMODSEQ", "SYNC_CRC",
					 "SYNC_CRC_ANNOT", "LAST_APPENDDATE" };
#define NPART_KEYS (sizeof part_keys / sizeof part_keys[0])
#define PART_KEYS_REPLICA 6

/* Reads the answer of the oldest command in flight. -1 only when the
 * connection failed (err set). */
int syncc_stream_recv(struct stream *s, struct terr *err)
{
	struct syncc *sc = s->sc;
	size_t slot = s->qfirst;
	s->qfirst = (s->qfirst + 1) % SYNCC_MAX_PIPELINE;
	s->qn--;
	struct spend *pe = &s->q[slot];
	struct terr e2 = { 0 };
	int r = syncc_recv(sc, pe->cb, pe->rock, &e2);
	if (r < 0 && e2.code == TE_IO) {
		*err = e2;
		return -1;
	}
	if (pe->done)
		*pe->done = 1;
	if (pe->kind == SP_MAILBOX)
		s->mb_inflight--;
	if (pe->kind == SP_OTHER) {
		if (r < 0 && pe->oerr && !pe->oerr->code)
			*pe->oerr = e2;
		return 0;
	}
	struct sitem *it = &s->it[pe->item];
	if (r < 0) {
		if (it->state == 0)
			syncc_item_fail(it, &e2);
	} else if (pe->kind == SP_MAILBOX && pe->last && it->state == 0) {
		it->state = 1;
		syncc_rcache_put(sc, it->name, it->mb);
		dlist_free(&it->mb);
		sc->stats.mailboxes++;
	}
	return 0;
}

/* Sends sc->out now (flushed: the replica starts on it) and remembers it. */
int syncc_stream_send_pe(struct stream *s, const struct spend *pe, struct terr *err)
{
	while (s->qn + 1 >= SYNCC_MAX_PIPELINE)
		if (syncc_stream_recv(s, err) < 0)
			return -1;
	syncc_send(s->sc);
	if (syncc_flush(s->sc, err) < 0)
		return -1;
	s->q[(s->qfirst + s->qn++) % SYNCC_MAX_PIPELINE] = *pe;
	if (pe->kind == SP_MAILBOX)
		s->mb_inflight++;
	return 0;
}

static int stream_send(struct stream *s, enum spend_kind kind, size_t item, int last, struct terr *err)
{
	struct spend pe = { kind, item, last, NULL, NULL, NULL, NULL };
	return syncc_stream_send_pe(s, &pe, err);
}

int syncc_stream_drain(struct stream *s, struct terr *err)
{
	if (s->qn)
		s->sc->stats.roundtrips++;
	while (s->qn)
		if (syncc_stream_recv(s, err) < 0)
			return -1;
	return 0;
}

int syncc_add_body(struct syncc *sc, struct dlist **msg, const char *name, const char *guid, size_t *bytes,
		   struct terr *err)
{
	struct buf path = BUF_INIT;
	uint64_t size = 0;
	int fd = -1;
	/* opened once, by name in its owner's blobs/ directory: the size from
	 * the open file, and the transport sends from that descriptor (no
	 * stat and later open by the whole path) */
	int rc = store_message_open(sc->st, name, guid, &sc->blobs, &fd, &size, &path, err);
	if (rc == 0) {
		if (!*msg)
			*msg = dlist_new(DL_LIST, "MESSAGE");
		dlist_add_file_fd(*msg, NULL, "default", guid, path.ptr, fd, size);
		*bytes += (size_t)size;
	}
	buf_free(&path);
	return rc;
}

/* APPLY MESSAGE for the bodies of v[lo..hi) that the replica needs (not
 * staged by this stream; with need, only those RESERVE reported missing).
 * Bodies go by reference: the transport reads each message file into the
 * connection (sendfile, or pieces through DEFLATE/TLS), never whole into
 * memory; the replica checks each against its GUID as it arrives (a
 * damaged file here gets the APPLY MESSAGE refused, which fails the
 * mailbox). A body whose file is missing fails the mailbox. */
static int send_bodies(struct stream *s, size_t idx, const struct prec *v, size_t lo, size_t hi,
		       const struct gset *need, struct terr *err)
{
	struct syncc *sc = s->sc;
	struct sitem *it = &s->it[idx];
	struct dlist *msg = NULL;
	size_t bytes = 0;
	int rc = 0;
	for (size_t i = lo; i <= hi && rc == 0; i++) {
		if (msg && (i == hi || msg->n >= SYNC_MAX_MESSAGE_FILES || bytes >= SYNCC_MESSAGE_BATCH_BYTES)) {
			syncc_cmd_dlist(sc, "APPLY", msg);
			dlist_free(&msg);
			bytes = 0;
			rc = stream_send(s, SP_MESSAGE, idx, 0, err);
		}
		if (i == hi || rc < 0)
			break;
		if (v[i].expunged || !v[i].guid[0] || gset_has(&s->sent, v[i].guid) ||
		    (need && !gset_has(need, v[i].guid)))
			continue;
		struct terr e2 = { 0 };
		if (syncc_add_body(sc, &msg, it->name, v[i].guid, &bytes, &e2) < 0) {
			syncc_item_fail(it, &e2);
			break;
		}
		gset_add(&s->sent, v[i].guid);
		s->bodies++;
		s->bodies_staged++;
	}
	dlist_free(&msg);
	return rc;
}

/* APPLY RESERVE of the new bodies of an incremental update (outside the
 * pipeline): the GUIDs the replica lacks go to need. */
static int stream_reserve(struct stream *s, const char *name, const struct prec *v, size_t n, uint32_t rlast,
			  struct gset *need, struct terr *err)
{
	struct dlist *res = dlist_new(DL_KVLIST, "RESERVE");
	dlist_add_str(res, "PARTITION", "default");
	dlist_add_str(dlist_add_list(res, "MBOXNAME"), NULL, name);
	struct dlist *guids = dlist_add_list(res, "GUID");
	for (size_t i = 0; i < n; i++)
		if (v[i].uid > rlast && !v[i].expunged && v[i].guid[0] && !gset_has(&s->sent, v[i].guid))
			dlist_add_str(guids, NULL, v[i].guid);
	int rc = 0;
	if (guids->n) {
		struct missing m = { NULL, 0 };
		syncc_cmd_dlist(s->sc, "APPLY", res);
		rc = syncc_stream_drain(s, err) < 0 ? -1 : syncc_roundtrip(s->sc, syncc_collect_missing, &m, err);
		for (size_t i = 0; i < m.n; i++) {
			gset_add(need, m.guids[i]);
			free(m.guids[i]);
		}
		free(m.guids);
	}
	dlist_free(&res);
	return rc;
}

/* Prints a part into sc->out: the records of v[..end) with a modseq
 * above base (the replica's state before it), except records the replica
 * had (before lo) changed after this part's state (top): a later part
 * sends them; modseqs above top capped to it (records new in this part
 * changed later: the next part sends the real one). mb's header is the
 * part's state. */
static void print_part(struct syncc *sc, struct dlist *mb, struct prec *v, size_t lo, size_t end, uint64_t base,
		       uint64_t top)
{
	struct dlist *records = (struct dlist *)dlist_get_list(mb, "RECORD");
	struct dlist **sel = xcalloc(end ? end : 1, sizeof *sel);
	struct buf *saved = xcalloc(end ? end : 1, sizeof *saved);
	size_t nsel = 0;
	for (size_t i = 0; i < end; i++) {
		if (v[i].modseq <= base || (v[i].modseq > top && i < lo))
			continue;
		if (v[i].modseq > top && v[i].modseq_item) {
			saved[i] = v[i].modseq_item->s;
			memset(&v[i].modseq_item->s, 0, sizeof v[i].modseq_item->s);
			buf_printf(&v[i].modseq_item->s, "%llu", (unsigned long long)top);
		}
		sel[nsel++] = records->items[i];
	}
	struct dlist **all = records->items;
	size_t alln = records->n;
	records->items = sel;
	records->n = nsel;
	syncc_cmd_dlist(sc, "APPLY", mb);
	records->items = all;
	records->n = alln;
	for (size_t i = 0; i < end; i++)
		if (saved[i].ptr) {
			buf_free(&v[i].modseq_item->s);
			v[i].modseq_item->s = saved[i];
		}
	free(saved);
	free(sel);
}

/* Streams one mailbox's update from the replica state `remote` (NULL:
 * the replica has no such mailbox). Failures are left in the item. -1
 * only when the connection failed. */
int syncc_stream_mailbox(struct stream *s, size_t idx, const struct dlist *remote, struct terr *err)
{
	struct syncc *sc = s->sc;
	struct sitem *it = &s->it[idx];
	struct rstate_nums rn;
	syncc_remote_nums(remote, &rn);
	uint64_t rms = rn.modseq;
	uint32_t rlast = rn.last_uid, rcrc = rn.crc, rannot = rn.crc_annot;
	struct terr e2 = { 0 };
	if (sync_mailbox_dlist(sc->st, it->name, 1, rms, &it->mb, &e2) < 0) {
		syncc_item_fail(it, &e2);
		return 0;
	}
	struct dlist *mb = it->mb;
	uint64_t hms = 0;
	dlist_get_num64(mb, "HIGHESTMODSEQ", &hms);
	size_t n;
	struct prec *v = snapshot_records(dlist_get_list(mb, "RECORD"), &n);
	long long batch = conf_int(sc->conf, "sync_batchsize");
	struct cut *cuts = NULL;
	size_t ncuts = plan_cuts(v, n, rlast, rms, hms, batch > 0 ? (size_t)batch : 8192, &cuts);
	struct gset need = { 0 };
	int rc = 0;
	syncc_rcache_drop(sc, it->name);
	if (remote && stream_reserve(s, it->name, v, n, rlast, &need, &e2) < 0) {
		rc = e2.code == TE_IO ? (*err = e2, -1) : 0;
		syncc_item_fail(it, &e2);
	}
	/* the full header, restored for the last part */
	char *orig[NPART_KEYS];
	for (size_t k = 0; k < NPART_KEYS; k++) {
		const char *val = dlist_cstr(dlist_get(mb, part_keys[k]));
		orig[k] = val ? xstrdup(val) : NULL;
	}
	uint64_t base = rms;
	size_t lo = 0;
	while (lo < n && v[lo].uid <= rlast)
		lo++;
	for (size_t j = 0; rc == 0 && it->state == 0 && j <= ncuts; j++) {
		size_t hi = j < ncuts ? cuts[j].end : n;
		if (send_bodies(s, idx, v, lo, hi, remote ? &need : NULL, err) < 0) {
			rc = -1;
			break;
		}
		/* several APPLY MAILBOX in flight (the replica shares one flush
		 * among those it finds buffered): the oldest answer first when
		 * SYNC_CLIENT_MAILBOXES_INFLIGHT are */
		while (rc == 0 && s->mb_inflight >= SYNC_CLIENT_MAILBOXES_INFLIGHT)
			rc = syncc_stream_recv(s, err);
		if (rc < 0 || it->state != 0)
			break;
		if (j < ncuts) {
			for (size_t k = 0; k < PART_KEYS_REPLICA; k++) {
				uint64_t rv = 0;
				if (!orig[k])
					continue;
				if (remote)
					dlist_get_num64(remote, part_keys[k], &rv);
				kv_set_num(mb, part_keys[k], rv);
			}
			kv_set_num(mb, "LAST_UID", cuts[j].last_uid);
			kv_set_num(mb, "HIGHESTMODSEQ", cuts[j].modseq);
			kv_set_num(mb, "SYNC_CRC", 0);
			kv_set_num(mb, "SYNC_CRC_ANNOT", 0);
			kv_set_num(mb, "LAST_APPENDDATE", 0);
		} else {
			for (size_t k = 0; k < NPART_KEYS; k++) {
				struct dlist *d = (struct dlist *)dlist_get(mb, part_keys[k]);
				if (d && orig[k]) {
					buf_reset(&d->s);
					buf_appends(&d->s, orig[k]);
				}
			}
		}
		if (remote || j > 0) {
			kv_set_num(mb, "SINCE_MODSEQ", base);
			kv_set_num(mb, "SINCE_CRC", j ? 0 : rcrc);
			kv_set_num(mb, "SINCE_CRC_ANNOT", j ? 0 : rannot);
		}
		record_last(mb);
		print_part(sc, mb, v, lo, hi, base, j < ncuts ? cuts[j].modseq : UINT64_MAX);
		it->parts++;
		if (stream_send(s, SP_MAILBOX, idx, j == ncuts, err) < 0) {
			rc = -1;
			break;
		}
		if (j < ncuts) {
			base = cuts[j].modseq;
			lo = hi;
		}
	}
	for (size_t k = 0; k < NPART_KEYS; k++)
		free(orig[k]);
	if (it->parts > 1 && rc == 0)
		log_debug("event=sync_parts channel=%s mailbox=%s parts=%u", sc->channel, it->name, it->parts);
	gset_free(&need);
	free(cuts);
	free(v);
	return rc;
}

void syncc_item_fail(struct sitem *it, const struct terr *e)
{
	it->state = -1;
	if (!it->err) {
		it->err = xmalloc(sizeof *it->err);
		*it->err = *e;
	}
}

void syncc_item_err(const struct sitem *it, struct terr *e)
{
	if (it->err)
		*e = *it->err;
	else
		terr_set(e, TE_IO, "mailbox %s: not replicated", it->name);
}

size_t syncc_stream_add(struct stream *s, const char *name)
{
	if (s->nit == s->itcap) {
		/* doubling: an initial sync adds an item per mailbox */
		s->itcap = s->itcap ? 2 * s->itcap : 16;
		s->it = xrealloc(s->it, s->itcap * sizeof *s->it);
	}
	memset(&s->it[s->nit], 0, sizeof *s->it);
	s->it[s->nit].name = xstrdup(name);
	return s->nit++;
}

void syncc_stream_init(struct stream *s, struct syncc *sc, char **names, size_t n)
{
	memset(s, 0, sizeof *s);
	s->sc = sc;
	for (size_t i = 0; i < n; i++)
		syncc_stream_add(s, names[i]);
}

/* RESTART in the stream when bodies were staged since the last one: the
 * replica frees them (its staging area stays small and quick to search). */
int syncc_stream_restart(struct stream *s, struct terr *err)
{
	if (!s->bodies_staged)
		return 0;
	buf_reset(&s->sc->out);
	buf_appends(&s->sc->out, "RESTART\r\n");
	s->bodies_staged = 0;
	gset_free(&s->sent);
	return stream_send(s, SP_OTHER, 0, 0, err);
}

/* The end of a stream: RESTART when needed, every answer read. */
int syncc_stream_finish(struct stream *s, struct terr *err)
{
	int rc = syncc_stream_restart(s, err);
	if (rc == 0)
		rc = syncc_stream_drain(s, err);
	s->sc->stats.messages += s->bodies;
	s->bodies = 0;
	return rc;
}

void syncc_stream_free(struct stream *s)
{
	for (size_t i = 0; i < s->nit; i++) {
		free(s->it[i].name);
		free(s->it[i].err);
		dlist_free(&s->it[i].mb);
	}
	free(s->it);
	gset_free(&s->sent);
}

/* One mailbox's update in parts (incremental from remote, or the whole
 * mailbox when remote is NULL: the replica has none). */
int syncc_stream_one(struct syncc *sc, const char *name, const struct dlist *remote, struct terr *err)
{
	struct stream s;
	char *names[1] = { (char *)name };
	syncc_stream_init(&s, sc, names, 1);
	int rc = syncc_stream_mailbox(&s, 0, remote, err);
	if (rc == 0)
		rc = syncc_stream_finish(&s, err);
	if (rc == 0 && s.it[0].state != 1) {
		syncc_item_err(&s.it[0], err);
		rc = -1;
	}
	syncc_stream_free(&s);
	return rc;
}

/* Mailboxes the replica does not have, all in one stream. Those that
 * fail (a refusal, a body that cannot be read) go to retry[] for the
 * general path, which knows what to do about each refusal. -1 only when
 * the connection failed. */
int syncc_stream_new_mailboxes(struct syncc *sc, char **names, size_t n, char **retry, size_t *nretry,
				struct terr *err)
{
	struct stream s;
	syncc_stream_init(&s, sc, names, n);
	int rc = 0;
	for (size_t i = 0; i < n && rc == 0; i++)
		rc = syncc_stream_mailbox(&s, i, NULL, err);
	if (rc == 0)
		rc = syncc_stream_finish(&s, err);
	*nretry = 0;
	char q[LOGQ_MAX];
	for (size_t i = 0; rc == 0 && i < n; i++) {
		if (s.it[i].state == 1) {
			syncc_note_synced(sc, names[i]);
			continue;
		}
		log_notice("event=sync_stream_retry channel=%s mailbox=%s reason=\"%s\"", sc->channel,
			   logq(q, names[i]), s.it[i].err ? s.it[i].err->msg : "");
		retry[(*nretry)++] = names[i];
	}
	syncc_stream_free(&s);
	return rc;
}
