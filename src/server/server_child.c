/* server_child.c: the life of tandemd's children.
 *
 *  - A child dies with tandemd: server_child_init, right after fork(),
 *    asks the kernel for SIGTERM when the parent goes (PR_SET_PDEATHSIG)
 *    and exits at once if the parent is already gone (it died between
 *    fork() and prctl()). SIGTERM is the session's and the sync client's
 *    ordinary stop: a delivery in progress finishes, a sync client sends
 *    what it holds, then each exits.
 *  - One sync client per channel shard: the client holds an flock on
 *    <configdir>/sync/[<channel>/]client-<shard>.lock for its whole life,
 *    with its pid written in the file. A second client (another tandemd
 *    of the same instance, `tandem sync -r`) cannot take it and exits.
 *  - A starting tandemd stops the clients a killed tandemd left behind:
 *    every such lock still held is a stale client; it gets SIGTERM, then
 *    SIGKILL if it has not let go of the lock in time.
 */
#include "server/server.h"

#include "chlog/chlog.h"
#include "conf/conf.h"
#include "lib/fsutil.h"
#include "lib/log.h"

#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

void server_child_init(pid_t parent)
{
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() != parent)
		_exit(0);
}

static void lock_path(const struct conf *conf, const char *channel, int shard, struct buf *out)
{
	char name[32];
	snprintf(name, sizeof name, "client-%d.lock", shard);
	chlog_path(conf_str(conf, "configdirectory"), channel, name, out);
}

/* The pid written in a held lock file, 0 if none. */
static pid_t read_holder(int fd)
{
	char b[32];
	ssize_t n = pread(fd, b, sizeof b - 1, 0);
	if (n <= 0)
		return 0;
	b[n] = '\0';
	long v = strtol(b, NULL, 10);
	return v > 1 ? (pid_t)v : 0;
}

int server_syncc_lock(const struct conf *conf, const char *channel, int shard, int *fd_r, pid_t *holder_r,
		      struct terr *err)
{
	*fd_r = -1;
	*holder_r = 0;
	struct buf path = BUF_INIT;
	lock_path(conf, channel, shard, &path);
	char *slash = strrchr(path.ptr, '/');
	*slash = '\0';
	int rc = fs_mkdir_p(path.ptr, 0755, err);
	*slash = '/';
	int fd = rc < 0 ? -1 : open(path.ptr, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (rc == 0 && fd < 0)
		rc = terr_set(err, TE_IO, "%s: %s", path.ptr, strerror(errno));
	if (fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) < 0) {
		if (errno == EWOULDBLOCK) {
			*holder_r = read_holder(fd);
			rc = 1;
		} else {
			rc = terr_set(err, TE_IO, "flock %s: %s", path.ptr, strerror(errno));
		}
		close(fd);
		fd = -1;
	}
	if (fd >= 0) {
		char line[32];
		int n = snprintf(line, sizeof line, "%ld\n", (long)getpid());
		if (ftruncate(fd, 0) < 0 || pwrite(fd, line, (size_t)n, 0) != n) {
			/* the lock is what counts; the pid only helps find the holder */
		}
		*fd_r = fd;
	}
	buf_free(&path);
	return rc;
}

/* 1 when the lock at path is held by another process (then *holder_r). */
static int lock_held(const char *path, pid_t *holder_r)
{
	int fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return 0;
	int held = flock(fd, LOCK_EX | LOCK_NB) < 0 && errno == EWOULDBLOCK;
	*holder_r = held ? read_holder(fd) : 0;
	close(fd);	/* also lets go of the lock if we took it */
	return held;
}

static int wait_free(const char *path, long long wait_ms)
{
	pid_t h;
	for (long long waited = 0; waited < wait_ms; waited += 50) {
		if (!lock_held(path, &h))
			return 1;
		struct timespec ts = { 0, 50 * 1000000L };
		nanosleep(&ts, NULL);
	}
	return !lock_held(path, &h);
}

int server_syncc_stop_stale(const struct conf *conf, long long wait_ms)
{
	const char *dir = conf_str(conf, "configdirectory");
	int found = 0;
	char pat[2][4096];
	snprintf(pat[0], sizeof pat[0], "%s/sync/client-*.lock", dir);
	snprintf(pat[1], sizeof pat[1], "%s/sync/*/client-*.lock", dir);
	for (int k = 0; k < 2; k++) {
		glob_t g;
		if (glob(pat[k], 0, NULL, &g) != 0)
			continue;
		for (size_t i = 0; i < g.gl_pathc; i++) {
			const char *path = g.gl_pathv[i];
			pid_t pid;
			if (!lock_held(path, &pid))
				continue;
			found++;
			if (pid <= 1 || pid == getpid()) {
				log_warn("event=stale_sync_client lock=%s pid=unknown action=none", path);
				continue;
			}
			log_warn("event=stale_sync_client lock=%s pid=%ld action=sigterm", path, (long)pid);
			kill(pid, SIGTERM);
			if (wait_free(path, wait_ms))
				continue;
			log_warn("event=stale_sync_client lock=%s pid=%ld action=sigkill", path, (long)pid);
			kill(pid, SIGKILL);
			if (!wait_free(path, 5000))
				log_err("event=stale_sync_client lock=%s pid=%ld action=gave_up", path, (long)pid);
		}
		globfree(&g);
	}
	return found;
}
