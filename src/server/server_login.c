/* server_login.c: the password check of a login, with tandemd's cache
 * (server_authcache.h). */
#include "server/server_authcache.h"

#include "lib/limits.h"
#include "lib/log.h"
#include "server/server.h"
#include "store/store.h"

#include <openssl/crypto.h>
#include <unistd.h>

/* A yescrypt hash of the default cost of nothing anyone knows: a login
 * of a user without a hash is verified against it, so it costs what a
 * wrong password costs (the time of the answer does not say whether the
 * user exists). */
static const char dummy_hash[] = "$y$j9T$MGGC7w8Fgj.3WhFRz49GW/$uHPVTFGcO8oIMDaBZjNRcGQMq3pD3hSHn0YdaqI7R51";

/* The socket stops being asked once it failed: a late answer must never be
 * taken for the answer to a later question. */
static int cache_broken;

static int ask(int fd, char op, const char *user, const char *hash, const char *password)
{
	if (fd < 0 || cache_broken)
		return 0;
	int r = server_authcache_ask(fd, op, user, hash, password);
	if (r < 0) {
		log_warn("event=auth_cache_unanswered wait_ms=%d note=\"this session verifies hashes itself from now on\"",
			 AUTH_CACHE_WAIT_MS);
		cache_broken = 1;
		close(fd);
		return 0;
	}
	return r;
}

int server_login_check(const struct service_env *env, struct store *st, const char *user, const char *password,
		       const char **how_r, struct terr *err)
{
	int fd = env && env->authcache_fd > 0 ? env->authcache_fd : -1;
	*how_r = fd >= 0 && !cache_broken ? "miss" : "off";
	struct buf hash = BUF_INIT;
	int r = store_user_pwhash(st, user, &hash, err);
	if (r < 0) {
		buf_free(&hash);
		return -1;
	}
	if (r == 0) {
		store_password_verify(dummy_hash, password);
		buf_free(&hash);
		return 0;
	}
	if (ask(fd, 'L', user, hash.ptr, password) == 1) {
		*how_r = "hit";
		buf_free(&hash);
		return 1;
	}
	int ok = store_password_verify(hash.ptr, password);
	if (ok)
		ask(fd, 'A', user, hash.ptr, password);
	OPENSSL_cleanse(hash.ptr, hash.len);
	buf_free(&hash);
	return ok;
}
