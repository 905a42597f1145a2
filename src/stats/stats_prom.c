/* stats_prom.c: the whole metrics page in the Prometheus text format
 * (version 0.0.4): tandemd's info, each channel's (and shard's) figures,
 * then the shared segment's counters and histograms. Every family has
 * its # HELP and # TYPE, and its samples together. */
#include "stats/stats.h"

#include "conf/conf.h"
#include "sync/sync_client.h"
#include "lib/xalloc.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

struct row {
	const char *channel;
	struct stats_chan c;
	int running;	/* the client's pid runs */
};

static void labels(struct buf *out, const struct row *r)
{
	buf_appends(out, "{channel=\"");
	stats_prom_label(out, r->channel);
	buf_putc(out, '"');
	if (r->c.shard >= 0)
		buf_printf(out, ",shard=\"%d\"", r->c.shard);
	buf_putc(out, '}');
}

static void head(struct buf *out, const char *name, const char *type, const char *help)
{
	buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

enum field { F_PENDING, F_OLDEST, F_BEHIND, F_CONNECTED, F_RUNNING, F_BYTES, F_FAILED, F_SUCCESS, F_PASSES,
	     F_PASS_FAILURES, F_N };

static const struct {
	const char *name, *type, *help;
} fields[F_N] = {
	{ "tandem_sync_pending_lines", "gauge", "Change-log lines not yet replicated (log and log-run)." },
	{ "tandem_sync_oldest_pending_seconds", "gauge",
	  "Age of the oldest change not yet replicated: the replication lag (0 when caught up; -1 unknown)." },
	{ "tandem_sync_pending_bytes", "gauge", "Bytes of change log not yet replicated." },
	{ "tandem_sync_client_connected", "gauge", "1 when the channel's sync client runs and is connected to its replica." },
	{ "tandem_sync_client_running", "gauge", "1 when the channel's sync client process runs." },
	{ "tandem_sync_bytes_sent_total", "counter", "Bytes the channel's rolling sync clients sent to the replica." },
	{ "tandem_sync_failed_mailboxes", "gauge", "Mailboxes on the channel's failed list (retried with backoff)." },
	{ "tandem_sync_last_success_timestamp_seconds", "gauge",
	  "When the client last completed a pass, or found nothing to send while connected (epoch seconds; 0 never)." },
	{ "tandem_sync_passes_total", "counter", "Rolling passes that sent a change log and completed." },
	{ "tandem_sync_pass_failures_total", "counter", "Rolling passes that failed (the log is sent again)." },
};

static long long value(const struct row *r, enum field f)
{
	const struct stats_client *cl = &r->c.client;
	switch (f) {
	case F_PENDING: return r->c.pending_lines;
	case F_OLDEST: return r->c.oldest_pending_s;
	case F_BEHIND: return r->c.bytes_behind;
	case F_CONNECTED: return r->running && !strcmp(cl->state, "connected");
	case F_RUNNING: return r->running;
	case F_BYTES: return (long long)cl->bytes_sent;
	case F_FAILED: return (long long)r->c.nfailed;
	case F_SUCCESS: return cl->last_success;
	case F_PASSES: return (long long)cl->passes;
	case F_PASS_FAILURES: return (long long)cl->pass_failures;
	default: return 0;
	}
}

void stats_render_all(const struct conf *conf, struct buf *out)
{
	long long now = (long long)time(NULL);
	const char *configdir = conf_str(conf, "configdirectory");
	struct buf path = BUF_INIT;
	struct stats_daemon *d = xcalloc(1, sizeof *d);
	stats_daemon_path(configdir, &path);
	int have_d = stats_daemon_read(path.ptr, d) == 0 && stats_pid_alive(d->pid);
	head(out, "tandem_info", "gauge", "Always 1; the version of the running tandemd.");
	buf_appends(out, "tandem_info{version=\"");
	stats_prom_label(out, have_d ? d->version : TANDEM_VERSION);
	buf_appends(out, "\"} 1\n");
	head(out, "tandem_start_time_seconds", "gauge", "When tandemd started (epoch seconds).");
	buf_printf(out, "tandem_start_time_seconds %lld\n", have_d ? d->started : 0);
	free(d);

	struct row *rows = NULL;
	size_t nrows = 0;
	const char *const *chans;
	size_t nch = conf_bool(conf, "sync_log") ? conf_log_channels(conf, &chans) : 0;
	for (size_t i = 0; i < nch; i++) {
		int ns = syncc_channel_shards(conf, chans[i]);
		for (int k = 0; k < ns; k++) {
			rows = xrealloc(rows, (nrows + 1) * sizeof *rows);
			struct row *r = &rows[nrows++];
			r->channel = chans[i];
			stats_chan_collect(conf, chans[i], ns > 1 ? k : -1, now, &r->c);
			r->running = r->c.have_client && strcmp(r->c.client.state, "stopped") &&
				     stats_pid_alive(r->c.client.pid);
		}
	}
	for (int f = 0; f < F_N; f++) {
		head(out, fields[f].name, fields[f].type, fields[f].help);
		for (size_t i = 0; i < nrows; i++) {
			buf_appends(out, fields[f].name);
			labels(out, &rows[i]);
			buf_printf(out, " %lld\n", value(&rows[i], (enum field)f));
		}
	}
	head(out, "tandem_sync_rightnow_waits_total", "counter",
	     "Acknowledgements that waited for the sync_rightnow_channel's replica, by how the wait ended.");
	for (size_t i = 0; i < nrows; i++) {
		const struct row *r = &rows[i];
		if (!r->c.rightnow || r->c.shard > 0)
			continue;
		static const char *const res[] = { "ok", "timeout", "refused" };
		unsigned long long n[] = { r->c.rn_ok, r->c.rn_timeouts, r->c.rn_refused };
		for (int k = 0; k < 3; k++) {
			buf_appends(out, "tandem_sync_rightnow_waits_total{channel=\"");
			stats_prom_label(out, r->channel);
			buf_printf(out, "\",result=\"%s\"} %llu\n", res[k], n[k]);
		}
	}
	for (size_t i = 0; i < nrows; i++)
		stats_chan_free(&rows[i].c);
	free(rows);
	buf_free(&path);
	stats_render_seg(out);
}
