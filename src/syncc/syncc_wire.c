/* syncc_wire.c: the sync client's wire: reading framed responses,
 * sending commands (pipelined, or one round trip) and the IMAP
 * transport's wrapping of them (SYNCGET/SYNCAPPLY, tags). */
#include "syncc/syncc.h"
#include "syncc/syncc-private.h"

#include "conf/conf.h"
#include "lib/log.h"
#include "net/conn.h"

#include <stdio.h>
#include <string.h>

/* Reads one framed response line into *line (owned by the caller). */
static int read_line(struct syncc *sc, struct dlist **line_r, struct buf *raw, struct terr *err)
{
	struct dlist_frame f;
	dlist_frame_init(&f);
	long long timeout = conf_duration_ms(sc->conf, "sync_timeout");
	for (;;) {
		long long n = dlist_frame_scan(&f, sc->in.ptr ? sc->in.ptr : "", sc->in.len, err);
		if (n < 0)
			return -1;
		if (n > 0) {
			buf_reset(raw);
			buf_append(raw, sc->in.ptr, (size_t)n);
			buf_consume(&sc->in, (size_t)n);
			return dlist_parse(raw->ptr, raw->len, line_r, err);
		}
		ssize_t r = conn_read(sc->c, &sc->in, (int)timeout, err);
		if (r == 0)
			return terr_set(err, TE_IO, "the replica closed the connection");
		if (r < 0)
			return -1;
	}
}

/* Sends sc->out as one command and reads its response: data lines go to
 * data_cb; returns 0 on OK, -1 with err (TE_CHECKSUM, TE_CHANGED,
 * TE_MOVED, TE_NOTFOUND from the NO code; TE_IO on the connection). */

/* Writes sc->out as the IMAP transport's command: "GET x" becomes
 * "S<n> SYNCGET x", RESTART "S<n> SYNCRESTART", NOOP "N01 NOOP", EXIT
 * "Q01 LOGOUT"; AUTHENTICATE/STARTTLS/CAPABILITY get A01/S01/C01 (the
 * fixed tags of Cyrus's client). sc->tag gets the tag to expect. */
static void imap_wrap(struct syncc *sc)
{
	static const struct { const char *verb, *tag, *imap; } fixed[] = {
		{ "NOOP", "N01", "NOOP" }, { "EXIT", "Q01", "LOGOUT" },
		{ "AUTHENTICATE", "A01", "AUTHENTICATE" }, { "STARTTLS", "S01", "STARTTLS" },
		{ "CAPABILITY", "C01", "CAPABILITY" },
	};
	size_t vl = strcspn(sc->out.ptr, " \r\n");
	const char *rest = sc->out.ptr + vl;
	const char *imapverb = NULL;
	for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
		if (strlen(fixed[i].verb) == vl && !strncmp(sc->out.ptr, fixed[i].verb, vl)) {
			snprintf(sc->tag, sizeof sc->tag, "%s", fixed[i].tag);
			imapverb = fixed[i].imap;
		}
	char head[64];
	if (imapverb) {
		snprintf(head, sizeof head, "%s %s", sc->tag, imapverb);
	} else {
		snprintf(sc->tag, sizeof sc->tag, "S%lu", sc->tagn++);
		snprintf(head, sizeof head, "%s SYNC%.*s", sc->tag, (int)vl, sc->out.ptr);
	}
	conn_puts(sc->c, head);
	conn_write(sc->c, rest, sc->out.len - vl);
}

void syncc_send(struct syncc *sc)
{
	if (sc->o.verbose)
		log_debug("event=sync_send channel=%s bytes=%zu command=\"%.120s\"", sc->channel, sc->out.len,
			  buf_cstr(&sc->out));
	if (sc->imap) {
		imap_wrap(sc);
	} else {
		sc->tag[0] = '\0';
		conn_write(sc->c, sc->out.ptr, sc->out.len);
	}
	if (sc->pcount < SYNCC_MAX_PIPELINE) {
		size_t slot = (sc->pfirst + sc->pcount++) % SYNCC_MAX_PIPELINE;
		snprintf(sc->ptags[slot], sizeof sc->ptags[slot], "%s", sc->tag);
	}
	sc->since_restart = !strncmp(sc->out.ptr, "RESTART", 7) ? 0 : sc->since_restart + 1;
	sc->stats.bytes_sent += sc->out.len;
	sc->stats.commands++;
	buf_reset(&sc->out);
}

int syncc_recv(struct syncc *sc, data_fn *cb, void *rock, struct terr *err)
{
	char tag[24] = "";
	if (sc->pcount) {
		snprintf(tag, sizeof tag, "%s", sc->ptags[sc->pfirst]);
		sc->pfirst = (sc->pfirst + 1) % SYNCC_MAX_PIPELINE;
		sc->pcount--;
	}
	struct buf raw = BUF_INIT;
	int rc = -1;
	for (;;) {
		struct dlist *line = NULL;
		if (read_line(sc, &line, &raw, err) < 0)
			break;
		const char *w = line->n ? dlist_cstr(line->items[0]) : "";
		if (sc->imap && w && !strcmp(w, "+")) {
			dlist_free(&line);	/* a continuation: nothing waits for one */
			continue;
		}
		if (w && !strcmp(w, "*")) {
			struct dlist *kv = dlist_take_keyed(line, 1);
			if (kv && cb)
				cb(rock, kv);
			dlist_free(&kv);
			dlist_free(&line);
			continue;
		}
		dlist_free(&line);
		const char *text = raw.ptr;
		size_t tl = strlen(tag);
		if (tl) {
			if (strncmp(text, tag, tl) || text[tl] != ' ') {
				terr_set(err, TE_IO, "replica: unexpected line: %.80s", text);
				break;
			}
			text += tl + 1;
		}
		if (!strncmp(text, "OK", 2)) {
			rc = 0;
		} else {
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
			size_t l = raw.len - (size_t)(text - raw.ptr);
			while (l && (text[l - 1] == '\r' || text[l - 1] == '\n'))
				l--;
			terr_set(err, code, "replica: %.*s", (int)l, text);
		}
		break;
	}
	buf_free(&raw);
	if (rc < 0 && err->code == TE_IO)
		sc->pcount = 0;	/* the connection is lost with what was in flight */
	return rc;
}

int syncc_roundtrip(struct syncc *sc, data_fn *cb, void *rock, struct terr *err)
{
	syncc_send(sc);
	if (conn_flush(sc->c, err) < 0) {
		sc->pcount = 0;
		return -1;
	}
	sc->stats.roundtrips++;
	return syncc_recv(sc, cb, rock, err);
}

static void cmd_begin(struct syncc *sc, const char *verb)
{
	buf_reset(&sc->out);
	buf_appends(&sc->out, verb);
	buf_putc(&sc->out, ' ');
}

void syncc_cmd_dlist(struct syncc *sc, const char *verb, const struct dlist *d)
{
	cmd_begin(sc, verb);
	dlist_print(&sc->out, d, DLIST_LIT_CLIENT);
	buf_appends(&sc->out, "\r\n");
}

int syncc_simple(struct syncc *sc, const char *line, struct terr *err)
{
	buf_reset(&sc->out);
	buf_appends(&sc->out, line);
	buf_appends(&sc->out, "\r\n");
	return syncc_roundtrip(sc, NULL, NULL, err);
}
