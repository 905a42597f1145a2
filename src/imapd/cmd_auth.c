/* cmd_auth.c: STARTTLS, LOGIN and AUTHENTICATE PLAIN (RFC 4616, with
 * SASL-IR, RFC 4959).
 *
 * Plaintext credentials are refused without TLS unless allowplaintext
 * is on. A failed login is logged and answered only after the pause
 * server_auth_failed sets (failedloginpause, doubled per recent failure
 * of the user or the client address, counted across every session of
 * tandemd); the AUTH_MAX_FAILS-th failure of a session ends it. PLAIN's authorization identity lets an admin act as another
 * user (the session then has that user's rights, not an admin's).
 * Passwords are checked by server_login_check: tandemd's cache of
 * verified logins first (server_authcache.h), the stored hash on a miss.
 */
#include "imapd/imapd-private.h"

#include "lib/base64.h"

#include "conf/conf.h"
#include "lib/limits.h"
#include "lib/log.h"
#include "lib/xalloc.h"
#include "proto/imap/imap_write.h"
#include "server/server_authcache.h"
#include "store/store.h"

#include <string.h>
#include <time.h>

static int plaintext_ok(const struct imapd_session *s)
{
	return conn_is_tls(s->c) || s->allowplaintext;
}

static int is_admin(const struct imapd_session *s, const char *userid)
{
	const char *const *v;
	size_t n = conf_list(s->env->conf, "admins", &v);
	for (size_t i = 0; i < n; i++)
		if (!strcmp(v[i], userid))
			return 1;
	return 0;
}

static void fail(struct imapd_session *s, const char *mech, const char *user, const char *reason)
{
	char q[LOGQ_MAX];
	log_notice("event=login_fail session=%s user=%s mech=%s peer=%s reason=%s tls=%d", s->env->session_id,
		   logq(q, user), mech, s->env->peer, reason, conn_is_tls(s->c));
	imapd_flush(s);
	int end = server_auth_failed(s->env, user, reason);
	imapd_no(s, "AUTHENTICATIONFAILED", "Authentication failed");
	s->authfails++;
	if (end && s->authfails < AUTH_MAX_FAILS)
		s->authfails = AUTH_MAX_FAILS;
}

static void succeed(struct imapd_session *s, const char *mech, const char *user, const char *authid)
{
	s->user = xstrdup(user);
	s->authid = xstrdup(authid);
	s->isadmin = !strcmp(user, authid) && is_admin(s, user);
	s->bad = 0;
	server_auth_succeeded(s->env, authid);
	imap_parser_set_mode(s->p, IMAP_MODE_AUTH);
	char q[LOGQ_MAX];
	struct buf extra = BUF_INIT;
	if (strcmp(user, authid))
		buf_printf(&extra, " authid=%s", logq(q, authid));
	imapd_log_event(s, "login", NULL, "mech=%s peer=%s tls=%d admin=%d auth_cache=%s%s", mech, s->env->peer,
			conn_is_tls(s->c), s->isadmin, s->auth_cache_how ? s->auth_cache_how : "off", buf_cstr(&extra));
	buf_free(&extra);
	struct buf caps = BUF_INIT, code = BUF_INIT;
	imapd_capabilities(s, &caps);
	buf_printf(&code, "CAPABILITY %s", caps.ptr);
	imapd_ok(s, code.ptr, "Logged in");
	buf_free(&caps);
	buf_free(&code);
}

/* 1 right, 0 wrong, -1 error (NO set). */
static int check(struct imapd_session *s, const char *user, const char *password)
{
	struct terr err = { 0 };
	if (!*user || strlen(user) > MAX_USERID || strlen(password) > MAX_PASSWORD ||
	    userid_validate(user, s->ns.virtdomains, &err) < 0)
		return 0;
	if (imapd_login_moving(s, user, password))
		return -1;
	int r = server_login_check(s->env, s->st, user, password, &s->auth_cache_how, &err);
	if (r < 0)
		imapd_no_err(s, "check_password", &err);
	return r;
}

int imapd_cmd_login(struct imapd_session *s, const struct imap_cmd *cmd)
{
	const char *user = cmd->u.login.user;
	if (!plaintext_ok(s)) {
		imapd_no(s, "PRIVACYREQUIRED", "Plaintext login is not allowed without TLS");
		return 0;
	}
	int r = check(s, user, cmd->u.login.password);
	if (r == 1)
		succeed(s, "login", user, user);
	else if (r == 0)
		fail(s, "login", user, "bad_credentials");
	return 0;
}

/* Reads the client's SASL response after "+ ": 0 with the line in
 * *out, 1 when the client cancelled ("*") or sent a bad line (BAD set),
 * -1 when the connection ended. */
static int read_response(struct imapd_session *s, struct buf *out)
{
	imapd_printf(s, "+ \r\n");
	imap_parser_expect(s->p, IMAP_EXPECT_LINE);
	int ev = imapd_next_event(s, (int)(s->user ? s->timeout_ms : imapd_preauth_left_ms(s)));
	if (ev == IMAP_LINE) {
		size_t len;
		const char *line = imap_parser_line(s->p, &len);
		if (len == 1 && line[0] == '*') {
			imapd_bad(s, NULL, "Authentication cancelled");
			return 1;
		}
		buf_append(out, line, len);
		return 0;
	}
	if (ev == IMAP_ERROR) {
		imapd_bad(s, NULL, "%s", imap_parser_error(s->p)->msg);
		return 1;
	}
	return -1;
}

int imapd_cmd_authenticate(struct imapd_session *s, const struct imap_cmd *cmd)
{
	if (strcmp(cmd->u.authenticate.mech, "PLAIN") != 0) {
		imapd_no(s, NULL, "Unsupported authentication mechanism");
		return 0;
	}
	if (!plaintext_ok(s)) {
		imapd_no(s, "PRIVACYREQUIRED", "Plaintext authentication is not allowed without TLS");
		return 0;
	}
	struct buf b64 = BUF_INIT, dec = BUF_INIT;
	int rc = 0;
	if (cmd->u.authenticate.ir) {
		if (strcmp(cmd->u.authenticate.ir, "=") != 0)
			buf_appends(&b64, cmd->u.authenticate.ir);
	} else {
		int r = read_response(s, &b64);
		cmd = NULL;	/* the parser moved on */
		if (r != 0) {
			rc = r < 0 ? -1 : 0;
			goto out;
		}
	}
	/* authzid NUL authcid NUL password */
	const char *z = NULL, *c = NULL, *p = NULL;
	if (base64_decode_strict(b64.ptr ? b64.ptr : "", b64.len, &dec) == 0 && dec.len) {
		const char *end = dec.ptr + dec.len;
		const char *n1 = memchr(dec.ptr, '\0', dec.len);
		const char *n2 = n1 ? memchr(n1 + 1, '\0', (size_t)(end - n1 - 1)) : NULL;
		if (n2 && !memchr(n2 + 1, '\0', (size_t)(end - n2 - 1))) {
			z = dec.ptr;
			c = n1 + 1;
			p = n2 + 1;
		}
	}
	if (!c) {
		imapd_bad(s, NULL, "Malformed PLAIN response");
		goto out;
	}
	if (!*z)
		z = c;
	int r = check(s, c, p);
	if (r < 0)
		goto out;
	if (r == 0) {
		fail(s, "plain", c, "bad_credentials");
		goto out;
	}
	if (strcmp(z, c) != 0) {
		struct terr err = { 0 };
		if (!is_admin(s, c)) {
			fail(s, "plain", c, "authz_not_admin");
			goto out;
		}
		if (userid_validate(z, s->ns.virtdomains, &err) < 0 || store_user_exists(s->st, z, &err) != 1) {
			fail(s, "plain", z, "authz_no_such_user");
			goto out;
		}
	}
	succeed(s, "plain", z, c);
out:
	buf_free(&b64);
	/* the password was in here */
	if (dec.ptr)
		memset(dec.ptr, 0, dec.len);
	buf_free(&dec);
	return rc;
}

int imapd_cmd_starttls(struct imapd_session *s, const struct imap_cmd *cmd)
{
	struct terr err = { 0 };
	if (!s->env->tls) {
		imapd_bad(s, NULL, "STARTTLS is not available");
		return 0;
	}
	if (conn_is_tls(s->c)) {
		imapd_bad(s, NULL, "TLS is already active");
		return 0;
	}
	if (imapd_unparsed(s) > 0) {
		/* bytes sent before the handshake were not protected */
		log_warn("event=starttls_pipelined session=%s peer=%s", s->env->session_id, s->env->peer);
		imapd_printf(s, "* BYE Commands pipelined after STARTTLS\r\n");
		return -1;
	}
	imap_write_tagged(&s->out, cmd->tag, "OK", NULL, "Begin TLS negotiation now");
	if (imapd_flush(s) < 0)
		return -1;
	if (conn_tls_server(s->c, s->env->tls, &err) < 0) {
		log_warn("event=starttls_fail session=%s peer=%s error=\"%s\"", s->env->session_id, s->env->peer, err.msg);
		return -1;
	}
	log_info("event=starttls session=%s", s->env->session_id);
	return 2;
}
