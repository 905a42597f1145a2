/* cmd_check.c: tandem check: the store's own consistency (files present
 * with the right size and, with --bodies, SHA-1; UIDs and modseqs within
 * the mailbox's; kept CRCs equal to recomputed ones). */
#include "tools/tools.h"

#include "store/store.h"

#include <stdio.h>
#include <string.h>

static const char usage[] =
	"usage: tandem check [--bodies] [USER...]\n"
	"\nChecks every user (or the ones given). One line per problem found, key=value;\n"
	"exit 0 when there is none, 1 otherwise.\n";

struct check_rock {
	struct tool *t;
	int bodies;
	int problems;
	int failed;
};

static int check_one(const char *userid, void *rock)
{
	struct check_rock *cr = rock;
	struct buf report = BUF_INIT;
	struct terr err = { 0 };
	int n = store_check_user(cr->t->st, userid, cr->bodies, &report, &err);
	if (n < 0) {
		fprintf(stderr, "tandem: user %s: %s\n", userid, err.msg);
		cr->failed = 1;
	} else if (n > 0) {
		const char *p = report.ptr;
		while (p && *p) {
			const char *nl = strchr(p, '\n');
			printf("user=%s %.*s\n", userid, (int)(nl ? nl - p : (long)strlen(p)), p);
			p = nl ? nl + 1 : NULL;
		}
		cr->problems += n;
	}
	buf_free(&report);
	return 0;
}

int cmd_check(struct tool *t, int argc, char **argv)
{
	if (tool_help(argc, argv, usage))
		return EXIT_OK;
	struct check_rock cr = { t, 0, 0, 0 };
	int i = 1;
	if (i < argc && !strcmp(argv[i], "--bodies")) {
		cr.bodies = 1;
		i++;
	}
	struct terr err = { 0 };
	if (i == argc) {
		if (store_user_list(t->st, check_one, &cr, &err) < 0)
			return tool_fail(&err);
	} else {
		for (; i < argc; i++)
			check_one(argv[i], &cr);
	}
	if (cr.failed)
		return EXIT_FAIL;
	printf("%d problem%s found\n", cr.problems, cr.problems == 1 ? "" : "s");
	return cr.problems ? EXIT_FAIL : EXIT_OK;
}
