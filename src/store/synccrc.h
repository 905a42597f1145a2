/* synccrc.h: the two Cyrus 3.6 sync checksums (reference §5).
 *
 * Basic CRC ("SYNC_CRC"): XOR over non-expunged records of
 *   crc32("<uid> <modseq> <last_updated> (<flagcrc>) <internaldate> <guid>")
 * where flagcrc is the XOR of crc32(lower-cased flag name) over the
 * record's flags (\Expunged and \Recent never count). Empty -> 0.
 *
 * Annotation CRC ("SYNC_CRC_ANNOT"): SYNCCRC_ANNOT_START XOR, over
 * non-expunged records, crc32("<uid> <entry> <userid> <value>") for each
 * real annotation and for the virtual ones (thrid in unpadded hex,
 * savedate, createdmodseq) when non-zero.
 *
 * The store keeps both values current incrementally: a record's
 * contribution is XORed in when it appears and XORed out when it changes
 * or is expunged, so reading a mailbox's CRCs costs no scan. Because XOR
 * is its own inverse, the functions below just return the contribution.
 */
#ifndef TANDEM_SYNCCRC_H
#define TANDEM_SYNCCRC_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define SYNCCRC_ANNOT_START 12345678u

/* System flag bits, as stored in records.flags. */
enum {
	SYSFLAG_DELETED = 1 << 0,
	SYSFLAG_ANSWERED = 1 << 1,
	SYSFLAG_FLAGGED = 1 << 2,
	SYSFLAG_DRAFT = 1 << 3,
	SYSFLAG_SEEN = 1 << 4,
	SYSFLAG_EXPUNGED = 1 << 5,	/* pseudo-flag: record is expunged */
};

/* Plain CRC-32 (zlib's). */
uint32_t synccrc_crc32(const void *data, size_t len);

/* flagcrc of one record. keywords: space-separated user flag names (as in
 * the mailbox flag table; NULL or "" for none). */
uint32_t synccrc_flags(unsigned sysflags, const char *keywords);

/* A record's contribution to the basic CRC (0 for an expunged record). */
uint32_t synccrc_record(uint32_t uid, uint64_t modseq, int64_t last_updated, unsigned sysflags,
			const char *keywords, int64_t internaldate, const char *guid);

/* A record's virtual-annotation contribution (thrid, savedate,
 * createdmodseq; zeros contribute nothing). */
uint32_t synccrc_annot_virtual(uint32_t uid, uint64_t thrid, int64_t savedate, uint64_t createdmodseq);

/* One real per-message annotation's contribution. userid "" = shared;
 * an empty value contributes nothing (it does not exist). */
uint32_t synccrc_annot_entry(uint32_t uid, const char *entry, const char *userid,
			     const void *value, size_t valuelen);

#endif
