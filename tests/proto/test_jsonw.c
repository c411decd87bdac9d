/* Unit tests of proto/jsonw: every value it writes is compared with what
 * jansson's json_dumps prints for the same value (GMT_JSON_DUMP_FLAGS),
 * on edge values and on generated ones; failures are reported. */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "proto/codes.h"
#include "proto/envelope.h"
#include "proto/jsonw.h"

/* jansson's text for v (stolen). */
static char *jansson_text(json_t *v)
{
	assert_non_null(v);
	char *s = json_dumps(v, GMT_JSON_DUMP_FLAGS | JSON_ENCODE_ANY);
	json_decref(v);
	assert_non_null(s);
	return s;
}

/* Finishes w and checks its text equals expected (freed). */
static void expect_text(struct gmt_jsonw *w, char *expected)
{
	char *text = NULL;
	size_t len = 0;
	assert_int_equal(gmt_jsonw_finish(w, &text, &len), 0);
	assert_string_equal(text, expected);
	assert_int_equal(len, strlen(expected));
	free(text);
	free(expected);
}

static void check_real(double v)
{
	struct gmt_jsonw w;
	gmt_jsonw_init(&w, 0);
	gmt_jsonw_real(&w, v);
	expect_text(&w, jansson_text(json_real(v)));
}

static void check_tenths(int64_t t)
{
	struct gmt_jsonw w;
	gmt_jsonw_init(&w, 0);
	gmt_jsonw_tenths(&w, t);
	expect_text(&w, jansson_text(json_real((double)t / 10)));
}

static void check_int(int64_t v)
{
	struct gmt_jsonw w;
	gmt_jsonw_init(&w, 0);
	gmt_jsonw_int(&w, v);
	expect_text(&w, jansson_text(json_integer(v)));
}

/* Deterministic 64-bit generator (xorshift), so a failure repeats. */
static uint64_t next_rand(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

static void test_reals_edges(void **state)
{
	(void)state;
	static const double edges[] = {
		0.0, -0.0, 0.1, 0.5, 1.0, -1.0, 3650.0, 12.3, 99.9, 100.0, 1e-4, 1e-5, 1.5e-7,
		-2.5e-300, 5e-324, DBL_MIN, DBL_MAX, -DBL_MAX, 1e11, 1e12, 1e21, 123456789012.5,
		999999999999.0, 1000000000000.0, 0.30000000000000004, 1.0 / 3, 2.0 / 3, 1e100,
		4503599627370496.5, 9007199254740993.0};
	for (size_t i = 0; i < sizeof(edges) / sizeof(edges[0]); i++)
		check_real(edges[i]);
}

static void test_reals_generated(void **state)
{
	(void)state;
	uint64_t x = 0x9e3779b97f4a7c15ULL;
	for (int i = 0; i < 20000; i++) {
		uint64_t bits = next_rand(&x);
		double v;
		memcpy(&v, &bits, sizeof(v));
		if (isfinite(v))
			check_real(v);
		/* and numbers of the sizes the answers hold */
		check_real((double)(next_rand(&x) % 100000000) / 1000.0);
	}
}

static void test_tenths(void **state)
{
	(void)state;
	for (int64_t t = -2000; t <= 200000; t++)
		check_tenths(t);
	static const int64_t edges[] = {99999999999LL, -99999999999LL, 100000000000LL,
					-100000000000LL, 123456789012345LL, INT32_MAX, INT32_MIN,
					INT64_MAX, INT64_MIN + 1};
	for (size_t i = 0; i < sizeof(edges) / sizeof(edges[0]); i++)
		check_tenths(edges[i]);
	uint64_t x = 12345;
	for (int i = 0; i < 20000; i++)
		check_tenths((int64_t)(next_rand(&x) % 200000000000ULL) - 100000000000LL);
}

static void test_integers(void **state)
{
	(void)state;
	static const int64_t edges[] = {0, 1, -1, 9, 10, -10, INT32_MAX, INT32_MIN, INT64_MAX,
					INT64_MIN, 1764100000000LL};
	for (size_t i = 0; i < sizeof(edges) / sizeof(edges[0]); i++)
		check_int(edges[i]);
	uint64_t x = 777;
	for (int i = 0; i < 10000; i++)
		check_int((int64_t)next_rand(&x));
}

static void test_strings(void **state)
{
	(void)state;
	static const char *const cases[] = {
		"", "vsm-0001", "running", "a \"quoted\" word", "back\\slash", "tab\there",
		"line\nbreak\r\n", "\x01\x1f control", "del \x7f", "slash / too", "caf\xc3\xa9",
		"\xe4\xb8\xad\xe6\x96\x87", "\xf0\x9f\x94\x91 key", "\b\f"};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct gmt_jsonw w;
		gmt_jsonw_init(&w, 0);
		gmt_jsonw_string(&w, cases[i]);
		expect_text(&w, jansson_text(json_string(cases[i])));
	}
	struct gmt_jsonw w;
	gmt_jsonw_init(&w, 0);
	gmt_jsonw_string(&w, NULL);
	expect_text(&w, strdup("null"));
}

/* Invalid UTF-8 and reals that are not finite fail the writer, which
 * then ignores what follows and reports -EINVAL once. */
static void test_failures(void **state)
{
	(void)state;
	static const char *const bad[] = {"\xff", "ab\xc3", "\xc0\xaf", "\xed\xa0\x80"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct gmt_jsonw w;
		char *text = NULL;
		size_t len = 0;
		gmt_jsonw_init(&w, 0);
		gmt_jsonw_lit(&w, "[");
		gmt_jsonw_string(&w, bad[i]);
		gmt_jsonw_lit(&w, "]");
		assert_int_equal(gmt_jsonw_finish(&w, &text, &len), -EINVAL);
		assert_null(text);
	}
	const double nonfinite[] = {INFINITY, -INFINITY, NAN};
	for (size_t i = 0; i < 3; i++) {
		struct gmt_jsonw w;
		char *text = NULL;
		size_t len = 0;
		gmt_jsonw_init(&w, 0);
		gmt_jsonw_real(&w, nonfinite[i]);
		gmt_jsonw_int(&w, 1);
		assert_int_equal(gmt_jsonw_finish(&w, &text, &len), -EINVAL);
	}
	/* a freed writer can be freed again */
	struct gmt_jsonw w;
	gmt_jsonw_init(&w, 0);
	gmt_jsonw_free(&w);
	gmt_jsonw_free(&w);
}

/* A generated object written both ways, growing the buffer from 1 byte. */
static void test_object_generated(void **state)
{
	(void)state;
	uint64_t x = 4242;
	for (int round = 0; round < 200; round++) {
		json_t *ref = json_object(), *arr = json_array();
		struct gmt_jsonw w;
		gmt_jsonw_init(&w, 1);
		gmt_jsonw_lit(&w, "{\"list\":[");
		int n = (int)(next_rand(&x) % 40);
		for (int i = 0; i < n; i++) {
			int64_t k = (int64_t)(next_rand(&x) % 2000000) - 1000;
			double r = (double)(next_rand(&x) % 10000000) / 100.0;
			json_t *o = json_pack("{s:I,s:f,s:f,s:s,s:n}", "k", (json_int_t)k, "t",
					      (double)k / 10, "r", r, "s", i % 2 ? "x\"y" : "plain", "n");
			json_array_append_new(arr, o);
			if (i)
				gmt_jsonw_lit(&w, ",");
			gmt_jsonw_lit(&w, "{\"k\":");
			gmt_jsonw_int(&w, k);
			gmt_jsonw_lit(&w, ",\"t\":");
			gmt_jsonw_tenths(&w, k);
			gmt_jsonw_lit(&w, ",\"r\":");
			gmt_jsonw_real(&w, r);
			gmt_jsonw_lit(&w, ",\"s\":");
			gmt_jsonw_string(&w, i % 2 ? "x\"y" : "plain");
			gmt_jsonw_lit(&w, ",\"n\":");
			gmt_jsonw_json(&w, NULL);
			gmt_jsonw_lit(&w, "}");
		}
		gmt_jsonw_lit(&w, "],\"nested\":");
		json_t *nested = json_pack("{s:[i,f,b],s:o}", "a", 1, 2.5, 1, "b", json_object());
		gmt_jsonw_json(&w, nested);
		gmt_jsonw_lit(&w, "}");
		json_object_set_new(ref, "list", arr);
		json_object_set_new(ref, "nested", nested);
		expect_text(&w, jansson_text(ref));
	}
}

/* gmt_envelope_text gives gmt_envelope's bytes; it refuses what it must. */
static void test_envelope_text(void **state)
{
	(void)state;
	json_t *data = json_pack("{s:s,s:[i,f]}", "a", "b", "c", 1, 0.5);
	char *dtext = json_dumps(data, GMT_JSON_DUMP_FLAGS);
	char *want = NULL, *got = NULL;
	size_t want_len = 0, got_len = 0;
	assert_int_equal(gmt_envelope(GMT_OK, NULL, "req-1", data, &want, &want_len), 0);
	assert_int_equal(gmt_envelope_text(GMT_OK, NULL, "req-1", dtext, strlen(dtext), &got,
					   &got_len), 0);
	assert_string_equal(got, want);
	assert_int_equal(got_len, want_len);
	free(got);
	free(want);
	assert_int_equal(gmt_envelope_text(GMT_E_INTERNAL, NULL, "req-1", dtext, strlen(dtext),
					   &got, &got_len), -EINVAL);
	assert_int_equal(gmt_envelope_text(GMT_OK, NULL, "req-1", "[]", 2, &got, &got_len),
			 -EINVAL);
	assert_int_equal(gmt_envelope_text(GMT_OK, NULL, "req-1", "", 0, &got, &got_len),
			 -EINVAL);
	assert_int_equal(gmt_envelope_text(GMT_OK, NULL, NULL, dtext, strlen(dtext), &got,
					   &got_len), -EINVAL);
	assert_int_equal(gmt_envelope_text(GMT_OK, "\xff", "req-1", dtext, strlen(dtext), &got,
					   &got_len), -EINVAL);
	free(dtext);
	json_decref(data);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reals_edges),     cmocka_unit_test(test_reals_generated),
		cmocka_unit_test(test_tenths),          cmocka_unit_test(test_integers),
		cmocka_unit_test(test_strings),         cmocka_unit_test(test_failures),
		cmocka_unit_test(test_object_generated), cmocka_unit_test(test_envelope_text),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
