/*
 * test_endpoint.c: the text forms shared by the supervisor and chsm-vsmd:
 * VSM ids, listen endpoints and the readiness line, as tables of cases.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "vsm/endpoint.h"
#include "vsm/ready.h"

static void test_ids(void **state)
{
	static const char *good[] = { "a", "Z", "0", "vsm-1", "a.b_c-d", "A1_", "x.",
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" /* 64 */ };
	static const char *bad[] = { "", "-a", ".a", "_a", "a b", "a/b", "a:b", "a\n",
		"caf\xc3\xa9", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" /* 65 */ };
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		if (!vsm_id_valid(good[i]))
			fail_msg("refused good id \"%s\"", good[i]);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (vsm_id_valid(bad[i]))
			fail_msg("accepted bad id \"%s\"", bad[i]);
	assert_false(vsm_id_valid(NULL));
}

static void test_parse(void **state)
{
	static const struct {
		const char *text;
		int family;
		int port;
		const char *canonical;
	} good[] = {
		{ "127.0.0.1:1", AF_INET, 1, "127.0.0.1:1" },
		{ "0.0.0.0:65535", AF_INET, 65535, "0.0.0.0:65535" },
		{ "[::1]:8443", AF_INET6, 8443, "[::1]:8443" },
		{ "[2001:DB8::1]:80", AF_INET6, 80, "[2001:db8::1]:80" },
		{ "[::ffff:1.2.3.4]:80", AF_INET6, 80, "[::ffff:1.2.3.4]:80" },
	};
	static const char *bad[] = {
		"", ":80", "127.0.0.1", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536",
		"127.0.0.1:080", "127.0.0.1:+80", "127.0.0.1:-80", "127.0.0.1: 80",
		"127.0.0.1:80 ", " 127.0.0.1:80", "127.0.0.1:8x", "localhost:80", "1.2.3:80",
		"01.2.3.4:80", "256.0.0.1:80", "::1:80", "[::1]80", "[::1]:", "[::1]", "[]:80",
		"[127.0.0.1]:80", "[fe80::1%lo]:80", "[::1]:80:80", "1.2.3.4:80:80",
		"[::1:80", "::1]:80", "127.0.0.1:99999999999999999999999",
	};
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		struct sockaddr_storage ss;
		socklen_t len = 0;
		char text[VSM_ENDPOINT_MAX_LEN];
		assert_int_equal(vsm_endpoint_parse(good[i].text, &ss, &len), 0);
		assert_int_equal(ss.ss_family, good[i].family);
		in_port_t port = ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port :
							   ((struct sockaddr_in6 *)&ss)->sin6_port;
		assert_int_equal(ntohs(port), good[i].port);
		assert_int_equal(len, good[i].family == AF_INET ? sizeof(struct sockaddr_in) :
								 sizeof(struct sockaddr_in6));
		assert_int_equal(vsm_endpoint_from_sockaddr((struct sockaddr *)&ss, text, sizeof(text)), 0);
		assert_string_equal(text, good[i].canonical);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct sockaddr_storage ss;
		socklen_t len = 0;
		if (vsm_endpoint_parse(bad[i], &ss, &len) != -EINVAL)
			fail_msg("accepted bad endpoint \"%s\"", bad[i]);
		assert_int_equal(len, 0);
	}
	struct sockaddr_storage ss;
	socklen_t len;
	assert_int_equal(vsm_endpoint_parse(NULL, &ss, &len), -EINVAL);
}

static void test_format(void **state)
{
	char buf[VSM_ENDPOINT_MAX_LEN], small[8];
	struct sockaddr_storage ss;
	socklen_t len;
	assert_int_equal(vsm_endpoint_format("10.0.0.1", 5000, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "10.0.0.1:5000");
	assert_int_equal(vsm_endpoint_format("fd00::1", 443, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "[fd00::1]:443");
	assert_int_equal(vsm_endpoint_parse(buf, &ss, &len), 0);
	assert_int_equal(vsm_endpoint_format("ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255", 65535,
					     buf, sizeof(buf)),
			 0);
	assert_int_equal(vsm_endpoint_parse(buf, &ss, &len), 0);
	assert_int_equal(vsm_endpoint_format("10.0.0.1", 5000, small, sizeof(small)), -ENOSPC);
	static const struct {
		const char *ip;
		int port;
	} bad[] = { { "10.0.0.1", 0 },	    { "10.0.0.1", 65536 }, { "10.0.0.1", -5 },
		    { "host", 80 },	    { "[::1]", 80 },	   { "10.0.0.1:80", 80 },
		    { "fe80::1%lo", 80 },   { "", 80 },		   { NULL, 80 } };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(vsm_endpoint_format(bad[i].ip, bad[i].port, buf, sizeof(buf)), -EINVAL);
}

static void test_ready_lines(void **state)
{
	int err = 1;
	const char *text = NULL;
	assert_int_equal(vsm_ready_parse("READY", &err, &text), 0);
	assert_int_equal(err, 0);
	assert_string_equal(text, "");
	assert_int_equal(vsm_ready_parse("ERROR EADDRINUSE cannot bind 1.2.3.4:5", &err, &text), 0);
	assert_int_equal(err, -EADDRINUSE);
	assert_string_equal(text, "cannot bind 1.2.3.4:5");
	assert_int_equal(vsm_ready_parse("ERROR EADDRNOTAVAIL", &err, &text), 0);
	assert_int_equal(err, -EADDRNOTAVAIL);
	assert_string_equal(text, "");
	assert_int_equal(vsm_ready_parse("ERROR EWHATEVER x", &err, &text), 0);
	assert_int_equal(err, -EIO);
	static const char *bad[] = { "", "READY ", "ready", "ERROR", "ERROR ", "ERROR  x", "OK" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (vsm_ready_parse(bad[i], &err, &text) != -EPROTO)
			fail_msg("accepted bad line \"%s\"", bad[i]);

	char line[VSM_READY_LINE_MAX];
	assert_int_equal(vsm_ready_error_line(EACCES, "cannot bind\nx", line, sizeof(line)),
			 strlen("ERROR EACCES cannot bind x\n"));
	assert_string_equal(line, "ERROR EACCES cannot bind x\n");
	char tiny[16];
	size_t n = vsm_ready_error_line(EADDRINUSE, "a long text that cannot fit", tiny, sizeof(tiny));
	assert_int_equal(n, strlen(tiny));
	assert_int_equal(tiny[n - 1], '\n');
	assert_string_equal(vsm_errno_name(ENOENT), "ENOENT");
	assert_string_equal(vsm_errno_name(12345), "EIO");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ids),
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_format),
		cmocka_unit_test(test_ready_lines),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
