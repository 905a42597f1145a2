/* store_move.c: the user_moves table of users.db (store_move.h) and the
 * fence every write transaction passes (store_move_fence). */
#include "store/store-private.h"
#include "store/store_move.h"

#include "lib/fsutil.h"
#include "lib/limits.h"
#include "lib/log.h"
#include "lib/xalloc.h"

#include <crypt.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char store_move_schema[] =
	"CREATE TABLE IF NOT EXISTS user_moves(userid TEXT PRIMARY KEY, state TEXT NOT NULL,"
	" target TEXT NOT NULL, since INTEGER NOT NULL, pwhash TEXT);";

static const char *const state_names[] = { "none", "locked", "moved" };

static enum store_move_state state_of(const unsigned char *s)
{
	if (s && !strcmp((const char *)s, "moved"))
		return STORE_MOVE_MOVED;
	/* anything else that is in the table keeps the user away */
	return STORE_MOVE_LOCKED;
}

static void fill(sqlite3_stmt *s, int col, struct store_move *m)
{
	m->state = state_of(sqlite3_column_text(s, col));
	snprintf(m->target, sizeof m->target, "%s", (const char *)sqlite3_column_text(s, col + 1));
	m->since = sqlite3_column_int64(s, col + 2);
}

static void stamp_path(const struct store *st, struct buf *out)
{
	buf_reset(out);
	buf_printf(out, "%s/user_moves.stamp", st->configdir);
}

/* Grows the stamp file by one byte: open sessions compare its size (and
 * inode) with what they saw last to learn that a record changed. Not a
 * durable thing: the records are in SQLite; a lost stamp byte after a
 * crash concerns no session (they died too). */
static int touch_stamp(struct store *st, struct terr *err)
{
	struct buf path = BUF_INIT;
	stamp_path(st, &path);
	int fd = open(path.ptr, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	int rc = fd < 0 ? terr_errno(err, errno, "open %s", path.ptr) : fs_write_all(fd, "\n", 1, path.ptr, err);
	if (fd >= 0)
		close(fd);
	buf_free(&path);
	return rc;
}

int store_move_get(struct store *st, const char *userid, struct store_move *m, struct terr *err)
{
	memset(m, 0, sizeof *m);
	if (store_users_open(st, err) < 0)
		return -1;
	sqlite3_stmt *s = store_stmt(&st->usersql, "SELECT state, target, since FROM user_moves WHERE userid = ?;", err);
	if (!s)
		return -1;
	sqlite3_bind_text(s, 1, userid, -1, SQLITE_STATIC);
	int rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		fill(s, 0, m);
	int ret = rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : store_sql_fail(st->usersdb, "user_moves", err);
	store_stmt_put(&st->usersql, s);
	return ret;
}

int store_move_rcpt(struct store *st, const char *userid, struct store_move *m, struct terr *err)
{
	memset(m, 0, sizeof *m);
	if (store_users_open(st, err) < 0)
		return -1;
	sqlite3_stmt *s = store_stmt(&st->usersql,
		"SELECT EXISTS(SELECT 1 FROM users WHERE userid = ?1), m.state, m.target, m.since"
		" FROM (SELECT 1) LEFT JOIN user_moves m ON m.userid = ?1;", err);
	if (!s)
		return -1;
	sqlite3_bind_text(s, 1, userid, -1, SQLITE_STATIC);
	int rc = sqlite3_step(s), ex = 0;
	if (rc == SQLITE_ROW) {
		ex = sqlite3_column_int(s, 0) != 0;
		if (sqlite3_column_type(s, 1) != SQLITE_NULL)
			fill(s, 1, m);
	}
	int ret = rc == SQLITE_ROW ? ex : store_sql_fail(st->usersdb, "user_moves", err);
	store_stmt_put(&st->usersql, s);
	return ret;
}

int store_move_fence(struct store *st, const char *owner, struct terr *err)
{
	if (!*owner)
		return 0;	/* shared mailboxes never move */
	if (store_users_open(st, err) < 0)
		return -1;
	/* every write transaction passes here: the cached statement */
	int ex = store_stmt_exists(&st->usersql, "SELECT 1 FROM user_moves WHERE userid = ?;", owner, "user_moves", err);
	if (ex < 0)
		return -1;
	if (ex)
		return terr_set(err, TE_BUSY, "user '%s' is being moved (or was moved) to another store", owner);
	return 0;
}

static int valid_target(const char *target, struct terr *err)
{
	size_t n = strlen(target);
	if (!n || n >= sizeof ((struct store_move *)0)->target)
		return terr_set(err, TE_INVALID, "move target must be 1 to 255 bytes");
	for (const unsigned char *p = (const unsigned char *)target; *p; p++)
		if (*p <= ' ' || *p == 0x7f)
			return terr_set(err, TE_INVALID, "move target holds a space or control character");
	return 0;
}

static int exec_bound(struct store *st, const char *sql, const char *a, const char *b, const char *c,
		      int64_t num, int *changes_r, struct terr *err)
{
	if (store_users_open(st, err) < 0)
		return -1;
	sqlite3_stmt *s = store_sql_prepare(st->usersdb, sql, err);
	if (!s)
		return -1;
	const char *v[3] = { a, b, c };
	int k = 1;
	for (int i = 0; i < 3; i++)
		if (v[i])
			sqlite3_bind_text(s, k++, v[i], -1, SQLITE_STATIC);
	if (num >= 0)
		sqlite3_bind_int64(s, k, num);
	int rc = sqlite3_step(s);
	if (rc == SQLITE_DONE && changes_r)
		*changes_r = sqlite3_changes(st->usersdb);
	return store_sql_done(st->usersdb, s, rc, "user_moves", err);
}

int store_move_lock(struct store *st, const char *userid, const char *target, struct terr *err)
{
	if (valid_target(target, err) < 0)
		return -1;
	int changes = 0;
	if (exec_bound(st,
		       "INSERT OR REPLACE INTO user_moves(userid, state, target, since, pwhash)"
		       " SELECT userid, 'locked', ?2, ?3, pwhash FROM users WHERE userid = ?1;",
		       userid, target, NULL, store_now(), &changes, err) < 0)
		return -1;
	if (!changes)
		return terr_set(err, TE_NOTFOUND, "user '%s' does not exist", userid);
	/* The row is committed: a write transaction of the user that begins
	 * from now on sees it (store_move_fence runs inside it). One that
	 * began before holds the user's write lock: taking that lock once
	 * waits until it has committed or rolled back. */
	struct ustore *u;
	int rc = store_ustore(st, userid, 0, &u, err);
	if (rc == 0) {
		rc = store_sql_exec(u->db, "BEGIN IMMEDIATE;", err);
		if (rc == 0)
			rc = store_sql_exec(u->db, "ROLLBACK;", err);
	}
	if (rc == 0)
		rc = touch_stamp(st, err);
	if (rc < 0) {
		struct terr e2 = { 0 };
		exec_bound(st, "DELETE FROM user_moves WHERE userid = ?;", userid, NULL, NULL, -1, NULL, &e2);
		return -1;
	}
	log_info("event=user_move_lock user=%s target=%s", userid, target);
	return 0;
}

int store_move_unlock(struct store *st, const char *userid, struct terr *err)
{
	int changes = 0;
	if (exec_bound(st, "DELETE FROM user_moves WHERE userid = ?;", userid, NULL, NULL, -1, &changes, err) < 0)
		return -1;
	if (!changes)
		return terr_set(err, TE_NOTFOUND, "user '%s' has no move record", userid);
	struct terr e2 = { 0 };
	if (touch_stamp(st, &e2) < 0)	/* sessions only re-read sooner; the row is gone */
		log_warn("event=user_move_stamp_fail user=%s error=\"%s\"", userid, e2.msg);
	log_info("event=user_move_unlock user=%s", userid);
	return 0;
}

int store_move_finish(struct store *st, const char *userid, struct terr *err)
{
	int changes = 0;
	if (exec_bound(st, "UPDATE user_moves SET state = 'moved', since = ?2 WHERE userid = ?1 AND state = 'locked';",
		       userid, NULL, NULL, store_now(), &changes, err) < 0)
		return -1;
	if (!changes)
		return terr_set(err, TE_CHANGED, "user '%s' is not locked for a move", userid);
	if (store_user_delete(st, userid, err) < 0)
		return -1;
	if (touch_stamp(st, err) < 0)
		return -1;
	log_info("event=user_move_finish user=%s", userid);
	return 0;
}

int store_move_list(struct store *st, store_move_cb *cb, void *rock, struct terr *err)
{
	if (store_users_open(st, err) < 0)
		return -1;
	sqlite3_stmt *s = store_sql_prepare(st->usersdb,
		"SELECT userid, state, target, since FROM user_moves ORDER BY userid;", err);
	if (!s)
		return -1;
	int rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct store_move m;
		fill(s, 1, &m);
		if (cb((const char *)sqlite3_column_text(s, 0), &m, rock))
			break;
	}
	return store_sql_done(st->usersdb, s, rc, "user_moves", err);
}

int store_move_login(struct store *st, const char *userid, const char *password, struct store_move *m,
		     struct terr *err)
{
	memset(m, 0, sizeof *m);
	if (store_users_open(st, err) < 0)
		return -1;
	sqlite3_stmt *s = store_sql_prepare(st->usersdb,
		"SELECT state, target, since, pwhash FROM user_moves WHERE userid = ?;", err);
	if (!s)
		return -1;
	sqlite3_bind_text(s, 1, userid, -1, SQLITE_STATIC);
	int rc = sqlite3_step(s), ok = 0;
	if (rc == SQLITE_ROW && sqlite3_column_type(s, 3) == SQLITE_TEXT && strlen(password) <= MAX_PASSWORD) {
		const char *h = (const char *)sqlite3_column_text(s, 3);
		struct crypt_data *cd = xcalloc(1, sizeof *cd);
		const char *got = crypt_r(password, h, cd);
		ok = got && got[0] != '*' && strlen(got) == strlen(h) && CRYPTO_memcmp(got, h, strlen(h)) == 0;
		OPENSSL_cleanse(cd, sizeof *cd);
		free(cd);
		if (ok)
			fill(s, 0, m);
	}
	if (store_sql_done(st->usersdb, s, rc, "user_moves", err) < 0)
		return -1;
	return ok;
}

int store_move_changed(struct store *st, struct store_move_stamp *stamp)
{
	struct buf path = BUF_INIT;
	struct stat sb;
	stamp_path(st, &path);
	int there = stat(path.ptr, &sb) == 0;
	buf_free(&path);
	unsigned long long ino = there ? (unsigned long long)sb.st_ino : 0;
	long long size = there ? (long long)sb.st_size : -1;
	if (stamp->valid && stamp->ino == ino && stamp->size == size)
		return 0;
	stamp->valid = 1;
	stamp->ino = ino;
	stamp->size = size;
	return 1;
}

const char *store_move_text(const struct store_move *m, char *out, size_t size)
{
	snprintf(out, size, "%s %s", m->state == STORE_MOVE_MOVED ? "moved to" : "being moved to", m->target);
	return out;
}

const char *store_move_state_name(enum store_move_state s)
{
	return (unsigned)s < sizeof state_names / sizeof state_names[0] ? state_names[s] : "none";
}
