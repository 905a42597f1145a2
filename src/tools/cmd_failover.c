/* cmd_failover.c: tandem failover: a clean switch of roles in a pair.
 *
 *   demote   (on the master) stop clients' changes, let every channel's
 *            sync client send what is logged, check each replica equal,
 *            then become a replica; refuses (and takes changes again) if
 *            anything is left unsent or different
 *   promote  (on the replica) become the master: tandemd starts the sync
 *            clients of this instance's channels (pointed at the old
 *            master, which now takes changes only from here)
 *   status   the role and each channel's pending work
 * The role lives in <configdir>/role (src/server/server_role.c); tandemd
 * gets SIGHUP so it starts or stops its sync clients.
 */
#include "tools/tools.h"

#include "conf/conf.h"
#include "lib/buf.h"
#include "lib/fsutil.h"
#include "lib/limits.h"
#include "server/server.h"
#include "store/store.h"
#include "sync/sync_client.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char usage[] =
	"usage: tandem failover status\n"
	"       tandem failover demote [-n CHANNEL]... [--timeout SECONDS] [--force]\n"
	"       tandem failover promote [--force]\n"
	"\ndemote, on the master: clients' changes are refused from now on (LMTP 451,\n"
	"IMAP NO [UNAVAILABLE]); the sync clients send everything logged (tandemd's\n"
	"rolling clients, or one pass run here when tandemd is not running), up to\n"
	"--timeout seconds (default sync_drain_timeout); each replica is compared with\n"
	"this instance; then this instance becomes a replica and tandemd stops its\n"
	"sync clients. If anything is left unsent, failed or different, it says what\n"
	"and takes changes again (exit 1). --force skips the drain and the compare and\n"
	"contacts no replica: it only sets the role (what is left unsent is listed).\n"
	"promote, on the replica: it becomes the master, refuses changes from any\n"
	"other master, and tandemd starts its sync clients (configure this instance's\n"
	"channels to point at the old master). Refused when it is the master already.\n";

/* Sends SIGHUP to the running tandemd, if any: 1 sent, 0 none running. */
static int signal_tandemd(const struct conf *conf)
{
	struct buf path = BUF_INIT, data = BUF_INIT;
	struct terr err = { 0 };
	const char *p = conf_str(conf, "pidfile");
	if (p && *p)
		buf_appends(&path, p);
	else
		buf_printf(&path, "%s/tandemd.pid", conf_str(conf, "configdirectory"));
	int sent = 0;
	if (fs_read_file(path.ptr, 64, &data, &err) == 0) {
		long pid = strtol(buf_cstr(&data), NULL, 10);
		sent = pid > 1 && kill((pid_t)pid, SIGHUP) == 0;
	}
	buf_free(&path);
	buf_free(&data);
	return sent;
}

/* Pending lines and failed mailboxes of a channel, from syncc_status: a
 * sharded channel's total line (the one without shard=) counts every
 * shard's lines; every failed mailbox is on one line. */
static int channel_work(const struct conf *conf, const char *chan, long *pending, int *failed, struct buf *text)
{
	struct buf out = BUF_INIT;
	struct terr err = { 0 };
	*pending = 0;
	*failed = 0;
	if (syncc_status(conf, chan, &out, &err) < 0) {
		buf_printf(text, "channel=%s error=\"%s\"\n", chan, err.msg);
		buf_free(&out);
		return -1;
	}
	for (const char *l = buf_cstr(&out); *l;) {
		const char *q = strstr(l, "pending_lines=");
		const char *nl = strchr(l, '\n');
		const char *sh = strstr(l, " shard=");
		if (q && (!nl || q < nl) && !(sh && (!nl || sh < nl)))
			*pending += strtol(q + 14, NULL, 10);
		if (strstr(l, "state=failed") && (!nl || strstr(l, "state=failed") < nl))
			(*failed)++;
		l = nl ? nl + 1 : l + strlen(l);
	}
	buf_append(text, out.ptr, out.len);
	buf_free(&out);
	return 0;
}

static int compare_channel(struct tool *t, const char *chan, struct buf *text)
{
	struct syncc_opts o = { .channel = chan, .connect_once = 1 };
	struct syncc *sc = syncc_new(t->conf, t->st, &o);
	struct terr err = { 0 };
	struct buf report = BUF_INIT;
	int ndiff = 0;
	int rc = syncc_connect(sc, &err) < 0 || syncc_compare(sc, NULL, 0, &report, &ndiff, &err) < 0 ? -1 : 0;
	if (rc < 0)
		buf_printf(text, "channel=%s compare_failed error=\"%s\"\n", chan, err.msg);
	else if (ndiff)
		buf_printf(text, "channel=%s differences=%d\n%s", chan, ndiff, buf_cstr(&report));
	syncc_free(&sc);
	buf_free(&report);
	return rc < 0 || ndiff ? -1 : 0;
}

/* One pass over each shard's log (without tandemd). */
static int one_pass(struct tool *t, const char *chan, struct buf *text)
{
	int rc = 0, n = syncc_channel_shards(t->conf, chan);
	for (int k = 0; k < n; k++) {
		struct syncc_opts o = { .channel = chan, .connect_once = 1, .shard = k };
		struct syncc *sc = syncc_new(t->conf, t->st, &o);
		struct terr err = { 0 };
		if (syncc_rolling(sc, 1, &err) < 0) {
			rc = -1;
			if (n > 1)
				buf_printf(text, "channel=%s shard=%d sync_failed error=\"%s\"\n", chan, k, err.msg);
			else
				buf_printf(text, "channel=%s sync_failed error=\"%s\"\n", chan, err.msg);
		}
		syncc_free(&sc);
	}
	return rc;
}

static int demote(struct tool *t, const char *const *chans, size_t n, long long timeout_s, int force)
{
	enum server_role before = server_role_get(t->conf);
	struct terr err = { 0 };
	if (before == ROLE_REPLICA) {
		fprintf(stderr, "tandem: this instance is a replica already\n");
		return EXIT_FAIL;
	}
	if (server_role_set(t->conf, ROLE_DRAINING, &err) < 0)
		return tool_fail(&err);
	int daemon = signal_tandemd(t->conf);
	printf("role=draining clients_refused=yes tandemd=%s\n", daemon ? "running" : "not_running");
	fflush(stdout);
	struct buf text = BUF_INIT;
	int ok = 1;
	for (size_t i = 0; i < n; i++) {
		long pending = 0;
		int failed = 0;
		if (force) {
			/* no pass, no compare: the peer is not contacted at all (it
			 * may be a master this instance is to follow) */
			buf_reset(&text);
			channel_work(t->conf, chans[i], &pending, &failed, &text);
			if (pending || failed)
				printf("channel=%s left_unsent=%ld failed_mailboxes=%d note=forced\n", chans[i], pending,
				       failed);
			continue;
		}
		if (!daemon)
			one_pass(t, chans[i], &text);
		time_t deadline = time(NULL) + timeout_s;
		for (;;) {
			buf_reset(&text);
			if (channel_work(t->conf, chans[i], &pending, &failed, &text) < 0)
				break;
			if (!pending || time(NULL) >= deadline)
				break;
			usleep(200000);
		}
		if (pending || failed) {
			ok = 0;
			printf("channel=%s left_unsent=%ld failed_mailboxes=%d\n%s", chans[i], pending, failed,
			       buf_cstr(&text));
			continue;
		}
		buf_reset(&text);
		if (compare_channel(t, chans[i], &text) < 0) {
			ok = 0;
			fputs(buf_cstr(&text), stdout);
			continue;
		}
		printf("channel=%s drained=yes replica_equal=yes\n", chans[i]);
	}
	buf_free(&text);
	if (!ok && !force) {
		server_role_set(t->conf, before, &err);
		signal_tandemd(t->conf);
		printf("role=%s result=refused note=\"nothing changed; fix the above or use --force\"\n",
		       server_role_name(before));
		return EXIT_FAIL;
	}
	if (server_role_set(t->conf, ROLE_REPLICA, &err) < 0)
		return tool_fail(&err);
	signal_tandemd(t->conf);
	printf("role=replica result=%s next=\"run 'tandem failover promote' on the replica\"\n",
	       ok ? "demoted" : "forced");
	return EXIT_OK;
}

static int promote(struct tool *t, int force)
{
	struct terr err = { 0 };
	if (server_role_get(t->conf) == ROLE_MASTER && !force) {
		fprintf(stderr, "tandem: this instance is the master already\n");
		return EXIT_FAIL;
	}
	if (server_role_set(t->conf, ROLE_MASTER, &err) < 0)
		return tool_fail(&err);
	int daemon = signal_tandemd(t->conf);
	printf("role=master tandemd=%s\n", daemon ? "signalled" : "not_running");
	return EXIT_OK;
}

int cmd_failover(struct tool *t, int argc, char **argv)
{
	if (tool_help(argc, argv, usage))
		return EXIT_OK;
	if (argc < 2)
		return tool_usage(usage);
	const char *what = argv[1];
	const char *chans[MAX_CHANNELS];
	size_t n = 0;
	int force = 0;
	long long timeout_s = conf_duration_ms(t->conf, "sync_drain_timeout") / 1000;
	for (int i = 2; i < argc; i++) {
		if (!strcmp(argv[i], "-n") && i + 1 < argc && n < MAX_CHANNELS)
			chans[n++] = argv[++i];
		else if (!strcmp(argv[i], "--timeout") && i + 1 < argc)
			timeout_s = atoll(argv[++i]);
		else if (!strcmp(argv[i], "--force"))
			force = 1;
		else
			return tool_usage(usage);
	}
	if (!strcmp(what, "status")) {
		printf("role=%s\n", server_role_name(server_role_get(t->conf)));
		const char *const *all;
		size_t na = conf_log_channels(t->conf, &all);
		struct buf text = BUF_INIT;
		for (size_t i = 0; i < na; i++) {
			long pending;
			int failed;
			channel_work(t->conf, all[i], &pending, &failed, &text);
		}
		fputs(buf_cstr(&text), stdout);
		buf_free(&text);
		return EXIT_OK;
	}
	if (!strcmp(what, "promote"))
		return promote(t, force);
	if (strcmp(what, "demote"))
		return tool_usage(usage);
	if (!n) {
		const char *const *all;
		size_t na = conf_log_channels(t->conf, &all);
		for (size_t i = 0; i < na && n < MAX_CHANNELS; i++)
			if (conf_chan_str(t->conf, all[i], "sync_host"))
				chans[n++] = all[i];
	}
	if (!n) {
		fprintf(stderr, "tandem: no channel with a replica (sync_host) to fail over to\n");
		return EXIT_USAGE;
	}
	return demote(t, chans, n, timeout_s, force);
}
