/* deliver.h: tandem deliver's two halves (cmd_deliver.c): the command
 * and its LMTP path, and the direct path, which bin/tandem links from
 * deliver_direct.c (the store) and bin/tandem-deliver from
 * deliver_lean.c (an exec of `tandem deliver --direct`, so that the lean
 * program links no OpenSSL or SQLite). */
#ifndef TANDEM_TOOLS_DELIVER_H
#define TANDEM_TOOLS_DELIVER_H

#include "tools/tools.h"

#include <stdint.h>

struct drcpt {
	const char *arg;	/* as given, for the result line */
	char *user;
	const char *folder;	/* "" for the INBOX */
	int by_acl;		/* folder from -m: Cyrus's ACL rule applies */
	char *mailbox;		/* internal name (direct path) */
	uint32_t uid;
	int code;		/* LMTP reply code (LMTP path) */
	struct terr err;
};

/* Delivers msg (CRLF, from raw as read) to the n recipients itself:
 * returns 0 with each rs[k].uid/err/mailbox set, or an exit status
 * (a recipient's name, the store, the flags). argv: the deliver command's
 * own (argv[0] "deliver"). flags/date: --flags, --date (NULL, 0). */
int deliver_direct(struct tool *t, int argc, char **argv, struct drcpt *rs, size_t n, const char *sender,
		   const char *flags, int64_t date, const struct buf *raw, const struct buf *msg);

#endif
