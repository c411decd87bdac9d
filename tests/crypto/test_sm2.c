/*
 * Unit tests of the crypto module's SM2 side: keys and their encodings,
 * signatures with signer IDs, the Z value and digest signing, encryption,
 * the DER <-> fixed-width conversions, refusal of non-SM2 keys, and
 * interoperability with the openssl command-line tool in both directions.
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

#include <openssl/err.h>

#include "cli.h"
#include "common/util.h"
#include "crypto/crypto.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Order n of the SM2 group. */
static const char sm2_n_hex[] =
	"fffffffeffffffffffffffffffffffff7203df6b21c6052b53bbf40939d54123";

static void unhex(const char *hex, uint8_t *out, size_t len)
{
	assert_int_equal(chsm_hex_decode(hex, strlen(hex), out, len), 0);
}

static crypto_sm2_key *generate(void)
{
	crypto_sm2_key *key = NULL;
	assert_int_equal(crypto_sm2_generate(&key), 0);
	assert_non_null(key);
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

static void assert_same_point(const crypto_sm2_key *a, const crypto_sm2_key *b)
{
	uint8_t pa[CRYPTO_SM2_POINT_LEN], pb[CRYPTO_SM2_POINT_LEN];
	assert_int_equal(crypto_sm2_public_point(a, pa), 0);
	assert_int_equal(crypto_sm2_public_point(b, pb), 0);
	assert_memory_equal(pa, pb, sizeof(pa));
}

static crypto_sm2_key *load_file(const char *dir, const char *name, bool private)
{
	size_t len = 0;
	char *pem = (char *)cli_read(dir, name, &len);
	crypto_sm2_key *key = NULL;
	int r = private ? crypto_sm2_load_private_pem(pem, len, &key)
			: crypto_sm2_load_public_pem(pem, len, &key);
	assert_int_equal(r, 0);
	free(pem);
	return key;
}

static int load_file_err(const char *dir, const char *name, bool private)
{
	size_t len = 0;
	char *pem = (char *)cli_read(dir, name, &len);
	crypto_sm2_key *key = NULL;
	int r = private ? crypto_sm2_load_private_pem(pem, len, &key)
			: crypto_sm2_load_public_pem(pem, len, &key);
	assert_null(key);
	free(pem);
	return r;
}

/* ---- sign / verify ---- */

static void test_sign_verify(void **state)
{
	crypto_sm2_key *key = generate(), *other = generate();
	crypto_sm2_key *pub = public_of(key);
	assert_true(crypto_sm2_key_has_private(key));
	assert_false(crypto_sm2_key_has_private(pub));
	assert_false(crypto_sm2_key_has_private(NULL));

	const char *msg = "management request body";
	size_t len = strlen(msg);
	uint8_t sig[CRYPTO_SM2_SIG_DER_MAX];
	size_t siglen = 0;
	assert_int_equal(crypto_sm2_sign(key, NULL, msg, len, sig, &siglen), 0);
	assert_true(siglen >= 8 && siglen <= CRYPTO_SM2_SIG_DER_MAX);
	assert_int_equal(sig[0], 0x30);
	assert_int_equal(crypto_sm2_verify(pub, NULL, msg, len, sig, siglen), 0);
	assert_int_equal(crypto_sm2_verify(key, NULL, msg, len, sig, siglen), 0);
	/* NULL is the default ID, spelled out. */
	assert_int_equal(crypto_sm2_verify(pub, CRYPTO_SM2_DEFAULT_ID, msg, len, sig, siglen), 0);

	/* Tampered message: every position. */
	char tampered[64];
	memcpy(tampered, msg, len);
	for (size_t i = 0; i < len; i++) {
		tampered[i] ^= 0x01;
		assert_int_equal(crypto_sm2_verify(pub, NULL, tampered, len, sig, siglen), -EBADMSG);
		tampered[i] ^= 0x01;
	}
	assert_int_equal(crypto_sm2_verify(pub, NULL, msg, len - 1, sig, siglen), -EBADMSG);
	/* Tampered signature: every byte. */
	for (size_t i = 0; i < siglen; i++) {
		sig[i] ^= 0x01;
		assert_int_equal(crypto_sm2_verify(pub, NULL, msg, len, sig, siglen), -EBADMSG);
		sig[i] ^= 0x01;
	}
	/* Malformed signatures. */
	static const uint8_t garbage[] = {0x30, 0x03, 0x02, 0x01, 0x01};
	uint8_t longer[CRYPTO_SM2_SIG_DER_MAX + 1] = {0};
	memcpy(longer, sig, siglen);
	assert_int_equal(crypto_sm2_verify(pub, NULL, msg, len, sig, siglen - 1), -EBADMSG);
	assert_int_equal(crypto_sm2_verify(pub, NULL, msg, len, longer, siglen + 1), -EBADMSG);
	assert_int_equal(crypto_sm2_verify(pub, NULL, msg, len, longer, sizeof(longer)), -EBADMSG);
	assert_int_equal(crypto_sm2_verify(pub, NULL, msg, len, sig, 0), -EBADMSG);
	assert_int_equal(crypto_sm2_verify(pub, NULL, msg, len, garbage, sizeof(garbage)), -EBADMSG);
	/* Another key, another ID. */
	assert_int_equal(crypto_sm2_verify(other, NULL, msg, len, sig, siglen), -EBADMSG);
	assert_int_equal(crypto_sm2_verify(pub, "alice@example.com", msg, len, sig, siglen), -EBADMSG);
	assert_int_equal(crypto_sm2_verify(pub, "", msg, len, sig, siglen), -EBADMSG);

	/* Empty message, other IDs. */
	assert_int_equal(crypto_sm2_sign(key, NULL, NULL, 0, sig, &siglen), 0);
	assert_int_equal(crypto_sm2_verify(pub, NULL, "", 0, sig, siglen), 0);
	assert_int_equal(crypto_sm2_sign(key, "", msg, len, sig, &siglen), 0);
	assert_int_equal(crypto_sm2_verify(pub, "", msg, len, sig, siglen), 0);
	assert_int_equal(crypto_sm2_verify(pub, NULL, msg, len, sig, siglen), -EBADMSG);

	/* A public key cannot sign; an over-long ID is refused. */
	size_t untouched = 4242;
	assert_int_equal(crypto_sm2_sign(pub, NULL, msg, len, sig, &untouched), -EINVAL);
	assert_int_equal(untouched, 4242);
	char *long_id = malloc(8192);
	assert_non_null(long_id);
	memset(long_id, 'a', 8191);
	long_id[8191] = '\0';
	uint8_t z[CRYPTO_SM3_LEN];
	assert_int_equal(crypto_sm2_sign(key, long_id, msg, len, sig, &siglen), -EINVAL);
	assert_int_equal(crypto_sm2_verify(pub, long_id, msg, len, sig, siglen), -EINVAL);
	assert_int_equal(crypto_sm2_z(pub, long_id, z), -EINVAL);
	long_id[8190] = '\0'; /* 8190 bytes: the longest OpenSSL takes */
	assert_int_equal(crypto_sm2_sign(key, long_id, msg, len, sig, &siglen), 0);
	assert_int_equal(crypto_sm2_verify(pub, long_id, msg, len, sig, siglen), 0);
	free(long_id);

	crypto_sm2_key_free(key);
	crypto_sm2_key_free(other);
	crypto_sm2_key_free(pub);
	crypto_sm2_key_free(NULL);
}

/* ---- Z and digest signing ---- */

static void test_z_and_digest(void **state)
{
	crypto_sm2_key *key = generate(), *pub = public_of(key);
	static const char *const ids[] = {NULL, "alice@example.com", ""};
	const char *msg = "message M";
	size_t len = strlen(msg);
	for (size_t i = 0; i < ARRAY_SIZE(ids); i++) {
		uint8_t z[CRYPTO_SM3_LEN], zpub[CRYPTO_SM3_LEN], e[CRYPTO_SM3_LEN], buf[64];
		assert_int_equal(crypto_sm2_z(key, ids[i], z), 0);
		assert_int_equal(crypto_sm2_z(pub, ids[i], zpub), 0);
		assert_memory_equal(z, zpub, sizeof(z));
		memcpy(buf, z, 32);
		memcpy(buf + 32, msg, len);
		assert_int_equal(crypto_sm3(buf, 32 + len, e), 0);

		uint8_t sig[CRYPTO_SM2_SIG_DER_MAX];
		size_t siglen = 0;
		/* sign_digest(SM3(Z || M)) is a signature over M ... */
		assert_int_equal(crypto_sm2_sign_digest(key, e, sig, &siglen), 0);
		assert_int_equal(crypto_sm2_verify(pub, ids[i], msg, len, sig, siglen), 0);
		assert_int_equal(crypto_sm2_verify_digest(pub, e, sig, siglen), 0);
		/* ... and a signature over M verifies against e. */
		assert_int_equal(crypto_sm2_sign(key, ids[i], msg, len, sig, &siglen), 0);
		assert_int_equal(crypto_sm2_verify_digest(pub, e, sig, siglen), 0);
		e[0] ^= 1;
		assert_int_equal(crypto_sm2_verify_digest(pub, e, sig, siglen), -EBADMSG);
		assert_int_equal(crypto_sm2_verify_digest(pub, e, sig, 0), -EBADMSG);
		assert_int_equal(crypto_sm2_sign_digest(pub, e, sig, &siglen), -EINVAL);
	}
	uint8_t z1[32], z2[32];
	assert_int_equal(crypto_sm2_z(key, NULL, z1), 0);
	assert_int_equal(crypto_sm2_z(key, CRYPTO_SM2_DEFAULT_ID, z2), 0);
	assert_memory_equal(z1, z2, 32);
	assert_int_equal(crypto_sm2_z(key, "bob", z2), 0);
	assert_memory_not_equal(z1, z2, 32);
	crypto_sm2_key_free(key);
	crypto_sm2_key_free(pub);
}

/* ---- PEM, points, scalars, fingerprints ---- */

static void test_pem_roundtrip(void **state)
{
	crypto_sm2_key *key = generate(), *priv = NULL, *pub = NULL;
	char *pem = NULL, *pubpem = NULL;
	size_t len = 0, publen = 0;
	assert_int_equal(crypto_sm2_private_pem(key, &pem, &len), 0);
	assert_int_equal(strlen(pem), len);
	assert_true(strncmp(pem, "-----BEGIN PRIVATE KEY-----\n", 28) == 0);
	assert_int_equal(crypto_sm2_public_pem(key, &pubpem, &publen), 0);
	assert_int_equal(strlen(pubpem), publen);
	assert_true(strncmp(pubpem, "-----BEGIN PUBLIC KEY-----\n", 27) == 0);

	assert_int_equal(crypto_sm2_load_private_pem(pem, len, &priv), 0);
	assert_int_equal(crypto_sm2_load_public_pem(pubpem, publen, &pub), 0);
	assert_true(crypto_sm2_key_has_private(priv));
	assert_false(crypto_sm2_key_has_private(pub));
	assert_same_point(key, priv);
	assert_same_point(key, pub);
	uint8_t d1[32], d2[32];
	assert_int_equal(crypto_sm2_private_scalar(key, d1), 0);
	assert_int_equal(crypto_sm2_private_scalar(priv, d2), 0);
	assert_memory_equal(d1, d2, 32);

	uint8_t sig[CRYPTO_SM2_SIG_DER_MAX];
	size_t siglen = 0;
	assert_int_equal(crypto_sm2_sign(priv, NULL, "m", 1, sig, &siglen), 0);
	assert_int_equal(crypto_sm2_verify(pub, NULL, "m", 1, sig, siglen), 0);

	/* A public key has no private PEM; the public PEM of a public key is
	 * the same text. */
	char *pem2 = (char *)"untouched";
	assert_int_equal(crypto_sm2_private_pem(pub, &pem2, &len), -EINVAL);
	assert_string_equal(pem2, "untouched");
	char *pubpem2 = NULL;
	assert_int_equal(crypto_sm2_public_pem(pub, &pubpem2, &publen), 0);
	assert_string_equal(pubpem, pubpem2);

	crypto_free_secret(pem, len);
	free(pubpem);
	free(pubpem2);
	crypto_sm2_key_free(key);
	crypto_sm2_key_free(priv);
	crypto_sm2_key_free(pub);
}

static void test_pem_bad(void **state)
{
	crypto_sm2_key *key = generate();
	char *pem = NULL, *pubpem = NULL;
	size_t len = 0, publen = 0;
	assert_int_equal(crypto_sm2_private_pem(key, &pem, &len), 0);
	assert_int_equal(crypto_sm2_public_pem(key, &pubpem, &publen), 0);

	char truncated[2048], corrupted[2048];
	snprintf(truncated, sizeof(truncated), "%.*s", (int)(len / 2), pem);
	snprintf(corrupted, sizeof(corrupted), "%s", pem);
	corrupted[40] = corrupted[40] == 'A' ? 'B' : 'A'; /* inside the base64 */
	char pub_corrupted[2048];
	snprintf(pub_corrupted, sizeof(pub_corrupted), "%s", pubpem);
	pub_corrupted[100] = pub_corrupted[100] == 'A' ? 'B' : 'A'; /* inside the point */

	static const char garbage[] = "not a key";
	const struct {
		const char *what, *pem;
		size_t len;
		bool private;
	} bad[] = {
		{"empty private", "", 0, true},
		{"empty public", "", 0, false},
		{"garbage private", garbage, sizeof(garbage) - 1, true},
		{"garbage public", garbage, sizeof(garbage) - 1, false},
		{"truncated private", truncated, strlen(truncated), true},
		{"corrupted private", corrupted, strlen(corrupted), true},
		{"public as private", pubpem, publen, true},
		{"private as public", pem, len, false},
		{"corrupted public", pub_corrupted, publen, false},
		{"NULL", NULL, 10, true},
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		crypto_sm2_key *out = NULL;
		print_message("%s\n", bad[i].what);
		int r = bad[i].private ? crypto_sm2_load_private_pem(bad[i].pem, bad[i].len, &out)
				       : crypto_sm2_load_public_pem(bad[i].pem, bad[i].len, &out);
		assert_int_equal(r, -EINVAL);
		assert_null(out);
	}
	crypto_free_secret(pem, len);
	free(pubpem);
	crypto_sm2_key_free(key);
}

/* PEM "EC PRIVATE KEY" (SEC1) for scalar d and point, on the SM2 curve. */
static char *sec1_pem(const uint8_t d[32], const uint8_t point[65])
{
	static const uint8_t head[] = {0x30, 0x77, 0x02, 0x01, 0x01, 0x04, 0x20};
	static const uint8_t params[] = {0xa0, 0x0a, 0x06, 0x08, 0x2a, 0x81, 0x1c, 0xcf,
					 0x55, 0x01, 0x82, 0x2d, 0xa1, 0x44, 0x03, 0x42, 0x00};
	uint8_t der[121];
	memcpy(der, head, sizeof(head));
	memcpy(der + 7, d, 32);
	memcpy(der + 39, params, sizeof(params));
	memcpy(der + 56, point, 65);
	char *b64 = NULL;
	assert_int_equal(crypto_base64_encode(der, sizeof(der), &b64), 0);
	char *pem = malloc(512);
	assert_non_null(pem);
	size_t n = (size_t)sprintf(pem, "-----BEGIN EC PRIVATE KEY-----\n");
	for (size_t i = 0; i < strlen(b64); i += 64)
		n += (size_t)sprintf(pem + n, "%.64s\n", b64 + i);
	sprintf(pem + n, "-----END EC PRIVATE KEY-----\n");
	free(b64);
	return pem;
}

static void test_pem_private_checked(void **state)
{
	/* A private key whose public point is not d*G is refused. */
	crypto_sm2_key *key = generate(), *other = generate(), *out = NULL;
	uint8_t d[32], point[65], other_point[65];
	assert_int_equal(crypto_sm2_private_scalar(key, d), 0);
	assert_int_equal(crypto_sm2_public_point(key, point), 0);
	assert_int_equal(crypto_sm2_public_point(other, other_point), 0);

	char *pem = sec1_pem(d, point);
	assert_int_equal(crypto_sm2_load_private_pem(pem, strlen(pem), &out), 0);
	assert_same_point(out, key);
	crypto_sm2_key_free(out);
	out = NULL;
	free(pem);

	pem = sec1_pem(d, other_point);
	assert_int_equal(crypto_sm2_load_private_pem(pem, strlen(pem), &out), -EINVAL);
	assert_null(out);
	free(pem);
	crypto_wipe(d, sizeof(d));
	crypto_sm2_key_free(key);
	crypto_sm2_key_free(other);
}

static void test_point_roundtrip(void **state)
{
	crypto_sm2_key *key = generate(), *pub = NULL;
	uint8_t point[CRYPTO_SM2_POINT_LEN], back[CRYPTO_SM2_POINT_LEN];
	assert_int_equal(crypto_sm2_public_point(key, point), 0);
	assert_int_equal(point[0], 0x04);
	assert_int_equal(crypto_sm2_from_public_point(point, &pub), 0);
	assert_int_equal(crypto_sm2_public_point(pub, back), 0);
	assert_memory_equal(point, back, sizeof(point));

	uint8_t bad[CRYPTO_SM2_POINT_LEN];
	static const struct {
		const char *what;
		size_t at;
		uint8_t xor_, set;
		bool use_set;
	} cases[] = {
		{"compressed prefix 02", 0, 0, 0x02, true},
		{"compressed prefix 03", 0, 0, 0x03, true},
		{"infinity prefix 00", 0, 0, 0x00, true},
		{"hybrid prefix 06", 0, 0, 0x06, true},
		{"y off the curve", 64, 0x01, 0, false},
		{"x off the curve", 1, 0x80, 0, false},
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		crypto_sm2_key *out = NULL;
		memcpy(bad, point, sizeof(bad));
		if (cases[i].use_set)
			bad[cases[i].at] = cases[i].set;
		else
			bad[cases[i].at] ^= cases[i].xor_;
		print_message("%s\n", cases[i].what);
		assert_int_equal(crypto_sm2_from_public_point(bad, &out), -EINVAL);
		assert_null(out);
	}
	crypto_sm2_key *out = NULL;
	memset(bad, 0, sizeof(bad));
	bad[0] = 0x04;
	assert_int_equal(crypto_sm2_from_public_point(bad, &out), -EINVAL);
	/* Coordinates at or above p. */
	memset(bad + 1, 0xff, 64);
	assert_int_equal(crypto_sm2_from_public_point(bad, &out), -EINVAL);
	assert_null(out);
	crypto_sm2_key_free(key);
	crypto_sm2_key_free(pub);
}

static void test_scalar_roundtrip(void **state)
{
	crypto_sm2_key *key = generate(), *pub = public_of(key), *copy = NULL;
	uint8_t d[CRYPTO_SM2_SCALAR_LEN];
	assert_int_equal(crypto_sm2_private_scalar(key, d), 0);
	assert_int_equal(crypto_sm2_from_private_scalar(d, &copy), 0);
	crypto_wipe(d, sizeof(d));
	assert_true(crypto_sm2_key_has_private(copy));
	assert_same_point(key, copy);
	/* The key made from d signs; the original public key verifies. */
	uint8_t sig[CRYPTO_SM2_SIG_DER_MAX];
	size_t siglen = 0;
	assert_int_equal(crypto_sm2_sign(copy, NULL, "msg", 3, sig, &siglen), 0);
	assert_int_equal(crypto_sm2_verify(pub, NULL, "msg", 3, sig, siglen), 0);
	/* And it decrypts what was encrypted to the original. */
	uint8_t *ct = NULL, *pt = NULL;
	size_t ctlen = 0, ptlen = 0;
	assert_int_equal(crypto_sm2_encrypt(pub, "secret", 6, &ct, &ctlen), 0);
	assert_int_equal(crypto_sm2_decrypt(copy, ct, ctlen, &pt, &ptlen), 0);
	assert_int_equal(ptlen, 6);
	assert_memory_equal(pt, "secret", 6);
	crypto_free_secret(pt, ptlen);
	free(ct);

	uint8_t dd[32];
	assert_int_equal(crypto_sm2_private_scalar(pub, dd), -EINVAL);

	/* d must be in [1, n-2]. */
	uint8_t n[32], s[32];
	unhex(sm2_n_hex, n, 32);
	static const struct {
		const char *what;
		int sub; /* s = n - sub, or a fixed value when sub < 0 */
		int expect;
	} v[] = {
		{"zero", -1, -EINVAL}, {"one", -2, 0},         {"n-2", 2, 0},
		{"n-1", 1, -EINVAL},   {"n", 0, -EINVAL},      {"all ff", -3, -EINVAL},
	};
	for (size_t i = 0; i < ARRAY_SIZE(v); i++) {
		crypto_sm2_key *k = NULL;
		if (v[i].sub == -1) {
			memset(s, 0, 32);
		} else if (v[i].sub == -2) {
			memset(s, 0, 32);
			s[31] = 1;
		} else if (v[i].sub == -3) {
			memset(s, 0xff, 32);
		} else {
			memcpy(s, n, 32);
			s[31] = (uint8_t)(s[31] - v[i].sub); /* n ends in 0x23: no borrow */
		}
		print_message("%s\n", v[i].what);
		assert_int_equal(crypto_sm2_from_private_scalar(s, &k), v[i].expect);
		if (v[i].expect == 0) {
			assert_int_equal(crypto_sm2_sign(k, NULL, "m", 1, sig, &siglen), 0);
			assert_int_equal(crypto_sm2_verify(k, NULL, "m", 1, sig, siglen), 0);
		} else {
			assert_null(k);
		}
		crypto_sm2_key_free(k);
	}
	crypto_sm2_key_free(key);
	crypto_sm2_key_free(pub);
	crypto_sm2_key_free(copy);
}

/* A hold taken with crypto_sm2_key_ref keeps the key usable after its
 * owner let go (ASan would see a use after free; LeakSanitizer a hold that
 * is never released). */
static void test_key_ref(void **state)
{
	static const char msg[] = "held";
	crypto_sm2_key *key = generate();
	uint8_t sig[CRYPTO_SM2_SIG_DER_MAX];
	size_t siglen = 0;
	assert_null(crypto_sm2_key_ref(NULL));
	crypto_sm2_key *held = crypto_sm2_key_ref(key);
	crypto_sm2_key *again = crypto_sm2_key_ref(key);
	assert_ptr_equal(held, key);
	assert_ptr_equal(again, key);
	crypto_sm2_key_free(key);
	crypto_sm2_key_free(again);
	assert_int_equal(crypto_sm2_sign(held, NULL, msg, sizeof(msg), sig, &siglen), 0);
	assert_int_equal(crypto_sm2_verify(held, NULL, msg, sizeof(msg), sig, siglen), 0);
	crypto_sm2_key_free(held);
}

static void test_fingerprint(void **state)
{
	crypto_sm2_key *key = generate(), *pub = public_of(key), *other = generate();
	uint8_t point[CRYPTO_SM2_POINT_LEN];
	char fp[CRYPTO_SM3_HEX_LEN + 1], fp_pub[CRYPTO_SM3_HEX_LEN + 1], expect[CRYPTO_SM3_HEX_LEN + 1];
	assert_int_equal(crypto_sm2_public_point(key, point), 0);
	assert_int_equal(crypto_sm3_hex(point, sizeof(point), expect), 0);
	assert_int_equal(crypto_sm2_fingerprint(key, fp), 0);
	assert_int_equal(crypto_sm2_fingerprint(pub, fp_pub), 0);
	assert_string_equal(fp, expect);
	assert_string_equal(fp_pub, expect);
	assert_int_equal(strlen(fp), 64);
	assert_true(chsm_str_charset(fp, 64, NULL));
	for (size_t i = 0; i < 64; i++)
		assert_true((fp[i] >= '0' && fp[i] <= '9') || (fp[i] >= 'a' && fp[i] <= 'f'));
	assert_int_equal(crypto_sm2_fingerprint(other, fp), 0);
	assert_string_not_equal(fp, expect);
	crypto_sm2_key_free(key);
	crypto_sm2_key_free(pub);
	crypto_sm2_key_free(other);
}

/* ---- encryption ---- */

static void test_encrypt_decrypt(void **state)
{
	crypto_sm2_key *key = generate(), *pub = public_of(key), *other = generate();
	static const size_t lens[] = {1, 16, 32, 33, 100, 1000};
	uint8_t plain[1000];
	for (size_t i = 0; i < sizeof(plain); i++)
		plain[i] = (uint8_t)(i * 31 + 7);
	for (size_t i = 0; i < ARRAY_SIZE(lens); i++) {
		uint8_t *ct = NULL, *pt = NULL;
		size_t ctlen = 0, ptlen = 0;
		assert_int_equal(crypto_sm2_encrypt(pub, plain, lens[i], &ct, &ctlen), 0);
		assert_true(ctlen <= lens[i] + CRYPTO_SM2_CIPHER_OVERHEAD);
		assert_int_equal(crypto_sm2_decrypt(key, ct, ctlen, &pt, &ptlen), 0);
		assert_int_equal(ptlen, lens[i]);
		assert_memory_equal(pt, plain, ptlen);
		crypto_free_secret(pt, ptlen);

		/* Tampering with x, y, C3 or C2 is detected. */
		uint8_t x[32], y[32], hash[32], *c = NULL;
		size_t clen = 0;
		assert_int_equal(crypto_sm2_cipher_der_to_parts(ct, ctlen, x, y, hash, &c, &clen), 0);
		assert_int_equal(clen, lens[i]);
		uint8_t *parts[] = {x + 31, y + 31, hash, c, c + clen - 1};
		for (size_t p = 0; p < ARRAY_SIZE(parts); p++) {
			uint8_t *der = NULL;
			size_t derlen = 0;
			*parts[p] ^= 0x01;
			assert_int_equal(crypto_sm2_cipher_parts_to_der(x, y, hash, c, clen, &der, &derlen), 0);
			*parts[p] ^= 0x01;
			pt = (uint8_t *)"untouched";
			assert_int_equal(crypto_sm2_decrypt(key, der, derlen, &pt, &ptlen), -EBADMSG);
			assert_string_equal((char *)pt, "untouched");
			free(der);
		}
		free(c);
		/* Truncated, wrong key. */
		assert_int_equal(crypto_sm2_decrypt(key, ct, ctlen - 1, &pt, &ptlen), -EBADMSG);
		assert_int_equal(crypto_sm2_decrypt(other, ct, ctlen, &pt, &ptlen), -EBADMSG);
		free(ct);
	}
	uint8_t *ct = NULL, *pt = NULL;
	size_t ctlen = 0, ptlen = 0;
	static const uint8_t garbage[] = {0x30, 0x03, 0x02, 0x01, 0x01};
	assert_int_equal(crypto_sm2_decrypt(key, garbage, sizeof(garbage), &pt, &ptlen), -EBADMSG);
	assert_int_equal(crypto_sm2_decrypt(key, garbage, 0, &pt, &ptlen), -EBADMSG);
	assert_int_equal(crypto_sm2_encrypt(pub, "", 0, &ct, &ctlen), -EINVAL);
	assert_int_equal(crypto_sm2_encrypt(pub, "x", 1, &ct, &ctlen), 0);
	assert_int_equal(crypto_sm2_decrypt(pub, ct, ctlen, &pt, &ptlen), -EINVAL);
	free(ct);
	crypto_sm2_key_free(key);
	crypto_sm2_key_free(pub);
	crypto_sm2_key_free(other);
}

/* ---- DER conversions ---- */

static void test_sig_der_rs(void **state)
{
	crypto_sm2_key *key = generate();
	for (int i = 0; i < 20; i++) {
		uint8_t sig[CRYPTO_SM2_SIG_DER_MAX], back[CRYPTO_SM2_SIG_DER_MAX], r[32], s[32];
		size_t siglen = 0, backlen = 0;
		assert_int_equal(crypto_sm2_sign(key, NULL, &i, sizeof(i), sig, &siglen), 0);
		assert_int_equal(crypto_sm2_sig_der_to_rs(sig, siglen, r, s), 0);
		assert_int_equal(crypto_sm2_sig_rs_to_der(r, s, back, &backlen), 0);
		assert_int_equal(backlen, siglen);
		assert_memory_equal(back, sig, siglen);
	}
	/* Small and large values: minimal INTEGERs both ways. */
	static const struct {
		const char *r, *s, *der;
	} v[] = {
		{"0000000000000000000000000000000000000000000000000000000000000001",
		 "00000000000000000000000000000000000000000000000000000000000000ff",
		 "3007020101020200ff"},
		{"8000000000000000000000000000000000000000000000000000000000000000",
		 "7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
		 "3045022100" "8000000000000000000000000000000000000000000000000000000000000000"
		 "0220" "7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"},
	};
	for (size_t i = 0; i < ARRAY_SIZE(v); i++) {
		uint8_t r[32], s[32], r2[32], s2[32], der[CRYPTO_SM2_SIG_DER_MAX], expect[80];
		size_t derlen = 0, expectlen = strlen(v[i].der) / 2;
		unhex(v[i].r, r, 32);
		unhex(v[i].s, s, 32);
		unhex(v[i].der, expect, expectlen);
		assert_int_equal(crypto_sm2_sig_rs_to_der(r, s, der, &derlen), 0);
		assert_int_equal(derlen, expectlen);
		assert_memory_equal(der, expect, derlen);
		assert_int_equal(crypto_sm2_sig_der_to_rs(der, derlen, r2, s2), 0);
		assert_memory_equal(r, r2, 32);
		assert_memory_equal(s, s2, 32);
	}
	static const char *const bad[] = {
		"",                       /* empty */
		"3007020101020101",       /* SEQUENCE longer than its contents */
		"300602010102010100",     /* trailing byte */
		"30060201010201",         /* truncated */
		"3106020101020101",       /* SET, not SEQUENCE */
		"300702020001020101",     /* non-minimal INTEGER */
		"30060201ff020101",       /* negative r */
		"3006020101040101",       /* s is an OCTET STRING */
		"30800201010201010000",   /* indefinite length (BER) */
		"308106020101020101",     /* long-form length for a short one */
		"3027022201000000000000000000000000000000000000000000000000000000000000000000020101",
		/* r of 34 bytes */
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		uint8_t der[80], r[32] = {0}, s[32] = {0}, zero[32] = {0};
		size_t derlen = strlen(bad[i]) / 2;
		print_message("case %zu\n", i);
		if (derlen > 0)
			unhex(bad[i], der, derlen);
		assert_int_equal(crypto_sm2_sig_der_to_rs(der, derlen, r, s), -EINVAL);
		assert_memory_equal(r, zero, 32);
	}
	crypto_sm2_key_free(key);
}

static void test_cipher_der_parts(void **state)
{
	crypto_sm2_key *key = generate();
	uint8_t *ct = NULL;
	size_t ctlen = 0;
	for (int i = 0; i < 10; i++) {
		uint8_t x[32], y[32], hash[32], *c = NULL, *back = NULL;
		size_t clen = 0, backlen = 0;
		assert_int_equal(crypto_sm2_encrypt(key, "plaintext", 9, &ct, &ctlen), 0);
		assert_int_equal(crypto_sm2_cipher_der_to_parts(ct, ctlen, x, y, hash, &c, &clen), 0);
		assert_int_equal(clen, 9);
		assert_int_equal(crypto_sm2_cipher_parts_to_der(x, y, hash, c, clen, &back, &backlen), 0);
		assert_int_equal(backlen, ctlen);
		assert_memory_equal(back, ct, ctlen);
		free(c);
		free(back);
		free(ct);
	}
	/* Leading zeros, high bits, a long C2 (two-byte length). */
	uint8_t x[32] = {0}, y[32], hash[32], c[300];
	x[31] = 5;
	memset(y, 0x80, 32);
	memset(hash, 0x33, 32);
	memset(c, 0x44, sizeof(c));
	uint8_t *der = NULL, *c2 = NULL, x2[32], y2[32], h2[32];
	size_t derlen = 0, c2len = 0;
	assert_int_equal(crypto_sm2_cipher_parts_to_der(x, y, hash, c, sizeof(c), &der, &derlen), 0);
	/* 30 82 len | 02 01 05 | 02 21 00 80.. | 04 20 33.. | 04 82 01 2c 44.. */
	assert_int_equal(derlen, 4 + 3 + 35 + 34 + 4 + 300);
	assert_memory_equal(der, "\x30\x82\x01\x78\x02\x01\x05\x02\x21\x00\x80", 11);
	assert_int_equal(crypto_sm2_cipher_der_to_parts(der, derlen, x2, y2, h2, &c2, &c2len), 0);
	assert_memory_equal(x, x2, 32);
	assert_memory_equal(y, y2, 32);
	assert_memory_equal(hash, h2, 32);
	assert_int_equal(c2len, sizeof(c));
	assert_memory_equal(c, c2, sizeof(c));
	free(c2);
	/* Every proper prefix is refused. */
	for (size_t n = 0; n < derlen; n++) {
		c2 = NULL;
		assert_int_equal(crypto_sm2_cipher_der_to_parts(der, n, x2, y2, h2, &c2, &c2len), -EINVAL);
		assert_null(c2);
	}
	free(der);

	/* Hand-made malformed encodings around x = 1, y = 1, hash = 32 x 0x11,
	 * C2 = "ab". */
	static const struct {
		const char *what, *hex;
	} bad[] = {
		{"C2 as INTEGER",
		 "302c020101020101042011111111111111111111111111111111111111111111"
		 "1111111111111111111102026162"},
		{"trailing byte after the SEQUENCE",
		 "302c020101020101042011111111111111111111111111111111111111111111"
		 "111111111111111111110402616200"},
		{"trailing byte inside the SEQUENCE",
		 "302d020101020101042011111111111111111111111111111111111111111111"
		 "111111111111111111110402616200"},
		{"C2 longer than what is left",
		 "302c020101020101042011111111111111111111111111111111111111111111"
		 "1111111111111111111104036162"},
		{"non-minimal x",
		 "302d020200010201010420111111111111111111111111111111111111111111"
		 "111111111111111111111104026162"},
		{"negative x",
		 "302c0201ff020101042011111111111111111111111111111111111111111111"
		 "1111111111111111111104026162"},
		{"31-byte hash",
		 "302b020101020101041f11111111111111111111111111111111111111111111"
		 "11111111111111111104026162"},
		{"33-byte hash",
		 "302d020101020101042111111111111111111111111111111111111111111111"
		 "111111111111111111111104026162"},
		{"no C2",
		 "3028020101020101042011111111111111111111111111111111111111111111"
		 "11111111111111111111"},
		{"SET",
		 "312c020101020101042011111111111111111111111111111111111111111111"
		 "1111111111111111111104026162"},
		{"indefinite length",
		 "3080020101020101042011111111111111111111111111111111111111111111"
		 "11111111111111111111040261620000"},
		{"long form for a short length",
		 "30812c0201010201010420111111111111111111111111111111111111111111"
		 "111111111111111111111104026162"},
		{"x of 33 significant bytes",
		 "304c022101000000000000000000000000000000000000000000000000000000"
		 "0000000000020101042011111111111111111111111111111111111111111111"
		 "1111111111111111111104026162"},
		{"length with a leading zero byte",
		 "3030020101020101042011111111111111111111111111111111111111111111"
		 "111111111111111111110484000000026162"},
		{"x is empty",
		 "302b020002010104201111111111111111111111111111111111111111111111"
		 "11111111111111111104026162"},
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		uint8_t buf[128];
		size_t len = strlen(bad[i].hex) / 2;
		assert_true(len <= sizeof(buf));
		unhex(bad[i].hex, buf, len);
		c2 = NULL;
		print_message("%s\n", bad[i].what);
		assert_int_equal(crypto_sm2_cipher_der_to_parts(buf, len, x2, y2, h2, &c2, &c2len), -EINVAL);
		assert_null(c2);
	}
	/* The well-formed sibling of the table parses. */
	uint8_t good[46];
	unhex("302c020101020101042011111111111111111111111111111111111111111111"
	      "1111111111111111111104026162", good, sizeof(good));
	assert_int_equal(crypto_sm2_cipher_der_to_parts(good, sizeof(good), x2, y2, h2, &c2, &c2len), 0);
	assert_int_equal(c2len, 2);
	assert_memory_equal(c2, "ab", 2);
	assert_int_equal(x2[31], 1);
	assert_int_equal(y2[31], 1);
	assert_int_equal(h2[0], 0x11);
	free(c2);
	crypto_sm2_key_free(key);
}

/* ---- keys from the openssl CLI ---- */

static void test_cli_key_forms(void **state)
{
	char *dir = cli_tmpdir();
	assert_int_equal(cli_run(dir, "openssl genpkey -algorithm SM2 -out key.pem && "
				      "openssl pkey -in key.pem -pubout -out pub.pem && "
				      "openssl ec -in key.pem -out sec1.pem && "
				      "sed 's/SM2 PRIVATE KEY/EC PRIVATE KEY/' sec1.pem > ecsec1.pem && "
				      "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:SM2 "
				      "-out eccurve.pem && "
				      "openssl ec -in key.pem -pubout -conv_form compressed -out pubc.pem && "
				      "openssl ec -in key.pem -param_enc explicit -out explicit.pem && "
				      "openssl ec -in key.pem -param_enc explicit -pubout -out explicitpub.pem"),
			 0);
	crypto_sm2_key *pub = load_file(dir, "pub.pem", false);
	static const char *const same[] = {"key.pem", "sec1.pem", "ecsec1.pem", "explicit.pem"};
	for (size_t i = 0; i < ARRAY_SIZE(same); i++) {
		print_message("%s\n", same[i]);
		crypto_sm2_key *k = load_file(dir, same[i], true);
		assert_true(crypto_sm2_key_has_private(k));
		assert_same_point(k, pub);
		crypto_sm2_key_free(k);
	}
	static const char *const same_pub[] = {"pubc.pem", "explicitpub.pem"};
	for (size_t i = 0; i < ARRAY_SIZE(same_pub); i++) {
		print_message("%s\n", same_pub[i]);
		crypto_sm2_key *k = load_file(dir, same_pub[i], false);
		assert_false(crypto_sm2_key_has_private(k));
		assert_same_point(k, pub);
		crypto_sm2_key_free(k);
	}
	crypto_sm2_key *ec = load_file(dir, "eccurve.pem", true);
	uint8_t sig[CRYPTO_SM2_SIG_DER_MAX];
	size_t siglen = 0;
	assert_int_equal(crypto_sm2_sign(ec, NULL, "m", 1, sig, &siglen), 0);
	assert_int_equal(crypto_sm2_verify(ec, NULL, "m", 1, sig, siglen), 0);
	crypto_sm2_key_free(ec);
	crypto_sm2_key_free(pub);
	cli_tmpdir_free(dir);
}

static void test_cli_non_sm2_refused(void **state)
{
	char *dir = cli_tmpdir();
	assert_int_equal(cli_run(dir, "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 "
				      "-out p256.pem && openssl pkey -in p256.pem -pubout -out p256pub.pem && "
				      "openssl ec -in p256.pem -param_enc explicit -out p256x.pem && "
				      "openssl ec -in p256.pem -param_enc explicit -pubout -out p256xpub.pem && "
				      "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:1024 "
				      "-out rsa.pem && openssl pkey -in rsa.pem -pubout -out rsapub.pem && "
				      "openssl genpkey -algorithm ED25519 -out ed.pem && "
				      "openssl pkey -in ed.pem -pubout -out edpub.pem && "
				      "openssl genpkey -algorithm SM2 -out sm2.pem && "
				      "openssl pkcs8 -topk8 -in sm2.pem -passout pass:secret -out enc.pem"),
			 0);
	static const struct {
		const char *file;
		bool private;
	} v[] = {
		{"p256.pem", true}, {"p256pub.pem", false}, {"p256x.pem", true}, {"p256xpub.pem", false},
		{"rsa.pem", true},  {"rsapub.pem", false},
		{"ed.pem", true},   {"edpub.pem", false},   {"enc.pem", true},
	};
	for (size_t i = 0; i < ARRAY_SIZE(v); i++) {
		print_message("%s\n", v[i].file);
		assert_int_equal(load_file_err(dir, v[i].file, v[i].private), -EINVAL);
	}
	cli_tmpdir_free(dir);
}

/* ---- signature interoperability with the openssl CLI ---- */

static void test_cli_sign_interop(void **state)
{
	char *dir = cli_tmpdir();
	const char msg[] = "request to sign\nwith two lines";
	cli_write(dir, "msg", msg, sizeof(msg) - 1);
	static const char *const ids[] = {CRYPTO_SM2_DEFAULT_ID, "alice@example.com"};

	/* (1) This module signs, the CLI verifies. */
	crypto_sm2_key *key = generate();
	char *pem = NULL;
	size_t pemlen = 0;
	assert_int_equal(crypto_sm2_public_pem(key, &pem, &pemlen), 0);
	cli_write(dir, "mine.pub.pem", pem, pemlen);
	free(pem);
	for (size_t i = 0; i < ARRAY_SIZE(ids); i++) {
		uint8_t sig[CRYPTO_SM2_SIG_DER_MAX];
		size_t siglen = 0;
		/* The default ID both ways: explicit and NULL. */
		assert_int_equal(crypto_sm2_sign(key, i == 0 ? NULL : ids[i], msg, sizeof(msg) - 1, sig,
						 &siglen),
				 0);
		cli_write(dir, "mine.sig", sig, siglen);
		assert_int_equal(cli_run(dir, "openssl dgst -sm3 -verify mine.pub.pem -sigopt distid:%s "
					      "-signature mine.sig msg && grep -qx 'Verified OK' out.txt",
					 ids[i]),
				 0);
		/* The same signature under the other ID does not verify. */
		assert_true(cli_run(dir, "openssl dgst -sm3 -verify mine.pub.pem -sigopt distid:%s "
					 "-signature mine.sig msg",
				    ids[1 - i]) != 0);
		/* Nor does it on another message. */
		assert_true(cli_run(dir, "printf x >> msg2 && openssl dgst -sm3 -verify mine.pub.pem "
					 "-sigopt distid:%s -signature mine.sig msg2",
				    ids[i]) != 0);

		/* sign_digest(SM3(Z || M)) is accepted by the CLI too: Z is right. */
		uint8_t z[32], buf[32 + sizeof(msg)], e[32];
		assert_int_equal(crypto_sm2_z(key, ids[i], z), 0);
		memcpy(buf, z, 32);
		memcpy(buf + 32, msg, sizeof(msg) - 1);
		assert_int_equal(crypto_sm3(buf, 32 + sizeof(msg) - 1, e), 0);
		assert_int_equal(crypto_sm2_sign_digest(key, e, sig, &siglen), 0);
		cli_write(dir, "mine.sig", sig, siglen);
		assert_int_equal(cli_run(dir, "openssl dgst -sm3 -verify mine.pub.pem -sigopt distid:%s "
					      "-signature mine.sig msg && grep -qx 'Verified OK' out.txt",
					 ids[i]),
				 0);
	}
	crypto_sm2_key_free(key);

	/* (2) The CLI signs, this module verifies with keys from its PEM files. */
	assert_int_equal(cli_run(dir, "openssl genpkey -algorithm SM2 -out key.pem && "
				      "openssl pkey -in key.pem -pubout -out pub.pem"),
			 0);
	crypto_sm2_key *pub = load_file(dir, "pub.pem", false);
	crypto_sm2_key *priv = load_file(dir, "key.pem", true);
	for (size_t i = 0; i < ARRAY_SIZE(ids); i++) {
		assert_int_equal(cli_run(dir, "openssl dgst -sm3 -sign key.pem -sigopt distid:%s "
					      "-out theirs.sig msg",
					 ids[i]),
				 0);
		size_t siglen = 0;
		uint8_t *sig = cli_read(dir, "theirs.sig", &siglen);
		assert_int_equal(crypto_sm2_verify(pub, i == 0 ? NULL : ids[i], msg, sizeof(msg) - 1, sig,
						   siglen),
				 0);
		assert_int_equal(crypto_sm2_verify(priv, ids[i], msg, sizeof(msg) - 1, sig, siglen), 0);
		assert_int_equal(crypto_sm2_verify(pub, ids[1 - i], msg, sizeof(msg) - 1, sig, siglen),
				 -EBADMSG);
		free(sig);
		/* The key loaded from the CLI's file signs for the CLI. */
		uint8_t mine[CRYPTO_SM2_SIG_DER_MAX];
		size_t minelen = 0;
		assert_int_equal(crypto_sm2_sign(priv, ids[i], msg, sizeof(msg) - 1, mine, &minelen), 0);
		cli_write(dir, "mine.sig", mine, minelen);
		assert_int_equal(cli_run(dir, "openssl dgst -sm3 -verify pub.pem -sigopt distid:%s "
					      "-signature mine.sig msg && grep -qx 'Verified OK' out.txt",
					 ids[i]),
				 0);
	}
	crypto_sm2_key_free(pub);
	crypto_sm2_key_free(priv);
	cli_tmpdir_free(dir);
}

/* ---- encryption interoperability with the openssl CLI ---- */

static void test_cli_encrypt_interop(void **state)
{
	char *dir = cli_tmpdir();
	const char secret[] = "a wrapped key, 32 bytes or so...";
	cli_write(dir, "plain", secret, sizeof(secret) - 1);
	assert_int_equal(cli_run(dir, "openssl genpkey -algorithm SM2 -out key.pem && "
				      "openssl pkey -in key.pem -pubout -out pub.pem"),
			 0);
	crypto_sm2_key *pub = load_file(dir, "pub.pem", false);
	crypto_sm2_key *priv = load_file(dir, "key.pem", true);

	/* This module encrypts, the CLI decrypts. */
	uint8_t *ct = NULL;
	size_t ctlen = 0;
	assert_int_equal(crypto_sm2_encrypt(pub, secret, sizeof(secret) - 1, &ct, &ctlen), 0);
	cli_write(dir, "mine.ct", ct, ctlen);
	free(ct);
	assert_int_equal(cli_run(dir, "openssl pkeyutl -decrypt -inkey key.pem -in mine.ct "
				      "-out mine.pt && cmp -s mine.pt plain"),
			 0);

	/* The CLI encrypts, this module decrypts. */
	assert_int_equal(cli_run(dir, "openssl pkeyutl -encrypt -pubin -inkey pub.pem -in plain "
				      "-out theirs.ct"),
			 0);
	size_t len = 0, ptlen = 0;
	uint8_t *theirs = cli_read(dir, "theirs.ct", &len), *pt = NULL;
	assert_int_equal(crypto_sm2_decrypt(priv, theirs, len, &pt, &ptlen), 0);
	assert_int_equal(ptlen, sizeof(secret) - 1);
	assert_memory_equal(pt, secret, ptlen);
	crypto_free_secret(pt, ptlen);
	free(theirs);
	crypto_sm2_key_free(pub);
	crypto_sm2_key_free(priv);
	cli_tmpdir_free(dir);
}

/* ---- no OpenSSL errors left behind ---- */

static void test_error_queue_clean(void **state)
{
	/* Failures must not leave errors in this thread's OpenSSL queue, where
	 * a later, unrelated call would find them. */
	crypto_sm2_key *key = generate(), *out = NULL;
	uint8_t sig[CRYPTO_SM2_SIG_DER_MAX] = {0x30, 0x00}, point[65] = {0x04}, r[32], s[32];
	uint8_t *plain = NULL;
	size_t plainlen = 0;
	static const uint8_t junk[] = {0x30, 0x03, 0x02, 0x01, 0x01};
	ERR_clear_error();
	assert_int_equal(crypto_sm2_verify(key, NULL, "m", 1, sig, 2), -EBADMSG);
	assert_int_equal(ERR_peek_error(), 0);
	assert_int_equal(crypto_sm2_load_private_pem("junk", 4, &out), -EINVAL);
	assert_int_equal(ERR_peek_error(), 0);
	assert_int_equal(crypto_sm2_load_public_pem("junk", 4, &out), -EINVAL);
	assert_int_equal(ERR_peek_error(), 0);
	assert_int_equal(crypto_sm2_from_public_point(point, &out), -EINVAL);
	assert_int_equal(ERR_peek_error(), 0);
	assert_int_equal(crypto_sm2_decrypt(key, junk, sizeof(junk), &plain, &plainlen), -EBADMSG);
	assert_int_equal(ERR_peek_error(), 0);
	assert_int_equal(crypto_sm2_sig_der_to_rs(junk, sizeof(junk) - 1, r, s), -EINVAL);
	assert_int_equal(ERR_peek_error(), 0);
	assert_int_equal(crypto_sm2_verify_digest(key, r, junk, sizeof(junk)), -EBADMSG);
	assert_int_equal(ERR_peek_error(), 0);
	crypto_sm2_key_free(key);
}

/* ---- one key, several threads ---- */

struct thread_arg {
	const crypto_sm2_key *key;
	int failures;
};

static void *sign_verify_loop(void *p)
{
	struct thread_arg *arg = p;
	for (int i = 0; i < 200; i++) {
		uint8_t sig[CRYPTO_SM2_SIG_DER_MAX];
		size_t siglen = 0;
		if (crypto_sm2_sign(arg->key, NULL, &i, sizeof(i), sig, &siglen) != 0 ||
		    crypto_sm2_verify(arg->key, NULL, &i, sizeof(i), sig, siglen) != 0 ||
		    crypto_sm2_verify(arg->key, "other", &i, sizeof(i), sig, siglen) != -EBADMSG)
			arg->failures++;
	}
	return NULL;
}

static void test_threads_share_key(void **state)
{
	crypto_sm2_key *key = generate();
	pthread_t t[4];
	struct thread_arg args[4];
	for (int i = 0; i < 4; i++) {
		args[i] = (struct thread_arg){key, 0};
		assert_int_equal(pthread_create(&t[i], NULL, sign_verify_loop, &args[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		assert_int_equal(pthread_join(t[i], NULL), 0);
		assert_int_equal(args[i].failures, 0);
	}
	crypto_sm2_key_free(key);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sign_verify),
		cmocka_unit_test(test_z_and_digest),
		cmocka_unit_test(test_pem_roundtrip),
		cmocka_unit_test(test_pem_bad),
		cmocka_unit_test(test_pem_private_checked),
		cmocka_unit_test(test_point_roundtrip),
		cmocka_unit_test(test_scalar_roundtrip),
		cmocka_unit_test(test_key_ref),
		cmocka_unit_test(test_fingerprint),
		cmocka_unit_test(test_encrypt_decrypt),
		cmocka_unit_test(test_sig_der_rs),
		cmocka_unit_test(test_cipher_der_parts),
		cmocka_unit_test(test_cli_key_forms),
		cmocka_unit_test(test_cli_non_sm2_refused),
		cmocka_unit_test(test_cli_sign_interop),
		cmocka_unit_test(test_cli_encrypt_interop),
		cmocka_unit_test(test_error_queue_clean),
		cmocka_unit_test(test_threads_share_key),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
