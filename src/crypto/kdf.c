/*
 * kdf.c: key derivation: the SP 800-108 counter-mode KDF with HMAC-SM3, the
 * SM2 KDF of GB/T 32918.4 and PBKDF2-HMAC-SM3.
 *
 * All three are deterministic functions of their inputs. Intermediate
 * blocks are wiped before returning; on failure out may hold a partial
 * result, which the caller must not use.
 */
#include "crypto/crypto.h"
#include "crypto/crypto_internal.h"

#include <errno.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/kdf.h>
#include <openssl/params.h>

int crypto_kdf_sm3(const void *key, size_t keylen, const char *label,
		   const void *context, size_t contextlen, uint8_t *out, size_t outlen)
{
	if ((key == NULL && keylen > 0) || (context == NULL && contextlen > 0) || out == NULL ||
	    outlen == 0 || outlen > UINT32_MAX / 8)
		return -EINVAL;
	if (label == NULL)
		label = "";
	uint8_t counter[4], bits[4], block[CRYPTO_SM3_LEN];
	static const uint8_t separator = 0x00;
	crypto_put_be32(bits, (uint32_t)(outlen * 8));
	int r = 0;
	for (uint32_t i = 1; outlen > 0; i++) {
		crypto_hmac_ctx *ctx = NULL;
		crypto_put_be32(counter, i);
		r = crypto_hmac_sm3_new(key, keylen, &ctx);
		if (r < 0)
			break;
		if ((r = crypto_hmac_sm3_update(ctx, counter, 4)) == 0 &&
		    (r = crypto_hmac_sm3_update(ctx, label, strlen(label))) == 0 &&
		    (r = crypto_hmac_sm3_update(ctx, &separator, 1)) == 0 &&
		    (r = crypto_hmac_sm3_update(ctx, context, contextlen)) == 0 &&
		    (r = crypto_hmac_sm3_update(ctx, bits, 4)) == 0)
			r = crypto_hmac_sm3_final(ctx, block);
		crypto_hmac_sm3_free(ctx);
		if (r < 0)
			break;
		size_t n = outlen < sizeof(block) ? outlen : sizeof(block);
		memcpy(out, block, n);
		out += n;
		outlen -= n;
	}
	crypto_wipe(block, sizeof(block));
	return r;
}

int crypto_sm2_kdf(const void *z, size_t zlen, uint8_t *out, size_t outlen)
{
	if ((z == NULL && zlen > 0) || out == NULL || outlen == 0 ||
	    outlen / CRYPTO_SM3_LEN >= UINT32_MAX)
		return -EINVAL;
	crypto_sm3_ctx *ctx = NULL;
	int r = crypto_sm3_new(&ctx);
	if (r < 0)
		return r;
	uint8_t counter[4], block[CRYPTO_SM3_LEN];
	for (uint32_t ct = 1; outlen > 0; ct++) {
		crypto_put_be32(counter, ct);
		if ((r = crypto_sm3_reset(ctx)) < 0 || (r = crypto_sm3_update(ctx, z, zlen)) < 0 ||
		    (r = crypto_sm3_update(ctx, counter, 4)) < 0 ||
		    (r = crypto_sm3_final(ctx, block)) < 0)
			break;
		size_t n = outlen < sizeof(block) ? outlen : sizeof(block);
		memcpy(out, block, n);
		out += n;
		outlen -= n;
	}
	crypto_wipe(block, sizeof(block));
	crypto_sm3_free(ctx);
	return r;
}

int crypto_pbkdf2_sm3(const void *pass, size_t passlen, const void *salt, size_t saltlen,
		      uint32_t iterations, uint8_t *out, size_t outlen)
{
	if ((pass == NULL && passlen > 0) || (salt == NULL && saltlen > 0) || iterations < 1 ||
	    out == NULL || outlen == 0)
		return -EINVAL;
	EVP_KDF *kdf = crypto_alg_pbkdf2();
	if (kdf == NULL)
		return -EIO;
	EVP_KDF_CTX *ctx = EVP_KDF_CTX_new(kdf);
	if (ctx == NULL)
		return crypto_fail(-ENOMEM);
	uint64_t iter = iterations;
	int pkcs5 = 1; /* no SP 800-132 lower bounds: the caller picks them */
	OSSL_PARAM params[] = {
		OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SM3", 0),
		OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_PASSWORD,
						  (void *)(passlen > 0 ? pass : ""), passlen),
		OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT,
						  (void *)(saltlen > 0 ? salt : ""), saltlen),
		OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_ITER, &iter),
		OSSL_PARAM_construct_int(OSSL_KDF_PARAM_PKCS5, &pkcs5),
		OSSL_PARAM_construct_end(),
	};
	int r = EVP_KDF_derive(ctx, out, outlen, params) == 1 ? 0 : crypto_fail(-EIO);
	EVP_KDF_CTX_free(ctx);
	return r;
}
