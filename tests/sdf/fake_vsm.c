/*
 * fake_vsm.c: see fake_vsm.h. Test code: failures end the connection.
 */
#include "fake_vsm.h"

#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "vsmp/vsmp.h"

struct fake_vsm {
	enum fake_mode mode;
	char token_id[65];
	uint8_t secret[64];
	size_t secret_len;
	int lfd;
	int port;
	atomic_bool stop;
	pthread_t thread;
	crypto_sm2_key *key;
};

static int io_all(int fd, void *buf, size_t n, bool rd)
{
	uint8_t *p = buf;
	while (n > 0) {
		ssize_t k = rd ? recv(fd, p, n, 0) : send(fd, p, n, MSG_NOSIGNAL);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return -1;
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

/* Sends the frame in w as f's mode says; authenticated: AUTH is done. */
static int send_writer(const struct fake_vsm *f, int fd, struct vsmp_writer *w,
		       bool authenticated)
{
	int r = vsmp_writer_end(w) == 0 ? 0 : -1;
	if (r == 0 && f->mode == FAKE_SPLIT_FRAMES) {
		/* One byte, the rest of the header and a byte, the rest. */
		size_t cut[] = {0, 1, w->len > VSMP_HEADER_LEN ? VSMP_HEADER_LEN + 1 : w->len,
				w->len};
		for (int i = 0; i < 3 && r == 0; i++) {
			r = io_all(fd, w->buf + cut[i], cut[i + 1] - cut[i], false);
			usleep(20 * 1000);
		}
	} else if (r == 0 && f->mode == FAKE_CLOSE_MID_FRAME && authenticated) {
		io_all(fd, w->buf, VSMP_HEADER_LEN + (w->len - VSMP_HEADER_LEN) / 2, false);
		r = -1;
	} else if (r == 0) {
		r = io_all(fd, w->buf, w->len, false);
	}
	vsmp_writer_free(w);
	return r;
}

static int recv_frame(int fd, uint32_t max, struct vsmp_header *h, uint8_t **buf)
{
	uint8_t head[VSMP_HEADER_LEN];
	if (io_all(fd, head, sizeof(head), true) < 0 || vsmp_header_decode(head, max, h) < 0)
		return -1;
	*buf = malloc(h->length + 1);
	if (!*buf || io_all(fd, *buf, h->length, true) < 0) {
		free(*buf);
		return -1;
	}
	return 0;
}

/* Handles one request; returns false to close the connection. */
static bool serve_one(struct fake_vsm *f, int fd, const struct vsmp_header *h, const uint8_t *p)
{
	struct vsmp_reader r;
	struct vsmp_writer w;
	uint32_t status = VSMP_SDR_OK;
	vsmp_reader_init(&r, p, h->length);
	vsmp_writer_begin(&w, h->type | VSMP_RESPONSE, h->request_id, 0);
	uint8_t point[VSMP_POINT_LEN];
	switch (h->type) {
	case VSMP_DEVICE_INFO:
		vsmp_put_bytes(&w, "OpenCHSM test", 13);
		vsmp_put_bytes(&w, "fake", 4);
		vsmp_put_bytes(&w, "0001", 4);
		for (int i = 0; i < 7; i++)
			vsmp_put_u32(&w, (uint32_t)i + 1);
		break;
	case VSMP_GENERATE_RANDOM: {
		uint32_t n = vsmp_get_u32(&r);
		uint8_t buf[256];
		if (n > sizeof(buf))
			status = VSMP_SDR_INARGERR;
		else {
			crypto_random(buf, n);
			vsmp_put_bytes(&w, buf, n);
		}
		break;
	}
	case VSMP_EXPORT_SIGN_PUBLIC:
		if (vsmp_get_u32(&r) != 1)
			status = VSMP_SDR_KEYNOTEXIST;
		else {
			crypto_sm2_public_point(f->key, point);
			vsmp_put_bytes(&w, point, sizeof(point));
		}
		break;
	case VSMP_INTERNAL_SIGN: {
		uint32_t idx = vsmp_get_u32(&r);
		size_t n;
		const uint8_t *e = vsmp_get_bytes(&r, 32, &n);
		uint8_t der[CRYPTO_SM2_SIG_DER_MAX], rs[64];
		size_t dlen;
		if (idx != 1)
			status = VSMP_SDR_KEYNOTEXIST;
		else if (n != 32 || crypto_sm2_sign_digest(f->key, e, der, &dlen) < 0 ||
			 crypto_sm2_sig_der_to_rs(der, dlen, rs, rs + 32) < 0)
			status = VSMP_SDR_INARGERR;
		else
			vsmp_put_bytes(&w, rs, sizeof(rs));
		break;
	}
	case VSMP_INTERNAL_VERIFY: {
		uint32_t idx = vsmp_get_u32(&r);
		size_t n, rn;
		const uint8_t *e = vsmp_get_bytes(&r, 32, &n);
		const uint8_t *rs = vsmp_get_bytes(&r, 64, &rn);
		uint8_t der[CRYPTO_SM2_SIG_DER_MAX];
		size_t dlen;
		if (idx != 1)
			status = VSMP_SDR_KEYNOTEXIST;
		else if (n != 32 || rn != 64 || crypto_sm2_sig_rs_to_der(rs, rs + 32, der, &dlen) < 0)
			status = VSMP_SDR_INARGERR;
		else if (crypto_sm2_verify_digest(f->key, e, der, dlen) < 0)
			status = VSMP_SDR_VERIFYERR;
		break;
	}
	case VSMP_KEY_LIST:
		vsmp_put_u32(&w, 2);
		vsmp_put_u32(&w, 1), vsmp_put_u32(&w, 1), vsmp_put_u32(&w, 0);
		vsmp_put_u64(&w, 1700000000000ULL);
		vsmp_put_u32(&w, 3), vsmp_put_u32(&w, 7), vsmp_put_u32(&w, 1);
		vsmp_put_u64(&w, 1700000001000ULL);
		break;
	default:
		status = VSMP_SDR_NOTSUPPORT;
		break;
	}
	if (status == VSMP_SDR_OK && f->mode == FAKE_TRAILING_BYTES)
		vsmp_put_u32(&w, 0);
	if (status != VSMP_SDR_OK) {
		vsmp_writer_free(&w);
		vsmp_writer_begin(&w, h->type | VSMP_RESPONSE, h->request_id, status);
	}
	return send_writer(f, fd, &w, true) == 0;
}

static void serve_conn(struct fake_vsm *f, int fd)
{
	uint8_t sn[VSMP_NONCE_LEN], cn[VSMP_NONCE_LEN], proof[VSMP_PROOF_LEN];
	struct vsmp_writer w;
	struct vsmp_header h;
	uint8_t *buf = NULL;
	size_t tlen = strlen(f->token_id);
	crypto_random(sn, sizeof(sn));
	vsmp_writer_begin(&w, VSMP_HELLO, 0, 0);
	vsmp_put_u32(&w, f->mode == FAKE_BAD_HELLO ? VSMP_VERSION + 1 : VSMP_VERSION);
	vsmp_put_bytes(&w, sn, sizeof(sn));
	vsmp_put_bytes(&w, "vsm-test", 8);
	if (send_writer(f, fd, &w, false) < 0 || recv_frame(fd, VSMP_MAX_PAYLOAD_PREAUTH, &h, &buf) < 0)
		return;
	struct vsmp_reader r;
	size_t idn, cnn, pn;
	vsmp_reader_init(&r, buf, h.length);
	const uint8_t *id = vsmp_get_bytes(&r, VSMP_MAX_TOKEN_ID, &idn);
	const uint8_t *cnp = vsmp_get_bytes(&r, VSMP_NONCE_LEN, &cnn);
	const uint8_t *cp = vsmp_get_bytes(&r, VSMP_PROOF_LEN, &pn);
	bool ok = h.type == VSMP_AUTH && vsmp_reader_finish(&r) == 0 && cnn == VSMP_NONCE_LEN &&
		  pn == VSMP_PROOF_LEN && idn == tlen && memcmp(id, f->token_id, tlen) == 0;
	if (ok) {
		memcpy(cn, cnp, sizeof(cn));
		vsmp_client_proof(f->secret, f->secret_len, sn, cn, id, idn, proof);
		ok = crypto_memeq(proof, cp, sizeof(proof));
	}
	uint32_t rid = h.request_id;
	free(buf);
	if (!ok) {
		vsmp_writer_begin(&w, VSMP_AUTH | VSMP_RESPONSE, rid, VSMP_SDR_PARDENY);
		send_writer(f, fd, &w, false);
		return;
	}
	vsmp_server_proof(f->secret, f->secret_len, sn, cn, (const uint8_t *)f->token_id, tlen,
			  proof);
	if (f->mode == FAKE_BAD_SERVER_PROOF)
		proof[0] ^= 1;
	vsmp_writer_begin(&w, VSMP_AUTH | VSMP_RESPONSE, rid, 0);
	vsmp_put_bytes(&w, proof, sizeof(proof));
	if (send_writer(f, fd, &w, false) < 0)
		return;
	while (recv_frame(fd, VSMP_MAX_PAYLOAD, &h, &buf) == 0) {
		bool cont = serve_one(f, fd, &h, buf);
		free(buf);
		if (!cont)
			break;
	}
}

static void *fake_thread(void *arg)
{
	struct fake_vsm *f = arg;
	while (!atomic_load(&f->stop)) {
		struct pollfd p = {.fd = f->lfd, .events = POLLIN};
		if (poll(&p, 1, 50) <= 0)
			continue;
		int fd = accept(f->lfd, NULL, NULL);
		if (fd < 0)
			continue;
		serve_conn(f, fd);
		close(fd);
	}
	return NULL;
}

struct fake_vsm *fake_vsm_start(enum fake_mode mode, const char *token_id,
				const uint8_t *secret, size_t secret_len)
{
	struct fake_vsm *f = calloc(1, sizeof(*f));
	if (!f)
		return NULL;
	f->mode = mode;
	snprintf(f->token_id, sizeof(f->token_id), "%s", token_id);
	memcpy(f->secret, secret, secret_len);
	f->secret_len = secret_len;
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof(a);
	f->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (f->lfd < 0 || bind(f->lfd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    listen(f->lfd, 16) < 0 || getsockname(f->lfd, (struct sockaddr *)&a, &al) < 0 ||
	    crypto_sm2_generate(&f->key) < 0)
		goto fail;
	f->port = ntohs(a.sin_port);
	if (pthread_create(&f->thread, NULL, fake_thread, f) != 0)
		goto fail;
	return f;
fail:
	if (f->lfd >= 0)
		close(f->lfd);
	crypto_sm2_key_free(f->key);
	free(f);
	return NULL;
}

int fake_vsm_port(const struct fake_vsm *f)
{
	return f->port;
}

const crypto_sm2_key *fake_vsm_key(const struct fake_vsm *f)
{
	return f->key;
}

void fake_vsm_stop(struct fake_vsm *f)
{
	if (!f)
		return;
	atomic_store(&f->stop, true);
	pthread_join(f->thread, NULL);
	close(f->lfd);
	crypto_sm2_key_free(f->key);
	free(f);
}
