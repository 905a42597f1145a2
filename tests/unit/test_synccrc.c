/* test_synccrc.c: the sync CRCs against the worked examples of the
 * reference (cyrus-sync-protocol.md §5.5), all recomputed from Cyrus's
 * own wire captures. */
#include "store/synccrc.h"
#include "test.h"

TEST(crc32_check_value)
{
	CHECK_U64(synccrc_crc32("123456789", 9), 3421780262u);
}

TEST(example1_constructed)
{
	CHECK_U64(synccrc_flags(SYSFLAG_SEEN, NULL), 3201761491u);
	CHECK_U64(synccrc_flags(0, "Important"), 3399560672u);
	CHECK_U64(synccrc_flags(SYSFLAG_SEEN, "Important"), 1953901875u);
	CHECK_U64(synccrc_record(1, 5, 1700000000, SYSFLAG_SEEN, "Important", 1699999999,
				 "0123456789abcdef0123456789abcdef01234567"), 1704935123u);
}

TEST(example2_captured_mailbox)
{
	uint32_t r1 = synccrc_record(1, 4, 1795334828, 0, "$Label1", 1704067200,
				     "b622fc18dc1d1f34429ed3354ecb3f0a7cc1bfae");
	uint32_t r2 = synccrc_record(2, 5, 1795334907, SYSFLAG_FLAGGED, "", 1704186000,
				     "c1a4f6d3019ea1cf95bd8d2b5fdc06de5ff8a434");
	CHECK_U64(r1, 2978654139u);
	CHECK_U64(r2, 2046371782u);
	CHECK_U64(r1 ^ r2, 3363012733u);
	uint32_t a = SYNCCRC_ANNOT_START;
	a ^= synccrc_annot_virtual(1, 0, 1795334828, 4);
	CHECK_U64(a, 1732683463u);
	a ^= synccrc_annot_virtual(2, 0, 1795334907, 5);
	CHECK_U64(a, 1821467450u);
}

TEST(expunged_records_do_not_count)
{
	CHECK_U64(synccrc_record(3, 9, 1, SYSFLAG_EXPUNGED | SYSFLAG_SEEN, "x", 1,
				 "0123456789abcdef0123456789abcdef01234567"), 0);
	/* \Expunged itself never enters flagcrc */
	CHECK_U64(synccrc_flags(SYSFLAG_EXPUNGED, NULL), 0);
}

TEST(example4_real_annotation)
{
	CHECK_U64(synccrc_annot_entry(7, "/comment", "fred", "hello", 5), 4064428792u);
	CHECK_U64(synccrc_annot_entry(7, "/comment", "fred", "", 0), 0);
}

TEST(example5_thrid_unpadded)
{
	CHECK_U64(synccrc_annot_virtual(5, 0x1a2b3c, 0, 0), 3440731703u);
}

TEST(flag_order_and_case_do_not_matter)
{
	CHECK_U64(synccrc_flags(0, "a B c"), synccrc_flags(0, "C b A"));
}

int main(void)
{
	RUN(crc32_check_value);
	RUN(example1_constructed);
	RUN(example2_captured_mailbox);
	RUN(expunged_records_do_not_count);
	RUN(example4_real_annotation);
	RUN(example5_thrid_unpadded);
	RUN(flag_order_and_case_do_not_matter);
	return test_done();
}
