/* mime_parse.c: builds the MIME part tree of a message held in memory.
 *
 * Each entity (the message, a body part, an enclosed message) is a region
 * [start, end) of the message: its header runs to the first empty line
 * (included) or to the end of the region, the rest is its body. A
 * multipart body is split at its own delimiter lines only ("--boundary"
 * at a line start, then blanks to the line end; "--boundary--" closes);
 * the line end before a delimiter belongs to the delimiter (RFC 2046
 * 5.1.1). A missing close delimiter ends the last part at the region end,
 * which is where an enclosing delimiter was found: so a truncated inner
 * multipart stops at its parent's next boundary. message/rfc822 bodies are
 * parsed as messages. Containers deeper than MIME_MAX_DEPTH, or found once
 * MIME_MAX_PARTS parts exist, become application/octet-stream leaves.
 */
#include "proto/mime/mime-private.h"

#include "lib/xalloc.h"

#include <string.h>

struct parse_ctx {
	const char *data;
	size_t nparts;
};

static struct mime_part *part_new(struct parse_ctx *ctx, unsigned depth)
{
	struct mime_part *p = xcalloc(1, sizeof(*p));
	p->depth = depth;
	ctx->nparts++;
	return p;
}

static size_t count_lines(const char *s, size_t len)
{
	size_t n = 0, i = 0;
	while (i < len) {
		const char *nl = memchr(s + i, '\n', len - i);
		if (!nl)
			return n + 1;	/* a last line without its end */
		n++;
		i = (size_t)(nl - s) + 1;
	}
	return n;
}

static void set_type(struct mime_part *p, const char *type, const char *subtype)
{
	free(p->type);
	free(p->subtype);
	p->type = xstrdup(type);
	p->subtype = xstrdup(subtype);
}

/* A container we will not open: served as opaque bytes. */
static void downgrade(struct mime_part *p)
{
	set_type(p, "application", "octet-stream");
	mime_params_free(p->params);
	p->params = NULL;
}

static void parse_entity(struct parse_ctx *ctx, struct mime_part *part,
			 size_t start, size_t end, int digest_child);

/* Is the line data[p, le) a delimiter of boundary b? Returns 0 no,
 * 1 delimiter, 2 close delimiter. */
static int delimiter(const char *data, size_t p, size_t le, const char *b,
		     size_t blen)
{
	if (le - p < 2 + blen || data[p] != '-' || data[p + 1] != '-' ||
	    memcmp(data + p + 2, b, blen) != 0)
		return 0;
	size_t q = p + 2 + blen;
	if (le - q >= 2 && data[q] == '-' && data[q + 1] == '-')
		return 2;
	for (; q < le; q++)
		if (data[q] != ' ' && data[q] != '\t' && data[q] != '\r')
			return 0;
	return 1;
}

static void add_child(struct parse_ctx *ctx, struct mime_part *parent,
		      struct mime_part ***tail, size_t start, size_t end,
		      int digest)
{
	struct mime_part *c = part_new(ctx, parent->depth + 1);
	**tail = c;
	*tail = &c->next;
	parse_entity(ctx, c, start, end, digest);
}

static void parse_multipart(struct parse_ctx *ctx, struct mime_part *part,
			    const char *b, size_t blen)
{
	const char *d = ctx->data;
	size_t p = part->body_off, end = part->body_off + part->body_len;
	size_t cur = 0;
	int open = 0, digest = strcmp(part->subtype, "digest") == 0;
	struct mime_part **tail = &part->children;

	while (p < end) {
		const char *nl = memchr(d + p, '\n', end - p);
		size_t le = nl ? (size_t)(nl - d) : end;
		size_t next = nl ? le + 1 : end;
		int kind = d[p] == '-' ? delimiter(d, p, le, b, blen) : 0;
		if (kind) {
			if (open) {
				/* the line end before the delimiter is its own */
				size_t e = p;
				if (e > cur && d[e - 1] == '\n')
					e--;
				if (e > cur && d[e - 1] == '\r')
					e--;
				add_child(ctx, part, &tail, cur, e, digest);
				open = 0;
			}
			if (kind == 2 || ctx->nparts >= MIME_MAX_PARTS)
				break;	/* the rest is the epilogue */
			cur = next;
			open = 1;
		}
		p = next;
	}
	if (open)		/* no close delimiter: truncated */
		add_child(ctx, part, &tail, cur, end, digest);
	if (!part->children)	/* no delimiter at all: one empty part */
		add_child(ctx, part, &tail, end, end, digest);
}

static char *value_of(const char *data, const struct mime_field *f)
{
	return mime_field_value(data, f);
}

static void parse_entity(struct parse_ctx *ctx, struct mime_part *part,
			 size_t start, size_t end, int digest_child)
{
	const char *d = ctx->data;
	struct mime_field f, ct = { 0 }, cte = { 0 }, cd = { 0 }, cl = { 0 };
	int have_ct = 0, have_cte = 0, have_cd = 0, have_cl = 0;
	size_t pos = start;

	while (mime_header_next(d, end, &pos, 1, &f) == 1) {
		if (f.too_long || f.name_len < 8 ||
		    !mime_eq_nocase(d + f.off, 8, "content-"))
			continue;
		if (!have_ct && mime_field_is(d, &f, "content-type")) {
			ct = f;
			have_ct = 1;
		} else if (!have_cte &&
			   mime_field_is(d, &f, "content-transfer-encoding")) {
			cte = f;
			have_cte = 1;
		} else if (!have_cd && mime_field_is(d, &f, "content-disposition")) {
			cd = f;
			have_cd = 1;
		} else if (!have_cl && mime_field_is(d, &f, "content-language")) {
			cl = f;
			have_cl = 1;
		} else if (!part->id && mime_field_is(d, &f, "content-id")) {
			part->id = value_of(d, &f);
		} else if (!part->description &&
			   mime_field_is(d, &f, "content-description")) {
			part->description = value_of(d, &f);
		} else if (!part->location &&
			   mime_field_is(d, &f, "content-location")) {
			part->location = value_of(d, &f);
		} else if (!part->md5 && mime_field_is(d, &f, "content-md5")) {
			part->md5 = value_of(d, &f);
		}
	}
	part->hdr_off = start;
	part->hdr_len = pos - start;
	part->body_off = pos;
	part->body_len = end - pos;
	part->lines = count_lines(d + pos, end - pos);

	struct buf v = BUF_INIT;
	if (have_ct) {
		mime_unfold(d + ct.value_off, ct.value_len, &v);
		if (mime_ctype_parse(buf_cstr(&v), v.len, &part->type,
				     &part->subtype, &part->params) < 0)
			part->type = part->subtype = NULL;
	}
	if (!part->type) {
		/* RFC 2045 5.2; RFC 2046 5.1.5 for digest parts */
		if (digest_child && !have_ct) {
			set_type(part, "message", "rfc822");
		} else {
			set_type(part, "text", "plain");
			part->params = xcalloc(1, sizeof(*part->params));
			part->params->name = xstrdup("charset");
			part->params->value = xstrdup("us-ascii");
		}
	}
	if (have_cte) {
		buf_reset(&v);
		mime_unfold(d + cte.value_off, cte.value_len, &v);
		part->encoding = mime_token_parse(buf_cstr(&v), v.len);
	}
	if (have_cd) {
		buf_reset(&v);
		mime_unfold(d + cd.value_off, cd.value_len, &v);
		if (mime_ctype_parse(buf_cstr(&v), v.len, &part->disposition, NULL,
				     &part->disp_params) < 0)
			part->disposition = NULL;
	}
	if (have_cl) {
		buf_reset(&v);
		mime_unfold(d + cl.value_off, cl.value_len, &v);
		mime_lang_parse(buf_cstr(&v), v.len, &part->languages,
				&part->nlanguages);
	}

	int container = strcmp(part->type, "multipart") == 0 ||
		(strcmp(part->type, "message") == 0 &&
		 strcmp(part->subtype, "rfc822") == 0);
	if (container && (part->depth >= MIME_MAX_DEPTH ||
			  ctx->nparts >= MIME_MAX_PARTS)) {
		downgrade(part);
	} else if (strcmp(part->type, "multipart") == 0) {
		buf_reset(&v);
		if (mime_param_get(part->params, "boundary", &v) && v.len > 0 &&
		    !memchr(v.ptr, '\n', v.len))
			parse_multipart(ctx, part, v.ptr, v.len);
		else
			downgrade(part);	/* no boundary: cannot be split */
	} else if (container) {
		part->message = part_new(ctx, part->depth + 1);
		parse_entity(ctx, part->message, part->body_off, end, 0);
	}
	buf_free(&v);
}

struct mime_message *mime_parse(const char *data, size_t len)
{
	struct mime_message *msg = xcalloc(1, sizeof(*msg));
	struct parse_ctx ctx = { data ? data : "", 0 };
	msg->data = ctx.data;
	msg->len = data ? len : 0;
	msg->root = part_new(&ctx, 0);
	parse_entity(&ctx, msg->root, 0, msg->len, 0);
	msg->nparts = ctx.nparts;
	return msg;
}

static void part_free(struct mime_part *p)
{
	while (p) {
		struct mime_part *next = p->next;
		part_free(p->children);
		part_free(p->message);
		free(p->type);
		free(p->subtype);
		mime_params_free(p->params);
		free(p->id);
		free(p->description);
		free(p->location);
		free(p->md5);
		free(p->encoding);
		free(p->disposition);
		mime_params_free(p->disp_params);
		for (size_t i = 0; i < p->nlanguages; i++)
			free(p->languages[i]);
		free(p->languages);
		free(p);
		p = next;
	}
}

void mime_message_free(struct mime_message **msg)
{
	if (!*msg)
		return;
	part_free((*msg)->root);
	x_free(msg);
}
