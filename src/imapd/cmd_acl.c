/* cmd_acl.c: the ACL commands of RFC 4314: GETACL, SETACL, DELETEACL,
 * LISTRIGHTS and MYRIGHTS. All but MYRIGHTS need the admin right 'a' on
 * the mailbox; a mailbox the user cannot see does not exist for them.
 * ACL strings are parsed and edited by acl.c; the store keeps them.
 */
#include "imapd/imapd-private.h"

#include "proto/imap/imap_write.h"
#include "store/store.h"

#include <string.h>

/* Appends the mailbox's external name as an astring. */
static void put_mailbox(struct imapd_session *s, struct buf *b, const char *internal)
{
	struct buf ext = BUF_INIT;
	imapd_name_out(s, internal, &ext);
	imap_write_astring(b, ext.ptr, ext.len);
	buf_free(&ext);
}

/* Adds the RFC 2086 letters RFC 4314 2.1.1 asks servers to show: c with
 * k, d with any of x t e. */
static unsigned with_legacy(unsigned m)
{
	if (m & IMAPD_R_CREATE)
		m |= IMAPD_R_OLD_CREATE;
	if (m & (IMAPD_R_DELETE_MBOX | IMAPD_R_DELETE_MSG | IMAPD_R_EXPUNGE))
		m |= IMAPD_R_OLD_DELETE;
	return m;
}

/* ---- GETACL ----------------------------------------------------------------- */

static void getacl_cb(const char *id, size_t idlen, const char *rights, size_t rlen, void *rock)
{
	struct buf *b = rock;
	buf_putc(b, ' ');
	imap_write_astring(b, id, idlen);
	buf_putc(b, ' ');
	imap_write_astring(b, rights, rlen);
}

int imapd_cmd_getacl(struct imapd_session *s, const struct imap_cmd *cmd)
{
	struct buf name = BUF_INIT, line = BUF_INIT;
	struct store_mailbox_info mi;
	if (imapd_mailbox_get(s, cmd->u.mailbox.mailbox, IMAPD_R_ADMIN, &name, &mi, NULL) < 0)
		goto out;
	buf_appends(&line, "* ACL ");
	put_mailbox(s, &line, name.ptr);
	store_acl_each(mi.acl, getacl_cb, &line);
	buf_appends(&line, "\r\n");
	buf_append(&s->out, line.ptr, line.len);
	store_mailbox_info_free(&mi);
out:
	buf_free(&line);
	buf_free(&name);
	return 0;
}

/* ---- SETACL, DELETEACL -------------------------------------------------------- */

/* Identifiers: "anyone", "anonymous", "group:..." or a userid, each
 * possibly prefixed with '-' (a negative entry). */
static int identifier_ok(const struct imapd_session *s, const char *id)
{
	if (*id == '-')
		id++;
	if (!strcmp(id, "anyone") || !strcmp(id, "anonymous"))
		return 1;
	if (!strncmp(id, "group:", 6))
		return id[6] && !strpbrk(id, "\t\r\n");
	struct terr err = { 0 };
	return userid_validate(id, s->ns.virtdomains, &err) == 0;
}

/* Checks SETACL's rights string: an optional + or -, then known letters. */
static int rights_ok(const char *rights)
{
	const char *r = rights;
	if (*r == '+' || *r == '-')
		r++;
	unsigned m;
	size_t bad;
	return imapd_rights_parse(r, strlen(r), &m, &bad) == 0;
}

int imapd_cmd_setacl(struct imapd_session *s, const struct imap_cmd *cmd)
{
	int del = cmd->id == IMAP_CMD_DELETEACL;
	const char *id = cmd->u.acl.identifier, *rights = del ? NULL : cmd->u.acl.rights;
	struct buf name = BUF_INIT, acl = BUF_INIT;
	struct store_mailbox_info mi;
	struct terr err = { 0 };
	if (rights && !rights_ok(rights)) {
		imapd_bad(s, NULL, "Unknown right in \"%s\"", rights[0] == '+' || rights[0] == '-' ? rights + 1 : rights);
		goto out;
	}
	if (!identifier_ok(s, id)) {
		imapd_no(s, "CANNOT", "Invalid identifier");
		goto out;
	}
	if (imapd_mailbox_get(s, cmd->u.acl.mailbox, IMAPD_R_ADMIN, &name, &mi, NULL) < 0)
		goto out;
	if (imapd_acl_modify(mi.acl, id, rights, &acl, &err) < 0) {
		imapd_no(s, "CANNOT", "Invalid identifier or rights");
	} else if (store_mailbox_set_acl(s->st, name.ptr, buf_cstr(&acl), &err) < 0) {
		imapd_no_err(s, del ? "deleteacl" : "setacl", &err);
	} else {
		if (s->sel && !strcmp(s->sel->name, name.ptr))
			s->sel->rights = imapd_rights(s, name.ptr, buf_cstr(&acl));
		imapd_log_event(s, del ? "deleteacl" : "setacl", name.ptr, "identifier=%s rights=%s", id,
				rights ? (*rights ? rights : "\"\"") : "-");
	}
	store_mailbox_info_free(&mi);
out:
	buf_free(&acl);
	buf_free(&name);
	return 0;
}

/* ---- LISTRIGHTS ------------------------------------------------------------- */

static int is_owner(const char *internal, const char *id)
{
	struct buf owner = BUF_INIT;
	int yes = mboxname_owner(internal, &owner, NULL) == 1 && !strcmp(owner.ptr, id);
	buf_free(&owner);
	return yes;
}

int imapd_cmd_listrights(struct imapd_session *s, const struct imap_cmd *cmd)
{
	const char *id = cmd->u.acl.identifier;
	struct buf name = BUF_INIT, line = BUF_INIT, req = BUF_INIT;
	struct store_mailbox_info mi;
	if (imapd_mailbox_get(s, cmd->u.acl.mailbox, IMAPD_R_ADMIN, &name, &mi, NULL) < 0)
		goto out;
	/* the owner always has the implicit owner rights; anyone else may be
	 * given any right */
	unsigned required = is_owner(name.ptr, id) ? IMAPD_R_OWNER_IMPLICIT : 0;
	imapd_rights_format(required, &req);
	buf_appends(&line, "* LISTRIGHTS ");
	put_mailbox(s, &line, name.ptr);
	buf_putc(&line, ' ');
	imap_write_astring(&line, id, strlen(id));
	buf_putc(&line, ' ');
	imap_write_string(&line, req.ptr ? req.ptr : "", req.len);
	/* each other right on its own (a letter's bit is its position) */
	for (const char *l = IMAPD_RIGHTS_LETTERS; *l; l++)
		if (!(required & (1u << (l - IMAPD_RIGHTS_LETTERS))))
			buf_printf(&line, " %c", *l);
	buf_appends(&line, "\r\n");
	buf_append(&s->out, line.ptr, line.len);
	store_mailbox_info_free(&mi);
out:
	buf_free(&req);
	buf_free(&line);
	buf_free(&name);
	return 0;
}

/* ---- MYRIGHTS ------------------------------------------------------------------ */

int imapd_cmd_myrights(struct imapd_session *s, const struct imap_cmd *cmd)
{
	struct buf name = BUF_INIT, line = BUF_INIT, letters = BUF_INIT;
	struct store_mailbox_info mi;
	unsigned rights = 0;
	if (imapd_mailbox_get(s, cmd->u.mailbox.mailbox, 0, &name, &mi, &rights) < 0)
		goto out;
	imapd_rights_format(with_legacy(rights), &letters);
	buf_appends(&line, "* MYRIGHTS ");
	put_mailbox(s, &line, name.ptr);
	buf_putc(&line, ' ');
	imap_write_astring(&line, letters.ptr ? letters.ptr : "", letters.len);
	buf_appends(&line, "\r\n");
	buf_append(&s->out, line.ptr, line.len);
	store_mailbox_info_free(&mi);
out:
	buf_free(&letters);
	buf_free(&line);
	buf_free(&name);
	return 0;
}
