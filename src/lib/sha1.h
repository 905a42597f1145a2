/* sha1.h: lower-case hex SHA-1, the GUID of a message (OpenSSL). */
#ifndef TANDEM_SHA1_H
#define TANDEM_SHA1_H

#include <stddef.h>

void sha1_hex(const void *data, size_t len, char out[41]);

/* The same over bytes that arrive in pieces (a streamed file literal). */
struct sha1_ctx {
	void *md;	/* EVP_MD_CTX */
};
void sha1_init(struct sha1_ctx *c);
void sha1_update(struct sha1_ctx *c, const void *data, size_t len);
/* Writes the hex digest and frees the context (sha1_free is then a no-op). */
void sha1_final_hex(struct sha1_ctx *c, char out[41]);
void sha1_free(struct sha1_ctx *c);

#endif
