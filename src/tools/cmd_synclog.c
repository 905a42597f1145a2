/* cmd_synclog.c: tandem synclog: one change-log line by hand, to every
 * configured channel (Cyrus's cyr_synclog). */
#include "tools/tools.h"

#include "chlog/chlog.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
	"usage: tandem synclog -u|-U|-v|-m|-M|-q|-n|-s|-b VALUE [VALUE2]\n"
	"       tandem synclog 'KEYWORD ARG [ARG2]'\n"
	"\nAppends one line to the change log of every configured channel, like\n"
	"Cyrus's cyr_synclog: -u USER, -U UNUSER, -v META, -m MAILBOX, -M UNMAILBOX,\n"
	"-q QUOTA, -n ANNOTATION, -s SEEN (user uniqueid), -b SUB (user mailbox).\n"
	"Mailbox values are internal names (user.alice.Sent). Needs sync_log: yes.\n"
	"\n"
	"       tandem synclog --follow CHANNEL [--shard K] [--once]\n"
	"\nPrints the change log of a consumer channel (one without sync_host), each\n"
	"line once, and removes what the consumer has read, rotating the log as a sync\n"
	"client does: `tandem synclog --follow squatter | indexer`. Waits for new lines\n"
	"(--once: stops when the log is empty). SIGTERM ends it after the current line\n"
	"once the consumer has read what was written; the next follower goes on from\n"
	"there. Delivery is at least once: a follower killed outright may print its\n"
	"last chunk again. Exit 1 when the consumer closed the pipe. See\n"
	"docs/operations.md, \"Consumer channels\".\n";

int cmd_synclog(struct tool *t, int argc, char **argv)
{
	if (tool_help(argc, argv, usage))
		return EXIT_OK;
	static const struct { const char *flag, *kw; int nargs; } kinds[] = {
		{ "-u", "USER", 1 }, { "-U", "UNUSER", 1 }, { "-v", "META", 1 }, { "-m", "MAILBOX", 1 },
		{ "-M", "UNMAILBOX", 1 }, { "-q", "QUOTA", 1 }, { "-n", "ANNOTATION", 1 },
		{ "-s", "SEEN", 2 }, { "-b", "SUB", 2 },
	};
	if (argc >= 3 && !strcmp(argv[1], "--follow")) {
		int shard = 0, once = 0;
		for (int i = 3; i < argc; i++) {
			char *end;
			if (!strcmp(argv[i], "--once"))
				once = 1;
			else if (!strcmp(argv[i], "--shard") && i + 1 < argc &&
				 (shard = (int)strtol(argv[++i], &end, 10)) >= 0 && !*end && end != argv[i])
				;
			else
				return tool_usage(usage);
		}
		return synclog_follow(t, argv[2], shard, once);
	}
	struct terr err = { 0 };
	struct buf line = BUF_INIT;
	int rc = EXIT_OK;
	if (!t->chlog) {
		fprintf(stderr, "tandem: sync_log is off in %s: there is no change log to write\n", t->conf_path);
		return EXIT_USAGE;
	}
	if (argc == 2 && argv[1][0] != '-') {
		struct chlog_entry e = { 0 };
		if (chlog_parse_line(argv[1], strlen(argv[1]), &e, &err) < 0 ||
		    chlog_format(&line, e.keyword, buf_cstr(&e.arg1), e.nargs > 1 ? buf_cstr(&e.arg2) : NULL,
				 &err) < 0)
			rc = EXIT_USAGE;
		chlog_entry_free(&e);
		if (rc != EXIT_OK) {
			fprintf(stderr, "tandem: %s\n", err.msg);
			buf_free(&line);
			return rc;
		}
	} else {
		size_t k = 0, nk = sizeof kinds / sizeof kinds[0];
		while (argc >= 3 && k < nk && strcmp(argv[1], kinds[k].flag))
			k++;
		if (argc < 3 || k == nk || argc != 2 + kinds[k].nargs)
			return tool_usage(usage);
		if (chlog_format(&line, kinds[k].kw, argv[2], kinds[k].nargs > 1 ? argv[3] : NULL, &err) < 0) {
			buf_free(&line);
			return tool_fail(&err);
		}
	}
	if (chlog_append(t->chlog, line.ptr, line.len, &err) < 0)
		rc = tool_fail(&err);
	else
		fputs(line.ptr, stdout);
	buf_free(&line);
	return rc;
}
