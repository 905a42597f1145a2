/* server_auth.c: failed logins counted across every session process, per
 * user and per client address, and the pause they cost.
 *
 * The table: tandemd maps one small shared anonymous memory region
 * (server_authfail_init, before it forks any session), so every session
 * process of the instance sees the same counts without a file or a lock
 * left on disk. AUTH_FAIL_SLOTS entries of (key, failures, last failure);
 * the key is a 64-bit FNV-1a hash of "u:<user>" or "a:<address>" (a
 * collision only costs an innocent a longer pause). A count not bumped
 * for AUTH_FAIL_WINDOW_S is forgotten; when the slots of a probe run are
 * all taken the oldest is reused. A process-shared robust mutex guards
 * it (a session that dies holding it leaves it usable). The counts live
 * as long as tandemd: a restart forgets them (documented).
 *
 * The pause of a failure: failedloginpause x 2^(n-1), n the larger of the
 * user's and the address's counts (this failure included), at most
 * AUTH_FAIL_PAUSE_MAX_MS. A session is closed after its AUTH_MAX_FAILS-th
 * failure. A login clears the user's count (not the address's: a guesser
 * who owns one account could clear its own count otherwise).
 *
 * Without the table (`tandem` commands, unit tests) only the per-session
 * count and the base pause apply.
 */
#include "server/server.h"

#include "conf/conf.h"
#include "lib/limits.h"
#include "lib/log.h"
#include "stats/stats.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

struct authfail_slot {
	uint64_t key;
	uint32_t fails;
	int64_t last;	/* CLOCK_MONOTONIC seconds */
};

struct authfail_table {
	pthread_mutex_t lock;
	struct authfail_slot slot[AUTH_FAIL_SLOTS];
};

/* How many slots one key may probe. */
#define AUTH_FAIL_PROBE 16

static struct authfail_table *table;
static int session_fails;

int server_authfail_init(void)
{
	if (table)
		return 0;
	void *p = mmap(NULL, sizeof *table, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return -1;
	struct authfail_table *t = p;
	pthread_mutexattr_t a;
	pthread_mutexattr_init(&a);
	pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
	pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
	int rc = pthread_mutex_init(&t->lock, &a);
	pthread_mutexattr_destroy(&a);
	if (rc != 0) {
		munmap(p, sizeof *table);
		return -1;
	}
	table = t;
	return 0;
}

static int64_t now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec;
}

static uint64_t key_of(char kind, const char *s)
{
	uint64_t h = 14695981039346656037ULL;
	const unsigned char pre[2] = { (unsigned char)kind, ':' };
	for (int i = 0; i < 2; i++)
		h = (h ^ pre[i]) * 1099511628211ULL;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		h = (h ^ *p) * 1099511628211ULL;
	return h ? h : 1;
}

static void lock_table(void)
{
	if (pthread_mutex_lock(&table->lock) == EOWNERDEAD)
		pthread_mutex_consistent(&table->lock);
}

/* The slot of key (table locked): found, else a free, expired or the
 * oldest one of its probe run, reset for key. */
static struct authfail_slot *slot_of(uint64_t key, int64_t now)
{
	struct authfail_slot *victim = NULL;
	for (unsigned i = 0; i < AUTH_FAIL_PROBE; i++) {
		struct authfail_slot *e = &table->slot[(key + i) % AUTH_FAIL_SLOTS];
		if (e->key == key) {
			if (now - e->last > AUTH_FAIL_WINDOW_S)
				e->fails = 0;
			return e;
		}
		if (!e->key || now - e->last > AUTH_FAIL_WINDOW_S) {
			if (!victim || victim->key)
				victim = e;
		} else if (!victim || (victim->key && e->last < victim->last)) {
			victim = e;
		}
	}
	victim->key = key;
	victim->fails = 0;
	victim->last = now;
	return victim;
}

/* Bumps the counts of user and address: (user's, address's) after. */
static void bump(const char *user, const char *addr, unsigned *ufails, unsigned *afails)
{
	*ufails = *afails = (unsigned)session_fails;
	if (!table)
		return;
	int64_t now = now_s();
	lock_table();
	struct authfail_slot *u = slot_of(key_of('u', user), now);
	u->fails++;
	u->last = now;
	*ufails = u->fails;
	if (*addr) {
		struct authfail_slot *a = slot_of(key_of('a', addr), now);
		a->fails++;
		a->last = now;
		*afails = a->fails;
	} else {
		*afails = 0;	/* a unix socket: one address for every local client */
	}
	pthread_mutex_unlock(&table->lock);
}

static unsigned count_of(uint64_t key, int64_t now)
{
	for (unsigned i = 0; i < AUTH_FAIL_PROBE; i++) {
		const struct authfail_slot *e = &table->slot[(key + i) % AUTH_FAIL_SLOTS];
		if (e->key == key)
			return now - e->last > AUTH_FAIL_WINDOW_S ? 0 : e->fails;
	}
	return 0;
}

void server_auth_counts(const char *user, const char *addr, unsigned *user_r, unsigned *addr_r)
{
	*user_r = *addr_r = 0;
	if (!table)
		return;
	int64_t now = now_s();
	lock_table();
	*user_r = count_of(key_of('u', user ? user : ""), now);
	*addr_r = addr && *addr ? count_of(key_of('a', addr), now) : 0;
	pthread_mutex_unlock(&table->lock);
}

long long server_auth_pause_ms(long long base_ms, unsigned fails)
{
	if (base_ms <= 0 || fails == 0)
		return base_ms > 0 ? base_ms : 0;
	long long ms = base_ms;
	for (unsigned i = 1; i < fails && ms < AUTH_FAIL_PAUSE_MAX_MS; i++)
		ms *= 2;
	return ms < AUTH_FAIL_PAUSE_MAX_MS ? ms : AUTH_FAIL_PAUSE_MAX_MS;
}

int server_auth_failed(const struct service_env *env, const char *user, const char *reason)
{
	session_fails++;
	stats_count_auth_failure(env->service);
	unsigned uf, af;
	bump(user ? user : "", env->peer_addr, &uf, &af);
	long long ms = server_auth_pause_ms(conf_duration_ms(env->conf, "failedloginpause"), uf > af ? uf : af);
	char q[LOGQ_MAX];
	log_notice("event=auth_fail service=%s session=%s addr=%s user=%s reason=%s session_fails=%d user_fails=%u"
		   " addr_fails=%u pause_ms=%lld", env->service, env->session_id, *env->peer_addr ? env->peer_addr : "unix",
		   logq(q, user ? user : ""), reason ? reason : "bad_credentials", session_fails, uf, af, ms);
	struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L };
	while (ms > 0 && nanosleep(&ts, &ts) < 0 && !server_stop_requested) {
	}
	return session_fails >= AUTH_MAX_FAILS;
}

int server_auth_session_failures(void)
{
	return session_fails;
}

void server_auth_session_reset(void)
{
	session_fails = 0;
}

void server_auth_succeeded(const struct service_env *env, const char *user)
{
	(void)env;
	server_preauth_arm(0);
	if (!table || !user)
		return;
	int64_t now = now_s();
	uint64_t key = key_of('u', user);
	lock_table();
	for (unsigned i = 0; i < AUTH_FAIL_PROBE; i++) {
		struct authfail_slot *e = &table->slot[(key + i) % AUTH_FAIL_SLOTS];
		if (e->key == key) {
			e->fails = 0;
			e->last = now;
			break;
		}
	}
	pthread_mutex_unlock(&table->lock);
}
