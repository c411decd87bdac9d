/*
 * sm2_ec.c: points of the SM2 curve y^2 = x^3 - 3x + b over GF(p) and the
 * three scalar multiplications SM2 needs.
 *
 * - k * G (signing, key generation, encryption's C1): fixed-base comb with
 *   4-bit digits over a table of j * 2^(4i) * G (i < 64, 1 <= j <= 15) in
 *   affine form, built once per process (pthread_once); one mixed addition
 *   per digit, no doubling. The table entry is read by scanning the whole
 *   row with masks; zero digits and the starting point at infinity are
 *   handled by masked selection. Constant time.
 * - k * P (decryption, encryption's shared point): signed (Booth) 5-bit
 *   windows from the top, 5 doublings and one addition of a masked-lookup
 *   entry of {1..16} * P, negated under a mask, per window. Constant time.
 * - s * G + t * P (verification, public data): one doubling chain, s by
 *   width-8 wNAF over the affine odd multiples of G (built with the comb),
 *   t by width-5 wNAF over the odd multiples of P; variable time.
 *   With a per-key table (struct sm2_pub_table: the affine odd multiples
 *   of P, 2^64 P, 2^128 P and 2^192 P) both scalars are split into their
 *   four 64-bit limbs, so the chain has 64 doublings instead of 256, with
 *   s's limbs over the odd multiples of G, 2^64 G, 2^128 G and 2^192 G
 *   (static) and t's over the table; every addition is a mixed one.
 *   Variable time.
 * The constant-time additions are incomplete formulas: the scalar ranges
 * used (0 < k < n, n prime, cofactor 1) keep their operands distinct, not
 * opposite and finite, except the last addition of the signed windows for a
 * few k in [n - 32, n - 2], where the doubling is selected with a mask
 * (docs/crypto.md gives the argument); the variable-time addition handles
 * every case.
 */
#include "crypto/sm2_fast.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>

/* b in the Montgomery domain; G in the Montgomery domain. */
static const sm2_u256 SM2_B_M = {{0x90d230632bc0dd42ULL, 0x71cf379ae9b537abULL,
				  0x527981505ea51c3cULL, 0x240fe188ba20e2c8ULL}};
static const sm2_aff SM2_G_M = {
	{{0x61328990f418029eULL, 0x3e7981eddca6c050ULL, 0xd6a1ed99ac24c3c3ULL,
	  0x91167a5ee1c13b05ULL}},
	{{0xc1354e593c2d0dddULL, 0xc1f5e5788d3295faULL, 0x8d4cfb066e2a48f8ULL,
	  0x63cd65d481d735bdULL}},
};

#define COMB_ROWS    64
#define COMB_ENTRIES 15

/* comb[i][j - 1] = j * 2^(4i) * G. */
static sm2_aff comb[COMB_ROWS][COMB_ENTRIES];
/* g_odd[i][j] = (2j + 1) * 2^(64i) * G, for verification's wNAF (public
 * scalars); g_odd[0] alone without a per-key table. */
#define WNAF_G 8 /* s * G in verification: wNAF digits up to +-127 */
#define G_ODD  (1 << (WNAF_G - 2))
static sm2_aff g_odd[SM2_PUB_SPLIT][G_ODD];
static pthread_once_t comb_once = PTHREAD_ONCE_INIT;

/* ---- point formulas (Jacobian, a = -3) ---- */

/* r = 2 * a. Constant time; infinity (Z = 0) stays infinity. */
static void jac_double(sm2_jac *r, const sm2_jac *a)
{
	sm2_u256 delta, gamma, beta, alpha, t, u;
	sm2_fp_sqr(&delta, &a->z);
	sm2_fp_sqr(&gamma, &a->y);
	sm2_fp_mul(&beta, &a->x, &gamma);
	sm2_fp_sub(&t, &a->x, &delta);
	sm2_fp_add(&u, &a->x, &delta);
	sm2_fp_mul(&alpha, &t, &u);
	sm2_fp_add(&t, &alpha, &alpha);
	sm2_fp_add(&alpha, &alpha, &t); /* 3 (x - delta)(x + delta) */
	/* Z3 = 2 Y Z (one multiplication costs less than a squaring and the
	 * three additions of (Y + Z)^2 - gamma - delta) */
	sm2_fp_mul(&t, &a->y, &a->z);
	sm2_fp_add(&r->z, &t, &t);
	/* X3 = alpha^2 - 8 beta */
	sm2_fp_add(&beta, &beta, &beta);
	sm2_fp_add(&beta, &beta, &beta); /* 4 beta */
	sm2_fp_sqr(&t, &alpha);
	sm2_fp_add(&u, &beta, &beta);
	sm2_fp_sub(&r->x, &t, &u);
	/* Y3 = alpha (4 beta - X3) - 8 gamma^2 */
	sm2_fp_sub(&t, &beta, &r->x);
	sm2_fp_mul(&t, &alpha, &t);
	sm2_fp_sqr(&u, &gamma);
	sm2_fp_add(&u, &u, &u);
	sm2_fp_add(&u, &u, &u);
	sm2_fp_add(&u, &u, &u);
	sm2_fp_sub(&r->y, &t, &u);
}

/* r = a + b with b affine. Constant time; valid only when a and b are
 * finite and a != +-b. Also sets *ret_h and *ret_rr (H and R of the
 * formula) for the variable-time caller to detect those cases. */
static void jac_add_affine(sm2_jac *r, const sm2_jac *a, const sm2_aff *b, sm2_u256 *ret_h,
			   sm2_u256 *ret_rr)
{
	sm2_u256 z1z1, u2, s2, h, rr, hh, hhh, v, t;
	sm2_fp_sqr(&z1z1, &a->z);
	sm2_fp_mul(&u2, &b->x, &z1z1);
	sm2_fp_mul(&s2, &a->z, &z1z1);
	sm2_fp_mul(&s2, &b->y, &s2);
	sm2_fp_sub(&h, &u2, &a->x);
	sm2_fp_sub(&rr, &s2, &a->y);
	sm2_fp_sqr(&hh, &h);
	sm2_fp_mul(&hhh, &h, &hh);
	sm2_fp_mul(&v, &a->x, &hh);
	sm2_fp_mul(&r->z, &a->z, &h);
	/* X3 = R^2 - H^3 - 2 V */
	sm2_fp_sqr(&t, &rr);
	sm2_fp_sub(&t, &t, &hhh);
	sm2_fp_sub(&t, &t, &v);
	sm2_fp_sub(&t, &t, &v);
	/* Y3 = R (V - X3) - Y1 H^3 */
	sm2_fp_sub(&v, &v, &t);
	sm2_fp_mul(&v, &rr, &v);
	sm2_fp_mul(&hhh, &a->y, &hhh);
	sm2_fp_sub(&r->y, &v, &hhh);
	r->x = t;
	*ret_h = h;
	*ret_rr = rr;
}

/* r = a + b, both Jacobian. Constant time; same conditions and outputs as
 * jac_add_affine. */
static void jac_add(sm2_jac *r, const sm2_jac *a, const sm2_jac *b, sm2_u256 *ret_h,
		    sm2_u256 *ret_rr)
{
	sm2_u256 z1z1, z2z2, u1, u2, s1, s2, h, rr, hh, hhh, v, t;
	sm2_fp_sqr(&z1z1, &a->z);
	sm2_fp_sqr(&z2z2, &b->z);
	sm2_fp_mul(&u1, &a->x, &z2z2);
	sm2_fp_mul(&u2, &b->x, &z1z1);
	sm2_fp_mul(&s1, &b->z, &z2z2);
	sm2_fp_mul(&s1, &a->y, &s1);
	sm2_fp_mul(&s2, &a->z, &z1z1);
	sm2_fp_mul(&s2, &b->y, &s2);
	sm2_fp_sub(&h, &u2, &u1);
	sm2_fp_sub(&rr, &s2, &s1);
	sm2_fp_sqr(&hh, &h);
	sm2_fp_mul(&hhh, &h, &hh);
	sm2_fp_mul(&v, &u1, &hh);
	sm2_fp_mul(&t, &a->z, &b->z);
	sm2_fp_mul(&r->z, &t, &h);
	sm2_fp_sqr(&t, &rr);
	sm2_fp_sub(&t, &t, &hhh);
	sm2_fp_sub(&t, &t, &v);
	sm2_fp_sub(&t, &t, &v);
	sm2_fp_sub(&v, &v, &t);
	sm2_fp_mul(&v, &rr, &v);
	sm2_fp_mul(&hhh, &s1, &hhh);
	sm2_fp_sub(&r->y, &v, &hhh);
	r->x = t;
	*ret_h = h;
	*ret_rr = rr;
}

static bool jac_is_inf_vt(const sm2_jac *a)
{
	return sm2_u256_is_zero(&a->z) != 0;
}

/* r = a + b for any a, b (variable time). */
static void jac_add_vt(sm2_jac *r, const sm2_jac *a, const sm2_jac *b)
{
	if (jac_is_inf_vt(a)) {
		*r = *b;
		return;
	}
	if (jac_is_inf_vt(b)) {
		*r = *a;
		return;
	}
	sm2_jac sum;
	sm2_u256 h, rr;
	jac_add(&sum, a, b, &h, &rr);
	if (sm2_u256_is_zero(&h)) {
		if (sm2_u256_is_zero(&rr))
			jac_double(r, a);
		else
			memset(r, 0, sizeof(*r)); /* a = -b */
		return;
	}
	*r = sum;
}

/* r = a + b with b affine, for any a (variable time). */
static void jac_add_affine_vt(sm2_jac *r, const sm2_jac *a, const sm2_aff *b)
{
	if (jac_is_inf_vt(a)) {
		r->x = b->x;
		r->y = b->y;
		r->z = SM2_P_ONE;
		return;
	}
	sm2_jac sum;
	sm2_u256 h, rr;
	jac_add_affine(&sum, a, b, &h, &rr);
	if (sm2_u256_is_zero(&h)) {
		if (sm2_u256_is_zero(&rr)) {
			const sm2_jac bj = {b->x, b->y, SM2_P_ONE};
			jac_double(r, &bj);
		} else {
			memset(r, 0, sizeof(*r));
		}
		return;
	}
	*r = sum;
}

/* Affine form of a finite point (constant time). */
static void jac_to_affine(sm2_aff *r, const sm2_jac *a)
{
	sm2_u256 zi, zi2, zi3;
	sm2_fp_inv(&zi, &a->z);
	sm2_fp_sqr(&zi2, &zi);
	sm2_fp_mul(&zi3, &zi2, &zi);
	sm2_fp_mul(&r->x, &a->x, &zi2);
	sm2_fp_mul(&r->y, &a->y, &zi3);
}

/* Affine forms of n finite points with one inversion (variable time). */
static void jac_to_affine_batch_vt(sm2_aff *r, const sm2_jac *a, size_t n)
{
	sm2_u256 prod[SM2_PUB_SPLIT * SM2_PUB_TABLE > G_ODD ? SM2_PUB_SPLIT * SM2_PUB_TABLE : G_ODD];
	sm2_u256 inv, t;
	prod[0] = a[0].z;
	for (size_t i = 1; i < n; i++)
		sm2_fp_mul(&prod[i], &prod[i - 1], &a[i].z);
	sm2_fp_inv(&inv, &prod[n - 1]);
	for (size_t i = n; i-- > 0;) {
		sm2_u256 zi = inv;
		if (i > 0) {
			sm2_fp_mul(&zi, &inv, &prod[i - 1]);
			sm2_fp_mul(&inv, &inv, &a[i].z);
		}
		sm2_fp_sqr(&t, &zi);
		sm2_fp_mul(&r[i].x, &a[i].x, &t);
		sm2_fp_mul(&t, &t, &zi);
		sm2_fp_mul(&r[i].y, &a[i].y, &t);
	}
}

/* ---- fixed-base table ---- */

static void comb_init(void)
{
	sm2_jac row[G_ODD];
	sm2_jac base = {SM2_G_M.x, SM2_G_M.y, SM2_P_ONE};
	for (int i = 0; i < COMB_ROWS; i++) {
		row[0] = base;
		jac_double(&row[1], &base);
		for (int j = 2; j < COMB_ENTRIES; j++)
			jac_add_vt(&row[j], &row[j - 1], &base);
		jac_to_affine_batch_vt(comb[i], row, COMB_ENTRIES);
		jac_double(&base, &row[7]); /* 16 * base */
	}
	sm2_jac g2;
	for (int i = 0; i < SM2_PUB_SPLIT; i++) {
		/* comb[16 i][0] = 2^(64 i) G */
		row[0] = (sm2_jac){comb[16 * i][0].x, comb[16 * i][0].y, SM2_P_ONE};
		jac_double(&g2, &row[0]);
		for (int j = 1; j < G_ODD; j++)
			jac_add_vt(&row[j], &row[j - 1], &g2);
		jac_to_affine_batch_vt(g_odd[i], row, G_ODD);
	}
}

void sm2_ec_init(void)
{
	pthread_once(&comb_once, comb_init);
}

/* r = row[d - 1], or (0, 0) for d = 0, reading every entry. */
static void comb_lookup(sm2_aff *r, const sm2_aff row[COMB_ENTRIES], uint64_t d)
{
	memset(r, 0, sizeof(*r));
	for (uint64_t j = 0; j < COMB_ENTRIES; j++) {
		uint64_t mask = sm2_ct_eq64(j + 1, d);
		sm2_u256_cmov(&r->x, &row[j].x, mask);
		sm2_u256_cmov(&r->y, &row[j].y, mask);
	}
}

static void jac_cmov(sm2_jac *r, const sm2_jac *a, uint64_t mask)
{
	sm2_u256_cmov(&r->x, &a->x, mask);
	sm2_u256_cmov(&r->y, &a->y, mask);
	sm2_u256_cmov(&r->z, &a->z, mask);
}

static uint64_t scalar_nibble(const sm2_u256 *k, int i)
{
	return (k->w[i / 16] >> (4 * (i % 16))) & 15;
}

void sm2_ec_mul_base(sm2_aff *r, const sm2_u256 *k)
{
	sm2_ec_init();
	sm2_jac acc, sum;
	memset(&acc, 0, sizeof(acc));
	uint64_t inf = ~(uint64_t)0; /* acc is the point at infinity */
	for (int i = 0; i < COMB_ROWS; i++) {
		uint64_t d = scalar_nibble(k, i);
		uint64_t zero = sm2_ct_is_zero64(d);
		sm2_aff t;
		sm2_u256 h, rr;
		comb_lookup(&t, comb[i], d);
		jac_add_affine(&sum, &acc, &t, &h, &rr);
		const sm2_jac tj = {t.x, t.y, SM2_P_ONE};
		jac_cmov(&sum, &tj, inf);
		jac_cmov(&sum, &acc, zero);
		acc = sum;
		inf &= zero;
	}
	jac_to_affine(r, &acc);
}

/* Bits 5i - 1 .. 5i + 4 of k (bit -1 and bits above 255 are 0): the
 * window of the signed digit i. The positions are public. */
static uint64_t scalar_window6(const sm2_u256 *k, int i)
{
	int lo = 5 * i - 1;
	if (lo < 0)
		return (k->w[0] << 1) & 63;
	int w = lo / 64, b = lo % 64;
	uint64_t v = k->w[w] >> b;
	if (b > 58 && w < 3)
		v |= k->w[w + 1] << (64 - b);
	return v & 63;
}

/* Booth recoding of a 6-bit window into a signed digit in [-16, 16]:
 * *ret_neg = all ones when it is negative; returns |digit|. Constant
 * time. */
static uint64_t booth_digit(uint64_t w, uint64_t *ret_neg)
{
	uint64_t neg = (uint64_t)0 - (w >> 5);
	/* w < 32: (w + 1) / 2; w >= 32: (64 - w) / 2 = (63 - w + 1) / 2 */
	uint64_t v = (w & ~neg) | ((63 - w) & neg);
	*ret_neg = neg;
	return (v + 1) >> 1;
}

/* r = tbl[d - 1] with its y negated when neg, for 1 <= d <= 16 (reading
 * every entry); for d = 0 the result is (0, 0, 0), and unused. */
static void booth_lookup(sm2_jac *r, const sm2_jac tbl[16], uint64_t d, uint64_t neg)
{
	sm2_u256 ny;
	memset(r, 0, sizeof(*r));
	for (uint64_t j = 0; j < 16; j++)
		jac_cmov(r, &tbl[j], sm2_ct_eq64(j + 1, d));
	sm2_fp_neg(&ny, &r->y);
	sm2_u256_cmov(&r->y, &ny, neg);
}

void sm2_ec_mul(sm2_aff *r, const sm2_u256 *k, const sm2_aff *p)
{
	sm2_jac tbl[16], acc, sum, dbl, t;
	sm2_u256 h, rr;
	/* tbl[j - 1] = j * P: even j by doubling, odd j by adding P. j * P
	 * and P (1 < j < 16) are never equal or opposite (n > 17). */
	tbl[0].x = p->x;
	tbl[0].y = p->y;
	tbl[0].z = SM2_P_ONE;
	for (int j = 2; j <= 16; j++) {
		if (j % 2 == 0)
			jac_double(&tbl[j - 1], &tbl[j / 2 - 1]);
		else
			jac_add_affine(&tbl[j - 1], &tbl[j - 2], p, &h, &rr);
	}
	/* 52 signed digits; the top one (bits 254..258) is 0, 1 or 2. */
	uint64_t neg, d = booth_digit(scalar_window6(k, 51), &neg);
	booth_lookup(&acc, tbl, d, neg);
	uint64_t inf = sm2_ct_is_zero64(d); /* acc is the point at infinity */
	for (int i = 50; i >= 0; i--) {
		for (int j = 0; j < 5; j++)
			jac_double(&acc, &acc);
		d = booth_digit(scalar_window6(k, i), &neg);
		uint64_t zero = sm2_ct_is_zero64(d);
		booth_lookup(&t, tbl, d, neg);
		jac_add(&sum, &acc, &t, &h, &rr);
		if (i == 0) {
			/* The one place where acc can equal t: k = n + 2 d_0
			 * with d_0 < 0 (k in [n - 32, n - 2]); then the sum is
			 * 2 acc (docs/crypto.md). Selected with a mask. */
			uint64_t same = sm2_u256_is_zero(&h) & sm2_u256_is_zero(&rr);
			jac_double(&dbl, &acc);
			jac_cmov(&sum, &dbl, same);
		}
		jac_cmov(&sum, &t, inf);
		jac_cmov(&sum, &acc, zero);
		acc = sum;
		inf &= zero;
	}
	jac_to_affine(r, &acc);
}

/* ---- verification: s * G + t * P, variable time ---- */

#define WNAF_P 5 /* t * P: odd multiples 1P, 3P, ..., 15P; s * G uses g_odd */

/* Bits i .. i + n - 1 of t as a number (n <= 8; bits above 255 are 0). */
static int bits_at(const sm2_u256 *t, int i, int n)
{
	if (i >= 256)
		return 0;
	int w = i / 64, b = i % 64;
	uint64_t v = t->w[w] >> b;
	if (b > 64 - n && w < 3)
		v |= t->w[w + 1] << (64 - b);
	return (int)(v & (((uint64_t)1 << n) - 1));
}

/* Width-w NAF of t < 2^nbits (nbits <= 256): digits odd or 0, |digit| <
 * 2^(w-1), at most one nonzero in any w consecutive, least significant
 * first; returns the number of digits (at most nbits + 1). Skips the w - 1
 * positions after a nonzero digit at once. */
static int wnaf(int8_t out[257], const sm2_u256 *t, int w, int nbits)
{
	int carry = 0, len = 0;
	memset(out, 0, 257);
	for (int i = 0; i <= nbits;) {
		if (bits_at(t, i, 1) == carry) {
			i++;
			continue;
		}
		/* odd: the next w bits plus the carry, as a signed digit */
		int v = bits_at(t, i, w) + carry;
		carry = v >> (w - 1);
		out[i] = (int8_t)(v - (carry << w));
		len = i + 1;
		i += w;
	}
	return len;
}

void sm2_ec_mul_double_vt(sm2_jac *r, const sm2_u256 *s, const sm2_u256 *t, const sm2_aff *p)
{
	sm2_ec_init();
	/* odd multiples of P */
	sm2_jac odd[1 << (WNAF_P - 2)], p2, acc;
	odd[0].x = p->x;
	odd[0].y = p->y;
	odd[0].z = SM2_P_ONE;
	jac_double(&p2, &odd[0]);
	for (int i = 1; i < (1 << (WNAF_P - 2)); i++)
		jac_add_vt(&odd[i], &odd[i - 1], &p2);
	/* s G + t P, one doubling chain (Shamir's trick) */
	int8_t ds[257], dt[257];
	int ls = wnaf(ds, s, WNAF_G, 256), lt = wnaf(dt, t, WNAF_P, 256);
	memset(&acc, 0, sizeof(acc));
	for (int i = (ls > lt ? ls : lt) - 1; i >= 0; i--) {
		if (!jac_is_inf_vt(&acc))
			jac_double(&acc, &acc);
		int d = i < ls ? ds[i] : 0;
		if (d > 0) {
			jac_add_affine_vt(&acc, &acc, &g_odd[0][d / 2]);
		} else if (d < 0) {
			sm2_aff neg = g_odd[0][-d / 2];
			sm2_fp_neg(&neg.y, &neg.y);
			jac_add_affine_vt(&acc, &acc, &neg);
		}
		d = i < lt ? dt[i] : 0;
		if (d > 0) {
			jac_add_vt(&acc, &acc, &odd[d / 2]);
		} else if (d < 0) {
			sm2_jac neg = odd[-d / 2];
			sm2_fp_neg(&neg.y, &neg.y);
			jac_add_vt(&acc, &acc, &neg);
		}
	}
	*r = acc;
}

/* acc += d * tbl (d odd or 0, |d| < 2 * the table's size) with tbl[j] =
 * (2j + 1) * B affine. Variable time. */
static void add_digit_vt(sm2_jac *acc, const sm2_aff *tbl, int d)
{
	if (d > 0) {
		jac_add_affine_vt(acc, acc, &tbl[d / 2]);
	} else if (d < 0) {
		sm2_aff neg = tbl[-d / 2];
		sm2_fp_neg(&neg.y, &neg.y);
		jac_add_affine_vt(acc, acc, &neg);
	}
}

void sm2_ec_pub_table_fill(struct sm2_pub_table *tab, const sm2_aff *p)
{
	sm2_jac row[SM2_PUB_SPLIT * SM2_PUB_TABLE], base, b2;
	base.x = p->x;
	base.y = p->y;
	base.z = SM2_P_ONE;
	for (int i = 0; i < SM2_PUB_SPLIT; i++) {
		sm2_jac *r = row + i * SM2_PUB_TABLE;
		if (i > 0) /* 2^(64 i) P */
			for (int k = 0; k < 64; k++)
				jac_double(&base, &base);
		r[0] = base;
		jac_double(&b2, &base);
		for (int j = 1; j < SM2_PUB_TABLE; j++)
			jac_add_vt(&r[j], &r[j - 1], &b2);
	}
	/* P has order n (> 2^192 * 31), so none of these is infinity */
	jac_to_affine_batch_vt(&tab->part[0][0], row, SM2_PUB_SPLIT * SM2_PUB_TABLE);
}

void sm2_ec_mul_double_table_vt(sm2_jac *r, const sm2_u256 *s, const sm2_u256 *t,
				const struct sm2_pub_table *tab)
{
	sm2_ec_init();
	/* s = sum of s->w[i] 2^(64 i), t likewise: 2 * SM2_PUB_SPLIT
	 * scalars of 64 bits, each with its own table */
	const sm2_aff *tbl[2 * SM2_PUB_SPLIT];
	int8_t d[2 * SM2_PUB_SPLIT][257];
	int top = 0;
	for (int k = 0; k < 2 * SM2_PUB_SPLIT; k++) {
		int i = k % SM2_PUB_SPLIT;
		bool is_s = k < SM2_PUB_SPLIT;
		const sm2_u256 part = {{(is_s ? s : t)->w[i], 0, 0, 0}};
		tbl[k] = is_s ? g_odd[i] : tab->part[i];
		int len = wnaf(d[k], &part, is_s ? WNAF_G : SM2_PUB_WNAF, 64);
		if (len > top)
			top = len;
	}
	sm2_jac acc;
	memset(&acc, 0, sizeof(acc));
	for (int i = top - 1; i >= 0; i--) {
		if (!jac_is_inf_vt(&acc))
			jac_double(&acc, &acc);
		for (int k = 0; k < 2 * SM2_PUB_SPLIT; k++)
			add_digit_vt(&acc, tbl[k], d[k][i]);
	}
	*r = acc;
}

bool sm2_ec_jac_x_equals_vt(const sm2_jac *q, const sm2_u256 *x)
{
	if (jac_is_inf_vt(q))
		return false;
	sm2_u256 xm, zz;
	sm2_fp_to_mont(&xm, x);
	sm2_fp_sqr(&zz, &q->z);
	sm2_fp_mul(&xm, &xm, &zz);
	return sm2_u256_eq(&xm, &q->x) != 0;
}

/* ---- encoding and validation ---- */

int sm2_ec_point_from_bytes(sm2_aff *r, const uint8_t xb[32], const uint8_t yb[32])
{
	sm2_u256 x, y, lhs, rhs, t;
	sm2_u256_from_be(&x, xb);
	sm2_u256_from_be(&y, yb);
	if (!sm2_u256_lt(&x, &SM2_P) || !sm2_u256_lt(&y, &SM2_P))
		return -EINVAL;
	sm2_fp_to_mont(&x, &x);
	sm2_fp_to_mont(&y, &y);
	/* y^2 == x^3 - 3x + b */
	sm2_fp_sqr(&lhs, &y);
	sm2_fp_sqr(&rhs, &x);
	sm2_fp_mul(&rhs, &rhs, &x);
	sm2_fp_add(&t, &x, &x);
	sm2_fp_add(&t, &t, &x);
	sm2_fp_sub(&rhs, &rhs, &t);
	sm2_fp_add(&rhs, &rhs, &SM2_B_M);
	if (!sm2_u256_eq(&lhs, &rhs))
		return -EINVAL;
	r->x = x;
	r->y = y;
	return 0;
}

void sm2_ec_point_to_bytes(const sm2_aff *p, uint8_t xb[32], uint8_t yb[32])
{
	sm2_u256 t;
	sm2_fp_from_mont(&t, &p->x);
	sm2_u256_to_be(xb, &t);
	sm2_fp_from_mont(&t, &p->y);
	sm2_u256_to_be(yb, &t);
}
