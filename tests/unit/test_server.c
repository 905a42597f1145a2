/* test_server.c: what src/server gives session processes: the pause of a
 * failed login, failures counted across processes (the shared table), the
 * session's close after AUTH_MAX_FAILS, and the login deadline of
 * server_idle_read (what the sync port's pre-login timeout rests on). */
#include "conf/conf.h"
#include "lib/limits.h"
#include "lib/log.h"
#include "server/server.h"
#include "test.h"

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
	return test_done();
}
