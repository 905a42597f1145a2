/* test_chlog.c: the change log: line format (reference §7.2 examples),
 * parsing, channels, rotation, a writer racing the reader, concurrent
 * writers (group commit: shared locks, a new log's directory fsync, a
 * short write among others), and sharded channels (owner of a line,
 * routing, the published list). */
#include "chlog/chlog.h"
#include "lib/fsutil.h"
#include "test.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *fmt(const char *k, const char *a, const char *b)
{
	static struct buf out;
	struct terr err;
	buf_reset(&out);
	if (chlog_format(&out, k, a, b, &err) < 0)
		return "ERROR";
	return buf_cstr(&out);
}

TEST(format_reference_examples)
{
	CHECK_STR(fmt("APPEND", "user.fred", NULL), "APPEND user.fred\n");
	CHECK_STR(fmt("MAILBOX", "user.fred.with space", NULL), "MAILBOX \"user.fred.with space\"\n");
	CHECK_STR(fmt("MAILBOX", "user.fred.&AOk-t&AOk-", NULL), "MAILBOX user.fred.&AOk-t&AOk-\n");
	CHECK_STR(fmt("DOUBLEMAILBOX", "user.fred", "user.fred.Archive"), "DOUBLEMAILBOX user.fred user.fred.Archive\n");
	CHECK_STR(fmt("SEEN", "admin", "p603xvbfqrngduw72ylfjqki"), "SEEN admin p603xvbfqrngduw72ylfjqki\n");
	CHECK_STR(fmt("ANNOTATION", "", NULL), "ANNOTATION \"\"\n");
	CHECK_STR(fmt("MAILBOX", "a\"b{c}", NULL), "MAILBOX \"a\\\"b\\{c\\}\"\n");
	CHECK_STR(fmt("MAILBOX", "a\nb", NULL), "ERROR");
	CHECK_STR(fmt("BOGUS", "x", NULL), "ERROR");
}

TEST(parse_lines)
{
	struct chlog_entry e = { 0 };
	struct terr err;
	const char *l1 = "SEEN admin p603xvbfqrngduw72ylfjqki\r";
	CHECK_INT(chlog_parse_line(l1, strlen(l1), &e, &err), 0);
	CHECK_STR(e.keyword, "SEEN");
	CHECK_STR(buf_cstr(&e.arg1), "admin");
	CHECK_STR(buf_cstr(&e.arg2), "p603xvbfqrngduw72ylfjqki");
	CHECK_INT(e.nargs, 2);
	const char *l2 = "mailbox \"a\\\"b\\{c\\}\"";
	CHECK_INT(chlog_parse_line(l2, strlen(l2), &e, &err), 0);
	CHECK_STR(e.keyword, "MAILBOX");
	CHECK_STR(buf_cstr(&e.arg1), "a\"b{c}");
	const char *bad[] = { "APPEND", "APPEND ", "NOPE x", "APPEND a b c", "APPEND \"open", "SUB a (b" };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		CHECK_INT(chlog_parse_line(bad[i], strlen(bad[i]), &e, &err), -1);
	/* every formatted line parses back to itself */
	const char *args[] = { "user.x", "with space", "q\"uote", "b\\s", "", "(paren)" };
	for (size_t i = 0; i < sizeof args / sizeof args[0]; i++) {
		const char *line = fmt("SUB", "u", args[i]);
		CHECK_INT(chlog_parse_line(line, strlen(line) - 1, &e, &err), 0);
		CHECK_STR(buf_cstr(&e.arg2), args[i]);
	}
	chlog_entry_free(&e);
}

TEST(channels_take_done)
{
	char *dir = test_tmpdir();
	static const char *const ch[] = { "", "repl1" };
	struct chlog *l = chlog_open(dir, ch, 2);
	struct terr err;
	struct buf lines = BUF_INIT, p = BUF_INIT;
	chlog_format(&lines, "APPEND", "user.a", NULL, &err);
	chlog_format(&lines, "MAILBOX", "user.a", NULL, &err);
	CHECK_INT(chlog_append(l, lines.ptr, lines.len, &err), 0);
	chlog_path(dir, "", "log", &p);
	CHECK(access(p.ptr, F_OK) == 0);
	chlog_path(dir, "repl1", "log", &p);
	CHECK(access(p.ptr, F_OK) == 0);
	CHECK_INT(chlog_take(dir, "repl1", &err), 1);
	CHECK(access(p.ptr, F_OK) != 0);
	/* a new line goes to a fresh log, not into log-run */
	CHECK_INT(chlog_append(l, lines.ptr, lines.len, &err), 0);
	chlog_path(dir, "repl1", "log-run", &p);
	struct chlog_entry *es;
	size_t bad;
	CHECK_INT(chlog_read_file(p.ptr, &es, &bad, &err), 2);
	CHECK_INT(bad, 0);
	CHECK_STR(es[0].keyword, "APPEND");
	chlog_entries_free(es, 2);
	/* log-run still there (not done): take returns it again first */
	CHECK_INT(chlog_take(dir, "repl1", &err), 1);
	CHECK_INT(chlog_read_file(p.ptr, &es, &bad, &err), 2);
	chlog_entries_free(es, 2);
	CHECK_INT(chlog_done(dir, "repl1", &err), 0);
	CHECK_INT(chlog_take(dir, "repl1", &err), 1);	/* the new log */
	CHECK_INT(chlog_done(dir, "repl1", &err), 0);
	CHECK_INT(chlog_take(dir, "repl1", &err), 0);	/* nothing left */
	chlog_close(&l);
	buf_free(&lines);
	buf_free(&p);
	fs_remove_tree(dir, &err);
	free(dir);
}

TEST(bad_lines_are_skipped)
{
	char *dir = test_tmpdir();
	char path[4200];
	snprintf(path, sizeof path, "%s/log", dir);
	const char *text = "APPEND user.a\nGARBAGE here\n\nMAILBOX user.b\r\nSUB\n";
	struct terr err;
	fs_write_atomic(path, text, strlen(text), 0600, &err);
	struct chlog_entry *es;
	size_t bad;
	CHECK_INT(chlog_read_file(path, &es, &bad, &err), 2);
	CHECK_INT(bad, 2);
	CHECK_STR(buf_cstr(&es[1].arg1), "user.b");
	chlog_entries_free(es, 2);
	fs_remove_tree(dir, &err);
	free(dir);
}

/* The race tests run with both readers: the plain take, and the one that
 * makes the next log (a rolling client's). */
static int take_next;

static int take_c(const char *dir, struct terr *err)
{
	return take_next ? chlog_take_shard_next(dir, "c", -1, err) : chlog_take(dir, "c", err);
}

/* A child appends 2000 lines while the parent takes and reads log-run
 * over and over: every line is read exactly once. */
TEST(writer_races_reader)
{
	char *dir = test_tmpdir();
	static const char *const ch[] = { "c" };
	enum { N = 2000 };
	pid_t pid = fork();
	if (pid == 0) {
		struct chlog *l = chlog_open(dir, ch, 1);
		struct terr err;
		for (int i = 0; i < N; i++) {
			struct buf b = BUF_INIT;
			char name[32];
			snprintf(name, sizeof name, "user.u%d", i);
			chlog_format(&b, "MAILBOX", name, NULL, &err);
			if (chlog_append(l, b.ptr, b.len, &err) < 0)
				_exit(1);
			buf_free(&b);
		}
		_exit(0);
	}
	static unsigned char seen[N];
	int total = 0, dup = 0, status = 0, done = 0;
	memset(seen, 0, sizeof seen);	/* run twice (take_next) */
	struct terr err;
	struct buf p = BUF_INIT;
	chlog_path(dir, "c", "log-run", &p);
	while (!done || total < N) {
		if (!done && waitpid(pid, &status, WNOHANG) == pid)
			done = 1;
		int t = take_c(dir, &err);
		if (t == 1) {
			struct chlog_entry *es;
			size_t bad;
			int n = chlog_read_file(p.ptr, &es, &bad, &err);
			for (int i = 0; i < n; i++) {
				int k = atoi(buf_cstr(&es[i].arg1) + 6);
				if (k >= 0 && k < N) {
					if (seen[k])
						dup++;
					seen[k] = 1;
					total++;
				}
			}
			chlog_entries_free(es, n > 0 ? (size_t)n : 0);
			chlog_done(dir, "c", &err);
		} else if (done) {
			break;
		}
	}
	CHECK_INT(WEXITSTATUS(status), 0);
	CHECK_INT(total, N);
	CHECK_INT(dup, 0);
	buf_free(&p);
	fs_remove_tree(dir, &err);
	free(dir);
}

/* A held append keeps the reader out: chlog_take renames the log but
 * cannot finish before the writer releases (the store holds the lock
 * across its COMMIT, so no line is read before its change commits). */
TEST(reader_waits_for_held_lines)
{
	char *dir = test_tmpdir();
	static const char *const ch[] = { "c" };
	struct chlog *l = chlog_open(dir, ch, 1);
	struct terr err;
	struct buf line = BUF_INIT;
	chlog_format(&line, "APPEND", "user.a", NULL, &err);
	struct chlog_hold hold;
	CHECK_INT(chlog_append_hold(l, line.ptr, line.len, &hold, &err), 0);
	CHECK_INT(hold.n, 1);
	int pfd[2];
	CHECK_INT(pipe(pfd), 0);
	pid_t pid = fork();
	if (pid == 0) {
		struct terr e2;
		int t = chlog_take(dir, "c", &e2);
		char c = (char)('0' + t);
		if (write(pfd[1], &c, 1) != 1)
			_exit(2);
		_exit(0);
	}
	usleep(200000);
	char c = 0;
	fcntl(pfd[0], F_SETFL, O_NONBLOCK);
	CHECK_INT(read(pfd[0], &c, 1), -1);	/* still waiting for the lock */
	chlog_release(&hold);
	fcntl(pfd[0], F_SETFL, 0);
	CHECK_INT(read(pfd[0], &c, 1), 1);
	CHECK_INT(c, '1');
	int status;
	waitpid(pid, &status, 0);
	close(pfd[0]);
	close(pfd[1]);
	chlog_close(&l);
	buf_free(&line);
	fs_remove_tree(dir, &err);
	free(dir);
}

/* ---- group commit: concurrent writers (shared locks) ------------------ */

/* Writer w's line i: "MAILBOX user.w<w>x<i>" (with a filler so lines
 * differ in length). */
static void gc_line(struct buf *b, int w, int i)
{
	char name[96];
	struct terr err;
	snprintf(name, sizeof name, "user.w%dx%d%.*s", w, i, (i * 7 + w) % 40, "ffffffffffffffffffffffffffffffffffffffff");
	buf_reset(b);
	chlog_format(b, "MAILBOX", name, NULL, &err);
}

/* Reads log-run: marks seen[w][i]; counts duplicates and lines that do
 * not parse or name no known line. */
enum { GC_W = 6, GC_N = 300 };
static void gc_read_run(const char *dir, unsigned char seen[GC_W][GC_N], int *total, int *dup, int *bad_total)
{
	struct buf p = BUF_INIT;
	struct terr err;
	chlog_path(dir, "c", "log-run", &p);
	struct chlog_entry *es;
	size_t bad;
	int n = chlog_read_file(p.ptr, &es, &bad, &err);
	*bad_total += (int)bad;
	for (int k = 0; k < n; k++) {
		int w, i;
		if (sscanf(buf_cstr(&es[k].arg1), "user.w%dx%d", &w, &i) == 2 && w >= 0 && w < GC_W && i >= 0 &&
		    i < GC_N) {
			if (seen[w][i])
				(*dup)++;
			seen[w][i] = 1;
			(*total)++;
		} else {
			(*bad_total)++;
		}
	}
	chlog_entries_free(es, n > 0 ? (size_t)n : 0);
	buf_free(&p);
}

/* GC_W processes append GC_N held lines each (holding the lock a little,
 * as across a COMMIT) while the parent takes and reads log-run over and
 * over: every line is read exactly once, none torn, and each hold's
 * position is that writer's own line (its end offset in that inode). */
TEST(concurrent_writers_group_commit)
{
	char *dir = test_tmpdir();
	static const char *const ch[] = { "c" };
	pid_t pids[GC_W];
	for (int w = 0; w < GC_W; w++) {
		pids[w] = fork();
		if (pids[w] == 0) {
			struct chlog *l = chlog_open(dir, ch, 1);
			struct terr err;
			struct buf b = BUF_INIT, back = BUF_INIT;
			for (int i = 0; i < GC_N; i++) {
				gc_line(&b, w, i);
				struct chlog_hold h;
				if (chlog_append_hold(l, b.ptr, b.len, &h, &err) < 0 || h.n != 1)
					_exit(1);
				/* the position names this writer's line in its inode */
				buf_reset(&back);
				buf_reserve(&back, b.len);
				if (pread(h.fds[0], back.ptr, b.len, (off_t)(h.pos[0].offset - b.len)) != (ssize_t)b.len ||
				    memcmp(back.ptr, b.ptr, b.len))
					_exit(2);
				if (i % 16 == 0)
					usleep(500);
				chlog_release(&h);
			}
			buf_free(&b);
			buf_free(&back);
			chlog_close(&l);
			_exit(0);
		}
	}
	static unsigned char seen[GC_W][GC_N];
	int total = 0, dup = 0, bad = 0, running = GC_W, fails = 0;
	memset(seen, 0, sizeof seen);	/* run twice (take_next) */
	struct terr err;
	while (running > 0 || total < GC_W * GC_N) {
		int status;
		pid_t p = waitpid(-1, &status, WNOHANG);
		if (p > 0) {
			running--;
			if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
				fails++;
		}
		int t = take_c(dir, &err);
		if (t == 1) {
			gc_read_run(dir, seen, &total, &dup, &bad);
			chlog_done(dir, "c", &err);
		} else if (running == 0) {
			break;
		}
	}
	CHECK_INT(fails, 0);
	CHECK_INT(total, GC_W * GC_N);
	CHECK_INT(dup, 0);
	CHECK_INT(bad, 0);
	/* no temporary file of a creator is left behind */
	struct buf p = BUF_INIT;
	chlog_path(dir, "c", "log.new.1", &p);
	char *slash = strrchr(p.ptr, '/');
	*slash = '\0';
	int leftovers = 0;
	DIR *d = opendir(p.ptr);
	for (struct dirent *de; d && (de = readdir(d));)
		leftovers += !strncmp(de->d_name, "log.new.", 8);
	if (d)
		closedir(d);
	CHECK_INT(leftovers, 0);
	buf_free(&p);
	fs_remove_tree(dir, &err);
	free(dir);
}

/* Two held appends at once: the second writer does not wait for the
 * first's release (with an exclusive lock it waited for the first's
 * COMMIT), while a reader still waits for both. */
TEST(held_appends_share_the_log)
{
	char *dir = test_tmpdir();
	static const char *const ch[] = { "c" };
	struct chlog *l = chlog_open(dir, ch, 1);
	struct terr err;
	struct buf line = BUF_INIT;
	chlog_format(&line, "APPEND", "user.a", NULL, &err);
	struct chlog_hold hold;
	CHECK_INT(chlog_append_hold(l, line.ptr, line.len, &hold, &err), 0);
	int pfd[2];
	CHECK_INT(pipe(pfd), 0);
	pid_t pid = fork();
	if (pid == 0) {
		struct chlog *l2 = chlog_open(dir, ch, 1);
		struct chlog_hold h2;
		struct terr e2;
		struct buf b = BUF_INIT;
		chlog_format(&b, "APPEND", "user.b", NULL, &e2);
		int rc = chlog_append_hold(l2, b.ptr, b.len, &h2, &e2);
		char c = rc == 0 ? 'h' : 'e';
		if (write(pfd[1], &c, 1) != 1)
			_exit(2);
		usleep(300000);	/* hold it a while: the reader waits for this too */
		c = 'r';
		if (write(pfd[1], &c, 1) != 1)
			_exit(2);
		chlog_release(&h2);
		_exit(0);
	}
	char c = 0;
	struct pollfd pf = { .fd = pfd[0], .events = POLLIN };
	CHECK_INT(poll(&pf, 1, 5000), 1);	/* not blocked behind our hold */
	CHECK_INT(read(pfd[0], &c, 1), 1);
	CHECK_INT(c, 'h');
	chlog_release(&hold);
	/* the reader waits for the child's hold: both lines are there */
	CHECK_INT(chlog_take(dir, "c", &err), 1);
	fcntl(pfd[0], F_SETFL, O_NONBLOCK);
	CHECK_INT(read(pfd[0], &c, 1), 1);	/* sent just before its release */
	CHECK_INT(c, 'r');
	int status;
	CHECK_INT(waitpid(pid, &status, 0), pid);
	struct buf p = BUF_INIT;
	chlog_path(dir, "c", "log-run", &p);
	struct chlog_entry *es;
	size_t bad;
	CHECK_INT(chlog_read_file(p.ptr, &es, &bad, &err), 2);
	chlog_entries_free(es, 2);
	close(pfd[0]);
	close(pfd[1]);
	chlog_close(&l);
	buf_free(&line);
	buf_free(&p);
	fs_remove_tree(dir, &err);
	free(dir);
}

/* A log made by the test at mode, its mark byte locked as its creator
 * would hold it, and a child writer appending to it (its result on the
 * pipe: 'a' appended, 'e' failed). */
struct marked_log {
	char *dir;
	struct buf p, d;
	int fd, pfd[2];
	struct flock fl;
	pid_t pid;
};

static void marked_log_start(struct marked_log *m, mode_t mode)
{
	static const char *const ch[] = { "c" };
	struct terr err;
	memset(m, 0, sizeof *m);
	m->dir = test_tmpdir();
	chlog_path(m->dir, "c", "log", &m->p);
	chlog_path(m->dir, "c", "", &m->d);
	CHECK_INT(fs_mkdir_p(m->d.ptr, 0750, &err), 0);
	m->fd = open(m->p.ptr, O_RDWR | O_CREAT | O_APPEND, mode);
	CHECK(m->fd >= 0);
	CHECK_INT(fchmod(m->fd, mode), 0);
	m->fl = (struct flock){ .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = (off_t)1 << 62, .l_len = 1 };
	CHECK_INT(fcntl(m->fd, F_SETLKW, &m->fl), 0);
	CHECK_INT(pipe(m->pfd), 0);
	m->pid = fork();
	if (m->pid == 0) {
		struct chlog *l = chlog_open(m->dir, ch, 1);
		struct terr e2;
		struct buf b = BUF_INIT;
		chlog_format(&b, "APPEND", "user.b", NULL, &e2);
		char c = chlog_append(l, b.ptr, b.len, &e2) == 0 ? 'a' : 'e';
		if (write(m->pfd[1], &c, 1) != 1)
			_exit(2);
		_exit(0);
	}
}

/* Releases the mark, then checks the writer appended. */
static void marked_log_end(struct marked_log *m)
{
	struct terr err;
	m->fl.l_type = F_UNLCK;	/* (a writer stuck on it ends) */
	CHECK_INT(fcntl(m->fd, F_SETLK, &m->fl), 0);
	struct pollfd pf = { .fd = m->pfd[0], .events = POLLIN };
	char c = 0;
	CHECK_INT(poll(&pf, 1, 5000), 1);
	CHECK_INT(read(m->pfd[0], &c, 1), 1);
	CHECK_INT(c, 'a');
	int status;
	waitpid(m->pid, &status, 0);
	struct stat sb;
	CHECK_INT(fstat(m->fd, &sb), 0);
	CHECK(sb.st_size > 0);
	close(m->fd);
	close(m->pfd[0]);
	close(m->pfd[1]);
	buf_free(&m->p);
	buf_free(&m->d);
	fs_remove_tree(m->dir, &err);
	free(m->dir);
}

/* A log whose creator has not yet made its directory entry durable
 * (the mark byte locked, the execute bit set): a writer that finds it
 * waits before it reports its line durable. The "creator" here is the
 * test, holding the mark of a log it made itself. */
TEST(writer_waits_for_creators_directory_fsync)
{
	struct marked_log m;
	marked_log_start(&m, 0740);	/* as a creator has it */
	struct pollfd pf = { .fd = m.pfd[0], .events = POLLIN };
	CHECK_INT(poll(&pf, 1, 300), 0);	/* still waiting for the mark */
	marked_log_end(&m);
}

/* A log whose execute bit is clear has a durable name: a writer neither
 * waits on its mark (held here exclusively, as no creator would any more)
 * nor fsyncs the directory. */
TEST(writer_trusts_a_durable_name_without_the_mark)
{
	struct marked_log m;
	marked_log_start(&m, 0640);
	struct pollfd pf = { .fd = m.pfd[0], .events = POLLIN };
	CHECK_INT(poll(&pf, 1, 5000), 1);	/* done with the mark still held */
	marked_log_end(&m);
}

/* What a writer killed between creating a new log and linking it left
 * (log.new.<pid>): removed by the sweep when nobody holds it locked and
 * it is old; a creator's file still locked, or a fresh one, is kept. */
TEST(sweep_removes_dead_writers_new_logs)
{
	char *dir = test_tmpdir();
	struct terr err;
	struct buf d = BUF_INIT, dead = BUF_INIT, live = BUF_INIT, fresh = BUF_INIT, log = BUF_INIT;
	chlog_path(dir, "c", "", &d);
	CHECK_INT(fs_mkdir_p(d.ptr, 0750, &err), 0);
	chlog_path(dir, "c", "log.new.1000001", &dead);
	chlog_path(dir, "c", "log.new.1000002", &live);
	chlog_path(dir, "c", "log.new.1000003", &fresh);
	chlog_path(dir, "c", "log", &log);
	const char *files[] = { dead.ptr, live.ptr, fresh.ptr, log.ptr };
	for (int i = 0; i < 4; i++) {
		int fd = open(files[i], O_RDWR | O_CREAT, 0640);
		CHECK(fd >= 0);
		CHECK_INT(write(fd, "APPEND user.x\n", 14), 14);
		close(fd);
	}
	struct timespec old[2] = { { time(NULL) - CHLOG_STALE_NEW_S - 5, 0 }, { time(NULL) - CHLOG_STALE_NEW_S - 5, 0 } };
	CHECK_INT(utimensat(AT_FDCWD, dead.ptr, old, 0), 0);
	CHECK_INT(utimensat(AT_FDCWD, live.ptr, old, 0), 0);
	CHECK_INT(utimensat(AT_FDCWD, log.ptr, old, 0), 0);
	/* a creator (another process) holds the mark of "live" */
	int pfd[2];
	CHECK_INT(pipe(pfd), 0);
	pid_t pid = fork();
	if (pid == 0) {
		int fd = open(live.ptr, O_RDWR);
		struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = (off_t)1 << 62, .l_len = 1 };
		char c = fd >= 0 && fcntl(fd, F_SETLKW, &fl) == 0 ? 'l' : 'e';
		if (write(pfd[1], &c, 1) != 1)
			_exit(2);
		pause();
		_exit(0);
	}
	char c = 0;
	CHECK_INT(read(pfd[0], &c, 1), 1);
	CHECK_INT(c, 'l');
	CHECK_INT(chlog_sweep_stale(dir, "c", -1), 1);
	CHECK(access(dead.ptr, F_OK) != 0);
	CHECK_INT(access(live.ptr, F_OK), 0);
	CHECK_INT(access(fresh.ptr, F_OK), 0);
	CHECK_INT(access(log.ptr, F_OK), 0);
	kill(pid, SIGKILL);
	int status;
	waitpid(pid, &status, 0);
	/* its creator gone, the old one goes too */
	CHECK_INT(chlog_sweep_stale(dir, "c", -1), 1);
	CHECK(access(live.ptr, F_OK) != 0);
	CHECK_INT(access(fresh.ptr, F_OK), 0);
	close(pfd[0]);
	close(pfd[1]);
	buf_free(&d);
	buf_free(&dead);
	buf_free(&live);
	buf_free(&fresh);
	buf_free(&log);
	fs_remove_tree(dir, &err);
	free(dir);
}

/* A writer whose write is cut short (here by RLIMIT_FSIZE, as a full
 * disk would) while other writers hold lines in the same log: it fails,
 * its partial bytes are blanked (not cut back, which would cut the
 * others' lines), and every other line, before and after, is read
 * whole; the blanked bytes are no bad line. */
TEST(short_write_among_concurrent_writers)
{
	char *dir = test_tmpdir();
	static const char *const ch[] = { "c" };
	struct chlog *l = chlog_open(dir, ch, 1);
	struct terr err;
	struct buf b = BUF_INIT, p = BUF_INIT;
	chlog_path(dir, "c", "log", &p);
	struct chlog_hold h1, h2;
	gc_line(&b, 0, 0);
	CHECK_INT(chlog_append_hold(l, b.ptr, b.len, &h1, &err), 0);
	struct stat st;
	CHECK_INT(stat(p.ptr, &st), 0);
	pid_t pid = fork();
	if (pid == 0) {
		signal(SIGXFSZ, SIG_IGN);
		struct rlimit rl = { .rlim_cur = (rlim_t)st.st_size + 9, .rlim_max = RLIM_INFINITY };
		setrlimit(RLIMIT_FSIZE, &rl);
		struct chlog *l2 = chlog_open(dir, ch, 1);
		struct terr e2;
		struct buf b2 = BUF_INIT;
		gc_line(&b2, 1, 0);
		_exit(chlog_append(l2, b2.ptr, b2.len, &e2) < 0 ? 0 : 1);
	}
	int status;
	CHECK_INT(waitpid(pid, &status, 0), pid);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);	/* its append failed */
	CHECK_INT(stat(p.ptr, &st), 0);
	gc_line(&b, 0, 1);
	CHECK_INT(chlog_append_hold(l, b.ptr, b.len, &h2, &err), 0);
	/* the file holds line 0, nine blanked bytes, line 1 */
	struct buf data = BUF_INIT;
	CHECK_INT(fs_read_file(p.ptr, 1 << 20, &data, &err), 0);
	CHECK(memmem(data.ptr, data.len, "        \n", 9) != NULL);
	chlog_release(&h1);
	chlog_release(&h2);
	CHECK_INT(chlog_take(dir, "c", &err), 1);
	static unsigned char seen[GC_W][GC_N];
	int total = 0, dup = 0, bad = 0;
	gc_read_run(dir, seen, &total, &dup, &bad);
	CHECK_INT(total, 2);
	CHECK_INT(bad, 0);
	CHECK(seen[0][0] && seen[0][1] && !seen[1][0]);
	chlog_close(&l);
	buf_free(&b);
	buf_free(&p);
	buf_free(&data);
	fs_remove_tree(dir, &err);
	free(dir);
}

static const char *owner_of(const char *line, int second)
{
	static struct buf o1, o2;
	chlog_line_owner(line, strlen(line), &o1, &o2);
	return buf_cstr(second ? &o2 : &o1);
}

TEST(line_owners)
{
	CHECK_STR(owner_of("USER alice", 0), "alice");
	CHECK_STR(owner_of("UNUSER bob@example.com", 0), "bob@example.com");
	CHECK_STR(owner_of("SEEN carol p603xvbfqrngduw72ylfjqki", 0), "carol");
	CHECK_STR(owner_of("SUB dave user.erin.Shared", 0), "dave");
	CHECK_STR(owner_of("SIEVE frank", 0), "frank");
	CHECK_STR(owner_of("APPEND user.alice.Sent", 0), "alice");
	CHECK_STR(owner_of("MAILBOX user.john^doe", 0), "john.doe");
	CHECK_STR(owner_of("MAILBOX example.com!user.bob.Lists", 0), "bob@example.com");
	CHECK_STR(owner_of("UNMAILBOX DELETED.user.alice.Old.5F3A", 0), "alice");
	CHECK_STR(owner_of("QUOTA user.alice", 0), "alice");
	CHECK_STR(owner_of("MAILBOX shared.news", 0), "");
	CHECK_STR(owner_of("ANNOTATION \"\"", 0), "");
	CHECK_STR(owner_of("RENAME user.a.X user.b.X", 0), "a");
	CHECK_STR(owner_of("RENAME user.a.X user.b.X", 1), "b");
	CHECK_STR(owner_of("RENAME user.a.X user.a.Y", 1), "a");
	CHECK_STR(owner_of("GARBAGE x", 0), "");
	/* FNV-1a: fixed values, so every version routes alike */
	CHECK_INT(chlog_shard_of("", 4), 2166136261u % 4);
	CHECK_INT(chlog_shard_of("a", 16), 0xe40c292cu % 16);
	CHECK_INT(chlog_shard_of("alice", 1), 0);
	CHECK_INT(chlog_line_shards("USER alice", 10, 1), 1);
	const char *ren = "RENAME user.a.X user.b.X";
	unsigned both = (1u << chlog_shard_of("a", 7)) | (1u << chlog_shard_of("b", 7));
	CHECK_INT(chlog_line_shards(ren, strlen(ren), 7), both);
	/* a user's mailboxes and user lines share a shard */
	for (unsigned n = 2; n <= CHLOG_MAX_SHARDS; n++) {
		const char *a = "APPEND user.zed.Trash", *b = "META zed";
		CHECK_INT(chlog_line_shards(a, strlen(a), n), chlog_line_shards(b, strlen(b), n));
	}
}

static size_t count_lines(const char *path, struct buf *data)
{
	struct terr err;
	buf_reset(data);
	if (fs_read_file(path, 1 << 20, data, &err) < 0)
		return 0;
	size_t n = 0;
	for (size_t i = 0; i < data->len; i++)
		n += data->ptr[i] == '\n';
	return n;
}

/* Lines of 20 users into a channel of 4 shards: each line is in its
 * owner's shard, in order; the unsharded channel beside it has all. */
TEST(sharded_append)
{
	char *dir = test_tmpdir();
	static const char *const ch[] = { "", "s" };
	static const unsigned shards[] = { 1, 4 };
	struct chlog *l = chlog_open_shards(dir, ch, shards, 2);
	CHECK_INT(chlog_channel_shards(l, "s"), 4);
	CHECK_INT(chlog_channel_shards(l, ""), 1);
	struct terr err;
	struct buf lines = BUF_INIT, p = BUF_INIT, data = BUF_INIT, name = BUF_INIT;
	size_t expect[4] = { 0 };
	for (int i = 0; i < 20; i++) {
		char u[16];
		snprintf(u, sizeof u, "u%d", i);
		buf_reset(&name);
		buf_printf(&name, "user.%s.Sent", u);
		chlog_format(&lines, "USER", u, NULL, &err);
		chlog_format(&lines, "APPEND", buf_cstr(&name), NULL, &err);
		expect[chlog_shard_of(u, 4)] += 2;
	}
	chlog_format(&lines, "MAILBOX", "shared.news", NULL, &err);
	expect[chlog_shard_of("", 4)]++;
	CHECK_INT(chlog_append(l, lines.ptr, lines.len, &err), 0);
	chlog_path(dir, "", "log", &p);
	CHECK_INT(count_lines(p.ptr, &data), 41);
	chlog_path(dir, "s", "log", &p);
	CHECK_INT(access(p.ptr, F_OK), -1);	/* no unsharded log */
	size_t total = 0;
	for (int k = 0; k < 4; k++) {
		chlog_shard_path(dir, "s", k, "log", &p);
		CHECK_INT(count_lines(p.ptr, &data), expect[k]);
		total += expect[k];
		/* every line of the file belongs to shard k */
		for (const char *q = buf_cstr(&data); *q;) {
			const char *nl = strchr(q, '\n');
			CHECK_INT(chlog_line_shards(q, (size_t)(nl - q), 4), 1u << k);
			q = nl + 1;
		}
	}
	CHECK_INT(total, 41);
	chlog_shard_path(dir, "", 3, "log", &p);	/* the default channel's shards */
	buf_reset(&data);
	buf_printf(&data, "%s/sync/3/log", dir);
	CHECK_STR(buf_cstr(&p), buf_cstr(&data));
	chlog_shard_path(dir, "s", -1, "log-run", &p);
	buf_reset(&data);
	buf_printf(&data, "%s/sync/s/log-run", dir);
	CHECK_STR(buf_cstr(&p), buf_cstr(&data));
	/* take/done per shard */
	CHECK_INT(chlog_take_shard(dir, "s", 1, &err), expect[1] ? 1 : 0);
	CHECK_INT(chlog_done_shard(dir, "s", 1, &err), 0);
	CHECK_INT(chlog_take_shard(dir, "s", 1, &err), 0);
	/* a held append over several shards locks each file once */
	struct chlog_hold hold = { .n = 0 };
	CHECK_INT(chlog_append_hold(l, lines.ptr, lines.len, &hold, &err), 0);
	size_t files = 1;
	for (int k = 0; k < 4; k++)
		files += expect[k] > 0;
	CHECK_INT(hold.n, files);
	chlog_release(&hold);
	CHECK_INT(hold.n, 0);
	chlog_close(&l);
	buf_free(&lines);
	buf_free(&p);
	buf_free(&data);
	buf_free(&name);
	fs_remove_tree(dir, &err);
	free(dir);
}

/* The published list: "name N" lines add channels with their shards and
 * override a writer's own count; one-name lines (older versions) mean 1;
 * the default channel's count comes from a "\"\" N" line. */
TEST(published_shards)
{
	char *dir = test_tmpdir();
	static const char *const ch[] = { "", "s" };
	static const unsigned shards[] = { 1, 4 };
	struct chlog *l = chlog_open_shards(dir, ch, shards, 2);
	struct terr err;
	static const char *const pub[] = { "", "s", "p", "old" };
	static const unsigned pubsh[] = { 3, 2, 5, 1 };
	CHECK_INT(chlog_write_channels_shards(dir, pub, pubsh, 4, &err), 0);
	struct buf p = BUF_INIT, data = BUF_INIT;
	buf_printf(&p, "%s/sync/channels", dir);
	CHECK_INT(fs_read_file(p.ptr, 4096, &data, &err), 0);
	CHECK_STR(buf_cstr(&data), "\"\" 3\ns 2\np 5\nold\n");
	usleep(20000);
	CHECK_INT(chlog_channel_shards(l, ""), 3);
	CHECK_INT(chlog_channel_shards(l, "s"), 2);
	CHECK_INT(chlog_channel_shards(l, "p"), 5);
	CHECK_INT(chlog_channel_shards(l, "old"), 1);
	CHECK_INT(chlog_channel_shards(l, "nope"), 1);
	/* an older file (names only) and bad lines */
	const char *text = "x\nbad name\ny 0\nz 99\n\"\"\n";
	fs_write_atomic(p.ptr, text, strlen(text), 0640, &err);
	usleep(20000);
	CHECK_INT(chlog_channel_shards(l, "x"), 1);
	CHECK_INT(chlog_channel_shards(l, "y"), 1);	/* skipped: not listed */
	CHECK_INT(chlog_channel_shards(l, "z"), CHLOG_MAX_SHARDS);
	CHECK_INT(chlog_channel_shards(l, "s"), 4);	/* back to its own */
	CHECK_INT(chlog_channel_shards(l, ""), 1);
	/* the one-name writer (chlog_write_channels) is what it was */
	static const char *const plain[] = { "", "a", "b" };
	CHECK_INT(chlog_write_channels(dir, plain, 3, &err), 0);
	buf_reset(&data);
	CHECK_INT(fs_read_file(p.ptr, 4096, &data, &err), 0);
	CHECK_STR(buf_cstr(&data), "a\nb\n");
	chlog_close(&l);
	buf_free(&p);
	buf_free(&data);
	fs_remove_tree(dir, &err);
	free(dir);
}

/* A fixed writer (a replica's sync server logging only to
 * sync_log_unsuppressable_channels) writes its channels alone, whatever
 * sync/channels lists. */
TEST(fixed_channels)
{
	char *dir = test_tmpdir();
	struct terr err;
	static const char *const pub[] = { "repl1", "squatter" };
	CHECK_INT(chlog_write_channels(dir, pub, 2, &err), 0);
	static const char *const mine[] = { "squatter" };
	struct chlog *l = chlog_open_fixed(dir, mine, NULL, 1);
	CHECK(l != NULL);
	CHECK_INT(chlog_append(l, "APPEND user.a\n", 14, &err), 0);
	struct buf p = BUF_INIT, data = BUF_INIT;
	chlog_path(dir, "squatter", "log", &p);
	CHECK_INT(fs_read_file(p.ptr, 4096, &data, &err), 0);
	CHECK_STR(buf_cstr(&data), "APPEND user.a\n");
	chlog_path(dir, "repl1", "log", &p);
	CHECK(access(p.ptr, F_OK) < 0);
	/* the usual writer takes the published list */
	struct chlog *w = chlog_open(dir, mine, 1);
	CHECK_INT(chlog_append(w, "APPEND user.b\n", 14, &err), 0);
	CHECK(access(p.ptr, F_OK) == 0);
	chlog_close(&l);
	chlog_close(&w);
	buf_free(&p);
	buf_free(&data);
	fs_remove_tree(dir, &err);
	free(dir);
}

/* chlog_append_hold says where each channel's (and shard's) lines ended:
 * the log's inode and its size after the append; after a take, the next
 * append goes to a new inode from offset 0. */
TEST(hold_positions)
{
	char *dir = test_tmpdir();
	static const char *const ch[] = { "a", "b" };
	static const unsigned sh[] = { 1, 4 };
	struct chlog *l = chlog_open_shards(dir, ch, sh, 2);
	struct terr err;
	struct buf lines = BUF_INIT, p = BUF_INIT;
	chlog_format(&lines, "APPEND", "user.alice", NULL, &err);
	chlog_format(&lines, "MAILBOX", "user.alice", NULL, &err);
	struct chlog_hold h;
	CHECK_INT(chlog_append_hold(l, lines.ptr, lines.len, &h, &err), 0);
	size_t n;
	const struct chlog_pos *pa = chlog_hold_positions(&h, "a", &n);
	CHECK_INT(n, 1);
	CHECK(pa != NULL);
	struct stat st;
	chlog_path(dir, "a", "log", &p);
	CHECK_INT(stat(p.ptr, &st), 0);
	if (pa) {
		CHECK_STR(pa->channel, "a");
		CHECK_INT(pa->shard, -1);
		CHECK_U64(pa->ino, st.st_ino);
		CHECK_U64(pa->dev, st.st_dev);
		CHECK_U64(pa->offset, lines.len);
	}
	/* channel b has 4 shards: alice's lines went to one of them */
	const struct chlog_pos *pb = chlog_hold_positions(&h, "b", &n);
	CHECK_INT(n, 1);
	unsigned k = chlog_shard_of("alice", 4);
	if (pb) {
		CHECK_INT(pb->shard, (int)k);
		chlog_shard_path(dir, "b", (int)k, "log", &p);
		CHECK_INT(stat(p.ptr, &st), 0);
		CHECK_U64(pb->ino, st.st_ino);
		CHECK_U64(pb->offset, lines.len);
	}
	CHECK(chlog_hold_positions(&h, "c", &n) == NULL);
	CHECK_INT(n, 0);
	chlog_release(&h);
	/* a second append: the offset is past both */
	CHECK_INT(chlog_append_hold(l, lines.ptr, lines.len, &h, &err), 0);
	pa = chlog_hold_positions(&h, "a", &n);
	if (pa)
		CHECK_U64(pa->offset, 2 * lines.len);
	unsigned long long ino0 = pa ? pa->ino : 0;
	chlog_release(&h);
	/* after the reader took the log, a new file from 0 */
	CHECK_INT(chlog_take(dir, "a", &err), 1);
	struct chlog_hold h2;
	CHECK_INT(chlog_append_hold(l, lines.ptr, lines.len, &h2, &err), 0);
	pa = chlog_hold_positions(&h2, "a", &n);
	if (pa) {
		CHECK(pa->ino != ino0);
		CHECK_U64(pa->offset, lines.len);
	}
	chlog_release(&h2);
	/* nothing held: no positions */
	CHECK_INT(chlog_append_hold(l, lines.ptr, 0, &h2, &err), 0);
	CHECK(chlog_hold_positions(&h2, "a", &n) == NULL);
	chlog_release(&h2);
	chlog_close(&l);
	buf_free(&lines);
	buf_free(&p);
	fs_remove_tree(dir, &err);
	free(dir);
}

/* The same races with the reader that makes the next log. */
TEST(writer_races_reader_making_next_logs)
{
	take_next = 1;
	test_writer_races_reader();
	take_next = 0;
}

TEST(concurrent_writers_with_next_logs)
{
	take_next = 1;
	test_concurrent_writers_group_commit();
	take_next = 0;
}

static ino_t ino_of(const char *path)
{
	struct stat sb;
	return stat(path, &sb) == 0 ? sb.st_ino : 0;
}

static long long size_of(const char *path)
{
	struct stat sb;
	return stat(path, &sb) == 0 ? (long long)sb.st_size : -1;
}

/* chlog_take_shard_next: the reader makes the next log, empty; writers
 * append to it (no log of their own, so no directory fsync of theirs);
 * an empty log is never taken; the first line's writer stamps the time
 * that stands for the log's age (its birth time is the take's). */
TEST(reader_makes_the_next_log)
{
	char *dir = test_tmpdir();
	static const char *const ch[] = { "c" };
	struct chlog *l = chlog_open(dir, ch, 1);
	struct terr err;
	struct buf line = BUF_INIT, log = BUF_INIT, run = BUF_INIT;
	chlog_format(&line, "APPEND", "user.a", NULL, &err);
	chlog_path(dir, "c", "log", &log);
	chlog_path(dir, "c", "log-run", &run);
	CHECK_INT(chlog_append(l, line.ptr, line.len, &err), 0);
	CHECK(chlog_first_line_at(log.ptr) == 0);	/* made by its writer: its birth time says it */
	CHECK_INT(chlog_take_shard_next(dir, "c", -1, &err), 1);
	CHECK_INT(size_of(log.ptr), 0);			/* the next log is there, empty */
	ino_t next = ino_of(log.ptr);
	CHECK(next != 0 && next != ino_of(run.ptr));
	CHECK(chlog_first_line_at(log.ptr) == 0);
	CHECK_INT(chlog_done(dir, "c", &err), 0);
	/* an empty log is nothing to do, and stays */
	CHECK_INT(chlog_take_shard_next(dir, "c", -1, &err), 0);
	CHECK_INT(chlog_take(dir, "c", &err), 0);
	CHECK_INT(ino_of(log.ptr), next);
	CHECK(access(run.ptr, F_OK) != 0);
	/* the next change goes into it; its writer stamps the first line */
	long long t0 = (long long)time(NULL);
	struct chlog_hold h;
	CHECK_INT(chlog_append_hold(l, line.ptr, line.len, &h, &err), 0);
	CHECK_INT(h.n, 1);
	CHECK(h.pos[0].ino == (unsigned long long)next);
	chlog_release(&h);
	long long at = chlog_first_line_at(log.ptr);
	CHECK(at >= t0 && at <= (long long)time(NULL));
	CHECK_INT(chlog_append(l, line.ptr, line.len, &err), 0);
	CHECK(chlog_first_line_at(log.ptr) == at);	/* the second line does not restamp */
	CHECK_INT(chlog_take_shard_next(dir, "c", -1, &err), 1);
	CHECK_INT(ino_of(run.ptr), next);
	CHECK(chlog_first_line_at(run.ptr) == at);	/* the stamp goes with the rename */
	CHECK(chlog_first_line_at(log.ptr) == 0);
	struct chlog_entry *es;
	size_t bad;
	CHECK_INT(chlog_read_file(run.ptr, &es, &bad, &err), 2);
	chlog_entries_free(es, 2);
	CHECK_INT(chlog_done(dir, "c", &err), 0);
	/* the plain take makes none */
	CHECK_INT(chlog_append(l, line.ptr, line.len, &err), 0);
	CHECK_INT(chlog_take(dir, "c", &err), 1);
	CHECK(access(log.ptr, F_OK) != 0);
	CHECK_INT(chlog_done(dir, "c", &err), 0);
	/* no temporary file left */
	struct buf d = BUF_INIT;
	chlog_path(dir, "c", "", &d);
	int leftovers = 0;
	DIR *dd = opendir(d.ptr);
	for (struct dirent *de; dd && (de = readdir(dd));)
		leftovers += !strncmp(de->d_name, "log.new.", 8);
	if (dd)
		closedir(dd);
	CHECK_INT(leftovers, 0);
	buf_free(&d);
	chlog_close(&l);
	buf_free(&line);
	buf_free(&log);
	buf_free(&run);
	fs_remove_tree(dir, &err);
	free(dir);
}

/* A log whose creator died between its link and its directory fsync
 * still has the owner's execute bit (chlog.c, name_check): the next
 * writer fsyncs the directory itself and clears the bit; a creator that
 * finished, or the reader's next log, leaves none. */
TEST(writer_makes_a_dead_creators_name_durable)
{
	char *dir = test_tmpdir();
	static const char *const ch[] = { "c" };
	struct chlog *l = chlog_open(dir, ch, 1);
	struct terr err;
	struct buf line = BUF_INIT, log = BUF_INIT, d = BUF_INIT;
	chlog_format(&line, "APPEND", "user.a", NULL, &err);
	chlog_path(dir, "c", "log", &log);
	chlog_path(dir, "c", "", &d);
	CHECK_INT(fs_mkdir_p(d.ptr, 0750, &err), 0);
	int fd = open(log.ptr, O_WRONLY | O_CREAT | O_EXCL, 0740);	/* as a creator leaves it */
	CHECK(fd >= 0);
	CHECK_INT(fchmod(fd, 0740), 0);
	close(fd);
	struct stat sb;
	CHECK_INT(chlog_append(l, line.ptr, line.len, &err), 0);
	CHECK_INT(stat(log.ptr, &sb), 0);
	CHECK_INT(sb.st_mode & S_IXUSR, 0);
	CHECK_INT(sb.st_size, (long long)line.len);
	/* a log its writer made, and the reader's next one: durable names */
	CHECK_INT(unlink(log.ptr), 0);
	CHECK_INT(chlog_append(l, line.ptr, line.len, &err), 0);
	CHECK_INT(stat(log.ptr, &sb), 0);
	CHECK_INT(sb.st_mode & S_IXUSR, 0);
	CHECK_INT(chlog_take_shard_next(dir, "c", -1, &err), 1);
	CHECK_INT(stat(log.ptr, &sb), 0);
	CHECK_INT(sb.st_mode & S_IXUSR, 0);
	CHECK_INT(sb.st_size, 0);
	chlog_close(&l);
	buf_free(&line);
	buf_free(&log);
	buf_free(&d);
	fs_remove_tree(dir, &err);
	free(dir);
}

int main(void)
{
	RUN(fixed_channels);
	RUN(hold_positions);
	RUN(line_owners);
	RUN(sharded_append);
	RUN(published_shards);
	RUN(reader_waits_for_held_lines);
	RUN(format_reference_examples);
	RUN(parse_lines);
	RUN(channels_take_done);
	RUN(bad_lines_are_skipped);
	RUN(writer_races_reader);
	RUN(concurrent_writers_group_commit);
	RUN(held_appends_share_the_log);
	RUN(writer_waits_for_creators_directory_fsync);
	RUN(writer_trusts_a_durable_name_without_the_mark);
	RUN(short_write_among_concurrent_writers);
	RUN(sweep_removes_dead_writers_new_logs);
	RUN(writer_races_reader_making_next_logs);
	RUN(concurrent_writers_with_next_logs);
	RUN(reader_makes_the_next_log);
	RUN(writer_makes_a_dead_creators_name_durable);
	return test_done();
}
