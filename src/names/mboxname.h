/* mboxname.h: mailbox names and userids.
 *
 * Internal names are Cyrus's (reference §4.7): separator '.', personal
 * mailboxes user.<localpart>[.<folder>...], with virtual domains
 * <domain>!user.<localpart>..., shared mailboxes without a prefix,
 * delayed-delete copies DELETED.user.<u>.<folder>.<hex>. A '.' in a
 * userid or (with unixhierarchysep) in a folder name is stored as '^';
 * non-ASCII is IMAP modified UTF-7 (RFC 3501 5.1.3).
 *
 * Every function returns 0 on success and -1 with *err set, unless it
 * says otherwise. Output buffers are reset first.
 */
#ifndef TANDEM_MBOXNAME_H
#define TANDEM_MBOXNAME_H

#include <stddef.h>

#include "lib/buf.h"
#include "lib/err.h"

struct mboxname_ns {
	char sep;	 /* external separator: '/' with unixhierarchysep, else '.' */
	int virtdomains; /* userids may carry @domain, mapped to "<domain>!" */
};

/* Owner of an internal name: 1 personal (userid_r = "alice", "john.doe",
 * "bob@example.com"), 0 shared (userid_r = ""), -1 malformed. Covers
 * DELETED.user.<u>... names. */
int mboxname_owner(const char *internal, struct buf *userid_r, struct terr *err);
/* "alice" -> user.alice; "john.doe" -> user.john^doe;
 * "bob@example.com" -> example.com!user.bob. */
int mboxname_user_inbox(const char *userid, struct buf *internal_r, struct terr *err);
/* Full check of an internal name (length, components, depth, bytes,
 * modified UTF-7, the userid after "user."). */
int mboxname_validate(const char *internal, struct terr *err);
/* Userid syntax; '@' only with virtdomains. */
int userid_validate(const char *userid, int virtdomains, struct terr *err);

/* IMAP client namespace (Cyrus standard namespace) seen by userid:
 * INBOX[<sep>x] <-> user.<u>[.x]; user<sep>bob<sep>x <-> user.bob.x;
 * other names are shared. With virtdomains a name of another domain is
 * written with "@domain" at its end. */
int mboxname_from_external(const struct mboxname_ns *ns, const char *userid, const char *external,
			   struct buf *internal_r, struct terr *err);
int mboxname_to_external(const struct mboxname_ns *ns, const char *userid, const char *internal,
			 struct buf *external_r, struct terr *err);
/* Admin namespace: user<sep>alice<sep>Sent[@domain], shared names as
 * they are. With sep '.', internal names are accepted as they are. */
int mboxname_from_admin(const struct mboxname_ns *ns, const char *external, struct buf *internal_r,
			struct terr *err);
int mboxname_to_admin(const struct mboxname_ns *ns, const char *internal, struct buf *external_r,
		      struct terr *err);
/* The folder of a "user+folder" address: "" or "INBOX" -> the INBOX,
 * "Lists<sep>x" -> user.<u>.Lists.x. */
int mboxname_user_folder(const struct mboxname_ns *ns, const char *userid, const char *folder,
			 struct buf *internal_r, struct terr *err);

/* Modified UTF-7: 1 if s[0..len) is valid, else 0. */
int mutf7_valid(const char *s, size_t len);
int mutf7_from_utf8(const char *utf8, size_t len, struct buf *out, struct terr *err);
int mutf7_to_utf8(const char *s, size_t len, struct buf *out, struct terr *err);

#endif
