/* session.c: one IMAP session: setup, the read/parse/dispatch loop,
 * output, timeouts and the end of the session.
 *
 * The loop feeds every byte read to the I/O-free parser (src/proto/imap)
 * and acts on its events: COMMAND goes to the dispatcher (commands.c),
 * CONTINUE gets "+ go ahead", DATA (APPEND's message) is gathered in
 * s->appendmsg, ERROR gets the parser's BAD/NO. Replies to pipelined
 * commands are queued and sent when the input is used up. Commands that
 * talk with the client in the middle (IDLE, AUTHENTICATE) read their
 * next event through imapd_next_event() too.
 */
#include "imapd/imapd-private.h"

#include "chlog/chlog.h"
#include "conf/conf.h"
#include "lib/fsutil.h"
#include "lib/limits.h"
#include "lib/log.h"
#include "lib/xalloc.h"
#include "proto/imap/imap_write.h"
#include "proto/mime/mime.h"
#include "store/store.h"
#include "syncs/syncs.h"

#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

size_t imapd_unparsed(const struct imapd_session *s)
{
	return s->in.len - s->inpos;
}

int imapd_next_event(struct imapd_session *s, int timeout_ms)
{
	long long waited = 0;
	struct terr err = { 0 };
	for (;;) {
		if (s->dead)
			return IMAPD_EV_CLOSED;
		if (s->feed_again || s->inpos < s->in.len) {
			size_t n = 0;
			const char *data = s->in.ptr ? s->in.ptr + s->inpos : "";
			int ev = imap_parser_feed(s->p, data, s->in.len - s->inpos, &n);
			s->inpos += n;
			if (ev != IMAP_NEED_MORE) {
				s->feed_again = 1;
				return ev;
			}
			s->feed_again = 0;
		}
		buf_reset(&s->in);
		s->inpos = 0;
		if (imapd_flush(s) < 0)
			return IMAPD_EV_CLOSED;
		if (timeout_ms >= 0 && waited >= timeout_ms)
			return IMAPD_EV_TIMEOUT;
		if (server_stop_requested)
			return IMAPD_EV_STOP;
		if (imapd_moving_bye(s))
			return IMAPD_EV_CLOSED;
		int slice = IMAPD_READ_SLICE_MS;
		if (timeout_ms >= 0 && timeout_ms - waited < slice)
			slice = (int)(timeout_ms - waited);
		ssize_t r = conn_read(s->c, &s->in, slice, &err);
		if (r == 0)
			return IMAPD_EV_CLOSED;
		if (r < 0) {
			if (err.code == TE_BUSY) {
				waited += slice;
				continue;
			}
			log_info("event=read_fail session=%s error=\"%s\"", s->env->session_id, err.msg);
			s->dead = 1;
			return IMAPD_EV_CLOSED;
		}
	}
}

void imapd_printf(struct imapd_session *s, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	buf_vprintf(&s->out, fmt, ap);
	va_end(ap);
}

int imapd_flush(struct imapd_session *s)
{
	struct terr err = { 0 };
	if (s->dead)
		return -1;
	if (!s->out.len)
		return 0;
	conn_write(s->c, s->out.ptr, s->out.len);
	buf_reset(&s->out);
	if (conn_flush(s->c, &err) < 0) {
		log_info("event=write_fail session=%s error=\"%s\"", s->env->session_id, err.msg);
		s->dead = 1;
		return -1;
	}
	return 0;
}

void imapd_maybe_flush(struct imapd_session *s)
{
	if (s->out.len >= IMAPD_FLUSH_BYTES)
		imapd_flush(s);
}

static void set_result(struct imapd_session *s, const char *resp, const char *code, const char *fmt, va_list ap)
{
	s->res.resp = resp;
	buf_reset(&s->res.code);
	buf_reset(&s->res.text);
	if (code)
		buf_appends(&s->res.code, code);
	buf_vprintf(&s->res.text, fmt, ap);
}

void imapd_ok(struct imapd_session *s, const char *code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	set_result(s, "OK", code, fmt, ap);
	va_end(ap);
}

void imapd_no(struct imapd_session *s, const char *code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	set_result(s, "NO", code, fmt, ap);
	va_end(ap);
}

void imapd_bad(struct imapd_session *s, const char *code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	set_result(s, "BAD", code, fmt, ap);
	va_end(ap);
}

void imapd_no_err(struct imapd_session *s, const char *what, const struct terr *err)
{
	const char *code = "SERVERBUG", *text = "Internal error; the server log has the details";
	switch (err->code) {
	case TE_NOTFOUND:
		code = "NONEXISTENT";
		text = "No such mailbox or message";
		break;
	case TE_EXISTS:
		code = "ALREADYEXISTS";
		text = "Mailbox already exists";
		break;
	case TE_OVERQUOTA:
		code = "OVERQUOTA";
		text = "Quota exceeded";
		break;
	case TE_TOOBIG:
		code = "TOOBIG";
		text = "Message too big";
		break;
	case TE_NOSPACE:
	case TE_IO:
	case TE_BUSY:
		code = "UNAVAILABLE";
		text = "Temporary failure, try again later";
		break;
	case TE_PERM:
		code = "NOPERM";
		text = "Permission denied";
		break;
	case TE_INVALID:
		code = "CANNOT";
		text = "Operation not possible";
		break;
	default:
		break;
	}
	char q[LOGQ_MAX];
	log_msg(err->code == TE_NOTFOUND || err->code == TE_EXISTS || err->code == TE_INVALID ? LOG_LVL_INFO :
		LOG_LVL_WARN, "event=command_fail session=%s user=%s what=%s code=%s error=%s", s->env->session_id,
		s->user ? s->user : "-", what, terr_code_name(err->code), logq(q, err->msg));
	imapd_no(s, code, "%s", text);
}

void imapd_log_event(struct imapd_session *s, const char *event, const char *mailbox, const char *fmt, ...)
{
	struct buf extra = BUF_INIT;
	va_list ap;
	va_start(ap, fmt);
	buf_vprintf(&extra, fmt, ap);
	va_end(ap);
	char qu[LOGQ_MAX], qm[LOGQ_MAX];
	log_info("event=%s session=%s user=%s mailbox=%s%s%s", event, s->env->session_id, logq(qu, s->user),
		 logq(qm, mailbox), extra.len ? " " : "", buf_cstr(&extra));
	buf_free(&extra);
}

void imapd_loaded_clear(struct imapd_loaded *l)
{
	mime_message_free(&l->mime);
	buf_free(&l->data);
	x_free(&l->mailbox);
	l->uid = 0;
	l->ok = 0;
	l->header_only = 0;
}

static void configure(struct imapd_session *s)
{
	const struct conf *cf = s->env->conf;
	s->allowplaintext = conf_bool(cf, "allowplaintext");
	s->failpause_ms = conf_duration_ms(cf, "failedloginpause");
	s->preauth_ms = conf_duration_ms(cf, "preauth_timeout");
	if (s->preauth_ms <= 0 || s->preauth_ms > IMAP_PREAUTH_TIMEOUT * 1000LL)
		s->preauth_ms = IMAP_PREAUTH_TIMEOUT * 1000LL;
	s->timeout_ms = conf_int(cf, "timeout") * 60 * 1000;
	if (s->timeout_ms < (long long)IMAP_IDLE_TIMEOUT * 1000)
		s->timeout_ms = (long long)IMAP_IDLE_TIMEOUT * 1000;
	s->maxmsg = conf_int(cf, "maxmessagesize");
	if (s->maxmsg <= 0 || s->maxmsg > MAX_MESSAGE_SIZE)
		s->maxmsg = MAX_MESSAGE_SIZE;
	s->servername = conf_str(cf, "servername");
	if (!s->servername || !*s->servername)
		s->servername = "tandem";
}

long long imapd_preauth_left_ms(const struct imapd_session *s)
{
	/* tandemd arms a deadline from the connect (server_preauth_arm): a
	 * client that keeps sending NOOP does not stay unauthenticated
	 * longer; without one (tests driving a session) an idle timeout */
	long long left = server_preauth_left_ms();
	return left >= 0 ? left : s->preauth_ms;
}

static void session_free(struct imapd_session *s)
{
	/* the client's bytes (a LOGIN's password among them): the process
	 * may serve another client next (maxuse) */
	if (s->in.ptr)
		OPENSSL_cleanse(s->in.ptr, s->in.cap);
	imapd_view_free(&s->sel);
	imapd_loaded_clear(&s->cur);
	syncs_imap_free(&s->sync);
	imap_parser_free(&s->p);
	buf_free(&s->in);
	buf_free(&s->out);
	buf_free(&s->appendmsg);
	buf_free(&s->res.code);
	buf_free(&s->res.text);
	x_free(&s->user);
	x_free(&s->authid);
	store_close(&s->st);
	chlog_close(&s->log);
}

/* A literal announced with {N}: go ahead, unless it is APPEND's message
 * for a mailbox that cannot take it (then NO before the client sends
 * megabytes). */
static void on_continue(struct imapd_session *s)
{
	const struct imap_pending *pd = imap_parser_pending(s->p);
	if (pd && pd->is_message && s->user && pd->args && imap_arg_is_string(pd->args)) {
		struct buf name = BUF_INIT;
		struct store_mailbox_info mi = { 0 };
		struct terr err = { 0 };
		int ok = imapd_name_in(s, pd->args->str, &name) == 0 && store_mailbox_get(s->st, name.ptr, &mi, &err) == 0;
		store_mailbox_info_free(&mi);
		buf_free(&name);
		if (!ok) {
			imap_parser_reject_literal(s->p);
			imap_write_tagged(&s->out, pd->tag, "NO", "TRYCREATE", "Mailbox does not exist");
			return;
		}
	}
	buf_appends(&s->out, "+ go ahead\r\n");
}

/* Handles one parser event of the main loop; 0 to go on, -1 to end. */
static int on_event(struct imapd_session *s, int ev)
{
	switch (ev) {
	case IMAP_COMMAND: {
		const struct imap_cmd *cmd = imap_parser_command(s->p);
		int logout = cmd && cmd->id == IMAP_CMD_LOGOUT;
		int r = imapd_dispatch(s, cmd);
		buf_reset(&s->appendmsg);
		s->data_overflow = 0;
		s->sync_file_left = 0;
		if (r != 0) {
			s->logged_out = logout && r > 0;
			return -1;
		}
		break;
	}
	case IMAP_CONTINUE:
		on_continue(s);
		break;
	case IMAP_DATA: {
		const void *d;
		size_t n;
		enum imap_data_kind kind = imap_parser_data(s->p, &d, &n);
		if (kind == IMAP_DATA_MESSAGE)
			buf_append(&s->appendmsg, d, n);
		else if (kind == IMAP_DATA_SYNC_FILE && s->isadmin && !s->data_overflow) {
			/* a message body of SYNCAPPLY: streamed to a staging file
			 * (never held in memory; the command keeps its header) */
			struct terr err = { 0 };
			if (!s->sync && !(s->sync = syncs_imap_new(s->env, s->c, s->user, &err))) {
				log_warn("event=sync_open_fail session=%s error=\"%s\"", s->env->session_id, err.msg);
				s->data_overflow = 1;	/* the command gets NO */
				buf_free(&s->appendmsg);
			} else {
				syncs_imap_file(s->sync, s->appendmsg.ptr ? s->appendmsg.ptr : "", s->appendmsg.len, d, n,
						&s->sync_file_left);
			}
		} else if (s->isadmin && !s->data_overflow) {
			/* replication commands are for admins only: others' bytes
			 * are dropped, and the command gets BAD */
			if (s->appendmsg.len + n > DLIST_MAX_COMMAND_BYTES) {
				s->data_overflow = 1;
				buf_free(&s->appendmsg);
			} else {
				buf_append(&s->appendmsg, d, n);
			}
		}
		break;
	}
	case IMAP_ERROR: {
		const struct imap_error *e = imap_parser_error(s->p);
		imap_write_error(&s->out, e);
		buf_reset(&s->appendmsg);
		s->data_overflow = 0;
		s->sync_file_left = 0;
		if (s->sync)
			syncs_imap_files_drop(s->sync);
		s->bad++;
		if (e->fatal)
			return -1;
		break;
	}
	default:
		/* DONE or LINE without IDLE/SASL asking: the parser never does */
		break;
	}
	int limit = s->user ? IMAP_MAX_BAD_COMMANDS : IMAP_PREAUTH_MAX_BAD_COMMANDS;
	if (s->bad >= limit || (!s->user && s->authfails >= AUTH_MAX_FAILS)) {
		imapd_printf(s, "* BYE Too many bad commands\r\n");
		log_info("event=disconnect_bad session=%s user=%s bad=%d authfails=%d", s->env->session_id,
			 s->user ? s->user : "-", s->bad, s->authfails);
		return -1;
	}
	return 0;
}

int imapd_session(const struct service_env *env, struct conn *c)
{
	struct imapd_session s;
	memset(&s, 0, sizeof s);
	s.env = env;
	s.c = c;
	struct terr err = { 0 };
	if (env->implicit_tls && (!env->tls || conn_tls_server(c, env->tls, &err) < 0)) {
		log_warn("event=tls_fail session=%s peer=%s error=\"%s\"", env->session_id, env->peer,
			 env->tls ? err.msg : "no certificate");
		return 1;
	}
	if (server_open_store(env->conf, &s.st, &s.log, &s.ns, &err) < 0) {
		log_err("event=store_fail session=%s error=\"%s\"", env->session_id, err.msg);
		conn_puts(c, "* BYE Service not available\r\n");
		conn_flush(c, &err);
		return 1;
	}
	configure(&s);
	s.p = imap_parser_new();
	imap_parser_set_max_message(s.p, (uint64_t)s.maxmsg);
	log_info("event=connect service=%s session=%s peer=%s", env->service, env->session_id, env->peer);
	struct buf caps = BUF_INIT;
	imapd_capabilities(&s, &caps);
	imapd_printf(&s, "* OK [CAPABILITY %s] %s tandem IMAP ready\r\n", caps.ptr, s.servername);
	buf_free(&caps);
	const char *why = "logout";
	for (;;) {
		int timeout = (int)(s.user ? s.timeout_ms : imapd_preauth_left_ms(&s));
		int ev = imapd_next_event(&s, timeout);
		if (ev == IMAPD_EV_CLOSED) {
			why = s.moved_out ? "user_moved" : s.dead ? "io_error" : "eof";
			break;
		}
		if (ev == IMAPD_EV_TIMEOUT) {
			imapd_printf(&s, "* BYE Autologout; idle for too long\r\n");
			why = "timeout";
			break;
		}
		if (ev == IMAPD_EV_STOP) {
			imapd_printf(&s, "* BYE Server shutting down\r\n");
			why = "shutdown";
			break;
		}
		if (on_event(&s, ev) < 0)
			break;
		if (server_stop_requested && imapd_unparsed(&s) == 0) {
			imapd_printf(&s, "* BYE Server shutting down\r\n");
			why = "shutdown";
			break;
		}
	}
	imapd_flush(&s);
	struct conn_stats cs;
	conn_get_stats(c, &cs);
	char q[LOGQ_MAX];
	log_info("event=disconnect service=%s session=%s user=%s reason=%s commands=%lu bytes_in=%llu bytes_out=%llu",
		 env->service, env->session_id, logq(q, s.user), why, s.ncommands, (unsigned long long)cs.wire_in,
		 (unsigned long long)cs.wire_out);
	/* its process may serve another connection only after a LOGOUT or
	 * the client's EOF between commands, and not after replication
	 * (server_reuse_check has the rest) */
	int clean = !s.dead && !s.moved_out && !s.sync && !s.replicated &&
		    (!strcmp(why, "eof") || (!strcmp(why, "logout") && s.logged_out));
	session_free(&s);
	return clean ? 0 : SERVER_SESSION_LAST;
}
