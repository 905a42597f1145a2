/* limits.h: every size and count limit of tandem, each with its reason.
 *
 * A limit protects memory, disk or CPU from a client or peer, or matches a
 * limit of Cyrus 3.6 that a peer relies on. Code compares against these
 * names, never against a bare number. Pre-authentication IMAP state gets
 * its own, smaller values (IMAP_PREAUTH_*). Operators can lower some of
 * them in the config (the option named in the comment); none can be raised
 * past the value here.
 */
#ifndef TANDEM_LIMITS_H
#define TANDEM_LIMITS_H

/* ---- names ---------------------------------------------------------- */

/* Internal mailbox name, in bytes: Cyrus's MAX_MAILBOX_NAME (490), so
 * every name a Cyrus peer sends fits and every name we send fits it. */
#define MAX_MBOXNAME 490
/* A userid (with @domain), bytes: fits inside a mailbox name with room
 * for "example.com!user." and a folder. */
#define MAX_USERID 255
/* One hierarchy level of a mailbox name, bytes: a filesystem name limit
 * (255) is the tightest place such a component may end up. */
#define MAX_MBOX_COMPONENT 255
/* Hierarchy depth of a mailbox name: deep trees are a DoS on LIST. */
#define MAX_MBOX_DEPTH 64
/* User flags (keywords) per mailbox: Cyrus's MAX_USER_FLAGS (128); a
 * replica must accept every flag a Cyrus master can hold. */
#define MAX_USER_FLAGS 128
/* One flag name, bytes: IMAP atoms in practice are short; 255 bounds the
 * per-record flag list. */
#define MAX_FLAG_NAME 255
/* Annotation entry name, bytes. */
#define MAX_ANNOT_ENTRY 1024
/* Annotation value, bytes: Cyrus's default annotation_maxsize is 64 KiB... */
#define MAX_ANNOT_VALUE (64 * 1024)
/* Sieve script, bytes: Cyrus's sieve_maxscriptsize default is 32 KiB;
 * we accept 4x so nothing a Cyrus master holds is refused. */
#define MAX_SIEVE_SCRIPT (128 * 1024)

/* ---- messages --------------------------------------------------------- */

/* Largest message accepted, bytes (config: maxmessagesize may lower it).
 * 100 MiB: above what mainstream MTAs relay; a sync file literal can carry
 * up to 4 GiB, so a Cyrus master with larger mail must raise nothing here
 * but will see those messages refused by APPLY with a clear error. */
#define MAX_MESSAGE_SIZE (100L * 1024 * 1024)
/* Longest header section line we parse for IMAP ENVELOPE etc.: longer
 * lines are still stored byte for byte, only not parsed. */
#define MAX_HEADER_LINE (64 * 1024)
/* MIME container nesting (multipart and message/rfc822 inside each
 * other): real mail stays under ~8; this bounds parser recursion and the
 * parenthesis depth of BODYSTRUCTURE that clients must parse. Deeper
 * containers are served as application/octet-stream leaves. */
#define MIME_MAX_DEPTH 32
/* MIME parts in one message (Dovecot's default too): bounds the part tree
 * (~250 bytes each) and the BODYSTRUCTURE size; further parts stay in
 * their parent's epilogue, unparsed. */
#define MIME_MAX_PARTS 10000
/* Parameters of one Content-Type/Content-Disposition field, and tags of
 * one Content-Language: RFC 2231 continuation merging is quadratic. */
#define MIME_MAX_PARAMS 256
/* Bytes of one address field (To:, Cc: ...) read for ENVELOPE, cut at
 * a comma: a 20 MB To: would cost seconds, hundreds of MB of tokens and
 * a 40 MB ENVELOPE; 10k recipients take about 300 KB. */
#define MIME_MAX_ADDRESS_LIST (1024 * 1024)

/* ---- configuration ------------------------------------------------------ */

/* One config line, bytes: imapd.conf lines are short; a long line is a
 * mistake (or a binary file given by error). */
#define MAX_CONF_LINE 8192
/* Config file, bytes. */
#define MAX_CONF_FILE (1024 * 1024)
/* A file of user or mailbox names for tandem sync -f (Cyrus's -u/-m with
 * -f), bytes: a million names of ~60 bytes, read into memory at once. */
#define MAX_NAMES_FILE (64 * 1024 * 1024)
/* Channels per instance: each is one log file per change and one sync
 * client process. */
#define MAX_CHANNELS 32
/* Channel name, bytes: it is a directory name and a key prefix. */
#define MAX_CHANNEL_NAME 64
/* Shards of one channel (<channel>_sync_shards): each is a change log and
 * a sync client process; the cap bounds tandemd's processes and the files
 * one change may lock (one per shard it touches). */
#define MAX_SYNC_SHARDS 16

/* ---- change log (sync_log) ------------------------------------------------ */

/* One change-log line, bytes: a keyword and two arguments, each at most a
 * quoted internal mailbox name with every byte escaped. */
#define MAX_CHLOG_LINE (16 + 2 * (2 * MAX_MBOXNAME + 2) + 4)
/* Attempts to append when the log keeps being rotated under the writer
 * (Cyrus uses 64). */
#define CHLOG_APPEND_TRIES 64
/* A change log's temporary file (log.new.<pid>, chlog.c create_log) that
 * no process holds locked and that is older than this is a dead writer's
 * (killed between its create and its link; its lines were never
 * acknowledged): the sync client removes it. The creator locks the file
 * right after creating it, so a minute is ample; the sweep runs when a
 * sync client starts and then every CHLOG_SWEEP_EVERY_S. */
#define CHLOG_STALE_NEW_S 60
#define CHLOG_SWEEP_EVERY_S 600

/* ---- synchronous replication (sync_rightnow_channel) ------------------------ */

/* Sessions one rolling client holds waiting for a pass: each session
 * process waits for one commit at a time, so this bounds the client's
 * poll set and file descriptors (under the usual 1024) against a burst
 * of sessions; past it a waiter gets NO at once (its ack goes out, the
 * rolling client still replicates the change). */
#define RIGHTNOW_MAX_WAITERS 512
/* A WAIT line, bytes: "WAIT" and three 20-digit numbers need 66; longer
 * is garbage and closes the connection. */
#define RIGHTNOW_MAX_LINE 128
/* Milliseconds a connection to the client may take to send its WAIT
 * line (a session sends it at once): a silent one would hold a waiter
 * slot for nothing. */
#define RIGHTNOW_LINE_MS 5000
/* Completed passes the client remembers (log inode, size, result): a
 * waiter that arrives just after its pass completed is answered at once. */
#define RIGHTNOW_REMEMBER 8

/* ---- sync protocol (DLIST) -------------------------------------------------- */

/* A command word / atom / quoted string, bytes: Cyrus's maxword and
 * maxquoted (131072); a 3.6 peer never sends longer. */
#define DLIST_MAX_ATOM (128 * 1024)
/* A {N} or {N+} literal, bytes: the 3.6.5+/Debian maxliteral; larger is
 * refused by Cyrus, so no well-behaved peer sends it. */
#define DLIST_MAX_LITERAL (128 * 1024)
/* A file literal %{part guid size}: the message size limit. */
#define DLIST_MAX_FILE MAX_MESSAGE_SIZE
/* Nesting of ( ) and %( ): a MAILBOX is 4 deep; 16 leaves room and
 * bounds recursion. */
#define DLIST_MAX_DEPTH 16
/* Total items in one command: 10k records x ~10 keys each with room;
 * bounds memory for one APPLY. */
#define DLIST_MAX_ITEMS (4 * 1024 * 1024)
/* Memory for one parsed command, bytes. After authentication file
 * literals are streamed to disk and do not count (SYNC_MAX_STAGED_BYTES);
 * the IMAP transport and the pipe still carry them inline. */
#define DLIST_MAX_COMMAND_BYTES (256L * 1024 * 1024)
/* GUIDs per APPLY RESERVE we send (Cyrus client splits at 8192+1). */
#define SYNC_MAX_RESERVE_GUIDS 8192
/* File literals per APPLY MESSAGE we send (Cyrus client splits at 1024):
 * 256, because the client holds each file open from when it sizes the
 * literal until the command is sent (one open per body, no stat by path),
 * and 256 descriptors stay far under the usual soft limit of 1024 beside
 * the databases and sockets. */
#define SYNC_MAX_MESSAGE_FILES 256
/* Bodies travel by reference (docs/replication.md, "How bodies travel"):
 * a file literal is moved between a message file and the socket in pieces
 * of this many bytes: the replica writes each piece of a literal to its
 * staging file as it arrives (hashing it on the way), the client reads a
 * message file into the connection piece by piece. 64 KiB is one socket
 * read (conn_read) and keeps a session's memory independent of message
 * sizes (a session stays far under 64 MB whatever a command carries). */
#define SYNC_STREAM_CHUNK (64 * 1024)
/* Staged bodies of one replica session, bytes on disk (files in the
 * partition's tmp/sync directory, until RESTART or the end of the
 * session): a full initial sync of a large mailbox stages its bodies
 * only until its APPLY MAILBOX, and the client sends RESTART every few
 * hundred commands, so 4 GiB is generous; it bounds what one confused or
 * hostile admin connection can put on the replica's disk. Over it, the
 * APPLY MESSAGE is refused (NO) and nothing of it is kept. */
#define SYNC_MAX_STAGED_BYTES (4LL * 1024 * 1024 * 1024)
/* A replica session keeps the bytes of a streamed body of at most
 * SYNC_BODY_MEM_MAX in memory too, until its APPLY MAILBOX has applied
 * it: the new record's cache row (ENVELOPE, BODYSTRUCTURE) is built from
 * them instead of reading the message file again (issue 12: an open,
 * fstat, two reads and a close per message). At most SYNC_BODY_MEM_TOTAL
 * bytes at once: a csync session holds the bodies of the batch being
 * flushed (SYNC_APPLY_BATCH_BYTES and the ~1 MB part that closed it) and
 * of the batch being read meanwhile (as much again), so 12 MiB holds
 * every body of an ordinary stream and bounds the session's memory (64
 * MB RSS goal); bodies past it are read from their files as before (an
 * open, fstat, reads and a close each: 3,700 of 10,000 with 8 MiB once
 * the flush ran beside the reading). */
#define SYNC_BODY_MEM_MAX (256 * 1024)
#define SYNC_BODY_MEM_TOTAL (12 * 1024 * 1024)
/* A replica session's malloc (mallopt, set when its engine starts): free
 * memory at the top of the heap goes back to the system only past
 * SYNC_MALLOC_TRIM, and blocks up to SYNC_MALLOC_MMAP_MIN (a body of
 * SYNC_BODY_MEM_MAX in its power-of-two buffer) come from the heap. The
 * bodies held for a batch's cache rows (up to SYNC_BODY_MEM_TOTAL) are
 * freed and allocated again at every batch; with glibc's defaults the
 * heap's top was given back and faulted in again each time (page faults
 * and malloc ~2.5 % of the replica's CPU in an initial sync). A session
 * process keeps at most this much freed memory beyond its peak. */
#define SYNC_MALLOC_TRIM (SYNC_BODY_MEM_TOTAL + 4 * 1024 * 1024)
#define SYNC_MALLOC_MMAP_MIN (2 * SYNC_BODY_MEM_MAX + 4096)
/* A csync session applies the APPLY MAILBOX commands that are already
 * buffered (the client keeps several in flight) as one batch: their
 * bodies placed, one syncfs for them all, then each committed (one
 * transaction per run of one owner's mailboxes) and answered in order
 * (sync_replica.h, "Pipelined APPLY"). A batch is flushed at the latest
 * when it holds SYNC_APPLY_BATCH_MAX commands (an APPLY MESSAGE and an
 * APPLY MAILBOX per mailbox: 32 small mailboxes, three users' worth of
 * the 1,000 x 10 benchmark) or SYNC_APPLY_BATCH_BYTES of new bodies:
 * the first OK of a batch waits for all of it (4 MiB is
 * ~10-30 ms of writing here), and its bodies stay in memory for their
 * cache rows until it is applied (a third of SYNC_BODY_MEM_TOTAL; the
 * batch read while it is flushed and its last part the rest). The bytes
 * count as their APPLY MESSAGE arrives, so a batch read while the one
 * before is flushed (its APPLY MAILBOX queued) is bounded alike. */
#define SYNC_APPLY_BATCH_MAX 64
#define SYNC_APPLY_BATCH_BYTES (4L * 1024 * 1024)
/* 1: a csync session flushes a batch (syncfs, commits, cache rows) on a
 * thread of its own while it reads the next one (docs/replication.md,
 * "The flush beside the reading"); 0: on the session thread, as before
 * 2026-12-06. A switch, not a limit. Off: on the 2-core bench machine the
 * thread cost the replica CPU (0.138 -> 0.177 ms per message, 10,000
 * messages, quiet; +13 % at 1,000 x 10) and gained no wall time
 * (docs/benchmarks.md); the tests still run it (sync_replica_set_batch_max,
 * TANDEM_TEST_APPLY_BATCH_MAX), for a machine with cores to spare. */
#define SYNC_APPLY_FLUSH_THREAD 0
/* APPLY MAILBOX parts a streaming sync client keeps in flight
 * (sync_client_bulk.c): enough that the replica finds several buffered
 * to share one flush (SYNC_APPLY_BATCH_BYTES of 1 MB parts, or two
 * users' ten small mailboxes each: the replica's batch spans users,
 * sync_replica_join); each waits in the client's pipeline
 * (SYNCC_MAX_PIPELINE, 64 commands, which binds first: ~31 parts with
 * their APPLY MESSAGE) with its snapshot. 16 cut a batch at 16 mailboxes
 * (1.6 users at 1,000 x 10) and left the rest of a user to a second
 * batch with its own commit: 48 makes it one batch per two users, one
 * WAL fdatasync fewer per user (9,019 -> 8,019 for 1,000 users,
 * docs/benchmarks.md, "A replica batch across users"). A refused part
 * only gets the parts behind it refused too (their SINCE_MODSEQ no
 * longer matches). */
#define SYNC_CLIENT_MAILBOXES_INFLIGHT 48

/* Users whose GET USER a streaming client (sync_client_users.c) has asked
 * ahead of the one it sends: the replica answers a GET USER inside its
 * batch when the batch holds nothing of that user (sync_replica_join), so
 * with the next users' answers already there the client sends their parts
 * at once and one replica batch (one syncfs, relaxed commits) holds
 * several users' mailboxes; asking only the next one made the client wait
 * for that answer behind the batch, and a batch held two users at most.
 * 4: SYNC_APPLY_BATCH_MAX (64 commands) is ~4-5 users of ten small
 * mailboxes; each answer held is one user's mailbox states. */
#define SYNC_CLIENT_USERS_AHEAD 4
/* A full update of one mailbox the replica refuses because its state is
 * newer than what the client read (IMAP_SYNC_CHECKSUM) while the master
 * now holds everything the replica has: another client of the channel
 * (the rolling one beside a `tandem sync -A`, or a second `sync -u`) got
 * there between this client's read and its APPLY. The client reads the
 * master again and resends, at most this many times per mailbox: each
 * resend races only with changes newer than itself, so 3 is plenty
 * unless the mailbox takes mail faster than one round trip, and a
 * bound keeps a real mismatch from looping (it then fails as before and
 * the mailbox goes on the failed list for the next pass). */
#define SYNC_RACE_RESENDS 3
/* Prepared statements the store keeps per open database (src/store/store_stmt.c):
 * the store has about 70 distinct statements, a sync pass or a delivery uses
 * 10-20 of them; with up to 64 user databases open at once (USTORE_CACHE_MAX)
 * 32 statements of a few KB each stay well under the 64 MB RSS goal. */
#define STORE_STMT_CACHE_MAX 32
/* A database's write-ahead log is checkpointed and truncated when a
 * connection closes if the log is larger than this, bytes (src/store/store.c,
 * close_db). The first process to open a database that no other process
 * has open rebuilds SQLite's WAL index from the log: it reads and checksums
 * every frame (4 KB + 24; ~6 us each here), so this bounds what a fresh
 * process (tandem deliver, a new IMAP, LMTP or sync session) pays at open:
 * at most ~0.8 ms. A checkpoint costs ~3 ms and 2-3 fsyncs; 512 KB is ~18
 * deliveries (~7 frames each) or ~40 IMAP sessions between two, i.e. ~0.15
 * fsync per delivery. Without it a log written only by short-lived
 * processes grows for ever (SQLite restarts a log only from a connection
 * that saw it backfilled, and a process that opens it after the others
 * closed it cannot know that): measured 17 MB, 4,200 frames read by every
 * `tandem deliver` (27 ms), plus a full checkpoint by every one of them. */
#define STORE_WAL_CLOSE_CKPT_BYTES (512 * 1024)

/* The largest new-user database a process keeps as its template
 * (store.c, owner_build_db): the schema alone is ~100 KB (25 pages); a
 * bigger file is not what the schema makes, and is not kept (each new
 * user's database is then made by SQLite, as the first one). */
#define OWNER_TEMPLATE_MAX (1024 * 1024)
/* New owners' directories a process keeps made ahead once it has made two
 * (src/store/store_spare.c): a replica's initial sync makes one per user,
 * ~50-250 a second here, and making one costs two syncs (its meta.db and
 * the directory, ~1-3 ms on this disk) that then run on a thread beside the
 * session instead of in its path. Each spare is ~120 KB on disk; a spare
 * left by a process that ended is removed by the next build. 4 covers a
 * burst while the thread builds the next (one at a time). */
#define OWNER_SPARE_MAX 4
/* User databases a reused session process keeps open between its sessions
 * (store_keep_enable, src/store/store.c), besides users.db. Each costs 3
 * descriptors (database, -wal, -shm), SQLite's own memory for the
 * connection (schema, statements, lookaside: ~150 KB) and its page cache
 * (~4 KB a page read, emptied when kept if over STORE_KEEP_CACHE_BYTES):
 * per process at most 27 descriptors and ~10 MB; measured with 9 kept
 * handles of 60-message users, an idle process's RSS 5.3 -> 6.7 MB and
 * 5 -> 32 descriptors; within the 64 MB RSS goal. With maxspare 100 idle
 * processes, 2,700 descriptors. Reusing one saves the open (schema parse,
 * WAL-index rebuild when no other process has it open, -shm mmap/munmap)
 * and the statements' prepares: a client that comes back to the same
 * process finds its database warm (one client: 4.6 -> 1.8 ms of CPU a
 * session, docs/benchmarks.md); while one process keeps a database open,
 * the others' opens do not rebuild its WAL index. 8 covers a session's
 * owner and the few others it touches (shared mailboxes, other users' via
 * ACL) and a few users returning; more would rarely be hit (tandemd picks
 * an idle process before the login names the user). */
#define STORE_KEEP_MAX 8
#define STORE_KEEP_CACHE_BYTES (1024 * 1024)
/* A message's header block (up to and with its empty line) is kept in the
 * message cache when it is at most this long, bytes (src/msgcache): SEARCH
 * on header fields (FROM, SUBJECT, HEADER, SENTBEFORE, ...) and SORT/THREAD
 * read it from the owner's database instead of opening and parsing the
 * message file. Headers of ordinary mail are 1-5 KB (the workload's 0.6-2
 * KB); mailing-list and spam mail with long Received chains reach 10-20 KB.
 * A longer header is not cached (those messages are searched from their
 * files, as before): the bound keeps one pathological message from making
 * every cache row read of a mailbox expensive. */
#define MSGCACHE_HEADERS_MAX (64 * 1024)

/* ---- IMAP -------------------------------------------------------------- */

/* The csync port before AUTHENTICATE: a command (AUTHENTICATE PLAIN with
 * its base64, STARTTLS, NOOP, EXIT) needs well under a kilobyte; anything
 * longer, literals included, closes the session, so a stranger's session
 * never holds more than this plus one read. */
#define SYNC_PREAUTH_MAX_COMMAND 8192

/* Command line (outside literals), bytes: RFC 7162 asks servers to accept
 * at least 8192; a UID set of a large folder needs more. */
#define IMAP_MAX_LINE (64 * 1024)
/* Before login: LOGIN/AUTHENTICATE/STARTTLS/CAPABILITY need little. */
#define IMAP_PREAUTH_MAX_LINE 8192
/* ID's line and whole command, before login too (clients send ID first):
 * RFC 2971 allows 30 field/value pairs of 30 + 1024 bytes, ~32 KB quoted
 * and up to twice that with every quote and backslash escaped. */
#define IMAP_ID_MAX_LINE (64 * 1024)
/* A literal other than APPEND's message, bytes. */
#define IMAP_MAX_LITERAL (64 * 1024)
/* Before login a literal carries a user name or password at most. */
#define IMAP_PREAUTH_MAX_LITERAL 1024
/* Parenthesised nesting in a command (SEARCH, FETCH BODY[...]): bounds
 * parser recursion. */
#define IMAP_MAX_NESTING 32
/* SORT criteria in one command: nine keys exist (RFC 5256, 5957), each
 * worth giving once; more only multiplies the comparison work. */
#define IMAP_MAX_SORT_CRITERIA 16
/* Message ids read from one message's References for THREAD=REFERENCES
 * (the last ones: the nearest ancestors): each costs a walk up the tree
 * to refuse loops; real threads are far shallower. */
#define IMAP_MAX_THREAD_REFS 256
/* Messages in one MULTIAPPEND (RFC 3502), and their bytes together: all
 * of them are held in memory until the command ends, because they are
 * stored in one transaction (all or none). */
#define IMAP_MAX_MULTIAPPEND 1000
#define IMAP_MAX_MULTIAPPEND_BYTES MAX_MESSAGE_SIZE
/* COPY/MOVE into another owner's mailbox goes in batches, each one store
 * transaction (one commit and change-log write for the batch): messages
 * and their bytes held in memory at once. 64 messages take most of the
 * per-message cost away; 32 MiB keeps a session's memory bounded (a
 * larger single message goes alone). */
#define IMAPD_COPY_BATCH 64
#define IMAPD_COPY_BATCH_BYTES (32u * 1024 * 1024)
/* FETCH PREVIEW, characters: RFC 8970 3 says at most 256. */
#define IMAP_PREVIEW_CHARS 256
/* Arguments/items in one command: bounds parser memory. */
#define IMAP_MAX_ARGS 4096
/* One command's line text plus all its literals except APPEND's message,
 * bytes: many literals of IMAP_MAX_LITERAL each would otherwise be
 * unbounded parser memory. */
#define IMAP_MAX_COMMAND_SIZE (1024 * 1024)
/* Before login: LOGIN's two literals plus a line. */
#define IMAP_PREAUTH_MAX_COMMAND_SIZE (16 * 1024)
/* A literal header "%{partition guid size}" at the end of a SYNC* line,
 * bytes: partition name, a 40-hex GUID and a 10-digit size fit easily. */
#define IMAP_SYNC_MAX_FILE_HEADER 512
/* Bad commands in a row before the server disconnects (Dovecot: 20). */
#define IMAP_MAX_BAD_COMMANDS 20
/* Before login (Dovecot imap-login: 3). */
#define IMAP_PREAUTH_MAX_BAD_COMMANDS 3
/* Idle timeout after login, seconds: RFC 3501 says at least 30 minutes. */
#define IMAP_IDLE_TIMEOUT 1800
/* Before login, seconds: a client that has not logged in by then is gone
 * (preauth_timeout may lower it; PREAUTH_TIMEOUT_MAX). */
#define IMAP_PREAUTH_TIMEOUT PREAUTH_TIMEOUT_MAX
/* A LIST/LSUB pattern (reference + mailbox), bytes: twice the longest
 * mailbox name leaves room for wildcards; matching costs pattern x name. */
#define IMAP_MAX_LIST_PATTERN (2 * MAX_MBOXNAME)
/* Mailboxes one LIST walks: bounds the work and the memory of one LIST
 * (every user's folders, when an admin lists "*"). */
#define IMAP_MAX_LIST_MAILBOXES 100000
/* Messages per query of the message cache in one FETCH: bounds the
 * memory of one run of cached ENVELOPE/BODYSTRUCTURE strings. */
#define FETCH_CACHE_RUN 1024
/* A UID gap above this starts a new cache query, so a sparse set scans
 * about as many records as it names. */
#define FETCH_CACHE_GAP 64

/* ---- LMTP -------------------------------------------------------------- */

/* Command line, bytes: RFC 5321 4.5.3.1.4 says 512 incl. CRLF; we allow
 * extensions' parameters. */
#define LMTP_MAX_LINE 2048
/* Text line in DATA, bytes: RFC 5321 allows 1000; real mail breaks that,
 * so we only bound memory. */
#define LMTP_MAX_DATA_LINE (1024 * 1024)
/* Recipients per transaction: RFC 5321 4.5.3.1.8 requires at least 100. */
#define LMTP_MAX_RCPTS 1000
/* Bad commands in a row before disconnect. */
#define LMTP_MAX_BAD_COMMANDS 20
/* Timeout of one read inside DATA, seconds: RFC 5321 4.5.3.2 suggests
 * 3-5 minutes. Between commands preauth_timeout applies. */
#define LMTP_IDLE_TIMEOUT 300
/* `tandem deliver` as an LMTP client of tandemd: the longest it waits for
 * one reply or one write, seconds. tandemd answers after the delivery is
 * durable (and, with sync_rightnow_channel, replicated: at most
 * sync_rightnow_timeout more); the MTA that runs deliver waits longer
 * still. Same as the server side's LMTP_IDLE_TIMEOUT (RFC 5321 4.5.3.2). */
#define DELIVER_LMTP_TIMEOUT 300
/* Connecting to tandemd's LMTP listener and waiting for its greeting,
 * milliseconds: a refused or absent listener answers at once and tandemd
 * greets right after its accept (a forked or reused session process); a
 * wedged one must not hold the delivery longer than this before deliver
 * stores the message itself (nothing has been sent then). Generous for a
 * loaded machine: running out only costs the direct path. */
#define DELIVER_LMTP_GREETING_MS 10000

/* ---- server ---------------------------------------------------------------- */

/* Session processes per tandemd: each is a process with its own SQLite
 * handles; past this, new connections are closed (and logged) instead of
 * exhausting memory or file descriptors. The services share it through
 * their own caps (imap_maxchild, imaps_maxchild, lmtp_maxchild,
 * sync_maxchild, Cyrus's maxchild), whose sum may not pass it: strangers
 * filling one port never leave another without room. */
#define MAX_SESSIONS 2000
/* Default caps per service; they sum to 1950 of MAX_SESSIONS. IMAP and
 * imaps take most: one user's clients hold 2-10 connections each. */
#define IMAP_MAXCHILD_DEFAULT 900
#define IMAPS_MAXCHILD_DEFAULT 900
/* An MTA delivers over a few connections (Postfix's default process
 * limit is 100); more waiting LMTP sessions only queue on the store. */
#define LMTP_MAXCHILD_DEFAULT 100
/* One per channel shard of each master feeding this replica. */
#define SYNC_MAXCHILD_DEFAULT 50
/* Sessions one client address may hold on one service (maxperhost; 0
 * turns it off; unix-socket clients are not counted): one stranger
 * cannot take a service's whole cap. 100 leaves room for a NAT of an
 * office (a few connections per client) and an MTA's parallel LMTP. */
#define MAXPERHOST_DEFAULT 100
/* Longest time a session may stay without logging in, seconds
 * (preauth_timeout may lower it): IMAP before LOGIN/AUTHENTICATE, the
 * sync port before AUTHENTICATE, LMTP between commands (LMTP has no
 * login; an MTA's connection cache keeps a few seconds). A stranger's
 * idle connection costs a process at most this long. */
#define PREAUTH_TIMEOUT_MAX 60

/* Session processes reused (imap, imaps, lmtp; the sync port forks one
 * per connection): a process that ended its session cleanly (LOGOUT,
 * QUIT or EOF, no failed login) waits, idle, for tandemd to hand it the
 * next connection of the same service (src/tandemd/tandemd.c). */
/* Connections one process serves before it exits (maxuse, Cyrus's imapd
 * -U, whose default this is): a fresh process now and then returns what
 * a slow leak or heap fragmentation took. */
#define MAXUSE_DEFAULT 250
/* The most maxuse may be: past ~1,000 the fork it saves is under 0.01 ms
 * a connection; a bound keeps a process's life (and what its heap may
 * hold of earlier sessions) finite. */
#define MAXUSE_MAX 100000
/* Idle processes kept per service (maxspare): enough for the reconnects
 * of a busy webmail or a burst of 100 clients; one costs under 1 MB of
 * memory of its own (measured: 260-470 kB private after a LOGIN and a
 * SELECT; the rest is shared with tandemd). */
#define MAXSPARE_DEFAULT 100
/* How long an idle process waits for a connection before it exits,
 * seconds (spare_timeout; Cyrus's imapd -T 60, Dovecot's idle_kill 60s):
 * a burst's processes go when it is over. */
#define SPARE_TIMEOUT_DEFAULT_S 60
/* The most spare_timeout may be, seconds. */
#define SPARE_TIMEOUT_MAX_S 3600

/* ---- authentication ---------------------------------------------------- */

/* Password, bytes: hashing cost is linear in it. */
#define MAX_PASSWORD 1024
/* Pause after a failed login, milliseconds (Cyrus failedloginpause 3s):
 * the base; it doubles with each recent failure of the same user or
 * client address (server_auth.c). */
#define AUTH_FAIL_PAUSE_MS 3000
/* Longest pause of one failed login, ms: past it a guesser gains nothing
 * more and a session process is held too long. */
#define AUTH_FAIL_PAUSE_MAX_MS 30000
/* Failed logins after which a session is closed, on every protocol
 * (Dovecot's imap-login: 3). */
#define AUTH_MAX_FAILS 3
/* Seconds after its last failure a user's or address's count is
 * forgotten: a guesser must wait this long to start again from the base
 * pause; a user who mistyped is not slowed for long. */
#define AUTH_FAIL_WINDOW_S 900
/* Slots of the shared failure table (users + addresses remembered at
 * once), 24 bytes each: a busy attack on more keys evicts the oldest. */
#define AUTH_FAIL_SLOTS 8192

/* ---- the metrics endpoint (metrics_listen) ---------------------------- */

/* A scrape is "GET /metrics HTTP/1.1" plus a few short headers (Host,
 * User-Agent, Accept); Prometheus sends under 300 bytes. These bound
 * what a stranger on the port can make the metrics process hold. */
/* Request target (path and query), bytes: 414 past it. */
#define METRICS_MAX_TARGET 256
/* Request line, bytes: method, target, version and the spaces. */
#define METRICS_MAX_REQUEST_LINE (METRICS_MAX_TARGET + 32)
/* The whole request head, bytes (request line and headers): 431 past it. */
#define METRICS_MAX_HEAD 8192
/* Header lines of one request: 431 past it. */
#define METRICS_MAX_HEADERS 64
/* Connections served at once; more wait in the listen backlog: a few
 * scrapers (Prometheus pairs, a curl by hand) never need more. */
#define METRICS_MAX_CONNS 8
/* Milliseconds a connection may take from its accept to the last byte
 * of the answer: a slow or silent client holds its slot no longer. */
#define METRICS_CONN_TIMEOUT_MS 5000

/* The verified-credentials cache of tandemd (server_authcache.h).
 * Bytes of tandemd's memory one cached login takes (a 32-byte HMAC, its
 * expiry, LRU and hash links, its bucket): auth_cache_size / this is the
 * number of logins remembered. */
#define AUTH_CACHE_ENTRY_BYTES 64
/* Largest auth_cache_size, bytes: 64 MiB is a million logins, more users
 * than one instance serves; it bounds what tandemd holds. */
#define AUTH_CACHE_MAX_SIZE (64LL * 1024 * 1024)
/* Longest auth_cache_ttl, seconds: a password change misses at once
 * anyway (the stored hash is in the key); the TTL bounds how long a
 * verifier of a password stays in tandemd's memory after its last
 * yescrypt. Dovecot's default is 1 hour, ours too. */
#define AUTH_CACHE_TTL_MAX_S (24 * 3600)
/* Longest stored hash the cache takes, bytes (libxcrypt's
 * CRYPT_OUTPUT_SIZE): a longer one is verified without the cache. */
#define AUTH_CACHE_MAX_HASH 384
/* Questions one session may ask the cache: a session logs in once,
 * after at most AUTH_MAX_FAILS failures, and tells the cache one right
 * password. Past it the cache answers "not cached" and takes nothing: a
 * subverted session cannot use tandemd as a fast password oracle. */
#define AUTH_CACHE_ASKS (2 * (AUTH_MAX_FAILS + 1))
/* How long a session waits for tandemd's answer, ms: past it the session
 * verifies the hash itself and stops asking (tandemd is stuck or gone). */
#define AUTH_CACHE_WAIT_MS 2000

/* Stack of a process's message-file syncer thread (store_blob.c): it
 * runs fsync, rename and open on paths of at most 4 KB and formats an
 * error; 128 KB leaves room for ASan's redzones, where glibc's default
 * would reserve 8 MB of address space per process for it. */
#define BLOB_SYNCER_STACK (128 * 1024)

/* Free memory an LMTP session keeps at the top of its heap (mallopt
 * M_TRIM_THRESHOLD; glibc's default is 128 KB): each delivery allocates
 * and frees its message (up to ~100 KB here) and SQLite's pages, and with
 * the default the heap shrank and grew again with every message: a brk
 * pair, page faults, and a TLB flush (IPIs once the syncer thread of
 * store_blob.c has run on the other CPU), ~3-4 % of the session's CPU in
 * a profile. 8 MB per session process is little beside its databases. */
#define LMTP_HEAP_KEEP (8 * 1024 * 1024)

#endif
