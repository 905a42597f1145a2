/* mime.h: the RFC 5322 / MIME message parser behind IMAP FETCH and SEARCH.
 *
 * mime_parse() takes a whole message in memory (exact stored bytes, CRLF
 * or bare LF line ends) and builds a tree of parts that only records byte
 * offsets and the few decoded Content-* values; nothing is copied. Any
 * byte string is a message: parsing never fails, never reads outside
 * [data, data + len), and is bounded by MIME_MAX_DEPTH / MIME_MAX_PARTS /
 * MIME_MAX_PARAMS (src/lib/limits.h). From the tree it answers:
 *   - ENVELOPE, BODY and BODYSTRUCTURE strings (RFC 3501 7.4.2),
 *   - BODY[section] bytes (RFC 3501 6.4.5), without copying except for
 *     HEADER.FIELDS[.NOT],
 *   - SEARCH HEADER/FROM/.../BODY/TEXT matching and Date: parsing.
 * No I/O anywhere. docs/mime.md explains the choices.
 *
 * Ownership: a struct mime_message borrows the message bytes: the caller
 * keeps them alive and unchanged until mime_message_free(). Everything
 * the message points to is owned by it. Output buffers (struct buf) are
 * the caller's; functions that write text APPEND to them.
 */
#ifndef TANDEM_MIME_H
#define TANDEM_MIME_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "lib/buf.h"
#include "lib/err.h"
#include "lib/limits.h"

/* ---- header fields (incremental: usable on a growing buffer) ---------- */

#define MIME_NEED_MORE (-2)

struct mime_field {
	size_t off;		/* first byte of the field (its name) */
	size_t len;		/* whole field, folded lines and final line end */
	size_t name_len;	/* 0 when the first line has no valid "name:" */
	size_t value_off;	/* first byte after the colon (off when no name) */
	size_t value_len;	/* value up to the final line end, excluded */
	int too_long;		/* a line is over MAX_HEADER_LINE: not parsed */
};

/* Reads the header field starting at *pos in data[0, len).
 * Returns 1: *field_r is set and *pos moved past the field;
 *         0: end of the header: *pos moved past the empty line when there
 *            is one, else (at_eof, data ended) *pos == len;
 *         MIME_NEED_MORE: at_eof is 0 and the field (or the decision
 *            whether the next line folds into it) needs more bytes; *pos
 *            is unchanged. Call again with the same data and more bytes.
 * A line without a valid field name is returned as a field with
 * name_len 0 (kept, as broken mail has such lines). */
int mime_header_next(const char *data, size_t len, size_t *pos, int at_eof,
		     struct mime_field *field_r);

/* ---- the part tree ------------------------------------------------------ */

struct mime_param {
	char *name;		/* lowercase; RFC 2231 sections merged: a name
				 * ending in '*' holds charset'lang'%XX text */
	char *value;
	struct mime_param *next;
};

struct mime_part {
	/* Byte offsets into the message. The header includes its empty
	 * line; a part without one is all header (body_len 0). */
	size_t hdr_off, hdr_len;
	size_t body_off, body_len;
	size_t lines;		/* line ends in the body, plus a last line
				 * without one */
	unsigned depth;		/* 0 for the message itself */
	char *type, *subtype;	/* lowercase, never NULL */
	struct mime_param *params;
	char *id, *description, *location, *md5;	/* NULL when absent */
	char *encoding;		/* lowercase token; NULL when absent (7bit) */
	char *disposition;	/* lowercase token or NULL */
	struct mime_param *disp_params;
	char **languages;	/* Content-Language tags, as written */
	size_t nlanguages;
	/* multipart/...: its parts in order (at least one) */
	struct mime_part *children;
	struct mime_part *next;	/* next sibling */
	/* message/rfc822: the enclosed message, whose header is the enclosed
	 * message's header and whose body is its body */
	struct mime_part *message;
};

struct mime_message {
	const char *data;	/* borrowed */
	size_t len;
	struct mime_part *root;	/* header = the message header */
	size_t nparts;
};

/* Parses data[0, len). Never fails; the result is freed with
 * mime_message_free(). data must outlive the result. */
struct mime_message *mime_parse(const char *data, size_t len);
void mime_message_free(struct mime_message **msg);

/* Looks up a parameter (name case-insensitive, without a trailing '*')
 * and appends its value to *value_r, decoded to UTF-8 when it was an
 * RFC 2231 extended value. Returns 1 if found, 0 if not. */
int mime_param_get(const struct mime_param *list, const char *name,
		   struct buf *value_r);

/* ---- FETCH ENVELOPE / BODY / BODYSTRUCTURE ------------------------------ */

/* Appends the ENVELOPE of the message (RFC 3501 7.4.2), "(" ... ")". */
void mime_envelope_write(const struct mime_message *msg, struct buf *out);
/* Appends BODY (extended 0) or BODYSTRUCTURE (extended 1). */
void mime_bodystructure_write(const struct mime_message *msg, int extended,
			      struct buf *out);

/* ---- FETCH BODY[section] ------------------------------------------------ */

enum mime_section_text {
	MIME_SECTION_NONE,		/* BODY[] or BODY[1.2] */
	MIME_SECTION_HEADER,
	MIME_SECTION_HEADER_FIELDS,
	MIME_SECTION_HEADER_FIELDS_NOT,
	MIME_SECTION_TEXT,
	MIME_SECTION_MIME,
};

/* A section spec. A path is at most one number per nesting level. */
#define MIME_SECTION_MAX_PATH (MIME_MAX_DEPTH + 1)
struct mime_section {
	uint32_t path[MIME_SECTION_MAX_PATH];	/* part numbers, each >= 1 */
	size_t npath;
	enum mime_section_text text;
	char **fields;		/* HEADER.FIELDS[.NOT] names, owned */
	size_t nfields;
};

/* Parses the text between "[" and "]" of BODY[...], e.g.
 * "1.2.HEADER.FIELDS (From \"To\")" (names are atoms or quoted strings;
 * the IMAP parser handles literals and calls mime_section_add_field).
 * Returns 0, or -1 with err (TE_INVALID, message names the byte offset)
 * and *errpos_r (may be NULL) set. *sec_r is initialised either way and
 * must be released with mime_section_clear(). */
int mime_section_parse(const char *s, size_t len, struct mime_section *sec_r,
		       size_t *errpos_r, struct terr *err);
/* Adds a copy of name[0, len) to the HEADER.FIELDS list. */
void mime_section_add_field(struct mime_section *sec, const char *name,
			    size_t len);
void mime_section_clear(struct mime_section *sec);

/* Resolves a section (RFC 3501 6.4.5). On success returns 0 and sets
 * *data_r and *len_r to bytes inside the message or, for HEADER.FIELDS[.NOT],
 * inside *scratch (reset first; keep it until the bytes are sent).
 * Returns -1 with err TE_NOTFOUND when the part does not exist or the
 * section text does not apply to it (HEADER/TEXT on a part that is not
 * message/rfc822, MIME without a part number). <partial> is the caller's. */
int mime_section_fetch(const struct mime_message *msg,
		       const struct mime_section *sec, struct buf *scratch,
		       const char **data_r, size_t *len_r, struct terr *err);

/* FETCH BINARY[path] (RFC 3516): appends the part's body with its
 * Content-Transfer-Encoding undone (base64, quoted-printable; 7bit, 8bit,
 * binary and multipart or message bodies as they are); the whole message
 * for an empty path. -1 with TE_NOTFOUND (no such part) or TE_INVALID
 * (an encoding it does not know: UNKNOWN-CTE). */
int mime_section_binary(const struct mime_message *msg, const uint32_t *path, size_t npath, struct buf *out,
			struct terr *err);

/* ---- decoding ------------------------------------------------------------ */

/* Converts text in charset (case-insensitive name) to UTF-8, appending to
 * out. Known: us-ascii, utf-8, iso-8859-1..16, windows-1252 (and common
 * aliases). Returns 1 when converted, 0 when the charset is unknown (the
 * bytes are appended unchanged). Invalid UTF-8 is passed through. */
int mime_charset_to_utf8(const char *charset, const char *s, size_t len,
			 struct buf *out);
/* Appends s with RFC 2047 encoded-words (Q and B) decoded to UTF-8;
 * words in unknown charsets and malformed words are kept as written.
 * Whitespace between adjacent encoded-words is dropped. */
void mime_decode_words(const char *s, size_t len, struct buf *out);
/* Appends a leaf part's body with its Content-Transfer-Encoding undone
 * (base64, quoted-printable; others as is). */
void mime_part_decode(const struct mime_message *msg,
		      const struct mime_part *part, struct buf *out);

/* ---- SEARCH -------------------------------------------------------------- */

/* Folds UTF-8 text for case-insensitive comparison, in place: ASCII,
 * Latin-1, Latin Extended-A, Greek and Cyrillic capitals to small
 * letters. The length never changes. */
void mime_fold(char *s, size_t len);
/* 1 if needle occurs in hay, comparing folded text; an empty needle
 * always matches. Neither is modified. */
int mime_match(const char *hay, size_t hlen, const char *needle, size_t nlen);

/* Appends the first top-level header field called name (case-insensitive),
 * unfolded, trimmed and with encoded-words decoded to UTF-8.
 * Returns 1 if the field exists, 0 if not. */
int mime_header_value(const struct mime_message *msg, const char *name,
		      struct buf *out);
/* SEARCH HEADER name needle (and FROM, TO, CC, BCC, SUBJECT): 1 if a
 * top-level field called name contains the UTF-8 needle after decoding
 * and folding (an empty needle matches any such field), else 0. */
int mime_search_header(const struct mime_message *msg, const char *name,
		       const char *needle, size_t nlen);
/* Appends the searchable body text: every text/ part (also inside
 * enclosed messages) decoded to UTF-8, and the decoded header of every
 * enclosed message, each followed by "\n". */
void mime_body_text(const struct mime_message *msg, struct buf *out);
/* SEARCH BODY needle: 1 if mime_body_text() contains it, else 0. */
int mime_search_body(const struct mime_message *msg, const char *needle,
		     size_t nlen);
/* SEARCH TEXT needle: the decoded top-level header or the body text. */
int mime_search_text(const struct mime_message *msg, const char *needle,
		     size_t nlen);

/* ---- SORT and THREAD (mime_sort.c) ---------------------------------------- */

/* Appends the base subject of a decoded, unfolded Subject (RFC 5256 2.1:
 * white space runs made one space, "Re:", "Fwd:", "[blob]" leaders,
 * "(fwd)" trailers and "[fwd: ...]" wrappers removed). Returns 1 when a
 * reply or forward marker was removed, else 0. */
int mime_base_subject(const char *subject, size_t len, struct buf *out);
/* Appends what SORT compares of the first address of a top-level field:
 * its addr-mailbox (FROM, TO, CC), or with display its decoded display
 * name, else "mailbox@host" (RFC 5957). Returns 1, or 0 when the field
 * has no address (nothing appended). */
int mime_sort_address(const struct mime_message *msg, const char *field, int display, struct buf *out);

/* Appends the RFC 8970 PREVIEW of a message: the text of its first
 * text/plain part (else of its first text/html part, tags dropped),
 * decoded to UTF-8, white space runs made one space, at most max_chars
 * characters. Nothing when it has no such part. */
void mime_preview(const struct mime_message *msg, size_t max_chars, struct buf *out);

/* ---- dates -------------------------------------------------------------- */

/* Parses an RFC 5322 date-time (obsolete forms tolerated: no weekday,
 * 2- and 3-digit years, no seconds, named and military zones, comments,
 * no zone = +0000). Returns 0 with *t_r (UTC) and *tzoff_r (zone offset,
 * minutes east of UTC) set, or -1 when it is not a date. The date as
 * written (for SENTBEFORE/SENTON/SENTSINCE) is the UTC calendar day of
 * *t_r + *tzoff_r * 60. */
int mime_date_parse(const char *s, size_t len, time_t *t_r, int *tzoff_r);
/* The same for the message's first Date: field. -1 if none or invalid. */
int mime_message_date(const struct mime_message *msg, time_t *t_r,
		      int *tzoff_r);

#endif
