/*
 * task.c: the task engine (see task.h): a queue of task ids, worker
 * threads that run them, and one thread that delivers callbacks.
 */
#include "task/task.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/limits.h"
#include "common/util.h"
#include "proto/auth.h"
#include "proto/codes.h"
#include "proto/envelope.h"

#define TASK_QUEUE_CAP (CHSM_MAX_ACTIVE_TASKS * 2)
#define CALLBACK_TIMEOUT_SECONDS 10
#define CALLBACK_MAX_DELAY_MS (60 * 1000)
#define MAX_WORKERS 8

struct task_engine {
	struct task_engine_config cfg;
	pthread_mutex_t lock;
	pthread_cond_t work_cond;
	pthread_cond_t callback_cond;
	char queue[TASK_QUEUE_CAP][32];
	size_t q_head, q_len;
	bool stopping;
	atomic_int running;
	int nworkers;
	pthread_t workers[MAX_WORKERS];
	pthread_t callback_thread;
	bool callback_started;
};

json_t *task_to_json(const struct store_task *t, bool with_callback)
{
	json_t *o = json_object();
	if (!o)
		return NULL;
	json_object_set_new(o, "taskId", json_string(t->id));
	json_object_set_new(o, "operation", json_string(t->operation));
	json_object_set_new(o, "target", json_string(t->target));
	json_object_set_new(o, "state", json_string(t->state));
	bool finished = strcmp(t->state, "succeeded") == 0 || strcmp(t->state, "failed") == 0;
	if (finished) {
		json_object_set_new(o, "code", json_integer(t->code));
		json_object_set_new(o, "message", json_string(t->message));
	}
	json_object_set_new(o, "createdAt", json_integer(t->created_at));
	json_object_set_new(o, "startedAt", t->started_at ? json_integer(t->started_at) : json_null());
	json_object_set_new(o, "finishedAt", t->finished_at ? json_integer(t->finished_at) : json_null());
	json_t *result = t->result ? json_loads(t->result, 0, NULL) : NULL;
	json_object_set_new(o, "result", result ? result : json_object());
	if (with_callback) {
		json_t *cb = json_object();
		json_object_set_new(cb, "url", t->callback_url ? json_string(t->callback_url) : json_null());
		json_object_set_new(cb, "attempts", json_integer(t->callback_attempts));
		json_object_set_new(cb, "delivered", json_boolean(t->callback_delivered));
		json_object_set_new(o, "callback", cb);
	}
	return o;
}

static int enqueue_locked(task_engine *te, const char *id)
{
	if (te->q_len == TASK_QUEUE_CAP)
		return -ENOSPC;
	size_t slot = (te->q_head + te->q_len) % TASK_QUEUE_CAP;
	snprintf(te->queue[slot], sizeof(te->queue[slot]), "%s", id);
	te->q_len++;
	pthread_cond_signal(&te->work_cond);
	return 0;
}

void task_engine_kick(task_engine *te, const char *task_id)
{
	pthread_mutex_lock(&te->lock);
	/* Admission bounds active tasks below the queue's size. */
	(void)enqueue_locked(te, task_id);
	pthread_mutex_unlock(&te->lock);
}

int task_engine_admit(task_engine *te, const char *target)
{
	char busy[32];
	int r = store_task_active_for_target(te->cfg.store, target, busy);
	if (r == 0)
		return GMT_E_BUSY;
	if (r != -ENOENT)
		return GMT_E_STORAGE;
	size_t active;
	if (store_task_count_active(te->cfg.store, &active) < 0)
		return GMT_E_STORAGE;
	return active >= CHSM_MAX_ACTIVE_TASKS ? GMT_E_TOO_MANY_TASKS : GMT_OK;
}

int task_engine_insert(task_engine *te, const char *operation, const char *target,
		       const json_t *params, const char *callback_url, struct store_task *ret_task)
{
	struct store_task t;
	memset(&t, 0, sizeof(t));
	if (gmt_new_task_id(t.id) < 0)
		return -EIO;
	snprintf(t.operation, sizeof(t.operation), "%s", operation);
	snprintf(t.target, sizeof(t.target), "%s", target);
	snprintf(t.state, sizeof(t.state), "pending");
	snprintf(t.message, sizeof(t.message), "accepted");
	t.created_at = chsm_now_ms();
	int r = -ENOMEM;
	if (params && !(t.params = json_dumps(params, JSON_COMPACT)))
		goto fail;
	if (callback_url && !(t.callback_url = strdup(callback_url)))
		goto fail;
	r = store_task_insert(te->cfg.store, &t);
	if (r < 0)
		goto fail;
	*ret_task = t;
	return 0;
fail:
	store_task_clear(&t);
	return r;
}

int task_engine_running(task_engine *te)
{
	return atomic_load(&te->running);
}

static bool engine_stopping(task_engine *te)
{
	pthread_mutex_lock(&te->lock);
	bool stopping = te->stopping;
	pthread_mutex_unlock(&te->lock);
	return stopping;
}

/* Whether a store failure may pass: a full disk (usually freed by an
 * operator), an I/O error, a busy database, a lack of memory. Not a refusal
 * that will not change: a restricted store (-EPERM), an invalid task
 * (-EINVAL), a task that is not there (-ENOENT). */
static bool store_error_passes(int r)
{
	return r != -EPERM && r != -EINVAL && r != -ENOENT;
}

/* After a failed attempt: reports the first failure (r) of t to
 * cfg.retrying, then sleeps *pause_ms, which grows from 100 ms to 5 s. */
static void before_retry(task_engine *te, const struct store_task *t, int r, bool *reported,
			 long *pause_ms)
{
	if (!*reported && te->cfg.retrying)
		te->cfg.retrying(te->cfg.ctx, t, r);
	*reported = true;
	struct timespec ts = {*pause_ms / 1000, (*pause_ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
	*pause_ms = *pause_ms < 2500 ? *pause_ms * 2 : 5000;
}

/* Writes t, trying again while the store fails in a way that may pass
 * (store_error_passes: an answered task must not stay "pending" or
 * "running" unseen), with pauses growing from 100 ms to 5 s, until the
 * engine stops; the first failure is reported to cfg.retrying. Returns 0
 * once written, else the store's last -errno (a refusal, or the engine
 * stopped). A task left unrecorded by a stop is queued again (pending) or
 * failed as interrupted (running) at the next start. */
static int update_until_recorded(task_engine *te, const struct store_task *t)
{
	long pause_ms = 100;
	bool reported = false;
	int r;
	while ((r = store_task_update(te->cfg.store, t)) < 0 && store_error_passes(r) &&
	       !engine_stopping(te))
		before_retry(te, t, r, &reported, &pause_ms);
	return r;
}

/* Reads task id into *ret the same way: again while the failure may pass,
 * until the engine stops. 0, or the store's last -errno (-ENOENT: no such
 * task). */
static int get_until_read(task_engine *te, const char *id, struct store_task *ret)
{
	long pause_ms = 100;
	bool reported = false;
	int r;
	while ((r = store_task_get(te->cfg.store, id, ret)) < 0 && store_error_passes(r) &&
	       !engine_stopping(te)) {
		/* what the callback is told: the id, not yet read (pending) */
		struct store_task unread = {0};
		snprintf(unread.id, sizeof(unread.id), "%s", id);
		snprintf(unread.state, sizeof(unread.state), "pending");
		before_retry(te, &unread, r, &reported, &pause_ms);
	}
	return r;
}

/* Records the end of a task and schedules its callback; a worker insists
 * until the record is written (recovery at start does not: a task it cannot
 * record stays running in the store and is failed at the next start). */
static void finish_task(task_engine *te, struct store_task *t, int code, const char *msg,
			const json_t *result, bool insist)
{
	t->finished_at = chsm_now_ms();
	t->code = code;
	snprintf(t->state, sizeof(t->state), "%s", code == GMT_OK ? "succeeded" : "failed");
	snprintf(t->message, sizeof(t->message), "%s",
		 code == GMT_OK ? "OK" : (msg && *msg ? msg : gmt_code_message(code)));
	free(t->result);
	t->result = result ? json_dumps(result, JSON_COMPACT) : NULL;
	if (t->callback_url) {
		t->callback_next_at = t->finished_at;
		t->callback_delivered = false;
	}
	if (insist)
		(void)update_until_recorded(te, t);
	else
		(void)store_task_update(te->cfg.store, t);
	if (t->callback_url) {
		pthread_mutex_lock(&te->lock);
		pthread_cond_signal(&te->callback_cond);
		pthread_mutex_unlock(&te->lock);
	}
}

static void run_one(task_engine *te, const char *id)
{
	struct store_task t;
	/* Not read (gone, or the engine stops): a pending task runs after the
	 * next start. */
	if (get_until_read(te, id, &t) < 0)
		return;
	if (strcmp(t.state, "pending") != 0) {
		store_task_clear(&t);
		return;
	}
	snprintf(t.state, sizeof(t.state), "running");
	t.started_at = chsm_now_ms();
	/* Until this is written the task is pending: on a full disk it waits
	 * here (it used to be dropped, pending until the next start). */
	if (update_until_recorded(te, &t) < 0) {
		store_task_clear(&t);
		return;
	}
	atomic_fetch_add(&te->running, 1);
	json_t *result = NULL;
	char msg[256] = "";
	int code = te->cfg.run(te->cfg.ctx, &t, &result, msg, sizeof(msg));
	if (code != TASK_DEFERRED)
		finish_task(te, &t, code, msg, result, true);
	json_decref(result);
	atomic_fetch_sub(&te->running, 1);
	store_task_clear(&t);
}

int task_engine_finish(task_engine *te, const char *task_id, int code, const json_t *result,
		       const char *msg)
{
	struct store_task t;
	if (!te || !task_id || code == TASK_DEFERRED)
		return -EINVAL;
	int r = store_task_get(te->cfg.store, task_id, &t);
	if (r < 0)
		return r;
	if (strcmp(t.state, "running") != 0) {
		store_task_clear(&t);
		return -EALREADY;
	}
	finish_task(te, &t, code, msg, result, true);
	store_task_clear(&t);
	return 0;
}

static void *worker_main(void *arg)
{
	task_engine *te = arg;
	for (;;) {
		char id[32];
		pthread_mutex_lock(&te->lock);
		while (!te->stopping && te->q_len == 0)
			pthread_cond_wait(&te->work_cond, &te->lock);
		if (te->stopping) {
			pthread_mutex_unlock(&te->lock);
			return NULL;
		}
		memcpy(id, te->queue[te->q_head], sizeof(id));
		te->q_head = (te->q_head + 1) % TASK_QUEUE_CAP;
		te->q_len--;
		pthread_mutex_unlock(&te->lock);
		run_one(te, id);
	}
}

/* ---- callbacks ---- */

struct sink {
	size_t len;
};

static size_t discard_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct sink *s = userdata;
	s->len += size * nmemb;
	return size * nmemb;
}

/* The request-target (path and query) of url, malloc'ed. */
static char *url_target(const char *url)
{
	CURLU *u = curl_url();
	char *path = NULL, *query = NULL, *out = NULL;
	if (!u || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK)
		goto done;
	if (curl_url_get(u, CURLUPART_PATH, &path, 0) != CURLUE_OK)
		goto done;
	(void)curl_url_get(u, CURLUPART_QUERY, &query, 0);
	size_t n = strlen(path) + (query ? strlen(query) + 1 : 0) + 1;
	out = malloc(n);
	if (out)
		snprintf(out, n, "%s%s%s", path, query ? "?" : "", query ? query : "");
done:
	curl_free(path);
	curl_free(query);
	curl_url_cleanup(u);
	return out;
}

/* POSTs the task object to its callback URL. Returns true on a 2xx. */
static bool deliver(task_engine *te, const struct store_task *t)
{
	bool ok = false;
	json_t *obj = task_to_json(t, false);
	char *body = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
	char *target = url_target(t->callback_url);
	CURL *c = curl_easy_init();
	struct curl_slist *hdrs = NULL;
	struct gmt_signed_headers sh;
	if (!body || !target || !c)
		goto done;
	if (gmt_sign_request(te->cfg.device_key, "POST", target, body, strlen(body), chsm_now_ms(),
			     &sh) < 0)
		goto done;
	char line[256];
	const struct {
		const char *name, *value;
	} h[] = {
		{"Content-Type", "application/json"}, {GMT_HDR_TIMESTAMP, sh.timestamp},
		{GMT_HDR_NONCE, sh.nonce},            {GMT_HDR_KEY_ID, sh.key_id},
		{GMT_HDR_ALG, sh.alg},                {GMT_HDR_SIGNATURE, sh.signature},
		{"Expect", ""},
	};
	for (size_t i = 0; i < sizeof(h) / sizeof(h[0]); i++) {
		snprintf(line, sizeof(line), "%s:%s%s", h[i].name, *h[i].value ? " " : "", h[i].value);
		struct curl_slist *n = curl_slist_append(hdrs, line);
		if (!n)
			goto done;
		hdrs = n;
	}
	struct sink sink = {0};
	curl_easy_setopt(c, CURLOPT_URL, t->callback_url);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_POST, 1L);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, (long)CALLBACK_TIMEOUT_SECONDS);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 5L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &sink);
	if (te->cfg.callback_cafile)
		curl_easy_setopt(c, CURLOPT_CAINFO, te->cfg.callback_cafile);
	if (curl_easy_perform(c) == CURLE_OK) {
		long status = 0;
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
		ok = status >= 200 && status < 300;
	}
done:
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(c);
	free(target);
	free(body);
	json_decref(obj);
	return ok;
}

static void deliver_due(task_engine *te)
{
	struct store_task *due = NULL;
	size_t n = 0;
	if (store_task_callbacks_due(te->cfg.store, chsm_now_ms(), &due, &n) < 0)
		return;
	for (size_t i = 0; i < n; i++) {
		pthread_mutex_lock(&te->lock);
		bool stopping = te->stopping;
		pthread_mutex_unlock(&te->lock);
		if (stopping)
			break;
		struct store_task *t = &due[i];
		bool ok = deliver(te, t);
		int64_t now = chsm_now_ms();
		t->callback_attempts++;
		if (ok) {
			t->callback_delivered = true;
			t->callback_next_at = 0;
		} else if (now - t->finished_at > CHSM_CALLBACK_RETRY_MS) {
			t->callback_next_at = 0; /* abandoned; visible in GET /tasks */
		} else {
			int shift = t->callback_attempts < 16 ? t->callback_attempts - 1 : 16;
			int64_t delay = 1000LL << shift;
			t->callback_next_at = now + (delay > CALLBACK_MAX_DELAY_MS ? CALLBACK_MAX_DELAY_MS : delay);
		}
		(void)store_task_update(te->cfg.store, t);
	}
	store_task_array_free(due, n);
	(void)store_task_purge(te->cfg.store, chsm_now_ms() - CHSM_TASK_RETENTION_MS);
}

static void *callback_main(void *arg)
{
	task_engine *te = arg;
	pthread_mutex_lock(&te->lock);
	while (!te->stopping) {
		pthread_mutex_unlock(&te->lock);
		deliver_due(te);
		pthread_mutex_lock(&te->lock);
		if (te->stopping)
			break;
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += 1;
		pthread_cond_timedwait(&te->callback_cond, &te->lock, &ts);
	}
	pthread_mutex_unlock(&te->lock);
	return NULL;
}

/* ---- life cycle ---- */

static int recover(task_engine *te)
{
	struct store_task *tasks = NULL;
	size_t n = 0;
	int r = store_task_list_by_state(te->cfg.store, "running", &tasks, &n);
	if (r < 0)
		return r;
	for (size_t i = 0; i < n; i++) {
		if (te->cfg.owned && te->cfg.owned(te->cfg.ctx, &tasks[i]))
			continue;
		if (te->cfg.interrupted)
			te->cfg.interrupted(te->cfg.ctx, &tasks[i]);
		finish_task(te, &tasks[i], GMT_E_INTERNAL, "interrupted by a CHSM restart", NULL,
			    false);
	}
	store_task_array_free(tasks, n);
	r = store_task_list_by_state(te->cfg.store, "pending", &tasks, &n);
	if (r < 0)
		return r;
	pthread_mutex_lock(&te->lock);
	for (size_t i = 0; i < n; i++)
		(void)enqueue_locked(te, tasks[i].id);
	pthread_mutex_unlock(&te->lock);
	store_task_array_free(tasks, n);
	return 0;
}

int task_engine_start(const struct task_engine_config *cfg, task_engine **ret_engine)
{
	if (!cfg || !cfg->store || !cfg->device_key || !cfg->run)
		return -EINVAL;
	task_engine *te = calloc(1, sizeof(*te));
	if (!te)
		return -ENOMEM;
	te->cfg = *cfg;
	pthread_mutex_init(&te->lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&te->work_cond, NULL);
	pthread_cond_init(&te->callback_cond, &ca);
	pthread_condattr_destroy(&ca);
	int r = recover(te);
	if (r < 0)
		goto fail;
	int want = cfg->workers > 0 ? cfg->workers : 2;
	if (want > MAX_WORKERS)
		want = MAX_WORKERS;
	for (; te->nworkers < want; te->nworkers++) {
		if (pthread_create(&te->workers[te->nworkers], NULL, worker_main, te) != 0) {
			r = -EAGAIN;
			goto fail;
		}
	}
	if (pthread_create(&te->callback_thread, NULL, callback_main, te) != 0) {
		r = -EAGAIN;
		goto fail;
	}
	te->callback_started = true;
	*ret_engine = te;
	return 0;
fail:
	task_engine_stop(te);
	return r;
}

void task_engine_stop(task_engine *te)
{
	if (!te)
		return;
	pthread_mutex_lock(&te->lock);
	te->stopping = true;
	pthread_cond_broadcast(&te->work_cond);
	pthread_cond_broadcast(&te->callback_cond);
	pthread_mutex_unlock(&te->lock);
	for (int i = 0; i < te->nworkers; i++)
		pthread_join(te->workers[i], NULL);
	if (te->callback_started)
		pthread_join(te->callback_thread, NULL);
	pthread_cond_destroy(&te->work_cond);
	pthread_cond_destroy(&te->callback_cond);
	pthread_mutex_destroy(&te->lock);
	free(te);
}
