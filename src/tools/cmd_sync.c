/* cmd_sync.c: tandem sync (Cyrus's sync_client) and tandem compare. */
#include "tools/tools.h"

#include "conf/conf.h"
#include "lib/log.h"
#include "store/store.h"
#include "syncc/syncc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char usage[] =
	"usage: tandem sync [-n CHANNEL] [-S HOST] [-v] [-z] [-o] MODE\n"
	"  -u USER...      sync whole users (mailboxes, subscriptions; a user gone here is removed there)\n"
	"  -m MAILBOX...   sync mailboxes (internal names, user.alice.Sent)\n"
	"  -A              sync every user and every shared mailbox\n"
	"  -f FILE         replay a change-log file (it is neither renamed nor removed)\n"
	"  -r | -R         rolling: replicate the channel's change log until sync_shutdown_file appears\n"
	"  -1              with -r: one pass over the log, then exit\n"
	"  -n CHANNEL      channel (its log and <channel>_sync_* options); default: the default channel\n"
	"  -S HOST         replica (overrides sync_host): host[:port][/tls] or /unix/path\n"
	"  -z              require compression\n"
	"  -o              connect once: fail instead of retrying with backoff\n"
	"  -v              log every command\n"
	"Exit status: 0 done, 1 something failed (it is logged), 2 bad usage or configuration.\n";

static int run(struct tool *t, int argc, char **argv, int compare)
{
	struct syncc_opts o = { 0 };
	char mode = 0;
	const char *file = NULL;
	int one_pass = 0, bodies = 0;
	int i = 1;
	for (; i < argc && argv[i][0] == '-'; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "-n") && i + 1 < argc)
			o.channel = argv[++i];
		else if (!strcmp(a, "-S") && i + 1 < argc)
			o.server = argv[++i];
		else if (!strcmp(a, "-f") && i + 1 < argc) {
			file = argv[++i];
			mode = mode ? mode : 'f';
		} else if (!strcmp(a, "-v"))
			o.verbose = 1;
		else if (!strcmp(a, "-l"))
			;	/* Cyrus's -l (log actions): tandem always logs them */
		else if (!strcmp(a, "-z"))
			o.require_compress = 1;
		else if (!strcmp(a, "-o"))
			o.connect_once = 1;
		else if (!strcmp(a, "-1"))
			one_pass = 1;
		else if (!strcmp(a, "--bodies"))
			bodies = 1;
		else if (strlen(a) == 2 && strchr("umArR", a[1]) && !compare)
			mode = a[1] == 'R' ? 'r' : a[1];
		else if (compare && !strcmp(a, "-u"))
			mode = 'u';
		else
			return tool_usage(usage);
	}
	if (o.verbose)
		log_set_level(LOG_LVL_DEBUG);
	else
		log_set_level(LOG_LVL_INFO);
	struct terr err = { 0 };
	struct syncc *sc = syncc_new(t->conf, t->st, &o);
	int rc = EXIT_OK;
	if (compare) {
		if (syncc_connect(sc, &err) < 0) {
			syncc_free(&sc);
			return tool_fail(&err);
		}
		struct buf report = BUF_INIT;
		int ndiff = 0;
		syncc_compare_bodies(sc, bodies);
		if (syncc_compare(sc, (const char *const *)argv + i, (size_t)(argc - i), &report, &ndiff, &err) < 0) {
			rc = tool_fail(&err);
		} else {
			fputs(buf_cstr(&report), stdout);
			if (bodies) {
				struct buf chk = BUF_INIT;
				int problems = 0;
				for (int k = i; k < argc; k++) {
					int n = store_check_user(t->st, argv[k], 1, &chk, &err);
					problems += n > 0 ? n : 0;
				}
				fputs(buf_cstr(&chk), stdout);
				ndiff += problems;
				buf_free(&chk);
			}
			printf("%d difference%s\n", ndiff, ndiff == 1 ? "" : "s");
			rc = ndiff ? EXIT_FAIL : EXIT_OK;
		}
		buf_free(&report);
		syncc_free(&sc);
		return rc;
	}
	if (!mode || ((mode == 'u' || mode == 'm') && i >= argc) || (mode == 'r' && file)) {
		syncc_free(&sc);
		return tool_usage(usage);
	}
	if (syncc_connect(sc, &err) < 0) {
		syncc_free(&sc);
		return tool_fail(&err);
	}
	int r;
	switch (mode) {
	case 'u': r = syncc_users(sc, (const char *const *)argv + i, (size_t)(argc - i), &err); break;
	case 'm': r = syncc_mailboxes(sc, (const char *const *)argv + i, (size_t)(argc - i), &err); break;
	case 'A': r = syncc_all(sc, &err); break;
	case 'f': r = syncc_logfile(sc, file, &err); break;
	default: r = syncc_rolling(sc, one_pass, &err); break;
	}
	if (mode != 'r')
		r = syncc_oneshot_result(sc, r, &err);
	struct syncc_stats stats;
	syncc_get_stats(sc, &stats);
	log_info("event=sync_done channel=%s mode=%c ok=%d commands=%lu mailboxes=%lu messages=%lu bytes=%lu",
		 o.channel ? o.channel : "", mode, r == 0, stats.commands, stats.mailboxes, stats.messages, stats.bytes_sent);
	if (r < 0)
		rc = tool_fail(&err);
	syncc_free(&sc);
	return rc;
}

int cmd_sync(struct tool *t, int argc, char **argv)
{
	if (tool_help(argc, argv, usage))
		return EXIT_OK;
	return run(t, argc, argv, 0);
}

static const char compare_usage[] =
	"usage: tandem compare [-n CHANNEL] [-S HOST] [--bodies] [USER...]\n"
	"\nCompares this instance (the master) with the channel's replica over the\n"
	"replication protocol: every mailbox of the users (all, with the shared ones,\n"
	"when none is given): header keys, CRCs and every record (UID, modseq, dates,\n"
	"size, GUID, flags). --bodies also fetches every message body from the replica\n"
	"(GET FETCH) and checks its SHA-1, and re-hashes the local files of the users given.\n"
	"Prints one line per difference; exit 0 when equal, 1 when not.\n";

int cmd_compare(struct tool *t, int argc, char **argv)
{
	if (tool_help(argc, argv, compare_usage))
		return EXIT_OK;
	return run(t, argc, argv, 1);
}

static const char status_usage[] =
	"usage: tandem status [-n CHANNEL]...\n"
	"\nFor each channel (all configured ones by default): the change-log lines not\n"
	"yet replicated, and every mailbox that failed to replicate, with its error,\n"
	"attempts and next retry (the rolling client retries it with backoff; fix the\n"
	"cause and run tandem sync -n CHANNEL -m MAILBOX to replicate it by hand).\n";

int cmd_status(struct tool *t, int argc, char **argv)
{
	if (tool_help(argc, argv, status_usage))
		return EXIT_OK;
	const char *const *chans;
	size_t n = conf_channels(t->conf, &chans);
	const char *one[1];
	if (argc == 3 && !strcmp(argv[1], "-n")) {
		one[0] = argv[2];
		chans = one;
		n = 1;
	} else if (argc != 1) {
		return tool_usage(status_usage);
	}
	struct buf out = BUF_INIT;
	struct terr err = { 0 };
	int rc = EXIT_OK;
	for (size_t i = 0; i < n; i++)
		if (syncc_status(t->conf, chans[i], &out, &err) < 0)
			rc = tool_fail(&err);
	fputs(buf_cstr(&out), stdout);
	buf_free(&out);
	return rc;
}
