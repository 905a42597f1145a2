/* net.c: see net.h. */
#include "net/net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static int split_hostport(const char *addr, char *host, size_t hlen, char *port, size_t plen,
			  struct terr *err)
{
	const char *colon;
	if (addr[0] == '[') {
		const char *close = strchr(addr, ']');
		if (!close || close[1] != ':')
			return terr_set(err, TE_CONFIG, "bad address '%s' (want [v6addr]:port)", addr);
		snprintf(host, hlen, "%.*s", (int)(close - addr - 1), addr + 1);
		colon = close + 1;
	} else {
		colon = strrchr(addr, ':');
		if (!colon || colon == addr)
			return terr_set(err, TE_CONFIG, "bad address '%s' (want host:port or /path)", addr);
		snprintf(host, hlen, "%.*s", (int)(colon - addr), addr);
	}
	snprintf(port, plen, "%s", colon + 1);
	if (!port[0])
		return terr_set(err, TE_CONFIG, "bad address '%s': no port", addr);
	return 0;
}

static int unix_addr(const char *path, struct sockaddr_un *sun, struct terr *err)
{
	memset(sun, 0, sizeof *sun);
	sun->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof sun->sun_path)
		return terr_set(err, TE_CONFIG, "unix socket path too long: %s", path);
	strcpy(sun->sun_path, path);
	return 0;
}

int net_listen(const char *addr, int *fds, int *n, int max, struct terr *err)
{
	if (addr[0] == '/') {
		struct sockaddr_un sun;
		if (unix_addr(addr, &sun, err) < 0)
			return -1;
		if (*n >= max)
			return terr_set(err, TE_CONFIG, "too many listening sockets");
		struct stat st;
		if (lstat(addr, &st) == 0 && S_ISSOCK(st.st_mode))
			unlink(addr);
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return terr_errno(err, errno, "socket");
		if (bind(fd, (struct sockaddr *)&sun, sizeof sun) < 0 || listen(fd, 128) < 0) {
			int e = errno;
			close(fd);
			return terr_errno(err, e, "listen on %s", addr);
		}
		chmod(addr, 0770);
		fds[(*n)++] = fd;
		return 0;
	}
	char host[256], port[32];
	if (split_hostport(addr, host, sizeof host, port, sizeof port, err) < 0)
		return -1;
	struct addrinfo hints = { 0 }, *res, *ai;
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	int g = getaddrinfo(strcmp(host, "*") ? host : NULL, port, &hints, &res);
	if (g != 0)
		return terr_set(err, TE_CONFIG, "address '%s': %s", addr, gai_strerror(g));
	int opened = 0;
	for (ai = res; ai; ai = ai->ai_next) {
		if (*n >= max) {
			freeaddrinfo(res);
			return terr_set(err, TE_CONFIG, "too many listening sockets");
		}
		int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0)
			continue;
		int one = 1;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
		if (ai->ai_family == AF_INET6)
			setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 128) < 0) {
			int e = errno;
			close(fd);
			freeaddrinfo(res);
			return terr_errno(err, e, "listen on %s", addr);
		}
		fds[(*n)++] = fd;
		opened++;
	}
	freeaddrinfo(res);
	if (!opened)
		return terr_set(err, TE_IO, "listen on %s: no usable address", addr);
	return 0;
}

int net_connect(const char *addr, int timeout_ms, int *fd_r, struct terr *err)
{
	if (addr[0] == '/') {
		struct sockaddr_un sun;
		if (unix_addr(addr, &sun, err) < 0)
			return -1;
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return terr_errno(err, errno, "socket");
		if (connect(fd, (struct sockaddr *)&sun, sizeof sun) < 0) {
			int e = errno;
			close(fd);
			return terr_errno(err, e, "connect to %s", addr);
		}
		*fd_r = fd;
		return 0;
	}
	char host[256], port[32];
	if (split_hostport(addr, host, sizeof host, port, sizeof port, err) < 0)
		return -1;
	struct addrinfo hints = { 0 }, *res, *ai;
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	int g = getaddrinfo(host, port, &hints, &res);
	if (g != 0)
		return terr_set(err, TE_IO, "address '%s': %s", addr, gai_strerror(g));
	int last = ECONNREFUSED;
	for (ai = res; ai; ai = ai->ai_next) {
		int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
		if (fd < 0)
			continue;
		int rc = connect(fd, ai->ai_addr, ai->ai_addrlen);
		if (rc < 0 && errno == EINPROGRESS) {
			struct pollfd p = { fd, POLLOUT, 0 };
			int pr = poll(&p, 1, timeout_ms);
			int soerr = ETIMEDOUT;
			socklen_t sl = sizeof soerr;
			if (pr > 0)
				getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
			rc = soerr ? -1 : 0;
			errno = soerr;
		}
		if (rc == 0) {
			fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
			int one = 1;
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
			freeaddrinfo(res);
			*fd_r = fd;
			return 0;
		}
		last = errno;
		close(fd);
	}
	freeaddrinfo(res);
	return terr_errno(err, last, "connect to %s", addr);
}

void net_peer_name(int fd, struct buf *out)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;
	char host[INET6_ADDRSTRLEN] = "?";
	if (getpeername(fd, (struct sockaddr *)&ss, &len) < 0) {
		buf_appends(out, "unknown");
		return;
	}
	if (ss.ss_family == AF_INET) {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
		inet_ntop(AF_INET, &s4->sin_addr, host, sizeof host);
		buf_printf(out, "%s:%u", host, ntohs(s4->sin_port));
	} else if (ss.ss_family == AF_INET6) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
		inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof host);
		buf_printf(out, "[%s]:%u", host, ntohs(s6->sin6_port));
	} else {
		buf_appends(out, "unix");
	}
}

void net_peer_addr(int fd, char *out, size_t n)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;
	if (n)
		out[0] = '\0';
	if (getpeername(fd, (struct sockaddr *)&ss, &len) < 0)
		return;
	if (ss.ss_family == AF_INET) {
		inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, out, (socklen_t)n);
	} else if (ss.ss_family == AF_INET6) {
		struct in6_addr *a = &((struct sockaddr_in6 *)&ss)->sin6_addr;
		if (IN6_IS_ADDR_V4MAPPED(a))
			inet_ntop(AF_INET, &a->s6_addr[12], out, (socklen_t)n);
		else
			inet_ntop(AF_INET6, a, out, (socklen_t)n);
	}
}

int net_local_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;
	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		return -1;
	if (ss.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&ss)->sin_port);
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return -1;
}
