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
		if (simple(sc, "COMPRESS DEFLATE", err) < 0 || conn_compress(sc->c, err) < 0)
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
	if (incremental) {
		if (push_mailbox(sc, name, 0, remote, err) == 0)
			return 0;
		if (err->code != TE_CHECKSUM && err->code != TE_CHANGED)
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
static int sync_batch(struct syncc *sc, char **names, size_t n, int unmailbox, struct terr *err)
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
	char **gone = xcalloc(n, sizeof *gone);
	size_t ngone = 0;
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
		if (sync_one_noted(sc, names[i], remote, &e2) < 0) {
			*err = e2;
			if (e2.code == TE_IO)
				rc = -1;
		}
		store_mailbox_info_free(&mi);
	}
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

int syncc_users(struct syncc *sc, const char *const *users, size_t n, struct terr *err)
{
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

static void failed_path(const struct syncc *sc, struct buf *out)
{
	chlog_path(conf_str(sc->conf, "configdirectory"), sc->channel, "failed", out);
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
 * and its backoff belong to the rolling client. Clears the work. */
static int failed_merge(struct syncc *sc, int record, struct terr *err)
{
	if (!sc->nfailed || !record) {
		/* nothing to add: nothing to do unless the list exists (the
		 * common case of a rolling pass: no lock, no read) */
		struct buf path = BUF_INIT;
		failed_path(sc, &path);
		int exists = access(path.ptr, F_OK) == 0;
		buf_free(&path);
		if (!exists) {
			work_clear(sc);
			return 0;
		}
	}
	int lock = failed_lock(sc);
	struct failed *v;
	size_t n;
	if (failed_load(sc, &v, &n, err) < 0) {
		failed_unlock(lock);
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
	work_clear(sc);
	int rc = changed || n != n0 ? failed_save(sc, v, n, err) : 0;
	failed_unlock(lock);
	failed_free(v, n);
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

int syncc_status(const struct conf *conf, const char *channel, struct buf *out, struct terr *err)
{
	struct syncc sc = { 0 };
	sc.conf = conf;
	snprintf(sc.channel, sizeof sc.channel, "%s", channel ? channel : "");
	const char *configdir = conf_str(conf, "configdirectory");
	struct buf p = BUF_INIT, data = BUF_INIT;
	size_t lines = 0;
	for (int k = 0; k < 2; k++) {
		chlog_path(configdir, sc.channel, k ? "log-run" : "log", &p);
		buf_reset(&data);
		struct terr e2;
		if (fs_read_file(p.ptr, (size_t)1 << 31, &data, &e2) == 0)
			for (size_t i = 0; i < data.len; i++)
				lines += data.ptr[i] == '\n';
	}
	buf_printf(out, "channel=%s pending_lines=%zu\n", *sc.channel ? sc.channel : "\"\"", lines);
	struct failed *v;
	size_t n;
	int rc = failed_load(&sc, &v, &n, err);
	for (size_t i = 0; rc == 0 && i < n; i++)
		buf_printf(out, "channel=%s mailbox=%s state=failed attempts=%d next_retry=%lld error=\"%s\"\n",
			   *sc.channel ? sc.channel : "\"\"", v[i].name, v[i].attempts, v[i].next_retry, v[i].error);
	if (rc == 0)
		failed_free(v, n);
	syncc_splitbrain_status(conf, sc.channel, out);
	buf_free(&p);
	buf_free(&data);
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

int syncc_rolling(struct syncc *sc, int one_pass, struct terr *err)
{
	const char *configdir = conf_str(sc->conf, "configdirectory");
	const char *shutdown = conf_chan_str(sc->conf, sc->channel, "sync_shutdown_file");
	long long interval = conf_chan_duration_ms(sc->conf, sc->channel, "sync_repeat_interval");
	struct buf run = BUF_INIT, dir = BUF_INIT;
	chlog_path(configdir, sc->channel, "log-run", &run);
	chlog_path(configdir, sc->channel, "", &dir);
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
			log_notice("event=sync_drain channel=%s", sc->channel);
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
		int t = chlog_take(configdir, sc->channel, err);
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
				if (chlog_done(configdir, sc->channel, err) < 0) {
					rc = -1;
					break;
				}
				clock_gettime(CLOCK_MONOTONIC, &t1);
				log_info("event=sync_pass channel=%s ms=%ld commands=%lu roundtrips=%lu bytes=%lu",
					 sc->channel,
					 (long)((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000),
					 sc->stats.commands - c0, sc->stats.roundtrips - r0, sc->stats.bytes_sent - b0);
			} else {
				/* log-run stays: it is replayed after a reconnect;
				 * what this pass did is kept */
				log_warn("event=sync_pass_fail channel=%s error=\"%s\"", sc->channel, e2.msg);
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
