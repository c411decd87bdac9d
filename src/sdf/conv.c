/*
 * conv.c: conversions between the GM/T 0018 structures (64-byte fields,
 * values right-aligned) and the forms the wire and OpenSSL use (the 65-byte
 * point, r || s, DER). Also the library-side SM3 of SDF_HashInit/Update/Final.
 *
 * Guarantees: a structure whose value does not fit 32 bytes (non-zero
 * leading bytes) or whose bits is not 256 is refused, never truncated;
 * outputs are written only on success. Nothing here logs.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "sdf/sdf_internal.h"

#define HALF (ECCref_MAX_LEN - 32)

static bool zero(const unsigned char *p, size_t n)
{
	unsigned char acc = 0;
	for (size_t i = 0; i < n; i++)
		acc |= p[i];
	return acc == 0;
}

int sdf_pub_to_point(const ECCrefPublicKey *pub, uint8_t point[CRYPTO_SM2_POINT_LEN])
{
	if (!pub || pub->bits != 256 || !zero(pub->x, HALF) || !zero(pub->y, HALF))
		return -EINVAL;
	point[0] = 0x04;
	memcpy(point + 1, pub->x + HALF, 32);
	memcpy(point + 33, pub->y + HALF, 32);
	return 0;
}

int sdf_pub_from_point(const uint8_t point[CRYPTO_SM2_POINT_LEN], ECCrefPublicKey *pub)
{
	if (point[0] != 0x04)
		return -EINVAL;
	memset(pub, 0, sizeof(*pub));
	pub->bits = 256;
	memcpy(pub->x + HALF, point + 1, 32);
	memcpy(pub->y + HALF, point + 33, 32);
	return 0;
}

int sdf_sig_to_rs(const ECCSignature *sig, uint8_t rs[64])
{
	if (!sig || !zero(sig->r, HALF) || !zero(sig->s, HALF))
		return -EINVAL;
	memcpy(rs, sig->r + HALF, 32);
	memcpy(rs + 32, sig->s + HALF, 32);
	return 0;
}

void sdf_sig_from_rs(const uint8_t rs[64], ECCSignature *sig)
{
	memset(sig, 0, sizeof(*sig));
	memcpy(sig->r + HALF, rs, 32);
	memcpy(sig->s + HALF, rs + 32, 32);
}

int sdf_sig_to_der(const ECCSignature *sig, uint8_t der[CRYPTO_SM2_SIG_DER_MAX], size_t *ret_len)
{
	uint8_t rs[64];
	int r = sdf_sig_to_rs(sig, rs);
	if (r < 0)
		return r;
	return crypto_sm2_sig_rs_to_der(rs, rs + 32, der, ret_len);
}

int sdf_sig_from_der(const uint8_t *der, size_t len, ECCSignature *sig)
{
	uint8_t rs[64];
	int r = crypto_sm2_sig_der_to_rs(der, len, rs, rs + 32);
	if (r < 0)
		return r;
	sdf_sig_from_rs(rs, sig);
	return 0;
}

int sdf_cipher_to_der(const ECCCipher *c, uint8_t **ret_der, size_t *ret_len)
{
	if (!c || c->L == 0 || !zero(c->x, HALF) || !zero(c->y, HALF))
		return -EINVAL;
	return crypto_sm2_cipher_parts_to_der(c->x + HALF, c->y + HALF, c->M, c->C, c->L, ret_der,
					      ret_len);
}

int sdf_cipher_from_der(const uint8_t *der, size_t len, size_t max_c, ECCCipher *c)
{
	uint8_t x[32], y[32], hash[32], *c2 = NULL;
	size_t c2len = 0;
	int r = crypto_sm2_cipher_der_to_parts(der, len, x, y, hash, &c2, &c2len);
	if (r < 0)
		return r;
	if (c2len == 0 || c2len > max_c || c2len > 0xffffffffu) {
		crypto_free_secret(c2, c2len);
		return -EINVAL;
	}
	memset(c->x, 0, sizeof(c->x));
	memset(c->y, 0, sizeof(c->y));
	memcpy(c->x + HALF, x, 32);
	memcpy(c->y + HALF, y, 32);
	memcpy(c->M, hash, 32);
	c->L = (unsigned int)c2len;
	memcpy(c->C, c2, c2len);
	crypto_free_secret(c2, c2len);
	return 0;
}

/* ---- hash ---- */

void sdf_hash_clear(struct sdf_hash *h)
{
	crypto_sm3_free(h->ctx);
	h->ctx = NULL;
}

int sdf_hash_init(struct sdf_hash *h, const ECCrefPublicKey *pub, const uint8_t *id, size_t idlen)
{
	uint8_t z[CRYPTO_SM3_LEN];
	crypto_sm3_ctx *ctx = NULL;
	char *idstr = NULL;
	crypto_sm2_key *key = NULL;
	int r;
	if (pub) {
		uint8_t point[CRYPTO_SM2_POINT_LEN];
		if (idlen > SDF_ID_MAX || (idlen && (!id || memchr(id, '\0', idlen))))
			return -EINVAL;
		if ((r = sdf_pub_to_point(pub, point)) < 0 ||
		    (r = crypto_sm2_from_public_point(point, &key)) < 0)
			return -EINVAL;
		if (idlen) {
			if (!(idstr = malloc(idlen + 1))) {
				r = -ENOMEM;
				goto out;
			}
			memcpy(idstr, id, idlen);
			idstr[idlen] = '\0';
		}
		if ((r = crypto_sm2_z(key, idstr, z)) < 0)
			goto out;
	}
	if ((r = crypto_sm3_new(&ctx)) < 0)
		goto out;
	if (pub && (r = crypto_sm3_update(ctx, z, sizeof(z))) < 0)
		goto out;
	sdf_hash_clear(h);
	h->ctx = ctx;
	ctx = NULL;
out:
	crypto_sm3_free(ctx);
	crypto_sm2_key_free(key);
	free(idstr);
	return r;
}

int sdf_hash_update(struct sdf_hash *h, const void *data, size_t len)
{
	if (!h->ctx)
		return -EPERM;
	return crypto_sm3_update(h->ctx, data, len);
}

int sdf_hash_final(struct sdf_hash *h, uint8_t out[CRYPTO_SM3_LEN])
{
	if (!h->ctx)
		return -EPERM;
	int r = crypto_sm3_final(h->ctx, out);
	sdf_hash_clear(h);
	return r;
}
