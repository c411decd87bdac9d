/*
 * test_netaddr.c: the platform's pure parts: address and prefix parsing,
 * prefix membership, unusable addresses, the kernel route tables, and the
 * texts of resolv.conf and the chrony sources file.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "platform/internal.h"
#include "platform/netaddr.h"

static struct net_addr A(const char *text)
{
	struct net_addr a;
	assert_int_equal(net_addr_parse(text, &a), 0);
	return a;
}

static void test_parse(void **state)
{
	static const char *const bad[] = {"", "1.2.3", "1.2.3.4.5", "256.1.1.1", "host.example",
					  "fe80::1%eth0", " 1.2.3.4", "::g", NULL};
	struct net_addr a;
	char t[NET_ADDR_TEXT_MAX];
	for (const char *const *b = bad; *b; b++)
		assert_int_equal(net_addr_parse(*b, &a), -EINVAL);
	a = A("2001:DB8:0:0::1");
	net_addr_text(&a, t);
	assert_string_equal(t, "2001:db8::1");
	assert_int_equal(net_addr_bits(&a), 128);

	int prefix = -1;
	static const char *const bad_cidr[] = {"10.0.0.1", "10.0.0.1/", "10.0.0.1/33", "10.0.0.1/08",
					       "10.0.0.1/+8", "10.0.0.1/-1", "::1/129", "/24",
					       "10.0.0.1/24/1", NULL};
	for (const char *const *b = bad_cidr; *b; b++)
		assert_int_equal(net_cidr_parse(*b, &a, &prefix), -EINVAL);
	assert_int_equal(prefix, -1);
	assert_int_equal(net_cidr_parse("10.0.0.1/0", &a, &prefix), 0);
	assert_int_equal(prefix, 0);
	assert_int_equal(net_cidr_parse("fd00::2/64", &a, &prefix), 0);
	assert_int_equal(prefix, 64);
	assert_int_equal(a.family, AF_INET6);
}

static void test_prefix_contains(void **state)
{
	struct net_addr net = A("192.0.2.10"), v6 = A("2001:db8:1::5");
	assert_true(net_prefix_contains(&net, 24, &(struct net_addr){0}) == false);
	struct net_addr in = A("192.0.2.1"), out = A("192.0.3.1"), edge = A("192.0.2.255");
	assert_true(net_prefix_contains(&net, 24, &in));
	assert_true(net_prefix_contains(&net, 24, &edge));
	assert_false(net_prefix_contains(&net, 24, &out));
	assert_true(net_prefix_contains(&net, 23, &out));
	struct net_addr odd = A("192.0.3.1");
	assert_true(net_prefix_contains(&net, 22, &odd));
	assert_true(net_prefix_contains(&net, 0, &out));
	assert_false(net_prefix_contains(&net, 32, &in));
	assert_false(net_prefix_contains(&net, 33, &in));
	/* Families never mix. */
	assert_false(net_prefix_contains(&net, 0, &v6));
	struct net_addr v6in = A("2001:db8:1::1"), v6out = A("2001:db8:2::1");
	assert_true(net_prefix_contains(&v6, 64, &v6in));
	assert_false(net_prefix_contains(&v6, 64, &v6out));
	assert_true(net_prefix_contains(&v6, 46, &v6out));
	assert_false(net_prefix_contains(&v6, 47, &v6out));
	assert_true(net_prefix_contains(&v6, 30, &v6out));
}

static void test_unusable(void **state)
{
	static const struct {
		const char *addr;
		int prefix;
		const char *why;   /* NULL: usable */
	} cases[] = {
		{"192.0.2.10", 24, NULL},
		{"192.0.2.0", 24, "the network address of its prefix"},
		{"192.0.2.255", 24, "the broadcast address of its prefix"},
		{"192.0.2.0", 31, NULL},           /* RFC 3021 */
		{"192.0.2.1", 31, NULL},
		{"192.0.2.7", 32, NULL},
		{"10.0.0.0", 8, "the network address of its prefix"},
		{"10.1.0.0", 8, NULL},
		{"0.0.0.0", 0, "unspecified"},
		{"0.1.2.3", 8, "in 0.0.0.0/8 (this network)"},
		{"127.0.0.1", 8, "loopback"},
		{"224.0.0.1", 24, "multicast"},
		{"239.255.255.250", 24, "multicast"},
		{"255.255.255.255", 32, "broadcast"},
		{"240.0.0.1", 8, "reserved (240.0.0.0/4)"},
		{"169.254.1.1", 16, "link-local"},
		{"::", 64, "unspecified"},
		{"::1", 128, "loopback"},
		{"ff02::1", 64, "multicast"},
		{"fe80::1", 64, "link-local"},
		{"::ffff:192.0.2.1", 96, "IPv4-mapped"},
		{"2001:db8::", 64, NULL},          /* IPv6 has no broadcast */
		{"fd00::2", 64, NULL},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct net_addr a = A(cases[i].addr);
		const char *why = net_addr_unusable(&a, cases[i].prefix);
		if (!cases[i].why)
			assert_null(why);
		else
			assert_string_equal(why, cases[i].why);
	}
	struct net_addr net = A("192.0.2.0");
	assert_null(net_addr_unusable(&net, -1));
	struct net_addr lo6 = A("::1"), lo4 = A("127.8.9.1"), one = A("192.0.2.1");
	assert_true(net_addr_is_loopback(&lo6) && net_addr_is_loopback(&lo4));
	assert_false(net_addr_is_loopback(&one));
}

static void test_route_v4(void **state)
{
	static const char table[] =
		"Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
		"eth0\t00000000\t0102000A\t0003\t0\t0\t100\t00000000\t0\t0\t0\n"
		"eth1\t00000000\t0101A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
		"eth0\t0000000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";
	struct net_default_route r;
	char t[NET_ADDR_TEXT_MAX];
	assert_int_equal(net_parse_default_route(AF_INET, table, &r), 0);
	assert_true(r.present);
	assert_string_equal(r.dev, "eth1");
	assert_int_equal(r.metric, 0);
	net_addr_text(&r.gateway, t);
	assert_string_equal(t, "192.168.1.1");

	static const char onlink[] =
		"Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
		"ppp0\t00000000\t00000000\t0001\t0\t0\t0\t00000000\t0\t0\t0\n";
	assert_int_equal(net_parse_default_route(AF_INET, onlink, &r), 0);
	assert_true(r.present);
	assert_int_equal(r.gateway.family, 0);
	assert_string_equal(r.dev, "ppp0");

	static const char none[] =
		"Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
		"eth0\t0000000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";
	assert_int_equal(net_parse_default_route(AF_INET, none, &r), 0);
	assert_false(r.present);
	assert_int_equal(net_parse_default_route(AF_INET, "no header\n", &r), -EINVAL);
	assert_int_equal(net_parse_default_route(AF_INET,
		"Iface\tDestination\n eth0\tZZ\n", &r), -EINVAL);
}

static void test_route_v6(void **state)
{
	static const char table[] =
		"fd000000000000000000000000000000 40 00000000000000000000000000000000 00 "
		"00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0\n"
		"00000000000000000000000000000000 00 00000000000000000000000000000000 00 "
		"fe800000000000000000000000000001 00000400 00000001 00000000 00000003     eth0\n"
		"00000000000000000000000000000000 00 00000000000000000000000000000000 00 "
		"00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo\n";
	struct net_default_route r;
	char t[NET_ADDR_TEXT_MAX];
	assert_int_equal(net_parse_default_route(AF_INET6, table, &r), 0);
	assert_true(r.present);
	assert_string_equal(r.dev, "eth0");
	assert_int_equal(r.metric, 0x400);
	net_addr_text(&r.gateway, t);
	assert_string_equal(t, "fe80::1");
	assert_int_equal(net_parse_default_route(AF_INET6, "", &r), 0);
	assert_false(r.present);
	assert_int_equal(net_parse_default_route(AF_INET6, "xyz 00 00\n", &r), -EINVAL);
	assert_int_equal(net_parse_default_route(AF_UNIX, "", &r), -EINVAL);
}

static void test_texts(void **state)
{
	char buf[512];
	struct net_addr dns[2] = {A("10.3.0.53"), A("2001:db8::53")};
	int n = plat_resolv_conf_text(dns, 2, buf, sizeof(buf));
	assert_true(n > 0);
	assert_non_null(strstr(buf, "\nnameserver 10.3.0.53\nnameserver 2001:db8::53\n"));
	assert_int_equal(plat_resolv_conf_text(dns, 2, buf, 40), -ENOSPC);

	const char *servers[] = {"127.0.0.1", "ntp.example.com"};
	n = plat_chrony_sources_text(servers, 2, true, buf, sizeof(buf));
	assert_true(n > 0);
	assert_non_null(strstr(buf, "\nserver 127.0.0.1 iburst\nserver ntp.example.com iburst\n"));
	n = plat_chrony_sources_text(servers, 2, false, buf, sizeof(buf));
	assert_true(n > 0);
	assert_null(strstr(buf, "server "));
	assert_int_equal(buf[0], '#');
}

static void test_ifname(void **state)
{
	assert_true(platform_ifname_valid("eth0"));
	assert_true(platform_ifname_valid("br-lan.10"));
	assert_true(platform_ifname_valid("abcdefghijklmno"));
	assert_false(platform_ifname_valid("abcdefghijklmnop"));
	assert_false(platform_ifname_valid("-h"));
	assert_false(platform_ifname_valid(".."));
	assert_false(platform_ifname_valid("eth 0"));
	assert_false(platform_ifname_valid("eth0/1"));
	assert_false(platform_ifname_valid(""));
	assert_false(platform_ifname_valid(NULL));
}

/* The sandbox applies nothing and says so; it serves VSMs only on local
 * addresses. */
static void test_sandbox(void **state)
{
	struct platform_options o = {.kind = PLATFORM_SANDBOX, .instance = "chsm-1"};
	chsm_platform *p = NULL;
	const char *applied = NULL;
	char err[256] = "", ns[64] = "x";
	assert_int_equal(platform_new(&o, &p), 0);
	assert_string_equal(platform_name(p), "sandbox");
	struct platform_network net = {.hostname = "h", .n_ifaces = 0};
	assert_int_equal(platform_apply_network(p, &net, NULL, &applied, err, sizeof(err)), 0);
	assert_string_equal(applied, "stored");
	assert_int_equal(platform_apply_time(p, NULL, 0, true, &applied, err, sizeof(err)), 0);
	assert_string_equal(applied, "stored");
	struct platform_vsm_net local = {.vsm_id = "v", .addr = A("127.0.0.9"), .prefix = 8};
	struct platform_vsm_net far = {.vsm_id = "v", .addr = A("192.0.2.77"), .prefix = 24};
	assert_int_equal(platform_vsm_prepare(p, &local, ns, sizeof(ns), err, sizeof(err)), 0);
	assert_string_equal(ns, "");
	assert_int_equal(platform_vsm_prepare(p, &far, ns, sizeof(ns), err, sizeof(err)),
			 -EADDRNOTAVAIL);
	assert_non_null(strstr(err, "192.0.2.77 is not an address of this host"));
	assert_int_equal(platform_vsm_move_begin(p, &local, &far, err, sizeof(err)), -EADDRNOTAVAIL);
	assert_int_equal(platform_vsm_move_begin(p, &far, &local, err, sizeof(err)), 0);
	platform_vsm_move_end(p, &far, &local, true);
	platform_vsm_release(p, "v");
	platform_free(p);

	struct platform_options bad = {.kind = PLATFORM_SANDBOX, .vsm_bridge = "-x"};
	assert_int_equal(platform_new(&bad, &p), -EINVAL);
	struct platform_options rel = {.kind = PLATFORM_LINUX, .resolv_conf = "etc/resolv.conf"};
	assert_int_equal(platform_new(&rel, &p), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_prefix_contains),
		cmocka_unit_test(test_unusable),
		cmocka_unit_test(test_route_v4),
		cmocka_unit_test(test_route_v6),
		cmocka_unit_test(test_texts),
		cmocka_unit_test(test_ifname),
		cmocka_unit_test(test_sandbox),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
