/* server.c: see server.h. */
#include "server/server.h"

#include <string.h>
#include <time.h>

volatile sig_atomic_t server_stop_requested;

/* CLOCK_MONOTONIC ms by which the session must have logged in; 0: none. */
static long long preauth_deadline;
/* The deadline holds only until the client's first byte (SERVER_PREAUTH_SILENT). */
static int preauth_silent_only;

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void server_preauth_arm(long long ms)
{
	server_preauth_arm_mode(ms, SERVER_PREAUTH_LOGIN);
}

long long server_preauth_left_ms(void)
{
	if (!preauth_deadline || preauth_silent_only)
		return -1;
	long long left = preauth_deadline - now_ms();
	return left > 0 ? left : 0;
}

void server_preauth_arm_mode(long long ms, int mode)
{
	preauth_deadline = ms > 0 && mode != SERVER_PREAUTH_NONE ? now_ms() + ms : 0;
	preauth_silent_only = mode == SERVER_PREAUTH_SILENT;
}

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

ssize_t server_idle_read(struct conn *c, struct buf *in, long long timeout_ms, struct terr *err)
{
	long long waited = 0;
	int by_deadline = 0;
	if (preauth_deadline && preauth_silent_only) {
		struct conn_stats cs;
		conn_get_stats(c, &cs);
		if (cs.wire_in > 0)
			preauth_deadline = 0;	/* it spoke: the protocol's own rules apply */
	}
	if (preauth_deadline) {
		long long left = preauth_deadline - now_ms();
		if (left <= 0)
			return terr_set(err, TE_BUSY, "not logged in within preauth_timeout");
		if (timeout_ms < 0 || left < timeout_ms) {
			timeout_ms = left;
			by_deadline = 1;
		}
	}
	for (;;) {
		long long slice = SERVER_STOP_POLL_MS;
		if (timeout_ms >= 0 && timeout_ms - waited < slice)
			slice = timeout_ms - waited;
		ssize_t r = conn_read(c, in, (int)slice, err);
		if (r >= 0 || err->code != TE_BUSY)
			return r;
		waited += slice;
		if (server_stop_requested)
			return terr_set(err, TE_BUSY, "shutting down");
		if (timeout_ms >= 0 && waited >= timeout_ms)
			return by_deadline && preauth_silent_only ?
				       terr_set(err, TE_BUSY, "silent for preauth_timeout after connecting") :
			       by_deadline ? terr_set(err, TE_BUSY, "not logged in within preauth_timeout") :
					     terr_set(err, TE_BUSY, "timed out after %lld ms", timeout_ms);
	}
}
