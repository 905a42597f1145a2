/* cmd_mailbox.c: tandem mailbox create|rename|delete|list|setacl. */
#include "tools/tools.h"

#include "store/store.h"

#include <stdio.h>
#include <string.h>

static const char usage[] =
	"usage: tandem mailbox create MAILBOX\n"
	"       tandem mailbox rename OLD NEW\n"
	"       tandem mailbox delete MAILBOX\n"
	"       tandem mailbox list [USER]\n"
	"       tandem mailbox setacl MAILBOX IDENTIFIER RIGHTS\n"
	"\nMAILBOX is in the admin namespace: user/alice/Sent with unixhierarchysep,\n"
	"else user.alice.Sent; shared mailboxes without the user prefix. 'list' prints\n"
	"name, messages, UIDVALIDITY, highest modseq and uniqueid, tab-separated.\n"
	"'setacl' replaces IDENTIFIER's entry of the ACL with RIGHTS (Cyrus letters;\n"
	"\"\" removes it), e.g. setacl user.alice.Lists anyone p for LMTP alice+Lists.\n";

/* out = acl with id's entry replaced by rights (dropped when empty). */
static void acl_replace(const char *acl, const char *id, const char *rights, struct buf *out)
{
	size_t idlen = strlen(id);
	int done = 0;
	const char *p = acl ? acl : "";
	while (*p) {
		const char *t1 = strchr(p, '\t');
		if (!t1)
			break;
		const char *t2 = strchr(t1 + 1, '\t');
		const char *end = t2 ? t2 + 1 : t1 + 1 + strlen(t1 + 1);
		if ((size_t)(t1 - p) == idlen && !memcmp(p, id, idlen)) {
			if (!done && *rights)
				buf_printf(out, "%s\t%s\t", id, rights);
			done = 1;
		} else {
			buf_append(out, p, (size_t)(end - p));
			if (!t2)
				buf_putc(out, '\t');
		}
		p = end;
	}
	if (!done && *rights)
		buf_printf(out, "%s\t%s\t", id, rights);
}

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
	} else if (!strcmp(sub, "setacl") && argc == 5) {
		struct store_mailbox_info mi = { 0 };
		if ((rc = tool_mailbox_arg(t, argv[2], &a)) == 0) {
			if (strpbrk(argv[3], "\t\r\n") || strpbrk(argv[4], "\t\r\n") || !*argv[3]) {
				terr_set(&err, TE_INVALID, "bad identifier or rights");
				rc = tool_fail(&err);
			} else if (store_mailbox_get(t->st, a.ptr, &mi, &err) < 0) {
				rc = tool_fail(&err);
			} else {
				acl_replace(mi.acl, argv[3], argv[4], &b);
				if (store_mailbox_set_acl(t->st, a.ptr, buf_cstr(&b), &err) < 0)
					rc = tool_fail(&err);
				else
					printf("mailbox %s acl %s\n", argv[2], buf_cstr(&b));
			}
		}
		store_mailbox_info_free(&mi);
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
