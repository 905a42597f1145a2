/* cmd_mailbox.c: CREATE (with CREATE-SPECIAL-USE, RFC 6154), DELETE,
 * RENAME, SUBSCRIBE and UNSUBSCRIBE.
 *
 * Rights follow Cyrus: creating needs 'k' on the nearest existing
 * ancestor unless the name is in the user's own hierarchy (admins may
 * create anything, a new user's INBOX included); a new mailbox inherits
 * that ancestor's ACL. DELETE and RENAME need 'x' on the mailbox. DELETE
 * removes just the one mailbox (its children stay), except an admin's
 * DELETE of a user's INBOX, which removes the user (Cyrus's "dm
 * user.zed"), as CREATE of one creates the user. RENAME INBOX moves
 * INBOX's messages into a new mailbox and leaves INBOX empty (RFC 3501
 * 6.3.5). A selected mailbox that this session deletes or renames is
 * unselected first.
 */
#include "imapd/imapd-private.h"

#include "lib/xalloc.h"
#include "store/store.h"

#include <string.h>

/* external with one trailing separator removed ("foo/" -> "foo"), so
 * CREATE "foo/" creates foo as RFC 3501 6.3.3 says. */
static void strip_trailing_sep(const struct imapd_session *s, const char *external, struct buf *out)
{
	size_t n = strlen(external);
	buf_reset(out);
	if (n > 1 && external[n - 1] == s->ns.sep)
		n--;
	buf_append(out, external, n);
}

/* 1 when internal is a user's INBOX (owner in *owner_r, may be NULL). */
static int is_user_inbox(const char *internal, struct buf *owner_r)
{
	struct buf owner = BUF_INIT, inbox = BUF_INIT;
	int r = mboxname_owner(internal, &owner, NULL) == 1 && mboxname_user_inbox(owner.ptr, &inbox, NULL) == 0 &&
		!strcmp(inbox.ptr, internal);
	if (r && owner_r) {
		buf_reset(owner_r);
		buf_appends(owner_r, owner.ptr);
	}
	buf_free(&owner);
	buf_free(&inbox);
	return r;
}

/* The nearest existing ancestor of internal: 1 with its ACL in acl_r and
 * its name in parent_r, 0 if there is none. */
static int nearest_ancestor(struct imapd_session *s, const char *internal, struct buf *parent_r, struct buf *acl_r)
{
	struct buf name = BUF_INIT;
	buf_appends(&name, internal);
	int found = 0;
	for (;;) {
		char *dot = strrchr(name.ptr, '.');
		if (!dot)
			break;
		buf_truncate(&name, (size_t)(dot - name.ptr));
		struct store_mailbox_info mi = { 0 };
		struct terr err = { 0 };
		if (store_mailbox_get(s->st, name.ptr, &mi, &err) == 0) {
			buf_reset(acl_r);
			buf_appends(acl_r, mi.acl ? mi.acl : "");
			buf_reset(parent_r);
			buf_appends(parent_r, name.ptr);
			store_mailbox_info_free(&mi);
			found = 1;
			break;
		}
	}
	buf_free(&name);
	return found;
}

/* May the user create internal? 0 with *inherit_r set when the new
 * mailbox takes an ancestor's ACL (acl_r), -1 with a NO set. */
static int may_create(struct imapd_session *s, const char *internal, int *inherit_r, struct buf *acl_r)
{
	struct buf owner = BUF_INIT, parent = BUF_INIT;
	int personal = mboxname_owner(internal, &owner, NULL);
	int own = personal == 1 && !strcmp(owner.ptr, s->user);
	*inherit_r = nearest_ancestor(s, internal, &parent, acl_r);
	int ok = s->isadmin || own;
	if (!ok && *inherit_r)
		ok = (imapd_rights(s, parent.ptr, acl_r->ptr) & IMAPD_R_CREATE) != 0;
	buf_free(&owner);
	buf_free(&parent);
	if (personal < 0) {
		imapd_no(s, "CANNOT", "Invalid mailbox name");
		return -1;
	}
	if (!ok) {
		imapd_no(s, "NOPERM", "Permission denied");
		return -1;
	}
	return 0;
}

/* 1 when the mailbox exists, 0 when not, -1 (NO set) on error. */
static int mailbox_exists(struct imapd_session *s, const char *internal)
{
	struct store_mailbox_info mi = { 0 };
	struct terr err = { 0 };
	if (store_mailbox_get(s->st, internal, &mi, &err) == 0) {
		store_mailbox_info_free(&mi);
		return 1;
	}
	if (err.code == TE_NOTFOUND)
		return 0;
	imapd_no_err(s, "mailbox_get", &err);
	return -1;
}

/* Creates internal for CREATE: a new user's INBOX (admins) or a plain
 * mailbox. 0, or -1 with a NO set. */
static int create_one(struct imapd_session *s, const char *internal, int inherit, const char *acl)
{
	struct terr err = { 0 };
	struct buf owner = BUF_INIT;
	int rc;
	if (is_user_inbox(internal, &owner)) {
		/* only admins get here for another user: CREATE user/x makes x */
		rc = store_user_create(s->st, owner.ptr, NULL, &err);
	} else {
		struct store_mailbox_create_opts o = { 0 };
		o.acl = inherit ? acl : NULL;
		rc = store_mailbox_create(s->st, internal, &o, &err);
	}
	buf_free(&owner);
	if (rc < 0) {
		if (err.code == TE_INVALID)
			imapd_no(s, "CANNOT", "Cannot create this mailbox");
		else
			imapd_no_err(s, "create", &err);
		return -1;
	}
	return 0;
}

/* Sets the special-use annotation of a new mailbox from CREATE's USE
 * list; on failure the mailbox is removed again (RFC 6154 5.2). */
static int create_set_use(struct imapd_session *s, const char *internal, const struct buf *use)
{
	struct terr err = { 0 };
	struct buf owner = BUF_INIT;
	imapd_specialuse_userid(internal, &owner);
	int rc = store_annot_set(s->st, internal, 0, "/specialuse", buf_cstr(&owner), use->ptr, use->len, &err);
	buf_free(&owner);
	if (rc == 0)
		return 0;
	imapd_no_err(s, "create_specialuse", &err);
	struct terr e2 = { 0 };
	store_mailbox_delete(s->st, internal, &e2);
	return -1;
}

int imapd_cmd_create(struct imapd_session *s, const struct imap_cmd *cmd)
{
	struct buf ext = BUF_INIT, name = BUF_INIT, acl = BUF_INIT, use = BUF_INIT;
	int inherit = 0;
	strip_trailing_sep(s, cmd->u.create.mailbox, &ext);
	if (imapd_name_in(s, ext.ptr, &name) < 0)
		goto out;
	if (cmd->u.create.use.count) {
		struct buf owner = BUF_INIT;
		int personal = mboxname_owner(name.ptr, &owner, NULL) == 1;
		buf_free(&owner);
		if (imapd_specialuse_check(cmd->u.create.use.v, cmd->u.create.use.count, &use) < 0 || !personal) {
			imapd_no(s, "USEATTR", "Unsupported special-use attribute");
			goto out;
		}
	}
	int ex = mailbox_exists(s, name.ptr);
	if (ex != 0) {
		if (ex > 0)
			imapd_no(s, "ALREADYEXISTS", "Mailbox already exists");
		goto out;
	}
	if (may_create(s, name.ptr, &inherit, &acl) < 0 || create_one(s, name.ptr, inherit, acl.ptr) < 0)
		goto out;
	if (use.len && create_set_use(s, name.ptr, &use) < 0)
		goto out;
	imapd_log_event(s, "create", name.ptr, "specialuse=%s", use.len ? use.ptr : "-");
	struct store_mailbox_info mi = { 0 };
	struct terr err = { 0 };
	struct buf code = BUF_INIT;
	if (store_mailbox_get(s->st, name.ptr, &mi, &err) == 0)	/* RFC 8474 */
		buf_printf(&code, "MAILBOXID (%s)", mi.uniqueid);
	store_mailbox_info_free(&mi);
	imapd_ok(s, code.len ? code.ptr : NULL, "CREATE completed");
	buf_free(&code);
out:
	buf_free(&ext);
	buf_free(&name);
	buf_free(&acl);
	buf_free(&use);
	return 0;
}

/* Unselects the selected mailbox when it is name or (children) below it. */
static void unselect_if(struct imapd_session *s, const char *name, int children)
{
	if (!s->sel)
		return;
	size_t n = strlen(name);
	const char *sel = s->sel->name;
	if (!strcmp(sel, name) || (children && !strncmp(sel, name, n) && sel[n] == '.')) {
		imapd_view_free(&s->sel);
		imapd_loaded_clear(&s->cur);
	}
}

int imapd_cmd_delete(struct imapd_session *s, const struct imap_cmd *cmd)
{
	struct buf name = BUF_INIT;
	struct store_mailbox_info mi = { 0 };
	struct terr err = { 0 };
	if (imapd_mailbox_get(s, cmd->u.mailbox.mailbox, IMAPD_R_DELETE_MBOX, &name, &mi, NULL) < 0)
		goto out;
	store_mailbox_info_free(&mi);
	struct buf owner = BUF_INIT;
	if (is_user_inbox(name.ptr, &owner)) {
		/* an admin's DELETE user.zed removes the user, as Cyrus does
		 * (cyradm's "dm user.zed"); the store logs UNUSER */
		if (!s->isadmin) {
			imapd_no(s, "CANNOT", "An INBOX cannot be deleted");
		} else if (!strcmp(owner.ptr, s->user)) {
			imapd_no(s, "CANNOT", "Cannot delete the user logged in");
		} else {
			unselect_if(s, name.ptr, 1);
			if (store_user_delete(s->st, owner.ptr, &err) < 0) {
				imapd_no_err(s, "delete_user", &err);
			} else {
				imapd_log_event(s, "delete_user", name.ptr, "owner=%s", owner.ptr);
				imapd_ok(s, NULL, "DELETE completed");
			}
		}
		buf_free(&owner);
		goto out;
	}
	buf_free(&owner);
	unselect_if(s, name.ptr, 0);
	if (store_mailbox_delete(s->st, name.ptr, &err) < 0) {
		imapd_no_err(s, "delete", &err);
		goto out;
	}
	imapd_log_event(s, "delete", name.ptr, "%s", "");
	imapd_ok(s, NULL, "DELETE completed");
out:
	buf_free(&name);
	return 0;
}

/* ---- RENAME ------------------------------------------------------------ */

struct uid_list {
	uint32_t *v;
	size_t n, cap;
};

struct move_ctx {
	struct imapd_session *s;
	const char *from, *to;
	struct uid_list moved;
	struct buf data;
	struct terr err;
};

static int move_record(const struct store_record *r, void *rock)
{
	struct move_ctx *m = rock;
	buf_reset(&m->data);
	if (store_message_read(m->s->st, m->from, r->guid, &m->data, &m->err) < 0)
		return -1;
	struct store_append_opts o = { 0 };
	o.sysflags = r->sysflags;
	o.keywords = r->keywords && *r->keywords ? r->keywords : NULL;
	o.internaldate = r->internaldate;
	uint32_t uid;
	if (store_append(m->s->st, m->to, m->data.ptr ? m->data.ptr : "", m->data.len, &o, &uid, &m->err) < 0)
		return -1;
	if (m->moved.n == m->moved.cap) {
		m->moved.cap = m->moved.cap ? 2 * m->moved.cap : 64;
		m->moved.v = xrealloc(m->moved.v, m->moved.cap * sizeof *m->moved.v);
	}
	m->moved.v[m->moved.n++] = r->uid;
	return 0;
}

/* RENAME INBOX to: a new mailbox gets INBOX's messages, which are then
 * expunged from INBOX. 0, or -1 with a NO set. */
static int rename_inbox(struct imapd_session *s, const char *inbox, const char *to, int inherit, const char *acl)
{
	if (create_one(s, to, inherit, acl) < 0)
		return -1;
	struct move_ctx m = { 0 };
	m.s = s;
	m.from = inbox;
	m.to = to;
	int rc = store_records(s->st, inbox, 0, 0, move_record, &m, &m.err);
	if (rc == 0 && m.moved.n)
		rc = store_expunge(s->st, inbox, m.moved.v, m.moved.n, NULL, &m.err);
	if (rc < 0)
		imapd_no_err(s, "rename_inbox", &m.err);
	else
		imapd_log_event(s, "rename_inbox", inbox, "to=%s moved=%zu", to, m.moved.n);
	free(m.moved.v);
	buf_free(&m.data);
	return rc;
}

struct subs_ctx {
	const char *from;
	size_t flen;
	char **names;
	size_t n, cap;
};

static int collect_sub(const char *name, void *rock)
{
	struct subs_ctx *c = rock;
	if (strncmp(name, c->from, c->flen) || (name[c->flen] && name[c->flen] != '.'))
		return 0;
	if (c->n == c->cap) {
		c->cap = c->cap ? 2 * c->cap : 8;
		c->names = xrealloc(c->names, c->cap * sizeof *c->names);
	}
	c->names[c->n++] = xstrdup(name);
	return 0;
}

/* Moves the user's subscriptions of from (and below) to to, as Cyrus
 * does. Failures are logged only: the rename itself has happened. */
static void rename_subs(struct imapd_session *s, const char *from, const char *to)
{
	struct subs_ctx c = { 0 };
	struct terr err = { 0 };
	struct buf nn = BUF_INIT;
	c.from = from;
	c.flen = strlen(from);
	if (store_subs_list(s->st, s->user, collect_sub, &c, &err) < 0)
		imapd_log_event(s, "rename_subs_failed", from, "%s", "");
	for (size_t i = 0; i < c.n; i++) {
		buf_reset(&nn);
		buf_appends(&nn, to);
		buf_appends(&nn, c.names[i] + c.flen);
		if (store_subscribe(s->st, s->user, c.names[i], 0, &err) < 0 ||
		    store_subscribe(s->st, s->user, nn.ptr, 1, &err) < 0)
			imapd_log_event(s, "rename_subs_failed", c.names[i], "%s", "");
		free(c.names[i]);
	}
	free(c.names);
	buf_free(&nn);
}

/* Same owner for both names (the store renames within one owner). */
static int same_owner(const char *a, const char *b)
{
	struct buf oa = BUF_INIT, ob = BUF_INIT;
	int r = mboxname_owner(a, &oa, NULL) >= 0 && mboxname_owner(b, &ob, NULL) >= 0 &&
		!strcmp(buf_cstr(&oa), buf_cstr(&ob));
	buf_free(&oa);
	buf_free(&ob);
	return r;
}

static int rename_check_target(struct imapd_session *s, const char *from, const char *to)
{
	size_t n = strlen(from);
	if (!strncmp(to, from, n) && (to[n] == '\0' || to[n] == '.')) {
		imapd_no(s, "CANNOT", "Cannot rename a mailbox into itself");
		return -1;
	}
	if (!same_owner(from, to)) {
		imapd_no(s, "CANNOT", "Cannot rename a mailbox to another user");
		return -1;
	}
	int ex = mailbox_exists(s, to);
	if (ex > 0)
		imapd_no(s, "ALREADYEXISTS", "Mailbox already exists");
	return ex != 0 ? -1 : 0;
}

int imapd_cmd_rename(struct imapd_session *s, const struct imap_cmd *cmd)
{
	struct buf from = BUF_INIT, to = BUF_INIT, ext = BUF_INIT, acl = BUF_INIT;
	struct store_mailbox_info mi = { 0 };
	struct terr err = { 0 };
	int inherit = 0;
	if (imapd_mailbox_get(s, cmd->u.rename.from, IMAPD_R_DELETE_MBOX, &from, &mi, NULL) < 0)
		goto out;
	store_mailbox_info_free(&mi);
	strip_trailing_sep(s, cmd->u.rename.to, &ext);
	if (imapd_name_in(s, ext.ptr, &to) < 0)
		goto out;
	int inbox = is_user_inbox(from.ptr, NULL);
	if (inbox && strncmp(to.ptr, from.ptr, from.len) == 0 && to.ptr[from.len] == '.') {
		/* INBOX -> INBOX/old is fine: INBOX's children do not move */
	} else if (rename_check_target(s, from.ptr, to.ptr) < 0) {
		goto out;
	}
	if (inbox && mailbox_exists(s, to.ptr) != 0) {
		if (!s->res.resp)
			imapd_no(s, "ALREADYEXISTS", "Mailbox already exists");
		goto out;
	}
	if (may_create(s, to.ptr, &inherit, &acl) < 0)
		goto out;
	if (inbox) {
		if (rename_inbox(s, from.ptr, to.ptr, inherit, acl.ptr) < 0)
			goto out;
	} else {
		unselect_if(s, from.ptr, 1);
		if (store_mailbox_rename(s->st, from.ptr, to.ptr, 1, &err) < 0) {
			imapd_no_err(s, "rename", &err);
			goto out;
		}
		rename_subs(s, from.ptr, to.ptr);
		imapd_log_event(s, "rename", from.ptr, "to=%s", to.ptr);
	}
	imapd_ok(s, NULL, "RENAME completed");
out:
	buf_free(&from);
	buf_free(&to);
	buf_free(&ext);
	buf_free(&acl);
	return 0;
}

/* ---- SUBSCRIBE / UNSUBSCRIBE ----------------------------------------- */

int imapd_cmd_subscribe(struct imapd_session *s, const struct imap_cmd *cmd)
{
	int on = cmd->id == IMAP_CMD_SUBSCRIBE;
	struct buf name = BUF_INIT;
	struct store_mailbox_info mi = { 0 };
	struct terr err = { 0 };
	if (on) {
		/* only a mailbox the user can see (Cyrus without allowallsubscribe) */
		if (imapd_mailbox_get(s, cmd->u.mailbox.mailbox, 0, &name, &mi, NULL) < 0)
			goto out;
		store_mailbox_info_free(&mi);
	} else if (imapd_name_in(s, cmd->u.mailbox.mailbox, &name) < 0) {
		goto out;
	}
	if (store_subscribe(s->st, s->user, name.ptr, on, &err) < 0) {
		imapd_no_err(s, on ? "subscribe" : "unsubscribe", &err);
		goto out;
	}
	imapd_log_event(s, on ? "subscribe" : "unsubscribe", name.ptr, "%s", "");
	imapd_ok(s, NULL, "%s completed", on ? "SUBSCRIBE" : "UNSUBSCRIBE");
out:
	buf_free(&name);
	return 0;
}
