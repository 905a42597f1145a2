/* cmd_user.c: tandem user add|del|list|passwd. */
#include "tools/tools.h"

#include "store/store.h"

#include <stdio.h>
#include <string.h>

static const char usage[] =
	"usage: tandem user add [--no-password] USER   (password: first line of standard input)\n"
	"       tandem user del USER\n"
	"       tandem user list\n"
	"       tandem user passwd USER                (password: first line of standard input)\n"
	"\n'add' creates the user and its INBOX; 'del' removes the user with all its mail.\n";

static int print_user(const char *userid, void *rock)
{
	(void)rock;
	printf("%s\n", userid);
	return 0;
}

int cmd_user(struct tool *t, int argc, char **argv)
{
	if (tool_help(argc, argv, usage))
		return EXIT_OK;
	if (argc < 2)
		return tool_usage(usage);
	const char *sub = argv[1];
	struct terr err = { 0 };
	struct buf pw = BUF_INIT;
	int rc = EXIT_OK;
	if (!strcmp(sub, "add") && (argc == 3 || (argc == 4 && !strcmp(argv[2], "--no-password")))) {
		int nopw = argc == 4;
		const char *user = argv[argc - 1];
		if (!nopw && tool_read_password(&pw, &err) < 0)
			rc = tool_fail(&err);
		else if (store_user_create(t->st, user, nopw ? NULL : pw.ptr, &err) < 0)
			rc = tool_fail(&err);
		else
			printf("user %s created\n", user);
	} else if (!strcmp(sub, "del") && argc == 3) {
		if (store_user_delete(t->st, argv[2], &err) < 0)
			rc = tool_fail(&err);
		else
			printf("user %s deleted\n", argv[2]);
	} else if (!strcmp(sub, "list") && argc == 2) {
		if (store_user_list(t->st, print_user, NULL, &err) < 0)
			rc = tool_fail(&err);
	} else if (!strcmp(sub, "passwd") && argc == 3) {
		if (tool_read_password(&pw, &err) < 0 || store_user_passwd(t->st, argv[2], pw.ptr, &err) < 0)
			rc = tool_fail(&err);
		else
			printf("password of %s set\n", argv[2]);
	} else {
		rc = tool_usage(usage);
	}
	if (pw.ptr)
		memset(pw.ptr, 0, pw.cap);
	buf_free(&pw);
	return rc;
}
