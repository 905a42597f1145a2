/* file_floor.c: the disk's floor for one file per message (docs/benchmarks.md,
 * "Initial sync at 10,000 messages/s"). No tandem code: what the kernel and
 * the disk cost for the replica's pattern alone, so that the sync's rate can
 * be read against it.
 *
 *   cc -O2 -o build/file_floor bench/file_floor.c
 *   build/file_floor DIR N SIZE BATCH [pack]
 *
 * One file per message (default): N files of SIZE bytes, each created in
 * DIR/stage, written, and renamed to DIR/blobs/xx/<name> (256 directories,
 * made as needed), with one syncfs() per BATCH files (the replica's pattern:
 * a staging file per literal, one rename into place, one syncfs per APPLY
 * MAILBOX). "pack": the same bytes appended to one file, one fdatasync per
 * BATCH messages. Prints messages/s and the CPU seconds of the process.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
	       (double)ru.ru_stime.tv_usec / 1e6;
}

static void die(const char *what)
{
	perror(what);
	exit(1);
}

int main(int argc, char **argv)
{
	if (argc < 5) {
		fprintf(stderr, "usage: file_floor DIR N SIZE BATCH [pack]\n");
		return 2;
	}
	const char *dir = argv[1];
	long n = atol(argv[2]), size = atol(argv[3]), batch = atol(argv[4]);
	int pack = argc > 5 && !strcmp(argv[5], "pack");
	char *data = malloc((size_t)size), path[4096], dst[4096];
	for (long i = 0; i < size; i++)
		data[i] = (char)('a' + i % 26);
	snprintf(path, sizeof path, "%s/stage", dir);
	if (mkdir(dir, 0750) < 0 && errno != EEXIST)
		die("mkdir");
	if (mkdir(path, 0750) < 0 && errno != EEXIST)
		die("mkdir stage");
	snprintf(path, sizeof path, "%s/blobs", dir);
	if (mkdir(path, 0750) < 0 && errno != EEXIST)
		die("mkdir blobs");
	int dfd = open(dir, O_RDONLY | O_DIRECTORY);
	double t0 = now(), c0 = cpu();
	int pfd = -1;
	if (pack) {
		snprintf(path, sizeof path, "%s/pack", dir);
		pfd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0640);
		if (pfd < 0)
			die("open pack");
	}
	for (long i = 0; i < n; i++) {
		/* a message's bytes differ in their first 8 (a GUID-like name) */
		memcpy(data, &i, sizeof i);
		if (pack) {
			if (write(pfd, data, (size_t)size) != size)
				die("write pack");
			if ((i + 1) % batch == 0 && fdatasync(pfd) < 0)
				die("fdatasync");
			continue;
		}
		unsigned h = (unsigned)(i * 2654435761u);
		snprintf(path, sizeof path, "%s/stage/%ld", dir, i);
		snprintf(dst, sizeof dst, "%s/blobs/%02x/%08x%08lx", dir, h >> 24, h, i);
		int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0640);
		if (fd < 0)
			die("open");
		if (write(fd, data, (size_t)size) != size)
			die("write");
		close(fd);
		if (rename(path, dst) < 0) {
			if (errno != ENOENT)
				die("rename");
			char *slash = strrchr(dst, '/');
			*slash = '\0';
			if (mkdir(dst, 0750) < 0 && errno != EEXIST)
				die("mkdir xx");
			*slash = '/';
			if (rename(path, dst) < 0)
				die("rename");
		}
		if ((i + 1) % batch == 0 && syncfs(dfd) < 0)
			die("syncfs");
	}
	if (pack ? fdatasync(pfd) : syncfs(dfd))
		die("final sync");
	double wall = now() - t0, c = cpu() - c0;
	printf("{\"bench\": \"file_floor\", \"mode\": \"%s\", \"messages\": %ld, \"size\": %ld, \"batch\": %ld,"
	       " \"msgs_per_s\": %.0f, \"cpu_ms_per_msg\": %.4f}\n",
	       pack ? "pack" : "file", n, size, batch, (double)n / wall, 1000 * c / (double)n);
	return 0;
}
