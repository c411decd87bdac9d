/*
 * Unit tests of the store's task table: insert/get/update, lists by state,
 * active counts and per-target lookups, due callbacks and purging.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "store/store.h"
#include "test_store_util.h"

static struct store_task make_task(const char *id, const char *target, const char *state,
				   int64_t created_at)
{
	struct store_task t;
	memset(&t, 0, sizeof(t));
	snprintf(t.id, sizeof(t.id), "%s", id);
	snprintf(t.operation, sizeof(t.operation), "vsm.start");
	snprintf(t.target, sizeof(t.target), "%s", target);
	snprintf(t.state, sizeof(t.state), "%s", state);
	t.created_at = created_at;
	return t;
}

static void test_task_rows(void **state)
{
	struct test_store *t = *state;
	struct store_task a = make_task("task-1", "v1", "pending", 100), got;
	a.params = "{\"start\":true}";
	a.callback_url = "https://platform.example/cb";
	assert_int_equal(store_task_get(t->s, "task-1", &got), -ENOENT);
	assert_int_equal(store_task_insert(t->s, &a), 0);
	assert_int_equal(store_task_insert(t->s, &a), -EEXIST);
	assert_int_equal(store_task_get(t->s, "task-1", &got), 0);
	assert_string_equal(got.id, "task-1");
	assert_string_equal(got.operation, "vsm.start");
	assert_string_equal(got.target, "v1");
	assert_string_equal(got.state, "pending");
	assert_string_equal(got.params, a.params);
	assert_null(got.result);
	assert_string_equal(got.callback_url, a.callback_url);
	assert_true(got.created_at == 100);
	assert_false(got.callback_delivered);
	store_task_clear(&got);
	assert_null(got.params);
	store_task_clear(NULL);

	snprintf(a.state, sizeof(a.state), "failed");
	snprintf(a.message, sizeof(a.message), "VSM service did not start");
	a.code = 5000;
	a.started_at = 110;
	a.finished_at = 120;
	a.result = "{}";
	a.params = NULL;
	a.callback_attempts = 3;
	a.callback_delivered = true;
	a.callback_next_at = 0;
	assert_int_equal(store_task_update(t->s, &a), 0);
	assert_int_equal(store_task_get(t->s, "task-1", &got), 0);
	assert_string_equal(got.state, "failed");
	assert_string_equal(got.message, "VSM service did not start");
	assert_int_equal(got.code, 5000);
	assert_true(got.started_at == 110 && got.finished_at == 120);
	assert_null(got.params);
	assert_string_equal(got.result, "{}");
	assert_int_equal(got.callback_attempts, 3);
	assert_true(got.callback_delivered);
	store_task_clear(&got);

	struct store_task missing = make_task("nope", "v1", "pending", 1);
	assert_int_equal(store_task_update(t->s, &missing), -ENOENT);
	struct store_task bad = make_task("bad", "v1", "pending", 1);
	memset(bad.message, 'm', sizeof(bad.message));
	assert_int_equal(store_task_insert(t->s, &bad), -EINVAL);
	bad = make_task("", "v1", "pending", 1);
	assert_int_equal(store_task_insert(t->s, &bad), -EINVAL);
}

static void test_task_queries(void **state)
{
	struct test_store *t = *state;
	/* Inserted out of creation order on purpose. */
	struct store_task tasks[] = {
		make_task("t3", "v2", "pending", 300),
		make_task("t1", "v1", "pending", 100),
		make_task("t2", "v1", "running", 200),
		make_task("t4", "chsm", "succeeded", 50),
		make_task("t5", "v3", "pending", 100),
	};
	for (size_t i = 0; i < sizeof(tasks) / sizeof(tasks[0]); i++)
		assert_int_equal(store_task_insert(t->s, &tasks[i]), 0);

	struct store_task *list = NULL;
	size_t count = 0;
	assert_int_equal(store_task_list_by_state(t->s, "pending", &list, &count), 0);
	assert_int_equal(count, 3);
	assert_string_equal(list[0].id, "t1");   /* oldest first, ties by insertion */
	assert_string_equal(list[1].id, "t5");
	assert_string_equal(list[2].id, "t3");
	store_task_array_free(list, count);
	assert_int_equal(store_task_list_by_state(t->s, "failed", &list, &count), 0);
	assert_int_equal(count, 0);
	store_task_array_free(list, count);
	store_task_array_free(NULL, 0);

	assert_int_equal(store_task_count_active(t->s, &count), 0);
	assert_int_equal(count, 4);

	char id[32];
	assert_int_equal(store_task_active_for_target(t->s, "v1", id), 0);
	assert_string_equal(id, "t1");
	assert_int_equal(store_task_active_for_target(t->s, "chsm", id), -ENOENT);
	assert_int_equal(store_task_active_for_target(t->s, "v9", id), -ENOENT);

	snprintf(tasks[1].state, sizeof(tasks[1].state), "succeeded");
	assert_int_equal(store_task_update(t->s, &tasks[1]), 0);
	assert_int_equal(store_task_active_for_target(t->s, "v1", id), 0);
	assert_string_equal(id, "t2");
	assert_int_equal(store_task_count_active(t->s, &count), 0);
	assert_int_equal(count, 3);
}

static void test_task_callbacks_and_purge(void **state)
{
	struct test_store *t = *state;
	struct store_task due = make_task("due", "v1", "succeeded", 1);
	due.finished_at = 10;
	due.callback_url = "https://p.example/cb";
	due.callback_next_at = 500;
	struct store_task later = due;
	snprintf(later.id, sizeof(later.id), "later");
	later.callback_next_at = 2000;
	struct store_task first = due;
	snprintf(first.id, sizeof(first.id), "first");
	snprintf(first.state, sizeof(first.state), "failed");
	first.callback_next_at = 400;
	struct store_task delivered = due;
	snprintf(delivered.id, sizeof(delivered.id), "delivered");
	delivered.callback_delivered = true;
	struct store_task abandoned = due;
	snprintf(abandoned.id, sizeof(abandoned.id), "abandoned");
	abandoned.callback_next_at = 0;
	struct store_task running = due;
	snprintf(running.id, sizeof(running.id), "running");
	snprintf(running.state, sizeof(running.state), "running");
	struct store_task no_cb = make_task("no-cb", "v2", "failed", 1);
	no_cb.finished_at = 10;
	struct store_task recent = make_task("recent", "v2", "succeeded", 1);
	recent.finished_at = 5000;
	struct store_task *all[] = {&due, &later, &first, &delivered, &abandoned,
				    &running, &no_cb, &recent};
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		assert_int_equal(store_task_insert(t->s, all[i]), 0);

	struct store_task *list = NULL;
	size_t count = 0;
	assert_int_equal(store_task_callbacks_due(t->s, 1000, &list, &count), 0);
	assert_int_equal(count, 2);
	assert_string_equal(list[0].id, "first");
	assert_string_equal(list[1].id, "due");
	assert_string_equal(list[1].callback_url, "https://p.example/cb");
	store_task_array_free(list, count);
	assert_int_equal(store_task_callbacks_due(t->s, 399, &list, &count), 0);
	assert_int_equal(count, 0);
	store_task_array_free(list, count);

	/* Purge: finished before the cutoff and callback settled. */
	assert_int_equal(store_task_purge(t->s, 1000), 0);
	const char *kept[] = {"due", "later", "first", "running", "recent"};
	const char *gone[] = {"delivered", "abandoned", "no-cb"};
	struct store_task got;
	for (size_t i = 0; i < sizeof(kept) / sizeof(kept[0]); i++) {
		assert_int_equal(store_task_get(t->s, kept[i], &got), 0);
		store_task_clear(&got);
	}
	for (size_t i = 0; i < sizeof(gone) / sizeof(gone[0]); i++)
		assert_int_equal(store_task_get(t->s, gone[i], &got), -ENOENT);

	/* Tasks survive a restart. */
	assert_int_equal(test_store_reopen(t, test_master_key), 0);
	assert_int_equal(store_task_get(t->s, "later", &got), 0);
	assert_true(got.callback_next_at == 2000);
	store_task_clear(&got);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		TEST_STORE_CASE(test_task_rows),
		TEST_STORE_CASE(test_task_queries),
		TEST_STORE_CASE(test_task_callbacks_and_purge),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
