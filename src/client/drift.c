/*
 * drift.c: moving a failed VSM to an empty VSM on another CHSM of the same
 * security domain (chsm_client_drift), built only on the public interfaces
 * 7.3.1-7.3.8 of the two CHSMs.
 *
 * Guarantees:
 *  - Every precondition is checked before anything changes: the source
 *    answers with a state drift can handle (or does not answer and an image
 *    was given, whose header names the same VSM), the target is stopped and
 *    holds no keys, and, with move_network, nothing answers at the source's
 *    address unless the source is running and will be stopped. A refusal
 *    changes nothing on either CHSM.
 *  - The target is never reset or overwritten: the CHSM itself refuses an
 *    import into a VSM with keys (3003), and drift checks it first.
 *  - A running source is stopped only when the caller asked (stop_source);
 *    a source in fault is stopped (fault -> stopped) so that it cannot come
 *    back serving the same keys and address, and so that it can be exported.
 *  - Success means: the target runs, the import reported the source's VSM
 *    ID and key count, and the target's stateDigest (7.3.2) equals the
 *    source's (the fresh export's, or the given image header's).
 *  - The library prints nothing; progress goes through the step callback.
 */
#include <errno.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <fcntl.h>

#include <jansson.h>

#include "client/client_internal.h"
#include "common/util.h"
#include "proto/codes.h"

#define PROBE_TIMEOUT_MS 1000
#define DIGEST_HEX_LEN   64
#define VSM_ID_MAX       64

struct drift {
	chsm_client *from, *to;
	const struct chsm_client_drift_options *o;
	chsm_client_drift_step_fn *cb;
	void *userdata;
	struct chsm_client_drift_result *res;
	int64_t start_ms, deadline_ms;     /* deadline 0: none */
	json_t *summary, *steps;
	/* What the target must end up holding. */
	char digest[DIGEST_HEX_LEN + 1];
	json_int_t key_count;
	json_t *network;                   /* the source's 7.3.3 object, or NULL */
	char *image_url;
	char sm3[DIGEST_HEX_LEN + 1];
	char source_state[32];
	bool network_moved;
	char step_detail[512];
};

static const char *const step_names[] = {
	NULL,          "check-source", "read-image", "check-target", "stop-source",
	"export",      "import",       "move-network", "start",      "verify",
};

const char *chsm_client_drift_step_name(enum chsm_client_drift_step step)
{
	if ((int)step < 1 || (size_t)step >= sizeof(step_names) / sizeof(step_names[0]))
		return "?";
	return step_names[step];
}

static const char *const outcome_names[] = {"ok", "skipped", "failed"};

void chsm_client_drift_result_free(struct chsm_client_drift_result *ret)
{
	if (!ret)
		return;
	free(ret->json);
	memset(ret, 0, sizeof(*ret));
}

/* ---- bookkeeping ---- */

static void detail(struct drift *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void detail(struct drift *d, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(d->step_detail, sizeof(d->step_detail), fmt, ap);
	va_end(ap);
}

/* Records a failure of the current step: kind is the return value. */
static int failure(struct drift *d, int kind, int code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int failure(struct drift *d, int kind, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(d->res->message, sizeof(d->res->message), fmt, ap);
	va_end(ap);
	d->res->code = code;
	snprintf(d->step_detail, sizeof(d->step_detail), "%s", d->res->message);
	return kind;
}

/* A failure of the library (transport, signature, ...) talking to cl. */
static int lib_failure(struct drift *d, chsm_client *cl, const char *who, int r)
{
	const char *last = chsm_client_last_error(cl);
	return failure(d, r, 0, "%s: %s%s%s", who, chsm_client_strerror(r), *last ? ": " : "",
		       last);
}

/* Ends a step: reports it and appends it to the summary. */
static void step_end(struct drift *d, enum chsm_client_drift_step step,
		     enum chsm_client_drift_outcome outcome, int64_t t0)
{
	long ms = (long)(chsm_monotonic_ms() - t0);
	if (outcome == CHSM_DRIFT_FAILED && !d->res->failed_step)
		d->res->failed_step = step;
	json_array_append_new(d->steps, json_pack("{s:s, s:s, s:I, s:s}", "step",
						  chsm_client_drift_step_name(step), "outcome",
						  outcome_names[outcome], "durationMs",
						  (json_int_t)ms, "detail", d->step_detail));
	if (d->cb)
		d->cb(d->userdata, step, outcome, ms, d->step_detail);
	d->step_detail[0] = '\0';
}

/* The time left before the deadline: > 0, or -ETIMEDOUT (recorded). */
static long remaining(struct drift *d)
{
	if (!d->deadline_ms)
		return 0;
	int64_t left = d->deadline_ms - chsm_monotonic_ms();
	if (left <= 0)
		return failure(d, -ETIMEDOUT, 0, "the drift did not end within %ld ms",
			       d->o->timeout_ms);
	return (long)left;
}

static bool is_digest(const char *s)
{
	uint8_t raw[DIGEST_HEX_LEN / 2];
	return s && strlen(s) == DIGEST_HEX_LEN &&
	       chsm_hex_decode(s, DIGEST_HEX_LEN, raw, sizeof(raw)) == 0;
}

/* ---- requests ---- */

/* GET path on cl; the data object in *ret_data. A CHSM error is a drift
 * failure carrying its code. */
static int get_data(struct drift *d, chsm_client *cl, const char *who, const char *path,
		    json_t **ret_data)
{
	struct chsm_client_response resp = {0};
	int r = chsm_client_request(cl, "GET", path, NULL, NULL, &resp);
	if (r < 0)
		return lib_failure(d, cl, who, r);
	if (resp.code != 0) {
		r = failure(d, CHSM_CLIENT_E_DRIFT_FAILED, resp.code, "%s: GET %s: %d %s", who,
			    path, resp.code, resp.message ? resp.message : "");
		chsm_client_response_free(&resp);
		return r;
	}
	json_t *data = resp.data ? json_loads(resp.data, 0, NULL) : NULL;
	chsm_client_response_free(&resp);
	if (!json_is_object(data)) {
		json_decref(data);
		return failure(d, CHSM_CLIENT_E_BAD_RESPONSE, 0, "%s: GET %s: no data object",
			       who, path);
	}
	*ret_data = data;
	return 0;
}

/* Submits an asynchronous operation and follows its task to the end; the
 * task's result object in *ret_result (may be NULL when not wanted). */
static int run_task(struct drift *d, chsm_client *cl, const char *who, const char *path,
		    const char *body, json_t **ret_result)
{
	struct chsm_client_response resp = {0};
	json_t *data = NULL, *task = NULL;
	int r = chsm_client_request(cl, "POST", path, body ? body : "{}", NULL, &resp);
	if (r < 0)
		return lib_failure(d, cl, who, r);
	if (resp.code != 0) {
		r = failure(d, CHSM_CLIENT_E_DRIFT_FAILED, resp.code, "%s: POST %s: %d %s", who,
			    path, resp.code, resp.message ? resp.message : "");
		goto out;
	}
	data = resp.data ? json_loads(resp.data, 0, NULL) : NULL;
	const char *task_id = json_string_value(json_object_get(data, "taskId"));
	if (!task_id) {
		r = failure(d, CHSM_CLIENT_E_BAD_RESPONSE, 0, "%s: POST %s: no taskId", who, path);
		goto out;
	}
	long left = remaining(d);
	if (left < 0) {
		r = (int)left;
		goto out;
	}
	struct chsm_client_response done = {0};
	r = chsm_client_wait_task(cl, task_id, left, NULL, NULL, &done);
	if (r == -ETIMEDOUT) {
		r = failure(d, -ETIMEDOUT, 0, "%s: task %s did not end in time", who, task_id);
		goto out;
	}
	if (r < 0) {
		r = lib_failure(d, cl, who, r);
		goto out;
	}
	if (done.code != 0) {
		r = failure(d, CHSM_CLIENT_E_DRIFT_FAILED, done.code, "%s: task %s: %d %s", who,
			    task_id, done.code, done.message ? done.message : "");
		chsm_client_response_free(&done);
		goto out;
	}
	task = done.data ? json_loads(done.data, 0, NULL) : NULL;
	chsm_client_response_free(&done);
	const char *state = json_string_value(json_object_get(task, "state"));
	if (!state || strcmp(state, "succeeded") != 0) {
		const char *msg = json_string_value(json_object_get(task, "message"));
		json_int_t code = json_integer_value(json_object_get(task, "code"));
		r = failure(d, CHSM_CLIENT_E_DRIFT_FAILED, (int)code, "%s: task %s failed: %lld %s",
			    who, task_id, (long long)code, msg ? msg : "");
		goto out;
	}
	if (ret_result) {
		json_t *result = json_object_get(task, "result");
		*ret_result = json_is_object(result) ? json_incref(result) : json_object();
	}
	r = 0;
out:
	json_decref(task);
	json_decref(data);
	chsm_client_response_free(&resp);
	return r;
}

/* ---- the address probe ---- */

/* True when something accepts a TCP connection at ip:port within
 * PROBE_TIMEOUT_MS. Refused, unreachable or silent all count as free. */
static bool address_answers(const char *ip, json_int_t port)
{
	struct sockaddr_storage ss;
	socklen_t len;
	memset(&ss, 0, sizeof(ss));
	if (port <= 0 || port > 65535)
		return false;
	struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
	if (inet_pton(AF_INET, ip, &in4->sin_addr) == 1) {
		in4->sin_family = AF_INET;
		in4->sin_port = htons((uint16_t)port);
		len = sizeof(*in4);
	} else if (inet_pton(AF_INET6, ip, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)port);
		len = sizeof(*in6);
	} else {
		return false;
	}
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return false;
	bool up = false;
	if (connect(fd, (struct sockaddr *)&ss, len) == 0) {
		up = true;
	} else if (errno == EINPROGRESS) {
		struct pollfd p = {.fd = fd, .events = POLLOUT};
		int err = 0;
		socklen_t elen = sizeof(err);
		if (poll(&p, 1, PROBE_TIMEOUT_MS) == 1 &&
		    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) == 0 && err == 0)
			up = true;
	}
	close(fd);
	return up;
}

/* The source's network as a 7.3.3 body, validated: ipAddress, prefixLength,
 * port, and gateway when present. */
static json_t *network_body(const json_t *net)
{
	const char *ip = json_string_value(json_object_get(net, "ipAddress"));
	json_t *prefix = json_object_get(net, "prefixLength"), *port = json_object_get(net, "port");
	json_t *gw = json_object_get(net, "gateway");
	if (!ip || !json_is_integer(prefix) || !json_is_integer(port))
		return NULL;
	json_t *b = json_pack("{s:s, s:O, s:O}", "ipAddress", ip, "prefixLength", prefix, "port",
			      port);
	if (b && json_is_string(gw) && json_string_length(gw) > 0)
		json_object_set(b, "gateway", gw);
	return b;
}

static int check_address_free(struct drift *d)
{
	const char *ip = json_string_value(json_object_get(d->network, "ipAddress"));
	json_int_t port = json_integer_value(json_object_get(d->network, "port"));
	if (address_answers(ip, port))
		return failure(d, CHSM_CLIENT_E_DRIFT_REFUSED, 0,
			       "something still answers at the source's address %s port %lld: "
			       "refusing to give it to the target",
			       ip, (long long)port);
	return 0;
}

/* ---- the steps ---- */

/* 7.3.1 and 7.3.2 of the source. Sets d->res->source_answered, and when it
 * answered, d->source_state, d->network and the digest it shows now. */
static int check_source(struct drift *d)
{
	json_t *info = NULL, *status = NULL;
	char path[16 + VSM_ID_MAX];
	int r;
	if (!d->from) {
		detail(d, "no source CHSM given: using the image");
		return 0;
	}
	snprintf(path, sizeof(path), "/vsms/%s", d->o->vsm_id);
	struct chsm_client_response resp = {0};
	r = chsm_client_request(d->from, "GET", path, NULL, NULL, &resp);
	chsm_client_response_free(&resp);
	if (r < 0 && r != CHSM_CLIENT_E_TRANSPORT)
		return lib_failure(d, d->from, "source", r);
	if (r == CHSM_CLIENT_E_TRANSPORT) {
		const char *why = chsm_client_last_error(d->from);
		if (!d->o->image_url || !d->o->image_sm3)
			return failure(d, CHSM_CLIENT_E_DRIFT_REFUSED, 0,
				       "the source CHSM does not answer (%s): give the URL and "
				       "SM3 of an earlier image of %s",
				       why, d->o->vsm_id);
		detail(d, "the source CHSM does not answer (%s): using the given image", why);
		return 0;
	}
	d->res->source_answered = true;
	r = get_data(d, d->from, "source", path, &info);
	if (r < 0)
		goto out;
	strcat(path, "/status");
	r = get_data(d, d->from, "source", path, &status);
	if (r < 0)
		goto out;
	const char *state = json_string_value(json_object_get(status, "state"));
	json_t *net = json_object_get(info, "network");
	if (!state || strlen(state) >= sizeof(d->source_state)) {
		r = failure(d, CHSM_CLIENT_E_BAD_RESPONSE, 0, "source: 7.3.2 without a state");
		goto out;
	}
	snprintf(d->source_state, sizeof(d->source_state), "%s", state);
	d->key_count = json_integer_value(json_object_get(info, "keyCount"));
	if (json_is_object(net))
		d->network = network_body(net);
	if (strcmp(state, "running") == 0 && !d->o->stop_source) {
		r = failure(d, CHSM_CLIENT_E_DRIFT_REFUSED, GMT_E_STATE,
			    "the source VSM %s is running: stop it first (or ask to stop it); "
			    "drift never leaves two live copies",
			    d->o->vsm_id);
		goto out;
	}
	if (strcmp(state, "running") != 0 && strcmp(state, "fault") != 0 &&
	    strcmp(state, "stopped") != 0) {
		r = failure(d, CHSM_CLIENT_E_DRIFT_REFUSED, GMT_E_STATE,
			    "the source VSM %s is %s: retry once it is stopped, running or in "
			    "fault",
			    d->o->vsm_id, state);
		goto out;
	}
	const char *err = json_string_value(json_object_get(status, "lastError"));
	detail(d, "%s %s, %lld keys%s%s", d->o->vsm_id, state, (long long)d->key_count,
	       err && *err ? ", last error: " : "", err && *err ? err : "");
	r = 0;
out:
	json_decref(info);
	json_decref(status);
	return r;
}

/* The header of the given image, when the source did not answer. */
static int read_image(struct drift *d)
{
	char *text = NULL, err[512];
	int type = 0;
	json_t *h = NULL;
	long left = remaining(d);
	if (left < 0)
		return (int)left;
	int r = chsm_client_image_header(d->o->image_url, d->o->image_cacert_path, left, &text,
					 &type, err, sizeof(err));
	if (r < 0)
		return failure(d, r, 0, "image: %s", err[0] ? err : chsm_client_strerror(r));
	h = json_loads(text, 0, NULL);
	free(text);
	json_t *c = json_object_get(h, "contents");
	const char *vsm = json_string_value(json_object_get(c, "vsmId"));
	const char *digest = json_string_value(json_object_get(c, "stateDigest"));
	json_t *keys = json_object_get(c, "keyCount");
	json_t *net = json_object_get(c, "network");
	if (type != 1 || !vsm || !is_digest(digest) || !json_is_integer(keys)) {
		r = failure(d, CHSM_CLIENT_E_BAD_IMAGE, 0,
			    "image: not a VSM image with contents vsmId, keyCount and stateDigest");
		goto out;
	}
	if (strcmp(vsm, d->o->vsm_id) != 0) {
		r = failure(d, CHSM_CLIENT_E_DRIFT_REFUSED, 0,
			    "image: it holds VSM %.64s, not %s", vsm, d->o->vsm_id);
		goto out;
	}
	snprintf(d->digest, sizeof(d->digest), "%s", digest);
	d->key_count = json_integer_value(keys);
	if (json_is_object(net))
		d->network = network_body(net);
	d->image_url = strdup(d->o->image_url);
	snprintf(d->sm3, sizeof(d->sm3), "%s", d->o->image_sm3);
	if (!d->image_url) {
		r = -ENOMEM;
		goto out;
	}
	const char *id = json_string_value(json_object_get(h, "imageId"));
	json_t *created = json_object_get(h, "createdAt");
	detail(d, "%s of %s from device %s, created %lld, %lld keys", id ? id : "image", vsm,
	       json_string_value(json_object_get(h, "sourceDeviceId"))
		       ? json_string_value(json_object_get(h, "sourceDeviceId"))
		       : "?",
	       (long long)json_integer_value(created), (long long)d->key_count);
	r = 0;
out:
	json_decref(h);
	return r;
}

static int check_target(struct drift *d)
{
	json_t *info = NULL;
	char path[16 + VSM_ID_MAX];
	snprintf(path, sizeof(path), "/vsms/%s", d->o->target_vsm_id);
	int r = get_data(d, d->to, "target", path, &info);
	if (r < 0)
		return r;
	const char *state = json_string_value(json_object_get(info, "state"));
	json_int_t keys = json_integer_value(json_object_get(info, "keyCount"));
	if (!state || strcmp(state, "stopped") != 0)
		r = failure(d, CHSM_CLIENT_E_DRIFT_REFUSED, GMT_E_STATE,
			    "the target VSM %s is %s, not stopped: drift only fills an empty, "
			    "stopped VSM and never resets one",
			    d->o->target_vsm_id, state ? state : "?");
	else if (keys != 0)
		r = failure(d, CHSM_CLIENT_E_DRIFT_REFUSED, GMT_E_STATE,
			    "the target VSM %s holds %lld keys: drift only fills an empty VSM "
			    "and never resets one",
			    d->o->target_vsm_id, (long long)keys);
	json_decref(info);
	if (r < 0 || !d->o->move_network) {
		if (r == 0)
			detail(d, "%s stopped, no keys", d->o->target_vsm_id);
		return r;
	}
	if (!d->network)
		return failure(d, CHSM_CLIENT_E_DRIFT_REFUSED, 0,
			       "the source's network is unknown (none in %s)",
			       d->res->source_answered ? "7.3.1" : "the image header");
	/* A running source that is about to be stopped is probed in
	 * move-network instead. */
	if (strcmp(d->source_state, "running") != 0 && (r = check_address_free(d)) < 0)
		return r;
	detail(d, "%s stopped, no keys; the source's address is free", d->o->target_vsm_id);
	return 0;
}

static int stop_source(struct drift *d)
{
	char path[16 + VSM_ID_MAX];
	snprintf(path, sizeof(path), "/vsms/%s/stop", d->o->vsm_id);
	int r = run_task(d, d->from, "source", path, NULL, NULL);
	if (r == 0)
		detail(d, "%s %s -> stopped", d->o->vsm_id, d->source_state);
	return r;
}

static int export_image(struct drift *d)
{
	json_t *res = NULL, *status = NULL;
	char path[32 + VSM_ID_MAX];
	snprintf(path, sizeof(path), "/vsms/%s/image/export", d->o->vsm_id);
	int r = run_task(d, d->from, "source", path, NULL, &res);
	if (r < 0)
		return r;
	const char *url = json_string_value(json_object_get(res, "url"));
	const char *sm3 = json_string_value(json_object_get(res, "sm3"));
	const char *id = json_string_value(json_object_get(res, "imageId"));
	const char *digest = json_string_value(json_object_get(res, "stateDigest"));
	json_t *keys = json_object_get(res, "keyCount");
	if (!url || !is_digest(sm3)) {
		r = failure(d, CHSM_CLIENT_E_BAD_RESPONSE, 0, "source: export result without url "
			    "and sm3");
		goto out;
	}
	/* The source is stopped now: 7.3.2 shows the digest the image holds. */
	snprintf(path, sizeof(path), "/vsms/%s/status", d->o->vsm_id);
	r = get_data(d, d->from, "source", path, &status);
	if (r < 0)
		goto out;
	const char *now = json_string_value(json_object_get(status, "stateDigest"));
	if (digest && now && strcmp(digest, now) != 0) {
		r = failure(d, CHSM_CLIENT_E_DRIFT_MISMATCH, 0,
			    "source: the export's stateDigest %s is not the VSM's %s", digest, now);
		goto out;
	}
	if (!digest)
		digest = now;
	if (!is_digest(digest)) {
		r = failure(d, CHSM_CLIENT_E_BAD_RESPONSE, 0, "source: no stateDigest");
		goto out;
	}
	snprintf(d->digest, sizeof(d->digest), "%s", digest);
	snprintf(d->sm3, sizeof(d->sm3), "%s", sm3);
	if (json_is_integer(keys))
		d->key_count = json_integer_value(keys);
	d->image_url = strdup(url);
	if (!d->image_url) {
		r = -ENOMEM;
		goto out;
	}
	detail(d, "%s, %lld bytes, %lld keys, sm3 %.16s...", id ? id : "image",
	       (long long)json_integer_value(json_object_get(res, "sizeBytes")),
	       (long long)d->key_count, sm3);
out:
	json_decref(res);
	json_decref(status);
	return r;
}

static int import_image(struct drift *d)
{
	json_t *res = NULL;
	char path[32 + VSM_ID_MAX];
	snprintf(path, sizeof(path), "/vsms/%s/image/import", d->o->target_vsm_id);
	json_t *b = json_pack("{s:s, s:s}", "url", d->image_url, "sm3", d->sm3);
	char *body = b ? json_dumps(b, JSON_COMPACT) : NULL;
	json_decref(b);
	if (!body)
		return -ENOMEM;
	int r = run_task(d, d->to, "target", path, body, &res);
	free(body);
	if (r < 0)
		return r;
	const char *src = json_string_value(json_object_get(res, "sourceVsmId"));
	const char *dev = json_string_value(json_object_get(res, "sourceDeviceId"));
	json_t *keys = json_object_get(res, "keyCount");
	if (src && strcmp(src, d->o->vsm_id) != 0)
		r = failure(d, CHSM_CLIENT_E_DRIFT_MISMATCH, 0,
			    "target: the image held VSM %.64s, not %s", src, d->o->vsm_id);
	else if (json_is_integer(keys) && json_integer_value(keys) != d->key_count)
		r = failure(d, CHSM_CLIENT_E_DRIFT_MISMATCH, 0,
			    "target: imported %lld keys, the source held %lld",
			    (long long)json_integer_value(keys), (long long)d->key_count);
	else
		detail(d, "%s <- %s of device %s, %lld keys", d->o->target_vsm_id,
		       src ? src : "?", dev ? dev : "?", (long long)json_integer_value(keys));
	json_decref(res);
	return r;
}

static int move_network(struct drift *d)
{
	char path[32 + VSM_ID_MAX];
	struct chsm_client_response resp = {0};
	int r = check_address_free(d);
	if (r < 0)
		return r;
	char *body = json_dumps(d->network, JSON_COMPACT);
	if (!body)
		return -ENOMEM;
	snprintf(path, sizeof(path), "/vsms/%s/network", d->o->target_vsm_id);
	r = chsm_client_request(d->to, "PUT", path, body, NULL, &resp);
	free(body);
	if (r < 0)
		return lib_failure(d, d->to, "target", r);
	if (resp.code != 0)
		r = failure(d, CHSM_CLIENT_E_DRIFT_FAILED, resp.code, "target: PUT %s: %d %s", path,
			    resp.code, resp.message ? resp.message : "");
	else
		d->network_moved = true;
	if (r == 0)
		detail(d, "%s now %s port %lld", d->o->target_vsm_id,
		       json_string_value(json_object_get(d->network, "ipAddress")),
		       (long long)json_integer_value(json_object_get(d->network, "port")));
	chsm_client_response_free(&resp);
	return r;
}

static int start_target(struct drift *d)
{
	char path[32 + VSM_ID_MAX];
	snprintf(path, sizeof(path), "/vsms/%s/start", d->o->target_vsm_id);
	int r = run_task(d, d->to, "target", path, NULL, NULL);
	if (r == 0)
		detail(d, "%s running", d->o->target_vsm_id);
	return r;
}

static int verify(struct drift *d)
{
	json_t *status = NULL;
	char path[32 + VSM_ID_MAX];
	snprintf(path, sizeof(path), "/vsms/%s/status", d->o->target_vsm_id);
	int r = get_data(d, d->to, "target", path, &status);
	if (r < 0)
		return r;
	const char *state = json_string_value(json_object_get(status, "state"));
	const char *digest = json_string_value(json_object_get(status, "stateDigest"));
	if (!state || strcmp(state, "running") != 0)
		r = failure(d, CHSM_CLIENT_E_DRIFT_FAILED, 0, "target: %s is %s, not running",
			    d->o->target_vsm_id, state ? state : "?");
	else if (!digest || strcmp(digest, d->digest) != 0)
		r = failure(d, CHSM_CLIENT_E_DRIFT_MISMATCH, 0,
			    "target: stateDigest %.64s differs from the source's %s",
			    digest ? digest : "(none)", d->digest);
	else
		detail(d, "stateDigest %s equal", d->digest);
	json_decref(status);
	return r;
}

/* ---- the procedure ---- */

/* Runs one step unless skip; returns its result. */
static int step(struct drift *d, enum chsm_client_drift_step s, bool skip, const char *why,
		int (*fn)(struct drift *))
{
	int64_t t0 = chsm_monotonic_ms();
	if (skip) {
		detail(d, "%s", why);
		step_end(d, s, CHSM_DRIFT_SKIPPED, t0);
		return 0;
	}
	long left = remaining(d);
	int r = left < 0 ? (int)left : fn(d);
	step_end(d, s, r < 0 ? CHSM_DRIFT_FAILED : CHSM_DRIFT_OK, t0);
	return r;
}

static int run(struct drift *d)
{
	const struct chsm_client_drift_options *o = d->o;
	int r = step(d, CHSM_DRIFT_CHECK_SOURCE, false, NULL, check_source);
	if (r < 0)
		return r;
	bool answered = d->res->source_answered;
	r = step(d, CHSM_DRIFT_READ_IMAGE, answered, "the source answered: a fresh export is used",
		 read_image);
	if (r < 0)
		return r;
	r = step(d, CHSM_DRIFT_CHECK_TARGET, false, NULL, check_target);
	if (r < 0)
		return r;
	bool stop = answered && (strcmp(d->source_state, "fault") == 0 ||
				 strcmp(d->source_state, "running") == 0);
	r = step(d, CHSM_DRIFT_STOP_SOURCE, !stop,
		 answered ? "the source VSM is already stopped" : "the source CHSM does not answer",
		 stop_source);
	if (r < 0)
		return r;
	r = step(d, CHSM_DRIFT_EXPORT, !answered, "the source CHSM does not answer: given image",
		 export_image);
	if (r < 0)
		return r;
	r = step(d, CHSM_DRIFT_IMPORT, false, NULL, import_image);
	if (r < 0)
		return r;
	r = step(d, CHSM_DRIFT_MOVE_NETWORK, !o->move_network, "not asked", move_network);
	if (r < 0)
		return r;
	r = step(d, CHSM_DRIFT_START, false, NULL, start_target);
	if (r < 0)
		return r;
	return step(d, CHSM_DRIFT_VERIFY, false, NULL, verify);
}

static bool valid_id(const char *s)
{
	size_t n = s ? strlen(s) : 0;
	return n >= 1 && n <= VSM_ID_MAX && chsm_str_charset(s, 1, NULL) &&
	       chsm_str_charset(s, n, "_.-");
}

int chsm_client_drift(chsm_client *from, chsm_client *to,
		      const struct chsm_client_drift_options *opts,
		      chsm_client_drift_step_fn *cb, void *userdata,
		      struct chsm_client_drift_result *ret)
{
	if (!to || !opts || !ret || !valid_id(opts->vsm_id) || !valid_id(opts->target_vsm_id) ||
	    opts->timeout_ms < 0 || (!opts->image_url) != (!opts->image_sm3) ||
	    (opts->image_sm3 && !is_digest(opts->image_sm3)) || (!from && !opts->image_url))
		return -EINVAL;
	memset(ret, 0, sizeof(*ret));
	struct drift d = {.from = from, .to = to, .o = opts, .cb = cb, .userdata = userdata,
			  .res = ret};
	d.start_ms = chsm_monotonic_ms();
	d.deadline_ms = opts->timeout_ms ? d.start_ms + opts->timeout_ms : 0;
	d.summary = json_object();
	d.steps = json_array();
	int r = d.summary && d.steps ? run(&d) : -ENOMEM;
	ret->total_ms = (long)(chsm_monotonic_ms() - d.start_ms);
	if (r < 0 && !ret->message[0])
		snprintf(ret->message, sizeof(ret->message), "%s", chsm_client_strerror(r));
	if (d.summary && d.steps) {
		json_t *s = d.summary;
		json_object_set_new(s, "vsmId", json_string(opts->vsm_id));
		json_object_set_new(s, "targetVsmId", json_string(opts->target_vsm_id));
		json_object_set_new(s, "imageSource",
				    json_string(ret->source_answered ? "export" : "given"));
		json_object_set_new(s, "imageUrl", d.image_url ? json_string(d.image_url)
							       : json_null());
		json_object_set_new(s, "sm3", d.sm3[0] ? json_string(d.sm3) : json_null());
		json_object_set_new(s, "keyCount", json_integer(d.key_count));
		json_object_set_new(s, "stateDigest", d.digest[0] ? json_string(d.digest)
								  : json_null());
		json_object_set(s, "network", d.network ? d.network : json_null());
		json_object_set_new(s, "networkMoved", json_boolean(d.network_moved));
		json_object_set(s, "steps", d.steps);
		json_object_set_new(s, "totalMs", json_integer(ret->total_ms));
		if (r < 0) {
			json_object_set_new(s, "failedStep",
					    json_string(chsm_client_drift_step_name(ret->failed_step)));
			json_object_set_new(s, "code", json_integer(ret->code));
			json_object_set_new(s, "message", json_string(ret->message));
		}
		ret->json = json_dumps(s, JSON_COMPACT);
	}
	json_decref(d.summary);
	json_decref(d.steps);
	json_decref(d.network);
	free(d.image_url);
	return r;
}
