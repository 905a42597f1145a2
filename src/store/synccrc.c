/* synccrc.c: see synccrc.h. */
#include "store/synccrc.h"
#include "lib/buf.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <zlib.h>

uint32_t synccrc_crc32(const void *data, size_t len)
{
	uLong crc = crc32(0L, Z_NULL, 0);
	const Bytef *p = data;
	while (len > 0) {
		uInt chunk = len > 0x40000000u ? 0x40000000u : (uInt)len;
		crc = crc32(crc, p, chunk);
		p += chunk;
		len -= chunk;
	}
	return (uint32_t)crc;
}

static uint32_t crc_lower(const char *s, size_t len)
{
	char small[256];
	if (len >= sizeof small)
		len = sizeof small - 1;
	for (size_t i = 0; i < len; i++)
		small[i] = (char)tolower((unsigned char)s[i]);
	return synccrc_crc32(small, len);
}

uint32_t synccrc_flags(unsigned sysflags, const char *keywords)
{
	static const struct { unsigned bit; const char *name; } sys[] = {
		{ SYSFLAG_DELETED, "\\deleted" }, { SYSFLAG_ANSWERED, "\\answered" },
		{ SYSFLAG_FLAGGED, "\\flagged" }, { SYSFLAG_DRAFT, "\\draft" },
		{ SYSFLAG_SEEN, "\\seen" },
	};
	uint32_t crc = 0;
	for (size_t i = 0; i < sizeof sys / sizeof sys[0]; i++)
		if (sysflags & sys[i].bit)
			crc ^= synccrc_crc32(sys[i].name, strlen(sys[i].name));
	for (const char *p = keywords; p && *p;) {
		while (*p == ' ')
			p++;
		const char *e = p;
		while (*e && *e != ' ')
			e++;
		if (e > p)
			crc ^= crc_lower(p, (size_t)(e - p));
		p = e;
	}
	return crc;
}

uint32_t synccrc_record(uint32_t uid, uint64_t modseq, int64_t last_updated, unsigned sysflags,
			const char *keywords, int64_t internaldate, const char *guid)
{
	if (sysflags & SYSFLAG_EXPUNGED)
		return 0;
	char line[256];
	int n = snprintf(line, sizeof line, "%" PRIu32 " %" PRIu64 " %" PRId64 " (%" PRIu32 ") %" PRId64 " %s",
			 uid, modseq, last_updated, synccrc_flags(sysflags, keywords), internaldate, guid);
	return synccrc_crc32(line, (size_t)n);
}

uint32_t synccrc_annot_virtual(uint32_t uid, uint64_t thrid, int64_t savedate, uint64_t createdmodseq)
{
	char line[160];
	int n;
	uint32_t crc = 0;
	if (thrid) {
		n = snprintf(line, sizeof line, "%" PRIu32 " /vendor/cmu/cyrus-imapd/thrid  %" PRIx64, uid, thrid);
		crc ^= synccrc_crc32(line, (size_t)n);
	}
	if (savedate) {
		n = snprintf(line, sizeof line, "%" PRIu32 " /vendor/cmu/cyrus-imapd/savedate  %" PRId64, uid, savedate);
		crc ^= synccrc_crc32(line, (size_t)n);
	}
	if (createdmodseq) {
		n = snprintf(line, sizeof line, "%" PRIu32 " /vendor/cmu/cyrus-imapd/createdmodseq  %" PRIu64, uid,
			     createdmodseq);
		crc ^= synccrc_crc32(line, (size_t)n);
	}
	return crc;
}

uint32_t synccrc_annot_entry(uint32_t uid, const char *entry, const char *userid,
			     const void *value, size_t valuelen)
{
	if (valuelen == 0 || !userid)
		return 0;
	struct buf b = BUF_INIT;
	buf_printf(&b, "%" PRIu32 " %s %s ", uid, entry, userid);
	buf_append(&b, value, valuelen);
	uint32_t crc = synccrc_crc32(b.ptr, b.len);
	buf_free(&b);
	return crc;
}
