/* server_store.c: opening an instance's store from its config (with the
 * message cache of src/msgcache). */
#include "server/server.h"

#include "chlog/chlog.h"
#include "conf/conf.h"
#include "msgcache/msgcache.h"
#include "names/mboxname.h"
#include "store/store.h"
#include "sync/sync_rightnow.h"

#include <string.h>

int server_open_store(const struct conf *conf, struct store **st_r, struct chlog **log_r,
		      struct mboxname_ns *ns_r, struct terr *err)
{
	*st_r = NULL;
	*log_r = NULL;
	ns_r->sep = conf_bool(conf, "unixhierarchysep") ? '/' : '.';
	ns_r->virtdomains = strcmp(conf_str(conf, "virtdomains"), "off") != 0;
	if (conf_bool(conf, "sync_log")) {
		const char *const *names;
		size_t n = conf_log_channels(conf, &names);
		unsigned shards[MAX_CHANNELS];
		for (size_t i = 0; i < n && i < MAX_CHANNELS; i++)
			shards[i] = (unsigned)conf_chan_int(conf, names[i], "sync_shards");
		*log_r = chlog_open_shards(conf_str(conf, "configdirectory"), names, shards, n);
		if (!*log_r)
			return terr_set(err, TE_CONFIG, "cannot open the change log of %zu channels", n);
	}
	/* synchronous replication: when sync_rightnow_channel is one of the
	 * channels logged to, each commit waits for it (sync_rightnow.h) */
	static struct sync_rightnow *rightnow;	/* one per process, kept */
	if (*log_r && !rightnow) {
		const char *const *names;
		size_t n = conf_log_channels(conf, &names);
		for (size_t i = 0; i < n && !rightnow; i++)
			if (sync_rightnow_is(conf, names[i]))
				rightnow = sync_rightnow_new(conf);
	}
	const char *part = conf_str(conf, "defaultpartition");
	const char *path = conf_partition(conf, part);
	if (!path) {
		chlog_close(log_r);
		return terr_set(err, TE_CONFIG, "%s: partition-%s is not set", conf_path(conf), part);
	}
	struct store_opts so = {
		.configdir = conf_str(conf, "configdirectory"),
		.partition = part,
		.partition_path = path,
		.chlog = *log_r,
		.maxmessagesize = conf_int(conf, "maxmessagesize"),
		.virtdomains = ns_r->virtdomains,
		/* LMTP, IMAP APPEND/COPY, the sync server and tandem deliver
		 * all store through here: they all fill the message cache */
		.cache_fn = msgcache_compute,
		.after_commit = *log_r && rightnow ? sync_rightnow_after_commit : NULL,
		.commit_rock = rightnow,
	};
	if (store_open(&so, st_r, err) < 0) {
		chlog_close(log_r);
		return -1;
	}
	return 0;
}
