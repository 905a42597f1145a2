/* fuzz_lmtp.c: LMTP lines, commands, addresses and the DATA decoder on
 * arbitrary bytes in chunks whose sizes come from the input; the decoder
 * must give the same result whole and chunked. */
#include "proto/lmtp/lmtp.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *in = (const char *)data;
	struct lmtp_cmd cmd = { 0 };
	struct lmtp_reply r;
	struct buf a = BUF_INIT, b = BUF_INIT, c = BUF_INIT;
	size_t pos = 0, ll, used;
	while (pos < size && lmtp_take_line(in + pos, size - pos, &ll, &used) == LMTP_LINE_OK) {
		if (lmtp_parse(in + pos, ll, &cmd, &r) == 0 && cmd.verb == LMTP_RCPT)
			lmtp_split_address(buf_cstr(&cmd.arg), 1, &a, &b, &c);
		pos += used;
	}
	struct lmtp_data d1, d2;
	struct buf o1 = BUF_INIT, o2 = BUF_INIT;
	lmtp_data_init(&d1, 4096);
	lmtp_data_init(&d2, 4096);
	size_t u1 = 0, u2 = 0, p2 = 0;
	int r1 = lmtp_data_feed(&d1, in, size, &u1, &o1), r2 = 0;
	size_t step = size ? (size_t)(data[0] % 7) + 1 : 1;
	while (!r2 && p2 < size) {
		size_t n = size - p2 < step ? size - p2 : step;
		r2 = lmtp_data_feed(&d2, in + p2, n, &u2, &o2);
		p2 += u2;
	}
	if (r1 != r2 || (r1 && u1 != p2) || d1.toobig != d2.toobig || o1.len != o2.len ||
	    (o1.len && memcmp(o1.ptr, o2.ptr, o1.len)))
		abort();
	lmtp_cmd_free(&cmd);
	buf_free(&a);
	buf_free(&b);
	buf_free(&c);
	buf_free(&o1);
	buf_free(&o2);
	return 0;
}
