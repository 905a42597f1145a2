/* store_move.h: a user's move to another store (tandem move-user).
 *
 * One row per user in users.db's table user_moves while a move is under
 * way or after it:
 *   locked  the user is being moved: its mail is still here, but no write
 *           transaction of its database starts (store_move_fence, run by
 *           every write of the store), LMTP answers 451 4.2.1, IMAP
 *           refuses logins and ends open sessions;
 *   moved   the user was copied, checked and removed here; LMTP and IMAP
 *           keep answering with a temporary error naming the target until
 *           the record is cleared (tandem user unmove).
 * Both states and the target are durable (SQLite commit) before the call
 * returns. The row keeps a copy of the user's password hash, so a login
 * with the right password learns where the user went and a wrong one
 * learns nothing.
 */
#ifndef TANDEM_STORE_MOVE_H
#define TANDEM_STORE_MOVE_H

#include <stddef.h>
#include <stdint.h>

#include "lib/err.h"

struct store;

enum store_move_state { STORE_MOVE_NONE = 0, STORE_MOVE_LOCKED, STORE_MOVE_MOVED };

struct store_move {
	enum store_move_state state;
	char target[256];	/* host:port (or what the operator named) */
	int64_t since;		/* epoch seconds of the last state change */
};

/* The user's record: 0 with state STORE_MOVE_NONE when there is none. */
int store_move_get(struct store *st, const char *userid, struct store_move *m_r, struct terr *err);

/* An LMTP recipient's look-up (lmtpd): whether userid has a record in
 * users.db (1, 0) and its move record (*m_r, STORE_MOVE_NONE when none),
 * -1 on error. One statement, so one read transaction of users.db,
 * where store_move_get and store_user_exists take one each. */
int store_move_rcpt(struct store *st, const char *userid, struct store_move *m_r, struct terr *err);

/* Locks an existing user for a move to target (TE_NOTFOUND: no such user;
 * TE_INVALID: a target over 255 bytes or with control characters). When
 * it returns, the lock is committed and every write transaction of the
 * user that began before it has ended: no change of the user commits
 * after this call until store_move_unlock. */
int store_move_lock(struct store *st, const char *userid, const char *target, struct terr *err);

/* Removes the record, in either state (TE_NOTFOUND when there is none):
 * a locked user takes mail and logins again; a moved user's name is free
 * (LMTP then answers "no such user" until it is created again). */
int store_move_unlock(struct store *st, const char *userid, struct terr *err);

/* The end of a move: the record becomes "moved" (committed first), then
 * the user is deleted (store_user_delete: the change log gets UNUSER).
 * The user must be locked (TE_CHANGED otherwise). */
int store_move_finish(struct store *st, const char *userid, struct terr *err);

/* Every record in userid order; a non-zero cb return stops. */
typedef int store_move_cb(const char *userid, const struct store_move *m, void *rock);
int store_move_list(struct store *st, store_move_cb *cb, void *rock, struct terr *err);

/* For logins: 1 when the user has a record and password is the one the
 * user had when it was locked (*m_r filled), 0 otherwise, -1 on error. */
int store_move_login(struct store *st, const char *userid, const char *password, struct store_move *m_r,
		     struct terr *err);

/* A cheap test for open sessions: one stat() of a stamp file that every
 * lock, unlock and finish grows by a byte. 1 when the records may have changed
 * since the last call with *stamp (always on the first), 0 when not. */
struct store_move_stamp {
	int valid;
	unsigned long long ino;
	long long size;
};
int store_move_changed(struct store *st, struct store_move_stamp *stamp);

/* "moved to HOST" or "being moved to HOST": the text of the temporary
 * errors (LMTP, IMAP). */
const char *store_move_text(const struct store_move *m, char *out, size_t size);
/* "locked", "moved" ("none"). */
const char *store_move_state_name(enum store_move_state s);

#endif
