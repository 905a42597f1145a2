/* sync_client_wire.c: the sync client's wire: sending commands (pipelined, or
 * one round trip) and reading their answers through the transport
 * (src/sync/sync_transport.h: csync, IMAP or the in-process pipe). */
#include "sync/sync_client.h"
#include "sync/sync_client-private.h"

#include "conf/conf.h"
#include "lib/log.h"
#include "sync/sync_transport.h"

#include <stdio.h>
#include <string.h>

/* Sends sc->out as one command (queued on the transport, not flushed). */
void syncc_send(struct syncc *sc)
{
	if (sc->o.verbose)
		log_debug("event=sync_send channel=%s bytes=%zu command=\"%.120s\"", sc->channel, sc->out.len,
			  buf_cstr(&sc->out));
	sync_transport_send_refs(sc->t, sc->out.ptr, sc->out.len, &sc->refs);
	sc->since_restart = !strncmp(sc->out.ptr, "RESTART", 7) ? 0 : sc->since_restart + 1;
	sc->stats.bytes_sent += sc->out.len;
	for (size_t i = 0; i < sc->refs.n; i++)
		sc->stats.bytes_sent += sc->refs.v[i].hdr.size;
	sc->stats.commands++;
	buf_reset(&sc->out);
	dlist_refs_reset(&sc->refs);
}

int syncc_flush(struct syncc *sc, struct terr *err)
{
	return sync_transport_flush(sc->t, err);
}

/* The error of a NO or BAD completion: TE_CHECKSUM, TE_CHANGED, TE_MOVED,
 * TE_NOTFOUND from Cyrus's token, TE_PERM for any other NO, TE_IO for BAD. */
static int completion_error(const char *text, struct terr *err)
{
	enum terr_code code = TE_IO;
	if (strstr(text, "IMAP_SYNC_CHECKSUM"))
		code = TE_CHECKSUM;
	else if (strstr(text, "IMAP_SYNC_CHANGED"))
		code = TE_CHANGED;
	else if (strstr(text, "IMAP_MAILBOX_MOVED"))
		code = TE_MOVED;
	else if (strstr(text, "IMAP_MAILBOX_NONEXISTENT"))
		code = TE_NOTFOUND;
	else if (!strncmp(text, "NO", 2))
		code = TE_PERM;
	return terr_set(err, code, "replica: %s", text);
}

int syncc_recv(struct syncc *sc, data_fn *cb, void *rock, struct terr *err)
{
	struct sync_reply rep = { NULL, BUF_INIT };
	int rc = -1;
	for (;;) {
		if (sync_transport_recv(sc->t, &rep, err) < 0)
			break;
		if (rep.data) {
			if (cb)
				cb(rock, rep.data);
			dlist_free(&rep.data);
			continue;
		}
		const char *text = buf_cstr(&rep.text);
		rc = !strncmp(text, "OK", 2) ? 0 : completion_error(text, err);
		break;
	}
	sync_reply_free(&rep);
	return rc;
}

int syncc_roundtrip(struct syncc *sc, data_fn *cb, void *rock, struct terr *err)
{
	syncc_send(sc);
	if (syncc_flush(sc, err) < 0)
		return -1;
	sc->stats.roundtrips++;
	return syncc_recv(sc, cb, rock, err);
}

static void cmd_begin(struct syncc *sc, const char *verb)
{
	buf_reset(&sc->out);
	dlist_refs_reset(&sc->refs);
	buf_appends(&sc->out, verb);
	buf_putc(&sc->out, ' ');
}

void syncc_cmd_dlist(struct syncc *sc, const char *verb, const struct dlist *d)
{
	cmd_begin(sc, verb);
	dlist_print_refs(&sc->out, d, DLIST_LIT_CLIENT, &sc->refs);
	buf_appends(&sc->out, "\r\n");
}

int syncc_simple(struct syncc *sc, const char *line, struct terr *err)
{
	buf_reset(&sc->out);
	dlist_refs_reset(&sc->refs);
	buf_appends(&sc->out, line);
	buf_appends(&sc->out, "\r\n");
	return syncc_roundtrip(sc, NULL, NULL, err);
}
