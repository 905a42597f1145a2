/* sync_progress.c: tandem sync -A with its progress on standard error.
 *
 * The users go to syncc_users in groups (about a hundredth of them, at
 * most SYNC_PROGRESS_GROUP), so the replication stays pipelined within a
 * group and the progress moves after each: users done/total, messages
 * and bytes sent, and the time left, estimated from the users' pace. On
 * a terminal one line is redrawn; otherwise (--progress) each update is
 * one key=value line. The work and its outcome are syncc_all's: every
 * user (a user that fails does not stop the others; a lost connection
 * does), then the shared mailboxes when no user failed. */
#include "tools/tools.h"

#include "lib/fsutil.h"
#include "lib/xalloc.h"
#include "store/store.h"
#include "sync/sync_client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Most users per syncc_users call between two progress updates. */
#define SYNC_PROGRESS_GROUP 64

struct names {
	char **v;
	size_t n;
};

static int add_user(const char *userid, void *rock)
{
	struct names *ns = rock;
	ns->v = xrealloc(ns->v, (ns->n + 1) * sizeof *ns->v);
	ns->v[ns->n++] = xstrdup(userid);
	return 0;
}

static int add_mailbox(const struct store_mailbox_info *mi, void *rock)
{
	return add_user(mi->name, rock);
}

static void free_names(struct names *ns)
{
	for (size_t i = 0; i < ns->n; i++)
		free(ns->v[i]);
	free(ns->v);
}

void tools_human_bytes(unsigned long long b, char *out, size_t len)
{
	static const char *const units[] = { "B", "KB", "MB", "GB", "TB" };
	double v = (double)b;
	int u = 0;
	while (v >= 1024 && u < 4) {
		v /= 1024;
		u++;
	}
	snprintf(out, len, u ? "%.1f %s" : "%.0f %s", v, units[u]);
}

static void show(const struct syncc *sc, int tty, size_t done, size_t total, uint64_t t0, int last)
{
	struct syncc_stats st;
	syncc_get_stats(sc, &st);
	double elapsed = (double)(fs_now_ns() - t0) / 1e9;
	long long eta = done && done < total ? (long long)(elapsed * (double)(total - done) / (double)done + 0.5) : 0;
	if (!tty) {
		fprintf(stderr, "progress: users=%zu/%zu messages=%lu bytes=%lu elapsed_s=%.0f eta_s=%lld\n", done, total,
			st.messages, st.bytes_sent, elapsed, eta);
		return;
	}
	char b[32];
	tools_human_bytes(st.bytes_sent, b, sizeof b);
	fprintf(stderr, "\r\033[Kusers %zu/%zu  messages %lu  %s  ", done, total, st.messages, b);
	if (done < total && done)
		fprintf(stderr, "ETA %lld:%02lld:%02lld", eta / 3600, eta / 60 % 60, eta % 60);
	else if (done == total)
		fprintf(stderr, "done in %.0f s", elapsed);
	if (last)
		fputc('\n', stderr);
	fflush(stderr);
}

int sync_all_progress(struct tool *t, struct syncc *sc, int tty, struct terr *err)
{
	struct names users = { NULL, 0 }, shared = { NULL, 0 };
	int rc = store_user_list(t->st, add_user, &users, err);
	if (rc < 0)
		goto out;
	size_t group = users.n / 100;
	group = group < 1 ? 1 : group > SYNC_PROGRESS_GROUP ? SYNC_PROGRESS_GROUP : group;
	uint64_t t0 = fs_now_ns();
	int failed = 0;
	show(sc, tty, 0, users.n, t0, 0);
	for (size_t i = 0; i < users.n; i += group) {
		size_t n = users.n - i < group ? users.n - i : group;
		struct terr e2 = { 0 };
		if (syncc_users(sc, (const char *const *)users.v + i, n, &e2) < 0) {
			*err = e2;
			failed = 1;
			if (e2.code == TE_IO) {	/* the connection is gone: stop, as syncc_all */
				show(sc, tty, i, users.n, t0, 1);
				rc = -1;
				goto out;
			}
		}
		show(sc, tty, i + n, users.n, t0, i + n == users.n);
	}
	if (users.n == 0 && tty)
		fputc('\n', stderr);
	if (failed) {
		rc = -1;
		goto out;
	}
	if (store_mailbox_list(t->st, "", add_mailbox, &shared, err) == 0)
		rc = syncc_mailboxes(sc, (const char *const *)shared.v, shared.n, err);
out:
	free_names(&users);
	free_names(&shared);
	return rc;
}
