/*
 * fuzz_api.c: JSON request validation of every interface: the body and the
 * path parameter of a request to any route of the table (src/api/router.c)
 * go through the checks api_handle makes after authentication (the path
 * parameter, then the body: a JSON object, duplicates refused, depth
 * bounded) and then the route's own handler (api_fields/api_check_fields
 * and each handler's extra checks), against a real store in /dev/shm.
 *
 * Nothing leaves the process: there is no NTP monitor (ctx.ntp NULL), the
 * supervisor's chsm-vsmd path does not exist, and the task engine's one
 * worker blocks on the first task for good, so no task runs and no
 * callback is sent (later requests that would queue a task are refused
 * with 3008 once the engine is full, after their validation ran).
 *
 * Input: byte 0 picks the route (modulo the table), then the path
 * parameter up to '\n' (used when the route has one), then the body.
 * Checks: the handler answers (a code of Appendix A with its HTTP status),
 * and an error never carries data.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/internal.h"
#include "common/limits.h"
#include "common/log.h"
#include "common/util.h"
#include "fuzz_common.h"

static struct api_ctx ctx;
static pthread_mutex_t park_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t park_cond = PTHREAD_COND_INITIALIZER;

static int park(void *c, const struct store_task *t, json_t **ret_result, char *msg, size_t len)
{
	pthread_mutex_lock(&park_lock);
	for (;;)
		pthread_cond_wait(&park_cond, &park_lock);
	return GMT_E_INTERNAL;
}

static void setup(void)
{
	const char *dir = fuzz_tmpdir("api");
	char db[300];
	snprintf(db, sizeof(db), "%s/chsm.db", dir);
	uint8_t master[STORE_MASTER_KEY_LEN] = {2};
	chsm_log_setup("fuzz_api", 0, CHSM_LOG_ERROR);
	ctx.device_key = fuzz_key(FUZZ_KEY_DEVICE);
	if (store_open(db, master, &ctx.store) < 0 ||
	    crypto_sm2_fingerprint(ctx.device_key, ctx.device_fp) < 0 ||
	    crypto_sm2_public_pem(ctx.device_key, &ctx.device_public_pem, &(size_t){0}) < 0)
		abort();
	snprintf(ctx.device_id, sizeof(ctx.device_id), "fuzz-device");
	snprintf(ctx.serial_number, sizeof(ctx.serial_number), "FUZZ-0001");
	memset(ctx.domain_fp, 'a', CRYPTO_SM3_HEX_LEN);
	snprintf(ctx.state_dir, sizeof(ctx.state_dir), "%s", dir);
	ctx.max_vsms = 4;
	ctx.boot_ms = chsm_now_ms();
	ctx.boot_mono_ms = chsm_monotonic_ms();
	atomic_init(&ctx.chsm_state, CHSM_STATE_RUNNING);
	struct store_vsm v = {.id = "vsm-1", .name = "one", .state = "stopped", .max_keys = 8,
			      .max_sessions = 4, .memory_mib = 64};
	if (store_vsm_insert(ctx.store, &v) < 0 || api_init(&ctx) < 0 ||
	    vsm_supervisor_new("/nonexistent/chsm-vsmd", NULL, &ctx, &ctx.supervisor) < 0)
		abort();
	struct task_engine_config tcfg = {.store = ctx.store, .device_key = ctx.device_key,
					  .run = park, .ctx = &ctx, .workers = 1};
	if (task_engine_start(&tcfg, &ctx.tasks) < 0)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!ctx.store)
		setup();
	if (size < 1)
		return 0;
	const struct api_route *route = &api_routes[data[0] % api_route_count];
	const uint8_t *nl = memchr(data + 1, '\n', size - 1);
	if (!nl)
		return 0;
	size_t plen = (size_t)(nl - data - 1);
	const uint8_t *body = nl + 1;
	size_t blen = size - (size_t)(body - data);
	struct http_request req = {.method = route->method, .target = "/fuzz", .path = "/fuzz",
				   .body = blen ? body : NULL, .body_len = blen, .peer = "fuzz"};
	struct api_call c;
	memset(&c, 0, sizeof(c));
	c.ctx = &ctx;
	c.req = &req;
	c.route = route;
	c.route_index = (int)(route - api_routes);
	c.code = -1;
	snprintf(c.request_id, sizeof(c.request_id), "req-fuzz");
	snprintf(c.key_id, sizeof(c.key_id), "%s", ctx.device_fp);
	/* The path parameter, as api_handle checks it. */
	if (strchr(route->pattern, '{')) {
		if (plen >= sizeof(c.param) || memchr(data + 1, '\0', plen))
			return 0;
		memcpy(c.param, data + 1, plen);
		c.param[plen] = '\0';
		bool vsm = strstr(route->pattern, "{vsmId}");
		if (!(vsm ? api_valid_vsm_id(c.param) : chsm_str_charset(c.param, plen, "-")))
			return 0;
	}
	/* The body, as api_handle parses it (parse_body in router.c). */
	json_error_t err;
	c.body = blen ? json_loadb((const char *)body, blen, JSON_REJECT_DUPLICATES, &err)
		      : json_object();
	if (!c.body || !json_is_object(c.body) || api_json_depth(c.body) > CHSM_JSON_MAX_DEPTH)
		goto out;
	route->handler(&c);
	/* An unknown code reads as 5000's message. */
	bool known = c.code == GMT_OK || c.code == GMT_E_INTERNAL ||
		     strcmp(gmt_code_message(c.code), gmt_code_message(GMT_E_INTERNAL)) != 0;
	if (!known || (c.code != GMT_OK && (c.data || c.data_text)))
		abort();
out:
	json_decref(c.body);
	json_decref(c.data);
	free(c.data_text);   /* an answer written as text (api_ok_text) */
	free(c.raw_body);
	return 0;
}
