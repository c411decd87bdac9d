/*
 * fake_chsm.c: see fake_chsm.h. Test code: it asserts nothing itself and
 * aborts on setup failures.
 */
#define _GNU_SOURCE /* memmem, strcasestr */
#include "fake_chsm.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <jansson.h>

#include "common/util.h"
#include "proto/auth.h"
#include "proto/codes.h"
#include "proto/envelope.h"

#define FINGERPRINT_TARGET GMT_API_BASE "/auth/platform-key/fingerprint"
#define PLATFORM_KEY_TARGET GMT_API_BASE "/auth/platform-key"
#define OTHER_FP "0000000000000000000000000000000000000000000000000000000000000001"

static void die(const char *what)
{
	fprintf(stderr, "fake_chsm: %s failed\n", what);
	abort();
}

static int nonce_use(void *ctx, const char *nonce, int64_t ts)
{
	struct fake_chsm *f = ctx;
	for (size_t i = 0; i < f->n_nonces; i++)
		if (strcmp(f->nonces[i], nonce) == 0)
			return 1;
	if (f->n_nonces < 64)
		snprintf(f->nonces[f->n_nonces++], sizeof(f->nonces[0]), "%s", nonce);
	return 0;
}

/* Reads one request from fd into *req; leftover bytes stay in buf.
 * Returns 0, or -1 at end of stream or on a malformed request. */
static int read_request(int fd, char *buf, size_t cap, size_t *have, struct fake_request *req)
{
	char *end;
	memset(req, 0, sizeof(*req));
	while (!(end = memmem(buf, *have, "\r\n\r\n", 4))) {
		if (*have == cap)
			return -1;
		ssize_t n = read(fd, buf + *have, cap - *have);
		if (n <= 0)
			return -1;
		*have += (size_t)n;
	}
	size_t head_len = (size_t)(end - buf) + 4, body_len = 0;
	*end = '\0';
	char *save = NULL, *line = strtok_r(buf, "\r\n", &save);
	if (!line || sscanf(line, "%15s %511s", req->method, req->target) != 2)
		return -1;
	while ((line = strtok_r(NULL, "\r\n", &save))) {
		char *colon = strchr(line, ':');
		if (!colon)
			return -1;
		*colon = '\0';
		char *v = colon + 1;
		while (*v == ' ')
			v++;
		if (strcasecmp(line, "Content-Length") == 0) {
			snprintf(req->content_length, sizeof(req->content_length), "%s", v);
			body_len = strtoul(v, NULL, 10);
		} else if (strcasecmp(line, "Content-Type") == 0) {
			req->has_content_type = true;
			snprintf(req->content_type, sizeof(req->content_type), "%s", v);
		} else if (strcasecmp(line, "Expect") == 0) {
			req->has_expect = true;
		} else if (strcasecmp(line, GMT_HDR_SIGNATURE) == 0) {
			req->has_signature = true;
		} else if (strcasecmp(line, GMT_HDR_IDEMPOTENCY) == 0) {
			req->has_idempotency = true;
			snprintf(req->idempotency, sizeof(req->idempotency), "%s", v);
		} else if (strcasecmp(line, GMT_HDR_NONCE) == 0) {
			req->has_nonce = true;
			snprintf(req->nonce, sizeof(req->nonce), "%s", v);
		}
		*colon = ':'; /* keep the header text for verification below */
	}
	if (body_len >= sizeof(req->body))
		return -1;
	memmove(buf, buf + head_len, *have - head_len);
	*have -= head_len;
	while (*have < body_len) {
		ssize_t n = read(fd, buf + *have, cap - *have);
		if (n <= 0)
			return -1;
		*have += (size_t)n;
	}
	memcpy(req->body, buf, body_len);
	req->body_len = body_len;
	memmove(buf, buf + body_len, *have - body_len);
	*have -= body_len;
	return 0;
}

/* The authentication headers of a request, from a copy of its head. */
static void auth_headers(const char *head, struct gmt_auth_headers *h, char store[6][256])
{
	static const char *const names[] = {GMT_HDR_TIMESTAMP, GMT_HDR_NONCE, GMT_HDR_KEY_ID,
					    GMT_HDR_ALG, GMT_HDR_SIGNATURE, GMT_HDR_IDEMPOTENCY};
	const char **slots[] = {&h->timestamp, &h->nonce, &h->key_id, &h->alg, &h->signature,
				&h->idempotency_key};
	memset(h, 0, sizeof(*h));
	for (size_t i = 0; i < 6; i++) {
		char pat[64];
		snprintf(pat, sizeof(pat), "\r\n%s: ", names[i]);
		const char *p = strcasestr(head, pat);
		if (!p)
			continue;
		p += strlen(pat);
		size_t n = strcspn(p, "\r\n");
		snprintf(store[i], 256, "%.*s", (int)n, p);
		*slots[i] = store[i];
	}
}

static json_t *task_json(struct fake_chsm *f, const char *id, const char *state)
{
	bool failed = strcmp(state, "failed") == 0;
	return json_pack("{s:s, s:s, s:s, s:s, s:i, s:s}", "taskId", id, "operation",
			 "vsm.start", "target", "v1", "state", state, "code",
			 failed ? GMT_E_DOWNLOAD : 0, "message",
			 failed ? gmt_code_message(GMT_E_DOWNLOAD) : "OK");
}

/* Decides the answer to one request: HTTP status, code and data. */
static void route(struct fake_chsm *f, const struct fake_request *req, const char *head,
		  int *status, int *code, json_t **data)
{
	*code = 0;
	*data = NULL;
	if (strcmp(req->method, "GET") == 0 && strcmp(req->target, FINGERPRINT_TARGET) == 0) {
		f->fingerprint_requests++;
		bool configured = f->platform_key != NULL;
		*data = json_object();
		json_object_set_new(*data, "configured", json_boolean(configured));
		json_object_set_new(*data, "fingerprint",
				    configured ? json_string(f->platform_fp) : json_null());
		json_object_set_new(*data, "configuredAt",
				    configured ? json_integer(1700000000000LL) : json_null());
		json_object_set_new(*data, "deviceKeyFingerprint",
				    json_string(f->fault == FAULT_CLAIM_OTHER_FP ? OTHER_FP
										  : f->device_fp));
		json_object_set_new(*data, "devicePublicKey", json_string(f->device_pem));
		*status = 200;
		return;
	}
	f->last = *req;
	struct gmt_auth_headers h;
	char store[6][256];
	auth_headers(head, &h, store);
	struct gmt_verifier v = {
		.now_ms = chsm_now_ms(),
		.platform_key = f->platform_key,
		.platform_fingerprint = f->platform_key ? f->platform_fp : NULL,
		.route_allows_enrollment = strcmp(req->method, "PUT") == 0 &&
					   strcmp(req->target, PLATFORM_KEY_TARGET) == 0,
		.enrollment_open = f->enrollment_code && !f->platform_key,
		.enrollment_code = f->enrollment_code,
		.nonce_use = nonce_use,
		.nonce_ctx = f,
	};
	struct gmt_auth_result res;
	*code = gmt_verify_request(&h, req->method, req->target, req->body, req->body_len, &v, &res);
	f->last_auth_code = *code;
	f->last_enrollment = res.enrollment;
	if (*code != 0) {
		*status = gmt_code_http_status(*code);
		return;
	}
	const char *tasks = GMT_API_BASE "/tasks/";
	if (strncmp(req->target, tasks, strlen(tasks)) == 0) {
		const char *id = req->target + strlen(tasks);
		if (strcmp(id, "missing") == 0 || f->n_task_states == 0) {
			*code = GMT_E_TASK_NOT_FOUND;
		} else {
			size_t i = f->task_polls < f->n_task_states ? f->task_polls
								   : f->n_task_states - 1;
			f->task_polls++;
			if (strcmp(f->task_states[i], "unavailable") == 0)
				*code = GMT_E_UNAVAILABLE;
			else
				*data = task_json(f, id, f->task_states[i]);
		}
	} else if (strcmp(req->target, GMT_API_BASE "/vsms/missing") == 0) {
		*code = GMT_E_VSM_NOT_FOUND;
	} else if (f->n_task_states > 0 && strcmp(req->method, "GET") != 0) {
		*data = task_json(f, "task-1", "pending"); /* accepted async work */
		*status = 202;
		return;
	} else {
		*data = json_pack("{s:s, s:s}", "method", req->method, "target", req->target);
	}
	*status = *code ? gmt_code_http_status(*code) : 200;
}

static void respond(struct fake_chsm *f, int fd, const struct fake_request *req, const char *head)
{
	int status, code;
	json_t *data = NULL;
	char *body = NULL, rid[64], sig[CHSM_SIGNATURE_B64_MAX + 1], out[16384];
	size_t body_len = 0;

	pthread_mutex_lock(&f->lock);
	f->requests++;
	route(f, req, head, &status, &code, &data);
	bool bootstrap = strcmp(req->target, FINGERPRINT_TARGET) == 0;
	enum fake_fault fault = f->fault_after_bootstrap && bootstrap ? FAULT_NONE : f->fault;
	pthread_mutex_unlock(&f->lock);

	gmt_new_request_id(rid);
	if (fault == FAULT_NOT_ENVELOPE) {
		body = strdup("<html>gateway error</html>");
		body_len = strlen(body);
	} else if (gmt_envelope(code, NULL, rid, data, &body, &body_len) < 0) {
		die("gmt_envelope");
	}
	const char *nonce = req->has_nonce ? req->nonce : NULL;
	if (gmt_sign_response(f->device_key, nonce, fault == FAULT_TAMPER_SIG ? status + 1 : status,
			      body, body_len, sig) < 0)
		die("gmt_sign_response");
	int n = snprintf(out, sizeof(out),
			 "HTTP/1.1 %d X\r\nContent-Type: application/json\r\n"
			 "Content-Length: %zu\r\n%s: %s\r\n",
			 status, body_len, GMT_HDR_DEVICE_KEY_ID,
			 fault == FAULT_WRONG_KEY_ID ? OTHER_FP : f->device_fp);
	if (fault != FAULT_NO_SIG)
		n += snprintf(out + n, sizeof(out) - (size_t)n, "%s: %s\r\n",
			      GMT_HDR_DEVICE_SIGNATURE, sig);
	if (fault == FAULT_TWO_SIGS)
		n += snprintf(out + n, sizeof(out) - (size_t)n, "%s: %s\r\n",
			      GMT_HDR_DEVICE_SIGNATURE, sig);
	n += snprintf(out + n, sizeof(out) - (size_t)n, "\r\n%s", body);
	if (write(fd, out, (size_t)n) != n)
		fprintf(stderr, "fake_chsm: short write\n");
	free(body);
	json_decref(data);
}

struct conn_arg {
	struct fake_chsm *f;
	int fd;
};

static void *serve_connection(void *arg)
{
	struct conn_arg *c = arg;
	char *buf = malloc(65536), *head = malloc(65536);
	const size_t cap = 65536;
	size_t have = 0;
	if (!buf || !head)
		die("malloc");
	struct fake_request req;
	for (;;) {
		/* keep a copy of the head for the authentication headers */
		char *end;
		while (!(end = memmem(buf, have, "\r\n\r\n", 4))) {
			ssize_t n = have < cap ? read(c->fd, buf + have, cap - have) : -1;
			if (n <= 0)
				goto out;
			have += (size_t)n;
		}
		size_t head_len = (size_t)(end - buf) + 2;
		snprintf(head, cap, "%.*s", (int)head_len, buf);
		if (read_request(c->fd, buf, cap, &have, &req) < 0)
			goto out;
		respond(c->f, c->fd, &req, head);
	}
out:
	free(buf);
	free(head);
	free(c);
	return NULL;
}

static void *accept_loop(void *arg)
{
	struct fake_chsm *f = arg;
	for (;;) {
		int fd = accept(f->listen_fd, NULL, NULL);
		if (fd < 0)
			return NULL;
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		pthread_mutex_lock(&f->lock);
		if (f->n_conns == 32) {
			pthread_mutex_unlock(&f->lock);
			close(fd);
			continue;
		}
		f->accepts++;
		struct conn_arg *c = malloc(sizeof(*c));
		if (!c)
			die("malloc");
		c->f = f;
		c->fd = fd;
		f->conn_fds[f->n_conns] = fd;
		if (pthread_create(&f->conn_threads[f->n_conns], NULL, serve_connection, c) != 0)
			die("pthread_create");
		f->n_conns++;
		pthread_mutex_unlock(&f->lock);
	}
}

struct fake_chsm *fake_chsm_start(crypto_sm2_key *platform_key, const char *enrollment_code)
{
	struct fake_chsm *f = calloc(1, sizeof(*f));
	size_t pem_len;
	if (!f)
		die("calloc");
	pthread_mutex_init(&f->lock, NULL);
	if (crypto_sm2_generate(&f->device_key) < 0 ||
	    crypto_sm2_fingerprint(f->device_key, f->device_fp) < 0 ||
	    crypto_sm2_public_pem(f->device_key, &f->device_pem, &pem_len) < 0)
		die("device key");
	f->platform_key = platform_key;
	if (platform_key && crypto_sm2_fingerprint(platform_key, f->platform_fp) < 0)
		die("platform fingerprint");
	f->enrollment_code = enrollment_code;
	f->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sa);
	if (f->listen_fd < 0 || bind(f->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(f->listen_fd, 16) < 0 ||
	    getsockname(f->listen_fd, (struct sockaddr *)&sa, &len) < 0)
		die("listen");
	snprintf(f->url, sizeof(f->url), "http://127.0.0.1:%u", ntohs(sa.sin_port));
	if (pthread_create(&f->thread, NULL, accept_loop, f) != 0)
		die("pthread_create");
	return f;
}

crypto_sm2_key *fake_load_key(const char *path)
{
	char *pem = NULL;
	size_t len = 0;
	crypto_sm2_key *key = NULL;
	if (chsm_read_file(path, 65536, &pem, &len) < 0 ||
	    crypto_sm2_load_private_pem(pem, len, &key) < 0)
		die("loading the platform key");
	crypto_free_secret(pem, len);
	return key;
}

void fake_chsm_stop(struct fake_chsm *f)
{
	if (!f)
		return;
	shutdown(f->listen_fd, SHUT_RDWR);
	pthread_join(f->thread, NULL);
	close(f->listen_fd);
	for (size_t i = 0; i < f->n_conns; i++) {
		shutdown(f->conn_fds[i], SHUT_RDWR);
		pthread_join(f->conn_threads[i], NULL);
		close(f->conn_fds[i]);
	}
	crypto_sm2_key_free(f->device_key);
	crypto_sm2_key_free(f->platform_key);
	free(f->device_pem);
	pthread_mutex_destroy(&f->lock);
	free(f);
}
