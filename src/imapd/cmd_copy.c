/* cmd_copy.c: COPY, MOVE (RFC 6851) and their UID forms, with UIDPLUS's
 * [COPYUID uidvalidity source-uids target-uids] (RFC 4315).
 *
 * Each message is read from the store and appended to the target with
 * its flags and internal date. The copy is all or nothing: when one
 * append fails, the copies already made are expunged again. MOVE then
 * expunges the sources and answers, as RFC 6851 3.3 wants, with an
 * untagged OK [COPYUID ...] followed by the EXPUNGE responses.
 */
#include "imapd/imapd-private.h"

#include "lib/xalloc.h"
#include "proto/imap/imap_write.h"
#include "store/store.h"

#include <stdlib.h>

struct copy_job {
	const char *target;	/* internal name */
	uint32_t *src, *dst;	/* UIDs, parallel */
	size_t n;
};

/* Appends one message of the selected mailbox to the target. */
static int copy_one(struct imapd_session *s, const struct imapd_msg *m, const char *target, struct buf *data,
		    uint32_t *uid_r, struct terr *err)
{
	buf_reset(data);
	if (store_message_read(s->st, s->sel->name, m->guid, data, err) < 0)
		return -1;
	struct store_append_opts o = { m->sysflags, m->keywords, m->internaldate };
	return store_append(s->st, target, data->ptr ? data->ptr : "", data->len, &o, uid_r, err);
}

/* Copies the live messages of idx; on failure undoes what was copied
 * and sets NO. */
static int copy_all(struct imapd_session *s, const size_t *idx, size_t n, struct copy_job *job)
{
	struct buf data = BUF_INIT;
	struct terr err = { 0 };
	int rc = 0;
	for (size_t i = 0; i < n; i++) {
		const struct imapd_msg *m = &s->sel->msgs[idx[i]];
		if (m->gone)
			continue;
		uint32_t uid;
		if (copy_one(s, m, job->target, &data, &uid, &err) < 0) {
			imapd_no_err(s, "copy", &err);
			rc = -1;
			break;
		}
		job->src[job->n] = m->uid;
		job->dst[job->n++] = uid;
	}
	buf_free(&data);
	if (rc < 0 && job->n) {
		struct terr e2 = { 0 };
		if (store_expunge(s->st, job->target, job->dst, job->n, NULL, &e2) < 0)
			imapd_log_event(s, "copy_undo_fail", job->target, "count=%zu", job->n);
		job->n = 0;
	}
	return rc;
}

/* COPY and MOVE within one owner's mailboxes: one store transaction
 * (store_copy), so a crash leaves the whole copy (and, for MOVE, the
 * expunge) or none of it. *atomic_r is 0 when the owners differ: the
 * caller then copies message by message. 0 done, -1 failed (NO set). */
static int copy_same_owner(struct imapd_session *s, const size_t *idx, size_t n, struct copy_job *job, int move,
			   int *atomic_r)
{
	uint32_t *uids = xmalloc((n ? n : 1) * sizeof *uids);
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		if (!s->sel->msgs[idx[i]].gone)
			uids[k++] = s->sel->msgs[idx[i]].uid;
	struct terr err = { 0 };
	size_t count = 0;
	int rc = k ? store_copy(s->st, s->sel->name, uids, k, job->target, move, job->src, job->dst, &count, &err) : 0;
	free(uids);
	if (rc < 0 && err.code == TE_INVALID) {
		*atomic_r = 0;	/* another owner */
		return -1;
	}
	*atomic_r = 1;
	if (rc < 0) {
		imapd_no_err(s, move ? "move" : "copy", &err);
		return -1;
	}
	job->n = count;
	return 0;
}

static void copyuid_code(const struct copy_job *job, uint32_t uidvalidity, struct buf *code)
{
	buf_printf(code, "COPYUID %u ", uidvalidity);
	imap_write_seqset(code, job->src, job->n);
	buf_putc(code, ' ');
	imap_write_seqset(code, job->dst, job->n);
}

/* MOVE's second half: expunge the sources, then the untagged COPYUID
 * and the EXPUNGE responses. */
static void finish_move(struct imapd_session *s, const struct copy_job *job, const char *code, int uid)
{
	struct terr err = { 0 };
	size_t count = 0;
	if (job->n && store_expunge(s->st, s->sel->name, job->src, job->n, &count, &err) < 0) {
		/* the copies stay: the client sees a COPY and can retry */
		imapd_no_err(s, "move_expunge", &err);
		return;
	}
	if (code)
		imapd_printf(s, "* OK [%s] Moved\r\n", code);
	if (imapd_view_poll(s) == 0)
		imapd_view_announce(s, 1, uid);
}

int imapd_cmd_copy(struct imapd_session *s, const struct imap_cmd *cmd)
{
	int move = cmd->id == IMAP_CMD_MOVE;
	struct imapd_view *v = s->sel;
	if (move && (v->readonly || (v->rights & (IMAPD_R_DELETE_MSG | IMAPD_R_EXPUNGE)) !=
						    (IMAPD_R_DELETE_MSG | IMAPD_R_EXPUNGE))) {
		imapd_no(s, v->readonly ? "READ-ONLY" : "NOPERM", "Cannot move messages out of this mailbox");
		return 0;
	}
	struct buf name = BUF_INIT, code = BUF_INIT;
	struct store_mailbox_info mi = { 0 };
	if (imapd_target_get(s, cmd->u.copy.mailbox, &name, &mi, NULL) < 0)
		goto out;
	/* the flags to copy are the store's current ones */
	if (imapd_view_poll(s) < 0)
		goto out;	/* the dispatcher's poll says BYE */
	if (!cmd->uid && !imapd_view_seq_valid(v, &cmd->u.copy.set)) {
		imapd_bad(s, NULL, "Invalid message sequence number");
		goto out;
	}
	size_t *idx;
	size_t n = imapd_view_resolve(v, &cmd->u.copy.set, cmd->uid, &idx);
	struct copy_job job = { name.ptr, xmalloc((n ? n : 1) * sizeof *job.src),
				xmalloc((n ? n : 1) * sizeof *job.dst), 0 };
	int atomic = 0;
	int crc = copy_same_owner(s, idx, n, &job, move, &atomic);
	if (crc == 0 || (!atomic && copy_all(s, idx, n, &job) == 0)) {
		if (job.n)
			copyuid_code(&job, mi.uidvalidity, &code);
		imapd_log_event(s, move ? "move" : "copy", v->name, "target=%s count=%zu", name.ptr, job.n);
		if (move && atomic) {
			/* copied and expunged in one transaction: announce it */
			if (job.n)
				imapd_printf(s, "* OK [%s] Moved\r\n", code.ptr);
			if (imapd_view_poll(s) == 0)
				imapd_view_announce(s, 1, cmd->uid);
			if (!s->res.resp)
				imapd_ok(s, NULL, "%sMOVE completed", cmd->uid ? "UID " : "");
		} else if (move) {
			finish_move(s, &job, job.n ? code.ptr : NULL, cmd->uid);
			if (!s->res.resp)
				imapd_ok(s, NULL, "%sMOVE completed", cmd->uid ? "UID " : "");
		} else if (job.n) {
			imapd_ok(s, code.ptr, "%sCOPY completed", cmd->uid ? "UID " : "");
		} else if (n && !cmd->uid) {
			imapd_no(s, "EXPUNGEISSUED", "Messages were expunged meanwhile");
		}
	}
	free(job.src);
	free(job.dst);
	free(idx);
out:
	store_mailbox_info_free(&mi);
	buf_free(&name);
	buf_free(&code);
	return 0;
}
