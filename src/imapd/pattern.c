/* pattern.c: LIST/LSUB wildcard matching (RFC 3501 6.3.8).
 *
 * Dynamic programming over the name, one pass per pattern byte, so a
 * pattern like "*%*%*%*x" costs pattern x name steps instead of the
 * exponential backtracking of a naive recursive matcher.
 */
#include "imapd/imapd-private.h"

#include "lib/limits.h"

#include <string.h>
#include <strings.h>

/* Longest name matched, bytes (an external name with "@domain"). */
#define PATTERN_MAX_NAME (4 * MAX_MBOXNAME)

static int inbox_prefix(const char *s, size_t n, char sep)
{
	return n >= 5 && !strncasecmp(s, "INBOX", 5) && (n == 5 || s[5] == sep);
}

static char at(const char *s, size_t i, int fold)
{
	char c = s[i];
	if (fold && i < 5 && c >= 'a' && c <= 'z')
		c = (char)(c - 'a' + 'A');
	return c;
}

int imapd_pattern_match(const char *pat, size_t plen, const char *name, size_t nlen, char sep)
{
	if (plen > IMAP_MAX_LIST_PATTERN || nlen > PATTERN_MAX_NAME)
		return 0;
	int pf = inbox_prefix(pat, plen, sep), nf = inbox_prefix(name, nlen, sep);
	/* row[j]: pattern[0..i) matches name[0..j) */
	unsigned char row[PATTERN_MAX_NAME + 1], next[PATTERN_MAX_NAME + 1];
	memset(row, 0, nlen + 1);
	row[0] = 1;
	for (size_t i = 0; i < plen; i++) {
		char pc = at(pat, i, pf);
		if (pc == '*' || pc == '%') {
			unsigned char on = 0;
			for (size_t j = 0; j <= nlen; j++) {
				if (pc == '%' && j > 0 && name[j - 1] == sep)
					on = 0;	/* '%' cannot swallow the separator */
				on |= row[j];
				next[j] = on;
			}
		} else {
			next[0] = 0;
			for (size_t j = 0; j < nlen; j++)
				next[j + 1] = row[j] && at(name, j, nf) == pc;
		}
		int alive = 0;
		for (size_t j = 0; j <= nlen; j++)
			alive |= (row[j] = next[j]);
		if (!alive)
			return 0;
	}
	return row[nlen];
}
