/* test_names.c: internal names, owners, namespaces, modified UTF-7. */
#include "names/mboxname.h"
#include "test.h"

static const char *conv(int (*f)(const struct mboxname_ns *, const char *, const char *, struct buf *,
				 struct terr *), char sep, int vd, const char *user, const char *in)
{
	static struct buf out;
	struct mboxname_ns ns = { sep, vd };
	struct terr err;
	if (f(&ns, user, in, &out, &err) < 0)
		return "ERROR";
	return buf_cstr(&out);
}

static const char *admin_in(char sep, int vd, const char *in)
{
	static struct buf out;
	struct mboxname_ns ns = { sep, vd };
	struct terr err;
	return mboxname_from_admin(&ns, in, &out, &err) < 0 ? "ERROR" : buf_cstr(&out);
}

static const char *owner(const char *in)
{
	static struct buf out;
	struct terr err;
	int rc = mboxname_owner(in, &out, &err);
	return rc < 0 ? "ERROR" : rc == 0 ? "(shared)" : buf_cstr(&out);
}

TEST(owners)
{
	CHECK_STR(owner("user.alice"), "alice");
	CHECK_STR(owner("user.alice.Sent"), "alice");
	CHECK_STR(owner("user.john^doe.x"), "john.doe");
	CHECK_STR(owner("example.com!user.bob.x"), "bob@example.com");
	CHECK_STR(owner("DELETED.user.alice.Tmp.6B02A325"), "alice");
	CHECK_STR(owner("shared.top"), "(shared)");
	CHECK_STR(owner("example.com!shared"), "(shared)");
}

TEST(inbox_of_user)
{
	struct buf b = BUF_INIT;
	struct terr err;
	mboxname_user_inbox("alice", &b, &err);
	CHECK_STR(b.ptr, "user.alice");
	mboxname_user_inbox("john.doe", &b, &err);
	CHECK_STR(b.ptr, "user.john^doe");
	mboxname_user_inbox("bob@example.com", &b, &err);
	CHECK_STR(b.ptr, "example.com!user.bob");
	buf_free(&b);
}

TEST(validate)
{
	struct terr err;
	CHECK_INT(mboxname_validate("user.alice.Sent", &err), 0);
	CHECK_INT(mboxname_validate("user.fred.with space", &err), 0);
	CHECK_INT(mboxname_validate("user.fred.&AOk-t&AOk-", &err), 0);
	CHECK_INT(mboxname_validate("example.com!user.bob", &err), 0);
	CHECK_INT(mboxname_validate("user.alice..x", &err), -1);
	CHECK_INT(mboxname_validate("user.alice.", &err), -1);
	CHECK_INT(mboxname_validate("", &err), -1);
	CHECK_INT(mboxname_validate("user", &err), -1);
	CHECK_INT(mboxname_validate("user.alice.a*b", &err), -1);
	CHECK_INT(mboxname_validate("user.alice.caf\xc3\xa9", &err), -1);
	CHECK_INT(mboxname_validate("user.alice.bad&name", &err), -1);
	CHECK(strstr(err.msg, "UTF-7") != NULL);
	char longname[600];
	memset(longname, 'x', sizeof longname - 1);
	longname[sizeof longname - 1] = '\0';
	memcpy(longname, "user.a.", 7);
	CHECK_INT(mboxname_validate(longname, &err), -1);
	CHECK_INT(userid_validate("alice", 0, &err), 0);
	CHECK_INT(userid_validate("a@b.com", 0, &err), -1);
	CHECK_INT(userid_validate("a@b.com", 1, &err), 0);
	CHECK_INT(userid_validate("a b", 0, &err), -1);
	CHECK_INT(userid_validate("", 0, &err), -1);
}

TEST(client_namespace)
{
	CHECK_STR(conv(mboxname_from_external, '.', 0, "alice", "INBOX"), "user.alice");
	CHECK_STR(conv(mboxname_from_external, '.', 0, "alice", "inbox.Sent"), "user.alice.Sent");
	CHECK_STR(conv(mboxname_from_external, '/', 0, "alice", "INBOX/Sent/a.b"), "user.alice.Sent.a^b");
	CHECK_STR(conv(mboxname_from_external, '/', 0, "alice", "user/bob/x"), "user.bob.x");
	CHECK_STR(conv(mboxname_from_external, '/', 0, "alice", "shared/x"), "shared.x");
	CHECK_STR(conv(mboxname_from_external, '/', 1, "a@ex.com", "INBOX/x"), "ex.com!user.a.x");
	CHECK_STR(conv(mboxname_from_external, '/', 1, "a@ex.com", "user/b"), "ex.com!user.b");
	CHECK_STR(conv(mboxname_from_external, '/', 1, "a@ex.com", "user/b@other.org"), "other.org!user.b");
	CHECK_STR(conv(mboxname_from_external, '/', 0, "alice", "INBOX/"), "ERROR");
	/* docs/names.md: '!' only separates a domain, never from a client
	 * (else INBOX.x!y is the mailbox "y" of the domain "user.alice.x") */
	CHECK_STR(conv(mboxname_from_external, '.', 0, "alice", "INBOX.x!y"), "ERROR");
	CHECK_STR(conv(mboxname_from_external, '.', 1, "alice", "INBOX.x!y"), "ERROR");
	CHECK_STR(conv(mboxname_from_external, '/', 0, "alice", "user/bob!x"), "ERROR");
	CHECK_STR(conv(mboxname_from_external, '/', 1, "a@ex.com", "x!user/b"), "ERROR");
	CHECK_STR(conv(mboxname_from_external, '/', 1, "a@ex.com", "user/b@x!y"), "ERROR");
	/* control characters, also in modified UTF-7: U+0000, U+001F, U+007F */
	CHECK_STR(conv(mboxname_from_external, '.', 0, "alice", "INBOX.&AAA-"), "ERROR");
	CHECK_STR(conv(mboxname_from_external, '.', 0, "alice", "INBOX.&AB8-"), "ERROR");
	CHECK_STR(conv(mboxname_from_external, '.', 0, "alice", "INBOX.&AH8-"), "ERROR");
	CHECK_STR(conv(mboxname_from_external, '.', 0, "alice", "INBOX.a&AAAA6Q-"), "ERROR");
	CHECK_STR(conv(mboxname_from_external, '.', 0, "alice", "INBOX.&AOk-"), "user.alice.&AOk-");
	CHECK_STR(conv(mboxname_to_external, '/', 0, "alice", "user.alice"), "INBOX");
	CHECK_STR(conv(mboxname_to_external, '/', 0, "alice", "user.alice.Sent.a^b"), "INBOX/Sent/a.b");
	CHECK_STR(conv(mboxname_to_external, '/', 0, "alice", "user.bob.x"), "user/bob/x");
	CHECK_STR(conv(mboxname_to_external, '.', 0, "alice", "user.alice.Sent"), "INBOX.Sent");
	CHECK_STR(conv(mboxname_to_external, '/', 1, "a@ex.com", "ex.com!user.b"), "user/b");
	CHECK_STR(conv(mboxname_to_external, '/', 1, "a@ex.com", "other.org!user.b"), "user/b@other.org");
	/* user+folder */
	struct buf b = BUF_INIT;
	struct terr err;
	struct mboxname_ns ns = { '/', 0 };
	mboxname_user_folder(&ns, "alice", "Lists/cyrus", &b, &err);
	CHECK_STR(b.ptr, "user.alice.Lists.cyrus");
	mboxname_user_folder(&ns, "alice", "", &b, &err);
	CHECK_STR(b.ptr, "user.alice");
	CHECK_INT(mboxname_user_folder(&ns, "bad user", "", &b, &err), -1);
	CHECK_INT(mboxname_user_folder(&ns, "alice", "x!y", &b, &err), -1);
	CHECK_INT(mboxname_user_folder(&ns, "alice", "&AAA-", &b, &err), -1);
	buf_free(&b);
}

TEST(admin_namespace)
{
	CHECK_STR(admin_in('.', 0, "user.alice.Sent"), "user.alice.Sent");
	CHECK_STR(admin_in('/', 0, "user/alice/Sent"), "user.alice.Sent");
	CHECK_STR(admin_in('/', 0, "user/john.doe"), "user.john^doe");
	CHECK_STR(admin_in('/', 1, "user/alice/Sent@example.com"), "example.com!user.alice.Sent");
	CHECK_STR(admin_in('.', 1, "example.com!user.alice"), "example.com!user.alice");
	CHECK_STR(admin_in('/', 0, "user/alice//x"), "ERROR");
	struct buf b = BUF_INIT;
	struct terr err;
	struct mboxname_ns ns = { '/', 1 };
	mboxname_to_admin(&ns, "example.com!user.john^doe.x", &b, &err);
	CHECK_STR(b.ptr, "user/john.doe/x@example.com");
	buf_free(&b);
}

TEST(mutf7)
{
	CHECK(mutf7_valid("&AOk-", 5));
	CHECK(mutf7_valid("a&-b", 4));
	CHECK(!mutf7_valid("&AOk", 4));
	CHECK(!mutf7_valid("&AGE-", 5));	/* 'a' must be written directly */
	CHECK(!mutf7_valid("&2D0-", 5));	/* lone surrogate */
	CHECK(!mutf7_valid("\xc3\xa9", 2));
	CHECK(!mutf7_valid("&AAA-", 5));	/* U+0000 */
	CHECK(!mutf7_valid("&AAoA6Q-", 8));	/* U+000A then U+00E9 */
	CHECK(!mutf7_valid("&AH8-", 5));	/* U+007F */
	CHECK(mutf7_valid("&AIA-", 5));		/* U+0080: not ASCII, allowed */
	struct buf b = BUF_INIT, c = BUF_INIT;
	struct terr err;
	CHECK_INT(mutf7_from_utf8("caf\xc3\xa9 & \xf0\x9f\x98\x80", 12, &b, &err), 0);
	CHECK(mutf7_valid(b.ptr, b.len));
	CHECK_INT(mutf7_to_utf8(b.ptr, b.len, &c, &err), 0);
	CHECK_STR(c.ptr, "caf\xc3\xa9 & \xf0\x9f\x98\x80");
	CHECK_INT(mutf7_from_utf8("\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e", 9, &b, &err), 0);
	CHECK_STR(b.ptr, "&ZeVnLIqe-");	/* RFC 3501's example */
	CHECK_INT(mutf7_from_utf8("\xff", 1, &b, &err), -1);
	CHECK_INT(mutf7_from_utf8("\xc3", 1, &b, &err), -1);
	CHECK_INT(mutf7_from_utf8("a\0b", 3, &b, &err), -1);
	CHECK_INT(mutf7_from_utf8("a\x7f", 2, &b, &err), -1);
	CHECK_INT(mutf7_from_utf8("a\tb", 3, &b, &err), -1);
	buf_free(&b);
	buf_free(&c);
}

int main(void)
{
	RUN(owners);
	RUN(inbox_of_user);
	RUN(validate);
	RUN(client_namespace);
	RUN(admin_namespace);
	RUN(mutf7);
	return test_done();
}
