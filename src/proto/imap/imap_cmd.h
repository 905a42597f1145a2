/* imap_cmd.h: typed IMAP commands.
 *
 * When imap_parser_feed() returns IMAP_COMMAND, imap_parser_command()
 * gives a struct imap_cmd whose union member for cmd->id is filled in
 * from the argument tree by a table of per-command grammars
 * (imap_cmd.c and imap_cmd_*.c). A command only reaches the server when
 * its arguments are valid; otherwise the parser reports a BAD instead.
 *
 * Ownership: everything reachable from a struct imap_cmd (strings,
 * arrays, search trees) lives in the parser's per-command arena and is
 * valid until the next imap_parser_feed(), imap_parser_reset() or
 * imap_parser_free(). Strings are NUL-terminated.
 */
#ifndef TANDEM_IMAP_CMD_H
#define TANDEM_IMAP_CMD_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "proto/imap/imap_args.h"

enum imap_cmd_id {
	IMAP_CMD_CAPABILITY,
	IMAP_CMD_NOOP,
	IMAP_CMD_LOGOUT,
	IMAP_CMD_STARTTLS,
	IMAP_CMD_AUTHENTICATE,
	IMAP_CMD_LOGIN,
	IMAP_CMD_ID,
	IMAP_CMD_ENABLE,
	IMAP_CMD_SELECT,
	IMAP_CMD_EXAMINE,
	IMAP_CMD_CREATE,
	IMAP_CMD_DELETE,
	IMAP_CMD_RENAME,
	IMAP_CMD_SUBSCRIBE,
	IMAP_CMD_UNSUBSCRIBE,
	IMAP_CMD_LIST,
	IMAP_CMD_LSUB,
	IMAP_CMD_NAMESPACE,
	IMAP_CMD_STATUS,
	IMAP_CMD_APPEND,
	IMAP_CMD_IDLE,
	IMAP_CMD_CHECK,
	IMAP_CMD_CLOSE,
	IMAP_CMD_UNSELECT,
	IMAP_CMD_UNAUTHENTICATE,	/* RFC 8437 */
	IMAP_CMD_EXPUNGE,	/* uid=1: UID EXPUNGE <set> */
	IMAP_CMD_SEARCH,
	IMAP_CMD_SORT,		/* RFC 5256, RETURN: RFC 5267 ESORT */
	IMAP_CMD_THREAD,	/* RFC 5256 */
	IMAP_CMD_FETCH,
	IMAP_CMD_STORE,
	IMAP_CMD_COPY,
	IMAP_CMD_MOVE,
	IMAP_CMD_GETQUOTA,
	IMAP_CMD_GETQUOTAROOT,
	IMAP_CMD_SETQUOTA,
	IMAP_CMD_GETACL,
	IMAP_CMD_SETACL,
	IMAP_CMD_DELETEACL,
	IMAP_CMD_LISTRIGHTS,
	IMAP_CMD_MYRIGHTS,
	IMAP_CMD_GETMETADATA,
	IMAP_CMD_SETMETADATA,
	IMAP_CMD_COMPRESS,
	IMAP_CMD_SYNCGET,
	IMAP_CMD_SYNCAPPLY,
	IMAP_CMD_SYNCRESTORE,
	IMAP_CMD_SYNCRESTART,
	IMAP_CMD_COUNT_
};

/* ---- shared value types ------------------------------------------------ */

/* "*" in a sequence set; 0 is never a valid sequence number or UID. */
#define IMAP_SEQ_STAR 0u

struct imap_seq_range {
	uint32_t lo, hi;	/* as sent: lo may be > hi ("5:1" = "1:5") */
};

struct imap_seqset {
	int saved;		/* "$": the saved search result (RFC 5182) */
	size_t count;
	const struct imap_seq_range *ranges;
};

struct imap_strlist {
	size_t count;
	const char *const *v;
};

/* ---- FETCH ------------------------------------------------------------- */

enum imap_section_spec {
	IMAP_SECT_ALL,		/* BODY[] or BODY[1.2]: the whole (part) */
	IMAP_SECT_HEADER,
	IMAP_SECT_HEADER_FIELDS,
	IMAP_SECT_HEADER_FIELDS_NOT,
	IMAP_SECT_TEXT,
	IMAP_SECT_MIME,		/* only after part numbers */
};

struct imap_section {
	size_t nparts;
	const uint32_t *parts;	/* 1.2.3 -> {1, 2, 3} */
	enum imap_section_spec spec;
	struct imap_strlist fields;	/* HEADER.FIELDS[.NOT] names */
	const char *text;	/* what was between [ and ], as sent */
};

enum imap_fetch_item {
	IMAP_FETCH_ENVELOPE,
	IMAP_FETCH_FLAGS,
	IMAP_FETCH_INTERNALDATE,
	IMAP_FETCH_RFC822,
	IMAP_FETCH_RFC822_HEADER,
	IMAP_FETCH_RFC822_SIZE,
	IMAP_FETCH_RFC822_TEXT,
	IMAP_FETCH_BODY,		/* BODY without a section: structure */
	IMAP_FETCH_BODYSTRUCTURE,
	IMAP_FETCH_UID,
	IMAP_FETCH_MODSEQ,
	IMAP_FETCH_BODY_SECTION,	/* BODY[...] and BODY.PEEK[...] */
	IMAP_FETCH_EMAILID,		/* RFC 8474 OBJECTID */
	IMAP_FETCH_THREADID,
	IMAP_FETCH_SAVEDATE,		/* RFC 8514 */
	IMAP_FETCH_PREVIEW,		/* RFC 8970, [(LAZY)] */
	IMAP_FETCH_BINARY,		/* RFC 3516: BINARY[n.n]<partial>, BINARY.PEEK */
	IMAP_FETCH_BINARY_SIZE,		/* BINARY.SIZE[n.n] */
};

struct imap_fetch_att {
	enum imap_fetch_item item;
	int peek;		/* BODY.PEEK */
	int lazy;		/* PREVIEW (LAZY) */
	struct imap_section section;	/* BODY_SECTION only */
	int partial;		/* <offset.length> given */
	uint32_t offset, length;
};

struct imap_fetch {
	struct imap_seqset set;
	const char *macro;	/* "ALL", "FAST", "FULL" or NULL; atts holds
				 * the expansion either way */
	size_t natts;
	const struct imap_fetch_att *atts;
	int has_changedsince;
	uint64_t changedsince;
	int vanished;		/* (CHANGEDSINCE n VANISHED), RFC 7162 3.2.6 */
};

/* ---- STORE ------------------------------------------------------------- */

enum imap_store_op { IMAP_STORE_SET, IMAP_STORE_ADD, IMAP_STORE_REMOVE };

struct imap_store {
	struct imap_seqset set;
	enum imap_store_op op;
	int silent;
	struct imap_strlist flags;
	int has_unchangedsince;
	uint64_t unchangedsince;
};

/* ---- SEARCH ------------------------------------------------------------ */

enum imap_skey {
	IMAP_SK_ALL, IMAP_SK_ANSWERED, IMAP_SK_BCC, IMAP_SK_BEFORE, IMAP_SK_BODY,
	IMAP_SK_CC, IMAP_SK_DELETED, IMAP_SK_DRAFT, IMAP_SK_FLAGGED, IMAP_SK_FROM,
	IMAP_SK_HEADER, IMAP_SK_KEYWORD, IMAP_SK_LARGER, IMAP_SK_NEW, IMAP_SK_NOT,
	IMAP_SK_OLD, IMAP_SK_ON, IMAP_SK_OR, IMAP_SK_RECENT, IMAP_SK_SEEN,
	IMAP_SK_SENTBEFORE, IMAP_SK_SENTON, IMAP_SK_SENTSINCE, IMAP_SK_SINCE,
	IMAP_SK_SMALLER, IMAP_SK_SUBJECT, IMAP_SK_TEXT, IMAP_SK_TO, IMAP_SK_UID,
	IMAP_SK_UNANSWERED, IMAP_SK_UNDELETED, IMAP_SK_UNDRAFT, IMAP_SK_UNFLAGGED,
	IMAP_SK_UNKEYWORD, IMAP_SK_UNSEEN,
	IMAP_SK_SEQSET,		/* a bare sequence set */
	IMAP_SK_AND,		/* ( ... ): all children */
	IMAP_SK_MODSEQ,		/* RFC 7162 */
	IMAP_SK_OLDER,		/* RFC 5032 WITHIN: num seconds */
	IMAP_SK_YOUNGER,
	IMAP_SK_EMAILID,	/* RFC 8474: str */
	IMAP_SK_THREADID,
	IMAP_SK_SAVEDBEFORE,	/* RFC 8514: date */
	IMAP_SK_SAVEDON,
	IMAP_SK_SAVEDSINCE,
	IMAP_SK_SAVEDATESUPPORTED,
};

struct imap_search_key {
	enum imap_skey key;
	const char *str;	/* BCC BODY CC FROM SUBJECT TEXT TO: the text;
				 * HEADER: the value; KEYWORD UNKEYWORD: flag */
	const char *field;	/* HEADER: field name; MODSEQ: entry name or NULL */
	const char *entry_type;	/* MODSEQ: "priv", "shared" or "all", or NULL */
	time_t date;		/* BEFORE ON SINCE SENT*: 00:00:00 UTC of the day */
	uint64_t num;		/* LARGER SMALLER: octets; MODSEQ: the value;
				 * OLDER YOUNGER: seconds */
	struct imap_seqset set;	/* UID, SEQSET */
	struct imap_search_key *child;	/* NOT: 1, OR: 2, AND: n children */
	struct imap_search_key *next;	/* next sibling */
};

/* SORT criteria (RFC 5256 3, DISPLAYFROM/DISPLAYTO of RFC 5957). */
enum imap_sort_key {
	IMAP_SORT_ARRIVAL, IMAP_SORT_CC, IMAP_SORT_DATE, IMAP_SORT_FROM, IMAP_SORT_SIZE,
	IMAP_SORT_SUBJECT, IMAP_SORT_TO, IMAP_SORT_DISPLAYFROM, IMAP_SORT_DISPLAYTO,
};

struct imap_sort_crit {
	enum imap_sort_key key;
	int reverse;
};

enum imap_thread_alg { IMAP_THREAD_ORDEREDSUBJECT = 1, IMAP_THREAD_REFERENCES };

/* SEARCH, SORT and THREAD: SORT adds its criteria, THREAD its algorithm;
 * both require the charset. */
struct imap_search {
	int has_return;			/* ESEARCH RETURN (...) given */
	struct imap_strlist ret;	/* its options, upper-cased (MIN MAX ALL COUNT SAVE) */
	const char *charset;		/* NULL when not given */
	struct imap_search_key *root;	/* always an IMAP_SK_AND */
	size_t nsort;			/* SORT: at least one criterion */
	const struct imap_sort_crit *sort;
	enum imap_thread_alg thread;	/* THREAD */
};

/* ---- LIST / STATUS / mailbox commands ----------------------------------- */

#define IMAP_LIST_SEL_SUBSCRIBED	0x01u
#define IMAP_LIST_SEL_REMOTE		0x02u
#define IMAP_LIST_SEL_RECURSIVEMATCH	0x04u
#define IMAP_LIST_SEL_SPECIAL_USE	0x08u

#define IMAP_LIST_RET_SUBSCRIBED	0x01u
#define IMAP_LIST_RET_CHILDREN		0x02u
#define IMAP_LIST_RET_SPECIAL_USE	0x04u
#define IMAP_LIST_RET_STATUS		0x08u
#define IMAP_LIST_RET_MYRIGHTS		0x10u

#define IMAP_STATUS_MESSAGES		0x01u
#define IMAP_STATUS_RECENT		0x02u
#define IMAP_STATUS_UIDNEXT		0x04u
#define IMAP_STATUS_UIDVALIDITY		0x08u
#define IMAP_STATUS_UNSEEN		0x10u
#define IMAP_STATUS_HIGHESTMODSEQ	0x20u
#define IMAP_STATUS_SIZE		0x40u
#define IMAP_STATUS_DELETED		0x80u
#define IMAP_STATUS_MAILBOXID		0x100u	/* RFC 8474 */

struct imap_list {
	int extended;		/* selection options, a pattern list or RETURN */
	unsigned sel;		/* IMAP_LIST_SEL_* */
	unsigned ret;		/* IMAP_LIST_RET_* */
	unsigned status_items;	/* IMAP_STATUS_* for RETURN (STATUS (...)) */
	const char *ref;
	struct imap_strlist patterns;	/* at least one */
};

struct imap_status {
	const char *mailbox;
	unsigned items;		/* IMAP_STATUS_*, at least one */
};

struct imap_select {
	const char *mailbox;
	int condstore;
	/* (QRESYNC (uidvalidity modseq [known-uids [(seqs uids)]])), RFC 7162
	 * 3.2.5; the sequence match data is read and not used */
	int qresync;
	uint32_t q_uidvalidity;
	uint64_t q_modseq;
	int q_has_known;
	struct imap_seqset q_known;
};

struct imap_create {
	const char *mailbox;
	struct imap_strlist use;	/* (USE (\Sent ...)) special-use flags */
};

/* One part of a CATENATE message (RFC 4469): text, or an IMAP URL. */
struct imap_cat_part {
	const char *url;	/* URL part; NULL for a TEXT part */
	const char *text;	/* TEXT part: its bytes */
	size_t len;
};

struct imap_append_part {
	int has_flags;
	struct imap_strlist flags;
	int has_date;
	time_t date;
	int date_tzoff;
	uint64_t size;
	const char *message;	/* buffered mode only, else NULL */
	size_t ncat;		/* CATENATE: the parts (then size is 0) */
	const struct imap_cat_part *cat;
};

struct imap_append {
	const char *mailbox;
	int has_flags;
	struct imap_strlist flags;
	int has_date;
	time_t date;		/* INTERNALDATE as UTC seconds */
	int date_tzoff;		/* its zone, minutes east of UTC */
	uint64_t size;		/* message literal size */
	int nonsync;		/* sent as {N+} */
	/* The message bytes in buffered mode (imap_parser_set_buffered);
	 * NULL when they went out as IMAP_DATA events. */
	const char *message;
	/* MULTIAPPEND (RFC 3502): the messages after the first, each with
	 * its own flags and date. Streamed, every message's bytes went out
	 * as IMAP_DATA events one after the other: their sizes split them. */
	size_t nmore;
	const struct imap_append_part *more;
	/* CATENATE (RFC 4469) for the first message: its parts, and no
	 * message literal (size 0) */
	size_t ncat;
	const struct imap_cat_part *cat;
};

/* ---- quota, ACL, metadata ------------------------------------------------ */

struct imap_quota_res {
	const char *name;	/* upper-cased: STORAGE, MESSAGE, ... */
	uint64_t limit;
};

struct imap_metadata_entry {
	const char *name;
	const char *value;	/* NULL for NIL: remove the entry */
	size_t len;
};

/* GETMETADATA DEPTH infinity */
#define IMAP_METADATA_DEPTH_INFINITY (-1)

/* ---- the command ---------------------------------------------------------- */

struct imap_cmd {
	const char *tag;
	enum imap_cmd_id id;
	const char *name;	/* canonical upper-case name, "FETCH" */
	int uid;		/* sent with the UID prefix */
	const struct imap_arg *args;	/* the raw arguments after the name */
	union {
		struct { const char *user, *password; } login;
		struct {
			const char *mech;	/* upper-cased */
			const char *ir;		/* SASL-IR as sent (base64; "=" is
						 * the empty response); NULL: none */
		} authenticate;
		struct imap_strlist enable;	/* capability names as sent */
		struct {
			int nil;		/* ID NIL */
			struct imap_strlist params;	/* key, value, key, value...;
							 * a value may be NULL */
		} id;
		struct imap_select select;	/* SELECT, EXAMINE */
		struct imap_create create;
		struct { const char *mailbox; } mailbox;	/* DELETE SUBSCRIBE
					 * UNSUBSCRIBE GETQUOTAROOT GETACL MYRIGHTS */
		struct { const char *from, *to; } rename;
		struct imap_list list;	/* LIST, LSUB (LSUB: extended = 0) */
		struct imap_status status;
		struct imap_append append;
		struct imap_search search;	/* SEARCH SORT THREAD */
		struct imap_fetch fetch;
		struct imap_store store;
		struct { struct imap_seqset set; const char *mailbox; } copy;	/* COPY, MOVE */
		struct { struct imap_seqset set; } expunge;	/* UID EXPUNGE only */
		struct { const char *root; } getquota;
		struct {
			const char *root;
			size_t count;
			const struct imap_quota_res *res;
		} setquota;
		struct {
			const char *mailbox;
			const char *identifier;
			const char *rights;	/* SETACL only; may start with + or - */
		} acl;	/* SETACL DELETEACL LISTRIGHTS */
		struct {
			const char *mailbox;
			struct imap_strlist entries;
			int has_maxsize;
			uint32_t maxsize;
			int depth;	/* 0, 1 or IMAP_METADATA_DEPTH_INFINITY */
		} getmetadata;
		struct {
			const char *mailbox;
			size_t count;
			const struct imap_metadata_entry *entries;
		} setmetadata;
		struct { const char *mech; } compress;	/* upper-cased */
		struct {
			/* The raw remainder after "SYNCxxx ", literals and file
			 * literals included, through the final line end. In
			 * buffered mode: raw/len; otherwise raw is NULL and the
			 * bytes went out as IMAP_DATA events (len counts them). */
			const char *raw;
			uint64_t len;
		} sync;	/* SYNCGET SYNCAPPLY SYNCRESTORE (SYNCRESTART: none) */
	} u;
};

/* Appends a one-line, canonical text form of cmd to b (for trace logs and
 * tests): every typed field, strings quoted with non-printable bytes as
 * \xHH. The LOGIN password and the SASL initial response are shown only
 * as their length. Needs lib/buf.h. */
struct buf;
void imap_cmd_dump(struct buf *b, const struct imap_cmd *cmd);

/* The canonical name of a command id ("UID FETCH" is FETCH with uid=1). */
const char *imap_cmd_name(enum imap_cmd_id id);

/* 1 when key (or a descendant) is a MODSEQ key: the server must then
 * answer with (MODSEQ n) per RFC 7162 3.1.5. */
int imap_search_uses_modseq(const struct imap_search_key *key);

/* 1 when n is inside set; max resolves "*" (the largest sequence number
 * or UID in the mailbox). A "$" set contains nothing here. */
int imap_seqset_contains(const struct imap_seqset *set, uint32_t n, uint32_t max);

/* Day-date "1-Jan-2024" (or quoted "01-Jan-2024") to 00:00:00 UTC of that
 * day. Returns 0, or -1 on bad syntax or an impossible date. */
int imap_date_parse(const char *s, size_t len, time_t *t_r);
/* date-time "01-Jan-2024 10:00:00 +0100" (day may be " 1") to UTC
 * seconds; *tzoff_r gets the zone in minutes east (may be NULL).
 * Returns 0 or -1. */
int imap_datetime_parse(const char *s, size_t len, time_t *t_r, int *tzoff_r);

#endif
