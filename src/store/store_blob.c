/* store_blob.c: message files, content-addressed by GUID (SHA-1 of the
 * exact bytes), one directory tree per owner: <dir>/blobs/<g0g1>/<guid>.
 *
 * Write: temp file in <dir>/tmp, fsync, rename to the GUID name, fsync
 * the directory. A file is never changed after the rename, so readers
 * need no lock. Files nobody references (a crash between the file and
 * the commit, a deleted mailbox) are removed by store_blob_gc, which
 * leaves files younger than BLOB_GC_MIN_AGE alone: a delivery writes its
 * file before taking the user's lock, so a young unreferenced file may be
 * about to be committed. store_append also re-checks its file under the
 * lock and rewrites it if it is gone.
 */
#include "store/store-private.h"

#include "lib/fsutil.h"
#include "lib/limits.h"
#include "lib/sha1.h"
#include "lib/xalloc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* This process's id without a getpid() system call per message file (two
 * a delivery: the temporary name and the syncer's check): set once (any
 * thread may ask: pthread_once), and again in a fork's child
 * (pthread_atfork; the child has one thread then). */
static pid_t blob_pid_kept;

static void blob_pid_set(void)
{
	blob_pid_kept = getpid();
}

static void blob_pid_register(void)
{
	blob_pid_set();
	(void)pthread_atfork(NULL, NULL, blob_pid_set);
}

static pid_t blob_pid(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, blob_pid_register);
	return blob_pid_kept;
}

/* Seconds a file must exist before gc may remove it (see store_blob_gc). */
#define BLOB_GC_MIN_AGE 3600

int store_blob_path(struct ustore *u, const char *guid, struct buf *path_r)
{
	buf_reset(path_r);
	buf_printf(path_r, "%s/blobs/%.2s/%s", u->dir, guid, guid);
	return 0;
}

int store_blob_write(struct store *st, struct ustore *u, const void *data, size_t len,
		     const char *guid, struct terr *err)
{
	return store_blob_write2(st, u, data, len, guid, 1, err);
}

int store_blob_sync_dir(const char *dir, struct terr *err)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return terr_errno(err, errno, "open %s", dir);
	int rc = syncfs(fd);
	int e = errno;
	close(fd);
	if (rc < 0)
		return terr_errno(err, e, "syncfs %s", dir);
	return 0;
}

int store_blob_sync_all(struct ustore *u, struct terr *err)
{
	return store_blob_sync_dir(u->dir, err);
}

/* The blobs/xx directory of a file: one mkdir() when it is there (the
 * common case; fs_mkdir_p would try every component of the path). A new
 * one is made durable with the file: its parent fsynced, or (durable 0)
 * by the caller's syncfs. */
static int blob_dir(const char *dir, int durable, struct terr *err)
{
	if (mkdir(dir, 0750) == 0)
		return durable ? fs_fsync_parent(dir, err) : 0;
	return errno == EEXIST ? 0 : fs_mkdir_p(dir, 0750, err);
}

int store_blob_write2(struct store *st, struct ustore *u, const void *data, size_t len,
		      const char *guid, int durable, struct terr *err)
{
	struct buf path = BUF_INIT, tmp = BUF_INIT;
	store_blob_path(u, guid, &path);
	struct stat sb;
	if (stat(path.ptr, &sb) == 0 && (size_t)sb.st_size == len) {
		buf_free(&path);
		return 0;	/* the same bytes are already there */
	}
	int rc = -1, fd = -1;
	char *slash = strrchr(path.ptr, '/');
	*slash = '\0';
	if (blob_dir(path.ptr, durable, err) < 0)
		goto out;
	*slash = '/';
	buf_printf(&tmp, "%s/tmp/%ld.%lu.%s", u->dir, (long)blob_pid(), ++st->tmpcounter, guid);
	fd = open(tmp.ptr, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
	if (fd < 0) {
		terr_errno(err, errno, "create %s", tmp.ptr);
		goto out;
	}
	if (fs_write_all(fd, data, len, tmp.ptr, err) < 0 || (durable && fs_fsync(fd, tmp.ptr, err) < 0))
		goto out;
	if (close(fd) < 0) {
		fd = -1;
		terr_errno(err, errno, "close %s", tmp.ptr);
		goto out;
	}
	fd = -1;
	if (rename(tmp.ptr, path.ptr) < 0) {
		terr_errno(err, errno, "rename %s", path.ptr);
		goto out;
	}
	if (durable && fs_fsync_parent(path.ptr, err) < 0)
		goto out;
	rc = 0;
out:
	if (fd >= 0)
		close(fd);
	if (rc < 0 && tmp.len)
		unlink(tmp.ptr);
	buf_free(&path);
	buf_free(&tmp);
	return rc;
}

/* ---- a delivery's file, made durable beside the change log's line -----
 *
 * A delivery made four syncs one after the other: the message file, its
 * blobs/xx directory, the change log, SQLite's COMMIT. Only the COMMIT
 * (and the 250 after it) must follow the file and its name; the change
 * log's line may be durable before the file (a line for a change that did
 * not commit is harmless: the client syncs what is there). So the file's
 * syncs run in a thread of their own while the caller runs its SQL and
 * appends and fsyncs the log line, and the caller waits for them just
 * before COMMIT (utx.before_commit): the serial chain is the longer of
 * (file + directory) and (log line), then the COMMIT.
 *
 * One syncer thread per process, started at its first delivery and kept
 * (a thread per delivery cost a clone, and at its exit glibc's madvise of
 * its stack: page faults and TLB shootdowns for the next). It takes one
 * job at a time (a delivery waits for its job before the next) and
 * touches nothing but the job (fsync counters and logs are the caller's,
 * after the wait). A forked child starts its own. */

struct blob_pending {
	int queued;		/* handed to the syncer thread */
	int done;		/* rc and err are final (under syncer.mu when queued) */
	int accounted;		/* its fsyncs were counted (fs_fsync_account) */
	int fd;			/* the written temporary file, or -1: the file was there */
	char *tmp, *path;
	int newdir;		/* blobs/xx was made by this write: fsync blobs too */
	int rc;
	struct terr err;
	uint64_t sync_ns[3];	/* for fs_fsync_account, after the join */
	int nsync;
};

static int pending_fsync(struct blob_pending *p, int fd, const char *what)
{
	uint64_t t0 = fs_now_ns();
	int rc = fsync(fd);
	int e = errno;
	if (p->nsync < 3)
		p->sync_ns[p->nsync++] = fs_now_ns() - t0;
	return rc < 0 ? terr_errno(&p->err, e, "fsync %s", what) : 0;
}

/* fsyncs the directory holding path, up levels up (1: its parent). */
static int pending_fsync_dir(struct blob_pending *p, const char *path, int up)
{
	char dir[4096];
	snprintf(dir, sizeof dir, "%s", path);
	for (int i = 0; i < up; i++) {
		char *slash = strrchr(dir, '/');
		if (!slash || slash == dir)
			return terr_set(&p->err, TE_INVALID, "no directory above %s", path);
		*slash = '\0';
	}
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return terr_errno(&p->err, errno, "open directory %s", dir);
	int rc = pending_fsync(p, fd, dir);
	close(fd);
	return rc;
}

static int blob_finish(struct blob_pending *p)
{
	if (p->fd >= 0) {
		int rc = pending_fsync(p, p->fd, p->tmp);
		if (close(p->fd) < 0 && rc == 0)
			rc = terr_errno(&p->err, errno, "close %s", p->tmp);
		p->fd = -1;
		if (rc == 0 && rename(p->tmp, p->path) < 0)
			rc = terr_errno(&p->err, errno, "rename %s", p->path);
		if (rc < 0) {
			unlink(p->tmp);
			return -1;
		}
	}
	/* Also when the file was there already: a concurrent delivery of the
	 * same bytes may have renamed it and not yet fsynced the directory. */
	if (pending_fsync_dir(p, p->path, 1) < 0)
		return -1;
	if (p->newdir && pending_fsync_dir(p, p->path, 2) < 0)
		return -1;
	return 0;
}

static struct {
	pid_t pid;		/* the process whose thread runs (0: none) */
	pthread_mutex_t mu;
	pthread_cond_t cv;	/* a job handed over, or one done */
	struct blob_pending *job;	/* handed over, not yet taken */
} syncer;

static void *syncer_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&syncer.mu);
	for (;;) {
		while (!syncer.job)
			pthread_cond_wait(&syncer.cv, &syncer.mu);
		struct blob_pending *p = syncer.job;
		syncer.job = NULL;
		pthread_mutex_unlock(&syncer.mu);
		int rc = blob_finish(p);
		pthread_mutex_lock(&syncer.mu);
		p->rc = rc;
		p->done = 1;	/* p is the caller's from here */
		pthread_cond_broadcast(&syncer.cv);
	}
	return NULL;
}

/* Hands p to this process's syncer thread (started here the first time);
 * 0, or -1 when no thread can be had. */
static int syncer_queue(struct blob_pending *p)
{
	if (syncer.pid != blob_pid()) {
		/* the first delivery of this process (a fork copies the
		 * parent's state but not its thread, which was idle: no job
		 * outlives its delivery) */
		pthread_mutex_init(&syncer.mu, NULL);
		pthread_cond_init(&syncer.cv, NULL);
		syncer.job = NULL;
		pthread_attr_t a;
		pthread_t t;
		sigset_t all, old;
		pthread_attr_init(&a);
		pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
		pthread_attr_setstacksize(&a, BLOB_SYNCER_STACK);
		/* the thread takes no signal: they stay the caller's */
		sigfillset(&all);
		pthread_sigmask(SIG_SETMASK, &all, &old);
		int rc = pthread_create(&t, &a, syncer_main, NULL);
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		pthread_attr_destroy(&a);
		if (rc != 0)
			return -1;
		syncer.pid = blob_pid();
	}
	pthread_mutex_lock(&syncer.mu);
	while (syncer.job)	/* one at a time (not expected: callers wait) */
		pthread_cond_wait(&syncer.cv, &syncer.mu);
	syncer.job = p;
	p->queued = 1;
	pthread_cond_broadcast(&syncer.cv);
	pthread_mutex_unlock(&syncer.mu);
	return 0;
}

int store_blob_write_start(struct store *st, struct ustore *u, const void *data, size_t len, const char *guid,
			   struct blob_pending **p_r, struct terr *err)
{
	*p_r = NULL;
	struct blob_pending *p = xcalloc(1, sizeof *p);
	struct buf path = BUF_INIT, tmp = BUF_INIT;
	p->fd = -1;
	store_blob_path(u, guid, &path);
	struct stat sb;
	if (stat(path.ptr, &sb) < 0 || (size_t)sb.st_size != len) {
		char *slash = strrchr(path.ptr, '/');
		*slash = '\0';
		int made = mkdir(path.ptr, 0750) == 0;
		int rc = made || errno == EEXIST ? 0 : fs_mkdir_p(path.ptr, 0750, err);
		*slash = '/';
		p->newdir = made;
		buf_printf(&tmp, "%s/tmp/%ld.%lu.%s", u->dir, (long)blob_pid(), ++st->tmpcounter, guid);
		if (rc == 0) {
			p->fd = open(tmp.ptr, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
			if (p->fd < 0)
				rc = terr_errno(err, errno, "create %s", tmp.ptr);
		}
		if (rc == 0 && fs_write_all(p->fd, data, len, tmp.ptr, err) < 0) {
			close(p->fd);
			unlink(tmp.ptr);
			rc = -1;
		}
		if (rc < 0) {
			buf_free(&path);
			buf_free(&tmp);
			free(p);
			return -1;
		}
	}
	p->path = buf_release(&path);
	p->tmp = tmp.ptr ? buf_release(&tmp) : NULL;
	if (syncer_queue(p) < 0) {
		p->rc = blob_finish(p);	/* no thread: here, as store_blob_write */
		p->done = 1;
	}
	*p_r = p;
	return 0;
}

int store_blob_wait(struct blob_pending *p, struct terr *err)
{
	if (p->queued && !p->accounted) {
		pthread_mutex_lock(&syncer.mu);
		while (!p->done)
			pthread_cond_wait(&syncer.cv, &syncer.mu);
		pthread_mutex_unlock(&syncer.mu);
	}
	if (!p->accounted) {
		p->accounted = 1;
		for (int i = 0; i < p->nsync; i++)
			fs_fsync_account(p->sync_ns[i]);
	}
	if (p->rc < 0) {
		if (err)
			*err = p->err;
		return -1;
	}
	return 0;
}

void store_blob_pending_free(struct blob_pending **pp)
{
	struct blob_pending *p = *pp;
	if (!p)
		return;
	store_blob_wait(p, NULL);
	free(p->tmp);
	free(p->path);
	free(p);
	*pp = NULL;
}

int store_blob_link(struct store *st, struct ustore *from, struct ustore *to, const char *guid,
		    struct terr *err)
{
	struct buf src = BUF_INIT, dst = BUF_INIT, data = BUF_INIT;
	store_blob_path(from, guid, &src);
	store_blob_path(to, guid, &dst);
	int rc = -1;
	struct stat sb;
	if (stat(dst.ptr, &sb) == 0) {
		rc = 0;
		goto out;
	}
	char *slash = strrchr(dst.ptr, '/');
	*slash = '\0';
	if (blob_dir(dst.ptr, 1, err) < 0)
		goto out;
	*slash = '/';
	if (link(src.ptr, dst.ptr) == 0 || errno == EEXIST) {
		rc = fs_fsync_parent(dst.ptr, err);
		goto out;
	}
	if (errno != EXDEV && errno != EMLINK && errno != EPERM) {
		terr_errno(err, errno, "link %s", dst.ptr);
		goto out;
	}
	/* Another file system (or no hard links): copy. */
	if (fs_read_file(src.ptr, (size_t)st->maxmessagesize, &data, err) < 0)
		goto out;
	rc = store_blob_write(st, to, data.ptr, data.len, guid, err);
out:
	buf_free(&src);
	buf_free(&dst);
	buf_free(&data);
	return rc;
}

int store_blob_gc(struct store *st, struct ustore *u, struct terr *err)
{
	(void)st;
	time_t now = time(NULL);
	struct buf top = BUF_INIT, sub = BUF_INIT;
	buf_printf(&top, "%s/blobs", u->dir);
	DIR *d = opendir(top.ptr);
	if (!d) {
		buf_free(&top);
		return errno == ENOENT ? 0 : terr_errno(err, errno, "opendir blobs");
	}
	sqlite3_stmt *q = store_stmt(&u->sql, "SELECT 1 FROM records WHERE guid = ? LIMIT 1;", err);
	int rc = q ? 0 : -1;
	struct dirent *de;
	while (rc == 0 && (de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		buf_reset(&sub);
		buf_printf(&sub, "%s/%s", top.ptr, de->d_name);
		DIR *d2 = opendir(sub.ptr);
		if (!d2)
			continue;
		struct dirent *f;
		int removed = 0;
		while ((f = readdir(d2)) != NULL) {
			if (strlen(f->d_name) != 40)
				continue;
			sqlite3_reset(q);
			sqlite3_bind_text(q, 1, f->d_name, -1, SQLITE_TRANSIENT);
			if (sqlite3_step(q) == SQLITE_ROW)
				continue;
			char p[4200];
			snprintf(p, sizeof p, "%s/%s", sub.ptr, f->d_name);
			/* A young file may belong to a delivery that wrote it and
			 * has not committed yet: leave it for a later run. */
			struct stat fsb;
			if (stat(p, &fsb) < 0 || fsb.st_mtime > now - BLOB_GC_MIN_AGE)
				continue;
			if (unlink(p) == 0)
				removed++;
		}
		closedir(d2);
		if (removed)
			rc = fs_fsync_dir(sub.ptr, err);
	}
	closedir(d);
	store_stmt_put(&u->sql, q);
	buf_free(&top);
	buf_free(&sub);
	if (rc == 0)
		rc = store_cache_gc(u, err);
	return rc;
}

/* ---- staged bodies (a replica's sync sessions) ------------------------------------ */

static void stage_dir(struct store *st, struct buf *dir_r)
{
	buf_reset(dir_r);
	buf_printf(dir_r, "%s/tmp/sync", st->partition_path);
}

/* The staging directory, open, kept per process (a replica's sessions
 * stage in one): files are created in it and moved out of it by name,
 * without a walk of its whole path at every body. A directory removed
 * behind it makes the create fail (ENOENT: nothing can be created in a
 * removed directory), and it is opened again. The fd's number never
 * changes once open (a new directory is put in its place with dup3) and
 * the lock covers the rest: a replica session's flush thread moves files
 * out while its reading thread creates them. */
static struct {
	pthread_mutex_t lock;
	int fd;
	char *path;
} stage_cache = { PTHREAD_MUTEX_INITIALIZER, -1, NULL };

/* The staging directory dir, open (again when fresh): its fd, or -1. */
static int stage_cache_fd(const char *dir, int fresh)
{
	pthread_mutex_lock(&stage_cache.lock);
	int fd = stage_cache.fd;
	if (fd < 0 || fresh || strcmp(stage_cache.path, dir)) {
		int nfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (nfd < 0) {
			fd = -1;
		} else if (stage_cache.fd < 0) {
			fd = stage_cache.fd = nfd;
		} else {
			fd = dup3(nfd, stage_cache.fd, O_CLOEXEC) < 0 ? -1 : stage_cache.fd;
			close(nfd);
		}
		if (fd >= 0 && (!stage_cache.path || strcmp(stage_cache.path, dir))) {
			free(stage_cache.path);
			stage_cache.path = xstrdup(dir);
		}
	}
	pthread_mutex_unlock(&stage_cache.lock);
	return fd;
}

/* A file of the cached staging directory: its fd and its name there;
 * else AT_FDCWD and the path. */
static int stage_at(const char *path, const char **name_r)
{
	int fd = AT_FDCWD;
	*name_r = path;
	pthread_mutex_lock(&stage_cache.lock);
	size_t n = stage_cache.path ? strlen(stage_cache.path) : 0;
	if (stage_cache.fd >= 0 && !strncmp(path, stage_cache.path, n) && path[n] == '/' &&
	    !strchr(path + n + 1, '/')) {
		*name_r = path + n + 1;
		fd = stage_cache.fd;
	}
	pthread_mutex_unlock(&stage_cache.lock);
	return fd;
}

int store_stage_create(struct store *st, struct buf *path_r, int *fd_r, struct terr *err)
{
	struct buf dir = BUF_INIT;
	stage_dir(st, &dir);
	buf_reset(path_r);
	buf_printf(path_r, "%s/%ld.%lu", dir.ptr, (long)blob_pid(), ++st->tmpcounter);
	const char *name = path_r->ptr + dir.len + 1;
	int rc = 0;
	/* the directory is there but for the first file of a partition: made
	 * only when the create says it is missing (no mkdir per body) */
	int dfd = stage_cache_fd(dir.ptr, 0);
	*fd_r = dfd >= 0 ? openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640) : -1;
	if (*fd_r < 0 && errno == ENOENT) {
		if (fs_mkdir_p(dir.ptr, 0750, err) < 0) {
			rc = -1;
		} else {
			dfd = stage_cache_fd(dir.ptr, 1);
			*fd_r = dfd >= 0 ? openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640) : -1;
		}
	}
	if (rc == 0 && *fd_r < 0)
		rc = terr_errno(err, errno, "create %s", path_r->ptr);
	buf_free(&dir);
	return rc;
}

/* Copies src to a new file dst (O_EXCL) in pieces; sha: the SHA-1 of
 * the bytes when not NULL. */
static int copy_file(const char *src, const char *dst, int dst_fd, char sha[41], struct terr *err)
{
	int in = open(src, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return terr_errno(err, errno, "open %s", src);
	char *chunk = xmalloc(SYNC_STREAM_CHUNK);
	struct sha1_ctx c;
	sha1_init(&c);
	int rc = 0;
	for (;;) {
		ssize_t n = read(in, chunk, SYNC_STREAM_CHUNK);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = terr_errno(err, errno, "read %s", src);
			break;
		}
		if (n == 0)
			break;
		sha1_update(&c, chunk, (size_t)n);
		if (dst_fd >= 0 && fs_write_all(dst_fd, chunk, (size_t)n, dst, err) < 0) {
			rc = -1;
			break;
		}
	}
	if (rc == 0 && sha)
		sha1_final_hex(&c, sha);
	sha1_free(&c);
	free(chunk);
	close(in);
	return rc;
}

int store_stage_existing(struct store *st, const char *mboxname, const char *guid, struct buf *path_r,
			 struct terr *err)
{
	struct buf src = BUF_INIT;
	char got[41];
	int rc = store_message_path(st, mboxname, guid, &src, err);
	if (rc == 0 && access(src.ptr, F_OK) < 0)
		rc = errno == ENOENT ? terr_set(err, TE_NOTFOUND, "no message file %s", guid)
				     : terr_errno(err, errno, "access %s", src.ptr);
	if (rc == 0)
		rc = copy_file(src.ptr, NULL, -1, got, err);
	if (rc == 0 && strcmp(got, guid))
		rc = terr_set(err, TE_CORRUPT, "message file %s has SHA-1 %s", guid, got);
	int fd = -1;
	if (rc == 0)
		rc = store_stage_create(st, path_r, &fd, err);
	if (rc == 0) {
		/* a name was made; the link takes its place */
		close(fd);
		unlink(path_r->ptr);
		if (link(src.ptr, path_r->ptr) < 0) {
			if (errno != EXDEV && errno != EMLINK && errno != EPERM) {
				rc = terr_errno(err, errno, "link %s", path_r->ptr);
			} else {
				fd = open(path_r->ptr, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
				rc = fd < 0 ? terr_errno(err, errno, "create %s", path_r->ptr)
					    : copy_file(src.ptr, path_r->ptr, fd, NULL, err);
				if (fd >= 0)
					close(fd);
				if (rc < 0)
					unlink(path_r->ptr);
			}
		}
	}
	buf_free(&src);
	return rc;
}

void store_stage_sweep(struct store *st)
{
	struct buf dir = BUF_INIT, p = BUF_INIT;
	stage_dir(st, &dir);
	DIR *d = opendir(dir.ptr);
	struct dirent *de;
	while (d && (de = readdir(d)) != NULL) {
		char *end;
		long pid = strtol(de->d_name, &end, 10);
		if (de->d_name[0] == '.' || *end != '.' || pid <= 0)
			continue;
		if (kill((pid_t)pid, 0) == 0 || errno != ESRCH)
			continue;	/* alive (or not ours to ask): its files are its own */
		buf_reset(&p);
		buf_printf(&p, "%s/%s", dir.ptr, de->d_name);
		unlink(p.ptr);
	}
	if (d)
		closedir(d);
	buf_free(&dir);
	buf_free(&p);
}

/* link(path, dst), or with move a rename that never replaces a file
 * already there (RENAME_NOREPLACE; a file system without it gets the
 * link). 0 done (*moved_r set when moved), 1 dst was there already, -1
 * with errno. */
static int place(int sfd, const char *path, int dfd, const char *dst, int move, int *moved_r)
{
	if (move) {
		if (renameat2(sfd, path, dfd, dst, RENAME_NOREPLACE) == 0) {
			*moved_r = 1;
			return 0;
		}
		if (errno != EINVAL && errno != ENOSYS)
			return errno == EEXIST ? 1 : -1;
	}
	if (linkat(sfd, path, dfd, dst, 0) == 0)
		return 0;
	return errno == EEXIST ? 1 : -1;
}

int store_blobs_open(struct ustore *u)
{
	struct buf p = BUF_INIT;
	buf_printf(&p, "%s/blobs", u->dir);
	int fd = open(p.ptr, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	buf_free(&p);
	return fd;
}

int store_blob_adopt(struct store *st, struct ustore *u, const char *path, const char *guid, int move,
		     int *moved_r, struct terr *err)
{
	int none = -1;
	return store_blob_adopt_at(st, u, &none, path, guid, move, moved_r, err);
}

int store_blob_adopt_at(struct store *st, struct ustore *u, int *blobs_fd, const char *path, const char *guid,
			int move, int *moved_r, struct terr *err)
{
	struct buf dst = BUF_INIT, tmp = BUF_INIT;
	store_blob_path(u, guid, &dst);
	*moved_r = 0;
	int rc = 0, fd = -1;
	/* by name in the staging directory and in blobs/ when they are open
	 * (no walk of either whole path per file) */
	const char *rel = dst.ptr + strlen(u->dir) + strlen("/blobs/");	/* "xx/<guid>" */
	const char *sname, *dname = rel;
	int sfd = stage_at(path, &sname);
	int dfd = *blobs_fd >= 0 ? *blobs_fd : AT_FDCWD;
	if (dfd == AT_FDCWD)
		dname = dst.ptr;
	/* the blobs/xx directory is made only when the link or rename says it
	 * is missing: no mkdir nor stat per file, and a new directory is made
	 * durable by the caller's syncfs with the file (store_blob_sync_all) */
	int r = place(sfd, sname, dfd, dname, move, moved_r);
	if (r < 0 && errno == ENOENT) {
		char *slash = strrchr(dst.ptr, '/');
		*slash = '\0';
		/* "xx" in blobs/ when it is open, else the whole path */
		int made = dfd != AT_FDCWD && mkdirat(dfd, rel, 0750) == 0;
		if (!made && blob_dir(dst.ptr, 0, err) < 0) {
			rc = -1;
			goto out;
		}
		*slash = '/';
		if (dfd == AT_FDCWD && (*blobs_fd = store_blobs_open(u)) >= 0) {
			dfd = *blobs_fd;
			dname = rel;
		}
		r = place(sfd, sname, dfd, dname, move, moved_r);
	}
	if (r == 1) {
		/* there already: kept, unless its size says it is not this body
		 * (a file a crash cut short before its syncfs: the commit that
		 * would have used it never happened); then the checked staged
		 * bytes replace it */
		struct stat have, want;
		if (stat(dst.ptr, &have) < 0 || stat(path, &want) < 0 || have.st_size == want.st_size)
			goto out;
		buf_printf(&tmp, "%s.%ld.%lu", dst.ptr, (long)blob_pid(), ++st->tmpcounter);
		if (link(path, tmp.ptr) < 0 || rename(tmp.ptr, dst.ptr) < 0) {
			rc = terr_errno(err, errno, "replace %s", dst.ptr);
			unlink(tmp.ptr);
		}
		goto out;
	}
	if (r == 0)
		goto out;
	if (errno != EXDEV && errno != EMLINK && errno != EPERM) {
		rc = terr_errno(err, errno, "link %s", dst.ptr);
		goto out;
	}
	/* another file system (or no hard links): a copy in pieces */
	buf_printf(&tmp, "%s/tmp/%ld.%lu.%s", u->dir, (long)blob_pid(), ++st->tmpcounter, guid);
	fd = open(tmp.ptr, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
	if (fd < 0) {
		rc = terr_errno(err, errno, "create %s", tmp.ptr);
		goto out;
	}
	rc = copy_file(path, tmp.ptr, fd, NULL, err);
	if (close(fd) < 0 && rc == 0)
		rc = terr_errno(err, errno, "close %s", tmp.ptr);
	if (rc == 0 && rename(tmp.ptr, dst.ptr) < 0)
		rc = terr_errno(err, errno, "rename %s", dst.ptr);
	if (rc < 0)
		unlink(tmp.ptr);
out:
	buf_free(&dst);
	buf_free(&tmp);
	return rc;
}
