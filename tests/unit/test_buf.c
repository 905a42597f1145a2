/* test_buf.c: struct buf. */
#include "lib/buf.h"
#include "lib/log.h"
#include "test.h"

TEST(append_and_cstr)
{
	struct buf b = BUF_INIT;
	CHECK_STR(buf_cstr(&b), "");
	buf_appends(&b, "abc");
	buf_putc(&b, 'd');
	buf_printf(&b, "%d-%s", 42, "x");
	CHECK_STR(buf_cstr(&b), "abcd42-x");
	CHECK_INT(b.len, 8);
	buf_free(&b);
	CHECK(b.ptr == NULL && b.len == 0);
}

TEST(binary_safe)
{
	struct buf b = BUF_INIT;
	buf_append(&b, "a\0b", 3);
	CHECK_INT(b.len, 3);
	CHECK_MEM(b.ptr, b.len, "a\0b", 3);
	CHECK(b.ptr[3] == '\0');
	buf_free(&b);
}

TEST(long_printf_grows)
{
	struct buf b = BUF_INIT;
	char big[1000];
	memset(big, 'z', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	buf_printf(&b, "<%s>", big);
	CHECK_INT(b.len, 1001);
	CHECK(b.ptr[0] == '<' && b.ptr[1000] == '>');
	buf_free(&b);
}

TEST(consume_truncate_release)
{
	struct buf b = BUF_INIT;
	buf_appends(&b, "hello world");
	buf_consume(&b, 6);
	CHECK_STR(buf_cstr(&b), "world");
	buf_truncate(&b, 3);
	CHECK_STR(buf_cstr(&b), "wor");
	CHECK(buf_eq(&b, "wor"));
	char *s = buf_release(&b);
	CHECK_STR(s, "wor");
	CHECK(b.ptr == NULL);
	free(s);
}

TEST(logq_quotes_when_needed)
{
	char q[LOGQ_MAX];
	CHECK_STR(logq(q, "user.alice"), "user.alice");
	CHECK_STR(logq(q, "a b"), "\"a b\"");
	CHECK_STR(logq(q, "x\"y"), "\"x\\\"y\"");
	CHECK_STR(logq(q, ""), "\"\"");
	CHECK_STR(logq(q, NULL), "-");
}

TEST(json_str_escapes)
{
	struct buf b = BUF_INIT;
	buf_json_str(&b, "a\"b\\c\n\x01 \xc3\xa9");
	CHECK_STR(buf_cstr(&b), "\"a\\\"b\\\\c\\u000a\\u0001 \xc3\xa9\"");
	buf_reset(&b);
	buf_json_str(&b, "");
	CHECK_STR(buf_cstr(&b), "\"\"");
	buf_free(&b);
}

int main(void)
{
	RUN(append_and_cstr);
	RUN(binary_safe);
	RUN(long_printf_grows);
	RUN(consume_truncate_release);
	RUN(logq_quotes_when_needed);
	RUN(json_str_escapes);
	return test_done();
}
