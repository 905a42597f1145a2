/* sync_rightnow.c: synchronous replication, the session side (see
 * sync_rightnow.h): the WAIT line, the after-commit hook, the counters.
 * The rolling client's side is src/syncc/syncc_rightnow.c. */
#include "sync/sync_rightnow.h"

#include "chlog/chlog.h"
#include "conf/conf.h"
#include "lib/limits.h"
#include "lib/log.h"
#include "lib/xalloc.h"
#include "store/store.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* ---- the WAIT line ---------------------------------------------------- */

/* One decimal number ending at stop; -1 if not digits or too large. */
static int parse_u64(const char **pp, const char *end, char stop, unsigned long long *v)
{
	const char *p = *pp;
	unsigned long long n = 0;
	if (p >= end || *p < '0' || *p > '9')
		return -1;
	if (*p == '0' && p + 1 < end && p[1] >= '0' && p[1] <= '9')
		return -1;	/* one spelling per number: no leading zero */
	for (; p < end && *p >= '0' && *p <= '9'; p++) {
		unsigned d = (unsigned)(*p - '0');
		if (n > (~0ULL - d) / 10)
			return -1;
		n = n * 10 + d;
	}
	if (p >= end || *p != stop)
		return -1;
	*v = n;
	*pp = p + 1;
	return 0;
}

int sync_rightnow_parse_wait(const char *in, size_t len, struct sync_rightnow_wait *w, size_t *used_r)
{
	const char *nl = memchr(in, '\n', len < RIGHTNOW_MAX_LINE ? len : RIGHTNOW_MAX_LINE);
	if (!nl) {
		/* a prefix of a good line needs more; anything else is bad */
		static const char verb[] = "WAIT ";
		size_t k = len < 5 ? len : 5;
		if (len >= RIGHTNOW_MAX_LINE || memcmp(in, verb, k))
			return -1;
		for (size_t i = 5; i < len; i++)
			if (in[i] != ' ' && (in[i] < '0' || in[i] > '9'))
				return -1;
		return 0;
	}
	const char *p = in, *end = nl + 1;
	if (end - p < 5 || memcmp(p, "WAIT ", 5))
		return -1;
	p += 5;
	struct sync_rightnow_wait v;
	if (parse_u64(&p, end, ' ', &v.dev) < 0 || parse_u64(&p, end, ' ', &v.ino) < 0 ||
	    parse_u64(&p, end, '\n', &v.offset) < 0 || p != end)
		return -1;
	*w = v;
	*used_r = (size_t)(end - in);
	return 1;
}

void sync_rightnow_sock_path(const char *configdir, const char *channel, int shard, struct buf *out)
{
	chlog_shard_path(configdir, channel, shard, "rightnow.sock", out);
}

/* ---- counters ---------------------------------------------------------- */

struct stats {
	unsigned long long n[3];
	char cause[200];
};

static void stats_parse(const char *s, struct stats *st)
{
	memset(st, 0, sizeof *st);
	const char *p;
	if ((p = strstr(s, "ok=")))
		st->n[0] = strtoull(p + 3, NULL, 10);
	if ((p = strstr(s, "timeouts=")))
		st->n[1] = strtoull(p + 9, NULL, 10);
	if ((p = strstr(s, "refused=")))
		st->n[2] = strtoull(p + 8, NULL, 10);
	if ((p = strstr(s, "last_cause=\""))) {
		p += 12;
		size_t k = strcspn(p, "\"\n");
		if (k >= sizeof st->cause)
			k = sizeof st->cause - 1;
		memcpy(st->cause, p, k);
		st->cause[k] = '\0';
	}
}

static void stats_format(const struct stats *st, struct buf *out)
{
	buf_printf(out, "ok=%llu timeouts=%llu refused=%llu last_cause=\"%s\"", st->n[0], st->n[1], st->n[2],
		   st->cause);
}

int sync_rightnow_count(const char *configdir, const char *channel, int kind, const char *cause,
			struct terr *err)
{
	struct buf path = BUF_INIT, line = BUF_INIT;
	chlog_path(configdir, channel, "rightnow.stats", &path);
	int rc = -1;
	int fd = open(path.ptr, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
	if (fd < 0) {
		terr_errno(err, errno, "open %s", path.ptr);
		goto out;
	}
	while (flock(fd, LOCK_EX) < 0)
		if (errno != EINTR) {
			terr_errno(err, errno, "lock %s", path.ptr);
			goto out;
		}
	char data[512];
	ssize_t r = pread(fd, data, sizeof data - 1, 0);
	data[r > 0 ? r : 0] = '\0';
	struct stats st;
	stats_parse(data, &st);
	st.n[kind]++;
	if (kind != RIGHTNOW_OK && cause) {
		/* the cause goes between quotes: no quote or line break in it */
		size_t k = 0;
		for (const char *c = cause; *c && k + 1 < sizeof st.cause; c++)
			st.cause[k++] = *c == '"' || *c == '\n' || *c == '\r' ? '\'' : *c;
		st.cause[k] = '\0';
	}
	stats_format(&st, &line);
	buf_putc(&line, '\n');
	/* a counter file, not a record of the mail: no fsync */
	if (pwrite(fd, line.ptr, line.len, 0) != (ssize_t)line.len || ftruncate(fd, (off_t)line.len) < 0) {
		terr_errno(err, errno, "write %s", path.ptr);
		goto out;
	}
	rc = 0;
out:
	if (fd >= 0)
		close(fd);	/* drops the lock */
	buf_free(&path);
	buf_free(&line);
	return rc;
}

void sync_rightnow_stats(const char *configdir, const char *channel, struct buf *out)
{
	struct buf path = BUF_INIT;
	chlog_path(configdir, channel, "rightnow.stats", &path);
	char data[512] = "";
	int fd = open(path.ptr, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		flock(fd, LOCK_SH);
		ssize_t r = pread(fd, data, sizeof data - 1, 0);
		data[r > 0 ? r : 0] = '\0';
		close(fd);
	}
	struct stats st;
	stats_parse(data, &st);
	stats_format(&st, out);
	buf_free(&path);
}

/* ---- the session side ---------------------------------------------------- */

struct sync_rightnow {
	char *configdir;
	char channel[MAX_CHANNEL_NAME + 1];
	long long timeout_ms;
};

int sync_rightnow_channel(const struct conf *conf, const char **channel_r)
{
	const char *v = conf_str(conf, "sync_rightnow_channel");
	*channel_r = "";
	if (!v || !*v)
		return 0;
	if (strcmp(v, "\"\""))
		*channel_r = v;
	return 1;
}

int sync_rightnow_is(const struct conf *conf, const char *channel)
{
	const char *rn;
	return sync_rightnow_channel(conf, &rn) && !strcmp(rn, channel ? channel : "");
}

struct sync_rightnow *sync_rightnow_new(const struct conf *conf)
{
	const char *channel;
	if (!sync_rightnow_channel(conf, &channel) || conf_duration_ms(conf, "sync_rightnow_timeout") <= 0)
		return NULL;	/* 0: never wait */
	struct sync_rightnow *rn = xcalloc(1, sizeof *rn);
	rn->configdir = xstrdup(conf_str(conf, "configdirectory"));
	snprintf(rn->channel, sizeof rn->channel, "%s", channel);
	rn->timeout_ms = conf_duration_ms(conf, "sync_rightnow_timeout");
	return rn;
}

void sync_rightnow_free(struct sync_rightnow **rnp)
{
	struct sync_rightnow *rn = *rnp;
	if (!rn)
		return;
	free(rn->configdir);
	free(rn);
	*rnp = NULL;
}

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits for one position. 0: the replica has it; 1: timed out; 2:
 * refused (cause in *cause). */
static int wait_one(const struct sync_rightnow *rn, const struct chlog_pos *pos, long long deadline,
		    struct buf *cause)
{
	struct buf path = BUF_INIT;
	sync_rightnow_sock_path(rn->configdir, rn->channel, pos->shard, &path);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int rc = 2;
	int fd = -1;
	if (path.len >= sizeof sa.sun_path) {
		buf_printf(cause, "socket path too long");
		goto out;
	}
	memcpy(sa.sun_path, path.ptr, path.len + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		buf_printf(cause, "socket: %s", strerror(errno));
		goto out;
	}
	if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
		if (errno == ENOENT || errno == ECONNREFUSED)
			buf_printf(cause, "no sync client");
		else if (errno == EAGAIN)
			buf_printf(cause, "sync client busy");
		else
			buf_printf(cause, "connect: %s", strerror(errno));
		goto out;
	}
	char line[RIGHTNOW_MAX_LINE];
	int n = snprintf(line, sizeof line, "WAIT %llu %llu %llu\n", pos->dev, pos->ino, pos->offset);
	/* a fresh Unix socket's buffer takes a short line whole */
	if (send(fd, line, (size_t)n, MSG_NOSIGNAL) != n) {
		buf_printf(cause, "send: %s", strerror(errno));
		goto out;
	}
	char ans[RIGHTNOW_MAX_LINE];
	size_t got = 0;
	for (;;) {
		long long left = deadline - now_ms();
		if (left <= 0) {
			rc = 1;
			goto out;
		}
		struct pollfd pf = { fd, POLLIN, 0 };
		int pr = poll(&pf, 1, (int)left);
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr < 0) {
			buf_printf(cause, "poll: %s", strerror(errno));
			goto out;
		}
		if (pr == 0)
			continue;	/* the deadline check ends it */
		ssize_t r = read(fd, ans + got, sizeof ans - 1 - got);
		if (r < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (r <= 0) {
			buf_printf(cause, "sync client closed the connection");
			goto out;
		}
		got += (size_t)r;
		ans[got] = '\0';
		char *nl = strchr(ans, '\n');
		if (!nl && got + 1 < sizeof ans)
			continue;
		if (nl)
			*nl = '\0';
		if (!strcmp(ans, "OK")) {
			rc = 0;
		} else if (!strncmp(ans, "NO ", 3)) {
			for (const char *c = ans + 3; *c; c++)
				buf_putc(cause, *c == '"' ? '\'' : *c);
		} else {
			buf_printf(cause, "bad answer from the sync client");
		}
		goto out;
	}
out:
	if (fd >= 0)
		close(fd);
	buf_free(&path);
	return rc;
}

void sync_rightnow_after_commit(void *rock, const struct store_commit *c)
{
	const struct sync_rightnow *rn = rock;
	if (!rn)
		return;
	long long t0 = now_ms(), deadline = t0 + rn->timeout_ms;
	struct buf cause = BUF_INIT;
	int rc = 0;
	int seen = 0;
	for (size_t i = 0; i < c->npos && rc == 0; i++) {
		const struct chlog_pos *p = &c->pos[i];
		if (strcmp(p->channel, rn->channel))
			continue;
		/* one WAIT per file, for the furthest position in it (several
		 * commits deferred together: LMTP's recipients) */
		int covered = 0;
		for (size_t k = 0; k < c->npos && !covered; k++) {
			const struct chlog_pos *q = &c->pos[k];
			covered = k != i && !strcmp(q->channel, p->channel) && q->shard == p->shard && q->dev == p->dev &&
				  q->ino == p->ino && (q->offset > p->offset || (q->offset == p->offset && k < i));
		}
		if (covered)
			continue;
		seen = 1;
		rc = wait_one(rn, p, deadline, &cause);
	}
	if (!seen)
		goto out;
	struct terr err = { 0 };
	int kind = rc == 0 ? RIGHTNOW_OK : rc == 1 ? RIGHTNOW_TIMEOUT : RIGHTNOW_REFUSED;
	if (rc == 1)
		log_warn("event=rightnow_timeout channel=%s user=%s mailbox=%s ms=%lld note=\"acknowledged before the"
			 " replica has it: left to the rolling client\"", rn->channel, *c->owner ? c->owner : "\"\"",
			 *c->mailbox ? c->mailbox : "\"\"", now_ms() - t0);
	else if (rc == 2)
		log_warn("event=rightnow_refused channel=%s user=%s mailbox=%s cause=\"%s\" note=\"acknowledged"
			 " before the replica has it: left to the rolling client\"", rn->channel,
			 *c->owner ? c->owner : "\"\"", *c->mailbox ? c->mailbox : "\"\"", buf_cstr(&cause));
	if (sync_rightnow_count(rn->configdir, rn->channel, kind, rc == 1 ? "timeout" : buf_cstr(&cause), &err) < 0)
		log_warn("event=rightnow_stats_fail channel=%s error=\"%s\"", rn->channel, err.msg);
out:
	buf_free(&cause);
}
