/* mime-charset.h: the 8-bit charset tables of mime_charset_tables.c
 * (private to src/proto/mime). Each maps bytes 0x80-0xFF to Unicode. */
#ifndef TANDEM_MIME_CHARSET_H
#define TANDEM_MIME_CHARSET_H

#include <stdint.h>

extern const uint16_t mime_cs_iso8859_2[128];
extern const uint16_t mime_cs_iso8859_3[128];
extern const uint16_t mime_cs_iso8859_4[128];
extern const uint16_t mime_cs_iso8859_5[128];
extern const uint16_t mime_cs_iso8859_6[128];
extern const uint16_t mime_cs_iso8859_7[128];
extern const uint16_t mime_cs_iso8859_8[128];
extern const uint16_t mime_cs_iso8859_9[128];
extern const uint16_t mime_cs_iso8859_10[128];
extern const uint16_t mime_cs_iso8859_11[128];
extern const uint16_t mime_cs_iso8859_13[128];
extern const uint16_t mime_cs_iso8859_14[128];
extern const uint16_t mime_cs_iso8859_15[128];
extern const uint16_t mime_cs_iso8859_16[128];
extern const uint16_t mime_cs_cp1252[128];

#endif
