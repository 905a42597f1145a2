/* msgcache.c: the message-cache strings of one message (msgcache.h). */
#include "msgcache/msgcache.h"

#include "lib/limits.h"
#include "proto/mime/mime.h"

void msgcache_from_mime(const struct mime_message *msg, struct store_cache_strings *out)
{
	mime_envelope_write(msg, &out->envelope);
	mime_bodystructure_write(msg, 1, &out->bodystructure);
	mime_bodystructure_write(msg, 0, &out->body);
	/* the header block, its empty line included: what SEARCH and SORT
	 * parse instead of the file (MSGCACHE_HEADERS_MAX) */
	const struct mime_part *r = msg->root;
	if (r && r->hdr_len <= MSGCACHE_HEADERS_MAX) {
		buf_append(&out->headers, msg->data + r->hdr_off, r->hdr_len);	/* ptr set even when empty */
	}
}

void msgcache_compute(const void *data, size_t len, struct store_cache_strings *out)
{
	struct mime_message *msg = mime_parse(data ? data : "", len);
	msgcache_from_mime(msg, out);
	mime_message_free(&msg);
}
