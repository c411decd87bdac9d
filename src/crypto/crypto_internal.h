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

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "crypto/crypto.h"
#include "crypto/sm2_fast.h"

const EVP_MD *crypto_alg_sm3(void);
const EVP_CIPHER *crypto_alg_sm4_ecb(void);
const EVP_CIPHER *crypto_alg_sm4_cbc(void);
const EVP_CIPHER *crypto_alg_sm4_ctr(void);
EVP_MAC *crypto_alg_hmac(void);
EVP_KDF *crypto_alg_pbkdf2(void);

/* An SM2 key: pkey is an "SM2" EVP_PKEY on the SM2 curve holding the
 * public point, read through crypto_sm2_key_pkey: a public key made from a
 * raw point gets it at first need (set once from NULL, like pub_table),
 * every other key when it is made. has_private says whether the key holds
 * d. fast holds the
 * same key in raw form (validated public point, d and (1 + d)^-1 when
 * private) for the module's own SM2 code; it is wiped when the key is
 * freed. z_default is Z for CRYPTO_SM2_DEFAULT_ID, computed when the key
 * is made. Immutable once made, so one key may be used from several
 * threads at once, except for two caches of public data that verification
 * fills through atomics (sm2.c): verifies counts verifications with the
 * key, and pub_table, set once from NULL, holds the precomputed multiples
 * of the public point from the second verification on; it is freed with
 * the key. extra_refs counts the crypto_sm2_key_ref calls not yet matched
 * by a crypto_sm2_key_free (0: one holder). */
struct crypto_sm2_key {
	_Atomic(EVP_PKEY *) pkey;
	bool has_private;
	bool has_z_default;
	uint8_t z_default[CRYPTO_SM3_LEN];
	struct sm2_fast_key fast;
	atomic_uint verifies;
	_Atomic(struct sm2_pub_table *) pub_table;
	atomic_int extra_refs;
};

/* The key's OpenSSL key in *ret_pkey (owned by the key): 0, or -ENOMEM /
 * -EIO when it had to be made and could not. */
int crypto_sm2_key_pkey(const crypto_sm2_key *key, EVP_PKEY **ret_pkey);

/* True when OPENCHSM_SM2_IMPL=openssl was set at the first SM2 operation:
 * SM2 then runs on OpenSSL (the reference) instead of sm2_fast.c. Read once
 * per process. */
bool crypto_sm2_use_openssl(void);

/* The OpenSSL reference implementation of the crypto.h SM2 operations, with
 * the same contracts (sm2.c). The differential tests and the benchmark call
 * them directly. */
int crypto_sm2_ossl_sign(const crypto_sm2_key *key, const char *id, const void *msg,
			 size_t len, uint8_t sig[CRYPTO_SM2_SIG_DER_MAX], size_t *ret_siglen);
int crypto_sm2_ossl_verify(const crypto_sm2_key *key, const char *id, const void *msg,
			   size_t len, const uint8_t *sig, size_t siglen);
int crypto_sm2_ossl_sign_digest(const crypto_sm2_key *key, const uint8_t e[CRYPTO_SM3_LEN],
				uint8_t sig[CRYPTO_SM2_SIG_DER_MAX], size_t *ret_siglen);
int crypto_sm2_ossl_verify_digest(const crypto_sm2_key *key, const uint8_t e[CRYPTO_SM3_LEN],
				  const uint8_t *sig, size_t siglen);
int crypto_sm2_ossl_encrypt(const crypto_sm2_key *key, const void *plain, size_t len,
			    uint8_t **ret_der, size_t *ret_len);
int crypto_sm2_ossl_decrypt(const crypto_sm2_key *key, const uint8_t *der, size_t derlen,
			    uint8_t **ret_plain, size_t *ret_len);
/* Key generation through OpenSSL (EVP_PKEY_Q_keygen). */
int crypto_sm2_ossl_generate(crypto_sm2_key **ret_key);

/* Test hooks: sign the digest e with the given nonce k (1 <= k < n;
 * -EAGAIN when the standard rejects it) and encrypt with the given k. */
int crypto_sm2_sign_digest_k(const crypto_sm2_key *key, const uint8_t e[CRYPTO_SM3_LEN],
			     const uint8_t k[CRYPTO_SM2_SCALAR_LEN],
			     uint8_t sig[CRYPTO_SM2_SIG_DER_MAX], size_t *ret_siglen);
int crypto_sm2_encrypt_k(const crypto_sm2_key *key, const void *plain, size_t len,
			 const uint8_t *k, uint8_t **ret_der,
			 size_t *ret_len);

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
