/* services.c: the table of services tandemd serves. */
#include "tandemd/services.h"

#include "imapd/imapd.h"
#include "lmtpd/lmtpd.h"
#include "syncs/syncs.h"

/* IMAP: preauth_timeout from the connect (imapd reads the deadline with
 * server_preauth_left_ms; its login calls server_auth_succeeded). LMTP
 * has no login (its idle timeout is preauth_timeout). The sync server's is
 * server_idle_read's, SERVER_PREAUTH_LOGIN too: a session not logged in
 * within preauth_timeout of the connect is closed (syncs.c calls
 * server_auth_succeeded on AUTHENTICATE). IMAP logins use tandemd's
 * login cache; the sync port's replication logins (few, long-lived) do not.
 * IMAP and LMTP processes are reused (maxuse); a sync-port process serves
 * one connection (few and long-lived, and the sync server's state is
 * large: not worth the risk). */
const struct service services[] = {
	{ "imap", "imap_listen", 0, imapd_session, "imap_maxchild", "* BYE Too many connections, try again later\r\n",
	  SERVER_PREAUTH_LOGIN, 1, 1 },
	{ "imaps", "imaps_listen", 1, imapd_session, "imaps_maxchild", NULL, SERVER_PREAUTH_LOGIN, 1, 1 },
	{ "lmtp", "lmtp_listen", 0, lmtpd_session, "lmtp_maxchild", "421 4.3.2 Too many connections, try again later\r\n",
	  SERVER_PREAUTH_NONE, 0, 1 },
	{ "sync", "sync_listen", 0, syncs_session, "sync_maxchild", "* BYE Too many connections, try again later\r\n",
	  SERVER_PREAUTH_LOGIN, 0, 0 },
};
const size_t nservices = sizeof services / sizeof services[0];
