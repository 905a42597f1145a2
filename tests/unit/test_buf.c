/* test_buf.c: struct buf. */
#include "lib/buf.h"
#include "lib/log.h"
#include "lib/sha1.h"
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

/* lib/sha1: the digest fetched once, hex by table: the FIPS 180 vectors,
 * one-shot and in pieces alike. */
TEST(sha1_vectors_and_pieces)
{
	char out[41];
	sha1_hex("", 0, out);
	CHECK_STR(out, "da39a3ee5e6b4b0d3255bfef95601890afd80709");
	sha1_hex("abc", 3, out);
	CHECK_STR(out, "a9993e364706816aba3e25717850c26c9cd0d89d");
	const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
	sha1_hex(m, strlen(m), out);
	CHECK_STR(out, "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
	struct sha1_ctx c;
	sha1_init(&c);
	size_t ml = strlen(m);
	for (size_t i = 0; i < ml; i += 5)
		sha1_update(&c, m + i, ml - i < 5 ? ml - i : 5);
	sha1_final_hex(&c, out);
	CHECK_STR(out, "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
	sha1_free(&c);	/* a no-op after final */
}

/* Appends that end exactly at the buffer's room, one short of it and
 * one past it: the bytes, the length and the NUL after them. */
TEST(append_at_capacity)
{
	for (size_t first = 0; first < 140; first++) {
		struct buf b = BUF_INIT;
		char want[300];
		size_t n = 0;
		for (size_t i = 0; i < first; i++) {
			buf_putc(&b, (char)('a' + i % 26));
			want[n++] = (char)('a' + i % 26);
			CHECK(b.len == n && b.cap > b.len && b.ptr[b.len] == '\0');
		}
		for (size_t k = 0; k < 3; k++) {
			size_t room = b.cap - b.len;	/* one is the NUL's; 0 before any */
			if (room + k < 2)
				continue;
			size_t len = room + k - 2;	/* one short, exact, one past */
			char piece[300];
			for (size_t i = 0; i < len; i++)
				piece[i] = want[n + i] = (char)('0' + (n + i) % 10);
			buf_append(&b, piece, len);
			n += len;
			CHECK(b.len == n && b.cap > b.len && b.ptr[b.len] == '\0');
			if (n > 200)
				break;
		}
		CHECK_MEM(b.ptr, b.len, want, n);
		buf_append(&b, "", 0);
		CHECK(b.len == n && b.ptr[n] == '\0');
		buf_free(&b);
	}
	struct buf e = BUF_INIT;
	buf_append(&e, "", 0);	/* an empty append still makes a C string */
	CHECK(e.ptr && e.len == 0 && e.ptr[0] == '\0');
	buf_free(&e);
}

int main(void)
{
	RUN(append_and_cstr);
	RUN(binary_safe);
	RUN(append_at_capacity);
	RUN(long_printf_grows);
	RUN(consume_truncate_release);
	RUN(logq_quotes_when_needed);
	RUN(json_str_escapes);
	RUN(sha1_vectors_and_pieces);
	return test_done();
}
