/* deliver_direct.c: tandem deliver's direct path (deliver.h): this
 * process opens the store and delivers through the store's delivery path
 * (the one LMTP uses): the message is written once, made durable, and
 * appended to each recipient's mailbox in its own transaction with its
 * change-log lines. */
#include "tools/deliver.h"

#include "conf/conf.h"
#include "lib/log.h"
#include "lib/xalloc.h"
#include "server/server.h"
#include "store/store.h"

#include <openssl/crypto.h>

#include <stdio.h>
#include <stdlib.h>
#include <sysexits.h>
#include <string.h>
#include <strings.h>

/* The mailbox of one recipient: USER+folder's folder as named (it must
 * exist), -m's folder when Cyrus's rule lets the sender post there, else
 * the INBOX. */
static int direct_mailbox(struct tool *t, struct drcpt *r, const char *sender, struct buf *mb, struct terr *err)
{
	buf_reset(mb);
	if (mboxname_user_folder(&t->ns, r->user, r->folder, mb, err) < 0)
		return -1;
	if (!r->by_acl)
		return 0;
	struct store_mailbox_info mi = { 0 };
	struct terr e2 = { 0 };
	int post = store_mailbox_get(t->st, mb->ptr, &mi, &e2) == 0 && (!mi.mboxtype || !*mi.mboxtype) &&
		   store_acl_grants_post(mi.acl, sender);
	store_mailbox_info_free(&mi);
	if (post)
		return 0;
	log_info("event=rcpt_folder_refused rcpt=%s mailbox=%s reason=acl_no_post action=inbox", r->arg, mb->ptr);
	buf_reset(mb);
	return mboxname_user_folder(&t->ns, r->user, "", mb, err);
}

static int open_store(struct tool *t, struct terr *err)
{
	if (server_open_store(t->conf, &t->st, &t->chlog, &t->ns, err) < 0)
		return -1;
	/* The message's SHA-1 is the only use of OpenSSL here: without these
	 * flags its first use reads openssl.cnf and registers every cipher
	 * and digest name (~1.4 ms of a ~10 ms process, perf). */
	OPENSSL_init_crypto(OPENSSL_INIT_NO_LOAD_CONFIG | OPENSSL_INIT_NO_ADD_ALL_CIPHERS |
			    OPENSSL_INIT_NO_ADD_ALL_DIGESTS, NULL);
	return 0;
}

int deliver_direct(struct tool *t, int argc, char **argv, struct drcpt *rs, size_t n, const char *sender,
		   const char *flags, int64_t date, const struct buf *raw, const struct buf *msg)
{
	struct terr err = { 0 };
	struct store_append_opts aopts = { 0 }, *ao = &aopts;
	struct buf kw = BUF_INIT;
	ao->internaldate = date;
	if (flags && store_flags_parse(flags, &ao->sysflags, &kw, &err) < 0)
		return tool_fail(&err);
	ao->keywords = kw.ptr;
	if (open_store(t, &err) < 0) {
		buf_free(&kw);
		tool_fail(&err);
		return EX_TEMPFAIL;	/* the store not available: the MTA retries */
	}
	struct buf mb = BUF_INIT;
	int rc = 0;
	for (size_t k = 0; k < n && !rc; k++) {
		if (direct_mailbox(t, &rs[k], sender, &mb, &err) < 0) {
			fprintf(stderr, "tandem: recipient '%s': %s\n", rs[k].arg, err.msg);
			rc = EXIT_USAGE;
		} else {
			rs[k].mailbox = xstrdup(mb.ptr);
		}
	}
	buf_free(&mb);
	if (rc) {
		buf_free(&kw);
		return rc;
	}
	const char **names = xcalloc(n, sizeof *names);
	uint32_t *uids = xcalloc(n, sizeof *uids);
	struct terr *errs = xcalloc(n, sizeof *errs);
	for (size_t k = 0; k < n; k++)
		names[k] = rs[k].mailbox;
	struct buf withrp = BUF_INIT;
	const struct buf *data = msg;
	if (sender) {
		/* -r/-f: the Return-Path line LMTP's DATA puts first */
		buf_printf(&withrp, "Return-Path: <%s>\r\n", sender);
		buf_append(&withrp, msg->ptr, msg->len);
		data = &withrp;
	}
	store_deliver(t->st, names, n, data->ptr, data->len, ao, uids, errs, &err);
	for (size_t k = 0; k < n; k++) {
		rs[k].uid = uids[k];
		rs[k].err = errs[k];
	}
	buf_free(&withrp);
	buf_free(&kw);
	free(names);
	free(uids);
	free(errs);
	return 0;
}
