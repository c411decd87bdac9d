/*
 * sm2_fast.h: the crypto module's own SM2 implementation (GB/T 32918 on
 * the recommended curve of GB/T 32918.5), used by sm2.c and sm2_key.c
 * behind crypto.h. Never used outside src/crypto (and its tests).
 *
 * Guarantees: the private scalar, signing and encryption nonces and every
 * value derived from them before they become public are processed without
 * secret-dependent branches or memory indices (checked by
 * tests/crypto/ct_sm2.c under Valgrind). Verification and the handling of
 * public keys, ciphertext points and signatures may take variable time.
 * docs/crypto.md describes the algorithms.
 */
#ifndef CHSM_CRYPTO_SM2_FAST_H
#define CHSM_CRYPTO_SM2_FAST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "crypto/sm2_fe.h"

/* Affine point, coordinates in the Montgomery domain of p. */
typedef struct {
	sm2_u256 x, y;
} sm2_aff;

/* Jacobian point (X/Z^2, Y/Z^3), Montgomery domain; Z = 0 is infinity. */
typedef struct {
	sm2_u256 x, y, z;
} sm2_jac;

/* ---- points (sm2_ec.c) ---- */

/* k * G for 0 < k < n (constant time). */
void sm2_ec_mul_base(sm2_aff *r, const sm2_u256 *k);
/* k * P for 0 < k < n and P a valid public point (constant time in k). */
void sm2_ec_mul(sm2_aff *r, const sm2_u256 *k, const sm2_aff *p);
/* s * G + t * P in Jacobian form (variable time: public inputs only). */
void sm2_ec_mul_double_vt(sm2_jac *r, const sm2_u256 *s, const sm2_u256 *t, const sm2_aff *p);
/* Per-key precomputation for repeated verification with one public key
 * P (public data): part[i][j] = (2j + 1) 2^(64 i) P, affine. Width-6 wNAF
 * digits (odd, |d| <= 31) of each 64-bit limb of t index it. */
#define SM2_PUB_SPLIT 4
#define SM2_PUB_WNAF  6
#define SM2_PUB_TABLE (1 << (SM2_PUB_WNAF - 2))
struct sm2_pub_table {
	sm2_aff part[SM2_PUB_SPLIT][SM2_PUB_TABLE];
};
/* Fills tab for the valid public point p (a little more work than one
 * verification: 196 doublings, 60 additions, one inversion). Variable
 * time. */
void sm2_ec_pub_table_fill(struct sm2_pub_table *tab, const sm2_aff *p);
/* s * G + t * P in Jacobian form with P's table: the same result as
 * sm2_ec_mul_double_vt with 64 doublings instead of 256. Variable time. */
void sm2_ec_mul_double_table_vt(sm2_jac *r, const sm2_u256 *s, const sm2_u256 *t,
				const struct sm2_pub_table *tab);
/* True when the affine x of the finite point q equals x (normal form,
 * < p); false for infinity. Variable time. */
bool sm2_ec_jac_x_equals_vt(const sm2_jac *q, const sm2_u256 *x);
/* Decodes X || Y (32 bytes each, big-endian): 0, or -EINVAL when a
 * coordinate is >= p or the point is not on the curve (which excludes
 * infinity, having no affine form). Variable time: public points only. */
int sm2_ec_point_from_bytes(sm2_aff *r, const uint8_t x[32], const uint8_t y[32]);
/* Encodes a point as X || Y (constant time). */
void sm2_ec_point_to_bytes(const sm2_aff *p, uint8_t x[32], uint8_t y[32]);
/* Builds the fixed-base table now (it is otherwise built at first use). */
void sm2_ec_init(void);

/* ---- keys and operations (sm2_fast.c) ---- */

/* The raw form of a key cached in struct crypto_sm2_key. */
struct sm2_fast_key {
	sm2_aff pub;
	uint8_t point[65];   /* 04 || X || Y */
	bool has_private;
	sm2_u256 d;          /* private scalar */
	sm2_u256 d_m;        /* d, Montgomery domain of n */
	sm2_u256 dinv_m;     /* (1 + d)^-1, Montgomery domain of n */
};

/* Fills fk from a public point 04 || X || Y: 0, or -EINVAL for a point
 * that is not a valid public key (prefix, range, curve). */
int sm2_fast_key_set_public(struct sm2_fast_key *fk, const uint8_t point[65]);
/* Fills fk from d (big-endian) and computes the public point: 0, or
 * -EINVAL unless 1 <= d <= n-2. Constant time in d. */
int sm2_fast_key_set_private(struct sm2_fast_key *fk, const uint8_t d[32]);
/* A random d in [1, n-2] and its key. */
int sm2_fast_key_generate(struct sm2_fast_key *fk);
/* Wipes fk. */
void sm2_fast_key_wipe(struct sm2_fast_key *fk);

/* Signs the digest e into r || s. k: the nonce (big-endian, 1 <= k < n)
 * for tests only, NULL for a random one. With a given k that the standard
 * rejects (r = 0, r + k = n, s = 0) the result is -EAGAIN. */
int sm2_fast_sign(const struct sm2_fast_key *fk, const uint8_t e[32], const uint8_t *k,
		  uint8_t r[32], uint8_t s[32]);
/* 0 when r || s is a valid signature of e, else -EBADMSG. tab: fk's
 * precomputed table (sm2_ec_pub_table_fill on fk->pub), or NULL. */
int sm2_fast_verify(const struct sm2_fast_key *fk, const struct sm2_pub_table *tab,
		    const uint8_t e[32], const uint8_t r[32], const uint8_t s[32]);
/* Encrypts plain (len >= 1) into C1 = (x, y), C3 = hash and C2 = c (len
 * bytes, caller's buffer). k as for sm2_fast_sign (-EAGAIN when the KDF
 * output is all zero for the given k). */
int sm2_fast_encrypt(const struct sm2_fast_key *fk, const uint8_t *plain, size_t len,
		     const uint8_t *k, uint8_t x[32], uint8_t y[32], uint8_t hash[32],
		     uint8_t *c);
/* Decrypts (C1 = (x, y), C3 = hash, C2 = c of len >= 1 bytes) into plain
 * (len bytes, caller's buffer, secret): 0 or -EBADMSG. */
int sm2_fast_decrypt(const struct sm2_fast_key *fk, const uint8_t x[32], const uint8_t y[32],
		     const uint8_t hash[32], const uint8_t *c, size_t len, uint8_t *plain);

/* Marks len bytes at p as public for the constant-time test: a no-op
 * unless built with Valgrind's client requests, and then one only under
 * Valgrind. Used on values the protocol reveals anyway (outputs, and the
 * yes/no outcome of a rejection or of a check that fails the operation). */
void sm2_ct_declassify(const void *p, size_t len);

#endif
