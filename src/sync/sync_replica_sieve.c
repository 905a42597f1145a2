/* sync_replica_sieve.c: Sieve scripts on the replica (reference §2.8,
 * §4.2.5, §4.2.9, §4.3.15, §6.9).
 *
 * With SIEVE-MAILBOX enabled on the connection, scripts travel as the
 * user.<u>.#sieve mailbox (MBOXTYPE f, one message per script, the active
 * one \Flagged), replicated like any mailbox. Without it they travel one
 * by one, as "<name>.script" files (and "<name>.bc" for the active one's
 * bytecode), kept in the store's sieve table; the GUID of a script is the
 * SHA-1 of its bytes, as Cyrus 3.6's content id. */
#include "sync/sync_replica-private.h"

#include "lib/limits.h"
#include "lib/log.h"
#include "lib/sha1.h"
#include "names/mboxname.h"
#include "store/store.h"

#include <stdio.h>
#include <string.h>

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

int replica_sieve_hidden(const struct sync_replica *r, const struct dlist *mb)
{
	const char *type;
	return !r->sieve_mailbox && dlist_get_str(mb, "MBOXTYPE", &type) == 0 && type[0] == 'f';
}

static void sieve_line(struct sync_replica *r, const char *name, const char *suffix, int64_t last_update,
		       const char *guid, int active)
{
	char fname[300];
	snprintf(fname, sizeof fname, "%s%s", name, suffix);
	struct dlist *d = dlist_new(DL_KVLIST, "SIEVE");
	dlist_add_str(d, "FILENAME", fname);
	dlist_add_num(d, "LAST_UPDATE", last_update > 0 ? (uint64_t)last_update : 0);
	dlist_add_str(d, "GUID", guid);
	dlist_add_num(d, "ISACTIVE", (uint64_t)active);
	replica_data(r, d);
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

void replica_sieve_meta(struct sync_replica *r, const char *user)
{
	struct terr err;
	if (!r->sieve_mailbox)
		store_sieve_list(r->st, user, sieve_meta_cb, r, &err);
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
 * 0 if not (or no such user), -1 with err on a store error. */
static int sieve_find(struct sync_replica *r, const char *user, const char *name, struct buf *script_r,
		      struct terr *err)
{
	struct sieve_find f = { name, 0, BUF_INIT };
	int ex = store_user_exists(r->st, user, err);
	struct terr e2 = { 0 };
	if (ex == 1 && store_sieve_list(r->st, user, sieve_find_cb, &f, &e2) < 0 && e2.code != TE_NOTFOUND) {
		*err = e2;	/* a user without a store yet has no scripts */
		ex = -1;
	}
	if (ex >= 0 && script_r && f.found)
		buf_append(script_r, f.script.ptr ? f.script.ptr : "", f.script.len);
	buf_free(&f.script);
	return ex < 0 ? -1 : f.found;
}

/* GET FETCH_SIEVE %(USERID u FILENAME <name>.script) */
int get_fetch_sieve(struct sync_replica *r, const struct dlist *kv, struct terr *err)
{
	const char *user, *fname;
	char name[260];
	struct terr e2 = { 0 };
	if (kv->type != DL_KVLIST || dlist_get_str(kv, "USERID", &user) < 0 || dlist_get_str(kv, "FILENAME", &fname) < 0)
		return terr_set(err, TE_INVALID, "GET FETCH_SIEVE wants USERID and FILENAME");
	if (userid_validate(user, 1, &e2) < 0 || !sieve_basename(fname, SIEVE_SCRIPT_SUFFIX, name, sizeof name))
		return terr_set(err, TE_NOTFOUND, "no such script");
	struct buf script = BUF_INIT;
	int found = sieve_find(r, user, name, &script, err);
	if (found <= 0) {
		buf_free(&script);
		return found < 0 ? -1 : terr_set(err, TE_NOTFOUND, "no such script");
	}
	struct dlist *d = dlist_new(DL_KVLIST, "SIEVE");
	dlist_add_str(d, "USERID", user);
	dlist_add_str(d, "FILENAME", fname);
	dlist_add_bytes(d, "CONTENT", script.ptr ? script.ptr : "", script.len);
	replica_data(r, d);
	dlist_free(&d);
	buf_free(&script);
	return 0;
}

static void sieve_log(struct sync_replica *r, const char *op, const char *user, const char *name)
{
	char q[LOGQ_MAX];
	log_info("event=apply_sieve session=%s user=%s op=%s script=%s", r->o.session_id, user, op,
		 logq(q, name ? name : ""));
}

/* USERID and (unless fname_r is NULL) FILENAME of a legacy command. */
static int sieve_args(const struct dlist *kv, const char **user_r, const char **fname_r, struct terr *err)
{
	struct terr e2;
	if (kv->type != DL_KVLIST || dlist_get_str(kv, "USERID", user_r) < 0 ||
	    (fname_r && dlist_get_str(kv, "FILENAME", fname_r) < 0) || userid_validate(*user_r, 1, &e2) < 0)
		return terr_set(err, TE_INVALID, "a Sieve command wants USERID and FILENAME");
	return 0;
}

/* APPLY SIEVE %(USERID u FILENAME <name>.script LAST_UPDATE t CONTENT bytes):
 * other file names are accepted and ignored; LAST_UPDATE is not kept (the
 * replica timestamps the script, as Cyrus 3.6). Replaying it changes
 * nothing but the timestamp. */
int apply_sieve(struct sync_replica *r, const struct dlist *kv, struct terr *err)
{
	const char *user, *fname;
	uint64_t lu;
	char name[260];
	if (sieve_args(kv, &user, &fname, err) < 0)
		return -1;
	const struct dlist *content = dlist_get(kv, "CONTENT");
	if (dlist_get_num64(kv, "LAST_UPDATE", &lu) < 0 || !content || content->type != DL_STR)
		return terr_set(err, TE_INVALID, "APPLY SIEVE wants LAST_UPDATE and CONTENT");
	if (!sieve_basename(fname, SIEVE_SCRIPT_SUFFIX, name, sizeof name))
		return 0;
	/* as Cyrus 3.6: a script needs its user's INBOX there first */
	struct buf inbox = BUF_INIT;
	struct store_mailbox_info mi;
	int rc = mboxname_user_inbox(user, &inbox, err) < 0 ? -1 : store_mailbox_get(r->st, inbox.ptr, &mi, err);
	buf_free(&inbox);
	if (rc < 0)
		return -1;
	store_mailbox_info_free(&mi);
	if (store_sieve_put(r->st, user, name, content->s.ptr ? content->s.ptr : "", content->s.len, err) < 0)
		return -1;
	sieve_log(r, "put", user, name);
	return 0;
}

/* APPLY UNSIEVE %(USERID u FILENAME <name>.script): a script that is not
 * there is already deleted (a replay answers OK). */
int apply_unsieve(struct sync_replica *r, const struct dlist *kv, struct terr *err)
{
	const char *user, *fname;
	char name[260];
	if (sieve_args(kv, &user, &fname, err) < 0)
		return -1;
	if (!sieve_basename(fname, SIEVE_SCRIPT_SUFFIX, name, sizeof name))
		return 0;
	int found = sieve_find(r, user, name, NULL, err);
	if (found <= 0)
		return found;
	struct terr e2 = { 0 };
	if (store_sieve_delete(r->st, user, name, &e2) < 0 && e2.code != TE_NOTFOUND) {
		*err = e2;
		return -1;
	}
	sieve_log(r, "delete", user, name);
	return 0;
}

/* APPLY ACTIVATE_SIEVE %(USERID u FILENAME <name>.bc): an unknown script
 * is refused and changes nothing. */
int apply_activate_sieve(struct sync_replica *r, const struct dlist *kv, struct terr *err)
{
	const char *user, *fname;
	char name[260];
	if (sieve_args(kv, &user, &fname, err) < 0)
		return -1;
	if (!sieve_basename(fname, SIEVE_BC_SUFFIX, name, sizeof name))
		return terr_set(err, TE_NOTFOUND, "no such script");
	int found = sieve_find(r, user, name, NULL, err);
	if (found <= 0)
		return found < 0 ? -1 : terr_set(err, TE_NOTFOUND, "no such script");
	if (store_sieve_activate(r->st, user, name, err) < 0)
		return -1;
	sieve_log(r, "activate", user, name);
	return 0;
}

/* APPLY UNACTIVATE_SIEVE %(USERID u) */
int apply_unactivate_sieve(struct sync_replica *r, const struct dlist *kv, struct terr *err)
{
	const char *user;
	if (sieve_args(kv, &user, NULL, err) < 0)
		return -1;
	int ex = store_user_exists(r->st, user, err);
	if (ex < 0 || (ex == 1 && store_sieve_activate(r->st, user, NULL, err) < 0))
		return -1;
	sieve_log(r, "deactivate", user, NULL);
	return 0;
}
