/* stats_chan.c: the figures of one channel (or shard) directory, read
 * from its files when asked: pending change-log lines and bytes, the age
 * of the oldest pending change, the failed-mailbox list, the client's
 * published state (client.state) and the holder of its lock, and the
 * synchronous-replication counters (rightnow.stats). */
#include "stats/stats.h"

#include "chlog/chlog.h"
#include "conf/conf.h"
#include "lib/xalloc.h"
#include "sync/sync_client-private.h"
#include "sync/sync_client.h"
#include "sync/sync_rightnow.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Lines and bytes of one file (0 when missing), read in chunks: a log
 * that grew large while the replica was down is never held in memory. */
static void count_file(const char *path, long long *lines, long long *bytes)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	char b[65536];
	ssize_t n;
	while ((n = read(fd, b, sizeof b)) > 0) {
		*bytes += n;
		for (const char *p = b; (p = memchr(p, '\n', (size_t)(b + n - p))); p++)
			(*lines)++;
	}
	close(fd);
}

/* The time of the oldest change not replicated: that of log-run (being
 * replicated) or else of log, when not empty: the time its first writer
 * recorded (a log the reader made empty at its last take, whose birth
 * time is that take's: chlog_first_line_at), else its birth time (a log
 * made by its first writer); 0 when nothing is pending, -1 when the file
 * system keeps neither. */
static long long oldest_pending_at(const char *configdir, const char *chan, int shard)
{
	static const char *const files[] = { "log-run", "log" };
	struct buf path = BUF_INIT;
	long long at = 0;
	for (size_t i = 0; i < 2 && !at; i++) {
		chlog_shard_path(configdir, chan, shard, files[i], &path);
		struct statx sx;
		if (statx(AT_FDCWD, path.ptr, 0, STATX_BTIME | STATX_SIZE, &sx) < 0 || sx.stx_size == 0)
			continue;
		at = chlog_first_line_at(path.ptr);
		if (at <= 0)
			at = sx.stx_mask & STATX_BTIME ? (long long)sx.stx_btime.tv_sec : -1;
	}
	buf_free(&path);
	return at;
}

static long lock_holder(const char *configdir, const char *chan, int shard)
{
	char name[32];
	snprintf(name, sizeof name, "client-%d.lock", shard < 0 ? 0 : shard);
	struct buf path = BUF_INIT;
	chlog_path(configdir, chan, name, &path);
	char b[32];
	long pid = 0;
	int fd = open(path.ptr, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		ssize_t n = pread(fd, b, sizeof b - 1, 0);
		if (n > 0) {
			b[n] = '\0';
			pid = strtol(b, NULL, 10);
		}
		close(fd);
	}
	buf_free(&path);
	return stats_pid_alive(pid) ? pid : 0;
}

static void rightnow_counts(const char *configdir, const char *chan, struct stats_chan *c)
{
	struct buf s = BUF_INIT;
	sync_rightnow_stats(configdir, chan, &s);
	const char *p;
	if ((p = strstr(buf_cstr(&s), "ok=")))
		c->rn_ok = strtoull(p + 3, NULL, 10);
	if ((p = strstr(s.ptr, "timeouts=")))
		c->rn_timeouts = strtoull(p + 9, NULL, 10);
	if ((p = strstr(s.ptr, "refused=")))
		c->rn_refused = strtoull(p + 8, NULL, 10);
	buf_free(&s);
}

void stats_chan_collect(const struct conf *conf, const char *channel, int shard, long long now,
			struct stats_chan *out)
{
	memset(out, 0, sizeof *out);
	const char *configdir = conf_str(conf, "configdirectory");
	const char *chan = channel ? channel : "";
	out->shard = shard;
	out->nshards = syncc_channel_shards(conf, chan);
	struct buf path = BUF_INIT;
	for (int k = 0; k < 2; k++) {
		chlog_shard_path(configdir, chan, shard, k ? "log-run" : "log", &path);
		count_file(path.ptr, &out->pending_lines, &out->bytes_behind);
	}
	long long at = out->pending_lines ? oldest_pending_at(configdir, chan, shard) : 0;
	out->oldest_pending_at = at > 0 ? at : 0;
	out->oldest_pending_s = at < 0 ? -1 : at == 0 ? 0 : now > at ? now - at : 0;
	struct syncc sc = { 0 };
	sc.conf = conf;
	sc.o.shard = shard;
	snprintf(sc.channel, sizeof sc.channel, "%s", chan);
	struct failed *v;
	size_t n;
	if (syncc_failed_load(&sc, &v, &n, NULL) == 0) {
		out->failed = n ? xcalloc(n, sizeof *out->failed) : NULL;
		for (size_t i = 0; i < n; i++) {
			struct stats_failed *f = &out->failed[i];
			snprintf(f->mailbox, sizeof f->mailbox, "%s", v[i].name);
			snprintf(f->error, sizeof f->error, "%s", v[i].error);
			f->attempts = v[i].attempts;
			f->next_retry = v[i].next_retry;
		}
		out->nfailed = n;
		syncc_failed_free(v, n);
	}
	stats_client_path(configdir, chan, shard, &path);
	out->have_client = stats_client_read(path.ptr, &out->client) == 0;
	out->lock_pid = lock_holder(configdir, chan, shard);
	buf_free(&path);
	out->rightnow = sync_rightnow_is(conf, chan);
	if (out->rightnow && shard <= 0)
		rightnow_counts(configdir, chan, out);
}

void stats_chan_free(struct stats_chan *c)
{
	free(c->failed);
	c->failed = NULL;
	c->nfailed = 0;
}

void stats_prom_label(struct buf *out, const char *v)
{
	for (; *v; v++) {
		if (*v == '\\' || *v == '"')
			buf_putc(out, '\\');
		if (*v == '\n')
			buf_appends(out, "\\n");
		else
			buf_putc(out, *v);
	}
}

