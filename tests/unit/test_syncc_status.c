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

struct logfile {
	const char *sub;	/* "" for the channel's own directory */
	const char *file;
	int lines;
};

/* A channel of shards shards whose directory holds logs (none: the
 * directory is not there): tandem status's first line has want_total
 * and want_old (NULL: no old_layout_lines). */
static void status_case(int shards, const struct logfile *logs, size_t n, const char *want_total,
			const char *want_old)
{
	char *dir = test_tmpdir();
	struct conf *conf = make_conf(dir, shards);
	CHECK(conf != NULL);
	for (size_t i = 0; i < n; i++)
		put_log(dir, logs[i].sub, logs[i].file, logs[i].lines);
	if (conf)
		check_status(conf, want_total, want_old);
	conf_free(&conf);
	free(dir);
}

/* Four shards: the unsharded log and shard 6 are another layout's;
 * "07" and "x" are no shard's directory; shards 0-3 are the channel's. */
TEST(sharded_channel_counts_the_unsharded_log_and_shards_past_its_count)
{
	static const struct logfile logs[] = {
		{ "", "log", 2 }, { "0", "log", 1 }, { "6", "log-run", 3 }, { "07", "log", 4 }, { "x", "log", 4 },
	};
	status_case(4, logs, sizeof logs / sizeof logs[0], "channel=repl1 pending_lines=6 shards=4",
		    "old_layout_lines=5");
}

/* Unsharded: its own log counts as its own; every shard directory is
 * another layout's, up to MAX_SYNC_SHARDS. */
TEST(unsharded_channel_counts_every_shard_directory)
{
	static const struct logfile logs[] = {
		{ "", "log", 2 }, { "0", "log", 1 }, { "15", "log-run", 3 }, { "16", "log", 4 },
	};
	status_case(1, logs, sizeof logs / sizeof logs[0], "channel=repl1 pending_lines=6", "old_layout_lines=4");
}

/* No directory at all, or nothing in another layout: no old_layout_lines. */
TEST(no_other_layout)
{
	static const struct logfile logs[] = { { "2", "log", 2 } };
	status_case(4, NULL, 0, "channel=repl1 pending_lines=0 shards=4", NULL);
	status_case(4, logs, 1, "channel=repl1 pending_lines=2 shards=4", NULL);
}

int main(void)
{
	RUN(sharded_channel_counts_the_unsharded_log_and_shards_past_its_count);
	RUN(unsharded_channel_counts_every_shard_directory);
	RUN(no_other_layout);
	return test_done();
}
