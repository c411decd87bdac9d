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

void vsmp_writer_begin(struct vsmp_writer *w, uint16_t type, uint32_t request_id, uint32_t status)
{
	memset(w, 0, sizeof(*w));
	reserve(w, VSMP_HEADER_LEN);
	if (w->failed)
		return;
	put_be32(w->buf, VSMP_MAGIC);
	w->buf[4] = (uint8_t)(type >> 8);
	w->buf[5] = (uint8_t)type;
	w->buf[6] = w->buf[7] = 0;
	put_be32(w->buf + 8, request_id);
	put_be32(w->buf + 12, status);
	put_be32(w->buf + 16, 0);
	w->len = VSMP_HEADER_LEN;
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
