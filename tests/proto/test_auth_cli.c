/*
 * Interoperability of proto/auth with the openssl command line, which shares
 * no code with this project's signing path: requests signed and MACed by the
 * CLI are accepted by gmt_verify_request, and responses and requests signed
 * by this module verify with the CLI. Strings to sign are written out by hand
 * here, never through gmt_string_to_sign. Skipped when openssl is missing.
 * The file and command helpers are the crypto tests' (tests/crypto/cli.h).
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
#include "crypto/crypto.h"
#include "proto/auth.h"
#include "proto/codes.h"

#define DISTID   "distid:1234567812345678"
#define NOW      1767225600000LL
#define TS       "1767225600000"
#define NONCE    "cli-nonce-0123456789"
#define CODE     "ABCDEFGHJKLMNPQRSTUVWXYZ23"

struct cli_fixture {
	char *dir;                /* from cli_tmpdir */
	crypto_sm2_key *pub;      /* pub.pem, loaded */
	crypto_sm2_key *pair;     /* key.pem, loaded */
	char fp[CRYPTO_SM3_HEX_LEN + 1]; /* computed by the CLI */
};

/* Reads a file the CLI wrote, without trailing whitespace. */
static char *read_text(const struct cli_fixture *f, const char *name)
{
	size_t len = 0;
	char *data = (char *)cli_read(f->dir, name, &len);
	while (len > 0 && (data[len - 1] == '\n' || data[len - 1] == '\r' || data[len - 1] == ' '))
		data[--len] = '\0';
	return data;
}

/* Lowercase hex SM3 of a file, by the CLI ("<hex> *<file>"). */
static void cli_sm3(const struct cli_fixture *f, const char *file, char out[65])
{
	assert_int_equal(cli_run(f->dir, "openssl dgst -sm3 -r %s > %s.sm3", file, file), 0);
	char name[128];
	snprintf(name, sizeof(name), "%s.sm3", file);
	char *s = read_text(f, name);
	assert_true(strlen(s) >= 64);
	memcpy(out, s, 64);
	out[64] = '\0';
	free(s);
}

static int group_teardown(void **state);

/* Makes the directory, an SM2 key pair by the CLI, and its fingerprint
 * computed by the CLI. */
static int setup_fixture(struct cli_fixture *f)
{
	if (cli_run(f->dir, "openssl genpkey -algorithm SM2 -out key.pem 2>/dev/null") != 0 ||
	    cli_run(f->dir, "openssl pkey -in key.pem -pubout -out pub.pem") != 0)
		return -1;
	/* fingerprint: SM3 of the last 65 bytes of the SPKI DER (04 || X || Y) */
	if (cli_run(f->dir, "openssl pkey -pubin -in pub.pem -outform DER -out pub.der && "
		   "tail -c 65 pub.der > point.bin") != 0)
		return -1;
	cli_sm3(f, "point.bin", f->fp);
	char *pem = read_text(f, "pub.pem");
	int r = crypto_sm2_load_public_pem(pem, strlen(pem), &f->pub);
	free(pem);
	if (r < 0)
		return -1;
	size_t keylen = 0;
	char *key = (char *)cli_read(f->dir, "key.pem", &keylen);
	r = crypto_sm2_load_private_pem(key, keylen, &f->pair);
	crypto_free_secret(key, keylen);
	return r < 0 ? -1 : 0;
}

static int group_setup(void **state)
{
	*state = NULL;
	if (system("openssl version >/dev/null 2>&1") != 0)
		return 0; /* every test skips */
	struct cli_fixture *f = calloc(1, sizeof(*f));
	if (!f)
		return -1;
	f->dir = cli_tmpdir();
	*state = f;
	if (setup_fixture(f) < 0) {
		group_teardown(state);
		return -1;
	}
	return 0;
}

static int group_teardown(void **state)
{
	struct cli_fixture *f = *state;
	if (!f)
		return 0;
	cli_tmpdir_free(f->dir);
	crypto_sm2_key_free(f->pub);
	crypto_sm2_key_free(f->pair);
	free(f);
	return 0;
}

static struct cli_fixture *fixture(void **state)
{
	if (!*state)
		skip();
	return *state;
}

struct nonce_count {
	int calls;
};

static int count_nonce(void *ctx, const char *nonce, int64_t ts)
{
	((struct nonce_count *)ctx)->calls++;
	return 0;
}

static void test_fingerprint_matches_cli(void **state)
{
	struct cli_fixture *f = fixture(state);
	char fp[CRYPTO_SM3_HEX_LEN + 1];
	assert_int_equal(crypto_sm2_fingerprint(f->pub, fp), 0);
	assert_string_equal(fp, f->fp);
}

/* A request signed by the openssl CLI is accepted. */
static void test_cli_signed_request(void **state)
{
	struct cli_fixture *f = fixture(state);
	static const char body[] = "{\"name\":\"tenant-a\",\"start\":true}";
	static const char target[] = "/gmt0088/v1/vsms?dryRun=1";
	char body_hex[65], tbs[1024];
	cli_write(f->dir, "req.json", body, strlen(body));
	cli_sm3(f, "req.json", body_hex);
	int n = snprintf(tbs, sizeof(tbs), "GMT0088-V1\nPOST\n%s\n%s\n%s\n%s\n%s", target, TS,
			 NONCE, f->fp, body_hex);
	cli_write(f->dir, "req-tbs.txt", tbs, (size_t)n);
	assert_int_equal(cli_run(f->dir, "openssl dgst -sm3 -sign key.pem -sigopt " DISTID
				" -out req-sig.der req-tbs.txt && "
				"openssl base64 -A -in req-sig.der -out req-sig.b64"),
			 0);
	char *sig = read_text(f, "req-sig.b64");

	struct gmt_auth_headers h = {TS, NONCE, f->fp, NULL, sig, NULL};
	struct nonce_count nc = {0};
	struct gmt_verifier v = {.now_ms = NOW + 5000, .platform_key = f->pub,
				 .platform_fingerprint = f->fp, .nonce_use = count_nonce,
				 .nonce_ctx = &nc};
	struct gmt_auth_result res;
	assert_int_equal(gmt_verify_request(&h, "POST", target, body, strlen(body), &v, &res),
			 GMT_OK);
	assert_int_equal(nc.calls, 1);
	/* the same signature does not cover another body, or no body */
	assert_int_equal(gmt_verify_request(&h, "POST", target, "{}", 2, &v, &res),
			 GMT_E_SIGNATURE);
	assert_int_equal(gmt_verify_request(&h, "POST", target, NULL, 0, &v, &res),
			 GMT_E_SIGNATURE);
	/* with an explicit algorithm header it is the same request */
	h.alg = "SM2-SM3";
	assert_int_equal(gmt_verify_request(&h, "POST", target, body, strlen(body), &v, &res),
			 GMT_OK);
	free(sig);
}

/* A request signed by gmt_sign_request verifies with the CLI. */
static void test_module_signed_request(void **state)
{
	struct cli_fixture *f = fixture(state);
	struct gmt_signed_headers sh;
	char tbs[1024], empty_hex[65];
	cli_write(f->dir, "empty.json", "", 0);
	cli_sm3(f, "empty.json", empty_hex);
	assert_int_equal(gmt_sign_request(f->pair, "GET", "/gmt0088/v1/chsm/status", NULL, 0,
					  NOW, &sh),
			 0);
	assert_string_equal(sh.key_id, f->fp);
	int n = snprintf(tbs, sizeof(tbs), "GMT0088-V1\nGET\n/gmt0088/v1/chsm/status\n%s\n%s\n%s\n%s",
			 sh.timestamp, sh.nonce, sh.key_id, empty_hex);
	cli_write(f->dir, "mod-tbs.txt", tbs, (size_t)n);
	cli_write(f->dir, "mod-sig.b64", sh.signature, strlen(sh.signature));
	assert_int_equal(cli_run(f->dir, "openssl base64 -d -A -in mod-sig.b64 -out mod-sig.der && "
				"openssl dgst -sm3 -verify pub.pem -sigopt " DISTID
				" -signature mod-sig.der mod-tbs.txt >/dev/null"),
			 0);
}

/* A response signed by gmt_sign_response verifies with the CLI. */
static void test_response_verified_by_cli(void **state)
{
	struct cli_fixture *f = fixture(state);
	static const char body[] =
		"{\"code\":0,\"message\":\"OK\",\"requestId\":\"req-0123\",\"data\":{}}";
	char sig[CHSM_SIGNATURE_B64_MAX + 1], body_hex[65], text[512];
	assert_int_equal(gmt_sign_response(f->pair, NONCE, 200, body, strlen(body), sig), 0);
	cli_write(f->dir, "resp.json", body, strlen(body));
	cli_sm3(f, "resp.json", body_hex);
	int n = snprintf(text, sizeof(text), "GMT0088-V1-RESPONSE\n%s\n200\n%s", NONCE, body_hex);
	cli_write(f->dir, "resp.txt", text, (size_t)n);
	cli_write(f->dir, "resp-sig.b64", sig, strlen(sig));
	assert_int_equal(cli_run(f->dir, "openssl base64 -d -A -in resp-sig.b64 -out resp-sig.der && "
				"openssl dgst -sm3 -verify pub.pem -sigopt " DISTID
				" -signature resp-sig.der resp.txt >/dev/null"),
			 0);
	/* the check is real: another status does not verify */
	n = snprintf(text, sizeof(text), "GMT0088-V1-RESPONSE\n%s\n201\n%s", NONCE, body_hex);
	cli_write(f->dir, "resp-bad.txt", text, (size_t)n);
	assert_int_not_equal(cli_run(f->dir, "openssl dgst -sm3 -verify pub.pem -sigopt " DISTID
				    " -signature resp-sig.der resp-bad.txt >/dev/null"),
			     0);
	/* and a response signed by the CLI verifies with gmt_verify_response */
	assert_int_equal(cli_run(f->dir, "openssl dgst -sm3 -sign key.pem -sigopt " DISTID
				" -out cli-resp.der resp.txt && "
				"openssl base64 -A -in cli-resp.der -out cli-resp.b64"),
			 0);
	char *cli_sig = read_text(f, "cli-resp.b64");
	assert_int_equal(gmt_verify_response(f->pub, NONCE, 200, body, strlen(body), cli_sig), 0);
	assert_int_equal(gmt_verify_response(f->pub, NONCE, 500, body, strlen(body), cli_sig),
			 -EBADMSG);
	free(cli_sig);
}

/* An enrollment request MACed by the CLI is accepted. */
static void test_cli_enrollment_mac(void **state)
{
	struct cli_fixture *f = fixture(state);
	static const char target[] = "/gmt0088/v1/auth/platform-key";
	char *pem = read_text(f, "pub.pem");
	char body[1024], body_hex[65], tbs[1024];
	/* the PEM's newlines as JSON escapes */
	size_t o = (size_t)snprintf(body, sizeof(body), "{\"publicKey\":\"");
	for (const char *p = pem; *p && o + 4 < sizeof(body); p++) {
		if (*p == '\n') {
			body[o++] = '\\';
			body[o++] = 'n';
		} else {
			body[o++] = *p;
		}
	}
	assert_true(o + 3 < sizeof(body));
	memcpy(body + o, "\"}", 3);
	free(pem);
	cli_write(f->dir, "enroll.json", body, strlen(body));
	cli_sm3(f, "enroll.json", body_hex);
	int n = snprintf(tbs, sizeof(tbs), "GMT0088-V1\nPUT\n%s\n%s\n%s\nenrollment\n%s", target,
			 TS, NONCE, body_hex);
	cli_write(f->dir, "enroll-tbs.txt", tbs, (size_t)n);
	assert_int_equal(cli_run(f->dir, "openssl dgst -sm3 -hmac " CODE " -binary -out enroll-mac.bin "
				"enroll-tbs.txt && "
				"openssl base64 -A -in enroll-mac.bin -out enroll-mac.b64"),
			 0);
	char *mac = read_text(f, "enroll-mac.b64");

	struct gmt_auth_headers h = {TS, NONCE, "enrollment", "HMAC-SM3", mac, "enroll-1"};
	struct nonce_count nc = {0};
	struct gmt_verifier v = {.now_ms = NOW - 299000, .route_allows_enrollment = true,
				 .enrollment_open = true, .enrollment_code = CODE,
				 .nonce_use = count_nonce, .nonce_ctx = &nc};
	struct gmt_auth_result res;
	assert_int_equal(gmt_verify_request(&h, "PUT", target, body, strlen(body), &v, &res),
			 GMT_OK);
	assert_true(res.enrollment);
	assert_int_equal(nc.calls, 1);
	/* another code does not verify it */
	v.enrollment_code = "ABCDEFGHJKLMNPQRSTUVWXYZ22";
	assert_int_equal(gmt_verify_request(&h, "PUT", target, body, strlen(body), &v, &res),
			 GMT_E_ENROLLMENT);
	assert_true(res.enrollment_mac_bad);
	assert_int_equal(nc.calls, 1);
	free(mac);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fingerprint_matches_cli),
		cmocka_unit_test(test_cli_signed_request),
		cmocka_unit_test(test_module_signed_request),
		cmocka_unit_test(test_response_verified_by_cli),
		cmocka_unit_test(test_cli_enrollment_mac),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
