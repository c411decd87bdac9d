/*
 * Unit tests of the client library that need no CHSM: option checks of
 * chsm_client_new (including the refusal to run unauthenticated), key
 * generation and key files, error strings, and freeing.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "common/util.h"
#include "crypto/crypto.h"
#include "openchsm/chsm_client.h"

#define FP "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF"

static char dir[] = "/tmp/chsm-keys-XXXXXX";
static char key_path[256], pub_path[256], junk_path[256];

static int setup(void **state)
{
	assert_non_null(mkdtemp(dir));
	snprintf(key_path, sizeof(key_path), "%s/key.pem", dir);
	snprintf(pub_path, sizeof(pub_path), "%s/pub.pem", dir);
	snprintf(junk_path, sizeof(junk_path), "%s/junk.pem", dir);
	return 0;
}

static int teardown(void **state)
{
	unlink(key_path);
	unlink(pub_path);
	unlink(junk_path);
	rmdir(dir);
	return 0;
}

static void write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
}

/* keygen writes a loadable PKCS#8 key of mode 0600 whatever the umask, and
 * never replaces an existing file or follows a planted link. */
static void test_keygen(void **state)
{
	char fp[CHSM_CLIENT_FINGERPRINT_LEN + 1], fp2[CHSM_CLIENT_FINGERPRINT_LEN + 1];
	mode_t old = umask(0);
	assert_int_equal(chsm_client_keygen(key_path, fp), 0);
	umask(old);
	struct stat st;
	assert_int_equal(stat(key_path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);

	char *pem = NULL;
	size_t len = 0;
	crypto_sm2_key *key = NULL;
	assert_int_equal(chsm_read_file(key_path, 65536, &pem, &len), 0);
	assert_non_null(strstr(pem, "-----BEGIN PRIVATE KEY-----"));
	assert_int_equal(crypto_sm2_load_private_pem(pem, len, &key), 0);
	assert_true(crypto_sm2_key_has_private(key));
	assert_int_equal(crypto_sm2_fingerprint(key, fp2), 0);
	assert_string_equal(fp, fp2);
	assert_int_equal(strlen(fp), 64);
	crypto_sm2_key_free(key);

	/* refuses to overwrite; the file keeps its content */
	assert_int_equal(chsm_client_keygen(key_path, fp2), -EEXIST);
	char *again = NULL;
	assert_int_equal(chsm_read_file(key_path, 65536, &again, &len), 0);
	assert_string_equal(pem, again);
	crypto_free_secret(pem, strlen(pem));
	crypto_free_secret(again, strlen(again));

	/* a dangling symbolic link is not followed */
	char link_path[300], target[300];
	snprintf(link_path, sizeof(link_path), "%s/link.pem", dir);
	snprintf(target, sizeof(target), "%s/target.pem", dir);
	assert_int_equal(symlink(target, link_path), 0);
	assert_int_equal(chsm_client_keygen(link_path, NULL), -EEXIST);
	assert_int_equal(access(target, F_OK), -1);
	unlink(link_path);

	/* a missing directory, no path */
	assert_int_equal(chsm_client_keygen("/nonexistent/dir/k.pem", NULL), -ENOENT);
	assert_int_equal(chsm_client_keygen(NULL, NULL), -EINVAL);
	assert_int_equal(chsm_client_keygen("", NULL), -EINVAL);

	/* two keys differ */
	char other[300];
	snprintf(other, sizeof(other), "%s/other.pem", dir);
	assert_int_equal(chsm_client_keygen(other, fp2), 0);
	assert_string_not_equal(fp, fp2);
	unlink(other);
}

static void test_key_info(void **state)
{
	char fp[CHSM_CLIENT_FINGERPRINT_LEN + 1], fp_pub[CHSM_CLIENT_FINGERPRINT_LEN + 1];
	char *pub = NULL, *pub2 = NULL;
	unlink(key_path);
	assert_int_equal(chsm_client_keygen(key_path, NULL), 0);
	assert_int_equal(chsm_client_key_info(key_path, &pub, fp), 0);
	assert_non_null(strstr(pub, "-----BEGIN PUBLIC KEY-----"));
	assert_null(strstr(pub, "PRIVATE"));
	write_text(pub_path, pub);
	assert_int_equal(chsm_client_key_info(pub_path, &pub2, fp_pub), 0);
	assert_string_equal(pub, pub2);
	assert_string_equal(fp, fp_pub);
	assert_int_equal(chsm_client_key_info(pub_path, NULL, NULL), 0);
	free(pub);
	free(pub2);

	write_text(junk_path, "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n");
	assert_int_equal(chsm_client_key_info(junk_path, &pub, fp), -EINVAL);
	assert_int_equal(chsm_client_key_info("/nonexistent.pem", &pub, fp), -ENOENT);
	assert_int_equal(chsm_client_key_info(dir, &pub, fp), -EINVAL);
	assert_int_equal(chsm_client_key_info(NULL, &pub, fp), -EINVAL);
}

static int try_new(const char *url, const char *key, const char *fp, const char *ca,
		   bool insecure)
{
	struct chsm_client_options o = {.url = url, .platform_key_path = key,
					.device_fingerprint = fp, .cacert_path = ca,
					.insecure = insecure};
	chsm_client *cl = NULL;
	int r = chsm_client_new(&o, &cl);
	if (r == 0)
		assert_non_null(cl);
	chsm_client_free(cl);
	return r;
}

static void test_new_options(void **state)
{
	unlink(key_path);
	assert_int_equal(chsm_client_keygen(key_path, NULL), 0);
	char *pub = NULL;
	assert_int_equal(chsm_client_key_info(key_path, &pub, NULL), 0);
	write_text(pub_path, pub);
	free(pub);
	write_text(junk_path, "not a key\n");

	/* accepted */
	assert_int_equal(try_new("https://chsm.example:8443", key_path, FP, NULL, false), 0);
	assert_int_equal(try_new("https://chsm.example:8443/", NULL, FP, NULL, false), 0);
	assert_int_equal(try_new("https://10.0.0.1", NULL, NULL, "/etc/ca.pem", false), 0);
	assert_int_equal(try_new("https://[fd00::1]:8443", NULL, NULL, NULL, true), 0);
	assert_int_equal(try_new("http://127.0.0.1:8080", NULL, FP, NULL, true), 0);

	/* nothing would authenticate the CHSM, or plain http without insecure */
	assert_int_equal(try_new("https://h:1", key_path, NULL, NULL, false),
			 CHSM_CLIENT_E_UNTRUSTED);
	assert_int_equal(try_new("http://127.0.0.1:8080", NULL, FP, NULL, false),
			 CHSM_CLIENT_E_UNTRUSTED);
	assert_int_equal(try_new("http://127.0.0.1:8080", NULL, NULL, "/ca.pem", false),
			 CHSM_CLIENT_E_UNTRUSTED);

	/* malformed URLs and fingerprints */
	static const char *const bad_urls[] = {
		NULL, "", "chsm.example", "ftp://h", "https://", "https:///x", "https://h/gmt0088",
		"https://h?x=1", "https://h#f", "https://h:1//", "https://h h", "file:///etc/passwd",
	};
	for (size_t i = 0; i < sizeof(bad_urls) / sizeof(bad_urls[0]); i++)
		if (try_new(bad_urls[i], NULL, FP, NULL, true) != -EINVAL)
			fail_msg("URL '%s' accepted", bad_urls[i] ? bad_urls[i] : "(null)");
	assert_int_equal(try_new("https://h", NULL, "abc", NULL, false), -EINVAL);
	assert_int_equal(try_new("https://h", NULL, FP "0", NULL, false), -EINVAL);
	assert_int_equal(
		try_new("https://h", NULL,
			"g0112233445566778899aabbccddeeff00112233445566778899aabbccddeeff", NULL,
			false),
		-EINVAL);

	/* the platform key must be an SM2 key pair */
	assert_int_equal(try_new("https://h", "/nonexistent.pem", FP, NULL, false), -ENOENT);
	assert_int_equal(try_new("https://h", junk_path, FP, NULL, false), -EINVAL);
	assert_int_equal(try_new("https://h", pub_path, FP, NULL, false), -EINVAL);

	chsm_client *cl = NULL;
	assert_int_equal(chsm_client_new(NULL, &cl), -EINVAL);
	struct chsm_client_options o = {.url = "https://h", .device_fingerprint = FP,
					.timeout_ms = -1};
	assert_int_equal(chsm_client_new(&o, &cl), -EINVAL);
	assert_null(cl);
	chsm_client_free(NULL);
	assert_string_equal(chsm_client_last_error(NULL), "");
}

static void test_strerror(void **state)
{
	static const int own[] = {CHSM_CLIENT_E_TRANSPORT, CHSM_CLIENT_E_DEVICE_SIGNATURE,
				  CHSM_CLIENT_E_DEVICE_KEY, CHSM_CLIENT_E_UNTRUSTED,
				  CHSM_CLIENT_E_BAD_RESPONSE, CHSM_CLIENT_E_NO_KEY};
	for (size_t i = 0; i < sizeof(own) / sizeof(own[0]); i++) {
		const char *s = chsm_client_strerror(own[i]);
		assert_non_null(s);
		assert_string_not_equal(s, "unknown error");
		for (size_t j = 0; j < i; j++)
			assert_string_not_equal(s, chsm_client_strerror(own[j]));
	}
	assert_string_equal(chsm_client_strerror(CHSM_CLIENT_E_DEVICE_SIGNATURE),
			    "device signature invalid");
	assert_string_equal(chsm_client_strerror(-ENOENT), strerror(ENOENT));
	assert_string_equal(chsm_client_strerror(-99999), "unknown error");
	assert_string_equal(chsm_client_strerror(0), "success");
}

static void test_response_free(void **state)
{
	struct chsm_client_response r = {0};
	chsm_client_response_free(NULL);
	chsm_client_response_free(&r);
	r.message = strdup("m");
	r.request_id = strdup("req-1");
	r.data = strdup("{}");
	r.body = strdup("{}");
	r.code = 5;
	chsm_client_response_free(&r);
	assert_null(r.message);
	assert_null(r.data);
	assert_int_equal(r.code, 0);
	chsm_client_response_free(&r); /* twice is harmless */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_keygen),
		cmocka_unit_test(test_key_info),
		cmocka_unit_test(test_new_options),
		cmocka_unit_test(test_strerror),
		cmocka_unit_test(test_response_free),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
