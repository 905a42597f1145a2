/* fuzz_sync_replica.c: the replica engine (src/sync/sync_replica.h) fed
 * whatever an authenticated master could send: the input is framed into
 * commands as the csync server frames them, and each is run against one
 * real store in a temp directory (kept across inputs, so state builds
 * up). Every answer must be a completion line (OK, NO or BAD); nothing
 * may crash, leak or hang. The corpus starts from the commands of the
 * protocol reference's transcripts of a real Cyrus pair. */
#include "lib/buf.h"
#include "lib/fsutil.h"
#include "lib/log.h"
#include "proto/sync/dlist.h"
#include "store/store.h"
#include "sync/sync_replica.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Commands one input may run: bounds the time of one input. */
#define FUZZ_MAX_COMMANDS 64

static struct store *st;
static char dir[256];

static void remove_store(void)
{
	struct terr err;
	store_close(&st);
	fs_remove_tree(dir, &err);
}

static void open_store(void)
{
	struct terr err = { 0 };
	const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	snprintf(dir, sizeof dir, "%s/tandem-fuzz-replica-XXXXXX", base);
	if (!mkdtemp(dir))
		abort();
	struct buf conf = BUF_INIT, spool = BUF_INIT;
	buf_printf(&conf, "%s/conf", dir);
	buf_printf(&spool, "%s/spool", dir);
	if (fs_mkdir_p(conf.ptr, 0700, &err) < 0 || fs_mkdir_p(spool.ptr, 0700, &err) < 0)
		abort();
	struct store_opts o = { conf.ptr, "default", spool.ptr, NULL, 0, 0, NULL, NULL, NULL };
	if (store_open(&o, &st, &err) < 0)
		abort();
	log_set_level(LOG_LVL_ERR);
	atexit(remove_store);
	/* the store's strings are copied by store_open; the paths may go */
	buf_free(&conf);
	buf_free(&spool);
}

static void data_cb(void *rock, const struct dlist *d)
{
	struct buf *out = rock;
	buf_reset(out);
	dlist_print(out, d, DLIST_LIT_SERVER);	/* an answer must print */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!st)
		open_store();
	struct sync_replica_opts o = { st, "fuzz", NULL, NULL };
	struct sync_replica *r = sync_replica_new(&o);
	struct buf out = BUF_INIT;
	const char *in = (const char *)data;
	size_t pos = 0;
	/* each input runs twice: first read as the csync session reads it
	 * after login (file literals streamed to staging files), then whole,
	 * as the IMAP transport and the pipe carry it */
	{
		struct buf line = BUF_INIT;
		for (int n = 0; pos < size && n < FUZZ_MAX_COMMANDS; n++) {
			struct dlist_frame f;
			struct terr err = { 0 };
			dlist_frame_init(&f);
			f.files = 1;
			buf_reset(&line);
			long long len = 0;
			size_t from = pos;	/* bytes in[from..pos) are in line or a sink */
			for (;;) {
				len = dlist_frame_scan(&f, line.ptr ? line.ptr : "", line.len, &err);
				if (len == DLIST_FRAME_FILE) {
					size_t take = size - pos < f.file.size ? size - pos : (size_t)f.file.size;
					sync_replica_file_begin(r, &f.file);
					sync_replica_file_write(r, in + pos, take);
					sync_replica_file_end(r);
					pos += take;
					continue;
				}
				if (len != 0 || pos == size)
					break;
				buf_putc(&line, in[pos++]);
			}
			if (len <= 0) {
				sync_replica_files_drop(r);
				const char *nl = memchr(in + from, '\n', size - from);
				if (!nl)
					break;
				pos = (size_t)(nl - in) + 1 > pos ? (size_t)(nl - in) + 1 : pos;
				continue;
			}
			const char *res = sync_replica_exec_streamed(r, line.ptr, (size_t)len, data_cb, &out);
			if (strncmp(res, "OK", 2) && strncmp(res, "NO", 2) && strncmp(res, "BAD", 3))
				abort();
		}
		buf_free(&line);
		pos = 0;
	}
	for (int n = 0; pos < size && n < FUZZ_MAX_COMMANDS; n++) {
		struct dlist_frame f;
		struct terr err = { 0 };
		dlist_frame_init(&f);
		long long len = dlist_frame_scan(&f, in + pos, size - pos, &err);
		if (len <= 0) {
			/* a syntax error or an unfinished command: skip its line */
			const char *nl = memchr(in + pos, '\n', size - pos);
			if (!nl)
				break;
			pos = (size_t)(nl - in) + 1;
			continue;
		}
		const char *res = sync_replica_exec_raw(r, in + pos, (size_t)len, data_cb, &out);
		if (strncmp(res, "OK", 2) && strncmp(res, "NO", 2) && strncmp(res, "BAD", 3))
			abort();
		pos += (size_t)len;
	}
	buf_free(&out);
	sync_replica_free(&r);
	return 0;
}
