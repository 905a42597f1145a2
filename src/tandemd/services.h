/* services.h: the services tandemd can serve, one table (services.c):
 * the config key that lists their listening addresses, whether TLS is on
 * from the first byte, the session function, the option that caps its
 * sessions (Cyrus's maxchild), the line a refused connection gets, and
 * how server_idle_read holds its sessions to preauth_timeout
 * (server_preauth_arm_mode), whether its logins use tandemd's
 * verified-login cache (server_authcache.h), and whether its processes
 * serve more than one connection (maxuse). */
#ifndef TANDEM_SERVICES_H
#define TANDEM_SERVICES_H

#include <stddef.h>

#include "server/server.h"

struct service {
	const char *name;
	const char *listen_key;
	int implicit_tls;
	service_session_fn *session;
	const char *maxchild_key;
	const char *busy_reply;	/* NULL: closed without a word (TLS from the first byte) */
	int server_preauth;	/* SERVER_PREAUTH_*: server_idle_read's login deadline */
	int auth_cache;		/* 1: its sessions get a socket to tandemd's login cache */
	int reuse;		/* 1: a process that ended a session cleanly may serve the
				 * service's next connection (maxuse, server_reuse_*) */
};

extern const struct service services[];
extern const size_t nservices;

#endif
