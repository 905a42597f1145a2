/* mime_imapstr.c: writing IMAP4rev1 strings (RFC 3501 4.3, 9: string =
 * quoted / literal) for ENVELOPE and BODYSTRUCTURE. Private to the MIME
 * module so it does not depend on the IMAP response writer. */
#include "proto/mime/mime-private.h"

#include <string.h>

/* Longer strings go as literals: some clients cap quoted string length. */
#define QUOTED_MAX 1024

void mime_imap_nstring(struct buf *out, const char *s, size_t len)
{
	if (!s) {
		buf_appends(out, "NIL");
		return;
	}
	size_t n = 0;		/* bytes without NUL */
	int literal = 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == 0)
			continue;
		n++;
		if ((c < 32 && c != '\t') || c >= 127)
			literal = 1;
	}
	if (n > QUOTED_MAX)
		literal = 1;
	if (literal) {
		buf_printf(out, "{%zu}\r\n", n);
		buf_reserve(out, n);
		for (size_t i = 0; i < len; i++)
			if (s[i] != '\0')
				buf_putc(out, s[i]);
		return;
	}
	buf_reserve(out, n + 2);
	buf_putc(out, '"');
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		if (c == '\0')
			continue;
		if (c == '"' || c == '\\')
			buf_putc(out, '\\');
		buf_putc(out, c);
	}
	buf_putc(out, '"');
}

void mime_imap_cstring(struct buf *out, const char *s)
{
	mime_imap_nstring(out, s, s ? strlen(s) : 0);
}

void mime_imap_upper(struct buf *out, const char *s)
{
	struct buf u = BUF_INIT;
	for (; *s; s++)
		buf_putc(&u, (*s >= 'a' && *s <= 'z') ? (char)(*s - 32) : *s);
	mime_imap_nstring(out, buf_cstr(&u), u.len);
	buf_free(&u);
}
