/* conf.h: tandem's configuration, in Cyrus imapd.conf syntax.
 *
 * "key: value" lines, '#' comments, blank lines. Keys and their types,
 * defaults and documentation are one table (conf_options.c); unknown
 * keys (but those of a Cyrus imapd.conf: conf_ignored), bad values,
 * duplicates and bad lines are errors naming the file and line. Channel options may be prefixed "<channel>_" (repl1_sync_host)
 * when the channel is listed in sync_log_channels; a lookup falls back
 * from the prefixed key to the plain key to the default.
 *
 * Return convention: 0 / -1 with *err (code TE_CONFIG, message
 * "file:line: ..."). Getters for a name missing from the table are bugs
 * and call fatal().
 */
#ifndef TANDEM_CONF_H
#define TANDEM_CONF_H

#include <stddef.h>

#include "lib/buf.h"
#include "lib/err.h"

struct conf;
struct conf_parser;

/* Push parser: feed bytes in any chunks, then finish (no I/O). */
struct conf_parser *conf_parser_new(const char *name);
int conf_parser_feed(struct conf_parser *p, const char *data, size_t len, struct terr *err);
/* Validates and hands over the result; frees p in every case. */
int conf_parser_finish(struct conf_parser *p, struct conf **conf_r, struct terr *err);
void conf_parser_free(struct conf_parser **p);

/* Reads (at most MAX_CONF_FILE bytes) and parses a file. */
int conf_load(const char *path, struct conf **conf_r, struct terr *err);
void conf_free(struct conf **c);
const char *conf_path(const struct conf *c);

/* The value, else the table default (NULL for an unset string without
 * default). */
const char *conf_str(const struct conf *c, const char *name);
int conf_bool(const struct conf *c, const char *name);
long long conf_int(const struct conf *c, const char *name);
long long conf_duration_ms(const struct conf *c, const char *name);
/* A list option's items (owned by c). */
size_t conf_list(const struct conf *c, const char *name, const char *const **items_r);
int conf_is_set(const struct conf *c, const char *name);

/* Channel lookups: "<channel>_<name>", else "<name>", else default.
 * channel NULL or "" = the plain key. */
const char *conf_chan_str(const struct conf *c, const char *channel, const char *name);
int conf_chan_bool(const struct conf *c, const char *channel, const char *name);
long long conf_chan_int(const struct conf *c, const char *channel, const char *name);
long long conf_chan_duration_ms(const struct conf *c, const char *channel, const char *name);

/* sync_log_channels ("" = the default channel). */
size_t conf_channels(const struct conf *c, const char *const **names_r);
/* The channels the change log is written to: sync_log_channels, or with
 * none the default (unnamed) channel "" (one entry), as Cyrus's
 * replication guide sets a master up (sync_log + sync_host). */
size_t conf_log_channels(const struct conf *c, const char *const **names_r);
/* The path of partition-<name>, or NULL. */
const char *conf_partition(const struct conf *c, const char *name);

/* Every option with its effective value, "key: value" per line, set ones
 * marked, secrets masked. */
void conf_dump(const struct conf *c, struct buf *out);
/* The option table as "# name: type, default. doc" lines. */
void conf_doc(struct buf *out);
/* Keys of a Cyrus imapd.conf that tandem does not use (Cyrus 3.6's
 * options, sasl_*, service- or channel-prefixed forms): accepted and
 * ignored, each to be reported once as a warning by the program that
 * loads the config. i-th key, its line and why it is ignored; NULL past
 * the end. */
size_t conf_nignored(const struct conf *c);
const char *conf_ignored(const struct conf *c, size_t i, int *line_r, const char **note_r);

/* 1 if name is an option of the table (prefixes/patterns not resolved). */
int conf_option_known(const char *name);

#endif
