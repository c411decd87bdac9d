/*
 * Unit tests of the crypto module's own SM2 implementation (sm2_fast.c,
 * sm2_ec.c, sm2_fe.h) against what it did not write: the GM/T 0003.5
 * sample signature, and OpenSSL (crypto_sm2_ossl_*, the reference) on
 * thousands of random keys and messages in both directions, plus edge
 * cases: extreme private scalars, empty and 1 MiB messages, out-of-range
 * and malformed signatures, invalid public points, tampered ciphertexts,
 * the standard's nonce rejections, and compressed-point keys from the
 * openssl command-line tool; verification with and without the per-key
 * table (also from several threads at once) and the cached Z. On x86-64 with BMI2 and ADX the field
 * arithmetic has two paths (assembly and portable C): they are compared
 * with each other directly, and the differential tests alternate them.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "cli.h"
#include "common/util.h"
#include "crypto/crypto.h"
#include "crypto/crypto_internal.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define DIFF_ROUNDS   2000

/* Does this processor run the assembly field arithmetic? */
static bool host_adx;

/* Selects the field arithmetic for round i: the portable C every fourth
 * round, else the assembly where the processor has it. */
static void field_path_for_round(int i)
{
#if SM2_HAVE_X86_ASM
	sm2_fe_force_adx(host_adx && i % 4 != 3);
#else
	(void)i;
#endif
}

static const char n_hex[] = "fffffffeffffffffffffffffffffffff7203df6b21c6052b53bbf40939d54123";
static const char p_hex[] = "fffffffeffffffffffffffffffffffffffffffff00000000ffffffffffffffff";

static void unhex(const char *hex, uint8_t *out, size_t len)
{
	assert_int_equal(strlen(hex), 2 * len);
	assert_int_equal(chsm_hex_decode(hex, strlen(hex), out, len), 0);
}

/* out = n + delta (big-endian, mod 2^256) for a small signed delta. */
static void n_plus(int delta, uint8_t out[32])
{
	sm2_u256 v, d = {{(uint64_t)(delta < 0 ? -delta : delta), 0, 0, 0}};
	if (delta < 0)
		sm2_u256_sub(&v, &SM2_N, &d);
	else
		sm2_u256_add(&v, &SM2_N, &d);
	sm2_u256_to_be(out, &v);
}

static crypto_sm2_key *key_from_hex(const char *d_hex)
{
	uint8_t d[32];
	crypto_sm2_key *key = NULL;
	unhex(d_hex, d, sizeof(d));
	assert_int_equal(crypto_sm2_from_private_scalar(d, &key), 0);
	return key;
}

static crypto_sm2_key *public_of(const crypto_sm2_key *key)
{
	uint8_t point[CRYPTO_SM2_POINT_LEN];
	crypto_sm2_key *pub = NULL;
	assert_int_equal(crypto_sm2_public_point(key, point), 0);
	assert_int_equal(crypto_sm2_from_public_point(point, &pub), 0);
	return pub;
}

/* e = SM3(Z || msg) with the default ID. */
static void digest(const crypto_sm2_key *key, const void *msg, size_t len, uint8_t e[32])
{
	uint8_t z[32];
	assert_int_equal(crypto_sm2_z(key, NULL, z), 0);
	uint8_t *buf = malloc(32 + len + 1);
	assert_non_null(buf);
	memcpy(buf, z, 32);
	memcpy(buf + 32, msg, len);
	assert_int_equal(crypto_sm3(buf, 32 + len, e), 0);
	free(buf);
}

/* ---- the GM/T 0003.5 sample on the recommended curve ---- */

static void test_gmt_sample_signature(void **state)
{
	crypto_sm2_key *key =
		key_from_hex("3945208f7b2144b13f36e38ac6d39f95889393692860b51a42fb81ef4df7c5b8");
	uint8_t point[CRYPTO_SM2_POINT_LEN], want_point[CRYPTO_SM2_POINT_LEN];
	want_point[0] = 0x04;
	unhex("09f9df311e5421a150dd7d161e4bc5c672179fad1833fc076bb08ff356f35020", want_point + 1, 32);
	unhex("ccea490ce26775a52dc6ea718cc1aa600aed05fbf35e084a6632f6072da9ad13", want_point + 33, 32);
	assert_int_equal(crypto_sm2_public_point(key, point), 0);
	assert_memory_equal(point, want_point, sizeof(point));

	const char msg[] = "message digest";
	uint8_t e[32], k[32], r[32], s[32], want_r[32], want_s[32];
	digest(key, msg, strlen(msg), e);
	unhex("59276e27d506861a16680f3ad9c02dccef3cc1fa3cdbe4ce6d54b80deac1bc21", k, 32);
	unhex("f5a03b0648d2c4630eeac513e1bb81a15944da3827d5b74143ac7eaceee720b3", want_r, 32);
	unhex("b1b6aa29df212fd8763182bc0d421ca1bb9038fd1f7f42d4840b69c485bbc1aa", want_s, 32);
	uint8_t sig[CRYPTO_SM2_SIG_DER_MAX];
	size_t siglen = 0;
	assert_int_equal(crypto_sm2_sign_digest_k(key, e, k, sig, &siglen), 0);
	assert_int_equal(crypto_sm2_sig_der_to_rs(sig, siglen, r, s), 0);
	assert_memory_equal(r, want_r, 32);
	assert_memory_equal(s, want_s, 32);
	/* and both implementations accept it over the message */
	assert_int_equal(crypto_sm2_verify(key, NULL, msg, strlen(msg), sig, siglen), 0);
	assert_int_equal(crypto_sm2_ossl_verify(key, NULL, msg, strlen(msg), sig, siglen), 0);
	crypto_sm2_key_free(key);
}

/* ---- differential tests against OpenSSL ---- */

static void test_diff_sign_verify(void **state)
{
	uint8_t msg[300], sig[CRYPTO_SM2_SIG_DER_MAX];
	size_t siglen = 0;
	for (int i = 0; i < DIFF_ROUNDS; i++) {
		crypto_sm2_key *key = NULL;
		field_path_for_round(i);
		/* keys from both generators */
		assert_int_equal(i % 2 ? crypto_sm2_generate(&key) : crypto_sm2_ossl_generate(&key), 0);
		crypto_sm2_key *pub = public_of(key);
		uint8_t lenb;
		assert_int_equal(crypto_random(&lenb, 1), 0);
		size_t len = (size_t)lenb + (i % 3 == 0 ? 44 : 0);
		assert_int_equal(crypto_random(msg, len), 0);
		const char *id = i % 5 == 0 ? "alice@example" : NULL;
		/* ours -> OpenSSL */
		assert_int_equal(crypto_sm2_sign(key, id, msg, len, sig, &siglen), 0);
		assert_int_equal(crypto_sm2_ossl_verify(pub, id, msg, len, sig, siglen), 0);
		assert_int_equal(crypto_sm2_verify(pub, id, msg, len, sig, siglen), 0);
		/* OpenSSL -> ours */
		assert_int_equal(crypto_sm2_ossl_sign(key, id, msg, len, sig, &siglen), 0);
		assert_int_equal(crypto_sm2_verify(pub, id, msg, len, sig, siglen), 0);
		/* a changed message fails in both */
		msg[len > 0 ? len - 1 : 0] ^= 0x01;
		size_t len2 = len > 0 ? len : 1;
		assert_int_equal(crypto_sm2_verify(pub, id, msg, len2, sig, siglen), -EBADMSG);
		assert_int_equal(crypto_sm2_ossl_verify(pub, id, msg, len2, sig, siglen), -EBADMSG);
		crypto_sm2_key_free(pub);
		crypto_sm2_key_free(key);
	}
	field_path_for_round(0);
}

static void test_diff_encrypt_decrypt(void **state)
{
	uint8_t msg[300];
	for (int i = 0; i < DIFF_ROUNDS; i++) {
		crypto_sm2_key *key = NULL;
		field_path_for_round(i);
		assert_int_equal(i % 2 ? crypto_sm2_generate(&key) : crypto_sm2_ossl_generate(&key), 0);
		crypto_sm2_key *pub = public_of(key);
		uint8_t lenb;
		assert_int_equal(crypto_random(&lenb, 1), 0);
		size_t len = (size_t)lenb + 1 + (i % 3 == 0 ? 40 : 0);
		assert_int_equal(crypto_random(msg, len), 0);
		uint8_t *der = NULL, *plain = NULL;
		size_t derlen = 0, plainlen = 0;
		/* ours -> OpenSSL */
		assert_int_equal(crypto_sm2_encrypt(pub, msg, len, &der, &derlen), 0);
		assert_true(derlen <= len + CRYPTO_SM2_CIPHER_OVERHEAD);
		assert_int_equal(crypto_sm2_ossl_decrypt(key, der, derlen, &plain, &plainlen), 0);
		assert_int_equal(plainlen, len);
		assert_memory_equal(plain, msg, len);
		crypto_free_secret(plain, plainlen);
		free(der);
		/* OpenSSL -> ours */
		assert_int_equal(crypto_sm2_ossl_encrypt(pub, msg, len, &der, &derlen), 0);
		assert_int_equal(crypto_sm2_decrypt(key, der, derlen, &plain, &plainlen), 0);
		assert_int_equal(plainlen, len);
		assert_memory_equal(plain, msg, len);
		crypto_free_secret(plain, plainlen);
		free(der);
		crypto_sm2_key_free(pub);
		crypto_sm2_key_free(key);
	}
	field_path_for_round(0);
}

/* ---- private scalars at the edges ---- */

static void roundtrip_both_ways(crypto_sm2_key *key)
{
	const char msg[] = "edge";
	uint8_t sig[CRYPTO_SM2_SIG_DER_MAX];
	size_t siglen = 0;
	assert_int_equal(crypto_sm2_sign(key, NULL, msg, 4, sig, &siglen), 0);
	assert_int_equal(crypto_sm2_ossl_verify(key, NULL, msg, 4, sig, siglen), 0);
	assert_int_equal(crypto_sm2_ossl_sign(key, NULL, msg, 4, sig, &siglen), 0);
	assert_int_equal(crypto_sm2_verify(key, NULL, msg, 4, sig, siglen), 0);
	uint8_t *der = NULL, *plain = NULL;
	size_t derlen = 0, plainlen = 0;
	assert_int_equal(crypto_sm2_encrypt(key, msg, 4, &der, &derlen), 0);
	assert_int_equal(crypto_sm2_ossl_decrypt(key, der, derlen, &plain, &plainlen), 0);
	assert_int_equal(plainlen, 4);
	crypto_free_secret(plain, plainlen);
	free(der);
	assert_int_equal(crypto_sm2_ossl_encrypt(key, msg, 4, &der, &derlen), 0);
	assert_int_equal(crypto_sm2_decrypt(key, der, derlen, &plain, &plainlen), 0);
	assert_memory_equal(plain, msg, 4);
	crypto_free_secret(plain, plainlen);
	free(der);
}

static void test_edge_scalars(void **state)
{
	uint8_t d[32];
	crypto_sm2_key *key = NULL;
	/* d = 1: the public key is G */
	memset(d, 0, 32);
	d[31] = 1;
	assert_int_equal(crypto_sm2_from_private_scalar(d, &key), 0);
	uint8_t point[CRYPTO_SM2_POINT_LEN], g[64];
	unhex("32c4ae2c1f1981195f9904466a39c9948fe30bbff2660be1715a4589334c74c7", g, 32);
	unhex("bc3736a2f4f6779c59bdcee36b692153d0a9877cc62a474002df32e52139f0a0", g + 32, 32);
	assert_int_equal(crypto_sm2_public_point(key, point), 0);
	assert_memory_equal(point + 1, g, 64);
	roundtrip_both_ways(key);
	crypto_sm2_key_free(key);
	/* d = n - 2: the public key is -2G, the same x as 2G */
	n_plus(-2, d);
	assert_int_equal(crypto_sm2_from_private_scalar(d, &key), 0);
	roundtrip_both_ways(key);
	uint8_t two[32] = {0}, point2[CRYPTO_SM2_POINT_LEN];
	two[31] = 2;
	crypto_sm2_key *k2 = NULL;
	assert_int_equal(crypto_sm2_from_private_scalar(two, &k2), 0);
	assert_int_equal(crypto_sm2_public_point(key, point), 0);
	assert_int_equal(crypto_sm2_public_point(k2, point2), 0);
	assert_memory_equal(point + 1, point2 + 1, 32);
	assert_memory_not_equal(point + 33, point2 + 33, 32);
	crypto_sm2_key_free(k2);
	crypto_sm2_key_free(key);
	/* each private scalar matches OpenSSL's own public key computation */
	for (int i = 0; i < 50; i++) {
		crypto_sm2_key *o = NULL, *ours = NULL;
		uint8_t po[CRYPTO_SM2_POINT_LEN], pu[CRYPTO_SM2_POINT_LEN];
		assert_int_equal(crypto_sm2_ossl_generate(&o), 0);
		assert_int_equal(crypto_sm2_private_scalar(o, d), 0);
		assert_int_equal(crypto_sm2_from_private_scalar(d, &ours), 0);
		assert_int_equal(crypto_sm2_public_point(o, po), 0);
		assert_int_equal(crypto_sm2_public_point(ours, pu), 0);
		assert_memory_equal(po, pu, sizeof(po));
		crypto_sm2_key_free(o);
		crypto_sm2_key_free(ours);
	}
	/* out of range: 0, n - 1, n, n + 1, 2^256 - 1 */
	static const int bad_delta[] = {-1, 0, 1};
	for (size_t i = 0; i < ARRAY_SIZE(bad_delta); i++) {
		n_plus(bad_delta[i], d);
		key = NULL;
		assert_int_equal(crypto_sm2_from_private_scalar(d, &key), -EINVAL);
		assert_null(key);
	}
	memset(d, 0, 32);
	assert_int_equal(crypto_sm2_from_private_scalar(d, &key), -EINVAL);
	memset(d, 0xff, 32);
	assert_int_equal(crypto_sm2_from_private_scalar(d, &key), -EINVAL);
	assert_null(key);
}

/* ---- messages of length 0 and 1 MiB ---- */

static void test_message_sizes(void **state)
{
	crypto_sm2_key *key = NULL;
	assert_int_equal(crypto_sm2_generate(&key), 0);
	size_t big = 1 << 20;
	uint8_t *msg = malloc(big);
	assert_non_null(msg);
	assert_int_equal(crypto_random(msg, big), 0);
	uint8_t sig[CRYPTO_SM2_SIG_DER_MAX];
	size_t siglen = 0;
	const size_t lens[] = {0, big};
	for (size_t i = 0; i < ARRAY_SIZE(lens); i++) {
		assert_int_equal(crypto_sm2_sign(key, NULL, msg, lens[i], sig, &siglen), 0);
		assert_int_equal(crypto_sm2_ossl_verify(key, NULL, msg, lens[i], sig, siglen), 0);
		assert_int_equal(crypto_sm2_ossl_sign(key, NULL, msg, lens[i], sig, &siglen), 0);
		assert_int_equal(crypto_sm2_verify(key, NULL, msg, lens[i], sig, siglen), 0);
	}
	/* encryption: 1 byte and 1 MiB both ways; 0 bytes is refused */
	uint8_t *der = NULL, *plain = NULL;
	size_t derlen = 0, plainlen = 0;
	assert_int_equal(crypto_sm2_encrypt(key, msg, 0, &der, &derlen), -EINVAL);
	const size_t elens[] = {1, big};
	for (size_t i = 0; i < ARRAY_SIZE(elens); i++) {
		assert_int_equal(crypto_sm2_encrypt(key, msg, elens[i], &der, &derlen), 0);
		assert_int_equal(crypto_sm2_ossl_decrypt(key, der, derlen, &plain, &plainlen), 0);
		assert_int_equal(plainlen, elens[i]);
		assert_memory_equal(plain, msg, elens[i]);
		crypto_free_secret(plain, plainlen);
		free(der);
		assert_int_equal(crypto_sm2_ossl_encrypt(key, msg, elens[i], &der, &derlen), 0);
		assert_int_equal(crypto_sm2_decrypt(key, der, derlen, &plain, &plainlen), 0);
		assert_int_equal(plainlen, elens[i]);
		assert_memory_equal(plain, msg, elens[i]);
		crypto_free_secret(plain, plainlen);
		free(der);
	}
	free(msg);
	crypto_sm2_key_free(key);
}

/* ---- the per-key verification table and the cached Z ---- */

struct verify_job {
	const crypto_sm2_key *pub;
	const uint8_t *msg;
	size_t len;
	const uint8_t *sig;
	size_t siglen;
	int fails;
};

static void *verify_loop(void *arg)
{
	struct verify_job *job = arg;
	for (int i = 0; i < 20; i++) {
		if (crypto_sm2_verify(job->pub, NULL, job->msg, job->len, job->sig, job->siglen) != 0)
			job->fails++;
		if (crypto_sm2_verify(job->pub, NULL, job->msg, job->len - 1, job->sig,
				      job->siglen) != -EBADMSG)
			job->fails++;
	}
	return NULL;
}

static void test_verify_table(void **state)
{
	uint8_t msg[64], sig[CRYPTO_SM2_SIG_DER_MAX], osig[CRYPTO_SM2_SIG_DER_MAX];
	size_t siglen = 0, osiglen = 0;
	for (int i = 0; i < 100; i++) {
		crypto_sm2_key *key = NULL;
		field_path_for_round(i);
		assert_int_equal(crypto_sm2_generate(&key), 0);
		crypto_sm2_key *pub = public_of(key);
		assert_int_equal(crypto_random(msg, sizeof(msg)), 0);
		assert_int_equal(crypto_sm2_sign(key, NULL, msg, sizeof(msg), sig, &siglen), 0);
		assert_int_equal(crypto_sm2_ossl_sign(key, NULL, msg, sizeof(msg), osig, &osiglen), 0);
		/* the first verification runs without the table */
		assert_int_equal(crypto_sm2_verify(pub, NULL, msg, sizeof(msg), sig, siglen), 0);
		assert_null(atomic_load(&pub->pub_table));
		/* the second builds it; from then on it is used */
		assert_int_equal(crypto_sm2_verify(pub, NULL, msg, sizeof(msg), osig, osiglen), 0);
		assert_non_null(atomic_load(&pub->pub_table));
		assert_int_equal(crypto_sm2_verify(pub, NULL, msg, sizeof(msg), sig, siglen), 0);
		assert_int_equal(crypto_sm2_verify(pub, NULL, msg, sizeof(msg) - 1, sig, siglen),
				 -EBADMSG);
		assert_int_equal(crypto_sm2_verify(pub, "bob", msg, sizeof(msg), osig, osiglen),
				 -EBADMSG);
		assert_int_equal(crypto_sm2_ossl_sign(key, "bob", msg, sizeof(msg), osig, &osiglen), 0);
		assert_int_equal(crypto_sm2_verify(pub, "bob", msg, sizeof(msg), osig, osiglen), 0);
		crypto_sm2_key_free(pub);
		crypto_sm2_key_free(key);
	}
	field_path_for_round(0);

	/* Z for the default ID, cached in the key, is the one computed from
	 * its definition: SM3(ENTL || ID || a || b || xG || yG || xA || yA) */
	crypto_sm2_key *key = NULL;
	assert_int_equal(crypto_sm2_generate(&key), 0);
	uint8_t buf[2 + 16 + 4 * 32 + 64], z[32], want[32];
	buf[0] = 0;
	buf[1] = 128;
	memcpy(buf + 2, CRYPTO_SM2_DEFAULT_ID, 16);
	unhex("fffffffeffffffffffffffffffffffffffffffff00000000fffffffffffffffc"
	      "28e9fa9e9d9f5e344d5a9e4bcf6509a7f39789f515ab8f92ddbcbd414d940e93"
	      "32c4ae2c1f1981195f9904466a39c9948fe30bbff2660be1715a4589334c74c7"
	      "bc3736a2f4f6779c59bdcee36b692153d0a9877cc62a474002df32e52139f0a0",
	      buf + 18, 128);
	uint8_t point[CRYPTO_SM2_POINT_LEN];
	assert_int_equal(crypto_sm2_public_point(key, point), 0);
	memcpy(buf + 146, point + 1, 64);
	assert_int_equal(crypto_sm3(buf, sizeof(buf), want), 0);
	assert_int_equal(crypto_sm2_z(key, NULL, z), 0);
	assert_memory_equal(z, want, 32);
	assert_int_equal(crypto_sm2_z(key, CRYPTO_SM2_DEFAULT_ID, z), 0);
	assert_memory_equal(z, want, 32);

	/* a key from a raw point makes its OpenSSL key at first need: the
	 * public PEM is the original key's, and OpenSSL verifies with it */
	crypto_sm2_key *pub = public_of(key);
	char *pem = NULL, *pem2 = NULL;
	size_t pemlen = 0, pemlen2 = 0;
	assert_int_equal(crypto_sm2_public_pem(pub, &pem, &pemlen), 0);
	assert_int_equal(crypto_sm2_public_pem(key, &pem2, &pemlen2), 0);
	assert_int_equal(pemlen, pemlen2);
	assert_memory_equal(pem, pem2, pemlen);
	free(pem);
	free(pem2);
	assert_int_equal(crypto_sm2_sign(key, NULL, msg, sizeof(msg), sig, &siglen), 0);
	assert_int_equal(crypto_sm2_ossl_verify(pub, NULL, msg, sizeof(msg), sig, siglen), 0);
	crypto_sm2_key_free(pub);

	/* four threads verifying with one fresh key build and publish the
	 * table at once: every result stays right */
	pub = public_of(key);
	assert_int_equal(crypto_random(msg, sizeof(msg)), 0);
	assert_int_equal(crypto_sm2_sign(key, NULL, msg, sizeof(msg), sig, &siglen), 0);
	pthread_t t[4];
	struct verify_job jobs[4];
	for (int i = 0; i < 4; i++) {
		jobs[i] = (struct verify_job){pub, msg, sizeof(msg), sig, siglen, 0};
		assert_int_equal(pthread_create(&t[i], NULL, verify_loop, &jobs[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		assert_int_equal(pthread_join(t[i], NULL), 0);
		assert_int_equal(jobs[i].fails, 0);
	}
	assert_non_null(atomic_load(&pub->pub_table));
	crypto_sm2_key_free(pub);
	crypto_sm2_key_free(key);
}

/* ---- invalid signatures (Wycheproof-style) ---- */

static void expect_refused(const crypto_sm2_key *key, const uint8_t e[32], const uint8_t *sig,
			   size_t siglen)
{
	assert_int_equal(crypto_sm2_verify_digest(key, e, sig, siglen), -EBADMSG);
	assert_int_equal(crypto_sm2_ossl_verify_digest(key, e, sig, siglen), -EBADMSG);
}

static void test_bad_signatures(void **state)
{
	crypto_sm2_key *key = NULL;
	assert_int_equal(crypto_sm2_generate(&key), 0);
	uint8_t e[32], r[32], s[32], sig[CRYPTO_SM2_SIG_DER_MAX], bad[CRYPTO_SM2_SIG_DER_MAX + 8];
	size_t siglen = 0, badlen = 0;
	assert_int_equal(crypto_random(e, 32), 0);
	assert_int_equal(crypto_sm2_sign_digest(key, e, sig, &siglen), 0);
	assert_int_equal(crypto_sm2_verify_digest(key, e, sig, siglen), 0);
	assert_int_equal(crypto_sm2_sig_der_to_rs(sig, siglen, r, s), 0);

	/* r or s replaced by 0, 1, n - 1, n, n + 1, 2^256 - 1 */
	uint8_t vals[6][32];
	memset(vals[0], 0, 32);
	memset(vals[1], 0, 32);
	vals[1][31] = 1;
	n_plus(-1, vals[2]);
	n_plus(0, vals[3]);
	n_plus(1, vals[4]);
	memset(vals[5], 0xff, 32);
	for (size_t i = 0; i < 6; i++) {
		assert_int_equal(crypto_sm2_sig_rs_to_der(vals[i], s, bad, &badlen), 0);
		expect_refused(key, e, bad, badlen);
		assert_int_equal(crypto_sm2_sig_rs_to_der(r, vals[i], bad, &badlen), 0);
		expect_refused(key, e, bad, badlen);
	}
	/* r + s = n (t = 0) */
	sm2_u256 rv, sv;
	sm2_u256_from_be(&rv, r);
	sm2_u256_sub(&sv, &SM2_N, &rv);
	uint8_t s2[32];
	sm2_u256_to_be(s2, &sv);
	assert_int_equal(crypto_sm2_sig_rs_to_der(r, s2, bad, &badlen), 0);
	expect_refused(key, e, bad, badlen);
	/* r and s swapped, s negated mod n, each bit of r and s flipped */
	assert_int_equal(crypto_sm2_sig_rs_to_der(s, r, bad, &badlen), 0);
	expect_refused(key, e, bad, badlen);
	sm2_u256_from_be(&sv, s);
	sm2_u256_sub(&sv, &SM2_N, &sv);
	sm2_u256_to_be(s2, &sv);
	assert_int_equal(crypto_sm2_sig_rs_to_der(r, s2, bad, &badlen), 0);
	expect_refused(key, e, bad, badlen);
	for (int bit = 0; bit < 256; bit += 7) {
		uint8_t r2[32];
		memcpy(r2, r, 32);
		r2[bit / 8] ^= (uint8_t)(1 << (bit % 8));
		assert_int_equal(crypto_sm2_sig_rs_to_der(r2, s, bad, &badlen), 0);
		expect_refused(key, e, bad, badlen);
		memcpy(s2, s, 32);
		s2[bit / 8] ^= (uint8_t)(1 << (bit % 8));
		assert_int_equal(crypto_sm2_sig_rs_to_der(r, s2, bad, &badlen), 0);
		expect_refused(key, e, bad, badlen);
	}
	/* another digest */
	uint8_t e2[32];
	memcpy(e2, e, 32);
	e2[0] ^= 0x80;
	expect_refused(key, e2, sig, siglen);

	/* encodings: a signature with r's high bit set needs a 0x00 pad */
	uint8_t rh[32], sh[32];
	memset(rh, 0, 32);
	rh[0] = 0x80;
	memset(sh, 0, 32);
	sh[31] = 5;
	assert_int_equal(crypto_sm2_sig_rs_to_der(rh, sh, bad, &badlen), 0);
	assert_int_equal(bad[3], 33); /* padded INTEGER */
	/* drop the pad: a negative INTEGER */
	uint8_t neg[CRYPTO_SM2_SIG_DER_MAX];
	neg[0] = 0x30;
	neg[1] = (uint8_t)(bad[1] - 1);
	neg[2] = 0x02;
	neg[3] = 32;
	memcpy(neg + 4, bad + 5, badlen - 5);
	expect_refused(key, e, neg, badlen - 1);
	/* non-minimal: an extra leading zero before r */
	uint8_t nm[CRYPTO_SM2_SIG_DER_MAX + 1];
	size_t rlen = sig[3];
	nm[0] = 0x30;
	nm[1] = (uint8_t)(sig[1] + 1);
	nm[2] = 0x02;
	nm[3] = (uint8_t)(rlen + 1);
	nm[4] = 0x00;
	memcpy(nm + 5, sig + 4, siglen - 4);
	if (siglen + 1 <= CRYPTO_SM2_SIG_DER_MAX)
		expect_refused(key, e, nm, siglen + 1);
	/* long-form length for the SEQUENCE */
	uint8_t lf[CRYPTO_SM2_SIG_DER_MAX + 1];
	lf[0] = 0x30;
	lf[1] = 0x81;
	lf[2] = sig[1];
	memcpy(lf + 3, sig + 2, siglen - 2);
	if (siglen + 1 <= CRYPTO_SM2_SIG_DER_MAX)
		expect_refused(key, e, lf, siglen + 1);
	/* a trailing byte, a truncation, the wrong tag, empty */
	memcpy(bad, sig, siglen);
	bad[siglen] = 0;
	expect_refused(key, e, bad, siglen + 1);
	expect_refused(key, e, sig, siglen - 1);
	memcpy(bad, sig, siglen);
	bad[0] = 0x31;
	expect_refused(key, e, bad, siglen);
	assert_int_equal(crypto_sm2_verify_digest(key, e, sig, 0), -EBADMSG);
	crypto_sm2_key_free(key);
}

/* ---- public points ---- */

static void test_bad_public_points(void **state)
{
	crypto_sm2_key *key = NULL;
	assert_int_equal(crypto_sm2_generate(&key), 0);
	uint8_t point[CRYPTO_SM2_POINT_LEN], bad[CRYPTO_SM2_POINT_LEN];
	assert_int_equal(crypto_sm2_public_point(key, point), 0);
	crypto_sm2_key *k = NULL;
	/* off the curve: y + 1 */
	memcpy(bad, point, sizeof(bad));
	bad[64] ^= 1;
	assert_int_equal(crypto_sm2_from_public_point(bad, &k), -EINVAL);
	/* infinity has no affine encoding: (0, 0) is refused */
	memset(bad, 0, sizeof(bad));
	bad[0] = 0x04;
	assert_int_equal(crypto_sm2_from_public_point(bad, &k), -EINVAL);
	/* x = p, and x = x + p where that fits (same residue) */
	memcpy(bad, point, sizeof(bad));
	unhex(p_hex, bad + 1, 32);
	assert_int_equal(crypto_sm2_from_public_point(bad, &k), -EINVAL);
	sm2_u256 v;
	sm2_u256_from_be(&v, point + 33);
	if (sm2_u256_add(&v, &v, &SM2_P) == 0) {
		memcpy(bad, point, sizeof(bad));
		sm2_u256_to_be(bad + 33, &v);
		assert_int_equal(crypto_sm2_from_public_point(bad, &k), -EINVAL);
	}
	/* compressed and hybrid prefixes are not accepted in raw form */
	memcpy(bad, point, sizeof(bad));
	bad[0] = 0x02;
	assert_int_equal(crypto_sm2_from_public_point(bad, &k), -EINVAL);
	bad[0] = 0x06;
	assert_int_equal(crypto_sm2_from_public_point(bad, &k), -EINVAL);
	assert_null(k);
	/* the raw layer refuses the same */
	struct sm2_fast_key fk;
	memcpy(bad, point, sizeof(bad));
	bad[33] ^= 0x40;
	assert_int_equal(sm2_fast_key_set_public(&fk, bad), -EINVAL);
	assert_int_equal(sm2_fast_key_set_public(&fk, point), 0);
	crypto_sm2_key_free(key);
}

static void test_compressed_key_cli(void **state)
{
	char *dir = cli_tmpdir();
	const char msg[] = "compressed";
	cli_write(dir, "msg.bin", msg, strlen(msg));
	assert_int_equal(cli_run(dir, "openssl genpkey -algorithm SM2 -out key.pem && "
				      "openssl ec -in key.pem -pubout -conv_form compressed -out pubc.pem && "
				      "openssl pkeyutl -sign -inkey key.pem -rawin -in msg.bin "
				      "-digest sm3 -pkeyopt distid:1234567812345678 -out sig.der"),
			 0);
	size_t len = 0, siglen = 0;
	char *pem = (char *)cli_read(dir, "pubc.pem", &len);
	crypto_sm2_key *pub = NULL;
	assert_int_equal(crypto_sm2_load_public_pem(pem, len, &pub), 0);
	free(pem);
	uint8_t *sig = cli_read(dir, "sig.der", &siglen);
	assert_int_equal(crypto_sm2_verify(pub, NULL, msg, strlen(msg), sig, siglen), 0);
	assert_int_equal(crypto_sm2_verify(pub, NULL, msg, 3, sig, siglen), -EBADMSG);
	free(sig);
	crypto_sm2_key_free(pub);
	cli_tmpdir_free(dir);
}

/* ---- ciphertexts ---- */

static void test_tampered_ciphertexts(void **state)
{
	crypto_sm2_key *key = NULL;
	assert_int_equal(crypto_sm2_generate(&key), 0);
	const char msg[] = "a secret of some length";
	uint8_t *der = NULL, *plain = NULL;
	size_t derlen = 0, plainlen = 0;
	assert_int_equal(crypto_sm2_encrypt(key, msg, sizeof(msg), &der, &derlen), 0);
	uint8_t x[32], y[32], hash[32], *c = NULL;
	size_t clen = 0;
	assert_int_equal(crypto_sm2_cipher_der_to_parts(der, derlen, x, y, hash, &c, &clen), 0);
	assert_int_equal(clen, sizeof(msg));
	/* each region, one bit at a time: x, y, C3, C2 */
	uint8_t *regions[] = {x, y, hash, c};
	size_t sizes[] = {32, 32, 32, clen};
	for (size_t reg = 0; reg < 4; reg++) {
		for (size_t at = 0; at < sizes[reg]; at += 5) {
			regions[reg][at] ^= 0x04;
			uint8_t *bad = NULL;
			size_t badlen = 0;
			assert_int_equal(
				crypto_sm2_cipher_parts_to_der(x, y, hash, c, clen, &bad, &badlen), 0);
			plain = NULL;
			assert_int_equal(crypto_sm2_decrypt(key, bad, badlen, &plain, &plainlen),
					 -EBADMSG);
			assert_null(plain);
			assert_int_equal(crypto_sm2_ossl_decrypt(key, bad, badlen, &plain, &plainlen),
					 -EBADMSG);
			free(bad);
			regions[reg][at] ^= 0x04;
		}
	}
	/* C1 replaced by G: on the curve, but C3 does not match */
	uint8_t g[64];
	unhex("32c4ae2c1f1981195f9904466a39c9948fe30bbff2660be1715a4589334c74c7", g, 32);
	unhex("bc3736a2f4f6779c59bdcee36b692153d0a9877cc62a474002df32e52139f0a0", g + 32, 32);
	uint8_t *bad = NULL;
	size_t badlen = 0;
	assert_int_equal(crypto_sm2_cipher_parts_to_der(g, g + 32, hash, c, clen, &bad, &badlen), 0);
	assert_int_equal(crypto_sm2_decrypt(key, bad, badlen, &plain, &plainlen), -EBADMSG);
	free(bad);
	/* C1 = (0, 0) (no point), C1 with x = p */
	uint8_t zero[32] = {0}, pb[32];
	assert_int_equal(crypto_sm2_cipher_parts_to_der(zero, zero, hash, c, clen, &bad, &badlen), 0);
	assert_int_equal(crypto_sm2_decrypt(key, bad, badlen, &plain, &plainlen), -EBADMSG);
	free(bad);
	unhex(p_hex, pb, 32);
	assert_int_equal(crypto_sm2_cipher_parts_to_der(pb, y, hash, c, clen, &bad, &badlen), 0);
	assert_int_equal(crypto_sm2_decrypt(key, bad, badlen, &plain, &plainlen), -EBADMSG);
	free(bad);
	/* empty C2, truncated DER, trailing byte */
	assert_int_equal(crypto_sm2_cipher_parts_to_der(x, y, hash, c, 0, &bad, &badlen), 0);
	assert_int_equal(crypto_sm2_decrypt(key, bad, badlen, &plain, &plainlen), -EBADMSG);
	free(bad);
	assert_int_equal(crypto_sm2_decrypt(key, der, derlen - 1, &plain, &plainlen), -EBADMSG);
	uint8_t *longer = malloc(derlen + 1);
	assert_non_null(longer);
	memcpy(longer, der, derlen);
	longer[derlen] = 0;
	/* (OpenSSL's decryption ignores trailing bytes; the own code does not) */
	assert_int_equal(crypto_sm2_decrypt(key, longer, derlen + 1, &plain, &plainlen), -EBADMSG);
	free(longer);
	/* the untouched one still decrypts; a public key cannot decrypt */
	assert_int_equal(crypto_sm2_decrypt(key, der, derlen, &plain, &plainlen), 0);
	assert_memory_equal(plain, msg, sizeof(msg));
	crypto_free_secret(plain, plainlen);
	crypto_sm2_key *pub = public_of(key);
	assert_int_equal(crypto_sm2_decrypt(pub, der, derlen, &plain, &plainlen), -EINVAL);
	crypto_sm2_key_free(pub);
	free(c);
	free(der);
	crypto_sm2_key_free(key);
}

/* ---- the standard's nonce rejections, through the test hook ---- */

static void test_nonce_rejections(void **state)
{
	crypto_sm2_key *key = NULL;
	assert_int_equal(crypto_sm2_generate(&key), 0);
	uint8_t k[32], e[32], sig[CRYPTO_SM2_SIG_DER_MAX];
	size_t siglen = 0;
	assert_int_equal(crypto_random(k, 32), 0);
	k[0] &= 0x7f; /* < n */
	/* x1 of k G, from the public key of a key whose d is k */
	crypto_sm2_key *kk = NULL;
	uint8_t kpoint[CRYPTO_SM2_POINT_LEN];
	assert_int_equal(crypto_sm2_from_private_scalar(k, &kk), 0);
	assert_int_equal(crypto_sm2_public_point(kk, kpoint), 0);
	crypto_sm2_key_free(kk);
	sm2_u256 x1, kv, ev;
	sm2_u256_from_be(&x1, kpoint + 1);
	sm2_mod_reduce_once(&x1, &x1, &SM2_N);
	sm2_u256_from_be(&kv, k);
	/* e = -x1: r = 0 */
	const sm2_u256 zero = {{0, 0, 0, 0}};
	sm2_fn_sub(&ev, &zero, &x1);
	sm2_u256_to_be(e, &ev);
	assert_int_equal(crypto_sm2_sign_digest_k(key, e, k, sig, &siglen), -EAGAIN);
	/* e = -x1 - k: r = n - k, so r + k = n */
	sm2_fn_sub(&ev, &ev, &kv);
	sm2_u256_to_be(e, &ev);
	assert_int_equal(crypto_sm2_sign_digest_k(key, e, k, sig, &siglen), -EAGAIN);
	/* e = -x1 + 1: r = 1, accepted and valid */
	const sm2_u256 one = {{1, 0, 0, 0}};
	sm2_fn_sub(&ev, &zero, &x1);
	sm2_fn_add(&ev, &ev, &one);
	sm2_u256_to_be(e, &ev);
	assert_int_equal(crypto_sm2_sign_digest_k(key, e, k, sig, &siglen), 0);
	assert_int_equal(crypto_sm2_ossl_verify_digest(key, e, sig, siglen), 0);
	crypto_sm2_key_free(key);
}

/* ---- the two field arithmetic paths ---- */

/* A field element for the comparison: random below p, or near an edge
 * (0, 1, p - 1, p - 2, limbs all ones or zero) for the carry chains. */
static void edge_fe(sm2_u256 *a, int i)
{
	uint8_t b[32];
	assert_int_equal(crypto_random(b, sizeof(b)), 0);
	sm2_u256_from_be(a, b);
	const sm2_u256 one = {{1, 0, 0, 0}}, two = {{2, 0, 0, 0}};
	switch (i % 8) {
	case 0:
		memset(a, 0, sizeof(*a));
		break;
	case 1:
		*a = one;
		break;
	case 2:
		sm2_u256_sub(a, &SM2_P, &one);
		break;
	case 3:
		sm2_u256_sub(a, &SM2_P, &two);
		break;
	case 4: /* limbs of all ones or zeros, chosen by the random bits */
		for (int j = 0; j < 4; j++)
			a->w[j] = (b[j] & 1) ? ~(uint64_t)0 : (b[j] & 2) ? 0 : a->w[j];
		break;
	default:
		break;
	}
	sm2_mod_reduce_once(a, a, &SM2_P);
}

static void test_field_paths(void **state)
{
#if SM2_HAVE_X86_ASM
	if (!host_adx) {
		skip();
		return;
	}
	for (int i = 0; i < 200000; i++) {
		sm2_u256 a, b, r1, r2;
		edge_fe(&a, i < 64 ? i : i / 7);
		edge_fe(&b, i < 64 ? i / 8 : i / 3);
		sm2_fp_mul_c(&r1, &a, &b);
		sm2_fp_mul_adx(&r2, &a, &b);
		assert_memory_equal(&r1, &r2, sizeof(r1));
		sm2_fp_sqr_c(&r1, &a);
		sm2_fp_sqr_adx(&r2, &a);
		assert_memory_equal(&r1, &r2, sizeof(r1));
		/* and both below p */
		assert_true(sm2_u256_lt(&r2, &SM2_P));
	}
#else
	skip();
#endif
}

/* ---- scalar multiplication consistency ---- */

static void scalar_mult_checks(void);

/* G as X || Y (big-endian) and decoded. */
static void generator(uint8_t gb[64], sm2_aff *ret_g)
{
	unhex("32c4ae2c1f1981195f9904466a39c9948fe30bbff2660be1715a4589334c74c7", gb, 32);
	unhex("bc3736a2f4f6779c59bdcee36b692153d0a9877cc62a474002df32e52139f0a0", gb + 32, 32);
	assert_int_equal(sm2_ec_point_from_bytes(ret_g, gb, gb + 32), 0);
}

/* The affine x of k G (normal form). */
static void base_x(const sm2_u256 *k, sm2_u256 *ret_x)
{
	sm2_aff a;
	uint8_t x[32], y[32];
	sm2_ec_mul_base(&a, k);
	sm2_ec_point_to_bytes(&a, x, y);
	sm2_u256_from_be(ret_x, x);
}

/* s G + t P two ways, without and with P's verification table (built
 * here): asserts that both give infinity or neither, and that both agree
 * on whether x is the affine x of the sum, which is returned. */
static bool double_mul_x_is(const sm2_u256 *s, const sm2_u256 *t, const sm2_aff *p,
			    const sm2_u256 *x)
{
	struct sm2_pub_table tab;
	sm2_jac q, qt;
	sm2_ec_pub_table_fill(&tab, p);
	sm2_ec_mul_double_vt(&q, s, t, p);
	sm2_ec_mul_double_table_vt(&qt, s, t, &tab);
	bool inf = sm2_u256_is_zero(&q.z) != 0;
	assert_int_equal(inf, sm2_u256_is_zero(&qt.z) != 0);
	bool eq = sm2_ec_jac_x_equals_vt(&q, x);
	assert_int_equal(eq, sm2_ec_jac_x_equals_vt(&qt, x));
	return eq;
}

/* Both forms of s G + t P give infinity. */
static void double_mul_assert_inf(const sm2_u256 *s, const sm2_u256 *t, const sm2_aff *p)
{
	struct sm2_pub_table tab;
	sm2_jac q;
	sm2_ec_pub_table_fill(&tab, p);
	sm2_ec_mul_double_vt(&q, s, t, p);
	assert_true(sm2_u256_is_zero(&q.z));
	sm2_ec_mul_double_table_vt(&q, s, t, &tab);
	assert_true(sm2_u256_is_zero(&q.z));
}

/* The checks below with each field arithmetic path. */
static void test_scalar_mult(void **state)
{
	for (int path = 0; path < 2; path++) {
#if SM2_HAVE_X86_ASM
		sm2_fe_force_adx(host_adx && path == 0);
#endif
		scalar_mult_checks();
	}
#if SM2_HAVE_X86_ASM
	sm2_fe_force_adx(host_adx);
#endif
}

static void scalar_mult_checks(void)
{
	uint8_t gb[64];
	sm2_aff g;
	generator(gb, &g);
	for (int i = 0; i < 200; i++) {
		uint8_t kb[32];
		sm2_u256 k;
		assert_int_equal(crypto_random(kb, 32), 0);
		/* random, then scalars with long runs of zero and 0xf nibbles */
		if (i % 4 == 1)
			memset(kb + 1, 0, 30);
		if (i % 4 == 2)
			memset(kb + 2, 0xff, 29);
		if (i == 3)
			memset(kb, 0, 31);
		kb[0] &= 0x7f;
		if (i == 4)
			n_plus(-1, kb);
		sm2_u256_from_be(&k, kb);
		if (sm2_u256_is_zero(&k))
			continue;
		sm2_aff a, b;
		uint8_t ax[32], ay[32], bx[32], by[32];
		sm2_ec_mul_base(&a, &k);
		sm2_ec_mul(&b, &k, &g);
		sm2_ec_point_to_bytes(&a, ax, ay);
		sm2_ec_point_to_bytes(&b, bx, by);
		assert_memory_equal(ax, bx, 32);
		assert_memory_equal(ay, by, 32);
		/* s G + t G = (s + t) G for s + t = k */
		sm2_u256 s, t;
		uint8_t sb[32];
		assert_int_equal(crypto_random(sb, 32), 0);
		sb[0] &= 0x7f;
		sm2_u256_from_be(&s, sb);
		sm2_fn_sub(&t, &k, &s);
		sm2_u256 xa;
		sm2_u256_from_be(&xa, ax);
		assert_true(double_mul_x_is(&s, &t, &g, &xa));
	}
	/* (n - 1) G = -G */
	uint8_t kb[32], x[32], y[32];
	sm2_u256 k;
	n_plus(-1, kb);
	sm2_u256_from_be(&k, kb);
	sm2_aff a;
	sm2_ec_mul_base(&a, &k);
	sm2_ec_point_to_bytes(&a, x, y);
	assert_memory_equal(x, gb, 32);
	sm2_u256 yv, gy;
	sm2_u256_from_be(&yv, y);
	sm2_u256_from_be(&gy, gb + 32);
	sm2_u256_add(&yv, &yv, &gy);
	assert_true(sm2_u256_eq(&yv, &SM2_P));
	/* s G + t G with s + t = n is infinity: no x matches */
	sm2_u256 s = {{12345, 0, 0, 0}}, t, gx;
	sm2_u256_sub(&t, &SM2_N, &s);
	sm2_u256_from_be(&gx, gb);
	double_mul_assert_inf(&s, &t, &g);
	assert_false(double_mul_x_is(&s, &t, &g, &gx));
	/* s G + t G with s = t: the doubling case of the addition */
	sm2_u256 two = {{2, 0, 0, 0}}, one = {{1, 0, 0, 0}}, x2v;
	base_x(&two, &x2v);
	assert_true(double_mul_x_is(&one, &one, &g, &x2v));
}

/* ---- scalars at the edges of the window recodings ---- */

/* k * G three ways: the comb, the windowed multiplication of G, and the
 * verification's s G + t G split as (k - t) G + t G for a few t. */
static void check_scalar_three_ways(const sm2_u256 *k, const sm2_aff *g)
{
	sm2_aff a, b;
	uint8_t ax[32], ay[32], bx[32], by[32];
	sm2_ec_mul_base(&a, k);
	sm2_ec_mul(&b, k, g);
	sm2_ec_point_to_bytes(&a, ax, ay);
	sm2_ec_point_to_bytes(&b, bx, by);
	assert_memory_equal(ax, bx, 32);
	assert_memory_equal(ay, by, 32);
	sm2_u256 xa;
	sm2_u256_from_be(&xa, ax);
	/* small t, and t around 2^64, 2^128 and 2^192, where the table form
	 * splits the scalars into limbs (limbs of all ones, or zero) */
	static const sm2_u256 ts[] = {
		{{0, 0, 0, 0}},
		{{1, 0, 0, 0}},
		{{2, 0, 0, 0}},
		{{3, 0, 0, 0}},
		{{127, 0, 0, 0}},
		{{128, 0, 0, 0}},
		{{129, 0, 0, 0}},
		{{~(uint64_t)0, ~(uint64_t)0, 0, 0}},
		{{0, 0, 1, 0}},
		{{1, 0, 1, 0}},
		{{~(uint64_t)0, ~(uint64_t)0, 1, 0}},
		{{0, 0, ~(uint64_t)0, 0x7fffffffffffffffULL}},
		{{~(uint64_t)0, 0, 0, 0}},
		{{0, 1, 0, 0}},
		{{~(uint64_t)0, ~(uint64_t)0, ~(uint64_t)0, 0}},
		{{0, 0, 0, 1}},
		{{1, 1, 1, 1}},
		{{~(uint64_t)0, 0, ~(uint64_t)0, 0}},
	};
	for (size_t i = 0; i < ARRAY_SIZE(ts); i++) {
		sm2_u256 s;
		sm2_fn_sub(&s, k, &ts[i]);
		assert_true(double_mul_x_is(&s, &ts[i], g, &xa));
		/* and with the roles swapped */
		assert_true(double_mul_x_is(&ts[i], &s, g, &xa));
	}
}

static void scalar_edge_checks(const sm2_aff *g)
{
	sm2_u256 k;
	/* tiny scalars, and n - 40 .. n - 1: the last signed digit d0 < 0
	 * with k = n + 2 d0 makes the last addition a doubling */
	for (uint64_t v = 1; v <= 40; v++) {
		sm2_u256 d = {{v, 0, 0, 0}};
		check_scalar_three_ways(&d, g);
		sm2_u256_sub(&k, &SM2_N, &d);
		check_scalar_three_ways(&k, g);
	}
	/* powers of two and their neighbours */
	for (int b = 1; b < 256; b += 7) {
		memset(&k, 0, sizeof(k));
		k.w[b / 64] = (uint64_t)1 << (b % 64);
		sm2_mod_reduce_once(&k, &k, &SM2_N);
		check_scalar_three_ways(&k, g);
		const sm2_u256 one = {{1, 0, 0, 0}};
		sm2_fn_sub(&k, &k, &one);
		if (!sm2_u256_is_zero(&k))
			check_scalar_three_ways(&k, g);
	}
	/* long runs of one signed digit: the 5-bit patterns 00001, 10000,
	 * 11111, 01111 and 10101 repeated, and runs of 4-bit ones */
	static const unsigned pats[] = {0x01, 0x10, 0x1f, 0x0f, 0x15};
	for (size_t i = 0; i < ARRAY_SIZE(pats); i++) {
		memset(&k, 0, sizeof(k));
		for (int bit = 0; bit < 255; bit++)
			if ((pats[i] >> (bit % 5)) & 1)
				k.w[bit / 64] |= (uint64_t)1 << (bit % 64);
		sm2_mod_reduce_once(&k, &k, &SM2_N);
		check_scalar_three_ways(&k, g);
	}
	for (int i = 0; i < 4; i++) {
		memset(&k, 0, sizeof(k));
		k.w[i] = ~(uint64_t)0;
		sm2_mod_reduce_once(&k, &k, &SM2_N);
		check_scalar_three_ways(&k, g);
	}
}

/* s G + t P for P a small multiple j G, whose tables and partial sums
 * meet the doubling and opposite cases of the additions. */
static void shamir_small_multiple_checks(const sm2_aff *g)
{
	static const int64_t js[] = {1, 2, 3, 5, -1, -3};
	static const uint64_t vals[] = {1, 2, 3, 5, 7, 15, 16, 17, 31, 127, 128, 255, 1000};
	for (size_t a = 0; a < ARRAY_SIZE(js); a++) {
		sm2_u256 j = {{(uint64_t)(js[a] < 0 ? -js[a] : js[a]), 0, 0, 0}};
		if (js[a] < 0)
			sm2_u256_sub(&j, &SM2_N, &j);
		sm2_aff p;
		sm2_ec_mul_base(&p, &j);
		sm2_u256 jm;
		sm2_fn_to_mont(&jm, &j);
		for (size_t b = 0; b < ARRAY_SIZE(vals); b++) {
			for (size_t c = 0; c < ARRAY_SIZE(vals); c++) {
				sm2_u256 s = {{vals[b], 0, 0, 0}}, t = {{vals[c], 0, 0, 0}}, k, tj;
				if (c % 3 == 2) /* and large t: n - t */
					sm2_u256_sub(&t, &SM2_N, &t);
				sm2_fn_mul(&tj, &t, &jm); /* t j mod n */
				sm2_fn_add(&k, &s, &tj);
				if (sm2_u256_is_zero(&k)) {
					double_mul_assert_inf(&s, &t, &p);
					continue;
				}
				sm2_u256 xv;
				base_x(&k, &xv);
				assert_true(double_mul_x_is(&s, &t, &p, &xv));
			}
		}
	}
}

static void test_scalar_edges(void **state)
{
	uint8_t gb[64];
	sm2_aff g;
	generator(gb, &g);
	for (int path = 0; path < 2; path++) {
#if SM2_HAVE_X86_ASM
		sm2_fe_force_adx(host_adx && path == 0);
#endif
		scalar_edge_checks(&g);
		shamir_small_multiple_checks(&g);
	}
#if SM2_HAVE_X86_ASM
	sm2_fe_force_adx(host_adx);
#endif
	/* and private keys at the recoding edges decrypt what OpenSSL
	 * encrypts (d C1 with d = n - 6, n - 7, ..., n - 32) */
	for (int delta = 2; delta <= 32; delta += 1) {
		uint8_t db[32];
		n_plus(-delta, db);
		crypto_sm2_key *key = NULL;
		assert_int_equal(crypto_sm2_from_private_scalar(db, &key), 0);
		const char msg[] = "edge";
		uint8_t *der = NULL, *plain = NULL;
		size_t derlen = 0, plainlen = 0;
		assert_int_equal(crypto_sm2_ossl_encrypt(key, msg, sizeof(msg), &der, &derlen), 0);
		assert_int_equal(crypto_sm2_decrypt(key, der, derlen, &plain, &plainlen), 0);
		assert_int_equal(plainlen, sizeof(msg));
		assert_memory_equal(plain, msg, sizeof(msg));
		crypto_free_secret(plain, plainlen);
		free(der);
		crypto_sm2_key_free(key);
	}
}

int main(void)
{
	/* The crypto.h calls must run the own code whatever the caller's
	 * environment says (it is read at the first SM2 operation). */
	unsetenv("OPENCHSM_SM2_IMPL");
#if SM2_HAVE_X86_ASM
	host_adx = sm2_fe_use_adx != 0;
#endif
	printf("field arithmetic: %s\n", host_adx ? "mulx/adx assembly and portable C" : "portable C");
	/* n_plus works from SM2_N: check it against the published order. */
	uint8_t nb[32], nc[32];
	n_plus(0, nc);
	if (chsm_hex_decode(n_hex, strlen(n_hex), nb, 32) != 0 || memcmp(nb, nc, 32) != 0) {
		fprintf(stderr, "SM2_N does not match the published order\n");
		return 1;
	}
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_gmt_sample_signature),
		cmocka_unit_test(test_edge_scalars),
		cmocka_unit_test(test_message_sizes),
		cmocka_unit_test(test_bad_signatures),
		cmocka_unit_test(test_bad_public_points),
		cmocka_unit_test(test_compressed_key_cli),
		cmocka_unit_test(test_tampered_ciphertexts),
		cmocka_unit_test(test_nonce_rejections),
		cmocka_unit_test(test_field_paths),
		cmocka_unit_test(test_scalar_mult),
		cmocka_unit_test(test_scalar_edges),
		cmocka_unit_test(test_diff_sign_verify),
		cmocka_unit_test(test_verify_table),
		cmocka_unit_test(test_diff_encrypt_decrypt),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
