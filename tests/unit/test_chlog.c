/* test_chlog.c: the change log: line format (reference §7.2 examples),
 * parsing, channels, rotation, and a writer racing the reader. */
#include "chlog/chlog.h"
#include "lib/fsutil.h"
#include "test.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
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
	struct terr err;
	struct buf p = BUF_INIT;
	chlog_path(dir, "c", "log-run", &p);
	while (!done || total < N) {
		if (!done && waitpid(pid, &status, WNOHANG) == pid)
			done = 1;
		int t = chlog_take(dir, "c", &err);
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

int main(void)
{
	RUN(reader_waits_for_held_lines);
	RUN(format_reference_examples);
	RUN(parse_lines);
	RUN(channels_take_done);
	RUN(bad_lines_are_skipped);
	RUN(writer_races_reader);
	return test_done();
}
