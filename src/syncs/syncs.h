/* syncs.h: the sync server service of tandemd (a replica's csync port). */
#ifndef TANDEM_SYNCS_H
#define TANDEM_SYNCS_H

#include "server/server.h"

int syncs_session(const struct service_env *env, struct conn *c);

#endif
