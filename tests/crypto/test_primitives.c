/*
 * Unit tests of the crypto module's symmetric side: randomness and secret
 * helpers, base64, SM3, HMAC-SM3, the KDFs, SM4 and sealing. Known answers
 * come from the standards; HMAC and the KDFs are checked against the openssl
 * command-line tool at test time.
 */
#include <errno.h>
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

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

static void unhex(const char *hex, uint8_t *out, size_t len)
{
	assert_int_equal(chsm_hex_decode(hex, strlen(hex), out, len), 0);
}

static void fill_pattern(uint8_t *p, size_t len, uint8_t seed)
{
	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)(seed + 7 * i + (i >> 3));
}

/* ---- randomness, secrets, errors ---- */

static void test_random(void **state)
{
	uint8_t a[64] = {0}, b[64] = {0}, zero[64] = {0};
	assert_int_equal(crypto_random(a, sizeof(a)), 0);
	assert_int_equal(crypto_random(b, sizeof(b)), 0);
	assert_memory_not_equal(a, zero, sizeof(a));
	assert_memory_not_equal(a, b, sizeof(a));
	assert_int_equal(crypto_random(a, 0), 0);
}

static void test_wipe_memeq(void **state)
{
	uint8_t a[33], b[33], zero[33] = {0};
	fill_pattern(a, sizeof(a), 1);
	memcpy(b, a, sizeof(a));
	assert_true(crypto_memeq(a, b, sizeof(a)));
	b[32] ^= 1;
	assert_false(crypto_memeq(a, b, sizeof(a)));
	assert_true(crypto_memeq(a, b, 32));
	assert_true(crypto_memeq(NULL, NULL, 0));
	crypto_wipe(a, sizeof(a));
	assert_memory_equal(a, zero, sizeof(a));
	crypto_wipe(NULL, 0);
	crypto_free_secret(NULL, 10);
	uint8_t *s = malloc(16);
	assert_non_null(s);
	crypto_free_secret(s, 16);
}

static void test_strerror(void **state)
{
	static const int codes[] = {-EINVAL, -EBADMSG, -ENOMEM, -EIO};
	for (size_t i = 0; i < ARRAY_SIZE(codes); i++) {
		const char *s = crypto_strerror(codes[i]);
		assert_non_null(s);
		assert_string_not_equal(s, crypto_strerror(-12345));
		for (size_t j = 0; j < i; j++)
			assert_string_not_equal(s, crypto_strerror(codes[j]));
	}
}

/* ---- base64 ---- */

static void test_base64_vectors(void **state)
{
	/* RFC 4648 section 10 */
	static const struct {
		const char *plain, *b64;
	} v[] = {
		{"", ""},
		{"f", "Zg=="},
		{"fo", "Zm8="},
		{"foo", "Zm9v"},
		{"foob", "Zm9vYg=="},
		{"fooba", "Zm9vYmE="},
		{"foobar", "Zm9vYmFy"},
		{"\xff\xfe\xfd", "//79"},
		{"\xfb\xff", "+/8="},
	};
	for (size_t i = 0; i < ARRAY_SIZE(v); i++) {
		char *b64 = NULL;
		uint8_t *data = NULL;
		size_t len = 99;
		assert_int_equal(crypto_base64_encode(v[i].plain, strlen(v[i].plain), &b64), 0);
		assert_string_equal(b64, v[i].b64);
		assert_int_equal(crypto_base64_decode(v[i].b64, strlen(v[i].b64), &data, &len), 0);
		assert_int_equal(len, strlen(v[i].plain));
		assert_memory_equal(data, v[i].plain, len);
		free(b64);
		free(data);
	}
}

static void test_base64_roundtrip(void **state)
{
	uint8_t in[100];
	fill_pattern(in, sizeof(in), 0xa5);
	for (size_t n = 0; n <= sizeof(in); n++) {
		char *b64 = NULL;
		uint8_t *out = NULL;
		size_t outlen = 0;
		assert_int_equal(crypto_base64_encode(in, n, &b64), 0);
		assert_int_equal(strlen(b64), (n + 2) / 3 * 4);
		assert_int_equal(crypto_base64_decode(b64, strlen(b64), &out, &outlen), 0);
		assert_int_equal(outlen, n);
		assert_memory_equal(out, in, n);
		free(b64);
		free(out);
	}
}

static void test_base64_bad(void **state)
{
	static const struct {
		const char *b64;
		size_t len; /* 0: strlen */
	} bad[] = {
		{"Zg", 0},           /* missing padding */
		{"Zg=", 0},          /* short padding */
		{"Z===", 0},         /* three padding characters */
		{"====", 0},         /* padding only */
		{"Zg==Zg==", 0},     /* padding in the middle */
		{"Zm9v YmFy", 0},    /* space */
		{"Zm9v\nYmFy", 0},   /* line break */
		{"Zm9vYmFy\n", 0},   /* trailing newline */
		{" Zm9vYmFy", 0},    /* leading space */
		{"Zm9\tv", 0},       /* tab */
		{"Zm-v", 0},         /* base64url character */
		{"Zm_v", 0},         /* base64url character */
		{"Zm9v!A==", 0},     /* bad character */
		{"Zm\0v", 4},        /* NUL */
		{"Zm\xc3\xa9", 0},   /* non-ASCII */
		{"=Zm9", 0},         /* leading padding */
		{"Zg=a", 0},         /* padding then data */
		{"Zh==", 0},         /* non-canonical trailing bits */
		{"Zm9=", 0},         /* non-canonical trailing bits */
		{"Zm9vYg", 0},       /* unpadded */
		{"Zm9vY", 0},        /* length 5 */
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		uint8_t *data = (uint8_t *)"untouched";
		size_t len = 12345;
		size_t b64len = bad[i].len ? bad[i].len : strlen(bad[i].b64);
		print_message("case %zu\n", i);
		assert_int_equal(crypto_base64_decode(bad[i].b64, b64len, &data, &len), -EINVAL);
		assert_string_equal((char *)data, "untouched");
		assert_int_equal(len, 12345);
	}
}

/* ---- SM3 ---- */

static void test_sm3_vectors(void **state)
{
	static const struct {
		const char *msg, *hex;
	} v[] = {
		/* GB/T 32905 appendix A */
		{"abc", "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"},
		{"abcdabcdabcdabcdabcdabcdabcdabcdabcdabcdabcdabcdabcdabcdabcdabcd",
		 "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"},
		{"", "1ab21d8355cfa17f8e61194831e81a8f22bec8c728fefb747ed035eb5082aa2b"},
	};
	for (size_t i = 0; i < ARRAY_SIZE(v); i++) {
		char hex[CRYPTO_SM3_HEX_LEN + 1];
		uint8_t digest[CRYPTO_SM3_LEN], expect[CRYPTO_SM3_LEN];
		assert_int_equal(crypto_sm3_hex(v[i].msg, strlen(v[i].msg), hex), 0);
		assert_string_equal(hex, v[i].hex);
		assert_int_equal(crypto_sm3(v[i].msg, strlen(v[i].msg), digest), 0);
		unhex(v[i].hex, expect, sizeof(expect));
		assert_memory_equal(digest, expect, sizeof(expect));
	}
	assert_int_equal(crypto_sm3(NULL, 0, (uint8_t[32]){0}), 0);
	assert_int_equal(crypto_sm3(NULL, 1, (uint8_t[32]){0}), -EINVAL);
}

static void test_sm3_streaming(void **state)
{
	uint8_t data[1000], expect[CRYPTO_SM3_LEN], got[CRYPTO_SM3_LEN];
	fill_pattern(data, sizeof(data), 3);
	assert_int_equal(crypto_sm3(data, sizeof(data), expect), 0);
	static const size_t splits[][3] = {
		{0, 0, 0}, {1, 2, 3}, {63, 64, 65}, {64, 128, 192}, {500, 500, 999}, {7, 7, 1000},
	};
	crypto_sm3_ctx *ctx = NULL;
	assert_int_equal(crypto_sm3_new(&ctx), 0);
	for (size_t i = 0; i < ARRAY_SIZE(splits); i++) {
		size_t prev = 0;
		for (size_t j = 0; j < 3; j++) {
			assert_int_equal(crypto_sm3_update(ctx, data + prev, splits[i][j] - prev), 0);
			prev = splits[i][j];
		}
		assert_int_equal(crypto_sm3_update(ctx, data + prev, sizeof(data) - prev), 0);
		assert_int_equal(crypto_sm3_final(ctx, got), 0);
		assert_memory_equal(got, expect, sizeof(got));
		/* Finished: refuses more input until reset. */
		assert_int_equal(crypto_sm3_update(ctx, data, 1), -EINVAL);
		assert_int_equal(crypto_sm3_final(ctx, got), -EINVAL);
		assert_int_equal(crypto_sm3_reset(ctx), 0);
	}
	/* Reset in the middle discards what came before. */
	assert_int_equal(crypto_sm3_update(ctx, "junk", 4), 0);
	assert_int_equal(crypto_sm3_reset(ctx), 0);
	assert_int_equal(crypto_sm3_update(ctx, "abc", 3), 0);
	assert_int_equal(crypto_sm3_final(ctx, got), 0);
	assert_int_equal(crypto_sm3("abc", 3, expect), 0);
	assert_memory_equal(got, expect, sizeof(got));
	crypto_sm3_free(ctx);
	crypto_sm3_free(NULL);
}

/* ---- HMAC-SM3 ---- */

static void test_hmac_sm3_cli(void **state)
{
	char *dir = cli_tmpdir();
	static const size_t keylens[] = {1, 16, 32, 63, 64, 65, 100};
	static const size_t datalens[] = {0, 1, 55, 64, 200};
	for (size_t k = 0; k < ARRAY_SIZE(keylens); k++) {
		for (size_t d = 0; d < ARRAY_SIZE(datalens); d++) {
			uint8_t key[100], data[200], mac[CRYPTO_SM3_LEN];
			fill_pattern(key, keylens[k], (uint8_t)k);
			fill_pattern(data, datalens[d], (uint8_t)(d + 100));
			cli_write(dir, "data", data, datalens[d]);
			char *hexkey = cli_hex(key, keylens[k]);
			assert_int_equal(cli_run(dir, "openssl mac -digest SM3 -macopt hexkey:%s "
						      "-in data -binary -out mac HMAC",
						 hexkey),
					 0);
			free(hexkey);
			size_t len = 0;
			uint8_t *expect = cli_read(dir, "mac", &len);
			assert_int_equal(len, CRYPTO_SM3_LEN);
			assert_int_equal(crypto_hmac_sm3(key, keylens[k], data, datalens[d], mac), 0);
			assert_memory_equal(mac, expect, CRYPTO_SM3_LEN);

			/* Streaming in two pieces gives the same MAC. */
			crypto_hmac_ctx *ctx = NULL;
			size_t half = datalens[d] / 2;
			assert_int_equal(crypto_hmac_sm3_new(key, keylens[k], &ctx), 0);
			assert_int_equal(crypto_hmac_sm3_update(ctx, data, half), 0);
			assert_int_equal(crypto_hmac_sm3_update(ctx, data + half, datalens[d] - half), 0);
			assert_int_equal(crypto_hmac_sm3_final(ctx, mac), 0);
			assert_memory_equal(mac, expect, CRYPTO_SM3_LEN);
			assert_int_equal(crypto_hmac_sm3_final(ctx, mac), -EINVAL);
			assert_int_equal(crypto_hmac_sm3_update(ctx, data, 1), -EINVAL);
			crypto_hmac_sm3_free(ctx);
			free(expect);
		}
	}
	cli_tmpdir_free(dir);
}

static void test_hmac_sm3_empty_key(void **state)
{
	/* HMAC pads the key with zeros to the block size: the empty key and
	 * 64 zero bytes are the same key. */
	uint8_t zeros[64] = {0}, a[CRYPTO_SM3_LEN], b[CRYPTO_SM3_LEN];
	assert_int_equal(crypto_hmac_sm3(NULL, 0, "msg", 3, a), 0);
	assert_int_equal(crypto_hmac_sm3(zeros, sizeof(zeros), "msg", 3, b), 0);
	assert_memory_equal(a, b, sizeof(a));
	assert_int_equal(crypto_hmac_sm3(zeros, 1, "msg", 3, b), 0);
	assert_memory_equal(a, b, sizeof(a));
	assert_int_equal(crypto_hmac_sm3(zeros, 1, "msh", 3, b), 0);
	assert_memory_not_equal(a, b, sizeof(a));
	assert_int_equal(crypto_hmac_sm3(NULL, 1, "msg", 3, b), -EINVAL);
	crypto_hmac_sm3_free(NULL);
}

/* ---- KDFs ---- */

/* The counter-mode KDF computed by hand from its documented definition. */
static void kdf_by_hand(const uint8_t *key, size_t keylen, const char *label,
			const uint8_t *context, size_t contextlen, uint8_t *out, size_t outlen)
{
	uint8_t msg[512], block[CRYPTO_SM3_LEN];
	size_t labellen = strlen(label);
	uint32_t bits = (uint32_t)(outlen * 8);
	for (uint32_t i = 1; outlen > 0; i++) {
		size_t n = 0;
		msg[n++] = (uint8_t)(i >> 24);
		msg[n++] = (uint8_t)(i >> 16);
		msg[n++] = (uint8_t)(i >> 8);
		msg[n++] = (uint8_t)i;
		memcpy(msg + n, label, labellen);
		n += labellen;
		msg[n++] = 0x00;
		memcpy(msg + n, context, contextlen);
		n += contextlen;
		msg[n++] = (uint8_t)(bits >> 24);
		msg[n++] = (uint8_t)(bits >> 16);
		msg[n++] = (uint8_t)(bits >> 8);
		msg[n++] = (uint8_t)bits;
		assert_int_equal(crypto_hmac_sm3(key, keylen, msg, n, block), 0);
		size_t take = outlen < sizeof(block) ? outlen : sizeof(block);
		memcpy(out, block, take);
		out += take;
		outlen -= take;
	}
}

static void test_kdf_sm3(void **state)
{
	char *dir = cli_tmpdir();
	static const struct {
		const char *label, *context;
		size_t keylen, outlen;
	} v[] = {
		{"seal-enc", "", 32, 16},
		{"seal-mac", "", 32, 32},
		{"wrap", "vsm-01", 32, 48},
		{"x", "some context", 16, 100},
		{"", "", 1, 1},
		{"label", "ctx", 64, 33},
	};
	for (size_t i = 0; i < ARRAY_SIZE(v); i++) {
		uint8_t key[64], got[100], expect[100];
		fill_pattern(key, v[i].keylen, (uint8_t)(i * 13));
		const uint8_t *ctx = (const uint8_t *)v[i].context;
		size_t ctxlen = strlen(v[i].context);
		assert_int_equal(crypto_kdf_sm3(key, v[i].keylen, v[i].label, ctx, ctxlen, got,
						v[i].outlen),
				 0);
		kdf_by_hand(key, v[i].keylen, v[i].label, ctx, ctxlen, expect, v[i].outlen);
		assert_memory_equal(got, expect, v[i].outlen);

		/* OpenSSL's KBKDF (counter mode, r = 32, separator, L) is the same
		 * construction: label is its salt, context its info. */
		char *hexkey = cli_hex(key, v[i].keylen);
		char *hexlabel = cli_hex(v[i].label, strlen(v[i].label));
		char *hexctx = cli_hex(ctx, ctxlen);
		assert_int_equal(cli_run(dir, "openssl kdf -keylen %zu -kdfopt mac:HMAC "
					      "-kdfopt digest:SM3 -kdfopt hexkey:%s "
					      "-kdfopt hexsalt:%s -kdfopt hexinfo:%s -binary "
					      "-out kdf KBKDF",
					 v[i].outlen, hexkey, hexlabel, hexctx),
				 0);
		size_t len = 0;
		uint8_t *cli = cli_read(dir, "kdf", &len);
		assert_int_equal(len, v[i].outlen);
		assert_memory_equal(got, cli, len);
		free(cli);
		free(hexkey);
		free(hexlabel);
		free(hexctx);
	}
	/* A longer output is not a prefix-extension of a shorter one: L is bound. */
	uint8_t a[32], b[48], key[32] = {1};
	assert_int_equal(crypto_kdf_sm3(key, 32, "l", NULL, 0, a, sizeof(a)), 0);
	assert_int_equal(crypto_kdf_sm3(key, 32, "l", NULL, 0, b, sizeof(b)), 0);
	assert_memory_not_equal(a, b, sizeof(a));
	/* NULL label is the empty label. */
	assert_int_equal(crypto_kdf_sm3(key, 32, NULL, NULL, 0, a, sizeof(a)), 0);
	assert_int_equal(crypto_kdf_sm3(key, 32, "", NULL, 0, b, sizeof(a)), 0);
	assert_memory_equal(a, b, sizeof(a));
	assert_int_equal(crypto_kdf_sm3(key, 32, "l", NULL, 0, a, 0), -EINVAL);
	assert_int_equal(crypto_kdf_sm3(key, 32, "l", NULL, 1, a, 1), -EINVAL);
	cli_tmpdir_free(dir);
}

static void test_sm2_kdf(void **state)
{
	/* The SM2 KDF is the ANSI X9.63 KDF with SM3 and no shared info. */
	char *dir = cli_tmpdir();
	static const size_t outlens[] = {1, 16, 32, 33, 64, 100};
	uint8_t z[64], got[100];
	fill_pattern(z, sizeof(z), 9);
	char *hexz = cli_hex(z, sizeof(z));
	for (size_t i = 0; i < ARRAY_SIZE(outlens); i++) {
		assert_int_equal(crypto_sm2_kdf(z, sizeof(z), got, outlens[i]), 0);
		assert_int_equal(cli_run(dir, "openssl kdf -keylen %zu -kdfopt digest:SM3 "
					      "-kdfopt hexsecret:%s -binary -out kdf X963KDF",
					 outlens[i], hexz),
				 0);
		size_t len = 0;
		uint8_t *cli = cli_read(dir, "kdf", &len);
		assert_int_equal(len, outlens[i]);
		assert_memory_equal(got, cli, len);
		free(cli);
	}
	/* First block by hand: SM3(z || 00000001). */
	uint8_t msg[68], block[32];
	memcpy(msg, z, 64);
	memcpy(msg + 64, "\0\0\0\1", 4);
	assert_int_equal(crypto_sm3(msg, sizeof(msg), block), 0);
	assert_int_equal(crypto_sm2_kdf(z, sizeof(z), got, 32), 0);
	assert_memory_equal(got, block, 32);
	assert_int_equal(crypto_sm2_kdf(z, sizeof(z), got, 0), -EINVAL);
	free(hexz);
	cli_tmpdir_free(dir);
}

static void test_pbkdf2_sm3(void **state)
{
	char *dir = cli_tmpdir();
	static const struct {
		const char *pass, *salt;
		uint32_t iter;
		size_t outlen;
	} v[] = {
		{"password", "salt", 1, 32},
		{"password", "salt", 2, 32},
		{"passphrase of the domain", "domain-name", 1000, 32},
		{"p", "0123456789abcdef", 10, 64},
		{"pass", "s", 3, 20},
	};
	for (size_t i = 0; i < ARRAY_SIZE(v); i++) {
		uint8_t got[64];
		assert_int_equal(crypto_pbkdf2_sm3(v[i].pass, strlen(v[i].pass), v[i].salt,
						   strlen(v[i].salt), v[i].iter, got, v[i].outlen),
				 0);
		assert_int_equal(cli_run(dir, "openssl kdf -keylen %zu -kdfopt digest:SM3 "
					      "-kdfopt 'pass:%s' -kdfopt 'salt:%s' "
					      "-kdfopt iter:%u -binary -out kdf PBKDF2",
					 v[i].outlen, v[i].pass, v[i].salt, v[i].iter),
				 0);
		size_t len = 0;
		uint8_t *cli = cli_read(dir, "kdf", &len);
		assert_int_equal(len, v[i].outlen);
		assert_memory_equal(got, cli, len);
		free(cli);
	}
	uint8_t out[32];
	assert_int_equal(crypto_pbkdf2_sm3("p", 1, "s", 1, 0, out, 32), -EINVAL);
	assert_int_equal(crypto_pbkdf2_sm3("p", 1, "s", 1, 1, out, 0), -EINVAL);
	assert_int_equal(crypto_pbkdf2_sm3("", 0, "", 0, 1, out, 32), 0);
	cli_tmpdir_free(dir);
}

/* ---- SM4 ---- */

static const char sm4_key_hex[] = "0123456789abcdeffedcba9876543210";

static void test_sm4_vectors(void **state)
{
	/* GB/T 32907 appendix A: example 1 and 1,000,000 encryptions. */
	uint8_t key[16], block[16], expect[16];
	unhex(sm4_key_hex, key, 16);
	memcpy(block, key, 16);
	assert_int_equal(crypto_sm4_ecb(true, key, block, 16, block), 0);
	unhex("681edf34d206965e86b3e94f536e4246", expect, 16);
	assert_memory_equal(block, expect, 16);
	assert_int_equal(crypto_sm4_ecb(false, key, block, 16, block), 0);
	assert_memory_equal(block, key, 16);

	for (int i = 0; i < 1000000; i++)
		assert_int_equal(crypto_sm4_ecb(true, key, block, 16, block), 0);
	unhex("595298c7c6fd271f0402f804c33d3f66", expect, 16);
	assert_memory_equal(block, expect, 16);
}

static void xor_block(uint8_t *dst, const uint8_t *a, const uint8_t *b)
{
	for (int i = 0; i < 16; i++)
		dst[i] = a[i] ^ b[i];
}

static void test_sm4_cbc(void **state)
{
	uint8_t key[16], iv[16], plain[80], ct[80], back[80], prev[16], blk[16];
	unhex(sm4_key_hex, key, 16);
	fill_pattern(iv, 16, 0x42);
	fill_pattern(plain, sizeof(plain), 0x10);
	assert_int_equal(crypto_sm4_cbc(true, key, iv, plain, sizeof(plain), ct), 0);
	/* Each block is ECB(P_i xor C_{i-1}). */
	memcpy(prev, iv, 16);
	for (size_t i = 0; i < sizeof(plain); i += 16) {
		xor_block(blk, plain + i, prev);
		assert_int_equal(crypto_sm4_ecb(true, key, blk, 16, blk), 0);
		assert_memory_equal(blk, ct + i, 16);
		memcpy(prev, blk, 16);
	}
	assert_int_equal(crypto_sm4_cbc(false, key, iv, ct, sizeof(ct), back), 0);
	assert_memory_equal(back, plain, sizeof(plain));
	/* In place. */
	memcpy(back, plain, sizeof(plain));
	assert_int_equal(crypto_sm4_cbc(true, key, iv, back, sizeof(back), back), 0);
	assert_memory_equal(back, ct, sizeof(ct));
	assert_int_equal(crypto_sm4_cbc(false, key, iv, back, sizeof(back), back), 0);
	assert_memory_equal(back, plain, sizeof(plain));
	assert_int_equal(crypto_sm4_cbc(true, key, iv, NULL, 0, NULL), 0);
}

static void test_sm4_bad_lengths(void **state)
{
	static const size_t lens[] = {1, 15, 17, 31, 33, 63, 65};
	uint8_t key[16] = {0}, iv[16] = {0}, buf[80] = {0};
	for (size_t i = 0; i < ARRAY_SIZE(lens); i++) {
		for (int enc = 0; enc <= 1; enc++) {
			assert_int_equal(crypto_sm4_ecb(enc, key, buf, lens[i], buf), -EINVAL);
			assert_int_equal(crypto_sm4_cbc(enc, key, iv, buf, lens[i], buf), -EINVAL);
		}
		/* CTR takes any length. */
		assert_int_equal(crypto_sm4_ctr(key, iv, buf, lens[i], buf), 0);
	}
}

static void test_sm4_ctr(void **state)
{
	uint8_t key[16], iv[16], plain[100], ct[100], back[100], ks[16], ctr[16];
	unhex(sm4_key_hex, key, 16);
	fill_pattern(iv, 16, 0x77);
	fill_pattern(plain, sizeof(plain), 0x31);
	assert_int_equal(crypto_sm4_ctr(key, iv, plain, sizeof(plain), ct), 0);
	assert_int_equal(crypto_sm4_ctr(key, iv, ct, sizeof(ct), back), 0);
	assert_memory_equal(back, plain, sizeof(plain));
	/* In place. */
	assert_int_equal(crypto_sm4_ctr(key, iv, back, sizeof(back), back), 0);
	assert_memory_equal(back, ct, sizeof(ct));
	/* Block i is P_i xor ECB(iv + i). */
	memcpy(ctr, iv, 16);
	for (size_t i = 0; i < sizeof(plain); i += 16) {
		assert_int_equal(crypto_sm4_ecb(true, key, ctr, 16, ks), 0);
		for (size_t j = 0; j < 16 && i + j < sizeof(plain); j++)
			assert_int_equal(ct[i + j], plain[i + j] ^ ks[j]);
		for (int j = 15; j >= 0 && ++ctr[j] == 0; j--)
			;
	}
}

static void test_sm4_ctr_carry(void **state)
{
	/* The counter is all 128 bits: ff..ff is followed by 00..00, and a
	 * carry out of the low 32 bits reaches the high ones. */
	static const struct {
		const char *iv, *next;
	} v[] = {
		{"ffffffffffffffffffffffffffffffff", "00000000000000000000000000000000"},
		{"000000000000000000000000ffffffff", "00000000000000000000000100000000"},
		{"0000000000000000ffffffffffffffff", "00000000000000010000000000000000"},
	};
	for (size_t i = 0; i < ARRAY_SIZE(v); i++) {
		uint8_t key[16], iv[16], next[16], zeros[32] = {0}, ks[32], expect[16];
		unhex(sm4_key_hex, key, 16);
		unhex(v[i].iv, iv, 16);
		unhex(v[i].next, next, 16);
		assert_int_equal(crypto_sm4_ctr(key, iv, zeros, 32, ks), 0);
		assert_int_equal(crypto_sm4_ecb(true, key, next, 16, expect), 0);
		assert_memory_equal(ks + 16, expect, 16);
	}
}

static void test_sm4_ctr_streaming(void **state)
{
	uint8_t key[16], iv[16], plain[300], expect[300], got[300];
	unhex(sm4_key_hex, key, 16);
	fill_pattern(iv, 16, 0xfe);
	fill_pattern(plain, sizeof(plain), 0x01);
	assert_int_equal(crypto_sm4_ctr(key, iv, plain, sizeof(plain), expect), 0);
	static const size_t pieces[][6] = {
		{1, 2, 3, 5, 7, 11}, {15, 1, 16, 17, 0, 33}, {0, 0, 299, 0, 0, 0}, {13, 13, 13, 13, 13, 13},
	};
	for (size_t i = 0; i < ARRAY_SIZE(pieces); i++) {
		crypto_sm4_ctr_ctx *ctx = NULL;
		size_t off = 0;
		assert_int_equal(crypto_sm4_ctr_new(key, iv, &ctx), 0);
		for (size_t j = 0; j < 6; j++) {
			assert_int_equal(crypto_sm4_ctr_update(ctx, plain + off, pieces[i][j], got + off), 0);
			off += pieces[i][j];
		}
		assert_int_equal(crypto_sm4_ctr_update(ctx, plain + off, sizeof(plain) - off, got + off), 0);
		assert_memory_equal(got, expect, sizeof(expect));
		crypto_sm4_ctr_free(ctx);
	}
	crypto_sm4_ctr_free(NULL);
}

/* ---- sealing ---- */

static void test_seal_roundtrip(void **state)
{
	uint8_t key[CRYPTO_SEAL_KEY_LEN];
	assert_int_equal(crypto_random(key, sizeof(key)), 0);
	static const struct {
		const char *aad, *plain;
	} v[] = {
		{"", ""}, {"", "secret"}, {"key:1", ""}, {"key:1", "a longer secret of more than one block"},
	};
	for (size_t i = 0; i < ARRAY_SIZE(v); i++) {
		uint8_t *sealed = NULL, *plain = NULL;
		size_t sealedlen = 0, plainlen = 0;
		size_t len = strlen(v[i].plain), aadlen = strlen(v[i].aad);
		assert_int_equal(crypto_seal(key, v[i].aad, aadlen, v[i].plain, len, &sealed, &sealedlen), 0);
		assert_int_equal(sealedlen, len + CRYPTO_SEAL_OVERHEAD);
		assert_int_equal(crypto_unseal(key, v[i].aad, aadlen, sealed, sealedlen, &plain, &plainlen), 0);
		assert_int_equal(plainlen, len);
		assert_memory_equal(plain, v[i].plain, len);
		crypto_free_secret(plain, plainlen);
		/* A fresh nonce each time. */
		uint8_t *again = NULL;
		size_t againlen = 0;
		assert_int_equal(crypto_seal(key, v[i].aad, aadlen, v[i].plain, len, &again, &againlen), 0);
		assert_memory_not_equal(again, sealed, 16);
		free(again);
		free(sealed);
	}
}

static void test_seal_layout(void **state)
{
	/* Rebuild the documented construction from the other primitives. */
	uint8_t key[CRYPTO_SEAL_KEY_LEN], k_enc[16], k_mac[32], tag[32];
	fill_pattern(key, sizeof(key), 0x5e);
	const char *aad = "vsm/01/key/7", *secret = "0123456789abcdefXYZ";
	size_t aadlen = strlen(aad), len = strlen(secret);
	uint8_t *sealed = NULL;
	size_t sealedlen = 0;
	assert_int_equal(crypto_seal(key, aad, aadlen, secret, len, &sealed, &sealedlen), 0);
	assert_int_equal(crypto_kdf_sm3(key, 32, "seal-enc", NULL, 0, k_enc, 16), 0);
	assert_int_equal(crypto_kdf_sm3(key, 32, "seal-mac", NULL, 0, k_mac, 32), 0);

	uint8_t plain[64];
	assert_int_equal(crypto_sm4_ctr(k_enc, sealed, sealed + 16, len, plain), 0);
	assert_memory_equal(plain, secret, len);

	uint8_t macin[256];
	size_t n = 0;
	memset(macin, 0, 8);
	macin[7] = (uint8_t)aadlen;
	n = 8;
	memcpy(macin + n, aad, aadlen);
	n += aadlen;
	memcpy(macin + n, sealed, 16 + len);
	n += 16 + len;
	assert_int_equal(crypto_hmac_sm3(k_mac, 32, macin, n, tag), 0);
	assert_memory_equal(sealed + 16 + len, tag, 32);
	free(sealed);
}

static void test_seal_tamper(void **state)
{
	uint8_t key[CRYPTO_SEAL_KEY_LEN], other[CRYPTO_SEAL_KEY_LEN];
	fill_pattern(key, sizeof(key), 1);
	fill_pattern(other, sizeof(other), 2);
	const char *aad = "ab", *secret = "top secret";
	uint8_t *sealed = NULL, *plain = (uint8_t *)"untouched";
	size_t len = 0, plainlen = 777;
	assert_int_equal(crypto_seal(key, aad, 2, secret, strlen(secret), &sealed, &len), 0);

	/* Every single-bit flip anywhere is refused. */
	for (size_t i = 0; i < len; i++) {
		for (int bit = 0; bit < 8; bit += 7) {
			sealed[i] ^= (uint8_t)(1 << bit);
			assert_int_equal(crypto_unseal(key, aad, 2, sealed, len, &plain, &plainlen), -EBADMSG);
			sealed[i] ^= (uint8_t)(1 << bit);
		}
	}
	static const struct {
		const char *aad;
		size_t aadlen, cut;
		bool other_key;
	} bad[] = {
		{"ab", 2, 1, false},   /* truncated by one */
		{"ab", 2, 32, false},  /* MAC cut off */
		{"ab", 2, 0, true},    /* wrong key */
		{"ac", 2, 0, false},   /* wrong aad */
		{"a", 1, 0, false},    /* shorter aad */
		{"", 0, 0, false},     /* no aad */
		{"abc", 3, 0, false},  /* longer aad */
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		print_message("case %zu\n", i);
		assert_int_equal(crypto_unseal(bad[i].other_key ? other : key, bad[i].aad, bad[i].aadlen,
					       sealed, len - bad[i].cut, &plain, &plainlen),
				 -EBADMSG);
	}
	/* Anything shorter than nonce and MAC is refused. */
	for (size_t cut = 0; cut < CRYPTO_SEAL_OVERHEAD; cut++)
		assert_int_equal(crypto_unseal(key, aad, 2, sealed, cut, &plain, &plainlen), -EBADMSG);

	/* Bytes cannot move between the aad and the nonce: aad "ab" || nonce[0]
	 * with the blob shifted by one does not verify. */
	uint8_t shifted_aad[3] = {'a', 'b', sealed[0]};
	assert_int_equal(crypto_unseal(key, shifted_aad, 3, sealed + 1, len - 1, &plain, &plainlen),
			 -EBADMSG);
	assert_string_equal((char *)plain, "untouched");
	assert_int_equal(plainlen, 777);
	free(sealed);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_random),
		cmocka_unit_test(test_wipe_memeq),
		cmocka_unit_test(test_strerror),
		cmocka_unit_test(test_base64_vectors),
		cmocka_unit_test(test_base64_roundtrip),
		cmocka_unit_test(test_base64_bad),
		cmocka_unit_test(test_sm3_vectors),
		cmocka_unit_test(test_sm3_streaming),
		cmocka_unit_test(test_hmac_sm3_cli),
		cmocka_unit_test(test_hmac_sm3_empty_key),
		cmocka_unit_test(test_kdf_sm3),
		cmocka_unit_test(test_sm2_kdf),
		cmocka_unit_test(test_pbkdf2_sm3),
		cmocka_unit_test(test_sm4_vectors),
		cmocka_unit_test(test_sm4_cbc),
		cmocka_unit_test(test_sm4_bad_lengths),
		cmocka_unit_test(test_sm4_ctr),
		cmocka_unit_test(test_sm4_ctr_carry),
		cmocka_unit_test(test_sm4_ctr_streaming),
		cmocka_unit_test(test_seal_roundtrip),
		cmocka_unit_test(test_seal_layout),
		cmocka_unit_test(test_seal_tamper),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
