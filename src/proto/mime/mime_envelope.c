/* mime_envelope.c: the IMAP ENVELOPE (RFC 3501 7.4.2) of a message or of
 * an enclosed message/rfc822. The first occurrence of each field counts;
 * values are unfolded and trimmed but not decoded (encoded-words stay as
 * written, as RFC 3501 wants); Sender and Reply-To fall back to From. */
#include "proto/mime/mime-private.h"

#include "lib/xalloc.h"

#include <string.h>

enum {
	F_DATE, F_SUBJECT, F_FROM, F_SENDER, F_REPLY_TO, F_TO, F_CC, F_BCC,
	F_IN_REPLY_TO, F_MESSAGE_ID, F_COUNT
};

static const char *const names[F_COUNT] = {
	"date", "subject", "from", "sender", "reply-to", "to", "cc", "bcc",
	"in-reply-to", "message-id",
};

static void write_addrs(struct buf *out, const struct mime_addr *a)
{
	if (!a) {
		buf_appends(out, "NIL");
		return;
	}
	buf_putc(out, '(');
	for (; a; a = a->next) {
		buf_putc(out, '(');
		mime_imap_cstring(out, a->name);
		buf_putc(out, ' ');
		mime_imap_cstring(out, a->adl);
		buf_putc(out, ' ');
		mime_imap_cstring(out, a->mailbox);
		buf_putc(out, ' ');
		mime_imap_cstring(out, a->host);
		buf_putc(out, ')');
	}
	buf_putc(out, ')');
}

void mime_envelope_part(const struct mime_message *msg,
			const struct mime_part *part, struct buf *out)
{
	const char *d = msg->data;
	size_t end = part->hdr_off + part->hdr_len, pos = part->hdr_off;
	struct mime_field f, found[F_COUNT] = { { 0 } };
	int have[F_COUNT] = { 0 };

	while (mime_header_next(d, end, &pos, 1, &f) == 1) {
		if (f.too_long || f.name_len == 0)
			continue;
		for (int i = 0; i < F_COUNT; i++) {
			if (!have[i] && mime_field_is(d, &f, names[i])) {
				found[i] = f;
				have[i] = 1;
				break;
			}
		}
	}

	struct mime_addr *addrs[F_COUNT] = { NULL };
	struct buf v = BUF_INIT;
	for (int i = F_FROM; i <= F_BCC; i++) {
		if (!have[i])
			continue;
		buf_reset(&v);
		mime_unfold(d + found[i].value_off, found[i].value_len, &v);
		addrs[i] = mime_addr_parse(buf_cstr(&v), v.len);
	}

	buf_putc(out, '(');
	for (int i = 0; i < F_COUNT; i++) {
		if (i > 0)
			buf_putc(out, ' ');
		if (i >= F_FROM && i <= F_BCC) {
			const struct mime_addr *a = addrs[i];
			if (!a && (i == F_SENDER || i == F_REPLY_TO))
				a = addrs[F_FROM];
			write_addrs(out, a);
			continue;
		}
		if (!have[i]) {
			buf_appends(out, "NIL");
			continue;
		}
		buf_reset(&v);
		mime_unfold(d + found[i].value_off, found[i].value_len, &v);
		mime_imap_nstring(out, buf_cstr(&v), v.len);
	}
	buf_putc(out, ')');

	buf_free(&v);
	for (int i = 0; i < F_COUNT; i++)
		mime_addr_free(addrs[i]);
}

void mime_envelope_write(const struct mime_message *msg, struct buf *out)
{
	mime_envelope_part(msg, msg->root, out);
}
