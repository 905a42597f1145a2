/* syncs.c: the replica's sync server, one csync connection (Cyrus 3.6
 * sync_server protocol, reference §2 and §4).
 *
 * States: BANNER (capabilities + "* OK") -> UNAUTH (AUTHENTICATE,
 * STARTTLS, COMPRESS, NOOP, EXIT) -> AUTH (GET / APPLY, RESTART, NOOP,
 * EXIT). Only admins may authenticate. Message bodies received with
 * APPLY MESSAGE or found by APPLY RESERVE are staged for this connection
 * until RESTART or the end; APPLY MAILBOX takes new records' bodies from
 * there, checks each SHA-1, and commits durably before "OK success".
 * A bad command gets an error reply and changes nothing.
 */
#include "syncs/syncs.h"

#include "chlog/chlog.h"
#include "conf/conf.h"
#include "lib/base64.h"
#include "lib/limits.h"
#include "lib/log.h"
#include "lib/sha1.h"
#include "lib/xalloc.h"
#include "names/mboxname.h"
#include "proto/sync/dlist.h"
#include "store/store.h"
#include "sync/sync.h"

#include <ctype.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

struct staged {
	char guid[41];
	struct buf data;
};

struct syncs {
	const struct service_env *env;
	struct conn *c;
	struct store *st;
	struct chlog *log;
	struct mboxname_ns ns;
	char user[MAX_USERID + 1];
	int authed;
	int sieve_mailbox;
	struct staged *staged;
	size_t nstaged;
	struct buf in;
	struct buf out;
	unsigned long commands;
};

static void send_line(struct syncs *s, const char *line)
{
	conn_puts(s->c, line);
	conn_puts(s->c, "\r\n");
}

static void banner(struct syncs *s)
{
	int plain_ok = conn_is_tls(s->c) || conf_bool(s->env->conf, "allowplaintext");
	if (plain_ok)
		send_line(s, "* SASL PLAIN");
	if (s->env->tls && !conn_is_tls(s->c))
		send_line(s, "* STARTTLS");
	if (!conn_is_compressed(s->c) && !conn_is_tls(s->c))
		send_line(s, "* COMPRESS DEFLATE");
	send_line(s, "* SIEVE-MAILBOX");
	conn_printf(s->c, "* OK %s Cyrus sync server 3.6 (tandem)\r\n", conf_str(s->env->conf, "servername"));
}

static void unstage_all(struct syncs *s)
{
	for (size_t i = 0; i < s->nstaged; i++)
		buf_free(&s->staged[i].data);
	free(s->staged);
	s->staged = NULL;
	s->nstaged = 0;
}

static struct staged *find_staged(struct syncs *s, const char *guid)
{
	for (size_t i = 0; i < s->nstaged; i++)
		if (!strcmp(s->staged[i].guid, guid))
			return &s->staged[i];
	return NULL;
}

static void stage(struct syncs *s, const char *guid, const void *data, size_t len)
{
	if (find_staged(s, guid))
		return;
	s->staged = xrealloc(s->staged, (s->nstaged + 1) * sizeof *s->staged);
	struct staged *g = &s->staged[s->nstaged++];
	memset(g, 0, sizeof *g);
	snprintf(g->guid, sizeof g->guid, "%s", guid);
	buf_append(&g->data, data, len);
}

static int body_cb(void *rock, const char *guid, const void **data_r, size_t *len_r)
{
	struct staged *g = find_staged(rock, guid);
	if (!g)
		return -1;
	*data_r = g->data.ptr ? g->data.ptr : "";
	*len_r = g->data.len;
	return 0;
}

/* ---- authentication ------------------------------------------------------------ */

static int is_admin(const struct conf *conf, const char *user)
{
	const char *const *admins;
	size_t n = conf_list(conf, "admins", &admins);
	for (size_t i = 0; i < n; i++)
		if (!strcmp(admins[i], user))
			return 1;
	return 0;
}

static void do_authenticate(struct syncs *s, const struct dlist *line)
{
	const char *mech = line->n > 1 ? dlist_cstr(line->items[1]) : NULL;
	const char *resp = line->n > 2 ? dlist_cstr(line->items[2]) : NULL;
	if (s->authed) {
		send_line(s, "BAD Already authenticated");
		return;
	}
	if (!mech || strcasecmp(mech, "PLAIN") || !resp) {
		send_line(s, "NO unsupported mechanism (PLAIN with an initial response only)");
		return;
	}
	if (!conn_is_tls(s->c) && !conf_bool(s->env->conf, "allowplaintext")) {
		send_line(s, "NO Plaintext authentication is not allowed without TLS");
		return;
	}
	size_t rl = strlen(resp);
	struct buf decoded = BUF_INIT;
	if (rl > 2000 || base64_decode_strict(resp, rl, &decoded) < 0) {
		buf_free(&decoded);
		send_line(s, "BAD Invalid base64");
		return;
	}
	const unsigned char *dec = (const unsigned char *)buf_cstr(&decoded);
	size_t n = decoded.len;
	/* authzid \0 authcid \0 password */
	const unsigned char *p1 = memchr(dec, 0, n);
	const unsigned char *p2 = p1 ? memchr(p1 + 1, 0, (size_t)(dec + n - p1 - 1)) : NULL;
	if (!p1 || !p2) {
		OPENSSL_cleanse(decoded.ptr, decoded.len);
		buf_free(&decoded);
		send_line(s, "BAD Invalid PLAIN response");
		return;
	}
	char authcid[MAX_USERID + 1], authzid[MAX_USERID + 1], pw[MAX_PASSWORD + 1];
	snprintf(authzid, sizeof authzid, "%.*s", (int)(p1 - dec), (const char *)dec);
	snprintf(authcid, sizeof authcid, "%.*s", (int)(p2 - p1 - 1), (const char *)p1 + 1);
	snprintf(pw, sizeof pw, "%.*s", (int)(dec + n - p2 - 1), (const char *)p2 + 1);
	struct terr err;
	int ok = store_user_check_password(s->st, authcid, pw, &err) == 1 && is_admin(s->env->conf, authcid) &&
		 (!authzid[0] || !strcmp(authzid, authcid));
	OPENSSL_cleanse(pw, sizeof pw);
	OPENSSL_cleanse(decoded.ptr, decoded.len);
	buf_free(&decoded);
	if (!ok) {
		log_warn("event=login_fail service=sync session=%s user=%s peer=%s", s->env->session_id, authcid,
			 s->env->peer);
		conn_flush(s->c, &err);
		usleep((useconds_t)conf_duration_ms(s->env->conf, "failedloginpause") * 1000);
		send_line(s, "NO Login failed");
		return;
	}
	snprintf(s->user, sizeof s->user, "%s", authcid);
	s->authed = 1;
	log_info("event=login service=sync session=%s user=%s peer=%s tls=%d", s->env->session_id, authcid,
		 s->env->peer, conn_is_tls(s->c));
	send_line(s, "OK Success (no protection)");
}

/* ---- GET ---------------------------------------------------------------------------- */

static void send_data(struct syncs *s, const struct dlist *d)
{
	buf_reset(&s->out);
	buf_appends(&s->out, "* ");
	dlist_print(&s->out, d, DLIST_LIT_SERVER);
	buf_appends(&s->out, "\r\n");
	conn_write(s->c, s->out.ptr, s->out.len);
}

/* ---- Sieve (reference §2.8, §4.2.5, §4.2.9, §4.3.15, §6.9) -------------------------------
 *
 * With SIEVE-MAILBOX enabled on the connection, scripts travel as the
 * user.<u>.#sieve mailbox (MBOXTYPE f, one message per script, the active
 * one \Flagged), replicated like any mailbox. Without it they travel one
 * by one, as "<name>.script" files (and "<name>.bc" for the active one's
 * bytecode), kept in the store's sieve table; the GUID of a script is the
 * SHA-1 of its bytes, as Cyrus 3.6's content id. */

#define SIEVE_SCRIPT_SUFFIX ".script"
#define SIEVE_BC_SUFFIX ".bc"
#define SIEVE_NULL_GUID "0000000000000000000000000000000000000000"

/* 1 and the script name in out if fname is "<name><suffix>", else 0. */
static int sieve_basename(const char *fname, const char *suffix, char *out, size_t outsz)
{
	size_t fl = strlen(fname), sl = strlen(suffix);
	if (fl < sl || strcmp(fname + fl - sl, suffix) || fl - sl >= outsz)
		return 0;
	memcpy(out, fname, fl - sl);
	out[fl - sl] = '\0';
	return 1;
}

/* A #sieve mailbox (MBOXTYPE f) is not shown to a client that has not
 * enabled SIEVE-MAILBOX: it gets the SIEVE lines instead. */
static int sieve_mailbox_hidden(const struct syncs *s, const struct dlist *mb)
{
	const char *type;
	return !s->sieve_mailbox && dlist_get_str(mb, "MBOXTYPE", &type) == 0 && type[0] == 'f';
}

/* Cyrus 3.6 refuses a #sieve mailbox on a connection without SIEVE-MAILBOX. */
static int sieve_mailbox_refused(const struct syncs *s, const struct dlist *kv)
{
	return sieve_mailbox_hidden(s, kv);
}

static void sieve_line(struct syncs *s, const char *name, const char *suffix, int64_t last_update,
		       const char *guid, int active)
{
	char fname[300];
	snprintf(fname, sizeof fname, "%s%s", name, suffix);
	struct dlist *d = dlist_new(DL_KVLIST, "SIEVE");
	dlist_add_str(d, "FILENAME", fname);
	dlist_add_num(d, "LAST_UPDATE", last_update > 0 ? (uint64_t)last_update : 0);
	dlist_add_str(d, "GUID", guid);
	dlist_add_num(d, "ISACTIVE", (uint64_t)active);
	send_data(s, d);
	dlist_free(&d);
}

static int sieve_meta_cb(const char *name, const void *script, size_t len, int active, int64_t modified,
			 void *rock)
{
	char guid[41];
	sha1_hex(script, len, guid);
	sieve_line(rock, name, SIEVE_SCRIPT_SUFFIX, modified, guid, 0);
	if (active)
		sieve_line(rock, name, SIEVE_BC_SUFFIX, 0, SIEVE_NULL_GUID, 1);
	return 0;
}

/* GET META / GET USER: one SIEVE line per script (and one for the active
 * one's bytecode), only without SIEVE-MAILBOX. */
static void sieve_send_meta(struct syncs *s, const char *user)
{
	struct terr err;
	if (!s->sieve_mailbox)
		store_sieve_list(s->st, user, sieve_meta_cb, s, &err);
}

struct sieve_find {
	const char *name;
	int found;
	struct buf script;
};

static int sieve_find_cb(const char *name, const void *script, size_t len, int active, int64_t modified,
			 void *rock)
{
	struct sieve_find *f = rock;
	(void)active;
	(void)modified;
	if (strcmp(name, f->name))
		return 0;
	f->found = 1;
	buf_append(&f->script, script, len);
	return 1;
}

/* 1 if user has a script called name (its bytes in script_r if not NULL),
 * 0 if not (or no such user). */
static int sieve_find(struct syncs *s, const char *user, const char *name, struct buf *script_r)
{
	struct sieve_find f = { name, 0, BUF_INIT };
	struct terr err;
	if (store_user_exists(s->st, user, &err) == 1)
		store_sieve_list(s->st, user, sieve_find_cb, &f, &err);
	if (script_r && f.found)
		buf_append(script_r, f.script.ptr ? f.script.ptr : "", f.script.len);
	buf_free(&f.script);
	return f.found;
}

/* GET FETCH_SIEVE %(USERID u FILENAME <name>.script) */
static const char *get_fetch_sieve(struct syncs *s, const struct dlist *kv)
{
	const char *user, *fname;
	char name[260];
	struct terr err;
	if (kv->type != DL_KVLIST || dlist_get_str(kv, "USERID", &user) < 0 || dlist_get_str(kv, "FILENAME", &fname) < 0)
		return "NO IMAP_PROTOCOL_BAD_PARAMETERS";
	struct buf script = BUF_INIT;
	if (userid_validate(user, 1, &err) < 0 || !sieve_basename(fname, SIEVE_SCRIPT_SUFFIX, name, sizeof name) ||
	    !sieve_find(s, user, name, &script)) {
		buf_free(&script);
		return "NO IMAP_MAILBOX_NONEXISTENT No Such Mailbox";
	}
	struct dlist *d = dlist_new(DL_KVLIST, "SIEVE");
	dlist_add_str(d, "USERID", user);
	dlist_add_str(d, "FILENAME", fname);
	dlist_add_bytes(d, "CONTENT", script.ptr ? script.ptr : "", script.len);
	send_data(s, d);
	dlist_free(&d);
	buf_free(&script);
	return "OK success";
}

static void sieve_log(struct syncs *s, const char *op, const char *user, const char *name)
{
	char q[LOGQ_MAX];
	log_info("event=apply_sieve session=%s user=%s op=%s script=%s", s->env->session_id, user, op,
		 logq(q, name ? name : ""));
}

/* APPLY SIEVE %(USERID u FILENAME <name>.script LAST_UPDATE t CONTENT bytes):
 * other file names are accepted and ignored; LAST_UPDATE is not kept (the
 * replica timestamps the script, as Cyrus 3.6). Replaying it changes
 * nothing but the timestamp. */
static const char *apply_sieve_put(struct syncs *s, const char *user, const char *fname, const struct dlist *kv)
{
	uint64_t lu;
	char name[260];
	struct terr err = { 0 };
	const struct dlist *content = dlist_get(kv, "CONTENT");
	if (dlist_get_num64(kv, "LAST_UPDATE", &lu) < 0 || !content || content->type != DL_STR)
		return "NO IMAP_PROTOCOL_BAD_PARAMETERS";
	if (!sieve_basename(fname, SIEVE_SCRIPT_SUFFIX, name, sizeof name))
		return "OK success";
	if (store_user_ensure(s->st, user, &err) < 0 ||
	    store_sieve_put(s->st, user, name, content->s.ptr ? content->s.ptr : "", content->s.len, &err) < 0) {
		log_warn("event=apply_fail session=%s user=%s script=%s error=\"%s\"", s->env->session_id, user, name,
			 err.msg);
		return sync_no_text(&err);
	}
	sieve_log(s, "put", user, name);
	return "OK success";
}

/* APPLY UNSIEVE %(USERID u FILENAME <name>.script): a script that is not
 * there is already deleted (a replay answers OK). */
static const char *apply_sieve_delete(struct syncs *s, const char *user, const char *fname)
{
	char name[260];
	struct terr err = { 0 };
	if (!sieve_basename(fname, SIEVE_SCRIPT_SUFFIX, name, sizeof name) || !sieve_find(s, user, name, NULL))
		return "OK success";
	if (store_sieve_delete(s->st, user, name, &err) < 0 && err.code != TE_NOTFOUND)
		return sync_no_text(&err);
	sieve_log(s, "delete", user, name);
	return "OK success";
}

/* APPLY ACTIVATE_SIEVE %(USERID u FILENAME <name>.bc), or UNACTIVATE_SIEVE
 * (fname NULL). An unknown script is refused and changes nothing. */
static const char *apply_sieve_activate(struct syncs *s, const char *user, const char *fname)
{
	char name[260];
	struct terr err = { 0 };
	if (!fname) {
		if (store_user_exists(s->st, user, &err) == 1 && store_sieve_activate(s->st, user, NULL, &err) < 0)
			return sync_no_text(&err);
		sieve_log(s, "deactivate", user, NULL);
		return "OK success";
	}
	if (!sieve_basename(fname, SIEVE_BC_SUFFIX, name, sizeof name) || !sieve_find(s, user, name, NULL))
		return "NO IMAP_MAILBOX_NONEXISTENT No Such Mailbox";
	if (store_sieve_activate(s->st, user, name, &err) < 0)
		return sync_no_text(&err);
	sieve_log(s, "activate", user, name);
	return "OK success";
}

/* The legacy per-script APPLY commands (§4.3.15); NULL if k is not one. */
static const char *apply_sieve(struct syncs *s, const char *k, const struct dlist *kv)
{
	const char *user, *fname = NULL;
	struct terr err;
	int put = !strcasecmp(k, "SIEVE"), del = !strcasecmp(k, "UNSIEVE");
	int act = !strcasecmp(k, "ACTIVATE_SIEVE"), unact = !strcasecmp(k, "UNACTIVATE_SIEVE");
	if (!put && !del && !act && !unact)
		return NULL;
	if (kv->type != DL_KVLIST || dlist_get_str(kv, "USERID", &user) < 0 ||
	    (!unact && dlist_get_str(kv, "FILENAME", &fname) < 0) || userid_validate(user, 1, &err) < 0)
		return "NO IMAP_PROTOCOL_BAD_PARAMETERS";
	if (put)
		return apply_sieve_put(s, user, fname, kv);
	if (del)
		return apply_sieve_delete(s, user, fname);
	return apply_sieve_activate(s, user, unact ? NULL : fname);
}

static void send_mailbox(struct syncs *s, const char *name, int records)
{
	struct dlist *mb = NULL;
	struct terr err;
	if (sync_mailbox_dlist(s->st, name, records, 0, &mb, &err) == 0) {
		if (!sieve_mailbox_hidden(s, mb))
			send_data(s, mb);
		dlist_free(&mb);
	}
}

struct user_rock {
	struct syncs *s;
};

static int user_mailbox_cb(const struct store_mailbox_info *mi, void *rock)
{
	struct syncs *s = rock;
	send_mailbox(s, mi->name, 0);
	return 0;
}

static int sub_cb(const char *name, void *rock)
{
	dlist_add_str(rock, NULL, name);
	return 0;
}

struct uid_rock {
	struct syncs *s;
	const struct dlist *wanted;
};

static int uniqueid_cb(const struct store_mailbox_info *mi, void *rock)
{
	struct uid_rock *ur = rock;
	for (size_t i = 0; i < ur->wanted->n; i++) {
		const char *u = dlist_cstr(ur->wanted->items[i]);
		if (u && !strcmp(u, mi->uniqueid))
			send_mailbox(ur->s, mi->name, 0);
	}
	return 0;
}

struct annot_rock {
	struct syncs *s;
	const char *name;
};

static int annot_cb(uint32_t uid, const char *entry, const char *userid, const void *value, size_t len,
		    uint64_t modseq, void *rock)
{
	struct annot_rock *ar = rock;
	if (uid != 0)
		return 0;
	struct dlist *d = dlist_new(DL_KVLIST, "ANNOTATION");
	dlist_add_str(d, "MBOXNAME", ar->name);
	dlist_add_str(d, "ENTRY", entry);
	dlist_add_str(d, "USERID", userid);
	dlist_add_bytes(d, "VALUE", value, len);
	send_data(ar->s, d);
	dlist_free(&d);
	return 0;
}

static const char *do_get(struct syncs *s, const struct dlist *kv)
{
	struct terr err = { 0 };
	if (!strcasecmp(kv->key, "MAILBOXES")) {
		if (kv->type != DL_LIST)
			return "NO IMAP_PROTOCOL_BAD_PARAMETERS";
		for (size_t i = 0; i < kv->n; i++) {
			const char *name = dlist_cstr(kv->items[i]);
			if (name && mboxname_validate(name, &err) == 0)
				send_mailbox(s, name, 0);
		}
		return "OK success";
	}
	if (!strcasecmp(kv->key, "FULLMAILBOX")) {
		const char *name = dlist_cstr(kv);
		struct dlist *mb = NULL;
		if (!name || mboxname_validate(name, &err) < 0)
			return "NO IMAP_PROTOCOL_BAD_PARAMETERS";
		if (sync_mailbox_dlist(s->st, name, 1, 0, &mb, &err) < 0)
			return sync_no_text(&err);
		send_data(s, mb);
		dlist_free(&mb);
		return "OK success";
	}
	if (!strcasecmp(kv->key, "USER") || !strcasecmp(kv->key, "META")) {
		const char *user = dlist_cstr(kv);
		if (!user)
			return "NO IMAP_PROTOCOL_BAD_PARAMETERS";
		if (userid_validate(user, 1, &err) < 0 || store_user_exists(s->st, user, &err) != 1)
			return "OK success";
		if (!strcasecmp(kv->key, "USER"))
			store_mailbox_list(s->st, user, user_mailbox_cb, s, &err);
		struct dlist *lsub = dlist_new(DL_LIST, "LSUB");
		if (store_subs_list(s->st, user, sub_cb, lsub, &err) == 0 && lsub->n)
			send_data(s, lsub);
		dlist_free(&lsub);
		sieve_send_meta(s, user);
		return "OK success";
	}
	if (!strcasecmp(kv->key, "UNIQUEIDS")) {
		if (kv->type != DL_LIST)
			return "NO IMAP_PROTOCOL_BAD_PARAMETERS";
		struct uid_rock ur = { s, kv };
		store_mailbox_list(s->st, NULL, uniqueid_cb, &ur, &err);
		return "OK success";
	}
	if (!strcasecmp(kv->key, "QUOTA")) {
		const char *root = dlist_cstr(kv);
		struct store_quota q;
		if (!root)
			return "NO IMAP_PROTOCOL_BAD_PARAMETERS";
		if (mboxname_validate(root, &err) == 0 && store_quota_get(s->st, root, &q, &err) == 0) {
			struct dlist *d = dlist_new(DL_KVLIST, "QUOTA");
			dlist_add_str(d, "ROOT", q.root);
			dlist_add_num(d, "LIMIT", q.storage_limit < 0 ? 4294967295u : (uint64_t)q.storage_limit);
			if (q.storage_limit >= 0)
				dlist_add_num(d, "STORAGE", (uint64_t)q.storage_limit);
			if (q.message_limit >= 0)
				dlist_add_num(d, "MESSAGE", (uint64_t)q.message_limit);
			dlist_add_num(d, "MODSEQ", q.modseq);
			send_data(s, d);
			dlist_free(&d);
			store_quota_free(&q);
		}
		return "OK success";
	}
	if (!strcasecmp(kv->key, "ANNOTATION")) {
		const char *name = dlist_cstr(kv);
		if (!name)
			return "NO IMAP_PROTOCOL_BAD_PARAMETERS";
		if (*name && mboxname_validate(name, &err) == 0) {
			struct annot_rock ar = { s, name };
			store_annot_list(s->st, name, 0, annot_cb, &ar, &err);
		}
		return "OK success";
	}
	if (!strcasecmp(kv->key, "FETCH")) {
		const char *name;
		char guid[41];
		if (kv->type != DL_KVLIST || dlist_get_str(kv, "MBOXNAME", &name) < 0 || dlist_get_guid(kv, "GUID", guid) < 0 ||
		    mboxname_validate(name, &err) < 0)
			return "NO IMAP_PROTOCOL_BAD_PARAMETERS";
		struct buf data = BUF_INIT;
		int rc = store_message_read(s->st, name, guid, &data, &err);
		struct dlist *d;
		if (rc == 0) {
			d = dlist_new(DL_FILE, "MESSAGE");
			d->part = xstrdup("default");
			memcpy(d->guid, guid, sizeof d->guid);
			buf_append(&d->s, data.ptr ? data.ptr : "", data.len);
		} else if (err.code == TE_CORRUPT) {
			d = dlist_new(DL_NIL, "MESSAGE");	/* the file does not hash to its GUID */
		} else {
			buf_free(&data);
			return "NO IMAP_MAILBOX_NONEXISTENT No Such Mailbox";
		}
		send_data(s, d);
		dlist_free(&d);
		buf_free(&data);
		return "OK success";
	}
	if (!strcasecmp(kv->key, "FETCH_SIEVE"))
		return get_fetch_sieve(s, kv);
	return "NO IMAP_PROTOCOL_ERROR Protocol error";
}

/* ---- APPLY ---------------------------------------------------------------------------- */

/* A damaged message file (its bytes no longer hash to its GUID) is moved
 * aside to <file>.damaged, so that the client's copy (it is reported
 * MISSING) is written in its place by the next APPLY MAILBOX (tandem
 * repair; a file already there is never rewritten). */
static void quarantine(struct syncs *s, const char *name, const char *guid)
{
	struct buf path = BUF_INIT, aside = BUF_INIT;
	struct terr err;
	char q[LOGQ_MAX];
	if (store_message_path(s->st, name, guid, &path, &err) == 0) {
		buf_printf(&aside, "%s.damaged", path.ptr);
		if (rename(path.ptr, aside.ptr) == 0)
			log_warn("event=sync_damaged_body session=%s mailbox=%s guid=%s moved_to=%s", s->env->session_id,
				 logq(q, name), guid, aside.ptr);
	}
	buf_free(&path);
	buf_free(&aside);
}

static const char *apply_reserve(struct syncs *s, const struct dlist *kv)
{
	const struct dlist *names = dlist_get_list(kv, "MBOXNAME"), *guids = dlist_get_list(kv, "GUID");
	const char *part;
	if (!names || !guids || dlist_get_str(kv, "PARTITION", &part) < 0)
		return "NO IMAP_PROTOCOL_BAD_PARAMETERS";
	struct dlist *missing = dlist_new(DL_LIST, "MISSING");
	struct buf path = BUF_INIT, data = BUF_INIT;
	struct terr err;
	for (size_t g = 0; g < guids->n; g++) {
		const char *guid = dlist_cstr(guids->items[g]);
		if (!guid || strlen(guid) != 40)
			continue;
		if (find_staged(s, guid))
			continue;
		int found = 0;
		for (size_t m = 0; m < names->n && !found; m++) {
			const char *name = dlist_cstr(names->items[m]);
			buf_reset(&data);
			if (name && mboxname_validate(name, &err) == 0 &&
			    store_message_read(s->st, name, guid, &data, &err) == 0) {
				stage(s, guid, data.ptr, data.len);
				found = 1;
			} else if (name && err.code == TE_CORRUPT) {
				quarantine(s, name, guid);
			}
		}
		if (!found)
			dlist_add_str(missing, NULL, guid);
	}
	if (missing->n)
		send_data(s, missing);
	dlist_free(&missing);
	buf_free(&path);
	buf_free(&data);
	return "OK success";
}

static const char *apply_message(struct syncs *s, const struct dlist *kv)
{
	if (kv->type != DL_LIST)
		return "NO IMAP_PROTOCOL_BAD_PARAMETERS";
	for (size_t i = 0; i < kv->n; i++) {
		const struct dlist *f = kv->items[i];
		if (f->type != DL_FILE)
			continue;
		/* the SHA-1 is checked when a record uses it; staging keeps it as sent */
		stage(s, f->guid, f->s.ptr ? f->s.ptr : "", f->s.len);
	}
	return "OK success";
}

/* After a TE_CORRUPT apply: was it a staged body that does not hash to
 * its record's GUID (Cyrus's IMAP_SYNC_CHECKSUM), rather than the
 * replica's own damaged database (an I/O error, with its cause)? */
static int staged_body_bad(struct syncs *s, const struct dlist *kv)
{
	const struct dlist *recs = dlist_get_list(kv, "RECORD");
	for (size_t i = 0; recs && i < recs->n; i++) {
		char guid[41], got[41];
		if (dlist_get_guid(recs->items[i], "GUID", guid) < 0)
			continue;
		const struct staged *g = find_staged(s, guid);
		if (!g)
			continue;
		sha1_hex(g->data.ptr ? g->data.ptr : "", g->data.len, got);
		if (strcmp(got, guid))
			return 1;
	}
	return 0;
}

static const char *apply_mailbox(struct syncs *s, const struct dlist *kv)
{
	struct store_apply a;
	struct terr err = { 0 };
	if (kv->type == DL_KVLIST && sieve_mailbox_refused(s, kv))
		return "NO IMAP_PROTOCOL_BAD_PARAMETERS";
	if (kv->type != DL_KVLIST || sync_apply_from_dlist(kv, &a, &err) < 0) {
		log_warn("event=apply_fail session=%s error=\"%s\"", s->env->session_id, err.msg);
		return "NO IMAP_PROTOCOL_BAD_PARAMETERS";
	}
	a.body = body_cb;
	a.body_rock = s;
	int rc = store_apply_mailbox(s->st, &a, &err);
	char q[LOGQ_MAX];
	if (rc < 0)
		log_warn("event=apply_fail session=%s mailbox=%s code=%s error=\"%s\"", s->env->session_id,
			 logq(q, a.name), terr_code_name(err.code), err.msg);
	sync_apply_free(&a);
	if (rc < 0)
		return err.code == TE_CORRUPT && staged_body_bad(s, kv) ? "NO IMAP_SYNC_CHECKSUM Checksum Failure" :
		       err.code == TE_NOTFOUND ? "NO IMAP_PROTOCOL_ERROR Message body was not sent" : sync_no_text(&err);
	return "OK success";
}

static const char *do_apply(struct syncs *s, const struct dlist *kv)
{
	struct terr err = { 0 };
	const char *k = kv->key;
	if (strcasecmp(k, "CAPABILITIES") && server_role_get(s->env->conf) == ROLE_MASTER) {
		/* promoted by `tandem failover`: an old master that comes back
		 * must not overwrite what was accepted here since */
		log_warn("event=apply_refused service=sync session=%s reason=this_is_the_master", s->env->session_id);
		return "NO IMAP_PROTOCOL_ERROR This server is the master now (tandem failover): demote the sender";
	}
	if (!strcasecmp(k, "CAPABILITIES")) {
		struct dlist *en = dlist_new(DL_LIST, "ENABLED");
		for (size_t i = 0; kv->type == DL_LIST && i < kv->n; i++) {
			const char *cap = dlist_cstr(kv->items[i]);
			if (cap && !strcasecmp(cap, "SIEVE-MAILBOX")) {
				s->sieve_mailbox = 1;
				dlist_add_str(en, NULL, "SIEVE-MAILBOX");
			}
		}
		send_data(s, en);
		dlist_free(&en);
		return "OK success";
	}
	const char *sieve_res = apply_sieve(s, k, kv);
	if (sieve_res)
		return sieve_res;
	if (!strcasecmp(k, "RESERVE"))
		return apply_reserve(s, kv);
	if (!strcasecmp(k, "MESSAGE"))
		return apply_message(s, kv);
	if (!strcasecmp(k, "MAILBOX") || !strcasecmp(k, "LOCAL_MAILBOX"))
		return apply_mailbox(s, kv);
	if (!strcasecmp(k, "EXPUNGE")) {
		const char *m, *uid;
		const struct dlist *list = dlist_get_list(kv, "UID");
		if (dlist_get_str(kv, "MBOXNAME", &m) < 0 || dlist_get_str(kv, "UNIQUEID", &uid) < 0 || !list ||
		    mboxname_validate(m, &err) < 0)
			return "NO IMAP_PROTOCOL_BAD_PARAMETERS";
		uint32_t *uids = xcalloc(list->n ? list->n : 1, sizeof *uids);
		size_t n = 0;
		for (size_t i = 0; i < list->n; i++) {
			uint64_t v;
			if (dlist_num64(list->items[i], &v) == 0 && v && v <= UINT32_MAX)
				uids[n++] = (uint32_t)v;
		}
		int rc = store_apply_expunge(s->st, m, uid, uids, n, &err);
		free(uids);
		return rc < 0 ? sync_no_text(&err) : "OK success";
	}
	if (!strcasecmp(k, "UNMAILBOX") || !strcasecmp(k, "LOCAL_UNMAILBOX")) {
		const char *name = dlist_cstr(kv);
		if (!name || mboxname_validate(name, &err) < 0)
			return "NO IMAP_PROTOCOL_BAD_PARAMETERS";
		return store_apply_unmailbox(s->st, name, &err) < 0 ? sync_no_text(&err) : "OK success";
	}
	if (!strcasecmp(k, "RENAME") || !strcasecmp(k, "LOCAL_RENAME")) {
		const char *o, *n;
		if (dlist_get_str(kv, "OLDMBOXNAME", &o) < 0 || dlist_get_str(kv, "NEWMBOXNAME", &n) < 0)
			return "NO IMAP_PROTOCOL_BAD_PARAMETERS";
		if (!strcmp(o, n))
			return "OK success";	/* a partition move: one partition here */
		if (store_apply_rename(s->st, o, n, &err) < 0)
			return sync_no_text(&err);
		return "OK success";
	}
	if (!strcasecmp(k, "UNUSER") || !strcasecmp(k, "LOCAL_UNUSER")) {
		const char *u = dlist_cstr(kv);
		if (!u)
			return "NO IMAP_PROTOCOL_BAD_PARAMETERS";
		if (*u && store_user_exists(s->st, u, &err) == 1 && store_user_delete(s->st, u, &err) < 0)
			return sync_no_text(&err);
		return "OK success";
	}
	if (!strcasecmp(k, "SUB") || !strcasecmp(k, "UNSUB")) {
		const char *u, *m;
		if (dlist_get_str(kv, "USERID", &u) < 0 || dlist_get_str(kv, "MBOXNAME", &m) < 0)
			return "NO IMAP_PROTOCOL_BAD_PARAMETERS";
		if (userid_validate(u, 1, &err) < 0 || store_user_ensure(s->st, u, &err) < 0)
			return "NO IMAP_PROTOCOL_BAD_PARAMETERS";
		return store_subscribe(s->st, u, m, !strcasecmp(k, "SUB"), &err) < 0 ? sync_no_text(&err) : "OK success";
	}
	if (!strcasecmp(k, "SEEN")) {
		const char *u, *uid, *seen;
		uint64_t lr, lc;
		uint32_t lu;
		if (dlist_get_str(kv, "USERID", &u) < 0 || dlist_get_str(kv, "UNIQUEID", &uid) < 0 ||
		    dlist_get_num64(kv, "LASTREAD", &lr) < 0 || dlist_get_num32(kv, "LASTUID", &lu) < 0 ||
		    dlist_get_num64(kv, "LASTCHANGE", &lc) < 0 || dlist_get_str(kv, "SEENUIDS", &seen) < 0)
			return "NO IMAP_PROTOCOL_BAD_PARAMETERS";
		struct store_seen sv = { (int64_t)lr, lu, (int64_t)lc, (char *)seen };
		return store_seen_set(s->st, u, uid, &sv, &err) < 0 ? sync_no_text(&err) : "OK success";
	}
	if (!strcasecmp(k, "QUOTA")) {
		const char *root;
		uint64_t storage = 0, msgs = 0;
		if (dlist_get_str(kv, "ROOT", &root) < 0)
			return "NO IMAP_PROTOCOL_BAD_PARAMETERS";
		int64_t sl = dlist_get_num64(kv, "STORAGE", &storage) == 0 || dlist_get_num64(kv, "LIMIT", &storage) == 0 ?
			     (int64_t)storage : -1;
		int64_t ml = dlist_get_num64(kv, "MESSAGE", &msgs) == 0 ? (int64_t)msgs : -1;
		return store_quota_set(s->st, root, sl, ml, &err) < 0 ? sync_no_text(&err) : "OK success";
	}
	if (!strcasecmp(k, "UNQUOTA")) {
		const char *root = dlist_cstr(kv);
		if (root)
			store_quota_delete(s->st, root, &err);
		return "OK success";
	}
	if (!strcasecmp(k, "ANNOTATION") || !strcasecmp(k, "UNANNOTATION")) {
		const char *m, *e, *u;
		const struct dlist *v = dlist_get(kv, "VALUE");
		if (dlist_get_str(kv, "MBOXNAME", &m) < 0 || dlist_get_str(kv, "ENTRY", &e) < 0 ||
		    dlist_get_str(kv, "USERID", &u) < 0 || (!strcasecmp(k, "ANNOTATION") && !v))
			return "NO IMAP_PROTOCOL_BAD_PARAMETERS";
		if (!*m)
			return "OK success";	/* server annotations: not kept by tandem yet */
		const void *val = v && v->type == DL_STR ? v->s.ptr : "";
		size_t vl = v && v->type == DL_STR ? v->s.len : 0;
		return store_annot_set(s->st, m, 0, e, u, val ? val : "", vl, &err) < 0 ? sync_no_text(&err) : "OK success";
	}
	return "NO IMAP_PROTOCOL_ERROR Protocol error";
}

/* ---- the session ---------------------------------------------------------------------- */

/* Runs one framed command; 0 to go on, 1 to end the session. */
static int do_command(struct syncs *s, const char *cmd, size_t len)
{
	struct dlist *line = NULL;
	struct terr err = { 0 };
	if (dlist_parse(cmd, len, &line, &err) < 0) {
		char verb[16];
		size_t vl = strcspn(cmd, " \r\n");
		snprintf(verb, sizeof verb, "%.*s", (int)(vl < 15 ? vl : 15), cmd);
		for (char *p = verb; *p; p++)
			*p = (char)toupper((unsigned char)*p);
		log_warn("event=bad_command service=sync session=%s error=\"%s\"", s->env->session_id, err.msg);
		conn_printf(s->c, "BAD IMAP_PROTOCOL_ERROR Failed to parse %s line\r\n", verb);
		return 0;
	}
	s->commands++;
	const char *verb = line->n ? dlist_cstr(line->items[0]) : NULL;
	int end = 0;
	if (!verb || !*verb) {
		send_line(s, "BAD Null command");
	} else if (!strcasecmp(verb, "NOOP")) {
		send_line(s, line->n > 1 ? "BAD Unexpected extra arguments to Noop" : "OK Noop completed");
	} else if (!strcasecmp(verb, "EXIT")) {
		send_line(s, "OK Finished");
		end = 1;
	} else if (!strcasecmp(verb, "RESTART")) {
		unstage_all(s);
		send_line(s, "OK Restarting");
	} else if (!strcasecmp(verb, "AUTHENTICATE")) {
		do_authenticate(s, line);
	} else if (!strcasecmp(verb, "STARTTLS") && s->env->tls && !conn_is_tls(s->c) && !s->authed) {
		if (s->in.len) {
			send_line(s, "BAD Command pipelined after STARTTLS");
			end = 1;
		} else {
			send_line(s, "OK Begin TLS negotiation now");
			if (conn_flush(s->c, &err) < 0 || conn_tls_server(s->c, s->env->tls, &err) < 0) {
				log_warn("event=starttls_fail service=sync session=%s error=\"%s\"", s->env->session_id, err.msg);
				end = 1;
			} else {
				banner(s);
			}
		}
	} else if (!strcasecmp(verb, "COMPRESS")) {
		const char *arg = line->n > 1 ? dlist_cstr(line->items[1]) : NULL;
		if (!arg)
			send_line(s, "BAD Missing required argument to Compress");
		else if (strcasecmp(arg, "DEFLATE") || conn_is_compressed(s->c) || conn_is_tls(s->c))
			send_line(s, "NO Compression not available");
		else {
			send_line(s, "OK DEFLATE active");
			if (conn_flush(s->c, &err) < 0 || conn_compress(s->c, &err) < 0)
				end = 1;
		}
	} else if (!strcasecmp(verb, "GET") || !strcasecmp(verb, "APPLY") || !strcasecmp(verb, "RESTORE")) {
		if (!s->authed) {
			send_line(s, "NO Please authenticate first");
		} else {
			struct dlist *kv = dlist_take_keyed(line, 1);
			if (!kv)
				conn_printf(s->c, "BAD IMAP_PROTOCOL_ERROR Failed to parse %s line\r\n", verb);
			else if (!strcasecmp(verb, "GET"))
				send_line(s, do_get(s, kv));
			else if (!strcasecmp(verb, "APPLY"))
				send_line(s, do_apply(s, kv));
			else
				send_line(s, "NO IMAP_PROTOCOL_ERROR Protocol error");
			dlist_free(&kv);
		}
	} else {
		send_line(s, "BAD IMAP_PROTOCOL_ERROR Unrecognized command");
	}
	dlist_free(&line);
	return end;
}

int syncs_session(const struct service_env *env, struct conn *c)
{
	struct syncs s = { 0 };
	s.env = env;
	s.c = c;
	struct terr err = { 0 };
	if (env->implicit_tls && conn_tls_server(c, env->tls, &err) < 0)
		return 1;
	if (server_open_store(env->conf, &s.st, &s.log, &s.ns, &err) < 0) {
		log_err("event=store_fail service=sync session=%s error=\"%s\"", env->session_id, err.msg);
		return 1;
	}
	/* A replica logs what it applies only to feed a further replica. */
	if (!conf_bool(env->conf, "sync_log_chain")) {
		store_set_chlog(s.st, NULL);
		chlog_close(&s.log);
	}
	log_info("event=connect service=sync session=%s peer=%s", env->session_id, env->peer);
	banner(&s);
	long long timeout_ms = conf_duration_ms(env->conf, "sync_timeout");
	struct dlist_frame f;
	dlist_frame_init(&f);
	for (;;) {
		long long n = dlist_frame_scan(&f, s.in.ptr ? s.in.ptr : "", s.in.len, &err);
		if (n < 0 && err.code == TE_INVALID) {
			/* a syntax error: skip to the end of the line, answer BAD, go on
			 * (over a size limit there is no way to resynchronise: drop) */
			const char *nl = memchr(s.in.ptr + f.pos, '\n', s.in.len - f.pos);
			if (!nl) {
				if (s.in.len > DLIST_MAX_ATOM)
					break;
				ssize_t r = conn_read(c, &s.in, (int)(timeout_ms > 0 ? timeout_ms : -1), &err);
				if (r <= 0)
					break;
				continue;	/* the scanner stays where it failed */
			}
			char verb[16];
			size_t vl = strcspn(s.in.ptr, " \r\n");
			snprintf(verb, sizeof verb, "%.*s", (int)(vl < 15 ? vl : 15), s.in.ptr);
			for (char *p = verb; *p; p++)
				*p = (char)toupper((unsigned char)*p);
			log_warn("event=bad_command service=sync session=%s error=\"%s\"", env->session_id, err.msg);
			conn_printf(c, "BAD IMAP_PROTOCOL_ERROR Failed to parse %s line\r\n", verb);
			buf_consume(&s.in, (size_t)(nl - s.in.ptr) + 1);
			dlist_frame_init(&f);
			continue;
		}
		if (n < 0) {
			log_warn("event=bad_command service=sync session=%s error=\"%s\"", env->session_id, err.msg);
			conn_printf(c, "* BYE %s\r\n", err.msg);
			break;
		}
		if (n > 0) {
			char *cmd = xmemdup(s.in.ptr, (size_t)n);
			buf_consume(&s.in, (size_t)n);
			dlist_frame_init(&f);
			int end = do_command(&s, cmd, (size_t)n);
			free(cmd);
			if (end)
				break;
			continue;
		}
		if (conn_flush(c, &err) < 0)
			break;
		if (server_stop_requested) {
			send_line(&s, "BYE shutting down");
			break;
		}
		ssize_t r = server_idle_read(c, &s.in, timeout_ms > 0 ? timeout_ms : -1, &err);
		if (r < 0 && server_stop_requested)
			send_line(&s, "BYE shutting down");
		if (r <= 0)
			break;
	}
	conn_flush(c, &err);
	log_info("event=disconnect service=sync session=%s user=%s commands=%lu", env->session_id, s.user,
		 s.commands);
	unstage_all(&s);
	buf_free(&s.in);
	buf_free(&s.out);
	store_close(&s.st);
	chlog_close(&s.log);
	return 0;
}

/* ---- the IMAP transport (reference §2.10) -------------------------------------------- */

struct syncs *syncs_imap_new(const struct service_env *env, struct conn *c, const char *user,
			     struct terr *err)
{
	struct syncs *s = xcalloc(1, sizeof *s);
	s->env = env;
	s->c = c;
	if (server_open_store(env->conf, &s->st, &s->log, &s->ns, err) < 0) {
		free(s);
		return NULL;
	}
	if (!conf_bool(env->conf, "sync_log_chain")) {
		store_set_chlog(s->st, NULL);
		chlog_close(&s->log);
	}
	snprintf(s->user, sizeof s->user, "%s", user);
	s->authed = 1;
	return s;
}

const char *syncs_imap_command(struct syncs *s, const char *verb, const char *raw, size_t len)
{
	if (!strcasecmp(verb, "RESTART")) {
		unstage_all(s);
		return "OK Restarting";
	}
	const char *fail = !strcasecmp(verb, "GET") ? "BAD Replication parse failure in Syncget" :
			   !strcasecmp(verb, "APPLY") ? "BAD Replication parse failure in Syncapply" :
							"BAD Replication parse failure in Syncrestore";
	struct buf line = BUF_INIT;
	buf_printf(&line, "%s ", verb);
	buf_append(&line, raw, len);
	struct dlist *dl = NULL;
	struct terr err = { 0 };
	const char *res = fail;
	if (dlist_parse(line.ptr, line.len, &dl, &err) < 0) {
		log_warn("event=bad_command service=imap-sync session=%s error=\"%s\"", s->env->session_id, err.msg);
	} else {
		struct dlist *kv = dlist_take_keyed(dl, 1);
		s->commands++;
		if (kv && !strcasecmp(verb, "GET"))
			res = do_get(s, kv);
		else if (kv && !strcasecmp(verb, "APPLY"))
			res = do_apply(s, kv);
		else if (kv)
			res = "NO IMAP_PROTOCOL_ERROR Protocol error";
		dlist_free(&kv);
	}
	dlist_free(&dl);
	buf_free(&line);
	return res;
}

void syncs_imap_free(struct syncs **sp)
{
	struct syncs *s = *sp;
	if (!s)
		return;
	unstage_all(s);
	buf_free(&s->in);
	buf_free(&s->out);
	store_close(&s->st);
	chlog_close(&s->log);
	free(s);
	*sp = NULL;
}
