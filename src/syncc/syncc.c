/* syncc.c: the sync client's lifecycle (see syncc.h): creating one,
 * disconnecting, freeing, its statistics. The work is in the other
 * syncc_*.c files (shared declarations in syncc-private.h). */
#include "sync/sync_client.h"
#include "sync/sync_client-private.h"

#include "lib/xalloc.h"
#include "store/store.h"
#include "sync/sync_transport.h"

#include <openssl/ssl.h>
#include <stdio.h>

struct syncc *syncc_new(const struct conf *conf, struct store *st, const struct syncc_opts *o)
{
	struct syncc *sc = xcalloc(1, sizeof *sc);
	sc->conf = conf;
	sc->st = st;
	sc->o = *o;
	sc->blobs = (struct store_blobdir)STORE_BLOBDIR_INIT;
	/* its own writes (split-brain copy-back) never wait for a replica:
	 * for the rightnow channel's client they would wait for itself */
	if (st)
		store_set_after_commit(st, NULL, NULL);
	snprintf(sc->channel, sizeof sc->channel, "%s", o->channel ? o->channel : "");
	return sc;
}

void syncc_disconnect(struct syncc *sc)
{
	if (sc->t)
		syncc_pub_state(sc, "connecting", 0, NULL);
	sync_transport_close(&sc->t);
}

void syncc_free(struct syncc **scp)
{
	struct syncc *sc = *scp;
	if (!sc)
		return;
	syncc_disconnect(sc);
	syncc_rn_close(sc);
	if (sc->tls)
		SSL_CTX_free(sc->tls);
	buf_free(&sc->out);
	dlist_refs_free(&sc->refs);
	store_blobdir_close(&sc->blobs);
	syncc_items_free(&sc->diffs);
	syncc_items_free(&sc->copied);
	syncc_items_free(&sc->renumbered);
	syncc_items_free(&sc->repaired);
	syncc_items_free(&sc->kept);
	syncc_items_free(&sc->renamed);
	syncc_items_free(&sc->remaining);
	syncc_rcache_clear(sc);
	syncc_work_clear(sc);
	free(sc);
	*scp = NULL;
}

void syncc_get_stats(const struct syncc *sc, struct syncc_stats *out)
{
	*out = sc->stats;
}
