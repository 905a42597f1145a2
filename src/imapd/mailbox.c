/* mailbox.c: mailbox names as the client sees them, rights, and looking
 * a mailbox up for a command.
 *
 * Names on the wire are modified UTF-7, exactly as stored in internal
 * names, so only the namespace mapping applies (src/names/mboxname.h):
 * INBOX[/x] <-> user.<me>[.x], user/<other>/x <-> user.<other>.x, and
 * shared names as they are.
 */
#include "imapd/imapd-private.h"

#include "store/store.h"

#include <stdio.h>
#include <string.h>

int imapd_name_in(struct imapd_session *s, const char *external, struct buf *internal_r)
{
	struct terr err = { 0 };
	if (mboxname_from_external(&s->ns, s->user, external, internal_r, &err) < 0) {
		imapd_no(s, "CANNOT", "Invalid mailbox name");
		return -1;
	}
	return 0;
}

void imapd_name_out(struct imapd_session *s, const char *internal, struct buf *external_r)
{
	struct terr err = { 0 };
	if (mboxname_to_external(&s->ns, s->user, internal, external_r, &err) < 0) {
		buf_reset(external_r);
		buf_appends(external_r, internal);
	}
}

unsigned imapd_rights(const struct imapd_session *s, const char *internal, const char *acl)
{
	if (s->isadmin)
		return IMAPD_R_ALL;
	unsigned r = imapd_acl_rights(acl, s->user);
	struct buf owner = BUF_INIT;
	if (mboxname_owner(internal, &owner, NULL) == 1 && s->user && !strcmp(owner.ptr, s->user))
		r |= IMAPD_R_OWNER_IMPLICIT;
	buf_free(&owner);
	return r;
}

int imapd_mailbox_get(struct imapd_session *s, const char *external, unsigned need, struct buf *internal_r,
		      struct store_mailbox_info *mi_r, unsigned *rights_r)
{
	struct terr err = { 0 };
	memset(mi_r, 0, sizeof *mi_r);
	if (imapd_name_in(s, external, internal_r) < 0)
		return -1;
	if (store_mailbox_get(s->st, internal_r->ptr, mi_r, &err) < 0) {
		if (err.code == TE_NOTFOUND)
			imapd_no(s, "NONEXISTENT", "Mailbox does not exist");
		else
			imapd_no_err(s, "mailbox_get", &err);
		return -1;
	}
	unsigned r = imapd_rights(s, internal_r->ptr, mi_r->acl);
	if (!(r & (IMAPD_R_LOOKUP | IMAPD_R_READ))) {
		/* a mailbox the user may not see does not exist for them */
		store_mailbox_info_free(mi_r);
		imapd_no(s, "NONEXISTENT", "Mailbox does not exist");
		return -1;
	}
	if ((r & need) != need) {
		store_mailbox_info_free(mi_r);
		imapd_no(s, "NOPERM", "Permission denied");
		return -1;
	}
	if (rights_r)
		*rights_r = r;
	return 0;
}

int imapd_target_get(struct imapd_session *s, const char *external, struct buf *name,
		     struct store_mailbox_info *mi, unsigned *rights_r)
{
	if (imapd_mailbox_get(s, external, IMAPD_R_INSERT, name, mi, rights_r) == 0) {
		if (!mi->mboxtype || !*mi->mboxtype)
			return 0;
		store_mailbox_info_free(mi);
		imapd_no(s, "CANNOT", "Invalid mailbox type");	/* a #sieve folder is not mail */
		return -1;
	}
	if (buf_eq(&s->res.code, "NONEXISTENT"))
		imapd_no(s, "TRYCREATE", "Mailbox does not exist");
	return -1;
}

void imapd_emailid(const struct imapd_msg *m, char out[26])
{
	out[0] = 'M';
	memcpy(out + 1, m->guid, 24);
	out[25] = '\0';
}

int imapd_threadid(const struct imapd_msg *m, char out[18])
{
	if (!m->thrid)
		return -1;
	snprintf(out, 18, "T%016llx", (unsigned long long)m->thrid);
	return 0;
}

void imapd_write_flags(struct buf *b, int recent, unsigned sysflags, const char *keywords)
{
	buf_putc(b, '(');
	size_t at = b->len;
	store_flags_format(sysflags, keywords, b);
	if (recent) {	/* first, as Cyrus writes it */
		struct buf rest = BUF_INIT;
		buf_append(&rest, b->ptr + at, b->len - at);
		buf_truncate(b, at);
		buf_appends(b, rest.len ? "\\Recent " : "\\Recent");
		buf_append(b, rest.ptr, rest.len);
		buf_free(&rest);
	}
	buf_putc(b, ')');
}
