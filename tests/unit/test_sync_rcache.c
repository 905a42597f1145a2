/* test_sync_rcache.c: the sync client's cache of replica mailbox headers
 * (sync_client_cache.c) and its index by name, against a model: seeded
 * random puts, re-puts and drops of names that collide in the index; after
 * every step the cache holds exactly the model's names, each once, with
 * the model's header. The seed is printed on a failure
 * (TANDEM_SEED=N reruns one). */
#include "sync/sync_client-private.h"
#include "sync/sync_client.h"
#include "test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NAMES 700

static struct dlist *mailbox(unsigned uid)
{
	static const char *const keys[] = { "UNIQUEID", "LAST_UID", "HIGHESTMODSEQ", "UIDVALIDITY", "SYNC_CRC",
					    "SYNC_CRC_ANNOT", "ACL", "RECENTUID", "OPTIONS" };
	struct dlist *mb = dlist_new(DL_KVLIST, "MAILBOX");
	char v[32];
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
		snprintf(v, sizeof v, "%u", i == 1 ? uid : 7u);
		dlist_add_str(mb, keys[i], v);
	}
	return mb;
}

/* 0 when sc holds exactly the model (have[i]: name i cached with
 * LAST_UID uid[i]); the headers themselves are rebuilt and checked only
 * when full (every step would make ~10^8 allocations: minutes under ASan) */
static int same(struct syncc *sc, const int *have, const unsigned *uid, int full)
{
	int seen[NAMES] = { 0 };
	size_t want = 0;
	for (int i = 0; i < NAMES; i++)
		want += have[i] != 0;
	if (sc->nrcache != want)
		return 1;
	for (size_t k = 0; k < sc->nrcache; k++) {
		int i = atoi(sc->rcache[k].name + strlen("user.u"));
		if (i < 0 || i >= NAMES || !have[i] || seen[i]++)
			return 2;
		if (!full)
			continue;
		struct dlist *hdr = syncc_rstate_hdr(&sc->rcache[k]);
		const char *v = dlist_cstr(dlist_get(hdr, "LAST_UID")), *o = dlist_cstr(dlist_get(hdr, "OPTIONS"));
		int bad = !v || strtoul(v, NULL, 10) != uid[i] || !o || strcmp(o, "7") || hdr->n != 9;
		dlist_free(&hdr);
		if (bad)
			return 3;
	}
	return 0;
}

static int run_seed(unsigned seed)
{
	struct syncc sc;
	memset(&sc, 0, sizeof sc);
	int have[NAMES] = { 0 };
	unsigned uid[NAMES] = { 0 };
	srand(seed);
	int rc = 0;
	for (int step = 0; step < 20000 && !rc; step++) {
		int i = rand() % NAMES, op = rand() % 10;
		char name[32];
		snprintf(name, sizeof name, "user.u%d", i);
		if (op < 6) {
			struct dlist *mb = mailbox((unsigned)step);
			syncc_rcache_put(&sc, name, mb);
			dlist_free(&mb);
			have[i] = 1;
			uid[i] = (unsigned)step;
		} else if (op < 9) {
			syncc_rcache_drop(&sc, name);
			have[i] = 0;
		} else if (rand() % 200 == 0) {
			syncc_rcache_clear(&sc);
			memset(have, 0, sizeof have);
		}
		if ((rc = same(&sc, have, uid, step % 97 == 0 || step == 19999)) != 0)
			fprintf(stderr, "rcache: seed %u step %d: cache differs from the model (%d)\n", seed, step, rc);
	}
	syncc_rcache_clear(&sc);
	return rc;
}

TEST(cache_follows_model)
{
	const char *env = getenv("TANDEM_SEED");
	if (env) {
		CHECK_INT(run_seed((unsigned)strtoul(env, NULL, 10)), 0);
		return;
	}
	for (unsigned seed = 1; seed <= 20; seed++)
		CHECK_INT(run_seed(seed), 0);
}

TEST(header_without_a_key_drops_the_entry)
{
	struct syncc sc;
	memset(&sc, 0, sizeof sc);
	struct dlist *mb = mailbox(5);
	syncc_rcache_put(&sc, "user.a", mb);
	syncc_rcache_put(&sc, "user.b", mb);
	CHECK_INT(sc.nrcache, 2);
	struct dlist *partial = dlist_new(DL_KVLIST, "MAILBOX");
	dlist_add_str(partial, "UNIQUEID", "x");
	syncc_rcache_put(&sc, "user.a", partial);
	CHECK_INT(sc.nrcache, 1);
	CHECK_STR(sc.rcache[0].name, "user.b");
	syncc_rcache_drop(&sc, "user.b");
	syncc_rcache_drop(&sc, "user.nobody");
	CHECK_INT(sc.nrcache, 0);
	dlist_free(&partial);
	dlist_free(&mb);
	syncc_rcache_clear(&sc);
}

int main(void)
{
	RUN(cache_follows_model);
	RUN(header_without_a_key_drops_the_entry);
	return test_done();
}
