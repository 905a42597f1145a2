/* mime_sort.c: what SORT and THREAD (RFC 5256) compare: the base subject
 * (2.1) and the first address of an address field (3: FROM, TO, CC the
 * addr-mailbox; RFC 5957 DISPLAYFROM, DISPLAYTO the display name, else
 * the address). Bytes in, bytes out: no I/O. */
#include "proto/mime/mime-private.h"

#include <string.h>
#include <strings.h>

static int is_wsp(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static int starts_ci(const char *s, size_t n, const char *w)
{
	size_t k = strlen(w);
	return n >= k && !strncasecmp(s, w, k);
}

/* subj-blob = "[" *BLOBCHAR "]" *WSP at s; its length, or 0. */
static size_t blob_len(const char *s, size_t n)
{
	if (n == 0 || s[0] != '[')
		return 0;
	size_t i = 1;
	while (i < n && s[i] != '[' && s[i] != ']')
		i++;
	if (i >= n || s[i] != ']')
		return 0;
	i++;
	while (i < n && s[i] == ' ')
		i++;
	return i;
}

/* subj-refwd = ("re" / ("fw" ["d"])) *WSP [subj-blob] ":" at s; its
 * length, or 0. */
static size_t refwd_len(const char *s, size_t n)
{
	size_t i;
	if (starts_ci(s, n, "re"))
		i = 2;
	else if (starts_ci(s, n, "fwd"))
		i = 3;
	else if (starts_ci(s, n, "fw"))
		i = 2;
	else
		return 0;
	while (i < n && s[i] == ' ')
		i++;
	i += blob_len(s + i, n - i);
	if (i < n && s[i] == ':')
		return i + 1;
	return 0;
}

/* subj-leader = (*subj-blob subj-refwd) / WSP at s; its length, or 0. */
static size_t leader_len(const char *s, size_t n)
{
	if (n && s[0] == ' ')
		return 1;
	size_t i = 0, b;
	while ((b = blob_len(s + i, n - i)) > 0)
		i += b;
	size_t r = refwd_len(s + i, n - i);
	return r ? i + r : 0;
}

int mime_base_subject(const char *subject, size_t len, struct buf *out)
{
	struct buf w = BUF_INIT;
	int reply = 0;
	/* (1) runs of white space to one space */
	for (size_t i = 0; i < len; i++) {
		if (is_wsp(subject[i])) {
			if (w.len == 0 || w.ptr[w.len - 1] != ' ')
				buf_putc(&w, ' ');
		} else {
			buf_putc(&w, subject[i]);
		}
	}
	const char *s = w.ptr ? w.ptr : "";
	size_t a = 0, e = w.len;
	for (;;) {
		/* (2) trailers: "(fwd)" and white space */
		for (;;) {
			if (e > a && s[e - 1] == ' ') {
				e--;
			} else if (e - a >= 5 && !strncasecmp(s + e - 5, "(fwd)", 5)) {
				e -= 5;
				reply = 1;
			} else {
				break;
			}
		}
		/* (3)-(5) leaders, and a blob when something follows it */
		for (;;) {
			size_t l = leader_len(s + a, e - a);
			if (l) {
				if (s[a] != ' ')
					reply = 1;
				a += l;
				continue;
			}
			size_t b = blob_len(s + a, e - a);
			if (b && a + b < e) {
				a += b;
				continue;
			}
			break;
		}
		/* (6) "[fwd:" ... "]" */
		if (e - a >= 6 && !strncasecmp(s + a, "[fwd:", 5) && s[e - 1] == ']') {
			a += 5;
			e -= 1;
			reply = 1;
			continue;
		}
		break;
	}
	buf_append(out, s + a, e - a);
	buf_free(&w);
	return reply;
}

int mime_sort_address(const struct mime_message *msg, const char *field, int display, struct buf *out)
{
	const struct mime_part *r = msg->root;
	size_t it = r->hdr_off;
	struct mime_field f;
	if (!mime_header_find(msg->data, r->hdr_off, r->hdr_len, field, &it, &f))
		return 0;
	struct buf v = BUF_INIT;
	mime_unfold(msg->data + f.value_off, f.value_len, &v);
	struct mime_addr *list = mime_addr_parse(buf_cstr(&v), v.len);
	const struct mime_addr *a = list;
	while (a && !a->host)
		a = a->next;	/* group starts and ends */
	int found = a != NULL;
	if (a && display && a->name && *a->name) {
		mime_decode_words(a->name, strlen(a->name), out);
	} else if (a && display) {
		buf_appends(out, a->mailbox ? a->mailbox : "");
		if (*a->host) {
			buf_putc(out, '@');
			buf_appends(out, a->host);
		}
	} else if (a) {
		buf_appends(out, a->mailbox ? a->mailbox : "");
	}
	mime_addr_free(list);
	buf_free(&v);
	return found;
}
