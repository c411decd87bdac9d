/*
 * seal.c: authenticated encryption of small secrets at rest (see crypto.h
 * and docs/crypto.md for the layout).
 *
 * Encrypt-then-MAC: SM4-CTR under k_enc with a random 16-byte nonce as the
 * initial counter, then HMAC-SM3 under k_mac over
 * [aadlen]_64be || aad || nonce || ciphertext. The aad length is bound so that
 * bytes cannot move between the aad and the nonce. The MAC is checked in
 * constant time before anything is decrypted; derived keys are wiped.
 */
#include "crypto/crypto.h"
#include "crypto/crypto_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define SEAL_NONCE_LEN 16
#define SEAL_MAC_LEN   CRYPTO_SM3_LEN

struct seal_keys {
	uint8_t enc[CRYPTO_SM4_KEY_LEN];
	uint8_t mac[CRYPTO_SM3_LEN];
};

static int seal_derive(const uint8_t key[CRYPTO_SEAL_KEY_LEN], struct seal_keys *keys)
{
	int r = crypto_kdf_sm3(key, CRYPTO_SEAL_KEY_LEN, "seal-enc", NULL, 0, keys->enc,
			       sizeof(keys->enc));
	if (r == 0)
		r = crypto_kdf_sm3(key, CRYPTO_SEAL_KEY_LEN, "seal-mac", NULL, 0, keys->mac,
				   sizeof(keys->mac));
	return r;
}

/* tag = HMAC-SM3(k_mac, [aadlen]_64be || aad || nonce || ct) */
static int seal_tag(const uint8_t k_mac[CRYPTO_SM3_LEN], const void *aad, size_t aadlen,
		    const uint8_t *nonce_ct, size_t ctlen, uint8_t tag[SEAL_MAC_LEN])
{
	uint8_t alen[8];
	crypto_put_be32(alen, (uint32_t)((uint64_t)aadlen >> 32));
	crypto_put_be32(alen + 4, (uint32_t)aadlen);
	crypto_hmac_ctx *ctx = NULL;
	int r = crypto_hmac_sm3_new(k_mac, CRYPTO_SM3_LEN, &ctx);
	if (r < 0)
		return r;
	if ((r = crypto_hmac_sm3_update(ctx, alen, sizeof(alen))) == 0 &&
	    (r = crypto_hmac_sm3_update(ctx, aad, aadlen)) == 0 &&
	    (r = crypto_hmac_sm3_update(ctx, nonce_ct, SEAL_NONCE_LEN + ctlen)) == 0)
		r = crypto_hmac_sm3_final(ctx, tag);
	crypto_hmac_sm3_free(ctx);
	return r;
}

int crypto_seal(const uint8_t key[CRYPTO_SEAL_KEY_LEN], const void *aad, size_t aadlen,
		const void *plain, size_t len, uint8_t **ret_out, size_t *ret_len)
{
	if (key == NULL || (aad == NULL && aadlen > 0) || (plain == NULL && len > 0) ||
	    len > SIZE_MAX - CRYPTO_SEAL_OVERHEAD)
		return -EINVAL;
	size_t outlen = len + CRYPTO_SEAL_OVERHEAD;
	uint8_t *out = malloc(outlen);
	if (out == NULL)
		return -ENOMEM;
	struct seal_keys keys;
	uint8_t *nonce = out, *ct = out + SEAL_NONCE_LEN, *tag = ct + len;
	int r = seal_derive(key, &keys);
	if (r == 0)
		r = crypto_random(nonce, SEAL_NONCE_LEN);
	if (r == 0)
		r = crypto_sm4_ctr(keys.enc, nonce, plain, len, ct);
	if (r == 0)
		r = seal_tag(keys.mac, aad, aadlen, nonce, len, tag);
	crypto_wipe(&keys, sizeof(keys));
	if (r < 0) {
		crypto_free_secret(out, outlen);
		return r;
	}
	*ret_out = out;
	*ret_len = outlen;
	return 0;
}

int crypto_unseal(const uint8_t key[CRYPTO_SEAL_KEY_LEN], const void *aad, size_t aadlen,
		  const void *sealed, size_t len, uint8_t **ret_plain, size_t *ret_len)
{
	if (key == NULL || (aad == NULL && aadlen > 0) || (sealed == NULL && len > 0))
		return -EINVAL;
	/* Too short to hold a nonce and a MAC: it cannot authenticate. */
	if (len < CRYPTO_SEAL_OVERHEAD)
		return -EBADMSG;
	const uint8_t *nonce = sealed, *ct = nonce + SEAL_NONCE_LEN;
	size_t ctlen = len - CRYPTO_SEAL_OVERHEAD;
	const uint8_t *tag = ct + ctlen;

	struct seal_keys keys;
	uint8_t expect[SEAL_MAC_LEN];
	uint8_t *plain = NULL;
	int r = seal_derive(key, &keys);
	if (r == 0)
		r = seal_tag(keys.mac, aad, aadlen, nonce, ctlen, expect);
	if (r == 0 && !crypto_memeq(expect, tag, SEAL_MAC_LEN))
		r = -EBADMSG;
	if (r == 0) {
		plain = malloc(ctlen > 0 ? ctlen : 1);
		if (plain == NULL)
			r = -ENOMEM;
	}
	if (r == 0)
		r = crypto_sm4_ctr(keys.enc, nonce, ct, ctlen, plain);
	crypto_wipe(&keys, sizeof(keys));
	if (r < 0) {
		crypto_free_secret(plain, ctlen);
		return r;
	}
	*ret_plain = plain;
	*ret_len = ctlen;
	return 0;
}
