/*
 * ops.c: the work behind the VSM lifecycle tasks, the supervisor's fault
 * reports, and the settling of VSM states when chsmd starts.
 *
 * Each operation ends with the VSM in a stable state (stopped, running or
 * fault) written in one store transaction; destructive steps (reset,
 * delete) zeroise in the same transaction that changes the state, so a
 * crash leaves either the old VSM or the new state, never half of each.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/internal.h"
#include "common/log.h"
#include "common/util.h"

/* Writes state (and error) of VSM id in one transaction. */
static int set_state(struct api_ctx *ctx, const char *id, const char *state, const char *error,
		     int desired_running, bool started);

int api_vsm_set_state(struct api_ctx *ctx, const char *id, const char *state, const char *error,
		      int desired_running, bool started)
{
	return set_state(ctx, id, state, error, desired_running, started);
}

/* Milliseconds a task keeps trying to settle a VSM's state while the store
 * fails (full disk); beyond that, the next start settles it. */
#define SETTLE_RETRY_MS (2 * 60 * 1000)

int api_vsm_settle_state(struct api_ctx *ctx, const char *id, const char *state,
			 const char *error)
{
	int64_t give_up = chsm_now_ms() + SETTLE_RETRY_MS;
	long pause_ms = 100;
	bool logged = false;
	for (;;) {
		int r = set_state(ctx, id, state, error, 0, false);
		if (r != -ENOSPC && r != -EIO && r != -EBUSY)
			return r;
		if (chsm_now_ms() > give_up) {
			chsm_log(CHSM_LOG_ERROR, "store.retry", "vsm", id, "state", state, "error",
				 "gave up: the next start settles it", NULL);
			return r;
		}
		if (!logged)
			chsm_log(CHSM_LOG_WARNING, "store.retry", "vsm", id, "state", state, "error",
				 r == -ENOSPC ? "disk full; retrying" : "storage failing; retrying",
				 NULL);
		logged = true;
		struct timespec ts = {pause_ms / 1000, (pause_ms % 1000) * 1000000L};
		nanosleep(&ts, NULL);
		pause_ms = pause_ms < 2500 ? pause_ms * 2 : 5000;
	}
}

static int set_state(struct api_ctx *ctx, const char *id, const char *state, const char *error,
		     int desired_running, bool started)
{
	struct store_vsm v;
	int r = store_begin(ctx->store);
	if (r < 0)
		return r;
	r = store_vsm_get(ctx->store, id, &v);
	if (r < 0)
		goto rollback;
	snprintf(v.state, sizeof(v.state), "%s", state);
	if (error)
		snprintf(v.last_error, sizeof(v.last_error), "%s", error);
	if (desired_running >= 0)
		v.desired_running = desired_running;
	v.started_at = started ? chsm_now_ms() : 0;
	v.updated_at = chsm_now_ms();
	r = store_vsm_update(ctx->store, &v);
	if (r < 0)
		goto rollback;
	r = store_commit(ctx->store);
	if (r == 0)
		chsm_log(error && *error ? CHSM_LOG_WARNING : CHSM_LOG_INFO, "vsm.state", "vsm", id,
			 "state", state, "error", error ? error : "", NULL);
	return r;
rollback:
	store_rollback(ctx->store);
	return r;
}

int api_vsm_stats_path(const struct api_ctx *ctx, const char *id, char *out, size_t len)
{
	int n = snprintf(out, len, "%s/run/vsm-%s.stats.json", ctx->state_dir, id);
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

int api_vsm_spawn(struct api_ctx *ctx, const struct store_vsm *v, const char *binary,
		  const char *netns, char *err, size_t errlen)
{
	char db[sizeof(ctx->state_dir) + 16], stats[sizeof(ctx->state_dir) + 96];
	char bin[sizeof(ctx->state_dir) + 128];
	uint8_t key[STORE_VSM_KEY_LEN];
	if (!binary)
		binary = api_vsm_binary(ctx, v->version, bin, sizeof(bin));
	int r = api_vsm_stats_path(ctx, v->id, stats, sizeof(stats));
	if (r >= 0 && (size_t)snprintf(db, sizeof(db), "%s/chsm.db", ctx->state_dir) >= sizeof(db))
		r = -ENAMETOOLONG;
	if (r >= 0)
		r = store_vsm_subkey(ctx->store, v->id, key);
	if (r >= 0) {
		/* The VSM's process gets its own subkey, never the master key. */
		struct vsm_start_options o = {
			.vsm_id = v->id, .ip = v->network.ip_address, .port = v->network.port,
			.db_path = db, .key = key, .key_len = sizeof(key),
			.max_sessions = v->max_sessions, .max_keys = v->max_keys,
			.stats_path = stats, .netns_path = netns, .vsmd_path = binary,
			.err = err, .errlen = errlen,
		};
		r = vsm_supervisor_start(ctx->supervisor, &o);
		crypto_wipe(key, sizeof(key));
	}
	return r == -EALREADY ? 0 : r;
}

/* Starts the VSM process; ends running, or fault with the reason. */
static int do_start(struct api_ctx *ctx, const char *id, char *msg, size_t msglen)
{
	struct store_vsm v;
	if (store_vsm_get(ctx->store, id, &v) < 0)
		return GMT_E_VSM_NOT_FOUND;
	if (!v.network.configured) {
		snprintf(msg, msglen, "the VSM has no network address");
		set_state(ctx, id, "stopped", msg, 0, false);
		return GMT_E_STATE;
	}
	char err[160] = "", netns[256];
	int r = api_vsm_net_prepare(ctx, id, &v.network, netns, sizeof(netns), err, sizeof(err));
	if (r < 0) {
		snprintf(msg, msglen, "VSM network could not be prepared: %s", err);
		set_state(ctx, id, "fault", msg, 0, false);
		return GMT_E_INTERNAL;
	}
	r = api_vsm_spawn(ctx, &v, NULL, netns[0] ? netns : NULL, err, sizeof(err));
	if (r < 0) {
		api_vsm_net_release(ctx, id);
		snprintf(msg, msglen, "VSM service failed to start: %s", err[0] ? err : strerror(-r));
		set_state(ctx, id, "fault", msg, 0, false);
		return r == -EADDRINUSE ? GMT_E_ADDRESS_IN_USE : GMT_E_INTERNAL;
	}
	if (set_state(ctx, id, "running", "", 1, true) < 0)
		return GMT_E_STORAGE;
	return GMT_OK;
}

int api_vsm_do_start(struct api_ctx *ctx, const char *id, char *msg, size_t msglen)
{
	return do_start(ctx, id, msg, msglen);
}

static int do_stop(struct api_ctx *ctx, const char *id)
{
	int r = vsm_supervisor_stop(ctx->supervisor, id);
	if (r < 0 && r != -ENOENT)
		return GMT_E_INTERNAL;
	api_vsm_net_release(ctx, id);
	return set_state(ctx, id, "stopped", NULL, 0, false) < 0 ? GMT_E_STORAGE : GMT_OK;
}

/* Zeroises keys and token and ends stopped, in one transaction. */
static int do_reset(struct api_ctx *ctx, const char *id)
{
	int r = vsm_supervisor_stop(ctx->supervisor, id);
	if (r < 0 && r != -ENOENT)
		return GMT_E_INTERNAL;
	api_vsm_net_release(ctx, id);
	struct store_vsm v;
	if (store_begin(ctx->store) < 0)
		return GMT_E_STORAGE;
	if (store_vsm_get(ctx->store, id, &v) < 0 || store_vsm_keys_clear(ctx->store, id) < 0 ||
	    store_vsm_token_clear(ctx->store, id) < 0)
		goto fail;
	snprintf(v.state, sizeof(v.state), "stopped");
	v.last_error[0] = '\0';
	v.desired_running = false;
	v.started_at = 0;
	v.state_version++;
	v.updated_at = chsm_now_ms();
	if (store_vsm_update(ctx->store, &v) < 0 || store_commit(ctx->store) < 0)
		goto fail;
	chsm_log(CHSM_LOG_INFO, "vsm.reset", "vsm", id, NULL);
	chsm_log(CHSM_LOG_INFO, "vsm.state", "vsm", id, "state", "stopped", "error", "", NULL);
	return GMT_OK;
fail:
	store_rollback(ctx->store);
	return GMT_E_STORAGE;
}

static int do_delete(struct api_ctx *ctx, const char *id)
{
	int r = vsm_supervisor_stop(ctx->supervisor, id);
	if (r < 0 && r != -ENOENT)
		return GMT_E_INTERNAL;
	api_vsm_net_release(ctx, id);
	if (store_vsm_delete(ctx->store, id) < 0)
		return GMT_E_STORAGE;
	chsm_log(CHSM_LOG_INFO, "vsm.deleted", "vsm", id, NULL);
	return GMT_OK;
}

static json_t *details_of(struct api_ctx *ctx, const char *id)
{
	struct store_vsm v;
	if (store_vsm_get(ctx->store, id, &v) < 0)
		return NULL;
	return api_vsm_details(ctx, &v);
}

static const char *const transitional[] = {"creating", "starting", "stopping", "restarting",
					    "resetting", "deleting", NULL};

static bool is_transitional(const char *state)
{
	for (const char *const *s = transitional; *s; s++)
		if (strcmp(state, *s) == 0)
			return true;
	return false;
}

/* After a failed operation: a VSM left in a transitional state goes to
 * fault with the reason, so that it can be started, reset or deleted. */
static void settle_after_failure(struct api_ctx *ctx, const char *id, const char *reason)
{
	struct store_vsm v;
	if (store_vsm_get(ctx->store, id, &v) == 0 && is_transitional(v.state))
		(void)api_vsm_settle_state(ctx, id, "fault", reason);
}

static int run_operation(struct api_ctx *ctx, const struct store_task *t, json_t **ret_result,
			 char *msg, size_t msglen);

int api_run_task(void *vctx, const struct store_task *t, json_t **ret_result, char *msg,
		 size_t msglen)
{
	struct api_ctx *ctx = vctx;
	int code = run_operation(ctx, t, ret_result, msg, msglen);
	if (code == TASK_DEFERRED) {
		chsm_log(CHSM_LOG_INFO, "task.deferred", "task", t->id, "operation", t->operation, NULL);
		return code;
	}
	if (code != GMT_OK) {
		if (!msg[0])
			snprintf(msg, msglen, "%s failed: %s", t->operation, gmt_code_message(code));
		settle_after_failure(ctx, t->target, msg);
	}
	char code_s[12];
	snprintf(code_s, sizeof(code_s), "%d", code);
	chsm_log(code == GMT_OK ? CHSM_LOG_INFO : CHSM_LOG_WARNING, "task.end", "task", t->id,
		 "operation", t->operation, "target", t->target, "code", code_s, NULL);
	return code;
}

static int run_operation(struct api_ctx *ctx, const struct store_task *t, json_t **ret_result,
			 char *msg, size_t msglen)
{
	const char *op = t->operation, *id = t->target;
	int code;
	if (strcmp(op, "vsm.create") == 0) {
		json_t *params = t->params ? json_loads(t->params, 0, NULL) : NULL;
		bool start = json_is_true(json_object_get(params, "start"));
		json_decref(params);
		code = set_state(ctx, id, "stopped", NULL, 0, false) < 0 ? GMT_E_STORAGE : GMT_OK;
		if (code == GMT_OK && start)
			code = do_start(ctx, id, msg, msglen);
	} else if (strcmp(op, "vsm.start") == 0) {
		code = do_start(ctx, id, msg, msglen);
	} else if (strcmp(op, "vsm.stop") == 0) {
		code = do_stop(ctx, id);
	} else if (strcmp(op, "vsm.restart") == 0) {
		code = do_stop(ctx, id);
		if (code == GMT_OK)
			code = do_start(ctx, id, msg, msglen);
	} else if (strcmp(op, "vsm.reset") == 0) {
		code = do_reset(ctx, id);
		if (code == GMT_OK) {
			*ret_result = json_pack("{s:s,s:s,s:b}", "vsmId", id, "state", "stopped", "zeroized", 1);
			return GMT_OK;
		}
	} else if (strcmp(op, "vsm.delete") == 0) {
		code = do_delete(ctx, id);
		if (code == GMT_OK) {
			*ret_result = json_pack("{s:s,s:b}", "vsmId", id, "zeroized", 1);
			return GMT_OK;
		}
	} else if (api_image_operation(op)) {
		return api_run_image_task(ctx, t, ret_result, msg, msglen);
	} else if (api_boot_operation(op)) {
		return api_run_boot_task(ctx, t, msg, msglen);
	} else if (strcmp(op, "vsm.upgrade") == 0) {
		return api_run_vsm_upgrade(ctx, t, ret_result, msg, msglen);
	} else {
		snprintf(msg, msglen, "%s is not implemented in this release", op);
		return GMT_E_INTERNAL;
	}
	if (code == GMT_OK)
		*ret_result = details_of(ctx, id);
	return code;
}

void api_task_retrying(void *vctx, const struct store_task *t, int err)
{
	(void)vctx;
	chsm_log(CHSM_LOG_WARNING, "store.retry", "task", t->id, "state", t->state, "error",
		 err == -ENOSPC ? "disk full; retrying" : "storage failing; retrying", NULL);
}

void api_task_interrupted(void *vctx, const struct store_task *t)
{
	struct api_ctx *ctx = vctx;
	chsm_log(CHSM_LOG_WARNING, "task.interrupted", "task", t->id, "operation", t->operation,
		 "target", t->target, NULL);
	/* No VSM process survives a chsmd restart: a stop is complete; any
	 * other operation left the VSM in an unknown state, which the task's
	 * failure and the VSM's fault both say. */
	struct store_vsm v;
	if (strncmp(t->operation, "vsm.", 4) != 0 || store_vsm_get(ctx->store, t->target, &v) < 0)
		return;
	if (strcmp(t->operation, "vsm.image.export") == 0)
		return; /* an export changes nothing: the VSM resumes as it was */
	if (strcmp(t->operation, "vsm.upgrade") == 0) {
		/* The new version is recorded in the same transaction that ends
		 * the upgrade: a VSM still upgrading is on its old version.
		 * It stops here; api_resume_vsms runs it again (on the version
		 * its record names) when it was running. */
		if (strcmp(v.state, "upgrading") == 0)
			set_state(ctx, t->target, "stopped", NULL, -1, false);
		return;
	}
	if (strcmp(t->operation, "vsm.stop") == 0 || strcmp(t->operation, "vsm.image.import") == 0)
		/* An import was applied in one transaction or not at all; the
		 * VSM was stopped before it, and is again. */
		set_state(ctx, t->target, "stopped", NULL, 0, false);
	else
		set_state(ctx, t->target, "fault", "interrupted by a CHSM restart", 0, false);
}

void api_vsm_died(void *vctx, const char *vsm_id, const char *reason)
{
	struct api_ctx *ctx = vctx;
	char msg[200];
	snprintf(msg, sizeof(msg), "VSM service %s", reason);
	set_state(ctx, vsm_id, "fault", msg, 0, false);
}

/* Whether id has a pending or running task that settles whether its
 * process runs. An export does not (it reads the store and leaves the VSM
 * as it was), so a VSM whose only work queued is an export is resumed here
 * like any other. */
static bool has_settling_task(struct api_ctx *ctx, const char *id)
{
	char task_id[32];
	struct store_task t;
	if (store_task_active_for_target(ctx->store, id, task_id) < 0)
		return false;
	if (store_task_get(ctx->store, task_id, &t) < 0)
		return true;   /* there is one: leave the VSM to it */
	bool settles = strcmp(t.operation, "vsm.image.export") != 0;
	store_task_clear(&t);
	return settles;
}

void api_resume_vsms(struct api_ctx *ctx)
{
	struct store_vsm *v = NULL;
	size_t n = 0;
	if (store_vsm_list(ctx->store, &v, &n) < 0) {
		chsm_log(CHSM_LOG_ERROR, "vsm.resume", "error", "cannot list VSMs", NULL);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		const char *s = v[i].state;
		if (has_settling_task(ctx, v[i].id))
			continue; /* its task settles it */
		if (strcmp(s, "fault") == 0)
			continue;
		bool run = v[i].desired_running || strcmp(s, "starting") == 0 ||
			   strcmp(s, "restarting") == 0;
		if (strcmp(s, "stopping") == 0 || strcmp(s, "resetting") == 0 ||
		    strcmp(s, "deleting") == 0 || strcmp(s, "creating") == 0)
			run = false;
		if (run) {
			char msg[200];
			(void)do_start(ctx, v[i].id, msg, sizeof(msg));
		} else if (strcmp(s, "stopped") != 0) {
			set_state(ctx, v[i].id, "stopped", NULL, 0, false);
		}
	}
	free(v);
}

int api_init(struct api_ctx *ctx)
{
	pthread_mutex_init(&ctx->auth_lock, NULL);
	pthread_mutex_init(&ctx->idem_lock, NULL);
	int r = api_replay_open(ctx->store, chsm_now_ms(), &ctx->replay);
	if (r < 0)
		return r;
	/* Answer nothing until the clock passes the floor (a quick restart:
	 * at most API_REPLAY_AHEAD_MS), so that fresh requests are not 2003. */
	int64_t wait_ms = api_replay_wait_ms(ctx->replay, chsm_now_ms());
	if (wait_ms > 0) {
		struct timespec ts = {.tv_sec = wait_ms / 1000, .tv_nsec = (wait_ms % 1000) * 1000000};
		while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
			;
	} else if (wait_ms < 0) {
		char floor[24];
		snprintf(floor, sizeof(floor), "%lld", (long long)api_replay_floor(ctx->replay));
		chsm_log(CHSM_LOG_WARNING, "auth.clock_behind_floor", "floorMs", floor, NULL);
	}
	r = api_replay_start(ctx->replay);
	if (r < 0)
		return r;
	r = api_metrics_new(&ctx->metrics);
	if (r < 0)
		return r;
	char run[sizeof(ctx->state_dir) + 8];
	snprintf(run, sizeof(run), "%s/run", ctx->state_dir);
	r = api_stats_cache_new(run, &ctx->stats_cache);
	if (r < 0)
		return r;
	r = api_reload_platform_key(ctx);
	if (r == 0)
		api_platform_resume(ctx);
	return r;
}

void api_fini(struct api_ctx *ctx)
{
	/* The supervisor is gone by now: no VSM process uses a namespace. */
	if (ctx->platform)
		platform_stop(ctx->platform);
	api_metrics_free(ctx->metrics);
	ctx->metrics = NULL;
	api_stats_cache_free(ctx->stats_cache);
	ctx->stats_cache = NULL;
	/* The listener is stopped: no request is in flight. */
	if (ctx->replay && api_replay_shutdown(ctx->replay) < 0)
		chsm_log(CHSM_LOG_WARNING, "auth.ceiling_not_lowered", NULL);
	api_replay_free(ctx->replay);
	ctx->replay = NULL;
	crypto_sm2_key_free(ctx->platform_key);
	ctx->platform_key = NULL;
	pthread_mutex_destroy(&ctx->auth_lock);
	pthread_mutex_destroy(&ctx->idem_lock);
}
