/* cmd_config.c: tandem config: loads the configuration (every error
 * with file and line) and prints every option's effective value. */
#include "tools/tools.h"

#include "conf/conf.h"

#include <stdio.h>

static const char usage[] =
	"usage: tandem [-C CONFIG] config\n"
	"\nChecks the configuration and prints every option with its effective value\n"
	"(secrets masked). Keys of a Cyrus imapd.conf that tandem does not use are\n"
	"ignored with one warning each on standard error. Exit 2 on a configuration error.\n";

int cmd_config(struct tool *t, int argc, char **argv)
{
	if (tool_help(argc, argv, usage))
		return EXIT_OK;
	if (argc != 1)
		return tool_usage(usage);
	struct conf *c = NULL;
	struct terr err = { 0 };
	if (conf_load(t->conf_path, &c, &err) < 0) {
		fprintf(stderr, "tandem: %s\n", err.msg);
		return EXIT_USAGE;
	}
	for (size_t i = 0; i < conf_nignored(c); i++) {
		int line;
		const char *note;
		const char *key = conf_ignored(c, i, &line, &note);
		fprintf(stderr, "tandem: warning: %s:%d: %s: %s\n", conf_path(c), line, key, note);
	}
	struct buf out = BUF_INIT;
	conf_dump(c, &out);
	fputs(buf_cstr(&out), stdout);
	buf_free(&out);
	conf_free(&c);
	return EXIT_OK;
}
