/*
 * endpoint.c: see endpoint.h.
 */
#include "vsm/endpoint.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/limits.h"
#include "common/util.h"

bool vsm_id_valid(const char *id)
{
	if (!id)
		return false;
	size_t len = strlen(id);
	if (len < 1 || len > CHSM_VSM_ID_MAX_LEN)
		return false;
	return chsm_str_charset(id, 1, NULL) && chsm_str_charset(id + 1, len - 1, "_.-");
}

static int parse_port(const char *s, in_port_t *ret)
{
	uint64_t v;
	/* chsm_parse_u64 accepts "0080"; a port written that way is refused. */
	if (s[0] == '0' || chsm_parse_u64(s, 65535, &v) < 0 || v == 0)
		return -EINVAL;
	*ret = htons((in_port_t)v);
	return 0;
}

/* Splits text into host and port text: "[v6]:port" or "v4:port". */
static int split_endpoint(const char *text, char *host, size_t hostlen, bool *ret_v6,
			  const char **ret_port)
{
	const char *h = text, *end;
	bool v6 = text[0] == '[';
	if (v6) {
		h = text + 1;
		end = strchr(h, ']');
		if (!end || end[1] != ':')
			return -EINVAL;
	} else {
		end = strchr(text, ':');
		if (!end || strchr(end + 1, ':'))
			return -EINVAL;
	}
	size_t n = (size_t)(end - h);
	if (n == 0 || n >= hostlen)
		return -EINVAL;
	memcpy(host, h, n);
	host[n] = '\0';
	*ret_v6 = v6;
	*ret_port = end + (v6 ? 2 : 1);
	return 0;
}

int vsm_endpoint_parse(const char *text, struct sockaddr_storage *ret_addr,
		       socklen_t *ret_len)
{
	char host[INET6_ADDRSTRLEN];
	const char *port_text;
	bool v6;
	in_port_t port;
	if (!text || split_endpoint(text, host, sizeof(host), &v6, &port_text) < 0 ||
	    parse_port(port_text, &port) < 0)
		return -EINVAL;
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof(ss));
	struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
	if (v6) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = port;
		if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
			return -EINVAL;
	} else {
		sin->sin_family = AF_INET;
		sin->sin_port = port;
		if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
			return -EINVAL;
	}
	*ret_addr = ss;
	*ret_len = v6 ? sizeof(*sin6) : sizeof(*sin);
	return 0;
}

static int format_parts(const char *host, bool v6, unsigned port, char *buf, size_t buflen)
{
	int n = snprintf(buf, buflen, v6 ? "[%s]:%u" : "%s:%u", host, port);
	if (n < 0 || (size_t)n >= buflen)
		return -ENOSPC;
	return 0;
}

int vsm_endpoint_format(const char *ip, int port, char *buf, size_t buflen)
{
	struct in6_addr a6;
	struct in_addr a4;
	if (!ip || port < 1 || port > 65535 || strlen(ip) >= INET6_ADDRSTRLEN)
		return -EINVAL;
	if (inet_pton(AF_INET, ip, &a4) == 1)
		return format_parts(ip, false, (unsigned)port, buf, buflen);
	if (inet_pton(AF_INET6, ip, &a6) == 1)
		return format_parts(ip, true, (unsigned)port, buf, buflen);
	return -EINVAL;
}

int vsm_endpoint_from_sockaddr(const struct sockaddr *addr, char *buf, size_t buflen)
{
	char host[INET6_ADDRSTRLEN];
	if (addr->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)addr;
		inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
		return format_parts(host, false, ntohs(sin->sin_port), buf, buflen);
	}
	if (addr->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)addr;
		inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
		return format_parts(host, true, ntohs(sin6->sin6_port), buf, buflen);
	}
	return -EAFNOSUPPORT;
}

int vsm_listen_open(const struct sockaddr_storage *addr, socklen_t len,
			 const char **ret_op)
{
	int one = 1, r;
	int fd = socket(addr->ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		*ret_op = "socket";
		return -errno;
	}
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    (addr->ss_family == AF_INET6 &&
	     setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0)) {
		*ret_op = "setsockopt";
		goto fail;
	}
	if (bind(fd, (const struct sockaddr *)addr, len) < 0) {
		*ret_op = "bind";
		goto fail;
	}
	if (listen(fd, SOMAXCONN) < 0) {
		*ret_op = "listen";
		goto fail;
	}
	return fd;
fail:
	r = -errno;
	close(fd);
	return r;
}
