/* sync_dlist.c: mailboxes <-> MAILBOX kvlists (see sync.h). */
#include "sync/sync.h"

#include "lib/xalloc.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

struct annot {
	uint32_t uid;
	char *entry, *userid;
	struct buf value;
	uint64_t modseq;
};

struct rec_rock {
	struct dlist *list;
	struct annot *an;
	size_t nan;
};

static int collect_annot(uint32_t uid, const char *entry, const char *userid, const void *value, size_t len,
			 uint64_t modseq, void *rock)
{
	struct rec_rock *rr = rock;
	rr->an = xrealloc(rr->an, (rr->nan + 1) * sizeof *rr->an);
	struct annot *a = &rr->an[rr->nan++];
	memset(a, 0, sizeof *a);
	a->uid = uid;
	a->entry = xstrdup(entry);
	a->userid = xstrdup(userid);
	buf_append(&a->value, value, len);
	a->modseq = modseq;
	return 0;
}

static void add_annots(struct dlist *list, const struct rec_rock *rr, uint32_t uid)
{
	for (size_t i = 0; i < rr->nan; i++) {
		const struct annot *a = &rr->an[i];
		if (a->uid != uid)
			continue;
		struct dlist *kv = dlist_add_kvlist(list, NULL);
		dlist_add_str(kv, "ENTRY", a->entry);
		dlist_add_str(kv, "USERID", a->userid);
		dlist_add_num(kv, "MODSEQ", uid ? a->modseq : 0);
		dlist_add_bytes(kv, "VALUE", a->value.ptr ? a->value.ptr : "", a->value.len);
	}
}

static int add_record(const struct store_record *r, void *rock)
{
	struct rec_rock *rr = rock;
	struct dlist *kv = dlist_add_kvlist(rr->list, NULL);
	dlist_add_num(kv, "UID", r->uid);
	dlist_add_num(kv, "MODSEQ", r->modseq);
	dlist_add_num(kv, "LAST_UPDATED", (uint64_t)r->last_updated);
	struct dlist *fl = dlist_add_list(kv, "FLAGS");
	struct buf flags = BUF_INIT;
	store_flags_format(r->sysflags, r->keywords, &flags);
	for (const char *p = buf_cstr(&flags); *p;) {
		const char *e = strchr(p, ' ');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		char f[300];
		snprintf(f, sizeof f, "%.*s", (int)n, p);
		if (f[0] == '\\')
			dlist_add_flag(fl, f);
		else
			dlist_add_str(fl, NULL, f);
		p += n + (e ? 1 : 0);
	}
	buf_free(&flags);
	dlist_add_num(kv, "INTERNALDATE", (uint64_t)r->internaldate);
	dlist_add_num(kv, "SIZE", r->size);
	dlist_add_str(kv, "GUID", r->guid);
	struct dlist *an = dlist_add_list(kv, "ANNOTATIONS");
	char v[32];
	if (r->thrid) {
		struct dlist *a = dlist_add_kvlist(an, NULL);
		dlist_add_str(a, "ENTRY", "/vendor/cmu/cyrus-imapd/thrid");
		dlist_add_str(a, "USERID", "");
		dlist_add_num(a, "MODSEQ", 0);
		dlist_add_hex64(a, "VALUE", r->thrid);
	}
	if (r->savedate) {
		struct dlist *a = dlist_add_kvlist(an, NULL);
		dlist_add_str(a, "ENTRY", "/vendor/cmu/cyrus-imapd/savedate");
		dlist_add_str(a, "USERID", "");
		dlist_add_num(a, "MODSEQ", 0);
		snprintf(v, sizeof v, "%lld", (long long)r->savedate);
		dlist_add_str(a, "VALUE", v);
	}
	if (r->createdmodseq) {
		struct dlist *a = dlist_add_kvlist(an, NULL);
		dlist_add_str(a, "ENTRY", "/vendor/cmu/cyrus-imapd/createdmodseq");
		dlist_add_str(a, "USERID", "");
		dlist_add_num(a, "MODSEQ", 0);
		dlist_add_num(a, "VALUE", r->createdmodseq);
	}
	add_annots(an, rr, r->uid);
	if (an->n == 0) {	/* no ANNOTATIONS key when there are none */
		kv->n--;
		dlist_free(&kv->items[kv->n]);
	}
	return 0;
}

int sync_mailbox_dlist(struct store *st, const char *name, int with_records, uint64_t since_modseq,
		       struct dlist **mb_r, struct terr *err)
{
	struct store_mailbox *mb;
	if (store_mailbox_open(st, name, &mb, err) < 0)
		return -1;
	int rc = sync_mailbox_dlist_mb(mb, with_records, since_modseq, mb_r, err);
	store_mailbox_close(&mb);
	return rc;
}

int sync_mailbox_dlist_mb(struct store_mailbox *mbx, int with_records, uint64_t since_modseq, struct dlist **mb_r,
			  struct terr *err)
{
	/* the header and the records of one moment: a delivery committed
	 * between reading them would make the replica's CRC check refuse
	 * the update (a wasted round trip and a full update) */
	int begun;
	if (store_mailbox_read_begin(mbx, &begun, err) < 0)
		return -1;
	const struct store_mailbox_info *mip = store_mailbox_state(mbx);
	const struct store_mailbox_info mi = *mip;
	struct dlist *kv = dlist_new(DL_KVLIST, "MAILBOX");
	dlist_add_str(kv, "UNIQUEID", mi.uniqueid);
	dlist_add_str(kv, "MBOXNAME", mi.name);
	if (mi.mboxtype[0])
		dlist_add_str(kv, "MBOXTYPE", mi.mboxtype);
	dlist_add_num(kv, "SYNC_CRC", mi.sync_crc);
	dlist_add_num(kv, "SYNC_CRC_ANNOT", mi.sync_crc_annot);
	dlist_add_num(kv, "LAST_UID", mi.last_uid);
	dlist_add_num(kv, "HIGHESTMODSEQ", mi.highestmodseq);
	dlist_add_num(kv, "RECENTUID", mi.recentuid);
	dlist_add_num(kv, "RECENTTIME", (uint64_t)mi.recenttime);
	dlist_add_num(kv, "LAST_APPENDDATE", (uint64_t)mi.last_appenddate);
	dlist_add_num(kv, "POP3_LAST_LOGIN", (uint64_t)mi.pop3_last_login);
	dlist_add_num(kv, "POP3_SHOW_AFTER", (uint64_t)mi.pop3_show_after);
	if (mi.xconvmodseq)
		dlist_add_num(kv, "XCONVMODSEQ", mi.xconvmodseq);
	if (mi.raclmodseq)
		dlist_add_num(kv, "RACLMODSEQ", mi.raclmodseq);
	dlist_add_num(kv, "UIDVALIDITY", mi.uidvalidity);
	dlist_add_str(kv, "PARTITION", mi.partition);
	dlist_add_str(kv, "ACL", mi.acl);
	dlist_add_str(kv, "OPTIONS", mi.options);
	if (mi.quotaroot[0])
		dlist_add_str(kv, "QUOTAROOT", mi.quotaroot);
	if (mi.createdmodseq)
		dlist_add_num(kv, "CREATEDMODSEQ", mi.createdmodseq);
	if (mi.foldermodseq)
		dlist_add_num(kv, "FOLDERMODSEQ", mi.foldermodseq);
	struct rec_rock rr = { NULL, NULL, 0 };
	int rc = store_mailbox_annots(mbx, -1, collect_annot, &rr, err);
	size_t nmbox = 0;
	for (size_t i = 0; i < rr.nan; i++)
		nmbox += rr.an[i].uid == 0;
	if (rc == 0 && nmbox)
		add_annots(dlist_add_list(kv, "ANNOTATIONS"), &rr, 0);
	if (rc == 0 && with_records) {
		rr.list = dlist_add_list(kv, "RECORD");
		rc = store_mailbox_records(mbx, since_modseq, 1, add_record, &rr, err);
	}
	for (size_t i = 0; i < rr.nan; i++) {
		free(rr.an[i].entry);
		free(rr.an[i].userid);
		buf_free(&rr.an[i].value);
	}
	free(rr.an);
	store_mailbox_read_end(mbx, begun);
	if (rc < 0) {
		dlist_free(&kv);
		return -1;
	}
	*mb_r = kv;
	return 0;
}

static unsigned flag_bit(const char *f)
{
	static const struct { const char *n; unsigned bit; } sys[] = {
		{ "\\deleted", SYSFLAG_DELETED }, { "\\answered", SYSFLAG_ANSWERED }, { "\\flagged", SYSFLAG_FLAGGED },
		{ "\\draft", SYSFLAG_DRAFT }, { "\\expunged", SYSFLAG_EXPUNGED }, { "\\seen", SYSFLAG_SEEN },
	};
	for (size_t i = 0; i < sizeof sys / sizeof sys[0]; i++)
		if (!strcasecmp(f, sys[i].n))
			return sys[i].bit;
	return 0;
}

int sync_apply_from_dlist(const struct dlist *mb, struct store_apply *a, struct terr *err)
{
	memset(a, 0, sizeof *a);
	uint64_t v;
	if (dlist_get_str(mb, "UNIQUEID", &a->uniqueid) < 0 || dlist_get_str(mb, "MBOXNAME", &a->name) < 0 ||
	    dlist_get_num64(mb, "HIGHESTMODSEQ", &a->highestmodseq) < 0)
		return terr_set(err, TE_INVALID, "MAILBOX lacks UNIQUEID, MBOXNAME or HIGHESTMODSEQ");
	if (dlist_get_str(mb, "MBOXTYPE", &a->mboxtype) < 0)
		a->mboxtype = "";
	const struct dlist *recs = dlist_get_list(mb, "RECORD");
	if (dlist_get_str(mb, "PARTITION", &a->partition) < 0 || dlist_get_num32(mb, "LAST_UID", &a->last_uid) < 0 ||
	    dlist_get_num32(mb, "RECENTUID", &a->recentuid) < 0 || dlist_get_num64(mb, "RECENTTIME", &v) < 0 ||
	    (a->recenttime = (int64_t)v, dlist_get_num64(mb, "LAST_APPENDDATE", &v) < 0) ||
	    (a->last_appenddate = (int64_t)v, dlist_get_num64(mb, "POP3_LAST_LOGIN", &v) < 0) ||
	    (a->pop3_last_login = (int64_t)v, dlist_get_num32(mb, "UIDVALIDITY", &a->uidvalidity) < 0) ||
	    dlist_get_str(mb, "ACL", &a->acl) < 0 || dlist_get_str(mb, "OPTIONS", &a->options) < 0 || !recs)
		return terr_set(err, TE_INVALID, "MAILBOX %s lacks a required key", a->name);
	if (dlist_get_num64(mb, "POP3_SHOW_AFTER", &v) == 0)
		a->pop3_show_after = (int64_t)v;
	dlist_get_num64(mb, "XCONVMODSEQ", &a->xconvmodseq);
	dlist_get_num64(mb, "RACLMODSEQ", &a->raclmodseq);
	dlist_get_num64(mb, "CREATEDMODSEQ", &a->createdmodseq);
	dlist_get_num64(mb, "FOLDERMODSEQ", &a->foldermodseq);
	dlist_get_num32(mb, "SYNC_CRC", &a->sync_crc);
	dlist_get_num32(mb, "SYNC_CRC_ANNOT", &a->sync_crc_annot);
	if (dlist_get_num64(mb, "SINCE_MODSEQ", &a->since_modseq) == 0) {
		a->has_since = 1;
		dlist_get_num32(mb, "SINCE_CRC", &a->since_crc);
		dlist_get_num32(mb, "SINCE_CRC_ANNOT", &a->since_crc_annot);
	}
	struct store_apply_record *rs = xcalloc(recs->n ? recs->n : 1, sizeof *rs);
	a->recs = rs;
	a->nrecs = recs->n;
	size_t acap = 0;
	struct store_apply_annot *as = NULL;
	const struct dlist *mban = dlist_get_list(mb, "ANNOTATIONS");
	a->has_mbox_annots = 1;	/* authoritative: absent = none (reference §4.3.5 step 12) */
	for (size_t k = 0; mban && k < mban->n; k++) {
		const char *entry, *userid;
		const struct dlist *val = dlist_get(mban->items[k], "VALUE");
		if (dlist_get_str(mban->items[k], "ENTRY", &entry) < 0 || dlist_get_str(mban->items[k], "USERID", &userid) < 0 ||
		    !val || val->type != DL_STR)
			continue;
		if (a->nannots == acap)
			as = xrealloc(as, (acap = acap ? acap * 2 : 8) * sizeof *as);
		as[a->nannots++] = (struct store_apply_annot){ 0, entry, userid, val->s.ptr ? val->s.ptr : "", val->s.len };
	}
	for (size_t i = 0; i < recs->n; i++) {
		const struct dlist *r = recs->items[i];
		struct store_apply_record *o = &rs[i];
		const struct dlist *flags = dlist_get_list(r, "FLAGS");
		a->annots = as;
		if (r->type != DL_KVLIST || dlist_get_num32(r, "UID", &o->uid) < 0 ||
		    dlist_get_num64(r, "MODSEQ", &o->modseq) < 0 || dlist_get_num64(r, "LAST_UPDATED", &v) < 0 ||
		    (o->last_updated = (int64_t)v, dlist_get_num64(r, "INTERNALDATE", &v) < 0) ||
		    (o->internaldate = (int64_t)v, dlist_get_num32(r, "SIZE", &o->size) < 0) ||
		    dlist_get_guid(r, "GUID", o->guid) < 0 || !flags) {
			sync_apply_free(a);
			return terr_set(err, TE_INVALID, "MAILBOX %s: record %zu is incomplete", a->name, i + 1);
		}
		struct buf kw = BUF_INIT;
		for (size_t k = 0; k < flags->n; k++) {
			const char *f = dlist_cstr(flags->items[k]);
			if (!f)
				continue;
			if (f[0] == '\\')
				o->sysflags |= flag_bit(f);
			else {
				if (kw.len)
					buf_putc(&kw, ' ');
				buf_appends(&kw, f);
			}
		}
		o->keywords = buf_release(&kw);
		const struct dlist *an = dlist_get_list(r, "ANNOTATIONS");
		for (size_t k = 0; an && k < an->n; k++) {
			const char *entry;
			if (dlist_get_str(an->items[k], "ENTRY", &entry) < 0)
				continue;
			if (!strcmp(entry, "/vendor/cmu/cyrus-imapd/savedate") && dlist_get_num64(an->items[k], "VALUE", &v) == 0)
				o->savedate = (int64_t)v;
			else if (!strcmp(entry, "/vendor/cmu/cyrus-imapd/createdmodseq"))
				dlist_get_num64(an->items[k], "VALUE", &o->createdmodseq);
			else if (!strcmp(entry, "/vendor/cmu/cyrus-imapd/thrid"))
				dlist_get_hex64(an->items[k], "VALUE", &o->thrid);
			else {
				const char *userid;
				const struct dlist *val = dlist_get(an->items[k], "VALUE");
				if (dlist_get_str(an->items[k], "USERID", &userid) < 0 || !val || val->type != DL_STR)
					continue;
				if (a->nannots == acap)
					as = xrealloc(as, (acap = acap ? acap * 2 : 8) * sizeof *as);
				as[a->nannots++] = (struct store_apply_annot){ o->uid, entry, userid,
										val->s.ptr ? val->s.ptr : "", val->s.len };
			}
		}
	}
	a->annots = as;
	return 0;
}

void sync_apply_free(struct store_apply *a)
{
	free((void *)a->annots);
	a->annots = NULL;
	a->nannots = 0;
	struct store_apply_record *rs = (struct store_apply_record *)a->recs;
	for (size_t i = 0; i < a->nrecs; i++)
		free((char *)rs[i].keywords);
	free(rs);
	a->recs = NULL;
	a->nrecs = 0;
}

/* "NO <token> <text>: <cause>" in buf: the cause on one line, bounded. */
static const char *no_with_cause(char *buf, size_t size, const char *token_text, const char *cause)
{
	int n = snprintf(buf, size, "NO %s: ", token_text);
	size_t at = n > 0 && (size_t)n < size ? (size_t)n : 0;
	for (const unsigned char *p = (const unsigned char *)cause; *p && at + 1 < size && at < SYNC_NO_CAUSE_MAX; p++)
		buf[at++] = *p < 0x20 || *p == 0x7f ? ' ' : (char)*p;
	buf[at] = '\0';
	while (at > 0 && buf[at - 1] == ' ')
		buf[--at] = '\0';
	return buf;
}

const char *sync_no_text(const struct terr *err)
{
	static char buf[SYNC_NO_CAUSE_MAX + 64];
	const char *cause = err->msg[0] ? err->msg : terr_code_name(err->code);
	switch (err->code) {
	/* the protocol's own conditions: Cyrus's exact lines */
	case TE_NOTFOUND: return "NO IMAP_MAILBOX_NONEXISTENT No Such Mailbox";
	case TE_MOVED: return "NO IMAP_MAILBOX_MOVED Mailbox exists with another name or uniqueid";
	case TE_CHECKSUM: return "NO IMAP_SYNC_CHECKSUM Checksum Failure";
	case TE_CHANGED: return "NO IMAP_SYNC_CHANGED Changed since last sync";
	case TE_INVALID: return "NO IMAP_PROTOCOL_BAD_PARAMETERS";
	case TE_PROTOCOL:
		snprintf(buf, sizeof buf, "NO IMAP_PROTOCOL_ERROR %.*s", SYNC_NO_CAUSE_MAX,
			 err->msg[0] ? err->msg : "Protocol error");
		return buf;
	/* the replica's own trouble: Cyrus's token, then the real cause */
	case TE_BUSY: return no_with_cause(buf, sizeof buf, "IMAP_MAILBOX_LOCKED Mailbox locked", cause);
	case TE_IO:
	case TE_NOSPACE:
	case TE_CORRUPT: return no_with_cause(buf, sizeof buf, "IMAP_IOERROR System I/O error", cause);
	case TE_OVERQUOTA: return no_with_cause(buf, sizeof buf, "IMAP_QUOTA_EXCEEDED Over quota", cause);
	case TE_TOOBIG: return no_with_cause(buf, sizeof buf, "IMAP_MESSAGE_TOO_LARGE Message too large", cause);
	case TE_PERM: return no_with_cause(buf, sizeof buf, "IMAP_PERMISSION_DENIED Permission denied", cause);
	case TE_EXISTS: return no_with_cause(buf, sizeof buf, "IMAP_MAILBOX_EXISTS Mailbox already exists", cause);
	default: return no_with_cause(buf, sizeof buf, "IMAP_INTERNAL Internal error", cause);
	}
}
