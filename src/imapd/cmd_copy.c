/* cmd_copy.c: COPY, MOVE (RFC 6851) and their UID forms, with UIDPLUS's
 * [COPYUID uidvalidity source-uids target-uids] (RFC 4315).
 *
 * Within one owner the copy (and MOVE's expunge) is one store transaction
 * (store_copy). To another owner's mailbox the messages are read and
 * appended in batches (store_append_multi) with their flags and internal
 * dates; the copy is all or nothing: when a batch fails, the copies
 * already made are expunged again. MOVE then
 * expunges the sources and answers, as RFC 6851 3.3 wants, with an
 * untagged OK [COPYUID ...] followed by the EXPUNGE responses.
 */
#include "imapd/imapd-private.h"

#include "lib/limits.h"
#include "lib/xalloc.h"
#include "proto/imap/imap_write.h"
#include "store/store.h"

#include <stdlib.h>

struct copy_job {
	const char *target;	/* internal name */
	uint32_t *src, *dst;	/* UIDs, parallel */
	size_t n;
};

/* Appends the read messages of one batch to the target in one store
 * transaction (store_append_multi) and records the UID pairs. */
static int copy_flush(struct imapd_session *s, struct store_append_msg *msgs, struct buf *data,
		      const uint32_t *src, size_t k, struct copy_job *job, struct terr *err)
{
	if (!k)
		return 0;
	for (size_t i = 0; i < k; i++)
		msgs[i].data = data[i].ptr ? data[i].ptr : "";
	uint32_t *uids = xmalloc(k * sizeof *uids);
	int rc = store_append_multi(s->st, job->target, msgs, k, uids, err);
	if (rc == 0)
		for (size_t i = 0; i < k; i++) {
			job->src[job->n] = src[i];
			job->dst[job->n++] = uids[i];
		}
	free(uids);
	return rc;
}

/* Copies the live messages of idx to another owner's mailbox, in batches
 * of up to IMAPD_COPY_BATCH messages or IMAPD_COPY_BATCH_BYTES (each one
 * transaction: a message-by-message copy cost an fsync chain per message);
 * on failure undoes what was copied and sets NO. */
static int copy_all(struct imapd_session *s, const size_t *idx, size_t n, struct copy_job *job)
{
	struct buf data[IMAPD_COPY_BATCH];
	struct store_append_msg msgs[IMAPD_COPY_BATCH];
	uint32_t src[IMAPD_COPY_BATCH];
	for (size_t i = 0; i < IMAPD_COPY_BATCH; i++)
		data[i] = (struct buf)BUF_INIT;
	struct terr err = { 0 };
	int rc = 0;
	size_t k = 0, bytes = 0;
	for (size_t i = 0; i < n && rc == 0; i++) {
		const struct imapd_msg *m = &s->sel->msgs[idx[i]];
		if (m->gone)
			continue;
		if (k && (k == IMAPD_COPY_BATCH || bytes + m->size > IMAPD_COPY_BATCH_BYTES)) {
			rc = copy_flush(s, msgs, data, src, k, job, &err);
			k = 0;
			bytes = 0;
			if (rc < 0)
				break;
		}
		buf_reset(&data[k]);
		if (store_message_read(s->st, s->sel->name, m->guid, &data[k], &err) < 0) {
			rc = -1;
			break;
		}
		msgs[k].len = data[k].len;
		msgs[k].opts = (struct store_append_opts){ m->sysflags, m->keywords, m->internaldate };
		src[k++] = m->uid;
		bytes += m->size;
	}
	if (rc == 0)
		rc = copy_flush(s, msgs, data, src, k, job, &err);
	if (rc < 0)
		imapd_no_err(s, "copy", &err);
	for (size_t i = 0; i < IMAPD_COPY_BATCH; i++)
		buf_free(&data[i]);
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
 * caller then copies in batches (copy_all). 0 done, -1 failed (NO set). */
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
