/* test_dlist.c: DLIST framing, parsing and printing against the captured
 * examples of the reference (cyrus-sync-protocol.md §3.8, §3.5). */
#include "lib/sha1.h"
#include "proto/sync/dlist.h"
#include "test.h"

#include <fcntl.h>
#include <unistd.h>

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

/* A line with file literals read as a session reads it: fed one byte at a
 * time; each literal announced by DLIST_FRAME_FILE has its bytes taken
 * out of the buffer into a sink as they arrive; the line that remains
 * parses (DLIST_FILES_OUTSIDE) into external DL_FILEs. */
struct sunk {
	struct buf bytes[4];
	struct dlist_file_hdr hdr[4];
	int n;
};

static long long stream_feed(const char *in, size_t len, struct buf *line, struct sunk *sk, struct terr *err)
{
	struct dlist_frame f;
	dlist_frame_init(&f);
	f.files = 1;
	uint64_t left = 0;
	long long n = 0;
	for (size_t i = 0; i < len; i++) {
		if (left) {	/* the literal's byte goes to the sink, never to the line */
			buf_putc(&sk->bytes[sk->n - 1], in[i]);
			left--;
			continue;
		}
		buf_putc(line, in[i]);
		for (;;) {
			n = dlist_frame_scan(&f, line->ptr, line->len, err);
			if (n != DLIST_FRAME_FILE)
				break;
			CHECK_INT(f.pos, line->len);	/* the header ends the buffer: nothing read past it */
			if (sk->n == 4)
				return -1;
			sk->hdr[sk->n++] = f.file;
			left = f.file.size;
			n = 0;
			if (left)
				break;
		}
		if (n != 0)
			return n;
	}
	return n;
}

TEST(file_literals_streamed_byte_by_byte)
{
	const char *in = "APPLY MESSAGE (%{default b622fc18dc1d1f34429ed3354ecb3f0a7cc1bfae 5}\r\nab\ncd"
			 " %{p2 DD990E17223C8AF162B6EBF2DBB75CB7F711465B 0}\r\n %{x nothex 3}\r\n)))\r\n)\r\n";
	struct buf line = BUF_INIT;
	struct sunk sk = { 0 };
	struct terr err = { 0 };
	long long n = stream_feed(in, strlen(in), &line, &sk, &err);
	CHECK_INT(n, (long long)line.len);
	CHECK_INT(sk.n, 3);
	CHECK_STR(sk.hdr[0].part, "default");
	CHECK_STR(sk.hdr[0].guid, "b622fc18dc1d1f34429ed3354ecb3f0a7cc1bfae");
	CHECK_U64(sk.hdr[0].size, 5);
	CHECK_INT(sk.hdr[0].ok, 1);
	CHECK_INT(sk.bytes[0].len, 5);
	CHECK(!memcmp(buf_cstr(&sk.bytes[0]), "ab\ncd", 5));	/* the LF inside stays data */
	CHECK_STR(sk.hdr[1].guid, "dd990e17223c8af162b6ebf2dbb75cb7f711465b");	/* lower-cased */
	CHECK_U64(sk.hdr[1].size, 0);
	CHECK_INT(sk.hdr[1].ok, 1);
	CHECK_INT(sk.hdr[2].ok, 0);	/* a bad GUID word: announced, bytes still stepped over */
	CHECK(!memcmp(buf_cstr(&sk.bytes[2]), ")))", 3));
	/* the line without the bytes parses into external files (the third
	 * header is refused by the parser) */
	struct dlist *dl = NULL;
	CHECK_INT(dlist_parse_ext(line.ptr, line.len, DLIST_FILES_OUTSIDE, &dl, &err), -1);
	CHECK(strstr(err.msg, "bad file literal header") != NULL);
	buf_free(&line);
	for (int i = 0; i < 4; i++)
		buf_free(&sk.bytes[i]);

	const char *good = "APPLY MESSAGE (%{default b622fc18dc1d1f34429ed3354ecb3f0a7cc1bfae 5}\r\nab\ncd"
			   " %{p2 dd990e17223c8af162b6ebf2dbb75cb7f711465b 2}\r\nxy)\r\nNOOP\r\n";
	struct sunk sk2 = { 0 };
	n = stream_feed(good, strlen(good), &line, &sk2, &err);
	CHECK_INT(n, (long long)line.len);	/* ends at the first CRLF outside the literals */
	CHECK_INT(sk2.n, 2);
	CHECK(!memcmp(buf_cstr(&sk2.bytes[1]), "xy", 2));
	if (dlist_parse_ext(line.ptr, line.len, DLIST_FILES_OUTSIDE, &dl, &err) < 0)
		printf("  parse: %s [%s]\n", err.msg, buf_cstr(&line));
	CHECK(dl != NULL);
	if (dl) {
		struct dlist *msg = dlist_take_keyed(dl, 1);
		CHECK_STR(msg->key, "MESSAGE");
		CHECK_INT(msg->n, 2);
		CHECK_INT(msg->items[0]->type, DL_FILE);
		CHECK_INT(msg->items[0]->external, 1);
		CHECK_U64(msg->items[0]->size, 5);
		CHECK_INT(msg->items[0]->s.len, 0);
		CHECK_STR(msg->items[1]->part, "p2");
		dlist_free(&msg);
	}
	dlist_free(&dl);
	/* the same line whole, without streaming, carries the bytes */
	long long whole;
	dl = frame_parse(good, strlen(good), &whole);
	CHECK_INT(whole, (long long)strlen(good) - 6);
	if (dl)
		CHECK_INT(dl->items[2]->items[1]->s.len, 2);
	dlist_free(&dl);
	buf_free(&line);
	for (int i = 0; i < 4; i++)
		buf_free(&sk2.bytes[i]);
}

/* A by-reference file prints its header only, and where its bytes go. */
TEST(file_reference_printing)
{
	struct dlist *msg = dlist_new(DL_LIST, "MESSAGE");
	dlist_add_file_ref(msg, NULL, "default", "b622fc18dc1d1f34429ed3354ecb3f0a7cc1bfae", "/x/y", 141);
	dlist_add_file(msg, NULL, "default", "dd990e17223c8af162b6ebf2dbb75cb7f711465b", "ab", 2);
	dlist_add_file_ref(msg, NULL, "default", "dd990e17223c8af162b6ebf2dbb75cb7f711465b", "/z", 0);
	struct buf out = BUF_INIT;
	struct dlist_refs refs = { 0 };
	buf_appends(&out, "APPLY ");
	dlist_print_refs(&out, msg, DLIST_LIT_CLIENT, &refs);
	const char *want = "APPLY MESSAGE (%{default b622fc18dc1d1f34429ed3354ecb3f0a7cc1bfae 141}\r\n"
			   " %{default dd990e17223c8af162b6ebf2dbb75cb7f711465b 2}\r\nab"
			   " %{default dd990e17223c8af162b6ebf2dbb75cb7f711465b 0}\r\n)";
	CHECK_STR(buf_cstr(&out), want);
	CHECK_INT(refs.n, 2);
	CHECK_INT(refs.v[0].at, strlen("APPLY MESSAGE (%{default b622fc18dc1d1f34429ed3354ecb3f0a7cc1bfae 141}\r\n"));
	CHECK_STR(refs.v[0].path, "/x/y");
	CHECK_U64(refs.v[0].hdr.size, 141);
	CHECK_STR(refs.v[0].hdr.guid, "b622fc18dc1d1f34429ed3354ecb3f0a7cc1bfae");
	CHECK_INT(refs.v[1].at, out.len - 1);
	CHECK_U64(refs.v[1].hdr.size, 0);
	dlist_refs_free(&refs);
	buf_free(&out);
	dlist_free(&msg);
}

/* A file literal with its file already open: printing with refs hands
 * the descriptor to the ref (the dlist keeps the path), resetting the refs
 * closes it; a second print, or a print without refs, has the path only,
 * and freeing the dlist closes a descriptor it still holds. */
TEST(file_descriptor_handed_to_the_ref)
{
	int p1[2], p2[2];
	CHECK_INT(pipe(p1), 0);
	CHECK_INT(pipe(p2), 0);
	struct dlist *msg = dlist_new(DL_LIST, "MESSAGE");
	dlist_add_file_fd(msg, NULL, "default", "b622fc18dc1d1f34429ed3354ecb3f0a7cc1bfae", "/x/y", p1[0], 141);
	struct buf out = BUF_INIT;
	struct dlist_refs refs = { 0 };
	dlist_print_refs(&out, msg, DLIST_LIT_CLIENT, &refs);
	CHECK_INT(refs.n, 1);
	CHECK_INT(refs.v[0].fd, p1[0]);
	CHECK_STR(refs.v[0].path, "/x/y");
	CHECK_INT(msg->items[0]->fd, -1);
	dlist_refs_reset(&refs);
	CHECK(fcntl(p1[0], F_GETFD) < 0);	/* closed with the refs */
	dlist_print_refs(&out, msg, DLIST_LIT_CLIENT, &refs);
	CHECK_INT(refs.n, 1);
	CHECK_INT(refs.v[0].fd, -1);	/* by its path from now on */
	dlist_refs_free(&refs);
	/* a ref made without a descriptor has none */
	struct dlist *m2 = dlist_new(DL_LIST, "MESSAGE");
	dlist_add_file_ref(m2, NULL, "default", "b622fc18dc1d1f34429ed3354ecb3f0a7cc1bfae", "/z", 3);
	dlist_add_file_fd(m2, NULL, "default", "dd990e17223c8af162b6ebf2dbb75cb7f711465b", "/w", p2[0], 2);
	dlist_print_refs(&out, m2, DLIST_LIT_CLIENT, &refs);
	CHECK_INT(refs.n, 2);
	CHECK_INT(refs.v[0].fd, -1);
	CHECK_INT(refs.v[1].fd, p2[0]);
	dlist_refs_free(&refs);
	CHECK(fcntl(p2[0], F_GETFD) < 0);
	/* never printed: freeing the dlist closes it */
	int p3[2];
	CHECK_INT(pipe(p3), 0);
	struct dlist *m3 = dlist_new(DL_LIST, "MESSAGE");
	dlist_add_file_fd(m3, NULL, "default", "dd990e17223c8af162b6ebf2dbb75cb7f711465b", "/w", p3[0], 2);
	dlist_free(&m3);
	CHECK(fcntl(p3[0], F_GETFD) < 0);
	close(p1[1]);
	close(p2[1]);
	close(p3[1]);
	buf_free(&out);
	dlist_free(&msg);
	dlist_free(&m2);
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
	RUN(file_literals_streamed_byte_by_byte);
	RUN(file_reference_printing);
	RUN(file_descriptor_handed_to_the_ref);
	return test_done();
}
