/* test_store.c: the store's invariants with a real SQLite and a real
 * change log in a temp directory. */
#include "chlog/chlog.h"
#include "lib/fsutil.h"
#include "lib/sha1.h"
#include "lib/limits.h"
#include "lib/log.h"
#include "msgcache/msgcache.h"
#include "store/store.h"
#include "store/store-private.h"
#include "test.h"

#include <dirent.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

struct fixture {
	char *dir;
	char conf[4096], spool[4096];
	struct chlog *log;
	struct store *st;
};

static void fx_open_cache(struct fixture *fx, long long maxsize, store_cache_fn *cache_fn)
{
	memset(fx, 0, sizeof *fx);
	fx->dir = test_tmpdir();
	snprintf(fx->conf, sizeof fx->conf, "%s/conf", fx->dir);
	snprintf(fx->spool, sizeof fx->spool, "%s/spool", fx->dir);
	static const char *const chans[] = { "repl1", "repl2" };
	fx->log = chlog_open(fx->conf, chans, 2);
	struct store_opts o = { fx->conf, "default", fx->spool, fx->log, maxsize, 0, cache_fn, NULL, NULL };
	struct terr err;
	if (store_open(&o, &fx->st, &err) < 0) {
		printf("store_open: %s\n", err.msg);
		exit(2);
	}
}

static void fx_open(struct fixture *fx, long long maxsize)
{
	fx_open_cache(fx, maxsize, NULL);
}

static void fx_close(struct fixture *fx)
{
	store_close(&fx->st);
	chlog_close(&fx->log);
	struct terr err;
	fs_remove_tree(fx->dir, &err);
	free(fx->dir);
}

static const char msg1[] = "From: a@example.com\r\nTo: fred@example.com\r\nSubject: hello\r\n"
			   "Date: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <1@example.com>\r\n"
			   "\r\nHello world\r\n";

static int apply_body1(void *rock, const char *guid, const void **data_r, size_t *len_r)
{
	*data_r = msg1;
	*len_r = strlen(msg1);
	return 0;
}

static uint32_t append(struct fixture *fx, const char *mbox, const char *data)
{
	uint32_t uid = 0;
	struct terr err;
	struct store_append_opts o = { 0, NULL, 1704067200 };
	if (store_append(fx->st, mbox, data, strlen(data), &o, &uid, &err) < 0)
		printf("  append: %s\n", err.msg);
	return uid;
}

/* ---- an independent recomputation of the sync CRCs ----
 *
 * Written from the reference's definition (cyrus-sync-protocol.md §5),
 * sharing no code with src/store/synccrc.c: a bitwise CRC-32, the record
 * string built here, the flag names lower-cased here. The store's kept
 * CRCs are checked against it, and it against the reference's worked
 * examples (§5.5). */

static uint32_t ref_crc32(const void *data, size_t len)
{
	const unsigned char *p = data;
	uint32_t c = 0xFFFFFFFFu;
	for (size_t i = 0; i < len; i++) {
		c ^= p[i];
		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
	}
	return c ^ 0xFFFFFFFFu;
}

static uint32_t ref_crc32_str(const char *s)
{
	return ref_crc32(s, strlen(s));
}

/* XOR of crc32(lower-cased name) over the system flags and the
 * space-separated keywords. */
static uint32_t ref_flagcrc(unsigned sysflags, const char *keywords)
{
	static const struct { unsigned bit; const char *name; } sys[] = {
		{ SYSFLAG_DELETED, "\\deleted" }, { SYSFLAG_ANSWERED, "\\answered" },
		{ SYSFLAG_FLAGGED, "\\flagged" }, { SYSFLAG_DRAFT, "\\draft" }, { SYSFLAG_SEEN, "\\seen" },
	};
	uint32_t c = 0;
	for (size_t i = 0; i < sizeof sys / sizeof sys[0]; i++)
		if (sysflags & sys[i].bit)
			c ^= ref_crc32_str(sys[i].name);
	const char *p = keywords ? keywords : "";
	while (*p) {
		while (*p == ' ')
			p++;
		char word[256];
		size_t n = 0;
		while (*p && *p != ' ') {
			if (n < sizeof word - 1)
				word[n++] = (char)((*p >= 'A' && *p <= 'Z') ? *p + 32 : *p);
			p++;
		}
		word[n] = 0;
		if (n)
			c ^= ref_crc32_str(word);
	}
	return c;
}

static uint32_t ref_record_crc(uint32_t uid, uint64_t modseq, int64_t last_updated, unsigned sysflags,
			       const char *keywords, int64_t internaldate, const char *guid)
{
	if (sysflags & SYSFLAG_EXPUNGED)
		return 0;
	char line[512];
	snprintf(line, sizeof line, "%u %llu %lld (%u) %lld %s", uid, (unsigned long long)modseq,
		 (long long)last_updated, ref_flagcrc(sysflags, keywords), (long long)internaldate, guid);
	return ref_crc32_str(line);
}

static uint32_t ref_annot_virtual(uint32_t uid, uint64_t thrid, int64_t savedate, uint64_t createdmodseq)
{
	char line[256];
	uint32_t c = 0;
	if (thrid) {
		snprintf(line, sizeof line, "%u /vendor/cmu/cyrus-imapd/thrid  %llx", uid, (unsigned long long)thrid);
		c ^= ref_crc32_str(line);
	}
	if (savedate) {
		snprintf(line, sizeof line, "%u /vendor/cmu/cyrus-imapd/savedate  %lld", uid, (long long)savedate);
		c ^= ref_crc32_str(line);
	}
	if (createdmodseq) {
		snprintf(line, sizeof line, "%u /vendor/cmu/cyrus-imapd/createdmodseq  %llu", uid,
			 (unsigned long long)createdmodseq);
		c ^= ref_crc32_str(line);
	}
	return c;
}

static uint32_t ref_annot_entry(uint32_t uid, const char *entry, const char *userid, const void *value, size_t len)
{
	if (!len)
		return 0;
	char head[1024];
	int n = snprintf(head, sizeof head, "%u %s %s ", uid, entry, userid);
	char *all = malloc((size_t)n + len);
	memcpy(all, head, (size_t)n);
	memcpy(all + n, value, len);
	uint32_t c = ref_crc32(all, (size_t)n + len);
	free(all);
	return c;
}

struct ref_crcs {
	uint32_t basic, annot;
	size_t live;		/* non-expunged records */
	uint32_t *live_uids;	/* to filter annotations */
};

static int ref_record_cb(const struct store_record *r, void *rock)
{
	struct ref_crcs *rc = rock;
	if (r->sysflags & SYSFLAG_EXPUNGED)
		return 0;
	rc->basic ^= ref_record_crc(r->uid, r->modseq, r->last_updated, r->sysflags, r->keywords,
				    r->internaldate, r->guid);
	rc->annot ^= ref_annot_virtual(r->uid, r->thrid, r->savedate, r->createdmodseq);
	rc->live_uids = realloc(rc->live_uids, (rc->live + 1) * sizeof *rc->live_uids);
	rc->live_uids[rc->live++] = r->uid;
	return 0;
}

static int ref_annot_cb(uint32_t uid, const char *entry, const char *userid, const void *value, size_t len,
			uint64_t modseq, void *rock)
{
	struct ref_crcs *rc = rock;
	if (uid == 0 || !userid)
		return 0;
	for (size_t i = 0; i < rc->live; i++)
		if (rc->live_uids[i] == uid)
			rc->annot ^= ref_annot_entry(uid, entry, userid, value, len);
	return 0;
}

/* The mailbox's CRCs recomputed by this file from the store's records
 * and annotations; -1 if they cannot be read. */
static int ref_mailbox_crcs(struct fixture *fx, const char *mbox, uint32_t *basic_r, uint32_t *annot_r)
{
	struct ref_crcs rc = { 0, 12345678u, 0, NULL };
	struct terr err;
	int ok = store_records(fx->st, mbox, 0, 1, ref_record_cb, &rc, &err) == 0 &&
		 store_annot_list(fx->st, mbox, -1, ref_annot_cb, &rc, &err) == 0;
	if (!ok)
		printf("  reading %s: %s\n", mbox, err.msg);
	free(rc.live_uids);
	*basic_r = rc.basic;
	*annot_r = rc.annot;
	return ok ? 0 : -1;
}

/* The kept CRCs equal the store's own recomputation AND this file's
 * independent one. */
static int crc_ok(struct fixture *fx, const char *mbox)
{
	uint32_t c = 0, a = 0;
	struct terr err;
	int rc = store_mailbox_verify_crc(fx->st, mbox, &c, &a, &err);
	if (rc != 1)
		printf("  crc of %s: rc=%d computed %u/%u\n", mbox, rc, c, a);
	struct store_mailbox_info mi;
	if (store_mailbox_get(fx->st, mbox, &mi, &err) < 0) {
		printf("  mailbox %s: %s\n", mbox, err.msg);
		return 0;
	}
	uint32_t rb = 0, ra = 0;
	int ind = ref_mailbox_crcs(fx, mbox, &rb, &ra) == 0 && rb == mi.sync_crc && ra == mi.sync_crc_annot;
	if (!ind)
		printf("  crc of %s: kept %u/%u, independent recomputation %u/%u\n", mbox, mi.sync_crc,
		       mi.sync_crc_annot, rb, ra);
	store_mailbox_info_free(&mi);
	return rc == 1 && ind;
}

/* The independent code against the reference's worked examples (§5.5). */
TEST(ref_crc_worked_examples)
{
	CHECK_U64(ref_crc32_str("123456789"), 3421780262u);
	/* example 1 */
	CHECK_U64(ref_crc32_str("\\seen"), 3201761491u);
	CHECK_U64(ref_crc32_str("important"), 3399560672u);
	CHECK_U64(ref_flagcrc(SYSFLAG_SEEN, "Important"), 1953901875u);
	CHECK_U64(ref_record_crc(1, 5, 1700000000, SYSFLAG_SEEN, "Important", 1699999999,
				 "0123456789abcdef0123456789abcdef01234567"), 1704935123u);
	/* example 2: the captured mailbox user.fred */
	CHECK_U64(ref_crc32_str("$label1"), 979321343u);
	CHECK_U64(ref_crc32_str("\\flagged"), 3986028895u);
	uint32_t r1 = ref_record_crc(1, 4, 1795334828, 0, "$Label1", 1704067200,
				     "b622fc18dc1d1f34429ed3354ecb3f0a7cc1bfae");
	uint32_t r2 = ref_record_crc(2, 5, 1795334907, SYSFLAG_FLAGGED, "", 1704186000,
				     "c1a4f6d3019ea1cf95bd8d2b5fdc06de5ff8a434");
	CHECK_U64(r1, 2978654139u);
	CHECK_U64(r2, 2046371782u);
	CHECK_U64(r1 ^ r2, 3363012733u);
	CHECK_U64(ref_crc32_str("1 /vendor/cmu/cyrus-imapd/savedate  1795334828"), 2606029921u);
	CHECK_U64(ref_crc32_str("1 /vendor/cmu/cyrus-imapd/createdmodseq  4"), 4239268840u);
	uint32_t a = 12345678u ^ ref_annot_virtual(1, 0, 1795334828, 4);
	CHECK_U64(a, 1732683463u);
	a ^= ref_annot_virtual(2, 0, 1795334907, 5);
	CHECK_U64(a, 1821467450u);
	/* expunged records never count */
	CHECK_U64(ref_record_crc(3, 9, 1, SYSFLAG_EXPUNGED | SYSFLAG_SEEN, "x", 1,
				 "0123456789abcdef0123456789abcdef01234567"), 0);
	/* example 4: a real annotation; example 5: thrid unpadded */
	CHECK_U64(ref_annot_entry(7, "/comment", "fred", "hello", 5), 4064428792u);
	CHECK_U64(ref_annot_virtual(5, 0x1a2b3c, 0, 0), 3440731703u);
	/* a shared annotation: two spaces */
	CHECK_U64(ref_annot_entry(7, "/comment", "", "x", 1), ref_crc32_str("7 /comment  x"));
}

/* The store's kept CRCs for the reference's captured mailbox (example 2,
 * record 1: msg1 below is that message, GUID b622fc18...): what Cyrus
 * sent after the first message, and the store's own postcondition check
 * with those values passes. */
TEST(store_crc_matches_the_captured_mailbox)
{
	struct fixture fx;
	fx_open(&fx, 0);
	struct terr err;
	struct store_apply_record rec = { .uid = 1, .modseq = 4, .last_updated = 1795334828, .keywords = "$Label1",
					  .internaldate = 1704067200, .size = 141,
					  .guid = "b622fc18dc1d1f34429ed3354ecb3f0a7cc1bfae",
					  .savedate = 1795334828, .createdmodseq = 4 };
	struct store_apply a = { .uniqueid = "p603xvbfqrngduw72ylfjqki", .name = "user.fred", .last_uid = 1,
				 .highestmodseq = 4, .uidvalidity = 1795334821, .createdmodseq = 1,
				 .foldermodseq = 3, .last_appenddate = 1795334828, .partition = "default",
				 .acl = "fred\tlrswipkxtecdan\t", .options = "P",
				 .sync_crc = 2978654139u, .sync_crc_annot = 1732683463u,
				 .recs = &rec, .nrecs = 1, .body = apply_body1 };
	CHECK_INT(store_apply_mailbox(fx.st, &a, &err), 0);
	struct store_mailbox_info mi;
	CHECK_INT(store_mailbox_get(fx.st, "user.fred", &mi, &err), 0);
	CHECK_U64(mi.sync_crc, 2978654139u);
	CHECK_U64(mi.sync_crc_annot, 1732683463u);
	store_mailbox_info_free(&mi);
	CHECK(crc_ok(&fx, "user.fred"));
	/* \Flagged added by the store: the kept CRC follows the definition */
	uint32_t one = 1;
	CHECK_INT(store_set_flags(fx.st, "user.fred", &one, 1, STORE_FLAGS_ADD, SYSFLAG_FLAGGED, NULL, 0, NULL, &err),
		  0);
	CHECK(crc_ok(&fx, "user.fred"));
	/* a real annotation on the record */
	CHECK_INT(store_annot_set(fx.st, "user.fred", 1, "/comment", "fred", "hello", 5, &err), 0);
	CHECK_INT(store_annot_set(fx.st, "user.fred", 1, "/comment", "", "shared", 6, &err), 0);
	CHECK(crc_ok(&fx, "user.fred"));
	/* expunged: the basic CRC is 0 again, the annotation CRC back to its start */
	CHECK_INT(store_expunge(fx.st, "user.fred", &one, 1, NULL, &err), 0);
	CHECK_INT(store_mailbox_get(fx.st, "user.fred", &mi, &err), 0);
	CHECK_U64(mi.sync_crc, 0);
	CHECK_U64(mi.sync_crc_annot, 12345678u);
	store_mailbox_info_free(&mi);
	CHECK(crc_ok(&fx, "user.fred"));
	fx_close(&fx);
}

TEST(user_create_makes_inbox)
{
	struct fixture fx;
	fx_open(&fx, 0);
	struct terr err;
	CHECK_INT(store_user_create(fx.st, "alice", "secret", &err), 0);
	CHECK_INT(store_user_create(fx.st, "alice", "secret", &err), -1);
	CHECK_INT(err.code, TE_EXISTS);
	CHECK_INT(store_user_exists(fx.st, "alice", &err), 1);
	CHECK_INT(store_user_exists(fx.st, "bob", &err), 0);
	struct store_mailbox_info mi;
	CHECK_INT(store_mailbox_get(fx.st, "user.alice", &mi, &err), 0);
	CHECK_INT(strlen(mi.uniqueid), 24);
	CHECK(mi.uidvalidity > 0);
	CHECK_INT(mi.sync_crc, 0);
	CHECK_U64(mi.sync_crc_annot, SYNCCRC_ANNOT_START);
	CHECK_STR(mi.partition, "default");
	CHECK_STR(mi.acl, "alice\tlrswipkxtecdan\t");
	store_mailbox_info_free(&mi);
	CHECK_INT(store_user_check_password(fx.st, "alice", "secret", &err), 1);
	CHECK_INT(store_user_check_password(fx.st, "alice", "wrong", &err), 0);
	CHECK_INT(store_user_check_password(fx.st, "nobody", "secret", &err), 0);
	CHECK_INT(store_user_passwd(fx.st, "alice", "new", &err), 0);
	CHECK_INT(store_user_check_password(fx.st, "alice", "new", &err), 1);
	CHECK_INT(store_user_create(fx.st, "bad user", NULL, &err), -1);
	CHECK_INT(err.code, TE_INVALID);
	fx_close(&fx);
}

TEST(append_uids_modseqs_crc)
{
	struct fixture fx;
	fx_open(&fx, 0);
	struct terr err;
	store_user_create(fx.st, "alice", NULL, &err);
	CHECK_INT(append(&fx, "user.alice", msg1), 1);
	CHECK_INT(append(&fx, "user.alice", "Subject: two\r\n\r\nx\r\n"), 2);
	CHECK_INT(append(&fx, "user.alice", msg1), 3);	/* same bytes again: a new UID */
	CHECK(crc_ok(&fx, "user.alice"));
	struct store_mailbox_info mi;
	store_mailbox_get(fx.st, "user.alice", &mi, &err);
	CHECK_INT(mi.last_uid, 3);
	CHECK_INT(mi.exists, 3);
	uint64_t ms = mi.highestmodseq;
	store_mailbox_info_free(&mi);
	/* the file is named by its SHA-1 (reference §3.5 example) and stored once */
	struct buf path = BUF_INIT, data = BUF_INIT;
	store_message_path(fx.st, "user.alice", "b622fc18dc1d1f34429ed3354ecb3f0a7cc1bfae", &path, &err);
	struct stat sb;
	CHECK_INT(stat(path.ptr, &sb), 0);
	CHECK_INT(sb.st_size, 141);
	CHECK_INT(store_message_read(fx.st, "user.alice", "b622fc18dc1d1f34429ed3354ecb3f0a7cc1bfae", &data, &err), 0);
	CHECK_MEM(data.ptr, data.len, msg1, strlen(msg1));
	/* flags: modseq grows, CRC follows, keyword spelling from the table */
	uint32_t two = 2;
	CHECK_INT(store_set_flags(fx.st, "user.alice", &two, 1, STORE_FLAGS_ADD, SYSFLAG_SEEN, "$Label1", 0,
				  NULL, &err), 0);
	CHECK_INT(store_set_flags(fx.st, "user.alice", &two, 1, STORE_FLAGS_ADD, 0, "$LABEL1 Work", 0, NULL,
				  &err), 0);
	store_mailbox_get(fx.st, "user.alice", &mi, &err);
	CHECK(mi.highestmodseq > ms);
	store_mailbox_info_free(&mi);
	CHECK(crc_ok(&fx, "user.alice"));
	buf_free(&path);
	buf_free(&data);
	fx_close(&fx);
}

struct collect {
	char lines[2048];
};

static int collect_rec(const struct store_record *r, void *rock)
{
	struct collect *c = rock;
	char one[256];
	struct buf fl = BUF_INIT;
	store_flags_format(r->sysflags, r->keywords, &fl);
	snprintf(one, sizeof one, "%u(%s);", r->uid, buf_cstr(&fl));
	strncat(c->lines, one, sizeof c->lines - strlen(c->lines) - 1);
	buf_free(&fl);
	return 0;
}

TEST(flags_and_expunge)
{
	struct fixture fx;
	fx_open(&fx, 0);
	struct terr err;
	store_user_create(fx.st, "alice", NULL, &err);
	for (int i = 0; i < 4; i++)
		append(&fx, "user.alice", i % 2 ? msg1 : "Subject: x\r\n\r\ny\r\n");
	uint32_t uids[] = { 2, 4 };
	CHECK_INT(store_set_flags(fx.st, "user.alice", uids, 2, STORE_FLAGS_ADD, SYSFLAG_DELETED, "$Label1", 0,
				  NULL, &err), 0);
	uint32_t one = 1;
	CHECK_INT(store_set_flags(fx.st, "user.alice", &one, 1, STORE_FLAGS_SET, SYSFLAG_FLAGGED, NULL, 0, NULL,
				  &err), 0);
	struct collect c = { "" };
	store_records(fx.st, "user.alice", 0, 0, collect_rec, &c, &err);
	CHECK_STR(c.lines, "1(\\Flagged);2(\\Deleted $Label1);3();4(\\Deleted $Label1);");
	size_t n = 0;
	CHECK_INT(store_expunge(fx.st, "user.alice", NULL, 0, &n, &err), 0);
	CHECK_INT(n, 2);
	memset(&c, 0, sizeof c);
	store_records(fx.st, "user.alice", 0, 0, collect_rec, &c, &err);
	CHECK_STR(c.lines, "1(\\Flagged);3();");
	memset(&c, 0, sizeof c);
	store_records(fx.st, "user.alice", 0, 1, collect_rec, &c, &err);
	CHECK_STR(c.lines, "1(\\Flagged);2(\\Deleted \\Expunged $Label1);3();4(\\Deleted \\Expunged $Label1);");
	CHECK(crc_ok(&fx, "user.alice"));
	/* UIDs only grow: the expunged 4 is never reused */
	CHECK_INT(append(&fx, "user.alice", msg1), 5);
	/* UNCHANGEDSINCE: a record changed after it is left alone */
	struct buf failed = BUF_INIT;
	CHECK_INT(store_set_flags(fx.st, "user.alice", &one, 1, STORE_FLAGS_ADD, SYSFLAG_SEEN, NULL, 1, &failed,
				  &err), 0);
	CHECK_STR(buf_cstr(&failed), "1");
	buf_free(&failed);
	fx_close(&fx);
}

/* The records a STORE, EXPUNGE or COPY changes are read by UID runs
 * (load_records): UIDs in any order, repeated, in several runs, past the
 * last one, expunged ones (never changed again); an EXPUNGE without UIDs
 * takes the \Deleted ones only, one with UIDs those. */
TEST(flags_by_uid_runs)
{
	struct fixture fx;
	fx_open(&fx, 0);
	struct terr err;
	store_user_create(fx.st, "alice", NULL, &err);
	for (int i = 0; i < 9; i++)
		append(&fx, "user.alice", msg1);
	uint32_t gone = 5;
	size_t n = 0;
	CHECK_INT(store_set_flags(fx.st, "user.alice", &gone, 1, STORE_FLAGS_ADD, SYSFLAG_DELETED, NULL, 0, NULL,
				  &err), 0);
	CHECK_INT(store_expunge(fx.st, "user.alice", &gone, 1, &n, &err), 0);
	CHECK_INT(n, 1);
	uint32_t uids[] = { 8, 2, 3, 5, 2, 1, 4, 99, 8 };
	CHECK_INT(store_set_flags(fx.st, "user.alice", uids, 9, STORE_FLAGS_ADD, SYSFLAG_SEEN, NULL, 0, NULL,
				  &err), 0);
	struct collect c = { "" };
	store_records(fx.st, "user.alice", 0, 0, collect_rec, &c, &err);
	CHECK_STR(c.lines, "1(\\Seen);2(\\Seen);3(\\Seen);4(\\Seen);6();7();8(\\Seen);9();");
	/* an expunged UID alone: nothing to change, nothing fails */
	CHECK_INT(store_set_flags(fx.st, "user.alice", &gone, 1, STORE_FLAGS_SET, SYSFLAG_FLAGGED, NULL, 0, NULL,
				  &err), 0);
	uint32_t del[] = { 9, 3, 7 };
	CHECK_INT(store_set_flags(fx.st, "user.alice", del, 3, STORE_FLAGS_ADD, SYSFLAG_DELETED, NULL, 0, NULL,
				  &err), 0);
	/* given UIDs are expunged as given (the caller chose them) */
	uint32_t some[] = { 4, 3, 9, 5 };
	CHECK_INT(store_expunge(fx.st, "user.alice", some, 4, &n, &err), 0);
	CHECK_INT(n, 3);
	/* without UIDs: the \Deleted ones left (7) */
	CHECK_INT(store_expunge(fx.st, "user.alice", NULL, 0, &n, &err), 0);
	CHECK_INT(n, 1);
	memset(&c, 0, sizeof c);
	store_records(fx.st, "user.alice", 0, 0, collect_rec, &c, &err);
	CHECK_STR(c.lines, "1(\\Seen);2(\\Seen);6();8(\\Seen);");
	CHECK(crc_ok(&fx, "user.alice"));
	fx_close(&fx);
}

TEST(rename_keeps_identity)
{
	struct fixture fx;
	fx_open(&fx, 0);
	struct terr err;
	store_user_create(fx.st, "alice", NULL, &err);
	CHECK_INT(store_mailbox_create(fx.st, "user.alice.Work", NULL, &err), 0);
	CHECK_INT(store_mailbox_create(fx.st, "user.alice.Work.Old", NULL, &err), 0);
	CHECK_INT(store_mailbox_create(fx.st, "user.alice.Work", NULL, &err), -1);
	CHECK_INT(err.code, TE_EXISTS);
	append(&fx, "user.alice.Work", msg1);
	struct store_mailbox_info a, b;
	store_mailbox_get(fx.st, "user.alice.Work", &a, &err);
	CHECK_INT(store_mailbox_rename(fx.st, "user.alice.Work", "user.alice.Jobs", 1, &err), 0);
	CHECK_INT(store_mailbox_get(fx.st, "user.alice.Work", &b, &err), -1);
	CHECK_INT(err.code, TE_NOTFOUND);
	CHECK_INT(store_mailbox_get(fx.st, "user.alice.Jobs", &b, &err), 0);
	CHECK_STR(b.uniqueid, a.uniqueid);
	CHECK_INT(b.uidvalidity, a.uidvalidity);
	CHECK_INT(b.last_uid, 1);
	CHECK(b.highestmodseq > a.highestmodseq);
	store_mailbox_info_free(&a);
	store_mailbox_info_free(&b);
	CHECK_INT(store_mailbox_get(fx.st, "user.alice.Jobs.Old", &b, &err), 0);
	store_mailbox_info_free(&b);
	CHECK_INT(store_mailbox_rename(fx.st, "user.alice", "user.alice.X", 1, &err), -1);
	CHECK_INT(store_mailbox_delete(fx.st, "user.alice.Jobs.Old", &err), 0);
	CHECK_INT(store_mailbox_delete(fx.st, "user.alice", &err), -1);
	CHECK_INT(store_mailbox_create(fx.st, "user.bob.X", NULL, &err), -1);
	CHECK_INT(err.code, TE_NOTFOUND);
	fx_close(&fx);
}

TEST(limits_quota_and_size)
{
	struct fixture fx;
	fx_open(&fx, 100);
	struct terr err;
	store_user_create(fx.st, "alice", NULL, &err);
	char big[200];
	memset(big, 'x', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	uint32_t uid = 0;
	CHECK_INT(store_append(fx.st, "user.alice", big, strlen(big), NULL, &uid, &err), -1);
	CHECK_INT(err.code, TE_TOOBIG);
	fx_close(&fx);

	fx_open(&fx, 0);
	store_user_create(fx.st, "alice", NULL, &err);
	CHECK_INT(store_quota_set(fx.st, "user.alice", 1, -1, &err), 0);	/* 1 KiB */
	char *m = malloc(3000);
	memset(m, 'y', 2999);
	m[2999] = '\0';
	CHECK_INT(store_append(fx.st, "user.alice", m, strlen(m), NULL, &uid, &err), -1);
	CHECK_INT(err.code, TE_OVERQUOTA);
	CHECK_INT(append(&fx, "user.alice", "Subject: s\r\n\r\nsmall\r\n"), 1);
	struct store_quota q;
	CHECK_INT(store_quota_get(fx.st, "user.alice", &q, &err), 0);
	CHECK_INT(q.message_used, 1);
	store_quota_free(&q);
	struct store_mailbox_info mi;
	store_mailbox_get(fx.st, "user.alice", &mi, &err);
	CHECK_INT(mi.last_uid, 1);	/* the refused message took no UID */
	CHECK_STR(mi.quotaroot, "user.alice");
	store_mailbox_info_free(&mi);
	free(m);
	fx_close(&fx);
}

static int count_lines(const char *path, const char *needle)
{
	struct buf b = BUF_INIT;
	struct terr err;
	int n = 0;
	if (fs_read_file(path, 1 << 20, &b, &err) == 0)
		for (const char *p = b.ptr; (p = strstr(p, needle)) != NULL; p++)
			n++;
	buf_free(&b);
	return n;
}

TEST(change_log_lines_and_failure)
{
	struct fixture fx;
	fx_open(&fx, 0);
	struct terr err;
	store_user_create(fx.st, "alice", NULL, &err);
	append(&fx, "user.alice", msg1);
	char l1[4200], l2[4200];
	snprintf(l1, sizeof l1, "%s/sync/repl1/log", fx.conf);
	snprintf(l2, sizeof l2, "%s/sync/repl2/log", fx.conf);
	CHECK_INT(count_lines(l1, "APPEND user.alice\n"), 1);
	CHECK_INT(count_lines(l2, "APPEND user.alice\n"), 1);
	CHECK(count_lines(l1, "MAILBOX user.alice\n") >= 2);
	/* A change log that cannot be written fails the operation and
	 * changes nothing: replace repl2's log by a directory. */
	unlink(l2);
	CHECK_INT(mkdir(l2, 0700), 0);
	uint32_t uid = 0;
	CHECK_INT(store_append(fx.st, "user.alice", msg1, strlen(msg1), NULL, &uid, &err), -1);
	struct store_mailbox_info mi;
	store_mailbox_get(fx.st, "user.alice", &mi, &err);
	CHECK_INT(mi.last_uid, 1);
	store_mailbox_info_free(&mi);
	rmdir(l2);
	CHECK_INT(append(&fx, "user.alice", msg1), 2);
	fx_close(&fx);
}

TEST(deliver_to_many_writes_once)
{
	struct fixture fx;
	fx_open(&fx, 0);
	struct terr err, errs[3];
	store_user_create(fx.st, "alice", NULL, &err);
	store_user_create(fx.st, "bob", NULL, &err);
	const char *to[] = { "user.alice", "user.bob", "user.nobody" };
	uint32_t uids[3];
	CHECK_INT(store_deliver(fx.st, to, 3, msg1, strlen(msg1), NULL, uids, errs, &err), 0);
	CHECK_INT(uids[0], 1);
	CHECK_INT(uids[1], 1);
	CHECK_INT(uids[2], 0);
	CHECK_INT(errs[2].code, TE_NOTFOUND);
	struct buf p = BUF_INIT;
	store_message_path(fx.st, "user.bob", "b622fc18dc1d1f34429ed3354ecb3f0a7cc1bfae", &p, &err);
	struct stat sb;
	CHECK_INT(stat(p.ptr, &sb), 0);
	CHECK_INT(sb.st_nlink, 2);	/* one file, two names */
	/* a missing folder of an existing user, first (its row is read only
	 * in the write transaction, after the file): NOTFOUND for it, the
	 * next recipient delivered, the message in no other mailbox */
	const char *to2[] = { "user.alice.Gone", "user.bob" };
	static const char m2[] = "Subject: two\r\n\r\nsecond\r\n";
	CHECK_INT(store_deliver(fx.st, to2, 2, m2, strlen(m2), NULL, uids, errs, &err), 0);
	CHECK_INT(uids[0], 0);
	CHECK_INT(errs[0].code, TE_NOTFOUND);
	CHECK_INT(uids[1], 2);
	struct store_mailbox_info mi;
	CHECK_INT(store_mailbox_get(fx.st, "user.alice", &mi, &err), 0);
	CHECK_INT(mi.last_uid, 1);
	store_mailbox_info_free(&mi);
	buf_free(&p);
	fx_close(&fx);
}

/* The busy wait (store.c, store_set_busy_timeout): a write waiting for a
 * user's lock that another connection holds goes on once it is free, and
 * fails with TE_BUSY when the lock outlasts the timeout. */
TEST(busy_wait_and_timeout)
{
	struct fixture fx;
	fx_open(&fx, 0);
	struct terr err, errs[1];
	CHECK_INT(store_user_create(fx.st, "alice", NULL, &err), 0);
	char db[4200];
	snprintf(db, sizeof db, "%s/user/alice/meta.db", fx.spool);
	const char *to[] = { "user.alice" };
	uint32_t uids[1];
	for (int round = 0; round < 2; round++) {
		int pfd[2];
		CHECK_INT(pipe(pfd), 0);
		/* no database of ours open across the fork: SQLite's per-process
		 * lock bookkeeping would be the child's too */
		store_close(&fx.st);
		pid_t pid = fork();
		if (pid == 0) {
			sqlite3 *h = NULL;
			if (sqlite3_open(db, &h) != SQLITE_OK ||
			    sqlite3_exec(h, "BEGIN IMMEDIATE; UPDATE meta SET value = value WHERE key = 'schema';",
					 NULL, NULL, NULL) != SQLITE_OK)
				_exit(1);
			char c = 'l';
			if (write(pfd[1], &c, 1) != 1)
				_exit(1);
			usleep(round == 0 ? 150000 : 1500000);
			sqlite3_exec(h, "COMMIT;", NULL, NULL, NULL);
			sqlite3_close(h);
			_exit(0);
		}
		char c;
		CHECK_INT(read(pfd[0], &c, 1), 1);	/* the child holds the lock */
		struct store_opts o = { fx.conf, "default", fx.spool, fx.log, 0, 0, NULL, NULL, NULL };
		CHECK_INT(store_open(&o, &fx.st, &err), 0);
		store_set_busy_timeout(fx.st, round == 0 ? 5000 : 300);
		int rc = store_deliver(fx.st, to, 1, msg1, strlen(msg1), NULL, uids, errs, &err);
		if (round == 0) {
			CHECK_INT(rc, 0);	/* waited for the child's COMMIT */
			CHECK_INT(uids[0], 1);
		} else {
			CHECK_INT(rc, -1);	/* 300 ms < the child's 1.5 s */
			CHECK_INT(errs[0].code, TE_BUSY);
		}
		int status;
		CHECK_INT(waitpid(pid, &status, 0), pid);
		CHECK_INT(WEXITSTATUS(status), 0);
		close(pfd[0]);
		close(pfd[1]);
	}
	fx_close(&fx);
}

/* A delivery in a forked child, after the parent delivered (its syncer
 * thread started, its pid kept by store_blob.c): the child starts its own
 * syncer (a fork copies no thread) and names its temporary files with its
 * own pid; without it, it would wait for ever on the parent's thread. */
TEST(deliver_after_fork)
{
	struct fixture fx;
	fx_open(&fx, 0);
	struct terr err, errs[1];
	CHECK_INT(store_user_create(fx.st, "alice", NULL, &err), 0);
	const char *to[] = { "user.alice" };
	uint32_t uids[1];
	CHECK_INT(store_deliver(fx.st, to, 1, msg1, strlen(msg1), NULL, uids, errs, &err), 0);
	store_close(&fx.st);	/* no database open across the fork */
	pid_t pid = fork();
	if (pid == 0) {
		alarm(20);
		struct store_opts o = { fx.conf, "default", fx.spool, fx.log, 0, 0, NULL, NULL, NULL };
		struct store *st = NULL;
		static const char m[] = "Subject: child\r\n\r\nfrom the child\r\n";
		if (store_open(&o, &st, &err) < 0 ||
		    store_deliver(st, to, 1, m, strlen(m), NULL, uids, errs, &err) < 0 || uids[0] != 2)
			_exit(1);
		store_close(&st);
		_exit(0);
	}
	int status;
	CHECK_INT(waitpid(pid, &status, 0), pid);
	CHECK(WIFEXITED(status));
	CHECK_INT(WEXITSTATUS(status), 0);
	struct store_opts o = { fx.conf, "default", fx.spool, fx.log, 0, 0, NULL, NULL, NULL };
	CHECK_INT(store_open(&o, &fx.st, &err), 0);
	static const char m3[] = "Subject: parent\r\n\r\nagain\r\n";
	CHECK_INT(store_deliver(fx.st, to, 1, m3, strlen(m3), NULL, uids, errs, &err), 0);
	CHECK_INT(uids[0], 3);
	fx_close(&fx);
}

/* The after-commit hook (synchronous replication): once per committed
 * transaction that logged, after COMMIT, with where its lines ended in
 * each channel's log; once for all the recipients of a delivery. */
static int count_rec(const struct store_record *r, void *rock)
{
	(*(size_t *)rock)++;
	return 0;
}

struct hook_calls {
	int n;
	size_t npos;
	char owner[64], mailbox[64];
	unsigned long long last_offset;
	int committed;		/* the change was visible when the hook ran */
	struct store *st;
};

static void hook(void *rock, const struct store_commit *c)
{
	struct hook_calls *h = rock;
	h->n++;
	h->npos = c->npos;
	snprintf(h->owner, sizeof h->owner, "%s", c->owner);
	snprintf(h->mailbox, sizeof h->mailbox, "%s", c->mailbox);
	for (size_t i = 0; i < c->npos; i++)
		if (!strcmp(c->pos[i].channel, "repl1"))
			h->last_offset = c->pos[i].offset;
	size_t n = 0;
	struct terr err;
	h->committed = store_records(h->st, "user.alice", 0, 0, count_rec, &n, &err) == 0 && n > 0;
}

TEST(after_commit_hook)
{
	struct fixture fx;
	fx_open(&fx, 0);
	struct terr err, errs[2];
	struct hook_calls h = { .st = fx.st };
	store_user_create(fx.st, "alice", NULL, &err);
	store_user_create(fx.st, "bob", NULL, &err);
	store_set_after_commit(fx.st, hook, &h);
	CHECK_INT(append(&fx, "user.alice", msg1), 1);
	CHECK_INT(h.n, 1);
	CHECK_INT(h.npos, 2);	/* repl1 and repl2 */
	CHECK_STR(h.owner, "alice");
	CHECK_STR(h.mailbox, "user.alice");
	CHECK(h.committed);
	struct buf p = BUF_INIT;
	chlog_path(fx.conf, "repl1", "log", &p);
	struct stat sb;
	CHECK_INT(stat(p.ptr, &sb), 0);
	CHECK_U64(h.last_offset, sb.st_size);
	const char *to[] = { "user.bob", "user.alice" };
	uint32_t uids[2];
	CHECK_INT(store_deliver(fx.st, to, 2, msg1, strlen(msg1), NULL, uids, errs, &err), 0);
	CHECK_INT(h.n, 2);	/* one call for both recipients */
	CHECK_INT(h.npos, 4);
	CHECK_STR(h.owner, "bob");
	CHECK_INT(stat(p.ptr, &sb), 0);
	CHECK_U64(h.last_offset, sb.st_size);
	/* a read-only call, or none installed: no call */
	size_t n = 0;
	CHECK_INT(store_records(fx.st, "user.bob", 0, 0, count_rec, &n, &err), 0);
	CHECK_INT(n, 1);
	CHECK_INT(h.n, 2);
	store_set_after_commit(fx.st, NULL, NULL);
	CHECK_INT(append(&fx, "user.alice", msg1), 3);
	CHECK_INT(h.n, 2);
	buf_free(&p);
	fx_close(&fx);
}

TEST(annotations_seen_subs_sieve)
{
	struct fixture fx;
	fx_open(&fx, 0);
	struct terr err;
	store_user_create(fx.st, "alice", NULL, &err);
	store_user_create(fx.st, "bob", NULL, &err);
	append(&fx, "user.alice", msg1);
	CHECK_INT(store_annot_set(fx.st, "user.alice", 1, "/comment", "alice", "hello", 5, &err), 0);
	CHECK(crc_ok(&fx, "user.alice"));
	CHECK_INT(store_annot_set(fx.st, "user.alice", 1, "/comment", "alice", "bye!", 4, &err), 0);
	CHECK(crc_ok(&fx, "user.alice"));
	CHECK_INT(store_annot_set(fx.st, "user.alice", 0, "/comment", "", "box", 3, &err), 0);
	CHECK_INT(store_annot_set(fx.st, "user.alice", 1, "/comment", "alice", "", 0, &err), 0);
	CHECK(crc_ok(&fx, "user.alice"));
	struct store_seen s = { 1700000000, 3, 1700000001, "1:3" }, g;
	CHECK_INT(store_seen_set(fx.st, "bob", "abcdef", &s, &err), 0);
	CHECK_INT(store_seen_get(fx.st, "bob", "abcdef", &g, &err), 0);
	CHECK_STR(g.seenuids, "1:3");
	free(g.seenuids);
	CHECK_INT(store_subscribe(fx.st, "bob", "user.alice", 1, &err), 0);
	CHECK_INT(store_sieve_put(fx.st, "bob", "main", "keep;", 5, &err), 0);
	CHECK_INT(store_sieve_activate(fx.st, "bob", "main", &err), 0);
	fx_close(&fx);
}

/* A random workload: the kept CRCs always equal the recomputed ones and
 * the store checks clean. */
TEST(random_workload_keeps_crcs)
{
	struct fixture fx;
	fx_open(&fx, 0);
	struct terr err;
	/* a fixed seed unless TANDEM_SEED gives one; printed on any failure */
	const char *env_seed = getenv("TANDEM_SEED");
	unsigned seed = env_seed && *env_seed ? (unsigned)strtoul(env_seed, NULL, 10) : 20261205u;
	int failed_before = test_failed_checks;
	srand(seed);
	store_user_create(fx.st, "alice", NULL, &err);
	store_mailbox_create(fx.st, "user.alice.A", NULL, &err);
	const char *boxes[] = { "user.alice", "user.alice.A" };
	static const char *kws[] = { NULL, "$Label1", "work", "$Label1 urgent" };
	for (int i = 0; i < 200; i++) {
		const char *mb = boxes[rand() % 2];
		int op = rand() % 4;
		char body[64];
		snprintf(body, sizeof body, "Subject: %d\r\n\r\n%d\r\n", i, rand());
		if (op == 0 || op == 1) {
			append(&fx, mb, body);
		} else if (op == 2) {
			uint32_t u = (uint32_t)(rand() % 20 + 1);
			store_set_flags(fx.st, mb, &u, 1, (enum store_flag_op)(rand() % 3),
					(unsigned)(rand() % 32), kws[rand() % 4], 0, NULL, &err);
		} else {
			uint32_t u = (uint32_t)(rand() % 20 + 1);
			store_expunge(fx.st, mb, &u, 1, NULL, &err);
		}
	}
	CHECK(crc_ok(&fx, "user.alice"));
	CHECK(crc_ok(&fx, "user.alice.A"));
	struct buf rep = BUF_INIT;
	CHECK_INT(store_check_user(fx.st, "alice", 1, &rep, &err), 0);
	if (rep.len)
		printf("  %s", rep.ptr);
	buf_free(&rep);
	if (test_failed_checks != failed_before)
		printf("  random_workload_keeps_crcs failed with seed %u (rerun with TANDEM_SEED=%u)\n", seed, seed);
	fx_close(&fx);
}

/* A process killed after SQLite created a user's meta.db and before the
 * schema was committed leaves an empty file: the next open must make the
 * schema, not fail with "no such table" forever (found by test_faults'
 * SIGKILL of the replica). */
TEST(empty_user_database_left_by_a_kill)
{
	struct fixture fx;
	fx_open(&fx, 0);
	struct terr err;
	CHECK_INT(store_user_create(fx.st, "alice", NULL, &err), 0);
	/* the user is known, its meta.db is what a kill right after
	 * SQLite's open leaves: an empty file */
	store_close(&fx.st);
	char db[4300];
	const char *suffix[] = { "", "-wal", "-shm" };
	for (int i = 0; i < 3; i++) {
		snprintf(db, sizeof db, "%s/user/alice/meta.db%s", fx.spool, suffix[i]);
		unlink(db);
	}
	snprintf(db, sizeof db, "%s/user/alice/meta.db", fx.spool);
	FILE *f = fopen(db, "w");
	CHECK(f != NULL);
	if (f)
		fclose(f);
	struct store_opts o = { fx.conf, "default", fx.spool, fx.log, 0, 0, NULL, NULL, NULL };
	CHECK_INT(store_open(&o, &fx.st, &err), 0);
	CHECK_INT(store_user_exists(fx.st, "alice", &err), 1);
	/* as a replica's APPLY MAILBOX would: the mailbox is made again */
	struct store_apply_record rec = { .uid = 1, .modseq = 4, .last_updated = 1795334828, .keywords = "$Label1",
					  .internaldate = 1704067200, .size = 141,
					  .guid = "b622fc18dc1d1f34429ed3354ecb3f0a7cc1bfae" };
	struct store_apply a = { .uniqueid = "p603xvbfqrngduw72ylfjqki", .name = "user.alice", .last_uid = 1,
				 .highestmodseq = 4, .uidvalidity = 1795334821, .createdmodseq = 1,
				 .partition = "default", .acl = "alice\tlrswipkxtecdan\t", .options = "P",
				 .recs = &rec, .nrecs = 1, .body = apply_body1 };
	int rc = store_apply_mailbox(fx.st, &a, &err);
	if (rc < 0)
		printf("  apply: %s\n", err.msg);
	CHECK_INT(rc, 0);
	struct store_mailbox_info mi;
	CHECK_INT(store_mailbox_get(fx.st, "user.alice", &mi, &err), 0);
	if (mi.uniqueid)
		store_mailbox_info_free(&mi);
	CHECK_INT(append(&fx, "user.alice", msg1), 2);
	CHECK(crc_ok(&fx, "user.alice"));
	fx_close(&fx);
}

static int dir_has_prefix(const char *dir, const char *prefix)
{
	DIR *d = opendir(dir);
	int n = 0;
	struct dirent *de;
	while (d && (de = readdir(d)))
		n += !strncmp(de->d_name, prefix, strlen(prefix));
	if (d)
		closedir(d);
	return n;
}

static int is_dir(const char *dir, const char *sub)
{
	char p[4400];
	struct stat sb;
	snprintf(p, sizeof p, "%s/%s", dir, sub);
	return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/* A new owner's directory is built under <partition>/tmp and moved into
 * place whole: its database in WAL mode with the whole schema, tmp/ and
 * blobs/ there; the build of a process that is gone is removed; a
 * directory that is there without its database gets one made in place. */
TEST(new_owner_directory_built_apart)
{
	struct fixture fx;
	fx_open(&fx, 0);
	struct terr err;
	pid_t pid = fork();
	if (pid == 0)
		_exit(0);
	waitpid(pid, NULL, 0);	/* a pid that is gone */
	char tmpdir[4200], stale[4400], userdir[4200];
	snprintf(tmpdir, sizeof tmpdir, "%s/tmp", fx.spool);
	CHECK_INT(fs_mkdir_p(tmpdir, 0750, &err), 0);
	snprintf(stale, sizeof stale, "%s/newowner-%ld-1", tmpdir, (long)pid);
	CHECK_INT(fs_mkdir_p(stale, 0750, &err), 0);
	snprintf(stale, sizeof stale, "%s/newowner-%ld-1/meta.db", tmpdir, (long)pid);
	FILE *f = fopen(stale, "w");
	CHECK(f != NULL);
	if (f)
		fclose(f);
	CHECK_INT(store_user_create(fx.st, "alice", NULL, &err), 0);
	CHECK_INT(dir_has_prefix(tmpdir, "newowner-"), 0);
	snprintf(userdir, sizeof userdir, "%s/user/alice", fx.spool);
	CHECK(is_dir(userdir, "tmp"));
	CHECK(is_dir(userdir, "blobs"));
	char db[4300];
	snprintf(db, sizeof db, "%s/meta.db", userdir);
	sqlite3 *h = NULL;
	CHECK_INT(sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	sqlite3_stmt *q = NULL;
	CHECK_INT(sqlite3_prepare_v2(h, "PRAGMA journal_mode;", -1, &q, NULL), SQLITE_OK);
	CHECK_INT(sqlite3_step(q), SQLITE_ROW);
	CHECK_STR((const char *)sqlite3_column_text(q, 0), "wal");
	sqlite3_finalize(q);
	CHECK_INT(sqlite3_prepare_v2(h, "SELECT count(*) FROM sqlite_master WHERE name IN ('mailboxes', 'records', 'cache', 'recent');",
				     -1, &q, NULL), SQLITE_OK);
	CHECK_INT(sqlite3_step(q), SQLITE_ROW);
	CHECK_INT(sqlite3_column_int(q, 0), 4);
	sqlite3_finalize(q);
	sqlite3_close(h);
	CHECK_INT(append(&fx, "user.alice", msg1), 1);
	CHECK(crc_ok(&fx, "user.alice"));
	/* the next one is a copy of the first (the process's template) */
	CHECK_INT(store_user_create(fx.st, "carol", NULL, &err), 0);
	snprintf(db, sizeof db, "%s/user/carol/meta.db", fx.spool);
	CHECK_INT(sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	CHECK_INT(sqlite3_prepare_v2(h, "PRAGMA journal_mode;", -1, &q, NULL), SQLITE_OK);
	CHECK_INT(sqlite3_step(q), SQLITE_ROW);
	CHECK_STR((const char *)sqlite3_column_text(q, 0), "wal");
	sqlite3_finalize(q);
	CHECK_INT(sqlite3_prepare_v2(h, "PRAGMA user_version;", -1, &q, NULL), SQLITE_OK);
	CHECK_INT(sqlite3_step(q), SQLITE_ROW);
	CHECK_INT(sqlite3_column_int(q, 0), 2);
	sqlite3_finalize(q);
	sqlite3_close(h);
	CHECK_INT(append(&fx, "user.carol", msg1), 1);
	CHECK_INT(append(&fx, "user.carol", msg1), 2);
	CHECK(crc_ok(&fx, "user.carol"));
	/* a directory without its database (made by hand, or by a build of
	 * tandem before this): the database is made in it */
	snprintf(userdir, sizeof userdir, "%s/user/bob", fx.spool);
	CHECK_INT(fs_mkdir_p(userdir, 0750, &err), 0);
	CHECK_INT(store_user_create(fx.st, "bob", NULL, &err), 0);
	CHECK_INT(append(&fx, "user.bob", msg1), 1);
	CHECK(is_dir(userdir, "tmp"));
	CHECK_INT(dir_has_prefix(tmpdir, "newowner-"), 0);
	fx_close(&fx);
}

/* Waits (up to 30 s) until the process has built at least n spares in
 * all and tmpdir holds want of them. */
static int spares_ready(const char *tmpdir, unsigned long n, int want)
{
	for (int i = 0; i < 3000; i++) {
		unsigned long taken, built;
		store_spare_counts(&taken, &built);
		if (built >= n && dir_has_prefix(tmpdir, "newowner-") == want)
			return 1;
		usleep(10000);
	}
	return 0;
}

static int owner_whole(const char *spool, const char *user)
{
	char dir[4200], db[4300];
	snprintf(dir, sizeof dir, "%s/user/%s", spool, user);
	snprintf(db, sizeof db, "%s/meta.db", dir);
	sqlite3 *h = NULL;
	sqlite3_stmt *q = NULL;
	int ok = is_dir(dir, "tmp") && is_dir(dir, "blobs") &&
		 sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
		 sqlite3_prepare_v2(h, "PRAGMA user_version;", -1, &q, NULL) == SQLITE_OK &&
		 sqlite3_step(q) == SQLITE_ROW && sqlite3_column_int(q, 0) == 2;
	sqlite3_finalize(q);
	sqlite3_close(h);
	return ok;
}

/* A store with spares enabled: after its first new owner a thread keeps
 * OWNER_SPARE_MAX whole directories ready; the next new owners are
 * renamed into place from them; a spare finds its place taken and stays;
 * a forked child has none; closing the store removes those not taken. */
TEST(new_owners_from_spares)
{
	struct fixture fx;
	fx_open(&fx, 0);
	struct terr err;
	char tmpdir[4200], user[64], dir[4300];
	snprintf(tmpdir, sizeof tmpdir, "%s/tmp", fx.spool);
	unsigned long taken0, built0, taken, built;
	store_spare_counts(&taken0, &built0);
	store_spares_enable(fx.st);
	CHECK_INT(store_user_create(fx.st, "u0", NULL, &err), 0);
	CHECK(spares_ready(tmpdir, built0 + OWNER_SPARE_MAX, OWNER_SPARE_MAX));
	/* the next one is a spare moved into place */
	CHECK_INT(store_user_create(fx.st, "u1", NULL, &err), 0);
	store_spare_counts(&taken, &built);
	CHECK_INT((long)(taken - taken0), 1);
	for (int i = 2; i < 9; i++) {
		snprintf(user, sizeof user, "u%d", i);
		CHECK_INT(store_user_create(fx.st, user, NULL, &err), 0);
	}
	for (int i = 0; i < 9; i++) {
		snprintf(user, sizeof user, "u%d", i);
		CHECK(owner_whole(fx.spool, user));
		snprintf(user, sizeof user, "user.u%d", i);
		CHECK_INT(append(&fx, user, msg1), 1);
		CHECK(crc_ok(&fx, user));
	}
	CHECK(spares_ready(tmpdir, 0, OWNER_SPARE_MAX));
	/* a place already taken (another process made that owner): the
	 * spare stays for the next */
	store_spare_counts(&taken0, &built0);
	snprintf(dir, sizeof dir, "%s/user/u1", fx.spool);
	CHECK_INT(store_spare_take(tmpdir, dir), 2);
	CHECK(spares_ready(tmpdir, 0, OWNER_SPARE_MAX));	/* the one made meanwhile went */
	store_spare_counts(&taken, &built);
	CHECK_INT((long)(taken - taken0), 0);
	/* another partition's tmp/: none */
	snprintf(dir, sizeof dir, "%s/user/elsewhere", fx.spool);
	CHECK_INT(store_spare_take("/nonexistent/tmp", dir), 0);
	/* a child of the process: the spares are its parent's */
	pid_t pid = fork();
	if (pid == 0)
		_exit(store_spare_take(tmpdir, dir) == 0 ? 0 : 1);
	int status = -1;
	waitpid(pid, &status, 0);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	CHECK_INT(dir_has_prefix(tmpdir, "newowner-"), OWNER_SPARE_MAX);
	CHECK(!is_dir(fx.spool, "user/elsewhere"));
	/* a rename that fails otherwise (here: no parent): that spare goes,
	 * the caller builds in place (and reports what is wrong), the thread
	 * makes the next */
	snprintf(dir, sizeof dir, "%s/nowhere/u9", fx.spool);
	CHECK_INT(store_spare_take(tmpdir, dir), 0);
	CHECK(spares_ready(tmpdir, 0, OWNER_SPARE_MAX));
	store_close(&fx.st);	/* the store that enabled them: the spares go */
	CHECK_INT(dir_has_prefix(tmpdir, "newowner-"), 0);
	fx_close(&fx);
}

TEST(user_delete_removes_everything)
{
	struct fixture fx;
	fx_open(&fx, 0);
	struct terr err;
	store_user_create(fx.st, "alice", NULL, &err);
	append(&fx, "user.alice", msg1);
	CHECK_INT(store_user_delete(fx.st, "alice", &err), 0);
	CHECK_INT(store_user_exists(fx.st, "alice", &err), 0);
	struct store_mailbox_info mi;
	CHECK_INT(store_mailbox_get(fx.st, "user.alice", &mi, &err), -1);
	char l1[4200];
	snprintf(l1, sizeof l1, "%s/sync/repl1/log", fx.conf);
	CHECK_INT(count_lines(l1, "UNUSER alice\n"), 1);
	CHECK_INT(store_user_create(fx.st, "alice", NULL, &err), 0);
	CHECK_INT(append(&fx, "user.alice", msg1), 1);
	fx_close(&fx);
}

/* The sync client's way to its message files: open by name in the
 * owner's blobs/ directory (kept open across calls of the same owner),
 * the size from the open file; a missing one is TE_NOTFOUND; a user
 * removed and made again behind a kept directory is still found. */
TEST(message_open_in_kept_blobs_directory)
{
	struct fixture fx;
	fx_open(&fx, 0);
	struct terr err;
	const char *g1 = "b622fc18dc1d1f34429ed3354ecb3f0a7cc1bfae";
	store_user_create(fx.st, "alice", NULL, &err);
	store_user_create(fx.st, "bob", NULL, &err);
	CHECK_INT(append(&fx, "user.alice", msg1), 1);
	CHECK_INT(append(&fx, "user.bob", msg1), 1);
	struct store_blobdir bd = STORE_BLOBDIR_INIT;
	struct buf path = BUF_INIT, want = BUF_INIT;
	int fd = -1;
	uint64_t size = 0;
	CHECK_INT(store_message_open(fx.st, "user.alice", g1, &bd, &fd, &size, &path, &err), 0);
	CHECK(fd >= 0);
	CHECK_U64(size, strlen(msg1));
	store_message_path(fx.st, "user.alice", g1, &want, &err);
	CHECK_STR(buf_cstr(&path), buf_cstr(&want));
	char b[16] = "";
	CHECK_INT(read(fd, b, 10), 10);
	CHECK_MEM(b, 10, msg1, 10);
	close(fd);
	int kept = bd.fd;
	CHECK(kept >= 0);
	/* another of the same owner: the same directory descriptor */
	CHECK_INT(store_message_open(fx.st, "user.alice", "dd990e17223c8af162b6ebf2dbb75cb7f711465b", &bd, &fd, &size,
				     &path, &err), -1);
	CHECK_INT(err.code, TE_NOTFOUND);
	CHECK_INT(fd, -1);
	/* another owner: its own directory */
	CHECK_INT(store_message_open(fx.st, "user.bob", g1, &bd, &fd, &size, &path, &err), 0);
	close(fd);
	CHECK(strstr(bd.dir, "bob") != NULL);
	/* bob removed and made again: the kept descriptor is of the old
	 * directory, the file is found in the new one */
	CHECK_INT(store_user_delete(fx.st, "bob", &err), 0);
	CHECK_INT(store_user_create(fx.st, "bob", NULL, &err), 0);
	CHECK_INT(append(&fx, "user.bob", msg1), 1);
	fd = -1;
	CHECK_INT(store_message_open(fx.st, "user.bob", g1, &bd, &fd, &size, &path, &err), 0);
	CHECK(fd >= 0);
	CHECK_U64(size, strlen(msg1));
	if (fd >= 0)
		close(fd);
	store_blobdir_close(&bd);
	CHECK_INT(bd.fd, -1);
	buf_free(&path);
	buf_free(&want);
	fx_close(&fx);
}

/* ---- the message cache ---- */

static int cache_calls;

/* The real message cache (src/msgcache), counted. */
static void real_cache(const void *data, size_t len, struct store_cache_strings *out)
{
	cache_calls++;
	msgcache_compute(data, len, out);
}

/* The ENVELOPE msgcache makes of a message, as the store should keep it. */
static void envelope_of(const char *msg, char *out, size_t size)
{
	struct store_cache_strings strs;
	memset(&strs, 0, sizeof strs);
	msgcache_compute(msg, strlen(msg), &strs);
	snprintf(out, size, "%.*s", (int)strs.envelope.len, strs.envelope.ptr ? strs.envelope.ptr : "");
	store_cache_strings_free(&strs);
}

struct cache_seen {
	size_t n;
	uint32_t uids[16];
	char env[16][512];
	int null[16];
};

static int cache_cb(const struct store_cache_row *row, void *rock)
{
	struct cache_seen *cs = rock;
	if (cs->n >= 16)
		return 1;
	cs->uids[cs->n] = row->uid;
	cs->null[cs->n] = !row->envelope || !row->bodystructure || !row->body;
	snprintf(cs->env[cs->n], sizeof cs->env[0], "%.*s", (int)row->envelope_len,
		 row->envelope ? row->envelope : "");
	cs->n++;
	return 0;
}

static struct cache_seen cache_range(struct fixture *fx, const char *mbox, uint32_t lo, uint32_t hi)
{
	struct cache_seen cs;
	memset(&cs, 0, sizeof cs);
	struct terr err;
	if (store_cache_range(fx->st, mbox, lo, hi, cache_cb, &cs, &err) < 0)
		printf("  cache range: %s\n", err.msg);
	return cs;
}

static const char msg2[] = "Subject: two\r\n\r\nsecond\r\n";
static const char msg3[] = "Subject: three\r\n\r\nthird message\r\n";

static int apply_body(void *rock, const char *guid, const void **data_r, size_t *len_r)
{
	*data_r = rock;
	*len_r = strlen(rock);
	return 0;
}

TEST(message_cache)
{
	struct fixture fx;
	fx_open_cache(&fx, 0, real_cache);
	struct terr err, errs[2];
	store_user_create(fx.st, "alice", NULL, &err);
	store_user_create(fx.st, "bob", NULL, &err);
	cache_calls = 0;
	CHECK_INT(append(&fx, "user.alice", msg1), 1);
	CHECK_INT(append(&fx, "user.alice", msg2), 2);
	CHECK_INT(append(&fx, "user.alice", msg1), 3);	/* same GUID: one row */
	CHECK_INT(cache_calls, 2);
	struct cache_seen cs = cache_range(&fx, "user.alice", 1, UINT32_MAX);
	CHECK_INT(cs.n, 3);
	CHECK_INT(cs.uids[1], 2);
	CHECK_INT(cs.null[0] + cs.null[1] + cs.null[2], 0);
	char want[512];
	envelope_of(msg2, want, sizeof want);
	CHECK(strstr(want, "\"two\"") != NULL);	/* msgcache's ENVELOPE has the subject */
	CHECK_STR(cs.env[1], want);
	cs = cache_range(&fx, "user.alice", 2, 2);
	CHECK_INT(cs.n, 1);
	CHECK_INT(cs.uids[0], 2);
	/* expunged records are not listed */
	uint32_t two = 2;
	CHECK_INT(store_expunge(fx.st, "user.alice", &two, 1, NULL, &err), 0);
	cs = cache_range(&fx, "user.alice", 1, 10);
	CHECK_INT(cs.n, 2);
	CHECK_INT(cs.uids[1], 3);
	/* delivery to several owners: each owner's database has the row */
	const char *to[] = { "user.alice", "user.bob" };
	uint32_t uids[2];
	CHECK_INT(store_deliver(fx.st, to, 2, msg3, strlen(msg3), NULL, uids, errs, &err), 0);
	cs = cache_range(&fx, "user.bob", 1, 10);
	CHECK_INT(cs.n, 1);
	CHECK_INT(cs.null[0], 0);
	/* a mailbox made by a replica's apply (body sent) gets rows */
	struct store_apply_record rec = { .uid = 7, .modseq = 5, .last_updated = 1, .keywords = "",
					  .internaldate = 1704067200, .size = (uint32_t)strlen(msg2) };
	sha1_hex(msg2, strlen(msg2), rec.guid);
	struct store_apply a = { .uniqueid = "abcdefghijklmnopqrstuvwx", .name = "user.carol",
				 .last_uid = 7, .highestmodseq = 5, .uidvalidity = 42, .createdmodseq = 1,
				 .recs = &rec, .nrecs = 1, .body = apply_body, .body_rock = (void *)msg2 };
	CHECK_INT(store_apply_mailbox(fx.st, &a, &err), 0);
	cs = cache_range(&fx, "user.carol", 1, 10);
	CHECK_INT(cs.n, 1);
	CHECK_INT(cs.uids[0], 7);
	CHECK_INT(cs.null[0], 0);
	CHECK_STR(cs.env[0], want);
	/* stored without a cache function: NULL strings; store_cache_put fills */
	store_close(&fx.st);
	struct store_opts o = { fx.conf, "default", fx.spool, fx.log, 0, 0, NULL, NULL, NULL };
	CHECK_INT(store_open(&o, &fx.st, &err), 0);
	CHECK_INT(append(&fx, "user.bob", msg1), 2);
	cs = cache_range(&fx, "user.bob", 1, 10);
	CHECK_INT(cs.n, 2);
	CHECK_INT(cs.null[1], 1);
	const char *guids[1] = { "b622fc18dc1d1f34429ed3354ecb3f0a7cc1bfae" };
	struct store_cache_strings strs[1];
	memset(strs, 0, sizeof strs);
	msgcache_compute(msg1, strlen(msg1), &strs[0]);
	CHECK_INT(store_cache_put(fx.st, "user.bob", guids, strs, 1, &err), 0);
	store_cache_strings_free(&strs[0]);
	cs = cache_range(&fx, "user.bob", 1, 10);
	CHECK_INT(cs.null[1], 0);
	envelope_of(msg1, want, sizeof want);
	CHECK(strstr(want, "\"hello\"") != NULL);
	CHECK_STR(cs.env[1], want);
	CHECK(crc_ok(&fx, "user.bob"));
	fx_close(&fx);
}

/* The header block is cached (SEARCH/SORT read it instead of the file);
 * a database made before the headers column gains it at open: its old
 * rows have none (searched from the file), new ones do. */
TEST(message_cache_headers_and_migration)
{
	struct fixture fx;
	fx_open_cache(&fx, 0, real_cache);
	struct terr err;
	CHECK_INT(store_user_create(fx.st, "alice", NULL, &err), 0);
	CHECK_INT(append(&fx, "user.alice", msg2), 1);
	char g2[41], g3[41];
	sha1_hex(msg2, strlen(msg2), g2);
	sha1_hex(msg3, strlen(msg3), g3);
	struct buf h = BUF_INIT;
	CHECK_INT(store_cache_headers(fx.st, "user.alice", g2, &h, &err), 1);
	CHECK_STR(buf_cstr(&h), "Subject: two\r\n\r\n");
	buf_reset(&h);
	CHECK_INT(store_cache_headers(fx.st, "user.alice", g3, &h, &err), 0);	/* no such row */
	/* a header over MSGCACHE_HEADERS_MAX is not kept */
	struct buf big = BUF_INIT;
	buf_appends(&big, "Subject: big\r\n");
	while (big.len <= MSGCACHE_HEADERS_MAX)
		buf_appends(&big, "Received: from a.example by b.example; Thu, 1 Jan 2026 00:00:00 +0000\r\n");
	buf_appends(&big, "\r\nbody\r\n");
	CHECK_INT(append(&fx, "user.alice", big.ptr), 2);
	char gb[41];
	sha1_hex(big.ptr, big.len, gb);
	CHECK_INT(store_cache_headers(fx.st, "user.alice", gb, &h, &err), 0);
	struct cache_seen cs = cache_range(&fx, "user.alice", 2, 2);
	CHECK_INT(cs.n, 1);
	CHECK_INT(cs.null[0], 0);	/* its other strings are */
	buf_free(&big);
	store_close(&fx.st);
	/* make it a database of the version before: no headers column */
	char path[4200];
	snprintf(path, sizeof path, "%s/user/alice/meta.db", fx.spool);
	sqlite3 *db;
	CHECK_INT(sqlite3_open(path, &db), SQLITE_OK);
	CHECK_INT(sqlite3_exec(db, "ALTER TABLE cache DROP COLUMN headers; PRAGMA user_version = 1;", NULL, NULL, NULL),
		  SQLITE_OK);
	sqlite3_close(db);
	struct store_opts o = { fx.conf, "default", fx.spool, fx.log, 0, 0, real_cache, NULL, NULL };
	CHECK_INT(store_open(&o, &fx.st, &err), 0);
	CHECK_INT(store_cache_headers(fx.st, "user.alice", g2, &h, &err), 0);	/* an old row: none */
	CHECK_INT(append(&fx, "user.alice", msg3), 3);
	CHECK_INT(store_cache_headers(fx.st, "user.alice", g3, &h, &err), 1);
	CHECK_STR(buf_cstr(&h), "Subject: three\r\n\r\n");
	cs = cache_range(&fx, "user.alice", 1, 10);
	CHECK_INT(cs.n, 3);
	CHECK(crc_ok(&fx, "user.alice"));
	buf_free(&h);
	fx_close(&fx);
}

/* A user database whose schema was never committed (a kill between
 * creating the file and COMMIT) gets it at the next open. */
TEST(empty_database_gets_schema)
{
	struct fixture fx;
	fx_open(&fx, 0);
	struct terr err;
	CHECK_INT(store_user_create(fx.st, "alice", NULL, &err), 0);
	store_close(&fx.st);
	char path[4200];
	snprintf(path, sizeof path, "%s/user/alice/meta.db", fx.spool);
	CHECK_INT(access(path, F_OK), 0);
	FILE *f = fopen(path, "w");	/* truncated: no tables at all */
	CHECK(f != NULL);
	if (f)
		fclose(f);
	snprintf(path, sizeof path, "%s/user/alice/meta.db-wal", fx.spool);
	unlink(path);
	struct store_opts o = { fx.conf, "default", fx.spool, fx.log, 0, 0, NULL, NULL, NULL };
	CHECK_INT(store_open(&o, &fx.st, &err), 0);
	CHECK_INT(store_mailbox_create(fx.st, "user.alice", NULL, &err), 0);
	struct store_mailbox_info mi;
	CHECK_INT(store_mailbox_get(fx.st, "user.alice", &mi, &err), 0);
	store_mailbox_info_free(&mi);
	fx_close(&fx);
}

/* MULTIAPPEND: one transaction, consecutive UIDs, all or none, UIDs
 * reported only for a stored batch. */
TEST(append_multi)
{
	struct fixture fx;
	fx_open(&fx, 0);
	struct terr err;
	store_user_create(fx.st, "alice", NULL, &err);
	struct store_append_msg m[3] = {
		{ "Subject: a\r\n\r\na\r\n", 16, { SYSFLAG_SEEN, NULL, 0 } },
		{ "Subject: b\r\n\r\nbb\r\n", 17, { 0, "$Label1", 1700000000 } },
		{ "Subject: a\r\n\r\na\r\n", 16, { 0, NULL, 0 } },
	};
	uint32_t uids[3] = { 0, 0, 0 };
	CHECK_INT(store_append_multi(fx.st, "user.alice", m, 3, uids, &err), 0);
	CHECK_INT(uids[0], 1);
	CHECK_INT(uids[1], 2);
	CHECK_INT(uids[2], 3);
	CHECK(crc_ok(&fx, "user.alice"));
	struct store_mailbox_info mi;
	store_mailbox_get(fx.st, "user.alice", &mi, &err);
	CHECK_INT(mi.exists, 3);
	store_mailbox_info_free(&mi);
	/* over quota together: nothing stored, no UID given */
	CHECK_INT(store_quota_set(fx.st, "user.alice", 1, -1, &err), 0);	/* 1 KiB */
	char *big = malloc(700);
	memset(big, 'z', 699);
	big[699] = '\0';
	struct store_append_msg two[2] = { { big, 699, { 0, NULL, 0 } }, { big, 699, { 0, NULL, 0 } } };
	uint32_t u2[2] = { 0, 0 };
	CHECK_INT(store_append_multi(fx.st, "user.alice", two, 1, u2, &err), 0);	/* one fits */
	CHECK_INT(u2[0], 4);
	u2[0] = 0;
	CHECK_INT(store_append_multi(fx.st, "user.alice", two, 2, u2, &err), -1);
	CHECK_INT(err.code, TE_OVERQUOTA);
	CHECK_INT(u2[0], 0);
	CHECK_INT(u2[1], 0);
	store_mailbox_get(fx.st, "user.alice", &mi, &err);
	CHECK_INT(mi.exists, 4);
	CHECK_INT(mi.last_uid, 4);
	store_mailbox_info_free(&mi);
	free(big);
	fx_close(&fx);
}

/* MOVE into the mailbox it comes from (RFC 6851 allows it: new UIDs, the
 * old ones expunged) is one transaction like any other store_copy: a
 * kill between a copy and its expunge left the message twice (found by
 * test_faults' SIGKILL of the master). */
TEST(move_within_one_mailbox)
{
	struct fixture fx;
	fx_open(&fx, 0);
	struct terr err;
	store_user_create(fx.st, "alice", NULL, &err);
	append(&fx, "user.alice", "Subject: a\r\n\r\na\r\n");
	append(&fx, "user.alice", "Subject: b\r\n\r\nb\r\n");
	uint32_t uids[2] = { 1, 2 }, src[2] = { 0, 0 }, dst[2] = { 0, 0 };
	size_t n = 0;
	CHECK_INT(store_copy(fx.st, "user.alice", uids, 2, "user.alice", 1, src, dst, &n, &err), 0);
	CHECK_INT(n, 2);
	CHECK_INT(src[0], 1);
	CHECK_INT(dst[0], 3);
	CHECK_INT(src[1], 2);
	CHECK_INT(dst[1], 4);
	struct store_mailbox_info mi;
	store_mailbox_get(fx.st, "user.alice", &mi, &err);
	CHECK_INT(mi.exists, 2);
	CHECK_INT(mi.last_uid, 4);
	store_mailbox_info_free(&mi);
	CHECK(crc_ok(&fx, "user.alice"));
	struct buf rep = BUF_INIT;
	CHECK_INT(store_check_user(fx.st, "alice", 1, &rep, &err), 0);
	CHECK_INT(rep.len, 0);
	buf_free(&rep);
	fx_close(&fx);
}

/* \Recent marks: taken once, never lowered, kept across a reopen and a
 * rename, no modseq and no change-log line. */
TEST(recent_mark)
{
	struct fixture fx;
	fx_open(&fx, 0);
	struct terr err;
	store_user_create(fx.st, "alice", NULL, &err);
	append(&fx, "user.alice", msg1);
	append(&fx, "user.alice", msg1);
	struct store_mailbox_info mi;
	CHECK_INT(store_mailbox_get(fx.st, "user.alice", &mi, &err), 0);
	char l1[4200];
	snprintf(l1, sizeof l1, "%s/sync/repl1/log", fx.conf);
	int lines = count_lines(l1, "\n");
	uint32_t prev = 99;
	CHECK_INT(store_recent_get(fx.st, "user.alice", mi.uniqueid, &prev, &err), 0);
	CHECK_INT(prev, 0);
	CHECK_INT(store_recent_take(fx.st, "user.alice", mi.uniqueid, 2, &prev, &err), 0);
	CHECK_INT(prev, 0);
	CHECK_INT(store_recent_take(fx.st, "user.alice", mi.uniqueid, 2, &prev, &err), 0);
	CHECK_INT(prev, 2);
	CHECK_INT(store_recent_take(fx.st, "user.alice", mi.uniqueid, 1, &prev, &err), 0);
	CHECK_INT(prev, 2);
	CHECK_INT(count_lines(l1, "\n"), lines);
	struct store_mailbox_info mi2;
	CHECK_INT(store_mailbox_get(fx.st, "user.alice", &mi2, &err), 0);
	CHECK_U64(mi2.highestmodseq, mi.highestmodseq);
	CHECK_INT(mi2.recentuid, mi.recentuid);
	store_mailbox_info_free(&mi2);
	CHECK_INT(store_mailbox_create(fx.st, "user.alice.A", NULL, &err), 0);
	CHECK_INT(store_mailbox_get(fx.st, "user.alice.A", &mi2, &err), 0);
	CHECK_INT(store_recent_take(fx.st, "user.alice.A", mi2.uniqueid, 5, &prev, &err), 0);
	CHECK_INT(store_mailbox_rename(fx.st, "user.alice.A", "user.alice.B", 0, &err), 0);
	store_close(&fx.st);
	struct store_opts o = { fx.conf, "default", fx.spool, fx.log, 0, 0, NULL, NULL, NULL };
	CHECK_INT(store_open(&o, &fx.st, &err), 0);
	CHECK_INT(store_recent_get(fx.st, "user.alice.B", mi2.uniqueid, &prev, &err), 0);
	CHECK_INT(prev, 5);
	CHECK_INT(store_recent_get(fx.st, "user.alice", mi.uniqueid, &prev, &err), 0);
	CHECK_INT(prev, 2);
	store_mailbox_info_free(&mi2);
	store_mailbox_info_free(&mi);
	fx_close(&fx);
}

/* Every delivery by its own short-lived process (tandem deliver): each
 * store_open .. store_close below is one such process. The user's
 * write-ahead log stays under its bound (close_db checkpoints and
 * truncates it past STORE_WAL_CLOSE_CKPT_BYTES; before, it grew by every
 * delivery's frames for ever and every process read all of it), and a
 * store opened afterwards sees every message. */
static long long wal_size(const struct fixture *fx, const char *enc_user)
{
	char p[4300];
	snprintf(p, sizeof p, "%s/user/%s/meta.db-wal", fx->spool, enc_user);
	struct stat sb;
	return stat(p, &sb) == 0 ? (long long)sb.st_size : 0;
}

TEST(wal_bounded_across_short_lived_processes)
{
	struct fixture fx;
	fx_open(&fx, 0);
	struct terr err;
	store_user_create(fx.st, "alice", NULL, &err);
	struct store_opts o = { fx.conf, "default", fx.spool, fx.log, 0, 0, msgcache_compute, NULL, NULL };
	/* users.db, written rarely and read by every login, is left with an
	 * empty log by the process that wrote it */
	store_close(&fx.st);
	char users_wal[4200];
	snprintf(users_wal, sizeof users_wal, "%s/users.db-wal", fx.conf);
	struct stat usb;
	CHECK(stat(users_wal, &usb) != 0 || usb.st_size == 0);
	CHECK_INT(store_open(&o, &fx.st, &err), 0);
	CHECK_INT(store_user_exists(fx.st, "alice", &err), 1);
	enum { N = 300 };
	long long maxwal = 0;
	int truncated = 0, failed = 0;
	for (int i = 0; i < N; i++) {
		store_close(&fx.st);
		if (store_open(&o, &fx.st, &err) < 0) {
			failed++;
			break;
		}
		char m[512];
		snprintf(m, sizeof m, "From: a@example.com\r\nTo: alice@example.com\r\nSubject: n%d\r\n"
			 "Message-ID: <%d@example.com>\r\n\r\nbody %d\r\n", i, i, i);
		const char *to[] = { "user.alice" };
		uint32_t uid = 0;
		struct terr errs[1];
		if (store_deliver(fx.st, to, 1, m, strlen(m), NULL, &uid, errs, &err) < 0 || uid != (uint32_t)i + 1)
			failed++;
		long long before = wal_size(&fx, "alice");
		if (before > maxwal)
			maxwal = before;
		store_close(&fx.st);	/* the process exits */
		if (before > STORE_WAL_CLOSE_CKPT_BYTES && wal_size(&fx, "alice") == 0)
			truncated++;
		CHECK(store_open(&o, &fx.st, &err) == 0);
	}
	CHECK_INT(failed, 0);
	CHECK(truncated > 0);
	/* one delivery's frames past the bound at most (it is checked at close) */
	CHECK(maxwal < STORE_WAL_CLOSE_CKPT_BYTES + 64 * 4120);
	size_t n = 0;
	CHECK_INT(store_records(fx.st, "user.alice", 0, 0, count_rec, &n, &err), 0);
	CHECK_INT(n, N);
	struct store_mailbox_info mi;
	CHECK_INT(store_mailbox_get(fx.st, "user.alice", &mi, &err), 0);
	CHECK_INT(mi.last_uid, N);
	CHECK_INT(mi.exists, N);
	store_mailbox_info_free(&mi);
	fx_close(&fx);
}

/* store_keep_enable: a process that opens a store per session keeps
 * users.db and its recent user databases open between them. */
static int fds_named(const char *suffix, int deleted)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;
	struct dirent *e;
	while (d && (e = readdir(d))) {
		char lp[300], target[4300];
		snprintf(lp, sizeof lp, "/proc/self/fd/%s", e->d_name);
		ssize_t len = readlink(lp, target, sizeof target - 1);
		if (len <= 0)
			continue;
		target[len] = '\0';
		int del = strstr(target, " (deleted)") != NULL;
		if (strstr(target, suffix) && del == deleted)
			n++;
	}
	if (d)
		closedir(d);
	return n;
}

static int deliver_one(struct store *st, const char *mbox, int i)
{
	char m[512];
	struct terr err, errs[1];
	snprintf(m, sizeof m, "From: a@example.com\r\nTo: x@example.com\r\nSubject: n%d\r\n"
		 "Message-ID: <k%d@example.com>\r\n\r\nbody %d\r\n", i, i, i);
	const char *to[] = { mbox };
	uint32_t uid = 0;
	return store_deliver(st, to, 1, m, strlen(m), NULL, &uid, errs, &err) < 0 ? -1 : (int)uid;
}

static int64_t uidvalidity_of(struct store *st, const char *mbox)
{
	struct store_mailbox_info mi;
	struct terr err;
	if (store_mailbox_get(st, mbox, &mi, &err) < 0)
		return -1;
	int64_t v = mi.uidvalidity;
	store_mailbox_info_free(&mi);
	return v;
}

TEST(kept_handles_across_stores)
{
	struct fixture fx;
	fx_open(&fx, 0);
	struct terr err;
	CHECK_INT(store_user_create(fx.st, "alice", "pw", &err), 0);
	CHECK_INT(store_user_create(fx.st, "bob", "pw", &err), 0);
	store_close(&fx.st);
	struct store_opts o = { fx.conf, "default", fx.spool, fx.log, 0, 0, msgcache_compute, NULL, NULL };
	store_keep_enable(STORE_KEEP_MAX);
	CHECK_INT(store_keep_count(), 0);

	/* a session: users.db and alice's database are kept at its close */
	CHECK_INT(store_open(&o, &fx.st, &err), 0);
	CHECK_INT(store_user_check_password(fx.st, "alice", "pw", &err), 1);
	CHECK_INT(deliver_one(fx.st, "user.alice", 1), 1);
	store_close(&fx.st);
	CHECK_INT(store_keep_count(), 2);
	char alice_db[4300], users_db[4300];
	snprintf(alice_db, sizeof alice_db, "%s/user/alice/meta.db", fx.spool);
	snprintf(users_db, sizeof users_db, "%s/users.db", fx.conf);
	CHECK(store_keep_owns(alice_db) && store_keep_owns(users_db));
	char p[4400];
	snprintf(p, sizeof p, "%s-shm", alice_db);
	CHECK(store_keep_owns(p));
	snprintf(p, sizeof p, "%s.x", alice_db);
	CHECK(!store_keep_owns(p));
	CHECK_INT(fds_named("/user/alice/meta.db", 0), 3);	/* database, -wal, -shm */

	/* the next store takes them back: the same descriptors, no new open */
	CHECK_INT(store_open(&o, &fx.st, &err), 0);
	CHECK_INT(store_keep_count(), 2);
	CHECK_INT(store_user_check_password(fx.st, "alice", "pw", &err), 1);
	CHECK_INT(deliver_one(fx.st, "user.alice", 2), 2);
	CHECK_INT(store_keep_count(), 0);	/* both in use by the store */
	CHECK_INT(fds_named("/user/alice/meta.db", 0), 3);
	store_close(&fx.st);

	/* restored behind the process's back (another file renamed over it,
	 * here a copy with another UIDVALIDITY): the kept handle is not used */
	{
		sqlite3 *db = NULL;
		CHECK(sqlite3_open(alice_db, &db) == SQLITE_OK);
		CHECK(sqlite3_exec(db, "PRAGMA wal_checkpoint(TRUNCATE);", NULL, NULL, NULL) == SQLITE_OK);
		sqlite3_close(db);
		char cmd[9000];
		snprintf(cmd, sizeof cmd, "cp %s %s.new", alice_db, alice_db);
		CHECK(system(cmd) == 0);
		snprintf(p, sizeof p, "%s.new", alice_db);
		CHECK(sqlite3_open(p, &db) == SQLITE_OK);
		CHECK(sqlite3_exec(db, "PRAGMA journal_mode=DELETE; UPDATE mailboxes SET uidvalidity = 424242;", NULL, NULL,
				   NULL) == SQLITE_OK);
		sqlite3_close(db);
		CHECK(rename(p, alice_db) == 0);
	}
	/* the kept one, on the old file (and this test's own connection's,
	 * which SQLite holds while another connection of the process has
	 * the file locked) */
	CHECK(fds_named("/user/alice/meta.db", 1) >= 1);
	CHECK_INT(store_open(&o, &fx.st, &err), 0);
	CHECK_INT(uidvalidity_of(fx.st, "user.alice"), 424242);
	CHECK_INT(fds_named("/user/alice/meta.db", 1), 0);	/* closed, not used */
	store_close(&fx.st);

	/* deleted and created again by another process between two sessions */
	CHECK_INT(store_open(&o, &fx.st, &err), 0);
	CHECK(uidvalidity_of(fx.st, "user.bob") > 0);
	CHECK_INT(deliver_one(fx.st, "user.bob", 3), 1);
	store_close(&fx.st);
	CHECK(store_keep_owns(alice_db));
	snprintf(p, sizeof p, "%s/user/bob/meta.db", fx.spool);
	CHECK(store_keep_owns(p));
	{
		/* "another process": its own connection, no kept handles */
		char cmd[9000];
		snprintf(cmd, sizeof cmd, "rm -rf %s/user/bob && mkdir -p %s/user/bob/tmp", fx.spool, fx.spool);
		CHECK(system(cmd) == 0);
		sqlite3 *db = NULL;
		CHECK(sqlite3_open(p, &db) == SQLITE_OK);
		sqlite3_close(db);	/* an empty database: the store makes the schema */
	}
	CHECK_INT(store_open(&o, &fx.st, &err), 0);
	struct store_mailbox_info mi;
	CHECK_INT(store_mailbox_get(fx.st, "user.bob", &mi, &err), -1);	/* no INBOX in the new one */
	CHECK_INT(fds_named("/user/bob/meta.db", 1), 0);
	store_close(&fx.st);

	/* deleted and created again in this process */
	CHECK_INT(store_open(&o, &fx.st, &err), 0);
	CHECK_INT(deliver_one(fx.st, "user.alice", 3), 3);
	store_close(&fx.st);
	CHECK(store_keep_owns(alice_db));
	CHECK_INT(store_open(&o, &fx.st, &err), 0);
	CHECK_INT(store_user_delete(fx.st, "alice", &err), 0);
	CHECK(!store_keep_owns(alice_db));
	CHECK_INT(store_user_create(fx.st, "alice", "pw2", &err), 0);
	store_close(&fx.st);
	CHECK_INT(store_open(&o, &fx.st, &err), 0);
	CHECK_INT(store_user_check_password(fx.st, "alice", "pw2", &err), 1);
	CHECK_INT(store_mailbox_get(fx.st, "user.alice", &mi, &err), 0);
	CHECK_INT(mi.exists, 0);
	store_mailbox_info_free(&mi);
	CHECK_INT(fds_named("/user/alice/meta.db", 1), 0);
	store_close(&fx.st);

	/* the bound: at most STORE_KEEP_MAX user databases */
	CHECK_INT(store_open(&o, &fx.st, &err), 0);
	for (int i = 0; i < STORE_KEEP_MAX + 3; i++) {
		char u[32];
		snprintf(u, sizeof u, "u%02d", i);
		CHECK_INT(store_user_create(fx.st, u, NULL, &err), 0);
	}
	store_close(&fx.st);
	CHECK_INT(store_open(&o, &fx.st, &err), 0);
	for (int i = 0; i < STORE_KEEP_MAX + 3; i++) {
		char u[32];
		snprintf(u, sizeof u, "user.u%02d", i);
		CHECK(uidvalidity_of(fx.st, u) > 0);
	}
	store_close(&fx.st);
	CHECK_INT(store_keep_count(), STORE_KEEP_MAX + 1);
	snprintf(p, sizeof p, "%s/user/u%02d/meta.db", fx.spool, STORE_KEEP_MAX + 2);
	CHECK(store_keep_owns(p));	/* the most recently used ones */
	snprintf(p, sizeof p, "%s/user/u00/meta.db", fx.spool);
	CHECK(!store_keep_owns(p));

	/* disabled: every kept handle closed */
	store_keep_enable(0);
	CHECK_INT(store_keep_count(), 0);
	CHECK_INT(fds_named("/meta.db", 0) + fds_named("/users.db", 0), 0);
	fx_close(&fx);
}

/* The log of a database kept open between sessions stays bounded: the
 * checkpoint a close makes runs when the handle is kept. */
TEST(wal_bounded_with_kept_handles)
{
	struct fixture fx;
	fx_open(&fx, 0);
	struct terr err;
	CHECK_INT(store_user_create(fx.st, "alice", NULL, &err), 0);
	store_close(&fx.st);
	struct store_opts o = { fx.conf, "default", fx.spool, fx.log, 0, 0, msgcache_compute, NULL, NULL };
	store_keep_enable(STORE_KEEP_MAX);
	enum { N = 300 };
	long long maxwal = 0;
	int truncated = 0, failed = 0;
	for (int i = 0; i < N; i++) {
		if (store_open(&o, &fx.st, &err) < 0) {
			failed++;
			break;
		}
		if (deliver_one(fx.st, "user.alice", i + 1) != i + 1)
			failed++;
		long long before = wal_size(&fx, "alice");
		if (before > maxwal)
			maxwal = before;
		store_close(&fx.st);	/* the session ends, the handle is kept */
		if (store_keep_count() != 2)
			failed++;
		if (before > STORE_WAL_CLOSE_CKPT_BYTES && wal_size(&fx, "alice") == 0)
			truncated++;
	}
	CHECK_INT(failed, 0);
	CHECK(truncated > 0);
	CHECK(maxwal < STORE_WAL_CLOSE_CKPT_BYTES + 64 * 4120);
	store_keep_enable(0);
	CHECK_INT(store_open(&o, &fx.st, &err), 0);
	size_t n = 0;
	CHECK_INT(store_records(fx.st, "user.alice", 0, 0, count_rec, &n, &err), 0);
	CHECK_INT(n, N);
	fx_close(&fx);
}

/* A store's schema statements run at an open only while its user_version
 * says they have not all run (they cost a parse each at every open): a
 * store made before the message cache existed (version 0, no cache
 * table) gains the table and the version, and users.db its version. */
static int db_int(const char *path, const char *sql)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *s = NULL;
	int v = -1;
	if (sqlite3_open(path, &db) == SQLITE_OK && sqlite3_prepare_v2(db, sql, -1, &s, NULL) == SQLITE_OK &&
	    sqlite3_step(s) == SQLITE_ROW)
		v = sqlite3_column_int(s, 0);
	sqlite3_finalize(s);
	sqlite3_close(db);
	return v;
}

static int db_exec(const char *path, const char *sql)
{
	sqlite3 *db = NULL;
	int rc = sqlite3_open(path, &db) == SQLITE_OK ? sqlite3_exec(db, sql, NULL, NULL, NULL) : -1;
	sqlite3_close(db);
	return rc;
}

TEST(schema_version_skips_the_schema)
{
	struct fixture fx;
	fx_open_cache(&fx, 0, msgcache_compute);
	struct terr err;
	CHECK_INT(store_user_create(fx.st, "alice", NULL, &err), 0);
	store_close(&fx.st);
	char meta[4200], users[4200];
	snprintf(meta, sizeof meta, "%s/user/alice/meta.db", fx.spool);
	snprintf(users, sizeof users, "%s/users.db", fx.conf);
	CHECK_INT(db_int(meta, "PRAGMA user_version;"), 2);
	CHECK_INT(db_int(users, "PRAGMA user_version;"), 1);
	/* an older store: no cache table, no version */
	CHECK_INT(db_exec(meta, "DROP TABLE cache; PRAGMA user_version = 0;"), 0);
	CHECK_INT(db_int(meta, "SELECT count(*) FROM sqlite_master WHERE name = 'cache';"), 0);
	struct store_opts o = { fx.conf, "default", fx.spool, fx.log, 0, 0, msgcache_compute, NULL, NULL };
	CHECK_INT(store_open(&o, &fx.st, &err), 0);
	CHECK(append(&fx, "user.alice", msg1) == 1);
	store_close(&fx.st);
	CHECK_INT(db_int(meta, "SELECT count(*) FROM sqlite_master WHERE name = 'cache';"), 1);
	CHECK_INT(db_int(meta, "SELECT count(*) FROM cache;"), 1);
	CHECK_INT(db_int(meta, "PRAGMA user_version;"), 2);
	/* a version it has, the store trusts: an open runs no schema statement
	 * (a dropped table stays dropped) */
	CHECK_INT(db_exec(meta, "DROP TABLE recent;"), 0);
	CHECK_INT(store_open(&o, &fx.st, &err), 0);
	struct store_mailbox_info mi;
	CHECK_INT(store_mailbox_get(fx.st, "user.alice", &mi, &err), 0);
	store_mailbox_info_free(&mi);
	store_close(&fx.st);
	CHECK_INT(db_int(meta, "SELECT count(*) FROM sqlite_master WHERE name = 'recent';"), 0);
	CHECK_INT(store_open(&o, &fx.st, &err), 0);
	fx_close(&fx);
}

/* 1 when meta.db's cache table is the layout before 2026-12-06 */
#define OLD_CACHE_LAYOUT "SELECT instr(sql, 'WITHOUT ROWID') > 0 FROM sqlite_master WHERE name = 'cache';"

/* The cache table of a new database is a rowid table (unique guid); one
 * made before as WITHOUT ROWID keyed by guid keeps working: its rows are
 * read, new ones are added, and the same GUID again adds no row. */
TEST(message_cache_table_new_and_old_layout)
{
	struct fixture fx;
	fx_open_cache(&fx, 0, real_cache);
	struct terr err;
	CHECK_INT(store_user_create(fx.st, "alice", NULL, &err), 0);
	CHECK_INT(append(&fx, "user.alice", msg2), 1);
	store_close(&fx.st);
	char path[4200];
	snprintf(path, sizeof path, "%s/user/alice/meta.db", fx.spool);
	CHECK_INT(db_int(path, OLD_CACHE_LAYOUT), 0);
		/* make it the layout before: WITHOUT ROWID, keyed by guid, rows kept */
	CHECK_INT(db_exec(path, "BEGIN; ALTER TABLE cache RENAME TO cache_new;"
				" CREATE TABLE cache(guid TEXT PRIMARY KEY, envelope BLOB, bodystructure BLOB,"
				" body BLOB, headers BLOB) WITHOUT ROWID;"
				" INSERT INTO cache SELECT guid, envelope, bodystructure, body, headers FROM cache_new;"
				" DROP TABLE cache_new; COMMIT;"),
		  SQLITE_OK);
	CHECK_INT(db_int(path, OLD_CACHE_LAYOUT), 1);
	struct store_opts o = { fx.conf, "default", fx.spool, fx.log, 0, 0, real_cache, NULL, NULL };
	CHECK_INT(store_open(&o, &fx.st, &err), 0);
	char g2[41];
	sha1_hex(msg2, strlen(msg2), g2);
	struct buf h = BUF_INIT;
	CHECK_INT(store_cache_headers(fx.st, "user.alice", g2, &h, &err), 1);
	CHECK_STR(buf_cstr(&h), "Subject: two\r\n\r\n");
	CHECK_INT(append(&fx, "user.alice", msg3), 2);
	CHECK_INT(append(&fx, "user.alice", msg2), 3);	/* the same bytes: no second row */
	struct cache_seen cs = cache_range(&fx, "user.alice", 1, 10);
	CHECK_INT(cs.n, 3);
	store_close(&fx.st);
	CHECK_INT(db_int(path, "SELECT count(*) FROM cache;"), 2);
	CHECK_INT(db_int(path, OLD_CACHE_LAYOUT), 1);	/* left as it was */
	CHECK_INT(store_open(&o, &fx.st, &err), 0);
	buf_free(&h);
	fx_close(&fx);
}

int main(void)
{
	log_open("test_store", 0, LOG_LVL_ERR);
	RUN(ref_crc_worked_examples);
	RUN(store_crc_matches_the_captured_mailbox);
	RUN(user_create_makes_inbox);
	RUN(append_uids_modseqs_crc);
	RUN(flags_and_expunge);
	RUN(flags_by_uid_runs);
	RUN(rename_keeps_identity);
	RUN(limits_quota_and_size);
	RUN(change_log_lines_and_failure);
	RUN(deliver_to_many_writes_once);
	RUN(busy_wait_and_timeout);
	RUN(deliver_after_fork);
	RUN(after_commit_hook);
	RUN(annotations_seen_subs_sieve);
	RUN(random_workload_keeps_crcs);
	RUN(empty_user_database_left_by_a_kill);
	RUN(new_owner_directory_built_apart);
	RUN(new_owners_from_spares);
	RUN(user_delete_removes_everything);
	RUN(message_cache);
	RUN(message_cache_headers_and_migration);
	RUN(message_cache_table_new_and_old_layout);
	RUN(append_multi);
	RUN(empty_database_gets_schema);
	RUN(recent_mark);
	RUN(move_within_one_mailbox);
	RUN(wal_bounded_across_short_lived_processes);
	RUN(schema_version_skips_the_schema);
	RUN(kept_handles_across_stores);
	RUN(wal_bounded_with_kept_handles);
	RUN(message_open_in_kept_blobs_directory);
	return test_done();
}
