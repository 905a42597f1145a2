/* syncs.c: the replica's sync server, one csync connection (Cyrus 3.6
 * sync_server protocol, reference §2 and §4), and the SYNC* commands of
 * an IMAP session (§2.10). Thin: the connection, authentication,
 * STARTTLS, COMPRESS and framing are here; every GET/APPLY/RESTART is
 * run by the replica engine (src/sync/sync_replica.h).
 *
 * States: BANNER (capabilities + "* OK") -> UNAUTH (AUTHENTICATE,
 * STARTTLS, COMPRESS, NOOP, EXIT) -> AUTH (GET / APPLY / RESTORE,
 * RESTART, NOOP, EXIT). Only admins may authenticate. A bad command gets
 * an error reply and changes nothing.
 */
#include "syncs/syncs.h"

#include "chlog/chlog.h"
#include "conf/conf.h"
#include "lib/base64.h"
#include "lib/limits.h"
#include "lib/log.h"
#include "lib/xalloc.h"
#include "names/mboxname.h"
#include "proto/sync/dlist.h"
#include "store/store.h"
#include "sync/sync_replica.h"

#include <ctype.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

struct syncs {
	const struct service_env *env;
	struct conn *c;
	struct store *st;
	struct chlog *log;
	struct mboxname_ns ns;
	struct sync_replica *replica;
	struct server_role_cache role;
	char user[MAX_USERID + 1];
	int authed;
	int answered;		/* answers queued since the last send_answers */
	struct buf in;		/* input; its first dead bytes are consumed (in_at) */
	size_t dead;
	struct buf out;
};

static void send_line(struct syncs *s, const char *line)
{
	conn_puts(s->c, line);
	conn_puts(s->c, "\r\n");
}

/* The input not yet consumed: s->in after its dead bytes. Consuming
 * only moves the mark; the bytes are moved down once, before the next
 * read appends (in_compact), instead of at every command and literal. */
static char *in_at(struct syncs *s)
{
	return s->in.ptr ? s->in.ptr + s->dead : (char *)"";
}

static size_t in_len(const struct syncs *s)
{
	return s->in.len - s->dead;
}

static void in_consume(struct syncs *s, size_t n)
{
	s->dead += n;
	if (s->dead >= s->in.len) {
		buf_reset(&s->in);
		s->dead = 0;
	}
}

static void in_compact(struct syncs *s)
{
	if (!s->dead)
		return;
	buf_consume(&s->in, s->dead);
	s->dead = 0;
}

static void banner(struct syncs *s)
{
	int plain_ok = conn_is_tls(s->c) || conf_bool(s->env->conf, "allowplaintext");
	if (plain_ok)
		send_line(s, "* SASL PLAIN");
	if (s->env->tls && !conn_is_tls(s->c))
		send_line(s, "* STARTTLS");
	if (!conn_is_compressed(s->c) && !conn_is_tls(s->c))
		send_line(s, "* COMPRESS DEFLATE");
	send_line(s, "* SIEVE-MAILBOX");
	conn_printf(s->c, "* OK %s Cyrus sync server 3.6 (tandem)\r\n", conf_str(s->env->conf, "servername"));
}

/* sync_data_fn: "* <dlist>" on the connection. */
static void send_data(void *rock, const struct dlist *d)
{
	struct syncs *s = rock;
	buf_reset(&s->out);
	buf_appends(&s->out, "* ");
	dlist_print(&s->out, d, DLIST_LIT_SERVER);
	buf_appends(&s->out, "\r\n");
	conn_write(s->c, s->out.ptr, s->out.len);
}

static int is_master(void *rock)
{
	struct syncs *s = rock;
	return server_role_cached(&s->role) == ROLE_MASTER;
}

/* A writer for the channels of sync_log_channels that are also in
 * sync_log_unsuppressable_channels; NULL when there is none (or no
 * sync_log). */
static struct chlog *unsuppressable_log(const struct conf *conf)
{
	if (!conf_bool(conf, "sync_log"))
		return NULL;
	const char *const *chans, *const *keep;
	size_t n = conf_log_channels(conf, &chans);
	size_t nk = conf_list(conf, "sync_log_unsuppressable_channels", &keep);
	const char *names[MAX_CHANNELS];
	unsigned shards[MAX_CHANNELS];
	size_t m = 0;
	for (size_t i = 0; i < n && m < MAX_CHANNELS; i++)
		for (size_t k = 0; k < nk; k++)
			if (!strcmp(chans[i], keep[k])) {
				names[m] = chans[i];
				shards[m++] = (unsigned)conf_chan_int(conf, chans[i], "sync_shards");
				break;
			}
	return m ? chlog_open_fixed(conf_str(conf, "configdirectory"), names, shards, m) : NULL;
}

/* The store and the engine of a session. */
static int open_engine(struct syncs *s, struct terr *err)
{
	if (server_open_store(s->env->conf, &s->st, &s->log, &s->ns, err) < 0)
		return -1;
	/* an initial sync makes a new owner for every user it brings */
	store_spares_enable(s->st);
	/* A replica logs what it applies only to feed a further replica,
	 * and to the channels of sync_log_unsuppressable_channels (consumer
	 * channels such as squatter's: a replica's search index follows what
	 * replication writes), as Cyrus does. */
	if (!conf_bool(s->env->conf, "sync_log_chain")) {
		store_set_chlog(s->st, NULL);
		chlog_close(&s->log);
		s->log = unsuppressable_log(s->env->conf);
		if (s->log)
			store_set_chlog(s->st, s->log);
	}
	s->role.conf = s->env->conf;
	struct sync_replica_opts o = { s->st, s->env->session_id, is_master, s };
	s->replica = sync_replica_new(&o);
	return 0;
}

static void close_engine(struct syncs *s)
{
	sync_replica_free(&s->replica);
	buf_free(&s->in);
	buf_free(&s->out);
	store_close(&s->st);
	chlog_close(&s->log);
}

/* ---- authentication ------------------------------------------------------------ */

static int is_admin(const struct conf *conf, const char *user)
{
	const char *const *admins;
	size_t n = conf_list(conf, "admins", &admins);
	for (size_t i = 0; i < n; i++)
		if (!strcmp(admins[i], user))
			return 1;
	return 0;
}

static int do_authenticate(struct syncs *s, const struct dlist *line)
{
	const char *mech = line->n > 1 ? dlist_cstr(line->items[1]) : NULL;
	const char *resp = line->n > 2 ? dlist_cstr(line->items[2]) : NULL;
	if (s->authed) {
		send_line(s, "BAD Already authenticated");
		return 0;
	}
	if (!mech || strcasecmp(mech, "PLAIN") || !resp) {
		send_line(s, "NO unsupported mechanism (PLAIN with an initial response only)");
		return 0;
	}
	if (!conn_is_tls(s->c) && !conf_bool(s->env->conf, "allowplaintext")) {
		send_line(s, "NO Plaintext authentication is not allowed without TLS");
		return 0;
	}
	size_t rl = strlen(resp);
	struct buf decoded = BUF_INIT;
	if (rl > 2000 || base64_decode_strict(resp, rl, &decoded) < 0) {
		buf_free(&decoded);
		send_line(s, "BAD Invalid base64");
		return 0;
	}
	const unsigned char *dec = (const unsigned char *)buf_cstr(&decoded);
	size_t n = decoded.len;
	/* authzid \0 authcid \0 password */
	const unsigned char *p1 = memchr(dec, 0, n);
	const unsigned char *p2 = p1 ? memchr(p1 + 1, 0, (size_t)(dec + n - p1 - 1)) : NULL;
	if (!p1 || !p2) {
		OPENSSL_cleanse(decoded.ptr, decoded.len);
		buf_free(&decoded);
		send_line(s, "BAD Invalid PLAIN response");
		return 0;
	}
	char authcid[MAX_USERID + 1], authzid[MAX_USERID + 1], pw[MAX_PASSWORD + 1];
	snprintf(authzid, sizeof authzid, "%.*s", (int)(p1 - dec), (const char *)dec);
	snprintf(authcid, sizeof authcid, "%.*s", (int)(p2 - p1 - 1), (const char *)p1 + 1);
	snprintf(pw, sizeof pw, "%.*s", (int)(dec + n - p2 - 1), (const char *)p2 + 1);
	struct terr err;
	int ok = store_user_check_password(s->st, authcid, pw, &err) == 1 && is_admin(s->env->conf, authcid) &&
		 (!authzid[0] || !strcmp(authzid, authcid));
	OPENSSL_cleanse(pw, sizeof pw);
	OPENSSL_cleanse(decoded.ptr, decoded.len);
	buf_free(&decoded);
	if (!ok) {
		/* counted per user and per address across sessions; the pause
		 * grows with them; the third failure on a connection closes it */
		conn_flush(s->c, &err);
		int end = server_auth_failed(s->env, authcid,
					     is_admin(s->env->conf, authcid) ? "bad_credentials" : "not_admin");
		send_line(s, "NO Login failed");
		if (end) {
			send_line(s, "* BYE Too many failed logins");
			return 1;
		}
		return 0;
	}
	snprintf(s->user, sizeof s->user, "%s", authcid);
	s->authed = 1;
	server_auth_succeeded(s->env, authcid);
	log_info("event=login service=sync session=%s user=%s peer=%s tls=%d", s->env->session_id, authcid,
		 s->env->peer, conn_is_tls(s->c));
	send_line(s, "OK Success (no protection)");
	return 0;
}

/* ---- the session ---------------------------------------------------------------------- */

/* A session command's handler: 0 to go on, 1 to end the session. */
typedef int session_fn(struct syncs *s, const struct dlist *line);

static int cmd_noop(struct syncs *s, const struct dlist *line)
{
	send_line(s, line->n > 1 ? "BAD Unexpected extra arguments to Noop" : "OK Noop completed");
	return 0;
}

static int cmd_exit(struct syncs *s, const struct dlist *line)
{
	(void)line;
	send_line(s, "OK Finished");
	return 1;
}

static int cmd_starttls(struct syncs *s, const struct dlist *line)
{
	struct terr err = { 0 };
	(void)line;
	if (!s->env->tls || conn_is_tls(s->c) || s->authed) {
		send_line(s, "BAD IMAP_PROTOCOL_ERROR Unrecognized command");
		return 0;
	}
	if (in_len(s)) {
		send_line(s, "BAD Command pipelined after STARTTLS");
		return 1;
	}
	send_line(s, "OK Begin TLS negotiation now");
	if (conn_flush(s->c, &err) < 0 || conn_tls_server(s->c, s->env->tls, &err) < 0) {
		log_warn("event=starttls_fail service=sync session=%s error=\"%s\"", s->env->session_id, err.msg);
		return 1;
	}
	banner(s);
	return 0;
}

static int cmd_compress(struct syncs *s, const struct dlist *line)
{
	struct terr err = { 0 };
	const char *arg = line->n > 1 ? dlist_cstr(line->items[1]) : NULL;
	if (!arg) {
		send_line(s, "BAD Missing required argument to Compress");
	} else if (strcasecmp(arg, "DEFLATE") || conn_is_compressed(s->c) || conn_is_tls(s->c)) {
		send_line(s, "NO Compression not available");
	} else {
		send_line(s, "OK DEFLATE active");
		if (conn_flush(s->c, &err) < 0 || conn_compress(s->c, &err) < 0)
			return 1;
	}
	return 0;
}

/* sync_reply_fn: a batch's answers, in order. */
static void send_reply(void *rock, const char *line)
{
	struct syncs *s = rock;
	send_line(s, line);
	s->answered = 1;
}

/* Answers handed out while input is still buffered go out now: the
 * client keeps a window of APPLY MAILBOX in flight and sends the next
 * part only when it has an answer. A write error shows at the next read. */
static void send_answers(struct syncs *s)
{
	struct terr err = { 0 };
	if (s->answered)
		conn_flush(s->c, &err);
	s->answered = 0;
}

/* Pipelined APPLY (sync_replica.h): the batch's bodies flushed, its
 * mailboxes committed and answered, and a flush in flight waited for.
 * Before any other command, and before the session waits for input. */
static void flush_batch(struct syncs *s)
{
	if (s->replica)
		sync_replica_flush(s->replica, send_reply, s);
}

/* A full batch: its flush starts on the flush thread (after the one in
 * flight, if any, is done) while the session reads the next one. */
static void batch_check(struct syncs *s)
{
	sync_replica_flush_poll(s->replica, send_reply, s);
	if (sync_replica_batch_full(s->replica))
		sync_replica_flush_start(s->replica, send_reply, s);
	send_answers(s);
}

/* The batch waits for more commands only while they are already here:
 * 1 when more input was read without waiting, else (the batch flushed)
 * 0: the caller may block. When nothing is buffered, the batch is
 * flushed on the flush thread and the session waits for input and for
 * that flush at once: the answers go out as soon as it is done, and
 * input that comes first is read meanwhile (1). */
static int more_without_waiting(struct syncs *s)
{
	if (!s->replica || !sync_replica_deferred(s->replica))
		return 0;
	struct terr e2 = { 0 };
	batch_check(s);
	in_compact(s);
	if (conn_read(s->c, &s->in, 0, &e2) > 0)
		return 1;
	while (sync_replica_deferred(s->replica)) {
		if (!sync_replica_flushing(s->replica))
			sync_replica_flush_start(s->replica, send_reply, s);
		send_answers(s);
		int efd = sync_replica_flush_fd(s->replica);
		if (efd < 0)
			break;	/* it ran here (no thread): answered below */
		struct pollfd pf[2] = { { conn_fd(s->c), POLLIN, 0 }, { efd, POLLIN, 0 } };
		int n = poll(pf, 2, SERVER_STOP_POLL_MS);
		if (n < 0 && errno != EINTR)
			break;
		if (n > 0 && (pf[1].revents & POLLIN)) {
			sync_replica_flush_wait(s->replica, send_reply, s);
			continue;	/* the queued commands may make a batch: flushed the same way */
		}
		if (n > 0 && (pf[0].revents & (POLLIN | POLLHUP | POLLERR))) {
			ssize_t r = conn_read(s->c, &s->in, 0, &e2);
			if (r > 0)
				return 1;
			if (r == 0 || e2.code != TE_BUSY)
				break;	/* the end or an error: the caller's read finds it */
		}
	}
	flush_batch(s);
	send_answers(s);
	return 0;
}

/* A command that may join the batch: APPLY MAILBOX, LOCAL_MAILBOX, MESSAGE. */
static int deferrable(const struct syncs *s, const struct dlist *line)
{
	if (!s->authed || line->n < 3)
		return 0;
	return sync_replica_defer_key(dlist_cstr(line->items[0]), dlist_cstr(line->items[1]));
}

/* GET, APPLY, RESTORE, RESTART: the replica engine's. */
static int cmd_engine(struct syncs *s, const struct dlist *line)
{
	const char *verb = dlist_cstr(line->items[0]);
	if (!strcasecmp(verb, "RESTART")) {
		send_line(s, sync_replica_exec(s->replica, verb, NULL, send_data, s));
		return 0;
	}
	struct dlist *kv = dlist_take_keyed((struct dlist *)line, 1);
	if (!kv) {
		char bad[64];
		sync_parse_failure_line(verb, strlen(verb), bad, sizeof bad);
		send_line(s, bad);
		return 0;
	}
	if (sync_replica_may_defer(verb, kv)) {
		sync_replica_defer(s->replica, verb, &kv);
		batch_check(s);
		return 0;
	}
	send_line(s, sync_replica_exec(s->replica, verb, kv, send_data, s));
	dlist_free(&kv);
	return 0;
}

/* GET USER, GET MAILBOXES and RESTART while a batch waits: joined to it
 * (sync_replica_join: the batch spans users instead of ending at every
 * user's GET USER and RESTART), or else run after the batch's answers as
 * any other command. 1 when handled here. */
static int join_batch(struct syncs *s, struct dlist *line)
{
	if (!s->authed || !s->replica || !sync_replica_deferred(s->replica) || !line->n)
		return 0;
	const char *verb = dlist_cstr(line->items[0]);
	const char *key = line->n > 2 ? dlist_cstr(line->items[1]) : NULL;
	if (!verb || !sync_replica_join_key(verb, key))
		return 0;
	if (!strcasecmp(verb, "RESTART")) {
		if (!sync_replica_join(s->replica, "RESTART", NULL, send_data, s, send_reply, s))
			return 0;
		batch_check(s);
		return 1;
	}
	struct dlist *kv = dlist_take_keyed(line, 1);
	if (!kv)
		return 0;	/* line untouched: its answer is the parse failure */
	if (sync_replica_join(s->replica, "GET", kv, send_data, s, send_reply, s)) {
		batch_check(s);
	} else {
		flush_batch(s);
		send_line(s, sync_replica_exec(s->replica, "GET", kv, send_data, s));
		s->answered = 1;	/* out at the next batch check (do_command) */
	}
	dlist_free(&kv);
	return 1;
}

static int cmd_authenticate(struct syncs *s, const struct dlist *line)
{
	return do_authenticate(s, line);
}

/* The session's commands: name, whether it needs authentication. */
static const struct session_cmd {
	const char *name;
	int needs_auth;
	session_fn *fn;
} session_cmds[] = {
	{ "NOOP", 0, cmd_noop },
	{ "EXIT", 0, cmd_exit },
	{ "AUTHENTICATE", 0, cmd_authenticate },
	{ "STARTTLS", 0, cmd_starttls },
	{ "COMPRESS", 1, cmd_compress },	/* after login: deflate makes a stranger's bytes cheap */
	{ "GET", 1, cmd_engine },
	{ "APPLY", 1, cmd_engine },
	{ "RESTORE", 1, cmd_engine },
	{ "RESTART", 1, cmd_engine },
};

/* Runs one framed command; 0 to go on, 1 to end the session. After
 * authentication its file literals were streamed to staging files while
 * it was read (read_file_literal): cmd holds their headers only. */
static int do_command(struct syncs *s, const char *cmd, size_t len)
{
	struct dlist *line = NULL;
	struct terr err = { 0 };
	int rc = dlist_parse_ext(cmd, len, s->authed ? DLIST_FILES_OUTSIDE : 0, &line, &err);
	if (rc == 0 && join_batch(s, line)) {
		dlist_free(&line);
		sync_replica_files_drop(s->replica);
		return 0;
	}
	if (rc < 0 || !deferrable(s, line))
		flush_batch(s);	/* its answer comes after the batch's */
	if (rc < 0) {
		char bad[64];
		log_warn("event=bad_command service=sync session=%s error=\"%s\"", s->env->session_id, err.msg);
		sync_parse_failure_line(cmd, len, bad, sizeof bad);
		send_line(s, bad);
		sync_replica_files_drop(s->replica);
		return 0;
	}
	const char *verb = line->n ? dlist_cstr(line->items[0]) : NULL;
	int end = 0;
	const struct session_cmd *sc = NULL;
	for (size_t i = 0; verb && i < sizeof session_cmds / sizeof session_cmds[0] && !sc; i++)
		if (!strcasecmp(session_cmds[i].name, verb))
			sc = &session_cmds[i];
	if (!verb || !*verb)
		send_line(s, "BAD Null command");
	else if (!sc)
		send_line(s, "BAD IMAP_PROTOCOL_ERROR Unrecognized command");
	else if (sc->needs_auth && !s->authed)
		send_line(s, "NO Please authenticate first");
	else
		end = sc->fn(s, line);
	dlist_free(&line);
	sync_replica_files_drop(s->replica);	/* files the command did not stage */
	/* its answer goes out with the next batch's check (send_answers), not
	 * only when the session next waits: a GET USER answered at once lets
	 * the streaming client send that user's parts while this session
	 * still reads the previous user's (before, it waited in the buffer
	 * until the batch read meanwhile was flushed) */
	s->answered = 1;
	return end;
}

/* The bytes of the file literal just announced (f->file), from the
 * input at f->pos: each piece goes to the staging file as it arrives and
 * leaves the buffer, which never holds more than one read. The command's
 * text before the literal (f->pos bytes, its headers) must stay joined
 * to what follows it: the shorter side is moved (the text so far, to
 * the right, over the literal's bytes, when it is shorter than the rest
 * of the read; never the whole rest after every literal). 0, or -1 when
 * the connection ends first. */
static int read_file_literal(struct syncs *s, struct dlist_frame *f, long long timeout_ms, struct terr *err)
{
	uint64_t left = f->file.size;
	sync_replica_file_begin(s->replica, &f->file);
	for (;;) {
		char *base = in_at(s);
		size_t avail = in_len(s) - f->pos;
		size_t take = avail < left ? avail : (size_t)left;
		sync_replica_file_write(s->replica, base + f->pos, take);
		if (take < avail && f->pos < avail - take) {
			memmove(base + take, base, f->pos);
			s->dead += take;
		} else {
			memmove(base + f->pos, base + f->pos + take, avail - take);
			buf_truncate(&s->in, s->in.len - take);
		}
		left -= take;
		if (!left)
			break;
		if (more_without_waiting(s))
			continue;
		if (conn_flush(s->c, err) < 0)
			return -1;
		in_compact(s);
		ssize_t r = server_idle_read(s->c, &s->in, timeout_ms > 0 ? timeout_ms : -1, err);
		if (r <= 0)
			return -1;
	}
	sync_replica_file_end(s->replica);
	return 0;
}

int syncs_session(const struct service_env *env, struct conn *c)
{
	struct syncs s = { 0 };
	s.env = env;
	s.c = c;
	struct terr err = { 0 };
	if (env->implicit_tls && conn_tls_server(c, env->tls, &err) < 0)
		return 1;
	if (open_engine(&s, &err) < 0) {
		log_err("event=store_fail service=sync session=%s error=\"%s\"", env->session_id, err.msg);
		return 1;
	}
	log_info("event=connect service=sync session=%s peer=%s", env->session_id, env->peer);
	banner(&s);
	long long timeout_ms = conf_duration_ms(env->conf, "sync_timeout");
	struct dlist_frame f;
	dlist_frame_init(&f);
	for (;;) {
		f.files = s.authed;	/* before login a literal is only a long command */
		long long n = dlist_frame_scan(&f, in_at(&s), in_len(&s), &err);
		if (n == DLIST_FRAME_FILE) {
			if (read_file_literal(&s, &f, timeout_ms, &err) < 0)
				break;
			continue;
		}
		if (n < 0 && err.code == TE_INVALID) {
			/* a syntax error: skip to the end of the line, answer BAD, go on
			 * (over a size limit there is no way to resynchronise: drop) */
			const char *nl = memchr(in_at(&s) + f.pos, '\n', in_len(&s) - f.pos);
			if (!nl) {
				if (in_len(&s) > (s.authed ? DLIST_MAX_ATOM : SYNC_PREAUTH_MAX_COMMAND))
					break;
				flush_batch(&s);
				if (conn_flush(c, &err) < 0)
					break;
				in_compact(&s);
				ssize_t r = server_idle_read(c, &s.in, timeout_ms > 0 ? timeout_ms : -1, &err);
				if (r <= 0)
					break;
				continue;	/* the scanner stays where it failed */
			}
			char bad[64];
			log_warn("event=bad_command service=sync session=%s error=\"%s\"", env->session_id, err.msg);
			sync_parse_failure_line(in_at(&s), in_len(&s), bad, sizeof bad);
			flush_batch(&s);
			send_line(&s, bad);
			in_consume(&s, (size_t)(nl - in_at(&s)) + 1);
			dlist_frame_init(&f);
			sync_replica_files_drop(s.replica);
			continue;
		}
		if (n < 0) {
			log_warn("event=bad_command service=sync session=%s error=\"%s\"", env->session_id, err.msg);
			flush_batch(&s);
			conn_printf(c, "* BYE %s\r\n", err.msg);
			break;
		}
		if (!s.authed && (n > SYNC_PREAUTH_MAX_COMMAND || (n == 0 && in_len(&s) > SYNC_PREAUTH_MAX_COMMAND))) {
			log_warn("event=bad_command service=sync session=%s peer=%s error=\"command over %d bytes before"
				 " authentication\"", env->session_id, env->peer, SYNC_PREAUTH_MAX_COMMAND);
			send_line(&s, "* BYE Command too long before authentication");
			break;
		}
		if (n > 0) {
			char *cmd = xmemdup(in_at(&s), (size_t)n);
			in_consume(&s, (size_t)n);
			dlist_frame_init(&f);
			int end = do_command(&s, cmd, (size_t)n);
			free(cmd);
			if (end)
				break;
			continue;
		}
		if (more_without_waiting(&s))
			continue;
		if (conn_flush(c, &err) < 0)
			break;
		if (server_stop_requested) {
			send_line(&s, "BYE shutting down");
			break;
		}
		in_compact(&s);
		ssize_t r = server_idle_read(c, &s.in, timeout_ms > 0 ? timeout_ms : -1, &err);
		if (r < 0 && server_stop_requested)
			send_line(&s, "BYE shutting down");
		if (r <= 0)
			break;
	}
	flush_batch(&s);	/* applied even when the client is gone: its next sync finds them */
	conn_flush(c, &err);
	log_info("event=disconnect service=sync session=%s user=%s commands=%lu", env->session_id, s.user,
		 sync_replica_commands(s.replica));
	close_engine(&s);
	return 0;
}

/* ---- the IMAP transport (reference §2.10) -------------------------------------------- */

struct syncs *syncs_imap_new(const struct service_env *env, struct conn *c, const char *user,
			     struct terr *err)
{
	struct syncs *s = xcalloc(1, sizeof *s);
	s->env = env;
	s->c = c;
	if (open_engine(s, err) < 0) {
		close_engine(s);
		free(s);
		return NULL;
	}
	snprintf(s->user, sizeof s->user, "%s", user);
	s->authed = 1;
	return s;
}

static const char *imap_command(struct syncs *s, const char *verb, const char *raw, size_t len, unsigned flags)
{
	if (!strcasecmp(verb, "RESTART")) {
		sync_replica_files_drop(s->replica);
		return sync_replica_exec(s->replica, "RESTART", NULL, send_data, s);
	}
	const char *fail = !strcasecmp(verb, "GET") ? "BAD Replication parse failure in Syncget" :
			   !strcasecmp(verb, "APPLY") ? "BAD Replication parse failure in Syncapply" :
							"BAD Replication parse failure in Syncrestore";
	struct buf line = BUF_INIT;
	buf_printf(&line, "%s ", verb);
	buf_append(&line, raw, len);
	struct dlist *dl = NULL;
	struct terr err = { 0 };
	const char *res = fail;
	if (dlist_parse_ext(line.ptr, line.len, flags, &dl, &err) < 0) {
		log_warn("event=bad_command service=imap-sync session=%s error=\"%s\"", s->env->session_id, err.msg);
	} else {
		struct dlist *kv = dlist_take_keyed(dl, 1);
		if (kv)
			res = sync_replica_exec(s->replica, verb, kv, send_data, s);
		dlist_free(&kv);
	}
	dlist_free(&dl);
	buf_free(&line);
	sync_replica_files_drop(s->replica);	/* files the command did not stage */
	return res;
}

const char *syncs_imap_command(struct syncs *s, const char *verb, const char *raw, size_t len)
{
	return imap_command(s, verb, raw, len, 0);
}

const char *syncs_imap_command_streamed(struct syncs *s, const char *verb, const char *raw, size_t len)
{
	return imap_command(s, verb, raw, len, DLIST_FILES_OUTSIDE);
}

void syncs_imap_file(struct syncs *s, const char *text, size_t textlen, const void *data, size_t len,
		     uint64_t *left)
{
	if (*left == 0) {
		/* the header is the last "%{" of the text: a literal's bytes
		 * never follow it (they are this literal's) */
		size_t at = textlen;
		while (at >= 2 && !(text[at - 2] == '%' && text[at - 1] == '{'))
			at--;
		struct dlist_frame f;
		dlist_frame_init(&f);
		f.files = 1;
		struct terr err = { 0 };
		struct dlist_file_hdr bad = { "", "", 0, 0 };
		long long n = at >= 2 ? dlist_frame_scan(&f, text + at - 2, textlen - at + 2, &err) : -1;
		const struct dlist_file_hdr *h = n == DLIST_FRAME_FILE ? &f.file : &bad;
		sync_replica_file_begin(s->replica, h);
		*left = n == DLIST_FRAME_FILE ? f.file.size : len;
		if (*left < len)
			*left = len;	/* the parser's size rules: never past the literal */
	}
	sync_replica_file_write(s->replica, data, len);
	*left -= len;
	if (*left == 0)
		sync_replica_file_end(s->replica);
}

void syncs_imap_files_drop(struct syncs *s)
{
	sync_replica_files_drop(s->replica);
}

void syncs_imap_free(struct syncs **sp)
{
	struct syncs *s = *sp;
	if (!s)
		return;
	close_engine(s);
	free(s);
	*sp = NULL;
}
