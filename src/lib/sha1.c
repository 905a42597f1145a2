/* sha1.c: see sha1.h.
 *
 * OpenSSL 3 looks a digest up in its providers at every EVP_DigestInit
 * given EVP_sha1() (an implicit fetch: a lock and a hash lookup); the
 * digest is fetched once per process here instead (sha1_md). OpenSSL
 * picks the CPU's SHA instructions (SHA-NI) itself when there are any. */
#include "lib/sha1.h"

#include <openssl/evp.h>
#include <pthread.h>
#include <stdlib.h>

static EVP_MD *fetched;
static pthread_once_t fetch_once = PTHREAD_ONCE_INIT;

static void fetch_md(void)
{
	fetched = EVP_MD_fetch(NULL, "SHA1", NULL);
}

static const EVP_MD *sha1_md(void)
{
	pthread_once(&fetch_once, fetch_md);
	return fetched ? fetched : EVP_sha1();
}

static void hex(const unsigned char *md, char out[41])
{
	static const char digits[] = "0123456789abcdef";
	for (unsigned i = 0; i < 20; i++) {
		out[2 * i] = digits[md[i] >> 4];
		out[2 * i + 1] = digits[md[i] & 15];
	}
	out[40] = '\0';
}

void sha1_hex(const void *data, size_t len, char out[41])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	if (EVP_Digest(data, len, md, &mdlen, sha1_md(), NULL) != 1)
		abort();
	hex(md, out);
}

void sha1_init(struct sha1_ctx *c)
{
	EVP_MD_CTX *m = EVP_MD_CTX_new();
	if (!m || EVP_DigestInit_ex(m, sha1_md(), NULL) != 1)
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
