/* sync_rightnow.h: synchronous replication (sync_rightnow_channel).
 *
 * The channel's rolling client (src/syncc/syncc_rolling.c) listens on a
 * Unix socket in its log directory, <configdir>/sync/<channel>/
 * rightnow.sock (sync/<channel>/<k>/rightnow.sock for shard k). After a
 * store COMMIT that wrote change-log lines, the session's after-commit
 * hook (sync_rightnow_after_commit, installed by src/server/
 * server_store.c) connects and sends one line
 *     WAIT <dev> <ino> <offset>\n
 * naming the position just past its line in the channel's log file
 * (struct chlog_pos). The client answers one line:
 *     OK\n             a pass that covered the position completed
 *     NO <reason>\n    the pass failed (or the replica is unreachable)
 * and closes. The session waits at most sync_rightnow_timeout; whatever
 * happens, its change stays in the log for the rolling client, and the
 * operation's acknowledgement goes out (a client operation never fails
 * because the replica is down). A timeout or refusal is logged once
 * (event=rightnow_timeout / event=rightnow_refused with channel, user and
 * mailbox) and counted in <channel dir>/rightnow.stats (tandem status).
 */
#ifndef TANDEM_SYNC_RIGHTNOW_H
#define TANDEM_SYNC_RIGHTNOW_H

#include <stddef.h>

#include "lib/buf.h"
#include "lib/err.h"

struct conf;
struct store_commit;

struct sync_rightnow_wait {
	unsigned long long dev, ino, offset;
};

/* Parses a WAIT line at the start of in[0, len): 1 with *w and *used_r
 * (the line's bytes, '\n' included), 0 when more bytes are needed, -1
 * when it is not one (bad verb, not three decimal numbers separated by
 * single spaces, a leading zero, a number over 2^64-1, a line over
 * RIGHTNOW_MAX_LINE). */
int sync_rightnow_parse_wait(const char *in, size_t len, struct sync_rightnow_wait *w, size_t *used_r);

/* The socket of a channel's (shard < 0) or shard's rolling client. */
void sync_rightnow_sock_path(const char *configdir, const char *channel, int shard, struct buf *out);

/* The channel of sync_rightnow_channel in *channel_r ("" for the value
 * "\"\"": the default channel, as in sync_log_channels): 1, or 0 when the
 * option is unset. */
int sync_rightnow_channel(const struct conf *conf, const char **channel_r);
/* 1 when channel ("" = default) is the rightnow channel. */
int sync_rightnow_is(const struct conf *conf, const char *channel);

/* The session side: the hook's rock (NULL when sync_rightnow_channel is
 * unset or sync_rightnow_timeout is 0). */
struct sync_rightnow *sync_rightnow_new(const struct conf *conf);
void sync_rightnow_free(struct sync_rightnow **rn);
/* A store_commit_fn: waits for the replica as described above. */
void sync_rightnow_after_commit(void *rock, const struct store_commit *c);

/* Counters in <channel dir>/rightnow.stats (flock'd read-modify-write).
 * kind: 0 ok, 1 timeout, 2 refused; cause is kept as the last one for
 * 1 and 2. */
enum { RIGHTNOW_OK, RIGHTNOW_TIMEOUT, RIGHTNOW_REFUSED };
int sync_rightnow_count(const char *configdir, const char *channel, int kind, const char *cause,
			struct terr *err);
/* Appends "ok=N timeouts=N refused=N last_cause=\"...\"" (zeros when the
 * file is missing). */
void sync_rightnow_stats(const char *configdir, const char *channel, struct buf *out);

#endif
