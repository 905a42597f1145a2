/* server_role.c: the instance's role in a failover pair.
 *
 * The role is a one-word file <configdir>/role written by `tandem
 * failover`: "master", "draining" or "replica". Without the file the
 * instance is "standalone" and nothing is enforced (a pair set up by hand
 * works as before). Every process reads it when it needs it (a stat per
 * mutating command, the file only when it changed), so a role change
 * reaches sessions that are already open:
 *   replica/draining: clients' changes are refused (LMTP 451, IMAP NO
 *                     [UNAVAILABLE], `tandem` commands that write); the
 *                     sync server applies a master's changes;
 *   replica:          tandemd runs no sync clients (unless sync_log_chain);
 *   master:           the sync server refuses APPLY, so an old master that
 *                     comes back cannot overwrite the new one.
 */
#include "server/server.h"

#include "conf/conf.h"
#include "lib/fsutil.h"

#include <string.h>
#include <sys/stat.h>

static const char *const names[] = { "standalone", "master", "draining", "replica" };

const char *server_role_name(enum server_role r)
{
	return (unsigned)r < sizeof names / sizeof names[0] ? names[r] : "standalone";
}

static void role_path(const struct conf *conf, struct buf *out)
{
	buf_reset(out);
	buf_printf(out, "%s/role", conf_str(conf, "configdirectory"));
}

enum server_role server_role_get(const struct conf *conf)
{
	struct buf path = BUF_INIT, data = BUF_INIT;
	struct terr err = { 0 };
	enum server_role r = ROLE_STANDALONE;
	role_path(conf, &path);
	if (fs_read_file(path.ptr, 256, &data, &err) == 0) {
		size_t n = strcspn(buf_cstr(&data), " \t\r\n");
		for (size_t i = 1; i < sizeof names / sizeof names[0]; i++)
			if (strlen(names[i]) == n && !strncmp(data.ptr, names[i], n))
				r = (enum server_role)i;
	}
	buf_free(&path);
	buf_free(&data);
	return r;
}

int server_role_set(const struct conf *conf, enum server_role r, struct terr *err)
{
	struct buf path = BUF_INIT, line = BUF_INIT;
	role_path(conf, &path);
	buf_printf(&line, "%s\n", server_role_name(r));
	int rc = fs_write_atomic(path.ptr, line.ptr, line.len, 0644, err);
	buf_free(&path);
	buf_free(&line);
	return rc;
}

int server_role_refuses_writes(const struct conf *conf)
{
	/* every mutating command asks: one stat, the file read again only
	 * when it changed (tandem failover replaces it: another inode) */
	static struct server_role_cache cache;
	if (cache.conf != conf) {
		memset(&cache, 0, sizeof cache);
		cache.conf = conf;
	}
	enum server_role r = server_role_cached(&cache);
	return r == ROLE_REPLICA || r == ROLE_DRAINING;
}

enum server_role server_role_cached(struct server_role_cache *c)
{
	struct buf path = BUF_INIT;
	struct stat sb;
	role_path(c->conf, &path);
	int there = stat(path.ptr, &sb) == 0;
	buf_free(&path);
	if (!there) {
		c->valid = 0;
		return ROLE_STANDALONE;
	}
	long long mt = (long long)sb.st_mtim.tv_sec * 1000000000LL + sb.st_mtim.tv_nsec;
	if (!c->valid || c->dev != (unsigned long long)sb.st_dev || c->ino != (unsigned long long)sb.st_ino ||
	    c->size != (unsigned long long)sb.st_size || c->mtime_ns != mt) {
		c->role = server_role_get(c->conf);
		c->dev = (unsigned long long)sb.st_dev;
		c->ino = (unsigned long long)sb.st_ino;
		c->size = (unsigned long long)sb.st_size;
		c->mtime_ns = mt;
		c->valid = 1;
	}
	return c->role;
}
