/* fuzz_chlog.c: change-log line parser on arbitrary bytes; every line
 * that parses formats and parses back to the same entry. */
#include "chlog/chlog.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data, *end = p + size;
	struct chlog_entry e = { 0 }, e2 = { 0 };
	struct buf line = BUF_INIT;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *le = nl ? nl : end;
		struct terr err;
		if (chlog_parse_line(p, (size_t)(le - p), &e, &err) == 0 &&
		    !memchr(buf_cstr(&e.arg1), '\r', e.arg1.len) && !memchr(buf_cstr(&e.arg2), '\r', e.arg2.len) &&
		    strlen(buf_cstr(&e.arg1)) == e.arg1.len && strlen(buf_cstr(&e.arg2)) == e.arg2.len) {
			buf_reset(&line);
			if (chlog_format(&line, e.keyword, buf_cstr(&e.arg1), e.nargs > 1 ? buf_cstr(&e.arg2) : NULL,
					 &err) == 0) {
				if (chlog_parse_line(line.ptr, line.len - 1, &e2, &err) != 0 ||
				    strcmp(buf_cstr(&e.arg1), buf_cstr(&e2.arg1)) ||
				    strcmp(buf_cstr(&e.arg2), buf_cstr(&e2.arg2)))
					abort();
			}
		}
		p = nl ? nl + 1 : end;
	}
	chlog_entry_free(&e);
	chlog_entry_free(&e2);
	buf_free(&line);
	return 0;
}
