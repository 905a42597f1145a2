/* base64.h: RFC 4648 base64 decoding, the one table of the project.
 * Strict (SASL responses: a bad byte is an error) here; MIME's lenient
 * decoder (src/proto/mime) uses base64_value for its alphabet. */
#ifndef TANDEM_BASE64_H
#define TANDEM_BASE64_H

#include <stddef.h>

#include "lib/buf.h"

/* The 6-bit value of an alphabet byte, -1 for any other byte. */
int base64_value(unsigned char c);
/* Decodes s (padding optional, no whitespace), appending to out.
 * Returns 0, or -1 on a byte outside the alphabet or an impossible
 * length (out may then hold part of the bytes). */
int base64_decode_strict(const char *s, size_t len, struct buf *out);

#endif
