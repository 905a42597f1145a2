/* lmtp.c: LMTP command parsing, address splitting and the DATA decoder
 * (see lmtp.h).
 *
 * DATA decoder states (one byte at a time, so chunk boundaries do not
 * matter). Only CRLF "." CRLF ends the message (RFC 5321 4.1.1.4); a bare
 * LF is a line end for the stored message (written as CRLF) but never
 * part of the terminator, so "\n.\n", "\r\n.\n" and "\n.\r\n" stay data
 * and an MTA and tandem cannot disagree on where a message ends (SMTP
 * smuggling):
 *   BOL   a line start after CRLF (or the start of DATA)
 *                                     '.' -> DOT, '\r' -> CR, '\n' -> BOLLF
 *   BOLLF a line start after a bare LF: '.' is kept as text (neither a
 *         terminator nor unstuffed), '\r' -> CR, '\n' -> BOLLF, other -> MID
 *   DOT   "." after CRLF: "\r" -> DOTCR, "\n" -> ".\r\n" kept as text
 *         (BOLLF), other -> unstuffed text (MID)
 *   DOTCR ".\r": "\n" -> end, other -> "\r" then the byte as text
 *   MID   inside a line               '\r' -> CR, '\n' -> CRLF out, BOLLF
 *   CR    after '\r'                  '\n' -> CRLF, BOL; other -> '\r' kept, byte as text
 */
#include "proto/lmtp/lmtp.h"

#include "lib/limits.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum { S_BOL, S_BOLLF, S_DOT, S_DOTCR, S_MID, S_CR };

int lmtp_take_line(const char *in, size_t len, size_t *linelen, size_t *consumed)
{
	const char *nl = memchr(in, '\n', len);
	if (!nl)
		return len > LMTP_MAX_LINE ? LMTP_LINE_TOOLONG : LMTP_LINE_NONE;
	size_t n = (size_t)(nl - in);
	if (n > LMTP_MAX_LINE)
		return LMTP_LINE_TOOLONG;
	*consumed = n + 1;
	if (n && in[n - 1] == '\r')
		n--;
	*linelen = n;
	return LMTP_LINE_OK;
}

static int fail(struct lmtp_reply *r, int code, const char *status, const char *text)
{
	r->code = code;
	r->status = status;
	snprintf(r->text, sizeof r->text, "%s", text);
	return -1;
}

void lmtp_cmd_free(struct lmtp_cmd *cmd)
{
	buf_free(&cmd->arg);
}

/* Parses "<path>" at *pp: a quoted local part may hold '>' and spaces. */
static int parse_path(const char **pp, const char *end, struct buf *out)
{
	const char *p = *pp;
	if (p >= end || *p != '<')
		return -1;
	p++;
	/* a source route "@a,@b:" is accepted and dropped */
	if (p < end && *p == '@') {
		const char *colon = memchr(p, ':', (size_t)(end - p));
		if (!colon)
			return -1;
		p = colon + 1;
	}
	int inq = 0;
	while (p < end && (inq || *p != '>')) {
		if (*p == '"')
			inq = !inq;
		else if (*p == '\\' && inq && p + 1 < end)
			buf_putc(out, *p++);
		buf_putc(out, *p++);
	}
	if (p >= end)
		return -1;
	*pp = p + 1;
	return 0;
}

static int parse_params(const char *p, const char *end, struct lmtp_cmd *cmd, int is_mail,
			struct lmtp_reply *r)
{
	while (p < end) {
		if (*p != ' ')
			return fail(r, 501, "5.5.4", "Syntax error in parameters");
		while (p < end && *p == ' ')
			p++;
		if (p >= end)
			break;
		const char *e = p;
		while (e < end && *e != ' ')
			e++;
		size_t n = (size_t)(e - p);
		if (is_mail && n > 5 && !strncasecmp(p, "SIZE=", 5)) {
			char num[32];
			if (n - 5 >= sizeof num)
				return fail(r, 501, "5.5.4", "Bad SIZE parameter");
			memcpy(num, p + 5, n - 5);
			num[n - 5] = '\0';
			char *ep;
			long long v = strtoll(num, &ep, 10);
			if (*ep || v < 0 || !isdigit((unsigned char)num[0]))
				return fail(r, 501, "5.5.4", "Bad SIZE parameter");
			cmd->size = v;
		} else if (is_mail && n > 5 && !strncasecmp(p, "BODY=", 5)) {
			if (n == 9 && !strncasecmp(p + 5, "7BIT", 4))
				cmd->body_8bit = 0;
			else if (n == 13 && !strncasecmp(p + 5, "8BITMIME", 8))
				cmd->body_8bit = 1;
			else
				return fail(r, 501, "5.5.4", "Bad BODY parameter");
		} else {
			return fail(r, 555, "5.5.4", "Unsupported parameter");
		}
		p = e;
	}
	return 0;
}

int lmtp_parse(const char *line, size_t len, struct lmtp_cmd *cmd, struct lmtp_reply *r)
{
	static const struct { const char *name; enum lmtp_verb verb; int arg; } verbs[] = {
		{ "LHLO", LMTP_LHLO, 1 }, { "MAIL", LMTP_MAIL, 1 }, { "RCPT", LMTP_RCPT, 1 },
		{ "DATA", LMTP_DATA, 0 }, { "RSET", LMTP_RSET, 0 }, { "NOOP", LMTP_NOOP, -1 },
		{ "QUIT", LMTP_QUIT, 0 }, { "VRFY", LMTP_VRFY, 1 }, { "HELP", LMTP_HELP, -1 },
		{ "STARTTLS", LMTP_STARTTLS, 0 },
	};
	buf_reset(&cmd->arg);
	cmd->size = -1;
	cmd->body_8bit = 0;
	const char *end = line + len;
	for (const char *q = line; q < end; q++)
		if (*q == '\0')
			return fail(r, 500, "5.5.2", "NUL byte in command");
	size_t wl = 0;
	while (wl < len && line[wl] != ' ')
		wl++;
	size_t k = 0, nv = sizeof verbs / sizeof verbs[0];
	while (k < nv && !(strlen(verbs[k].name) == wl && !strncasecmp(line, verbs[k].name, wl)))
		k++;
	if (k == nv)
		return fail(r, 500, "5.5.2", "Unknown command");
	cmd->verb = verbs[k].verb;
	const char *p = line + wl;
	if (verbs[k].arg == 0) {
		if (p != end)
			return fail(r, 501, "5.5.4", "This command takes no argument");
		return 0;
	}
	if (verbs[k].arg < 0)
		return 0;	/* NOOP and HELP ignore their argument */
	if (p >= end || *p != ' ')
		return fail(r, 501, "5.5.4", "Argument required");
	while (p < end && *p == ' ')
		p++;
	if (cmd->verb == LMTP_LHLO || cmd->verb == LMTP_VRFY) {
		if (p >= end)
			return fail(r, 501, "5.5.4", "Argument required");
		buf_append(&cmd->arg, p, (size_t)(end - p));
		return 0;
	}
	const char *kw = cmd->verb == LMTP_MAIL ? "FROM:" : "TO:";
	size_t kl = strlen(kw);
	if ((size_t)(end - p) < kl || strncasecmp(p, kw, kl))
		return fail(r, 501, "5.5.4", cmd->verb == LMTP_MAIL ? "Syntax: MAIL FROM:<address>" :
									 "Syntax: RCPT TO:<address>");
	p += kl;
	while (p < end && *p == ' ')
		p++;
	if (parse_path(&p, end, &cmd->arg) < 0)
		return fail(r, 501, "5.1.7", "Bad address syntax");
	if (cmd->verb == LMTP_RCPT && cmd->arg.len == 0)
		return fail(r, 501, "5.1.3", "Empty recipient");
	return parse_params(p, end, cmd, cmd->verb == LMTP_MAIL, r);
}

int lmtp_split_address(const char *path, int downcase, struct buf *local, struct buf *detail,
		       struct buf *domain)
{
	buf_reset(local);
	buf_reset(detail);
	buf_reset(domain);
	const char *at = NULL;
	int inq = 0;
	for (const char *p = path; *p; p++) {
		if (*p == '\\' && inq && p[1])
			p++;
		else if (*p == '"')
			inq = !inq;
		else if (*p == '@' && !inq)
			at = p;
	}
	size_t llen = at ? (size_t)(at - path) : strlen(path);
	if (at)
		buf_appends(domain, at + 1);
	struct buf raw = BUF_INIT;
	if (llen >= 2 && path[0] == '"' && path[llen - 1] == '"') {
		for (size_t i = 1; i + 1 < llen; i++) {
			if (path[i] == '\\' && i + 2 < llen)
				i++;
			buf_putc(&raw, path[i]);
		}
	} else {
		buf_append(&raw, path, llen);
	}
	const char *plus = memchr(buf_cstr(&raw), '+', raw.len);
	size_t ul = plus ? (size_t)(plus - raw.ptr) : raw.len;
	for (size_t i = 0; i < ul; i++)
		buf_putc(local, downcase ? (char)tolower((unsigned char)raw.ptr[i]) : raw.ptr[i]);
	if (plus)
		buf_appends(detail, plus + 1);
	buf_free(&raw);
	return local->len ? 0 : -1;
}

void lmtp_data_init(struct lmtp_data *d, size_t max)
{
	d->max = max;
	d->size = 0;
	d->toobig = 0;
	d->state = S_BOL;
}

static void emit(struct lmtp_data *d, struct buf *out, const char *s, size_t n)
{
	d->size += n;
	if (d->size > d->max) {
		d->toobig = 1;
		return;
	}
	buf_append(out, s, n);
}

int lmtp_data_feed(struct lmtp_data *d, const char *in, size_t len, size_t *consumed, struct buf *out)
{
	size_t i = 0;
	while (i < len) {
		if (d->state == S_MID) {
			/* the rest of a line in one append (not a byte at a time:
			 * a 50 KB message was 50,000 calls) */
			size_t j = i;
			while (j < len && in[j] != '\r' && in[j] != '\n')
				j++;
			if (j > i) {
				emit(d, out, in + i, j - i);
				i = j;
				continue;
			}
		}
		char c = in[i++];
		switch (d->state) {
		case S_BOL:
			if (c == '.')
				d->state = S_DOT;
			else if (c == '\r')
				d->state = S_CR;
			else if (c == '\n') {
				emit(d, out, "\r\n", 2);
				d->state = S_BOLLF;
			} else {
				emit(d, out, &c, 1);
				d->state = S_MID;
			}
			break;
		case S_BOLLF:
			if (c == '\r')
				d->state = S_CR;
			else if (c == '\n')
				emit(d, out, "\r\n", 2);
			else {
				emit(d, out, &c, 1);	/* a '.' too: kept as it came */
				d->state = S_MID;
			}
			break;
		case S_DOT:
			if (c == '\r') {
				d->state = S_DOTCR;
			} else if (c == '\n') {
				/* ".\n": not the end; the line is kept as it came */
				emit(d, out, ".\r\n", 3);
				d->state = S_BOLLF;
			} else {
				emit(d, out, &c, 1);
				d->state = S_MID;
			}
			break;
		case S_DOTCR:
			if (c == '\n') {
				*consumed = i;
				return 1;
			}
			emit(d, out, "\r", 1);
			d->state = S_MID;
			i--;	/* the byte again, as text */
			break;
		case S_MID:
			if (c == '\r')
				d->state = S_CR;
			else if (c == '\n') {
				emit(d, out, "\r\n", 2);
				d->state = S_BOLLF;
			} else
				emit(d, out, &c, 1);
			break;
		case S_CR:
			if (c == '\n') {
				emit(d, out, "\r\n", 2);
				d->state = S_BOL;
			} else if (c == '\r') {
				emit(d, out, "\r", 1);
			} else {
				emit(d, out, "\r", 1);
				emit(d, out, &c, 1);
				d->state = S_MID;
			}
			break;
		}
	}
	*consumed = len;
	return 0;
}
