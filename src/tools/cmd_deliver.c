/* cmd_deliver.c: tandem deliver: a local delivery through the store's
 * delivery path (the one LMTP uses): the message is written once, made
 * durable, and appended to each recipient's mailbox in its own
 * transaction with its change-log lines. */
#include "tools/tools.h"

#include "conf/conf.h"
#include "lib/limits.h"
#include "lib/xalloc.h"
#include "store/store.h"

#include <openssl/crypto.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
	"usage: tandem deliver [--flags FLAGS] [--date EPOCH] USER[+folder]... < message\n"
	"\nDelivers the message on standard input to each recipient: USER's INBOX, or\n"
	"its folder with USER+folder (e.g. alice+Lists.cyrus, with the hierarchy separator). Bare LF line ends are\n"
	"stored as CRLF, as LMTP stores them. FLAGS: e.g. '\\Seen $Label1'.\n"
	"Prints one line per recipient; exit 0 when every recipient got the message.\n";

/* Bare LF -> CRLF (stored messages use CRLF, as Cyrus's do): the runs
 * between line ends are copied whole. */
static void crlf_normalize(const struct buf *in, struct buf *out)
{
	buf_reserve(out, in->len + in->len / 32 + 2);
	size_t i = 0;
	while (i < in->len) {
		const char *nl = memchr(in->ptr + i, '\n', in->len - i);
		size_t end = nl ? (size_t)(nl - in->ptr) : in->len;
		buf_append(out, in->ptr + i, end - i);
		if (!nl)
			break;
		if (end == 0 || in->ptr[end - 1] != '\r')
			buf_putc(out, '\r');
		buf_putc(out, '\n');
		i = end + 1;
	}
}

int cmd_deliver(struct tool *t, int argc, char **argv)
{
	if (tool_help(argc, argv, usage))
		return EXIT_OK;
	/* The message's SHA-1 is the only use of OpenSSL here: without these
	 * flags its first use reads openssl.cnf and registers every cipher
	 * and digest name (~1.4 ms of a ~10 ms process, perf). */
	OPENSSL_init_crypto(OPENSSL_INIT_NO_LOAD_CONFIG | OPENSSL_INIT_NO_ADD_ALL_CIPHERS |
			    OPENSSL_INIT_NO_ADD_ALL_DIGESTS, NULL);
	struct store_append_opts ao = { 0 };
	struct buf kw = BUF_INIT, raw = BUF_INIT, msg = BUF_INIT;
	struct terr err = { 0 };
	int i = 1, rc = EXIT_OK;
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (!strcmp(argv[i], "--flags") && i + 1 < argc) {
			if (store_flags_parse(argv[++i], &ao.sysflags, &kw, &err) < 0) {
				rc = tool_fail(&err);
				goto out;
			}
			ao.keywords = kw.ptr;
		} else if (!strcmp(argv[i], "--date") && i + 1 < argc) {
			char *end;
			ao.internaldate = strtoll(argv[++i], &end, 10);
			if (*end || ao.internaldate <= 0) {
				rc = tool_usage(usage);
				goto out;
			}
		} else {
			rc = tool_usage(usage);
			goto out;
		}
	}
	if (i >= argc) {
		rc = tool_usage(usage);
		goto out;
	}
	size_t n = (size_t)(argc - i);
	char **names = xcalloc(n, sizeof *names);
	struct buf mb = BUF_INIT;
	for (size_t k = 0; k < n && rc == EXIT_OK; k++) {
		char *user = xstrdup(argv[i + (int)k]);
		char *plus = strchr(user, '+');
		const char *folder = "";
		if (plus) {
			*plus = '\0';
			folder = plus + 1;
		}
		buf_reset(&mb);
		if (mboxname_user_folder(&t->ns, user, folder, &mb, &err) < 0) {
			fprintf(stderr, "tandem: recipient '%s': %s\n", argv[i + (int)k], err.msg);
			rc = EXIT_USAGE;
		} else {
			names[k] = xstrdup(mb.ptr);
		}
		free(user);
	}
	buf_free(&mb);
	long long max = conf_int(t->conf, "maxmessagesize");
	if (max <= 0)
		max = MAX_MESSAGE_SIZE;
	if (rc == EXIT_OK && tool_read_stdin((size_t)max, &raw, &err) < 0)
		rc = tool_fail(&err);
	if (rc == EXIT_OK) {
		crlf_normalize(&raw, &msg);
		uint32_t *uids = xcalloc(n, sizeof *uids);
		struct terr *errs = xcalloc(n, sizeof *errs);
		store_deliver(t->st, (const char *const *)names, n, msg.ptr, msg.len, &ao, uids, errs, &err);
		for (size_t k = 0; k < n; k++) {
			if (uids[k]) {
				printf("%s: delivered mailbox=%s uid=%u\n", argv[i + (int)k], names[k], uids[k]);
			} else {
				printf("%s: failed (%s) %s\n", argv[i + (int)k], terr_code_name(errs[k].code),
				       errs[k].msg);
				rc = EXIT_FAIL;
			}
		}
		free(uids);
		free(errs);
	}
	for (size_t k = 0; k < n; k++)
		free(names[k]);
	free(names);
out:
	buf_free(&kw);
	buf_free(&raw);
	buf_free(&msg);
	return rc;
}
