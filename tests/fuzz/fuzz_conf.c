/* fuzz_conf.c: the configuration parser on arbitrary bytes, fed in
 * chunks whose sizes come from the input; a config that parses is dumped. */
#include "conf/conf.h"

#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct conf_parser *p = conf_parser_new("fuzz.conf");
	struct terr err;
	size_t step = size ? (size_t)(data[0] % 16) + 1 : 1;
	for (size_t i = 0; i < size; i += step) {
		size_t n = size - i < step ? size - i : step;
		if (conf_parser_feed(p, (const char *)data + i, n, &err) < 0) {
			conf_parser_free(&p);
			return 0;
		}
	}
	struct conf *c = NULL;
	if (conf_parser_finish(p, &c, &err) == 0) {
		struct buf out = BUF_INIT;
		conf_dump(c, &out);
		const char *const *items;
		conf_channels(c, &items);
		conf_chan_str(c, "repl1", "sync_host");
		conf_duration_ms(c, "sync_timeout");
		buf_free(&out);
		conf_free(&c);
	}
	return 0;
}
