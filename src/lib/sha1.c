/* sha1.c: see sha1.h. */
#include "lib/sha1.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>

static void hex(const unsigned char *md, char out[41])
{
	for (unsigned i = 0; i < 20; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
	out[40] = '\0';
}

void sha1_hex(const void *data, size_t len, char out[41])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	EVP_Digest(data, len, md, &mdlen, EVP_sha1(), NULL);
	hex(md, out);
}

void sha1_init(struct sha1_ctx *c)
{
	EVP_MD_CTX *m = EVP_MD_CTX_new();
	if (!m || EVP_DigestInit_ex(m, EVP_sha1(), NULL) != 1)
		abort();	/* out of memory, as xalloc */
	c->md = m;
}

void sha1_update(struct sha1_ctx *c, const void *data, size_t len)
{
	if (len)
		EVP_DigestUpdate(c->md, data, len);
}

void sha1_final_hex(struct sha1_ctx *c, char out[41])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	EVP_DigestFinal_ex(c->md, md, &mdlen);
	hex(md, out);
	sha1_free(c);
}

void sha1_free(struct sha1_ctx *c)
{
	EVP_MD_CTX_free(c->md);
	c->md = NULL;
}
