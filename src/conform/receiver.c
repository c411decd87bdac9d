/*
 * receiver.c: the checker's own small HTTP server (plain HTTP), run on
 * loopback or on the address given with --callback-listen:
 *   POST /cb/...     a callback (PROFILE.md §7): kept for the checks, 200;
 *                    /cb/retry/... answers 503 to the first attempt per
 *                    task, so that a retry must follow
 *   PUT  /slow/...   an image upload held until cf_receiver_release (at
 *                    most 60 s), then 201: keeps an export task running
 *   PUT  /fail/...   an image upload refused with 500 (4004)
 * One thread accepts; each connection is served by a thread of its own and
 * closed after one request. Received callbacks are kept in memory.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"
#include "conform/conform.h"

#define RX_MAX_HEAD  (64 * 1024)
#define RX_MAX_BODY  (4 * 1024 * 1024)
#define RX_MAX_KEPT  256

struct cf_receiver {
	int fd;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cond;
	bool stop, released;
	int active;
	struct cf_received kept[RX_MAX_KEPT];
	size_t nkept;
	char retried[64][48];   /* task ids already refused once */
	size_t nretried;
	struct {
		char prefix[16];
		int n;
	} counts[8];
};

static ssize_t read_some(int fd, char *buf, size_t len)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	if (poll(&p, 1, 10000) <= 0)
		return -1;
	return recv(fd, buf, len, 0);
}

static void send_status(int fd, int status)
{
	char out[128];
	int n = snprintf(out, sizeof(out),
			 "HTTP/1.1 %d X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", status);
	(void)!send(fd, out, (size_t)n, MSG_NOSIGNAL);
}

static void header_value(const char *head, const char *name, char *out, size_t len)
{
	out[0] = '\0';
	size_t nl = strlen(name);
	for (const char *l = strstr(head, "\r\n"); l; l = strstr(l + 2, "\r\n")) {
		const char *p = l + 2;
		if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
			p += nl + 1;
			while (*p == ' ')
				p++;
			size_t vl = strcspn(p, "\r\n");
			snprintf(out, len, "%.*s", (int)vl, p);
			return;
		}
	}
}

static void count(struct cf_receiver *rx, const char *target)
{
	for (size_t i = 0; i < 8; i++) {
		if (!rx->counts[i].prefix[0])
			snprintf(rx->counts[i].prefix, sizeof(rx->counts[i].prefix), "%.*s",
				 (int)strcspn(target + 1, "/") + 1, target);
		if (strncmp(target, rx->counts[i].prefix, strlen(rx->counts[i].prefix)) == 0) {
			rx->counts[i].n++;
			return;
		}
	}
}

struct conn {
	struct cf_receiver *rx;
	int fd;
};

static void *serve(void *arg)
{
	struct conn *c = arg;
	struct cf_receiver *rx = c->rx;
	int fd = c->fd;
	free(c);
	char *buf = malloc(RX_MAX_HEAD + 1), *body = NULL;
	size_t len = 0;
	char *end = NULL;
	if (!buf)
		goto out;
	while (!end && len < RX_MAX_HEAD) {
		ssize_t n = read_some(fd, buf + len, RX_MAX_HEAD - len);
		if (n <= 0)
			goto out;
		len += (size_t)n;
		buf[len] = '\0';
		end = strstr(buf, "\r\n\r\n");
	}
	if (!end)
		goto out;
	*end = '\0';
	struct cf_received r = {0};
	if (sscanf(buf, "%7s %511s", r.method, r.target) != 2)
		goto out;
	char cl[32];
	header_value(buf, "Content-Length", cl, sizeof(cl));
	uint64_t want = 0;
	if (cl[0] && chsm_parse_u64(cl, UINT64_MAX, &want) < 0)
		goto out;
	bool keep = strcmp(r.method, "POST") == 0 && strncmp(r.target, "/cb/", 4) == 0;
	size_t have = len - (size_t)(end + 4 - buf);
	if (keep) {
		if (want > RX_MAX_BODY)
			goto out;
		body = malloc(want + 1);
		if (!body)
			goto out;
		memcpy(body, end + 4, have < want ? have : want);
		while (have < want) {
			ssize_t n = read_some(fd, body + have, want - have);
			if (n <= 0)
				goto out;
			have += (size_t)n;
		}
		body[want] = '\0';
	} else {
		char sinkbuf[65536];
		while (have < want) {
			ssize_t n = read_some(fd, sinkbuf, sizeof(sinkbuf));
			if (n <= 0)
				goto out;
			have += (size_t)n;
		}
	}
	pthread_mutex_lock(&rx->mu);
	count(rx, r.target);
	pthread_mutex_unlock(&rx->mu);
	if (strncmp(r.target, "/slow/", 6) == 0) {
		struct timespec until;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += 60;
		pthread_mutex_lock(&rx->mu);
		while (!rx->released && !rx->stop)
			if (pthread_cond_timedwait(&rx->cond, &rx->mu, &until) == ETIMEDOUT)
				break;
		pthread_mutex_unlock(&rx->mu);
		send_status(fd, 201);
		goto out;
	}
	if (strncmp(r.target, "/fail/", 6) == 0) {
		send_status(fd, 500);
		goto out;
	}
	if (!keep) {
		send_status(fd, 404);
		goto out;
	}
	header_value(buf, "X-GMT-Timestamp", r.ts, sizeof(r.ts));
	header_value(buf, "X-GMT-Nonce", r.nonce, sizeof(r.nonce));
	header_value(buf, "X-GMT-Key-Id", r.key_id, sizeof(r.key_id));
	header_value(buf, "X-GMT-Signature-Alg", r.alg, sizeof(r.alg));
	header_value(buf, "X-GMT-Signature", r.sig, sizeof(r.sig));
	r.body = body;
	r.body_len = want;
	body = NULL;
	int status = 200;
	pthread_mutex_lock(&rx->mu);
	if (strncmp(r.target, "/cb/retry/", 10) == 0) {
		json_t *j = json_loadb(r.body, r.body_len, 0, NULL);
		const char *tid = json_string_value(json_object_get(j, "taskId"));
		bool seen = false;
		for (size_t i = 0; tid && i < rx->nretried; i++)
			seen |= strcmp(rx->retried[i], tid) == 0;
		if (tid && !seen && rx->nretried < 64) {
			snprintf(rx->retried[rx->nretried++], 48, "%s", tid);
			status = 503;
		}
		json_decref(j);
	}
	if (status == 200 && rx->nkept < RX_MAX_KEPT) {
		rx->kept[rx->nkept++] = r;
		r.body = NULL;
		pthread_cond_broadcast(&rx->cond);
	}
	pthread_mutex_unlock(&rx->mu);
	free(r.body);
	send_status(fd, status);
out:
	free(buf);
	free(body);
	close(fd);
	pthread_mutex_lock(&rx->mu);
	rx->active--;
	pthread_cond_broadcast(&rx->cond);
	pthread_mutex_unlock(&rx->mu);
	return NULL;
}

static void *accept_loop(void *arg)
{
	struct cf_receiver *rx = arg;
	for (;;) {
		struct pollfd p = {.fd = rx->fd, .events = POLLIN};
		int n = poll(&p, 1, 200);
		pthread_mutex_lock(&rx->mu);
		bool stop = rx->stop;
		pthread_mutex_unlock(&rx->mu);
		if (stop)
			return NULL;
		if (n <= 0)
			continue;
		int fd = accept4(rx->fd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			continue;
		struct conn *c = malloc(sizeof(*c));
		pthread_t t;
		if (!c) {
			close(fd);
			continue;
		}
		c->rx = rx;
		c->fd = fd;
		pthread_mutex_lock(&rx->mu);
		rx->active++;
		pthread_mutex_unlock(&rx->mu);
		if (pthread_create(&t, NULL, serve, c) != 0) {
			close(fd);
			free(c);
			pthread_mutex_lock(&rx->mu);
			rx->active--;
			pthread_mutex_unlock(&rx->mu);
			continue;
		}
		pthread_detach(t);
	}
}

int cf_receiver_start(struct cf *cf)
{
	const char *listen_on = cf->callback_listen ? cf->callback_listen : "127.0.0.1:0";
	char host[256];
	const char *colon = strrchr(listen_on, ':');
	if (!colon || (size_t)(colon - listen_on) >= sizeof(host))
		return -1;
	snprintf(host, sizeof(host), "%.*s", (int)(colon - listen_on), listen_on);
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *ai = NULL;
	if (getaddrinfo(host, colon + 1, &hints, &ai) != 0)
		return -1;
	struct cf_receiver *rx = calloc(1, sizeof(*rx));
	if (!rx) {
		freeaddrinfo(ai);
		return -1;
	}
	rx->fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int one = 1;
	setsockopt(rx->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (rx->fd < 0 || bind(rx->fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(rx->fd, 64) < 0) {
		freeaddrinfo(ai);
		if (rx->fd >= 0)
			close(rx->fd);
		free(rx);
		return -1;
	}
	freeaddrinfo(ai);
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	getsockname(rx->fd, (struct sockaddr *)&ss, &sl);
	int port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
					    : ntohs(((struct sockaddr_in *)&ss)->sin_port);
	pthread_mutex_init(&rx->mu, NULL);
	pthread_cond_init(&rx->cond, NULL);
	if (pthread_create(&rx->thread, NULL, accept_loop, rx) != 0) {
		close(rx->fd);
		free(rx);
		return -1;
	}
	cf->rx = rx;
	if (cf->callback_base_opt)
		snprintf(cf->callback_base, sizeof(cf->callback_base), "%s", cf->callback_base_opt);
	else if (strchr(host, ':'))
		snprintf(cf->callback_base, sizeof(cf->callback_base), "http://[%.200s]:%d", host, port);
	else
		snprintf(cf->callback_base, sizeof(cf->callback_base), "http://%.200s:%d", host, port);
	return 0;
}

void cf_receiver_stop(struct cf *cf)
{
	struct cf_receiver *rx = cf->rx;
	if (!rx)
		return;
	pthread_mutex_lock(&rx->mu);
	rx->stop = true;
	pthread_cond_broadcast(&rx->cond);
	pthread_mutex_unlock(&rx->mu);
	pthread_join(rx->thread, NULL);
	/* Connection threads end within their 10 s read limit. */
	pthread_mutex_lock(&rx->mu);
	while (rx->active > 0)
		pthread_cond_wait(&rx->cond, &rx->mu);
	pthread_mutex_unlock(&rx->mu);
	close(rx->fd);
	for (size_t i = 0; i < rx->nkept; i++)
		free(rx->kept[i].body);
	free(rx);
	cf->rx = NULL;
}

int cf_receiver_wait(struct cf *cf, const char *task_id, long timeout_ms,
		     struct cf_received *ret)
{
	struct cf_receiver *rx = cf->rx;
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += timeout_ms / 1000;
	until.tv_nsec += (timeout_ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	int rc = -1;
	pthread_mutex_lock(&rx->mu);
	for (;;) {
		for (size_t i = 0; i < rx->nkept; i++) {
			json_t *j = json_loadb(rx->kept[i].body, rx->kept[i].body_len, 0, NULL);
			const char *tid = json_string_value(json_object_get(j, "taskId"));
			bool match = tid && strcmp(tid, task_id) == 0;
			json_decref(j);
			if (match) {
				*ret = rx->kept[i];
				ret->body = malloc(rx->kept[i].body_len + 1);
				if (ret->body) {
					memcpy(ret->body, rx->kept[i].body, rx->kept[i].body_len + 1);
					rc = 0;
				}
				goto out;
			}
		}
		if (pthread_cond_timedwait(&rx->cond, &rx->mu, &until) == ETIMEDOUT)
			break;
	}
out:
	pthread_mutex_unlock(&rx->mu);
	return rc;
}

int cf_receiver_count(struct cf *cf, const char *prefix)
{
	int n = 0;
	pthread_mutex_lock(&cf->rx->mu);
	for (size_t i = 0; i < 8; i++)
		if (strcmp(cf->rx->counts[i].prefix, prefix) == 0)
			n = cf->rx->counts[i].n;
	pthread_mutex_unlock(&cf->rx->mu);
	return n;
}

void cf_receiver_release(struct cf *cf)
{
	pthread_mutex_lock(&cf->rx->mu);
	cf->rx->released = true;
	pthread_cond_broadcast(&cf->rx->cond);
	pthread_mutex_unlock(&cf->rx->mu);
}
