/* msgcache.c: the message-cache strings of one message (msgcache.h). */
#include "msgcache/msgcache.h"

#include "proto/mime/mime.h"

void msgcache_from_mime(const struct mime_message *msg, struct store_cache_strings *out)
{
	mime_envelope_write(msg, &out->envelope);
	mime_bodystructure_write(msg, 1, &out->bodystructure);
	mime_bodystructure_write(msg, 0, &out->body);
}

void msgcache_compute(const void *data, size_t len, struct store_cache_strings *out)
{
	struct mime_message *msg = mime_parse(data ? data : "", len);
	msgcache_from_mime(msg, out);
	mime_message_free(&msg);
}
