/* services.h: the services tandemd can serve, one table (services.c):
 * the config key that lists their listening addresses, whether TLS is on
 * from the first byte, and the session function. */
#ifndef TANDEM_SERVICES_H
#define TANDEM_SERVICES_H

#include <stddef.h>

#include "server/server.h"

struct service {
	const char *name;
	const char *listen_key;
	int implicit_tls;
	service_session_fn *session;
};

extern const struct service services[];
extern const size_t nservices;

#endif
