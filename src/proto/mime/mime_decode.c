/* mime_decode.c: content transfer decodings (base64, quoted-printable;
 * RFC 2045 6.7-6.8) and RFC 2047 encoded-words, for SEARCH. Decoders are
 * lenient, as mail is: bytes outside the base64 alphabet are skipped, a
 * '=' that starts no valid escape is kept as is. */
#include "proto/mime/mime-private.h"

#include "lib/base64.h"

#include <string.h>
#include <strings.h>

void mime_base64_decode(const char *s, size_t len, struct buf *out)
{
	uint32_t acc = 0;
	int n = 0;
	buf_reserve(out, len / 4 * 3 + 3);
	out->ptr[out->len] = '\0';	/* reserve does not terminate */
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		int v = base64_value(c);
		if (v < 0) {
			if (c == '=' && n > 0) {
				/* padding ends this group; flush what it holds */
				if (n >= 2)
					buf_putc(out, (char)(acc >> (6 * n - 8)));
				if (n == 3)
					buf_putc(out, (char)(acc >> 2));
				acc = 0;
				n = 0;
			}
			continue;
		}
		acc = (acc << 6) | (uint32_t)v;
		if (++n == 4) {
			char t[3] = { (char)(acc >> 16), (char)(acc >> 8), (char)acc };
			buf_append(out, t, 3);
			acc = 0;
			n = 0;
		}
	}
	if (n >= 2)
		buf_putc(out, (char)(acc >> (6 * n - 8)));
	if (n == 3)
		buf_putc(out, (char)(acc >> 2));
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

void mime_qp_decode(const char *s, size_t len, int underscore, struct buf *out)
{
	buf_reserve(out, len);
	out->ptr[out->len] = '\0';	/* reserve does not terminate */
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		if (c == '_' && underscore) {
			buf_putc(out, ' ');
			continue;
		}
		if (c != '=') {
			buf_putc(out, c);
			continue;
		}
		int h = i + 1 < len ? hexval(s[i + 1]) : -1;
		int l = i + 2 < len ? hexval(s[i + 2]) : -1;
		if (h >= 0 && l >= 0) {
			buf_putc(out, (char)(h * 16 + l));
			i += 2;
			continue;
		}
		/* soft line break: "=" [blanks] CRLF / LF */
		size_t j = i + 1;
		while (j < len && (s[j] == ' ' || s[j] == '\t'))
			j++;
		if (j < len && s[j] == '\r' && j + 1 < len && s[j + 1] == '\n') {
			i = j + 1;
			continue;
		}
		if (j < len && s[j] == '\n') {
			i = j;
			continue;
		}
		if (j == len) {
			i = len;
			continue;
		}
		buf_putc(out, c);
	}
}

/* An encoded-word "=?charset[*lang]?Q|B?text?=" at s[i]. */
struct eword {
	char charset[64];
	char enc;
	size_t text, text_len, end;
};

static int parse_eword(const char *s, size_t len, size_t i, struct eword *w)
{
	if (len - i < 8 || s[i] != '=' || s[i + 1] != '?')
		return 0;
	size_t p = i + 2, a = p;
	while (p < len && s[p] != '?' && (unsigned char)s[p] > 32 &&
	       (unsigned char)s[p] < 127)
		p++;
	size_t clen = p - a;
	if (p >= len || s[p] != '?' || clen == 0 || clen >= sizeof(w->charset))
		return 0;
	memcpy(w->charset, s + a, clen);
	w->charset[clen] = '\0';
	char *star = strchr(w->charset, '*');	/* RFC 2231 language */
	if (star)
		*star = '\0';
	p++;
	if (p + 1 >= len || s[p + 1] != '?')
		return 0;
	w->enc = s[p];
	if (w->enc != 'Q' && w->enc != 'q' && w->enc != 'B' && w->enc != 'b')
		return 0;
	p += 2;
	w->text = p;
	while (p < len && s[p] != '?' && s[p] != ' ' && s[p] != '\t' &&
	       s[p] != '\r' && s[p] != '\n')
		p++;
	if (p + 1 >= len || s[p] != '?' || s[p + 1] != '=')
		return 0;
	w->text_len = p - w->text;
	w->end = p + 2;
	return mime_charset_known(w->charset);
}

static int all_blank(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
			return 0;
	return 1;
}

static void flush(char *charset, struct buf *raw, struct buf *out)
{
	if (charset[0])
		mime_charset_to_utf8(charset, buf_cstr(raw), raw->len, out);
	buf_reset(raw);
	charset[0] = '\0';
}

void mime_decode_words(const char *s, size_t len, struct buf *out)
{
	struct buf raw = BUF_INIT;	/* decoded bytes of adjacent words */
	char charset[64] = "";
	size_t i = 0, lit = 0;
	int after_word = 0;
	struct eword w;

	while (i < len) {
		const char *q = memchr(s + i, '=', len - i);
		if (!q)
			break;
		i = (size_t)(q - s);
		if (!parse_eword(s, len, i, &w)) {
			i++;
			continue;
		}
		/* Blanks between two encoded-words are not text. */
		if (!(after_word && all_blank(s + lit, i - lit))) {
			flush(charset, &raw, out);
			buf_append(out, s + lit, i - lit);
		}
		if (strcasecmp(charset, w.charset) != 0) {
			flush(charset, &raw, out);
			memcpy(charset, w.charset, sizeof(charset));
		}
		if (w.enc == 'B' || w.enc == 'b')
			mime_base64_decode(s + w.text, w.text_len, &raw);
		else
			mime_qp_decode(s + w.text, w.text_len, 1, &raw);
		i = lit = w.end;
		after_word = 1;
	}
	flush(charset, &raw, out);
	buf_append(out, s + lit, len - lit);
	buf_free(&raw);
}

void mime_part_decode(const struct mime_message *msg,
		      const struct mime_part *part, struct buf *out)
{
	const char *body = msg->data + part->body_off;
	const char *enc = part->encoding ? part->encoding : "";
	if (!strcmp(enc, "base64"))
		mime_base64_decode(body, part->body_len, out);
	else if (!strcmp(enc, "quoted-printable"))
		mime_qp_decode(body, part->body_len, 0, out);
	else
		buf_append(out, body, part->body_len);
}

void mime_part_text(const struct mime_message *msg,
		    const struct mime_part *part, struct buf *out)
{
	struct buf raw = BUF_INIT, cs = BUF_INIT;
	mime_part_decode(msg, part, &raw);
	if (!mime_param_get(part->params, "charset", &cs))
		buf_appends(&cs, "us-ascii");
	mime_charset_to_utf8(buf_cstr(&cs), buf_cstr(&raw), raw.len, out);
	buf_free(&raw);
	buf_free(&cs);
}
