/* fuzz_rightnow_wait.c: the WAIT line of synchronous replication on
 * arbitrary bytes: never reads past the input; a line that parses prints
 * back to the same bytes; every prefix of it says "need more". */
#include "sync/sync_rightnow.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sync_rightnow_wait w;
	size_t used;
	char *copy = malloc(size ? size : 1);	/* exact size: ASan sees an overread */
	memcpy(copy, data, size);
	int r = sync_rightnow_parse_wait(copy, size, &w, &used);
	if (r == 1) {
		char line[128];
		int n = snprintf(line, sizeof line, "WAIT %llu %llu %llu\n", w.dev, w.ino, w.offset);
		if ((size_t)n != used || memcmp(line, copy, used))
			abort();
		size_t u2;
		for (size_t i = 0; i < used; i++)
			if (sync_rightnow_parse_wait(copy, i, &w, &u2) != 0)
				abort();
	} else if (r != 0 && r != -1) {
		abort();
	}
	free(copy);
	return 0;
}
