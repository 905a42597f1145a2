/* buf.h: the one byte-buffer type of tandem.
 *
 * A struct buf owns its memory (ptr, len, cap). It is binary-safe; ptr is
 * kept NUL-terminated (one spare byte past len) so a buf can be handed to
 * C string functions when it holds text. A zeroed struct buf is a valid
 * empty buffer. Allocation failure is fatal (xalloc.h).
 */
#ifndef TANDEM_BUF_H
#define TANDEM_BUF_H

#include <stdarg.h>
#include <stddef.h>

struct buf {
	char *ptr;	/* NULL while cap == 0 */
	size_t len;
	size_t cap;
};

#define BUF_INIT { NULL, 0, 0 }

void buf_reserve(struct buf *b, size_t extra);
void buf_append(struct buf *b, const void *data, size_t len);
void buf_appends(struct buf *b, const char *s);
void buf_putc(struct buf *b, char c);
/* Appends s as a JSON string: quoted, with " and \ escaped and control
 * characters as \u00XX (bytes >= 0x80 pass as they are). */
void buf_json_str(struct buf *b, const char *s);
void buf_printf(struct buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void buf_vprintf(struct buf *b, const char *fmt, va_list ap);
/* Empties the buffer, keeps the memory. */
void buf_reset(struct buf *b);
/* Drops the first n bytes (n <= len). */
void buf_consume(struct buf *b, size_t n);
void buf_truncate(struct buf *b, size_t len);
/* A NUL-terminated view; "" for an empty, never-allocated buffer. */
const char *buf_cstr(const struct buf *b);
/* Frees the memory; the buffer is empty and reusable afterwards. */
void buf_free(struct buf *b);
/* Moves the contents out as a malloc'd NUL-terminated string; b is emptied. */
char *buf_release(struct buf *b);
int buf_eq(const struct buf *b, const char *s);

#endif
