/* services.c: the table of services tandemd serves. */
#include "tandemd/services.h"

#include "lmtpd/lmtpd.h"
#include "syncs/syncs.h"

const struct service services[] = {
	{ "lmtp", "lmtp_listen", 0, lmtpd_session },
	{ "sync", "sync_listen", 0, syncs_session },
};
const size_t nservices = sizeof services / sizeof services[0];
