/* mime_charset.c: charset names and conversion to UTF-8 for SEARCH and
 * RFC 2047/2231 decoding. Only what a mail server meets most: US-ASCII,
 * UTF-8, ISO-8859-1..16 and windows-1252 (the usual mislabel of Latin-1),
 * from tables (mime_charset_tables.c), without iconv, so results do not
 * depend on the host's locale data. Unknown charsets pass bytes through. */
#include "proto/mime/mime-private.h"
#include "proto/mime/mime-charset.h"

#include <stdlib.h>
#include <string.h>

enum cs_kind { CS_UNKNOWN, CS_ASCII, CS_UTF8, CS_LATIN1, CS_TABLE };

struct cs {
	enum cs_kind kind;
	const uint16_t *table;
};

static const uint16_t *iso_table(int n)
{
	switch (n) {
	case 2: return mime_cs_iso8859_2;
	case 3: return mime_cs_iso8859_3;
	case 4: return mime_cs_iso8859_4;
	case 5: return mime_cs_iso8859_5;
	case 6: return mime_cs_iso8859_6;
	case 7: return mime_cs_iso8859_7;
	case 8: return mime_cs_iso8859_8;
	case 9: return mime_cs_iso8859_9;
	case 10: return mime_cs_iso8859_10;
	case 11: return mime_cs_iso8859_11;
	case 13: return mime_cs_iso8859_13;
	case 14: return mime_cs_iso8859_14;
	case 15: return mime_cs_iso8859_15;
	case 16: return mime_cs_iso8859_16;
	default: return NULL;
	}
}

static struct cs iso(int n)
{
	struct cs c = { CS_UNKNOWN, NULL };
	if (n == 1) {
		c.kind = CS_LATIN1;
	} else if ((c.table = iso_table(n)) != NULL) {
		c.kind = CS_TABLE;
	}
	return c;
}

/* "latinN" names (RFC 1345 aliases) to ISO-8859 part numbers. */
static const int latin_parts[] = { 0, 1, 2, 3, 4, 9, 10, 13, 14, 15, 16 };

static int small_number(const char *s, int *n_r)
{
	size_t nd = strspn(s, "0123456789");
	if (nd == 0 || nd > 2 || (s[nd] != '\0' && s[nd] != ':'))
		return 0;
	*n_r = atoi(s);
	return 1;
}

static struct cs lookup(const char *name)
{
	struct cs none = { CS_UNKNOWN, NULL };
	char n[40];
	size_t len = strlen(name), i;
	while (len > 0 && (name[len - 1] == ' ' || name[len - 1] == '\t'))
		len--;
	if (len >= sizeof(n))
		return none;
	for (i = 0; i < len; i++) {
		char c = name[i];
		n[i] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
	}
	n[len] = '\0';

	if (!strcmp(n, "us-ascii") || !strcmp(n, "ascii") || !strcmp(n, "us") ||
	    !strcmp(n, "ansi_x3.4-1968") || !strcmp(n, "iso646-us"))
		return (struct cs){ CS_ASCII, NULL };
	if (!strcmp(n, "utf-8") || !strcmp(n, "utf8"))
		return (struct cs){ CS_UTF8, NULL };
	if (!strcmp(n, "windows-1252") || !strcmp(n, "cp1252") ||
	    !strcmp(n, "x-cp1252"))
		return (struct cs){ CS_TABLE, mime_cs_cp1252 };
	int part;
	if (!strncmp(n, "latin", 5) && small_number(n + 5, &part) &&
	    part >= 1 && part <= 10)
		return iso(latin_parts[part]);
	if (!strcmp(n, "l1"))
		return iso(1);
	static const char *const prefixes[] = {
		"iso-8859-", "iso8859-", "iso_8859-", "iso_8859_", "iso-8859_",
		"iso8859_", "iso8859",
	};
	for (i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
		size_t pl = strlen(prefixes[i]);
		if (!strncmp(n, prefixes[i], pl) && small_number(n + pl, &part))
			return iso(part);
	}
	return none;
}

int mime_charset_known(const char *name)
{
	return lookup(name).kind != CS_UNKNOWN;
}

static void put_utf8(struct buf *out, unsigned cp)
{
	char u[3];
	if (cp < 0x80) {
		buf_putc(out, (char)cp);
	} else if (cp < 0x800) {
		u[0] = (char)(0xC0 | (cp >> 6));
		u[1] = (char)(0x80 | (cp & 0x3F));
		buf_append(out, u, 2);
	} else {
		u[0] = (char)(0xE0 | (cp >> 12));
		u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
		u[2] = (char)(0x80 | (cp & 0x3F));
		buf_append(out, u, 3);
	}
}

int mime_charset_to_utf8(const char *charset, const char *s, size_t len,
			 struct buf *out)
{
	struct cs c = lookup(charset ? charset : "");
	if (c.kind == CS_UNKNOWN || c.kind == CS_ASCII || c.kind == CS_UTF8) {
		buf_append(out, s, len);
		return c.kind != CS_UNKNOWN;
	}
	buf_reserve(out, len + len / 2);
	out->ptr[out->len] = '\0';	/* reserve does not terminate */
	for (size_t i = 0; i < len; i++) {
		unsigned char b = (unsigned char)s[i];
		if (b < 0x80)
			buf_putc(out, (char)b);
		else
			put_utf8(out, c.kind == CS_LATIN1 ? b : c.table[b - 0x80]);
	}
	return 1;
}
