/* conn.c: see conn.h. */
#include "net/conn.h"

#include "lib/limits.h"
#include "lib/xalloc.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/sendfile.h>
#include <unistd.h>
#include <zlib.h>

struct conn {
	int fd;
	SSL *ssl;
	int compressed;
	z_stream zin, zout;
	struct buf out;		/* plain bytes queued */
	struct buf zbuf;	/* compressed input not yet inflated */
	int zmore;		/* inflate may have output left without more input */
	struct conn_stats stats;
};

struct conn *conn_new(int fd)
{
	struct conn *c = xcalloc(1, sizeof *c);
	c->fd = fd;
	return c;
}

void conn_free(struct conn **cp)
{
	struct conn *c = *cp;
	if (!c)
		return;
	if (c->ssl) {
		SSL_shutdown(c->ssl);
		SSL_free(c->ssl);
	}
	if (c->compressed) {
		inflateEnd(&c->zin);
		deflateEnd(&c->zout);
	}
	if (c->fd >= 0)
		close(c->fd);
	buf_free(&c->out);
	buf_free(&c->zbuf);
	free(c);
	*cp = NULL;
}

int conn_fd(const struct conn *c)
{
	return c->fd;
}

static int ssl_err(struct terr *err, const char *what)
{
	char msg[256];
	unsigned long e = ERR_get_error();
	if (e)
		ERR_error_string_n(e, msg, sizeof msg);
	else
		snprintf(msg, sizeof msg, "%s", strerror(errno));
	ERR_clear_error();
	return terr_set(err, TE_IO, "%s: %s", what, msg);
}

/* Reads raw bytes from the socket or TLS: >0 bytes, 0 EOF, -1 error. */
static ssize_t wire_read(struct conn *c, void *p, size_t n, int timeout_ms, struct terr *err)
{
	for (;;) {
		if (!c->ssl || SSL_pending(c->ssl) == 0) {
			struct pollfd pf = { c->fd, POLLIN, 0 };
			int pr = poll(&pf, 1, timeout_ms);
			if (pr < 0 && errno == EINTR)
				continue;
			if (pr < 0)
				return terr_errno(err, errno, "poll");
			if (pr == 0)
				return terr_set(err, TE_BUSY, "timed out after %d ms", timeout_ms);
		}
		if (c->ssl) {
			int r = SSL_read(c->ssl, p, (int)(n > 1 << 30 ? 1 << 30 : n));
			if (r > 0)
				return r;
			int e = SSL_get_error(c->ssl, r);
			if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
				continue;
			if (e == SSL_ERROR_ZERO_RETURN)
				return 0;
			if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0)
				return 0;	/* peer closed without close_notify */
			return ssl_err(err, "TLS read");
		}
		ssize_t r = read(c->fd, p, n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return terr_errno(err, errno, "read");
		return r;
	}
}

static int wire_write(struct conn *c, const void *p, size_t n, struct terr *err)
{
	const char *q = p;
	while (n > 0) {
		if (c->ssl) {
			int w = SSL_write(c->ssl, q, (int)(n > 1 << 30 ? 1 << 30 : n));
			if (w <= 0) {
				int e = SSL_get_error(c->ssl, w);
				if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ)
					continue;
				return ssl_err(err, "TLS write");
			}
			q += w;
			n -= (size_t)w;
			c->stats.wire_out += (uint64_t)w;
			continue;
		}
		ssize_t w = write(c->fd, q, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return terr_errno(err, errno, "write");
		q += w;
		n -= (size_t)w;
		c->stats.wire_out += (uint64_t)w;
	}
	return 0;
}

ssize_t conn_read(struct conn *c, struct buf *in, int timeout_ms, struct terr *err)
{
	char raw[65536];
	if (!c->compressed) {
		ssize_t r = wire_read(c, raw, sizeof raw, timeout_ms, err);
		if (r > 0) {
			buf_append(in, raw, (size_t)r);
			c->stats.wire_in += (uint64_t)r;
			c->stats.plain_in += (uint64_t)r;
		}
		return r;
	}
	for (;;) {
		if (c->zbuf.len || c->zmore) {
			/* at most 64 KiB of plain bytes per read, as without
			 * compression: a reader's buffer grows by one read at a
			 * time however well the peer's bytes deflate (up to 1:1032) */
			size_t before = in->len;
			c->zin.next_in = (Bytef *)(c->zbuf.ptr ? c->zbuf.ptr : "");
			c->zin.avail_in = (uInt)c->zbuf.len;
			buf_reserve(in, 65536);
			c->zin.next_out = (Bytef *)in->ptr + in->len;
			c->zin.avail_out = 65536;
			int zr = inflate(&c->zin, Z_SYNC_FLUSH);
			in->len += 65536 - c->zin.avail_out;
			in->ptr[in->len] = '\0';
			c->zmore = zr == Z_OK && c->zin.avail_out == 0;
			if (zr != Z_OK && zr != Z_BUF_ERROR)
				return terr_set(err, TE_INVALID, "bad compressed data from the peer (zlib %d)", zr);
			buf_consume(&c->zbuf, c->zbuf.len - c->zin.avail_in);
			if (in->len > before) {
				c->stats.plain_in += in->len - before;
				return (ssize_t)(in->len - before);
			}
		}
		ssize_t r = wire_read(c, raw, sizeof raw, timeout_ms, err);
		if (r <= 0)
			return r;
		c->stats.wire_in += (uint64_t)r;
		buf_append(&c->zbuf, raw, (size_t)r);
	}
}

void conn_write(struct conn *c, const void *data, size_t len)
{
	buf_append(&c->out, data, len);
}

void conn_puts(struct conn *c, const char *s)
{
	buf_appends(&c->out, s);
}

void conn_printf(struct conn *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	buf_vprintf(&c->out, fmt, ap);
	va_end(ap);
}

/* Deflates and writes n plain bytes (flush: Z_SYNC_FLUSH at the end). */
static int deflate_write(struct conn *c, const void *p, size_t n, int flush, struct terr *err)
{
	unsigned char z[65536];
	c->zout.next_in = (Bytef *)p;
	c->zout.avail_in = (uInt)n;
	int rc = 0;
	do {
		c->zout.next_out = z;
		c->zout.avail_out = sizeof z;
		int zr = deflate(&c->zout, flush ? Z_SYNC_FLUSH : Z_NO_FLUSH);
		if (zr != Z_OK && zr != Z_BUF_ERROR)
			return terr_set(err, TE_INTERNAL, "deflate failed (zlib %d)", zr);
		if (sizeof z - c->zout.avail_out)
			rc = wire_write(c, z, sizeof z - c->zout.avail_out, err);
	} while (rc == 0 && (c->zout.avail_out == 0 || c->zout.avail_in));
	return rc;
}

int conn_flush(struct conn *c, struct terr *err)
{
	if (!c->out.len)
		return 0;
	c->stats.plain_out += c->out.len;
	c->stats.flushes++;
	int rc = c->compressed ? deflate_write(c, c->out.ptr, c->out.len, 1, err)
			       : wire_write(c, c->out.ptr, c->out.len, err);
	buf_reset(&c->out);
	return rc;
}

/* Reads exactly n bytes of fd into p. */
static int read_full(int fd, char *p, size_t n, struct terr *err)
{
	while (n) {
		ssize_t r = read(fd, p, n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return terr_errno(err, errno, "read");
		if (r == 0)
			return terr_set(err, TE_IO, "file shorter than announced");
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

/* A file this small is read into the output queue like any bytes. */
#define CONN_FILE_INLINE SYNC_STREAM_CHUNK

int conn_write_file(struct conn *c, int fd, uint64_t size, struct terr *err)
{
	if (size <= CONN_FILE_INLINE) {
		/* small: read straight into the queue (one copy), no extra write */
		buf_reserve(&c->out, (size_t)size);
		if (read_full(fd, c->out.ptr + c->out.len, (size_t)size, err) < 0)
			return -1;
		c->out.len += (size_t)size;
		c->out.ptr[c->out.len] = '\0';
		return c->out.len > 4 * CONN_FILE_INLINE ? conn_flush(c, err) : 0;
	}
	if (conn_flush(c, err) < 0)
		return -1;
	c->stats.plain_out += size;
	if (!c->compressed && !c->ssl) {
		/* the kernel moves the bytes from the page cache to the socket */
		while (size) {
			ssize_t w = sendfile(c->fd, fd, NULL, size > (1u << 30) ? (1u << 30) : (size_t)size);
			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0)
				return terr_errno(err, errno, "sendfile");
			if (w == 0)
				return terr_set(err, TE_IO, "file shorter than announced");
			size -= (uint64_t)w;
			c->stats.wire_out += (uint64_t)w;
		}
		return 0;
	}
	/* TLS or DEFLATE: one piece at a time through them */
	char *chunk = xmalloc(SYNC_STREAM_CHUNK);
	int rc = 0;
	while (size && rc == 0) {
		size_t n = size < SYNC_STREAM_CHUNK ? (size_t)size : SYNC_STREAM_CHUNK;
		rc = read_full(fd, chunk, n, err);
		if (rc == 0)
			rc = c->compressed ? deflate_write(c, chunk, n, 0, err) : wire_write(c, chunk, n, err);
		size -= n;
	}
	free(chunk);
	return rc;
}

static int tls_start(struct conn *c, SSL_CTX *ctx, int server, const char *servername, struct terr *err)
{
	if (c->ssl)
		return terr_set(err, TE_INVALID, "TLS is already on");
	if (c->compressed)
		return terr_set(err, TE_INVALID, "TLS cannot start after compression");
	c->ssl = SSL_new(ctx);
	if (!c->ssl)
		return ssl_err(err, "SSL_new");
	SSL_set_fd(c->ssl, c->fd);
	if (servername && !server)
		SSL_set_tlsext_host_name(c->ssl, servername);
	int r = server ? SSL_accept(c->ssl) : SSL_connect(c->ssl);
	if (r != 1) {
		int rc = ssl_err(err, "TLS handshake");
		SSL_free(c->ssl);
		c->ssl = NULL;
		return rc;
	}
	return 0;
}

int conn_tls_server(struct conn *c, SSL_CTX *ctx, struct terr *err)
{
	return tls_start(c, ctx, 1, NULL, err);
}

int conn_tls_client(struct conn *c, SSL_CTX *ctx, const char *servername, struct terr *err)
{
	return tls_start(c, ctx, 0, servername, err);
}

int conn_is_tls(const struct conn *c)
{
	return c->ssl != NULL;
}

int conn_compress(struct conn *c, struct terr *err)
{
	return conn_compress_level(c, Z_DEFAULT_COMPRESSION, err);
}

int conn_compress_level(struct conn *c, int level, struct terr *err)
{
	if (c->compressed)
		return terr_set(err, TE_INVALID, "compression is already on");
	memset(&c->zin, 0, sizeof c->zin);
	memset(&c->zout, 0, sizeof c->zout);
	if (inflateInit2(&c->zin, -15) != Z_OK)
		return terr_set(err, TE_INTERNAL, "inflateInit2 failed");
	if (deflateInit2(&c->zout, level, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
		inflateEnd(&c->zin);
		return terr_set(err, TE_INTERNAL, "deflateInit2 failed");
	}
	c->compressed = 1;
	return 0;
}

int conn_is_compressed(const struct conn *c)
{
	return c->compressed;
}

void conn_get_stats(const struct conn *c, struct conn_stats *out)
{
	*out = c->stats;
}

SSL_CTX *tls_server_ctx(const char *certfile, const char *keyfile, struct terr *err)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (!ctx) {
		ssl_err(err, "SSL_CTX_new");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
	if (SSL_CTX_use_certificate_chain_file(ctx, certfile) != 1) {
		ssl_err(err, certfile);
		SSL_CTX_free(ctx);
		return NULL;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, keyfile, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1) {
		ssl_err(err, keyfile);
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

SSL_CTX *tls_client_ctx(const char *cafile, struct terr *err)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	if (!ctx) {
		ssl_err(err, "SSL_CTX_new");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	if (cafile && *cafile) {
		if (SSL_CTX_load_verify_locations(ctx, cafile, NULL) != 1) {
			ssl_err(err, cafile);
			SSL_CTX_free(ctx);
			return NULL;
		}
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	} else {
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	}
	return ctx;
}
