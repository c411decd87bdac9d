/*
 * Tests of the client library against a fake CHSM on loopback (fake_chsm.c):
 * requests are signed as the CHSM checks them, every response is verified
 * with the device key learnt from 7.4.1, and each way a response can fail
 * that check gives the documented error. Also enrollment, waiting for
 * tasks, keep-alive and transport failures.
 */
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include <jansson.h>

#include "fake_chsm.h"
#include "openchsm/chsm_client.h"
#include "proto/codes.h"

#define OTHER_FP "1111111111111111111111111111111111111111111111111111111111111111"
#define ENROLLMENT_CODE "ABCDEFGHJKMNPQRSTVWXYZ2345"

struct fixture {
	char dir[64];
	char key_path[128];      /* the platform key pair */
	char pub_path[128];      /* its public half */
	struct fake_chsm *chsm;
	chsm_client *cl;
};

/* A fixture: a platform key on disk; the fake CHSM (knowing that key when
 * enrolled); a client pinned to the device key, over plain http. */
static struct fixture *fixture_new(bool enrolled, bool with_key, const char *pin)
{
	struct fixture *fx = calloc(1, sizeof(*fx));
	assert_non_null(fx);
	snprintf(fx->dir, sizeof(fx->dir), "/tmp/chsm-exchange-XXXXXX");
	assert_non_null(mkdtemp(fx->dir));
	snprintf(fx->key_path, sizeof(fx->key_path), "%s/platform.pem", fx->dir);
	snprintf(fx->pub_path, sizeof(fx->pub_path), "%s/platform.pub", fx->dir);
	assert_int_equal(chsm_client_keygen(fx->key_path, NULL), 0);
	char *pub = NULL;
	assert_int_equal(chsm_client_key_info(fx->key_path, &pub, NULL), 0);
	FILE *f = fopen(fx->pub_path, "w");
	assert_non_null(f);
	fputs(pub, f);
	fclose(f);
	free(pub);
	fx->chsm = fake_chsm_start(enrolled ? fake_load_key(fx->key_path) : NULL,
				   enrolled ? NULL : ENROLLMENT_CODE);
	struct chsm_client_options o = {
		.url = fx->chsm->url,
		.platform_key_path = with_key ? fx->key_path : NULL,
		.device_fingerprint = pin ? pin : fx->chsm->device_fp,
		.insecure = true, /* plain http */
		.timeout_ms = 10000,
	};
	assert_int_equal(chsm_client_new(&o, &fx->cl), 0);
	return fx;
}

static void fixture_free(struct fixture *fx)
{
	chsm_client_free(fx->cl);
	fake_chsm_stop(fx->chsm);
	unlink(fx->key_path);
	unlink(fx->pub_path);
	rmdir(fx->dir);
	free(fx);
}

static json_t *data_of(const struct chsm_client_response *r)
{
	json_t *j = json_loads(r->data, 0, NULL);
	assert_non_null(j);
	return j;
}

static void test_signed_request_verified_response(void **state)
{
	struct fixture *fx = fixture_new(true, true, NULL);
	struct chsm_client_response r = {0};

	assert_int_equal(chsm_client_request(fx->cl, "GET", "/chsm", NULL, NULL, &r), 0);
	assert_int_equal(r.http_status, 200);
	assert_int_equal(r.code, 0);
	assert_string_equal(r.message, "OK");
	assert_non_null(r.request_id);
	assert_int_equal(strncmp(r.request_id, "req-", 4), 0);
	assert_non_null(strstr(r.body, r.request_id));
	assert_int_equal(r.body_len, strlen(r.body));
	json_t *d = data_of(&r);
	assert_string_equal(json_string_value(json_object_get(d, "target")), "/gmt0088/v1/chsm");
	json_decref(d);
	assert_int_equal(fx->chsm->last_auth_code, 0); /* the CHSM accepted the signature */
	assert_true(fx->chsm->last.has_signature);
	assert_false(fx->chsm->last.has_content_type);
	chsm_client_response_free(&r);

	/* a POST with a body and an idempotency key */
	assert_int_equal(chsm_client_request(fx->cl, "POST", "/vsms/v1/start",
					     "{\"callbackUrl\":\"https://cb\"}", "op-1:x", &r),
			 0);
	assert_int_equal(r.code, 0);
	assert_int_equal(fx->chsm->last_auth_code, 0);
	assert_string_equal(fx->chsm->last.method, "POST");
	assert_string_equal(fx->chsm->last.target, "/gmt0088/v1/vsms/v1/start");
	assert_string_equal(fx->chsm->last.body, "{\"callbackUrl\":\"https://cb\"}");
	assert_string_equal(fx->chsm->last.content_type, "application/json");
	assert_false(fx->chsm->last.has_expect);
	assert_string_equal(fx->chsm->last.idempotency, "op-1:x");
	chsm_client_response_free(&r);

	/* a bodiless PUT: Content-Length 0 and no form Content-Type */
	assert_int_equal(chsm_client_request(fx->cl, "PUT", "/chsm/ntp", NULL, NULL, &r), 0);
	assert_int_equal(fx->chsm->last_auth_code, 0);
	assert_false(fx->chsm->last.has_content_type);
	assert_string_equal(fx->chsm->last.content_length, "0");
	chsm_client_response_free(&r);

	/* a DELETE and a query string are signed as sent */
	assert_int_equal(chsm_client_request(fx->cl, "DELETE", "/vsms/v1", "{}", NULL, &r), 0);
	assert_int_equal(fx->chsm->last_auth_code, 0);
	assert_string_equal(fx->chsm->last.method, "DELETE");
	chsm_client_response_free(&r);
	assert_int_equal(chsm_client_request(fx->cl, "GET", "/vsms?x=1", NULL, NULL, &r), 0);
	assert_int_equal(fx->chsm->last_auth_code, 0);
	assert_string_equal(fx->chsm->last.target, "/gmt0088/v1/vsms?x=1");
	chsm_client_response_free(&r);

	/* one connection for everything, 7.4.1 fetched once */
	assert_int_equal(fx->chsm->accepts, 1);
	assert_int_equal(fx->chsm->fingerprint_requests, 1);
	assert_int_equal(fx->chsm->requests, 6);
	char fp[CHSM_CLIENT_FINGERPRINT_LEN + 1];
	assert_int_equal(chsm_client_device_fingerprint(fx->cl, fp), 0);
	assert_string_equal(fp, fx->chsm->device_fp);
	fixture_free(fx);
}

/* An answer with a non-zero code is a response, not a library error. */
static void test_error_answer(void **state)
{
	struct fixture *fx = fixture_new(true, true, NULL);
	struct chsm_client_response r = {0};
	assert_int_equal(chsm_client_request(fx->cl, "GET", "/vsms/missing", NULL, NULL, &r), 0);
	assert_int_equal(r.code, GMT_E_VSM_NOT_FOUND);
	assert_int_equal(r.http_status, 404);
	assert_string_equal(r.message, gmt_code_message(GMT_E_VSM_NOT_FOUND));
	assert_null(r.data);
	chsm_client_response_free(&r);
	fixture_free(fx);
}

/* The device key served by 7.4.1 must be the pinned one, fetched upper or
 * lower case alike. */
static void test_pinned_fingerprint(void **state)
{
	struct fixture *fx = fixture_new(true, true, OTHER_FP);
	struct chsm_client_response r = {0};
	char fp[CHSM_CLIENT_FINGERPRINT_LEN + 1];
	assert_int_equal(chsm_client_request(fx->cl, "GET", "/chsm", NULL, NULL, &r),
			 CHSM_CLIENT_E_DEVICE_KEY);
	assert_non_null(strstr(chsm_client_last_error(fx->cl), OTHER_FP));
	assert_int_equal(chsm_client_device_fingerprint(fx->cl, fp), CHSM_CLIENT_E_DEVICE_KEY);
	assert_int_equal(fx->chsm->requests, 2); /* two bootstraps, nothing else sent */
	assert_int_equal(fx->chsm->fingerprint_requests, 2);
	fixture_free(fx);

	fx = fixture_new(true, true, NULL);
	char upper[CHSM_CLIENT_FINGERPRINT_LEN + 1];
	for (size_t i = 0; i <= CHSM_CLIENT_FINGERPRINT_LEN; i++)
		upper[i] = (char)(fx->chsm->device_fp[i] >= 'a' ? fx->chsm->device_fp[i] - 32
								 : fx->chsm->device_fp[i]);
	chsm_client *cl = NULL;
	struct chsm_client_options o = {.url = fx->chsm->url, .device_fingerprint = upper,
					.insecure = true};
	assert_int_equal(chsm_client_new(&o, &cl), 0);
	assert_int_equal(chsm_client_device_fingerprint(cl, fp), 0);
	assert_string_equal(fp, fx->chsm->device_fp);
	chsm_client_free(cl);
	fixture_free(fx);
}

/* Every way a response can fail the device checks, on 7.4.1 itself and on
 * a later response. */
static void test_response_faults(void **state)
{
	static const struct {
		enum fake_fault fault;
		int err;
	} cases[] = {
		{FAULT_TAMPER_SIG, CHSM_CLIENT_E_DEVICE_SIGNATURE},
		{FAULT_NO_SIG, CHSM_CLIENT_E_DEVICE_SIGNATURE},
		{FAULT_TWO_SIGS, CHSM_CLIENT_E_DEVICE_SIGNATURE},
		{FAULT_WRONG_KEY_ID, CHSM_CLIENT_E_DEVICE_KEY},
		{FAULT_NOT_ENVELOPE, CHSM_CLIENT_E_BAD_RESPONSE},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		for (int after = 0; after <= 1; after++) {
			struct fixture *fx = fixture_new(true, true, NULL);
			struct chsm_client_response r = {0};
			fx->chsm->fault = cases[i].fault;
			fx->chsm->fault_after_bootstrap = after;
			int got = chsm_client_request(fx->cl, "GET", "/chsm", NULL, NULL, &r);
			if (got != cases[i].err)
				fail_msg("fault %d (after bootstrap: %d): %d, expected %d",
					 cases[i].fault, after, got, cases[i].err);
			assert_null(r.body); /* nothing handed out */
			assert_true(chsm_client_last_error(fx->cl)[0] != '\0');
			fixture_free(fx);
		}
	}
	/* 7.4.1 claiming another fingerprint than its key's */
	struct fixture *fx = fixture_new(true, true, NULL);
	struct chsm_client_response r = {0};
	fx->chsm->fault = FAULT_CLAIM_OTHER_FP;
	assert_int_equal(chsm_client_request(fx->cl, "GET", "/chsm", NULL, NULL, &r),
			 CHSM_CLIENT_E_DEVICE_KEY);
	fixture_free(fx);
	assert_string_equal(chsm_client_strerror(CHSM_CLIENT_E_DEVICE_SIGNATURE),
			    "device signature invalid");
}

/* Without a pin, an insecure client learns the key from 7.4.1 and still
 * verifies every response with it. */
static void test_trust_on_first_use(void **state)
{
	struct fixture *fx = fixture_new(true, true, NULL);
	chsm_client *cl = NULL;
	struct chsm_client_options o = {.url = fx->chsm->url, .platform_key_path = fx->key_path,
					.insecure = true};
	struct chsm_client_response r = {0};
	assert_int_equal(chsm_client_new(&o, &cl), 0);
	assert_int_equal(chsm_client_request(cl, "GET", "/chsm/status", NULL, NULL, &r), 0);
	assert_int_equal(r.code, 0);
	chsm_client_response_free(&r);
	fx->chsm->fault = FAULT_TAMPER_SIG;
	assert_int_equal(chsm_client_request(cl, "GET", "/chsm/status", NULL, NULL, &r),
			 CHSM_CLIENT_E_DEVICE_SIGNATURE);
	chsm_client_free(cl);
	fixture_free(fx);
}

/* 7.4.1 is never signed, and its first answer is the one returned; other
 * requests go unsigned without a platform key (and the CHSM says 2001). */
static void test_unauthenticated_requests(void **state)
{
	struct fixture *fx = fixture_new(true, true, NULL);
	struct chsm_client_response r = {0};
	assert_int_equal(chsm_client_request(fx->cl, "GET", "/auth/platform-key/fingerprint", NULL,
					     NULL, &r),
			 0);
	assert_int_equal(fx->chsm->requests, 1);
	json_t *d = data_of(&r);
	assert_true(json_is_true(json_object_get(d, "configured")));
	assert_string_equal(json_string_value(json_object_get(d, "fingerprint")),
			    fx->chsm->platform_fp);
	assert_string_equal(json_string_value(json_object_get(d, "deviceKeyFingerprint")),
			    fx->chsm->device_fp);
	json_decref(d);
	chsm_client_response_free(&r);
	/* the second time it is a request of its own, still unsigned */
	assert_int_equal(chsm_client_request(fx->cl, "GET", "/auth/platform-key/fingerprint", NULL,
					     NULL, &r),
			 0);
	assert_int_equal(fx->chsm->fingerprint_requests, 2);
	chsm_client_response_free(&r);
	fixture_free(fx);

	fx = fixture_new(true, false, NULL);
	assert_int_equal(chsm_client_request(fx->cl, "GET", "/chsm", NULL, NULL, &r), 0);
	assert_int_equal(r.code, GMT_E_AUTH_HEADERS);
	assert_int_equal(r.http_status, 401);
	assert_false(fx->chsm->last.has_signature);
	assert_true(fx->chsm->last.has_nonce);
	chsm_client_response_free(&r);
	fixture_free(fx);
}

static void test_enroll(void **state)
{
	struct fixture *fx = fixture_new(false, true, NULL);
	struct chsm_client_response r = {0};
	char *pub = NULL;

	/* a wrong code: the CHSM's answer, not a library error */
	assert_int_equal(chsm_client_enroll(fx->cl, "WRONGCODEWRONGCODEWRONGCOD", NULL, &r), 0);
	assert_int_equal(r.code, GMT_E_ENROLLMENT);
	chsm_client_response_free(&r);

	assert_int_equal(chsm_client_enroll(fx->cl, ENROLLMENT_CODE, NULL, &r), 0);
	assert_int_equal(r.code, 0);
	assert_int_equal(fx->chsm->last_auth_code, 0);
	assert_true(fx->chsm->last_enrollment);
	assert_string_equal(fx->chsm->last.method, "PUT");
	assert_string_equal(fx->chsm->last.target, "/gmt0088/v1/auth/platform-key");
	assert_int_equal(chsm_client_key_info(fx->key_path, &pub, NULL), 0);
	json_t *body = json_loads(fx->chsm->last.body, 0, NULL);
	assert_string_equal(json_string_value(json_object_get(body, "publicKey")), pub);
	json_decref(body);
	chsm_client_response_free(&r);

	/* a public key file works as well */
	assert_int_equal(chsm_client_enroll(fx->cl, ENROLLMENT_CODE, fx->pub_path, &r), 0);
	assert_int_equal(fx->chsm->last_auth_code, 0);
	body = json_loads(fx->chsm->last.body, 0, NULL);
	assert_string_equal(json_string_value(json_object_get(body, "publicKey")), pub);
	json_decref(body);
	chsm_client_response_free(&r);
	free(pub);

	assert_int_equal(chsm_client_enroll(fx->cl, "", NULL, &r), -EINVAL);
	assert_int_equal(chsm_client_enroll(fx->cl, ENROLLMENT_CODE, "/nonexistent/k.pem", &r),
			 -ENOENT);
	fixture_free(fx);

	/* no key anywhere */
	fx = fixture_new(false, false, NULL);
	assert_int_equal(chsm_client_enroll(fx->cl, ENROLLMENT_CODE, NULL, &r),
			 CHSM_CLIENT_E_NO_KEY);
	fixture_free(fx);
}

struct seen {
	char states[16][16];
	size_t n;
};

static void record(void *userdata, const char *state, const char *task_json)
{
	struct seen *s = userdata;
	json_t *t = json_loads(task_json, 0, NULL);
	assert_string_equal(json_string_value(json_object_get(t, "state")), state);
	json_decref(t);
	if (s->n < 16)
		snprintf(s->states[s->n++], sizeof(s->states[0]), "%s", state);
}

static void test_wait_task(void **state)
{
	struct fixture *fx = fixture_new(true, true, NULL);
	struct chsm_client_response r = {0};
	struct seen seen = {0};

	/* polls through a 5003 to the end */
	fx->chsm->task_states[0] = "pending";
	fx->chsm->task_states[1] = "running";
	fx->chsm->task_states[2] = "unavailable";
	fx->chsm->task_states[3] = "running";
	fx->chsm->task_states[4] = "succeeded";
	fx->chsm->n_task_states = 5;
	assert_int_equal(chsm_client_wait_task(fx->cl, "task-1", 0, record, &seen, &r), 0);
	assert_int_equal(r.code, 0);
	json_t *d = data_of(&r);
	assert_string_equal(json_string_value(json_object_get(d, "state")), "succeeded");
	assert_string_equal(json_string_value(json_object_get(d, "taskId")), "task-1");
	json_decref(d);
	chsm_client_response_free(&r);
	assert_int_equal(fx->chsm->task_polls, 5);
	assert_int_equal(seen.n, 4);
	assert_string_equal(seen.states[0], "pending");
	assert_string_equal(seen.states[1], "running");
	assert_string_equal(seen.states[2], "running");
	assert_string_equal(seen.states[3], "succeeded");

	/* a failed task is a normal end; no progress callback needed */
	fx->chsm->task_polls = 0;
	fx->chsm->task_states[0] = "failed";
	fx->chsm->n_task_states = 1;
	assert_int_equal(chsm_client_wait_task(fx->cl, "task-2", 0, NULL, NULL, &r), 0);
	d = data_of(&r);
	assert_string_equal(json_string_value(json_object_get(d, "state")), "failed");
	assert_int_equal(json_integer_value(json_object_get(d, "code")), GMT_E_DOWNLOAD);
	json_decref(d);
	chsm_client_response_free(&r);

	/* an unknown task ends the wait with the CHSM's answer */
	assert_int_equal(chsm_client_wait_task(fx->cl, "missing", 0, NULL, NULL, &r), 0);
	assert_int_equal(r.code, GMT_E_TASK_NOT_FOUND);
	chsm_client_response_free(&r);

	/* a task that never ends */
	fx->chsm->task_states[0] = "running";
	assert_int_equal(chsm_client_wait_task(fx->cl, "task-3", 100, NULL, NULL, &r),
			 -ETIMEDOUT);
	assert_null(r.body);

	/* bad IDs are refused before anything is sent */
	int before = fx->chsm->requests;
	assert_int_equal(chsm_client_wait_task(fx->cl, "a/b", 0, NULL, NULL, &r), -EINVAL);
	assert_int_equal(chsm_client_wait_task(fx->cl, "", 0, NULL, NULL, &r), -EINVAL);
	assert_int_equal(chsm_client_wait_task(fx->cl, NULL, 0, NULL, NULL, &r), -EINVAL);
	assert_int_equal(fx->chsm->requests, before);

	/* a bad signature while waiting is never retried */
	fx->chsm->fault = FAULT_TAMPER_SIG;
	assert_int_equal(chsm_client_wait_task(fx->cl, "task-4", 0, NULL, NULL, &r),
			 CHSM_CLIENT_E_DEVICE_SIGNATURE);
	fixture_free(fx);
}

/* Arguments are checked before anything is sent. */
static void test_bad_arguments(void **state)
{
	struct fixture *fx = fixture_new(true, true, NULL);
	struct chsm_client_response r = {0};
	static const struct {
		const char *method, *path, *body, *idem;
	} cases[] = {
		{"get", "/chsm", NULL, NULL},
		{"", "/chsm", NULL, NULL},
		{NULL, "/chsm", NULL, NULL},
		{"GET", "chsm", NULL, NULL},
		{"GET", "", NULL, NULL},
		{"GET", NULL, NULL, NULL},
		{"GET", "/chsm status", NULL, NULL},
		{"GET", "/chsm#x", NULL, NULL},
		{"GET", "/chsm\r\nX: y", NULL, NULL},
		{"GET", "/chsm", "{}", NULL},
		{"POST", "/vsms", "{}", ""},
		{"POST", "/vsms", "{}", "a b"},
		{"POST", "/vsms", "{}", "k\r\nX-Injected: 1"},
		{"POST", "/vsms", "{}",
		 "a1234567890123456789012345678901234567890123456789012345678901234"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		assert_int_equal(chsm_client_request(fx->cl, cases[i].method, cases[i].path,
						      cases[i].body, cases[i].idem, &r),
				 -EINVAL);
	char longpath[2048];
	memset(longpath, 'a', sizeof(longpath) - 1);
	longpath[0] = '/';
	longpath[sizeof(longpath) - 1] = '\0';
	assert_int_equal(chsm_client_request(fx->cl, "GET", longpath, NULL, NULL, &r), -EINVAL);
	assert_int_equal(fx->chsm->requests, 0);
	assert_int_equal(chsm_client_request(NULL, "GET", "/chsm", NULL, NULL, &r), -EINVAL);
	assert_int_equal(chsm_client_request(fx->cl, "GET", "/chsm", NULL, NULL, NULL), -EINVAL);
	fixture_free(fx);
}

/* Nothing listens: a transport error with libcurl's explanation. */
static void test_transport_error(void **state)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sa);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	char url[64];
	snprintf(url, sizeof(url), "http://127.0.0.1:%u", ntohs(sa.sin_port));
	/* bound but not listening: connections are refused */
	chsm_client *cl = NULL;
	struct chsm_client_options o = {.url = url, .insecure = true};
	struct chsm_client_response r = {0};
	assert_int_equal(chsm_client_new(&o, &cl), 0);
	assert_int_equal(chsm_client_request(cl, "GET", "/chsm", NULL, NULL, &r),
			 CHSM_CLIENT_E_TRANSPORT);
	assert_true(chsm_client_last_error(cl)[0] != '\0');
	/* a wait keeps retrying transport errors until its timeout */
	assert_int_equal(chsm_client_wait_task(cl, "task-1", 100, NULL, NULL, &r), -ETIMEDOUT);
	chsm_client_free(cl);
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_signed_request_verified_response),
		cmocka_unit_test(test_error_answer),
		cmocka_unit_test(test_pinned_fingerprint),
		cmocka_unit_test(test_response_faults),
		cmocka_unit_test(test_trust_on_first_use),
		cmocka_unit_test(test_unauthenticated_requests),
		cmocka_unit_test(test_enroll),
		cmocka_unit_test(test_wait_task),
		cmocka_unit_test(test_bad_arguments),
		cmocka_unit_test(test_transport_error),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
