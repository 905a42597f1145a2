/* sync_transport_conn.c: the csync and IMAP transports over a struct
 * conn (sync_transport.h).
 *
 * csync writes each command as it is. IMAP (reference §2.10) wraps it:
 * "GET x" becomes "S<n> SYNCGET x", RESTART "S<n> SYNCRESTART", NOOP
 * "N01 NOOP", EXIT "Q01 LOGOUT"; AUTHENTICATE/STARTTLS/CAPABILITY get
 * A01/S01/C01 (the fixed tags of Cyrus's client). The tags of commands
 * in flight are kept in order, so each answer is matched to its command. */
#include "sync/sync_transport-private.h"

#include "lib/xalloc.h"
#include "net/conn.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

struct ctag {
	char s[24];
};

struct conn_transport {
	struct sync_transport base;
	struct conn *c;
	struct buf in;
	long long timeout_ms;
	int imap;
	unsigned long tagn;
	struct terr broken;	/* a by-reference file could not be sent */
	struct ctag *tags;	/* of commands in flight, a ring */
	size_t tfirst, tn, tcap;
};

static void push_tag(struct conn_transport *ct, const char *tag)
{
	if (ct->tn == ct->tcap) {
		size_t ncap = ct->tcap ? 2 * ct->tcap : 16;
		struct ctag *nt = xcalloc(ncap, sizeof *nt);
		for (size_t i = 0; i < ct->tn; i++)
			nt[i] = ct->tags[(ct->tfirst + i) % ct->tcap];
		free(ct->tags);
		ct->tags = nt;
		ct->tcap = ncap;
		ct->tfirst = 0;
	}
	snprintf(ct->tags[(ct->tfirst + ct->tn++) % ct->tcap].s, sizeof ct->tags[0].s, "%s", tag);
}

static size_t imap_wrap(struct conn_transport *ct, const char *cmd, size_t len, char *tag, size_t tagsz)
{
	static const struct { const char *verb, *tag, *imap; } fixed[] = {
		{ "NOOP", "N01", "NOOP" }, { "EXIT", "Q01", "LOGOUT" },
		{ "AUTHENTICATE", "A01", "AUTHENTICATE" }, { "STARTTLS", "S01", "STARTTLS" },
		{ "CAPABILITY", "C01", "CAPABILITY" },
	};
	size_t vl = strcspn(cmd, " \r\n");
	if (vl > len)
		vl = len;
	const char *imapverb = NULL;
	for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
		if (strlen(fixed[i].verb) == vl && !strncmp(cmd, fixed[i].verb, vl)) {
			snprintf(tag, tagsz, "%s", fixed[i].tag);
			imapverb = fixed[i].imap;
		}
	char head[64];
	if (imapverb) {
		snprintf(head, sizeof head, "%s %s", tag, imapverb);
	} else {
		snprintf(tag, tagsz, "S%lu", ct->tagn++);
		snprintf(head, sizeof head, "%s SYNC%.*s", tag, (int)vl, cmd);
	}
	conn_puts(ct->c, head);
	return vl;
}

/* Writes cmd[from..len) with the files of refs at their places. */
static void write_with_files(struct conn_transport *ct, const char *cmd, size_t from, size_t len,
			     const struct dlist_refs *refs)
{
	for (size_t i = 0; refs && i < refs->n; i++) {
		const struct dlist_ref *rf = &refs->v[i];
		if (rf->at < from || rf->at > len)
			continue;
		conn_write(ct->c, cmd + from, rf->at - from);
		from = rf->at;
		if (ct->broken.code)
			continue;
		/* the file the client opened when it sized the literal, else its path */
		int fd = rf->fd >= 0 ? rf->fd : open(rf->path, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			terr_errno(&ct->broken, errno, "open %s", rf->path);
			continue;
		}
		conn_write_file(ct->c, fd, rf->hdr.size, &ct->broken);
		if (fd != rf->fd)
			close(fd);
	}
	conn_write(ct->c, cmd + from, len - from);
}

static void c_send(struct sync_transport *t, const char *cmd, size_t len, const struct dlist_refs *refs)
{
	struct conn_transport *ct = (struct conn_transport *)t;
	char tag[24] = "";
	size_t from = 0;
	if (ct->imap)
		from = imap_wrap(ct, cmd, len, tag, sizeof tag);
	write_with_files(ct, cmd, from, len, refs);
	push_tag(ct, tag);
}

static int c_flush(struct sync_transport *t, struct terr *err)
{
	struct conn_transport *ct = (struct conn_transport *)t;
	if (ct->broken.code) {
		/* the stream is out of step: only a new connection helps */
		terr_set(err, TE_IO, "sending a message file: %s", ct->broken.msg);
		ct->tn = 0;
		return -1;
	}
	if (conn_flush(ct->c, err) < 0) {
		ct->tn = 0;	/* lost with the connection */
		return -1;
	}
	return 0;
}

static int c_fill(void *rock, struct terr *err)
{
	struct conn_transport *ct = rock;
	ssize_t r = conn_read(ct->c, &ct->in, (int)(ct->timeout_ms > 0 ? ct->timeout_ms : -1), err);
	if (r == 0)
		return terr_set(err, TE_IO, "the replica closed the connection");
	return r < 0 ? -1 : 0;
}

static int c_recv(struct sync_transport *t, struct sync_reply *rep, struct terr *err)
{
	struct conn_transport *ct = (struct conn_transport *)t;
	if (ct->broken.code) {
		terr_set(err, TE_IO, "sending a message file: %s", ct->broken.msg);
		ct->tn = 0;
		return -1;
	}
	const char *tag = ct->tn ? ct->tags[ct->tfirst].s : "";
	if (sync_transport_read_reply(&ct->in, c_fill, ct, tag, ct->imap, rep, err) < 0) {
		if (err->code != TE_IO)
			terr_set(err, TE_IO, "replica: %s", err->msg);	/* the stream is out of step: drop it */
		ct->tn = 0;
		return -1;
	}
	if (!rep->data && ct->tn) {
		ct->tfirst = (ct->tfirst + 1) % ct->tcap;
		ct->tn--;
	}
	return 0;
}

static void c_close(struct sync_transport *t)
{
	struct conn_transport *ct = (struct conn_transport *)t;
	conn_free(&ct->c);
	buf_free(&ct->in);
	free(ct->tags);
	free(ct);
}

static const struct sync_transport_ops csync_ops = { "csync", c_send, c_flush, c_recv, c_close };
static const struct sync_transport_ops imap_ops = { "imap", c_send, c_flush, c_recv, c_close };

struct sync_transport *sync_transport_conn_new(struct conn *c, long long timeout_ms)
{
	struct conn_transport *ct = xcalloc(1, sizeof *ct);
	ct->base.ops = &csync_ops;
	ct->c = c;
	ct->timeout_ms = timeout_ms;
	return &ct->base;
}

void sync_transport_conn_imap(struct sync_transport *t)
{
	struct conn_transport *ct = (struct conn_transport *)t;
	ct->imap = 1;
	ct->base.ops = &imap_ops;
}

struct conn *sync_transport_conn(struct sync_transport *t)
{
	return t && t->ops->send == c_send ? ((struct conn_transport *)t)->c : NULL;
}

struct buf *sync_transport_inbuf(struct sync_transport *t)
{
	return t && t->ops->send == c_send ? &((struct conn_transport *)t)->in : NULL;
}
