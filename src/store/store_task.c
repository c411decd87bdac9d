/*
 * store_task.c: the task table (PROFILE.md §7): asynchronous operations,
 * their results and the delivery state of their callbacks.
 *
 * Guarantees: a task and each change to it are committed before the call
 * returns, so tasks survive a restart; lists come in a stable order (oldest
 * first, ties by insertion); a task is only purged once it is finished and
 * its callback is delivered or abandoned.
 */
#include "store/store_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* The columns row_to_task reads, in its order. */
#define TASK_SELECT                                                                   \
	"SELECT id, operation, target, state, code, message, created_at, started_at," \
	" finished_at, params, result, callback_url, callback_attempts,"              \
	" callback_delivered, callback_next_at FROM tasks"

#define TASK_ACTIVE "state IN ('pending', 'running')"
#define TASK_FINISHED "state IN ('succeeded', 'failed')"

static bool task_valid(const struct store_task *t)
{
	return t && store_nonempty_fits(t->id, sizeof(t->id)) &&
	       store_fits(t->operation, sizeof(t->operation)) &&
	       store_fits(t->target, sizeof(t->target)) && store_fits(t->state, sizeof(t->state)) &&
	       store_fits(t->message, sizeof(t->message));
}

/* Runs sql (an INSERT or UPDATE with ?1..?15 in the column order of the
 * tasks table) with the fields of t. */
static int task_write(chsm_store *s, const char *sql, const struct store_task *t,
		      int *ret_changes)
{
	return store_run(s, ret_changes, sql, "tttt" "it" "III" "ttt" "iiI",
			 t->id, t->operation, t->target, t->state, t->code, t->message,
			 (int64_t)t->created_at, (int64_t)t->started_at, (int64_t)t->finished_at,
			 t->params, t->result, t->callback_url, t->callback_attempts,
			 t->callback_delivered ? 1 : 0, (int64_t)t->callback_next_at);
}

/* Fills *ret from a row of TASK_SELECT; its strings are malloc'ed. */
static int row_to_task(sqlite3_stmt *st, struct store_task *ret)
{
	struct store_task t;
	int delivered = 0;
	memset(&t, 0, sizeof(t));
	int r = store_col_copy(st, 0, t.id, sizeof(t.id));
	if (r >= 0)
		r = store_col_copy(st, 1, t.operation, sizeof(t.operation));
	if (r >= 0)
		r = store_col_copy(st, 2, t.target, sizeof(t.target));
	if (r >= 0)
		r = store_col_copy(st, 3, t.state, sizeof(t.state));
	if (r >= 0)
		r = store_col_int(st, 4, &t.code);
	if (r >= 0)
		r = store_col_copy(st, 5, t.message, sizeof(t.message));
	if (r >= 0)
		r = store_col_dup(st, 9, &t.params);
	if (r >= 0)
		r = store_col_dup(st, 10, &t.result);
	if (r >= 0)
		r = store_col_dup(st, 11, &t.callback_url);
	if (r >= 0)
		r = store_col_int(st, 12, &t.callback_attempts);
	if (r >= 0)
		r = store_col_int(st, 13, &delivered);
	if (r < 0) {
		store_task_clear(&t);
		return r;
	}
	t.created_at = sqlite3_column_int64(st, 6);
	t.started_at = sqlite3_column_int64(st, 7);
	t.finished_at = sqlite3_column_int64(st, 8);
	t.callback_delivered = delivered != 0;
	t.callback_next_at = sqlite3_column_int64(st, 14);
	*ret = t;
	return 0;
}

/* All tasks sql (a TASK_SELECT query with values bound by types) returns,
 * into a malloc'ed array. */
static int list_tasks(chsm_store *s, struct store_task **ret_tasks, size_t *ret_count,
		      const char *sql, const char *types, ...)
{
	sqlite3_stmt *st = NULL;
	struct store_task *tasks = NULL;
	size_t count = 0, cap = 0;
	va_list ap;
	int r;
	store_lock(s);
	va_start(ap, types);
	r = store_prepare_v(s, &st, sql, types, ap);
	va_end(ap);
	if (r < 0)
		goto out;
	while ((r = store_step(st)) == 1) {
		if (count == cap) {
			size_t ncap = cap ? 2 * cap : 16;
			struct store_task *n = realloc(tasks, ncap * sizeof(*n));
			if (!n) {
				r = -ENOMEM;
				goto out;
			}
			tasks = n;
			cap = ncap;
		}
		r = row_to_task(st, &tasks[count]);
		if (r < 0)
			goto out;
		count++;
	}
	if (r < 0)
		goto out;
	*ret_tasks = tasks;
	*ret_count = count;
	tasks = NULL;
	count = 0;
out:
	store_task_array_free(tasks, count);
	store_release(s, st);
	store_unlock(s);
	return r;
}

int store_task_insert(chsm_store *s, const struct store_task *t)
{
	if (s && s->restricted)
		return -EPERM;
	if (!s || !task_valid(t))
		return -EINVAL;
	int r = store_write_begin(s);
	if (r < 0)
		return r;
	r = task_write(s,
		       "INSERT INTO tasks(id, operation, target, state, code, message, created_at,"
		       " started_at, finished_at, params, result, callback_url, callback_attempts,"
		       " callback_delivered, callback_next_at)"
		       " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
		       t, NULL);
	return store_write_end(s, r);
}

int store_task_update(chsm_store *s, const struct store_task *t)
{
	if (s && s->restricted)
		return -EPERM;
	int changes = 0;
	if (!s || !task_valid(t))
		return -EINVAL;
	int r = store_write_begin(s);
	if (r < 0)
		return r;
	r = task_write(s,
		       "UPDATE tasks SET operation = ?2, target = ?3, state = ?4, code = ?5,"
		       " message = ?6, created_at = ?7, started_at = ?8, finished_at = ?9,"
		       " params = ?10, result = ?11, callback_url = ?12, callback_attempts = ?13,"
		       " callback_delivered = ?14, callback_next_at = ?15 WHERE id = ?1",
		       t, &changes);
	if (r >= 0 && changes == 0)
		r = -ENOENT;
	return store_write_end(s, r);
}

int store_task_get(chsm_store *s, const char *id, struct store_task *ret)
{
	if (s && s->restricted)
		return -EPERM;
	sqlite3_stmt *st = NULL;
	if (!s || !store_nonempty_fits(id, sizeof(ret->id)) || !ret)
		return -EINVAL;
	store_lock(s);
	int r = store_query_row(s, &st, TASK_SELECT " WHERE id = ?", "t", id);
	if (r >= 0)
		r = row_to_task(st, ret);
	store_release(s, st);
	store_unlock(s);
	return r;
}

int store_task_list_by_state(chsm_store *s, const char *state, struct store_task **ret_tasks,
			     size_t *ret_count)
{
	if (s && s->restricted)
		return -EPERM;
	if (!s || !state || !ret_tasks || !ret_count)
		return -EINVAL;
	return list_tasks(s, ret_tasks, ret_count,
			  TASK_SELECT " WHERE state = ? ORDER BY created_at, rowid", "t", state);
}

int store_task_count_active(chsm_store *s, size_t *ret_count)
{
	if (s && s->restricted)
		return -EPERM;
	if (!s || !ret_count)
		return -EINVAL;
	store_lock(s);
	int r = store_count(s, ret_count, "SELECT count(*) FROM tasks WHERE " TASK_ACTIVE, "");
	store_unlock(s);
	return r;
}

int store_task_active_for_target(chsm_store *s, const char *target, char ret_id[32])
{
	if (s && s->restricted)
		return -EPERM;
	sqlite3_stmt *st = NULL;
	if (!s || !target || !ret_id)
		return -EINVAL;
	store_lock(s);
	int r = store_query_row(s, &st,
				"SELECT id FROM tasks WHERE target = ? AND " TASK_ACTIVE
				" ORDER BY created_at, rowid LIMIT 1",
				"t", target);
	if (r >= 0)
		r = store_col_copy(st, 0, ret_id, 32);
	store_release(s, st);
	store_unlock(s);
	return r;
}

int store_task_callbacks_due(chsm_store *s, int64_t now_ms, struct store_task **ret_tasks,
			     size_t *ret_count)
{
	if (s && s->restricted)
		return -EPERM;
	if (!s || !ret_tasks || !ret_count)
		return -EINVAL;
	return list_tasks(s, ret_tasks, ret_count,
			  TASK_SELECT " WHERE " TASK_FINISHED " AND callback_url IS NOT NULL"
			  " AND callback_delivered = 0 AND callback_next_at > 0"
			  " AND callback_next_at <= ? ORDER BY callback_next_at, rowid",
			  "I", (int64_t)now_ms);
}

int store_task_purge(chsm_store *s, int64_t cutoff_ms)
{
	if (s && s->restricted)
		return -EPERM;
	if (!s)
		return -EINVAL;
	int r = store_write_begin(s);
	if (r < 0)
		return r;
	r = store_run(s, NULL,
		      "DELETE FROM tasks WHERE " TASK_FINISHED " AND finished_at < ?"
		      " AND (callback_url IS NULL OR callback_delivered = 1"
		      " OR callback_next_at = 0)",
		      "I", (int64_t)cutoff_ms);
	return store_write_end(s, r);
}

void store_task_clear(struct store_task *t)
{
	if (!t)
		return;
	free(t->params);
	free(t->result);
	free(t->callback_url);
	memset(t, 0, sizeof(*t));
}

void store_task_array_free(struct store_task *tasks, size_t count)
{
	if (!tasks)
		return;
	for (size_t i = 0; i < count; i++)
		store_task_clear(&tasks[i]);
	free(tasks);
}
