/* cmd_auth.c: STARTTLS, LOGIN, AUTHENTICATE PLAIN (RFC 4616) and LOGIN
 * (draft-murchison-sasl-login, as Cyrus offers it), both with SASL-IR
 * (RFC 4959), and UNAUTHENTICATE (RFC 8437).
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
#include "server/server.h"
#include "server/server_authcache.h"
#include "store/store.h"
#include "syncs/syncs.h"

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

/* OK [CAPABILITY ...] text: the capabilities of the state just entered. */
static void ok_with_capabilities(struct imapd_session *s, const char *text)
{
	struct buf caps = BUF_INIT, code = BUF_INIT;
	imapd_capabilities(s, &caps);
	buf_printf(&code, "CAPABILITY %s", caps.ptr);
	imapd_ok(s, code.ptr, "%s", text);
	buf_free(&caps);
	buf_free(&code);
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
	ok_with_capabilities(s, "Logged in");
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

/* Sends the continuation "+ <challenge>" (base64, may be empty) and reads
 * the client's SASL response: 0 with the line in *out, 1 when the client
 * cancelled ("*") or sent a bad line (BAD set), -1 when the connection
 * ended. */
static int read_response(struct imapd_session *s, const char *challenge, struct buf *out)
{
	imapd_printf(s, "+ %s\r\n", challenge);
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

/* One base64 field of the LOGIN mechanism into *out (decoded): 0, 1 when
 * the client cancelled or sent bad base64 (BAD set), -1 when the
 * connection ended. A field with a NUL is refused (PLAIN's separator:
 * no user name or password has one). */
static int login_field(struct imapd_session *s, const char *ir, const char *challenge, struct buf *out)
{
	struct buf b64 = BUF_INIT;
	int r = 0;
	if (ir) {
		if (strcmp(ir, "=") != 0)
			buf_appends(&b64, ir);
	} else {
		r = read_response(s, challenge, &b64);
	}
	if (r == 0 && (base64_decode_strict(b64.ptr ? b64.ptr : "", b64.len, out) < 0 ||
		       (out->len && memchr(out->ptr, '\0', out->len)))) {
		imapd_bad(s, NULL, "Malformed LOGIN response");
		r = 1;
	}
	buf_free(&b64);
	return r;
}

/* AUTHENTICATE LOGIN: the user name (the initial response, or after the
 * challenge "Username:"), then the password after "Password:". No
 * authorization identity: the user logs in as itself. */
static int auth_login(struct imapd_session *s, const struct imap_cmd *cmd)
{
	struct buf user = BUF_INIT, pass = BUF_INIT;
	const char *ir = cmd->u.authenticate.ir;
	cmd = NULL;	/* the parser moves on at the first read */
	int r = login_field(s, ir, "VXNlcm5hbWU6", &user);
	if (r == 0)
		r = login_field(s, NULL, "UGFzc3dvcmQ6", &pass);
	int rc = r < 0 ? -1 : 0;
	if (r == 0) {
		const char *u = buf_cstr(&user);
		int ok = check(s, u, buf_cstr(&pass));
		if (ok == 1)
			succeed(s, "sasl_login", u, u);
		else if (ok == 0)
			fail(s, "sasl_login", u, "bad_credentials");
	}
	buf_free(&user);
	/* the password was in here */
	if (pass.ptr)
		memset(pass.ptr, 0, pass.cap);
	buf_free(&pass);
	return rc;
}

int imapd_cmd_authenticate(struct imapd_session *s, const struct imap_cmd *cmd)
{
	int login = !strcmp(cmd->u.authenticate.mech, "LOGIN");
	if (!login && strcmp(cmd->u.authenticate.mech, "PLAIN") != 0) {
		imapd_no(s, NULL, "Unsupported authentication mechanism");
		return 0;
	}
	if (!plaintext_ok(s)) {
		imapd_no(s, "PRIVACYREQUIRED", "Plaintext authentication is not allowed without TLS");
		return 0;
	}
	if (login)
		return auth_login(s, cmd);
	struct buf b64 = BUF_INIT, dec = BUF_INIT;
	int rc = 0;
	if (cmd->u.authenticate.ir) {
		if (strcmp(cmd->u.authenticate.ir, "=") != 0)
			buf_appends(&b64, cmd->u.authenticate.ir);
	} else {
		int r = read_response(s, "", &b64);
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

/* RFC 8437: back to the not-authenticated state on the same connection
 * (TLS and COMPRESS stay): the selected mailbox is closed without an
 * expunge, ENABLEd extensions and the replication engine are dropped,
 * and the login deadline and limits of a fresh connection apply again.
 * Failed logins counted so far still count (guessing does not get
 * cheaper by logging in and out in between). */
int imapd_cmd_unauthenticate(struct imapd_session *s, const struct imap_cmd *cmd)
{
	(void)cmd;
	char q[LOGQ_MAX];
	log_info("event=unauthenticate session=%s user=%s", s->env->session_id, logq(q, s->user));
	imapd_view_free(&s->sel);
	imapd_loaded_clear(&s->cur);
	if (s->sync)
		s->replicated = 1;
	syncs_imap_free(&s->sync);
	buf_free(&s->appendmsg);
	x_free(&s->user);
	x_free(&s->authid);
	s->isadmin = 0;
	s->condstore = 0;
	s->qresync = 0;
	s->bad = 0;
	s->move_stamp = (struct store_move_stamp){ 0 };
	s->auth_cache_how = NULL;
	imap_parser_set_mode(s->p, IMAP_MODE_PREAUTH);
	server_preauth_arm(s->preauth_ms);
	ok_with_capabilities(s, "Not authenticated any more");
	return 0;
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
