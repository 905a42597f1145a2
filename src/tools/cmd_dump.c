/* cmd_dump.c: tandem dump: a mailbox as the replication protocol sends it
 * (APPLY MAILBOX with every record). */
#include "tools/tools.h"

#include "proto/sync/dlist.h"
#include "sync/sync.h"

#include <stdio.h>

static const char usage[] =
	"usage: tandem dump MAILBOX\n"
	"\nPrints the mailbox's MAILBOX line of the sync protocol (DLIST), with every\n"
	"record including expunged ones: what APPLY MAILBOX would carry.\n";

int cmd_dump(struct tool *t, int argc, char **argv)
{
	if (tool_help(argc, argv, usage))
		return EXIT_OK;
	if (argc != 2)
		return tool_usage(usage);
	struct buf name = BUF_INIT, out = BUF_INIT;
	int rc = tool_mailbox_arg(t, argv[1], &name);
	if (rc == 0) {
		struct dlist *mb = NULL;
		struct terr err = { 0 };
		if (sync_mailbox_dlist(t->st, name.ptr, 1, 0, &mb, &err) < 0) {
			rc = tool_fail(&err);
		} else {
			dlist_print(&out, mb, DLIST_LIT_SERVER);
			buf_putc(&out, '\n');
			fwrite(out.ptr, 1, out.len, stdout);
		}
		dlist_free(&mb);
	}
	buf_free(&name);
	buf_free(&out);
	return rc;
}
