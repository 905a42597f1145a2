/* specialuse.c: special-use mailbox attributes (RFC 6154). As in Cyrus
 * 3.6, they are the mailbox annotation "/specialuse" private to the
 * mailbox's owner (USERID <owner> in the sync protocol; "" for a shared
 * mailbox), a space-separated list such as "\Sent" or "\Archive \Flagged". */
#include "imapd/imapd-private.h"

#include "store/store.h"

#include <string.h>
#include <strings.h>

static const char *const specialuse_flags[] = {
	"\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash",
};
#define NSPECIALUSE (sizeof specialuse_flags / sizeof specialuse_flags[0])

static int annot_cb(uint32_t uid, const char *entry, const char *userid, const void *value, size_t len,
		    uint64_t modseq, void *rock)
{
	(void)modseq;
	(void)userid;	/* the owner's (or "" from older tandem versions) */
	if (uid == 0 && !strcmp(entry, "/specialuse"))
		buf_append(rock, value, len);
	return 0;
}

void imapd_specialuse_get(struct imapd_session *s, const char *internal, struct buf *out)
{
	struct terr err = { 0 };
	size_t start = out->len;
	if (store_annot_list(s->st, internal, 0, annot_cb, out, &err) < 0)
		buf_truncate(out, start);
}

void imapd_specialuse_userid(const char *internal, struct buf *out)
{
	buf_reset(out);
	if (mboxname_owner(internal, out, NULL) != 1)
		buf_reset(out);
}

/* Index of flag in specialuse_flags, -1 if it is not one. */
static int specialuse_index(const char *flag)
{
	for (size_t i = 0; i < NSPECIALUSE; i++)
		if (!strcasecmp(flag, specialuse_flags[i]))
			return (int)i;
	return -1;
}

int imapd_specialuse_check(const char *const *flags, size_t n, struct buf *out)
{
	unsigned seen = 0;
	buf_reset(out);
	for (size_t i = 0; i < n; i++) {
		int k = specialuse_index(flags[i]);
		if (k < 0)
			return -1;
		if (seen & (1u << k))
			continue;
		seen |= 1u << k;
		if (out->len)
			buf_putc(out, ' ');
		buf_appends(out, specialuse_flags[k]);
	}
	return 0;
}
