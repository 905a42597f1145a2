/* tool_util.c: the helpers every subcommand shares (tools.h), apart from
 * tandem.c's main so that bin/tandem-deliver (deliver_lean.c) links them
 * without the other commands. */
#include "tools/tools.h"

#include "lib/limits.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int tool_fail(const struct terr *err)
{
	fprintf(stderr, "tandem: %s\n", err->msg);
	return err->code == TE_CONFIG ? EXIT_USAGE : EXIT_FAIL;
}

int tool_help(int argc, char **argv, const char *usage)
{
	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			fputs(usage, stdout);
			return 1;
		}
	return 0;
}

int tool_usage(const char *usage)
{
	fprintf(stderr, "%s", usage);
	return EXIT_USAGE;
}

int tool_mailbox_arg(struct tool *t, const char *arg, struct buf *internal_r)
{
	struct terr err;
	if (mboxname_from_admin(&t->ns, arg, internal_r, &err) < 0) {
		fprintf(stderr, "tandem: mailbox '%s': %s\n", arg, err.msg);
		return EXIT_USAGE;
	}
	return 0;
}

int tool_read_stdin(size_t max, struct buf *out, struct terr *err)
{
	for (;;) {
		buf_reserve(out, 65536);
		ssize_t n = read(0, out->ptr + out->len, 65536);
		if (n < 0)
			return terr_errno(err, errno, "read standard input");
		if (n == 0)
			return 0;
		out->len += (size_t)n;
		out->ptr[out->len] = '\0';
		if (out->len > max)
			return terr_set(err, TE_TOOBIG, "input is over the limit of %zu bytes", max);
	}
}

int tool_read_password(struct buf *out, struct terr *err)
{
	if (tool_read_stdin(MAX_PASSWORD + 2, out, err) < 0)
		return -1;
	char *nl = memchr(out->ptr ? out->ptr : "", '\n', out->len);
	if (nl)
		buf_truncate(out, (size_t)(nl - out->ptr));
	if (out->len && out->ptr[out->len - 1] == '\r')
		buf_truncate(out, out->len - 1);
	if (out->len == 0)
		return terr_set(err, TE_INVALID, "empty password on standard input");
	if (out->len > MAX_PASSWORD)
		return terr_set(err, TE_INVALID, "password longer than %d bytes", MAX_PASSWORD);
	return 0;
}
