/* imap_arena.c: the per-command memory arena of the IMAP parser.
 *
 * Every argument node, string and typed structure of one command is
 * carved from a chain of blocks and released at once when the next
 * command starts, so the typed layer never frees anything itself.
 */
#include <stdalign.h>
#include <stddef.h>
#include <string.h>

#include "lib/xalloc.h"
#include "proto/imap/imap_private.h"

#define ARENA_BLOCK 8192

struct imap_arena_blk {
	struct imap_arena_blk *next;
	size_t cap, used;
	alignas(max_align_t) unsigned char data[];
};

void *imap_arena_alloc(struct imap_arena *a, size_t n)
{
	const size_t al = alignof(max_align_t);
	size_t need = (n + al - 1) & ~(al - 1);
	if (need == 0)
		need = al;
	struct imap_arena_blk *b = a->head;
	if (!b || b->cap - b->used < need) {
		size_t cap = need > ARENA_BLOCK ? need : ARENA_BLOCK;
		b = xmalloc(sizeof(*b) + cap);
		b->cap = cap;
		b->used = 0;
		/* A big one-off allocation goes behind the current block so
		 * the current block's free space stays usable. */
		if (a->head && need > ARENA_BLOCK) {
			b->next = a->head->next;
			a->head->next = b;
		} else {
			b->next = a->head;
			a->head = b;
		}
	}
	void *p = b->data + b->used;
	b->used += need;
	memset(p, 0, n);
	return p;
}

char *imap_arena_strndup(struct imap_arena *a, const char *s, size_t len)
{
	char *d = imap_arena_alloc(a, len + 1);
	if (len)
		memcpy(d, s, len);
	d[len] = '\0';
	return d;
}

void imap_arena_reset(struct imap_arena *a)
{
	struct imap_arena_blk *keep = NULL, *b = a->head;
	while (b) {
		struct imap_arena_blk *next = b->next;
		if (!keep && b->cap == ARENA_BLOCK) {
			keep = b;
		} else {
			free(b);
		}
		b = next;
	}
	if (keep) {
		keep->next = NULL;
		keep->used = 0;
	}
	a->head = keep;
}

void imap_arena_free(struct imap_arena *a)
{
	struct imap_arena_blk *b = a->head;
	while (b) {
		struct imap_arena_blk *next = b->next;
		free(b);
		b = next;
	}
	a->head = NULL;
}
