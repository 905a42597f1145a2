/* imap_drive.h: the IMAP parser test driver, shared by the unit test and
 * the fuzz target: feeds input in pieces, answers the parser's events as a
 * session would, and records a transcript to compare runs. */
#ifndef TANDEM_IMAP_DRIVE_H
#define TANDEM_IMAP_DRIVE_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "lib/limits.h"
#include "proto/imap/imap_parser.h"
#include "proto/imap/imap_write.h"


struct imap_drive_opts {
	int auth;		/* IMAP_MODE_AUTH */
	int buffered;
	uint64_t max_message;	/* 0: default */
	int reject_sync;	/* reject every IMAP_CONTINUE */
	/* size pattern for the pieces: piece i has sizes[i % nsizes] bytes
	 * (0 in sizes means "all the rest"); NULL: chunk */
	const uint8_t *sizes;
	size_t nsizes;
};

static inline void imap_drive_data(struct buf *t, struct buf *data, const char *what)
{
	if (data->len == 0)
		return;
	uint32_t h = 2166136261u;	/* FNV-1a: a fingerprint of big data */
	for (size_t i = 0; i < data->len; i++)
		h = (h ^ (unsigned char)data->ptr[i]) * 16777619u;
	buf_printf(t, "%s len=%zu fnv=%08x", what, data->len, h);
	if (data->len <= 80) {
		buf_appends(t, " \"");
		for (size_t i = 0; i < data->len; i++) {
			unsigned char c = (unsigned char)data->ptr[i];
			if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\')
				buf_printf(t, "\\x%02x", c);
			else
				buf_putc(t, (char)c);
		}
		buf_putc(t, '"');
	}
	buf_putc(t, '\n');
	buf_reset(data);
}

/* Returns 1 when the parser died (fatal error). */
static inline int imap_drive_events(struct imap_parser *p, const char *d, size_t left,
				    const struct imap_drive_opts *o, struct buf *t,
				    struct buf *data)
{
	for (;;) {
		size_t used = 0;
		int ev = imap_parser_feed(p, d, left, &used);
		d += used;
		left -= used;
		if (ev == IMAP_NEED_MORE) {
			if (left != 0)
				buf_appends(t, "BUG: NEED_MORE with input left\n");
			return 0;
		}
		switch (ev) {
		case IMAP_COMMAND: {
			const struct imap_cmd *c = imap_parser_command(p);
			/* buffered mode: show the bytes like streamed DATA */
			if (c->id == IMAP_CMD_APPEND) {
				if (c->u.append.message)
					buf_append(data, c->u.append.message, (size_t)c->u.append.size);
				for (size_t i = 0; i < c->u.append.nmore; i++)
					if (c->u.append.more[i].message)
						buf_append(data, c->u.append.more[i].message,
							   (size_t)c->u.append.more[i].size);
			}
			if ((c->id == IMAP_CMD_SYNCGET || c->id == IMAP_CMD_SYNCAPPLY ||
			     c->id == IMAP_CMD_SYNCRESTORE) && c->u.sync.raw)
				buf_append(data, c->u.sync.raw, (size_t)c->u.sync.len);
			imap_drive_data(t, data, "DATA");
			buf_appends(t, "CMD ");
			imap_cmd_dump(t, c);
			buf_putc(t, '\n');
			if (c->id == IMAP_CMD_IDLE)
				imap_parser_expect(p, IMAP_EXPECT_DONE);
			if (c->id == IMAP_CMD_AUTHENTICATE && !c->u.authenticate.ir)
				imap_parser_expect(p, IMAP_EXPECT_LINE);
			break;
		}
		case IMAP_CONTINUE: {
			const struct imap_pending *pd = imap_parser_pending(p);
			buf_printf(t, "CONT size=%llu%s\n", (unsigned long long)pd->size,
				   pd->is_message ? " message" : "");
			if (o->reject_sync) {
				imap_parser_reject_literal(p);
				buf_appends(t, "REJECT\n");
			}
			break;
		}
		case IMAP_DATA: {
			const void *ptr;
			size_t n;
			imap_parser_data(p, &ptr, &n);
			if (n == 0)
				buf_appends(t, "BUG: empty DATA\n");
			buf_append(data, ptr, n);
			break;
		}
		case IMAP_ERROR: {
			const struct imap_error *e = imap_parser_error(p);
			buf_reset(data);	/* chunks already handed out are void */
			buf_printf(t, "ERR %s %s%s%s%s pos=%llu%s: %s\n", e->tag ? e->tag : "*",
				   e->resp == IMAP_RESP_NO ? "NO" : "BAD", e->code ? " [" : "",
				   e->code ? e->code : "", e->code ? "]" : "",
				   (unsigned long long)e->pos, e->fatal ? " FATAL" : "", e->msg);
			if (e->fatal)
				return 1;
			break;
		}
		case IMAP_DONE:
			buf_appends(t, "DONE\n");
			break;
		case IMAP_LINE: {
			size_t n;
			const char *l = imap_parser_line(p, &n);
			buf_printf(t, "LINE \"%.*s\"\n", (int)n, l);
			break;
		}
		default:
			buf_printf(t, "BUG: event %d\n", ev);
			return 1;
		}
	}
}

/* Feeds in[0..len) in pieces of chunk bytes (0: all at once); returns the
 * malloc'd transcript. */
static inline char *imap_drive(const char *in, size_t len, size_t chunk,
			       const struct imap_drive_opts *o)
{
	struct imap_parser *p = imap_parser_new();
	struct buf t = BUF_INIT, data = BUF_INIT;
	if (o->auth)
		imap_parser_set_mode(p, IMAP_MODE_AUTH);
	imap_parser_set_buffered(p, o->buffered);
	if (o->max_message)
		imap_parser_set_max_message(p, o->max_message);
	size_t off = 0, piece = 0;
	while (off < len) {
		size_t n = len - off;
		if (o->sizes && o->nsizes) {
			size_t s = o->sizes[piece++ % o->nsizes];
			if (s && s < n)
				n = s;
		} else if (chunk && chunk < n) {
			n = chunk;
		}
		if (imap_drive_events(p, in + off, n, o, &t, &data))
			break;
		off += n;
	}
	/* one more call with no input: pending events must come out */
	if (off >= len)
		imap_drive_events(p, "", 0, o, &t, &data);
	/* data of an unfinished command is not shown: buffered mode cannot */
	buf_free(&data);
	imap_parser_free(&p);
	return buf_release(&t);
}


#endif
