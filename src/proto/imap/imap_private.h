/* imap_private.h: internals shared by the files of src/proto/imap/.
 *
 * Not for use outside this directory: the parser state, the per-command
 * arena, the tokenizer, the literal-header scanner, the command table and
 * the argument readers the typed grammars are built from.
 */
#ifndef TANDEM_IMAP_PRIVATE_H
#define TANDEM_IMAP_PRIVATE_H

#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"
#include "lib/limits.h"
#include "proto/imap/imap_parser.h"

/* ---- arena: every allocation of one command, freed together ---------- */

struct imap_arena_blk;

struct imap_arena {
	struct imap_arena_blk *head;
};

/* Zeroed memory, aligned for any type; lives until imap_arena_reset(). */
void *imap_arena_alloc(struct imap_arena *a, size_t n);
/* A NUL-terminated copy of s[0..len). */
char *imap_arena_strndup(struct imap_arena *a, const char *s, size_t len);
/* Frees everything but one block, kept for the next command. */
void imap_arena_reset(struct imap_arena *a);
void imap_arena_free(struct imap_arena *a);

/* ---- literal-header scanner --------------------------------------------
 * Recognises, without buffering the line, whether a line ends with a
 * literal header: "{N}", "{N+}", "~{N}" or (raw mode) a DLIST file literal
 * "%{partition guid N}". Used to step over literals while skipping a bad
 * command and to frame SYNC* commands. */

enum { IMAP_SCAN_NONE, IMAP_SCAN_LITERAL, IMAP_SCAN_BAD };

struct imap_scan {
	int state;		/* 0 idle, 1 collecting, 2 header closed */
	int file;		/* "%{" */
	unsigned char prev;	/* previous byte (boundary test) */
	unsigned char prev2;
	size_t hlen;
	char hdr[IMAP_SYNC_MAX_FILE_HEADER];
};

void imap_scan_init(struct imap_scan *s);
/* Feeds one byte that is not LF. */
void imap_scan_byte(struct imap_scan *s, unsigned char c);
/* At LF: IMAP_SCAN_NONE (plain line end), IMAP_SCAN_LITERAL (*size_r,
 * *nonsync_r, *file_r set) or IMAP_SCAN_BAD (a header whose size is not a
 * 32-bit number: the stream cannot be followed). Resets the scanner. */
int imap_scan_eol(struct imap_scan *s, uint64_t *size_r, int *nonsync_r, int *file_r);

/* ---- tokenizer state ------------------------------------------------------ */

struct imap_tok_frame {
	struct imap_arg *list;
	struct imap_arg *last;
};

struct imap_tok {
	struct imap_arg root;	/* top-level arguments (type LIST) */
	struct imap_tok_frame stack[IMAP_MAX_NESTING + 1];
	int depth;		/* open parentheses */
	int need_sep;		/* a token just ended: SP or ')' must follow */
	size_t nargs;
};

enum { IMAP_TOK_END, IMAP_TOK_LITERAL, IMAP_TOK_ERROR };

void imap_tok_init(struct imap_tok *t);

/* ---- the parser ------------------------------------------------------------ */

enum imap_pstate {
	IMAP_PS_HEAD,		/* tag, command name (and UID's sub-command) */
	IMAP_PS_LINE,		/* rest of a line segment */
	IMAP_PS_LITERAL,	/* literal bytes */
	IMAP_PS_RAW,		/* SYNC* remainder, text */
	IMAP_PS_RAW_LITERAL,	/* SYNC* remainder, literal or file bytes */
	IMAP_PS_SKIP_LINE,	/* after an error: to the end of the command */
	IMAP_PS_SKIP_LITERAL,	/* after an error: a literal to throw away */
	IMAP_PS_EXPECT,		/* DONE or a SASL line */
	IMAP_PS_READY,		/* a SYNC* command is complete */
	IMAP_PS_DEAD,		/* after a fatal error: nothing more is parsed */
};

struct imap_cmd_def;

struct imap_parser {
	/* limits */
	enum imap_mode mode;
	uint64_t max_line, max_literal, max_command, max_message;
	int buffered;

	enum imap_pstate state;
	int started;		/* bytes of the current command were read */
	struct imap_arena arena;

	/* the current line segment and the command's byte accounting */
	struct buf line;
	uint64_t cmd_off;	/* bytes of the command consumed so far */
	uint64_t seg_pos;	/* command offset of the line segment start */
	uint64_t cmd_text;	/* bytes outside literals (IMAP_MAX_LINE) */
	uint64_t cmd_size;	/* text and literals (IMAP_MAX_COMMAND_SIZE) */
	int first_seg;
	uint64_t end_pos;	/* command offset of the final line end */

	/* head */
	size_t head_len;	/* bytes of the first segment taken by the head */
	int nspaces;
	const char *tag;
	const struct imap_cmd_def *def;
	int uid;

	struct imap_tok tok;

	/* literal being read */
	int have_pending;
	struct imap_pending pending;
	unsigned nmsgs;		/* APPEND's message literals so far */
	uint64_t msg_bytes;	/* and their bytes (MULTIAPPEND) */
	struct imap_arg *lit_arg;
	char *lit_dst;
	uint64_t lit_left;

	/* skipping */
	uint64_t skip_left;
	int skip_raw;
	struct imap_scan scan;

	/* SYNC* remainder */
	struct buf raw;
	uint64_t raw_len;
	int raw_file;		/* the literal being passed is a file literal */

	/* APPEND's message in buffered mode */
	struct buf msg;

	/* IMAP_DATA */
	const void *data_ptr;
	size_t data_len;
	enum imap_data_kind data_kind;

	/* expectations (IDLE, SASL) */
	enum imap_expect expect;
	struct buf expect_tag;

	/* results */
	struct imap_cmd cmd;
	struct imap_error err;
	char errmsg[256];
};

/* Runs the tokenizer over one line segment s[0..n) (no CRLF) whose first
 * byte is at command offset pos0. IMAP_TOK_LITERAL: the segment ended in a
 * literal header; a placeholder argument was appended and
 * *size_r and *nonsync_r describe it. IMAP_TOK_ERROR: p->err is set. */
int imap_tok_run(struct imap_parser *p, const char *s, size_t n, uint64_t pos0,
		 uint64_t *size_r, int *nonsync_r);
/* The placeholder argument of the literal just announced. */
struct imap_arg *imap_tok_last(struct imap_parser *p);

/* Records an error (first one wins for a command). Returns -1. */
int imap_parser_fail(struct imap_parser *p, enum imap_resp resp, const char *code,
		     uint64_t pos, int fatal, const char *fmt, ...)
	__attribute__((format(printf, 6, 7)));

/* ---- command table ---------------------------------------------------------- */

#define IMAP_CMDF_PREAUTH	0x01u	/* allowed before login */
#define IMAP_CMDF_UID		0x02u	/* allowed after UID */
#define IMAP_CMDF_ONLY_UID	0x04u	/* only after UID (UID EXPUNGE) */
#define IMAP_CMDF_RAW		0x08u	/* SYNC*: the remainder is passed raw */

struct imap_cp;

struct imap_cmd_def {
	const char *name;
	enum imap_cmd_id id;
	unsigned flags;
	int (*parse)(struct imap_cp *cp, struct imap_cmd *cmd, const struct imap_arg *a);
};

/* The table entry for a command name (ASCII case-insensitive); with uid,
 * the sub-command of UID. NULL when unknown. */
const struct imap_cmd_def *imap_cmd_lookup(const char *name, size_t len, int uid);

/* ---- typed parsing ------------------------------------------------------------ */

/* Context of one typed parse: allocation and error reporting. */
struct imap_cp {
	struct imap_parser *p;
	const char *cmdname;
	uint64_t end_pos;	/* offset of the end of the command */
};

/* Fills p->cmd from the tree; 0, or -1 with p->err set. */
int imap_cmd_build(struct imap_parser *p);
/* Checks the APPEND arguments before its message literal is accepted;
 * 0 or -1 with p->err set. */
int imap_cmd_append_precheck(struct imap_parser *p);

void *imap_cp_alloc(struct imap_cp *cp, size_t n);
/* Records "CMD: message" at the position of at (NULL: end of command). */
int imap_cp_fail(struct imap_cp *cp, const struct imap_arg *at, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* An upper-cased arena copy. */
const char *imap_cp_upper(struct imap_cp *cp, const char *s);

/* Argument readers: *a is the cursor, advanced past what was read; what
 * names the argument in the error message. All return 0 or -1. */
int imap_get_astring(struct imap_cp *cp, const struct imap_arg **a, const char *what,
		     const char **s_r);
int imap_get_nstring(struct imap_cp *cp, const struct imap_arg **a, const char *what,
		     const char **s_r, size_t *len_r);
int imap_get_atom(struct imap_cp *cp, const struct imap_arg **a, const char *what,
		  const char **s_r);
int imap_get_number(struct imap_cp *cp, const struct imap_arg **a, const char *what,
		    uint64_t max, uint64_t *n_r);
int imap_get_list(struct imap_cp *cp, const struct imap_arg **a, const char *what,
		  const struct imap_arg **first_r);
int imap_get_seqset(struct imap_cp *cp, const struct imap_arg **a,
		    struct imap_seqset *set_r);
/* A flag list "(...)" (or, with bare_ok, flags up to the end); star_ok
 * allows \*. */
int imap_get_flags(struct imap_cp *cp, const struct imap_arg **a, int bare_ok,
		   struct imap_strlist *flags_r);
int imap_get_end(struct imap_cp *cp, const struct imap_arg *a);
/* A list of astrings into a strlist (empty allowed when empty_ok). */
int imap_get_strlist(struct imap_cp *cp, const struct imap_arg *first, const char *what,
		     int empty_ok, struct imap_strlist *list_r);

/* 1 when s is a valid flag: \Atom or a keyword atom (RFC 3501 flag). */
int imap_flag_valid(const char *s, size_t len, int star_ok);
/* Parses a sequence set ("1:*,5", "$") into arena memory; 0 or -1. */
int imap_seqset_parse(struct imap_arena *a, const char *s, size_t len,
		      struct imap_seqset *set_r);
/* 1 when s[0..len) equals word ignoring ASCII case. */
int imap_word_eq(const char *s, size_t len, const char *word);

/* Typed grammars (one per file family). */
int imap_parse_fetch(struct imap_cp *cp, struct imap_cmd *cmd, const struct imap_arg *a);
int imap_parse_store(struct imap_cp *cp, struct imap_cmd *cmd, const struct imap_arg *a);
int imap_parse_search(struct imap_cp *cp, struct imap_cmd *cmd, const struct imap_arg *a);
int imap_parse_sort(struct imap_cp *cp, struct imap_cmd *cmd, const struct imap_arg *a);
int imap_parse_thread(struct imap_cp *cp, struct imap_cmd *cmd, const struct imap_arg *a);
int imap_parse_list(struct imap_cp *cp, struct imap_cmd *cmd, const struct imap_arg *a);
int imap_parse_lsub(struct imap_cp *cp, struct imap_cmd *cmd, const struct imap_arg *a);
int imap_parse_status(struct imap_cp *cp, struct imap_cmd *cmd, const struct imap_arg *a);
int imap_parse_getquota(struct imap_cp *cp, struct imap_cmd *cmd, const struct imap_arg *a);
int imap_parse_setquota(struct imap_cp *cp, struct imap_cmd *cmd, const struct imap_arg *a);
int imap_parse_acl(struct imap_cp *cp, struct imap_cmd *cmd, const struct imap_arg *a);
int imap_parse_getmetadata(struct imap_cp *cp, struct imap_cmd *cmd, const struct imap_arg *a);
int imap_parse_setmetadata(struct imap_cp *cp, struct imap_cmd *cmd, const struct imap_arg *a);
int imap_parse_id(struct imap_cp *cp, struct imap_cmd *cmd, const struct imap_arg *a);
int imap_parse_enable(struct imap_cp *cp, struct imap_cmd *cmd, const struct imap_arg *a);

#endif
