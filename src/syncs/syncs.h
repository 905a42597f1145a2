/* syncs.h: the sync server of a replica: the csync service of tandemd,
 * and the same GET/APPLY engine carried over IMAP (SYNCGET, SYNCAPPLY,
 * SYNCRESTORE, SYNCRESTART; reference §2.10) for imapd. */
#ifndef TANDEM_SYNCS_H
#define TANDEM_SYNCS_H

#include <stddef.h>
#include <stdint.h>

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
/* The same for a command whose file literals were streamed while it was
 * read (syncs_imap_file): raw holds their headers, not their bytes. */
const char *syncs_imap_command_streamed(struct syncs *s, const char *verb, const char *raw, size_t len);
/* A piece of the file literal whose header ends text (the command read so
 * far): the first piece of a literal (*left 0) finds the header in text and
 * begins a staging file, each piece goes to it as it arrives, and the one
 * that completes the literal (*left back at 0) ends it; no body is held in
 * memory (reference §2.10 carries csync's file literals, see syncs_session).
 * A header that does not parse makes the command fail (NO) when it runs. */
void syncs_imap_file(struct syncs *s, const char *text, size_t textlen, const void *data, size_t len,
		     uint64_t *left);
/* Drops what a command that never ran (too long, a parse error) staged. */
void syncs_imap_files_drop(struct syncs *s);
void syncs_imap_free(struct syncs **sp);

#endif
