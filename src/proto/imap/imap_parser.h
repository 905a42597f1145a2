/* imap_parser.h: the IMAP command push parser (no I/O, no store).
 *
 * The session feeds whatever bytes it read from the client; the parser
 * frames commands (lines, {N} / {N+} literals), builds the argument tree
 * (imap_args.h) and the typed command (imap_cmd.h), and tells the session
 * what to do next through one event per call:
 *
 *   for (;;) {
 *       ev = imap_parser_feed(p, data, len, &n);
 *       data += n; len -= n;
 *       if (ev == IMAP_NEED_MORE) break;   // all input consumed
 *       switch (ev) { ... }
 *   }
 *
 * Call feed again after every event other than IMAP_NEED_MORE, even when
 * len is 0: an event may be pending without new input (the command that
 * follows the last IMAP_DATA chunk, for instance). IMAP_NEED_MORE always
 * means every byte given was consumed.
 *
 *   IMAP_COMMAND   a command is complete and valid: imap_parser_command().
 *   IMAP_CONTINUE  a synchronising literal {N} was announced and fits the
 *                  limits: send "+ ..." and keep feeding, or refuse it with
 *                  imap_parser_reject_literal() and a tagged NO (see
 *                  imap_parser_pending() for what it is).
 *   IMAP_DATA      a chunk of APPEND's message, or of the raw remainder of a
 *                  SYNCGET/SYNCAPPLY/SYNCRESTORE (imap_parser_data()); not
 *                  sent in buffered mode. The command's IMAP_COMMAND (or
 *                  IMAP_ERROR) follows the last chunk.
 *   IMAP_ERROR     answer imap_parser_error() (imap_write_error() formats
 *                  it). Unless err->fatal, the parser resynchronises by
 *                  itself: it skips the rest of the command, stepping over
 *                  {N+} literals, and the next command parses normally.
 *   IMAP_DONE      after imap_parser_expect(p, IMAP_EXPECT_DONE): the
 *                  client sent DONE (end of IDLE).
 *   IMAP_LINE      after imap_parser_expect(p, IMAP_EXPECT_LINE): one
 *                  line, e.g. a SASL response: imap_parser_line().
 *
 * Literal decisions (see docs/imap-parser.md):
 *   - a {N} over the limit is refused before the continuation (IMAP_ERROR,
 *     NO [TOOBIG] for APPEND's message, BAD [TOOBIG] otherwise); the
 *     client then abandons the command, so the parser expects a new one;
 *   - a {N+} over the limit is read and thrown away (the client sends it
 *     anyway) and the command fails the same way;
 *   - a literal size that is not a 32-bit number cannot be stepped over:
 *     IMAP_ERROR with err->fatal set, the session must close.
 * Inside SYNC* commands {N} is treated like {N+} (Cyrus sync clients never
 * wait for a continuation) and %{partition guid size} file literals are
 * recognised.
 *
 * Ownership: the parser owns the command, the error, the pending info and
 * line; all are valid until the next feed/reset/free. IMAP_DATA chunks
 * point into the caller's input (or the parser's memory) with the same
 * lifetime.
 */
#ifndef TANDEM_IMAP_PARSER_H
#define TANDEM_IMAP_PARSER_H

#include <stddef.h>
#include <stdint.h>

#include "proto/imap/imap_cmd.h"

struct imap_parser;

enum imap_event {
	IMAP_NEED_MORE = 0,
	IMAP_COMMAND,
	IMAP_CONTINUE,
	IMAP_DATA,
	IMAP_ERROR,
	IMAP_DONE,
	IMAP_LINE,
};

/* Limits in force: IMAP_PREAUTH_* before login, IMAP_MAX_* after. */
enum imap_mode { IMAP_MODE_PREAUTH, IMAP_MODE_AUTH };

enum imap_expect {
	IMAP_EXPECT_COMMAND,	/* normal operation */
	IMAP_EXPECT_DONE,	/* the next line must be DONE */
	IMAP_EXPECT_LINE,	/* the next line is returned as is */
};

enum imap_resp { IMAP_RESP_BAD, IMAP_RESP_NO };

struct imap_error {
	const char *tag;	/* NULL when no valid tag was read: "* BAD" */
	enum imap_resp resp;
	const char *code;	/* response code without brackets ("TOOBIG") or NULL */
	const char *msg;	/* human-readable, safe to send to the client */
	uint64_t pos;		/* offset in the command (from the tag's first
				 * byte, literal bytes included) */
	int fatal;		/* the stream cannot be resynchronised: close */
};

/* The literal being announced or read (after IMAP_CONTINUE, IMAP_DATA). */
struct imap_pending {
	const char *tag;
	enum imap_cmd_id cmd;
	uint64_t size;
	int nonsync;		/* {N+} */
	int is_message;		/* APPEND's message literal */
	uint64_t received;	/* bytes of it read so far */
	const struct imap_arg *args;	/* the arguments parsed so far */
};

enum imap_data_kind {
	IMAP_DATA_MESSAGE,	/* APPEND's message literal */
	IMAP_DATA_SYNC,		/* raw remainder of a SYNC* command */
	IMAP_DATA_SYNC_FILE,	/* bytes of a file literal %{part guid size} in it */
};

/* A new parser in IMAP_MODE_PREAUTH, streaming mode, message limit
 * MAX_MESSAGE_SIZE. Free with imap_parser_free(). */
struct imap_parser *imap_parser_new(void);
/* Frees the parser and everything it handed out; *pp becomes NULL. */
void imap_parser_free(struct imap_parser **pp);
/* Drops any partial command; the next byte starts a new command. */
void imap_parser_reset(struct imap_parser *p);

/* Switches the limits (call after a successful login). */
void imap_parser_set_mode(struct imap_parser *p, enum imap_mode mode);
/* The effective maxmessagesize for APPEND; clamped to MAX_MESSAGE_SIZE. */
void imap_parser_set_max_message(struct imap_parser *p, uint64_t max);
/* on = 1: keep APPEND's message and the SYNC* remainder in memory and
 * hand them over in the command (u.append.message, u.sync.raw) instead of
 * IMAP_DATA events; SYNC* then also obey DLIST_MAX_COMMAND_BYTES. */
void imap_parser_set_buffered(struct imap_parser *p, int on);

/* Consumes bytes; returns an enum imap_event. *consumed_r gets how many
 * bytes were used (all of them when it returns IMAP_NEED_MORE). */
int imap_parser_feed(struct imap_parser *p, const void *data, size_t len,
		     size_t *consumed_r);

/* After IMAP_COMMAND. */
const struct imap_cmd *imap_parser_command(const struct imap_parser *p);
/* After IMAP_ERROR. */
const struct imap_error *imap_parser_error(const struct imap_parser *p);
/* After IMAP_CONTINUE or IMAP_DATA; NULL when no literal is pending. */
const struct imap_pending *imap_parser_pending(const struct imap_parser *p);
/* After IMAP_DATA: the chunk and what it belongs to. */
enum imap_data_kind imap_parser_data(const struct imap_parser *p,
				     const void **data_r, size_t *len_r);
/* After IMAP_LINE: the line without its CRLF (NUL-terminated). */
const char *imap_parser_line(const struct imap_parser *p, size_t *len_r);

/* After IMAP_CONTINUE: the session refuses the literal (it answers the
 * command with a tagged NO/BAD itself); the client will not send it, so
 * the parser waits for a new command. */
void imap_parser_reject_literal(struct imap_parser *p);
/* After sending "+ idling" (IMAP_EXPECT_DONE) or a SASL challenge
 * (IMAP_EXPECT_LINE): how to read the next line. A bad DONE line gives
 * IMAP_ERROR tagged with the last command's tag (the IDLE). */
void imap_parser_expect(struct imap_parser *p, enum imap_expect what);

#endif
