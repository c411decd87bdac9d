/*
 * netaddr.c: see netaddr.h.
 */
#include "platform/netaddr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "common/util.h"

int net_addr_parse(const char *text, struct net_addr *ret)
{
	struct net_addr a;
	memset(&a, 0, sizeof(a));
	if (!text || strlen(text) >= NET_ADDR_TEXT_MAX)
		return -EINVAL;
	if (inet_pton(AF_INET, text, a.bytes) == 1)
		a.family = AF_INET;
	else if (inet_pton(AF_INET6, text, a.bytes) == 1)
		a.family = AF_INET6;
	else
		return -EINVAL;
	*ret = a;
	return 0;
}

int net_cidr_parse(const char *text, struct net_addr *ret_addr, int *ret_prefix)
{
	char host[NET_ADDR_TEXT_MAX];
	const char *slash = text ? strchr(text, '/') : NULL;
	struct net_addr a;
	uint64_t prefix;
	if (!slash || (size_t)(slash - text) >= sizeof(host))
		return -EINVAL;
	memcpy(host, text, (size_t)(slash - text));
	host[slash - text] = '\0';
	/* "/08" and "/+8" are not prefixes. */
	if (slash[1] == '0' && slash[2] != '\0')
		return -EINVAL;
	if (net_addr_parse(host, &a) < 0 || chsm_parse_u64(slash + 1, 128, &prefix) < 0 ||
	    (int)prefix > net_addr_bits(&a))
		return -EINVAL;
	*ret_addr = a;
	*ret_prefix = (int)prefix;
	return 0;
}

void net_addr_text(const struct net_addr *a, char buf[NET_ADDR_TEXT_MAX])
{
	if (!inet_ntop(a->family, a->bytes, buf, NET_ADDR_TEXT_MAX))
		buf[0] = '\0';
}

int net_addr_bits(const struct net_addr *a)
{
	return a->family == AF_INET ? 32 : 128;
}

bool net_addr_equal(const struct net_addr *a, const struct net_addr *b)
{
	return a->family == b->family &&
	       memcmp(a->bytes, b->bytes, a->family == AF_INET ? 4 : 16) == 0;
}

bool net_prefix_contains(const struct net_addr *net, int prefix, const struct net_addr *a)
{
	if (net->family != a->family || prefix < 0 || prefix > net_addr_bits(net))
		return false;
	int full = prefix / 8, rest = prefix % 8;
	if (memcmp(net->bytes, a->bytes, (size_t)full) != 0)
		return false;
	if (rest == 0)
		return true;
	uint8_t mask = (uint8_t)(0xff << (8 - rest));
	return (net->bytes[full] & mask) == (a->bytes[full] & mask);
}

/* True when the bits of a after prefix are all `bit` (0 or 1). */
static bool host_bits_all(const struct net_addr *a, int prefix, int bit)
{
	int bits = net_addr_bits(a);
	for (int i = prefix; i < bits; i++) {
		int v = (a->bytes[i / 8] >> (7 - i % 8)) & 1;
		if (v != bit)
			return false;
	}
	return true;
}

bool net_addr_is_loopback(const struct net_addr *a)
{
	static const uint8_t v6_loopback[16] = {[15] = 1};
	if (a->family == AF_INET)
		return a->bytes[0] == 127;
	return memcmp(a->bytes, v6_loopback, 16) == 0;
}

const char *net_addr_unusable(const struct net_addr *a, int prefix)
{
	static const uint8_t zero[16];
	if (memcmp(a->bytes, zero, a->family == AF_INET ? 4 : 16) == 0)
		return "unspecified";
	if (net_addr_is_loopback(a))
		return "loopback";
	if (a->family == AF_INET) {
		if (a->bytes[0] >= 224 && a->bytes[0] <= 239)
			return "multicast";
		if (a->bytes[0] == 0)
			return "in 0.0.0.0/8 (this network)";
		if (a->bytes[0] >= 240)
			return host_bits_all(a, 0, 1) ? "broadcast" : "reserved (240.0.0.0/4)";
		if (a->bytes[0] == 169 && a->bytes[1] == 254)
			return "link-local";
		if (prefix >= 0 && prefix <= 30) {
			if (host_bits_all(a, prefix, 0))
				return "the network address of its prefix";
			if (host_bits_all(a, prefix, 1))
				return "the broadcast address of its prefix";
		}
		return NULL;
	}
	if (a->bytes[0] == 0xff)
		return "multicast";
	if (a->bytes[0] == 0xfe && (a->bytes[1] & 0xc0) == 0x80)
		return "link-local";
	static const uint8_t v4mapped[12] = {[10] = 0xff, [11] = 0xff};
	if (memcmp(a->bytes, v4mapped, 12) == 0)
		return "IPv4-mapped";
	return NULL;
}

/* Splits line into at most max whitespace-separated fields. */
static int split_fields(char *line, char **fields, int max)
{
	int n = 0;
	char *save = NULL;
	for (char *t = strtok_r(line, " \t", &save); t && n < max; t = strtok_r(NULL, " \t", &save))
		fields[n++] = t;
	return n;
}

static int parse_hex_u32(const char *s, uint32_t *ret)
{
	if (strlen(s) != 8)
		return -EINVAL;
	uint32_t v = 0;
	for (int i = 0; i < 8; i++) {
		int d = chsm_hex_value(s[i]);
		if (d < 0)
			return -EINVAL;
		v = v << 4 | (uint32_t)d;
	}
	*ret = v;
	return 0;
}

/* RTF_UP, RTF_GATEWAY, RTF_REJECT of <linux/route.h>. */
#define ROUTE_UP      0x0001u
#define ROUTE_GATEWAY 0x0002u
#define ROUTE_REJECT  0x0200u

int net_parse_default_route(int family, const char *text, struct net_default_route *ret)
{
	struct net_default_route best;
	char line[512];
	char *fields[12];
	memset(&best, 0, sizeof(best));
	if (!text || (family != AF_INET && family != AF_INET6))
		return -EINVAL;
	const char *p = text;
	bool header = family == AF_INET;
	while (*p) {
		size_t n = strcspn(p, "\n");
		if (n >= sizeof(line))
			return -EINVAL;
		memcpy(line, p, n);
		line[n] = '\0';
		p += n + (p[n] == '\n');
		if (header) {
			/* /proc/net/route opens with its column names. */
			if (strncmp(line, "Iface", 5) != 0)
				return -EINVAL;
			header = false;
			continue;
		}
		int nf = split_fields(line, fields, 12);
		if (nf == 0)
			continue;
		struct net_default_route r;
		memset(&r, 0, sizeof(r));
		uint32_t flags, metric, dest, gw, mask;
		if (family == AF_INET) {
			if (nf < 8 || parse_hex_u32(fields[1], &dest) < 0 ||
			    parse_hex_u32(fields[2], &gw) < 0 || parse_hex_u32(fields[7], &mask) < 0)
				return -EINVAL;
			uint64_t m64;
			/* Flags are 4 hex digits ("0003"). */
			char pad[9] = "00000000";
			size_t fl = strlen(fields[3]);
			if (fl < 1 || fl > 8)
				return -EINVAL;
			memcpy(pad + 8 - fl, fields[3], fl);
			if (parse_hex_u32(pad, &flags) < 0 ||
			    chsm_parse_u64(fields[6], UINT32_MAX, &m64) < 0)
				return -EINVAL;
			metric = (uint32_t)m64;
			if (dest != 0 || mask != 0 || !(flags & ROUTE_UP) || (flags & ROUTE_REJECT))
				continue;
			if (flags & ROUTE_GATEWAY) {
				r.gateway.family = AF_INET;
				memcpy(r.gateway.bytes, &gw, 4);
			}
			snprintf(r.dev, sizeof(r.dev), "%s", fields[0]);
		} else {
			uint8_t dst[16], nh[16];
			if (nf < 10 || strlen(fields[0]) != 32 || strlen(fields[4]) != 32 ||
			    chsm_hex_decode(fields[0], 32, dst, 16) < 0 ||
			    chsm_hex_decode(fields[4], 32, nh, 16) < 0 ||
			    parse_hex_u32(fields[5], &metric) < 0 || parse_hex_u32(fields[8], &flags) < 0)
				return -EINVAL;
			static const uint8_t zero[16];
			if (memcmp(dst, zero, 16) != 0 || strcmp(fields[1], "00") != 0 ||
			    !(flags & ROUTE_UP) || (flags & ROUTE_REJECT) || strcmp(fields[9], "lo") == 0)
				continue;
			if (memcmp(nh, zero, 16) != 0) {
				r.gateway.family = AF_INET6;
				memcpy(r.gateway.bytes, nh, 16);
			}
			snprintf(r.dev, sizeof(r.dev), "%s", fields[9]);
		}
		r.present = true;
		r.metric = metric;
		if (!best.present || r.metric < best.metric)
			best = r;
	}
	*ret = best;
	return 0;
}
