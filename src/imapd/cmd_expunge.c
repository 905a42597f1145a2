/* cmd_expunge.c: EXPUNGE (RFC 3501 6.4.3) and UID EXPUNGE (RFC 4315
 * 2.1): removes the \Deleted messages (of the set, for UID EXPUNGE) and
 * sends their EXPUNGE responses at once. Needs the e right on a
 * read-write mailbox.
 */
#include "imapd/imapd-private.h"

#include "lib/xalloc.h"
#include "store/store.h"

#include <stdlib.h>

/* UID EXPUNGE: the \Deleted messages of the set as the store has them
 * now (after a poll). */
static size_t deleted_in_set(struct imapd_session *s, const struct imap_seqset *set, uint32_t **uids_r)
{
	struct imapd_view *v = s->sel;
	size_t *idx;
	size_t n = imapd_view_resolve(v, set, 1, &idx);
	uint32_t *uids = xmalloc((n ? n : 1) * sizeof *uids);
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		const struct imapd_msg *m = &v->msgs[idx[i]];
		if (!m->gone && (m->sysflags & SYSFLAG_DELETED))
			uids[k++] = m->uid;
	}
	free(idx);
	*uids_r = uids;
	return k;
}

int imapd_cmd_expunge(struct imapd_session *s, const struct imap_cmd *cmd)
{
	struct imapd_view *v = s->sel;
	struct terr err = { 0 };
	if (v->readonly) {
		imapd_no(s, "READ-ONLY", "Mailbox is read-only");
		return 0;
	}
	if (!(v->rights & IMAPD_R_EXPUNGE)) {
		imapd_no(s, "NOPERM", "Permission denied");
		return 0;
	}
	size_t count = 0;
	int rc;
	if (cmd->uid) {
		if (imapd_view_poll(s) < 0)
			return 0;	/* the dispatcher's poll says BYE */
		uint32_t *uids;
		size_t n = deleted_in_set(s, &cmd->u.expunge.set, &uids);
		rc = n ? store_expunge(s->st, v->name, uids, n, &count, &err) : 0;
		free(uids);
	} else {
		rc = store_expunge(s->st, v->name, NULL, 0, &count, &err);
	}
	if (rc < 0) {
		imapd_no_err(s, "expunge", &err);
		return 0;
	}
	imapd_log_event(s, "expunge", v->name, "count=%zu", count);
	if (imapd_view_poll(s) == 0)
		imapd_view_announce(s, 1, cmd->uid);
	return 0;
}
