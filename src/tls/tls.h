/* tls.h: TLS helpers on OpenSSL. */
#ifndef TANDEM_TLS_H
#define TANDEM_TLS_H

#include "lib/buf.h"
#include "lib/err.h"

/* A new self-signed certificate for `cn` (also in subjectAltName, with
 * 127.0.0.1 and ::1), valid 10 years, on a fresh P-256 key: both in PEM,
 * appended to cert_pem and key_pem. For demos and tests; operators bring
 * their own certificates (tls_server_cert / tls_server_key). */
int tls_make_selfsigned(const char *cn, struct buf *cert_pem, struct buf *key_pem,
			struct terr *err);

#endif
