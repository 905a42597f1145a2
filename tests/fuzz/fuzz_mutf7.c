/* fuzz_mutf7.c: modified UTF-7 and mailbox-name checks on arbitrary
 * bytes; valid input survives to_utf8 -> from_utf8 unchanged. */
#include "names/mboxname.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct buf u = BUF_INIT, back = BUF_INIT, s = BUF_INIT, out = BUF_INIT;
	struct terr err;
	buf_append(&s, data, size);
	if (mutf7_valid((const char *)data, size)) {
		if (mutf7_to_utf8((const char *)data, size, &u, &err) != 0)
			abort();
		if (mutf7_from_utf8(u.ptr, u.len, &back, &err) != 0)
			abort();
		/* the encoding is canonical except for split runs ("&AOk-&AOk-") */
		if (!strstr(s.ptr, "-&") && (back.len != size || memcmp(back.ptr, data, size)))
			abort();
	}
	if (strlen(s.ptr) == size) {
		mboxname_validate(s.ptr, &err);
		mboxname_owner(s.ptr, &out, &err);
		struct mboxname_ns ns = { '/', 1 };
		if (mboxname_from_external(&ns, "a@example.com", s.ptr, &out, &err) == 0) {
			struct buf ext = BUF_INIT;
			mboxname_to_external(&ns, "a@example.com", out.ptr, &ext, &err);
			buf_free(&ext);
		}
		mboxname_from_admin(&ns, s.ptr, &out, &err);
		mutf7_from_utf8(s.ptr, size, &out, &err);
	}
	buf_free(&u);
	buf_free(&back);
	buf_free(&s);
	buf_free(&out);
	return 0;
}
