/* server_authcache.h: tandemd's verified-credentials cache, so that a
 * repeated login of the same user with the same password costs an HMAC
 * and a round trip to tandemd instead of a yescrypt (~60 ms of CPU).
 * Dovecot's auth cache does the same; its option names are used
 * (auth_cache_size, auth_cache_ttl).
 *
 * What is cached: HMAC-SHA-256, under a key tandemd draws at start
 * (RAND_bytes; never written anywhere), of the userid, the user's stored
 * password hash and the password (each length-prefixed), with the time
 * it expires: auth_cache_ttl after the yescrypt that proved it. No
 * password and no userid is kept. Only right passwords are cached: a
 * wrong one misses, costs the full hash as before, then the failure
 * pause and counts of server_auth.c (no negative entries, unlike
 * Dovecot's auth_cache_negative_ttl). A user that does not exist is never
 * looked up, and is checked against a dummy hash of the same cost, so
 * neither the cache nor the time of an answer tells whether a user
 * exists.
 *
 * Invalidation: the stored hash is part of the key. `tandem user passwd`
 * writes a new hash (a new salt), so the old password misses at once and
 * the new one is verified by yescrypt and cached; a deleted user has no
 * hash (no lookup); a re-created one has a new hash. Whichever process
 * changes users.db (the tool, a replica's sync server), nothing has to
 * tell tandemd. A stale entry can never match again; it goes by TTL or by
 * LRU eviction.
 *
 * Where it lives, and why: in tandemd's own memory, asked over a
 * socketpair (SOCK_SEQPACKET) that tandemd makes for each IMAP session
 * process before its fork (kept for the connections the process serves
 * after its first: maxuse, server.h). Not a shared memory table like the failure counts
 * (server_auth.c): session processes face strangers, and with the table
 * and its key mapped in every session, one memory-disclosure bug in a
 * session would hand out the key and an HMAC verifier of every recent
 * password, which can be tried at billions of guesses a second where
 * yescrypt allows tens. Here a session holds only its own client's
 * password: the table and key are one mapping marked MADV_DONTFORK, so no
 * child of tandemd has them (server_authcache_forget), and each child
 * closes every other session's socket. tandemd answers each
 * session at most AUTH_CACHE_ASKS questions (about what one login needs;
 * counted per connection a process serves, none while it is idle), so
 * even a subverted session cannot use the cache as a fast oracle. The
 * socket is the session's own: no path, nobody else can connect. The
 * cost is one round trip to tandemd per login (tens of microseconds:
 * tandemd answers between accepts; an HMAC and a hash probe). A session
 * that gets no answer within AUTH_CACHE_WAIT_MS verifies the hash itself.
 *
 * Size: auth_cache_size bytes, AUTH_CACHE_ENTRY_BYTES per login, at most
 * AUTH_CACHE_MAX_SIZE; when full, the least recently used login goes.
 * auth_cache_size 0 turns the cache off (every login pays the hash).
 * A tandemd restart (or a reload that changes auth_cache_size) forgets
 * every entry.
 */
#ifndef TANDEM_SERVER_AUTHCACHE_H
#define TANDEM_SERVER_AUTHCACHE_H

#include <stddef.h>
#include <stdint.h>

struct conf;
struct service_env;
struct store;
struct terr;

/* ---- the table (tandemd) ----------------------------------------------- */

struct server_authcache;

/* A table of nentries (>= 1) logins with a fresh random key, or NULL
 * (out of memory, no randomness). */
struct server_authcache *server_authcache_new(size_t nentries);
/* The table of the config's auth_cache_size, NULL when it is 0 (off) or
 * cannot be made (logged). */
struct server_authcache *server_authcache_from_conf(const struct conf *conf);
/* Wipes the key and entries, unmaps. */
void server_authcache_free(struct server_authcache **c);
/* In a child of tandemd right after fork: forgets the table, which the
 * child does not have (MADV_DONTFORK), or unmaps its copy. */
void server_authcache_forget(struct server_authcache **c);
size_t server_authcache_capacity(const struct server_authcache *c);
size_t server_authcache_count(const struct server_authcache *c);

/* 1 when (user, hash, password) was added, has not expired by now_ms
 * (CLOCK_MONOTONIC ms) and was not evicted; it becomes the most recently
 * used. Else 0. */
int server_authcache_lookup(struct server_authcache *c, const char *user, const char *hash, const char *password,
			    int64_t now_ms);
/* Remembers that password is user's under hash until now_ms + ttl_ms,
 * evicting the least recently used login when full. */
void server_authcache_add(struct server_authcache *c, const char *user, const char *hash, const char *password,
			  int64_t now_ms, int64_t ttl_ms);

/* ---- the socket (tandemd's side) ---------------------------------------- */

/* Reads one question from a session's socket fd and answers it: *asks is
 * the session's count so far (past AUTH_CACHE_ASKS: "not cached", and
 * adds are ignored). c NULL: every lookup misses. Returns 1 when it
 * handled a question, 0 when none was waiting, -1 when the session closed
 * its end (close fd). Before closing the socket of a session that ended,
 * call it until it returns <= 0: the session's last add may be waiting. */
int server_authcache_serve(struct server_authcache *c, int fd, unsigned *asks, int64_t ttl_ms);

/* ---- the session's side -------------------------------------------------- */

/* One question to tandemd over fd (op 'L' lookup: 1 cached, 0 not; 'A'
 * add: 0), -1 when the socket failed or no answer came within
 * AUTH_CACHE_WAIT_MS (then stop asking: a late answer must not be read
 * as the answer to a later question). */
int server_authcache_ask(int fd, char op, const char *user, const char *hash, const char *password);

/* The password check of a login: 1 right, 0 wrong (or no such user, or
 * no password), -1 error (err). Asks tandemd's cache first over
 * env->authcache_fd when there is one (> 0); on a miss verifies the
 * stored hash and tells the cache a right password. A user without a hash
 * costs a hash of a dummy, like a wrong password. *how_r: "hit", "miss"
 * or "off" (no cache), for the login's log line. */
int server_login_check(const struct service_env *env, struct store *st, const char *user, const char *password,
		       const char **how_r, struct terr *err);

#endif
