/* sync_pipe.c: the in-process transport (sync_transport.h): the client's
 * commands go, as the bytes the csync protocol would carry, to a replica
 * engine in the same process, and its answers come back as bytes, so
 * both sides' framing and DLIST codec are exercised. Each command runs
 * when it is sent (answers keep their order, as on a socket). The pipe
 * can be cut at a command boundary to test what a lost connection
 * leaves behind. */
#include "sync/sync_transport-private.h"

#include "lib/limits.h"
#include "lib/xalloc.h"
#include "sync/sync_replica.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

struct pipe_transport {
	struct sync_transport base;
	struct sync_replica *r;
	struct buf in;		/* answers not read yet */
	unsigned long commands;
	unsigned long cut_at;	/* 0: never; else the command number that is cut */
	int cut_after;
	int broken;
	void (*before)(void *rock, const char *cmd, size_t len);
	void *before_rock;
};

static void pipe_data(void *rock, const struct dlist *d)
{
	struct pipe_transport *p = rock;
	buf_appends(&p->in, "* ");
	dlist_print(&p->in, d, DLIST_LIT_SERVER);
	buf_appends(&p->in, "\r\n");
}

/* The by-reference files of a command go to the replica as the csync
 * session hands them over: streamed in pieces (sync_replica_file_*). */
static int stream_files(struct pipe_transport *p, const struct dlist_refs *refs)
{
	char *chunk = xmalloc(SYNC_STREAM_CHUNK);
	int rc = 0;
	for (size_t i = 0; i < refs->n && rc == 0; i++) {
		const struct dlist_ref *rf = &refs->v[i];
		int fd = rf->fd >= 0 ? rf->fd : open(rf->path, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			rc = -1;
			break;
		}
		sync_replica_file_begin(p->r, &rf->hdr);
		for (uint64_t left = rf->hdr.size; left && rc == 0;) {
			ssize_t n = read(fd, chunk, left < SYNC_STREAM_CHUNK ? (size_t)left : SYNC_STREAM_CHUNK);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				rc = -1;	/* shorter than announced: the stream is broken */
			else
				sync_replica_file_write(p->r, chunk, (size_t)n);
			left -= n > 0 ? (uint64_t)n : 0;
		}
		sync_replica_file_end(p->r);
		if (fd != rf->fd)
			close(fd);
	}
	free(chunk);
	return rc;
}

/* sync_reply_fn: the batch's answers, in order. */
static void pipe_reply(void *rock, const char *line)
{
	struct pipe_transport *p = rock;
	buf_appends(&p->in, line);
	buf_appends(&p->in, "\r\n");
}

/* Pipelined APPLY as on the csync port (sync_replica.h): APPLY MAILBOX
 * and MESSAGE wait in the engine's batch until the client reads an
 * answer, another command comes, or the batch is full. */
static void pipe_flush_batch(struct pipe_transport *p)
{
	sync_replica_flush(p->r, pipe_reply, p);
}

static void p_send(struct sync_transport *t, const char *cmd, size_t len, const struct dlist_refs *refs)
{
	struct pipe_transport *p = (struct pipe_transport *)t;
	if (p->broken)
		return;
	unsigned long n = ++p->commands;
	if (p->cut_at && n == p->cut_at && !p->cut_after) {
		pipe_flush_batch(p);	/* what came before the cut is applied, as by a session */
		p->broken = 1;
		return;
	}
	if (p->before)
		p->before(p->before_rock, cmd, len);
	size_t vl = strcspn(cmd, " \r\n");
	int streamed = refs && refs->n;
	const char *res;
	if (streamed && stream_files(p, refs) < 0) {
		sync_replica_files_drop(p->r);
		pipe_flush_batch(p);
		p->broken = 1;	/* a socket would be out of step too */
		return;
	}
	if (!(vl == 4 && (!strncasecmp(cmd, "NOOP", 4) || !strncasecmp(cmd, "EXIT", 4))) &&
	    (sync_replica_defer_raw(p->r, cmd, len, streamed) ||
	     (!streamed && sync_replica_join_raw(p->r, cmd, len, pipe_data, p, pipe_reply, p)))) {
		/* (GET USER, GET MAILBOXES and RESTART join a waiting batch as
		 * on the csync port: sync_replica_join) */
		/* a full batch is flushed on the engine's flush thread while
		 * the next commands come, as on the csync port */
		sync_replica_flush_poll(p->r, pipe_reply, p);
		if (p->cut_at && n == p->cut_at)
			pipe_flush_batch(p);
		else if (sync_replica_batch_full(p->r))
			sync_replica_flush_start(p->r, pipe_reply, p);
		if (p->cut_at && n == p->cut_at)
			p->broken = 1;	/* it ran; its answer is lost */
		return;
	}
	pipe_flush_batch(p);	/* its answer comes after the batch's */
	if (vl == 4 && (!strncasecmp(cmd, "NOOP", 4) || !strncasecmp(cmd, "EXIT", 4))) {
		sync_replica_files_drop(p->r);
		res = "OK success";
	} else if (streamed) {
		res = sync_replica_exec_streamed(p->r, cmd, len, pipe_data, p);
	} else {
		res = sync_replica_exec_raw(p->r, cmd, len, pipe_data, p);
	}
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
	pipe_flush_batch(p);	/* the client waits for an answer */
	return sync_transport_read_reply(&p->in, p_fill, p, NULL, 0, rep, err);
}

static void p_close(struct sync_transport *t)
{
	struct pipe_transport *p = (struct pipe_transport *)t;
	sync_replica_flush_wait(p->r, NULL, NULL);	/* no flush runs on after the transport */
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

void sync_pipe_before(struct sync_transport *t, void (*fn)(void *rock, const char *cmd, size_t len), void *rock)
{
	struct pipe_transport *p = (struct pipe_transport *)t;
	p->before = fn;
	p->before_rock = rock;
}

unsigned long sync_pipe_commands(const struct sync_transport *t)
{
	return ((const struct pipe_transport *)t)->commands;
}

int sync_transport_is_pipe(const struct sync_transport *t)
{
	return t && t->ops == &pipe_ops;
}
