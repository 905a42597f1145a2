/* net.h: listening and connecting sockets from tandem's address syntax.
 *
 * An address is "host:port", "[v6addr]:port", "*:port" (all IPv4 and
 * IPv6 addresses) or "/path/to/unix.socket". Every call returns 0 or -1
 * with *err set.
 */
#ifndef TANDEM_NET_H
#define TANDEM_NET_H

#include "lib/buf.h"
#include "lib/err.h"

/* Opens listening sockets for addr (a name may resolve to several:
 * every one is bound); appends their fds to fds[*n] (at most max).
 * A unix socket path is replaced if a stale socket file is there. */
int net_listen(const char *addr, int *fds, int *n, int max, struct terr *err);
/* Connects to addr (TCP with a timeout in ms, or a unix socket). */
int net_connect(const char *addr, int timeout_ms, int *fd_r, struct terr *err);
/* "ip:port" of the peer (or "unix"), for logs. */
void net_peer_name(int fd, struct buf *out);
/* The peer's address alone, numeric ("192.0.2.1", "2001:db8::1"; an
 * IPv4-mapped IPv6 address as IPv4), or "" for a unix socket or an
 * error: the key of per-client limits. */
void net_peer_addr(int fd, char *out, size_t n);
/* The port a listening TCP socket got (after binding port 0), or -1. */
int net_local_port(int fd);

#endif
