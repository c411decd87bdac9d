/*
 * checks.c: the order of a run and the checks of PROFILE.md §3–§6 and the
 * CHSM interfaces of §9: enrollment (§4), authentication (§5), routing
 * (§3), the body codes 1001–1007, the read interfaces and the
 * configuration interfaces. The VSM interfaces, images and the
 * destructive checks are in checks_vsm.c.
 *
 * Every expectation here is the profile's; a check that the device cannot
 * be made to show without changing what the checker must not change is
 * reported skipped with the reason.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"
#include "conform/conform.h"

/* ---- helpers shared with checks_vsm.c ---- */

static const char *const task_states[] = {"pending", "running", "succeeded", "failed", NULL};

static bool in_list(const char *v, const char *const *list)
{
	for (size_t i = 0; v && list[i]; i++)
		if (strcmp(v, list[i]) == 0)
			return true;
	return false;
}

bool cf_async(struct cf *cf, enum cf_section s, const char *name, const char *method,
	      const char *path, const char *body, const char *op, const char *target,
	      char ret_id[80])
{
	struct cf_resp r;
	cf_call(cf, method, path, body, &r);
	bool ok = cf_expect_shape(cf, s, name, &r, 0, 202, "taskId:s operation:s target:s state:s");
	if (ok) {
		const char *o = json_string_value(json_object_get(r.data, "operation"));
		const char *t = json_string_value(json_object_get(r.data, "target"));
		const char *st = json_string_value(json_object_get(r.data, "state"));
		if (strcmp(o, op) != 0 || (target && strcmp(t, target) != 0) ||
		    !in_list(st, task_states)) {
			cf->results[cf->nresults - 1].outcome = CF_FAIL;
			if (asprintf(&cf->results[cf->nresults - 1].evidence,
				     "request: %s | expected: operation %s, target %s, a task state | got: %.300s",
				     r.what, op, target ? target : "(any)", r.body) < 0)
				cf->results[cf->nresults - 1].evidence = NULL;
			ok = false;
		}
		snprintf(ret_id, 80, "%s", json_string_value(json_object_get(r.data, "taskId")));
	}
	cf_resp_free(&r);
	return ok;
}

int cf_wait_task(struct cf *cf, const char *id, struct cf_resp *ret)
{
	char path[160];
	snprintf(path, sizeof(path), "/tasks/%s", id);
	int64_t end = chsm_monotonic_ms() + cf->task_timeout_ms;
	long sleep_ms = 50;
	for (;;) {
		struct cf_resp r;
		cf_get(cf, path, &r);
		const char *st = json_string_value(json_object_get(r.data, "state"));
		bool retry = r.status == 0 || r.code == 5003;
		if (!retry && (r.code != 0 || !st)) {
			*ret = r;
			return -1;
		}
		if (st && (strcmp(st, "succeeded") == 0 || strcmp(st, "failed") == 0)) {
			*ret = r;
			return 0;
		}
		if (chsm_monotonic_ms() > end) {
			*ret = r;
			return -1;
		}
		cf_resp_free(&r);
		struct timespec ts = {sleep_ms / 1000, (sleep_ms % 1000) * 1000000L};
		nanosleep(&ts, NULL);
		if (sleep_ms < 500)
			sleep_ms *= 2;
	}
}

#define TASK_SHAPE                                                                     \
	"taskId:s operation:s target:s state:s code:i message:s createdAt:i startedAt:i " \
	"finishedAt:i result:o callback:o callback.url:S callback.attempts:i "           \
	"callback.delivered:b"

json_t *cf_task_ends(struct cf *cf, enum cf_section s, const char *name, const char *id,
		     const char *state, int code)
{
	struct cf_resp r;
	json_t *task = NULL;
	if (cf_wait_task(cf, id, &r) < 0) {
		cf_add(cf, s, CF_FAIL, name, "task %s did not end within %ld ms | last answer: %.400s",
		       id, cf->task_timeout_ms, r.body ? r.body : r.transport);
		goto out;
	}
	if (!cf_expect_shape(cf, s, name, &r, 0, 200, TASK_SHAPE))
		goto out;
	const char *st = json_string_value(json_object_get(r.data, "state"));
	int c = (int)json_integer_value(json_object_get(r.data, "code"));
	if (strcmp(st, state) != 0 || c != code) {
		struct cf_result *res = &cf->results[cf->nresults - 1];
		res->outcome = CF_FAIL;
		if (asprintf(&res->evidence, "task %s | expected: %s with code %d | got: %.500s", id,
			     state, code, r.body) < 0)
			res->evidence = NULL;
		goto out;
	}
	task = json_incref(r.data);
out:
	cf_resp_free(&r);
	return task;
}

void cf_check_callback(struct cf *cf, const char *name, const json_t *task, const char *cb_path)
{
	const char *id = json_string_value(json_object_get(task, "taskId"));
	struct cf_received cb;
	if (!id) {
		cf_add(cf, CF_S7, CF_SKIP, name, "no task to compare with");
		return;
	}
	if (cf_receiver_wait(cf, id, 15000, &cb) < 0) {
		cf_add(cf, CF_S7, CF_FAIL, name,
		       "expected: a POST of task %s to %s%s within 15 s | got: none", id,
		       cf->callback_base, cb_path);
		return;
	}
	char problem[400] = "";
	size_t nl = strlen(cb.nonce);
	cf_record_callback(cf, &cb);
	char *tbs = cf_string_to_sign(cb.method, cb.target, cb.ts, cb.nonce, cb.key_id, cb.body,
				      cb.body_len);
	json_t *body = json_loadb(cb.body, cb.body_len, JSON_REJECT_DUPLICATES, NULL);
	char *bad = body ? cf_shape(body, "taskId:s operation:s target:s state:s code:i message:s "
					  "createdAt:i startedAt:i finishedAt:i result:o")
			 : strdup("body is not JSON");
	if (strcmp(cb.method, "POST") != 0 || strncmp(cb.target, cb_path, strlen(cb_path)) != 0)
		snprintf(problem, sizeof(problem), "%s %.200s instead of POST %.100s", cb.method, cb.target,
			 cb_path);
	else if (strcmp(cb.key_id, cf->device_fp) != 0)
		snprintf(problem, sizeof(problem), "X-GMT-Key-Id %.64s is not the device key",
			 cb.key_id);
	else if (cb.alg[0] && strcmp(cb.alg, "SM2-SM3") != 0)
		snprintf(problem, sizeof(problem), "X-GMT-Signature-Alg %s", cb.alg);
	else if (!cb.ts[0] || !chsm_str_charset(cb.ts, strlen(cb.ts), "") ||
		 strspn(cb.ts, "0123456789") != strlen(cb.ts))
		snprintf(problem, sizeof(problem), "X-GMT-Timestamp '%s' is not decimal", cb.ts);
	else if (nl < 16 || nl > 64 || !chsm_str_charset(cb.nonce, nl, "_-"))
		snprintf(problem, sizeof(problem), "X-GMT-Nonce '%s' malformed", cb.nonce);
	else if (!tbs || !cf_sm2_ok(cf->device_key, tbs, strlen(tbs), cb.sig))
		snprintf(problem, sizeof(problem),
			 "X-GMT-Signature does not verify with the device key over the string to sign");
	else if (bad)
		snprintf(problem, sizeof(problem), "body: %s", bad);
	else if (!json_equal(json_object_get(body, "state"), json_object_get(task, "state")) ||
		 !json_equal(json_object_get(body, "code"), json_object_get(task, "code")) ||
		 !json_equal(json_object_get(body, "operation"), json_object_get(task, "operation")) ||
		 !json_equal(json_object_get(body, "target"), json_object_get(task, "target")))
		snprintf(problem, sizeof(problem),
			 "body's state/code/operation/target differ from GET /tasks");
	if (problem[0])
		cf_add(cf, CF_S7, CF_FAIL, name, "callback of %s | expected: signed task object | got: %s | body %.300s",
		       id, problem, cb.body);
	else
		cf_add(cf, CF_S7, CF_PASS, name, NULL);
	free(tbs);
	free(bad);
	free(cb.body);
	json_decref(body);
}

void cf_expect_refused(struct cf *cf, enum cf_section s, const char *name, const char *method,
		       const char *path, const char *body, int code)
{
	struct cf_resp r;
	cf_call(cf, method, path, body, &r);
	if (r.status == 202 && r.code == 0 && !r.sig_problem[0]) {
		const char *id = json_string_value(json_object_get(r.data, "taskId"));
		char tid[80];
		snprintf(tid, sizeof(tid), "%s", id ? id : "");
		cf_resp_free(&r);
		json_decref(cf_task_ends(cf, s, name, tid, "failed", code));
		return;
	}
	cf_expect(cf, s, name, &r, code, cf_code_http(code));
	cf_resp_free(&r);
}

bool cf_check_call(struct cf *cf, enum cf_section s, const char *name, const char *method,
		   const char *path, const char *body, int code)
{
	struct cf_resp r;
	cf_call(cf, method, path, body, &r);
	bool ok = cf_expect(cf, s, name, &r, code, code ? cf_code_http(code) : 200);
	cf_resp_free(&r);
	return ok;
}

const char *cf_vsm_state(struct cf *cf, const char *vsm_id)
{
	static char state[32];
	char path[160];
	struct cf_resp r;
	snprintf(path, sizeof(path), "/vsms/%s", vsm_id);
	cf_get(cf, path, &r);
	snprintf(state, sizeof(state), "%s",
		 json_string_value(json_object_get(r.data, "state")) ?: "");
	cf_resp_free(&r);
	return state;
}

int cf_free_port(struct cf *cf)
{
	static int next;
	if (cf->vsm_port_base)
		return cf->vsm_port_base + next++;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), port = 0;
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t l = sizeof(a);
	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&a, &l) == 0)
		port = ntohs(a.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

bool cf_make_vsm(struct cf *cf, const char *suffix, bool with_token, char ret_id[80])
{
	char body[512], tid[80], name[96];
	snprintf(ret_id, 80, "%s-%s", cf->prefix, suffix);
	snprintf(body, sizeof(body),
		 "{\"vsmId\":\"%s\",\"name\":\"chsm-conform %s\",\"network\":{\"ipAddress\":\"%s\","
		 "\"prefixLength\":32,\"port\":%d}%s}",
		 ret_id, suffix, cf->vsm_ip, cf_free_port(cf),
		 with_token ? ",\"token\":{\"tokenId\":\"conform\",\"secret\":\"Y29uZm9ybS10b2tlbi1zZWNyZXQtMDE=\"}" : "");
	snprintf(name, sizeof(name), "7.3.12 create VSM %s", ret_id);
	if (!cf_async(cf, CF_S9, name, "POST", "/vsms", body, "vsm.create", ret_id, tid))
		return false;
	if (cf->ncreated < sizeof(cf->created) / sizeof(cf->created[0]))
		snprintf(cf->created[cf->ncreated++], 80, "%s", ret_id);
	snprintf(name, sizeof(name), "7.3.12 create VSM %s: task succeeds", ret_id);
	json_t *t = cf_task_ends(cf, CF_S7, name, tid, "succeeded", 0);
	json_decref(t);
	return t != NULL;
}

void cf_drop_vsm(struct cf *cf, const char *id)
{
	char path[160], tid[80], name[160];
	bool mine = false;
	for (size_t i = 0; i < cf->ncreated; i++)
		mine |= strcmp(cf->created[i], id) == 0;
	if (!mine)
		return;
	snprintf(path, sizeof(path), "/vsms/%s", id);
	snprintf(name, sizeof(name), "7.3.13 delete VSM %s", id);
	if (cf_async(cf, CF_S9, name, "DELETE", path, NULL, "vsm.delete", id, tid)) {
		snprintf(name, sizeof(name), "7.3.13 delete VSM %s: task succeeds", id);
		json_t *t = cf_task_ends(cf, CF_S7, name, tid, "succeeded", 0);
		if (t) {
			char *bad = cf_shape(json_object_get(t, "result"), "vsmId:s zeroized:b");
			snprintf(name, sizeof(name), "7.3.13 delete VSM %s: result vsmId, zeroized", id);
			if (bad)
				cf_add(cf, CF_S9, CF_FAIL, name, "%s", bad);
			else
				cf_add(cf, CF_S9, CF_PASS, name, NULL);
			free(bad);
		}
		json_decref(t);
	}
	for (size_t i = 0; i < cf->ncreated; i++)
		if (strcmp(cf->created[i], id) == 0) {
			memmove(cf->created[i], cf->created[i + 1],
				(cf->ncreated - i - 1) * sizeof(cf->created[0]));
			cf->ncreated--;
			break;
		}
}

/* ---- §4 enrollment ---- */

static bool check_enrollment(struct cf *cf)
{
	struct cf_resp r;
	cf_get_fingerprint(cf, &r);
	cf_expect_shape(cf, CF_S4, "7.4.1 answers without authentication", &r, 0, 200,
			"configured:b fingerprint:S configuredAt:I");
	bool configured = json_is_true(json_object_get(r.data, "configured"));
	cf_resp_free(&r);
	if (configured) {
		cf_add(cf, CF_S4, CF_FAIL, "enrollment needs a device without a platform key", "%s",
		       "7.4.1 says a platform key is configured: run chsm-conform on a device whose "
		       "enrollment code is open (the local administrator issues a new one)");
		return false;
	}

	cf_get(cf, "/chsm", &r);
	cf_expect(cf, CF_SA, "2005 platform request before any platform key", &r, 2005, 403);
	cf_resp_free(&r);

	char *pem = NULL, *body = NULL;
	size_t pl;
	if (crypto_sm2_public_pem(cf->platform_key, &pem, &pl) < 0)
		return false;
	json_t *b = json_pack("{s:s}", "publicKey", pem);
	body = json_dumps(b, JSON_COMPACT);
	json_decref(b);
	free(pem);

	struct cf_req e = {.method = "PUT", .path = "/auth/platform-key", .body = body,
			   .auth = CF_AUTH_HMAC, .hmac_code = cf->enrollment_code,
			   .omit = "X-GMT-Signature"};
	cf_send(cf, &e, &r);
	cf_expect(cf, CF_SA, "2001 enrollment without X-GMT-Signature", &r, 2001, 401);
	cf_resp_free(&r);

	/* One wrong code: the profile locks after five, and the success that
	 * follows clears the count. */
	char wrong[256];
	snprintf(wrong, sizeof(wrong), "%s-wrong", cf->enrollment_code);
	e.omit = NULL;
	e.hmac_code = wrong;
	cf_send(cf, &e, &r);
	cf_expect(cf, CF_SA, "2007 enrollment with a wrong code", &r, 2007, 401);
	cf_resp_free(&r);

	e.hmac_code = cf->enrollment_code;
	cf_send(cf, &e, &r);
	bool ok = cf_expect_shape(cf, CF_S4, "7.4.2 enrollment with the code (HMAC-SM3)", &r, 0, 200,
				  "fingerprint:s");
	if (ok && strcmp(json_string_value(json_object_get(r.data, "fingerprint")),
			 cf->platform_fp) != 0) {
		cf_add(cf, CF_S9, CF_FAIL, "7.4.2 answers the enrolled key's fingerprint",
		       "expected %s | got %.300s", cf->platform_fp, r.body);
	} else if (ok) {
		cf_add(cf, CF_S9, CF_PASS, "7.4.2 answers the enrolled key's fingerprint", NULL);
	}
	cf_resp_free(&r);
	if (!ok) {
		free(body);
		return false;
	}
	cf->enrolled = true;

	cf_send(cf, &e, &r);
	cf_expect(cf, CF_SA, "2007 enrollment code used a second time", &r, 2007, 401);
	cf_resp_free(&r);
	free(body);

	cf_get_fingerprint(cf, &r);
	ok = cf_expect_shape(cf, CF_S9, "7.4.1 after enrollment: configured, fingerprint, configuredAt",
			     &r, 0, 200, "configured:b fingerprint:s configuredAt:i");
	if (ok && strcmp(json_string_value(json_object_get(r.data, "fingerprint")),
			 cf->platform_fp) != 0)
		cf_add(cf, CF_S9, CF_FAIL, "7.4.1 names the enrolled key", "got %.300s", r.body);
	else if (ok)
		cf_add(cf, CF_S9, CF_PASS, "7.4.1 names the enrolled key", NULL);
	cf_resp_free(&r);
	return true;
}

/* ---- §5 authentication ---- */

static void check_auth(struct cf *cf)
{
	struct cf_resp r;
	struct cf_req q = {.method = "GET", .path = "/chsm"};
	static const char *const headers[] = {"X-GMT-Timestamp", "X-GMT-Nonce", "X-GMT-Key-Id",
					      "X-GMT-Signature"};
	char name[160];
	for (size_t i = 0; i < 4; i++) {
		q.omit = headers[i];
		cf_send(cf, &q, &r);
		snprintf(name, sizeof(name), "2001 without %s", headers[i]);
		cf_expect(cf, CF_SA, name, &r, 2001, 401);
		cf_resp_free(&r);
	}
	q.omit = NULL;
	struct {
		const char *name;
		struct cf_req q;
		int code;
	} cases[] = {
		{"2001 nonce of 8 characters", {.nonce = "abcdefgh"}, 2001},
		{"2001 nonce with a character outside [A-Za-z0-9_-]", {.nonce = "abcdefgh.abcdefgh"}, 2001},
		{"2001 timestamp not decimal", {.timestamp = "12ab"}, 2001},
		{"2001 unknown X-GMT-Signature-Alg", {.alg = "RSA-SHA256"}, 2001},
		{"2001 signature not base64", {.signature = "***"}, 2001},
		{"2002 signature over another body", {.sign_body = "{\"x\":1}"}, 2002},
		{"2003 timestamp 400 s behind", {.ts_offset_ms = -400000}, 2003},
		{"2003 timestamp 400 s ahead", {.ts_offset_ms = 400000}, 2003},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct cf_req c = cases[i].q;
		c.method = "GET";
		c.path = "/chsm";
		cf_send(cf, &c, &r);
		cf_expect(cf, CF_SA, cases[i].name, &r, cases[i].code, cf_code_http(cases[i].code));
		cf_resp_free(&r);
	}

	crypto_sm2_key *other = NULL;
	if (crypto_sm2_generate(&other) == 0) {
		struct cf_req c = {.method = "GET", .path = "/chsm", .auth = CF_AUTH_KEY, .key = other};
		cf_send(cf, &c, &r);
		cf_expect(cf, CF_SA, "2006 request signed by a key the device does not know", &r, 2006, 401);
		cf_resp_free(&r);
		c.key_id = cf->platform_fp;
		cf_send(cf, &c, &r);
		cf_expect(cf, CF_SA, "2002 platform key id, another key's signature", &r, 2002, 401);
		cf_resp_free(&r);
	}

	char nonce[33], ts[32];
	cf_new_nonce(nonce);
	snprintf(ts, sizeof(ts), "%lld", (long long)chsm_now_ms());
	struct cf_req rep = {.method = "GET", .path = "/chsm", .nonce = nonce, .timestamp = ts};
	cf_send(cf, &rep, &r);
	cf_expect(cf, CF_S5, "a signed request with a fresh nonce is accepted", &r, 0, 200);
	cf_resp_free(&r);
	cf_send(cf, &rep, &r);
	cf_expect(cf, CF_SA, "2004 the same nonce again", &r, 2004, 401);
	cf_resp_free(&r);

	/* HMAC-SM3 once a key is set: the enrollment is closed. */
	struct cf_req h = {.method = "PUT", .path = "/auth/platform-key", .body = "{\"publicKey\":\"x\"}",
			   .auth = CF_AUTH_HMAC, .hmac_code = cf->enrollment_code};
	cf_send(cf, &h, &r);
	cf_expect(cf, CF_SA, "2007 enrollment once a platform key is set", &r, 2007, 401);
	cf_resp_free(&r);

	/* Rotation (7.4.2 as a platform request) to another key and back. */
	if (other) {
		char *pem = NULL, ofp[CF_FP_LEN + 1];
		size_t pl;
		crypto_sm2_fingerprint(other, ofp);
		if (crypto_sm2_public_pem(other, &pem, &pl) == 0) {
			json_t *b = json_pack("{s:s}", "publicKey", pem);
			char *body = json_dumps(b, JSON_COMPACT);
			json_decref(b);
			free(pem);
			cf_call(cf, "PUT", "/auth/platform-key", body, &r);
			bool ok = cf_expect_shape(cf, CF_S4, "7.4.2 rotation signed by the current key", &r,
						  0, 200, "fingerprint:s");
			cf_resp_free(&r);
			free(body);
			if (ok) {
				cf_get(cf, "/chsm", &r);
				cf_expect(cf, CF_SA, "2006 the old key after a rotation", &r, 2006, 401);
				cf_resp_free(&r);
				crypto_sm2_public_pem(cf->platform_key, &pem, &pl);
				b = json_pack("{s:s}", "publicKey", pem);
				body = json_dumps(b, JSON_COMPACT);
				json_decref(b);
				free(pem);
				struct cf_req back = {.method = "PUT", .path = "/auth/platform-key",
						      .body = body, .auth = CF_AUTH_KEY, .key = other};
				cf_send(cf, &back, &r);
				cf_expect(cf, CF_S4, "7.4.2 rotation back, signed by the new key", &r, 0, 200);
				cf_resp_free(&r);
				free(body);
			}
		}
		crypto_sm2_key_free(other);
	}

	/* Idempotency (§5), on a request that is refused and so changes
	 * nothing: the first answer again, then 3010 for another body. */
	char key[64];
	snprintf(key, sizeof(key), "%s-idem", cf->prefix);
	struct cf_req i1 = {.method = "PUT", .path = "/chsm/ntp", .body = "{}", .idem = key};
	struct cf_resp a, b2;
	cf_send(cf, &i1, &a);
	cf_send(cf, &i1, &b2);
	const char *ra = json_string_value(json_object_get(a.json, "requestId"));
	const char *rb = json_string_value(json_object_get(b2.json, "requestId"));
	if (a.status && a.status == b2.status && ra && rb && strcmp(ra, rb) == 0 &&
	    a.code == b2.code && !b2.sig_problem[0])
		cf_add(cf, CF_S5, CF_PASS, "idempotency key repeated: the first answer again", NULL);
	else
		cf_add(cf, CF_S5, CF_FAIL, "idempotency key repeated: the first answer again",
		       "request: %s twice with X-GMT-Idempotency-Key %s | expected: the same body | got: %.300s then %.300s%s%s",
		       a.what, key, a.body ? a.body : a.transport, b2.body ? b2.body : b2.transport,
		       b2.sig_problem[0] ? "; " : "", b2.sig_problem);
	cf_resp_free(&a);
	cf_resp_free(&b2);
	i1.body = "{\"servers\":[]}";
	cf_send(cf, &i1, &a);
	cf_expect(cf, CF_SA, "3010 idempotency key reused for another body", &a, 3010, 409);
	cf_resp_free(&a);

	/* §6: each answer has its own requestId. */
	cf_get(cf, "/chsm", &a);
	cf_get(cf, "/chsm", &b2);
	ra = json_string_value(json_object_get(a.json, "requestId"));
	rb = json_string_value(json_object_get(b2.json, "requestId"));
	if (ra && rb && strcmp(ra, rb) != 0)
		cf_add(cf, CF_S6, CF_PASS, "requestId differs between two requests", NULL);
	else
		cf_add(cf, CF_S6, CF_FAIL, "requestId differs between two requests", "got %s and %s",
		       ra ? ra : "(none)", rb ? rb : "(none)");
	cf_resp_free(&a);
	cf_resp_free(&b2);

	/* A 7.4.1 without a nonce is signed over an empty nonce line. */
	struct cf_req n = {.method = "GET", .path = "/auth/platform-key/fingerprint",
			   .auth = CF_AUTH_NONE};
	cf_send(cf, &n, &r);
	cf_expect(cf, CF_S5, "answer to a request without a nonce is signed (empty nonce line)", &r, 0, 200);
	cf_resp_free(&r);
}

/* ---- §3 routing and the body codes ---- */

static void check_routing(struct cf *cf)
{
	struct cf_resp r;
	cf_get(cf, "/no-such-interface", &r);
	cf_expect(cf, CF_SA, "1004 unknown path", &r, 1004, 404);
	cf_resp_free(&r);
	struct cf_req q = {.method = "GET", .path = "/gmt0088/v2/chsm", .raw_target = true};
	cf_send(cf, &q, &r);
	cf_expect(cf, CF_S3, "1004 path outside /gmt0088/v1", &r, 1004, 404);
	cf_resp_free(&r);

	static const struct {
		const char *method, *path, *allow;
	} m[] = {
		{"GET", "/chsm/network", "PUT"},
		{"DELETE", "/chsm", "GET"},
		{"POST", "/chsm/status", "GET"},
		{"PUT", "/vsms", "GET"},
		{"GET", "/chsm/reboot", "POST"},
		{"POST", "/tasks/task-0", "GET"},
	};
	for (size_t i = 0; i < sizeof(m) / sizeof(m[0]); i++) {
		char name[160];
		snprintf(name, sizeof(name), "1005 %s %s, with Allow naming %s", m[i].method,
			 m[i].path, m[i].allow);
		cf_call(cf, m[i].method, m[i].path, NULL, &r);
		if (cf_expect(cf, CF_SA, name, &r, 1005, 405) &&
		    (!r.allow || !strstr(r.allow, m[i].allow))) {
			cf->results[cf->nresults - 1].outcome = CF_FAIL;
			if (asprintf(&cf->results[cf->nresults - 1].evidence,
				     "request: %s | expected: Allow header naming %s | got: Allow %s",
				     r.what, m[i].allow, r.allow ? r.allow : "(absent)") < 0)
				cf->results[cf->nresults - 1].evidence = NULL;
		}
		cf_resp_free(&r);
	}

	static const char *const bad_ids[] = {"-starts-with-dash", ".hidden",
		"a234567890123456789012345678901234567890123456789012345678901234x", "a%20b"};
	for (size_t i = 0; i < sizeof(bad_ids) / sizeof(bad_ids[0]); i++) {
		char path[200], name[200];
		snprintf(path, sizeof(path), "/vsms/%s", bad_ids[i]);
		snprintf(name, sizeof(name), "1003 {vsmId} '%.20s%s'", bad_ids[i],
			 strlen(bad_ids[i]) > 20 ? "…" : "");
		cf_get(cf, path, &r);
		cf_expect(cf, CF_S3, name, &r, 1003, 400);
		cf_resp_free(&r);
	}

	/* Body codes on PUT /chsm/ntp: every one is refused, nothing changes. */
	static const struct {
		const char *name, *body, *ctype;
		int code;
	} b[] = {
		{"1001 body is a JSON array", "[\"127.0.0.1\"]", NULL, 1001},
		{"1001 body is not JSON", "servers=127.0.0.1", NULL, 1001},
		{"1002 required field missing (servers)", "{\"enabled\":true}", NULL, 1002},
		{"1003 unknown field", "{\"servers\":[\"127.0.0.1\"],\"conformBogus\":1}", NULL, 1003},
		{"1003 wrong type (servers a string)", "{\"servers\":\"127.0.0.1\"}", NULL, 1003},
		{"1003 out of range (9 servers)",
		 "{\"servers\":[\"a1\",\"a2\",\"a3\",\"a4\",\"a5\",\"a6\",\"a7\",\"a8\",\"a9\"]}", NULL, 1003},
		{"1003 out of range (no server)", "{\"servers\":[]}", NULL, 1003},
		{"1007 Content-Type text/plain", "{\"servers\":[\"127.0.0.1\"]}", "text/plain", 1007},
	};
	for (size_t i = 0; i < sizeof(b) / sizeof(b[0]); i++) {
		struct cf_req c = {.method = "PUT", .path = "/chsm/ntp", .body = b[i].body,
				   .content_type = b[i].ctype};
		cf_send(cf, &c, &r);
		cf_expect(cf, CF_SA, b[i].name, &r, b[i].code, cf_code_http(b[i].code));
		cf_resp_free(&r);
	}
	size_t big = CF_MAX_BODY + 64;
	char *body = malloc(big + 1);
	if (body) {
		memset(body, ' ', big);
		memcpy(body, "{\"servers\":[\"", 13);
		memset(body + 13, 'a', big - 16);
		memcpy(body + big - 3, "\"]}", 3);
		body[big] = '\0';
		struct cf_req c = {.method = "PUT", .path = "/chsm/ntp", .body = body, .body_len = big};
		cf_send(cf, &c, &r);
		cf_expect(cf, CF_SA, "1006 body over 1 MiB", &r, 1006, 413);
		cf_resp_free(&r);
		free(body);
	}
}

/* ---- §9: CHSM interfaces ---- */

#define DETAILS_SHAPE                                                                        \
	"deviceId:s vendor:s model:s serialNumber:s firmwareVersion:s apiVersion:s "            \
	"deviceKeyFingerprint:s devicePublicKey:s domainFingerprint:s algorithms:a capacity:o " \
	"capacity.maxVsms:i capacity.cpuCores:i capacity.memoryMiB:n vsmCount:i bootTime:i time:i"
#define STATUS_SHAPE                                                                          \
	"state:s uptimeSeconds:n time:i cpuPercent:n memoryUsedMiB:n memoryTotalMiB:n "          \
	"diskUsedMiB:n diskTotalMiB:n vsms:o vsms.total:i vsms.running:i vsms.fault:i "          \
	"tasksRunning:i ntp:o ntp.synced:b ntp.offsetMs:I ntp.server:S"

static const char *const chsm_states[] = {"initializing", "running", "upgrading", "restoring",
					  "importing", "exporting", "rebooting", "fault", NULL};

static void check_chsm_reads(struct cf *cf)
{
	struct cf_resp r;
	cf_get(cf, "/chsm", &r);
	if (cf_expect_shape(cf, CF_S9, "7.2.1 CHSM details: fields", &r, 0, 200, DETAILS_SHAPE)) {
		json_t *d = r.data;
		json_t *alg = json_object_get(d, "algorithms");
		bool algs = json_array_size(alg) == 3;
		static const char *const want[] = {"SM2", "SM3", "SM4"};
		for (size_t i = 0; algs && i < 3; i++)
			algs = strcmp(json_string_value(json_array_get(alg, i)) ?: "", want[i]) == 0;
		if (strcmp(json_string_value(json_object_get(d, "apiVersion")), "v1") != 0 || !algs ||
		    strcmp(json_string_value(json_object_get(d, "deviceKeyFingerprint")), cf->device_fp) != 0)
			cf_add(cf, CF_S9, CF_FAIL, "7.2.1 apiVersion v1, algorithms [SM2,SM3,SM4], device key",
			       "got %.500s", r.body);
		else
			cf_add(cf, CF_S9, CF_PASS, "7.2.1 apiVersion v1, algorithms [SM2,SM3,SM4], device key", NULL);
		json_decref(cf->details);
		cf->details = json_incref(d);
	}
	cf_resp_free(&r);

	cf_get(cf, "/chsm/status", &r);
	if (cf_expect_shape(cf, CF_S9, "7.2.2 CHSM running status: fields", &r, 0, 200, STATUS_SHAPE)) {
		const char *st = json_string_value(json_object_get(r.data, "state"));
		if (in_list(st, chsm_states))
			cf_add(cf, CF_S8, CF_PASS, "7.2.2 state is a CHSM state of §8", NULL);
		else
			cf_add(cf, CF_S8, CF_FAIL, "7.2.2 state is a CHSM state of §8", "got %s", st);
	}
	cf_resp_free(&r);

	cf_get(cf, "/chsm/status/all", &r);
	if (cf_expect_shape(cf, CF_S9, "7.2.3 all status information: fields", &r, 0, 200,
			    "chsm:o vsms:a config:o config.network:O config.ntp:O "
			    "config.imageUploadAddress:O config.logUploadAddress:O "
			    "config.platformKeyFingerprint:S")) {
		char *bad = cf_shape(json_object_get(r.data, "chsm"), STATUS_SHAPE);
		const char *pk = json_string_value(json_object_get(json_object_get(r.data, "config"),
								   "platformKeyFingerprint"));
		if (bad || !pk || strcmp(pk, cf->platform_fp) != 0)
			cf_add(cf, CF_S9, CF_FAIL, "7.2.3 chsm is a 7.2.2 object; config names the platform key",
			       "%s; platformKeyFingerprint %s", bad ? bad : "chsm ok", pk ? pk : "(none)");
		else
			cf_add(cf, CF_S9, CF_PASS, "7.2.3 chsm is a 7.2.2 object; config names the platform key", NULL);
		free(bad);
		json_decref(cf->config);
		cf->config = json_incref(json_object_get(r.data, "config"));
	}
	cf_resp_free(&r);

	cf_get(cf, "/vsms", &r);
	cf_expect_shape(cf, CF_S9, "list VSMs: vsms array", &r, 0, 200, "vsms:a");
	cf_resp_free(&r);

	cf_get(cf, "/metrics", &r);
	if (r.status == 200 && !r.sig_problem[0] && r.body_len > 0)
		cf_add(cf, CF_S9, CF_PASS, "GET /metrics answers Prometheus text, signed", NULL);
	else
		cf_add(cf, CF_S9, CF_FAIL, "GET /metrics answers Prometheus text, signed",
		       "HTTP %ld %s %.200s", r.status, r.sig_problem, r.body ? r.body : r.transport);
	cf_resp_free(&r);

	cf_get(cf, "/tasks/task-000000000000000000000000", &r);
	cf_expect(cf, CF_SA, "3006 unknown task", &r, 3006, 404);
	cf_resp_free(&r);

	char path[128];
	snprintf(path, sizeof(path), "/vsms/%s-absent", cf->prefix);
	cf_get(cf, path, &r);
	cf_expect(cf, CF_SA, "3001 details of an unknown VSM", &r, 3001, 404);
	cf_resp_free(&r);
}

/* Requests of the CHSM interfaces that must be refused; none changes
 * anything. */
static const struct {
	const char *name, *method, *path, *body;
	int code;
} invalid_requests[] = {
	{"7.2.4 network: hostname missing (1002)", "PUT", "/chsm/network",
	 "{\"interfaces\":[{\"name\":\"eth0\",\"address\":\"192.0.2.10/24\"}]}", 1002},
	{"7.2.4 network: address not CIDR (1003)", "PUT", "/chsm/network",
	 "{\"hostname\":\"chsm1\",\"interfaces\":[{\"name\":\"eth0\",\"address\":\"192.0.2.300/24\"}]}", 1003},
	{"7.2.4 network: dns not an address (1003)", "PUT", "/chsm/network",
	 "{\"hostname\":\"chsm1\",\"interfaces\":[{\"name\":\"eth0\",\"address\":\"192.0.2.10/24\"}],\"dns\":[\"not an address\"]}", 1003},
	{"7.2.4 network: unknown field in an interface (1003)", "PUT", "/chsm/network",
	 "{\"hostname\":\"chsm1\",\"interfaces\":[{\"name\":\"eth0\",\"address\":\"192.0.2.10/24\",\"mtu\":1500}]}", 1003},
	{"7.2.5 NTP: enabled not a boolean (1003)", "PUT", "/chsm/ntp",
	 "{\"servers\":[\"127.0.0.1\"],\"enabled\":\"yes\"}", 1003},
	{"7.2.6 image upload address: url missing (1002)", "PUT", "/chsm/image-upload-address",
	 "{\"headers\":{}}", 1002},
	{"7.2.6 image upload address: ftp:// (1003)", "PUT", "/chsm/image-upload-address",
	 "{\"url\":\"ftp://192.0.2.1/images/\"}", 1003},
	{"7.2.7 log upload address: level missing (1002)", "PUT", "/chsm/log-upload-address",
	 "{\"url\":\"syslog+udp://127.0.0.1:514\"}", 1002},
	{"7.2.7 log upload address: level 'debug' (1003)", "PUT", "/chsm/log-upload-address",
	 "{\"url\":\"syslog+udp://127.0.0.1:514\",\"level\":\"debug\"}", 1003},
	{"7.2.7 log upload address: scheme ftp (1003)", "PUT", "/chsm/log-upload-address",
	 "{\"url\":\"ftp://127.0.0.1/\",\"level\":\"info\"}", 1003},
	{"7.2.8 export CHSM image: callbackUrl not http(s) (1003)", "POST", "/chsm/image/export",
	 "{\"callbackUrl\":\"ftp://x/\"}", 1003},
	{"7.2.9 import CHSM image: url missing (1002)", "POST", "/chsm/image/import",
	 "{\"sm3\":\"" ZERO_SM3 "\"}", 1002},
	{"7.2.10 upgrade: url missing (1002)", "POST", "/chsm/upgrade", "{\"sm3\":\"" ZERO_SM3 "\"}", 1002},
	{"7.2.10 upgrade: sm3 not hex (1003)", "POST", "/chsm/upgrade",
	 "{\"url\":\"file:///nonexistent.pkg\",\"sm3\":\"xyz\"}", 1003},
	{"7.2.11 reboot: unknown field (1003)", "POST", "/chsm/reboot", "{\"conformBogus\":true}", 1003},
	{"7.2.13 restore: sm3 missing (1002)", "POST", "/chsm/restore", "{\"url\":\"file:///x.img\"}", 1002},
};

static void check_chsm_config(struct cf *cf)
{
	struct cf_resp r;
	json_t *cfg = cf->config;

	/* 7.2.4: a valid document only by putting back the one the device has
	 * (a new one would change the host's network). */
	json_t *net = json_object_get(cfg, "network");
	if (json_is_object(net)) {
		char *body = json_dumps(net, JSON_COMPACT);
		cf_check_call(cf, CF_S9, "7.2.4 network: the configured document put back", "PUT", "/chsm/network", body, 0);
		free(body);
	} else {
		cf_add(cf, CF_S9, CF_SKIP, "7.2.4 network: a valid document",
		       "the device has no network document (7.2.3 config.network is null): setting one "
		       "would change the host's network, which the checker does not do");
	}

	json_t *ntp = json_object_get(cfg, "ntp");
	char *body = json_is_object(ntp) ? json_dumps(ntp, JSON_COMPACT)
					  : strdup("{\"servers\":[\"127.0.0.1\"],\"enabled\":false}");
	cf_call(cf, "PUT", "/chsm/ntp", body, &r);
	cf_expect(cf, CF_S9, json_is_object(ntp) ? "7.2.5 NTP: the configured document put back"
						 : "7.2.5 NTP: a valid document",
		  &r, 0, 200);
	cf_resp_free(&r);
	free(body);
	if (!json_is_object(ntp))
		cf_left_changed(cf, "NTP set to {servers:[127.0.0.1], enabled:false} (none was configured; "
				    "the API cannot remove it)");
	cf_get(cf, "/chsm/status", &r);
	cf_expect_shape(cf, CF_S9, "7.2.2 reports ntp after 7.2.5", &r, 0, 200,
			"ntp.synced:b ntp.offsetMs:I ntp.server:S");
	cf_resp_free(&r);

	if (cf->destructive) {
		char b[400];
		snprintf(b, sizeof(b), "{\"url\":\"%s/log\",\"level\":\"error\"}", cf->callback_base);
		cf_check_call(cf, CF_S9, "7.2.7 log upload address: a valid document", "PUT", "/chsm/log-upload-address", b, 0);
		cf_left_changed(cf, "log upload address set to the checker's receiver (http, level error)");
	} else {
		cf_add(cf, CF_S9, CF_SKIP, "7.2.7 log upload address: a valid document",
		       "changes where the device ships its logs and cannot be undone through the API "
		       "(header values are secret): only with --destructive");
	}

	/* 3007 can be seen only while no upload address is configured. */
	if (json_is_null(json_object_get(cfg, "imageUploadAddress"))) {
		cf_check_call(cf, CF_SA, "3007 7.2.8 export without an image upload address", "POST", "/chsm/image/export", "{}", 3007);
		cf_check_call(cf, CF_SA, "3007 7.2.12 backup without an image upload address", "POST", "/chsm/backup", "{}", 3007);
	} else {
		cf_add(cf, CF_SA, CF_SKIP, "3007 export without an image upload address",
		       "the device already has an image upload address");
	}

	for (size_t i = 0; i < sizeof(invalid_requests) / sizeof(invalid_requests[0]); i++)
		cf_check_call(cf, CF_S9, invalid_requests[i].name, invalid_requests[i].method,
			      invalid_requests[i].path, invalid_requests[i].body, invalid_requests[i].code);
}

void cf_run_checks(struct cf *cf)
{
	cf_secret(cf, cf->enrollment_code);
	/* §5: the answer of 7.4.1 that gave the key is signed by it. */
	struct cf_resp r;
	cf_get_fingerprint(cf, &r);
	cf_expect_shape(cf, CF_S5, "answers carry X-GMT-Device-Key-Id and a valid X-GMT-Device-Signature",
			&r, 0, 200, "configured:b");
	cf_resp_free(&r);

	if (!check_enrollment(cf))
		return;
	check_auth(cf);
	check_routing(cf);
	check_chsm_reads(cf);
	check_chsm_config(cf);
	cf_check_vsms(cf);
	cf_check_images(cf);
	cf_check_destructive(cf);
	if (cf->leaks)
		cf_add(cf, CF_S6, CF_FAIL, "no answer carries a secret the checker sent", "%zu of %zu answers; first: %s",
		       cf->leaks, cf->answers, cf->leak_evidence);
	else
		cf_add(cf, CF_S6, CF_PASS, "no answer carries a secret the checker sent", NULL);
}
