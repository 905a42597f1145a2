/* syncc_publish.c: a rolling sync client tells `tandem status` and the
 * metrics endpoint what it is doing, in client.state of its log directory
 * (format and rules in src/stats/stats.h, point 2). The counters in it
 * (bytes sent, passes) go on from the previous client's file, so they
 * only grow while the directory lives. Writing is best effort: a failure
 * costs the readers freshness, never the replication. */
#include "sync/sync_client.h"
#include "sync/sync_client-private.h"

#include "conf/conf.h"
#include "lib/xalloc.h"
#include "stats/stats.h"

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct syncc_pub {
	struct buf path;
	struct stats_client c;
	unsigned long long bytes_base;	/* bytes_sent of the earlier clients */
	long long written;		/* last write, epoch seconds */
	int dirty;			/* passes counted since that write */
};

static void publish(struct syncc *sc)
{
	struct syncc_pub *p = sc->pub;
	p->c.bytes_sent = p->bytes_base + sc->stats.bytes_sent;
	p->written = (long long)time(NULL);
	p->dirty = 0;
	(void)stats_client_write(p->path.ptr, &p->c);
}

void syncc_pub_open(struct syncc *sc)
{
	if (sc->pub)
		return;
	struct syncc_pub *p = xcalloc(1, sizeof *p);
	syncc_shard_path(sc, "client.state", &p->path);
	struct stats_client old;
	if (stats_client_read(p->path.ptr, &old) == 0) {
		p->bytes_base = old.bytes_sent;
		p->c.passes = old.passes;
		p->c.pass_failures = old.pass_failures;
		p->c.last_success = old.last_success;
		p->c.last_pass = old.last_pass;
	}
	p->bytes_base -= sc->stats.bytes_sent;
	p->c.pid = (long)getpid();
	sc->pub = p;
	syncc_pub_state(sc, sc->t ? "connected" : "connecting", 0, NULL);
}

void syncc_pub_close(struct syncc *sc)
{
	if (!sc->pub)
		return;
	syncc_pub_state(sc, "stopped", 0, NULL);
	buf_free(&sc->pub->path);
	free(sc->pub);
	sc->pub = NULL;
}

void syncc_pub_state(struct syncc *sc, const char *state, long long until, const char *error)
{
	struct syncc_pub *p = sc->pub;
	if (!p)
		return;
	long long now = (long long)time(NULL);
	if (strcmp(p->c.state, state))
		p->c.since = now;
	snprintf(p->c.state, sizeof p->c.state, "%s", state);
	p->c.backoff_until = until;
	if (!strcmp(state, "connected")) {
		if (!p->c.connected_since)
			p->c.connected_since = now;
	} else if (strcmp(state, "draining")) {
		p->c.connected_since = 0;
	}
	if (error)
		snprintf(p->c.error, sizeof p->c.error, "%s", error);
	publish(sc);
}

void syncc_pub_pass(struct syncc *sc, int ok, unsigned long long ns, const char *error)
{
	stats_observe(SH_SYNC_PASS, ns);
	struct syncc_pub *p = sc->pub;
	if (!p)
		return;
	long long now = (long long)time(NULL);
	p->c.last_pass = now;
	if (ok) {
		p->c.passes++;
		p->c.last_success = now;
		if (p->written == now && !p->c.error[0]) {
			/* a busy channel passes hundreds of times a second: one
			 * write a second (the next pass or idle tick writes it) */
			p->dirty = 1;
			return;
		}
		p->c.error[0] = '\0';
	} else {
		p->c.pass_failures++;
		snprintf(p->c.error, sizeof p->c.error, "%s", error ? error : "");
	}
	publish(sc);
}

void syncc_pub_idle(struct syncc *sc)
{
	struct syncc_pub *p = sc->pub;
	if (!p || !sc->t)
		return;
	long long now = (long long)time(NULL);
	if (p->dirty && now != p->written) {
		publish(sc);
		return;
	}
	if (now - p->written < STATS_IDLE_REFRESH_S && p->c.last_success)
		return;
	p->c.last_success = now;
	if (strcmp(p->c.state, "connected"))
		syncc_pub_state(sc, "connected", 0, NULL);
	else
		publish(sc);
}
