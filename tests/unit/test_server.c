/* test_server.c: what src/server gives session processes: the pause of a
 * failed login, failures counted across processes (the shared table), the
 * session's close after AUTH_MAX_FAILS, and the login deadline of
 * server_idle_read (what the sync port's pre-login timeout rests on), and
 * the reuse of session processes: a connection handed over the control
 * socket, EOF letting the process go, the guard that refuses reuse after a
 * failed login, a leaked descriptor or a replaced login-cache socket, and
 * the reset of what a session leaves process-wide. */
#include "conf/conf.h"
#include "lib/limits.h"
#include "lib/log.h"
#include "server/server.h"
#include "test.h"

#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static struct conf *make_conf(const char *text)
{
	struct terr err = { 0 };
	struct conf *c = NULL;
	struct conf_parser *p = conf_parser_new("t.conf");
	if (conf_parser_feed(p, text, strlen(text), &err) < 0 || conf_parser_finish(p, &c, &err) < 0) {
		printf("  conf: %s\n", err.msg);
		return NULL;
	}
	return c;
}

TEST(pause)
{
	CHECK_INT(server_auth_pause_ms(3000, 1), 3000);
	CHECK_INT(server_auth_pause_ms(3000, 2), 6000);
	CHECK_INT(server_auth_pause_ms(3000, 4), 24000);
	CHECK_INT(server_auth_pause_ms(3000, 5), AUTH_FAIL_PAUSE_MAX_MS);
	CHECK_INT(server_auth_pause_ms(3000, 1000000), AUTH_FAIL_PAUSE_MAX_MS);
	CHECK_INT(server_auth_pause_ms(0, 7), 0);
	CHECK_INT(server_auth_pause_ms(10, 3), 40);
}

/* Failures in child processes are seen by the parent's next failure: the
 * counts live in the table mapped before fork. */
TEST(shared_counts)
{
	struct conf *c = make_conf("configdirectory: /tmp\nfailedloginpause: 0\n");
	CHECK(c != NULL);
	if (!c)
		return;
	CHECK_INT(server_authfail_init(), 0);
	struct service_env env = { 0 };
	env.conf = c;
	env.service = "test";
	snprintf(env.peer_addr, sizeof env.peer_addr, "192.0.2.7");
	for (int k = 0; k < 2; k++) {
		pid_t pid = fork();
		if (pid == 0) {
			/* a session: its third failure says "close" */
			int a = server_auth_failed(&env, "mallory", "bad_credentials");
			int b = server_auth_failed(&env, "mallory", "bad_credentials");
			int e = server_auth_failed(&env, "mallory", "bad_credentials");
			_exit(a == 0 && b == 0 && e == 1 ? 0 : 1);
		}
		int st;
		waitpid(pid, &st, 0);
		CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	}
	unsigned u, a;
	server_auth_counts("mallory", "192.0.2.7", &u, &a);
	CHECK_INT(u, 6);
	CHECK_INT(a, 6);
	server_auth_counts("trent", "192.0.2.8", &u, &a);
	CHECK_INT(u, 0);
	CHECK_INT(a, 0);
	/* another user from the same address, a unix-socket client */
	snprintf(env.peer_addr, sizeof env.peer_addr, "%s", "");
	server_auth_failed(&env, "trent", "bad_credentials");
	server_auth_counts("trent", "", &u, &a);
	CHECK_INT(u, 1);
	CHECK_INT(a, 0);
	/* a login clears the user's count, not the address's */
	server_auth_succeeded(&env, "mallory");
	server_auth_counts("mallory", "192.0.2.7", &u, &a);
	CHECK_INT(u, 0);
	CHECK_INT(a, 6);
	conf_free(&c);
}

/* The login deadline ends an idle read, and a login disarms it. */
TEST(preauth_deadline)
{
	int sv[2];
	CHECK_INT(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	struct conn *c = conn_new(sv[0]);
	struct buf in = BUF_INIT;
	struct terr err = { 0 };
	server_preauth_arm(50);
	ssize_t r = server_idle_read(c, &in, -1, &err);
	CHECK_INT(r, -1);
	CHECK_INT(err.code, TE_BUSY);
	CHECK(strstr(err.msg, "preauth_timeout") != NULL);
	/* still past it: at once */
	r = server_idle_read(c, &in, 10000, &err);
	CHECK_INT(r, -1);
	/* a login disarms it: data is read as usual */
	server_preauth_arm(50);
	struct service_env env = { 0 };
	server_auth_succeeded(&env, NULL);
	CHECK_INT(write(sv[1], "x", 1), 1);
	usleep(100 * 1000);
	r = server_idle_read(c, &in, 1000, &err);
	CHECK_INT(r, 1);
	/* SILENT: closed while the client says nothing ... */
	buf_free(&in);
	conn_free(&c);
	close(sv[1]);
	CHECK_INT(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	c = conn_new(sv[0]);
	server_preauth_arm_mode(50, SERVER_PREAUTH_SILENT);
	r = server_idle_read(c, &in, -1, &err);
	CHECK_INT(r, -1);
	CHECK(strstr(err.msg, "silent") != NULL);
	buf_free(&in);
	conn_free(&c);
	close(sv[1]);
	/* ... not once it has spoken */
	CHECK_INT(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	c = conn_new(sv[0]);
	server_preauth_arm_mode(50, SERVER_PREAUTH_SILENT);
	CHECK_INT(write(sv[1], "y", 1), 1);
	CHECK_INT(server_idle_read(c, &in, 1000, &err), 1);
	usleep(100 * 1000);
	r = server_idle_read(c, &in, 100, &err);
	CHECK_INT(r, -1);
	CHECK(strstr(err.msg, "timed out") != NULL);
	server_preauth_arm(0);
	buf_free(&in);
	conn_free(&c);
	close(sv[1]);
}

/* A connection handed to an idle process arrives with its data; EOF on
 * the control socket lets the process go. */
TEST(reuse_handoff)
{
	int ctl[2], conn[2];
	CHECK_INT(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, ctl), 0);
	CHECK_INT(socketpair(AF_UNIX, SOCK_STREAM, 0, conn), 0);
	pid_t pid = fork();
	if (pid == 0) {
		/* the session process: idle, gets the connection, answers on it */
		close(ctl[0]);
		int fd;
		struct server_handoff h;
		if (server_reuse_wait(ctl[1], &fd, &h) != 1 || h.counter != 0x2a || strcmp(h.peer_addr, "192.0.2.9"))
			_exit(1);
		if (write(fd, "hello", 5) != 5 || !(fcntl(fd, F_GETFD) & FD_CLOEXEC))
			_exit(2);
		close(fd);
		/* tandemd closes its end: the process is let go */
		_exit(server_reuse_wait(ctl[1], &fd, &h) == 0 && fd == -1 ? 0 : 3);
	}
	close(ctl[1]);
	struct pollfd pf = { .fd = ctl[0], .events = POLLIN };
	CHECK_INT(poll(&pf, 1, 5000), 1);
	CHECK_INT(server_reuse_notice(ctl[0]), 'I');
	CHECK_INT(server_reuse_notice(ctl[0]), 0);	/* nothing more waiting */
	struct server_handoff h = { .counter = 0x2a };
	snprintf(h.peer_addr, sizeof h.peer_addr, "192.0.2.9");
	CHECK_INT(server_reuse_send(ctl[0], conn[0], &h), 0);
	close(conn[0]);
	char b[8] = { 0 };
	CHECK_INT(read(conn[1], b, 5), 5);
	CHECK(!strcmp(b, "hello"));
	CHECK_INT(poll(&pf, 1, 5000), 1);
	CHECK_INT(server_reuse_notice(ctl[0]), 'I');
	close(ctl[0]);
	int st;
	waitpid(pid, &st, 0);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	close(conn[1]);
	/* a process that died: the handoff fails (tandemd forks instead) */
	CHECK_INT(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, ctl), 0);
	close(ctl[1]);
	CHECK_INT(server_reuse_send(ctl[0], 0, &h), -1);
	CHECK_INT(server_reuse_notice(ctl[0]), -1);
	close(ctl[0]);
}

/* The guard: a clean session passes; a failed login, a leaked descriptor
 * or a replaced login-cache socket do not; the reset clears the count. */
TEST(reuse_guard)
{
	int conn[2], auth[2];
	CHECK_INT(socketpair(AF_UNIX, SOCK_STREAM, 0, conn), 0);
	CHECK_INT(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, auth), 0);
	server_auth_session_reset();	/* shared_counts failed logins here */
	struct server_reuse g;
	server_reuse_begin(&g, auth[1]);	/* conn[0]: the first connection, open */
	close(conn[0]);
	CHECK_INT(server_reuse_check(&g), 1);
	int leak = dup(conn[1]);
	CHECK_INT(server_reuse_check(&g), 0);
	CHECK(g.why && !strcmp(g.why, "fd_leak"));
	close(leak);
	CHECK_INT(server_reuse_check(&g), 1);
	struct conf *c = make_conf("configdirectory: /tmp\nfailedloginpause: 0\n");
	struct service_env env = { 0 };
	env.conf = c;
	env.service = "test";
	server_auth_failed(&env, "mallory", "bad_credentials");
	CHECK_INT(server_auth_session_failures(), 1);
	CHECK_INT(server_reuse_check(&g), 0);
	CHECK(g.why && !strcmp(g.why, "auth_fail"));
	server_preauth_arm(50000);
	server_reuse_reset();
	CHECK_INT(server_auth_session_failures(), 0);
	CHECK_INT(server_preauth_left_ms(), -1);
	CHECK_INT(server_reuse_check(&g), 1);
	/* the session closed its login-cache socket, and the number went to
	 * another socket */
	close(auth[1]);
	int other[2];
	CHECK_INT(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, other), 0);
	if (other[0] != auth[1]) {
		CHECK_INT(dup2(other[0], auth[1]), auth[1]);
		close(other[0]);
	}
	CHECK_INT(server_reuse_check(&g), 0);
	CHECK(g.why && !strcmp(g.why, "auth_socket"));
	close(auth[1]);
	close(other[1]);
	close(auth[0]);
	close(conn[1]);
	conf_free(&c);
}

/* The default caps leave room for every service: they sum within
 * MAX_SESSIONS, and one address cannot take the IMAP cap alone. */
TEST(default_caps)
{
	struct conf *c = make_conf("configdirectory: /tmp\n");
	CHECK(c != NULL);
	if (!c)
		return;
	static const char *const keys[] = { "imap_maxchild", "imaps_maxchild", "lmtp_maxchild", "sync_maxchild" };
	long long sum = 0;
	for (size_t i = 0; i < 4; i++) {
		CHECK(conf_int(c, keys[i]) >= 1);
		sum += conf_int(c, keys[i]);
	}
	CHECK(sum <= MAX_SESSIONS);
	CHECK(conf_int(c, "maxperhost") < conf_int(c, "imap_maxchild"));
	CHECK_INT(conf_duration_ms(c, "preauth_timeout"), PREAUTH_TIMEOUT_MAX * 1000LL);
	conf_free(&c);
}

int main(void)
{
	log_open("test_server", 0, LOG_LVL_ERR);
	RUN(default_caps);
	RUN(pause);
	RUN(shared_counts);
	RUN(preauth_deadline);
	RUN(reuse_handoff);
	RUN(reuse_guard);
	return test_done();
}
