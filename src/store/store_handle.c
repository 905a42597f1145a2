/* store_handle.c: mailbox handles (store.h, "mailbox handles"). A
 * handle is a mailbox resolved once: its owner (whose database is found
 * in the store's open-database list, without parsing a name again) and
 * its row id, with the row's state as read at open. Functions that take a
 * handle query by id; a rename keeps the id, a delete removes the row (the
 * handle's calls then find no mailbox: TE_NOTFOUND).
 *
 * The handle keeps the owner's name, not a pointer to the open database:
 * the store may close and reopen that database (its cache of open ones is
 * bounded) while a handle is open.
 */
#include "store/store-private.h"

#include "lib/xalloc.h"

#include <string.h>

struct store_mailbox {
	struct store *st;
	char *owner;	/* "" for shared mailboxes */
	int64_t id;
	struct store_mailbox_info info;
};

static int mb_ustore(const struct store_mailbox *mb, struct ustore **u_r, struct terr *err)
{
	return store_ustore(mb->st, mb->owner, 0, u_r, err);
}

/* Reads the row (by name when name is given, else by id) into mb. */
static int mb_read(struct store_mailbox *mb, struct ustore *u, const char *name, struct terr *err)
{
	sqlite3_stmt *s = store_stmt(&u->sql, name ? store_mbox_select_by_name : store_mbox_select_by_id, err);
	if (!s)
		return -1;
	if (name)
		sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	else
		sqlite3_bind_int64(s, 1, mb->id);
	int rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		store_mailbox_info_free(&mb->info);
		store_mbox_info_from_row(s, &mb->info);
		mb->id = sqlite3_column_int64(s, STORE_MBOX_ID_COL);
	}
	if (store_stmt_done(&u->sql, s, rc, "mailbox", err) < 0)
		return -1;	/* BUSY or an I/O error is not "no such mailbox" */
	if (rc != SQLITE_ROW)
		return terr_set(err, TE_NOTFOUND, "mailbox '%s' does not exist", name ? name : mb->info.name);
	return 0;
}

int store_mailbox_open(struct store *st, const char *name, struct store_mailbox **mb_r, struct terr *err)
{
	struct buf owner = BUF_INIT;
	struct ustore *u;
	*mb_r = NULL;
	if (store_ustore_for_mailbox(st, name, 0, &u, err) < 0 || store_name_owner(name, &owner, err) < 0) {
		buf_free(&owner);
		return -1;
	}
	struct store_mailbox *mb = xcalloc(1, sizeof *mb);
	mb->st = st;
	mb->owner = buf_release(&owner);
	if (!mb->owner)
		mb->owner = xstrdup("");
	if (mb_read(mb, u, name, err) < 0) {
		store_mailbox_close(&mb);
		return -1;
	}
	*mb_r = mb;
	return 0;
}

void store_mailbox_close(struct store_mailbox **mbp)
{
	struct store_mailbox *mb = *mbp;
	if (!mb)
		return;
	store_mailbox_info_free(&mb->info);
	free(mb->owner);
	free(mb);
	*mbp = NULL;
}

const struct store_mailbox_info *store_mailbox_state(const struct store_mailbox *mb)
{
	return &mb->info;
}

int store_mailbox_refresh(struct store_mailbox *mb, struct terr *err)
{
	struct ustore *u;
	if (mb_ustore(mb, &u, err) < 0)
		return -1;
	return mb_read(mb, u, NULL, err);
}

int store_mailbox_read_begin(struct store_mailbox *mb, int *begun_r, struct terr *err)
{
	struct ustore *u;
	*begun_r = 0;
	if (mb_ustore(mb, &u, err) < 0)
		return -1;
	if (sqlite3_get_autocommit(u->db)) {
		if (store_sql_exec(u->db, "BEGIN;", err) < 0)
			return -1;
		*begun_r = 1;
	}
	if (mb_read(mb, u, NULL, err) < 0) {
		store_mailbox_read_end(mb, *begun_r);
		*begun_r = 0;
		return -1;
	}
	return 0;
}

void store_mailbox_read_end(struct store_mailbox *mb, int begun)
{
	struct ustore *u;
	struct terr err = { 0 };
	if (!begun || mb_ustore(mb, &u, &err) < 0)
		return;
	/* a read transaction: nothing to keep; ROLLBACK cannot fail on it */
	if (!sqlite3_get_autocommit(u->db))
		(void)store_sql_exec(u->db, "ROLLBACK;", &err);
}

int store_mailbox_records(struct store_mailbox *mb, uint64_t since_modseq, int with_expunged,
			  store_record_cb *cb, void *rock, struct terr *err)
{
	struct ustore *u;
	if (mb_ustore(mb, &u, err) < 0)
		return -1;
	return store_records_of(u, mb->id, since_modseq, with_expunged, cb, rock, err);
}

int store_mailbox_annots(struct store_mailbox *mb, int64_t uid, store_annot_cb *cb, void *rock,
			 struct terr *err)
{
	struct ustore *u;
	if (mb_ustore(mb, &u, err) < 0)
		return -1;
	return store_annots_of(u, mb->id, uid, cb, rock, err);
}

int store_mailbox_message_read(struct store_mailbox *mb, const char *guid, struct buf *out, struct terr *err)
{
	struct ustore *u;
	if (mb_ustore(mb, &u, err) < 0)
		return -1;
	return store_blob_read(mb->st, u, guid, out, err);
}
