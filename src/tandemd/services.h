/* services.h: the services tandemd can serve, one table (services.c):
 * the config key that lists their listening addresses, whether TLS is on
 * from the first byte, the session function, the option that caps its
 * sessions (Cyrus's maxchild), the line a refused connection gets, and
 * how server_idle_read holds its sessions to preauth_timeout
 * (server_preauth_arm_mode), and whether its logins use tandemd's
 * verified-login cache (server_authcache.h). */
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
};

extern const struct service services[];
extern const size_t nservices;

#endif
