/* load.c: a message's bytes and MIME tree for FETCH and SEARCH.
 *
 * The bytes are read from the message file as stored (CRLF, exactly as
 * delivered); the last message loaded is kept, so several FETCH items of
 * one message read it once. What needs only the top-level header (SEARCH
 * on header fields and Date:, SORT, THREAD) takes the header block from
 * the message cache instead, without opening the file.
 */
#include "imapd/imapd-private.h"

#include "lib/fsutil.h"
#include "lib/limits.h"
#include "lib/log.h"
#include "lib/xalloc.h"
#include "proto/mime/mime.h"
#include "store/store.h"

#include <string.h>

int imapd_load(struct imapd_session *s, const char *mailbox, const struct imapd_msg *m, int parse)
{
	struct imapd_loaded *l = &s->cur;
	if (!(l->ok && !l->header_only && l->uid == m->uid && l->mailbox && !strcmp(l->mailbox, mailbox))) {
		imapd_loaded_clear(l);
		struct buf path = BUF_INIT;
		struct terr err = { 0 };
		if (store_message_path(s->st, mailbox, m->guid, &path, &err) < 0 ||
		    fs_read_file(path.ptr, MAX_MESSAGE_SIZE, &l->data, &err) < 0) {
			char q[LOGQ_MAX];
			log_err("event=message_read_fail session=%s mailbox=%s uid=%u guid=%s error=%s", s->env->session_id,
				logq(q, mailbox), m->uid, m->guid, err.msg);
			buf_free(&path);
			buf_free(&l->data);
			return -1;
		}
		buf_free(&path);
		l->mailbox = xstrdup(mailbox);
		l->uid = m->uid;
		l->ok = 1;
	}
	if (parse && !l->mime)
		l->mime = mime_parse(l->data.ptr ? l->data.ptr : "", l->data.len);
	return 0;
}

const struct mime_message *imapd_load_header(struct imapd_session *s, const char *mailbox,
					     const struct imapd_msg *m)
{
	struct imapd_loaded *l = &s->cur;
	if (!(l->ok && l->uid == m->uid && l->mailbox && !strcmp(l->mailbox, mailbox))) {
		imapd_loaded_clear(l);
		struct terr err = { 0 };
		int r = store_cache_headers(s->st, mailbox, m->guid, &l->data, &err);
		if (r < 0) {
			char q[LOGQ_MAX];
			log_warn("event=cache_read_fail session=%s mailbox=%s uid=%u error=\"%s\"", s->env->session_id,
				 logq(q, mailbox), m->uid, err.msg);
		}
		if (r != 1) {
			/* not cached (or unreadable): the file, as before */
			buf_free(&l->data);
			return imapd_load(s, mailbox, m, 1) == 0 ? l->mime : NULL;
		}
		l->mailbox = xstrdup(mailbox);
		l->uid = m->uid;
		l->ok = 1;
		l->header_only = 1;
	}
	if (!l->mime)
		l->mime = mime_parse(l->data.ptr ? l->data.ptr : "", l->data.len);
	return l->mime;
}
