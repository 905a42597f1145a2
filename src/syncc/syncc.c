/* syncc.c: the sync client (see syncc.h).
 *
 * Mailbox batch (reference §6.2-6.4):
 *   GET MAILBOXES (names) -> the replica's state of each;
 *   a local mailbox whose uniqueid the replica has under another name of
 *     the batch -> APPLY RENAME first;
 *   a name gone locally but present on the replica -> APPLY UNMAILBOX;
 *   same header and CRCs -> nothing to send;
 *   else incremental: records with modseq > the replica's HIGHESTMODSEQ,
 *     bodies of new records via APPLY RESERVE + APPLY MESSAGE, then
 *     APPLY MAILBOX with SINCE_MODSEQ/SINCE_CRC*; a refusal
 *     (IMAP_SYNC_CHECKSUM / IMAP_SYNC_CHANGED) -> a full update with every
 *     record.
 */
#include "syncc/syncc.h"
#include "syncc/syncc-private.h"

#include "chlog/chlog.h"
#include "conf/conf.h"
#include "lib/fsutil.h"
#include "lib/limits.h"
#include "lib/sha1.h"
#include "lib/log.h"
#include "lib/xalloc.h"
#include "names/mboxname.h"
#include "net/conn.h"
#include "net/net.h"
#include "proto/sync/dlist.h"
#include "store/store.h"
#include "sync/sync.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <poll.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Bytes of message bodies per APPLY MESSAGE: bounds the replica's memory
 * for one command. */
#define SYNCC_MESSAGE_BATCH_BYTES (32L * 1024 * 1024)

/* The current work's results (see failed_merge). */
static void note_synced(struct syncc *sc, const char *name);
static void note_failed(struct syncc *sc, const char *name, const char *error);
static void work_clear(struct syncc *sc);

struct syncc *syncc_new(const struct conf *conf, struct store *st, const struct syncc_opts *o)
{
	struct syncc *sc = xcalloc(1, sizeof *sc);
	sc->conf = conf;
	sc->st = st;
	sc->o = *o;
	snprintf(sc->channel, sizeof sc->channel, "%s", o->channel ? o->channel : "");
	return sc;
}

void syncc_disconnect(struct syncc *sc)
{
	sc->pcount = 0;
	conn_free(&sc->c);
	buf_reset(&sc->in);
}

void syncc_free(struct syncc **scp)
{
	struct syncc *sc = *scp;
	if (!sc)
		return;
	syncc_disconnect(sc);
	if (sc->tls)
		SSL_CTX_free(sc->tls);
	buf_free(&sc->in);
	buf_free(&sc->out);
	syncc_items_free(&sc->diffs);
	syncc_items_free(&sc->copied);
	syncc_items_free(&sc->renumbered);
	syncc_items_free(&sc->repaired);
	syncc_items_free(&sc->kept);
	syncc_items_free(&sc->renamed);
	syncc_items_free(&sc->remaining);
	syncc_rcache_clear(sc);
	work_clear(sc);
	free(sc);
	*scp = NULL;
}

void syncc_get_stats(const struct syncc *sc, struct syncc_stats *out)
{
	*out = sc->stats;
}

/* ---- wire ---------------------------------------------------------------------------- */

/* Reads one framed response line into *line (owned by the caller). */
static int read_line(struct syncc *sc, struct dlist **line_r, struct buf *raw, struct terr *err)
{
	struct dlist_frame f;
	dlist_frame_init(&f);
	long long timeout = conf_duration_ms(sc->conf, "sync_timeout");
	for (;;) {
		long long n = dlist_frame_scan(&f, sc->in.ptr ? sc->in.ptr : "", sc->in.len, err);
		if (n < 0)
			return -1;
		if (n > 0) {
			buf_reset(raw);
			buf_append(raw, sc->in.ptr, (size_t)n);
			buf_consume(&sc->in, (size_t)n);
			return dlist_parse(raw->ptr, raw->len, line_r, err);
		}
		ssize_t r = conn_read(sc->c, &sc->in, (int)timeout, err);
		if (r == 0)
			return terr_set(err, TE_IO, "the replica closed the connection");
		if (r < 0)
			return -1;
	}
}

/* Sends sc->out as one command and reads its response: data lines go to
 * data_cb; returns 0 on OK, -1 with err (TE_CHECKSUM, TE_CHANGED,
 * TE_MOVED, TE_NOTFOUND from the NO code; TE_IO on the connection). */

/* Writes sc->out as the IMAP transport's command: "GET x" becomes
 * "S<n> SYNCGET x", RESTART "S<n> SYNCRESTART", NOOP "N01 NOOP", EXIT
 * "Q01 LOGOUT"; AUTHENTICATE/STARTTLS/CAPABILITY get A01/S01/C01 (the
 * fixed tags of Cyrus's client). sc->tag gets the tag to expect. */
static void imap_wrap(struct syncc *sc)
{
	static const struct { const char *verb, *tag, *imap; } fixed[] = {
		{ "NOOP", "N01", "NOOP" }, { "EXIT", "Q01", "LOGOUT" },
		{ "AUTHENTICATE", "A01", "AUTHENTICATE" }, { "STARTTLS", "S01", "STARTTLS" },
		{ "CAPABILITY", "C01", "CAPABILITY" },
	};
	size_t vl = strcspn(sc->out.ptr, " \r\n");
	const char *rest = sc->out.ptr + vl;
	const char *imapverb = NULL;
	for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
		if (strlen(fixed[i].verb) == vl && !strncmp(sc->out.ptr, fixed[i].verb, vl)) {
			snprintf(sc->tag, sizeof sc->tag, "%s", fixed[i].tag);
			imapverb = fixed[i].imap;
		}
	char head[64];
	if (imapverb) {
		snprintf(head, sizeof head, "%s %s", sc->tag, imapverb);
	} else {
		snprintf(sc->tag, sizeof sc->tag, "S%lu", sc->tagn++);
		snprintf(head, sizeof head, "%s SYNC%.*s", sc->tag, (int)vl, sc->out.ptr);
	}
	conn_puts(sc->c, head);
	conn_write(sc->c, rest, sc->out.len - vl);
}

void syncc_send(struct syncc *sc)
{
	if (sc->o.verbose)
		log_debug("event=sync_send channel=%s bytes=%zu command=\"%.120s\"", sc->channel, sc->out.len,
			  buf_cstr(&sc->out));
	if (sc->imap) {
		imap_wrap(sc);
	} else {
		sc->tag[0] = '\0';
		conn_write(sc->c, sc->out.ptr, sc->out.len);
	}
	if (sc->pcount < SYNCC_MAX_PIPELINE) {
		size_t slot = (sc->pfirst + sc->pcount++) % SYNCC_MAX_PIPELINE;
		snprintf(sc->ptags[slot], sizeof sc->ptags[slot], "%s", sc->tag);
	}
	sc->since_restart = !strncmp(sc->out.ptr, "RESTART", 7) ? 0 : sc->since_restart + 1;
	sc->stats.bytes_sent += sc->out.len;
	sc->stats.commands++;
	buf_reset(&sc->out);
}

int syncc_recv(struct syncc *sc, data_fn *cb, void *rock, struct terr *err)
{
	char tag[24] = "";
	if (sc->pcount) {
		snprintf(tag, sizeof tag, "%s", sc->ptags[sc->pfirst]);
		sc->pfirst = (sc->pfirst + 1) % SYNCC_MAX_PIPELINE;
		sc->pcount--;
	}
	struct buf raw = BUF_INIT;
	int rc = -1;
	for (;;) {
		struct dlist *line = NULL;
		if (read_line(sc, &line, &raw, err) < 0)
			break;
		const char *w = line->n ? dlist_cstr(line->items[0]) : "";
		if (sc->imap && w && !strcmp(w, "+")) {
			dlist_free(&line);	/* a continuation: nothing waits for one */
			continue;
		}
		if (w && !strcmp(w, "*")) {
			struct dlist *kv = dlist_take_keyed(line, 1);
			if (kv && cb)
				cb(rock, kv);
			dlist_free(&kv);
			dlist_free(&line);
			continue;
		}
		dlist_free(&line);
		const char *text = raw.ptr;
		size_t tl = strlen(tag);
		if (tl) {
			if (strncmp(text, tag, tl) || text[tl] != ' ') {
				terr_set(err, TE_IO, "replica: unexpected line: %.80s", text);
				break;
			}
			text += tl + 1;
		}
		if (!strncmp(text, "OK", 2)) {
			rc = 0;
		} else {
			enum terr_code code = TE_IO;
			if (strstr(text, "IMAP_SYNC_CHECKSUM"))
				code = TE_CHECKSUM;
			else if (strstr(text, "IMAP_SYNC_CHANGED"))
				code = TE_CHANGED;
			else if (strstr(text, "IMAP_MAILBOX_MOVED"))
				code = TE_MOVED;
			else if (strstr(text, "IMAP_MAILBOX_NONEXISTENT"))
				code = TE_NOTFOUND;
			else if (!strncmp(text, "NO", 2))
				code = TE_PERM;
			size_t l = raw.len - (size_t)(text - raw.ptr);
			while (l && (text[l - 1] == '\r' || text[l - 1] == '\n'))
				l--;
			terr_set(err, code, "replica: %.*s", (int)l, text);
		}
		break;
	}
	buf_free(&raw);
	if (rc < 0 && err->code == TE_IO)
		sc->pcount = 0;	/* the connection is lost with what was in flight */
	return rc;
}

int syncc_roundtrip(struct syncc *sc, data_fn *cb, void *rock, struct terr *err)
{
	syncc_send(sc);
	if (conn_flush(sc->c, err) < 0) {
		sc->pcount = 0;
		return -1;
	}
	sc->stats.roundtrips++;
	return syncc_recv(sc, cb, rock, err);
}

static void cmd_begin(struct syncc *sc, const char *verb)
{
	buf_reset(&sc->out);
	buf_appends(&sc->out, verb);
	buf_putc(&sc->out, ' ');
}

void syncc_cmd_dlist(struct syncc *sc, const char *verb, const struct dlist *d)
{
	cmd_begin(sc, verb);
	dlist_print(&sc->out, d, DLIST_LIT_CLIENT);
	buf_appends(&sc->out, "\r\n");
}

static int simple(struct syncc *sc, const char *line, struct terr *err)
{
	buf_reset(&sc->out);
	buf_appends(&sc->out, line);
	buf_appends(&sc->out, "\r\n");
	return syncc_roundtrip(sc, NULL, NULL, err);
}

/* ---- connecting ------------------------------------------------------------------------ */

/* Banner lines are plain text ("* STARTTLS"), not DLIST. */
static int read_plain_line(struct syncc *sc, struct buf *raw, struct terr *err)
{
	long long timeout = conf_duration_ms(sc->conf, "sync_timeout");
	for (;;) {
		const char *nl = sc->in.len ? memchr(sc->in.ptr, '\n', sc->in.len) : NULL;
		if (nl) {
			buf_reset(raw);
			buf_append(raw, sc->in.ptr, (size_t)(nl - sc->in.ptr) + 1);
			buf_consume(&sc->in, raw->len);
			return 0;
		}
		if (sc->in.len > 2048)
			return terr_set(err, TE_IO, "greeting line over 2048 bytes");
		ssize_t r = conn_read(sc->c, &sc->in, (int)timeout, err);
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
		conn_printf(sc->c, "%s %s\r\n", tag, cmd);
	if (conn_flush(sc->c, err) < 0)
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
			if (sc->imap)
				imap_caps(sc, raw.ptr);
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
		conn_puts(sc->c, "A01 AUTHENTICATE PLAIN\r\n");
		rc = conn_flush(sc->c, err) < 0 || read_plain_line(sc, &raw, err) < 0 ? -1 : 0;
		if (rc == 0 && raw.ptr[0] != '+')
			rc = terr_set(err, TE_PERM, "replica: %.80s", raw.ptr);
		buf_free(&raw);
		if (rc == 0) {
			conn_write(sc->c, b64, (size_t)bl);
			conn_puts(sc->c, "\r\n");
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
	sc->c = conn_new(fd);
	sc->tagn = 0;
	sc->tag[0] = '\0';
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
			    conn_tls_client(sc->c, sc->tls, NULL, err) < 0 ||
			    imap_simple(sc, "C01", "CAPABILITY", err) < 0)
				goto out;
		} else if (simple(sc, "STARTTLS", err) < 0 || conn_tls_client(sc->c, sc->tls, NULL, err) < 0 ||
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
	if (sc->cap_compress) {
		if (simple(sc, "COMPRESS DEFLATE", err) < 0 || conn_compress_level(sc->c, SYNCC_DEFLATE_LEVEL, err) < 0)
			goto out;
	} else if (sc->o.require_compress) {
		terr_set(err, TE_CONFIG, "compression required (-z) but the replica does not offer it%s",
			 sc->imap ? " (never over the IMAP transport)" : "");
		goto out;
	}
	if (sc->cap_sieve && simple(sc, "APPLY CAPABILITIES (SIEVE-MAILBOX)", err) < 0)
		goto out;
	log_info("event=sync_connect channel=%s replica=%s transport=%s tls=%d compress=%d", sc->channel, addr.ptr,
		 sc->imap ? "imap" : "csync", conn_is_tls(sc->c), conn_is_compressed(sc->c));
	rc = 0;
out:
	if (rc < 0)
		syncc_disconnect(sc);
	buf_free(&addr);
	return rc;
}

static int connect_once(struct syncc *sc, struct terr *err)
{
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
	long long wait = conf_chan_duration_ms(sc->conf, sc->channel, "sync_reconnect_minwait");
	long long cap = conf_duration_ms(sc->conf, "sync_reconnect_maxwait");
	if (wait < 100)
		wait = 100;
	for (;;) {
		if (connect_once(sc, err) == 0)
			return 0;
		if (sc->o.connect_once || err->code == TE_CONFIG || (sc->o.stop && *sc->o.stop))
			return -1;
		log_warn("event=sync_connect_fail channel=%s error=\"%s\" retry_ms=%lld", sc->channel, err->msg, wait);
		for (long long slept = 0; slept < wait && !(sc->o.stop && *sc->o.stop); slept += 100)
			usleep(100000);
		wait *= 2;
		if (cap > 0 && wait > cap)
			wait = cap;
	}
}

/* ---- mailboxes ---------------------------------------------------------------------------- */

struct remote {
	char *name;
	struct dlist *kv;
};

struct remotes {
	struct remote *r;
	size_t n;
};

static void collect_remote(void *rock, struct dlist *kv)
{
	struct remotes *rs = rock;
	const char *name;
	if (strcasecmp(kv->key, "MAILBOX") || dlist_get_str(kv, "MBOXNAME", &name) < 0)
		return;
	rs->r = xrealloc(rs->r, (rs->n + 1) * sizeof *rs->r);
	rs->r[rs->n].name = xstrdup(name);
	/* keep the kvlist: move it out of the caller's ownership */
	struct dlist *copy = dlist_new(DL_KVLIST, "MAILBOX");
	copy->items = kv->items;
	copy->n = kv->n;
	copy->cap = kv->cap;
	kv->items = NULL;
	kv->n = kv->cap = 0;
	rs->r[rs->n++].kv = copy;
}

static void remotes_free(struct remotes *rs)
{
	for (size_t i = 0; i < rs->n; i++) {
		free(rs->r[i].name);
		dlist_free(&rs->r[i].kv);
	}
	free(rs->r);
	rs->r = NULL;
	rs->n = 0;
}

static const struct dlist *remote_by_name(const struct remotes *rs, const char *name)
{
	for (size_t i = 0; i < rs->n; i++)
		if (!strcmp(rs->r[i].name, name))
			return rs->r[i].kv;
	return NULL;
}

static const char *remote_by_uniqueid(const struct remotes *rs, const char *uniqueid)
{
	for (size_t i = 0; i < rs->n; i++) {
		const char *u;
		if (dlist_get_str(rs->r[i].kv, "UNIQUEID", &u) == 0 && !strcmp(u, uniqueid))
			return rs->r[i].name;
	}
	return NULL;
}

/* Uploads the bodies of the records the replica may lack: RESERVE, then
 * MESSAGE for what it reports missing. */
struct missing {
	char **guids;
	size_t n;
};

static void collect_missing(void *rock, struct dlist *kv)
{
	struct missing *m = rock;
	if (strcasecmp(kv->key, "MISSING") || kv->type != DL_LIST)
		return;
	for (size_t i = 0; i < kv->n; i++) {
		const char *g = dlist_cstr(kv->items[i]);
		if (g) {
			m->guids = xrealloc(m->guids, (m->n + 1) * sizeof *m->guids);
			m->guids[m->n++] = xstrdup(g);
		}
	}
}

static int upload_bodies(struct syncc *sc, const char *name, const struct dlist *records, uint32_t above_uid,
			 struct terr *err)
{
	struct dlist *res = dlist_new(DL_KVLIST, "RESERVE");
	dlist_add_str(res, "PARTITION", "default");
	dlist_add_str(dlist_add_list(res, "MBOXNAME"), NULL, name);
	struct dlist *guids = dlist_add_list(res, "GUID");
	for (size_t i = 0; i < records->n; i++) {
		const struct dlist *r = records->items[i];
		uint32_t uid;
		char g[41];
		const struct dlist *fl = dlist_get_list(r, "FLAGS");
		int expunged = 0;
		for (size_t k = 0; fl && k < fl->n; k++)
			if (dlist_cstr(fl->items[k]) && !strcasecmp(dlist_cstr(fl->items[k]), "\\Expunged"))
				expunged = 1;
		if (expunged || dlist_get_num32(r, "UID", &uid) < 0 || uid <= above_uid || dlist_get_guid(r, "GUID", g) < 0)
			continue;
		dlist_add_str(guids, NULL, g);
	}
	int rc = 0;
	if (guids->n) {
		struct missing m = { NULL, 0 };
		syncc_cmd_dlist(sc, "APPLY", res);
		rc = syncc_roundtrip(sc, collect_missing, &m, err);
		struct dlist *msg = NULL;
		size_t bytes = 0;
		struct buf data = BUF_INIT;
		for (size_t i = 0; rc == 0 && i <= m.n; i++) {
			if (msg && (i == m.n || msg->n >= SYNC_MAX_MESSAGE_FILES || bytes >= SYNCC_MESSAGE_BATCH_BYTES)) {
				syncc_cmd_dlist(sc, "APPLY", msg);
				dlist_free(&msg);
				bytes = 0;
				rc = syncc_roundtrip(sc, NULL, NULL, err);
			}
			if (i == m.n || rc < 0)
				break;
			buf_reset(&data);
			if (store_message_read(sc->st, name, m.guids[i], &data, err) < 0) {
				rc = -1;
				break;
			}
			if (!msg)
				msg = dlist_new(DL_LIST, "MESSAGE");
			dlist_add_file(msg, NULL, "default", m.guids[i], data.ptr, data.len);
			bytes += data.len;
			sc->stats.messages++;
		}
		dlist_free(&msg);
		buf_free(&data);
		for (size_t i = 0; i < m.n; i++)
			free(m.guids[i]);
		free(m.guids);
	}
	dlist_free(&res);
	return rc;
}

static void rcache_put(struct syncc *sc, const char *name, const struct dlist *mb);

static int header_equal(const struct dlist *local, const struct dlist *remote)
{
	static const char *const keys[] = { "UNIQUEID", "LAST_UID", "HIGHESTMODSEQ", "UIDVALIDITY", "SYNC_CRC",
					    "SYNC_CRC_ANNOT", "ACL", "RECENTUID", "OPTIONS" };
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
		const char *a = dlist_cstr(dlist_get(local, keys[i])), *b = dlist_cstr(dlist_get(remote, keys[i]));
		if (!a || !b || strcmp(a, b))
			return 0;
	}
	return 1;
}

/* One APPLY MAILBOX of name: full (every record) or incremental (records
 * above the replica's HIGHESTMODSEQ, with SINCE_*). */
static int push_mailbox(struct syncc *sc, const char *name, int full, const struct dlist *remote, struct terr *err)
{
	struct dlist *mb = NULL;
	uint64_t rms = 0;
	uint32_t rlast = 0, rcrc = 0, rannot = 0;
	if (remote) {
		dlist_get_num64(remote, "HIGHESTMODSEQ", &rms);
		dlist_get_num32(remote, "LAST_UID", &rlast);
		dlist_get_num32(remote, "SYNC_CRC", &rcrc);
		dlist_get_num32(remote, "SYNC_CRC_ANNOT", &rannot);
	}
	if (sync_mailbox_dlist(sc->st, name, 1, full ? 0 : rms, &mb, err) < 0)
		return -1;
	if (!full) {
		dlist_add_num(mb, "SINCE_MODSEQ", rms);
		dlist_add_num(mb, "SINCE_CRC", rcrc);
		dlist_add_num(mb, "SINCE_CRC_ANNOT", rannot);
	}
	const struct dlist *records = dlist_get_list(mb, "RECORD");
	int rc = upload_bodies(sc, name, records, full ? 0 : rlast, err);
	if (rc == 0) {
		/* RECORD must be last, after SINCE_*: move it to the end */
		for (size_t i = 0; i + 1 < mb->n; i++)
			if (mb->items[i] == records) {
				memmove(&mb->items[i], &mb->items[i + 1], (mb->n - i - 1) * sizeof *mb->items);
				mb->items[mb->n - 1] = (struct dlist *)records;
				break;
			}
		syncc_rcache_drop(sc, name);
		syncc_cmd_dlist(sc, "APPLY", mb);
		rc = syncc_roundtrip(sc, NULL, NULL, err);
	}
	if (rc == 0)
		rcache_put(sc, name, mb);
	dlist_free(&mb);
	if (rc == 0)
		sc->stats.mailboxes++;
	return rc;
}

/* ---- streamed updates: partial APPLY MAILBOX parts, pipelined ------------------------ */

/* A mailbox's update is sent in parts (Cyrus's partial updates,
 * reference §6.6): each part is a consistent state, its LAST_UID and
 * HIGHESTMODSEQ capped so that they cover every record it holds
 * (SYNC_CRC 0: "anything"); the replica checks and commits it durably
 * like any APPLY MAILBOX, and the next part is an incremental update
 * from it (SINCE_MODSEQ); the last one carries the real header and CRCs.
 * A part holds at most sync_batchsize new messages and about
 * SYNCC_PART_BYTES of new bodies.
 *
 * Pipelining: the bodies of part k+1 (APPLY MESSAGE, only staged by the
 * replica) are read, compressed and sent while the replica applies part
 * k; the APPLY MAILBOX of part k+1 is sent once part k is answered (one
 * APPLY MAILBOX in flight, so a refused part is never followed by
 * another). Several mailboxes go through one stream the same way. */

/* New bodies per part: small enough that the replica's apply of one part
 * overlaps the reading and compressing of the next. */
#define SYNCC_PART_BYTES (1024L * 1024)
#define SYNCC_PART_BYTES_MIN (128L * 1024)

/* A set of GUIDs (open addressing; the table doubles at half full). */
struct gset {
	char (*g)[41];
	size_t n, cap;
};

static size_t gset_slot(const struct gset *s, const char *g)
{
	size_t h = 5381;
	for (const char *p = g; *p; p++)
		h = h * 33 + (unsigned char)*p;
	size_t i = h & (s->cap - 1);
	while (s->g[i][0] && strcmp(s->g[i], g))
		i = (i + 1) & (s->cap - 1);
	return i;
}

static int gset_has(const struct gset *s, const char *g)
{
	return s->cap && s->g[gset_slot(s, g)][0];
}

static void gset_add(struct gset *s, const char *g)
{
	if (2 * (s->n + 1) > s->cap) {
		struct gset big = { NULL, 0, s->cap ? 2 * s->cap : 256 };
		big.g = xcalloc(big.cap, sizeof *big.g);
		for (size_t i = 0; i < s->cap; i++)
			if (s->g[i][0])
				memcpy(big.g[gset_slot(&big, s->g[i])], s->g[i], 41);
		big.n = s->n;
		free(s->g);
		*s = big;
	}
	size_t i = gset_slot(s, g);
	if (!s->g[i][0]) {
		snprintf(s->g[i], sizeof s->g[i], "%s", g);
		s->n++;
	}
}

static void gset_free(struct gset *s)
{
	free(s->g);
	memset(s, 0, sizeof *s);
}

/* One record of a snapshot, as the planning needs it. */
struct prec {
	uint32_t uid;
	uint64_t modseq;
	uint32_t size;
	int expunged;
	char guid[41];
	struct dlist *modseq_item;	/* its MODSEQ value, capped in place while a part is printed */
};

/* Where a part ends: the records up to index end - 1, the state
 * (last_uid, modseq). The last part is the snapshot itself. */
struct cut {
	size_t end;
	uint32_t last_uid;
	uint64_t modseq;
};

static int rec_is_expunged(const struct dlist *r);

static struct prec *snapshot_records(const struct dlist *records, size_t *n_r)
{
	size_t n = records ? records->n : 0;
	struct prec *v = xcalloc(n ? n : 1, sizeof *v);
	for (size_t i = 0; i < n; i++) {
		struct dlist *r = records->items[i];
		dlist_get_num32(r, "UID", &v[i].uid);
		dlist_get_num64(r, "MODSEQ", &v[i].modseq);
		dlist_get_num32(r, "SIZE", &v[i].size);
		if (dlist_get_guid(r, "GUID", v[i].guid) < 0)
			v[i].guid[0] = '\0';
		v[i].expunged = rec_is_expunged(r);
		for (size_t k = 0; k < r->n; k++)
			if (!strcmp(r->items[k]->key, "MODSEQ"))
				v[i].modseq_item = r->items[k];
	}
	*n_r = n;
	return v;
}

/* The parts of an update from the replica's (rlast, rms) to a snapshot
 * whose records (ascending UID, modseq > rms) are v[0..n) and whose
 * HIGHESTMODSEQ is hms: a cut after every `batch` new records (or
 * SYNCC_PART_BYTES of new bodies), at (LAST_UID, MODSEQ) = (the UID of
 * its last record, the least modseq of the records after it - 1), so
 * every later record is above the cut in both; the cut's modseq must be
 * above the previous one and below hms (else the cut moves on; when no
 * cut is possible the rest is one part). Returns the number of cuts. */
static size_t plan_cuts(const struct prec *v, size_t n, uint32_t rlast, uint64_t rms, uint64_t hms, size_t batch,
			struct cut **cuts_r)
{
	uint64_t *sufmin = xcalloc(n + 1, sizeof *sufmin);
	sufmin[n] = UINT64_MAX;
	for (size_t i = n; i-- > 0;)
		sufmin[i] = v[i].modseq < sufmin[i + 1] ? v[i].modseq : sufmin[i + 1];
	struct cut *cuts = NULL;
	size_t ncuts = 0, p = 0;
	uint64_t base = rms;
	while (p < n && v[p].uid <= rlast)
		p++;
	size_t left = 0;	/* new bodies from p on */
	for (size_t i = p; i < n; i++)
		left += v[i].expunged ? 0 : v[i].size;
	for (size_t part = 0;; part++) {
		/* the first parts grow from SYNCC_PART_BYTES_MIN and the last
		 * ones shrink to it: the replica starts early, and the client
		 * waits little for the last apply */
		size_t budget = (size_t)SYNCC_PART_BYTES_MIN << (part < 16 ? part : 16);
		if (budget > left / 2)
			budget = left / 2;
		if (budget > (size_t)SYNCC_PART_BYTES)
			budget = SYNCC_PART_BYTES;
		if (budget < (size_t)SYNCC_PART_BYTES_MIN)
			budget = left <= 2 * (size_t)SYNCC_PART_BYTES_MIN ? SIZE_MAX : SYNCC_PART_BYTES_MIN;
		size_t k = 0, bytes = 0, j = p;
		while (j < n && k < batch && bytes < budget) {
			bytes += v[j].expunged ? 0 : v[j].size;
			k++;
			j++;
		}
		if (j >= n)
			break;
		size_t e = j;	/* the part is v[..e) */
		while (e < n && !(sufmin[e] - 1 > base && sufmin[e] - 1 < hms))
			e++;
		if (e >= n)
			break;
		cuts = xrealloc(cuts, (ncuts + 1) * sizeof *cuts);
		cuts[ncuts++] = (struct cut){ e, v[e - 1].uid, sufmin[e] - 1 };
		for (size_t i = p; i < e; i++)
			left -= v[i].expunged ? 0 : v[i].size;
		base = sufmin[e] - 1;
		p = e;
	}
	free(sufmin);
	*cuts_r = cuts;
	return ncuts;
}

static void kv_set_num(struct dlist *kv, const char *key, uint64_t v)
{
	struct dlist *d = (struct dlist *)dlist_get(kv, key);
	if (!d)
		d = dlist_add_num(kv, key, v);
	buf_reset(&d->s);
	buf_printf(&d->s, "%llu", (unsigned long long)v);
}

/* Moves RECORD to the end of a MAILBOX kvlist (after SINCE_*). */
static void record_last(struct dlist *mb)
{
	const struct dlist *records = dlist_get_list(mb, "RECORD");
	for (size_t i = 0; records && i + 1 < mb->n; i++)
		if (mb->items[i] == records) {
			memmove(&mb->items[i], &mb->items[i + 1], (mb->n - i - 1) * sizeof *mb->items);
			mb->items[mb->n - 1] = (struct dlist *)records;
			break;
		}
}

/* Header keys a part changes, restored for the last part: the first
 * PART_KEYS_REPLICA are the replica's (0 for a new mailbox), as in
 * Cyrus's partial update; the others are the part's state. */
static const char *const part_keys[] = { "RECENTUID", "RECENTTIME", "POP3_LAST_LOGIN", "POP3_SHOW_AFTER",
					 "XCONVMODSEQ", "RACLMODSEQ", "LAST_UID", "HIGHESTMODSEQ", "SYNC_CRC",
					 "SYNC_CRC_ANNOT", "LAST_APPENDDATE" };
#define NPART_KEYS (sizeof part_keys / sizeof part_keys[0])
#define PART_KEYS_REPLICA 6

enum spend_kind { SP_MESSAGE, SP_MAILBOX, SP_OTHER };

struct sitem {
	char *name;
	struct dlist *mb;	/* the snapshot; after the last part its header is the replica's */
	int state;		/* 0 going, 1 done, -1 failed */
	struct terr err;
	unsigned parts;
};

/* A command in flight. SP_OTHER: data lines go to cb; its failure goes
 * to *oerr (when set and still clear); *done is set once answered. */
struct spend {
	enum spend_kind kind;
	size_t item;
	int last;
	data_fn *cb;
	void *rock;
	struct terr *oerr;
	int *done;
};

struct stream {
	struct syncc *sc;
	struct spend q[SYNCC_MAX_PIPELINE];
	size_t qfirst, qn, mb_inflight;
	struct gset sent;	/* bodies staged on the replica by this stream */
	struct sitem *it;
	size_t nit;
	unsigned long bodies, bodies_staged;	/* sent; sent since the last RESTART */
};

/* Reads the answer of the oldest command in flight. -1 only when the
 * connection failed (err set). */
static int stream_recv(struct stream *s, struct terr *err)
{
	struct syncc *sc = s->sc;
	size_t slot = s->qfirst;
	s->qfirst = (s->qfirst + 1) % SYNCC_MAX_PIPELINE;
	s->qn--;
	struct spend *pe = &s->q[slot];
	struct terr e2 = { 0 };
	int r = syncc_recv(sc, pe->cb, pe->rock, &e2);
	if (r < 0 && e2.code == TE_IO) {
		*err = e2;
		return -1;
	}
	if (pe->done)
		*pe->done = 1;
	if (pe->kind == SP_MAILBOX)
		s->mb_inflight--;
	if (pe->kind == SP_OTHER) {
		if (r < 0 && pe->oerr && !pe->oerr->code)
			*pe->oerr = e2;
		return 0;
	}
	struct sitem *it = &s->it[pe->item];
	if (r < 0) {
		if (it->state == 0) {
			it->state = -1;
			it->err = e2;
		}
	} else if (pe->kind == SP_MAILBOX && pe->last && it->state == 0) {
		it->state = 1;
		rcache_put(sc, it->name, it->mb);
		dlist_free(&it->mb);
		sc->stats.mailboxes++;
	}
	return 0;
}

/* Sends sc->out now (flushed: the replica starts on it) and remembers it. */
static int stream_send_pe(struct stream *s, const struct spend *pe, struct terr *err)
{
	while (s->qn + 1 >= SYNCC_MAX_PIPELINE)
		if (stream_recv(s, err) < 0)
			return -1;
	syncc_send(s->sc);
	if (conn_flush(s->sc->c, err) < 0) {
		s->sc->pcount = 0;
		return -1;
	}
	s->q[(s->qfirst + s->qn++) % SYNCC_MAX_PIPELINE] = *pe;
	if (pe->kind == SP_MAILBOX)
		s->mb_inflight++;
	return 0;
}

static int stream_send(struct stream *s, enum spend_kind kind, size_t item, int last, struct terr *err)
{
	struct spend pe = { kind, item, last, NULL, NULL, NULL, NULL };
	return stream_send_pe(s, &pe, err);
}

static int stream_drain(struct stream *s, struct terr *err)
{
	if (s->qn)
		s->sc->stats.roundtrips++;
	while (s->qn)
		if (stream_recv(s, err) < 0)
			return -1;
	return 0;
}

/* APPLY MESSAGE for the bodies of v[lo..hi) that the replica needs (not
 * staged by this stream; with need, only those RESERVE reported missing).
 * A body that cannot be read fails the mailbox. */
static int send_bodies(struct stream *s, size_t idx, const struct prec *v, size_t lo, size_t hi,
		       const struct gset *need, struct terr *err)
{
	struct syncc *sc = s->sc;
	struct sitem *it = &s->it[idx];
	struct dlist *msg = NULL;
	size_t bytes = 0;
	struct buf data = BUF_INIT;
	int rc = 0;
	for (size_t i = lo; i <= hi && rc == 0; i++) {
		if (msg && (i == hi || msg->n >= SYNC_MAX_MESSAGE_FILES || bytes >= SYNCC_MESSAGE_BATCH_BYTES)) {
			syncc_cmd_dlist(sc, "APPLY", msg);
			dlist_free(&msg);
			bytes = 0;
			rc = stream_send(s, SP_MESSAGE, idx, 0, err);
		}
		if (i == hi || rc < 0)
			break;
		if (v[i].expunged || !v[i].guid[0] || gset_has(&s->sent, v[i].guid) ||
		    (need && !gset_has(need, v[i].guid)))
			continue;
		buf_reset(&data);
		if (store_message_read(sc->st, it->name, v[i].guid, &data, &it->err) < 0) {
			it->state = -1;
			break;
		}
		if (!msg)
			msg = dlist_new(DL_LIST, "MESSAGE");
		dlist_add_file(msg, NULL, "default", v[i].guid, data.ptr, data.len);
		bytes += data.len;
		gset_add(&s->sent, v[i].guid);
		s->bodies++;
		s->bodies_staged++;
	}
	dlist_free(&msg);
	buf_free(&data);
	return rc;
}

/* APPLY RESERVE of the new bodies of an incremental update (outside the
 * pipeline): the GUIDs the replica lacks go to need. */
static int stream_reserve(struct stream *s, const char *name, const struct prec *v, size_t n, uint32_t rlast,
			  struct gset *need, struct terr *err)
{
	struct dlist *res = dlist_new(DL_KVLIST, "RESERVE");
	dlist_add_str(res, "PARTITION", "default");
	dlist_add_str(dlist_add_list(res, "MBOXNAME"), NULL, name);
	struct dlist *guids = dlist_add_list(res, "GUID");
	for (size_t i = 0; i < n; i++)
		if (v[i].uid > rlast && !v[i].expunged && v[i].guid[0] && !gset_has(&s->sent, v[i].guid))
			dlist_add_str(guids, NULL, v[i].guid);
	int rc = 0;
	if (guids->n) {
		struct missing m = { NULL, 0 };
		syncc_cmd_dlist(s->sc, "APPLY", res);
		rc = stream_drain(s, err) < 0 ? -1 : syncc_roundtrip(s->sc, collect_missing, &m, err);
		for (size_t i = 0; i < m.n; i++) {
			gset_add(need, m.guids[i]);
			free(m.guids[i]);
		}
		free(m.guids);
	}
	dlist_free(&res);
	return rc;
}

/* Prints a part into sc->out: the records of v[..end) with a modseq
 * above base (the replica's state before it), except records the replica
 * had (before lo) changed after this part's state (top): a later part
 * sends them; modseqs above top capped to it (records new in this part
 * changed later: the next part sends the real one). mb's header is the
 * part's state. */
static void print_part(struct syncc *sc, struct dlist *mb, struct prec *v, size_t lo, size_t end, uint64_t base,
		       uint64_t top)
{
	struct dlist *records = (struct dlist *)dlist_get_list(mb, "RECORD");
	struct dlist **sel = xcalloc(end ? end : 1, sizeof *sel);
	struct buf *saved = xcalloc(end ? end : 1, sizeof *saved);
	size_t nsel = 0;
	for (size_t i = 0; i < end; i++) {
		if (v[i].modseq <= base || (v[i].modseq > top && i < lo))
			continue;
		if (v[i].modseq > top && v[i].modseq_item) {
			saved[i] = v[i].modseq_item->s;
			memset(&v[i].modseq_item->s, 0, sizeof v[i].modseq_item->s);
			buf_printf(&v[i].modseq_item->s, "%llu", (unsigned long long)top);
		}
		sel[nsel++] = records->items[i];
	}
	struct dlist **all = records->items;
	size_t alln = records->n;
	records->items = sel;
	records->n = nsel;
	syncc_cmd_dlist(sc, "APPLY", mb);
	records->items = all;
	records->n = alln;
	for (size_t i = 0; i < end; i++)
		if (saved[i].ptr) {
			buf_free(&v[i].modseq_item->s);
			v[i].modseq_item->s = saved[i];
		}
	free(saved);
	free(sel);
}

/* Streams one mailbox's update from the replica state `remote` (NULL:
 * the replica has no such mailbox). Failures are left in the item. -1
 * only when the connection failed. */
static int stream_mailbox(struct stream *s, size_t idx, const struct dlist *remote, struct terr *err)
{
	struct syncc *sc = s->sc;
	struct sitem *it = &s->it[idx];
	uint64_t rms = 0;
	uint32_t rlast = 0, rcrc = 0, rannot = 0;
	if (remote) {
		dlist_get_num64(remote, "HIGHESTMODSEQ", &rms);
		dlist_get_num32(remote, "LAST_UID", &rlast);
		dlist_get_num32(remote, "SYNC_CRC", &rcrc);
		dlist_get_num32(remote, "SYNC_CRC_ANNOT", &rannot);
	}
	if (sync_mailbox_dlist(sc->st, it->name, 1, rms, &it->mb, &it->err) < 0) {
		it->state = -1;
		return 0;
	}
	struct dlist *mb = it->mb;
	uint64_t hms = 0;
	dlist_get_num64(mb, "HIGHESTMODSEQ", &hms);
	size_t n;
	struct prec *v = snapshot_records(dlist_get_list(mb, "RECORD"), &n);
	long long batch = conf_int(sc->conf, "sync_batchsize");
	struct cut *cuts = NULL;
	size_t ncuts = plan_cuts(v, n, rlast, rms, hms, batch > 0 ? (size_t)batch : 8192, &cuts);
	struct gset need = { 0 };
	int rc = 0;
	syncc_rcache_drop(sc, it->name);
	if (remote && stream_reserve(s, it->name, v, n, rlast, &need, &it->err) < 0) {
		rc = it->err.code == TE_IO ? (*err = it->err, -1) : 0;
		it->state = -1;
	}
	/* the full header, restored for the last part */
	char *orig[NPART_KEYS];
	for (size_t k = 0; k < NPART_KEYS; k++) {
		const char *val = dlist_cstr(dlist_get(mb, part_keys[k]));
		orig[k] = val ? xstrdup(val) : NULL;
	}
	uint64_t base = rms;
	size_t lo = 0;
	while (lo < n && v[lo].uid <= rlast)
		lo++;
	for (size_t j = 0; rc == 0 && it->state == 0 && j <= ncuts; j++) {
		size_t hi = j < ncuts ? cuts[j].end : n;
		if (send_bodies(s, idx, v, lo, hi, remote ? &need : NULL, err) < 0) {
			rc = -1;
			break;
		}
		/* one APPLY MAILBOX in flight: the previous part's answer first */
		while (rc == 0 && s->mb_inflight)
			rc = stream_recv(s, err);
		if (rc < 0 || it->state != 0)
			break;
		if (j < ncuts) {
			for (size_t k = 0; k < PART_KEYS_REPLICA; k++) {
				uint64_t rv = 0;
				if (!orig[k])
					continue;
				if (remote)
					dlist_get_num64(remote, part_keys[k], &rv);
				kv_set_num(mb, part_keys[k], rv);
			}
			kv_set_num(mb, "LAST_UID", cuts[j].last_uid);
			kv_set_num(mb, "HIGHESTMODSEQ", cuts[j].modseq);
			kv_set_num(mb, "SYNC_CRC", 0);
			kv_set_num(mb, "SYNC_CRC_ANNOT", 0);
			kv_set_num(mb, "LAST_APPENDDATE", 0);
		} else {
			for (size_t k = 0; k < NPART_KEYS; k++) {
				struct dlist *d = (struct dlist *)dlist_get(mb, part_keys[k]);
				if (d && orig[k]) {
					buf_reset(&d->s);
					buf_appends(&d->s, orig[k]);
				}
			}
		}
		if (remote || j > 0) {
			kv_set_num(mb, "SINCE_MODSEQ", base);
			kv_set_num(mb, "SINCE_CRC", j ? 0 : rcrc);
			kv_set_num(mb, "SINCE_CRC_ANNOT", j ? 0 : rannot);
		}
		record_last(mb);
		print_part(sc, mb, v, lo, hi, base, j < ncuts ? cuts[j].modseq : UINT64_MAX);
		it->parts++;
		if (stream_send(s, SP_MAILBOX, idx, j == ncuts, err) < 0) {
			rc = -1;
			break;
		}
		if (j < ncuts) {
			base = cuts[j].modseq;
			lo = hi;
		}
	}
	for (size_t k = 0; k < NPART_KEYS; k++)
		free(orig[k]);
	if (it->parts > 1 && rc == 0)
		log_debug("event=sync_parts channel=%s mailbox=%s parts=%u", sc->channel, it->name, it->parts);
	gset_free(&need);
	free(cuts);
	free(v);
	return rc;
}

static size_t stream_add(struct stream *s, const char *name)
{
	s->it = xrealloc(s->it, (s->nit + 1) * sizeof *s->it);
	memset(&s->it[s->nit], 0, sizeof *s->it);
	s->it[s->nit].name = xstrdup(name);
	return s->nit++;
}

static void stream_init(struct stream *s, struct syncc *sc, char **names, size_t n)
{
	memset(s, 0, sizeof *s);
	s->sc = sc;
	for (size_t i = 0; i < n; i++)
		stream_add(s, names[i]);
}

/* RESTART in the stream when bodies were staged since the last one: the
 * replica frees them (its staging area stays small and quick to search). */
static int stream_restart(struct stream *s, struct terr *err)
{
	if (!s->bodies_staged)
		return 0;
	buf_reset(&s->sc->out);
	buf_appends(&s->sc->out, "RESTART\r\n");
	s->bodies_staged = 0;
	gset_free(&s->sent);
	return stream_send(s, SP_OTHER, 0, 0, err);
}

/* The end of a stream: RESTART when needed, every answer read. */
static int stream_finish(struct stream *s, struct terr *err)
{
	int rc = stream_restart(s, err);
	if (rc == 0)
		rc = stream_drain(s, err);
	s->sc->stats.messages += s->bodies;
	s->bodies = 0;
	return rc;
}

static void stream_free(struct stream *s)
{
	for (size_t i = 0; i < s->nit; i++) {
		free(s->it[i].name);
		dlist_free(&s->it[i].mb);
	}
	free(s->it);
	gset_free(&s->sent);
}

/* One mailbox's update in parts (incremental from remote, or the whole
 * mailbox when remote is NULL: the replica has none). */
static int stream_one(struct syncc *sc, const char *name, const struct dlist *remote, struct terr *err)
{
	struct stream s;
	char *names[1] = { (char *)name };
	stream_init(&s, sc, names, 1);
	int rc = stream_mailbox(&s, 0, remote, err);
	if (rc == 0)
		rc = stream_finish(&s, err);
	if (rc == 0 && s.it[0].state != 1) {
		*err = s.it[0].err;
		rc = -1;
	}
	stream_free(&s);
	return rc;
}

/* Mailboxes the replica does not have, all in one stream. Those that
 * fail (a refusal, a body that cannot be read) go to retry[] for the
 * general path, which knows what to do about each refusal. -1 only when
 * the connection failed. */
static int stream_new_mailboxes(struct syncc *sc, char **names, size_t n, char **retry, size_t *nretry,
				struct terr *err)
{
	struct stream s;
	stream_init(&s, sc, names, n);
	int rc = 0;
	for (size_t i = 0; i < n && rc == 0; i++)
		rc = stream_mailbox(&s, i, NULL, err);
	if (rc == 0)
		rc = stream_finish(&s, err);
	*nretry = 0;
	char q[LOGQ_MAX];
	for (size_t i = 0; rc == 0 && i < n; i++) {
		if (s.it[i].state == 1) {
			note_synced(sc, names[i]);
			continue;
		}
		log_notice("event=sync_stream_retry channel=%s mailbox=%s reason=\"%s\"", sc->channel,
			   logq(q, names[i]), s.it[i].err.msg);
		retry[(*nretry)++] = names[i];
	}
	stream_free(&s);
	return rc;
}

/* Sends one mailbox: incremental when `remote` is given and compatible,
 * else (or when refused) full. A full update the replica refuses as a
 * split brain (IMAP_SYNC_CHECKSUM) is reconciled first (the replica's
 * own messages are copied back, syncc_reconcile) and sent again; in
 * repair mode a same-name mailbox with another uniqueid is renamed aside
 * on the replica first. */
static int sync_one(struct syncc *sc, const char *name, const struct dlist *remote, int follow, struct terr *err);

int syncc_sync_one(struct syncc *sc, const char *name, const struct dlist *remote, struct terr *err)
{
	return sync_one(sc, name, remote, 1, err);
}

/* APPLY RENAME from -> to on the replica (the sync cache forgets both). */
static int replica_rename(struct syncc *sc, const char *from, const char *to, uint32_t uidvalidity, struct terr *err)
{
	struct dlist *rn = dlist_new(DL_KVLIST, "RENAME");
	dlist_add_str(rn, "OLDMBOXNAME", from);
	dlist_add_str(rn, "NEWMBOXNAME", to);
	dlist_add_str(rn, "PARTITION", "default");
	dlist_add_num(rn, "UIDVALIDITY", uidvalidity);
	syncc_rcache_drop(sc, from);
	syncc_rcache_drop(sc, to);
	syncc_cmd_dlist(sc, "APPLY", rn);
	dlist_free(&rn);
	int rc = syncc_roundtrip(sc, NULL, NULL, err);
	char q[LOGQ_MAX], q2[LOGQ_MAX];
	if (rc == 0)
		log_notice("event=sync_rename channel=%s mailbox=%s newname=%s", sc->channel, logq(q, from), logq(q2, to));
	return rc;
}

/* The replica refused name with IMAP_MAILBOX_MOVED and holds no mailbox
 * of that name: it may hold our uniqueid under another name (a rename
 * whose old name was replicated in an earlier pass). GET UNIQUEIDS finds
 * it; it is renamed to name there and name is synced again. -1 (with err
 * untouched) when that is not the case. */
static int sync_moved(struct syncc *sc, const char *name, struct terr *err)
{
	struct store_mailbox_info mi;
	struct terr e2 = { 0 };
	if (store_mailbox_get(sc->st, name, &mi, &e2) < 0)
		return -1;
	struct dlist *get = dlist_new(DL_LIST, "UNIQUEIDS");
	dlist_add_str(get, NULL, mi.uniqueid);
	syncc_cmd_dlist(sc, "GET", get);
	dlist_free(&get);
	struct remotes rs = { NULL, 0 };
	int rc = -1;
	if (syncc_roundtrip(sc, collect_remote, &rs, &e2) < 0) {
		if (e2.code == TE_IO)
			*err = e2;
		goto out;
	}
	const char *old = remote_by_uniqueid(&rs, mi.uniqueid);
	if (!old || !strcmp(old, name))
		goto out;
	if (replica_rename(sc, old, name, mi.uidvalidity, &e2) < 0) {
		*err = e2;
		goto out;
	}
	rc = sync_one(sc, name, remote_by_name(&rs, old), 0, err);
out:
	remotes_free(&rs);
	store_mailbox_info_free(&mi);
	return rc;
}

static int sync_one(struct syncc *sc, const char *name, const struct dlist *remote, int follow, struct terr *err)
{
	int incremental = remote != NULL && !sc->repair;
	int other_uniqueid = 0;
	if (remote) {
		struct dlist *mb = NULL;
		const char *lu, *ru;
		if (sync_mailbox_dlist(sc->st, name, 0, 0, &mb, err) < 0)
			return -1;
		int same = dlist_get_str(mb, "UNIQUEID", &lu) == 0 && dlist_get_str(remote, "UNIQUEID", &ru) == 0 &&
			   !strcmp(lu, ru);
		int equal = same && header_equal(mb, remote);
		dlist_free(&mb);
		if (equal && !sc->repair) {
			rcache_put(sc, name, remote);
			return 0;
		}
		incremental = incremental && same;
		other_uniqueid = !same;
	}
	char q[LOGQ_MAX];
	if (incremental || (!remote && !sc->repair)) {
		/* in parts (sync_batchsize), pipelined; a new mailbox needs no RESERVE */
		if (stream_one(sc, name, remote, err) == 0)
			return 0;
		if (err->code != TE_CHECKSUM && err->code != TE_CHANGED && err->code != TE_MOVED)
			return -1;
		log_notice("event=sync_full_update channel=%s mailbox=%s reason=\"%s\"", sc->channel, logq(q, name),
			   err->msg);
	}
	if (push_mailbox(sc, name, 1, remote, err) == 0)
		return 0;
	struct terr e2 = { 0 };
	if (err->code == TE_CHECKSUM) {
		int r = syncc_reconcile(sc, name, &e2);
		if (r < 0) {
			terr_set(err, e2.code == TE_IO ? TE_IO : TE_CHECKSUM, "split brain not reconciled: %s", e2.msg);
			return -1;
		}
		if (r == 0)
			return push_mailbox(sc, name, 1, NULL, err);
		return -1;
	}
	if (err->code == TE_MOVED && sc->repair && other_uniqueid) {
		if (syncc_rename_aside(sc, name, remote, &e2) < 0) {
			*err = e2;
			return -1;
		}
		return push_mailbox(sc, name, 1, NULL, err);
	}
	if (err->code == TE_MOVED && !other_uniqueid && follow)
		return sync_moved(sc, name, err);
	return -1;
}

/* ---- the sync cache and the one-round-trip pass ------------------------------------------ */

/* Header keys kept per mailbox: what header_equal and an incremental
 * APPLY MAILBOX (SINCE_*) need. */
static const char *const rcache_keys[] = { "UNIQUEID", "LAST_UID", "HIGHESTMODSEQ", "UIDVALIDITY", "SYNC_CRC",
					   "SYNC_CRC_ANNOT", "ACL", "RECENTUID", "OPTIONS" };

static struct syncc_rstate *rcache_find(struct syncc *sc, const char *name)
{
	for (size_t i = 0; i < sc->nrcache; i++)
		if (!strcmp(sc->rcache[i].name, name))
			return &sc->rcache[i];
	return NULL;
}

void syncc_rcache_drop(struct syncc *sc, const char *name)
{
	struct syncc_rstate *r = rcache_find(sc, name);
	if (!r)
		return;
	free(r->name);
	dlist_free(&r->hdr);
	*r = sc->rcache[--sc->nrcache];
}

void syncc_rcache_clear(struct syncc *sc)
{
	for (size_t i = 0; i < sc->nrcache; i++) {
		free(sc->rcache[i].name);
		dlist_free(&sc->rcache[i].hdr);
	}
	free(sc->rcache);
	sc->rcache = NULL;
	sc->nrcache = 0;
}

/* After the replica accepted mb (an APPLY MAILBOX): its header is now the
 * replica's. */
static void rcache_put(struct syncc *sc, const char *name, const struct dlist *mb)
{
	if (sc->nrcache >= SYNCC_RCACHE_MAX)
		syncc_rcache_clear(sc);	/* crude, but a cache miss only costs a GET */
	struct dlist *hdr = dlist_new(DL_KVLIST, "MAILBOX");
	for (size_t i = 0; i < sizeof rcache_keys / sizeof rcache_keys[0]; i++) {
		const char *v = dlist_cstr(dlist_get(mb, rcache_keys[i]));
		if (!v) {
			dlist_free(&hdr);
			syncc_rcache_drop(sc, name);
			return;
		}
		dlist_add_str(hdr, rcache_keys[i], v);
	}
	struct syncc_rstate *r = rcache_find(sc, name);
	if (!r) {
		sc->rcache = xrealloc(sc->rcache, (sc->nrcache + 1) * sizeof *sc->rcache);
		r = &sc->rcache[sc->nrcache++];
		r->name = xstrdup(name);
	} else {
		dlist_free(&r->hdr);
	}
	r->hdr = hdr;
}

static int rec_is_expunged(const struct dlist *r)
{
	const struct dlist *fl = dlist_get_list(r, "FLAGS");
	for (size_t k = 0; fl && k < fl->n; k++)
		if (dlist_cstr(fl->items[k]) && !strcasecmp(dlist_cstr(fl->items[k]), "\\Expunged"))
			return 1;
	return 0;
}

struct fast_item {
	char *name;
	struct dlist *mb;	/* the APPLY MAILBOX to send */
	int ok;
};

struct guidset {
	char (*g)[41];
	char **owner_mbox;	/* a mailbox of the body's owner, to read it */
	size_t n;
};

static int guidset_has(const struct guidset *gs, const char *g)
{
	for (size_t i = 0; i < gs->n; i++)
		if (!strcmp(gs->g[i], g))
			return 1;
	return 0;
}

static void guidset_add(struct guidset *gs, const char *g, const char *mbox)
{
	gs->g = xrealloc(gs->g, (gs->n + 1) * sizeof *gs->g);
	gs->owner_mbox = xrealloc(gs->owner_mbox, (gs->n + 1) * sizeof *gs->owner_mbox);
	snprintf(gs->g[gs->n], sizeof gs->g[0], "%s", g);
	gs->owner_mbox[gs->n++] = (char *)mbox;
}

static void guidset_free(struct guidset *gs)
{
	free(gs->g);
	free(gs->owner_mbox);
	memset(gs, 0, sizeof *gs);
}

/* Prepares the incremental APPLY MAILBOX of a mailbox whose replica
 * state is cached: 1 prepared, 0 nothing to send (equal), -1 not for
 * the fast path (no cache entry, gone, another uniqueid, an error). */
static int fast_prepare(struct syncc *sc, const char *name, struct fast_item *it, struct guidset *known,
			struct guidset *fresh)
{
	struct syncc_rstate *r = rcache_find(sc, name);
	if (!r)
		return -1;
	struct terr err = { 0 };
	struct dlist *local = NULL;
	if (sync_mailbox_dlist(sc->st, name, 0, 0, &local, &err) < 0)
		return -1;
	const char *lu = dlist_cstr(dlist_get(local, "UNIQUEID")), *ru = dlist_cstr(dlist_get(r->hdr, "UNIQUEID"));
	int same = lu && ru && !strcmp(lu, ru);
	int equal = same && header_equal(local, r->hdr);
	dlist_free(&local);
	if (!same)
		return -1;
	if (equal)
		return 0;
	uint64_t rms = 0;
	uint32_t rlast = 0, rcrc = 0, rannot = 0;
	dlist_get_num64(r->hdr, "HIGHESTMODSEQ", &rms);
	dlist_get_num32(r->hdr, "LAST_UID", &rlast);
	dlist_get_num32(r->hdr, "SYNC_CRC", &rcrc);
	dlist_get_num32(r->hdr, "SYNC_CRC_ANNOT", &rannot);
	struct dlist *mb = NULL;
	if (sync_mailbox_dlist(sc->st, name, 1, rms, &mb, &err) < 0)
		return -1;
	dlist_add_num(mb, "SINCE_MODSEQ", rms);
	dlist_add_num(mb, "SINCE_CRC", rcrc);
	dlist_add_num(mb, "SINCE_CRC_ANNOT", rannot);
	const struct dlist *records = dlist_get_list(mb, "RECORD");
	size_t nnew = 0;
	for (size_t i = 0; records && i < records->n; i++) {
		uint32_t uid;
		nnew += dlist_get_num32(records->items[i], "UID", &uid) == 0 && uid > rlast;
	}
	if ((long long)nnew > conf_int(sc->conf, "sync_batchsize")) {
		dlist_free(&mb);	/* in parts: the general path */
		return -1;
	}
	for (size_t i = 0; records && i + 1 < mb->n; i++)
		if (mb->items[i] == records) {	/* RECORD goes last, after SINCE_* */
			memmove(&mb->items[i], &mb->items[i + 1], (mb->n - i - 1) * sizeof *mb->items);
			mb->items[mb->n - 1] = (struct dlist *)records;
			break;
		}
	for (size_t i = 0; records && i < records->n; i++) {
		const struct dlist *rec = records->items[i];
		uint32_t uid;
		char g[41];
		if (dlist_get_num32(rec, "UID", &uid) < 0 || dlist_get_guid(rec, "GUID", g) < 0)
			continue;
		if (uid <= rlast) {
			/* the replica had this record, so it has its body */
			if (!guidset_has(known, g))
				guidset_add(known, g, it->name);
		} else if (!rec_is_expunged(rec) && !guidset_has(fresh, g)) {
			guidset_add(fresh, g, it->name);
		}
	}
	it->mb = mb;
	return 1;
}

/* The rolling pass's fast path: every mailbox of names whose replica
 * state is cached goes in one pipelined write (the new bodies in APPLY
 * MESSAGE, one APPLY MAILBOX each, and RESTART) and one wait: one round
 * trip, where the general path needs GET MAILBOXES, RESERVE, MESSAGE
 * and MAILBOX. A body the replica has already (a copy or move of a
 * message it holds) is not sent again: its GUID is among the records
 * the replica had. Names that cannot go this way, or that the replica
 * refuses (its state was not what the cache said), are returned in
 * slow[] for the general path. -1 only when the connection failed. */
static int fast_batch(struct syncc *sc, char **names, size_t n, char **slow, size_t *nslow, struct terr *err)
{
	struct fast_item *items = xcalloc(n ? n : 1, sizeof *items);
	struct guidset known = { 0 }, fresh = { 0 };
	size_t nitems = 0;
	*nslow = 0;
	for (size_t i = 0; i < n; i++) {
		items[nitems].name = names[i];
		int r = fast_prepare(sc, names[i], &items[nitems], &known, &fresh);
		if (r < 0)
			slow[(*nslow)++] = names[i];
		else if (r > 0)
			nitems++;
		else
			note_synced(sc, names[i]);
	}
	int rc = 0;
	if (!nitems)
		goto out;
	/* the bodies, in APPLY MESSAGE batches */
	size_t nsent = 0, nmsgcmds = 0;
	struct buf data = BUF_INIT;
	struct dlist *msg = NULL;
	size_t bytes = 0;
	for (size_t i = 0; i <= fresh.n; i++) {
		if (msg && (i == fresh.n || msg->n >= SYNC_MAX_MESSAGE_FILES || bytes >= SYNCC_MESSAGE_BATCH_BYTES ||
			    nmsgcmds + nitems + 2 >= SYNCC_MAX_PIPELINE)) {
			syncc_cmd_dlist(sc, "APPLY", msg);
			syncc_send(sc);
			nmsgcmds++;
			dlist_free(&msg);
			bytes = 0;
		}
		if (i == fresh.n)
			break;
		if (guidset_has(&known, fresh.g[i]))
			continue;
		buf_reset(&data);
		struct terr e2 = { 0 };
		if (store_message_read(sc->st, fresh.owner_mbox[i], fresh.g[i], &data, &e2) < 0)
			continue;	/* its mailbox's APPLY fails: the general path reports it */
		if (!msg)
			msg = dlist_new(DL_LIST, "MESSAGE");
		dlist_add_file(msg, NULL, "default", fresh.g[i], data.ptr, data.len);
		bytes += data.len;
		nsent++;
	}
	buf_free(&data);
	for (size_t i = 0; i < nitems; i++) {
		syncc_rcache_drop(sc, items[i].name);	/* until the replica says OK */
		syncc_cmd_dlist(sc, "APPLY", items[i].mb);
		syncc_send(sc);
	}
	buf_reset(&sc->out);
	buf_appends(&sc->out, "RESTART\r\n");
	syncc_send(sc);
	if (conn_flush(sc->c, err) < 0) {
		sc->pcount = 0;
		rc = -1;
		goto out;
	}
	sc->stats.roundtrips++;
	/* the answers, in order */
	for (size_t i = 0; i < nmsgcmds; i++) {
		struct terr e2 = { 0 };
		if (syncc_recv(sc, NULL, NULL, &e2) < 0 && e2.code == TE_IO) {
			*err = e2;
			rc = -1;
			goto out;
		}
	}
	sc->stats.messages += nsent;
	char q[LOGQ_MAX];
	for (size_t i = 0; i < nitems; i++) {
		struct terr e2 = { 0 };
		if (syncc_recv(sc, NULL, NULL, &e2) == 0) {
			rcache_put(sc, items[i].name, items[i].mb);
			sc->stats.mailboxes++;
			note_synced(sc, items[i].name);
			continue;
		}
		if (e2.code == TE_IO) {
			*err = e2;
			rc = -1;
			goto out;
		}
		log_notice("event=sync_cache_miss channel=%s mailbox=%s reason=\"%s\"", sc->channel,
			   logq(q, items[i].name), e2.msg);
		slow[(*nslow)++] = items[i].name;
	}
	struct terr e3 = { 0 };
	if (syncc_recv(sc, NULL, NULL, &e3) < 0 && e3.code == TE_IO) {
		*err = e3;
		rc = -1;
	}
out:
	for (size_t i = 0; i < nitems; i++)
		dlist_free(&items[i].mb);
	free(items);
	guidset_free(&known);
	guidset_free(&fresh);
	return rc;
}

/* sync_one, with the outcome noted for the failed list: a failure other
 * than the connection's is isolated (recorded for retry, the rest of the
 * channel goes on). */
static int sync_one_noted(struct syncc *sc, const char *name, const struct dlist *remote, struct terr *err)
{
	if (sync_one(sc, name, remote, 1, err) == 0) {
		note_synced(sc, name);
		return 0;
	}
	char q[LOGQ_MAX];
	log_warn("event=sync_mailbox_fail channel=%s mailbox=%s error=\"%s\"", sc->channel, logq(q, name), err->msg);
	if (err->code != TE_IO)
		note_failed(sc, name, err->msg);
	return -1;
}

struct uid_find {
	const char *uniqueid;
	char *name;
	uint32_t uidvalidity;
};

static int uid_find_cb(const struct store_mailbox_info *mi, void *rock)
{
	struct uid_find *uf = rock;
	if (!uf->name && !strcmp(mi->uniqueid, uf->uniqueid)) {
		uf->name = xstrdup(mi->name);
		uf->uidvalidity = mi->uidvalidity;
	}
	return 0;
}

/* A name gone here that the replica holds (`remote`): when its uniqueid
 * is one of our mailboxes under another name (of the same owner), the
 * mailbox was renamed and the new name's change was (or will be) in
 * another pass. The replica's copy is renamed to our name (never kept as
 * replica-only, never deleted) and synced. 1 done (or failed and
 * recorded), 0 not a rename, -1 the connection failed. */
static int follow_uniqueid(struct syncc *sc, const char *gone, const struct dlist *remote, struct terr *err)
{
	const char *ru = dlist_cstr(dlist_get(remote, "UNIQUEID"));
	struct buf owner = BUF_INIT;
	struct terr e2 = { 0 };
	struct uid_find uf = { ru, NULL, 0 };
	if (!ru || mboxname_owner(gone, &owner, &e2) < 0 || !strncmp(gone, "DELETED.", 8) ||
	    store_mailbox_list(sc->st, buf_cstr(&owner), uid_find_cb, &uf, &e2) < 0 || !uf.name ||
	    !strcmp(uf.name, gone)) {
		buf_free(&owner);
		free(uf.name);
		return 0;
	}
	buf_free(&owner);
	int rc = 1;
	if (replica_rename(sc, gone, uf.name, uf.uidvalidity, &e2) < 0) {
		/* our name is taken there (another uniqueid): left to the
		 * sync of that name (and to repair) */
		rc = e2.code == TE_IO ? (*err = e2, -1) : 0;
	} else {
		note_synced(sc, gone);
		if (sync_one_noted(sc, uf.name, remote, &e2) < 0 && e2.code == TE_IO) {
			*err = e2;
			rc = -1;
		}
	}
	free(uf.name);
	return rc;
}

/* Syncs a batch of mailbox names (present locally or not). A name gone
 * here but present on the replica is removed there only with unmailbox
 * (an UNMAILBOX line: the master deleted it); otherwise it is kept and
 * reported as a replica-only mailbox (a rename in the batch is matched by
 * uniqueid first, as Cyrus's folder pass does). */
static int sync_batch_x(struct syncc *sc, char **names, size_t n, int unmailbox, int nostream, struct terr *err);

static int sync_batch(struct syncc *sc, char **names, size_t n, int unmailbox, struct terr *err)
{
	return sync_batch_x(sc, names, n, unmailbox, 0, err);
}

/* nostream: mailboxes the replica lacks go one by one (sync_one), not
 * streamed together (the retry of those a stream could not send). */
static int sync_batch_x(struct syncc *sc, char **names, size_t n, int unmailbox, int nostream, struct terr *err)
{
	if (n == 0)
		return 0;
	char **slow = NULL;
	if (!unmailbox && !sc->repair && sc->nrcache) {
		slow = xcalloc(n, sizeof *slow);
		size_t nslow = 0;
		if (fast_batch(sc, names, n, slow, &nslow, err) < 0) {
			free(slow);
			return -1;
		}
		names = slow;
		n = nslow;
		if (n == 0) {
			free(slow);
			return 0;
		}
	}
	struct dlist *get = dlist_new(DL_LIST, "MAILBOXES");
	for (size_t i = 0; i < n; i++)
		dlist_add_str(get, NULL, names[i]);
	struct remotes rs = { NULL, 0 };
	syncc_cmd_dlist(sc, "GET", get);
	dlist_free(&get);
	int rc = syncc_roundtrip(sc, collect_remote, &rs, err);
	int failed = 0;
	char **gone = xcalloc(n, sizeof *gone), **fresh = xcalloc(n, sizeof *fresh);
	size_t ngone = 0, nfresh = 0;
	for (size_t i = 0; rc == 0 && i < n; i++) {
		struct store_mailbox_info mi;
		struct terr e2 = { 0 };
		if (store_mailbox_get(sc->st, names[i], &mi, &e2) < 0) {
			if (e2.code != TE_NOTFOUND) {
				*err = e2;
				failed = 1;
				continue;
			}
			gone[ngone++] = names[i];	/* after the renames of the batch */
			continue;
		}
		const struct dlist *remote = remote_by_name(&rs, names[i]);
		const char *elsewhere = remote_by_uniqueid(&rs, mi.uniqueid);
		if (elsewhere && strcmp(elsewhere, names[i]) && !remote) {
			if (replica_rename(sc, elsewhere, names[i], mi.uidvalidity, &e2) == 0) {
				/* the renamed mailbox is now the remote state of this name */
				for (size_t k = 0; k < rs.n; k++)
					if (!strcmp(rs.r[k].name, elsewhere)) {
						free(rs.r[k].name);
						rs.r[k].name = xstrdup(names[i]);
					}
				remote = remote_by_name(&rs, names[i]);
			}
		}
		if (!remote && !sc->repair && !nostream) {
			fresh[nfresh++] = names[i];	/* streamed together below */
		} else if (sync_one_noted(sc, names[i], remote, &e2) < 0) {
			*err = e2;
			if (e2.code == TE_IO)
				rc = -1;
		}
		store_mailbox_info_free(&mi);
	}
	if (rc == 0 && nfresh) {
		size_t nretry = 0;
		struct terr e2 = { 0 };
		if (stream_new_mailboxes(sc, fresh, nfresh, fresh, &nretry, &e2) < 0) {
			*err = e2;
			rc = -1;
		} else if (nretry && sync_batch_x(sc, fresh, nretry, 0, 1, &e2) < 0) {
			*err = e2;
			failed = 1;
			if (e2.code == TE_IO)
				rc = -1;
		}
	}
	free(fresh);
	for (size_t i = 0; rc == 0 && i < ngone; i++) {
		struct terr e2 = { 0 };
		const struct dlist *remote = remote_by_name(&rs, gone[i]);
		if (!remote) {
			note_synced(sc, gone[i]);
			continue;	/* not there, or renamed to a name of the batch */
		}
		int r = follow_uniqueid(sc, gone[i], remote, &e2);
		if (r != 0) {
			if (r < 0) {
				*err = e2;
				if (e2.code == TE_IO)
					rc = -1;
			}
			continue;
		}
		if (!unmailbox) {
			syncc_note_replica_only(sc, gone[i]);
			note_synced(sc, gone[i]);
			continue;
		}
		struct dlist *un = dlist_new(DL_STR, "UNMAILBOX");
		buf_appends(&un->s, gone[i]);
		syncc_rcache_drop(sc, gone[i]);
		syncc_cmd_dlist(sc, "APPLY", un);
		dlist_free(&un);
		if (syncc_roundtrip(sc, NULL, NULL, &e2) < 0 && e2.code != TE_NOTFOUND) {
			*err = e2;
			failed = 1;
			if (e2.code == TE_IO)
				rc = -1;
		} else {
			note_synced(sc, gone[i]);
		}
	}
	free(gone);
	remotes_free(&rs);
	free(slow);
	return rc < 0 || failed ? -1 : 0;
}

/* ---- names and work lists ---------------------------------------------------------------- */

struct names {
	char **v;
	size_t n;
};

static void names_add(struct names *ns, const char *s)
{
	for (size_t i = 0; i < ns->n; i++)
		if (!strcmp(ns->v[i], s))
			return;
	ns->v = xrealloc(ns->v, (ns->n + 1) * sizeof *ns->v);
	ns->v[ns->n++] = xstrdup(s);
}

static void names_free(struct names *ns)
{
	for (size_t i = 0; i < ns->n; i++)
		free(ns->v[i]);
	free(ns->v);
	ns->v = NULL;
	ns->n = 0;
}

static int list_cb(const struct store_mailbox_info *mi, void *rock)
{
	names_add(rock, mi->name);
	return 0;
}

static void collect_names(void *rock, struct dlist *kv)
{
	const char *name;
	if (!strcasecmp(kv->key, "MAILBOX") && dlist_get_str(kv, "MBOXNAME", &name) == 0)
		names_add(rock, name);
}

static int subs_cb(const char *name, void *rock)
{
	names_add(rock, name);
	return 0;
}

static void collect_lsub(void *rock, struct dlist *kv)
{
	if (strcasecmp(kv->key, "LSUB") || kv->type != DL_LIST)
		return;
	for (size_t i = 0; i < kv->n; i++)
		if (dlist_cstr(kv->items[i]))
			names_add(rock, dlist_cstr(kv->items[i]));
}

static int send_sub(struct syncc *sc, const char *user, const char *mbox, int on, struct terr *err)
{
	struct dlist *kv = dlist_new(DL_KVLIST, on ? "SUB" : "UNSUB");
	dlist_add_str(kv, "USERID", user);
	dlist_add_str(kv, "MBOXNAME", mbox);
	syncc_cmd_dlist(sc, "APPLY", kv);
	dlist_free(&kv);
	return syncc_roundtrip(sc, NULL, NULL, err);
}

/* A whole user: every mailbox (and the replica's extra ones removed),
 * subscriptions; a user gone locally is removed (APPLY UNUSER). */
static int sync_user(struct syncc *sc, const char *user, struct terr *err)
{
	int ex = store_user_exists(sc->st, user, err);
	if (ex < 0)
		return -1;
	if (!ex) {
		syncc_rcache_clear(sc);
		struct dlist *un = dlist_new(DL_STR, "UNUSER");
		buf_appends(&un->s, user);
		syncc_cmd_dlist(sc, "APPLY", un);
		dlist_free(&un);
		return syncc_roundtrip(sc, NULL, NULL, err);
	}
	struct names all = { NULL, 0 }, rsubs = { NULL, 0 }, lsubs = { NULL, 0 };
	struct dlist *get = dlist_new(DL_STR, "USER");
	buf_appends(&get->s, user);
	syncc_cmd_dlist(sc, "GET", get);
	dlist_free(&get);
	struct terr e2 = { 0 };
	int rc = syncc_roundtrip(sc, collect_names, &all, err);
	if (rc == 0)
		rc = store_mailbox_list(sc->st, user, list_cb, &all, err);
	if (rc == 0)
		rc = sync_batch(sc, all.v, all.n, 0, err);
	/* subscriptions: the replica's LSUB against ours */
	if (rc == 0) {
		get = dlist_new(DL_STR, "META");
		buf_appends(&get->s, user);
		syncc_cmd_dlist(sc, "GET", get);
		dlist_free(&get);
		if (syncc_roundtrip(sc, collect_lsub, &rsubs, &e2) == 0 && store_subs_list(sc->st, user, subs_cb, &lsubs, &e2) == 0) {
			for (size_t i = 0; rc == 0 && i < lsubs.n; i++) {
				int there = 0;
				for (size_t k = 0; k < rsubs.n; k++)
					there |= !strcmp(rsubs.v[k], lsubs.v[i]);
				if (!there)
					rc = send_sub(sc, user, lsubs.v[i], 1, err);
			}
			for (size_t i = 0; rc == 0 && i < rsubs.n; i++) {
				int here = 0;
				for (size_t k = 0; k < lsubs.n; k++)
					here |= !strcmp(rsubs.v[i], lsubs.v[k]);
				if (!here)
					rc = send_sub(sc, user, rsubs.v[i], 0, err);
			}
		}
	}
	names_free(&all);
	names_free(&rsubs);
	names_free(&lsubs);
	return rc;
}

/* ---- users, pipelined: the next user's GET USER and mailboxes go out while the replica
 * applies the previous user's ---------------------------------------------------------------- */

/* The replica's view of one user (its GET USER): the state of each of
 * its mailboxes (as GET MAILBOXES gives it) and its subscriptions. */
struct uview {
	struct remotes rs;
	struct names lsub;
	int got_lsub;
	int done;		/* answered */
	int sent;
	struct terr err;	/* of the GET */
	struct terr uerr;	/* the user's first failure */
};

static void collect_user(void *rock, struct dlist *kv)
{
	struct uview *uv = rock;
	if (!strcasecmp(kv->key, "MAILBOX")) {
		collect_remote(&uv->rs, kv);
	} else if (!strcasecmp(kv->key, "LSUB")) {
		uv->got_lsub = 1;
		collect_lsub(&uv->lsub, kv);
	}
}

static int send_get_user(struct stream *s, const char *user, struct uview *uv, struct terr *err)
{
	struct dlist *get = dlist_new(DL_STR, "USER");
	buf_appends(&get->s, user);
	syncc_cmd_dlist(s->sc, "GET", get);
	dlist_free(&get);
	struct spend pe = { SP_OTHER, 0, 0, collect_user, uv, &uv->err, &uv->done };
	uv->sent = 1;
	return stream_send_pe(s, &pe, err);
}

/* Subscriptions: ours against the replica's LSUB (APPLY SUB / UNSUB go
 * in the stream; a failure lands in *uerr). */
static int stream_subs(struct stream *s, const char *user, struct uview *uv, struct terr *uerr, struct terr *err)
{
	struct syncc *sc = s->sc;
	struct names lsubs = { NULL, 0 };
	struct terr e2 = { 0 };
	if (store_subs_list(sc->st, user, subs_cb, &lsubs, &e2) < 0) {
		names_free(&lsubs);
		return 0;
	}
	int rc = 0;
	if (!uv->got_lsub && !uv->rs.n && lsubs.n) {
		/* a Cyrus replica leaves LSUB out of GET USER when the user has
		 * no mailbox there: ask for it (GET META) */
		struct dlist *get = dlist_new(DL_STR, "META");
		buf_appends(&get->s, user);
		syncc_cmd_dlist(sc, "GET", get);
		dlist_free(&get);
		int done = 0;
		struct spend pe = { SP_OTHER, 0, 0, collect_lsub, &uv->lsub, uerr, &done };
		rc = stream_send_pe(s, &pe, err);
		while (rc == 0 && !done)
			rc = stream_recv(s, err);
	}
	for (int on = 1; on >= 0 && rc == 0; on--) {
		const struct names *a = on ? &lsubs : &uv->lsub, *b = on ? &uv->lsub : &lsubs;
		for (size_t i = 0; rc == 0 && i < a->n; i++) {
			int there = 0;
			for (size_t k = 0; k < b->n; k++)
				there |= !strcmp(a->v[i], b->v[k]);
			if (there)
				continue;
			struct dlist *kv = dlist_new(DL_KVLIST, on ? "SUB" : "UNSUB");
			dlist_add_str(kv, "USERID", user);
			dlist_add_str(kv, "MBOXNAME", a->v[i]);
			syncc_cmd_dlist(sc, "APPLY", kv);
			dlist_free(&kv);
			struct spend pe = { SP_OTHER, 0, 0, NULL, NULL, uerr, NULL };
			rc = stream_send_pe(s, &pe, err);
		}
	}
	names_free(&lsubs);
	return rc;
}

/* One user of users_streamed, its GET USER answered: the mailboxes the
 * replica has (or has under another name, or only it has) go the general
 * way (sync_batch, after the stream is drained); those it lacks are
 * streamed. */
static int user_streamed(struct stream *s, const char *user, struct uview *uv, struct uview *next,
			 const char *next_user, struct terr *err)
{
	struct terr *uerr = &uv->uerr;
	struct syncc *sc = s->sc;
	struct names local = { NULL, 0 }, general = { NULL, 0 }, fresh = { NULL, 0 };
	int rc = 0;
	if (store_mailbox_list(sc->st, user, list_cb, &local, uerr) < 0) {
		names_free(&local);
		return 0;
	}
	for (size_t i = 0; i < local.n; i++) {
		struct store_mailbox_info mi;
		struct terr e2 = { 0 };
		int known = remote_by_name(&uv->rs, local.v[i]) != NULL;
		if (!known && store_mailbox_get(sc->st, local.v[i], &mi, &e2) == 0) {
			known = remote_by_uniqueid(&uv->rs, mi.uniqueid) != NULL;
			store_mailbox_info_free(&mi);
		}
		names_add(known ? &general : &fresh, local.v[i]);
	}
	for (size_t i = 0; i < uv->rs.n; i++)
		names_add(&general, uv->rs.r[i].name);
	if (general.n) {
		struct terr e2 = { 0 };
		rc = stream_drain(s, err);
		if (rc == 0 && sync_batch(sc, general.v, general.n, 0, &e2) < 0) {
			if (!uerr->code)
				*uerr = e2;
			if (e2.code == TE_IO) {
				*err = e2;
				rc = -1;
			}
		}
	}
	if (rc == 0)
		rc = stream_subs(s, user, uv, uerr, err);
	if (rc == 0 && next_user)
		rc = send_get_user(s, next_user, next, err);
	for (size_t i = 0; rc == 0 && i < fresh.n; i++)
		rc = stream_mailbox(s, stream_add(s, fresh.v[i]), NULL, err);
	if (rc == 0)
		rc = stream_restart(s, err);
	names_free(&local);
	names_free(&general);
	names_free(&fresh);
	return rc;
}

/* Whole users in one stream. The replica applies user k's last part
 * while the client reads and sends user k+1's first bodies: GET USER
 * k+1 goes out before user k's mailboxes, and its answer (the replica's
 * mailbox states, so no GET MAILBOXES nor GET META) comes back ahead of
 * theirs. Streamed mailboxes the replica refused are retried the
 * general way at the end. */
static int users_streamed(struct syncc *sc, const char *const *users, size_t n, struct terr *err)
{
	struct stream s;
	stream_init(&s, sc, NULL, 0);
	struct uview *uvs = xcalloc(n ? n : 1, sizeof *uvs);
	int rc = 0, failed = 0;
	for (size_t k = 0; k < n && rc == 0; k++) {
		struct terr *uerr = &uvs[k].uerr;
		int ex = store_user_exists(sc->st, users[k], uerr);
		if (ex > 0 && !uvs[k].sent)
			rc = send_get_user(&s, users[k], &uvs[k], err);
		while (rc == 0 && uvs[k].sent && !uvs[k].done)
			rc = stream_recv(&s, err);
		if (rc < 0)
			break;
		if (ex == 0) {	/* gone here: APPLY UNUSER */
			rc = stream_drain(&s, err);
			if (rc == 0 && sync_user(sc, users[k], uerr) < 0 && uerr->code == TE_IO) {
				*err = *uerr;
				rc = -1;
			}
		} else if (ex > 0 && !uvs[k].err.code) {
			rc = user_streamed(&s, users[k], &uvs[k], k + 1 < n ? &uvs[k + 1] : NULL,
					   k + 1 < n ? users[k + 1] : NULL, err);
		} else if (ex > 0) {
			*uerr = uvs[k].err;
		}
	}
	if (rc == 0)
		rc = stream_finish(&s, err);
	for (size_t k = 0; k < n; k++)
		if (uvs[k].uerr.code) {
			log_warn("event=sync_user_fail channel=%s user=%s error=\"%s\"", sc->channel, users[k],
				 uvs[k].uerr.msg);
			if (rc == 0)
				*err = uvs[k].uerr;
			failed = 1;
		}
	struct names retry = { NULL, 0 };
	char q[LOGQ_MAX];
	for (size_t i = 0; rc == 0 && i < s.nit; i++) {
		if (s.it[i].state == 1) {
			note_synced(sc, s.it[i].name);
			continue;
		}
		log_notice("event=sync_stream_retry channel=%s mailbox=%s reason=\"%s\"", sc->channel,
			   logq(q, s.it[i].name), s.it[i].err.msg);
		names_add(&retry, s.it[i].name);
	}
	if (rc == 0 && retry.n) {
		struct terr e2 = { 0 };
		if (sync_batch_x(sc, retry.v, retry.n, 0, 1, &e2) < 0) {
			*err = e2;
			failed = 1;
			rc = e2.code == TE_IO ? -1 : 0;
		}
	}
	names_free(&retry);
	for (size_t k = 0; k < n; k++) {
		remotes_free(&uvs[k].rs);
		names_free(&uvs[k].lsub);
	}
	free(uvs);
	stream_free(&s);
	return rc < 0 || failed ? -1 : 0;
}

int syncc_users(struct syncc *sc, const char *const *users, size_t n, struct terr *err)
{
	if (!sc->repair) {
		/* each user once: a second pass would stream again what the
		 * replica was just asked about */
		struct names uniq = { NULL, 0 };
		for (size_t i = 0; i < n; i++)
			names_add(&uniq, users[i]);
		int rc = users_streamed(sc, (const char *const *)uniq.v, uniq.n, err);
		names_free(&uniq);
		return rc;
	}
	int failed = 0;
	for (size_t i = 0; i < n; i++) {
		struct terr e2 = { 0 };
		if (sync_user(sc, users[i], &e2) < 0) {
			log_warn("event=sync_user_fail channel=%s user=%s error=\"%s\"", sc->channel, users[i], e2.msg);
			*err = e2;
			failed = 1;
			if (e2.code == TE_IO)
				return -1;
		}
	}
	return failed ? -1 : 0;
}

int syncc_mailboxes(struct syncc *sc, const char *const *names, size_t n, struct terr *err)
{
	return sync_batch(sc, (char **)names, n, 0, err);
}

static int all_users_cb(const char *userid, void *rock)
{
	names_add(rock, userid);
	return 0;
}

int syncc_all(struct syncc *sc, struct terr *err)
{
	struct names users = { NULL, 0 }, shared = { NULL, 0 };
	int rc = store_user_list(sc->st, all_users_cb, &users, err);
	if (rc == 0)
		rc = syncc_users(sc, (const char *const *)users.v, users.n, err);
	if (rc == 0 && store_mailbox_list(sc->st, "", list_cb, &shared, err) == 0)
		rc = sync_batch(sc, shared.v, shared.n, 0, err);
	names_free(&users);
	names_free(&shared);
	return rc;
}

/* ---- failed mailboxes: <configdir>/sync/<channel>/failed ---------------------------- */

int syncc_channel_shards(const struct conf *conf, const char *channel)
{
	long long n = conf_chan_int(conf, channel, "sync_shards");
	return n < 1 ? 1 : n > CHLOG_MAX_SHARDS ? CHLOG_MAX_SHARDS : (int)n;
}

int syncc_shard_dir(const struct conf *conf, const char *channel, int shard)
{
	int n = syncc_channel_shards(conf, channel);
	if (n <= 1)
		return -1;
	return shard < 0 ? 0 : shard >= n ? n - 1 : shard;
}

/* A file of this client's directory: the channel's, or its shard's. */
static void shard_path(const struct syncc *sc, const char *file, struct buf *out)
{
	chlog_shard_path(conf_str(sc->conf, "configdirectory"), sc->channel,
			 syncc_shard_dir(sc->conf, sc->channel, sc->o.shard), file, out);
}

static void failed_path(const struct syncc *sc, struct buf *out)
{
	shard_path(sc, "failed", out);
}

static void failed_free(struct failed *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(v[i].name);
		free(v[i].error);
	}
	free(v);
}

/* Lines "name TAB attempts TAB next_retry TAB wait TAB error" (files of
 * older versions have no wait field: it is taken from attempts). */
static int failed_load(const struct syncc *sc, struct failed **v_r, size_t *n_r, struct terr *err)
{
	struct buf path = BUF_INIT, data = BUF_INIT;
	failed_path(sc, &path);
	*v_r = NULL;
	*n_r = 0;
	struct terr e2;
	int rc = fs_read_file(path.ptr, 16 << 20, &data, &e2);
	buf_free(&path);
	if (rc < 0) {
		buf_free(&data);
		return e2.code == TE_NOTFOUND ? 0 : (err ? (*err = e2, -1) : -1);
	}
	for (char *line = data.ptr; line && *line;) {
		char *nl = strchr(line, '\n');
		if (nl)
			*nl = '\0';
		char *f[5] = { line, NULL, NULL, NULL, NULL };
		for (int k = 1; k < 5 && f[k - 1]; k++) {
			char *tab = strchr(f[k - 1], '\t');
			if (tab) {
				*tab = '\0';
				f[k] = tab + 1;
			}
		}
		if (f[3]) {
			int attempts = atoi(f[1]);
			long long wait = f[4] ? atoll(f[3]) : 1LL << (attempts > 0 && attempts < 20 ? attempts : 1);
			*v_r = xrealloc(*v_r, (*n_r + 1) * sizeof **v_r);
			(*v_r)[(*n_r)++] = (struct failed){ xstrdup(f[0]), xstrdup(f[4] ? f[4] : f[3]), attempts, atoll(f[2]),
							    wait };
		}
		line = nl ? nl + 1 : NULL;
	}
	buf_free(&data);
	return 0;
}

static int failed_save(const struct syncc *sc, const struct failed *v, size_t n, struct terr *err)
{
	struct buf path = BUF_INIT, data = BUF_INIT;
	failed_path(sc, &path);
	for (size_t i = 0; i < n; i++) {
		buf_printf(&data, "%s\t%d\t%lld\t%lld\t", v[i].name, v[i].attempts, v[i].next_retry, v[i].wait);
		for (const char *e = v[i].error; *e; e++)
			buf_putc(&data, *e == '\t' || *e == '\n' || *e == '\r' ? ' ' : *e);
		buf_putc(&data, '\n');
	}
	int rc;
	if (n == 0) {
		rc = unlink(path.ptr) == 0 || errno == ENOENT ? 0 : terr_errno(err, errno, "unlink %s", path.ptr);
	} else {
		char *slash = strrchr(path.ptr, '/');
		*slash = '\0';
		rc = fs_mkdir_p(path.ptr, 0750, err);
		*slash = '/';
		if (rc == 0)
			rc = fs_write_atomic(path.ptr, data.ptr, data.len, 0640, err);
	}
	buf_free(&path);
	buf_free(&data);
	return rc;
}

/* The state file is read, changed and written under an exclusive lock on
 * "failed.lock": the rolling client and a hand-run `tandem sync` may both
 * update it. -1 when the lock cannot be had (the update goes on unlocked). */
static int failed_lock(const struct syncc *sc)
{
	struct buf path = BUF_INIT;
	failed_path(sc, &path);
	buf_appends(&path, ".lock");
	char *slash = strrchr(path.ptr, '/');
	struct terr e;
	*slash = '\0';
	int ok = fs_mkdir_p(path.ptr, 0750, &e) == 0;
	*slash = '/';
	int fd = ok ? open(path.ptr, O_RDWR | O_CREAT | O_CLOEXEC, 0640) : -1;
	buf_free(&path);
	if (fd >= 0 && flock(fd, LOCK_EX) < 0) {
		close(fd);
		fd = -1;
	}
	return fd;
}

static void failed_unlock(int fd)
{
	if (fd >= 0)
		close(fd);
}

static int is_failed_now(const struct syncc *sc, const char *name)
{
	for (size_t f = 0; f < sc->nfailed; f++)
		if (!strcmp(sc->failed[f].name, name))
			return 1;
	return 0;
}

/* Marks name as replicated (or found equal) by the current work. */
static void note_synced(struct syncc *sc, const char *name)
{
	sc->synced = xrealloc(sc->synced, (sc->nsynced + 1) * sizeof *sc->synced);
	sc->synced[sc->nsynced++] = xstrdup(name);
}

/* Records a mailbox that failed (isolated: the rest goes on). */
static void note_failed(struct syncc *sc, const char *name, const char *error)
{
	for (size_t f = 0; f < sc->nfailed; f++)
		if (!strcmp(sc->failed[f].name, name)) {
			free(sc->failed[f].error);
			sc->failed[f].error = xstrdup(error);
			return;
		}
	sc->failed = xrealloc(sc->failed, (sc->nfailed + 1) * sizeof *sc->failed);
	sc->failed[sc->nfailed++] = (struct failed){ xstrdup(name), xstrdup(error), 0, 0, 0 };
}

static void work_clear(struct syncc *sc)
{
	failed_free(sc->failed, sc->nfailed);
	sc->failed = NULL;
	sc->nfailed = 0;
	for (size_t i = 0; i < sc->nsynced; i++)
		free(sc->synced[i]);
	free(sc->synced);
	sc->synced = NULL;
	sc->nsynced = 0;
}

/* The backoff step after a try of f that failed at now: the first
 * failure waits SYNCC_RETRY_MIN_S; a try made when the retry was due
 * doubles the step; an earlier try (a rolling pass touched the mailbox)
 * keeps it. Capped by sync_retry_maxwait. */
static long long failed_next_wait(const struct syncc *sc, const struct failed *f, int is_new, long long now)
{
	long long cap = conf_chan_duration_ms(sc->conf, sc->channel, "sync_retry_maxwait") / 1000;
	long long wait = f->wait > 0 ? f->wait : SYNCC_RETRY_MIN_S;
	if (cap < 1)
		cap = 1;
	if (!is_new && now >= f->next_retry)
		wait *= 2;
	if (wait < SYNCC_RETRY_MIN_S)
		wait = SYNCC_RETRY_MIN_S;
	return wait > cap ? cap : wait;
}

/* Merges the current work's results into the channel's state: mailboxes
 * replicated leave it; failures are added or updated (attempts + 1, the
 * next retry from now: see failed_next_wait). With record 0 (one-shot
 * runs) failures are only reported to the caller, never added: the list
 * and its backoff belong to the rolling client. Clears the work unless
 * keep. */
static int failed_merge_dir(struct syncc *sc, int record, int keep, struct terr *err)
{
	if (!sc->nfailed || !record) {
		/* nothing to add: nothing to do unless the list exists (the
		 * common case of a rolling pass: no lock, no read) */
		struct buf path = BUF_INIT;
		failed_path(sc, &path);
		int exists = access(path.ptr, F_OK) == 0;
		buf_free(&path);
		if (!exists) {
			if (!keep)
				work_clear(sc);
			return 0;
		}
	}
	int lock = failed_lock(sc);
	struct failed *v;
	size_t n;
	if (failed_load(sc, &v, &n, err) < 0) {
		failed_unlock(lock);
		if (!keep)
			work_clear(sc);
		return -1;
	}
	size_t n0 = n;
	int changed = 0;
	long long now = (long long)time(NULL);
	char q[LOGQ_MAX];
	for (size_t i = 0; i < n; i++) {
		int ok = 0;
		for (size_t k = 0; k < sc->nsynced && !ok; k++)
			ok = !strcmp(v[i].name, sc->synced[k]);
		if (!ok || is_failed_now(sc, v[i].name))
			continue;
		log_notice("event=sync_mailbox_recovered channel=%s mailbox=%s attempts=%d", sc->channel,
			   logq(q, v[i].name), v[i].attempts);
		free(v[i].name);
		free(v[i].error);
		v[i--] = v[--n];
		changed = 1;
	}
	for (size_t f = 0; record && f < sc->nfailed; f++) {
		size_t i = 0;
		while (i < n && strcmp(v[i].name, sc->failed[f].name))
			i++;
		int is_new = i == n;
		if (is_new) {
			v = xrealloc(v, (n + 1) * sizeof *v);
			v[n++] = (struct failed){ xstrdup(sc->failed[f].name), xstrdup(""), 0, 0, 0 };
		}
		free(v[i].error);
		v[i].error = xstrdup(sc->failed[f].error);
		v[i].attempts++;
		v[i].wait = failed_next_wait(sc, &v[i], is_new, now);
		v[i].next_retry = now + v[i].wait;
		changed = 1;
	}
	if (!keep)
		work_clear(sc);
	int rc = changed || n != n0 ? failed_save(sc, v, n, err) : 0;
	failed_unlock(lock);
	failed_free(v, n);
	return rc;
}

/* The state of this client's shard; one-shot work (record 0) on a
 * sharded channel takes what it replicated off every shard's list. */
static int failed_merge(struct syncc *sc, int record, struct terr *err)
{
	int n = syncc_channel_shards(sc->conf, sc->channel);
	if (record || n <= 1)
		return failed_merge_dir(sc, record, 0, err);
	int saved = sc->o.shard, rc = 0;
	for (int k = 0; k < n; k++) {
		sc->o.shard = k;
		if (failed_merge_dir(sc, 0, 1, err) < 0)
			rc = -1;
	}
	sc->o.shard = saved;
	work_clear(sc);
	return rc;
}

/* Retries the failed mailboxes that are due. */
static int failed_retry(struct syncc *sc, struct terr *err)
{
	struct failed *v;
	size_t n;
	if (failed_load(sc, &v, &n, err) < 0)
		return -1;
	long long now = (long long)time(NULL);
	char **due = NULL;
	size_t ndue = 0;
	for (size_t i = 0; i < n; i++)
		if (v[i].next_retry <= now) {
			due = xrealloc(due, (ndue + 1) * sizeof *due);
			due[ndue++] = v[i].name;
		}
	int rc = 0;
	if (ndue) {
		log_info("event=sync_retry channel=%s mailboxes=%zu", sc->channel, ndue);
		rc = sync_batch(sc, due, ndue, 0, err);
		if (rc == 0 && sc->since_restart)
			simple(sc, "RESTART", err);
		struct terr e2 = { 0 };
		if (failed_merge(sc, 1, &e2) < 0 && rc == 0) {
			*err = e2;
			rc = -1;
		}
	}
	free(due);
	failed_free(v, n);
	return rc;
}

/* Lines in a log directory's log and log-run (shard < 0: the channel's). */
static size_t pending_lines(const char *configdir, const char *channel, int shard)
{
	struct buf p = BUF_INIT, data = BUF_INIT;
	size_t lines = 0;
	for (int k = 0; k < 2; k++) {
		chlog_shard_path(configdir, channel, shard, k ? "log-run" : "log", &p);
		buf_reset(&data);
		struct terr e2;
		if (fs_read_file(p.ptr, (size_t)1 << 31, &data, &e2) == 0)
			for (size_t i = 0; i < data.len; i++)
				lines += data.ptr[i] == '\n';
	}
	buf_free(&p);
	buf_free(&data);
	return lines;
}

/* Log directories of the channel outside its current layout (left by a
 * change of its shard count): the unsharded one when sharded, shards
 * past the count. A directory that is another channel's (a channel
 * named "3" beside the default channel) is not one. */
static int orphan_dirs(const struct conf *conf, const char *channel, int *dirs)
{
	int n = syncc_channel_shards(conf, channel), nd = 0;
	const char *const *chans;
	size_t nc = conf_channels(conf, &chans);
	if (n > 1)
		dirs[nd++] = -1;
	for (int k = n > 1 ? n : 0; k < CHLOG_MAX_SHARDS; k++) {
		char name[16];
		snprintf(name, sizeof name, "%d", k);
		int taken = 0;
		for (size_t i = 0; !*channel && i < nc && !taken; i++)
			taken = !strcmp(chans[i], name);
		if (!taken)
			dirs[nd++] = k;
	}
	return nd;
}

/* One shard's (or the channel's, shard < 0) pending lines and failed
 * mailboxes; *lines_r gets the count. */
static int status_one(const struct conf *conf, const char *channel, int shard, struct buf *out, size_t *lines_r,
		      struct terr *err)
{
	struct syncc sc = { 0 };
	sc.conf = conf;
	sc.o.shard = shard;
	snprintf(sc.channel, sizeof sc.channel, "%s", channel ? channel : "");
	const char *qc = *sc.channel ? sc.channel : "\"\"";
	char sh[32] = "";
	if (shard >= 0)
		snprintf(sh, sizeof sh, " shard=%d", shard);
	*lines_r = pending_lines(conf_str(conf, "configdirectory"), sc.channel, shard);
	if (shard >= 0)
		buf_printf(out, "channel=%s%s pending_lines=%zu\n", qc, sh, *lines_r);
	struct failed *v;
	size_t n;
	int rc = failed_load(&sc, &v, &n, err);
	for (size_t i = 0; rc == 0 && i < n; i++)
		buf_printf(out, "channel=%s%s mailbox=%s state=failed attempts=%d next_retry=%lld error=\"%s\"\n", qc, sh,
			   v[i].name, v[i].attempts, v[i].next_retry, v[i].error);
	if (rc == 0)
		failed_free(v, n);
	return rc;
}

int syncc_status(const struct conf *conf, const char *channel, struct buf *out, struct terr *err)
{
	const char *chan = channel ? channel : "";
	const char *qc = *chan ? chan : "\"\"";
	const char *configdir = conf_str(conf, "configdirectory");
	int nshards = syncc_channel_shards(conf, chan);
	int dirs[CHLOG_MAX_SHARDS + 1];
	int nd = orphan_dirs(conf, chan, dirs);
	size_t orphans = 0;
	for (int i = 0; i < nd; i++)
		orphans += pending_lines(configdir, chan, dirs[i]);
	struct buf body = BUF_INIT;
	size_t total = 0, lines;
	int rc = 0;
	for (int k = 0; k < nshards; k++) {
		int dir = nshards > 1 ? k : -1;
		if (status_one(conf, chan, dir, &body, &lines, err) < 0)
			rc = -1;
		total += lines;
	}
	/* the total first: parsers that read one pending_lines= see it */
	buf_printf(out, "channel=%s pending_lines=%zu", qc, total + orphans);
	if (nshards > 1)
		buf_printf(out, " shards=%d", nshards);
	if (orphans)
		buf_printf(out, " old_layout_lines=%zu", orphans);
	buf_putc(out, '\n');
	buf_append(out, body.ptr, body.len);
	buf_free(&body);
	syncc_splitbrain_status(conf, chan, out);
	return rc;
}

/* ---- change logs ---------------------------------------------------------------------------- */

/* Reduces and runs the entries of one log (reference §7.6). */
static int run_entries(struct syncc *sc, const struct chlog_entry *es, size_t n, struct terr *err)
{
	struct names mboxes = { NULL, 0 }, users = { NULL, 0 }, unusers = { NULL, 0 }, unmboxes = { NULL, 0 };
	struct names subs = { NULL, 0 }, seen = { NULL, 0 }, quotas = { NULL, 0 };
	for (size_t i = 0; i < n; i++) {
		const char *k = es[i].keyword, *a1 = buf_cstr(&es[i].arg1), *a2 = buf_cstr(&es[i].arg2);
		if (!strcmp(k, "APPEND") || !strcmp(k, "MAILBOX"))
			names_add(&mboxes, a1);
		else if (!strcmp(k, "DOUBLEMAILBOX") || !strcmp(k, "RENAME")) {
			names_add(&mboxes, a1);
			if (es[i].nargs > 1)
				names_add(&mboxes, a2);
		} else if (!strcmp(k, "UNMAILBOX"))
			names_add(&unmboxes, a1);
		else if (!strcmp(k, "USER") || !strcmp(k, "META") || !strcmp(k, "SIEVE"))
			names_add(&users, a1);
		else if (!strcmp(k, "UNUSER"))
			names_add(&unusers, a1);
		else if ((!strcmp(k, "SUB") || !strcmp(k, "UNSUB")) && es[i].nargs > 1) {
			char pair[2 * MAX_MBOXNAME + 2];
			snprintf(pair, sizeof pair, "%s%c%s", a1, '\x01', a2);
			names_add(&subs, pair);
		} else if (!strcmp(k, "SEEN") && es[i].nargs > 1) {
			char pair[2 * MAX_MBOXNAME + 2];
			snprintf(pair, sizeof pair, "%s%c%s", a1, '\x01', a2);
			names_add(&seen, pair);
		} else if (!strcmp(k, "QUOTA"))
			names_add(&quotas, a1);
		else if (!strcmp(k, "ANNOTATION") && *a1)
			names_add(&mboxes, a1);
	}
	/* a name also deleted in this log is handled by the UNMAILBOX batch
	 * alone (synced if it exists again, removed there if not) */
	for (size_t i = 0; i < mboxes.n; i++)
		for (size_t k = 0; k < unmboxes.n; k++)
			if (!strcmp(mboxes.v[i], unmboxes.v[k])) {
				free(mboxes.v[i]);
				mboxes.v[i--] = mboxes.v[--mboxes.n];
				break;
			}
	int failed = 0;
	struct terr e2 = { 0 };
	/* mailboxes, in batches by owner (renames within a user need both names in one batch) */
	if (mboxes.n && sync_batch(sc, mboxes.v, mboxes.n, 0, &e2) < 0) {
		*err = e2;
		failed = 1;
	}
	for (size_t i = 0; i < quotas.n && !failed; i++) {
		struct store_quota q;
		if (store_quota_get(sc->st, quotas.v[i], &q, &e2) == 0) {
			struct dlist *kv = dlist_new(DL_KVLIST, "QUOTA");
			dlist_add_str(kv, "ROOT", q.root);
			dlist_add_num(kv, "LIMIT", q.storage_limit < 0 ? 0 : (uint64_t)q.storage_limit);
			if (q.storage_limit >= 0)
				dlist_add_num(kv, "STORAGE", (uint64_t)q.storage_limit);
			if (q.message_limit >= 0)
				dlist_add_num(kv, "MESSAGE", (uint64_t)q.message_limit);
			syncc_cmd_dlist(sc, "APPLY", kv);
			dlist_free(&kv);
			store_quota_free(&q);
		} else {
			struct dlist *kv = dlist_new(DL_STR, "UNQUOTA");
			buf_appends(&kv->s, quotas.v[i]);
			syncc_cmd_dlist(sc, "APPLY", kv);
			dlist_free(&kv);
		}
		if (syncc_roundtrip(sc, NULL, NULL, &e2) < 0) {
			*err = e2;
			failed = 1;
		}
	}
	for (size_t i = 0; i < seen.n && !failed; i++) {
		char *sep = strchr(seen.v[i], '\x01');
		*sep = '\0';
		struct store_seen sv;
		if (store_seen_get(sc->st, seen.v[i], sep + 1, &sv, &e2) == 0) {
			struct dlist *kv = dlist_new(DL_KVLIST, "SEEN");
			dlist_add_str(kv, "USERID", seen.v[i]);
			dlist_add_str(kv, "UNIQUEID", sep + 1);
			dlist_add_num(kv, "LASTREAD", (uint64_t)sv.lastread);
			dlist_add_num(kv, "LASTUID", sv.lastuid);
			dlist_add_num(kv, "LASTCHANGE", (uint64_t)sv.lastchange);
			dlist_add_str(kv, "SEENUIDS", sv.seenuids);
			free(sv.seenuids);
			syncc_cmd_dlist(sc, "APPLY", kv);
			dlist_free(&kv);
			if (syncc_roundtrip(sc, NULL, NULL, &e2) < 0) {
				*err = e2;
				failed = 1;
			}
		}
		*sep = '\x01';
	}
	for (size_t i = 0; i < subs.n && !failed; i++) {
		char *sep = strchr(subs.v[i], '\x01');
		*sep = '\0';
		struct names mine = { NULL, 0 };
		int on = 0;
		if (store_subs_list(sc->st, subs.v[i], subs_cb, &mine, &e2) == 0)
			for (size_t k = 0; k < mine.n; k++)
				on |= !strcmp(mine.v[k], sep + 1);
		names_free(&mine);
		if (send_sub(sc, subs.v[i], sep + 1, on, &e2) < 0) {
			*err = e2;
			failed = 1;
		}
		*sep = '\x01';
	}
	if (!failed && unmboxes.n && sync_batch(sc, unmboxes.v, unmboxes.n, 1, &e2) < 0) {
		*err = e2;
		failed = 1;
	}
	if (!failed && users.n && syncc_users(sc, (const char *const *)users.v, users.n, &e2) < 0) {
		*err = e2;
		failed = 1;
	}
	if (!failed && unusers.n && syncc_users(sc, (const char *const *)unusers.v, unusers.n, &e2) < 0) {
		*err = e2;
		failed = 1;
	}
	names_free(&mboxes);
	names_free(&users);
	names_free(&unusers);
	names_free(&unmboxes);
	names_free(&subs);
	names_free(&seen);
	names_free(&quotas);
	if (!failed && sc->since_restart)
		simple(sc, "RESTART", &e2);
	return failed ? -1 : 0;
}

/* One-shot modes report isolated mailbox failures as a failure. */
int syncc_oneshot_result(struct syncc *sc, int rc, struct terr *err)
{
	if (rc == 0 && sc->nfailed) {
		terr_set(err, TE_PERM, "%zu mailbox%s failed, first %s: %s", sc->nfailed, sc->nfailed == 1 ? "" : "es",
			 sc->failed[0].name, sc->failed[0].error);
		rc = -1;
	}
	/* what replicated leaves the channel's failed list */
	struct terr e2 = { 0 };
	if (failed_merge(sc, 0, &e2) < 0)
		log_warn("event=sync_state_fail channel=%s error=\"%s\"", sc->channel, e2.msg);
	return rc;
}

int syncc_logfile(struct syncc *sc, const char *path, struct terr *err)
{
	struct chlog_entry *es = NULL;
	size_t bad = 0;
	int n = chlog_read_file(path, &es, &bad, err);
	if (n < 0)
		return -1;
	int rc = run_entries(sc, es, (size_t)n, err);
	chlog_entries_free(es, (size_t)n);
	return rc;
}

/* Shard 0's client (the only one of an unsharded channel) also replays
 * what is left in log directories of another layout after a change of
 * the shard count (orphan_dirs), each as one pass. */
static int drain_old_layout(struct syncc *sc, struct terr *err)
{
	if (syncc_shard_dir(sc->conf, sc->channel, sc->o.shard) > 0)
		return 0;
	const char *configdir = conf_str(sc->conf, "configdirectory");
	int dirs[CHLOG_MAX_SHARDS + 1];
	int nd = orphan_dirs(sc->conf, sc->channel, dirs);
	struct buf run = BUF_INIT;
	int rc = 0;
	for (int i = 0; i < nd && rc == 0; i++) {
		struct terr e2 = { 0 };
		int t = chlog_take_shard(configdir, sc->channel, dirs[i], &e2);
		if (t <= 0) {
			if (t < 0)
				log_warn("event=sync_old_layout_fail channel=%s dir=%d error=\"%s\"", sc->channel, dirs[i],
					 e2.msg);
			continue;
		}
		chlog_shard_path(configdir, sc->channel, dirs[i], "log-run", &run);
		log_notice("event=sync_old_layout channel=%s file=%s", sc->channel, run.ptr);
		if (syncc_logfile(sc, run.ptr, err) < 0) {
			struct terr e3 = { 0 };
			failed_merge(sc, 1, &e3);
			rc = -1;
		} else if (failed_merge(sc, 1, err) < 0 || chlog_done_shard(configdir, sc->channel, dirs[i], err) < 0) {
			rc = -1;
		}
	}
	buf_free(&run);
	return rc;
}

int syncc_rolling(struct syncc *sc, int one_pass, struct terr *err)
{
	const char *configdir = conf_str(sc->conf, "configdirectory");
	int shard = syncc_shard_dir(sc->conf, sc->channel, sc->o.shard);
	char sl[24] = "";	/* " shard=K" in the logs of a sharded channel */
	if (shard >= 0)
		snprintf(sl, sizeof sl, " shard=%d", shard);
	const char *shutdown = conf_chan_str(sc->conf, sc->channel, "sync_shutdown_file");
	long long interval = sc->o.delay_set ? sc->o.delay_ms :
			     conf_chan_duration_ms(sc->conf, sc->channel, "sync_repeat_interval");
	struct buf run = BUF_INIT, dir = BUF_INIT;
	shard_path(sc, "log-run", &run);
	shard_path(sc, "", &dir);
	/* Wake up as soon as a writer touches the log (inotify); the
	 * repeat interval is only the fallback poll. */
	int ino = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	struct terr e0;
	if (ino >= 0 && (fs_mkdir_p(dir.ptr, 0750, &e0) < 0 ||
			 inotify_add_watch(ino, dir.ptr, IN_MODIFY | IN_CREATE | IN_MOVED_TO | IN_CLOSE_WRITE) < 0)) {
		close(ino);
		ino = -1;
	}
	int rc = 0;
	int draining = 0;
	for (;;) {
		if (sc->o.stop && *sc->o.stop && !draining) {
			log_notice("event=sync_drain channel=%s%s", sc->channel, sl);
			draining = 1;
			one_pass = 1;	/* send what is logged, then stop */
		}
		if (shutdown && *shutdown && access(shutdown, F_OK) == 0) {
			unlink(shutdown);
			log_notice("event=sync_shutdown channel=%s reason=shutdown_file", sc->channel);
			break;
		}
		if (!sc->c && syncc_connect(sc, err) < 0) {
			rc = -1;
			break;
		}
		struct terr eo = { 0 };
		if (drain_old_layout(sc, &eo) < 0) {
			log_warn("event=sync_pass_fail channel=%s%s error=\"%s\"", sc->channel, sl, eo.msg);
			*err = eo;
			syncc_disconnect(sc);
			if (one_pass) {
				rc = -1;
				break;
			}
			usleep(1000000);
			continue;
		}
		int t = chlog_take_shard(configdir, sc->channel, shard, err);
		if (t < 0) {
			rc = -1;
			break;
		}
		if (t == 1) {
			struct timespec t0, t1;
			unsigned long c0 = sc->stats.commands, r0 = sc->stats.roundtrips, b0 = sc->stats.bytes_sent;
			clock_gettime(CLOCK_MONOTONIC, &t0);
			struct terr e2 = { 0 };
			if (syncc_logfile(sc, run.ptr, &e2) == 0) {
				/* mailboxes that failed are recorded before the log
				 * goes; those replicated leave the list */
				if (failed_merge(sc, 1, err) < 0) {
					rc = -1;
					break;
				}
				if (chlog_done_shard(configdir, sc->channel, shard, err) < 0) {
					rc = -1;
					break;
				}
				clock_gettime(CLOCK_MONOTONIC, &t1);
				log_info("event=sync_pass channel=%s%s ms=%ld commands=%lu roundtrips=%lu bytes=%lu",
					 sc->channel, sl,
					 (long)((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000),
					 sc->stats.commands - c0, sc->stats.roundtrips - r0, sc->stats.bytes_sent - b0);
			} else {
				/* log-run stays: it is replayed after a reconnect;
				 * what this pass did is kept */
				log_warn("event=sync_pass_fail channel=%s%s error=\"%s\"", sc->channel, sl, e2.msg);
				struct terr e3 = { 0 };
				if (failed_merge(sc, 1, &e3) < 0)
					log_warn("event=sync_state_fail channel=%s error=\"%s\"", sc->channel, e3.msg);
				*err = e2;
				syncc_disconnect(sc);
				if (one_pass) {
					rc = -1;
					break;
				}
				usleep(1000000);
				continue;
			}
			if (one_pass)
				break;
			continue;	/* more may have been logged meanwhile */
		}
		if (failed_retry(sc, err) < 0 && err->code == TE_IO) {
			syncc_disconnect(sc);
			continue;
		}
		if (one_pass)
			break;
		long long waited = 0, step = interval > 0 && interval < 100 ? interval : 100;
		if (interval <= 0)
			interval = 100;
		do {
			if (ino >= 0) {
				struct pollfd pf = { ino, POLLIN, 0 };
				if (poll(&pf, 1, (int)step) > 0) {
					char evbuf[4096];
					while (read(ino, evbuf, sizeof evbuf) > 0)
						;
					break;	/* something was logged: go */
				}
			} else {
				usleep((useconds_t)(step * 1000));
			}
			waited += step;
		} while (waited < interval && !(sc->o.stop && *sc->o.stop));
	}
	if (ino >= 0)
		close(ino);
	buf_free(&run);
	buf_free(&dir);
	return rc;
}

/* ---- compare ------------------------------------------------------------------------------------ */

/* A difference as a structured item too (for --json). */
static void note_diff(struct syncc *sc, const char *name, const char *kind, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void note_diff(struct syncc *sc, const char *name, const char *kind, const char *fmt, ...)
{
	struct buf d = BUF_INIT;
	va_list ap;
	va_start(ap, fmt);
	buf_vprintf(&d, fmt, ap);
	va_end(ap);
	syncc_items_add(&sc->diffs, name, kind, buf_cstr(&d));
	buf_free(&d);
}

static void compare_fetch(void *rock, struct dlist *kv)
{
	struct dlist **out = rock;
	if (!strcasecmp(kv->key, "MAILBOX") && !*out) {
		struct dlist *copy = dlist_new(DL_KVLIST, "MAILBOX");
		copy->items = kv->items;
		copy->n = kv->n;
		copy->cap = kv->cap;
		kv->items = NULL;
		kv->n = kv->cap = 0;
		*out = copy;
	}
}

static const char *rec_text(const struct dlist *r, struct buf *b)
{
	buf_reset(b);
	static const char *const keys[] = { "UID", "MODSEQ", "LAST_UPDATED", "INTERNALDATE", "SIZE", "GUID" };
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
		const char *v = dlist_cstr(dlist_get(r, keys[i]));
		buf_printf(b, "%s=%s ", keys[i], v ? v : "-");
	}
	const struct dlist *fl = dlist_get_list(r, "FLAGS");
	buf_appends(b, "FLAGS=(");
	for (size_t i = 0; fl && i < fl->n; i++)
		buf_printf(b, "%s%s", i ? " " : "", dlist_cstr(fl->items[i]) ? dlist_cstr(fl->items[i]) : "?");
	buf_putc(b, ')');
	return b->ptr;
}

static int rec_expunged(const struct dlist *r)
{
	const struct dlist *fl = dlist_get_list(r, "FLAGS");
	for (size_t k = 0; fl && k < fl->n; k++)
		if (dlist_cstr(fl->items[k]) && !strcasecmp(dlist_cstr(fl->items[k]), "\\Expunged"))
			return 1;
	return 0;
}

struct fetch_rock {
	int got;		/* 1 file, -1 NIL */
	char sha[41];
};

static void fetch_cb(void *rock, struct dlist *kv)
{
	struct fetch_rock *fr = rock;
	if (strcasecmp(kv->key, "MESSAGE"))
		return;
	if (kv->type == DL_FILE) {
		fr->got = 1;
		sha1_hex(kv->s.ptr ? kv->s.ptr : "", kv->s.len, fr->sha);
	} else {
		fr->got = -1;
	}
}

/* Fetches every live record's body from the replica and checks its SHA-1. */
static int compare_bodies(struct syncc *sc, const char *name, const struct dlist *remote, struct buf *report,
			  int *ndiff, struct terr *err)
{
	const struct dlist *recs = dlist_get_list(remote, "RECORD");
	const char *uniqueid = dlist_cstr(dlist_get(remote, "UNIQUEID"));
	char q[LOGQ_MAX];
	for (size_t i = 0; recs && i < recs->n; i++) {
		const struct dlist *r = recs->items[i];
		const struct dlist *fl = dlist_get_list(r, "FLAGS");
		int expunged = 0;
		for (size_t k = 0; fl && k < fl->n; k++)
			expunged |= dlist_cstr(fl->items[k]) && !strcasecmp(dlist_cstr(fl->items[k]), "\\Expunged");
		char guid[41];
		uint32_t uid;
		if (expunged || dlist_get_guid(r, "GUID", guid) < 0 || dlist_get_num32(r, "UID", &uid) < 0)
			continue;
		struct dlist *f = dlist_new(DL_KVLIST, "FETCH");
		dlist_add_str(f, "MBOXNAME", name);
		dlist_add_str(f, "PARTITION", "default");
		dlist_add_str(f, "UNIQUEID", uniqueid ? uniqueid : "");
		dlist_add_str(f, "GUID", guid);
		dlist_add_num(f, "UID", uid);
		syncc_cmd_dlist(sc, "GET", f);
		dlist_free(&f);
		struct fetch_rock fr = { 0, "" };
		struct terr e2 = { 0 };
		if (syncc_roundtrip(sc, fetch_cb, &fr, &e2) < 0 && e2.code == TE_IO) {
			*err = e2;
			return -1;
		}
		if (fr.got != 1 || strcmp(fr.sha, guid)) {
			buf_printf(report, "mailbox=%s uid=%u guid=%s difference=replica_body %s\n", logq(q, name), uid, guid,
				   fr.got == 1 ? "sha1_mismatch" : fr.got == -1 ? "damaged" : "missing");
			note_diff(sc, name, "replica_body", "uid=%u guid=%s %s", uid, guid,
				  fr.got == 1 ? "sha1_mismatch" : fr.got == -1 ? "damaged" : "missing");
			(*ndiff)++;
		}
	}
	return 0;
}

/* Records are paired by UID. Not differences: a record expunged on both
 * sides, and a record expunged on one side and absent on the other
 * (absent_expunged): a replica never needs the history of a message it
 * never saw live, an APPLY MAILBOX does not write an expunged record below
 * the replica's LAST_UID, and the sync CRCs leave expunged records out
 * (Cyrus's too). So compare, repair (which acts on compare's differences)
 * and the sync itself agree on what "equal" means. */
int syncc_compare_mailbox(struct syncc *sc, const char *name, struct buf *report, int *ndiff, struct terr *err)
{
	struct dlist *local = NULL, *remote = NULL;
	struct terr e2 = { 0 };
	int have_local = sync_mailbox_dlist(sc->st, name, 1, 0, &local, &e2) == 0;
	if (!have_local && e2.code != TE_NOTFOUND) {
		*err = e2;
		return -1;
	}
	struct dlist *get = dlist_new(DL_STR, "FULLMAILBOX");
	buf_appends(&get->s, name);
	syncc_cmd_dlist(sc, "GET", get);
	dlist_free(&get);
	if (syncc_roundtrip(sc, compare_fetch, &remote, &e2) < 0 && e2.code != TE_NOTFOUND) {
		dlist_free(&local);
		*err = e2;
		return -1;
	}
	char q[LOGQ_MAX];
	if (!have_local || !remote) {
		if (have_local || remote) {
			buf_printf(report, "mailbox=%s difference=%s\n", logq(q, name),
				   have_local ? "missing_on_replica" : "only_on_replica");
			note_diff(sc, name, have_local ? "missing_on_replica" : "only_on_replica", "%s", "");
			(*ndiff)++;
		}
		dlist_free(&local);
		dlist_free(&remote);
		return 0;
	}
	static const char *const keys[] = { "UNIQUEID", "MBOXTYPE", "SYNC_CRC", "SYNC_CRC_ANNOT", "LAST_UID",
					    "HIGHESTMODSEQ", "RECENTUID", "UIDVALIDITY", "ACL", "OPTIONS" };
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
		const char *a = dlist_cstr(dlist_get(local, keys[i])), *b = dlist_cstr(dlist_get(remote, keys[i]));
		if ((a || b) && (!a || !b || strcmp(a, b))) {
			buf_printf(report, "mailbox=%s difference=header key=%s master=%s replica=%s\n", logq(q, name),
				   keys[i], a ? a : "-", b ? b : "-");
			note_diff(sc, name, "header", "key=%s master=%s replica=%s", keys[i], a ? a : "-", b ? b : "-");
			(*ndiff)++;
		}
	}
	const struct dlist *lr = dlist_get_list(local, "RECORD"), *rr = dlist_get_list(remote, "RECORD");
	size_t i = 0, k = 0;
	struct buf ta = BUF_INIT, tb = BUF_INIT;
	while (lr && rr && (i < lr->n || k < rr->n)) {
		uint32_t ua = UINT32_MAX, ub = UINT32_MAX;
		if (i < lr->n)
			dlist_get_num32(lr->items[i], "UID", &ua);
		if (k < rr->n)
			dlist_get_num32(rr->items[k], "UID", &ub);
		if (ua < ub && rec_expunged(lr->items[i])) {
			i++;	/* expunged here, never on the replica: see absent_expunged */
		} else if (ub < ua && rec_expunged(rr->items[k])) {
			k++;
		} else if (ua < ub) {
			buf_printf(report, "mailbox=%s uid=%u difference=record_missing_on_replica master=\"%s\"\n", logq(q, name),
				   ua, rec_text(lr->items[i], &ta));
			note_diff(sc, name, "record_missing_on_replica", "uid=%u master=%s", ua, ta.ptr);
			(*ndiff)++;
			i++;
		} else if (ub < ua) {
			buf_printf(report, "mailbox=%s uid=%u difference=record_only_on_replica replica=\"%s\"\n", logq(q, name),
				   ub, rec_text(rr->items[k], &tb));
			note_diff(sc, name, "record_only_on_replica", "uid=%u replica=%s", ub, tb.ptr);
			(*ndiff)++;
			k++;
		} else if (rec_expunged(lr->items[i]) && rec_expunged(rr->items[k])) {
			/* expunged on both sides: nothing left to replicate (an APPLY
			 * MAILBOX leaves such records alone), whatever else differs */
			i++;
			k++;
		} else {
			if (strcmp(rec_text(lr->items[i], &ta), rec_text(rr->items[k], &tb))) {
				buf_printf(report, "mailbox=%s uid=%u difference=record master=\"%s\" replica=\"%s\"\n",
					   logq(q, name), ua, ta.ptr, tb.ptr);
				note_diff(sc, name, "record", "uid=%u master=%s replica=%s", ua, ta.ptr, tb.ptr);
				(*ndiff)++;
			}
			i++;
			k++;
		}
	}
	buf_free(&ta);
	buf_free(&tb);
	int rc = sc->compare_bodies ? compare_bodies(sc, name, remote, report, ndiff, err) : 0;
	dlist_free(&local);
	dlist_free(&remote);
	return rc;
}

void syncc_compare_bodies(struct syncc *sc, int on)
{
	sc->compare_bodies = on;
}

int syncc_compare(struct syncc *sc, const char *const *users, size_t nusers, struct buf *report, int *ndiff,
		  struct terr *err)
{
	struct names who = { NULL, 0 };
	*ndiff = 0;
	if (nusers)
		for (size_t i = 0; i < nusers; i++)
			names_add(&who, users[i]);
	else if (store_user_list(sc->st, all_users_cb, &who, err) < 0)
		return -1;
	int rc = 0;
	for (size_t u = 0; u < who.n && rc == 0; u++) {
		struct names mb = { NULL, 0 };
		struct dlist *get = dlist_new(DL_STR, "USER");
		buf_appends(&get->s, who.v[u]);
		syncc_cmd_dlist(sc, "GET", get);
		dlist_free(&get);
		rc = syncc_roundtrip(sc, collect_names, &mb, err);
		struct terr e2;
		if (rc == 0 && store_mailbox_list(sc->st, who.v[u], list_cb, &mb, &e2) < 0 && e2.code != TE_NOTFOUND)
			rc = -1;
		for (size_t i = 0; rc == 0 && i < mb.n; i++)
			rc = syncc_compare_mailbox(sc, mb.v[i], report, ndiff, err);
		names_free(&mb);
	}
	if (rc == 0 && !nusers) {
		struct names shared = { NULL, 0 };
		store_mailbox_list(sc->st, "", list_cb, &shared, err);
		for (size_t i = 0; rc == 0 && i < shared.n; i++)
			rc = syncc_compare_mailbox(sc, shared.v[i], report, ndiff, err);
		names_free(&shared);
	}
	names_free(&who);
	return rc;
}
