/* imapd-private.h: what the files of src/imapd/ share; nothing outside
 * src/imapd/ (and its unit tests) includes it.
 *
 * Session states (RFC 3501 3):
 *   NOT AUTHENTICATED --LOGIN/AUTHENTICATE--> AUTHENTICATED
 *   AUTHENTICATED --SELECT/EXAMINE--> SELECTED (s->sel != NULL)
 *   SELECTED --CLOSE/UNSELECT/failed SELECT--> AUTHENTICATED
 *   any --LOGOUT/EOF/timeout/too many bad commands/shutdown--> closed
 * Invariants: (1) s->user is NULL exactly while not authenticated and the
 * parser is then in IMAP_MODE_PREAUTH; (2) s->sel->msgs is the client's
 * sequence map: index i is message i+1, ascending UIDs, and only an
 * EXPUNGE we send removes an entry (a message expunged by someone else
 * stays, marked gone, until we may announce it); (3) every tagged reply
 * is written after the untagged updates of the same command.
 *
 * Ownership: the session owns everything it points to. Command structs
 * come from the parser and are valid only during their handler.
 */
#ifndef TANDEM_IMAPD_PRIVATE_H
#define TANDEM_IMAPD_PRIVATE_H

#include <stddef.h>
#include <stdint.h>

#include "imapd/imapd.h"
#include "lib/buf.h"
#include "lib/err.h"
#include "names/mboxname.h"
#include "proto/imap/imap_cmd.h"
#include "proto/imap/imap_parser.h"
#include "store/store_move.h"

struct store;
struct chlog;
struct mime_message;
struct syncs;
struct store_mailbox_info;

/* How often IDLE looks at the selected mailbox's HIGHESTMODSEQ, ms. */
#define IMAPD_IDLE_POLL_MS 300
/* Output is sent once this many bytes are queued (large FETCHes). */
#define IMAPD_FLUSH_BYTES (256 * 1024)
/* Longest wait in one read, ms, so SIGTERM is noticed while idle (the
 * read retries on EINTR). */
#define IMAPD_READ_SLICE_MS 500

/* ---- rights (RFC 4314 letters plus Cyrus's 'n') ------------------------ */

#define IMAPD_RIGHTS_LETTERS "lrswipkxtecdan"
enum {
	IMAPD_R_LOOKUP = 1 << 0,	/* l */
	IMAPD_R_READ = 1 << 1,		/* r */
	IMAPD_R_SEEN = 1 << 2,		/* s */
	IMAPD_R_WRITE = 1 << 3,		/* w */
	IMAPD_R_INSERT = 1 << 4,	/* i */
	IMAPD_R_POST = 1 << 5,		/* p */
	IMAPD_R_CREATE = 1 << 6,	/* k */
	IMAPD_R_DELETE_MBOX = 1 << 7,	/* x */
	IMAPD_R_DELETE_MSG = 1 << 8,	/* t */
	IMAPD_R_EXPUNGE = 1 << 9,	/* e */
	IMAPD_R_OLD_CREATE = 1 << 10,	/* c (RFC 2086) */
	IMAPD_R_OLD_DELETE = 1 << 11,	/* d (RFC 2086) */
	IMAPD_R_ADMIN = 1 << 12,	/* a */
	IMAPD_R_ANNOTATE = 1 << 13,	/* n */
};
#define IMAPD_R_ALL ((1u << 14) - 1)
/* What a mailbox's owner always has, whatever its ACL says (Cyrus's
 * implicit owner rights). */
#define IMAPD_R_OWNER_IMPLICIT (IMAPD_R_LOOKUP | IMAPD_R_CREATE | IMAPD_R_DELETE_MBOX | IMAPD_R_ADMIN | \
				IMAPD_R_ANNOTATE)

/* Letters to a mask. Returns 0 and the mask, or -1 at the first letter
 * that is not a right (its offset in *badpos_r). c and d also grant
 * what RFC 4314 2.1.1 maps them to (c: k; d: x t e). */
int imapd_rights_parse(const char *s, size_t len, unsigned *mask_r, size_t *badpos_r);
/* Appends the letters of mask in IMAPD_RIGHTS_LETTERS order. */
void imapd_rights_format(unsigned mask, struct buf *out);
/* Rights of userid in a Cyrus ACL string ("id\trights\tid\trights\t"):
 * the union of its own entry and "anyone", minus the "-id" and
 * "-anyone" entries. Malformed parts are ignored. */
unsigned imapd_acl_rights(const char *acl, const char *userid);
/* out = acl with identifier's entry replaced: rights "+xy" adds, "-xy"
 * removes, "xy" replaces; NULL deletes the entry. Entries keep their
 * order; an entry left with no rights is dropped. TE_INVALID for a bad
 * letter or an identifier with a TAB. */
int imapd_acl_modify(const char *acl, const char *identifier, const char *rights, struct buf *out,
		     struct terr *err);
/* An ACL's entries one by one: store_acl_each (store.h). */

/* ---- LIST patterns ------------------------------------------------------ */

/* 1 when name matches the LIST pattern (RFC 3501 6.3.8: '*' anything, '%'
 * anything but sep), else 0. A leading "INBOX" of either matches without
 * case. O(plen * nlen) time, O(nlen) memory: no backtracking blow-up.
 * Patterns longer than IMAP_MAX_LIST_PATTERN match nothing. */
int imapd_pattern_match(const char *pat, size_t plen, const char *name, size_t nlen, char sep);

/* ---- the selected mailbox ------------------------------------------------ */

struct imapd_msg {
	uint32_t uid;
	uint32_t size;
	unsigned sysflags;	/* SYSFLAG_* (never SYSFLAG_EXPUNGED) */
	unsigned gone : 1;	/* expunged in the store; EXPUNGE not sent yet */
	unsigned dirty : 1;	/* flags changed; FETCH not sent yet */
	unsigned seen_fetch : 1;	/* scratch for FETCH: \Seen set implicitly */
	unsigned recent : 1;	/* \Recent in this session (view.c) */
	uint64_t modseq;
	int64_t internaldate;
	int64_t savedate;	/* RFC 8514 SAVEDATE; 0: the internal date */
	uint64_t thrid;		/* Cyrus's conversation id; 0: none */
	char *keywords;		/* owned; NULL for none */
	char guid[41];
};

struct imapd_view {
	char *name;		/* internal name */
	char *uniqueid;
	uint32_t uidvalidity;
	uint32_t last_uid;	/* highest UID the store had at the last poll */
	uint64_t highestmodseq;	/* the mailbox's, at the last poll */
	int readonly;		/* EXAMINE, or not enough rights */
	unsigned rights;
	struct imapd_msg *msgs;
	size_t n, cap;
	size_t announced;	/* EXISTS the client knows */
	struct buf keywords;	/* every keyword seen, space-separated (FLAGS) */
	size_t nkeywords_sent;	/* keywords in the last FLAGS response */
	int seen_private;	/* \Seen is the user's seen state, not the
				 * records' flag (not the owner: seen.c) */
	int take_recent;	/* SELECT: this session takes \Recent (EXAMINE
				 * only looks, RFC 3501 6.3.2) */
	uint32_t recent_upto;	/* highest UID whose \Recent was decided */
	size_t nrecent;		/* messages with recent set */
	size_t nrecent_sent;	/* in the last RECENT response */
};

/* ---- the session ------------------------------------------------------------ */

struct imapd_result {
	const char *resp;	/* "OK", "NO", "BAD"; NULL: not set yet */
	struct buf code;	/* response code without brackets, "" none */
	struct buf text;
};

/* A loaded message (FETCH, SEARCH): the last one asked for. */
struct imapd_loaded {
	char *mailbox;
	uint32_t uid;
	int ok;
	int header_only;	/* data is the header block from the message cache */
	struct buf data;
	struct mime_message *mime;
};

struct imapd_session {
	const struct service_env *env;
	struct conn *c;
	struct imap_parser *p;
	struct store *st;
	struct chlog *log;
	struct mboxname_ns ns;
	/* input: bytes read, how far the parser got, and whether it must be
	 * called again before reading (an event may be pending) */
	struct buf in;
	size_t inpos;
	int feed_again;
	struct buf out;
	int dead;		/* the connection failed: stop at once */
	/* state */
	char *user;		/* NULL until authenticated */
	char *authid;		/* who proved the password (differs with PLAIN authzid) */
	int isadmin;
	int bad;		/* bad commands in a row */
	int authfails;		/* failed logins */
	int condstore;		/* CONDSTORE enabled (RFC 7162 3.1) */
	int unknown_cte;	/* scratch for FETCH BINARY: NO [UNKNOWN-CTE] */
	int qresync;		/* QRESYNC enabled (RFC 7162 3.2.3): VANISHED
				 * instead of EXPUNGE */
	int tls_pending_check;
	struct imapd_view *sel;
	struct buf appendmsg;	/* APPEND's message or a SYNC* command's DLIST,
				 * gathered from IMAP_DATA */
	int data_overflow;	/* a SYNC* DLIST over DLIST_MAX_COMMAND_BYTES */
	struct syncs *sync;	/* the replication engine (admins, on first use) */
	uint64_t sync_file_left;	/* bytes of the file literal being streamed */
	struct imapd_result res;
	struct imapd_loaded cur;
	/* from the config */
	int allowplaintext;
	long long failpause_ms;
	long long preauth_ms;	/* preauth_timeout: before login (imapd_preauth_left_ms) */
	long long timeout_ms;	/* after login */
	long long maxmsg;
	const char *servername;
	unsigned long ncommands;
	/* the user's move (moving.c): the stamp last looked at, and whether
	 * the session ended because the user is being moved */
	struct store_move_stamp move_stamp;
	/* what the last password check found in tandemd's login cache
	 * (server_login_check: "hit", "miss", "off"), for the login's log line */
	const char *auth_cache_how;
	int moved_out;
	int logged_out;		/* the session ended with LOGOUT (its process may be reused) */
	int replicated;		/* the replication engine ran (then the process is not reused) */
};

/* ---- users being moved (moving.c) ----------------------------------------- */

/* At login, before the password check: 1 when user is locked for a move
 * or moved away and password is theirs (NO [UNAVAILABLE] set), else 0. */
int imapd_login_moving(struct imapd_session *s, const char *user, const char *password);
/* In a logged-in session, between commands and while idle (one stat,
 * SQLite only when a move record changed): 1 when the session's user is
 * being moved (then "* BYE [UNAVAILABLE]" is sent and the session is
 * dead), else 0. */
int imapd_moving_bye(struct imapd_session *s);

/* ---- session I/O (session.c) ---------------------------------------------- */

#define IMAPD_EV_CLOSED (-1)	/* EOF or a read/write error */
#define IMAPD_EV_TIMEOUT (-2)	/* timeout_ms passed without a complete event */
#define IMAPD_EV_STOP (-3)	/* shutdown requested while waiting */
/* The next parser event (never IMAP_NEED_MORE), reading from the client
 * as needed and flushing output before any wait. */
int imapd_next_event(struct imapd_session *s, int timeout_ms);
/* Bytes read from the client but not yet given to the parser. */
size_t imapd_unparsed(const struct imapd_session *s);
void imapd_printf(struct imapd_session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Sends what is queued; -1 (and s->dead) on failure. */
int imapd_flush(struct imapd_session *s);
/* Milliseconds the session has left to log in (preauth_timeout). */
long long imapd_preauth_left_ms(const struct imapd_session *s);
/* Sends when IMAPD_FLUSH_BYTES are queued. */
void imapd_maybe_flush(struct imapd_session *s);

/* The tagged result of the command being handled (written by the
 * dispatcher after the untagged updates). code may be NULL. */
void imapd_ok(struct imapd_session *s, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void imapd_no(struct imapd_session *s, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void imapd_bad(struct imapd_session *s, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* NO for a store error: a response code and text chosen by err->code
 * (never err->msg, which may name paths); logs what/err->msg. */
void imapd_no_err(struct imapd_session *s, const char *what, const struct terr *err);

/* Logs "event=<event> session= user= mailbox=<internal> <extra>". */
void imapd_log_event(struct imapd_session *s, const char *event, const char *mailbox, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* ---- dispatch (commands.c) -------------------------------------------------- */

/* A handler returns 0 (the dispatcher sends the updates and the tagged
 * reply), 1 (the same, then the session ends: LOGOUT), 2 (the handler
 * sent its tagged reply itself: STARTTLS, COMPRESS) or -1 (end the
 * session now, nothing more is sent). */
typedef int imapd_cmd_fn(struct imapd_session *s, const struct imap_cmd *cmd);
/* Runs one command: checks the state, calls its handler, sends the
 * untagged updates and the tagged reply. Returns 0 to go on, 1 to end
 * the session after the reply (LOGOUT), -1 to end it now. */
int imapd_dispatch(struct imapd_session *s, const struct imap_cmd *cmd);
/* The CAPABILITY list for the session's state (no "* CAPABILITY"). */
void imapd_capabilities(const struct imapd_session *s, struct buf *out);

/* ---- mailboxes (mailbox.c) ----------------------------------------------------- */

/* External (client) name to internal; -1 with a NO set. */
int imapd_name_in(struct imapd_session *s, const char *external, struct buf *internal_r);
/* Internal to external for this user (falls back to the internal name). */
void imapd_name_out(struct imapd_session *s, const char *internal, struct buf *external_r);
/* The user's rights on a mailbox with this owner and ACL. */
unsigned imapd_rights(const struct imapd_session *s, const char *internal, const char *acl);
/* Looks a mailbox up by external name and checks that the user has all
 * of need (a mailbox the user may not see is "nonexistent"). 0 with
 * *internal_r, *mi_r (free with store_mailbox_info_free) and *rights_r
 * (may be NULL) set; -1 with a NO set. */
int imapd_mailbox_get(struct imapd_session *s, const char *external, unsigned need, struct buf *internal_r,
		      struct store_mailbox_info *mi_r, unsigned *rights_r);
/* The target of APPEND, COPY or MOVE (needs i): a missing one gets NO
 * [TRYCREATE], a mailbox that is not mail (#sieve) NO [CANNOT]. 0 with
 * *mi (free it), or -1 with the NO set. */
int imapd_target_get(struct imapd_session *s, const char *external, struct buf *name,
		     struct store_mailbox_info *mi, unsigned *rights_r);
/* RFC 8474 object ids, as Cyrus 3.6 makes them: EMAILID "M" and the
 * first 24 hex digits of the GUID; THREADID "T" and 16 hex digits of the
 * conversation id (NIL without one); MAILBOXID the uniqueid. */
void imapd_emailid(const struct imapd_msg *m, char out[26]);
/* 0 with out set, or -1 when the message has no thread id (NIL). */
int imapd_threadid(const struct imapd_msg *m, char out[18]);
/* Appends "(\Recent \Seen $Foo)" for a message's flags. */
void imapd_write_flags(struct buf *b, int recent, unsigned sysflags, const char *keywords);

/* ---- the selected mailbox (view.c) -------------------------------------------- */

/* Loads the mailbox's live records as the new sequence map. take_recent
 * (SELECT, not EXAMINE): the messages no session has had as \Recent
 * become recent in this one, and stay so for no other. */
int imapd_view_open(struct imapd_session *s, const struct store_mailbox_info *mi, int readonly, unsigned rights,
		    int take_recent, struct imapd_view **v_r, struct terr *err);
void imapd_view_free(struct imapd_view **v);
/* Brings the map up to date with the store: marks expunged messages
 * gone, appends new ones, marks changed flags dirty. Returns 0, or -1
 * when the mailbox is gone (deleted or renamed): the caller ends the
 * session with BYE. */
int imapd_view_poll(struct imapd_session *s);
/* Sends what the poll found: EXPUNGE (descending, only when
 * allow_expunge), FLAGS for new keywords, EXISTS and RECENT, FETCH for dirty
 * messages (with UID when with_uid, MODSEQ when CONDSTORE is on). */
void imapd_view_announce(struct imapd_session *s, int allow_expunge, int with_uid);
/* The messages a sequence set names, as ascending indexes into msgs
 * (caller frees *idx_r). uid: the set holds UIDs. Gone messages are
 * included only for sequence numbers (they still have one). */
size_t imapd_view_resolve(const struct imapd_view *v, const struct imap_seqset *set, int uid, size_t **idx_r);
/* 0 when a sequence-number set names a number above the EXISTS the
 * client knows (FETCH, STORE, COPY answer BAD then, as RFC 3501 9's
 * seq-number says), else 1. */
int imapd_view_seq_valid(const struct imapd_view *v, const struct imap_seqset *set);
/* "* VANISHED (EARLIER) uids" (RFC 7162 3.2.5, 3.2.6) for the messages
 * of the selected mailbox expunged with a modseq above since, limited to
 * within (UIDs, may be NULL); nothing when there are none. */
void imapd_view_vanished_earlier(struct imapd_session *s, uint64_t since, const struct imap_seqset *within);
/* Index of uid, or -1. */
long imapd_view_find(const struct imapd_view *v, uint32_t uid);
/* Sends "* N EXPUNGE" for the given indexes (any order) and removes them. */
void imapd_view_expunge_now(struct imapd_session *s, const size_t *idx, size_t n);

/* Loads a message's bytes (and its MIME tree when parse) into s->cur.
 * 0, or -1 (logged) when the file cannot be read. */
int imapd_load(struct imapd_session *s, const char *mailbox, const struct imapd_msg *m, int parse);
/* The message's top-level header, parsed (its body empty when it came from
 * the cache): the header block kept in the message cache (no file opened),
 * else the file's (imapd_load). In s->cur; NULL when neither can be read. */
const struct mime_message *imapd_load_header(struct imapd_session *s, const char *mailbox,
					     const struct imapd_msg *m);
void imapd_loaded_clear(struct imapd_loaded *l);

/* ---- another user's \Seen (seen.c) --------------------------------------------- */

/* 1 when the session user's \Seen on this mailbox is kept in their seen
 * state (they are not its owner), 0 when it is the records' flag. */
int imapd_seen_private(const struct imapd_session *s, const char *internal);
/* For a seen_private view: sets SYSFLAG_SEEN of every message from the
 * user's seen state, marking changed ones dirty unless initial. */
void imapd_seen_overlay(struct imapd_session *s, int initial);
/* Sets (on) or clears \Seen of the messages idx in the user's seen
 * state; they become dirty. 0, or -1 with err. */
int imapd_seen_change(struct imapd_session *s, const size_t *idx, size_t n, int on, struct terr *err);

/* ---- CONDSTORE (cmd_any.c) ----------------------------------------------------- */

/* Turns CONDSTORE on (RFC 7162 3.1, a CONDSTORE enabling command): the
 * first time, with a mailbox selected, "* OK [HIGHESTMODSEQ n]" too. */
void imapd_condstore_enable(struct imapd_session *s);

/* ---- SEARCH, shared with SORT and THREAD (cmd_search.c) --------------------------- */

/* Runs q's keys over the selected mailbox: the indexes (into msgs) of the
 * live messages that match, ascending, in *idx_r (caller frees);
 * *failed_r counts messages that could not be read. -1 with BAD set
 * ("$"). A MODSEQ key enables CONDSTORE. */
long imapd_search_run(struct imapd_session *s, const struct imap_search *q, size_t **idx_r, size_t *failed_r);
enum { IMAPD_RET_MIN = 1, IMAPD_RET_MAX = 2, IMAPD_RET_COUNT = 4, IMAPD_RET_ALL = 8 };
/* RETURN options to IMAPD_RET_* bits (ALL when none); -1 (BAD set) for
 * SAVE or an unknown one. */
int imapd_search_return_opts(struct imapd_session *s, const struct imap_search *q);
/* "* ESEARCH (TAG ..) [UID] MIN MAX COUNT ALL [MODSEQ]" for nums in the
 * order given (ascending for SEARCH, sorted for ESORT: MIN and MAX are
 * then the first and last). first_ms, last_ms: the modseqs of nums[0]
 * and nums[n-1]; with only MIN and/or MAX asked for, MODSEQ is theirs
 * (the higher), else top (RFC 7162 3.1.5). */
void imapd_write_esearch(struct buf *b, const char *tag, int uid, unsigned ret, const uint32_t *nums, size_t n,
			 int modseq, uint64_t top, uint64_t first_ms, uint64_t last_ms);

/* ---- status (cmd_status.c) -------------------------------------------------------- */

/* "* STATUS name (...)" for IMAP_STATUS_* items. -1 (NO set) on error. */
int imapd_status_write(struct imapd_session *s, const char *internal, const char *external, unsigned items);

/* ---- special-use (specialuse.c) ------------------------------------------------- */

/* The "/specialuse" shared annotation of a mailbox, appended to out ("" if none). */
void imapd_specialuse_get(struct imapd_session *s, const char *internal, struct buf *out);
/* The USERID the "/specialuse" annotation of a mailbox is kept under:
 * its owner, "" for a shared mailbox (as Cyrus 3.6). */
void imapd_specialuse_userid(const char *internal, struct buf *out);
/* Checks a special-use list ("\Sent \Junk") and normalises its case;
 * -1 when a flag is not one of RFC 6154's. */
int imapd_specialuse_check(const char *const *flags, size_t n, struct buf *out);

/* ---- command handlers (cmd_*.c) --------------------------------------------------- */

imapd_cmd_fn imapd_cmd_capability, imapd_cmd_noop, imapd_cmd_logout, imapd_cmd_id, imapd_cmd_enable,
	imapd_cmd_starttls, imapd_cmd_login, imapd_cmd_authenticate, imapd_cmd_unauthenticate, imapd_cmd_compress,
	imapd_cmd_select, imapd_cmd_close, imapd_cmd_unselect, imapd_cmd_check,
	imapd_cmd_create, imapd_cmd_delete, imapd_cmd_rename, imapd_cmd_subscribe,
	imapd_cmd_list, imapd_cmd_lsub, imapd_cmd_namespace, imapd_cmd_status,
	imapd_cmd_append, imapd_cmd_idle, imapd_cmd_expunge, imapd_cmd_search, imapd_cmd_fetch,
	imapd_cmd_store, imapd_cmd_sort, imapd_cmd_thread, imapd_cmd_copy, imapd_cmd_getquota, imapd_cmd_getquotaroot,
	imapd_cmd_setquota, imapd_cmd_getacl, imapd_cmd_setacl, imapd_cmd_listrights, imapd_cmd_myrights,
	imapd_cmd_getmetadata, imapd_cmd_setmetadata, imapd_cmd_sync;

#endif
