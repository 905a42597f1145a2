/* cmd_moveuser.c: tandem move-user: a user to another store (tandem or
 * Cyrus 3.6) over the replication protocol; the work is syncc_move_user
 * (src/sync/sync_move.c), this is its command line, target checks,
 * signals and progress display. */
#include "tools/tools.h"

#include "conf/conf.h"
#include "lib/log.h"
#include "store/store.h"
#include "store/store_move.h"
#include "sync/sync_client.h"
#include "sync/sync_move.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char usage[] =
	"usage: tandem move-user [-n CHANNEL] [-S HOST[:PORT]] [-v] [-z] [--progress]\n"
	"                        [--max-passes N] [--settled N] USER\n"
	"\nMoves USER to another store (tandem or Cyrus 3.6) over the replication\n"
	"protocol, authenticating with sync_authname/sync_password (of CHANNEL, if\n"
	"given) as tandem sync does:\n"
	"  1. copies every mailbox while the user stays live, then repeats whole-user\n"
	"     passes until one sends at most --settled messages (default 20) or\n"
	"     --max-passes (default 5) were made;\n"
	"  2. locks the user: LMTP answers 451 4.2.1 (the MTA retries), open IMAP\n"
	"     sessions get BYE [UNAVAILABLE], logins get NO [UNAVAILABLE];\n"
	"  3. a final pass, then compares the user with the target, bodies included;\n"
	"  4. removes the user here and keeps a record of where it went (tandem user\n"
	"     list: moved-to=HOST); LMTP and IMAP keep answering with a temporary\n"
	"     error naming it until `tandem user unmove USER` clears it (after the\n"
	"     MTA and the clients are routed to the new store).\n"
	"Any failure or interrupt before step 4 unlocks the user and removes nothing\n"
	"here; what the target got stays there (running the command again goes on\n"
	"from it). The target must not already hold the user's mailboxes under\n"
	"other uniqueids, and must not be one of this store's own replicas (the\n"
	"removal in step 4 replicates to those as the user's deletion).\n"
	"  -S HOST[:PORT]  the target (host[:port][/tls] or /unix/path); else CHANNEL's sync_host\n"
	"  -n CHANNEL      take the credentials (<CHANNEL>_sync_authname, _sync_password) and,\n"
	"                  without -S, the target from the channel's options; a target that is\n"
	"                  the sync_host of one of this store's channels is refused\n"
	"  --progress      show progress (mailboxes, messages, bytes, ETA) on stderr even when\n"
	"                  it is not a terminal (one line each); on a terminal it always shows\n"
	"  -z              require compression; -v log every command\n"
	"Passwords do not travel with the replication protocol: the target must be\n"
	"able to authenticate the user (Cyrus: its SASL database; tandem: tandem user\n"
	"passwd there).\n"
	"Exit status: 0 moved, 1 not moved (the reason on stderr, compare's\n"
	"differences on stdout), 2 bad usage or a target that is a replica here.\n";

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
	(void)sig;
	stop_flag = 1;
}

struct display {
	const char *user;
	int tty;
	int lines;	/* --progress without a terminal: one line each */
	int shown;
};

static void print_progress(struct display *d, const struct syncc_move_progress *p);

static void show(void *rock, const struct syncc_move_progress *p)
{
	struct display *d = rock;
	if (d->tty || d->lines)
		print_progress(d, p);
	if (!strcmp(p->phase, "locked")) {
		/* for the tests: while the file TANDEM_TEST_MOVE_HOLD names
		 * exists, the move waits here, the user locked and nothing
		 * else done yet */
		const char *hold = getenv("TANDEM_TEST_MOVE_HOLD");
		while (hold && access(hold, F_OK) == 0 && !stop_flag)
			usleep(20000);
	}
}

static void print_progress(struct display *d, const struct syncc_move_progress *p)
{
	char bd[32], bt[32], eta[32];
	tools_human_bytes(p->bytes_done, bd, sizeof bd);
	tools_human_bytes(p->bytes_total, bt, sizeof bt);
	if (p->eta_s < 0)
		snprintf(eta, sizeof eta, "?");
	else
		snprintf(eta, sizeof eta, "%.0fs", p->eta_s);
	fprintf(stderr, "%smove %s: %s mailboxes %zu/%zu messages %lu/%lu bytes %s/%s passes %d elapsed %.0fs eta %s%s",
		d->tty ? "\r" : "", d->user, p->phase, p->mailboxes_done, p->mailboxes_total, p->messages_done,
		p->messages_total, bd, bt, p->pass, p->elapsed_s, eta, d->tty ? "\033[K" : "\n");
	fflush(stderr);
	d->shown = 1;
}

/* The target as the record names it. */
static void target_name(struct tool *t, const struct syncc_opts *o, struct buf *out)
{
	const char *chan = o->channel ? o->channel : "";
	const char *host = o->server ? o->server : conf_chan_str(t->conf, chan, "sync_host");
	const char *port = conf_chan_str(t->conf, chan, "sync_port");
	buf_appends(out, host ? host : "");
	if (!o->server && host && host[0] != '/' && !strchr(host, ':') && port && *port)
		buf_printf(out, ":%s", port);
}

/* 0, or a message: the target is one of this store's own replicas. */
static int own_replica(struct tool *t, const char *target, struct buf *why)
{
	const char *const *chans;
	size_t n = conf_log_channels(t->conf, &chans);
	for (size_t i = 0; i < n; i++) {
		struct syncc_opts c = { .channel = chans[i] };
		struct buf name = BUF_INIT;
		target_name(t, &c, &name);
		int same = name.len && !strcmp(name.ptr, target);
		buf_free(&name);
		if (same) {
			buf_printf(why, "%s is the replica of channel '%s' of this store: moving a user there"
					" would end in its deletion there", target, *chans[i] ? chans[i] : "(default)");
			return 1;
		}
	}
	return 0;
}

int cmd_move_user(struct tool *t, int argc, char **argv)
{
	if (tool_help(argc, argv, usage))
		return EXIT_OK;
	struct syncc_opts o = { 0 };
	struct syncc_move_opts mo = { 0 };
	int progress = 0;
	int i = 1;
	for (; i < argc && argv[i][0] == '-'; i++) {
		const char *a = argv[i];
		char *end;
		if (!strcmp(a, "-n") && i + 1 < argc)
			o.channel = argv[++i];
		else if (!strcmp(a, "-S") && i + 1 < argc)
			o.server = argv[++i];
		else if (!strcmp(a, "-v"))
			o.verbose = 1;
		else if (!strcmp(a, "-z"))
			o.require_compress = 1;
		else if (!strcmp(a, "--progress"))
			progress = 1;
		else if (!strcmp(a, "--max-passes") && i + 1 < argc) {
			long v = strtol(argv[++i], &end, 10);
			if (*end || v < 1 || v > 100)
				return tool_usage(usage);
			mo.max_passes = (int)v;
		} else if (!strcmp(a, "--settled") && i + 1 < argc) {
			long v = strtol(argv[++i], &end, 10);
			if (*end || v < 1 || v > 1000000)
				return tool_usage(usage);
			mo.settled = (unsigned long)v;
		} else
			return tool_usage(usage);
	}
	if (i + 1 != argc || (!o.server && !o.channel))
		return tool_usage(usage);
	log_set_level(o.verbose ? LOG_LVL_DEBUG : LOG_LVL_INFO);
	o.connect_once = 1;	/* a move does not wait for a target that is down */
	struct buf target = BUF_INIT, why = BUF_INIT, diffs = BUF_INIT;
	target_name(t, &o, &target);
	if (!target.len || own_replica(t, target.ptr, &why)) {
		fprintf(stderr, "tandem: move-user: %s\n", why.len ? why.ptr : "no target: give -S or a channel with sync_host");
		buf_free(&target);
		buf_free(&why);
		return EXIT_USAGE;
	}
	struct display d = { argv[i], isatty(2), progress, 0 };
	mo.user = argv[i];
	mo.target = target.ptr;
	mo.stop = &stop_flag;
	mo.progress = show;
	mo.rock = &d;
	mo.report = &diffs;
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;	/* no SA_RESTART: a wait on the target ends */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	struct terr err = { 0 };
	int rc = EXIT_OK;
	struct syncc *sc = syncc_new(t->conf, t->st, &o);
	if (syncc_connect(sc, &err) < 0 || syncc_move_user(sc, &mo, &err) < 0) {
		if (d.shown && d.tty)
			fputc('\n', stderr);
		fputs(buf_cstr(&diffs), stdout);
		rc = tool_fail(&err);
		struct store_move m;
		struct terr e2 = { 0 };
		fprintf(stderr, "tandem: user %s was not moved; nothing was removed here\n", argv[i]);
		if (store_move_get(t->st, argv[i], &m, &e2) == 0 && m.state != STORE_MOVE_NONE)
			fprintf(stderr, "tandem: user %s still has a move record (%s); tandem user unmove %s clears it\n",
				argv[i], store_move_state_name(m.state), argv[i]);
	} else {
		if (d.shown && d.tty)
			fputc('\n', stderr);
		printf("user %s moved to %s\n", argv[i], target.ptr);
	}
	syncc_free(&sc);
	buf_free(&target);
	buf_free(&why);
	buf_free(&diffs);
	return rc;
}
