/*
 * ct_sm2: constant-time check of the module's own SM2 code (the ctgrind
 * technique). Run under `valgrind --error-exitcode=1`: the private scalar
 * (and (1 + d)^-1 derived from it) and the signing / encryption nonces are
 * marked undefined with VALGRIND_MAKE_MEM_UNDEFINED, so Memcheck reports
 * every branch and every memory index that depends on them. Signing,
 * decryption, encryption and key derivation run on them; outputs are made
 * defined again before they are compared. The code under test marks what
 * the protocol reveals (r, s, the ciphertext, the yes/no of a rejection or
 * of a failed check) as defined itself (sm2_ct_declassify).
 * On x86-64 the rounds alternate the two field arithmetic paths (the
 * mulx/adx assembly and the portable C): Valgrind hides ADX from cpuid, so
 * the assembly is selected by hand there (Valgrind runs the instructions),
 * and outside Valgrind only when the processor has them.
 * Without Valgrind the program still runs and checks the results.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <valgrind/memcheck.h>

#include "crypto/crypto.h"
#include "crypto/crypto_internal.h"

#define ROUNDS 4

static int failures;

static void check(bool ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "ct_sm2: %s failed\n", what);
		failures++;
	}
}

static void secret(const void *p, size_t len)
{
	(void)VALGRIND_MAKE_MEM_UNDEFINED(p, len);
}

static void public(const void *p, size_t len)
{
	(void)VALGRIND_MAKE_MEM_DEFINED(p, len);
}

/* Encryption to fk with a secret nonce, decryption by fk (whose secret is
 * marked undefined by the caller), and a decryption with a tampered C3,
 * which fails in constant time up to the outcome. */
static void encrypt_decrypt(const struct sm2_fast_key *fk, uint8_t fill)
{
	uint8_t k[32], msg[48], c[48], plain[48], x[32], y[32], hash[32];
	memset(msg, fill, sizeof(msg));
	check(crypto_random(k, 32) == 0, "random");
	k[0] &= 0x7f;
	k[31] |= 1;
	secret(k, sizeof(k));
	int rc = sm2_fast_encrypt(fk, msg, sizeof(msg), k, x, y, hash, c);
	public(&rc, sizeof(rc));
	check(rc == 0, "encrypt");
	rc = sm2_fast_decrypt(fk, x, y, hash, c, sizeof(c), plain);
	public(&rc, sizeof(rc));
	public(plain, sizeof(plain));
	check(rc == 0 && memcmp(plain, msg, sizeof(msg)) == 0, "decrypt");
	hash[0] ^= 1;
	rc = sm2_fast_decrypt(fk, x, y, hash, c, sizeof(c), plain);
	public(&rc, sizeof(rc));
	check(rc == -EBADMSG, "decrypt (tampered)");
}

int main(void)
{
#if SM2_HAVE_X86_ASM
	bool adx = sm2_fe_use_adx || RUNNING_ON_VALGRIND;
#else
	bool adx = false;
#endif
	for (int round = 0; round < ROUNDS; round++) {
#if SM2_HAVE_X86_ASM
		sm2_fe_force_adx(adx && round % 2 == 0);
#endif
		/* key derivation from a secret d */
		uint8_t d[32], k[32], e[32], r[32], s[32];
		struct sm2_fast_key fk;
		check(crypto_random(d, 32) == 0 && crypto_random(e, 32) == 0, "random");
		d[0] &= 0x7f; /* in [1, n-2] */
		d[31] |= 1;
		secret(d, sizeof(d));
		int rc = sm2_fast_key_set_private(&fk, d);
		public(&rc, sizeof(rc));
		check(rc == 0, "key derivation");
		/* the public point was made defined by the code; d, d_m and
		 * dinv_m stay secret */

		/* signing with a secret nonce */
		check(crypto_random(k, 32) == 0, "random");
		k[0] &= 0x7f;
		k[31] |= 1;
		secret(k, sizeof(k));
		rc = sm2_fast_sign(&fk, e, k, r, s);
		public(&rc, sizeof(rc));
		public(r, sizeof(r));
		public(s, sizeof(s));
		check(rc == 0 || rc == -EAGAIN, "sign");
		if (rc == 0)
			check(sm2_fast_verify(&fk, NULL, e, r, s) == 0, "verify");
		/* signing with a random nonce */
		rc = sm2_fast_sign(&fk, e, NULL, r, s);
		public(&rc, sizeof(rc));
		check(rc == 0 && sm2_fast_verify(&fk, NULL, e, r, s) == 0, "sign (random nonce)");

		encrypt_decrypt(&fk, (uint8_t)(0x5a + round));
		sm2_fast_key_wipe(&fk);
	}

	/* d = n - 6: the last signed digit makes the last addition of d C1 a
	 * doubling, which the code selects with a mask; same code path, but
	 * checked with that key too (both field paths) */
	for (int path = 0; path < 2; path++) {
#if SM2_HAVE_X86_ASM
		sm2_fe_force_adx(adx && path == 0);
#endif
		sm2_u256 nm6 = SM2_N, six = {{6, 0, 0, 0}};
		uint8_t d[32];
		struct sm2_fast_key fk;
		sm2_u256_sub(&nm6, &nm6, &six);
		sm2_u256_to_be(d, &nm6);
		secret(d, sizeof(d));
		int rc = sm2_fast_key_set_private(&fk, d);
		public(&rc, sizeof(rc));
		check(rc == 0, "key derivation (n - 6)");
		encrypt_decrypt(&fk, 0x33);
		sm2_fast_key_wipe(&fk);
	}

	/* the public API over a key whose raw secret is marked undefined:
	 * Z, SM3 of the message, DER and the dispatch on top */
#if SM2_HAVE_X86_ASM
	sm2_fe_force_adx(adx);
#endif
	crypto_sm2_key *key = NULL;
	check(crypto_sm2_generate(&key) == 0, "generate");
	secret(&key->fast.d, sizeof(key->fast.d));
	secret(&key->fast.d_m, sizeof(key->fast.d_m));
	secret(&key->fast.dinv_m, sizeof(key->fast.dinv_m));
	const char text[] = "constant time";
	uint8_t sig[CRYPTO_SM2_SIG_DER_MAX];
	size_t siglen = 0;
	int rc = crypto_sm2_sign(key, NULL, text, sizeof(text), sig, &siglen);
	public(&rc, sizeof(rc));
	check(rc == 0 && crypto_sm2_verify(key, NULL, text, sizeof(text), sig, siglen) == 0,
	      "crypto_sm2_sign");
	uint8_t *der = NULL, *out = NULL;
	size_t derlen = 0, outlen = 0;
	check(crypto_sm2_encrypt(key, text, sizeof(text), &der, &derlen) == 0, "crypto_sm2_encrypt");
	rc = crypto_sm2_decrypt(key, der, derlen, &out, &outlen);
	public(&rc, sizeof(rc));
	if (rc == 0) {
		public(out, outlen);
		check(outlen == sizeof(text) && memcmp(out, text, outlen) == 0, "crypto_sm2_decrypt");
		crypto_free_secret(out, outlen);
	} else {
		check(false, "crypto_sm2_decrypt");
	}
	free(der);
	/* make it defined again so that freeing (wiping) is not reported */
	public(&key->fast, sizeof(key->fast));
	crypto_sm2_key_free(key);

	printf("ct_sm2: %d rounds (%s), %d failures, running %s Valgrind\n", ROUNDS,
	       adx ? "assembly and portable field arithmetic" : "portable field arithmetic",
	       failures, RUNNING_ON_VALGRIND ? "under" : "without");
	return failures == 0 ? 0 : 1;
}
