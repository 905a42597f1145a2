/* err.h: the error context every fallible tandem call fills in.
 *
 * Convention (in every header): functions return 0 on success and -1 on
 * error, with *err set; where a function returns more than yes/no its
 * header says so. err->msg is for the operator's log and may name paths;
 * protocol code maps err->code to a wire reply and never sends msg.
 */
#ifndef TANDEM_ERR_H
#define TANDEM_ERR_H

enum terr_code {
	TE_OK = 0,
	TE_INTERNAL,	/* a bug or a broken invariant */
	TE_INVALID,	/* bad input from the caller or the peer */
	TE_NOTFOUND,	/* no such user, mailbox, message ... */
	TE_EXISTS,	/* already exists */
	TE_IO,		/* an I/O error other than a full disk */
	TE_NOSPACE,	/* disk full (ENOSPC, EDQUOT) */
	TE_OVERQUOTA,	/* a tandem quota root would be exceeded */
	TE_TOOBIG,	/* over a size limit */
	TE_CORRUPT,	/* data on disk does not match its checksum or schema */
	TE_BUSY,	/* locked by another process past the wait limit */
	TE_PERM,	/* not allowed */
	TE_CONFIG,	/* configuration error */
	TE_CHANGED,	/* precondition failed: state changed meanwhile */
	TE_CHECKSUM,	/* replicated state does not match (sync CRC, stale or split brain) */
	TE_MOVED,	/* a mailbox has another name or uniqueid than expected */
	TE_PROTOCOL,	/* a request the protocol does not allow here (unknown, out of order) */
};

struct terr {
	enum terr_code code;
	char msg[512];
};

/* Sets *err (when err is non-NULL) and returns -1. */
int terr_set(struct terr *err, enum terr_code code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Same, appending ": strerror(errnum)"; maps ENOSPC/EDQUOT to TE_NOSPACE
 * and other errnos to TE_IO. */
int terr_errno(struct terr *err, int errnum, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void terr_clear(struct terr *err);
const char *terr_code_name(enum terr_code code);

#endif
