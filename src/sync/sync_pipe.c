/* sync_pipe.c: the in-process transport (sync_transport.h): the client's
 * commands go, as the bytes the csync protocol would carry, to a replica
 * engine in the same process, and its answers come back as bytes, so
 * both sides' framing and DLIST codec are exercised. Each command runs
 * when it is sent (answers keep their order, as on a socket). The pipe
 * can be cut at a command boundary to test what a lost connection
 * leaves behind. */
#include "sync/sync_transport-private.h"

#include "lib/xalloc.h"
#include "sync/sync_replica.h"

#include <string.h>
#include <strings.h>

struct pipe_transport {
	struct sync_transport base;
	struct sync_replica *r;
	struct buf in;		/* answers not read yet */
	unsigned long commands;
	unsigned long cut_at;	/* 0: never; else the command number that is cut */
	int cut_after;
	int broken;
};

static void pipe_data(void *rock, const struct dlist *d)
{
	struct pipe_transport *p = rock;
	buf_appends(&p->in, "* ");
	dlist_print(&p->in, d, DLIST_LIT_SERVER);
	buf_appends(&p->in, "\r\n");
}

static void p_send(struct sync_transport *t, const char *cmd, size_t len)
{
	struct pipe_transport *p = (struct pipe_transport *)t;
	if (p->broken)
		return;
	unsigned long n = ++p->commands;
	if (p->cut_at && n == p->cut_at && !p->cut_after) {
		p->broken = 1;
		return;
	}
	size_t vl = strcspn(cmd, " \r\n");
	const char *res;
	if ((vl == 4 && !strncasecmp(cmd, "NOOP", 4)) || (vl == 4 && !strncasecmp(cmd, "EXIT", 4)))
		res = "OK success";
	else
		res = sync_replica_exec_raw(p->r, cmd, len, pipe_data, p);
	buf_appends(&p->in, res);
	buf_appends(&p->in, "\r\n");
	if (p->cut_at && n == p->cut_at)
		p->broken = 1;	/* it ran; its answer is lost */
}

static int p_flush(struct sync_transport *t, struct terr *err)
{
	struct pipe_transport *p = (struct pipe_transport *)t;
	return p->broken ? terr_set(err, TE_IO, "the pipe was cut") : 0;
}

static int p_fill(void *rock, struct terr *err)
{
	(void)rock;
	return terr_set(err, TE_IO, "the pipe has no answer to give");
}

static int p_recv(struct sync_transport *t, struct sync_reply *rep, struct terr *err)
{
	struct pipe_transport *p = (struct pipe_transport *)t;
	if (p->broken)
		return terr_set(err, TE_IO, "the pipe was cut");
	return sync_transport_read_reply(&p->in, p_fill, p, NULL, 0, rep, err);
}

static void p_close(struct sync_transport *t)
{
	struct pipe_transport *p = (struct pipe_transport *)t;
	buf_free(&p->in);
	free(p);
}

static const struct sync_transport_ops pipe_ops = { "pipe", p_send, p_flush, p_recv, p_close };

struct sync_transport *sync_pipe_new(struct sync_replica *r)
{
	struct pipe_transport *p = xcalloc(1, sizeof *p);
	p->base.ops = &pipe_ops;
	p->r = r;
	return &p->base;
}

void sync_pipe_cut(struct sync_transport *t, unsigned long n, int after)
{
	struct pipe_transport *p = (struct pipe_transport *)t;
	p->cut_at = n ? p->commands + n : 0;
	p->cut_after = after;
}

unsigned long sync_pipe_commands(const struct sync_transport *t)
{
	return ((const struct pipe_transport *)t)->commands;
}

int sync_transport_is_pipe(const struct sync_transport *t)
{
	return t && t->ops == &pipe_ops;
}
