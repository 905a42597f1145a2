/* tandem.c: the admin command: global options, the command table, and
 * opening the instance (config, change log, store) for the commands that
 * need it. */
#include "tools/tools.h"

#include "chlog/chlog.h"
#include "conf/conf.h"
#include "lib/limits.h"
#include "lib/log.h"
#include "lib/version.h"
#include "lib/xalloc.h"
#include "server/server.h"
#include "store/store.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#define DEFAULT_CONF TOOL_DEFAULT_CONF


struct command {
	const char *name;
	int (*run)(struct tool *t, int argc, char **argv);
	int needs_store;
	const char *summary;
};

static const struct command commands[] = {
	{ "init", cmd_init, 0, "create a new instance in a directory" },
	{ "user", cmd_user, 1, "add, delete, list users; set passwords" },
	{ "mailbox", cmd_mailbox, 1, "create, rename, delete, list mailboxes" },
	{ "deliver", cmd_deliver, 0, "deliver a message from standard input" },
	{ "message", cmd_message, 1, "list messages, change flags, expunge" },
	{ "dump", cmd_dump, 1, "print a mailbox as the sync protocol sends it" },
	{ "synclog", cmd_synclog, 1, "add a line to the change log by hand" },
	{ "sync", cmd_sync, 1, "replicate to a replica (Cyrus's sync_client)" },
	{ "compare", cmd_compare, 1, "compare this master with its replica" },
	{ "repair", cmd_repair, 1, "make the replica equal to this master, copying back what only it holds" },
	{ "status", cmd_status, 1, "tandemd and replication state: clients, lag, failed mailboxes" },
	{ "failover", cmd_failover, 1, "switch master and replica roles cleanly" },
	{ "move-user", cmd_move_user, 1, "move a user to another store (tandem or Cyrus), then remove it here" },
	{ "check", cmd_check, 1, "check the store's consistency" },
	{ "config", cmd_config, 0, "check the configuration and print every option" },
};

static void usage_all(FILE *f)
{
	fprintf(f, "usage: tandem [-C CONFIG] [-v] COMMAND [ARGS]\n"
		   "       tandem --version\n\n"
		   "  -C CONFIG  configuration file (default $TANDEM_CONF, else %s)\n"
		   "  -v         log debug lines to standard error\n\ncommands:\n", DEFAULT_CONF);
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
		fprintf(f, "  %-9s %s\n", commands[i].name, commands[i].summary);
	fprintf(f, "\n'tandem COMMAND --help' describes one command. Exit status: 0 done,\n"
		   "1 the operation failed, 2 bad usage or configuration.\n");
}

/* The version, and what this build speaks and links against (an operator
 * filing a bug pastes this). */
static void print_version(void)
{
	printf("tandem %s\n"
	       "protocols: IMAP4rev1, LMTP, Cyrus 3.6 replication (csync and IMAP SYNC verbs)\n"
	       "libraries: SQLite %s, %s, zlib %s\n",
	       TANDEM_VERSION, sqlite3_libversion(), OpenSSL_version(OPENSSL_VERSION), zlibVersion());
}

static int open_instance(struct tool *t, struct terr *err)
{
	if (conf_load(t->conf_path, &t->conf, err) < 0) {
		err->code = TE_CONFIG;
		return -1;
	}
	return server_open_store(t->conf, &t->st, &t->chlog, &t->ns, err);
}

int main(int argc, char **argv)
{
	struct tool t = { 0 };
	t.conf_path = getenv("TANDEM_CONF") ? getenv("TANDEM_CONF") : DEFAULT_CONF;
	enum log_level lvl = LOG_LVL_WARN;
	int i = 1;
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (!strcmp(argv[i], "-C") && i + 1 < argc)
			t.conf_path = argv[++i];
		else if (!strcmp(argv[i], "-v"))
			lvl = LOG_LVL_DEBUG;
		else if (!strcmp(argv[i], "--version") || !strcmp(argv[i], "-V")) {
			print_version();
			return EXIT_OK;
		} else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			usage_all(stdout);
			return EXIT_OK;
		} else {
			fprintf(stderr, "tandem: unknown option '%s'\n", argv[i]);
			usage_all(stderr);
			return EXIT_USAGE;
		}
	}
	log_open("tandem", 0, lvl);
	if (i >= argc) {
		usage_all(stderr);
		return EXIT_USAGE;
	}
	const struct command *cmd = NULL;
	for (size_t k = 0; k < sizeof commands / sizeof commands[0]; k++)
		if (!strcmp(argv[i], commands[k].name))
			cmd = &commands[k];
	if (!cmd) {
		fprintf(stderr, "tandem: unknown command '%s'\n", argv[i]);
		usage_all(stderr);
		return EXIT_USAGE;
	}
	int wants_help = 0;
	for (int k = i + 1; k < argc; k++)
		if (!strcmp(argv[k], "--help") || !strcmp(argv[k], "-h"))
			wants_help = 1;
	/* Cyrus's sync_client -C CONFIG: tandem sync takes it after the
	 * command too */
	for (int k = i + 1; cmd->run == cmd_sync && k + 1 < argc; k++)
		if (!strcmp(argv[k], "-C"))
			t.conf_path = argv[++k];
	struct terr err = { 0 };
	if (cmd->needs_store && !wants_help && open_instance(&t, &err) < 0) {
		int rc = tool_fail(&err);
		store_close(&t.st);
		chlog_close(&t.chlog);
		conf_free(&t.conf);
		return rc;
	}
	int rc = cmd->run(&t, argc - i, argv + i);
	store_close(&t.st);
	chlog_close(&t.chlog);
	conf_free(&t.conf);
	return rc;
}
