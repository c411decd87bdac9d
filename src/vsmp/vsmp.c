/*
 * vsmp.c: see vsmp.h.
 */
#include "vsmp/vsmp.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/crypto.h"

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

bool vsmp_request_known(uint16_t type)
{
	switch (type) {
	case VSMP_AUTH: case VSMP_DEVICE_INFO: case VSMP_GENERATE_RANDOM:
	case VSMP_GET_ACCESS_RIGHT: case VSMP_RELEASE_ACCESS_RIGHT:
	case VSMP_EXPORT_SIGN_PUBLIC: case VSMP_EXPORT_ENC_PUBLIC: case VSMP_GENERATE_KEY_PAIR:
	case VSMP_GEN_KEY_WITH_IPK: case VSMP_GEN_KEY_WITH_EPK: case VSMP_IMPORT_KEY_WITH_ISK:
	case VSMP_GEN_KEY_WITH_KEK: case VSMP_IMPORT_KEY_WITH_KEK: case VSMP_DESTROY_KEY:
	case VSMP_INTERNAL_SIGN: case VSMP_INTERNAL_VERIFY: case VSMP_EXTERNAL_VERIFY:
	case VSMP_EXTERNAL_ENCRYPT: case VSMP_INTERNAL_ENCRYPT: case VSMP_INTERNAL_DECRYPT:
	case VSMP_ENCRYPT: case VSMP_DECRYPT: case VSMP_CALCULATE_MAC:
	case VSMP_KEY_GENERATE: case VSMP_KEY_LIST: case VSMP_KEY_DESTROY:
	case VSMP_KEY_SET_PASSWORD:
		return true;
	default:
		return false;
	}
}

int vsmp_header_decode(const uint8_t buf[VSMP_HEADER_LEN], uint32_t max_payload,
		       struct vsmp_header *ret)
{
	if (be32(buf) != VSMP_MAGIC)
		return -EPROTO;
	struct vsmp_header h = {
		.type = (uint16_t)(buf[4] << 8 | buf[5]),
		.flags = (uint16_t)(buf[6] << 8 | buf[7]),
		.request_id = be32(buf + 8),
		.status = be32(buf + 12),
		.length = be32(buf + 16),
	};
	if (h.flags != 0 || h.length > max_payload)
		return -EPROTO;
	*ret = h;
	return 0;
}

void vsmp_reader_init(struct vsmp_reader *r, const uint8_t *payload, size_t len)
{
	r->p = payload;
	r->left = payload ? len : 0;
	r->failed = false;
}

static const uint8_t *take(struct vsmp_reader *r, size_t n)
{
	if (r->failed || r->left < n) {
		r->failed = true;
		return NULL;
	}
	const uint8_t *p = r->p;
	r->p += n;
	r->left -= n;
	return p;
}

uint32_t vsmp_get_u32(struct vsmp_reader *r)
{
	const uint8_t *p = take(r, 4);
	return p ? be32(p) : 0;
}

uint64_t vsmp_get_u64(struct vsmp_reader *r)
{
	const uint8_t *p = take(r, 8);
	return p ? (uint64_t)be32(p) << 32 | be32(p + 4) : 0;
}

const uint8_t *vsmp_get_bytes(struct vsmp_reader *r, size_t max, size_t *ret_len)
{
	uint32_t n = vsmp_get_u32(r);
	if (!r->failed && n > max)
		r->failed = true;
	const uint8_t *p = r->failed ? NULL : take(r, n);
	*ret_len = p ? n : 0;
	/* A zero-length field is valid: point at the (unread) position. */
	return p ? p : (r->failed ? NULL : r->p);
}

int vsmp_reader_finish(const struct vsmp_reader *r)
{
	return r->failed || r->left != 0 ? -EPROTO : 0;
}

static void reserve(struct vsmp_writer *w, size_t n)
{
	if (w->failed)
		return;
	if (w->len + n > VSMP_HEADER_LEN + (size_t)VSMP_MAX_PAYLOAD) {
		w->failed = true;
		return;
	}
	if (w->len + n <= w->cap)
		return;
	size_t cap = w->cap ? w->cap : 256;
	while (cap < w->len + n)
		cap *= 2;
	uint8_t *nb = malloc(cap);
	if (!nb) {
		w->failed = true;
		return;
	}
	if (w->buf) {
		memcpy(nb, w->buf, w->len);
		crypto_free_secret(w->buf, w->cap);
	}
	w->buf = nb;
	w->cap = cap;
}

/* Writes a header with length 0 at the start of w's buffer (which has room). */
static void put_header(struct vsmp_writer *w, uint16_t type, uint32_t request_id,
		       uint32_t status)
{
	put_be32(w->buf, VSMP_MAGIC);
	w->buf[4] = (uint8_t)(type >> 8);
	w->buf[5] = (uint8_t)type;
	w->buf[6] = w->buf[7] = 0;
	put_be32(w->buf + 8, request_id);
	put_be32(w->buf + 12, status);
	put_be32(w->buf + 16, 0);
	w->len = VSMP_HEADER_LEN;
}

void vsmp_writer_begin(struct vsmp_writer *w, uint16_t type, uint32_t request_id, uint32_t status)
{
	memset(w, 0, sizeof(*w));
	reserve(w, VSMP_HEADER_LEN);
	if (!w->failed)
		put_header(w, type, request_id, status);
}

void vsmp_put_u32(struct vsmp_writer *w, uint32_t v)
{
	reserve(w, 4);
	if (w->failed)
		return;
	put_be32(w->buf + w->len, v);
	w->len += 4;
}

void vsmp_put_u64(struct vsmp_writer *w, uint64_t v)
{
	vsmp_put_u32(w, (uint32_t)(v >> 32));
	vsmp_put_u32(w, (uint32_t)v);
}

void vsmp_put_bytes(struct vsmp_writer *w, const void *p, size_t n)
{
	if (n > VSMP_MAX_PAYLOAD) {
		w->failed = true;
		return;
	}
	vsmp_put_u32(w, (uint32_t)n);
	reserve(w, n);
	if (w->failed)
		return;
	if (n)
		memcpy(w->buf + w->len, p, n);
	w->len += n;
}

int vsmp_writer_end(struct vsmp_writer *w)
{
	if (w->failed)
		return w->buf && w->len >= VSMP_HEADER_LEN ? -EMSGSIZE : -ENOMEM;
	put_be32(w->buf + 16, (uint32_t)(w->len - VSMP_HEADER_LEN));
	return 0;
}

void vsmp_writer_free(struct vsmp_writer *w)
{
	crypto_free_secret(w->buf, w->cap);
	memset(w, 0, sizeof(*w));
}

void vsmp_writer_reserve(struct vsmp_writer *w, size_t n)
{
	reserve(w, n);
}

void vsmp_writer_restart(struct vsmp_writer *w, uint16_t type, uint32_t request_id,
			 uint32_t status)
{
	if (!w->buf) {
		vsmp_writer_begin(w, type, request_id, status);
		return;
	}
	crypto_wipe(w->buf, w->len);
	w->failed = false;
	put_header(w, type, request_id, status);
}

/* ---- buffering received frames ---- */

int vsmp_in_header(const struct vsmp_in *in, uint32_t max_payload, struct vsmp_header *ret_h)
{
	if (in->end - in->start < VSMP_HEADER_LEN)
		return 0;
	return vsmp_header_decode(in->buf + in->start, max_payload, ret_h) < 0 ? -EPROTO : 1;
}

/* Moves the front frame to the start of the buffer and wipes the bytes
 * it leaves behind. */
static void in_compact(struct vsmp_in *in)
{
	size_t have = in->end - in->start;
	if (in->start == 0)
		return;
	memmove(in->buf, in->buf + in->start, have);
	crypto_wipe(in->buf + have, in->end - have);
	in->start = 0;
	in->end = have;
}

/* Makes room for need bytes (at most one whole frame) from the front
 * frame on, compacting or growing the buffer. 0 or -ENOMEM. */
static int in_room(struct vsmp_in *in, size_t need)
{
	if (in->buf && in->start + need <= in->cap)
		return 0;
	if (in->buf && need <= in->cap) {
		in_compact(in);
		return 0;
	}
	size_t limit = VSMP_HEADER_LEN + (size_t)VSMP_MAX_PAYLOAD;
	size_t have = in->end - in->start;
	size_t cap = in->cap ? in->cap : VSMP_IN_INITIAL;
	while (cap < need)
		cap *= 2;
	if (cap > limit)
		cap = limit;
	uint8_t *nb = malloc(cap);
	if (!nb)
		return -ENOMEM;
	if (in->buf) {
		memcpy(nb, in->buf + in->start, have);
		crypto_free_secret(in->buf, in->cap);
	}
	in->buf = nb;
	in->cap = cap;
	in->start = 0;
	in->end = have;
	return 0;
}

int vsmp_in_payload(struct vsmp_in *in, const struct vsmp_header *h, uint8_t **ret_payload)
{
	if (h->length > VSMP_MAX_PAYLOAD)
		return -EPROTO;
	size_t need = VSMP_HEADER_LEN + (size_t)h->length;
	if (in->end - in->start >= need) {
		*ret_payload = in->buf + in->start + VSMP_HEADER_LEN;
		return 1;
	}
	return in_room(in, need) < 0 ? -ENOMEM : 0;
}

int vsmp_in_space(struct vsmp_in *in, uint8_t **ret_p, size_t *ret_len)
{
	if (in_room(in, VSMP_HEADER_LEN) < 0)
		return -ENOMEM;
	if (in->end == in->cap)
		in_compact(in);
	/* Full with a whole header: vsmp_in_payload makes the room. */
	if (in->end == in->cap)
		return -ENOBUFS;
	*ret_p = in->buf + in->end;
	*ret_len = in->cap - in->end;
	return 0;
}

void vsmp_in_commit(struct vsmp_in *in, size_t n)
{
	in->end += n > in->cap - in->end ? in->cap - in->end : n;
}

void vsmp_in_consume(struct vsmp_in *in, const struct vsmp_header *h)
{
	size_t n = VSMP_HEADER_LEN + (size_t)h->length;
	if (n > in->end - in->start)
		n = in->end - in->start;
	crypto_wipe(in->buf + in->start, n);
	in->start += n;
	if (in->start == in->end)
		in->start = in->end = 0;
}

size_t vsmp_in_buffered(const struct vsmp_in *in)
{
	return in->end - in->start;
}

void vsmp_in_free(struct vsmp_in *in)
{
	crypto_free_secret(in->buf, in->cap);
	memset(in, 0, sizeof(*in));
}

static int proof(const char *label, const uint8_t *secret, size_t secret_len, const uint8_t *first,
		 const uint8_t *second, const uint8_t *token_id, size_t token_id_len,
		 uint8_t out[VSMP_PROOF_LEN])
{
	crypto_hmac_ctx *h = NULL;
	int r = crypto_hmac_sm3_new(secret, secret_len, &h);
	if (r == 0)
		r = crypto_hmac_sm3_update(h, label, strlen(label));
	if (r == 0)
		r = crypto_hmac_sm3_update(h, first, VSMP_NONCE_LEN);
	if (r == 0)
		r = crypto_hmac_sm3_update(h, second, VSMP_NONCE_LEN);
	if (r == 0)
		r = crypto_hmac_sm3_update(h, token_id, token_id_len);
	if (r == 0)
		r = crypto_hmac_sm3_final(h, out);
	crypto_hmac_sm3_free(h);
	return r;
}

int vsmp_client_proof(const uint8_t *secret, size_t secret_len,
		      const uint8_t server_nonce[VSMP_NONCE_LEN],
		      const uint8_t client_nonce[VSMP_NONCE_LEN], const uint8_t *token_id,
		      size_t token_id_len, uint8_t out[VSMP_PROOF_LEN])
{
	return proof("VSMP1-CLIENT", secret, secret_len, server_nonce, client_nonce, token_id,
		     token_id_len, out);
}

int vsmp_server_proof(const uint8_t *secret, size_t secret_len,
		      const uint8_t server_nonce[VSMP_NONCE_LEN],
		      const uint8_t client_nonce[VSMP_NONCE_LEN], const uint8_t *token_id,
		      size_t token_id_len, uint8_t out[VSMP_PROOF_LEN])
{
	return proof("VSMP1-SERVER", secret, secret_len, client_nonce, server_nonce, token_id,
		     token_id_len, out);
}
