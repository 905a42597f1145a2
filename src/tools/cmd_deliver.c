/* cmd_deliver.c: tandem deliver: a local delivery, as an MTA's local
 * delivery agent runs it (one process per message).
 *
 * Two paths, one result:
 *  - LMTP (the default when a tandemd answers): as Cyrus's deliver is a
 *    client of lmtpd, the message goes to tandemd's LMTP service (its
 *    unix socket from lmtp_listen, else its TCP listener on the
 *    loopback). The delivery then shares tandemd's warm session
 *    processes and its group commit of the change log, and this process
 *    opens no store and initialises no OpenSSL: it reads the message,
 *    talks LMTP and prints tandemd's answers.
 *  - direct (deliver.h: deliver_direct.c in bin/tandem, an exec of
 *    bin/tandem in bin/tandem-deliver): the process opens the store and
 *    delivers through the store's delivery path (the one LMTP uses): the
 *    message is written once, made durable, and appended to each
 *    recipient's mailbox in its own transaction with its change-log
 *    lines. Taken with --direct,
 *    when no tandemd answers (a warning says so), and for what LMTP
 *    cannot say: --flags, --date, and USER+folder (filed into that
 *    folder whatever its ACL, as an administrator's tool does).
 * -m FOLDER (Cyrus's deliver) follows Cyrus's rule on both paths: the
 * folder when it exists and its ACL grants "p" to anyone, anonymous or
 * the envelope sender, else the INBOX. Either way the command returns
 * only after every recipient's copy is durable (LMTP's 250 comes after
 * it, store.h's rule). */
#include "tools/deliver.h"

#include "conf/conf.h"
#include "lib/limits.h"
#include "lib/log.h"
#include "lib/xalloc.h"
#include "net/net.h"
#include "server/server.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sysexits.h>
#include <unistd.h>

static const char usage[] =
	"usage: tandem deliver [--direct] [-m FOLDER] [-r|-f SENDER] [-d] [-C CONFIG] [--flags FLAGS]\n"
	"                      [--date EPOCH] USER[+folder]... < message\n"
	"\nDelivers the message on standard input to each recipient's INBOX. Bare LF line\n"
	"ends are stored as CRLF, as LMTP stores them. Prints one line per recipient.\n"
	"Exit status (sysexits, as an MTA reads it): 0 every recipient got the message;\n"
	"75 (EX_TEMPFAIL) a temporary failure, the MTA retries; 67 (EX_NOUSER) no such\n"
	"user; 65 (EX_DATAERR) the message was refused; 78 (EX_CONFIG) the configuration\n"
	"cannot be read; 2 usage.\n"
	"\nWhen tandemd answers on lmtp_listen (its unix socket, else its address on the\n"
	"loopback) the message goes to it over LMTP, which adds a Return-Path line;\n"
	"otherwise (or with --direct, --flags, --date or USER+folder) this process\n"
	"stores it itself ('-v' logs which path and why).\n"
	"\n  -m FOLDER     Cyrus's deliver -m: USER's FOLDER (with the hierarchy separator,\n"
	"                e.g. Lists.cyrus) when its ACL grants p to anyone, anonymous or\n"
	"                the sender, else the INBOX (LMTP's USER+FOLDER@ rule)\n"
	"  -r, -f SENDER the envelope sender: LMTP's MAIL FROM, a Return-Path line\n"
	"  -d            ignored (/bin/mail compatibility, as Cyrus's deliver)\n"
	"  -C CONFIG     the configuration file, here too (as Cyrus's deliver)\n"
	"  --direct      store the message from this process even when tandemd runs\n"
	"  USER+folder   that folder whatever its ACL (direct path)\n"
	"  --flags FLAGS initial flags, e.g. '\\Seen $Label1' (direct path)\n"
	"  --date EPOCH  internal date (direct path)\n"
	"\ntandem-deliver [-C CONFIG] [-v] OPTIONS USER... is this command linked with libc\n"
	"only, for an MTA (one process per message); it runs 'tandem deliver --direct'\n"
	"from its own directory when the message must be stored directly.\n";

/* Bare LF -> CRLF (stored messages use CRLF, as Cyrus's do): the runs
 * between line ends are copied whole. */
static void crlf_normalize(const struct buf *in, struct buf *out)
{
	buf_reserve(out, in->len + in->len / 32 + 2);
	size_t i = 0;
	while (i < in->len) {
		const char *nl = memchr(in->ptr + i, '\n', in->len - i);
		size_t end = nl ? (size_t)(nl - in->ptr) : in->len;
		buf_append(out, in->ptr + i, end - i);
		if (!nl)
			break;
		if (end == 0 || in->ptr[end - 1] != '\r')
			buf_putc(out, '\r');
		buf_putc(out, '\n');
		i = end + 1;
	}
}


/* ---- the LMTP path ------------------------------------------------------ */

/* The LMTP listener of the local tandemd: the first unix socket of
 * lmtp_listen, else its first TCP listener on the loopback or on every
 * address (connected to on the loopback). 0 when none. */
static int lmtp_local_addr(const struct conf *conf, struct buf *out)
{
	const char *const *items;
	size_t n = conf_list(conf, "lmtp_listen", &items);
	for (size_t i = 0; i < n; i++)
		if (items[i][0] == '/') {
			buf_appends(out, items[i]);
			return 1;
		}
	for (size_t i = 0; i < n; i++) {
		const char *a = items[i], *colon = strrchr(a, ':');
		if (!colon || !colon[1])
			continue;
		size_t hl = (size_t)(colon - a);
		const char *port = colon + 1;
		if ((hl == 1 && a[0] == '*') || (hl == 7 && !memcmp(a, "0.0.0.0", 7)))
			buf_printf(out, "127.0.0.1:%s", port);
		else if (hl == 4 && !memcmp(a, "[::]", 4))
			buf_printf(out, "[::1]:%s", port);
		else if ((hl > 4 && !memcmp(a, "127.", 4)) || (hl == 9 && !memcmp(a, "localhost", 9)) ||
			 (hl == 5 && !memcmp(a, "[::1]", 5)))
			buf_appends(out, a);
		else
			continue;
		return 1;
	}
	return 0;
}

/* "local+folder@domain" as an RFC 5321 path: a dot-atom local part, or a
 * quoted string when it holds other characters. -1 when LMTP cannot carry
 * the name (control or 8-bit bytes): the direct path then. */
static int lmtp_rcpt_path(const struct drcpt *r, struct buf *out)
{
	const char *at = strchr(r->user, '@');
	size_t ul = at ? (size_t)(at - r->user) : strlen(r->user);
	struct buf local = BUF_INIT;
	buf_append(&local, r->user, ul);
	if (*r->folder)
		buf_printf(&local, "+%s", r->folder);
	int quote = 0, rc = 0;
	for (size_t i = 0; i < local.len && rc == 0; i++) {
		unsigned char c = (unsigned char)local.ptr[i];
		if (c < 0x20 || c >= 0x7f)
			rc = -1;
		else if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
			   strchr("!#$%&'*+-/=?^_`{|}~.", c)))
			quote = 1;
	}
	if (local.len && (local.ptr[0] == '.' || local.ptr[local.len - 1] == '.' || strstr(local.ptr, "..")))
		quote = 1;
	if (rc == 0) {
		if (quote) {
			buf_putc(out, '"');
			for (size_t i = 0; i < local.len; i++) {
				if (local.ptr[i] == '"' || local.ptr[i] == '\\')
					buf_putc(out, '\\');
				buf_putc(out, local.ptr[i]);
			}
			buf_putc(out, '"');
		} else {
			buf_append(out, local.ptr, local.len);
		}
		if (at)
			buf_appends(out, at);
	}
	buf_free(&local);
	return rc;
}

struct lmtp_client {
	int fd;
	char in[4096];
	size_t len, off;
};

static int lc_write(struct lmtp_client *c, const char *p, size_t n, struct terr *err)
{
	while (n) {
		ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return terr_errno(err, errno == EAGAIN ? ETIMEDOUT : errno, "lmtp: write");
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* One reply (the lines of a multi-line one until "NNN "): its code, and
 * the text of its last line ("2.1.5 Delivered") in text. */
static int lc_reply(struct lmtp_client *c, int *code, struct buf *text, struct terr *err)
{
	for (;;) {
		buf_reset(text);
		for (;;) {
			if (c->off == c->len) {
				ssize_t n = read(c->fd, c->in, sizeof c->in);
				if (n < 0 && errno == EINTR)
					continue;
				if (n < 0)
					return terr_errno(err, errno == EAGAIN ? ETIMEDOUT : errno, "lmtp: read");
				if (n == 0)
					return terr_set(err, TE_IO, "lmtp: connection closed by tandemd");
				c->off = 0;
				c->len = (size_t)n;
			}
			char ch = c->in[c->off++];
			if (ch == '\n')
				break;
			if (ch != '\r' && text->len < LMTP_MAX_LINE)
				buf_putc(text, ch);
		}
		const char *l = buf_cstr(text);
		if (text->len < 3 || l[0] < '1' || l[0] > '5' || l[1] < '0' || l[1] > '9' || l[2] < '0' || l[2] > '9' ||
		    (text->len > 3 && l[3] != ' ' && l[3] != '-'))
			return terr_set(err, TE_PROTOCOL, "lmtp: bad reply line: %.80s", l);
		if (text->len > 3 && l[3] == '-')
			continue;
		*code = (l[0] - '0') * 100 + (l[1] - '0') * 10 + (l[2] - '0');
		buf_consume(text, text->len > 4 ? 4 : text->len);
		return 0;
	}
}

/* The error class of a refusal, from its enhanced status code (what
 * lmtpd.c answers for each store error). */
static enum terr_code lmtp_status_code(int code, const char *text)
{
	if (!strncmp(text, "5.1.1", 5))
		return TE_NOTFOUND;
	if (!strncmp(text + 1, ".2.2", 4) && (text[0] == '4' || text[0] == '5'))
		return TE_OVERQUOTA;
	if (!strncmp(text, "4.3.1", 5))
		return TE_NOSPACE;
	if (!strncmp(text, "5.3.4", 5))
		return TE_TOOBIG;
	if (!strncmp(text, "4.2.1", 5))
		return TE_BUSY;	/* the user is being moved */
	if (code >= 500)
		return TE_INVALID;
	return TE_IO;
}

static void rcpt_refused(struct drcpt *r, int code, const struct buf *text)
{
	r->code = code;
	terr_set(&r->err, lmtp_status_code(code, buf_cstr(text)), "%d %s", code, buf_cstr(text));
}

/* Delivers over LMTP. 1: tandemd did not answer (nothing was sent: the
 * caller takes the direct path); 0: every recipient has its result
 * (r->code 250 or r->err). */
static int lmtp_deliver(const char *addr, struct drcpt *rs, size_t n, const char *sender, const struct buf *msg)
{
	struct lmtp_client c = { .fd = -1 };
	struct terr err = { 0 };
	struct buf out = BUF_INIT, text = BUF_INIT;
	int code = 0, rc = 0;
	size_t accepted = 0;
	if (net_connect(addr, DELIVER_LMTP_GREETING_MS, &c.fd, &err) < 0) {
		log_warn("event=deliver_path path=direct reason=no_lmtp_answer addr=%s error=\"%s\"", addr, err.msg);
		rc = 1;
		goto out;
	}
	struct timeval tv = { DELIVER_LMTP_GREETING_MS / 1000, DELIVER_LMTP_GREETING_MS % 1000 * 1000 };
	setsockopt(c.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	if (lc_reply(&c, &code, &text, &err) < 0 || code != 220) {
		/* refused at once (421: too many connections, shutting down,
		 * store not available): nothing is delivered yet */
		if (code)
			log_warn("event=deliver_path path=direct reason=no_lmtp_answer addr=%s error=\"%d %s\"", addr,
				 code, buf_cstr(&text));
		else
			log_warn("event=deliver_path path=direct reason=no_lmtp_answer addr=%s error=\"%s\"", addr,
				 err.msg);
		rc = 1;
		goto out;
	}
	tv = (struct timeval){ DELIVER_LMTP_TIMEOUT, 0 };
	setsockopt(c.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	setsockopt(c.fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	log_info("event=deliver_path path=lmtp addr=%s rcpts=%zu size=%zu", addr, n, msg->len);
	/* PIPELINING (lmtpd offers it): every command up to DATA at once */
	buf_printf(&out, "LHLO localhost\r\nMAIL FROM:<%s>\r\n", sender ? sender : "");
	for (size_t i = 0; i < n; i++) {
		buf_appends(&out, "RCPT TO:<");
		lmtp_rcpt_path(&rs[i], &out);	/* checked by the caller */
		buf_appends(&out, ">\r\n");
	}
	buf_appends(&out, "DATA\r\n");
	if (lc_write(&c, out.ptr, out.len, &err) < 0 || lc_reply(&c, &code, &text, &err) < 0)
		goto fail_all;
	if (code != 250) {
		terr_set(&err, TE_PROTOCOL, "lmtp: LHLO answered %d %s", code, buf_cstr(&text));
		goto fail_all;
	}
	if (lc_reply(&c, &code, &text, &err) < 0)
		goto fail_all;
	int mail_ok = code == 250;
	if (!mail_ok)
		terr_set(&err, code >= 500 ? TE_INVALID : TE_IO, "%d %s", code, buf_cstr(&text));
	for (size_t i = 0; i < n; i++) {
		int rcode;
		if (lc_reply(&c, &rcode, &text, &err) < 0)
			goto fail_all;
		if (!mail_ok) {
			rs[i].code = code;
			rs[i].err = err;
		} else if (rcode == 250) {
			accepted++;
		} else {
			rcpt_refused(&rs[i], rcode, &text);
		}
	}
	if (lc_reply(&c, &code, &text, &err) < 0)
		goto fail_all;
	if (!accepted || code != 354) {
		for (size_t i = 0; i < n; i++)
			if (!rs[i].code && !rs[i].err.code)
				rcpt_refused(&rs[i], code, &text);
		goto quit;
	}
	/* the message: dot-stuffed, ending with CRLF "." CRLF */
	buf_reset(&out);
	buf_reserve(&out, msg->len + msg->len / 64 + 8);
	for (size_t i = 0; i < msg->len;) {
		const char *nl = memchr(msg->ptr + i, '\n', msg->len - i);
		size_t end = nl ? (size_t)(nl - msg->ptr) + 1 : msg->len;
		if (msg->ptr[i] == '.')
			buf_putc(&out, '.');
		buf_append(&out, msg->ptr + i, end - i);
		i = end;
	}
	if (out.len && out.ptr[out.len - 1] != '\n')
		buf_appends(&out, "\r\n");
	buf_appends(&out, ".\r\n");
	if (lc_write(&c, out.ptr, out.len, &err) < 0)
		goto fail_all;
	/* one reply per accepted recipient, each after its copy is durable */
	for (size_t i = 0; i < n; i++) {
		if (rs[i].code || rs[i].err.code)
			continue;
		if (lc_reply(&c, &code, &text, &err) < 0)
			goto fail_all;
		if (code == 250)
			rs[i].code = 250;
		else
			rcpt_refused(&rs[i], code, &text);
	}
quit:
	/* its 221 read, so the session ends cleanly (its process is reused)
	 * and nothing unread is left to reset the connection */
	if (lc_write(&c, "QUIT\r\n", 6, &err) == 0)
		lc_reply(&c, &code, &text, &err);
	goto out;
fail_all:
	/* the connection broke or tandemd spoke nonsense: whoever has no
	 * answer has a temporary failure (the MTA retries; an answer lost
	 * after a durable delivery gives a duplicate, as with any LMTP) */
	log_warn("event=deliver_fail path=lmtp addr=%s error=\"%s\"", addr, err.msg);
	for (size_t i = 0; i < n; i++)
		if (!rs[i].code && !rs[i].err.code)
			rs[i].err = err;
out:
	if (c.fd >= 0)
		close(c.fd);
	buf_free(&out);
	buf_free(&text);
	return rc;
}

/* ---- the exit status ------------------------------------------------------ */

/* Whether a recipient's failure is temporary: the MTA keeps the message
 * and tries again (an LMTP 4xx; on the direct path the store's transient
 * errors: I/O, a busy or moving user, a full disk, over quota, which
 * Cyrus also defers unless lmtp_over_quota_perm_failure). */
static int failure_is_temporary(const struct drcpt *r)
{
	if (r->code >= 500)
		return 0;
	if (r->code >= 400)
		return 1;
	switch (r->err.code) {
	case TE_NOTFOUND:
	case TE_TOOBIG:
	case TE_INVALID:
	case TE_PROTOCOL:
		return 0;
	default:
		return 1;
	}
}

/* The exit status an MTA's local delivery reads (sendmail's sysexits, as
 * Postfix's local(8) and Cyrus's deliver use them): 0 every recipient
 * has the message; EX_TEMPFAIL (75) when a failure is temporary, so the
 * MTA defers instead of bouncing (a lost LMTP answer, tandemd busy or a
 * replica, a full disk); else EX_NOUSER (67) for an unknown recipient,
 * EX_DATAERR (65) for a message refused (too big, malformed). */
static int deliver_exit(const struct drcpt *rs, size_t n)
{
	int rc = EXIT_OK;
	for (size_t k = 0; k < n; k++) {
		const struct drcpt *r = &rs[k];
		if (r->code == 250 || (!r->code && !r->err.code && r->uid))
			continue;
		if (failure_is_temporary(r))
			return EX_TEMPFAIL;
		rc = r->err.code == TE_NOTFOUND ? EX_NOUSER : (rc == EX_NOUSER ? rc : EX_DATAERR);
	}
	return rc;
}

/* ---- the command ---------------------------------------------------------- */

int cmd_deliver(struct tool *t, int argc, char **argv)
{
	if (tool_help(argc, argv, usage))
		return EXIT_OK;
	int64_t date = 0;
	struct buf raw = BUF_INIT, msg = BUF_INIT, addr = BUF_INIT, path = BUF_INIT;
	struct terr err = { 0 };
	const char *folder = NULL, *sender = NULL, *why_direct = NULL;
	const char *flags = NULL;
	struct drcpt *rs = NULL;
	size_t n = 0;
	int i = 1, rc = EXIT_OK;
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (!strcmp(argv[i], "--flags") && i + 1 < argc) {
			flags = argv[++i];
			why_direct = "flags";
		} else if (!strcmp(argv[i], "--date") && i + 1 < argc) {
			char *end;
			date = strtoll(argv[++i], &end, 10);
			if (*end || date <= 0) {
				rc = tool_usage(usage);
				goto out;
			}
			why_direct = "date";
		} else if (!strcmp(argv[i], "-m") && i + 1 < argc) {
			folder = argv[++i];
		} else if ((!strcmp(argv[i], "-r") || !strcmp(argv[i], "-f")) && i + 1 < argc) {
			sender = argv[++i];
			if (strpbrk(sender, "<>\r\n") || strlen(sender) > LMTP_MAX_LINE - 64) {
				fprintf(stderr, "tandem: sender '%s': not an address\n", sender);
				rc = EXIT_USAGE;
				goto out;
			}
		} else if (!strcmp(argv[i], "-C") && i + 1 < argc) {
			t->conf_path = argv[++i];	/* Cyrus's deliver -C, among its options */
		} else if (!strcmp(argv[i], "-d")) {
			/* /bin/mail's flag, ignored as Cyrus's deliver does */
		} else if (!strcmp(argv[i], "--direct")) {
			why_direct = "option";
		} else {
			rc = tool_usage(usage);
			goto out;
		}
	}
	if (i >= argc) {
		rc = tool_usage(usage);
		goto out;
	}
	if (conf_load(t->conf_path, &t->conf, &err) < 0) {
		/* EX_CONFIG: an MTA defers (Postfix: 4.3.5) while it is fixed */
		tool_fail(&err);
		rc = EX_CONFIG;
		goto out;
	}
	/* the namespace as server_open_store sets it, to check the names
	 * before anything is read or sent */
	t->ns.sep = conf_bool(t->conf, "unixhierarchysep") ? '/' : '.';
	t->ns.virtdomains = strcmp(conf_str(t->conf, "virtdomains"), "off") != 0;
	n = (size_t)(argc - i);
	rs = xcalloc(n, sizeof *rs);
	for (size_t k = 0; k < n && rc == EXIT_OK; k++) {
		struct drcpt *r = &rs[k];
		r->arg = argv[i + (int)k];
		r->user = xstrdup(r->arg);
		char *plus = strchr(r->user, '+');
		r->folder = "";
		if (plus) {
			*plus = '\0';
			r->folder = plus + 1;
			if (!why_direct)
				why_direct = "folder";
		} else if (folder) {
			r->folder = folder;
			r->by_acl = 1;
		}
		buf_reset(&path);
		if (mboxname_user_folder(&t->ns, r->user, r->folder, &path, &err) < 0) {
			fprintf(stderr, "tandem: recipient '%s': %s\n", r->arg, err.msg);
			rc = EXIT_USAGE;
		} else if (!why_direct && (buf_reset(&path), lmtp_rcpt_path(r, &path) < 0)) {
			why_direct = "address";
		}
	}
	if (rc != EXIT_OK)
		goto out;
	long long max = conf_int(t->conf, "maxmessagesize");
	if (max <= 0)
		max = MAX_MESSAGE_SIZE;
	if (tool_read_stdin((size_t)max, &raw, &err) < 0) {
		/* over maxmessagesize: refused for good (the MTA bounces it);
		 * a read error: the MTA keeps the message and retries */
		tool_fail(&err);
		rc = err.code == TE_TOOBIG ? EX_DATAERR : EX_TEMPFAIL;
		goto out;
	}
	crlf_normalize(&raw, &msg);
	if (!why_direct && !lmtp_local_addr(t->conf, &addr))
		why_direct = "no_lmtp_listen";
	int lmtp = 0;
	if (!why_direct) {
		if (lmtp_deliver(addr.ptr, rs, n, sender, &msg) == 0)
			lmtp = 1;
	} else {
		log_info("event=deliver_path path=direct reason=%s", why_direct);
	}
	if (!lmtp && strcmp(why_direct ? why_direct : "", "option") && server_role_refuses_writes(t->conf)) {
		/* no tandemd took it and this instance is a replica (or draining
		 * for a failover): a message stored here would exist on this
		 * side only; the MTA retries, at the master after the failover
		 * (--direct, an administrator's explicit choice, still writes) */
		for (size_t k = 0; k < n; k++)
			terr_set(&rs[k].err, TE_BUSY, "this instance is a replica (role file): deliver at the master");
		log_warn("event=deliver_refused reason=replica");
	} else if (!lmtp) {
		rc = deliver_direct(t, argc, argv, rs, n, sender, flags, date, &raw, &msg);
		if (rc != EXIT_OK)
			goto out;
	}
	for (size_t k = 0; k < n; k++) {
		const struct drcpt *r = &rs[k];
		if (lmtp && r->code == 250) {
			printf("%s: delivered via=lmtp\n", r->arg);
		} else if (!lmtp && r->uid) {
			printf("%s: delivered mailbox=%s uid=%u\n", r->arg, r->mailbox, r->uid);
		} else {
			printf("%s: failed (%s) %s\n", r->arg, terr_code_name(r->err.code ? r->err.code : TE_IO),
			       r->err.msg);
		}
	}
	rc = deliver_exit(rs, n);
out:
	for (size_t k = 0; k < n; k++) {
		free(rs[k].user);
		free(rs[k].mailbox);
	}
	free(rs);
	buf_free(&raw);
	buf_free(&msg);
	buf_free(&addr);
	buf_free(&path);
	return rc;
}
