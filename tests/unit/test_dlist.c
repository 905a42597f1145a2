/* test_dlist.c: DLIST framing, parsing and printing against the captured
 * examples of the reference (cyrus-sync-protocol.md §3.8, §3.5). */
#include "lib/sha1.h"
#include "proto/sync/dlist.h"
#include "test.h"

static const char mailbox_line[] =
	"APPLY MAILBOX %(UNIQUEID p603xvbfqrngduw72ylfjqki MBOXNAME user.fred SYNC_CRC 2978654139 "
	"SYNC_CRC_ANNOT 1732683463 LAST_UID 1 HIGHESTMODSEQ 4 RECENTUID 0 RECENTTIME 0 LAST_APPENDDATE "
	"1795334828 POP3_LAST_LOGIN 0 POP3_SHOW_AFTER 0 UIDVALIDITY 1795334821 PARTITION default ACL "
	"\"fred\tlrswipkxtecdan\tanyone\tlrs\tadmin\tlrswipkxtecdan\t\" OPTIONS P CREATEDMODSEQ 1 FOLDERMODSEQ 3 "
	"RECORD (%(UID 1 MODSEQ 4 LAST_UPDATED 1795334828 FLAGS ($Label1) INTERNALDATE 1704067200 SIZE 141 GUID "
	"b622fc18dc1d1f34429ed3354ecb3f0a7cc1bfae ANNOTATIONS (%(ENTRY /vendor/cmu/cyrus-imapd/savedate USERID "
	"\"\" MODSEQ 0 VALUE 1795334828) %(ENTRY /vendor/cmu/cyrus-imapd/createdmodseq USERID \"\" MODSEQ 0 VALUE "
	"4)))))\r\n";

/* Frames whole and byte by byte (same length), then parses. */
static struct dlist *frame_parse(const char *in, size_t len, long long *framed)
{
	struct terr err;
	for (int bw = 0; bw < 2; bw++) {
		struct dlist_frame f;
		dlist_frame_init(&f);
		long long n = 0;
		for (size_t upto = bw ? 1 : len; upto <= len && n == 0; upto++) {
			n = dlist_frame_scan(&f, in, upto, &err);
			if (!bw)
				break;
		}
		if (bw)
			CHECK_INT(n, *framed);
		else
			*framed = n;
	}
	struct dlist *line = NULL;
	if (*framed > 0 && dlist_parse(in, (size_t)*framed, &line, &err) < 0)
		printf("  parse: %s\n", err.msg);
	return line;
}

TEST(captured_mailbox_round_trip)
{
	long long n;
	struct dlist *line = frame_parse(mailbox_line, strlen(mailbox_line), &n);
	CHECK_INT(n, (long long)strlen(mailbox_line));
	CHECK(line != NULL);
	if (!line)
		return;
	CHECK_INT(line->n, 3);
	struct dlist *mb = dlist_take_keyed(line, 1);
	CHECK_STR(mb->key, "MAILBOX");
	const char *s;
	uint32_t u;
	uint64_t v;
	CHECK_INT(dlist_get_str(mb, "MBOXNAME", &s), 0);
	CHECK_STR(s, "user.fred");
	CHECK_INT(dlist_get_num32(mb, "SYNC_CRC", &u), 0);
	CHECK_U64(u, 2978654139u);
	CHECK_INT(dlist_get_num64(mb, "HIGHESTMODSEQ", &v), 0);
	CHECK_U64(v, 4);
	CHECK_INT(dlist_get_str(mb, "ACL", &s), 0);
	CHECK_STR(s, "fred\tlrswipkxtecdan\tanyone\tlrs\tadmin\tlrswipkxtecdan\t");
	const struct dlist *recs = dlist_get_list(mb, "RECORD");
	CHECK(recs && recs->n == 1);
	char guid[41];
	CHECK_INT(dlist_get_guid(recs->items[0], "GUID", guid), 0);
	CHECK_STR(guid, "b622fc18dc1d1f34429ed3354ecb3f0a7cc1bfae");
	const struct dlist *flags = dlist_get_list(recs->items[0], "FLAGS");
	CHECK(flags && flags->n == 1 && flags->items[0]->type == DL_STR);
	/* printed back exactly as Cyrus sent it */
	struct buf out = BUF_INIT;
	buf_appends(&out, "APPLY ");
	dlist_print(&out, mb, DLIST_LIT_CLIENT);
	buf_appends(&out, "\r\n");
	CHECK_STR(out.ptr, mailbox_line);
	buf_free(&out);
	dlist_free(&mb);
	dlist_free(&line);
}

TEST(server_literal_and_quoted)
{
	const char *in = "* MAILBOX %(ANNOTATIONS (%(ENTRY /comment USERID \"\" MODSEQ 0 VALUE {12}\r\n"
			 "line1\r\nline2) %(ENTRY /comment USERID fred MODSEQ 0 VALUE mine)))\r\nOK success\r\n";
	long long n;
	struct dlist *line = frame_parse(in, strlen(in), &n);
	CHECK_INT(n, (long long)(strlen(in) - strlen("OK success\r\n")));
	struct dlist *mb = dlist_take_keyed(line, 1);
	const struct dlist *an = dlist_get_list(mb, "ANNOTATIONS");
	CHECK(an && an->n == 2);
	const struct dlist *val = dlist_get(an->items[0], "VALUE");
	CHECK_MEM(val->s.ptr, val->s.len, "line1\r\nline2", 12);
	struct buf out = BUF_INIT;
	dlist_print(&out, mb, DLIST_LIT_SERVER);
	CHECK(strstr(out.ptr, "VALUE {12}\r\nline1\r\nline2)") != NULL);
	buf_reset(&out);
	dlist_print(&out, mb, DLIST_LIT_CLIENT);
	CHECK(strstr(out.ptr, "VALUE {12+}\r\nline1") != NULL);
	CHECK(strstr(out.ptr, "USERID \"\"") != NULL);
	buf_free(&out);
	dlist_free(&mb);
	dlist_free(&line);
	/* a plain response line frames at its LF whatever it holds */
	struct dlist_frame f;
	struct terr err;
	dlist_frame_init(&f);
	CHECK_INT(dlist_frame_scan(&f, "NO IMAP_MAILBOX_NONEXISTENT (x \"y\r\n", 35, &err), 35);
}

TEST(file_literal)
{
	const char msg[] = "From: a@example.com\r\nTo: fred@example.com\r\nSubject: hello\r\n"
			   "Date: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <1@example.com>\r\n\r\nHello world\r\n";
	struct buf in = BUF_INIT;
	buf_printf(&in, "APPLY MESSAGE (%%{default b622fc18dc1d1f34429ed3354ecb3f0a7cc1bfae %zu}\r\n", strlen(msg));
	buf_appends(&in, msg);
	buf_appends(&in, ")\r\n");
	long long n;
	struct dlist *line = frame_parse(in.ptr, in.len, &n);
	CHECK_INT(n, (long long)in.len);
	struct dlist *files = dlist_take_keyed(line, 1);
	CHECK(files && files->type == DL_LIST && files->n == 1);
	const struct dlist *fl = files->items[0];
	CHECK_INT(fl->type, DL_FILE);
	CHECK_STR(fl->part, "default");
	CHECK_INT(fl->s.len, 141);
	char sha[41];
	sha1_hex(fl->s.ptr, fl->s.len, sha);
	CHECK_STR(sha, fl->guid);
	struct buf out = BUF_INIT;
	buf_appends(&out, "APPLY ");
	dlist_print(&out, files, DLIST_LIT_CLIENT);
	buf_appends(&out, "\r\n");
	CHECK_MEM(out.ptr, out.len, in.ptr, in.len);
	buf_free(&out);
	buf_free(&in);
	dlist_free(&files);
	dlist_free(&line);
}

TEST(printing_rules)
{
	struct dlist *kv = dlist_new(DL_KVLIST, "X");
	dlist_add_str(kv, "A", "plain");
	dlist_add_str(kv, "B", "");
	dlist_add_nil(kv, "C");
	dlist_add_str(kv, "D", "NIL");
	dlist_add_str(kv, "E", "with space");
	dlist_add_str(kv, "F", "q\"uote");
	dlist_add_hex64(kv, "G", 0x1a2b3c);
	dlist_add_num(kv, "H", 18446744073709551615ULL);
	struct dlist *fl = dlist_add_list(kv, "FLAGS");
	dlist_add_flag(fl, "\\Seen");
	dlist_add_str(fl, NULL, "$Label1");
	char big[1100];
	memset(big, 'a', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	dlist_add_str(kv, "I", big);
	struct buf out = BUF_INIT;
	dlist_print(&out, kv, DLIST_LIT_CLIENT);
	const char *want = "X %(A plain B \"\" C NIL D \"NIL\" E \"with space\" F {6+}\r\nq\"uote G 00000000001a2b3c "
			   "H 18446744073709551615 FLAGS (\\Seen $Label1) I {1099+}\r\naaa";
	CHECK(!strncmp(out.ptr, want, strlen(want)));
	/* and it parses back to the same values */
	struct dlist *line = NULL;
	struct terr err;
	buf_appends(&out, "\r\n");
	CHECK_INT(dlist_parse(out.ptr, out.len, &line, &err), 0);
	struct dlist *back = dlist_take_keyed(line, 0);
	const char *s;
	CHECK(dlist_get(back, "C")->type == DL_NIL);
	CHECK_INT(dlist_get_str(back, "D", &s), 0);
	CHECK_STR(s, "NIL");
	CHECK_INT(dlist_get_str(back, "F", &s), 0);
	CHECK_STR(s, "q\"uote");
	uint64_t v;
	CHECK_INT(dlist_get_hex64(back, "G", &v), 0);
	CHECK_U64(v, 0x1a2b3c);
	CHECK_INT(dlist_get_num64(back, "H", &v), 0);
	CHECK_U64(v, 18446744073709551615ULL);
	CHECK_INT(dlist_get_num64(back, "A", &v), -1);
	buf_free(&out);
	dlist_free(&back);
	dlist_free(&line);
	dlist_free(&kv);
}

TEST(getters_rules)
{
	struct dlist *kv = dlist_new(DL_KVLIST, NULL);
	dlist_add_str(kv, "BIG", "4294967297");
	dlist_add_str(kv, "NEG", "-1");
	dlist_add_str(kv, "GUID", "B622FC18DC1D1F34429ED3354ECB3F0A7CC1BFAE");
	dlist_add_str(kv, "SHORT", "b622");
	dlist_add_str(kv, "A", "first");
	dlist_add_str(kv, "A", "second");
	uint32_t u;
	CHECK_INT(dlist_get_num32(kv, "BIG", &u), 0);
	CHECK_U64(u, 1);	/* truncated to 32 bits, as Cyrus does */
	CHECK_INT(dlist_get_num32(kv, "NEG", &u), -1);
	char g[41];
	CHECK_INT(dlist_get_guid(kv, "GUID", g), 0);
	CHECK_STR(g, "b622fc18dc1d1f34429ed3354ecb3f0a7cc1bfae");
	CHECK_INT(dlist_get_guid(kv, "SHORT", g), -1);
	const char *s;
	dlist_get_str(kv, "A", &s);
	CHECK_STR(s, "first");
	CHECK_INT(dlist_get_str(kv, "MISSING", &s), -1);
	dlist_free(&kv);
}

static void bad(const char *in, const char *want)
{
	struct dlist_frame f;
	struct terr err = { 0 };
	dlist_frame_init(&f);
	long long n = dlist_frame_scan(&f, in, strlen(in), &err);
	struct dlist *line = NULL;
	if (n > 0 && dlist_parse(in, (size_t)n, &line, &err) == 0) {
		printf("  '%s' parsed\n", in);
		CHECK(0);
	} else if (!strstr(err.msg, want)) {
		printf("  want '%s' in '%s'\n", want, err.msg);
		CHECK(0);
	}
	dlist_free(&line);
}

TEST(errors_with_positions)
{
	bad("APPLY X %[a]\r\n", "'%' not followed by '(' or '{' at byte 8");
	bad("APPLY X (a))\r\n", "unbalanced ')' at byte 11");
	bad("APPLY X \"a\rb\"\r\n", "line end inside a quoted string at byte 10");
	bad("APPLY X {999999999+}\r\n", "over the limit");
	bad("APPLY X {12x}\r\n", "bad literal header");
	char deep[200] = "APPLY X ";
	for (int i = 0; i < 40; i++)
		strcat(deep, "(");
	strcat(deep, "\r\n");
	bad(deep, "nesting deeper than");
}

TEST(need_more_until_complete)
{
	const char *in = "GET MAILBOXES (user.a\r\n user.b)\r\n";
	struct dlist_frame f;
	struct terr err;
	dlist_frame_init(&f);
	/* the LF inside the list does not end the command */
	CHECK_INT(dlist_frame_scan(&f, in, 23, &err), 0);
	CHECK_INT(dlist_frame_scan(&f, in, strlen(in), &err), (long long)strlen(in));
	dlist_frame_init(&f);
	CHECK_INT(dlist_frame_scan(&f, "RESTART\r\nGET", 12, &err), 9);
	dlist_frame_init(&f);
	CHECK_INT(dlist_frame_scan(&f, "APPLY UNUSER\r\nfred\r\n", 20, &err), 20);	/* value on the next line */
}

int main(void)
{
	RUN(captured_mailbox_round_trip);
	RUN(server_literal_and_quoted);
	RUN(file_literal);
	RUN(printing_rules);
	RUN(getters_rules);
	RUN(errors_with_positions);
	RUN(need_more_until_complete);
	return test_done();
}
