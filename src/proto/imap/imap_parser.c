/* imap_parser.c: command framing, the state machine behind imap_parser_feed().
 *
 * States (enum imap_pstate) and transitions:
 *
 *   HEAD     reads "tag SP name [SP]" (and UID's sub-command) byte by byte,
 *            so the command is known before the line ends: a SYNC*
 *            command goes to RAW, a command not allowed in the current
 *            mode is refused at once; otherwise LINE.
 *   LINE     collects a line segment up to LF, then tokenizes it: line end
 *            -> typed parse -> COMMAND (back to HEAD); literal header ->
 *            LITERAL (after CONTINUE for {N}).
 *   LITERAL  literal bytes into the argument (APPEND's message: IMAP_DATA
 *            chunks or the message buffer) -> LINE.
 *   RAW      SYNC* remainder passed through; the scanner finds {N}, {N+}
 *            and %{...} at line ends -> RAW_LITERAL, or the final LF ->
 *            READY (streaming) / COMMAND (buffered).
 *   SKIP_LINE / SKIP_LITERAL  after an error: to the end of the command,
 *            stepping over non-synchronising literals -> HEAD.
 *   EXPECT   one line for IDLE's DONE or a SASL response -> HEAD.
 *   DEAD     after a fatal error.
 *
 * Invariants: every call either consumes input or returns an event; the
 * line buffer holds at most max_line bytes; literal bytes other than
 * APPEND's message count against max_command; all results live in the
 * arena and the buffers until the next call.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "lib/xalloc.h"
#include "proto/imap/imap_private.h"

/* Buffers above this are freed between commands rather than kept. */
#define KEEP_BUFFER (256 * 1024)

struct imap_parser *imap_parser_new(void)
{
	struct imap_parser *p = xcalloc(1, sizeof(*p));
	imap_parser_set_mode(p, IMAP_MODE_PREAUTH);
	p->max_message = MAX_MESSAGE_SIZE;
	p->state = IMAP_PS_HEAD;
	p->expect = IMAP_EXPECT_COMMAND;
	imap_tok_init(&p->tok);
	imap_scan_init(&p->scan);
	return p;
}

void imap_parser_free(struct imap_parser **pp)
{
	struct imap_parser *p = *pp;
	if (!p)
		return;
	imap_arena_free(&p->arena);
	buf_free(&p->line);
	buf_free(&p->raw);
	buf_free(&p->msg);
	buf_free(&p->expect_tag);
	free(p);
	*pp = NULL;
}

/* The limits of the mode (ID raises them for its own command: set_name). */
static void set_limits(struct imap_parser *p)
{
	if (p->mode == IMAP_MODE_PREAUTH) {
		p->max_line = IMAP_PREAUTH_MAX_LINE;
		p->max_literal = IMAP_PREAUTH_MAX_LITERAL;
		p->max_command = IMAP_PREAUTH_MAX_COMMAND_SIZE;
	} else {
		p->max_line = IMAP_MAX_LINE;
		p->max_literal = IMAP_MAX_LITERAL;
		p->max_command = IMAP_MAX_COMMAND_SIZE;
	}
}

void imap_parser_set_mode(struct imap_parser *p, enum imap_mode mode)
{
	p->mode = mode;
	set_limits(p);
}

void imap_parser_set_max_message(struct imap_parser *p, uint64_t max)
{
	p->max_message = max > (uint64_t)MAX_MESSAGE_SIZE ? (uint64_t)MAX_MESSAGE_SIZE : max;
}

void imap_parser_set_buffered(struct imap_parser *p, int on)
{
	p->buffered = on != 0;
}

static void shrink(struct buf *b)
{
	if (b->cap > KEEP_BUFFER)
		buf_free(b);
	else
		buf_reset(b);
}

/* Starts a new command: forgets everything of the previous one. */
static void begin_command(struct imap_parser *p)
{
	imap_arena_reset(&p->arena);
	shrink(&p->line);
	shrink(&p->raw);
	shrink(&p->msg);
	p->cmd_off = p->seg_pos = p->cmd_text = p->cmd_size = p->end_pos = 0;
	p->first_seg = 1;
	p->head_len = 0;
	p->nspaces = 0;
	p->tag = NULL;
	p->def = NULL;
	p->uid = 0;
	imap_tok_init(&p->tok);
	p->have_pending = 0;
	p->lit_arg = NULL;
	p->lit_dst = NULL;
	p->lit_left = 0;
	p->raw_len = 0;
	p->nmsgs = 0;
	p->msg_bytes = 0;
	memset(&p->cmd, 0, sizeof(p->cmd));
	p->started = 1;
	set_limits(p);
}

void imap_parser_reset(struct imap_parser *p)
{
	begin_command(p);
	p->started = 0;
	p->state = IMAP_PS_HEAD;
	p->expect = IMAP_EXPECT_COMMAND;
	memset(&p->err, 0, sizeof(p->err));
}

/* The command is over (answered or failed): the next byte starts anew. */
static void end_command(struct imap_parser *p)
{
	p->state = IMAP_PS_HEAD;
	p->started = 0;
}

int imap_parser_fail(struct imap_parser *p, enum imap_resp resp, const char *code,
		     uint64_t pos, int fatal, const char *fmt, ...)
{
	if (p->err.msg)
		return -1;	/* the first error of an event wins */
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(p->errmsg, sizeof(p->errmsg), fmt, ap);
	va_end(ap);
	p->err.tag = p->tag;
	p->err.resp = resp;
	p->err.code = code;
	p->err.msg = p->errmsg;
	p->err.pos = pos;
	p->err.fatal = fatal;
	return -1;
}

static int go_dead(struct imap_parser *p)
{
	p->err.fatal = 1;
	p->state = IMAP_PS_DEAD;
	return IMAP_ERROR;
}

/* Skips to the end of the command; the scanner is primed with the bytes
 * of the line already read so a literal header split across reads is
 * still recognised. */
static void start_skip(struct imap_parser *p, int raw, const char *seen, size_t n)
{
	imap_scan_init(&p->scan);
	for (size_t i = 0; i < n; i++)
		imap_scan_byte(&p->scan, (unsigned char)seen[i]);
	p->skip_raw = raw;
	p->state = IMAP_PS_SKIP_LINE;
	buf_reset(&p->line);
}

/* A literal of size bytes will follow and must be thrown away. */
static void skip_literal(struct imap_parser *p, uint64_t size, int raw)
{
	p->skip_raw = raw;
	imap_scan_init(&p->scan);
	if (size == 0) {
		p->state = IMAP_PS_SKIP_LINE;
	} else {
		p->skip_left = size;
		p->state = IMAP_PS_SKIP_LITERAL;
	}
}

/* After an error found at the end of a segment s[0..n) (CRLF excluded):
 * decides how the rest of the command is stepped over. */
static int error_at_eol(struct imap_parser *p, const char *s, size_t n)
{
	uint64_t size = 0;
	int nonsync = 0, file = 0;
	if (p->err.fatal)
		return go_dead(p);
	imap_scan_init(&p->scan);
	for (size_t i = 0; i < n; i++)
		imap_scan_byte(&p->scan, (unsigned char)s[i]);
	int r = imap_scan_eol(&p->scan, &size, &nonsync, &file);
	if (r == IMAP_SCAN_BAD)
		return go_dead(p);
	if (r == IMAP_SCAN_LITERAL && nonsync)
		skip_literal(p, size, 0);
	else
		end_command(p);	/* a {N} is never sent after our BAD */
	return IMAP_ERROR;
}

static int tag_char(unsigned char c)
{
	if (c <= 0x20 || c >= 0x7f)
		return 0;
	return !strchr("(){%*\"\\+", c);
}

/* The tag is line[0..n). */
static int set_tag(struct imap_parser *p, size_t n)
{
	const char *s = p->line.ptr;
	for (size_t i = 0; i < n; i++)
		if (!tag_char((unsigned char)s[i]))
			return imap_parser_fail(p, IMAP_RESP_BAD, NULL, i, 0, "invalid tag");
	if (n == 0)
		return imap_parser_fail(p, IMAP_RESP_BAD, NULL, 0, 0, "missing tag");
	p->tag = imap_arena_strndup(&p->arena, s, n);
	p->head_len = n + 1;
	return 0;
}

/* The command name is line[off..off+n): 1 = resolved, 0 = it was UID and
 * the sub-command follows, -1 = error. */
static int set_name(struct imap_parser *p, size_t off, size_t n)
{
	const char *s = p->line.ptr + off;
	if (n == 0)
		return imap_parser_fail(p, IMAP_RESP_BAD, NULL, off, 0,
					p->uid ? "missing command after UID" : "missing command");
	if (!p->uid && imap_word_eq(s, n, "UID")) {
		p->uid = 1;
		p->head_len = off + n + 1;
		return 0;
	}
	const struct imap_cmd_def *def = imap_cmd_lookup(s, n, p->uid);
	if (!def)
		return imap_parser_fail(p, IMAP_RESP_BAD, NULL, off, 0,
					p->uid ? "UID must be followed by FETCH, STORE, COPY, MOVE,"
						 " SEARCH, SORT, THREAD or EXPUNGE"
					       : "unknown command");
	if (p->mode == IMAP_MODE_PREAUTH && !(def->flags & IMAP_CMDF_PREAUTH))
		return imap_parser_fail(p, IMAP_RESP_BAD, NULL, off, 0,
					"%s is not allowed before login", def->name);
	p->def = def;
	p->head_len = off + n + 1;
	if (def->id == IMAP_CMD_ID) {	/* RFC 2971's 30 pairs: IMAP_ID_MAX_LINE */
		if (p->max_line < IMAP_ID_MAX_LINE)
			p->max_line = IMAP_ID_MAX_LINE;
		if (p->max_command < IMAP_ID_MAX_LINE)
			p->max_command = IMAP_ID_MAX_LINE;
	}
	return 1;
}

static int process_segment(struct imap_parser *p);

/* HEAD: tag and command name, byte by byte. */
static int st_head(struct imap_parser *p, const char *s, size_t n, size_t *used)
{
	if (!p->started)
		begin_command(p);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (p->cmd_text >= p->max_line) {
			*used = i;
			imap_parser_fail(p, IMAP_RESP_BAD, "TOOBIG", p->cmd_off, 0,
					 "line too long (limit %llu bytes)",
					 (unsigned long long)p->max_line);
			start_skip(p, 0, p->line.ptr, p->line.len);
			return IMAP_ERROR;
		}
		buf_putc(&p->line, (char)c);
		p->cmd_text++;
		p->cmd_off++;
		if (c != ' ' && c != '\n')
			continue;
		*used = i + 1;
		size_t len = p->line.len - 1;	/* without this SP or LF */
		if (c == '\n') {
			if (len > 0 && p->line.ptr[len - 1] == '\r')
				len--;
			if (len == 0 && p->nspaces == 0) {
				/* empty line: ignored */
				p->started = 0;
				buf_reset(&p->line);
				return IMAP_NEED_MORE;
			}
		}
		int r;
		if (p->nspaces == 0) {
			r = set_tag(p, len);
			if (r == 0 && c == '\n')
				r = imap_parser_fail(p, IMAP_RESP_BAD, NULL, len, 0, "missing command");
		} else {
			size_t off = p->head_len;
			r = set_name(p, off, len >= off ? len - off : 0);
			if (r == 0 && c == '\n')
				r = imap_parser_fail(p, IMAP_RESP_BAD, NULL, len, 0,
						     "missing command after UID");
		}
		p->nspaces += c == ' ';
		if (r < 0) {
			if (c == '\n')
				return error_at_eol(p, p->line.ptr, len);
			start_skip(p, 0, p->line.ptr, p->line.len);
			return IMAP_ERROR;
		}
		if (p->def == NULL)
			continue;	/* tag read, or UID read */
		if (p->def->flags & IMAP_CMDF_RAW) {
			if (c == '\n') {
				imap_parser_fail(p, IMAP_RESP_BAD, NULL, len, 0,
						 "%s: missing argument", p->def->name);
				end_command(p);
				return IMAP_ERROR;
			}
			imap_scan_init(&p->scan);
			buf_reset(&p->line);
			p->state = IMAP_PS_RAW;
			return IMAP_NEED_MORE;
		}
		if (c == '\n')
			return process_segment(p);
		p->state = IMAP_PS_LINE;
		return IMAP_NEED_MORE;
	}
	*used = n;
	return IMAP_NEED_MORE;
}

/* The literal whose header ended the segment just tokenized. */
static int literal_begin(struct imap_parser *p, uint64_t size, int nonsync)
{
	struct imap_arg *a = imap_tok_last(p);
	int is_msg = p->def->id == IMAP_CMD_APPEND && p->tok.depth == 0 && p->tok.root.count >= 2;

	p->have_pending = 1;
	p->pending.tag = p->tag;
	p->pending.cmd = p->def->id;
	p->pending.size = size;
	p->pending.nonsync = nonsync;
	p->pending.is_message = is_msg;
	p->pending.received = 0;
	p->pending.args = p->tok.root.child;

	int bad = 0;
	if (is_msg) {
		if (imap_cmd_append_precheck(p) < 0)
			bad = 1;
		else if (size > p->max_message)
			bad = imap_parser_fail(p, IMAP_RESP_NO, "TOOBIG", a->pos, 0,
					       "message too big (limit %llu bytes)",
					       (unsigned long long)p->max_message);
		else if (p->nmsgs >= IMAP_MAX_MULTIAPPEND)
			bad = imap_parser_fail(p, IMAP_RESP_NO, "LIMIT", a->pos, 0,
					       "too many messages in one APPEND (limit %d)", IMAP_MAX_MULTIAPPEND);
		else if (p->msg_bytes + size > IMAP_MAX_MULTIAPPEND_BYTES)
			bad = imap_parser_fail(p, IMAP_RESP_NO, "TOOBIG", a->pos, 0,
					       "messages of one APPEND too big (limit %llu bytes)",
					       (unsigned long long)IMAP_MAX_MULTIAPPEND_BYTES);
	} else if (size > p->max_literal) {
		bad = imap_parser_fail(p, IMAP_RESP_BAD, "TOOBIG", a->pos, 0,
				       "literal too big (limit %llu bytes)",
				       (unsigned long long)p->max_literal);
	} else if (p->cmd_text + p->cmd_size + size > p->max_command) {
		bad = imap_parser_fail(p, IMAP_RESP_BAD, "TOOBIG", a->pos, 0,
				       "command too big (limit %llu bytes)",
				       (unsigned long long)p->max_command);
	}
	if (bad) {
		p->have_pending = 0;
		if (nonsync)
			skip_literal(p, size, 0);
		else
			end_command(p);
		return IMAP_ERROR;
	}
	p->lit_arg = a;
	p->lit_left = size;
	if (is_msg) {
		/* MULTIAPPEND: the messages of one command follow each other */
		if (p->nmsgs++ == 0)
			buf_reset(&p->msg);
		p->msg_bytes += size;
		a->str = p->buffered ? "" : NULL;
	} else {
		p->lit_dst = imap_arena_alloc(&p->arena, (size_t)size + 1);
		a->str = p->lit_dst;
	}
	p->state = size ? IMAP_PS_LITERAL : IMAP_PS_LINE;
	p->seg_pos = p->cmd_off;
	return nonsync ? IMAP_NEED_MORE : IMAP_CONTINUE;
}

static int finish_command(struct imap_parser *p)
{
	end_command(p);
	if (imap_cmd_build(p) < 0)
		return IMAP_ERROR;
	return IMAP_COMMAND;
}

/* LINE got its LF: tokenize the segment in p->line. */
static int process_segment(struct imap_parser *p)
{
	const char *s = p->line.ptr;
	size_t n = p->line.len - 1;
	if (n > 0 && s[n - 1] == '\r')
		n--;
	size_t start = p->first_seg ? (p->head_len < n ? p->head_len : n) : 0;
	uint64_t size = 0;
	int nonsync = 0;

	p->have_pending = 0;
	p->end_pos = p->seg_pos + n;
	int r = imap_tok_run(p, s + start, n - start, p->seg_pos + start, &size, &nonsync);
	p->first_seg = 0;
	if (r == IMAP_TOK_ERROR) {
		int ev = error_at_eol(p, s, n);
		buf_reset(&p->line);
		return ev;
	}
	buf_reset(&p->line);
	if (r == IMAP_TOK_LITERAL)
		return literal_begin(p, size, nonsync);
	if (p->tok.depth > 0) {
		imap_parser_fail(p, IMAP_RESP_BAD, NULL, p->end_pos, 0, "missing \")\"");
		end_command(p);
		return IMAP_ERROR;
	}
	return finish_command(p);
}

/* LINE: the rest of a segment up to LF. */
static int st_line(struct imap_parser *p, const char *s, size_t n, size_t *used)
{
	const char *lf = memchr(s, '\n', n);
	size_t take = lf ? (size_t)(lf - s) + 1 : n;
	uint64_t room_line = p->cmd_text < p->max_line ? p->max_line - p->cmd_text : 0;
	uint64_t total = p->cmd_text + p->cmd_size;
	uint64_t room_cmd = total < p->max_command ? p->max_command - total : 0;
	uint64_t room = room_line < room_cmd ? room_line : room_cmd;

	if (take > room) {
		buf_append(&p->line, s, (size_t)room);
		p->cmd_text += room;
		p->cmd_off += room;
		*used = (size_t)room;
		if (room_line <= room_cmd)
			imap_parser_fail(p, IMAP_RESP_BAD, "TOOBIG", p->cmd_off, 0,
					 "line too long (limit %llu bytes)",
					 (unsigned long long)p->max_line);
		else
			imap_parser_fail(p, IMAP_RESP_BAD, "TOOBIG", p->cmd_off, 0,
					 "command too big (limit %llu bytes)",
					 (unsigned long long)p->max_command);
		start_skip(p, 0, p->line.ptr, p->line.len);
		return IMAP_ERROR;
	}
	buf_append(&p->line, s, take);
	p->cmd_text += take;
	p->cmd_off += take;
	*used = take;
	return lf ? process_segment(p) : IMAP_NEED_MORE;
}

/* LITERAL: bytes of a literal argument or of APPEND's message. */
static int st_literal(struct imap_parser *p, const char *s, size_t n, size_t *used)
{
	size_t take = p->lit_left < n ? (size_t)p->lit_left : n;
	int ev = IMAP_NEED_MORE;
	if (p->pending.is_message) {
		if (p->buffered) {
			buf_append(&p->msg, s, take);
		} else {
			p->data_ptr = s;
			p->data_len = take;
			p->data_kind = IMAP_DATA_MESSAGE;
			ev = IMAP_DATA;
		}
	} else {
		const char *nul = memchr(s, '\0', take);
		if (nul) {
			size_t k = (size_t)(nul - s);
			imap_parser_fail(p, IMAP_RESP_BAD, NULL, p->cmd_off + k, 0,
					 "NUL byte in a literal");
			*used = take;
			p->have_pending = 0;
			skip_literal(p, p->lit_left - take, 0);
			return IMAP_ERROR;
		}
		memcpy(p->lit_dst + p->pending.received, s, take);
		p->cmd_size += take;
	}
	p->pending.received += take;
	p->lit_left -= take;
	p->cmd_off += take;
	*used = take;
	if (p->lit_left == 0) {
		if (p->pending.is_message && p->buffered)
			p->lit_arg->str = buf_cstr(&p->msg);
		p->state = IMAP_PS_LINE;
		p->seg_pos = p->cmd_off;
	}
	return ev;
}

static int st_skip_line(struct imap_parser *p, const char *s, size_t n, size_t *used)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c != '\n') {
			imap_scan_byte(&p->scan, c);
			continue;
		}
		*used = i + 1;
		uint64_t size = 0;
		int nonsync = 0, file = 0;
		int r = imap_scan_eol(&p->scan, &size, &nonsync, &file);
		if (r == IMAP_SCAN_BAD) {
			imap_parser_fail(p, IMAP_RESP_BAD, NULL, p->cmd_off, 1,
					 "literal size out of range");
			return go_dead(p);
		}
		if (r == IMAP_SCAN_LITERAL && (nonsync || p->skip_raw)) {
			skip_literal(p, size, p->skip_raw);
			return IMAP_NEED_MORE;
		}
		end_command(p);
		return IMAP_NEED_MORE;
	}
	*used = n;
	return IMAP_NEED_MORE;
}

static int st_skip_literal(struct imap_parser *p, size_t n, size_t *used)
{
	size_t take = p->skip_left < n ? (size_t)p->skip_left : n;
	p->skip_left -= take;
	*used = take;
	if (p->skip_left == 0) {
		imap_scan_init(&p->scan);
		p->scan.prev = 'x';	/* a literal's end is not a token start */
		p->state = IMAP_PS_SKIP_LINE;
	}
	return IMAP_NEED_MORE;
}

/* The typed command of a SYNC* (its remainder is in raw or went out). */
static int sync_command(struct imap_parser *p)
{
	end_command(p);
	p->cmd.tag = p->tag;
	p->cmd.id = p->def->id;
	p->cmd.name = p->def->name;
	p->cmd.u.sync.raw = p->buffered ? buf_cstr(&p->raw) : NULL;
	p->cmd.u.sync.len = p->raw_len;
	return IMAP_COMMAND;
}

/* Hands k raw bytes on; next is the state after them. Returns the event. */
static int raw_emit(struct imap_parser *p, const char *s, size_t k, enum imap_pstate next)
{
	p->raw_len += k;
	p->cmd_off += k;
	if (!p->buffered) {
		p->data_ptr = s;
		p->data_len = k;
		p->data_kind = IMAP_DATA_SYNC;
		p->state = next == IMAP_PS_HEAD ? IMAP_PS_READY : next;
		return IMAP_DATA;
	}
	if (p->raw.len + k > (uint64_t)DLIST_MAX_COMMAND_BYTES) {
		imap_parser_fail(p, IMAP_RESP_BAD, "TOOBIG", p->cmd_off - k, 0,
				 "%s: command too big (limit %llu bytes)", p->def->name,
				 (unsigned long long)DLIST_MAX_COMMAND_BYTES);
		if (next == IMAP_PS_HEAD)
			end_command(p);
		else if (next == IMAP_PS_RAW_LITERAL)
			skip_literal(p, p->lit_left, 1);
		else {
			/* mid-line: the scanner already knows this line */
			p->state = IMAP_PS_SKIP_LINE;
			p->skip_raw = 1;
		}
		return IMAP_ERROR;
	}
	buf_append(&p->raw, s, k);
	p->state = next;
	if (next == IMAP_PS_HEAD)
		return sync_command(p);
	return IMAP_NEED_MORE;
}

/* RAW: SYNC* text; finds literal headers and the final line end. */
static int st_raw(struct imap_parser *p, const char *s, size_t n, size_t *used)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c != '\n') {
			imap_scan_byte(&p->scan, c);
			continue;
		}
		size_t k = i + 1;
		uint64_t size = 0;
		int nonsync = 0, file = 0;
		*used = k;
		int r = imap_scan_eol(&p->scan, &size, &nonsync, &file);
		if (r == IMAP_SCAN_BAD) {
			imap_parser_fail(p, IMAP_RESP_BAD, NULL, p->cmd_off + i, 1,
					 "literal size out of range");
			return go_dead(p);
		}
		if (r == IMAP_SCAN_NONE)
			return raw_emit(p, s, k, IMAP_PS_HEAD);
		uint64_t limit = (uint64_t)DLIST_MAX_LITERAL;
		if (file)
			limit = p->max_message < (uint64_t)DLIST_MAX_FILE ? p->max_message
									  : (uint64_t)DLIST_MAX_FILE;
		if (size > limit) {
			imap_parser_fail(p, IMAP_RESP_BAD, "TOOBIG", p->cmd_off + i, 0,
					 "%s: %s too big (limit %llu bytes)", p->def->name,
					 file ? "file literal" : "literal",
					 (unsigned long long)limit);
			p->cmd_off += k;
			skip_literal(p, size, 1);
			return IMAP_ERROR;
		}
		p->raw_file = file;
		p->lit_left = size;
		if (size == 0) {
			imap_scan_init(&p->scan);
			p->scan.prev = 'x';
			return raw_emit(p, s, k, IMAP_PS_RAW);
		}
		return raw_emit(p, s, k, IMAP_PS_RAW_LITERAL);
	}
	*used = n;
	return raw_emit(p, s, n, IMAP_PS_RAW);
}

static int st_raw_literal(struct imap_parser *p, const char *s, size_t n, size_t *used)
{
	size_t take = p->lit_left < n ? (size_t)p->lit_left : n;
	*used = take;
	p->lit_left -= take;
	int r;
	if (p->lit_left == 0) {
		imap_scan_init(&p->scan);
		p->scan.prev = 'x';
		r = raw_emit(p, s, take, IMAP_PS_RAW);
	} else {
		r = raw_emit(p, s, take, IMAP_PS_RAW_LITERAL);
	}
	if (r == IMAP_DATA && p->raw_file)
		p->data_kind = IMAP_DATA_SYNC_FILE;
	return r;
}

/* EXPECT: one line (DONE or a SASL response). */
static int st_expect(struct imap_parser *p, const char *s, size_t n, size_t *used)
{
	if (!p->started) {
		begin_command(p);
		p->tag = p->expect_tag.len ? buf_cstr(&p->expect_tag) : NULL;
	}
	const char *lf = memchr(s, '\n', n);
	size_t take = lf ? (size_t)(lf - s) + 1 : n;
	uint64_t room = p->cmd_text < p->max_line ? p->max_line - p->cmd_text : 0;
	if (take > room) {
		*used = (size_t)room;
		p->cmd_off += room;
		imap_parser_fail(p, IMAP_RESP_BAD, "TOOBIG", p->cmd_off, 0,
				 "line too long (limit %llu bytes)",
				 (unsigned long long)p->max_line);
		p->expect = IMAP_EXPECT_COMMAND;
		start_skip(p, 0, NULL, 0);
		return IMAP_ERROR;
	}
	buf_append(&p->line, s, take);
	p->cmd_text += take;
	p->cmd_off += take;
	*used = take;
	if (!lf)
		return IMAP_NEED_MORE;
	buf_truncate(&p->line, p->line.len - 1);
	if (p->line.len > 0 && p->line.ptr[p->line.len - 1] == '\r')
		buf_truncate(&p->line, p->line.len - 1);
	enum imap_expect what = p->expect;
	p->expect = IMAP_EXPECT_COMMAND;
	end_command(p);
	if (what == IMAP_EXPECT_LINE)
		return IMAP_LINE;
	if (imap_word_eq(p->line.ptr, p->line.len, "DONE"))
		return IMAP_DONE;
	imap_parser_fail(p, IMAP_RESP_BAD, NULL, 0, 0, "expected DONE");
	return IMAP_ERROR;
}

int imap_parser_feed(struct imap_parser *p, const void *data, size_t len, size_t *consumed_r)
{
	const char *d = data;
	size_t used = 0;
	int ev = IMAP_NEED_MORE;

	if (p->state == IMAP_PS_DEAD) {
		*consumed_r = len;
		return IMAP_ERROR;
	}
	memset(&p->err, 0, sizeof(p->err));
	p->data_ptr = NULL;
	p->data_len = 0;
	while (ev == IMAP_NEED_MORE) {
		if (p->state == IMAP_PS_READY) {
			ev = sync_command(p);
			break;
		}
		if (used == len)
			break;
		size_t n = 0;
		const char *s = d + used;
		size_t left = len - used;
		switch (p->state) {
		case IMAP_PS_HEAD:
			ev = st_head(p, s, left, &n);
			break;
		case IMAP_PS_LINE:
			ev = st_line(p, s, left, &n);
			break;
		case IMAP_PS_LITERAL:
			ev = st_literal(p, s, left, &n);
			break;
		case IMAP_PS_RAW:
			ev = st_raw(p, s, left, &n);
			break;
		case IMAP_PS_RAW_LITERAL:
			ev = st_raw_literal(p, s, left, &n);
			break;
		case IMAP_PS_SKIP_LINE:
			ev = st_skip_line(p, s, left, &n);
			break;
		case IMAP_PS_SKIP_LITERAL:
			ev = st_skip_literal(p, left, &n);
			break;
		case IMAP_PS_EXPECT:
			ev = st_expect(p, s, left, &n);
			break;
		case IMAP_PS_READY:
		case IMAP_PS_DEAD:
			n = left;
			ev = IMAP_ERROR;
			break;
		}
		used += n;
	}
	*consumed_r = used;
	return ev;
}

const struct imap_cmd *imap_parser_command(const struct imap_parser *p)
{
	return &p->cmd;
}

const struct imap_error *imap_parser_error(const struct imap_parser *p)
{
	return &p->err;
}

const struct imap_pending *imap_parser_pending(const struct imap_parser *p)
{
	return p->have_pending ? &p->pending : NULL;
}

enum imap_data_kind imap_parser_data(const struct imap_parser *p, const void **data_r,
				     size_t *len_r)
{
	*data_r = p->data_ptr;
	*len_r = p->data_len;
	return p->data_kind;
}

const char *imap_parser_line(const struct imap_parser *p, size_t *len_r)
{
	if (len_r)
		*len_r = p->line.len;
	return buf_cstr(&p->line);
}

void imap_parser_reject_literal(struct imap_parser *p)
{
	if (!p->have_pending || p->pending.nonsync || p->pending.received != 0)
		return;
	if (p->state != IMAP_PS_LITERAL && !(p->state == IMAP_PS_LINE && p->pending.size == 0))
		return;
	p->have_pending = 0;
	end_command(p);
}

void imap_parser_expect(struct imap_parser *p, enum imap_expect what)
{
	if (p->state == IMAP_PS_DEAD)
		return;
	if (what == IMAP_EXPECT_COMMAND) {
		if (p->state == IMAP_PS_EXPECT)
			end_command(p);
		p->expect = what;
		return;
	}
	/* after an IMAP_LINE (multi-step SASL) the tag of the command is kept */
	if (p->cmd.tag) {
		buf_reset(&p->expect_tag);
		buf_appends(&p->expect_tag, p->cmd.tag);
	}
	p->expect = what;
	p->state = IMAP_PS_EXPECT;
	p->started = 0;
}
