/* store_recent.c: the \Recent high-water mark of each mailbox (RFC 3501
 * 2.3.2: a message is recent in exactly one session, the first to select
 * the mailbox after it arrived).
 *
 * One row per mailbox in its owner's database, keyed by uniqueid (a
 * rename keeps it, a mailbox created again gets a new one): the highest
 * UID some session has taken. Like Dovecot's first_recent_uid and the
 * owner's recentuid in Cyrus. It is session state, not mail: it gets no
 * modseq and no change-log line, and it is not the mailbox's RECENTUID
 * sync key (which is the master's, replicated and compared as it is), so
 * selecting a mailbox never makes the replicas differ. It is
 * committed like any row, so a restart does not make old mail recent
 * again, but without waiting for the disk (store.h, "Writes exempt from
 * the durability rule"): its commit runs at synchronous=NORMAL, which in
 * WAL mode appends the frames without an fdatasync; the next FULL commit
 * of the database (any acknowledged change) or a checkpoint syncs them
 * with its own. A power cut before that loses the mark: the messages are
 * \Recent once more in the next session, as if that session had been the
 * first. One fdatasync less for each SELECT that finds new mail. Only on
 * a log whose directory entry is known durable (store_sync_relaxed);
 * otherwise the commit is FULL as before. */
#include "store/store-private.h"

#include "lib/log.h"
#include "lib/xalloc.h"

#include <string.h>

const char store_recent_schema[] =
	"CREATE TABLE IF NOT EXISTS recent(uniqueid TEXT PRIMARY KEY, uid INTEGER NOT NULL);";

static unsigned long relaxed_commits;

unsigned long store_recent_relaxed_commits(void)
{
	return relaxed_commits;
}

static int read_mark(struct ustore *u, const char *uniqueid, uint32_t *uid_r, struct terr *err)
{
	sqlite3_stmt *s = store_stmt(&u->sql, "SELECT uid FROM recent WHERE uniqueid = ?;", err);
	if (!s)
		return -1;
	sqlite3_bind_text(s, 1, uniqueid, -1, SQLITE_STATIC);
	int rc = sqlite3_step(s);
	*uid_r = rc == SQLITE_ROW ? (uint32_t)sqlite3_column_int64(s, 0) : 0;
	store_stmt_put(&u->sql, s);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return store_sql_fail(u->db, "recent", err);
	return 0;
}

int store_recent_get(struct store *st, const char *mboxname, const char *uniqueid, uint32_t *uid_r,
		     struct terr *err)
{
	struct ustore *u;
	*uid_r = 0;
	if (store_ustore_for_mailbox(st, mboxname, 0, &u, err) < 0)
		return -1;
	return read_mark(u, uniqueid, uid_r, err);
}

int store_recent_take(struct store *st, const char *mboxname, const char *uniqueid, uint32_t upto,
		      uint32_t *prev_r, struct terr *err)
{
	struct ustore *u;
	*prev_r = upto;
	if (store_ustore_for_mailbox(st, mboxname, 0, &u, err) < 0)
		return -1;
	uint32_t prev;
	if (read_mark(u, uniqueid, &prev, err) < 0)
		return -1;
	if (prev >= upto) {
		*prev_r = prev;	/* nothing to take: no write */
		return 0;
	}
	/* no sync of its own (see the top of the file); back to FULL below */
	int relaxed = store_sync_relaxed(u->db) && store_ustore_set_sync(u, 0) == 0;
	struct utx tx;
	if (utx_begin(&tx, st, u, err) < 0) {
		if (relaxed)
			store_ustore_restore_sync(st, u, "recent");
		return -1;
	}
	int rc = -1;
	/* again under the write lock: another session may have taken them */
	if (read_mark(u, uniqueid, &prev, err) < 0)
		goto out;
	if (prev < upto) {
		sqlite3_stmt *s = store_stmt(&u->sql, "INSERT OR REPLACE INTO recent VALUES(?, ?);", err);
		if (!s)
			goto out;
		sqlite3_bind_text(s, 1, uniqueid, -1, SQLITE_STATIC);
		sqlite3_bind_int64(s, 2, upto);
		int sr = sqlite3_step(s);
		store_stmt_put(&u->sql, s);
		if (sr != SQLITE_DONE) {
			store_sql_fail(u->db, "recent", err);
			goto out;
		}
	}
	if (utx_commit(&tx, err) < 0)	/* no change-log line: not replicated */
		goto out;
	*prev_r = prev;
	rc = 0;
	relaxed_commits += (unsigned long)relaxed;
out:
	utx_rollback(&tx);
	if (relaxed)
		store_ustore_restore_sync(st, u, "recent");
	return rc;
}

int store_recent_forget(struct ustore *u, const char *uniqueid, struct terr *err)
{
	sqlite3_stmt *s = store_stmt(&u->sql, "DELETE FROM recent WHERE uniqueid = ?;", err);
	if (!s)
		return -1;
	sqlite3_bind_text(s, 1, uniqueid, -1, SQLITE_STATIC);
	int rc = sqlite3_step(s) == SQLITE_DONE ? 0 : store_sql_fail(u->db, "recent", err);
	store_stmt_put(&u->sql, s);
	return rc;
}
