/*
 * sm4.c: SM4 (GB/T 32907) in ECB, CBC (both without padding) and CTR mode.
 *
 * CTR uses the whole 16-byte IV as a big-endian counter incremented once per
 * block, carrying across all 128 bits. Cipher contexts are wiped when freed
 * (OpenSSL cleanses the key schedule).
 */
#include "crypto/crypto.h"
#include "crypto/crypto_internal.h"

#include <errno.h>
#include <stdlib.h>

struct crypto_sm4_ctr_ctx {
	EVP_CIPHER_CTX *cipher;
};

/* Starts a cipher context with padding off. */
static int sm4_init(EVP_CIPHER_CTX **ret_ctx, const EVP_CIPHER *cipher, bool encrypt,
		    const uint8_t *key, const uint8_t *iv)
{
	if (cipher == NULL)
		return -EIO;
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	if (ctx == NULL)
		return crypto_fail(-ENOMEM);
	if (EVP_CipherInit_ex2(ctx, cipher, key, iv, encrypt ? 1 : 0, NULL) != 1 ||
	    EVP_CIPHER_CTX_set_padding(ctx, 0) != 1) {
		EVP_CIPHER_CTX_free(ctx);
		return crypto_fail(-EIO);
	}
	*ret_ctx = ctx;
	return 0;
}

/* Runs len bytes through ctx in int-sized chunks; the output is always
 * exactly len bytes (block modes get whole blocks, CTR is a stream). */
static int sm4_update(EVP_CIPHER_CTX *ctx, const uint8_t *in, size_t len, uint8_t *out)
{
	while (len > 0) {
		size_t n = len < CRYPTO_CHUNK_MAX ? len : CRYPTO_CHUNK_MAX;
		int outl = 0;
		if (EVP_CipherUpdate(ctx, out, &outl, in, (int)n) != 1 || (size_t)outl != n)
			return crypto_fail(-EIO);
		in += n;
		out += n;
		len -= n;
	}
	return 0;
}

static int sm4_oneshot(const EVP_CIPHER *cipher, bool encrypt, const uint8_t *key,
		       const uint8_t *iv, const uint8_t *in, size_t len, uint8_t *out)
{
	if (key == NULL || (len > 0 && (in == NULL || out == NULL)))
		return -EINVAL;
	if (len == 0)
		return 0;
	EVP_CIPHER_CTX *ctx = NULL;
	int r = sm4_init(&ctx, cipher, encrypt, key, iv);
	if (r < 0)
		return r;
	r = sm4_update(ctx, in, len, out);
	EVP_CIPHER_CTX_free(ctx);
	return r;
}

int crypto_sm4_ecb(bool encrypt, const uint8_t key[CRYPTO_SM4_KEY_LEN], const uint8_t *in,
		   size_t len, uint8_t *out)
{
	if (len % CRYPTO_SM4_BLOCK_LEN != 0)
		return -EINVAL;
	return sm4_oneshot(crypto_alg_sm4_ecb(), encrypt, key, NULL, in, len, out);
}

int crypto_sm4_cbc(bool encrypt, const uint8_t key[CRYPTO_SM4_KEY_LEN],
		   const uint8_t iv[CRYPTO_SM4_BLOCK_LEN], const uint8_t *in, size_t len,
		   uint8_t *out)
{
	if (len % CRYPTO_SM4_BLOCK_LEN != 0 || iv == NULL)
		return -EINVAL;
	return sm4_oneshot(crypto_alg_sm4_cbc(), encrypt, key, iv, in, len, out);
}

int crypto_sm4_ctr(const uint8_t key[CRYPTO_SM4_KEY_LEN], const uint8_t iv[CRYPTO_SM4_BLOCK_LEN],
		   const uint8_t *in, size_t len, uint8_t *out)
{
	if (iv == NULL)
		return -EINVAL;
	return sm4_oneshot(crypto_alg_sm4_ctr(), true, key, iv, in, len, out);
}

int crypto_sm4_ctr_new(const uint8_t key[CRYPTO_SM4_KEY_LEN],
		       const uint8_t iv[CRYPTO_SM4_BLOCK_LEN], crypto_sm4_ctr_ctx **ret_ctx)
{
	if (key == NULL || iv == NULL)
		return -EINVAL;
	crypto_sm4_ctr_ctx *ctx = calloc(1, sizeof(*ctx));
	if (ctx == NULL)
		return -ENOMEM;
	int r = sm4_init(&ctx->cipher, crypto_alg_sm4_ctr(), true, key, iv);
	if (r < 0) {
		free(ctx);
		return r;
	}
	*ret_ctx = ctx;
	return 0;
}

int crypto_sm4_ctr_update(crypto_sm4_ctr_ctx *ctx, const uint8_t *in, size_t len, uint8_t *out)
{
	if (ctx == NULL || (len > 0 && (in == NULL || out == NULL)))
		return -EINVAL;
	return sm4_update(ctx->cipher, in, len, out);
}

void crypto_sm4_ctr_free(crypto_sm4_ctr_ctx *ctx)
{
	if (ctx == NULL)
		return;
	EVP_CIPHER_CTX_free(ctx->cipher);
	free(ctx);
}
