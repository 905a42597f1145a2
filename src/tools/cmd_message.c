/* cmd_message.c: tandem message list|flag|expunge|fetch: the message
 * operations of the store, for operators and for tests that need them
 * without an IMAP client. */
#include "tools/tools.h"

#include "lib/xalloc.h"
#include "store/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char usage[] =
	"usage: tandem message list [--expunged] MAILBOX\n"
	"       tandem message flag MAILBOX UID[,UID...] (+|-|=)FLAGS\n"
	"       tandem message expunge MAILBOX [UID[,UID...]]\n"
	"       tandem message fetch MAILBOX UID\n"
	"       tandem message annotate MAILBOX UID ENTRY USERID VALUE\n"
	"\n'list' prints UID, modseq, flags, internal date, size and GUID per message.\n"
	"'flag' adds (+), removes (-) or sets (=) flags, e.g. '+\\Seen $Label1'.\n"
	"'expunge' without UIDs expunges the messages flagged \\Deleted.\n"
	"'fetch' writes the message's bytes to standard output (SHA-1 checked).\n"
	"'annotate' sets an annotation (UID 0: on the mailbox; USERID '' shared;\n"
	"VALUE '' deletes it), e.g. annotate user.alice 3 /comment '' 'a note'.\n";

static int print_record(const struct store_record *r, void *rock)
{
	(void)rock;
	struct buf fl = BUF_INIT;
	store_flags_format(r->sysflags, r->keywords, &fl);
	printf("%u\t%llu\t(%s)\t%lld\t%u\t%s\n", r->uid, (unsigned long long)r->modseq, buf_cstr(&fl),
	       (long long)r->internaldate, r->size, r->guid);
	buf_free(&fl);
	return 0;
}

struct find_rock {
	uint32_t uid;
	char guid[41];
};

static int find_uid(const struct store_record *r, void *rock)
{
	struct find_rock *fr = rock;
	if (r->uid != fr->uid)
		return 0;
	memcpy(fr->guid, r->guid, sizeof fr->guid);
	return 1;
}

static int parse_uids(const char *s, uint32_t **uids_r, size_t *n_r)
{
	size_t n = 0, cap = 8;
	uint32_t *uids = xmalloc(cap * sizeof *uids);
	const char *p = s;
	while (*p) {
		char *end;
		unsigned long v = strtoul(p, &end, 10);
		if (end == p || v == 0 || v > 0xffffffffUL || (*end && *end != ',')) {
			free(uids);
			return -1;
		}
		if (n == cap)
			uids = xrealloc(uids, (cap *= 2) * sizeof *uids);
		uids[n++] = (uint32_t)v;
		p = *end ? end + 1 : end;
	}
	*uids_r = uids;
	*n_r = n;
	return n ? 0 : -1;
}

int cmd_message(struct tool *t, int argc, char **argv)
{
	if (tool_help(argc, argv, usage))
		return EXIT_OK;
	if (argc < 3)
		return tool_usage(usage);
	const char *sub = argv[1];
	struct terr err = { 0 };
	struct buf mb = BUF_INIT, kw = BUF_INIT, out = BUF_INIT;
	uint32_t *uids = NULL;
	size_t nuids = 0;
	int rc = EXIT_OK;
	if (!strcmp(sub, "list") && (argc == 3 || (argc == 4 && !strcmp(argv[2], "--expunged")))) {
		if ((rc = tool_mailbox_arg(t, argv[argc - 1], &mb)) == 0 &&
		    store_records(t->st, mb.ptr, 0, argc == 4, print_record, NULL, &err) < 0)
			rc = tool_fail(&err);
	} else if (!strcmp(sub, "flag") && argc == 5) {
		const char *f = argv[4];
		enum store_flag_op op = f[0] == '+' ? STORE_FLAGS_ADD :
					f[0] == '-' ? STORE_FLAGS_REMOVE : STORE_FLAGS_SET;
		unsigned sys;
		if (!strchr("+-=", f[0]) || parse_uids(argv[3], &uids, &nuids) < 0)
			rc = tool_usage(usage);
		else if ((rc = tool_mailbox_arg(t, argv[2], &mb)) == 0) {
			if (store_flags_parse(f + 1, &sys, &kw, &err) < 0 ||
			    store_set_flags(t->st, mb.ptr, uids, nuids, op, sys, kw.ptr, 0, NULL, &err) < 0)
				rc = tool_fail(&err);
		}
	} else if (!strcmp(sub, "expunge") && (argc == 3 || argc == 4)) {
		size_t count = 0;
		if (argc == 4 && parse_uids(argv[3], &uids, &nuids) < 0)
			rc = tool_usage(usage);
		else if ((rc = tool_mailbox_arg(t, argv[2], &mb)) == 0) {
			if (store_expunge(t->st, mb.ptr, uids, nuids, &count, &err) < 0)
				rc = tool_fail(&err);
			else
				printf("%zu expunged\n", count);
		}
	} else if (!strcmp(sub, "annotate") && argc == 7) {
		char *end;
		unsigned long uid = strtoul(argv[3], &end, 10);
		if (*end || uid > 0xffffffffUL)
			rc = tool_usage(usage);
		else if ((rc = tool_mailbox_arg(t, argv[2], &mb)) == 0 &&
			 store_annot_set(t->st, mb.ptr, (uint32_t)uid, argv[4], argv[5], argv[6], strlen(argv[6]), &err) < 0)
			rc = tool_fail(&err);
	} else if (!strcmp(sub, "fetch") && argc == 4) {
		if (parse_uids(argv[3], &uids, &nuids) < 0 || nuids != 1)
			rc = tool_usage(usage);
		else if ((rc = tool_mailbox_arg(t, argv[2], &mb)) == 0) {
			struct find_rock fr = { uids[0], "" };
			if (store_records(t->st, mb.ptr, 0, 0, find_uid, &fr, &err) < 0) {
				rc = tool_fail(&err);
			} else if (!fr.guid[0]) {
				fprintf(stderr, "tandem: no message with UID %u in %s\n", uids[0], argv[2]);
				rc = EXIT_FAIL;
			} else if (store_message_read(t->st, mb.ptr, fr.guid, &out, &err) < 0) {
				rc = tool_fail(&err);
			} else if (fwrite(out.ptr, 1, out.len, stdout) != out.len) {
				rc = EXIT_FAIL;
			}
		}
	} else {
		rc = tool_usage(usage);
	}
	free(uids);
	buf_free(&mb);
	buf_free(&kw);
	buf_free(&out);
	return rc;
}
