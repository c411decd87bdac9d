/*
 * sm3.c: SM3 (GB/T 32905) and HMAC-SM3, one-shot and streaming.
 *
 * A streaming context belongs to one thread at a time. After final, update
 * and final are refused (-EINVAL) until reset (SM3) or the context is freed
 * (HMAC). HMAC contexts hold the key schedule; freeing them wipes it.
 */
#include "crypto/crypto.h"
#include "crypto/crypto_internal.h"

#include <errno.h>
#include <stdlib.h>

#include <openssl/core_names.h>
#include <openssl/params.h>

#include "common/util.h"

struct crypto_sm3_ctx {
	EVP_MD_CTX *md;
	bool finished;
};

struct crypto_hmac_ctx {
	EVP_MAC_CTX *mac;
	bool finished;
};

int crypto_sm3(const void *data, size_t len, uint8_t out[CRYPTO_SM3_LEN])
{
	const EVP_MD *md = crypto_alg_sm3();
	if (data == NULL && len > 0)
		return -EINVAL;
	if (md == NULL)
		return -EIO;
	unsigned int outlen = 0;
	if (EVP_Digest(len > 0 ? data : "", len, out, &outlen, md, NULL) != 1 ||
	    outlen != CRYPTO_SM3_LEN)
		return crypto_fail(-EIO);
	return 0;
}

int crypto_sm3_hex(const void *data, size_t len, char out[CRYPTO_SM3_HEX_LEN + 1])
{
	uint8_t digest[CRYPTO_SM3_LEN];
	int r = crypto_sm3(data, len, digest);
	if (r < 0)
		return r;
	chsm_hex_encode(digest, sizeof(digest), out);
	return 0;
}

int crypto_sm3_new(crypto_sm3_ctx **ret_ctx)
{
	crypto_sm3_ctx *ctx = calloc(1, sizeof(*ctx));
	if (ctx == NULL)
		return -ENOMEM;
	ctx->md = EVP_MD_CTX_new();
	if (ctx->md == NULL) {
		free(ctx);
		return crypto_fail(-ENOMEM);
	}
	int r = crypto_sm3_reset(ctx);
	if (r < 0) {
		crypto_sm3_free(ctx);
		return r;
	}
	*ret_ctx = ctx;
	return 0;
}

int crypto_sm3_reset(crypto_sm3_ctx *ctx)
{
	const EVP_MD *md = crypto_alg_sm3();
	if (ctx == NULL)
		return -EINVAL;
	if (md == NULL)
		return -EIO;
	if (EVP_DigestInit_ex2(ctx->md, md, NULL) != 1)
		return crypto_fail(-EIO);
	ctx->finished = false;
	return 0;
}

int crypto_sm3_update(crypto_sm3_ctx *ctx, const void *data, size_t len)
{
	if (ctx == NULL || ctx->finished || (data == NULL && len > 0))
		return -EINVAL;
	if (len > 0 && EVP_DigestUpdate(ctx->md, data, len) != 1)
		return crypto_fail(-EIO);
	return 0;
}

int crypto_sm3_final(crypto_sm3_ctx *ctx, uint8_t out[CRYPTO_SM3_LEN])
{
	if (ctx == NULL || ctx->finished)
		return -EINVAL;
	unsigned int outlen = 0;
	if (EVP_DigestFinal_ex(ctx->md, out, &outlen) != 1 || outlen != CRYPTO_SM3_LEN)
		return crypto_fail(-EIO);
	ctx->finished = true;
	return 0;
}

void crypto_sm3_free(crypto_sm3_ctx *ctx)
{
	if (ctx == NULL)
		return;
	EVP_MD_CTX_free(ctx->md);
	free(ctx);
}

int crypto_hmac_sm3_new(const void *key, size_t keylen, crypto_hmac_ctx **ret_ctx)
{
	EVP_MAC *hmac = crypto_alg_hmac();
	if (key == NULL && keylen > 0)
		return -EINVAL;
	if (hmac == NULL)
		return -EIO;
	crypto_hmac_ctx *ctx = calloc(1, sizeof(*ctx));
	if (ctx == NULL)
		return -ENOMEM;
	ctx->mac = EVP_MAC_CTX_new(hmac);
	if (ctx->mac == NULL) {
		free(ctx);
		return crypto_fail(-ENOMEM);
	}
	OSSL_PARAM params[] = {
		OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SM3", 0),
		OSSL_PARAM_construct_end(),
	};
	/* A NULL key would mean "keep the previous key": pass a real pointer
	 * for the empty key. */
	static const uint8_t empty_key[1];
	if (EVP_MAC_init(ctx->mac, keylen > 0 ? key : empty_key, keylen, params) != 1) {
		crypto_hmac_sm3_free(ctx);
		return crypto_fail(-EIO);
	}
	*ret_ctx = ctx;
	return 0;
}

int crypto_hmac_sm3_update(crypto_hmac_ctx *ctx, const void *data, size_t len)
{
	if (ctx == NULL || ctx->finished || (data == NULL && len > 0))
		return -EINVAL;
	if (len > 0 && EVP_MAC_update(ctx->mac, data, len) != 1)
		return crypto_fail(-EIO);
	return 0;
}

int crypto_hmac_sm3_final(crypto_hmac_ctx *ctx, uint8_t out[CRYPTO_SM3_LEN])
{
	if (ctx == NULL || ctx->finished)
		return -EINVAL;
	size_t outlen = 0;
	if (EVP_MAC_final(ctx->mac, out, &outlen, CRYPTO_SM3_LEN) != 1 ||
	    outlen != CRYPTO_SM3_LEN)
		return crypto_fail(-EIO);
	ctx->finished = true;
	return 0;
}

void crypto_hmac_sm3_free(crypto_hmac_ctx *ctx)
{
	if (ctx == NULL)
		return;
	EVP_MAC_CTX_free(ctx->mac);
	free(ctx);
}

int crypto_hmac_sm3(const void *key, size_t keylen, const void *data, size_t len,
		    uint8_t out[CRYPTO_SM3_LEN])
{
	if (data == NULL && len > 0)
		return -EINVAL;
	crypto_hmac_ctx *ctx = NULL;
	int r = crypto_hmac_sm3_new(key, keylen, &ctx);
	if (r < 0)
		return r;
	r = crypto_hmac_sm3_update(ctx, data, len);
	if (r == 0)
		r = crypto_hmac_sm3_final(ctx, out);
	crypto_hmac_sm3_free(ctx);
	return r;
}
