/* msgcache.h: tandem's message-cache function for the store (struct
 * store_opts.cache_fn): parses a message once with src/proto/mime and
 * gives the strings FETCH ENVELOPE, BODYSTRUCTURE and BODY answer with,
 * exactly as cmd_fetch.c would write them from the message file.
 */
#ifndef TANDEM_MSGCACHE_H
#define TANDEM_MSGCACHE_H

#include "store/store.h"

struct mime_message;

/* A store_cache_fn: appends the ENVELOPE "(...)", the BODYSTRUCTURE
 * (extended) and the BODY (non-extensible) of data[0, len) to out. */
void msgcache_compute(const void *data, size_t len, struct store_cache_strings *out);
/* The same from a parsed message (FETCH filling a missing cache row). */
void msgcache_from_mime(const struct mime_message *msg, struct store_cache_strings *out);

#endif
