/*
 * netaddr.h: IP addresses and prefixes as the platform and the API check
 * them (PROFILE.md 7.2.4, 7.3.3): parsing, canonical text, prefix
 * membership, the classes of addresses an interface may not carry, and
 * the parsing of the kernel's route tables.
 *
 * Guarantees: pure functions (no I/O, no allocation, locale-free); parsing
 * is strict (literals only, no names, no zone identifiers, prefixes as
 * plain decimals without leading zeros); outputs are untouched on error.
 */
#ifndef CHSM_PLATFORM_NETADDR_H
#define CHSM_PLATFORM_NETADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The longest canonical text of an address ("ffff:...") plus its NUL. */
#define NET_ADDR_TEXT_MAX 46

struct net_addr {
	int family;        /* AF_INET or AF_INET6 */
	uint8_t bytes[16]; /* network order; 4 used for AF_INET */
};

/* Parses an IPv4 or IPv6 literal. Returns 0 or -EINVAL. */
int net_addr_parse(const char *text, struct net_addr *ret);
/* Parses "addr/prefix" (prefix 0-32 or 0-128). Returns 0 or -EINVAL. */
int net_cidr_parse(const char *text, struct net_addr *ret_addr, int *ret_prefix);
/* The canonical text (inet_ntop) into buf of NET_ADDR_TEXT_MAX bytes. */
void net_addr_text(const struct net_addr *a, char buf[NET_ADDR_TEXT_MAX]);
/* The maximum prefix of a's family (32 or 128). */
int net_addr_bits(const struct net_addr *a);
bool net_addr_equal(const struct net_addr *a, const struct net_addr *b);
/* True when a and b are of one family and agree in their first prefix bits. */
bool net_prefix_contains(const struct net_addr *net, int prefix, const struct net_addr *a);

/* Why an address may not be an interface's own (or a gateway): NULL when
 * it may, else a short reason ("unspecified", "loopback", "multicast",
 * "broadcast", "link-local", "the network address of its prefix", "the
 * broadcast address of its prefix"). prefix < 0: no prefix checks. The
 * network and broadcast checks apply to IPv4 prefixes of 30 bits or
 * fewer (RFC 3021 lets /31 use both addresses). */
const char *net_addr_unusable(const struct net_addr *a, int prefix);

/* True when a is a loopback address (127.0.0.0/8, ::1). */
bool net_addr_is_loopback(const struct net_addr *a);

/* The default route of one family, as the kernel shows it in
 * /proc/net/route (IPv4) or /proc/net/ipv6_route (IPv6). */
struct net_default_route {
	bool present;
	struct net_addr gateway;   /* family AF_UNSPEC (0) when on-link */
	char dev[16];
	uint32_t metric;
};

/* Finds, in the text of /proc/net/route (family AF_INET) or
 * /proc/net/ipv6_route (AF_INET6), the default route of the main table
 * with the lowest metric. Returns 0 with *ret set (present false when
 * there is none) or -EINVAL for text that is not such a table. */
int net_parse_default_route(int family, const char *text, struct net_default_route *ret);

#endif
