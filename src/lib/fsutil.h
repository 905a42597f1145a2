/* fsutil.h: file-system helpers with the durability rules of tandem.
 *
 * All writes that must survive a crash go: write a temporary file in the
 * target directory, fsync it, rename it into place, fsync the directory.
 * Every call returns 0 or -1 with *err set (ENOSPC -> TE_NOSPACE).
 * fs_fsync / fs_fsync_dir count their calls and time (fs_stats), which the
 * benchmarks report.
 */
#ifndef TANDEM_FSUTIL_H
#define TANDEM_FSUTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "lib/buf.h"
#include "lib/err.h"

struct fs_stats {
	uint64_t fsyncs;
	uint64_t fsync_ns;	/* time spent inside fsync/fdatasync */
};

int fs_write_all(int fd, const void *data, size_t len, const char *what, struct terr *err);
int fs_fsync(int fd, const char *what, struct terr *err);
/* Called with the duration of every fs_fsync after it (the metrics'
 * histogram, src/stats/stats.h); NULL: none. */
void fs_set_fsync_observer(void (*fn)(uint64_t ns));
/* Counts an fsync made outside fs_fsync (by a thread that must not touch
 * the counters: store_blob.c's syncer), as fs_fsync would: call it from
 * the thread that owns the counters. */
void fs_fsync_account(uint64_t ns);
/* fsyncs the directory itself (after a rename or unlink in it). */
int fs_fsync_dir(const char *dir, struct terr *err);
/* fsyncs the directory that holds path. */
int fs_fsync_parent(const char *path, struct terr *err);
/* mkdir -p with mode; fsyncs each parent of a directory it created. */
int fs_mkdir_p(const char *path, mode_t mode, struct terr *err);
/* Reads a whole file into out (appending); refuses files over max bytes. */
int fs_read_file(const char *path, size_t max, struct buf *out, struct terr *err);
/* Writes data to path atomically and durably (temp + fsync + rename +
 * directory fsync). */
int fs_write_atomic(const char *path, const void *data, size_t len, mode_t mode,
		    struct terr *err);
/* rm -rf; returns 0 when path did not exist. */
int fs_remove_tree(const char *path, struct terr *err);
/* Counters of this process. */
void fs_stats_get(struct fs_stats *out);
/* Monotonic clock in nanoseconds. */
uint64_t fs_now_ns(void);

#endif
