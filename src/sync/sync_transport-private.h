/* sync_transport-private.h: shared by the transports (sync_transport*.c,
 * sync_pipe.c). Not for use outside src/sync/. */
#ifndef TANDEM_SYNC_TRANSPORT_PRIVATE_H
#define TANDEM_SYNC_TRANSPORT_PRIVATE_H

#include "sync/sync_transport.h"

/* Adds more answer bytes to the transport's read buffer; -1 with err
 * (TE_IO) when there are none to come. */
typedef int transport_fill_fn(void *rock, struct terr *err);

/* Reads one framed answer line from in (filling it as needed) into rep:
 * a data line, or the completion with tag (when not NULL) removed. */
int sync_transport_read_reply(struct buf *in, transport_fill_fn *fill, void *rock, const char *tag, int imap,
			      struct sync_reply *rep, struct terr *err);

#endif
