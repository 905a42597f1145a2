/* store_stmt.c: the prepared-statement cache of one database connection
 * (store-private.h). A statement is prepared the first time its SQL is
 * asked for and then reset and reused; the cache holds at most
 * STORE_STMT_CACHE_MAX of them (the least recently used one goes) and
 * finalizes them all when the connection closes.
 *
 * A statement is handed to one user at a time: asking for SQL whose
 * cached statement is still in use (a row loop whose callback runs the
 * same query again) gets a fresh statement that is finalized when given
 * back. store_stmt_put resets the statement (so no read transaction stays
 * open behind a finished query) and clears its bindings.
 */
#include "store/store-private.h"

#include <string.h>

void store_stmts_init(struct store_stmts *c, sqlite3 *db)
{
	memset(c, 0, sizeof *c);
	c->db = db;
}

void store_stmts_close(struct store_stmts *c)
{
	for (size_t i = 0; i < c->n; i++)
		sqlite3_finalize(c->slot[i].s);
	c->n = 0;
}

int store_stmts_busy(const struct store_stmts *c)
{
	for (size_t i = 0; i < c->n; i++)
		if (c->slot[i].busy)
			return 1;
	return 0;
}

static unsigned long sql_hash(const char *sql)
{
	unsigned long h = 5381;
	for (const unsigned char *p = (const unsigned char *)sql; *p; p++)
		h = h * 33 + *p;
	return h;
}

sqlite3_stmt *store_stmt(struct store_stmts *c, const char *sql, struct terr *err)
{
	unsigned long h = sql_hash(sql);
	c->tick++;
	for (size_t i = 0; i < c->n; i++) {
		struct store_stmt_slot *sl = &c->slot[i];
		if (sl->hash != h || strcmp(sqlite3_sql(sl->s), sql) != 0)
			continue;
		if (sl->busy)
			break;	/* in use: a private one below */
		sl->busy = 1;
		sl->used = c->tick;
		c->hits++;
		return sl->s;
	}
	sqlite3_stmt *s = store_sql_prepare(c->db, sql, err);
	if (!s)
		return NULL;
	c->prepares++;
	/* a free slot, or the least recently used idle one */
	size_t k = c->n;
	if (k == STORE_STMT_CACHE_MAX) {
		for (size_t i = 0; i < c->n; i++)
			if (!c->slot[i].busy && (k == c->n || c->slot[i].used < c->slot[k].used))
				k = i;
		if (k == c->n)
			return s;	/* all in use: this one stays private */
		sqlite3_finalize(c->slot[k].s);
	} else {
		c->n++;
	}
	c->slot[k] = (struct store_stmt_slot){ .s = s, .hash = h, .used = c->tick, .busy = 1 };
	return s;
}

void store_stmt_put(struct store_stmts *c, sqlite3_stmt *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < c->n; i++)
		if (c->slot[i].s == s) {
			sqlite3_reset(s);
			sqlite3_clear_bindings(s);
			c->slot[i].busy = 0;
			return;
		}
	sqlite3_finalize(s);
}

int store_stmt_done(struct store_stmts *c, sqlite3_stmt *s, int rc, const char *what, struct terr *err)
{
	int failed = rc != SQLITE_DONE && rc != SQLITE_ROW ? store_sql_fail(c->db, what, err) : 0;
	store_stmt_put(c, s);
	return failed;
}

int store_stmt_exists(struct store_stmts *c, const char *sql, const char *param, const char *what,
		      struct terr *err)
{
	sqlite3_stmt *s = store_stmt(c, sql, err);
	if (!s)
		return -1;
	sqlite3_bind_text(s, 1, param, -1, SQLITE_STATIC);
	int rc = sqlite3_step(s);
	int ret = rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : store_sql_fail(c->db, what, err);
	store_stmt_put(c, s);
	return ret;
}
