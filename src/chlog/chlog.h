/* chlog.h: the per-channel change log (Cyrus's sync_log, reference §7).
 *
 * Files: the default channel "" is <configdir>/sync/log, a named channel
 * <configdir>/sync/<channel>/log; the reader works on log-run beside it.
 * A line is "KEYWORD arg [arg2]\n" with Cyrus's quoting (§7.2).
 *
 * Writer protocol (§7.4), per channel and append: open O_APPEND, take a
 * SHARED fcntl lock on the file's data range, check the path still names
 * the inode we opened (a reader may have renamed it to log-run: then
 * retry), one write, fsync, unlock, close (group commit: concurrent
 * writers append and fsync together; Cyrus locks exclusively, and its
 * reader, which locks exclusively after the rename, works with both).
 * A new log is created under a temporary name and linked to "log" with
 * a mark byte locked until its directory is fsynced, and every writer
 * waits on that mark after its own fsync (chlog.c, "group commit").
 * A short write is blanked, never cut back. Unlike Cyrus, a failure is
 * returned to the caller, which fails its operation: a change the
 * replicas would never hear of is never committed. Lines already written
 * to some channels before a failure are harmless: replay is idempotent.
 *
 * The channels a writer logs to are those it was opened with (its config)
 * and those listed in <configdir>/sync/channels, which tandemd rewrites
 * from its config at start and on SIGHUP: a channel added to a running
 * master is logged to by every process from its next change on, without
 * a restart. A writer checks that file again after its COMMIT (in
 * chlog_release) and appends the lines to a channel that appeared in
 * between, so a full sync started after the reload misses nothing.
 *
 * Sharded channels (<channel>_sync_shards N > 1): every line goes to
 * sync/<channel>/<k>/log (sync/<k>/log for the default channel), k the
 * FNV-1a hash of the line's owner mod N (chlog_line_shards): one user's
 * changes stay in order in one log, each shard has its own rolling
 * client. A RENAME between two owners goes to both owners' shards. With
 * N = 1 the layout is the plain one above. The published list carries
 * each channel's shard count ("name N" lines, `"" N` for the default
 * channel; a line with a name only means 1), and it wins over a
 * writer's own config, so every writer routes the same way after a
 * reload. Logs of several (channel, shard) files are locked in the
 * order of their paths, so two writers never wait on each other.
 *
 * Reader protocol (§7.5): chlog_take makes log-run ready (a leftover
 * log-run first, else rename log -> log-run and wait for writers that
 * locked the old inode), the consumer processes it, chlog_done removes it
 * once the replica has committed all it describes.
 */
#ifndef TANDEM_CHLOG_H
#define TANDEM_CHLOG_H

#include <stddef.h>

#include "lib/buf.h"
#include "lib/err.h"
#include "lib/limits.h"

struct chlog;

/* CHLOG_MAX_SHARDS is MAX_SYNC_SHARDS of lib/limits.h. */
#define CHLOG_MAX_SHARDS MAX_SYNC_SHARDS

/* A writer for channels (""= default); NULL only when nchannels is 0 or
 * over MAX_CHANNELS. Files are opened per append. Every channel has one
 * shard. */
struct chlog *chlog_open(const char *configdir, const char *const *channels, size_t nchannels);
/* The same with each channel's shard count (NULL: all 1; 0 counts as 1,
 * more than CHLOG_MAX_SHARDS as CHLOG_MAX_SHARDS). */
struct chlog *chlog_open_shards(const char *configdir, const char *const *channels, const unsigned *shards,
				size_t nchannels);
/* A writer for exactly these channels: sync/channels is not read (a
 * replica's sync server logs only to sync_log_unsuppressable_channels). */
struct chlog *chlog_open_fixed(const char *configdir, const char *const *channels, const unsigned *shards,
			       size_t nchannels);
/* The shard count a writer uses for channel now (1 for an unknown one). */
unsigned chlog_channel_shards(struct chlog *log, const char *channel);
void chlog_close(struct chlog **log);
/* Appends one formatted line (with '\n') to out. arg2 may be NULL.
 * TE_INVALID for an unknown keyword or CR/LF in an argument. */
int chlog_format(struct buf *out, const char *keyword, const char *arg1, const char *arg2,
		 struct terr *err);
/* Appends lines (complete, from chlog_format) to every channel's log and
 * fsyncs them. 0 only when every channel has them on disk. */
int chlog_append(struct chlog *log, const char *lines, size_t len, struct terr *err);
/* The same, keeping each channel's log (shared-)locked until
 * chlog_release: the store holds the locks across its COMMIT, so a
 * reader (which takes an exclusive lock after renaming log to log-run)
 * never sees a line before the change it names is committed, while
 * other writers append and commit at the same time. */
/* Where a held append ended in one (channel, shard) file: the log's
 * device and inode and the end offset of this writer's own write
 * (other writers may append after it concurrently). A rolling client that took a log with that inode and at least
 * that size, and completed its pass, has replicated the line
 * (sync_rightnow_channel, src/sync/sync_rightnow.h). */
struct chlog_pos {
	char channel[MAX_CHANNEL_NAME + 1];
	int shard;		/* -1: the channel's unsharded log */
	unsigned long long dev, ino, offset;
};
struct chlog_hold {
	int *fds;		/* one per (channel, shard) file written */
	struct chlog_pos *pos;	/* pos[i] is where fds[i]'s append ended */
	size_t n, cap;
	/* for chlog_release's check of the channel list */
	struct chlog *log;
	unsigned gen;
	char *lines;
	size_t len;
	char chans[MAX_CHANNELS][MAX_CHANNEL_NAME + 1];
	unsigned shards[MAX_CHANNELS];
	size_t nchans;
};
int chlog_append_hold(struct chlog *log, const char *lines, size_t len, struct chlog_hold *hold,
		      struct terr *err);
/* The position of channel's line(s) in a hold made by chlog_append_hold:
 * the first file written for it (a sharded channel: the shard of the
 * first line; a RENAME between two owners writes two shards, n_r says
 * how many positions follow). NULL when the hold wrote nothing to it. */
const struct chlog_pos *chlog_hold_positions(const struct chlog_hold *hold, const char *channel, size_t *n_r);
void chlog_release(struct chlog_hold *hold);
/* Writes <configdir>/sync/channels (atomically): the live channel list,
 * with each channel's shard count (shards NULL: all 1). */
int chlog_write_channels(const char *configdir, const char *const *channels, size_t n, struct terr *err);
int chlog_write_channels_shards(const char *configdir, const char *const *channels, const unsigned *shards,
				size_t n, struct terr *err);
/* Path of a channel's "log" or "log-run". */
void chlog_path(const char *configdir, const char *channel, const char *file, struct buf *out);
/* The same in one shard's directory; shard < 0: chlog_path. */
void chlog_shard_path(const char *configdir, const char *channel, int shard, const char *file, struct buf *out);

/* The owner of one change-log line (without '\n'): the userid of a
 * USER/UNUSER/META/SIEVE/SUB/UNSUB/SEEN line, the owner of the mailbox
 * of the others ("" for a shared mailbox or a bad line). With two, the
 * second owner (a RENAME between users) goes to owner2 (else ""). */
void chlog_line_owner(const char *line, size_t len, struct buf *owner, struct buf *owner2);
/* FNV-1a (32 bit) of owner mod nshards. */
unsigned chlog_shard_of(const char *owner, unsigned nshards);
/* The shards (bit k = shard k) a line goes to among nshards. */
unsigned chlog_line_shards(const char *line, size_t len, unsigned nshards);

/* Reader: 1 when log-run is ready, 0 when there is nothing to do (no
 * log, or an empty one: see chlog_take_shard_next). */
int chlog_take(const char *configdir, const char *channel, struct terr *err);
/* Removes log-run. Not synced: a lost unlink is a replay (chlog.c). */
int chlog_done(const char *configdir, const char *channel, struct terr *err);
/* The same for one shard (shard < 0: the unsharded log). */
int chlog_take_shard(const char *configdir, const char *channel, int shard, struct terr *err);
int chlog_done_shard(const char *configdir, const char *channel, int shard, struct terr *err);
/* chlog_take_shard for a reader that comes back at once (a rolling sync
 * client): after renaming log to log-run it makes the next log, empty,
 * covered by the directory fsync of its rename, so the writers of the
 * next change find a log and pay no new log's directory fsync (chlog.c,
 * "The next log"). Not for a log directory nobody will read again (an
 * old shard layout being drained). */
int chlog_take_shard_next(const char *configdir, const char *channel, int shard, struct terr *err);
/* Removes what dead writers left in a channel's (shard's) log directory:
 * log.new.<pid> files that no process holds locked and that are older
 * than CHLOG_STALE_NEW_S (a writer killed between creating a new log and
 * linking it; nothing of them was acknowledged). Returns how many. */
int chlog_sweep_stale(const char *configdir, const char *channel, int shard);

/* The extended attribute in which the writer of a log's first line
 * records its time (epoch seconds, decimal): the log made empty by the
 * reader was born before its first change. */
#define CHLOG_FIRST_XATTR "user.tandem.first_line_at"
/* That time for the log file at path, 0 when it has none (a log made by
 * its first writer, whose birth time is its first line's; or a file
 * system without user xattrs). */
long long chlog_first_line_at(const char *path);

struct chlog_entry {
	char keyword[16];	/* upper-cased */
	struct buf arg1, arg2;
	int nargs;		/* 1 or 2 */
};
/* Parses one line without its '\n' (a trailing CR is tolerated). */
int chlog_parse_line(const char *line, size_t len, struct chlog_entry *e, struct terr *err);
void chlog_entry_free(struct chlog_entry *e);

/* Reads a whole log file into entries; bad lines are skipped and each
 * counted in *bad_r (and logged with its line number), as Cyrus does.
 * Returns the number of entries or -1. Free with chlog_entries_free. */
int chlog_read_file(const char *path, struct chlog_entry **entries_r, size_t *bad_r, struct terr *err);
void chlog_entries_free(struct chlog_entry *entries, size_t n);

#endif
