/* sync_transport.c: what the transports share (sync_transport.h):
 * reading one framed answer line into a struct sync_reply. */
#include "sync/sync_transport-private.h"

#include <string.h>

void sync_reply_free(struct sync_reply *rep)
{
	dlist_free(&rep->data);
	buf_free(&rep->text);
}

void sync_transport_close(struct sync_transport **tp)
{
	if (*tp)
		(*tp)->ops->close(*tp);
	*tp = NULL;
}

int sync_transport_read_reply(struct buf *in, transport_fill_fn *fill, void *rock, const char *tag, int imap,
			      struct sync_reply *rep, struct terr *err)
{
	dlist_free(&rep->data);
	buf_reset(&rep->text);
	struct buf raw = BUF_INIT;
	int rc = -1;
	for (;;) {
		struct dlist_frame f;
		dlist_frame_init(&f);
		long long n;
		while ((n = dlist_frame_scan(&f, in->ptr ? in->ptr : "", in->len, err)) == 0)
			if (fill(rock, err) < 0)
				goto out;
		if (n < 0)
			goto out;
		buf_reset(&raw);
		buf_append(&raw, in->ptr, (size_t)n);
		buf_consume(in, (size_t)n);
		struct dlist *line = NULL;
		if (dlist_parse(raw.ptr, raw.len, &line, err) < 0)
			goto out;
		const char *w = line->n ? dlist_cstr(line->items[0]) : "";
		if (imap && w && !strcmp(w, "+")) {
			dlist_free(&line);	/* a continuation: nothing waits for one */
			continue;
		}
		if (w && !strcmp(w, "*")) {
			rep->data = dlist_take_keyed(line, 1);
			dlist_free(&line);
			if (!rep->data)
				continue;	/* an untagged line that is no data (IMAP) */
			rc = 0;
			goto out;
		}
		dlist_free(&line);
		const char *text = raw.ptr;
		size_t tl = tag ? strlen(tag) : 0;
		if (tl) {
			if (strncmp(text, tag, tl) || text[tl] != ' ') {
				terr_set(err, TE_IO, "replica: unexpected line: %.80s", text);
				goto out;
			}
			text += tl + 1;
		}
		size_t l = raw.len - (size_t)(text - raw.ptr);
		while (l && (text[l - 1] == '\r' || text[l - 1] == '\n'))
			l--;
		buf_append(&rep->text, text, l);
		rc = 0;
		goto out;
	}
out:
	buf_free(&raw);
	return rc;
}
