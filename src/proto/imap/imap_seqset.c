/* imap_seqset.c: sequence sets ("1:3,7,10:*", "$") and their tests.
 *
 * Numbers are nz-number (1..4294967295); "*" is kept as IMAP_SEQ_STAR
 * (0) and resolved by the server against the mailbox. Ranges are kept as
 * sent (no sorting or merging): the server walks them.
 */
#include <string.h>

#include "proto/imap/imap_private.h"

/* One seq-number at s[*i]: digits (no leading zero) or "*". */
static int seq_number(const char *s, size_t len, size_t *i, uint32_t *v_r)
{
	size_t j = *i;
	if (j < len && s[j] == '*') {
		*v_r = IMAP_SEQ_STAR;
		*i = j + 1;
		return 0;
	}
	if (j >= len || s[j] < '1' || s[j] > '9')
		return -1;
	uint64_t v = 0;
	while (j < len && s[j] >= '0' && s[j] <= '9') {
		v = v * 10 + (uint64_t)(s[j] - '0');
		if (v > 0xffffffffu)
			return -1;
		j++;
	}
	*v_r = (uint32_t)v;
	*i = j;
	return 0;
}

int imap_seqset_parse(struct imap_arena *a, const char *s, size_t len,
		      struct imap_seqset *set_r)
{
	memset(set_r, 0, sizeof(*set_r));
	if (len == 1 && s[0] == '$') {
		set_r->saved = 1;
		return 0;
	}
	size_t n = 1;
	for (size_t i = 0; i < len; i++)
		n += s[i] == ',';
	struct imap_seq_range *r = imap_arena_alloc(a, n * sizeof(*r));
	size_t i = 0, k = 0;
	for (;;) {
		if (seq_number(s, len, &i, &r[k].lo) < 0)
			return -1;
		r[k].hi = r[k].lo;
		if (i < len && s[i] == ':') {
			i++;
			if (seq_number(s, len, &i, &r[k].hi) < 0)
				return -1;
		}
		k++;
		if (i == len)
			break;
		if (s[i] != ',')
			return -1;
		i++;
	}
	set_r->count = k;
	set_r->ranges = r;
	return 0;
}

int imap_seqset_contains(const struct imap_seqset *set, uint32_t n, uint32_t max)
{
	for (size_t i = 0; i < set->count; i++) {
		uint32_t lo = set->ranges[i].lo == IMAP_SEQ_STAR ? max : set->ranges[i].lo;
		uint32_t hi = set->ranges[i].hi == IMAP_SEQ_STAR ? max : set->ranges[i].hi;
		if (lo > hi) {
			uint32_t t = lo;
			lo = hi;
			hi = t;
		}
		if (n >= lo && n <= hi)
			return 1;
	}
	return 0;
}
