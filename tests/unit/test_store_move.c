/* test_store_move.c: the user_moves records (store_move.h): lock, the
 * fence on every write, the moved record after the user is gone, login
 * against the kept password hash, the stamp sessions watch, and a lock
 * seen by a second store handle (another process's view of users.db). */
#include "chlog/chlog.h"
#include "lib/fsutil.h"
#include "store/store.h"
#include "store/store_move.h"
#include "lib/log.h"
#include "test.h"

struct fixture {
	char *dir;
	char conf[4096], spool[4096];
	struct chlog *log;
	struct store *st;
};

static struct store *open_store(struct fixture *fx)
{
	struct store_opts o = { fx->conf, "default", fx->spool, fx->log, 0, 0, NULL, NULL, NULL };
	struct store *st = NULL;
	struct terr err;
	if (store_open(&o, &st, &err) < 0) {
		printf("store_open: %s\n", err.msg);
		exit(2);
	}
	return st;
}

static void fx_open(struct fixture *fx)
{
	memset(fx, 0, sizeof *fx);
	fx->dir = test_tmpdir();
	snprintf(fx->conf, sizeof fx->conf, "%s/conf", fx->dir);
	snprintf(fx->spool, sizeof fx->spool, "%s/spool", fx->dir);
	static const char *const chans[] = { "repl1" };
	fx->log = chlog_open(fx->conf, chans, 1);
	fx->st = open_store(fx);
}

static void fx_close(struct fixture *fx)
{
	store_close(&fx->st);
	chlog_close(&fx->log);
	struct terr err;
	fs_remove_tree(fx->dir, &err);
	free(fx->dir);
}

static const char msg1[] = "From: a@example.com\r\nSubject: hello\r\nMessage-ID: <1@example.com>\r\n\r\nHello\r\n";

static int append(struct store *st, const char *mbox, struct terr *err)
{
	uint32_t uid = 0;
	struct store_append_opts o = { 0, NULL, 1704067200 };
	return store_append(st, mbox, msg1, strlen(msg1), &o, &uid, err);
}

static int count_lines(const char *path, const char *line)
{
	struct buf b = BUF_INIT;
	struct terr err;
	int n = 0;
	if (fs_read_file(path, 1 << 20, &b, &err) == 0)
		for (const char *p = buf_cstr(&b); (p = strstr(p, line)); p += strlen(line))
			n++;
	buf_free(&b);
	return n;
}

struct listed {
	int n;
	char user[64];
	struct store_move m;
};

static int list_cb(const char *userid, const struct store_move *m, void *rock)
{
	struct listed *l = rock;
	l->n++;
	snprintf(l->user, sizeof l->user, "%s", userid);
	l->m = *m;
	return 0;
}

TEST(lock_fences_writes_and_unlock_lifts_it)
{
	struct fixture fx;
	fx_open(&fx);
	struct terr err;
	struct store_move m;
	CHECK_INT(store_user_create(fx.st, "alice", "pw1", &err), 0);
	CHECK_INT(store_user_create(fx.st, "bob", "pw2", &err), 0);
	CHECK_INT(store_move_get(fx.st, "alice", &m, &err), 0);
	CHECK_INT(m.state, STORE_MOVE_NONE);
	CHECK_INT(store_move_lock(fx.st, "nobody", "h:1", &err), -1);
	CHECK_INT(err.code, TE_NOTFOUND);
	CHECK_INT(store_move_lock(fx.st, "alice", "bad target", &err), -1);
	CHECK_INT(err.code, TE_INVALID);
	CHECK_INT(store_move_lock(fx.st, "alice", "10.0.0.2:2005", &err), 0);
	CHECK_INT(store_move_get(fx.st, "alice", &m, &err), 0);
	CHECK_INT(m.state, STORE_MOVE_LOCKED);
	CHECK_STR(m.target, "10.0.0.2:2005");
	CHECK(m.since > 0);
	/* every kind of write of alice is refused; bob's go on */
	CHECK_INT(append(fx.st, "user.alice", &err), -1);
	CHECK_INT(err.code, TE_BUSY);
	struct store_mailbox_create_opts mo = { 0 };
	CHECK_INT(store_mailbox_create(fx.st, "user.alice.New", &mo, &err), -1);
	CHECK_INT(store_subscribe(fx.st, "alice", "user.alice", 1, &err), -1);
	CHECK_INT(append(fx.st, "user.bob", &err), 0);
	/* reads go on */
	struct store_mailbox_info mi;
	CHECK_INT(store_mailbox_get(fx.st, "user.alice", &mi, &err), 0);
	store_mailbox_info_free(&mi);
	CHECK_INT(store_move_unlock(fx.st, "alice", &err), 0);
	CHECK_INT(store_move_unlock(fx.st, "alice", &err), -1);
	CHECK_INT(err.code, TE_NOTFOUND);
	CHECK_INT(append(fx.st, "user.alice", &err), 0);
	CHECK_INT(store_move_get(fx.st, "alice", &m, &err), 0);
	CHECK_INT(m.state, STORE_MOVE_NONE);
	fx_close(&fx);
}

TEST(lock_is_seen_by_another_handle)
{
	/* another process: its own connection to users.db, opened before */
	struct fixture fx;
	fx_open(&fx);
	struct terr err;
	CHECK_INT(store_user_create(fx.st, "alice", "pw1", &err), 0);
	struct store *other = open_store(&fx);
	CHECK_INT(append(other, "user.alice", &err), 0);
	struct store_move_stamp stamp = { 0 };
	CHECK_INT(store_move_changed(other, &stamp), 1);	/* the first look */
	CHECK_INT(store_move_changed(other, &stamp), 0);
	CHECK_INT(store_move_lock(fx.st, "alice", "h:1", &err), 0);
	CHECK_INT(store_move_changed(other, &stamp), 1);
	CHECK_INT(store_move_changed(other, &stamp), 0);
	struct store_move m;
	CHECK_INT(store_move_get(other, "alice", &m, &err), 0);
	CHECK_INT(m.state, STORE_MOVE_LOCKED);
	CHECK_INT(append(other, "user.alice", &err), -1);
	CHECK_INT(err.code, TE_BUSY);
	CHECK_INT(store_move_unlock(fx.st, "alice", &err), 0);
	CHECK_INT(store_move_changed(other, &stamp), 1);
	CHECK_INT(append(other, "user.alice", &err), 0);
	store_close(&other);
	fx_close(&fx);
}

TEST(finish_keeps_the_record_and_logs_unuser)
{
	struct fixture fx;
	fx_open(&fx);
	struct terr err;
	CHECK_INT(store_user_create(fx.st, "alice", "secret", &err), 0);
	CHECK_INT(append(fx.st, "user.alice", &err), 0);
	CHECK_INT(store_move_finish(fx.st, "alice", &err), -1);	/* not locked */
	CHECK_INT(err.code, TE_CHANGED);
	CHECK_INT(store_user_exists(fx.st, "alice", &err), 1);
	CHECK_INT(store_move_lock(fx.st, "alice", "new.example:2005", &err), 0);
	CHECK_INT(store_move_finish(fx.st, "alice", &err), 0);
	CHECK_INT(store_user_exists(fx.st, "alice", &err), 0);
	struct store_move m;
	CHECK_INT(store_move_get(fx.st, "alice", &m, &err), 0);
	CHECK_INT(m.state, STORE_MOVE_MOVED);
	CHECK_STR(m.target, "new.example:2005");
	char text[300];
	CHECK_STR(store_move_text(&m, text, sizeof text), "moved to new.example:2005");
	CHECK_STR(store_move_state_name(m.state), "moved");
	struct listed l = { 0 };
	CHECK_INT(store_move_list(fx.st, list_cb, &l, &err), 0);
	CHECK_INT(l.n, 1);
	CHECK_STR(l.user, "alice");
	CHECK_INT(l.m.state, STORE_MOVE_MOVED);
	/* the deletion is in the change log, for this store's replicas */
	char path[4200];
	snprintf(path, sizeof path, "%s/sync/repl1/log", fx.conf);
	CHECK_INT(count_lines(path, "UNUSER alice\n"), 1);
	/* the right password learns where alice went; a wrong one nothing */
	CHECK_INT(store_move_login(fx.st, "alice", "secret", &m, &err), 1);
	CHECK_STR(m.target, "new.example:2005");
	CHECK_INT(store_move_login(fx.st, "alice", "wrong", &m, &err), 0);
	CHECK_INT(store_move_login(fx.st, "nobody", "secret", &m, &err), 0);
	/* the name stays taken until the record is cleared */
	CHECK_INT(store_user_create(fx.st, "alice", "x", &err), -1);
	CHECK_INT(store_move_unlock(fx.st, "alice", &err), 0);
	CHECK_INT(store_user_create(fx.st, "alice", "x", &err), 0);
	CHECK_INT(append(fx.st, "user.alice", &err), 0);
	fx_close(&fx);
}

TEST(user_without_password_never_logs_in_through_the_record)
{
	struct fixture fx;
	fx_open(&fx);
	struct terr err;
	struct store_move m;
	CHECK_INT(store_user_create(fx.st, "carol", NULL, &err), 0);
	CHECK_INT(store_move_lock(fx.st, "carol", "h:1", &err), 0);
	CHECK_INT(store_move_login(fx.st, "carol", "", &m, &err), 0);
	CHECK_INT(store_move_login(fx.st, "carol", "*", &m, &err), 0);
	fx_close(&fx);
}

TEST(rcpt_lookup_gives_the_row_and_the_record_in_one_read)
{
	/* store_move_rcpt (lmtpd's RCPT): the same answers as
	 * store_user_exists and store_move_get, also from a handle opened
	 * before the change (its cached statement reads the new state) */
	struct fixture fx;
	fx_open(&fx);
	struct terr err;
	struct store_move m;
	struct store *other = open_store(&fx);
	CHECK_INT(store_move_rcpt(other, "alice", &m, &err), 0);
	CHECK_INT(m.state, STORE_MOVE_NONE);
	CHECK_INT(store_user_create(fx.st, "alice", "secret", &err), 0);
	CHECK_INT(store_move_rcpt(other, "alice", &m, &err), 1);
	CHECK_INT(m.state, STORE_MOVE_NONE);
	CHECK_INT(store_move_lock(fx.st, "alice", "h:1", &err), 0);
	CHECK_INT(store_move_rcpt(other, "alice", &m, &err), 1);
	CHECK_INT(m.state, STORE_MOVE_LOCKED);
	CHECK_STR(m.target, "h:1");
	CHECK(m.since > 0);
	CHECK_INT(store_move_finish(fx.st, "alice", &err), 0);
	CHECK_INT(store_move_rcpt(other, "alice", &m, &err), 0);	/* gone, */
	CHECK_INT(m.state, STORE_MOVE_MOVED);			/* its record kept */
	CHECK_STR(m.target, "h:1");
	CHECK_INT(store_move_unlock(fx.st, "alice", &err), 0);
	CHECK_INT(store_move_rcpt(other, "alice", &m, &err), 0);
	CHECK_INT(m.state, STORE_MOVE_NONE);
	CHECK_INT(store_move_rcpt(other, "bob", &m, &err), 0);
	CHECK_INT(m.state, STORE_MOVE_NONE);
	store_close(&other);
	fx_close(&fx);
}

int main(void)
{
	log_open("test_store_move", 0, LOG_LVL_ERR);
	RUN(lock_fences_writes_and_unlock_lifts_it);
	RUN(lock_is_seen_by_another_handle);
	RUN(finish_keeps_the_record_and_logs_unuser);
	RUN(user_without_password_never_logs_in_through_the_record);
	RUN(rcpt_lookup_gives_the_row_and_the_record_in_one_read);
	return test_done();
}
