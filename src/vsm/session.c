/*
 * session.c: see session.h. A connection is a state machine that never
 * blocks (the service's workers, service.c, or vsm_engine_serve's poll
 * loop drive it); requests are dispatched through one table (type,
 * handler, statistics counter). A handler reads its fields through the
 * codec's reader, returns PROTOCOL_ERROR when the frame is malformed (the
 * connection then closes) or an SDR_* status; a non-OK status is sent
 * with an empty payload.
 *
 * System calls per request are what a request costs beyond its crypto
 * here (docs/PERFORMANCE.md, "VSM service"): one read into the
 * connection's input buffer (vsmp_in) when the socket is readable, which
 * takes the whole frame, or several; the answer goes out with one send
 * from the connection's reused writer. A frame in pieces, an answer the
 * peer does not take and the drain after a protocol error wait for the
 * socket (vsm_conn_step's answer) under a deadline (vsm_conn_deadline),
 * never in a blocking call.
 */
#include "vsm/session.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/limits.h"
#include "common/util.h"
#include "common/version.h"
#include "crypto/crypto.h"
#include "vsm/keystore.h"
#include "vsmp/vsmp.h"

/* An unauthenticated connection must complete each frame within this. */
#define PREAUTH_TIMEOUT_MS   10000
/* Once a frame has started after AUTH, the rest must come within this. */
#define FRAME_TIMEOUT_MS     30000
/* Sending one response may take this long before the session is dropped. */
#define SEND_TIMEOUT_MS      30000
/* A response buffer up to this size is kept for the next request; larger
 * ones (SM4 over up to 1 MiB) are freed after sending. */
#define OUT_KEEP_MAX         (64 * 1024)
/* After a protocol error: how long unread input is drained so that the
 * COMMFAIL response is not destroyed by a reset. */
#define DRAIN_TIMEOUT_MS     500
#define DRAIN_MAX_BYTES      (64 * 1024)
/* Failed-AUTH delays: doubling from 1 s to 60 s, per client address, for
 * at most this many addresses (the oldest are forgotten first). */
#define AUTH_DELAY_MIN_MS    1000
#define AUTH_DELAY_MAX_MS    60000
#define AUTH_LIMIT_ENTRIES   1024
/* Access rights one session holds at once (SDR_NOBUFFER beyond). */
#define MAX_RIGHTS           64
#define MAX_RANDOM           65536
#define MAX_SM2_PLAIN        136
#define MAX_SM2_CIPHER       264
#define MAX_ISK_CIPHER       256
#define MAX_SYM_DATA         (1024 * 1024)

#define PROTOCOL_ERROR       0xFFFFFFFFu

#define DEVICE_ISSUER        "OpenCHSM"
#define DEVICE_NAME          "OpenCHSM VSM"
#define DEVICE_SERIAL_MAX    16
#define DEVICE_STD_VERSION   0x00000001u

struct limit_entry {
	uint8_t addr[16];
	bool used;
	int64_t delay_ms;
	int64_t not_before_ms;
};

struct vsm_engine {
	char *id;
	chsm_store *store;
	vsm_keystore *keys;
	vsm_stats *stats;
	pthread_mutex_t limit_lock;
	struct limit_entry limits[AUTH_LIMIT_ENTRIES];
};

struct right {
	int type;
	int index;
	uint64_t generation;
};

struct session_key {
	bool used;
	uint8_t key[CRYPTO_SM4_KEY_LEN];
};

/* Where a connection is. */
enum phase {
	PHASE_SERVE,    /* requests are served */
	PHASE_FAILING,  /* COMMFAIL queued; then PHASE_DRAIN */
	PHASE_DRAIN,    /* sending side shut; reading until EOF or a limit */
	PHASE_LAST,     /* the queued response is the last; then close */
	PHASE_CLOSE,
};

struct vsm_conn {
	vsm_engine *e;
	int fd;
	uint8_t addr[16];       /* IPv4 as ::ffff:a.b.c.d */
	bool authenticated;
	struct vsmp_in in;      /* received bytes; the current request first */
	uint8_t *payload;       /* the current request's payload, in in */
	struct vsmp_writer out; /* the response being built; reused */
	struct right rights[MAX_RIGHTS];
	size_t nrights;
	struct session_key skeys[VSMP_MAX_SESSION_KEYS];
	/* The last external public key (verify, encrypt, GenerateKeyWithEPK):
	 * applications use the same few keys again and again, and making a key
	 * from a point costs several times an SM2 verify. */
	uint8_t ext_point[VSMP_POINT_LEN];
	crypto_sm2_key *ext_key;
	uint8_t server_nonce[VSMP_NONCE_LEN];
	enum phase phase;
	size_t out_sent;        /* bytes of out already sent */
	int64_t send_deadline;  /* while out is not all sent; else -1 */
	int64_t wait_deadline;  /* before AUTH: the next frame's; else -1 */
	int64_t frame_deadline; /* after AUTH, a frame under way: its rest's */
	int64_t drain_deadline; /* PHASE_DRAIN */
	size_t drained;
};

/* ---- the engine ---- */

int vsm_engine_new(const struct vsm_engine_config *cfg, vsm_engine **ret_engine)
{
	int r = -EINVAL;
	if (!cfg->vsm_id || cfg->max_keys < 1 || !cfg->stats)
		return -EINVAL;
	vsm_engine *e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	pthread_mutex_init(&e->limit_lock, NULL);
	e->store = cfg->store;
	e->stats = cfg->stats;
	r = -ENOMEM;
	e->id = strdup(cfg->vsm_id);
	if (!e->id)
		goto fail;
	r = vsm_keystore_new(e->store, e->id, cfg->max_keys, &e->keys);
	if (r < 0)
		goto fail;
	*ret_engine = e;
	return 0;
fail:
	vsm_engine_free(e);
	return r;
}

void vsm_engine_free(vsm_engine *e)
{
	if (!e)
		return;
	vsm_keystore_free(e->keys);
	pthread_mutex_destroy(&e->limit_lock);
	free(e->id);
	free(e);
}

/* ---- failed-AUTH rate limiting ---- */

static struct limit_entry *limit_find(vsm_engine *e, const uint8_t addr[16], bool create)
{
	struct limit_entry *oldest = NULL;
	for (size_t i = 0; i < AUTH_LIMIT_ENTRIES; i++) {
		struct limit_entry *l = &e->limits[i];
		if (l->used && memcmp(l->addr, addr, 16) == 0)
			return l;
		if (!oldest || !l->used || (oldest->used && l->not_before_ms < oldest->not_before_ms))
			oldest = oldest && !oldest->used ? oldest : l;
	}
	if (!create)
		return NULL;
	memset(oldest, 0, sizeof(*oldest));
	memcpy(oldest->addr, addr, 16);
	oldest->used = true;
	return oldest;
}

/* True when addr may try to authenticate now. */
static bool limit_allows(vsm_engine *e, const uint8_t addr[16])
{
	pthread_mutex_lock(&e->limit_lock);
	struct limit_entry *l = limit_find(e, addr, false);
	bool ok = !l || chsm_monotonic_ms() >= l->not_before_ms;
	pthread_mutex_unlock(&e->limit_lock);
	return ok;
}

static void limit_record(vsm_engine *e, const uint8_t addr[16], bool success)
{
	pthread_mutex_lock(&e->limit_lock);
	struct limit_entry *l = limit_find(e, addr, !success);
	if (l && success) {
		memset(l, 0, sizeof(*l));
	} else if (l) {
		l->delay_ms = l->delay_ms == 0 ? AUTH_DELAY_MIN_MS :
			      l->delay_ms * 2 > AUTH_DELAY_MAX_MS ? AUTH_DELAY_MAX_MS :
								    l->delay_ms * 2;
		l->not_before_ms = chsm_monotonic_ms() + l->delay_ms;
	}
	pthread_mutex_unlock(&e->limit_lock);
}

/* ---- I/O ----
 *
 * A connection never blocks: the response of a request is built in s->out
 * and sent as far as the socket takes it; the rest waits for writability
 * (VSM_CONN_WANT_WRITE), and no further request is served until it is
 * gone. A protocol error queues COMMFAIL, then (once it is sent) shuts the
 * sending side and drains what the peer still sends, so that the answer is
 * not destroyed by a reset. */

static void out_done(struct vsm_conn *s);

/* Sends what is left of s->out. 0 when all of it is gone, 1 while the
 * socket is full, or -errno. */
static int flush_out(struct vsm_conn *s)
{
	while (s->out_sent < s->out.len) {
		ssize_t w = send(s->fd, s->out.buf + s->out_sent, s->out.len - s->out_sent,
				 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN) {
			if (s->send_deadline < 0)
				s->send_deadline = chsm_monotonic_ms() + SEND_TIMEOUT_MS;
			return 1;
		}
		if (w < 0)
			return -errno;
		s->out_sent += (size_t)w;
	}
	s->send_deadline = -1;
	out_done(s);
	return 0;
}

/* Puts a response with no payload in s->out (which holds nothing). */
static int queue_status(struct vsm_conn *s, uint16_t type, uint32_t request_id, uint32_t status)
{
	vsmp_writer_restart(&s->out, (uint16_t)(type | VSMP_RESPONSE), request_id, status);
	return vsmp_writer_end(&s->out);
}

/* After a protocol error: queues COMMFAIL; the connection then drains and
 * closes (step_drain). */
static void fail_protocol(struct vsm_conn *s, uint16_t type, uint32_t request_id)
{
	if (queue_status(s, type, request_id, VSMP_SDR_COMMFAIL) < 0) {
		s->phase = PHASE_CLOSE;
		return;
	}
	s->phase = PHASE_FAILING;
}

/* ---- helpers for handlers ---- */

static uint32_t status_of(int err)
{
	switch (err) {
	case 0: return VSMP_SDR_OK;
	case -EINVAL: return VSMP_SDR_INARGERR;
	case -ENOENT: return VSMP_SDR_KEYNOTEXIST;
	case -EEXIST: return VSMP_SDR_KEYERR;
	case -ENOMEM: return VSMP_SDR_NOBUFFER;
	default: return VSMP_SDR_UNKNOWERR;
	}
}

static bool has_right(const struct vsm_conn *s, const struct vsm_key *key)
{
	if (!key->has_password)
		return true;
	for (size_t i = 0; i < s->nrights; i++)
		if (s->rights[i].type == key->type && s->rights[i].index == key->index &&
		    s->rights[i].generation == key->generation)
			return true;
	return false;
}

/* A reference to an internal key; *ret_status is the SDR code on failure. */
static int get_key(struct vsm_conn *s, int type, uint32_t index, bool private_use,
		   struct vsm_key **ret_key, uint32_t *ret_status)
{
	struct vsm_key *key;
	if (index > INT32_MAX) {
		*ret_status = VSMP_SDR_INARGERR;
		return -EINVAL;
	}
	int r = vsm_keystore_get(s->e->keys, type, (int)index, &key);
	if (r < 0) {
		*ret_status = status_of(r);
		return r;
	}
	if (private_use && !has_right(s, key)) {
		vsm_key_put(s->e->keys, key);
		*ret_status = VSMP_SDR_PARDENY;
		return -EPERM;
	}
	*ret_key = key;
	return 0;
}

static struct session_key *session_key(struct vsm_conn *s, uint32_t handle)
{
	if (handle < 1 || handle > VSMP_MAX_SESSION_KEYS || !s->skeys[handle - 1].used)
		return NULL;
	return &s->skeys[handle - 1];
}

/* A new session key holding key; the handle into *ret_handle. */
static uint32_t add_session_key(struct vsm_conn *s, const uint8_t key[CRYPTO_SM4_KEY_LEN],
				uint32_t *ret_handle)
{
	for (uint32_t i = 0; i < VSMP_MAX_SESSION_KEYS; i++) {
		if (!s->skeys[i].used) {
			s->skeys[i].used = true;
			memcpy(s->skeys[i].key, key, CRYPTO_SM4_KEY_LEN);
			*ret_handle = i + 1;
			return VSMP_SDR_OK;
		}
	}
	return VSMP_SDR_NOBUFFER;
}

static bool free_session_slot(const struct vsm_conn *s)
{
	for (size_t i = 0; i < VSMP_MAX_SESSION_KEYS; i++)
		if (!s->skeys[i].used)
			return true;
	return false;
}

/* The public key of an external point, from the session's one-entry
 * cache or made (and cached). *ret_key is the session's: do not free it. */
static uint32_t sm2_from_point(struct vsm_conn *s, const uint8_t *point, size_t len,
			       const crypto_sm2_key **ret_key)
{
	crypto_sm2_key *key;
	if (len != VSMP_POINT_LEN)
		return VSMP_SDR_INARGERR;
	if (!s->ext_key || memcmp(s->ext_point, point, VSMP_POINT_LEN) != 0) {
		if (crypto_sm2_from_public_point(point, &key) < 0)
			return VSMP_SDR_INARGERR;
		crypto_sm2_key_free(s->ext_key);
		s->ext_key = key;
		memcpy(s->ext_point, point, VSMP_POINT_LEN);
	}
	*ret_key = s->ext_key;
	return VSMP_SDR_OK;
}

/* Verifies rs over e with key: OK, VERIFYERR or INARGERR. */
static uint32_t verify_rs(const crypto_sm2_key *key, const uint8_t *e, size_t elen,
			  const uint8_t *rs, size_t rslen)
{
	uint8_t der[CRYPTO_SM2_SIG_DER_MAX];
	size_t derlen;
	if (elen != CRYPTO_SM3_LEN || rslen != VSMP_RS_LEN)
		return VSMP_SDR_INARGERR;
	if (crypto_sm2_sig_rs_to_der(rs, rs + 32, der, &derlen) < 0)
		return VSMP_SDR_VERIFYERR;
	return crypto_sm2_verify_digest(key, e, der, derlen) == 0 ? VSMP_SDR_OK :
								    VSMP_SDR_VERIFYERR;
}

/* Encrypts data under key into the response. */
static uint32_t sm2_encrypt_out(const crypto_sm2_key *key, const uint8_t *data, size_t len,
				struct vsmp_writer *w)
{
	uint8_t *der;
	size_t derlen;
	if (len < 1 || len > MAX_SM2_PLAIN)
		return VSMP_SDR_INARGERR;
	if (crypto_sm2_encrypt(key, data, len, &der, &derlen) < 0)
		return VSMP_SDR_PKOPERR;
	vsmp_put_bytes(w, der, derlen);
	free(der);
	return VSMP_SDR_OK;
}

/* ---- handlers ---- */

typedef uint32_t handler_fn(struct vsm_conn *s, struct vsmp_reader *rd, struct vsmp_writer *w);

#define FINISH(rd)                                      \
	do {                                            \
		if (vsmp_reader_finish(rd) < 0)         \
			return PROTOCOL_ERROR;          \
	} while (0)

/* DEVICE_INFO's device version: this program's chsm_version()
 * MAJOR.MINOR.PATCH as 0x00MMmmpp, each part capped at 255, so that a
 * tenant sees a VSM upgrade. */
static uint32_t device_version(void)
{
	const char *p = chsm_version();
	uint32_t v = 0;
	for (int i = 0; i < 3; i++) {
		char *end = (char *)p;
		unsigned long part = *p >= '0' && *p <= '9' ? strtoul(p, &end, 10) : 0;
		v = v << 8 | (uint32_t)(part > 255 ? 255 : part);
		p = *end == '.' ? end + 1 : end;
	}
	return v;
}

static uint32_t h_device_info(struct vsm_conn *s, struct vsmp_reader *rd, struct vsmp_writer *w)
{
	FINISH(rd);
	size_t idlen = strlen(s->e->id);
	vsmp_put_bytes(w, DEVICE_ISSUER, strlen(DEVICE_ISSUER));
	vsmp_put_bytes(w, DEVICE_NAME, strlen(DEVICE_NAME));
	vsmp_put_bytes(w, s->e->id, idlen > DEVICE_SERIAL_MAX ? DEVICE_SERIAL_MAX : idlen);
	vsmp_put_u32(w, device_version());
	vsmp_put_u32(w, DEVICE_STD_VERSION);
	vsmp_put_u32(w, VSMP_SGD_SM2_1 | VSMP_SGD_SM2_3);
	vsmp_put_u32(w, 256);
	vsmp_put_u32(w, VSMP_SGD_SM4_ECB | VSMP_SGD_SM4_CBC | VSMP_SGD_SM4_MAC);
	vsmp_put_u32(w, VSMP_SGD_SM3);
	vsmp_put_u32(w, VSMP_MAX_PAYLOAD);
	return VSMP_SDR_OK;
}

static uint32_t h_random(struct vsm_conn *s, struct vsmp_reader *rd, struct vsmp_writer *w)
{
	uint32_t len = vsmp_get_u32(rd);
	FINISH(rd);
	if (len < 1 || len > MAX_RANDOM)
		return VSMP_SDR_INARGERR;
	uint8_t *buf = malloc(len);
	if (!buf)
		return VSMP_SDR_NOBUFFER;
	uint32_t st = VSMP_SDR_RANDERR;
	if (crypto_random(buf, len) == 0) {
		vsmp_put_bytes(w, buf, len);
		st = VSMP_SDR_OK;
		vsm_stats_count(s->e->stats, VSM_STAT_RANDOM);
	}
	crypto_free_secret(buf, len);
	return st;
}

static uint32_t h_get_access_right(struct vsm_conn *s, struct vsmp_reader *rd,
				   struct vsmp_writer *w)
{
	size_t pwlen;
	uint32_t index = vsmp_get_u32(rd);
	const uint8_t *pw = vsmp_get_bytes(rd, VSMP_MAX_PASSWORD, &pwlen);
	FINISH(rd);
	int found = 0, protected = 0, granted = 0;
	uint32_t st = VSMP_SDR_OK;
	for (int type = VSM_KEY_SIGN; type <= VSM_KEY_ENC && st == VSMP_SDR_OK; type++) {
		struct vsm_key *key;
		uint32_t kst;
		if (get_key(s, type, index, false, &key, &kst) < 0) {
			if (kst != VSMP_SDR_KEYNOTEXIST)
				st = kst;
			continue;
		}
		found++;
		if (key->has_password) {
			protected++;
			if (vsm_key_check_password(key, pw, pwlen)) {
				granted++;
				if (!has_right(s, key)) {
					if (s->nrights < MAX_RIGHTS)
						s->rights[s->nrights++] = (struct right){
							key->type, key->index, key->generation
						};
					else
						st = VSMP_SDR_NOBUFFER;
				}
			}
		}
		vsm_key_put(s->e->keys, key);
	}
	if (st != VSMP_SDR_OK)
		return st;
	if (found == 0)
		return VSMP_SDR_KEYNOTEXIST;
	return protected > 0 && granted == 0 ? VSMP_SDR_PARDENY : VSMP_SDR_OK;
}

static uint32_t h_release_access_right(struct vsm_conn *s, struct vsmp_reader *rd,
				       struct vsmp_writer *w)
{
	uint32_t index = vsmp_get_u32(rd);
	FINISH(rd);
	for (size_t i = 0; i < s->nrights;) {
		if ((uint32_t)s->rights[i].index == index)
			s->rights[i] = s->rights[--s->nrights];
		else
			i++;
	}
	return VSMP_SDR_OK;
}

static uint32_t export_public(struct vsm_conn *s, struct vsmp_reader *rd, struct vsmp_writer *w,
			      int type)
{
	struct vsm_key *key;
	uint32_t st, index = vsmp_get_u32(rd);
	FINISH(rd);
	if (get_key(s, type, index, false, &key, &st) < 0)
		return st;
	vsmp_put_bytes(w, key->point, VSMP_POINT_LEN);
	vsm_key_put(s->e->keys, key);
	return VSMP_SDR_OK;
}

static uint32_t h_export_sign(struct vsm_conn *s, struct vsmp_reader *rd, struct vsmp_writer *w)
{
	return export_public(s, rd, w, VSM_KEY_SIGN);
}

static uint32_t h_export_enc(struct vsm_conn *s, struct vsmp_reader *rd, struct vsmp_writer *w)
{
	return export_public(s, rd, w, VSM_KEY_ENC);
}

static uint32_t h_generate_key_pair(struct vsm_conn *s, struct vsmp_reader *rd,
				    struct vsmp_writer *w)
{
	crypto_sm2_key *key = NULL;
	uint8_t point[CRYPTO_SM2_POINT_LEN], d[CRYPTO_SM2_SCALAR_LEN];
	uint32_t bits = vsmp_get_u32(rd);
	FINISH(rd);
	if (bits != 256)
		return VSMP_SDR_INARGERR;
	uint32_t st = VSMP_SDR_UNKNOWERR;
	if (crypto_sm2_generate(&key) == 0 && crypto_sm2_public_point(key, point) == 0 &&
	    crypto_sm2_private_scalar(key, d) == 0) {
		vsmp_put_bytes(w, point, sizeof(point));
		vsmp_put_bytes(w, d, sizeof(d));
		st = VSMP_SDR_OK;
	}
	crypto_wipe(d, sizeof(d));
	crypto_sm2_key_free(key);
	return st;
}

/* A random session key, encrypted under pub into the response with its
 * handle. */
static uint32_t gen_key_with_pub(struct vsm_conn *s, const crypto_sm2_key *pub,
				 struct vsmp_writer *w)
{
	uint8_t k[CRYPTO_SM4_KEY_LEN], *der = NULL;
	size_t derlen = 0;
	uint32_t handle = 0, st = VSMP_SDR_NOBUFFER;
	if (!free_session_slot(s))
		goto out;
	st = VSMP_SDR_RANDERR;
	if (crypto_random(k, sizeof(k)) < 0)
		goto out;
	st = VSMP_SDR_PKOPERR;
	if (crypto_sm2_encrypt(pub, k, sizeof(k), &der, &derlen) < 0)
		goto out;
	st = add_session_key(s, k, &handle);
	if (st != VSMP_SDR_OK)
		goto out;
	vsm_stats_count(s->e->stats, VSM_STAT_SM2_ENCRYPT);
	vsmp_put_u32(w, handle);
	vsmp_put_bytes(w, der, derlen);
out:
	crypto_wipe(k, sizeof(k));
	free(der);
	return st;
}

static uint32_t h_gen_key_with_ipk(struct vsm_conn *s, struct vsmp_reader *rd,
				   struct vsmp_writer *w)
{
	struct vsm_key *key;
	uint32_t st, index = vsmp_get_u32(rd), bits = vsmp_get_u32(rd);
	FINISH(rd);
	if (bits != 128)
		return VSMP_SDR_INARGERR;
	if (get_key(s, VSM_KEY_ENC, index, false, &key, &st) < 0)
		return st;
	st = gen_key_with_pub(s, key->sm2, w);
	vsm_key_put(s->e->keys, key);
	return st;
}

static uint32_t h_gen_key_with_epk(struct vsm_conn *s, struct vsmp_reader *rd,
				   struct vsmp_writer *w)
{
	const crypto_sm2_key *pub = NULL;
	size_t plen;
	uint32_t bits = vsmp_get_u32(rd);
	const uint8_t *point = vsmp_get_bytes(rd, VSMP_POINT_LEN, &plen);
	FINISH(rd);
	if (bits != 128)
		return VSMP_SDR_INARGERR;
	uint32_t st = sm2_from_point(s, point, plen, &pub);
	if (st == VSMP_SDR_OK)
		st = gen_key_with_pub(s, pub, w);
	return st;
}

static uint32_t h_import_key_with_isk(struct vsm_conn *s, struct vsmp_reader *rd,
				      struct vsmp_writer *w)
{
	struct vsm_key *key;
	uint8_t *plain = NULL;
	size_t clen, plen = 0;
	uint32_t st, handle = 0, index = vsmp_get_u32(rd);
	const uint8_t *cipher = vsmp_get_bytes(rd, MAX_ISK_CIPHER, &clen);
	FINISH(rd);
	if (get_key(s, VSM_KEY_ENC, index, true, &key, &st) < 0)
		return st;
	st = VSMP_SDR_NOBUFFER;
	if (!free_session_slot(s))
		goto out;
	st = VSMP_SDR_ENCDATAERR;
	if (clen == 0 || crypto_sm2_decrypt(key->sm2, cipher, clen, &plain, &plen) < 0)
		goto out;
	vsm_stats_count(s->e->stats, VSM_STAT_SM2_DECRYPT);
	st = VSMP_SDR_KEYERR;
	if (plen != CRYPTO_SM4_KEY_LEN)
		goto out;
	st = add_session_key(s, plain, &handle);
	if (st == VSMP_SDR_OK)
		vsmp_put_u32(w, handle);
out:
	crypto_free_secret(plain, plen);
	vsm_key_put(s->e->keys, key);
	return st;
}

static uint32_t h_gen_key_with_kek(struct vsm_conn *s, struct vsmp_reader *rd,
				   struct vsmp_writer *w)
{
	struct vsm_key *kek;
	uint8_t k[CRYPTO_SM4_KEY_LEN], wrapped[CRYPTO_SM4_KEY_LEN];
	uint32_t st, handle = 0;
	uint32_t bits = vsmp_get_u32(rd), alg = vsmp_get_u32(rd), index = vsmp_get_u32(rd);
	FINISH(rd);
	if (bits != 128 || alg != VSMP_SGD_SM4_ECB)
		return VSMP_SDR_INARGERR;
	if (get_key(s, VSM_KEY_KEK, index, false, &kek, &st) < 0)
		return st;
	st = VSMP_SDR_NOBUFFER;
	if (!free_session_slot(s))
		goto out;
	st = VSMP_SDR_RANDERR;
	if (crypto_random(k, sizeof(k)) < 0)
		goto out;
	st = VSMP_SDR_SYMOPERR;
	if (crypto_sm4_ecb(true, kek->sm4, k, sizeof(k), wrapped) < 0)
		goto out;
	st = add_session_key(s, k, &handle);
	if (st != VSMP_SDR_OK)
		goto out;
	vsmp_put_u32(w, handle);
	vsmp_put_bytes(w, wrapped, sizeof(wrapped));
out:
	crypto_wipe(k, sizeof(k));
	vsm_key_put(s->e->keys, kek);
	return st;
}

static uint32_t h_import_key_with_kek(struct vsm_conn *s, struct vsmp_reader *rd,
				      struct vsmp_writer *w)
{
	struct vsm_key *kek;
	uint8_t k[CRYPTO_SM4_KEY_LEN];
	size_t wlen;
	uint32_t st, handle = 0;
	uint32_t alg = vsmp_get_u32(rd), index = vsmp_get_u32(rd);
	const uint8_t *wrapped = vsmp_get_bytes(rd, CRYPTO_SM4_KEY_LEN, &wlen);
	FINISH(rd);
	if (alg != VSMP_SGD_SM4_ECB || wlen != CRYPTO_SM4_KEY_LEN)
		return VSMP_SDR_INARGERR;
	if (get_key(s, VSM_KEY_KEK, index, false, &kek, &st) < 0)
		return st;
	st = VSMP_SDR_SYMOPERR;
	if (crypto_sm4_ecb(false, kek->sm4, wrapped, sizeof(k), k) == 0)
		st = add_session_key(s, k, &handle);
	if (st == VSMP_SDR_OK)
		vsmp_put_u32(w, handle);
	crypto_wipe(k, sizeof(k));
	vsm_key_put(s->e->keys, kek);
	return st;
}

static uint32_t h_destroy_key(struct vsm_conn *s, struct vsmp_reader *rd, struct vsmp_writer *w)
{
	uint32_t handle = vsmp_get_u32(rd);
	FINISH(rd);
	struct session_key *sk = session_key(s, handle);
	if (!sk)
		return VSMP_SDR_KEYNOTEXIST;
	crypto_wipe(sk, sizeof(*sk));
	return VSMP_SDR_OK;
}

static uint32_t h_internal_sign(struct vsm_conn *s, struct vsmp_reader *rd, struct vsmp_writer *w)
{
	struct vsm_key *key;
	uint8_t der[CRYPTO_SM2_SIG_DER_MAX], rs[VSMP_RS_LEN];
	size_t elen, derlen;
	uint32_t st, index = vsmp_get_u32(rd);
	const uint8_t *e = vsmp_get_bytes(rd, CRYPTO_SM3_LEN, &elen);
	FINISH(rd);
	if (elen != CRYPTO_SM3_LEN)
		return VSMP_SDR_INARGERR;
	if (get_key(s, VSM_KEY_SIGN, index, true, &key, &st) < 0)
		return st;
	st = VSMP_SDR_SIGNERR;
	if (crypto_sm2_sign_digest(key->sm2, e, der, &derlen) == 0 &&
	    crypto_sm2_sig_der_to_rs(der, derlen, rs, rs + 32) == 0) {
		vsmp_put_bytes(w, rs, sizeof(rs));
		vsm_stats_count(s->e->stats, VSM_STAT_SM2_SIGN);
		st = VSMP_SDR_OK;
	}
	vsm_key_put(s->e->keys, key);
	return st;
}

static uint32_t h_internal_verify(struct vsm_conn *s, struct vsmp_reader *rd,
				  struct vsmp_writer *w)
{
	struct vsm_key *key;
	size_t elen, rslen;
	uint32_t st, index = vsmp_get_u32(rd);
	const uint8_t *e = vsmp_get_bytes(rd, CRYPTO_SM3_LEN, &elen);
	const uint8_t *rs = vsmp_get_bytes(rd, VSMP_RS_LEN, &rslen);
	FINISH(rd);
	if (elen != CRYPTO_SM3_LEN || rslen != VSMP_RS_LEN)
		return VSMP_SDR_INARGERR;
	if (get_key(s, VSM_KEY_SIGN, index, false, &key, &st) < 0)
		return st;
	st = verify_rs(key->sm2, e, elen, rs, rslen);
	vsm_stats_count(s->e->stats, VSM_STAT_SM2_VERIFY);
	vsm_key_put(s->e->keys, key);
	return st;
}

static uint32_t h_external_verify(struct vsm_conn *s, struct vsmp_reader *rd,
				  struct vsmp_writer *w)
{
	const crypto_sm2_key *pub = NULL;
	size_t plen, elen, rslen;
	const uint8_t *point = vsmp_get_bytes(rd, VSMP_POINT_LEN, &plen);
	const uint8_t *e = vsmp_get_bytes(rd, CRYPTO_SM3_LEN, &elen);
	const uint8_t *rs = vsmp_get_bytes(rd, VSMP_RS_LEN, &rslen);
	FINISH(rd);
	uint32_t st = sm2_from_point(s, point, plen, &pub);
	if (st == VSMP_SDR_OK) {
		st = verify_rs(pub, e, elen, rs, rslen);
		if (st != VSMP_SDR_INARGERR)
			vsm_stats_count(s->e->stats, VSM_STAT_SM2_VERIFY);
	}
	return st;
}

static uint32_t h_external_encrypt(struct vsm_conn *s, struct vsmp_reader *rd,
				   struct vsmp_writer *w)
{
	const crypto_sm2_key *pub = NULL;
	size_t plen, dlen;
	const uint8_t *point = vsmp_get_bytes(rd, VSMP_POINT_LEN, &plen);
	const uint8_t *data = vsmp_get_bytes(rd, MAX_SM2_PLAIN, &dlen);
	FINISH(rd);
	uint32_t st = sm2_from_point(s, point, plen, &pub);
	if (st == VSMP_SDR_OK)
		st = sm2_encrypt_out(pub, data, dlen, w);
	if (st == VSMP_SDR_OK)
		vsm_stats_count(s->e->stats, VSM_STAT_SM2_ENCRYPT);
	return st;
}

static uint32_t h_internal_encrypt(struct vsm_conn *s, struct vsmp_reader *rd,
				   struct vsmp_writer *w)
{
	struct vsm_key *key;
	size_t dlen;
	uint32_t st, index = vsmp_get_u32(rd);
	const uint8_t *data = vsmp_get_bytes(rd, MAX_SM2_PLAIN, &dlen);
	FINISH(rd);
	if (dlen < 1)
		return VSMP_SDR_INARGERR;
	if (get_key(s, VSM_KEY_ENC, index, false, &key, &st) < 0)
		return st;
	st = sm2_encrypt_out(key->sm2, data, dlen, w);
	if (st == VSMP_SDR_OK)
		vsm_stats_count(s->e->stats, VSM_STAT_SM2_ENCRYPT);
	vsm_key_put(s->e->keys, key);
	return st;
}

static uint32_t h_internal_decrypt(struct vsm_conn *s, struct vsmp_reader *rd,
				   struct vsmp_writer *w)
{
	struct vsm_key *key;
	uint8_t *plain = NULL;
	size_t clen, plen = 0;
	uint32_t st, index = vsmp_get_u32(rd);
	const uint8_t *cipher = vsmp_get_bytes(rd, MAX_SM2_CIPHER, &clen);
	FINISH(rd);
	if (clen < 1)
		return VSMP_SDR_INARGERR;
	if (get_key(s, VSM_KEY_ENC, index, true, &key, &st) < 0)
		return st;
	int r = crypto_sm2_decrypt(key->sm2, cipher, clen, &plain, &plen);
	st = r == 0 ? VSMP_SDR_OK : r == -EBADMSG ? VSMP_SDR_ENCDATAERR : VSMP_SDR_SKOPERR;
	if (r == 0) {
		vsmp_put_bytes(w, plain, plen);
		vsm_stats_count(s->e->stats, VSM_STAT_SM2_DECRYPT);
	}
	crypto_free_secret(plain, plen);
	vsm_key_put(s->e->keys, key);
	return st;
}

/* ENCRYPT, DECRYPT and CALCULATE_MAC share their request layout. The data
 * is transformed in place, in the session's payload buffer. */
static uint32_t symmetric(struct vsm_conn *s, struct vsmp_reader *rd, struct vsmp_writer *w,
			  uint16_t type)
{
	size_t ivlen, dlen;
	uint8_t iv_out[CRYPTO_SM4_BLOCK_LEN];
	uint32_t handle = vsmp_get_u32(rd), alg = vsmp_get_u32(rd);
	const uint8_t *iv = vsmp_get_bytes(rd, CRYPTO_SM4_BLOCK_LEN, &ivlen);
	const uint8_t *data = vsmp_get_bytes(rd, MAX_SYM_DATA, &dlen);
	FINISH(rd);
	bool mac = type == VSMP_CALCULATE_MAC, encrypt = type != VSMP_DECRYPT;
	bool cbc = mac || alg == VSMP_SGD_SM4_CBC;
	if (mac ? alg != VSMP_SGD_SM4_MAC : alg != VSMP_SGD_SM4_ECB && alg != VSMP_SGD_SM4_CBC)
		return VSMP_SDR_INARGERR;
	if ((cbc && ivlen != CRYPTO_SM4_BLOCK_LEN) || (ivlen != 0 && ivlen != CRYPTO_SM4_BLOCK_LEN) ||
	    dlen == 0 || dlen % CRYPTO_SM4_BLOCK_LEN != 0)
		return VSMP_SDR_INARGERR;
	struct session_key *sk = session_key(s, handle);
	if (!sk)
		return VSMP_SDR_KEYNOTEXIST;
	uint8_t *buf = s->payload + (data - s->payload);
	if (cbc && !encrypt)
		memcpy(iv_out, buf + dlen - CRYPTO_SM4_BLOCK_LEN, CRYPTO_SM4_BLOCK_LEN);
	int r = cbc ? crypto_sm4_cbc(encrypt, sk->key, iv, buf, dlen, buf) :
		      crypto_sm4_ecb(encrypt, sk->key, buf, dlen, buf);
	if (r < 0)
		return VSMP_SDR_SYMOPERR;
	if (cbc && encrypt)
		memcpy(iv_out, buf + dlen - CRYPTO_SM4_BLOCK_LEN, CRYPTO_SM4_BLOCK_LEN);
	vsmp_writer_reserve(w, 4 + sizeof(iv_out) + 4 + (mac ? sizeof(iv_out) : dlen));
	if (mac) {
		vsmp_put_bytes(w, iv_out, sizeof(iv_out));
		vsmp_put_bytes(w, iv_out, sizeof(iv_out));
	} else {
		vsmp_put_bytes(w, iv_out, cbc ? sizeof(iv_out) : 0);
		vsmp_put_bytes(w, buf, dlen);
	}
	vsm_stats_count(s->e->stats, mac ? VSM_STAT_SM4_MAC :
				     encrypt ? VSM_STAT_SM4_ENCRYPT : VSM_STAT_SM4_DECRYPT);
	return VSMP_SDR_OK;
}

static uint32_t h_encrypt(struct vsm_conn *s, struct vsmp_reader *rd, struct vsmp_writer *w)
{
	return symmetric(s, rd, w, VSMP_ENCRYPT);
}

static uint32_t h_decrypt(struct vsm_conn *s, struct vsmp_reader *rd, struct vsmp_writer *w)
{
	return symmetric(s, rd, w, VSMP_DECRYPT);
}

static uint32_t h_mac(struct vsm_conn *s, struct vsmp_reader *rd, struct vsmp_writer *w)
{
	return symmetric(s, rd, w, VSMP_CALCULATE_MAC);
}

static uint32_t h_key_generate(struct vsm_conn *s, struct vsmp_reader *rd, struct vsmp_writer *w)
{
	uint8_t point[CRYPTO_SM2_POINT_LEN];
	size_t pwlen;
	uint32_t type = vsmp_get_u32(rd), index = vsmp_get_u32(rd);
	const uint8_t *pw = vsmp_get_bytes(rd, VSMP_MAX_PASSWORD, &pwlen);
	FINISH(rd);
	if (type < VSM_KEY_SIGN || type > VSM_KEY_KEK || index > INT32_MAX ||
	    (type == VSM_KEY_KEK && pwlen > 0))
		return VSMP_SDR_INARGERR;
	int r = vsm_keystore_generate(s->e->keys, (int)type, (int)index, pw, pwlen, point);
	if (r < 0)
		return status_of(r);
	vsmp_put_bytes(w, point, type == VSM_KEY_KEK ? 0 : sizeof(point));
	vsm_stats_count(s->e->stats, VSM_STAT_KEYGEN);
	return VSMP_SDR_OK;
}

static uint32_t h_key_list(struct vsm_conn *s, struct vsmp_reader *rd, struct vsmp_writer *w)
{
	struct vsm_key_info *info;
	size_t n;
	FINISH(rd);
	int r = vsm_keystore_list(s->e->keys, &info, &n);
	if (r < 0)
		return status_of(r);
	vsmp_put_u32(w, (uint32_t)n);
	for (size_t i = 0; i < n; i++) {
		vsmp_put_u32(w, (uint32_t)info[i].type);
		vsmp_put_u32(w, (uint32_t)info[i].index);
		vsmp_put_u32(w, info[i].has_password);
		vsmp_put_u64(w, (uint64_t)info[i].created_at);
	}
	free(info);
	return VSMP_SDR_OK;
}

static uint32_t h_key_destroy(struct vsm_conn *s, struct vsmp_reader *rd, struct vsmp_writer *w)
{
	uint32_t type = vsmp_get_u32(rd), index = vsmp_get_u32(rd);
	FINISH(rd);
	if (type < VSM_KEY_SIGN || type > VSM_KEY_KEK || index > INT32_MAX)
		return VSMP_SDR_INARGERR;
	return status_of(vsm_keystore_destroy(s->e->keys, (int)type, (int)index));
}

static uint32_t h_key_set_password(struct vsm_conn *s, struct vsmp_reader *rd,
				   struct vsmp_writer *w)
{
	size_t pwlen;
	uint32_t type = vsmp_get_u32(rd), index = vsmp_get_u32(rd);
	const uint8_t *pw = vsmp_get_bytes(rd, VSMP_MAX_PASSWORD, &pwlen);
	FINISH(rd);
	if ((type != VSM_KEY_SIGN && type != VSM_KEY_ENC) || index > INT32_MAX)
		return VSMP_SDR_INARGERR;
	return status_of(vsm_keystore_set_password(s->e->keys, (int)type, (int)index, pw, pwlen));
}

static const struct {
	uint16_t type;
	handler_fn *fn;
} handlers[] = {
	{ VSMP_DEVICE_INFO, h_device_info },
	{ VSMP_GENERATE_RANDOM, h_random },
	{ VSMP_GET_ACCESS_RIGHT, h_get_access_right },
	{ VSMP_RELEASE_ACCESS_RIGHT, h_release_access_right },
	{ VSMP_EXPORT_SIGN_PUBLIC, h_export_sign },
	{ VSMP_EXPORT_ENC_PUBLIC, h_export_enc },
	{ VSMP_GENERATE_KEY_PAIR, h_generate_key_pair },
	{ VSMP_GEN_KEY_WITH_IPK, h_gen_key_with_ipk },
	{ VSMP_GEN_KEY_WITH_EPK, h_gen_key_with_epk },
	{ VSMP_IMPORT_KEY_WITH_ISK, h_import_key_with_isk },
	{ VSMP_GEN_KEY_WITH_KEK, h_gen_key_with_kek },
	{ VSMP_IMPORT_KEY_WITH_KEK, h_import_key_with_kek },
	{ VSMP_DESTROY_KEY, h_destroy_key },
	{ VSMP_INTERNAL_SIGN, h_internal_sign },
	{ VSMP_INTERNAL_VERIFY, h_internal_verify },
	{ VSMP_EXTERNAL_VERIFY, h_external_verify },
	{ VSMP_EXTERNAL_ENCRYPT, h_external_encrypt },
	{ VSMP_INTERNAL_ENCRYPT, h_internal_encrypt },
	{ VSMP_INTERNAL_DECRYPT, h_internal_decrypt },
	{ VSMP_ENCRYPT, h_encrypt },
	{ VSMP_DECRYPT, h_decrypt },
	{ VSMP_CALCULATE_MAC, h_mac },
	{ VSMP_KEY_GENERATE, h_key_generate },
	{ VSMP_KEY_LIST, h_key_list },
	{ VSMP_KEY_DESTROY, h_key_destroy },
	{ VSMP_KEY_SET_PASSWORD, h_key_set_password },
};

static handler_fn *handler_for(uint16_t type)
{
	for (size_t i = 0; i < sizeof(handlers) / sizeof(handlers[0]); i++)
		if (handlers[i].type == type)
			return handlers[i].fn;
	return NULL;
}

/* ---- authentication ---- */

/* Queues HELLO with a fresh nonce. */
static int queue_hello(struct vsm_conn *s)
{
	struct vsmp_writer *w = &s->out;
	int r = crypto_random(s->server_nonce, VSMP_NONCE_LEN);
	if (r < 0)
		return r;
	vsmp_writer_restart(w, VSMP_HELLO, 0, VSMP_SDR_OK);
	vsmp_put_u32(w, VSMP_VERSION);
	vsmp_put_bytes(w, s->server_nonce, VSMP_NONCE_LEN);
	vsmp_put_bytes(w, s->e->id, strlen(s->e->id));
	return vsmp_writer_end(w);
}

/* Checks an AUTH payload: OK with the server proof in the response, or
 * PARDENY, or PROTOCOL_ERROR. */
static uint32_t check_auth(struct vsm_conn *s, struct vsmp_reader *rd, struct vsmp_writer *w)
{
	struct store_vsm v;
	uint8_t *secret = NULL, expect[VSMP_PROOF_LEN], proof_out[VSMP_PROOF_LEN];
	size_t secret_len = 0, idlen, nlen, plen;
	uint32_t st = VSMP_SDR_PARDENY;
	const uint8_t *token_id = vsmp_get_bytes(rd, VSMP_MAX_TOKEN_ID, &idlen);
	const uint8_t *cnonce = vsmp_get_bytes(rd, VSMP_NONCE_LEN, &nlen);
	const uint8_t *proof = vsmp_get_bytes(rd, VSMP_PROOF_LEN, &plen);
	if (vsmp_reader_finish(rd) < 0 || nlen != VSMP_NONCE_LEN || plen != VSMP_PROOF_LEN)
		return PROTOCOL_ERROR;
	if (!limit_allows(s->e, s->addr))
		return VSMP_SDR_PARDENY; /* refused without checking */
	if (!s->e->store || store_vsm_get(s->e->store, s->e->id, &v) < 0 || !v.token_configured ||
	    store_vsm_token_get(s->e->store, s->e->id, &secret, &secret_len) < 0)
		goto out;
	bool id_ok = strlen(v.token_id) == idlen && crypto_memeq(v.token_id, token_id, idlen);
	if (vsmp_client_proof(secret, secret_len, s->server_nonce, cnonce, token_id, idlen,
			      expect) < 0 ||
	    !(crypto_memeq(expect, proof, VSMP_PROOF_LEN) & id_ok))
		goto out;
	if (vsmp_server_proof(secret, secret_len, s->server_nonce, cnonce, token_id, idlen,
			      proof_out) < 0)
		goto out;
	vsmp_put_bytes(w, proof_out, sizeof(proof_out));
	st = VSMP_SDR_OK;
out:
	limit_record(s->e, s->addr, st == VSMP_SDR_OK);
	crypto_free_secret(secret, secret_len);
	crypto_wipe(expect, sizeof(expect));
	return st;
}

/* ---- the connection ---- */

static void session_addr(struct vsm_conn *s, const struct sockaddr *peer, socklen_t len)
{
	if (peer->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
		memcpy(s->addr, &((const struct sockaddr_in6 *)peer)->sin6_addr, 16);
	} else if (peer->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
		s->addr[10] = s->addr[11] = 0xff;
		memcpy(s->addr + 12, &((const struct sockaddr_in *)peer)->sin_addr, 4);
	}
}

/* True when h may come now: a request of the table, AUTH before
 * authentication and only then, no status. */
static bool request_allowed(const struct vsm_conn *s, const struct vsmp_header *h)
{
	return h->status == 0 && vsmp_request_known(h->type) &&
	       (h->type == VSMP_AUTH) != s->authenticated;
}

/* Reads what the socket has (one read). 0, 1 when it had nothing, or a
 * negative errno to close (-ECONNRESET at end of stream). */
static int read_input(struct vsm_conn *s)
{
	uint8_t *p;
	size_t n;
	int r = vsmp_in_space(&s->in, &p, &n);
	if (r < 0)
		return r;
	for (;;) {
		ssize_t got = read(s->fd, p, n);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0 && errno == EAGAIN)
			return 1;
		if (got < 0)
			return -errno;
		if (got == 0)
			return -ECONNRESET;
		vsmp_in_commit(&s->in, (size_t)got);
		return 0;
	}
}

/* Wipes the response just sent (the bytes it used: the rest of the
 * buffer never held any); frees the buffer when it grew large. */
static void out_done(struct vsm_conn *s)
{
	crypto_wipe(s->out.buf, s->out.len);
	s->out.len = 0;
	s->out_sent = 0;
	if (s->out.cap > OUT_KEEP_MAX) {
		free(s->out.buf);
		memset(&s->out, 0, sizeof(s->out));
	}
}

/* Serves the whole request at the front of the input buffer (header h,
 * payload in s->payload): its response goes to s->out. */
static void serve_request(struct vsm_conn *s, const struct vsmp_header *h)
{
	struct vsmp_reader rd;
	struct vsmp_writer *w = &s->out;
	uint16_t rtype = (uint16_t)(h->type | VSMP_RESPONSE);
	vsmp_reader_init(&rd, s->payload, h->length);
	vsmp_writer_restart(w, rtype, h->request_id, VSMP_SDR_OK);
	handler_fn *fn = handler_for(h->type);
	uint32_t st = h->type == VSMP_AUTH ? check_auth(s, &rd, w) :
		      fn ? fn(s, &rd, w) : PROTOCOL_ERROR;
	vsmp_in_consume(&s->in, h);
	s->payload = NULL;
	if (st == PROTOCOL_ERROR) {
		fail_protocol(s, h->type, h->request_id);
		return;
	}
	int r = st == VSMP_SDR_OK ? vsmp_writer_end(w) : -EINVAL;
	if (r < 0) {
		/* A non-OK status, or a response too large: an empty payload. */
		if (st == VSMP_SDR_OK)
			st = r == -EMSGSIZE ? VSMP_SDR_NOBUFFER : VSMP_SDR_UNKNOWERR;
		if (queue_status(s, h->type, h->request_id, st) < 0)
			s->phase = PHASE_CLOSE;
	}
	if (h->type == VSMP_AUTH && s->phase == PHASE_SERVE) {
		if (st != VSMP_SDR_OK) {
			s->phase = PHASE_LAST;
			return;
		}
		s->authenticated = true;
		s->wait_deadline = -1;
		vsm_stats_sessions(s->e->stats, 1);
	}
}

/* Serves every whole request buffered, one at a time, each response sent
 * before the next request is taken. Returns what serve_step returns. */
static int serve_buffered(struct vsm_conn *s)
{
	uint32_t max = s->authenticated ? VSMP_MAX_PAYLOAD : VSMP_MAX_PAYLOAD_PREAUTH;
	while (s->phase == PHASE_SERVE) {
		struct vsmp_header h;
		int hr = vsmp_in_header(&s->in, max, &h);
		if (hr > 0 && !request_allowed(s, &h))
			hr = -EPROTO;
		if (hr < 0) {
			const uint8_t *hb = s->in.buf + s->in.start;
			uint16_t raw_type = (uint16_t)(hb[4] << 8 | hb[5]);
			uint32_t raw_id = (uint32_t)hb[8] << 24 | (uint32_t)hb[9] << 16 |
					  (uint32_t)hb[10] << 8 | hb[11];
			fail_protocol(s, raw_type & ~VSMP_RESPONSE, raw_id);
			break;
		}
		int pr = hr > 0 ? vsmp_in_payload(&s->in, &h, &s->payload) : 0;
		if (pr < 0) {
			s->phase = queue_status(s, h.type, h.request_id, VSMP_SDR_NOBUFFER) < 0 ?
					   PHASE_CLOSE : PHASE_LAST;
			break;
		}
		if (pr == 0) {
			/* A frame under way must be complete within its time. */
			if (s->authenticated && s->frame_deadline < 0 && vsmp_in_buffered(&s->in) > 0)
				s->frame_deadline = chsm_monotonic_ms() + FRAME_TIMEOUT_MS;
			return VSM_CONN_WANT_READ;
		}
		serve_request(s, &h);
		s->frame_deadline = -1;
		if (!s->authenticated)
			s->wait_deadline = chsm_monotonic_ms() + PREAUTH_TIMEOUT_MS;
		if (s->phase == PHASE_CLOSE)
			return -ECONNRESET;
		int fr = flush_out(s);
		if (fr < 0)
			return fr;
		if (fr > 0)
			return VSM_CONN_WANT_WRITE;
	}
	return vsm_conn_step(s, false);
}

/* ---- the connection ---- */

int vsm_conn_new(vsm_engine *e, int fd, const struct sockaddr *peer, socklen_t peer_len,
		 vsm_conn **ret_conn)
{
	struct vsm_conn *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->e = e;
	s->fd = fd;
	s->send_deadline = s->frame_deadline = s->drain_deadline = -1;
	s->wait_deadline = chsm_monotonic_ms() + PREAUTH_TIMEOUT_MS;
	session_addr(s, peer, peer_len);
	int r = queue_hello(s);
	if (r < 0) {
		vsm_conn_free(s);
		return r;
	}
	*ret_conn = s;
	return 0;
}

int vsm_conn_step(vsm_conn *s, bool readable)
{
	int r;
	if (s->phase == PHASE_CLOSE)
		return -ECONNRESET;
	if (s->out_sent < s->out.len) {
		r = flush_out(s);
		if (r < 0)
			return r;
		if (r > 0)
			return VSM_CONN_WANT_WRITE;
	}
	switch (s->phase) {
	case PHASE_SERVE:
		if (readable) {
			r = read_input(s);
			if (r < 0)
				return r;
		}
		return serve_buffered(s);
	case PHASE_FAILING:
		shutdown(s->fd, SHUT_WR);
		s->phase = PHASE_DRAIN;
		s->drain_deadline = chsm_monotonic_ms() + DRAIN_TIMEOUT_MS;
		return VSM_CONN_WANT_READ;
	case PHASE_DRAIN:
		if (readable) {
			uint8_t sink[4096];
			ssize_t n = read(s->fd, sink, sizeof(sink));
			if (n < 0 && (errno == EINTR || errno == EAGAIN))
				return VSM_CONN_WANT_READ;
			if (n <= 0 || (s->drained += (size_t)n) >= DRAIN_MAX_BYTES)
				return -ECONNRESET;
		}
		return VSM_CONN_WANT_READ;
	case PHASE_LAST:
		return -ECONNRESET;
	default:
		return -EPROTO;
	}
}

int64_t vsm_conn_deadline(const vsm_conn *s)
{
	if (s->out_sent < s->out.len && s->send_deadline >= 0)
		return s->send_deadline;
	if (s->phase == PHASE_DRAIN)
		return s->drain_deadline;
	return s->authenticated ? s->frame_deadline : s->wait_deadline;
}

int vsm_conn_timeout(vsm_conn *s)
{
	struct vsmp_header h;
	uint32_t max = s->authenticated ? VSMP_MAX_PAYLOAD : VSMP_MAX_PAYLOAD_PREAUTH;
	if (s->phase != PHASE_SERVE || s->out_sent < s->out.len)
		return -ETIMEDOUT;
	/* A frame whose header came but not the rest is answered COMMFAIL. */
	if (vsmp_in_header(&s->in, max, &h) <= 0)
		return -ETIMEDOUT;
	fail_protocol(s, h.type, h.request_id);
	return vsm_conn_step(s, false);
}

void vsm_conn_free(vsm_conn *s)
{
	if (!s)
		return;
	if (s->authenticated)
		vsm_stats_sessions(s->e->stats, -1);
	crypto_sm2_key_free(s->ext_key);
	vsmp_in_free(&s->in);
	vsmp_writer_free(&s->out);
	crypto_free_secret(s, sizeof(*s));
}

void vsm_engine_serve(vsm_engine *e, int fd, const struct sockaddr *peer, socklen_t peer_len)
{
	vsm_conn *c;
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || (!(fl & O_NONBLOCK) && fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0))
		return;
	if (vsm_conn_new(e, fd, peer, peer_len, &c) < 0)
		return;
	int want = vsm_conn_step(c, false);
	while (want >= 0) {
		int64_t deadline = vsm_conn_deadline(c), now = chsm_monotonic_ms();
		if (deadline >= 0 && now >= deadline) {
			want = vsm_conn_timeout(c);
			continue;
		}
		struct pollfd p = { .fd = fd, .events = want == VSM_CONN_WANT_WRITE ? POLLOUT : POLLIN };
		int pr = poll(&p, 1, deadline < 0 ? -1 : (int)(deadline - now));
		if (pr < 0 && errno != EINTR)
			break;
		if (pr > 0)
			want = vsm_conn_step(c, (p.revents & ~POLLOUT) != 0);
	}
	vsm_conn_free(c);
}
