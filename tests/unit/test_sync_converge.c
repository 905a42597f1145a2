/* test_sync_converge.c: the replication engine converges, whatever the
 * sequence of changes, the connection cuts and the replays.
 *
 * Model-based and randomized: for each seed, a master store and a replica
 * store in a temp dir, the master's sync client (src/syncc, rolling
 * passes over the channel's change log) joined to a replica engine
 * (src/sync/sync_replica) by the in-process pipe (sync_pipe). A seeded
 * random sequence of every operation the store has is applied to the
 * master (deliveries to several users, appends and MULTIAPPENDs, copies and moves, flags
 * with user flags, expunges, creates, renames at any level with their
 * children, deletes, subscriptions, another user's seen state,
 * annotations, ACLs, quotas, Sieve scripts, users added and deleted,
 * shared mailboxes); passes run at random points, and the pipe is cut at
 * random command boundaries (before the replica runs a command, or after
 * with its answer lost), then reconnected and the pass run again.
 *
 * At the end the master and the replica must be equal twice over: by an
 * independent dump of both stores through the store API (users, each
 * mailbox's sync keys, live records, annotations, quotas, seen states,
 * subscriptions, Sieve), and by the engine's own compare with bodies
 * (what `tandem compare --bodies` runs). Then the whole change log is
 * replayed twice: nothing may fail and nothing may change.
 *
 * TANDEM_SEEDS=N runs N seeds (default 1,000, 30 under ASan; `make soak`
 * runs 20,000) in TANDEM_JOBS processes (default: the cores, at most 8),
 * TANDEM_SEED=S runs that one seed; a failure prints its seed.
 */
#include "test.h"

#include "chlog/chlog.h"
#include "conf/conf.h"
#include "lib/buf.h"
#include "lib/limits.h"
#include "lib/fsutil.h"
#include "lib/log.h"
#include "lib/sha1.h"
#include "store/store.h"
#include "store/store-private.h"
#include "store/synccrc.h"
#include "sync/sync.h"
#include "sync/sync_replica.h"
#include "sync/sync_transport.h"
#include "sync/sync_client.h"

#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- a small PRNG (splitmix64): the same seed, the same run ---- */

static uint64_t rng_state;

static uint64_t rnd(void)
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static unsigned pick(unsigned n)
{
	return n ? (unsigned)(rnd() % n) : 0;
}

/* ---- the world of one seed ---- */

struct world {
	char *dir;
	struct buf mdir, rdir;
	struct conf *conf;
	struct store *m, *r;
	struct chlog *log;
	struct syncc *sc;
	struct sync_replica *rep;
	int cut_percent;	/* chance that a new connection gets cut */
	unsigned long cuts, connects, passes;
	struct buf history;	/* every change-log line replicated */
	char failure[600];
	/* called before the replica runs each command of the client's pipe */
	void (*before)(void *rock, const char *cmd, size_t len);
};

static struct world *W;

static struct sync_transport *pipe_connect(void *rock, struct terr *err)
{
	struct world *w = rock;
	(void)err;
	sync_replica_free(&w->rep);
	struct sync_replica_opts o = { w->r, "test", NULL, NULL };
	w->rep = sync_replica_new(&o);
	/* small batches: most flushes run on the engine's flush thread while
	 * the next commands are queued behind them (not from the seed's
	 * random stream, so that every seed still runs the same operations) */
	static const size_t batch_max[] = { 0, 1, 2, 5 };
	sync_replica_set_batch_max(w->rep, batch_max[w->connects % 4]);
	struct sync_transport *t = sync_pipe_new(w->rep);
	if (w->before)
		sync_pipe_before(t, w->before, w);
	w->connects++;
	if ((int)pick(100) < w->cut_percent) {
		sync_pipe_cut(t, 1 + pick(25), (int)pick(2));
		w->cuts++;
	}
	return t;
}

static int open_world(struct world *w, struct terr *err)
{
	memset(w, 0, sizeof *w);
	/* in memory when the machine has it: thousands of stores, each
	 * operation fsynced (the durability rule stays on) */
	const char *tmp = getenv("TMPDIR");
	if (access("/dev/shm", W_OK) == 0 && !getenv("TANDEM_CONVERGE_DISK"))
		setenv("TMPDIR", "/dev/shm", 1);
	w->dir = test_tmpdir();
	if (tmp)
		setenv("TMPDIR", tmp, 1);
	else
		unsetenv("TMPDIR");
	buf_printf(&w->mdir, "%s/m", w->dir);
	buf_printf(&w->rdir, "%s/r", w->dir);
	struct buf text = BUF_INIT;
	buf_printf(&text,
		   "configdirectory: %s/conf\npartition-default: %s/spool\nsync_log: yes\nsync_log_channels: r\n"
		   "r_sync_host: pipe\nsync_authname: repl\nsync_password: x\nsync_batchsize: 3\n",
		   w->mdir.ptr, w->mdir.ptr);
	struct conf_parser *p = conf_parser_new("test.conf");
	int rc = conf_parser_feed(p, text.ptr, text.len, err) < 0 || conf_parser_finish(p, &w->conf, err) < 0 ? -1 : 0;
	buf_free(&text);
	if (rc < 0)
		return -1;
	struct buf mconf = BUF_INIT, mspool = BUF_INIT, rconf = BUF_INIT, rspool = BUF_INIT;
	buf_printf(&mconf, "%s/conf", w->mdir.ptr);
	buf_printf(&mspool, "%s/spool", w->mdir.ptr);
	buf_printf(&rconf, "%s/conf", w->rdir.ptr);
	buf_printf(&rspool, "%s/spool", w->rdir.ptr);
	const char *chans[] = { "r" };
	rc = -1;
	if (fs_mkdir_p(mconf.ptr, 0750, err) < 0 || fs_mkdir_p(mspool.ptr, 0750, err) < 0 ||
	    fs_mkdir_p(rconf.ptr, 0750, err) < 0 || fs_mkdir_p(rspool.ptr, 0750, err) < 0)
		goto out;
	w->log = chlog_open(mconf.ptr, chans, 1);
	struct store_opts mo = { mconf.ptr, "default", mspool.ptr, w->log, 0, 0, NULL, NULL, NULL };
	struct store_opts ro = { rconf.ptr, "default", rspool.ptr, NULL, 0, 0, NULL, NULL, NULL };
	if (!w->log || store_open(&mo, &w->m, err) < 0 || store_open(&ro, &w->r, err) < 0)
		goto out;
	struct syncc_opts so = { 0 };
	so.channel = "r";
	so.connect_once = 1;
	so.verbose = getenv("TANDEM_VERBOSE") != NULL;
	so.connect = pipe_connect;
	so.connect_rock = w;
	w->sc = syncc_new(w->conf, w->m, &so);
	rc = 0;
out:
	buf_free(&mconf);
	buf_free(&mspool);
	buf_free(&rconf);
	buf_free(&rspool);
	return rc;
}

static void close_world(struct world *w)
{
	syncc_free(&w->sc);
	sync_replica_free(&w->rep);
	store_close(&w->m);
	store_close(&w->r);
	chlog_close(&w->log);
	conf_free(&w->conf);
	struct terr err;
	fs_remove_tree(w->dir, &err);
	free(w->dir);
	buf_free(&w->mdir);
	buf_free(&w->rdir);
	buf_free(&w->history);
}

/* ---- the operations ---- */

static const char *const users[] = { "ann", "bob", "cy" };
static const char *const folders[] = { "", ".Sent", ".A", ".A.B", ".A.B.C", ".Trash", ".D" };
static const char *const shared[] = { "shared.news", "shared.news.old", "shared.board" };
static const char *const keywords[] = { "", "$Label1", "$Junk", "work", "$Label1 work" };
static const unsigned sysflags[] = { 0, SYSFLAG_SEEN, SYSFLAG_FLAGGED, SYSFLAG_ANSWERED | SYSFLAG_SEEN,
				     SYSFLAG_DELETED, SYSFLAG_DRAFT };

/* A mailbox name: a user's folder, or a shared one. */
static void any_mailbox(struct buf *out)
{
	buf_reset(out);
	if (pick(6) == 0) {
		buf_appends(out, shared[pick(3)]);
		return;
	}
	buf_printf(out, "user.%s%s", users[pick(3)], folders[pick(7)]);
}

/* A mailbox of the same owner as name. */
static void sibling(const char *name, struct buf *out)
{
	buf_reset(out);
	if (!strncmp(name, "shared.", 7)) {
		buf_appends(out, shared[pick(3)]);
		return;
	}
	const char *u = name + 5;
	size_t ul = strcspn(u, ".");
	buf_printf(out, "user.%.*s%s", (int)ul, u, folders[pick(7)]);
}

struct uids {
	uint32_t v[64];
	size_t n;
};

static int uids_cb(const struct store_record *r, void *rock)
{
	struct uids *u = rock;
	if (u->n < 64 && !(r->sysflags & SYSFLAG_EXPUNGED))
		u->v[u->n++] = r->uid;
	return 0;
}

/* Some of the live UIDs of a mailbox. */
static void some_uids(struct store *st, const char *name, struct uids *out)
{
	struct uids all = { { 0 }, 0 };
	struct terr err;
	out->n = 0;
	store_records(st, name, 0, 0, uids_cb, &all, &err);
	for (size_t i = 0; i < all.n; i++)
		if (pick(3) == 0)
			out->v[out->n++] = all.v[i];
	if (!out->n && all.n)
		out->v[out->n++] = all.v[pick((unsigned)all.n)];
}

static void message(struct buf *out)
{
	buf_reset(out);
	/* a few bodies recur: the same GUID in several places */
	unsigned k = pick(4) == 0 ? pick(5) : (unsigned)(rnd() & 0xffffff);
	buf_printf(out, "From: s%u@example.net\r\nTo: r@example.com\r\nSubject: message %u\r\n"
			"Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\n", k, k);
	for (unsigned i = 0, n = 1 + pick(8); i < n; i++)
		buf_printf(out, "line %u of message %u: %016llx\r\n", i, k, (unsigned long long)rnd());
}

/* One random operation on the master; most may fail (no such mailbox,
 * exists already, ...): that is part of the sequence. */
static void random_op(struct store *st)
{
	struct terr err = { 0 };
	struct buf a = BUF_INIT, b = BUF_INIT, msg = BUF_INIT;
	struct uids u;
	const char *user = users[pick(3)];
	unsigned op = pick(100);
	if (op < 8) {
		store_user_create(st, user, NULL, &err);
	} else if (op < 9) {
		store_user_delete(st, user, &err);
	} else if (op < 19) {
		any_mailbox(&a);
		store_mailbox_create(st, a.ptr, NULL, &err);
	} else if (op < 23) {
		any_mailbox(&a);
		sibling(a.ptr, &b);
		store_mailbox_rename(st, a.ptr, b.ptr, (int)pick(2), &err);
	} else if (op < 25) {
		any_mailbox(&a);
		store_mailbox_delete(st, a.ptr, &err);
	} else if (op < 42) {
		any_mailbox(&a);
		message(&msg);
		struct store_append_opts ao = { sysflags[pick(6)], keywords[pick(5)], 1700000000 + (int64_t)pick(1000) };
		uint32_t uid;
		store_append(st, a.ptr, msg.ptr, msg.len, &ao, &uid, &err);
	} else if (op < 45) {
		/* MULTIAPPEND: several messages in one transaction */
		any_mailbox(&a);
		struct buf m2 = BUF_INIT;
		message(&msg);
		message(&m2);
		struct store_append_msg msgs[2] = {
			{ msg.ptr, msg.len, { sysflags[pick(6)], keywords[pick(5)], 1700000000 } },
			{ m2.ptr, m2.len, { 0, NULL, 0 } },
		};
		uint32_t uids[2];
		store_append_multi(st, a.ptr, msgs, 2, uids, &err);
		buf_free(&m2);
	} else if (op < 50) {
		const char *names[3];
		struct buf n[3] = { BUF_INIT, BUF_INIT, BUF_INIT };
		size_t k = 1 + pick(3);
		for (size_t i = 0; i < k; i++) {
			any_mailbox(&n[i]);
			names[i] = n[i].ptr;
		}
		message(&msg);
		uint32_t uids[3];
		struct terr errs[3];
		struct store_append_opts ao = { 0, NULL, 0 };
		store_deliver(st, names, k, msg.ptr, msg.len, &ao, uids, errs, &err);
		for (size_t i = 0; i < 3; i++)
			buf_free(&n[i]);
	} else if (op < 56) {
		any_mailbox(&a);
		sibling(a.ptr, &b);
		some_uids(st, a.ptr, &u);
		size_t copied;
		if (u.n)	/* into itself too: a MOVE may renumber within a mailbox */
			store_copy(st, a.ptr, u.v, u.n, pick(4) ? b.ptr : a.ptr, (int)pick(2), NULL, NULL, &copied, &err);
	} else if (op < 68) {
		any_mailbox(&a);
		some_uids(st, a.ptr, &u);
		if (u.n)
			store_set_flags(st, a.ptr, u.v, u.n, (enum store_flag_op)pick(3), sysflags[pick(6)],
					keywords[pick(5)], 0, NULL, &err);
	} else if (op < 74) {
		any_mailbox(&a);
		some_uids(st, a.ptr, &u);
		if (pick(2))
			store_expunge(st, a.ptr, u.v, u.n, NULL, &err);
		else
			store_expunge(st, a.ptr, NULL, 0, NULL, &err);
	} else if (op < 78) {
		any_mailbox(&a);
		store_subscribe(st, user, a.ptr, (int)pick(2), &err);
	} else if (op < 82) {
		/* another user's seen state of a mailbox */
		any_mailbox(&a);
		struct store_mailbox_info mi;
		if (store_mailbox_get(st, a.ptr, &mi, &err) == 0) {
			char seen[32];
			snprintf(seen, sizeof seen, "1:%u", 1 + pick(mi.last_uid + 1));
			struct store_seen sv = { 1700000000 + (int64_t)pick(100), mi.last_uid, 1700000000 + (int64_t)pick(100),
						 seen };
			store_seen_set(st, user, mi.uniqueid, &sv, &err);
			store_mailbox_info_free(&mi);
		}
	} else if (op < 87) {
		any_mailbox(&a);
		static const char *const entries[] = { "/comment", "/vendor/tandem/x", "/specialuse" };
		const char *val = pick(3) == 0 ? "" : "a value";
		uint32_t uid = 0;
		if (pick(2)) {
			some_uids(st, a.ptr, &u);
			uid = u.n ? u.v[0] : 0;
		}
		store_annot_set(st, a.ptr, uid, entries[pick(3)], pick(2) ? "" : user, val, strlen(val), &err);
	} else if (op < 90) {
		any_mailbox(&a);
		char acl[128];
		snprintf(acl, sizeof acl, "%s\tlrswipkxtecda\t%s\tlrs\t", user, users[pick(3)]);
		store_mailbox_set_acl(st, a.ptr, acl, &err);
	} else if (op < 94) {
		any_mailbox(&a);
		if (pick(3))
			store_quota_set(st, a.ptr, pick(2) ? -1 : (int64_t)(100 + pick(1000)),
					pick(2) ? -1 : (int64_t)(10 + pick(100)), &err);
		else
			store_quota_delete(st, a.ptr, &err);
	} else {
		/* Sieve as Cyrus 3.6 keeps it: the user.<u>.#sieve mailbox (MBOXTYPE
		 * f), one message per script, the active one \Flagged */
		buf_printf(&a, "user.%s.#sieve", user);
		unsigned k = pick(3);
		if (k == 0) {
			struct store_mailbox_create_opts co = { NULL, 0, NULL, "f" };
			store_mailbox_create(st, a.ptr, &co, &err);
		} else if (k == 1) {
			buf_printf(&msg, "From: <%s@example>\r\nSubject: script\r\nContent-Type: application/sieve;"
					 " charset=utf-8\r\n\r\nkeep; # %u\r\n", user, pick(1000));
			struct store_append_opts ao = { pick(2) ? SYSFLAG_FLAGGED : 0, NULL, 0 };
			uint32_t uid;
			store_append(st, a.ptr, msg.ptr, msg.len, &ao, &uid, &err);
		} else {
			some_uids(st, a.ptr, &u);
			if (u.n)
				store_expunge(st, a.ptr, u.v, 1, NULL, &err);
		}
	}
	if (getenv("TANDEM_VERBOSE"))
		printf("op %u user=%s a=%s b=%s -> %s\n", op, user, buf_cstr(&a), buf_cstr(&b),
		       err.code ? err.msg : "ok");
	buf_free(&a);
	buf_free(&b);
	buf_free(&msg);
}

/* Split brain: the replica takes a change of its own (as after a hard
 * failover), into a mailbox it has: a new message, or flags. The
 * client's copy-back rules (docs/replication.md) must bring it to the
 * master, and the pair must still converge. */
static void replica_op(struct store *st)
{
	struct terr err = { 0 };
	struct buf a = BUF_INIT, msg = BUF_INIT;
	struct uids u;
	any_mailbox(&a);
	if (pick(3)) {
		message(&msg);
		struct store_append_opts ao = { sysflags[pick(6)], keywords[pick(5)], 1700000000 + (int64_t)pick(1000) };
		uint32_t uid;
		store_append(st, a.ptr, msg.ptr, msg.len, &ao, &uid, &err);
	} else {
		some_uids(st, a.ptr, &u);
		if (u.n)
			store_set_flags(st, a.ptr, u.v, u.n, STORE_FLAGS_ADD, SYSFLAG_FLAGGED, "$replica", 0, NULL, &err);
	}
	if (getenv("TANDEM_VERBOSE"))
		printf("replica op a=%s -> %s\n", a.ptr, err.code ? err.msg : "ok");
	buf_free(&a);
	buf_free(&msg);
}

/* ---- replication ---- */

/* One rolling pass as the channel's client makes it: take the log, send
 * it (reconnecting after every cut), and only then drop it. 0, or -1 with
 * w->failure set. */
static int pass(struct world *w)
{
	struct terr err = { 0 };
	const char *configdir = conf_str(w->conf, "configdirectory");
	int t = chlog_take(configdir, "r", &err);
	if (t < 0) {
		snprintf(w->failure, sizeof w->failure, "chlog_take: %s", err.msg);
		return -1;
	}
	if (t == 0)
		return 0;
	if (getenv("TANDEM_VERBOSE"))
		printf("pass\n");
	struct buf run = BUF_INIT, data = BUF_INIT;
	chlog_path(configdir, "r", "log-run", &run);
	if (fs_read_file(run.ptr, 64 * 1024 * 1024, &data, &err) == 0)
		buf_append(&w->history, data.ptr ? data.ptr : "", data.len);
	buf_free(&data);
	int rc = -1;
	for (int tries = 0; tries < 200; tries++) {
		w->passes++;
		if (syncc_connect(w->sc, &err) < 0) {
			syncc_disconnect(w->sc);
			continue;
		}
		struct terr e2 = { 0 };
		int r = syncc_logfile(w->sc, run.ptr, &e2);
		r = syncc_oneshot_result(w->sc, r, &e2);
		if (r == 0) {
			rc = 0;
			break;
		}
		if (e2.code != TE_IO) {
			snprintf(w->failure, sizeof w->failure, "a pass failed (not a cut): %s", e2.msg);
			break;
		}
		syncc_disconnect(w->sc);
		if (tries > 50)
			w->cut_percent = 0;	/* cuts stop: it must get through now */
	}
	if (rc == 0 && chlog_done(configdir, "r", &err) < 0) {
		snprintf(w->failure, sizeof w->failure, "chlog_done: %s", err.msg);
		rc = -1;
	}
	if (rc < 0 && !w->failure[0])
		snprintf(w->failure, sizeof w->failure, "a pass never got through");
	buf_free(&run);
	return rc;
}

/* ---- the independent oracle: a dump of a store through its API ---- */

struct dump {
	struct store *st;
	struct buf *out;
	const char *mbox;
	uint32_t live[512];	/* the mailbox's live UIDs (in order) */
	size_t nlive;
};

static int dump_rec_cb(const struct store_record *r, void *rock)
{
	struct dump *d = rock;
	struct buf flags = BUF_INIT;
	if (d->nlive < sizeof d->live / sizeof d->live[0])
		d->live[d->nlive++] = r->uid;
	store_flags_format(r->sysflags, r->keywords, &flags);
	buf_printf(d->out, "  rec %u modseq=%llu flags=(%s) idate=%lld size=%u guid=%s\n", r->uid,
		   (unsigned long long)r->modseq, buf_cstr(&flags), (long long)r->internaldate, r->size, r->guid);
	buf_free(&flags);
	return 0;
}

static int dump_annot_cb(uint32_t uid, const char *entry, const char *userid, const void *value, size_t len,
			 uint64_t modseq, void *rock)
{
	struct dump *d = rock;
	/* an annotation's own modseq is the replica's (the record's, or the
	 * folder's for a mailbox annotation): neither the sync CRC nor an
	 * IMAP client sees it; nor does anyone see the annotations an
	 * expunged record keeps (they are not replicated) */
	(void)modseq;
	int live = uid == 0;
	for (size_t i = 0; i < d->nlive && !live; i++)
		live = d->live[i] == uid;
	if (!live)
		return 0;
	buf_printf(d->out, "  annot uid=%u %s user=%s value=%.*s\n", uid, entry, userid, (int)len,
		   (const char *)value);
	return 0;
}

static int dump_sub_cb(const char *name, void *rock)
{
	struct dump *d = rock;
	buf_printf(d->out, "  sub %s\n", name);
	return 0;
}

static int dump_sieve_cb(const char *name, const void *script, size_t len, int active, int64_t modified, void *rock)
{
	struct dump *d = rock;
	char sha[41];
	(void)modified;
	sha1_hex(script, len, sha);
	buf_printf(d->out, "  sieve %s %s active=%d\n", name, sha, active);
	return 0;
}

struct names {
	char *v[256];
	size_t n;
};

static int name_cb(const char *name, void *rock)
{
	struct names *ns = rock;
	if (ns->n < 256)
		ns->v[ns->n++] = strdup(name);
	return 0;
}

struct mbinfo {
	char name[256], uniqueid[64];
};

struct mbinfos {
	struct mbinfo v[256];
	size_t n;
};

static int mb_cb(const struct store_mailbox_info *mi, void *rock)
{
	struct mbinfos *m = rock;
	if (m->n < 256) {
		snprintf(m->v[m->n].name, sizeof m->v[m->n].name, "%s", mi->name);
		snprintf(m->v[m->n].uniqueid, sizeof m->v[m->n].uniqueid, "%s", mi->uniqueid);
		m->n++;
	}
	return 0;
}

static void dump_store(struct store *st, struct buf *out)
{
	struct terr err = { 0 };
	struct names us = { { 0 }, 0 };
	struct mbinfos mbs;
	mbs.n = 0;
	struct dump d = { st, out, NULL, { 0 }, 0 };
	buf_reset(out);
	if (store_user_list(st, name_cb, &us, &err) < 0)
		buf_printf(out, "user list failed: %s\n", err.msg);
	if (store_mailbox_list(st, NULL, mb_cb, &mbs, &err) < 0)
		buf_printf(out, "mailbox list failed: %s\n", err.msg);
	for (size_t i = 0; i < us.n; i++) {
		buf_printf(out, "user %s\n", us.v[i]);
		store_subs_list(st, us.v[i], dump_sub_cb, &d, &err);
		store_sieve_list(st, us.v[i], dump_sieve_cb, &d, &err);
		for (size_t k = 0; k < mbs.n; k++) {
			struct store_seen sv;
			if (store_seen_get(st, us.v[i], mbs.v[k].uniqueid, &sv, &err) == 0) {
				buf_printf(out, "  seen %s lastread=%lld lastuid=%u lastchange=%lld uids=%s\n", mbs.v[k].name,
					   (long long)sv.lastread, sv.lastuid, (long long)sv.lastchange, sv.seenuids);
				free(sv.seenuids);
			}
		}
	}
	for (size_t k = 0; k < mbs.n; k++) {
		struct store_mailbox_info mi;
		if (store_mailbox_get(st, mbs.v[k].name, &mi, &err) < 0) {
			buf_printf(out, "mailbox %s: %s\n", mbs.v[k].name, err.msg);
			continue;
		}
		buf_printf(out,
			   "mailbox %s uniqueid=%s type=%s uidvalidity=%u last_uid=%u highestmodseq=%llu crc=%08x"
			   " crc_annot=%08x acl=%s options=%s quotaroot=%s createdmodseq=%llu foldermodseq=%llu\n",
			   mi.name, mi.uniqueid, mi.mboxtype, mi.uidvalidity, mi.last_uid,
			   (unsigned long long)mi.highestmodseq, mi.sync_crc, mi.sync_crc_annot, mi.acl, mi.options,
			   mi.quotaroot, (unsigned long long)mi.createdmodseq, (unsigned long long)mi.foldermodseq);
		d.mbox = mi.name;
		d.nlive = 0;
		store_records(st, mi.name, 0, 0, dump_rec_cb, &d, &err);
		store_annot_list(st, mi.name, -1, dump_annot_cb, &d, &err);
		struct store_quota q;
		if (store_quota_get(st, mi.name, &q, &err) == 0) {
			buf_printf(out, "  quota storage=%lld messages=%lld\n", (long long)q.storage_limit,
				   (long long)q.message_limit);
			store_quota_free(&q);
		}
		store_mailbox_info_free(&mi);
	}
	for (size_t i = 0; i < us.n; i++)
		free(us.v[i]);
}

/* The first line where a and b differ, for the failure message. */
static void first_difference(const struct buf *a, const struct buf *b, char *out, size_t outsz)
{
	const char *p = buf_cstr(a), *q = buf_cstr(b);
	while (*p && *q) {
		size_t lp = strcspn(p, "\n"), lq = strcspn(q, "\n");
		if (lp != lq || memcmp(p, q, lp)) {
			snprintf(out, outsz, "master: %.*s | replica: %.*s", (int)(lp < 250 ? lp : 250), p,
				 (int)(lq < 250 ? lq : 250), q);
			return;
		}
		p += lp + (p[lp] == '\n');
		q += lq + (q[lq] == '\n');
	}
	snprintf(out, outsz, "master: %.250s | replica: %.250s", *p ? p : "(end)", *q ? q : "(end)");
}

/* Master == replica by the dump, and by the engine's compare. */
static int converged(struct world *w, const char *when)
{
	struct buf dm = BUF_INIT, dr = BUF_INIT;
	dump_store(w->m, &dm);
	dump_store(w->r, &dr);
	int rc = 0;
	if (getenv("TANDEM_VERBOSE"))
		printf("---- master\n%s---- replica\n%s----\n", buf_cstr(&dm), buf_cstr(&dr));
	if (dm.len != dr.len || memcmp(buf_cstr(&dm), buf_cstr(&dr), dm.len)) {
		char diff[560];
		first_difference(&dm, &dr, diff, sizeof diff);
		snprintf(w->failure, sizeof w->failure, "%s: stores differ: %s", when, diff);
		rc = -1;
	}
	if (rc == 0) {
		struct terr err = { 0 };
		struct buf report = BUF_INIT;
		int ndiff = 0;
		w->cut_percent = 0;
		syncc_disconnect(w->sc);	/* a connection without a cut pending */
		syncc_compare_bodies(w->sc, 1);
		if (syncc_connect(w->sc, &err) < 0 || syncc_compare(w->sc, NULL, 0, &report, &ndiff, &err) < 0) {
			snprintf(w->failure, sizeof w->failure, "%s: compare failed: %s", when, err.msg);
			rc = -1;
		} else if (ndiff) {
			snprintf(w->failure, sizeof w->failure, "%s: compare finds %d differences: %.400s", when, ndiff,
				 buf_cstr(&report));
			rc = -1;
		}
		buf_free(&report);
	}
	buf_free(&dm);
	buf_free(&dr);
	return rc;
}

/* The whole log once more: nothing fails, nothing changes. */
static int replay(struct world *w, int round)
{
	struct buf path = BUF_INIT, before = BUF_INIT, after = BUF_INIT;
	struct terr err = { 0 };
	buf_printf(&path, "%s/replay.log", w->dir);
	dump_store(w->r, &before);
	int rc = fs_write_atomic(path.ptr, w->history.ptr ? w->history.ptr : "", w->history.len, 0600, &err);
	if (rc == 0 && syncc_connect(w->sc, &err) == 0) {
		rc = syncc_oneshot_result(w->sc, syncc_logfile(w->sc, path.ptr, &err), &err);
	} else {
		rc = -1;
	}
	if (rc < 0)
		snprintf(w->failure, sizeof w->failure, "replay %d failed: %s", round, err.msg);
	dump_store(w->r, &after);
	if (rc == 0 && (before.len != after.len || memcmp(buf_cstr(&before), buf_cstr(&after), before.len))) {
		char diff[560];
		first_difference(&before, &after, diff, sizeof diff);
		snprintf(w->failure, sizeof w->failure, "replay %d changed the replica: %s", round, diff);
		rc = -1;
	}
	buf_free(&path);
	buf_free(&before);
	buf_free(&after);
	return rc;
}

/* One seed: 0 when master and replica converged. */
static int run_seed(uint64_t seed, int steps, int split_brain)
{
	struct world w;
	struct terr err = { 0 };
	rng_state = seed;
	if (open_world(&w, &err) < 0) {
		printf("  seed %llu: setup failed: %s\n", (unsigned long long)seed, err.msg);
		return -1;
	}
	W = &w;
	w.cut_percent = (int)pick(4) * 15;	/* 0, 15, 30 or 45 % of connections get cut */
	int split = split_brain && pick(2);	/* half the seeds: the replica changes too */
	int rc = 0;
	for (int s = 0; s < steps && rc == 0; s++) {
		for (unsigned k = 0, n = 1 + pick(4); k < n; k++)
			random_op(w.m);
		if (split && pick(4) == 0)
			replica_op(w.r);
		if (pick(3) == 0)
			rc = pass(&w);
	}
	if (rc == 0)
		rc = pass(&w);
	if (rc == 0 && split) {
		/* what only the replica took is found and copied back by a
		 * repair (rolling passes see only what the master logs) */
		struct syncc_repair_opts ro = { 0 };
		struct terr err2 = { 0 };
		ro.all = 1;
		ro.bodies = 1;
		w.cut_percent = 0;
		syncc_disconnect(w.sc);
		if (syncc_connect(w.sc, &err2) < 0 || syncc_repair(w.sc, &ro, &err2) < 0) {
			snprintf(w.failure, sizeof w.failure, "repair after split brain failed: %s", err2.msg);
			rc = -1;
		}
		if (rc == 0)
			rc = pass(&w);	/* the copies back are logged on the master */
	}
	if (rc == 0)
		rc = converged(&w, "after the passes");
	for (int round = 1; rc == 0 && round <= 2; round++)
		rc = replay(&w, round);
	if (rc == 0)
		rc = converged(&w, "after the replays");
	if (rc < 0)
		printf("  seed %llu: %s (connections %lu, cut %lu)\n  rerun: TANDEM_SEED=%llu build/unit/test_sync_converge\n",
		       (unsigned long long)seed, w.failure, w.connects, w.cuts, (unsigned long long)seed);
	close_world(&w);
	W = NULL;
	return rc;
}

static uint64_t base_seed(void)
{
	const char *s = getenv("TANDEM_SEED");
	return s && *s ? strtoull(s, NULL, 10) : 20261205;
}

/* Seeds first + k, first + k + jobs, ... below n: a worker's share; stops
 * after 3 failures. Returns how many failed. */
static long run_share(uint64_t first, long n, long k, long jobs, int split_brain)
{
	long failed = 0;
	for (long i = k; i < n && failed < 3; i += jobs)
		if (run_seed(first + (uint64_t)i, 30, split_brain) < 0)
			failed++;
	return failed;
}

/* Runs the seeds (TANDEM_SEEDS, TANDEM_SEED) in TANDEM_JOBS worker
 * processes (default: the machine's cores, at most 8; each seed is
 * independent, with its own stores); 0 failures expected. */
static void run_seeds(int split_brain)
{
	const char *ns = getenv("TANDEM_SEEDS");
	/* `make check` runs the plain build and the ASan one: fewer seeds
	 * under ASan (about 5x slower); `make soak` runs tens of thousands */
#ifdef __SANITIZE_ADDRESS__
	long n = ns && *ns ? strtol(ns, NULL, 10) : 30;
#else
	long n = ns && *ns ? strtol(ns, NULL, 10) : 1000;
#endif
	if (getenv("TANDEM_SEED") && !(ns && *ns))
		n = 1;
	const char *js = getenv("TANDEM_JOBS");
	long jobs = js && *js ? strtol(js, NULL, 10) : sysconf(_SC_NPROCESSORS_ONLN);
	if (jobs < 1)
		jobs = 1;
	if (jobs > 8)
		jobs = 8;
	if (jobs > n)
		jobs = n > 0 ? n : 1;
	uint64_t seed = base_seed();
	long failed = 0;
	if (jobs == 1) {
		failed = run_share(seed, n, 0, 1, split_brain);
	} else {
		pid_t pids[8];
		for (long k = 0; k < jobs; k++) {
			pids[k] = fork();
			if (pids[k] == 0)
				_exit((int)run_share(seed, n, k, jobs, split_brain));
			if (pids[k] < 0) {
				failed++;	/* counted as a failure: the run is not whole */
				printf("  fork: %s\n", strerror(errno));
			}
		}
		for (long k = 0; k < jobs; k++) {
			int st;
			if (pids[k] > 0 && waitpid(pids[k], &st, 0) == pids[k])
				failed += WIFEXITED(st) ? WEXITSTATUS(st) : 1;
		}
	}
	printf("  %ld seeds from %llu in %ld processes, %ld failed\n", n, (unsigned long long)seed, jobs, failed);
	/* seeds that once failed (found by longer runs than make check's),
	 * run every time: a chain of renames in one pass (D -> A.B.C, then
	 * Sent -> D), a mailbox renamed below its old name alone (A ->
	 * A.B.C once its children had moved away), and (60004597, split
	 * brain) a shared mailbox renamed away, deleted under its new name and
	 * its old name made again, all in one pass: the replica's same-name
	 * mailbox is the deleted one (a tombstone here), so it goes first */
	static const uint64_t regressions[] = { 20267484, 20269595, 20270111, 60004597 };
	long rfailed = 0;
	if (!getenv("TANDEM_SEED"))
		for (size_t i = 0; i < sizeof regressions / sizeof regressions[0]; i++)
			if (run_seed(regressions[i], 30, split_brain) < 0)
				rfailed++;
	CHECK_INT(failed, 0);
	CHECK_INT(rfailed, 0);
}

static int count_cb(const struct store_record *r, void *rock)
{
	(void)r;
	(*(int *)rock)++;
	return 0;
}

/* The sync client reads a mailbox's header and then its records; a
 * delivery committed in between (another process) made the header older
 * than the records and the replica refused the update on its CRC check
 * (seen in the rolling-latency bench under load: apply_mailbox_rolled_back
 * reason=crc). store_mailbox_read_begin makes them one snapshot. */
TEST(a_mailbox_is_read_in_one_snapshot)
{
	struct world w;
	struct terr err = { 0 };
	rng_state = 99;
	CHECK_INT(open_world(&w, &err), 0);
	char mconf[600], mspool[600];
	snprintf(mconf, sizeof mconf, "%s/conf", w.mdir.ptr);
	snprintf(mspool, sizeof mspool, "%s/spool", w.mdir.ptr);
	struct store_opts mo = { mconf, "default", mspool, NULL, 0, 0, NULL, NULL, NULL };
	struct store *m2 = NULL;
	struct buf msg = BUF_INIT;
	struct store_append_opts ao = { 0, NULL, 0 };
	uint32_t uid;
	struct store_mailbox *mbx = NULL;
	CHECK_INT(store_user_create(w.m, "ann", NULL, &err), 0);
	message(&msg);
	CHECK_INT(store_append(w.m, "user.ann", msg.ptr, msg.len, &ao, &uid, &err), 0);
	CHECK_INT(store_open(&mo, &m2, &err), 0);
	CHECK_INT(store_mailbox_open(w.m, "user.ann", &mbx, &err), 0);
	int begun = 0, n = 0;
	CHECK_INT(store_mailbox_read_begin(mbx, &begun, &err), 0);
	CHECK_INT(begun, 1);
	/* another process delivers meanwhile */
	message(&msg);
	CHECK_INT(store_append(m2, "user.ann", msg.ptr, msg.len, &ao, &uid, &err), 0);
	CHECK_INT(uid, 2);
	CHECK_INT(store_mailbox_records(mbx, 0, 1, count_cb, &n, &err), 0);
	CHECK_INT(n, 1);
	CHECK_INT(store_mailbox_state(mbx)->last_uid, 1);
	store_mailbox_read_end(mbx, begun);
	/* and the dlist the client sends: header and records agree */
	struct dlist *mb = NULL;
	CHECK_INT(sync_mailbox_dlist_mb(mbx, 1, 0, &mb, &err), 0);
	uint32_t last = 0;
	CHECK_INT(dlist_get_num32(mb, "LAST_UID", &last), 0);
	CHECK_INT(last, 2);
	const struct dlist *recs = dlist_get_list(mb, "RECORD");
	CHECK(recs && recs->n == 2);
	dlist_free(&mb);
	store_mailbox_close(&mbx);
	store_close(&m2);
	buf_free(&msg);
	close_world(&w);
}

/* ---- two clients of one channel ---- */

/* A second client of the channel, on its own master handle and its own
 * replica session (another process, as `tandem sync -A` beside the
 * channel's rolling client is): before each of the first client's APPLY
 * MAILBOX commands (up to `max`), a message is delivered to user.ann and
 * the second client sends user ann first, so the first client's state is
 * older than the replica's when its command runs; before its GET
 * MAILBOXES a message is delivered only (so the first client has
 * something to send after it read the replica's state). */
struct race {
	struct world *w;
	struct store *m2;
	struct syncc *b;
	struct sync_replica *rep_b;
	int fired, max;
	char failure[600];
};

static struct race *RACE;

static struct sync_transport *race_connect(void *rock, struct terr *err)
{
	struct race *r = rock;
	(void)err;
	sync_replica_free(&r->rep_b);
	struct sync_replica_opts o = { r->w->r, "test", NULL, NULL };
	r->rep_b = sync_replica_new(&o);
	return sync_pipe_new(r->rep_b);
}

static void race_before(void *rock, const char *cmd, size_t len)
{
	struct race *r = RACE;
	(void)rock;
	int apply = len >= 13 && !strncasecmp(cmd, "APPLY MAILBOX", 13);
	int get = len >= 13 && !strncasecmp(cmd, "GET MAILBOXES", 13);
	if (r->fired >= r->max || !(apply || get) || r->failure[0])
		return;
	r->fired += apply;
	struct buf msg = BUF_INIT;
	message(&msg);
	struct store_append_opts ao = { 0, NULL, 0 };
	uint32_t uid;
	struct terr err = { 0 };
	const char *u[] = { "ann" };
	if (store_append(r->m2, "user.ann", msg.ptr, msg.len, &ao, &uid, &err) < 0 ||
	    (apply && (syncc_connect(r->b, &err) < 0 || syncc_users(r->b, u, 1, &err) < 0)))
		snprintf(r->failure, sizeof r->failure, "the second client: %.500s", err.msg);
	buf_free(&msg);
}

/* rounds: how many of the first client's APPLY MAILBOX the second one
 * races; 0 when the first client's `sync -A` got through and the stores
 * are equal. */
static int race_run(int rounds, int mode_all, int *fired_r, char *why, size_t whysz)
{
	struct world w;
	struct race r;
	struct terr err = { 0 };
	memset(&r, 0, sizeof r);
	rng_state = 7 + (uint64_t)rounds;
	if (open_world(&w, &err) < 0) {
		snprintf(why, whysz, "setup: %s", err.msg);
		return -1;
	}
	r.w = &w;
	r.max = rounds;
	RACE = &r;
	int rc = -1;
	char mconf[600], mspool[600];
	snprintf(mconf, sizeof mconf, "%s/conf", w.mdir.ptr);
	snprintf(mspool, sizeof mspool, "%s/spool", w.mdir.ptr);
	struct store_opts mo = { mconf, "default", mspool, NULL, 0, 0, NULL, NULL, NULL };
	struct buf msg = BUF_INIT;
	struct store_append_opts ao = { 0, NULL, 0 };
	uint32_t uid;
	if (store_user_create(w.m, "ann", NULL, &err) < 0 || store_mailbox_create(w.m, "user.ann.Sent", NULL, &err) < 0)
		goto out;
	for (int i = 0; i < 3; i++) {
		message(&msg);
		if (store_append(w.m, i ? "user.ann" : "user.ann.Sent", msg.ptr, msg.len, &ao, &uid, &err) < 0)
			goto out;
	}
	if (store_open(&mo, &r.m2, &err) < 0)
		goto out;
	struct syncc_opts so = { 0 };
	so.channel = "r";
	so.connect_once = 1;
	so.connect = race_connect;
	so.connect_rock = &r;
	r.b = syncc_new(w.conf, r.m2, &so);
	w.before = race_before;
	const char *u[] = { "ann" };
	int ra = syncc_connect(w.sc, &err);
	if (ra == 0)
		ra = mode_all ? syncc_all(w.sc, &err) : syncc_users(w.sc, u, 1, &err);
	/* a mailbox that failed is isolated (the pass goes on): the result
	 * of the whole run counts it, as `tandem sync` reports it */
	if (syncc_oneshot_result(w.sc, ra, &err) < 0) {
		snprintf(why, whysz, "the first client (after %d races): %s", r.fired, err.msg);
		goto out;
	}
	if (r.failure[0]) {
		snprintf(why, whysz, "%s", r.failure);
		goto out;
	}
	if (r.fired != rounds) {
		snprintf(why, whysz, "%d races, %d wanted", r.fired, rounds);
		goto out;
	}
	w.before = NULL;
	if (converged(&w, "after the raced sync") < 0) {
		snprintf(why, whysz, "%s", w.failure);
		goto out;
	}
	rc = 0;
out:
	if (rc < 0 && !why[0])
		snprintf(why, whysz, "%s", err.msg);
	*fired_r = r.fired;
	buf_free(&msg);
	syncc_free(&r.b);
	sync_replica_free(&r.rep_b);
	store_close(&r.m2);
	RACE = NULL;
	close_world(&w);
	return rc;
}

/* What made CI's test_channels fail: a full update refused because the
 * replica already had newer state (from the other client) ended the
 * first client's sync with IMAP_SYNC_CHECKSUM. It reads the master again
 * and resends (SYNC_RACE_RESENDS). */
TEST(a_second_client_of_the_channel_races_the_first)
{
	for (int mode_all = 0; mode_all <= 1; mode_all++)
		for (int rounds = 1; rounds <= 5; rounds++) {
			char why[800] = "";
			int fired;
			int rc = race_run(rounds, mode_all, &fired, why, sizeof why);
			if (rc < 0)
				printf("  %s, %d race%s: %s\n", mode_all ? "sync -A" : "sync -u ann", rounds,
				       rounds > 1 ? "s" : "", why);
			CHECK_INT(rc, 0);
		}
	/* a mailbox that takes mail faster than a round trip: the resends
	 * are bounded, the mailbox fails (for the next pass) */
	char why[800] = "";
	int fired;
	CHECK_INT(race_run(100, 0, &fired, why, sizeof why), -1);
	CHECK(strstr(why, "IMAP_SYNC_CHECKSUM") != NULL);
	/* the new mailbox's stream, the incremental after GET MAILBOXES, the
	 * full update, the resends, and the isolated mailbox's retry */
	CHECK(fired <= 4 + SYNC_RACE_RESENDS);
}

/* ---- a batch across users (issue 12) ---- */

/* One user's mailbox as the streaming client sends it: its body (APPLY
 * MESSAGE, the bytes inline) and APPLY MAILBOX of nrec records. */
static void user_parts(struct sync_transport *t, const char *user, unsigned nrec)
{
	struct buf cmd = BUF_INIT, msg = BUF_INIT, recs = BUF_INIT;
	for (unsigned uid = 1; uid <= nrec; uid++) {
		char guid[41];
		buf_reset(&msg);
		buf_printf(&msg, "From: a@example.com\r\nSubject: %s %u\r\n\r\nfor %s, number %u\r\n", user, uid, user, uid);
		sha1_hex(msg.ptr, msg.len, guid);
		buf_reset(&cmd);
		buf_printf(&cmd, "APPLY MESSAGE (%%{default %s %zu}\r\n", guid, msg.len);
		buf_append(&cmd, msg.ptr, msg.len);
		buf_appends(&cmd, ")\r\n");
		sync_transport_send(t, cmd.ptr, cmd.len);
		buf_printf(&recs, "%s%%(UID %u MODSEQ %u LAST_UPDATED 1700000000 FLAGS () INTERNALDATE 1700000000 SIZE %zu GUID %s)",
			   uid > 1 ? " " : "", uid, uid + 1, msg.len, guid);
	}
	buf_reset(&cmd);
	buf_printf(&cmd, "APPLY MAILBOX %%(UNIQUEID uniq%s00000000000000 MBOXNAME user.%s SYNC_CRC 0 LAST_UID %u"
			 " HIGHESTMODSEQ %u RECENTUID 0 RECENTTIME 0 LAST_APPENDDATE 0 POP3_LAST_LOGIN 0"
			 " POP3_SHOW_AFTER 0 UIDVALIDITY 1700000001 PARTITION default ACL \"\" OPTIONS P RECORD (%s))\r\n",
		   user, user, nrec, nrec + 1, recs.ptr);
	sync_transport_send(t, cmd.ptr, cmd.len);
	buf_free(&cmd);
	buf_free(&msg);
	buf_free(&recs);
}

static void send_line(struct sync_transport *t, const char *line)
{
	struct buf cmd = BUF_INIT;
	buf_printf(&cmd, "%s\r\n", line);
	sync_transport_send(t, cmd.ptr, cmd.len);
	buf_free(&cmd);
}

/* The answers of n commands, one line each in out: "OK ...", or a data
 * line as "* MAILBOX <name> <LAST_UID>". */
static int read_answers(struct sync_transport *t, size_t n, struct buf *out)
{
	struct terr err = { 0 };
	for (size_t done = 0; done < n;) {
		struct sync_reply rep = { NULL, BUF_INIT };
		if (sync_transport_recv(t, &rep, &err) < 0)
			return -1;
		if (rep.data) {
			const char *name = NULL;
			uint64_t last = 0;
			dlist_get_str(rep.data, "MBOXNAME", &name);
			dlist_get_num64(rep.data, "LAST_UID", &last);
			buf_printf(out, "* %s %s %llu\n", rep.data->key ? rep.data->key : "?", name ? name : "-",
				   (unsigned long long)last);
		} else {
			buf_printf(out, "%s\n", buf_cstr(&rep.text));
			done++;
		}
		sync_reply_free(&rep);
	}
	return 0;
}

/* The streaming client's order (GET USER of the next user, this user's
 * parts, RESTART) makes one batch of four users: GET USER and RESTART
 * join it, every answer in order, and one syncfs for the bodies plus one
 * closing the relaxed commits where a batch per user took four. A GET of
 * a user the batch writes ends it: its answer shows that write. */
static void batch_across_users(int thread)
{
	struct world w;
	struct terr err = { 0 };
	if (open_world(&w, &err) < 0) {
		CHECK_STR(err.msg, "");
		return;
	}
	struct sync_replica_opts o = { w.r, "test", NULL, NULL };
	w.rep = sync_replica_new(&o);
	if (thread)
		sync_replica_set_batch_max(w.rep, 0);	/* the flush thread on, batches of 64 */
	struct sync_transport *t = sync_pipe_new(w.rep);
	/* user b is on the replica already: its GET USER has a data line */
	user_parts(t, "b", 1);
	struct buf got = BUF_INIT;
	CHECK_INT(read_answers(t, 2, &got), 0);
	unsigned long fs0 = store_apply_batch_syncfs(), relaxed0 = store_apply_relaxed_batches();
	send_line(t, "GET USER a");	/* the batch is empty: run at once */
	send_line(t, "GET USER b");
	user_parts(t, "a", 1);
	send_line(t, "RESTART");
	send_line(t, "GET USER c");
	user_parts(t, "b", 2);
	send_line(t, "RESTART");
	send_line(t, "GET USER d");
	user_parts(t, "c", 1);
	send_line(t, "RESTART");
	send_line(t, "GET MAILBOXES (user.a user.b)");	/* a and b written by the batch: it ends */
	user_parts(t, "d", 3);
	send_line(t, "RESTART");
	send_line(t, "GET MAILBOXES (user.c)");	/* not written by this batch: joins */
	send_line(t, "GET USER d");	/* written by this batch: ends it */
	buf_reset(&got);
	CHECK_INT(read_answers(t, 22, &got), 0);
	CHECK_STR(got.ptr, "OK success\n"				/* GET USER a */
			   "* MAILBOX user.b 1\nOK success\n"		/* GET USER b */
			   "OK success\nOK success\nOK Restarting\n"	/* a */
			   "OK success\n"				/* GET USER c */
			   "OK success\nOK success\nOK success\nOK Restarting\n"	/* b */
			   "OK success\n"				/* GET USER d */
			   "OK success\nOK success\nOK Restarting\n"	/* c */
			   "* MAILBOX user.a 1\n* MAILBOX user.b 2\nOK success\n"
			   "OK success\nOK success\nOK success\nOK success\nOK Restarting\n"	/* d */
			   "* MAILBOX user.c 1\nOK success\n"
			   "* MAILBOX user.d 3\nOK success\n");
	/* two batches: a b c (a GET MAILBOXES of a and b ends it), then d
	 * (alone, but a new user: its first commit unsynced, made durable by
	 * the closing syncfs, not FULL); per user, four plus one */
	CHECK_INT(store_apply_batch_syncfs() - fs0, 4);
	CHECK_INT(store_apply_relaxed_batches() - relaxed0, 2);
	/* nothing left staged: RESTART inside the batch unstaged (the
	 * bodies moved into place; none of tmp/sync stays) */
	struct buf sync_dir = BUF_INIT;
	buf_printf(&sync_dir, "%s/spool/tmp/sync", w.rdir.ptr);
	size_t left = 0;
	DIR *dh = opendir(sync_dir.ptr);
	for (struct dirent *de; dh && (de = readdir(dh));)
		left += de->d_name[0] != '.';
	if (dh)
		closedir(dh);
	CHECK_INT(left, 0);
	buf_free(&sync_dir);
	sync_transport_close(&t);
	buf_free(&got);
	close_world(&w);
}

TEST(a_batch_spans_users_with_get_and_restart_inside)
{
	batch_across_users(0);
	batch_across_users(1);
}

/* The commands the replica was sent, one line each (their first line). */
static struct buf ahead_wire;

static void record_command(void *rock, const char *cmd, size_t len)
{
	(void)rock;
	size_t n = strcspn(cmd, "\r\n");
	buf_append(&ahead_wire, cmd, n < len ? n : len);
	buf_putc(&ahead_wire, '\n');
}

/* Where line (a prefix) first starts a line of the recorded commands;
 * -1 when it never does. */
static long wire_pos(const char *line)
{
	const char *w = buf_cstr(&ahead_wire);
	for (const char *p = w; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (!strncmp(p, line, strlen(line)))
			return p - w;
	return -1;
}

/* The streaming client asks GET USER of the next SYNC_CLIENT_USERS_AHEAD
 * users before it sends a user's parts (the replica answers those inside
 * its batch, so the next users' answers are there when their parts are
 * due and one batch holds several users): users 1-4's GET USER go out
 * before user 0's mailbox, user 5's before user 1's. Asking only the next
 * user's, user 4's came after user 3's mailbox. */
TEST(the_client_asks_users_ahead)
{
	struct world w;
	struct terr err = { 0 };
	if (open_world(&w, &err) < 0) {
		CHECK_STR(err.msg, "");
		return;
	}
	W = &w;
	buf_reset(&ahead_wire);
	w.before = record_command;
	static const char *const u[] = { "u0", "u1", "u2", "u3", "u4", "u5", "u6", "u7" };
	static const char msg[] = "From: a@example.com\r\nSubject: ahead\r\n\r\nbody\r\n";
	for (size_t i = 0; i < 8; i++) {
		char box[32];
		snprintf(box, sizeof box, "user.%s", u[i]);
		uint32_t uid = 0;
		CHECK_INT(store_user_create(w.m, u[i], NULL, &err), 0);
		CHECK_INT(store_append(w.m, box, msg, strlen(msg), NULL, &uid, &err), 0);
	}
	int rc = syncc_connect(w.sc, &err);
	if (rc == 0)
		rc = syncc_users(w.sc, u, 8, &err);
	CHECK_INT(rc, 0);
	long mb0 = wire_pos("APPLY MAILBOX %(UNIQUEID"), get4 = wire_pos("GET USER u4"), get5 = wire_pos("GET USER u5");
	const char *w1 = strstr(buf_cstr(&ahead_wire), "MBOXNAME user.u1 ");
	long mb1 = w1 ? (long)(w1 - buf_cstr(&ahead_wire)) : -1;
	CHECK(mb0 >= 0 && get4 >= 0 && get5 >= 0 && mb1 >= 0);
	CHECK(get4 < mb0);
	CHECK(get5 < mb1);
	CHECK(get5 > mb0);	/* not all at once: SYNC_CLIENT_USERS_AHEAD */
	if (get4 >= mb0 || get5 >= mb1)
		printf("  the commands:\n%s", buf_cstr(&ahead_wire));
	w.before = NULL;
	buf_free(&ahead_wire);
	close_world(&w);
	W = NULL;
}

TEST(converges_whatever_the_sequence_and_cuts)
{
	run_seeds(0);
}

TEST(converges_when_the_replica_changes_too)
{
	run_seeds(1);
}

int main(void)
{
	log_set_level(getenv("TANDEM_VERBOSE") ? LOG_LVL_DEBUG : LOG_LVL_ERR);
	setvbuf(stdout, NULL, _IONBF, 0);
	RUN(a_mailbox_is_read_in_one_snapshot);
	RUN(a_batch_spans_users_with_get_and_restart_inside);
	RUN(a_second_client_of_the_channel_races_the_first);
	RUN(the_client_asks_users_ahead);
	RUN(converges_whatever_the_sequence_and_cuts);
	if (!getenv("TANDEM_NO_SPLIT"))
		RUN(converges_when_the_replica_changes_too);
	return test_done();
}
