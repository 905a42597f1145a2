/* syncc_rightnow.c: synchronous replication, the rolling client's side
 * (the protocol is in src/sync/sync_rightnow.h).
 *
 * The client of the sync_rightnow_channel listens on rightnow.sock in its
 * log directory. Waiters (session processes that just committed) send
 * WAIT <dev> <ino> <offset>; the client reads them only between passes
 * (it is single-threaded), so at that moment the file that held a
 * waiter's line is in one of three states:
 *   - it is still the log (same inode at the path "log"): the next pass
 *     takes it: the waiter stays;
 *   - it is log-run (a pass failed on it and it waits to be replayed):
 *     the waiter stays until a pass on it completes, or gets NO when the
 *     pass fails;
 *   - it is gone: chlog_done removed it, which happens only after a pass
 *     that covered all of it completed: OK. The last RIGHTNOW_REMEMBER
 *     passes are remembered with their result, so a waiter of a pass
 *     whose mailboxes partly failed gets NO, not OK.
 * An inode number reused by a new log after the old one was removed is
 * caught by the first rule (the waiter then waits one more pass: never a
 * wrong OK), unless the new log is shorter than the waiter's offset (the
 * empty next log the client makes at each take): it cannot hold the line,
 * and the remembered passes decide. Waiters that arrive during a pass are answered by the next
 * one: one pass, one pipelined round trip per batch, answers them all
 * (group commit). While the replica is unreachable every waiter gets NO
 * at once (syncc_rn_refuse_all), so no session waits on a dead replica.
 */
#include "sync/sync_client-private.h"
#include "sync/sync_client.h"

#include "chlog/chlog.h"
#include "conf/conf.h"
#include "lib/fsutil.h"
#include "lib/limits.h"
#include "lib/log.h"
#include "lib/xalloc.h"
#include "sync/sync_rightnow.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

struct waiter {
	int fd;
	int parsed;		/* w is valid */
	long long since;	/* accepted at (monotonic ms) */
	struct sync_rightnow_wait w;
	char in[RIGHTNOW_MAX_LINE];
	size_t len;
};

struct done_pass {
	unsigned long long dev, ino, size;
	char no[160];		/* "" : OK, else the reason of NO */
};

struct syncc_rn {
	int lfd;
	struct buf sock, log, run;
	struct waiter w[RIGHTNOW_MAX_WAITERS];
	size_t n;
	struct done_pass done[RIGHTNOW_REMEMBER];
	size_t ndone, next_done;
	/* the log-run of the pass under way (valid: taken) */
	int taken;
	unsigned long long run_dev, run_ino, run_size;
};

int syncc_rn_open(struct syncc *sc)
{
	if (!sync_rightnow_is(sc->conf, sc->channel))
		return 0;
	struct syncc_rn *rn = xcalloc(1, sizeof *rn);
	rn->lfd = -1;
	syncc_shard_path(sc, "rightnow.sock", &rn->sock);
	syncc_shard_path(sc, "log", &rn->log);
	syncc_shard_path(sc, "log-run", &rn->run);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct terr err = { 0 };
	struct buf dir = BUF_INIT;
	syncc_shard_path(sc, "", &dir);
	if (rn->sock.len >= sizeof sa.sun_path) {
		terr_set(&err, TE_CONFIG, "socket path %s too long", rn->sock.ptr);
		goto fail;
	}
	if (fs_mkdir_p(dir.ptr, 0750, &err) < 0)
		goto fail;
	memcpy(sa.sun_path, rn->sock.ptr, rn->sock.len + 1);
	unlink(rn->sock.ptr);	/* a previous client's */
	rn->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (rn->lfd < 0 || bind(rn->lfd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(rn->lfd, SOMAXCONN) < 0) {
		terr_errno(&err, errno, "listen on %s", rn->sock.ptr);
		goto fail;
	}
	buf_free(&dir);
	sc->rn = rn;
	log_info("event=rightnow_listen channel=%s socket=%s", sc->channel, rn->sock.ptr);
	return 0;
fail:
	/* the sessions then find no client and acknowledge at once */
	log_err("event=rightnow_fail channel=%s error=\"%s\"", sc->channel, err.msg);
	if (rn->lfd >= 0)
		close(rn->lfd);
	buf_free(&rn->sock);
	buf_free(&rn->log);
	buf_free(&rn->run);
	buf_free(&dir);
	free(rn);
	return -1;
}

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void drop(struct syncc_rn *rn, size_t i)
{
	close(rn->w[i].fd);
	rn->w[i] = rn->w[--rn->n];
}

static void answer(struct syncc_rn *rn, size_t i, const char *no)
{
	char line[200];
	int n = no ? snprintf(line, sizeof line, "NO %.180s\n", no) : snprintf(line, sizeof line, "OK\n");
	/* a short line into an empty socket buffer: never blocks; a waiter
	 * that went away (timed out) is not an error */
	(void)send(rn->w[i].fd, line, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
	drop(rn, i);
}

void syncc_rn_close(struct syncc *sc)
{
	struct syncc_rn *rn = sc->rn;
	if (!rn)
		return;
	while (rn->n)
		answer(rn, 0, "sync client stopping");
	close(rn->lfd);
	unlink(rn->sock.ptr);
	buf_free(&rn->sock);
	buf_free(&rn->log);
	buf_free(&rn->run);
	free(rn);
	sc->rn = NULL;
}

/* 1 when the file at path may hold the waiter's line: its inode, and at
 * least its offset long (a file only grows while it is log or log-run).
 * A shorter one with that inode number is a new file that reused it: the
 * next log the client makes empty at each take (docs/changelog.md) often
 * gets the number of the log-run just removed, and no pass would ever
 * come for an empty log. */
static int holds(const char *path, const struct sync_rightnow_wait *w)
{
	struct stat st;
	return stat(path, &st) == 0 && (unsigned long long)st.st_dev == w->dev &&
	       (unsigned long long)st.st_ino == w->ino && (unsigned long long)st.st_size >= w->offset;
}

/* The answer a parsed waiter gets now: 0 stay, 1 answered (i removed). */
static int settle(struct syncc_rn *rn, size_t i)
{
	const struct sync_rightnow_wait *w = &rn->w[i].w;
	if (holds(rn->log.ptr, w) || holds(rn->run.ptr, w))
		return 0;
	for (size_t k = 0; k < rn->ndone; k++) {
		const struct done_pass *d = &rn->done[k];
		if (d->dev == w->dev && d->ino == w->ino && w->offset <= d->size) {
			answer(rn, i, *d->no ? d->no : NULL);
			return 1;
		}
	}
	answer(rn, i, NULL);	/* removed: only chlog_done does that */
	return 1;
}

/* Accepts new waiters and reads their lines (never blocks). */
static void service(struct syncc *sc)
{
	struct syncc_rn *rn = sc->rn;
	for (;;) {
		int fd = accept4(rn->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			break;
		if (rn->n >= RIGHTNOW_MAX_WAITERS) {
			static const char busy[] = "NO sync client busy\n";
			(void)send(fd, busy, sizeof busy - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
			close(fd);
			continue;
		}
		rn->w[rn->n] = (struct waiter){ .fd = fd, .since = now_ms() };
		rn->n++;
	}
	for (size_t i = 0; i < rn->n;) {
		struct waiter *w = &rn->w[i];
		if (w->parsed) {
			/* nothing more is expected: EOF is a waiter that gave up */
			char c;
			ssize_t r = recv(w->fd, &c, 1, MSG_DONTWAIT | MSG_PEEK);
			if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR) || r > 0) {
				drop(rn, i);	/* gone, or bytes after its WAIT */
				continue;
			}
			i++;
			continue;
		}
		ssize_t r = read(w->fd, w->in + w->len, sizeof w->in - w->len);
		if (r < 0 && (errno == EAGAIN || errno == EINTR)) {
			if (now_ms() - w->since > RIGHTNOW_LINE_MS) {
				drop(rn, i);	/* connected and said nothing */
				continue;
			}
			i++;
			continue;
		}
		if (r <= 0) {
			drop(rn, i);
			continue;
		}
		w->len += (size_t)r;
		size_t used;
		int p = sync_rightnow_parse_wait(w->in, w->len, &w->w, &used);
		if (p < 0 || (p == 1 && used != w->len)) {
			log_notice("event=rightnow_bad_waiter channel=%s", sc->channel);
			drop(rn, i);
			continue;
		}
		if (p == 0) {
			i++;
			continue;
		}
		w->parsed = 1;
		if (!settle(rn, i))
			i++;
	}
}

size_t syncc_rn_pollfds(struct syncc *sc, struct pollfd *pf, size_t max)
{
	struct syncc_rn *rn = sc->rn;
	size_t k = 0;
	if (!rn || !max)
		return 0;
	pf[k++] = (struct pollfd){ rn->lfd, POLLIN, 0 };
	for (size_t i = 0; i < rn->n && k < max; i++)
		pf[k++] = (struct pollfd){ rn->w[i].fd, POLLIN, 0 };
	return k;
}

int syncc_rn_service(struct syncc *sc)
{
	if (!sc->rn)
		return 0;
	service(sc);
	for (size_t i = 0; i < sc->rn->n; i++)
		if (sc->rn->w[i].parsed)
			return 1;
	return 0;
}

void syncc_rn_pass_begin(struct syncc *sc)
{
	struct syncc_rn *rn = sc->rn;
	if (!rn)
		return;
	struct stat st;
	rn->taken = stat(rn->run.ptr, &st) == 0;
	if (rn->taken) {
		rn->run_dev = (unsigned long long)st.st_dev;
		rn->run_ino = (unsigned long long)st.st_ino;
		rn->run_size = (unsigned long long)st.st_size;
	}
}

void syncc_rn_pass_end(struct syncc *sc, const char *no, size_t nfailed)
{
	struct syncc_rn *rn = sc->rn;
	if (!rn)
		return;
	service(sc);	/* those who arrived during the pass */
	if (rn->taken && !no) {
		/* done: remembered with its result (no mailbox may have failed) */
		struct done_pass *d = &rn->done[rn->next_done];
		rn->next_done = (rn->next_done + 1) % RIGHTNOW_REMEMBER;
		if (rn->ndone < RIGHTNOW_REMEMBER)
			rn->ndone++;
		d->dev = rn->run_dev;
		d->ino = rn->run_ino;
		d->size = rn->run_size;
		d->no[0] = '\0';
		if (nfailed)
			snprintf(d->no, sizeof d->no, "%zu mailbox(es) failed to replicate: retried later", nfailed);
	}
	for (size_t i = 0; i < rn->n;) {
		struct waiter *w = &rn->w[i];
		if (w->parsed && no && rn->taken && w->w.dev == rn->run_dev && w->w.ino == rn->run_ino) {
			answer(rn, i, no);
			continue;
		}
		if (w->parsed && settle(rn, i))
			continue;
		i++;
	}
	rn->taken = 0;
}

void syncc_rn_refuse_all(struct syncc *sc, const char *cause)
{
	struct syncc_rn *rn = sc->rn;
	if (!rn)
		return;
	service(sc);
	for (size_t i = 0; i < rn->n;) {
		if (rn->w[i].parsed)
			answer(rn, i, cause);
		else
			i++;
	}
}

void syncc_rn_sleep(struct syncc *sc, long long ms, const char *cause)
{
	struct pollfd pf[RIGHTNOW_MAX_WAITERS + 1];
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	long long t = 0;
	/* at most 100 ms per poll: stop requests are checked between */
	while (t < ms && !(sc->o.stop && *sc->o.stop)) {
		syncc_rn_refuse_all(sc, cause);
		size_t n = syncc_rn_pollfds(sc, pf, RIGHTNOW_MAX_WAITERS + 1);
		long long step = ms - t < 100 ? ms - t : 100;
		(void)poll(pf, n, (int)step);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		t = (t1.tv_sec - t0.tv_sec) * 1000LL + (t1.tv_nsec - t0.tv_nsec) / 1000000;
	}
	syncc_rn_refuse_all(sc, cause);
}
