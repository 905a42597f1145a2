/* test_mime.c: unit tests for src/proto/mime (message parser, ENVELOPE,
 * BODY/BODYSTRUCTURE, sections, search, dates).
 *
 * Expected ENVELOPE and BODYSTRUCTURE strings were written by hand from
 * the RFC 3501 grammar (section 9: envelope, body, body-type-*, body-ext-*)
 * and the byte counts checked on the sample messages below.
 */
#include "proto/mime/mime.h"
#include "proto/mime/mime-private.h"

#include "lib/xalloc.h"

#include "test.h"

/* ---- samples ------------------------------------------------------------- */

/* RFC 3501 6.3.11's APPEND example. */
static const char plain_msg[] =
	"Date: Mon, 7 Feb 1994 21:52:25 -0800 (PST)\r\n"
	"From: Fred Foobar <foobar@Blurdybloop.example>\r\n"
	"Subject: afternoon meeting\r\n"
	"To: mooch@owatagu.siam.edu.example\r\n"
	"Message-Id: <B27397-0100000@Blurdybloop.example>\r\n"
	"MIME-Version: 1.0\r\n"
	"Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n"
	"\r\n"
	"Hello Joe, do you think we can meet at 3:30 tomorrow?\r\n";

/* multipart/mixed: an alternative (QP latin-1 text + 8-bit html) and a
 * base64 attachment with every Content-* field and an RFC 2231 name. */
static const char mixed_msg[] =
	"From: \"Doe, John\" <john@example.com>, jane@example.org (Jane Roe)\r\n"
	"To: undisclosed-recipients:;\r\n"
	"Cc: Team: a@x.org, B <b@y.org>;, c@z.org\r\n"
	"Subject: =?UTF-8?B?SGVsbG8gV8O2cmxk?= =?ISO-8859-1?Q?_caf=E9?=\r\n"
	"MIME-Version: 1.0\r\n"
	"Content-Type: multipart/mixed;\r\n boundary=\"outer\"\r\n"
	"\r\n"
	"This is the preamble.\r\n"
	"--outer\r\n"
	"Content-Type: multipart/alternative; boundary=inner\r\n"
	"\r\n"
	"--inner\r\n"
	"Content-Type: text/plain; charset=iso-8859-1\r\n"
	"Content-Transfer-Encoding: quoted-printable\r\n"
	"\r\n"
	"Caf=E9 cr=E8me\r\n"
	"--inner\r\n"
	"Content-Type: text/html; charset=utf-8\r\n"
	"\r\n"
	"<p>Caf\xc3\xa9</p>\r\n"
	"--inner--\r\n"
	"--outer\r\n"
	"Content-Type: application/pdf; name=\"report.pdf\"\r\n"
	"Content-Transfer-Encoding: base64\r\n"
	"Content-Disposition: attachment;\r\n filename*0*=UTF-8''r%C3%A9sum;\r\n filename*1=\"e.pdf\"\r\n"
	"Content-ID: <part3@example.com>\r\n"
	"Content-Description: The report\r\n"
	"Content-Language: en, de\r\n"
	"Content-Location: http://example.com/r.pdf\r\n"
	"Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==\r\n"
	"\r\n"
	"JVBERi0xLjQK\r\n"
	"--outer--\r\n"
	"epilogue\r\n";

/* A forwarded message: part 2 is message/rfc822 with a multipart body. */
static const char nested_msg[] =
	"From: a@b.c\r\nSubject: fwd\r\n"
	"Content-Type: multipart/mixed; boundary=b1\r\n\r\n"
	"--b1\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
	"--b1\r\nContent-Type: message/rfc822\r\n\r\n"
	"From: Inner <inner@example.net>\r\nSubject: inner msg\r\n"
	"Date: 1 Jan 2020 10:00 +0100\r\n"
	"Content-Type: multipart/alternative; boundary=b2\r\n\r\n"
	"--b2\r\nContent-Type: text/plain\r\n\r\ninner text\r\n"
	"--b2\r\nContent-Type: text/html\r\n\r\n<b>inner</b>\r\n--b2--\r\n"
	"--b1--\r\n";

static struct mime_message *parse_str(const char *s)
{
	return mime_parse(s, strlen(s));
}

static char *envelope(const struct mime_message *m)
{
	struct buf b = BUF_INIT;
	mime_envelope_write(m, &b);
	return buf_release(&b);
}

static char *bodystructure(const struct mime_message *m, int ext)
{
	struct buf b = BUF_INIT;
	mime_bodystructure_write(m, ext, &b);
	return buf_release(&b);
}

/* BODY[spec] as a new string; "ERR:<code>" when it fails. */
static char *section(const struct mime_message *m, const char *spec)
{
	struct mime_section sec;
	struct terr err;
	struct buf scratch = BUF_INIT, out = BUF_INIT;
	const char *p;
	size_t len;
	if (mime_section_parse(spec, strlen(spec), &sec, NULL, &err) < 0 ||
	    mime_section_fetch(m, &sec, &scratch, &p, &len, &err) < 0)
		buf_printf(&out, "ERR:%s", terr_code_name(err.code));
	else
		buf_append(&out, p, len);
	mime_section_clear(&sec);
	buf_free(&scratch);
	return buf_release(&out);
}

#define CHECK_OWNED_STR(expr, expected) do { char *s_ = (expr); \
	CHECK_STR(s_, expected); free(s_); } while (0)

/* ---- header field scanner --------------------------------------------- */

static const char hdr_sample[] =
	"From: a\r\n b\r\nX:\r\nbroken line\r\n\tcont\r\nY : z\n\r\nbody";

TEST(header_fields_whole)
{
	const char *d = hdr_sample;
	size_t len = strlen(d), pos = 0;
	struct mime_field f;

	CHECK_INT(mime_header_next(d, len, &pos, 1, &f), 1);
	CHECK_INT(f.off, 0);
	CHECK_INT(f.len, 13);
	CHECK_INT(f.name_len, 4);
	CHECK_MEM(d + f.value_off, f.value_len, " a\r\n b", 6);
	CHECK_INT(mime_header_next(d, len, &pos, 1, &f), 1);
	CHECK_INT(f.name_len, 1);
	CHECK_INT(f.value_len, 0);
	CHECK_INT(mime_header_next(d, len, &pos, 1, &f), 1);
	CHECK_INT(f.name_len, 0);	/* no colon: broken, kept */
	CHECK_INT(f.len, strlen("broken line\r\n\tcont\r\n"));
	CHECK_INT(mime_header_next(d, len, &pos, 1, &f), 1);
	CHECK_INT(f.name_len, 1);	/* "Y " trimmed */
	CHECK_MEM(d + f.value_off, f.value_len, " z", 2);
	CHECK_INT(mime_header_next(d, len, &pos, 1, &f), 0);
	CHECK_STR(d + pos, "body");
}

/* The same fields when the bytes arrive one at a time. */
TEST(header_fields_bytewise)
{
	const char *d = hdr_sample;
	size_t len = strlen(d);
	struct mime_field whole[8], inc;
	size_t nwhole = 0, pos = 0, end_whole;
	int r;
	while ((r = mime_header_next(d, len, &pos, 1, &whole[nwhole])) == 1)
		nwhole++;
	end_whole = pos;
	CHECK_INT(nwhole, 4);

	size_t have = 0, n = 0;
	pos = 0;
	for (;;) {
		r = mime_header_next(d, have, &pos, have == len, &inc);
		if (r == MIME_NEED_MORE) {
			CHECK(have < len);
			have++;
			continue;
		}
		if (r == 0)
			break;
		CHECK(n < nwhole);
		CHECK(memcmp(&inc, &whole[n], sizeof(inc)) == 0);
		n++;
	}
	CHECK_INT(n, nwhole);
	CHECK_INT(pos, end_whole);

	/* A complete line may still be folded: need the next byte. */
	pos = 0;
	CHECK_INT(mime_header_next("A: b\r\n", 6, &pos, 0, &inc), MIME_NEED_MORE);
	CHECK_INT(pos, 0);
	CHECK_INT(mime_header_next("A: b\r\nC", 7, &pos, 0, &inc), 1);
	CHECK_INT(pos, 6);
	pos = 0;
	CHECK_INT(mime_header_next("\r", 1, &pos, 0, &inc), MIME_NEED_MORE);
	CHECK_INT(mime_header_next("\r\n", 2, &pos, 0, &inc), 0);
	CHECK_INT(pos, 2);
}

TEST(header_limits)
{
	/* a line over MAX_HEADER_LINE is kept but not parsed */
	struct buf b = BUF_INIT;
	buf_appends(&b, "Subject: ");
	for (int i = 0; i < MAX_HEADER_LINE; i++)
		buf_putc(&b, 'x');
	buf_appends(&b, "\r\nFrom: a@b\r\n\r\nbody\r\n");
	size_t pos = 0;
	struct mime_field f;
	CHECK_INT(mime_header_next(b.ptr, b.len, &pos, 1, &f), 1);
	CHECK(f.too_long);
	struct mime_message *m = mime_parse(b.ptr, b.len);
	CHECK_OWNED_STR(envelope(m),
		"(NIL NIL ((NIL NIL \"a\" \"b\")) ((NIL NIL \"a\" \"b\")) "
		"((NIL NIL \"a\" \"b\")) NIL NIL NIL NIL NIL)");
	char *h = section(m, "HEADER");
	CHECK_INT(strlen(h), b.len - 6);
	free(h);
	mime_message_free(&m);
	buf_free(&b);

	/* no empty line: all header, and the body is empty */
	m = parse_str("Subject: x\r\nFrom: y");
	CHECK_INT(m->root->hdr_len, 19);
	CHECK_INT(m->root->body_len, 0);
	CHECK_OWNED_STR(section(m, "TEXT"), "");
	CHECK_OWNED_STR(section(m, "HEADER.FIELDS (FROM)"), "From: y\r\n");
	mime_message_free(&m);
}

/* ---- ENVELOPE / BODYSTRUCTURE ------------------------------------------ */

TEST(plain_text)
{
	struct mime_message *m = parse_str(plain_msg);
	CHECK_OWNED_STR(envelope(m),
		"(\"Mon, 7 Feb 1994 21:52:25 -0800 (PST)\" \"afternoon meeting\" "
		"((\"Fred Foobar\" NIL \"foobar\" \"Blurdybloop.example\")) "
		"((\"Fred Foobar\" NIL \"foobar\" \"Blurdybloop.example\")) "
		"((\"Fred Foobar\" NIL \"foobar\" \"Blurdybloop.example\")) "
		"((NIL NIL \"mooch\" \"owatagu.siam.edu.example\")) NIL NIL NIL "
		"\"<B27397-0100000@Blurdybloop.example>\")");
	CHECK_OWNED_STR(bodystructure(m, 0),
		"(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 55 1)");
	CHECK_OWNED_STR(bodystructure(m, 1),
		"(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 55 1 "
		"NIL NIL NIL NIL)");
	const char *body = strstr(plain_msg, "\r\n\r\n") + 4;
	CHECK_OWNED_STR(section(m, ""), plain_msg);
	CHECK_OWNED_STR(section(m, "TEXT"), body);
	CHECK_OWNED_STR(section(m, "1"), body);
	char *hdr = xstrndup(plain_msg, (size_t)(body - plain_msg));
	CHECK_OWNED_STR(section(m, "HEADER"), hdr);
	CHECK_OWNED_STR(section(m, "1.MIME"), hdr);	/* part 1 = the message */
	free(hdr);
	CHECK_OWNED_STR(section(m, "HEADER.FIELDS (From to)"),
		"From: Fred Foobar <foobar@Blurdybloop.example>\r\n"
		"To: mooch@owatagu.siam.edu.example\r\n\r\n");
	CHECK_OWNED_STR(section(m, "HEADER.FIELDS.NOT (From To Date Message-ID)"),
		"Subject: afternoon meeting\r\nMIME-Version: 1.0\r\n"
		"Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n\r\n");
	CHECK_OWNED_STR(section(m, "HEADER.FIELDS (X-None)"), "\r\n");
	CHECK_OWNED_STR(section(m, "2"), "ERR:notfound");
	CHECK_OWNED_STR(section(m, "1.1"), "ERR:notfound");
	CHECK_OWNED_STR(section(m, "1.HEADER"), "ERR:notfound");
	mime_message_free(&m);
}

TEST(multipart_mixed_alternative)
{
	struct mime_message *m = parse_str(mixed_msg);
	CHECK_INT(m->nparts, 5);
	CHECK_OWNED_STR(envelope(m),
		"(NIL \"=?UTF-8?B?SGVsbG8gV8O2cmxk?= =?ISO-8859-1?Q?_caf=E9?=\" "
		"((\"Doe, John\" NIL \"john\" \"example.com\")(\"Jane Roe\" NIL \"jane\" \"example.org\")) "
		"((\"Doe, John\" NIL \"john\" \"example.com\")(\"Jane Roe\" NIL \"jane\" \"example.org\")) "
		"((\"Doe, John\" NIL \"john\" \"example.com\")(\"Jane Roe\" NIL \"jane\" \"example.org\")) "
		"((NIL NIL \"undisclosed-recipients\" NIL)(NIL NIL NIL NIL)) "
		"((NIL NIL \"Team\" NIL)(NIL NIL \"a\" \"x.org\")(\"B\" NIL \"b\" \"y.org\")"
		"(NIL NIL NIL NIL)(NIL NIL \"c\" \"z.org\")) NIL NIL NIL)");
	CHECK_OWNED_STR(bodystructure(m, 0),
		"(((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"iso-8859-1\") NIL NIL \"QUOTED-PRINTABLE\" 14 1)"
		"(\"TEXT\" \"HTML\" (\"CHARSET\" \"utf-8\") NIL NIL \"7BIT\" 12 1) \"ALTERNATIVE\")"
		"(\"APPLICATION\" \"PDF\" (\"NAME\" \"report.pdf\") \"<part3@example.com>\" "
		"\"The report\" \"BASE64\" 12) \"MIXED\")");
	CHECK_OWNED_STR(bodystructure(m, 1),
		"(((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"iso-8859-1\") NIL NIL \"QUOTED-PRINTABLE\" 14 1 NIL NIL NIL NIL)"
		"(\"TEXT\" \"HTML\" (\"CHARSET\" \"utf-8\") NIL NIL \"7BIT\" 12 1 NIL NIL NIL NIL) "
		"\"ALTERNATIVE\" (\"BOUNDARY\" \"inner\") NIL NIL NIL)"
		"(\"APPLICATION\" \"PDF\" (\"NAME\" \"report.pdf\") \"<part3@example.com>\" "
		"\"The report\" \"BASE64\" 12 \"Q2hlY2sgSW50ZWdyaXR5IQ==\" "
		"(\"ATTACHMENT\" (\"FILENAME*\" \"UTF-8''r%C3%A9sume.pdf\")) (\"en\" \"de\") "
		"\"http://example.com/r.pdf\") \"MIXED\" (\"BOUNDARY\" \"outer\") NIL NIL NIL)");
	CHECK_OWNED_STR(section(m, "1.1"), "Caf=E9 cr=E8me");
	CHECK_OWNED_STR(section(m, "1.2"), "<p>Caf\xc3\xa9</p>");
	CHECK_OWNED_STR(section(m, "2"), "JVBERi0xLjQK");
	CHECK_OWNED_STR(section(m, "1.1.MIME"),
		"Content-Type: text/plain; charset=iso-8859-1\r\n"
		"Content-Transfer-Encoding: quoted-printable\r\n\r\n");
	char *p1 = section(m, "1");	/* a multipart part: its whole body */
	CHECK(strncmp(p1, "--inner\r\n", 9) == 0);
	CHECK(strlen(p1) > 9 && strcmp(p1 + strlen(p1) - 9, "--inner--") == 0);
	free(p1);
	CHECK_OWNED_STR(section(m, "3"), "ERR:notfound");
	CHECK_OWNED_STR(section(m, "1.3"), "ERR:notfound");
	CHECK_OWNED_STR(section(m, "2.1"), "ERR:notfound");
	CHECK_OWNED_STR(section(m, "1.TEXT"), "ERR:notfound");
	CHECK_OWNED_STR(section(m, "HEADER.FIELDS (SUBJECT)"),
		"Subject: =?UTF-8?B?SGVsbG8gV8O2cmxk?= =?ISO-8859-1?Q?_caf=E9?=\r\n\r\n");

	/* RFC 2231 value decoded for the caller */
	const struct mime_part *att = m->root->children->next;
	struct buf v = BUF_INIT;
	CHECK_INT(mime_param_get(att->disp_params, "filename", &v), 1);
	CHECK_STR(buf_cstr(&v), "r\xc3\xa9sume.pdf");
	buf_reset(&v);
	CHECK_INT(mime_param_get(att->params, "NAME", &v), 1);
	CHECK_STR(buf_cstr(&v), "report.pdf");
	CHECK_INT(mime_param_get(att->params, "charset", &v), 0);
	buf_free(&v);
	mime_message_free(&m);
}

TEST(nested_rfc822)
{
	struct mime_message *m = parse_str(nested_msg);
	const char *inner_env =
		"(\"1 Jan 2020 10:00 +0100\" \"inner msg\" "
		"((\"Inner\" NIL \"inner\" \"example.net\")) "
		"((\"Inner\" NIL \"inner\" \"example.net\")) "
		"((\"Inner\" NIL \"inner\" \"example.net\")) NIL NIL NIL NIL NIL)";
	struct buf want = BUF_INIT;
	buf_printf(&want,
		"((\"TEXT\" \"PLAIN\" NIL NIL NIL \"7BIT\" 12 1 NIL NIL NIL NIL)"
		"(\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7BIT\" 234 %s "
		"((\"TEXT\" \"PLAIN\" NIL NIL NIL \"7BIT\" 10 1 NIL NIL NIL NIL)"
		"(\"TEXT\" \"HTML\" NIL NIL NIL \"7BIT\" 12 1 NIL NIL NIL NIL) "
		"\"ALTERNATIVE\" (\"BOUNDARY\" \"b2\") NIL NIL NIL) 14 NIL NIL NIL NIL) "
		"\"MIXED\" (\"BOUNDARY\" \"b1\") NIL NIL NIL)", inner_env);
	CHECK_OWNED_STR(bodystructure(m, 1), buf_cstr(&want));
	buf_reset(&want);
	buf_printf(&want,
		"((\"TEXT\" \"PLAIN\" NIL NIL NIL \"7BIT\" 12 1)"
		"(\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7BIT\" 234 %s "
		"((\"TEXT\" \"PLAIN\" NIL NIL NIL \"7BIT\" 10 1)"
		"(\"TEXT\" \"HTML\" NIL NIL NIL \"7BIT\" 12 1) \"ALTERNATIVE\") 14) \"MIXED\")",
		inner_env);
	CHECK_OWNED_STR(bodystructure(m, 0), buf_cstr(&want));
	buf_free(&want);

	const char *inner = strstr(nested_msg, "From: Inner");
	const char *inner_body = strstr(inner, "\r\n\r\n") + 4;
	char *s = section(m, "2");
	CHECK_INT(strlen(s), 234);
	CHECK(strncmp(s, inner, 234) == 0);
	free(s);
	s = section(m, "2.HEADER");
	CHECK_INT(strlen(s), (size_t)(inner_body - inner));
	CHECK(strncmp(s, inner, strlen(s)) == 0);
	free(s);
	s = section(m, "2.TEXT");
	CHECK(strncmp(s, "--b2\r\n", 6) == 0 && strlen(s) == 234 - (size_t)(inner_body - inner));
	free(s);
	CHECK_OWNED_STR(section(m, "2.1"), "inner text");
	CHECK_OWNED_STR(section(m, "2.2"), "<b>inner</b>");
	CHECK_OWNED_STR(section(m, "2.1.MIME"), "Content-Type: text/plain\r\n\r\n");
	CHECK_OWNED_STR(section(m, "2.MIME"), "Content-Type: message/rfc822\r\n\r\n");
	CHECK_OWNED_STR(section(m, "2.HEADER.FIELDS (Date subject)"),
		"Subject: inner msg\r\nDate: 1 Jan 2020 10:00 +0100\r\n\r\n");
	CHECK_OWNED_STR(section(m, "2.3"), "ERR:notfound");
	CHECK_OWNED_STR(section(m, "1.1"), "ERR:notfound");
	mime_message_free(&m);

	/* a top-level message/rfc822: part 1 is the enclosed message, 1.1 its
	 * body, 1.HEADER its header */
	m = parse_str("Content-Type: message/rfc822\r\n\r\nSubject: in\r\n\r\nhi\r\n");
	CHECK_OWNED_STR(section(m, "1"), "Subject: in\r\n\r\nhi\r\n");
	CHECK_OWNED_STR(section(m, "1.1"), "hi\r\n");
	CHECK_OWNED_STR(section(m, "1.HEADER"), "Subject: in\r\n\r\n");
	CHECK_OWNED_STR(section(m, "1.TEXT"), "hi\r\n");
	CHECK_OWNED_STR(bodystructure(m, 0),
		"(\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7BIT\" 19 "
		"(NIL \"in\" NIL NIL NIL NIL NIL NIL NIL NIL) "
		"(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" 4 1) 3)");
	mime_message_free(&m);
}

TEST(digest_defaults)
{
	struct mime_message *m = parse_str(
		"Content-Type: multipart/digest; boundary=d\r\n\r\n"
		"--d\r\n\r\nFrom: a@b\r\nSubject: one\r\n\r\nbody1\r\n"
		"--d\r\nContent-Type: text/plain\r\n\r\nnot a message\r\n--d--\r\n");
	CHECK_OWNED_STR(bodystructure(m, 0),
		"((\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7BIT\" 32 "
		"(NIL \"one\" ((NIL NIL \"a\" \"b\")) ((NIL NIL \"a\" \"b\")) "
		"((NIL NIL \"a\" \"b\")) NIL NIL NIL NIL NIL) "
		"(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" 5 1) 4)"
		"(\"TEXT\" \"PLAIN\" NIL NIL NIL \"7BIT\" 13 1) \"DIGEST\")");
	CHECK_OWNED_STR(section(m, "1.1"), "body1");
	mime_message_free(&m);
}

TEST(addresses)
{
	struct mime_message *m = parse_str(
		"Subject: \r\n"
		"From: <>\r\n"
		"To: \"john \\\"q\\\" doe\"@example.com, root, Mary <mary@x.org (home)>,"
		" <@r1,@r2:u@h>, (just a comment), John Q. Public <jqp@x>\r\n"
		"Cc: ,,\r\n"
		"Bcc: a@b.c (Comment \\) here), \"Qu\\\\ote\" <q@b.c>, Grp:;\r\n"
		"In-Reply-To: <a@b>\r\n\r\n");
	CHECK_OWNED_STR(envelope(m),
		"(NIL \"\" ((NIL NIL \"\" \"\")) ((NIL NIL \"\" \"\")) ((NIL NIL \"\" \"\")) "
		"((NIL NIL \"\\\"john \\\\\\\"q\\\\\\\" doe\\\"\" \"example.com\")"
		"(NIL NIL \"root\" \"\")(\"Mary\" NIL \"mary\" \"x.org\")"
		"(NIL \"@r1,@r2\" \"u\" \"h\")(\"John Q. Public\" NIL \"jqp\" \"x\")) "
		"NIL "
		"((\"Comment ) here\" NIL \"a\" \"b.c\")(\"Qu\\\\ote\" NIL \"q\" \"b.c\")"
		"(NIL NIL \"Grp\" NIL)(NIL NIL NIL NIL)) "
		"\"<a@b>\" NIL)");
	mime_message_free(&m);

	/* broken: unclosed angle and quote, route without brackets */
	struct mime_addr *a = mime_addr_parse("Bob <bob@x", 10);
	CHECK(a && !a->next);
	CHECK_STR(a->name, "Bob");
	CHECK_STR(a->mailbox, "bob");
	CHECK_STR(a->host, "x");
	mime_addr_free(a);
	a = mime_addr_parse("\"unclosed <x@y>", 15);
	CHECK(a && !a->next && a->host && a->mailbox);
	mime_addr_free(a);
	a = mime_addr_parse("@a,@b:x@y", 9);
	CHECK(a && a->host && a->next && a->next->host);	/* no group */
	mime_addr_free(a);
	CHECK(mime_addr_parse("  (only) ", 9) == NULL);
	/* a huge list is read up to MIME_MAX_ADDRESS_LIST, whole addresses */
	struct buf big = BUF_INIT;
	while (big.len < MIME_MAX_ADDRESS_LIST + 1000)
		buf_appends(&big, "a@b.c, ");
	a = mime_addr_parse(big.ptr, big.len);
	size_t n = 0;
	const struct mime_addr *last = NULL;
	for (const struct mime_addr *q = a; q; q = q->next, n++)
		last = q;
	CHECK_INT(n, (MIME_MAX_ADDRESS_LIST - 6) / 7 + 1);
	CHECK(last && strcmp(last->mailbox, "a") == 0 && strcmp(last->host, "b.c") == 0);
	mime_addr_free(a);
	buf_free(&big);
	/* group left open: closed at the end */
	a = mime_addr_parse("g: x@y", 6);
	CHECK(a && !a->host && a->next && a->next->next &&
	      !a->next->next->mailbox && !a->next->next->next);
	mime_addr_free(a);
}

TEST(missing_headers_and_quoting)
{
	struct mime_message *m = parse_str("\r\nbody only\r\n");
	CHECK_OWNED_STR(envelope(m), "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)");
	CHECK_OWNED_STR(bodystructure(m, 1),
		"(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" 11 1 "
		"NIL NIL NIL NIL)");
	CHECK_OWNED_STR(section(m, "HEADER"), "\r\n");
	mime_message_free(&m);

	m = mime_parse("", 0);
	CHECK_OWNED_STR(envelope(m), "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)");
	CHECK_OWNED_STR(bodystructure(m, 0),
		"(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" 0 0)");
	CHECK_OWNED_STR(section(m, ""), "");
	mime_message_free(&m);

	/* quotes and backslashes escaped; 8-bit and controls as literal;
	 * NUL dropped */
	static const char q[] =
		"Subject: a \"b\" c\\d\r\nIn-Reply-To: caf\xc3\xa9 x\x01y\r\n"
		"Message-ID: nul\0byte\r\n\r\n";
	m = mime_parse(q, sizeof(q) - 1);
	CHECK_OWNED_STR(envelope(m),
		"(NIL \"a \\\"b\\\" c\\\\d\" NIL NIL NIL NIL NIL NIL "
		"{9}\r\ncaf\xc3\xa9 x\x01y \"nulbyte\")");
	mime_message_free(&m);
}

TEST(bare_lf_and_no_body)
{
	struct mime_message *m = parse_str("From: x@y\nSubject: bare\n\nline1\nline2\n");
	CHECK_OWNED_STR(envelope(m),
		"(NIL \"bare\" ((NIL NIL \"x\" \"y\")) ((NIL NIL \"x\" \"y\")) "
		"((NIL NIL \"x\" \"y\")) NIL NIL NIL NIL NIL)");
	CHECK_OWNED_STR(bodystructure(m, 0),
		"(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" 12 2)");
	CHECK_OWNED_STR(section(m, "HEADER"), "From: x@y\nSubject: bare\n\n");
	CHECK_OWNED_STR(section(m, "HEADER.FIELDS (subject)"), "Subject: bare\n\n");
	CHECK_OWNED_STR(section(m, "TEXT"), "line1\nline2\n");
	mime_message_free(&m);

	m = parse_str("Content-Type: multipart/mixed; boundary=x\n\n--x\nContent-Type: text/plain\n\nA\n--x\n\nB\n--x--\n");
	CHECK_OWNED_STR(section(m, "1"), "A");
	CHECK_OWNED_STR(section(m, "2"), "B");
	CHECK_OWNED_STR(section(m, "2.MIME"), "\n");
	mime_message_free(&m);

	m = parse_str("From: x@y\r\nSubject: no body\r\n");
	CHECK_OWNED_STR(bodystructure(m, 1),
		"(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" 0 0 NIL NIL NIL NIL)");
	CHECK_OWNED_STR(section(m, "HEADER"), "From: x@y\r\nSubject: no body\r\n");
	CHECK_OWNED_STR(section(m, "HEADER.FIELDS (Subject)"), "Subject: no body\r\n");
	CHECK_OWNED_STR(section(m, "TEXT"), "");
	mime_message_free(&m);
}

TEST(broken_multiparts)
{
	/* no close delimiter: the last part runs to the end */
	struct mime_message *m = parse_str(
		"Content-Type: multipart/mixed; boundary=zz\r\n\r\n"
		"--zz\r\nContent-Type: text/plain\r\n\r\npart one\r\n--zz\r\n\r\npart two, cut");
	CHECK_OWNED_STR(bodystructure(m, 0),
		"((\"TEXT\" \"PLAIN\" NIL NIL NIL \"7BIT\" 8 1)"
		"(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" 13 1) \"MIXED\")");
	CHECK_OWNED_STR(section(m, "2"), "part two, cut");
	mime_message_free(&m);

	/* an inner multipart cut short ends at the outer boundary */
	m = parse_str(
		"Content-Type: multipart/mixed; boundary=out\r\n\r\n"
		"--out\r\nContent-Type: multipart/alternative; boundary=in\r\n\r\n"
		"--in\r\n\r\nx\r\n"
		"--out\r\n\r\ny\r\n--out--\r\n");
	CHECK_OWNED_STR(section(m, "1.1"), "x");
	CHECK_OWNED_STR(section(m, "2"), "y");
	mime_message_free(&m);

	/* lookalike lines are not delimiters; no part at all gives one empty */
	m = parse_str("Content-Type: multipart/mixed; boundary=q\r\n\r\nnothing\r\n--qq\r\n--q-x\r\n");
	CHECK_OWNED_STR(bodystructure(m, 0),
		"((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" 0 0) \"MIXED\")");
	CHECK_OWNED_STR(section(m, "1"), "");
	mime_message_free(&m);

	/* no boundary parameter: opaque */
	m = parse_str("Content-Type: multipart/mixed\r\n\r\nno boundary here\r\n");
	CHECK_OWNED_STR(bodystructure(m, 0),
		"(\"APPLICATION\" \"OCTET-STREAM\" NIL NIL NIL \"7BIT\" 18)");
	mime_message_free(&m);

	/* delimiter with trailing blanks; empty parts */
	m = parse_str("Content-Type: multipart/mixed; boundary=\"a b\"\r\n\r\n"
		      "--a b \t\r\n--a b\r\n\r\nz\r\n--a b--  junk\r\n");
	CHECK_OWNED_STR(section(m, "1"), "");
	CHECK_OWNED_STR(section(m, "1.MIME"), "");
	CHECK_OWNED_STR(section(m, "2"), "z");
	mime_message_free(&m);

	/* invalid Content-Type: text/plain us-ascii; Content-* with comments */
	m = parse_str("Content-Type: text\r\n"
		      "Content-Transfer-Encoding: (comment) Base64 \r\n"
		      "Content-Disposition: inline\r\n"
		      "Content-Language: (x) en-US\r\n\r\naGVsbG8=\r\n");
	CHECK_OWNED_STR(bodystructure(m, 1),
		"(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL \"BASE64\" 10 1 "
		"NIL (\"INLINE\" NIL) (\"en-US\") NIL)");
	mime_message_free(&m);
}

TEST(content_type_params)
{
	char *type, *sub;
	struct mime_param *p;
	struct buf v = BUF_INIT;
#define CT(s) mime_ctype_parse(s, strlen(s), &type, &sub, &p)
	CHECK_INT(CT("Text/Plain; charset=us-ascii (Plain text)"), 0);
	CHECK_STR(type, "text");
	CHECK_STR(sub, "plain");
	CHECK(p && !p->next);
	CHECK_STR(p->name, "charset");
	CHECK_STR(p->value, "us-ascii");
	free(type); free(sub); mime_params_free(p);

	CHECK_INT(CT("application/octet-stream; name=foo bar.pdf; x=\"q\\\"t\""), 0);
	CHECK_STR(p->value, "foo bar.pdf");
	CHECK_STR(p->next->value, "q\"t");
	free(type); free(sub); mime_params_free(p);

	CHECK_INT(CT("text/plain charset=utf-8 format=flowed"), 0);	/* no ';' */
	CHECK_STR(p->name, "charset");
	CHECK_STR(p->value, "utf-8");
	CHECK_STR(p->next->name, "format");
	free(type); free(sub); mime_params_free(p);

	CHECK_INT(CT("multipart/mixed; boundary==_Part_1;;"), 0);
	CHECK_STR(p->value, "=_Part_1");
	free(type); free(sub); mime_params_free(p);

	/* RFC 2231 section 4.1's example, mixed extended and plain sections */
	CHECK_INT(CT("application/x-stuff;\r\n"
		     " title*0*=us-ascii'en'This%20is%20even%20more%20;"
		     " title*1*=%2A%2A%2Afun%2A%2A%2A%20; title*2=\"isn't it!\""), 0);
	CHECK(p && !p->next);
	CHECK_STR(p->name, "title*");
	CHECK_STR(p->value, "us-ascii'en'This%20is%20even%20more%20%2A%2A%2Afun%2A%2A%2A%20isn%27t%20it!");
	CHECK_INT(mime_param_get(p, "title", &v), 1);
	CHECK_STR(buf_cstr(&v), "This is even more ***fun*** isn't it!");
	free(type); free(sub); mime_params_free(p);

	/* plain continuations; a gap drops the rest; latin-1 charset */
	CHECK_INT(CT("a/b; n*1=\"B\"; n*0=\"A\"; n*3=\"D\"; f*=iso-8859-1''%E9"), 0);
	CHECK_STR(p->name, "n");
	CHECK_STR(p->value, "AB");
	CHECK_STR(p->next->name, "f*");
	buf_reset(&v);
	CHECK_INT(mime_param_get(p, "f", &v), 1);
	CHECK_STR(buf_cstr(&v), "\xc3\xa9");
	CHECK(p->next->next == NULL);
	free(type); free(sub); mime_params_free(p);

	CHECK_INT(CT("text/"), -1);
	CHECK_INT(CT("/plain"), -1);
	CHECK_INT(CT(""), -1);
	CHECK_INT(CT("te xt/plain"), -1);
#undef CT
	/* the parameter cap */
	struct buf big = BUF_INIT;
	buf_appends(&big, "a/b");
	for (int i = 0; i < MIME_MAX_PARAMS + 50; i++)
		buf_printf(&big, "; p%d=v", i);
	CHECK_INT(mime_ctype_parse(big.ptr, big.len, &type, &sub, &p), 0);
	size_t n = 0;
	for (struct mime_param *q = p; q; q = q->next)
		n++;
	CHECK_INT(n, MIME_MAX_PARAMS);
	free(type); free(sub); mime_params_free(p);
	buf_free(&big);
	buf_free(&v);
}

/* ---- limits ------------------------------------------------------------- */

static void nest_multipart(struct buf *b, int levels)
{
	for (int i = 0; i < levels; i++)
		buf_printf(b, "Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n", i, i);
	buf_appends(b, "Content-Type: text/plain\r\n\r\nleaf");
	for (int i = levels - 1; i >= 0; i--)
		buf_printf(b, "\r\n--b%d--", i);
	buf_appends(b, "\r\n");
}

TEST(depth_limit)
{
	struct buf b = BUF_INIT, spec = BUF_INIT;
	nest_multipart(&b, MIME_MAX_DEPTH);
	struct mime_message *m = mime_parse(b.ptr, b.len);
	CHECK_INT(m->nparts, MIME_MAX_DEPTH + 1);
	const struct mime_part *p = m->root;
	while (p->children)
		p = p->children;
	CHECK_INT(p->depth, MIME_MAX_DEPTH);
	CHECK_STR(p->type, "text");
	for (int i = 0; i < MIME_MAX_DEPTH; i++)
		buf_appends(&spec, i ? ".1" : "1");
	CHECK_OWNED_STR(section(m, buf_cstr(&spec)), "leaf");
	char *bs = bodystructure(m, 1);
	CHECK(strstr(bs, "(\"TEXT\" \"PLAIN\" NIL NIL NIL \"7BIT\" 4 1 NIL NIL NIL NIL)") != NULL);
	free(bs);
	mime_message_free(&m);

	/* one level more: the deepest container is served as opaque bytes */
	buf_reset(&b);
	nest_multipart(&b, MIME_MAX_DEPTH + 1);
	m = mime_parse(b.ptr, b.len);
	p = m->root;
	while (p->children)
		p = p->children;
	CHECK_INT(p->depth, MIME_MAX_DEPTH);
	CHECK_STR(p->type, "application");
	CHECK_STR(p->subtype, "octet-stream");
	mime_message_free(&m);

	/* message/rfc822 inside message/rfc822 ...: the path is one longer */
	buf_reset(&b);
	for (int i = 0; i < MIME_MAX_DEPTH; i++)
		buf_appends(&b, "Content-Type: message/rfc822\r\n\r\n");
	buf_appends(&b, "\r\ninnermost");
	m = mime_parse(b.ptr, b.len);
	buf_reset(&spec);
	for (int i = 0; i < MIME_SECTION_MAX_PATH; i++)
		buf_appends(&spec, i ? ".1" : "1");
	CHECK_OWNED_STR(section(m, buf_cstr(&spec)), "innermost");
	buf_appends(&spec, ".1");
	CHECK_OWNED_STR(section(m, buf_cstr(&spec)), "ERR:notfound");
	mime_message_free(&m);
	buf_free(&b);
	buf_free(&spec);
}

TEST(parts_limit)
{
	struct buf b = BUF_INIT;
	buf_appends(&b, "Content-Type: multipart/mixed; boundary=p\r\n\r\n");
	for (int i = 0; i < MIME_MAX_PARTS + 20; i++)
		buf_appends(&b, "--p\r\n\r\nx\r\n");
	buf_appends(&b, "--p--\r\n");
	struct mime_message *m = mime_parse(b.ptr, b.len);
	CHECK_INT(m->nparts, MIME_MAX_PARTS);
	size_t n = 0;
	for (const struct mime_part *c = m->root->children; c; c = c->next)
		n++;
	CHECK_INT(n, MIME_MAX_PARTS - 1);
	mime_message_free(&m);
	buf_free(&b);
}

/* ---- section specs -------------------------------------------------------- */

static void check_bad_section(const char *spec, size_t want_pos, enum terr_code code)
{
	struct mime_section sec;
	struct terr err;
	size_t pos = 999;
	CHECK_INT(mime_section_parse(spec, strlen(spec), &sec, &pos, &err), -1);
	CHECK_INT(pos, want_pos);
	CHECK_INT(err.code, code);
	CHECK(err.msg[0] != '\0');
	if (pos != want_pos)
		printf("  section \"%s\": %s\n", spec, err.msg);
	mime_section_clear(&sec);
}

TEST(section_parse)
{
	struct mime_section sec;
	struct terr err;
	CHECK_INT(mime_section_parse("", 0, &sec, NULL, &err), 0);
	CHECK_INT(sec.npath, 0);
	CHECK_INT(sec.text, MIME_SECTION_NONE);
	mime_section_clear(&sec);
	CHECK_INT(mime_section_parse("1.22.3", 6, &sec, NULL, &err), 0);
	CHECK_INT(sec.npath, 3);
	CHECK_INT(sec.path[1], 22);
	mime_section_clear(&sec);
	CHECK_INT(mime_section_parse("header", 6, &sec, NULL, &err), 0);
	CHECK_INT(sec.text, MIME_SECTION_HEADER);
	mime_section_clear(&sec);
	CHECK_INT(mime_section_parse("4.MIME", 6, &sec, NULL, &err), 0);
	CHECK_INT(sec.text, MIME_SECTION_MIME);
	mime_section_clear(&sec);
	const char *s = "2.HEADER.FIELDS.NOT (From \"X \\\"Y\" Content-Type)";
	CHECK_INT(mime_section_parse(s, strlen(s), &sec, NULL, &err), 0);
	CHECK_INT(sec.text, MIME_SECTION_HEADER_FIELDS_NOT);
	CHECK_INT(sec.nfields, 3);
	CHECK_STR(sec.fields[1], "X \"Y");
	mime_section_clear(&sec);

	check_bad_section("0", 0, TE_INVALID);
	check_bad_section("01", 0, TE_INVALID);
	check_bad_section("1.", 2, TE_INVALID);
	check_bad_section("1..2", 2, TE_INVALID);
	check_bad_section("1.2X", 3, TE_INVALID);
	check_bad_section("MIME", 0, TE_INVALID);
	check_bad_section("TEXTX", 4, TE_INVALID);
	check_bad_section("HEADER.FIELDS", 13, TE_INVALID);
	check_bad_section("HEADER.FIELDS ()", 15, TE_INVALID);
	check_bad_section("HEADER.FIELDS (a", 16, TE_INVALID);
	check_bad_section("HEADER.FIELDS (\"a)", 15, TE_INVALID);
	check_bad_section("HEADER.FIELDS (a) ", 17, TE_INVALID);
	check_bad_section("4294967296", 0, TE_INVALID);
	struct buf deep = BUF_INIT;
	for (int i = 0; i <= MIME_SECTION_MAX_PATH; i++)
		buf_appends(&deep, "1.");
	check_bad_section(buf_cstr(&deep), 2 * MIME_SECTION_MAX_PATH, TE_NOTFOUND);
	buf_free(&deep);

	/* hand-built spec */
	memset(&sec, 0, sizeof(sec));
	sec.text = MIME_SECTION_HEADER_FIELDS;
	mime_section_add_field(&sec, "subject", 7);
	struct mime_message *m = parse_str(plain_msg);
	struct buf scratch = BUF_INIT;
	const char *p;
	size_t len;
	CHECK_INT(mime_section_fetch(m, &sec, &scratch, &p, &len, &err), 0);
	CHECK_MEM(p, len, "Subject: afternoon meeting\r\n\r\n", 30);
	sec.text = MIME_SECTION_MIME;
	CHECK_INT(mime_section_fetch(m, &sec, &scratch, &p, &len, &err), -1);
	CHECK_INT(err.code, TE_NOTFOUND);
	buf_free(&scratch);
	mime_section_clear(&sec);
	mime_message_free(&m);
}

/* ---- decoding and search -------------------------------------------------- */

static char *words(const char *s)
{
	struct buf b = BUF_INIT;
	mime_decode_words(s, strlen(s), &b);
	return buf_release(&b);
}

TEST(encoded_words)
{
	CHECK_OWNED_STR(words("=?UTF-8?B?SGVsbG8gV8O2cmxk?= =?ISO-8859-1?Q?_caf=E9?="),
			"Hello W\xc3\xb6rld caf\xc3\xa9");
	CHECK_OWNED_STR(words("a =?utf-8?q?b?= c"), "a b c");
	CHECK_OWNED_STR(words("=?utf-8?q?a?=  \t =?utf-8?q?b?="), "ab");
	CHECK_OWNED_STR(words("=?utf-8?q?=C3?= =?utf-8?q?=A9?="), "\xc3\xa9");
	CHECK_OWNED_STR(words("=?utf-8?b?w6k=?="), "\xc3\xa9");
	CHECK_OWNED_STR(words("=?iso-8859-2?q?=B1?="), "\xc4\x85");
	CHECK_OWNED_STR(words("=?utf-8*en?q?hi_there?="), "hi there");
	CHECK_OWNED_STR(words("=?x-unknown?q?a?= tail"), "=?x-unknown?q?a?= tail");
	CHECK_OWNED_STR(words("=?utf-8?q?broken"), "=?utf-8?q?broken");
	CHECK_OWNED_STR(words("=?utf-8?x?a?="), "=?utf-8?x?a?=");
	CHECK_OWNED_STR(words("=?us-ascii?q?a b?="), "=?us-ascii?q?a b?=");
	CHECK_OWNED_STR(words("x =?utf-8?q?y?= =?iso-8859-1?q?=E9?= z"), "x y\xc3\xa9 z");
	CHECK_OWNED_STR(words("=?"), "=?");
}

TEST(charsets_and_decoders)
{
	struct buf b = BUF_INIT;
	CHECK_INT(mime_charset_to_utf8("ISO-8859-15", "\xa4", 1, &b), 1);
	CHECK_STR(buf_cstr(&b), "\xe2\x82\xac");
	buf_reset(&b);
	CHECK_INT(mime_charset_to_utf8("windows-1252", "\x93x\x94", 3, &b), 1);
	CHECK_STR(buf_cstr(&b), "\xe2\x80\x9cx\xe2\x80\x9d");
	buf_reset(&b);
	CHECK_INT(mime_charset_to_utf8("Latin1", "\xe9", 1, &b), 1);
	CHECK_STR(buf_cstr(&b), "\xc3\xa9");
	buf_reset(&b);
	CHECK_INT(mime_charset_to_utf8("iso8859-5", "\xb0", 1, &b), 1);
	CHECK_STR(buf_cstr(&b), "\xd0\x90");	/* Cyrillic A */
	buf_reset(&b);
	CHECK_INT(mime_charset_to_utf8("koi8-r", "\xe1", 1, &b), 0);
	CHECK_STR(buf_cstr(&b), "\xe1");
	buf_reset(&b);
	CHECK_INT(mime_charset_to_utf8("iso-8859-12", "a", 1, &b), 0);
	buf_reset(&b);

	mime_base64_decode("aGVs\r\nbG8=", 10, &b);
	CHECK_STR(buf_cstr(&b), "hello");
	buf_reset(&b);
	mime_base64_decode("QQ==QkM=", 8, &b);
	CHECK_STR(buf_cstr(&b), "ABC");
	buf_reset(&b);
	mime_qp_decode("a=3Db=\r\nc= \r\nd=zz=4", 19, 0, &b);
	CHECK_STR(buf_cstr(&b), "a=bcd=zz=4");
	buf_reset(&b);
	mime_qp_decode("a_b", 3, 1, &b);
	CHECK_STR(buf_cstr(&b), "a b");
	buf_free(&b);
}

TEST(search)
{
	struct mime_message *m = parse_str(mixed_msg);
	struct buf v = BUF_INIT;
	CHECK_INT(mime_header_value(m, "SUBJECT", &v), 1);
	CHECK_STR(buf_cstr(&v), "Hello W\xc3\xb6rld caf\xc3\xa9");
	CHECK_INT(mime_header_value(m, "bcc", &v), 0);
	buf_free(&v);

	CHECK_INT(mime_search_header(m, "subject", "W\xc3\x96RLD", 6), 1);
	CHECK_INT(mime_search_header(m, "Subject", "CAF\xc3\x89", 5), 1);
	CHECK_INT(mime_search_header(m, "subject", "nope", 4), 0);
	CHECK_INT(mime_search_header(m, "from", "JANE", 4), 1);
	CHECK_INT(mime_search_header(m, "cc", "team", 4), 1);
	CHECK_INT(mime_search_header(m, "to", "", 0), 1);
	CHECK_INT(mime_search_header(m, "bcc", "", 0), 0);

	CHECK_INT(mime_search_body(m, "CR\xc3\x88ME", 6), 1);	/* QP latin-1 */
	CHECK_INT(mime_search_body(m, "<P>caf", 6), 1);
	CHECK_INT(mime_search_body(m, "JVBER", 5), 0);	/* not text */
	CHECK_INT(mime_search_body(m, "preamble", 8), 0);
	CHECK_INT(mime_search_body(m, "W\xc3\xb6rld", 6), 0);	/* header */
	CHECK_INT(mime_search_text(m, "w\xc3\xb6rld", 6), 1);
	CHECK_INT(mime_search_text(m, "cr\xc3\xa8me", 6), 1);
	CHECK_INT(mime_search_text(m, "absent", 6), 0);
	mime_message_free(&m);

	m = parse_str("Content-Type: text/plain; charset=utf-8\r\n"
		      "Content-Transfer-Encoding: base64\r\n\r\n"
		      "0J/RgNC40LLQtdGCINC80LjRgA==\r\n");
	/* "Привет мир" found by its capitals */
	CHECK_INT(mime_search_body(m, "\xd0\x9c\xd0\x98\xd0\xa0", 6), 1);
	CHECK_INT(mime_search_body(m, "", 0), 1);
	mime_message_free(&m);

	m = parse_str(nested_msg);
	CHECK_INT(mime_search_body(m, "INNER TEXT", 10), 1);
	CHECK_INT(mime_search_body(m, "inner msg", 9), 1);	/* enclosed header */
	CHECK_INT(mime_search_header(m, "subject", "inner", 5), 0);
	mime_message_free(&m);

	/* CFWS inside an address (RFC 5322 3.4.1) does not hide it */
	m = parse_str("From: <user-from (comment)@ (comment) domain.org>\r\n"
		      "To: \"Jo (not a comment)\" <jo@x.example>, Grp: a@b.example (Al), =?utf-8?q?R=C3=A9?= <r@c.example>;\r\n"
		      "Subject: user-from@domain.org look-alike\r\n\r\nbody\r\n");
	CHECK_INT(mime_search_header(m, "from", "user-from@domain.org", 20), 1);
	CHECK_INT(mime_search_header(m, "FROM", "USER-FROM@DOMAIN", 16), 1);
	CHECK_INT(mime_search_header(m, "from", "comment", 7), 1);	/* the raw text still counts */
	CHECK_INT(mime_search_header(m, "from", "from@domain.org.x", 17), 0);
	CHECK_INT(mime_search_header(m, "to", "a@b.example", 11), 1);
	CHECK_INT(mime_search_header(m, "to", "R\xc3\xa9 <r@c.example>", 17), 1);
	CHECK_INT(mime_search_header(m, "subject", "user-from@domain.org", 20), 1);
	mime_message_free(&m);
	m = parse_str("Subject: <a (c)@ b.example>\r\n\r\n");
	CHECK_INT(mime_search_header(m, "subject", "a@b.example", 11), 0);	/* not an address field */
	mime_message_free(&m);

	CHECK_INT(mime_match("\xc3\x80\xc3\x89\xc5\x81\xce\xa3", 8, "\xc3\xa0\xc3\xa9\xc5\x82\xcf\x82", 8), 1);
	CHECK_INT(mime_match("abc", 3, "ABCD", 4), 0);
	CHECK_INT(mime_match("", 0, "", 0), 1);
}

/* RFC 5256 2.1 base subjects */
static void check_base(const char *in, const char *want, int want_reply)
{
	struct buf b = BUF_INIT;
	int r = mime_base_subject(in, strlen(in), &b);
	CHECK_STR(buf_cstr(&b), want);
	CHECK_INT(r, want_reply);
	buf_free(&b);
}

TEST(base_subject)
{
	check_base("Hello", "Hello", 0);
	check_base("Re: Hello", "Hello", 1);
	check_base("RE:Hello", "Hello", 1);
	check_base("re : Hello", "Hello", 1);
	check_base("Fwd: Re: [list] Re: Hello", "Hello", 1);
	check_base("[list] Re: Hello", "Hello", 1);
	check_base("Re[2]: Hello", "Hello", 1);
	check_base("Re: [list] Hello", "Hello", 1);
	check_base("[list] Hello", "Hello", 0);
	check_base("[list]", "[list]", 0);	/* a blob alone stays */
	check_base("Hello (fwd)", "Hello", 1);
	check_base("Hello (FWD) (fwd)  ", "Hello", 1);
	check_base("[Fwd: Re: Hello]", "Hello", 1);
	check_base("Re: Re: [fwd: Other topic] (fwd)", "Other topic", 1);
	check_base("  Many \t  spaces\r\n here ", "Many spaces here", 0);
	check_base("Reply later", "Reply later", 0);	/* "re" without ':' */
	check_base("Fw: x", "x", 1);
	check_base("", "", 0);
	check_base("Re:", "", 1);
	check_base("[a][b] Re: c", "c", 1);
	check_base("[unclosed Re: c", "[unclosed Re: c", 0);
}

TEST(preview)
{
	struct buf b = BUF_INIT;
	struct mime_message *m = parse_str("Subject: x\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
					   "  Hello,\r\n\r\n\tworld \xc3\xa9t\xc3\xa9  \r\n");
	mime_preview(m, 256, &b);
	CHECK_STR(buf_cstr(&b), "Hello, world \xc3\xa9t\xc3\xa9");
	buf_reset(&b);
	mime_preview(m, 8, &b);	/* characters, not bytes */
	CHECK_STR(buf_cstr(&b), "Hello, w");
	buf_reset(&b);
	mime_preview(m, 15, &b);
	CHECK_STR(buf_cstr(&b), "Hello, world \xc3\xa9t");
	mime_message_free(&m);
	buf_reset(&b);
	m = parse_str("Content-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\n"
		      "Content-Type: text/html\r\n\r\n<html><style>p{}</style><p>Hi &amp; <b>bye</b></p><!-- c --></html>\r\n"
		      "--b--\r\n");
	mime_preview(m, 256, &b);
	CHECK_STR(buf_cstr(&b), "Hi & bye");
	mime_message_free(&m);
	buf_reset(&b);
	m = parse_str("Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
		      "Content-Type: text/plain\r\nContent-Disposition: attachment\r\n\r\nfile\r\n--b\r\n"
		      "Content-Type: application/pdf\r\n\r\nx\r\n--b--\r\n");
	mime_preview(m, 256, &b);
	CHECK_STR(buf_cstr(&b), "");
	mime_message_free(&m);
	buf_free(&b);
}

/* ---- dates ------------------------------------------------------------------ */

static void check_date(const char *s, long long want, int want_tz)
{
	time_t t = 0;
	int tz = 12345;
	int r = mime_date_parse(s, strlen(s), &t, &tz);
	CHECK_INT(r, 0);
	CHECK_INT((long long)t, want);
	CHECK_INT(tz, want_tz);
	if (r != 0 || (long long)t != want)
		printf("  date \"%s\"\n", s);
}

TEST(dates)
{
	check_date("Mon, 7 Feb 1994 21:52:25 -0800 (PST)", 760686745, -480);
	check_date("1 Jan 2020 10:00 +0100", 1577869200, 60);
	check_date("Tue,  1 Jul 2003 10:52:37 +0200", 1057049557, 120);
	check_date("Fri, 31 Dec 99 23:59:59 GMT", 946684799, 0);
	check_date("4 Mar 49 00:06 EST", 2498447160, -300);
	check_date("1 Jan 050 00:00:00 +0000", -631152000, 0);
	check_date("Mon Jan  2 15:04:05 2006", 1136214245, 0);
	check_date("29 Feb 2024 12:00:00 Z", 1709208000, 0);
	check_date("Thu, 1 Jan 1970 00:00:00 +0100", -3600, 60);
	check_date("1-Jan-2020 10:00:00 +0100", 1577869200, 60);
	check_date("(c) Wednesday, 01 January 2020 (x) 09:00:00 (y) UT", 1577869200, 0);
	check_date("1 Jan 2020 09:00:00 A", 1577869200, 0);
	check_date("1 Jan 2020 09:00:00 XYZ", 1577869200, 0);
	check_date("1 jan 2020 09:00:00", 1577869200, 0);

	time_t t;
	int tz;
	static const char *const bad[] = {
		"", "garbage", "31 Feb 2020 10:00 +0000", "1 Foo 2020 10:00",
		"1 Jan 2020", "1 Jan 2020 25:00 +0000", "1 Jan 2020 10:61",
		"1 Jan 2020 10:00 +0a00", "Mon,", "0 Jan 2020 10:00",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		CHECK_INT(mime_date_parse(bad[i], strlen(bad[i]), &t, &tz), -1);
	}

	struct mime_message *m = parse_str(plain_msg);
	CHECK_INT(mime_message_date(m, &t, &tz), 0);
	CHECK_INT((long long)t, 760686745);
	mime_message_free(&m);
	m = parse_str(mixed_msg);
	CHECK_INT(mime_message_date(m, &t, &tz), -1);
	mime_message_free(&m);
}

/* ---- robustness ------------------------------------------------------------- */

/* Every prefix of a message parses to a consistent tree (the message
 * arriving a byte at a time), and the whole gives the whole answer. */
TEST(prefixes)
{
	size_t len = strlen(mixed_msg);
	struct mime_message *whole = parse_str(mixed_msg);
	char *want = bodystructure(whole, 1);
	for (size_t n = 0; n <= len; n++) {
		char *copy = xmemdup(mixed_msg, n ? n : 1);
		struct mime_message *m = mime_parse(copy, n);
		char *bs = bodystructure(m, 1);
		CHECK(bs[0] == '(' && bs[strlen(bs) - 1] == ')');
		if (n == len)
			CHECK_STR(bs, want);
		free(bs);
		mime_message_free(&m);
		free(copy);
	}
	free(want);
	mime_message_free(&whole);
}

/* A body's line count (BODYSTRUCTURE's body-fld-lines) over every body
 * length up to 79: each LF ends a line, a last line without one counts
 * too; CR, bytes that differ from LF in one bit (0x0b, 0x8a, 0x0e) and
 * NUL are not line ends. */
TEST(line_counts)
{
	static const char alphabet[] = { '\n', '\r', 0x0b, (char)0x8a, 0x0e, 'a', 0, (char)0xff };
	unsigned seed = 7;
	for (size_t len = 0; len < 80; len++) {
		for (int round = 0; round < 20; round++) {
			char msg[128];
			size_t hl = (size_t)snprintf(msg, sizeof msg, "Subject: x\r\n\r\n");
			size_t want = 0;
			for (size_t i = 0; i < len; i++) {
				seed = seed * 1103515245u + 12345u;
				msg[hl + i] = alphabet[(seed >> 16) % sizeof alphabet];
				want += msg[hl + i] == '\n';
			}
			if (len && msg[hl + len - 1] != '\n')
				want++;
			struct mime_message *m = mime_parse(msg, hl + len);
			CHECK(m && m->root);
			if (m && m->root && m->root->lines != want) {
				CHECK_INT(m->root->lines, want);
				round = 20;
				len = 80;
			}
			mime_message_free(&m);
		}
	}
}

int main(void)
{
	RUN(header_fields_whole);
	RUN(header_fields_bytewise);
	RUN(header_limits);
	RUN(plain_text);
	RUN(line_counts);
	RUN(multipart_mixed_alternative);
	RUN(nested_rfc822);
	RUN(digest_defaults);
	RUN(addresses);
	RUN(missing_headers_and_quoting);
	RUN(bare_lf_and_no_body);
	RUN(broken_multiparts);
	RUN(content_type_params);
	RUN(depth_limit);
	RUN(parts_limit);
	RUN(section_parse);
	RUN(encoded_words);
	RUN(charsets_and_decoders);
	RUN(search);
	RUN(base_subject);
	RUN(preview);
	RUN(dates);
	RUN(prefixes);
	return test_done();
}
