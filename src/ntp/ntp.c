/*
 * ntp.c: see ntp.h. The SNTP exchange follows RFC 4330: a 48-byte client
 * request (LI 0, VN 4, mode 3) whose transmit timestamp is echoed by the
 * server as the originate timestamp, which binds answer to request.
 */
#include "ntp/ntp.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"

#define NTP_PACKET_LEN 48
/* Seconds between 1900-01-01 (NTP era 0) and 1970-01-01. */
#define NTP_UNIX_DELTA 2208988800ULL
#define NTP_QUERY_TIMEOUT_MS 2000
#define NTP_DEFAULT_PORT 123

/* Unix ms <-> 64-bit NTP timestamp. */
static uint64_t ms_to_ntp(int64_t ms)
{
	uint64_t sec = (uint64_t)(ms / 1000) + NTP_UNIX_DELTA;
	uint64_t frac = ((uint64_t)(ms % 1000) << 32) / 1000;
	return sec << 32 | frac;
}

static int64_t ntp_to_ms(uint64_t t)
{
	int64_t sec = (int64_t)(t >> 32) - (int64_t)NTP_UNIX_DELTA;
	int64_t frac = (int64_t)(((t & 0xffffffffULL) * 1000) >> 32);
	return sec * 1000 + frac;
}

static uint64_t get_be64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

static void put_be64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

/* Splits server into host and port strings. */
static int split_server(const char *server, char *host, size_t hcap, char *port, size_t pcap)
{
	const char *h = server, *p = NULL;
	size_t hl;
	if (server[0] == '[') {
		const char *end = strchr(server, ']');
		if (!end)
			return -EINVAL;
		h = server + 1;
		hl = (size_t)(end - h);
		if (end[1] == ':')
			p = end + 2;
		else if (end[1] != '\0')
			return -EINVAL;
	} else {
		const char *colon = strchr(server, ':');
		/* more than one colon: a bare IPv6 address */
		if (colon && !strchr(colon + 1, ':')) {
			hl = (size_t)(colon - server);
			p = colon + 1;
		} else {
			hl = strlen(server);
		}
	}
	uint64_t pn = NTP_DEFAULT_PORT;
	if ((p && chsm_parse_u64(p, 65535, &pn) < 0) || pn == 0 || hl == 0 || hl >= hcap)
		return -EINVAL;
	memcpy(host, h, hl);
	host[hl] = '\0';
	snprintf(port, pcap, "%u", (unsigned)pn);
	return 0;
}

int sntp_query(const char *server, int timeout_ms, struct sntp_sample *ret)
{
	char host[256], port[8];
	int r = split_server(server, host, sizeof(host), port, sizeof(port));
	if (r < 0)
		return r;
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_DGRAM}, *ai = NULL;
	if (getaddrinfo(host, port, &hints, &ai) != 0 || !ai)
		return -EHOSTUNREACH;
	int fd = socket(ai->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		r = -errno;
		goto out;
	}
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
		r = -errno;
		goto out;
	}
	uint8_t req[NTP_PACKET_LEN] = {0}, resp[NTP_PACKET_LEN + 64];
	req[0] = (0 << 6) | (4 << 3) | 3; /* LI 0, VN 4, client */
	int64_t t1 = chsm_now_ms();
	uint64_t t1_ntp = ms_to_ntp(t1);
	/* Random low bits make the echoed timestamp unguessable. */
	uint8_t noise[2];
	if (getentropy(noise, sizeof(noise)) == 0)
		t1_ntp ^= (uint64_t)noise[0] << 8 | noise[1];
	put_be64(req + 40, t1_ntp);
	if (send(fd, req, sizeof(req), 0) != (ssize_t)sizeof(req)) {
		r = -errno;
		goto out;
	}
	int64_t deadline = chsm_monotonic_ms() + timeout_ms;
	for (;;) {
		int left = (int)(deadline - chsm_monotonic_ms());
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		if (left <= 0 || poll(&pfd, 1, left) == 0) {
			r = -ETIMEDOUT;
			goto out;
		}
		ssize_t n = recv(fd, resp, sizeof(resp), 0);
		int64_t t4 = chsm_now_ms();
		if (n < 0) {
			if (errno == EINTR)
				continue;
			r = -errno;
			goto out;
		}
		int mode = resp[0] & 7, stratum = resp[1];
		if (n < NTP_PACKET_LEN || get_be64(resp + 24) != t1_ntp)
			continue; /* not the answer to our request */
		if ((mode != 4 && mode != 5) || stratum == 0 || stratum > 15 || (resp[0] >> 6) == 3) {
			r = -EPROTO;
			goto out;
		}
		int64_t t2 = ntp_to_ms(get_be64(resp + 32)), t3 = ntp_to_ms(get_be64(resp + 40));
		ret->offset_ms = ((t2 - t1) + (t3 - t4)) / 2;
		ret->delay_ms = (t4 - t1) - (t3 - t2);
		ret->stratum = stratum;
		r = 0;
		goto out;
	}
out:
	if (fd >= 0)
		close(fd);
	freeaddrinfo(ai);
	return r;
}

/* ---- monitor ---- */

struct ntp_monitor {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	pthread_t thread;
	bool stopping, kicked;
	int interval_ms;
	int port;
	char servers[CHSM_MAX_NTP_SERVERS][256];
	int nservers;
	struct ntp_status status;
	ntp_result_fn on_result;
	void *ctx;
};

/* The address sntp_query asks for server on port. Configured servers carry
 * no port (7.2.5): a bare IPv6 address has colons and needs brackets before
 * one is added. */
static int query_target(const char *server, int port, char *out, size_t cap)
{
	int n;
	if (port == NTP_DEFAULT_PORT)
		n = snprintf(out, cap, "%s", server);
	else if (strchr(server, ':'))
		n = snprintf(out, cap, "[%s]:%d", server, port);
	else
		n = snprintf(out, cap, "%s:%d", server, port);
	return n < 0 || (size_t)n >= cap ? -EINVAL : 0;
}

static void measure(ntp_monitor *m)
{
	char servers[CHSM_MAX_NTP_SERVERS][256];
	pthread_mutex_lock(&m->lock);
	int n = m->status.enabled ? m->nservers : 0;
	int port = m->port;
	memcpy(servers, m->servers, sizeof(servers));
	pthread_mutex_unlock(&m->lock);
	if (n == 0)
		return;
	struct ntp_status st = {.enabled = true, .measured_at = chsm_now_ms()};
	for (int i = 0; i < n; i++) {
		struct sntp_sample s;
		char target[sizeof(servers[i]) + 16];
		if (query_target(servers[i], port, target, sizeof(target)) == 0 &&
		    sntp_query(target, NTP_QUERY_TIMEOUT_MS, &s) == 0) {
			st.synced = true;
			st.offset_ms = s.offset_ms;
			memcpy(st.server, servers[i], sizeof(st.server)); /* same size, NUL-terminated */
			break;
		}
	}
	pthread_mutex_lock(&m->lock);
	/* A configuration that changed meanwhile makes this round stale. */
	bool stale = m->kicked || !m->status.enabled;
	if (!stale)
		m->status = st;
	pthread_mutex_unlock(&m->lock);
	if (!stale && m->on_result)
		m->on_result(m->ctx, &st);
}

static void *monitor_main(void *arg)
{
	ntp_monitor *m = arg;
	pthread_mutex_lock(&m->lock);
	while (!m->stopping) {
		m->kicked = false;
		pthread_mutex_unlock(&m->lock);
		measure(m);
		pthread_mutex_lock(&m->lock);
		if (m->stopping || m->kicked)
			continue;
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += m->interval_ms / 1000;
		ts.tv_nsec += (long)(m->interval_ms % 1000) * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		while (!m->stopping && !m->kicked &&
		       pthread_cond_timedwait(&m->cond, &m->lock, &ts) == 0)
			;
	}
	pthread_mutex_unlock(&m->lock);
	return NULL;
}

int ntp_monitor_start(int interval_ms, ntp_result_fn on_result, void *ctx, ntp_monitor **ret)
{
	if (interval_ms <= 0)
		return -EINVAL;
	ntp_monitor *m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->interval_ms = interval_ms;
	m->port = NTP_DEFAULT_PORT;
	m->on_result = on_result;
	m->ctx = ctx;
	pthread_mutex_init(&m->lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&m->cond, &ca);
	pthread_condattr_destroy(&ca);
	if (pthread_create(&m->thread, NULL, monitor_main, m) != 0) {
		pthread_cond_destroy(&m->cond);
		pthread_mutex_destroy(&m->lock);
		free(m);
		return -EAGAIN;
	}
	*ret = m;
	return 0;
}

int ntp_monitor_set_port(ntp_monitor *m, int port)
{
	if (port < 1 || port > 65535)
		return -EINVAL;
	pthread_mutex_lock(&m->lock);
	m->port = port;
	pthread_mutex_unlock(&m->lock);
	return 0;
}

int ntp_monitor_configure(ntp_monitor *m, const char *const *servers, int n, bool enabled)
{
	if (n < 0 || n > CHSM_MAX_NTP_SERVERS)
		return -EINVAL;
	for (int i = 0; i < n; i++)
		if (strlen(servers[i]) >= sizeof(m->servers[i]))
			return -EINVAL;
	pthread_mutex_lock(&m->lock);
	for (int i = 0; i < n; i++)
		snprintf(m->servers[i], sizeof(m->servers[i]), "%s", servers[i]);
	m->nservers = n;
	memset(&m->status, 0, sizeof(m->status));
	m->status.enabled = enabled && n > 0;
	m->kicked = true;
	pthread_cond_signal(&m->cond);
	pthread_mutex_unlock(&m->lock);
	return 0;
}

void ntp_monitor_status(ntp_monitor *m, struct ntp_status *ret)
{
	pthread_mutex_lock(&m->lock);
	*ret = m->status;
	pthread_mutex_unlock(&m->lock);
}

void ntp_monitor_stop(ntp_monitor *m)
{
	if (!m)
		return;
	pthread_mutex_lock(&m->lock);
	m->stopping = true;
	pthread_cond_signal(&m->cond);
	pthread_mutex_unlock(&m->lock);
	pthread_join(m->thread, NULL);
	pthread_cond_destroy(&m->cond);
	pthread_mutex_destroy(&m->lock);
	free(m);
}
