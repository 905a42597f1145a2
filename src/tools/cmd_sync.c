/* cmd_sync.c: tandem sync (Cyrus's sync_client), compare and repair. */
#include "tools/tools.h"

#include "chlog/chlog.h"
#include "conf/conf.h"
#include "lib/fsutil.h"
#include "lib/limits.h"
#include "lib/log.h"
#include "lib/xalloc.h"
#include "store/store.h"
#include "server/server.h"
#include "sync/sync_client.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char usage[] =
	"usage: tandem sync [-C CONFIG] [-n CHANNEL] [-S HOST] [-v] [-z] [-o] [--progress] MODE\n"
	"  -u USER...      sync whole users (mailboxes, subscriptions; a user gone here is removed there)\n"
	"  -m MAILBOX...   sync mailboxes (internal names, user.alice.Sent)\n"
	"  -A              sync every user and every shared mailbox; on a terminal (or with\n"
	"                  --progress) shows users done/total, messages, bytes and the ETA\n"
	"  -f FILE         replay a change-log file (it is neither renamed nor removed);\n"
	"                  with -u, -m or -s: the users or mailboxes, one a line\n"
	"  -r | -R         rolling: replicate the channel's change log until sync_shutdown_file appears\n"
	"                  (both in the foreground: tandem never forks; Cyrus's -r forks)\n"
	"  -1              with -r: one pass over the log, then exit\n"
	"  --shard K       with -r: shard K of a sharded channel (<channel>_sync_shards); default 0\n"
	"  -d SECONDS      with -r: wait between passes while the log is empty (overrides\n"
	"                  sync_repeat_interval; a write to the log starts the next pass at once)\n"
	"  -n CHANNEL      channel (its log and <channel>_sync_* options); default: the default channel\n"
	"  -S HOST         replica (overrides sync_host): host[:port][/tls] or /unix/path\n"
	"  -z              require compression\n"
	"  -o              connect once: fail instead of retrying with backoff\n"
	"  -v              log every command\n"
	"Cyrus's other sync_client flags, with their meaning here:\n"
	"  -C CONFIG       the configuration file (as tandem -C CONFIG)\n"
	"  -F FILE         with -r: the shutdown file (overrides sync_shutdown_file)\n"
	"  -t SECONDS      with -r: start a new session (reconnect) between passes once the\n"
	"                  session is this old\n"
	"  -w SECONDS      wait this long before starting\n"
	"  -O              no copy-back: a mailbox the replica refuses as a split brain fails\n"
	"                  (see tandem status) instead of being reconciled\n"
	"  -s USER...      Cyrus's sieve/meta mode: tandem syncs the whole users (as -u)\n"
	"  -l              accepted: tandem always logs what it does\n"
	"  -L              accepted: tandem has no mupdate (Cyrus's local-only mode is its only one)\n"
	"  -N              accepted: tandem takes no per-user sync lock (a channel shard's client\n"
	"                  lock keeps two rolling clients apart), so no user is skipped\n"
	"  -p PARTITION    accepted and ignored: a tandem replica files everything in its\n"
	"                  defaultpartition (a Cyrus replica reads the PARTITION sent)\n"
	"Exit status: 0 done, 1 something failed (it is logged), 2 bad usage or configuration.\n";

/* -f FILE with -u/-m/-s: the names, one a line (blank lines and
 * surrounding blanks ignored), appended to names. */
static int read_names(const char *path, struct buf *data, char ***names, size_t *n, struct terr *err)
{
	if (fs_read_file(path, MAX_NAMES_FILE, data, err) < 0)
		return -1;
	for (char *p = data->ptr; p && *p;) {
		char *nl = strchr(p, '\n');
		if (nl)
			*nl = '\0';
		while (*p == ' ' || *p == '\t')
			p++;
		size_t l = strlen(p);
		while (l && (p[l - 1] == ' ' || p[l - 1] == '\t' || p[l - 1] == '\r'))
			p[--l] = '\0';
		if (l) {
			*names = xrealloc(*names, (*n + 1) * sizeof **names);
			(*names)[(*n)++] = p;
		}
		p = nl ? nl + 1 : p + l;
	}
	return 0;
}

/* A number of seconds for -t/-w: 0 .. 86400. */
static int parse_secs(const char *s, long long *out)
{
	char *end;
	long long v = strtoll(s, &end, 10);
	if (end == s || *end || v < 0 || v > 86400)
		return -1;
	*out = v;
	return 0;
}

static int run(struct tool *t, int argc, char **argv, int compare)
{
	struct syncc_opts o = { 0 };
	char mode = 0;
	const char *file = NULL;
	int one_pass = 0, bodies = 0, json = 0, progress = 0;
	long long wait_s = 0;
	int i = 1;
	for (; i < argc && argv[i][0] == '-'; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "-n") && i + 1 < argc)
			o.channel = argv[++i];
		else if (!strcmp(a, "-C") && i + 1 < argc && !compare)
			i++;	/* Cyrus's -C: tandem.c loaded this config */
		else if (!strcmp(a, "-F") && i + 1 < argc && !compare)
			o.shutdown_file = argv[++i];
		else if (!strcmp(a, "-t") && i + 1 < argc && !compare) {
			if (parse_secs(argv[++i], &o.session_restart_s) < 0)
				return tool_usage(usage);
		} else if (!strcmp(a, "-w") && i + 1 < argc && !compare) {
			if (parse_secs(argv[++i], &wait_s) < 0)
				return tool_usage(usage);
		} else if (!strcmp(a, "-p") && i + 1 < argc && !compare)
			i++;	/* the replica's partition: see usage */
		else if ((!strcmp(a, "-L") || !strcmp(a, "-N")) && !compare)
			;	/* no mupdate, no per-user sync lock: see usage */
		else if (!strcmp(a, "-O") && !compare)
			o.no_copyback = 1;
		else if (!strcmp(a, "-s") && !compare)
			mode = 'u';	/* Cyrus's sieve/meta mode: the whole users */
		else if (!strcmp(a, "--progress") && !compare)
			progress = 1;
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
		else if (!strcmp(a, "-d") && i + 1 < argc && !compare) {
			/* Cyrus's -d: seconds between rolling passes */
			char *end;
			double secs = strtod(argv[++i], &end);
			if (end == argv[i] || *end || !(secs >= 0 && secs <= 3600))
				return tool_usage(usage);
			o.delay_set = 1;
			o.delay_ms = (long long)(secs * 1000);
		} else if (!strcmp(a, "--shard") && i + 1 < argc && !compare) {
			/* one shard of a sharded channel, by hand */
			char *end;
			long k = strtol(argv[++i], &end, 10);
			if (end == argv[i] || *end || k < 0 || k >= MAX_SYNC_SHARDS)
				return tool_usage(usage);
			o.shard = (int)k;
		} else if (!strcmp(a, "-1"))
			one_pass = 1;
		else if (!strcmp(a, "--bodies"))
			bodies = 1;
		else if (compare && !strcmp(a, "--json"))
			json = 1;
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
			if (!json)
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
			if (json) {
				struct buf js = BUF_INIT;
				syncc_report_json(sc, ndiff == 0, &js);
				fputs(buf_cstr(&js), stdout);
				buf_free(&js);
			} else {
				printf("%d difference%s\n", ndiff, ndiff == 1 ? "" : "s");
			}
			rc = ndiff ? EXIT_FAIL : EXIT_OK;
		}
		buf_free(&report);
		syncc_free(&sc);
		return rc;
	}
	/* Cyrus's -f: with -u/-m the names come from the file; with -r it
	 * is a log file to replay once */
	char **names = NULL;
	size_t nnames = 0;
	struct buf namesbuf = BUF_INIT;
	if (file && (mode == 'u' || mode == 'm')) {
		for (int k = i; k < argc; k++) {
			names = xrealloc(names, (nnames + 1) * sizeof *names);
			names[nnames++] = argv[k];
		}
		if (read_names(file, &namesbuf, &names, &nnames, &err) < 0) {
			free(names);
			buf_free(&namesbuf);
			syncc_free(&sc);
			return tool_fail(&err);
		}
	} else if (file && mode == 'r') {
		mode = 'f';
	} else if (mode == 'u' || mode == 'm') {
		names = (char **)argv + i;
		nnames = (size_t)(argc - i);
	}
	int own_names = file && (mode == 'u' || mode == 'm');
	if (!mode || ((mode == 'u' || mode == 'm') && nnames == 0) || (mode == 'f' && !file)) {
		if (own_names)
			free(names);
		buf_free(&namesbuf);
		syncc_free(&sc);
		return tool_usage(usage);
	}
	if (wait_s > 0)
		sleep((unsigned)wait_s);
	int lockfd = -1;
	if (mode == 'r') {
		/* one rolling client per channel shard (server_child.c): tandemd's
		 * or this one */
		pid_t holder;
		int lr = server_syncc_lock(t->conf, o.channel ? o.channel : "", o.shard, &lockfd, &holder, &err);
		if (lr != 0) {
			if (lr > 0)
				terr_set(&err, TE_BUSY, "another sync client (pid %ld) runs channel '%s' shard %d",
					 (long)holder, o.channel ? o.channel : "", o.shard);
			syncc_free(&sc);
			return tool_fail(&err);
		}
	}
	if (syncc_connect(sc, &err) < 0) {
		syncc_free(&sc);
		if (lockfd >= 0)
			close(lockfd);
		return tool_fail(&err);
	}
	int r;
	switch (mode) {
	case 'u': r = syncc_users(sc, (const char *const *)names, nnames, &err); break;
	case 'm': r = syncc_mailboxes(sc, (const char *const *)names, nnames, &err); break;
	case 'A':
		r = progress || isatty(STDERR_FILENO) ? sync_all_progress(t, sc, !progress, &err) : syncc_all(sc, &err);
		break;
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
	if (lockfd >= 0)
		close(lockfd);
	if (own_names)
		free(names);
	buf_free(&namesbuf);
	return rc;
}

/* Cyrus's sync_client parses its flags with getopt, so "-lr" is "-l -r":
 * the options before the first name are split that way (flags without a
 * value only; a value goes in the next argument). */
static const char cyrus_noarg_flags[] = "vlLrRNumsozOA1";
static const char cyrus_arg_flags[] = "CSFfwtdnp";

int cmd_sync(struct tool *t, int argc, char **argv)
{
	if (tool_help(argc, argv, usage))
		return EXIT_OK;
	char **xv = xcalloc((size_t)argc * sizeof cyrus_noarg_flags + 1, sizeof *xv);
	char **owned = xcalloc((size_t)argc * sizeof cyrus_noarg_flags + 1, sizeof *owned);
	int xc = 0, no = 0, i = 0;
	xv[xc++] = argv[i++];
	for (; i < argc && argv[i][0] == '-'; i++) {
		const char *a = argv[i];
		size_t n = strlen(a);
		if (n > 2 && a[1] != '-' && strspn(a + 1, cyrus_noarg_flags) == n - 1) {
			for (size_t k = 1; k < n; k++) {
				char f[3] = { '-', a[k], 0 };
				xv[xc++] = owned[no++] = xstrdup(f);
			}
			continue;
		}
		xv[xc++] = argv[i];
		if (i + 1 < argc && ((n == 2 && strchr(cyrus_arg_flags, a[1])) || !strcmp(a, "--shard")))
			xv[xc++] = argv[++i];
	}
	while (i < argc)
		xv[xc++] = argv[i++];
	int rc = run(t, xc, xv, 0);
	for (int k = 0; k < no; k++)
		free(owned[k]);
	free(owned);
	free(xv);
	return rc;
}

static const char compare_usage[] =
	"usage: tandem compare [-n CHANNEL] [-S HOST] [--bodies] [--json] [USER...]\n"
	"\nCompares this instance (the master) with the channel's replica over the\n"
	"replication protocol: every mailbox of the users (all, with the shared ones,\n"
	"when none is given): header keys, CRCs and every record (UID, modseq, dates,\n"
	"size, GUID, flags). --bodies also fetches every message body from the replica\n"
	"(GET FETCH) and checks its SHA-1, and re-hashes the local files of the users given.\n"
	"Prints one line per difference; exit 0 when equal, 1 when not. --json prints\n"
	"one JSON document instead: {\"equal\": bool, \"differences\": [{\"mailbox\",\n"
	"\"kind\", \"detail\"}], ...} (see tandem repair --help).\n";

int cmd_compare(struct tool *t, int argc, char **argv)
{
	if (tool_help(argc, argv, compare_usage))
		return EXIT_OK;
	return run(t, argc, argv, 1);
}

static const char repair_usage[] =
	"usage: tandem repair [-n CHANNEL] [-S HOST] [-o] [-v] [--json] [--bodies] [--dry-run]\n"
	"                     [--copy-back-mailboxes] (-u USER... | -m MAILBOX... | -A)\n"
	"\nMakes the channel's replica equal to this master for the users, mailboxes\n"
	"(internal names) or everything named. Each mailbox that compares different\n"
	"gets a full update. Nothing that exists only on the replica is deleted:\n"
	"  - its messages (a UID the master never had, above the master's last UID,\n"
	"    or holding another message than the master's) are copied back into the\n"
	"    master under new UIDs (flags and dates kept) before the update;\n"
	"  - a mailbox of the same name with another uniqueid is renamed aside on the\n"
	"    replica to NAME-splitbrain-XXXXXXXX (its uniqueid's first 8 characters);\n"
	"  - a mailbox only on the replica is kept and reported, or copied to the\n"
	"    master with --copy-back-mailboxes.\n"
	"--bodies also checks every replica body (GET FETCH) and sends damaged ones\n"
	"again. --dry-run only compares. Every copy-back is logged\n"
	"(event=splitbrain_copyback) and listed by tandem status.\n"
	"--json prints one JSON document: {\"equal\": bool, \"differences\": [...found],\n"
	"\"repaired\": [...], \"remaining\": [...], \"kept\": [...], \"renamed\": [...],\n"
	"\"copied_back\": [{\"mailbox\", \"replica_uid\", \"new_uid\", \"guid\"}],\n"
	"\"renumbered\": [{\"mailbox\", \"old_uid\", \"new_uid\", \"guid\"}]}.\n"
	"Exit 0 when everything found was repaired (kept replica-only mailboxes do\n"
	"not count), 1 when something is left, 2 bad usage.\n";


int cmd_repair(struct tool *t, int argc, char **argv)
{
	if (tool_help(argc, argv, repair_usage))
		return EXIT_OK;
	struct syncc_opts o = { 0 };
	struct syncc_repair_opts ro = { 0 };
	int json = 0;
	char mode = 0;
	int i = 1;
	for (; i < argc && argv[i][0] == '-'; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "-n") && i + 1 < argc)
			o.channel = argv[++i];
		else if (!strcmp(a, "-S") && i + 1 < argc)
			o.server = argv[++i];
		else if (!strcmp(a, "-o"))
			o.connect_once = 1;
		else if (!strcmp(a, "-v"))
			o.verbose = 1;
		else if (!strcmp(a, "--json"))
			json = 1;
		else if (!strcmp(a, "--bodies"))
			ro.bodies = 1;
		else if (!strcmp(a, "--dry-run"))
			ro.dry_run = 1;
		else if (!strcmp(a, "--copy-back-mailboxes"))
			ro.copy_mailboxes = 1;
		else if (!strcmp(a, "-u") || !strcmp(a, "-m") || !strcmp(a, "-A"))
			mode = a[1];
		else
			return tool_usage(repair_usage);
	}
	if (!mode || (mode != 'A' && i >= argc) || (mode == 'A' && i < argc))
		return tool_usage(repair_usage);
	if (mode == 'u') {
		ro.users = (const char *const *)argv + i;
		ro.nusers = (size_t)(argc - i);
	} else if (mode == 'm') {
		ro.mailboxes = (const char *const *)argv + i;
		ro.nmailboxes = (size_t)(argc - i);
	} else {
		ro.all = 1;
	}
	log_set_level(o.verbose ? LOG_LVL_DEBUG : LOG_LVL_INFO);
	struct terr err = { 0 };
	struct syncc *sc = syncc_new(t->conf, t->st, &o);
	if (syncc_connect(sc, &err) < 0) {
		syncc_free(&sc);
		return tool_fail(&err);
	}
	int r = syncc_repair(sc, &ro, &err);
	if (!ro.dry_run)
		r = syncc_oneshot_result(sc, r, &err);
	struct buf js = BUF_INIT;
	if (json) {
		syncc_report_json(sc, syncc_report_equal(sc, ro.dry_run), &js);
		fputs(buf_cstr(&js), stdout);
	}
	buf_free(&js);
	int rc = EXIT_OK;
	if (r < 0)
		rc = tool_fail(&err);
	syncc_free(&sc);
	return rc;
}
