/* test_imap_parser.c: unit tests of src/proto/imap (parser, typed
 * commands, response writer).
 *
 * Every input is parsed whole, in pieces of 1, 2, 3, 5, 7 and 64 bytes,
 * and in buffered mode; all runs must give the same transcript (one line
 * per event, see drive()). Inputs are taken from RFC 3501 section 6/8 and
 * from what Thunderbird, mutt, K-9, mbsync, imapsync and Python imaplib
 * send, plus the Cyrus sync client's SYNC* commands.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "lib/limits.h"
#include "proto/imap/imap_parser.h"
#include "proto/imap/imap_write.h"
#include "test.h"

/* ---- driver: feeds input, answers events like a session, records ---- */
#include "imap_drive.h"


/* ---- helpers ------------------------------------------------------------ */

static const size_t piece_sizes[] = { 1, 2, 3, 5, 7, 64 };

/* Parses in whole and in pieces (and buffered); all transcripts must be
 * equal, and equal to expect. */
static void parse_all_ways(const char *in, size_t len, const struct imap_drive_opts *o,
			   const char *expect, int line)
{
	char *whole = imap_drive(in, len, 0, o);
	if (expect && strcmp(whole, expect) != 0) {
		test_failed_checks++;
		printf("  %s:%d: %s: transcript differs\n--- got:\n%s--- expected:\n%s---\n",
		       __FILE__, line, test_current, whole, expect);
	}
	for (size_t i = 0; i < sizeof(piece_sizes) / sizeof(piece_sizes[0]); i++) {
		char *t = imap_drive(in, len, piece_sizes[i], o);
		if (strcmp(t, whole) != 0) {
			test_failed_checks++;
			printf("  %s:%d: %s: pieces of %zu differ from whole:\n%s--- whole:\n%s",
			       __FILE__, line, test_current, piece_sizes[i], t, whole);
		}
		free(t);
	}
	struct imap_drive_opts ob = *o;
	ob.buffered = !o->buffered;
	char *t = imap_drive(in, len, 0, &ob);
	if (strcmp(t, whole) != 0) {
		test_failed_checks++;
		printf("  %s:%d: %s: buffered mode differs:\n%s--- streaming:\n%s", __FILE__, line,
		       test_current, t, whole);
	}
	free(t);
	free(whole);
}

#define PARSE(in, o, expect) parse_all_ways((in), strlen(in), (o), (expect), __LINE__)
#define PARSE_N(in, n, o, expect) parse_all_ways((in), (n), (o), (expect), __LINE__)

static const struct imap_drive_opts AUTH = { .auth = 1 };
static const struct imap_drive_opts PREAUTH = { .auth = 0 };

/* A parser in auth mode fed one complete command; returns it (the parser
 * is kept in *pp for the caller to free). */
static const struct imap_cmd *parse_one(struct imap_parser **pp, const char *line)
{
	struct imap_parser *p = imap_parser_new();
	imap_parser_set_mode(p, IMAP_MODE_AUTH);
	imap_parser_set_buffered(p, 1);
	*pp = p;
	size_t len = strlen(line), used = 0, off = 0;
	while (off < len) {
		int ev = imap_parser_feed(p, line + off, len - off, &used);
		off += used;
		if (ev == IMAP_COMMAND)
			return imap_parser_command(p);
		if (ev == IMAP_ERROR)
			return NULL;
	}
	return NULL;
}

/* ---- RFC 3501 examples ---------------------------------------------------- */

TEST(rfc3501_session)
{
	PARSE("a001 login mrc secret\r\n"
	      "a002 select inbox\r\n"
	      "a003 fetch 12 full\r\n"
	      "a004 fetch 12 body[header]\r\n"
	      "a005 store 12 +flags \\deleted\r\n"
	      "a006 logout\r\n", &AUTH,
	      "CMD a001 LOGIN user=\"mrc\" password=(6 bytes)\n"
	      "CMD a002 SELECT mailbox=\"inbox\"\n"
	      "CMD a003 FETCH set=12 macro=FULL atts=(FLAGS INTERNALDATE RFC822.SIZE ENVELOPE BODY)\n"
	      "CMD a004 FETCH set=12 atts=(BODY[HEADER])\n"
	      "CMD a005 STORE set=12 op=+ flags=(\"\\x5cdeleted\")\n"
	      "CMD a006 LOGOUT\n");
}

TEST(rfc3501_commands)
{
	PARSE("A142 SELECT INBOX\r\n"
	      "A932 EXAMINE blurdybloop\r\n"
	      "A003 CREATE owatagusiam/\r\n"
	      "A683 DELETE blurdybloop\r\n"
	      "A683 RENAME blurdybloop sarasoop\r\n"
	      "A002 SUBSCRIBE #news.comp.mail.mime\r\n"
	      "A002 UNSUBSCRIBE #news.comp.mail.mime\r\n"
	      "A101 LIST \"\" \"\"\r\n"
	      "A102 LIST #news.comp.mail.misc \"\"\r\n"
	      "A202 LIST ~/Mail/ %\r\n"
	      "A002 LSUB \"#news.\" \"comp.mail.*\"\r\n"
	      "A042 STATUS blurdybloop (UIDNEXT MESSAGES)\r\n"
	      "FXXZ CHECK\r\n"
	      "A341 CLOSE\r\n"
	      "A202 EXPUNGE\r\n"
	      "A282 SEARCH FLAGGED SINCE 1-Feb-1994 NOT FROM \"Smith\"\r\n"
	      "A283 SEARCH TEXT \"string not in mailbox\"\r\n"
	      "A654 FETCH 2:4 (FLAGS BODY[HEADER.FIELDS (DATE FROM)])\r\n"
	      "A003 STORE 2:4 +FLAGS (\\Deleted)\r\n"
	      "A003 COPY 2:4 MEETING\r\n"
	      "A999 UID FETCH 4827313:4828442 FLAGS\r\n"
	      "abcd CAPABILITY\r\n"
	      "a002 NOOP\r\n", &AUTH,
	      "CMD A142 SELECT mailbox=\"INBOX\"\n"
	      "CMD A932 EXAMINE mailbox=\"blurdybloop\"\n"
	      "CMD A003 CREATE mailbox=\"owatagusiam/\"\n"
	      "CMD A683 DELETE mailbox=\"blurdybloop\"\n"
	      "CMD A683 RENAME from=\"blurdybloop\" to=\"sarasoop\"\n"
	      "CMD A002 SUBSCRIBE mailbox=\"#news.comp.mail.mime\"\n"
	      "CMD A002 UNSUBSCRIBE mailbox=\"#news.comp.mail.mime\"\n"
	      "CMD A101 LIST ref=\"\" pat=(\"\")\n"
	      "CMD A102 LIST ref=\"#news.comp.mail.misc\" pat=(\"\")\n"
	      "CMD A202 LIST ref=\"~/Mail/\" pat=(\"%\")\n"
	      "CMD A002 LSUB ref=\"#news.\" pat=(\"comp.mail.*\")\n"
	      "CMD A042 STATUS mailbox=\"blurdybloop\" items=0x5\n"
	      "CMD FXXZ CHECK\n"
	      "CMD A341 CLOSE\n"
	      "CMD A202 EXPUNGE\n"
	      "CMD A282 SEARCH (AND (FLAGGED) (SINCE 760060800) (NOT (FROM \"Smith\")))\n"
	      "CMD A283 SEARCH (AND (TEXT \"string not in mailbox\"))\n"
	      "CMD A654 FETCH set=2:4 atts=(FLAGS BODY[HEADER.FIELDS f=(\"DATE\" \"FROM\")])\n"
	      "CMD A003 STORE set=2:4 op=+ flags=(\"\\x5cDeleted\")\n"
	      "CMD A003 COPY set=2:4 mailbox=\"MEETING\"\n"
	      "CMD A999 UID FETCH set=4827313:4828442 atts=(FLAGS)\n"
	      "CMD abcd CAPABILITY\n"
	      "CMD a002 NOOP\n");
}

TEST(rfc3501_append)
{
	const char *msg =
		"Date: Mon, 7 Feb 1994 21:52:25 -0800 (PST)\r\n"
		"From: Fred Foobar <foobar@Blurdybloop.COM>\r\n"
		"Subject: afternoon meeting\r\n"
		"To: mooch@owatagu.siam.edu\r\n"
		"Message-Id: <B27397-0100000@Blurdybloop.COM>\r\n"
		"MIME-Version: 1.0\r\n"
		"Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n"
		"\r\n"
		"Hello Joe, do you think we can meet at 3:30 tomorrow?\r\n";
	struct buf in = BUF_INIT;
	buf_printf(&in, "A003 APPEND saved-messages (\\Seen) {%zu}\r\n%s\r\nA004 NOOP\r\n",
		   strlen(msg), msg);
	PARSE(buf_cstr(&in), &AUTH,
	      "CONT size=310 message\n"
	      "DATA len=310 fnv=a0ddcc1f\n"
	      "CMD A003 APPEND mailbox=\"saved-messages\" flags=(\"\\x5cSeen\") size=310\n"
	      "CMD A004 NOOP\n");

	struct imap_parser *p;
	const struct imap_cmd *c = parse_one(&p, buf_cstr(&in));
	CHECK(c != NULL);
	if (c) {
		CHECK_INT(c->u.append.size, 310);
		CHECK(c->u.append.message && memcmp(c->u.append.message, msg, 310) == 0);
		CHECK_INT(c->u.append.has_date, 0);
		CHECK_INT(c->u.append.nonsync, 0);
	}
	imap_parser_free(&p);
	buf_free(&in);
}

/* MULTIAPPEND (RFC 3502 6's example, and limits) */
TEST(multiappend)
{
	PARSE("A003 APPEND saved-messages (\\Seen) {5}\r\nHello (\\Seen) \"07-Feb-1994 22:43:04 -0800\" {3+}\r\nBye"
	      " {2+}\r\nHi\r\n"
	      "A004 APPEND x {1+}\r\na (\\Seen) x\r\n"
	      "A005 APPEND x {1+}\r\na {1+}\r\nb \"bad date\" {1+}\r\nc\r\n"
	      "A006 NOOP\r\n"
	      "A007 APPEND x (\\Seen) CATENATE (TEXT {3}\r\nabc URL \"/INBOX/;UID=1\") {2+}\r\nzz CATENATE (URL y)\r\n"
	      "A008 APPEND x CATENATE (TEXT)\r\n"
	      "A009 APPEND x CATENATE (FOO bar)\r\n"
	      "A010 APPEND x CATENATE (TEXT abc)\r\n", &AUTH,
	      "CONT size=5 message\n"
	      "DATA len=10 fnv=31c9364e \"HelloByeHi\"\n"
	      "CMD A003 APPEND mailbox=\"saved-messages\" flags=(\"\\x5cSeen\") size=5 nonsync +msg flags=(\"\\x5cSeen\") "
	      "date=760689784 tz=-480 size=3 +msg size=2\n"
	      "ERR A004 BAD pos=22: APPEND: unexpected extra arguments\n"
	      "ERR A005 BAD pos=30: APPEND: invalid date-time\n"
	      "CMD A006 NOOP\n"
	      "CONT size=3\n"
	      "DATA len=2 fnv=5767fb75 \"zz\"\n"
	      "CMD A007 APPEND mailbox=\"x\" flags=(\"\\x5cSeen\") size=0 text=3 url=\"/INBOX/;UID=1\" +msg size=2 "
	      "+msg size=0 url=\"y\"\n"
	      "ERR A008 BAD pos=23: APPEND: CATENATE takes TEXT literal and URL url pairs\n"
	      "ERR A009 BAD pos=24: APPEND: CATENATE part must be TEXT or URL\n"
	      "ERR A010 BAD pos=29: APPEND: TEXT needs a literal\n");

	struct imap_parser *p;
	const struct imap_cmd *c = parse_one(&p, "A1 APPEND x {1+}\r\na () {2+}\r\nbc\r\n");
	CHECK(c != NULL);
	if (c) {
		CHECK_INT(c->u.append.nmore, 1);
		CHECK(c->u.append.message && !memcmp(c->u.append.message, "abc", 3));
		CHECK(c->u.append.more[0].message && !memcmp(c->u.append.more[0].message, "bc", 2));
		CHECK_INT(c->u.append.more[0].has_flags, 1);
		CHECK_INT(c->u.append.more[0].flags.count, 0);
	}
	imap_parser_free(&p);

	/* IMAP_MAX_MULTIAPPEND messages at most */
	struct buf in = BUF_INIT;
	buf_appends(&in, "A1 APPEND x");
	for (int i = 0; i <= IMAP_MAX_MULTIAPPEND; i++)
		buf_appends(&in, " {1+}\r\nm");
	buf_appends(&in, "\r\nA2 NOOP\r\n");
	char *t = imap_drive(in.ptr, in.len, 0, &AUTH);
	CHECK(strstr(t, "ERR A1 NO [LIMIT]") != NULL && strstr(t, "too many messages") != NULL);
	CHECK(strstr(t, "CMD A2 NOOP\n") != NULL);
	free(t);
	buf_free(&in);
}

/* ---- what real clients send ------------------------------------------------ */

TEST(client_imaplib)
{
	/* Python imaplib: quoted password, APPEND with flags and date, UID cmds */
	PARSE("FJLB1 CAPABILITY\r\n"
	      "FJLB2 LOGIN joe \"pass word\\\\\\\"x\"\r\n"
	      "FJLB3 SELECT INBOX\r\n"
	      "FJLB4 UID SEARCH ALL\r\n"
	      "FJLB5 UID FETCH 1:5 (RFC822)\r\n"
	      "FJLB6 APPEND INBOX (\\Seen) \" 2-Jan-2024 10:00:00 +0100\" {5}\r\n"
	      "hello\r\n"
	      "FJLB7 UID STORE 3 +FLAGS (\\Deleted)\r\n"
	      "FJLB8 EXPUNGE\r\n"
	      "FJLB9 LOGOUT\r\n", &AUTH,
	      "CMD FJLB1 CAPABILITY\n"
	      "CMD FJLB2 LOGIN user=\"joe\" password=(12 bytes)\n"
	      "CMD FJLB3 SELECT mailbox=\"INBOX\"\n"
	      "CMD FJLB4 UID SEARCH (AND (ALL))\n"
	      "CMD FJLB5 UID FETCH set=1:5 atts=(RFC822)\n"
	      "CONT size=5 message\n"
	      "DATA len=5 fnv=4f9f2cab \"hello\"\n"
	      "CMD FJLB6 APPEND mailbox=\"INBOX\" flags=(\"\\x5cSeen\") date=1704186000 tz=60 size=5\n"
	      "CMD FJLB7 UID STORE set=3 op=+ flags=(\"\\x5cDeleted\")\n"
	      "CMD FJLB8 EXPUNGE\n"
	      "CMD FJLB9 LOGOUT\n");
	struct imap_parser *p;
	const struct imap_cmd *c = parse_one(&p, "FJLB2 LOGIN joe \"pass word\\\\\\\"x\"\r\n");
	CHECK(c && strcmp(c->u.login.password, "pass word\\\"x") == 0);
	imap_parser_free(&p);
}

TEST(client_mbsync)
{
	/* mbsync (isync 1.4): SASL-IR, LITERAL+ APPEND, UID ranges */
	PARSE("1 CAPABILITY\r\n"
	      "2 AUTHENTICATE PLAIN AGpvZQBzZWNyZXQ=\r\n"
	      "3 LIST \"\" \"*\"\r\n"
	      "4 SELECT \"INBOX\"\r\n"
	      "5 UID FETCH 1:1000000000 (UID FLAGS)\r\n"
	      "6 UID FETCH 12 (BODY.PEEK[HEADER.FIELDS (X-TUID)])\r\n"
	      "7 APPEND \"INBOX\" (\\Seen) {9+}\r\nSubject:\n\r\n"
	      "8 UID STORE 5 +FLAGS.SILENT (\\Deleted)\r\n"
	      "9 UID EXPUNGE 5\r\n"
	      "10 CLOSE\r\n"
	      "11 LOGOUT\r\n", &AUTH,
	      "CMD 1 CAPABILITY\n"
	      "CMD 2 AUTHENTICATE mech=\"PLAIN\" ir=(16 bytes)\n"
	      "CMD 3 LIST ref=\"\" pat=(\"*\")\n"
	      "CMD 4 SELECT mailbox=\"INBOX\"\n"
	      "CMD 5 UID FETCH set=1:1000000000 atts=(UID FLAGS)\n"
	      "CMD 6 UID FETCH set=12 atts=(BODY.PEEK[HEADER.FIELDS f=(\"X-TUID\")])\n"
	      "DATA len=9 fnv=6ae78d9f \"Subject:\\x0a\"\n"
	      "CMD 7 APPEND mailbox=\"INBOX\" flags=(\"\\x5cSeen\") size=9 nonsync\n"
	      "CMD 8 UID STORE set=5 op=+ silent flags=(\"\\x5cDeleted\")\n"
	      "CMD 9 UID EXPUNGE set=5\n"
	      "CMD 10 CLOSE\n"
	      "CMD 11 LOGOUT\n");
}

TEST(client_thunderbird)
{
	PARSE("1 capability\r\n"
	      "2 authenticate PLAIN\r\n"
	      "AGpvZQBzZWNyZXQ=\r\n"
	      "3 ID (\"name\" \"Thunderbird\" \"version\" \"115.3.1\" \"x\" NIL)\r\n"
	      "4 ENABLE CONDSTORE\r\n"
	      "5 select \"INBOX\" (CONDSTORE)\r\n"
	      "6 UID fetch 1:* (FLAGS) (CHANGEDSINCE 12345)\r\n"
	      "7 UID fetch 100 (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (From To Cc "
	      "Bcc Subject Date Message-ID Priority X-Priority References Newsgroups "
	      "In-Reply-To Content-Type Reply-To)])\r\n"
	      "8 IDLE\r\n"
	      "DONE\r\n"
	      "9 list (SUBSCRIBED) \"\" \"*\" RETURN (SPECIAL-USE)\r\n"
	      "10 uid store 5 +Flags (\\Seen)\r\n"
	      "11 NAMESPACE\r\n"
	      "12 getquotaroot \"INBOX\"\r\n"
	      "13 UID MOVE 5 \"Trash\"\r\n"
	      "14 uid store 6 (UNCHANGEDSINCE 200) FLAGS ($Forwarded \\Answered)\r\n"
	      "15 STATUS \"Sent\" (UIDNEXT UNSEEN HIGHESTMODSEQ)\r\n"
	      "16 UNSELECT\r\n"
	      "17 unauthenticate\r\n", &AUTH,
	      "CMD 1 CAPABILITY\n"
	      "CMD 2 AUTHENTICATE mech=\"PLAIN\"\n"
	      "LINE \"AGpvZQBzZWNyZXQ=\"\n"
	      "CMD 3 ID params=(\"name\" \"Thunderbird\" \"version\" \"115.3.1\" \"x\" NIL)\n"
	      "CMD 4 ENABLE caps=(\"CONDSTORE\")\n"
	      "CMD 5 SELECT mailbox=\"INBOX\" condstore\n"
	      "CMD 6 UID FETCH set=1:* atts=(FLAGS) changedsince=12345\n"
	      "CMD 7 UID FETCH set=100 atts=(UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS "
	      "f=(\"From\" \"To\" \"Cc\" \"Bcc\" \"Subject\" \"Date\" \"Message-ID\" \"Priority\" "
	      "\"X-Priority\" \"References\" \"Newsgroups\" \"In-Reply-To\" \"Content-Type\" "
	      "\"Reply-To\")])\n"
	      "CMD 8 IDLE\n"
	      "DONE\n"
	      "CMD 9 LIST ext sel=0x1 ret=0x4 status=0 ref=\"\" pat=(\"*\")\n"
	      "CMD 10 UID STORE set=5 op=+ flags=(\"\\x5cSeen\")\n"
	      "CMD 11 NAMESPACE\n"
	      "CMD 12 GETQUOTAROOT mailbox=\"INBOX\"\n"
	      "CMD 13 UID MOVE set=5 mailbox=\"Trash\"\n"
	      "CMD 14 UID STORE set=6 op== flags=(\"$Forwarded\" \"\\x5cAnswered\") unchangedsince=200\n"
	      "CMD 15 STATUS mailbox=\"Sent\" items=0x34\n"
	      "CMD 16 UNSELECT\n"
	      "CMD 17 UNAUTHENTICATE\n");
}

TEST(client_k9_mutt_imapsync)
{
	PARSE("4 UID SEARCH 1:* NOT DELETED\r\n"
	      "5 UID FETCH 1:10 (UID INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER.FIELDS "
	      "(date subject from)])\r\n"
	      "6 UID FETCH 5 (UID BODYSTRUCTURE)\r\n"
	      "7 UID FETCH 5 (UID BODY.PEEK[1.2]<0.4096>)\r\n"
	      "8 UID FETCH 5 (BODY.PEEK[2.MIME] BODY[1.TEXT] BODY.PEEK[HEADER.FIELDS.NOT "
	      "(\"Received\")] BODY[] RFC822.HEADER RFC822.TEXT ENVELOPE MODSEQ)\r\n"
	      "a0005 UID FETCH 1:* (UID RFC822.SIZE FLAGS INTERNALDATE)\r\n"
	      "a0006 LSUB \"\" \"*\"\r\n"
	      "a0007 FETCH 1:4,7,9:* FAST\r\n"
	      "a0008 FETCH 3 ALL\r\n"
	      "a0009 UID COPY 1:3 \"Archive/2024\"\r\n", &AUTH,
	      "CMD 4 UID SEARCH (AND (SEQ set=1:*) (NOT (DELETED)))\n"
	      "CMD 5 UID FETCH set=1:10 atts=(UID INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER.FIELDS "
	      "f=(\"date\" \"subject\" \"from\")])\n"
	      "CMD 6 UID FETCH set=5 atts=(UID BODYSTRUCTURE)\n"
	      "CMD 7 UID FETCH set=5 atts=(UID BODY.PEEK[1.2]<0.4096>)\n"
	      "CMD 8 UID FETCH set=5 atts=(BODY.PEEK[2.MIME] BODY[1.TEXT] "
	      "BODY.PEEK[HEADER.FIELDS.NOT f=(\"Received\")] BODY[] RFC822.HEADER RFC822.TEXT "
	      "ENVELOPE MODSEQ)\n"
	      "CMD a0005 UID FETCH set=1:* atts=(UID RFC822.SIZE FLAGS INTERNALDATE)\n"
	      "CMD a0006 LSUB ref=\"\" pat=(\"*\")\n"
	      "CMD a0007 FETCH set=1:4,7,9:* macro=FAST atts=(FLAGS INTERNALDATE RFC822.SIZE)\n"
	      "CMD a0008 FETCH set=3 macro=ALL atts=(FLAGS INTERNALDATE RFC822.SIZE ENVELOPE)\n"
	      "CMD a0009 UID COPY set=1:3 mailbox=\"Archive/2024\"\n");
}

TEST(fetch_sections_typed)
{
	struct imap_parser *p;
	const struct imap_cmd *c = parse_one(&p,
		"A1 FETCH 1 (BODY.PEEK[1.2.3.HEADER.FIELDS (A \"B C\")]<10.20> BODY[3])\r\n");
	CHECK(c != NULL);
	if (c) {
		const struct imap_fetch_att *a = &c->u.fetch.atts[0];
		CHECK_INT(c->u.fetch.natts, 2);
		CHECK_INT(a->item, IMAP_FETCH_BODY_SECTION);
		CHECK_INT(a->peek, 1);
		CHECK_INT(a->section.nparts, 3);
		CHECK_INT(a->section.parts[2], 3);
		CHECK_INT(a->section.spec, IMAP_SECT_HEADER_FIELDS);
		CHECK_INT(a->section.fields.count, 2);
		CHECK_STR(a->section.fields.v[1], "B C");
		CHECK_STR(a->section.text, "1.2.3.HEADER.FIELDS (A \"B C\")");
		CHECK_INT(a->partial, 1);
		CHECK_INT(a->offset, 10);
		CHECK_INT(a->length, 20);
		CHECK_INT(c->u.fetch.atts[1].section.spec, IMAP_SECT_ALL);
		CHECK_INT(c->u.fetch.atts[1].section.parts[0], 3);
	}
	imap_parser_free(&p);
}

TEST(fetch_bad)
{
	PARSE("A1 FETCH 1 (FOO)\r\n"
	      "A2 FETCH 1 BODY[MIME]\r\n"
	      "A3 FETCH 1 BODY[1.]\r\n"
	      "A4 FETCH 1 BODY[HEADER.FIELDS ()]\r\n"
	      "A5 FETCH 1 BODY[]<5>\r\n"
	      "A6 FETCH 1 BODY[]<5.0>\r\n"
	      "A7 FETCH 0 FLAGS\r\n"
	      "A8 FETCH 1 (ALL)\r\n"
	      "A9 FETCH 1 FLAGS (VANISHED)\r\n"
	      "A10 FETCH 1 BODY[TEXT\r\n"
	      "A11 FETCH 1 ()\r\n"
	      "A12 FETCH 1:2:3 FLAGS\r\n"
	      "A13 FETCH 1 BODY.PEEK\r\n"
	      "A14 FETCH 1 FLAGS (CHANGEDSINCE 9223372036854775808)\r\n"
	      "A15 NOOP\r\n", &AUTH,
	      "ERR A1 BAD pos=12: FETCH: unknown fetch attribute\n"
	      "ERR A2 BAD pos=11: FETCH: MIME needs a part number\n"
	      "ERR A3 BAD pos=11: FETCH: section ends with \".\"\n"
	      "ERR A4 BAD pos=11: FETCH: invalid header field list\n"
	      "ERR A5 BAD pos=11: FETCH: invalid partial <offset.length>\n"
	      "ERR A6 BAD pos=11: FETCH: invalid partial <offset.length>\n"
	      "ERR A7 BAD pos=9: FETCH: invalid sequence set\n"
	      "ERR A8 BAD pos=12: FETCH: unknown fetch attribute\n"
	      "ERR A9 BAD pos=17: FETCH: VANISHED needs UID FETCH and CHANGEDSINCE\n"
	      "ERR A10 BAD pos=16: section \"[\" without \"]\"\n"
	      "ERR A11 BAD pos=12: FETCH: empty fetch attribute list\n"
	      "ERR A12 BAD pos=10: FETCH: invalid sequence set\n"
	      "ERR A13 BAD pos=12: FETCH: unknown fetch attribute\n"
	      "ERR A14 BAD pos=32: FETCH: CHANGEDSINCE value out of range\n"
	      "CMD A15 NOOP\n");
}

TEST(store_variants)
{
	PARSE("A1 STORE 1 FLAGS ()\r\n"
	      "A2 STORE 1 -FLAGS.SILENT \\Seen $Junk\r\n"
	      "A3 STORE $ +FLAGS (\\Flagged)\r\n"
	      "A4 STORE 1 +FLAGS (\\*)\r\n"
	      "A5 STORE 1 XFLAGS (\\Seen)\r\n"
	      "A6 STORE 1 FLAGS\r\n"
	      "A7 STORE 1 FLAGS (a(b))\r\n"
	      "A8 STORE 1 (FOO 1) FLAGS ()\r\n"
	      "A9 STORE 1 +FLAGS NIL\r\n"
	      "A10 STORE 1 FLAGS (nil \\Seen)\r\n", &AUTH,
	      "CMD A1 STORE set=1 op== flags=()\n"
	      "CMD A2 STORE set=1 op=- silent flags=(\"\\x5cSeen\" \"$Junk\")\n"
	      "CMD A3 STORE set=$ op=+ flags=(\"\\x5cFlagged\")\n"
	      "ERR A4 BAD pos=19: STORE: invalid flag\n"
	      "ERR A5 BAD pos=11: STORE: store item must be [+|-]FLAGS[.SILENT]\n"
	      "ERR A6 BAD pos=16: STORE: missing flags\n"
	      "ERR A7 BAD pos=19: missing space between arguments\n"
	      "ERR A8 BAD pos=12: STORE: unknown STORE modifier\n"
	      "CMD A9 STORE set=1 op=+ flags=(\"NIL\")\n"
	      "CMD A10 STORE set=1 op== flags=(\"nil\" \"\\x5cSeen\")\n");
}

/* ---- SEARCH ------------------------------------------------------------------ */

TEST(search_keys)
{
	PARSE("A1 SEARCH CHARSET UTF-8 OR (FROM joe SUBJECT \"re: x\") NOT (TO {3}\r\nbob) "
	      "LARGER 1000 SMALLER 5000 HEADER X-Spam yes KEYWORD $Junk UNKEYWORD foo "
	      "UID 1:10,20 2,4:* BEFORE 1-Jan-2024 ON \"31-Dec-2023\" SENTBEFORE 1-Feb-2000 "
	      "SENTON 2-Feb-2000 SENTSINCE 3-Feb-2000 BCC x CC y BODY z TEXT w ANSWERED "
	      "DELETED DRAFT FLAGGED NEW OLD RECENT SEEN UNANSWERED UNDELETED UNDRAFT "
	      "UNFLAGGED UNSEEN ALL\r\n"
	      "A2 SEARCH MODSEQ 620162338\r\n"
	      "A3 SEARCH MODSEQ \"/flags/\\\\draft\" all 620162338\r\n"
	      "A4 SEARCH RETURN (MIN max COUNT) UNSEEN\r\n"
	      "A5 UID SEARCH $\r\n", &AUTH,
	      "CONT size=3\n"
	      "CMD A1 SEARCH charset=\"UTF-8\" (AND (OR (AND (FROM \"joe\") (SUBJECT \"re: x\")) "
	      "(NOT (AND (TO \"bob\")))) (LARGER 1000) (SMALLER 5000) (HEADER field=\"X-Spam\" \"yes\") "
	      "(KEYWORD \"$Junk\") (UNKEYWORD \"foo\") (UID set=1:10,20) (SEQ set=2,4:*) "
	      "(BEFORE 1704067200) (ON 1703980800) (SENTBEFORE 949363200) (SENTON 949449600) "
	      "(SENTSINCE 949536000) (BCC \"x\") (CC \"y\") (BODY \"z\") (TEXT \"w\") (ANSWERED) "
	      "(DELETED) (DRAFT) (FLAGGED) (NEW) (OLD) (RECENT) (SEEN) (UNANSWERED) (UNDELETED) "
	      "(UNDRAFT) (UNFLAGGED) (UNSEEN) (ALL))\n"
	      "CMD A2 SEARCH (AND (MODSEQ 620162338))\n"
	      "CMD A3 SEARCH (AND (MODSEQ entry=\"/flags/\\x5cdraft\" type=\"all\" 620162338))\n"
	      "CMD A4 SEARCH return=(\"MIN\" \"MAX\" \"COUNT\") (AND (UNSEEN))\n"
	      "CMD A5 UID SEARCH (AND (SEQ set=$))\n");

	struct imap_parser *p;
	const struct imap_cmd *c = parse_one(&p, "A1 SEARCH NOT (MODSEQ 5)\r\n");
	CHECK(c && imap_search_uses_modseq(c->u.search.root));
	imap_parser_free(&p);
	c = parse_one(&p, "A1 SEARCH OR SEEN UID 5\r\n");
	CHECK(c && !imap_search_uses_modseq(c->u.search.root));
	imap_parser_free(&p);
}

/* SORT (RFC 5256, ESORT RETURN, SORT=DISPLAY), THREAD, WITHIN */
TEST(sort_thread_within)
{
	PARSE("A1 SORT (SUBJECT REVERSE date) UTF-8 ALL\r\n"
	      "A2 UID SORT RETURN (min ALL) (DISPLAYFROM reverse displayto arrival cc from size to) "
	      "us-ascii SUBJECT {2}\r\nhi UNSEEN\r\n"
	      "A3 THREAD references UTF-8 NOT DELETED\r\n"
	      "A4 UID THREAD ORDEREDSUBJECT \"UTF-8\" 1:*\r\n"
	      "A5 SEARCH YOUNGER 3600 OLDER 60\r\n"
	      "A6 SORT (SUBJECT) ALL\r\n"
	      "A7 SORT () UTF-8 ALL\r\n"
	      "A8 SORT (DATE REVERSE) UTF-8 ALL\r\n"
	      "A9 SORT (REVERSE REVERSE DATE) UTF-8 ALL\r\n"
	      "A10 SORT (NAME) UTF-8 ALL\r\n"
	      "A11 THREAD XYZ UTF-8 ALL\r\n"
	      "A12 THREAD REFERENCES UTF-8\r\n"
	      "A13 SEARCH YOUNGER 0\r\n"
	      "A14 SEARCH OLDER 4294967296\r\n"
	      "A15 SORT SUBJECT UTF-8 ALL\r\n"
	      "A16 SEARCH EMAILID M1a2b THREADID \"T_x-9\" SAVEDBEFORE 1-Jan-2024 SAVEDON 2-Jan-2024 "
	      "SAVEDSINCE 3-Jan-2024 SAVEDATESUPPORTED\r\n"
	      "A17 SEARCH EMAILID a.b\r\n"
	      "A18 FETCH 1 (EMAILID THREADID SAVEDATE)\r\n"
	      "A19 STATUS x (MAILBOXID)\r\n"
	      "A20 FETCH 1 (PREVIEW (LAZY) UID PREVIEW)\r\n"
	      "A21 FETCH 1 (PREVIEW (FAST))\r\n"
	      "A22 FETCH 1 (BINARY[] BINARY.PEEK[1.2]<0.10> BINARY.SIZE[3])\r\n"
	      "A23 FETCH 1 BINARY[1.HEADER]\r\n"
	      "A24 FETCH 1 BINARY.SIZE[1]<0.5>\r\n"
	      "A25 APPEND x ~{3}\r\nabc\r\n"
	      "A26 SELECT x (QRESYNC (67890007 20050715194045000 41,43:211,214:541))\r\n"
	      "A27 EXAMINE x (CONDSTORE QRESYNC (1 2 1:* (1:3 4:6)))\r\n"
	      "A28 SELECT x (QRESYNC (0 2))\r\n"
	      "A29 SELECT x (QRESYNC (1))\r\n"
	      "A30 UID FETCH 300:500 (FLAGS) (CHANGEDSINCE 12345 VANISHED)\r\n"
	      "A31 FETCH 1 (FLAGS) (VANISHED CHANGEDSINCE 1)\r\n"
	      "A32 UID FETCH 1 (FLAGS) (VANISHED)\r\n", &AUTH,
	      "CMD A1 SORT sort=(SUBJECT REVERSE DATE) charset=\"UTF-8\" (AND (ALL))\n"
	      "CONT size=2\n"
	      "CMD A2 UID SORT sort=(DISPLAYFROM REVERSE DISPLAYTO ARRIVAL CC FROM SIZE TO) "
	      "return=(\"MIN\" \"ALL\") charset=\"us-ascii\" (AND (SUBJECT \"hi\") (UNSEEN))\n"
	      "CMD A3 THREAD thread=REFERENCES charset=\"UTF-8\" (AND (NOT (DELETED)))\n"
	      "CMD A4 UID THREAD thread=ORDEREDSUBJECT charset=\"UTF-8\" (AND (SEQ set=1:*))\n"
	      "CMD A5 SEARCH (AND (YOUNGER 3600) (OLDER 60))\n"
	      "ERR A6 BAD pos=21: SORT: missing search key\n"
	      "ERR A7 BAD pos=20: SORT: empty sort criteria\n"
	      "ERR A8 BAD pos=32: SORT: REVERSE must precede a criterion\n"
	      "ERR A9 BAD pos=17: SORT: REVERSE twice\n"
	      "ERR A10 BAD pos=10: SORT: unknown sort criterion\n"
	      "ERR A11 BAD pos=11: THREAD: unknown thread algorithm\n"
	      "ERR A12 BAD pos=27: THREAD: missing search key\n"
	      "ERR A13 BAD pos=19: SEARCH: interval must be at least 1\n"
	      "ERR A14 BAD pos=17: SEARCH: interval out of range\n"
	      "ERR A15 BAD pos=9: SORT: sort criteria must be a parenthesised list\n"
	      "CMD A16 SEARCH (AND (EMAILID \"M1a2b\") (THREADID \"T_x-9\") (SAVEDBEFORE 1704067200) "
	      "(SAVEDON 1704153600) (SAVEDSINCE 1704240000) (SAVEDATESUPPORTED))\n"
	      "ERR A17 BAD pos=19: SEARCH: invalid object id\n"
	      "CMD A18 FETCH set=1 atts=(EMAILID THREADID SAVEDATE)\n"
	      "CMD A19 STATUS mailbox=\"x\" items=0x100\n"
	      "CMD A20 FETCH set=1 atts=(PREVIEW (LAZY) UID PREVIEW)\n"
	      "ERR A21 BAD pos=22: FETCH: unknown PREVIEW modifier\n"
	      "CMD A22 FETCH set=1 atts=(BINARY[] BINARY.PEEK[1.2]<0.10> BINARY.SIZE[3])\n"
	      "ERR A23 BAD pos=12: FETCH: BINARY takes part numbers only\n"
	      "ERR A24 BAD pos=12: FETCH: BINARY.SIZE takes no partial\n"
	      "CONT size=3 message\n"
	      "DATA len=3 fnv=1a47e90b \"abc\"\n"
	      "CMD A25 APPEND mailbox=\"x\" size=3\n"
	      "CMD A26 SELECT mailbox=\"x\" qresync=67890007,20050715194045000 set=41,43:211,214:541\n"
	      "CMD A27 EXAMINE mailbox=\"x\" condstore qresync=1,2 set=1:*\n"
	      "ERR A28 BAD pos=14: SELECT: UIDVALIDITY must not be 0\n"
	      "ERR A29 BAD pos=26: SELECT: missing mod-sequence\n"
	      "CMD A30 UID FETCH set=300:500 atts=(FLAGS) changedsince=12345 vanished\n"
	      "ERR A31 BAD pos=20: FETCH: VANISHED needs UID FETCH and CHANGEDSINCE\n"
	      "ERR A32 BAD pos=24: FETCH: VANISHED needs UID FETCH and CHANGEDSINCE\n");
}

TEST(search_bad)
{
	PARSE("A1 SEARCH\r\n"
	      "A2 SEARCH FOO\r\n"
	      "A3 SEARCH SINCE 32-Jan-2024\r\n"
	      "A4 SEARCH SINCE 29-Feb-2023\r\n"
	      "A5 SEARCH OR SEEN\r\n"
	      "A6 SEARCH LARGER x\r\n"
	      "A7 SEARCH KEYWORD \\Seen\r\n"
	      "A8 SEARCH MODSEQ \"/flags/x\" bogus 5\r\n"
	      "A9 SEARCH ()\r\n"
	      "A10 SEARCH SINCE 29-Feb-2024\r\n", &AUTH,
	      "ERR A1 BAD pos=9: SEARCH: missing search key\n"
	      "ERR A2 BAD pos=10: SEARCH: unknown search key\n"
	      "ERR A3 BAD pos=16: SEARCH: invalid date (expected e.g. 1-Feb-2024)\n"
	      "ERR A4 BAD pos=16: SEARCH: invalid date (expected e.g. 1-Feb-2024)\n"
	      "ERR A5 BAD pos=17: SEARCH: missing search key\n"
	      "ERR A6 BAD pos=17: SEARCH: size must be a number\n"
	      "ERR A7 BAD pos=18: SEARCH: invalid keyword\n"
	      "ERR A8 BAD pos=28: SEARCH: MODSEQ entry type must be priv, shared or all\n"
	      "ERR A9 BAD pos=12: SEARCH: missing search key\n"
	      "CMD A10 SEARCH (AND (SINCE 1709164800))\n");
}

TEST(nesting_limits)
{
	struct buf in = BUF_INIT;
	/* IMAP_MAX_NESTING parentheses parse; one more is refused */
	buf_appends(&in, "A1 SEARCH ");
	for (int i = 0; i < IMAP_MAX_NESTING; i++)
		buf_putc(&in, '(');
	buf_appends(&in, "ALL");
	for (int i = 0; i < IMAP_MAX_NESTING; i++)
		buf_putc(&in, ')');
	buf_appends(&in, "\r\nA2 SEARCH ");
	for (int i = 0; i <= IMAP_MAX_NESTING; i++)
		buf_putc(&in, '(');
	buf_appends(&in, "ALL");
	for (int i = 0; i <= IMAP_MAX_NESTING; i++)
		buf_putc(&in, ')');
	/* NOT chains recurse too */
	buf_appends(&in, "\r\nA3 SEARCH ");
	for (int i = 0; i <= IMAP_MAX_NESTING; i++)
		buf_appends(&in, "NOT ");
	buf_appends(&in, "ALL\r\nA4 NOOP\r\n");
	char *t = imap_drive(in.ptr, in.len, 0, &AUTH);
	CHECK(strncmp(t, "CMD A1 SEARCH (AND (AND (AND", 28) == 0);
	CHECK(strstr(t, "ERR A2 BAD pos=42: parentheses nested too deep (limit 32)\n") != NULL);
	CHECK(strstr(t, "ERR A3 BAD pos=142: SEARCH: search keys nested too deep (limit 32)\n") != NULL);
	CHECK(strstr(t, "CMD A4 NOOP\n") != NULL);
	free(t);
	PARSE_N(in.ptr, in.len, &AUTH, NULL);
	buf_free(&in);
}

TEST(args_limit)
{
	struct buf in = BUF_INIT;
	/* "1", the list and its atoms: IMAP_MAX_ARGS nodes parse */
	buf_appends(&in, "A1 FETCH 1 (");
	for (int i = 0; i < IMAP_MAX_ARGS - 2; i++)
		buf_appends(&in, i ? " UID" : "UID");
	buf_appends(&in, ")\r\nA2 FETCH 1 (");
	for (int i = 0; i < IMAP_MAX_ARGS - 1; i++)
		buf_appends(&in, i ? " UID" : "UID");
	buf_appends(&in, ")\r\nA3 NOOP\r\n");
	char *t = imap_drive(in.ptr, in.len, 0, &AUTH);
	CHECK(strncmp(t, "CMD A1 FETCH set=1 atts=(UID UID", 32) == 0);
	CHECK(strstr(t, "ERR A2 BAD pos=16388: too many arguments (limit 4096)\nCMD A3 NOOP\n") != NULL);
	free(t);
	PARSE_N(in.ptr, in.len, &AUTH, NULL);
	buf_free(&in);
}

/* ---- mailbox commands ------------------------------------------------------ */

TEST(list_extended)
{
	PARSE("A1 LIST (SUBSCRIBED RECURSIVEMATCH) \"\" (\"INBOX\" \"Lists/%\") RETURN (CHILDREN "
	      "STATUS (MESSAGES UIDVALIDITY SIZE DELETED))\r\n"
	      "A2 LIST (SPECIAL-USE REMOTE) \"\" *\r\n"
	      "A3 LIST () \"\" % RETURN ()\r\n"
	      "A4 LIST (RECURSIVEMATCH) \"\" %\r\n"
	      "A5 LIST (BOGUS) \"\" %\r\n"
	      "A6 LIST \"\" % RETURN (BOGUS)\r\n"
	      "A7 LIST \"\" % EXTRA (x)\r\n"
	      "A8 LIST \"\" ()\r\n"
	      "A9 CREATE Sent (USE (\\Sent))\r\n"
	      "A10 CREATE x (USE ($Junk))\r\n"
	      "A11 CREATE x (FOO)\r\n"
	      "A12 SELECT x (QRESYNC (1 2))\r\n"
	      "A13 STATUS x ()\r\n"
	      "A14 STATUS x (MESSAGES BOGUS)\r\n"
	      "A15 STATUS x MESSAGES\r\n"
	      "A16 RENAME a\r\n", &AUTH,
	      "CMD A1 LIST ext sel=0x5 ret=0xa status=0xc9 ref=\"\" pat=(\"INBOX\" \"Lists/%\")\n"
	      "CMD A2 LIST ext sel=0xa ret=0 status=0 ref=\"\" pat=(\"*\")\n"
	      "CMD A3 LIST ext sel=0 ret=0 status=0 ref=\"\" pat=(\"%\")\n"
	      "ERR A4 BAD pos=8: LIST: RECURSIVEMATCH needs another selection option\n"
	      "ERR A5 BAD pos=9: LIST: unknown selection option\n"
	      "ERR A6 BAD pos=21: LIST: unknown RETURN option\n"
	      "ERR A7 BAD pos=13: LIST: expected RETURN\n"
	      "ERR A8 BAD pos=13: LIST: empty mailbox pattern list\n"
	      "CMD A9 CREATE mailbox=\"Sent\" use=(\"\\x5cSent\")\n"
	      "ERR A10 BAD pos=14: CREATE: USE takes \\flags only\n"
	      "ERR A11 BAD pos=14: CREATE: unsupported parameter\n"
	      "CMD A12 SELECT mailbox=\"x\" qresync=1,2\n"
	      "ERR A13 BAD pos=15: STATUS: empty status item list\n"
	      "ERR A14 BAD pos=23: STATUS: unknown status item\n"
	      "ERR A15 BAD pos=13: STATUS: status items must be a parenthesised list\n"
	      "ERR A16 BAD pos=12: RENAME: missing new mailbox name\n");
}

TEST(admin_commands)
{
	PARSE("A1 GETQUOTA \"\"\r\n"
	      "A2 SETQUOTA \"\" (STORAGE 512 message 1000)\r\n"
	      "A3 SETQUOTA \"\" ()\r\n"
	      "A4 GETACL INBOX\r\n"
	      "A5 SETACL INBOX fred +lrs\r\n"
	      "A6 DELETEACL INBOX fred\r\n"
	      "A7 LISTRIGHTS INBOX fred\r\n"
	      "A8 MYRIGHTS INBOX\r\n"
	      "A9 GETMETADATA (MAXSIZE 1024 DEPTH infinity) INBOX (/shared/comment /private/x)\r\n"
	      "A10 GETMETADATA \"\" /shared/admin\r\n"
	      "A11 SETMETADATA INBOX (/private/comment \"My comment\" /shared/x NIL)\r\n"
	      "A12 SETMETADATA INBOX (/private/comment {5}\r\nab\r\nc)\r\n"
	      "A13 COMPRESS deflate\r\n"
	      "A14 ID NIL\r\n"
	      "A15 ENABLE QRESYNC CONDSTORE\r\n"
	      "A16 SETQUOTA \"\" (STORAGE)\r\n"
	      "A17 GETMETADATA INBOX comment\r\n"
	      "A18 SETMETADATA INBOX (/private/comment value)\r\n"
	      "A19 ID (\"a\")\r\n"
	      "A20 ENABLE\r\n"
	      "A21 SETACL INBOX fred\r\n"
	      "A22 GETMETADATA (DEPTH 2) INBOX /a\r\n", &AUTH,
	      "CMD A1 GETQUOTA root=\"\"\n"
	      "CMD A2 SETQUOTA root=\"\" STORAGE=512 MESSAGE=1000\n"
	      "CMD A3 SETQUOTA root=\"\"\n"
	      "CMD A4 GETACL mailbox=\"INBOX\"\n"
	      "CMD A5 SETACL mailbox=\"INBOX\" id=\"fred\" rights=\"+lrs\"\n"
	      "CMD A6 DELETEACL mailbox=\"INBOX\" id=\"fred\"\n"
	      "CMD A7 LISTRIGHTS mailbox=\"INBOX\" id=\"fred\"\n"
	      "CMD A8 MYRIGHTS mailbox=\"INBOX\"\n"
	      "CMD A9 GETMETADATA mailbox=\"INBOX\" entries=(\"/shared/comment\" \"/private/x\") "
	      "maxsize=1024 depth=-1\n"
	      "CMD A10 GETMETADATA mailbox=\"\" entries=(\"/shared/admin\") depth=0\n"
	      "CMD A11 SETMETADATA mailbox=\"INBOX\" entry=\"/private/comment\"=\"My comment\" "
	      "entry=\"/shared/x\"=NIL\n"
	      "CONT size=5\n"
	      "CMD A12 SETMETADATA mailbox=\"INBOX\" entry=\"/private/comment\"=\"ab\\x0d\\x0ac\"\n"
	      "CMD A13 COMPRESS mech=\"DEFLATE\"\n"
	      "CMD A14 ID nil\n"
	      "CMD A15 ENABLE caps=(\"QRESYNC\" \"CONDSTORE\")\n"
	      "ERR A16 BAD pos=25: SETQUOTA: resource limits must be name/limit pairs\n"
	      "ERR A17 BAD pos=22: GETMETADATA: entry names start with \"/\"\n"
	      "ERR A18 BAD pos=40: SETMETADATA: entry value must be a string or NIL\n"
	      "ERR A19 BAD pos=12: ID: ID parameters must be field/value pairs\n"
	      "ERR A20 BAD pos=10: ENABLE: missing capability\n"
	      "ERR A21 BAD pos=21: SETACL: missing rights\n"
	      "ERR A22 BAD pos=23: GETMETADATA: DEPTH must be 0, 1 or infinity\n");
}

/* ---- literals ----------------------------------------------------------------- */

TEST(literals_sync_and_nonsync)
{
	PARSE("A1 LOGIN {4}\r\nuser {6+}\r\nse\"c\\t\r\n"
	      "A2 LOGIN \"a\" {0}\r\n\r\n"
	      "A3 SELECT {7+}\r\nIN\xc3\xa4X x\r\n"
	      "A4 NOOP\r\n", &AUTH,
	      "CONT size=4\n"
	      "CMD A1 LOGIN user=\"user\" password=(6 bytes)\n"
	      "CONT size=0\n"
	      "CMD A2 LOGIN user=\"a\" password=(0 bytes)\n"
	      "CMD A3 SELECT mailbox=\"IN\\xc3\\xa4X x\"\n"
	      "CMD A4 NOOP\n");
	struct imap_parser *p;
	const struct imap_cmd *c = parse_one(&p, "A1 LOGIN {4+}\r\nuser {6+}\r\nse\"c\\t\r\n");
	CHECK(c && strcmp(c->u.login.password, "se\"c\\t") == 0);
	imap_parser_free(&p);
}

TEST(literal_reject)
{
	struct imap_drive_opts o = AUTH;
	o.reject_sync = 1;
	/* the session refuses the continuation: the client abandons the
	 * command and the next line is a new command */
	PARSE("A1 APPEND INBOX {100}\r\nA2 LOGIN {3}\r\nA3 NOOP\r\n", &o,
	      "CONT size=100 message\n"
	      "REJECT\n"
	      "CONT size=3\n"
	      "REJECT\n"
	      "CMD A3 NOOP\n");
}

TEST(literal_limits)
{
	struct buf in = BUF_INIT;
	/* after login: literal over IMAP_MAX_LITERAL, {N} refused before the
	 * continuation, {N+} skipped; then the session goes on */
	buf_printf(&in, "A1 LOGIN {%d}\r\n", IMAP_MAX_LITERAL + 1);
	buf_printf(&in, "A2 LOGIN {%d+}\r\n", IMAP_MAX_LITERAL + 1);
	for (int i = 0; i < IMAP_MAX_LITERAL + 1; i++)
		buf_putc(&in, 'x');
	buf_appends(&in, " {5+}\r\nhello\r\nA3 NOOP\r\n");
	PARSE_N(in.ptr, in.len, &AUTH,
		"ERR A1 BAD [TOOBIG] pos=9: literal too big (limit 65536 bytes)\n"
		"ERR A2 BAD [TOOBIG] pos=9: literal too big (limit 65536 bytes)\n"
		"CMD A3 NOOP\n");
	buf_reset(&in);

	/* a size that is not a 32-bit number: the stream is lost */
	PARSE("A1 LOGIN {4294967296+}\r\nA2 NOOP\r\n", &AUTH,
	      "ERR A1 BAD pos=9 FATAL: literal size out of range\n");
	PARSE("A1 LOGIN a b c {4294967296+}\r\nA2 NOOP\r\n", &AUTH,
	      "ERR A1 BAD pos=15 FATAL: literal size out of range\n");
	PARSE("A1 LOGIN {4294967295+}\r\n", &AUTH,
	      "ERR A1 BAD [TOOBIG] pos=9: literal too big (limit 65536 bytes)\n");

	/* NUL is not allowed in a literal (RFC 3501 CHAR8) */
	PARSE_N("A1 LOGIN a {3}\r\nb\0c\r\nA2 NOOP\r\n", 30, &AUTH,
		"CONT size=3\n"
		"ERR A1 BAD pos=17: NUL byte in a literal\n"
		"CMD A2 NOOP\n");

	/* the total of one command's literals is bounded too */
	buf_appends(&in, "A1 SETMETADATA INBOX (");
	for (int i = 0; i < 20; i++) {
		buf_printf(&in, "/private/e%d {60000+}\r\n", i);
		for (int k = 0; k < 60000; k++)
			buf_putc(&in, 'v');
		buf_putc(&in, ' ');
	}
	buf_appends(&in, ")\r\nA2 NOOP\r\n");
	char *t = imap_drive(in.ptr, in.len, 0, &AUTH);
	CHECK_STR(t, "ERR A1 BAD [TOOBIG] pos=1020433: command too big (limit 1048576 bytes)\n"
		  "CMD A2 NOOP\n");
	free(t);
	buf_free(&in);
}

TEST(literal_plus_huge_message)
{
	/* APPEND {N+} over the message limit: NO [TOOBIG] at once, the bytes
	 * are skipped (never stored), the next command parses */
	struct imap_drive_opts o = AUTH;
	o.max_message = 1000;
	struct buf in = BUF_INIT;
	buf_appends(&in, "A1 APPEND INBOX {5000+}\r\n");
	for (int i = 0; i < 5000; i++)
		buf_putc(&in, (char)('a' + i % 26));
	buf_appends(&in, "\r\nA2 APPEND INBOX {5000}\r\nA3 APPEND INBOX {1000}\r\n");
	for (int i = 0; i < 1000; i++)
		buf_putc(&in, 'm');
	buf_appends(&in, "\r\nA4 NOOP\r\n");
	PARSE_N(in.ptr, in.len, &o,
		"ERR A1 NO [TOOBIG] pos=16: message too big (limit 1000 bytes)\n"
		"ERR A2 NO [TOOBIG] pos=16: message too big (limit 1000 bytes)\n"
		"CONT size=1000 message\n"
		"DATA len=1000 fnv=01634dbd\n"
		"CMD A3 APPEND mailbox=\"INBOX\" size=1000\n"
		"CMD A4 NOOP\n");
	buf_free(&in);

	/* the real limit: 4 GiB - 1 announced with LITERAL+ is skipped, not
	 * buffered; feed a few bytes only and check nothing is pending */
	struct imap_parser *p = imap_parser_new();
	imap_parser_set_mode(p, IMAP_MODE_AUTH);
	size_t used;
	const char *big = "A1 APPEND INBOX {4294967295+}\r\n";
	CHECK_INT(imap_parser_feed(p, big, strlen(big), &used), IMAP_ERROR);
	CHECK_STR(imap_parser_error(p)->code, "TOOBIG");
	CHECK_INT(imap_parser_error(p)->resp, IMAP_RESP_NO);
	CHECK_INT(used, strlen(big));
	char junk[65536];
	memset(junk, 'j', sizeof(junk));
	CHECK_INT(imap_parser_feed(p, junk, sizeof(junk), &used), IMAP_NEED_MORE);
	CHECK_INT(used, sizeof(junk));
	imap_parser_free(&p);
}

TEST(append_1mb_in_chunks)
{
	size_t n = 1024 * 1024;
	struct buf in = BUF_INIT, got = BUF_INIT;
	buf_printf(&in, "A1 APPEND Archive (\\Seen $Label1) \"15-Mar-2024 08:30:00 -0500\" {%zu}\r\n", n);
	size_t body = in.len;
	for (size_t i = 0; i < n; i++)
		buf_putc(&in, (char)(i * 7 + i / 1000));
	buf_appends(&in, "\r\nA2 NOOP\r\n");

	for (int round = 0; round < 2; round++) {
		/* round 0: 4 KiB reads; round 1: 1 byte at a time */
		size_t chunk = round ? 1 : 4096;
		struct imap_parser *p = imap_parser_new();
		imap_parser_set_mode(p, IMAP_MODE_AUTH);
		size_t off = 0, chunks = 0, maxchunk = 0;
		int conts = 0, cmds = 0, appended = 0;
		buf_reset(&got);
		while (off < in.len) {
			size_t len = in.len - off < chunk ? in.len - off : chunk;
			const char *d = in.ptr + off;
			for (;;) {
				size_t used;
				int ev = imap_parser_feed(p, d, len, &used);
				d += used;
				len -= used;
				off += used;
				if (ev == IMAP_NEED_MORE)
					break;
				if (ev == IMAP_CONTINUE) {
					conts++;
					CHECK_INT(imap_parser_pending(p)->size, n);
					CHECK_INT(imap_parser_pending(p)->is_message, 1);
				} else if (ev == IMAP_DATA) {
					const void *ptr;
					size_t dl;
					CHECK_INT(imap_parser_data(p, &ptr, &dl), IMAP_DATA_MESSAGE);
					/* zero copy: the chunk is inside our input */
					CHECK((const char *)ptr >= in.ptr &&
					      (const char *)ptr + dl <= in.ptr + in.len);
					buf_append(&got, ptr, dl);
					chunks++;
					if (dl > maxchunk)
						maxchunk = dl;
				} else if (ev == IMAP_COMMAND) {
					const struct imap_cmd *c = imap_parser_command(p);
					cmds++;
					if (c->id == IMAP_CMD_APPEND) {
						appended = 1;
						CHECK_STR(c->u.append.mailbox, "Archive");
						CHECK_INT(c->u.append.size, n);
						CHECK(c->u.append.message == NULL);
						CHECK_INT(c->u.append.flags.count, 2);
						CHECK_INT(c->u.append.date, 1710509400);
						CHECK_INT(c->u.append.date_tzoff, -300);
					}
				} else {
					CHECK(0);
					break;
				}
			}
		}
		CHECK_INT(conts, 1);
		CHECK_INT(cmds, 2);
		CHECK(appended);
		CHECK_MEM(got.ptr, got.len, in.ptr + body, n);
		CHECK(chunks > 1);
		CHECK(maxchunk <= chunk);
		imap_parser_free(&p);
	}
	buf_free(&in);
	buf_free(&got);
}

TEST(append_bad)
{
	PARSE("A1 APPEND INBOX\r\n"
	      "A2 APPEND INBOX (\\Seen foo) \"bad date\" {5}\r\n"
	      "A3 APPEND INBOX (\\Seen) {5} extra\r\n"
	      "A4 APPEND INBOX (\\Seen) \"1-Jan-2024 00:00:00 +0000\" x {5}\r\n"
	      "A5 APPEND INBOX {3+}\r\nabc extra\r\n"
	      "A6 APPEND INBOX (\\Seen \\*) {3}\r\n"
	      "A7 NOOP\r\n", &AUTH,
	      "ERR A1 BAD pos=15: APPEND: missing message literal\n"
	      "ERR A2 BAD pos=28: APPEND: invalid date-time\n"
	      "ERR A3 BAD pos=24: literal header not at the end of the line\n"
	      "ERR A4 BAD pos=52: APPEND: expected flags, date-time or the message literal\n"
	      "ERR A5 BAD pos=26: APPEND: unexpected extra arguments\n"
	      "ERR A6 BAD pos=23: APPEND: invalid flag\n"
	      "CMD A7 NOOP\n");
}

/* ---- framing errors and resynchronisation ------------------------------------ */

TEST(garbage_then_next_command)
{
	PARSE("garbage\r\n"
	      "A1 FOO bar\r\n"
	      "A2 FETCH\r\n"
	      "A3 FETCH 1 (FLAGS\r\n"
	      "\x01\x02\r\n"
	      "A4 FETCH 1 (FLAGS))\r\n"
	      "\r\n"
	      "A5 noop extra\r\n"
	      "A6 LOGIN a \"b\r\n"
	      "A7 LOGIN {3}x\r\n"
	      "A8 UID\r\n"
	      "A9 UID NOOP\r\n"
	      "A+ NOOP\r\n"
	      " NOOP\r\n"
	      "A10\r\n"
	      "A11 LOGIN a\"b\" c\r\n"
	      "A12 LOGIN a b\x7f\r\n"
	      "A13 SELECT ~{3+}\r\nabc\r\n"
	      "A14 NOOP\n"
	      "\n"
	      "A15 EXPUNGE 1\r\n"
	      "A16 UID EXPUNGE\r\n"
	      "A17 NOOP\r\n", &AUTH,
	      "ERR garbage BAD pos=7: missing command\n"
	      "ERR A1 BAD pos=3: unknown command\n"
	      "ERR A2 BAD pos=8: FETCH: missing sequence set\n"
	      "ERR A3 BAD pos=17: missing \")\"\n"
	      "ERR * BAD pos=0: invalid tag\n"
	      "ERR A4 BAD pos=18: unexpected \")\"\n"
	      "ERR A5 BAD pos=8: NOOP: unexpected extra arguments\n"
	      "ERR A6 BAD pos=11: quoted string without closing quote\n"
	      "ERR A7 BAD pos=9: literal header not at the end of the line\n"
	      "ERR A8 BAD pos=6: missing command after UID\n"
	      "ERR A9 BAD pos=7: UID must be followed by FETCH, STORE, COPY, MOVE, SEARCH, SORT, THREAD or EXPUNGE\n"
	      "ERR * BAD pos=1: invalid tag\n"
	      "ERR * BAD pos=0: missing tag\n"
	      "ERR A10 BAD pos=3: missing command\n"
	      "ERR A11 BAD pos=11: unexpected quote inside an atom\n"
	      "ERR A12 BAD pos=13: control character 0x7f in an atom\n"
	      "ERR A13 BAD pos=11: binary literals (~{N}) are only for APPEND\n"
	      "CMD A14 NOOP\n"
	      "ERR A15 BAD pos=12: EXPUNGE: unexpected extra arguments\n"
	      "ERR A16 BAD pos=15: EXPUNGE: missing sequence set\n"
	      "CMD A17 NOOP\n");
}

TEST(line_too_long)
{
	struct buf in = BUF_INIT;
	/* after login; the overlong line ends in a {N+} that must be skipped */
	buf_appends(&in, "A1 NOOP ");
	for (int i = 0; i < IMAP_MAX_LINE; i++)
		buf_putc(&in, 'x');
	buf_appends(&in, " {5+}\r\nhello\r\nA2 NOOP\r\n");
	PARSE_N(in.ptr, in.len, &AUTH,
		"ERR A1 BAD [TOOBIG] pos=65536: line too long (limit 65536 bytes)\n"
		"CMD A2 NOOP\n");
	/* a tag alone can be too long */
	buf_reset(&in);
	for (int i = 0; i < IMAP_PREAUTH_MAX_LINE + 10; i++)
		buf_putc(&in, 't');
	buf_appends(&in, "\r\nA2 NOOP\r\n");
	PARSE_N(in.ptr, in.len, &PREAUTH,
		"ERR * BAD [TOOBIG] pos=8192: line too long (limit 8192 bytes)\n"
		"CMD A2 NOOP\n");
	buf_free(&in);
}

TEST(preauth_limits)
{
	struct buf in = BUF_INIT;
	buf_appends(&in, "A1 LOGIN a ");
	for (int i = 0; i < IMAP_PREAUTH_MAX_LINE; i++)
		buf_putc(&in, 'p');
	buf_printf(&in, "\r\nA2 LOGIN {%d}\r\n", IMAP_PREAUTH_MAX_LITERAL + 1);
	buf_printf(&in, "A3 LOGIN {%d+}\r\n", IMAP_PREAUTH_MAX_LITERAL + 1);
	for (int i = 0; i < IMAP_PREAUTH_MAX_LITERAL + 1; i++)
		buf_putc(&in, 'u');
	buf_appends(&in, " pass\r\nA4 SELECT INBOX\r\nA5 SYNCAPPLY UNUSER fred\r\n"
		    "A6 ENABLE CONDSTORE\r\nA7 APPEND INBOX {10}\r\nA7b UNAUTHENTICATE\r\nA8 ID NIL\r\nA9 STARTTLS\r\n"
		    "A10 LOGIN {1024}\r\n");
	for (int i = 0; i < IMAP_PREAUTH_MAX_LITERAL; i++)
		buf_putc(&in, 'u');
	buf_appends(&in, " pass\r\n");
	PARSE_N(in.ptr, in.len, &PREAUTH, NULL);
	struct buf want = BUF_INIT;
	buf_appends(&want,
		    "ERR A1 BAD [TOOBIG] pos=8192: line too long (limit 8192 bytes)\n"
		    "ERR A2 BAD [TOOBIG] pos=9: literal too big (limit 1024 bytes)\n"
		    "ERR A3 BAD [TOOBIG] pos=9: literal too big (limit 1024 bytes)\n"
		    "ERR A4 BAD pos=3: SELECT is not allowed before login\n"
		    "ERR A5 BAD pos=3: SYNCAPPLY is not allowed before login\n"
		    "ERR A6 BAD pos=3: ENABLE is not allowed before login\n"
		    "ERR A7 BAD pos=3: APPEND is not allowed before login\n"
		    "ERR A7b BAD pos=4: UNAUTHENTICATE is not allowed before login\n"
		    "CMD A8 ID nil\n"
		    "CMD A9 STARTTLS\n"
		    "CONT size=1024\n"
		    "CMD A10 LOGIN user=\"");
	for (int i = 0; i < IMAP_PREAUTH_MAX_LITERAL; i++)
		buf_putc(&want, 'u');
	buf_appends(&want, "\" password=(4 bytes)\n");
	char *t = imap_drive(in.ptr, in.len, 0, &PREAUTH);
	CHECK_STR(t, buf_cstr(&want));
	free(t);
	buf_free(&want);

	/* the whole command is bounded before login: many small literals */
	buf_reset(&in);
	buf_appends(&in, "A1 LOGIN");
	for (int i = 0; i < 20; i++) {
		buf_appends(&in, " {1000+}\r\n");
		for (int k = 0; k < 1000; k++)
			buf_putc(&in, 'l');
	}
	buf_appends(&in, "\r\nA2 NOOP\r\n");
	PARSE_N(in.ptr, in.len, &PREAUTH,
		"ERR A1 BAD [TOOBIG] pos=16169: command too big (limit 16384 bytes)\n"
		"CMD A2 NOOP\n");
	buf_free(&in);
}

/* ID may carry RFC 2971's 30 pairs of 30 + 1024 bytes before login
 * (~32 KB, over IMAP_PREAUTH_MAX_LINE); the next command has the usual
 * limit again. */
TEST(id_large_preauth)
{
	struct buf in = BUF_INIT, want = BUF_INIT;
	buf_appends(&in, "A1 ID (");
	buf_appends(&want, "CMD A1 ID params=(");
	for (int i = 0; i < 30; i++) {
		char field[48];
		snprintf(field, sizeof field, "field%02d-%022d", i, 0);
		buf_printf(&in, "%s\"%s\" \"", i ? " " : "", field);
		buf_printf(&want, "%s\"%s\" \"", i ? " " : "", field);
		for (int k = 0; k < 1024; k++) {
			buf_putc(&in, (char)('a' + (i + k) % 26));
			buf_putc(&want, (char)('a' + (i + k) % 26));
		}
		buf_putc(&in, '"');
		buf_putc(&want, '"');
	}
	buf_appends(&in, ")\r\nA2 LOGIN a ");
	buf_appends(&want, ")\n");
	CHECK(in.len > 31 * 1024 && in.len < IMAP_ID_MAX_LINE);
	for (int i = 0; i < IMAP_PREAUTH_MAX_LINE; i++)
		buf_putc(&in, 'p');
	buf_appends(&in, "\r\nA3 ID (\"a\" ");
	for (int i = 0; i < IMAP_ID_MAX_LINE; i++)
		buf_putc(&in, 'x');
	buf_appends(&in, ")\r\nA4 ID NIL\r\n");
	buf_appends(&want, "ERR A2 BAD [TOOBIG] pos=8192: line too long (limit 8192 bytes)\n"
			   "ERR A3 BAD [TOOBIG] pos=65536: line too long (limit 65536 bytes)\n"
			   "CMD A4 ID nil\n");
	PARSE_N(in.ptr, in.len, &PREAUTH, want.ptr);
	buf_free(&in);
	buf_free(&want);
}

TEST(mode_switch)
{
	/* a session logs in, then switches the parser to the AUTH limits */
	struct imap_parser *p = imap_parser_new();
	size_t used;
	const char *l1 = "A1 LOGIN joe secret\r\n", *l2 = "A2 SELECT INBOX\r\n";
	CHECK_INT(imap_parser_feed(p, l1, strlen(l1), &used), IMAP_COMMAND);
	imap_parser_set_mode(p, IMAP_MODE_AUTH);
	CHECK_INT(imap_parser_feed(p, l2, strlen(l2), &used), IMAP_COMMAND);
	CHECK_STR(imap_parser_command(p)->u.select.mailbox, "INBOX");
	CHECK_INT(imap_parser_feed(p, "", 0, &used), IMAP_NEED_MORE);
	/* reset drops a half-read command */
	CHECK_INT(imap_parser_feed(p, "A3 SELE", 7, &used), IMAP_NEED_MORE);
	imap_parser_reset(p);
	CHECK_INT(imap_parser_feed(p, "A4 NOOP\r\n", 9, &used), IMAP_COMMAND);
	CHECK_STR(imap_parser_command(p)->tag, "A4");
	imap_parser_free(&p);
	imap_parser_free(&p);	/* NULL: no-op */
}

/* ---- IDLE / SASL --------------------------------------------------------------- */

TEST(idle_done)
{
	PARSE("A1 IDLE\r\nDONE\r\nA2 IDLE\r\ndone\nA3 IDLE\r\nNOOP\r\nA4 NOOP\r\n", &AUTH,
	      "CMD A1 IDLE\n"
	      "DONE\n"
	      "CMD A2 IDLE\n"
	      "DONE\n"
	      "CMD A3 IDLE\n"
	      "ERR A3 BAD pos=0: expected DONE\n"
	      "CMD A4 NOOP\n");
	PARSE("A1 AUTHENTICATE SCRAM-SHA-256\r\nbiwsbj11c2VyLHI9\r\n*\r\nA2 NOOP\r\n", &PREAUTH,
	      "CMD A1 AUTHENTICATE mech=\"SCRAM-SHA-256\"\n"
	      "LINE \"biwsbj11c2VyLHI9\"\n"
	      "ERR * BAD pos=0: invalid tag\n"
	      "CMD A2 NOOP\n");
}

TEST(pending_and_positions)
{
	/* the session sees what a literal belongs to before accepting it */
	struct imap_parser *p = imap_parser_new();
	imap_parser_set_mode(p, IMAP_MODE_AUTH);
	size_t used;
	const char *l = "T1 APPEND \"Sent Items\" (\\Seen) {2048}\r\n";
	CHECK_INT(imap_parser_feed(p, l, strlen(l), &used), IMAP_CONTINUE);
	CHECK_INT(used, strlen(l));
	const struct imap_pending *pd = imap_parser_pending(p);
	CHECK(pd != NULL);
	if (pd) {
		CHECK_STR(pd->tag, "T1");
		CHECK_INT(pd->cmd, IMAP_CMD_APPEND);
		CHECK_INT(pd->size, 2048);
		CHECK_INT(pd->nonsync, 0);
		CHECK_INT(pd->is_message, 1);
		CHECK_INT(pd->received, 0);
		CHECK(pd->args && strcmp(pd->args->str, "Sent Items") == 0);
		CHECK(pd->args && pd->args->next && pd->args->next->type == IMAP_ARG_LIST);
	}
	CHECK_INT(imap_parser_feed(p, "abc", 3, &used), IMAP_DATA);
	CHECK_INT(imap_parser_pending(p)->received, 3);
	imap_parser_free(&p);
	CHECK(p == NULL);

	/* offsets count literal bytes */
	PARSE("A1 LOGIN {3}\r\nabc \"x\r\nA2 LOGIN {3+}\r\nabc x y\r\n", &AUTH,
	      "CONT size=3\n"
	      "ERR A1 BAD pos=18: quoted string without closing quote\n"
	      "ERR A2 BAD pos=21: LOGIN: unexpected extra arguments\n");
}

TEST(sasl_multi_step)
{
	struct imap_parser *p = imap_parser_new();
	size_t used;
	const char *l = "S1 AUTHENTICATE SCRAM-SHA-1\r\n";
	CHECK_INT(imap_parser_feed(p, l, strlen(l), &used), IMAP_COMMAND);
	imap_parser_expect(p, IMAP_EXPECT_LINE);
	CHECK_INT(imap_parser_feed(p, "c1\r\n", 4, &used), IMAP_LINE);
	CHECK_STR(imap_parser_line(p, NULL), "c1");
	imap_parser_expect(p, IMAP_EXPECT_LINE);
	CHECK_INT(imap_parser_feed(p, "c2", 2, &used), IMAP_NEED_MORE);
	CHECK_INT(imap_parser_feed(p, "\n", 1, &used), IMAP_LINE);
	size_t n;
	CHECK_STR(imap_parser_line(p, &n), "c2");
	CHECK_INT(n, 2);
	/* an overlong response line: BAD with the AUTHENTICATE tag */
	imap_parser_expect(p, IMAP_EXPECT_LINE);
	char big[IMAP_PREAUTH_MAX_LINE + 10];
	memset(big, 'b', sizeof(big));
	CHECK_INT(imap_parser_feed(p, big, sizeof(big), &used), IMAP_ERROR);
	CHECK_STR(imap_parser_error(p)->tag, "S1");
	CHECK_STR(imap_parser_error(p)->code, "TOOBIG");
	CHECK_INT(imap_parser_feed(p, "\r\nS2 NOOP\r\n", 11, &used), IMAP_COMMAND);
	CHECK_STR(imap_parser_command(p)->tag, "S2");
	/* expecting nothing any more */
	imap_parser_expect(p, IMAP_EXPECT_LINE);
	imap_parser_expect(p, IMAP_EXPECT_COMMAND);
	CHECK_INT(imap_parser_feed(p, "S3 NOOP\r\n", 9, &used), IMAP_COMMAND);
	imap_parser_free(&p);
}

/* ---- SYNC* (Cyrus replication over IMAP) ------------------------------------------ */

TEST(sync_commands)
{
	const char *in =
		"S0 SYNCAPPLY CAPABILITIES (SIEVE-MAILBOX)\r\n"
		"S1 SYNCGET MAILBOXES (user.user00)\r\n"
		"S2 SYNCAPPLY RESERVE %(PARTITION default MBOXNAME (user.user00) GUID "
		"(88b6057ea461ecdb7112ba3f4ca7a07c805c94c3))\r\n"
		"S3 SYNCAPPLY MESSAGE (%{default 2d14fd7c74290ef06840213adcdd73b6a37c35e2 10}\r\n"
		"0123456\r\n8"
		"9 %{default dd990e17223c8af162b6ebf2dbb75cb7f711465b 3}\r\n"
		"abc)\r\n"
		"S4 SYNCAPPLY ANNOTATION %(MBOXNAME user.fred ENTRY /comment USERID \"\" VALUE {12+}\r\n"
		"line1\r\nline2)\r\n"
		"S5 SYNCRESTART\r\n"
		"S6 SYNCGET\r\n"
		"S7 SYNCGET X {12}\r\nline1\r\nline2\r\n"
		"S8 syncrestore X \"a {5}\"\r\n"
		"Q01 LOGOUT\r\n";
	PARSE(in, &AUTH,
	      "DATA len=30 fnv=f8738dea \"CAPABILITIES (SIEVE-MAILBOX)\\x0d\\x0a\"\n"
	      "CMD S0 SYNCAPPLY len=30\n"
	      "DATA len=25 fnv=21f2b72b \"MAILBOXES (user.user00)\\x0d\\x0a\"\n"
	      "CMD S1 SYNCGET len=25\n"
	      "DATA len=101 fnv=e96065bc\n"
	      "CMD S2 SYNCAPPLY len=101\n"
	      "DATA len=138 fnv=1e2f1cae\n"
	      "CMD S3 SYNCAPPLY len=138\n"
	      "DATA len=85 fnv=786c865a\n"
	      "CMD S4 SYNCAPPLY len=85\n"
	      "CMD S5 SYNCRESTART\n"
	      "ERR S6 BAD pos=10: SYNCGET: missing argument\n"
	      "DATA len=22 fnv=69bb8116 \"X {12}\\x0d\\x0aline1\\x0d\\x0aline2\\x0d\\x0a\"\n"
	      "CMD S7 SYNCGET len=22\n"
	      "DATA len=11 fnv=bdb6234c \"X \\x22a {5}\\x22\\x0d\\x0a\"\n"
	      "CMD S8 SYNCRESTORE len=11\n"
	      "CMD Q01 LOGOUT\n");

	/* buffered: the exact remainder, literals and file literals included */
	struct imap_parser *p;
	const char *m = "S3 SYNCAPPLY MESSAGE (%{default 2d14 5}\r\nab\r\nc)\r\n";
	const struct imap_cmd *c = parse_one(&p, m);
	CHECK(c != NULL);
	if (c) {
		CHECK_INT(c->id, IMAP_CMD_SYNCAPPLY);
		CHECK_STR(c->u.sync.raw, "MESSAGE (%{default 2d14 5}\r\nab\r\nc)\r\n");
		CHECK_INT(c->u.sync.len, strlen("MESSAGE (%{default 2d14 5}\r\nab\r\nc)\r\n"));
	}
	imap_parser_free(&p);
}

TEST(sync_limits)
{
	struct buf in = BUF_INIT;
	/* a {N+} over DLIST_MAX_LITERAL and a file over the message limit:
	 * refused, skipped, the session goes on */
	buf_printf(&in, "S1 SYNCAPPLY ANNOTATION %%(VALUE {%ld+}\r\n", (long)DLIST_MAX_LITERAL + 1);
	for (long i = 0; i < DLIST_MAX_LITERAL + 1; i++)
		buf_putc(&in, 'v');
	buf_appends(&in, ")\r\nS2 SYNCAPPLY MESSAGE (%{default abc 2000}\r\n");
	for (int i = 0; i < 2000; i++)
		buf_putc(&in, 'm');
	buf_appends(&in, " %{default def 3}\r\nxyz)\r\nS3 SYNCRESTART\r\n");
	struct imap_drive_opts o = AUTH;
	o.max_message = 1000;
	PARSE_N(in.ptr, in.len, &o,
		"ERR S1 BAD [TOOBIG] pos=42: SYNCAPPLY: literal too big (limit 131072 bytes)\n"
		"ERR S2 BAD [TOOBIG] pos=42: SYNCAPPLY: file literal too big (limit 1000 bytes)\n"
		"CMD S3 SYNCRESTART\n");
	PARSE("S1 SYNCAPPLY MESSAGE (%{default abc 4294967296}\r\n", &AUTH,
	      "ERR S1 BAD pos=48 FATAL: literal size out of range\n");
	buf_free(&in);
}

/* ---- dates, sequence sets ---------------------------------------------------------- */

TEST(dates)
{
	time_t t;
	int tz;
	CHECK_INT(imap_date_parse("1-Feb-1994", 10, &t), 0);
	CHECK_INT(t, 760060800);
	CHECK_INT(imap_date_parse("01-feb-1994", 11, &t), 0);
	CHECK_INT(t, 760060800);
	CHECK_INT(imap_date_parse("29-Feb-2000", 11, &t), 0);
	CHECK_INT(imap_date_parse("29-Feb-1900", 11, &t), -1);
	CHECK_INT(imap_date_parse("0-Jan-2024", 10, &t), -1);
	CHECK_INT(imap_date_parse("1-Foo-2024", 10, &t), -1);
	CHECK_INT(imap_date_parse("1-Jan-24", 8, &t), -1);
	CHECK_INT(imap_date_parse("1-Jan-2024x", 11, &t), -1);
	CHECK_INT(imap_date_parse("", 0, &t), -1);
	CHECK_INT(imap_datetime_parse("01-Jan-2024 10:00:00 +0100", 26, &t, &tz), 0);
	CHECK_INT(t, 1704099600);
	CHECK_INT(tz, 60);
	CHECK_INT(imap_datetime_parse(" 1-Jan-2024 10:00:00 -0130", 26, &t, &tz), 0);
	CHECK_INT(t, 1704067200 + 10 * 3600 + 90 * 60);
	CHECK_INT(tz, -90);
	CHECK_INT(imap_datetime_parse("1-Jan-2024 10:00:00 +0000", 25, &t, NULL), 0);
	CHECK_INT(t, 1704103200);
	CHECK_INT(imap_datetime_parse("01-Jan-2024 24:00:00 +0000", 26, &t, &tz), -1);
	CHECK_INT(imap_datetime_parse("01-Jan-2024 10:00:00 0100", 25, &t, &tz), -1);
	CHECK_INT(imap_datetime_parse("01-Jan-2024 10:00:00 +01000", 27, &t, &tz), -1);
	CHECK_INT(imap_datetime_parse("01-Jan-2024", 11, &t, &tz), -1);
	CHECK_INT(imap_datetime_parse("31-Dec-1969 23:59:59 +0000", 26, &t, &tz), 0);
	CHECK_INT(t, -1);
}

TEST(seqsets)
{
	struct imap_parser *p;
	const struct imap_cmd *c = parse_one(&p, "A1 FETCH 1:3,7,10:*,*:20,4294967295 FLAGS\r\n");
	CHECK(c != NULL);
	if (c) {
		const struct imap_seqset *s = &c->u.fetch.set;
		CHECK_INT(s->count, 5);
		CHECK_INT(s->ranges[2].hi, IMAP_SEQ_STAR);
		CHECK(imap_seqset_contains(s, 2, 100));
		CHECK(!imap_seqset_contains(s, 5, 100));
		CHECK(imap_seqset_contains(s, 7, 100));
		CHECK(imap_seqset_contains(s, 50, 100));
		CHECK(imap_seqset_contains(s, 15, 8));	/* *:20 with * = 8 is 8:20 */
		CHECK(imap_seqset_contains(s, 4294967295u, 100));
	}
	imap_parser_free(&p);
	PARSE("A1 FETCH 4294967296 FLAGS\r\nA2 FETCH 1,,2 FLAGS\r\nA3 FETCH 01 FLAGS\r\n"
	      "A4 FETCH 1: FLAGS\r\nA5 FETCH $,1 FLAGS\r\nA6 FETCH -1 FLAGS\r\n", &AUTH,
	      "ERR A1 BAD pos=9: FETCH: invalid sequence set\n"
	      "ERR A2 BAD pos=9: FETCH: invalid sequence set\n"
	      "ERR A3 BAD pos=9: FETCH: invalid sequence set\n"
	      "ERR A4 BAD pos=9: FETCH: invalid sequence set\n"
	      "ERR A5 BAD pos=9: FETCH: invalid sequence set\n"
	      "ERR A6 BAD pos=9: FETCH: invalid sequence set\n");
}

TEST(arg_tree)
{
	struct imap_parser *p;
	const struct imap_cmd *c = parse_one(&p, "A1 STORE 1 FLAGS (\\Seen nil \"q\")\r\n");
	CHECK(c == NULL);	/* "q" is not a flag */
	imap_parser_free(&p);
	c = parse_one(&p, "A1 SEARCH HEADER \"X\" nil\r\n");
	CHECK(c != NULL);
	if (c) {
		const struct imap_arg *a = c->args;
		CHECK(imap_arg_is_atom(a, "header"));
		CHECK(imap_arg_is_string(a->next));
		CHECK_INT(a->next->type, IMAP_ARG_QUOTED);
		CHECK_INT(a->next->next->type, IMAP_ARG_NIL);
		CHECK_INT(a->next->next->pos, 21);
		CHECK_STR(c->u.search.root->child->str, "nil");
	}
	imap_parser_free(&p);
	CHECK_STR(imap_cmd_name(IMAP_CMD_GETQUOTAROOT), "GETQUOTAROOT");
}

/* ---- response writer ------------------------------------------------------------- */

TEST(writer_strings)
{
	struct buf b = BUF_INIT;
	imap_write_astring(&b, "INBOX", 5);
	buf_putc(&b, ' ');
	imap_write_astring(&b, "a b", 3);
	buf_putc(&b, ' ');
	imap_write_astring(&b, "", 0);
	buf_putc(&b, ' ');
	imap_write_astring(&b, "nil", 3);
	buf_putc(&b, ' ');
	imap_write_astring(&b, "[Gmail]/Sent", 12);
	buf_putc(&b, ' ');
	imap_write_astring(&b, "say \"hi\\\"", 9);
	buf_putc(&b, ' ');
	imap_write_astring(&b, "a\r\nb", 4);
	buf_putc(&b, ' ');
	imap_write_astring(&b, "caf\xc3\xa9", 5);
	buf_putc(&b, ' ');
	imap_write_string(&b, "atom", 4);
	buf_putc(&b, ' ');
	imap_write_nstring(&b, NULL, 0);
	buf_putc(&b, ' ');
	imap_write_nstring(&b, "x", 1);
	buf_putc(&b, ' ');
	imap_write_quoted(&b, "a\rb\n\"", 5);
	CHECK_STR(buf_cstr(&b), "INBOX \"a b\" \"\" \"nil\" [Gmail]/Sent \"say \\\"hi\\\\\\\"\" "
		  "{4}\r\na\r\nb {5}\r\ncaf\xc3\xa9 \"atom\" NIL \"x\" \"ab\\\"\"");
	buf_reset(&b);
	char big[IMAP_WRITE_QUOTED_MAX];
	memset(big, 'a', sizeof(big));
	imap_write_astring(&b, big, sizeof(big));
	CHECK(strncmp(buf_cstr(&b), "{1024}\r\naaaa", 12) == 0);
	CHECK_INT(b.len, 8 + sizeof(big));
	buf_free(&b);
}

TEST(writer_roundtrip)
{
	/* whatever the writer makes of a string parses back to the same bytes */
	static const char *const samples[] = {
		"plain", "with space", "", "NIL", "q\"uote", "back\\slash", "crlf\r\nin",
		"8bit \xff\xfe", "(paren)", "{5}", "%*", "]x", "\t",
	};
	for (size_t i = 0; i < sizeof(samples) / sizeof(samples[0]); i++) {
		struct buf in = BUF_INIT;
		buf_appends(&in, "A1 LOGIN ");
		imap_write_astring(&in, samples[i], strlen(samples[i]));
		buf_putc(&in, ' ');
		imap_write_string(&in, samples[i], strlen(samples[i]));
		buf_appends(&in, "\r\n");
		struct imap_parser *p = imap_parser_new();
		size_t off = 0, used;
		int ev = IMAP_NEED_MORE;
		while (off < in.len) {
			ev = imap_parser_feed(p, in.ptr + off, in.len - off, &used);
			off += used;
			if (ev == IMAP_COMMAND || ev == IMAP_ERROR)
				break;
		}
		CHECK_INT(ev, IMAP_COMMAND);
		if (ev == IMAP_COMMAND) {
			CHECK_STR(imap_parser_command(p)->u.login.user, samples[i]);
			CHECK_STR(imap_parser_command(p)->u.login.password, samples[i]);
		}
		imap_parser_free(&p);
		buf_free(&in);
	}
}

TEST(writer_misc)
{
	struct buf b = BUF_INIT;
	imap_write_datetime(&b, 1704099600, 60);
	buf_putc(&b, ' ');
	imap_write_datetime(&b, 1704099600, -330);
	buf_putc(&b, ' ');
	imap_write_datetime(&b, -1, 0);
	CHECK_STR(buf_cstr(&b), "\"01-Jan-2024 10:00:00 +0100\" \"01-Jan-2024 03:30:00 -0530\" "
		  "\"31-Dec-1969 23:59:59 +0000\"");
	/* and back */
	time_t t;
	int tz;
	CHECK_INT(imap_datetime_parse(b.ptr + 1, 26, &t, &tz), 0);
	CHECK_INT(t, 1704099600);
	CHECK_INT(tz, 60);

	buf_reset(&b);
	static const char *const flags[] = { "\\Seen", "$Junk" };
	imap_write_flags(&b, flags, 2);
	buf_putc(&b, ' ');
	imap_write_flags(&b, flags, 0);
	CHECK_STR(buf_cstr(&b), "(\\Seen $Junk) ()");

	buf_reset(&b);
	static const uint32_t uids[] = { 1, 2, 3, 3, 7, 9, 10, 11, 4294967294u, 4294967295u };
	imap_write_seqset(&b, uids, 10);
	buf_putc(&b, ' ');
	imap_write_seqset(&b, uids + 4, 1);
	imap_write_seqset(&b, uids, 0);
	CHECK_STR(buf_cstr(&b), "1:3,7,9:11,4294967294:4294967295 7");

	buf_reset(&b);
	imap_write_untagged(&b, "%u EXISTS", 23u);
	imap_write_tagged(&b, "A1", "OK", "READ-WRITE", "SELECT completed");
	imap_write_tagged(&b, NULL, "OK", NULL, "ready");
	struct imap_error e = { "A2", IMAP_RESP_NO, "TOOBIG", "message too big", 5, 0 };
	imap_write_error(&b, &e);
	e.tag = NULL;
	e.resp = IMAP_RESP_BAD;
	e.code = NULL;
	imap_write_error(&b, &e);
	e.fatal = 1;
	imap_write_error(&b, &e);
	CHECK_STR(buf_cstr(&b), "* 23 EXISTS\r\nA1 OK [READ-WRITE] SELECT completed\r\n* OK ready\r\n"
		  "A2 NO [TOOBIG] message too big\r\n* BAD message too big\r\n"
		  "* BYE message too big\r\n");
	buf_free(&b);
}

TEST(writer_error_from_parser)
{
	struct imap_parser *p = imap_parser_new();
	size_t used;
	struct buf b = BUF_INIT;
	CHECK_INT(imap_parser_feed(p, "T9 BOGUS\r\n", 10, &used), IMAP_ERROR);
	imap_write_error(&b, imap_parser_error(p));
	CHECK_STR(buf_cstr(&b), "T9 BAD unknown command\r\n");
	imap_parser_free(&p);
	buf_free(&b);
}

int main(void)
{
	RUN(rfc3501_session);
	RUN(rfc3501_commands);
	RUN(rfc3501_append);
	RUN(multiappend);
	RUN(client_imaplib);
	RUN(client_mbsync);
	RUN(client_thunderbird);
	RUN(client_k9_mutt_imapsync);
	RUN(fetch_sections_typed);
	RUN(fetch_bad);
	RUN(store_variants);
	RUN(search_keys);
	RUN(sort_thread_within);
	RUN(search_bad);
	RUN(nesting_limits);
	RUN(args_limit);
	RUN(list_extended);
	RUN(admin_commands);
	RUN(literals_sync_and_nonsync);
	RUN(literal_reject);
	RUN(literal_limits);
	RUN(literal_plus_huge_message);
	RUN(append_1mb_in_chunks);
	RUN(append_bad);
	RUN(garbage_then_next_command);
	RUN(line_too_long);
	RUN(preauth_limits);
	RUN(id_large_preauth);
	RUN(mode_switch);
	RUN(idle_done);
	RUN(pending_and_positions);
	RUN(sasl_multi_step);
	RUN(sync_commands);
	RUN(sync_limits);
	RUN(dates);
	RUN(seqsets);
	RUN(arg_tree);
	RUN(writer_strings);
	RUN(writer_roundtrip);
	RUN(writer_misc);
	RUN(writer_error_from_parser);
	return test_done();
}
