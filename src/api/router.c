/*
 * router.c: the route table and the request pipeline every interface shares
 * (see api.h for the order of checks). Handlers run on the HTTP worker
 * thread that read the request.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/internal.h"
#include "common/limits.h"
#include "common/log.h"
#include "common/util.h"
#include "proto/auth.h"
#include "proto/envelope.h"

#define P API_AUTH_PLATFORM
const struct api_route api_routes[] = {
	{"GET",    "/chsm",                        "7.2.1",  h_chsm_info,         P, false},
	{"GET",    "/chsm/status",                 "7.2.2",  h_chsm_status,       P, false},
	{"GET",    "/chsm/status/all",             "7.2.3",  h_chsm_status_all,   P, false},
	{"PUT",    "/chsm/network",                "7.2.4",  h_chsm_network,      P, false},
	{"PUT",    "/chsm/ntp",                    "7.2.5",  h_chsm_ntp,          P, false},
	{"PUT",    "/chsm/image-upload-address",   "7.2.6",  h_chsm_image_upload, P, false},
	{"PUT",    "/chsm/log-upload-address",     "7.2.7",  h_chsm_log_upload,   P, false},
	{"POST",   "/chsm/image/export",           "7.2.8",  h_chsm_image_export, P, true},
	{"POST",   "/chsm/image/import",           "7.2.9",  h_chsm_image_import, P, true},
	{"POST",   "/chsm/upgrade",                "7.2.10", h_chsm_upgrade,      P, true},
	{"POST",   "/chsm/reboot",                 "7.2.11", h_chsm_reboot,       P, true},
	{"POST",   "/chsm/backup",                 "7.2.12", h_chsm_backup,       P, true},
	{"POST",   "/chsm/restore",                "7.2.13", h_chsm_restore,      P, true},
	{"GET",    "/vsms",                        "vsm.list", h_vsm_list,        P, false},
	{"POST",   "/vsms",                        "7.3.12", h_vsm_create,        P, true},
	{"GET",    "/vsms/{vsmId}",                "7.3.1",  h_vsm_info,          P, false},
	{"DELETE", "/vsms/{vsmId}",                "7.3.13", h_vsm_delete,        P, true},
	{"GET",    "/vsms/{vsmId}/status",         "7.3.2",  h_vsm_status,        P, false},
	{"PUT",    "/vsms/{vsmId}/network",        "7.3.3",  h_vsm_network,       P, false},
	{"PUT",    "/vsms/{vsmId}/token",          "7.3.4",  h_vsm_token,         P, false},
	{"POST",   "/vsms/{vsmId}/image/export",   "7.3.5",  h_vsm_image_export,  P, true},
	{"POST",   "/vsms/{vsmId}/image/import",   "7.3.6",  h_vsm_image_import,  P, true},
	{"POST",   "/vsms/{vsmId}/start",          "7.3.7",  h_vsm_start,         P, true},
	{"POST",   "/vsms/{vsmId}/stop",           "7.3.8",  h_vsm_stop,          P, true},
	{"POST",   "/vsms/{vsmId}/restart",        "7.3.9",  h_vsm_restart,       P, true},
	{"POST",   "/vsms/{vsmId}/reset",          "7.3.10", h_vsm_reset,         P, true},
	{"POST",   "/vsms/{vsmId}/upgrade",        "7.3.11", h_vsm_upgrade,       P, true},
	{"GET",    "/auth/platform-key/fingerprint", "7.4.1", h_auth_fingerprint, API_AUTH_NONE, false},
	{"PUT",    "/auth/platform-key",           "7.4.2",  h_auth_platform_key, API_AUTH_ENROLL_OR_PLATFORM, false},
	{"GET",    "/tasks/{taskId}",              "task.get", h_task_get,        P, false},
	{"GET",    "/metrics",                     "metrics", h_metrics,          P, false},
};
#undef P
const int api_route_count = (int)(sizeof(api_routes) / sizeof(api_routes[0]));

void api_fail(struct api_call *c, int code, const char *fmt, ...)
{
	c->code = code;
	if (fmt) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(c->message, sizeof(c->message), fmt, ap);
		va_end(ap);
	} else {
		snprintf(c->message, sizeof(c->message), "%s", gmt_code_message(code));
	}
	json_decref(c->data);
	c->data = NULL;
	free(c->data_text);
	c->data_text = NULL;
}

void api_ok(struct api_call *c, json_t *data)
{
	c->code = GMT_OK;
	json_decref(c->data);
	c->data = data;
	free(c->data_text);
	c->data_text = NULL;
}

void api_ok_text(struct api_call *c, char *text, size_t len)
{
	api_ok(c, NULL);
	c->data_text = text;
	c->data_text_len = len;
}

bool api_fields(struct api_call *c, const struct api_field *fields)
{
	const char *field = NULL;
	int code = api_check_fields(c->body, fields, &field);
	if (code == GMT_OK)
		return true;
	/* The field name is the peer's own text: show it only when it is one
	 * of ours (a known field), never an arbitrary unknown key. */
	const char *shown = NULL;
	for (const struct api_field *f = fields; f->name && field; f++)
		if (strcmp(f->name, field) == 0)
			shown = f->name;
	if (code == GMT_E_PARAM_MISSING)
		api_fail(c, code, "required parameter missing: %s", shown ? shown : "?");
	else if (shown)
		api_fail(c, code, "parameter invalid: %s", shown);
	else
		api_fail(c, code, "parameter invalid: unknown field");
	return false;
}

bool api_callback_url(struct api_call *c, const char **ret_url)
{
	static const char *const schemes[] = {"https", "http", NULL};
	json_t *v = json_object_get(c->body, "callbackUrl");
	*ret_url = NULL;
	if (!v)
		return true;
	if (!json_is_string(v) || !api_valid_url(json_string_value(v), schemes)) {
		api_fail(c, GMT_E_PARAM_INVALID, "parameter invalid: callbackUrl");
		return false;
	}
	*ret_url = json_string_value(v);
	return true;
}

bool api_download_fields(struct api_call *c, const struct api_field *fields)
{
	static const char *const schemes[] = {"https", "http", "file", NULL};
	if (!api_fields(c, fields))
		return false;
	if (!api_valid_url(json_string_value(json_object_get(c->body, "url")), schemes)) {
		api_fail(c, GMT_E_PARAM_INVALID, "parameter invalid: url");
		return false;
	}
	if (!api_valid_sm3_hex(json_string_value(json_object_get(c->body, "sm3")))) {
		api_fail(c, GMT_E_PARAM_INVALID, "parameter invalid: sm3");
		return false;
	}
	const char *cb;
	return api_callback_url(c, &cb);
}

static int idem_record(struct api_call *c);

void api_submit_task(struct api_call *c, const char *operation, const char *target,
		     const json_t *params, api_prepare_fn prepare, void *arg)
{
	struct api_ctx *ctx = c->ctx;
	const char *callback_url;
	if (!api_callback_url(c, &callback_url))
		return;
	struct store_task t;
	memset(&t, 0, sizeof(t));
	if (store_begin(ctx->store) < 0) {
		api_fail(c, GMT_E_STORAGE, NULL);
		return;
	}
	int code = prepare ? prepare(c, arg) : GMT_OK;
	if (code == GMT_OK)
		code = task_engine_admit(ctx->tasks, target);
	if (code == GMT_OK && task_engine_insert(ctx->tasks, operation, target, params,
						 callback_url, &t) < 0)
		code = GMT_E_STORAGE;
	if (code != GMT_OK) {
		store_rollback(ctx->store);
		if (c->code == GMT_OK || c->code == -1)
			api_fail(c, code, NULL);
		return;
	}
	json_t *data = json_object();
	json_object_set_new(data, "taskId", json_string(t.id));
	json_object_set_new(data, "operation", json_string(t.operation));
	json_object_set_new(data, "target", json_string(t.target));
	json_object_set_new(data, "state", json_string("pending"));
	api_ok(c, data);
	c->accepted = true;
	snprintf(c->message, sizeof(c->message), "accepted");
	/* store_commit ends the transaction also when it fails */
	int r = c->idem_key ? idem_record(c) : 0;
	if (r < 0)
		store_rollback(ctx->store);
	else
		r = store_commit(ctx->store);
	if (r < 0) {
		store_task_clear(&t);
		c->accepted = false;
		api_fail(c, GMT_E_STORAGE, NULL);
		return;
	}
	c->idem_recorded = c->idem_key != NULL;
	task_engine_kick(ctx->tasks, t.id);
	store_task_clear(&t);
}

/* ---- routing ---- */

/* Matches path (already stripped of the base) against pattern; copies a
 * {param} segment into param. */
static bool match(const char *pattern, const char *path, char *param, size_t cap, bool *ret_param_ok)
{
	while (*pattern && *path) {
		if (*pattern == '{') {
			const char *pend = strchr(pattern, '}');
			size_t seg = strcspn(path, "/");
			if (!pend || seg == 0)
				return false;
			if (seg < cap) {
				memcpy(param, path, seg);
				param[seg] = '\0';
			} else {
				param[0] = '\0';
			}
			*ret_param_ok = seg < cap;
			pattern = pend + 1;
			path += seg;
			continue;
		}
		if (*pattern != *path)
			return false;
		pattern++;
		path++;
	}
	return *pattern == '\0' && *path == '\0';
}

/* Finds the route for (method, path). Returns its index, -1 for an unknown
 * path, -2 for a known path with another method (allow gets the list). */
static int find_route(const char *method, const char *path, char *param, size_t cap,
		      bool *ret_param_ok, char *allow, size_t allowcap)
{
	size_t plen = strlen(GMT_API_BASE);
	if (strncmp(path, GMT_API_BASE, plen) != 0)
		return -1;
	path += plen;
	bool known = false;
	allow[0] = '\0';
	for (int i = 0; i < api_route_count; i++) {
		char tmp[CHSM_VSM_ID_MAX_LEN + 1] = "";
		bool ok = true;
		if (!match(api_routes[i].pattern, path, tmp, sizeof(tmp), &ok))
			continue;
		if (strcmp(api_routes[i].method, method) == 0) {
			snprintf(param, cap, "%s", tmp);
			*ret_param_ok = ok;
			return i;
		}
		known = true;
		size_t al = strlen(allow);
		snprintf(allow + al, allowcap - al, "%s%s", al ? ", " : "", api_routes[i].method);
	}
	return known ? -2 : -1;
}

/* ---- authentication ---- */

struct nonce_ctx {
	struct api_ctx *api;
	int64_t now;
	bool holds_auth_lock;   /* the enrollment path verifies under auth_lock */
};

/* Called by gmt_verify_request as its last step (the key and the
 * enrollment code are not used after it). When the request holds
 * auth_lock (enrollment), the lock is let go while the nonce may wait for
 * its batch's commit (the durable path of replay.h), so that other requests
 * verify and join that batch meanwhile. */
static int nonce_use(void *vctx, const char *nonce, int64_t ts)
{
	struct nonce_ctx *n = vctx;
	if (!n->holds_auth_lock)
		return api_replay_use(n->api->replay, nonce, ts, n->now);
	pthread_mutex_unlock(&n->api->auth_lock);
	int r = api_replay_use(n->api->replay, nonce, ts, n->now);
	pthread_mutex_lock(&n->api->auth_lock);
	return r;
}

/* Reads the enrollment state: open when a code exists, is not locked and
 * no platform key is set. *ret_code is secret (crypto_free_secret). */
static bool enrollment_state(struct api_ctx *ctx, uint8_t **ret_code, size_t *ret_len)
{
	char *failures = NULL;
	uint64_t nfail = 0;
	if (store_setting_get(ctx->store, "enrollment.failures", &failures) == 0) {
		(void)chsm_parse_u64(failures, 1000000, &nfail);
		free(failures);
	}
	if (nfail >= CHSM_ENROLL_MAX_FAILURES)
		return false;
	return store_secret_get(ctx->store, "enrollment.code", ret_code, ret_len) == 0;
}

static void count_enrollment_failure(struct api_ctx *ctx)
{
	char *failures = NULL;
	uint64_t nfail = 0;
	if (store_begin(ctx->store) < 0)
		return;
	if (store_setting_get(ctx->store, "enrollment.failures", &failures) == 0) {
		(void)chsm_parse_u64(failures, 1000000, &nfail);
		free(failures);
	}
	char buf[24];
	snprintf(buf, sizeof(buf), "%llu", (unsigned long long)(nfail + 1));
	if (store_setting_set(ctx->store, "enrollment.failures", buf) < 0) {
		store_rollback(ctx->store);
		return;
	}
	store_commit(ctx->store);
	if (nfail + 1 >= CHSM_ENROLL_MAX_FAILURES)
		chsm_log(CHSM_LOG_WARNING, "enrollment.locked", "failures", buf, NULL);
}

static int authenticate(struct api_call *c)
{
	struct api_ctx *ctx = c->ctx;
	const struct http_request *req = c->req;
	struct gmt_auth_headers h = {
		.timestamp = http_request_header(req, GMT_HDR_TIMESTAMP),
		.nonce = http_request_header(req, GMT_HDR_NONCE),
		.key_id = http_request_header(req, GMT_HDR_KEY_ID),
		.alg = http_request_header(req, GMT_HDR_ALG),
		.signature = http_request_header(req, GMT_HDR_SIGNATURE),
		.idempotency_key = http_request_header(req, GMT_HDR_IDEMPOTENCY),
	};
	struct nonce_ctx nctx = {.api = ctx, .now = chsm_now_ms()};
	struct gmt_verifier v = {
		.now_ms = nctx.now,
		.timestamp_floor_ms = api_replay_floor(ctx->replay),
		.route_allows_enrollment = c->route->auth == API_AUTH_ENROLL_OR_PLATFORM,
		.nonce_use = nonce_use,
		.nonce_ctx = &nctx,
	};
	uint8_t *code = NULL;
	size_t code_len = 0;
	/* Copies of the key (a hold on it) and its fingerprint: a platform
	 * request verifies without auth_lock, so that verifies run in
	 * parallel, and a key rotation may meanwhile replace ctx->platform_key.
	 * Such a request is checked against the key it found, as if it had
	 * been verified before the rotation. */
	char fp[sizeof(ctx->platform_fp)];
	pthread_mutex_lock(&ctx->auth_lock);
	crypto_sm2_key *key = crypto_sm2_key_ref(ctx->platform_key);
	snprintf(fp, sizeof(fp), "%s", ctx->platform_fp);
	v.platform_key = key;
	v.platform_fingerprint = key ? fp : NULL;
	/* The enrollment (no platform key yet, 7.4.2) is checked and its
	 * failures counted under the lock, so parallel guesses cannot pass the
	 * limit. */
	nctx.holds_auth_lock = !key && v.route_allows_enrollment;
	if (!nctx.holds_auth_lock)
		pthread_mutex_unlock(&ctx->auth_lock);
	else if (enrollment_state(ctx, &code, &code_len)) {
		v.enrollment_open = true;
		v.enrollment_code = (const char *)code;
	}
	struct gmt_auth_result res;
	int rc = gmt_verify_request(&h, req->method, req->target, req->body, req->body_len, &v, &res);
	if (res.enrollment_mac_bad)    /* only on the enrollment path */
		count_enrollment_failure(ctx);
	if (nctx.holds_auth_lock)
		pthread_mutex_unlock(&ctx->auth_lock);
	crypto_free_secret(code, code_len);
	crypto_sm2_key_free(key);
	if (rc == GMT_OK) {
		c->enrollment = res.enrollment;
		snprintf(c->key_id, sizeof(c->key_id), "%s",
			 res.enrollment ? GMT_KEY_ID_ENROLLMENT : fp);
	}
	return rc;
}

/* ---- body ---- */

static bool content_type_json(const char *ct)
{
	if (!ct)
		return false;
	size_t n = strlen("application/json");
	if (strncasecmp(ct, "application/json", n) != 0)
		return false;
	ct += n;
	while (*ct == ' ')
		ct++;
	return *ct == '\0' || *ct == ';';
}

static int parse_body(struct api_call *c)
{
	const struct http_request *req = c->req;
	if (req->body_len == 0) {
		c->body = json_object();
		return c->body ? GMT_OK : GMT_E_INTERNAL;
	}
	if (!content_type_json(http_request_header(req, "Content-Type")))
		return GMT_E_CONTENT_TYPE;
	json_error_t err;
	c->body = json_loadb((const char *)req->body, req->body_len,
			     JSON_REJECT_DUPLICATES, &err);
	if (!c->body || !json_is_object(c->body))
		return GMT_E_NOT_JSON_OBJECT;
	if (api_json_depth(c->body) > CHSM_JSON_MAX_DEPTH)
		return GMT_E_PARAM_INVALID;
	return GMT_OK;
}

/* ---- the pipeline ---- */

static bool nonce_printable(const char *n)
{
	size_t len = n ? strlen(n) : 0;
	return len >= CHSM_NONCE_MIN_LEN && len <= CHSM_NONCE_MAX_LEN &&
	       chsm_str_charset(n, len, "_-");
}

/* The envelope of c's result (gmt_envelope's returns). */
static int envelope_of(const struct api_call *c, char **ret_body, size_t *ret_len)
{
	const char *msg = c->message[0] ? c->message : NULL;
	if (c->code == GMT_OK && c->data_text)
		return gmt_envelope_text(c->code, msg, c->request_id, c->data_text,
					 c->data_text_len, ret_body, ret_len);
	return gmt_envelope(c->code, msg, c->request_id, c->code == GMT_OK ? c->data : NULL,
			    ret_body, ret_len);
}

/* Serialises the result of c into resp and signs it. */
static void respond(struct api_call *c, struct http_response *resp, int http_status,
		    const char *allow)
{
	struct api_ctx *ctx = c->ctx;
	if (c->raw_body) {
		resp->body = c->raw_body;
		resp->body_len = strlen(c->raw_body);
		resp->content_type = c->raw_content_type;
		c->raw_body = NULL;
	} else {
		char *body = NULL;
		size_t len = 0;
		if (envelope_of(c, &body, &len) < 0) {
			c->code = GMT_E_INTERNAL;
			http_status = 500;
			static const char fallback[] = "{\"code\":5000,\"message\":\"internal error\"}";
			body = strdup(fallback);
			len = body ? strlen(body) : 0;
		}
		resp->body = body;
		resp->body_len = len;
		resp->content_type = "application/json";
	}
	resp->status = http_status;
	const char *nonce = http_request_header(c->req, GMT_HDR_NONCE);
	if (!nonce_printable(nonce))
		nonce = NULL;
	char sig[CHSM_SIGNATURE_B64_MAX + 1];
	http_response_add_header(resp, GMT_HDR_DEVICE_KEY_ID, ctx->device_fp);
	if (gmt_sign_response(ctx->device_key, nonce, http_status, resp->body, resp->body_len,
			      sig) == 0)
		http_response_add_header(resp, GMT_HDR_DEVICE_SIGNATURE, sig);
	http_response_add_header(resp, "X-GMT-Request-Id", c->request_id);
	if (allow)
		http_response_add_header(resp, "Allow", allow);
}

static int status_for(const struct api_call *c)
{
	if (c->code == GMT_OK)
		return c->accepted ? 202 : 200;
	return gmt_code_http_status(c->code);
}

/* Records c's answer under its idempotency key. An accepted task's answer
 * is recorded by api_submit_task inside the transaction that queues it, so
 * a crash between the commit and the answer cannot let a retry queue the
 * work twice; other answers are recorded here after the handler. Returns
 * 0 or -errno. */
static int idem_record(struct api_call *c)
{
	char *body = NULL;
	size_t len = 0;
	if (envelope_of(c, &body, &len) < 0)
		return -ENOMEM;
	struct store_idem put = {
		.method = (char *)c->req->method,
		.target = (char *)c->req->target,
		.http_status = status_for(c),
		.response = body,
		.response_len = len,
		.created_at = chsm_now_ms(),
	};
	memcpy(put.body_sm3, c->idem_sm3, sizeof(put.body_sm3));
	int r = store_idem_put(c->ctx->store, c->idem_key, &put);
	free(body);
	return r;
}

/* Runs the handler under the idempotency rules of §5. Returns true when
 * the response was replayed from the record into resp (already signed). */
static bool run_with_idempotency(struct api_call *c, struct http_response *resp)
{
	struct api_ctx *ctx = c->ctx;
	const char *key = http_request_header(c->req, GMT_HDR_IDEMPOTENCY);
	const char *m = c->req->method;
	if (!key || strcmp(m, "GET") == 0) {
		c->route->handler(c);
		return false;
	}
	char sm3[CRYPTO_SM3_HEX_LEN + 1];
	if (crypto_sm3_hex(c->req->body, c->req->body_len, sm3) < 0) {
		api_fail(c, GMT_E_CRYPTO, NULL);
		return false;
	}
	pthread_mutex_lock(&ctx->idem_lock);
	struct store_idem rec;
	memset(&rec, 0, sizeof(rec));
	int r = store_idem_get(ctx->store, key, chsm_now_ms(), &rec);
	bool replayed = false;
	if (r == 0) {
		if (strcmp(rec.method, m) == 0 && strcmp(rec.target, c->req->target) == 0 &&
		    strcmp(rec.body_sm3, sm3) == 0) {
			c->raw_body = rec.response;
			c->raw_content_type = "application/json";
			rec.response = NULL;
			c->code = GMT_OK;
			respond(c, resp, rec.http_status, NULL);
			/* for logs and metrics: the code of the first answer */
			json_t *first = json_loadb(resp->body, resp->body_len, 0, NULL);
			c->code = (int)json_integer_value(json_object_get(first, "code"));
			json_decref(first);
			replayed = true;
		} else {
			api_fail(c, GMT_E_IDEMPOTENCY_REUSED, NULL);
		}
		store_idem_clear(&rec);
		pthread_mutex_unlock(&ctx->idem_lock);
		return replayed;
	}
	if (r != -ENOENT) {
		pthread_mutex_unlock(&ctx->idem_lock);
		api_fail(c, GMT_E_STORAGE, NULL);
		return false;
	}
	c->idem_key = key;
	memcpy(c->idem_sm3, sm3, sizeof(c->idem_sm3));
	c->route->handler(c);
	if (!c->idem_recorded && status_for(c) < 500)
		(void)idem_record(c);
	pthread_mutex_unlock(&ctx->idem_lock);
	return false;
}

void api_handle(void *vctx, const struct http_request *req, struct http_response *resp)
{
	struct api_ctx *ctx = vctx;
	int64_t t0 = chsm_monotonic_ms();
	struct api_call c;
	memset(&c, 0, sizeof(c));
	c.ctx = ctx;
	c.req = req;
	c.code = -1;
	c.route_index = -1;
	if (gmt_new_request_id(c.request_id) < 0)
		snprintf(c.request_id, sizeof(c.request_id), "req-unknown");
	char allow[64] = "";
	bool param_ok = true;
	bool replayed = false;

	if (req->refusal == HTTP_REFUSAL_BODY_TOO_LARGE) {
		api_fail(&c, GMT_E_BODY_TOO_LARGE, NULL);
		goto done;
	}
	int idx = find_route(req->method, req->path, c.param, sizeof(c.param), &param_ok, allow,
			     sizeof(allow));
	if (idx == -1) {
		api_fail(&c, GMT_E_NO_INTERFACE, NULL);
		goto done;
	}
	if (idx == -2) {
		api_fail(&c, GMT_E_METHOD_NOT_ALLOWED, NULL);
		goto done;
	}
	allow[0] = '\0';
	c.route = &api_routes[idx];
	c.route_index = idx;
	if (c.route->auth != API_AUTH_NONE) {
		int rc = authenticate(&c);
		if (rc != GMT_OK) {
			api_fail(&c, rc, NULL);
			goto done;
		}
	}
	if (strchr(c.route->pattern, '{')) {
		bool valid = param_ok && (strstr(c.route->pattern, "{vsmId}")
					      ? api_valid_vsm_id(c.param)
					      : chsm_str_charset(c.param, strlen(c.param), "-"));
		if (!valid) {
			api_fail(&c, GMT_E_PARAM_INVALID, "parameter invalid: %s",
				 strstr(c.route->pattern, "{vsmId}") ? "vsmId" : "taskId");
			goto done;
		}
	}
	int bc = parse_body(&c);
	if (bc != GMT_OK) {
		api_fail(&c, bc, NULL);
		goto done;
	}
	int st = atomic_load(&ctx->chsm_state);
	if (st != CHSM_STATE_RUNNING && st != CHSM_STATE_EXPORTING && strcmp(req->method, "GET") != 0) {
		api_fail(&c, GMT_E_UNAVAILABLE, NULL);
		goto done;
	}
	replayed = run_with_idempotency(&c, resp);
	if (c.code == -1)
		api_fail(&c, GMT_E_INTERNAL, NULL);
done:
	if (!replayed)
		respond(&c, resp, status_for(&c), allow[0] ? allow : NULL);
	int64_t dt = chsm_monotonic_ms() - t0;
	char code_s[12], status_s[12], ms_s[24];
	snprintf(code_s, sizeof(code_s), "%d", c.code);
	snprintf(status_s, sizeof(status_s), "%d", resp->status);
	snprintf(ms_s, sizeof(ms_s), "%lld", (long long)dt);
	chsm_log(c.code == GMT_OK ? CHSM_LOG_INFO : CHSM_LOG_WARNING, "request",
		 "request_id", c.request_id, "key_id", c.key_id[0] ? c.key_id : "-",
		 "interface", c.route ? c.route->interface : "-", "method", req->method,
		 "target", c.param[0] ? c.param : (c.route && strncmp(c.route->pattern, "/chsm", 5) == 0 ? "chsm" : "-"), "code", code_s, "status", status_s,
		 "ms", ms_s, "peer", req->peer ? req->peer : "-", NULL);
	api_metrics_record(ctx->metrics, c.route_index, c.code, dt * 1000);
	json_decref(c.body);
	json_decref(c.data);
	free(c.raw_body);
	free(c.data_text);
}

void api_handle_metrics_only(void *vctx, const struct http_request *req,
			     struct http_response *resp)
{
	struct api_ctx *ctx = vctx;
	if (strcmp(req->path, "/metrics") != 0 || strcmp(req->method, "GET") != 0) {
		resp->status = 404;
		resp->content_type = "text/plain";
		resp->body = strdup("not found\n");
		resp->body_len = resp->body ? strlen(resp->body) : 0;
		return;
	}
	resp->status = 200;
	resp->content_type = "text/plain; version=0.0.4";
	resp->body = api_metrics_render(ctx);
	resp->body_len = resp->body ? strlen(resp->body) : 0;
	if (!resp->body)
		resp->status = 500;
}
