/* stats_state.c: the state files of stats.h (points 2 and 3): a sync
 * client's client.state and tandemd's tandemd.state. Both are key=value
 * lines, written whole to a temporary file renamed into place (a reader
 * sees the old file or the new one), without fsync: they describe the
 * running processes and are rewritten at their next change anyway. */
#include "stats/stats.h"

#include "chlog/chlog.h"
#include "lib/fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void stats_client_path(const char *configdir, const char *channel, int shard, struct buf *out)
{
	chlog_shard_path(configdir, channel, shard, "client.state", out);
}

void stats_daemon_path(const char *configdir, struct buf *out)
{
	buf_reset(out);
	buf_printf(out, "%s/tandemd.state", configdir);
}

int stats_pid_alive(long pid)
{
	return pid > 0 && (kill((pid_t)pid, 0) == 0 || errno == EPERM);
}

static int write_file(const char *path, const struct buf *data)
{
	char tmp[4200];
	snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
	if (fd < 0)
		return -1;
	struct terr err;
	int rc = fs_write_all(fd, data->ptr, data->len, tmp, &err);
	if (close(fd) < 0)
		rc = -1;
	if (rc == 0 && rename(tmp, path) < 0)
		rc = -1;
	if (rc < 0)
		unlink(tmp);
	return rc;
}

/* One line's value: printable, no line end. */
static void put_value(struct buf *out, const char *v)
{
	for (; *v; v++)
		buf_putc(out, (unsigned char)*v < 0x20 ? ' ' : *v);
}

int stats_client_write(const char *path, const struct stats_client *c)
{
	struct buf b = BUF_INIT;
	buf_printf(&b, "pid=%ld\nstate=%s\nsince=%lld\nbackoff_until=%lld\nconnected_since=%lld\n"
		       "last_success=%lld\nlast_pass=%lld\nbytes_sent=%llu\npasses=%llu\npass_failures=%llu\nerror=",
		   c->pid, c->state, c->since, c->backoff_until, c->connected_since, c->last_success, c->last_pass,
		   c->bytes_sent, c->passes, c->pass_failures);
	put_value(&b, c->error);
	buf_putc(&b, '\n');
	int rc = write_file(path, &b);
	buf_free(&b);
	return rc;
}

/* Calls fn(key, value) for each key=value line of a file (at most 1 MiB). */
static int each_line(const char *path, void (*fn)(void *rock, const char *k, char *v), void *rock)
{
	struct buf data = BUF_INIT;
	struct terr err;
	if (fs_read_file(path, 1 << 20, &data, &err) < 0) {
		buf_free(&data);
		return -1;
	}
	buf_cstr(&data);
	for (char *line = data.ptr; line && *line;) {
		char *nl = strchr(line, '\n');
		if (nl)
			*nl = '\0';
		char *eq = strchr(line, '=');
		if (eq) {
			*eq = '\0';
			fn(rock, line, eq + 1);
		}
		line = nl ? nl + 1 : NULL;
	}
	buf_free(&data);
	return 0;
}

static void client_kv(void *rock, const char *k, char *v)
{
	struct stats_client *c = rock;
	if (!strcmp(k, "pid"))
		c->pid = strtol(v, NULL, 10);
	else if (!strcmp(k, "state"))
		snprintf(c->state, sizeof c->state, "%s", v);
	else if (!strcmp(k, "since"))
		c->since = strtoll(v, NULL, 10);
	else if (!strcmp(k, "backoff_until"))
		c->backoff_until = strtoll(v, NULL, 10);
	else if (!strcmp(k, "connected_since"))
		c->connected_since = strtoll(v, NULL, 10);
	else if (!strcmp(k, "last_success"))
		c->last_success = strtoll(v, NULL, 10);
	else if (!strcmp(k, "last_pass"))
		c->last_pass = strtoll(v, NULL, 10);
	else if (!strcmp(k, "bytes_sent"))
		c->bytes_sent = strtoull(v, NULL, 10);
	else if (!strcmp(k, "passes"))
		c->passes = strtoull(v, NULL, 10);
	else if (!strcmp(k, "pass_failures"))
		c->pass_failures = strtoull(v, NULL, 10);
	else if (!strcmp(k, "error"))
		snprintf(c->error, sizeof c->error, "%s", v);
}

int stats_client_read(const char *path, struct stats_client *c)
{
	memset(c, 0, sizeof *c);
	return each_line(path, client_kv, c);
}

/* A channel name in tandemd.state: "" (the default channel) as "\"\"". */
static const char *chan_word(const char *c)
{
	return *c ? c : "\"\"";
}

int stats_daemon_write(const char *path, const struct stats_daemon *d)
{
	struct buf b = BUF_INIT;
	buf_printf(&b, "pid=%ld\nstarted=%lld\nversion=%s\nconfig=", d->pid, d->started, d->version);
	put_value(&b, d->config);
	buf_putc(&b, '\n');
	for (int i = 0; i < d->nls; i++)
		buf_printf(&b, "listener=%s %s %d\n", d->ls[i].service, d->ls[i].addr, d->ls[i].port);
	for (int i = 0; i < d->nsy; i++) {
		const struct stats_syncer *s = &d->sy[i];
		buf_printf(&b, "client=%s %d %ld %lld %lld %d %d\n", chan_word(s->channel), s->shard, s->pid, s->started,
			   s->restart_at, s->last_exit, s->failures);
	}
	int rc = write_file(path, &b);
	buf_free(&b);
	return rc;
}

static void daemon_kv(void *rock, const char *k, char *v)
{
	struct stats_daemon *d = rock;
	if (!strcmp(k, "pid")) {
		d->pid = strtol(v, NULL, 10);
	} else if (!strcmp(k, "started")) {
		d->started = strtoll(v, NULL, 10);
	} else if (!strcmp(k, "version")) {
		snprintf(d->version, sizeof d->version, "%s", v);
	} else if (!strcmp(k, "config")) {
		snprintf(d->config, sizeof d->config, "%s", v);
	} else if (!strcmp(k, "listener") && d->nls < STATS_MAX_LISTENERS) {
		struct stats_listener *l = &d->ls[d->nls];
		if (sscanf(v, "%15s %127s %d", l->service, l->addr, &l->port) == 3)
			d->nls++;
	} else if (!strcmp(k, "client") && d->nsy < STATS_MAX_CLIENTS) {
		struct stats_syncer *s = &d->sy[d->nsy];
		char ch[MAX_CHANNEL_NAME + 3];
		if (sscanf(v, "%65s %d %ld %lld %lld %d %d", ch, &s->shard, &s->pid, &s->started, &s->restart_at,
			   &s->last_exit, &s->failures) == 7) {
			if (strlen(ch) < sizeof s->channel) {
				if (!strcmp(ch, "\"\""))
					ch[0] = '\0';
				memcpy(s->channel, ch, strlen(ch) + 1);
				d->nsy++;
			}
		}
	}
}

int stats_daemon_read(const char *path, struct stats_daemon *d)
{
	memset(d, 0, sizeof *d);
	return each_line(path, daemon_kv, d);
}
