/* server_authcache.c: the table of tandemd's verified-credentials cache
 * (server_authcache.h has the design).
 *
 * One private anonymous mapping holds the header (with the HMAC key), the
 * entries and the hash buckets, marked MADV_DONTFORK: a forked child does
 * not get it at all (where the kernel refuses that, the child drops its
 * copy with one munmap). Entries are found by their HMAC (uniformly random: its first
 * bytes pick the bucket), chained per bucket, and kept on an LRU list;
 * a full table reuses the least recently used entry. Indexes, not
 * pointers, link them (AC_NIL ends a list).
 */
#include "server/server_authcache.h"

#include "conf/conf.h"
#include "lib/limits.h"
#include "lib/log.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <string.h>
#include <sys/mman.h>

#define AC_NIL UINT32_MAX
#define AC_MAC 32

struct ac_entry {
	unsigned char mac[AC_MAC];
	int64_t expires;	/* CLOCK_MONOTONIC ms */
	uint32_t prev, next;	/* LRU list, most recent first */
	uint32_t hnext;		/* bucket chain */
};

_Static_assert(sizeof(struct ac_entry) + sizeof(uint32_t) <= AUTH_CACHE_ENTRY_BYTES,
	       "AUTH_CACHE_ENTRY_BYTES must cover an entry and its bucket");

struct server_authcache {
	size_t maplen;
	unsigned char key[AC_MAC];
	uint32_t cap, count, nbuckets;
	uint32_t head, tail;	/* LRU ends */
	uint32_t nused;		/* entries [0, nused) have been handed out */
	uint32_t *bucket;
	struct ac_entry *e;
};

/* The tables of this process are not inherited by a fork (MADV_DONTFORK
 * took); else a child unmaps its copy. */
static int dontfork;

struct server_authcache *server_authcache_new(size_t nentries)
{
	if (nentries < 1 || nentries > (size_t)(AUTH_CACHE_MAX_SIZE / AUTH_CACHE_ENTRY_BYTES))
		return NULL;
	uint32_t nb = 1;
	while (nb < nentries)
		nb <<= 1;
	size_t hdr = (sizeof(struct server_authcache) + 63) & ~(size_t)63;
	size_t len = hdr + nentries * sizeof(struct ac_entry) + (size_t)nb * sizeof(uint32_t);
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	madvise(p, len, MADV_DONTDUMP);	/* no verifiers in a core file */
	/* not in any child at all: nothing to unmap after a fork, no page
	 * table entries copied by it */
	dontfork = madvise(p, len, MADV_DONTFORK) == 0;
	struct server_authcache *c = p;
	c->maplen = len;
	if (RAND_bytes(c->key, sizeof c->key) != 1) {
		munmap(p, len);
		return NULL;
	}
	c->cap = (uint32_t)nentries;
	c->nbuckets = nb;
	c->head = c->tail = AC_NIL;
	c->e = (struct ac_entry *)((char *)p + hdr);
	c->bucket = (uint32_t *)(c->e + nentries);
	for (uint32_t i = 0; i < nb; i++)
		c->bucket[i] = AC_NIL;
	return c;
}

struct server_authcache *server_authcache_from_conf(const struct conf *conf)
{
	long long size = conf_int(conf, "auth_cache_size");
	if (size <= 0)
		return NULL;
	size_t n = (size_t)(size / AUTH_CACHE_ENTRY_BYTES);
	struct server_authcache *c = server_authcache_new(n ? n : 1);
	if (!c)
		log_err("event=auth_cache_fail size=%lld error=\"%s\" note=\"every login verifies the hash\"", size,
			strerror(errno ? errno : ENOMEM));
	return c;
}

void server_authcache_free(struct server_authcache **c)
{
	if (!*c)
		return;
	size_t len = (*c)->maplen;
	OPENSSL_cleanse(*c, len);
	munmap(*c, len);
	*c = NULL;
}

void server_authcache_forget(struct server_authcache **c)
{
	if (!*c)
		return;
	if (!dontfork)
		munmap(*c, (*c)->maplen);
	*c = NULL;
}

size_t server_authcache_capacity(const struct server_authcache *c)
{
	return c ? c->cap : 0;
}

size_t server_authcache_count(const struct server_authcache *c)
{
	return c ? c->count : 0;
}

static void put_field(unsigned char *b, size_t *off, const char *s, size_t n)
{
	b[(*off)++] = (unsigned char)(n >> 8);
	b[(*off)++] = (unsigned char)n;
	memcpy(b + *off, s, n);
	*off += n;
}

/* The entry's name; 0, or -1 when a field is too long to be cached. */
static int mac_of(const struct server_authcache *c, const char *user, const char *hash, const char *password,
		  unsigned char mac[AC_MAC])
{
	size_t ul = strlen(user), hl = strlen(hash), pl = strlen(password);
	if (ul > MAX_USERID || hl > AUTH_CACHE_MAX_HASH || pl > MAX_PASSWORD)
		return -1;
	unsigned char b[6 + MAX_USERID + AUTH_CACHE_MAX_HASH + MAX_PASSWORD];
	size_t off = 0;
	put_field(b, &off, user, ul);
	put_field(b, &off, hash, hl);
	put_field(b, &off, password, pl);
	unsigned int n = 0;
	int ok = HMAC(EVP_sha256(), c->key, (int)sizeof c->key, b, off, mac, &n) != NULL && n == AC_MAC;
	OPENSSL_cleanse(b, off);
	return ok ? 0 : -1;
}

static uint32_t bucket_of(const struct server_authcache *c, const unsigned char mac[AC_MAC])
{
	uint32_t h = (uint32_t)mac[0] | (uint32_t)mac[1] << 8 | (uint32_t)mac[2] << 16 | (uint32_t)mac[3] << 24;
	return h & (c->nbuckets - 1);
}

static void lru_unlink(struct server_authcache *c, uint32_t i)
{
	struct ac_entry *x = &c->e[i];
	if (x->prev != AC_NIL)
		c->e[x->prev].next = x->next;
	else
		c->head = x->next;
	if (x->next != AC_NIL)
		c->e[x->next].prev = x->prev;
	else
		c->tail = x->prev;
}

static void lru_push(struct server_authcache *c, uint32_t i)
{
	struct ac_entry *x = &c->e[i];
	x->prev = AC_NIL;
	x->next = c->head;
	if (c->head != AC_NIL)
		c->e[c->head].prev = i;
	c->head = i;
	if (c->tail == AC_NIL)
		c->tail = i;
}

static void chain_unlink(struct server_authcache *c, uint32_t i)
{
	uint32_t *p = &c->bucket[bucket_of(c, c->e[i].mac)];
	while (*p != AC_NIL && *p != i)
		p = &c->e[*p].hnext;
	if (*p == i)
		*p = c->e[i].hnext;
}

static uint32_t find(const struct server_authcache *c, const unsigned char mac[AC_MAC])
{
	for (uint32_t i = c->bucket[bucket_of(c, mac)]; i != AC_NIL; i = c->e[i].hnext)
		if (CRYPTO_memcmp(c->e[i].mac, mac, AC_MAC) == 0)
			return i;
	return AC_NIL;
}

int server_authcache_lookup(struct server_authcache *c, const char *user, const char *hash, const char *password,
			    int64_t now_ms)
{
	unsigned char mac[AC_MAC];
	if (!c || mac_of(c, user, hash, password, mac) < 0)
		return 0;
	uint32_t i = find(c, mac);
	if (i == AC_NIL)
		return 0;
	lru_unlink(c, i);
	if (c->e[i].expires <= now_ms) {
		/* expired: dropped, its slot goes to the end of the list */
		chain_unlink(c, i);
		OPENSSL_cleanse(c->e[i].mac, AC_MAC);
		c->e[i].expires = INT64_MIN;
		c->count--;
		struct ac_entry *x = &c->e[i];
		x->next = AC_NIL;
		x->prev = c->tail;
		if (c->tail != AC_NIL)
			c->e[c->tail].next = i;
		c->tail = i;
		if (c->head == AC_NIL)
			c->head = i;
		return 0;
	}
	lru_push(c, i);
	return 1;
}

void server_authcache_add(struct server_authcache *c, const char *user, const char *hash, const char *password,
			  int64_t now_ms, int64_t ttl_ms)
{
	unsigned char mac[AC_MAC];
	if (!c || ttl_ms <= 0 || mac_of(c, user, hash, password, mac) < 0)
		return;
	uint32_t i = find(c, mac);
	if (i != AC_NIL) {
		lru_unlink(c, i);
	} else {
		if (c->nused < c->cap) {
			i = c->nused++;
		} else {
			/* the least recently used (or a dropped) entry */
			i = c->tail;
			lru_unlink(c, i);
			if (c->e[i].expires != INT64_MIN) {
				chain_unlink(c, i);
				c->count--;
			}
		}
		memcpy(c->e[i].mac, mac, AC_MAC);
		uint32_t b = bucket_of(c, mac);
		c->e[i].hnext = c->bucket[b];
		c->bucket[b] = i;
		c->count++;
	}
	c->e[i].expires = now_ms + ttl_ms;
	lru_push(c, i);
	OPENSSL_cleanse(mac, sizeof mac);
}
