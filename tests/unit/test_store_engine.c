/* test_store_engine.c: the store's machinery under the sync engine: the
 * prepared-statement cache (store_stmt.c), mailbox handles
 * (store_mailbox_open), and database errors that must never read as
 * "not found". A real SQLite in a temp directory. */
#include "lib/fsutil.h"
#include "store/store-private.h"
#include "lib/log.h"
#include "test.h"

#include "lib/sha1.h"

#include <dirent.h>
#include <sqlite3.h>
#include <unistd.h>

struct fixture {
	char *dir;
	char conf[4096], spool[4096];
	struct store *st;
};

/* Opens fx's store (its directories set). */
static void fx_store_open(struct fixture *fx)
{
	struct store_opts o = { .configdir = fx->conf, .partition = "default", .partition_path = fx->spool };
	struct terr err;
	if (store_open(&o, &fx->st, &err) < 0) {
		printf("store_open: %s\n", err.msg);
		exit(2);
	}
	store_set_busy_timeout(fx->st, 50);
}

static void fx_open(struct fixture *fx)
{
	memset(fx, 0, sizeof *fx);
	fx->dir = test_tmpdir();
	snprintf(fx->conf, sizeof fx->conf, "%s/conf", fx->dir);
	snprintf(fx->spool, sizeof fx->spool, "%s/spool", fx->dir);
	fx_store_open(fx);
}

static void fx_close(struct fixture *fx)
{
	store_close(&fx->st);
	struct terr err;
	fs_remove_tree(fx->dir, &err);
	free(fx->dir);
}

static const char msg[] = "From: a@example.com\r\nSubject: hi\r\n\r\nHello\r\n";

static uint32_t append(struct fixture *fx, const char *mbox, const char *data)
{
	uint32_t uid = 0;
	struct terr err;
	struct store_append_opts o = { 0, "$Label1", 1704067200 };
	if (store_append(fx->st, mbox, data, strlen(data), &o, &uid, &err) < 0)
		printf("  append: %s\n", err.msg);
	return uid;
}

static struct ustore *ustore_of(struct fixture *fx, const char *owner)
{
	struct ustore *u = NULL;
	struct terr err;
	if (store_ustore(fx->st, owner, 0, &u, &err) < 0)
		printf("  ustore %s: %s\n", owner, err.msg);
	return u;
}

static size_t busy_slots(const struct store_stmts *c)
{
	size_t n = 0;
	for (size_t i = 0; i < c->n; i++)
		n += c->slot[i].busy != 0;
	return n;
}

/* ---- the statement cache ------------------------------------------------------------- */

TEST(stmt_cache_prepares_once)
{
	struct fixture fx;
	struct terr err;
	fx_open(&fx);
	CHECK_INT(store_user_create(fx.st, "alice", NULL, &err), 0);
	CHECK(append(&fx, "user.alice", msg) == 1);
	struct ustore *u = ustore_of(&fx, "alice");
	unsigned long prepares = u->sql.prepares, hits = u->sql.hits;
	/* the same work again prepares nothing new: every statement is reused */
	for (int i = 0; i < 5; i++)
		CHECK(append(&fx, "user.alice", msg) == (uint32_t)(2 + i));
	CHECK_INT(u->sql.prepares, prepares);
	CHECK(u->sql.hits >= hits + 5 * 4);
	CHECK_INT(busy_slots(&u->sql), 0);	/* all given back */
	CHECK(u->sql.n > 0 && u->sql.n <= STORE_STMT_CACHE_MAX);
	/* users.db's statements too */
	unsigned long up = fx.st->usersql.prepares;
	CHECK_INT(store_user_exists(fx.st, "alice", &err), 1);
	CHECK_INT(store_user_exists(fx.st, "bob", &err), 0);
	CHECK_INT(store_user_exists(fx.st, "alice", &err), 1);
	CHECK(fx.st->usersql.prepares <= up + 1);
	fx_close(&fx);
}

TEST(stmt_cache_in_use_gets_its_own)
{
	struct fixture fx;
	struct terr err;
	fx_open(&fx);
	CHECK_INT(store_user_create(fx.st, "alice", NULL, &err), 0);
	struct ustore *u = ustore_of(&fx, "alice");
	static const char q[] = "SELECT name FROM mailboxes WHERE name = ?;";
	sqlite3_stmt *a = store_stmt(&u->sql, q, &err);
	sqlite3_stmt *b = store_stmt(&u->sql, q, &err);
	CHECK(a && b && a != b);	/* a is in use: b is a private one */
	sqlite3_bind_text(a, 1, "user.alice", -1, SQLITE_STATIC);
	sqlite3_bind_text(b, 1, "user.nobody", -1, SQLITE_STATIC);
	CHECK_INT(sqlite3_step(a), SQLITE_ROW);
	CHECK_INT(sqlite3_step(b), SQLITE_DONE);
	CHECK_STR((const char *)sqlite3_column_text(a, 0), "user.alice");
	store_stmt_put(&u->sql, b);	/* finalized (ASan would see a leak otherwise) */
	store_stmt_put(&u->sql, a);	/* reset and kept */
	sqlite3_stmt *c = store_stmt(&u->sql, q, &err);
	CHECK(c == a);
	CHECK_INT(sqlite3_bind_parameter_count(c), 1);
	CHECK_INT(sqlite3_step(c), SQLITE_DONE);	/* bindings were cleared: NULL matches nothing */
	store_stmt_put(&u->sql, c);
	CHECK_INT(busy_slots(&u->sql), 0);
	fx_close(&fx);
}

struct nest {
	struct store *st;
	int outer, inner;
};

static int inner_cb(const struct store_record *r, void *rock)
{
	((struct nest *)rock)->inner++;
	return 0;
}

static int outer_cb(const struct store_record *r, void *rock)
{
	struct nest *n = rock;
	struct terr err;
	n->outer++;
	/* the same query while the outer one is still stepping */
	if (store_records(n->st, "user.alice", 0, 0, inner_cb, n, &err) < 0)
		printf("  inner: %s\n", err.msg);
	return 0;
}

TEST(stmt_cache_nested_same_query)
{
	struct fixture fx;
	struct terr err;
	fx_open(&fx);
	CHECK_INT(store_user_create(fx.st, "alice", NULL, &err), 0);
	for (int i = 0; i < 3; i++)
		append(&fx, "user.alice", msg);
	struct nest n = { fx.st, 0, 0 };
	CHECK_INT(store_records(fx.st, "user.alice", 0, 0, outer_cb, &n, &err), 0);
	CHECK_INT(n.outer, 3);
	CHECK_INT(n.inner, 9);
	CHECK_INT(busy_slots(&ustore_of(&fx, "alice")->sql), 0);
	fx_close(&fx);
}

TEST(stmt_cache_evicts_least_recently_used)
{
	struct fixture fx;
	struct terr err;
	fx_open(&fx);
	CHECK_INT(store_user_create(fx.st, "alice", NULL, &err), 0);
	struct ustore *u = ustore_of(&fx, "alice");
	char sql[64];
	for (int i = 0; i < STORE_STMT_CACHE_MAX + 5; i++) {
		snprintf(sql, sizeof sql, "SELECT %d;", i);
		sqlite3_stmt *s = store_stmt(&u->sql, sql, &err);
		CHECK(s != NULL);
		CHECK_INT(sqlite3_step(s), SQLITE_ROW);
		CHECK_INT(sqlite3_column_int(s, 0), i);
		store_stmt_put(&u->sql, s);
	}
	CHECK_INT(u->sql.n, STORE_STMT_CACHE_MAX);
	unsigned long p = u->sql.prepares;
	snprintf(sql, sizeof sql, "SELECT %d;", STORE_STMT_CACHE_MAX + 4);	/* recent: cached */
	store_stmt_put(&u->sql, store_stmt(&u->sql, sql, &err));
	CHECK_INT(u->sql.prepares, p);
	store_stmt_put(&u->sql, store_stmt(&u->sql, "SELECT 0;", &err));	/* evicted: prepared again */
	CHECK_INT(u->sql.prepares, p + 1);
	CHECK_INT(u->sql.n, STORE_STMT_CACHE_MAX);
	fx_close(&fx);
}

/* ---- mailbox handles ------------------------------------------------------------------ */

static int count_rec(const struct store_record *r, void *rock)
{
	(*(int *)rock)++;
	return 0;
}

static int count_annot(uint32_t uid, const char *entry, const char *userid, const void *value, size_t len,
		       uint64_t modseq, void *rock)
{
	(*(int *)rock)++;
	return 0;
}

TEST(handle_reads_by_id)
{
	struct fixture fx;
	struct terr err;
	fx_open(&fx);
	CHECK_INT(store_user_create(fx.st, "alice", NULL, &err), 0);
	CHECK_INT(store_mailbox_create(fx.st, "user.alice.A", NULL, &err), 0);
	for (int i = 0; i < 3; i++)
		append(&fx, "user.alice.A", msg);
	CHECK_INT(store_annot_set(fx.st, "user.alice.A", 0, "/comment", "", "x", 1, &err), 0);
	CHECK_INT(store_annot_set(fx.st, "user.alice.A", 2, "/comment", "", "y", 1, &err), 0);
	struct store_mailbox *mb = NULL;
	CHECK_INT(store_mailbox_open(fx.st, "user.alice.A", &mb, &err), 0);
	if (!mb) {
		fx_close(&fx);
		return;
	}
	const struct store_mailbox_info *mi = store_mailbox_state(mb);
	CHECK_STR(mi->name, "user.alice.A");
	CHECK_INT(mi->last_uid, 3);
	CHECK_INT(mi->exists, 3);
	struct store_mailbox_info ref;
	CHECK_INT(store_mailbox_get(fx.st, "user.alice.A", &ref, &err), 0);
	CHECK_STR(mi->uniqueid, ref.uniqueid);
	CHECK_U64(mi->highestmodseq, ref.highestmodseq);
	CHECK_INT(mi->sync_crc, ref.sync_crc);
	store_mailbox_info_free(&ref);
	int n = 0;
	CHECK_INT(store_mailbox_records(mb, 0, 1, count_rec, &n, &err), 0);
	CHECK_INT(n, 3);
	n = 0;
	CHECK_INT(store_mailbox_annots(mb, -1, count_annot, &n, &err), 0);
	CHECK_INT(n, 2);
	n = 0;
	CHECK_INT(store_mailbox_annots(mb, 2, count_annot, &n, &err), 0);
	CHECK_INT(n, 1);
	struct buf body = BUF_INIT;
	CHECK_INT(store_mailbox_message_read(mb, "12cb16197cfe3b88d9b09ea92878099da511aaf7", &body, &err), 0);
	CHECK_MEM(body.ptr, body.len, msg, strlen(msg));
	buf_free(&body);
	/* a rename keeps the handle's mailbox */
	CHECK_INT(store_mailbox_rename(fx.st, "user.alice.A", "user.alice.B", 0, &err), 0);
	n = 0;
	CHECK_INT(store_mailbox_records(mb, 0, 1, count_rec, &n, &err), 0);
	CHECK_INT(n, 3);
	CHECK_INT(store_mailbox_refresh(mb, &err), 0);
	CHECK_STR(store_mailbox_state(mb)->name, "user.alice.B");
	/* a delete leaves it nothing */
	CHECK_INT(store_mailbox_delete(fx.st, "user.alice.B", &err), 0);
	CHECK_INT(store_mailbox_refresh(mb, &err), -1);
	CHECK_INT(err.code, TE_NOTFOUND);
	n = 0;
	CHECK_INT(store_mailbox_records(mb, 0, 1, count_rec, &n, &err), 0);
	CHECK_INT(n, 0);
	store_mailbox_close(&mb);
	CHECK(mb == NULL);
	store_mailbox_close(&mb);	/* closing NULL is fine */
	/* no such mailbox, no such user */
	CHECK_INT(store_mailbox_open(fx.st, "user.alice.nope", &mb, &err), -1);
	CHECK_INT(err.code, TE_NOTFOUND);
	CHECK(mb == NULL);
	CHECK_INT(store_mailbox_open(fx.st, "user.nobody", &mb, &err), -1);
	CHECK_INT(err.code, TE_NOTFOUND);
	fx_close(&fx);
}

struct visit {
	struct store *st;
	int opened;
};

static int visit_all_cb(const struct store_record *r, void *rock)
{
	struct visit *v = rock;
	char inbox[48];
	struct terr err;
	for (int i = 0; i < 70; i++) {
		struct store_mailbox_info mi;
		snprintf(inbox, sizeof inbox, "user.u%02d", i);
		if (store_mailbox_get(v->st, inbox, &mi, &err) == 0) {
			v->opened++;
			store_mailbox_info_free(&mi);
		}
	}
	return 0;
}

/* The store closes least recently used databases past USTORE_CACHE_MAX: a
 * handle must not keep a pointer to one. */
TEST(handle_outlives_its_database_connection)
{
	struct fixture fx;
	struct terr err;
	fx_open(&fx);
	CHECK_INT(store_user_create(fx.st, "alice", NULL, &err), 0);
	append(&fx, "user.alice", msg);
	struct store_mailbox *mb = NULL;
	CHECK_INT(store_mailbox_open(fx.st, "user.alice", &mb, &err), 0);
	char user[32], inbox[48];
	for (int i = 0; i < 70; i++) {
		snprintf(user, sizeof user, "u%02d", i);
		snprintf(inbox, sizeof inbox, "user.u%02d", i);
		CHECK_INT(store_user_create(fx.st, user, NULL, &err), 0);
		struct store_mailbox_info mi;
		CHECK_INT(store_mailbox_get(fx.st, inbox, &mi, &err), 0);
		store_mailbox_info_free(&mi);
	}
	int n = 0;
	CHECK_INT(store_mailbox_records(mb, 0, 0, count_rec, &n, &err), 0);
	CHECK_INT(n, 1);
	CHECK_INT(store_mailbox_refresh(mb, &err), 0);
	CHECK_INT(store_mailbox_state(mb)->last_uid, 1);
	/* a row loop whose callback opens every other database: the one being
	 * stepped must not be closed under it (ASan sees a use after free) */
	struct visit v = { fx.st, 0 };
	CHECK_INT(store_mailbox_records(mb, 0, 0, visit_all_cb, &v, &err), 0);
	CHECK_INT(v.opened, 70);
	store_mailbox_close(&mb);
	fx_close(&fx);
}

/* ---- a database error is never "not found" -------------------------------------------------- */

static void expect_error(int rc, const struct terr *err, const char *what)
{
	if (getenv("TEST_VERBOSE") || rc != -1 || err->code == TE_NOTFOUND || err->code == TE_OK)
		printf("  %s: rc %d code %s (%s)\n", what, rc, terr_code_name(err->code), err->msg);
	CHECK_INT(rc, -1);
	CHECK(err->code != TE_NOTFOUND && err->code != TE_OK);
}

static int name_cb(const char *name, void *rock)
{
	return 0;
}

static int sieve_cb(const char *name, const void *script, size_t len, int active, int64_t modified, void *rock)
{
	return 0;
}

static int mbox_cb(const struct store_mailbox_info *mi, void *rock)
{
	return 0;
}

static int cache_cb(const struct store_cache_row *row, void *rock)
{
	return 0;
}

/* Every getter of alice's data, against a database it cannot read. */
static void getters_fail(struct fixture *fx, const char *uniqueid, int users_too)
{
	struct terr err = { 0 };
	struct store_mailbox_info mi;
	struct store_seen seen;
	struct store_quota q;
	struct store_mailbox *mb = NULL;
	uint32_t u32;
	int n = 0;
	expect_error(store_mailbox_get(fx->st, "user.alice", &mi, &err), &err, "store_mailbox_get");
	expect_error(store_mailbox_open(fx->st, "user.alice", &mb, &err), &err, "store_mailbox_open");
	CHECK(mb == NULL);
	expect_error(store_records(fx->st, "user.alice", 0, 1, count_rec, &n, &err), &err, "store_records");
	expect_error(store_annot_list(fx->st, "user.alice", -1, count_annot, &n, &err), &err, "store_annot_list");
	expect_error(store_seen_get(fx->st, "alice", "someuniqueid", &seen, &err), &err, "store_seen_get");
	expect_error(store_quota_get(fx->st, "user.alice", &q, &err), &err, "store_quota_get");
	expect_error(store_recent_get(fx->st, "user.alice", uniqueid, &u32, &err), &err, "store_recent_get");
	expect_error(store_subs_list(fx->st, "alice", name_cb, NULL, &err), &err, "store_subs_list");
	expect_error(store_sieve_list(fx->st, "alice", sieve_cb, NULL, &err), &err, "store_sieve_list");
	expect_error(store_mailbox_was_deleted(fx->st, "user.alice", uniqueid, &err), &err,
		     "store_mailbox_was_deleted");
	expect_error(store_mailbox_list(fx->st, "alice", mbox_cb, NULL, &err), &err, "store_mailbox_list");
	expect_error(store_cache_range(fx->st, "user.alice", 1, 10, cache_cb, NULL, &err), &err, "store_cache_range");
	expect_error(store_mailbox_verify_crc(fx->st, "user.alice", &u32, &u32, &err), &err,
		     "store_mailbox_verify_crc");
	if (users_too) {
		expect_error(store_user_exists(fx->st, "alice", &err), &err, "store_user_exists");
		expect_error(store_user_check_password(fx->st, "alice", "pw", &err), &err, "store_user_check_password");
		expect_error(store_user_list(fx->st, name_cb, NULL, &err), &err, "store_user_list");
	}
}

static void user_db_path(const struct fixture *fx, const char *file, char *out, size_t n)
{
	snprintf(out, n, "%s/%s", !strcmp(file, "users.db") ? fx->conf : fx->spool,
		 !strcmp(file, "users.db") ? "users.db" : "user/alice/meta.db");
}

/* A second connection holds the database's exclusive lock (SQLITE_BUSY
 * for the store's reads, after its busy timeout). */
static sqlite3 *hold_exclusive(const char *path)
{
	sqlite3 *db = NULL;
	if (sqlite3_open(path, &db) != SQLITE_OK ||
	    sqlite3_exec(db, "PRAGMA locking_mode=EXCLUSIVE; BEGIN EXCLUSIVE;"
			     " CREATE TABLE IF NOT EXISTS lock_holder(x); INSERT INTO lock_holder VALUES(1);",
			 NULL, NULL, NULL) != SQLITE_OK)
		printf("  lock %s: %s\n", path, db ? sqlite3_errmsg(db) : "open");
	return db;
}

static void seed_alice(struct fixture *fx, char uniqueid[64])
{
	struct terr err;
	struct store_mailbox_info mi;
	CHECK_INT(store_user_create(fx->st, "alice", NULL, &err), 0);
	append(fx, "user.alice", msg);
	CHECK_INT(store_quota_set(fx->st, "user.alice", 1000, 10, &err), 0);
	CHECK_INT(store_mailbox_get(fx->st, "user.alice", &mi, &err), 0);
	snprintf(uniqueid, 64, "%s", mi.uniqueid);
	store_mailbox_info_free(&mi);
}

TEST(busy_database_is_not_absent)
{
	struct fixture fx;
	char uniqueid[64], path[4200];
	fx_open(&fx);
	seed_alice(&fx, uniqueid);
	/* a fresh store handle: nothing of alice's is open */
	store_close(&fx.st);
	struct store_opts o = { .configdir = fx.conf, .partition = "default", .partition_path = fx.spool };
	struct terr err;
	CHECK_INT(store_open(&o, &fx.st, &err), 0);
	store_set_busy_timeout(fx.st, 20);
	user_db_path(&fx, "meta.db", path, sizeof path);
	sqlite3 *lock = hold_exclusive(path);
	getters_fail(&fx, uniqueid, 0);
	sqlite3_close(lock);
	/* and users.db */
	user_db_path(&fx, "users.db", path, sizeof path);
	store_close(&fx.st);
	lock = hold_exclusive(path);
	if (store_open(&o, &fx.st, &err) == 0) {	/* the open itself may find it locked */
		store_set_busy_timeout(fx.st, 20);
		struct terr e2 = { 0 };
		expect_error(store_user_exists(fx.st, "alice", &e2), &e2, "store_user_exists");
		expect_error(store_user_check_password(fx.st, "alice", "pw", &e2), &e2, "store_user_check_password");
		expect_error(store_user_list(fx.st, name_cb, NULL, &e2), &e2, "store_user_list");
	} else {
		CHECK(err.code == TE_BUSY);
		CHECK_INT(store_open(&o, &fx.st, &err), -1);	/* keeps failing while locked, never "empty" */
	}
	sqlite3_close(lock);
	if (!fx.st)
		CHECK_INT(store_open(&o, &fx.st, &err), 0);
	/* unlocked, everything is found again */
	struct store_mailbox_info mi;
	CHECK_INT(store_mailbox_get(fx.st, "user.alice", &mi, &err), 0);
	store_mailbox_info_free(&mi);
	CHECK_INT(store_user_exists(fx.st, "alice", &err), 1);
	fx_close(&fx);
}

/* The statements of an open connection fail (SQLITE_AUTH from an
 * authorizer that denies every read, as an I/O error would): the getters'
 * own queries, with alice's database already open and its statements
 * cached. */
static int deny_reads(void *rock, int action, const char *a, const char *b, const char *c, const char *d)
{
	return action == SQLITE_READ ? SQLITE_DENY : SQLITE_OK;
}

TEST(failing_query_is_not_absent)
{
	struct fixture fx;
	struct terr err;
	char uniqueid[64];
	fx_open(&fx);
	seed_alice(&fx, uniqueid);
	/* every getter once with a working database: the statements are cached */
	struct store_seen seen;
	struct store_quota q;
	uint32_t u32;
	int n = 0;
	CHECK_INT(store_seen_get(fx.st, "alice", "someuniqueid", &seen, &err), -1);
	CHECK_INT(err.code, TE_NOTFOUND);
	CHECK_INT(store_quota_get(fx.st, "user.alice", &q, &err), 0);
	store_quota_free(&q);
	CHECK_INT(store_recent_get(fx.st, "user.alice", uniqueid, &u32, &err), 0);
	CHECK_INT(store_records(fx.st, "user.alice", 0, 1, count_rec, &n, &err), 0);
	struct ustore *u = ustore_of(&fx, "alice");
	sqlite3_set_authorizer(u->db, deny_reads, NULL);
	sqlite3_set_authorizer(fx.st->usersdb, deny_reads, NULL);
	getters_fail(&fx, uniqueid, 1);
	sqlite3_set_authorizer(u->db, NULL, NULL);
	sqlite3_set_authorizer(fx.st->usersdb, NULL, NULL);
	CHECK_INT(store_quota_get(fx.st, "user.alice", &q, &err), 0);
	store_quota_free(&q);
	fx_close(&fx);
}

/* ---- syncs a commit need not wait for ---------------------------------------------------- */

static int sync_level(struct ustore *u)
{
	sqlite3_stmt *s = NULL;
	int v = -1;
	if (sqlite3_prepare_v2(u->db, "PRAGMA synchronous;", -1, &s, NULL) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW)
		v = sqlite3_column_int(s, 0);
	sqlite3_finalize(s);
	return v;
}

static void reopen(struct fixture *fx)
{
	store_close(&fx->st);
	fx_store_open(fx);
}

/* The first sync of a connection fsyncs its write-ahead log's directory
 * only when the log may be new: a log that held a header when the
 * database was opened skips it; a new one (a new user, a log another
 * program deleted) gets it. */
TEST(wal_dirsync_only_for_a_new_log)
{
	struct fixture fx;
	struct terr err;
	unsigned long skipped0, synced0, skipped, synced;
	fx_open(&fx);
	store_dirsync_counts(&skipped0, &synced0);
	CHECK_INT(store_user_create(fx.st, "alice", NULL, &err), 0);	/* alice's log is new */
	CHECK(append(&fx, "user.alice", msg) == 1);
	store_dirsync_counts(&skipped, &synced);
	CHECK_INT(skipped, skipped0);
	CHECK(synced >= synced0 + 1);

	reopen(&fx);	/* a fresh connection to a log with frames in it */
	store_dirsync_counts(&skipped0, &synced0);
	CHECK(append(&fx, "user.alice", msg) == 2);
	store_dirsync_counts(&skipped, &synced);
	CHECK_INT(skipped, skipped0 + 1);
	CHECK_INT(synced, synced0);

	/* another program's last connection checkpoints and deletes the log */
	store_close(&fx.st);
	char path[4200], wal[4300];
	snprintf(path, sizeof path, "%s/user/alice/meta.db", fx.spool);
	snprintf(wal, sizeof wal, "%s-wal", path);
	sqlite3 *other = NULL;
	CHECK_INT(sqlite3_open(path, &other), SQLITE_OK);
	CHECK_INT(sqlite3_exec(other, "SELECT count(*) FROM records;", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(other);
	CHECK(access(wal, F_OK) != 0);
	reopen(&fx);
	store_dirsync_counts(&skipped0, &synced0);
	CHECK(append(&fx, "user.alice", msg) == 3);	/* the log is made again: its directory synced */
	store_dirsync_counts(&skipped, &synced);
	CHECK_INT(skipped, skipped0);
	CHECK_INT(synced, synced0 + 1);
	fx_close(&fx);
}

/* The \Recent marks commit without a sync of their own on a log known
 * durable, and leave the connection at synchronous=FULL for the
 * acknowledged changes that follow; on a new log they commit FULL. */
TEST(recent_marks_commit_relaxed)
{
	struct fixture fx;
	struct terr err;
	fx_open(&fx);
	CHECK_INT(store_user_create(fx.st, "alice", NULL, &err), 0);
	CHECK(append(&fx, "user.alice", msg) == 1);
	struct store_mailbox_info mi;
	CHECK_INT(store_mailbox_get(fx.st, "user.alice", &mi, &err), 0);
	uint32_t prev = 99;
	unsigned long relaxed0 = store_recent_relaxed_commits();
	CHECK_INT(store_recent_take(fx.st, "user.alice", mi.uniqueid, 1, &prev, &err), 0);	/* a new log: FULL */
	CHECK_INT(prev, 0);
	CHECK_INT(store_recent_relaxed_commits(), relaxed0);
	CHECK_INT(sync_level(ustore_of(&fx, "alice")), 2);

	reopen(&fx);
	CHECK(append(&fx, "user.alice", msg) == 2);
	CHECK_INT(store_recent_take(fx.st, "user.alice", mi.uniqueid, 2, &prev, &err), 0);
	CHECK_INT(prev, 1);
	CHECK_INT(store_recent_relaxed_commits(), relaxed0 + 1);
	CHECK_INT(sync_level(ustore_of(&fx, "alice")), 2);	/* FULL again */
	CHECK_INT(store_recent_take(fx.st, "user.alice", mi.uniqueid, 2, &prev, &err), 0);	/* nothing to take */
	CHECK_INT(prev, 2);
	CHECK_INT(store_recent_relaxed_commits(), relaxed0 + 1);
	reopen(&fx);
	CHECK_INT(store_recent_get(fx.st, "user.alice", mi.uniqueid, &prev, &err), 0);
	CHECK_INT(prev, 2);	/* committed: seen by the next connection */
	store_mailbox_info_free(&mi);
	fx_close(&fx);
}


/* ---- a delivery's file beside its change-log line (store_blob_write_start) ---- */

static int fail_before_commit(void *arg, struct terr *err)
{
	(*(int *)arg)++;
	return terr_set(err, TE_IO, "injected");
}

/* A commit whose before_commit hook fails is rolled back: nothing of it is
 * seen, and the next transaction works. */
TEST(before_commit_failure_rolls_back)
{
	struct fixture fx;
	struct terr err;
	fx_open(&fx);
	CHECK_INT(store_user_create(fx.st, "alice", NULL, &err), 0);
	CHECK(append(&fx, "user.alice", msg) == 1);
	struct ustore *u = ustore_of(&fx, "alice");
	struct store_mailbox_info mi = { 0 };
	CHECK_INT(store_mailbox_get(fx.st, "user.alice", &mi, &err), 0);
	uint64_t hms = mi.highestmodseq;
	store_mailbox_info_free(&mi);
	struct utx tx;
	int calls = 0;
	CHECK_INT(utx_begin(&tx, fx.st, u, &err), 0);
	tx.before_commit = fail_before_commit;
	tx.before_commit_arg = &calls;
	uint64_t ms = 0;
	CHECK_INT(utx_modseq(&tx, &ms, &err), 0);
	CHECK(ms > hms);
	CHECK_INT(utx_commit(&tx, &err), -1);
	CHECK_INT(calls, 1);
	CHECK_STR(err.msg, "injected");
	utx_rollback(&tx);
	/* the modseq bump was rolled back: the next append gets the same one */
	CHECK(append(&fx, "user.alice", msg) == 2);
	CHECK_INT(store_mailbox_get(fx.st, "user.alice", &mi, &err), 0);
	CHECK_U64(mi.highestmodseq, ms);
	CHECK_INT(mi.last_uid, 2);
	store_mailbox_info_free(&mi);
	fx_close(&fx);
}

static int tmp_entries(const char *dir)
{
	char p[4200];
	snprintf(p, sizeof p, "%s/tmp", dir);
	DIR *d = opendir(p);
	int n = 0;
	struct dirent *de;
	while (d && (de = readdir(d)) != NULL)
		n += de->d_name[0] != '.';
	if (d)
		closedir(d);
	return n;
}

/* store_blob_write_start: the file has its GUID name (and the right
 * bytes) once store_blob_wait says so, and only then; the same bytes
 * again find it there; tmp/ is left empty. store_deliver goes this way. */
TEST(blob_write_start_then_wait)
{
	struct fixture fx;
	struct terr err;
	fx_open(&fx);
	CHECK_INT(store_user_create(fx.st, "alice", NULL, &err), 0);
	struct ustore *u = ustore_of(&fx, "alice");
	static const char body[] = "Subject: beside the log\r\n\r\nbody\r\n";
	char guid[41];
	sha1_hex(body, strlen(body), guid);
	struct buf path = BUF_INIT, got = BUF_INIT;
	store_blob_path(u, guid, &path);
	for (int round = 0; round < 2; round++) {
		struct blob_pending *p = NULL;
		CHECK_INT(store_blob_write_start(fx.st, u, body, strlen(body), guid, &p, &err), 0);
		CHECK(p != NULL);
		CHECK_INT(store_blob_wait(p, &err), 0);
		CHECK_INT(store_blob_wait(p, &err), 0);	/* the same answer again */
		store_blob_pending_free(&p);
		CHECK(p == NULL);
		buf_reset(&got);
		CHECK_INT(fs_read_file(path.ptr, 1 << 20, &got, &err), 0);
		CHECK_MEM(got.ptr, got.len, body, strlen(body));
		CHECK_INT(tmp_entries(u->dir), 0);
	}
	/* a delivery to two owners: one file, linked */
	CHECK_INT(store_user_create(fx.st, "bob", NULL, &err), 0);
	const char *names[2] = { "user.alice", "user.bob" };
	uint32_t uids[2] = { 0, 0 };
	struct terr errs[2];
	static const char body2[] = "Subject: two owners\r\n\r\nbody\r\n";
	CHECK_INT(store_deliver(fx.st, names, 2, body2, strlen(body2), NULL, uids, errs, &err), 0);
	CHECK_INT(uids[0], 1);
	CHECK_INT(uids[1], 1);
	struct buf out = BUF_INIT;
	sha1_hex(body2, strlen(body2), guid);
	CHECK_INT(store_message_read(fx.st, "user.bob", guid, &out, &err), 0);
	CHECK_MEM(out.ptr, out.len, body2, strlen(body2));
	buf_free(&out);
	buf_free(&path);
	buf_free(&got);
	fx_close(&fx);
}

int main(void)
{
	log_open("test_store_engine", 0, LOG_LVL_ERR);
	RUN(stmt_cache_prepares_once);
	RUN(stmt_cache_in_use_gets_its_own);
	RUN(stmt_cache_nested_same_query);
	RUN(stmt_cache_evicts_least_recently_used);
	RUN(handle_reads_by_id);
	RUN(handle_outlives_its_database_connection);
	RUN(busy_database_is_not_absent);
	RUN(failing_query_is_not_absent);
	RUN(wal_dirsync_only_for_a_new_log);
	RUN(recent_marks_commit_relaxed);
	RUN(before_commit_failure_rolls_back);
	RUN(blob_write_start_then_wait);
	return test_done();
}
