/* tandemd.c: the master process of one tandem instance.
 *
 * States of the master:
 *   START -> RUNNING: config loaded, every listener open, pid file written
 *   RUNNING: accept -> unless a limit refuses it (each service's
 *            <service>_maxchild, whose sum stays within MAX_SESSIONS so
 *            every service keeps room; maxperhost sessions of one client
 *            address per service), hand the connection to an idle
 *            session process of its service (the last to serve that
 *            client address, else the last to go idle: hand_to_idle),
 *            else fork one for it
 *            a session process's notice "idle" (its session ended
 *            cleanly, server_reuse_check) -> it waits for the next
 *            connection of its service; it is let go (its control
 *            socket closed: it exits) when it has waited spare_timeout,
 *            when maxspare are idle already, or when it was forked
 *            before the last reload (it runs the old config). A process
 *            serves maxuse connections at most (it counts, and exits).
 *            SIGHUP -> config re-read (listeners stay), logs reopened,
 *                      idle session processes let go (busy ones exit
 *                      after their session),
 *                      sync clients restarted with the new config: one
 *                      started for a channel added, stopped for one removed
 *                      (a channel of N shards has N clients, one per
 *                      shard, each restarted on its own; a shard gone by
 *                      a lower count is stopped like a removed channel:
 *                      it drains its log first)
 *            SIGCHLD -> children reaped
 *            a session's question to the login cache -> answered
 *                     (server_authcache.h: tandemd holds the cache; each
 *                     IMAP session gets a socketpair to it at its fork)
 *   RUNNING --SIGTERM/SIGINT--> STOPPING: listeners closed, idle session
 *            processes let go, SIGTERM sent to
 *            every session (each finishes its current command: a delivery
 *            in progress completes), wait up to shutdown_timeout, then
 *            SIGKILL what is left, remove the pid file, exit 0.
 * A session that crashes takes only itself down: the master logs the
 * child's status and goes on.
 */
#include "conf/conf.h"
#include "lib/fsutil.h"
#include "lib/limits.h"
#include "lib/log.h"
#include "lib/xalloc.h"
#include "net/conn.h"
#include "net/net.h"
#include "server/server.h"
#include "server/server_authcache.h"
#include "store/store.h"
#include "chlog/chlog.h"
#include "names/mboxname.h"
#include "sync/sync_client.h"
#include "sync/sync_rightnow.h"
#include "stats/stats.h"
#include "tandemd/metricsd.h"
#include "tandemd/services.h"

#include <errno.h>
#include <openssl/ssl.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_LISTENERS 64
/* Seconds SIGTERM waits for sessions to finish before SIGKILL. */
#define SHUTDOWN_TIMEOUT_S 30

struct listener {
	int fd;
	const struct service *svc;
	char addr[256];
};

/* A session process: its service (index in services[]) and client
 * address, for the per-service and per-host limits. */
enum slot_state {
	SLOT_BUSY,	/* serving a connection: counts for the limits */
	SLOT_IDLE,	/* waiting for the next connection of its service */
	SLOT_GONE,	/* let go (its control socket closed): exiting */
};
struct session_slot {
	pid_t pid;	/* 0: free */
	int svc;
	enum slot_state state;
	char addr[64];	/* its client's, "" while not busy */
	int authfd;	/* tandemd's end of its login-cache socket, -1: none */
	unsigned asks;	/* questions its current session asked the cache */
	int ctlfd;	/* tandemd's end of its control socket (server_reuse_*),
			 * -1: it serves one connection */
	unsigned gen;	/* the config generation it was forked with */
	long long idle_since;	/* CLOCK_MONOTONIC ms */
	unsigned long long idle_seq;	/* order of the idle notices */
	char last_addr[64];	/* the client address of its last session */
};

/* Slots of session processes: MAX_SESSIONS busy at most, plus idle ones
 * (a service's busy + idle stay within its maxchild: tandemd forks only
 * when none of the service is idle) and those let go but not reaped yet. */
#define SESSION_SLOTS (2 * MAX_SESSIONS)

/* One rolling sync client per channel that has a replica configured,
 * or per shard of a sharded channel (<channel>_sync_shards). */
struct syncer {
	char channel[MAX_CHANNEL_NAME + 1];
	int shard;		/* 0 .. nshards - 1 */
	int nshards;
	char label[24];		/* "" or " shard=K", for the logs */
	int removed;		/* reload_syncers: matched (or not to keep) */
	pid_t pid;		/* 0 while not running */
	time_t started;
	time_t restart_at;
	int failures;
	int last_exit;		/* -1 none yet, else the status (128+N: signal N) */
};

/* A sync client that ran this long, seconds, counts as having started
 * well: its next failure starts the restart backoff over. */
#define SYNCER_STABLE_S 60
/* Cap of the restart backoff of a sync client that keeps exiting, seconds. */
#define SYNCER_BACKOFF_MAX_S 60
/* How long a starting tandemd lets a stale sync client (left by a killed
 * tandemd) finish on SIGTERM before SIGKILL, ms. */
#define STALE_SYNCER_WAIT_MS 10000
/* Exit status of a sync client that found its lock taken. */
#define SYNCER_EXIT_LOCKED 3
/* Sync clients of one instance at most. */
#define MAX_SYNCERS (MAX_CHANNELS * CHLOG_MAX_SHARDS)

struct master {
	const char *conf_path;
	struct conf *conf;
	SSL_CTX *tls;
	struct listener ls[MAX_LISTENERS];
	int nls;
	int nchildren;		/* session processes (busy, idle, exiting) */
	int nbusy;		/* connections being served */
	int nidle[MAX_LISTENERS];	/* idle processes per service */
	unsigned long long idle_seq;	/* idle notices so far (session_slot.idle_seq) */
	unsigned gen;		/* config generation: bumped by each reload */
	int nctlfds;		/* sessions[].ctlfd open */
	unsigned long counter;
	char pidfile[4096];
	struct syncer syncers[MAX_SYNCERS];
	int nsyncers;
	struct syncer retired[MAX_SYNCERS];	/* of removed channels and shards, until reaped */
	int nretired;
	struct session_slot *sessions;	/* SESSION_SLOTS: the limits, the final SIGKILL */
	int nsvc[MAX_LISTENERS];	/* busy sessions per service (index in services[]) */
	pid_t pid;		/* tandemd's own, for server_child_init */
	/* the metrics endpoint (metricsd.c): its sockets and its process */
	int mfds[8];
	int nmfds;
	pid_t metrics_pid;
	time_t metrics_restart_at;
	time_t started;
	struct server_authcache *authcache;	/* NULL: auth_cache_size 0 */
	long long authcache_size;	/* the auth_cache_size it was made for */
	int nauthfds;		/* sessions[].authfd open */
};

/* In a child right after fork: no copy of the login cache, no other
 * session's socket to it or to tandemd. */
static void child_drop_authcache(struct master *m)
{
	server_authcache_forget(&m->authcache);
	for (int i = 0, left = m->nauthfds + m->nctlfds; i < SESSION_SLOTS && left > 0; i++) {
		if (m->sessions[i].authfd >= 0) {
			close(m->sessions[i].authfd);
			left--;
		}
		if (m->sessions[i].ctlfd >= 0) {
			close(m->sessions[i].ctlfd);
			left--;
		}
	}
}

static int sigpipe_fds[2] = { -1, -1 };

static void on_signal(int sig)
{
	int saved = errno;
	unsigned char b = (unsigned char)sig;
	if (write(sigpipe_fds[1], &b, 1) < 0) {
		/* the pipe is full: a signal of each kind is already queued */
	}
	errno = saved;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: tandemd [-C CONFIG] [-f] [-n]\n"
		   "  -C CONFIG  configuration file (default $TANDEM_CONF, else /etc/tandem.conf)\n"
		   "  -f         stay in the foreground (for systemd)\n"
		   "  -n         check what a start checks (config, TLS, pid file directory, each\n"
		   "             listener bound and closed at once), then exit: 0 OK, 2 not\n");
}

static void open_logs(struct conf *conf)
{
	const char *lvl = conf_str(conf, "loglevel");
	enum log_level l = LOG_LVL_INFO;
	static const char *const names[] = { "debug", "info", "notice", "warn", "error" };
	for (int i = 0; i < 5; i++)
		if (lvl && !strcmp(lvl, names[i]))
			l = (enum log_level)i;
	const char *ident = conf_str(conf, "syslog_prefix");
	log_open(ident && *ident ? ident : "tandemd", conf_bool(conf, "syslog"), l);
}

static pid_t running_tandemd(struct master *m);
static void pidfile_path(struct master *m);

/* -n's check of one listening address: a TCP address is bound and
 * closed at once (a port in use by this instance's running tandemd is
 * fine; one in use by anything else, or refused, fails as a start would);
 * a unix socket needs a directory tandemd can create it in. */
static int try_listen(struct master *m, const char *addr, struct terr *err)
{
	if (addr[0] == '/') {
		char dir[4096];
		snprintf(dir, sizeof dir, "%s", addr);
		char *slash = strrchr(dir, '/');
		if (slash == dir)
			slash[1] = '\0';
		else
			*slash = '\0';
		if (access(dir, W_OK | X_OK) < 0)
			return terr_errno(err, errno, "listen on %s: directory %s", addr, dir);
		return 0;
	}
	int fds[8], nf = 0;
	struct terr e2 = { 0 };
	int rc = net_listen(addr, fds, &nf, 8, &e2);
	for (int k = 0; k < nf; k++)
		close(fds[k]);
	/* terr_errno ends the message with strerror(errno) */
	if (rc < 0 && !(strstr(e2.msg, strerror(EADDRINUSE)) && running_tandemd(m))) {
		*err = e2;
		if (strstr(e2.msg, strerror(EACCES)))
			terr_set(err, TE_CONFIG, "%s (a port below 1024 needs root or CAP_NET_BIND_SERVICE)", e2.msg);
		return -1;
	}
	return 0;
}

static int open_listeners(struct master *m, int check_only, struct terr *err)
{
	for (size_t s = 0; s < nservices; s++) {
		const struct service *svc = &services[s];
		const char *const *addrs;
		size_t n = conf_list(m->conf, svc->listen_key, &addrs);
		for (size_t i = 0; i < n; i++) {
			if (svc->implicit_tls && !m->tls)
				return terr_set(err, TE_CONFIG, "%s is set but tls_server_cert/tls_server_key are not",
						svc->listen_key);
			if (check_only) {
				if (try_listen(m, addrs[i], err) < 0)
					return -1;
				continue;
			}
			int fds[8], nf = 0;
			if (net_listen(addrs[i], fds, &nf, 8, err) < 0)
				return -1;
			for (int k = 0; k < nf; k++) {
				if (m->nls >= MAX_LISTENERS)
					return terr_set(err, TE_CONFIG, "more than %d listening sockets", MAX_LISTENERS);
				struct listener *l = &m->ls[m->nls++];
				l->fd = fds[k];
				l->svc = svc;
				snprintf(l->addr, sizeof l->addr, "%s", addrs[i]);
				log_info("event=listen service=%s addr=%s port=%d", svc->name, addrs[i],
					 net_local_port(fds[k]));
			}
		}
	}
	return 0;
}

static int load_tls(struct master *m, struct terr *err)
{
	const char *cert = conf_str(m->conf, "tls_server_cert");
	const char *key = conf_str(m->conf, "tls_server_key");
	if (!cert || !*cert)
		return 0;
	m->tls = tls_server_ctx(cert, key && *key ? key : cert, err);
	return m->tls ? 0 : -1;
}

/* The session limits of a config: each service's maxchild, whose sum must
 * stay within MAX_SESSIONS (so no service can starve another). */
static int check_limits(const struct conf *conf, struct terr *err)
{
	long long sum = 0;
	for (size_t s = 0; s < nservices; s++)
		sum += conf_int(conf, services[s].maxchild_key);
	if (sum > MAX_SESSIONS)
		return terr_set(err, TE_CONFIG, "imap_maxchild + imaps_maxchild + lmtp_maxchild + sync_maxchild = %lld,"
				" more than the %d sessions of one tandemd", sum, MAX_SESSIONS);
	return 0;
}

/* Work of a config: its listening addresses, and whether a channel has a
 * replica (a sync client to run). */
static size_t count_listeners(const struct conf *conf)
{
	size_t n = 0;
	for (size_t s = 0; s < nservices; s++) {
		const char *const *addrs;
		n += conf_list(conf, services[s].listen_key, &addrs);
	}
	return n;
}

static int has_replica(const struct conf *conf)
{
	if (!conf_bool(conf, "sync_log"))
		return 0;
	const char *const *chans;
	size_t n = conf_log_channels(conf, &chans);
	for (size_t i = 0; i < n; i++) {
		const char *host = conf_chan_str(conf, chans[i], "sync_host");
		if (host && *host)
			return 1;
	}
	return 0;
}

/* Everything a start checks before it serves, shared by -n (check_only:
 * the listeners are tried, not kept) and a start, so that -n fails
 * whenever a start would. */
static int validate(struct master *m, int check_only, struct terr *err)
{
	if (check_limits(m->conf, err) < 0 || load_tls(m, err) < 0)
		return -1;
	if (count_listeners(m->conf) == 0 && !has_replica(m->conf))
		return terr_set(err, TE_CONFIG, "nothing to serve: no listener (imap_listen, imaps_listen, lmtp_listen,"
				" sync_listen) and no channel with a sync_host");
	pidfile_path(m);
	char dir[sizeof m->pidfile];
	snprintf(dir, sizeof dir, "%s", m->pidfile);
	char *slash = strrchr(dir, '/');
	if (slash && slash != dir)
		*slash = '\0';
	if (slash && access(dir, W_OK | X_OK) < 0)
		return terr_errno(err, errno, "pid file %s: directory %s", m->pidfile, dir);
	if (open_listeners(m, check_only, err) < 0 ||
	    metricsd_listen(m->conf, check_only, m->mfds, &m->nmfds, 8, err) < 0)
		return -1;
	const char *maddr = conf_str(m->conf, "metrics_listen");
	if (check_only && maddr && *maddr && try_listen(m, maddr, err) < 0)
		return -1;
	return 0;
}

/* Keys of a Cyrus config tandem does not use: one warning each. */
static void report_ignored(const struct conf *conf, int to_stderr)
{
	for (size_t i = 0; i < conf_nignored(conf); i++) {
		int line;
		const char *note;
		const char *key = conf_ignored(conf, i, &line, &note);
		if (to_stderr)
			fprintf(stderr, "tandemd: warning: %s:%d: %s: %s\n", conf_path(conf), line, key, note);
		else
			log_warn("event=config_ignored file=%s line=%d option=%s note=\"%s\"", conf_path(conf), line, key,
				 note);
	}
}

/* In a child: the listeners it does not serve. */
static void close_metrics_fds(struct master *m)
{
	for (int i = 0; i < m->nmfds; i++)
		close(m->mfds[i]);
}

/* A session process: serves the connection fd, then, while its sessions
 * end cleanly and tandemd gives it more (ctlfds[1] >= 0), the next ones
 * of its service, maxuse in all (server_reuse_*). */
static void run_session(struct master *m, struct listener *l, int fd, const char *addr, const int authfds[2],
			const int ctlfds[2])
{
	for (int i = 0; i < m->nls; i++)
		close(m->ls[i].fd);
	close_metrics_fds(m);
	close(sigpipe_fds[0]);
	close(sigpipe_fds[1]);
	child_drop_authcache(m);
	if (authfds[0] >= 0)
		close(authfds[0]);
	if (ctlfds[0] >= 0)
		close(ctlfds[0]);
	server_session_signals();
	server_child_init(m->pid);
	const struct service *svc = l->svc;
	long long maxuse = ctlfds[1] >= 0 ? conf_int(m->conf, "maxuse") : 1;
	/* a process that serves several sessions keeps users.db and its
	 * recent users' databases open between them (store.h) */
	if (maxuse > 1)
		store_keep_enable(STORE_KEEP_MAX);
	struct server_reuse guard;
	server_reuse_begin(&guard, authfds[1]);
	struct server_handoff h = { .counter = m->counter };
	snprintf(h.peer_addr, sizeof h.peer_addr, "%s", addr);
	for (long long use = 1;; use++) {
		struct service_env env = { 0 };
		env.conf = m->conf;
		env.conf_path = m->conf_path;
		env.service = svc->name;
		env.tls = m->tls;
		env.implicit_tls = svc->implicit_tls;
		snprintf(env.session_id, sizeof env.session_id, "%lx-%lx", (unsigned long)m->pid, h.counter);
		struct buf peer = BUF_INIT;
		net_peer_name(fd, &peer);
		snprintf(env.peer, sizeof env.peer, "%s", peer.ptr);
		buf_free(&peer);
		snprintf(env.peer_addr, sizeof env.peer_addr, "%s", h.peer_addr);
		env.authcache_fd = authfds[1] > 0 ? authfds[1] : 0;
		server_preauth_arm_mode(conf_duration_ms(m->conf, "preauth_timeout"), svc->server_preauth);
		struct conn *c = conn_new(fd);
		int rc = svc->session(&env, c);
		conn_free(&c);
		if (rc != 0)
			_exit(rc == SERVER_SESSION_LAST ? 0 : 1);
		if (use >= maxuse)
			_exit(0);
		if (!server_reuse_check(&guard)) {
			log_msg(strcmp(guard.why, "fd_leak") ? LOG_LVL_INFO : LOG_LVL_WARN,
				"event=session_process_exit service=%s uses=%lld reason=%s", svc->name, use, guard.why);
			_exit(0);
		}
		server_reuse_reset();
		if (server_reuse_wait(ctlfds[1], &fd, &h) <= 0)
			_exit(0);
	}
}

static void find_syncers(struct master *m)
{
	m->nsyncers = 0;
	if (!conf_bool(m->conf, "sync_log"))
		return;
	/* a replica (tandem failover) sends nothing, unless it is a link of
	 * a chain */
	if (server_role_get(m->conf) == ROLE_REPLICA && !conf_bool(m->conf, "sync_log_chain"))
		return;
	const char *const *chans;
	size_t n = conf_log_channels(m->conf, &chans);
	for (size_t i = 0; i < n; i++) {
		const char *host = conf_chan_str(m->conf, chans[i], "sync_host");
		if (!host || !*host)
			continue;
		int nshards = syncc_channel_shards(m->conf, chans[i]);
		for (int k = 0; k < nshards && m->nsyncers < MAX_SYNCERS; k++) {
			struct syncer *sy = &m->syncers[m->nsyncers++];
			memset(sy, 0, sizeof *sy);
			snprintf(sy->channel, sizeof sy->channel, "%s", chans[i]);
			sy->last_exit = -1;
			sy->shard = k;
			sy->nshards = nshards;
			if (nshards > 1)
				snprintf(sy->label, sizeof sy->label, " shard=%d", k);
			sy->restart_at = time(NULL);
		}
	}
}

/* Tells every process that writes the change log which channels are
 * live (chlog.h): a channel added by a reload is logged from now on. */
static void publish_channels(struct master *m)
{
	if (!conf_bool(m->conf, "sync_log"))
		return;
	const char *const *chans;
	size_t n = conf_log_channels(m->conf, &chans);
	unsigned shards[MAX_CHANNELS];
	for (size_t i = 0; i < n && i < MAX_CHANNELS; i++)
		shards[i] = (unsigned)syncc_channel_shards(m->conf, chans[i]);
	struct terr err = { 0 };
	if (chlog_write_channels_shards(conf_str(m->conf, "configdirectory"), chans, shards,
					n < MAX_CHANNELS ? n : MAX_CHANNELS, &err) < 0)
		log_err("event=channels_fail error=\"%s\"", err.msg);
}

/* After a reload: the running clients are restarted (with the new
 * config), a client is started for a channel (or shard) that appeared,
 * and the client of a channel (or shard) that went away is stopped: on
 * SIGTERM it sends what its log holds, then exits. A changed shard count
 * is "drain then change" (docs/replication.md): shard 0's client replays
 * whatever the old layout still holds. */
static void reload_syncers(struct master *m)
{
	static struct syncer old[MAX_SYNCERS];
	int nold = m->nsyncers;
	memcpy(old, m->syncers, sizeof old);
	find_syncers(m);
	for (int i = 0; i < m->nsyncers; i++) {
		struct syncer *sy = &m->syncers[i];
		for (int j = 0; j < nold; j++) {
			if (old[j].removed || strcmp(old[j].channel, sy->channel) || old[j].shard != sy->shard)
				continue;
			if (old[j].nshards != sy->nshards && sy->shard == 0)
				log_notice("event=channel_reshard channel=%s shards=%d old_shards=%d", sy->channel,
					   sy->nshards, old[j].nshards);
			int shard = sy->shard, nshards = sy->nshards;
			char label[sizeof sy->label];
			memcpy(label, sy->label, sizeof label);
			*sy = old[j];
			sy->shard = shard;
			sy->nshards = nshards;
			memcpy(sy->label, label, sizeof label);
			old[j].removed = 1;
			if (sy->pid) {
				kill(sy->pid, SIGTERM);
				log_info("event=sync_client_restart channel=%s pid=%ld%s reason=reload", sy->channel,
					 (long)sy->pid, sy->label);
			}
			break;
		}
		if (!sy->pid && !sy->restart_at)
			sy->restart_at = time(NULL);
	}
	for (int j = 0; j < nold; j++) {
		if (old[j].removed)
			continue;
		if (old[j].shard == 0)
			log_notice("event=channel_removed channel=%s pid=%ld", old[j].channel, (long)old[j].pid);
		else
			log_notice("event=shard_removed channel=%s pid=%ld%s", old[j].channel, (long)old[j].pid,
				   old[j].label);
		if (old[j].pid && m->nretired < MAX_SYNCERS) {
			kill(old[j].pid, SIGTERM);
			m->retired[m->nretired++] = old[j];
		}
	}
}

/* sync_rightnow_channel waits only for a channel that is logged to. */
static void warn_rightnow(const struct master *m)
{
	const char *rn;
	if (!sync_rightnow_channel(m->conf, &rn))
		return;
	const char *const *chans;
	size_t n = conf_bool(m->conf, "sync_log") ? conf_log_channels(m->conf, &chans) : 0;
	for (size_t i = 0; i < n; i++)
		if (sync_rightnow_is(m->conf, chans[i]))
			return;
	log_warn("event=config_warning option=sync_rightnow_channel channel=%s note=\"not a channel of"
		 " sync_log_channels (or sync_log is off): nothing waits for it\"", *rn ? rn : "\"\"");
}

static void run_syncer(struct master *m, struct syncer *sy)
{
	for (int i = 0; i < m->nls; i++)
		close(m->ls[i].fd);
	close_metrics_fds(m);
	close(sigpipe_fds[0]);
	close(sigpipe_fds[1]);
	child_drop_authcache(m);
	server_session_signals();
	server_child_init(m->pid);
	struct terr err = { 0 };
	int lockfd;
	pid_t holder;
	int lr = server_syncc_lock(m->conf, sy->channel, sy->shard, &lockfd, &holder, &err);
	if (lr != 0) {
		if (lr > 0)
			log_err("event=sync_client_locked channel=%s%s holder_pid=%ld note=\"another sync client runs"
				" this channel\"", sy->channel, sy->label, (long)holder);
		else
			log_err("event=sync_client_fail channel=%s%s error=\"%s\"", sy->channel, sy->label, err.msg);
		_exit(lr > 0 ? SYNCER_EXIT_LOCKED : 1);
	}
	struct store *st = NULL;
	struct chlog *log = NULL;
	struct mboxname_ns ns;
	if (server_open_store(m->conf, &st, &log, &ns, &err) < 0) {
		log_err("event=sync_client_fail channel=%s%s error=\"%s\"", sy->channel, sy->label, err.msg);
		_exit(1);
	}
	struct syncc_opts o = { .channel = sy->channel, .shard = sy->shard,
				.stop = (volatile int *)&server_stop_requested };
	struct syncc *sc = syncc_new(m->conf, st, &o);
	int rc = syncc_rolling(sc, 0, &err);
	if (rc < 0)
		log_err("event=sync_client_fail channel=%s%s error=\"%s\"", sy->channel, sy->label, err.msg);
	syncc_free(&sc);
	store_close(&st);
	chlog_close(&log);
	_exit(rc < 0 ? 1 : 0);
}

/* <configdir>/tandemd.state (src/stats/stats.h, point 3): for tandem
 * status and the metrics page; rewritten at each change of a client. */
static void write_state(struct master *m)
{
	struct stats_daemon *d = xcalloc(1, sizeof *d);
	d->pid = (long)getpid();
	d->started = (long long)m->started;
	snprintf(d->version, sizeof d->version, "%s", TANDEM_VERSION);
	snprintf(d->config, sizeof d->config, "%s", m->conf_path);
	for (int i = 0; i < m->nls && d->nls < STATS_MAX_LISTENERS; i++, d->nls++) {
		snprintf(d->ls[d->nls].service, sizeof d->ls[d->nls].service, "%s", m->ls[i].svc->name);
		snprintf(d->ls[d->nls].addr, sizeof d->ls[d->nls].addr, "%s", m->ls[i].addr);
		d->ls[d->nls].port = net_local_port(m->ls[i].fd);
	}
	for (int i = 0; i < m->nmfds && d->nls < STATS_MAX_LISTENERS; i++, d->nls++) {
		snprintf(d->ls[d->nls].service, sizeof d->ls[d->nls].service, "metrics");
		snprintf(d->ls[d->nls].addr, sizeof d->ls[d->nls].addr, "%s", conf_str(m->conf, "metrics_listen"));
		d->ls[d->nls].port = net_local_port(m->mfds[i]);
	}
	for (int i = 0; i < m->nsyncers && d->nsy < STATS_MAX_CLIENTS; i++) {
		const struct syncer *sy = &m->syncers[i];
		struct stats_syncer *o = &d->sy[d->nsy++];
		snprintf(o->channel, sizeof o->channel, "%s", sy->channel);
		o->shard = sy->nshards > 1 ? sy->shard : -1;
		o->pid = (long)sy->pid;
		o->started = (long long)sy->started;
		o->restart_at = sy->pid ? 0 : (long long)sy->restart_at;
		o->last_exit = sy->last_exit;
		o->failures = sy->failures;
	}
	struct buf path = BUF_INIT;
	stats_daemon_path(conf_str(m->conf, "configdirectory"), &path);
	if (stats_daemon_write(path.ptr, d) < 0)
		log_warn("event=state_write_fail path=%s error=\"%s\"", path.ptr, strerror(errno));
	buf_free(&path);
	free(d);
}

/* The metrics endpoint's process (metricsd.c), when metrics_listen is
 * set: started at once, again a second after it exits. */
static void start_metrics(struct master *m)
{
	if (!m->nmfds || m->metrics_pid || m->metrics_restart_at > time(NULL))
		return;
	pid_t pid = fork();
	if (pid < 0) {
		log_err("event=fork_fail error=\"%s\"", strerror(errno));
		m->metrics_restart_at = time(NULL) + 1;
		return;
	}
	if (pid == 0) {
		for (int i = 0; i < m->nls; i++)
			close(m->ls[i].fd);
		close(sigpipe_fds[0]);
		close(sigpipe_fds[1]);
		child_drop_authcache(m);	/* it faces strangers too */
		server_session_signals();
		server_child_init(m->pid);
		metricsd_run(m->conf, m->mfds, m->nmfds);
	}
	m->metrics_pid = pid;
}

static void start_due_syncers(struct master *m)
{
	time_t now = time(NULL);
	int started = 0;
	for (int i = 0; i < m->nsyncers; i++) {
		struct syncer *sy = &m->syncers[i];
		if (sy->pid || sy->restart_at > now)
			continue;
		pid_t pid = fork();
		if (pid < 0) {
			log_err("event=fork_fail error=\"%s\"", strerror(errno));
			sy->restart_at = now + 1;
			continue;
		}
		if (pid == 0)
			run_syncer(m, sy);
		sy->pid = pid;
		sy->started = now;
		started = 1;
		log_info("event=sync_client_start channel=%s pid=%ld%s", sy->channel, (long)pid, sy->label);
	}
	if (started)
		write_state(m);
}

/* Milliseconds until the next sync client is due, or -1 for none. */
static int next_syncer_ms(const struct master *m)
{
	int best = -1;
	time_t now = time(NULL);
	for (int i = 0; i < m->nsyncers; i++) {
		if (m->syncers[i].pid)
			continue;
		int ms = m->syncers[i].restart_at > now ? (int)(m->syncers[i].restart_at - now) * 1000 : 0;
		if (best < 0 || ms < best)
			best = ms;
	}
	return best;
}

static long long mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Answers what a session process asked the login cache and has not been
 * answered yet: its last add may still be waiting (the login it verified,
 * then a quick LOGOUT). */
static void drain_authfd(struct master *m, struct session_slot *ss)
{
	while (server_authcache_serve(m->authcache, ss->authfd, &ss->asks, conf_duration_ms(m->conf, "auth_cache_ttl")) >
	       0) {
	}
}

/* Lets a session process go: its control socket closed (an idle one
 * reads EOF and exits; a busy one exits after its session). */
static void let_go(struct master *m, struct session_slot *ss)
{
	if (ss->state == SLOT_IDLE) {
		m->nidle[ss->svc]--;
		ss->state = SLOT_GONE;
	}
	if (ss->ctlfd >= 0) {
		close(ss->ctlfd);
		ss->ctlfd = -1;
		m->nctlfds--;
	}
}

/* The connection of a busy session process ended: it no longer counts
 * for the limits. */
static void session_ended(struct master *m, struct session_slot *ss)
{
	m->nsvc[ss->svc]--;
	m->nbusy--;
	stats_set_sessions(services[ss->svc].name, m->nsvc[ss->svc]);
	memcpy(ss->last_addr, ss->addr, sizeof ss->last_addr);
	ss->addr[0] = '\0';
	ss->state = SLOT_GONE;
}

/* A busy session process says its session ended cleanly and it is idle:
 * it waits for the next connection of its service, or is let go. */
static void on_idle(struct master *m, struct session_slot *ss)
{
	session_ended(m, ss);
	if (ss->authfd >= 0)
		drain_authfd(m, ss);
	ss->asks = 0;	/* AUTH_CACHE_ASKS is per session */
	if (ss->gen != m->gen || m->nidle[ss->svc] >= conf_int(m->conf, "maxspare")) {
		log_debug("event=session_process_let_go pid=%ld service=%s reason=%s", (long)ss->pid,
			  services[ss->svc].name, ss->gen != m->gen ? "reload" : "maxspare");
		let_go(m, ss);
		return;
	}
	ss->state = SLOT_IDLE;
	ss->idle_since = mono_ms();
	ss->idle_seq = ++m->idle_seq;
	m->nidle[ss->svc]++;
	log_debug("event=session_idle pid=%ld service=%s", (long)ss->pid, services[ss->svc].name);
}

/* Lets go the idle processes that waited spare_timeout; returns the ms
 * until the next one is due, -1 for none. */
static long long expire_idle(struct master *m)
{
	int nidle = 0;
	for (size_t s = 0; s < nservices; s++)
		nidle += m->nidle[s];
	long long now = mono_ms(), to = conf_duration_ms(m->conf, "spare_timeout"), next = -1;
	for (int i = 0; i < SESSION_SLOTS && nidle > 0; i++) {
		struct session_slot *ss = &m->sessions[i];
		if (!ss->pid || ss->state != SLOT_IDLE)
			continue;
		nidle--;
		long long left = ss->idle_since + to - now;
		if (left <= 0) {
			log_debug("event=session_process_let_go pid=%ld service=%s reason=spare_timeout", (long)ss->pid,
				  services[ss->svc].name);
			let_go(m, ss);
		} else if (next < 0 || left < next) {
			next = left;
		}
	}
	return next;
}

static void reap(struct master *m)
{
	int status;
	pid_t pid;
	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		int was_syncer = 0;
		for (int i = 0; i < m->nsyncers; i++) {
			struct syncer *sy = &m->syncers[i];
			if (sy->pid != pid)
				continue;
			was_syncer = 1;
			sy->pid = 0;
			int ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
			/* a client that ran a while before dying starts the backoff
			 * over: only quick repeated failures wait longer and longer */
			int ran_long = time(NULL) - sy->started >= SYNCER_STABLE_S;
			sy->failures = ok || ran_long ? (ok ? 0 : 1) : sy->failures + 1;
			int wait = sy->failures ? 1 << (sy->failures < 6 ? sy->failures : 6) : 1;
			if (wait > SYNCER_BACKOFF_MAX_S)
				wait = SYNCER_BACKOFF_MAX_S;
			sy->restart_at = time(NULL) + wait;
			sy->last_exit = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
			log_warn("event=sync_client_exit channel=%s pid=%ld%s status=%d restart_in_s=%d", sy->channel,
				 (long)pid, sy->label, WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status),
				 wait);
		}
		for (int i = 0; !was_syncer && i < m->nretired; i++) {
			if (m->retired[i].pid != pid)
				continue;
			was_syncer = 1;
			log_notice("event=sync_client_stopped channel=%s%s reason=channel_removed status=%d",
				   m->retired[i].channel, m->retired[i].label, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
			m->retired[i] = m->retired[--m->nretired];
		}
		if (was_syncer) {
			write_state(m);
			continue;
		}
		if (pid == m->metrics_pid) {
			m->metrics_pid = 0;
			m->metrics_restart_at = time(NULL) + 1;
			if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
				log_warn("event=metrics_exit pid=%ld status=%d restart_in_s=1", (long)pid,
					 WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
			continue;
		}
		for (int i = 0; i < SESSION_SLOTS; i++)
			if (m->sessions[i].pid == pid) {
				struct session_slot *ss = &m->sessions[i];
				if (ss->state == SLOT_BUSY)
					session_ended(m, ss);
				let_go(m, ss);
				if (ss->authfd >= 0) {
					drain_authfd(m, ss);
					close(ss->authfd);
					m->nauthfds--;
				}
				ss->authfd = -1;
				ss->pid = 0;
			}
		m->nchildren--;
		if (WIFSIGNALED(status))
			log_warn("event=session_crash pid=%ld signal=%d", (long)pid, WTERMSIG(status));
	}
}

/* Why a new connection of service svc from addr is refused, NULL if it
 * is not; *limit_r the limit that refused it. */
static const char *refuse_reason(struct master *m, int svc, const char *addr, long long *limit_r)
{
	long long maxchild = conf_int(m->conf, services[svc].maxchild_key);
	if (m->nbusy >= MAX_SESSIONS) {
		*limit_r = MAX_SESSIONS;
		return "too_many_sessions";
	}
	if (m->nsvc[svc] >= maxchild) {
		*limit_r = maxchild;
		return "service_limit";
	}
	long long perhost = conf_int(m->conf, "maxperhost");
	if (perhost > 0 && *addr) {
		long long n = 0;
		for (int i = 0; i < SESSION_SLOTS; i++)
			n += m->sessions[i].pid && m->sessions[i].state == SLOT_BUSY && m->sessions[i].svc == svc &&
			     !strcmp(m->sessions[i].addr, addr);
		if (n >= perhost) {
			*limit_r = perhost;
			return "host_limit";
		}
	}
	return NULL;
}

/* Hands the connection fd to an idle process of service svc: the one
 * whose last session came from the same client address, if any (a
 * client that comes back, a user's phone polling from its address, finds
 * the process that keeps its user's databases open: store_keep_enable),
 * else the one idle the shortest time (the others reach spare_timeout
 * sooner); among several, the one whose idle notice came last. 1 when
 * one took it, 0 when none is idle (fork one). */
static int hand_to_idle(struct master *m, int svc, int fd, const char *addr)
{
	struct server_handoff h = { .counter = m->counter };
	snprintf(h.peer_addr, sizeof h.peer_addr, "%s", addr);
	while (m->nidle[svc] > 0) {
		struct session_slot *best = NULL;
		int best_same = 0;
		for (int i = 0, left = m->nidle[svc]; i < SESSION_SLOTS && left > 0; i++) {
			struct session_slot *ss = &m->sessions[i];
			if (!ss->pid || ss->state != SLOT_IDLE || ss->svc != svc)
				continue;
			left--;
			int same = *addr && !strcmp(ss->last_addr, addr);
			if (!best || same > best_same || (same == best_same && ss->idle_seq > best->idle_seq)) {
				best = ss;
				best_same = same;
			}
		}
		if (!best)
			break;
		if (best->authfd >= 0) {
			/* whatever it asked while idle (nothing, unless subverted)
			 * is answered "not cached" and counts for nothing */
			best->asks = AUTH_CACHE_ASKS;
			drain_authfd(m, best);
		}
		if (server_reuse_send(best->ctlfd, fd, &h) < 0) {
			let_go(m, best);	/* it died: reaped soon */
			continue;
		}
		m->nidle[svc]--;
		best->state = SLOT_BUSY;
		snprintf(best->addr, sizeof best->addr, "%s", addr);
		best->asks = 0;
		m->nsvc[svc]++;
		m->nbusy++;
		stats_count_session(services[svc].name);
		stats_set_sessions(services[svc].name, m->nsvc[svc]);
		return 1;
	}
	return 0;
}

static void accept_one(struct master *m, struct listener *l)
{
	int fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0) {
		if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
			log_warn("event=accept_fail service=%s error=\"%s\"", l->svc->name, strerror(errno));
		return;
	}
	int svc = (int)(l->svc - services);
	char addr[64];
	net_peer_addr(fd, addr, sizeof addr);
	long long limit = 0;
	const char *why = refuse_reason(m, svc, addr, &limit);
	if (why) {
		log_warn("event=session_refused service=%s peer=%s reason=%s limit=%lld", l->svc->name, *addr ? addr : "unix",
			 why, limit);
		stats_count_session_refused(l->svc->name, why);
		if (l->svc->busy_reply && send(fd, l->svc->busy_reply, strlen(l->svc->busy_reply),
					       MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
			/* the client is gone or its buffer is full: closed anyway */
		}
		close(fd);
		return;
	}
	m->counter++;
	if (hand_to_idle(m, svc, fd, addr)) {
		close(fd);
		return;
	}
	struct session_slot *slot = NULL;
	for (int i = 0; i < SESSION_SLOTS && !slot; i++)
		if (m->sessions[i].pid == 0)
			slot = &m->sessions[i];
	if (!slot) {
		/* processes let go and not reaped yet hold every slot */
		log_warn("event=session_refused service=%s peer=%s reason=too_many_processes limit=%d", l->svc->name,
			 *addr ? addr : "unix", SESSION_SLOTS);
		stats_count_session_refused(l->svc->name, "too_many_sessions");
		close(fd);
		return;
	}
	int authfds[2] = { -1, -1 };
	if (m->authcache && l->svc->auth_cache) {
		if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, authfds) < 0) {
			log_warn("event=auth_cache_socket_fail error=\"%s\" note=\"this session verifies hashes itself\"",
				 strerror(errno));
			authfds[0] = authfds[1] = -1;
		} else if (authfds[1] < 3) {
			/* never a std fd: the session's env says 0 for none */
			int hi = fcntl(authfds[1], F_DUPFD_CLOEXEC, 3);
			close(authfds[1]);
			authfds[1] = hi;
		}
	}
	int ctlfds[2] = { -1, -1 };
	if (l->svc->reuse && conf_int(m->conf, "maxuse") > 1 && conf_int(m->conf, "maxspare") > 0 &&
	    socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ctlfds) < 0) {
		log_warn("event=reuse_socket_fail error=\"%s\" note=\"this process serves one connection\"",
			 strerror(errno));
		ctlfds[0] = ctlfds[1] = -1;
	}
	pid_t pid = fork();
	if (pid < 0) {
		log_err("event=fork_fail error=\"%s\"", strerror(errno));
		close(fd);
		for (int k = 0; k < 2; k++) {
			if (authfds[k] >= 0)
				close(authfds[k]);
			if (ctlfds[k] >= 0)
				close(ctlfds[k]);
		}
		return;
	}
	if (pid == 0)
		run_session(m, l, fd, addr, authfds, ctlfds);
	if (authfds[1] >= 0)
		close(authfds[1]);
	if (ctlfds[1] >= 0)
		close(ctlfds[1]);
	memset(slot, 0, sizeof *slot);
	slot->pid = pid;
	slot->svc = svc;
	slot->state = SLOT_BUSY;
	snprintf(slot->addr, sizeof slot->addr, "%s", addr);
	slot->authfd = authfds[0];
	slot->ctlfd = ctlfds[0];
	slot->gen = m->gen;
	m->nauthfds += authfds[0] >= 0;
	m->nctlfds += ctlfds[0] >= 0;
	m->nsvc[svc]++;
	m->nbusy++;
	m->nchildren++;
	stats_count_session(l->svc->name);
	stats_set_sessions(l->svc->name, m->nsvc[svc]);
	close(fd);
}

static void pidfile_path(struct master *m)
{
	const char *p = conf_str(m->conf, "pidfile");
	if (p && *p)
		snprintf(m->pidfile, sizeof m->pidfile, "%s", p);
	else
		snprintf(m->pidfile, sizeof m->pidfile, "%s/tandemd.pid", conf_str(m->conf, "configdirectory"));
}

/* The pid of another tandemd running this instance (its pid file names a
 * live tandemd started with the same config), else 0: a second tandemd
 * must not take the first's sync clients for stale ones. */
static pid_t running_tandemd(struct master *m)
{
	pidfile_path(m);
	struct buf data = BUF_INIT, path = BUF_INIT;
	struct terr err = { 0 };
	pid_t found = 0;
	if (fs_read_file(m->pidfile, 64, &data, &err) == 0) {
		long pid = strtol(buf_cstr(&data), NULL, 10);
		if (pid > 1 && pid != (long)getpid()) {
			buf_reset(&data);
			buf_printf(&path, "/proc/%ld/cmdline", pid);
			if (fs_read_file(path.ptr, 65536, &data, &err) == 0) {
				/* argv is NUL-separated: look at each word */
				int is_tandemd = 0, same_conf = 0;
				for (size_t off = 0; off < data.len; off += strlen(data.ptr + off) + 1) {
					const char *w = data.ptr + off;
					const char *base = strrchr(w, '/');
					if (off == 0 && !strcmp(base ? base + 1 : w, "tandemd"))
						is_tandemd = 1;
					if (!strcmp(w, m->conf_path))
						same_conf = 1;
				}
				if (is_tandemd && same_conf)
					found = (pid_t)pid;
			}
		}
	}
	buf_free(&data);
	buf_free(&path);
	return found;
}

static int write_pidfile(struct master *m, struct terr *err)
{
	pidfile_path(m);
	char line[32];
	int n = snprintf(line, sizeof line, "%ld\n", (long)getpid());
	return fs_write_atomic(m->pidfile, line, (size_t)n, 0644, err);
}

static void reload(struct master *m)
{
	struct conf *nc = NULL;
	struct terr err;
	if (conf_load(m->conf_path, &nc, &err) < 0 || check_limits(nc, &err) < 0) {
		log_err("event=reload_fail error=\"%s\" action=kept_old_config", err.msg);
		conf_free(&nc);
		return;
	}
	conf_free(&m->conf);
	m->conf = nc;
	open_logs(m->conf);
	/* idle session processes run the old config: let go (busy ones are
	 * let go when their session ends) */
	m->gen++;
	for (int i = 0; i < SESSION_SLOTS; i++)
		if (m->sessions[i].pid && m->sessions[i].state == SLOT_IDLE)
			let_go(m, &m->sessions[i]);
	report_ignored(m->conf, 0);
	if (conf_int(m->conf, "auth_cache_size") != m->authcache_size) {
		/* a new size: a new table (and key); sessions running keep their
		 * socket and ask the new one */
		server_authcache_free(&m->authcache);
		m->authcache_size = conf_int(m->conf, "auth_cache_size");
		m->authcache = server_authcache_from_conf(m->conf);
	}
	log_notice("event=reload config=%s note=\"listeners are kept; restart to change them\"", m->conf_path);
	publish_channels(m);
	reload_syncers(m);
	warn_rightnow(m);
	/* the metrics process reads the new config when restarted */
	if (m->metrics_pid) {
		kill(m->metrics_pid, SIGTERM);
		m->metrics_restart_at = 0;
	}
	write_state(m);
}

/* The change-log lines of a channel not replicated yet (all shards), -1
 * if unknown: what a drain that timed out leaves for the next start. */
static long pending_lines(struct master *m, const char *channel)
{
	struct buf out = BUF_INIT;
	struct terr err = { 0 };
	long n = -1;
	if (syncc_status(m->conf, channel, &out, &err) == 0) {
		const char *q = strstr(buf_cstr(&out), "pending_lines=");
		if (q)
			n = strtol(q + 14, NULL, 10);
	}
	buf_free(&out);
	return n;
}

static void stop(struct master *m)
{
	log_notice("event=stopping sessions=%d", m->nchildren);
	for (int i = 0; i < m->nls; i++)
		close(m->ls[i].fd);
	m->nls = 0;
	/* idle session processes read EOF and exit at once; busy ones
	 * finish their command (SIGTERM below) and exit */
	for (int i = 0; i < SESSION_SLOTS; i++)
		if (m->sessions[i].pid)
			let_go(m, &m->sessions[i]);
	signal(SIGCHLD, SIG_DFL);
	int nsync = 0;
	for (int i = 0; i < m->nsyncers; i++)
		nsync += m->syncers[i].pid != 0;
	nsync += m->nretired;
	nsync += m->metrics_pid != 0;
	kill(0, SIGTERM);
	long long drain = conf_duration_ms(m->conf, "sync_drain_timeout") / 1000;
	time_t deadline = time(NULL) + (nsync && drain > SHUTDOWN_TIMEOUT_S ? drain : SHUTDOWN_TIMEOUT_S);
	int left = m->nchildren + nsync;
	while (left > 0 && time(NULL) < deadline) {
		int status;
		pid_t pid = waitpid(-1, &status, WNOHANG);
		if (pid > 0) {
			left--;
			for (int i = 0; i < m->nsyncers; i++)
				if (m->syncers[i].pid == pid) {
					m->syncers[i].pid = 0;
					log_notice("event=sync_client_stopped channel=%s%s status=%d", m->syncers[i].channel,
						   m->syncers[i].label, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
				}
		} else if (pid < 0 && errno == ECHILD) {
			left = 0;
		} else {
			usleep(20000);
		}
	}
	if (left > 0) {
		log_warn("event=stop_kill processes=%d", left);
		for (int i = 0; i < SESSION_SLOTS; i++)
			if (m->sessions[i].pid)
				kill(m->sessions[i].pid, SIGKILL);
		for (int i = 0; i < m->nsyncers; i++)
			if (m->syncers[i].pid)
				kill(m->syncers[i].pid, SIGKILL);
		for (int i = 0; i < m->nretired; i++)
			kill(m->retired[i].pid, SIGKILL);
	}
	/* what the drain could not send (a replica down, the timeout): said
	 * once per channel; it stays in the log for the next start */
	for (int i = 0; i < m->nsyncers; i++) {
		int seen = 0;
		for (int k = 0; k < i && !seen; k++)
			seen = !strcmp(m->syncers[k].channel, m->syncers[i].channel);
		long n = seen ? 0 : pending_lines(m, m->syncers[i].channel);
		if (n > 0)
			log_warn("event=drain_incomplete channel=%s pending_lines=%ld note=\"change log kept; it is sent"
				 " at the next start\"", m->syncers[i].channel, n);
	}
	unlink(m->pidfile);
	struct buf sp = BUF_INIT;
	stats_daemon_path(conf_str(m->conf, "configdirectory"), &sp);
	unlink(sp.ptr);
	buf_free(&sp);
	log_notice("event=stopped");
}

int main(int argc, char **argv)
{
	struct master m = { 0 };
	m.sessions = xcalloc(SESSION_SLOTS, sizeof *m.sessions);
	m.conf_path = getenv("TANDEM_CONF") ? getenv("TANDEM_CONF") : "/etc/tandem.conf";
	int foreground = 0, check = 0, opt;
	while ((opt = getopt(argc, argv, "C:fnh")) != -1) {
		switch (opt) {
		case 'C': m.conf_path = optarg; break;
		case 'f': foreground = 1; break;
		case 'n': check = 1; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	struct terr err = { 0 };
	if (conf_load(m.conf_path, &m.conf, &err) < 0) {
		fprintf(stderr, "tandemd: %s\n", err.msg);
		return 2;
	}
	pid_t other = check ? 0 : running_tandemd(&m);
	if (other) {
		fprintf(stderr, "tandemd: another tandemd (pid %ld) runs this instance (%s)\n", (long)other, m.pidfile);
		conf_free(&m.conf);
		return 1;
	}
	if (!check)
		open_logs(m.conf);
	if (check)
		report_ignored(m.conf, 1);
	else
		report_ignored(m.conf, 0);
	if (validate(&m, check, &err) < 0) {
		fprintf(stderr, "tandemd: %s\n", err.msg);
		return 2;
	}
	if (check) {
		printf("configuration OK\n");
		conf_free(&m.conf);
		return 0;
	}
	if (!foreground) {
		pid_t pid = fork();
		if (pid < 0) {
			perror("tandemd: fork");
			return 1;
		}
		if (pid > 0)
			_exit(0);
		setsid();
		int null = open("/dev/null", O_RDWR);
		if (null >= 0) {
			dup2(null, 0);
			dup2(null, 1);
			if (conf_bool(m.conf, "syslog"))
				dup2(null, 2);
			if (null > 2)
				close(null);
		}
	} else if (getpgrp() != getpid()) {
		/* our own process group, so stop() signals only our sessions */
		setpgid(0, 0);
	}
	open_logs(m.conf);
	if (pipe2(sigpipe_fds, O_CLOEXEC | O_NONBLOCK) < 0) {
		log_err("event=start_fail error=\"pipe: %s\"", strerror(errno));
		return 1;
	}
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	sigaction(SIGCHLD, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	if (write_pidfile(&m, &err) < 0) {
		log_err("event=start_fail error=\"%s\"", err.msg);
		return 1;
	}
	m.pid = getpid();
	m.started = time(NULL);
	if (stats_init() < 0)
		log_warn("event=stats_fail error=\"%s\" note=\"the metrics page shows no counters\"", strerror(errno));
	/* what every session would do again after its fork, done once here:
	 * SQLite's global init (no connection is opened in tandemd), the time
	 * zone of the log lines; SQLite's process-wide settings go in first
	 * (store_sqlite_setup: they can only be set before initialising) */
	store_sqlite_setup();
	sqlite3_initialize();
	tzset();
	for (int i = 0; i < SESSION_SLOTS; i++)
		m.sessions[i].authfd = m.sessions[i].ctlfd = -1;
	m.authcache_size = conf_int(m.conf, "auth_cache_size");
	m.authcache = server_authcache_from_conf(m.conf);
	if (server_authfail_init() < 0)
		log_warn("event=authfail_table_fail error=\"%s\" note=\"failed logins are counted per session only\"",
			 strerror(errno));
	publish_channels(&m);
	find_syncers(&m);
	/* sync clients a killed tandemd of this instance left running hold
	 * their locks: stop them before starting ours (a tandemd that runs no
	 * sync client, e.g. one serving a copy of the config read-only, leaves
	 * the running instance's clients alone) */
	if (m.nsyncers)
		server_syncc_stop_stale(m.conf, STALE_SYNCER_WAIT_MS);
	log_notice("event=started config=%s pid=%ld listeners=%d sync_clients=%d", m.conf_path, (long)getpid(), m.nls,
		   m.nsyncers);
	warn_rightnow(&m);
	write_state(&m);
	int running = 1;
	/* the signal pipe, the listeners, the sessions' login-cache sockets,
	 * then the control sockets of busy session processes */
	struct pollfd *pf = xcalloc(1 + MAX_LISTENERS + 2 * SESSION_SLOTS, sizeof *pf);
	int *pf_slot = xcalloc(2 * SESSION_SLOTS, sizeof *pf_slot);
	while (running) {
		pf[0].fd = sigpipe_fds[0];
		pf[0].events = POLLIN;
		for (int i = 0; i < m.nls; i++) {
			pf[i + 1].fd = m.ls[i].fd;
			pf[i + 1].events = POLLIN;
		}
		int nauth = 0;
		/* (only busy processes have a question to ask: an idle one's
		 * are answered "not cached" when it gets work, hand_to_idle) */
		for (int i = 0, left = m.nauthfds; i < SESSION_SLOTS && left > 0; i++)
			if (m.sessions[i].pid && m.sessions[i].authfd >= 0) {
				left--;
				if (m.sessions[i].state != SLOT_BUSY)
					continue;
				pf[1 + m.nls + nauth].fd = m.sessions[i].authfd;
				pf[1 + m.nls + nauth].events = POLLIN;
				pf[1 + m.nls + nauth].revents = 0;
				pf_slot[nauth++] = i;
			}
		int nctl = 0, c0 = 1 + m.nls + nauth;
		for (int i = 0, left = m.nctlfds; i < SESSION_SLOTS && left > 0; i++)
			if (m.sessions[i].pid && m.sessions[i].ctlfd >= 0) {
				left--;
				if (m.sessions[i].state != SLOT_BUSY)
					continue;
				pf[c0 + nctl].fd = m.sessions[i].ctlfd;
				pf[c0 + nctl].events = POLLIN;
				pf[c0 + nctl].revents = 0;
				pf_slot[nauth + nctl++] = i;
			}
		start_due_syncers(&m);
		start_metrics(&m);
		int wait_ms = next_syncer_ms(&m);
		if (m.nmfds && !m.metrics_pid && (wait_ms < 0 || wait_ms > 1000))
			wait_ms = 1000;	/* the metrics process is due again */
		long long idle_ms = expire_idle(&m);
		if (idle_ms >= 0 && (wait_ms < 0 || idle_ms < wait_ms))
			wait_ms = (int)idle_ms;
		int n = poll(pf, (nfds_t)(c0 + nctl), wait_ms);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			log_err("event=poll_fail error=\"%s\"", strerror(errno));
			break;
		}
		if (pf[0].revents & POLLIN) {
			unsigned char sigs[64];
			ssize_t k = read(sigpipe_fds[0], sigs, sizeof sigs);
			for (ssize_t i = 0; i < k; i++) {
				if (sigs[i] == SIGTERM || sigs[i] == SIGINT)
					running = 0;
				else if (sigs[i] == SIGHUP)
					reload(&m);
				else if (sigs[i] == SIGCHLD)
					reap(&m);
			}
		}
		/* before the accepts: those may reuse a slot reaped above */
		for (int k = 0; k < nauth; k++) {
			struct session_slot *ss = &m.sessions[pf_slot[k]];
			if (!(pf[1 + m.nls + k].revents & (POLLIN | POLLHUP | POLLERR)) || ss->authfd != pf[1 + m.nls + k].fd)
				continue;
			if (server_authcache_serve(m.authcache, ss->authfd, &ss->asks,
						   conf_duration_ms(m.conf, "auth_cache_ttl")) < 0) {
				close(ss->authfd);
				ss->authfd = -1;
				m.nauthfds--;
			}
		}
		/* idle notices before the accepts, which may hand them work */
		for (int k = 0; k < nctl; k++) {
			struct session_slot *ss = &m.sessions[pf_slot[nauth + k]];
			if (!(pf[c0 + k].revents & (POLLIN | POLLHUP | POLLERR)) || ss->ctlfd != pf[c0 + k].fd ||
			    ss->state != SLOT_BUSY)
				continue;
			int r = server_reuse_notice(ss->ctlfd);
			if (r == 'I')
				on_idle(&m, ss);
			else if (r < 0)
				let_go(&m, ss);	/* it is exiting: reaped soon */
		}
		for (int i = 0; running && i < m.nls; i++)
			if (pf[i + 1].revents & POLLIN)
				accept_one(&m, &m.ls[i]);
	}
	free(pf);
	free(pf_slot);
	server_authcache_free(&m.authcache);
	stop(&m);
	if (m.tls)
		SSL_CTX_free(m.tls);
	conf_free(&m.conf);
	free(m.sessions);
	return 0;
}
