/* lmtpd.h: the LMTP service of tandemd (RFC 2033). */
#ifndef TANDEM_LMTPD_H
#define TANDEM_LMTPD_H

#include "server/server.h"

/* Serves one LMTP connection until QUIT, EOF, timeout or shutdown. */
int lmtpd_session(const struct service_env *env, struct conn *c);

#endif
