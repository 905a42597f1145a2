/* conf-private.h: the option table shared by the conf_*.c files. */
#ifndef TANDEM_CONF_PRIVATE_H
#define TANDEM_CONF_PRIVATE_H

#include <stddef.h>

enum conf_type { CT_STRING, CT_PATH, CT_BOOL, CT_INT, CT_BYTES, CT_DURATION, CT_ENUM, CT_LIST };

enum {
	CF_CHANNEL = 1,	/* may be prefixed "<channel>_" */
	CF_SECRET = 2,	/* masked in conf_dump */
	CF_PATTERN = 4,	/* name is a prefix: "partition-" + name */
};

struct conf_option {
	const char *name;
	enum conf_type type;
	const char *def;	/* default as text, NULL = unset */
	int flags;
	long long min, max;	/* CT_INT/CT_BYTES/CT_DURATION (ms) bounds; 0,0 = none */
	const char *choices;	/* CT_ENUM: space-separated */
	const char *doc;
};

extern const struct conf_option conf_options[];
extern const unsigned conf_noptions;

/* conf_cyrus.c: 1 when name (len bytes) is a Cyrus 3.6 option name. */
int conf_cyrus_known(const char *name, size_t len);
/* 1 (with why it is ignored in note) when key, not a tandem option, is
 * one of a Cyrus imapd.conf; 0 for a key nobody defines (an error).
 * *prefix_r > 0: only if key's first *prefix_r bytes name a channel of
 * sync_log_channels (checked once the whole file is read). */
int conf_cyrus_note(const char *key, size_t *prefix_r, char *note, size_t notelen);

#endif
