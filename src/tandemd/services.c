/* services.c: the table of services tandemd serves. */
#include "tandemd/services.h"

#include "imapd/imapd.h"
#include "lmtpd/lmtpd.h"
#include "syncs/syncs.h"

/* IMAP times out its own pre-login state (imapd session.c); LMTP has no
 * login (its idle timeout is preauth_timeout). The sync server's
 * pre-login timeout is server_idle_read's: it needs syncs.c to call
 * server_auth_succeeded() on login before it can be armed (0 below until
 * then: an armed deadline would cut authenticated replication sessions). */
const struct service services[] = {
	{ "imap", "imap_listen", 0, imapd_session, "imap_maxchild", "* BYE Too many connections, try again later\r\n",
	  0 },
	{ "imaps", "imaps_listen", 1, imapd_session, "imaps_maxchild", NULL, 0 },
	{ "lmtp", "lmtp_listen", 0, lmtpd_session, "lmtp_maxchild", "421 4.3.2 Too many connections, try again later\r\n",
	  0 },
	{ "sync", "sync_listen", 0, syncs_session, "sync_maxchild", "* BYE Too many connections, try again later\r\n",
	  0 },
};
const size_t nservices = sizeof services / sizeof services[0];
