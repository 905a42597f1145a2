/* test_conn_file.c: conn_write_file, how the sync client sends a message
 * file (docs/replication.md, "How bodies travel"): the bytes that arrive
 * are the file's, at their place among the queued bytes, on a plain
 * connection (sendfile for a large file, the queue for a small one) and
 * through DEFLATE (64 KiB pieces); a file shorter than announced is an
 * error. A second process writes; this one reads with conn_read, which
 * inflates at most 64 KiB per call. */
#include "lib/buf.h"
#include "lib/limits.h"
#include "net/conn.h"
#include "test.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

/* A file of n pseudo-random bytes (hard to deflate), already unlinked;
 * its bytes in out. */
static int make_file(size_t n, unsigned seed, struct buf *out)
{
	char tmpl[512];
	const char *dir = getenv("TMPDIR");
	snprintf(tmpl, sizeof tmpl, "%s/tandem-connfile-XXXXXX", dir && *dir ? dir : "/tmp");
	int fd = mkstemp(tmpl);
	if (fd >= 0)
		unlink(tmpl);
	buf_reset(out);
	unsigned x = seed;
	for (size_t i = 0; i < n; i++) {
		x = x * 1103515245u + 12345u;
		buf_putc(out, (char)(x >> 16));
	}
	if (fd < 0 || write(fd, out->ptr, n) != (ssize_t)n)
		return -1;
	return fd;
}

/* Sends "A" small "B" big "C" (compressed or not) from a child; returns
 * what the parent read, and the child's exit status in *status. */
static void roundtrip(int compress, size_t small, size_t big, uint64_t claim_big, struct buf *got,
		      struct buf *want, int *status)
{
	struct buf s = BUF_INIT, b = BUF_INIT;
	int fs = make_file(small, 1, &s), fb = make_file(big, 2, &b);
	CHECK(fs >= 0 && fb >= 0);
	buf_reset(want);
	buf_appends(want, "A");
	buf_append(want, s.ptr, s.len);
	buf_appends(want, "B");
	buf_append(want, b.ptr, b.len);
	buf_appends(want, "C");
	int sv[2];
	CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	pid_t pid = fork();
	if (pid == 0) {
		close(sv[0]);
		struct conn *c = conn_new(sv[1]);
		struct terr err = { 0 };
		int rc = compress ? conn_compress(c, &err) : 0;
		lseek(fs, 0, SEEK_SET);
		lseek(fb, 0, SEEK_SET);
		conn_puts(c, "A");
		rc |= conn_write_file(c, fs, small, &err);
		conn_puts(c, "B");
		rc |= conn_write_file(c, fb, claim_big, &err);
		conn_puts(c, "C");
		rc |= conn_flush(c, &err);
		conn_free(&c);
		_exit(rc ? 1 : 0);
	}
	close(sv[1]);
	struct conn *c = conn_new(sv[0]);
	struct terr err = { 0 };
	if (compress)
		CHECK_INT(conn_compress(c, &err), 0);
	buf_reset(got);
	for (;;) {
		size_t before = got->len;
		ssize_t r = conn_read(c, got, 10000, &err);
		if (r <= 0)
			break;
		CHECK(got->len - before <= 65536);	/* one read never adds more */
	}
	conn_free(&c);
	waitpid(pid, status, 0);
	close(fs);
	close(fb);
	buf_free(&s);
	buf_free(&b);
}

TEST(plain_and_deflate)
{
	struct buf got = BUF_INIT, want = BUF_INIT;
	int status;
	for (int z = 0; z < 2; z++) {
		roundtrip(z, 1000, 3 * SYNC_STREAM_CHUNK + 17, 3 * SYNC_STREAM_CHUNK + 17, &got, &want, &status);
		CHECK_INT(WIFEXITED(status) && WEXITSTATUS(status) == 0, 1);
		CHECK_INT(got.len, want.len);
		CHECK(got.len == want.len && !memcmp(got.ptr, want.ptr, got.len));
		/* a file at exactly one piece goes through the queue */
		roundtrip(z, SYNC_STREAM_CHUNK, 0, 0, &got, &want, &status);
		CHECK_INT(WIFEXITED(status) && WEXITSTATUS(status) == 0, 1);
		CHECK(got.len == want.len && !memcmp(got.ptr, want.ptr, got.len));
	}
	buf_free(&got);
	buf_free(&want);
}

TEST(file_shorter_than_announced)
{
	struct buf got = BUF_INIT, want = BUF_INIT;
	int status;
	for (int z = 0; z < 2; z++) {
		roundtrip(z, 10, 200000, 300000, &got, &want, &status);
		CHECK_INT(WIFEXITED(status) ? WEXITSTATUS(status) : -1, 1);
	}
	buf_free(&got);
	buf_free(&want);
}

int main(void)
{
	RUN(plain_and_deflate);
	RUN(file_shorter_than_announced);
	return test_done();
}
