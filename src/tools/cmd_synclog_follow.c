/* cmd_synclog_follow.c: tandem synclog --follow CHANNEL: a consumer
 * channel's change log on standard output, for another program (an
 * indexer: `tandem synclog --follow squatter | indexer`).
 *
 * It consumes the log as a rolling sync client does (chlog_take: log is
 * renamed to log-run, so writers never wait for the consumer; chlog_done
 * removes log-run once all of it is delivered). A line counts as
 * delivered once the consumer has read it: when standard output is a
 * pipe, the bytes still unread in it (FIONREAD) are not. The position in
 * log-run (its identity and the offset of the first line not delivered)
 * is kept in sync/<channel>/follow after every chunk, so a follower that
 * stops (SIGTERM, SIGINT, the consumer gone) and starts again goes on
 * with the next line: nothing lost, nothing twice. Only a follower killed
 * between writing a chunk and saving the position prints that chunk
 * again: delivery is at least once. Order: the state file goes before
 * log-run does, so a crash in between repeats, never skips.
 */
#include "tools/tools.h"

#include "chlog/chlog.h"
#include "conf/conf.h"
#include "lib/fsutil.h"
#include "lib/limits.h"
#include "sync/sync_client.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

/* Bytes written to the consumer between two saves of the position. */
#define FOLLOW_CHUNK 65536
/* Largest log-run a follower reads at once (as the sync client's reader). */
#define FOLLOW_MAX_RUN ((size_t)1 << 31)

static volatile sig_atomic_t follow_stop;

static void on_stop(int sig)
{
	(void)sig;
	follow_stop++;
}

/* The identity of a log-run: device, inode and birth time (0 where the
 * file system keeps none). */
struct run_id {
	unsigned long long dev, ino, btime;
};

static int run_identity(const char *path, struct run_id *id)
{
	struct statx sx;
	if (statx(AT_FDCWD, path, 0, STATX_INO | STATX_BTIME, &sx) < 0)
		return -1;
	id->dev = ((unsigned long long)sx.stx_dev_major << 32) | sx.stx_dev_minor;
	id->ino = sx.stx_ino;
	id->btime = (sx.stx_mask & STATX_BTIME) ? (unsigned long long)sx.stx_btime.tv_sec * 1000000000ULL +
							  sx.stx_btime.tv_nsec : 0;
	return 0;
}

/* The offset saved for this log-run, 0 when the state names another. */
static size_t saved_offset(const char *state, const struct run_id *id)
{
	struct buf data = BUF_INIT;
	struct terr err;
	size_t off = 0;
	unsigned long long dev, ino, bt, o;
	if (fs_read_file(state, 256, &data, &err) == 0 &&
	    sscanf(buf_cstr(&data), "%llu %llu %llu %llu", &dev, &ino, &bt, &o) == 4 && dev == id->dev &&
	    ino == id->ino && bt == id->btime)
		off = (size_t)o;
	buf_free(&data);
	return off;
}

static int save_offset(const char *state, const struct run_id *id, size_t off, struct terr *err)
{
	char line[128];
	int n = snprintf(line, sizeof line, "%llu %llu %llu %zu\n", id->dev, id->ino, id->btime, off);
	return fs_write_atomic(state, line, (size_t)n, 0640, err);
}

/* Bytes written to fd that its reader has not read yet (0 unless fd is
 * a pipe). */
static size_t unread_bytes(int fd)
{
	int n = 0;
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISFIFO(st.st_mode) || ioctl(fd, FIONREAD, &n) < 0 || n < 0)
		return 0;
	return (size_t)n;
}

/* 1 when fd is a pipe whose reader is gone. */
static int reader_gone(int fd)
{
	struct pollfd pf = { fd, 0, 0 };
	return poll(&pf, 1, 0) > 0 && (pf.revents & (POLLERR | POLLHUP));
}

/* Writes data[0..len) (whole lines); returns the bytes written. A stop
 * request ends it at a line end (a second one at once: the position
 * saved is that line's start, so it goes again whole); a write error
 * (the consumer gone) sets *failed. */
static size_t emit(const char *data, size_t len, int *failed)
{
	size_t done = 0;
	while (done < len) {
		if ((follow_stop && (done == 0 || data[done - 1] == '\n')) || follow_stop >= 2)
			break;
		ssize_t w = write(STDOUT_FILENO, data + done, len - done);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			*failed = errno ? errno : EIO;
			break;
		}
		done += (size_t)w;
	}
	return done;
}

/* The start of the line that holds byte at (at itself when it starts one). */
static size_t line_start(const char *data, size_t at)
{
	while (at > 0 && data[at - 1] != '\n')
		at--;
	return at;
}

struct follower {
	const char *configdir, *channel;
	int shard;
	struct buf run, state;
	unsigned long long lines;	/* delivered this run of the command */
};

/* One log-run: 1 all delivered and removed, 0 stopped or the consumer is
 * gone (position saved), -1 error. */
static int follow_run(struct follower *f, struct terr *err)
{
	struct run_id id;
	if (run_identity(f->run.ptr, &id) < 0)
		return terr_errno(err, errno, "stat %s", f->run.ptr);
	struct buf data = BUF_INIT;
	if (fs_read_file(f->run.ptr, FOLLOW_MAX_RUN, &data, err) < 0) {
		buf_free(&data);
		return -1;
	}
	size_t off = saved_offset(f->state.ptr, &id);
	if (off > data.len)
		off = 0;	/* not this file after all: from the start (at least once) */
	size_t pos = off;
	int failed = 0, rc = 1;
	while (pos < data.len && !failed && !follow_stop) {
		size_t end = pos + FOLLOW_CHUNK < data.len ? pos + FOLLOW_CHUNK : data.len;
		if (end < data.len) {
			size_t ls = line_start(data.ptr, end);
			end = ls > pos ? ls : end;	/* a line longer than a chunk goes whole */
			while (end < data.len && data.ptr[end - 1] != '\n')
				end++;
		}
		size_t w = emit(data.ptr + pos, end - pos, &failed);
		for (size_t i = pos; i < pos + w; i++)
			f->lines += data.ptr[i] == '\n';
		pos += w;
		/* what the consumer has not read yet is not delivered */
		size_t unread = unread_bytes(STDOUT_FILENO);
		size_t dl = line_start(data.ptr, pos > off + unread ? pos - unread : off);
		if (save_offset(f->state.ptr, &id, dl, err) < 0) {
			rc = -1;
			goto out;
		}
	}
	/* all written: wait until the consumer has read it all (or is gone,
	 * or a second stop request comes) */
	while (unread_bytes(STDOUT_FILENO) && !reader_gone(STDOUT_FILENO) && follow_stop < 2)
		poll(NULL, 0, 50);
	size_t unread = unread_bytes(STDOUT_FILENO);
	size_t dl = line_start(data.ptr, pos > off + unread ? pos - unread : off);
	if (dl == data.len && !failed) {
		/* the state first: a crash in between repeats the run, never
		 * skips the next one */
		if ((unlink(f->state.ptr) < 0 && errno != ENOENT) || fs_fsync_parent(f->state.ptr, err) < 0 ||
		    chlog_done_shard(f->configdir, f->channel, f->shard, err) < 0) {
			if (!err->msg[0])
				terr_errno(err, errno, "unlink %s", f->state.ptr);
			rc = -1;
		}
		goto out;
	}
	if (save_offset(f->state.ptr, &id, dl, err) < 0) {
		rc = -1;
		goto out;
	}
	if (failed && failed != EPIPE) {
		rc = terr_errno(err, failed, "write to standard output");
		goto out;
	}
	rc = 0;
out:
	buf_free(&data);
	return rc;
}

/* Waits for the log to be written to (inotify), at most ms. */
static void wait_log(int ino, int ms)
{
	struct pollfd pf = { ino, POLLIN, 0 };
	if (ino < 0 || poll(&pf, 1, ms) <= 0)
		return;
	char evbuf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	while (read(ino, evbuf, sizeof evbuf) > 0) {
	}
}

int synclog_follow(struct tool *t, const char *channel, int shard, int once)
{
	struct terr err = { 0 };
	const char *const *chans;
	size_t n = conf_bool(t->conf, "sync_log") ? conf_log_channels(t->conf, &chans) : 0;
	int known = 0;
	for (size_t i = 0; i < n; i++)
		known |= !strcmp(chans[i], channel);
	if (!known) {
		fprintf(stderr, "tandem: channel '%s' is not logged to (sync_log: yes and sync_log_channels in %s)\n",
			channel, t->conf_path);
		return EXIT_USAGE;
	}
	const char *host = conf_chan_str(t->conf, channel, "sync_host");
	if (host && *host) {
		fprintf(stderr, "tandem: channel '%s' has a sync_host: its log is a sync client's; a consumer channel"
				" has none\n", channel);
		return EXIT_USAGE;
	}
	int nshards = syncc_channel_shards(t->conf, channel);
	if (shard >= nshards) {
		fprintf(stderr, "tandem: channel '%s' has %d shard(s)\n", channel, nshards);
		return EXIT_USAGE;
	}
	struct follower f = { .configdir = conf_str(t->conf, "configdirectory"), .channel = channel,
			      .shard = syncc_shard_dir(t->conf, channel, shard) };
	struct buf dir = BUF_INIT, lockp = BUF_INIT;
	chlog_shard_path(f.configdir, channel, f.shard, "log-run", &f.run);
	chlog_shard_path(f.configdir, channel, f.shard, "follow", &f.state);
	chlog_shard_path(f.configdir, channel, f.shard, "follow.lock", &lockp);
	chlog_shard_path(f.configdir, channel, f.shard, "", &dir);
	int rc = EXIT_OK, lockfd = -1, ino = -1;
	if (fs_mkdir_p(dir.ptr, 0750, &err) < 0) {
		rc = tool_fail(&err);
		goto out;
	}
	lockfd = open(lockp.ptr, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
	if (lockfd < 0 || flock(lockfd, LOCK_EX | LOCK_NB) < 0) {
		fprintf(stderr, "tandem: %s: %s\n", lockp.ptr,
			errno == EWOULDBLOCK ? "another follower runs this channel" : strerror(errno));
		rc = EXIT_FAIL;
		goto out;
	}
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_stop;	/* no SA_RESTART: a blocked write returns */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	ino = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (ino >= 0 && inotify_add_watch(ino, dir.ptr, IN_MODIFY | IN_CREATE | IN_MOVED_TO | IN_CLOSE_WRITE) < 0) {
		close(ino);
		ino = -1;
	}
	while (!follow_stop) {
		int tk = chlog_take_shard(f.configdir, channel, f.shard, &err);
		if (tk < 0) {
			rc = tool_fail(&err);
			break;
		}
		if (tk == 1) {
			int r = follow_run(&f, &err);
			if (r < 0) {
				rc = tool_fail(&err);
				break;
			}
			if (r == 0)
				break;	/* stopped, or the consumer is gone */
			continue;
		}
		if (once || reader_gone(STDOUT_FILENO))
			break;	/* a consumer that went away is noticed while idle too */
		wait_log(ino, 1000);
	}
	int gone = rc == EXIT_OK && reader_gone(STDOUT_FILENO);
	if (gone)
		rc = EXIT_FAIL;	/* the consumer went away: say so to a supervisor */
	fprintf(stderr, "tandem: event=follow_end channel=%s lines=%llu reason=%s\n", *channel ? channel : "\"\"",
		f.lines, gone ? "consumer_gone" : rc != EXIT_OK ? "error" : follow_stop ? "stopped" : "done");
out:
	if (ino >= 0)
		close(ino);
	if (lockfd >= 0)
		close(lockfd);
	buf_free(&dir);
	buf_free(&lockp);
	buf_free(&f.run);
	buf_free(&f.state);
	return rc;
}
