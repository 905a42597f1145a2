/* test_conf.c: the configuration parser: types and their errors with
 * file:line, byte-by-byte feeding, channels, and etc/tandem.conf covering
 * every option of the table. */
#include "conf/conf.h"
#include "lib/fsutil.h"
#include "test.h"

static struct conf *parse(const char *text, int bytewise, struct terr *err)
{
	struct conf_parser *p = conf_parser_new("t.conf");
	size_t n = strlen(text);
	for (size_t i = 0; i < n; i += bytewise ? 1 : n) {
		if (conf_parser_feed(p, text + i, bytewise ? 1 : n, err) < 0) {
			conf_parser_free(&p);
			return NULL;
		}
	}
	struct conf *c = NULL;
	if (conf_parser_finish(p, &c, err) < 0)
		return NULL;
	return c;
}

static const char good[] =
	"# comment\r\n"
	"configdirectory: /var/lib/t/conf\r\n"
	"partition-default: /var/lib/t/spool\n"
	"\n"
	"   admins: admin  repl \n"
	"sync_log: on\n"
	"sync_log_channels: \"\" repl1 repl_2\n"
	"sync_host: default.example\n"
	"repl1_sync_host: one.example\n"
	"repl_2_sync_repeat_interval: 250ms\n"
	"sync_timeout: 1h30m\n"
	"maxmessagesize: 10M\n"
	"sync_password: s3cret\n"
	"virtdomains: userid";

TEST(good_config_whole_and_bytewise)
{
	for (int bw = 0; bw < 2; bw++) {
		struct terr err = { 0 };
		struct conf *c = parse(good, bw, &err);
		CHECK(c != NULL);
		if (!c) {
			printf("  %s\n", err.msg);
			continue;
		}
		CHECK_STR(conf_str(c, "configdirectory"), "/var/lib/t/conf");
		CHECK_STR(conf_partition(c, "default"), "/var/lib/t/spool");
		CHECK(conf_partition(c, "other") == NULL);
		const char *const *items;
		CHECK_INT(conf_list(c, "admins", &items), 2);
		CHECK_STR(items[1], "repl");
		CHECK_INT(conf_channels(c, &items), 3);
		CHECK_STR(items[0], "");
		CHECK_INT(conf_bool(c, "sync_log"), 1);
		CHECK_INT(conf_bool(c, "allowplaintext"), 0);
		CHECK_STR(conf_chan_str(c, "repl1", "sync_host"), "one.example");
		CHECK_STR(conf_chan_str(c, "repl_2", "sync_host"), "default.example");
		CHECK_STR(conf_chan_str(c, "", "sync_host"), "default.example");
		CHECK_INT(conf_chan_duration_ms(c, "repl_2", "sync_repeat_interval"), 250);
		CHECK_INT(conf_chan_duration_ms(c, "repl1", "sync_repeat_interval"), 1000);
		CHECK_INT(conf_duration_ms(c, "sync_timeout"), 5400000);
		CHECK_INT(conf_int(c, "maxmessagesize"), 10 * 1024 * 1024);
		CHECK_INT(conf_int(c, "timeout"), 32);
		CHECK_STR(conf_str(c, "virtdomains"), "userid");
		CHECK_INT(conf_list(c, "sync_log_unsuppressable_channels", &items), 1);
		struct buf d = BUF_INIT;
		conf_dump(c, &d);
		CHECK(strstr(d.ptr, "sync_password: ********") != NULL);
		CHECK(strstr(d.ptr, "s3cret") == NULL);
		CHECK(strstr(d.ptr, "repl1_sync_host: one.example") != NULL);
		buf_free(&d);
		conf_free(&c);
	}
}

static void bad(const char *text, const char *want)
{
	for (int bw = 0; bw < 2; bw++) {
		struct terr err = { 0 };
		struct conf *c = parse(text, bw, &err);
		CHECK(c == NULL);
		if (!strstr(err.msg, want)) {
			printf("  want '%s' in '%s'\n", want, err.msg);
			CHECK(0);
		}
		CHECK_INT(err.code, TE_CONFIG);
		conf_free(&c);
	}
}

TEST(errors_name_file_and_line)
{
	bad("configdirectory: /x\nsync_hots: foo\n", "t.conf:2: unknown option 'sync_hots'");
	bad("configdirectory: /x\nsync_timeout: ten\n", "t.conf:2: sync_timeout: bad duration 'ten'");
	bad("configdirectory: /x\njust words\n", "t.conf:2: line has no ':'");
	bad("configdirectory: /x\nadmins: a\nadmins: b\n", "t.conf:3: option 'admins' is set twice (first on line 2)");
	bad("configdirectory: /x\nsync_log: maybe\n", "t.conf:2: sync_log: bad yes/no value");
	bad("configdirectory: /x\nvirtdomains: sometimes\n", "is not one of: off userid on");
	bad("configdirectory: /x\ntimeout: 5\n", "t.conf:2: timeout: 5 is out of range");
	bad("configdirectory: relative/path\n", "t.conf:1: configdirectory: must be an absolute path");
	bad("configdirectory: /x\nrepl9_sync_host: h\n", "t.conf:2: 'repl9_sync_host': channel 'repl9' is not in sync_log_channels");
	bad("configdirectory: /x\nrepl_admins: h\n", "unknown option 'repl_admins'");
	bad("configdirectory: /x\naltnamespace: yes\n", "altnamespace");
	bad("admins: a\n", "configdirectory is not set");
	bad("configdirectory: /x\nmaxmessagesize: 1G\n", "out of range");
	bad("configdirectory: /x\nsync_log_channels: BAD!\n", "bad channel name");
	bad("configdirectory: /x\nFoo: 1\n", "bad option name 'Foo'");
}

/* Keys of a Cyrus imapd.conf that tandem does not use: accepted, one
 * warning each; a typo of a tandem key (or a prefix that is neither a
 * channel nor a Cyrus service) stays an error. */
TEST(cyrus_keys_ignored_typos_fail)
{
	struct terr err;
	struct conf *c = parse("configdirectory: /x\n"
			       "sasl_pwcheck_method: saslauthd\n"
			       "sync_log_channels: repl1 squatter\n"
			       "repl1_sync_host: h\n"
			       "repl1_shutdown_file: /run/cyrus/sync/repl1_shutdown\n"
			       "duplicate_db_path: /var/lib/cyrus/deliver.db\n"
			       "lmtp_admins: bob\n"
			       "metapartition-default: /var/meta\n"
			       "repl1_sync_cache_db: twoskip\n",
			       1, &err);
	CHECK(c != NULL);
	if (!c) {
		printf("  %s\n", err.msg);
		return;
	}
	CHECK_INT(conf_nignored(c), 6);
	static const char *const keys[] = { "sasl_pwcheck_method", "repl1_shutdown_file", "duplicate_db_path",
					    "lmtp_admins", "metapartition-default", "repl1_sync_cache_db" };
	static const int lines[] = { 2, 5, 6, 7, 8, 9 };
	for (size_t i = 0; i < 6; i++) {
		int line = 0;
		const char *note = NULL;
		CHECK_STR(conf_ignored(c, i, &line, &note), keys[i]);
		CHECK_INT(line, lines[i]);
		CHECK(note && strstr(note, "ignored"));
	}
	int line;
	const char *note;
	conf_ignored(c, 1, &line, &note);
	CHECK(strstr(note, "repl1_sync_shutdown_file") != NULL);
	CHECK(conf_ignored(c, 6, &line, &note) == NULL);
	CHECK_STR(conf_chan_str(c, "repl1", "sync_host"), "h");
	conf_free(&c);
	bad("configdirectory: /x\nsync_repeat_intervall: 3\n", "t.conf:2: unknown option 'sync_repeat_intervall'");
	bad("configdirectory: /x\nsasl_a: 1\nsasl_a: 2\n", "t.conf:3: option 'sasl_a' is set twice");
	bad("configdirectory: /x\nrepl2_shutdown_file: /x\nsync_log_channels: repl1\n",
	    "t.conf:2: unknown option 'repl2_shutdown_file'");
	bad("configdirectory: /x\nlmtp_admins_typo: 1\n", "unknown option 'lmtp_admins_typo'");
}

TEST(nul_and_long_lines)
{
	struct terr err;
	struct conf_parser *p = conf_parser_new("t.conf");
	CHECK_INT(conf_parser_feed(p, "admins: b\n\0", 11, &err), -1);
	CHECK(strstr(err.msg, "t.conf:2: NUL byte") != NULL);
	conf_parser_free(&p);
	char *lng = malloc(10000);
	memset(lng, 'x', 9999);
	lng[9999] = '\0';
	p = conf_parser_new("t.conf");
	CHECK_INT(conf_parser_feed(p, lng, strlen(lng), &err), -1);
	CHECK(strstr(err.msg, "longer than") != NULL);
	conf_parser_free(&p);
	free(lng);
}

/* etc/tandem.conf must parse and name every option of the table. */
TEST(sample_config_covers_every_option)
{
	struct conf *c = NULL;
	struct terr err;
	if (conf_load("etc/tandem.conf", &c, &err) < 0) {
		printf("  etc/tandem.conf: %s\n", err.msg);
		CHECK(0);
		return;
	}
	conf_free(&c);
	struct buf text = BUF_INIT, doc = BUF_INIT;
	fs_read_file("etc/tandem.conf", 1 << 20, &text, &err);
	conf_doc(&doc);
	for (const char *p = doc.ptr; p && *p;) {
		const char *e = strchr(p, ':');
		char name[128];
		snprintf(name, sizeof name, "%.*s", (int)(e - p - 2), p + 2);
		char *lt = strchr(name, '<');
		if (lt)
			*lt = '\0';
		char want1[160], want2[160];
		snprintf(want1, sizeof want1, "\n# %s", name);
		snprintf(want2, sizeof want2, "\n%s", name);
		if (!strstr(text.ptr, want1) && !strstr(text.ptr, want2)) {
			printf("  etc/tandem.conf does not document '%s'\n", name);
			CHECK(0);
		}
		p = strchr(p, '\n');
		p = p ? p + 1 : NULL;
	}
	buf_free(&text);
	buf_free(&doc);
}

int main(void)
{
	RUN(good_config_whole_and_bytewise);
	RUN(errors_name_file_and_line);
	RUN(cyrus_keys_ignored_typos_fail);
	RUN(nul_and_long_lines);
	RUN(sample_config_covers_every_option);
	return test_done();
}
