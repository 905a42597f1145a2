/* cmd_compress.c: COMPRESS DEFLATE (RFC 4978). */
#include "imapd/imapd-private.h"

#include "lib/log.h"
#include "proto/imap/imap_write.h"

#include <string.h>

int imapd_cmd_compress(struct imapd_session *s, const struct imap_cmd *cmd)
{
	struct terr err = { 0 };
	if (strcmp(cmd->u.compress.mech, "DEFLATE") != 0) {
		imapd_bad(s, NULL, "Unknown compression mechanism");
		return 0;
	}
	if (conn_is_compressed(s->c)) {
		imapd_no(s, "COMPRESSIONACTIVE", "Compression is already on");
		return 0;
	}
	if (imapd_unparsed(s) > 0) {
		/* RFC 4978: the client waits for our OK; bytes already here
		 * were sent uncompressed by a broken client */
		imapd_printf(s, "* BYE Commands pipelined after COMPRESS\r\n");
		return -1;
	}
	/* the OK goes out uncompressed, then both directions deflate */
	imap_write_tagged(&s->out, cmd->tag, "OK", NULL, "DEFLATE active");
	if (imapd_flush(s) < 0)
		return -1;
	if (conn_compress(s->c, &err) < 0) {
		log_warn("event=compress_fail session=%s error=\"%s\"", s->env->session_id, err.msg);
		return -1;
	}
	log_info("event=compress session=%s", s->env->session_id);
	/* the tagged reply was sent above: tell the dispatcher not to */
	return 2;
}
