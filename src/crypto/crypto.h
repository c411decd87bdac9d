/*
 * crypto.h: OpenCHSM's cryptographic core: SM2, SM3, SM4, HMAC-SM3, KDFs,
 * randomness, base64 and secret hygiene.
 *
 * This module is the only one that includes OpenSSL headers. It never logs.
 * Every function returns 0 on success or a negative errno value:
 *   -EINVAL   malformed input (bad PEM, wrong length, bad base64, ...)
 *   -EBADMSG  a signature or MAC that does not verify, a ciphertext that
 *             does not decrypt
 *   -ENOMEM   allocation failure
 *   -EIO      an unexpected failure inside OpenSSL
 * Out-parameters are named ret_* and are written only on success.
 * Buffers documented as secret are wiped before they are freed.
 * A failure never leaves errors in the calling thread's OpenSSL error queue.
 * Thread safety: there is no mutable global state; keys are immutable once
 * made and may be shared between threads; a streaming context (SM3, HMAC,
 * SM4-CTR) is used by one thread at a time.
 *
 * SM2 follows GB/T 32918 and GB/T 35276: signatures are over SM3(Z || M),
 * Z computed with the signer ID given (NULL means the default ID
 * "1234567812345678"; an ID is a NUL-terminated string of at most 8190
 * bytes, longer is -EINVAL); signatures are DER SEQUENCE { r, s }; ciphertexts
 * are GM/T 0009 DER SEQUENCE { x, y, hash, ciphertext }. docs/crypto.md
 * describes the formats and constructions.
 */
#ifndef CHSM_CRYPTO_H
#define CHSM_CRYPTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CRYPTO_SM3_LEN            32
#define CRYPTO_SM3_HEX_LEN        64
#define CRYPTO_SM4_KEY_LEN        16
#define CRYPTO_SM4_BLOCK_LEN      16
#define CRYPTO_SM2_SCALAR_LEN     32
#define CRYPTO_SM2_POINT_LEN      65   /* 04 || X || Y */
#define CRYPTO_SM2_SIG_DER_MAX    72
#define CRYPTO_SM2_DEFAULT_ID     "1234567812345678"
/* SM2 ciphertext DER overhead over the plaintext length, upper bound. */
#define CRYPTO_SM2_CIPHER_OVERHEAD 120

/* ---- randomness, secrets, encodings ---- */

/* Fills buf with len bytes from the CSPRNG. */
int crypto_random(void *buf, size_t len);
/* Overwrites len bytes at p in a way the compiler cannot remove. */
void crypto_wipe(void *p, size_t len);
/* crypto_wipe(p, len) then free(p). Accepts NULL. */
void crypto_free_secret(void *p, size_t len);
/* Constant-time comparison of two equal-length buffers: true if equal. */
bool crypto_memeq(const void *a, const void *b, size_t len);

/* Standard base64 with padding, no line breaks. *ret_b64 is malloc'ed and
 * NUL-terminated. */
int crypto_base64_encode(const void *data, size_t len, char **ret_b64);
/* Strict decoding of standard base64 (padding required, no whitespace, no
 * set bits after the last byte, so each byte string has one encoding).
 * *ret_data is malloc'ed (never NULL, also for empty output); *ret_len its
 * length. -EINVAL on any bad input. */
int crypto_base64_decode(const char *b64, size_t b64len, uint8_t **ret_data, size_t *ret_len);

/* ---- SM3 ---- */

int crypto_sm3(const void *data, size_t len, uint8_t out[CRYPTO_SM3_LEN]);
/* Lowercase hex SM3, NUL-terminated (65 bytes). */
int crypto_sm3_hex(const void *data, size_t len, char out[CRYPTO_SM3_HEX_LEN + 1]);

typedef struct crypto_sm3_ctx crypto_sm3_ctx;
int crypto_sm3_new(crypto_sm3_ctx **ret_ctx);
int crypto_sm3_update(crypto_sm3_ctx *ctx, const void *data, size_t len);
/* Finishes the digest; the context can be reused after crypto_sm3_reset.
 * update and final on a finished context are -EINVAL. */
int crypto_sm3_final(crypto_sm3_ctx *ctx, uint8_t out[CRYPTO_SM3_LEN]);
int crypto_sm3_reset(crypto_sm3_ctx *ctx);
void crypto_sm3_free(crypto_sm3_ctx *ctx);

/* ---- HMAC-SM3 ---- */

/* Any key length, including 0. */
int crypto_hmac_sm3(const void *key, size_t keylen, const void *data, size_t len,
		    uint8_t out[CRYPTO_SM3_LEN]);

typedef struct crypto_hmac_ctx crypto_hmac_ctx;
int crypto_hmac_sm3_new(const void *key, size_t keylen, crypto_hmac_ctx **ret_ctx);
int crypto_hmac_sm3_update(crypto_hmac_ctx *ctx, const void *data, size_t len);
/* A context gives one MAC: update and final after final are -EINVAL. */
int crypto_hmac_sm3_final(crypto_hmac_ctx *ctx, uint8_t out[CRYPTO_SM3_LEN]);
/* Frees ctx and wipes its key schedule. Accepts NULL. */
void crypto_hmac_sm3_free(crypto_hmac_ctx *ctx);

/* ---- key derivation ---- */

/* NIST SP 800-108 counter-mode KDF with HMAC-SM3 as PRF:
 * K(i) = HMAC-SM3(key, [i]_32be || label || 0x00 || context || [outlen*8]_32be)
 * for i = 1, 2, ...; out = the first outlen bytes of K(1) || K(2) || ...
 * label is a NUL-terminated string (NULL: empty) without its NUL.
 * 1 <= outlen < 2^29. The same as OpenSSL's KBKDF (counter mode, HMAC, SM3,
 * salt = label, info = context). Deterministic; used to derive
 * purpose-bound subkeys from a master key. */
int crypto_kdf_sm3(const void *key, size_t keylen, const char *label,
		   const void *context, size_t contextlen, uint8_t *out, size_t outlen);
/* The SM2 KDF of GB/T 32918.4: out = the first outlen bytes of
 * SM3(z || [1]_32be) || SM3(z || [2]_32be) || ... (the ANSI X9.63 KDF with
 * SM3 and no shared info). outlen >= 1. */
int crypto_sm2_kdf(const void *z, size_t zlen, uint8_t *out, size_t outlen);
/* PBKDF2 (RFC 8018) with HMAC-SM3. iterations >= 1, outlen >= 1; no other
 * lower bounds are imposed (the caller chooses salt and iteration count). */
int crypto_pbkdf2_sm3(const void *pass, size_t passlen, const void *salt, size_t saltlen,
		      uint32_t iterations, uint8_t *out, size_t outlen);

/* ---- SM4 ---- */

/* ECB and CBC without padding: len must be a multiple of 16 (else -EINVAL).
 * out may equal in. */
int crypto_sm4_ecb(bool encrypt, const uint8_t key[CRYPTO_SM4_KEY_LEN],
		   const uint8_t *in, size_t len, uint8_t *out);
int crypto_sm4_cbc(bool encrypt, const uint8_t key[CRYPTO_SM4_KEY_LEN],
		   const uint8_t iv[CRYPTO_SM4_BLOCK_LEN], const uint8_t *in, size_t len,
		   uint8_t *out);
/* CTR with a 128-bit big-endian counter starting at iv; any length. */
int crypto_sm4_ctr(const uint8_t key[CRYPTO_SM4_KEY_LEN], const uint8_t iv[CRYPTO_SM4_BLOCK_LEN],
		   const uint8_t *in, size_t len, uint8_t *out);

/* Streaming SM4-CTR (the same keystream as crypto_sm4_ctr over the
 * concatenation of all updates, whatever their lengths). The key schedule
 * is wiped by free, which accepts NULL. */
typedef struct crypto_sm4_ctr_ctx crypto_sm4_ctr_ctx;
int crypto_sm4_ctr_new(const uint8_t key[CRYPTO_SM4_KEY_LEN],
		       const uint8_t iv[CRYPTO_SM4_BLOCK_LEN], crypto_sm4_ctr_ctx **ret_ctx);
int crypto_sm4_ctr_update(crypto_sm4_ctr_ctx *ctx, const uint8_t *in, size_t len, uint8_t *out);
void crypto_sm4_ctr_free(crypto_sm4_ctr_ctx *ctx);

/* Authenticated encryption of small secrets at rest ("sealing"):
 * out = nonce(16) || ct || HMAC-SM3(k_mac, [aadlen]_64be || aad || nonce || ct)
 * where ct = SM4-CTR(k_enc, nonce, plaintext), nonce is random,
 * k_enc = crypto_kdf_sm3(key, "seal-enc", no context, 16 bytes) and
 * k_mac = crypto_kdf_sm3(key, "seal-mac", no context, 32 bytes). key is 32
 * bytes. The aad length is MACed so that bytes cannot be moved between the
 * aad and the nonce. *ret_out is malloc'ed, *ret_len = len +
 * CRYPTO_SEAL_OVERHEAD. */
#define CRYPTO_SEAL_KEY_LEN  32
#define CRYPTO_SEAL_OVERHEAD (16 + 32)
int crypto_seal(const uint8_t key[CRYPTO_SEAL_KEY_LEN], const void *aad, size_t aadlen,
		const void *plain, size_t len, uint8_t **ret_out, size_t *ret_len);
/* Reverse of crypto_seal; -EBADMSG when the MAC does not verify (the aad must
 * match) or len is below CRYPTO_SEAL_OVERHEAD. Nothing is decrypted before
 * the MAC is checked (in constant time). *ret_plain is malloc'ed (never NULL)
 * and secret: free with crypto_free_secret. */
int crypto_unseal(const uint8_t key[CRYPTO_SEAL_KEY_LEN], const void *aad, size_t aadlen,
		  const void *sealed, size_t len, uint8_t **ret_plain, size_t *ret_len);

/* ---- SM2 ---- */

/* An SM2 public key, or a key pair. Opaque. */
typedef struct crypto_sm2_key crypto_sm2_key;

int crypto_sm2_generate(crypto_sm2_key **ret_key);
/* Releases one hold on key (NULL: nothing); the last one frees it and wipes
 * its private part. */
void crypto_sm2_key_free(crypto_sm2_key *key);
/* Another hold on key, for a thread that keeps using it while its owner
 * may let go of it (e.g. a request verifying with the platform key while
 * the key is rotated); each hold ends with crypto_sm2_key_free. Returns
 * key (NULL for NULL). Thread-safe; a key is immutable, so its holders may
 * use it at the same time. */
crypto_sm2_key *crypto_sm2_key_ref(crypto_sm2_key *key);
bool crypto_sm2_key_has_private(const crypto_sm2_key *key);

/* Loads an unencrypted PEM private key: PKCS#8 ("PRIVATE KEY"), or SEC1
 * ("SM2 PRIVATE KEY", which `openssl ec` writes for SM2 keys in OpenSSL 3,
 * or "EC PRIVATE KEY"). -EINVAL for keys that are not SM2 keys on the SM2
 * curve, encrypted keys (there is no passphrase prompt), and keys whose
 * public point does not match d. */
int crypto_sm2_load_private_pem(const char *pem, size_t len, crypto_sm2_key **ret_key);
/* Loads a SubjectPublicKeyInfo PEM ("PUBLIC KEY") of an SM2 key (the point
 * may be compressed). -EINVAL for other key types or curves. */
int crypto_sm2_load_public_pem(const char *pem, size_t len, crypto_sm2_key **ret_key);
/* Unencrypted PKCS#8 PEM of the private key, NUL-terminated, *ret_len
 * without the NUL. Secret: free with crypto_free_secret(pem, len). -EINVAL
 * for a public key. */
int crypto_sm2_private_pem(const crypto_sm2_key *key, char **ret_pem, size_t *ret_len);
/* SubjectPublicKeyInfo PEM, NUL-terminated, malloc'ed; *ret_len without the
 * NUL. */
int crypto_sm2_public_pem(const crypto_sm2_key *key, char **ret_pem, size_t *ret_len);

/* The uncompressed public point 04 || X || Y. */
int crypto_sm2_public_point(const crypto_sm2_key *key, uint8_t out[CRYPTO_SM2_POINT_LEN]);
/* A public key from 04 || X || Y; -EINVAL for another prefix or a point
 * that is not on the curve. */
int crypto_sm2_from_public_point(const uint8_t point[CRYPTO_SM2_POINT_LEN],
				 crypto_sm2_key **ret_key);
/* The private scalar d (secret; the caller wipes it). -EINVAL without one. */
int crypto_sm2_private_scalar(const crypto_sm2_key *key, uint8_t out[CRYPTO_SM2_SCALAR_LEN]);
/* A key pair from the private scalar d (big-endian); the public point is
 * computed. -EINVAL unless 1 <= d <= n-2 (GB/T 32918.1). */
int crypto_sm2_from_private_scalar(const uint8_t d[CRYPTO_SM2_SCALAR_LEN],
				   crypto_sm2_key **ret_key);

/* Key fingerprint: lowercase hex SM3 of the 65-byte public point. */
int crypto_sm2_fingerprint(const crypto_sm2_key *key, char out[CRYPTO_SM3_HEX_LEN + 1]);

/* Z value of GB/T 32918.2 for the key and signer ID (NULL: default ID). */
int crypto_sm2_z(const crypto_sm2_key *key, const char *id, uint8_t out[CRYPTO_SM3_LEN]);

/* Signs msg: e = SM3(Z || msg). sig receives DER, at most
 * CRYPTO_SM2_SIG_DER_MAX bytes; *ret_siglen its length. id NULL = default.
 * -EINVAL for a public key. */
int crypto_sm2_sign(const crypto_sm2_key *key, const char *id, const void *msg, size_t len,
		    uint8_t sig[CRYPTO_SM2_SIG_DER_MAX], size_t *ret_siglen);
/* 0 when valid, -EBADMSG when not (including malformed or non-DER
 * encodings); -EINVAL only for bad arguments (e.g. an over-long ID). */
int crypto_sm2_verify(const crypto_sm2_key *key, const char *id, const void *msg, size_t len,
		      const uint8_t *sig, size_t siglen);
/* Sign / verify a precomputed 32-byte e (already SM3(Z || M)), as the SDF
 * API's InternalSign_ECC / ExternalVerify_ECC take it. */
int crypto_sm2_sign_digest(const crypto_sm2_key *key, const uint8_t e[CRYPTO_SM3_LEN],
			   uint8_t sig[CRYPTO_SM2_SIG_DER_MAX], size_t *ret_siglen);
int crypto_sm2_verify_digest(const crypto_sm2_key *key, const uint8_t e[CRYPTO_SM3_LEN],
			     const uint8_t *sig, size_t siglen);

/* SM2 public-key encryption (SM3 for C3 and the KDF); *ret_der is GM/T 0009
 * DER, malloc'ed, at most len + CRYPTO_SM2_CIPHER_OVERHEAD bytes. len >= 1
 * (-EINVAL for an empty plaintext). */
int crypto_sm2_encrypt(const crypto_sm2_key *key, const void *plain, size_t len,
		       uint8_t **ret_der, size_t *ret_len);
/* Decryption; *ret_plain is secret (crypto_free_secret). -EBADMSG on a
 * ciphertext that does not decrypt (malformed, point off the curve, C3
 * mismatch); -EINVAL for a public key. */
int crypto_sm2_decrypt(const crypto_sm2_key *key, const uint8_t *der, size_t derlen,
		       uint8_t **ret_plain, size_t *ret_len);

/* DER signature <-> fixed-width r || s (32 bytes each, big-endian, left
 * padded with zeros), as in the SDF ECCSignature structure. Decoding is
 * strict DER; -EINVAL for anything else or values wider than 32 bytes. */
int crypto_sm2_sig_der_to_rs(const uint8_t *der, size_t derlen, uint8_t r[32], uint8_t s[32]);
int crypto_sm2_sig_rs_to_der(const uint8_t r[32], const uint8_t s[32],
			     uint8_t der[CRYPTO_SM2_SIG_DER_MAX], size_t *ret_len);
/* GM/T 0009 DER ciphertext <-> its parts (x, y: 32 bytes each; hash: the
 * 32-byte C3; c: C2). *ret_c is malloc'ed (never NULL). Decoding is strict
 * DER (minimal lengths and INTEGERs, a 32-byte hash, no trailing bytes);
 * -EINVAL otherwise. Encoding writes minimal INTEGERs. */
int crypto_sm2_cipher_der_to_parts(const uint8_t *der, size_t derlen, uint8_t x[32],
				   uint8_t y[32], uint8_t hash[32], uint8_t **ret_c,
				   size_t *ret_clen);
int crypto_sm2_cipher_parts_to_der(const uint8_t x[32], const uint8_t y[32],
				   const uint8_t hash[32], const uint8_t *c, size_t clen,
				   uint8_t **ret_der, size_t *ret_len);

/* ---- errors ---- */
/* A short static description of a negative error returned by this module. */
const char *crypto_strerror(int err);

#endif
