/*
 * endpoint.h: the textual forms shared by the supervisor and chsm-vsmd: VSM
 * identifiers and listen endpoints ("IPv4:PORT" or "[IPv6]:PORT").
 *
 * Guarantees: parsing is strict (no host names, no zone identifiers, no
 * leading zeros in ports, port 1-65535), locale-free, and never allocates;
 * what vsm_endpoint_format writes, vsm_endpoint_parse accepts.
 */
#ifndef CHSM_VSM_ENDPOINT_H
#define CHSM_VSM_ENDPOINT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

/* Longest "[IPv6]:PORT" text plus its NUL. */
#define VSM_ENDPOINT_MAX_LEN 64

/* True when id matches ^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$. */
bool vsm_id_valid(const char *id);

/* Parses "a.b.c.d:port" or "[v6]:port" into *ret_addr and *ret_len.
 * Returns 0 or -EINVAL; the outputs are untouched on error. */
int vsm_endpoint_parse(const char *text, struct sockaddr_storage *ret_addr,
		       socklen_t *ret_len);

/* Writes the endpoint text for ip (an IPv4 or IPv6 literal) and port into
 * buf (VSM_ENDPOINT_MAX_LEN bytes suffice). Returns 0, -EINVAL for a bad
 * address or a port outside 1-65535, or -ENOSPC when buf is too small. */
int vsm_endpoint_format(const char *ip, int port, char *buf, size_t buflen);

/* Writes the endpoint text of a socket address (as vsm_endpoint_format).
 * Returns 0, -EAFNOSUPPORT, or -ENOSPC. */
int vsm_endpoint_from_sockaddr(const struct sockaddr *addr, char *buf, size_t buflen);

/* Makes a non-blocking, close-on-exec TCP socket listening on addr
 * (SO_REUSEADDR; IPV6_V6ONLY for IPv6). Returns it, or a negative errno
 * with *ret_op naming the step that failed ("socket", "setsockopt",
 * "bind", "listen"). */
int vsm_listen_open(const struct sockaddr_storage *addr, socklen_t len, const char **ret_op);

#endif
