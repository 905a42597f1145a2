/* stats.h: what tandem counts, for the metrics endpoint (metrics_listen,
 * src/tandemd/metricsd.c) and `tandem status`.
 *
 * Each figure is kept where the process that knows it can write it
 * without waiting for anyone:
 *
 * 1. Counters and latency histograms of tandemd's children (LMTP
 *    deliveries and refusals, sessions, failed logins, delivery / fsync /
 *    sync pass latencies): one shared segment, struct stats_seg, that
 *    tandemd maps (mmap MAP_SHARED|MAP_ANONYMOUS, stats_init) before it
 *    forks anything. Every child inherits the mapping and bumps its cells
 *    with atomic adds: no lock, so a child killed in the middle leaves
 *    nothing held. A process without the segment (the `tandem` commands,
 *    unit tests) counts nothing: every stats_count_* / stats_observe call
 *    is then a no-op. The segment lives as long as tandemd, nothing is on
 *    disk: a restart starts the counters at 0 again (Prometheus takes a
 *    counter reset as such).
 * 2. The state of a channel's (or shard's) rolling sync client: the file
 *    client.state in its log directory (<configdir>/sync/<channel>[/<k>]/),
 *    key=value lines written by the client (syncc_publish.c) with a
 *    temporary file and rename (atomic for readers; not fsynced: it is
 *    advisory) at each transition: connecting, connected, backing off
 *    until T, pass done or failed (successful passes: at most one write
 *    a second, the rest counted into the next), stopped; and at most
 *    every STATS_IDLE_REFRESH_S while it waits with nothing to send. It is read
 *    by `tandem status` (tandemd running or not) and at each scrape.
 * 3. tandemd's own state: <configdir>/tandemd.state, the same format: its
 *    pid, start time, version, listeners and its sync clients (pid, or the
 *    restart it waits for and the last exit status), rewritten at each
 *    change (start, a client started or reaped, reload).
 *
 * The change-log figures (pending lines, bytes behind, the oldest pending
 * change) are read from the log files when asked (stats_chan_collect).
 *
 * The HTTP side: stats_http_parse is a bounded, I/O-free parser of one
 * request head (limits in lib/limits.h, METRICS_*): it takes the bytes
 * received so far and says "need more", "done" or "bad (status code)".
 */
#ifndef TANDEM_STATS_H
#define TANDEM_STATS_H

#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"
#include "lib/limits.h"
#include "lib/version.h"

struct conf;

/* ---- the shared segment ---------------------------------------------- */

/* Why an LMTP recipient (or the message for it) was refused. */
enum stats_refuse {
	SR_NO_SUCH_USER,	/* 550 5.1.1 at RCPT */
	SR_BAD_ADDRESS,		/* 501 5.1.3 */
	SR_REPLICA,		/* 451 4.3.0: this instance is a replica */
	SR_TOO_MANY_RCPTS,	/* 452 4.5.3 */
	SR_TOO_BIG,		/* 552 5.3.4 */
	SR_EMPTY,		/* 554 5.6.0 */
	SR_OVER_QUOTA,		/* 452 4.2.2 / 552 5.2.2 */
	SR_NO_SPACE,		/* 452 4.3.1 */
	SR_TEMPORARY,		/* 451 4.3.0: any other failure */
	SR_USER_MOVED,		/* 451 4.2.1: the user is being moved or was moved (move-user) */
	SR_N
};
extern const char *const stats_refuse_names[SR_N];

enum stats_hist { SH_DELIVERY, SH_FSYNC, SH_SYNC_PASS, SH_N };
/* Upper bounds of the histogram buckets, seconds (the +Inf bucket is
 * added): from a fast fsync to a long sync pass. */
#define STATS_NBUCKETS 16
extern const double stats_buckets[STATS_NBUCKETS];

/* The services of tandemd (services.c names them the same). */
#define STATS_NSERVICES 4
extern const char *const stats_service_names[STATS_NSERVICES];
/* Why tandemd refused a connection (tandemd.c refuse_reason). */
#define STATS_NSESSION_REFUSE 3
extern const char *const stats_session_refuse_names[STATS_NSESSION_REFUSE];

/* Seconds between two refreshes of client.state by an idle client. */
#define STATS_IDLE_REFRESH_S 5

/* tandemd, before its first fork: maps the segment (0, or -1 with errno;
 * then nothing is counted) and makes fs_fsync report to it. */
int stats_init(void);
/* 1 when this process has the segment. */
int stats_active(void);

void stats_count_delivered(unsigned long n);
void stats_count_refused(enum stats_refuse r, unsigned long n);
void stats_count_session(const char *service);
void stats_count_session_refused(const char *service, const char *reason);
void stats_set_sessions(const char *service, long n);
void stats_count_auth_failure(const char *service);
void stats_count_scrape(int ok);
void stats_observe(enum stats_hist h, uint64_t ns);

/* Appends the segment's metrics in the Prometheus text format (# HELP,
 * # TYPE, samples); nothing without the segment. */
void stats_render_seg(struct buf *out);

/* ---- HTTP request heads ------------------------------------------------ */

struct stats_http_req {
	char method[8];			/* "GET", "HEAD" */
	char path[METRICS_MAX_TARGET + 1];	/* without the query */
};

/* Parses the head of one HTTP/1.x request at in[0, len): 1 when the head
 * is complete (*req filled, *used_r its bytes including the empty line),
 * 0 when more bytes are needed, -1 when it is not acceptable; then
 * *status_r is the HTTP status to answer (400, 405, 414, 431, 501, 505).
 * Accepts CRLF or LF line ends; refuses a request line or head past the
 * METRICS_* limits, control characters, header continuation lines, a
 * body (Content-Length other than 0, Transfer-Encoding). */
int stats_http_parse(const char *in, size_t len, struct stats_http_req *req, size_t *used_r, int *status_r);

/* ---- state files ----------------------------------------------------- */

/* A rolling sync client's published state (client.state). */
struct stats_client {
	long pid;
	char state[16];		/* connecting connected backoff draining stopped */
	long long since;	/* the state's start, epoch seconds */
	long long backoff_until;	/* state backoff: the next attempt */
	long long connected_since;	/* 0 when not connected */
	long long last_success;	/* the last pass (or check with nothing to send) that succeeded */
	long long last_pass;	/* the last pass, whatever its result */
	unsigned long long bytes_sent;	/* over the client's lives (continued at a start) */
	unsigned long long passes, pass_failures;
	char error[256];	/* the last error ("" after a success) */
};

/* Path of client.state of a channel (shard < 0) or of one shard. */
void stats_client_path(const char *configdir, const char *channel, int shard, struct buf *out);
/* Writes it (tmp + rename, no fsync); 0 or -1 (nothing is logged). */
int stats_client_write(const char *path, const struct stats_client *c);
/* 0 with *c, or -1 when missing or unreadable (*c zeroed). */
int stats_client_read(const char *path, struct stats_client *c);

/* tandemd's state (tandemd.state). */
#define STATS_MAX_LISTENERS 64
#define STATS_MAX_CLIENTS (MAX_CHANNELS * MAX_SYNC_SHARDS)
struct stats_listener {
	char service[16];
	char addr[128];
	int port;
};
struct stats_syncer {
	char channel[MAX_CHANNEL_NAME + 1];
	int shard;		/* -1: an unsharded channel */
	long pid;		/* 0 while not running */
	long long started;
	long long restart_at;	/* when pid is 0: the next start */
	int last_exit;		/* -1: none yet; 128+N: killed by signal N */
	int failures;		/* quick exits in a row (the restart backoff) */
};
struct stats_daemon {
	long pid;
	long long started;
	char version[32];
	char config[512];
	struct stats_listener ls[STATS_MAX_LISTENERS];
	int nls;
	struct stats_syncer sy[STATS_MAX_CLIENTS];
	int nsy;
};
void stats_daemon_path(const char *configdir, struct buf *out);
int stats_daemon_write(const char *path, const struct stats_daemon *d);
int stats_daemon_read(const char *path, struct stats_daemon *d);
/* 1 when pid runs (kill 0, EPERM counts as running). */
int stats_pid_alive(long pid);

/* ---- a channel's figures ------------------------------------------------ */

struct stats_failed {
	char mailbox[MAX_MBOXNAME + 1];
	int attempts;
	long long next_retry;
	char error[256];
};

struct stats_chan {
	int shard;		/* -1: unsharded */
	int nshards;
	long long pending_lines;
	long long bytes_behind;	/* size of log + log-run */
	long long oldest_pending_s;	/* 0 nothing pending, -1 unknown (no birth times) */
	long long oldest_pending_at;	/* epoch seconds of it, 0 when none or unknown */
	struct stats_failed *failed;	/* nfailed, malloc'd */
	size_t nfailed;
	int have_client;	/* client.state was read */
	struct stats_client client;
	long lock_pid;		/* holder of the client lock, 0 none */
	int rightnow;		/* the sync_rightnow_channel */
	unsigned long long rn_ok, rn_timeouts, rn_refused;	/* the channel's */
};

/* The figures of one directory of a channel (shard < 0: the unsharded
 * one); now is epoch seconds. */
void stats_chan_collect(const struct conf *conf, const char *channel, int shard, long long now,
			struct stats_chan *out);
void stats_chan_free(struct stats_chan *c);

/* The whole metrics page: tandemd's info, every channel of the config,
 * the segment. */
void stats_render_all(const struct conf *conf, struct buf *out);

/* Helpers of the text formats. */
/* A Prometheus label value, escaped (\\, \", \n). */
void stats_prom_label(struct buf *out, const char *v);

#endif
