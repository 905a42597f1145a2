/* test_store_batch.c: applies in a batch (store_apply_batch_*, the
 * replica's pipelined APPLY MAILBOX): answered as store_apply_mailbox
 * would answer each, a refused one rolled back alone inside its owner's
 * shared transaction, the change log written for the applied ones only,
 * and an incremental update of a mailbox that is not there refused. */
#include "chlog/chlog.h"
#include "lib/fsutil.h"
#include "lib/log.h"
#include "lib/sha1.h"
#include "store/store-private.h"
#include "store/store.h"
#include "test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *const bodies[] = { "Subject: one\r\n\r\nfirst\r\n", "Subject: two\r\n\r\nsecond\r\n",
				      "Subject: three\r\n\r\nthird\r\n" };

/* store_body_fn over bodies[]: unknown GUIDs were never sent. */
static int body_of(void *rock, const char *guid, const void **data_r, size_t *len_r)
{
	(void)rock;
	for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
		char g[41];
		sha1_hex(bodies[i], strlen(bodies[i]), g);
		if (!strcmp(g, guid)) {
			*data_r = bodies[i];
			*len_r = strlen(bodies[i]);
			return 0;
		}
	}
	return -1;
}

struct one {
	struct store_apply_record rec;
	struct store_apply a;
	char uniqueid[25];
};

/* A new mailbox `name` with one record: body i of bodies[] (or, i < 0, a
 * body never sent). */
static void make(struct one *o, const char *name, int i, int n)
{
	memset(o, 0, sizeof *o);
	snprintf(o->uniqueid, sizeof o->uniqueid, "batchuniqueid%011d", n);
	const char *b = i >= 0 ? bodies[i] : "never sent";
	o->rec = (struct store_apply_record){ .uid = 1, .modseq = 3, .last_updated = 1, .keywords = "",
					      .internaldate = 1704067200, .size = (uint32_t)strlen(b) };
	sha1_hex(b, strlen(b), o->rec.guid);
	o->a = (struct store_apply){ .uniqueid = o->uniqueid, .name = name, .last_uid = 1, .highestmodseq = 3,
				     .uidvalidity = 42, .createdmodseq = 1, .recs = &o->rec, .nrecs = 1,
				     .body = body_of };
}

static int exists(struct store *st, const char *name)
{
	struct store_mailbox_info mi;
	struct terr err;
	if (store_mailbox_get(st, name, &mi, &err) < 0)
		return 0;
	int n = (int)mi.last_uid;
	store_mailbox_info_free(&mi);
	return n ? 1 : 0;
}

/* Change-log lines naming mailbox in the channel's log. */
static int log_lines(const char *conf, const char *mailbox)
{
	char path[4200], line[1024];
	snprintf(path, sizeof path, "%s/sync/repl1/log", conf);
	FILE *f = fopen(path, "r");
	int n = 0;
	char want[300];
	snprintf(want, sizeof want, " %s", mailbox);
	while (f && fgets(line, sizeof line, f)) {
		line[strcspn(line, "\r\n")] = '\0';
		size_t ll = strlen(line), wl = strlen(want);
		if (ll >= wl && !strcmp(line + ll - wl, want))
			n++;
	}
	if (f)
		fclose(f);
	return n;
}

/* A fresh temporary directory (returned, to drop_store) with the paths
 * of its conf/ and spool/. */
static char *tmp_paths(char conf[4096], char spool[4096])
{
	char *dir = test_tmpdir();
	snprintf(conf, 4096, "%s/conf", dir);
	snprintf(spool, 4096, "%s/spool", dir);
	return dir;
}

/* The store of conf and spool, log its change log (NULL: none); NULL
 * (a failed check) when it does not open. */
static struct store *open_store(const char *conf, const char *spool, struct chlog *log)
{
	struct store_opts so = { conf, "default", spool, log, 0, 0, NULL, NULL, NULL };
	struct store *st = NULL;
	struct terr err;
	CHECK_INT(store_open(&so, &st, &err), 0);
	return st;
}

/* Closes *st and removes dir (from tmp_paths). */
static void drop_store(struct store **st, char *dir)
{
	struct terr err;
	store_close(st);
	fs_remove_tree(dir, &err);
	free(dir);
}

TEST(a_batch_answers_each_and_rolls_back_a_refused_one_alone)
{
	char conf[4096], spool[4096];
	char *dir = tmp_paths(conf, spool);
	static const char *const chans[] = { "repl1" };
	struct chlog *log = chlog_open(conf, chans, 1);
	struct store *st = open_store(conf, spool, log);
	struct terr err;
	struct one v[5];
	make(&v[0], "user.alice", 0, 1);
	make(&v[1], "user.alice.Bad", -1, 2);	/* its body was never sent */
	make(&v[2], "user.alice.Sub", 1, 3);	/* same owner, after the refused one */
	make(&v[3], "user.bob", 2, 4);
	make(&v[4], "user.bob.Late", 0, 5);
	v[4].a.has_since = 1;			/* an update since a state that is not here */
	v[4].a.since_modseq = 2;
	struct store_apply_batch *b = store_apply_batch_new(st);
	for (int i = 0; i < 5; i++)
		CHECK_INT(store_apply_batch_add(b, &v[i].a, &err), 0);
	CHECK_INT(store_apply_batch_count(b), 5);
	int rcs[5];
	struct terr errs[5];
	unsigned long relaxed0 = store_apply_relaxed_batches();
	store_apply_batch_run(b, rcs, errs);
	/* two owners: their commits share one closing syncfs */
	CHECK_INT(store_apply_relaxed_batches(), relaxed0 + 1);
	CHECK_INT(store_apply_batch_count(b), 0);
	CHECK_INT(rcs[0], 0);
	CHECK_INT(rcs[1], -1);
	CHECK_INT(errs[1].code, TE_NOTFOUND);
	CHECK_INT(rcs[2], 0);
	CHECK_INT(rcs[3], 0);
	CHECK_INT(rcs[4], -1);
	CHECK_INT(errs[4].code, TE_CHANGED);
	CHECK_INT(exists(st, "user.alice"), 1);
	CHECK_INT(exists(st, "user.alice.Bad"), 0);
	CHECK_INT(exists(st, "user.alice.Sub"), 1);
	CHECK_INT(exists(st, "user.bob"), 1);
	CHECK_INT(exists(st, "user.bob.Late"), 0);
	/* the change log has the applied ones (APPEND and MAILBOX), not the refused */
	CHECK_INT(log_lines(conf, "user.alice"), 2);
	CHECK_INT(log_lines(conf, "user.alice.Sub"), 2);
	CHECK_INT(log_lines(conf, "user.bob"), 2);
	CHECK_INT(log_lines(conf, "user.alice.Bad"), 0);
	/* replayed in a batch: idempotent, every one answered as before */
	for (int i = 0; i < 4; i++)
		if (i != 1)
			CHECK_INT(store_apply_batch_add(b, &v[i].a, &err), 0);
	int rc2[3];
	struct terr err2[3];
	store_apply_batch_run(b, rc2, err2);
	CHECK_INT(rc2[0], 0);
	CHECK_INT(rc2[1], 0);
	CHECK_INT(rc2[2], 0);
	/* a batch of one is store_apply_mailbox */
	struct one w;
	make(&w, "user.carol", 1, 6);
	CHECK_INT(store_apply_mailbox(st, &w.a, &err), 0);
	CHECK_INT(exists(st, "user.carol"), 1);
	/* one owner commits FULL, on its own */
	CHECK_INT(store_apply_relaxed_batches(), relaxed0 + 2);
	store_apply_batch_free(&b);
	drop_store(&st, dir);
	chlog_close(&log);
}

/* Every owner's connection is FULL again after a relaxed batch: the
 * next acknowledged change (an APPEND through the store) commits with
 * its own fdatasync. */
static int pragma_int(struct store *st, const char *owner, const char *pragma)
{
	struct ustore *u;
	struct terr err;
	if (store_ustore(st, owner, 0, &u, &err) < 0)
		return -1;
	sqlite3_stmt *s = NULL;
	int v = -1;
	if (sqlite3_prepare_v2(u->db, pragma, -1, &s, NULL) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW)
		v = sqlite3_column_int(s, 0);
	sqlite3_finalize(s);
	return v;
}

static int sync_mode(struct store *st, const char *owner)
{
	return pragma_int(st, owner, "PRAGMA synchronous;");
}

TEST(a_batch_of_owners_commits_relaxed_and_leaves_every_connection_full)
{
	char conf[4096], spool[4096];
	char *dir = tmp_paths(conf, spool);
	struct store *st = open_store(conf, spool, NULL);
	struct terr err;
	struct one v[3];
	make(&v[0], "user.dave", 0, 11);
	make(&v[1], "user.erin", 1, 12);
	make(&v[2], "user.erin.Sub", 2, 13);
	struct store_apply_batch *b = store_apply_batch_new(st);
	for (int i = 0; i < 3; i++)
		CHECK_INT(store_apply_batch_add(b, &v[i].a, &err), 0);
	unsigned long relaxed0 = store_apply_relaxed_batches();
	unsigned long skipped0, synced0, skipped1, synced1;
	store_dirsync_counts(&skipped0, &synced0);
	int rcs[3];
	struct terr errs[3];
	store_apply_batch_run(b, rcs, errs);
	CHECK_INT(store_apply_relaxed_batches(), relaxed0 + 1);
	for (int i = 0; i < 3; i++)
		CHECK_INT(rcs[i], 0);
	/* two new owners' first commits: their new logs' directory not
	 * synced by SQLite (nor their headers: synchronous=OFF), the closing
	 * syncfs covers them */
	store_dirsync_counts(&skipped1, &synced1);
	CHECK_INT((long)(synced1 - synced0), 0);
	CHECK_INT(sync_mode(st, "dave"), 2);	/* 2: FULL */
	CHECK_INT(sync_mode(st, "erin"), 2);
	CHECK_INT(pragma_int(st, "dave", "PRAGMA wal_autocheckpoint;"), 1000);
	CHECK_INT(pragma_int(st, "erin", "PRAGMA wal_autocheckpoint;"), 1000);
	/* all there after the store is closed and opened again */
	store_apply_batch_free(&b);
	store_close(&st);
	st = open_store(conf, spool, NULL);
	CHECK_INT(exists(st, "user.dave"), 1);
	CHECK_INT(exists(st, "user.erin"), 1);
	CHECK_INT(exists(st, "user.erin.Sub"), 1);
	drop_store(&st, dir);
}

/* The closing syncfs fails (a failing disk): every apply it covered
 * fails with it (their rows are in the database, not known to be on
 * disk), the connections are FULL again, and the same batch sent again
 * (as the master does after an error) succeeds, idempotent. */
TEST(a_failed_closing_sync_fails_the_applies_it_covered)
{
	char conf[4096], spool[4096];
	char *dir = tmp_paths(conf, spool);
	struct store *st = open_store(conf, spool, NULL);
	struct terr err;
	struct one v[2];
	make(&v[0], "user.fay", 0, 21);
	make(&v[1], "user.gus", 1, 22);
	struct store_apply_batch *b = store_apply_batch_new(st);
	for (int i = 0; i < 2; i++)
		CHECK_INT(store_apply_batch_add(b, &v[i].a, &err), 0);
	int rcs[2];
	struct terr errs[2];
	setenv("TANDEM_TEST_FAIL_COMMIT_SYNC", "1", 1);
	store_apply_batch_run(b, rcs, errs);
	unsetenv("TANDEM_TEST_FAIL_COMMIT_SYNC");
	CHECK_INT(rcs[0], -1);
	CHECK_INT(rcs[1], -1);
	CHECK_INT(errs[0].code, TE_IO);
	CHECK(strstr(errs[1].msg, "syncfs") != NULL);
	CHECK_INT(sync_mode(st, "fay"), 2);
	CHECK_INT(sync_mode(st, "gus"), 2);
	for (int i = 0; i < 2; i++)
		CHECK_INT(store_apply_batch_add(b, &v[i].a, &err), 0);
	store_apply_batch_run(b, rcs, errs);
	CHECK_INT(rcs[0], 0);
	CHECK_INT(rcs[1], 0);
	CHECK_INT(exists(st, "user.fay"), 1);
	CHECK_INT(exists(st, "user.gus"), 1);
	store_apply_batch_free(&b);
	drop_store(&st, dir);
}

/* Staged files for the bodies: a path per GUID (body_file), moved into
 * place (body_taken records where). */
struct staged {
	char guid[3][41];
	char *path[3];
	char *moved[3];
};

static int staged_file(void *rock, const char *guid, const char **path_r)
{
	struct staged *sg = rock;
	for (int i = 0; i < 3; i++)
		if (sg->path[i] && !strcmp(sg->guid[i], guid)) {
			*path_r = sg->moved[i] ? sg->moved[i] : sg->path[i];
			return sg->moved[i] ? 1 : 0;
		}
	return -1;
}

static void staged_taken(void *rock, const char *guid, const char *new_path)
{
	struct staged *sg = rock;
	for (int i = 0; i < 3; i++)
		if (sg->path[i] && !strcmp(sg->guid[i], guid))
			sg->moved[i] = strdup(new_path);
}

static int file_is(const char *path, const char *want)
{
	char got[256];
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	size_t n = fread(got, 1, sizeof got, f);
	fclose(f);
	return n == strlen(want) && !memcmp(got, want, n);
}

/* Staged bodies are created in the staging directory and moved into
 * blobs/xx by name in directories the store keeps open
 * (store_stage_create, store_blob_adopt_at): still right when the
 * staging directory was removed and made again between two bodies (the
 * one kept open is then gone), for a user with no blobs/ yet, and for
 * one whose blobs/ is there but not the body's blobs/xx. */
TEST(staged_bodies_move_into_place_by_name)
{
	char conf[4096], spool[4096], stage[4200];
	char *dir = tmp_paths(conf, spool);
	snprintf(stage, sizeof stage, "%s/tmp/sync", spool);
	struct store *st = open_store(conf, spool, NULL);
	struct terr err;
	struct staged sg;
	memset(&sg, 0, sizeof sg);
	for (int i = 0; i < 3; i++) {
		if (i == 1) {
			/* the staging directory kept open is removed (body 0's
			 * file kept elsewhere: a path outside it is moved too) */
			char keep[4300];
			snprintf(keep, sizeof keep, "%s/tmp/keep0", spool);
			CHECK_INT(rename(sg.path[0], keep), 0);
			free(sg.path[0]);
			sg.path[0] = strdup(keep);
			CHECK_INT(fs_remove_tree(stage, &err), 0);
		}
		struct buf path = BUF_INIT;
		int fd = -1;
		CHECK_INT(store_stage_create(st, &path, &fd, &err), 0);
		CHECK(fd >= 0 && !strncmp(path.ptr, stage, strlen(stage)));
		CHECK_INT(fs_write_all(fd, bodies[i], strlen(bodies[i]), path.ptr, &err), 0);
		close(fd);
		CHECK(file_is(path.ptr, bodies[i]));
		sha1_hex(bodies[i], strlen(bodies[i]), sg.guid[i]);
		sg.path[i] = buf_release(&path);
	}
	struct one v[3];
	make(&v[0], "user.dora", 0, 11);	/* no blobs/ yet */
	make(&v[1], "user.dora.Sub", 1, 12);	/* blobs/ there, maybe not its blobs/xx */
	make(&v[2], "user.dora.Sub2", 2, 13);
	struct store_apply_batch *b = store_apply_batch_new(st);
	for (int i = 0; i < 3; i++) {
		v[i].a.body_file = staged_file;
		v[i].a.body_taken = staged_taken;
		v[i].a.body_rock = &sg;
		CHECK_INT(store_apply_batch_add(b, &v[i].a, &err), 0);
	}
	int rcs[3];
	struct terr errs[3];
	store_apply_batch_run(b, rcs, errs);
	for (int i = 0; i < 3; i++) {
		CHECK_INT(rcs[i], 0);
		CHECK(sg.moved[i] != NULL);
		CHECK(access(sg.path[i], F_OK) < 0);	/* moved, not linked */
		struct buf want = BUF_INIT;
		CHECK_INT(store_message_path(st, "user.dora", sg.guid[i], &want, &err), 0);
		CHECK(sg.moved[i] && !strcmp(sg.moved[i], want.ptr));
		CHECK(file_is(want.ptr, bodies[i]));
		buf_free(&want);
		free(sg.path[i]);
		free(sg.moved[i]);
	}
	CHECK_INT(exists(st, "user.dora.Sub2"), 1);
	store_apply_batch_free(&b);
	drop_store(&st, dir);
}

/* users.db's row of userid: 1 there, 0 not (-1 on error). */
static int user_row(struct store *st, const char *userid)
{
	struct terr err;
	if (store_users_open(st, &err) < 0)
		return -1;
	sqlite3_stmt *s = NULL;
	int n = -1;
	if (sqlite3_prepare_v2(st->usersdb, "SELECT count(*) FROM users WHERE userid = ?;", -1, &s, NULL) == SQLITE_OK) {
		sqlite3_bind_text(s, 1, userid, -1, SQLITE_STATIC);
		if (sqlite3_step(s) == SQLITE_ROW)
			n = sqlite3_column_int(s, 0);
	}
	sqlite3_finalize(s);
	return n;
}

static int users_sync_mode(struct store *st)
{
	sqlite3_stmt *s = NULL;
	int mode = -1;
	if (st->usersdb && sqlite3_prepare_v2(st->usersdb, "PRAGMA synchronous;", -1, &s, NULL) == SQLITE_OK &&
	    sqlite3_step(s) == SQLITE_ROW)
		mode = sqlite3_column_int(s, 0);
	sqlite3_finalize(s);
	return mode;
}

/* An empty new mailbox (no record: no body to place). */
static void make_empty(struct one *o, const char *name, int n)
{
	make(o, name, 0, n);
	o->a.nrecs = 0;
	o->a.recs = NULL;
	o->a.last_uid = 0;
}

/* New users inside a batch: their users.db rows commit at NORMAL and
 * their directories are placed without their directory fsyncs; the
 * batch's first syncfs covers both, and it runs even when no body was
 * written (the old code ran none then: 1 syncfs for this batch, the
 * closing one, where there are 2). Outside a batch (store_apply_mailbox)
 * nothing is relaxed. users.db's connection is FULL again after. */
TEST(new_users_in_a_batch_leave_their_syncs_to_its_syncfs)
{
	char conf[4096], spool[4096];
	char *dir = tmp_paths(conf, spool);
	struct store *st = open_store(conf, spool, NULL);
	struct terr err;
	struct one v[3];
	make_empty(&v[0], "user.ivy", 31);
	make_empty(&v[1], "user.jon", 32);
	make_empty(&v[2], "user.jon.Sub", 33);
	unsigned long rows0 = store_apply_relaxed_user_rows(), made0 = store_owner_syncs_deferred();
	unsigned long sfs0 = store_apply_batch_syncfs();
	struct store_apply_batch *b = store_apply_batch_new(st);
	for (int i = 0; i < 3; i++)
		CHECK_INT(store_apply_batch_add(b, &v[i].a, &err), 0);
	CHECK_INT(store_apply_relaxed_user_rows(), rows0 + 2);	/* ivy, jon: once each */
	CHECK_INT(store_owner_syncs_deferred(), made0 + 2);
	CHECK_INT(users_sync_mode(st), 2);	/* FULL again at once */
	int rcs[3];
	struct terr errs[3];
	store_apply_batch_run(b, rcs, errs);
	for (int i = 0; i < 3; i++)
		CHECK_INT(rcs[i], 0);
	/* the flush's (new owners and users.db rows, one file system) and the
	 * closing one of the relaxed commits */
	CHECK_INT(store_apply_batch_syncfs(), sfs0 + 2);
	/* the same users again: nothing new, nothing relaxed */
	for (int i = 0; i < 3; i++)
		CHECK_INT(store_apply_batch_add(b, &v[i].a, &err), 0);
	store_apply_batch_run(b, rcs, errs);
	CHECK_INT(store_apply_relaxed_user_rows(), rows0 + 2);
	CHECK_INT(store_owner_syncs_deferred(), made0 + 2);
	/* a new user with bodies: one syncfs covers bodies, directory and row */
	struct one w[2];
	make(&w[0], "user.kim", 0, 34);
	make(&w[1], "user.lou", 1, 35);
	sfs0 = store_apply_batch_syncfs();
	for (int i = 0; i < 2; i++)
		CHECK_INT(store_apply_batch_add(b, &w[i].a, &err), 0);
	store_apply_batch_run(b, rcs, errs);
	CHECK_INT(rcs[0], 0);
	CHECK_INT(rcs[1], 0);
	CHECK_INT(store_apply_batch_syncfs(), sfs0 + 2);
	CHECK_INT(store_apply_relaxed_user_rows(), rows0 + 4);
	/* outside a batch: FULL row, the directory's own fsyncs */
	struct one x;
	make(&x, "user.max", 2, 36);
	CHECK_INT(store_apply_mailbox(st, &x.a, &err), 0);
	CHECK_INT(store_apply_relaxed_user_rows(), rows0 + 4);
	CHECK_INT(store_owner_syncs_deferred(), made0 + 4);
	store_apply_batch_free(&b);
	store_close(&st);
	st = open_store(conf, spool, NULL);
	static const char *const users[] = { "ivy", "jon", "kim", "lou", "max" };
	for (size_t i = 0; i < sizeof users / sizeof users[0]; i++)
		CHECK_INT(user_row(st, users[i]), 1);
	CHECK_INT(users_sync_mode(st), 2);
	CHECK_INT(exists(st, "user.kim"), 1);
	CHECK_INT(exists(st, "user.max"), 1);
	drop_store(&st, dir);
}

/* A pid no process has (a child that has exited and been reaped). */
static long dead_pid(void)
{
	pid_t p = fork();
	if (p == 0)
		_exit(0);
	waitpid(p, NULL, 0);
	return (long)p;
}

/* What a power cut inside the window can leave of a new owner placed by
 * a batch whose syncfs never ran (nothing of it answered): a directory
 * without its meta.db (made in place on the next apply), no directory
 * and the build left under <partition>/tmp (removed by the next build),
 * the users.db row lost. The master's resent applies make each whole. */
TEST(a_new_owner_cut_before_the_batch_syncfs_is_made_whole_by_the_resend)
{
	char conf[4096], spool[4096], path[8400];
	char *dir = tmp_paths(conf, spool);
	struct store *st = open_store(conf, spool, NULL);
	struct terr err;
	struct one v[2];
	make(&v[0], "user.ned", 0, 41);
	make(&v[1], "user.ola", 1, 42);
	struct store_apply_batch *b = store_apply_batch_new(st);
	for (int i = 0; i < 2; i++)
		CHECK_INT(store_apply_batch_add(b, &v[i].a, &err), 0);
	/* the crash: the batch never runs (freed unrun), the store closed */
	store_apply_batch_free(&b);
	store_close(&st);
	/* ned's directory lost its entries; ola's rename was lost, its build
	 * left behind by the dead process; both users.db rows lost */
	snprintf(path, sizeof path, "%s/user/ned", spool);
	CHECK_INT(fs_remove_tree(path, &err), 0);
	CHECK_INT(mkdir(path, 0750), 0);
	snprintf(path, sizeof path, "%s/user/ola", spool);
	char build[8400];
	snprintf(build, sizeof build, "%s/tmp/newowner-%ld-1", spool, dead_pid());
	CHECK_INT(rename(path, build), 0);
	st = open_store(conf, spool, NULL);
	CHECK_INT(store_users_open(st, &err), 0);
	CHECK_INT(store_sql_exec(st->usersdb, "DELETE FROM users;", &err), 0);
	CHECK_INT(user_row(st, "ned"), 0);
	/* the resend */
	b = store_apply_batch_new(st);
	for (int i = 0; i < 2; i++)
		CHECK_INT(store_apply_batch_add(b, &v[i].a, &err), 0);
	int rcs[2];
	struct terr errs[2];
	store_apply_batch_run(b, rcs, errs);
	CHECK_INT(rcs[0], 0);
	CHECK_INT(rcs[1], 0);
	struct stat sb;
	CHECK_INT(stat(build, &sb), -1);	/* the dead build removed */
	store_apply_batch_free(&b);
	store_close(&st);
	st = open_store(conf, spool, NULL);
	CHECK_INT(exists(st, "user.ned"), 1);
	CHECK_INT(exists(st, "user.ola"), 1);
	CHECK_INT(user_row(st, "ned"), 1);
	CHECK_INT(user_row(st, "ola"), 1);
	struct buf report = BUF_INIT;
	CHECK_INT(store_check_user(st, "ned", 1, &report, &err), 0);
	CHECK_INT(store_check_user(st, "ola", 1, &report, &err), 0);
	buf_free(&report);
	drop_store(&st, dir);
}

/* A batch of one owner commits FULL, unless that owner's log is fresh
 * (its first commit): then unsynced, and the closing syncfs makes it
 * durable (one sync where FULL made three: the log's header, the commit,
 * the log's directory). */
TEST(one_new_owner_commits_relaxed_one_known_owner_full)
{
	char conf[4096], spool[4096];
	char *dir = tmp_paths(conf, spool);
	struct store *st = open_store(conf, spool, NULL);
	struct terr err;
	struct one v[2];
	make(&v[0], "user.hal", 0, 51);
	make(&v[1], "user.hal.Sub", 1, 52);
	for (int i = 0; i < 2; i++) {
		struct store_apply_batch *b = store_apply_batch_new(st);
		CHECK_INT(store_apply_batch_add(b, &v[i].a, &err), 0);
		unsigned long relaxed0 = store_apply_relaxed_batches();
		unsigned long skipped0, synced0, skipped1, synced1;
		store_dirsync_counts(&skipped0, &synced0);
		int rc;
		struct terr e;
		store_apply_batch_run(b, &rc, &e);
		CHECK_INT(rc, 0);
		store_dirsync_counts(&skipped1, &synced1);
		/* first: hal's new log, relaxed, no directory sync by SQLite;
		 * then: his log has frames, FULL as before */
		CHECK_INT((long)(store_apply_relaxed_batches() - relaxed0), i == 0 ? 1 : 0);
		CHECK_INT((long)(synced1 - synced0), 0);
		CHECK_INT(sync_mode(st, "hal"), 2);
		store_apply_batch_free(&b);
	}
	store_close(&st);
	st = open_store(conf, spool, NULL);
	CHECK_INT(exists(st, "user.hal"), 1);
	CHECK_INT(exists(st, "user.hal.Sub"), 1);
	drop_store(&st, dir);
}

int main(void)
{
	log_set_level(LOG_LVL_ERR);
	RUN(a_batch_answers_each_and_rolls_back_a_refused_one_alone);
	RUN(a_batch_of_owners_commits_relaxed_and_leaves_every_connection_full);
	RUN(one_new_owner_commits_relaxed_one_known_owner_full);
	RUN(a_failed_closing_sync_fails_the_applies_it_covered);
	RUN(staged_bodies_move_into_place_by_name);
	RUN(new_users_in_a_batch_leave_their_syncs_to_its_syncfs);
	RUN(a_new_owner_cut_before_the_batch_syncfs_is_made_whole_by_the_resend);
	return test_done();
}
