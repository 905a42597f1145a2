/* server_authcache_wire.c: the questions a session asks tandemd's cache
 * over its socketpair (SOCK_SEQPACKET: one message each way), and
 * tandemd's answers.
 *
 * A question: op ('L' lookup, 'A' add), three 16-bit big-endian lengths
 * (userid, stored hash, password), then the three strings. A lookup is
 * answered with one byte, 'Y' (cached) or 'N'; an add is not answered.
 * Anything malformed, too long, or past the session's AUTH_CACHE_ASKS is
 * answered 'N' (lookups) or ignored (adds).
 */
#include "server/server_authcache.h"

#include "lib/limits.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define WIRE_HDR 7
#define WIRE_MAX (WIRE_HDR + MAX_USERID + AUTH_CACHE_MAX_HASH + MAX_PASSWORD)

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static size_t get16(const unsigned char *p)
{
	return (size_t)p[0] << 8 | p[1];
}

int server_authcache_serve(struct server_authcache *c, int fd, unsigned *asks, int64_t ttl_ms)
{
	unsigned char m[WIRE_MAX + 1];
	ssize_t n = recv(fd, m, sizeof m, MSG_DONTWAIT);
	if (n < 0 && errno == ECONNRESET) {
		/* the session ended with an answer unread: said once, then what
		 * it sent before is still there to read */
		n = recv(fd, m, sizeof m, MSG_DONTWAIT);
	}
	if (n == 0)
		return -1;
	if (n < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -1;
	char user[MAX_USERID + 1], hash[AUTH_CACHE_MAX_HASH + 1], pw[MAX_PASSWORD + 1];
	int ok = 0;
	if (n >= WIRE_HDR && n <= WIRE_MAX) {
		size_t ul = get16(m + 1), hl = get16(m + 3), pl = get16(m + 5);
		if (ul <= MAX_USERID && hl <= AUTH_CACHE_MAX_HASH && pl <= MAX_PASSWORD &&
		    WIRE_HDR + ul + hl + pl == (size_t)n) {
			memcpy(user, m + WIRE_HDR, ul);
			user[ul] = '\0';
			memcpy(hash, m + WIRE_HDR + ul, hl);
			hash[hl] = '\0';
			memcpy(pw, m + WIRE_HDR + ul + hl, pl);
			pw[pl] = '\0';
			/* a NUL inside a field would make two questions the same */
			ok = strlen(user) == ul && strlen(hash) == hl && strlen(pw) == pl;
		}
	}
	int counted = ++*asks <= AUTH_CACHE_ASKS;
	if (m[0] == 'L' && n >= 1) {
		unsigned char yes = ok && counted && server_authcache_lookup(c, user, hash, pw, mono_ms()) ? 'Y' : 'N';
		if (send(fd, &yes, 1, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
			/* the session is gone or not reading: it falls back to the hash */
		}
	} else if (m[0] == 'A' && ok && counted) {
		server_authcache_add(c, user, hash, pw, mono_ms(), ttl_ms);
	}
	OPENSSL_cleanse(m, (size_t)n);
	OPENSSL_cleanse(pw, sizeof pw);
	return 1;
}

/* Sends one question; for a lookup waits for the answer: 1 cached, 0 not,
 * -1 when the socket failed or tandemd did not answer in time. */
int server_authcache_ask(int fd, char op, const char *user, const char *hash, const char *password)
{
	size_t ul = strlen(user), hl = strlen(hash), pl = strlen(password);
	if (ul > MAX_USERID || hl > AUTH_CACHE_MAX_HASH || pl > MAX_PASSWORD)
		return 0;
	unsigned char m[WIRE_MAX];
	m[0] = (unsigned char)op;
	m[1] = (unsigned char)(ul >> 8);
	m[2] = (unsigned char)ul;
	m[3] = (unsigned char)(hl >> 8);
	m[4] = (unsigned char)hl;
	m[5] = (unsigned char)(pl >> 8);
	m[6] = (unsigned char)pl;
	memcpy(m + WIRE_HDR, user, ul);
	memcpy(m + WIRE_HDR + ul, hash, hl);
	memcpy(m + WIRE_HDR + ul + hl, password, pl);
	size_t len = WIRE_HDR + ul + hl + pl;
	ssize_t w = send(fd, m, len, MSG_NOSIGNAL);
	OPENSSL_cleanse(m, len);
	if (w != (ssize_t)len)
		return -1;
	if (op != 'L')
		return 0;
	struct pollfd pf = { .fd = fd, .events = POLLIN };
	int64_t deadline = mono_ms() + AUTH_CACHE_WAIT_MS;
	for (;;) {
		int64_t left = deadline - mono_ms();
		if (left <= 0)
			return -1;
		int r = poll(&pf, 1, (int)left);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		unsigned char a;
		ssize_t k = recv(fd, &a, 1, 0);
		if (k == 1 && (a == 'Y' || a == 'N'))
			return a == 'Y';
		return -1;
	}
}
