/* cmd_append.c: APPEND (RFC 3501 6.3.11) with UIDPLUS's
 * [APPENDUID uidvalidity uid-set] (RFC 4315) and MULTIAPPEND (RFC 3502:
 * several messages, stored in one transaction, all or none).
 *
 * The message bytes come either in the command (the parser's buffered
 * mode) or as IMAP_DATA chunks the session gathered in s->appendmsg, one
 * message after the other (their literal sizes split them).
 * The target needs the i right; flags the user could not set with STORE
 * (s for \Seen, t for \Deleted, w for the others) are dropped.
 */
#include "imapd/imapd-private.h"

#include "lib/xalloc.h"
#include "proto/mime/mime.h"
#include "store/store.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>


/* Parses the flag list and keeps what the rights allow; -1 with BAD set. */
static int append_flags(struct imapd_session *s, int has_flags, const struct imap_strlist *flags, unsigned rights,
			unsigned *sys_r, struct buf *kw_r)
{
	struct buf list = BUF_INIT;
	struct terr err = { 0 };
	*sys_r = 0;
	if (!has_flags)
		return 0;
	for (size_t i = 0; i < flags->count; i++) {
		if (i)
			buf_putc(&list, ' ');
		buf_appends(&list, flags->v[i]);
	}
	int rc = store_flags_parse(buf_cstr(&list), sys_r, kw_r, &err);
	buf_free(&list);
	if (rc < 0) {
		imapd_bad(s, NULL, "Invalid flag in list");
		return -1;
	}
	if (!(rights & IMAPD_R_SEEN))
		*sys_r &= ~(unsigned)SYSFLAG_SEEN;
	if (!(rights & IMAPD_R_DELETE_MSG))
		*sys_r &= ~(unsigned)SYSFLAG_DELETED;
	if (!(rights & IMAPD_R_WRITE)) {
		*sys_r &= SYSFLAG_SEEN | SYSFLAG_DELETED;
		buf_reset(kw_r);
	}
	return 0;
}

/* ---- CATENATE (RFC 4469) ---------------------------------------------------- */

static int hexval(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* s[0, n) with %XX decoded; -1 for a bad escape. */
static int url_decode(const char *s, size_t n, struct buf *out)
{
	for (size_t i = 0; i < n; i++) {
		if (s[i] != '%') {
			buf_putc(out, s[i]);
			continue;
		}
		if (i + 2 >= n)
			return -1;
		int h = hexval(s[i + 1]), l = hexval(s[i + 2]);
		if (h < 0 || l < 0)
			return -1;
		buf_putc(out, (char)(h * 16 + l));
		i += 2;
	}
	return 0;
}

/* The value of ";NAME=" in url[0, n) up to the next '/' or ';', or NULL. */
static const char *url_param(const char *url, size_t n, const char *name, size_t *len_r)
{
	size_t k = strlen(name);
	for (size_t i = 0; i + k <= n; i++)
		if (!strncasecmp(url + i, name, k)) {
			size_t e = i + k;
			while (e < n && url[e] != '/' && url[e] != ';')
				e++;
			*len_r = e - (i + k);
			return url + i + k;
		}
	return NULL;
}

static int url_number(const char *s, size_t n, uint64_t max, uint64_t *v_r)
{
	uint64_t v = 0;
	if (n == 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9' || v > (max - (uint64_t)(s[i] - '0')) / 10)
			return -1;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	*v_r = v;
	return 0;
}

struct guid_ctx {
	char guid[41];
	int found;
};

static int guid_cb(const struct store_cache_row *row, void *rock)
{
	struct guid_ctx *g = rock;
	snprintf(g->guid, sizeof g->guid, "%s", row->guid);
	g->found = 1;
	return 1;
}

/* Appends what an IMAP URL names (RFC 5092: "/mailbox[;UIDVALIDITY=n]/;UID=n
 * [/;SECTION=s][/;PARTIAL=o[.l]]", or absolute "imap://host/..." with this
 * server's servername as host): 0, or -1 with NO [BADURL url] set. */
static int url_fetch(struct imapd_session *s, const char *url, struct buf *out)
{
	const char *u = url;
	struct buf ext = BUF_INIT, name = BUF_INIT, sect = BUF_INIT, data = BUF_INIT;
	struct store_mailbox_info mi = { 0 };
	int rc = -1;
	if (!strncasecmp(u, "imap://", 7)) {
		/* imap://[user[;AUTH=..]@]host[:port]/...: host must be this
		 * server (its servername), as Cyrus checks */
		const char *auth = u + 7, *path = strchr(auth, '/');
		if (!path)
			goto bad;
		const char *host = auth, *at = memchr(auth, '@', (size_t)(path - auth));
		if (at)
			host = at + 1;
		const char *colon = memchr(host, ':', (size_t)(path - host));
		size_t hl = (size_t)((colon ? colon : path) - host);
		if (!s->servername || strlen(s->servername) != hl || strncasecmp(host, s->servername, hl))
			goto bad;
		u = path;
	}
	size_t n = strlen(u);
	const char *uidp = NULL;
	for (size_t i = 0; i + 6 <= n; i++)
		if (!strncasecmp(u + i, "/;UID=", 6)) {
			uidp = u + i;
			break;
		}
	if (u[0] != '/' || !uidp || url_param(u, n, ";URLAUTH=", &(size_t){ 0 }))
		goto bad;
	size_t mlen = (size_t)(uidp - u) - 1;
	const char *semi = memchr(u + 1, ';', mlen);	/* ;UIDVALIDITY=n */
	if (url_decode(u + 1, semi ? (size_t)(semi - u - 1) : mlen, &ext) < 0 || !ext.len)
		goto bad;
	size_t vl;
	uint64_t uid, uidvalidity = 0;
	const char *v = url_param(uidp, n - (size_t)(uidp - u), ";UID=", &vl);
	if (!v || url_number(v, vl, 0xffffffffULL, &uid) < 0 || uid == 0)
		goto bad;
	if (semi && (!(v = url_param(semi, (size_t)(uidp - semi), ";UIDVALIDITY=", &vl)) ||
		     url_number(v, vl, 0xffffffffULL, &uidvalidity) < 0))
		goto bad;
	if (imapd_mailbox_get(s, ext.ptr, IMAPD_R_READ, &name, &mi, NULL) < 0)
		goto bad;	/* its NO is replaced by BADURL below */
	if (uidvalidity && uidvalidity != mi.uidvalidity)
		goto bad;
	struct guid_ctx g = { "", 0 };
	struct terr err = { 0 };
	if (store_cache_range(s->st, name.ptr, (uint32_t)uid, (uint32_t)uid, guid_cb, &g, &err) < 0 || !g.found ||
	    store_message_read(s->st, name.ptr, g.guid, &data, &err) < 0)
		goto bad;
	const char *bytes = data.ptr ? data.ptr : "";
	size_t len = data.len;
	struct buf scratch = BUF_INIT;
	struct mime_message *mm = NULL;
	const char *sv = url_param(uidp, n - (size_t)(uidp - u), ";SECTION=", &vl);
	if (sv) {
		struct mime_section sec;
		memset(&sec, 0, sizeof sec);
		size_t pos;
		int ok = url_decode(sv, vl, &sect) == 0 && (mm = mime_parse(bytes, len)) != NULL &&
			 mime_section_parse(sect.ptr ? sect.ptr : "", sect.len, &sec, &pos, &err) == 0 &&
			 mime_section_fetch(mm, &sec, &scratch, &bytes, &len, &err) == 0;
		mime_section_clear(&sec);
		if (!ok) {
			mime_message_free(&mm);
			buf_free(&scratch);
			goto bad;
		}
	}
	const char *pv = url_param(uidp, n - (size_t)(uidp - u), ";PARTIAL=", &vl);
	if (pv) {
		const char *dot = memchr(pv, '.', vl);
		uint64_t o, l = UINT64_MAX;
		if (url_number(pv, dot ? (size_t)(dot - pv) : vl, 0xffffffffULL, &o) < 0 ||
		    (dot && url_number(dot + 1, vl - (size_t)(dot - pv) - 1, 0xffffffffULL, &l) < 0)) {
			mime_message_free(&mm);
			buf_free(&scratch);
			goto bad;
		}
		if (o >= len) {
			len = 0;
		} else {
			bytes += o;
			len -= (size_t)o;
			if (len > l)
				len = (size_t)l;
		}
	}
	buf_append(out, bytes, len);
	mime_message_free(&mm);
	buf_free(&scratch);
	rc = 0;
	goto out;
bad:;
	struct buf code = BUF_INIT;
	buf_appends(&code, "BADURL ");
	for (const char *c = url; *c; c++) {	/* response-code safe: no SP, "]" or controls */
		unsigned char ch = (unsigned char)*c;
		if (ch <= 0x20 || ch >= 0x7f || ch == ']')
			buf_printf(&code, "%%%02X", ch);
		else
			buf_putc(&code, (char)ch);
	}
	imapd_no(s, code.ptr, "The URL names nothing this user may read");
	buf_free(&code);
out:
	store_mailbox_info_free(&mi);
	buf_free(&ext);
	buf_free(&name);
	buf_free(&sect);
	buf_free(&data);
	return rc;
}

/* Builds a CATENATE message into out: 0, or -1 with NO set. */
static int cat_build(struct imapd_session *s, const struct imap_cat_part *v, size_t n, struct buf *out)
{
	for (size_t i = 0; i < n; i++) {
		if (v[i].url) {
			if (url_fetch(s, v[i].url, out) < 0)
				return -1;
		} else {
			buf_append(out, v[i].text, v[i].len);
		}
		if ((long long)out->len > s->maxmsg) {
			imapd_no(s, "TOOBIG", "Message too big");
			return -1;
		}
	}
	return 0;
}

int imapd_cmd_append(struct imapd_session *s, const struct imap_cmd *cmd)
{
	const struct imap_append *a = &cmd->u.append;
	size_t n = 1 + a->nmore;
	struct buf name = BUF_INIT, ids = BUF_INIT;
	struct buf *kw = xcalloc(n, sizeof *kw), *built = xcalloc(n, sizeof *built);
	struct store_append_msg *msgs = xcalloc(n, sizeof *msgs);
	uint32_t *uids = xcalloc(n, sizeof *uids);
	struct store_mailbox_info mi = { 0 };
	struct terr err = { 0 };
	unsigned rights = 0;
	if (imapd_target_get(s, a->mailbox, &name, &mi, &rights) < 0)
		goto out;
	size_t off = 0, total = 0;
	for (size_t i = 0; i < n; i++) {
		const struct imap_append_part *pt = i ? &a->more[i - 1] : NULL;
		int has_flags = pt ? pt->has_flags : a->has_flags, has_date = pt ? pt->has_date : a->has_date;
		const struct imap_strlist *flags = pt ? &pt->flags : &a->flags;
		uint64_t size = pt ? pt->size : a->size;
		const char *given = pt ? pt->message : a->message;
		size_t ncat = pt ? pt->ncat : a->ncat;
		if (ncat) {	/* CATENATE */
			if (cat_build(s, pt ? pt->cat : a->cat, ncat, &built[i]) < 0)
				goto out;
			given = built[i].ptr ? built[i].ptr : "";
			size = built[i].len;
		}
		unsigned sys = 0;
		if (append_flags(s, has_flags, flags, rights, &sys, &kw[i]) < 0)
			goto out;
		msgs[i].opts.sysflags = sys;
		msgs[i].opts.keywords = kw[i].len ? kw[i].ptr : NULL;
		msgs[i].opts.internaldate = has_date ? (int64_t)(pt ? pt->date : a->date) : 0;
		if (given) {
			msgs[i].data = given;
		} else if (off + size <= s->appendmsg.len) {
			msgs[i].data = s->appendmsg.ptr + off;
			off += (size_t)size;
		} else {
			imapd_no(s, NULL, "Message data missing");
			goto out;
		}
		msgs[i].len = (size_t)size;
		if (msgs[i].len == 0) {
			imapd_no(s, NULL, "Empty message");
			goto out;
		}
		if ((long long)msgs[i].len > s->maxmsg) {
			imapd_no(s, "TOOBIG", "Message too big");
			goto out;
		}
		total += msgs[i].len;
	}
	if (store_append_multi(s->st, name.ptr, msgs, n, uids, &err) < 0) {
		imapd_no_err(s, "append", &err);
		goto out;
	}
	/* the UIDs are consecutive: one message "u", several "lo:hi" */
	buf_printf(&ids, "APPENDUID %u %u", mi.uidvalidity, uids[0]);
	if (n > 1)
		buf_printf(&ids, ":%u", uids[n - 1]);
	imapd_ok(s, ids.ptr, "APPEND completed");
	imapd_log_event(s, "append", name.ptr, "uid=%u messages=%zu size=%zu", uids[0], n, total);
out:
	store_mailbox_info_free(&mi);
	buf_free(&name);
	buf_free(&ids);
	for (size_t i = 0; i < n; i++) {
		buf_free(&kw[i]);
		buf_free(&built[i]);
	}
	free(kw);
	free(built);
	free(msgs);
	free(uids);
	return 0;
}
