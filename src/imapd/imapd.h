/* imapd.h: the IMAP service of tandemd (RFC 3501 and the extensions
 * listed in docs/imapd.md), one session per process.
 *
 * tandemd forks a process per connection and calls imapd_session for the
 * "imap" service (plain, STARTTLS offered when a certificate is
 * configured) and the "imaps" service (env->implicit_tls: TLS first).
 */
#ifndef TANDEM_IMAPD_H
#define TANDEM_IMAPD_H

#include "server/server.h"

/* Serves one IMAP connection until LOGOUT, EOF, a timeout, too many bad
 * commands or shutdown (server_stop_requested: the command in progress
 * finishes, then "* BYE Server shutting down"). Returns 0 on a normal end,
 * 1 when the session could not start (TLS handshake or store failure).
 * The connection stays the caller's (it frees it). */
int imapd_session(const struct service_env *env, struct conn *c);

#endif
