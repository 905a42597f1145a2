/* sync_transport.h: how the replication engine's client side talks to a
 * replica. Three implementations:
 *   - csync: the replication protocol on its own port (reference §2);
 *   - imap:  the same commands inside IMAP (SYNCGET, SYNCAPPLY, ...; tags;
 *            reference §2.10);
 *   - pipe:  an in-process replica engine (sync_replica.h) joined to the
 *            client in one process, for tests (as Dovecot's dsync does);
 *            it can be cut at any command boundary.
 * The client (src/syncc) plans and sends commands and reads answers only
 * through this interface; connecting, the banner, STARTTLS, COMPRESS and
 * authentication happen on the connection before any command.
 *
 * Commands are pipelined: send queues one, flush writes what is queued,
 * recv reads the answer of the oldest command not answered yet, one line
 * at a time.
 */
#ifndef TANDEM_SYNC_TRANSPORT_H
#define TANDEM_SYNC_TRANSPORT_H

#include <stddef.h>

#include "lib/buf.h"
#include "lib/err.h"
#include "proto/sync/dlist.h"

struct conn;
struct sync_replica;

/* One line of an answer: a data line ("* <dlist>": data set, owned by the
 * caller), or the completion (data NULL; text "OK ...", "NO ...",
 * "BAD ...", without tag or CRLF). */
struct sync_reply {
	struct dlist *data;
	struct buf text;
};

struct sync_transport;
struct sync_transport_ops {
	const char *name;	/* "csync", "imap", "pipe" */
	/* Queues one command, "VERB [args]\r\n" as the csync protocol
	 * writes it (literals included); not flushed. refs (may be NULL):
	 * the by-reference file literals whose headers are in cmd: each
	 * file's bytes go right after cmd[at] (dlist_print_refs), read from
	 * the file into the connection, never into memory whole. A file that
	 * cannot be sent breaks the transport (TE_IO at flush/recv). */
	void (*send)(struct sync_transport *t, const char *cmd, size_t len, const struct dlist_refs *refs);
	int (*flush)(struct sync_transport *t, struct terr *err);
	/* The next line of the oldest unanswered command's answer; TE_IO
	 * when the connection is lost (with everything in flight). */
	int (*recv)(struct sync_transport *t, struct sync_reply *rep, struct terr *err);
	void (*close)(struct sync_transport *t);
};

struct sync_transport {
	const struct sync_transport_ops *ops;
};

static inline void sync_transport_send(struct sync_transport *t, const char *cmd, size_t len)
{
	t->ops->send(t, cmd, len, NULL);
}
static inline void sync_transport_send_refs(struct sync_transport *t, const char *cmd, size_t len,
					    const struct dlist_refs *refs)
{
	t->ops->send(t, cmd, len, refs);
}
static inline int sync_transport_flush(struct sync_transport *t, struct terr *err)
{
	return t->ops->flush(t, err);
}
static inline int sync_transport_recv(struct sync_transport *t, struct sync_reply *rep, struct terr *err)
{
	return t->ops->recv(t, rep, err);
}
/* Closes and frees *tp (NULL is fine). */
void sync_transport_close(struct sync_transport **tp);
void sync_reply_free(struct sync_reply *rep);

/* ---- over a connection (sync_transport_conn.c) ---- */

/* A csync transport owning c; timeout_ms bounds each read (<= 0: none). */
struct sync_transport *sync_transport_conn_new(struct conn *c, long long timeout_ms);
/* Switches to the IMAP framing (the greeting said IMAP): commands get
 * tags and SYNC verbs, "+" continuations are skipped. */
void sync_transport_conn_imap(struct sync_transport *t);
/* The connection and its read buffer, for the steps before the first
 * command (banner, STARTTLS, COMPRESS, IMAP login). NULL for a pipe. */
struct conn *sync_transport_conn(struct sync_transport *t);
struct buf *sync_transport_inbuf(struct sync_transport *t);

/* ---- in process (sync_pipe.c) ---- */

/* A transport to the replica engine r (not owned). */
struct sync_transport *sync_pipe_new(struct sync_replica *r);
/* Cuts the pipe at a command boundary: the n-th command sent from now on
 * (1 = the next) is lost before the replica runs it (after 0), or after
 * it ran with its answer lost (after 1); from then on every call fails
 * with TE_IO, as a lost connection. */
void sync_pipe_cut(struct sync_transport *t, unsigned long n, int after);
/* Calls fn(rock, cmd, len) before the replica runs each command sent
 * from now on (NULL: no more calls): a test's way to let another client
 * or a delivery in between a client's commands, as another process would. */
void sync_pipe_before(struct sync_transport *t, void (*fn)(void *rock, const char *cmd, size_t len), void *rock);
/* Commands the pipe has run. */
unsigned long sync_pipe_commands(const struct sync_transport *t);
/* 1 when t is a pipe. */
int sync_transport_is_pipe(const struct sync_transport *t);

#endif
