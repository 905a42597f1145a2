/* conf_cyrus.c: keys of a Cyrus imapd.conf that tandem does not use.
 *
 * An operator moving from Cyrus brings its imapd.conf: a key Cyrus 3.6
 * defines but tandem has no use for starts tandem with one warning (the
 * key is ignored) instead of failing. The names are facts kept in
 * cyrus-3.6-options.txt (one a line, '#' comments), embedded here at
 * build time; a key is also Cyrus's when it is one of its pattern or
 * pass-through forms (sasl_*, <kind>partition-<name>) or the
 * "<service or channel>_<option>" override of a Cyrus or tandem option
 * (a channel of sync_log_channels, or a usual cyrus.conf service name).
 * Anything else stays an error: a typo of a tandem key is not silently
 * ignored. */
#include "conf/conf-private.h"

#include <stdio.h>
#include <string.h>

/* The list, NUL-terminated (the Makefile rebuilds this file when the
 * list changes). */
__asm__(".pushsection .rodata\n"
	".balign 8\n"
	"conf_cyrus_names_txt:\n"
	".incbin \"src/conf/cyrus-3.6-options.txt\"\n"
	".byte 0\n"
	".popsection\n");
extern const char conf_cyrus_names_txt[] __asm__("conf_cyrus_names_txt");

int conf_cyrus_known(const char *name, size_t len)
{
	for (const char *p = conf_cyrus_names_txt; *p;) {
		const char *nl = strchr(p, '\n');
		size_t l = nl ? (size_t)(nl - p) : strlen(p);
		if (*p != '#' && l == len && !strncmp(p, name, len))
			return 1;
		p += l + (nl ? 1 : 0);
	}
	return 0;
}

static int tandem_option(const char *name)
{
	for (unsigned i = 0; i < conf_noptions; i++)
		if (!(conf_options[i].flags & CF_PATTERN) && !strcmp(conf_options[i].name, name))
			return 1;
	return 0;
}

static int channel_option(const char *name)
{
	for (unsigned i = 0; i < conf_noptions; i++)
		if ((conf_options[i].flags & CF_CHANNEL) && !strcmp(conf_options[i].name, name))
			return 1;
	return 0;
}

/* The service names of cyrus.conf's SERVICES section in Cyrus's sample
 * configurations: a key "<service>_<option>" is Cyrus's override of the
 * option for that service. */
static int cyrus_service(const char *s, size_t len)
{
	static const char *const names[] = {
		"imap", "imaps", "pop3", "pop3s", "lmtp", "lmtpunix", "sieve", "nntp", "nntps",
		"http", "https", "sync", "syncserver", "csync", "fud", "notify", "idled",
	};
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
		if (strlen(names[i]) == len && !strncmp(names[i], s, len))
			return 1;
	return 0;
}

int conf_cyrus_note(const char *key, size_t *prefix_r, char *note, size_t notelen)
{
	size_t klen = strlen(key);
	*prefix_r = 0;
	if (conf_cyrus_known(key, klen)) {
		snprintf(note, notelen, "a Cyrus 3.6 option tandem does not use: ignored");
		return 1;
	}
	if (!strncmp(key, "sasl_", 5)) {
		snprintf(note, notelen, "a Cyrus SASL option: tandem checks passwords itself (users.db): ignored");
		return 1;
	}
	const char *part = strstr(key, "partition-");
	if (part && part > key && part[10]) {
		snprintf(note, notelen, "a Cyrus %.*spartition: tandem has none: ignored", (int)(part - key), key);
		return 1;
	}
	/* "<service or channel>_<option>": Cyrus reads a key prefixed with a
	 * service name of cyrus.conf (or a channel) before the plain one */
	for (const char *us = strchr(key, '_'); us && us[1]; us = strchr(us + 1, '_')) {
		const char *rest = us + 1;
		int prefix = (int)(us - key);
		if (conf_cyrus_known(rest, strlen(rest)) || tandem_option(rest)) {
			snprintf(note, notelen,
				 "Cyrus's '%.*s'-specific form of '%s' (a service or channel override): tandem has"
				 " no such override: ignored", prefix, key, rest);
			/* a service's: now; a channel's: once the channels are known */
			if (!cyrus_service(key, (size_t)prefix))
				*prefix_r = (size_t)prefix;
			return 1;
		}
		char sync_key[128];
		snprintf(sync_key, sizeof sync_key, "sync_%s", rest);
		if (channel_option(sync_key)) {
			snprintf(note, notelen,
				 "not an option, Cyrus ignores it too (its replication guide's spelling): ignored; "
				 "the channel option is '%.*s_%s'", prefix, key, sync_key);
			*prefix_r = (size_t)prefix;
			return 1;
		}
	}
	return 0;
}
