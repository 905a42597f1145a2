/* fsutil.c: see fsutil.h. */
#include "lib/fsutil.h"
#include "lib/xalloc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static struct fs_stats stats;
static void (*fsync_observer)(uint64_t ns);

void fs_set_fsync_observer(void (*fn)(uint64_t ns))
{
	fsync_observer = fn;
}

uint64_t fs_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void fs_stats_get(struct fs_stats *out)
{
	*out = stats;
}

int fs_write_all(int fd, const void *data, size_t len, const char *what, struct terr *err)
{
	const char *p = data;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return terr_errno(err, errno, "write %s", what);
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

void fs_fsync_account(uint64_t ns)
{
	stats.fsyncs++;
	stats.fsync_ns += ns;
	if (fsync_observer)
		fsync_observer(ns);
}

int fs_fsync(int fd, const char *what, struct terr *err)
{
	uint64_t t0 = fs_now_ns();
	int rc = fsync(fd);
	fs_fsync_account(fs_now_ns() - t0);
	if (rc < 0)
		return terr_errno(err, errno, "fsync %s", what);
	return 0;
}

int fs_fsync_dir(const char *dir, struct terr *err)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return terr_errno(err, errno, "open directory %s", dir);
	int rc = fs_fsync(fd, dir, err);
	close(fd);
	return rc;
}

int fs_fsync_parent(const char *path, struct terr *err)
{
	char dir[4096];
	snprintf(dir, sizeof dir, "%s", path);
	char *slash = strrchr(dir, '/');
	if (!slash)
		return fs_fsync_dir(".", err);
	if (slash == dir)
		slash[1] = '\0';
	else
		*slash = '\0';
	return fs_fsync_dir(dir, err);
}

int fs_mkdir_p(const char *path, mode_t mode, struct terr *err)
{
	char tmp[4096];
	size_t n = strlen(path);
	if (n == 0 || n >= sizeof tmp)
		return terr_set(err, TE_INVALID, "bad directory path '%s'", path);
	memcpy(tmp, path, n + 1);
	for (size_t i = 1; i <= n; i++) {
		if (tmp[i] != '/' && tmp[i] != '\0')
			continue;
		char save = tmp[i];
		tmp[i] = '\0';
		if (mkdir(tmp, mode) == 0) {
			if (fs_fsync_parent(tmp, err) < 0)
				return -1;
		} else if (errno != EEXIST) {
			return terr_errno(err, errno, "mkdir %s", tmp);
		} else {
			struct stat st;
			if (stat(tmp, &st) == 0 && !S_ISDIR(st.st_mode))
				return terr_set(err, TE_IO, "%s exists and is not a directory", tmp);
		}
		tmp[i] = save;
	}
	return 0;
}

int fs_read_file(const char *path, size_t max, struct buf *out, struct terr *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			return terr_set(err, TE_NOTFOUND, "%s: no such file", path);
		return terr_errno(err, errno, "open %s", path);
	}
	struct stat st;
	if (fstat(fd, &st) < 0) {
		int e = errno;
		close(fd);
		return terr_errno(err, e, "stat %s", path);
	}
	if (S_ISDIR(st.st_mode)) {
		close(fd);
		return terr_set(err, TE_INVALID, "%s is a directory", path);
	}
	if ((size_t)st.st_size > max) {
		close(fd);
		return terr_set(err, TE_TOOBIG, "%s is %lld bytes, over the limit of %zu", path,
				(long long)st.st_size, max);
	}
	size_t start = out->len;
	for (;;) {
		buf_reserve(out, 65536);
		ssize_t n = read(fd, out->ptr + out->len, 65536);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			int e = errno;
			close(fd);
			return terr_errno(err, e, "read %s", path);
		}
		if (n == 0)
			break;
		out->len += (size_t)n;
		out->ptr[out->len] = '\0';
		if (out->len - start > max) {
			close(fd);
			return terr_set(err, TE_TOOBIG, "%s grew over the limit of %zu bytes", path, max);
		}
	}
	close(fd);
	return 0;
}

int fs_write_atomic(const char *path, const void *data, size_t len, mode_t mode,
		    struct terr *err)
{
	char tmp[4200];
	snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd < 0)
		return terr_errno(err, errno, "create %s", tmp);
	if (fs_write_all(fd, data, len, tmp, err) < 0 || fs_fsync(fd, tmp, err) < 0) {
		close(fd);
		unlink(tmp);
		return -1;
	}
	if (close(fd) < 0) {
		int e = errno;
		unlink(tmp);
		return terr_errno(err, e, "close %s", tmp);
	}
	if (rename(tmp, path) < 0) {
		int e = errno;
		unlink(tmp);
		return terr_errno(err, e, "rename %s", path);
	}
	return fs_fsync_parent(path, err);
}

int fs_remove_tree(const char *path, struct terr *err)
{
	struct stat st;
	if (lstat(path, &st) < 0) {
		if (errno == ENOENT)
			return 0;
		return terr_errno(err, errno, "stat %s", path);
	}
	if (S_ISDIR(st.st_mode)) {
		DIR *d = opendir(path);
		if (!d)
			return terr_errno(err, errno, "opendir %s", path);
		struct dirent *de;
		while ((de = readdir(d)) != NULL) {
			if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
				continue;
			char sub[4096];
			if ((size_t)snprintf(sub, sizeof sub, "%s/%s", path, de->d_name) >= sizeof sub) {
				closedir(d);
				return terr_set(err, TE_INVALID, "path too long under %s", path);
			}
			if (fs_remove_tree(sub, err) < 0) {
				closedir(d);
				return -1;
			}
		}
		closedir(d);
		if (rmdir(path) < 0)
			return terr_errno(err, errno, "rmdir %s", path);
	} else if (unlink(path) < 0) {
		return terr_errno(err, errno, "unlink %s", path);
	}
	return 0;
}
