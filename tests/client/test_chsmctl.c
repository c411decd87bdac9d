/*
 * Tests of the chsmctl program as a script drives it, against the fake CHSM
 * (fake_chsm.c): what goes to stdout and stderr, and the exit status, for
 * success, CHSM errors, --json, --wait on succeeding and failing tasks,
 * authentication failures, usage errors, keygen and enroll.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include <jansson.h>

#include "common/util.h"
#include "fake_chsm.h"
#include "proto/codes.h"

#ifndef CHSMCTL_PATH
#error "CHSMCTL_PATH must name the chsmctl binary"
#endif

#define ENROLLMENT_CODE "ABCDEFGHJKMNPQRSTVWXYZ2345"

static char dir[] = "/tmp/chsm-ctl-XXXXXX";
static char key_path[256], secret_path[256];

struct run {
	int status;     /* exit status */
	char *out;      /* stdout */
	char *err;      /* stderr */
};

static char *slurp(const char *path)
{
	char *data = NULL;
	size_t len = 0;
	assert_int_equal(chsm_read_file(path, 1 << 20, &data, &len), 0);
	return data;
}

/* Runs chsmctl with args (NULL-terminated) and no CHSMCTL_* environment. */
static struct run run_chsmctl(const char *const *args)
{
	char out_path[300], err_path[300];
	snprintf(out_path, sizeof(out_path), "%s/out", dir);
	snprintf(err_path, sizeof(err_path), "%s/err", dir);
	const char *argv[64] = {"chsmctl"};
	size_t n = 1;
	for (; args[n - 1]; n++)
		argv[n] = args[n - 1];
	argv[n] = NULL;
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int out = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		int err = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		if (out < 0 || err < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0)
			_exit(127);
		unsetenv("CHSMCTL_URL");
		unsetenv("CHSMCTL_KEY");
		unsetenv("CHSMCTL_DEVICE_FINGERPRINT");
		unsetenv("CHSMCTL_CACERT");
		execv(CHSMCTL_PATH, (char *const *)argv);
		_exit(127);
	}
	int ws;
	assert_int_equal(waitpid(pid, &ws, 0), pid);
	assert_true(WIFEXITED(ws));
	struct run r = {WEXITSTATUS(ws), slurp(out_path), slurp(err_path)};
	unlink(out_path);
	unlink(err_path);
	return r;
}

static void run_free(struct run *r)
{
	free(r->out);
	free(r->err);
}

static crypto_sm2_key *platform_key(void)
{
	return fake_load_key(key_path);
}

static int setup(void **state)
{
	assert_non_null(mkdtemp(dir));
	snprintf(key_path, sizeof(key_path), "%s/platform.pem", dir);
	snprintf(secret_path, sizeof(secret_path), "%s/secret", dir);
	const char *const args[] = {"keygen", "--out", key_path, NULL};
	struct run r = run_chsmctl(args);
	assert_int_equal(r.status, 0);
	assert_int_equal(strncmp(r.out, "fingerprint: ", 13), 0);
	assert_int_equal(strlen(r.out), 13 + 64 + 1);
	run_free(&r);
	FILE *f = fopen(secret_path, "w");
	assert_non_null(f);
	fputs("MDEyMzQ1Njc4OWFiY2RlZlNFQ1JFVA==\n", f); /* base64 of 22 bytes */
	fclose(f);
	return 0;
}

static int teardown(void **state)
{
	unlink(key_path);
	unlink(secret_path);
	rmdir(dir);
	return 0;
}

/* Runs "chsmctl --url U --key K --device-fingerprint FP --insecure ARGS". */
static struct run run_against(struct fake_chsm *f, const char *const *args)
{
	const char *all[64] = {"--url", f->url, "--key", key_path, "--device-fingerprint",
			       f->device_fp, "--insecure"};
	size_t n = 7;
	for (size_t i = 0; args[i]; i++)
		all[n++] = args[i];
	all[n] = NULL;
	return run_chsmctl(all);
}

static void test_success_prints_data(void **state)
{
	struct fake_chsm *f = fake_chsm_start(platform_key(), NULL);
	const char *const args[] = {"chsm", "info", NULL};
	struct run r = run_against(f, args);
	assert_int_equal(r.status, 0);
	assert_string_equal(r.out, "{\n  \"method\": \"GET\",\n  \"target\": \"/gmt0088/v1/chsm\"\n}\n");
	assert_string_equal(r.err, "");
	run_free(&r);
	fake_chsm_stop(f);
}

static void test_error_prints_code(void **state)
{
	struct fake_chsm *f = fake_chsm_start(platform_key(), NULL);
	const char *const args[] = {"vsm", "info", "missing", NULL};
	struct run r = run_against(f, args);
	assert_int_equal(r.status, 1);
	assert_string_equal(r.out, "");
	char want[128];
	snprintf(want, sizeof(want), "3001 %s\n", gmt_code_message(GMT_E_VSM_NOT_FOUND));
	assert_string_equal(r.err, want);
	run_free(&r);

	/* --json: the whole envelope on stdout as well */
	const char *const json_args[] = {"vsm", "info", "missing", "--json", NULL};
	r = run_against(f, json_args);
	assert_int_equal(r.status, 1);
	json_t *env = json_loads(r.out, 0, NULL);
	assert_non_null(env);
	assert_int_equal(json_integer_value(json_object_get(env, "code")), 3001);
	assert_non_null(json_object_get(env, "requestId"));
	json_decref(env);
	run_free(&r);
	fake_chsm_stop(f);
}

/* Asserts that stdout holds a JSON object whose key is the string want. */
static void assert_out_field(const struct run *r, const char *key, const char *want)
{
	json_t *j = json_loads(r->out, 0, NULL);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, key)), want);
	json_decref(j);
}

static void test_wait(void **state)
{
	struct fake_chsm *f = fake_chsm_start(platform_key(), NULL);
	f->task_states[0] = "running";
	f->task_states[1] = "succeeded";
	f->n_task_states = 2;

	/* without --wait: the accepted task */
	const char *const start[] = {"vsm", "start", "v1", NULL};
	struct run r = run_against(f, start);
	assert_int_equal(r.status, 0);
	assert_out_field(&r, "taskId", "task-1");
	assert_out_field(&r, "state", "pending");
	run_free(&r);

	/* --wait: the final task; no progress line when stderr is a file */
	const char *const wait[] = {"--wait", "vsm", "start", "v1", NULL};
	r = run_against(f, wait);
	assert_int_equal(r.status, 0);
	assert_out_field(&r, "state", "succeeded");
	assert_string_equal(r.err, "");
	run_free(&r);

	/* a failed task: exit 1 with its code and message */
	f->task_polls = 0;
	f->task_states[0] = "failed";
	f->n_task_states = 1;
	const char *const wait_after[] = {"vsm", "start", "v1", "--wait", NULL};
	r = run_against(f, wait_after);
	assert_int_equal(r.status, 1);
	assert_out_field(&r, "state", "failed");
	char want[128];
	snprintf(want, sizeof(want), "4005 %s\n", gmt_code_message(GMT_E_DOWNLOAD));
	assert_string_equal(r.err, want);
	run_free(&r);

	/* task get --wait follows a task started earlier */
	f->task_polls = 0;
	f->task_states[0] = "pending";
	f->task_states[1] = "succeeded";
	f->n_task_states = 2;
	const char *const get[] = {"task", "get", "task-1", "--wait", NULL};
	r = run_against(f, get);
	assert_int_equal(r.status, 0);
	assert_int_equal(f->task_polls, 2);
	run_free(&r);
	fake_chsm_stop(f);
}

static void test_authentication_failures(void **state)
{
	struct fake_chsm *f = fake_chsm_start(platform_key(), NULL);
	const char *const pinned_other[] = {
		"--url", f->url, "--key", key_path, "--insecure", "--device-fingerprint",
		"2222222222222222222222222222222222222222222222222222222222222222", "chsm", "info",
		NULL};
	struct run r = run_chsmctl(pinned_other);
	assert_int_equal(r.status, 1);
	assert_string_equal(r.out, "");
	assert_non_null(strstr(r.err, "device key does not match"));
	run_free(&r);

	f->fault = FAULT_TAMPER_SIG;
	const char *const args[] = {"chsm", "info", NULL};
	r = run_against(f, args);
	assert_int_equal(r.status, 1);
	assert_string_equal(r.out, "");
	assert_non_null(strstr(r.err, "device signature invalid"));
	run_free(&r);

	/* nothing would authenticate the CHSM: a usage error */
	const char *const unpinned[] = {"--url", "https://127.0.0.1:1", "--key", key_path,
					"chsm", "info", NULL};
	r = run_chsmctl(unpinned);
	assert_int_equal(r.status, 2);
	assert_non_null(strstr(r.err, "--insecure"));
	run_free(&r);
	fake_chsm_stop(f);
}

static void test_usage_and_help(void **state)
{
	const char *const bad[] = {"vsm", "start", NULL};
	struct run r = run_chsmctl(bad);
	assert_int_equal(r.status, 2);
	assert_string_equal(r.out, "");
	assert_non_null(strstr(r.err, "missing VSM ID"));
	assert_non_null(strstr(r.err, "usage: chsmctl [GLOBAL OPTIONS] vsm start ID"));
	run_free(&r);

	const char *const help[] = {"vsm", "start", "--help", NULL};
	r = run_chsmctl(help);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.out, "usage: chsmctl [GLOBAL OPTIONS] vsm start ID"));
	assert_string_equal(r.err, "");
	run_free(&r);

	const char *const top[] = {NULL};
	r = run_chsmctl(top);
	assert_int_equal(r.status, 2);
	assert_non_null(strstr(r.err, "missing command"));
	run_free(&r);

	/* keygen never overwrites */
	const char *const again[] = {"keygen", "--out", key_path, NULL};
	r = run_chsmctl(again);
	assert_int_equal(r.status, 1);
	assert_string_equal(r.out, "");
	assert_non_null(strstr(r.err, "exists"));
	run_free(&r);
}

static void test_enroll_and_secrets(void **state)
{
	struct fake_chsm *f = fake_chsm_start(NULL, ENROLLMENT_CODE);
	const char *const enroll[] = {"enroll", "--enrollment-code", ENROLLMENT_CODE, NULL};
	struct run r = run_against(f, enroll);
	assert_int_equal(r.status, 0);
	assert_int_equal(f->last_auth_code, 0);
	assert_true(f->last_enrollment);
	run_free(&r);
	fake_chsm_stop(f);

	f = fake_chsm_start(platform_key(), NULL);
	const char *const token[] = {"vsm", "set-token", "v1", "--token-id", "app",
				     "--token-secret-file", secret_path, NULL};
	r = run_against(f, token);
	assert_int_equal(r.status, 0);
	assert_int_equal(f->last_auth_code, 0);
	json_t *body = json_loads(f->last.body, 0, NULL);
	assert_string_equal(json_string_value(json_object_get(body, "secret")),
			    "MDEyMzQ1Njc4OWFiY2RlZlNFQ1JFVA==");
	json_decref(body);
	assert_null(strstr(r.out, "SECRET"));
	assert_null(strstr(r.out, "MDEyMzQ1Njc4OWFiY2RlZlNFQ1JFVA=="));
	assert_null(strstr(r.err, "MDEyMzQ1Njc4OWFiY2RlZlNFQ1JFVA=="));
	run_free(&r);
	fake_chsm_stop(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_success_prints_data),
		cmocka_unit_test(test_error_prints_code),
		cmocka_unit_test(test_wait),
		cmocka_unit_test(test_authentication_failures),
		cmocka_unit_test(test_usage_and_help),
		cmocka_unit_test(test_enroll_and_secrets),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
