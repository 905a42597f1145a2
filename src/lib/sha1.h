/* sha1.h: lower-case hex SHA-1, the GUID of a message (OpenSSL). */
#ifndef TANDEM_SHA1_H
#define TANDEM_SHA1_H

#include <stddef.h>

void sha1_hex(const void *data, size_t len, char out[41]);

#endif
