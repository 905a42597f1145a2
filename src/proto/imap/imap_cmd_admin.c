/* imap_cmd_admin.c: grammars of ID (RFC 2971), ENABLE (RFC 5161), QUOTA
 * (RFC 9208: GETQUOTA, SETQUOTA), ACL (RFC 4314: SETACL, DELETEACL,
 * LISTRIGHTS) and METADATA (RFC 5464: GETMETADATA, SETMETADATA).
 */
#include <string.h>

#include "proto/imap/imap_private.h"

int imap_parse_id(struct imap_cp *cp, struct imap_cmd *cmd, const struct imap_arg *a)
{
	const struct imap_arg *first;
	if (a && a->type == IMAP_ARG_NIL) {
		cmd->u.id.nil = 1;
		return imap_get_end(cp, a->next);
	}
	if (imap_get_list(cp, &a, "ID parameter list", &first) < 0)
		return -1;
	size_t n = 0;
	for (const struct imap_arg *x = first; x; x = x->next)
		n++;
	if (n % 2)
		return imap_cp_fail(cp, NULL, "ID parameters must be field/value pairs");
	const char **v = imap_cp_alloc(cp, (n ? n : 1) * sizeof(*v));
	n = 0;
	for (const struct imap_arg *x = first; x;) {
		size_t len;
		if (x->type != IMAP_ARG_QUOTED && x->type != IMAP_ARG_LITERAL)
			return imap_cp_fail(cp, x, "ID field must be a string");
		v[n++] = x->str;
		x = x->next;
		if (imap_get_nstring(cp, &x, "ID value", &v[n++], &len) < 0)
			return -1;
	}
	cmd->u.id.params.count = n;
	cmd->u.id.params.v = v;
	return imap_get_end(cp, a);
}

int imap_parse_enable(struct imap_cp *cp, struct imap_cmd *cmd, const struct imap_arg *a)
{
	size_t n = 0;
	if (!a)
		return imap_cp_fail(cp, NULL, "missing capability");
	for (const struct imap_arg *x = a; x; x = x->next)
		n++;
	const char **v = imap_cp_alloc(cp, n * sizeof(*v));
	n = 0;
	while (a)
		if (imap_get_atom(cp, &a, "capability", &v[n++]) < 0)
			return -1;
	cmd->u.enable.count = n;
	cmd->u.enable.v = v;
	return 0;
}

int imap_parse_getquota(struct imap_cp *cp, struct imap_cmd *cmd, const struct imap_arg *a)
{
	if (imap_get_astring(cp, &a, "quota root", &cmd->u.getquota.root) < 0)
		return -1;
	return imap_get_end(cp, a);
}

int imap_parse_setquota(struct imap_cp *cp, struct imap_cmd *cmd, const struct imap_arg *a)
{
	const struct imap_arg *first;
	if (imap_get_astring(cp, &a, "quota root", &cmd->u.setquota.root) < 0 ||
	    imap_get_list(cp, &a, "resource list", &first) < 0)
		return -1;
	size_t n = 0;
	for (const struct imap_arg *x = first; x; x = x->next)
		n++;
	if (n % 2)
		return imap_cp_fail(cp, NULL, "resource limits must be name/limit pairs");
	struct imap_quota_res *res = imap_cp_alloc(cp, (n / 2 + 1) * sizeof(*res));
	n = 0;
	for (const struct imap_arg *x = first; x; n++) {
		const char *name;
		if (imap_get_atom(cp, &x, "resource name", &name) < 0 ||
		    imap_get_number(cp, &x, "resource limit", 0x7fffffffffffffffULL,
				    &res[n].limit) < 0)
			return -1;
		res[n].name = imap_cp_upper(cp, name);
	}
	cmd->u.setquota.count = n;
	cmd->u.setquota.res = res;
	return imap_get_end(cp, a);
}

/* SETACL mailbox identifier rights; DELETEACL / LISTRIGHTS mailbox identifier */
int imap_parse_acl(struct imap_cp *cp, struct imap_cmd *cmd, const struct imap_arg *a)
{
	if (imap_get_astring(cp, &a, "mailbox", &cmd->u.acl.mailbox) < 0 ||
	    imap_get_astring(cp, &a, "identifier", &cmd->u.acl.identifier) < 0)
		return -1;
	if (cmd->id == IMAP_CMD_SETACL &&
	    imap_get_astring(cp, &a, "rights", &cmd->u.acl.rights) < 0)
		return -1;
	return imap_get_end(cp, a);
}

static int entry_valid(const char *s)
{
	size_t n = strlen(s);
	return n >= 2 && n <= MAX_ANNOT_ENTRY && s[0] == '/';
}

int imap_parse_getmetadata(struct imap_cp *cp, struct imap_cmd *cmd, const struct imap_arg *a)
{
	struct imap_strlist *entries = &cmd->u.getmetadata.entries;
	if (a && a->type == IMAP_ARG_LIST) {
		for (const struct imap_arg *x = a->child; x;) {
			uint64_t v;
			if (imap_arg_is_atom(x, "MAXSIZE")) {
				x = x->next;
				if (imap_get_number(cp, &x, "MAXSIZE", 0xffffffffu, &v) < 0)
					return -1;
				cmd->u.getmetadata.has_maxsize = 1;
				cmd->u.getmetadata.maxsize = (uint32_t)v;
			} else if (imap_arg_is_atom(x, "DEPTH")) {
				x = x->next;
				if (imap_arg_is_atom(x, "0"))
					cmd->u.getmetadata.depth = 0;
				else if (imap_arg_is_atom(x, "1"))
					cmd->u.getmetadata.depth = 1;
				else if (imap_arg_is_atom(x, "infinity"))
					cmd->u.getmetadata.depth = IMAP_METADATA_DEPTH_INFINITY;
				else
					return imap_cp_fail(cp, x, "DEPTH must be 0, 1 or infinity");
				x = x->next;
			} else {
				return imap_cp_fail(cp, x, "unknown GETMETADATA option");
			}
		}
		a = a->next;
	}
	if (imap_get_astring(cp, &a, "mailbox", &cmd->u.getmetadata.mailbox) < 0)
		return -1;
	const struct imap_arg *at = a;
	if (a && a->type == IMAP_ARG_LIST) {
		if (imap_get_strlist(cp, a->child, "entry", 0, entries) < 0)
			return -1;
		a = a->next;
	} else {
		const char **v = imap_cp_alloc(cp, sizeof(*v));
		if (imap_get_astring(cp, &a, "entry", &v[0]) < 0)
			return -1;
		entries->count = 1;
		entries->v = v;
	}
	for (size_t i = 0; i < entries->count; i++)
		if (!entry_valid(entries->v[i]))
			return imap_cp_fail(cp, at, "entry names start with \"/\"");
	return imap_get_end(cp, a);
}

int imap_parse_setmetadata(struct imap_cp *cp, struct imap_cmd *cmd, const struct imap_arg *a)
{
	const struct imap_arg *first;
	if (imap_get_astring(cp, &a, "mailbox", &cmd->u.setmetadata.mailbox) < 0 ||
	    imap_get_list(cp, &a, "entry list", &first) < 0)
		return -1;
	size_t n = 0;
	for (const struct imap_arg *x = first; x; x = x->next)
		n++;
	if (n == 0 || n % 2)
		return imap_cp_fail(cp, NULL, "entries must be name/value pairs");
	struct imap_metadata_entry *e = imap_cp_alloc(cp, n / 2 * sizeof(*e));
	n = 0;
	for (const struct imap_arg *x = first; x; n++) {
		const struct imap_arg *at = x;
		if (imap_get_astring(cp, &x, "entry", &e[n].name) < 0)
			return -1;
		if (!entry_valid(e[n].name))
			return imap_cp_fail(cp, at, "entry names start with \"/\"");
		if (imap_get_nstring(cp, &x, "entry value", &e[n].value, &e[n].len) < 0)
			return -1;
	}
	cmd->u.setmetadata.count = n;
	cmd->u.setmetadata.entries = e;
	return imap_get_end(cp, a);
}
