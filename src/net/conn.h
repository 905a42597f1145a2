/* conn.h: one connection's byte stream, for every protocol tandem speaks.
 *
 * Layers, bottom up: the socket; TLS (OpenSSL) once started; DEFLATE
 * (zlib raw deflate, RFC 4978 COMPRESS) once started. Output is buffered
 * until conn_flush. Each connection is served by its own process, so the
 * calls block, bounded by the timeout given. Stats count bytes on the
 * wire (after compression and TLS) and before compression.
 */
#ifndef TANDEM_CONN_H
#define TANDEM_CONN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "lib/buf.h"
#include "lib/err.h"

struct conn;
typedef struct ssl_ctx_st SSL_CTX;

struct conn_stats {
	uint64_t wire_in, wire_out;	/* bytes read from / written to the socket */
	uint64_t plain_in, plain_out;	/* bytes the protocol read / wrote */
	uint64_t flushes;		/* conn_flush calls that wrote something */
};

/* Takes ownership of fd. */
struct conn *conn_new(int fd);
/* Flushes nothing; closes TLS and the socket. */
void conn_free(struct conn **c);
int conn_fd(const struct conn *c);

/* Reads whatever is available (at least one byte) and appends it to in.
 * Returns the number of bytes appended, 0 at end of stream, -1 on error
 * (TE_BUSY: timeout_ms passed with nothing to read; timeout_ms < 0 waits
 * for ever). */
ssize_t conn_read(struct conn *c, struct buf *in, int timeout_ms, struct terr *err);
/* Queues bytes for output. */
void conn_write(struct conn *c, const void *data, size_t len);
void conn_puts(struct conn *c, const char *s);
void conn_printf(struct conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Sends everything queued (through DEFLATE with a sync flush, and TLS). */
int conn_flush(struct conn *c, struct terr *err);
/* Writes size bytes of the file open at fd (from its offset) after what
 * is queued, never holding more than one piece of it in memory: a small
 * file (up to SYNC_STREAM_CHUNK) is read into the queue; a larger one is
 * sent at once, by sendfile() on a plain connection (no copy through user
 * space), else read in SYNC_STREAM_CHUNK pieces through DEFLATE or TLS.
 * An error leaves the stream out of step: the connection must be
 * dropped. */
int conn_write_file(struct conn *c, int fd, uint64_t size, struct terr *err);

/* STARTTLS: the handshake on this connection. The caller must first make
 * sure it holds no input read past the STARTTLS command (a client that
 * pipelines after STARTTLS is refused: those bytes were not protected,
 * the CVE-2011-0411 class of attack). */
int conn_tls_server(struct conn *c, SSL_CTX *ctx, struct terr *err);
int conn_tls_client(struct conn *c, SSL_CTX *ctx, const char *servername, struct terr *err);
int conn_is_tls(const struct conn *c);
/* Starts DEFLATE in both directions from the next byte on. */
int conn_compress(struct conn *c, struct terr *err);
/* The same with a zlib level for what this side sends (1 fastest, 9
 * smallest; conn_compress uses zlib's default, 6). The sync client uses
 * 1: replication pushes megabytes and at level 6 deflate is most of its
 * CPU, while level 1 still saves most of the bytes on a slow link. */
int conn_compress_level(struct conn *c, int level, struct terr *err);
int conn_is_compressed(const struct conn *c);
void conn_get_stats(const struct conn *c, struct conn_stats *out);

/* TLS contexts. Server: certificate chain and key files (PEM). Client:
 * verify the server against cafile when given, else accept any
 * certificate (the replication channel then authenticates by SASL only;
 * docs/ say so). */
SSL_CTX *tls_server_ctx(const char *certfile, const char *keyfile, struct terr *err);
SSL_CTX *tls_client_ctx(const char *cafile, struct terr *err);

#endif
