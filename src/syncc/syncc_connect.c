/* syncc_connect.c: connecting the sync client to the replica: its
 * address, the banner and capabilities, STARTTLS, COMPRESS,
 * authentication, the csync or IMAP transport, retries with backoff. */
#include "sync/sync_client.h"
#include "sync/sync_client-private.h"

#include "conf/conf.h"
#include "lib/log.h"
#include "net/conn.h"
#include "net/net.h"
#include "sync/sync_transport.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Before the first command the client works on the transport's
 * connection and read buffer directly. */
static struct conn *conn_of(struct syncc *sc)
{
	return sync_transport_conn(sc->t);
}

static struct buf *in_of(struct syncc *sc)
{
	return sync_transport_inbuf(sc->t);
}

/* Banner lines are plain text ("* STARTTLS"), not DLIST. */
static int read_plain_line(struct syncc *sc, struct buf *raw, struct terr *err)
{
	long long timeout = conf_duration_ms(sc->conf, "sync_timeout");
	for (;;) {
		const char *nl = in_of(sc)->len ? memchr(in_of(sc)->ptr, '\n', in_of(sc)->len) : NULL;
		if (nl) {
			buf_reset(raw);
			buf_append(raw, in_of(sc)->ptr, (size_t)(nl - in_of(sc)->ptr) + 1);
			buf_consume(in_of(sc), raw->len);
			return 0;
		}
		if (in_of(sc)->len > 2048)
			return terr_set(err, TE_IO, "greeting line over 2048 bytes");
		ssize_t r = conn_read(conn_of(sc), in_of(sc), (int)timeout, err);
		if (r == 0)
			return terr_set(err, TE_IO, "the replica closed the connection");
		if (r < 0)
			return -1;
	}
}

/* Capabilities from an IMAP "[CAPABILITY ...]" code or "* CAPABILITY"
 * line (space-delimited words; no code: nothing changes). */
static void imap_caps(struct syncc *sc, const char *line)
{
	const char *p = strstr(line, "CAPABILITY ");
	if (!p)
		return;
	sc->cap_starttls = sc->cap_sasl_ir = sc->cap_replication = sc->cap_sieve = 0;
	sc->cap_compress = 0;	/* never on the IMAP transport (reference §2.10) */
	p += 11;
	while (*p && *p != ']' && *p != '\r' && *p != '\n') {
		size_t n = strcspn(p, " ]\r\n");
		if (n == 8 && !strncasecmp(p, "STARTTLS", n))
			sc->cap_starttls = 1;
		else if (n == 7 && !strncasecmp(p, "SASL-IR", n))
			sc->cap_sasl_ir = 1;
		else if (n == 13 && !strncasecmp(p, "X-REPLICATION", n))
			sc->cap_replication = 1;
		else if (n == 15 && !strncasecmp(p, "X-SIEVE-MAILBOX", n))
			sc->cap_sieve = 1;
		p += n;
		while (*p == ' ')
			p++;
	}
}

/* Sends an IMAP command with a fixed tag and reads to its completion,
 * taking capabilities from "* CAPABILITY" lines and the [CAPABILITY]
 * code (cmd NULL: only reads). 0 on OK. */
static int imap_simple(struct syncc *sc, const char *tag, const char *cmd, struct terr *err)
{
	if (cmd)
		conn_printf(conn_of(sc), "%s %s\r\n", tag, cmd);
	if (conn_flush(conn_of(sc), err) < 0)
		return -1;
	struct buf raw = BUF_INIT;
	size_t tl = strlen(tag);
	int rc = -1;
	for (;;) {
		if (read_plain_line(sc, &raw, err) < 0)
			break;
		if (!strncmp(raw.ptr, "* CAPABILITY ", 13)) {
			imap_caps(sc, raw.ptr);
			continue;
		}
		if (raw.ptr[0] == '*')
			continue;
		if (strncmp(raw.ptr, tag, tl) || raw.ptr[tl] != ' ') {
			terr_set(err, TE_IO, "replica: unexpected line: %.80s", raw.ptr);
			break;
		}
		if (strncmp(raw.ptr + tl + 1, "OK", 2)) {
			size_t l = raw.len;
			while (l && (raw.ptr[l - 1] == '\r' || raw.ptr[l - 1] == '\n'))
				l--;
			terr_set(err, TE_PERM, "replica: %.*s", (int)l, raw.ptr);
			break;
		}
		imap_caps(sc, raw.ptr);
		rc = 0;
		break;
	}
	buf_free(&raw);
	return rc;
}

/* sync_compress: auto (the default) deflates unless the replica is on this
 * machine (a loopback address or a Unix socket): there deflate at level 1
 * was 64% of the client's CPU in an initial sync and saved nothing
 * (docs/benchmarks.md, "Where the time goes"). -z always compresses. */
static int want_compress(struct syncc *sc)
{
	const char *v = conf_chan_str(sc->conf, sc->channel, "sync_compress");
	if (sc->o.require_compress || (v && !strcasecmp(v, "yes")))
		return 1;
	if (v && !strcasecmp(v, "no"))
		return 0;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	if (getpeername(conn_fd(conn_of(sc)), (struct sockaddr *)&ss, &sl) < 0)
		return 1;
	if (ss.ss_family == AF_UNIX)
		return 0;
	if (ss.ss_family == AF_INET)
		return (ntohl(((struct sockaddr_in *)&ss)->sin_addr.s_addr) >> 24) != 127;
	if (ss.ss_family == AF_INET6) {
		const struct in6_addr *a = &((struct sockaddr_in6 *)&ss)->sin6_addr;
		return !IN6_IS_ADDR_LOOPBACK(a) && !(IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
	}
	return 1;
}

static int read_banner(struct syncc *sc, struct terr *err)
{
	sc->cap_starttls = sc->cap_compress = sc->cap_sieve = 0;
	sc->imap = 0;
	struct buf raw = BUF_INIT;
	int rc = -1;
	for (;;) {
		if (read_plain_line(sc, &raw, err) < 0)
			break;
		if (!strncmp(raw.ptr, "* OK", 4)) {
			sc->imap = strstr(raw.ptr, "IMAP") != NULL;
			if (sc->imap) {
				sync_transport_conn_imap(sc->t);
				imap_caps(sc, raw.ptr);
			}
			rc = 0;
			break;
		}
		if (!strncasecmp(raw.ptr, "* STARTTLS", 10))
			sc->cap_starttls = 1;
		else if (!strncasecmp(raw.ptr, "* COMPRESS DEFLATE", 18))
			sc->cap_compress = 1;
		else if (!strncasecmp(raw.ptr, "* SIEVE-MAILBOX", 15))
			sc->cap_sieve = 1;
		else if (raw.ptr[0] != '*') {
			terr_set(err, TE_IO, "unexpected greeting from the replica: %.80s", raw.ptr);
			break;
		}
	}
	buf_free(&raw);
	return rc;
}

/* host, host:port, host:port/tls, /unix/path -> address, tls flag.
 * Without a port in the host or sync_port: the IMAP port first when
 * sync_try_imap is on (attempt 0), then csync's 2005 (attempt 1), as
 * Cyrus's client does; *attempts_r says how many there are. */
static int replica_address(struct syncc *sc, int attempt, struct buf *addr, int *tls, int *attempts_r,
			   struct terr *err)
{
	const char *host = sc->o.server ? sc->o.server : conf_chan_str(sc->conf, sc->channel, "sync_host");
	const char *port = conf_chan_str(sc->conf, sc->channel, "sync_port");
	if (!host || !*host)
		return terr_set(err, TE_CONFIG, "no replica for channel '%s': set %s%ssync_host or use -S",
				sc->channel, sc->channel, *sc->channel ? "_" : "");
	buf_reset(addr);
	*tls = 0;
	*attempts_r = 1;
	const char *slash = host[0] == '/' ? NULL : strchr(host, '/');
	size_t hl = slash ? (size_t)(slash - host) : strlen(host);
	if (slash && !strncmp(slash, "/tls", 4))
		*tls = 1;
	buf_append(addr, host, hl);
	int has_port;
	if (host[0] == '/')
		has_port = 1;	/* a unix socket */
	else if (host[0] == '[')
		has_port = strstr(addr->ptr, "]:") != NULL;
	else
		has_port = strchr(addr->ptr, ':') != NULL;
	if (!has_port && port && *port) {
		buf_printf(addr, ":%s", port);
	} else if (!has_port) {
		int try_imap = conf_chan_bool(sc->conf, sc->channel, "sync_try_imap");
		*attempts_r = try_imap ? 2 : 1;
		buf_appends(addr, try_imap && attempt == 0 ? ":143" : ":2005");
	}
	return 0;
}

/* AUTHENTICATE PLAIN over the IMAP transport (initial response inline
 * with SASL-IR, else after the "+" continuation). */
static int imap_login(struct syncc *sc, const char *b64, int bl, struct terr *err)
{
	struct buf cmd = BUF_INIT;
	int rc;
	if (sc->cap_sasl_ir) {
		buf_printf(&cmd, "AUTHENTICATE PLAIN %.*s", bl, b64);
		rc = imap_simple(sc, "A01", cmd.ptr, err);
	} else {
		struct buf raw = BUF_INIT;
		conn_puts(conn_of(sc), "A01 AUTHENTICATE PLAIN\r\n");
		rc = conn_flush(conn_of(sc), err) < 0 || read_plain_line(sc, &raw, err) < 0 ? -1 : 0;
		if (rc == 0 && raw.ptr[0] != '+')
			rc = terr_set(err, TE_PERM, "replica: %.80s", raw.ptr);
		buf_free(&raw);
		if (rc == 0) {
			conn_write(conn_of(sc), b64, (size_t)bl);
			conn_puts(conn_of(sc), "\r\n");
			rc = imap_simple(sc, "A01", NULL, err);
		}
	}
	if (cmd.ptr)
		memset(cmd.ptr, 0, cmd.len);
	buf_free(&cmd);
	if (rc == 0 && !sc->cap_replication)
		rc = imap_simple(sc, "C01", "CAPABILITY", err);
	if (rc == 0 && !sc->cap_replication)
		rc = terr_set(err, TE_PERM, "the replica's IMAP server does not offer X-REPLICATION (is"
				" sync_authname an admin there?)");
	return rc;
}

static int connect_attempt(struct syncc *sc, int attempt, int *attempts_r, struct terr *err)
{
	struct buf addr = BUF_INIT;
	int tls = 0, fd = -1;
	if (replica_address(sc, attempt, &addr, &tls, attempts_r, err) < 0 ||
	    net_connect(addr.ptr, (int)conf_duration_ms(sc->conf, "client_timeout"), &fd, err) < 0) {
		buf_free(&addr);
		return -1;
	}
	sc->t = sync_transport_conn_new(conn_new(fd), conf_duration_ms(sc->conf, "sync_timeout"));
	int rc = -1;
	if (read_banner(sc, err) < 0)
		goto out;
	if (sc->imap && !conf_chan_bool(sc->conf, sc->channel, "sync_try_imap")) {
		terr_set(err, TE_CONFIG, "%s answers IMAP but sync_try_imap is off: point sync_port at the"
					 " replica's csync port, or turn sync_try_imap on", addr.ptr);
		goto out;
	}
	if (tls) {
		if (!sc->cap_starttls) {
			terr_set(err, TE_CONFIG, "%s: /tls asked for but the replica offers no STARTTLS", addr.ptr);
			goto out;
		}
		if (!sc->tls && !(sc->tls = tls_client_ctx(conf_str(sc->conf, "tls_client_ca_file"), err)))
			goto out;
		if (sc->imap) {
			if (imap_simple(sc, "S01", "STARTTLS", err) < 0 ||
			    conn_tls_client(conn_of(sc), sc->tls, NULL, err) < 0 ||
			    imap_simple(sc, "C01", "CAPABILITY", err) < 0)
				goto out;
		} else if (syncc_simple(sc, "STARTTLS", err) < 0 || conn_tls_client(conn_of(sc), sc->tls, NULL, err) < 0 ||
			   read_banner(sc, err) < 0) {
			goto out;
		}
	}
	const char *user = conf_chan_str(sc->conf, sc->channel, "sync_authname");
	const char *pw = conf_chan_str(sc->conf, sc->channel, "sync_password");
	if (!user || !pw) {
		terr_set(err, TE_CONFIG, "sync_authname and sync_password are needed for channel '%s'", sc->channel);
		goto out;
	}
	struct buf plain = BUF_INIT;
	buf_putc(&plain, '\0');
	buf_appends(&plain, user);
	buf_putc(&plain, '\0');
	buf_appends(&plain, pw);
	unsigned char b64[2 * (MAX_USERID + MAX_PASSWORD) + 16];
	int bl = plain.len * 4 / 3 + 8 < sizeof b64 ? EVP_EncodeBlock(b64, (unsigned char *)plain.ptr, (int)plain.len) : -1;
	memset(plain.ptr, 0, plain.len);
	buf_free(&plain);
	if (bl < 0) {
		terr_set(err, TE_CONFIG, "sync_authname or sync_password too long");
		goto out;
	}
	int arc;
	if (sc->imap) {
		arc = imap_login(sc, (const char *)b64, bl, err);
	} else {
		buf_reset(&sc->out);
		buf_printf(&sc->out, "AUTHENTICATE PLAIN %.*s\r\n", bl, b64);
		arc = syncc_roundtrip(sc, NULL, NULL, err);
	}
	memset(b64, 0, sizeof b64);
	if (arc < 0)
		goto out;
	if (sc->cap_compress && want_compress(sc)) {
		if (syncc_simple(sc, "COMPRESS DEFLATE", err) < 0 || conn_compress_level(conn_of(sc), SYNCC_DEFLATE_LEVEL, err) < 0)
			goto out;
	} else if (sc->o.require_compress) {
		terr_set(err, TE_CONFIG, "compression required (-z) but the replica does not offer it%s",
			 sc->imap ? " (never over the IMAP transport)" : "");
		goto out;
	}
	if (sc->cap_sieve && syncc_simple(sc, "APPLY CAPABILITIES (SIEVE-MAILBOX)", err) < 0)
		goto out;
	log_info("event=sync_connect channel=%s replica=%s transport=%s tls=%d compress=%d", sc->channel, addr.ptr,
		 sc->imap ? "imap" : "csync", conn_is_tls(conn_of(sc)), conn_is_compressed(conn_of(sc)));
	rc = 0;
out:
	if (rc < 0)
		syncc_disconnect(sc);
	buf_free(&addr);
	return rc;
}

static int connect_once(struct syncc *sc, struct terr *err)
{
	if (sc->o.connect) {
		/* an in-process replica (tests): no address, banner or login */
		sc->t = sc->o.connect(sc->o.connect_rock, err);
		if (!sc->t)
			return -1;
		sc->cap_sieve = 1;
		return sc->cap_sieve && syncc_simple(sc, "APPLY CAPABILITIES (SIEVE-MAILBOX)", err) < 0 ? -1 : 0;
	}
	int attempts = 1;
	for (int i = 0; i < attempts; i++) {
		if (connect_attempt(sc, i, &attempts, err) == 0)
			return 0;
		if (err->code == TE_CONFIG)
			return -1;
	}
	return -1;
}

int syncc_connect(struct syncc *sc, struct terr *err)
{
	if (sc->t)
		return 0;	/* connected already */
	long long wait = conf_chan_duration_ms(sc->conf, sc->channel, "sync_reconnect_minwait");
	long long cap = conf_duration_ms(sc->conf, "sync_reconnect_maxwait");
	if (wait < 100)
		wait = 100;
	syncc_pub_state(sc, "connecting", 0, NULL);
	for (;;) {
		if (connect_once(sc, err) == 0) {
			syncc_pub_state(sc, "connected", 0, NULL);
			return 0;
		}
		if (sc->o.connect_once || err->code == TE_CONFIG || (sc->o.stop && *sc->o.stop)) {
			syncc_pub_state(sc, "connecting", 0, err->msg);
			return -1;
		}
		log_warn("event=sync_connect_fail channel=%s error=\"%s\" retry_ms=%lld", sc->channel, err->msg, wait);
		syncc_pub_state(sc, "backoff", (long long)time(NULL) + (wait + 999) / 1000, err->msg);
		/* the sessions waiting for synchronous replication are told
		 * at once: the replica is unreachable */
		syncc_rn_sleep(sc, wait, err->msg);
		wait *= 2;
		if (cap > 0 && wait > cap)
			wait = cap;
	}
}
