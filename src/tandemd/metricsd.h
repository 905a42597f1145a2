/* metricsd.h: the metrics endpoint of tandemd (metrics_listen), served
 * by a child process of its own (metricsd.c); what it shows is described
 * in src/stats/stats.h and docs/operations.md "Metrics". */
#ifndef TANDEM_METRICSD_H
#define TANDEM_METRICSD_H

#include "lib/err.h"

struct conf;

/* Opens metrics_listen (host:port) into fds (*n of them, at most max;
 * *n = 0 when the option is unset). check_only: the syntax only. */
int metricsd_listen(const struct conf *conf, int check_only, int *fds, int *n, int max, struct terr *err);
/* The child's loop, until SIGTERM (server_stop_requested); exits. */
void metricsd_run(const struct conf *conf, const int *lfds, int nl) __attribute__((noreturn));

#endif
