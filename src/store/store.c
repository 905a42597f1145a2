/* store.c: opening an instance's store, user databases, transactions and
 * users (see store.h and store-private.h). */
#include "store/store-private.h"

#include "chlog/chlog.h"
#include "lib/fsutil.h"
#include "lib/limits.h"
#include "lib/log.h"
#include "lib/xalloc.h"
#include "names/mboxname.h"

#include <crypt.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define USTORE_CACHE_MAX 64
#define SQL_BUSY_MS 30000

static const char user_schema[] =
	"CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL);"
	"INSERT OR IGNORE INTO meta VALUES('schema', 1), ('modseq', 0), ('uidvalidity', 0);"
	"CREATE TABLE IF NOT EXISTS mailboxes("
	" id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, uniqueid TEXT NOT NULL UNIQUE,"
	" mboxtype TEXT NOT NULL DEFAULT '', sync_crc INTEGER NOT NULL DEFAULT 0,"
	" sync_crc_annot INTEGER NOT NULL, last_uid INTEGER NOT NULL DEFAULT 0,"
	" highestmodseq INTEGER NOT NULL, recentuid INTEGER NOT NULL DEFAULT 0,"
	" recenttime INTEGER NOT NULL DEFAULT 0, last_appenddate INTEGER NOT NULL DEFAULT 0,"
	" pop3_last_login INTEGER NOT NULL DEFAULT 0, pop3_show_after INTEGER NOT NULL DEFAULT 0,"
	" xconvmodseq INTEGER NOT NULL DEFAULT 0, raclmodseq INTEGER NOT NULL DEFAULT 0,"
	" uidvalidity INTEGER NOT NULL, partition TEXT NOT NULL, acl TEXT NOT NULL,"
	" options TEXT NOT NULL DEFAULT '', quotaroot TEXT NOT NULL DEFAULT '',"
	" createdmodseq INTEGER NOT NULL, foldermodseq INTEGER NOT NULL,"
	" exists_count INTEGER NOT NULL DEFAULT 0);"
	"CREATE TABLE IF NOT EXISTS keywords(mailbox_id INTEGER NOT NULL REFERENCES mailboxes(id)"
	" ON DELETE CASCADE, slot INTEGER NOT NULL, name TEXT NOT NULL,"
	" PRIMARY KEY(mailbox_id, slot)) WITHOUT ROWID;"
	"CREATE TABLE IF NOT EXISTS records(mailbox_id INTEGER NOT NULL REFERENCES mailboxes(id)"
	" ON DELETE CASCADE, uid INTEGER NOT NULL, modseq INTEGER NOT NULL,"
	" last_updated INTEGER NOT NULL, sysflags INTEGER NOT NULL, keywords TEXT NOT NULL DEFAULT '',"
	" internaldate INTEGER NOT NULL, size INTEGER NOT NULL, guid TEXT NOT NULL,"
	" savedate INTEGER NOT NULL DEFAULT 0, createdmodseq INTEGER NOT NULL DEFAULT 0,"
	" thrid INTEGER NOT NULL DEFAULT 0, PRIMARY KEY(mailbox_id, uid)) WITHOUT ROWID;"
	"CREATE INDEX IF NOT EXISTS records_modseq ON records(mailbox_id, modseq);"
	"CREATE INDEX IF NOT EXISTS records_guid ON records(guid);"
	"CREATE TABLE IF NOT EXISTS annotations(mailbox_id INTEGER NOT NULL REFERENCES mailboxes(id)"
	" ON DELETE CASCADE, uid INTEGER NOT NULL, entry TEXT NOT NULL, userid TEXT NOT NULL,"
	" value BLOB NOT NULL, modseq INTEGER NOT NULL,"
	" PRIMARY KEY(mailbox_id, uid, entry, userid)) WITHOUT ROWID;"
	"CREATE TABLE IF NOT EXISTS seen(uniqueid TEXT PRIMARY KEY, lastread INTEGER NOT NULL,"
	" lastuid INTEGER NOT NULL, lastchange INTEGER NOT NULL, seenuids TEXT NOT NULL);"
	"CREATE TABLE IF NOT EXISTS subs(mboxname TEXT PRIMARY KEY);"
	"CREATE TABLE IF NOT EXISTS sieve(name TEXT PRIMARY KEY, script BLOB NOT NULL,"
	" active INTEGER NOT NULL DEFAULT 0, modified INTEGER NOT NULL);"
	"CREATE TABLE IF NOT EXISTS quota(root TEXT PRIMARY KEY, storage_limit INTEGER NOT NULL,"
	" message_limit INTEGER NOT NULL, storage_used INTEGER NOT NULL DEFAULT 0,"
	" message_used INTEGER NOT NULL DEFAULT 0, modseq INTEGER NOT NULL);"
	"CREATE TABLE IF NOT EXISTS tombstones(name TEXT NOT NULL, uniqueid TEXT NOT NULL,"
	" modseq INTEGER NOT NULL, deleted_at INTEGER NOT NULL, PRIMARY KEY(name, uniqueid));";

static const char users_schema[] =
	"CREATE TABLE IF NOT EXISTS users(userid TEXT PRIMARY KEY, pwhash TEXT,"
	" created INTEGER NOT NULL);";

/* PRAGMA user_version of a database whose schema statements have all run
 * (a meta.db: user_schema, store_cache_schema, store_recent_schema; users.db:
 * users_schema, store_move_schema). A table added to either schema raises
 * its version: the opens of older databases then run the statements again
 * (and a column added to a table its ALTER TABLE: store_cache_migrate). */
#define USER_SCHEMA_VERSION 2	/* 2: cache.headers */
#define USER_SCHEMA_VERSION_S "2"
#define USERS_SCHEMA_VERSION 1
#define USERS_SCHEMA_VERSION_S "1"

/* user_version of db, -1 when it cannot be read (then the schema
 * statements run, as before there was a version). */
static int schema_version(sqlite3 *db)
{
	sqlite3_stmt *s = NULL;
	int v = -1;
	if (sqlite3_prepare_v2(db, "PRAGMA user_version;", -1, &s, NULL) == SQLITE_OK &&
	    sqlite3_step(s) == SQLITE_ROW)
		v = sqlite3_column_int(s, 0);
	sqlite3_finalize(s);
	return v;
}

/* Records that an existing database's schema statements ran. Best effort:
 * a failure (a full disk) only means the next open runs them again. */
static void mark_schema_version(sqlite3 *db, const char *v)
{
	char sql[64];
	snprintf(sql, sizeof sql, "PRAGMA user_version = %s;", v);
	if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
		log_debug("event=schema_version_fail error=\"%s\"", sqlite3_errmsg(db));
}

int64_t store_now(void)
{
	return (int64_t)time(NULL);
}

int store_sql_done(sqlite3 *db, sqlite3_stmt *s, int rc, const char *what, struct terr *err)
{
	int failed = rc != SQLITE_DONE && rc != SQLITE_ROW ? store_sql_fail(db, what, err) : 0;
	sqlite3_finalize(s);
	return failed;
}

int store_sql_fail(sqlite3 *db, const char *what, struct terr *err)
{
	int code = sqlite3_extended_errcode(db);
	enum terr_code tc = TE_IO;
	if ((code & 0xff) == SQLITE_FULL)
		tc = TE_NOSPACE;
	else if ((code & 0xff) == SQLITE_BUSY || (code & 0xff) == SQLITE_LOCKED)
		tc = TE_BUSY;
	else if ((code & 0xff) == SQLITE_CORRUPT || (code & 0xff) == SQLITE_NOTADB)
		tc = TE_CORRUPT;
	else if ((code & 0xff) == SQLITE_CONSTRAINT)
		tc = TE_EXISTS;
	return terr_set(err, tc, "%s: %s", what, sqlite3_errmsg(db));
}

int store_sql_exec(sqlite3 *db, const char *sql, struct terr *err)
{
	char *msg = NULL;
	if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
		sqlite3_free(msg);
		return store_sql_fail(db, "sql", err);
	}
	return 0;
}

sqlite3_stmt *store_sql_prepare(sqlite3 *db, const char *sql, struct terr *err)
{
	sqlite3_stmt *s = NULL;
	if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK) {
		store_sql_fail(db, "prepare", err);
		return NULL;
	}
	return s;
}

/* ---- the write-ahead logs whose directory entry is durable ------------ */

/* SQLite fsyncs a write-ahead log's directory at the first sync of every
 * connection that opened the log with O_CREAT (all of them), in case the
 * open created it: one more open, fdatasync and close in each fresh
 * process's first commit (an IMAP session's STORE, each tandem deliver).
 * A log that already held a header when the connection opened its
 * database was made by an earlier connection whose first sync was a full
 * one (tandem commits FULL, and relaxes a commit only on a log listed
 * here: store_sync_relaxed), so that sync fsynced the directory; a
 * connection keeps its log open, so no other connection can delete it
 * meanwhile (SQLite deletes a log only at the close of its last
 * connection, which tandem's connections never do: NO_CKPT_ON_CLOSE).
 * For a log listed here (its path, from the open to the close of its
 * connection) the directory fsync is skipped; any other log (new, empty
 * after a truncating checkpoint, made by another program) gets it. */
static struct {
	char **path;
	size_t n, cap;
	unsigned long skipped, synced;	/* for the tests */
} durable_wal;

static int (*real_open_directory)(const char *, int *);

static long durable_wal_find(const char *wal)
{
	for (size_t i = 0; i < durable_wal.n; i++)
		if (!strcmp(durable_wal.path[i], wal))
			return (long)i;
	return -1;
}

/* SQLite's "openDirectory" system call (unixSync's directory fsync):
 * SQLITE_CANTOPEN makes it skip the fsync, as it does for a directory it
 * cannot open. */
static int open_directory(const char *path, int *fd)
{
	if (durable_wal_find(path) >= 0) {
		durable_wal.skipped++;
		*fd = -1;
		return SQLITE_CANTOPEN;
	}
	durable_wal.synced++;
	return real_open_directory(path, fd);
}

/* After the open of db, before its first statement (SQLite opens the log
 * at the first read): lists its log when it holds a header (>= 32 bytes:
 * written by a commit) now. The name is SQLite's own (the path it will
 * pass to open_directory). */
static void durable_wal_note(sqlite3 *db)
{
	const char *wal = sqlite3_filename_wal(sqlite3_db_filename(db, "main"));
	struct stat sb;
	if (!real_open_directory || !wal || stat(wal, &sb) != 0 || !S_ISREG(sb.st_mode) || sb.st_size < 32 ||
	    durable_wal_find(wal) >= 0)
		return;
	if (durable_wal.n == durable_wal.cap) {
		durable_wal.cap = durable_wal.cap ? 2 * durable_wal.cap : 16;
		durable_wal.path = xrealloc(durable_wal.path, durable_wal.cap * sizeof *durable_wal.path);
	}
	durable_wal.path[durable_wal.n++] = xstrdup(wal);
}

/* At the close of db's connection. */
static void durable_wal_forget(sqlite3 *db)
{
	const char *wal = sqlite3_filename_wal(sqlite3_db_filename(db, "main"));
	long i = wal ? durable_wal_find(wal) : -1;
	if (i < 0)
		return;
	free(durable_wal.path[i]);
	durable_wal.path[i] = durable_wal.path[--durable_wal.n];
}

int store_sync_relaxed(sqlite3 *db)
{
	const char *wal = sqlite3_filename_wal(sqlite3_db_filename(db, "main"));
	return wal && durable_wal_find(wal) >= 0;
}

void store_dirsync_counts(unsigned long *skipped_r, unsigned long *synced_r)
{
	*skipped_r = durable_wal.skipped;
	*synced_r = durable_wal.synced;
}

void store_sqlite_setup(void)
{
	static int done;
	if (done)
		return;
	done = 1;
	sqlite3_vfs *vfs = sqlite3_vfs_find(NULL);
	if (vfs && vfs->iVersion >= 3 && vfs->xGetSystemCall && vfs->xSetSystemCall) {
		sqlite3_syscall_ptr real = vfs->xGetSystemCall(vfs, "openDirectory");
		if (real && vfs->xSetSystemCall(vfs, "openDirectory", (sqlite3_syscall_ptr)open_directory) == SQLITE_OK)
			real_open_directory = (int (*)(const char *, int *))real;
	}
	/* no up-front bulk of 20 page-cache slots per connection (~86 KB,
	 * each slot's header written at once, so every page of it faults in
	 * a fresh process: ~22 page faults per database opened); pages are
	 * allocated as they are read. Only possible before SQLite is
	 * initialised: later it fails (SQLITE_MISUSE) and changes nothing. */
	sqlite3_config(SQLITE_CONFIG_PAGECACHE, NULL, 0, 0);
}

static int open_db(const char *path, int busy_ms, sqlite3 **db_r, struct terr *err)
{
	store_sqlite_setup();
	sqlite3 *db = NULL;
	int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
				 SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		terr_set(err, rc == SQLITE_CANTOPEN ? TE_IO : TE_CORRUPT, "open %s: %s", path,
			 db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
		if (db)
			durable_wal_forget(db);
		sqlite3_close(db);
		return -1;
	}
	durable_wal_note(db);	/* before SQLite opens the log (at the first read) */
	sqlite3_busy_timeout(db, busy_ms > 0 ? busy_ms : SQL_BUSY_MS);
	/* A short-lived process (tandem deliver) must not checkpoint the WAL
	 * at every close: that is 2-3 extra fsyncs per delivery. close_db
	 * checkpoints a log that got long; a long-lived connection also at
	 * SQLite's autocheckpoint size (1,000 pages). */
	sqlite3_db_config(db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, NULL);
	if (store_sql_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
			       " PRAGMA foreign_keys=ON;", err) < 0) {
		durable_wal_forget(db);
		sqlite3_close(db);
		return -1;
	}
	*db_r = db;
	return 0;
}

/* Closes a database (NULL: nothing). A write-ahead log over ckpt_bytes
 * is checkpointed and truncated first (see STORE_WAL_CLOSE_CKPT_BYTES in
 * limits.h): open_db keeps SQLite from checkpointing at every close, so
 * without this a log written only by short-lived processes never stops
 * growing and every fresh process reads all of it. users.db passes 0: it
 * is written rarely (users added, passwords, moves) and read by every
 * login, whose process then finds an empty log (no frame to read, no WAL
 * index to build: ~15 page faults less). The checkpoint never waits: with
 * another connection writing or reading an old snapshot it does what it
 * can (SQLITE_BUSY) and a later close finishes it. Durable either way:
 * SQLite syncs the database file before it truncates the log. */
static void checkpoint_if_long(sqlite3 *db, long long ckpt_bytes)
{
	const char *wal = sqlite3_filename_wal(sqlite3_db_filename(db, "main"));
	struct stat sb;
	if (wal && stat(wal, &sb) == 0 && sb.st_size > ckpt_bytes) {
		int nlog = 0, nckpt = 0;
		sqlite3_busy_timeout(db, 0);
		int rc = sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_TRUNCATE, &nlog, &nckpt);
		if (rc == SQLITE_OK || rc == SQLITE_BUSY)
			log_debug("event=wal_checkpoint db=%s bytes=%lld frames=%d backfilled=%d result=%s", wal,
				  (long long)sb.st_size, nlog, nckpt, rc == SQLITE_OK ? "truncated" : "busy");
		else	/* the log stays whole: nothing is lost, the next close tries again */
			log_warn("event=wal_checkpoint_fail db=%s bytes=%lld error=\"%s\"", wal, (long long)sb.st_size,
				 sqlite3_errmsg(db));
	}
}

static void close_db(sqlite3 *db, long long ckpt_bytes)
{
	if (!db)
		return;
	checkpoint_if_long(db, ckpt_bytes);
	durable_wal_forget(db);
	sqlite3_close(db);
}

/* ---- handles kept across stores (store.h: store_keep_enable) ---------- */

/* Parked handles, most recently used first: users.db (at most one) and
 * user databases (at most kept.max). A handle is in a store or here,
 * never in both. */
static struct {
	unsigned max;
	struct ustore *users;
	struct ustore *list;
	unsigned n;
} kept;

static void ustore_free(struct ustore *u);

/* A handle whose file may be gone closes without a checkpoint: its WAL
 * path may name another database's log by now. */
static void keep_discard(struct ustore *u)
{
	store_stmts_close(&u->sql);
	if (u->db)
		durable_wal_forget(u->db);
	sqlite3_close(u->db);
	u->db = NULL;
	ustore_free(u);
}

static int same_file(const struct ustore *u, const struct stat *sb)
{
	return sb && (unsigned long long)sb->st_dev == u->dev && (unsigned long long)sb->st_ino == u->ino;
}

/* Takes the kept handle of path out of *list: returned when sb (the
 * path's stat now, NULL when it is missing) is still its file, else
 * closed (NULL). The kept descriptor pins its inode: while the handle is
 * open no other file gets that inode number, so a match is its file. */
static struct ustore *keep_take(struct ustore **list, const char *path, const struct stat *sb)
{
	for (struct ustore **pp = list; *pp; pp = &(*pp)->next) {
		struct ustore *u = *pp;
		if (strcmp(u->path, path))
			continue;
		*pp = u->next;
		u->next = NULL;
		if (list == &kept.list)
			kept.n--;
		if (same_file(u, sb))
			return u;
		log_debug("event=store_keep_stale db=%s", path);
		keep_discard(u);
		return NULL;
	}
	return NULL;
}

/* Records the identity of the file u->db has open: the path's stat
 * before the open (before, NULL for a new file) and after it agree. */
static void keep_identify(struct ustore *u, const struct stat *before)
{
	struct stat sb;
	u->keepable = 0;
	if (!kept.max || !before || stat(u->path, &sb) != 0 || (unsigned long long)sb.st_dev != (unsigned long long)before->st_dev ||
	    sb.st_ino != before->st_ino)
		return;
	u->dev = (unsigned long long)sb.st_dev;
	u->ino = (unsigned long long)sb.st_ino;
	u->keepable = 1;
}

/* Whether u can be parked: its file identified, no statement handed out,
 * no transaction open. Then the close's checkpoint, and its page cache
 * emptied when large. */
static int keep_prepare(struct ustore *u, long long ckpt_bytes)
{
	if (!u->keepable || !u->db || store_stmts_busy(&u->sql) || !sqlite3_get_autocommit(u->db))
		return 0;
	/* no statement left stepping: it would hold a read transaction,
	 * which keeps every checkpoint from truncating the log */
	for (sqlite3_stmt *s = sqlite3_next_stmt(u->db, NULL); s; s = sqlite3_next_stmt(u->db, s))
		if (sqlite3_stmt_busy(s))
			return 0;
	checkpoint_if_long(u->db, ckpt_bytes);
	int cur = 0, hi = 0;
	if (sqlite3_db_status(u->db, SQLITE_DBSTATUS_CACHE_USED, &cur, &hi, 0) == SQLITE_OK &&
	    cur > STORE_KEEP_CACHE_BYTES)
		sqlite3_db_release_memory(u->db);
	return 1;
}

static void keep_trim(void)
{
	if (kept.n <= kept.max)
		return;
	unsigned i = 0;
	for (struct ustore **pp = &kept.list; *pp;) {
		if (++i > kept.max) {
			struct ustore *u = *pp;
			*pp = u->next;
			keep_discard(u);	/* checkpointed when it was kept */
			kept.n--;
		} else {
			pp = &(*pp)->next;
		}
	}
}

/* Drops the kept handle of path (its owner is deleted or created here). */
static void keep_forget(const char *path)
{
	struct ustore *u = keep_take(&kept.list, path, NULL);
	if (u)
		keep_discard(u);
}

void store_spares_enable(struct store *st)
{
	st->spares = 1;
}

void store_keep_enable(unsigned max)
{
	kept.max = max > STORE_KEEP_MAX ? STORE_KEEP_MAX : max;
	if (max)
		return;
	while (kept.users) {
		struct ustore *u = kept.users;
		kept.users = u->next;
		keep_discard(u);
	}
	while (kept.list) {
		struct ustore *u = kept.list;
		kept.list = u->next;
		keep_discard(u);
	}
	kept.n = 0;
}

unsigned store_keep_count(void)
{
	return kept.n + (kept.users != NULL);
}

static int owns(const struct ustore *u, const char *path)
{
	size_t n = strlen(u->path);
	return !strncmp(path, u->path, n) && (!path[n] || !strcmp(path + n, "-wal") || !strcmp(path + n, "-shm"));
}

int store_keep_owns(const char *path)
{
	for (const struct ustore *u = kept.users; u; u = u->next)
		if (owns(u, path))
			return 1;
	for (const struct ustore *u = kept.list; u; u = u->next)
		if (owns(u, path))
			return 1;
	return 0;
}

/* Userid -> a safe directory name: [A-Za-z0-9._@+-] kept (no leading
 * dot), every other byte as %XX. */
static void encode_owner(const char *owner, struct buf *out)
{
	for (const unsigned char *p = (const unsigned char *)owner; *p; p++) {
		int keep = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			   (*p >= '0' && *p <= '9') || *p == '_' || *p == '@' || *p == '+' ||
			   *p == '-' || (*p == '.' && p != (const unsigned char *)owner);
		if (keep)
			buf_putc(out, (char)*p);
		else
			buf_printf(out, "%%%02X", *p);
	}
}

static void owner_dir(const struct store *st, const char *owner, struct buf *out)
{
	buf_reset(out);
	if (!*owner) {
		buf_printf(out, "%s/shared", st->partition_path);
		return;
	}
	buf_printf(out, "%s/user/", st->partition_path);
	encode_owner(owner, out);
}

/* A directory that is there costs one stat, not a mkdir and a stat per
 * component (every process opens the store). */
static int ensure_dir(const char *path, struct terr *err)
{
	struct stat sb;
	if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode))
		return 0;
	return fs_mkdir_p(path, 0750, err);
}

int store_open(const struct store_opts *o, struct store **st_r, struct terr *err)
{
	if (!o->configdir || !o->partition_path || !o->partition)
		return terr_set(err, TE_CONFIG, "store: configdirectory and a partition are required");
	if (ensure_dir(o->configdir, err) < 0 || ensure_dir(o->partition_path, err) < 0)
		return -1;
	struct store *st = xcalloc(1, sizeof *st);
	st->configdir = xstrdup(o->configdir);
	st->partition = xstrdup(o->partition);
	st->partition_path = xstrdup(o->partition_path);
	st->chlog = o->chlog;
	st->maxmessagesize = o->maxmessagesize > 0 ? o->maxmessagesize : MAX_MESSAGE_SIZE;
	st->virtdomains = o->virtdomains;
	st->cache_fn = o->cache_fn;
	st->after_commit = o->after_commit;
	st->commit_rock = o->commit_rock;
	/* users.db is opened by its first use (store_users_open): an IMAP
	 * connection that never logs in never reads it, a session that does
	 * opens it at LOGIN instead of before its greeting */
	*st_r = st;
	return 0;
}

int store_users_open(struct store *st, struct terr *err)
{
	if (st->usersdb)
		return 0;
	struct buf path = BUF_INIT;
	buf_printf(&path, "%s/users.db", st->configdir);
	struct stat sb;
	int have = kept.max && stat(path.ptr, &sb) == 0;
	struct ustore *u = kept.users ? keep_take(&kept.users, path.ptr, have ? &sb : NULL) : NULL;
	if (u) {
		buf_free(&path);
		sqlite3_busy_timeout(u->db, st->busy_ms > 0 ? st->busy_ms : SQL_BUSY_MS);
		st->usersdb = u->db;
		st->usersql = u->sql;
		u->db = NULL;
		memset(&u->sql, 0, sizeof u->sql);
		st->usersu = u;
		return 0;
	}
	sqlite3 *db = NULL;
	if (open_db(path.ptr, st->busy_ms, &db, err) < 0) {
		buf_free(&path);
		return -1;
	}
	if (schema_version(db) != USERS_SCHEMA_VERSION) {
		if (store_sql_exec(db, users_schema, err) < 0 || store_sql_exec(db, store_move_schema, err) < 0) {
			close_db(db, 0);
			buf_free(&path);
			return -1;
		}
		mark_schema_version(db, USERS_SCHEMA_VERSION_S);
	}
	st->usersdb = db;
	store_stmts_init(&st->usersql, db);
	if (kept.max) {
		u = xcalloc(1, sizeof *u);
		u->path = buf_release(&path);
		keep_identify(u, have ? &sb : NULL);
		st->usersu = u;
	}
	buf_free(&path);
	return 0;
}

void store_users_drop(struct store *st)
{
	if (!st->usersdb)
		return;
	store_stmts_close(&st->usersql);
	close_db(st->usersdb, 0);
	st->usersdb = NULL;
	if (st->usersu) {
		ustore_free(st->usersu);
		st->usersu = NULL;
	}
}

static void ustore_free(struct ustore *u)
{
	store_stmts_close(&u->sql);
	/* users.db (no owner) passes 0: see close_db */
	close_db(u->db, u->owner ? STORE_WAL_CLOSE_CKPT_BYTES : 0);
	free(u->owner);
	free(u->dir);
	free(u->path);
	free(u);
}

/* store_close with store_keep enabled: users.db and the st->users it can
 * keep (most recently used first, kept.max at most) are parked, in that
 * order before the ones kept earlier; the rest are closed. */
static void keep_park(struct store *st)
{
	struct ustore *u = st->usersu;
	st->usersu = NULL;
	if (u && st->usersdb) {
		u->db = st->usersdb;
		u->sql = st->usersql;
		st->usersdb = NULL;
		memset(&st->usersql, 0, sizeof st->usersql);
		if (keep_prepare(u, 0) && !kept.users)
			kept.users = u;
		else
			ustore_free(u);
	} else if (u) {
		ustore_free(u);
	}
	struct ustore *head = NULL, **tail = &head;
	unsigned n = 0;
	while (st->users) {
		u = st->users;
		st->users = u->next;
		u->next = NULL;
		if (n < kept.max && keep_prepare(u, STORE_WAL_CLOSE_CKPT_BYTES)) {
			*tail = u;
			tail = &u->next;
			n++;
		} else {
			ustore_free(u);
		}
	}
	*tail = kept.list;
	kept.list = head;
	kept.n += n;
	keep_trim();
}

void store_close(struct store **stp)
{
	struct store *st = *stp;
	if (!st)
		return;
	if (st->spares)
		store_spare_stop();	/* the spares not taken go with it */
	if (kept.max)
		keep_park(st);
	while (st->users) {
		struct ustore *u = st->users;
		st->users = u->next;
		ustore_free(u);
	}
	if (st->usersdb) {
		store_stmts_close(&st->usersql);
		close_db(st->usersdb, 0);
	}
	if (st->usersu)
		ustore_free(st->usersu);
	store_cache_strings_free(&st->memo);
	free(st->configdir);
	free(st->partition);
	free(st->partition_path);
	free(st->dpos);
	free(st->downer);
	free(st->dmailbox);
	free(st);
	*stp = NULL;
}

struct chlog *store_set_chlog(struct store *st, struct chlog *log)
{
	struct chlog *old = st->chlog;
	st->chlog = log;
	return old;
}

void store_set_busy_timeout(struct store *st, int ms)
{
	st->busy_ms = ms;
}

void store_set_after_commit(struct store *st, store_commit_fn *fn, void *rock)
{
	st->after_commit = fn;
	st->commit_rock = rock;
}

/* Runs the after-commit hook with the positions taken from hold (which
 * the caller releases first: the hook must not hold change-log locks,
 * the sync client it may wait for takes them). */
static void after_commit(struct store *st, const char *owner, const char *lines, size_t len,
			 struct chlog_pos *pos, size_t npos)
{
	if (!st->after_commit || !npos)
		return;
	/* the mailbox of the first line, for the log line of a timeout */
	struct chlog_entry e = { 0 };
	struct terr err;
	const char *nl = memchr(lines, '\n', len);
	const char *mailbox = "";
	if (chlog_parse_line(lines, nl ? (size_t)(nl - lines) : len, &e, &err) == 0 &&
	    strcmp(e.keyword, "USER") && strcmp(e.keyword, "UNUSER") && strcmp(e.keyword, "META") &&
	    strcmp(e.keyword, "SIEVE") && strcmp(e.keyword, "SUB") && strcmp(e.keyword, "UNSUB") &&
	    strcmp(e.keyword, "SEEN"))
		mailbox = buf_cstr(&e.arg1);
	if (st->defer) {
		if (!st->downer) {
			st->downer = xstrdup(owner);
			st->dmailbox = xstrdup(mailbox);
		}
		st->dpos = xrealloc(st->dpos, (st->ndpos + npos) * sizeof *st->dpos);
		memcpy(st->dpos + st->ndpos, pos, npos * sizeof *pos);
		st->ndpos += npos;
	} else {
		struct store_commit c = { .owner = owner, .mailbox = mailbox, .pos = pos, .npos = npos };
		st->after_commit(st->commit_rock, &c);
	}
	chlog_entry_free(&e);
}

void store_commit_defer(struct store *st)
{
	st->defer = 1;
}

void store_commit_flush(struct store *st)
{
	st->defer = 0;
	if (st->ndpos && st->after_commit) {
		struct store_commit c = { .owner = st->downer, .mailbox = st->dmailbox, .pos = st->dpos,
					  .npos = st->ndpos };
		st->after_commit(st->commit_rock, &c);
	}
	free(st->dpos);
	free(st->downer);
	free(st->dmailbox);
	st->dpos = NULL;
	st->downer = st->dmailbox = NULL;
	st->ndpos = 0;
}

/* Takes the positions out of a hold before chlog_release frees them. */
static struct chlog_pos *hold_take_positions(struct chlog_hold *hold, size_t *n_r)
{
	struct chlog_pos *pos = hold->pos;
	*n_r = pos ? hold->n : 0;
	hold->pos = NULL;
	return pos;
}

static void ustore_forget(struct store *st, const char *owner)
{
	if (kept.n) {
		struct buf path = BUF_INIT;
		owner_dir(st, owner, &path);
		buf_appends(&path, "/meta.db");
		keep_forget(path.ptr);
		buf_free(&path);
	}
	for (struct ustore **pp = &st->users; *pp; pp = &(*pp)->next) {
		if (!strcmp((*pp)->owner, owner)) {
			struct ustore *u = *pp;
			*pp = u->next;
			ustore_free(u);
			st->ncached--;
			return;
		}
	}
}

void store_ustore_drop(struct store *st, struct ustore *u)
{
	for (struct ustore **pp = &st->users; *pp; pp = &(*pp)->next) {
		if (*pp == u) {
			*pp = u->next;
			u->keepable = 0;
			ustore_free(u);
			st->ncached--;
			return;
		}
	}
}

/* PRAGMA synchronous takes effect when it is prepared, not when run: not
 * a cached statement. Outside any transaction (SQLite refuses it inside). */
int store_ustore_set_sync(struct ustore *u, int full)
{
	/* none: no automatic checkpoint either (a checkpoint at OFF would
	 * not sync the database before it restarts the log) */
	const char *sql = full > 0   ? "PRAGMA synchronous=FULL; PRAGMA wal_autocheckpoint=1000;"
			  : full == 0 ? "PRAGMA synchronous=NORMAL;"
				      : "PRAGMA wal_autocheckpoint=0; PRAGMA synchronous=OFF;";
	return sqlite3_exec(u->db, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : -1;
}

int store_ustore_wal_fresh(struct ustore *u)
{
	const char *wal = sqlite3_filename_wal(sqlite3_db_filename(u->db, "main"));
	struct stat sb;
	return wal && (stat(wal, &sb) != 0 || sb.st_size < 32);
}

void store_ustore_wal_durable(struct ustore *u)
{
	durable_wal_note(u->db);
}

void store_ustore_restore_sync(struct store *st, struct ustore *u, const char *why)
{
	if (store_ustore_set_sync(u, 1) == 0)
		return;
	log_err("event=sync_restore_fail owner=%s for=%s error=\"%s\" action=closed", u->owner, why,
		sqlite3_errmsg(u->db));
	store_ustore_drop(st, u);
}

/* ---- a new owner's directory ------------------------------------------ */

/* A new owner's directory (meta.db with its whole schema, tmp/, blobs/) is
 * built under <partition>/tmp and put in place by one rename. Made in
 * place it cost 10-11 syncs (each new directory's parent, SQLite's
 * rollback journal to turn a new file into a WAL database, the schema's
 * commit and its log's directory), each a cache flush on the disk, and an
 * initial sync pays them for every user it brings. Built apart nothing in
 * it is synced until it is whole: the database file once, the built
 * directory once, and after the rename its new parent: 3. A crash before
 * the rename leaves a build directory whose process is gone (removed by
 * the next build); after it, the directory is whole. Two processes making
 * the same owner at once: the second rename finds the directory there
 * (RENAME_NOREPLACE), its build is removed and the first one's is used.
 *
 * Inside a replica's batch (st->owner_sync_defer) only the database
 * file's fsync is kept: the build directory's fsync and the parent's are
 * left to the batch's syncfs, which runs before any commit of the batch
 * (store_apply.c, batch_flush), so the directory is durable before
 * anything is written in it that an answer depends on. The file's fsync
 * stays before the rename: a crash after the rename reaches the disk must
 * never find a torn meta.db under the owner's name. A crash before the
 * batch's syncfs may leave: no directory (the rename lost; the build is
 * removed by the next build), or the directory without some of its
 * entries (its meta.db is then made in place by store_ustore, its tmp/
 * too, its blobs/ by the first body), or the whole directory; nothing was
 * answered, and the master sends the applies again. (Another process
 * committing into the directory inside that window, a delivery to the
 * new user on the replica itself, would not have the parent's fsync:
 * docs/store.md.) A spare taken from store_spare.c was synced whole by
 * its thread; inside a batch its parent's fsync is left to the batch's
 * syncfs the same way. */

static unsigned long owner_syncs_deferred;	/* for the tests */

unsigned long store_owner_syncs_deferred(void)
{
	return __atomic_load_n(&owner_syncs_deferred, __ATOMIC_RELAXED);
}

/* Removes build directories left by processes that are gone. */
static void owner_builds_sweep(const char *tmpdir)
{
	DIR *d = opendir(tmpdir);
	if (!d)
		return;
	struct dirent *de;
	struct buf path = BUF_INIT;
	while ((de = readdir(d))) {
		if (strncmp(de->d_name, OWNER_BUILD_PREFIX, strlen(OWNER_BUILD_PREFIX)))
			continue;
		long pid = strtol(de->d_name + strlen(OWNER_BUILD_PREFIX), NULL, 10);
		if (pid <= 0 || pid == (long)getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH)
			continue;
		buf_reset(&path);
		buf_printf(&path, "%s/%s", tmpdir, de->d_name);
		struct terr e = { 0 };
		if (fs_remove_tree(path.ptr, &e) == 0)
			log_info("event=owner_build_removed path=%s", path.ptr);
		else
			log_warn("event=owner_build_remove_fail path=%s error=\"%s\"", path.ptr, e.msg);
	}
	closedir(d);
	buf_free(&path);
}

/* The schema of a new meta.db, written at path without a journal or a
 * sync (nothing reads the file before the build is synced and moved), the
 * file left in WAL mode. */
static int owner_schema_db(const char *path, struct terr *err)
{
	store_sqlite_setup();
	sqlite3 *db = NULL;
	int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		terr_set(err, TE_IO, "open %s: %s", path, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
		sqlite3_close(db);
		return -1;
	}
	rc = store_sql_exec(db, "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; BEGIN;", err) < 0 ||
	     store_sql_exec(db, user_schema, err) < 0 || store_sql_exec(db, store_cache_schema, err) < 0 ||
	     store_sql_exec(db, store_recent_schema, err) < 0 ||
	     store_sql_exec(db, "PRAGMA user_version = " USER_SCHEMA_VERSION_S "; COMMIT;"
				" PRAGMA journal_mode=WAL;", err) < 0 ? -1 : 0;
	if (sqlite3_close(db) != SQLITE_OK && rc == 0)
		rc = terr_set(err, TE_IO, "close %s", path);
	return rc;
}

/* The bytes of a new meta.db, kept by the process after its first one:
 * every new owner's database is the same file (the schema, its version,
 * nothing else), and SQLite's parse of the schema was most of a new
 * user's CPU on a replica (~0.5 ms). Set once, never changed after. */
static struct {
	pthread_mutex_t lock;
	char *data;
	size_t len;
} owner_template = { PTHREAD_MUTEX_INITIALIZER, NULL, 0 };

/* A new meta.db at path, synced: a copy of the process's template, or
 * (the first time) made by SQLite and kept as the template. */
static int owner_build_db(const char *path, struct terr *err)
{
	int rc, fd;
	pthread_mutex_lock(&owner_template.lock);
	if (owner_template.data) {
		pthread_mutex_unlock(&owner_template.lock);
		fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
		if (fd < 0)
			return terr_errno(err, errno, "create %s", path);
		rc = fs_write_all(fd, owner_template.data, owner_template.len, path, err);
	} else {
		rc = owner_schema_db(path, err);
		struct buf bytes = BUF_INIT;
		struct terr e = { 0 };
		if (rc == 0 && fs_read_file(path, OWNER_TEMPLATE_MAX, &bytes, &e) == 0) {
			owner_template.len = bytes.len;
			owner_template.data = buf_release(&bytes);
		}	/* else the next new owner is made by SQLite again */
		buf_free(&bytes);
		pthread_mutex_unlock(&owner_template.lock);
		if (rc < 0)
			return -1;
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return terr_errno(err, errno, "open %s", path);
	}
	if (rc == 0)
		rc = fs_fsync(fd, path, err);
	close(fd);
	return rc;
}

int store_owner_build(const char *build, int sync_dir, struct terr *err)
{
	struct buf sub = BUF_INIT;
	int rc = 0;
	if (mkdir(build, 0750) < 0)
		rc = terr_errno(err, errno, "mkdir %s", build);
	for (int i = 0; rc == 0 && i < 2; i++) {
		buf_reset(&sub);
		buf_printf(&sub, "%s/%s", build, i ? "blobs" : "tmp");
		if (mkdir(sub.ptr, 0750) < 0)
			rc = terr_errno(err, errno, "mkdir %s", sub.ptr);
	}
	if (rc == 0) {
		buf_reset(&sub);
		buf_printf(&sub, "%s/meta.db", build);
		rc = owner_build_db(sub.ptr, err) < 0 || (sync_dir && fs_fsync_dir(build, err) < 0) ? -1 : 0;
	}
	buf_free(&sub);
	return rc;
}

/* Makes the owner directory dir whole (see above): 0 when it is there
 * after the call (made here or by another process meanwhile), -1 on
 * error (nothing left in place). A spare made ahead (store_spare.c) is
 * taken when there is one; a store with spares enabled starts making
 * them after its first. */
static int owner_make(struct store *st, const char *dir, struct terr *err)
{
	static unsigned long seq;
	int defer = st->owner_sync_defer;
	struct buf tmpdir = BUF_INIT, build = BUF_INIT, parent = BUF_INIT;
	buf_printf(&tmpdir, "%s/tmp", st->partition_path);
	buf_printf(&build, "%s/" OWNER_BUILD_PREFIX "%ld-%lu", tmpdir.ptr, (long)getpid(),
		   __atomic_add_fetch(&seq, 1, __ATOMIC_RELAXED));
	buf_append(&parent, dir, (size_t)(strrchr(dir, '/') - dir));
	int rc = ensure_dir(tmpdir.ptr, err) < 0 || ensure_dir(parent.ptr, err) < 0 ? -1 : 0;
	int spare = rc == 0 ? store_spare_take(tmpdir.ptr, dir) : 0, placed = spare == 1;
	if (rc == 0 && !spare) {
		owner_builds_sweep(tmpdir.ptr);
		rc = store_owner_build(build.ptr, !defer, err);
		if (rc == 0) {
			if (renameat2(AT_FDCWD, build.ptr, AT_FDCWD, dir, RENAME_NOREPLACE) == 0)
				placed = 1;
			else if (errno != EEXIST && errno != ENOTEMPTY)
				rc = terr_errno(err, errno, "rename %s to %s", build.ptr, dir);
		}
		if (!placed) {
			struct terr e = { 0 };
			if (fs_remove_tree(build.ptr, &e) < 0 && e.code != TE_NOTFOUND)
				log_warn("event=owner_build_remove_fail path=%s error=\"%s\"", build.ptr, e.msg);
		}
	}
	if (placed && defer) {
		st->owners_deferred++;
		__atomic_add_fetch(&owner_syncs_deferred, 1, __ATOMIC_RELAXED);
	} else if (placed) {
		rc = fs_fsync_dir(parent.ptr, err);
	}
	if (rc == 0 && st->spares)
		store_spare_start(tmpdir.ptr);
	buf_free(&tmpdir);
	buf_free(&build);
	buf_free(&parent);
	return rc;
}

int store_ustore(struct store *st, const char *owner, int create, struct ustore **u_r,
		 struct terr *err)
{
	for (struct ustore **pp = &st->users; *pp; pp = &(*pp)->next) {
		if (!strcmp((*pp)->owner, owner)) {
			struct ustore *u = *pp;
			*pp = u->next;	/* move to front */
			u->next = st->users;
			st->users = u;
			*u_r = u;
			return 0;
		}
	}
	struct buf dir = BUF_INIT, dbpath = BUF_INIT;
	owner_dir(st, owner, &dir);
	buf_printf(&dbpath, "%s/meta.db", dir.ptr);
	struct stat sb;
	int exists = stat(dbpath.ptr, &sb) == 0;
	struct ustore *u = kept.list ? keep_take(&kept.list, dbpath.ptr, exists ? &sb : NULL) : NULL;
	if (u) {
		/* kept by an earlier store of this process: warm, its schema
		 * known, its statements prepared */
		buf_free(&dir);
		buf_free(&dbpath);
		sqlite3_busy_timeout(u->db, st->busy_ms > 0 ? st->busy_ms : SQL_BUSY_MS);
		goto cache;
	}
	if (!exists && !create) {
		buf_free(&dir);
		buf_free(&dbpath);
		return terr_set(err, TE_NOTFOUND, "no store for '%s'", *owner ? owner : "(shared)");
	}
	u = xcalloc(1, sizeof *u);
	u->owner = xstrdup(owner);
	u->dir = buf_release(&dir);
	if (!exists) {
		/* no directory: built whole apart (owner_make); a directory
		 * without its meta.db (made by a build of tandem before that, or
		 * by hand) gets its database made in place below */
		struct stat dsb;
		int rc;
		if (stat(u->dir, &dsb) < 0 && errno == ENOENT) {
			rc = owner_make(st, u->dir, err) < 0;
			exists = !rc && stat(dbpath.ptr, &sb) == 0;
		} else {
			struct buf sub = BUF_INIT;
			buf_printf(&sub, "%s/tmp", u->dir);
			rc = fs_mkdir_p(u->dir, 0750, err) < 0 || fs_mkdir_p(sub.ptr, 0750, err) < 0;
			buf_free(&sub);
		}
		if (rc) {
			ustore_free(u);
			buf_free(&dbpath);
			return -1;
		}
	}
	if (open_db(dbpath.ptr, st->busy_ms, &u->db, err) < 0) {
		u->db = NULL;
		ustore_free(u);
		buf_free(&dbpath);
		return -1;
	}
	store_stmts_init(&u->sql, u->db);
	u->path = buf_release(&dbpath);
	keep_identify(u, exists ? &sb : NULL);
	/* A meta.db whose user_version is USER_SCHEMA_VERSION has all its
	 * tables: nothing more to run (the CREATE statements below cost a
	 * parse each at every open). Otherwise a database file without its
	 * schema is a new one (the process that made it died before
	 * committing the schema: SIGKILL after open), or one made before the
	 * cache (or the \Recent marks) existed, which gains its tables; every
	 * statement of the schema is "if not exists". */
	int v = exists ? schema_version(u->db) : 0;
	if (exists && v != USER_SCHEMA_VERSION) {
		int has = store_stmt_exists(&u->sql, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?;",
					   "mailboxes", "sqlite_master", err);
		if (has < 0) {
			ustore_free(u);
			return -1;
		}
		exists = has;
	}
	if (!exists) {
		if (store_sql_exec(u->db, "BEGIN IMMEDIATE;", err) < 0 ||
		    store_sql_exec(u->db, user_schema, err) < 0 ||
		    store_sql_exec(u->db, store_cache_schema, err) < 0 ||
		    store_sql_exec(u->db, store_recent_schema, err) < 0 ||
		    store_sql_exec(u->db, "PRAGMA user_version = " USER_SCHEMA_VERSION_S ";", err) < 0 ||
		    store_sql_exec(u->db, "COMMIT;", err) < 0 || fs_fsync_dir(u->dir, err) < 0) {
			ustore_free(u);
			return -1;
		}
	} else if (v != USER_SCHEMA_VERSION) {
		if (store_sql_exec(u->db, store_cache_schema, err) < 0 ||
		    store_sql_exec(u->db, store_recent_schema, err) < 0 || store_cache_migrate(u, err) < 0) {
			ustore_free(u);
			return -1;
		}
		mark_schema_version(u->db, USER_SCHEMA_VERSION_S);
	}
cache:
	if (st->ncached >= USTORE_CACHE_MAX) {
		/* the least recently used one whose statements are all back: a
		 * caller may still be stepping one (a row loop whose callback
		 * opens other owners' databases) */
		struct ustore **victim = NULL;
		for (struct ustore **pp = &st->users; *pp; pp = &(*pp)->next)
			if (!store_stmts_busy(&(*pp)->sql))
				victim = pp;
		if (victim) {
			struct ustore *old = *victim;
			*victim = old->next;
			ustore_free(old);
			st->ncached--;
		}
	}
	u->next = st->users;
	st->users = u;
	st->ncached++;
	*u_r = u;
	return 0;
}

int store_name_owner(const char *mboxname, struct buf *owner_r, struct terr *err)
{
	if (mboxname_validate(mboxname, err) < 0)
		return -1;
	if (mboxname_owner(mboxname, owner_r, err) < 0)
		return -1;
	return 0;
}

int store_ustore_for_mailbox(struct store *st, const char *mboxname, int create,
			     struct ustore **u_r, struct terr *err)
{
	struct buf owner = BUF_INIT;
	int rc = store_name_owner(mboxname, &owner, err);
	if (rc == 0) {
		rc = store_ustore(st, buf_cstr(&owner), create, u_r, err);
		if (rc < 0 && err && err->code == TE_NOTFOUND)
			terr_set(err, TE_NOTFOUND, "mailbox '%s' does not exist", mboxname);
	}
	buf_free(&owner);
	return rc;
}

/* ---- transactions ------------------------------------------------------ */

int utx_begin(struct utx *tx, struct store *st, struct ustore *u, struct terr *err)
{
	memset(tx, 0, sizeof *tx);
	tx->st = st;
	tx->u = u;
	if (store_sql_exec(u->db, "BEGIN IMMEDIATE;", err) < 0)
		return -1;
	tx->open = 1;
	/* inside the transaction: see store_move_lock */
	if (store_move_fence(st, u->owner, err) < 0) {
		utx_rollback(tx);
		return -1;
	}
	return 0;
}

int utx_log(struct utx *tx, const char *keyword, const char *arg1, const char *arg2,
	    struct terr *err)
{
	if (!tx->st->chlog)
		return 0;
	return chlog_format(&tx->log, keyword, arg1, arg2, err);
}

int utx_modseq(struct utx *tx, uint64_t *modseq_r, struct terr *err)
{
	if (!tx->modseq) {
		sqlite3_stmt *s = store_stmt(&tx->u->sql,
			"UPDATE meta SET value = value + 1 WHERE key = 'modseq' RETURNING value;", err);
		if (!s)
			return -1;
		if (sqlite3_step(s) != SQLITE_ROW) {
			store_sql_fail(tx->u->db, "modseq", err);
			store_stmt_put(&tx->u->sql, s);
			return -1;
		}
		tx->modseq = (uint64_t)sqlite3_column_int64(s, 0);
		store_stmt_put(&tx->u->sql, s);
	}
	*modseq_r = tx->modseq;
	return 0;
}

int utx_modseq_atleast(struct utx *tx, uint64_t v, struct terr *err)
{
	sqlite3_stmt *s = store_stmt(&tx->u->sql,
		"UPDATE meta SET value = max(value, ?) WHERE key = 'modseq';", err);
	if (!s)
		return -1;
	sqlite3_bind_int64(s, 1, (sqlite3_int64)v);
	int rc = sqlite3_step(s) == SQLITE_DONE ? 0 : store_sql_fail(tx->u->db, "modseq", err);
	store_stmt_put(&tx->u->sql, s);
	return rc;
}

int utx_commit(struct utx *tx, struct terr *err)
{
	/* The change-log lines go to disk first and their (shared) locks are
	 * held across COMMIT: a sync client cannot read them before the change
	 * is committed (it locks log-run exclusively after renaming it), while
	 * other deliveries append and commit alongside (group commit). */
	struct chlog_hold hold = { .n = 0 };
	if (tx->log.len && chlog_append_hold(tx->st->chlog, tx->log.ptr, tx->log.len, &hold, err) < 0) {
		log_err("event=chlog_fail owner=%s error=\"%s\"", tx->u->owner, err ? err->msg : "");
		utx_rollback(tx);
		return -1;
	}
	if (tx->before_commit && tx->before_commit(tx->before_commit_arg, err) < 0) {
		chlog_release(&hold);	/* a line for a change that did not commit: harmless */
		utx_rollback(tx);
		return -1;
	}
	int rc = store_sql_exec(tx->u->db, "COMMIT;", err);
	size_t npos;
	struct chlog_pos *pos = hold_take_positions(&hold, &npos);
	chlog_release(&hold);
	if (rc < 0) {
		free(pos);
		utx_rollback(tx);
		return -1;
	}
	tx->open = 0;
	after_commit(tx->st, tx->u->owner, tx->log.ptr, tx->log.len, pos, npos);
	free(pos);
	buf_free(&tx->log);
	return 0;
}

void utx_rollback(struct utx *tx)
{
	if (tx->open)
		sqlite3_exec(tx->u->db, "ROLLBACK;", NULL, NULL, NULL);
	tx->open = 0;
	buf_free(&tx->log);
}

/* ---- users ------------------------------------------------------------ */

static int hash_password(const char *password, struct buf *out, struct terr *err)
{
	if (strlen(password) > MAX_PASSWORD)
		return terr_set(err, TE_INVALID, "password longer than %d bytes", MAX_PASSWORD);
	/* yescrypt, libxcrypt's default and stronger than SHA-512 crypt */
	char salt[CRYPT_GENSALT_OUTPUT_SIZE];
	if (!crypt_gensalt_rn("$y$", 0, NULL, 0, salt, sizeof salt))
		return terr_errno(err, errno, "crypt_gensalt");
	struct crypt_data *cd = xcalloc(1, sizeof *cd);
	const char *h = crypt_r(password, salt, cd);
	int rc = 0;
	if (!h || h[0] == '*')
		rc = terr_set(err, TE_INTERNAL, "crypt failed");
	else
		buf_appends(out, h);
	OPENSSL_cleanse(cd, sizeof *cd);
	free(cd);
	return rc;
}

static int users_row_exists(struct store *st, const char *userid, struct terr *err)
{
	if (store_users_open(st, err) < 0)
		return -1;
	return store_stmt_exists(&st->usersql, "SELECT 1 FROM users WHERE userid = ?;", userid, "users", err);
}

int store_user_exists(struct store *st, const char *userid, struct terr *err)
{
	return users_row_exists(st, userid, err);
}

int store_user_create(struct store *st, const char *userid, const char *password, struct terr *err)
{
	if (userid_validate(userid, st->virtdomains, err) < 0)
		return -1;
	int ex = users_row_exists(st, userid, err);
	if (ex < 0)
		return -1;
	if (ex)
		return terr_set(err, TE_EXISTS, "user '%s' already exists", userid);
	struct buf hash = BUF_INIT, inbox = BUF_INIT;
	if (password && hash_password(password, &hash, err) < 0)
		goto fail;
	if (mboxname_user_inbox(userid, &inbox, err) < 0)
		goto fail;
	/* A store left behind by an interrupted delete is removed first. */
	ustore_forget(st, userid);
	struct buf dir = BUF_INIT;
	owner_dir(st, userid, &dir);
	int rc = fs_remove_tree(dir.ptr, err);
	buf_free(&dir);
	if (rc < 0)
		goto fail;
	struct store_mailbox_create_opts mo = { 0 };
	if (store_mailbox_create_owner(st, inbox.ptr, &mo, 1, err) < 0)
		goto fail;
	sqlite3_stmt *s = store_stmt(&st->usersql,
		"INSERT INTO users(userid, pwhash, created) VALUES(?, ?, ?);", err);
	if (!s)
		goto fail;
	sqlite3_bind_text(s, 1, userid, -1, SQLITE_STATIC);
	if (password)
		sqlite3_bind_text(s, 2, hash.ptr, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 3, store_now());
	rc = sqlite3_step(s) == SQLITE_DONE ? 0 : store_sql_fail(st->usersdb, "add user", err);
	store_stmt_put(&st->usersql, s);
	if (rc < 0)
		goto fail;
	log_info("event=user_create user=%s", userid);
	buf_free(&hash);
	buf_free(&inbox);
	return 0;
fail:
	buf_free(&hash);
	buf_free(&inbox);
	return -1;
}

int store_user_delete(struct store *st, const char *userid, struct terr *err)
{
	int ex = users_row_exists(st, userid, err);
	if (ex < 0)
		return -1;
	if (!ex)
		return terr_set(err, TE_NOTFOUND, "user '%s' does not exist", userid);
	/* The change-log line goes first: a crash after it leaves a replayable
	 * UNUSER for a user that may still exist, which the sync client checks. */
	/* The line is written first and its lock held until the user is gone,
	 * so a sync client never sees UNUSER while the user still exists. */
	struct chlog_hold hold = { .n = 0 };
	if (st->chlog) {
		struct buf line = BUF_INIT;
		int rc = chlog_format(&line, "UNUSER", userid, NULL, err);
		if (rc == 0)
			rc = chlog_append_hold(st->chlog, line.ptr, line.len, &hold, err);
		buf_free(&line);
		if (rc < 0)
			return -1;
	}
	sqlite3_stmt *s = store_stmt(&st->usersql, "DELETE FROM users WHERE userid = ?;", err);
	if (!s) {
		chlog_release(&hold);
		return -1;
	}
	sqlite3_bind_text(s, 1, userid, -1, SQLITE_STATIC);
	int rc = sqlite3_step(s) == SQLITE_DONE ? 0 : store_sql_fail(st->usersdb, "delete user", err);
	store_stmt_put(&st->usersql, s);
	if (rc < 0) {
		chlog_release(&hold);
		return -1;
	}
	ustore_forget(st, userid);
	struct buf dir = BUF_INIT;
	owner_dir(st, userid, &dir);
	rc = fs_remove_tree(dir.ptr, err);
	if (rc == 0)
		rc = fs_fsync_parent(dir.ptr, err);
	buf_free(&dir);
	size_t npos;
	struct chlog_pos *pos = hold_take_positions(&hold, &npos);
	chlog_release(&hold);
	if (rc == 0) {
		log_info("event=user_delete user=%s", userid);
		static const char line[] = "UNUSER x\n";	/* no mailbox */
		after_commit(st, userid, line, sizeof line - 1, pos, npos);
	}
	free(pos);
	return rc;
}

int store_user_passwd(struct store *st, const char *userid, const char *password, struct terr *err)
{
	struct buf hash = BUF_INIT;
	if (store_users_open(st, err) < 0 || hash_password(password, &hash, err) < 0) {
		buf_free(&hash);
		return -1;
	}
	sqlite3_stmt *s = store_stmt(&st->usersql, "UPDATE users SET pwhash = ? WHERE userid = ?;", err);
	int rc = -1;
	if (s) {
		sqlite3_bind_text(s, 1, hash.ptr, -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 2, userid, -1, SQLITE_STATIC);
		if (sqlite3_step(s) != SQLITE_DONE)
			store_sql_fail(st->usersdb, "passwd", err);
		else if (sqlite3_changes(st->usersdb) == 0)
			terr_set(err, TE_NOTFOUND, "user '%s' does not exist", userid);
		else
			rc = 0;
		store_stmt_put(&st->usersql, s);
	}
	buf_free(&hash);
	return rc;
}

int store_user_pwhash(struct store *st, const char *userid, struct buf *out, struct terr *err)
{
	if (store_users_open(st, err) < 0)
		return -1;
	sqlite3_stmt *s = store_stmt(&st->usersql, "SELECT pwhash FROM users WHERE userid = ?;", err);
	if (!s)
		return -1;
	sqlite3_bind_text(s, 1, userid, -1, SQLITE_STATIC);
	int rc = sqlite3_step(s), found = 0;
	if (rc == SQLITE_ROW && sqlite3_column_type(s, 0) == SQLITE_TEXT) {
		buf_reset(out);
		buf_appends(out, (const char *)sqlite3_column_text(s, 0));
		found = 1;
	} else if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		found = store_sql_fail(st->usersdb, "pwhash", err);
	}
	store_stmt_put(&st->usersql, s);
	return found;
}

int store_password_verify(const char *hash, const char *password)
{
	if (strlen(password) > MAX_PASSWORD)
		return 0;
	struct crypt_data *cd = xcalloc(1, sizeof *cd);
	const char *got = crypt_r(password, hash, cd);
	int ok = got && got[0] != '*' && strlen(got) == strlen(hash) && CRYPTO_memcmp(got, hash, strlen(hash)) == 0;
	OPENSSL_cleanse(cd, sizeof *cd);
	free(cd);
	return ok;
}

int store_user_check_password(struct store *st, const char *userid, const char *password,
			      struct terr *err)
{
	struct buf h = BUF_INIT;
	int r = store_user_pwhash(st, userid, &h, err);
	if (r == 1)
		r = store_password_verify(h.ptr, password);
	buf_free(&h);
	return r;
}

int store_user_list(struct store *st, store_user_cb *cb, void *rock, struct terr *err)
{
	if (store_users_open(st, err) < 0)
		return -1;
	sqlite3_stmt *s = store_stmt(&st->usersql, "SELECT userid FROM users ORDER BY userid;", err);
	if (!s)
		return -1;
	int rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW)
		if (cb((const char *)sqlite3_column_text(s, 0), rock))
			break;
	store_stmt_put(&st->usersql, s);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return store_sql_fail(st->usersdb, "list users", err);
	return 0;
}

void store_random_uniqueid(char out[25])
{
	static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
	unsigned char r[24];
	if (RAND_bytes(r, sizeof r) != 1)
		fatal("event=rand_fail");
	for (int i = 0; i < 24; i++)
		out[i] = alphabet[r[i] % 36];
	out[24] = '\0';
}
