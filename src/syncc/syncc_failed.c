/* syncc_failed.c: the failed-mailbox list of a channel (or shard),
 * <configdir>/sync/<channel>/failed: the current work's results, load,
 * save, lock, merge with its backoff, retry of what is due. */
#include "sync/sync_client.h"
#include "sync/sync_client-private.h"

#include "conf/conf.h"
#include "lib/fsutil.h"
#include "lib/log.h"
#include "lib/xalloc.h"

#include <errno.h>
#include <stdio.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

static void failed_path(const struct syncc *sc, struct buf *out)
{
	syncc_shard_path(sc, "failed", out);
}

void syncc_failed_free(struct failed *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(v[i].name);
		free(v[i].error);
	}
	free(v);
}

/* Lines "name TAB attempts TAB next_retry TAB wait TAB error" (files of
 * older versions have no wait field: it is taken from attempts). */
int syncc_failed_load(const struct syncc *sc, struct failed **v_r, size_t *n_r, struct terr *err)
{
	struct buf path = BUF_INIT, data = BUF_INIT;
	failed_path(sc, &path);
	*v_r = NULL;
	*n_r = 0;
	struct terr e2;
	int rc = fs_read_file(path.ptr, 16 << 20, &data, &e2);
	buf_free(&path);
	if (rc < 0) {
		buf_free(&data);
		return e2.code == TE_NOTFOUND ? 0 : (err ? (*err = e2, -1) : -1);
	}
	for (char *line = data.ptr; line && *line;) {
		char *nl = strchr(line, '\n');
		if (nl)
			*nl = '\0';
		char *f[5] = { line, NULL, NULL, NULL, NULL };
		for (int k = 1; k < 5 && f[k - 1]; k++) {
			char *tab = strchr(f[k - 1], '\t');
			if (tab) {
				*tab = '\0';
				f[k] = tab + 1;
			}
		}
		if (f[3]) {
			int attempts = atoi(f[1]);
			long long wait = f[4] ? atoll(f[3]) : 1LL << (attempts > 0 && attempts < 20 ? attempts : 1);
			*v_r = xrealloc(*v_r, (*n_r + 1) * sizeof **v_r);
			(*v_r)[(*n_r)++] = (struct failed){ xstrdup(f[0]), xstrdup(f[4] ? f[4] : f[3]), attempts, atoll(f[2]),
							    wait };
		}
		line = nl ? nl + 1 : NULL;
	}
	buf_free(&data);
	return 0;
}

static int failed_save(const struct syncc *sc, const struct failed *v, size_t n, struct terr *err)
{
	struct buf path = BUF_INIT, data = BUF_INIT;
	failed_path(sc, &path);
	for (size_t i = 0; i < n; i++) {
		buf_printf(&data, "%s\t%d\t%lld\t%lld\t", v[i].name, v[i].attempts, v[i].next_retry, v[i].wait);
		for (const char *e = v[i].error; *e; e++)
			buf_putc(&data, *e == '\t' || *e == '\n' || *e == '\r' ? ' ' : *e);
		buf_putc(&data, '\n');
	}
	int rc;
	if (n == 0) {
		rc = unlink(path.ptr) == 0 || errno == ENOENT ? 0 : terr_errno(err, errno, "unlink %s", path.ptr);
	} else {
		char *slash = strrchr(path.ptr, '/');
		*slash = '\0';
		rc = fs_mkdir_p(path.ptr, 0750, err);
		*slash = '/';
		if (rc == 0)
			rc = fs_write_atomic(path.ptr, data.ptr, data.len, 0640, err);
	}
	buf_free(&path);
	buf_free(&data);
	return rc;
}

/* The state file is read, changed and written under an exclusive lock on
 * "failed.lock": the rolling client and a hand-run `tandem sync` may both
 * update it. -1 when the lock cannot be had (the update goes on unlocked). */
static int failed_lock(const struct syncc *sc)
{
	struct buf path = BUF_INIT;
	failed_path(sc, &path);
	buf_appends(&path, ".lock");
	char *slash = strrchr(path.ptr, '/');
	struct terr e;
	*slash = '\0';
	int ok = fs_mkdir_p(path.ptr, 0750, &e) == 0;
	*slash = '/';
	int fd = ok ? open(path.ptr, O_RDWR | O_CREAT | O_CLOEXEC, 0640) : -1;
	buf_free(&path);
	if (fd >= 0 && flock(fd, LOCK_EX) < 0) {
		close(fd);
		fd = -1;
	}
	return fd;
}

static void failed_unlock(int fd)
{
	if (fd >= 0)
		close(fd);
}

static int is_failed_now(const struct syncc *sc, const char *name)
{
	for (size_t f = 0; f < sc->nfailed; f++)
		if (!strcmp(sc->failed[f].name, name))
			return 1;
	return 0;
}

/* Marks name as replicated (or found equal) by the current work. */
void syncc_note_synced(struct syncc *sc, const char *name)
{
	sc->synced = xrealloc(sc->synced, (sc->nsynced + 1) * sizeof *sc->synced);
	sc->synced[sc->nsynced++] = xstrdup(name);
}

/* Records a mailbox that failed (isolated: the rest goes on). */
void syncc_note_failed(struct syncc *sc, const char *name, const char *error)
{
	for (size_t f = 0; f < sc->nfailed; f++)
		if (!strcmp(sc->failed[f].name, name)) {
			free(sc->failed[f].error);
			sc->failed[f].error = xstrdup(error);
			return;
		}
	sc->failed = xrealloc(sc->failed, (sc->nfailed + 1) * sizeof *sc->failed);
	sc->failed[sc->nfailed++] = (struct failed){ xstrdup(name), xstrdup(error), 0, 0, 0 };
}

void syncc_work_clear(struct syncc *sc)
{
	syncc_failed_free(sc->failed, sc->nfailed);
	sc->failed = NULL;
	sc->nfailed = 0;
	for (size_t i = 0; i < sc->nsynced; i++)
		free(sc->synced[i]);
	free(sc->synced);
	sc->synced = NULL;
	sc->nsynced = 0;
}

/* The backoff step after a try of f that failed at now: the first
 * failure waits SYNCC_RETRY_MIN_S; a try made when the retry was due
 * doubles the step; an earlier try (a rolling pass touched the mailbox)
 * keeps it. Capped by sync_retry_maxwait. */
static long long failed_next_wait(const struct syncc *sc, const struct failed *f, int is_new, long long now)
{
	long long cap = conf_chan_duration_ms(sc->conf, sc->channel, "sync_retry_maxwait") / 1000;
	long long wait = f->wait > 0 ? f->wait : SYNCC_RETRY_MIN_S;
	if (cap < 1)
		cap = 1;
	if (!is_new && now >= f->next_retry)
		wait *= 2;
	if (wait < SYNCC_RETRY_MIN_S)
		wait = SYNCC_RETRY_MIN_S;
	return wait > cap ? cap : wait;
}

/* Merges the current work's results into the channel's state: mailboxes
 * replicated leave it; failures are added or updated (attempts + 1, the
 * next retry from now: see failed_next_wait). With record 0 (one-shot
 * runs) failures are only reported to the caller, never added: the list
 * and its backoff belong to the rolling client. Clears the work unless
 * keep. */
static int failed_merge_dir(struct syncc *sc, int record, int keep, struct terr *err)
{
	if (!sc->nfailed || !record) {
		/* nothing to add: nothing to do unless the list exists (the
		 * common case of a rolling pass: no lock, no read) */
		struct buf path = BUF_INIT;
		failed_path(sc, &path);
		int exists = access(path.ptr, F_OK) == 0;
		buf_free(&path);
		if (!exists) {
			if (!keep)
				syncc_work_clear(sc);
			return 0;
		}
	}
	int lock = failed_lock(sc);
	struct failed *v;
	size_t n;
	if (syncc_failed_load(sc, &v, &n, err) < 0) {
		failed_unlock(lock);
		if (!keep)
			syncc_work_clear(sc);
		return -1;
	}
	size_t n0 = n;
	int changed = 0;
	long long now = (long long)time(NULL);
	char q[LOGQ_MAX];
	for (size_t i = 0; i < n; i++) {
		int ok = 0;
		for (size_t k = 0; k < sc->nsynced && !ok; k++)
			ok = !strcmp(v[i].name, sc->synced[k]);
		if (!ok || is_failed_now(sc, v[i].name))
			continue;
		log_notice("event=sync_mailbox_recovered channel=%s mailbox=%s attempts=%d", sc->channel,
			   logq(q, v[i].name), v[i].attempts);
		free(v[i].name);
		free(v[i].error);
		v[i--] = v[--n];
		changed = 1;
	}
	for (size_t f = 0; record && f < sc->nfailed; f++) {
		size_t i = 0;
		while (i < n && strcmp(v[i].name, sc->failed[f].name))
			i++;
		int is_new = i == n;
		if (is_new) {
			v = xrealloc(v, (n + 1) * sizeof *v);
			v[n++] = (struct failed){ xstrdup(sc->failed[f].name), xstrdup(""), 0, 0, 0 };
		}
		free(v[i].error);
		v[i].error = xstrdup(sc->failed[f].error);
		v[i].attempts++;
		v[i].wait = failed_next_wait(sc, &v[i], is_new, now);
		v[i].next_retry = now + v[i].wait;
		changed = 1;
	}
	if (!keep)
		syncc_work_clear(sc);
	int rc = changed || n != n0 ? failed_save(sc, v, n, err) : 0;
	failed_unlock(lock);
	syncc_failed_free(v, n);
	return rc;
}

/* The state of this client's shard; one-shot work (record 0) on a
 * sharded channel takes what it replicated off every shard's list. */
int syncc_failed_merge(struct syncc *sc, int record, struct terr *err)
{
	int n = syncc_channel_shards(sc->conf, sc->channel);
	if (record || n <= 1)
		return failed_merge_dir(sc, record, 0, err);
	int saved = sc->o.shard, rc = 0;
	for (int k = 0; k < n; k++) {
		sc->o.shard = k;
		if (failed_merge_dir(sc, 0, 1, err) < 0)
			rc = -1;
	}
	sc->o.shard = saved;
	syncc_work_clear(sc);
	return rc;
}

/* Retries the failed mailboxes that are due. */
int syncc_failed_retry(struct syncc *sc, struct terr *err)
{
	struct failed *v;
	size_t n;
	if (syncc_failed_load(sc, &v, &n, err) < 0)
		return -1;
	long long now = (long long)time(NULL);
	char **due = NULL;
	size_t ndue = 0;
	for (size_t i = 0; i < n; i++)
		if (v[i].next_retry <= now) {
			due = xrealloc(due, (ndue + 1) * sizeof *due);
			due[ndue++] = v[i].name;
		}
	int rc = 0;
	if (ndue) {
		log_info("event=sync_retry channel=%s mailboxes=%zu", sc->channel, ndue);
		/* one at a time: a retry that kills the replica's session is
		 * charged to its mailbox (its next retry moves on) */
		int was = sc->careful;
		sc->careful = 1;
		rc = syncc_sync_batch(sc, due, ndue, 0, err);
		sc->careful = was;
		if (rc < 0 && err->code == TE_IO)
			syncc_charge_lost_session(sc, err);
		if (rc == 0 && sc->since_restart)
			syncc_simple(sc, "RESTART", err);
		struct terr e2 = { 0 };
		if (syncc_failed_merge(sc, 1, &e2) < 0 && rc == 0) {
			*err = e2;
			rc = -1;
		}
	}
	free(due);
	syncc_failed_free(v, n);
	return rc;
}

void syncc_charge_lost_session(struct syncc *sc, const struct terr *cause)
{
	if (!sc->current[0])
		return;
	char q[LOGQ_MAX];
	char error[600];
	snprintf(error, sizeof error, "IMAP_IOERROR %s: %.400s", SYNCC_LOST_SESSION, cause->msg);
	log_warn("event=sync_lost_session channel=%s mailbox=%s error=\"%s\"", sc->channel, logq(q, sc->current),
		 cause->msg);
	syncc_note_failed(sc, sc->current, error);
	struct terr e2 = { 0 };
	if (syncc_failed_merge(sc, 1, &e2) < 0)
		log_warn("event=sync_state_fail channel=%s error=\"%s\"", sc->channel, e2.msg);
	sc->current[0] = '\0';
}

void syncc_skip_quarantined(struct syncc *sc, char **names, size_t *n)
{
	struct failed *v;
	size_t nv;
	struct terr err = { 0 };
	if (syncc_failed_load(sc, &v, &nv, &err) < 0 || !nv)
		return;
	long long now = (long long)time(NULL);
	size_t k = 0;
	char q[LOGQ_MAX];
	for (size_t i = 0; i < *n; i++) {
		int skip = 0;
		for (size_t f = 0; f < nv && !skip; f++)
			skip = !strcmp(v[f].name, names[i]) && v[f].attempts >= SYNCC_QUARANTINE_TRIES &&
			       v[f].next_retry > now && v[f].error && strstr(v[f].error, SYNCC_LOST_SESSION);
		if (skip) {
			log_notice("event=sync_quarantined channel=%s mailbox=%s", sc->channel, logq(q, names[i]));
			free(names[i]);
		} else {
			names[k++] = names[i];
		}
	}
	*n = k;
	syncc_failed_free(v, nv);
}
