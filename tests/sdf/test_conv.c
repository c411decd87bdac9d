/* Unit tests of the SDF structure conversions (public key <-> point,
 * ECCSignature <-> DER, ECCCipher <-> DER) and of the library-side hash,
 * with and without Z, against crypto_sm2_z and crypto_sm3. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "sdf/sdf_internal.h"

static void test_public_key(void **state)
{
	crypto_sm2_key *key;
	uint8_t point[65], back[65];
	assert_int_equal(crypto_sm2_generate(&key), 0);
	assert_int_equal(crypto_sm2_public_point(key, point), 0);
	ECCrefPublicKey pub;
	assert_int_equal(sdf_pub_from_point(point, &pub), 0);
	assert_int_equal(pub.bits, 256);
	static const uint8_t zeros[32];
	assert_memory_equal(pub.x, zeros, 32);
	assert_memory_equal(pub.y, zeros, 32);
	assert_memory_equal(pub.x + 32, point + 1, 32);
	assert_memory_equal(pub.y + 32, point + 33, 32);
	assert_int_equal(sdf_pub_to_point(&pub, back), 0);
	assert_memory_equal(back, point, 65);

	ECCrefPublicKey bad = pub;
	bad.bits = 512;
	assert_int_equal(sdf_pub_to_point(&bad, back), -EINVAL);
	bad = pub;
	bad.x[0] = 1;
	assert_int_equal(sdf_pub_to_point(&bad, back), -EINVAL);
	bad = pub;
	bad.y[31] = 1;
	assert_int_equal(sdf_pub_to_point(&bad, back), -EINVAL);
	assert_int_equal(sdf_pub_to_point(NULL, back), -EINVAL);
	point[0] = 0x02;
	assert_int_equal(sdf_pub_from_point(point, &pub), -EINVAL);
	crypto_sm2_key_free(key);
}

static void test_signature(void **state)
{
	crypto_sm2_key *key;
	uint8_t der[CRYPTO_SM2_SIG_DER_MAX], der2[CRYPTO_SM2_SIG_DER_MAX];
	size_t len, len2;
	assert_int_equal(crypto_sm2_generate(&key), 0);
	for (int i = 0; i < 16; i++) { /* some r or s with a leading zero byte */
		assert_int_equal(crypto_sm2_sign(key, NULL, "msg", 3, der, &len), 0);
		ECCSignature sig;
		assert_int_equal(sdf_sig_from_der(der, len, &sig), 0);
		static const uint8_t zeros[32];
		assert_memory_equal(sig.r, zeros, 32);
		assert_memory_equal(sig.s, zeros, 32);
		assert_int_equal(sdf_sig_to_der(&sig, der2, &len2), 0);
		assert_int_equal(len2, len);
		assert_memory_equal(der2, der, len);
		uint8_t rs[64];
		assert_int_equal(sdf_sig_to_rs(&sig, rs), 0);
		assert_memory_equal(rs, sig.r + 32, 32);
		ECCSignature sig2;
		sdf_sig_from_rs(rs, &sig2);
		assert_memory_equal(&sig2, &sig, sizeof(sig));
		sig.s[5] = 1;
		assert_int_equal(sdf_sig_to_der(&sig, der2, &len2), -EINVAL);
	}
	der[0] ^= 0xff;
	ECCSignature sig;
	assert_int_equal(sdf_sig_from_der(der, len, &sig), -EINVAL);
	crypto_sm2_key_free(key);
}

static void test_cipher(void **state)
{
	crypto_sm2_key *key;
	uint8_t *der, *der2, *plain;
	size_t len, len2, plen;
	static const char msg[] = "sixteen byte key";
	assert_int_equal(crypto_sm2_generate(&key), 0);
	assert_int_equal(crypto_sm2_encrypt(key, msg, 16, &der, &len), 0);
	ECCCipher *c = calloc(1, ECCCIPHER_SIZE(16));
	assert_non_null(c);
	assert_int_equal(sdf_cipher_from_der(der, len, 15, c), -EINVAL); /* C too small */
	assert_int_equal(sdf_cipher_from_der(der, len, 16, c), 0);
	assert_int_equal(c->L, 16);
	assert_int_equal(sdf_cipher_to_der(c, &der2, &len2), 0);
	assert_int_equal(len2, len);
	assert_memory_equal(der2, der, len);
	assert_int_equal(crypto_sm2_decrypt(key, der2, len2, &plain, &plen), 0);
	assert_int_equal(plen, 16);
	assert_memory_equal(plain, msg, 16);
	crypto_free_secret(plain, plen);
	free(der2);
	c->x[0] = 1;
	assert_int_equal(sdf_cipher_to_der(c, &der2, &len2), -EINVAL);
	c->x[0] = 0;
	c->L = 0;
	assert_int_equal(sdf_cipher_to_der(c, &der2, &len2), -EINVAL);
	assert_int_equal(sdf_cipher_from_der(der, len - 1, 16, c), -EINVAL);
	free(der);
	free(c);
	crypto_sm2_key_free(key);
}

static void test_hash(void **state)
{
	static const char msg[] = "message digest";
	uint8_t out[32], expect[32], z[32];
	struct sdf_hash h = {0};
	assert_int_equal(sdf_hash_update(&h, msg, 3), -EPERM);
	assert_int_equal(sdf_hash_final(&h, out), -EPERM);

	/* Without a key: plain SM3, fed in pieces. */
	assert_int_equal(sdf_hash_init(&h, NULL, NULL, 0), 0);
	assert_int_equal(sdf_hash_update(&h, msg, 5), 0);
	assert_int_equal(sdf_hash_update(&h, msg + 5, sizeof(msg) - 1 - 5), 0);
	assert_int_equal(sdf_hash_final(&h, out), 0);
	assert_int_equal(crypto_sm3(msg, sizeof(msg) - 1, expect), 0);
	assert_memory_equal(out, expect, 32);
	assert_int_equal(sdf_hash_update(&h, msg, 3), -EPERM); /* finished */

	/* With a key: SM3(Z || M), default ID and a given one. */
	crypto_sm2_key *key;
	uint8_t point[65], zm[32 + sizeof(msg) - 1];
	ECCrefPublicKey pub;
	assert_int_equal(crypto_sm2_generate(&key), 0);
	assert_int_equal(crypto_sm2_public_point(key, point), 0);
	assert_int_equal(sdf_pub_from_point(point, &pub), 0);
	static const char *const ids[] = {NULL, "1234567812345678", "alice@example"};
	for (size_t i = 0; i < 3; i++) {
		const char *id = ids[i];
		assert_int_equal(sdf_hash_init(&h, &pub, (const uint8_t *)id, id ? strlen(id) : 0), 0);
		assert_int_equal(sdf_hash_update(&h, msg, sizeof(msg) - 1), 0);
		assert_int_equal(sdf_hash_final(&h, out), 0);
		assert_int_equal(crypto_sm2_z(key, id, z), 0);
		memcpy(zm, z, 32);
		memcpy(zm + 32, msg, sizeof(msg) - 1);
		assert_int_equal(crypto_sm3(zm, sizeof(zm), expect), 0);
		assert_memory_equal(out, expect, 32);
		/* and the signature over it verifies as a signature over msg */
		uint8_t sig[CRYPTO_SM2_SIG_DER_MAX];
		size_t slen;
		assert_int_equal(crypto_sm2_sign_digest(key, out, sig, &slen), 0);
		assert_int_equal(crypto_sm2_verify(key, id, msg, sizeof(msg) - 1, sig, slen), 0);
	}
	/* Init restarts a hash in progress. */
	assert_int_equal(sdf_hash_init(&h, NULL, NULL, 0), 0);
	assert_int_equal(sdf_hash_update(&h, "junk", 4), 0);
	assert_int_equal(sdf_hash_init(&h, NULL, NULL, 0), 0);
	assert_int_equal(sdf_hash_final(&h, out), 0);
	assert_int_equal(crypto_sm3("", 0, expect), 0);
	assert_memory_equal(out, expect, 32);
	/* Bad IDs and keys. */
	assert_int_equal(sdf_hash_init(&h, &pub, (const uint8_t *)"a\0b", 3), -EINVAL);
	pub.bits = 0;
	assert_int_equal(sdf_hash_init(&h, &pub, NULL, 0), -EINVAL);
	pub.bits = 256;
	pub.y[63] ^= 1; /* off the curve */
	assert_int_equal(sdf_hash_init(&h, &pub, NULL, 0), -EINVAL);
	assert_null(h.ctx);
	crypto_sm2_key_free(key);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_public_key),
		cmocka_unit_test(test_signature),
		cmocka_unit_test(test_cipher),
		cmocka_unit_test(test_hash),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
