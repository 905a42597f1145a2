/* commands.c: the command table and the dispatcher.
 *
 * One row per command: the parser's id, the handler (cmd_*.c) and flags
 * saying in which state it is valid and whether the untagged updates of
 * the selected mailbox may follow it. Handlers set the tagged result with
 * imapd_ok/no/bad (OK by default); the dispatcher then sends the updates
 * (EXPUNGE, EXISTS, FETCH FLAGS) and the tagged line, in that order.
 */
#include "imapd/imapd-private.h"

#include "lib/log.h"
#include "proto/imap/imap_write.h"

#include <string.h>

enum {
	NEEDS_AUTH = 1 << 0,	/* only once logged in */
	NEEDS_SELECTED = 1 << 1,	/* only with a mailbox selected */
	PREAUTH_ONLY = 1 << 2,	/* only before login */
	NO_EXPUNGE = 1 << 3,	/* FETCH, STORE, SEARCH: no EXPUNGE after the non-UID form (RFC 3501 7.4.1) */
	NO_UPDATES = 1 << 4,	/* no untagged updates after it */
	WRITES = 1 << 5,	/* changes mail or state: refused on a replica */
};

struct imapd_command {
	enum imap_cmd_id id;
	imapd_cmd_fn *fn;
	unsigned flags;
};

static const struct imapd_command commands[] = {
	{ IMAP_CMD_CAPABILITY, imapd_cmd_capability, 0 },
	{ IMAP_CMD_NOOP, imapd_cmd_noop, 0 },
	{ IMAP_CMD_LOGOUT, imapd_cmd_logout, NO_UPDATES },
	{ IMAP_CMD_STARTTLS, imapd_cmd_starttls, PREAUTH_ONLY | NO_UPDATES },
	{ IMAP_CMD_AUTHENTICATE, imapd_cmd_authenticate, PREAUTH_ONLY | NO_UPDATES },
	{ IMAP_CMD_LOGIN, imapd_cmd_login, PREAUTH_ONLY | NO_UPDATES },
	{ IMAP_CMD_ID, imapd_cmd_id, 0 },
	{ IMAP_CMD_ENABLE, imapd_cmd_enable, NEEDS_AUTH },
	{ IMAP_CMD_SELECT, imapd_cmd_select, NEEDS_AUTH | NO_UPDATES },
	{ IMAP_CMD_EXAMINE, imapd_cmd_select, NEEDS_AUTH | NO_UPDATES },
	{ IMAP_CMD_CREATE, imapd_cmd_create, NEEDS_AUTH | WRITES },
	{ IMAP_CMD_DELETE, imapd_cmd_delete, NEEDS_AUTH | WRITES },
	{ IMAP_CMD_RENAME, imapd_cmd_rename, NEEDS_AUTH | WRITES },
	{ IMAP_CMD_SUBSCRIBE, imapd_cmd_subscribe, NEEDS_AUTH | WRITES },
	{ IMAP_CMD_UNSUBSCRIBE, imapd_cmd_subscribe, NEEDS_AUTH | WRITES },
	{ IMAP_CMD_LIST, imapd_cmd_list, NEEDS_AUTH },
	{ IMAP_CMD_LSUB, imapd_cmd_lsub, NEEDS_AUTH },
	{ IMAP_CMD_NAMESPACE, imapd_cmd_namespace, NEEDS_AUTH },
	{ IMAP_CMD_STATUS, imapd_cmd_status, NEEDS_AUTH },
	{ IMAP_CMD_APPEND, imapd_cmd_append, NEEDS_AUTH | WRITES },
	{ IMAP_CMD_IDLE, imapd_cmd_idle, NEEDS_AUTH },
	{ IMAP_CMD_CHECK, imapd_cmd_check, NEEDS_AUTH | NEEDS_SELECTED },
	{ IMAP_CMD_CLOSE, imapd_cmd_close, NEEDS_AUTH | NEEDS_SELECTED | NO_UPDATES },
	{ IMAP_CMD_UNSELECT, imapd_cmd_unselect, NEEDS_AUTH | NEEDS_SELECTED | NO_UPDATES },
	{ IMAP_CMD_UNAUTHENTICATE, imapd_cmd_unauthenticate, NEEDS_AUTH | NO_UPDATES },
	{ IMAP_CMD_EXPUNGE, imapd_cmd_expunge, NEEDS_AUTH | NEEDS_SELECTED | WRITES },
	{ IMAP_CMD_SEARCH, imapd_cmd_search, NEEDS_AUTH | NEEDS_SELECTED | NO_EXPUNGE },
	{ IMAP_CMD_SORT, imapd_cmd_sort, NEEDS_AUTH | NEEDS_SELECTED | NO_EXPUNGE },
	{ IMAP_CMD_THREAD, imapd_cmd_thread, NEEDS_AUTH | NEEDS_SELECTED | NO_EXPUNGE },
	{ IMAP_CMD_FETCH, imapd_cmd_fetch, NEEDS_AUTH | NEEDS_SELECTED | NO_EXPUNGE },
	{ IMAP_CMD_STORE, imapd_cmd_store, NEEDS_AUTH | NEEDS_SELECTED | NO_EXPUNGE | WRITES },
	{ IMAP_CMD_COPY, imapd_cmd_copy, NEEDS_AUTH | NEEDS_SELECTED | WRITES },
	{ IMAP_CMD_MOVE, imapd_cmd_copy, NEEDS_AUTH | NEEDS_SELECTED | WRITES },
	{ IMAP_CMD_GETQUOTA, imapd_cmd_getquota, NEEDS_AUTH },
	{ IMAP_CMD_GETQUOTAROOT, imapd_cmd_getquotaroot, NEEDS_AUTH },
	{ IMAP_CMD_SETQUOTA, imapd_cmd_setquota, NEEDS_AUTH | WRITES },
	{ IMAP_CMD_GETACL, imapd_cmd_getacl, NEEDS_AUTH },
	{ IMAP_CMD_SETACL, imapd_cmd_setacl, NEEDS_AUTH | WRITES },
	{ IMAP_CMD_DELETEACL, imapd_cmd_setacl, NEEDS_AUTH | WRITES },
	{ IMAP_CMD_LISTRIGHTS, imapd_cmd_listrights, NEEDS_AUTH },
	{ IMAP_CMD_MYRIGHTS, imapd_cmd_myrights, NEEDS_AUTH },
	{ IMAP_CMD_GETMETADATA, imapd_cmd_getmetadata, NEEDS_AUTH },
	{ IMAP_CMD_SETMETADATA, imapd_cmd_setmetadata, NEEDS_AUTH | WRITES },
	{ IMAP_CMD_COMPRESS, imapd_cmd_compress, NEEDS_AUTH | NO_UPDATES },
	{ IMAP_CMD_SYNCGET, imapd_cmd_sync, NEEDS_AUTH | NO_UPDATES },
	{ IMAP_CMD_SYNCAPPLY, imapd_cmd_sync, NEEDS_AUTH | NO_UPDATES },
	{ IMAP_CMD_SYNCRESTORE, imapd_cmd_sync, NEEDS_AUTH | NO_UPDATES },
	{ IMAP_CMD_SYNCRESTART, imapd_cmd_sync, NEEDS_AUTH | NO_UPDATES },
};

static const struct imapd_command *find(enum imap_cmd_id id)
{
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
		if (commands[i].id == id)
			return &commands[i];
	return NULL;
}

int imapd_dispatch(struct imapd_session *s, const struct imap_cmd *cmd)
{
	const struct imapd_command *row = find(cmd->id);
	/* IDLE and AUTHENTICATE read on, which ends the life of cmd: keep
	 * what the tagged reply needs */
	struct buf tag = BUF_INIT;
	buf_appends(&tag, cmd->tag);
	const char *name = imap_cmd_name(cmd->id);
	int uid = cmd->uid;
	int rc = 0;
	s->ncommands++;
	s->res.resp = NULL;
	if (!row)
		imapd_bad(s, NULL, "Unknown command");
	else if ((row->flags & NEEDS_AUTH) && !s->user)
		imapd_bad(s, NULL, "Log in first");
	else if ((row->flags & PREAUTH_ONLY) && s->user)
		imapd_bad(s, NULL, "Already logged in");
	else if ((row->flags & NEEDS_SELECTED) && !s->sel)
		imapd_bad(s, NULL, "No mailbox selected");
	else if ((row->flags & WRITES) && server_role_refuses_writes(s->env->conf))
		imapd_no(s, "UNAVAILABLE", "This server is a replica: changes are made on the master");
	else
		rc = row->fn(s, cmd);
	cmd = NULL;
	if (rc < 0 || s->dead) {
		buf_free(&tag);
		return -1;
	}
	if (rc == 2) {
		s->bad = 0;
		buf_free(&tag);
		return 0;	/* the handler sent its tagged reply itself */
	}
	if (!s->res.resp)
		imapd_ok(s, NULL, "%s%s completed", uid ? "UID " : "", name);
	if (s->sel && s->user && row && !(row->flags & NO_UPDATES)) {
		if (imapd_view_poll(s) < 0) {
			imapd_printf(s, "* BYE The selected mailbox was deleted or renamed\r\n");
			imapd_log_event(s, "mailbox_gone", s->sel->name, "%s", "");
			buf_free(&tag);
			return -1;
		}
		int allow_expunge = !((row->flags & NO_EXPUNGE) && !uid);
		imapd_view_announce(s, allow_expunge, uid);
	}
	imap_write_tagged(&s->out, tag.ptr, s->res.resp, s->res.code.len ? s->res.code.ptr : NULL, "%s",
			  buf_cstr(&s->res.text));
	if (!strcmp(s->res.resp, "BAD"))
		s->bad++;
	else
		s->bad = 0;
	buf_free(&tag);
	return rc;
}

void imapd_capabilities(const struct imapd_session *s, struct buf *out)
{
	int tls = conn_is_tls(s->c);
	buf_appends(out, "IMAP4rev1 LITERAL+ SASL-IR ID ENABLE");
	if (!s->user) {
		if (s->env->tls && !tls)
			buf_appends(out, " STARTTLS");
		if (tls || s->allowplaintext)
			buf_appends(out, " AUTH=PLAIN AUTH=LOGIN");
		else
			buf_appends(out, " LOGINDISABLED");
	}
	/* the whole set before login too, as Cyrus answers CAPABILITY: admin
	 * tools (cyradm) decide what to use before they log in */
	buf_appends(out, " IDLE UIDPLUS MOVE NAMESPACE UNSELECT CHILDREN LIST-EXTENDED LIST-STATUS SPECIAL-USE"
			 " CREATE-SPECIAL-USE CONDSTORE ESEARCH QUOTA QUOTA=RES-STORAGE QUOTA=RES-MESSAGE ACL"
			 " RIGHTS=kxten METADATA SORT SORT=DISPLAY ESORT THREAD=ORDEREDSUBJECT THREAD=REFERENCES WITHIN"
			 " STATUS=SIZE LIST-MYRIGHTS MULTIAPPEND CATENATE OBJECTID SAVEDATE PREVIEW BINARY QRESYNC"
			 " UNAUTHENTICATE");
	buf_printf(out, " APPENDLIMIT=%lld", s->maxmsg);
	if (s->user && s->isadmin)
		buf_appends(out, " X-REPLICATION X-SIEVE-MAILBOX");
	if (!conn_is_compressed(s->c))
		buf_appends(out, " COMPRESS=DEFLATE");
}
