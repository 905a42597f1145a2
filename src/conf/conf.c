/* conf.c: the configuration push parser, validation and getters (see
 * conf.h). */
#include "conf/conf.h"
#include "conf/conf-private.h"

#include "lib/fsutil.h"
#include "lib/limits.h"
#include "lib/log.h"
#include "lib/xalloc.h"

#include <ctype.h>
#include <limits.h>
#include <stdarg.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

struct entry {
	char *key;
	char *value;
	int line;
	const struct conf_option *opt;
	char *channel;		/* prefix of a channel option, else NULL */
	char **items;		/* CT_LIST: split value */
	size_t nitems;
};

/* A key of a Cyrus imapd.conf that tandem does not use (conf_cyrus.c). */
struct ignored {
	char *key;
	int line;
	char *note;
	size_t prefix;		/* > 0: valid only if key's prefix is a channel */
};

struct conf {
	char *path;
	struct entry *e;
	size_t n, cap;
	struct ignored *ign;
	size_t nign;
	char servername[256];
};

struct conf_parser {
	struct conf *c;
	struct buf line;
	int lineno;
	size_t total;
	int failed;
};

/* ---- value parsing -------------------------------------------------------- */

static int parse_bool(const char *v, int *out)
{
	static const char *yes[] = { "yes", "on", "true", "1", "t" };
	static const char *no[] = { "no", "off", "false", "0", "f", "nil" };
	for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++)
		if (!strcasecmp(v, yes[i]))
			return *out = 1, 0;
	for (size_t i = 0; i < sizeof no / sizeof no[0]; i++)
		if (!strcasecmp(v, no[i]))
			return *out = 0, 0;
	return -1;
}

static int parse_uint(const char **pp, long long *out)
{
	const char *p = *pp;
	if (!isdigit((unsigned char)*p))
		return -1;
	long long v = 0;
	while (isdigit((unsigned char)*p)) {
		if (v > (LLONG_MAX - 9) / 10)
			return -1;
		v = v * 10 + (*p++ - '0');
	}
	*pp = p;
	*out = v;
	return 0;
}

static int parse_duration(const char *v, long long *ms)
{
	const char *p = v;
	long long total = 0, n;
	if (parse_uint(&p, &n) < 0)
		return -1;
	if (!*p) {
		*ms = n * 1000;	/* a plain number is seconds */
		return n > LLONG_MAX / 1000 ? -1 : 0;
	}
	for (;;) {
		long long mult;
		if (!strncmp(p, "ms", 2)) {
			mult = 1;
			p += 2;
		} else if (*p == 's') {
			mult = 1000;
			p++;
		} else if (*p == 'm') {
			mult = 60000;
			p++;
		} else if (*p == 'h') {
			mult = 3600000;
			p++;
		} else if (*p == 'd') {
			mult = 86400000;
			p++;
		} else {
			return -1;
		}
		if (n > LLONG_MAX / mult || total > LLONG_MAX - n * mult)
			return -1;
		total += n * mult;
		if (!*p)
			break;
		if (parse_uint(&p, &n) < 0)
			return -1;
	}
	*ms = total;
	return 0;
}

static int parse_bytes(const char *v, long long *out)
{
	const char *p = v;
	long long n;
	if (parse_uint(&p, &n) < 0)
		return -1;
	long long mult = 1;
	if (*p == 'K' || *p == 'k')
		mult = 1024, p++;
	else if (*p == 'M' || *p == 'm')
		mult = 1024 * 1024, p++;
	else if (*p == 'G' || *p == 'g')
		mult = 1024LL * 1024 * 1024, p++;
	if (*p || n > LLONG_MAX / mult)
		return -1;
	*out = n * mult;
	return 0;
}

static int enum_has(const char *choices, const char *v)
{
	size_t n = strlen(v);
	for (const char *p = choices; *p;) {
		const char *e = strchr(p, ' ');
		size_t l = e ? (size_t)(e - p) : strlen(p);
		if (l == n && !strncmp(p, v, n))
			return 1;
		p += l + (e ? 1 : 0);
	}
	return 0;
}

static void split_list(struct entry *en)
{
	const char *p = en->value;
	size_t cap = 4;
	en->items = xcalloc(cap, sizeof *en->items);
	while (*p) {
		while (*p == ' ' || *p == '\t')
			p++;
		if (!*p)
			break;
		const char *e = p;
		while (*e && *e != ' ' && *e != '\t')
			e++;
		if (en->nitems == cap)
			en->items = xrealloc(en->items, (cap *= 2) * sizeof *en->items);
		if (e - p == 2 && p[0] == '"' && p[1] == '"')
			en->items[en->nitems++] = xstrdup("");
		else
			en->items[en->nitems++] = xstrndup(p, (size_t)(e - p));
		p = e;
	}
}

/* Checks v against o's type; on error writes the reason to why. */
static int check_value(const struct conf_option *o, const char *v, char *why, size_t whylen)
{
	long long n = 0;
	int b;
	switch (o->type) {
	case CT_STRING:
	case CT_LIST:
		return 0;
	case CT_PATH:
		if (v[0] != '/') {
			snprintf(why, whylen, "must be an absolute path, not '%s'", v);
			return -1;
		}
		return 0;
	case CT_BOOL:
		if (parse_bool(v, &b) < 0) {
			snprintf(why, whylen, "bad yes/no value '%s'", v);
			return -1;
		}
		return 0;
	case CT_ENUM:
		if (!enum_has(o->choices, v)) {
			snprintf(why, whylen, "'%s' is not one of: %s", v, o->choices);
			return -1;
		}
		return 0;
	case CT_INT: {
		const char *q = v;
		if (parse_uint(&q, &n) < 0 || *q) {
			snprintf(why, whylen, "bad number '%s'", v);
			return -1;
		}
		break;
	}
	case CT_BYTES:
		if (parse_bytes(v, &n) < 0) {
			snprintf(why, whylen, "bad size '%s' (a number with an optional K, M or G)", v);
			return -1;
		}
		break;
	case CT_DURATION:
		if (parse_duration(v, &n) < 0) {
			snprintf(why, whylen, "bad duration '%s' (e.g. 30s, 20m, 1h30m; a plain number is seconds)", v);
			return -1;
		}
		break;
	}
	if ((o->min || o->max) && (n < o->min || n > o->max)) {
		if (o->type == CT_DURATION)
			snprintf(why, whylen, "%s is out of range (%lld ms to %lld ms)", v, o->min, o->max);
		else
			snprintf(why, whylen, "%s is out of range (%lld to %lld)", v, o->min, o->max);
		return -1;
	}
	return 0;
}

/* ---- option lookup ----------------------------------------------------------- */

static const struct conf_option *find_option(const char *name)
{
	for (unsigned i = 0; i < conf_noptions; i++)
		if (!(conf_options[i].flags & CF_PATTERN) && !strcmp(conf_options[i].name, name))
			return &conf_options[i];
	return NULL;
}

int conf_option_known(const char *name)
{
	return find_option(name) != NULL;
}

static int name_chars_ok(const char *s)
{
	if (!*s)
		return 0;
	for (; *s; s++)
		if (!(islower((unsigned char)*s) || isdigit((unsigned char)*s) || *s == '_' || *s == '-'))
			return 0;
	return 1;
}

/* Resolves a key: the option, and for a channel option its channel. */
static const struct conf_option *resolve(const char *key, char **channel_r)
{
	*channel_r = NULL;
	const struct conf_option *o = find_option(key);
	if (o)
		return o;
	if (!strncmp(key, "partition-", 10) && name_chars_ok(key + 10))
		for (unsigned i = 0; i < conf_noptions; i++)
			if (conf_options[i].flags & CF_PATTERN)
				return &conf_options[i];
	const struct conf_option *best = NULL;
	size_t bestlen = 0;
	size_t klen = strlen(key);
	for (unsigned i = 0; i < conf_noptions; i++) {
		const struct conf_option *c = &conf_options[i];
		size_t nl = strlen(c->name);
		if (!(c->flags & CF_CHANNEL) || klen < nl + 2 || key[klen - nl - 1] != '_' ||
		    strcmp(key + klen - nl, c->name))
			continue;
		if (nl > bestlen) {
			best = c;
			bestlen = nl;
		}
	}
	if (best)
		*channel_r = xstrndup(key, klen - bestlen - 1);
	return best;
}

static const struct entry *find_entry(const struct conf *c, const char *key)
{
	for (size_t i = 0; i < c->n; i++)
		if (!strcmp(c->e[i].key, key))
			return &c->e[i];
	return NULL;
}

/* ---- parser ------------------------------------------------------------------- */

struct conf_parser *conf_parser_new(const char *name)
{
	struct conf_parser *p = xcalloc(1, sizeof *p);
	p->c = xcalloc(1, sizeof *p->c);
	p->c->path = xstrdup(name ? name : "(config)");
	return p;
}

void conf_parser_free(struct conf_parser **pp)
{
	struct conf_parser *p = *pp;
	if (!p)
		return;
	conf_free(&p->c);
	buf_free(&p->line);
	free(p);
	*pp = NULL;
}

static int perr(struct conf_parser *p, struct terr *err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int perr(struct conf_parser *p, struct terr *err, const char *fmt, ...)
{
	char msg[400];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	p->failed = 1;
	return terr_set(err, TE_CONFIG, "%s:%d: %s", p->c->path, p->lineno, msg);
}

static char *trim(char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	size_t n = strlen(s);
	while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
		s[--n] = '\0';
	return s;
}

static int do_line(struct conf_parser *p, char *line, struct terr *err)
{
	size_t n = strlen(line);
	if (n && line[n - 1] == '\r')
		line[--n] = '\0';
	char *s = trim(line);
	if (!*s || *s == '#')
		return 0;
	char *colon = strchr(s, ':');
	if (!colon)
		return perr(p, err, "line has no ':' (want 'option: value')");
	*colon = '\0';
	char *key = trim(s), *value = trim(colon + 1);
	if (!name_chars_ok(key))
		return perr(p, err, "bad option name '%s'", key);
	char *channel = NULL;
	const struct conf_option *o = resolve(key, &channel);
	char note[300];
	size_t prefix = 0;
	if (!o && conf_cyrus_note(key, &prefix, note, sizeof note)) {
		struct conf *c = p->c;
		for (size_t i = 0; i < c->nign; i++)
			if (!strcmp(c->ign[i].key, key))
				return perr(p, err, "option '%s' is set twice (first on line %d)", key, c->ign[i].line);
		c->ign = xrealloc(c->ign, (c->nign + 1) * sizeof *c->ign);
		c->ign[c->nign++] = (struct ignored){ xstrdup(key), p->lineno, xstrdup(note), prefix };
		return 0;
	}
	if (!o)
		return perr(p, err, "unknown option '%s'", key);
	const struct entry *dup = find_entry(p->c, key);
	if (dup) {
		free(channel);
		return perr(p, err, "option '%s' is set twice (first on line %d)", key, dup->line);
	}
	char why[300];
	if (check_value(o, value, why, sizeof why) < 0) {
		free(channel);
		return perr(p, err, "%s: %s", key, why);
	}
	struct conf *c = p->c;
	if (c->n == c->cap)
		c->e = xrealloc(c->e, (c->cap = c->cap ? c->cap * 2 : 16) * sizeof *c->e);
	struct entry *en = &c->e[c->n++];
	memset(en, 0, sizeof *en);
	en->key = xstrdup(key);
	en->value = xstrdup(value);
	en->line = p->lineno;
	en->opt = o;
	en->channel = channel;
	if (o->type == CT_LIST)
		split_list(en);
	return 0;
}

int conf_parser_feed(struct conf_parser *p, const char *data, size_t len, struct terr *err)
{
	if (p->failed)
		return terr_set(err, TE_CONFIG, "%s: parser already failed", p->c->path);
	p->total += len;
	if (p->total > MAX_CONF_FILE)
		return perr(p, err, "file is over %d bytes", MAX_CONF_FILE);
	for (size_t i = 0; i < len; i++) {
		char ch = data[i];
		if (ch == '\0') {
			p->lineno++;
			return perr(p, err, "NUL byte (is this a text file?)");
		}
		if (ch != '\n') {
			if (p->line.len >= MAX_CONF_LINE) {
				p->lineno++;
				return perr(p, err, "line longer than %d bytes", MAX_CONF_LINE);
			}
			buf_putc(&p->line, ch);
			continue;
		}
		p->lineno++;
		int rc = do_line(p, p->line.ptr ? p->line.ptr : (char[]){ 0 }, err);
		buf_reset(&p->line);
		if (rc < 0)
			return -1;
	}
	return 0;
}

int conf_parser_finish(struct conf_parser *p, struct conf **conf_r, struct terr *err)
{
	int rc = 0;
	if (p->failed) {
		rc = terr_set(err, TE_CONFIG, "%s: parser already failed", p->c->path);
		goto out;
	}
	if (p->line.len) {
		p->lineno++;
		if (do_line(p, p->line.ptr, err) < 0) {
			rc = -1;
			goto out;
		}
	}
	struct conf *c = p->c;
	const struct entry *chans = find_entry(c, "sync_log_channels");
	for (size_t i = 0; i < c->n; i++) {
		const struct entry *en = &c->e[i];
		if (!en->channel)
			continue;
		int found = 0;
		for (size_t k = 0; chans && k < chans->nitems; k++)
			if (!strcmp(chans->items[k], en->channel))
				found = 1;
		if (!found) {
			p->lineno = en->line;
			rc = perr(p, err, "'%s': channel '%s' is not in sync_log_channels", en->key, en->channel);
			goto out;
		}
	}
	for (size_t i = 0; i < c->nign; i++) {
		const struct ignored *ig = &c->ign[i];
		int found = !ig->prefix;
		for (size_t k = 0; chans && k < chans->nitems && !found; k++)
			found = strlen(chans->items[k]) == ig->prefix && !strncmp(chans->items[k], ig->key, ig->prefix);
		if (!found) {
			p->lineno = ig->line;
			rc = perr(p, err, "unknown option '%s'", ig->key);
			goto out;
		}
	}
	for (size_t k = 0; chans && k < chans->nitems; k++) {
		const char *ch = chans->items[k];
		if (strlen(ch) > MAX_CHANNEL_NAME || (*ch && !name_chars_ok(ch))) {
			p->lineno = chans->line;
			rc = perr(p, err, "sync_log_channels: bad channel name '%s'", ch);
			goto out;
		}
	}
	if (chans && chans->nitems > MAX_CHANNELS) {
		p->lineno = chans->line;
		rc = perr(p, err, "sync_log_channels: more than %d channels", MAX_CHANNELS);
		goto out;
	}
	const struct entry *alt = find_entry(c, "altnamespace");
	int b = 0;
	if (alt && parse_bool(alt->value, &b) == 0 && b) {
		p->lineno = alt->line;
		rc = perr(p, err, "altnamespace: tandem supports only the standard namespace ('no') for now");
		goto out;
	}
	if (!find_entry(c, "configdirectory")) {
		rc = terr_set(err, TE_CONFIG, "%s: configdirectory is not set", c->path);
		goto out;
	}
	if (gethostname(c->servername, sizeof c->servername) < 0 || !c->servername[0])
		snprintf(c->servername, sizeof c->servername, "localhost");
	c->servername[sizeof c->servername - 1] = '\0';
	*conf_r = c;
	p->c = NULL;
out:
	conf_parser_free(&p);
	return rc;
}

int conf_load(const char *path, struct conf **conf_r, struct terr *err)
{
	struct buf data = BUF_INIT;
	if (fs_read_file(path, MAX_CONF_FILE, &data, err) < 0) {
		buf_free(&data);
		if (err)
			err->code = TE_CONFIG;
		return -1;
	}
	struct conf_parser *p = conf_parser_new(path);
	int rc = conf_parser_feed(p, data.ptr ? data.ptr : "", data.len, err);
	buf_free(&data);
	if (rc < 0) {
		conf_parser_free(&p);
		return -1;
	}
	return conf_parser_finish(p, conf_r, err);
}

void conf_free(struct conf **cp)
{
	struct conf *c = *cp;
	if (!c)
		return;
	for (size_t i = 0; i < c->n; i++) {
		free(c->e[i].key);
		free(c->e[i].value);
		free(c->e[i].channel);
		for (size_t k = 0; k < c->e[i].nitems; k++)
			free(c->e[i].items[k]);
		free(c->e[i].items);
	}
	free(c->e);
	for (size_t i = 0; i < c->nign; i++) {
		free(c->ign[i].key);
		free(c->ign[i].note);
	}
	free(c->ign);
	free(c->path);
	free(c);
	*cp = NULL;
}

size_t conf_nignored(const struct conf *c)
{
	return c->nign;
}

const char *conf_ignored(const struct conf *c, size_t i, int *line_r, const char **note_r)
{
	if (i >= c->nign)
		return NULL;
	*line_r = c->ign[i].line;
	*note_r = c->ign[i].note;
	return c->ign[i].key;
}

const char *conf_path(const struct conf *c)
{
	return c->path;
}

/* ---- getters -------------------------------------------------------------------- */

static const struct conf_option *must_option(const char *name)
{
	const struct conf_option *o = find_option(name);
	if (!o)
		fatal("event=conf_bug option=%s reason=not_in_table", name);
	return o;
}

static const char *raw_value(const struct conf *c, const char *name, const struct conf_option **o_r)
{
	*o_r = must_option(name);
	const struct entry *en = find_entry(c, name);
	if (en)
		return en->value;
	if (!strcmp(name, "servername"))
		return c->servername;
	return (*o_r)->def;
}

const char *conf_str(const struct conf *c, const char *name)
{
	const struct conf_option *o;
	return raw_value(c, name, &o);
}

int conf_is_set(const struct conf *c, const char *name)
{
	return find_entry(c, name) != NULL;
}

static int value_bool(const char *v)
{
	int b = 0;
	if (v)
		parse_bool(v, &b);
	return b;
}

static long long value_num(const struct conf_option *o, const char *v)
{
	long long n = 0;
	if (!v)
		return 0;
	if (o->type == CT_DURATION)
		parse_duration(v, &n);
	else if (o->type == CT_BYTES)
		parse_bytes(v, &n);
	else
		parse_uint(&v, &n);
	return n;
}

int conf_bool(const struct conf *c, const char *name)
{
	return value_bool(conf_str(c, name));
}

long long conf_int(const struct conf *c, const char *name)
{
	const struct conf_option *o;
	const char *v = raw_value(c, name, &o);
	return value_num(o, v);
}

long long conf_duration_ms(const struct conf *c, const char *name)
{
	return conf_int(c, name);
}

size_t conf_list(const struct conf *c, const char *name, const char *const **items_r)
{
	must_option(name);
	const struct entry *en = find_entry(c, name);
	if (en) {
		*items_r = (const char *const *)en->items;
		return en->nitems;
	}
	/* defaults of list options are single words */
	static const char *squatter[] = { "squatter" };
	const struct conf_option *o = must_option(name);
	if (o->def && !strcmp(o->def, "squatter")) {
		*items_r = squatter;
		return 1;
	}
	*items_r = NULL;
	return 0;
}

static const char *chan_raw(const struct conf *c, const char *channel, const char *name,
			    const struct conf_option **o_r)
{
	*o_r = must_option(name);
	if (channel && *channel) {
		char key[256];
		snprintf(key, sizeof key, "%s_%s", channel, name);
		const struct entry *en = find_entry(c, key);
		if (en)
			return en->value;
	}
	return raw_value(c, name, o_r);
}

const char *conf_chan_str(const struct conf *c, const char *channel, const char *name)
{
	const struct conf_option *o;
	return chan_raw(c, channel, name, &o);
}

int conf_chan_bool(const struct conf *c, const char *channel, const char *name)
{
	const struct conf_option *o;
	return value_bool(chan_raw(c, channel, name, &o));
}

long long conf_chan_int(const struct conf *c, const char *channel, const char *name)
{
	const struct conf_option *o;
	const char *v = chan_raw(c, channel, name, &o);
	return value_num(o, v);
}

long long conf_chan_duration_ms(const struct conf *c, const char *channel, const char *name)
{
	return conf_chan_int(c, channel, name);
}

size_t conf_channels(const struct conf *c, const char *const **names_r)
{
	return conf_list(c, "sync_log_channels", names_r);
}

size_t conf_log_channels(const struct conf *c, const char *const **names_r)
{
	static const char *const def[] = { "" };
	size_t n = conf_channels(c, names_r);
	if (n == 0) {
		*names_r = def;
		n = 1;
	}
	return n;
}

const char *conf_partition(const struct conf *c, const char *name)
{
	char key[256];
	snprintf(key, sizeof key, "partition-%s", name);
	const struct entry *en = find_entry(c, key);
	return en ? en->value : NULL;
}

void conf_dump(const struct conf *c, struct buf *out)
{
	for (unsigned i = 0; i < conf_noptions; i++) {
		const struct conf_option *o = &conf_options[i];
		if (o->flags & CF_PATTERN)
			continue;
		const struct entry *en = find_entry(c, o->name);
		const char *v = en ? en->value : !strcmp(o->name, "servername") ? c->servername : o->def;
		if (!v) {
			buf_printf(out, "# %s: (unset)\n", o->name);
			continue;
		}
		buf_printf(out, "%s: %s%s\n", o->name, (o->flags & CF_SECRET) && *v ? "********" : v,
			   en ? "" : "   # default");
	}
	for (size_t i = 0; i < c->n; i++) {
		const struct entry *en = &c->e[i];
		if (en->channel || (en->opt->flags & CF_PATTERN))
			buf_printf(out, "%s: %s\n", en->key,
				   (en->opt->flags & CF_SECRET) && *en->value ? "********" : en->value);
	}
}

void conf_doc(struct buf *out)
{
	static const char *tn[] = { "string", "path", "yes/no", "number", "size", "duration", "one of", "list" };
	for (unsigned i = 0; i < conf_noptions; i++) {
		const struct conf_option *o = &conf_options[i];
		buf_printf(out, "# %s%s: %s%s%s, default %s%s. %s\n", o->name, (o->flags & CF_PATTERN) ? "<name>" : "",
			   tn[o->type], o->choices ? " " : "", o->choices ? o->choices : "", o->def ? o->def : "unset",
			   (o->flags & CF_CHANNEL) ? ", per channel" : "", o->doc);
	}
}
