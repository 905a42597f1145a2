/* mboxname.c: internal mailbox names, userids, and the IMAP and admin
 * namespaces (see mboxname.h). */
#include "names/mboxname.h"

#include "lib/limits.h"

#include <string.h>
#include <strings.h>

static int domain_valid(const char *d, size_t n)
{
	if (n == 0 || n > 255 || d[0] == '.' || d[n - 1] == '.')
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = d[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
		      c == '-'))
			return 0;
	}
	return 1;
}

int userid_validate(const char *userid, int virtdomains, struct terr *err)
{
	size_t n = strlen(userid);
	if (n == 0)
		return terr_set(err, TE_INVALID, "empty userid");
	if (n > MAX_USERID)
		return terr_set(err, TE_INVALID, "userid longer than %d bytes", MAX_USERID);
	const char *at = NULL;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)userid[i];
		if (c <= ' ' || c >= 0x7f || strchr("/!*%\"\\^()", c))
			return terr_set(err, TE_INVALID, "userid '%s' has a forbidden character at byte %zu", userid, i);
		if (c == '@') {
			if (at)
				return terr_set(err, TE_INVALID, "userid '%s' has more than one '@'", userid);
			at = userid + i;
		}
	}
	if (userid[0] == '.' || (at ? at[-1] == '.' : userid[n - 1] == '.') || strstr(userid, ".."))
		return terr_set(err, TE_INVALID, "userid '%s' has a misplaced '.'", userid);
	if (at) {
		if (!virtdomains)
			return terr_set(err, TE_INVALID, "userid '%s' has a domain but virtdomains is off", userid);
		if (at == userid || !domain_valid(at + 1, strlen(at + 1)))
			return terr_set(err, TE_INVALID, "userid '%s' has a bad domain", userid);
	}
	return 0;
}

/* Splits "domain!rest": returns rest, sets *dom and *dlen (NULL, 0 if none). */
static const char *split_domain(const char *name, const char **dom, size_t *dlen)
{
	const char *bang = strchr(name, '!');
	if (!bang) {
		*dom = NULL;
		*dlen = 0;
		return name;
	}
	*dom = name;
	*dlen = (size_t)(bang - name);
	return bang + 1;
}

int mboxname_validate(const char *internal, struct terr *err)
{
	size_t n = strlen(internal);
	if (n == 0)
		return terr_set(err, TE_INVALID, "empty mailbox name");
	if (n > MAX_MBOXNAME)
		return terr_set(err, TE_INVALID, "mailbox name longer than %d bytes", MAX_MBOXNAME);
	const char *dom;
	size_t dlen;
	const char *rest = split_domain(internal, &dom, &dlen);
	if (dom && !domain_valid(dom, dlen))
		return terr_set(err, TE_INVALID, "mailbox name '%s' has a bad domain", internal);
	if (!*rest)
		return terr_set(err, TE_INVALID, "mailbox name '%s' is only a domain", internal);
	int depth = 0;
	const char *comp = rest;
	for (const char *p = rest;; p++) {
		unsigned char c = (unsigned char)*p;
		if (c == '.' || c == '\0') {
			size_t clen = (size_t)(p - comp);
			if (clen == 0)
				return terr_set(err, TE_INVALID, "mailbox name '%s' has an empty level", internal);
			if (clen > MAX_MBOX_COMPONENT)
				return terr_set(err, TE_INVALID, "mailbox name '%s' has a level over %d bytes", internal,
						MAX_MBOX_COMPONENT);
			if (!mutf7_valid(comp, clen))
				return terr_set(err, TE_INVALID, "mailbox name '%s' has bad modified UTF-7 at byte %zu",
						internal, (size_t)(comp - internal));
			if (++depth > MAX_MBOX_DEPTH)
				return terr_set(err, TE_INVALID, "mailbox name '%s' is deeper than %d levels", internal,
						MAX_MBOX_DEPTH);
			if (c == '\0')
				break;
			comp = p + 1;
			continue;
		}
		if (c < 0x20 || c >= 0x7f || c == '%' || c == '*' || c == '!')
			return terr_set(err, TE_INVALID, "mailbox name '%s' has a forbidden character at byte %zu",
					internal, (size_t)(p - internal));
	}
	const char *u = NULL;
	if (!strncmp(rest, "user.", 5))
		u = rest + 5;
	else if (!strncmp(rest, "DELETED.user.", 13))
		u = rest + 13;
	else if (!strcmp(rest, "user"))
		return terr_set(err, TE_INVALID, "mailbox name 'user' needs a userid");
	if (u) {
		size_t ulen = strcspn(u, ".");
		char local[MAX_USERID + 1];
		if (ulen > MAX_USERID)
			return terr_set(err, TE_INVALID, "mailbox name '%s' has a userid over %d bytes", internal,
					MAX_USERID);
		for (size_t i = 0; i < ulen; i++)
			local[i] = u[i] == '^' ? '.' : u[i];
		local[ulen] = '\0';
		if (strchr(local, '@'))
			return terr_set(err, TE_INVALID, "mailbox name '%s': '@' in the userid (use domain!user.x)",
					internal);
		struct terr e2;
		if (userid_validate(local, 0, &e2) < 0)
			return terr_set(err, TE_INVALID, "mailbox name '%s': %s", internal, e2.msg);
	}
	return 0;
}

int mboxname_owner(const char *internal, struct buf *userid_r, struct terr *err)
{
	buf_reset(userid_r);
	const char *dom;
	size_t dlen;
	const char *rest = split_domain(internal, &dom, &dlen);
	const char *u = NULL;
	if (!strncmp(rest, "user.", 5))
		u = rest + 5;
	else if (!strncmp(rest, "DELETED.user.", 13))
		u = rest + 13;
	if (!u) {
		if (!*rest)
			return terr_set(err, TE_INVALID, "bad mailbox name '%s'", internal);
		return 0;
	}
	size_t ulen = strcspn(u, ".");
	if (ulen == 0)
		return terr_set(err, TE_INVALID, "mailbox name '%s' has no userid", internal);
	for (size_t i = 0; i < ulen; i++)
		buf_putc(userid_r, u[i] == '^' ? '.' : u[i]);
	if (dom) {
		buf_putc(userid_r, '@');
		buf_append(userid_r, dom, dlen);
	}
	return 1;
}

int mboxname_user_inbox(const char *userid, struct buf *internal_r, struct terr *err)
{
	buf_reset(internal_r);
	if (!*userid)
		return terr_set(err, TE_INVALID, "empty userid");
	const char *at = strrchr(userid, '@');
	size_t llen = at ? (size_t)(at - userid) : strlen(userid);
	if (at)
		buf_printf(internal_r, "%s!", at + 1);
	buf_appends(internal_r, "user.");
	for (size_t i = 0; i < llen; i++)
		buf_putc(internal_r, userid[i] == '.' ? '^' : userid[i]);
	return 0;
}

/* Appends external components (split by sep) as internal ones. */
static void append_levels(const struct mboxname_ns *ns, const char *ext, size_t len, struct buf *out)
{
	for (size_t i = 0; i < len; i++) {
		char c = ext[i];
		if (c == ns->sep)
			buf_putc(out, '.');
		else if (c == '.' && ns->sep != '.')
			buf_putc(out, '^');
		else
			buf_putc(out, c);
	}
}

/* Appends internal levels as external ones. */
static void append_ext_levels(const struct mboxname_ns *ns, const char *in, struct buf *out)
{
	for (const char *p = in; *p; p++) {
		if (*p == '.')
			buf_putc(out, ns->sep);
		else if (*p == '^' && ns->sep != '.')
			buf_putc(out, '.');
		else
			buf_putc(out, *p);
	}
}

static const char *userid_domain(const char *userid)
{
	const char *at = userid ? strrchr(userid, '@') : NULL;
	return at ? at + 1 : NULL;
}

int mboxname_from_external(const struct mboxname_ns *ns, const char *userid, const char *external,
			   struct buf *internal_r, struct terr *err)
{
	buf_reset(internal_r);
	size_t n = strlen(external);
	if (n == 0)
		return terr_set(err, TE_INVALID, "empty mailbox name");
	if (n > MAX_MBOXNAME)
		return terr_set(err, TE_INVALID, "mailbox name longer than %d bytes", MAX_MBOXNAME);
	if (!mutf7_valid(external, n))
		return terr_set(err, TE_INVALID, "mailbox name has bad modified UTF-7");
	/* '!' separates a domain in internal names: from a client it would
	 * make "INBOX.x!y" the mailbox "y" of the domain "user.alice.x" */
	const char *bang = strchr(external, '!');
	if (bang)
		return terr_set(err, TE_INVALID, "mailbox name has a forbidden character '!' at byte %zu",
				(size_t)(bang - external));
	if (!strncasecmp(external, "INBOX", 5) && (external[5] == '\0' || external[5] == ns->sep)) {
		if (mboxname_user_inbox(userid, internal_r, err) < 0)
			return -1;
		if (external[5]) {
			if (!external[6])
				return terr_set(err, TE_INVALID, "mailbox name ends with the separator");
			buf_putc(internal_r, '.');
			append_levels(ns, external + 6, n - 6, internal_r);
		}
		return mboxname_validate(internal_r->ptr, err);
	}
	/* A trailing @domain names another domain (virtdomains only). */
	const char *dom = userid_domain(userid);
	size_t len = n;
	const char *at = ns->virtdomains ? strrchr(external, '@') : NULL;
	if (at && !strchr(at, ns->sep)) {
		dom = at + 1;
		len = (size_t)(at - external);
	}
	if (dom && ns->virtdomains)
		buf_printf(internal_r, "%s!", dom);
	append_levels(ns, external, len, internal_r);
	return mboxname_validate(internal_r->ptr, err);
}

int mboxname_to_external(const struct mboxname_ns *ns, const char *userid, const char *internal,
			 struct buf *external_r, struct terr *err)
{
	buf_reset(external_r);
	struct buf inbox = BUF_INIT;
	if (userid && *userid && mboxname_user_inbox(userid, &inbox, NULL) == 0) {
		size_t il = inbox.len;
		if (!strncmp(internal, inbox.ptr, il) && (internal[il] == '\0' || internal[il] == '.')) {
			buf_appends(external_r, "INBOX");
			if (internal[il]) {
				buf_putc(external_r, ns->sep);
				append_ext_levels(ns, internal + il + 1, external_r);
			}
			buf_free(&inbox);
			return 0;
		}
	}
	buf_free(&inbox);
	const char *dom;
	size_t dlen;
	const char *rest = split_domain(internal, &dom, &dlen);
	if (!*rest)
		return terr_set(err, TE_INVALID, "bad mailbox name '%s'", internal);
	append_ext_levels(ns, rest, external_r);
	const char *mine = userid_domain(userid);
	if (dom && (!mine || strlen(mine) != dlen || strncmp(mine, dom, dlen))) {
		buf_putc(external_r, '@');
		buf_append(external_r, dom, dlen);
	}
	return 0;
}

int mboxname_from_admin(const struct mboxname_ns *ns, const char *external, struct buf *internal_r,
			struct terr *err)
{
	buf_reset(internal_r);
	size_t n = strlen(external);
	if (n == 0)
		return terr_set(err, TE_INVALID, "empty mailbox name");
	if (n > MAX_MBOXNAME)
		return terr_set(err, TE_INVALID, "mailbox name longer than %d bytes", MAX_MBOXNAME);
	if (strchr(external, '!')) {	/* already internal, with a domain */
		buf_appends(internal_r, external);
		return mboxname_validate(internal_r->ptr, err);
	}
	const char *at = ns->virtdomains ? strrchr(external, '@') : NULL;
	size_t len = n;
	if (at && !strchr(at, ns->sep)) {
		buf_printf(internal_r, "%s!", at + 1);
		len = (size_t)(at - external);
	}
	append_levels(ns, external, len, internal_r);
	return mboxname_validate(internal_r->ptr, err);
}

int mboxname_to_admin(const struct mboxname_ns *ns, const char *internal, struct buf *external_r,
		      struct terr *err)
{
	buf_reset(external_r);
	const char *dom;
	size_t dlen;
	const char *rest = split_domain(internal, &dom, &dlen);
	if (!*rest)
		return terr_set(err, TE_INVALID, "bad mailbox name '%s'", internal);
	append_ext_levels(ns, rest, external_r);
	if (dom) {
		buf_putc(external_r, '@');
		buf_append(external_r, dom, dlen);
	}
	return 0;
}

int mboxname_user_folder(const struct mboxname_ns *ns, const char *userid, const char *folder,
			 struct buf *internal_r, struct terr *err)
{
	struct terr e2;
	if (userid_validate(userid, ns->virtdomains, &e2) < 0)
		return terr_set(err, TE_INVALID, "%s", e2.msg);
	if (!folder || !*folder || !strcasecmp(folder, "INBOX"))
		return mboxname_user_inbox(userid, internal_r, err);
	struct buf ext = BUF_INIT;
	buf_printf(&ext, "INBOX%c%s", ns->sep, folder);
	int rc = mboxname_from_external(ns, userid, ext.ptr, internal_r, err);
	buf_free(&ext);
	return rc;
}
