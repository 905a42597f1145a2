/* err.c: see err.h. */
#include "lib/err.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int terr_set(struct terr *err, enum terr_code code, const char *fmt, ...)
{
	if (!err)
		return -1;
	va_list ap;
	va_start(ap, fmt);
	err->code = code;
	vsnprintf(err->msg, sizeof err->msg, fmt, ap);
	va_end(ap);
	return -1;
}

int terr_errno(struct terr *err, int errnum, const char *fmt, ...)
{
	if (!err)
		return -1;
	va_list ap;
	va_start(ap, fmt);
	char what[384];
	vsnprintf(what, sizeof what, fmt, ap);
	va_end(ap);
	err->code = (errnum == ENOSPC || errnum == EDQUOT) ? TE_NOSPACE : TE_IO;
	snprintf(err->msg, sizeof err->msg, "%s: %s", what, strerror(errnum));
	return -1;
}

void terr_clear(struct terr *err)
{
	if (err) {
		err->code = TE_OK;
		err->msg[0] = '\0';
	}
}

const char *terr_code_name(enum terr_code code)
{
	switch (code) {
	case TE_OK: return "ok";
	case TE_INTERNAL: return "internal";
	case TE_INVALID: return "invalid";
	case TE_NOTFOUND: return "notfound";
	case TE_EXISTS: return "exists";
	case TE_IO: return "io";
	case TE_NOSPACE: return "nospace";
	case TE_OVERQUOTA: return "overquota";
	case TE_TOOBIG: return "toobig";
	case TE_CORRUPT: return "corrupt";
	case TE_BUSY: return "busy";
	case TE_PERM: return "perm";
	case TE_CONFIG: return "config";
	case TE_CHANGED: return "changed";
	case TE_CHECKSUM: return "checksum";
	case TE_MOVED: return "moved";
	case TE_PROTOCOL: return "protocol";
	}
	return "unknown";
}
