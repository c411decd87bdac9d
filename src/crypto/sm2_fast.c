/*
 * sm2_fast.c: SM2 keys, signatures (GB/T 32918.2) and encryption
 * (GB/T 32918.4) on raw values, over sm2_ec.c.
 *
 * Signing computes s = (1 + d)^-1 (k - r d) mod n with (1 + d)^-1 cached in
 * the key, so it needs no inversion mod n. Nonces are 512 random bits
 * reduced mod n (bias below 2^-250); the standard's rejections (k = 0,
 * r = 0, r + k = n, s = 0; an all-zero KDF output) draw a new nonce. Every
 * step on d, k and the shared point is constant time; the only branches on
 * values derived from them are on outcomes the protocol reveals, which are
 * passed through sm2_ct_declassify first.
 */
#include "crypto/sm2_fast.h"
#include "crypto/crypto.h"

#include <errno.h>
#include <string.h>

#ifdef CHSM_HAVE_VALGRIND
#include <valgrind/memcheck.h>
#endif

void sm2_ct_declassify(const void *p, size_t len)
{
#ifdef CHSM_HAVE_VALGRIND
	(void)VALGRIND_MAKE_MEM_DEFINED(p, len);
#else
	(void)p;
	(void)len;
#endif
}

/* n - 2, the largest private scalar (GB/T 32918.1). */
static const sm2_u256 SM2_N_MINUS_2 = {{0x53bbf40939d54121ULL, 0x7203df6b21c6052bULL,
					0xffffffffffffffffULL, 0xfffffffeffffffffULL}};

/* A uniform-enough scalar in [0, n): 512 random bits mod n. */
static int random_mod_n(sm2_u256 *ret_k)
{
	uint8_t buf[64];
	sm2_u256 hi, lo;
	int r = crypto_random(buf, sizeof(buf));
	if (r < 0)
		return r;
	sm2_u256_from_be(&hi, buf);
	sm2_u256_from_be(&lo, buf + 32);
	crypto_wipe(buf, sizeof(buf));
	/* hi * 2^256 + lo = mont_mul(hi, 2^512) + lo (mod n) */
	sm2_fn_mul(&hi, &hi, &SM2_N_RR);
	sm2_mod_reduce_once(&lo, &lo, &SM2_N);
	sm2_fn_add(ret_k, &hi, &lo);
	crypto_wipe(&hi, sizeof(hi));
	crypto_wipe(&lo, sizeof(lo));
	return 0;
}

/* Is the secret-derived a zero? The answer is made public. */
static bool declassified_is_zero(const sm2_u256 *a)
{
	uint64_t z = sm2_u256_is_zero(a);
	sm2_ct_declassify(&z, sizeof(z));
	return z != 0;
}

int sm2_fast_key_set_public(struct sm2_fast_key *fk, const uint8_t point[65])
{
	memset(fk, 0, sizeof(*fk));
	if (point[0] != 0x04)
		return -EINVAL;
	int r = sm2_ec_point_from_bytes(&fk->pub, point + 1, point + 33);
	if (r < 0)
		return r;
	memcpy(fk->point, point, 65);
	return 0;
}

/* Fills fk from d, already known to be in [1, n-2]. */
static void key_from_scalar(struct sm2_fast_key *fk, const sm2_u256 *d)
{
	sm2_u256 t;
	memset(fk, 0, sizeof(*fk));
	fk->d = *d;
	fk->has_private = true;
	sm2_fn_to_mont(&fk->d_m, d);
	sm2_fn_add(&t, &fk->d_m, &SM2_N_ONE); /* 1 + d, Montgomery */
	sm2_fn_inv(&fk->dinv_m, &t);
	crypto_wipe(&t, sizeof(t));
	sm2_ec_mul_base(&fk->pub, d);
	fk->point[0] = 0x04;
	sm2_ec_point_to_bytes(&fk->pub, fk->point + 1, fk->point + 33);
	/* The public key is public. */
	sm2_ct_declassify(&fk->pub, sizeof(fk->pub));
	sm2_ct_declassify(fk->point, sizeof(fk->point));
}

int sm2_fast_key_set_private(struct sm2_fast_key *fk, const uint8_t db[32])
{
	sm2_u256 d, t;
	sm2_u256_from_be(&d, db);
	/* 1 <= d <= n-2: d - 1 < n - 2 (d = 0 wraps around) */
	const sm2_u256 one = {{1, 0, 0, 0}};
	sm2_u256_sub(&t, &d, &one);
	uint64_t ok = sm2_u256_lt(&t, &SM2_N_MINUS_2);
	sm2_ct_declassify(&ok, sizeof(ok));
	if (!ok) {
		crypto_wipe(&d, sizeof(d));
		crypto_wipe(&t, sizeof(t));
		return -EINVAL;
	}
	key_from_scalar(fk, &d);
	crypto_wipe(&d, sizeof(d));
	crypto_wipe(&t, sizeof(t));
	return 0;
}

int sm2_fast_key_generate(struct sm2_fast_key *fk)
{
	const sm2_u256 one = {{1, 0, 0, 0}};
	sm2_u256 d, t;
	for (;;) {
		int r = random_mod_n(&d);
		if (r < 0)
			return r;
		sm2_u256_sub(&t, &d, &one);
		uint64_t ok = sm2_u256_lt(&t, &SM2_N_MINUS_2);
		sm2_ct_declassify(&ok, sizeof(ok));
		if (ok)
			break;
	}
	key_from_scalar(fk, &d);
	crypto_wipe(&d, sizeof(d));
	crypto_wipe(&t, sizeof(t));
	return 0;
}

void sm2_fast_key_wipe(struct sm2_fast_key *fk)
{
	crypto_wipe(fk, sizeof(*fk));
}

/* A nonce: the given one (tests) or a random one in [1, n). */
static int nonce(const uint8_t *kb, sm2_u256 *ret_k)
{
	if (kb != NULL) {
		sm2_u256_from_be(ret_k, kb);
		return 0;
	}
	for (;;) {
		int r = random_mod_n(ret_k);
		if (r < 0)
			return r;
		if (!declassified_is_zero(ret_k))
			return 0;
	}
}

int sm2_fast_sign(const struct sm2_fast_key *fk, const uint8_t eb[32], const uint8_t *kb,
		  uint8_t rb[32], uint8_t sb[32])
{
	sm2_u256 e, k, x1, rr, t, s;
	sm2_aff p1;
	int ret;
	if (!fk->has_private)
		return -EINVAL;
	sm2_u256_from_be(&e, eb);
	sm2_mod_reduce_once(&e, &e, &SM2_N);
	for (;;) {
		if ((ret = nonce(kb, &k)) < 0)
			break;
		/* (x1, y1) = k G; r = (e + x1) mod n */
		sm2_ec_mul_base(&p1, &k);
		sm2_fp_from_mont(&x1, &p1.x);
		sm2_mod_reduce_once(&x1, &x1, &SM2_N);
		sm2_fn_add(&rr, &e, &x1);
		sm2_ct_declassify(&rr, sizeof(rr)); /* r is output */
		/* reject r = 0 and r + k = n */
		sm2_fn_add(&t, &rr, &k);
		bool reject = sm2_u256_is_zero(&rr) != 0 || declassified_is_zero(&t);
		if (!reject) {
			/* s = (1 + d)^-1 (k - r d) mod n: a Montgomery product
			 * of a plain and a Montgomery operand is plain. */
			sm2_fn_mul(&t, &rr, &fk->d_m);
			sm2_fn_sub(&t, &k, &t);
			sm2_fn_mul(&s, &t, &fk->dinv_m);
			sm2_ct_declassify(&s, sizeof(s)); /* s is output */
			reject = sm2_u256_is_zero(&s) != 0;
		}
		if (!reject) {
			sm2_u256_to_be(rb, &rr);
			sm2_u256_to_be(sb, &s);
			ret = 0;
			break;
		}
		if (kb != NULL) {
			ret = -EAGAIN;
			break;
		}
	}
	crypto_wipe(&k, sizeof(k));
	crypto_wipe(&t, sizeof(t));
	crypto_wipe(&x1, sizeof(x1));
	crypto_wipe(&p1, sizeof(p1));
	return ret;
}

/* Verification handles only public values (the key, the digest, the
 * signature), so it runs in variable time. */
int sm2_fast_verify(const struct sm2_fast_key *fk, const struct sm2_pub_table *tab,
		    const uint8_t eb[32], const uint8_t rb[32], const uint8_t sb[32])
{
	sm2_u256 e, r, s, t, v;
	sm2_u256_from_be(&r, rb);
	sm2_u256_from_be(&s, sb);
	/* 1 <= r, s <= n-1 */
	if (sm2_u256_is_zero(&r) || sm2_u256_is_zero(&s) || !sm2_u256_lt(&r, &SM2_N) ||
	    !sm2_u256_lt(&s, &SM2_N))
		return -EBADMSG;
	/* t = r + s mod n, t != 0 */
	sm2_fn_add(&t, &r, &s);
	if (sm2_u256_is_zero(&t))
		return -EBADMSG;
	sm2_jac q;
	if (tab != NULL)
		sm2_ec_mul_double_table_vt(&q, &s, &t, tab);
	else
		sm2_ec_mul_double_vt(&q, &s, &t, &fk->pub);
	/* R = (e + x1) mod n == r  <=>  x1 = (r - e) mod n or that + n (< p) */
	sm2_u256_from_be(&e, eb);
	sm2_mod_reduce_once(&e, &e, &SM2_N);
	sm2_fn_sub(&v, &r, &e);
	if (sm2_ec_jac_x_equals_vt(&q, &v))
		return 0;
	sm2_u256 w;
	if (sm2_u256_add(&w, &v, &SM2_N) == 0 && sm2_u256_lt(&w, &SM2_P) &&
	    sm2_ec_jac_x_equals_vt(&q, &w))
		return 0;
	return -EBADMSG;
}

/* Is any byte of buf nonzero? Constant time; the answer is made public. */
static bool declassified_any_nonzero(const uint8_t *buf, size_t len)
{
	uint8_t acc = 0;
	for (size_t i = 0; i < len; i++)
		acc |= buf[i];
	uint64_t z = sm2_ct_is_zero64(acc);
	sm2_ct_declassify(&z, sizeof(z));
	return z == 0;
}

/* C3 = SM3(x2 || data || y2). */
static int sm2_c3(const uint8_t xy[64], const uint8_t *data, size_t len, uint8_t out[32])
{
	crypto_sm3_ctx *ctx = NULL;
	int r = crypto_sm3_new(&ctx);
	if (r < 0)
		return r;
	if ((r = crypto_sm3_update(ctx, xy, 32)) == 0 && (r = crypto_sm3_update(ctx, data, len)) == 0 &&
	    (r = crypto_sm3_update(ctx, xy + 32, 32)) == 0)
		r = crypto_sm3_final(ctx, out);
	crypto_sm3_free(ctx);
	return r;
}

int sm2_fast_encrypt(const struct sm2_fast_key *fk, const uint8_t *plain, size_t len,
		     const uint8_t *kb, uint8_t xb[32], uint8_t yb[32], uint8_t hash[32],
		     uint8_t *c)
{
	sm2_u256 k;
	sm2_aff c1, p2;
	uint8_t xy[64];
	int ret;
	if (len == 0)
		return -EINVAL;
	for (;;) {
		if ((ret = nonce(kb, &k)) < 0)
			break;
		/* C1 = k G (public); (x2, y2) = k PB (secret) */
		sm2_ec_mul_base(&c1, &k);
		sm2_ec_mul(&p2, &k, &fk->pub);
		sm2_ec_point_to_bytes(&p2, xy, xy + 32);
		/* t = KDF(x2 || y2, klen), not all zero */
		if ((ret = crypto_sm2_kdf(xy, sizeof(xy), c, len)) < 0)
			break;
		if (declassified_any_nonzero(c, len)) {
			for (size_t i = 0; i < len; i++)
				c[i] ^= plain[i];
			if ((ret = sm2_c3(xy, plain, len, hash)) < 0)
				break;
			sm2_ec_point_to_bytes(&c1, xb, yb);
			sm2_ct_declassify(xb, 32);
			sm2_ct_declassify(yb, 32);
			sm2_ct_declassify(hash, 32);
			sm2_ct_declassify(c, len);
			ret = 0;
			break;
		}
		if (kb != NULL) {
			ret = -EAGAIN;
			break;
		}
	}
	crypto_wipe(&k, sizeof(k));
	crypto_wipe(&p2, sizeof(p2));
	crypto_wipe(xy, sizeof(xy));
	return ret;
}

int sm2_fast_decrypt(const struct sm2_fast_key *fk, const uint8_t xb[32], const uint8_t yb[32],
		     const uint8_t hash[32], const uint8_t *c, size_t len, uint8_t *plain)
{
	sm2_aff c1, p2;
	uint8_t xy[64], u[32];
	int ret = -EBADMSG;
	if (!fk->has_private)
		return -EINVAL;
	/* C1 on the curve (so finite, of order n: the cofactor is 1) */
	if (len == 0 || sm2_ec_point_from_bytes(&c1, xb, yb) < 0)
		return -EBADMSG;
	/* (x2, y2) = d C1 */
	sm2_ec_mul(&p2, &fk->d, &c1);
	sm2_ec_point_to_bytes(&p2, xy, xy + 32);
	if ((ret = crypto_sm2_kdf(xy, sizeof(xy), plain, len)) < 0)
		goto out;
	ret = -EBADMSG;
	if (!declassified_any_nonzero(plain, len))
		goto out;
	for (size_t i = 0; i < len; i++)
		plain[i] ^= c[i];
	if ((ret = sm2_c3(xy, plain, len, u)) < 0)
		goto out;
	uint64_t ok = crypto_memeq(u, hash, sizeof(u));
	sm2_ct_declassify(&ok, sizeof(ok));
	ret = ok ? 0 : -EBADMSG;
out:
	if (ret < 0)
		crypto_wipe(plain, len);
	crypto_wipe(&p2, sizeof(p2));
	crypto_wipe(xy, sizeof(xy));
	crypto_wipe(u, sizeof(u));
	return ret;
}
