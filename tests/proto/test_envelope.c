/* Unit tests of proto/envelope: exact serialisation, strict parsing, IDs. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/util.h"
#include "proto/codes.h"
#include "proto/envelope.h"

static void test_ok_envelope_exact(void **state)
{
	json_t *data = json_pack("{s:s, s:s, s:s, s:s}", "taskId", "task-1", "operation",
				 "vsm.start", "target", "v1", "state", "pending");
	assert_non_null(data);
	char *body = NULL;
	size_t len = 0;
	assert_int_equal(gmt_envelope(GMT_OK, NULL, "req-0123", data, &body, &len), 0);
	const char *expected = "{\"code\":0,\"message\":\"OK\",\"requestId\":\"req-0123\","
			       "\"data\":{\"taskId\":\"task-1\",\"operation\":\"vsm.start\","
			       "\"target\":\"v1\",\"state\":\"pending\"}}";
	assert_string_equal(body, expected);
	assert_int_equal(len, strlen(expected));
	free(body);
	/* data was not stolen */
	assert_int_equal(data->refcount, 1);
	/* a custom message */
	assert_int_equal(gmt_envelope(GMT_OK, "accepted", "req-1", data, &body, &len), 0);
	assert_non_null(strstr(body, "\"message\":\"accepted\""));
	free(body);
	json_decref(data);
}

static void test_error_envelope_exact(void **state)
{
	char *body = NULL;
	size_t len = 0;
	assert_int_equal(gmt_envelope(GMT_E_SIGNATURE, NULL, "req-abc", NULL, &body, &len), 0);
	assert_string_equal(body,
			    "{\"code\":2002,\"message\":\"signature invalid\",\"requestId\":\"req-abc\"}");
	assert_int_equal(len, strlen(body));
	free(body);
	assert_int_equal(gmt_envelope(GMT_E_PARAM_MISSING, "missing field \"name\"", "r", NULL,
				      &body, &len),
			 0);
	assert_string_equal(body, "{\"code\":1002,\"message\":\"missing field \\\"name\\\"\","
				  "\"requestId\":\"r\"}");
	free(body);
}

static void test_envelope_rejects(void **state)
{
	char *body = NULL;
	size_t len = 0;
	json_t *obj = json_object(), *arr = json_array();
	/* data on an error, data not an object, no request id, negative code */
	assert_int_equal(gmt_envelope(GMT_E_STATE, NULL, "r", obj, &body, &len), -EINVAL);
	assert_int_equal(gmt_envelope(GMT_OK, NULL, "r", arr, &body, &len), -EINVAL);
	assert_int_equal(gmt_envelope(GMT_OK, NULL, NULL, NULL, &body, &len), -EINVAL);
	assert_int_equal(gmt_envelope(-1, NULL, "r", NULL, &body, &len), -EINVAL);
	/* a message that is not UTF-8 */
	assert_int_equal(gmt_envelope(GMT_E_STATE, "bad \xff", "r", NULL, &body, &len), -EINVAL);
	assert_null(body);
	json_decref(obj);
	json_decref(arr);
}

static void test_parse_roundtrip(void **state)
{
	json_t *data = json_pack("{s:i, s:[s,s]}", "count", 2, "vsms", "v1", "v2");
	char *body = NULL, *msg = NULL;
	size_t len = 0;
	int code = -1;
	json_t *out = NULL;
	assert_int_equal(gmt_envelope(GMT_OK, NULL, "req-1", data, &body, &len), 0);
	assert_int_equal(gmt_envelope_parse(body, len, &code, &msg, &out), 0);
	assert_int_equal(code, 0);
	assert_string_equal(msg, "OK");
	assert_true(json_equal(out, data));
	free(msg);
	free(body);
	json_decref(out);
	json_decref(data);

	assert_int_equal(gmt_envelope(GMT_E_TASK_NOT_FOUND, NULL, "req-2", NULL, &body, &len), 0);
	out = (json_t *)1;
	assert_int_equal(gmt_envelope_parse(body, len, &code, &msg, &out), 0);
	assert_int_equal(code, 3006);
	assert_string_equal(msg, "task not found");
	assert_null(out);
	free(msg);
	/* the message and data out-parameters are optional */
	assert_int_equal(gmt_envelope_parse(body, len, &code, NULL, NULL), 0);
	/* gmt_envelope_parse_id gives the requestId too */
	char *rid = NULL;
	assert_int_equal(gmt_envelope_parse_id(body, len, &code, &msg, &rid, NULL), 0);
	assert_int_equal(code, 3006);
	assert_string_equal(msg, "task not found");
	assert_string_equal(rid, "req-2");
	free(msg);
	free(rid);
	free(body);
	/* unknown members are ignored; requestId is optional */
	static const char extra[] = "{\"code\":5003,\"message\":\"unavailable\",\"x\":[1]}";
	assert_int_equal(gmt_envelope_parse(extra, strlen(extra), &code, NULL, NULL), 0);
	assert_int_equal(code, 5003);
	rid = (char *)1;
	assert_int_equal(gmt_envelope_parse_id(extra, strlen(extra), &code, NULL, &rid, NULL), 0);
	assert_null(rid);
	/* a requestId that is not a string is refused */
	static const char bad_rid[] = "{\"code\":0,\"message\":\"OK\",\"requestId\":1}";
	assert_int_equal(gmt_envelope_parse_id(bad_rid, strlen(bad_rid), &code, NULL, &rid, NULL),
			 -EINVAL);
}

static void test_parse_rejects(void **state)
{
	static const char *bad[] = {
		"",
		"[]",
		"1",
		"\"x\"",
		"null",
		"{",
		"{\"code\":0,\"message\":\"OK\"} x",
		"{\"message\":\"OK\"}",
		"{\"code\":0}",
		"{\"code\":\"0\",\"message\":\"OK\"}",
		"{\"code\":0.0,\"message\":\"OK\"}",
		"{\"code\":true,\"message\":\"OK\"}",
		"{\"code\":-1,\"message\":\"OK\"}",
		"{\"code\":4294967296,\"message\":\"OK\"}",
		"{\"code\":0,\"message\":3}",
		"{\"code\":0,\"message\":null}",
		"{\"code\":0,\"message\":\"a\\u0000b\"}",
		"{\"code\":0,\"message\":\"OK\",\"requestId\":1}",
		"{\"code\":0,\"message\":\"OK\",\"data\":[]}",
		"{\"code\":0,\"message\":\"OK\",\"data\":null}",
		"{\"code\":0,\"message\":\"OK\",\"data\":\"x\"}",
		"{\"code\":0,\"code\":1,\"message\":\"OK\"}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int code = 77;
		char *msg = (char *)"untouched";
		json_t *data = (json_t *)1;
		if (gmt_envelope_parse(bad[i], strlen(bad[i]), &code, &msg, &data) != -EINVAL)
			fail_msg("accepted: %s", bad[i]);
		assert_int_equal(code, 77);
		assert_string_equal(msg, "untouched");
		assert_ptr_equal(data, (json_t *)1);
	}
	int code;
	assert_int_equal(gmt_envelope_parse(NULL, 0, &code, NULL, NULL), -EINVAL);
}

static void check_id(const char *id, const char *prefix)
{
	size_t pl = strlen(prefix);
	assert_int_equal(strncmp(id, prefix, pl), 0);
	assert_int_equal(strlen(id), pl + 24);
	for (size_t i = pl; id[i]; i++)
		assert_true((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f'));
}

static void test_ids(void **state)
{
	char a[GMT_ID_SIZE], b[GMT_ID_SIZE];
	assert_int_equal(gmt_new_request_id(a), 0);
	assert_int_equal(gmt_new_request_id(b), 0);
	check_id(a, "req-");
	check_id(b, "req-");
	assert_string_not_equal(a, b);
	assert_int_equal(gmt_new_task_id(a), 0);
	assert_int_equal(gmt_new_task_id(b), 0);
	check_id(a, "task-");
	check_id(b, "task-");
	assert_string_not_equal(a, b);
}

/* The per-thread pool: IDs stay distinct across its refills, and a child
 * made by fork draws other bytes than its parent. */
static void test_ids_pool(void **state)
{
	enum { N = 3 * 64 + 5 };
	static char ids[N][GMT_ID_SIZE];
	for (int i = 0; i < N; i++) {
		assert_int_equal(gmt_new_request_id(ids[i]), 0);
		check_id(ids[i], "req-");
		for (int j = 0; j < i; j++)
			assert_string_not_equal(ids[i], ids[j]);
	}
	char mine[GMT_ID_SIZE], theirs[GMT_ID_SIZE] = "";
	int fds[2];
	assert_int_equal(pipe(fds), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		char id[GMT_ID_SIZE];
		ssize_t w = gmt_new_request_id(id) == 0 ? write(fds[1], id, sizeof(id)) : -1;
		_exit(w == (ssize_t)sizeof(id) ? 0 : 1);
	}
	close(fds[1]);
	assert_int_equal(gmt_new_request_id(mine), 0);
	assert_int_equal(read(fds[0], theirs, sizeof(theirs)), (ssize_t)sizeof(theirs));
	close(fds[0]);
	int status = 0;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	check_id(theirs, "req-");
	assert_string_not_equal(mine, theirs);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ok_envelope_exact),
		cmocka_unit_test(test_error_envelope_exact),
		cmocka_unit_test(test_envelope_rejects),
		cmocka_unit_test(test_parse_roundtrip),
		cmocka_unit_test(test_parse_rejects),
		cmocka_unit_test(test_ids),
		cmocka_unit_test(test_ids_pool),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
