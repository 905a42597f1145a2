/* deliver_lean.c: bin/tandem-deliver, `tandem deliver` for an MTA that
 * runs one process per message.
 *
 * The same command (cmd_deliver.c: options, output, exit status), linked
 * with libc only: loading bin/tandem's OpenSSL, SQLite and zlib costs
 * more CPU than the whole LMTP exchange with tandemd (docs/benchmarks.md,
 * "tandem deliver through tandemd's LMTP"). When the message must be
 * stored directly (no tandemd answers, --direct, --flags, --date,
 * USER+folder) this program runs `tandem deliver --direct` from its own
 * directory with the same arguments and the message on standard input.
 *
 *   tandem-deliver [-C CONFIG] [-v] [deliver's options] USER...
 */
#include "tools/deliver.h"

#include "conf/conf.h"
#include "lib/log.h"
#include "lib/xalloc.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sysexits.h>
#include <unistd.h>

static int verbose;

/* The direct path of this program: bin/tandem beside it, `deliver
 * --direct` with this run's arguments, the message (as read) on its
 * standard input. Returns only when that cannot be started. */
int deliver_direct(struct tool *t, int argc, char **argv, struct drcpt *rs, size_t n, const char *sender,
		   const char *flags, int64_t date, const struct buf *raw, const struct buf *msg)
{
	char self[PATH_MAX];
	ssize_t sl = readlink("/proc/self/exe", self, sizeof self - 16);
	if (sl <= 0) {
		fprintf(stderr, "tandem-deliver: /proc/self/exe: %s\n", strerror(errno));
		return EX_TEMPFAIL;
	}
	self[sl] = '\0';
	char *slash = strrchr(self, '/');
	strcpy(slash ? slash + 1 : self, "tandem");
	int fd = memfd_create("tandem-deliver", 0);
	size_t off = 0;
	while (fd >= 0 && off < raw->len) {
		ssize_t w = write(fd, raw->ptr + off, raw->len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			close(fd);
			fd = -1;
			break;
		}
		off += (size_t)w;
	}
	if (fd < 0 || lseek(fd, 0, SEEK_SET) < 0 || dup2(fd, 0) < 0) {
		fprintf(stderr, "tandem-deliver: the message for %s: %s\n", self, strerror(errno));
		return EX_TEMPFAIL;
	}
	close(fd);
	char **av = xcalloc((size_t)argc + 8, sizeof *av);
	int k = 0;
	av[k++] = self;
	av[k++] = "-C";
	av[k++] = (char *)t->conf_path;
	if (verbose)
		av[k++] = "-v";
	av[k++] = "deliver";
	av[k++] = "--direct";
	for (int i = 1; i < argc; i++)
		av[k++] = argv[i];
	fflush(stdout);
	fflush(stderr);
	execv(self, av);
	fprintf(stderr, "tandem-deliver: cannot run %s: %s\n", self, strerror(errno));
	free(av);
	return EX_TEMPFAIL;	/* an installation fault: the MTA keeps the message */
}

int main(int argc, char **argv)
{
	struct tool t = { 0 };
	t.conf_path = getenv("TANDEM_CONF") ? getenv("TANDEM_CONF") : TOOL_DEFAULT_CONF;
	enum log_level lvl = LOG_LVL_WARN;
	int i = 1;
	for (; i < argc; i++) {
		if (!strcmp(argv[i], "-C") && i + 1 < argc) {
			t.conf_path = argv[++i];
		} else if (!strcmp(argv[i], "-v")) {
			lvl = LOG_LVL_DEBUG;
			verbose = 1;
		} else {
			break;
		}
	}
	log_open("tandem", 0, lvl);
	/* cmd_deliver's argv: "deliver" and what follows the global options */
	char **dargv = xcalloc((size_t)(argc - i) + 2, sizeof *dargv);
	dargv[0] = "deliver";
	for (int k = i; k < argc; k++)
		dargv[k - i + 1] = argv[k];
	int rc = cmd_deliver(&t, argc - i + 1, dargv);
	free(dargv);
	conf_free(&t.conf);
	return rc;
}
