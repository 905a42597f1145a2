/* test.h: the unit-test harness (header only).
 *
 *   TEST(name) { CHECK(x == 1); CHECK_INT(a, b); CHECK_STR(s, "x"); }
 *   int main(void) { RUN(name); ...; return test_done(); }
 *
 * Each RUN counts as one test: it passes when none of its checks failed.
 * A failed check prints file:line and the values, and the test goes on.
 * test_done() prints "RESULT passed=N failed=M skipped=0" (tests/run.sh sums these)
 * and returns the exit status.
 */
#ifndef TANDEM_TEST_H
#define TANDEM_TEST_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int test_failed_checks;
static int test_passed, test_failed;
static const char *test_current;

#define TEST(name) static void test_##name(void)

#define RUN(name) do { \
	test_current = #name; \
	int before_ = test_failed_checks; \
	test_##name(); \
	if (test_failed_checks == before_) { test_passed++; printf("PASS %s\n", #name); } \
	else { test_failed++; printf("FAIL %s\n", #name); } \
} while (0)

#define CHECK(cond) do { if (!(cond)) { test_failed_checks++; \
	printf("  %s:%d: %s: check failed: %s\n", __FILE__, __LINE__, test_current, #cond); } } while (0)

#define CHECK_INT(a, b) do { long long a_ = (long long)(a), b_ = (long long)(b); \
	if (a_ != b_) { test_failed_checks++; \
	printf("  %s:%d: %s: %s == %lld, expected %lld\n", __FILE__, __LINE__, test_current, #a, a_, b_); } } while (0)

#define CHECK_U64(a, b) do { uint64_t a_ = (uint64_t)(a), b_ = (uint64_t)(b); \
	if (a_ != b_) { test_failed_checks++; \
	printf("  %s:%d: %s: %s == %" PRIu64 ", expected %" PRIu64 "\n", __FILE__, __LINE__, test_current, #a, a_, b_); } } while (0)

#define CHECK_STR(a, b) do { const char *a_ = (a), *b_ = (b); \
	if (!a_ || !b_ || strcmp(a_, b_) != 0) { test_failed_checks++; \
	printf("  %s:%d: %s: %s == \"%s\", expected \"%s\"\n", __FILE__, __LINE__, test_current, #a, \
	       a_ ? a_ : "(null)", b_ ? b_ : "(null)"); } } while (0)

#define CHECK_MEM(a, alen, b, blen) do { size_t al_ = (alen), bl_ = (blen); \
	if (al_ != bl_ || memcmp((a), (b), al_) != 0) { test_failed_checks++; \
	printf("  %s:%d: %s: %s (%zu bytes) differs from %s (%zu bytes)\n", __FILE__, __LINE__, \
	       test_current, #a, al_, #b, bl_); } } while (0)

static inline int test_done(void)
{
	printf("RESULT passed=%d failed=%d skipped=0\n", test_passed, test_failed);
	return test_failed ? 1 : 0;
}

/* A fresh temporary directory for a test (removed by the caller if it
 * wants; tests/run.sh runs unit tests with TMPDIR set to a scratch dir). */
static inline char *test_tmpdir(void)
{
	const char *base = getenv("TMPDIR");
	char *p = malloc(4096);
	snprintf(p, 4096, "%s/tandem-test-XXXXXX", base && *base ? base : "/tmp");
	if (!mkdtemp(p)) { perror("mkdtemp"); exit(2); }
	return p;
}

#endif
