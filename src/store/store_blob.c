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
#include "lib/xalloc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

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

int store_blob_sync_all(struct ustore *u, struct terr *err)
{
	int fd = open(u->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return terr_errno(err, errno, "open %s", u->dir);
	uint64_t t0 = fs_now_ns();
	int rc = syncfs(fd);
	(void)t0;
	int e = errno;
	close(fd);
	if (rc < 0)
		return terr_errno(err, e, "syncfs %s", u->dir);
	return 0;
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
	buf_printf(&tmp, "%s/tmp/%ld.%lu.%s", u->dir, (long)getpid(), ++st->tmpcounter, guid);
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
