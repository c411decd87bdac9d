/* Unit tests of proto/codes: every Appendix A code with its HTTP status. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "proto/codes.h"

/* Appendix A of PROFILE.md, written out independently of codes.c. */
static const struct {
	int code;
	int http;
} appendix_a[] = {
	{0, 200},
	{1001, 400}, {1002, 400}, {1003, 400}, {1004, 404}, {1005, 405}, {1006, 413},
	{1007, 415},
	{2001, 401}, {2002, 401}, {2003, 401}, {2004, 401}, {2005, 403}, {2006, 401},
	{2007, 401},
	{3001, 404}, {3002, 409}, {3003, 409}, {3004, 409}, {3005, 409}, {3006, 404},
	{3007, 409}, {3008, 429}, {3009, 409}, {3010, 409},
	{4001, 422}, {4002, 422}, {4003, 422}, {4004, 502}, {4005, 502}, {4006, 422},
	{4007, 422}, {4008, 422},
	{5000, 500}, {5001, 500}, {5002, 500}, {5003, 503},
};
#define N_CODES (sizeof(appendix_a) / sizeof(appendix_a[0]))

static void test_every_code(void **state)
{
	for (size_t i = 0; i < N_CODES; i++) {
		int code = appendix_a[i].code;
		assert_true(gmt_code_known(code));
		assert_int_equal(gmt_code_http_status(code), appendix_a[i].http);
		const char *m = gmt_code_message(code);
		assert_non_null(m);
		assert_true(strlen(m) > 0);
		/* each message is its own */
		for (size_t j = 0; j < i; j++)
			assert_string_not_equal(m, gmt_code_message(appendix_a[j].code));
	}
}

static void test_only_appendix_codes(void **state)
{
	size_t known = 0;
	for (int code = -10; code < 7000; code++)
		if (gmt_code_known(code))
			known++;
	assert_int_equal(known, N_CODES);
}

static void test_messages(void **state)
{
	assert_string_equal(gmt_code_message(GMT_OK), "OK");
	assert_string_equal(gmt_code_message(GMT_E_NOT_JSON_OBJECT), "body is not a JSON object");
	assert_string_equal(gmt_code_message(GMT_E_PARAM_MISSING), "required parameter missing");
	assert_string_equal(gmt_code_message(GMT_E_SIGNATURE), "signature invalid");
	assert_string_equal(gmt_code_message(GMT_E_NO_PLATFORM_KEY), "platform key not configured");
	assert_string_equal(gmt_code_message(GMT_E_IDEMPOTENCY_REUSED),
			    "idempotency key reused for another request");
	assert_string_equal(gmt_code_message(GMT_E_STORAGE), "storage error");
}

static void test_unknown_code(void **state)
{
	static const int unknown[] = {-1, 1, 200, 1000, 1008, 2000, 2008, 3011, 4009, 5004, 9999};
	for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++) {
		assert_false(gmt_code_known(unknown[i]));
		assert_int_equal(gmt_code_http_status(unknown[i]), 500);
		assert_string_equal(gmt_code_message(unknown[i]), "internal error");
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_code),
		cmocka_unit_test(test_only_appendix_codes),
		cmocka_unit_test(test_messages),
		cmocka_unit_test(test_unknown_code),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
