/* services.c: the table of services tandemd serves. */
#include "tandemd/services.h"

#include "imapd/imapd.h"
#include "lmtpd/lmtpd.h"
#include "syncs/syncs.h"

const struct service services[] = {
	{ "imap", "imap_listen", 0, imapd_session },
	{ "imaps", "imaps_listen", 1, imapd_session },
	{ "lmtp", "lmtp_listen", 0, lmtpd_session },
	{ "sync", "sync_listen", 0, syncs_session },
};
const size_t nservices = sizeof services / sizeof services[0];
