/*
 * test_service.c: the VSM service protocol server (src/vsm/service.c,
 * session.c, keystore.c, stats.c) run in-process on a loopback address,
 * against a real store in a temporary directory, driven by a small raw
 * client built on the codec (it does not use the SDF library).
 *
 * Each test that makes AUTH fail connects from a source address of its own
 * (127.0.0.x), so the per-address delay it causes touches no other test.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/util.h"
#include "crypto/crypto.h"
#include "store/store.h"
#include "vsm/keystore.h"
#include "vsm/service.h"
#include "vsmp/vsmp.h"
#include "vsm_test_util.h"

#define VSM_ID       "tenant-service-test"
#define TOKEN_ID     "token-1"
#define MAX_KEYS     16
#define MAX_SESSIONS 4

static char dir[128], db_path[256], stats_path[256];
static uint8_t master[STORE_MASTER_KEY_LEN], subkey[STORE_VSM_KEY_LEN];
static uint8_t token_secret[32];
static struct test_endpoint ep;
static vsm_service *svc;
static pthread_t svc_thread;

/* ---- the service ---- */

static void *run_main(void *arg)
{
	int sig = 0;
	int r = vsm_service_run(svc, &sig);
	(void)r;
	return NULL;
}

static void start_service(void)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)ep.port) };
	int one = 1;
	inet_pton(AF_INET, ep.ip, &sin.sin_addr);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	assert_true(fd >= 0);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(listen(fd, 64), 0);
	struct vsm_service_config cfg = {
		.vsm_id = VSM_ID,
		.db_path = db_path,
		.has_key = true,
		.max_sessions = MAX_SESSIONS,
		.max_keys = MAX_KEYS,
		.stats_path = stats_path,
	};
	memcpy(cfg.vsm_key, subkey, sizeof(subkey));
	assert_int_equal(vsm_service_new(fd, &cfg, &svc), 0);
	assert_int_equal(pthread_create(&svc_thread, NULL, run_main, NULL), 0);
}

static void stop_service(void)
{
	/* The service's loop catches SIGTERM (libevent's signal pipe). */
	kill(getpid(), SIGTERM);
	pthread_join(svc_thread, NULL);
	vsm_service_free(svc);
	svc = NULL;
}

static int setup(void **state)
{
	struct store_vsm v = { .id = VSM_ID, .name = "t", .state = "running", .max_keys = MAX_KEYS,
			       .max_sessions = MAX_SESSIONS, .memory_mib = 64 };
	chsm_store *st;
	assert_int_equal(test_mkdtemp(dir, sizeof(dir)), 0);
	snprintf(db_path, sizeof(db_path), "%s/chsm.db", dir);
	snprintf(stats_path, sizeof(stats_path), "%s/stats.json", dir);
	assert_int_equal(crypto_random(master, sizeof(master)), 0);
	assert_int_equal(crypto_random(token_secret, sizeof(token_secret)), 0);
	assert_int_equal(store_open(db_path, master, &st), 0);
	assert_int_equal(store_vsm_insert(st, &v), 0);
	assert_int_equal(store_vsm_token_set(st, VSM_ID, TOKEN_ID, token_secret,
					     sizeof(token_secret), chsm_now_ms()),
			 0);
	assert_int_equal(store_vsm_subkey(st, VSM_ID, subkey), 0);
	store_close(st);
	test_pick_endpoint(&ep);
	start_service();
	return 0;
}

static int teardown(void **state)
{
	if (svc)
		stop_service();
	char path[300];
	const char *files[] = { "chsm.db-wal", "chsm.db-shm", "stats.json.tmp" };
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
		unlink(path);
	}
	test_rmtree(dir);
	return 0;
}

/* ---- a raw client ---- */

struct client {
	int fd;
	uint8_t server_nonce[VSMP_NONCE_LEN];
	uint32_t next_id;
};

struct resp {
	uint32_t status;
	uint8_t *payload;
	size_t len;
	struct vsmp_reader rd;
};

static void resp_free(struct resp *r)
{
	free(r->payload);
	memset(r, 0, sizeof(*r));
}

static int read_full(int fd, void *buf, size_t n)
{
	size_t done = 0;
	while (done < n) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (poll(&p, 1, 20000) <= 0)
			return -ETIMEDOUT;
		ssize_t got = read(fd, (uint8_t *)buf + done, n - done);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			return got == 0 ? -ECONNRESET : -errno;
		done += (size_t)got;
	}
	return 0;
}

static void write_full(int fd, const void *buf, size_t n)
{
	assert_int_equal(send(fd, buf, n, MSG_NOSIGNAL), (ssize_t)n);
}

/* A connection from source address src (NULL: the default). */
static int connect_from(const char *src)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)ep.port) };
	inet_pton(AF_INET, ep.ip, &sin.sin_addr);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	if (src) {
		struct sockaddr_in me = { .sin_family = AF_INET };
		inet_pton(AF_INET, src, &me.sin_addr);
		assert_int_equal(bind(fd, (struct sockaddr *)&me, sizeof(me)), 0);
	}
	assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	return fd;
}

/* Reads one frame: header fields and payload (malloc'ed). */
static int read_frame(int fd, struct vsmp_header *h, uint8_t **ret_payload)
{
	uint8_t hb[VSMP_HEADER_LEN];
	int r = read_full(fd, hb, sizeof(hb));
	if (r < 0)
		return r;
	assert_int_equal(vsmp_header_decode(hb, VSMP_MAX_PAYLOAD, h), 0);
	uint8_t *p = malloc(h->length ? h->length : 1);
	assert_non_null(p);
	r = read_full(fd, p, h->length);
	assert_int_equal(r, 0);
	*ret_payload = p;
	return 0;
}

/* True when the peer closes without sending anything more. */
static bool sees_close(int fd)
{
	uint8_t b[64];
	struct pollfd p = { .fd = fd, .events = POLLIN };
	if (poll(&p, 1, 20000) <= 0)
		return false;
	ssize_t n = read(fd, b, sizeof(b));
	return n == 0 || (n < 0 && errno == ECONNRESET);
}

static void open_client(struct client *c, const char *src)
{
	struct vsmp_header h;
	uint8_t *p;
	struct vsmp_reader rd;
	size_t n, idlen;
	memset(c, 0, sizeof(*c));
	c->next_id = 1;
	/* A session that a previous test just closed may still count for a
	 * moment against max_sessions: try again when closed without HELLO. */
	for (int tries = 0;; tries++) {
		c->fd = connect_from(src);
		if (read_frame(c->fd, &h, &p) == 0)
			break;
		close(c->fd);
		assert_true(tries < 100);
		usleep(20 * 1000);
	}
	assert_int_equal(h.type, VSMP_HELLO);
	assert_int_equal(h.status, 0);
	vsmp_reader_init(&rd, p, h.length);
	assert_int_equal(vsmp_get_u32(&rd), VSMP_VERSION);
	const uint8_t *nonce = vsmp_get_bytes(&rd, VSMP_NONCE_LEN, &n);
	const uint8_t *id = vsmp_get_bytes(&rd, 64, &idlen);
	assert_int_equal(vsmp_reader_finish(&rd), 0);
	assert_int_equal(n, VSMP_NONCE_LEN);
	assert_int_equal(idlen, strlen(VSM_ID));
	assert_memory_equal(id, VSM_ID, idlen);
	memcpy(c->server_nonce, nonce, n);
	free(p);
}

static void close_client(struct client *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}

/* Sends the frame in w (ended here) and reads the response; checks its
 * type and request id; returns the status, the payload in *r. */
static uint32_t exchange(struct client *c, struct vsmp_writer *w, uint16_t type, struct resp *r)
{
	struct vsmp_header h;
	assert_int_equal(vsmp_writer_end(w), 0);
	write_full(c->fd, w->buf, w->len);
	vsmp_writer_free(w);
	memset(r, 0, sizeof(*r));
	assert_int_equal(read_frame(c->fd, &h, &r->payload), 0);
	assert_int_equal(h.type, type | VSMP_RESPONSE);
	assert_int_equal(h.request_id, c->next_id - 1);
	r->status = h.status;
	r->len = h.length;
	if (h.status != 0)
		assert_int_equal(h.length, 0);
	vsmp_reader_init(&r->rd, r->payload, r->len);
	return h.status;
}

static void begin(struct client *c, struct vsmp_writer *w, uint16_t type)
{
	vsmp_writer_begin(w, type, c->next_id++, 0);
}

static uint32_t auth_with(struct client *c, const char *token_id, const uint8_t *secret,
			  size_t secret_len, struct resp *r)
{
	struct vsmp_writer w;
	uint8_t cnonce[VSMP_NONCE_LEN], proof[VSMP_PROOF_LEN];
	assert_int_equal(crypto_random(cnonce, sizeof(cnonce)), 0);
	assert_int_equal(vsmp_client_proof(secret, secret_len, c->server_nonce, cnonce,
					   (const uint8_t *)token_id, strlen(token_id), proof),
			 0);
	begin(c, &w, VSMP_AUTH);
	vsmp_put_bytes(&w, token_id, strlen(token_id));
	vsmp_put_bytes(&w, cnonce, sizeof(cnonce));
	vsmp_put_bytes(&w, proof, sizeof(proof));
	uint32_t st = exchange(c, &w, VSMP_AUTH, r);
	if (st == 0) {
		uint8_t expect[VSMP_PROOF_LEN];
		size_t n;
		const uint8_t *sp = vsmp_get_bytes(&r->rd, VSMP_PROOF_LEN, &n);
		assert_int_equal(vsmp_reader_finish(&r->rd), 0);
		assert_int_equal(n, VSMP_PROOF_LEN);
		assert_int_equal(vsmp_server_proof(secret, secret_len, c->server_nonce, cnonce,
						   (const uint8_t *)token_id, strlen(token_id),
						   expect),
				 0);
		assert_memory_equal(sp, expect, VSMP_PROOF_LEN);
	} else {
		resp_free(r);
	}
	return st;
}

/* An authenticated client from the default address. */
static void login(struct client *c)
{
	struct resp r;
	open_client(c, NULL);
	assert_int_equal(auth_with(c, TOKEN_ID, token_secret, sizeof(token_secret), &r), 0);
	resp_free(&r);
}

/* Requests with only u32 fields, no response fields wanted: the status. */
static uint32_t call_u32(struct client *c, uint16_t type, int n, ...)
{
	struct vsmp_writer w;
	struct resp r;
	va_list ap;
	begin(c, &w, type);
	va_start(ap, n);
	for (int i = 0; i < n; i++)
		vsmp_put_u32(&w, va_arg(ap, uint32_t));
	va_end(ap);
	uint32_t st = exchange(c, &w, type, &r);
	resp_free(&r);
	return st;
}

static uint32_t key_generate(struct client *c, uint32_t type, uint32_t index, const char *pw,
			     uint8_t point[65])
{
	struct vsmp_writer w;
	struct resp r;
	size_t n;
	begin(c, &w, VSMP_KEY_GENERATE);
	vsmp_put_u32(&w, type);
	vsmp_put_u32(&w, index);
	vsmp_put_bytes(&w, pw ? pw : "", pw ? strlen(pw) : 0);
	uint32_t st = exchange(c, &w, VSMP_KEY_GENERATE, &r);
	if (st == 0) {
		const uint8_t *p = vsmp_get_bytes(&r.rd, 65, &n);
		assert_int_equal(vsmp_reader_finish(&r.rd), 0);
		assert_int_equal(n, type == VSMP_KEY_KEK ? 0 : 65);
		if (point && n)
			memcpy(point, p, n);
	}
	resp_free(&r);
	return st;
}

static uint32_t export_point(struct client *c, uint16_t type, uint32_t index, uint8_t point[65])
{
	struct vsmp_writer w;
	struct resp r;
	size_t n;
	begin(c, &w, type);
	vsmp_put_u32(&w, index);
	uint32_t st = exchange(c, &w, type, &r);
	if (st == 0) {
		const uint8_t *p = vsmp_get_bytes(&r.rd, 65, &n);
		assert_int_equal(vsmp_reader_finish(&r.rd), 0);
		assert_int_equal(n, 65);
		memcpy(point, p, 65);
	}
	resp_free(&r);
	return st;
}

static uint32_t internal_sign(struct client *c, uint32_t index, const uint8_t e[32],
			      uint8_t rs[64])
{
	struct vsmp_writer w;
	struct resp r;
	size_t n;
	begin(c, &w, VSMP_INTERNAL_SIGN);
	vsmp_put_u32(&w, index);
	vsmp_put_bytes(&w, e, 32);
	uint32_t st = exchange(c, &w, VSMP_INTERNAL_SIGN, &r);
	if (st == 0) {
		const uint8_t *p = vsmp_get_bytes(&r.rd, 64, &n);
		assert_int_equal(vsmp_reader_finish(&r.rd), 0);
		assert_int_equal(n, 64);
		memcpy(rs, p, 64);
	}
	resp_free(&r);
	return st;
}

static uint32_t access_right(struct client *c, uint32_t index, const char *pw)
{
	struct vsmp_writer w;
	struct resp r;
	begin(c, &w, VSMP_GET_ACCESS_RIGHT);
	vsmp_put_u32(&w, index);
	vsmp_put_bytes(&w, pw, strlen(pw));
	uint32_t st = exchange(c, &w, VSMP_GET_ACCESS_RIGHT, &r);
	resp_free(&r);
	return st;
}

/* Verifies rs over e with point locally. */
static int local_verify(const uint8_t point[65], const uint8_t e[32], const uint8_t rs[64])
{
	crypto_sm2_key *pub;
	uint8_t der[CRYPTO_SM2_SIG_DER_MAX];
	size_t derlen;
	assert_int_equal(crypto_sm2_from_public_point(point, &pub), 0);
	assert_int_equal(crypto_sm2_sig_rs_to_der(rs, rs + 32, der, &derlen), 0);
	int r = crypto_sm2_verify_digest(pub, e, der, derlen);
	crypto_sm2_key_free(pub);
	return r;
}

/* SM4 ENCRYPT/DECRYPT through the service: status; iv_out and out filled. */
static uint32_t sym(struct client *c, uint16_t type, uint32_t handle, uint32_t alg,
		    const uint8_t *iv, size_t ivlen, const uint8_t *in, size_t len, uint8_t *iv_out,
		    uint8_t *out)
{
	struct vsmp_writer w;
	struct resp r;
	size_t n1, n2;
	begin(c, &w, type);
	vsmp_put_u32(&w, handle);
	vsmp_put_u32(&w, alg);
	vsmp_put_bytes(&w, iv, ivlen);
	vsmp_put_bytes(&w, in, len);
	uint32_t st = exchange(c, &w, type, &r);
	if (st == 0) {
		const uint8_t *a = vsmp_get_bytes(&r.rd, 16, &n1);
		const uint8_t *b = vsmp_get_bytes(&r.rd, VSMP_MAX_PAYLOAD, &n2);
		assert_int_equal(vsmp_reader_finish(&r.rd), 0);
		if (type == VSMP_CALCULATE_MAC) {
			assert_int_equal(n1, 16);
			assert_int_equal(n2, 16);
			memcpy(out, a, 16);
			memcpy(iv_out, b, 16);
		} else {
			assert_int_equal(n1, alg == VSMP_SGD_SM4_CBC ? 16 : 0);
			assert_int_equal(n2, len);
			memcpy(iv_out, a, n1);
			memcpy(out, b, n2);
		}
	}
	resp_free(&r);
	return st;
}

/* ---- tests ---- */

static void test_auth_and_device_info(void **state)
{
	struct client c;
	struct vsmp_writer w;
	struct resp r;
	size_t n;
	login(&c);
	begin(&c, &w, VSMP_DEVICE_INFO);
	assert_int_equal(exchange(&c, &w, VSMP_DEVICE_INFO, &r), 0);
	const uint8_t *issuer = vsmp_get_bytes(&r.rd, 40, &n);
	assert_int_equal(n, 8);
	assert_memory_equal(issuer, "OpenCHSM", 8);
	const uint8_t *name = vsmp_get_bytes(&r.rd, 16, &n);
	assert_int_equal(n, 12);
	assert_memory_equal(name, "OpenCHSM VSM", 12);
	const uint8_t *serial = vsmp_get_bytes(&r.rd, 16, &n);
	assert_int_equal(n, 16);
	assert_memory_equal(serial, VSM_ID, 16);
	vsmp_get_u32(&r.rd);
	vsmp_get_u32(&r.rd);
	assert_int_equal(vsmp_get_u32(&r.rd), VSMP_SGD_SM2_1 | VSMP_SGD_SM2_3);
	vsmp_get_u32(&r.rd);
	assert_int_equal(vsmp_get_u32(&r.rd) & VSMP_SGD_SM4_CBC, VSMP_SGD_SM4_CBC);
	assert_int_equal(vsmp_get_u32(&r.rd), VSMP_SGD_SM3);
	assert_int_equal(vsmp_get_u32(&r.rd), VSMP_MAX_PAYLOAD);
	assert_int_equal(vsmp_reader_finish(&r.rd), 0);
	resp_free(&r);

	/* GENERATE_RANDOM: bounds, and the length asked for. */
	assert_int_equal(call_u32(&c, VSMP_GENERATE_RANDOM, 1, 0u), VSMP_SDR_INARGERR);
	assert_int_equal(call_u32(&c, VSMP_GENERATE_RANDOM, 1, 65537u), VSMP_SDR_INARGERR);
	begin(&c, &w, VSMP_GENERATE_RANDOM);
	vsmp_put_u32(&w, 65536);
	assert_int_equal(exchange(&c, &w, VSMP_GENERATE_RANDOM, &r), 0);
	vsmp_get_bytes(&r.rd, 65536, &n);
	assert_int_equal(vsmp_reader_finish(&r.rd), 0);
	assert_int_equal(n, 65536);
	resp_free(&r);

	/* GENERATE_KEY_PAIR: d and the point belong together. */
	begin(&c, &w, VSMP_GENERATE_KEY_PAIR);
	vsmp_put_u32(&w, 256);
	assert_int_equal(exchange(&c, &w, VSMP_GENERATE_KEY_PAIR, &r), 0);
	size_t pn, dn;
	const uint8_t *point = vsmp_get_bytes(&r.rd, 65, &pn);
	const uint8_t *d = vsmp_get_bytes(&r.rd, 32, &dn);
	assert_int_equal(vsmp_reader_finish(&r.rd), 0);
	assert_int_equal(pn, 65);
	assert_int_equal(dn, 32);
	crypto_sm2_key *k;
	uint8_t p2[65];
	assert_int_equal(crypto_sm2_from_private_scalar(d, &k), 0);
	assert_int_equal(crypto_sm2_public_point(k, p2), 0);
	assert_memory_equal(point, p2, 65);
	crypto_sm2_key_free(k);
	resp_free(&r);
	assert_int_equal(call_u32(&c, VSMP_GENERATE_KEY_PAIR, 1, 512u), VSMP_SDR_INARGERR);
	close_client(&c);
}

static void test_auth_wrong_proof(void **state)
{
	struct client c;
	struct resp r;
	uint8_t wrong[32];
	memcpy(wrong, token_secret, sizeof(wrong));
	wrong[0] ^= 1;
	open_client(&c, "127.0.0.11");
	assert_int_equal(auth_with(&c, TOKEN_ID, wrong, sizeof(wrong), &r), VSMP_SDR_PARDENY);
	assert_true(sees_close(c.fd));
	close_client(&c);
	/* Wrong token id, right secret: from another address. */
	open_client(&c, "127.0.0.12");
	assert_int_equal(auth_with(&c, "token-2", token_secret, sizeof(token_secret), &r),
			 VSMP_SDR_PARDENY);
	assert_true(sees_close(c.fd));
	close_client(&c);
}

static void test_auth_rate_limited(void **state)
{
	struct client c;
	struct resp r;
	uint8_t wrong[32] = { 0 };
	open_client(&c, "127.0.0.13");
	assert_int_equal(auth_with(&c, TOKEN_ID, wrong, sizeof(wrong), &r), VSMP_SDR_PARDENY);
	close_client(&c);
	/* The right proof, at once: refused without checking. */
	open_client(&c, "127.0.0.13");
	assert_int_equal(auth_with(&c, TOKEN_ID, token_secret, sizeof(token_secret), &r),
			 VSMP_SDR_PARDENY);
	close_client(&c);
	/* Another address is not affected. */
	open_client(&c, "127.0.0.14");
	assert_int_equal(auth_with(&c, TOKEN_ID, token_secret, sizeof(token_secret), &r), 0);
	resp_free(&r);
	close_client(&c);
	/* Once the first delay (1 s) has passed, the right proof works. */
	for (int i = 0;; i++) {
		usleep(300 * 1000);
		open_client(&c, "127.0.0.13");
		uint32_t st = auth_with(&c, TOKEN_ID, token_secret, sizeof(token_secret), &r);
		resp_free(&r);
		close_client(&c);
		if (st == 0)
			break;
		assert_int_equal(st, VSMP_SDR_PARDENY);
		assert_true(i < 50);
	}
}

static void test_no_token(void **state)
{
	struct client c;
	struct resp r;
	chsm_store *st;
	assert_int_equal(store_open(db_path, master, &st), 0);
	assert_int_equal(store_vsm_token_clear(st, VSM_ID), 0);
	open_client(&c, "127.0.0.15");
	assert_int_equal(auth_with(&c, TOKEN_ID, token_secret, sizeof(token_secret), &r),
			 VSMP_SDR_PARDENY);
	close_client(&c);
	/* A new token applies to the next session at once. */
	assert_int_equal(store_vsm_token_set(st, VSM_ID, TOKEN_ID, token_secret,
					     sizeof(token_secret), chsm_now_ms()),
			 0);
	store_close(st);
	struct client c2;
	login(&c2);
	close_client(&c2);
}

/* Every request type before AUTH: COMMFAIL and closed. */
static void test_requests_before_auth(void **state)
{
	static const uint16_t types[] = {
		VSMP_DEVICE_INFO, VSMP_GENERATE_RANDOM, VSMP_GET_ACCESS_RIGHT,
		VSMP_EXPORT_SIGN_PUBLIC, VSMP_INTERNAL_SIGN, VSMP_ENCRYPT, VSMP_KEY_GENERATE,
		VSMP_KEY_LIST, VSMP_KEY_DESTROY, VSMP_KEY_SET_PASSWORD,
	};
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		struct client c;
		struct vsmp_writer w;
		struct resp r;
		open_client(&c, NULL);
		begin(&c, &w, types[i]);
		vsmp_put_u32(&w, 1);
		assert_int_equal(exchange(&c, &w, types[i], &r), VSMP_SDR_COMMFAIL);
		resp_free(&r);
		assert_true(sees_close(c.fd));
		close_client(&c);
	}
}

/* Malformed frames: each is answered with COMMFAIL (or just closed when
 * nothing can be answered) and the service serves a new connection. */
static void test_malformed_frames(void **state)
{
	static const struct {
		const char *name;
		bool authenticated;
		uint8_t header[VSMP_HEADER_LEN];
		const char *payload; /* sent after the header; NULL: none */
		size_t payload_len;
		bool answered;
	} cases[] = {
		{ "bad magic", false, { 'X', 'M', 'P', '1', 0, 2, 0, 0, 0, 0, 0, 1 }, NULL, 0, true },
		{ "flags", false, { 'V', 'M', 'P', '1', 0, 2, 0, 1, 0, 0, 0, 1 }, NULL, 0, true },
		{ "status in a request", true,
		  { 'V', 'M', 'P', '1', 0, 0x10, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1 }, NULL, 0, true },
		{ "pre-auth length 513", false,
		  { 'V', 'M', 'P', '1', 0, 2, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 2, 1 }, NULL, 0,
		  true },
		{ "length over the maximum", true,
		  { 'V', 'M', 'P', '1', 0, 0x10, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0x11, 0x10, 1 },
		  NULL, 0, true },
		{ "length 4 GiB - 1", true,
		  { 'V', 'M', 'P', '1', 0, 0x11, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0xff, 0xff, 0xff,
		    0xff },
		  NULL, 0, true },
		{ "unknown type", true, { 'V', 'M', 'P', '1', 0x7f, 0x7f, 0, 0, 0, 0, 0, 1 }, NULL,
		  0, true },
		{ "a response type", true, { 'V', 'M', 'P', '1', 0x80, 0x10, 0, 0, 0, 0, 0, 1 },
		  NULL, 0, true },
		{ "HELLO from the client", false, { 'V', 'M', 'P', '1', 0, 1, 0, 0, 0, 0, 0, 1 },
		  NULL, 0, true },
		{ "AUTH twice", true, { 'V', 'M', 'P', '1', 0, 2, 0, 0, 0, 0, 0, 1 }, NULL, 0, true },
		{ "bytes left over", true,
		  { 'V', 'M', 'P', '1', 0, 0x11, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 5 },
		  "\0\0\0\x10X", 5, true },
		{ "field past the payload", true,
		  { 'V', 'M', 'P', '1', 0, 0x11, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2 },
		  "\0\0", 2, true },
		{ "bytes over their maximum", true,
		  { 'V', 'M', 'P', '1', 0, 0x40, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 41 },
		  "\0\0\0\1\0\0\0\x21" "0123456789012345678901234567890123", 41, true },
		{ "AUTH with a short nonce", false,
		  { 'V', 'M', 'P', '1', 0, 2, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 12 },
		  "\0\0\0\0\0\0\0\0\0\0\0\0", 12, true },
		{ "truncated payload", true,
		  { 'V', 'M', 'P', '1', 0, 0x11, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 4 }, "\0\0",
		  2, false },
		{ "truncated header", true, { 'V', 'M', 'P', '1', 0, 0x11 }, NULL, 0, false },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct client c;
		print_message("case: %s\n", cases[i].name);
		if (cases[i].authenticated)
			login(&c);
		else
			open_client(&c, NULL);
		size_t hlen = strcmp(cases[i].name, "truncated header") == 0 ? 6 : VSMP_HEADER_LEN;
		write_full(c.fd, cases[i].header, hlen);
		if (cases[i].payload)
			write_full(c.fd, cases[i].payload, cases[i].payload_len);
		if (!cases[i].answered) {
			shutdown(c.fd, SHUT_WR);
		} else {
			struct vsmp_header h;
			uint8_t *p;
			assert_int_equal(read_frame(c.fd, &h, &p), 0);
			assert_int_equal(h.status, VSMP_SDR_COMMFAIL);
			assert_int_equal(h.length, 0);
			assert_int_equal(h.request_id, 1);
			free(p);
		}
		assert_true(sees_close(c.fd));
		close_client(&c);
		/* The service is still there. */
		login(&c);
		assert_int_equal(call_u32(&c, VSMP_GENERATE_RANDOM, 1, 16u), 0);
		close_client(&c);
	}
}

/* Several requests in one write are answered in order; a request that
 * arrives in pieces is answered once whole. */
static void test_pipelined_and_split(void **state)
{
	struct client c;
	struct vsmp_writer w;
	uint8_t all[3 * 64];
	size_t n = 0;
	login(&c);
	static const uint16_t types[] = { VSMP_GENERATE_RANDOM, VSMP_DEVICE_INFO,
					  VSMP_GENERATE_RANDOM };
	static const uint32_t lens[] = { 16, 0, 32 };
	uint32_t first_id = c.next_id;
	for (int i = 0; i < 3; i++) {
		begin(&c, &w, types[i]);
		if (lens[i])
			vsmp_put_u32(&w, lens[i]);
		assert_int_equal(vsmp_writer_end(&w), 0);
		memcpy(all + n, w.buf, w.len);
		n += w.len;
		vsmp_writer_free(&w);
	}
	write_full(c.fd, all, n);
	for (uint32_t i = 0; i < 3; i++) {
		struct vsmp_header h;
		uint8_t *p;
		assert_int_equal(read_frame(c.fd, &h, &p), 0);
		assert_int_equal(h.type, types[i] | VSMP_RESPONSE);
		assert_int_equal(h.request_id, first_id + i);
		assert_int_equal(h.status, 0);
		if (lens[i])
			assert_int_equal(h.length, 4 + lens[i]);
		free(p);
	}
	/* A byte, then the rest of the header and part of the payload, then
	 * the rest. */
	begin(&c, &w, VSMP_GENERATE_RANDOM);
	vsmp_put_u32(&w, 8);
	assert_int_equal(vsmp_writer_end(&w), 0);
	write_full(c.fd, w.buf, 1);
	usleep(50 * 1000);
	write_full(c.fd, w.buf + 1, VSMP_HEADER_LEN + 1);
	usleep(50 * 1000);
	write_full(c.fd, w.buf + VSMP_HEADER_LEN + 2, w.len - VSMP_HEADER_LEN - 2);
	vsmp_writer_free(&w);
	struct vsmp_header h;
	uint8_t *p;
	assert_int_equal(read_frame(c.fd, &h, &p), 0);
	assert_int_equal(h.type, VSMP_GENERATE_RANDOM | VSMP_RESPONSE);
	assert_int_equal(h.request_id, c.next_id - 1);
	assert_int_equal(h.status, 0);
	assert_int_equal(h.length, 12);
	free(p);
	close_client(&c);
}

static void test_keys_sign_verify(void **state)
{
	struct client c;
	struct vsmp_writer w;
	struct resp r;
	uint8_t point[65], exported[65], enc_point[65], e[32], rs[64];
	login(&c);
	assert_int_equal(key_generate(&c, VSMP_KEY_SIGN, 1, NULL, point), 0);
	assert_int_equal(key_generate(&c, VSMP_KEY_ENC, 1, NULL, enc_point), 0);
	assert_int_equal(key_generate(&c, VSMP_KEY_KEK, 1, NULL, NULL), 0);
	assert_int_equal(key_generate(&c, VSMP_KEY_SIGN, 1, NULL, NULL), VSMP_SDR_KEYERR);
	assert_int_equal(key_generate(&c, VSMP_KEY_SIGN, 0, NULL, NULL), VSMP_SDR_INARGERR);
	assert_int_equal(key_generate(&c, VSMP_KEY_SIGN, MAX_KEYS + 1, NULL, NULL),
			 VSMP_SDR_INARGERR);
	assert_int_equal(key_generate(&c, 4, 1, NULL, NULL), VSMP_SDR_INARGERR);
	assert_int_equal(key_generate(&c, VSMP_KEY_KEK, 2, "pw", NULL), VSMP_SDR_INARGERR);

	/* KEY_LIST: the three keys, in (type, index) order. */
	begin(&c, &w, VSMP_KEY_LIST);
	assert_int_equal(exchange(&c, &w, VSMP_KEY_LIST, &r), 0);
	assert_int_equal(vsmp_get_u32(&r.rd), 3);
	for (uint32_t t = 1; t <= 3; t++) {
		assert_int_equal(vsmp_get_u32(&r.rd), t);
		assert_int_equal(vsmp_get_u32(&r.rd), 1);
		assert_int_equal(vsmp_get_u32(&r.rd), 0);
		assert_true(vsmp_get_u64(&r.rd) > 0);
	}
	assert_int_equal(vsmp_reader_finish(&r.rd), 0);
	resp_free(&r);

	assert_int_equal(export_point(&c, VSMP_EXPORT_SIGN_PUBLIC, 1, exported), 0);
	assert_memory_equal(exported, point, 65);
	assert_int_equal(export_point(&c, VSMP_EXPORT_ENC_PUBLIC, 1, exported), 0);
	assert_memory_equal(exported, enc_point, 65);
	assert_int_equal(export_point(&c, VSMP_EXPORT_SIGN_PUBLIC, 2, exported),
			 VSMP_SDR_KEYNOTEXIST);
	assert_int_equal(export_point(&c, VSMP_EXPORT_SIGN_PUBLIC, 0, exported), VSMP_SDR_INARGERR);

	assert_int_equal(crypto_random(e, sizeof(e)), 0);
	assert_int_equal(internal_sign(&c, 1, e, rs), 0);
	assert_int_equal(local_verify(point, e, rs), 0);

	/* INTERNAL_VERIFY and EXTERNAL_VERIFY: valid, then a changed e. */
	for (int bad = 0; bad < 2; bad++) {
		uint8_t e2[32];
		memcpy(e2, e, 32);
		e2[5] ^= (uint8_t)bad;
		begin(&c, &w, VSMP_INTERNAL_VERIFY);
		vsmp_put_u32(&w, 1);
		vsmp_put_bytes(&w, e2, 32);
		vsmp_put_bytes(&w, rs, 64);
		assert_int_equal(exchange(&c, &w, VSMP_INTERNAL_VERIFY, &r),
				 bad ? VSMP_SDR_VERIFYERR : 0);
		resp_free(&r);
		begin(&c, &w, VSMP_EXTERNAL_VERIFY);
		vsmp_put_bytes(&w, point, 65);
		vsmp_put_bytes(&w, e2, 32);
		vsmp_put_bytes(&w, rs, 64);
		assert_int_equal(exchange(&c, &w, VSMP_EXTERNAL_VERIFY, &r),
				 bad ? VSMP_SDR_VERIFYERR : 0);
		resp_free(&r);
	}
	/* The session keeps the last external key: another key, a point off
	 * the curve and the first key again each get their own answer. */
	uint8_t off_curve[65];
	memcpy(off_curve, point, 65);
	off_curve[64] ^= 1;
	const uint8_t *const points[] = { enc_point, off_curve, point, point };
	const uint32_t want[] = { VSMP_SDR_VERIFYERR, VSMP_SDR_INARGERR, 0, 0 };
	for (size_t i = 0; i < 4; i++) {
		begin(&c, &w, VSMP_EXTERNAL_VERIFY);
		vsmp_put_bytes(&w, points[i], 65);
		vsmp_put_bytes(&w, e, 32);
		vsmp_put_bytes(&w, rs, 64);
		assert_int_equal(exchange(&c, &w, VSMP_EXTERNAL_VERIFY, &r), want[i]);
		resp_free(&r);
	}
	/* e of the wrong length: an argument error, the session goes on. */
	begin(&c, &w, VSMP_INTERNAL_SIGN);
	vsmp_put_u32(&w, 1);
	vsmp_put_bytes(&w, e, 31);
	assert_int_equal(exchange(&c, &w, VSMP_INTERNAL_SIGN, &r), VSMP_SDR_INARGERR);
	resp_free(&r);

	/* SM2 encryption: internal and external, decrypted inside. */
	for (int external = 0; external < 2; external++) {
		const char msg[] = "a secret of some length";
		size_t n;
		begin(&c, &w, external ? VSMP_EXTERNAL_ENCRYPT : VSMP_INTERNAL_ENCRYPT);
		if (external)
			vsmp_put_bytes(&w, enc_point, 65);
		else
			vsmp_put_u32(&w, 1);
		vsmp_put_bytes(&w, msg, sizeof(msg));
		assert_int_equal(exchange(&c, &w,
					  external ? VSMP_EXTERNAL_ENCRYPT : VSMP_INTERNAL_ENCRYPT,
					  &r),
				 0);
		const uint8_t *cipher = vsmp_get_bytes(&r.rd, 264, &n);
		assert_int_equal(vsmp_reader_finish(&r.rd), 0);
		struct vsmp_writer w2;
		struct resp r2;
		begin(&c, &w2, VSMP_INTERNAL_DECRYPT);
		vsmp_put_u32(&w2, 1);
		vsmp_put_bytes(&w2, cipher, n);
		assert_int_equal(exchange(&c, &w2, VSMP_INTERNAL_DECRYPT, &r2), 0);
		const uint8_t *plain = vsmp_get_bytes(&r2.rd, 264, &n);
		assert_int_equal(n, sizeof(msg));
		assert_memory_equal(plain, msg, n);
		resp_free(&r2);
		resp_free(&r);
	}
	close_client(&c);
}

static void test_password(void **state)
{
	struct client c, other;
	struct vsmp_writer w;
	struct resp r;
	uint8_t point[65], e[32] = { 1, 2, 3 }, rs[64];
	login(&c);
	assert_int_equal(key_generate(&c, VSMP_KEY_SIGN, 2, "open sesame", point), 0);
	assert_int_equal(internal_sign(&c, 2, e, rs), VSMP_SDR_PARDENY);
	assert_int_equal(access_right(&c, 2, "wrong"), VSMP_SDR_PARDENY);
	assert_int_equal(access_right(&c, 2, ""), VSMP_SDR_PARDENY);
	assert_int_equal(access_right(&c, 9, "x"), VSMP_SDR_KEYNOTEXIST);
	assert_int_equal(access_right(&c, 2, "open sesame"), 0);
	assert_int_equal(internal_sign(&c, 2, e, rs), 0);
	assert_int_equal(local_verify(point, e, rs), 0);
	/* The right belongs to this session only. */
	login(&other);
	assert_int_equal(internal_sign(&other, 2, e, rs), VSMP_SDR_PARDENY);
	close_client(&other);
	assert_int_equal(call_u32(&c, VSMP_RELEASE_ACCESS_RIGHT, 1, 2u), 0);
	assert_int_equal(internal_sign(&c, 2, e, rs), VSMP_SDR_PARDENY);

	/* KEY_LIST shows the password. */
	begin(&c, &w, VSMP_KEY_LIST);
	assert_int_equal(exchange(&c, &w, VSMP_KEY_LIST, &r), 0);
	uint32_t n = vsmp_get_u32(&r.rd);
	bool seen = false;
	for (uint32_t i = 0; i < n; i++) {
		uint32_t t = vsmp_get_u32(&r.rd), idx = vsmp_get_u32(&r.rd);
		uint32_t pw = vsmp_get_u32(&r.rd);
		vsmp_get_u64(&r.rd);
		if (t == VSMP_KEY_SIGN && idx == 2) {
			assert_int_equal(pw, 1);
			seen = true;
		}
	}
	assert_int_equal(vsmp_reader_finish(&r.rd), 0);
	assert_true(seen);
	resp_free(&r);

	/* Removing the password makes the key usable without a right. */
	begin(&c, &w, VSMP_KEY_SET_PASSWORD);
	vsmp_put_u32(&w, VSMP_KEY_SIGN);
	vsmp_put_u32(&w, 2);
	vsmp_put_bytes(&w, "", 0);
	assert_int_equal(exchange(&c, &w, VSMP_KEY_SET_PASSWORD, &r), 0);
	resp_free(&r);
	assert_int_equal(internal_sign(&c, 2, e, rs), 0);
	/* A new password: the old one no longer opens it. */
	begin(&c, &w, VSMP_KEY_SET_PASSWORD);
	vsmp_put_u32(&w, VSMP_KEY_SIGN);
	vsmp_put_u32(&w, 2);
	vsmp_put_bytes(&w, "new one", 7);
	assert_int_equal(exchange(&c, &w, VSMP_KEY_SET_PASSWORD, &r), 0);
	resp_free(&r);
	assert_int_equal(internal_sign(&c, 2, e, rs), VSMP_SDR_PARDENY);
	assert_int_equal(access_right(&c, 2, "open sesame"), VSMP_SDR_PARDENY);
	assert_int_equal(access_right(&c, 2, "new one"), 0);
	assert_int_equal(internal_sign(&c, 2, e, rs), 0);
	/* KEKs have no password. */
	begin(&c, &w, VSMP_KEY_SET_PASSWORD);
	vsmp_put_u32(&w, VSMP_KEY_KEK);
	vsmp_put_u32(&w, 1);
	vsmp_put_bytes(&w, "x", 1);
	assert_int_equal(exchange(&c, &w, VSMP_KEY_SET_PASSWORD, &r), VSMP_SDR_INARGERR);
	resp_free(&r);
	close_client(&c);
}

/* Session keys: EPK with a key pair of the test's own (so the test knows
 * the session key), IPK/ISK, KEK wrap/import; SM4 and MAC against
 * crypto_sm4_*. */
static void test_session_keys(void **state)
{
	struct client c;
	struct vsmp_writer w;
	struct resp r;
	crypto_sm2_key *mine;
	uint8_t mypoint[65], key[16], iv[16], data[64], out[64], expect[64], iv_out[16];
	uint8_t *plain;
	size_t n, plen;
	login(&c);
	assert_int_equal(crypto_sm2_generate(&mine), 0);
	assert_int_equal(crypto_sm2_public_point(mine, mypoint), 0);
	begin(&c, &w, VSMP_GEN_KEY_WITH_EPK);
	vsmp_put_u32(&w, 128);
	vsmp_put_bytes(&w, mypoint, 65);
	assert_int_equal(exchange(&c, &w, VSMP_GEN_KEY_WITH_EPK, &r), 0);
	uint32_t h_epk = vsmp_get_u32(&r.rd);
	const uint8_t *cipher = vsmp_get_bytes(&r.rd, 256, &n);
	assert_int_equal(vsmp_reader_finish(&r.rd), 0);
	assert_int_equal(crypto_sm2_decrypt(mine, cipher, n, &plain, &plen), 0);
	assert_int_equal(plen, 16);
	memcpy(key, plain, 16);
	crypto_free_secret(plain, plen);
	resp_free(&r);
	crypto_sm2_key_free(mine);

	assert_int_equal(crypto_random(iv, 16), 0);
	assert_int_equal(crypto_random(data, sizeof(data)), 0);
	/* ECB */
	assert_int_equal(sym(&c, VSMP_ENCRYPT, h_epk, VSMP_SGD_SM4_ECB, NULL, 0, data, 64, iv_out,
			     out),
			 0);
	assert_int_equal(crypto_sm4_ecb(true, key, data, 64, expect), 0);
	assert_memory_equal(out, expect, 64);
	assert_int_equal(sym(&c, VSMP_DECRYPT, h_epk, VSMP_SGD_SM4_ECB, NULL, 0, expect, 64,
			     iv_out, out),
			 0);
	assert_memory_equal(out, data, 64);
	/* CBC, with the IV out being the last ciphertext block */
	assert_int_equal(sym(&c, VSMP_ENCRYPT, h_epk, VSMP_SGD_SM4_CBC, iv, 16, data, 64, iv_out,
			     out),
			 0);
	assert_int_equal(crypto_sm4_cbc(true, key, iv, data, 64, expect), 0);
	assert_memory_equal(out, expect, 64);
	assert_memory_equal(iv_out, expect + 48, 16);
	assert_int_equal(sym(&c, VSMP_DECRYPT, h_epk, VSMP_SGD_SM4_CBC, iv, 16, expect, 64, iv_out,
			     out),
			 0);
	assert_memory_equal(out, data, 64);
	assert_memory_equal(iv_out, expect + 48, 16);
	/* MAC = the last block of CBC encryption */
	uint8_t mac[16];
	assert_int_equal(sym(&c, VSMP_CALCULATE_MAC, h_epk, VSMP_SGD_SM4_MAC, iv, 16, data, 64,
			     iv_out, mac),
			 0);
	assert_memory_equal(mac, expect + 48, 16);
	assert_memory_equal(iv_out, expect + 48, 16);
	/* Argument errors: the session goes on. */
	assert_int_equal(sym(&c, VSMP_ENCRYPT, h_epk, VSMP_SGD_SM4_CBC, NULL, 0, data, 64, iv_out,
			     out),
			 VSMP_SDR_INARGERR);
	assert_int_equal(sym(&c, VSMP_ENCRYPT, h_epk, VSMP_SGD_SM4_ECB, NULL, 0, data, 15, iv_out,
			     out),
			 VSMP_SDR_INARGERR);
	assert_int_equal(sym(&c, VSMP_ENCRYPT, h_epk, 0x999, NULL, 0, data, 16, iv_out, out),
			 VSMP_SDR_INARGERR);
	assert_int_equal(sym(&c, VSMP_ENCRYPT, 63, VSMP_SGD_SM4_ECB, NULL, 0, data, 16, iv_out,
			     out),
			 VSMP_SDR_KEYNOTEXIST);

	/* IPK / ISK with the internal encryption key 1 (made by the keys test,
	 * or here). */
	uint8_t p[65];
	if (export_point(&c, VSMP_EXPORT_ENC_PUBLIC, 1, p) != 0)
		assert_int_equal(key_generate(&c, VSMP_KEY_ENC, 1, NULL, p), 0);
	begin(&c, &w, VSMP_GEN_KEY_WITH_IPK);
	vsmp_put_u32(&w, 1);
	vsmp_put_u32(&w, 128);
	assert_int_equal(exchange(&c, &w, VSMP_GEN_KEY_WITH_IPK, &r), 0);
	uint32_t h_ipk = vsmp_get_u32(&r.rd);
	cipher = vsmp_get_bytes(&r.rd, 256, &n);
	assert_int_equal(vsmp_reader_finish(&r.rd), 0);
	struct vsmp_writer w2;
	struct resp r2;
	begin(&c, &w2, VSMP_IMPORT_KEY_WITH_ISK);
	vsmp_put_u32(&w2, 1);
	vsmp_put_bytes(&w2, cipher, n);
	assert_int_equal(exchange(&c, &w2, VSMP_IMPORT_KEY_WITH_ISK, &r2), 0);
	uint32_t h_isk = vsmp_get_u32(&r2.rd);
	assert_int_equal(vsmp_reader_finish(&r2.rd), 0);
	resp_free(&r2);
	resp_free(&r);
	assert_true(h_ipk != h_isk);
	assert_int_equal(sym(&c, VSMP_ENCRYPT, h_ipk, VSMP_SGD_SM4_ECB, NULL, 0, data, 32, iv_out,
			     out),
			 0);
	assert_int_equal(sym(&c, VSMP_DECRYPT, h_isk, VSMP_SGD_SM4_ECB, NULL, 0, out, 32, iv_out,
			     expect),
			 0);
	assert_memory_equal(expect, data, 32);

	/* KEK wrap and import. */
	uint8_t kp[65];
	(void)key_generate(&c, VSMP_KEY_KEK, 1, NULL, kp); /* or already there */
	begin(&c, &w, VSMP_GEN_KEY_WITH_KEK);
	vsmp_put_u32(&w, 128);
	vsmp_put_u32(&w, VSMP_SGD_SM4_ECB);
	vsmp_put_u32(&w, 1);
	assert_int_equal(exchange(&c, &w, VSMP_GEN_KEY_WITH_KEK, &r), 0);
	uint32_t h_kek = vsmp_get_u32(&r.rd);
	const uint8_t *wrapped = vsmp_get_bytes(&r.rd, 16, &n);
	assert_int_equal(vsmp_reader_finish(&r.rd), 0);
	assert_int_equal(n, 16);
	begin(&c, &w2, VSMP_IMPORT_KEY_WITH_KEK);
	vsmp_put_u32(&w2, VSMP_SGD_SM4_ECB);
	vsmp_put_u32(&w2, 1);
	vsmp_put_bytes(&w2, wrapped, 16);
	assert_int_equal(exchange(&c, &w2, VSMP_IMPORT_KEY_WITH_KEK, &r2), 0);
	uint32_t h_imp = vsmp_get_u32(&r2.rd);
	resp_free(&r2);
	resp_free(&r);
	assert_int_equal(sym(&c, VSMP_ENCRYPT, h_kek, VSMP_SGD_SM4_CBC, iv, 16, data, 64, iv_out,
			     out),
			 0);
	assert_int_equal(sym(&c, VSMP_DECRYPT, h_imp, VSMP_SGD_SM4_CBC, iv, 16, out, 64, iv_out,
			     expect),
			 0);
	assert_memory_equal(expect, data, 64);
	assert_int_equal(call_u32(&c, VSMP_GEN_KEY_WITH_KEK, 3, 128u, VSMP_SGD_SM4_ECB, 7u),
			 VSMP_SDR_KEYNOTEXIST);
	assert_int_equal(call_u32(&c, VSMP_GEN_KEY_WITH_KEK, 3, 128u, VSMP_SGD_SM4_CBC, 1u),
			 VSMP_SDR_INARGERR);

	/* DESTROY_KEY, then the handle is gone. */
	assert_int_equal(call_u32(&c, VSMP_DESTROY_KEY, 1, h_imp), 0);
	assert_int_equal(call_u32(&c, VSMP_DESTROY_KEY, 1, h_imp), VSMP_SDR_KEYNOTEXIST);
	assert_int_equal(sym(&c, VSMP_ENCRYPT, h_imp, VSMP_SGD_SM4_ECB, NULL, 0, data, 16, iv_out,
			     out),
			 VSMP_SDR_KEYNOTEXIST);

	/* At most 64 session keys. */
	int made = 4;
	for (;; made++) {
		begin(&c, &w2, VSMP_IMPORT_KEY_WITH_KEK);
		vsmp_put_u32(&w2, VSMP_SGD_SM4_ECB);
		vsmp_put_u32(&w2, 1);
		vsmp_put_bytes(&w2, data, 16);
		uint32_t st = exchange(&c, &w2, VSMP_IMPORT_KEY_WITH_KEK, &r2);
		resp_free(&r2);
		if (st != 0) {
			assert_int_equal(st, VSMP_SDR_NOBUFFER);
			break;
		}
		assert_true(made < 100);
	}
	assert_int_equal(made, VSMP_MAX_SESSION_KEYS);
	close_client(&c);
}

/* Searches the database files for bytes. */
static bool db_contains(const uint8_t *needle, size_t len)
{
	const char *suffix[] = { "", "-wal", "-shm" };
	for (size_t i = 0; i < 3; i++) {
		char path[300], *data;
		size_t n;
		snprintf(path, sizeof(path), "%s%s", db_path, suffix[i]);
		if (chsm_read_file(path, 256 * 1024 * 1024, &data, &n) < 0)
			continue;
		bool found = false;
		for (size_t off = 0; !found && off + len <= n; off++)
			found = memcmp(data + off, needle, len) == 0;
		free(data);
		if (found)
			return true;
	}
	return false;
}

static void test_persist_destroy_and_at_rest(void **state)
{
	struct client c;
	uint8_t point[65], p2[65], e[32] = { 9 }, rs[64];
	login(&c);
	assert_int_equal(key_generate(&c, VSMP_KEY_SIGN, 5, NULL, point), 0);
	assert_int_equal(key_generate(&c, VSMP_KEY_KEK, 5, NULL, NULL), 0);
	close_client(&c);

	/* The key material is not in the database files in clear. */
	chsm_store *st;
	uint8_t *blob, d[32];
	size_t len;
	struct vsm_key *key;
	assert_int_equal(store_open(db_path, master, &st), 0);
	assert_int_equal(store_vsm_key_get(st, VSM_ID, "sign", 5, &blob, &len), 0);
	assert_int_equal(vsm_key_decode(VSM_KEY_SIGN, 5, blob, len, &key), 0);
	assert_memory_equal(key->point, point, 65);
	assert_int_equal(crypto_sm2_private_scalar(key->sm2, d), 0);
	crypto_sm2_key_free(key->sm2);
	free(key);
	crypto_free_secret(blob, len);
	assert_int_equal(store_vsm_key_get(st, VSM_ID, "kek", 5, &blob, &len), 0);
	assert_int_equal(vsm_key_decode(VSM_KEY_KEK, 5, blob, len, &key), 0);
	uint8_t kek[16];
	memcpy(kek, key->sm4, 16);
	free(key);
	crypto_free_secret(blob, len);
	store_close(st);
	assert_false(db_contains(d, sizeof(d)));
	assert_false(db_contains(kek, sizeof(kek)));

	/* A new service instance on the same database has the keys. */
	stop_service();
	start_service();
	login(&c);
	assert_int_equal(export_point(&c, VSMP_EXPORT_SIGN_PUBLIC, 5, p2), 0);
	assert_memory_equal(p2, point, 65);
	assert_int_equal(internal_sign(&c, 5, e, rs), 0);
	assert_int_equal(local_verify(point, e, rs), 0);

	/* KEY_DESTROY: gone, also for the cache, and gone from the store. */
	assert_int_equal(call_u32(&c, VSMP_KEY_DESTROY, 2, VSMP_KEY_SIGN, 5u), 0);
	assert_int_equal(call_u32(&c, VSMP_KEY_DESTROY, 2, VSMP_KEY_SIGN, 5u),
			 VSMP_SDR_KEYNOTEXIST);
	assert_int_equal(internal_sign(&c, 5, e, rs), VSMP_SDR_KEYNOTEXIST);
	assert_int_equal(export_point(&c, VSMP_EXPORT_SIGN_PUBLIC, 5, p2), VSMP_SDR_KEYNOTEXIST);
	assert_int_equal(call_u32(&c, VSMP_KEY_DESTROY, 2, 7u, 5u), VSMP_SDR_INARGERR);
	/* The index can be used again. */
	assert_int_equal(key_generate(&c, VSMP_KEY_SIGN, 5, NULL, p2), 0);
	assert_memory_not_equal(p2, point, 65);
	close_client(&c);
}

static void test_max_sessions(void **state)
{
	struct client c[MAX_SESSIONS];
	for (int i = 0; i < MAX_SESSIONS; i++)
		login(&c[i]);
	/* One more: closed at once, without a HELLO. */
	int fd = connect_from(NULL);
	assert_true(sees_close(fd));
	close(fd);
	/* The sessions still work; closing one makes room. */
	assert_int_equal(call_u32(&c[0], VSMP_GENERATE_RANDOM, 1, 8u), 0);
	close_client(&c[0]);
	for (int tries = 0;; tries++) {
		fd = connect_from(NULL);
		uint8_t hb[VSMP_HEADER_LEN];
		if (read_full(fd, hb, sizeof(hb)) == 0) {
			close(fd);
			break;
		}
		close(fd);
		assert_true(tries < 100);
		usleep(50 * 1000);
	}
	for (int i = 1; i < MAX_SESSIONS; i++)
		close_client(&c[i]);
}

/* With one worker (the service started on one CPU, so every session
 * shares one thread), sessions that stall cannot hold up the others: one
 * stops in the middle of a payload, one after a byte of a header, one
 * pipelines requests whose answers it does not read until the socket is
 * full; a fourth is still served at once. Then the reader catches up and
 * gets every answer in order, and the half-sent frame is answered once
 * its rest comes. */
static void test_stalled_sessions_one_worker(void **state)
{
	enum { PIPELINED = 400, RANDOM_LEN = 65536 };
	cpu_set_t all, one;
	struct client c[4];
	struct vsmp_writer w;
	stop_service();
	assert_int_equal(sched_getaffinity(0, sizeof(all), &all), 0);
	CPU_ZERO(&one);
	for (int cpu = 0; cpu < CPU_SETSIZE; cpu++)
		if (CPU_ISSET(cpu, &all)) {
			CPU_SET(cpu, &one);
			break;
		}
	assert_int_equal(sched_setaffinity(0, sizeof(one), &one), 0);
	start_service();
	assert_int_equal(sched_setaffinity(0, sizeof(all), &all), 0);
	for (int i = 0; i < 4; i++)
		login(&c[i]);
	/* c[0]: a header and part of the payload. */
	begin(&c[0], &w, VSMP_GENERATE_RANDOM);
	vsmp_put_u32(&w, 16);
	assert_int_equal(vsmp_writer_end(&w), 0);
	write_full(c[0].fd, w.buf, VSMP_HEADER_LEN + 2);
	/* c[1]: one byte of a header. */
	write_full(c[1].fd, w.buf, 1);
	/* c[2]: requests for 64 KiB each, answers left unread. */
	uint32_t first_id = c[2].next_id;
	for (int i = 0; i < PIPELINED; i++) {
		struct vsmp_writer r;
		begin(&c[2], &r, VSMP_GENERATE_RANDOM);
		vsmp_put_u32(&r, RANDOM_LEN);
		assert_int_equal(vsmp_writer_end(&r), 0);
		write_full(c[2].fd, r.buf, r.len);
		vsmp_writer_free(&r);
	}
	usleep(200 * 1000);
	/* c[3] is served. */
	for (int i = 0; i < 10; i++)
		assert_int_equal(call_u32(&c[3], VSMP_GENERATE_RANDOM, 1, 8u), 0);
	/* c[2] reads every answer, in order. */
	for (uint32_t i = 0; i < PIPELINED; i++) {
		struct vsmp_header h;
		uint8_t *p;
		assert_int_equal(read_frame(c[2].fd, &h, &p), 0);
		assert_int_equal(h.request_id, first_id + i);
		assert_int_equal(h.status, 0);
		assert_int_equal(h.length, 4 + RANDOM_LEN);
		free(p);
	}
	/* c[0]'s frame completes and is answered. */
	write_full(c[0].fd, w.buf + VSMP_HEADER_LEN + 2, w.len - VSMP_HEADER_LEN - 2);
	struct vsmp_header h;
	uint8_t *p;
	assert_int_equal(read_frame(c[0].fd, &h, &p), 0);
	assert_int_equal(h.request_id, c[0].next_id - 1);
	assert_int_equal(h.status, 0);
	assert_int_equal(h.length, 4 + 16);
	free(p);
	vsmp_writer_free(&w);
	for (int i = 0; i < 4; i++)
		close_client(&c[i]);
	/* The other tests get the service as setup made it. */
	stop_service();
	start_service();
}

static void test_stats_file(void **state)
{
	struct client c;
	uint8_t e[32] = { 4 }, rs[64], p[65];
	login(&c);
	if (export_point(&c, VSMP_EXPORT_SIGN_PUBLIC, 1, p) != 0)
		assert_int_equal(key_generate(&c, VSMP_KEY_SIGN, 1, NULL, p), 0);
	assert_int_equal(internal_sign(&c, 1, e, rs), 0);
	/* Written about once a second: wait for it to show the session and
	 * the signature. */
	for (int i = 0;; i++) {
		char *json;
		size_t n;
		if (chsm_read_file(stats_path, 65536, &json, &n) == 0) {
			bool ok = strstr(json, "\"sessions\": 1") && strstr(json, "\"sm2.sign\"") &&
				  strstr(json, "\"opsTotal\"") && strstr(json, "\"updatedAt\"") &&
				  !strstr(json, "\"sm2.sign\": {\"count\": 0");
			free(json);
			if (ok)
				break;
		}
		assert_true(i < 100);
		usleep(100 * 1000);
	}
	/* Once nothing happens, the rate falls back to 0 (the count stays). */
	for (int i = 0;; i++) {
		char *json;
		size_t n;
		if (chsm_read_file(stats_path, 65536, &json, &n) == 0) {
			const char *o = strstr(json, "\"sm2.sign\": {\"count\": ");
			bool ok = o && o[22] != '0' && strstr(o, "\"rate\": 0.0}") &&
				  strstr(o, "\"rate\": 0.0}") < strstr(o, "}");
			free(json);
			if (ok)
				break;
		}
		assert_true(i < 100);
		usleep(100 * 1000);
	}
	close_client(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_auth_and_device_info),
		cmocka_unit_test(test_auth_wrong_proof),
		cmocka_unit_test(test_auth_rate_limited),
		cmocka_unit_test(test_no_token),
		cmocka_unit_test(test_requests_before_auth),
		cmocka_unit_test(test_malformed_frames),
		cmocka_unit_test(test_pipelined_and_split),
		cmocka_unit_test(test_keys_sign_verify),
		cmocka_unit_test(test_password),
		cmocka_unit_test(test_session_keys),
		cmocka_unit_test(test_persist_destroy_and_at_rest),
		cmocka_unit_test(test_max_sessions),
		cmocka_unit_test(test_stats_file),
		cmocka_unit_test(test_stalled_sessions_one_worker),
	};
	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, setup, teardown);
}
