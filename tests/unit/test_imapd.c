/* test_imapd.c: the pure parts of the IMAP server: rights letters, Cyrus
 * ACL strings, LIST pattern matching, SASL base64. */
#include "imapd/imapd-private.h"
#include "lib/base64.h"
#include "test.h"

static unsigned rights(const char *s)
{
	unsigned m = 0;
	size_t bad = 0;
	return imapd_rights_parse(s, strlen(s), &m, &bad) < 0 ? 0xffffffffu : m;
}

static const char *fmt(unsigned m)
{
	static struct buf b;
	buf_reset(&b);
	imapd_rights_format(m, &b);
	return buf_cstr(&b);
}

TEST(rights_letters)
{
	CHECK_STR(fmt(rights("lrs")), "lrs");
	CHECK_STR(fmt(rights("srl")), "lrs");
	CHECK_STR(fmt(rights("")), "");
	CHECK_STR(fmt(IMAPD_R_ALL), IMAPD_RIGHTS_LETTERS);
	/* RFC 4314 2.1.1: c grants k, d grants x t e */
	CHECK(rights("c") & IMAPD_R_CREATE);
	CHECK((rights("d") & (IMAPD_R_DELETE_MBOX | IMAPD_R_DELETE_MSG | IMAPD_R_EXPUNGE)) ==
	      (IMAPD_R_DELETE_MBOX | IMAPD_R_DELETE_MSG | IMAPD_R_EXPUNGE));
	unsigned m;
	size_t bad = 99;
	CHECK_INT(imapd_rights_parse("lrZ", 3, &m, &bad), -1);
	CHECK_INT(bad, 2);
}

TEST(acl_rights)
{
	const char *acl = "alice\tlrswipkxtecdan\tbob\tlr\tanyone\tp\t-bob\tr\t";
	CHECK_STR(fmt(imapd_acl_rights(acl, "alice")), "lrswipkxtecdan");
	/* bob: lr plus anyone's p, minus his negative r */
	CHECK_STR(fmt(imapd_acl_rights(acl, "bob")), "lp");
	CHECK_STR(fmt(imapd_acl_rights(acl, "carol")), "p");
	CHECK_STR(fmt(imapd_acl_rights("", "carol")), "");
	/* a last entry without its tab still counts; an id alone does not */
	CHECK_STR(fmt(imapd_acl_rights("alice\tlr", "alice")), "lr");
	CHECK_STR(fmt(imapd_acl_rights("alice", "alice")), "");
	CHECK_STR(fmt(imapd_acl_rights("alice\tlr\tbob", "alice")), "lr");
}

static const char *modify(const char *acl, const char *id, const char *r)
{
	static struct buf out;
	struct terr err = { 0 };
	buf_reset(&out);
	return imapd_acl_modify(acl, id, r, &out, &err) < 0 ? "ERROR" : buf_cstr(&out);
}

TEST(acl_modify)
{
	const char *acl = "alice\tlrswipkxtecdan\tbob\tlr\t";
	CHECK_STR(modify(acl, "bob", "lrs"), "alice\tlrswipkxtecdan\tbob\tlrs\t");
	CHECK_STR(modify(acl, "bob", "+w"), "alice\tlrswipkxtecdan\tbob\tlrw\t");
	CHECK_STR(modify(acl, "bob", "-r"), "alice\tlrswipkxtecdan\tbob\tl\t");
	CHECK_STR(modify(acl, "bob", "-lr"), "alice\tlrswipkxtecdan\t");
	CHECK_STR(modify(acl, "bob", NULL), "alice\tlrswipkxtecdan\t");
	CHECK_STR(modify(acl, "carol", "lr"), "alice\tlrswipkxtecdan\tbob\tlr\tcarol\tlr\t");
	CHECK_STR(modify(acl, "carol", "lZ"), "ERROR");
	CHECK_STR(modify(acl, "ca\trol", "lr"), "ERROR");
}

static int match(const char *pat, const char *name)
{
	return imapd_pattern_match(pat, strlen(pat), name, strlen(name), '.');
}

TEST(list_patterns)
{
	CHECK(match("*", "INBOX.Sent.2024"));
	CHECK(match("%", "INBOX"));
	CHECK(!match("%", "INBOX.Sent"));
	CHECK(match("INBOX.%", "INBOX.Sent"));
	CHECK(!match("INBOX.%", "INBOX.Sent.2024"));
	CHECK(match("INBOX.*", "INBOX.Sent.2024"));
	CHECK(match("inbox", "INBOX"));	/* INBOX is case-insensitive */
	CHECK(match("inbox.Sent", "INBOX.Sent"));
	CHECK(!match("inbox.sent", "INBOX.Sent"));	/* the rest is not */
	CHECK(match("%.%", "user.bob"));
	CHECK(match("*e*t", "INBOX.Sent"));
	CHECK(!match("", "INBOX"));
	CHECK(match("", ""));
	/* no backtracking blow-up: many stars against a long name */
	char name[200], pat[120];
	memset(name, 'a', sizeof name - 1);
	name[sizeof name - 1] = '\0';
	for (size_t i = 0; i < sizeof pat - 2; i += 2) {
		pat[i] = '*';
		pat[i + 1] = 'a';
	}
	pat[sizeof pat - 2] = 'b';
	pat[sizeof pat - 1] = '\0';
	CHECK(!match(pat, name));
}

static const char *b64(const char *in)
{
	static struct buf out;
	buf_reset(&out);
	if (base64_decode_strict(in, strlen(in), &out) < 0)
		return "ERROR";
	for (size_t i = 0; i < out.len; i++)
		if (!out.ptr[i])
			out.ptr[i] = '|';
	return buf_cstr(&out);
}

TEST(sasl_base64)
{
	CHECK_STR(b64("AGFsaWNlAHB3"), "|alice|pw");
	CHECK_STR(b64("YQ=="), "a");
	CHECK_STR(b64("YQ"), "a");
	CHECK_STR(b64(""), "");
	CHECK_STR(b64("Y!=="), "ERROR");
	CHECK_STR(b64("Y"), "ERROR");
}

int main(void)
{
	RUN(rights_letters);
	RUN(acl_rights);
	RUN(acl_modify);
	RUN(list_patterns);
	RUN(sasl_base64);
	return test_done();
}
