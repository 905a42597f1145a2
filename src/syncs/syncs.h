/* syncs.h: the sync server of a replica: the csync service of tandemd,
 * and the same GET/APPLY engine carried over IMAP (SYNCGET, SYNCAPPLY,
 * SYNCRESTORE, SYNCRESTART; reference §2.10) for imapd. */
#ifndef TANDEM_SYNCS_H
#define TANDEM_SYNCS_H

#include <stddef.h>

#include "server/server.h"

int syncs_session(const struct service_env *env, struct conn *c);

/* An engine for an IMAP session whose (admin) user is already
 * authenticated. It opens its own store, which logs what it applies only
 * with sync_log_chain (as the csync service does). Data lines ("* ...")
 * are written to c; the caller flushes its own output first. NULL (and
 * err) when the store cannot be opened. */
struct syncs *syncs_imap_new(const struct service_env *env, struct conn *c, const char *user,
			     struct terr *err);
/* Runs one command: verb is "GET", "APPLY", "RESTORE" or "RESTART"; raw
 * is the DLIST after the verb as the client sent it (literals included).
 * Returns the completion without the tag: "OK success", "NO <code>
 * <text>", "BAD Replication parse failure in Syncapply"; static text. */
const char *syncs_imap_command(struct syncs *s, const char *verb, const char *raw, size_t len);
void syncs_imap_free(struct syncs **sp);

#endif
