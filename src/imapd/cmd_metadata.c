/* cmd_metadata.c: GETMETADATA and SETMETADATA (RFC 5464) on mailboxes.
 *
 * Client entry names are "/shared/<e>" and "/private/<e>" (compared
 * without case, kept lower-cased). They are stored as the mailbox
 * annotation "/<e>" (store_annot_set with uid 0) with userid "" for
 * /shared and the session's user for /private. One exception: the
 * special-use list, shown as "/private/specialuse", is the owner's
 * "/specialuse" annotation (one list per mailbox, as Cyrus keeps it). Reading /shared needs
 * 'r', writing it 'n'; /private needs 'l'; /private/specialuse needs 'a'.
 * The special-use helpers themselves are in specialuse.c.
 * Server entries (mailbox "") have no storage yet: none are returned and
 * setting them is refused.
 */
#include "imapd/imapd-private.h"

#include "lib/limits.h"
#include "lib/xalloc.h"
#include "proto/imap/imap_write.h"
#include "store/store.h"

#include <ctype.h>
#include <string.h>

#define SPECIALUSE_ENTRY "/specialuse"
#define SPECIALUSE_EXT "/private/specialuse"

/* ---- special use (RFC 6154; specialuse.c checks the flags) ----------- */

/* Most flags in one special-use value. */
#define SPECIALUSE_MAXFLAGS 32

/* Splits a special-use value ("\Sent \Junk") and normalises it; -1 when
 * a flag is unknown. */
static int specialuse_normalise(const char *value, size_t len, struct buf *out)
{
	char *copy = xstrndup(value, len);
	const char *flags[SPECIALUSE_MAXFLAGS];
	size_t n = 0;
	int rc = 0;
	for (char *save = NULL, *t = strtok_r(copy, " ", &save); t; t = strtok_r(NULL, " ", &save)) {
		if (n == sizeof flags / sizeof flags[0]) {
			rc = -1;
			break;
		}
		flags[n++] = t;
	}
	if (rc == 0)
		rc = imapd_specialuse_check(flags, n, out);
	free(copy);
	return rc;
}

/* ---- entry names ------------------------------------------------------------ */

/* RFC 5464 3.2: "/" components of printable ASCII without '*' and '%',
 * no empty component, no trailing "/". */
static int entry_name_ok(const char *e)
{
	if (e[0] != '/' || e[1] == '\0' || strlen(e) > MAX_ANNOT_ENTRY)
		return 0;
	for (const char *p = e; *p; p++) {
		unsigned char ch = (unsigned char)*p;
		if (ch <= 0x20 || ch >= 0x7f || ch == '*' || ch == '%')
			return 0;
		if (ch == '/' && (p[1] == '/' || p[1] == '\0'))
			return 0;
	}
	return 1;
}

static void lower_copy(const char *s, struct buf *out)
{
	buf_reset(out);
	for (; *s; s++)
		buf_putc(out, (char)tolower((unsigned char)*s));
}

/* A client entry below /shared or /private to the stored entry and
 * userid. 0, or -1 when the name is neither. */
static int entry_to_store(const struct imapd_session *s, const char *lc, const char **entry_r,
			  const char **userid_r)
{
	if (!strcmp(lc, SPECIALUSE_EXT)) {
		*entry_r = SPECIALUSE_ENTRY;
		*userid_r = "";
	} else if (!strncmp(lc, "/shared/", 8)) {
		*entry_r = lc + 7;
		*userid_r = "";
	} else if (!strncmp(lc, "/private/", 9)) {
		*entry_r = lc + 8;
		*userid_r = s->user;
	} else {
		return -1;
	}
	return 0;
}

/* A stored mailbox annotation to its client name (lower-cased); -1 when
 * this user does not see it. */
static int entry_from_store(const struct imapd_session *s, unsigned rights, const char *entry,
			    const char *userid, struct buf *out)
{
	buf_reset(out);
	if (!strcmp(entry, SPECIALUSE_ENTRY)) {
		buf_appends(out, SPECIALUSE_EXT);
		return 0;
	}
	if (!*userid) {
		if (!(rights & IMAPD_R_READ))
			return -1;
		buf_appends(out, "/shared");
	} else if (!strcmp(userid, s->user)) {
		buf_appends(out, "/private");
	} else {
		return -1;
	}
	struct buf lc = BUF_INIT;
	lower_copy(entry, &lc);
	buf_append(out, lc.ptr, lc.len);
	buf_free(&lc);
	return 0;
}

/* Does the client name `name` fall under the requested `want` at this depth? */
static int entry_matches(const char *want, const char *name, int depth)
{
	size_t n = strlen(want);
	if (strncmp(want, name, n) != 0)
		return 0;
	if (name[n] == '\0')
		return 1;
	if (depth == 0 || name[n] != '/')
		return 0;
	return depth == IMAP_METADATA_DEPTH_INFINITY || !strchr(name + n + 1, '/');
}

/* ---- GETMETADATA ------------------------------------------------------------- */

struct get_ctx {
	struct imapd_session *s;
	const struct imap_cmd *cmd;
	struct buf *lwant;	/* the requested entries, lower-cased */
	int *found;		/* per requested entry: something matched */
	unsigned rights;
	struct buf items;	/* " entry value" pairs written so far */
	uint64_t longest;	/* largest value left out for MAXSIZE */
};

static void put_item(struct buf *b, const char *name, const void *value, size_t len)
{
	if (b->len)
		buf_putc(b, ' ');
	imap_write_astring(b, name, strlen(name));
	buf_putc(b, ' ');
	if (value)
		imap_write_string(b, value, len);
	else
		buf_appends(b, "NIL");
}

static int get_cb(uint32_t uid, const char *entry, const char *userid, const void *value, size_t len,
		  uint64_t modseq, void *rock)
{
	struct get_ctx *g = rock;
	struct buf name = BUF_INIT;
	(void)modseq;
	if (uid != 0 || entry_from_store(g->s, g->rights, entry, userid, &name) < 0)
		goto out;
	int hit = 0;
	for (size_t i = 0; i < g->cmd->u.getmetadata.entries.count; i++)
		if (entry_matches(g->lwant[i].ptr, name.ptr, g->cmd->u.getmetadata.depth))
			hit = g->found[i] = 1;
	if (!hit)
		goto out;
	if (g->cmd->u.getmetadata.has_maxsize && len > g->cmd->u.getmetadata.maxsize) {
		if (len > g->longest)
			g->longest = len;
		goto out;
	}
	put_item(&g->items, name.ptr, value, len);
out:
	buf_free(&name);
	return 0;
}

/* Looks the mailbox up ("" is the server); -1 with a NO set. */
static int metadata_mailbox(struct imapd_session *s, const char *external, struct buf *internal,
			    unsigned *rights_r)
{
	*rights_r = 0;
	if (!*external)
		return 0;
	struct store_mailbox_info mi;
	if (imapd_mailbox_get(s, external, 0, internal, &mi, rights_r) < 0)
		return -1;
	store_mailbox_info_free(&mi);
	return 0;
}

static void write_metadata_line(struct imapd_session *s, const char *internal, const struct buf *items)
{
	struct buf line = BUF_INIT, ext = BUF_INIT;
	if (internal)
		imapd_name_out(s, internal, &ext);
	buf_appends(&line, "* METADATA ");
	imap_write_astring(&line, ext.ptr ? ext.ptr : "", ext.len);
	buf_appends(&line, " (");
	buf_append(&line, items->ptr, items->len);
	buf_appends(&line, ")\r\n");
	buf_append(&s->out, line.ptr, line.len);
	imapd_maybe_flush(s);
	buf_free(&ext);
	buf_free(&line);
}

int imapd_cmd_getmetadata(struct imapd_session *s, const struct imap_cmd *cmd)
{
	size_t n = cmd->u.getmetadata.entries.count;
	struct buf name = BUF_INIT;
	struct get_ctx g = { s, cmd, xcalloc(n ? n : 1, sizeof(struct buf)), xcalloc(n ? n : 1, sizeof(int)), 0,
			     BUF_INIT, 0 };
	struct terr err = { 0 };
	for (size_t i = 0; i < n; i++) {
		lower_copy(cmd->u.getmetadata.entries.v[i], &g.lwant[i]);
		if (!entry_name_ok(g.lwant[i].ptr)) {
			imapd_bad(s, NULL, "Invalid entry name");
			goto out;
		}
	}
	if (metadata_mailbox(s, cmd->u.getmetadata.mailbox, &name, &g.rights) < 0)
		goto out;
	if (name.len && store_annot_list(s->st, name.ptr, 0, get_cb, &g, &err) < 0) {
		imapd_no_err(s, "getmetadata", &err);
		goto out;
	}
	/* a requested entry that does not exist is shown with NIL */
	for (size_t i = 0; i < n; i++)
		if (!g.found[i])
			put_item(&g.items, g.lwant[i].ptr, NULL, 0);
	/* RFC 5464's METADATA response needs at least one entry */
	if (g.items.len)
		write_metadata_line(s, name.len ? name.ptr : NULL, &g.items);
	if (g.longest)
		imapd_ok(s, NULL, "[METADATA LONGENTRIES %llu] GETMETADATA completed", (unsigned long long)g.longest);
out:
	for (size_t i = 0; i < n; i++)
		buf_free(&g.lwant[i]);
	free(g.lwant);
	free(g.found);
	buf_free(&g.items);
	buf_free(&name);
	return 0;
}

/* ---- SETMETADATA --------------------------------------------------------------- */

/* One checked entry of a SETMETADATA, ready for the store. */
struct set_item {
	struct buf lc;		/* client name, lower-cased */
	const char *entry;	/* points into lc (or a constant) */
	const char *userid;
	int specialuse;		/* the /private/specialuse list */
	struct buf value;	/* normalised special-use list, else unused */
	const char *v;
	size_t len;
};

/* Checks one entry: name, rights, size, special-use syntax. -1 with the
 * tagged reply set. */
static int set_check(struct imapd_session *s, unsigned rights, const struct imap_metadata_entry *e,
		     struct set_item *it)
{
	lower_copy(e->name, &it->lc);
	it->v = e->value ? e->value : "";
	it->len = e->value ? e->len : 0;
	if (!entry_name_ok(it->lc.ptr) || entry_to_store(s, it->lc.ptr, &it->entry, &it->userid) < 0) {
		imapd_bad(s, NULL, "Invalid entry name");
		return -1;
	}
	if (!strcmp(it->lc.ptr, "/shared" SPECIALUSE_ENTRY)) {
		imapd_no(s, "CANNOT", "The special-use list is " SPECIALUSE_EXT);
		return -1;
	}
	it->specialuse = !strcmp(it->lc.ptr, SPECIALUSE_EXT);
	unsigned need = it->specialuse ? IMAPD_R_ADMIN :
			*it->userid ? IMAPD_R_LOOKUP : IMAPD_R_ANNOTATE;
	if ((rights & need) != need) {
		imapd_no(s, "NOPERM", "Permission denied");
		return -1;
	}
	if (it->len > MAX_ANNOT_VALUE) {
		imapd_no(s, NULL, "[METADATA MAXSIZE %d] Value too long", MAX_ANNOT_VALUE);
		return -1;
	}
	if (it->specialuse) {
		if (specialuse_normalise(it->v, it->len, &it->value) < 0) {
			imapd_no(s, "USEATTR", "Unsupported special-use attribute");
			return -1;
		}
		it->v = buf_cstr(&it->value);
		it->len = it->value.len;
	}
	return 0;
}

static int set_apply(struct imapd_session *s, const char *internal, struct set_item *items, size_t n)
{
	struct terr err = { 0 };
	struct buf owner = BUF_INIT;
	imapd_specialuse_userid(internal, &owner);
	for (size_t i = 0; i < n; i++) {
		const char *userid = items[i].specialuse ? buf_cstr(&owner) : items[i].userid;
		if (store_annot_set(s->st, internal, 0, items[i].entry, userid, items[i].v, items[i].len, &err) < 0) {
			buf_free(&owner);
			imapd_no_err(s, "setmetadata", &err);
			return -1;
		}
		imapd_log_event(s, "setmetadata", internal, "entry=%s size=%zu", items[i].lc.ptr, items[i].len);
	}
	buf_free(&owner);
	return 0;
}

int imapd_cmd_setmetadata(struct imapd_session *s, const struct imap_cmd *cmd)
{
	size_t n = cmd->u.setmetadata.count;
	struct set_item *items = xcalloc(n ? n : 1, sizeof *items);
	struct buf name = BUF_INIT;
	unsigned rights;
	if (!*cmd->u.setmetadata.mailbox) {
		if (!s->isadmin)
			imapd_no(s, "CANNOT", "Only administrators may set server metadata");
		else
			imapd_no(s, "CANNOT", "Server metadata is not supported");
		goto out;
	}
	if (metadata_mailbox(s, cmd->u.setmetadata.mailbox, &name, &rights) < 0)
		goto out;
	/* everything is checked before anything is changed */
	for (size_t i = 0; i < n; i++)
		if (set_check(s, rights, &cmd->u.setmetadata.entries[i], &items[i]) < 0)
			goto out;
	set_apply(s, name.ptr, items, n);
out:
	for (size_t i = 0; i < n; i++) {
		buf_free(&items[i].lc);
		buf_free(&items[i].value);
	}
	free(items);
	buf_free(&name);
	return 0;
}
