/* server.h: what tandemd hands each session process.
 *
 * tandemd calls the service's session function with a service_env and
 * the connection, in a session process: one it forks for the connection,
 * or one that served an earlier connection of the same service and is
 * waiting for the next (server_reuse_*, below). Sessions keep their
 * state in their own struct and free it all when they end; the
 * process-wide state is the stop request set by SIGTERM
 * (server_stop_requested), which a session checks between commands so
 * work in progress (a delivery) finishes, the login deadline (server.c)
 * and the failed-login count (server_auth.c), which server_reuse_reset
 * clears between two sessions.
 */
#ifndef TANDEM_SERVER_H
#define TANDEM_SERVER_H

#include <signal.h>
#include <sys/types.h>

#include "lib/buf.h"
#include "lib/err.h"
#include "net/conn.h"

struct conf;

struct service_env {
	const struct conf *conf;
	const char *conf_path;
	const char *service;	/* "imap", "imaps", "lmtp", "sync" */
	SSL_CTX *tls;		/* NULL when no certificate is configured */
	int implicit_tls;	/* imaps: the session starts TLS before its greeting */
	char session_id[32];	/* <servername-free> "<pid hex>-<counter hex>" */
	char peer[80];
	char peer_addr[64];	/* address alone ("" for a unix socket): per-client limits */
	int authcache_fd;	/* > 0: the session's socket to tandemd's login cache
				 * (server_authcache.h); 0: none (never a std fd) */
};

/* Returns 0 when the session ended cleanly (the client logged out or
 * closed the connection between commands: its process may serve another
 * connection), SERVER_SESSION_LAST when it ended otherwise without an
 * error of the server (a timeout, too many bad commands, a shutdown: the
 * process exits, status 0), anything else on an error (status 1). */
typedef int service_session_fn(const struct service_env *env, struct conn *c);
#define SERVER_SESSION_LAST 2

/* Set by SIGTERM in a session process. */
extern volatile sig_atomic_t server_stop_requested;
/* How often a session waiting for its client's next command looks at
 * server_stop_requested, ms: a SIGTERM ends idle sessions this quickly
 * (the read itself is not interrupted: a write in progress finishes). */
#define SERVER_STOP_POLL_MS 500
/* conn_read for a session waiting between commands: returns as soon as
 * data arrives, or -1 with TE_BUSY after timeout_ms (< 0: none) or when a
 * stop is requested (then server_stop_requested is set). */
ssize_t server_idle_read(struct conn *c, struct buf *in, long long timeout_ms, struct terr *err);
/* Arms (ms > 0) or disarms (0) the session's login deadline: from then
 * on server_idle_read fails with TE_BUSY ("not logged in within
 * preauth_timeout") once ms have passed, until server_auth_succeeded. */
void server_preauth_arm(long long ms);
/* The same with a mode: SERVER_PREAUTH_LOGIN as above; SERVER_PREAUTH_SILENT
 * only while the client has sent no byte at all (for a protocol whose
 * server does not call server_auth_succeeded yet); SERVER_PREAUTH_NONE
 * disarms. */
enum { SERVER_PREAUTH_NONE, SERVER_PREAUTH_LOGIN, SERVER_PREAUTH_SILENT };
void server_preauth_arm_mode(long long ms, int mode);
/* Milliseconds left to log in (0: past), -1 when no LOGIN deadline is
 * armed: for a session with its own read loop (imapd). */
long long server_preauth_left_ms(void);
/* Installs the session process's SIGTERM handler (sets the flag, does not
 * interrupt a write in progress). */
void server_session_signals(void);


/* Failed logins (server_auth.c), counted per user and per client address
 * across every session process of tandemd (a shared table tandemd maps
 * with server_authfail_init before its first fork).
 *
 * server_auth_failed: call after answering nothing yet (flush what is
 * queued first): counts the failure, logs event=auth_fail (service, addr,
 * user, the counts, the pause), sleeps failedloginpause doubled per
 * recent failure of that user or address (AUTH_FAIL_PAUSE_MAX_MS at
 * most), and returns 1 when this was the session's AUTH_MAX_FAILS-th
 * failure (the caller answers, then closes the connection), else 0.
 * server_auth_succeeded: on a login: clears the user's count and the
 * login deadline (server_preauth_arm). */
int server_authfail_init(void);
int server_auth_failed(const struct service_env *env, const char *user, const char *reason);
void server_auth_succeeded(const struct service_env *env, const char *user);
/* The recent failures of a user and of an address (0 without the table). */
void server_auth_counts(const char *user, const char *addr, unsigned *user_r, unsigned *addr_r);
/* The pause of a failure when the larger count is fails: base_ms x
 * 2^(fails-1), at most AUTH_FAIL_PAUSE_MAX_MS. */
long long server_auth_pause_ms(long long base_ms, unsigned fails);

/* Failures of this session so far (server_auth_failed calls), and their
 * reset for the next session of a reused process. */
int server_auth_session_failures(void);
void server_auth_session_reset(void);

/* Session processes reused (server_reuse.c). tandemd and each reusable
 * session process share a control socketpair (SOCK_SEQPACKET). When its
 * session ended cleanly the process tells tandemd it is idle
 * (server_reuse_wait sends 'I') and waits; tandemd hands it the next
 * accepted connection of its service (server_reuse_send: the socket as
 * SCM_RIGHTS, with the data its service_env needs), or closes its end,
 * and the process exits. */
struct server_handoff {
	unsigned long counter;	/* tandemd's connection counter: the session id */
	char peer_addr[64];	/* the client's address ("" for a unix socket) */
};
/* tandemd: hands fd to the process at ctlfd; 0, or -1 (the process is
 * gone: close ctlfd). fd stays open in the caller. */
int server_reuse_send(int ctlfd, int fd, const struct server_handoff *h);
/* tandemd: reads one notice from a process: 'I' (idle), 0 when none is
 * waiting, -1 when the process closed its end or sent garbage (close
 * ctlfd). */
int server_reuse_notice(int ctlfd);

/* A session process's guard: what it was before its first session. */
struct server_reuse {
	int nfds;		/* open descriptors between sessions */
	int authfd;		/* the login-cache socket, -1 none */
	unsigned long long auth_dev, auth_ino;
	const char *why;	/* why the last check refused reuse */
};
/* In the session process before its first session (fd: that session's
 * connection, authfd: its login-cache socket or -1). */
void server_reuse_begin(struct server_reuse *r, int authfd);
/* After a session that returned 0 and whose connection is closed: 1 when
 * the process may serve another connection, else 0 with r->why ("stop",
 * "auth_fail": a failed login, "fd_leak": a descriptor left open,
 * "auth_socket": the login-cache socket closed after a failure). */
int server_reuse_check(struct server_reuse *r);
/* Clears the process-wide state of a session: the failed-login count,
 * the login deadline, OpenSSL's error queue, the signal dispositions of
 * server_session_signals. */
void server_reuse_reset(void);
/* Tells tandemd this process is idle and waits for the next connection:
 * 1 with *fd_r and *h, 0 when tandemd closed its end (reload, spare
 * timeout, too many idle, tandemd gone) or SIGTERM came: exit then. */
int server_reuse_wait(int ctlfd, int *fd_r, struct server_handoff *h);

/* Children of tandemd (server_child.c). Called in the child right after
 * fork(): SIGTERM when tandemd dies (PR_SET_PDEATHSIG); exits at once if
 * the parent (pid) is already gone. */
void server_child_init(pid_t parent);
/* Takes the lock a channel shard's sync client holds for its life
 * (<configdir>/sync/[<channel>/]client-<shard>.lock, flock, our pid
 * written in it): 0 with *fd_r (keep it open), 1 when another process
 * holds it (*holder_r its pid, 0 if unknown), -1 with err. */
int server_syncc_lock(const struct conf *conf, const char *channel, int shard, int *fd_r, pid_t *holder_r,
		      struct terr *err);
/* Stops the processes holding any sync client lock of the instance (what
 * a killed tandemd left running): SIGTERM, wait_ms for the lock to be
 * let go, then SIGKILL. Returns how many were found. */
int server_syncc_stop_stale(const struct conf *conf, long long wait_ms);

/* The instance's role in a failover pair (server_role.c): the file
 * <configdir>/role, written by `tandem failover`. */
enum server_role { ROLE_STANDALONE, ROLE_MASTER, ROLE_DRAINING, ROLE_REPLICA };
enum server_role server_role_get(const struct conf *conf);
int server_role_set(const struct conf *conf, enum server_role r, struct terr *err);
const char *server_role_name(enum server_role r);
/* 1 when clients' changes must be refused (replica or draining). */
int server_role_refuses_writes(const struct conf *conf);
/* The role as a long-lived session sees it: a stat of the file per call,
 * the file read again only when it changed (another inode, mtime or
 * size). Zero-initialise, set conf. */
struct server_role_cache {
	const struct conf *conf;
	int valid;
	unsigned long long dev, ino, size;
	long long mtime_ns;
	enum server_role role;
};
enum server_role server_role_cached(struct server_role_cache *c);

struct store;
struct chlog;
struct mboxname_ns;
/* Opens the instance's store as the config says (partition, limits, the
 * change log when sync_log is on) and fills the mailbox namespace.
 * Close with store_close and chlog_close. */
int server_open_store(const struct conf *conf, struct store **st_r, struct chlog **log_r,
		      struct mboxname_ns *ns_r, struct terr *err);

#endif
