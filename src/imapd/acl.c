/* acl.c: ACL strings and rights (RFC 4314), on Cyrus's ACL format: a
 * sequence of "identifier TAB rights TAB"; an identifier starting with
 * '-' holds negative rights. Pure functions, no store access. */
#include "imapd/imapd-private.h"
#include "store/store.h"

#include <string.h>

int imapd_rights_parse(const char *s, size_t len, unsigned *mask_r, size_t *badpos_r)
{
	unsigned m = 0;
	for (size_t i = 0; i < len; i++) {
		const char *p = s[i] ? strchr(IMAPD_RIGHTS_LETTERS, s[i]) : NULL;
		if (!p) {
			if (s[i] >= '0' && s[i] <= '9')
				continue;	/* Cyrus's site-defined rights: accepted, not used */
			if (badpos_r)
				*badpos_r = i;
			return -1;
		}
		m |= 1u << (p - IMAPD_RIGHTS_LETTERS);
	}
	if (m & IMAPD_R_OLD_CREATE)
		m |= IMAPD_R_CREATE;
	if (m & IMAPD_R_OLD_DELETE)
		m |= IMAPD_R_DELETE_MBOX | IMAPD_R_DELETE_MSG | IMAPD_R_EXPUNGE;
	*mask_r = m;
	return 0;
}

void imapd_rights_format(unsigned mask, struct buf *out)
{
	for (size_t i = 0; IMAPD_RIGHTS_LETTERS[i]; i++)
		if (mask & (1u << i))
			buf_putc(out, IMAPD_RIGHTS_LETTERS[i]);
}

struct rights_ctx {
	const char *user;
	size_t ulen;
	unsigned pos, neg;
};

static int id_is(const char *id, size_t len, const char *want, size_t wlen)
{
	return len == wlen && !memcmp(id, want, len);
}

static void rights_cb(const char *id, size_t idlen, const char *rights, size_t rlen, void *rock)
{
	struct rights_ctx *rc = rock;
	int neg = idlen > 0 && id[0] == '-';
	if (neg) {
		id++;
		idlen--;
	}
	if (!id_is(id, idlen, "anyone", 6) && !(rc->user && id_is(id, idlen, rc->user, rc->ulen)))
		return;
	unsigned m = 0;
	/* unknown letters are skipped: parse letter by letter */
	for (size_t i = 0; i < rlen; i++) {
		unsigned one;
		if (imapd_rights_parse(rights + i, 1, &one, NULL) == 0)
			m |= one;
	}
	if (neg)
		rc->neg |= m;
	else
		rc->pos |= m;
}

unsigned imapd_acl_rights(const char *acl, const char *userid)
{
	struct rights_ctx rc = { userid, userid ? strlen(userid) : 0, 0, 0 };
	store_acl_each(acl, rights_cb, &rc);
	return rc.pos & ~rc.neg;
}

struct modify_ctx {
	const char *id;
	size_t idlen;
	unsigned newmask;
	int del, found;
	struct buf *out;
};

static void put_entry(struct buf *out, const char *id, size_t idlen, unsigned mask)
{
	if (!mask)
		return;
	buf_append(out, id, idlen);
	buf_putc(out, '\t');
	imapd_rights_format(mask, out);
	buf_putc(out, '\t');
}

static void modify_cb(const char *id, size_t idlen, const char *rights, size_t rlen, void *rock)
{
	struct modify_ctx *mc = rock;
	if (id_is(id, idlen, mc->id, mc->idlen)) {
		if (!mc->found && !mc->del)
			put_entry(mc->out, id, idlen, mc->newmask);
		mc->found = 1;
		return;
	}
	buf_append(mc->out, id, idlen);
	buf_putc(mc->out, '\t');
	buf_append(mc->out, rights, rlen);
	buf_putc(mc->out, '\t');
}

static unsigned entry_rights(const char *acl, const char *id, size_t idlen)
{
	struct { const char *id; size_t idlen; unsigned m; } x = { id, idlen, 0 };
	const char *p = acl ? acl : "";
	/* a small walk of our own: store_acl_each with a closure */
	while (*p) {
		const char *t1 = strchr(p, '\t');
		if (!t1)
			break;
		const char *r = t1 + 1;
		const char *t2 = strchr(r, '\t');
		size_t rlen = t2 ? (size_t)(t2 - r) : strlen(r);
		if (id_is(p, (size_t)(t1 - p), x.id, x.idlen))
			for (size_t i = 0; i < rlen; i++) {
				unsigned one;
				if (imapd_rights_parse(r + i, 1, &one, NULL) == 0)
					x.m |= one;
			}
		if (!t2)
			break;
		p = t2 + 1;
	}
	return x.m;
}

int imapd_acl_modify(const char *acl, const char *identifier, const char *rights, struct buf *out,
		     struct terr *err)
{
	size_t idlen = strlen(identifier);
	if (!idlen || strchr(identifier, '\t') || strchr(identifier, '\r') || strchr(identifier, '\n'))
		return terr_set(err, TE_INVALID, "bad identifier");
	struct modify_ctx mc = { identifier, idlen, 0, rights == NULL, 0, out };
	if (rights) {
		int op = 0;
		const char *r = rights;
		if (*r == '+' || *r == '-')
			op = *r++;
		unsigned m;
		size_t bad;
		if (imapd_rights_parse(r, strlen(r), &m, &bad) < 0)
			return terr_set(err, TE_INVALID, "'%c' is not a right", r[bad]);
		unsigned cur = entry_rights(acl, identifier, idlen);
		/* c and d are stored as what they grant */
		m &= ~(unsigned)(IMAPD_R_OLD_CREATE | IMAPD_R_OLD_DELETE);
		mc.newmask = op == '+' ? cur | m : op == '-' ? cur & ~m : m;
		mc.del = mc.newmask == 0;
	}
	buf_reset(out);
	store_acl_each(acl, modify_cb, &mc);
	if (!mc.found && !mc.del)
		put_entry(out, identifier, idlen, mc.newmask);
	return 0;
}
