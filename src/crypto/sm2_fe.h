/*
 * sm2_fe.h: 256-bit arithmetic modulo the SM2 field prime p and the group
 * order n (GB/T 32918.5), for the crypto module's own SM2 code only.
 *
 * Numbers are four 64-bit limbs, least significant first. Field elements
 * and the scalars that take part in products live in the Montgomery domain
 * (a stands for a * 2^256 mod m); sm2_fp_to_mont / sm2_fp_from_mont convert.
 * Every function here runs in time independent of the values it is given:
 * no branch and no memory index depends on them (only on the fixed moduli
 * and exponents). Inputs are expected fully reduced (< m) unless a comment
 * says otherwise; outputs are always fully reduced.
 */
#ifndef CHSM_CRYPTO_SM2_FE_H
#define CHSM_CRYPTO_SM2_FE_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

typedef unsigned __int128 sm2_u128;

/* The arithmetic is inlined into the point formulas, and its short fixed
 * loops unrolled, even at -O2 (RelWithDebInfo): otherwise limbs live in
 * memory and a multiplication costs twice as much. */
#define SM2_INLINE static inline __attribute__((always_inline))
#define SM2_UNROLL _Pragma("GCC unroll 8")

typedef struct {
	uint64_t w[4];
} sm2_u256;

/* p = 2^256 - 2^224 - 2^96 + 2^64 - 1 and n, the order of G. */
static const sm2_u256 SM2_P = {{0xffffffffffffffffULL, 0xffffffff00000000ULL,
				0xffffffffffffffffULL, 0xfffffffeffffffffULL}};
static const sm2_u256 SM2_N = {{0x53bbf40939d54123ULL, 0x7203df6b21c6052bULL,
				0xffffffffffffffffULL, 0xfffffffeffffffffULL}};
/* 2^512 mod p and mod n, to enter the Montgomery domain. */
static const sm2_u256 SM2_P_RR = {{0x0000000200000003ULL, 0x00000002ffffffffULL,
				   0x0000000100000001ULL, 0x0000000400000002ULL}};
static const sm2_u256 SM2_N_RR = {{0x901192af7c114f20ULL, 0x3464504ade6fa2faULL,
				   0x620fc84c3affe0d4ULL, 0x1eb5e412a22b3d3bULL}};
/* 1 in the Montgomery domain (2^256 mod p, 2^256 mod n). */
static const sm2_u256 SM2_P_ONE = {{0x0000000000000001ULL, 0x00000000ffffffffULL,
				    0x0000000000000000ULL, 0x0000000100000000ULL}};
static const sm2_u256 SM2_N_ONE = {{0xac440bf6c62abeddULL, 0x8dfc2094de39fad4ULL,
				    0x0000000000000000ULL, 0x0000000100000000ULL}};
/* -n^-1 mod 2^64 (for p it is 1). */
#define SM2_N0 0x327f9e8872350975ULL

/* Carry chains: add / subtract with carry in and out (0 or 1). On x86-64
 * the intrinsics give adc / sbb chains; elsewhere 128-bit arithmetic. */
#if defined(__x86_64__)
#include <x86intrin.h>
#define SM2_ADC(c, r, a, b) \
	((c) = _addcarry_u64((unsigned char)(c), (a), (b), (unsigned long long *)&(r)))
#define SM2_SBB(c, r, a, b) \
	((c) = _subborrow_u64((unsigned char)(c), (a), (b), (unsigned long long *)&(r)))
#else
#define SM2_ADC(c, r, a, b)                                              \
	do {                                                             \
		sm2_u128 _s = (sm2_u128)(a) + (b) + (c);                 \
		(r) = (uint64_t)_s;                                      \
		(c) = (unsigned char)(_s >> 64);                         \
	} while (0)
#define SM2_SBB(c, r, a, b)                                              \
	do {                                                             \
		sm2_u128 _d = (sm2_u128)(a) - (b) - (c);                 \
		(r) = (uint64_t)_d;                                      \
		(c) = (unsigned char)((_d >> 64) & 1);                   \
	} while (0)
#endif

/* ---- constant-time helpers ---- */

/* All ones when x == 0, else 0. */
SM2_INLINE uint64_t sm2_ct_is_zero64(uint64_t x)
{
	return (uint64_t)0 - ((~x & (x - 1)) >> 63);
}

/* All ones when a == b, else 0. */
SM2_INLINE uint64_t sm2_ct_eq64(uint64_t a, uint64_t b)
{
	return sm2_ct_is_zero64(a ^ b);
}

/* All ones when a == 0, else 0. */
SM2_INLINE uint64_t sm2_u256_is_zero(const sm2_u256 *a)
{
	return sm2_ct_is_zero64(a->w[0] | a->w[1] | a->w[2] | a->w[3]);
}

/* All ones when a == b, else 0. */
SM2_INLINE uint64_t sm2_u256_eq(const sm2_u256 *a, const sm2_u256 *b)
{
	return sm2_ct_is_zero64((a->w[0] ^ b->w[0]) | (a->w[1] ^ b->w[1]) |
				(a->w[2] ^ b->w[2]) | (a->w[3] ^ b->w[3]));
}

/* r = mask ? a : r, with mask all ones or zero. */
SM2_INLINE void sm2_u256_cmov(sm2_u256 *r, const sm2_u256 *a, uint64_t mask)
{
	SM2_UNROLL
	for (int i = 0; i < 4; i++)
		r->w[i] = (r->w[i] & ~mask) | (a->w[i] & mask);
}

/* r = a - b over 256 bits; returns the borrow (0 or 1). */
SM2_INLINE uint64_t sm2_u256_sub(sm2_u256 *r, const sm2_u256 *a, const sm2_u256 *b)
{
	uint64_t borrow = 0;
	SM2_UNROLL
	for (int i = 0; i < 4; i++) {
		sm2_u128 d = (sm2_u128)a->w[i] - b->w[i] - borrow;
		r->w[i] = (uint64_t)d;
		borrow = (uint64_t)(d >> 64) & 1;
	}
	return borrow;
}

/* r = a + b over 256 bits; returns the carry (0 or 1). */
SM2_INLINE uint64_t sm2_u256_add(sm2_u256 *r, const sm2_u256 *a, const sm2_u256 *b)
{
	uint64_t carry = 0;
	SM2_UNROLL
	for (int i = 0; i < 4; i++) {
		sm2_u128 s = (sm2_u128)a->w[i] + b->w[i] + carry;
		r->w[i] = (uint64_t)s;
		carry = (uint64_t)(s >> 64);
	}
	return carry;
}

/* All ones when a < b (as 256-bit integers), else 0. */
SM2_INLINE uint64_t sm2_u256_lt(const sm2_u256 *a, const sm2_u256 *b)
{
	sm2_u256 t;
	return (uint64_t)0 - sm2_u256_sub(&t, a, b);
}

/* Big-endian 32 bytes <-> limbs. */
SM2_INLINE void sm2_u256_from_be(sm2_u256 *r, const uint8_t in[32])
{
	SM2_UNROLL
	for (int i = 0; i < 4; i++) {
		uint64_t v = 0;
		SM2_UNROLL
		for (int j = 0; j < 8; j++)
			v = v << 8 | in[(3 - i) * 8 + j];
		r->w[i] = v;
	}
}

SM2_INLINE void sm2_u256_to_be(uint8_t out[32], const sm2_u256 *a)
{
	SM2_UNROLL
	for (int i = 0; i < 4; i++)
		SM2_UNROLL
		for (int j = 0; j < 8; j++)
			out[(3 - i) * 8 + j] = (uint8_t)(a->w[i] >> (56 - 8 * j));
}

/* ---- modular addition and subtraction (any modulus m) ---- */

/* r = a + b mod m, for a, b < m. */
SM2_INLINE void sm2_mod_add(sm2_u256 *r, const sm2_u256 *a,
							       const sm2_u256 *b, const sm2_u256 *m)
{
	uint64_t s0, s1, s2, s3, u0, u1, u2, u3;
	unsigned char c = 0, d = 0;
	SM2_ADC(c, s0, a->w[0], b->w[0]);
	SM2_ADC(c, s1, a->w[1], b->w[1]);
	SM2_ADC(c, s2, a->w[2], b->w[2]);
	SM2_ADC(c, s3, a->w[3], b->w[3]);
	SM2_SBB(d, u0, s0, m->w[0]);
	SM2_SBB(d, u1, s1, m->w[1]);
	SM2_SBB(d, u2, s2, m->w[2]);
	SM2_SBB(d, u3, s3, m->w[3]);
	/* Keep s when the 257-bit sum is below m: no carry and a borrow. */
	uint64_t keep = (uint64_t)0 - (uint64_t)(d & (c ^ 1));
	r->w[0] = (s0 & keep) | (u0 & ~keep);
	r->w[1] = (s1 & keep) | (u1 & ~keep);
	r->w[2] = (s2 & keep) | (u2 & ~keep);
	r->w[3] = (s3 & keep) | (u3 & ~keep);
}

/* r = a - b mod m, for a, b < m. */
SM2_INLINE void sm2_mod_sub(sm2_u256 *r, const sm2_u256 *a,
							       const sm2_u256 *b, const sm2_u256 *m)
{
	uint64_t d0, d1, d2, d3;
	unsigned char c = 0, bw = 0;
	SM2_SBB(bw, d0, a->w[0], b->w[0]);
	SM2_SBB(bw, d1, a->w[1], b->w[1]);
	SM2_SBB(bw, d2, a->w[2], b->w[2]);
	SM2_SBB(bw, d3, a->w[3], b->w[3]);
	/* add m back when it borrowed */
	uint64_t mask = (uint64_t)0 - (uint64_t)bw;
	SM2_ADC(c, r->w[0], d0, m->w[0] & mask);
	SM2_ADC(c, r->w[1], d1, m->w[1] & mask);
	SM2_ADC(c, r->w[2], d2, m->w[2] & mask);
	SM2_ADC(c, r->w[3], d3, m->w[3] & mask);
}

/* r = a mod m for any a < 2^256 when m > 2^255 (one conditional subtraction). */
SM2_INLINE void sm2_mod_reduce_once(sm2_u256 *r, const sm2_u256 *a, const sm2_u256 *m)
{
	sm2_u256 t;
	uint64_t keep = (uint64_t)0 - sm2_u256_sub(&t, a, m);
	SM2_UNROLL
	for (int i = 0; i < 4; i++)
		r->w[i] = (a->w[i] & keep) | (t.w[i] & ~keep);
}

/* ---- Montgomery multiplication ---- */

/* Final step shared by the multiplications: (hi, t) < 2m; r = that mod m. */
SM2_INLINE void sm2_mont_final(sm2_u256 *r, uint64_t hi,
								  const sm2_u256 *t,
								  const sm2_u256 *m)
{
	uint64_t u0, u1, u2, u3;
	unsigned char d = 0;
	SM2_SBB(d, u0, t->w[0], m->w[0]);
	SM2_SBB(d, u1, t->w[1], m->w[1]);
	SM2_SBB(d, u2, t->w[2], m->w[2]);
	SM2_SBB(d, u3, t->w[3], m->w[3]);
	uint64_t keep = (uint64_t)0 - (uint64_t)(d & (hi ^ 1));
	r->w[0] = (t->w[0] & keep) | (u0 & ~keep);
	r->w[1] = (t->w[1] & keep) | (u1 & ~keep);
	r->w[2] = (t->w[2] & keep) | (u2 & ~keep);
	r->w[3] = (t->w[3] & keep) | (u3 & ~keep);
}

/* r = a * b / 2^256 mod m for an odd m with m0 = -m^-1 mod 2^64; a < 2^256,
 * b < m. Word-by-word (CIOS) Montgomery multiplication. */
SM2_INLINE void sm2_mont_mul(sm2_u256 *r, const sm2_u256 *a, const sm2_u256 *b,
				const sm2_u256 *m, uint64_t m0)
{
	uint64_t t0 = 0, t1 = 0, t2 = 0, t3 = 0, t4 = 0;
	SM2_UNROLL
	for (int i = 0; i < 4; i++) {
		uint64_t bi = b->w[i];
		sm2_u128 c = (sm2_u128)a->w[0] * bi + t0;
		t0 = (uint64_t)c;
		c = (sm2_u128)a->w[1] * bi + t1 + (uint64_t)(c >> 64);
		t1 = (uint64_t)c;
		c = (sm2_u128)a->w[2] * bi + t2 + (uint64_t)(c >> 64);
		t2 = (uint64_t)c;
		c = (sm2_u128)a->w[3] * bi + t3 + (uint64_t)(c >> 64);
		t3 = (uint64_t)c;
		c = (sm2_u128)t4 + (uint64_t)(c >> 64);
		t4 = (uint64_t)c;
		uint64_t t5 = (uint64_t)(c >> 64);
		uint64_t q = t0 * m0;
		c = (sm2_u128)q * m->w[0] + t0;
		c = (sm2_u128)q * m->w[1] + t1 + (uint64_t)(c >> 64);
		t0 = (uint64_t)c;
		c = (sm2_u128)q * m->w[2] + t2 + (uint64_t)(c >> 64);
		t1 = (uint64_t)c;
		c = (sm2_u128)q * m->w[3] + t3 + (uint64_t)(c >> 64);
		t2 = (uint64_t)c;
		c = (sm2_u128)t4 + (uint64_t)(c >> 64);
		t3 = (uint64_t)c;
		t4 = t5 + (uint64_t)(c >> 64);
	}
	const sm2_u256 t = {{t0, t1, t2, t3}};
	sm2_mont_final(r, t4, &t, m);
}

/* (hi, lo) = a * b */
#define SM2_MUL(hi, lo, a, b)                              \
	do {                                               \
		sm2_u128 _p = (sm2_u128)(a) * (b);         \
		(lo) = (uint64_t)_p;                       \
		(hi) = (uint64_t)(_p >> 64);               \
	} while (0)

/* (x4..x0) += a * b over 5 limbs, where x4 was 0 (a row of the schoolbook
 * product). */
#define SM2_ROW(a, b, x0, x1, x2, x3, x4)                                              \
	do {                                                                           \
		uint64_t _h0, _l0, _h1, _l1, _h2, _l2, _h3, _l3;                       \
		unsigned char _c = 0, _d = 0;                                          \
		SM2_MUL(_h0, _l0, (a)[0], (b));                                        \
		SM2_MUL(_h1, _l1, (a)[1], (b));                                        \
		SM2_MUL(_h2, _l2, (a)[2], (b));                                        \
		SM2_MUL(_h3, _l3, (a)[3], (b));                                        \
		SM2_ADC(_c, _l1, _l1, _h0);                                            \
		SM2_ADC(_c, _l2, _l2, _h1);                                            \
		SM2_ADC(_c, _l3, _l3, _h2);                                            \
		SM2_ADC(_c, _h3, _h3, 0);                                              \
		SM2_ADC(_d, x0, x0, _l0);                                              \
		SM2_ADC(_d, x1, x1, _l1);                                              \
		SM2_ADC(_d, x2, x2, _l2);                                              \
		SM2_ADC(_d, x3, x3, _l3);                                              \
		(x4) = _h3 + _d;                                                       \
	} while (0)

/* One Montgomery reduction step for p, where -p^-1 = 1 mod 2^64: adds
 * q * p with q = x0 to the window x0..x4 plus cin * 2^256 (the carry of the
 * previous step), using q * p = q 2^256 - q 2^224 - q 2^96 + q 2^64 - q
 * instead of multiplications. x0 becomes 0 (dropped); cout receives the
 * carry out of x4 (small, never negative since the sum is not). */
#define SM2_P_RED(x0, x1, x2, x3, x4, cin, cout)                                      \
	do {                                                                           \
		uint64_t _q = (x0), _lo = _q << 32, _hi = _q >> 32;                    \
		unsigned char _c = 0, _e = 0, _d = 0;                                  \
		SM2_ADC(_c, x1, x1, _q);                                               \
		SM2_ADC(_c, x2, x2, 0);                                                \
		SM2_ADC(_c, x3, x3, 0);                                                \
		SM2_ADC(_c, x4, x4, _q);                                               \
		SM2_ADC(_e, x4, x4, (cin));                                            \
		SM2_SBB(_d, x1, x1, _lo);                                              \
		SM2_SBB(_d, x2, x2, _hi);                                              \
		SM2_SBB(_d, x3, x3, _lo);                                              \
		SM2_SBB(_d, x4, x4, _hi);                                              \
		(cout) = (uint64_t)_c + _e - _d;                                       \
	} while (0)

/* ---- field mod p (Montgomery domain) ---- */

/* Portable C versions of the field multiplication and squaring. */
SM2_INLINE void sm2_fp_mul_c(sm2_u256 *r, const sm2_u256 *a, const sm2_u256 *b)
{
	uint64_t t0, t1, t2, t3, t4 = 0, t5 = 0, t6 = 0, t7 = 0, c0, c1, c2, c3;
	const uint64_t *aw = a->w;
	uint64_t b0 = b->w[0], b1 = b->w[1], b2 = b->w[2], b3 = b->w[3];
	t0 = t1 = t2 = t3 = 0;
	SM2_ROW(aw, b0, t0, t1, t2, t3, t4);
	SM2_ROW(aw, b1, t1, t2, t3, t4, t5);
	SM2_ROW(aw, b2, t2, t3, t4, t5, t6);
	SM2_ROW(aw, b3, t3, t4, t5, t6, t7);
	SM2_P_RED(t0, t1, t2, t3, t4, 0, c0);
	SM2_P_RED(t1, t2, t3, t4, t5, c0, c1);
	SM2_P_RED(t2, t3, t4, t5, t6, c1, c2);
	SM2_P_RED(t3, t4, t5, t6, t7, c2, c3);
	/* (c3, t7..t4) < 2p */
	const sm2_u256 t = {{t4, t5, t6, t7}};
	sm2_mont_final(r, c3, &t, &SM2_P);
}

SM2_INLINE void sm2_fp_sqr_c(sm2_u256 *r, const sm2_u256 *a)
{
	uint64_t a0 = a->w[0], a1 = a->w[1], a2 = a->w[2], a3 = a->w[3];
	uint64_t x0, x1, x2, x3, x4, x5, x6, x7, c0, c1, c2, c3;
	uint64_t h1, h2, l2, h3, l3, h4, l4, h5, l5, h6, l6;
	unsigned char c = 0, d = 0;
	/* off-diagonal products a_i a_j (i < j) into x1..x6 */
	SM2_MUL(h1, x1, a0, a1);
	SM2_MUL(h2, l2, a0, a2);
	SM2_MUL(h3, l3, a0, a3);
	SM2_ADC(c, x2, l2, h1);
	SM2_ADC(c, x3, l3, h2);
	SM2_ADC(c, x4, h3, 0);
	SM2_MUL(h4, l4, a1, a2);
	SM2_MUL(h5, l5, a1, a3);
	c = 0;
	SM2_ADC(c, l5, l5, h4);
	SM2_ADC(c, h5, h5, 0);
	SM2_ADC(d, x3, x3, l4);
	SM2_ADC(d, x4, x4, l5);
	SM2_ADC(d, x5, h5, 0);
	SM2_MUL(h6, l6, a2, a3);
	c = 0;
	SM2_ADC(c, x5, x5, l6);
	SM2_ADC(c, x6, h6, 0);
	/* double them */
	x7 = x6 >> 63;
	x6 = x6 << 1 | x5 >> 63;
	x5 = x5 << 1 | x4 >> 63;
	x4 = x4 << 1 | x3 >> 63;
	x3 = x3 << 1 | x2 >> 63;
	x2 = x2 << 1 | x1 >> 63;
	x1 = x1 << 1;
	/* plus the squares a_i^2 */
	uint64_t q0h, q1h, q1l, q2h, q2l, q3h, q3l;
	SM2_MUL(q0h, x0, a0, a0);
	SM2_MUL(q1h, q1l, a1, a1);
	SM2_MUL(q2h, q2l, a2, a2);
	SM2_MUL(q3h, q3l, a3, a3);
	c = 0;
	SM2_ADC(c, x1, x1, q0h);
	SM2_ADC(c, x2, x2, q1l);
	SM2_ADC(c, x3, x3, q1h);
	SM2_ADC(c, x4, x4, q2l);
	SM2_ADC(c, x5, x5, q2h);
	SM2_ADC(c, x6, x6, q3l);
	SM2_ADC(c, x7, x7, q3h);
	SM2_P_RED(x0, x1, x2, x3, x4, 0, c0);
	SM2_P_RED(x1, x2, x3, x4, x5, c0, c1);
	SM2_P_RED(x2, x3, x4, x5, x6, c1, c2);
	SM2_P_RED(x3, x4, x5, x6, x7, c2, c3);
	const sm2_u256 t = {{x4, x5, x6, x7}};
	sm2_mont_final(r, c3, &t, &SM2_P);
}

/*
 * On x86-64 the multiplication and squaring use mulx/adcx/adox assembly
 * (sm2_fe_x86.c) when cpuid reports BMI2 and ADX, else the C above out of
 * line; elsewhere the C inline. The choice is made once at load and does
 * not depend on any operand.
 */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(SM2_NO_ASM)
#define SM2_HAVE_X86_ASM 1
/* Nonzero when the assembly is used; set at load from cpuid. */
extern int sm2_fe_use_adx;
/* For tests: select the assembly (on) or the portable C (off). Turning it
 * on is only allowed when the processor (or Valgrind) has BMI2 and ADX. */
void sm2_fe_force_adx(bool on);
void sm2_fp_mul_adx(sm2_u256 *r, const sm2_u256 *a, const sm2_u256 *b);
void sm2_fp_sqr_adx(sm2_u256 *r, const sm2_u256 *a);
void sm2_fp_mul_portable(sm2_u256 *r, const sm2_u256 *a, const sm2_u256 *b);
void sm2_fp_sqr_portable(sm2_u256 *r, const sm2_u256 *a);

/* r = a * b / 2^256 mod p, for a, b < p. */
SM2_INLINE void sm2_fp_mul(sm2_u256 *r, const sm2_u256 *a, const sm2_u256 *b)
{
	if (__builtin_expect(sm2_fe_use_adx, 1))
		sm2_fp_mul_adx(r, a, b);
	else
		sm2_fp_mul_portable(r, a, b);
}

/* r = a^2 / 2^256 mod p, for a < p. */
SM2_INLINE void sm2_fp_sqr(sm2_u256 *r, const sm2_u256 *a)
{
	if (__builtin_expect(sm2_fe_use_adx, 1))
		sm2_fp_sqr_adx(r, a);
	else
		sm2_fp_sqr_portable(r, a);
}
#else
#define SM2_HAVE_X86_ASM 0
SM2_INLINE void sm2_fp_mul(sm2_u256 *r, const sm2_u256 *a, const sm2_u256 *b)
{
	sm2_fp_mul_c(r, a, b);
}

SM2_INLINE void sm2_fp_sqr(sm2_u256 *r, const sm2_u256 *a)
{
	sm2_fp_sqr_c(r, a);
}
#endif

#if defined(__x86_64__) && defined(__GNUC__) && !defined(SM2_NO_ASM)
/* Addition and subtraction mod p in inline assembly (baseline x86-64: the
 * compiler's own code for the masked selection is twice as long). The
 * selection is a cmov on the carry, no branch. */
SM2_INLINE void sm2_fp_add(sm2_u256 *r, const sm2_u256 *a, const sm2_u256 *b)
{
	uint64_t a0 = a->w[0], a1 = a->w[1], a2 = a->w[2], a3 = a->w[3];
	uint64_t t0, t1, t2, t3, c;
	__asm__("xor %k[c], %k[c]\n\t"
		"add %[b0], %[a0]\n\t"
		"adc %[b1], %[a1]\n\t"
		"adc %[b2], %[a2]\n\t"
		"adc %[b3], %[a3]\n\t"
		"adc $0, %[c]\n\t"
		"mov %[a0], %[t0]\n\t"
		"mov %[a1], %[t1]\n\t"
		"mov %[a2], %[t2]\n\t"
		"mov %[a3], %[t3]\n\t"
		"sub $-1, %[t0]\n\t"
		"sbb %[p1], %[t1]\n\t"
		"sbb $-1, %[t2]\n\t"
		"sbb %[p3], %[t3]\n\t"
		"sbb $0, %[c]\n\t"
		/* no borrow: the sum was >= p, take sum - p */
		"cmovnc %[t0], %[a0]\n\t"
		"cmovnc %[t1], %[a1]\n\t"
		"cmovnc %[t2], %[a2]\n\t"
		"cmovnc %[t3], %[a3]\n\t"
		: [a0] "+&r"(a0), [a1] "+&r"(a1), [a2] "+&r"(a2), [a3] "+&r"(a3),
		  [t0] "=&r"(t0), [t1] "=&r"(t1), [t2] "=&r"(t2), [t3] "=&r"(t3),
		  [c] "=&r"(c)
		: [b0] "m"(b->w[0]), [b1] "m"(b->w[1]), [b2] "m"(b->w[2]), [b3] "m"(b->w[3]),
		  [p1] "m"(SM2_P.w[1]), [p3] "m"(SM2_P.w[3])
		: "cc");
	r->w[0] = a0;
	r->w[1] = a1;
	r->w[2] = a2;
	r->w[3] = a3;
}

SM2_INLINE void sm2_fp_sub(sm2_u256 *r, const sm2_u256 *a, const sm2_u256 *b)
{
	uint64_t a0 = a->w[0], a1 = a->w[1], a2 = a->w[2], a3 = a->w[3];
	uint64_t t1, t3, m;
	__asm__("sub %[b0], %[a0]\n\t"
		"sbb %[b1], %[a1]\n\t"
		"sbb %[b2], %[a2]\n\t"
		"sbb %[b3], %[a3]\n\t"
		"sbb %[m], %[m]\n\t" /* all ones on a borrow: add p back */
		"mov %[p1], %[t1]\n\t"
		"mov %[p3], %[t3]\n\t"
		"and %[m], %[t1]\n\t"
		"and %[m], %[t3]\n\t"
		"add %[m], %[a0]\n\t"
		"adc %[t1], %[a1]\n\t"
		"adc %[m], %[a2]\n\t"
		"adc %[t3], %[a3]\n\t"
		: [a0] "+&r"(a0), [a1] "+&r"(a1), [a2] "+&r"(a2), [a3] "+&r"(a3),
		  [t1] "=&r"(t1), [t3] "=&r"(t3), [m] "=&r"(m)
		: [b0] "m"(b->w[0]), [b1] "m"(b->w[1]), [b2] "m"(b->w[2]), [b3] "m"(b->w[3]),
		  [p1] "m"(SM2_P.w[1]), [p3] "m"(SM2_P.w[3])
		: "cc");
	r->w[0] = a0;
	r->w[1] = a1;
	r->w[2] = a2;
	r->w[3] = a3;
}
#else
SM2_INLINE void sm2_fp_add(sm2_u256 *r, const sm2_u256 *a, const sm2_u256 *b)
{
	sm2_mod_add(r, a, b, &SM2_P);
}

SM2_INLINE void sm2_fp_sub(sm2_u256 *r, const sm2_u256 *a, const sm2_u256 *b)
{
	sm2_mod_sub(r, a, b, &SM2_P);
}
#endif

SM2_INLINE void sm2_fp_neg(sm2_u256 *r, const sm2_u256 *a)
{
	const sm2_u256 zero = {{0, 0, 0, 0}};
	sm2_mod_sub(r, &zero, a, &SM2_P);
}

SM2_INLINE void sm2_fp_to_mont(sm2_u256 *r, const sm2_u256 *a)
{
	sm2_fp_mul(r, a, &SM2_P_RR);
}

SM2_INLINE void sm2_fp_from_mont(sm2_u256 *r, const sm2_u256 *a)
{
	const sm2_u256 one = {{1, 0, 0, 0}};
	sm2_fp_mul(r, a, &one);
}

/* r = a^e for the public exponent e (fixed 4-bit windows; the table index
 * depends on e only). mul/sqr select the modulus. */
#define SM2_DEFINE_POW(name, mul, one)                                              \
	static inline void name(sm2_u256 *r, const sm2_u256 *a, const sm2_u256 *e) \
	{                                                                           \
		sm2_u256 tbl[16], acc;                                              \
		tbl[0] = one;                                                       \
		tbl[1] = *a;                                                        \
		for (int i = 2; i < 16; i++)                                        \
			mul(&tbl[i], &tbl[i - 1], a);                               \
		acc = one;                                                          \
		for (int i = 63; i >= 0; i--) {                                     \
			for (int j = 0; j < 4; j++)                                 \
				mul(&acc, &acc, &acc);                              \
			unsigned nib = (unsigned)(e->w[i / 16] >> (4 * (i % 16))) & 15; \
			mul(&acc, &acc, &tbl[nib]);                                 \
		}                                                                   \
		*r = acc;                                                           \
	}

/* r = a^(2^k) */
static inline void sm2_fp_sqr_n(sm2_u256 *r, const sm2_u256 *a, int k)
{
	*r = *a;
	for (int i = 0; i < k; i++)
		sm2_fp_sqr(r, r);
}

/* r = a^-1 (Fermat: a^(p-2)); 0 maps to 0. An addition chain for
 * p - 2 = [31 ones] 0 [128 ones] [32 zeros] [62 ones] 0 1 (bits from the
 * top): 255 squarings and 14 multiplications, all fixed. */
static inline void sm2_fp_inv(sm2_u256 *r, const sm2_u256 *a)
{
	sm2_u256 x2, x3, x6, x12, x15, x30, x31, x32, acc;
	sm2_fp_sqr(&x2, a);
	sm2_fp_mul(&x2, &x2, a);            /* 2^2 - 1 */
	sm2_fp_sqr(&x3, &x2);
	sm2_fp_mul(&x3, &x3, a);            /* 2^3 - 1 */
	sm2_fp_sqr_n(&x6, &x3, 3);
	sm2_fp_mul(&x6, &x6, &x3);          /* 2^6 - 1 */
	sm2_fp_sqr_n(&x12, &x6, 6);
	sm2_fp_mul(&x12, &x12, &x6);        /* 2^12 - 1 */
	sm2_fp_sqr_n(&x15, &x12, 3);
	sm2_fp_mul(&x15, &x15, &x3);        /* 2^15 - 1 */
	sm2_fp_sqr_n(&x30, &x15, 15);
	sm2_fp_mul(&x30, &x30, &x15);       /* 2^30 - 1 */
	sm2_fp_sqr(&x31, &x30);
	sm2_fp_mul(&x31, &x31, a);          /* 2^31 - 1 */
	sm2_fp_sqr(&x32, &x31);
	sm2_fp_mul(&x32, &x32, a);          /* 2^32 - 1 */
	sm2_fp_sqr(&acc, &x31);             /* 31 ones, 0 */
	for (int i = 0; i < 4; i++) {       /* 128 ones */
		sm2_fp_sqr_n(&acc, &acc, 32);
		sm2_fp_mul(&acc, &acc, &x32);
	}
	sm2_fp_sqr_n(&acc, &acc, 32);       /* 32 zeros */
	sm2_fp_sqr_n(&acc, &acc, 32);       /* 62 ones */
	sm2_fp_mul(&acc, &acc, &x32);
	sm2_fp_sqr_n(&acc, &acc, 30);
	sm2_fp_mul(&acc, &acc, &x30);
	sm2_fp_sqr_n(&acc, &acc, 2);        /* 0 1 */
	sm2_fp_mul(r, &acc, a);
}

/* ---- scalars mod n ---- */

SM2_INLINE void sm2_fn_mul(sm2_u256 *r, const sm2_u256 *a, const sm2_u256 *b)
{
	sm2_mont_mul(r, a, b, &SM2_N, SM2_N0);
}

SM2_INLINE void sm2_fn_add(sm2_u256 *r, const sm2_u256 *a, const sm2_u256 *b)
{
	sm2_mod_add(r, a, b, &SM2_N);
}

SM2_INLINE void sm2_fn_sub(sm2_u256 *r, const sm2_u256 *a, const sm2_u256 *b)
{
	sm2_mod_sub(r, a, b, &SM2_N);
}

SM2_INLINE void sm2_fn_to_mont(sm2_u256 *r, const sm2_u256 *a)
{
	sm2_fn_mul(r, a, &SM2_N_RR);
}

SM2_DEFINE_POW(sm2_fn_pow, sm2_fn_mul, SM2_N_ONE)

/* r = a^-1 mod n in the Montgomery domain (a^(n-2)); 0 maps to 0. */
SM2_INLINE void sm2_fn_inv(sm2_u256 *r, const sm2_u256 *a)
{
	const sm2_u256 e = {{0x53bbf40939d54121ULL, 0x7203df6b21c6052bULL, 0xffffffffffffffffULL,
			     0xfffffffeffffffffULL}};
	sm2_fn_pow(r, a, &e);
}

#endif
