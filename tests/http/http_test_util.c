/*
 * http_test_util.c: see http_test_util.h.
 */
#include "http_test_util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"
#include "crypto/tls.h"

struct echo_seen echo_seen = {.lock = PTHREAD_MUTEX_INITIALIZER};

int test_tls_setup(struct test_tls *t)
{
	snprintf(t->dir, sizeof(t->dir), "/tmp/chsm-http-XXXXXX");
	if (!mkdtemp(t->dir))
		return -errno;
	snprintf(t->cert, sizeof(t->cert), "%s/cert.pem", t->dir);
	snprintf(t->key, sizeof(t->key), "%s/key.pem", t->dir);
	const char *dns[] = {"localhost", NULL};
	const char *ips[] = {"127.0.0.1", "::1", NULL};
	return crypto_tls_make_self_signed(t->key, t->cert, "localhost", dns, ips, 2);
}

void test_tls_teardown(struct test_tls *t)
{
	char cmd[160];
	if (!t->dir[0] || strncmp(t->dir, "/tmp/chsm-http-", 15) != 0)
		return;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", t->dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", t->dir);
}

void echo_handler(void *ctx, const struct http_request *req, struct http_response *resp)
{
	const char *x = http_request_header(req, "x-test");
	int refused = req->refusal == HTTP_REFUSAL_BODY_TOO_LARGE;

	pthread_mutex_lock(&echo_seen.lock);
	echo_seen.calls++;
	echo_seen.refusals += refused;
	snprintf(echo_seen.method, sizeof(echo_seen.method), "%s", req->method);
	snprintf(echo_seen.target, sizeof(echo_seen.target), "%s", req->target);
	echo_seen.body_len = req->body_len;
	echo_seen.refusal = refused;
	pthread_mutex_unlock(&echo_seen.lock);

	size_t cap = strlen(req->target) + strlen(req->path) + (x ? strlen(x) : 0) + 256;
	char *body = malloc(cap);
	int n = body ? snprintf(body, cap,
				"{\"method\":\"%s\",\"target\":\"%s\",\"path\":\"%s\",\"bodyLen\":%zu,"
				"\"refusal\":%d,\"xTest\":\"%s\",\"peerSet\":%s}",
				req->method, req->target, req->path, req->body_len, refused, x ? x : "",
				req->peer && strchr(req->peer, ':') ? "true" : "false")
		     : -1;
	if (n < 0 || (size_t)n >= cap) {
		free(body);
		resp->status = 500;
		return;
	}
	resp->status = refused ? 413 : 200;
	resp->body = body;
	resp->body_len = (size_t)n;
	http_response_add_header(resp, "X-Echo", "yes");
}

int echo_calls(void)
{
	pthread_mutex_lock(&echo_seen.lock);
	int n = echo_seen.calls;
	pthread_mutex_unlock(&echo_seen.lock);
	return n;
}

int test_server_start(const struct test_tls *t, struct http_server_config cfg,
		      http_server **ret_srv)
{
	cfg.host = cfg.host ? cfg.host : "127.0.0.1";
	cfg.port = 0;
	if (!cfg.plain_http) {
		cfg.cert_file = t->cert;
		cfg.key_file = t->key;
	}
	return http_server_start(&cfg, echo_handler, NULL, ret_srv);
}

int run_cmd(const char *cmd, char **ret_out)
{
	FILE *p = popen(cmd, "r");
	if (!p)
		return -1;
	size_t cap = 4096, len = 0;
	char *out = malloc(cap);
	size_t n;
	while (out && (n = fread(out + len, 1, cap - len - 1, p)) > 0) {
		len += n;
		if (cap - len < 1024) {
			char *bigger = realloc(out, cap * 2);
			if (!bigger) {
				free(out);
				out = NULL;
				break;
			}
			out = bigger;
			cap *= 2;
		}
	}
	int status = pclose(p);
	if (!out)
		return -1;
	out[len] = '\0';
	*ret_out = out;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

void curl_prefix(const struct test_tls *t, char *buf, size_t cap)
{
	/* -q: no ~/.curlrc; no proxy from the environment. */
	snprintf(buf, cap, "curl -q -sS --noproxy '*' --max-time 20 --cacert '%s'", t->cert);
}

int raw_connect(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

int raw_send(int fd, const void *data, size_t len)
{
	const char *p = data;
	while (len > 0) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

size_t raw_read(int fd, char *buf, size_t cap, int timeout_ms, bool *ret_closed)
{
	size_t len = 0;
	*ret_closed = false;
	while (len + 1 < cap) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		int r = poll(&pfd, 1, timeout_ms);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		ssize_t n = recv(fd, buf + len, cap - len - 1, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			*ret_closed = true;
			break;
		}
		len += (size_t)n;
	}
	buf[len] = '\0';
	return len;
}

bool raw_wait_closed(int fd, int timeout_ms)
{
	int64_t deadline = chsm_monotonic_ms() + timeout_ms;
	char buf[4096];
	for (;;) {
		int64_t left = deadline - chsm_monotonic_ms();
		if (left <= 0)
			return false;
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		int r = poll(&pfd, 1, (int)left);
		if (r < 0 && errno == EINTR)
			continue;
		if (r == 0)
			return false;
		ssize_t n = recv(fd, buf, sizeof(buf), 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return true;
	}
}

int echo_last_refusal(void)
{
	pthread_mutex_lock(&echo_seen.lock);
	int r = echo_seen.refusal;
	pthread_mutex_unlock(&echo_seen.lock);
	return r;
}

int replace_all(const char *in, const char *token, const char *value, char *out, size_t cap)
{
	size_t len = 0, tlen = strlen(token), vlen = strlen(value);
	while (*in) {
		const char *piece = in;
		size_t n = 1;
		if (strncmp(in, token, tlen) == 0) {
			piece = value;
			n = vlen;
			in += tlen;
		} else {
			in++;
		}
		if (len + n >= cap)
			return -ENOSPC;
		memcpy(out + len, piece, n);
		len += n;
	}
	out[len] = '\0';
	return 0;
}

int count_substr(const char *hay, const char *needle)
{
	int n = 0;
	for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle))
		n++;
	return n;
}

int write_body_file(const struct test_tls *t, const char *name, size_t len, char *out, size_t cap)
{
	snprintf(out, cap, "%s/%s", t->dir, name);
	char *data = malloc(len ? len : 1);
	if (!data)
		return -ENOMEM;
	memset(data, 'a', len);
	int r = chsm_write_file_atomic(out, data, len, 0600);
	free(data);
	return r;
}
