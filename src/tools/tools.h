/* tools.h: shared pieces of the `tandem` admin command.
 *
 * Each subcommand is one entry of the table in tandem.c: name, handler,
 * one-line summary, usage text, and whether it needs an open instance
 * (config, change log and store). Handlers return the exit status:
 * 0 done, 1 the operation failed, 2 bad usage or configuration.
 */
#ifndef TANDEM_TOOLS_H
#define TANDEM_TOOLS_H

#include "lib/buf.h"
#include "lib/err.h"
#include "names/mboxname.h"

struct conf;
struct chlog;
struct store;

struct tool {
	struct conf *conf;	/* NULL for commands that need no instance */
	struct chlog *chlog;	/* NULL when sync_log is off */
	struct store *st;
	struct mboxname_ns ns;
	const char *conf_path;
};

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };
/* -C's default when $TANDEM_CONF is not set. */
#define TOOL_DEFAULT_CONF "/etc/tandem.conf"

/* Prints "tandem: <msg>" to stderr; returns EXIT_FAIL (or code for usage). */
int tool_fail(const struct terr *err);
int tool_usage(const char *usage);
/* Internal name of an admin-namespace mailbox argument, or EXIT_USAGE. */
int tool_mailbox_arg(struct tool *t, const char *arg, struct buf *internal_r);
/* Reads all of standard input, up to max bytes (TE_TOOBIG above). */
int tool_read_stdin(size_t max, struct buf *out, struct terr *err);
/* Reads one line from standard input (the password of user add/passwd),
 * without its line end. */
int tool_read_password(struct buf *out, struct terr *err);
/* 1 (after printing usage to stdout) when argv holds --help or -h. */
int tool_help(int argc, char **argv, const char *usage);

int cmd_init(struct tool *t, int argc, char **argv);
int cmd_user(struct tool *t, int argc, char **argv);
int cmd_mailbox(struct tool *t, int argc, char **argv);
int cmd_deliver(struct tool *t, int argc, char **argv);
int cmd_message(struct tool *t, int argc, char **argv);
int cmd_dump(struct tool *t, int argc, char **argv);
int cmd_sync(struct tool *t, int argc, char **argv);
int cmd_compare(struct tool *t, int argc, char **argv);
int cmd_repair(struct tool *t, int argc, char **argv);
int cmd_status(struct tool *t, int argc, char **argv);
int cmd_failover(struct tool *t, int argc, char **argv);
int cmd_synclog(struct tool *t, int argc, char **argv);
/* A byte count for people: "512 B", "1.5 MB" (units of 1024), for the
 * progress lines of sync -A and move-user (sync_progress.c). */
void tools_human_bytes(unsigned long long b, char *out, size_t len);
/* tandem sync -A with progress on standard error (sync_progress.c):
 * users done/total, messages, bytes, ETA; tty: one line redrawn, else
 * key=value lines. Returns as syncc_all. */
struct syncc;
int sync_all_progress(struct tool *t, struct syncc *sc, int tty, struct terr *err);
/* tandem synclog --follow (cmd_synclog_follow.c): shard K of a sharded
 * channel; once: stop when the log is empty. */
int synclog_follow(struct tool *t, const char *channel, int shard, int once);
int cmd_check(struct tool *t, int argc, char **argv);
int cmd_config(struct tool *t, int argc, char **argv);
int cmd_move_user(struct tool *t, int argc, char **argv);

#endif
