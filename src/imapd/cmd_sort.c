/* cmd_sort.c: SORT (RFC 5256 3; RETURN options: ESORT, RFC 5267;
 * DISPLAYFROM and DISPLAYTO: RFC 5957) and THREAD (RFC 5256 4:
 * ORDEREDSUBJECT and REFERENCES), with UID forms.
 *
 * The messages are those SEARCH finds (imapd_search_run). What the
 * criteria compare is gathered once per message into an item: a message
 * is read and parsed only when a criterion needs its header (every one
 * but ARRIVAL and SIZE, and both algorithms), like SEARCH's header keys.
 * Strings compare as i;ascii-casemap (ASCII upper-cased, then bytes);
 * the last tie-breaker is the sequence number. The sent date is the
 * Date: field in UTC, else the internal date.
 *
 * REFERENCES follows RFC 5256 4 step by step (the "JWZ" algorithm):
 * containers by Message-ID linked by References (or the first
 * In-Reply-To), loops refused, dummies pruned, roots gathered by base
 * subject, siblings sorted by sent date.
 */
#include "imapd/imapd-private.h"

#include "lib/limits.h"
#include "lib/xalloc.h"
#include "proto/mime/mime.h"
#include "store/store.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum { S_FROM, S_TO, S_CC, S_SUBJECT, S_DFROM, S_DTO, N_STR };

struct sitem {
	size_t idx;		/* into the view's msgs */
	uint32_t num;		/* sequence number or UID, as answered */
	uint32_t seq;
	int64_t date;		/* sent date (UTC), else the internal date */
	int64_t arrival;
	uint32_t size;
	char *str[N_STR];	/* upper-cased; never NULL once gathered */
	int reply;		/* the base subject lost a Re:/Fwd: */
	char *msgid;		/* "<...>", NULL if none */
	char **refs;		/* References (or In-Reply-To's first), in order */
	size_t nrefs;
};

/* Latin-1 letters (U+00C0-U+00FF) by their base letters, upper-case, so
 * "Emile" and "\u00c9mile" sort together, as Cyrus sorts them; NULL:
 * kept as it is. */
static const char *const latin1_base[64] = {
	"A", "A", "A", "A", "A", "A", "AE", "C", "E", "E", "E", "E", "I", "I", "I", "I",
	"D", "N", "O", "O", "O", "O", "O", NULL, "O", "U", "U", "U", "U", "Y", NULL, "SS",
	"A", "A", "A", "A", "A", "A", "AE", "C", "E", "E", "E", "E", "I", "I", "I", "I",
	"D", "N", "O", "O", "O", "O", "O", NULL, "O", "U", "U", "U", "U", "Y", NULL, "Y",
};

/* The sort key of a string: ASCII upper-cased (i;ascii-casemap), Latin-1
 * letters as their base letters. */
static char *take_upper(struct buf *b)
{
	struct buf k = BUF_INIT;
	for (size_t i = 0; i < b->len; i++) {
		unsigned char c = (unsigned char)b->ptr[i];
		if (c == 0xC3 && i + 1 < b->len && ((unsigned char)b->ptr[i + 1] & 0xC0) == 0x80 &&
		    latin1_base[(unsigned char)b->ptr[i + 1] & 0x3F]) {
			buf_appends(&k, latin1_base[(unsigned char)b->ptr[++i] & 0x3F]);
			continue;
		}
		buf_putc(&k, (char)(c >= 'a' && c <= 'z' ? c - 32 : c));
	}
	buf_free(b);
	char *r = buf_release(&k);
	return r ? r : xstrdup("");
}

/* Appends the "<...>" message ids of a field value, in order, keeping
 * the last max of them (the nearest ancestors). */
static void add_ids(const char *v, char ***ids, size_t *n, size_t max)
{
	for (const char *p = v; (p = strchr(p, '<')) != NULL;) {
		const char *e = strchr(p, '>');
		if (!e)
			break;
		int ok = e > p + 1;
		for (const char *q = p + 1; q < e; q++)
			if (*q == '<' || *q == ' ')
				ok = 0;
		if (ok) {
			if (*n == max) {
				free((*ids)[0]);
				memmove(*ids, *ids + 1, (max - 1) * sizeof **ids);
				(*n)--;
			}
			*ids = xrealloc(*ids, (*n + 1) * sizeof **ids);
			(*ids)[(*n)++] = xstrndup(p, (size_t)(e - p + 1));
		}
		p = e + 1;
	}
}

/* Fills what the criteria (or a thread algorithm) need of one message. */
static void gather(struct imapd_session *s, struct sitem *it, int need_header, int threads, size_t *failed)
{
	const struct imapd_msg *m = &s->sel->msgs[it->idx];
	it->arrival = m->internaldate;
	it->date = m->internaldate;
	it->size = m->size;
	struct buf b = BUF_INIT;
	const struct mime_message *mm = NULL;
	if (need_header) {
		if (!(mm = imapd_load_header(s, s->sel->name, m)))
			(*failed)++;
	}
	static const char *const fields[N_STR] = { "From", "To", "Cc", "Subject", "From", "To" };
	for (int k = 0; k < N_STR; k++) {
		buf_reset(&b);
		if (mm && k == S_SUBJECT) {
			struct buf raw = BUF_INIT;
			mime_header_value(mm, "Subject", &raw);
			it->reply = mime_base_subject(raw.ptr ? raw.ptr : "", raw.len, &b);
			buf_free(&raw);
		} else if (mm) {
			mime_sort_address(mm, fields[k], k == S_DFROM || k == S_DTO, &b);
		}
		it->str[k] = take_upper(&b);
	}
	if (mm) {
		time_t t;
		int tz;
		if (mime_message_date(mm, &t, &tz) == 0)
			it->date = (int64_t)t;
	}
	if (mm && threads) {
		char **ids = NULL;
		size_t n = 0;
		buf_reset(&b);
		if (mime_header_value(mm, "Message-ID", &b))
			add_ids(buf_cstr(&b), &ids, &n, 1);	/* the last one given */
		if (n)
			it->msgid = ids[0];
		free(ids);
		buf_reset(&b);
		if (mime_header_value(mm, "References", &b))
			add_ids(buf_cstr(&b), &it->refs, &it->nrefs, IMAP_MAX_THREAD_REFS);
		buf_reset(&b);
		if (!it->nrefs && mime_header_value(mm, "In-Reply-To", &b)) {
			char **irt = NULL;
			size_t k = 0;
			add_ids(buf_cstr(&b), &irt, &k, IMAP_MAX_THREAD_REFS);
			if (k) {	/* the first one (RFC 5256 4, step 1) */
				it->refs = xmalloc(sizeof *it->refs);
				it->refs[0] = irt[0];
				it->nrefs = 1;
			}
			for (size_t i = 1; i < k; i++)
				free(irt[i]);
			free(irt);
		}
	}
	buf_free(&b);
}

static void items_free(struct sitem *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		for (int k = 0; k < N_STR; k++)
			free(v[i].str[k]);
		free(v[i].msgid);
		for (size_t r = 0; r < v[i].nrefs; r++)
			free(v[i].refs[r]);
		free(v[i].refs);
	}
	free(v);
}

/* The matching messages as items; NULL (and a reply set) on failure. */
static struct sitem *collect(struct imapd_session *s, const struct imap_cmd *cmd, int need_header, int threads,
			     size_t *n_r, size_t *failed)
{
	const struct imap_search *q = &cmd->u.search;
	if (q->charset && strcasecmp(q->charset, "UTF-8") && strcasecmp(q->charset, "US-ASCII")) {
		imapd_no(s, "BADCHARSET (UTF-8 US-ASCII)", "Unsupported charset");
		return NULL;
	}
	size_t *idx;
	long cnt = imapd_search_run(s, q, &idx, failed);
	if (cnt < 0)
		return NULL;
	struct sitem *v = xcalloc(cnt ? (size_t)cnt : 1, sizeof *v);
	int begun = 0;	/* the headers' cache rows in one read transaction */
	struct terr err = { 0 };
	if (need_header && store_cache_read_begin(s->st, s->sel->name, &begun, &err) < 0)
		begun = 0;
	for (size_t i = 0; i < (size_t)cnt; i++) {
		v[i].idx = idx[i];
		v[i].seq = (uint32_t)(idx[i] + 1);
		v[i].num = cmd->uid ? s->sel->msgs[idx[i]].uid : v[i].seq;
		gather(s, &v[i], need_header, threads, failed);
	}
	store_cache_read_end(s->st, s->sel->name, begun);
	free(idx);
	*n_r = (size_t)cnt;
	return v;
}

/* ---- SORT ------------------------------------------------------------------ */

static int cmp_i64(int64_t a, int64_t b)
{
	return a < b ? -1 : a > b;
}

static int cmp_items(const void *pa, const void *pb, void *rock)
{
	const struct sitem *a = pa, *b = pb;
	const struct imap_search *q = rock;
	for (size_t i = 0; i < q->nsort; i++) {
		int c = 0;
		switch (q->sort[i].key) {
		case IMAP_SORT_ARRIVAL:
			c = cmp_i64(a->arrival, b->arrival);
			break;
		case IMAP_SORT_DATE:
			c = cmp_i64(a->date, b->date);
			break;
		case IMAP_SORT_SIZE:
			c = cmp_i64(a->size, b->size);
			break;
		case IMAP_SORT_CC:
			c = strcmp(a->str[S_CC], b->str[S_CC]);
			break;
		case IMAP_SORT_FROM:
			c = strcmp(a->str[S_FROM], b->str[S_FROM]);
			break;
		case IMAP_SORT_TO:
			c = strcmp(a->str[S_TO], b->str[S_TO]);
			break;
		case IMAP_SORT_SUBJECT:
			c = strcmp(a->str[S_SUBJECT], b->str[S_SUBJECT]);
			break;
		case IMAP_SORT_DISPLAYFROM:
			c = strcmp(a->str[S_DFROM], b->str[S_DFROM]);
			break;
		case IMAP_SORT_DISPLAYTO:
			c = strcmp(a->str[S_DTO], b->str[S_DTO]);
			break;
		}
		if (c)
			return q->sort[i].reverse ? -c : c;
	}
	return cmp_i64(a->seq, b->seq);
}

static void fail_note(struct imapd_session *s, size_t failed)
{
	if (failed)
		imapd_no(s, "SERVERBUG", "%zu message(s) could not be read", failed);
}

int imapd_cmd_sort(struct imapd_session *s, const struct imap_cmd *cmd)
{
	const struct imap_search *q = &cmd->u.search;
	int ret = 0;
	if (q->has_return && (ret = imapd_search_return_opts(s, q)) < 0)
		return 0;
	int need_header = 0;
	for (size_t i = 0; i < q->nsort; i++)
		need_header |= q->sort[i].key != IMAP_SORT_ARRIVAL && q->sort[i].key != IMAP_SORT_SIZE;
	size_t n = 0, failed = 0;
	struct sitem *v = collect(s, cmd, need_header, 0, &n, &failed);
	if (!v)
		return 0;
	qsort_r(v, n, sizeof *v, cmp_items, (void *)q);
	int modseq = imap_search_uses_modseq(q->root);
	const struct imapd_msg *msgs = s->sel->msgs;
	uint64_t top = 0;
	uint32_t *nums = xmalloc((n ? n : 1) * sizeof *nums);
	for (size_t i = 0; i < n; i++) {
		nums[i] = v[i].num;
		if (msgs[v[i].idx].modseq > top)
			top = msgs[v[i].idx].modseq;
	}
	struct buf b = BUF_INIT;
	if (q->has_return) {
		imapd_write_esearch(&b, cmd->tag, cmd->uid, (unsigned)ret, nums, n, modseq, top,
				    n ? msgs[v[0].idx].modseq : 0, n ? msgs[v[n - 1].idx].modseq : 0);
	} else {
		buf_appends(&b, "* SORT");
		for (size_t i = 0; i < n; i++)
			buf_printf(&b, " %u", nums[i]);
		if (modseq && n)
			buf_printf(&b, " (MODSEQ %llu)", (unsigned long long)top);
		buf_appends(&b, "\r\n");
	}
	buf_append(&s->out, b.ptr, b.len);
	imapd_maybe_flush(s);
	buf_free(&b);
	free(nums);
	items_free(v, n);
	fail_note(s, failed);
	return 0;
}

/* ---- THREAD: the tree ----------------------------------------------------- */

#define NONE ((size_t)-1)

struct cont {
	const char *id;		/* NULL for a dummy made by subject grouping */
	struct sitem *msg;	/* NULL: a dummy */
	size_t parent, child, next;
};

struct forest {
	struct cont *c;
	size_t n, cap;
	size_t *hash;		/* open addressing: container index or NONE */
	size_t hcap;
};

static size_t cont_new(struct forest *f, const char *id)
{
	if (f->n == f->cap) {
		f->cap = f->cap ? 2 * f->cap : 64;
		f->c = xrealloc(f->c, f->cap * sizeof *f->c);
	}
	f->c[f->n] = (struct cont){ id, NULL, NONE, NONE, NONE };
	return f->n++;
}

static size_t hash_str(const char *s)
{
	size_t h = 1469598103934665603ULL & (size_t)-1;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * (size_t)1099511628211ULL;
	return h;
}

/* The container of a message id, made when missing. */
static size_t cont_get(struct forest *f, const char *id)
{
	size_t h = hash_str(id) % f->hcap;
	while (f->hash[h] != NONE) {
		if (!strcmp(f->c[f->hash[h]].id, id))
			return f->hash[h];
		h = (h + 1) % f->hcap;
	}
	size_t c = cont_new(f, id);
	f->hash[h] = c;
	return c;
}

/* 1 when a is c or below c. */
static int is_under(const struct forest *f, size_t a, size_t c)
{
	for (; a != NONE; a = f->c[a].parent)
		if (a == c)
			return 1;
	return 0;
}

static void unlink_cont(struct forest *f, size_t c)
{
	size_t p = f->c[c].parent;
	if (p == NONE)
		return;
	for (size_t *pp = &f->c[p].child; *pp != NONE; pp = &f->c[*pp].next)
		if (*pp == c) {
			*pp = f->c[c].next;
			break;
		}
	f->c[c].parent = NONE;
	f->c[c].next = NONE;
}

static void link_cont(struct forest *f, size_t p, size_t c)
{
	f->c[c].parent = p;
	f->c[c].next = f->c[p].child;
	f->c[p].child = c;
}

/* The message a container is sorted and grouped by: its own, else its
 * first child's (children sorted first). */
static const struct sitem *first_msg(const struct forest *f, size_t c)
{
	while (c != NONE && !f->c[c].msg)
		c = f->c[c].child;
	return c == NONE ? NULL : f->c[c].msg;
}

static int cmp_cont(const struct forest *f, size_t a, size_t b)
{
	const struct sitem *x = first_msg(f, a), *y = first_msg(f, b);
	if (!x || !y)
		return (x != NULL) - (y != NULL);
	int c = cmp_i64(x->date, y->date);
	return c ? c : cmp_i64(x->seq, y->seq);
}

static int cmp_cont_r(const void *a, const void *b, void *rock)
{
	return cmp_cont(rock, *(const size_t *)a, *(const size_t *)b);
}

/* Sorts a sibling list by sent date (then sequence number). */
static size_t sort_list(struct forest *f, size_t head)
{
	size_t n = 0;
	for (size_t c = head; c != NONE; c = f->c[c].next)
		n++;
	if (n < 2)
		return head;
	size_t *v = xmalloc(n * sizeof *v), k = 0;
	for (size_t c = head; c != NONE; c = f->c[c].next)
		v[k++] = c;
	qsort_r(v, n, sizeof *v, cmp_cont_r, f);
	for (size_t i = 0; i + 1 < n; i++)
		f->c[v[i]].next = v[i + 1];
	f->c[v[n - 1]].next = NONE;
	head = v[0];
	free(v);
	return head;
}

/* Sorts every set of siblings below each of a list, deepest first. */
static void sort_below(struct forest *f, size_t head)
{
	for (size_t c = head; c != NONE; c = f->c[c].next) {
		sort_below(f, f->c[c].child);
		f->c[c].child = sort_list(f, f->c[c].child);
	}
}

static void write_tree(const struct forest *f, size_t c, struct buf *out)
{
	const struct cont *x = &f->c[c];
	size_t kids = 0;
	for (size_t k = x->child; k != NONE; k = f->c[k].next)
		kids++;
	if (x->msg)
		buf_printf(out, "%u", x->msg->num);
	if (kids == 1 && x->msg) {
		buf_putc(out, ' ');
		write_tree(f, x->child, out);
		return;
	}
	if (kids && x->msg)
		buf_putc(out, ' ');
	for (size_t k = x->child; k != NONE; k = f->c[k].next) {
		buf_putc(out, '(');
		write_tree(f, k, out);
		buf_putc(out, ')');
	}
}

static void write_threads(struct imapd_session *s, const struct forest *f, size_t roots)
{
	struct buf b = BUF_INIT;
	buf_appends(&b, "* THREAD ");
	for (size_t c = roots; c != NONE; c = f->c[c].next) {
		buf_putc(&b, '(');
		write_tree(f, c, &b);
		buf_putc(&b, ')');
	}
	buf_appends(&b, "\r\n");
	buf_append(&s->out, b.ptr, b.len);
	imapd_maybe_flush(s);
	buf_free(&b);
}

/* ---- THREAD=ORDEREDSUBJECT (RFC 5256 4) -------------------------------------- */

static int cmp_subject_date(const void *pa, const void *pb)
{
	const struct sitem *a = *(const struct sitem *const *)pa, *b = *(const struct sitem *const *)pb;
	int c = strcmp(a->str[S_SUBJECT], b->str[S_SUBJECT]);
	if (!c)
		c = cmp_i64(a->date, b->date);
	return c ? c : cmp_i64(a->seq, b->seq);
}

static size_t ordered_subject(struct forest *f, struct sitem *v, size_t n)
{
	struct sitem **p = xmalloc((n ? n : 1) * sizeof *p);
	for (size_t i = 0; i < n; i++)
		p[i] = &v[i];
	qsort(p, n, sizeof *p, cmp_subject_date);
	size_t roots = NONE;
	for (size_t i = 0; i < n;) {
		size_t r = cont_new(f, NULL);
		f->c[r].msg = p[i];
		size_t j = i + 1;
		for (; j < n && !strcmp(p[j]->str[S_SUBJECT], p[i]->str[S_SUBJECT]); j++) {
			size_t k = cont_new(f, NULL);
			f->c[k].msg = p[j];
			link_cont(f, r, k);
		}
		f->c[r].next = roots;
		roots = r;
		i = j;
	}
	free(p);
	sort_below(f, roots);
	return sort_list(f, roots);
}

/* ---- THREAD=REFERENCES (RFC 5256 4) -------------------------------------------- */

/* The slot of a base subject in the subject table's index (open
 * addressing over entries of table): holds its entry, or NONE where it
 * would go. */
static size_t *subj_slot(const struct forest *f, const size_t *table, size_t *slots, size_t cap, const char *subj)
{
	size_t h = hash_str(subj) % cap;
	while (slots[h] != NONE && strcmp(first_msg(f, table[slots[h]])->str[S_SUBJECT], subj) != 0)
		h = (h + 1) % cap;
	return &slots[h];
}

/* Step 4 (pruning): empty dummies go; a dummy's children take its place,
 * except at the top when there are several. */
static size_t prune(struct forest *f, size_t head, int top)
{
	size_t out = NONE, *tail = &out;
	while (head != NONE) {
		size_t c = head;
		head = f->c[c].next;
		f->c[c].next = NONE;
		f->c[c].child = prune(f, f->c[c].child, 0);
		if (f->c[c].msg || f->c[c].child == NONE) {
			if (!f->c[c].msg)
				continue;	/* a dummy without children */
		} else {
			size_t nk = 0;
			for (size_t k = f->c[c].child; k != NONE; k = f->c[k].next)
				nk++;
			if (!(top && nk > 1)) {
				/* promote the children to this level */
				size_t k = f->c[c].child;
				f->c[c].child = NONE;
				for (size_t x = k; x != NONE; x = f->c[x].next)
					f->c[x].parent = top ? NONE : f->c[c].parent;
				*tail = k;
				while (*tail != NONE)
					tail = &f->c[*tail].next;
				continue;
			}
		}
		*tail = c;
		tail = &f->c[c].next;
	}
	return out;
}

static size_t references(struct forest *f, struct sitem *v, size_t n)
{
	size_t ids = 0;
	for (size_t i = 0; i < n; i++)
		ids += 1 + v[i].nrefs;
	f->hcap = 2 * ids + 1;
	f->hash = xmalloc(f->hcap * sizeof *f->hash);
	for (size_t i = 0; i < f->hcap; i++)
		f->hash[i] = NONE;
	/* step 1: containers and links */
	for (size_t i = 0; i < n; i++) {
		struct sitem *it = &v[i];
		size_t mc = it->msgid ? cont_get(f, it->msgid) : NONE;
		if (mc == NONE || f->c[mc].msg)
			mc = cont_new(f, NULL);	/* no id, or a duplicate: unique */
		f->c[mc].msg = it;
		size_t prev = NONE;
		for (size_t r = 0; r < it->nrefs; r++) {
			size_t rc = cont_get(f, it->refs[r]);
			if (prev != NONE && f->c[rc].parent == NONE && !is_under(f, prev, rc))
				link_cont(f, prev, rc);
			prev = rc;
		}
		if (prev != NONE && !is_under(f, prev, mc)) {
			unlink_cont(f, mc);
			link_cont(f, prev, mc);
		}
	}
	/* step 2: the root set */
	size_t roots = NONE;
	for (size_t c = f->n; c-- > 0;)
		if (f->c[c].parent == NONE) {
			f->c[c].next = roots;
			roots = c;
		}
	/* steps 3-4: prune, then sort so grouping meets the oldest first */
	roots = prune(f, roots, 1);
	sort_below(f, roots);
	roots = sort_list(f, roots);
	/* step 5: gather the roots by base subject */
	size_t nroots = 0;
	for (size_t c = roots; c != NONE; c = f->c[c].next)
		nroots++;
	size_t *table = xmalloc((nroots ? nroots : 1) * sizeof *table), ntable = 0;
	size_t scap = 2 * nroots + 1, *slots = xmalloc(scap * sizeof *slots);
	for (size_t i = 0; i < scap; i++)
		slots[i] = NONE;
	for (size_t c = roots; c != NONE; c = f->c[c].next) {
		const struct sitem *m = first_msg(f, c);
		if (!m || !*m->str[S_SUBJECT])
			continue;
		size_t *slot = subj_slot(f, table, slots, scap, m->str[S_SUBJECT]);
		if (*slot == NONE) {
			*slot = ntable;
			table[ntable++] = c;
			continue;
		}
		size_t t = *slot;
		const struct cont *old = &f->c[table[t]];
		if ((old->msg && !f->c[c].msg) || (old->msg && old->msg->reply && f->c[c].msg && !m->reply))
			table[t] = c;
	}
	size_t prev = NONE;	/* the root before c (NONE: c is the first) */
	for (size_t c = roots; c != NONE;) {
		size_t next = f->c[c].next;
		const struct sitem *m = first_msg(f, c);
		size_t t = ntable;
		if (m && *m->str[S_SUBJECT]) {
			size_t *slot = subj_slot(f, table, slots, scap, m->str[S_SUBJECT]);
			t = *slot == NONE ? ntable : *slot;
		}
		if (t == ntable || table[t] == c) {
			prev = c;
			c = next;
			continue;
		}
		size_t keep = table[t];
		if (prev == NONE)	/* c leaves the root set */
			roots = next;
		else
			f->c[prev].next = next;
		f->c[c].next = NONE;
		if (!f->c[keep].msg && !f->c[c].msg) {
			size_t k = f->c[c].child;
			while (k != NONE) {
				size_t nx = f->c[k].next;
				f->c[k].parent = NONE;
				link_cont(f, keep, k);
				k = nx;
			}
		} else if (!f->c[keep].msg || (!f->c[keep].msg->reply && f->c[c].msg && f->c[c].msg->reply)) {
			link_cont(f, keep, c);
		} else {
			/* a new dummy holds both, in keep's place */
			size_t d = cont_new(f, NULL);
			size_t before = NONE;
			for (size_t x = roots; x != keep; x = f->c[x].next)
				before = x;
			if (before == NONE)
				roots = d;
			else
				f->c[before].next = d;
			f->c[d].next = f->c[keep].next;
			f->c[keep].next = NONE;
			link_cont(f, d, keep);
			link_cont(f, d, c);
			table[t] = d;
			if (prev == keep)
				prev = d;
		}
		c = next;
	}
	free(table);
	free(slots);
	/* step 6: every set of siblings by sent date, the roots last */
	sort_below(f, roots);
	return sort_list(f, roots);
}

int imapd_cmd_thread(struct imapd_session *s, const struct imap_cmd *cmd)
{
	const struct imap_search *q = &cmd->u.search;
	size_t n = 0, failed = 0;
	struct sitem *v = collect(s, cmd, 1, q->thread == IMAP_THREAD_REFERENCES, &n, &failed);
	if (!v)
		return 0;
	struct forest f = { 0 };
	size_t roots = q->thread == IMAP_THREAD_REFERENCES ? references(&f, v, n) : ordered_subject(&f, v, n);
	write_threads(s, &f, roots);
	free(f.c);
	free(f.hash);
	items_free(v, n);
	fail_note(s, failed);
	return 0;
}
