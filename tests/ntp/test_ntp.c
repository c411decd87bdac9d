/* Unit tests of the SNTP client and monitor against a fake server on
 * loopback whose clock runs a known offset ahead of ours. */
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "common/util.h"
#include "ntp/ntp.h"

enum fake_mode { FAKE_GOOD, FAKE_SILENT, FAKE_UNSYNCED, FAKE_WRONG_ORIGIN };

struct fake {
	int fd;
	int port;
	enum fake_mode mode;
	int64_t offset_ms;
	pthread_t thread;
	volatile int stop;
};

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

static uint64_t ntp_now(int64_t offset_ms)
{
	int64_t ms = chsm_now_ms() + offset_ms;
	return ((uint64_t)(ms / 1000) + 2208988800ULL) << 32 | (((uint64_t)(ms % 1000) << 32) / 1000);
}

static void *fake_main(void *arg)
{
	struct fake *f = arg;
	while (!f->stop) {
		uint8_t buf[128];
		struct sockaddr_storage peer;
		socklen_t plen = sizeof(peer);
		ssize_t n = recvfrom(f->fd, buf, sizeof(buf), 0, (struct sockaddr *)&peer, &plen);
		if (n < 48 || f->mode == FAKE_SILENT)
			continue;
		uint8_t out[48] = {0};
		out[0] = (0 << 6) | (4 << 3) | 4;
		out[1] = f->mode == FAKE_UNSYNCED ? 0 : 2;
		memcpy(out + 24, buf + 40, 8);
		if (f->mode == FAKE_WRONG_ORIGIN)
			out[31] ^= 1;
		put64(out + 32, ntp_now(f->offset_ms));
		put64(out + 40, ntp_now(f->offset_ms));
		sendto(f->fd, out, sizeof(out), 0, (struct sockaddr *)&peer, plen);
	}
	return NULL;
}

static void fake_start(struct fake *f, enum fake_mode mode, int64_t offset_ms)
{
	memset(f, 0, sizeof(*f));
	f->mode = mode;
	f->offset_ms = offset_ms;
	f->fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_true(f->fd >= 0);
	struct timeval tv = {.tv_sec = 0, .tv_usec = 100000};
	setsockopt(f->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	assert_int_equal(bind(f->fd, (struct sockaddr *)&a, sizeof(a)), 0);
	socklen_t alen = sizeof(a);
	getsockname(f->fd, (struct sockaddr *)&a, &alen);
	f->port = ntohs(a.sin_port);
	assert_int_equal(pthread_create(&f->thread, NULL, fake_main, f), 0);
}

static void fake_stop(struct fake *f)
{
	f->stop = 1;
	pthread_join(f->thread, NULL);
	close(f->fd);
}

static void test_offset_measured(void **state)
{
	struct fake f;
	fake_start(&f, FAKE_GOOD, 5000);
	char server[64];
	snprintf(server, sizeof(server), "127.0.0.1:%d", f.port);
	struct sntp_sample s;
	assert_int_equal(sntp_query(server, 2000, &s), 0);
	/* Loopback: the measured offset is the fake's, within a generous margin. */
	assert_true(s.offset_ms > 4000 && s.offset_ms < 6000);
	assert_int_equal(s.stratum, 2);
	fake_stop(&f);
}

static void test_bad_answers(void **state)
{
	static const struct {
		enum fake_mode mode;
		int want;
	} cases[] = {
		{FAKE_SILENT, -ETIMEDOUT},
		{FAKE_UNSYNCED, -EPROTO},
		{FAKE_WRONG_ORIGIN, -ETIMEDOUT}, /* an answer to another request is ignored */
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct fake f;
		fake_start(&f, cases[i].mode, 0);
		char server[64];
		snprintf(server, sizeof(server), "127.0.0.1:%d", f.port);
		struct sntp_sample s;
		assert_int_equal(sntp_query(server, 300, &s), cases[i].want);
		fake_stop(&f);
	}
}

static void test_bad_server_names(void **state)
{
	static const char *const bad[] = {"127.0.0.1:0", "127.0.0.1:70000", "[::1", "[::1]x", ":123", "h:x"};
	struct sntp_sample s;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(sntp_query(bad[i], 100, &s), -EINVAL);
	assert_int_equal(sntp_query("no-such-host.invalid", 100, &s), -EHOSTUNREACH);
}

static void test_monitor(void **state)
{
	struct fake f;
	fake_start(&f, FAKE_GOOD, -3000);
	char good[64], silent[64];
	snprintf(good, sizeof(good), "127.0.0.1:%d", f.port);
	snprintf(silent, sizeof(silent), "127.0.0.1:1"); /* refused or silent */
	ntp_monitor *m = NULL;
	assert_int_equal(ntp_monitor_start(60000, NULL, NULL, &m), 0);
	struct ntp_status st;
	ntp_monitor_status(m, &st);
	assert_false(st.synced);
	const char *servers[] = {silent, good};
	assert_int_equal(ntp_monitor_configure(m, servers, 2, true), 0);
	for (int i = 0; i < 200; i++) { /* up to 20 s: the first server may time out */
		ntp_monitor_status(m, &st);
		if (st.synced)
			break;
		usleep(100000);
	}
	assert_true(st.synced);
	assert_string_equal(st.server, good);
	assert_true(st.offset_ms < -2000 && st.offset_ms > -4000);
	assert_int_equal(ntp_monitor_configure(m, servers, 2, false), 0);
	ntp_monitor_status(m, &st);
	assert_false(st.synced);
	assert_false(st.enabled);
	ntp_monitor_stop(m);
	fake_stop(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_offset_measured),
		cmocka_unit_test(test_bad_answers),
		cmocka_unit_test(test_bad_server_names),
		cmocka_unit_test(test_monitor),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
