/* test_store_keep.c: the database handles a reused session process keeps
 * between sessions (store_keep_enable) and the descriptor check of
 * server_reuse_check: the kept handles' descriptors are accounted for (3
 * each), a descriptor leaked beside them is still a leak, be it a socket
 * or one more descriptor of a kept database's file. (The rest of
 * store_keep is in test_store.c: kept_handles_across_stores.) */
#include "lib/fsutil.h"
#include "lib/limits.h"
#include "server/server.h"
#include "store/store.h"
#include "test.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

static int session(const struct store_opts *o, const char *user)
{
	struct store *st = NULL;
	struct terr err;
	struct store_mailbox_info mi;
	char inbox[64];
	snprintf(inbox, sizeof inbox, "user.%s", user);
	if (store_open(o, &st, &err) < 0)
		return -1;
	int rc = store_user_check_password(st, user, "pw", &err) == 1 && store_mailbox_get(st, inbox, &mi, &err) == 0 ? 0 : -1;
	if (rc == 0)
		store_mailbox_info_free(&mi);
	store_close(&st);
	return rc;
}

TEST(reuse_guard_counts_kept_handles)
{
	char *dir = test_tmpdir();
	char conf[4096], spool[4096], db[4200];
	snprintf(conf, sizeof conf, "%s/conf", dir);
	snprintf(spool, sizeof spool, "%s/spool", dir);
	struct store_opts o = { conf, "default", spool, NULL, 0, 0, NULL, NULL, NULL };
	struct store *st = NULL;
	struct terr err;
	CHECK_INT(store_open(&o, &st, &err), 0);
	CHECK_INT(store_user_create(st, "alice", "pw", &err), 0);
	CHECK_INT(store_user_create(st, "bob", "pw", &err), 0);
	store_close(&st);

	int conn[2];
	CHECK_INT(socketpair(AF_UNIX, SOCK_STREAM, 0, conn), 0);
	store_keep_enable(STORE_KEEP_MAX);
	struct server_reuse g;
	server_reuse_begin(&g, -1);	/* conn[0]: the first connection, open */
	close(conn[0]);
	CHECK_INT(session(&o, "alice"), 0);
	CHECK_INT(store_keep_count(), 2);	/* users.db, alice's */
	CHECK_INT(server_reuse_check(&g), 1);
	CHECK_INT(session(&o, "bob"), 0);
	CHECK_INT(store_keep_count(), 3);
	CHECK_INT(server_reuse_check(&g), 1);

	/* a leaked socket beside the kept handles */
	int leak = dup(conn[1]);
	CHECK_INT(server_reuse_check(&g), 0);
	CHECK(g.why && !strcmp(g.why, "fd_leak"));
	close(leak);
	CHECK_INT(server_reuse_check(&g), 1);

	/* a leaked descriptor of a kept database's own file */
	snprintf(db, sizeof db, "%s/user/alice/meta.db", spool);
	CHECK(store_keep_owns(db));
	leak = open(db, O_RDONLY | O_CLOEXEC);
	CHECK(leak >= 0);
	CHECK_INT(server_reuse_check(&g), 0);
	CHECK(g.why && !strcmp(g.why, "fd_leak"));
	close(leak);
	CHECK_INT(server_reuse_check(&g), 1);

	/* disabled: the handles closed, the count as at the start */
	store_keep_enable(0);
	CHECK_INT(store_keep_count(), 0);
	CHECK_INT(server_reuse_check(&g), 1);
	close(conn[1]);
	fs_remove_tree(dir, &err);
	free(dir);
}

int main(void)
{
	RUN(reuse_guard_counts_kept_handles);
	return test_done();
}
