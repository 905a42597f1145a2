/* syncc_rolling.c: the rolling schedule of a channel's (or shard's)
 * client: take the log, run it (src/sync/sync_client_log.c), drop it only
 * once the replica has it all; reconnect, careful mode after lost
 * sessions, retries of failed mailboxes, inotify wake-up, drain on stop;
 * and the channel's status (pending lines, failed mailboxes). */
#include "sync/sync_client.h"
#include "sync/sync_client-private.h"

#include "chlog/chlog.h"
#include "conf/conf.h"
#include "lib/fsutil.h"
#include "lib/log.h"
#include "names/mboxname.h"
#include "store/store.h"
#include "sync/sync.h"
#include "sync/sync_rightnow.h"

#include <dirent.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/inotify.h>
#include <time.h>
#include <unistd.h>

int syncc_channel_shards(const struct conf *conf, const char *channel)
{
	long long n = conf_chan_int(conf, channel, "sync_shards");
	return n < 1 ? 1 : n > CHLOG_MAX_SHARDS ? CHLOG_MAX_SHARDS : (int)n;
}

int syncc_shard_dir(const struct conf *conf, const char *channel, int shard)
{
	int n = syncc_channel_shards(conf, channel);
	if (n <= 1)
		return -1;
	return shard < 0 ? 0 : shard >= n ? n - 1 : shard;
}

/* A file of this client's directory: the channel's, or its shard's. */
void syncc_shard_path(const struct syncc *sc, const char *file, struct buf *out)
{
	chlog_shard_path(conf_str(sc->conf, "configdirectory"), sc->channel,
			 syncc_shard_dir(sc->conf, sc->channel, sc->o.shard), file, out);
}
/* Lines in a log directory's log and log-run (shard < 0: the channel's). */
static size_t pending_lines(const char *configdir, const char *channel, int shard)
{
	struct buf p = BUF_INIT, data = BUF_INIT;
	size_t lines = 0;
	for (int k = 0; k < 2; k++) {
		chlog_shard_path(configdir, channel, shard, k ? "log-run" : "log", &p);
		buf_reset(&data);
		struct terr e2;
		if (fs_read_file(p.ptr, (size_t)1 << 31, &data, &e2) == 0)
			for (size_t i = 0; i < data.len; i++)
				lines += data.ptr[i] == '\n';
	}
	buf_free(&p);
	buf_free(&data);
	return lines;
}

/* Log directories of the channel outside its current layout (left by a
 * change of its shard count) that exist: the unsharded one (its log or
 * log-run) when sharded, shards past the count. A directory that is
 * another channel's (a channel named "3" beside the default channel) is
 * not one. One read of the channel's directory tells which exist: the
 * rolling client asks before every pass, and probing each of
 * CHLOG_MAX_SHARDS directories for log-run and log was 32 system calls a
 * pass on a channel that has none. */
static int orphan_dirs(const struct conf *conf, const char *channel, int *dirs)
{
	int n = syncc_channel_shards(conf, channel), nd = 0;
	unsigned long present = 0;	/* bit k: directory k; bit CHLOG_MAX_SHARDS: the unsharded log */
	struct buf p = BUF_INIT;
	chlog_path(conf_str(conf, "configdirectory"), channel, "", &p);
	DIR *d = opendir(p.ptr);
	buf_free(&p);
	if (!d)
		return 0;	/* no directory: no log of any layout */
	for (struct dirent *de; (de = readdir(d)) != NULL;) {
		const char *s = de->d_name;
		if (!strcmp(s, "log") || !strcmp(s, "log-run")) {
			present |= 1UL << CHLOG_MAX_SHARDS;
			continue;
		}
		int k = 0, digits = 0;	/* "07" passes for 7: its probe then finds nothing */
		for (; *s >= '0' && *s <= '9' && digits < 3; s++, digits++)
			k = k * 10 + (*s - '0');
		if (digits && !*s && k < CHLOG_MAX_SHARDS)
			present |= 1UL << k;
	}
	closedir(d);
	const char *const *chans;
	size_t nc = conf_channels(conf, &chans);
	if (n > 1 && (present & (1UL << CHLOG_MAX_SHARDS)))
		dirs[nd++] = -1;
	for (int k = n > 1 ? n : 0; k < CHLOG_MAX_SHARDS; k++) {
		if (!(present & (1UL << k)))
			continue;
		char name[16];
		snprintf(name, sizeof name, "%d", k);
		int taken = 0;
		for (size_t i = 0; !*channel && i < nc && !taken; i++)
			taken = !strcmp(chans[i], name);
		if (!taken)
			dirs[nd++] = k;
	}
	return nd;
}

/* One shard's (or the channel's, shard < 0) pending lines and failed
 * mailboxes; *lines_r gets the count. */
static int status_one(const struct conf *conf, const char *channel, int shard, struct buf *out, size_t *lines_r,
		      struct terr *err)
{
	struct syncc sc = { 0 };
	sc.conf = conf;
	sc.o.shard = shard;
	snprintf(sc.channel, sizeof sc.channel, "%s", channel ? channel : "");
	const char *qc = *sc.channel ? sc.channel : "\"\"";
	char sh[32] = "";
	if (shard >= 0)
		snprintf(sh, sizeof sh, " shard=%d", shard);
	*lines_r = pending_lines(conf_str(conf, "configdirectory"), sc.channel, shard);
	if (shard >= 0)
		buf_printf(out, "channel=%s%s pending_lines=%zu\n", qc, sh, *lines_r);
	struct failed *v;
	size_t n;
	int rc = syncc_failed_load(&sc, &v, &n, err);
	for (size_t i = 0; rc == 0 && i < n; i++)
		buf_printf(out, "channel=%s%s mailbox=%s state=failed attempts=%d next_retry=%lld error=\"%s\"\n", qc, sh,
			   v[i].name, v[i].attempts, v[i].next_retry, v[i].error);
	if (rc == 0)
		syncc_failed_free(v, n);
	return rc;
}

int syncc_status(const struct conf *conf, const char *channel, struct buf *out, struct terr *err)
{
	const char *chan = channel ? channel : "";
	const char *qc = *chan ? chan : "\"\"";
	const char *configdir = conf_str(conf, "configdirectory");
	int nshards = syncc_channel_shards(conf, chan);
	int dirs[CHLOG_MAX_SHARDS + 1];
	int nd = orphan_dirs(conf, chan, dirs);
	size_t orphans = 0;
	for (int i = 0; i < nd; i++)
		orphans += pending_lines(configdir, chan, dirs[i]);
	struct buf body = BUF_INIT;
	size_t total = 0, lines;
	int rc = 0;
	for (int k = 0; k < nshards; k++) {
		int dir = nshards > 1 ? k : -1;
		if (status_one(conf, chan, dir, &body, &lines, err) < 0)
			rc = -1;
		total += lines;
	}
	/* the total first: parsers that read one pending_lines= see it */
	buf_printf(out, "channel=%s pending_lines=%zu", qc, total + orphans);
	if (nshards > 1)
		buf_printf(out, " shards=%d", nshards);
	if (orphans)
		buf_printf(out, " old_layout_lines=%zu", orphans);
	buf_putc(out, '\n');
	buf_append(out, body.ptr, body.len);
	buf_free(&body);
	/* synchronous replication: how the waits for the replica ended */
	if (sync_rightnow_is(conf, chan)) {
		buf_printf(out, "channel=%s rightnow=on ", qc);
		sync_rightnow_stats(configdir, chan, out);
		buf_putc(out, '\n');
	}
	syncc_splitbrain_status(conf, chan, out);
	return rc;
}


/* Shard 0's client (the only one of an unsharded channel) also replays
 * what is left in log directories of another layout after a change of
 * the shard count (orphan_dirs), each as one pass. */
static int drain_old_layout(struct syncc *sc, struct terr *err)
{
	if (syncc_shard_dir(sc->conf, sc->channel, sc->o.shard) > 0)
		return 0;
	const char *configdir = conf_str(sc->conf, "configdirectory");
	int dirs[CHLOG_MAX_SHARDS + 1];
	int nd = orphan_dirs(sc->conf, sc->channel, dirs);
	struct buf run = BUF_INIT;
	int rc = 0;
	for (int i = 0; i < nd && rc == 0; i++) {
		struct terr e2 = { 0 };
		int t = chlog_take_shard(configdir, sc->channel, dirs[i], &e2);
		if (t <= 0) {
			if (t < 0)
				log_warn("event=sync_old_layout_fail channel=%s dir=%d error=\"%s\"", sc->channel, dirs[i],
					 e2.msg);
			continue;
		}
		chlog_shard_path(configdir, sc->channel, dirs[i], "log-run", &run);
		log_notice("event=sync_old_layout channel=%s file=%s", sc->channel, run.ptr);
		if (syncc_logfile(sc, run.ptr, err) < 0) {
			struct terr e3 = { 0 };
			syncc_failed_merge(sc, 1, &e3);
			rc = -1;
		} else if (syncc_failed_merge(sc, 1, err) < 0 || chlog_done_shard(configdir, sc->channel, dirs[i], err) < 0) {
			rc = -1;
		}
	}
	buf_free(&run);
	return rc;
}

/* Reads the pending inotify events: 1 when one names the log (or the
 * watch overflowed); the rightnow socket's and counters' files do not
 * wake the client. */
static int log_touched(int ino)
{
	char evbuf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	int touched = 0;
	ssize_t r;
	while ((r = read(ino, evbuf, sizeof evbuf)) > 0) {
		for (char *p = evbuf; p < evbuf + r;) {
			const struct inotify_event *ev = (const struct inotify_event *)p;
			if ((ev->mask & IN_Q_OVERFLOW) || !ev->len || !strcmp(ev->name, "log") ||
			    !strcmp(ev->name, "log-run"))
				touched = 1;
			p += sizeof *ev + ev->len;
		}
	}
	return touched;
}

int syncc_rolling(struct syncc *sc, int one_pass, struct terr *err)
{
	const char *configdir = conf_str(sc->conf, "configdirectory");
	int shard = syncc_shard_dir(sc->conf, sc->channel, sc->o.shard);
	char sl[24] = "";	/* " shard=K" in the logs of a sharded channel */
	if (shard >= 0)
		snprintf(sl, sizeof sl, " shard=%d", shard);
	const char *shutdown = sc->o.shutdown_file ? sc->o.shutdown_file :
			       conf_chan_str(sc->conf, sc->channel, "sync_shutdown_file");
	time_t session_start = 0;
	long long interval = sc->o.delay_set ? sc->o.delay_ms :
			     conf_chan_duration_ms(sc->conf, sc->channel, "sync_repeat_interval");
	struct buf run = BUF_INIT, dir = BUF_INIT;
	syncc_shard_path(sc, "log-run", &run);
	syncc_shard_path(sc, "", &dir);
	/* Wake up as soon as a writer touches the log (inotify); the
	 * repeat interval is only the fallback poll. */
	int ino = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	struct terr e0;
	if (ino >= 0 && (fs_mkdir_p(dir.ptr, 0750, &e0) < 0 ||
			 inotify_add_watch(ino, dir.ptr, IN_MODIFY | IN_CREATE | IN_MOVED_TO | IN_CLOSE_WRITE) < 0)) {
		close(ino);
		ino = -1;
	}
	int rc = 0;
	int draining = 0;
	int io_fails = 0;	/* passes in a row lost with the connection */
	/* the client of sync_rightnow_channel answers the sessions waiting
	 * for their commit to reach the replica (syncc_rightnow.c) */
	if (!one_pass)
		(void)syncc_rn_open(sc);
	syncc_pub_open(sc);
	time_t swept = 0;	/* chlog_sweep_stale: at start, then every CHLOG_SWEEP_EVERY_S */
	for (;;) {
		if (time(NULL) - swept >= CHLOG_SWEEP_EVERY_S) {
			swept = time(NULL);
			(void)chlog_sweep_stale(configdir, sc->channel, shard);
		}
		if (sc->o.stop && *sc->o.stop && !draining) {
			log_notice("event=sync_drain channel=%s%s", sc->channel, sl);
			syncc_pub_state(sc, "draining", 0, NULL);
			draining = 1;
			one_pass = 1;	/* send what is logged, then stop */
		}
		if (shutdown && *shutdown && access(shutdown, F_OK) == 0) {
			unlink(shutdown);
			log_notice("event=sync_shutdown channel=%s reason=shutdown_file", sc->channel);
			break;
		}
		if (sc->t && sc->o.session_restart_s > 0 && time(NULL) - session_start >= sc->o.session_restart_s) {
			log_info("event=sync_session_restart channel=%s%s after_s=%lld", sc->channel, sl,
				 (long long)(time(NULL) - session_start));
			syncc_disconnect(sc);
		}
		if (!sc->t) {
			if (syncc_connect(sc, err) < 0) {
				rc = -1;
				break;
			}
			session_start = time(NULL);
		}
		struct terr eo = { 0 };
		if (drain_old_layout(sc, &eo) < 0) {
			log_warn("event=sync_pass_fail channel=%s%s error=\"%s\"", sc->channel, sl, eo.msg);
			*err = eo;
			syncc_disconnect(sc);
			if (one_pass) {
				rc = -1;
				break;
			}
			usleep(1000000);
			continue;
		}
		syncc_rn_service(sc);
		/* a client that comes back at once makes the next log itself */
		int t = one_pass ? chlog_take_shard(configdir, sc->channel, shard, err)
				 : chlog_take_shard_next(configdir, sc->channel, shard, err);
		if (t < 0) {
			rc = -1;
			break;
		}
		if (t == 1) {
			syncc_rn_pass_begin(sc);
			struct timespec t0, t1;
			unsigned long c0 = sc->stats.commands, r0 = sc->stats.roundtrips, b0 = sc->stats.bytes_sent;
			clock_gettime(CLOCK_MONOTONIC, &t0);
			struct terr e2 = { 0 };
			sc->current[0] = '\0';
			if (syncc_logfile(sc, run.ptr, &e2) == 0) {
				io_fails = 0;
				if (sc->careful)
					log_notice("event=sync_careful_end channel=%s%s", sc->channel, sl);
				sc->careful = 0;
				size_t nfailed = sc->nfailed;
				/* mailboxes that failed are recorded before the log
				 * goes; those replicated leave the list */
				if (syncc_failed_merge(sc, 1, err) < 0 ||
				    chlog_done_shard(configdir, sc->channel, shard, err) < 0) {
					syncc_rn_pass_end(sc, err->msg, 0);
					rc = -1;
					break;
				}
				syncc_rn_pass_end(sc, NULL, nfailed);
				clock_gettime(CLOCK_MONOTONIC, &t1);
				syncc_pub_pass(sc, 1, (unsigned long long)((t1.tv_sec - t0.tv_sec) * 1000000000LL +
									  (t1.tv_nsec - t0.tv_nsec)), NULL);
				log_info("event=sync_pass channel=%s%s ms=%ld commands=%lu roundtrips=%lu bytes=%lu",
					 sc->channel, sl,
					 (long)((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000),
					 sc->stats.commands - c0, sc->stats.roundtrips - r0, sc->stats.bytes_sent - b0);
			} else {
				/* log-run stays: it is replayed after a reconnect;
				 * what this pass did is kept */
				log_warn("event=sync_pass_fail channel=%s%s error=\"%s\"", sc->channel, sl, e2.msg);
				syncc_rn_pass_end(sc, e2.msg, 0);
				clock_gettime(CLOCK_MONOTONIC, &t1);
				syncc_pub_pass(sc, 0, (unsigned long long)((t1.tv_sec - t0.tv_sec) * 1000000000LL +
									  (t1.tv_nsec - t0.tv_nsec)), e2.msg);
				if (e2.code == TE_IO) {
					if (sc->careful)
						syncc_charge_lost_session(sc, &e2);
					if (++io_fails >= SYNCC_CAREFUL_AFTER && !sc->careful) {
						log_notice("event=sync_careful channel=%s%s passes_lost=%d", sc->channel, sl,
							   io_fails);
						sc->careful = 1;
					}
				}
				struct terr e3 = { 0 };
				if (syncc_failed_merge(sc, 1, &e3) < 0)
					log_warn("event=sync_state_fail channel=%s error=\"%s\"", sc->channel, e3.msg);
				*err = e2;
				syncc_disconnect(sc);
				if (one_pass) {
					rc = -1;
					break;
				}
				syncc_rn_sleep(sc, 1000, e2.msg);
				continue;
			}
			if (one_pass)
				break;
			continue;	/* more may have been logged meanwhile */
		}
		if (syncc_failed_retry(sc, err) < 0 && err->code == TE_IO) {
			syncc_disconnect(sc);
			continue;
		}
		syncc_pub_idle(sc);
		if (one_pass)
			break;
		long long waited = 0, step = interval > 0 && interval < 100 ? interval : 100;
		if (interval <= 0)
			interval = 100;
		do {
			/* inotify, the rightnow socket and its waiters together */
			struct pollfd pf[RIGHTNOW_MAX_WAITERS + 2];
			size_t npf = 0;
			if (ino >= 0)
				pf[npf++] = (struct pollfd){ ino, POLLIN, 0 };
			size_t nrn = syncc_rn_pollfds(sc, pf + npf, RIGHTNOW_MAX_WAITERS + 1);
			npf += nrn;
			if (npf) {
				if (poll(pf, npf, (int)step) > 0) {
					if (ino >= 0 && (pf[0].revents & POLLIN) && log_touched(ino))
						break;	/* something was logged: go */
					if (nrn && syncc_rn_service(sc))
						break;	/* a session waits for a pass */
				}
			} else {
				usleep((useconds_t)(step * 1000));
			}
			waited += step;
			syncc_pub_idle(sc);	/* counters of the last second's passes */
		} while (waited < interval && !(sc->o.stop && *sc->o.stop));
	}
	syncc_rn_close(sc);
	syncc_pub_close(sc);
	if (ino >= 0)
		close(ino);
	buf_free(&run);
	buf_free(&dir);
	return rc;
}
