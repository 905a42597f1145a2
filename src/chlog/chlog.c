/* chlog.c: see chlog.h. */
#include "chlog/chlog.h"

#include "lib/fsutil.h"
#include "lib/limits.h"
#include "lib/log.h"
#include "lib/xalloc.h"
#include "names/mboxname.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

struct chlog {
	char *configdir;
	char **base;		/* the channels it was opened with */
	unsigned *bshards;	/* their shard counts */
	size_t nbase;
	char **channels;	/* base + those of sync/channels */
	unsigned *shards;	/* their shard counts (the published list wins) */
	size_t n;
	unsigned gen;		/* bumped when channels changes */
	struct stat list_st;	/* sync/channels as last read (st_ino 0: none) */
	int fixed;		/* chlog_open_fixed: sync/channels is not read */
};

static const char *const keywords[] = {
	"USER", "UNUSER", "META", "SIEVE", "APPEND", "MAILBOX", "DOUBLEMAILBOX", "RENAME",
	"UNMAILBOX", "QUOTA", "ANNOTATION", "SEEN", "SUB", "UNSUB",
};

static int keyword_known(const char *k)
{
	for (size_t i = 0; i < sizeof keywords / sizeof keywords[0]; i++)
		if (!strcmp(k, keywords[i]))
			return 1;
	return 0;
}

void chlog_path(const char *configdir, const char *channel, const char *file, struct buf *out)
{
	buf_reset(out);
	if (channel && *channel)
		buf_printf(out, "%s/sync/%s/%s", configdir, channel, file);
	else
		buf_printf(out, "%s/sync/%s", configdir, file);
}

void chlog_shard_path(const char *configdir, const char *channel, int shard, const char *file, struct buf *out)
{
	if (shard < 0) {
		chlog_path(configdir, channel, file, out);
		return;
	}
	buf_reset(out);
	if (channel && *channel)
		buf_printf(out, "%s/sync/%s/%d/%s", configdir, channel, shard, file);
	else
		buf_printf(out, "%s/sync/%d/%s", configdir, shard, file);
}

static unsigned clamp_shards(long long n)
{
	return n < 1 ? 1 : n > CHLOG_MAX_SHARDS ? CHLOG_MAX_SHARDS : (unsigned)n;
}

/* Index of name in v, or -1. */
static int find_channel(char *const *v, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(v[i], name))
			return (int)i;
	return -1;
}

static void free_list(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static int name_ok(const char *s, size_t n)
{
	if (n > MAX_CHANNEL_NAME)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '-')
			return 0;
	return 1;
}

/* One line of sync/channels: "name", "name N" or "\"\" N" (the default
 * channel). 0 with name_r (malloced) and *shards_r, -1 for a bad line. */
static int parse_channel_line(const char *p, size_t len, char **name_r, unsigned *shards_r)
{
	const char *sp = memchr(p, ' ', len);
	size_t nlen = sp ? (size_t)(sp - p) : len;
	*shards_r = 1;
	if (sp) {
		char *end;
		char num[16];
		size_t k = len - nlen - 1;
		if (k == 0 || k >= sizeof num)
			return -1;
		memcpy(num, sp + 1, k);
		num[k] = '\0';
		long v = strtol(num, &end, 10);
		if (*end || v < 1)
			return -1;
		*shards_r = clamp_shards(v);
	}
	if (nlen == 2 && p[0] == '"' && p[1] == '"') {
		if (!sp)
			return -1;
		*name_r = xstrdup("");
		return 0;
	}
	if (!nlen || !name_ok(p, nlen))
		return -1;
	*name_r = xstrndup(p, nlen);
	return 0;
}

/* Re-reads sync/channels when it changed (one stat per append). */
static void refresh(struct chlog *l)
{
	if (l->fixed && l->gen)
		return;
	struct buf path = BUF_INIT, data = BUF_INIT;
	struct stat st;
	buf_printf(&path, "%s/sync/channels", l->configdir);
	int exists = !l->fixed && stat(path.ptr, &st) == 0;
	if (!exists)
		memset(&st, 0, sizeof st);
	if (st.st_ino == l->list_st.st_ino && st.st_dev == l->list_st.st_dev && st.st_size == l->list_st.st_size &&
	    st.st_mtim.tv_sec == l->list_st.st_mtim.tv_sec && st.st_mtim.tv_nsec == l->list_st.st_mtim.tv_nsec)
		goto out;
	struct terr err = { 0 };
	if (exists && fs_read_file(path.ptr, 64 * 1024, &data, &err) < 0)
		goto out;	/* keep the list we have; the next append tries again */
	char **v = xcalloc(MAX_CHANNELS, sizeof *v);
	unsigned *sh = xcalloc(MAX_CHANNELS, sizeof *sh);
	size_t n = 0;
	for (size_t i = 0; i < l->nbase; i++) {
		v[n] = xstrdup(l->base[i]);
		sh[n++] = l->bshards[i];
	}
	for (const char *p = data.ptr; p && p < data.ptr + data.len;) {
		const char *nl = memchr(p, '\n', (size_t)(data.ptr + data.len - p));
		size_t len = nl ? (size_t)(nl - p) : (size_t)(data.ptr + data.len - p);
		char *name;
		unsigned shards;
		if (len && parse_channel_line(p, len, &name, &shards) == 0) {
			int at = find_channel(v, n, name);
			if (at >= 0) {
				sh[at] = shards;	/* the live count wins */
				free(name);
			} else if (n < MAX_CHANNELS && *name) {
				v[n] = name;
				sh[n++] = shards;
			} else {
				free(name);
			}
		}
		p += len + 1;
	}
	free_list(l->channels, l->n);
	free(l->shards);
	l->channels = v;
	l->shards = sh;
	l->n = n;
	l->gen++;
	l->list_st = st;
out:
	buf_free(&path);
	buf_free(&data);
}

static struct chlog *open_channels(const char *configdir, const char *const *channels, const unsigned *shards,
				   size_t nchannels, int fixed)
{
	if (nchannels > MAX_CHANNELS)
		return NULL;
	struct chlog *l = xcalloc(1, sizeof *l);
	l->fixed = fixed;
	l->configdir = xstrdup(configdir);
	l->base = xcalloc(nchannels ? nchannels : 1, sizeof *l->base);
	l->bshards = xcalloc(nchannels ? nchannels : 1, sizeof *l->bshards);
	l->nbase = nchannels;
	for (size_t i = 0; i < nchannels; i++) {
		l->base[i] = xstrdup(channels[i] ? channels[i] : "");
		l->bshards[i] = clamp_shards(shards ? shards[i] : 1);
	}
	l->channels = xcalloc(1, sizeof *l->channels);
	l->list_st.st_ino = (ino_t)-1;	/* forces the first read */
	refresh(l);
	return l;
}

struct chlog *chlog_open_shards(const char *configdir, const char *const *channels, const unsigned *shards,
				size_t nchannels)
{
	return open_channels(configdir, channels, shards, nchannels, 0);
}

struct chlog *chlog_open_fixed(const char *configdir, const char *const *channels, const unsigned *shards,
			       size_t nchannels)
{
	return open_channels(configdir, channels, shards, nchannels, 1);
}

struct chlog *chlog_open(const char *configdir, const char *const *channels, size_t nchannels)
{
	return chlog_open_shards(configdir, channels, NULL, nchannels);
}

unsigned chlog_channel_shards(struct chlog *l, const char *channel)
{
	if (!l)
		return 1;
	refresh(l);
	int at = find_channel(l->channels, l->n, channel ? channel : "");
	return at < 0 ? 1 : l->shards[at];
}

void chlog_close(struct chlog **lp)
{
	struct chlog *l = *lp;
	if (!l)
		return;
	free_list(l->base, l->nbase);
	free_list(l->channels, l->n);
	free(l->bshards);
	free(l->shards);
	free(l->configdir);
	free(l);
	*lp = NULL;
}

int chlog_write_channels(const char *configdir, const char *const *channels, size_t n, struct terr *err)
{
	return chlog_write_channels_shards(configdir, channels, NULL, n, err);
}

/* A one-shard named channel is a name alone (as older versions wrote and
 * read it); the default channel is listed only with shards. */
int chlog_write_channels_shards(const char *configdir, const char *const *channels, const unsigned *shards,
				size_t n, struct terr *err)
{
	struct buf path = BUF_INIT, data = BUF_INIT;
	buf_printf(&path, "%s/sync", configdir);
	int rc = fs_mkdir_p(path.ptr, 0750, err);
	buf_appends(&path, "/channels");
	for (size_t i = 0; i < n; i++) {
		unsigned k = clamp_shards(shards ? shards[i] : 1);
		if (channels[i] && *channels[i] && k == 1)
			buf_printf(&data, "%s\n", channels[i]);
		else if (channels[i] && *channels[i])
			buf_printf(&data, "%s %u\n", channels[i], k);
		else if (shards)
			buf_printf(&data, "\"\" %u\n", k);
	}
	if (rc == 0)
		rc = fs_write_atomic(path.ptr, data.ptr ? data.ptr : "", data.len, 0640, err);
	buf_free(&path);
	buf_free(&data);
	return rc;
}

static int format_arg(struct buf *out, const char *a, struct terr *err)
{
	if (!a || !*a) {
		buf_appends(out, "\"\"");
		return 0;
	}
	int quote = 0;
	for (const char *p = a; *p; p++) {
		if (*p == '\r' || *p == '\n')
			return terr_set(err, TE_INVALID, "line break in a change-log argument");
		if (strchr("\\\"{} \t()", *p))
			quote = 1;
	}
	if (quote)
		buf_putc(out, '"');
	for (const char *p = a; *p; p++) {
		if (strchr("\\\"{}", *p))
			buf_putc(out, '\\');
		buf_putc(out, *p);
	}
	if (quote)
		buf_putc(out, '"');
	return 0;
}

int chlog_format(struct buf *out, const char *keyword, const char *arg1, const char *arg2,
		 struct terr *err)
{
	if (!keyword_known(keyword))
		return terr_set(err, TE_INVALID, "unknown change-log keyword '%s'", keyword);
	size_t start = out->len;
	buf_appends(out, keyword);
	buf_putc(out, ' ');
	if (format_arg(out, arg1, err) < 0)
		goto fail;
	if (arg2) {
		buf_putc(out, ' ');
		if (format_arg(out, arg2, err) < 0)
			goto fail;
	}
	if (out->len - start > MAX_CHLOG_LINE) {
		terr_set(err, TE_INVALID, "change-log line over %d bytes", MAX_CHLOG_LINE);
		goto fail;
	}
	buf_putc(out, '\n');
	return 0;
fail:
	buf_truncate(out, start);
	return -1;
}

/* ---- appending: group commit ------------------------------------------
 *
 * Writers take a SHARED lock on the data range of the log (bytes
 * [0, CHLOG_MARK)) from before their write until chlog_release (the
 * store's COMMIT): many writers append and fsync at once (a journaling
 * file system commits concurrent fsyncs together; without a journal they
 * still overlap on the device), and no delivery waits for another's
 * COMMIT. A reader renames log to
 * log-run and then takes an EXCLUSIVE lock on the whole file, which waits
 * for every writer that locked the old inode; a writer that locked it
 * after the rename sees that the path names another inode and retries.
 *
 * What keeps concurrent appends apart:
 * - one write() per append: a local file system appends an O_APPEND
 *   write whole, never interleaved with another (a second write() to
 *   finish a short one could land after someone else's line);
 * - a short write (disk full) leaves part of a line that the next
 *   writer's line would be glued to: the writer blanks its own bytes
 *   (spaces ended by a newline, which the reader skips) instead of
 *   cutting the file back, which would cut other writers' lines;
 * - the position of a writer's line is its own end offset (the file
 *   offset after its O_APPEND write), not the file's size.
 *
 * A new log's directory entry must be durable before any writer reports
 * its line durable. The creator makes the file under a temporary name,
 * locks the mark byte CHLOG_MARK exclusively (and the data shared),
 * writes its lines, fsyncs, links it to "log", fsyncs the directory,
 * then unlocks the mark. Every other writer takes a shared lock on the
 * mark after its own fsync: one that found a log still being created
 * waits for the creator's directory fsync. As the file is locked and
 * holds the creator's lines before it has its name, no writer can pass
 * the mark before the creator holds it, and a rolling client woken by
 * the new name (inotify) never takes an empty log from under the
 * creator (with a create-then-lock, it did, 64 times in a row).
 *
 * The next log, made by the reader. A rolling client at interval 0
 * takes the log after almost every change on a quiet channel, so almost
 * every change made a new log and paid its directory fsync (one of the
 * six serial syncs of a delivery). chlog_take therefore makes the next,
 * empty log itself right after its rename, by the same protocol (a
 * temporary name, the mark locked exclusively, the link), and its one
 * directory fsync, which the rename needed anyway, covers both; only then
 * is the mark unlocked. A writer that appends to it in between waits on
 * the mark as for any creator. An empty log is never taken (nothing to
 * do), so the reader does not spin on the log it made. Its birth time is
 * the take's, not its first line's: the writer whose line starts it
 * (offset 0) stamps the file with CHLOG_FIRST_XATTR (epoch seconds), which
 * `tandem status` reads as the age of the oldest pending change
 * (src/stats/stats_chan.c); a file system without user xattrs leaves the
 * birth time to stand in. */

#define CHLOG_MARK ((off_t)1 << 62)

static int lock_range(int fd, short type, off_t start, off_t len)
{
	struct flock fl = { 0 };
	fl.l_type = type;
	fl.l_whence = SEEK_SET;
	fl.l_start = start;
	fl.l_len = len;
	while (fcntl(fd, F_SETLKW, &fl) < 0) {
		if (errno != EINTR)
			return -1;
	}
	return 0;
}

static int lock_fd(int fd, short type)
{
	return lock_range(fd, type, 0, 0);
}

/* Writes lines once (a short write is an error, see blank_partial);
 * the offset just after them in *end_r. */
static int write_once(int fd, const char *lines, size_t len, off_t *end_r, ssize_t *w_r, const char *path,
		      struct terr *err)
{
	ssize_t w;
	do
		w = write(fd, lines, len);
	while (w < 0 && errno == EINTR);
	*w_r = w;
	*end_r = w > 0 ? lseek(fd, 0, SEEK_CUR) : 0;
	if (w >= 0 && (size_t)w == len && *end_r >= 0)
		return 0;
	/* a short write is the file system's "no room" (or the file size
	 * limit): the next write would fail with the reason */
	return terr_errno(err, w < 0 || *end_r < 0 ? errno : ENOSPC, "write %s", path);
}

/* A log is created with the owner's execute bit set (CHLOG_MODE_UNSYNCED,
 * set by fchmod: no umask clears it) and loses it once its name is
 * durable, before its mark is unlocked. A writer that gets the mark and
 * still sees the bit knows the creator died (or its fsync failed) between
 * the link and the directory fsync: it fsyncs the directory itself before
 * it reports its line durable (name_check), instead of trusting a name a
 * power cut could still take away. A writer that saw the bit clear
 * already (its fstat after locking the data) neither waits on the mark
 * nor looks again: the bit is never set again on an inode. */
#define CHLOG_MODE_UNSYNCED 0740

static void name_synced(int fd)
{
	struct stat sb;
	if (fstat(fd, &sb) == 0 && (sb.st_mode & S_IXUSR))
		(void)fchmod(fd, sb.st_mode & ~(mode_t)S_IXUSR & 07777);
}

static int name_check(int fd, const char *path, struct terr *err)
{
	struct stat sb;
	if (fstat(fd, &sb) == 0 && !(sb.st_mode & S_IXUSR))
		return 0;
	if (fs_fsync_parent(path, err) < 0)
		return -1;
	name_synced(fd);
	return 0;
}

/* Creates the log at path holding lines: a new file under a temporary
 * name, locked (the mark exclusively, the data shared) before it has
 * its name, written and fsynced, then linked to path, its directory
 * fsynced and the mark unlocked. A reader that renames it at once waits
 * for the locks; nobody can see the file before its first line is in
 * it. 0 with *fd_r (data lock held), *end_r and *st_r; 1 when another
 * writer created path first (nothing was published: append to that
 * one); -1 on error. */
static int create_log(const char *path, const char *lines, size_t len, int *fd_r, off_t *end_r, struct stat *st_r,
		      struct terr *err)
{
	struct buf tmp = BUF_INIT;
	buf_printf(&tmp, "%s.new.%ld", path, (long)getpid());
	int rc = -1, linked = 0;
	int fd = open(tmp.ptr, O_RDWR | O_APPEND | O_CREAT | O_TRUNC | O_CLOEXEC, CHLOG_MODE_UNSYNCED);
	if (fd < 0 && errno == ENOENT) {
		char *slash = strrchr(tmp.ptr, '/');
		*slash = '\0';
		int mk = fs_mkdir_p(tmp.ptr, 0750, err);
		*slash = '/';
		if (mk < 0)
			goto out;
		fd = open(tmp.ptr, O_RDWR | O_APPEND | O_CREAT | O_TRUNC | O_CLOEXEC, CHLOG_MODE_UNSYNCED);
	}
	if (fd < 0) {
		terr_errno(err, errno, "create change log %s", tmp.ptr);
		goto out;
	}
	/* the bit whatever the umask: writers that see it clear trust the
	 * name without waiting on the mark (append_one) */
	if (fchmod(fd, CHLOG_MODE_UNSYNCED) < 0) {
		terr_errno(err, errno, "chmod %s", tmp.ptr);
		goto out;
	}
	ssize_t w;
	if (lock_range(fd, F_WRLCK, CHLOG_MARK, 1) < 0 || lock_range(fd, F_RDLCK, 0, CHLOG_MARK) < 0) {
		terr_errno(err, errno, "lock change log %s", tmp.ptr);
		goto out;
	}
	if (write_once(fd, lines, len, end_r, &w, tmp.ptr, err) < 0 || fs_fsync(fd, tmp.ptr, err) < 0)
		goto out;
	if (fstat(fd, st_r) < 0) {
		terr_errno(err, errno, "fstat %s", tmp.ptr);
		goto out;
	}
	if (link(tmp.ptr, path) < 0) {
		if (errno == EEXIST)
			rc = 1;
		else
			terr_errno(err, errno, "link change log %s", path);
		goto out;
	}
	linked = 1;
	/* the directory fsync covers the link and this unlink */
	if (unlink(tmp.ptr) < 0) {
		terr_errno(err, errno, "unlink %s", tmp.ptr);
		goto out;
	}
	/* If this fails (EIO: the disk is failing), this change fails, but
	 * writers waiting on the mark are not told: they go on once it is
	 * unlocked (by the close). Nothing cheaper tells them; every other
	 * fsync on that disk is failing too. */
	if (fs_fsync_parent(path, err) < 0)
		goto out;
	name_synced(fd);
	if (lock_range(fd, F_UNLCK, CHLOG_MARK, 1) < 0) {
		terr_errno(err, errno, "unlock change log %s", path);
		goto out;
	}
	*fd_r = fd;
	fd = -1;
	rc = 0;
out:
	if (!linked)
		unlink(tmp.ptr);
	if (fd >= 0)
		close(fd);
	buf_free(&tmp);
	return rc;
}

/* After a short write of n bytes that ended at offset end: turns them
 * into a line of spaces ended by a newline, which every reader skips,
 * so the next writer's line stays whole. The bytes are ours alone (the
 * O_APPEND write reserved them) and already allocated: overwriting them
 * needs no room on the disk. */
static void blank_partial(int fd, off_t end, size_t n, const char *path)
{
	char sp[256];
	off_t start = end - (off_t)n;
	int fl = fcntl(fd, F_GETFL);
	int ok = fl >= 0 && fcntl(fd, F_SETFL, fl & ~O_APPEND) == 0;
	memset(sp, ' ', sizeof sp);
	for (size_t done = 0; ok && done < n;) {
		size_t k = n - done < sizeof sp ? n - done : sizeof sp;
		if (done + k == n)
			sp[k - 1] = '\n';
		ssize_t w = pwrite(fd, sp, k, start + (off_t)done);
		if (w < 0 && errno == EINTR)
			continue;
		ok = w > 0;
		done += w > 0 ? (size_t)w : 0;
	}
	if (ok)
		ok = fsync(fd) == 0;
	if (!ok)
		log_err("event=chlog_fail file=%s error=\"%s\" note=\"a partial line at %lld could not be blanked:"
			" the next line may be lost, run a full sync\"", path, strerror(errno), (long long)start);
	else
		log_warn("event=chlog_partial file=%s offset=%lld bytes=%zu note=\"blanked\"", path, (long long)start, n);
}

/* The time of a log's first line, for its age (the next log is born
 * empty, when the reader took the one before). Best effort: stats only. */
static void stamp_first(int fd)
{
	char t[24];
	int n = snprintf(t, sizeof t, "%lld", (long long)time(NULL));
	(void)fsetxattr(fd, CHLOG_FIRST_XATTR, t, (size_t)n, 0);
}

long long chlog_first_line_at(const char *path)
{
	char t[24];
	ssize_t n = getxattr(path, CHLOG_FIRST_XATTR, t, sizeof t - 1);
	if (n <= 0)
		return 0;
	t[n] = '\0';
	return strtoll(t, NULL, 10);
}

/* Makes the next, empty log at path after the reader's rename: a file
 * under a temporary name with the mark locked exclusively, linked to
 * path. The caller fsyncs the directory (for its rename too), then
 * closes *fd_r, which unlocks the mark. -1 (nothing made, not an error:
 * the next writer makes the log) or 0. */
static int make_next(const char *path, int *fd_r)
{
	struct buf tmp = BUF_INIT;
	buf_printf(&tmp, "%s.new.%ld", path, (long)getpid());
	int fd = open(tmp.ptr, O_RDWR | O_APPEND | O_CREAT | O_TRUNC | O_CLOEXEC, CHLOG_MODE_UNSYNCED);
	int rc = -1;
	if (fd >= 0 && fchmod(fd, CHLOG_MODE_UNSYNCED) == 0 && lock_range(fd, F_WRLCK, CHLOG_MARK, 1) == 0 &&
	    link(tmp.ptr, path) == 0)
		rc = 0;	/* EEXIST: a writer made it first, with its lines */
	if (fd >= 0)
		unlink(tmp.ptr);
	if (rc < 0 && fd >= 0)
		close(fd);
	*fd_r = rc == 0 ? fd : -1;
	buf_free(&tmp);
	return rc;
}

/* Appends to one channel's log (shard < 0) or one shard's; with fd_r,
 * the file stays open and (shared-)locked and its fd is returned. */
static int append_one(const char *configdir, const char *channel, int shard, const char *lines, size_t len,
		      int *fd_r, struct chlog_pos *pos_r, struct terr *err)
{
	struct buf path = BUF_INIT;
	chlog_shard_path(configdir, channel, shard, "log", &path);
	int rc = -1;
	for (int attempt = 0; attempt < CHLOG_APPEND_TRIES; attempt++) {
		struct stat a, b;
		off_t end;
		int fd = open(path.ptr, O_RDWR | O_APPEND | O_CLOEXEC);	/* read: for F_RDLCK */
		if (fd < 0 && errno == ENOENT) {
			int c = create_log(path.ptr, lines, len, &fd, &end, &a, err);
			if (c < 0)
				goto out;
			if (c > 0)
				continue;	/* another writer made it: append to that */
			goto done;
		}
		if (fd < 0) {
			terr_errno(err, errno, "open change log %s", path.ptr);
			goto out;
		}
		if (lock_range(fd, F_RDLCK, 0, CHLOG_MARK) < 0) {
			terr_errno(err, errno, "lock change log %s", path.ptr);
			close(fd);
			goto out;
		}
		if (fstat(fd, &a) < 0 || stat(path.ptr, &b) < 0 || a.st_ino != b.st_ino || a.st_dev != b.st_dev) {
			close(fd);	/* renamed to log-run under us: use the new log */
			continue;
		}
		ssize_t w;
		if (write_once(fd, lines, len, &end, &w, path.ptr, err) < 0) {
			if (w > 0 && end > 0 && (size_t)w < len)
				blank_partial(fd, end, (size_t)w, path.ptr);
			close(fd);
			goto out;
		}
		if (end == (off_t)len)
			stamp_first(fd);	/* the first line of a log the reader made */
		/* a line whose fsync failed stays: replaying a change that did
		 * not commit is harmless (the client syncs what is there); then
		 * wait until the log's creator has made its name durable */
		if (fs_fsync(fd, path.ptr, err) < 0) {
			close(fd);
			goto out;
		}
		/* The execute bit was already clear when we looked (fstat
		 * above, with the data locked): its creator had fsynced the
		 * directory and cleared it (it is never set again on an
		 * inode), so the name is durable: no wait on the mark and no
		 * second look (two system calls of every append; the log the
		 * reader made at its take is almost always in this state). */
		if (!(a.st_mode & S_IXUSR))
			goto done;
		if (lock_range(fd, F_RDLCK, CHLOG_MARK, 1) < 0) {
			terr_errno(err, errno, "lock change log %s", path.ptr);
			close(fd);
			goto out;
		}
		if (name_check(fd, path.ptr, err) < 0) {
			close(fd);
			goto out;
		}
done:
		if (pos_r) {
			snprintf(pos_r->channel, sizeof pos_r->channel, "%s", channel ? channel : "");
			pos_r->shard = shard;
			pos_r->dev = (unsigned long long)a.st_dev;
			pos_r->ino = (unsigned long long)a.st_ino;
			pos_r->offset = (unsigned long long)end;
		}
		if (fd_r)
			*fd_r = fd;
		else
			close(fd);
		rc = 0;
		goto out;
	}
	terr_set(err, TE_BUSY, "change log %s kept being rotated", path.ptr);
out:
	buf_free(&path);
	return rc;
}

/* ---- routing lines to shards ---- */

static int user_keyword(const char *k)
{
	static const char *const u[] = { "USER", "UNUSER", "META", "SIEVE", "SUB", "UNSUB", "SEEN" };
	for (size_t i = 0; i < sizeof u / sizeof u[0]; i++)
		if (!strcmp(k, u[i]))
			return 1;
	return 0;
}

static void mailbox_owner(const char *name, struct buf *owner)
{
	struct terr err;
	if (mboxname_owner(name, owner, &err) < 0)
		buf_reset(owner);
}

void chlog_line_owner(const char *line, size_t len, struct buf *owner, struct buf *owner2)
{
	struct chlog_entry e = { 0 };
	struct terr err;
	buf_reset(owner);
	if (owner2)
		buf_reset(owner2);
	if (chlog_parse_line(line, len, &e, &err) == 0) {
		if (user_keyword(e.keyword)) {
			buf_appends(owner, buf_cstr(&e.arg1));
		} else {
			mailbox_owner(buf_cstr(&e.arg1), owner);
			/* RENAME and DOUBLEMAILBOX name two mailboxes */
			if (owner2 && e.nargs == 2)
				mailbox_owner(buf_cstr(&e.arg2), owner2);
		}
	}
	buf_cstr(owner);
	chlog_entry_free(&e);
}

unsigned chlog_shard_of(const char *owner, unsigned nshards)
{
	uint32_t h = 2166136261u;
	for (const unsigned char *p = (const unsigned char *)owner; *p; p++) {
		h ^= *p;
		h *= 16777619u;
	}
	return nshards > 1 ? h % nshards : 0;
}

unsigned chlog_line_shards(const char *line, size_t len, unsigned nshards)
{
	if (nshards <= 1)
		return 1;
	struct buf o1 = BUF_INIT, o2 = BUF_INIT;
	chlog_line_owner(line, len, &o1, &o2);
	unsigned mask = 1u << chlog_shard_of(buf_cstr(&o1), nshards);
	if (o2.len)
		mask |= 1u << chlog_shard_of(buf_cstr(&o2), nshards);
	buf_free(&o1);
	buf_free(&o2);
	return mask;
}

/* The lines of each shard, in their order. */
static void split_lines(const char *lines, size_t len, unsigned nshards, struct buf *parts)
{
	for (const char *p = lines, *end = lines + len; p < end;) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t ll = nl ? (size_t)(nl - p) + 1 : (size_t)(end - p);
		unsigned mask = chlog_line_shards(p, nl ? ll - 1 : ll, nshards);
		for (unsigned k = 0; k < nshards; k++)
			if (mask & (1u << k))
				buf_append(&parts[k], p, ll);
		p += ll;
	}
}

static void hold_fd(struct chlog_hold *hold, int fd, const struct chlog_pos *pos)
{
	if (hold->n == hold->cap) {
		hold->cap = hold->cap ? hold->cap * 2 : 8;
		hold->fds = xrealloc(hold->fds, hold->cap * sizeof *hold->fds);
		hold->pos = xrealloc(hold->pos, hold->cap * sizeof *hold->pos);
	}
	hold->pos[hold->n] = *pos;
	hold->fds[hold->n++] = fd;
}

const struct chlog_pos *chlog_hold_positions(const struct chlog_hold *hold, const char *channel, size_t *n_r)
{
	const char *c = channel ? channel : "";
	size_t i = 0, n = 0;
	while (i < hold->n && strcmp(hold->pos[i].channel, c))
		i++;
	while (i + n < hold->n && !strcmp(hold->pos[i + n].channel, c))
		n++;
	*n_r = n;
	return n ? &hold->pos[i] : NULL;
}

/* Appends lines to one channel of nshards, each line to its shard's log
 * (ascending shard order); with hold, the files stay locked in it. */
static int append_channel(const char *configdir, const char *channel, unsigned nshards, const char *lines,
			  size_t len, struct chlog_hold *hold, struct terr *err)
{
	struct chlog_pos pos;
	if (nshards <= 1) {
		int fd;
		if (append_one(configdir, channel, -1, lines, len, hold ? &fd : NULL, hold ? &pos : NULL, err) < 0)
			return -1;
		if (hold)
			hold_fd(hold, fd, &pos);
		return 0;
	}
	struct buf parts[CHLOG_MAX_SHARDS];
	for (unsigned k = 0; k < nshards; k++)
		parts[k] = (struct buf)BUF_INIT;
	split_lines(lines, len, nshards, parts);
	int rc = 0;
	for (unsigned k = 0; k < nshards && rc == 0; k++) {
		int fd;
		if (!parts[k].len)
			continue;
		rc = append_one(configdir, channel, (int)k, parts[k].ptr, parts[k].len, hold ? &fd : NULL,
				hold ? &pos : NULL, err);
		if (rc == 0 && hold)
			hold_fd(hold, fd, &pos);
	}
	for (unsigned k = 0; k < nshards; k++)
		buf_free(&parts[k]);
	return rc;
}

/* The channels in name order: every writer locks files in one order. */
static void sorted_channels(const struct chlog *l, size_t *order)
{
	for (size_t i = 0; i < l->n; i++) {
		size_t j = i;
		for (; j > 0 && strcmp(l->channels[order[j - 1]], l->channels[i]) > 0; j--)
			order[j] = order[j - 1];
		order[j] = i;
	}
}

int chlog_append(struct chlog *l, const char *lines, size_t len, struct terr *err)
{
	if (!l || len == 0)
		return 0;
	refresh(l);
	size_t order[MAX_CHANNELS];
	sorted_channels(l, order);
	for (size_t i = 0; i < l->n; i++) {
		size_t c = order[i];
		if (append_channel(l->configdir, l->channels[c], l->shards[c], lines, len, NULL, err) < 0)
			return -1;
	}
	return 0;
}

int chlog_append_hold(struct chlog *l, const char *lines, size_t len, struct chlog_hold *hold,
		      struct terr *err)
{
	hold->fds = NULL;
	hold->pos = NULL;
	hold->n = hold->cap = 0;
	hold->nchans = 0;
	hold->log = NULL;
	hold->lines = NULL;
	if (!l || len == 0)
		return 0;
	refresh(l);
	size_t order[MAX_CHANNELS];
	sorted_channels(l, order);
	for (size_t i = 0; i < l->n; i++) {
		size_t c = order[i];
		if (append_channel(l->configdir, l->channels[c], l->shards[c], lines, len, hold, err) < 0) {
			chlog_release(hold);
			return -1;
		}
		snprintf(hold->chans[hold->nchans], sizeof hold->chans[0], "%s", l->channels[c]);
		hold->shards[hold->nchans++] = l->shards[c];
	}
	hold->log = l;
	hold->gen = l->gen;
	hold->lines = xmemdup(lines, len);
	hold->len = len;
	return 0;
}

void chlog_release(struct chlog_hold *hold)
{
	struct chlog *l = hold->log;
	if (l && hold->lines) {
		/* a channel added (or resharded) while the change was being
		 * committed gets its lines too (before the locks go: readers
		 * of the others are not affected); a duplicate is harmless */
		refresh(l);
		for (size_t i = 0; l->gen != hold->gen && i < l->n; i++) {
			int known = 0;
			for (size_t k = 0; k < hold->nchans && !known; k++)
				known = !strcmp(hold->chans[k], l->channels[i]) && hold->shards[k] == l->shards[i];
			struct terr err = { 0 };
			if (!known && append_channel(l->configdir, l->channels[i], l->shards[i], hold->lines, hold->len,
						     NULL, &err) < 0)
				log_err("event=chlog_fail channel=%s error=\"%s\" note=\"added channel missed a change:"
					" run a full sync of it\"", l->channels[i], err.msg);
		}
	}
	for (size_t i = 0; i < hold->n; i++)
		close(hold->fds[i]);	/* closing drops the lock */
	free(hold->fds);
	free(hold->pos);
	hold->fds = NULL;
	hold->pos = NULL;
	hold->n = hold->cap = 0;
	free(hold->lines);
	hold->lines = NULL;
	hold->log = NULL;
}

int chlog_take(const char *configdir, const char *channel, struct terr *err)
{
	return chlog_take_shard(configdir, channel, -1, err);
}

int chlog_done(const char *configdir, const char *channel, struct terr *err)
{
	return chlog_done_shard(configdir, channel, -1, err);
}

static int take(const char *configdir, const char *channel, int shard, int with_next, struct terr *err)
{
	struct buf run = BUF_INIT, log = BUF_INIT;
	chlog_shard_path(configdir, channel, shard, "log-run", &run);
	chlog_shard_path(configdir, channel, shard, "log", &log);
	int rc = 1;
	if (access(run.ptr, F_OK) == 0)
		goto out;	/* leftover of an interrupted run: process it first */
	struct stat sb;
	if (stat(log.ptr, &sb) < 0) {
		rc = errno == ENOENT ? 0 : terr_errno(err, errno, "stat %s", log.ptr);
		goto out;
	}
	if (sb.st_size == 0) {
		/* the empty log made at the last take: nothing to do (a writer
		 * that appends meanwhile wakes the client: inotify) */
		rc = 0;
		goto out;
	}
	if (rename(log.ptr, run.ptr) < 0) {
		rc = errno == ENOENT ? 0 : terr_errno(err, errno, "rename %s", log.ptr);
		goto out;
	}
	/* the next log, so no writer pays a new log's directory fsync; the
	 * one fsync covers it and the rename */
	int next = -1;
	if (with_next)
		(void)make_next(log.ptr, &next);
	int synced = fs_fsync_parent(run.ptr, err);
	if (next >= 0) {
		if (synced == 0)
			name_synced(next);
		close(next);	/* unlocks its mark */
	}
	if (synced < 0) {
		rc = -1;
		goto out;
	}
	/* wait for writers that locked the old inode before the rename */
	int fd = open(run.ptr, O_RDWR | O_CLOEXEC);
	if (fd >= 0) {
		lock_fd(fd, F_WRLCK);
		close(fd);
	}
out:
	buf_free(&run);
	buf_free(&log);
	return rc;
}

int chlog_take_shard(const char *configdir, const char *channel, int shard, struct terr *err)
{
	return take(configdir, channel, shard, 0, err);
}

int chlog_take_shard_next(const char *configdir, const char *channel, int shard, struct terr *err)
{
	return take(configdir, channel, shard, 1, err);
}

/* No directory fsync after the unlink: a power cut that loses it brings
 * log-run back, and the reader replays it, which is harmless (a line
 * names a mailbox, the client sends the master's state of it now: a
 * replay is idempotent, as after a reader killed before its done). The
 * next take's fsync of this directory (its rename and the next log's
 * link) covers the unlink anyway; without it a rolling pass ends one
 * serial sync sooner. */
int chlog_done_shard(const char *configdir, const char *channel, int shard, struct terr *err)
{
	struct buf run = BUF_INIT;
	chlog_shard_path(configdir, channel, shard, "log-run", &run);
	int rc = 0;
	if (unlink(run.ptr) < 0 && errno != ENOENT)
		rc = terr_errno(err, errno, "unlink %s", run.ptr);
	buf_free(&run);
	return rc;
}

int chlog_sweep_stale(const char *configdir, const char *channel, int shard)
{
	struct buf dir = BUF_INIT, path = BUF_INIT;
	chlog_shard_path(configdir, channel, shard, "log", &dir);
	char *slash = strrchr(dir.ptr, '/');
	*slash = '\0';
	dir.len = (size_t)(slash - dir.ptr);
	int removed = 0;
	DIR *d = opendir(dir.ptr);
	struct dirent *de;
	time_t now = time(NULL);
	while (d && (de = readdir(d)) != NULL) {
		if (strncmp(de->d_name, "log.new.", 8) != 0)
			continue;
		buf_reset(&path);
		buf_printf(&path, "%s/%s", dir.ptr, de->d_name);
		int fd = open(path.ptr, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
		if (fd < 0)
			continue;
		/* a live creator holds the mark exclusively and the data shared */
		struct flock fl = { 0 };
		fl.l_type = F_WRLCK;
		fl.l_whence = SEEK_SET;
		fl.l_start = 0;
		fl.l_len = 0;
		struct stat st;
		if (fcntl(fd, F_GETLK, &fl) == 0 && fl.l_type == F_UNLCK && fstat(fd, &st) == 0 &&
		    now - st.st_mtime > CHLOG_STALE_NEW_S && unlink(path.ptr) == 0) {
			removed++;
			log_notice("event=chlog_stale_removed channel=%s file=%s bytes=%lld note=\"a writer died before"
				   " linking a new log; its lines were never acknowledged\"",
				   channel && *channel ? channel : "\"\"", path.ptr, (long long)st.st_size);
		}
		close(fd);
	}
	if (d)
		closedir(d);
	buf_free(&dir);
	buf_free(&path);
	return removed;
}

/* One astring: atom (to whitespace, '(' ')' '"') or quoted with \ escapes. */
static int parse_arg(const char **pp, const char *end, struct buf *out)
{
	const char *p = *pp;
	buf_reset(out);
	if (p < end && *p == '"') {
		p++;
		while (p < end && *p != '"') {
			if (*p == '\\' && p + 1 < end)
				p++;
			buf_putc(out, *p++);
		}
		if (p >= end)
			return -1;
		p++;
	} else {
		while (p < end && !strchr(" \t()\"", *p))
			buf_putc(out, *p++);
		if (out->len == 0)
			return -1;
	}
	*pp = p;
	return 0;
}

int chlog_parse_line(const char *line, size_t len, struct chlog_entry *e, struct terr *err)
{
	memset(e->keyword, 0, sizeof e->keyword);
	buf_reset(&e->arg1);
	buf_reset(&e->arg2);
	e->nargs = 0;
	if (len && line[len - 1] == '\r')
		len--;
	const char *p = line, *end = line + len;
	size_t k = 0;
	while (p < end && *p != ' ' && *p != '\t') {
		if (k + 1 >= sizeof e->keyword)
			return terr_set(err, TE_INVALID, "keyword too long");
		e->keyword[k++] = (char)toupper((unsigned char)*p++);
	}
	if (!keyword_known(e->keyword))
		return terr_set(err, TE_INVALID, "unknown keyword '%s'", e->keyword);
	if (p >= end || *p != ' ')
		return terr_set(err, TE_INVALID, "%s without an argument", e->keyword);
	p++;
	if (parse_arg(&p, end, &e->arg1) < 0)
		return terr_set(err, TE_INVALID, "bad argument of %s", e->keyword);
	e->nargs = 1;
	if (p < end && *p == ' ') {
		p++;
		if (parse_arg(&p, end, &e->arg2) < 0)
			return terr_set(err, TE_INVALID, "bad second argument of %s", e->keyword);
		e->nargs = 2;
	}
	if (p != end)
		return terr_set(err, TE_INVALID, "trailing bytes after %s", e->keyword);
	return 0;
}

void chlog_entry_free(struct chlog_entry *e)
{
	buf_free(&e->arg1);
	buf_free(&e->arg2);
}

void chlog_entries_free(struct chlog_entry *entries, size_t n)
{
	for (size_t i = 0; i < n; i++)
		chlog_entry_free(&entries[i]);
	free(entries);
}

/* Empty, a lone CR, or only spaces (a writer's blanked partial line,
 * see blank_partial): skipped without a warning. */
static int blank_line(const char *p, const char *le)
{
	while (p < le && *p == ' ')
		p++;
	return p == le || (le - p == 1 && *p == '\r');
}

int chlog_read_file(const char *path, struct chlog_entry **entries_r, size_t *bad_r, struct terr *err)
{
	struct buf data = BUF_INIT;
	*entries_r = NULL;
	*bad_r = 0;
	if (fs_read_file(path, (size_t)1 << 31, &data, err) < 0) {
		buf_free(&data);
		return -1;
	}
	size_t n = 0, cap = 64, lineno = 0;
	struct chlog_entry *es = xcalloc(cap, sizeof *es);
	const char *p = data.ptr ? data.ptr : "", *end = p + data.len;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *le = nl ? nl : end;
		lineno++;
		if (!blank_line(p, le)) {
			if (n == cap) {
				es = xrealloc(es, (cap *= 2) * sizeof *es);
				memset(es + n, 0, (cap - n) * sizeof *es);
			}
			struct terr e2;
			if (chlog_parse_line(p, (size_t)(le - p), &es[n], &e2) == 0) {
				n++;
			} else {
				chlog_entry_free(&es[n]);
				(*bad_r)++;
				log_warn("event=chlog_bad_line file=%s line=%zu error=\"%s\"", path, lineno, e2.msg);
			}
		}
		p = nl ? nl + 1 : end;
	}
	buf_free(&data);
	*entries_r = es;
	return (int)n;
}
