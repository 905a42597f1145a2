/* cmd_any.c: CAPABILITY, NOOP, CHECK, LOGOUT, ID (RFC 2971), ENABLE
 * (RFC 5161) and the SYNC* commands (replication over IMAP, for admins:
 * the engine is the sync server's, src/syncs). */
#include "imapd/imapd-private.h"

#include "lib/log.h"
#include "proto/imap/imap_write.h"
#include "syncs/syncs.h"

#include <string.h>
#include <strings.h>

int imapd_cmd_capability(struct imapd_session *s, const struct imap_cmd *cmd)
{
	(void)cmd;
	struct buf caps = BUF_INIT;
	imapd_capabilities(s, &caps);
	imapd_printf(s, "* CAPABILITY %s\r\n", caps.ptr);
	buf_free(&caps);
	return 0;
}

/* NOOP and CHECK do nothing themselves: the dispatcher sends the updates. */
int imapd_cmd_noop(struct imapd_session *s, const struct imap_cmd *cmd)
{
	(void)s;
	(void)cmd;
	return 0;
}

int imapd_cmd_check(struct imapd_session *s, const struct imap_cmd *cmd)
{
	(void)s;
	(void)cmd;
	return 0;
}

int imapd_cmd_logout(struct imapd_session *s, const struct imap_cmd *cmd)
{
	(void)cmd;
	imapd_printf(s, "* BYE %s logging out\r\n", s->servername);
	if (s->user)
		imapd_log_event(s, "logout", s->sel ? s->sel->name : NULL, "commands=%lu", s->ncommands);
	return 1;
}

int imapd_cmd_id(struct imapd_session *s, const struct imap_cmd *cmd)
{
	struct buf b = BUF_INIT, q = BUF_INIT;
	/* log what the client says it is (name, version), one line */
	for (size_t i = 0; i + 1 < cmd->u.id.params.count; i += 2) {
		const char *k = cmd->u.id.params.v[i], *v = cmd->u.id.params.v[i + 1];
		if (!v || (strcasecmp(k, "name") && strcasecmp(k, "version")))
			continue;
		char lq[LOGQ_MAX];
		buf_printf(&q, " client_%s=%s", !strcasecmp(k, "name") ? "name" : "version", logq(lq, v));
	}
	if (q.len)
		log_info("event=id session=%s%s", s->env->session_id, q.ptr);
	buf_appends(&b, "* ID (\"name\" \"tandem\" \"vendor\" \"tandem\" \"support-url\" NIL)\r\n");
	buf_append(&s->out, b.ptr, b.len);
	buf_free(&b);
	buf_free(&q);
	return 0;
}

void imapd_condstore_enable(struct imapd_session *s)
{
	if (s->condstore)
		return;
	s->condstore = 1;
	if (s->sel)	/* RFC 7162 3.1: the client learns where it starts */
		imapd_printf(s, "* OK [HIGHESTMODSEQ %llu] Highest\r\n", (unsigned long long)s->sel->highestmodseq);
}

int imapd_cmd_enable(struct imapd_session *s, const struct imap_cmd *cmd)
{
	struct buf on = BUF_INIT;
	for (size_t i = 0; i < cmd->u.enable.count; i++) {
		const char *c = cmd->u.enable.v[i];
		if (!strcasecmp(c, "CONDSTORE") && !s->condstore) {
			imapd_condstore_enable(s);
			buf_appends(&on, " CONDSTORE");
		} else if (!strcasecmp(c, "QRESYNC") && !s->qresync) {
			/* RFC 7162 3.2.3: QRESYNC implies CONDSTORE */
			imapd_condstore_enable(s);
			s->qresync = 1;
			buf_appends(&on, " QRESYNC");
		}
	}
	imapd_printf(s, "* ENABLED%s\r\n", buf_cstr(&on));
	buf_free(&on);
	return 0;
}

/* SYNCGET, SYNCAPPLY, SYNCRESTORE, SYNCRESTART: the replication protocol
 * carried over IMAP (reference §2.10), for admins. The engine writes the
 * data lines itself; the completion becomes the tagged reply. */
int imapd_cmd_sync(struct imapd_session *s, const struct imap_cmd *cmd)
{
	if (!s->isadmin) {
		imapd_bad(s, NULL, "Unrecognized command");
		return 0;
	}
	if (s->data_overflow) {
		if (s->sync)
			syncs_imap_files_drop(s->sync);
		imapd_no(s, NULL, "IMAP_PROTOCOL_ERROR Command too long");
		return 0;
	}
	struct terr err = { 0 };
	if (!s->sync && !(s->sync = syncs_imap_new(s->env, s->c, s->user, &err))) {
		imapd_no_err(s, "sync_open", &err);
		return 0;
	}
	const char *verb = cmd->id == IMAP_CMD_SYNCGET ? "GET" : cmd->id == IMAP_CMD_SYNCAPPLY ? "APPLY" :
			   cmd->id == IMAP_CMD_SYNCRESTORE ? "RESTORE" : "RESTART";
	const char *raw = cmd->u.sync.raw ? cmd->u.sync.raw : s->appendmsg.ptr ? s->appendmsg.ptr : "";
	size_t len = cmd->u.sync.raw ? (size_t)cmd->u.sync.len : s->appendmsg.len;
	if (imapd_flush(s) < 0)
		return -1;
	/* streamed (imapd's parser): file literals went to staging files
	 * while the command was read and raw holds their headers only */
	const char *res = cmd->u.sync.raw ? syncs_imap_command(s->sync, verb, raw, len)
					  : syncs_imap_command_streamed(s->sync, verb, raw, len);
	size_t rl = strcspn(res, " ");
	const char *text = res[rl] ? res + rl + 1 : "";
	if (!strncmp(res, "OK", rl))
		imapd_ok(s, NULL, "%s", text);
	else if (!strncmp(res, "NO", rl))
		imapd_no(s, NULL, "%s", text);
	else
		imapd_bad(s, NULL, "%s", text);
	return 0;
}
