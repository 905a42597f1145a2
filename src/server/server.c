/* server.c: see server.h. */
#include "server/server.h"

#include <string.h>

volatile sig_atomic_t server_stop_requested;

static void on_term(int sig)
{
	(void)sig;
	server_stop_requested = 1;
}

void server_session_signals(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_term;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGHUP, SIG_IGN);
	signal(SIGPIPE, SIG_IGN);
	signal(SIGCHLD, SIG_DFL);
}
