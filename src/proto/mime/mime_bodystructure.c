/* mime_bodystructure.c: FETCH BODY and BODYSTRUCTURE (RFC 3501 7.4.2,
 * grammar "body" in section 9). Types, subtypes, parameter names,
 * encodings and disposition types are sent uppercase, as Cyrus does;
 * values as written. Sizes are octets as stored; body-fld-lines as
 * counted by the parser. Extension data is always complete (md5, dsp,
 * lang, loc for leaves; param, dsp, lang, loc for multiparts). */
#include "proto/mime/mime-private.h"

#include <string.h>

static void write_params(struct buf *out, const struct mime_param *p)
{
	if (!p) {
		buf_appends(out, "NIL");
		return;
	}
	buf_putc(out, '(');
	for (int first = 1; p; p = p->next, first = 0) {
		if (!first)
			buf_putc(out, ' ');
		mime_imap_upper(out, p->name);
		buf_putc(out, ' ');
		mime_imap_cstring(out, p->value);
	}
	buf_putc(out, ')');
}

static void write_ext_common(struct buf *out, const struct mime_part *part)
{
	buf_putc(out, ' ');
	if (part->disposition) {
		buf_putc(out, '(');
		mime_imap_upper(out, part->disposition);
		buf_putc(out, ' ');
		write_params(out, part->disp_params);
		buf_putc(out, ')');
	} else {
		buf_appends(out, "NIL");
	}
	buf_putc(out, ' ');
	if (part->nlanguages) {
		buf_putc(out, '(');
		for (size_t i = 0; i < part->nlanguages; i++) {
			if (i)
				buf_putc(out, ' ');
			mime_imap_cstring(out, part->languages[i]);
		}
		buf_putc(out, ')');
	} else {
		buf_appends(out, "NIL");
	}
	buf_putc(out, ' ');
	mime_imap_cstring(out, part->location);
}

static void write_part(const struct mime_message *msg,
		       const struct mime_part *part, int ext, struct buf *out)
{
	buf_putc(out, '(');
	if (part->children) {
		for (const struct mime_part *c = part->children; c; c = c->next)
			write_part(msg, c, ext, out);
		buf_putc(out, ' ');
		mime_imap_upper(out, part->subtype);
		if (ext) {
			buf_putc(out, ' ');
			write_params(out, part->params);
			write_ext_common(out, part);
		}
		buf_putc(out, ')');
		return;
	}
	mime_imap_upper(out, part->type);
	buf_putc(out, ' ');
	mime_imap_upper(out, part->subtype);
	buf_putc(out, ' ');
	write_params(out, part->params);
	buf_putc(out, ' ');
	mime_imap_cstring(out, part->id);
	buf_putc(out, ' ');
	mime_imap_cstring(out, part->description);
	buf_putc(out, ' ');
	mime_imap_upper(out, part->encoding ? part->encoding : "7bit");
	buf_printf(out, " %zu", part->body_len);
	if (part->message) {
		buf_putc(out, ' ');
		mime_envelope_part(msg, part->message, out);
		buf_putc(out, ' ');
		write_part(msg, part->message, ext, out);
		buf_printf(out, " %zu", part->lines);
	} else if (strcmp(part->type, "text") == 0) {
		buf_printf(out, " %zu", part->lines);
	}
	if (ext) {
		buf_putc(out, ' ');
		mime_imap_cstring(out, part->md5);
		write_ext_common(out, part);
	}
	buf_putc(out, ')');
}

void mime_bodystructure_write(const struct mime_message *msg, int extended,
			      struct buf *out)
{
	write_part(msg, msg->root, extended, out);
}
