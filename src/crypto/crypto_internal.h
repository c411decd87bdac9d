/*
 * crypto_internal.h: helpers shared by the files of the crypto module and
 * never used outside it.
 *
 * The fetched algorithms are fetched once per process (pthread_once) and are
 * immutable afterwards, so they may be used from any thread. A getter returns
 * NULL when the algorithm is not available; callers turn that into -EIO.
 */
#ifndef CHSM_CRYPTO_INTERNAL_H
#define CHSM_CRYPTO_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

const EVP_MD *crypto_alg_sm3(void);
const EVP_CIPHER *crypto_alg_sm4_ecb(void);
const EVP_CIPHER *crypto_alg_sm4_cbc(void);
const EVP_CIPHER *crypto_alg_sm4_ctr(void);
EVP_MAC *crypto_alg_hmac(void);
EVP_KDF *crypto_alg_pbkdf2(void);

/* An SM2 key: pkey is always an "SM2" EVP_PKEY on the SM2 curve holding the
 * public point; has_private says whether it also holds d. Immutable once
 * made, so one key may be used from several threads at once. */
struct crypto_sm2_key {
	EVP_PKEY *pkey;
	bool has_private;
};

/* Clears this thread's OpenSSL error queue and returns err: every failure
 * path that may have left OpenSSL errors behind returns through it. */
int crypto_fail(int err);

/* Largest chunk handed to an OpenSSL call that takes an int length; a
 * multiple of the SM4 block so block modes are split on block boundaries. */
#define CRYPTO_CHUNK_MAX ((size_t)3 << 28)

/* Writes v as 4 big-endian bytes. */
static inline void crypto_put_be32(uint8_t out[4], uint32_t v)
{
	out[0] = (uint8_t)(v >> 24);
	out[1] = (uint8_t)(v >> 16);
	out[2] = (uint8_t)(v >> 8);
	out[3] = (uint8_t)v;
}

#endif
