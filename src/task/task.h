/*
 * task.h: the task engine of PROFILE.md §7.
 *
 * Asynchronous operations become tasks: persisted in the store before the
 * request that made them is answered (202), run by a small pool of worker
 * threads, and finished with a code, a message and a result. When a task
 * ends and it has a callback URL, the engine POSTs the task object there,
 * signed with the device key like a request (§5), and retries with growing
 * delays (1 s doubling to 60 s) for CHSM_CALLBACK_RETRY_MS after the task
 * ended, across restarts (the schedule is in the store).
 *
 * A run function may also answer TASK_DEFERRED: the task then stays
 * `running` in the store (with whatever the owner persisted about it) and
 * the owner ends it later, possibly in another process after a restart,
 * with task_engine_finish. At start, recovery asks the owner (owned) about
 * each task found `running`; those it claims are left running for it.
 *
 * Guarantees: a task is never lost. A worker that cannot record a task's
 * end (full disk) tries again, with pauses up to 5 s, until it can or the
 * engine stops. At start the engine fails every task
 * found `running` (the CHSM died under it) with 5000, after letting the
 * owner repair its target, and queues again every task found `pending`.
 * Admission (one mutating task per target, a bounded number at once) is
 * checked inside the caller's store transaction, so it is atomic with the
 * caller's own state change.
 */
#ifndef CHSM_TASK_H
#define CHSM_TASK_H

#include <jansson.h>
#include <stdbool.h>

#include "crypto/crypto.h"
#include "store/store.h"

typedef struct task_engine task_engine;

/* A run function's answer for a task its owner will finish later. */
#define TASK_DEFERRED (-1)

/* Runs task t on a worker thread. Returns a gmt_code: GMT_OK with
 * *ret_result set (a new JSON object reference, or NULL for none), or an
 * error code with msg filled (a fixed text, never a secret) and, when the
 * failure has one (a VSM upgrade rolled back), a result too; or
 * TASK_DEFERRED (nothing recorded; *ret_result is ignored). */
typedef int (*task_run_fn)(void *ctx, const struct store_task *t, json_t **ret_result, char *msg,
			   size_t msglen);
/* Called at start for each task that was running when the CHSM stopped,
 * before it is marked failed, so the owner can put its target right. */
typedef void (*task_interrupted_fn)(void *ctx, const struct store_task *t);
/* Called at start, first, for each task found running: true when its owner
 * deferred it and will end it with task_engine_finish (it stays running and
 * interrupted is not called). The owner must then really end it in this
 * process, or answer false at a later start. */
typedef bool (*task_owned_fn)(void *ctx, const struct store_task *t);
/* Called once per read or write of task t that the store failed with err
 * (a full disk, an I/O error, a busy database, a lack of memory: anything
 * but -EPERM, -EINVAL, -ENOENT) and that a worker now tries again: the
 * read of a task it is to run (only t->id is set, t->state is "pending"),
 * the start of a task (t->state "running"; the stored task stays pending
 * until it is written) or its end. For the log. */
typedef void (*task_retrying_fn)(void *ctx, const struct store_task *t, int err);

struct task_engine_config {
	chsm_store *store;
	const crypto_sm2_key *device_key;   /* signs callbacks */
	task_run_fn run;
	task_interrupted_fn interrupted;
	task_owned_fn owned;                /* NULL: nothing is ever deferred */
	task_retrying_fn retrying;          /* may be NULL */
	void *ctx;
	int workers;                        /* 0: 2 */
	const char *callback_cafile;        /* extra CA file for https callbacks, or NULL */
};

/* Recovers persisted tasks and starts the threads. */
int task_engine_start(const struct task_engine_config *cfg, task_engine **ret_engine);
/* Stops taking new work, lets running tasks finish, joins threads. */
void task_engine_stop(task_engine *te);

/* Inside a store transaction: 3005 when target has a pending or running
 * task, 3008 when CHSM_MAX_ACTIVE_TASKS are active, GMT_OK otherwise
 * (5001 on a storage failure). */
int task_engine_admit(task_engine *te, const char *target);
/* Inside the same transaction: records a new pending task. params may be
 * NULL. ret_task is filled (clear it with store_task_clear). */
int task_engine_insert(task_engine *te, const char *operation, const char *target,
		       const json_t *params, const char *callback_url, struct store_task *ret_task);
/* After the commit: hands the task to the workers. */
void task_engine_kick(task_engine *te, const char *task_id);

/* Ends the deferred task task_id (found `running`) with code (GMT_OK:
 * succeeded with result, a new reference or NULL; else failed with msg or
 * the code's message, and result too, if given), records it (trying again
 * like a worker does) and schedules its callback exactly as for any task.
 * Returns 0, -ENOENT (no such task), -EALREADY (not running) or -errno of
 * the store. */
int task_engine_finish(task_engine *te, const char *task_id, int code, const json_t *result,
		       const char *msg);

/* Number of tasks running now (for status). */
int task_engine_running(task_engine *te);

/* The task object of §7 (with "callback" when with_callback). New ref. */
json_t *task_to_json(const struct store_task *t, bool with_callback);

#endif
