/*
 * session.c: SDF devices and sessions: configuration, the TCP connection,
 * mutual authentication with the VSM (docs/vsm-protocol.md) and the
 * request/response exchange every SDF call uses.
 *
 * Guarantees: a session is returned only after the server proved it knows
 * the token secret (compared in constant time); the secret, the nonces'
 * proofs and every payload are wiped after use; connect, reads and writes
 * are bounded by timeouts; SIGPIPE is never raised. A request goes out in
 * one send and its answer usually comes in one recv, into the session's
 * input buffer (vsmp_in), whose bytes are wiped once consumed. A device is immutable
 * after SDF_OpenDevice, so threads may share it; a session's mutex
 * serialises calls on it. Nothing here logs.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "crypto/crypto.h"
#include "sdf/session.h"

#define DEVICE_MAGIC  0x53444644u /* "SDFD" */
#define SESSION_MAGIC 0x53444653u /* "SDFS" */

/* ---- devices ---- */

static int device_new(const struct sdf_config *cfg, void **phDeviceHandle)
{
	struct sdf_device *d = calloc(1, sizeof(*d));
	if (!d)
		return SDR_NOBUFFER;
	d->magic = DEVICE_MAGIC;
	d->cfg = *cfg;
	*phDeviceHandle = d;
	return SDR_OK;
}

int SDF_OpenDevice(void **phDeviceHandle)
{
	if (!phDeviceHandle)
		return SDR_INARGERR;
	struct sdf_config cfg;
	int rc = sdf_config_from_env(&cfg) < 0 ? SDR_OPENDEVICE : device_new(&cfg, phDeviceHandle);
	sdf_config_wipe(&cfg);
	return rc;
}

int SDFX_OpenDeviceWithConfig(const char *pcConfigPath, void **phDeviceHandle)
{
	if (!pcConfigPath || !phDeviceHandle)
		return SDR_INARGERR;
	struct sdf_config cfg;
	int rc = sdf_config_load_file(pcConfigPath, &cfg) < 0 ? SDR_OPENDEVICE
							      : device_new(&cfg, phDeviceHandle);
	sdf_config_wipe(&cfg);
	return rc;
}

int SDF_CloseDevice(void *hDeviceHandle)
{
	struct sdf_device *d = hDeviceHandle;
	if (!d || d->magic != DEVICE_MAGIC)
		return SDR_INARGERR;
	crypto_wipe(d, sizeof(*d));
	free(d);
	return SDR_OK;
}

/* ---- transport ---- */

static int set_timeouts(int fd, int ms)
{
	struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0)
		return -errno;
	return 0;
}

/* Connects to one address within SDF_CONNECT_TIMEOUT_MS; a blocking socket
 * with I/O timeouts and TCP_NODELAY on success. */
static int connect_one(const struct addrinfo *ai, int *ret_fd)
{
	int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
			ai->ai_protocol);
	if (fd < 0)
		return -errno;
	int r = 0;
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
		if (errno != EINPROGRESS) {
			r = -errno;
			goto fail;
		}
		struct pollfd p = {.fd = fd, .events = POLLOUT};
		int n;
		do
			n = poll(&p, 1, SDF_CONNECT_TIMEOUT_MS);
		while (n < 0 && errno == EINTR);
		if (n <= 0) {
			r = n == 0 ? -ETIMEDOUT : -errno;
			goto fail;
		}
		int err = 0;
		socklen_t len = sizeof(err);
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err) {
			r = err ? -err : -errno;
			goto fail;
		}
	}
	int flags = fcntl(fd, F_GETFL);
	int one = 1;
	if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) < 0 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0) {
		r = -errno;
		goto fail;
	}
	if ((r = set_timeouts(fd, SDF_IO_TIMEOUT_MS)) < 0)
		goto fail;
	*ret_fd = fd;
	return 0;
fail:
	close(fd);
	return r;
}

static int connect_endpoint(const struct sdf_config *cfg, int *ret_fd)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
	struct addrinfo *res = NULL;
	if (getaddrinfo(cfg->host, cfg->port, &hints, &res) != 0)
		return -EHOSTUNREACH;
	int r = -ECONNREFUSED;
	for (struct addrinfo *ai = res; ai; ai = ai->ai_next)
		if ((r = connect_one(ai, ret_fd)) == 0)
			break;
	freeaddrinfo(res);
	return r;
}

static int send_all(int fd, const uint8_t *p, size_t n)
{
	while (n > 0) {
		ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return k < 0 ? -errno : -EIO;
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

/* Receives one frame with a payload of at most max bytes into in: its
 * header into *ret_h and a pointer to its payload (in in) into
 * *ret_payload; the caller consumes it (vsmp_in_consume). */
static int recv_frame(int fd, struct vsmp_in *in, uint32_t max, struct vsmp_header *ret_h,
		      uint8_t **ret_payload)
{
	struct vsmp_header h;
	for (;;) {
		int r = vsmp_in_header(in, max, &h);
		if (r > 0)
			r = vsmp_in_payload(in, &h, ret_payload);
		if (r > 0) {
			*ret_h = h;
			return 0;
		}
		uint8_t *p;
		size_t n;
		if (r < 0 || (r = vsmp_in_space(in, &p, &n)) < 0)
			return r;
		ssize_t k = recv(fd, p, n, 0);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return k < 0 ? -errno : -ECONNRESET;
		vsmp_in_commit(in, (size_t)k);
	}
}

/* ---- sessions ---- */

/* Runs HELLO and AUTH on a fresh connection, receiving into in. Returns
 * an SDR code. */
static int authenticate(int fd, const struct sdf_config *cfg, struct vsmp_in *in)
{
	struct vsmp_header h;
	uint8_t *buf = NULL;
	uint8_t server_nonce[VSMP_NONCE_LEN], client_nonce[VSMP_NONCE_LEN];
	uint8_t proof[VSMP_PROOF_LEN], expect[VSMP_PROOF_LEN];
	struct vsmp_writer w = {0};
	size_t tlen = strlen(cfg->token_id);
	bool received = false;
	int rc = SDR_OPENSESSION;

	if (recv_frame(fd, in, VSMP_MAX_PAYLOAD_PREAUTH, &h, &buf) < 0)
		goto out;
	if (h.type != VSMP_HELLO || h.status != 0 || h.request_id != 0)
		goto out;
	struct vsmp_reader r;
	vsmp_reader_init(&r, buf, h.length);
	uint32_t version = vsmp_get_u32(&r);
	size_t nlen, idlen;
	const uint8_t *nonce = vsmp_get_bytes(&r, VSMP_NONCE_LEN, &nlen);
	(void)vsmp_get_bytes(&r, 64, &idlen);
	if (vsmp_reader_finish(&r) < 0 || version != VSMP_VERSION || nlen != VSMP_NONCE_LEN)
		goto out;
	memcpy(server_nonce, nonce, VSMP_NONCE_LEN);
	vsmp_in_consume(in, &h);

	if (crypto_random(client_nonce, sizeof(client_nonce)) < 0 ||
	    vsmp_client_proof(cfg->secret, cfg->secret_len, server_nonce, client_nonce,
			      (const uint8_t *)cfg->token_id, tlen, proof) < 0 ||
	    vsmp_server_proof(cfg->secret, cfg->secret_len, server_nonce, client_nonce,
			      (const uint8_t *)cfg->token_id, tlen, expect) < 0)
		goto out;
	vsmp_writer_begin(&w, VSMP_AUTH, 1, 0);
	vsmp_put_bytes(&w, cfg->token_id, tlen);
	vsmp_put_bytes(&w, client_nonce, sizeof(client_nonce));
	vsmp_put_bytes(&w, proof, sizeof(proof));
	if (vsmp_writer_end(&w) < 0 || send_all(fd, w.buf, w.len) < 0)
		goto out;

	if (recv_frame(fd, in, VSMP_MAX_PAYLOAD_PREAUTH, &h, &buf) < 0)
		goto out;
	received = true;
	if (h.type != (VSMP_AUTH | VSMP_RESPONSE) || h.request_id != 1)
		goto out;
	if (h.status != SDR_OK) {
		rc = h.status == SDR_PARDENY ? SDR_PARDENY : SDR_OPENSESSION;
		goto out;
	}
	vsmp_reader_init(&r, buf, h.length);
	size_t plen;
	const uint8_t *sp = vsmp_get_bytes(&r, VSMP_PROOF_LEN, &plen);
	if (vsmp_reader_finish(&r) < 0 || plen != VSMP_PROOF_LEN)
		goto out;
	if (crypto_memeq(sp, expect, VSMP_PROOF_LEN))
		rc = SDR_OK;
out:
	if (received)
		vsmp_in_consume(in, &h);
	vsmp_writer_free(&w);
	crypto_wipe(proof, sizeof(proof));
	crypto_wipe(expect, sizeof(expect));
	return rc;
}

int SDF_OpenSession(void *hDeviceHandle, void **phSessionHandle)
{
	struct sdf_device *d = hDeviceHandle;
	if (!d || d->magic != DEVICE_MAGIC || !phSessionHandle)
		return SDR_INARGERR;
	int fd = -1;
	struct vsmp_in in = {0};
	if (connect_endpoint(&d->cfg, &fd) < 0)
		return SDR_OPENSESSION;
	int rc = authenticate(fd, &d->cfg, &in);
	if (rc != SDR_OK) {
		vsmp_in_free(&in);
		close(fd);
		return rc;
	}
	struct sdf_session *s = calloc(1, sizeof(*s));
	if (!s || pthread_mutex_init(&s->lock, NULL) != 0) {
		free(s);
		vsmp_in_free(&in);
		close(fd);
		return SDR_NOBUFFER;
	}
	s->magic = SESSION_MAGIC;
	s->fd = fd;
	s->in = in;
	s->next_id = 2; /* 1 was AUTH */
	*phSessionHandle = s;
	return SDR_OK;
}

int SDF_CloseSession(void *hSessionHandle)
{
	struct sdf_session *s = hSessionHandle;
	if (!s || s->magic != SESSION_MAGIC)
		return SDR_INARGERR;
	/* Wait for a call in progress on another thread (a caller error, but
	 * it must not find freed memory mid-call). */
	pthread_mutex_lock(&s->lock);
	s->magic = 0;
	session_break(s);
	sdf_hash_clear(&s->hash);
	pthread_mutex_unlock(&s->lock);
	pthread_mutex_destroy(&s->lock);
	free(s);
	return SDR_OK;
}

int session_enter(void *handle, bool need_conn, struct sdf_session **ret)
{
	struct sdf_session *s = handle;
	if (!s || s->magic != SESSION_MAGIC)
		return SDR_INARGERR;
	pthread_mutex_lock(&s->lock);
	if (need_conn && s->fd < 0) {
		pthread_mutex_unlock(&s->lock);
		return SDR_COMMFAIL;
	}
	*ret = s;
	return SDR_OK;
}

void session_leave(struct sdf_session *s)
{
	pthread_mutex_unlock(&s->lock);
}

void session_break(struct sdf_session *s)
{
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
	vsmp_in_free(&s->in);
}

int sdf_exchange(void *handle, struct vsmp_writer *w, struct sdf_reply *rp)
{
	struct sdf_session *s;
	struct vsmp_header h;
	uint8_t *payload = NULL;
	memset(rp, 0, sizeof(*rp));
	int rc = session_enter(handle, true, &s);
	if (rc != SDR_OK) {
		vsmp_writer_free(w);
		return rc;
	}
	int r = vsmp_writer_end(w);
	if (r < 0) {
		vsmp_writer_free(w);
		session_leave(s);
		return r == -EMSGSIZE ? SDR_INARGERR : SDR_NOBUFFER;
	}
	uint16_t type = (uint16_t)(w->buf[4] << 8 | w->buf[5]);
	uint32_t id = s->next_id++;
	w->buf[8] = (uint8_t)(id >> 24);
	w->buf[9] = (uint8_t)(id >> 16);
	w->buf[10] = (uint8_t)(id >> 8);
	w->buf[11] = (uint8_t)id;
	r = send_all(s->fd, w->buf, w->len);
	vsmp_writer_free(w);
	if (r < 0 || recv_frame(s->fd, &s->in, VSMP_MAX_PAYLOAD, &h, &payload) < 0)
		goto fail;
	if (h.type != (type | VSMP_RESPONSE) || h.request_id != id ||
	    (h.status != SDR_OK && h.length != 0))
		goto fail;
	if (h.status != SDR_OK) {
		vsmp_in_consume(&s->in, &h);
		/* A protocol error answer ends the connection on the server. */
		if (h.status == SDR_COMMFAIL)
			session_break(s);
		session_leave(s);
		return (int)h.status;
	}
	rp->s = s;
	rp->h = h;
	vsmp_reader_init(&rp->r, payload, h.length);
	return SDR_OK;
fail:
	session_break(s);
	session_leave(s);
	return SDR_COMMFAIL;
}

int reply_check(struct sdf_reply *rp, bool ok)
{
	if (vsmp_reader_finish(&rp->r) == 0 && ok)
		return SDR_OK;
	session_break(rp->s);
	return SDR_COMMFAIL;
}

void reply_free(struct sdf_reply *rp)
{
	/* A broken session's buffer is already wiped and freed. */
	if (rp->s && rp->s->fd >= 0)
		vsmp_in_consume(&rp->s->in, &rp->h);
	if (rp->s)
		session_leave(rp->s);
	memset(rp, 0, sizeof(*rp));
}

int sdf_exchange_empty(void *handle, struct vsmp_writer *w)
{
	struct sdf_reply rp;
	int rc = sdf_exchange(handle, w, &rp);
	if (rc == SDR_OK) {
		rc = reply_check(&rp, true);
		reply_free(&rp);
	}
	return rc;
}
