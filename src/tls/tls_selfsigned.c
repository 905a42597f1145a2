/* tls_selfsigned.c: see tls.h. */
#include "tls/tls.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>

static int ssl_fail(struct terr *err, const char *what)
{
	char msg[256];
	ERR_error_string_n(ERR_get_error(), msg, sizeof msg);
	return terr_set(err, TE_INTERNAL, "%s: %s", what, msg);
}

static void bio_to_buf(BIO *b, struct buf *out)
{
	char *p;
	long n = BIO_get_mem_data(b, &p);
	if (n > 0)
		buf_append(out, p, (size_t)n);
}

int tls_make_selfsigned(const char *cn, struct buf *cert_pem, struct buf *key_pem, struct terr *err)
{
	int rc = -1;
	X509 *x = NULL;
	BIO *cb = NULL, *kb = NULL;
	X509_EXTENSION *ext = NULL;
	EVP_PKEY *key = EVP_EC_gen("P-256");
	if (!key)
		return ssl_fail(err, "generate key");
	x = X509_new();
	if (!x || !X509_set_version(x, 2)) {
		ssl_fail(err, "new certificate");
		goto out;
	}
	unsigned char serial[16];
	RAND_bytes(serial, sizeof serial);
	serial[0] &= 0x7f;
	BIGNUM *bn = BN_bin2bn(serial, sizeof serial, NULL);
	BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x));
	BN_free(bn);
	X509_gmtime_adj(X509_getm_notBefore(x), -3600);
	X509_gmtime_adj(X509_getm_notAfter(x), 10L * 365 * 24 * 3600);
	X509_set_pubkey(x, key);
	X509_NAME *name = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"tandem", -1, -1, 0);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
	X509_set_issuer_name(x, name);
	char san[600];
	snprintf(san, sizeof san, "DNS:%s,IP:127.0.0.1,IP:::1", cn);
	X509V3_CTX ctx;
	X509V3_set_ctx_nodb(&ctx);
	X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_subject_alt_name, san);
	if (!ext || !X509_add_ext(x, ext, -1)) {
		ssl_fail(err, "subjectAltName");
		goto out;
	}
	if (!X509_sign(x, key, EVP_sha256())) {
		ssl_fail(err, "sign certificate");
		goto out;
	}
	cb = BIO_new(BIO_s_mem());
	kb = BIO_new(BIO_s_mem());
	if (!PEM_write_bio_X509(cb, x) || !PEM_write_bio_PrivateKey(kb, key, NULL, NULL, 0, NULL, NULL)) {
		ssl_fail(err, "write PEM");
		goto out;
	}
	bio_to_buf(cb, cert_pem);
	bio_to_buf(kb, key_pem);
	rc = 0;
out:
	X509_EXTENSION_free(ext);
	BIO_free(cb);
	BIO_free(kb);
	X509_free(x);
	EVP_PKEY_free(key);
	return rc;
}
