/* sync_replica.c: the replica engine (sync_replica.h): the command
 * table, staged bodies, the APPLY commands, and the one place where an
 * error becomes a reply line. */
#include "sync/sync_replica-private.h"

#include "lib/fsutil.h"
#include "lib/limits.h"
#include "lib/log.h"
#include "lib/sha1.h"
#include "lib/xalloc.h"
#include "names/mboxname.h"
#include "store/store.h"
#include "sync/sync.h"

#include <ctype.h>
#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- staged bodies --------------------------------------------------------------------- */

static size_t guid_hash(const char *g)
{
	size_t h = 5381;
	for (const char *p = g; *p; p++)
		h = h * 33 + (unsigned char)*p;
	return h;
}

/* The slot of guid in the index: its entry's, or the free one where it goes. */
static size_t staged_slot(const struct sync_replica *r, const char *guid)
{
	size_t i = guid_hash(guid) & (r->hcap - 1);
	while (r->hidx[i] && strcmp(r->staged[r->hidx[i] - 1].guid, guid))
		i = (i + 1) & (r->hcap - 1);
	return i;
}

static struct rstaged *staged_find(const struct sync_replica *r, const char *guid)
{
	if (!r->hcap)
		return NULL;
	size_t i = staged_slot(r, guid);
	return r->hidx[i] ? &r->staged[r->hidx[i] - 1] : NULL;
}

const struct rstaged *replica_staged(const struct sync_replica *r, const char *guid)
{
	return staged_find(r, guid);
}

static void staged_mem_free(struct sync_replica *r, struct rstaged *g)
{
	r->mem_bytes -= g->memlen;
	free(g->mem);
	g->mem = NULL;
	g->memlen = 0;
}

/* Takes over the file at path (and mem, the bytes in memory or NULL) as
 * the staged body of guid, or removes them when that body is staged
 * already. */
static void stage_file(struct sync_replica *r, const char *guid, char *path, uint64_t size, char *mem, size_t memlen)
{
	if (replica_staged(r, guid)) {
		unlink(path);
		free(path);
		free(mem);
		r->mem_bytes -= memlen;
		return;
	}
	if (2 * (r->nstaged + 1) > r->hcap) {
		free(r->hidx);
		r->hcap = r->hcap ? 2 * r->hcap : 256;
		r->hidx = xcalloc(r->hcap, sizeof *r->hidx);
		for (size_t k = 0; k < r->nstaged; k++)
			r->hidx[staged_slot(r, r->staged[k].guid)] = k + 1;
	}
	if (r->nstaged == r->capstaged) {
		r->capstaged = r->capstaged ? 2 * r->capstaged : 64;
		r->staged = xrealloc(r->staged, r->capstaged * sizeof *r->staged);
	}
	struct rstaged *g = &r->staged[r->nstaged++];
	memset(g, 0, sizeof *g);
	snprintf(g->guid, sizeof g->guid, "%s", guid);
	g->path = path;
	g->size = size;
	g->mem = mem;
	g->memlen = memlen;
	r->staged_bytes += size;
	r->hidx[staged_slot(r, guid)] = r->nstaged;
}

/* May a body of len bytes be kept in memory too? */
static int mem_room(const struct sync_replica *r, uint64_t len)
{
	return len <= SYNC_BODY_MEM_MAX && r->mem_bytes + len <= SYNC_BODY_MEM_TOTAL;
}

int replica_stage_bytes(struct sync_replica *r, const char *guid, const void *data, size_t len, struct terr *err)
{
	char got[41];
	if (replica_staged(r, guid))
		return 0;
	sha1_hex(data, len, got);
	if (strcmp(got, guid))
		return terr_set(err, TE_PROTOCOL, "message body %s hashes to %s", guid, got);
	if (r->staged_bytes + len > (uint64_t)SYNC_MAX_STAGED_BYTES)
		return terr_set(err, TE_TOOBIG, "over %lld bytes of staged bodies: send RESTART", SYNC_MAX_STAGED_BYTES);
	struct buf path = BUF_INIT;
	int fd = -1;
	int rc = store_stage_create(r->st, &path, &fd, err);
	if (rc == 0) {
		rc = fs_write_all(fd, data, len, path.ptr, err);
		if (close(fd) < 0 && rc == 0)
			rc = terr_errno(err, errno, "close %s", path.ptr);
		if (rc < 0)
			unlink(path.ptr);
	}
	if (rc == 0) {
		char *mem = NULL;
		size_t memlen = 0;
		if (mem_room(r, len)) {
			mem = xmemdup(data, len);
			memlen = len;
			r->mem_bytes += len;
		}
		stage_file(r, guid, buf_release(&path), len, mem, memlen);
	}
	buf_free(&path);
	return rc;
}

/* Every staged body dropped: files not moved into a mailbox removed, the
 * index emptied. The bytes kept in memory are freed, or with keep (a
 * RESTART inside a batch: restart_in_batch) handed to it. */
static void unstage_all_keep(struct sync_replica *r, struct rdefer *keep)
{
	for (size_t i = 0; i < r->nstaged; i++) {
		struct rstaged *g = &r->staged[i];
		if (!g->taken)
			unlink(g->path);
		free(g->path);
		if (!keep) {
			staged_mem_free(r, g);
		} else if (g->mem) {
			keep->mems = xrealloc(keep->mems, (keep->nmems + 1) * sizeof *keep->mems);
			keep->mems[keep->nmems++] = g->mem;
			keep->mem_bytes += g->memlen;	/* still counted in r->mem_bytes until then */
		}
	}
	free(r->staged);
	free(r->hidx);
	r->staged = NULL;
	r->hidx = NULL;
	r->nstaged = r->capstaged = r->hcap = 0;
	r->staged_bytes = 0;
}

static void unstage_all(struct sync_replica *r)
{
	unstage_all_keep(r, NULL);
}

static int body_file_cb(void *rock, const char *guid, const char **path_r)
{
	const struct rstaged *g = replica_staged(rock, guid);
	if (!g)
		return -1;
	*path_r = g->path;
	return g->taken ? 1 : 0;	/* a message file now: linked, never moved again */
}

/* The store moved the staged file of guid to new_path (a message file):
 * no longer in tmp/sync, never removed by us. */
static void body_taken_cb(void *rock, const char *guid, const char *new_path)
{
	struct sync_replica *r = rock;
	struct rstaged *g = staged_find(r, guid);
	if (!g || g->taken)
		return;
	free(g->path);
	g->path = xstrdup(new_path);
	g->taken = 1;
	r->staged_bytes -= g->size;
}

/* The bytes of a staged body while they are held in memory. */
static int body_mem_cb(void *rock, const char *guid, const void **data_r, size_t *len_r)
{
	const struct rstaged *g = replica_staged(rock, guid);
	if (!g || !g->mem)
		return -1;
	*data_r = g->mem;
	*len_r = g->memlen;
	return 0;
}

/* ---- file literals streamed while a command is read ------------------------------------ */

static void file_fail(struct sync_replica *r, const struct terr *e)
{
	if (!r->file_err.code)
		r->file_err = *e;
}

/* Drops the in-memory copy of the literal being read (and its room). */
static void in_mem_drop(struct sync_replica *r)
{
	if (r->in.keep)
		r->mem_bytes -= r->in.size;
	r->in.keep = 0;
	buf_free(&r->in.mem);
}

void sync_replica_file_begin(struct sync_replica *r, const struct dlist_file_hdr *h)
{
	struct terr e = { 0 };
	if (r->in.active)
		sync_replica_file_end(r);
	in_mem_drop(r);
	buf_free(&r->in.path);
	memset(&r->in, 0, sizeof r->in);
	r->in.fd = -1;
	r->in.active = 1;
	r->in.size = h->size;
	snprintf(r->in.guid, sizeof r->in.guid, "%s", h->guid);
	if (r->file_err.code)
		return;	/* the command fails anyway: the bytes are only consumed */
	if (!h->ok) {
		terr_set(&e, TE_PROTOCOL, "bad file literal header (want a partition name and a 40-digit hex GUID)");
	} else if (r->staged_bytes + r->pending_bytes + h->size > (uint64_t)SYNC_MAX_STAGED_BYTES) {
		terr_set(&e, TE_TOOBIG, "over %lld bytes of staged bodies: send RESTART", SYNC_MAX_STAGED_BYTES);
	} else if (store_stage_create(r->st, &r->in.path, &r->in.fd, &e) == 0) {
		sha1_init(&r->in.sha);
		r->in.keep = mem_room(r, h->size);
		if (r->in.keep) {
			r->mem_bytes += h->size;	/* reserved now: the bytes arrive in pieces */
			buf_reserve(&r->in.mem, (size_t)h->size);
		}
		return;
	}
	file_fail(r, &e);
}

void sync_replica_file_write(struct sync_replica *r, const void *data, size_t len)
{
	struct terr e = { 0 };
	if (!r->in.active)
		return;
	r->in.got += len;
	if (r->in.fd < 0)
		return;
	sha1_update(&r->in.sha, data, len);
	if (r->in.keep && r->in.mem.len + len <= r->in.size)
		buf_append(&r->in.mem, data, len);
	if (fs_write_all(r->in.fd, data, len, r->in.path.ptr, &e) < 0) {
		file_fail(r, &e);
		close(r->in.fd);
		r->in.fd = -1;
		unlink(r->in.path.ptr);
		sha1_free(&r->in.sha);
		in_mem_drop(r);
	}
}

void sync_replica_file_end(struct sync_replica *r)
{
	struct terr e = { 0 };
	if (!r->in.active)
		return;
	r->in.active = 0;
	if (r->in.fd >= 0) {
		char got[41];
		sha1_final_hex(&r->in.sha, got);
		int rc = close(r->in.fd);
		r->in.fd = -1;
		if (rc < 0) {
			terr_errno(&e, errno, "close %s", r->in.path.ptr);
		} else if (r->in.got != r->in.size) {
			terr_set(&e, TE_PROTOCOL, "file literal %s cut short", r->in.guid);
		} else if (strcmp(got, r->in.guid)) {
			/* a clear refusal: the body is dropped, the command does nothing */
			terr_set(&e, TE_PROTOCOL, "message body %s hashes to %s", r->in.guid, got);
		} else {
			if (r->npending == r->cappending) {
				r->cappending = r->cappending ? 2 * r->cappending : 64;
				r->pending = xrealloc(r->pending, r->cappending * sizeof *r->pending);
			}
			struct rstaged *g = &r->pending[r->npending++];
			memset(g, 0, sizeof *g);
			snprintf(g->guid, sizeof g->guid, "%s", r->in.guid);
			g->path = buf_release(&r->in.path);
			g->size = r->in.size;
			g->memlen = r->in.keep ? r->in.mem.len : 0;
			g->mem = r->in.keep ? buf_release(&r->in.mem) : NULL;
			r->in.keep = 0;
			r->pending_bytes += g->size;
			return;
		}
		unlink(r->in.path.ptr);
		file_fail(r, &e);
	}
	in_mem_drop(r);
	buf_free(&r->in.path);
}

void sync_replica_files_drop(struct sync_replica *r)
{
	if (r->in.active && r->in.fd >= 0) {
		close(r->in.fd);
		unlink(r->in.path.ptr);
		sha1_free(&r->in.sha);
	}
	r->in.fd = -1;
	r->in.active = 0;
	in_mem_drop(r);
	buf_free(&r->in.path);
	for (size_t i = 0; i < r->npending; i++) {
		unlink(r->pending[i].path);
		free(r->pending[i].path);
		staged_mem_free(r, &r->pending[i]);
	}
	free(r->pending);
	r->pending = NULL;
	r->npending = r->cappending = 0;
	r->pending_bytes = 0;
	memset(&r->file_err, 0, sizeof r->file_err);
}

void replica_data(struct sync_replica *r, const struct dlist *d)
{
	if (r->data)
		r->data(r->data_rock, d);
}

/* ---- APPLY ------------------------------------------------------------------------------ */

/* APPLY CAPABILITIES (cap ...): SIEVE-MAILBOX is the one tandem knows. */
static int apply_capabilities(struct sync_replica *r, const struct dlist *kv, struct terr *err)
{
	(void)err;
	struct dlist *en = dlist_new(DL_LIST, "ENABLED");
	for (size_t i = 0; kv->type == DL_LIST && i < kv->n; i++) {
		const char *cap = dlist_cstr(kv->items[i]);
		if (cap && !strcasecmp(cap, "SIEVE-MAILBOX")) {
			r->sieve_mailbox = 1;
			dlist_add_str(en, NULL, "SIEVE-MAILBOX");
		}
	}
	replica_data(r, en);
	dlist_free(&en);
	return 0;
}

/* A damaged message file (its bytes no longer hash to its GUID) is moved
 * aside to <file>.damaged, so that the client's copy (it is reported
 * MISSING) is written in its place by the next APPLY MAILBOX (tandem
 * repair; a file already there is never rewritten). */
static void quarantine(struct sync_replica *r, const char *name, const char *guid)
{
	struct buf path = BUF_INIT, aside = BUF_INIT;
	struct terr err;
	char q[LOGQ_MAX];
	if (store_message_path(r->st, name, guid, &path, &err) == 0) {
		buf_printf(&aside, "%s.damaged", path.ptr);
		if (rename(path.ptr, aside.ptr) == 0)
			log_warn("event=sync_damaged_body session=%s mailbox=%s guid=%s moved_to=%s", r->o.session_id,
				 logq(q, name), guid, aside.ptr);
	}
	buf_free(&path);
	buf_free(&aside);
}

/* APPLY RESERVE %(PARTITION p MBOXNAME (m ...) GUID (g ...)): the bodies
 * found in those mailboxes are staged; the others are answered MISSING. */
static int apply_reserve(struct sync_replica *r, const struct dlist *kv, struct terr *err)
{
	const struct dlist *names = dlist_get_list(kv, "MBOXNAME"), *guids = dlist_get_list(kv, "GUID");
	const char *part;
	if (!names || !guids || dlist_get_str(kv, "PARTITION", &part) < 0)
		return terr_set(err, TE_INVALID, "APPLY RESERVE wants PARTITION, MBOXNAME and GUID");
	struct dlist *missing = dlist_new(DL_LIST, "MISSING");
	struct buf path = BUF_INIT;
	struct terr e2;
	for (size_t g = 0; g < guids->n; g++) {
		const char *guid = dlist_cstr(guids->items[g]);
		if (!guid || strlen(guid) != 40 || replica_staged(r, guid))
			continue;
		int found = 0;
		for (size_t m = 0; m < names->n && !found; m++) {
			const char *name = dlist_cstr(names->items[m]);
			/* staged by a link to the file here: nothing read into memory */
			if (name && mboxname_validate(name, &e2) == 0 &&
			    store_stage_existing(r->st, name, guid, &path, &e2) == 0) {
				struct stat sb;
				uint64_t size = stat(path.ptr, &sb) == 0 ? (uint64_t)sb.st_size : 0;
				stage_file(r, guid, buf_release(&path), size, NULL, 0);
				found = 1;
			} else if (name && e2.code == TE_CORRUPT) {
				quarantine(r, name, guid);
			}
		}
		if (!found)
			dlist_add_str(missing, NULL, guid);
	}
	if (missing->n)
		replica_data(r, missing);
	dlist_free(&missing);
	buf_free(&path);
	return 0;
}

/* APPLY MESSAGE (%{part guid size} ...): the bodies that were streamed
 * to files while the command was read (checked against their GUIDs
 * then) are staged as they are; bodies that came in memory (the IMAP
 * transport) are checked and written to staging files. */
static int apply_message(struct sync_replica *r, const struct dlist *kv, struct terr *err)
{
	if (kv->type != DL_LIST)
		return terr_set(err, TE_INVALID, "APPLY MESSAGE wants a list");
	for (size_t i = 0; i < kv->n; i++) {
		const struct dlist *f = kv->items[i];
		if (f->type != DL_FILE || f->external)
			continue;
		if (replica_stage_bytes(r, f->guid, f->s.ptr ? f->s.ptr : "", f->s.len, err) < 0)
			return -1;
	}
	for (size_t i = 0; i < r->npending; i++)
		stage_file(r, r->pending[i].guid, r->pending[i].path, r->pending[i].size, r->pending[i].mem,
			   r->pending[i].memlen);
	free(r->pending);
	r->pending = NULL;
	r->npending = r->cappending = 0;
	r->pending_bytes = 0;
	return 0;
}

/* APPLY MAILBOX's checks before the store: a parsed into *a with the
 * staged bodies' callbacks. */
static int apply_mailbox_parse(struct sync_replica *r, const struct dlist *kv, struct store_apply *a,
			       struct terr *err)
{
	if (kv->type != DL_KVLIST)
		return terr_set(err, TE_INVALID, "APPLY MAILBOX wants a kvlist");
	if (replica_sieve_hidden(r, kv))	/* Cyrus 3.6 refuses a #sieve mailbox without SIEVE-MAILBOX */
		return terr_set(err, TE_INVALID, "a #sieve mailbox without SIEVE-MAILBOX");
	if (sync_apply_from_dlist(kv, a, err) < 0) {
		err->code = TE_INVALID;
		return -1;
	}
	a->body_file = body_file_cb;
	a->body_taken = body_taken_cb;
	a->body = body_mem_cb;
	a->body_rock = r;
	/* fault injection for the tests (docs/testing.md): the session
	 * process dies while it applies this mailbox, as a crash would */
	const char *crash = getenv("TANDEM_TEST_CRASH_APPLY");
	if (crash && *crash && !strcmp(crash, a->name))
		raise(SIGKILL);
	return 0;
}

/* After an apply: the bytes of its bodies are no longer needed (another
 * owner's mailbox reads the file for its cache row): room for the next
 * part's; and the store's "not found" said as Cyrus does. */
static int apply_mailbox_end(struct sync_replica *r, struct store_apply *a, int rc, int keep_mem, struct terr *err)
{
	for (size_t i = 0; i < a->nrecs && !keep_mem; i++) {
		struct rstaged *g = staged_find(r, a->recs[i].guid);
		if (g && g->mem)
			staged_mem_free(r, g);
	}
	sync_apply_free(a);
	if (rc < 0 && err->code == TE_NOTFOUND)
		return terr_set(err, TE_PROTOCOL, "Message body was not sent");
	return rc;
}

/* APPLY MAILBOX %(...): the whole state (or, with SINCE_MODSEQ, the
 * changes) of one mailbox; the store checks everything before it changes
 * anything (store_apply_mailbox). */
static int apply_mailbox(struct sync_replica *r, const struct dlist *kv, struct terr *err)
{
	struct store_apply a;
	memset(&a, 0, sizeof a);
	if (apply_mailbox_parse(r, kv, &a, err) < 0) {
		sync_apply_free(&a);
		return -1;
	}
	int rc = store_apply_mailbox(r->st, &a, err);
	return apply_mailbox_end(r, &a, rc, 0, err);
}

/* APPLY EXPUNGE %(MBOXNAME m UNIQUEID u UID (n ...)) */
static int apply_expunge(struct sync_replica *r, const struct dlist *kv, struct terr *err)
{
	const char *m, *uid;
	const struct dlist *list = dlist_get_list(kv, "UID");
	if (dlist_get_str(kv, "MBOXNAME", &m) < 0 || dlist_get_str(kv, "UNIQUEID", &uid) < 0 || !list ||
	    mboxname_validate(m, err) < 0)
		return terr_set(err, TE_INVALID, "APPLY EXPUNGE wants MBOXNAME, UNIQUEID and UID");
	uint32_t *uids = xcalloc(list->n ? list->n : 1, sizeof *uids);
	size_t n = 0;
	for (size_t i = 0; i < list->n; i++) {
		uint64_t v;
		if (dlist_num64(list->items[i], &v) == 0 && v && v <= UINT32_MAX)
			uids[n++] = (uint32_t)v;
	}
	int rc = store_apply_expunge(r->st, m, uid, uids, n, err);
	free(uids);
	return rc;
}

/* APPLY UNMAILBOX name (LOCAL_UNMAILBOX the same here) */
static int apply_unmailbox(struct sync_replica *r, const struct dlist *kv, struct terr *err)
{
	const char *name = dlist_cstr(kv);
	if (!name || mboxname_validate(name, err) < 0)
		return terr_set(err, TE_INVALID, "APPLY UNMAILBOX wants a mailbox name");
	return store_apply_unmailbox(r->st, name, err);
}

/* APPLY RENAME %(OLDMBOXNAME o NEWMBOXNAME n ...) */
static int apply_rename(struct sync_replica *r, const struct dlist *kv, struct terr *err)
{
	const char *o, *n;
	if (dlist_get_str(kv, "OLDMBOXNAME", &o) < 0 || dlist_get_str(kv, "NEWMBOXNAME", &n) < 0)
		return terr_set(err, TE_INVALID, "APPLY RENAME wants OLDMBOXNAME and NEWMBOXNAME");
	if (!strcmp(o, n))
		return 0;	/* a partition move: one partition here */
	return store_apply_rename(r->st, o, n, err);
}

/* APPLY UNUSER userid: a user that is not there is already gone. */
static int apply_unuser(struct sync_replica *r, const struct dlist *kv, struct terr *err)
{
	const char *u = dlist_cstr(kv);
	if (!u)
		return terr_set(err, TE_INVALID, "APPLY UNUSER wants a userid");
	if (!*u)
		return 0;
	int ex = store_user_exists(r->st, u, err);
	if (ex <= 0)
		return ex;
	return store_user_delete(r->st, u, err);
}

/* APPLY SUB / UNSUB %(USERID u MBOXNAME m) */
static int apply_sub_or_unsub(struct sync_replica *r, const struct dlist *kv, int on, struct terr *err)
{
	const char *u, *m;
	struct terr e2;
	if (dlist_get_str(kv, "USERID", &u) < 0 || dlist_get_str(kv, "MBOXNAME", &m) < 0 ||
	    userid_validate(u, 1, &e2) < 0)
		return terr_set(err, TE_INVALID, "APPLY SUB wants USERID and MBOXNAME");
	if (!on) {
		/* a user that is not here is subscribed to nothing */
		int ex = store_user_exists(r->st, u, err);
		if (ex <= 0)
			return ex;
	}
	if (store_user_ensure(r->st, u, err) < 0)
		return -1;
	return store_subscribe(r->st, u, m, on, err);
}

static int apply_sub(struct sync_replica *r, const struct dlist *kv, struct terr *err)
{
	return apply_sub_or_unsub(r, kv, 1, err);
}

static int apply_unsub(struct sync_replica *r, const struct dlist *kv, struct terr *err)
{
	return apply_sub_or_unsub(r, kv, 0, err);
}

/* APPLY SEEN %(USERID u UNIQUEID m LASTREAD t LASTUID n LASTCHANGE t SEENUIDS s):
 * another user's seen state of a mailbox. */
static int apply_seen(struct sync_replica *r, const struct dlist *kv, struct terr *err)
{
	const char *u, *uid, *seen;
	uint64_t lr, lc;
	uint32_t lu;
	if (dlist_get_str(kv, "USERID", &u) < 0 || dlist_get_str(kv, "UNIQUEID", &uid) < 0 ||
	    dlist_get_num64(kv, "LASTREAD", &lr) < 0 || dlist_get_num32(kv, "LASTUID", &lu) < 0 ||
	    dlist_get_num64(kv, "LASTCHANGE", &lc) < 0 || dlist_get_str(kv, "SEENUIDS", &seen) < 0)
		return terr_set(err, TE_INVALID, "APPLY SEEN wants USERID UNIQUEID LASTREAD LASTUID LASTCHANGE SEENUIDS");
	struct store_seen sv = { (int64_t)lr, lu, (int64_t)lc, (char *)seen };
	struct terr e2;
	if (userid_validate(u, 1, &e2) < 0)
		return terr_set(err, TE_INVALID, "APPLY SEEN: bad USERID");
	if (store_user_ensure(r->st, u, err) < 0)
		return -1;
	return store_seen_set(r->st, u, uid, &sv, err);
}

/* APPLY QUOTA %(ROOT r [STORAGE n | LIMIT n] [MESSAGE n]) */
static int apply_quota(struct sync_replica *r, const struct dlist *kv, struct terr *err)
{
	const char *root;
	uint64_t storage = 0, msgs = 0;
	if (dlist_get_str(kv, "ROOT", &root) < 0)
		return terr_set(err, TE_INVALID, "APPLY QUOTA wants ROOT");
	int64_t sl = dlist_get_num64(kv, "STORAGE", &storage) == 0 || dlist_get_num64(kv, "LIMIT", &storage) == 0 ?
			     (int64_t)storage : -1;
	int64_t ml = dlist_get_num64(kv, "MESSAGE", &msgs) == 0 ? (int64_t)msgs : -1;
	struct terr e2;
	if (mboxname_validate(root, &e2) < 0)
		return terr_set(err, TE_INVALID, "APPLY QUOTA: bad ROOT");
	/* the root may come before any mailbox of its owner */
	if (store_owner_ensure(r->st, root, err) < 0)
		return -1;
	return store_quota_set(r->st, root, sl, ml, err);
}

/* APPLY UNQUOTA root: a root that is not there is already gone. */
static int apply_unquota(struct sync_replica *r, const struct dlist *kv, struct terr *err)
{
	const char *root = dlist_cstr(kv);
	struct terr e2 = { 0 };
	if (!root)
		return terr_set(err, TE_INVALID, "APPLY UNQUOTA wants a root");
	if (store_quota_delete(r->st, root, &e2) < 0 && e2.code != TE_NOTFOUND) {
		*err = e2;
		return -1;
	}
	return 0;
}

/* APPLY ANNOTATION / UNANNOTATION %(MBOXNAME m ENTRY e USERID u [VALUE v]):
 * a mailbox annotation (server annotations, MBOXNAME "", are not kept). */
static int apply_annotation_x(struct sync_replica *r, const struct dlist *kv, int set, struct terr *err)
{
	const char *m, *e, *u;
	const struct dlist *v = dlist_get(kv, "VALUE");
	if (dlist_get_str(kv, "MBOXNAME", &m) < 0 || dlist_get_str(kv, "ENTRY", &e) < 0 ||
	    dlist_get_str(kv, "USERID", &u) < 0 || (set && !v))
		return terr_set(err, TE_INVALID, "APPLY ANNOTATION wants MBOXNAME ENTRY USERID VALUE");
	if (!*m)
		return 0;
	const void *val = set && v->type == DL_STR && v->s.ptr ? v->s.ptr : "";
	size_t vl = set && v->type == DL_STR ? v->s.len : 0;
	return store_annot_set(r->st, m, 0, e, u, val, vl, err);
}

static int apply_annotation(struct sync_replica *r, const struct dlist *kv, struct terr *err)
{
	return apply_annotation_x(r, kv, 1, err);
}

static int apply_unannotation(struct sync_replica *r, const struct dlist *kv, struct terr *err)
{
	return apply_annotation_x(r, kv, 0, err);
}

/* ---- the table ---------------------------------------------------------------------------- */

enum { CMD_WRITES = 1 };	/* refused while this server is the master */

struct sync_cmd {
	const char *verb, *key;
	sync_cmd_fn *fn;
	int flags;
};

static const struct sync_cmd cmds[] = {
	{ "GET", "MAILBOXES", get_mailboxes, 0 },
	{ "GET", "FULLMAILBOX", get_fullmailbox, 0 },
	{ "GET", "USER", get_user, 0 },
	{ "GET", "META", get_meta, 0 },
	{ "GET", "UNIQUEIDS", get_uniqueids, 0 },
	{ "GET", "QUOTA", get_quota, 0 },
	{ "GET", "ANNOTATION", get_annotation, 0 },
	{ "GET", "FETCH", get_fetch, 0 },
	{ "GET", "FETCH_SIEVE", get_fetch_sieve, 0 },
	{ "APPLY", "CAPABILITIES", apply_capabilities, 0 },
	{ "APPLY", "RESERVE", apply_reserve, CMD_WRITES },
	{ "APPLY", "MESSAGE", apply_message, CMD_WRITES },
	{ "APPLY", "MAILBOX", apply_mailbox, CMD_WRITES },
	{ "APPLY", "LOCAL_MAILBOX", apply_mailbox, CMD_WRITES },
	{ "APPLY", "EXPUNGE", apply_expunge, CMD_WRITES },
	{ "APPLY", "UNMAILBOX", apply_unmailbox, CMD_WRITES },
	{ "APPLY", "LOCAL_UNMAILBOX", apply_unmailbox, CMD_WRITES },
	{ "APPLY", "RENAME", apply_rename, CMD_WRITES },
	{ "APPLY", "LOCAL_RENAME", apply_rename, CMD_WRITES },
	{ "APPLY", "UNUSER", apply_unuser, CMD_WRITES },
	{ "APPLY", "LOCAL_UNUSER", apply_unuser, CMD_WRITES },
	{ "APPLY", "SUB", apply_sub, CMD_WRITES },
	{ "APPLY", "UNSUB", apply_unsub, CMD_WRITES },
	{ "APPLY", "SEEN", apply_seen, CMD_WRITES },
	{ "APPLY", "QUOTA", apply_quota, CMD_WRITES },
	{ "APPLY", "UNQUOTA", apply_unquota, CMD_WRITES },
	{ "APPLY", "ANNOTATION", apply_annotation, CMD_WRITES },
	{ "APPLY", "UNANNOTATION", apply_unannotation, CMD_WRITES },
	{ "APPLY", "SIEVE", apply_sieve, CMD_WRITES },
	{ "APPLY", "UNSIEVE", apply_unsieve, CMD_WRITES },
	{ "APPLY", "ACTIVATE_SIEVE", apply_activate_sieve, CMD_WRITES },
	{ "APPLY", "UNACTIVATE_SIEVE", apply_unactivate_sieve, CMD_WRITES },
};

/* ---- the engine ---------------------------------------------------------------------------- */

struct sync_replica *sync_replica_new(const struct sync_replica_opts *o)
{
	struct sync_replica *r = xcalloc(1, sizeof *r);
	r->o = *o;
	r->st = o->st;
	if (!r->o.session_id)
		r->o.session_id = "-";
	r->in.fd = -1;
	r->batch = store_apply_batch_new(r->st);
	r->fl.batch = store_apply_batch_new(r->st);
	r->fl.efd = -1;
	r->batch_max = SYNC_APPLY_BATCH_MAX;
	r->flush_thread = SYNC_APPLY_FLUSH_THREAD;
	/* for the tests (docs/testing.md): small batches, so that a few
	 * commands already run their flush on the flush thread */
	const char *bm = getenv("TANDEM_TEST_APPLY_BATCH_MAX");
	if (bm && *bm)
		sync_replica_set_batch_max(r, (size_t)strtoul(bm, NULL, 10));
	store_stage_sweep(r->st);	/* staging files of sessions that died */
	mallopt(M_TRIM_THRESHOLD, SYNC_MALLOC_TRIM);	/* limits.h: no trim and fault-in per batch */
	mallopt(M_MMAP_THRESHOLD, SYNC_MALLOC_MMAP_MIN);
	return r;
}

void sync_replica_free(struct sync_replica **rp)
{
	struct sync_replica *r = *rp;
	if (!r)
		return;
	sync_replica_files_drop(r);
	sync_replica_flush(r, NULL, NULL);	/* a batch the transport left: applied, unanswered */
	store_apply_batch_free(&r->batch);
	store_apply_batch_free(&r->fl.batch);
	free(r->defer);
	free(r->fl.defer);
	if (r->fl.efd >= 0)
		close(r->fl.efd);
	unstage_all(r);
	free(r);
	*rp = NULL;
}

unsigned long sync_replica_commands(const struct sync_replica *r)
{
	return r->commands;
}

void sync_parse_failure_line(const char *cmd, size_t len, char *out, size_t outsz)
{
	char verb[16];
	size_t vl = strcspn(cmd, " \r\n");
	if (vl > len)
		vl = len;
	snprintf(verb, sizeof verb, "%.*s", (int)(vl < 15 ? vl : 15), cmd);
	for (char *p = verb; *p; p++)
		*p = (char)toupper((unsigned char)*p);
	snprintf(out, outsz, "BAD IMAP_PROTOCOL_ERROR Failed to parse %s line", verb);
}

int sync_replica_verb(const char *verb)
{
	return !strcasecmp(verb, "GET") || !strcasecmp(verb, "APPLY") || !strcasecmp(verb, "RESTORE") ||
	       !strcasecmp(verb, "RESTART");
}

/* The reply line of a finished command: the one place errors become
 * Cyrus's lines. */
static const char *reply(struct sync_replica *r, const char *verb, const char *key, int rc, const struct terr *err)
{
	if (rc == 0)
		return "OK success";
	const char *line = sync_no_text(err);
	char q[LOGQ_MAX];
	log_warn("event=%s_fail session=%s command=%s code=%s error=%s", !strcasecmp(verb, "APPLY") ? "apply" : "sync",
		 r->o.session_id, key, terr_code_name(err->code), logq(q, err->msg[0] ? err->msg : line));
	snprintf(r->reply, sizeof r->reply, "%s", line);
	return r->reply;
}

static const char *exec_cmd(struct sync_replica *r, const char *verb, const struct dlist *kv, sync_data_fn *data,
			    void *rock);

const char *sync_replica_exec(struct sync_replica *r, const char *verb, const struct dlist *kv, sync_data_fn *data,
			      void *rock)
{
	const char *res;
	if (r->file_err.code) {
		/* a file literal of this command failed: refused, nothing done */
		struct terr err = r->file_err;
		r->commands++;
		res = reply(r, verb, kv && kv->key ? kv->key : verb, -1, &err);
	} else {
		res = exec_cmd(r, verb, kv, data, rock);
	}
	sync_replica_files_drop(r);	/* what the command did not stage */
	return res;
}

static const char *exec_cmd(struct sync_replica *r, const char *verb, const struct dlist *kv, sync_data_fn *data,
			    void *rock)
{
	struct terr err = { 0 };
	r->commands++;
	if (!strcasecmp(verb, "RESTART")) {
		unstage_all(r);
		return "OK Restarting";
	}
	if (!kv || !kv->key)
		return "BAD IMAP_PROTOCOL_ERROR Protocol error";
	const struct sync_cmd *cmd = NULL;
	for (size_t i = 0; i < sizeof cmds / sizeof cmds[0] && !cmd; i++)
		if (!strcasecmp(cmds[i].verb, verb) && !strcasecmp(cmds[i].key, kv->key))
			cmd = &cmds[i];
	if (!cmd) {
		/* RESTORE (Cyrus's backups) is not served: a clear refusal that
		 * changes nothing */
		if (!strcasecmp(verb, "RESTORE"))
			terr_set(&err, TE_PROTOCOL, "RESTORE is not supported by this server (tandem keeps no backups)");
		else
			terr_set(&err, TE_PROTOCOL, "Protocol error");
		return reply(r, verb, kv->key, -1, &err);
	}
	if ((cmd->flags & CMD_WRITES) && r->o.is_master && r->o.is_master(r->o.is_master_rock)) {
		terr_set(&err, TE_PROTOCOL, "This server is the master now (tandem failover): demote the sender");
		return reply(r, verb, cmd->key, -1, &err);
	}
	r->data = data;
	r->data_rock = rock;
	int rc = cmd->fn(r, kv, &err);
	r->data = NULL;
	r->data_rock = NULL;
	if (rc < 0 && !err.code)
		terr_set(&err, TE_INTERNAL, "%s %s failed without a cause", verb, cmd->key);
	return reply(r, verb, cmd->key, rc, &err);
}

static const char *exec_raw(struct sync_replica *r, const char *cmd, size_t len, unsigned flags, sync_data_fn *data,
			    void *rock)
{
	struct dlist *line = NULL;
	struct terr err = { 0 };
	if (dlist_parse_ext(cmd, len, flags, &line, &err) < 0) {
		log_warn("event=bad_command session=%s error=\"%s\"", r->o.session_id, err.msg);
		sync_parse_failure_line(cmd, len, r->reply, sizeof r->reply);
		sync_replica_files_drop(r);
		return r->reply;
	}
	const char *verb = line->n ? dlist_cstr(line->items[0]) : NULL;
	const char *res;
	if (!verb || !sync_replica_verb(verb)) {
		res = "BAD IMAP_PROTOCOL_ERROR Unrecognized command";
		sync_replica_files_drop(r);
	} else if (!strcasecmp(verb, "RESTART")) {
		res = sync_replica_exec(r, verb, NULL, data, rock);
	} else {
		struct dlist *kv = dlist_take_keyed(line, 1);
		if (!kv) {
			snprintf(r->reply, sizeof r->reply, "BAD IMAP_PROTOCOL_ERROR Failed to parse %s line", verb);
			res = r->reply;
			sync_replica_files_drop(r);
		} else {
			/* copy the verb: it lives in line */
			char v[16];
			snprintf(v, sizeof v, "%s", verb);
			res = sync_replica_exec(r, v, kv, data, rock);
		}
		dlist_free(&kv);
	}
	dlist_free(&line);
	return res;
}

const char *sync_replica_exec_raw(struct sync_replica *r, const char *cmd, size_t len, sync_data_fn *data,
				  void *rock)
{
	return exec_raw(r, cmd, len, 0, data, rock);
}

const char *sync_replica_exec_streamed(struct sync_replica *r, const char *cmd, size_t len, sync_data_fn *data,
				       void *rock)
{
	return exec_raw(r, cmd, len, DLIST_FILES_OUTSIDE, data, rock);
}

/* ---- pipelined APPLY: batches ---------------------------------------------------------- */

int sync_replica_defer_key(const char *verb, const char *key)
{
	return verb && key && !strcasecmp(verb, "APPLY") &&
	       (!strcasecmp(key, "MAILBOX") || !strcasecmp(key, "LOCAL_MAILBOX") || !strcasecmp(key, "MESSAGE"));
}

int sync_replica_may_defer(const char *verb, const struct dlist *kv)
{
	return kv && sync_replica_defer_key(verb, kv->key);
}

size_t sync_replica_deferred(const struct sync_replica *r)
{
	return r->ndefer + (r->fl.running ? r->fl.ndefer : 0);
}

int sync_replica_batch_full(const struct sync_replica *r)
{
	return r->ndefer >= r->batch_max || r->batch_bytes >= (uint64_t)SYNC_APPLY_BATCH_BYTES ||
	       r->batch_msg_bytes >= (uint64_t)SYNC_APPLY_BATCH_BYTES;
}

void sync_replica_set_batch_max(struct sync_replica *r, size_t n)
{
	r->batch_max = n && n < SYNC_APPLY_BATCH_MAX ? n : SYNC_APPLY_BATCH_MAX;
	r->flush_thread = 1;	/* the tests run the flush thread whatever the build's default */
}

int sync_replica_flushing(const struct sync_replica *r)
{
	return r->fl.running;
}

static struct rdefer *defer_push(struct sync_replica *r, const char *key)
{
	if (r->ndefer == r->capdefer) {
		r->capdefer = r->capdefer ? 2 * r->capdefer : 16;
		r->defer = xrealloc(r->defer, r->capdefer * sizeof *r->defer);
	}
	struct rdefer *d = &r->defer[r->ndefer++];
	memset(d, 0, sizeof *d);
	snprintf(d->key, sizeof d->key, "%s", key);
	return d;
}

/* store_body_fn of an apply in a batch: its bytes as looked up when it
 * was added (rbodies), never the staged-body index. */
static int snap_body_cb(void *rock, const char *guid, const void **data_r, size_t *len_r)
{
	struct rbodies *b = rock;
	size_t n = b->a->nrecs;
	for (size_t k = 0; k < n; k++) {
		size_t i = (b->cur + k) % n;
		if (b->data[i] && !strcmp(b->a->recs[i].guid, guid)) {
			b->cur = i + 1;
			*data_r = b->data[i];
			*len_r = b->len[i];
			return 0;
		}
	}
	return -1;
}

static void rbodies_free(struct rbodies **bp)
{
	struct rbodies *b = *bp;
	if (!b)
		return;
	free(b->data);
	free(b->len);
	free(b);
	*bp = NULL;
}

/* An APPLY MAILBOX of the batch (d, kv taken): checked, its bodies placed
 * and joined to the store's batch, or refused with its answer. Only while
 * no flush is in flight (it uses the store). */
static void defer_add(struct sync_replica *r, struct rdefer *d, struct dlist *kv)
{
	struct terr err = { 0 };
	int rc = -1;
	if (r->o.is_master && r->o.is_master(r->o.is_master_rock)) {
		terr_set(&err, TE_PROTOCOL, "This server is the master now (tandem failover): demote the sender");
	} else {
		struct store_apply *a = xcalloc(1, sizeof *a);
		if (apply_mailbox_parse(r, kv, a, &err) == 0 && store_apply_batch_add(r->batch, a, &err) == 0) {
			struct rbodies *b = xcalloc(1, sizeof *b);
			b->a = a;
			b->data = xcalloc(a->nrecs ? a->nrecs : 1, sizeof *b->data);
			b->len = xcalloc(a->nrecs ? a->nrecs : 1, sizeof *b->len);
			for (size_t i = 0; i < a->nrecs; i++) {
				const struct rstaged *g = staged_find(r, a->recs[i].guid);
				if (g && g->mem) {
					b->data[i] = g->mem;
					b->len[i] = g->memlen;
				}
				if (!(a->recs[i].sysflags & SYSFLAG_EXPUNGED))
					r->batch_bytes += a->recs[i].size;
			}
			a->body = snap_body_cb;	/* what the flush asks for */
			a->body_rock = b;
			d->a = a;
			d->bodies = b;
			d->kv = kv;
			kv = NULL;
			r->nbatch++;
			rc = 0;
		} else {
			/* the bytes stay: an apply of the batch may hold them */
			apply_mailbox_end(r, a, -1, 1, &err);
			free(a);
		}
	}
	if (rc < 0) {
		if (!err.code)
			terr_set(&err, TE_INTERNAL, "APPLY %s failed without a cause", d->key);
		d->line = xstrdup(reply(r, "APPLY", d->key, -1, &err));
	}
	dlist_free(&kv);
}

void sync_replica_defer(struct sync_replica *r, const char *verb, struct dlist **kvp)
{
	struct dlist *kv = *kvp;
	*kvp = NULL;
	if (strcasecmp(kv->key, "MAILBOX") && strcasecmp(kv->key, "LOCAL_MAILBOX")) {
		/* APPLY MESSAGE: staged now (nothing durable to wait for; the
		 * staged-body index is the session thread's); its answer keeps
		 * its place */
		struct rdefer *d = defer_push(r, kv->key);
		r->batch_msg_bytes += r->pending_bytes;
		d->line = xstrdup(sync_replica_exec(r, verb, kv, NULL, NULL));
		dlist_free(&kv);
		return;
	}
	struct rdefer *d = defer_push(r, kv->key);
	r->commands++;
	if (r->file_err.code) {
		struct terr err = r->file_err;
		d->line = xstrdup(reply(r, "APPLY", d->key, -1, &err));
		dlist_free(&kv);
	} else if (r->fl.running) {
		d->kv = kv;	/* placed once the flush in flight is done */
		d->queued = 1;
	} else {
		defer_add(r, d, kv);
	}
	sync_replica_files_drop(r);
}

/* ---- GET and RESTART inside a batch ----------------------------------------------------- */

static void flight_finish(struct sync_replica *r, sync_reply_fn *fn, void *rock);

/* A deep copy of a GET's data line (it is answered later). */
static struct dlist *dl_copy(const struct dlist *d)
{
	struct dlist *c = dlist_new(d->type, d->key);
	if (d->s.len)
		buf_append(&c->s, d->s.ptr, d->s.len);
	c->part = d->part ? xstrdup(d->part) : NULL;
	memcpy(c->guid, d->guid, sizeof c->guid);
	c->external = d->external;
	c->size = d->size;
	c->path = d->path ? xstrdup(d->path) : NULL;
	for (size_t i = 0; i < d->n; i++)
		dlist_add(c, dl_copy(d->items[i]));
	return c;
}

/* sync_data_fn of a joined GET: its lines kept in its entry (rock). */
static void joined_data(void *rock, const struct dlist *d)
{
	struct rdefer *e = rock;
	e->data = xrealloc(e->data, (e->ndata + 1) * sizeof *e->data);
	e->data[e->ndata++] = dl_copy(d);
}

/* What a joined GET or RESTART kept, once its answer is handed out. */
static void joined_free(struct sync_replica *r, struct rdefer *d)
{
	for (size_t j = 0; j < d->ndata; j++)
		dlist_free(&d->data[j]);
	free(d->data);
	d->data = NULL;
	d->ndata = 0;
	for (size_t j = 0; j < d->nmems; j++)
		free(d->mems[j]);
	free(d->mems);
	d->mems = NULL;
	d->nmems = 0;
	r->mem_bytes -= d->mem_bytes;
	d->mem_bytes = 0;
}

/* RESTART inside a batch: the staged bodies are dropped as by RESTART
 * (files not moved into a mailbox removed now: every apply before it
 * is placed, so none reads them again; the index emptied, so a body
 * sent after it is staged afresh), but the bytes the batch's applies
 * hold for their cache rows (rbodies point into them) stay with d until
 * its answer is handed out, after the batch's run. */
static void restart_in_batch(struct sync_replica *r, struct rdefer *d)
{
	unstage_all_keep(r, d);
}

/* 1 when an APPLY MAILBOX of the batch may change what a GET of owner's
 * state answers (its mailbox belongs to owner, or its owner is unknown). */
static int batch_touches(const struct sync_replica *r, const char *owner)
{
	for (size_t i = 0; i < r->ndefer; i++) {
		const struct rdefer *d = &r->defer[i];
		if (d->queued)
			return 1;	/* not placed yet (not after flight_finish) */
		if (!d->a)
			continue;	/* APPLY MESSAGE, a refusal, a GET, a RESTART */
		struct buf o = BUF_INIT;
		struct terr e;
		int same = mboxname_owner(d->a->name, &o, &e) < 0 || !strcasecmp(buf_cstr(&o), owner);
		buf_free(&o);
		if (same)
			return 1;
	}
	return 0;
}

/* The owners a GET USER / GET MAILBOXES reads: 1 when the batch touches one. */
static int get_touches_batch(const struct sync_replica *r, const struct dlist *kv)
{
	if (!strcasecmp(kv->key, "USER")) {
		const char *user = dlist_cstr(kv);
		return !user || batch_touches(r, user);
	}
	if (kv->type != DL_LIST)
		return 1;
	for (size_t i = 0; i < kv->n; i++) {
		const char *name = dlist_cstr(kv->items[i]);
		struct buf o = BUF_INIT;
		struct terr e;
		int t = !name || mboxname_owner(name, &o, &e) < 0 || batch_touches(r, buf_cstr(&o));
		buf_free(&o);
		if (t)
			return 1;
	}
	return 0;
}

int sync_replica_join_key(const char *verb, const char *key)
{
	if (verb && !strcasecmp(verb, "RESTART"))
		return 1;
	return verb && key && !strcasecmp(verb, "GET") && (!strcasecmp(key, "USER") || !strcasecmp(key, "MAILBOXES"));
}

int sync_replica_join(struct sync_replica *r, const char *verb, const struct dlist *kv, sync_data_fn *data,
		      void *data_rock, sync_reply_fn *fn, void *rock)
{
	int restart = verb && !strcasecmp(verb, "RESTART");
	if (!sync_replica_join_key(verb, kv ? kv->key : NULL) || (!restart && !kv))
		return 0;
	/* an empty batch: nothing to answer before it, run as before (a
	 * flush in flight alone is waited for by the caller's flush) */
	if (!r->ndefer || r->file_err.code || r->npending || r->in.active)
		return 0;
	/* the flush in flight done (its answers first; the applies queued
	 * behind it placed): the store is this thread's and every apply of
	 * the batch has taken its bodies */
	flight_finish(r, fn, rock);
	if (!restart && get_touches_batch(r, kv))
		return 0;
	struct rdefer *d = defer_push(r, restart ? "RESTART" : kv->key);
	if (restart) {
		r->commands++;
		restart_in_batch(r, d);
		d->line = xstrdup("OK Restarting");
		return 1;
	}
	/* read-only and nothing before it in the batch changes its user's
	 * state: its answer now is its answer in order; queued behind the
	 * batch's answers */
	d->data_fn = data;
	d->data_rock = data_rock;
	d->line = xstrdup(exec_cmd(r, "GET", kv, joined_data, d));
	return 1;
}

int sync_replica_join_raw(struct sync_replica *r, const char *cmd, size_t len, sync_data_fn *data, void *data_rock,
			  sync_reply_fn *fn, void *rock)
{
	size_t vl = strcspn(cmd, " \r\n");
	if (!r->ndefer || vl > len || !((vl == 3 && !strncasecmp(cmd, "GET", 3)) || (vl == 7 && !strncasecmp(cmd, "RESTART", 7))))
		return 0;
	struct dlist *line = NULL;
	struct terr err = { 0 };
	if (dlist_parse_ext(cmd, len, 0, &line, &err) < 0)
		return 0;
	const char *verb = line->n ? dlist_cstr(line->items[0]) : NULL;
	const char *key = line->n > 1 ? dlist_cstr(line->items[1]) : NULL;
	int joined = 0;
	if (verb && !strcasecmp(verb, "RESTART")) {
		joined = sync_replica_join(r, "RESTART", NULL, data, data_rock, fn, rock);
	} else if (sync_replica_join_key(verb, key)) {
		/* only a GET that will join is taken apart (the caller runs the
		 * others from cmd) */
		struct dlist *kv = dlist_take_keyed(line, 1);
		if (kv)
			joined = sync_replica_join(r, "GET", kv, data, data_rock, fn, rock);
		dlist_free(&kv);
	}
	dlist_free(&line);
	return joined;
}

static void flush_run(struct sync_replica *r)
{
	store_apply_batch_run(r->fl.batch, r->fl.rcs, r->fl.errs);
	atomic_store(&r->fl.done, 1);
}

/* The flush thread: the flush, then efd (set before the thread starts)
 * wakes a transport waiting in poll. */
static void *flush_main(void *arg)
{
	struct sync_replica *r = arg;
	flush_run(r);
	uint64_t one = 1;
	ssize_t w = write(r->fl.efd, &one, sizeof one);
	(void)w;
	return NULL;
}

/* The batch r->defer moves to r->fl and its flush starts: on the flush
 * thread (threaded), else here. No flush may be in flight. */
static void flight_start(struct sync_replica *r, int threaded)
{
	struct rflight *f = &r->fl;
	struct rdefer *dv = f->defer;
	size_t cap = f->cap;
	f->defer = r->defer;
	f->cap = r->capdefer;
	f->ndefer = r->ndefer;
	f->nbatch = r->nbatch;
	f->bytes = r->batch_bytes;
	r->defer = dv;
	r->capdefer = cap;
	r->ndefer = 0;
	r->nbatch = 0;
	r->batch_bytes = 0;
	r->batch_msg_bytes = 0;
	struct store_apply_batch *b = f->batch;
	f->batch = r->batch;
	r->batch = b;
	f->rcs = xcalloc(f->nbatch ? f->nbatch : 1, sizeof *f->rcs);
	f->errs = xcalloc(f->nbatch ? f->nbatch : 1, sizeof *f->errs);
	f->running = 1;
	f->thread = 0;
	atomic_store(&f->done, 0);
	threaded = threaded && r->flush_thread;
	if (threaded && f->nbatch && f->efd < 0)
		f->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (threaded && f->nbatch && f->efd >= 0) {
		/* signals stay with the session thread (SIGTERM, SIGCHLD) */
		sigset_t all, old;
		sigfillset(&all);
		pthread_sigmask(SIG_SETMASK, &all, &old);
		f->thread = 1;	/* before the thread reads anything of f */
		if (pthread_create(&f->th, NULL, flush_main, r) != 0)
			f->thread = 0;
		pthread_sigmask(SIG_SETMASK, &old, NULL);
	}
	if (!f->thread)
		flush_run(r);
}

/* Waits for the flush in flight, hands out its answers in the order of
 * the commands, then checks and places the APPLY MAILBOX queued behind
 * it. */
static void flight_finish(struct sync_replica *r, sync_reply_fn *fn, void *rock)
{
	struct rflight *f = &r->fl;
	if (!f->running)
		return;
	if (f->thread) {
		pthread_join(f->th, NULL);
		uint64_t v;
		ssize_t rd = f->efd >= 0 ? read(f->efd, &v, sizeof v) : 0;	/* cleared for the next */
		(void)rd;
	}
	f->running = 0;
	f->thread = 0;
	if (f->nbatch > 1)
		log_info("event=apply_batch session=%s commands=%zu mailboxes=%zu bytes=%llu", r->o.session_id, f->ndefer,
			 f->nbatch, (unsigned long long)f->bytes);
	size_t k = 0;
	for (size_t i = 0; i < f->ndefer; i++) {
		struct rdefer *d = &f->defer[i];
		const char *line = d->line;
		if (d->a) {
			int rc = apply_mailbox_end(r, d->a, f->rcs[k], 0, &f->errs[k]);
			line = reply(r, "APPLY", d->key, rc, &f->errs[k]);
			k++;
			free(d->a);
			rbodies_free(&d->bodies);
			dlist_free(&d->kv);
		}
		if (fn) {
			for (size_t j = 0; j < d->ndata && d->data_fn; j++)
				d->data_fn(d->data_rock, d->data[j]);
			fn(rock, line);
		}
		joined_free(r, d);
		free(d->line);
	}
	free(f->rcs);
	free(f->errs);
	f->rcs = NULL;
	f->errs = NULL;
	f->ndefer = 0;
	f->nbatch = 0;
	f->bytes = 0;
	for (size_t i = 0; i < r->ndefer; i++) {
		struct rdefer *d = &r->defer[i];
		if (d->queued) {
			struct dlist *kv = d->kv;
			d->kv = NULL;
			d->queued = 0;
			defer_add(r, d, kv);
		}
	}
}

int sync_replica_flush_fd(const struct sync_replica *r)
{
	return r->fl.running && r->fl.thread ? r->fl.efd : -1;
}

int sync_replica_flush_poll(struct sync_replica *r, sync_reply_fn *fn, void *rock)
{
	if (!r->fl.running || !atomic_load(&r->fl.done))
		return 0;
	flight_finish(r, fn, rock);
	return 1;
}

void sync_replica_flush_wait(struct sync_replica *r, sync_reply_fn *fn, void *rock)
{
	flight_finish(r, fn, rock);
}

void sync_replica_flush_start(struct sync_replica *r, sync_reply_fn *fn, void *rock)
{
	flight_finish(r, fn, rock);
	if (r->ndefer)
		flight_start(r, 1);
}

void sync_replica_flush(struct sync_replica *r, sync_reply_fn *fn, void *rock)
{
	flight_finish(r, fn, rock);
	if (!r->ndefer)
		return;
	flight_start(r, 0);
	flight_finish(r, fn, rock);
}

int sync_replica_defer_raw(struct sync_replica *r, const char *cmd, size_t len, int streamed)
{
	struct dlist *line = NULL;
	struct terr err = { 0 };
	if (dlist_parse_ext(cmd, len, streamed ? DLIST_FILES_OUTSIDE : 0, &line, &err) < 0)
		return 0;
	const char *verb = line->n ? dlist_cstr(line->items[0]) : NULL;
	const char *key = line->n > 1 ? dlist_cstr(line->items[1]) : NULL;
	struct dlist *kv = sync_replica_defer_key(verb, key) ? dlist_take_keyed(line, 1) : NULL;
	int deferred = kv != NULL;
	if (kv)
		sync_replica_defer(r, "APPLY", &kv);	/* takes kv */
	dlist_free(&line);
	return deferred;
}
