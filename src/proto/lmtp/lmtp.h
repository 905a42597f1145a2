/* lmtp.h: the LMTP protocol (RFC 2033) without I/O.
 *
 * Three pieces, each fed bytes by the session:
 *  - lmtp_take_line: cuts one command line off the input (CRLF or bare
 *    LF), or says a line is over LMTP_MAX_LINE (then the session answers
 *    500 and the line is skipped to its end);
 *  - lmtp_parse: one command line -> struct lmtp_cmd, or a ready error
 *    reply (code, enhanced status, text);
 *  - struct lmtp_data: the DATA decoder: dot-unstuffing, the final
 *    CRLF.CRLF across chunk boundaries (only that: a bare LF never ends
 *    DATA, so "\n.\n" stays data), bare LF -> CRLF, the size limit
 *    (over it the message keeps being consumed but not kept, so the
 *    session can answer 552 and stay in sync).
 * Plus recipient-address splitting (user+detail@domain).
 */
#ifndef TANDEM_LMTP_H
#define TANDEM_LMTP_H

#include <stddef.h>

#include "lib/buf.h"

enum lmtp_verb {
	LMTP_LHLO, LMTP_MAIL, LMTP_RCPT, LMTP_DATA, LMTP_RSET, LMTP_NOOP, LMTP_QUIT,
	LMTP_VRFY, LMTP_HELP, LMTP_STARTTLS,
};

struct lmtp_cmd {
	enum lmtp_verb verb;
	struct buf arg;		/* LHLO domain, or the path inside <> (may be empty) */
	long long size;		/* MAIL SIZE=, -1 if absent */
	int body_8bit;		/* MAIL BODY=8BITMIME */
};

/* An error answer the session sends as is: "<code> <status> <text>". */
struct lmtp_reply {
	int code;
	const char *status;	/* enhanced status code, e.g. "5.5.2" */
	char text[200];
};

enum { LMTP_LINE_NONE = 0, LMTP_LINE_OK = 1, LMTP_LINE_TOOLONG = 2 };
/* Looks for a complete line at the start of in: LMTP_LINE_OK with
 * *linelen (without the line end) and *consumed (with it);
 * LMTP_LINE_TOOLONG when no line end is within LMTP_MAX_LINE bytes (the
 * caller discards up to the next LF); LMTP_LINE_NONE: need more. */
int lmtp_take_line(const char *in, size_t len, size_t *linelen, size_t *consumed);

/* 0 with *cmd filled, or -1 with *reply set. cmd->arg is reset first. */
int lmtp_parse(const char *line, size_t len, struct lmtp_cmd *cmd, struct lmtp_reply *reply);
void lmtp_cmd_free(struct lmtp_cmd *cmd);

/* Splits a recipient path: "user+detail@domain" (quoted local parts are
 * unquoted). Each output is reset; detail and domain are empty when
 * absent. downcase lower-cases the local part (lmtp_downcase_rcpt). */
int lmtp_split_address(const char *path, int downcase, struct buf *local, struct buf *detail,
		       struct buf *domain);

/* The DATA decoder. */
struct lmtp_data {
	size_t max;		/* size limit of the message */
	size_t size;		/* bytes of message seen (after unstuffing) */
	int toobig;
	int state;		/* private */
};
void lmtp_data_init(struct lmtp_data *d, size_t max);
/* Feeds bytes: message bytes (CRLF line ends, unstuffed) are appended to
 * out while the message is within max. Returns 1 when the terminating
 * "." line was seen (*consumed says how much of in was used: pipelined
 * commands may follow), 0 when all of in was used and more is needed. */
int lmtp_data_feed(struct lmtp_data *d, const char *in, size_t len, size_t *consumed,
		   struct buf *out);

#endif
