/* store-private.h: internals shared by the src/store/ files; nothing
 * outside src/store/ includes it.
 *
 * Transaction states of a user database (struct utx):
 *   IDLE --utx_begin--> OPEN (BEGIN IMMEDIATE: the user's write lock)
 *   OPEN --utx_log-->   OPEN (change-log lines collected in memory)
 *   OPEN --utx_commit-> IDLE: lines appended + fsynced to every channel,
 *                             then COMMIT; a failure of either rolls back;
 *                             then (locks released) the after_commit hook
 *                             (synchronous replication waits there)
 *   OPEN --utx_rollback-> IDLE
 * Invariants: (1) no COMMIT without its change-log lines on disk first;
 * (2) every message file a committed record names was fsynced (file and
 * directory) before the transaction began writing its row; (3) modseqs
 * come from the user's counter (meta.modseq), one per transaction.
 */
#ifndef TANDEM_STORE_PRIVATE_H
#define TANDEM_STORE_PRIVATE_H

#include <sqlite3.h>

#include "lib/limits.h"
#include "store/store.h"

/* store_stmt.c: the prepared statements of one connection, prepared once
 * and reset/reused (finalized by store_stmts_close, before the close). */
struct store_stmt_slot {
	sqlite3_stmt *s;
	unsigned long hash;	/* of its SQL text */
	unsigned long used;	/* tick of its last use (LRU) */
	int busy;		/* handed out, not yet put back */
};
struct store_stmts {
	sqlite3 *db;
	struct store_stmt_slot slot[STORE_STMT_CACHE_MAX];
	size_t n;
	unsigned long tick;
	unsigned long hits, prepares;	/* for the tests */
};
void store_stmts_init(struct store_stmts *c, sqlite3 *db);
void store_stmts_close(struct store_stmts *c);
/* 1 while one of c's statements is handed out (its connection must stay open). */
int store_stmts_busy(const struct store_stmts *c);
/* The statement of sql, reset with no bindings; give it back with
 * store_stmt_put (never sqlite3_finalize). NULL with err on failure. */
sqlite3_stmt *store_stmt(struct store_stmts *c, const char *sql, struct terr *err);
void store_stmt_put(struct store_stmts *c, sqlite3_stmt *s);
/* store_sql_done for a cached statement; store_stmt_exists runs a
 * one-parameter query ("SELECT 1 FROM t WHERE k = ?"): 1 when it returns
 * a row, 0 when not, -1 on error (what names it in err). */
int store_stmt_done(struct store_stmts *c, sqlite3_stmt *s, int rc, const char *what, struct terr *err);
int store_stmt_exists(struct store_stmts *c, const char *sql, const char *param, const char *what,
		      struct terr *err);

/* A new owner's directory, built apart and moved into place (store.c,
 * owner_make): its build directories are <partition>/tmp/newowner-<pid>-...
 * (removed by a later build once that process is gone). */
#define OWNER_BUILD_PREFIX "newowner-"
/* Makes build (a new directory) a whole owner directory: tmp/, blobs/,
 * meta.db (synced), the directory synced unless sync_dir is 0 (inside a
 * replica batch: its syncfs does it); not moved anywhere. */
int store_owner_build(const char *build, int sync_dir, struct terr *err);

/* store_spare.c: new owners' directories made ahead on a thread, for a
 * process that makes many (a replica's initial sync). tmpdir is the
 * partition's tmp/, the spares' home (the pool serves one partition at a
 * time: the last started). store_spare_take moves a ready spare to dir:
 * 1 placed, 2 dir was there already (made by another; the spare stays),
 * 0 no spare ready (the caller builds one itself; also when the rename fails otherwise: that
 * spare goes, and the build reports what is wrong with dir). dir's
 * parent is the caller's to sync. store_spare_start starts the thread
 * (a forked child has none); store_spare_stop (also at exit) ends it and
 * removes the spares not taken; a later store_spare_start starts it again. */
int store_spare_take(const char *tmpdir, const char *dir);
void store_spare_start(const char *tmpdir);
void store_spare_stop(void);
/* For the tests: spares taken and built by this process. */
void store_spare_counts(unsigned long *taken_r, unsigned long *built_r);

struct ustore {
	char *owner;		/* userid, "" for shared mailboxes */
	char *dir;		/* <partition>/user/<enc> or <partition>/shared */
	sqlite3 *db;
	struct store_stmts sql;	/* db's prepared statements */
	struct ustore *next;
	/* the file db has open, for store_keep: its path, and its device
	 * and inode as stat gave them before and after the open (keepable
	 * only when both agree) */
	char *path;
	unsigned long long dev, ino;
	int keepable;
};

struct store {
	char *configdir;
	char *partition;
	char *partition_path;
	struct chlog *chlog;
	long long maxmessagesize;
	int virtdomains;
	int spares;			/* store_spares_enable */
	store_cache_fn *cache_fn;
	/* the cache strings of the last message computed: a delivery to
	 * several owners parses its MIME once, not once per recipient */
	char memo_guid[41];
	struct store_cache_strings memo;
	store_commit_fn *after_commit;
	void *commit_rock;
	/* store_commit_defer: the positions of the commits since, for one
	 * call of after_commit at store_commit_flush */
	int defer;
	struct chlog_pos *dpos;
	size_t ndpos;
	char *downer, *dmailbox;
	sqlite3 *usersdb;		/* NULL until store_users_open */
	struct store_stmts usersql;	/* usersdb's prepared statements */
	struct ustore *usersu;		/* usersdb's path and identity (store_keep) */
	struct ustore *users;	/* open user databases (small cache) */
	unsigned ncached;
	unsigned long tmpcounter;
	int busy_ms;		/* SQLite busy timeout of every connection */
	/* Set by a replica's batch (store_apply_batch_add) around its calls
	 * that may make a new owner's directory: owner_make then leaves the
	 * build directory's fsync and its new parent's fsync to the batch's
	 * syncfs (store_apply.c, batch_flush), which runs before anything
	 * is committed in it. owners_deferred counts the directories so
	 * placed (the batch learns of one by the count's change). */
	int owner_sync_defer;
	unsigned long owners_deferred;
};

struct utx {
	struct store *st;
	struct ustore *u;
	struct buf log;		/* change-log lines to append before COMMIT */
	uint64_t modseq;	/* 0 until utx_modseq() was called */
	int open;
	/* Set after utx_begin, or NULL: called once the change-log lines are
	 * durable and before COMMIT (store_message.c's delivery waits there
	 * for its message file's fsyncs, which ran beside the log's); -1
	 * fails the commit. */
	int (*before_commit)(void *arg, struct terr *err);
	void *before_commit_arg;
};

/* store.c */
/* Opens users.db (and makes its tables) unless it is open: every use of
 * st->usersdb or st->usersql comes after it. */
int store_users_open(struct store *st, struct terr *err);
/* Closes users.db's connection (the next use opens it again): for a
 * connection left in a state no later write may inherit (its
 * synchronous=FULL could not be restored). */
void store_users_drop(struct store *st);
/* For the tests: how many new owners' directories were placed with their
 * directory fsyncs left to a batch's syncfs (owner_make), in this process. */
unsigned long store_owner_syncs_deferred(void);
/* For the tests: how many users.db rows a batch committed at
 * synchronous=NORMAL (store_apply.c), in this process. */
unsigned long store_apply_relaxed_user_rows(void);
/* 1 when db's write-ahead log is one whose directory entry is known
 * durable (store.c, "the write-ahead logs whose directory entry is
 * durable"): only then may a commit on db skip its sync (store_recent.c),
 * since a later FULL commit's sync then makes it durable with its own. */
int store_sync_relaxed(sqlite3 *db);
/* For the tests: how many first syncs of a connection's log skipped the
 * directory fsync (log known durable) and how many did it. */
void store_dirsync_counts(unsigned long *skipped_r, unsigned long *synced_r);
/* For the tests: how many commits were made without a sync (store_recent.c). */
unsigned long store_recent_relaxed_commits(void);
/* Batches whose owners committed at synchronous=NORMAL under one closing
 * syncfs (store_apply.c; for the tests). */
unsigned long store_apply_relaxed_batches(void);
/* Several commits that answer one request (LMTP's recipients): the
 * after-commit hook runs once, at flush, with all their positions (the
 * owner and mailbox of the first), instead of once per commit. */
void store_commit_defer(struct store *st);
void store_commit_flush(struct store *st);
int store_sql_exec(sqlite3 *db, const char *sql, struct terr *err);
int store_sql_fail(sqlite3 *db, const char *what, struct terr *err);
/* Ends a statement's row loop: finalizes s; rc is the last sqlite3_step
 * result (SQLITE_DONE, or SQLITE_ROW when the caller stopped early: both
 * fine). Any other is an error (TE_IO, TE_BUSY, ...), never a shorter
 * answer. */
int store_sql_done(sqlite3 *db, sqlite3_stmt *s, int rc, const char *what, struct terr *err);
sqlite3_stmt *store_sql_prepare(sqlite3 *db, const char *sql, struct terr *err);
/* Opens (or returns the cached) database of an owner. create: make the
 * directory and schema when missing; else TE_NOTFOUND when missing. */
int store_ustore(struct store *st, const char *owner, int create, struct ustore **u_r,
		 struct terr *err);
/* Closes u (one of st's open databases) and forgets it: the next call
 * for its owner opens the database again. */
void store_ustore_drop(struct store *st, struct ustore *u);
/* A commit without waiting for the disk: synchronous=NORMAL (full 0) on
 * u's connection, so a WAL commit appends its frames with no fdatasync
 * (store.h, "Writes exempt from the durability rule", says who may), or
 * FULL again (full 1); -1 when SQLite refuses. restore_sync sets FULL
 * again and, if that fails, logs and closes u (the next store_ustore opens
 * the database afresh, FULL): a connection never stays relaxed, since
 * acknowledged changes commit on it next. full -1: synchronous=OFF and no
 * automatic checkpoint, for a commit whose file system a syncfs makes
 * durable before anything depends on it (a replica batch's closing
 * syncfs): a log with no header yet (store_ustore_wal_fresh: a new
 * owner's first commit) costs at NORMAL two syncs still (SQLite syncs a
 * new log's header, then its directory), at OFF none. */
int store_ustore_set_sync(struct ustore *u, int full);
int store_ustore_wal_fresh(struct ustore *u);
/* After a syncfs covered u's log (written at OFF, so never synced by
 * SQLite): listed as durable, so the connection's next FULL commit skips
 * the log's directory sync (the list of store.c's durable_wal). */
void store_ustore_wal_durable(struct ustore *u);
void store_ustore_restore_sync(struct store *st, struct ustore *u, const char *why);
/* The owner of a mailbox name ("" for shared); TE_INVALID for a bad name. */
int store_name_owner(const char *mboxname, struct buf *owner_r, struct terr *err);
int store_ustore_for_mailbox(struct store *st, const char *mboxname, int create,
			     struct ustore **u_r, struct terr *err);
int utx_begin(struct utx *tx, struct store *st, struct ustore *u, struct terr *err);
int utx_log(struct utx *tx, const char *keyword, const char *arg1, const char *arg2,
	    struct terr *err);
/* The transaction's modseq (allocated on first call). */
int utx_modseq(struct utx *tx, uint64_t *modseq_r, struct terr *err);
/* Raises the user's modseq counter to at least v (replicas). */
int utx_modseq_atleast(struct utx *tx, uint64_t v, struct terr *err);
int utx_commit(struct utx *tx, struct terr *err);
void utx_rollback(struct utx *tx);
int64_t store_now(void);
/* 24 lowercase alphanumerics, like Cyrus 3.6 mailbox uniqueids. */
void store_random_uniqueid(char out[25]);
/* store_mailbox_create with create_owner: make the owner's database when
 * missing (user creation, replicas). */
int store_mailbox_create_owner(struct store *st, const char *name,
			       const struct store_mailbox_create_opts *opts, int create_owner,
			       struct terr *err);

/* store_message.c: by mailbox id (store_records, store_annot_list and
 * the mailbox handles resolve a name to it), and a message file's bytes,
 * checked against its GUID (TE_CORRUPT). */
int store_records_of(struct ustore *u, int64_t mailbox_id, uint64_t since_modseq, int with_expunged,
		     store_record_cb *cb, void *rock, struct terr *err);
int store_annots_of(struct ustore *u, int64_t mailbox_id, int64_t uid, store_annot_cb *cb, void *rock,
		    struct terr *err);
int store_blob_read(struct store *st, struct ustore *u, const char *guid, struct buf *out, struct terr *err);

/* store_blob.c */
int store_blob_path(struct ustore *u, const char *guid, struct buf *path_r);
/* Writes data as a message file of u (no-op if it exists). */
int store_blob_write(struct store *st, struct ustore *u, const void *data, size_t len,
		     const char *guid, struct terr *err);
/* The same; durable 0 skips the fsyncs: the caller makes a whole batch
 * durable with store_blob_sync_all before it commits anything. */
int store_blob_write2(struct store *st, struct ustore *u, const void *data, size_t len,
		      const char *guid, int durable, struct terr *err);
/* syncfs() of the file system holding u's files: every file written and
 * renamed before it is durable when it returns. */
int store_blob_sync_all(struct ustore *u, struct terr *err);
/* The same for the file system holding dir. */
int store_blob_sync_dir(const char *dir, struct terr *err);
/* Makes the file of `guid` of `from` a file of `to` (hard link; copy
 * across file systems). */
int store_blob_link(struct store *st, struct ustore *from, struct ustore *to, const char *guid,
		    struct terr *err);
/* Unlinks files of u no record references any more. */
/* Makes the staged file at path (its bytes hash to guid) the message file
 * of guid of u: a hard link, or with move a rename (*moved_r 1: path is
 * gone), a copy in pieces on another file system; a file already there
 * is kept as it is. No fsync (store_blob_sync_all, as store_blob_write2
 * with durable 0). */
int store_blob_adopt(struct store *st, struct ustore *u, const char *path, const char *guid, int move,
		     int *moved_r, struct terr *err);
/* The same, by name in u's blobs/ directory when *blobs_fd is open
 * (store_blobs_open; -1: by path, and it is opened here once a missing
 * blobs/ was made). The caller closes *blobs_fd. */
int store_blob_adopt_at(struct store *st, struct ustore *u, int *blobs_fd, const char *path, const char *guid,
			int move, int *moved_r, struct terr *err);
/* u's blobs/ directory, open (O_DIRECTORY), or -1. */
int store_blobs_open(struct ustore *u);
int store_blob_gc(struct store *st, struct ustore *u, struct terr *err);
/* A delivery's message file made durable beside the caller's other work
 * (store_deliver overlaps it with the change-log append and its fsync). */
struct blob_pending;
/* As store_blob_write: the bytes are written here, the rest (the file's
 * fsync, its rename to the GUID name, the fsync of its blobs/xx
 * directory and, for a new blobs/xx, of blobs) runs in a thread started
 * here, or here when no thread can be had. The file's name is there only
 * once its bytes are durable, as with store_blob_write. *p_r is for
 * store_blob_wait; -1 (nothing pending, *p_r NULL) on an error here. */
int store_blob_write_start(struct store *st, struct ustore *u, const void *data, size_t len, const char *guid,
			   struct blob_pending **p_r, struct terr *err);
/* Waits for p's syncs: 0 when the file and its name are durable, -1 with
 * err (the same answer again on each call). */
int store_blob_wait(struct blob_pending *p, struct terr *err);
/* Waits if nobody did, then frees *pp (NULL is fine). */
void store_blob_pending_free(struct blob_pending **pp);

/* store_cache.c */
/* The CREATE TABLE of the cache (run on every open: old stores gain it). */
extern const char store_cache_schema[];
/* Inside an open transaction of u: writes the cache row of guid unless
 * there is one or the store has no cache_fn. data NULL: the bytes are
 * read from u's message file. A message that cannot be read gets no row
 * (FETCH then reads the file as before): only SQL errors fail. */
int store_cache_add(struct store *st, struct ustore *u, const char *guid, const void *data, size_t len,
		    struct terr *err);
/* Adds the headers column to a cache table made before it (an open of a
 * database below USER_SCHEMA_VERSION). */
int store_cache_migrate(struct ustore *u, struct terr *err);
/* Deletes cache rows no record references (after store_blob_gc). */
int store_cache_gc(struct ustore *u, struct terr *err);

/* store_move.c: users.db's user_moves table (made by store_users_open) and the
 * check utx_begin makes inside every write transaction: TE_BUSY when
 * the owner is locked for a move or was moved away. */
extern const char store_move_schema[];
int store_move_fence(struct store *st, const char *owner, struct terr *err);
/* store_recent.c: the CREATE TABLE of the \Recent marks (run on every
 * open: old stores gain it). */
extern const char store_recent_schema[];
/* Inside an open transaction of u: drops a deleted mailbox's mark. */
int store_recent_forget(struct ustore *u, const char *uniqueid, struct terr *err);

/* store_mailbox.c */
struct mbox_row {
	int64_t id;
	uint32_t last_uid;
	uint64_t highestmodseq;
	uint32_t sync_crc;
	uint32_t sync_crc_annot;
	char quotaroot[512];
	char uniqueid[64];
};
/* SELECTs of a mailbox's whole row by name or by id: the columns
 * store_mbox_info_from_row reads, then id at STORE_MBOX_ID_COL. */
extern const char store_mbox_select_by_name[], store_mbox_select_by_id[];
#define STORE_MBOX_ID_COL 22
void store_mbox_info_from_row(sqlite3_stmt *s, struct store_mailbox_info *mi);
/* TE_NOTFOUND if missing. */
int store_mbox_row(struct ustore *u, const char *name, struct mbox_row *row_r, struct terr *err);
int store_mbox_update_counters(struct utx *tx, const struct mbox_row *row, struct terr *err);
/* Quota root of a (new or renamed) mailbox name in u: longest root that
 * is the name or a parent of it; "" if none. */
int store_quotaroot_for(struct ustore *u, const char *name, struct buf *root_r, struct terr *err);
int store_quota_charge(struct utx *tx, const char *root, int64_t bytes, int64_t messages,
		       int check, struct terr *err);

#endif
