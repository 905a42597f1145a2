/* sync_client_split.c: split brain and repair for the sync client.
 *
 * After a hard failover both sides may hold messages the other lacks.
 * When the replica refuses a full update (IMAP_SYNC_CHECKSUM),
 * syncc_reconcile reads the replica's mailbox (GET FULLMAILBOX) and pairs
 * its records with the master's, by UID (reference §6.7):
 *   - a live replica record the master lacks, or whose UID holds another
 *     GUID on the master, is fetched (GET FETCH) and copied back into the
 *     master (flags, dates and annotations kept): under the same UID when
 *     that is above the master's LAST_UID, else under a new UID above both
 *     sides' LAST_UID; the replica's UID is then marked expunged there
 *     (APPLY EXPUNGE). Nothing is overwritten;
 *   - a live master record whose UID the replica holds with another GUID,
 *     or lacks below its LAST_UID, is renumbered (copied to a new UID, the
 *     old one expunged);
 *   - same message, expunged on one side: expunged on both (the user's
 *     expunge wins, as in Cyrus);
 *   - same message, flags (or dates) differ: Cyrus's rule for "more
 *     recent on replica": the replica's record wins when its MODSEQ is
 *     higher AND its LAST_UPDATED is not older than the master's; in every
 *     other case the master's wins. Either way the winner is written to
 *     the master under a MODSEQ above both sides', so the full update that
 *     follows carries it to the replica. (A replica record with a lower
 *     MODSEQ is left to that full update, which overwrites it: the same
 *     rule, the master wins);
 *   - the master's HIGHESTMODSEQ and LAST_UID are raised above the
 *     replica's so the following full update is accepted.
 * The master's side is written with one store_apply_mailbox (force) on the
 * master's own store, so the new UIDs, modseqs and annotations are exact.
 * Every copy-back and renumbering is logged (event=splitbrain_copyback,
 * event=splitbrain_renumber) and noted in <configdir>/sync/<channel>/
 * splitbrain, which `tandem status` prints.
 *
 * Also here: renaming a same-name mailbox with another uniqueid aside on
 * the replica (repair only), replica-only mailboxes (kept, noted),
 * `tandem repair`, and the JSON report of compare and repair.
 */
#include "sync/sync_client-private.h"

#include "chlog/chlog.h"
#include "conf/conf.h"
#include "lib/fsutil.h"
#include "lib/log.h"
#include "lib/sha1.h"
#include "lib/xalloc.h"
#include "store/store.h"
#include "sync/sync.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

/* ---- reported items ----------------------------------------------------------------------- */

void syncc_items_add(struct syncc_items *it, const char *mailbox, const char *kind, const char *detail)
{
	it->v = xrealloc(it->v, (it->n + 1) * sizeof *it->v);
	struct syncc_item *x = &it->v[it->n++];
	memset(x, 0, sizeof *x);
	x->mailbox = xstrdup(mailbox ? mailbox : "");
	x->kind = xstrdup(kind ? kind : "");
	x->detail = xstrdup(detail ? detail : "");
}

void syncc_items_free(struct syncc_items *it)
{
	for (size_t i = 0; i < it->n; i++) {
		free(it->v[i].mailbox);
		free(it->v[i].kind);
		free(it->v[i].detail);
	}
	free(it->v);
	it->v = NULL;
	it->n = 0;
}

static void items_truncate(struct syncc_items *it, size_t n)
{
	while (it->n > n) {
		it->n--;
		free(it->v[it->n].mailbox);
		free(it->v[it->n].kind);
		free(it->v[it->n].detail);
	}
}

static void add_msg_item(struct syncc_items *it, const char *mailbox, const char *kind, uint32_t ruid, uint32_t nuid,
			 const char *guid)
{
	syncc_items_add(it, mailbox, kind, "");
	struct syncc_item *x = &it->v[it->n - 1];
	x->replica_uid = ruid;
	x->new_uid = nuid;
	snprintf(x->guid, sizeof x->guid, "%s", guid);
}

/* ---- the channel's split-brain notes: <configdir>/sync/<channel>/splitbrain ------------- */

static void notes_path(const struct conf *conf, const char *channel, struct buf *out)
{
	chlog_path(conf_str(conf, "configdirectory"), channel, "splitbrain", out);
}

/* One line "epoch TAB kind TAB mailbox TAB detail", appended and fsynced;
 * with once, not if a line of that kind and mailbox is there already. */
static void note(struct syncc *sc, const char *kind, const char *mailbox, const char *detail, int once)
{
	struct buf path = BUF_INIT, line = BUF_INIT, old = BUF_INIT;
	notes_path(sc->conf, sc->channel, &path);
	buf_printf(&line, "\t%s\t%s\t", kind, mailbox);
	struct terr e;
	if (once && fs_read_file(path.ptr, 16 << 20, &old, &e) == 0 && strstr(buf_cstr(&old), line.ptr))
		goto out;
	buf_reset(&line);
	buf_printf(&line, "%lld\t%s\t%s\t", (long long)time(NULL), kind, mailbox);
	for (const char *p = detail; *p; p++)
		buf_putc(&line, *p == '\t' || *p == '\n' || *p == '\r' ? ' ' : *p);
	buf_putc(&line, '\n');
	char *slash = strrchr(path.ptr, '/');
	*slash = '\0';
	int ok = fs_mkdir_p(path.ptr, 0750, &e) == 0;
	*slash = '/';
	int fd = ok ? open(path.ptr, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640) : -1;
	if (fd < 0 || fs_write_all(fd, line.ptr, line.len, path.ptr, &e) < 0 || fs_fsync(fd, path.ptr, &e) < 0)
		log_warn("event=splitbrain_note_fail channel=%s path=%s", sc->channel, path.ptr);
	if (fd >= 0)
		close(fd);
out:
	buf_free(&path);
	buf_free(&line);
	buf_free(&old);
}

void syncc_splitbrain_status(const struct conf *conf, const char *channel, struct buf *out)
{
	struct buf path = BUF_INIT, data = BUF_INIT;
	notes_path(conf, channel, &path);
	struct terr e;
	if (fs_read_file(path.ptr, 16 << 20, &data, &e) == 0) {
		for (char *line = data.ptr; line && *line;) {
			char *nl = strchr(line, '\n');
			if (nl)
				*nl = '\0';
			char *f[4] = { line, NULL, NULL, NULL };
			for (int k = 1; k < 4 && f[k - 1]; k++) {
				char *tab = strchr(f[k - 1], '\t');
				if (tab) {
					*tab = '\0';
					f[k] = tab + 1;
				}
			}
			char q[LOGQ_MAX];
			if (f[3])
				buf_printf(out, "channel=%s splitbrain=%s mailbox=%s%s%s at=%s\n", *channel ? channel : "\"\"",
					   f[1], logq(q, f[2]), *f[3] ? " " : "", f[3], f[0]);
			line = nl ? nl + 1 : NULL;
		}
	}
	buf_free(&path);
	buf_free(&data);
}

void syncc_note_replica_only(struct syncc *sc, const char *name)
{
	if (!strncmp(name, "DELETED.", 8))
		return;		/* a Cyrus replica's delayed-delete copy */
	char q[LOGQ_MAX];
	log_notice("event=splitbrain_replica_only channel=%s mailbox=%s action=kept", sc->channel, logq(q, name));
	note(sc, "replica_only", name, "kept on the replica", 1);
	for (size_t i = 0; i < sc->kept.n; i++)
		if (!strcmp(sc->kept.v[i].mailbox, name))
			return;
	syncc_items_add(&sc->kept, name, "only_on_replica", "kept on the replica");
}

/* ---- reading the replica ---------------------------------------------------------------- */

void syncc_take_mailbox(void *rock, struct dlist *kv)
{
	struct dlist **out = rock;
	if (strcasecmp(kv->key, "MAILBOX") || *out)
		return;
	*out = dlist_take_items(kv, "MAILBOX");
}

/* GET FULLMAILBOX: *mb_r NULL when the replica has no such mailbox. */
static int get_full(struct syncc *sc, const char *name, struct dlist **mb_r, struct terr *err)
{
	*mb_r = NULL;
	struct dlist *get = dlist_new(DL_STR, "FULLMAILBOX");
	buf_appends(&get->s, name);
	syncc_cmd_dlist(sc, "GET", get);
	dlist_free(&get);
	if (syncc_roundtrip(sc, syncc_take_mailbox, mb_r, err) < 0) {
		dlist_free(mb_r);
		return err->code == TE_NOTFOUND ? 0 : -1;
	}
	return 0;
}

/* Message bodies fetched from the replica, by GUID. */
struct bodies {
	char (*guid)[41];
	struct buf *data;
	size_t n;
};

static int bodies_cb(void *rock, const char *guid, const void **data_r, size_t *len_r)
{
	const struct bodies *b = rock;
	for (size_t i = 0; i < b->n; i++)
		if (!strcmp(b->guid[i], guid)) {
			*data_r = b->data[i].ptr ? b->data[i].ptr : "";
			*len_r = b->data[i].len;
			return 0;
		}
	return -1;
}

static void bodies_free(struct bodies *b)
{
	for (size_t i = 0; i < b->n; i++)
		buf_free(&b->data[i]);
	free(b->guid);
	free(b->data);
	memset(b, 0, sizeof *b);
}

struct fetched {
	struct buf *data;
	int got;	/* 1 file, -1 NIL */
};

static void fetch_body_cb(void *rock, struct dlist *kv)
{
	struct fetched *f = rock;
	if (strcasecmp(kv->key, "MESSAGE"))
		return;
	if (kv->type == DL_FILE) {
		buf_reset(f->data);
		buf_append(f->data, kv->s.ptr ? kv->s.ptr : "", kv->s.len);
		f->got = 1;
	} else {
		f->got = -1;
	}
}

/* GET FETCH of one replica record into b (checked against its GUID). */
static int fetch_body(struct syncc *sc, const struct dlist *rmb, uint32_t uid, const char *guid, struct bodies *b,
		      struct terr *err)
{
	if (bodies_cb(b, guid, &(const void *){ NULL }, &(size_t){ 0 }) == 0)
		return 0;
	const char *name = "", *uniqueid = "", *part = "default";
	dlist_get_str(rmb, "MBOXNAME", &name);
	dlist_get_str(rmb, "UNIQUEID", &uniqueid);
	dlist_get_str(rmb, "PARTITION", &part);
	struct dlist *f = dlist_new(DL_KVLIST, "FETCH");
	dlist_add_str(f, "MBOXNAME", name);
	dlist_add_str(f, "PARTITION", part);
	dlist_add_str(f, "UNIQUEID", uniqueid);
	dlist_add_str(f, "GUID", guid);
	dlist_add_num(f, "UID", uid);
	syncc_cmd_dlist(sc, "GET", f);
	dlist_free(&f);
	struct buf data = BUF_INIT;
	struct fetched fr = { &data, 0 };
	if (syncc_roundtrip(sc, fetch_body_cb, &fr, err) < 0) {
		buf_free(&data);
		return -1;
	}
	char got[41];
	sha1_hex(data.ptr ? data.ptr : "", data.len, got);
	if (fr.got != 1 || strcmp(got, guid)) {
		buf_free(&data);
		return terr_set(err, TE_CORRUPT, "%s uid %u: the replica's copy of %s is %s", name, uid, guid,
				fr.got == 1 ? "damaged" : "missing");
	}
	b->guid = xrealloc(b->guid, (b->n + 1) * sizeof *b->guid);
	b->data = xrealloc(b->data, (b->n + 1) * sizeof *b->data);
	snprintf(b->guid[b->n], 41, "%s", guid);
	b->data[b->n++] = data;
	return 0;
}

/* ---- pairing the master's and the replica's records -------------------------------------- */

struct merge {
	const struct store_apply *L, *R;
	struct store_apply_record *fix, *add;	/* rewrites/same-UID copies (UID <= top), new UIDs */
	size_t nfix, nadd;
	struct store_apply_annot *an;
	size_t nan;
	uint32_t *rexp;		/* replica UIDs to mark expunged there */
	size_t nrexp;
	struct { uint32_t ruid; char guid[41]; } *fetch;	/* replica bodies to copy back */
	size_t nfetch;
	uint32_t next;
	uint64_t ms;
	int64_t now;
	const char *name;
	struct syncc *sc;
};

static int is_exp(const struct store_apply_record *r)
{
	return (r->sysflags & SYSFLAG_EXPUNGED) != 0;
}

/* Adds a copy of src (of side `from`) as UID uid to list; extra system
 * flags or'ed in; annotations of src's UID follow it. */
static void put(struct merge *m, int to_add, const struct store_apply *from, const struct store_apply_record *src,
		uint32_t uid, unsigned extra)
{
	struct store_apply_record **list = to_add ? &m->add : &m->fix;
	size_t *n = to_add ? &m->nadd : &m->nfix;
	*list = xrealloc(*list, (*n + 1) * sizeof **list);
	struct store_apply_record *r = &(*list)[(*n)++];
	*r = *src;
	r->uid = uid;
	r->modseq = ++m->ms;
	r->last_updated = m->now;
	r->sysflags |= extra;
	for (size_t i = 0; i < from->nannots; i++)
		if (from->annots[i].uid == src->uid) {
			m->an = xrealloc(m->an, (m->nan + 1) * sizeof *m->an);
			m->an[m->nan] = from->annots[i];
			m->an[m->nan++].uid = uid;
		}
}

static void want_fetch(struct merge *m, const struct store_apply_record *rr)
{
	m->fetch = xrealloc(m->fetch, (m->nfetch + 1) * sizeof *m->fetch);
	m->fetch[m->nfetch].ruid = rr->uid;
	snprintf(m->fetch[m->nfetch++].guid, 41, "%s", rr->guid);
}

static void replica_expunge(struct merge *m, uint32_t uid)
{
	m->rexp = xrealloc(m->rexp, (m->nrexp + 1) * sizeof *m->rexp);
	m->rexp[m->nrexp++] = uid;
}

/* The replica's live record goes to the master: same UID when free there. */
static void copy_back(struct merge *m, const struct store_apply_record *rr)
{
	int same = rr->uid > m->L->last_uid;
	uint32_t uid = same ? rr->uid : m->next++;
	put(m, !same, m->R, rr, uid, 0);
	want_fetch(m, rr);
	if (!same)
		replica_expunge(m, rr->uid);
	add_msg_item(&m->sc->copied, m->name, "copyback", rr->uid, uid, rr->guid);
}

/* The master's live record moves to a new UID; the old one is expunged. */
static void renumber(struct merge *m, const struct store_apply_record *lr)
{
	uint32_t uid = m->next++;
	put(m, 1, m->L, lr, uid, 0);
	put(m, 0, m->L, lr, lr->uid, SYSFLAG_EXPUNGED);
	add_msg_item(&m->sc->renumbered, m->name, "renumber", lr->uid, uid, lr->guid);
}

static void pair_both(struct merge *m, const struct store_apply_record *lr, const struct store_apply_record *rr)
{
	int lx = is_exp(lr), rx = is_exp(rr);
	if (lx && rx)
		return;
	if (strcmp(lr->guid, rr->guid)) {
		/* two messages under one UID: both move, the lower GUID first */
		int replica_first = strcmp(rr->guid, lr->guid) < 0;
		for (int k = 0; k < 2; k++) {
			int replica = (k == 0) == replica_first;
			if (replica && !rx)
				copy_back(m, rr);
			else if (!replica && !lx)
				renumber(m, lr);
		}
		return;
	}
	if (lx) {
		replica_expunge(m, rr->uid);	/* expunged on the master: there too */
		return;
	}
	if (rx) {
		put(m, 0, m->L, lr, lr->uid, SYSFLAG_EXPUNGED);	/* expunged on the replica: here too */
		return;
	}
	if (rr->modseq < lr->modseq)
		return;		/* the master's is newer: the update sends it */
	if (rr->modseq == lr->modseq && rr->sysflags == lr->sysflags && !strcmp(rr->keywords, lr->keywords) &&
	    rr->internaldate == lr->internaldate)
		return;
	/* changed on the replica: its flags win when its record has the
	 * higher modseq and is not the older update (Cyrus's rule, see the
	 * file comment); either way the master's record gets a modseq above
	 * both sides' */
	int theirs = rr->modseq > lr->modseq && rr->last_updated >= lr->last_updated;
	put(m, 0, theirs ? m->R : m->L, theirs ? rr : lr, lr->uid, 0);
}

/* Walks both sides' records (ascending UIDs). */
static void pair_all(struct merge *m)
{
	const struct store_apply *L = m->L, *R = m->R;
	size_t i = 0, k = 0;
	while (i < L->nrecs || k < R->nrecs) {
		const struct store_apply_record *lr = i < L->nrecs ? &L->recs[i] : NULL;
		const struct store_apply_record *rr = k < R->nrecs ? &R->recs[k] : NULL;
		if (lr && rr && lr->uid == rr->uid) {
			pair_both(m, lr, rr);
			i++;
			k++;
		} else if (lr && (!rr || lr->uid < rr->uid)) {
			if (!is_exp(lr) && lr->uid <= R->last_uid)
				renumber(m, lr);	/* a gap on the replica: it would refuse the UID */
			i++;
		} else {
			if (!is_exp(rr))
				copy_back(m, rr);
			k++;
		}
	}
}

static void merge_free(struct merge *m)
{
	free(m->fix);
	free(m->add);
	free(m->an);
	free(m->rexp);
	free(m->fetch);
}

/* Writes the master's side: one forced apply with exact UIDs and modseqs. */
static int apply_master(struct syncc *sc, struct merge *m, struct bodies *b, struct terr *err)
{
	struct store_apply a = *m->L;
	size_t n = m->nfix + m->nadd;
	struct store_apply_record *recs = xcalloc(n ? n : 1, sizeof *recs);
	if (m->nfix)
		memcpy(recs, m->fix, m->nfix * sizeof *recs);
	if (m->nadd)
		memcpy(recs + m->nfix, m->add, m->nadd * sizeof *recs);
	a.recs = recs;
	a.nrecs = n;
	a.annots = m->an;
	a.nannots = m->nan;
	a.has_mbox_annots = 0;
	a.force = 1;
	a.has_since = 0;
	a.sync_crc = a.sync_crc_annot = 0;
	a.last_uid = m->next - 1;
	a.highestmodseq = m->ms;
	if (m->R->uidvalidity > a.uidvalidity)
		a.uidvalidity = m->R->uidvalidity;
	a.body = bodies_cb;
	a.body_rock = b;
	int rc = store_apply_mailbox(sc->st, &a, err);
	free(recs);
	return rc;
}

static int expunge_on_replica(struct syncc *sc, const char *name, const char *uniqueid, const struct merge *m,
			      struct terr *err)
{
	if (!m->nrexp)
		return 0;
	struct dlist *kv = dlist_new(DL_KVLIST, "EXPUNGE");
	dlist_add_str(kv, "MBOXNAME", name);
	dlist_add_str(kv, "UNIQUEID", uniqueid);
	struct dlist *uids = dlist_add_list(kv, "UID");
	for (size_t i = 0; i < m->nrexp; i++)
		dlist_add_num(uids, NULL, m->rexp[i]);
	syncc_cmd_dlist(sc, "APPLY", kv);
	dlist_free(&kv);
	return syncc_roundtrip(sc, NULL, NULL, err);
}

static void report_merge(struct syncc *sc, const char *name, size_t copied0, size_t renum0)
{
	char q[LOGQ_MAX];
	char d[160];
	for (size_t i = copied0; i < sc->copied.n; i++) {
		const struct syncc_item *x = &sc->copied.v[i];
		log_notice("event=splitbrain_copyback channel=%s mailbox=%s replica_uid=%u new_uid=%u guid=%s", sc->channel,
			   logq(q, name), x->replica_uid, x->new_uid, x->guid);
		snprintf(d, sizeof d, "replica_uid=%u new_uid=%u guid=%s", x->replica_uid, x->new_uid, x->guid);
		note(sc, "copyback", name, d, 0);
	}
	for (size_t i = renum0; i < sc->renumbered.n; i++) {
		const struct syncc_item *x = &sc->renumbered.v[i];
		log_notice("event=splitbrain_renumber channel=%s mailbox=%s old_uid=%u new_uid=%u guid=%s", sc->channel,
			   logq(q, name), x->replica_uid, x->new_uid, x->guid);
		snprintf(d, sizeof d, "old_uid=%u new_uid=%u guid=%s", x->replica_uid, x->new_uid, x->guid);
		note(sc, "renumber", name, d, 0);
	}
}

int syncc_reconcile(struct syncc *sc, const char *name, struct terr *err)
{
	struct dlist *rmb = NULL, *lmb = NULL;
	struct store_apply L, R;
	struct bodies b = { NULL, NULL, 0 };
	int haveL = 0, haveR = 0, rc = -1;
	size_t copied0 = sc->copied.n, renum0 = sc->renumbered.n;
	struct merge m;
	memset(&m, 0, sizeof m);
	if (get_full(sc, name, &rmb, err) < 0)
		goto out;
	if (!rmb) {
		rc = 1;
		goto out;
	}
	if (sync_mailbox_dlist(sc->st, name, 1, 0, &lmb, err) < 0 || sync_apply_from_dlist(lmb, &L, err) < 0)
		goto out;
	haveL = 1;
	if (sync_apply_from_dlist(rmb, &R, err) < 0)
		goto out;
	haveR = 1;
	if (strcmp(L.uniqueid, R.uniqueid)) {
		rc = 1;		/* another mailbox under this name: not a record split brain */
		goto out;
	}
	m.L = &L;
	m.R = &R;
	m.next = (L.last_uid > R.last_uid ? L.last_uid : R.last_uid) + 1;
	m.ms = L.highestmodseq > R.highestmodseq ? L.highestmodseq : R.highestmodseq;
	m.now = (int64_t)time(NULL);
	m.name = name;
	m.sc = sc;
	pair_all(&m);
	int header = L.highestmodseq < R.highestmodseq || L.last_uid < R.last_uid;
	if (!m.nfix && !m.nadd && !m.nrexp && !header) {
		rc = 1;
		goto out;
	}
	/* the replica's bodies first: nothing changes anywhere if one is unreadable */
	for (size_t i = 0; i < m.nfetch; i++)
		if (fetch_body(sc, rmb, m.fetch[i].ruid, m.fetch[i].guid, &b, err) < 0)
			goto out;
	if (apply_master(sc, &m, &b, err) < 0)
		goto out;
	report_merge(sc, name, copied0, renum0);
	if (expunge_on_replica(sc, name, R.uniqueid, &m, err) < 0)
		goto out;
	char q[LOGQ_MAX];
	log_notice("event=splitbrain_reconciled channel=%s mailbox=%s copied_back=%zu renumbered=%zu"
		   " replica_expunged=%zu", sc->channel, logq(q, name), sc->copied.n - copied0,
		   sc->renumbered.n - renum0, m.nrexp);
	rc = 0;
out:
	if (rc < 0) {
		/* nothing was copied back after all: drop this attempt's items */
		items_truncate(&sc->copied, copied0);
		items_truncate(&sc->renumbered, renum0);
	}
	merge_free(&m);
	bodies_free(&b);
	if (haveL)
		sync_apply_free(&L);
	if (haveR)
		sync_apply_free(&R);
	dlist_free(&lmb);
	dlist_free(&rmb);
	return rc;
}

/* ---- same name, another uniqueid ------------------------------------------------------------ */

int syncc_rename_aside(struct syncc *sc, const char *name, const struct dlist *remote, struct terr *err)
{
	const char *ru = "", *part = "default";
	uint32_t uidvalidity = 0;
	dlist_get_str(remote, "UNIQUEID", &ru);
	dlist_get_str(remote, "PARTITION", &part);
	dlist_get_num32(remote, "UIDVALIDITY", &uidvalidity);
	if (!strncmp(name, "user.", 5) && !strchr(name + 5, '.'))
		return terr_set(err, TE_MOVED, "%s: the replica's INBOX has another uniqueid (%s); a user's INBOX is"
				" never renamed aside: move its mail by hand", name, ru);
	struct buf aside = BUF_INIT;
	buf_printf(&aside, "%s-splitbrain-%.8s", name, ru);
	struct dlist *rn = dlist_new(DL_KVLIST, "RENAME");
	dlist_add_str(rn, "OLDMBOXNAME", name);
	dlist_add_str(rn, "NEWMBOXNAME", aside.ptr);
	dlist_add_str(rn, "PARTITION", part);
	if (uidvalidity)
		dlist_add_num(rn, "UIDVALIDITY", uidvalidity);
	syncc_cmd_dlist(sc, "APPLY", rn);
	dlist_free(&rn);
	int rc = syncc_roundtrip(sc, NULL, NULL, err);
	if (rc == 0) {
		char q[LOGQ_MAX], q2[LOGQ_MAX];
		log_notice("event=splitbrain_rename_aside channel=%s mailbox=%s replica_uniqueid=%s renamed_to=%s",
			   sc->channel, logq(q, name), ru, logq(q2, aside.ptr));
		struct buf d = BUF_INIT;
		buf_printf(&d, "replica_uniqueid=%s renamed_to=%s", ru, aside.ptr);
		note(sc, "renamed_aside", name, d.ptr, 0);
		syncc_items_add(&sc->renamed, name, "renamed_aside", d.ptr);
		buf_free(&d);
		syncc_note_replica_only(sc, aside.ptr);
	}
	buf_free(&aside);
	return rc;
}

/* ---- copying a replica-only mailbox to the master ------------------------------------------ */

static int copy_mailbox_back(struct syncc *sc, const char *name, struct terr *err)
{
	struct dlist *rmb = NULL;
	struct store_apply a;
	struct bodies b = { NULL, NULL, 0 };
	int rc = -1, have = 0;
	if (get_full(sc, name, &rmb, err) < 0)
		return -1;
	if (!rmb)
		return terr_set(err, TE_NOTFOUND, "%s is not on the replica", name);
	if (sync_apply_from_dlist(rmb, &a, err) < 0)
		goto out;
	have = 1;
	for (size_t i = 0; i < a.nrecs; i++)
		if (!is_exp(&a.recs[i]) && fetch_body(sc, rmb, a.recs[i].uid, a.recs[i].guid, &b, err) < 0)
			goto out;
	a.body = bodies_cb;
	a.body_rock = &b;
	a.sync_crc = a.sync_crc_annot = 0;
	if (store_apply_mailbox(sc->st, &a, err) < 0)
		goto out;
	char q[LOGQ_MAX];
	size_t live = 0;
	for (size_t i = 0; i < a.nrecs; i++)
		if (!is_exp(&a.recs[i])) {
			live++;
			add_msg_item(&sc->copied, name, "copyback", a.recs[i].uid, a.recs[i].uid, a.recs[i].guid);
		}
	log_notice("event=splitbrain_mailbox_copyback channel=%s mailbox=%s messages=%zu", sc->channel, logq(q, name),
		   live);
	char d[64];
	snprintf(d, sizeof d, "copied to the master, messages=%zu", live);
	note(sc, "mailbox_copyback", name, d, 0);
	rc = 0;
out:
	if (have)
		sync_apply_free(&a);
	bodies_free(&b);
	dlist_free(&rmb);
	return rc;
}

/* ---- repair ------------------------------------------------------------------------------- */

static void nl_remote_cb(void *rock, struct dlist *kv)
{
	const char *name;
	if (!strcasecmp(kv->key, "MAILBOX") && dlist_get_str(kv, "MBOXNAME", &name) == 0 && strncmp(name, "DELETED.", 8))
		syncc_names_add(rock, name);
}

/* Every mailbox of a user, here and on the replica. */
static int user_mailboxes(struct syncc *sc, const char *user, struct names *out, struct terr *err)
{
	struct dlist *get = dlist_new(DL_STR, "USER");
	buf_appends(&get->s, user);
	syncc_cmd_dlist(sc, "GET", get);
	dlist_free(&get);
	if (syncc_roundtrip(sc, nl_remote_cb, out, err) < 0)
		return -1;
	struct terr e2;
	if (store_mailbox_list(sc->st, user, syncc_list_cb, out, &e2) < 0 && e2.code != TE_NOTFOUND) {
		*err = e2;
		return -1;
	}
	return 0;
}

/* The kinds of this mailbox's differences, from index `from` of sc->diffs. */
static int only_on_replica(const struct syncc *sc, size_t from)
{
	for (size_t i = from; i < sc->diffs.n; i++)
		if (!strcmp(sc->diffs.v[i].kind, "only_on_replica"))
			return 1;
	return 0;
}

static int repair_mailbox(struct syncc *sc, const struct syncc_repair_opts *ro, const char *name, struct terr *err)
{
	struct buf report = BUF_INIT;
	int ndiff = 0;
	size_t d0 = sc->diffs.n;
	int rc = syncc_compare_mailbox(sc, name, &report, &ndiff, err);
	buf_free(&report);
	if (rc < 0 || ndiff == 0 || ro->dry_run)
		return rc;
	struct buf kinds = BUF_INIT;
	for (size_t i = d0; i < sc->diffs.n; i++)
		if (!strstr(buf_cstr(&kinds), sc->diffs.v[i].kind))
			buf_printf(&kinds, "%s%s", kinds.len ? "," : "", sc->diffs.v[i].kind);
	char q[LOGQ_MAX];
	struct terr e2 = { 0 };
	if (only_on_replica(sc, d0)) {
		if (!ro->copy_mailboxes) {
			syncc_note_replica_only(sc, name);
		} else if (copy_mailbox_back(sc, name, &e2) == 0) {
			syncc_items_add(&sc->repaired, name, "copied_to_master", kinds.ptr);
		} else {
			log_warn("event=repair_fail channel=%s mailbox=%s error=\"%s\"", sc->channel, logq(q, name), e2.msg);
			*err = e2;
			rc = e2.code == TE_IO ? -1 : 0;
		}
	} else {
		sc->repair = 1;
		size_t f0 = sc->nfailed;
		const char *one[1] = { name };
		int r = syncc_mailboxes(sc, one, 1, &e2);
		sc->repair = 0;
		if (r == 0 && sc->nfailed == f0) {
			syncc_items_add(&sc->repaired, name, "full_update", kinds.ptr);
			log_notice("event=repair_mailbox channel=%s mailbox=%s differences=%s", sc->channel, logq(q, name),
				   kinds.ptr);
		} else {
			*err = e2;
			if (e2.code == TE_IO)
				rc = -1;
		}
	}
	buf_free(&kinds);
	if (rc < 0)
		return rc;
	/* what is left */
	struct syncc_items found = sc->diffs;
	sc->diffs = sc->remaining;
	report = (struct buf)BUF_INIT;
	ndiff = 0;
	rc = syncc_compare_mailbox(sc, name, &report, &ndiff, err);
	buf_free(&report);
	sc->remaining = sc->diffs;
	sc->diffs = found;
	return rc;
}

int syncc_repair(struct syncc *sc, const struct syncc_repair_opts *ro, struct terr *err)
{
	struct names mb = { NULL, 0 }, users = { NULL, 0 };
	int rc = 0;
	syncc_compare_bodies(sc, ro->bodies);
	for (size_t i = 0; i < ro->nmailboxes; i++)
		syncc_names_add(&mb, ro->mailboxes[i]);
	for (size_t i = 0; i < ro->nusers; i++)
		syncc_names_add(&users, ro->users[i]);
	if (ro->all) {
		rc = store_user_list(sc->st, syncc_all_users_cb, &users, err);
		if (rc == 0 && store_mailbox_list(sc->st, "", syncc_list_cb, &mb, err) < 0)
			rc = -1;
	}
	for (size_t u = 0; rc == 0 && u < users.n; u++)
		rc = user_mailboxes(sc, users.v[u], &mb, err);
	for (size_t i = 0; rc == 0 && i < mb.n; i++) {
		struct terr e2 = { 0 };
		if (repair_mailbox(sc, ro, mb.v[i], &e2) < 0) {
			*err = e2;
			rc = -1;
		}
	}
	/* user-level state (subscriptions) of whole users */
	if (rc == 0 && users.n && !ro->dry_run) {
		struct terr e2 = { 0 };
		if (syncc_users(sc, (const char *const *)users.v, users.n, &e2) < 0 && e2.code == TE_IO) {
			*err = e2;
			rc = -1;
		}
	}
	syncc_names_free(&mb);
	syncc_names_free(&users);
	if (rc == 0 && sc->remaining.n) {
		size_t real = 0;
		for (size_t i = 0; i < sc->remaining.n; i++)
			real += strcmp(sc->remaining.v[i].kind, "only_on_replica") != 0;
		if (real)
			rc = terr_set(err, TE_CHECKSUM, "%zu difference%s left after repair, first %s %s", real,
				      real == 1 ? "" : "s", sc->remaining.v[0].mailbox, sc->remaining.v[0].kind);
	}
	return rc;
}

/* ---- JSON report -------------------------------------------------------------------------- */

static void json_items(struct buf *out, const char *key, const struct syncc_items *it)
{
	buf_printf(out, ",\n  \"%s\": [", key);
	for (size_t i = 0; i < it->n; i++) {
		buf_appends(out, i ? ",\n    {\"mailbox\": " : "\n    {\"mailbox\": ");
		buf_json_str(out, it->v[i].mailbox);
		buf_appends(out, ", \"kind\": ");
		buf_json_str(out, it->v[i].kind);
		buf_appends(out, ", \"detail\": ");
		buf_json_str(out, it->v[i].detail);
		buf_putc(out, '}');
	}
	buf_appends(out, it->n ? "\n  ]" : "]");
}

static void json_msgs(struct buf *out, const char *key, const char *uidkey, const struct syncc_items *it)
{
	buf_printf(out, ",\n  \"%s\": [", key);
	for (size_t i = 0; i < it->n; i++) {
		buf_appends(out, i ? ",\n    {\"mailbox\": " : "\n    {\"mailbox\": ");
		buf_json_str(out, it->v[i].mailbox);
		buf_printf(out, ", \"%s\": %u, \"new_uid\": %u, \"guid\": \"%s\"}", uidkey, it->v[i].replica_uid,
			   it->v[i].new_uid, it->v[i].guid);
	}
	buf_appends(out, it->n ? "\n  ]" : "]");
}

void syncc_report_json(const struct syncc *sc, int equal, struct buf *out)
{
	buf_printf(out, "{\n  \"channel\": ");
	buf_json_str(out, sc->channel);
	buf_printf(out, ",\n  \"equal\": %s", equal ? "true" : "false");
	json_items(out, "differences", &sc->diffs);
	json_items(out, "repaired", &sc->repaired);
	json_items(out, "remaining", &sc->remaining);
	json_items(out, "kept", &sc->kept);
	json_items(out, "renamed", &sc->renamed);
	json_msgs(out, "copied_back", "replica_uid", &sc->copied);
	json_msgs(out, "renumbered", "old_uid", &sc->renumbered);
	buf_appends(out, "\n}\n");
}

int syncc_report_equal(const struct syncc *sc, int dry_run)
{
	return dry_run ? sc->diffs.n == 0 : sc->remaining.n == 0 && sc->kept.n == 0;
}
