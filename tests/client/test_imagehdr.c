/*
 * Unit tests of chsm_client_image_header (src/client/imagehdr.c): image
 * files written here byte by byte after docs/image-format.md, read through
 * file:// URLs: a good header of each type, and a table of malformed
 * prologues and headers that must be CHSM_CLIENT_E_BAD_IMAGE. The reader
 * never needs more than the prologue and the header: a file that ends right
 * after them is enough.
 */
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

#include <jansson.h>

#include "openchsm/chsm_client.h"

static char tmpdir[] = "/tmp/chsm-imagehdr-XXXXXX";
static char path[512], url[600];

static int setup(void **state)
{
	assert_non_null(mkdtemp(tmpdir));
	snprintf(path, sizeof(path), "%s/img", tmpdir);
	snprintf(url, sizeof(url), "file://%s", path);
	return 0;
}

static int teardown(void **state)
{
	unlink(path);
	rmdir(tmpdir);
	return 0;
}

/* Writes magic, type, version, flags, header length (as claimed), the
 * header bytes and tail_len bytes of payload. */
static void write_image(const char *magic, int type, int version, int flags, uint32_t claimed,
			const char *header, size_t tail_len)
{
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	uint8_t p[16];
	memcpy(p, magic, 8);
	p[8] = (uint8_t)type;
	p[9] = (uint8_t)version;
	p[10] = (uint8_t)(flags >> 8);
	p[11] = (uint8_t)flags;
	p[12] = (uint8_t)(claimed >> 24);
	p[13] = (uint8_t)(claimed >> 16);
	p[14] = (uint8_t)(claimed >> 8);
	p[15] = (uint8_t)claimed;
	assert_int_equal(fwrite(p, 1, 16, f), 16);
	assert_int_equal(fwrite(header, 1, strlen(header), f), strlen(header));
	for (size_t i = 0; i < tail_len; i++)
		fputc(0xA5, f);
	assert_int_equal(fclose(f), 0);
}

#define VSM_HEADER                                                                        \
	"{\"formatVersion\":1,\"type\":\"vsm-image\",\"imageId\":\"img-1\",\"contents\":" \
	"{\"vsmId\":\"v1\",\"keyCount\":2}}"

static void test_good_headers(void **state)
{
	static const char *const types[] = {NULL, "vsm-image", "chsm-image", "backup", "package"};
	for (int t = 1; t <= 4; t++) {
		char header[256], *json = NULL, err[256];
		int type = 0;
		snprintf(header, sizeof(header), "{\"formatVersion\":1,\"type\":\"%s\"}", types[t]);
		/* a payload far larger than the header: only the header is read */
		write_image("OCHSMIMG", t, 1, 0, (uint32_t)strlen(header), header, 300000);
		assert_int_equal(chsm_client_image_header(url, NULL, 0, &json, &type, err,
							  sizeof(err)),
				 0);
		assert_int_equal(type, t);
		json_t *h = json_loads(json, 0, NULL);
		assert_string_equal(json_string_value(json_object_get(h, "type")), types[t]);
		json_decref(h);
		free(json);
	}
	/* the file may end right after the header */
	char *json = NULL;
	int type = 0;
	write_image("OCHSMIMG", 1, 1, 0, (uint32_t)strlen(VSM_HEADER), VSM_HEADER, 0);
	assert_int_equal(chsm_client_image_header(url, NULL, 5000, &json, &type, NULL, 0), 0);
	json_t *h = json_loads(json, 0, NULL);
	json_t *c = json_object_get(h, "contents");
	assert_string_equal(json_string_value(json_object_get(c, "vsmId")), "v1");
	assert_int_equal(json_integer_value(json_object_get(c, "keyCount")), 2);
	json_decref(h);
	free(json);
}

static void test_bad_images(void **state)
{
	static const struct {
		const char *magic;
		int type, version, flags;
		long claimed; /* -1: the header's length */
		const char *header;
		const char *why;
	} cases[] = {
		{"OCHSMIMX", 1, 1, 0, -1, VSM_HEADER, "magic"},
		{"OCHSMIMG", 1, 2, 0, -1, VSM_HEADER, "version"},
		{"OCHSMIMG", 1, 1, 1, -1, VSM_HEADER, "flags"},
		{"OCHSMIMG", 0, 1, 0, -1, VSM_HEADER, "type 0"},
		{"OCHSMIMG", 5, 1, 0, -1, VSM_HEADER, "type 5"},
		{"OCHSMIMG", 2, 1, 0, -1, VSM_HEADER, "type byte and header disagree"},
		{"OCHSMIMG", 1, 1, 0, 1, VSM_HEADER, "header length 1"},
		{"OCHSMIMG", 1, 1, 0, 256 * 1024 + 1, VSM_HEADER, "header length over the bound"},
		{"OCHSMIMG", 1, 1, 0, 0xffffffffL, VSM_HEADER, "header length 2^32-1"},
		{"OCHSMIMG", 1, 1, 0, 1000, VSM_HEADER, "file ends inside the header"},
		{"OCHSMIMG", 1, 1, 0, -1, "[1,2]", "header not an object"},
		{"OCHSMIMG", 1, 1, 0, -1, "{\"formatVersion\":1,\"type\":\"vsm-image\"", "bad JSON"},
		{"OCHSMIMG", 1, 1, 0, -1,
		 "{\"formatVersion\":1,\"type\":\"vsm-image\",\"type\":\"vsm-image\"}", "duplicate key"},
		{"OCHSMIMG", 1, 1, 0, -1, "{\"formatVersion\":2,\"type\":\"vsm-image\"}",
		 "formatVersion 2"},
		{"OCHSMIMG", 1, 1, 0, -1, "{\"type\":\"vsm-image\"}", "no formatVersion"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *json = NULL, err[256];
		int type = 0;
		uint32_t claimed = cases[i].claimed < 0 ? (uint32_t)strlen(cases[i].header)
							: (uint32_t)cases[i].claimed;
		write_image(cases[i].magic, cases[i].type, cases[i].version, cases[i].flags, claimed,
			    cases[i].header, 0);
		int r = chsm_client_image_header(url, NULL, 0, &json, &type, err, sizeof(err));
		if (r != CHSM_CLIENT_E_BAD_IMAGE)
			fail_msg("%s: %d, expected CHSM_CLIENT_E_BAD_IMAGE", cases[i].why, r);
		assert_null(json);
		assert_true(err[0] != '\0');
	}
	/* shorter than a prologue */
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	fputs("OCHSM", f);
	fclose(f);
	char *json = NULL;
	int type = 0;
	assert_int_equal(chsm_client_image_header(url, NULL, 0, &json, &type, NULL, 0),
			 CHSM_CLIENT_E_BAD_IMAGE);
}

static void test_unreadable_and_bad_arguments(void **state)
{
	char *json = NULL, err[256];
	int type = 0;
	char missing[600];
	snprintf(missing, sizeof(missing), "file://%s/nosuch", tmpdir);
	assert_int_equal(chsm_client_image_header(missing, NULL, 0, &json, &type, err, sizeof(err)),
			 CHSM_CLIENT_E_TRANSPORT);
	assert_true(err[0] != '\0');
	assert_int_equal(chsm_client_image_header("ftp://h/x", NULL, 0, &json, &type, NULL, 0),
			 -EINVAL);
	assert_int_equal(chsm_client_image_header(NULL, NULL, 0, &json, &type, NULL, 0), -EINVAL);
	assert_int_equal(chsm_client_image_header(url, NULL, -1, &json, &type, NULL, 0), -EINVAL);
	/* nothing listens on port 1 of loopback */
	assert_int_equal(chsm_client_image_header("http://127.0.0.1:1/x", NULL, 2000, &json, &type,
						  err, sizeof(err)),
			 CHSM_CLIENT_E_TRANSPORT);
	assert_null(json);
}

/* chsm_client_drift refuses bad options before contacting anything. */
static void test_drift_bad_options(void **state)
{
	struct chsm_client_drift_result res;
	struct chsm_client_options co = {.url = "https://127.0.0.1:1", .insecure = true};
	chsm_client *cl = NULL;
	assert_int_equal(chsm_client_new(&co, &cl), 0);
	const char *sm3 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
	struct chsm_client_drift_options bad[] = {
		{.vsm_id = NULL, .target_vsm_id = "v2"},
		{.vsm_id = "v1", .target_vsm_id = "a/b"},
		{.vsm_id = "v1", .target_vsm_id = "v2", .image_url = "file:///x"},
		{.vsm_id = "v1", .target_vsm_id = "v2", .image_sm3 = sm3},
		{.vsm_id = "v1", .target_vsm_id = "v2", .image_url = "file:///x", .image_sm3 = "ab"},
		{.vsm_id = "v1", .target_vsm_id = "v2", .timeout_ms = -1},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(chsm_client_drift(cl, cl, &bad[i], NULL, NULL, &res), -EINVAL);
	struct chsm_client_drift_options no_image = {.vsm_id = "v1", .target_vsm_id = "v2"};
	assert_int_equal(chsm_client_drift(NULL, cl, &no_image, NULL, NULL, &res), -EINVAL);
	assert_string_equal(chsm_client_drift_step_name(CHSM_DRIFT_CHECK_SOURCE), "check-source");
	assert_string_equal(chsm_client_drift_step_name(CHSM_DRIFT_VERIFY), "verify");
	assert_string_equal(chsm_client_drift_step_name((enum chsm_client_drift_step)99), "?");
	chsm_client_drift_result_free(NULL);
	chsm_client_free(cl);
}

/* A lost source without an image is refused, and the result says why. */
static void test_drift_lost_source_refused(void **state)
{
	struct chsm_client_drift_result res;
	struct chsm_client_options co = {.url = "https://127.0.0.1:1", .insecure = true,
					 .connect_timeout_ms = 2000};
	chsm_client *from = NULL, *to = NULL;
	assert_int_equal(chsm_client_new(&co, &from), 0);
	assert_int_equal(chsm_client_new(&co, &to), 0);
	struct chsm_client_drift_options o = {.vsm_id = "v1", .target_vsm_id = "v2"};
	assert_int_equal(chsm_client_drift(from, to, &o, NULL, NULL, &res),
			 CHSM_CLIENT_E_DRIFT_REFUSED);
	assert_int_equal(res.failed_step, CHSM_DRIFT_CHECK_SOURCE);
	assert_false(res.source_answered);
	assert_non_null(strstr(res.message, "does not answer"));
	json_t *j = json_loads(res.json, 0, NULL);
	assert_string_equal(json_string_value(json_object_get(j, "failedStep")), "check-source");
	assert_int_equal(json_array_size(json_object_get(j, "steps")), 1);
	json_decref(j);
	chsm_client_drift_result_free(&res);
	assert_null(res.json);
	chsm_client_free(from);
	chsm_client_free(to);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good_headers),
		cmocka_unit_test(test_bad_images),
		cmocka_unit_test(test_unreadable_and_bad_arguments),
		cmocka_unit_test(test_drift_bad_options),
		cmocka_unit_test(test_drift_lost_source_refused),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
