/* imap_cmd_dump.c: a canonical one-line text form of a typed command.
 *
 * Used by trace logging and by the tests and the fuzzer, which compare
 * the dumps of the same input fed whole and in pieces. Secrets (LOGIN
 * password, SASL initial response) appear only as their length.
 */
#include <inttypes.h>
#include <string.h>

#include "lib/buf.h"
#include "proto/imap/imap_cmd.h"

static void dstr(struct buf *b, const char *s, size_t len)
{
	if (!s) {
		buf_appends(b, "NIL");
		return;
	}
	buf_putc(b, '"');
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\')
			buf_printf(b, "\\x%02x", c);
		else
			buf_putc(b, (char)c);
	}
	buf_putc(b, '"');
}

static void dcstr(struct buf *b, const char *key, const char *s)
{
	buf_printf(b, " %s=", key);
	dstr(b, s, s ? strlen(s) : 0);
}

static void dlist(struct buf *b, const char *key, const struct imap_strlist *l)
{
	buf_printf(b, " %s=(", key);
	for (size_t i = 0; i < l->count; i++) {
		if (i)
			buf_putc(b, ' ');
		dstr(b, l->v[i], l->v[i] ? strlen(l->v[i]) : 0);
	}
	buf_putc(b, ')');
}

static void dset(struct buf *b, const struct imap_seqset *set)
{
	buf_appends(b, " set=");
	if (set->saved) {
		buf_putc(b, '$');
		return;
	}
	for (size_t i = 0; i < set->count; i++) {
		const struct imap_seq_range *r = &set->ranges[i];
		if (i)
			buf_putc(b, ',');
		if (r->lo == IMAP_SEQ_STAR)
			buf_putc(b, '*');
		else
			buf_printf(b, "%" PRIu32, r->lo);
		if (r->hi != r->lo) {
			if (r->hi == IMAP_SEQ_STAR)
				buf_appends(b, ":*");
			else
				buf_printf(b, ":%" PRIu32, r->hi);
		}
	}
}

static const char *const fetch_names[] = {
	"ENVELOPE", "FLAGS", "INTERNALDATE", "RFC822", "RFC822.HEADER", "RFC822.SIZE",
	"RFC822.TEXT", "BODY", "BODYSTRUCTURE", "UID", "MODSEQ", "BODY[]", "EMAILID", "THREADID",
	"SAVEDATE", "PREVIEW", "BINARY[]", "BINARY.SIZE[]",
};

static const char *const sect_names[] = {
	"", "HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT", "MIME",
};

static void dfetch(struct buf *b, const struct imap_fetch *f)
{
	dset(b, &f->set);
	if (f->macro)
		buf_printf(b, " macro=%s", f->macro);
	buf_appends(b, " atts=(");
	for (size_t i = 0; i < f->natts; i++) {
		const struct imap_fetch_att *a = &f->atts[i];
		if (i)
			buf_putc(b, ' ');
		if (a->item == IMAP_FETCH_BINARY || a->item == IMAP_FETCH_BINARY_SIZE) {
			buf_appends(b, a->item == IMAP_FETCH_BINARY_SIZE ? "BINARY.SIZE[" : a->peek ? "BINARY.PEEK[" : "BINARY[");
			for (size_t k = 0; k < a->section.nparts; k++)
				buf_printf(b, "%s%" PRIu32, k ? "." : "", a->section.parts[k]);
			buf_putc(b, ']');
			if (a->partial)
				buf_printf(b, "<%" PRIu32 ".%" PRIu32 ">", a->offset, a->length);
			continue;
		}
		if (a->item != IMAP_FETCH_BODY_SECTION) {
			buf_appends(b, fetch_names[a->item]);
			if (a->lazy)
				buf_appends(b, " (LAZY)");
			continue;
		}
		buf_appends(b, a->peek ? "BODY.PEEK[" : "BODY[");
		for (size_t k = 0; k < a->section.nparts; k++)
			buf_printf(b, "%s%" PRIu32, k ? "." : "", a->section.parts[k]);
		if (a->section.spec != IMAP_SECT_ALL)
			buf_printf(b, "%s%s", a->section.nparts ? "." : "",
				   sect_names[a->section.spec]);
		if (a->section.spec == IMAP_SECT_HEADER_FIELDS ||
		    a->section.spec == IMAP_SECT_HEADER_FIELDS_NOT)
			dlist(b, "f", &a->section.fields);
		buf_putc(b, ']');
		if (a->partial)
			buf_printf(b, "<%" PRIu32 ".%" PRIu32 ">", a->offset, a->length);
	}
	buf_putc(b, ')');
	if (f->has_changedsince)
		buf_printf(b, " changedsince=%" PRIu64, f->changedsince);
	if (f->vanished)
		buf_appends(b, " vanished");
}

static const char *const skey_names[] = {
	"ALL", "ANSWERED", "BCC", "BEFORE", "BODY", "CC", "DELETED", "DRAFT", "FLAGGED",
	"FROM", "HEADER", "KEYWORD", "LARGER", "NEW", "NOT", "OLD", "ON", "OR", "RECENT",
	"SEEN", "SENTBEFORE", "SENTON", "SENTSINCE", "SINCE", "SMALLER", "SUBJECT", "TEXT",
	"TO", "UID", "UNANSWERED", "UNDELETED", "UNDRAFT", "UNFLAGGED", "UNKEYWORD",
	"UNSEEN", "SEQ", "AND", "MODSEQ", "OLDER", "YOUNGER", "EMAILID", "THREADID",
	"SAVEDBEFORE", "SAVEDON", "SAVEDSINCE", "SAVEDATESUPPORTED",
};

static void dkey(struct buf *b, const struct imap_search_key *k)
{
	buf_printf(b, "(%s", skey_names[k->key]);
	switch (k->key) {
	case IMAP_SK_BEFORE: case IMAP_SK_ON: case IMAP_SK_SINCE:
	case IMAP_SK_SAVEDBEFORE: case IMAP_SK_SAVEDON: case IMAP_SK_SAVEDSINCE:
	case IMAP_SK_SENTBEFORE: case IMAP_SK_SENTON: case IMAP_SK_SENTSINCE:
		buf_printf(b, " %lld", (long long)k->date);
		break;
	case IMAP_SK_LARGER: case IMAP_SK_SMALLER: case IMAP_SK_OLDER: case IMAP_SK_YOUNGER:
		buf_printf(b, " %" PRIu64, k->num);
		break;
	case IMAP_SK_MODSEQ:
		if (k->field) {
			dcstr(b, "entry", k->field);
			dcstr(b, "type", k->entry_type);
		}
		buf_printf(b, " %" PRIu64, k->num);
		break;
	case IMAP_SK_UID: case IMAP_SK_SEQSET:
		dset(b, &k->set);
		break;
	case IMAP_SK_HEADER:
		dcstr(b, "field", k->field);
		/* fall through */
	default:
		if (k->str) {
			buf_putc(b, ' ');
			dstr(b, k->str, strlen(k->str));
		}
	}
	for (const struct imap_search_key *c = k->child; c; c = c->next) {
		buf_putc(b, ' ');
		dkey(b, c);
	}
	buf_putc(b, ')');
}

void imap_cmd_dump(struct buf *b, const struct imap_cmd *cmd)
{
	const char *tag = cmd->tag ? cmd->tag : "*";
	buf_printf(b, "%s %s%s", tag, cmd->uid ? "UID " : "", cmd->name ? cmd->name : "?");
	switch (cmd->id) {
	case IMAP_CMD_LOGIN:
		dcstr(b, "user", cmd->u.login.user);
		buf_printf(b, " password=(%zu bytes)", strlen(cmd->u.login.password));
		break;
	case IMAP_CMD_AUTHENTICATE:
		dcstr(b, "mech", cmd->u.authenticate.mech);
		if (cmd->u.authenticate.ir)
			buf_printf(b, " ir=(%zu bytes)", strlen(cmd->u.authenticate.ir));
		break;
	case IMAP_CMD_ENABLE:
		dlist(b, "caps", &cmd->u.enable);
		break;
	case IMAP_CMD_ID:
		if (cmd->u.id.nil)
			buf_appends(b, " nil");
		else
			dlist(b, "params", &cmd->u.id.params);
		break;
	case IMAP_CMD_SELECT: case IMAP_CMD_EXAMINE:
		dcstr(b, "mailbox", cmd->u.select.mailbox);
		if (cmd->u.select.condstore)
			buf_appends(b, " condstore");
		if (cmd->u.select.qresync) {
			buf_printf(b, " qresync=%" PRIu32 ",%" PRIu64, cmd->u.select.q_uidvalidity, cmd->u.select.q_modseq);
			if (cmd->u.select.q_has_known)
				dset(b, &cmd->u.select.q_known);
		}
		break;
	case IMAP_CMD_CREATE:
		dcstr(b, "mailbox", cmd->u.create.mailbox);
		if (cmd->u.create.use.count)
			dlist(b, "use", &cmd->u.create.use);
		break;
	case IMAP_CMD_DELETE: case IMAP_CMD_SUBSCRIBE: case IMAP_CMD_UNSUBSCRIBE:
	case IMAP_CMD_GETQUOTAROOT: case IMAP_CMD_GETACL: case IMAP_CMD_MYRIGHTS:
		dcstr(b, "mailbox", cmd->u.mailbox.mailbox);
		break;
	case IMAP_CMD_RENAME:
		dcstr(b, "from", cmd->u.rename.from);
		dcstr(b, "to", cmd->u.rename.to);
		break;
	case IMAP_CMD_LIST: case IMAP_CMD_LSUB:
		if (cmd->u.list.extended)
			buf_printf(b, " ext sel=%#x ret=%#x status=%#x", cmd->u.list.sel,
				   cmd->u.list.ret, cmd->u.list.status_items);
		dcstr(b, "ref", cmd->u.list.ref);
		dlist(b, "pat", &cmd->u.list.patterns);
		break;
	case IMAP_CMD_STATUS:
		dcstr(b, "mailbox", cmd->u.status.mailbox);
		buf_printf(b, " items=%#x", cmd->u.status.items);
		break;
	case IMAP_CMD_APPEND:
		dcstr(b, "mailbox", cmd->u.append.mailbox);
		if (cmd->u.append.has_flags)
			dlist(b, "flags", &cmd->u.append.flags);
		if (cmd->u.append.has_date)
			buf_printf(b, " date=%lld tz=%d", (long long)cmd->u.append.date,
				   cmd->u.append.date_tzoff);
		buf_printf(b, " size=%" PRIu64 "%s", cmd->u.append.size,
			   cmd->u.append.nonsync ? " nonsync" : "");
		for (size_t k = 0; k < cmd->u.append.ncat; k++)
			if (cmd->u.append.cat[k].url)
				dcstr(b, "url", cmd->u.append.cat[k].url);
			else
				buf_printf(b, " text=%zu", cmd->u.append.cat[k].len);
		for (size_t i = 0; i < cmd->u.append.nmore; i++) {
			const struct imap_append_part *pt = &cmd->u.append.more[i];
			buf_printf(b, " +msg");
			if (pt->has_flags)
				dlist(b, "flags", &pt->flags);
			if (pt->has_date)
				buf_printf(b, " date=%lld tz=%d", (long long)pt->date, pt->date_tzoff);
			buf_printf(b, " size=%" PRIu64, pt->size);
			for (size_t k = 0; k < pt->ncat; k++)
				if (pt->cat[k].url)
					dcstr(b, "url", pt->cat[k].url);
				else
					buf_printf(b, " text=%zu", pt->cat[k].len);
		}
		break;
	case IMAP_CMD_SEARCH: case IMAP_CMD_SORT: case IMAP_CMD_THREAD:
		if (cmd->u.search.thread)
			buf_printf(b, " thread=%s", cmd->u.search.thread == IMAP_THREAD_REFERENCES ? "REFERENCES"
												 : "ORDEREDSUBJECT");
		if (cmd->u.search.nsort) {
			static const char *const sk[] = { "ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO",
							  "DISPLAYFROM", "DISPLAYTO" };
			buf_appends(b, " sort=(");
			for (size_t i = 0; i < cmd->u.search.nsort; i++)
				buf_printf(b, "%s%s%s", i ? " " : "", cmd->u.search.sort[i].reverse ? "REVERSE " : "",
					   sk[cmd->u.search.sort[i].key]);
			buf_putc(b, ')');
		}
		if (cmd->u.search.has_return)
			dlist(b, "return", &cmd->u.search.ret);
		if (cmd->u.search.charset)
			dcstr(b, "charset", cmd->u.search.charset);
		buf_putc(b, ' ');
		dkey(b, cmd->u.search.root);
		break;
	case IMAP_CMD_FETCH:
		dfetch(b, &cmd->u.fetch);
		break;
	case IMAP_CMD_STORE:
		dset(b, &cmd->u.store.set);
		buf_printf(b, " op=%c%s", "=+-"[cmd->u.store.op], cmd->u.store.silent ? " silent" : "");
		dlist(b, "flags", &cmd->u.store.flags);
		if (cmd->u.store.has_unchangedsince)
			buf_printf(b, " unchangedsince=%" PRIu64, cmd->u.store.unchangedsince);
		break;
	case IMAP_CMD_COPY: case IMAP_CMD_MOVE:
		dset(b, &cmd->u.copy.set);
		dcstr(b, "mailbox", cmd->u.copy.mailbox);
		break;
	case IMAP_CMD_EXPUNGE:
		if (cmd->uid)
			dset(b, &cmd->u.expunge.set);
		break;
	case IMAP_CMD_GETQUOTA:
		dcstr(b, "root", cmd->u.getquota.root);
		break;
	case IMAP_CMD_SETQUOTA:
		dcstr(b, "root", cmd->u.setquota.root);
		for (size_t i = 0; i < cmd->u.setquota.count; i++)
			buf_printf(b, " %s=%" PRIu64, cmd->u.setquota.res[i].name,
				   cmd->u.setquota.res[i].limit);
		break;
	case IMAP_CMD_SETACL: case IMAP_CMD_DELETEACL: case IMAP_CMD_LISTRIGHTS:
		dcstr(b, "mailbox", cmd->u.acl.mailbox);
		dcstr(b, "id", cmd->u.acl.identifier);
		if (cmd->u.acl.rights)
			dcstr(b, "rights", cmd->u.acl.rights);
		break;
	case IMAP_CMD_GETMETADATA:
		dcstr(b, "mailbox", cmd->u.getmetadata.mailbox);
		dlist(b, "entries", &cmd->u.getmetadata.entries);
		if (cmd->u.getmetadata.has_maxsize)
			buf_printf(b, " maxsize=%" PRIu32, cmd->u.getmetadata.maxsize);
		buf_printf(b, " depth=%d", cmd->u.getmetadata.depth);
		break;
	case IMAP_CMD_SETMETADATA:
		dcstr(b, "mailbox", cmd->u.setmetadata.mailbox);
		for (size_t i = 0; i < cmd->u.setmetadata.count; i++) {
			const struct imap_metadata_entry *e = &cmd->u.setmetadata.entries[i];
			dcstr(b, "entry", e->name);
			buf_putc(b, '=');
			dstr(b, e->value, e->len);
		}
		break;
	case IMAP_CMD_COMPRESS:
		dcstr(b, "mech", cmd->u.compress.mech);
		break;
	case IMAP_CMD_SYNCGET: case IMAP_CMD_SYNCAPPLY: case IMAP_CMD_SYNCRESTORE:
		buf_printf(b, " len=%" PRIu64, cmd->u.sync.len);
		break;
	default:
		break;
	}
}
