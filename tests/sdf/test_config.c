/* Unit tests of the SDF library's configuration: endpoints, the strict
 * configuration file parser (a table of bad files), secret files and the
 * environment. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "sdf/sdf_internal.h"

static char dir[64];

static void write_file(const char *name, const void *data, size_t len)
{
	char path[256];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, len, f), len);
	fclose(f);
}

static int setup(void **state)
{
	snprintf(dir, sizeof(dir), "/tmp/sdf-config-XXXXXX");
	assert_non_null(mkdtemp(dir));
	write_file("secret", "0123456789abcdef0123", 20);
	write_file("short", "0123456789abcde", 15);
	char big[65];
	memset(big, 'x', sizeof(big));
	write_file("long", big, sizeof(big));
	write_file("max", big, 64);
	/* base64 of "0123456789abcdef0123", as 7.3.4 takes it */
	write_file("b64", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM=\n", 29);
	write_file("b64-nonl", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM=", 28);
	write_file("b64-2nl", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM=\n\n", 30);
	write_file("b64-space", "MDEyMzQ1Njc4 OWFiY2RlZjAxMjM=\n", 30);
	write_file("b64-nopad", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM\n", 28);
	write_file("b64-short", "MDEyMzQ1Njc4OWFiY2Rl\n", 21); /* 15 bytes */
	return 0;
}

static int teardown(void **state)
{
	const char *names[] = {"secret",   "short",   "long",      "max",       "c.conf",
			       "b64",      "b64-nonl", "b64-2nl",  "b64-space", "b64-nopad",
			       "b64-short"};
	char path[256];
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		unlink(path);
	}
	rmdir(dir);
	return 0;
}

static void test_endpoints(void **state)
{
	char host[SDF_HOST_MAX + 1], port[6];
	assert_int_equal(sdf_parse_endpoint("127.0.0.1:9000", host, port), 0);
	assert_string_equal(host, "127.0.0.1");
	assert_string_equal(port, "9000");
	assert_int_equal(sdf_parse_endpoint("[::1]:65535", host, port), 0);
	assert_string_equal(host, "::1");
	assert_string_equal(port, "65535");
	assert_int_equal(sdf_parse_endpoint("vsm-1.example:1", host, port), 0);
	assert_string_equal(host, "vsm-1.example");
	static const char *const bad[] = {
		"", "host", "host:", ":80", "host:0", "host:65536", "host:080", "host:8a",
		"host:-1", "host:+80", "::1:80", "[::1]80", "[::1]:", "[]:80", "[1.2.3.4]:80",
		"ho st:80", "host:80 ", "[::1:80", "a:b:80", "host:123456",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(sdf_parse_endpoint(bad[i], host, port), -EINVAL);
	assert_int_equal(sdf_parse_endpoint(NULL, host, port), -EINVAL);
}

static void test_good_config(void **state)
{
	static const char text[] =
		"# the VSM of app 1\n"
		"\n"
		"  endpoint = 127.0.0.1:7001\r\n"
		"token_id=app-1\n"
		"\ttoken_secret_file =  secret  \n"
		"# end\n";
	struct sdf_config c;
	assert_int_equal(sdf_config_parse(text, strlen(text), dir, &c), 0);
	assert_string_equal(c.host, "127.0.0.1");
	assert_string_equal(c.port, "7001");
	assert_string_equal(c.token_id, "app-1");
	assert_int_equal(c.secret_len, 20);
	assert_memory_equal(c.secret, "0123456789abcdef0123", 20);
	sdf_config_wipe(&c);

	/* An absolute secret path, a 64-byte secret, through a file. */
	char text2[512];
	int n = snprintf(text2, sizeof(text2),
			 "endpoint = [::1]:7002\ntoken_id = t\ntoken_secret_file = %s/max\n", dir);
	write_file("c.conf", text2, (size_t)n);
	char path[256];
	snprintf(path, sizeof(path), "%s/c.conf", dir);
	assert_int_equal(sdf_config_load_file(path, &c), 0);
	assert_string_equal(c.host, "::1");
	assert_int_equal(c.secret_len, 64);
	sdf_config_wipe(&c);
}

/* A secret file in base64, with or without one final newline, decodes to
 * the same secret as the raw file. */
static void test_base64_secret(void **state)
{
	const char *files[] = {"b64", "b64-nonl"};
	for (size_t i = 0; i < 2; i++) {
		char text[256];
		int n = snprintf(text, sizeof(text),
				 "endpoint = h:1\ntoken_id = t\ntoken_secret_base64_file = %s\n",
				 files[i]);
		struct sdf_config c;
		assert_int_equal(sdf_config_parse(text, (size_t)n, dir, &c), 0);
		assert_int_equal(c.secret_len, 20);
		assert_memory_equal(c.secret, "0123456789abcdef0123", 20);
		sdf_config_wipe(&c);
	}
}

static void test_bad_configs(void **state)
{
	static const struct {
		const char *text;
		int err;
	} cases[] = {
		{"", -EINVAL},
		{"token_id = a\ntoken_secret_file = secret\n", -EINVAL},          /* no endpoint */
		{"endpoint = h:1\ntoken_secret_file = secret\n", -EINVAL},        /* no token_id */
		{"endpoint = h:1\ntoken_id = a\n", -EINVAL},                      /* no secret */
		{"endpoint = h:1\nendpoint = h:2\ntoken_id = a\ntoken_secret_file = secret\n", -EINVAL},
		{"endpoint = h:1\ntoken_id = a\ntoken_secret_file = secret\nport = 3\n", -EINVAL},
		{"endpoint h:1\ntoken_id = a\ntoken_secret_file = secret\n", -EINVAL},
		{"endpoint =\ntoken_id = a\ntoken_secret_file = secret\n", -EINVAL},
		{"endpoint = h\ntoken_id = a\ntoken_secret_file = secret\n", -EINVAL},
		{"endpoint = h:1\ntoken_id = a b\ntoken_secret_file = secret\n", -EINVAL},
		{"endpoint = h:1\ntoken_id = "
		 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n"
		 "token_secret_file = secret\n", -EINVAL},                          /* 65 bytes */
		{"endpoint = h:1\ntoken_id = a\x01\ntoken_secret_file = secret\n", -EINVAL},
		{"Endpoint = h:1\ntoken_id = a\ntoken_secret_file = secret\n", -EINVAL},
		{"endpoint = h:1 # inline\ntoken_id = a\ntoken_secret_file = secret\n", -EINVAL},
		{"endpoint = h:1\ntoken_id = a\ntoken_secret_file = short\n", -EINVAL},
		{"endpoint = h:1\ntoken_id = a\ntoken_secret_file = long\n", -EFBIG},
		{"endpoint = h:1\ntoken_id = a\ntoken_secret_file = missing\n", -ENOENT},
		{"endpoint = h:1\ntoken_id = a\ntoken_secret_file = .\n", -EINVAL},
		/* the base64 form: exactly one of the two secret keys */
		{"endpoint = h:1\ntoken_id = a\ntoken_secret_file = secret\n"
		 "token_secret_base64_file = b64\n", -EINVAL},
		{"endpoint = h:1\ntoken_id = a\ntoken_secret_base64_file = secret\n", -EINVAL},
		{"endpoint = h:1\ntoken_id = a\ntoken_secret_base64_file = b64-2nl\n", -EINVAL},
		{"endpoint = h:1\ntoken_id = a\ntoken_secret_base64_file = b64-space\n", -EINVAL},
		{"endpoint = h:1\ntoken_id = a\ntoken_secret_base64_file = b64-nopad\n", -EINVAL},
		{"endpoint = h:1\ntoken_id = a\ntoken_secret_base64_file = b64-short\n", -EINVAL},
		{"endpoint = h:1\ntoken_id = a\ntoken_secret_base64_file = long\n", -EINVAL},
		{"endpoint = h:1\ntoken_id = a\ntoken_secret_base64_file = missing\n", -ENOENT},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sdf_config c;
		memset(&c, 0x5a, sizeof(c));
		int r = sdf_config_parse(cases[i].text, strlen(cases[i].text), dir, &c);
		if (r != cases[i].err)
			fail_msg("case %zu: %d, expected %d", i, r, cases[i].err);
		assert_int_equal(c.host[0], 0x5a); /* untouched */
	}
	/* A NUL inside the text. */
	struct sdf_config c;
	assert_int_equal(sdf_config_parse("endpoint = h:1\0", 15, dir, &c), -EINVAL);
}

static void test_env(void **state)
{
	char secret[256];
	snprintf(secret, sizeof(secret), "%s/secret", dir);
	unsetenv("OPENCHSM_SDF_CONFIG");
	setenv("OPENCHSM_SDF_ENDPOINT", "localhost:7003", 1);
	setenv("OPENCHSM_SDF_TOKEN_ID", "env-token", 1);
	setenv("OPENCHSM_SDF_TOKEN_SECRET_FILE", secret, 1);
	struct sdf_config c;
	assert_int_equal(sdf_config_from_env(&c), 0);
	assert_string_equal(c.host, "localhost");
	assert_string_equal(c.token_id, "env-token");
	sdf_config_wipe(&c);

	/* A configuration file takes precedence over the variables. */
	char text[512], path[256];
	int n = snprintf(text, sizeof(text),
			 "endpoint = 10.0.0.1:7004\ntoken_id = file-token\ntoken_secret_file = secret\n");
	write_file("c.conf", text, (size_t)n);
	snprintf(path, sizeof(path), "%s/c.conf", dir);
	setenv("OPENCHSM_SDF_CONFIG", path, 1);
	assert_int_equal(sdf_config_from_env(&c), 0);
	assert_string_equal(c.token_id, "file-token");
	assert_string_equal(c.port, "7004");
	sdf_config_wipe(&c);

	unsetenv("OPENCHSM_SDF_CONFIG");
	unsetenv("OPENCHSM_SDF_TOKEN_ID");
	assert_int_equal(sdf_config_from_env(&c), -EINVAL);
	void *dev = NULL;
	assert_int_equal(SDF_OpenDevice(&dev), SDR_OPENDEVICE);
	assert_null(dev);
	assert_int_equal(SDFX_OpenDeviceWithConfig(path, &dev), SDR_OK);
	assert_int_equal(SDF_CloseDevice(dev), SDR_OK);
	assert_int_equal(SDF_CloseDevice(NULL), SDR_INARGERR);

	/* The base64 secret variable; both secret variables at once is refused. */
	char b64[256];
	snprintf(b64, sizeof(b64), "%s/b64", dir);
	setenv("OPENCHSM_SDF_TOKEN_ID", "env-token", 1);
	setenv("OPENCHSM_SDF_TOKEN_SECRET_BASE64_FILE", b64, 1);
	assert_int_equal(sdf_config_from_env(&c), -EINVAL);
	unsetenv("OPENCHSM_SDF_TOKEN_SECRET_FILE");
	assert_int_equal(sdf_config_from_env(&c), 0);
	assert_int_equal(c.secret_len, 20);
	assert_memory_equal(c.secret, "0123456789abcdef0123", 20);
	sdf_config_wipe(&c);
	unsetenv("OPENCHSM_SDF_TOKEN_ID");
	unsetenv("OPENCHSM_SDF_ENDPOINT");
	unsetenv("OPENCHSM_SDF_TOKEN_SECRET_BASE64_FILE");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_endpoints),
		cmocka_unit_test(test_good_config),
		cmocka_unit_test(test_base64_secret),
		cmocka_unit_test(test_bad_configs),
		cmocka_unit_test(test_env),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
