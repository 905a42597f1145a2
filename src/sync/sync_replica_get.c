/* sync_replica_get.c: the replica engine's GET commands (reference
 * §4.2): the state a master plans its updates from. A GET changes
 * nothing; what does not exist is left out of the answer (Cyrus's
 * behaviour), and a store error is an error, never "absent". */
#include "sync/sync_replica-private.h"

#include "lib/xalloc.h"
#include "names/mboxname.h"
#include "store/store.h"
#include "sync/sync.h"

#include <string.h>
#include <strings.h>

/* One MAILBOX line (no records); a mailbox that does not exist (or a
 * #sieve one this connection must not see) sends nothing. */
static int send_mailbox(struct sync_replica *r, const char *name, struct terr *err)
{
	struct dlist *mb = NULL;
	struct terr e2 = { 0 };
	if (sync_mailbox_dlist(r->st, name, 0, 0, &mb, &e2) < 0) {
		if (e2.code == TE_NOTFOUND)
			return 0;
		*err = e2;
		return -1;
	}
	if (!replica_sieve_hidden(r, mb))
		replica_data(r, mb);
	dlist_free(&mb);
	return 0;
}

/* GET MAILBOXES (name ...) */
int get_mailboxes(struct sync_replica *r, const struct dlist *kv, struct terr *err)
{
	if (kv->type != DL_LIST)
		return terr_set(err, TE_INVALID, "GET MAILBOXES wants a list");
	for (size_t i = 0; i < kv->n; i++) {
		const char *name = dlist_cstr(kv->items[i]);
		struct terr e2;
		if (name && mboxname_validate(name, &e2) == 0 && send_mailbox(r, name, err) < 0)
			return -1;
	}
	return 0;
}

/* GET FULLMAILBOX name: the header and every record. */
int get_fullmailbox(struct sync_replica *r, const struct dlist *kv, struct terr *err)
{
	const char *name = dlist_cstr(kv);
	struct dlist *mb = NULL;
	if (!name || mboxname_validate(name, err) < 0)
		return terr_set(err, TE_INVALID, "GET FULLMAILBOX wants a mailbox name");
	if (sync_mailbox_dlist(r->st, name, 1, 0, &mb, err) < 0)
		return -1;
	replica_data(r, mb);
	dlist_free(&mb);
	return 0;
}

struct list_rock {
	struct sync_replica *r;
	const struct dlist *wanted;	/* GET UNIQUEIDS: the uniqueids asked for */
	struct terr err;
	int failed;
};

static int user_mailbox_cb(const struct store_mailbox_info *mi, void *rock)
{
	struct list_rock *lr = rock;
	if (send_mailbox(lr->r, mi->name, &lr->err) < 0)
		lr->failed = 1;
	return lr->failed;
}

/* store_mailbox_list, with a callback's failure as the list's. */
static int list_mailboxes(struct sync_replica *r, const char *owner, store_mailbox_cb *cb, const struct dlist *wanted,
			  struct terr *err)
{
	struct list_rock lr = { r, wanted, { 0 }, 0 };
	if (store_mailbox_list(r->st, owner, cb, &lr, err) < 0)
		return -1;
	if (lr.failed) {
		*err = lr.err;
		return -1;
	}
	return 0;
}

static int sub_cb(const char *name, void *rock)
{
	dlist_add_str(rock, NULL, name);
	return 0;
}

/* GET USER / GET META: (the mailboxes,) the subscriptions (LSUB) and the
 * legacy Sieve lines. An unknown user has nothing. */
static int user_or_meta(struct sync_replica *r, const struct dlist *kv, int mailboxes, struct terr *err)
{
	const char *user = dlist_cstr(kv);
	struct terr e2 = { 0 };
	if (!user)
		return terr_set(err, TE_INVALID, "GET USER wants a userid");
	if (userid_validate(user, 1, &e2) < 0)
		return 0;
	int ex = store_user_exists(r->st, user, err);
	if (ex <= 0)
		return ex;
	if (mailboxes && list_mailboxes(r, user, user_mailbox_cb, NULL, err) < 0)
		return -1;
	struct dlist *lsub = dlist_new(DL_LIST, "LSUB");
	int rc = store_subs_list(r->st, user, sub_cb, lsub, err);
	if (rc == 0 && lsub->n)
		replica_data(r, lsub);
	dlist_free(&lsub);
	if (rc == 0)
		replica_sieve_meta(r, user);
	return rc;
}

int get_user(struct sync_replica *r, const struct dlist *kv, struct terr *err)
{
	return user_or_meta(r, kv, 1, err);
}

int get_meta(struct sync_replica *r, const struct dlist *kv, struct terr *err)
{
	return user_or_meta(r, kv, 0, err);
}

static int uniqueid_cb(const struct store_mailbox_info *mi, void *rock)
{
	struct list_rock *lr = rock;
	for (size_t i = 0; i < lr->wanted->n && !lr->failed; i++) {
		const char *u = dlist_cstr(lr->wanted->items[i]);
		if (u && !strcmp(u, mi->uniqueid) && send_mailbox(lr->r, mi->name, &lr->err) < 0)
			lr->failed = 1;
	}
	return lr->failed;
}

/* GET UNIQUEIDS (uniqueid ...): the mailboxes with these uniqueids. */
int get_uniqueids(struct sync_replica *r, const struct dlist *kv, struct terr *err)
{
	if (kv->type != DL_LIST)
		return terr_set(err, TE_INVALID, "GET UNIQUEIDS wants a list");
	return list_mailboxes(r, NULL, uniqueid_cb, kv, err);
}

/* GET QUOTA root */
int get_quota(struct sync_replica *r, const struct dlist *kv, struct terr *err)
{
	const char *root = dlist_cstr(kv);
	struct store_quota q;
	struct terr e2 = { 0 };
	if (!root)
		return terr_set(err, TE_INVALID, "GET QUOTA wants a root");
	if (mboxname_validate(root, &e2) < 0)
		return 0;
	if (store_quota_get(r->st, root, &q, &e2) < 0) {
		if (e2.code == TE_NOTFOUND)
			return 0;
		*err = e2;
		return -1;
	}
	struct dlist *d = dlist_new(DL_KVLIST, "QUOTA");
	dlist_add_str(d, "ROOT", q.root);
	dlist_add_num(d, "LIMIT", q.storage_limit < 0 ? 4294967295u : (uint64_t)q.storage_limit);
	if (q.storage_limit >= 0)
		dlist_add_num(d, "STORAGE", (uint64_t)q.storage_limit);
	if (q.message_limit >= 0)
		dlist_add_num(d, "MESSAGE", (uint64_t)q.message_limit);
	dlist_add_num(d, "MODSEQ", q.modseq);
	replica_data(r, d);
	dlist_free(&d);
	store_quota_free(&q);
	return 0;
}

struct annot_rock {
	struct sync_replica *r;
	const char *name;
};

static int annot_cb(uint32_t uid, const char *entry, const char *userid, const void *value, size_t len,
		    uint64_t modseq, void *rock)
{
	struct annot_rock *ar = rock;
	(void)modseq;
	if (uid != 0)
		return 0;
	struct dlist *d = dlist_new(DL_KVLIST, "ANNOTATION");
	dlist_add_str(d, "MBOXNAME", ar->name);
	dlist_add_str(d, "ENTRY", entry);
	dlist_add_str(d, "USERID", userid);
	dlist_add_bytes(d, "VALUE", value, len);
	replica_data(ar->r, d);
	dlist_free(&d);
	return 0;
}

/* GET ANNOTATION mailbox: its mailbox annotations ("" = the server's:
 * none kept). */
int get_annotation(struct sync_replica *r, const struct dlist *kv, struct terr *err)
{
	const char *name = dlist_cstr(kv);
	struct terr e2 = { 0 };
	if (!name)
		return terr_set(err, TE_INVALID, "GET ANNOTATION wants a mailbox name");
	if (!*name || mboxname_validate(name, &e2) < 0)
		return 0;
	struct annot_rock ar = { r, name };
	if (store_annot_list(r->st, name, 0, annot_cb, &ar, &e2) < 0 && e2.code != TE_NOTFOUND) {
		*err = e2;
		return -1;
	}
	return 0;
}

/* GET FETCH %(MBOXNAME m GUID g ...): one body; MESSAGE NIL when the
 * file no longer hashes to its GUID (tandem compare --bodies). */
int get_fetch(struct sync_replica *r, const struct dlist *kv, struct terr *err)
{
	const char *name;
	char guid[41];
	struct terr e2 = { 0 };
	if (kv->type != DL_KVLIST || dlist_get_str(kv, "MBOXNAME", &name) < 0 || dlist_get_guid(kv, "GUID", guid) < 0 ||
	    mboxname_validate(name, &e2) < 0)
		return terr_set(err, TE_INVALID, "GET FETCH wants MBOXNAME and GUID");
	struct buf data = BUF_INIT;
	int rc = store_message_read(r->st, name, guid, &data, &e2);
	struct dlist *d;
	if (rc == 0) {
		d = dlist_new(DL_FILE, "MESSAGE");
		d->part = xstrdup("default");
		memcpy(d->guid, guid, sizeof d->guid);
		buf_append(&d->s, data.ptr ? data.ptr : "", data.len);
	} else if (e2.code == TE_CORRUPT) {
		d = dlist_new(DL_NIL, "MESSAGE");
	} else {
		buf_free(&data);
		if (e2.code == TE_NOTFOUND)
			return terr_set(err, TE_NOTFOUND, "no such message");
		*err = e2;
		return -1;
	}
	replica_data(r, d);
	dlist_free(&d);
	buf_free(&data);
	return 0;
}
