/* cmd_init.c: tandem init: a new instance in a directory: its config,
 * configdirectory, partition and a self-signed TLS certificate. */
#include "tools/tools.h"

#include "lib/fsutil.h"
#include "tls/tls.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char usage[] =
	"usage: tandem init [--servername NAME] [--channels \"CH1 CH2\"]\n"
	"                   [--imap ADDR] [--lmtp ADDR] [--no-listen] DIR\n"
	"\nCreates a new instance in DIR (which must not exist or be empty):\n"
	"  DIR/tandem.conf   its configuration (every option: etc/tandem.conf)\n"
	"  DIR/conf          configdirectory (users, change logs, state)\n"
	"  DIR/spool         partition-default (mailboxes and messages)\n"
	"  DIR/tls           a self-signed certificate and its key\n"
	"tandemd serves it as it is: IMAP (with STARTTLS) on --imap (default *:143;\n"
	"a port below 1024 needs root or CAP_NET_BIND_SERVICE, as the systemd unit\n"
	"grants) and LMTP on --lmtp (default the unix socket DIR/conf/socket/lmtp).\n"
	"--no-listen leaves the listeners out (to add them yourself).\n"
	"--channels turns on the change log (sync_log) for those replication channels.\n"
	"Then: tandem -C DIR/tandem.conf user add alice; tandemd -C DIR/tandem.conf -n\n";

static int dir_empty_or_missing(const char *dir, struct terr *err)
{
	struct stat st;
	if (stat(dir, &st) < 0)
		return errno == ENOENT ? 0 : terr_errno(err, errno, "stat %s", dir);
	if (!S_ISDIR(st.st_mode))
		return terr_set(err, TE_EXISTS, "%s exists and is not a directory", dir);
	struct buf p = BUF_INIT;
	buf_printf(&p, "%s/tandem.conf", dir);
	int exists = access(p.ptr, F_OK) == 0;
	buf_free(&p);
	if (exists)
		return terr_set(err, TE_EXISTS, "%s already holds an instance (tandem.conf)", dir);
	return 0;
}

int cmd_init(struct tool *t, int argc, char **argv)
{
	(void)t;
	if (tool_help(argc, argv, usage))
		return EXIT_OK;
	const char *servername = NULL, *channels = NULL, *dir = NULL, *imap = "*:143", *lmtp = NULL;
	int listen = 1;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--servername") && i + 1 < argc)
			servername = argv[++i];
		else if (!strcmp(argv[i], "--imap") && i + 1 < argc)
			imap = argv[++i];
		else if (!strcmp(argv[i], "--lmtp") && i + 1 < argc)
			lmtp = argv[++i];
		else if (!strcmp(argv[i], "--no-listen"))
			listen = 0;
		else if (!strcmp(argv[i], "--channels") && i + 1 < argc)
			channels = argv[++i];
		else if (argv[i][0] != '-' && !dir)
			dir = argv[i];
		else
			return tool_usage(usage);
	}
	if (!dir)
		return tool_usage(usage);
	struct terr err = { 0 };
	struct buf path = BUF_INIT, conf = BUF_INIT, cert = BUF_INIT, key = BUF_INIT;
	int rc = EXIT_FAIL;
	char host[256] = "localhost", abs[PATH_MAX];
	if (!servername) {
		if (gethostname(host, sizeof host) < 0 || !host[0])
			snprintf(host, sizeof host, "localhost");
		host[sizeof host - 1] = '\0';
		servername = host;
	}
	if (dir_empty_or_missing(dir, &err) < 0 || fs_mkdir_p(dir, 0750, &err) < 0)
		goto fail;
	if (!realpath(dir, abs)) {
		terr_errno(&err, errno, "realpath %s", dir);
		goto fail;
	}
	const char *subs[] = { "conf", "spool", "tls", "conf/socket" };
	for (size_t i = 0; i < 4; i++) {
		buf_reset(&path);
		buf_printf(&path, "%s/%s", abs, subs[i]);
		if (fs_mkdir_p(path.ptr, i == 2 ? 0700 : 0750, &err) < 0)
			goto fail;
	}
	if (tls_make_selfsigned(servername, &cert, &key, &err) < 0)
		goto fail;
	buf_reset(&path);
	buf_printf(&path, "%s/tls/key.pem", abs);
	if (fs_write_atomic(path.ptr, key.ptr, key.len, 0600, &err) < 0)
		goto fail;
	buf_reset(&path);
	buf_printf(&path, "%s/tls/cert.pem", abs);
	if (fs_write_atomic(path.ptr, cert.ptr, cert.len, 0644, &err) < 0)
		goto fail;
	time_t now = time(NULL);
	char when[64];
	strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", gmtime(&now));
	buf_printf(&conf,
		   "# tandem instance, made by 'tandem init' on %s.\n"
		   "# Every option, with its meaning and default: etc/tandem.conf in the source.\n"
		   "configdirectory: %s/conf\n"
		   "partition-default: %s/spool\n"
		   "servername: %s\n"
		   "admins: admin\n"
		   "tls_server_cert: %s/tls/cert.pem\n"
		   "tls_server_key: %s/tls/key.pem\n",
		   when, abs, abs, servername, abs, abs);
	if (listen) {
		buf_printf(&conf, "imap_listen: %s\n", imap);
		if (lmtp)
			buf_printf(&conf, "lmtp_listen: %s\n", lmtp);
		else
			buf_printf(&conf, "lmtp_listen: %s/conf/socket/lmtp\n", abs);
	}
	if (channels && *channels)
		buf_printf(&conf, "sync_log: yes\nsync_log_channels: %s\n", channels);
	buf_reset(&path);
	buf_printf(&path, "%s/tandem.conf", abs);
	if (fs_write_atomic(path.ptr, conf.ptr, conf.len, 0640, &err) < 0)
		goto fail;
	printf("instance created in %s; its configuration: %s\n", abs, path.ptr);
	rc = EXIT_OK;
	goto out;
fail:
	rc = tool_fail(&err);
out:
	buf_free(&path);
	buf_free(&conf);
	buf_free(&cert);
	if (key.ptr)
		memset(key.ptr, 0, key.cap);
	buf_free(&key);
	return rc;
}
