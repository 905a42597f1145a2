/* cmd_mailbox.c: tandem mailbox create|rename|delete|list. */
#include "tools/tools.h"

#include "store/store.h"

#include <stdio.h>
#include <string.h>

static const char usage[] =
	"usage: tandem mailbox create MAILBOX\n"
	"       tandem mailbox rename OLD NEW\n"
	"       tandem mailbox delete MAILBOX\n"
	"       tandem mailbox list [USER]\n"
	"\nMAILBOX is in the admin namespace: user/alice/Sent with unixhierarchysep,\n"
	"else user.alice.Sent; shared mailboxes without the user prefix. 'list' prints\n"
	"name, messages, UIDVALIDITY, highest modseq and uniqueid, tab-separated.\n";

struct list_rock {
	struct tool *t;
};

static int print_mailbox(const struct store_mailbox_info *mi, void *rock)
{
	struct tool *t = rock;
	struct buf ext = BUF_INIT;
	struct terr err;
	if (mboxname_to_admin(&t->ns, mi->name, &ext, &err) < 0)
		buf_appends(&ext, mi->name);
	printf("%s\t%u\t%u\t%llu\t%s\n", ext.ptr, mi->exists, mi->uidvalidity,
	       (unsigned long long)mi->highestmodseq, mi->uniqueid);
	buf_free(&ext);
	return 0;
}

int cmd_mailbox(struct tool *t, int argc, char **argv)
{
	if (tool_help(argc, argv, usage))
		return EXIT_OK;
	if (argc < 2)
		return tool_usage(usage);
	const char *sub = argv[1];
	struct terr err = { 0 };
	struct buf a = BUF_INIT, b = BUF_INIT;
	int rc = EXIT_OK;
	if (!strcmp(sub, "create") && argc == 3) {
		if ((rc = tool_mailbox_arg(t, argv[2], &a)) == 0) {
			if (store_mailbox_create(t->st, a.ptr, NULL, &err) < 0)
				rc = tool_fail(&err);
			else
				printf("mailbox %s created\n", argv[2]);
		}
	} else if (!strcmp(sub, "rename") && argc == 4) {
		if ((rc = tool_mailbox_arg(t, argv[2], &a)) == 0 && (rc = tool_mailbox_arg(t, argv[3], &b)) == 0) {
			if (store_mailbox_rename(t->st, a.ptr, b.ptr, 1, &err) < 0)
				rc = tool_fail(&err);
			else
				printf("mailbox %s renamed to %s\n", argv[2], argv[3]);
		}
	} else if (!strcmp(sub, "delete") && argc == 3) {
		if ((rc = tool_mailbox_arg(t, argv[2], &a)) == 0) {
			if (store_mailbox_delete(t->st, a.ptr, &err) < 0)
				rc = tool_fail(&err);
			else
				printf("mailbox %s deleted\n", argv[2]);
		}
	} else if (!strcmp(sub, "list") && (argc == 2 || argc == 3)) {
		if (argc == 3) {
			int ex = store_user_exists(t->st, argv[2], &err);
			if (ex <= 0) {
				if (ex == 0)
					terr_set(&err, TE_NOTFOUND, "user '%s' does not exist", argv[2]);
				rc = tool_fail(&err);
			}
		}
		if (rc == EXIT_OK &&
		    store_mailbox_list(t->st, argc == 3 ? argv[2] : NULL, print_mailbox, t, &err) < 0)
			rc = tool_fail(&err);
	} else {
		rc = tool_usage(usage);
	}
	buf_free(&a);
	buf_free(&b);
	return rc;
}
