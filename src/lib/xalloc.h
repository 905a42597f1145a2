/* xalloc.h: allocation that cannot fail (out of memory is fatal), and
 * x_free(&p), which frees and NULLs the pointer. */
#ifndef TANDEM_XALLOC_H
#define TANDEM_XALLOC_H

#include <stdlib.h>

void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
void *xmemdup(const void *p, size_t n);
__attribute__((noreturn)) void xalloc_fail(const char *what);

#define x_free(pp) do { free(*(pp)); *(pp) = NULL; } while (0)

#endif
