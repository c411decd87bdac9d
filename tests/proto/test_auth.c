/*
 * Unit tests of proto/auth: the exact string to sign and response string,
 * nonces, sign/verify round trips, and a table of every way a request's
 * authentication can be wrong with the exact code it gets (PROFILE.md §5).
 */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "crypto/crypto.h"
#include "proto/auth.h"
#include "proto/codes.h"

/* 2026-01-01T00:00:00Z: the CHSM's clock in every table case. */
#define NOW     1767225600000LL
#define METHOD  "POST"
#define TARGET  "/gmt0088/v1/vsms/v1/start?x=1"
#define BODY    "{\"callbackUrl\":\"https://platform.example/cb\"}"
#define NONCE   "nonce-0123456789abcdef"
#define CODE    "ABCDEFGHJKLMNPQRSTUVWXYZ23"
#define WRONG_CODE "ABCDEFGHJKLMNPQRSTUVWXYZ24"
#define OTHER_FP "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define NONCE15 "abcdefghijklmno"
#define NONCE16 "abcdefghijklmnop"
#define NONCE64 "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"
#define NONCE65 NONCE64 "a"
#define A16     "AAAAAAAAAAAAAAAA"
#define LONG65  "0123456789012345678901234567890123456789012345678901234567890123x"

static crypto_sm2_key *platform_key, *other_key, *device_key;
static char platform_fp[CRYPTO_SM3_HEX_LEN + 1], device_fp[CRYPTO_SM3_HEX_LEN + 1];

static int group_setup(void **state)
{
	if (crypto_sm2_generate(&platform_key) < 0 || crypto_sm2_generate(&other_key) < 0 ||
	    crypto_sm2_generate(&device_key) < 0)
		return -1;
	if (crypto_sm2_fingerprint(platform_key, platform_fp) < 0 ||
	    crypto_sm2_fingerprint(device_key, device_fp) < 0)
		return -1;
	return 0;
}

static int group_teardown(void **state)
{
	crypto_sm2_key_free(platform_key);
	crypto_sm2_key_free(other_key);
	crypto_sm2_key_free(device_key);
	return 0;
}

/* ---- a nonce store for the tests ---- */

struct nonce_store {
	char seen[8][CHSM_NONCE_MAX_LEN + 1];
	size_t n;
	int calls;
	bool fail;
	int64_t last_ts;
};

static int store_use(void *ctx, const char *nonce, int64_t timestamp_ms)
{
	struct nonce_store *s = ctx;
	s->calls++;
	s->last_ts = timestamp_ms;
	if (s->fail)
		return -EIO;
	for (size_t i = 0; i < s->n; i++)
		if (strcmp(s->seen[i], nonce) == 0)
			return 1;
	assert_true(s->n < 8);
	snprintf(s->seen[s->n++], sizeof(s->seen[0]), "%s", nonce);
	return 0;
}

/* The verifier of a CHSM with a platform key set, or (enrollment) of one
 * waiting for enrollment on the enrollment route. */
static void make_verifier(struct gmt_verifier *v, struct nonce_store *s, int64_t now,
			  bool enrollment)
{
	memset(v, 0, sizeof(*v));
	v->now_ms = now;
	v->platform_key = enrollment ? NULL : platform_key;
	v->platform_fingerprint = enrollment ? NULL : platform_fp;
	v->route_allows_enrollment = enrollment;
	v->enrollment_open = enrollment;
	v->enrollment_code = enrollment ? CODE : NULL;
	v->nonce_use = store_use;
	v->nonce_ctx = s;
}

static struct gmt_auth_headers as_auth_headers(const struct gmt_signed_headers *sh)
{
	struct gmt_auth_headers h = {sh->timestamp, sh->nonce, sh->key_id, sh->alg,
				     sh->signature, NULL};
	return h;
}

/* ---- string to sign ---- */

static void test_string_to_sign_with_body(void **state)
{
	char *s = NULL;
	size_t len = 0;
	assert_int_equal(gmt_string_to_sign("POST", "/gmt0088/v1/vsms/v1/start?x=1&y=2",
					    "1767225600000", "nonce-0123456789abcdef", OTHER_FP,
					    BODY, strlen(BODY), &s, &len),
			 0);
	const char *expected = "GMT0088-V1\n"
			       "POST\n"
			       "/gmt0088/v1/vsms/v1/start?x=1&y=2\n"
			       "1767225600000\n"
			       "nonce-0123456789abcdef\n"
			       "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n"
			       "9cff8eb19aada54a3b13886dab500fa7e0d3b79f4a5dc97daf2a5291312fbf2d";
	assert_string_equal(s, expected);
	assert_int_equal(len, strlen(expected));
	free(s);
}

static void test_string_to_sign_empty_body(void **state)
{
	const char *expected = "GMT0088-V1\n"
			       "GET\n"
			       "/gmt0088/v1/chsm\n"
			       "1767225600000\n"
			       "abcdefghijklmnop\n"
			       "enrollment\n"
			       "1ab21d8355cfa17f8e61194831e81a8f22bec8c728fefb747ed035eb5082aa2b";
	char *s = NULL;
	size_t len = 0;
	assert_int_equal(gmt_string_to_sign("GET", "/gmt0088/v1/chsm", "1767225600000",
					    "abcdefghijklmnop", "enrollment", NULL, 0, &s, &len),
			 0);
	assert_string_equal(s, expected);
	assert_int_equal(len, strlen(expected));
	free(s);
	/* an empty non-NULL body is the same as no body */
	assert_int_equal(gmt_string_to_sign("GET", "/gmt0088/v1/chsm", "1767225600000",
					    "abcdefghijklmnop", "enrollment", "", 0, &s, &len),
			 0);
	assert_string_equal(s, expected);
	free(s);
}

static void test_string_to_sign_rejects(void **state)
{
	char *s = NULL;
	size_t len = 0;
	assert_int_equal(gmt_string_to_sign("GET", "/a\nb", "1", NONCE, "k", NULL, 0, &s, &len),
			 -EINVAL);
	assert_int_equal(gmt_string_to_sign("GET", "/a", "1", NONCE, "k\r", NULL, 0, &s, &len),
			 -EINVAL);
	assert_int_equal(gmt_string_to_sign("", "/a", "1", NONCE, "k", NULL, 0, &s, &len),
			 -EINVAL);
	assert_int_equal(gmt_string_to_sign("GET", "/a", NULL, NONCE, "k", NULL, 0, &s, &len),
			 -EINVAL);
	assert_int_equal(gmt_string_to_sign("GET", "/a", "1", NONCE, "k", NULL, 3, &s, &len),
			 -EINVAL);
	assert_null(s);
}

static void test_response_string(void **state)
{
	char *s = NULL;
	size_t len = 0;
	assert_int_equal(gmt_response_string(NONCE, 200, "hello", 5, &s, &len), 0);
	assert_string_equal(s, "GMT0088-V1-RESPONSE\n"
			       "nonce-0123456789abcdef\n"
			       "200\n"
			       "becbbfaae6548b8bf0cfcad5a27183cd1be6093b1cceccc303d9c61d0a645268");
	assert_int_equal(len, strlen(s));
	free(s);
	assert_int_equal(gmt_response_string(NULL, 401, NULL, 0, &s, &len), 0);
	assert_string_equal(s, "GMT0088-V1-RESPONSE\n"
			       "\n"
			       "401\n"
			       "1ab21d8355cfa17f8e61194831e81a8f22bec8c728fefb747ed035eb5082aa2b");
	free(s);
	s = NULL;
	assert_int_equal(gmt_response_string(NONCE, 99, NULL, 0, &s, &len), -EINVAL);
	assert_int_equal(gmt_response_string(NONCE, 600, NULL, 0, &s, &len), -EINVAL);
	assert_int_equal(gmt_response_string("a\nb", 200, NULL, 0, &s, &len), -EINVAL);
	assert_null(s);
}

/* ---- nonces ---- */

static void test_new_nonce(void **state)
{
	static const char alphabet[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
	bool used[64] = {false};
	char prev[CHSM_NONCE_MAX_LEN + 1] = "";
	for (int i = 0; i < 1000; i++) {
		char n[CHSM_NONCE_MAX_LEN + 1];
		assert_int_equal(gmt_new_nonce(n), 0);
		assert_int_equal(strlen(n), GMT_NONCE_LEN);
		for (size_t j = 0; j < GMT_NONCE_LEN; j++) {
			const char *p = strchr(alphabet, n[j]);
			assert_non_null(p);
			used[p - alphabet] = true;
		}
		assert_string_not_equal(n, prev);
		memcpy(prev, n, sizeof(prev));
	}
	/* 32000 uniform draws: every symbol appears (missing one: p < 1e-200) */
	for (int i = 0; i < 64; i++)
		assert_true(used[i]);
}

/* ---- round trips ---- */

static void test_sign_verify_roundtrip(void **state)
{
	struct gmt_signed_headers sh;
	struct nonce_store store = {0};
	struct gmt_verifier v;
	struct gmt_auth_result res;
	assert_int_equal(gmt_sign_request(platform_key, METHOD, TARGET, BODY, strlen(BODY), NOW,
					  &sh),
			 0);
	assert_string_equal(sh.timestamp, "1767225600000");
	assert_string_equal(sh.key_id, platform_fp);
	assert_string_equal(sh.alg, GMT_ALG_SM2);
	assert_int_equal(strlen(sh.nonce), GMT_NONCE_LEN);
	struct gmt_auth_headers h = as_auth_headers(&sh);
	make_verifier(&v, &store, NOW + 1000, false);
	assert_int_equal(gmt_verify_request(&h, METHOD, TARGET, BODY, strlen(BODY), &v, &res),
			 GMT_OK);
	assert_false(res.enrollment);
	assert_false(res.enrollment_mac_bad);
	assert_false(res.storage_failed);
	assert_int_equal(res.timestamp_ms, NOW);
	assert_int_equal(store.calls, 1);
	assert_string_equal(store.seen[0], sh.nonce);
	assert_int_equal(store.last_ts, NOW);
	/* the same request again is a replay */
	assert_int_equal(gmt_verify_request(&h, METHOD, TARGET, BODY, strlen(BODY), &v, &res),
			 GMT_E_NONCE_REPLAYED);
	/* GET without a body */
	assert_int_equal(gmt_sign_request(platform_key, "GET", "/gmt0088/v1/chsm", NULL, 0, NOW,
					  &sh),
			 0);
	h = as_auth_headers(&sh);
	assert_int_equal(gmt_verify_request(&h, "GET", "/gmt0088/v1/chsm", NULL, 0, &v, &res),
			 GMT_OK);
	/* the restart floor: a timestamp at or below it is 2003 (before the
	 * signature, and the nonce is not used); just above it passes */
	assert_int_equal(gmt_sign_request(platform_key, "GET", "/gmt0088/v1/chsm", NULL, 0, NOW,
					  &sh),
			 0);
	h = as_auth_headers(&sh);
	int calls = store.calls;
	v.timestamp_floor_ms = NOW;
	assert_int_equal(gmt_verify_request(&h, "GET", "/gmt0088/v1/chsm", NULL, 0, &v, &res),
			 GMT_E_TIMESTAMP);
	h.signature = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
	assert_int_equal(gmt_verify_request(&h, "GET", "/gmt0088/v1/chsm", NULL, 0, &v, &res),
			 GMT_E_TIMESTAMP);
	assert_int_equal(store.calls, calls);
	h = as_auth_headers(&sh);
	v.timestamp_floor_ms = NOW - 1;
	assert_int_equal(gmt_verify_request(&h, "GET", "/gmt0088/v1/chsm", NULL, 0, &v, &res),
			 GMT_OK);
	v.timestamp_floor_ms = 0;
	/* the fingerprint is computed when the verifier does not give it */
	assert_int_equal(gmt_sign_request(platform_key, "GET", "/gmt0088/v1/chsm", NULL, 0, NOW,
					  &sh),
			 0);
	h = as_auth_headers(&sh);
	v.platform_fingerprint = NULL;
	assert_int_equal(gmt_verify_request(&h, "GET", "/gmt0088/v1/chsm", NULL, 0, &v, &res),
			 GMT_OK);
}

static void test_enrollment_roundtrip(void **state)
{
	static const char target[] = "/gmt0088/v1/auth/platform-key";
	static const char body[] = "{\"publicKey\":\"-----BEGIN PUBLIC KEY-----\\n...\"}";
	struct gmt_signed_headers sh;
	struct nonce_store store = {0};
	struct gmt_verifier v;
	struct gmt_auth_result res;
	assert_int_equal(gmt_mac_enrollment_request(CODE, "PUT", target, body, strlen(body), NOW,
						    &sh),
			 0);
	assert_string_equal(sh.key_id, GMT_KEY_ID_ENROLLMENT);
	assert_string_equal(sh.alg, GMT_ALG_HMAC);
	struct gmt_auth_headers h = as_auth_headers(&sh);
	make_verifier(&v, &store, NOW - 2000, true);
	assert_int_equal(gmt_verify_request(&h, "PUT", target, body, strlen(body), &v, &res),
			 GMT_OK);
	assert_true(res.enrollment);
	assert_false(res.enrollment_mac_bad);
	assert_int_equal(store.calls, 1);
	assert_int_equal(gmt_mac_enrollment_request("", "PUT", target, NULL, 0, NOW, &sh),
			 -EINVAL);
}

static void test_sign_rejects(void **state)
{
	struct gmt_signed_headers sh;
	crypto_sm2_key *pub = NULL;
	uint8_t point[CRYPTO_SM2_POINT_LEN];
	assert_int_equal(crypto_sm2_public_point(platform_key, point), 0);
	assert_int_equal(crypto_sm2_from_public_point(point, &pub), 0);
	assert_int_equal(gmt_sign_request(pub, "GET", "/x", NULL, 0, NOW, &sh), -EINVAL);
	assert_int_equal(gmt_sign_request(platform_key, "GET", "/x", NULL, 0, -1, &sh), -EINVAL);
	assert_int_equal(gmt_sign_request(platform_key, "GET", "/x\n", NULL, 0, NOW, &sh),
			 -EINVAL);
	crypto_sm2_key_free(pub);
}

/* ---- the table of authentication failures ---- */

enum signer { SIGN_PLATFORM, SIGN_OTHER_KEY, SIGN_ENROLL, SIGN_ENROLL_WRONG };
enum hdr { H_NONE, H_TS, H_NONCE, H_KEY_ID, H_ALG, H_SIG, H_IDEM };

/* Verifier changes from the signer's natural one. */
#define V_NO_KEY          (1u << 0) /* no platform key configured */
#define V_ENROLL_ROUTE    (1u << 1) /* SM2 on the enrollment route (rotation) */
#define V_PLAIN_ROUTE     (1u << 2) /* HMAC on a route without enrollment */
#define V_ENROLL_CLOSED   (1u << 3) /* no open enrollment code */
#define V_KEY_SET         (1u << 4) /* enrollment while a platform key is set */
#define V_NONCE_SEEN      (1u << 5) /* the store already holds the nonce */
#define V_STORE_FAIL      (1u << 6) /* the store fails */
#define V_NO_FP           (1u << 7) /* fingerprint not given: computed */
#define E_MAC_BAD         (1u << 8) /* expect enrollment_mac_bad */

struct auth_case {
	const char *name;
	enum signer signer;
	int64_t ts_offset;          /* signing timestamp minus the CHSM's clock */
	const char *nonce;          /* signed nonce; NULL: NONCE */
	const char *key_id;         /* signed key id; NULL: fingerprint or "enrollment" */
	const char *sign_method;    /* what was signed, NULL: what is sent */
	const char *sign_target;
	const char *sign_body;
	enum hdr hdr;               /* one header changed after signing */
	const char *value;          /* its new value; NULL removes it */
	unsigned flags;
	int code;                   /* expected; 5001 also expects storage_failed */
};

static const struct auth_case auth_cases[] = {
	/* accepted */
	{"ok", SIGN_PLATFORM, 0, NULL, NULL, NULL, NULL, NULL, H_NONE, NULL, 0, GMT_OK},
	{"ok alg explicit", SIGN_PLATFORM, 0, NULL, NULL, NULL, NULL, NULL, H_ALG, "SM2-SM3", 0,
	 GMT_OK},
	{"ok idempotency key", SIGN_PLATFORM, 0, NULL, NULL, NULL, NULL, NULL, H_IDEM,
	 "op-2026.01:abc_1", 0, GMT_OK},
	{"ok idempotency key 64", SIGN_PLATFORM, 0, NULL, NULL, NULL, NULL, NULL, H_IDEM, NONCE64,
	 0, GMT_OK},
	{"ok fingerprint computed", SIGN_PLATFORM, 0, NULL, NULL, NULL, NULL, NULL, H_NONE, NULL,
	 V_NO_FP, GMT_OK},
	{"ok nonce 16", SIGN_PLATFORM, 0, NONCE16, NULL, NULL, NULL, NULL, H_NONE, NULL, 0,
	 GMT_OK},
	{"ok nonce 64", SIGN_PLATFORM, 0, NONCE64, NULL, NULL, NULL, NULL, H_NONE, NULL, 0,
	 GMT_OK},
	{"ok 300 s early", SIGN_PLATFORM, -300000, NULL, NULL, NULL, NULL, NULL, H_NONE, NULL, 0,
	 GMT_OK},
	{"ok 300 s late", SIGN_PLATFORM, 300000, NULL, NULL, NULL, NULL, NULL, H_NONE, NULL, 0,
	 GMT_OK},
	{"ok rotation on enrollment route", SIGN_PLATFORM, 0, NULL, NULL, NULL, NULL, NULL,
	 H_NONE, NULL, V_ENROLL_ROUTE, GMT_OK},
	{"ok enrollment", SIGN_ENROLL, 0, NULL, NULL, NULL, NULL, NULL, H_NONE, NULL, 0, GMT_OK},

	/* 1. headers missing */
	{"no timestamp", SIGN_PLATFORM, 0, NULL, NULL, NULL, NULL, NULL, H_TS, NULL, 0, 2001},
	{"no nonce", SIGN_PLATFORM, 0, NULL, NULL, NULL, NULL, NULL, H_NONCE, NULL, 0, 2001},
	{"no key id", SIGN_PLATFORM, 0, NULL, NULL, NULL, NULL, NULL, H_KEY_ID, NULL, 0, 2001},
	{"no signature", SIGN_PLATFORM, 0, NULL, NULL, NULL, NULL, NULL, H_SIG, NULL, 0, 2001},
	{"enrollment without alg", SIGN_ENROLL, 0, NULL, NULL, NULL, NULL, NULL, H_ALG, NULL, 0,
	 2001},
	/* 1. timestamp malformed */
	{"ts 12a", SIGN_PLATFORM, 0, NULL, NULL, NULL, NULL, NULL, H_TS, "12a", 0, 2001},
	{"ts empty", SIGN_PLATFORM, 0, NULL, NULL, NULL, NULL, NULL, H_TS, "", 0, 2001},
	{"ts negative", SIGN_PLATFORM, 0, NULL, NULL, NULL, NULL, NULL, H_TS, "-5", 0, 2001},
	{"ts plus", SIGN_PLATFORM, 0, NULL, NULL, NULL, NULL, NULL, H_TS, "+1767225600000", 0,
	 2001},
	{"ts space", SIGN_PLATFORM, 0, NULL, NULL, NULL, NULL, NULL, H_TS, " 1767225600000", 0,
	 2001},
	{"ts fraction", SIGN_PLATFORM, 0, NULL, NULL, NULL, NULL, NULL, H_TS, "1767225600000.5",
	 0, 2001},
	{"ts exponent", SIGN_PLATFORM, 0, NULL, NULL, NULL, NULL, NULL, H_TS, "1.7e12", 0, 2001},
	{"ts huge", SIGN_PLATFORM, 0, NULL, NULL, NULL, NULL, NULL, H_TS,
	 "123456789012345678901234567890", 0, 2001},
	{"ts over int64", SIGN_PLATFORM, 0, NULL, NULL, NULL, NULL, NULL, H_TS,
	 "9223372036854775808", 0, 2001},
	/* 1. nonce malformed */
	{"nonce 15", SIGN_PLATFORM, 0, NULL, NULL, NULL, NULL, NULL, H_NONCE, NONCE15, 0, 2001},
	{"nonce 65", SIGN_PLATFORM, 0, NULL, NULL, NULL, NULL, NULL, H_NONCE, NONCE65, 0, 2001},
	{"nonce empty", SIGN_PLATFORM, 0, NULL, NULL, NULL, NULL, NULL, H_NONCE, "", 0, 2001},
	{"nonce bang", SIGN_PLATFORM, 0, NULL, NULL, NULL, NULL, NULL, H_NONCE,
	 "abcdefghijklmnop!", 0, 2001},
	{"nonce dot", SIGN_PLATFORM, 0, NULL, NULL, NULL, NULL, NULL, H_NONCE,
	 "abcdefgh.ijklmnop", 0, 2001},
	{"nonce space", SIGN_PLATFORM, 0, NULL, NULL, NULL, NULL, NULL, H_NONCE,
	 "abcdefgh ijklmnop", 0, 2001},
	{"nonce non-ascii", SIGN_PLATFORM, 0, NULL, NULL, NULL, NULL, NULL, H_NONCE,
	 "abcdefghijklmnop\xc3\xa9", 0, 2001},
	/* 1. key id malformed */
	{"key id empty", SIGN_PLATFORM, 0, NULL, NULL, NULL, NULL, NULL, H_KEY_ID, "", 0, 2001},
	{"key id 65", SIGN_PLATFORM, 0, NULL, NULL, NULL, NULL, NULL, H_KEY_ID, LONG65, 0, 2001},
	{"key id space", SIGN_PLATFORM, 0, NULL, NULL, NULL, NULL, NULL, H_KEY_ID, "a key", 0,
	 2001},
	/* 1. algorithm */
	{"alg SM2", SIGN_PLATFORM, 0, NULL, NULL, NULL, NULL, NULL, H_ALG, "SM2", 0, 2001},
	{"alg lowercase", SIGN_PLATFORM, 0, NULL, NULL, NULL, NULL, NULL, H_ALG, "sm2-sm3", 0,
	 2001},
	{"alg empty", SIGN_PLATFORM, 0, NULL, NULL, NULL, NULL, NULL, H_ALG, "", 0, 2001},
	{"alg HMAC-SHA256", SIGN_PLATFORM, 0, NULL, NULL, NULL, NULL, NULL, H_ALG, "HMAC-SHA256",
	 0, 2001},
	{"HMAC with a platform key id", SIGN_PLATFORM, 0, NULL, NULL, NULL, NULL, NULL, H_ALG,
	 "HMAC-SM3", V_ENROLL_ROUTE, 2001},
	{"SM2 with key id enrollment", SIGN_PLATFORM, 0, NULL, "enrollment", NULL, NULL, NULL,
	 H_NONE, NULL, V_ENROLL_ROUTE, 2001},
	{"HMAC on a route without enrollment", SIGN_ENROLL, 0, NULL, NULL, NULL, NULL, NULL,
	 H_NONE, NULL, V_PLAIN_ROUTE, 2001},
	/* 1. signature malformed */
	{"sig not base64", SIGN_PLATFORM, 0, NULL, NULL, NULL, NULL, NULL, H_SIG, "not*base64!",
	 0, 2001},
	{"sig empty", SIGN_PLATFORM, 0, NULL, NULL, NULL, NULL, NULL, H_SIG, "", 0, 2001},
	{"sig unpadded", SIGN_PLATFORM, 0, NULL, NULL, NULL, NULL, NULL, H_SIG, "AAAAAAAAAAA", 0,
	 2001},
	{"sig with newline", SIGN_PLATFORM, 0, NULL, NULL, NULL, NULL, NULL, H_SIG,
	 "AAAAAAAA\nAAAA", 0, 2001},
	{"sig 7 bytes", SIGN_PLATFORM, 0, NULL, NULL, NULL, NULL, NULL, H_SIG, "AAAAAAAAAA==", 0,
	 2001},
	{"sig 73 bytes", SIGN_PLATFORM, 0, NULL, NULL, NULL, NULL, NULL, H_SIG,
	 A16 A16 A16 A16 A16 A16 "AA==", 0, 2001},
	{"sig over 128 chars", SIGN_PLATFORM, 0, NULL, NULL, NULL, NULL, NULL, H_SIG,
	 A16 A16 A16 A16 A16 A16 A16 A16 "AAAA", 0, 2001},
	{"mac 31 bytes", SIGN_ENROLL, 0, NULL, NULL, NULL, NULL, NULL, H_SIG,
	 A16 A16 "AAAAAAAA" "AA==", 0, 2001},
	{"mac 33 bytes", SIGN_ENROLL, 0, NULL, NULL, NULL, NULL, NULL, H_SIG, A16 A16 "AAAAAAAAAAAA",
	 0, 2001},
	/* 1. idempotency key malformed */
	{"idempotency empty", SIGN_PLATFORM, 0, NULL, NULL, NULL, NULL, NULL, H_IDEM, "", 0,
	 2001},
	{"idempotency 65", SIGN_PLATFORM, 0, NULL, NULL, NULL, NULL, NULL, H_IDEM, NONCE65, 0,
	 2001},
	{"idempotency space", SIGN_PLATFORM, 0, NULL, NULL, NULL, NULL, NULL, H_IDEM, "op 1", 0,
	 2001},
	{"idempotency slash", SIGN_PLATFORM, 0, NULL, NULL, NULL, NULL, NULL, H_IDEM, "op/1", 0,
	 2001},

	/* 2. the key */
	{"no platform key", SIGN_PLATFORM, 0, NULL, NULL, NULL, NULL, NULL, H_NONE, NULL,
	 V_NO_KEY, 2005},
	{"wrong key id", SIGN_PLATFORM, 0, NULL, OTHER_FP, NULL, NULL, NULL, H_NONE, NULL, 0,
	 2006},
	{"key id uppercase", SIGN_PLATFORM, 0, NULL, NULL, NULL, NULL, NULL, H_KEY_ID,
	 "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", 0, 2006},
	{"enrollment closed", SIGN_ENROLL, 0, NULL, NULL, NULL, NULL, NULL, H_NONE, NULL,
	 V_ENROLL_CLOSED, 2007},
	{"enrollment with a platform key set", SIGN_ENROLL, 0, NULL, NULL, NULL, NULL, NULL,
	 H_NONE, NULL, V_KEY_SET, 2007},

	/* 3. timestamp */
	{"301 s early", SIGN_PLATFORM, -301000, NULL, NULL, NULL, NULL, NULL, H_NONE, NULL, 0,
	 2003},
	{"301 s late", SIGN_PLATFORM, 301000, NULL, NULL, NULL, NULL, NULL, H_NONE, NULL, 0,
	 2003},
	{"300.001 s early", SIGN_PLATFORM, -300001, NULL, NULL, NULL, NULL, NULL, H_NONE, NULL, 0,
	 2003},
	{"ts zero", SIGN_PLATFORM, -NOW, NULL, NULL, NULL, NULL, NULL, H_NONE, NULL, 0, 2003},
	{"ts int64 max", SIGN_PLATFORM, 0, NULL, NULL, NULL, NULL, NULL, H_TS,
	 "9223372036854775807", 0, 2003},
	{"enrollment 301 s late", SIGN_ENROLL, 301000, NULL, NULL, NULL, NULL, NULL, H_NONE, NULL,
	 0, 2003},

	/* 4. signature */
	{"signed by another key", SIGN_OTHER_KEY, 0, NULL, NULL, NULL, NULL, NULL, H_NONE, NULL,
	 0, 2002},
	{"different body", SIGN_PLATFORM, 0, NULL, NULL, NULL, NULL, "{\"callbackUrl\":\"x\"}",
	 H_NONE, NULL, 0, 2002},
	{"signed without body", SIGN_PLATFORM, 0, NULL, NULL, NULL, NULL, "", H_NONE, NULL, 0,
	 2002},
	{"different target", SIGN_PLATFORM, 0, NULL, NULL, NULL, "/gmt0088/v1/vsms/v1/stop?x=1",
	 NULL, H_NONE, NULL, 0, 2002},
	{"different query", SIGN_PLATFORM, 0, NULL, NULL, NULL, "/gmt0088/v1/vsms/v1/start?x=2",
	 NULL, H_NONE, NULL, 0, 2002},
	{"different method", SIGN_PLATFORM, 0, NULL, NULL, "PUT", NULL, NULL, H_NONE, NULL, 0,
	 2002},
	{"different timestamp", SIGN_PLATFORM, 0, NULL, NULL, NULL, NULL, NULL, H_TS,
	 "1767225600001", 0, 2002},
	{"different nonce", SIGN_PLATFORM, 0, NULL, NULL, NULL, NULL, NULL, H_NONCE,
	 "nonce-0123456789abcdeF", 0, 2002},
	{"sig not DER", SIGN_PLATFORM, 0, NULL, NULL, NULL, NULL, NULL, H_SIG, "AAAAAAAAAAA=", 0,
	 2002},
	{"wrong enrollment code", SIGN_ENROLL_WRONG, 0, NULL, NULL, NULL, NULL, NULL, H_NONE,
	 NULL, E_MAC_BAD, 2007},
	{"enrollment MAC over another body", SIGN_ENROLL, 0, NULL, NULL, NULL, NULL, "{}",
	 H_NONE, NULL, E_MAC_BAD, 2007},

	/* 5. nonce */
	{"replayed nonce", SIGN_PLATFORM, 0, NULL, NULL, NULL, NULL, NULL, H_NONE, NULL,
	 V_NONCE_SEEN, 2004},
	{"replayed enrollment nonce", SIGN_ENROLL, 0, NULL, NULL, NULL, NULL, NULL, H_NONE, NULL,
	 V_NONCE_SEEN, 2004},
	{"nonce store fails", SIGN_PLATFORM, 0, NULL, NULL, NULL, NULL, NULL, H_NONE, NULL,
	 V_STORE_FAIL, 5001},

	/* order of the checks: the first failure wins */
	{"malformed nonce before no platform key", SIGN_PLATFORM, 0, NULL, NULL, NULL, NULL,
	 NULL, H_NONCE, NONCE15, V_NO_KEY, 2001},
	{"no platform key before timestamp", SIGN_PLATFORM, 400000, NULL, NULL, NULL, NULL, NULL,
	 H_NONE, NULL, V_NO_KEY, 2005},
	{"bad key id before timestamp", SIGN_PLATFORM, -400000, NULL, OTHER_FP, NULL, NULL, NULL,
	 H_NONE, NULL, 0, 2006},
	{"timestamp before signature", SIGN_OTHER_KEY, -301000, NULL, NULL, NULL, NULL, NULL,
	 H_NONE, NULL, 0, 2003},
	{"enrollment closed before timestamp", SIGN_ENROLL_WRONG, 400000, NULL, NULL, NULL, NULL,
	 NULL, H_NONE, NULL, V_ENROLL_CLOSED, 2007},
	{"timestamp before enrollment MAC", SIGN_ENROLL_WRONG, 400000, NULL, NULL, NULL, NULL,
	 NULL, H_NONE, NULL, 0, 2003},
	{"signature before replay", SIGN_OTHER_KEY, 0, NULL, NULL, NULL, NULL, NULL, H_NONE, NULL,
	 V_NONCE_SEEN, 2002},
	{"signature before store failure", SIGN_PLATFORM, 0, NULL, NULL, "GET", NULL, NULL,
	 H_NONE, NULL, V_STORE_FAIL, 2002},
};

/* A request as the table case describes it, signed independently of
 * gmt_sign_request (string to sign, then crypto_sm2_sign / HMAC-SM3). */
struct test_request {
	char ts[24];
	char sig[CHSM_SIGNATURE_B64_MAX + 1];
	struct gmt_auth_headers h;
};

static void build_request(const struct auth_case *c, struct test_request *q)
{
	bool hmac = c->signer == SIGN_ENROLL || c->signer == SIGN_ENROLL_WRONG;
	const char *body = c->sign_body ? c->sign_body : BODY;
	const char *nonce = c->nonce ? c->nonce : NONCE;
	const char *key_id = c->key_id ? c->key_id : hmac ? GMT_KEY_ID_ENROLLMENT : platform_fp;
	char *tbs = NULL, *b64 = NULL;
	size_t tbslen = 0;
	snprintf(q->ts, sizeof(q->ts), "%" PRId64, (int64_t)(NOW + c->ts_offset));
	assert_int_equal(gmt_string_to_sign(c->sign_method ? c->sign_method : METHOD,
					    c->sign_target ? c->sign_target : TARGET, q->ts,
					    nonce, key_id, body, strlen(body), &tbs, &tbslen),
			 0);
	if (hmac) {
		const char *code = c->signer == SIGN_ENROLL ? CODE : WRONG_CODE;
		uint8_t mac[CRYPTO_SM3_LEN];
		assert_int_equal(crypto_hmac_sm3(code, strlen(code), tbs, tbslen, mac), 0);
		assert_int_equal(crypto_base64_encode(mac, sizeof(mac), &b64), 0);
	} else {
		const crypto_sm2_key *key = c->signer == SIGN_PLATFORM ? platform_key : other_key;
		uint8_t sig[CRYPTO_SM2_SIG_DER_MAX];
		size_t siglen = 0;
		assert_int_equal(crypto_sm2_sign(key, CRYPTO_SM2_DEFAULT_ID, tbs, tbslen, sig,
						 &siglen),
				 0);
		assert_int_equal(crypto_base64_encode(sig, siglen, &b64), 0);
	}
	assert_true(strlen(b64) < sizeof(q->sig));
	memcpy(q->sig, b64, strlen(b64) + 1);
	free(b64);
	free(tbs);

	q->h = (struct gmt_auth_headers){q->ts, nonce, key_id, hmac ? GMT_ALG_HMAC : NULL, q->sig,
					 NULL};
	switch (c->hdr) {
	case H_NONE: break;
	case H_TS: q->h.timestamp = c->value; break;
	case H_NONCE: q->h.nonce = c->value; break;
	case H_KEY_ID: q->h.key_id = c->value; break;
	case H_ALG: q->h.alg = c->value; break;
	case H_SIG: q->h.signature = c->value; break;
	case H_IDEM: q->h.idempotency_key = c->value; break;
	}
}

static void test_auth_table(void **state)
{
	for (size_t i = 0; i < sizeof(auth_cases) / sizeof(auth_cases[0]); i++) {
		const struct auth_case *c = &auth_cases[i];
		bool hmac = c->signer == SIGN_ENROLL || c->signer == SIGN_ENROLL_WRONG;
		struct test_request q;
		struct nonce_store store = {0};
		struct gmt_verifier v;
		struct gmt_auth_result res;
		print_message("case: %s\n", c->name);
		build_request(c, &q);

		make_verifier(&v, &store, NOW, hmac);
		if (c->flags & V_NO_KEY)
			v.platform_key = NULL, v.platform_fingerprint = NULL;
		if (c->flags & V_ENROLL_ROUTE)
			v.route_allows_enrollment = true;
		if (c->flags & V_PLAIN_ROUTE)
			v.route_allows_enrollment = false;
		if (c->flags & V_ENROLL_CLOSED)
			v.enrollment_open = false, v.enrollment_code = NULL;
		if (c->flags & V_KEY_SET)
			v.platform_key = platform_key, v.platform_fingerprint = platform_fp;
		if (c->flags & V_NONCE_SEEN)
			snprintf(store.seen[store.n++], sizeof(store.seen[0]), "%s", q.h.nonce);
		if (c->flags & V_STORE_FAIL)
			store.fail = true;
		if (c->flags & V_NO_FP)
			v.platform_fingerprint = NULL;

		memset(&res, 0xa5, sizeof(res));
		int code = gmt_verify_request(&q.h, METHOD, TARGET, BODY, strlen(BODY), &v, &res);
		if (code != c->code)
			fail_msg("case '%s': got %d, expected %d", c->name, code, c->code);
		assert_int_equal(gmt_code_known(code), true);
		assert_int_equal(res.enrollment_mac_bad, (c->flags & E_MAC_BAD) != 0);
		assert_int_equal(res.storage_failed, code == GMT_E_STORAGE);
		assert_int_equal(res.enrollment, hmac && (code == GMT_OK || code == 2004));
		/* the nonce is used only once the signature or MAC verified */
		bool verified = code == GMT_OK || code == 2004 || code == 5001;
		if (store.calls != (verified ? 1 : 0))
			fail_msg("case '%s': nonce_use called %d times", c->name, store.calls);
		if (code == GMT_OK) {
			assert_int_equal(res.timestamp_ms, NOW + c->ts_offset);
			assert_int_equal(store.n, 1);
			assert_string_equal(store.seen[0], q.h.nonce);
		}
	}
}

static void test_verify_bad_arguments(void **state)
{
	struct gmt_auth_headers h = {"1", NONCE, "k", NULL, "AAAAAAAAAAA=", NULL};
	struct gmt_verifier v;
	struct gmt_auth_result res;
	struct nonce_store store = {0};
	make_verifier(&v, &store, NOW, false);
	assert_int_equal(gmt_verify_request(NULL, "GET", "/x", NULL, 0, &v, &res), 5000);
	assert_int_equal(gmt_verify_request(&h, "GET", "/x", NULL, 0, NULL, &res), 5000);
	assert_int_equal(gmt_verify_request(&h, NULL, "/x", NULL, 0, &v, &res), 5000);
	assert_int_equal(gmt_verify_request(&h, "GET", "/x", NULL, 5, &v, &res), 5000);
	/* a target with a control character cannot be signed: 2001 */
	assert_int_equal(gmt_verify_request(&h, "GET", "/x\ny", NULL, 0, &v, &res), 2001);
	/* without a nonce store the verifier fails closed */
	struct gmt_signed_headers sh;
	assert_int_equal(gmt_sign_request(platform_key, "GET", "/x", NULL, 0, NOW, &sh), 0);
	h = as_auth_headers(&sh);
	v.nonce_use = NULL;
	assert_int_equal(gmt_verify_request(&h, "GET", "/x", NULL, 0, &v, &res), 5000);
	/* a NULL result pointer is allowed */
	v.nonce_use = store_use;
	assert_int_equal(gmt_verify_request(&h, "GET", "/x", NULL, 0, &v, NULL), GMT_OK);
}

/* ---- responses and callbacks ---- */

static void test_response_signature(void **state)
{
	static const char body[] = "{\"code\":0,\"message\":\"OK\",\"requestId\":\"req-1\"}";
	char sig[CHSM_SIGNATURE_B64_MAX + 1];
	assert_int_equal(gmt_sign_response(device_key, NONCE, 200, body, strlen(body), sig), 0);
	assert_int_equal(gmt_verify_response(device_key, NONCE, 200, body, strlen(body), sig), 0);
	assert_int_equal(gmt_verify_response(device_key, NONCE, 201, body, strlen(body), sig),
			 -EBADMSG);
	assert_int_equal(gmt_verify_response(device_key, NONCE16, 200, body, strlen(body), sig),
			 -EBADMSG);
	assert_int_equal(gmt_verify_response(device_key, NULL, 200, body, strlen(body), sig),
			 -EBADMSG);
	assert_int_equal(gmt_verify_response(device_key, NONCE, 200, body, strlen(body) - 1, sig),
			 -EBADMSG);
	assert_int_equal(gmt_verify_response(other_key, NONCE, 200, body, strlen(body), sig),
			 -EBADMSG);
	assert_int_equal(gmt_verify_response(device_key, NONCE, 200, body, strlen(body), "**"),
			 -EINVAL);
	assert_int_equal(gmt_verify_response(device_key, NONCE, 200, body, strlen(body), NULL),
			 -EINVAL);
	/* a request without nonce, an empty body */
	assert_int_equal(gmt_sign_response(device_key, NULL, 401, NULL, 0, sig), 0);
	assert_int_equal(gmt_verify_response(device_key, NULL, 401, NULL, 0, sig), 0);
	assert_int_equal(gmt_verify_response(device_key, "", 401, "", 0, sig), 0);
	/* a public key cannot sign */
	crypto_sm2_key *pub = NULL;
	uint8_t point[CRYPTO_SM2_POINT_LEN];
	assert_int_equal(crypto_sm2_public_point(device_key, point), 0);
	assert_int_equal(crypto_sm2_from_public_point(point, &pub), 0);
	assert_int_equal(gmt_sign_response(pub, NONCE, 200, NULL, 0, sig), -EINVAL);
	assert_int_equal(gmt_verify_response(pub, NULL, 401, NULL, 0, sig), 0);
	crypto_sm2_key_free(pub);
}

static void test_callback(void **state)
{
	static const char target[] = "/platform/callbacks";
	static const char body[] = "{\"taskId\":\"task-1\",\"state\":\"succeeded\"}";
	struct gmt_signed_headers sh;
	assert_int_equal(gmt_sign_request(device_key, "POST", target, body, strlen(body), NOW,
					  &sh),
			 0);
	assert_string_equal(sh.key_id, device_fp);
	struct gmt_auth_headers h = as_auth_headers(&sh);
	assert_int_equal(gmt_verify_callback(device_key, &h, "POST", target, body, strlen(body)),
			 0);
	/* no timestamp policy: an old callback (a retry) still verifies */
	assert_int_equal(gmt_sign_request(device_key, "POST", target, body, strlen(body), 1000,
					  &sh),
			 0);
	h = as_auth_headers(&sh);
	assert_int_equal(gmt_verify_callback(device_key, &h, "POST", target, body, strlen(body)),
			 0);
	assert_int_equal(gmt_verify_callback(device_key, &h, "POST", target, body,
					     strlen(body) - 1),
			 -EBADMSG);
	assert_int_equal(gmt_verify_callback(device_key, &h, "POST", "/other", body, strlen(body)),
			 -EBADMSG);
	assert_int_equal(gmt_verify_callback(other_key, &h, "POST", target, body, strlen(body)),
			 -EBADMSG);
	struct gmt_auth_headers bad = h;
	bad.alg = GMT_ALG_HMAC;
	assert_int_equal(gmt_verify_callback(device_key, &bad, "POST", target, body, strlen(body)),
			 -EBADMSG);
	bad = h;
	bad.nonce = NULL;
	assert_int_equal(gmt_verify_callback(device_key, &bad, "POST", target, body, strlen(body)),
			 -EBADMSG);
	bad = h;
	bad.key_id = platform_fp;
	assert_int_equal(gmt_verify_callback(device_key, &bad, "POST", target, body, strlen(body)),
			 -EBADMSG);
	/* the same key signing as a platform key is refused by another device */
	assert_int_equal(gmt_sign_request(other_key, "POST", target, body, strlen(body), NOW,
					  &sh),
			 0);
	h = as_auth_headers(&sh);
	assert_int_equal(gmt_verify_callback(device_key, &h, "POST", target, body, strlen(body)),
			 -EBADMSG);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_string_to_sign_with_body),
		cmocka_unit_test(test_string_to_sign_empty_body),
		cmocka_unit_test(test_string_to_sign_rejects),
		cmocka_unit_test(test_response_string),
		cmocka_unit_test(test_new_nonce),
		cmocka_unit_test(test_sign_verify_roundtrip),
		cmocka_unit_test(test_enrollment_roundtrip),
		cmocka_unit_test(test_sign_rejects),
		cmocka_unit_test(test_auth_table),
		cmocka_unit_test(test_verify_bad_arguments),
		cmocka_unit_test(test_response_signature),
		cmocka_unit_test(test_callback),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
