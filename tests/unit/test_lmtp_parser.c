/* test_lmtp_parser.c: LMTP commands, addresses, and the DATA decoder fed
 * whole and one byte at a time. */
#include "proto/lmtp/lmtp.h"
#include "test.h"

static int parse(const char *line, struct lmtp_cmd *c, struct lmtp_reply *r)
{
	return lmtp_parse(line, strlen(line), c, r);
}

TEST(commands)
{
	struct lmtp_cmd c = { 0 };
	struct lmtp_reply r;
	CHECK_INT(parse("LHLO mta.example.com", &c, &r), 0);
	CHECK_INT(c.verb, LMTP_LHLO);
	CHECK_STR(buf_cstr(&c.arg), "mta.example.com");
	CHECK_INT(parse("mail from:<bob@example.net> SIZE=1234 BODY=8BITMIME", &c, &r), 0);
	CHECK_INT(c.verb, LMTP_MAIL);
	CHECK_STR(buf_cstr(&c.arg), "bob@example.net");
	CHECK_INT(c.size, 1234);
	CHECK_INT(c.body_8bit, 1);
	CHECK_INT(parse("MAIL FROM:<>", &c, &r), 0);
	CHECK_STR(buf_cstr(&c.arg), "");
	CHECK_INT(parse("RCPT TO:<@relay.example:alice+Lists@example.com>", &c, &r), 0);
	CHECK_STR(buf_cstr(&c.arg), "alice+Lists@example.com");
	CHECK_INT(parse("RCPT TO:<\"john doe\"@example.com>", &c, &r), 0);
	CHECK_STR(buf_cstr(&c.arg), "\"john doe\"@example.com");
	CHECK_INT(parse("DATA", &c, &r), 0);
	CHECK_INT(parse("NOOP anything", &c, &r), 0);
	CHECK_INT(parse("QUIT", &c, &r), 0);
	CHECK_INT(parse("STARTTLS", &c, &r), 0);
	lmtp_cmd_free(&c);
}

TEST(errors)
{
	struct lmtp_cmd c = { 0 };
	struct lmtp_reply r;
	CHECK_INT(parse("HELO x", &c, &r), -1);
	CHECK_INT(r.code, 500);
	CHECK_INT(parse("MAIL bob", &c, &r), -1);
	CHECK_INT(r.code, 501);
	CHECK_INT(parse("MAIL FROM:<a> SIZE=big", &c, &r), -1);
	CHECK_INT(r.code, 501);
	CHECK_INT(parse("MAIL FROM:<a> FOO=bar", &c, &r), -1);
	CHECK_INT(r.code, 555);
	CHECK_INT(parse("RCPT TO:<>", &c, &r), -1);
	CHECK_INT(parse("RCPT TO:<unterminated", &c, &r), -1);
	CHECK_INT(parse("DATA now", &c, &r), -1);
	CHECK_INT(parse("LHLO", &c, &r), -1);
	CHECK_INT(lmtp_parse("NOOP\0x", 6, &c, &r), -1);
	lmtp_cmd_free(&c);
}

TEST(lines)
{
	size_t ll, used;
	CHECK_INT(lmtp_take_line("NOOP\r\nQUIT\r\n", 12, &ll, &used), LMTP_LINE_OK);
	CHECK_INT(ll, 4);
	CHECK_INT(used, 6);
	CHECK_INT(lmtp_take_line("NOOP\n", 5, &ll, &used), LMTP_LINE_OK);
	CHECK_INT(used, 5);
	CHECK_INT(lmtp_take_line("NOO", 3, &ll, &used), LMTP_LINE_NONE);
	char big[5000];
	memset(big, 'x', sizeof big);
	CHECK_INT(lmtp_take_line(big, sizeof big, &ll, &used), LMTP_LINE_TOOLONG);
}

TEST(addresses)
{
	struct buf l = BUF_INIT, d = BUF_INIT, dom = BUF_INIT;
	CHECK_INT(lmtp_split_address("Alice+Lists/cyrus@Example.com", 1, &l, &d, &dom), 0);
	CHECK_STR(l.ptr, "alice");
	CHECK_STR(d.ptr, "Lists/cyrus");
	CHECK_STR(dom.ptr, "Example.com");
	CHECK_INT(lmtp_split_address("bob", 0, &l, &d, &dom), 0);
	CHECK_STR(l.ptr, "bob");
	CHECK_STR(buf_cstr(&d), "");
	CHECK_INT(lmtp_split_address("\"j\\\"d\"@x", 0, &l, &d, &dom), 0);
	CHECK_STR(l.ptr, "j\"d");
	CHECK_INT(lmtp_split_address("+x@y", 0, &l, &d, &dom), -1);
	buf_free(&l);
	buf_free(&d);
	buf_free(&dom);
}

/* Decodes `in` whole, then byte by byte; both must give `want` and the
 * same consumed count. */
static void data_case(const char *in, size_t inlen, const char *want, size_t wantlen, size_t max, int toobig,
		      size_t want_used)
{
	for (int bw = 0; bw < 2; bw++) {
		struct lmtp_data d;
		struct buf out = BUF_INIT;
		lmtp_data_init(&d, max);
		size_t pos = 0, used = 0;
		int done = 0;
		while (!done && pos < inlen) {
			size_t n = bw ? 1 : inlen - pos;
			done = lmtp_data_feed(&d, in + pos, n, &used, &out);
			pos += used;
		}
		CHECK(done);
		CHECK_INT(pos, want_used);
		CHECK_INT(d.toobig, toobig);
		if (!toobig)
			CHECK_MEM(out.ptr ? out.ptr : "", out.len, want, wantlen);
		buf_free(&out);
	}
}

TEST(data_decoder)
{
	const char *a = "Subject: x\r\n\r\nbody\r\n..leading dot\r\n.\r\nQUIT\r\n";
	data_case(a, strlen(a), "Subject: x\r\n\r\nbody\r\n.leading dot\r\n", 34, 1000, 0, strlen(a) - 6);
	const char *b = "bare\nlf\r\n.\r\n";
	data_case(b, strlen(b), "bare\r\nlf\r\n", 10, 1000, 0, strlen(b));
	/* only CRLF.CRLF ends DATA: a bare LF on either side of the dot
	 * leaves the line in the message, the dot kept as it came */
	const char *s1 = "a\n.\nb\r\n.\r\nNOOP\r\n";
	data_case(s1, strlen(s1), "a\r\n.\r\nb\r\n", 9, 1000, 0, strlen(s1) - 6);
	const char *s2 = "a\r\n.\nb\r\n.\r\n";
	data_case(s2, strlen(s2), "a\r\n.\r\nb\r\n", 9, 1000, 0, strlen(s2));
	const char *s3 = "a\n.\r\nb\r\n.\r\n";
	data_case(s3, strlen(s3), "a\r\n.\r\nb\r\n", 9, 1000, 0, strlen(s3));
	const char *s4 = ".\n.\r\n\n..x\r\n.\r\n";	/* at the start, and a "." after a bare LF is not unstuffed */
	data_case(s4, strlen(s4), ".\r\n.\r\n\r\n..x\r\n", 13, 1000, 0, strlen(s4));
	const char *s5 = "x\r\n.\r\r\n.\r\n";	/* ".\r" then CRLF: text */
	data_case(s5, strlen(s5), "x\r\n\r\r\n", 6, 1000, 0, strlen(s5));
	const char *c = ".\r\n";
	data_case(c, 3, "", 0, 1000, 0, 3);
	const char *d = "12345678\r\n.\r\n";
	data_case(d, strlen(d), "12345678\r\n", 10, 10, 0, strlen(d));	/* exactly the limit */
	data_case(d, strlen(d), "", 0, 9, 1, strlen(d));		/* one byte over */
	const char *e = "a\rb\r\n.x\r\n.\r\n";
	data_case(e, strlen(e), "a\rb\r\nx\r\n", 8, 100, 0, strlen(e));
	/* a line's run of plain bytes is appended at once: the limit still
	 * counts every byte, crossed in the middle of a run or at its end */
	const char *f = "0123456789abcdef\r\n.\r\n";
	data_case(f, strlen(f), "0123456789abcdef\r\n", 18, 18, 0, strlen(f));
	data_case(f, strlen(f), "", 0, 17, 1, strlen(f));
	data_case(f, strlen(f), "", 0, 10, 1, strlen(f));
	const char *g = "ab.c\r\n.de\nf..g\r\n..\r\n.\r\n";
	data_case(g, strlen(g), "ab.c\r\nde\r\nf..g\r\n.\r\n", 19, 100, 0, strlen(g));
}

int main(void)
{
	RUN(commands);
	RUN(errors);
	RUN(lines);
	RUN(addresses);
	RUN(data_decoder);
	return test_done();
}
