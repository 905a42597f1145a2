/* server_reuse.c: session processes that serve one connection after
 * another (server.h has the protocol; tandemd.c the master's side).
 *
 * The control socket is a SOCK_SEQPACKET socketpair: one message each
 * way per connection. tandemd -> process: 'C', the handoff (counter,
 * client address) and the connection as SCM_RIGHTS. process -> tandemd:
 * 'I' (my session ended cleanly, I am idle). tandemd ends a process by
 * closing its end; the process then reads EOF and exits.
 *
 * What makes a process fit for the next stranger (server_reuse_check):
 * its session returned 0 (a clean LOGOUT/QUIT/EOF: every other end, a
 * timeout, too many bad commands, a fatal protocol error, a shutdown,
 * returns nonzero and the process exits), no login failed in it, no stop
 * was asked, it holds exactly the descriptors it held before its first
 * session (every store handle, file and socket of the session closed;
 * the store's kept database handles apart: store_keep_enable, at most 3
 * descriptors each), and its login-cache socket is still the one tandemd
 * gave it (the session closes it when tandemd did not answer in time:
 * server_login.c). server_reuse_reset then clears what is process-wide.
 */
#include "server/server.h"

#include "lib/log.h"
#include "store/store.h"

#include <dirent.h>
#include <errno.h>
#include <openssl/err.h>
#include <poll.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

struct wire_handoff {
	char op;	/* 'C' */
	struct server_handoff h;
};

int server_reuse_send(int ctlfd, int fd, const struct server_handoff *h)
{
	struct wire_handoff w;
	memset(&w, 0, sizeof w);
	w.op = 'C';
	w.h = *h;
	w.h.peer_addr[sizeof w.h.peer_addr - 1] = '\0';
	struct iovec iov = { &w, sizeof w };
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int))];
	} u;
	memset(&u, 0, sizeof u);
	struct msghdr msg = { 0 };
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = u.buf;
	msg.msg_controllen = sizeof u.buf;
	struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &fd, sizeof fd);
	ssize_t n;
	do
		n = sendmsg(ctlfd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	return n == (ssize_t)sizeof w ? 0 : -1;
}

int server_reuse_notice(int ctlfd)
{
	char b[8];
	ssize_t n = recv(ctlfd, b, sizeof b, MSG_DONTWAIT);
	if (n < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -1;
	if (n == 1 && b[0] == 'I')
		return 'I';
	return -1;
}

/* Descriptors open in this process (the directory's own not counted);
 * with named, those of the store's kept database handles
 * (store_keep_enable) apart, *kept_r getting how many those are (a
 * readlink each: only when the plain count does not add up). */
static int count_fds(int named, int *kept_r)
{
	*kept_r = 0;
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		return -1;
	int n = 0, own = dirfd(d);
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		n++;
		char path[4096];
		ssize_t len;
		if (named && atoi(e->d_name) != own && (len = readlinkat(own, e->d_name, path, sizeof path - 1)) > 0) {
			path[len] = '\0';
			if (store_keep_owns(path)) {
				n--;
				++*kept_r;
			}
		}
	}
	closedir(d);
	return n - 1;
}

/* 1 when the process holds the descriptors it held before its first
 * session, and those of the kept database handles: 3 each (database,
 * -wal, -shm; a handle is kept only after it has read, so its log and
 * shared-memory file are open). When the plain count is not exactly
 * that, the descriptors are named: the others must be the first ones,
 * and no handle may have more than its 3. */
static int fds_as_before(const struct server_reuse *r)
{
	int kept, nkeep = (int)store_keep_count();
	int n = count_fds(0, &kept);
	if (n < 0 || r->nfds < 0)
		return 0;
	if (n == r->nfds + 3 * nkeep)
		return 1;
	if (!nkeep)
		return 0;
	return count_fds(1, &kept) == r->nfds && kept <= 3 * nkeep;
}

static int same_socket(const struct server_reuse *r)
{
	struct stat st;
	return fstat(r->authfd, &st) == 0 && S_ISSOCK(st.st_mode) && (unsigned long long)st.st_dev == r->auth_dev &&
	       (unsigned long long)st.st_ino == r->auth_ino;
}

void server_reuse_begin(struct server_reuse *r, int authfd)
{
	memset(r, 0, sizeof *r);
	/* the first connection is open now; between sessions it is not */
	int kept;
	r->nfds = count_fds(0, &kept) - 1;
	r->authfd = authfd;
	struct stat st;
	if (authfd >= 0 && fstat(authfd, &st) == 0) {
		r->auth_dev = (unsigned long long)st.st_dev;
		r->auth_ino = (unsigned long long)st.st_ino;
	} else {
		r->authfd = -1;
	}
}

int server_reuse_check(struct server_reuse *r)
{
	r->why = NULL;
	if (server_stop_requested)
		r->why = "stop";
	else if (server_auth_session_failures() > 0)
		r->why = "auth_fail";
	else if (r->authfd >= 0 && !same_socket(r))
		r->why = "auth_socket";
	else if (!fds_as_before(r))
		r->why = "fd_leak";
	return r->why == NULL;
}

void server_reuse_reset(void)
{
	server_auth_session_reset();
	server_preauth_arm_mode(0, SERVER_PREAUTH_NONE);
	ERR_clear_error();
	server_session_signals();
}

int server_reuse_wait(int ctlfd, int *fd_r, struct server_handoff *h)
{
	*fd_r = -1;
	char idle = 'I';
	if (send(ctlfd, &idle, 1, MSG_NOSIGNAL) != 1)
		return 0;
	/* SIGTERM is let in only inside ppoll: an idle process sleeps until
	 * tandemd writes or SIGTERM comes, with no wakeups in between */
	sigset_t term, old;
	sigemptyset(&term);
	sigaddset(&term, SIGTERM);
	sigprocmask(SIG_BLOCK, &term, &old);
	sigdelset(&old, SIGTERM);
	int rc = 0;
	struct pollfd pf = { .fd = ctlfd, .events = POLLIN };
	for (;;) {
		if (server_stop_requested)
			break;
		int r = ppoll(&pf, 1, NULL, &old);
		if (r < 0 && errno != EINTR)
			break;
		if (r <= 0)
			continue;
		struct wire_handoff w;
		struct iovec iov = { &w, sizeof w };
		union {
			struct cmsghdr align;
			char buf[CMSG_SPACE(sizeof(int))];
		} u;
		struct msghdr msg = { 0 };
		msg.msg_iov = &iov;
		msg.msg_iovlen = 1;
		msg.msg_control = u.buf;
		msg.msg_controllen = sizeof u.buf;
		ssize_t n = recvmsg(ctlfd, &msg, MSG_CMSG_CLOEXEC);
		if (n < 0 && errno == EINTR)
			continue;
		int fd = -1;
		for (struct cmsghdr *cm = n > 0 ? CMSG_FIRSTHDR(&msg) : NULL; cm; cm = CMSG_NXTHDR(&msg, cm))
			if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS &&
			    cm->cmsg_len == CMSG_LEN(sizeof(int)) && fd < 0)
				memcpy(&fd, CMSG_DATA(cm), sizeof fd);
		if (n != (ssize_t)sizeof w || w.op != 'C' || fd < 0 || (msg.msg_flags & (MSG_CTRUNC | MSG_TRUNC))) {
			if (fd >= 0)
				close(fd);
			if (n != 0)
				log_warn("event=reuse_bad_handoff bytes=%zd", n);
			break;	/* EOF: tandemd let this process go */
		}
		*h = w.h;
		h->peer_addr[sizeof h->peer_addr - 1] = '\0';
		*fd_r = fd;
		rc = 1;
		break;
	}
	sigprocmask(SIG_SETMASK, &old, NULL);
	return rc;
}
