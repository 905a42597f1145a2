/* imap_args.h: the generic argument tree of one IMAP command.
 *
 * The framing parser (imap_parser.h) turns the bytes after the command
 * name into a tree of these nodes; the typed layer (imap_cmd.h) reads the
 * tree, so the server never has to. Every node and string lives in the
 * parser's per-command arena: valid until the next imap_parser_feed(),
 * imap_parser_reset() or imap_parser_free() call. Strings are
 * NUL-terminated and carry their length; IMAP forbids NUL in strings, so
 * the parser refuses it everywhere except in APPEND's message.
 */
#ifndef TANDEM_IMAP_ARGS_H
#define TANDEM_IMAP_ARGS_H

#include <stddef.h>
#include <stdint.h>

enum imap_arg_type {
	IMAP_ARG_ATOM,		/* bare word; also BODY[...]<...> as one atom */
	IMAP_ARG_QUOTED,	/* "..." with the escapes removed */
	IMAP_ARG_LITERAL,	/* {N} or {N+} and its bytes */
	IMAP_ARG_NIL,		/* the atom NIL (any case); str holds it */
	IMAP_ARG_LIST,		/* ( ... ): children in child/next */
};

struct imap_arg {
	enum imap_arg_type type;
	const char *str;	/* text of an atom, string or NIL; NULL for a list
				 * and for a streamed APPEND message literal */
	size_t len;		/* length of str (for a literal: its size) */
	struct imap_arg *child;	/* first element of a list */
	struct imap_arg *next;	/* next sibling, NULL at the end */
	size_t count;		/* number of children of a list */
	uint64_t pos;		/* offset of the token in the command, from
				 * the first byte of the tag */
};

/* 1 when a is an atom, quoted string or literal (not NIL, not a list). */
int imap_arg_is_string(const struct imap_arg *a);
/* 1 when a is an atom equal to word, ignoring ASCII case. */
int imap_arg_is_atom(const struct imap_arg *a, const char *word);

#endif
