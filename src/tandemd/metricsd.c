/* metricsd.c: the metrics endpoint (metrics_listen), in its own child of
 * tandemd: a scraper, slow or sending garbage, never holds tandemd's main
 * loop. One poll loop over non-blocking sockets: at most
 * METRICS_MAX_CONNS connections at once (more wait in the listen
 * backlog), each closed METRICS_CONN_TIMEOUT_MS after its accept
 * whatever it did, its request head parsed by stats_http_parse (bounded
 * by the METRICS_* limits), one answer, then the connection is closed:
 * our side shut first, then what the client still sends is read and
 * dropped until it closes (at most METRICS_LINGER_MS), so a client that
 * sent more than we read gets the answer, not a reset.
 * The page is made when a request is complete (stats_render_all: the
 * shared segment, the channels' files). tandemd restarts this process if
 * it dies and after a reload (to read the new config).
 */
#include "tandemd/metricsd.h"

#include "conf/conf.h"
#include "lib/limits.h"
#include "lib/log.h"
#include "net/net.h"
#include "server/server.h"
#include "stats/stats.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct mconn {
	int fd;			/* -1: free */
	long long deadline;	/* monotonic ms */
	char in[METRICS_MAX_HEAD + 1];
	size_t len;
	struct buf out;
	size_t off;		/* bytes of out written */
	int writing;
	int lingering;	/* answered, our side shut: reading until the client closes */
	int ok;
};

/* How long a connection that got its answer may take to close its side, ms. */
#define METRICS_LINGER_MS 2000

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int metricsd_listen(const struct conf *conf, int check_only, int *fds, int *n, int max, struct terr *err)
{
	*n = 0;
	const char *addr = conf_str(conf, "metrics_listen");
	if (!addr || !*addr)
		return 0;
	if (addr[0] == '/')
		return terr_set(err, TE_CONFIG, "metrics_listen: host:port expected, not a unix socket (%s)", addr);
	if (!strrchr(addr, ':'))
		return terr_set(err, TE_CONFIG, "metrics_listen: host:port expected (%s)", addr);
	if (check_only)
		return 0;
	if (net_listen(addr, fds, n, max, err) < 0)
		return -1;
	for (int i = 0; i < *n; i++)
		log_info("event=listen service=metrics addr=%s port=%d", addr, net_local_port(fds[i]));
	return 0;
}

static const char *reason_phrase(int status)
{
	switch (status) {
	case 200: return "OK";
	case 400: return "Bad Request";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 414: return "URI Too Long";
	case 431: return "Request Header Fields Too Large";
	case 501: return "Not Implemented";
	case 505: return "HTTP Version Not Supported";
	default: return "Error";
	}
}

static void answer(struct mconn *c, int status, const char *ctype, const struct buf *body, int head_only)
{
	buf_reset(&c->out);
	buf_printf(&c->out, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nConnection: close\r\n",
		   status, reason_phrase(status), ctype, body->len);
	if (status == 405)
		buf_appends(&c->out, "Allow: GET, HEAD\r\n");
	buf_appends(&c->out, "\r\n");
	if (!head_only)
		buf_append(&c->out, body->ptr, body->len);
	c->writing = 1;
	c->off = 0;
	c->ok = status == 200;
}

static void error_answer(struct mconn *c, int status)
{
	struct buf body = BUF_INIT;
	buf_printf(&body, "%d %s\n", status, reason_phrase(status));
	answer(c, status, "text/plain; charset=utf-8", &body, 0);
	buf_free(&body);
}

static void mconn_close(struct mconn *c, const char *why)
{
	if (c->fd < 0)
		return;
	if (why)
		log_info("event=metrics_close reason=%s bytes_in=%zu", why, c->len);
	stats_count_scrape(c->ok);
	close(c->fd);
	c->fd = -1;
	buf_free(&c->out);
}

/* Reads what the client sent; answers once the head is complete. */
static void mconn_read(const struct conf *conf, struct mconn *c)
{
	ssize_t r = recv(c->fd, c->in + c->len, sizeof c->in - 1 - c->len, 0);
	if (r == 0) {
		mconn_close(c, c->len ? "closed_early" : NULL);
		return;
	}
	if (r < 0) {
		if (errno != EAGAIN && errno != EINTR)
			mconn_close(c, "read_error");
		return;
	}
	c->len += (size_t)r;
	struct stats_http_req req;
	size_t used;
	int status;
	int pr = stats_http_parse(c->in, c->len, &req, &used, &status);
	if (pr == 0 && c->len >= sizeof c->in - 1)
		pr = -1, status = 431;	/* a full buffer: the head is METRICS_MAX_HEAD bytes, without its end */
	if (pr < 0) {
		log_info("event=metrics_bad_request status=%d bytes_in=%zu", status, c->len);
		error_answer(c, status);
		return;
	}
	if (pr == 0)
		return;
	if (strcmp(req.path, "/metrics")) {
		error_answer(c, 404);
		return;
	}
	struct buf body = BUF_INIT;
	stats_render_all(conf, &body);
	answer(c, 200, "text/plain; version=0.0.4; charset=utf-8", &body, !strcmp(req.method, "HEAD"));
	buf_free(&body);
	log_debug("event=metrics_scrape bytes=%zu", c->out.len);
}

static void mconn_write(struct mconn *c)
{
	ssize_t w = send(c->fd, c->out.ptr + c->off, c->out.len - c->off, MSG_NOSIGNAL | MSG_DONTWAIT);
	if (w < 0) {
		if (errno != EAGAIN && errno != EINTR)
			mconn_close(c, "write_error");
		return;
	}
	c->off += (size_t)w;
	if (c->off == c->out.len) {
		shutdown(c->fd, SHUT_WR);
		c->writing = 0;
		c->lingering = 1;
		long long until = now_ms() + METRICS_LINGER_MS;
		if (until < c->deadline)
			c->deadline = until;
	}
}

/* After the answer: drops what the client sends until it closes. */
static void mconn_linger(struct mconn *c)
{
	char scratch[4096];
	ssize_t r = recv(c->fd, scratch, sizeof scratch, 0);
	if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR))
		mconn_close(c, NULL);
}

void metricsd_run(const struct conf *conf, const int *lfds, int nl)
{
	static struct mconn conns[METRICS_MAX_CONNS];
	for (int i = 0; i < METRICS_MAX_CONNS; i++)
		conns[i].fd = -1;
	for (int i = 0; i < nl; i++)
		fcntl(lfds[i], F_SETFL, fcntl(lfds[i], F_GETFL) | O_NONBLOCK);
	log_info("event=metrics_start pid=%ld", (long)getpid());
	while (!server_stop_requested) {
		struct pollfd pf[METRICS_MAX_CONNS + 8];
		int map[METRICS_MAX_CONNS + 8];
		int npf = 0, nconn = 0;
		long long now = now_ms(), wait = 500;
		for (int i = 0; i < METRICS_MAX_CONNS; i++) {
			struct mconn *c = &conns[i];
			if (c->fd < 0)
				continue;
			if (now >= c->deadline) {
				mconn_close(c, c->lingering ? NULL : c->writing ? "write_timeout" : "read_timeout");
				continue;
			}
			nconn++;
			if (c->deadline - now < wait)
				wait = c->deadline - now;
			pf[npf] = (struct pollfd){ c->fd, c->writing ? POLLOUT : POLLIN, 0 };
			map[npf++] = i;
		}
		for (int i = 0; i < nl && i < 8 && nconn < METRICS_MAX_CONNS; i++) {
			pf[npf] = (struct pollfd){ lfds[i], POLLIN, 0 };
			map[npf++] = -1 - i;
		}
		int n = poll(pf, (nfds_t)npf, (int)wait);
		if (n <= 0)
			continue;
		for (int k = 0; k < npf; k++) {
			if (!pf[k].revents)
				continue;
			if (map[k] < 0) {
				int fd;
				while (nconn < METRICS_MAX_CONNS &&
				       (fd = accept4(pf[k].fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
					for (int i = 0; i < METRICS_MAX_CONNS; i++)
						if (conns[i].fd < 0) {
							conns[i] = (struct mconn){ .fd = fd, .deadline = now_ms() + METRICS_CONN_TIMEOUT_MS };
							nconn++;
							break;
						}
				}
				continue;
			}
			struct mconn *c = &conns[map[k]];
			if (c->fd < 0)
				continue;
			if (c->lingering)
				mconn_linger(c);
			else if (c->writing)
				mconn_write(c);
			else
				mconn_read(conf, c);
			if (c->fd >= 0 && c->writing)
				mconn_write(c);	/* most answers go out at once */
		}
	}
	for (int i = 0; i < METRICS_MAX_CONNS; i++)
		mconn_close(&conns[i], NULL);
	_exit(0);
}
