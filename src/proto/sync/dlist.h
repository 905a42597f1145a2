/* dlist.h: DLIST, the data format of the Cyrus replication protocol
 * (reference §3), and the framing of its command and response lines.
 *
 * Reading is two steps, neither doing I/O:
 *  1. dlist_frame_scan finds where one complete line ends (a command
 *     "APPLY MAILBOX %(...)" CRLF, a response "* MAILBOX %(...)" CRLF, or a
 *     plain line "OK success"), across any number of reads, stepping over
 *     {N}/{N+} literals and %{part guid size} file literals (whose bytes
 *     may contain anything) and over CR/LF between list items. It keeps
 *     its position, so the total work is linear in the input.
 *  2. dlist_parse turns the framed bytes into a tree, or reports an error
 *     with its byte position.
 * Literals never wait for a continuation, in either direction (§0).
 *
 * Values: NIL, strings (atom, quoted or literal on the wire: binary-safe),
 * flags (\Seen), lists, key/value lists, and file literals (a message:
 * partition, GUID, size, bytes). Numbers, dates, GUIDs are strings that
 * the typed getters interpret (§3.4).
 */
#ifndef TANDEM_DLIST_H
#define TANDEM_DLIST_H

#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"
#include "lib/err.h"

enum dlist_type { DL_NIL, DL_STR, DL_FLAG, DL_LIST, DL_KVLIST, DL_FILE };

struct dlist {
	enum dlist_type type;
	char *key;		/* name of this item inside a kvlist (or the top key) */
	struct buf s;		/* DL_STR / DL_FLAG bytes; DL_FILE: the message bytes */
	char *part;		/* DL_FILE: partition */
	char guid[41];		/* DL_FILE: claimed GUID, as sent (lower-cased) */
	struct dlist **items;	/* DL_LIST / DL_KVLIST */
	size_t n, cap;
	/* DL_FILE whose bytes are not in s (external): they were streamed
	 * elsewhere while the line was read (DLIST_FRAME_FILE), or, to print,
	 * they are the file at path and the writer sends them itself
	 * (dlist_print_refs). size is the literal's size either way. */
	int external;
	/* DL_FILE by reference: the file already open (dlist_add_file_fd),
	 * or -1. Printing with refs hands it to the ref (the dlist keeps the
	 * path: a second print opens that). Beside external: in its padding
	 * (every dlist node of every command stays 144 bytes). */
	int fd;
	uint64_t size;
	char *path;
};

/* ---- building ---------------------------------------------------------------- */

struct dlist *dlist_new(enum dlist_type type, const char *key);
void dlist_free(struct dlist **dl);
/* Adds a child (owned by parent from then on) and returns it. */
struct dlist *dlist_add(struct dlist *parent, struct dlist *child);
struct dlist *dlist_add_str(struct dlist *kv, const char *key, const char *value);
struct dlist *dlist_add_bytes(struct dlist *kv, const char *key, const void *value, size_t len);
struct dlist *dlist_add_nil(struct dlist *kv, const char *key);
struct dlist *dlist_add_num(struct dlist *kv, const char *key, uint64_t value);
struct dlist *dlist_add_hex64(struct dlist *kv, const char *key, uint64_t value);
struct dlist *dlist_add_flag(struct dlist *list, const char *flag);
struct dlist *dlist_add_list(struct dlist *kv, const char *key);
struct dlist *dlist_add_kvlist(struct dlist *kv, const char *key);
/* A file literal; the bytes are copied. */
struct dlist *dlist_add_file(struct dlist *list, const char *key, const char *part, const char *guid,
			     const void *data, size_t len);
/* A file literal whose bytes are the message file at path (size bytes,
 * not read here): printed by reference (dlist_print_refs). */
struct dlist *dlist_add_file_ref(struct dlist *list, const char *key, const char *part, const char *guid,
				 const char *path, uint64_t size);
/* The same with the file already open: fd (owned by the dlist from
 * then on, closed when freed) is what the writer reads. */
struct dlist *dlist_add_file_fd(struct dlist *list, const char *key, const char *part, const char *guid,
				const char *path, int fd, uint64_t size);

/* ---- reading --------------------------------------------------------------------- */

/* First item with this key in a kvlist, or NULL. */
const struct dlist *dlist_get(const struct dlist *kv, const char *key);
/* Typed getters (§3.4): 0 and the value, -1 if missing or invalid. */
int dlist_get_str(const struct dlist *kv, const char *key, const char **s_r);
int dlist_get_num64(const struct dlist *kv, const char *key, uint64_t *v_r);
int dlist_get_num32(const struct dlist *kv, const char *key, uint32_t *v_r);	/* truncated to 32 bits */
int dlist_get_hex64(const struct dlist *kv, const char *key, uint64_t *v_r);
int dlist_get_guid(const struct dlist *kv, const char *key, char guid_r[41]);
const struct dlist *dlist_get_list(const struct dlist *kv, const char *key);
const struct dlist *dlist_get_kvlist(const struct dlist *kv, const char *key);
/* The value of a string node as a C string (NULL for NIL or with a NUL). */
const char *dlist_cstr(const struct dlist *d);
int dlist_num64(const struct dlist *d, uint64_t *v_r);

/* ---- framing and parsing ----------------------------------------------------------- */

/* A file literal's header, as the frame scanner announces it. */
struct dlist_file_hdr {
	char part[65];
	char guid[41];		/* lower-cased */
	uint64_t size;
	int ok;			/* 0: the partition or GUID word is malformed */
};

struct dlist_frame {
	size_t pos;		/* bytes scanned so far (private; see DLIST_FRAME_FILE) */
	size_t tok_start;
	int depth;
	int ntokens;
	int need;		/* tokens before the line may end; -1 plain line */
	uint64_t skip;		/* literal bytes still to step over */
	int files;		/* set by the caller after dlist_frame_init: stream file literals */
	struct dlist_file_hdr file;	/* the file literal just announced */
	unsigned long nfiles;	/* file literals announced in this line */
};
void dlist_frame_init(struct dlist_frame *f);
/* A file literal's header was scanned (only when f->files is set):
 * f->file describes it, and its f->file.size bytes start at in[f->pos].
 * They are the caller's: it takes them out of its buffer (handing them to
 * its sink as they arrive, in as many reads as it takes), so that the
 * next call sees in[f->pos] as the byte that follows the literal. The
 * line keeps the header; dlist_parse_ext(DLIST_FILES_OUTSIDE) parses it
 * into an external DL_FILE. */
#define DLIST_FRAME_FILE (-2)
/* Scans in[0..len) (all bytes of the current line so far, the same
 * prefix every call). Returns the length of the complete line including
 * its LF, 0 when more input is needed, DLIST_FRAME_FILE (above), -1 on an
 * error (a literal or line over its limit) with *err. */
long long dlist_frame_scan(struct dlist_frame *f, const char *in, size_t len, struct terr *err);

/* Parses a framed line: a sequence of values at the top level (the verb
 * words and the keyed value) as a DL_LIST whose items are the top-level
 * values in order. Errors give the byte position in err->msg. */
int dlist_parse(const char *in, size_t len, struct dlist **list_r, struct terr *err);
/* The same; with DLIST_FILES_OUTSIDE a file literal's header is not
 * followed by its bytes (they were streamed: DLIST_FRAME_FILE) and gives
 * an external DL_FILE with its size. */
#define DLIST_FILES_OUTSIDE 1
int dlist_parse_ext(const char *in, size_t len, unsigned flags, struct dlist **list_r, struct terr *err);
/* Calls fn for every DL_FILE in d, in the order they were written. */
void dlist_each_file(struct dlist *d, void (*fn)(void *rock, struct dlist *file), void *rock);
/* Parses one "<key> <value>" pair from the top-level values starting at
 * index i of a parsed line: returns the value with its key set, moved
 * out of the line (NULL if there are fewer than two values or the key is
 * not a string). */
struct dlist *dlist_take_keyed(struct dlist *line, size_t i);
/* A new KVLIST with key that takes over kv's items (kv is left empty):
 * keeps a data line's value beyond the callback that received it. */
struct dlist *dlist_take_items(struct dlist *kv, const char *key);

/* ---- writing ------------------------------------------------------------------------- */

enum dlist_literal { DLIST_LIT_CLIENT /* {N+} */, DLIST_LIT_SERVER /* {N} */ };
/* Writes "<key> <value>" (the key of d, if any, then a space) following
 * Cyrus's serialisation rules (§3.3). */
void dlist_print(struct buf *out, const struct dlist *d, enum dlist_literal lit);
/* Writes one value only (no key). */
void dlist_print_value(struct buf *out, const struct dlist *d, enum dlist_literal lit);
/* Where the bytes of a by-reference file literal (dlist_add_file_ref) go
 * in a printed command: right after out[at] (its header ends there). */
struct dlist_ref {
	size_t at;
	char *path;		/* copies (the dlist may be freed before the send) */
	int fd;			/* the file open (taken from the dlist), or -1: open path */
	struct dlist_file_hdr hdr;	/* partition, GUID, size */
};
struct dlist_refs {
	struct dlist_ref *v;
	size_t n, cap;
};
/* dlist_print that leaves the bytes of by-reference file literals out
 * and lists where they go (appended to refs; offsets into out). Without
 * refs (plain dlist_print) such a literal's file is read into out. */
void dlist_print_refs(struct buf *out, const struct dlist *d, enum dlist_literal lit, struct dlist_refs *refs);
/* Empties refs (its memory is kept; the fds it holds are closed). */
void dlist_refs_reset(struct dlist_refs *refs);
void dlist_refs_free(struct dlist_refs *refs);

#endif
