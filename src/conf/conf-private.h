/* conf-private.h: the option table shared by the conf_*.c files. */
#ifndef TANDEM_CONF_PRIVATE_H
#define TANDEM_CONF_PRIVATE_H

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

#endif
