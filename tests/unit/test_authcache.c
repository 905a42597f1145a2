/* test_authcache.c: tandemd's verified-login cache (server_authcache.h):
 * hit, miss, a wrong password never hits, TTL expiry, LRU eviction at the
 * size bound, a changed stored hash misses; the socket protocol between a
 * session and tandemd (answers, the per-session question limit, malformed
 * questions); server_authcache_from_conf. */
#include "conf/conf.h"
#include "lib/limits.h"
#include "server/server_authcache.h"
#include "test.h"

#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define H1 "$y$j9T$salt1$hash1"
#define H2 "$y$j9T$salt2$hash2"
#define HOUR (3600LL * 1000)

TEST(hit_and_miss)
{
	struct server_authcache *c = server_authcache_new(16);
	CHECK(c != NULL);
	CHECK_INT(server_authcache_lookup(c, "alice", H1, "pw", 0), 0);
	server_authcache_add(c, "alice", H1, "pw", 0, HOUR);
	CHECK_INT(server_authcache_count(c), 1);
	CHECK_INT(server_authcache_lookup(c, "alice", H1, "pw", 1000), 1);
	CHECK_INT(server_authcache_lookup(c, "alice", H1, "pw", 2000), 1);
	/* another user with the same password and hash string */
	CHECK_INT(server_authcache_lookup(c, "bob", H1, "pw", 1000), 0);
	/* the fields are length-prefixed: no shifting of bytes between them */
	CHECK_INT(server_authcache_lookup(c, "alic", H1, "epw", 1000), 0);
	server_authcache_add(c, "alice", H1, "pw", 0, HOUR);
	CHECK_INT(server_authcache_count(c), 1);
	server_authcache_free(&c);
	CHECK(c == NULL);
}

TEST(wrong_password_never_hits)
{
	struct server_authcache *c = server_authcache_new(16);
	server_authcache_add(c, "alice", H1, "right", 0, HOUR);
	static const char *const wrong[] = { "", "Right", "right ", "righ", "wrong", "right\n" };
	for (size_t i = 0; i < sizeof wrong / sizeof wrong[0]; i++)
		CHECK_INT(server_authcache_lookup(c, "alice", H1, wrong[i], 1), 0);
	CHECK_INT(server_authcache_lookup(c, "alice", H1, "right", 1), 1);
	/* two caches have two keys: nothing carries over */
	struct server_authcache *c2 = server_authcache_new(16);
	CHECK_INT(server_authcache_lookup(c2, "alice", H1, "right", 1), 0);
	server_authcache_free(&c2);
	server_authcache_free(&c);
	/* no cache: never a hit */
	CHECK_INT(server_authcache_lookup(NULL, "alice", H1, "right", 1), 0);
}

TEST(ttl)
{
	struct server_authcache *c = server_authcache_new(4);
	server_authcache_add(c, "alice", H1, "pw", 1000, 5000);
	CHECK_INT(server_authcache_lookup(c, "alice", H1, "pw", 5999), 1);
	/* a hit does not extend the life of an entry */
	CHECK_INT(server_authcache_lookup(c, "alice", H1, "pw", 6000), 0);
	CHECK_INT(server_authcache_count(c), 0);
	CHECK_INT(server_authcache_lookup(c, "alice", H1, "pw", 6001), 0);
	/* added again after its yescrypt: lives again */
	server_authcache_add(c, "alice", H1, "pw", 7000, 5000);
	CHECK_INT(server_authcache_lookup(c, "alice", H1, "pw", 7001), 1);
	CHECK_INT(server_authcache_count(c), 1);
	/* ttl 0 adds nothing */
	server_authcache_add(c, "bob", H1, "pw", 7000, 0);
	CHECK_INT(server_authcache_lookup(c, "bob", H1, "pw", 7000), 0);
	server_authcache_free(&c);
}

TEST(eviction_at_size_bound)
{
	enum { N = 100 };
	struct server_authcache *c = server_authcache_new(N);
	CHECK_INT(server_authcache_capacity(c), N);
	char u[32];
	for (int i = 0; i < N; i++) {
		snprintf(u, sizeof u, "user%d", i);
		server_authcache_add(c, u, H1, "pw", i, HOUR);
	}
	CHECK_INT(server_authcache_count(c), N);
	int hits = 0;
	for (int i = 0; i < N; i++) {
		snprintf(u, sizeof u, "user%d", i);
		hits += server_authcache_lookup(c, u, H1, "pw", N);
	}
	CHECK_INT(hits, N);	/* every one of N fits */
	/* user0 was just used again last-but-N... make user1 the least recently used */
	CHECK_INT(server_authcache_lookup(c, "user0", H1, "pw", N + 1), 1);
	server_authcache_add(c, "newcomer", H1, "pw", N + 2, HOUR);
	CHECK_INT(server_authcache_count(c), N);
	CHECK_INT(server_authcache_lookup(c, "user1", H1, "pw", N + 3), 0);
	CHECK_INT(server_authcache_lookup(c, "user0", H1, "pw", N + 3), 1);
	CHECK_INT(server_authcache_lookup(c, "newcomer", H1, "pw", N + 3), 1);
	CHECK_INT(server_authcache_lookup(c, "user2", H1, "pw", N + 3), 1);
	/* many more: the count stays at the bound, the latest N are there */
	for (int i = 0; i < 5 * N; i++) {
		snprintf(u, sizeof u, "more%d", i);
		server_authcache_add(c, u, H1, "pw", 1000 + i, HOUR);
	}
	CHECK_INT(server_authcache_count(c), N);
	hits = 0;
	for (int i = 4 * N; i < 5 * N; i++) {
		snprintf(u, sizeof u, "more%d", i);
		hits += server_authcache_lookup(c, u, H1, "pw", 2000 + 5 * N);
	}
	CHECK_INT(hits, N);
	CHECK_INT(server_authcache_lookup(c, "more0", H1, "pw", 3000), 0);
	server_authcache_free(&c);
	/* a table of one */
	c = server_authcache_new(1);
	server_authcache_add(c, "a", H1, "pw", 0, HOUR);
	server_authcache_add(c, "b", H1, "pw", 0, HOUR);
	CHECK_INT(server_authcache_lookup(c, "a", H1, "pw", 1), 0);
	CHECK_INT(server_authcache_lookup(c, "b", H1, "pw", 1), 1);
	server_authcache_free(&c);
	CHECK(server_authcache_new(0) == NULL);
	CHECK(server_authcache_new((size_t)(AUTH_CACHE_MAX_SIZE / AUTH_CACHE_ENTRY_BYTES) + 1) == NULL);
}

/* Expired entries are reused before live ones are evicted. */
TEST(expired_slots_reused)
{
	struct server_authcache *c = server_authcache_new(2);
	server_authcache_add(c, "a", H1, "pw", 0, 10);
	server_authcache_add(c, "b", H1, "pw", 0, HOUR);
	CHECK_INT(server_authcache_lookup(c, "a", H1, "pw", 20), 0);	/* expired: dropped */
	CHECK_INT(server_authcache_count(c), 1);
	server_authcache_add(c, "c", H1, "pw", 21, HOUR);
	CHECK_INT(server_authcache_count(c), 2);
	CHECK_INT(server_authcache_lookup(c, "b", H1, "pw", 22), 1);
	CHECK_INT(server_authcache_lookup(c, "c", H1, "pw", 22), 1);
	server_authcache_free(&c);
}

TEST(changed_hash_misses)
{
	struct server_authcache *c = server_authcache_new(16);
	server_authcache_add(c, "alice", H1, "pw", 0, HOUR);
	/* `tandem user passwd` wrote a new hash, even of the same password */
	CHECK_INT(server_authcache_lookup(c, "alice", H2, "pw", 1), 0);
	server_authcache_add(c, "alice", H2, "new", 2, HOUR);
	CHECK_INT(server_authcache_lookup(c, "alice", H2, "new", 3), 1);
	CHECK_INT(server_authcache_lookup(c, "alice", H2, "pw", 3), 0);
	/* the stale entry is there but can never match the stored hash again */
	CHECK_INT(server_authcache_count(c), 2);
	server_authcache_free(&c);
}

/* Fields past the limits are never cached (and never hit). */
TEST(too_long)
{
	struct server_authcache *c = server_authcache_new(4);
	char longhash[AUTH_CACHE_MAX_HASH + 2];
	memset(longhash, 'h', sizeof longhash - 1);
	longhash[sizeof longhash - 1] = '\0';
	server_authcache_add(c, "alice", longhash, "pw", 0, HOUR);
	CHECK_INT(server_authcache_count(c), 0);
	CHECK_INT(server_authcache_lookup(c, "alice", longhash, "pw", 1), 0);
	server_authcache_free(&c);
}

/* The socket: a session asks, "tandemd" (this process) answers. */
TEST(wire)
{
	int sv[2];
	CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) == 0);
	struct server_authcache *c = server_authcache_new(8);
	unsigned asks = 0;
	/* an add is not answered: queue it, then serve it */
	CHECK_INT(server_authcache_ask(sv[1], 'A', "alice", H1, "pw"), 0);
	CHECK_INT(server_authcache_serve(c, sv[0], &asks, HOUR), 1);
	CHECK_INT(server_authcache_count(c), 1);
	/* lookups: ask waits for the answer, so a forked "tandemd" serves
	 * them, from a table of its own (a child has no copy of ours) */
	pid_t pid = fork();
	if (pid == 0) {
		unsigned a = 0;
		struct server_authcache *cc = server_authcache_new(8);
		server_authcache_add(cc, "alice", H1, "pw", 0, 1LL << 40);
		for (int i = 0; i < 3; i++) {
			struct pollfd pf = { .fd = sv[0], .events = POLLIN };
			poll(&pf, 1, 5000);
			server_authcache_serve(cc, sv[0], &a, HOUR);
		}
		_exit(0);
	}
	CHECK_INT(server_authcache_ask(sv[1], 'L', "alice", H1, "pw"), 1);
	CHECK_INT(server_authcache_ask(sv[1], 'L', "alice", H1, "wrong"), 0);
	CHECK_INT(server_authcache_ask(sv[1], 'L', "alice", H2, "pw"), 0);
	int st;
	waitpid(pid, &st, 0);
	/* malformed questions: a lookup is answered "not cached", an add ignored */
	unsigned char bad[] = { 'L', 0, 9, 0, 1, 0, 1, 'a', 'b', 'c' };	/* lengths do not add up */
	CHECK(send(sv[1], bad, sizeof bad, 0) == (ssize_t)sizeof bad);
	CHECK_INT(server_authcache_serve(c, sv[0], &asks, HOUR), 1);
	unsigned char ans = 0;
	CHECK(recv(sv[1], &ans, 1, 0) == 1);
	CHECK_INT(ans, 'N');
	unsigned char nul[] = { 'A', 0, 3, 0, 1, 0, 1, 'a', 0, 'b', 'h', 'p' };	/* a NUL inside the userid */
	CHECK(send(sv[1], nul, sizeof nul, 0) == (ssize_t)sizeof nul);
	CHECK_INT(server_authcache_serve(c, sv[0], &asks, HOUR), 1);
	CHECK_INT(server_authcache_count(c), 1);
	/* past AUTH_CACHE_ASKS questions of one session: no more hits, no adds */
	while (asks < AUTH_CACHE_ASKS) {
		CHECK_INT(server_authcache_ask(sv[1], 'A', "filler", H1, "pw"), 0);
		CHECK_INT(server_authcache_serve(c, sv[0], &asks, HOUR), 1);
	}
	CHECK_INT(server_authcache_ask(sv[1], 'A', "late", H1, "pw"), 0);
	CHECK_INT(server_authcache_serve(c, sv[0], &asks, HOUR), 1);
	CHECK_INT(server_authcache_lookup(c, "late", H1, "pw", 0), 0);
	unsigned char q[] = { 'L', 0, 5, 0, (unsigned char)strlen(H1), 0, 2 };
	struct iovec iov[4] = { { q, sizeof q }, { (void *)"alice", 5 }, { (void *)H1, strlen(H1) }, { (void *)"pw", 2 } };
	struct msghdr mh = { .msg_iov = iov, .msg_iovlen = 4 };
	CHECK(sendmsg(sv[1], &mh, 0) > 0);
	CHECK_INT(server_authcache_serve(c, sv[0], &asks, HOUR), 1);
	CHECK(recv(sv[1], &ans, 1, 0) == 1);
	CHECK_INT(ans, 'N');	/* cached, but this session asked too much */
	/* nothing waiting */
	CHECK_INT(server_authcache_serve(c, sv[0], &asks, HOUR), 0);
	/* an add still queued when the session has gone is read, then the end */
	asks = 0;
	CHECK_INT(server_authcache_ask(sv[1], 'A', "last", H1, "pw"), 0);
	close(sv[1]);
	CHECK_INT(server_authcache_serve(c, sv[0], &asks, HOUR), 1);
	CHECK_INT(server_authcache_lookup(c, "last", H1, "pw", 0), 1);
	/* the session hung up: serve says so */
	CHECK_INT(server_authcache_serve(c, sv[0], &asks, HOUR), -1);
	close(sv[0]);
	server_authcache_free(&c);
}

/* A forked child has no copy of the table (MADV_DONTFORK): touching it
 * there faults; server_authcache_forget just drops the pointer. */
static void on_segv(int sig)
{
	(void)sig;
	_exit(4);
}

TEST(not_in_children)
{
	struct server_authcache *c = server_authcache_new(8);
	server_authcache_add(c, "alice", H1, "pw", 0, HOUR);
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		struct server_authcache *mine = c;
		server_authcache_forget(&mine);
		if (mine != NULL)
			_exit(2);
		/* the table is not mapped here: this read faults (quietly, also
		 * under ASan) */
		signal(SIGSEGV, on_segv);
		_exit(server_authcache_count(c) == 1 ? 0 : 3);
	}
	int st = 0;
	waitpid(pid, &st, 0);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 4);
	CHECK_INT(server_authcache_lookup(c, "alice", H1, "pw", 1), 1);	/* still ours */
	server_authcache_free(&c);
}

/* A session whose tandemd does not answer gives up (-1), not a hit. */
TEST(wire_no_answer)
{
	int sv[2];
	CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) == 0);
	close(sv[0]);
	CHECK_INT(server_authcache_ask(sv[1], 'L', "alice", H1, "pw"), -1);
	close(sv[1]);
}

static struct conf *make_conf(const char *text)
{
	struct terr err = { 0 };
	struct conf *c = NULL;
	struct conf_parser *p = conf_parser_new("t.conf");
	if (conf_parser_feed(p, text, strlen(text), &err) < 0) {
		printf("  conf (expected for the bad ones): %s\n", err.msg);
		conf_parser_free(&p);
		return NULL;
	}
	if (conf_parser_finish(p, &c, &err) < 0) {
		printf("  conf (expected for the bad ones): %s\n", err.msg);
		return NULL;
	}
	return c;
}

TEST(from_conf)
{
	struct conf *conf = make_conf("configdirectory: /tmp/x\npartition-default: /tmp/y\n");
	struct server_authcache *c = server_authcache_from_conf(conf);
	CHECK_INT(server_authcache_capacity(c), 1024 * 1024 / AUTH_CACHE_ENTRY_BYTES);	/* 1M by default */
	CHECK_INT(conf_duration_ms(conf, "auth_cache_ttl"), HOUR);
	server_authcache_free(&c);
	conf_free(&conf);
	conf = make_conf("configdirectory: /tmp/x\npartition-default: /tmp/y\nauth_cache_size: 0\n");
	CHECK(server_authcache_from_conf(conf) == NULL);
	conf_free(&conf);
	conf = make_conf("configdirectory: /tmp/x\npartition-default: /tmp/y\nauth_cache_size: 10\n");
	c = server_authcache_from_conf(conf);
	CHECK_INT(server_authcache_capacity(c), 1);
	server_authcache_free(&c);
	conf_free(&conf);
	CHECK(make_conf("configdirectory: /tmp/x\npartition-default: /tmp/y\nauth_cache_size: 65G\n") == NULL);
	CHECK(make_conf("configdirectory: /tmp/x\npartition-default: /tmp/y\nauth_cache_ttl: 2d\n") == NULL);
}

int main(void)
{
	RUN(hit_and_miss);
	RUN(wrong_password_never_hits);
	RUN(ttl);
	RUN(eviction_at_size_bound);
	RUN(expired_slots_reused);
	RUN(changed_hash_misses);
	RUN(too_long);
	RUN(wire);
	RUN(wire_no_answer);
	RUN(not_in_children);
	RUN(from_conf);
	return test_done();
}
