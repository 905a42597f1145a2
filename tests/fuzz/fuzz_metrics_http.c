/* fuzz_metrics_http.c: the metrics endpoint's HTTP request head parser
 * (stats_http_parse) on arbitrary bytes: never reads past the input;
 * a head it accepts is GET or HEAD of a path starting with '/', no
 * longer than the limits, and every shorter prefix of it says "need
 * more"; a refusal carries one of the documented status codes. */
#include "stats/stats.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *copy = malloc(size ? size : 1);	/* exact size: ASan sees an overread */
	memcpy(copy, data, size);
	struct stats_http_req req;
	size_t used = 0;
	int status = 0;
	int r = stats_http_parse(copy, size, &req, &used, &status);
	if (r == 1) {
		if (used > size || used > METRICS_MAX_HEAD || req.path[0] != '/' ||
		    strlen(req.path) > METRICS_MAX_TARGET || (strcmp(req.method, "GET") && strcmp(req.method, "HEAD")))
			abort();
		/* prefixes: need more (a few, spread out, to stay fast) */
		for (size_t i = 0; i < used; i += 1 + used / 64) {
			struct stats_http_req r2;
			size_t u2;
			int s2;
			if (stats_http_parse(copy, i, &r2, &u2, &s2) != 0)
				abort();
		}
	} else if (r == -1) {
		static const int ok[] = { 400, 405, 414, 431, 501, 505 };
		int found = 0;
		for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
			found |= ok[i] == status;
		if (!found)
			abort();
	} else if (r != 0 || size > METRICS_MAX_HEAD) {
		abort();	/* past the head limit it must have decided */
	}
	free(copy);
	return 0;
}
