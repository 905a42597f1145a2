/* stats_seg.c: the shared counters segment (see stats.h, point 1) and
 * its part of the metrics page. */
#include "stats/stats.h"

#include "lib/fsutil.h"

#include <string.h>
#include <sys/mman.h>

const char *const stats_refuse_names[SR_N] = {
	"no_such_user", "bad_address", "replica", "too_many_recipients", "too_big",
	"empty", "over_quota", "no_space", "temporary", "user_moved",
};
const double stats_buckets[STATS_NBUCKETS] = {
	0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
};
const char *const stats_service_names[STATS_NSERVICES] = { "imap", "imaps", "lmtp", "sync" };
const char *const stats_session_refuse_names[STATS_NSESSION_REFUSE] = {
	"too_many_sessions", "service_limit", "host_limit",
};

struct stats_hist_cells {
	uint64_t bucket[STATS_NBUCKETS + 1];	/* not cumulative; the last is +Inf */
	uint64_t sum_ns;
};

struct stats_seg {
	uint64_t delivered;
	uint64_t refused[SR_N];
	uint64_t sessions[STATS_NSERVICES];
	int64_t active[STATS_NSERVICES];
	uint64_t session_refused[STATS_NSERVICES][STATS_NSESSION_REFUSE];
	uint64_t auth_failures[STATS_NSERVICES];
	uint64_t scrapes[2];	/* answered 200, answered otherwise */
	struct stats_hist_cells hist[SH_N];
};

static struct stats_seg *seg;

static void on_fsync(uint64_t ns)
{
	stats_observe(SH_FSYNC, ns);
}

int stats_init(void)
{
	if (seg)
		return 0;
	void *p = mmap(NULL, sizeof *seg, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return -1;
	seg = p;	/* anonymous memory comes zeroed */
	fs_set_fsync_observer(on_fsync);
	return 0;
}

int stats_active(void)
{
	return seg != NULL;
}

static void add(uint64_t *cell, uint64_t n)
{
	__atomic_fetch_add(cell, n, __ATOMIC_RELAXED);
}

static uint64_t get(const uint64_t *cell)
{
	return __atomic_load_n(cell, __ATOMIC_RELAXED);
}

static int service_index(const char *service)
{
	for (int i = 0; service && i < STATS_NSERVICES; i++)
		if (!strcmp(stats_service_names[i], service))
			return i;
	return -1;
}

void stats_count_delivered(unsigned long n)
{
	if (seg)
		add(&seg->delivered, n);
}

void stats_count_refused(enum stats_refuse r, unsigned long n)
{
	if (seg && (unsigned)r < SR_N)
		add(&seg->refused[r], n);
}

void stats_count_session(const char *service)
{
	int i = service_index(service);
	if (seg && i >= 0)
		add(&seg->sessions[i], 1);
}

void stats_count_session_refused(const char *service, const char *reason)
{
	int i = service_index(service);
	for (int k = 0; seg && i >= 0 && k < STATS_NSESSION_REFUSE; k++)
		if (!strcmp(stats_session_refuse_names[k], reason))
			add(&seg->session_refused[i][k], 1);
}

void stats_set_sessions(const char *service, long n)
{
	int i = service_index(service);
	if (seg && i >= 0)
		__atomic_store_n(&seg->active[i], (int64_t)n, __ATOMIC_RELAXED);
}

void stats_count_auth_failure(const char *service)
{
	int i = service_index(service);
	if (seg && i >= 0)
		add(&seg->auth_failures[i], 1);
}

void stats_count_scrape(int ok)
{
	if (seg)
		add(&seg->scrapes[ok ? 0 : 1], 1);
}

void stats_observe(enum stats_hist h, uint64_t ns)
{
	if (!seg || (unsigned)h >= SH_N)
		return;
	double s = (double)ns / 1e9;
	int b = 0;
	while (b < STATS_NBUCKETS && s > stats_buckets[b])
		b++;
	add(&seg->hist[h].bucket[b], 1);
	add(&seg->hist[h].sum_ns, ns);
}

static void head(struct buf *out, const char *name, const char *type, const char *help)
{
	buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void hist(struct buf *out, const char *name, const char *help, const struct stats_hist_cells *h)
{
	head(out, name, "histogram", help);
	uint64_t cum = 0;
	for (int b = 0; b <= STATS_NBUCKETS; b++) {
		cum += get(&h->bucket[b]);
		if (b < STATS_NBUCKETS)
			buf_printf(out, "%s_bucket{le=\"%g\"} %llu\n", name, stats_buckets[b], (unsigned long long)cum);
		else
			buf_printf(out, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)cum);
	}
	buf_printf(out, "%s_sum %.9f\n%s_count %llu\n", name, (double)get(&h->sum_ns) / 1e9, name,
		   (unsigned long long)cum);
}

void stats_render_seg(struct buf *out)
{
	if (!seg)
		return;
	head(out, "tandem_lmtp_delivered_total", "counter", "LMTP recipients whose copy was stored (250 after DATA).");
	buf_printf(out, "tandem_lmtp_delivered_total %llu\n", (unsigned long long)get(&seg->delivered));
	head(out, "tandem_lmtp_refused_total", "counter",
	     "LMTP recipients refused, at RCPT or after DATA, by reason.");
	for (int r = 0; r < SR_N; r++)
		buf_printf(out, "tandem_lmtp_refused_total{reason=\"%s\"} %llu\n", stats_refuse_names[r],
			   (unsigned long long)get(&seg->refused[r]));
	head(out, "tandem_sessions_total", "counter", "Sessions tandemd started, by service.");
	for (int i = 0; i < STATS_NSERVICES; i++)
		buf_printf(out, "tandem_sessions_total{service=\"%s\"} %llu\n", stats_service_names[i],
			   (unsigned long long)get(&seg->sessions[i]));
	head(out, "tandem_sessions", "gauge", "Sessions running now, by service.");
	for (int i = 0; i < STATS_NSERVICES; i++)
		buf_printf(out, "tandem_sessions{service=\"%s\"} %lld\n", stats_service_names[i],
			   (long long)__atomic_load_n(&seg->active[i], __ATOMIC_RELAXED));
	head(out, "tandem_sessions_refused_total", "counter",
	     "Connections tandemd refused at a session limit, by service and limit.");
	for (int i = 0; i < STATS_NSERVICES; i++)
		for (int k = 0; k < STATS_NSESSION_REFUSE; k++)
			buf_printf(out, "tandem_sessions_refused_total{service=\"%s\",reason=\"%s\"} %llu\n",
				   stats_service_names[i], stats_session_refuse_names[k],
				   (unsigned long long)get(&seg->session_refused[i][k]));
	head(out, "tandem_auth_failures_total", "counter", "Failed logins, by service.");
	for (int i = 0; i < STATS_NSERVICES; i++)
		buf_printf(out, "tandem_auth_failures_total{service=\"%s\"} %llu\n", stats_service_names[i],
			   (unsigned long long)get(&seg->auth_failures[i]));
	head(out, "tandem_metrics_requests_total", "counter",
	     "Requests to the metrics endpoint, by result (ok: a page was sent).");
	buf_printf(out, "tandem_metrics_requests_total{result=\"ok\"} %llu\n", (unsigned long long)get(&seg->scrapes[0]));
	buf_printf(out, "tandem_metrics_requests_total{result=\"error\"} %llu\n",
		   (unsigned long long)get(&seg->scrapes[1]));
	hist(out, "tandem_lmtp_delivery_seconds",
	     "Time to store one LMTP message for all its recipients (durable, change log included).",
	     &seg->hist[SH_DELIVERY]);
	hist(out, "tandem_fsync_seconds", "Time of each fsync of tandemd's children (files, directories, logs).",
	     &seg->hist[SH_FSYNC]);
	hist(out, "tandem_sync_pass_duration_seconds",
	     "Time of each rolling sync pass that sent a change log (every channel and shard).",
	     &seg->hist[SH_SYNC_PASS]);
}
