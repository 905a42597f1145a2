/* imap_write.h: helpers that append IMAP response syntax to a struct buf.
 *
 * Nothing here does I/O: the session sends the buffer. Strings are
 * binary-safe (pointer + length). Every function appends to b and cannot
 * fail (allocation failure is fatal).
 */
#ifndef TANDEM_IMAP_WRITE_H
#define TANDEM_IMAP_WRITE_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "lib/buf.h"
#include "proto/imap/imap_cmd.h"

struct imap_error;

/* Strings at least this long go out as literals even when they could be
 * quoted (keeps response lines short). */
#define IMAP_WRITE_QUOTED_MAX 1024

/* An atom when s is a valid non-empty atom other than NIL, else a quoted
 * string when possible, else a literal {N} (8-bit bytes, CR, LF, NUL, or
 * IMAP_WRITE_QUOTED_MAX bytes and more). */
void imap_write_astring(struct buf *b, const char *s, size_t len);
/* A quoted string or a literal, never an atom. */
void imap_write_string(struct buf *b, const char *s, size_t len);
/* NIL when s is NULL, else imap_write_string(). */
void imap_write_nstring(struct buf *b, const char *s, size_t len);
/* Always a literal: "{len}\r\n" and the bytes. */
void imap_write_literal(struct buf *b, const char *s, size_t len);
/* A quoted string; s must be free of CR, LF and NUL (they are dropped). */
void imap_write_quoted(struct buf *b, const char *s, size_t len);

/* "dd-Mon-yyyy hh:mm:ss +hhmm" in double quotes: t shown in the zone
 * tzoff minutes east of UTC (RFC 3501 date-time, day zero-padded). */
void imap_write_datetime(struct buf *b, time_t t, int tzoff);
/* "(\Seen $Junk)": the flags as given, space separated. */
void imap_write_flags(struct buf *b, const char *const *flags, size_t count);
/* A sorted (ascending) UID or sequence number list as a compact set,
 * "1:3,7"; duplicates are merged. count 0 writes nothing. */
void imap_write_seqset(struct buf *b, const uint32_t *nums, size_t count);

/* "* " fmt CRLF */
void imap_write_untagged(struct buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* tag SP resp SP ["[" code "] "] fmt CRLF; resp is "OK", "NO" or "BAD";
 * code may be NULL; a NULL tag writes "*". */
void imap_write_tagged(struct buf *b, const char *tag, const char *resp,
		       const char *code, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
/* The reply to a parser error: "tag BAD [code] msg" (or "* BAD ...");
 * for a fatal error, "* BYE msg" instead. */
void imap_write_error(struct buf *b, const struct imap_error *err);

#endif
