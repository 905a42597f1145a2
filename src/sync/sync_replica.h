/* sync_replica.h: the replica side of the replication engine.
 *
 * A struct sync_replica applies what a master sends (Cyrus 3.6 GET,
 * APPLY, RESTORE and RESTART commands, reference §4) to a store. It does
 * no I/O: a transport hands it one command at a time and writes out what
 * it answers. The csync service (src/syncs), SYNC* inside IMAP (imapd)
 * and the in-process pipe of the tests (sync_pipe.h) all drive this one
 * engine, so a replica behaves the same whatever carries the protocol.
 *
 * The durability rule is the store's (store.h): "OK" is returned only
 * after what the command changed is on disk (bodies fsynced, change log
 * fsynced when the replica logs for a chain, SQLite COMMIT). A command
 * that fails changes nothing and gets Cyrus's error line ("NO
 * IMAP_SYNC_CHECKSUM ...", see sync_no_text).
 *
 * Message bodies received with APPLY MESSAGE or found by APPLY RESERVE
 * are staged in the engine until RESTART or its end; APPLY MAILBOX takes
 * new records' bodies from there and checks each SHA-1.
 */
#ifndef TANDEM_SYNC_REPLICA_H
#define TANDEM_SYNC_REPLICA_H

#include <stddef.h>

#include "proto/sync/dlist.h"

struct store;
struct sync_replica;

/* A data line of an answer ("* <kvlist>"): d is only valid during the call. */
typedef void sync_data_fn(void *rock, const struct dlist *d);

struct sync_replica_opts {
	struct store *st;		/* borrowed; changes go through it */
	const char *session_id;		/* for the logs */
	/* 1 when this server must refuse APPLY (promoted to master by
	 * `tandem failover`: an old master coming back must not overwrite
	 * it); NULL: never. Asked once per APPLY. */
	int (*is_master)(void *rock);
	void *is_master_rock;
};

struct sync_replica *sync_replica_new(const struct sync_replica_opts *o);
void sync_replica_free(struct sync_replica **rp);

/* Runs one command: verb "GET", "APPLY", "RESTORE" or "RESTART" (any
 * case) and kv the keyed DLIST that follows it (NULL for RESTART). Data
 * lines go to data (may be NULL). Returns the completion line without
 * CRLF ("OK success", "NO IMAP_... text"); it stays valid until the next
 * call on r. */
const char *sync_replica_exec(struct sync_replica *r, const char *verb, const struct dlist *kv, sync_data_fn *data,
			      void *rock);

/* The same for one framed command as it came off the wire ("APPLY
 * MAILBOX %(...)\r\n", literals included). A command that does not parse
 * gets "BAD IMAP_PROTOCOL_ERROR Failed to parse <VERB> line". */
const char *sync_replica_exec_raw(struct sync_replica *r, const char *cmd, size_t len, sync_data_fn *data,
				  void *rock);

/* The same for a command whose file literals were streamed while it was
 * read (sync_replica_file_*): cmd holds their headers, not their bytes. */
const char *sync_replica_exec_streamed(struct sync_replica *r, const char *cmd, size_t len, sync_data_fn *data,
				       void *rock);

/* File literals streamed while a command is read (the csync session
 * after authentication; the pipe), so that no body is held in memory:
 * for each literal, begin with its header, write its bytes as they
 * arrive (in any pieces), end. The bytes go to a staging file in the
 * partition's tmp/sync directory, hashed on the way; at the end a body
 * that does not hash to its GUID is removed. Any failure (a bad header,
 * a GUID mismatch, a write error, SYNC_MAX_STAGED_BYTES) is kept and the
 * command is answered with it and does nothing; the bytes are still to
 * be consumed (the stream stays in step). The command then stages the
 * files (APPLY MESSAGE); whatever it does not take is removed when it
 * completes (sync_replica_exec*, or sync_replica_files_drop when it was
 * never run). */
struct dlist_file_hdr;
void sync_replica_file_begin(struct sync_replica *r, const struct dlist_file_hdr *h);
void sync_replica_file_write(struct sync_replica *r, const void *data, size_t len);
void sync_replica_file_end(struct sync_replica *r);
void sync_replica_files_drop(struct sync_replica *r);

/* Cyrus's answer to a command that does not parse: "BAD
 * IMAP_PROTOCOL_ERROR Failed to parse <VERB> line", the verb taken from
 * the command's first word, upper-cased. */
void sync_parse_failure_line(const char *cmd, size_t len, char *out, size_t outsz);

/* 1 for the verbs the engine runs (GET, APPLY, RESTORE, RESTART). */
int sync_replica_verb(const char *verb);

/* Pipelined APPLY (the csync session, issue 12): while further commands
 * are already buffered, APPLY MAILBOX (and APPLY MESSAGE between them)
 * join a batch instead of running at once: each APPLY MAILBOX is checked
 * and its bodies placed (sync_replica_defer), and its answer waits;
 * sync_replica_flush then makes all the batch's bodies durable with one
 * syncfs, commits each mailbox (one transaction for consecutive mailboxes
 * of one owner) and hands every answer to fn in the order of the
 * commands. The durability rule holds: an OK is handed out only after
 * the bodies and records it covers are on disk. Every other command
 * needs the batch flushed first (sync_replica_exec asks nothing: the
 * transport must call sync_replica_flush before it, and before it waits
 * for input, so that the client is never left waiting for answers).
 * sync_replica_may_defer: 1 for the commands that may join a batch. */
typedef void sync_reply_fn(void *rock, const char *line);
int sync_replica_may_defer(const char *verb, const struct dlist *kv);
/* The same by the verb and the APPLY's key (the command's first two atoms). */
int sync_replica_defer_key(const char *verb, const char *key);
/* Takes *kv (the keyed DLIST after the verb; set to NULL). */
void sync_replica_defer(struct sync_replica *r, const char *verb, struct dlist **kv);
/* Commands waiting for their answers (the batch and the flush in flight). */
size_t sync_replica_deferred(const struct sync_replica *r);
/* 1 when the batch holds SYNC_APPLY_BATCH_MAX commands or
 * SYNC_APPLY_BATCH_BYTES of bodies: flush now. */
int sync_replica_batch_full(const struct sync_replica *r);
void sync_replica_flush(struct sync_replica *r, sync_reply_fn *fn, void *rock);
/* The flush overlapped with reading the next batch (the csync session;
 * docs/replication.md, "Durability"): sync_replica_flush_start waits for
 * a flush still in flight (its answers to fn), then starts the batch's
 * flush on a thread of its own and returns at once. While it runs the
 * transport may only stream file literals (sync_replica_file_*) and
 * sync_replica_defer further APPLY MESSAGE / APPLY MAILBOX (a MESSAGE is
 * staged at once; a MAILBOX is queued, and checked and placed when the
 * flush is done: the store is the flush thread's meanwhile), and must
 * call sync_replica_flush (which waits) before anything else, and
 * before it waits for input. sync_replica_flush_poll: when the flush in
 * flight is done, its answers to fn and the queued commands placed, 1;
 * else 0 at once. The answers still follow the syncfs and the commits
 * that cover them, and go out in the order of the commands. */
void sync_replica_flush_start(struct sync_replica *r, sync_reply_fn *fn, void *rock);
int sync_replica_flush_poll(struct sync_replica *r, sync_reply_fn *fn, void *rock);
/* Only the flush in flight: waits for it, its answers to fn, the
 * commands queued behind it placed (the batch is not flushed). */
void sync_replica_flush_wait(struct sync_replica *r, sync_reply_fn *fn, void *rock);
/* A descriptor that becomes readable when the flush running on the
 * flush thread is done (for poll beside the connection: the transport
 * waits for input and for the answers at once), or -1 when none runs. */
int sync_replica_flush_fd(const struct sync_replica *r);
/* 1 while a flush started by sync_replica_flush_start is not finished. */
int sync_replica_flushing(const struct sync_replica *r);
/* Tests: batches of at most n commands (0: SYNC_APPLY_BATCH_MAX), and
 * sync_replica_flush_start on the flush thread even when the build's
 * SYNC_APPLY_FLUSH_THREAD is 0 (TANDEM_TEST_APPLY_BATCH_MAX too). */
void sync_replica_set_batch_max(struct sync_replica *r, size_t n);
/* sync_replica_defer for one framed command as it came off the wire
 * (streamed: its file literals were streamed, as for
 * sync_replica_exec_streamed): 1 when it joined the batch, 0 when it
 * cannot (the caller flushes the batch and runs it). */
int sync_replica_defer_raw(struct sync_replica *r, const char *cmd, size_t len, int streamed);
/* GET USER, GET MAILBOXES and RESTART inside a batch (issue 12: a batch
 * spans users; the streaming client sends "GET USER u(k+1)", u(k)'s
 * parts, "RESTART" per user). sync_replica_join: 1 when the command
 * joined the batch, its answer queued behind the answers of the
 * commands before it (handed to fn in order; a GET's data lines to
 * data just before its line); 0 when it cannot (the caller flushes the
 * batch and runs it, as for any other command): the batch is empty,
 * or a GET reads a user an APPLY MAILBOX of the batch writes. A flush in
 * flight is waited for first (its answers to fn). How:
 *   - GET USER / GET MAILBOXES runs when it comes, on the session's
 *     thread, when no APPLY MAILBOX of the batch belongs to an owner it
 *     reads: what the batch has not committed yet cannot change its
 *     answer, so the answer now is the answer in order (the simplest
 *     correct way: no GET inside the flush, no answer made on the
 *     flush thread). A GET of a user the batch writes ends the batch.
 *   - RESTART unstages at once (a body sent after it is staged afresh;
 *     every apply before it has its bodies in place already); the bytes
 *     those applies keep for their cache rows are freed only after the
 *     batch's run; its "OK Restarting" keeps its place.
 * No durability changes: a joined command writes nothing, and the OKs
 * of the applies still wait for the batch's syncfs and commits.
 * sync_replica_join_key: 1 for the commands that may join (the verb and
 * the GET's key); sync_replica_join_raw: the same for a framed command
 * (not streamed: none of these carries a file). */
int sync_replica_join_key(const char *verb, const char *key);
int sync_replica_join(struct sync_replica *r, const char *verb, const struct dlist *kv, sync_data_fn *data,
		      void *data_rock, sync_reply_fn *fn, void *rock);
int sync_replica_join_raw(struct sync_replica *r, const char *cmd, size_t len, sync_data_fn *data, void *data_rock,
			  sync_reply_fn *fn, void *rock);
/* Commands run so far (for the session's closing log line). */
unsigned long sync_replica_commands(const struct sync_replica *r);

#endif
