/* imap_cmd_mbox.c: grammars of LIST (RFC 3501 + RFC 5258 extended, RFC
 * 6154 SPECIAL-USE, RFC 5819 LIST-STATUS), LSUB and STATUS (+ RFC 7162
 * HIGHESTMODSEQ, RFC 8438 SIZE).
 */
#include <string.h>

#include "proto/imap/imap_private.h"

struct opt {
	const char *name;
	unsigned bit;
};

static const struct opt status_opts[] = {
	{ "MESSAGES", IMAP_STATUS_MESSAGES },
	{ "RECENT", IMAP_STATUS_RECENT },
	{ "UIDNEXT", IMAP_STATUS_UIDNEXT },
	{ "UIDVALIDITY", IMAP_STATUS_UIDVALIDITY },
	{ "UNSEEN", IMAP_STATUS_UNSEEN },
	{ "HIGHESTMODSEQ", IMAP_STATUS_HIGHESTMODSEQ },
	{ "SIZE", IMAP_STATUS_SIZE },
	{ "DELETED", IMAP_STATUS_DELETED },
	{ "MAILBOXID", IMAP_STATUS_MAILBOXID },
	{ NULL, 0 },
};

static const struct opt select_opts[] = {
	{ "SUBSCRIBED", IMAP_LIST_SEL_SUBSCRIBED },
	{ "REMOTE", IMAP_LIST_SEL_REMOTE },
	{ "RECURSIVEMATCH", IMAP_LIST_SEL_RECURSIVEMATCH },
	{ "SPECIAL-USE", IMAP_LIST_SEL_SPECIAL_USE },
	{ NULL, 0 },
};

static const struct opt return_opts[] = {
	{ "SUBSCRIBED", IMAP_LIST_RET_SUBSCRIBED },
	{ "CHILDREN", IMAP_LIST_RET_CHILDREN },
	{ "SPECIAL-USE", IMAP_LIST_RET_SPECIAL_USE },
	{ "STATUS", IMAP_LIST_RET_STATUS },
	{ "MYRIGHTS", IMAP_LIST_RET_MYRIGHTS },
	{ NULL, 0 },
};

static unsigned opt_bit(const struct opt *t, const struct imap_arg *a)
{
	if (!a || a->type != IMAP_ARG_ATOM)
		return 0;
	for (; t->name; t++)
		if (imap_word_eq(a->str, a->len, t->name))
			return t->bit;
	return 0;
}

static int status_items(struct imap_cp *cp, const struct imap_arg *first, unsigned *items_r)
{
	unsigned items = 0;
	for (const struct imap_arg *x = first; x; x = x->next) {
		unsigned bit = opt_bit(status_opts, x);
		if (!bit)
			return imap_cp_fail(cp, x, "unknown status item");
		items |= bit;
	}
	if (!items)
		return imap_cp_fail(cp, NULL, "empty status item list");
	*items_r = items;
	return 0;
}

int imap_parse_status(struct imap_cp *cp, struct imap_cmd *cmd, const struct imap_arg *a)
{
	const struct imap_arg *items;
	if (imap_get_astring(cp, &a, "mailbox", &cmd->u.status.mailbox) < 0 ||
	    imap_get_list(cp, &a, "status items", &items) < 0 ||
	    status_items(cp, items, &cmd->u.status.items) < 0)
		return -1;
	return imap_get_end(cp, a);
}

static int list_return(struct imap_cp *cp, struct imap_list *l, const struct imap_arg *first)
{
	for (const struct imap_arg *x = first; x; x = x->next) {
		unsigned bit = opt_bit(return_opts, x);
		if (!bit)
			return imap_cp_fail(cp, x, "unknown RETURN option");
		l->ret |= bit;
		if (bit == IMAP_LIST_RET_STATUS) {
			const struct imap_arg *items;
			x = x->next;
			if (!x || x->type != IMAP_ARG_LIST)
				return imap_cp_fail(cp, x, "STATUS needs a list of items");
			items = x->child;
			if (status_items(cp, items, &l->status_items) < 0)
				return -1;
		}
	}
	return 0;
}

int imap_parse_list(struct imap_cp *cp, struct imap_cmd *cmd, const struct imap_arg *a)
{
	struct imap_list *l = &cmd->u.list;
	if (a && a->type == IMAP_ARG_LIST) {
		l->extended = 1;
		for (const struct imap_arg *x = a->child; x; x = x->next) {
			unsigned bit = opt_bit(select_opts, x);
			if (!bit)
				return imap_cp_fail(cp, x, "unknown selection option");
			l->sel |= bit;
		}
		/* RFC 5258 3.1: RECURSIVEMATCH needs another (non-REMOTE) option */
		if ((l->sel & IMAP_LIST_SEL_RECURSIVEMATCH) &&
		    !(l->sel & (IMAP_LIST_SEL_SUBSCRIBED | IMAP_LIST_SEL_SPECIAL_USE)))
			return imap_cp_fail(cp, a, "RECURSIVEMATCH needs another selection option");
		a = a->next;
	}
	if (imap_get_astring(cp, &a, "reference", &l->ref) < 0)
		return -1;
	if (a && a->type == IMAP_ARG_LIST) {
		l->extended = 1;
		if (imap_get_strlist(cp, a->child, "mailbox pattern", 0, &l->patterns) < 0)
			return -1;
		a = a->next;
	} else {
		const char **v = imap_cp_alloc(cp, sizeof(*v));
		if (imap_get_astring(cp, &a, "mailbox pattern", &v[0]) < 0)
			return -1;
		l->patterns.count = 1;
		l->patterns.v = v;
	}
	if (a) {
		const struct imap_arg *opts;
		if (!imap_arg_is_atom(a, "RETURN"))
			return imap_cp_fail(cp, a, "expected RETURN");
		a = a->next;
		if (imap_get_list(cp, &a, "RETURN options", &opts) < 0 ||
		    list_return(cp, l, opts) < 0)
			return -1;
		l->extended = 1;
	}
	return imap_get_end(cp, a);
}

int imap_parse_lsub(struct imap_cp *cp, struct imap_cmd *cmd, const struct imap_arg *a)
{
	struct imap_list *l = &cmd->u.list;
	const char **v = imap_cp_alloc(cp, sizeof(*v));
	if (imap_get_astring(cp, &a, "reference", &l->ref) < 0 ||
	    imap_get_astring(cp, &a, "mailbox pattern", &v[0]) < 0)
		return -1;
	l->patterns.count = 1;
	l->patterns.v = v;
	return imap_get_end(cp, a);
}
