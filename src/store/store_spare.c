/* store_spare.c: new owners' directories made ahead (store-private.h).
 *
 * A replica's initial sync makes a new owner directory for every user it
 * brings, on the session's path: the meta.db's sync and the directory's
 * sync (store_owner_build) before the rename into place. A store with
 * spares enabled (store_spares_enable), once it has made a new owner,
 * has its process keep OWNER_SPARE_MAX whole, synced spares in the
 * partition's tmp/ (named like owner_make's builds, so a later build
 * removes those of a process that is gone), made one at a time by a
 * thread; owner_make then moves one into place with a rename and leaves
 * only the parent's sync on the path.
 *
 * The thread touches the file system and the process's meta.db template
 * only (no store, no SQLite connection: the template exists once a new
 * owner was made, and before it a build makes it under the template's
 * lock). It runs until store_spare_stop (when the store that enabled it
 * closes, and at exit: the spares not taken are removed); a build that
 * fails (disk full) stops it, and owner_make builds in place as before; a process killed leaves its spares to the
 * next build's sweep. A fork keeps the
 * parent's spares for the parent: the child starts with none and no
 * thread (pthread_atfork).
 */
#include "store/store-private.h"

#include "lib/fsutil.h"
#include "lib/log.h"
#include "lib/xalloc.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct {
	pthread_mutex_t lock;
	pthread_cond_t more;	/* a spare was taken: make the next */
	char *tmpdir;		/* the partition's tmp/ the spares are for */
	char *ready[OWNER_SPARE_MAX];
	size_t n;
	int started;		/* the thread was started (in this process) */
	int stop;		/* store_spare_stop: the thread ends */
	pthread_t thread;
	unsigned long seq, taken, built;
} pool = { .lock = PTHREAD_MUTEX_INITIALIZER, .more = PTHREAD_COND_INITIALIZER };

static void atfork_prepare(void)
{
	pthread_mutex_lock(&pool.lock);
}

static void atfork_parent(void)
{
	pthread_mutex_unlock(&pool.lock);
}

/* The child has no thread; the spares are its parent's. */
static void atfork_child(void)
{
	for (size_t i = 0; i < pool.n; i++)
		free(pool.ready[i]);
	pool.n = 0;
	free(pool.tmpdir);
	pool.tmpdir = NULL;
	pool.started = 0;
	pool.stop = 0;
	pool.taken = pool.built = 0;
	pthread_mutex_init(&pool.lock, NULL);
	pthread_cond_init(&pool.more, NULL);
}

static void *spare_main(void *arg)
{
	(void)arg;
	struct buf path = BUF_INIT;
	pthread_mutex_lock(&pool.lock);
	while (!pool.stop) {
		if (pool.n >= OWNER_SPARE_MAX) {
			pthread_cond_wait(&pool.more, &pool.lock);
			continue;
		}
		buf_reset(&path);
		buf_printf(&path, "%s/" OWNER_BUILD_PREFIX "%ld-s%lu", pool.tmpdir, (long)getpid(), ++pool.seq);
		pthread_mutex_unlock(&pool.lock);
		struct terr err = { 0 };
		int rc = store_owner_build(path.ptr, 1, &err);
		pthread_mutex_lock(&pool.lock);
		if (rc < 0) {
			log_warn("event=owner_spare_fail path=%s error=\"%s\"", path.ptr, err.msg);
			struct terr e = { 0 };
			(void)fs_remove_tree(path.ptr, &e);
			break;	/* owner_make builds in place from now on */
		}
		pool.built++;
		if (pool.n < OWNER_SPARE_MAX) {
			pool.ready[pool.n++] = buf_release(&path);
			continue;
		}
		/* full meanwhile (a spare that found its place taken came
		 * back): this one goes */
		pthread_mutex_unlock(&pool.lock);
		struct terr e = { 0 };
		(void)fs_remove_tree(path.ptr, &e);
		pthread_mutex_lock(&pool.lock);
	}
	pthread_mutex_unlock(&pool.lock);
	buf_free(&path);
	return NULL;
}

void store_spare_start(const char *tmpdir)
{
	pthread_mutex_lock(&pool.lock);
	int other = pool.started && strcmp(pool.tmpdir, tmpdir);
	pthread_mutex_unlock(&pool.lock);
	if (other)
		store_spare_stop();	/* another partition's: those go */
	pthread_mutex_lock(&pool.lock);
	if (pool.started) {
		pthread_mutex_unlock(&pool.lock);
		return;
	}
	static int atfork;
	if (!atfork && pthread_atfork(atfork_prepare, atfork_parent, atfork_child) != 0) {
		pthread_mutex_unlock(&pool.lock);
		return;
	}
	atfork = 1;
	free(pool.tmpdir);
	pool.tmpdir = xstrdup(tmpdir);
	/* signals stay with the process's own thread (SIGTERM, SIGCHLD) */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pool.stop = 0;
	pool.started = pthread_create(&pool.thread, NULL, spare_main, NULL) == 0;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	static int registered;
	int started = pool.started;
	if (started && !registered)
		registered = atexit(store_spare_stop) == 0;
	pthread_mutex_unlock(&pool.lock);
	if (started)
		log_debug("event=owner_spares_start dir=%s max=%d", tmpdir, OWNER_SPARE_MAX);
}

int store_spare_take(const char *tmpdir, const char *dir)
{
	pthread_mutex_lock(&pool.lock);
	if (!pool.n || !pool.tmpdir || strcmp(pool.tmpdir, tmpdir)) {
		pthread_mutex_unlock(&pool.lock);
		return 0;
	}
	char *spare = pool.ready[--pool.n];
	pthread_cond_signal(&pool.more);
	pthread_mutex_unlock(&pool.lock);
	int rc = 1;
	if (renameat2(AT_FDCWD, spare, AT_FDCWD, dir, RENAME_NOREPLACE) < 0) {
		if (errno == EEXIST || errno == ENOTEMPTY) {
			/* made by another process meanwhile: the spare stays */
			pthread_mutex_lock(&pool.lock);
			if (pool.n < OWNER_SPARE_MAX) {
				pool.ready[pool.n++] = spare;
				spare = NULL;
			}
			pthread_mutex_unlock(&pool.lock);
			rc = 2;
		} else {
			/* the spare (or the way to dir) is not what it should be:
			 * it goes, and the caller builds in place, which reports
			 * a real error with dir itself */
			log_warn("event=owner_spare_fail path=%s to=%s error=\"%s\"", spare, dir, strerror(errno));
			rc = 0;
		}
		if (spare) {
			struct terr e = { 0 };
			(void)fs_remove_tree(spare, &e);
		}
	} else {
		pthread_mutex_lock(&pool.lock);
		pool.taken++;
		pthread_mutex_unlock(&pool.lock);
	}
	free(spare);
	return rc;
}

void store_spare_stop(void)
{
	pthread_mutex_lock(&pool.lock);
	if (!pool.started) {
		pthread_mutex_unlock(&pool.lock);
		return;
	}
	pool.stop = 1;
	pthread_cond_signal(&pool.more);
	pthread_mutex_unlock(&pool.lock);
	pthread_join(pool.thread, NULL);
	pthread_mutex_lock(&pool.lock);
	for (size_t i = 0; i < pool.n; i++) {
		struct terr e = { 0 };
		(void)fs_remove_tree(pool.ready[i], &e);
		free(pool.ready[i]);
	}
	pool.n = 0;
	pool.started = 0;
	pool.stop = 0;
	pthread_mutex_unlock(&pool.lock);
}

void store_spare_counts(unsigned long *taken_r, unsigned long *built_r)
{
	pthread_mutex_lock(&pool.lock);
	*taken_r = pool.taken;
	*built_r = pool.built;
	pthread_mutex_unlock(&pool.lock);
}
