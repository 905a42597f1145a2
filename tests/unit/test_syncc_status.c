/* test_syncc_status.c: `tandem status`'s counts of a channel's change logs
 * (src/syncc/syncc_rolling.c), those of its current layout and those left
 * in another one by a change of its shard count (the directories the
 * rolling client replays before its own log, found by one read of the
 * channel's directory). */
#include "conf/conf.h"
#include "lib/buf.h"
#include "lib/fsutil.h"
#include "sync/sync_client.h"
#include "test.h"

#include <sys/stat.h>

static struct conf *make_conf(const char *dir, int shards)
{
	char text[1024];
	snprintf(text, sizeof text,
		 "configdirectory: %s/conf\npartition-default: %s/spool\nsync_log: yes\n"
		 "sync_log_channels: repl1\nrepl1_sync_shards: %d\n",
		 dir, dir, shards);
	struct terr err = { 0 };
	struct conf *c = NULL;
	struct conf_parser *p = conf_parser_new("t.conf");
	if (conf_parser_feed(p, text, strlen(text), &err) < 0 || conf_parser_finish(p, &c, &err) < 0) {
		printf("  conf: %s\n", err.msg);
		conf_parser_free(&p);
		return NULL;
	}
	return c;
}

/* lines lines in <dir>/conf/sync/repl1/<sub>/<file> (sub "": the channel's own) */
static void put_log(const char *dir, const char *sub, const char *file, int lines)
{
	struct buf d = BUF_INIT, path = BUF_INIT, text = BUF_INIT;
	struct terr err = { 0 };
	buf_printf(&d, "%s/conf/sync/repl1%s%s", dir, *sub ? "/" : "", sub);
	CHECK_INT(fs_mkdir_p(d.ptr, 0750, &err), 0);
	buf_printf(&path, "%s/%s", d.ptr, file);
	for (int i = 0; i < lines; i++)
		buf_printf(&text, "APPEND user.u%d\n", i);
	CHECK_INT(fs_write_atomic(path.ptr, text.ptr ? text.ptr : "", text.len, 0640, &err), 0);
	buf_free(&d);
	buf_free(&path);
	buf_free(&text);
}

static void check_status(struct conf *conf, const char *want_total, const char *want_old)
{
	struct buf out = BUF_INIT;
	struct terr err = { 0 };
	CHECK_INT(syncc_status(conf, "repl1", &out, &err), 0);
	const char *s = buf_cstr(&out);
	printf("  %.*s\n", (int)strcspn(s, "\n"), s);
	CHECK(strstr(s, want_total) != NULL);
	if (want_old)
		CHECK(strstr(s, want_old) != NULL);
	else
		CHECK(strstr(s, "old_layout_lines=") == NULL);
	buf_free(&out);
}

/* Four shards: the unsharded log and shard 6 are another layout's;
 * "07" and "x" are no shard's directory; shards 0-3 are the channel's. */
TEST(sharded_channel_counts_the_unsharded_log_and_shards_past_its_count)
{
	char *dir = test_tmpdir();
	struct conf *conf = make_conf(dir, 4);
	CHECK(conf != NULL);
	put_log(dir, "", "log", 2);
	put_log(dir, "0", "log", 1);
	put_log(dir, "6", "log-run", 3);
	put_log(dir, "07", "log", 4);
	put_log(dir, "x", "log", 4);
	check_status(conf, "channel=repl1 pending_lines=6 shards=4", "old_layout_lines=5");
	conf_free(&conf);
	free(dir);
}

/* Unsharded: its own log counts as its own; every shard directory is
 * another layout's. */
TEST(unsharded_channel_counts_every_shard_directory)
{
	char *dir = test_tmpdir();
	struct conf *conf = make_conf(dir, 1);
	CHECK(conf != NULL);
	put_log(dir, "", "log", 2);
	put_log(dir, "0", "log", 1);
	put_log(dir, "15", "log-run", 3);
	put_log(dir, "16", "log", 4);	/* past MAX_SYNC_SHARDS: nobody's */
	check_status(conf, "channel=repl1 pending_lines=6", "old_layout_lines=4");
	conf_free(&conf);
	free(dir);
}

/* Nothing in another layout, or no directory at all: no old_layout_lines. */
TEST(no_other_layout)
{
	char *dir = test_tmpdir();
	struct conf *conf = make_conf(dir, 4);
	CHECK(conf != NULL);
	check_status(conf, "channel=repl1 pending_lines=0 shards=4", NULL);
	put_log(dir, "2", "log", 2);
	check_status(conf, "channel=repl1 pending_lines=2 shards=4", NULL);
	conf_free(&conf);
	free(dir);
}

int main(void)
{
	RUN(sharded_channel_counts_the_unsharded_log_and_shards_past_its_count);
	RUN(unsharded_channel_counts_every_shard_directory);
	RUN(no_other_layout);
	return test_done();
}
