/* sync_move.h: moving a user to another store (tandem move-user) over the
 * replication protocol, with a connected sync client.
 *
 *   1. the target must not hold mailboxes of the user that are not copies
 *      of ours (another uniqueid): then nothing is sent;
 *   2. copy while the user stays live: every mailbox, then whole-user
 *      passes until one sends at most `settled` messages (or max_passes);
 *   3. lock (store_move_lock: LMTP 451 4.2.1, logins refused, sessions
 *      ended, no write of the user commits from then on);
 *   4. a final whole-user pass, then compare with bodies: any difference
 *      fails the move (bodies the target held right before the lock, as
 *      checked then, are not fetched again);
 *   5. store_move_finish: the user is removed here, its record says where
 *      it went.
 * A failure or *stop at any step before 5 unlocks the user; nothing here
 * is removed, the target keeps what it got (a later run goes on from it).
 * Logs event=move_user_start|move_user_pass|move_user_locked|
 * move_user_done|move_user_failed with user= target=.
 */
#ifndef TANDEM_SYNC_MOVE_H
#define TANDEM_SYNC_MOVE_H

#include <signal.h>
#include <stddef.h>

#include "lib/buf.h"
#include "lib/err.h"

struct syncc;

/* Defaults: whole-user passes while live, and how few messages a pass
 * may send to count as settled. */
#define SYNCC_MOVE_MAX_PASSES 5
#define SYNCC_MOVE_SETTLED 20

struct syncc_move_progress {
	const char *phase;	/* "copy", "catch-up", "verify", "locked", "final", "compare", "done" */
	int pass;		/* whole-user passes so far */
	size_t mailboxes_done, mailboxes_total;
	unsigned long messages_done, messages_total;
	unsigned long long bytes_done, bytes_total;	/* message bytes */
	double elapsed_s;
	double eta_s;		/* -1: not known yet */
};
typedef void syncc_move_progress_fn(void *rock, const struct syncc_move_progress *p);

struct syncc_move_opts {
	const char *user;
	const char *target;	/* for the record and the logs */
	int max_passes;		/* 0: SYNCC_MOVE_MAX_PASSES */
	unsigned long settled;	/* 0: SYNCC_MOVE_SETTLED */
	volatile sig_atomic_t *stop;	/* non-zero: give up (unlocked) */
	syncc_move_progress_fn *progress;
	void *rock;
	struct buf *report;	/* compare's difference lines, when it fails */
};

int syncc_move_user(struct syncc *sc, const struct syncc_move_opts *mo, struct terr *err);

#endif
