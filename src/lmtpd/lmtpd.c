/* lmtpd.c: one LMTP session (RFC 2033), served in its own process.
 *
 * Session states:
 *   GREET -> READY (after LHLO) -> MAIL (after MAIL FROM) -> RCPT (one or
 *   more accepted recipients) -> DATA (reading the message) -> READY.
 * RSET returns to READY from anywhere; QUIT ends the session. Replies to
 * pipelined commands are written in order and flushed when the input is
 * used up (PIPELINING). After DATA, each accepted recipient gets its own
 * reply, sent only after its copy is durable (store_deliver commits each
 * recipient: file fsync and directory fsync beside the change-log fsync,
 * then the commit).
 */
#include "lmtpd/lmtpd.h"

#include "chlog/chlog.h"
#include "conf/conf.h"
#include "lib/limits.h"
#include "lib/log.h"
#include "lib/xalloc.h"
#include "names/mboxname.h"
#include "proto/lmtp/lmtp.h"
#include "lib/fsutil.h"
#include "stats/stats.h"
#include "store/store.h"
#include "store/store_move.h"

#include <malloc.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

enum lstate { L_GREET, L_READY, L_MAIL, L_RCPT };

struct rcpt {
	char *address;	/* as given, for logs */
	char *mailbox;	/* internal name */
};

struct lmtp_session {
	const struct service_env *env;
	struct conn *c;
	struct store *st;
	struct chlog *log;
	struct mboxname_ns ns;
	enum lstate state;
	struct buf in;
	struct buf from;
	struct rcpt *rcpts;
	size_t nrcpts;
	int bad;
	long long maxsize;
	int downcase;
	int overquota_perm;
	long long idle_ms;	/* preauth_timeout: between commands */
	unsigned long delivered;
	int clean;		/* ended by QUIT or the client's EOF between commands */
};

static void reply(struct lmtp_session *s, int code, const char *status, const char *text)
{
	conn_printf(s->c, "%d %s %s\r\n", code, status, text);
}

static void reset_tx(struct lmtp_session *s)
{
	for (size_t i = 0; i < s->nrcpts; i++) {
		free(s->rcpts[i].address);
		free(s->rcpts[i].mailbox);
	}
	free(s->rcpts);
	s->rcpts = NULL;
	s->nrcpts = 0;
	buf_reset(&s->from);
	if (s->state != L_GREET)
		s->state = L_READY;
}

static void do_lhlo(struct lmtp_session *s)
{
	const char *name = conf_str(s->env->conf, "servername");
	reset_tx(s);
	s->state = L_READY;
	conn_printf(s->c, "250-%s\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n", name);
	if (s->env->tls && !conn_is_tls(s->c))
		conn_puts(s->c, "250-STARTTLS\r\n");
	conn_printf(s->c, "250 SIZE %lld\r\n", s->maxsize);
}

static void lmtpd_rcpt_refuse_moved(struct lmtp_session *s, const char *path, const struct store_move *m)
{
	stats_count_refused(SR_USER_MOVED, 1);
	char q[LOGQ_MAX], text[300];
	log_notice("event=rcpt_refused session=%s rcpt=%s code=451 status=4.2.1 reason=user_%s target=%s",
		   s->env->session_id, logq(q, path), store_move_state_name(m->state), m->target);
	reply(s, 451, "4.2.1", store_move_text(m, text, sizeof text));
}

/* A user locked for a move or moved away (store_move.h): 451 4.2.1, so
 * the MTA retries until its routing points at the user's new store. 1
 * with the reply sent, 0 to go on. */
static int lmtpd_rcpt_moving(struct lmtp_session *s, const char *path, const char *user)
{
	struct store_move m;
	struct terr err = { 0 };
	if (store_move_get(s->st, user, &m, &err) < 0) {
		log_err("event=rcpt_fail session=%s rcpt=%s error=\"%s\"", s->env->session_id, path, err.msg);
		reply(s, 451, "4.3.0", "Temporary failure looking up the recipient");
		stats_count_refused(SR_TEMPORARY, 1);
		return 1;
	}
	if (m.state == STORE_MOVE_NONE)
		return 0;
	lmtpd_rcpt_refuse_moved(s, path, &m);
	return 1;
}

/* Maps a recipient to its mailbox: user's INBOX, or user+folder when the
 * folder exists and its ACL lets strangers post (store_acl_grants_post), else
 * the INBOX, as Cyrus does. 0, or -1 with reply sent. */
static int resolve_rcpt(struct lmtp_session *s, const char *path, struct buf *mailbox)
{
	struct buf local = BUF_INIT, detail = BUF_INIT, domain = BUF_INIT, user = BUF_INIT;
	struct terr err = { 0 };
	int rc = -1;
	if (lmtp_split_address(path, s->downcase, &local, &detail, &domain) < 0) {
		reply(s, 501, "5.1.3", "Bad recipient address");
		stats_count_refused(SR_BAD_ADDRESS, 1);
		goto out;
	}
	buf_appends(&user, local.ptr);
	if (s->ns.virtdomains && domain.len)
		buf_printf(&user, "@%s", domain.ptr);
	/* the move record and the user's row in one read of users.db */
	struct store_move m;
	int ex = store_move_rcpt(s->st, user.ptr, &m, &err);
	if (ex >= 0 && m.state != STORE_MOVE_NONE) {
		lmtpd_rcpt_refuse_moved(s, path, &m);
		goto out;
	}
	if (ex > 0 && userid_validate(user.ptr, s->ns.virtdomains, &err) < 0)
		ex = 0;
	if (ex < 0) {
		log_err("event=rcpt_fail session=%s rcpt=%s error=\"%s\"", s->env->session_id, path, err.msg);
		reply(s, 451, "4.3.0", "Temporary failure looking up the recipient");
		stats_count_refused(SR_TEMPORARY, 1);
		goto out;
	}
	if (ex == 0) {
		char q[LOGQ_MAX];
		log_notice("event=rcpt_rejected session=%s rcpt=%s code=550 status=5.1.1 reason=no_such_user",
			   s->env->session_id, logq(q, path));
		reply(s, 550, "5.1.1", "No such user");
		stats_count_refused(SR_NO_SUCH_USER, 1);
		goto out;
	}
	struct store_mailbox_info mi = { 0 };
	int have_folder = detail.len && mboxname_user_folder(&s->ns, user.ptr, detail.ptr, mailbox, &err) == 0 &&
			  store_mailbox_get(s->st, mailbox->ptr, &mi, &err) == 0 && (!mi.mboxtype || !*mi.mboxtype);
	if (have_folder && !store_acl_grants_post(mi.acl, buf_cstr(&s->from))) {
		char q[LOGQ_MAX];
		log_info("event=rcpt_folder_refused session=%s rcpt=%s mailbox=%s reason=acl_no_post action=inbox",
			 s->env->session_id, path, logq(q, mailbox->ptr));
		have_folder = 0;
	}
	store_mailbox_info_free(&mi);
	if (!have_folder) {
		/* no such folder (or not a mail folder, like #sieve): the INBOX */
		if (mboxname_user_inbox(user.ptr, mailbox, &err) < 0) {
			reply(s, 550, "5.1.1", "No such user");
			stats_count_refused(SR_NO_SUCH_USER, 1);
			goto out;
		}
	}
	rc = 0;
out:
	buf_free(&local);
	buf_free(&detail);
	buf_free(&domain);
	buf_free(&user);
	return rc;
}

static void rcpt_result(struct lmtp_session *s, const struct rcpt *r, const struct terr *e, uint32_t uid,
			size_t size)
{
	char q[LOGQ_MAX];
	if (uid) {
		reply(s, 250, "2.1.5", "Delivered");
		s->delivered++;
		stats_count_delivered(1);
		log_info("event=deliver session=%s rcpt=%s mailbox=%s uid=%u size=%zu", s->env->session_id,
			 r->address, logq(q, r->mailbox), uid, size);
		return;
	}
	log_warn("event=deliver_fail session=%s rcpt=%s mailbox=%s code=%s error=\"%s\"", s->env->session_id,
		 r->address, logq(q, r->mailbox), terr_code_name(e->code), e->msg);
	if (e->code == TE_BUSY) {
		/* the user was locked for a move between RCPT and DATA */
		struct buf owner = BUF_INIT;
		struct terr e2 = { 0 };
		int moving = mboxname_owner(r->mailbox, &owner, &e2) == 1 &&
			     lmtpd_rcpt_moving(s, r->address, owner.ptr);
		buf_free(&owner);
		if (moving)
			return;
	}
	stats_count_refused(e->code == TE_OVERQUOTA ? SR_OVER_QUOTA : e->code == TE_NOSPACE ? SR_NO_SPACE :
			    e->code == TE_TOOBIG ? SR_TOO_BIG : e->code == TE_NOTFOUND ? SR_NO_SUCH_USER : SR_TEMPORARY, 1);
	switch (e->code) {
	case TE_OVERQUOTA:
		if (s->overquota_perm)
			reply(s, 552, "5.2.2", "Mailbox is over quota");
		else
			reply(s, 452, "4.2.2", "Mailbox is over quota");
		break;
	case TE_NOSPACE:
		reply(s, 452, "4.3.1", "Insufficient system storage");
		break;
	case TE_TOOBIG:
		reply(s, 552, "5.3.4", "Message too big");
		break;
	case TE_NOTFOUND:
		reply(s, 550, "5.1.1", "No such mailbox");
		break;
	default:
		reply(s, 451, "4.3.0", "Temporary failure, try again later");
		break;
	}
}

/* Reads the message after "354"; returns 0, or -1 if the connection is
 * gone. Leaves pipelined bytes after the final dot in s->in. */
static int do_data(struct lmtp_session *s)
{
	conn_puts(s->c, "354 Go ahead, end with <CRLF>.<CRLF>\r\n");
	struct terr err = { 0 };
	if (conn_flush(s->c, &err) < 0)
		return -1;
	struct buf msg = BUF_INIT;
	/* Return-Path first, as a delivery agent adds it (RFC 5321 4.4). */
	buf_printf(&msg, "Return-Path: <%s>\r\n", buf_cstr(&s->from));
	size_t head = msg.len;
	struct lmtp_data d;
	lmtp_data_init(&d, (size_t)s->maxsize);
	int done = 0;
	while (!done) {
		size_t used = 0;
		if (s->in.len) {
			done = lmtp_data_feed(&d, s->in.ptr, s->in.len, &used, &msg);
			buf_consume(&s->in, used);
			if (done)
				break;
		}
		ssize_t n = conn_read(s->c, &s->in, LMTP_IDLE_TIMEOUT * 1000, &err);
		if (n <= 0) {
			log_warn("event=data_abort session=%s bytes=%zu error=\"%s\"", s->env->session_id, d.size,
				 n == 0 ? "connection closed" : err.msg);
			buf_free(&msg);
			return -1;
		}
	}
	if (d.toobig) {
		for (size_t i = 0; i < s->nrcpts; i++)
			reply(s, 552, "5.3.4", "Message too big");
		stats_count_refused(SR_TOO_BIG, s->nrcpts);
		log_warn("event=deliver_fail session=%s reason=toobig size=%zu limit=%lld", s->env->session_id, d.size,
			 s->maxsize);
	} else if (msg.len == head) {
		for (size_t i = 0; i < s->nrcpts; i++)
			reply(s, 554, "5.6.0", "Empty message");
		stats_count_refused(SR_EMPTY, s->nrcpts);
	} else {
		const char **names = xcalloc(s->nrcpts, sizeof *names);
		uint32_t *uids = xcalloc(s->nrcpts, sizeof *uids);
		struct terr *errs = xcalloc(s->nrcpts, sizeof *errs);
		for (size_t i = 0; i < s->nrcpts; i++)
			names[i] = s->rcpts[i].mailbox;
		struct store_append_opts ao = { 0, NULL, (int64_t)time(NULL) };
		uint64_t t0 = fs_now_ns();
		store_deliver(s->st, names, s->nrcpts, msg.ptr, msg.len, &ao, uids, errs, &err);
		stats_observe(SH_DELIVERY, fs_now_ns() - t0);
		for (size_t i = 0; i < s->nrcpts; i++)
			rcpt_result(s, &s->rcpts[i], &errs[i], uids[i], msg.len);
		free(names);
		free(uids);
		free(errs);
	}
	buf_free(&msg);
	reset_tx(s);
	return 0;
}

/* Handles one command line. Returns 1 to go on, 0 to end the session. */
static int do_command(struct lmtp_session *s, const char *line, size_t len)
{
	struct lmtp_cmd cmd = { 0 };
	struct lmtp_reply r;
	int go_on = 1;
	if (lmtp_parse(line, len, &cmd, &r) < 0) {
		reply(s, r.code, r.status, r.text);
		s->bad++;
		goto out;
	}
	if (s->state == L_GREET && cmd.verb != LMTP_LHLO && cmd.verb != LMTP_QUIT && cmd.verb != LMTP_NOOP &&
	    cmd.verb != LMTP_RSET && cmd.verb != LMTP_HELP) {
		reply(s, 503, "5.5.1", "Send LHLO first");
		s->bad++;
		goto out;
	}
	s->bad = 0;
	switch (cmd.verb) {
	case LMTP_LHLO:
		do_lhlo(s);
		break;
	case LMTP_MAIL:
		if (s->state != L_READY) {
			reply(s, 503, "5.5.1", "Nested MAIL command");
			break;
		}
		if (cmd.size >= 0 && cmd.size > s->maxsize) {
			reply(s, 552, "5.3.4", "Message size exceeds the limit");
			break;
		}
		buf_reset(&s->from);
		buf_append(&s->from, cmd.arg.ptr ? cmd.arg.ptr : "", cmd.arg.len);
		s->state = L_MAIL;
		reply(s, 250, "2.1.0", "Ok");
		break;
	case LMTP_RCPT: {
		if (s->state != L_MAIL && s->state != L_RCPT) {
			reply(s, 503, "5.5.1", "Need MAIL before RCPT");
			break;
		}
		if (s->nrcpts >= LMTP_MAX_RCPTS) {
			reply(s, 452, "4.5.3", "Too many recipients");
			stats_count_refused(SR_TOO_MANY_RCPTS, 1);
			break;
		}
		if (server_role_refuses_writes(s->env->conf)) {
			/* a replica (server_role.c): the MTA retries, at the master */
			reply(s, 451, "4.3.0", "This server is a replica; deliver to the master");
			stats_count_refused(SR_REPLICA, 1);
			log_info("event=rcpt_refused session=%s rcpt=%s reason=replica", s->env->session_id, cmd.arg.ptr);
			break;
		}
		struct buf mb = BUF_INIT;
		if (resolve_rcpt(s, cmd.arg.ptr, &mb) == 0) {
			s->rcpts = xrealloc(s->rcpts, (s->nrcpts + 1) * sizeof *s->rcpts);
			s->rcpts[s->nrcpts].address = xstrdup(cmd.arg.ptr);
			s->rcpts[s->nrcpts].mailbox = buf_release(&mb);
			s->nrcpts++;
			s->state = L_RCPT;
			reply(s, 250, "2.1.5", "Ok");
		}
		buf_free(&mb);
		break;
	}
	case LMTP_DATA:
		if (s->state != L_RCPT) {
			reply(s, 503, "5.5.1", s->state == L_MAIL ? "No valid recipients" : "Need MAIL and RCPT first");
			break;
		}
		if (do_data(s) < 0)
			go_on = 0;
		break;
	case LMTP_RSET:
		reset_tx(s);
		reply(s, 250, "2.0.0", "Ok");
		break;
	case LMTP_NOOP:
		reply(s, 250, "2.0.0", "Ok");
		break;
	case LMTP_QUIT:
		reply(s, 221, "2.0.0", "Bye");
		s->clean = 1;
		go_on = 0;
		break;
	case LMTP_VRFY:
		reply(s, 252, "2.5.2", "Cannot VRFY user");
		break;
	case LMTP_HELP:
		reply(s, 214, "2.0.0", "See RFC 2033");
		break;
	case LMTP_STARTTLS: {
		struct terr err = { 0 };
		if (!s->env->tls || conn_is_tls(s->c)) {
			reply(s, 454, "4.7.0", "TLS not available");
			break;
		}
		if (s->in.len) {
			/* bytes pipelined after STARTTLS were not protected */
			reply(s, 554, "5.5.1", "Command pipelined after STARTTLS");
			go_on = 0;
			break;
		}
		reply(s, 220, "2.0.0", "Ready to start TLS");
		if (conn_flush(s->c, &err) < 0 || conn_tls_server(s->c, s->env->tls, &err) < 0) {
			log_warn("event=starttls_fail session=%s error=\"%s\"", s->env->session_id, err.msg);
			go_on = 0;
			break;
		}
		reset_tx(s);
		s->state = L_GREET;	/* RFC 3207: forget everything, LHLO again */
		break;
	}
	}
out:
	lmtp_cmd_free(&cmd);
	if (s->bad >= LMTP_MAX_BAD_COMMANDS) {
		reply(s, 421, "4.7.0", "Too many bad commands, closing");
		go_on = 0;
	}
	return go_on;
}

int lmtpd_session(const struct service_env *env, struct conn *c)
{
	struct lmtp_session s = { 0 };
	s.env = env;
	s.c = c;
	struct terr err = { 0 };
	if (env->implicit_tls && conn_tls_server(c, env->tls, &err) < 0) {
		log_warn("event=tls_fail session=%s peer=%s error=\"%s\"", env->session_id, env->peer, err.msg);
		return 1;
	}
	if (server_open_store(env->conf, &s.st, &s.log, &s.ns, &err) < 0) {
		log_err("event=store_fail session=%s error=\"%s\"", env->session_id, err.msg);
		conn_puts(c, "421 4.3.0 Service not available\r\n");
		conn_flush(c, &err);
		return 1;
	}
	mallopt(M_TRIM_THRESHOLD, LMTP_HEAP_KEEP);	/* no brk shrink and regrow per message */
	s.maxsize = conf_int(env->conf, "maxmessagesize");
	if (s.maxsize <= 0)
		s.maxsize = MAX_MESSAGE_SIZE;
	s.downcase = conf_bool(env->conf, "lmtp_downcase_rcpt");
	s.overquota_perm = conf_bool(env->conf, "lmtp_over_quota_perm_failure");
	s.idle_ms = conf_duration_ms(env->conf, "preauth_timeout");
	if (s.idle_ms <= 0 || s.idle_ms > PREAUTH_TIMEOUT_MAX * 1000LL)
		s.idle_ms = PREAUTH_TIMEOUT_MAX * 1000LL;
	log_info("event=connect service=lmtp session=%s peer=%s", env->session_id, env->peer);
	conn_printf(c, "220 %s LMTP tandem ready\r\n", conf_str(env->conf, "servername"));
	int go_on = 1;
	while (go_on) {
		size_t linelen, used;
		int t = lmtp_take_line(s.in.ptr ? s.in.ptr : "", s.in.len, &linelen, &used);
		if (t == LMTP_LINE_OK) {
			char *line = xmemdup(s.in.ptr, linelen + 1);
			line[linelen] = '\0';
			buf_consume(&s.in, used);
			go_on = do_command(&s, line, linelen);
			free(line);
			continue;
		}
		if (t == LMTP_LINE_TOOLONG) {
			const char *nl = memchr(s.in.ptr, '\n', s.in.len);
			buf_consume(&s.in, nl ? (size_t)(nl - s.in.ptr) + 1 : s.in.len);
			if (!nl) {
				/* skip to the end of the line before answering */
				int eol = 0;
				while (!eol) {
					if (conn_read(c, &s.in, (int)s.idle_ms, &err) <= 0) {
						go_on = 0;
						break;
					}
					nl = memchr(s.in.ptr, '\n', s.in.len);
					buf_consume(&s.in, nl ? (size_t)(nl - s.in.ptr) + 1 : s.in.len);
					eol = nl != NULL;
				}
			}
			reply(&s, 500, "5.5.2", "Line too long");
			if (++s.bad >= LMTP_MAX_BAD_COMMANDS)
				go_on = 0;
			continue;
		}
		/* need more input: flush the replies of what we have done */
		if (conn_flush(c, &err) < 0)
			break;
		if (server_stop_requested) {
			reply(&s, 421, "4.3.2", "Server shutting down");
			break;
		}
		ssize_t n = server_idle_read(c, &s.in, s.idle_ms, &err);
		if (n == 0) {
			s.clean = 1;
			break;
		}
		if (n < 0) {
			if (err.code == TE_BUSY && server_stop_requested)
				reply(&s, 421, "4.3.2", "Server shutting down");
			else if (err.code == TE_BUSY)
			{
				reply(&s, 421, "4.4.2", "Idle timeout, closing");
				log_info("event=idle_timeout service=lmtp session=%s peer=%s idle_ms=%lld", env->session_id,
					 env->peer, s.idle_ms);
			}
			break;
		}
	}
	conn_flush(c, &err);
	log_info("event=disconnect service=lmtp session=%s delivered=%lu", env->session_id, s.delivered);
	reset_tx(&s);
	buf_free(&s.in);
	buf_free(&s.from);
	store_close(&s.st);
	chlog_close(&s.log);
	/* its process may serve the next connection only after a clean end
	 * (server_reuse_check has the rest) */
	return s.clean ? 0 : SERVER_SESSION_LAST;
}
