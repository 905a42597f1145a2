/* replay_main.c: runs a libFuzzer target over files, without libFuzzer.
 *
 * Usage: replay-<target> FILE|DIR...  Every regular file (directories are
 * read one level deep) is passed to LLVMFuzzerTestOneInput once. Built
 * with ASan+UBSan, so a crash or leak fails the replay. Prints
 * "RESULT passed=N failed=0 skipped=0" where N is the number of inputs.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		perror(path);
		return -1;
	}
	size_t cap = 4096, len = 0;
	uint8_t *buf = malloc(cap);
	size_t n;
	while ((n = fread(buf + len, 1, cap - len, f)) > 0) {
		len += n;
		if (len == cap)
			buf = realloc(buf, cap *= 2);
	}
	fclose(f);
	/* An exact-size copy, so ASan catches any read past the input. */
	uint8_t *exact = malloc(len ? len : 1);
	memcpy(exact, buf, len);
	free(buf);
	LLVMFuzzerTestOneInput(exact, len);
	free(exact);
	return 0;
}

int main(int argc, char **argv)
{
	int count = 0;
	for (int i = 1; i < argc; i++) {
		struct stat st;
		if (stat(argv[i], &st) < 0) {
			perror(argv[i]);
			return 1;
		}
		if (!S_ISDIR(st.st_mode)) {
			if (run_file(argv[i]) < 0)
				return 1;
			count++;
			continue;
		}
		DIR *d = opendir(argv[i]);
		struct dirent *de;
		while (d && (de = readdir(d)) != NULL) {
			if (de->d_name[0] == '.')
				continue;
			char p[4096];
			snprintf(p, sizeof p, "%s/%s", argv[i], de->d_name);
			if (stat(p, &st) == 0 && S_ISREG(st.st_mode)) {
				if (run_file(p) < 0)
					return 1;
				count++;
			}
		}
		if (d)
			closedir(d);
	}
	printf("RESULT passed=%d failed=0 skipped=0\n", count);
	return 0;
}
