/* test_stats.c: the metrics' pieces without a daemon: the HTTP request
 * head parser (whole, one byte at a time, at and past each limit), the
 * shared segment's counters and histograms as Prometheus text, the state
 * files' round trips, the label and JSON escapes. */
#include "stats/stats.h"
#include "test.h"

#include "lib/fsutil.h"

#include <stdlib.h>
#include <unistd.h>

static int parse(const char *s, size_t len, struct stats_http_req *r, size_t *used, int *status)
{
	/* an exact-size copy: ASan sees any read past the input */
	char *copy = malloc(len ? len : 1);
	memcpy(copy, s, len);
	int rc = stats_http_parse(copy, len, r, used, status);
	free(copy);
	return rc;
}

/* Fed one byte more at a time: every prefix before the end of the head
 * needs more, the whole head gives want (and used, when 1). */
static int bytewise(const char *s, int *status_r, size_t *used_r)
{
	size_t len = strlen(s);
	struct stats_http_req r;
	for (size_t i = 0; i <= len; i++) {
		size_t used = 0;
		int st = 0;
		int rc = parse(s, i, &r, &used, &st);
		if (rc != 0) {
			*status_r = st;
			*used_r = rc == 1 ? used : i;
			return rc;
		}
	}
	return 0;
}

TEST(http_good)
{
	struct stats_http_req r;
	size_t used = 0;
	int st = -1;
	const char *req = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:9105\r\nUser-Agent: Prometheus/2.45\r\n"
			  "Accept: text/plain;version=0.0.4;q=1,*/*;q=0.1\r\nX-Prometheus-Scrape-Timeout-Seconds: 10\r\n\r\n";
	CHECK_INT(parse(req, strlen(req), &r, &used, &st), 1);
	CHECK_STR(r.method, "GET");
	CHECK_STR(r.path, "/metrics");
	CHECK_INT(used, strlen(req));
	CHECK_INT(st, 0);
	/* bytes after the head (a pipelined request) are not used */
	char two[512];
	snprintf(two, sizeof two, "%sGET / HTTP/1.1\r\n\r\n", req);
	CHECK_INT(parse(two, strlen(two), &r, &used, &st), 1);
	CHECK_INT(used, strlen(req));
	const char *lf = "HEAD /metrics?x=1 HTTP/1.0\nHost: a\n\n";
	CHECK_INT(parse(lf, strlen(lf), &r, &used, &st), 1);
	CHECK_STR(r.method, "HEAD");
	CHECK_STR(r.path, "/metrics");
	CHECK_INT(used, strlen(lf));
	const char *cl0 = "GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n";
	CHECK_INT(parse(cl0, strlen(cl0), &r, &used, &st), 1);
	CHECK_STR(r.path, "/");
}

TEST(http_bytewise)
{
	int st = 0;
	size_t used = 0;
	const char *req = "GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n";
	CHECK_INT(bytewise(req, &st, &used), 1);
	CHECK_INT(used, strlen(req));
	/* garbage is refused on its first bad byte, not at the limit */
	CHECK_INT(bytewise("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", &st, &used), -1);
	CHECK_INT(st, 400);
	CHECK_INT(used, 1);
	CHECK_INT(bytewise("GET / HTTP/1.1\r\nHo\x01st: x\r\n\r\n", &st, &used), -1);
	CHECK_INT(st, 400);
	CHECK_INT(used, 19);
	/* a bare CR in a line */
	CHECK_INT(bytewise("GET / HTTP/1.1\r\nA: b\rc\r\n\r\n", &st, &used), -1);
	CHECK_INT(st, 400);
	/* the method is judged once its line is complete */
	CHECK_INT(bytewise("POST /metrics HTTP/1.1\r\n\r\n", &st, &used), -1);
	CHECK_INT(st, 405);
	CHECK_INT(used, strlen("POST /metrics HTTP/1.1\r\n"));
}

TEST(http_errors)
{
	struct stats_http_req r;
	size_t used;
	int st;
	static const struct {
		const char *req;
		int status;
	} cases[] = {
		{ "\r\n\r\n", 400 },
		{ "GET\r\n\r\n", 400 },
		{ "GET /\r\n\r\n", 400 },
		{ "GET  / HTTP/1.1\r\n\r\n", 400 },
		{ "GET / HTTP/1.1 x\r\n\r\n", 400 },
		{ "GET metrics HTTP/1.1\r\n\r\n", 400 },
		{ "GET / HTTP/2.0\r\n\r\n", 505 },
		{ "GET / HTTX/1.1\r\n\r\n", 400 },
		{ "G(T / HTTP/1.1\r\n\r\n", 400 },
		{ "DELETE / HTTP/1.1\r\n\r\n", 405 },
		{ "PROPFIND / HTTP/1.1\r\n\r\n", 501 },
		{ "GET /\x7f HTTP/1.1\r\n\r\n", 400 },
		{ "GET / HTTP/1.1\r\n folded\r\n\r\n", 400 },
		{ "GET / HTTP/1.1\r\nNoColon\r\n\r\n", 400 },
		{ "GET / HTTP/1.1\r\n: empty name\r\n\r\n", 400 },
		{ "GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", 400 },
		{ "GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", 400 },
		{ "GET / HTTP/1.1\r\ncontent-length:\r\n\r\n", 400 },
		{ "GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 400 },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		st = 0;
		int rc = parse(cases[i].req, strlen(cases[i].req), &r, &used, &st);
		if (rc != -1 || st != cases[i].status)
			printf("  case %zu: %s\n", i, cases[i].req);
		CHECK_INT(rc, -1);
		CHECK_INT(st, cases[i].status);
	}
}

TEST(http_limits)
{
	struct stats_http_req r;
	size_t used;
	int st;
	struct buf b = BUF_INIT;
	/* the longest target passes, one more byte is 414 */
	buf_appends(&b, "GET /");
	for (int i = 1; i < METRICS_MAX_TARGET; i++)
		buf_putc(&b, 'a');
	buf_appends(&b, " HTTP/1.1\r\n\r\n");
	CHECK_INT(parse(b.ptr, b.len, &r, &used, &st), 1);
	CHECK_INT(strlen(r.path), METRICS_MAX_TARGET);
	buf_reset(&b);
	buf_appends(&b, "GET /");
	for (int i = 0; i < METRICS_MAX_TARGET; i++)
		buf_putc(&b, 'a');
	buf_appends(&b, " HTTP/1.1\r\n\r\n");
	CHECK_INT(parse(b.ptr, b.len, &r, &used, &st), -1);
	CHECK_INT(st, 414);
	/* a request line that never ends: 414 past its limit, not later */
	buf_reset(&b);
	buf_appends(&b, "GET /");
	while (b.len <= METRICS_MAX_REQUEST_LINE)
		buf_putc(&b, 'a');
	CHECK_INT(parse(b.ptr, b.len - 1, &r, &used, &st), 0);
	CHECK_INT(parse(b.ptr, b.len, &r, &used, &st), -1);
	CHECK_INT(st, 414);
	/* header lines: METRICS_MAX_HEADERS pass, one more is 431 */
	for (int extra = 0; extra < 2; extra++) {
		buf_reset(&b);
		buf_appends(&b, "GET / HTTP/1.1\r\n");
		for (int i = 0; i < METRICS_MAX_HEADERS + extra; i++)
			buf_printf(&b, "X-%d: y\r\n", i);
		buf_appends(&b, "\r\n");
		st = 0;
		CHECK_INT(parse(b.ptr, b.len, &r, &used, &st), extra ? -1 : 1);
		CHECK_INT(st, extra ? 431 : 0);
	}
	/* a head past METRICS_MAX_HEAD: 431, even without its end */
	buf_reset(&b);
	buf_appends(&b, "GET / HTTP/1.1\r\nX: ");
	while (b.len <= METRICS_MAX_HEAD)
		buf_putc(&b, 'v');
	CHECK_INT(parse(b.ptr, METRICS_MAX_HEAD, &r, &used, &st), 0);
	CHECK_INT(parse(b.ptr, b.len, &r, &used, &st), -1);
	CHECK_INT(st, 431);
	buf_free(&b);
}

static int has(const struct buf *b, const char *s)
{
	return strstr(buf_cstr((struct buf *)b), s) != NULL;
}

TEST(segment)
{
	struct buf out = BUF_INIT;
	stats_count_delivered(1);	/* before init: nothing, no crash */
	stats_render_seg(&out);
	CHECK_INT(out.len, 0);
	CHECK_INT(stats_active(), 0);
	CHECK_INT(stats_init(), 0);
	CHECK_INT(stats_active(), 1);
	stats_count_delivered(3);
	stats_count_refused(SR_NO_SUCH_USER, 2);
	stats_count_refused(SR_N, 1);	/* out of range: ignored */
	stats_count_session("lmtp");
	stats_count_session("nosuch");
	stats_set_sessions("imap", 7);
	stats_count_session_refused("sync", "host_limit");
	stats_count_auth_failure("imaps");
	stats_observe(SH_DELIVERY, 300000);		/* 0.3 ms: first bucket */
	stats_observe(SH_DELIVERY, 20000000);		/* 20 ms: the 0.025 bucket */
	stats_observe(SH_DELIVERY, 100000000000ULL);	/* 100 s: only +Inf */
	stats_render_seg(&out);
	CHECK(has(&out, "# TYPE tandem_lmtp_delivered_total counter\ntandem_lmtp_delivered_total 3\n"));
	CHECK(has(&out, "tandem_lmtp_refused_total{reason=\"no_such_user\"} 2\n"));
	CHECK(has(&out, "tandem_sessions_total{service=\"lmtp\"} 1\n"));
	CHECK(has(&out, "tandem_sessions{service=\"imap\"} 7\n"));
	CHECK(has(&out, "tandem_sessions_refused_total{service=\"sync\",reason=\"host_limit\"} 1\n"));
	CHECK(has(&out, "tandem_auth_failures_total{service=\"imaps\"} 1\n"));
	CHECK(has(&out, "# TYPE tandem_lmtp_delivery_seconds histogram\n"));
	CHECK(has(&out, "tandem_lmtp_delivery_seconds_bucket{le=\"0.0005\"} 1\n"));
	CHECK(has(&out, "tandem_lmtp_delivery_seconds_bucket{le=\"0.01\"} 1\n"));
	CHECK(has(&out, "tandem_lmtp_delivery_seconds_bucket{le=\"0.025\"} 2\n"));
	CHECK(has(&out, "tandem_lmtp_delivery_seconds_bucket{le=\"60\"} 2\n"));
	CHECK(has(&out, "tandem_lmtp_delivery_seconds_bucket{le=\"+Inf\"} 3\n"));
	CHECK(has(&out, "tandem_lmtp_delivery_seconds_count 3\n"));
	CHECK(has(&out, "tandem_lmtp_delivery_seconds_sum 100.020300000\n"));
	/* fs_fsync reports to the segment once it is there */
	char path[] = "/tmp/test_stats_XXXXXX";
	int fd = mkstemp(path);
	struct terr err;
	CHECK_INT(fs_fsync(fd, path, &err), 0);
	close(fd);
	unlink(path);
	buf_reset(&out);
	stats_render_seg(&out);
	CHECK(has(&out, "tandem_fsync_seconds_count 1\n"));
	buf_free(&out);
}

TEST(state_files)
{
	char dir[] = "/tmp/test_stats_XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	struct buf path = BUF_INIT;
	buf_printf(&path, "%s/client.state", dir);
	struct stats_client c = { 0 }, back;
	CHECK_INT(stats_client_read(path.ptr, &back), -1);
	c.pid = 4242;
	snprintf(c.state, sizeof c.state, "backoff");
	c.since = 100;
	c.backoff_until = 160;
	c.last_success = 90;
	c.last_pass = 95;
	c.bytes_sent = 1ULL << 40;
	c.passes = 12;
	c.pass_failures = 3;
	snprintf(c.error, sizeof c.error, "connect to x: refused\nsecond line");
	CHECK_INT(stats_client_write(path.ptr, &c), 0);
	CHECK_INT(stats_client_read(path.ptr, &back), 0);
	CHECK_INT(back.pid, 4242);
	CHECK_STR(back.state, "backoff");
	CHECK_INT(back.backoff_until, 160);
	CHECK_INT(back.last_success, 90);
	CHECK_U64(back.bytes_sent, 1ULL << 40);
	CHECK_U64(back.passes, 12);
	CHECK_U64(back.pass_failures, 3);
	CHECK_STR(back.error, "connect to x: refused second line");
	struct stats_daemon *d = calloc(2, sizeof *d);
	d[0].pid = 77;
	d[0].started = 1000;
	snprintf(d[0].version, sizeof d[0].version, "%s", TANDEM_VERSION);
	snprintf(d[0].config, sizeof d[0].config, "/etc/tandem.conf");
	d[0].nls = 1;
	snprintf(d[0].ls[0].service, sizeof d[0].ls[0].service, "lmtp");
	snprintf(d[0].ls[0].addr, sizeof d[0].ls[0].addr, "127.0.0.1:24");
	d[0].ls[0].port = 24;
	d[0].nsy = 2;
	d[0].sy[0] = (struct stats_syncer){ "", -1, 0, 5, 65, 137, 2 };
	d[0].sy[1] = (struct stats_syncer){ "repl1", 3, 99, 7, 0, -1, 0 };
	buf_reset(&path);
	stats_daemon_path(dir, &path);
	CHECK_INT(stats_daemon_write(path.ptr, &d[0]), 0);
	CHECK_INT(stats_daemon_read(path.ptr, &d[1]), 0);
	CHECK_INT(d[1].pid, 77);
	CHECK_STR(d[1].version, TANDEM_VERSION);
	CHECK_INT(d[1].nls, 1);
	CHECK_STR(d[1].ls[0].addr, "127.0.0.1:24");
	CHECK_INT(d[1].nsy, 2);
	CHECK_STR(d[1].sy[0].channel, "");
	CHECK_INT(d[1].sy[0].restart_at, 65);
	CHECK_INT(d[1].sy[0].last_exit, 137);
	CHECK_STR(d[1].sy[1].channel, "repl1");
	CHECK_INT(d[1].sy[1].shard, 3);
	CHECK_INT(d[1].sy[1].pid, 99);
	CHECK_INT(stats_pid_alive((long)getpid()), 1);
	CHECK_INT(stats_pid_alive(0), 0);
	unlink(path.ptr);
	buf_reset(&path);
	buf_printf(&path, "%s/client.state", dir);
	unlink(path.ptr);
	rmdir(dir);
	free(d);
	buf_free(&path);
}

TEST(escapes)
{
	struct buf b = BUF_INIT;
	stats_prom_label(&b, "a\"b\\c\nd");
	CHECK_STR(buf_cstr(&b), "a\\\"b\\\\c\\nd");
	buf_reset(&b);
	buf_json_str(&b, "x\"y\\z\n\x01");
	CHECK_STR(buf_cstr(&b), "\"x\\\"y\\\\z\\u000a\\u0001\"");
	buf_free(&b);
}

int main(void)
{
	RUN(http_good);
	RUN(http_bytewise);
	RUN(http_errors);
	RUN(http_limits);
	RUN(segment);
	RUN(state_files);
	RUN(escapes);
	return test_done();
}
