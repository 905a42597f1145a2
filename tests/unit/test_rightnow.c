/* test_rightnow.c: synchronous replication's WAIT line (src/sync/
 * sync_rightnow.h), fed whole and one byte at a time, and its counters. */
#include "lib/fsutil.h"
#include "lib/limits.h"
#include "sync/sync_rightnow.h"
#include "test.h"

static int parse(const char *s, struct sync_rightnow_wait *w, size_t *used)
{
	return sync_rightnow_parse_wait(s, strlen(s), w, used);
}

TEST(wait_good)
{
	struct sync_rightnow_wait w;
	size_t used;
	CHECK_INT(parse("WAIT 2049 131 4096\n", &w, &used), 1);
	CHECK_U64(w.dev, 2049);
	CHECK_U64(w.ino, 131);
	CHECK_U64(w.offset, 4096);
	CHECK_INT(used, 19);
	CHECK_INT(parse("WAIT 0 0 0\n", &w, &used), 1);
	CHECK_INT(parse("WAIT 18446744073709551615 18446744073709551615 18446744073709551615\n", &w, &used), 1);
	CHECK_U64(w.offset, 18446744073709551615ULL);
	/* bytes after the line are the caller's business: used says where it ends */
	CHECK_INT(parse("WAIT 1 2 3\nX", &w, &used), 1);
	CHECK_INT(used, 11);
}

TEST(wait_bad)
{
	static const char *const bad[] = {
		"wait 1 2 3\n", "WAIT 1 2\n", "WAIT 1 2 3 4\n", "WAIT  1 2 3\n", "WAIT 1 2 3 \n", "WAIT -1 2 3\n",
		"WAIT 1 2 3\r\n", "WAIT 1 x 3\n", "WAIT 18446744073709551616 1 1\n", "NOOP\n", "\n", "WAIT\n",
		"WAIX", "HELLO there", "WAIT 1 2 a", "WAIT 01 2 3\n", "WAIT 09223372036854775806 1 1\n",
	};
	struct sync_rightnow_wait w;
	size_t used;
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		int r = parse(bad[i], &w, &used);
		if (r != -1)
			printf("  case %zu: \"%s\" gave %d\n", i, bad[i], r);
		CHECK_INT(r, -1);
	}
	/* no newline within RIGHTNOW_MAX_LINE bytes: garbage */
	char longline[RIGHTNOW_MAX_LINE + 8];
	memset(longline, '1', sizeof longline);
	memcpy(longline, "WAIT ", 5);
	CHECK_INT(sync_rightnow_parse_wait(longline, sizeof longline, &w, &used), -1);
}

/* Every prefix of a good line says "need more"; the whole line parses. */
TEST(wait_byte_by_byte)
{
	const char *line = "WAIT 64768 1234567 99\n";
	struct sync_rightnow_wait w;
	size_t used;
	for (size_t i = 0; i < strlen(line); i++)
		CHECK_INT(sync_rightnow_parse_wait(line, i, &w, &used), 0);
	CHECK_INT(sync_rightnow_parse_wait(line, strlen(line), &w, &used), 1);
	CHECK_U64(w.ino, 1234567);
}

TEST(counters)
{
	char *dir = test_tmpdir();
	struct terr err;
	struct buf out = BUF_INIT, p = BUF_INIT;
	sync_rightnow_stats(dir, "repl1", &out);
	CHECK_STR(buf_cstr(&out), "ok=0 timeouts=0 refused=0 last_cause=\"\"");
	buf_printf(&p, "%s/sync/repl1", dir);
	CHECK_INT(fs_mkdir_p(p.ptr, 0750, &err), 0);
	CHECK_INT(sync_rightnow_count(dir, "repl1", RIGHTNOW_OK, NULL, &err), 0);
	CHECK_INT(sync_rightnow_count(dir, "repl1", RIGHTNOW_OK, NULL, &err), 0);
	CHECK_INT(sync_rightnow_count(dir, "repl1", RIGHTNOW_TIMEOUT, "timeout", &err), 0);
	CHECK_INT(sync_rightnow_count(dir, "repl1", RIGHTNOW_REFUSED, "no \"sync\" client", &err), 0);
	buf_reset(&out);
	sync_rightnow_stats(dir, "repl1", &out);
	CHECK_STR(buf_cstr(&out), "ok=2 timeouts=1 refused=1 last_cause=\"no 'sync' client\"");
	buf_free(&out);
	buf_free(&p);
	fs_remove_tree(dir, &err);
	free(dir);
}

int main(void)
{
	RUN(wait_good);
	RUN(wait_bad);
	RUN(wait_byte_by_byte);
	RUN(counters);
	return test_done();
}
