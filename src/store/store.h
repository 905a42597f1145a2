/* store.h: the mail store of one tandem instance.
 *
 * Layout (docs/store.md has the full picture):
 *   <configdir>/users.db                 users and their password hashes
 *   <partition>/user/<enc-userid>/meta.db   one SQLite database per user
 *                                           (WAL): mailboxes, records,
 *                                           flags, annotations, seen, subs,
 *                                           sieve, quota, tombstones,
 *                                           cache (FETCH strings per GUID)
 *   <partition>/user/<enc-userid>/blobs/xx/GUID   message files, named by
 *                                           the SHA-1 of their exact bytes
 *   <partition>/shared/...               the same for shared mailboxes
 *
 * Every mutating call is one transaction with the durability rule of
 * tandem:
 *   1. the message file is written to a temp file, fsynced, renamed to
 *      its GUID name, and its directory fsynced;
 *   2. BEGIN IMMEDIATE on the owner's meta.db, rows changed;
 *   3. the change-log lines are appended to every channel and fsynced;
 *      if that fails the transaction is rolled back and the call fails;
 *   4. COMMIT (WAL, synchronous=FULL: fsynced).
 * A crash before 4 leaves at most an unreferenced file and/or a change-log
 * line for a change that did not happen (replay is idempotent: harmless);
 * a crash after 4 leaves the whole change. There is never a metadata row
 * without its file, nor a committed change the replicas will not hear of.
 *
 * Writes exempt from the durability rule (nothing a client was told is
 * done, no change-log line): exactly one, the \Recent marks
 * (store_recent_take). RFC 3501 makes \Recent a session property; a
 * mark lost in a power cut only shows its messages as \Recent once more
 * in the next session. Its commit runs at synchronous=NORMAL: the frames
 * go to the WAL without an fdatasync, and the next FULL commit of the same
 * database (whose sync covers every earlier frame of its log) or a
 * checkpoint makes them durable. Only on a log whose directory entry is
 * known durable (store.c, "the write-ahead logs whose directory entry is
 * durable"); a process crash loses nothing (the frames are in the page
 * cache). Flags, expunges, appends, copies, seen state, subscriptions,
 * annotations, ACLs, quota, users: all FULL, all of steps 1-4. (A
 * replica's batch of applies for several owners commits each at NORMAL
 * and then syncs the file system before it answers any: step 4's sync
 * moved after the commits, not dropped; store_apply_batch_run. A new
 * user's users.db row in such a batch, too: at NORMAL, durable by the
 * batch's first syncfs, before any commit of the batch; and a new owner's
 * first commit there at OFF, its new log's header and directory made
 * durable by the closing syncfs.)
 * SQLite's directory fsync of a write-ahead log at a connection's first
 * sync is skipped for a log that already held a header when the database
 * was opened (its creator's first, FULL, sync made its directory entry
 * durable); a new log, or one emptied or made by another program, gets it.
 * Its one window: a creator killed between writing the header and its
 * sync, then a power cut before the directory is written back (docs/store.md).
 *
 * Mailbox names are internal names (src/names/mboxname.h). UIDs and
 * modseqs only grow: each user has one modseq counter shared by all its
 * mailboxes. Return convention: 0 on success, -1 with *err set, unless a
 * function says otherwise.
 */
#ifndef TANDEM_STORE_H
#define TANDEM_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "lib/buf.h"
#include "lib/err.h"
#include "store/synccrc.h"

struct chlog;
struct store;

/* The message cache: strings FETCH answers with, derived from a message's
 * bytes once when it is stored (ENVELOPE, BODYSTRUCTURE, and BODY, the
 * non-extensible form), and the message's header block, which SEARCH and
 * SORT read instead of the file (headers.ptr NULL: not kept, the header
 * being over MSGCACHE_HEADERS_MAX). The store does not know how they are
 * made: the opener passes a function (src/msgcache/msgcache.h has tandem's). */
struct store_cache_strings {
	struct buf envelope;
	struct buf bodystructure;
	struct buf body;
	struct buf headers;
};
/* Appends the strings of the message data[0, len) to out. */
typedef void store_cache_fn(const void *data, size_t len, struct store_cache_strings *out);
void store_cache_strings_free(struct store_cache_strings *cs);

/* After a transaction that wrote change-log lines is committed (and its
 * change-log locks released), the store calls the opener's after_commit
 * hook with where the lines ended in each channel's log: synchronous
 * replication (sync_rightnow_channel) waits there for the replica, so a
 * caller's acknowledgement follows the replica's copy. The hook cannot
 * fail the call: the change is committed whatever it says. */
struct chlog_pos;
struct store_commit {
	const char *owner;		/* the transaction's owner ("" shared) */
	const char *mailbox;		/* the mailbox of its first line, or "" */
	const struct chlog_pos *pos;	/* one per (channel, shard) file written */
	size_t npos;
};
typedef void store_commit_fn(void *rock, const struct store_commit *c);

struct store_opts {
	const char *configdir;
	const char *partition;		/* partition name, "default" */
	const char *partition_path;
	struct chlog *chlog;		/* NULL: changes are not logged (sync_log off) */
	long long maxmessagesize;	/* 0 = MAX_MESSAGE_SIZE */
	int virtdomains;
	store_cache_fn *cache_fn;	/* NULL: no message cache is written */
	store_commit_fn *after_commit;	/* NULL: none */
	void *commit_rock;
};

/* SQLite's process-wide settings for the store (page-cache allocation):
 * the store applies them before it opens its first database; a process that initialises SQLite before it opens
 * a store (tandemd, before it forks) calls it first. */
void store_sqlite_setup(void);
int store_open(const struct store_opts *opts, struct store **st_r, struct terr *err);
void store_close(struct store **st);

/* Database handles kept across stores, for a process that opens and
 * closes a store per session, one session after another (tandemd's
 * session processes with maxuse > 1). Once enabled, store_close keeps
 * users.db and up to max of the user databases it had open (the most
 * recently used; STORE_KEEP_MAX in limits.h has the bound and its
 * reason) open in the process instead of closing them, with their
 * prepared statements and page caches, after the same WAL checkpoint a
 * close does (STORE_WAL_CLOSE_CKPT_BYTES); a later store_open of the same
 * paths takes them back. A kept handle is used again only while its path
 * still names the file it has open (device and inode, checked by the
 * stat every open makes; the open descriptor pins the inode, so a file
 * deleted and created again, or renamed over, never matches): a user
 * deleted, moved away or restored is opened afresh. max 0 disables it
 * and closes every kept handle. The handles belong to the process, not
 * to a store: nothing else of a store (change log, memo, hooks, errors)
 * is kept. */
void store_keep_enable(unsigned max);

/* How many handles are kept now (users.db counted). */
unsigned store_keep_count(void);
/* 1 when path (a descriptor's /proc/self/fd target) is a file of a kept
 * handle: its database, -wal or -shm file; at most 3 per handle. For the
 * descriptor check of a reused session process (server_reuse_check). */
int store_keep_owns(const char *path);

/* New owners' directories made ahead (src/store/store_spare.c): once st
 * has made a new owner (user or shared store), a thread keeps
 * OWNER_SPARE_MAX whole, synced directories in the partition's tmp/, and
 * a new owner is then one rename into place instead of a build with two
 * syncs on the caller's path. For a process that makes many: a replica's
 * sync session (an initial sync makes one per user). Those not taken are
 * removed when st closes (or at exit; after a kill, by a later build). */
void store_spares_enable(struct store *st);
/* Replace the change log (NULL: suppress logging, as a replica without
 * sync_log_chain does). Returns the previous one. */
struct chlog *store_set_chlog(struct store *st, struct chlog *log);
/* How long a call waits for a database another process has locked before
 * it fails with TE_BUSY (default 30 s; the tests wait less). Applies to
 * the databases opened from now on. */
void store_set_busy_timeout(struct store *st, int ms);
/* Replace the after-commit hook (NULL: none; a sync client's own writes
 * must not wait for itself). */
void store_set_after_commit(struct store *st, store_commit_fn *fn, void *rock);

/* ---- users --------------------------------------------------------- */

/* Creates the user and its INBOX. password NULL: no login possible. */
int store_user_create(struct store *st, const char *userid, const char *password, struct terr *err);
/* Removes the user, all its mailboxes, messages, seen state and subs. */
int store_user_delete(struct store *st, const char *userid, struct terr *err);
/* 1 if the user exists (has a store), 0 if not, -1 on error. */
int store_user_exists(struct store *st, const char *userid, struct terr *err);
int store_user_passwd(struct store *st, const char *userid, const char *password, struct terr *err);
/* 1 if the password is right, 0 if wrong or no such user, -1 on error. */
int store_user_check_password(struct store *st, const char *userid, const char *password,
			      struct terr *err);
/* The stored password hash (crypt(3) string) of userid into out: 1, or
 * 0 when there is no such user or it has no password, -1 on error. */
int store_user_pwhash(struct store *st, const char *userid, struct buf *out, struct terr *err);
/* 1 when password hashes to hash (crypt_r, compared in constant time),
 * else 0. Costs what the hash's method costs (yescrypt: ~60 ms). */
int store_password_verify(const char *hash, const char *password);
typedef int store_user_cb(const char *userid, void *rock);
/* Calls cb for each user in userid order; a non-zero cb return stops. */
int store_user_list(struct store *st, store_user_cb *cb, void *rock, struct terr *err);

/* ---- mailboxes ----------------------------------------------------- */

/* Every MAILBOX key of the sync protocol (reference §4.5). Strings are
 * owned by the struct; free with store_mailbox_info_free. */
struct store_mailbox_info {
	char *uniqueid;
	char *name;
	char *mboxtype;		/* "" for plain email */
	uint32_t sync_crc;
	uint32_t sync_crc_annot;
	uint32_t last_uid;
	uint64_t highestmodseq;
	uint32_t recentuid;
	int64_t recenttime;
	int64_t last_appenddate;
	int64_t pop3_last_login;
	int64_t pop3_show_after;
	uint64_t xconvmodseq;
	uint64_t raclmodseq;
	uint32_t uidvalidity;
	char *partition;
	char *acl;
	char *options;
	char *quotaroot;	/* "" if none */
	uint64_t createdmodseq;
	uint64_t foldermodseq;
	uint32_t exists;	/* non-expunged records (not a sync key) */
};
void store_mailbox_info_free(struct store_mailbox_info *mi);

struct store_mailbox_create_opts {
	const char *uniqueid;	/* NULL: a new random one */
	uint32_t uidvalidity;	/* 0: a new one */
	const char *acl;	/* NULL: the default for the name */
	const char *mboxtype;	/* NULL: "" */
};
/* Creates a mailbox (its owner must exist); a user mailbox's missing
 * superior names are created first (RFC 3501 CREATE, as Cyrus 3.6). */
int store_mailbox_create(struct store *st, const char *name,
			 const struct store_mailbox_create_opts *opts, struct terr *err);
/* Replaces a mailbox's ACL string (Cyrus form "id\trights\t..."): new
 * HIGHESTMODSEQ and FOLDERMODSEQ and a MAILBOX change-log line, so the
 * replicas hear of it. TE_INVALID for CR/LF in the ACL. */
int store_mailbox_set_acl(struct store *st, const char *name, const char *acl, struct terr *err);
/* Each well-formed entry ("id\trights") of a Cyrus ACL string, in order;
 * a negative entry's id keeps its '-'. */
typedef void store_acl_cb(const char *id, size_t idlen, const char *rights, size_t rlen, void *rock);
void store_acl_each(const char *acl, store_acl_cb *cb, void *rock);
/* 1 when the ACL grants 'p' (post) to "anyone", "anonymous" or sender
 * (may be NULL or "") and no negative entry ("-id") of those takes it
 * back: Cyrus's rule for filing into a folder from outside (lmtpd's
 * user+folder@, deliver -m). */
int store_acl_grants_post(const char *acl, const char *sender);
/* TE_NOTFOUND if there is no such mailbox. */
int store_mailbox_get(struct store *st, const char *name, struct store_mailbox_info *mi_r,
		      struct terr *err);
/* Renames a mailbox (and its children when `children`); uniqueid, UIDs
 * and UIDVALIDITY are kept. Both names must belong to the same owner. */
int store_mailbox_rename(struct store *st, const char *oldname, const char *newname, int children,
			 struct terr *err);
/* Deletes a mailbox and its records; its messages' files go when no
 * other mailbox of the owner uses them. A user's INBOX is deleted only
 * with the user. */
int store_mailbox_delete(struct store *st, const char *name, struct terr *err);
/* 1 when a mailbox of name's owner with this uniqueid was deleted here
 * (its tombstone is kept), 0 if not, -1 on error. */
int store_mailbox_was_deleted(struct store *st, const char *name, const char *uniqueid, struct terr *err);
typedef int store_mailbox_cb(const struct store_mailbox_info *mi, void *rock);
/* All mailboxes of owner (userid, "" for shared ones) in name order, or of
 * every owner when owner is NULL. */
int store_mailbox_list(struct store *st, const char *owner, store_mailbox_cb *cb, void *rock,
		       struct terr *err);
/* Recomputes both CRCs from the records and compares them with the kept
 * values: 1 equal, 0 different (then *crc_r and *annot_r hold the computed
 * ones), -1 error. */
int store_mailbox_verify_crc(struct store *st, const char *name, uint32_t *crc_r,
			     uint32_t *annot_r, struct terr *err);

/* ---- messages ------------------------------------------------------ */

/* A message record (reference §4.6.1). */
struct store_record {
	uint32_t uid;
	uint64_t modseq;
	int64_t last_updated;
	unsigned sysflags;	/* SYSFLAG_* from synccrc.h, incl. SYSFLAG_EXPUNGED */
	char *keywords;		/* space-separated user flags, "" if none */
	int64_t internaldate;
	uint32_t size;
	char guid[41];
	int64_t savedate;
	uint64_t createdmodseq;
	uint64_t thrid;
};
void store_record_free(struct store_record *r);

struct store_append_opts {
	unsigned sysflags;	/* initial system flags */
	const char *keywords;	/* initial user flags, space-separated, or NULL */
	int64_t internaldate;	/* 0: now */
};

/* Appends one message; *uid_r gets its UID. The bytes are stored exactly
 * as given. TE_TOOBIG over maxmessagesize, TE_OVERQUOTA over a quota,
 * TE_NOSPACE on a full disk, TE_NOTFOUND without the mailbox. */
int store_append(struct store *st, const char *mboxname, const void *data, size_t len,
		 const struct store_append_opts *opts, uint32_t *uid_r, struct terr *err);

/* Appends n messages in ONE transaction (RFC 3502 MULTIAPPEND): all or
 * none; they share one modseq and get consecutive UIDs (uids_r: room for
 * n, may be NULL). Errors as store_append. */
struct store_append_msg {
	const void *data;
	size_t len;
	struct store_append_opts opts;
};
int store_append_multi(struct store *st, const char *mboxname, const struct store_append_msg *msgs, size_t n,
		       uint32_t *uids_r, struct terr *err);

/* One delivery to several mailboxes (of one or several users): the file
 * is written and fsynced once and hard-linked for the other owners. Each
 * target succeeds or fails on its own: results[i] is 0 or -1 with errs[i];
 * uids[i] gets the UID. Returns 0 if at least one target succeeded. */
int store_deliver(struct store *st, const char *const *mboxnames, size_t n, const void *data,
		  size_t len, const struct store_append_opts *opts, uint32_t *uids,
		  struct terr *errs, struct terr *err);

enum store_flag_op { STORE_FLAGS_SET, STORE_FLAGS_ADD, STORE_FLAGS_REMOVE };
/* Changes flags on the given UIDs (missing or expunged UIDs are skipped).
 * keywords: space-separated user flags or NULL. Records that change get a
 * new modseq. unchangedsince: 0 = always, else CONDSTORE's rule: records
 * whose modseq is above it are left alone and their UIDs put in
 * failed_r (may be NULL). */
int store_set_flags(struct store *st, const char *mboxname, const uint32_t *uids, size_t nuids,
		    enum store_flag_op op, unsigned sysflags, const char *keywords,
		    uint64_t unchangedsince, struct buf *failed_r, struct terr *err);
/* Expunges the given UIDs (all \Deleted ones when uids is NULL). The
 * records stay, marked SYSFLAG_EXPUNGED with a new modseq. *count_r gets
 * how many were expunged (may be NULL). */
int store_expunge(struct store *st, const char *mboxname, const uint32_t *uids, size_t nuids,
		  size_t *count_r, struct terr *err);

/* Copies the live records of the given UIDs into dst (same owner) with
 * their flags and internal dates, and with move marks the sources
 * expunged, all in ONE transaction: a crash leaves all of it or none.
 * src_uids_r/dst_uids_r (room for nuids, may be NULL) get the pairs in
 * ascending source order; *count_r how many. TE_INVALID when the owners
 * differ (copy message by message then). TE_OVERQUOTA over a quota. */
int store_copy(struct store *st, const char *src, const uint32_t *uids, size_t nuids, const char *dst, int move,
	       uint32_t *src_uids_r, uint32_t *dst_uids_r, size_t *count_r, struct terr *err);

typedef int store_record_cb(const struct store_record *r, void *rock);
/* Records of a mailbox in UID order, expunged ones included only when
 * with_expunged; only those with modseq > since_modseq. */
int store_records(struct store *st, const char *mboxname, uint64_t since_modseq, int with_expunged,
		  store_record_cb *cb, void *rock, struct terr *err);
/* Path of a message file of the mailbox's owner (it need not exist). */
int store_message_path(struct store *st, const char *mboxname, const char *guid, struct buf *path_r,
		       struct terr *err);
/* A message file open for reading, for a reader that opens many (the
 * sync client sending bodies): the file of guid of mailbox mboxname's
 * owner, opened by name in the owner's blobs/ directory, which *bd keeps
 * open for the next calls while they are of the same owner (one path
 * walk per owner, not one per file). *fd_r (the caller closes it) and
 * its size from fstat; *path_r its path (for messages and a fallback).
 * TE_NOTFOUND when there is no such file. store_blobdir_close at the
 * end. */
struct store_blobdir {
	int fd;		/* -1: none open */
	char *dir;	/* the owner's directory it belongs to */
};
#define STORE_BLOBDIR_INIT { -1, NULL }
int store_message_open(struct store *st, const char *mboxname, const char *guid, struct store_blobdir *bd,
		       int *fd_r, uint64_t *size_r, struct buf *path_r, struct terr *err);
void store_blobdir_close(struct store_blobdir *bd);
/* Reads a message's bytes and checks their SHA-1 against the GUID
 * (TE_CORRUPT if they differ). */
int store_message_read(struct store *st, const char *mboxname, const char *guid, struct buf *out,
		       struct terr *err);

/* ---- staged message bodies (a replica's sync sessions; store_blob.c) ---- */

/* A new staging file in <partition>/tmp/sync, on the file system of every
 * message file, so that a staged body becomes a message file by a hard
 * link, without a copy: its path and an fd open for writing. The name
 * starts with the process id (store_stage_sweep). */
int store_stage_create(struct store *st, struct buf *path_r, int *fd_r, struct terr *err);
/* Stages the message file of guid that mailbox's owner already has (APPLY
 * RESERVE): its SHA-1 is checked reading it in pieces (TE_CORRUPT when it
 * does not hash to guid, TE_NOTFOUND when there is none), then it is
 * hard-linked (copied in pieces across file systems) to a new staging
 * file, whose path is returned. */
int store_stage_existing(struct store *st, const char *mboxname, const char *guid, struct buf *path_r,
			 struct terr *err);
/* Removes the staging files of processes that are gone (a session killed
 * before it could remove its own). */
void store_stage_sweep(struct store *st);

/* ---- the message cache (derived data: the table may be emptied) ---- */

/* One live record with its cached strings; a string is NULL (length 0)
 * when the message has no cache row (stored without a cache_fn, or
 * before the cache existed). Valid only during the callback. */
struct store_cache_row {
	uint32_t uid;
	const char *guid;
	const char *envelope, *bodystructure, *body;
	size_t envelope_len, bodystructure_len, body_len;
};
typedef int store_cache_cb(const struct store_cache_row *row, void *rock);
/* Live records of a mailbox with uid_lo <= UID <= uid_hi in UID order,
 * joined with their cache rows: one SQL statement, no message file is
 * opened. A non-zero cb return stops. */
int store_cache_range(struct store *st, const char *mboxname, uint32_t uid_lo, uint32_t uid_hi,
		      store_cache_cb *cb, void *rock, struct terr *err);
/* The cached header block of the message guid of mailbox's owner appended
 * to out: 1, or 0 when there is none (no cache row, a row written before
 * headers were cached, a header over MSGCACHE_HEADERS_MAX). Reads the
 * owner's database only. */
int store_cache_headers(struct store *st, const char *mboxname, const char *guid, struct buf *out,
			struct terr *err);
/* A read transaction on mailbox's owner's database around a run of
 * store_cache_headers calls (each alone takes and drops SQLite's file
 * locks: a third of a header SEARCH's CPU went to fcntl). *begun_r says
 * whether this call began it; pass it to store_cache_read_end. */
int store_cache_read_begin(struct store *st, const char *mboxname, int *begun_r, struct terr *err);
void store_cache_read_end(struct store *st, const char *mboxname, int begun);
/* Fills missing cache rows of n messages of the mailbox's owner in one
 * transaction (for messages stored before the cache existed); rows that
 * exist are left alone. */
int store_cache_put(struct store *st, const char *mboxname, const char *const *guids,
		    const struct store_cache_strings *strs, size_t n, struct terr *err);

/* Parses a flag list ("\\Seen $Label1", parentheses allowed) into
 * system flags and space-separated keywords. TE_INVALID for an unknown
 * \\-flag or a bad keyword. \\Recent is accepted and ignored. */
int store_flags_parse(const char *list, unsigned *sysflags_r, struct buf *keywords_r,
		      struct terr *err);
/* Appends the flags in Cyrus's order (\\Deleted \\Answered \\Flagged
 * \\Draft \\Expunged \\Seen, then keywords), space-separated. */
void store_flags_format(unsigned sysflags, const char *keywords, struct buf *out);

/* ---- \Recent (store_recent.c) --------------------------------------- */

/* The highest UID of the mailbox (by its uniqueid) some session has taken
 * as recent; 0 if none. Session state: no modseq, no change-log line, not
 * the RECENTUID sync key. */
int store_recent_get(struct store *st, const char *mboxname, const char *uniqueid, uint32_t *uid_r,
		     struct terr *err);
/* Takes UIDs up to upto: raises the mark to upto when it is below, in one
 * transaction, and sets *prev_r to the mark before (the messages above it
 * are recent in the caller's session alone). No write when there is
 * nothing to take. */
int store_recent_take(struct store *st, const char *mboxname, const char *uniqueid, uint32_t upto,
		      uint32_t *prev_r, struct terr *err);

/* ---- per-user state ----------------------------------------------- */

/* Subscriptions of userid (internal names). */
int store_subscribe(struct store *st, const char *userid, const char *mboxname, int on,
		    struct terr *err);
typedef int store_name_cb(const char *name, void *rock);
int store_subs_list(struct store *st, const char *userid, store_name_cb *cb, void *rock,
		    struct terr *err);

/* Seen state of a user on another user's (or a shared) mailbox, by the
 * mailbox's uniqueid (reference §4.3.11). */
struct store_seen {
	int64_t lastread;
	uint32_t lastuid;
	int64_t lastchange;
	char *seenuids;		/* sequence set, "" if none */
};
int store_seen_set(struct store *st, const char *userid, const char *uniqueid,
		   const struct store_seen *seen, struct terr *err);
/* TE_NOTFOUND if none. */
int store_seen_get(struct store *st, const char *userid, const char *uniqueid,
		   struct store_seen *seen_r, struct terr *err);

/* Annotations: uid 0 = on the mailbox. userid "" = shared. An empty value
 * deletes the annotation. */
int store_annot_set(struct store *st, const char *mboxname, uint32_t uid, const char *entry,
		    const char *userid, const void *value, size_t len, struct terr *err);
typedef int store_annot_cb(uint32_t uid, const char *entry, const char *userid, const void *value,
			   size_t len, uint64_t modseq, void *rock);
int store_annot_list(struct store *st, const char *mboxname, int64_t uid /* -1 = all */,
		     store_annot_cb *cb, void *rock, struct terr *err);

/* Quota roots. A root is a mailbox name; it covers that mailbox and its
 * children. Limits: storage in KiB and message count, -1 = unlimited. */
struct store_quota {
	char *root;
	int64_t storage_limit;	/* KiB, -1 none */
	int64_t message_limit;	/* -1 none */
	int64_t storage_used;	/* bytes */
	int64_t message_used;
	uint64_t modseq;
};
int store_quota_set(struct store *st, const char *root, int64_t storage_kib, int64_t messages,
		    struct terr *err);
int store_quota_delete(struct store *st, const char *root, struct terr *err);
int store_quota_get(struct store *st, const char *root, struct store_quota *q_r, struct terr *err);
void store_quota_free(struct store_quota *q);

/* Sieve scripts of a user; at most one is active. */
int store_sieve_put(struct store *st, const char *userid, const char *name, const void *script,
		    size_t len, struct terr *err);
int store_sieve_delete(struct store *st, const char *userid, const char *name, struct terr *err);
/* name NULL: deactivate all. */
int store_sieve_activate(struct store *st, const char *userid, const char *name, struct terr *err);
typedef int store_sieve_cb(const char *name, const void *script, size_t len, int active,
			   int64_t modified, void *rock);
int store_sieve_list(struct store *st, const char *userid, store_sieve_cb *cb, void *rock,
		     struct terr *err);

/* ---- mailbox handles: a mailbox resolved once ----------------------- */

/* An open mailbox: its owner's database and its row, found by name once
 * (the name-based calls above resolve the name on every call). It
 * follows the mailbox through a rename; after the mailbox is deleted its
 * calls find nothing (TE_NOTFOUND). Owned by the caller, closed with
 * store_mailbox_close before the store. */
struct store_mailbox;
/* TE_NOTFOUND when there is no such mailbox; any other code is a real
 * error (a locked or damaged database is never "not found"). */
int store_mailbox_open(struct store *st, const char *name, struct store_mailbox **mb_r, struct terr *err);
void store_mailbox_close(struct store_mailbox **mb);
/* The mailbox's row as read by open (or by the last refresh); valid until
 * the next refresh or the close. */
const struct store_mailbox_info *store_mailbox_state(const struct store_mailbox *mb);
int store_mailbox_refresh(struct store_mailbox *mb, struct terr *err);
/* One snapshot: the row is read again, and everything read through mb
 * until store_mailbox_read_end sees the same moment of the owner's
 * database (a read transaction: writers go on, in WAL mode they are not
 * held up). A sync client's header (LAST_UID, HIGHESTMODSEQ, SYNC_CRC)
 * and the records it sends with it must be of one moment, or the
 * replica's CRC check refuses the update. Like store_mailbox_refresh it
 * replaces what store_mailbox_state returned. *begun_r says whether this
 * call began the transaction (not when one was open on the database
 * already); pass it to store_mailbox_read_end. */
int store_mailbox_read_begin(struct store_mailbox *mb, int *begun_r, struct terr *err);
void store_mailbox_read_end(struct store_mailbox *mb, int begun);
/* store_records, store_annot_list and store_message_read of the mailbox. */
int store_mailbox_records(struct store_mailbox *mb, uint64_t since_modseq, int with_expunged,
			  store_record_cb *cb, void *rock, struct terr *err);
int store_mailbox_annots(struct store_mailbox *mb, int64_t uid, store_annot_cb *cb, void *rock,
			 struct terr *err);
int store_mailbox_message_read(struct store_mailbox *mb, const char *guid, struct buf *out, struct terr *err);

/* ---- replication: applying a master's mailbox state (reference §4.3.5) */

struct store_apply_record {
	uint32_t uid;
	uint64_t modseq;
	int64_t last_updated;
	unsigned sysflags;	/* incl. SYSFLAG_EXPUNGED */
	const char *keywords;	/* space-separated */
	int64_t internaldate;
	uint32_t size;
	char guid[41];
	int64_t savedate;
	uint64_t createdmodseq;
	uint64_t thrid;
};

/* An annotation carried by replication: uid 0 = on the mailbox. */
struct store_apply_annot {
	uint32_t uid;
	const char *entry;
	const char *userid;	/* "" = shared */
	const void *value;
	size_t len;
};

/* A message body for a new record: 0 with data/len, or -1 if this
 * connection never received it (or no longer holds it in memory). Also
 * asked for a body that came as a file (body_file): the bytes in memory
 * build the new record's cache row without reading the file again. */
typedef int store_body_fn(void *rock, const char *guid, const void **data_r, size_t *len_r);
/* The same as a file (a staged body whose bytes were checked against
 * guid): 0 with its path, which the store hard-links into place (or
 * moves: body_taken); 1 with the path of a file the store must only link
 * (a message file a body was moved to before); -1 if none. */
typedef int store_body_file_fn(void *rock, const char *guid, const char **path_r);
/* Set by a caller whose staged files may be moved: the store renames a
 * staged file (body_file 0) into place (one rename instead of a link now
 * and an unlink at RESTART) and says where it went; the caller must then
 * not remove it, and gives new_path, as 1, for the body from then on (a
 * later mailbox of another owner links it from there). */
typedef void store_body_taken_fn(void *rock, const char *guid, const char *new_path);

struct store_apply {
	const char *uniqueid, *name, *mboxtype, *partition, *acl, *options;
	uint32_t last_uid, recentuid, uidvalidity;
	uint64_t highestmodseq, createdmodseq, foldermodseq, xconvmodseq, raclmodseq;
	int64_t recenttime, last_appenddate, pop3_last_login, pop3_show_after;
	int has_since;
	uint64_t since_modseq;
	uint32_t since_crc, since_crc_annot;
	uint32_t sync_crc, sync_crc_annot;	/* 0: not checked */
	const struct store_apply_record *recs;	/* ascending UIDs */
	size_t nrecs;
	/* Real annotations, authoritative like Cyrus's: each applied record
	 * gets exactly those with its UID; the mailbox exactly those with
	 * UID 0 (replaced only when has_mbox_annots). */
	const struct store_apply_annot *annots;
	size_t nannots;
	int has_mbox_annots;
	int force;
	store_body_fn *body;
	store_body_file_fn *body_file;	/* asked first; NULL: bodies in memory only */
	store_body_taken_fn *body_taken;	/* NULL: staged files are linked, never moved */
	void *body_rock;
};

/* Creates or updates a mailbox to the master's state, as Cyrus's APPLY
 * MAILBOX does: TE_MOVED (uniqueid/name conflict), TE_CHANGED (SINCE_*
 * precondition), TE_CHECKSUM (stale state, split brain, CRC mismatch
 * after applying), TE_NOTFOUND (a new record's body was not sent),
 * TE_CORRUPT (a body does not hash to its GUID). Everything is checked
 * before anything is changed, except the final CRC check (as in Cyrus,
 * the changes then stay and the client repairs with a full update). The
 * owner's store and user entry are created when missing. */
int store_apply_mailbox(struct store *st, const struct store_apply *a, struct terr *err);
/* Several applies that share their flushes (a replica's pipelined APPLY
 * MAILBOX commands): store_apply_batch_add checks what it can and places
 * the new bodies (step 1 without its syncfs; -1 with err: that apply
 * failed and is not in the batch), a new owner's users.db row (at
 * synchronous=NORMAL) and directory (without its directory fsyncs)
 * included; store_apply_batch_run then makes every placed body, new
 * directory and row durable with one syncfs (per file system), and runs
 * the applies in the order they were added, consecutive ones of one owner
 * in one transaction (each inside its own savepoint: a refused one
 * changes nothing; one COMMIT, so one change-log append and one WAL
 * flush, for them all; with two owners or more, or one new owner's first
 * commit, the COMMITs skip the WAL flush and one syncfs after the last
 * makes them durable). rcs[i] and
 * errs[i] get what store_apply_mailbox would have returned for the i-th
 * apply added; only after run returns are their changes on disk (the
 * durability rule above: an acknowledgement waits for run). Each struct
 * store_apply must stay valid until run, which empties the batch.
 * store_apply_mailbox is a batch of one. */
struct store_apply_batch;
struct store_apply_batch *store_apply_batch_new(struct store *st);
int store_apply_batch_add(struct store_apply_batch *b, const struct store_apply *a, struct terr *err);
size_t store_apply_batch_count(const struct store_apply_batch *b);
void store_apply_batch_run(struct store_apply_batch *b, int *rcs, struct terr *errs);
void store_apply_batch_free(struct store_apply_batch **b);
/* The syncfs calls of every batch's run so far, in this process (the
 * bodies' and the closing one of relaxed commits): for the tests. */
unsigned long store_apply_batch_syncfs(void);
/* Marks UIDs expunged without new modseqs (APPLY EXPUNGE, after a full
 * update); the mailbox's uniqueid must match (TE_MOVED). */
int store_apply_expunge(struct store *st, const char *name, const char *uniqueid, const uint32_t *uids,
			size_t n, struct terr *err);
/* Renames one mailbox keeping its modseqs (APPLY RENAME). */
int store_apply_rename(struct store *st, const char *oldname, const char *newname, struct terr *err);
/* Removes a mailbox completely (APPLY UNMAILBOX); TE_NOTFOUND if missing.
 * Unlike store_mailbox_delete, an INBOX may go. */
int store_apply_unmailbox(struct store *st, const char *name, struct terr *err);
/* Creates the user entry (no password) and its empty database if missing
 * (replicas: seen state, subscriptions or Sieve may come before a mailbox). */
int store_user_ensure(struct store *st, const char *userid, struct terr *err);
/* The same for the owner of a mailbox name (a user, or the shared
 * mailboxes' store): a quota root may come before its mailbox. */
int store_owner_ensure(struct store *st, const char *mboxname, struct terr *err);

/* ---- checks --------------------------------------------------------- */

/* Checks a user's store: every record's file exists with its size (and,
 * with bodies, its SHA-1), UIDs <= last_uid, modseqs <= highestmodseq,
 * kept CRCs equal to recomputed ones. Each problem found is appended to
 * report as one line; returns the number of problems, -1 on error. */
int store_check_user(struct store *st, const char *userid, int bodies, struct buf *report,
		     struct terr *err);

#endif
