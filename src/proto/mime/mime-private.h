/* mime-private.h: helpers shared by the files of src/proto/mime only.
 * Not to be included from outside this directory (use mime.h).
 * Conventions as in mime.h: functions that write text append to a
 * caller-owned struct buf; returned pointers are owned by the caller
 * and freed with the matching _free below.
 */
#ifndef TANDEM_MIME_PRIVATE_H
#define TANDEM_MIME_PRIVATE_H

#include "proto/mime/mime.h"

/* ---- mime_header.c ---- */

/* ASCII case-insensitive: s[0, len) equals the C string name. */
int mime_eq_nocase(const char *s, size_t len, const char *name);
/* The field's name is name (case-insensitive). */
int mime_field_is(const char *data, const struct mime_field *f,
		  const char *name);
/* Iterates the fields called name inside data[hdr_off, hdr_off+hdr_len):
 * start with *iter = hdr_off; returns 1 with *f_r set, 0 when no more.
 * Fields over MAX_HEADER_LINE are skipped. */
int mime_header_find(const char *data, size_t hdr_off, size_t hdr_len,
		     const char *name, size_t *iter, struct mime_field *f_r);
/* Appends s[0, len) unfolded (CR and LF removed, NUL dropped) with
 * leading and trailing blanks trimmed. */
void mime_unfold(const char *s, size_t len, struct buf *out);
/* Unfolded value of a field as a new NUL-terminated string. */
char *mime_field_value(const char *data, const struct mime_field *f);
void mime_lower(char *s);

/* ---- mime_ctype.c: structured field values (RFC 2045, 2183, 2231) ---- */

/* Skips blanks and (nested) comments from *p up to end. */
void mime_skip_cfws(const char *s, size_t len, size_t *p);
/* Parses "type/subtype; params" (subtype_r NULL: "type; params", as for
 * Content-Disposition). Returns 0 with lowercase type (and subtype) and a
 * params list, or -1 when the value is not valid (nothing allocated). */
int mime_ctype_parse(const char *s, size_t len, char **type_r,
		     char **subtype_r, struct mime_param **params_r);
void mime_params_free(struct mime_param *p);
/* Parses a Content-Language list into a new array of tags. */
void mime_lang_parse(const char *s, size_t len, char ***tags_r,
		     size_t *ntags_r);
/* The first token of a field value (Content-Transfer-Encoding), lowercase,
 * or NULL when there is none. */
char *mime_token_parse(const char *s, size_t len);

/* ---- mime_addr.c ---- */

/* One address of an IMAP envelope list. Group start: host NULL, mailbox
 * = group name; group end: host and mailbox NULL. */
struct mime_addr {
	char *name, *adl, *mailbox, *host;
	struct mime_addr *next;
};
/* Parses an unfolded address-list, best effort; NULL when it holds no
 * address at all. */
struct mime_addr *mime_addr_parse(const char *s, size_t len);
void mime_addr_free(struct mime_addr *a);

/* ---- mime_imapstr.c: IMAP4rev1 strings ---- */

/* Appends s[0, len) as an IMAP string: quoted when every byte is printable
 * ASCII or TAB and it is short, else a literal {n}CRLF... (8-bit bytes
 * kept). NUL bytes, which no IMAP4rev1 string may carry, are dropped.
 * s NULL appends NIL. */
void mime_imap_nstring(struct buf *out, const char *s, size_t len);
/* The same for a C string (NULL: NIL). */
void mime_imap_cstring(struct buf *out, const char *s);
/* A C string uppercased (ASCII), as an IMAP string. */
void mime_imap_upper(struct buf *out, const char *s);

/* ---- mime_envelope.c ---- */

/* ENVELOPE of the message whose header is part's header. */
void mime_envelope_part(const struct mime_message *msg,
			const struct mime_part *part, struct buf *out);

/* ---- mime_charset.c ---- */

/* 1 if mime_charset_to_utf8() knows the charset name. */
int mime_charset_known(const char *name);

/* ---- mime_decode.c ---- */

void mime_base64_decode(const char *s, size_t len, struct buf *out);
/* underscore: 1 for RFC 2047 Q (where '_' is a space). */
void mime_qp_decode(const char *s, size_t len, int underscore,
		    struct buf *out);
/* The part's body decoded and converted to UTF-8 (charset param). */
void mime_part_text(const struct mime_message *msg,
		    const struct mime_part *part, struct buf *out);

#endif
