/* imap_cmd.c: the command table and the small typed grammars.
 *
 * One row per command: name, id, flags (allowed before login, allowed
 * after UID, passed raw) and the grammar that fills the struct imap_cmd
 * union from the argument tree. Larger grammars live in imap_cmd_*.c.
 */
#include <string.h>

#include "proto/imap/imap_private.h"

static int parse_login(struct imap_cp *cp, struct imap_cmd *cmd, const struct imap_arg *a)
{
	if (imap_get_astring(cp, &a, "user name", &cmd->u.login.user) < 0 ||
	    imap_get_astring(cp, &a, "password", &cmd->u.login.password) < 0)
		return -1;
	return imap_get_end(cp, a);
}

static int base64_valid(const char *s, size_t len)
{
	if (len == 1 && s[0] == '=')
		return 1;	/* empty initial response (RFC 4959) */
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		      (c >= '0' && c <= '9') || c == '+' || c == '/' || c == '='))
			return 0;
	}
	return 1;
}

static int parse_authenticate(struct imap_cp *cp, struct imap_cmd *cmd, const struct imap_arg *a)
{
	const char *mech;
	if (imap_get_atom(cp, &a, "mechanism", &mech) < 0)
		return -1;
	cmd->u.authenticate.mech = imap_cp_upper(cp, mech);
	if (a) {
		const struct imap_arg *x = a;
		if (imap_get_atom(cp, &a, "initial response", &cmd->u.authenticate.ir) < 0)
			return -1;
		if (!base64_valid(x->str, x->len))
			return imap_cp_fail(cp, x, "initial response is not base64");
	}
	return imap_get_end(cp, a);
}

/* DELETE SUBSCRIBE UNSUBSCRIBE GETQUOTAROOT GETACL MYRIGHTS */
static int parse_mailbox(struct imap_cp *cp, struct imap_cmd *cmd, const struct imap_arg *a)
{
	if (imap_get_astring(cp, &a, "mailbox", &cmd->u.mailbox.mailbox) < 0)
		return -1;
	return imap_get_end(cp, a);
}

static int parse_rename(struct imap_cp *cp, struct imap_cmd *cmd, const struct imap_arg *a)
{
	if (imap_get_astring(cp, &a, "mailbox", &cmd->u.rename.from) < 0 ||
	    imap_get_astring(cp, &a, "new mailbox name", &cmd->u.rename.to) < 0)
		return -1;
	return imap_get_end(cp, a);
}

static int parse_select(struct imap_cp *cp, struct imap_cmd *cmd, const struct imap_arg *a)
{
	const struct imap_arg *params;
	if (imap_get_astring(cp, &a, "mailbox", &cmd->u.select.mailbox) < 0)
		return -1;
	if (a && a->type == IMAP_ARG_LIST) {
		if (imap_get_list(cp, &a, "parameters", &params) < 0)
			return -1;
		for (const struct imap_arg *x = params; x;) {
			struct imap_select *sl = &cmd->u.select;
			if (imap_arg_is_atom(x, "CONDSTORE")) {
				sl->condstore = 1;
				x = x->next;
				continue;
			}
			if (!imap_arg_is_atom(x, "QRESYNC"))
				return imap_cp_fail(cp, x, "unsupported parameter");
			x = x->next;
			const struct imap_arg *q;
			uint64_t uv;
			if (imap_get_list(cp, &x, "QRESYNC parameters", &q) < 0 ||
			    imap_get_number(cp, &q, "UIDVALIDITY", 0xffffffffULL, &uv) < 0 ||
			    imap_get_number(cp, &q, "mod-sequence", 0x7fffffffffffffffULL, &sl->q_modseq) < 0)
				return -1;
			if (uv == 0)
				return imap_cp_fail(cp, params, "UIDVALIDITY must not be 0");
			sl->qresync = 1;
			sl->q_uidvalidity = (uint32_t)uv;
			if (q && q->type != IMAP_ARG_LIST) {
				if (imap_get_seqset(cp, &q, &sl->q_known) < 0)
					return -1;
				sl->q_has_known = 1;
			}
			if (q) {	/* (known-sequence-set known-uid-set) */
				const struct imap_arg *m;
				struct imap_seqset seqs, uids;
				if (imap_get_list(cp, &q, "sequence match data", &m) < 0 ||
				    imap_get_seqset(cp, &m, &seqs) < 0 || imap_get_seqset(cp, &m, &uids) < 0 ||
				    imap_get_end(cp, m) < 0)
					return -1;
			}
			if (imap_get_end(cp, q) < 0)
				return -1;
		}
	}
	return imap_get_end(cp, a);
}

static int parse_create(struct imap_cp *cp, struct imap_cmd *cmd, const struct imap_arg *a)
{
	const struct imap_arg *params;
	if (imap_get_astring(cp, &a, "mailbox", &cmd->u.create.mailbox) < 0)
		return -1;
	if (a && a->type == IMAP_ARG_LIST) {
		if (imap_get_list(cp, &a, "parameters", &params) < 0)
			return -1;
		for (const struct imap_arg *x = params; x;) {
			if (!imap_arg_is_atom(x, "USE"))
				return imap_cp_fail(cp, x, "unsupported parameter");
			x = x->next;
			if (!x || x->type != IMAP_ARG_LIST)
				return imap_cp_fail(cp, x, "USE needs a list of special-use flags");
			if (imap_get_flags(cp, &x, 0, &cmd->u.create.use) < 0)
				return -1;
			for (size_t i = 0; i < cmd->u.create.use.count; i++)
				if (cmd->u.create.use.v[i][0] != '\\')
					return imap_cp_fail(cp, params, "USE takes \\flags only");
		}
	}
	return imap_get_end(cp, a);
}

/* [flags] [date-time] of one message of APPEND, up to (not including)
 * stop, its literal. */
static int append_opts(struct imap_cp *cp, const struct imap_arg **a, const struct imap_arg *stop,
		       struct imap_append_part *pt)
{
	if (*a != stop && (*a)->type == IMAP_ARG_LIST) {
		pt->has_flags = 1;
		if (imap_get_flags(cp, a, 0, &pt->flags) < 0)
			return -1;
	}
	if (*a != stop && (*a)->type == IMAP_ARG_QUOTED) {
		if (imap_datetime_parse((*a)->str, (*a)->len, &pt->date, &pt->date_tzoff) < 0)
			return imap_cp_fail(cp, *a, "invalid date-time");
		pt->has_date = 1;
		*a = (*a)->next;
	}
	if (*a != stop)
		return imap_cp_fail(cp, *a, "expected flags, date-time or the message literal");
	return 0;
}

/* APPEND mailbox [flags] [date-time], up to (not including) stop. */
static int append_head(struct imap_cp *cp, struct imap_cmd *cmd, const struct imap_arg **a,
		       const struct imap_arg *stop)
{
	struct imap_append *ap = &cmd->u.append;
	if (*a == stop)
		return imap_cp_fail(cp, stop, "missing mailbox");
	if (imap_get_astring(cp, a, "mailbox", &ap->mailbox) < 0)
		return -1;
	struct imap_append_part pt = { 0 };
	if (append_opts(cp, a, stop, &pt) < 0)
		return -1;
	ap->has_flags = pt.has_flags;
	ap->flags = pt.flags;
	ap->has_date = pt.has_date;
	ap->date = pt.date;
	ap->date_tzoff = pt.date_tzoff;
	return 0;
}

/* The next message at or after a: a top-level literal, or the atom
 * CATENATE followed by its list (RFC 4469); NULL if none. */
static const struct imap_arg *next_message(const struct imap_arg *a)
{
	while (a && a->type != IMAP_ARG_LITERAL &&
	       !(imap_arg_is_atom(a, "CATENATE") && a->next && a->next->type == IMAP_ARG_LIST))
		a = a->next;
	return a;
}

/* The last argument of the message that starts at m. */
static const struct imap_arg *message_end(const struct imap_arg *m)
{
	return m->type == IMAP_ARG_LITERAL ? m : m->next;
}

int imap_cmd_append_precheck(struct imap_parser *p)
{
	struct imap_cp cp = { p, "APPEND", p->end_pos };
	struct imap_cmd scratch;
	const struct imap_arg *a = p->tok.root.child, *last = imap_tok_last(p);
	memset(&scratch, 0, sizeof(scratch));
	const struct imap_arg *prev = a ? next_message(a->next) : NULL;
	if (!prev || prev == last)
		return append_head(&cp, &scratch, &a, last);
	/* MULTIAPPEND: the options of the next message, after the last one */
	while (next_message(message_end(prev)->next) != last)
		prev = next_message(message_end(prev)->next);
	struct imap_append_part pt = { 0 };
	a = message_end(prev)->next;
	return append_opts(&cp, &a, last, &pt);
}

/* CATENATE's list: (TEXT literal / URL url)+ into parts. */
static int cat_parts(struct imap_cp *cp, const struct imap_arg *list, size_t *n_r, const struct imap_cat_part **v_r)
{
	size_t n = 0;
	for (const struct imap_arg *x = list->child; x; x = x->next)
		n++;
	if (n == 0 || n % 2)
		return imap_cp_fail(cp, list, "CATENATE takes TEXT literal and URL url pairs");
	struct imap_cat_part *v = imap_cp_alloc(cp, (n / 2) * sizeof(*v));
	memset(v, 0, (n / 2) * sizeof(*v));
	size_t k = 0;
	for (const struct imap_arg *x = list->child; x; x = x->next->next, k++) {
		if (imap_arg_is_atom(x, "TEXT")) {
			if (x->next->type != IMAP_ARG_LITERAL)
				return imap_cp_fail(cp, x->next, "TEXT needs a literal");
			v[k].text = x->next->str;
			v[k].len = x->next->len;
		} else if (imap_arg_is_atom(x, "URL")) {
			const struct imap_arg *u = x->next;
			if (imap_get_astring(cp, &u, "URL", &v[k].url) < 0)
				return -1;
		} else {
			return imap_cp_fail(cp, x, "CATENATE part must be TEXT or URL");
		}
	}
	*n_r = k;
	*v_r = v;
	return 0;
}

static int parse_append(struct imap_cp *cp, struct imap_cmd *cmd, const struct imap_arg *a)
{
	/* the message: the first top-level literal (or CATENATE) after the mailbox */
	const struct imap_arg *msg = a ? next_message(a->next) : NULL;
	if (!msg)
		return imap_cp_fail(cp, NULL, "missing message literal");
	if (append_head(cp, cmd, &a, msg) < 0)
		return -1;
	struct imap_append *ap = &cmd->u.append;
	const struct imap_pending *pd = &cp->p->pending;
	/* buffered, the message literals are one after the other in the
	 * parser's message buffer (its final address: it grew while they
	 * came); streamed, NULL */
	const char *base = NULL;
	for (const struct imap_arg *x = msg; x; x = next_message(message_end(x)->next))
		if (x->type == IMAP_ARG_LITERAL) {
			base = x->str ? buf_cstr(&cp->p->msg) : NULL;
			break;
		}
	uint64_t off = 0;
	if (msg->type == IMAP_ARG_LITERAL) {
		ap->size = msg->len;
		ap->nonsync = pd->is_message ? pd->nonsync : 0;
		ap->message = base;
		off = msg->len;
	} else if (cat_parts(cp, msg->next, &ap->ncat, &ap->cat) < 0) {
		return -1;
	}
	/* MULTIAPPEND: more [flags] [date-time] message groups */
	size_t n = 0;
	for (const struct imap_arg *x = next_message(message_end(msg)->next); x; x = next_message(message_end(x)->next))
		n++;
	if (n == 0)
		return imap_get_end(cp, message_end(msg)->next);
	struct imap_append_part *more = imap_cp_alloc(cp, n * sizeof(*more));
	memset(more, 0, n * sizeof(*more));
	a = message_end(msg)->next;
	for (size_t i = 0; i < n; i++) {
		const struct imap_arg *m = next_message(a);
		if (append_opts(cp, &a, m, &more[i]) < 0)
			return -1;
		if (m->type == IMAP_ARG_LITERAL) {
			more[i].size = m->len;
			if (base)
				more[i].message = base + off;
			off += m->len;
		} else if (cat_parts(cp, m->next, &more[i].ncat, &more[i].cat) < 0) {
			return -1;
		}
		a = message_end(m)->next;
	}
	if (a)
		return imap_cp_fail(cp, a, "unexpected extra arguments");
	ap->nmore = n;
	ap->more = more;
	return 0;
}

static int parse_copy(struct imap_cp *cp, struct imap_cmd *cmd, const struct imap_arg *a)
{
	if (imap_get_seqset(cp, &a, &cmd->u.copy.set) < 0 ||
	    imap_get_astring(cp, &a, "mailbox", &cmd->u.copy.mailbox) < 0)
		return -1;
	return imap_get_end(cp, a);
}

static int parse_expunge(struct imap_cp *cp, struct imap_cmd *cmd, const struct imap_arg *a)
{
	if (cmd->uid && imap_get_seqset(cp, &a, &cmd->u.expunge.set) < 0)
		return -1;
	return imap_get_end(cp, a);
}

static int parse_compress(struct imap_cp *cp, struct imap_cmd *cmd, const struct imap_arg *a)
{
	const char *mech;
	if (imap_get_atom(cp, &a, "mechanism", &mech) < 0)
		return -1;
	cmd->u.compress.mech = imap_cp_upper(cp, mech);
	return imap_get_end(cp, a);
}

#define PRE IMAP_CMDF_PREAUTH
#define UID IMAP_CMDF_UID

static const struct imap_cmd_def cmd_table[] = {
	{ "CAPABILITY", IMAP_CMD_CAPABILITY, PRE, NULL },
	{ "NOOP", IMAP_CMD_NOOP, PRE, NULL },
	{ "LOGOUT", IMAP_CMD_LOGOUT, PRE, NULL },
	{ "STARTTLS", IMAP_CMD_STARTTLS, PRE, NULL },
	{ "AUTHENTICATE", IMAP_CMD_AUTHENTICATE, PRE, parse_authenticate },
	{ "LOGIN", IMAP_CMD_LOGIN, PRE, parse_login },
	{ "ID", IMAP_CMD_ID, PRE, imap_parse_id },
	{ "ENABLE", IMAP_CMD_ENABLE, 0, imap_parse_enable },
	{ "SELECT", IMAP_CMD_SELECT, 0, parse_select },
	{ "EXAMINE", IMAP_CMD_EXAMINE, 0, parse_select },
	{ "CREATE", IMAP_CMD_CREATE, 0, parse_create },
	{ "DELETE", IMAP_CMD_DELETE, 0, parse_mailbox },
	{ "RENAME", IMAP_CMD_RENAME, 0, parse_rename },
	{ "SUBSCRIBE", IMAP_CMD_SUBSCRIBE, 0, parse_mailbox },
	{ "UNSUBSCRIBE", IMAP_CMD_UNSUBSCRIBE, 0, parse_mailbox },
	{ "LIST", IMAP_CMD_LIST, 0, imap_parse_list },
	{ "LSUB", IMAP_CMD_LSUB, 0, imap_parse_lsub },
	{ "NAMESPACE", IMAP_CMD_NAMESPACE, 0, NULL },
	{ "STATUS", IMAP_CMD_STATUS, 0, imap_parse_status },
	{ "APPEND", IMAP_CMD_APPEND, 0, parse_append },
	{ "IDLE", IMAP_CMD_IDLE, 0, NULL },
	{ "CHECK", IMAP_CMD_CHECK, 0, NULL },
	{ "CLOSE", IMAP_CMD_CLOSE, 0, NULL },
	{ "UNSELECT", IMAP_CMD_UNSELECT, 0, NULL },
	{ "UNAUTHENTICATE", IMAP_CMD_UNAUTHENTICATE, 0, NULL },
	{ "EXPUNGE", IMAP_CMD_EXPUNGE, UID, parse_expunge },
	{ "SEARCH", IMAP_CMD_SEARCH, UID, imap_parse_search },
	{ "SORT", IMAP_CMD_SORT, UID, imap_parse_sort },
	{ "THREAD", IMAP_CMD_THREAD, UID, imap_parse_thread },
	{ "FETCH", IMAP_CMD_FETCH, UID, imap_parse_fetch },
	{ "STORE", IMAP_CMD_STORE, UID, imap_parse_store },
	{ "COPY", IMAP_CMD_COPY, UID, parse_copy },
	{ "MOVE", IMAP_CMD_MOVE, UID, parse_copy },
	{ "GETQUOTA", IMAP_CMD_GETQUOTA, 0, imap_parse_getquota },
	{ "GETQUOTAROOT", IMAP_CMD_GETQUOTAROOT, 0, parse_mailbox },
	{ "SETQUOTA", IMAP_CMD_SETQUOTA, 0, imap_parse_setquota },
	{ "GETACL", IMAP_CMD_GETACL, 0, parse_mailbox },
	{ "SETACL", IMAP_CMD_SETACL, 0, imap_parse_acl },
	{ "DELETEACL", IMAP_CMD_DELETEACL, 0, imap_parse_acl },
	{ "LISTRIGHTS", IMAP_CMD_LISTRIGHTS, 0, imap_parse_acl },
	{ "MYRIGHTS", IMAP_CMD_MYRIGHTS, 0, parse_mailbox },
	{ "GETMETADATA", IMAP_CMD_GETMETADATA, 0, imap_parse_getmetadata },
	{ "SETMETADATA", IMAP_CMD_SETMETADATA, 0, imap_parse_setmetadata },
	{ "COMPRESS", IMAP_CMD_COMPRESS, 0, parse_compress },
	{ "SYNCGET", IMAP_CMD_SYNCGET, IMAP_CMDF_RAW, NULL },
	{ "SYNCAPPLY", IMAP_CMD_SYNCAPPLY, IMAP_CMDF_RAW, NULL },
	{ "SYNCRESTORE", IMAP_CMD_SYNCRESTORE, IMAP_CMDF_RAW, NULL },
	{ "SYNCRESTART", IMAP_CMD_SYNCRESTART, 0, NULL },
};

#undef PRE
#undef UID

const struct imap_cmd_def *imap_cmd_lookup(const char *name, size_t len, int uid)
{
	for (size_t i = 0; i < sizeof(cmd_table) / sizeof(cmd_table[0]); i++) {
		const struct imap_cmd_def *d = &cmd_table[i];
		if (!imap_word_eq(name, len, d->name))
			continue;
		if (uid && !(d->flags & IMAP_CMDF_UID))
			return NULL;
		if (!uid && (d->flags & IMAP_CMDF_ONLY_UID))
			return NULL;
		return d;
	}
	return NULL;
}

const char *imap_cmd_name(enum imap_cmd_id id)
{
	for (size_t i = 0; i < sizeof(cmd_table) / sizeof(cmd_table[0]); i++)
		if (cmd_table[i].id == id)
			return cmd_table[i].name;
	return "?";
}

int imap_cmd_build(struct imap_parser *p)
{
	const struct imap_cmd_def *def = p->def;
	struct imap_cp cp = { p, def->name, p->end_pos };
	struct imap_cmd *cmd = &p->cmd;
	const struct imap_arg *args = p->tok.root.child;

	memset(cmd, 0, sizeof(*cmd));
	cmd->tag = p->tag;
	cmd->id = def->id;
	cmd->name = def->name;
	cmd->uid = p->uid;
	cmd->args = args;
	if (!def->parse)
		return imap_get_end(&cp, args);
	return def->parse(&cp, cmd, args);
}
