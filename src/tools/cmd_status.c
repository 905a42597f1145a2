/* cmd_status.c: tandem status: is tandemd running, and how far behind is
 * each channel (and shard): its client, the pending change log, the
 * failed mailboxes. Everything is read from files (src/stats/stats.h):
 * it works with tandemd stopped, and never talks to a replica. */
#include "tools/tools.h"

#include "conf/conf.h"
#include "lib/limits.h"
#include "lib/xalloc.h"
#include "stats/stats.h"
#include "sync/sync_client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char status_usage[] =
	"usage: tandem status [--json] [-n CHANNEL]... [--max-lag DURATION]\n"
	"\nWhether tandemd runs (pid, uptime, version, listeners), then for each channel\n"
	"(all configured ones by default): the change-log lines not yet replicated, the\n"
	"age in seconds of the oldest of them (oldest_pending_s: the replication lag; -1\n"
	"when the file system keeps no birth times), every mailbox that failed to\n"
	"replicate, with its error, attempts and next retry (the rolling client retries\n"
	"it with backoff; fix the cause and run tandem sync -n CHANNEL -m MAILBOX to\n"
	"replicate it by hand), and a client= line: the sync client's state (connected,\n"
	"connecting, backoff until backoff_until, draining, exited (tandemd restarts it\n"
	"at restart_at; last_exit its status), stopped, none for a channel without\n"
	"sync_host), pid, last successful pass,\n"
	"bytes_behind, bytes_sent, passes.\n"
	"A sharded channel (<channel>_sync_shards) also has its lines per shard (shard=K);\n"
	"the channel's lines give the total and the largest lag.\n"
	"The sync_rightnow_channel also has a line \"rightnow=on ok=N timeouts=N refused=N\n"
	"last_cause=...\": how the acknowledgements' waits for its replica ended.\n"
	"--json prints one JSON document instead (docs/operations.md, \"Status\").\n"
	"--max-lag DURATION (60s, 5m, 1h; a bare number is seconds): a channel whose\n"
	"oldest pending change is older is stalled: a line \"channel=C stalled=yes\n"
	"lag_s=N\" and exit status 1.\n"
	"Exit status: 0 no channel stalled (or no --max-lag), 1 a channel stalled or\n"
	"a state could not be read, 2 bad usage.\n";

/* "60s", "5m", "1h", "2d", "90" (seconds) -> seconds, -1 if not one. */
static long long parse_lag(const char *s)
{
	char *end;
	long long v = strtoll(s, &end, 10);
	if (end == s || v < 0 || v > 100000000)
		return -1;
	long long mul = !*end || !strcmp(end, "s") ? 1 : !strcmp(end, "m") ? 60 : !strcmp(end, "h") ? 3600 :
			!strcmp(end, "d") ? 86400 : 0;
	return mul ? v * mul : -1;
}

/* One client (channel directory) as status shows it. */
struct cl {
	const char *channel;
	struct stats_chan c;
	const char *state;	/* connected connecting backoff draining exited starting none */
	long pid;
	long long restart_at;	/* exited under tandemd: its next start */
	int last_exit;		/* -1 none */
	long long lag;		/* seconds, -1 unknown */
};

static const struct stats_syncer *daemon_syncer(const struct stats_daemon *d, const char *chan, int shard)
{
	for (int i = 0; d && i < d->nsy; i++)
		if (!strcmp(d->sy[i].channel, chan) && d->sy[i].shard == shard)
			return &d->sy[i];
	return NULL;
}

static void client_view(const struct conf *conf, const struct stats_daemon *d, long long now, struct cl *x)
{
	const struct stats_client *pc = &x->c.client;
	int alive = x->c.have_client && stats_pid_alive(pc->pid) && strcmp(pc->state, "stopped");
	const char *host = conf_chan_str(conf, x->channel, "sync_host");
	const struct stats_syncer *sy = daemon_syncer(d, x->channel, x->c.shard);
	x->last_exit = sy ? sy->last_exit : -1;
	x->pid = 0;
	if (alive) {
		x->state = pc->state;
		x->pid = pc->pid;
	} else if (sy && sy->pid && stats_pid_alive(sy->pid)) {
		x->state = "starting";
		x->pid = sy->pid;
	} else if (!host || !*host) {
		x->state = "none";
	} else if (sy) {
		/* tandemd restarts it at restart_at */
		x->state = "exited";
		x->restart_at = sy->restart_at;
	} else {
		/* stopped cleanly (tandemd stopped, the channel removed), or
		 * killed with tandemd */
		x->state = x->c.have_client && !strcmp(pc->state, "stopped") ? "stopped" : "exited";
	}
	/* the lag: the oldest pending change's age; without birth times,
	 * the time since the last success while something is pending */
	x->lag = x->c.oldest_pending_s;
	if (x->lag < 0 && x->c.pending_lines == 0)
		x->lag = 0;
	else if (x->lag < 0 && pc->last_success > 0)
		x->lag = now - pc->last_success;
}

static void text_client(struct buf *out, const struct cl *x, long long now)
{
	const struct stats_client *pc = &x->c.client;
	buf_printf(out, "channel=%s", *x->channel ? x->channel : "\"\"");
	if (x->c.shard >= 0)
		buf_printf(out, " shard=%d", x->c.shard);
	buf_printf(out, " client=%s pid=%ld", x->state, x->pid);
	if (!strcmp(x->state, "backoff"))
		buf_printf(out, " backoff_until=%lld", pc->backoff_until);
	if (!strcmp(x->state, "exited") && x->restart_at)
		buf_printf(out, " restart_at=%lld", x->restart_at);
	if (x->last_exit >= 0)
		buf_printf(out, " last_exit=%d", x->last_exit);
	buf_printf(out, " last_success=%lld", pc->last_success);
	if (pc->last_success)
		buf_printf(out, " last_success_age_s=%lld", now > pc->last_success ? now - pc->last_success : 0);
	buf_printf(out, " bytes_behind=%lld oldest_pending_at=%lld bytes_sent=%llu passes=%llu pass_failures=%llu"
			" failed_mailboxes=%zu",
		   x->c.bytes_behind, x->c.oldest_pending_at, pc->bytes_sent, pc->passes, pc->pass_failures,
		   x->c.nfailed);
	if (pc->error[0] && strcmp(x->state, "connected"))
		buf_printf(out, " error=\"%s\"", pc->error);
	buf_putc(out, '\n');
}

static void json_num_or_null(struct buf *out, const char *key, long long v, int is_null)
{
	if (is_null)
		buf_printf(out, ", \"%s\": null", key);
	else
		buf_printf(out, ", \"%s\": %lld", key, v);
}

static void json_client(struct buf *out, const struct cl *x)
{
	const struct stats_client *pc = &x->c.client;
	buf_appends(out, "{\"shard\": ");
	if (x->c.shard >= 0)
		buf_printf(out, "%d", x->c.shard);
	else
		buf_appends(out, "null");
	buf_appends(out, ", \"state\": ");
	buf_json_str(out, x->state);
	json_num_or_null(out, "pid", x->pid, x->pid == 0);
	json_num_or_null(out, "since", pc->since, !x->pid || !pc->since);
	json_num_or_null(out, "backoff_until", pc->backoff_until, strcmp(x->state, "backoff") != 0);
	json_num_or_null(out, "restart_at", x->restart_at, !x->restart_at);
	json_num_or_null(out, "last_exit", x->last_exit, x->last_exit < 0);
	json_num_or_null(out, "last_success", pc->last_success, !pc->last_success);
	json_num_or_null(out, "last_pass", pc->last_pass, !pc->last_pass);
	buf_printf(out, ", \"pending_lines\": %lld, \"bytes_behind\": %lld, \"oldest_pending_s\": %lld",
		   x->c.pending_lines, x->c.bytes_behind, x->c.oldest_pending_s);
	json_num_or_null(out, "oldest_pending_at", x->c.oldest_pending_at, !x->c.oldest_pending_at);
	json_num_or_null(out, "lag_s", x->lag, x->lag < 0);
	buf_printf(out, ", \"bytes_sent\": %llu, \"passes\": %llu, \"pass_failures\": %llu, \"error\": ", pc->bytes_sent,
		   pc->passes, pc->pass_failures);
	buf_json_str(out, pc->error);
	buf_appends(out, ", \"failed_mailboxes\": [");
	for (size_t i = 0; i < x->c.nfailed; i++) {
		const struct stats_failed *f = &x->c.failed[i];
		buf_appends(out, i ? ", {\"mailbox\": " : "{\"mailbox\": ");
		buf_json_str(out, f->mailbox);
		buf_printf(out, ", \"attempts\": %d, \"next_retry\": %lld, \"error\": ", f->attempts, f->next_retry);
		buf_json_str(out, f->error);
		buf_putc(out, '}');
	}
	buf_appends(out, "]}");
}

static void daemon_lines(struct buf *out, const struct stats_daemon *d, int running, long long now, int json)
{
	if (json) {
		buf_printf(out, "  \"version\": \"%s\",\n  \"tandemd\": {\"running\": %s", TANDEM_VERSION,
			   running ? "true" : "false");
		if (running) {
			buf_printf(out, ", \"pid\": %ld, \"started\": %lld, \"uptime_s\": %lld, \"version\": ", d->pid,
				   d->started, now - d->started);
			buf_json_str(out, d->version);
			buf_appends(out, ", \"config\": ");
			buf_json_str(out, d->config);
			buf_appends(out, ", \"listeners\": [");
			for (int i = 0; i < d->nls; i++) {
				buf_appends(out, i ? ", {\"service\": " : "{\"service\": ");
				buf_json_str(out, d->ls[i].service);
				buf_appends(out, ", \"addr\": ");
				buf_json_str(out, d->ls[i].addr);
				buf_printf(out, ", \"port\": %d}", d->ls[i].port);
			}
			buf_putc(out, ']');
		}
		buf_appends(out, "},\n");
		return;
	}
	if (!running) {
		buf_printf(out, "tandemd=stopped version=%s\n", TANDEM_VERSION);
		return;
	}
	buf_printf(out, "tandemd=running pid=%ld started=%lld uptime_s=%lld version=%s config=%s\n", d->pid, d->started,
		   now - d->started, d->version, d->config);
	for (int i = 0; i < d->nls; i++)
		buf_printf(out, "listener service=%s addr=%s port=%d\n", d->ls[i].service, d->ls[i].addr, d->ls[i].port);
}

int cmd_status(struct tool *t, int argc, char **argv)
{
	if (tool_help(argc, argv, status_usage))
		return EXIT_OK;
	const char **named = xcalloc((size_t)argc, sizeof *named);
	size_t nnamed = 0;
	int json = 0;
	long long max_lag = -1;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-n") && i + 1 < argc) {
			named[nnamed++] = argv[++i];
		} else if (!strcmp(argv[i], "--json")) {
			json = 1;
		} else if (!strcmp(argv[i], "--max-lag") && i + 1 < argc && (max_lag = parse_lag(argv[i + 1])) >= 0) {
			i++;
		} else {
			free(named);
			return tool_usage(status_usage);
		}
	}
	const char *const *chans = named;
	size_t n = nnamed;
	int logging = conf_bool(t->conf, "sync_log");
	if (!nnamed)
		n = logging ? conf_log_channels(t->conf, &chans) : 0;
	const char *configdir = conf_str(t->conf, "configdirectory");
	long long now = (long long)time(NULL);
	struct stats_daemon *d = xcalloc(1, sizeof *d);
	struct buf path = BUF_INIT, out = BUF_INIT, js = BUF_INIT;
	stats_daemon_path(configdir, &path);
	int running = stats_daemon_read(path.ptr, d) == 0 && stats_pid_alive(d->pid);
	struct terr err = { 0 };
	int rc = EXIT_OK, stalled = 0;
	if (json)
		buf_appends(&out, "{\n");
	daemon_lines(&out, d, running, now, json);
	if (json)
		buf_printf(&out, "  \"replication\": %s,\n  \"channels\": [", logging ? "true" : "false");
	else if (!n)
		buf_printf(&out, "channels=0%s\n", logging ? "" : " note=\"sync_log is off\"");
	for (size_t i = 0; i < n; i++) {
		const char *qc = *chans[i] ? chans[i] : "\"\"";
		int nshards = syncc_channel_shards(t->conf, chans[i]);
		struct cl *xs = xcalloc((size_t)nshards, sizeof *xs);
		long long lag = 0, pending = 0, behind = 0, total_age = 0;
		size_t nfailed = 0;
		for (int k = 0; k < nshards; k++) {
			xs[k].channel = chans[i];
			stats_chan_collect(t->conf, chans[i], nshards > 1 ? k : -1, now, &xs[k].c);
			client_view(t->conf, running ? d : NULL, now, &xs[k]);
			if (xs[k].lag < 0 || (lag >= 0 && xs[k].lag > lag))
				lag = xs[k].lag < 0 ? -1 : xs[k].lag;
			pending += xs[k].c.pending_lines;
			behind += xs[k].c.bytes_behind;
			nfailed += xs[k].c.nfailed;
			if (xs[k].c.oldest_pending_s < 0 || (total_age >= 0 && xs[k].c.oldest_pending_s > total_age))
				total_age = xs[k].c.oldest_pending_s < 0 ? -1 : xs[k].c.oldest_pending_s;
		}
		int is_stalled = max_lag >= 0 && lag > max_lag;
		stalled += is_stalled;
		if (json) {
			buf_appends(&out, i ? ",\n    {\"channel\": " : "\n    {\"channel\": ");
			buf_json_str(&out, chans[i]);
			const char *host = conf_chan_str(t->conf, chans[i], "sync_host");
			buf_appends(&out, ", \"replica\": ");
			if (host && *host)
				buf_json_str(&out, host);
			else
				buf_appends(&out, "null");
			buf_printf(&out, ", \"shards\": %d, \"pending_lines\": %lld, \"bytes_behind\": %lld, "
					 "\"oldest_pending_s\": %lld, \"failed_mailboxes\": %zu",
				   nshards, pending, behind, total_age, nfailed);
			json_num_or_null(&out, "lag_s", lag, lag < 0);
			buf_printf(&out, ", \"stalled\": %s, \"rightnow\": ", is_stalled ? "true" : "false");
			if (xs[0].c.rightnow)
				buf_printf(&out, "{\"ok\": %llu, \"timeouts\": %llu, \"refused\": %llu}", xs[0].c.rn_ok,
					   xs[0].c.rn_timeouts, xs[0].c.rn_refused);
			else
				buf_appends(&out, "null");
			buf_appends(&out, ",\n     \"clients\": [");
			for (int k = 0; k < nshards; k++) {
				buf_appends(&out, k ? ",\n       " : "\n       ");
				json_client(&out, &xs[k]);
			}
			buf_appends(&out, "]}");
		} else {
			/* the lines of earlier versions first, in their order: the
			 * channel's total pending_lines is the first one */
			if (syncc_status(t->conf, chans[i], &out, &err) < 0)
				rc = tool_fail(&err);
			for (int k = 0; nshards > 1 && k < nshards; k++)
				buf_printf(&out, "channel=%s shard=%d oldest_pending_s=%lld\n", qc, k, xs[k].c.oldest_pending_s);
			buf_printf(&out, "channel=%s oldest_pending_s=%lld\n", qc, total_age);
			for (int k = 0; k < nshards; k++)
				text_client(&out, &xs[k], now);
			if (is_stalled)
				buf_printf(&out, "channel=%s stalled=yes lag_s=%lld max_lag_s=%lld\n", qc, lag, max_lag);
		}
		for (int k = 0; k < nshards; k++)
			stats_chan_free(&xs[k].c);
		free(xs);
	}
	if (json) {
		buf_appends(&out, n ? "\n  ],\n" : "],\n");
		json_num_or_null(&js, "max_lag_s", max_lag, max_lag < 0);
		/* js starts with ", ": the first member of this line has none */
		buf_printf(&out, "  %s,\n  \"stalled\": %d\n}\n", js.ptr + 2, stalled);
	}
	fputs(buf_cstr(&out), stdout);
	buf_free(&out);
	buf_free(&js);
	buf_free(&path);
	free(d);
	free(named);
	return stalled ? EXIT_FAIL : rc;
}
