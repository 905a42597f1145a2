/* fuzz_dlist.c: DLIST framing and parsing on arbitrary bytes, fed in
 * chunks whose sizes come from the input (framing must give the same
 * length as whole); a parsed line printed and parsed again gives the same
 * printout (round trip). */
#include "proto/sync/dlist.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *in = (const char *)data;
	struct terr err;
	struct dlist_frame f1, f2;
	dlist_frame_init(&f1);
	dlist_frame_init(&f2);
	long long whole = dlist_frame_scan(&f1, in, size, &err);
	long long chunked = 0;
	size_t step = size ? (size_t)(data[size - 1] % 13) + 1 : 1;
	for (size_t upto = step < size ? step : size;; upto = upto + step < size ? upto + step : size) {
		chunked = dlist_frame_scan(&f2, in, upto, &err);
		if (chunked != 0 || upto == size)
			break;
	}
	if (whole != chunked)
		abort();
	/* streamed (as the csync session after login): the file literals'
	 * bytes never enter the line, which frames to the same end */
	if (whole > 0) {
		struct dlist_frame fs;
		dlist_frame_init(&fs);
		fs.files = 1;
		struct buf ln = BUF_INIT;
		size_t pos = 0;
		uint64_t filebytes = 0;
		long long n = 0;
		for (;;) {
			n = dlist_frame_scan(&fs, ln.ptr ? ln.ptr : "", ln.len, &err);
			if (n == DLIST_FRAME_FILE) {
				if (fs.pos != ln.len || fs.file.size > (uint64_t)whole - pos)
					abort();
				pos += (size_t)fs.file.size;
				filebytes += fs.file.size;
				continue;
			}
			if (n != 0 || pos == (size_t)whole)
				break;
			buf_putc(&ln, in[pos++]);
		}
		if (n != (long long)ln.len || ln.len + filebytes != (uint64_t)whole)
			abort();
		struct dlist *l1 = NULL, *l2 = NULL;
		int r1 = dlist_parse(in, (size_t)whole, &l1, &err);
		int r2 = dlist_parse_ext(ln.ptr, ln.len, DLIST_FILES_OUTSIDE, &l2, &err);
		if (r1 == 0 && r2 != 0)
			abort();
		dlist_free(&l1);
		dlist_free(&l2);
		buf_free(&ln);
	}
	struct dlist *line = NULL;
	if (dlist_parse(in, whole > 0 ? (size_t)whole : size, &line, &err) == 0) {
		struct buf a = BUF_INIT, b = BUF_INIT;
		for (size_t i = 0; i < line->n; i++) {
			dlist_print_value(&a, line->items[i], DLIST_LIT_CLIENT);
			buf_putc(&a, ' ');
		}
		struct dlist *again = NULL;
		if (dlist_parse(a.ptr ? a.ptr : "", a.len, &again, &err) != 0)
			abort();
		for (size_t i = 0; i < again->n; i++) {
			dlist_print_value(&b, again->items[i], DLIST_LIT_CLIENT);
			buf_putc(&b, ' ');
		}
		if (a.len != b.len || (a.len && memcmp(a.ptr, b.ptr, a.len)))
			abort();
		struct dlist *kv = dlist_take_keyed(line, 1);
		if (kv) {
			uint64_t v;
			char g[41];
			const char *s;
			dlist_get_num64(kv, "UID", &v);
			dlist_get_guid(kv, "GUID", g);
			dlist_get_str(kv, "MBOXNAME", &s);
			dlist_get_hex64(kv, "VALUE", &v);
			dlist_free(&kv);
		}
		dlist_free(&again);
		buf_free(&a);
		buf_free(&b);
	}
	dlist_free(&line);
	return 0;
}
