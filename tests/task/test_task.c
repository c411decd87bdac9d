/*
 * test_task.c: the task engine's deferred tasks (task.h): a run function
 * that answers TASK_DEFERRED leaves its task `running` across an engine
 * stop; at the next start the task stays running when its owner claims it
 * (owned) and is failed as interrupted (5000) otherwise; task_engine_finish
 * ends it once (succeeded with its result, or failed with message and
 * result) and refuses unknown and finished tasks. A task whose start
 * cannot be recorded (the database is busy, as when the disk is full), or
 * whose row cannot be read, waits and is tried again, reported once to the
 * retry hook, instead of staying pending; a refusal that will not change
 * (-ENOENT) is not tried again. Failures other than a busy database are
 * injected by wrapping store_task_get and store_task_update (-Wl,--wrap,
 * tests/task/CMakeLists.txt).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "../store/test_store_util.h"
#include "proto/codes.h"
#include "task/task.h"

static atomic_int runs;
static char owned_id[32];

static int run_deferring(void *ctx, const struct store_task *t, json_t **ret_result, char *msg,
			 size_t msglen)
{
	atomic_fetch_add(&runs, 1);
	return TASK_DEFERRED;
}

static bool owns(void *ctx, const struct store_task *t)
{
	return strcmp(t->id, owned_id) == 0;
}

static crypto_sm2_key *device_key;

static task_engine *start(struct test_store *ts, task_owned_fn owned)
{
	struct task_engine_config cfg = {
		.store = ts->s, .device_key = device_key, .run = run_deferring, .owned = owned,
	};
	task_engine *te = NULL;
	assert_int_equal(task_engine_start(&cfg, &te), 0);
	return te;
}

/* Queues a task on target and waits until the worker ran (deferred) it. */
static void submit_and_defer(task_engine *te, struct test_store *ts, const char *target,
			     const char *callback, char id[32])
{
	struct store_task t;
	int before = atomic_load(&runs);
	assert_int_equal(store_begin(ts->s), 0);
	assert_int_equal(task_engine_admit(te, target), GMT_OK);
	assert_int_equal(task_engine_insert(te, "chsm.reboot", target, NULL, callback, &t), 0);
	assert_int_equal(store_commit(ts->s), 0);
	task_engine_kick(te, t.id);
	snprintf(id, 32, "%s", t.id);
	store_task_clear(&t);
	for (int i = 0; i < 500 && atomic_load(&runs) == before; i++) {
		struct timespec ts10 = {0, 10 * 1000000L};
		nanosleep(&ts10, NULL);
	}
	assert_int_equal(atomic_load(&runs), before + 1);
}

static void expect_state(struct test_store *ts, const char *id, const char *state, int code)
{
	struct store_task t;
	assert_int_equal(store_task_get(ts->s, id, &t), 0);
	assert_string_equal(t.state, state);
	if (code >= 0)
		assert_int_equal(t.code, code);
	store_task_clear(&t);
}

static void deferred_then_owned_then_finished(void **state)
{
	struct test_store *ts = *state;
	char id[32];
	task_engine *te = start(ts, NULL);
	submit_and_defer(te, ts, "chsm", "http://127.0.0.1:1/cb", id);
	expect_state(ts, id, "running", -1);
	assert_int_equal(task_engine_running(te), 0);
	task_engine_stop(te);
	expect_state(ts, id, "running", -1);

	/* Claimed at the next start: still running, the admission sees it. */
	snprintf(owned_id, sizeof(owned_id), "%s", id);
	te = start(ts, owns);
	expect_state(ts, id, "running", -1);
	assert_int_equal(store_begin(ts->s), 0);
	assert_int_equal(task_engine_admit(te, "chsm"), GMT_E_BUSY);
	assert_int_equal(store_rollback(ts->s), 0);

	json_t *result = json_pack("{s:s}", "version", "9.9.9");
	assert_int_equal(task_engine_finish(te, id, GMT_OK, result, NULL), 0);
	struct store_task t;
	assert_int_equal(store_task_get(ts->s, id, &t), 0);
	assert_string_equal(t.state, "succeeded");
	assert_int_equal(t.code, 0);
	assert_string_equal(t.message, "OK");
	assert_non_null(t.result);
	assert_string_equal(t.result, "{\"version\":\"9.9.9\"}");
	assert_true(t.finished_at >= t.started_at && t.started_at > 0);
	assert_non_null(t.callback_url);
	store_task_clear(&t);
	/* Once only; unknown tasks and bad arguments are refused. */
	assert_int_equal(task_engine_finish(te, id, GMT_OK, result, NULL), -EALREADY);
	assert_int_equal(task_engine_finish(te, "task-000000000000000000000000", GMT_OK, NULL, NULL),
			 -ENOENT);
	assert_int_equal(task_engine_finish(te, id, TASK_DEFERRED, NULL, NULL), -EINVAL);
	assert_int_equal(task_engine_finish(NULL, id, GMT_OK, NULL, NULL), -EINVAL);
	json_decref(result);
	task_engine_stop(te);
	owned_id[0] = '\0';
}

static void deferred_not_owned_fails_at_start(void **state)
{
	struct test_store *ts = *state;
	char id[32];
	task_engine *te = start(ts, owns);
	submit_and_defer(te, ts, "v1", NULL, id);
	task_engine_stop(te);
	owned_id[0] = '\0';
	te = start(ts, owns);
	expect_state(ts, id, "failed", GMT_E_INTERNAL);
	assert_int_equal(task_engine_finish(te, id, GMT_OK, NULL, NULL), -EALREADY);
	task_engine_stop(te);
}

static void finish_failed_keeps_message_and_result(void **state)
{
	struct test_store *ts = *state;
	char id[32];
	task_engine *te = start(ts, NULL);
	submit_and_defer(te, ts, "chsm", NULL, id);
	json_t *result = json_pack("{s:s}", "attemptedVersion", "2.0.0");
	assert_int_equal(task_engine_finish(te, id, GMT_E_INTERNAL, result, "did not come up"), 0);
	json_decref(result);
	struct store_task t;
	assert_int_equal(store_task_get(ts->s, id, &t), 0);
	assert_string_equal(t.state, "failed");
	assert_int_equal(t.code, GMT_E_INTERNAL);
	assert_string_equal(t.message, "did not come up");
	assert_string_equal(t.result, "{\"attemptedVersion\":\"2.0.0\"}");
	store_task_clear(&t);
	task_engine_stop(te);
}

static atomic_int retries;
static int retry_err;

static void on_retrying(void *ctx, const struct store_task *t, int err)
{
	retry_err = err;
	atomic_fetch_add(&retries, 1);
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

/* Failures injected into the engine's store calls: the next N calls of
 * store_task_get (or store_task_update) answer err without reaching the
 * store. The test's own calls go through the wrappers too, so a test arms
 * them only while it makes none. */
static atomic_int get_failures, update_failures;
static int injected_err;

int __real_store_task_get(chsm_store *s, const char *id, struct store_task *ret);
int __real_store_task_update(chsm_store *s, const struct store_task *t);
int __wrap_store_task_get(chsm_store *s, const char *id, struct store_task *ret);
int __wrap_store_task_update(chsm_store *s, const struct store_task *t);

/* Takes one armed failure from *n: true when there was one. */
static bool take_failure(atomic_int *n)
{
	int v = atomic_load(n);
	while (v > 0 && !atomic_compare_exchange_weak(n, &v, v - 1))
		;
	return v > 0;
}

int __wrap_store_task_get(chsm_store *s, const char *id, struct store_task *ret)
{
	return take_failure(&get_failures) ? injected_err : __real_store_task_get(s, id, ret);
}

int __wrap_store_task_update(chsm_store *s, const struct store_task *t)
{
	return take_failure(&update_failures) ? injected_err : __real_store_task_update(s, t);
}

/* An engine whose run function defers and whose retries are counted. */
static task_engine *start_counting_retries(struct test_store *ts)
{
	struct task_engine_config cfg = {
		.store = ts->s, .device_key = device_key, .run = run_deferring,
		.retrying = on_retrying,
	};
	task_engine *te = NULL;
	assert_int_equal(task_engine_start(&cfg, &te), 0);
	atomic_store(&retries, 0);
	retry_err = 0;
	return te;
}

/* Inserts a pending vsm.start task on target, not yet queued. */
static void insert_pending(task_engine *te, struct test_store *ts, const char *target,
			   char id[32])
{
	struct store_task t;
	assert_int_equal(store_begin(ts->s), 0);
	assert_int_equal(task_engine_admit(te, target), GMT_OK);
	assert_int_equal(task_engine_insert(te, "vsm.start", target, NULL, NULL, &t), 0);
	assert_int_equal(store_commit(ts->s), 0);
	snprintf(id, 32, "%s", t.id);
	store_task_clear(&t);
}

/* Waits (at most 30 s) until runs reaches n. */
static void wait_runs(int n)
{
	for (int i = 0; i < 3000 && atomic_load(&runs) < n; i++)
		sleep_ms(10);
	assert_int_equal(atomic_load(&runs), n);
}

static void start_retried_while_database_busy(void **state)
{
	struct test_store *ts = *state;
	task_engine *te = start_counting_retries(ts);
	char id[32];
	insert_pending(te, ts, "v1", id);
	/* Another connection holds the write lock: the worker's write of
	 * "running" fails after the busy timeout. */
	chsm_store *blocker = NULL;
	assert_int_equal(store_open(ts->path, test_master_key, &blocker), 0);
	assert_int_equal(store_begin(blocker), 0);
	int before = atomic_load(&runs);
	task_engine_kick(te, id);
	for (int i = 0; i < 3000 && atomic_load(&retries) == 0; i++)
		sleep_ms(10);
	assert_int_equal(atomic_load(&retries), 1);
	assert_int_equal(retry_err, -EIO);   /* the store reports SQLITE_BUSY as -EIO */
	assert_int_equal(atomic_load(&runs), before);
	assert_int_equal(store_rollback(blocker), 0);
	store_close(blocker);
	/* The lock is gone: the next attempt records the start and runs it. */
	wait_runs(before + 1);
	assert_int_equal(atomic_load(&retries), 1);
	expect_state(ts, id, "running", -1);
	task_engine_stop(te);
}

/* Arms n injected failures (err) of *failures, queues a pending task
 * `kicks` times and checks that it ran once, in the end recorded as
 * running, with the failures used up and `retried` reports (of err). */
static void run_through_failures(struct test_store *ts, atomic_int *failures, int n, int err,
				 int kicks, int retried)
{
	task_engine *te = start_counting_retries(ts);
	char id[32];
	insert_pending(te, ts, "v1", id);
	int before = atomic_load(&runs);
	injected_err = err;
	atomic_store(failures, n);
	for (int i = 0; i < kicks; i++)
		task_engine_kick(te, id);
	wait_runs(before + 1);
	assert_int_equal(atomic_load(failures), 0);
	assert_int_equal(atomic_load(&retries), retried);
	if (retried)
		assert_int_equal(retry_err, err);
	expect_state(ts, id, "running", -1);
	task_engine_stop(te);
	assert_int_equal(atomic_load(&runs), before + 1);
}

/* The task's row cannot be read when the worker takes it (here: no memory,
 * twice): it is read again, reported once, and runs. It used to be dropped,
 * pending until the next start. */
static void start_retried_when_task_unreadable(void **state)
{
	run_through_failures(*state, &get_failures, 2, -ENOMEM, 1, 1);
}

/* The start cannot be written for a reason other than a busy database or a
 * full disk (no memory): tried again, reported once, and the task runs. It
 * used to stay pending until the next start. */
static void start_retried_when_write_fails_without_memory(void **state)
{
	run_through_failures(*state, &update_failures, 1, -ENOMEM, 1, 1);
}

/* A task that is not there (-ENOENT) is a refusal, not a passing failure:
 * the worker drops it at once and reports nothing; the second kick reads
 * it and it runs, once. */
static void vanished_task_not_retried(void **state)
{
	run_through_failures(*state, &get_failures, 1, -ENOENT, 2, 0);
}

int main(void)
{
	if (crypto_sm2_generate(&device_key) < 0)
		return 1;
	const struct CMUnitTest tests[] = {
		TEST_STORE_CASE(deferred_then_owned_then_finished),
		TEST_STORE_CASE(deferred_not_owned_fails_at_start),
		TEST_STORE_CASE(finish_failed_keeps_message_and_result),
		TEST_STORE_CASE(start_retried_while_database_busy),
		TEST_STORE_CASE(start_retried_when_task_unreadable),
		TEST_STORE_CASE(start_retried_when_write_fails_without_memory),
		TEST_STORE_CASE(vanished_task_not_retried),
	};
	int r = cmocka_run_group_tests(tests, NULL, NULL);
	crypto_sm2_key_free(device_key);
	return r;
}
