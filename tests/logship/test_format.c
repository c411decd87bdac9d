/* Unit tests of logship/format: records, RFC 5424 messages (escaping,
 * shortening) and JSON batches. */
#include <errno.h>
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "logship/format.h"

static void decode(const char *event, int level, const char *const *kv, size_t n,
		   struct logship_event *e)
{
	char *rec = NULL;
	size_t len = 0;
	assert_int_equal(logship_record_encode(level, 1764110759123, event, kv, n, &rec, &len), 0);
	assert_int_equal(logship_record_decode(rec, len, e), 0);
	free(rec);
}

static void test_record_roundtrip(void **state)
{
	const char *kv[] = {"request_id", "r-1", "bad", "a\xff" "b\xc3", "empty", ""};
	struct logship_event e;
	decode("request", 1, kv, 3, &e);
	assert_true(e.ts_ms == 1764110759123);
	assert_int_equal(e.level, 1);
	assert_string_equal(e.event, "request");
	assert_int_equal(e.n, 3);
	assert_string_equal(e.kv[0], "request_id");
	assert_string_equal(e.kv[1], "r-1");
	assert_string_equal(e.kv[3], "a?b?");   /* invalid UTF-8 made '?' */
	assert_string_equal(e.kv[5], "");
	logship_event_clear(&e);
	static const char *bad[] = {"", "{}", "[]", "{\"t\":1,\"l\":9,\"e\":\"x\",\"f\":[]}",
				    "{\"t\":1,\"l\":0,\"e\":\"x\",\"f\":[\"k\"]}",
				    "{\"t\":1,\"l\":0,\"e\":\"x\",\"f\":[\"k\",1]}"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(logship_record_decode(bad[i], strlen(bad[i]), &e), -EBADMSG);
}

static void test_syslog_exact(void **state)
{
	const char *kv[] = {"request_id", "r1", "v", "a\"b\\c]d", "ctl", "x\ny", "bad name", "1"};
	struct logship_event e;
	char *m = NULL;
	size_t len = 0;
	decode("task.end", 2, kv, 4, &e);
	assert_int_equal(logship_format_syslog(&e, 7, "host-1", 42, 2048, &m, &len), 0);
	assert_string_equal(m, "<134>1 2025-11-25T22:45:59.123Z host-1 chsmd 42 task.end "
			       "[chsm@32473 seq=\"7\" request_id=\"r1\" v=\"a\\\"b\\\\c\\]d\" "
			       "ctl=\"x?y\" bad_name=\"1\"] task.end");
	assert_int_equal(len, strlen(m));
	free(m);
	logship_event_clear(&e);
	/* Severity by level under local0; an empty host is "-". */
	decode("x", 0, NULL, 0, &e);
	assert_int_equal(logship_format_syslog(&e, 1, "", 1, 2048, &m, &len), 0);
	assert_string_equal(m, "<131>1 2025-11-25T22:45:59.123Z - chsmd 1 x [chsm@32473 seq=\"1\"] x");
	free(m);
	logship_event_clear(&e);
	decode("a very long event name that goes past thirty-two", 1, NULL, 0, &e);
	assert_int_equal(logship_format_syslog(&e, 1, "h h", 1, 2048, &m, &len), 0);
	assert_non_null(strstr(m, "<132>1 "));
	assert_non_null(strstr(m, " h_h chsmd 1 a_very_long_event_name_that_goes [chsm"));
	free(m);
	logship_event_clear(&e);
}

static bool valid_utf8(const char *s)
{
	json_t *j = json_string(s);
	json_decref(j);
	return j != NULL;
}

static void test_syslog_shortened(void **state)
{
	static char big[5001], quotes[3001], wide[3001];
	memset(big, 'x', 5000);
	memset(quotes, ']', 3000);
	for (size_t i = 0; i < 3000; i += 2)
		memcpy(wide + i, "\xc3\xa9", 2);
	const char *kv[] = {"request_id", "r1", "big", big, "q", quotes, "w", wide};
	struct logship_event e;
	decode("request", 2, kv, 4, &e);
	char *m = NULL;
	size_t len = 0;
	assert_int_equal(logship_format_syslog(&e, 3, "h", 1, 2048, &m, &len), 0);
	assert_true(len <= 2048);
	assert_true(valid_utf8(m));
	/* Short values survive whole; the structure stays complete. */
	assert_non_null(strstr(m, " request_id=\"r1\" big=\"xxxx"));
	assert_int_equal(strcmp(m + len - 10, "\"] request"), 0);
	/* An escape is never split: every ']' in q's value is escaped. */
	const char *q = strstr(m, " q=\"") + 4;
	size_t n = 0;
	while (q[0] == '\\' && q[1] == ']') {
		q += 2;
		n++;
	}
	assert_true(n > 0);
	assert_int_equal(q[0], '"');
	free(m);
	/* A wider limit keeps more. */
	assert_int_equal(logship_format_syslog(&e, 3, "h", 1, 8192, &m, &len), 0);
	assert_true(len <= 8192 && len > 2048);
	assert_true(valid_utf8(m));
	free(m);
	/* Too small for even the header. */
	assert_int_equal(logship_format_syslog(&e, 3, "h", 1, 20, &m, &len), -EMSGSIZE);
	logship_event_clear(&e);
}

static void test_json_batch(void **state)
{
	const char *kv1[] = {"request_id", "r1", "code", "0", "ts", "clash"};
	const char *kv2[] = {"vsm", "v\"1"};
	struct logship_event ev[2];
	decode("request", 2, kv1, 3, &ev[0]);
	decode("vsm.state", 1, kv2, 1, &ev[1]);
	uint64_t seqs[2] = {41, 42};
	char *s = NULL;
	size_t len = 0;
	assert_int_equal(logship_format_json(ev, seqs, 2, "host-1", &s, &len), 0);
	json_error_t err;
	json_t *a = json_loadb(s, len, JSON_REJECT_DUPLICATES, &err);
	assert_non_null(a);
	assert_int_equal(json_array_size(a), 2);
	json_t *o = json_array_get(a, 0);
	assert_int_equal(json_integer_value(json_object_get(o, "seq")), 41);
	assert_string_equal(json_string_value(json_object_get(o, "ts")), "2025-11-25T22:45:59.123Z");
	assert_string_equal(json_string_value(json_object_get(o, "level")), "info");
	assert_string_equal(json_string_value(json_object_get(o, "host")), "host-1");
	assert_string_equal(json_string_value(json_object_get(o, "app")), "chsmd");
	assert_string_equal(json_string_value(json_object_get(o, "event")), "request");
	assert_string_equal(json_string_value(json_object_get(o, "request_id")), "r1");
	assert_string_equal(json_string_value(json_object_get(o, "code")), "0");
	assert_string_equal(json_string_value(json_object_get(o, "_ts")), "clash");
	o = json_array_get(a, 1);
	assert_int_equal(json_integer_value(json_object_get(o, "seq")), 42);
	assert_string_equal(json_string_value(json_object_get(o, "level")), "warning");
	assert_string_equal(json_string_value(json_object_get(o, "vsm")), "v\"1");
	json_decref(a);
	free(s);
	logship_event_clear(&ev[0]);
	logship_event_clear(&ev[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_record_roundtrip),
		cmocka_unit_test(test_syslog_exact),
		cmocka_unit_test(test_syslog_shortened),
		cmocka_unit_test(test_json_batch),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
