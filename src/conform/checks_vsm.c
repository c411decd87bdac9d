/*
 * checks_vsm.c: the VSM interfaces of PROFILE.md §9 with the states of §8
 * and the tasks and callbacks of §7; the images of §10 (with --image-dir);
 * and, with --destructive, backup and restore, upgrade and reboot.
 *
 * Every VSM made here is named <prefix>-<what> and deleted before the run
 * ends (the clean-up in main.c deletes any left after a failure).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"
#include "conform/conform.h"

#define VSM_SHAPE                                                                        \
	"vsmId:s name:s state:s version:s createdAt:i updatedAt:i stateVersion:i "          \
	"resources:o resources.maxKeys:i resources.maxSessions:i resources.memoryMiB:i "   \
	"network:o network.ipAddress:s network.prefixLength:i network.port:i token:o "     \
	"token.tokenId:S token.configured:b token.updatedAt:I keyCount:i serviceEndpoint:s"
#define VSM_STATUS_SHAPE                                                                 \
	"vsmId:s state:s uptimeSeconds:n sessions:i opsTotal:i ops:o cpuPercent:n "         \
	"memoryMiB:n stateVersion:i stateDigest:s lastError:S"
#define TOKEN_SECRET "Y29uZm9ybS10b2tlbi1zZWNyZXQtMDE="   /* base64 of 22 bytes */
#define TOKEN_SECRET2 "Y29uZm9ybS1zZWNvbmQtdG9rZW4tc2VjcmV0" /* 27 bytes */

static const char *const vsm_states[] = {"creating", "stopped", "starting", "running",
					 "stopping", "restarting", "resetting", "upgrading",
					 "importing", "exporting", "deleting", "fault", NULL};

/* Compact JSON of v for evidence, in buf (cut to its size); "(none)" for
 * NULL. */
static const char *dump(const json_t *v, char *buf, size_t len)
{
	char *t = v ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
	snprintf(buf, len, "%s", t ? t : "(none)");
	free(t);
	return buf;
}

static json_t *get_data(struct cf *cf, const char *path)
{
	struct cf_resp r;
	cf_get(cf, path, &r);
	json_t *d = r.data ? json_incref(r.data) : NULL;
	cf_resp_free(&r);
	return d;
}

static json_t *vsm_status(struct cf *cf, const char *id)
{
	char path[160];
	snprintf(path, sizeof(path), "/vsms/%s/status", id);
	return get_data(cf, path);
}

/* An operation on a VSM, accepted and its task ending in state/code; the
 * VSM is then in after (when not NULL). cb: a callback path or NULL. */
static json_t *op(struct cf *cf, const char *id, const char *verb, const char *opname,
		  const char *cb, const char *after)
{
	char path[160], body[400], name[200], tid[80], opn[40];
	snprintf(path, sizeof(path), "/vsms/%s/%s", id, verb);
	snprintf(opn, sizeof(opn), "vsm.%s", verb);
	if (cb)
		snprintf(body, sizeof(body), "{\"callbackUrl\":\"%s%s\"}", cf->callback_base, cb);
	else
		snprintf(body, sizeof(body), "{}");
	snprintf(name, sizeof(name), "%s: accepted (202, task)", opname);
	if (!cf_async(cf, CF_S9, name, "POST", path, body, opn, id, tid))
		return NULL;
	snprintf(name, sizeof(name), "%s: task succeeds", opname);
	json_t *t = cf_task_ends(cf, CF_S7, name, tid, "succeeded", 0);
	if (t && after) {
		const char *st = cf_vsm_state(cf, id);
		snprintf(name, sizeof(name), "%s: VSM ends %s", opname, after);
		if (strcmp(st, after) == 0)
			cf_add(cf, CF_S8, CF_PASS, name, NULL);
		else
			cf_add(cf, CF_S8, CF_FAIL, name, "VSM %s is %s", id, st[0] ? st : "(unreadable)");
	}
	return t;
}

/* A VSM operation refused in the VSM's current state (3003). */
static void not_allowed(struct cf *cf, const char *id, const char *verb, const char *state)
{
	char path[160], name[160];
	snprintf(path, sizeof(path), "/vsms/%s/%s", id, verb);
	snprintf(name, sizeof(name), "3003 %s from %s", verb, state);
	cf_check_call(cf, CF_SA, name, "POST", path, "{}", 3003);
}

static void check_vsm_reads(struct cf *cf, const char *id)
{
	char path[160];
	struct cf_resp r;
	snprintf(path, sizeof(path), "/vsms/%s", id);
	cf_get(cf, path, &r);
	if (cf_expect_shape(cf, CF_S9, "7.3.1 VSM details: fields", &r, 0, 200, VSM_SHAPE)) {
		const char *st = json_string_value(json_object_get(r.data, "state"));
		bool secret = memmem(r.body, r.body_len, TOKEN_SECRET, strlen(TOKEN_SECRET)) != NULL;
		if (!strstr(st, "stopped") || secret)
			cf_add(cf, CF_S9, CF_FAIL, "7.3.1 a new VSM is stopped; its token secret is not shown",
			       "got %.400s", r.body);
		else
			cf_add(cf, CF_S9, CF_PASS, "7.3.1 a new VSM is stopped; its token secret is not shown", NULL);
	}
	cf_resp_free(&r);
	snprintf(path, sizeof(path), "/vsms/%s/status", id);
	cf_get(cf, path, &r);
	if (cf_expect_shape(cf, CF_S9, "7.3.2 VSM running status: fields", &r, 0, 200, VSM_STATUS_SHAPE)) {
		const char *st = json_string_value(json_object_get(r.data, "state"));
		const char *dg = json_string_value(json_object_get(r.data, "stateDigest"));
		bool states = true;
		json_t *list = get_data(cf, "/vsms");
		size_t i;
		json_t *v;
		json_array_foreach(json_object_get(list, "vsms"), i, v) {
			char *bad = cf_shape(v, VSM_SHAPE);
			states &= !bad && strspn(json_string_value(json_object_get(v, "state")),
						 "abcdefghijklmnopqrstuvwxyz") > 0;
			free(bad);
			const char *s2 = json_string_value(json_object_get(v, "state"));
			bool known = false;
			for (size_t k = 0; s2 && vsm_states[k]; k++)
				known |= strcmp(s2, vsm_states[k]) == 0;
			states &= known;
		}
		json_decref(list);
		bool known = false;
		for (size_t k = 0; st && vsm_states[k]; k++)
			known |= strcmp(st, vsm_states[k]) == 0;
		if (!known || !states)
			cf_add(cf, CF_S8, CF_FAIL, "VSM states (7.3.1, 7.3.2, list) are states of §8",
			       "7.3.2 state %s; list entries: %s", st, states ? "ok" : "not all 7.3.1 objects with a §8 state");
		else
			cf_add(cf, CF_S8, CF_PASS, "VSM states (7.3.1, 7.3.2, list) are states of §8", NULL);
		if (!dg || strlen(dg) != CF_FP_LEN || strspn(dg, "0123456789abcdef") != CF_FP_LEN)
			cf_add(cf, CF_S9, CF_FAIL, "7.3.2 stateDigest is an SM3 (64 hex digits)", "got %s", dg ? dg : "(none)");
		else
			cf_add(cf, CF_S9, CF_PASS, "7.3.2 stateDigest is an SM3 (64 hex digits)", NULL);
	}
	cf_resp_free(&r);

	json_t *list = get_data(cf, "/vsms");
	bool found = false;
	size_t i;
	json_t *v;
	json_array_foreach(json_object_get(list, "vsms"), i, v)
		found |= strcmp(json_string_value(json_object_get(v, "vsmId")) ?: "", id) == 0;
	json_decref(list);
	if (found)
		cf_add(cf, CF_S9, CF_PASS, "list VSMs includes a created VSM", NULL);
	else
		cf_add(cf, CF_S9, CF_FAIL, "list VSMs includes a created VSM", "%s not in GET /vsms", id);
}

/* VSM requests that must be refused; none changes anything. verb: the
 * interface under /vsms/{vsmId}/, or NULL for POST /vsms. */
static const struct {
	const char *name, *method, *verb, *body;
	int code;
} invalid_vsm_requests[] = {
	{"1002 7.3.3 port missing", "PUT", "network",
	 "{\"ipAddress\":\"127.0.0.1\",\"prefixLength\":32}", 1002},
	{"7.3.3 ipAddress not an address (1003)", "PUT", "network",
	 "{\"ipAddress\":\"127.0.0.999\",\"prefixLength\":32,\"port\":1000}", 1003},
	{"7.3.3 prefixLength 33 for IPv4 (1003)", "PUT", "network",
	 "{\"ipAddress\":\"127.0.0.1\",\"prefixLength\":33,\"port\":1000}", 1003},
	{"7.3.3 port a string (1003)", "PUT", "network",
	 "{\"ipAddress\":\"127.0.0.1\",\"prefixLength\":32,\"port\":\"1000\"}", 1003},
	{"7.3.4 secret of 5 bytes (1003)", "PUT", "token",
	 "{\"tokenId\":\"conform2\",\"secret\":\"c2hvcnQ=\"}", 1003},
	{"7.3.4 secret missing (1002)", "PUT", "token", "{\"tokenId\":\"conform2\"}", 1002},
	{"7.3.11 upgrade VSM: url missing (1002)", "POST", "upgrade",
	 "{\"sm3\":\"" ZERO_SM3 "\"}", 1002},
	{"7.3.12 create without network (1002)", "POST", NULL, "{\"name\":\"no network\"}", 1002},
	{"7.3.12 create with a malformed vsmId (1003)", "POST", NULL,
	 "{\"vsmId\":\"-bad\",\"name\":\"x\",\"network\":{\"ipAddress\":\"127.0.0.1\",\"prefixLength\":32,\"port\":1}}",
	 1003},
};

static void check_invalid_vsm_requests(struct cf *cf, const char *id)
{
	for (size_t i = 0; i < sizeof(invalid_vsm_requests) / sizeof(invalid_vsm_requests[0]); i++) {
		char path[160];
		if (invalid_vsm_requests[i].verb)
			snprintf(path, sizeof(path), "/vsms/%s/%s", id, invalid_vsm_requests[i].verb);
		else
			snprintf(path, sizeof(path), "/vsms");
		cf_check_call(cf, CF_S9, invalid_vsm_requests[i].name, invalid_vsm_requests[i].method,
			      path, invalid_vsm_requests[i].body, invalid_vsm_requests[i].code);
	}
}

static void check_vsm_config(struct cf *cf, const char *id, const char *other_id)
{
	char path[160], body[400], ev[400];
	struct cf_resp r;
	snprintf(path, sizeof(path), "/vsms/%s/network", id);
	char dpath[160];
	snprintf(dpath, sizeof(dpath), "/vsms/%s", id);
	json_t *d0 = get_data(cf, dpath);
	json_int_t sv0 = json_integer_value(json_object_get(d0, "stateVersion"));
	json_decref(d0);

	int port = cf_free_port(cf);
	snprintf(body, sizeof(body), "{\"ipAddress\":\"%s\",\"prefixLength\":32,\"port\":%d}",
		 cf->vsm_ip, port);
	cf_check_call(cf, CF_S9, "7.3.3 VSM network: a valid document", "PUT", path, body, 0);
	json_t *d1 = get_data(cf, dpath);
	json_int_t sv1 = json_integer_value(json_object_get(d1, "stateVersion"));
	json_int_t p1 = json_integer_value(json_object_get(json_object_get(d1, "network"), "port"));
	json_decref(d1);
	if (p1 == port && sv1 > sv0)
		cf_add(cf, CF_S9, CF_PASS, "7.3.3 the new network shows in 7.3.1; stateVersion grows", NULL);
	else
		cf_add(cf, CF_S9, CF_FAIL, "7.3.3 the new network shows in 7.3.1; stateVersion grows",
		       "port %lld (sent %d), stateVersion %lld -> %lld", (long long)p1, port,
		       (long long)sv0, (long long)sv1);

	check_invalid_vsm_requests(cf, id);

	/* 3009: the other VSM's endpoint. */
	json_t *od = get_data(cf, (snprintf(dpath, sizeof(dpath), "/vsms/%s", other_id), dpath));
	json_t *onet = json_object_get(od, "network");
	if (json_is_object(onet)) {
		snprintf(body, sizeof(body), "{\"ipAddress\":\"%s\",\"prefixLength\":32,\"port\":%lld}",
			 json_string_value(json_object_get(onet, "ipAddress")),
			 (long long)json_integer_value(json_object_get(onet, "port")));
		cf_check_call(cf, CF_SA, "3009 7.3.3 another VSM's address and port", "PUT", path, body, 3009);
	}
	json_decref(od);

	char absent[160];
	snprintf(absent, sizeof(absent), "/vsms/%s-absent/network", cf->prefix);
	snprintf(body, sizeof(body), "{\"ipAddress\":\"%s\",\"prefixLength\":32,\"port\":%d}",
		 cf->vsm_ip, cf_free_port(cf));
	cf_check_call(cf, CF_SA, "3001 7.3.3 on an unknown VSM", "PUT", absent, body, 3001);

	snprintf(path, sizeof(path), "/vsms/%s/token", id);
	cf_call(cf, "PUT", path, "{\"tokenId\":\"conform2\",\"secret\":\"" TOKEN_SECRET2 "\"}", &r);
	if (cf_expect(cf, CF_S9, "7.3.4 VSM token: a valid document", &r, 0, 200) &&
	    memmem(r.body, r.body_len, TOKEN_SECRET2, strlen(TOKEN_SECRET2)))
		cf_add(cf, CF_S6, CF_FAIL, "7.3.4 the answer does not carry the secret", "%.300s", r.body);
	else
		cf_add(cf, CF_S6, CF_PASS, "7.3.4 the answer does not carry the secret", NULL);
	cf_resp_free(&r);
	json_t *st = get_data(cf, (snprintf(dpath, sizeof(dpath), "/vsms/%s", id), dpath));
	json_t *tok = json_object_get(st, "token");
	if (json_is_true(json_object_get(tok, "configured")) &&
	    strcmp(json_string_value(json_object_get(tok, "tokenId")) ?: "", "conform2") == 0)
		cf_add(cf, CF_S9, CF_PASS, "7.3.4 7.3.1 shows the token configured, without its secret", NULL);
	else
		cf_add(cf, CF_S9, CF_FAIL, "7.3.4 7.3.1 shows the token configured, without its secret",
		       "token %s", dump(tok, ev, sizeof(ev)));
	json_decref(st);
}

static void check_capacity(struct cf *cf)
{
	json_t *d = get_data(cf, "/chsm");
	json_int_t max = json_integer_value(json_object_get(json_object_get(d, "capacity"), "maxVsms"));
	json_int_t n = json_integer_value(json_object_get(d, "vsmCount"));
	json_decref(d);
	if (max <= 0 || max - n > 8) {
		cf_add(cf, CF_SA, CF_SKIP, "3004 create beyond capacity.maxVsms",
		       "needs capacity.maxVsms - vsmCount <= 8 (is %lld - %lld): the checker does not "
		       "create more than 8 VSMs", (long long)max, (long long)n);
		return;
	}
	char ids[8][80];
	int made = 0;
	for (json_int_t i = n; i < max && made < 8; i++) {
		char suffix[16];
		snprintf(suffix, sizeof(suffix), "fill%d", made);
		if (!cf_make_vsm(cf, suffix, false, ids[made]))
			break;
		made++;
	}
	char body[300];
	snprintf(body, sizeof(body),
		 "{\"vsmId\":\"%s-over\",\"name\":\"over\",\"network\":{\"ipAddress\":\"%s\",\"prefixLength\":32,\"port\":%d}}",
		 cf->prefix, cf->vsm_ip, cf_free_port(cf));
	struct cf_resp r;
	cf_call(cf, "POST", "/vsms", body, &r);
	cf_expect(cf, CF_SA, "3004 create beyond capacity.maxVsms", &r, 3004, 409);
	if (r.code == 0) {
		if (cf->ncreated < sizeof(cf->created) / sizeof(cf->created[0]))
			snprintf(cf->created[cf->ncreated++], 80, "%.20s-over", cf->prefix);
	}
	cf_resp_free(&r);
	for (int i = 0; i < made; i++)
		cf_drop_vsm(cf, ids[i]);
}

void cf_check_vsms(struct cf *cf)
{
	char a[80], b[80], body[600], ev[800];
	struct cf_resp r;
	cf_secret(cf, TOKEN_SECRET);
	cf_secret(cf, TOKEN_SECRET2);
	if (!cf_make_vsm(cf, "a", true, a))
		return;
	check_vsm_reads(cf, a);

	/* create again: 3002; another VSM on a's endpoint: 3009. */
	json_t *ad = get_data(cf, (snprintf(body, sizeof(body), "/vsms/%s", a), body));
	json_t *anet = json_object_get(ad, "network");
	snprintf(body, sizeof(body),
		 "{\"vsmId\":\"%s\",\"name\":\"again\",\"network\":{\"ipAddress\":\"%s\",\"prefixLength\":32,\"port\":%d}}",
		 a, cf->vsm_ip, cf_free_port(cf));
	cf_check_call(cf, CF_SA, "3002 create a VSM whose id exists", "POST", "/vsms", body, 3002);
	snprintf(body, sizeof(body),
		 "{\"vsmId\":\"%s-clash\",\"name\":\"clash\",\"network\":{\"ipAddress\":\"%s\",\"prefixLength\":32,\"port\":%lld}}",
		 cf->prefix, json_string_value(json_object_get(anet, "ipAddress")) ?: cf->vsm_ip,
		 (long long)json_integer_value(json_object_get(anet, "port")));
	cf_check_call(cf, CF_SA, "3009 create a VSM on another VSM's address and port", "POST", "/vsms", body, 3009);
	json_decref(ad);

	/* §8 from stopped: stop and restart are refused. */
	not_allowed(cf, a, "stop", "stopped");
	not_allowed(cf, a, "restart", "stopped");

	/* start, with a callback the receiver refuses once: a retry follows. */
	json_t *t = op(cf, a, "start", "7.3.7 start VSM", "/cb/retry/start", "running");
	if (t) {
		cf_check_callback(cf, "7.3.7 callback delivered after a 503, signed by the device key", t,
				  "/cb/retry/start");
		json_decref(t);
	}
	not_allowed(cf, a, "start", "running");
	json_t *st = vsm_status(cf, a);
	if (json_integer_value(json_object_get(st, "uptimeSeconds")) >= 0 &&
	    strcmp(json_string_value(json_object_get(st, "state")) ?: "", "running") == 0)
		cf_add(cf, CF_S9, CF_PASS, "7.3.2 a started VSM is running", NULL);
	else
		cf_add(cf, CF_S9, CF_FAIL, "7.3.2 a started VSM is running", "status %s",
		       dump(st, ev, sizeof(ev)));
	json_decref(st);

	if (!cf_make_vsm(cf, "b", false, b))
		b[0] = '\0';
	if (b[0])
		check_vsm_config(cf, a, b);

	json_decref(op(cf, a, "restart", "7.3.9 restart VSM", NULL, "running"));
	json_decref(op(cf, a, "stop", "7.3.8 stop VSM", NULL, "stopped"));
	t = op(cf, a, "reset", "7.3.10 reset VSM", "/cb/reset", "stopped");
	if (t) {
		cf_check_callback(cf, "7.3.10 callback of reset, signed by the device key", t, "/cb/reset");
		json_decref(t);
	}
	json_t *ad2 = get_data(cf, (snprintf(body, sizeof(body), "/vsms/%s", a), body));
	json_t *tok = json_object_get(ad2, "token");
	if (json_integer_value(json_object_get(ad2, "keyCount")) == 0 &&
	    !json_is_true(json_object_get(tok, "configured")) &&
	    strcmp(json_string_value(json_object_get(ad2, "vsmId")) ?: "", a) == 0)
		cf_add(cf, CF_S9, CF_PASS, "7.3.10 after reset: no keys, no token, same id", NULL);
	else
		cf_add(cf, CF_S9, CF_FAIL, "7.3.10 after reset: no keys, no token, same id", "details %s",
		       dump(ad2, ev, sizeof(ev)));
	json_decref(ad2);

	char absent[160];
	snprintf(absent, sizeof(absent), "/vsms/%s-absent/start", cf->prefix);
	cf_check_call(cf, CF_SA, "3001 start an unknown VSM", "POST", absent, "{}", 3001);
	snprintf(absent, sizeof(absent), "/vsms/%s-absent", cf->prefix);
	cf_check_call(cf, CF_SA, "3001 delete an unknown VSM", "DELETE", absent, NULL, 3001);

	check_capacity(cf);
	cf_add(cf, CF_SA, CF_SKIP, "3008 too many tasks",
	       "needs more tasks in flight at once than the device's bound, which the profile does not "
	       "fix; the checker keeps at most one task per target running");

	cf_drop_vsm(cf, a);
	snprintf(body, sizeof(body), "/vsms/%s", a);
	cf_get(cf, body, &r);
	cf_expect(cf, CF_S9, "7.3.13 a deleted VSM is gone (3001)", &r, 3001, 404);
	cf_resp_free(&r);
	if (b[0])
		cf_drop_vsm(cf, b);
}

/* ---- §10 images (with --image-dir) ---- */

static bool set_upload(struct cf *cf, const char *name, const char *url)
{
	char body[1200];
	struct cf_resp r;
	snprintf(body, sizeof(body), "{\"url\":\"%s\"}", url);
	cf_call(cf, "PUT", "/chsm/image-upload-address", body, &r);
	bool ok = cf_expect(cf, CF_S9, name, &r, 0, 200);
	cf_resp_free(&r);
	return ok;
}

/* The local file behind a file:// URL of the image folder, or NULL. */
static const char *url_path(const char *url)
{
	return url && strncmp(url, "file://", 7) == 0 ? url + 7 : NULL;
}

/* Imports url/sm3 into VSM id and expects the task (or the answer) to fail
 * with code; the VSM must then be as before (state, stateDigest). */
static void bad_import(struct cf *cf, const char *id, const char *name, const char *url,
		       const char *sm3, int code)
{
	char path[160], body[1400], ev[600], ev2[600];
	json_t *before = vsm_status(cf, id);
	snprintf(path, sizeof(path), "/vsms/%s/image/import", id);
	snprintf(body, sizeof(body), "{\"url\":\"%s\",\"sm3\":\"%s\"}", url, sm3);
	cf_expect_refused(cf, CF_SA, name, "POST", path, body, code);
	json_t *after = vsm_status(cf, id);
	const char *keys[] = {"state", "stateDigest", "stateVersion"};
	bool same = before && after;
	for (size_t i = 0; same && i < 3; i++)
		same = json_equal(json_object_get(before, keys[i]), json_object_get(after, keys[i]));
	char n2[200];
	snprintf(n2, sizeof(n2), "%s: the VSM is exactly as before", name);
	if (same)
		cf_add(cf, CF_S10, CF_PASS, n2, NULL);
	else
		cf_add(cf, CF_S10, CF_FAIL, n2, "before %s | after %s",
		       dump(before, ev, sizeof(ev)),
		       dump(after, ev2, sizeof(ev2)));
	json_decref(before);
	json_decref(after);
}

/* 7.2.9 into this device, only when every VSM of the image is one the
 * checker made (an operator's VSM is never deleted): they are deleted,
 * the import re-creates them, stopped, and they are deleted again. */
static void import_chsm_image(struct cf *cf, const char *body, const json_t *ids)
{
	static const char name[] = "7.2.9 import CHSM image re-creates its VSMs, stopped";
	size_t i;
	const json_t *v;
	json_array_foreach(ids, i, v) {
		const char *id = json_string_value(v);
		if (!id || strncmp(id, cf->prefix, strlen(cf->prefix)) != 0) {
			cf_add(cf, CF_S9, CF_SKIP, name,
			       "the device holds VSMs the checker did not make (%s): importing would "
			       "need to delete them", id ? id : "?");
			return;
		}
	}
	json_array_foreach(ids, i, v)
		cf_drop_vsm(cf, json_string_value(v));
	char tid[80];
	if (!cf_async(cf, CF_S9, "7.2.9 import CHSM image: accepted", "POST", "/chsm/image/import",
		      body, "chsm.image.import", "chsm", tid))
		return;
	json_t *t = cf_task_ends(cf, CF_S7, "7.2.9 import CHSM image: task succeeds", tid, "succeeded", 0);
	json_array_foreach(ids, i, v)
		if (cf->ncreated < sizeof(cf->created) / sizeof(cf->created[0]))
			snprintf(cf->created[cf->ncreated++], 80, "%s", json_string_value(v));
	if (t) {
		const json_t *res = json_object_get(t, "result");
		char *bad = cf_shape(res, "imageId:s sourceDeviceId:s vsmIds:a");
		bool all = !bad && json_equal(json_object_get(res, "vsmIds"), ids);
		json_array_foreach(ids, i, v)
			all &= strcmp(cf_vsm_state(cf, json_string_value(v)), "stopped") == 0;
		if (all)
			cf_add(cf, CF_S9, CF_PASS, name, NULL);
		else
			cf_add(cf, CF_S9, CF_FAIL, name, "result %s; each VSM of the image must be stopped",
			       bad ? bad : "fields ok, vsmIds or states differ");
		free(bad);
	}
	json_decref(t);
	json_array_foreach(ids, i, v)
		cf_drop_vsm(cf, json_string_value(v));
}

void cf_check_images(struct cf *cf)
{
	static const char *const names[] = {"4008 import with a wrong sm3", "4003 import of a file with a bad magic",
		"4007 import of an image of another security domain", "4001 import of an image with a bad signature",
		"4002 import of an image re-signed by another key (MAC fails)",
		"4005 import from a URL that cannot be read", "4004 export to an address that refuses the upload",
		"3005 operation on a VSM whose export task is running", "7.3.5 export VSM image",
		"7.3.6 import VSM image", "7.2.8 export CHSM image", "7.2.9 import CHSM image"};
	if (!cf->image_dir) {
		for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
			cf_add(cf, i < 8 ? CF_SA : CF_S10, CF_SKIP, names[i],
			       "needs --image-dir (a folder the device writes and the checker reads)");
		return;
	}
	char url[1200], s[80], t[80], u[80], tid[80], path[200], body[1600], name[200];
	snprintf(url, sizeof(url), "file://%s/", cf->image_dir);
	/* §6: an upload credential is stored, never shown. */
	static char credential[48];
	uint8_t rnd[12];
	crypto_random(rnd, sizeof(rnd));
	memcpy(credential, "Bearer conform-", 15);
	chsm_hex_encode(rnd, sizeof(rnd), credential + 15);
	cf_secret(cf, credential + 7);
	snprintf(body, sizeof(body), "{\"url\":\"%s/fail/\",\"headers\":{\"Authorization\":\"%s\"}}",
		 cf->callback_base, credential);
	cf_check_call(cf, CF_S9, "7.2.6 image upload address with an Authorization header", "PUT",
		      "/chsm/image-upload-address", body, 0);
	json_t *all = get_data(cf, "/chsm/status/all");
	json_t *view = json_object_get(json_object_get(all, "config"), "imageUploadAddress");
	if (json_is_object(view))
		cf_add(cf, CF_S9, CF_PASS, "7.2.3 shows the image upload address (its credential is checked under §6)", NULL);
	else
		cf_add(cf, CF_S9, CF_FAIL, "7.2.3 shows the image upload address (its credential is checked under §6)",
		       "config.imageUploadAddress %s", dump(view, name, sizeof(name)));
	json_decref(all);
	if (!set_upload(cf, "7.2.6 image upload address: file:// of the image folder", url))
		return;
	cf_left_changed(cf, "image upload address set to the --image-dir folder (the API cannot restore a previous one: its header values are secret)");
	if (!cf_make_vsm(cf, "src", true, s) || !cf_make_vsm(cf, "dst", false, t) ||
	    !cf_make_vsm(cf, "bad", false, u))
		return;

	snprintf(path, sizeof(path), "/vsms/%s/image/export", s);
	snprintf(body, sizeof(body), "{\"callbackUrl\":\"%s/cb/export\"}", cf->callback_base);
	if (!cf_async(cf, CF_S9, "7.3.5 export VSM image: accepted", "POST", path, body,
		      "vsm.image.export", s, tid))
		return;
	json_t *task = cf_task_ends(cf, CF_S7, "7.3.5 export VSM image: task succeeds", tid, "succeeded", 0);
	if (!task)
		return;
	cf_check_callback(cf, "7.3.5 callback of an export, signed by the device key", task, "/cb/export");
	json_t *res = json_object_get(task, "result");
	char *bad = cf_shape(res, "imageId:s url:s sizeBytes:i sm3:s vsmId:s keyCount:i stateVersion:i");
	const char *iurl = json_string_value(json_object_get(res, "url"));
	const char *isum = json_string_value(json_object_get(res, "sm3"));
	const char *file = url_path(iurl);
	char fsum[CF_FP_LEN + 1] = "";
	struct stat sb;
	if (bad)
		cf_add(cf, CF_S9, CF_FAIL, "7.3.5 result: imageId, url, sizeBytes, sm3, vsmId, keyCount, stateVersion", "%s", bad);
	else
		cf_add(cf, CF_S9, CF_PASS, "7.3.5 result: imageId, url, sizeBytes, sm3, vsmId, keyCount, stateVersion", NULL);
	free(bad);
	if (!file || cf_file_sm3(file, fsum) < 0 || stat(file, &sb) < 0 || !isum ||
	    strcasecmp(fsum, isum) != 0 ||
	    (json_int_t)sb.st_size != json_integer_value(json_object_get(res, "sizeBytes"))) {
		cf_add(cf, CF_S10, CF_FAIL, "7.3.5 the uploaded file has the result's sm3 and sizeBytes",
		       "url %s, file sm3 %s, result sm3 %s", iurl ? iurl : "(none)", fsum, isum ? isum : "(none)");
		json_decref(task);
		return;
	}
	cf_add(cf, CF_S10, CF_PASS, "7.3.5 the uploaded file has the result's sm3 and sizeBytes", NULL);
	char image[1100];
	snprintf(image, sizeof(image), "%s", file);
	char digest_src[CF_FP_LEN + 1] = "";
	json_t *ss = vsm_status(cf, s);
	snprintf(digest_src, sizeof(digest_src), "%s", json_string_value(json_object_get(ss, "stateDigest")) ?: "");
	json_decref(ss);

	/* import into the empty VSM t: same stateDigest afterwards. */
	snprintf(path, sizeof(path), "/vsms/%s/image/import", t);
	snprintf(body, sizeof(body), "{\"url\":\"%s\",\"sm3\":\"%s\"}", iurl, isum);
	if (cf_async(cf, CF_S9, "7.3.6 import VSM image: accepted", "POST", path, body,
		     "vsm.image.import", t, tid)) {
		json_t *it = cf_task_ends(cf, CF_S7, "7.3.6 import VSM image: task succeeds", tid, "succeeded", 0);
		if (it) {
			bad = cf_shape(json_object_get(it, "result"), "vsmId:s sourceVsmId:s sourceDeviceId:s keyCount:i");
			if (bad)
				cf_add(cf, CF_S9, CF_FAIL, "7.3.6 result: vsmId, sourceVsmId, sourceDeviceId, keyCount", "%s", bad);
			else
				cf_add(cf, CF_S9, CF_PASS, "7.3.6 result: vsmId, sourceVsmId, sourceDeviceId, keyCount", NULL);
			free(bad);
			json_t *ts = vsm_status(cf, t);
			const char *dt = json_string_value(json_object_get(ts, "stateDigest"));
			if (dt && strcmp(dt, digest_src) == 0 && strcmp(cf_vsm_state(cf, t), "stopped") == 0)
				cf_add(cf, CF_S10, CF_PASS, "7.3.6 the importing VSM is stopped with the source's stateDigest", NULL);
			else
				cf_add(cf, CF_S10, CF_FAIL, "7.3.6 the importing VSM is stopped with the source's stateDigest",
				       "source %s, target %s", digest_src, dt ? dt : "(none)");
			json_decref(ts);
		}
		json_decref(it);
	}

	/* Tampered copies, each imported into the empty VSM u. */
	bad_import(cf, u, names[0], iurl, ZERO_SM3, 4008);
	static const struct {
		enum cf_tamper how;
		int code;
		size_t name;
	} tampers[] = {{CF_T_MAGIC, 4003, 1}, {CF_T_DOMAIN, 4007, 2}, {CF_T_SIGNATURE, 4001, 3},
		       {CF_T_RESIGN_HEADER, 4002, 4}};
	for (size_t i = 0; i < sizeof(tampers) / sizeof(tampers[0]); i++) {
		char dst[1200], why[256] = "", sum[CF_FP_LEN + 1], turl[1300];
		snprintf(dst, sizeof(dst), "%s/%s-tampered-%zu.img", cf->image_dir, cf->prefix, i);
		if (cf_tamper(image, dst, tampers[i].how, cf->platform_key, why, sizeof(why)) < 0 ||
		    cf_file_sm3(dst, sum) < 0) {
			cf_add(cf, CF_SA, CF_FAIL, names[tampers[i].name], "could not make the input: %s", why);
			continue;
		}
		snprintf(turl, sizeof(turl), "file://%s", dst);
		bad_import(cf, u, names[tampers[i].name], turl, sum, tampers[i].code);
		unlink(dst);
	}
	snprintf(url, sizeof(url), "file://%s/%s-does-not-exist.img", cf->image_dir, cf->prefix);
	bad_import(cf, u, names[5], url, ZERO_SM3, 4005);

	/* 4004: an address that answers the upload with 500. */
	snprintf(url, sizeof(url), "%s/fail/", cf->callback_base);
	if (set_upload(cf, "7.2.6 image upload address: http:// of the checker's receiver", url)) {
		snprintf(path, sizeof(path), "/vsms/%s/image/export", s);
		cf_expect_refused(cf, CF_SA, names[6], "POST", path, "{}", 4004);
	}
	/* 3005: an export held by a slow upload keeps the VSM busy. */
	snprintf(url, sizeof(url), "%s/slow/", cf->callback_base);
	if (set_upload(cf, "7.2.6 image upload address: a slow http:// receiver", url) &&
	    cf_async(cf, CF_S9, "7.3.5 export held by a slow upload: accepted", "POST", path, "{}",
		     "vsm.image.export", s, tid)) {
		for (int i = 0; i < 100 && cf_receiver_count(cf, "/slow") == 0; i++)
			usleep(50000);
		snprintf(body, sizeof(body), "/vsms/%s/start", s);
		cf_check_call(cf, CF_SA, names[7], "POST", body, "{}", 3005);
		cf_receiver_release(cf);
		json_decref(cf_task_ends(cf, CF_S7, "7.3.5 export held by a slow upload: task succeeds once released",
					 tid, "succeeded", 0));
	}
	snprintf(url, sizeof(url), "file://%s/", cf->image_dir);
	set_upload(cf, "7.2.6 image upload address: back to the image folder", url);

	/* The CHSM image: export; an import that clashes with existing VSMs. */
	if (cf_async(cf, CF_S9, "7.2.8 export CHSM image: accepted", "POST", "/chsm/image/export", "{}",
		     "chsm.image.export", "chsm", tid)) {
		json_t *ct = cf_task_ends(cf, CF_S7, "7.2.8 export CHSM image: task succeeds", tid, "succeeded", 0);
		json_t *cres = json_object_get(ct, "result");
		bad = ct ? cf_shape(cres, "imageId:s url:s sizeBytes:i sm3:s vsmIds:a") : NULL;
		if (ct) {
			if (bad)
				cf_add(cf, CF_S9, CF_FAIL, "7.2.8 result: imageId, url, sizeBytes, sm3, vsmIds", "%s", bad);
			else
				cf_add(cf, CF_S9, CF_PASS, "7.2.8 result: imageId, url, sizeBytes, sm3, vsmIds", NULL);
		}
		if (ct && !bad) {
			snprintf(body, sizeof(body), "{\"url\":\"%s\",\"sm3\":\"%s\"}",
				 json_string_value(json_object_get(cres, "url")),
				 json_string_value(json_object_get(cres, "sm3")));
			snprintf(name, sizeof(name), "3002 7.2.9 import of an image whose VSMs exist");
			cf_expect_refused(cf, CF_SA, name, "POST", "/chsm/image/import", body, 3002);
			import_chsm_image(cf, body, json_object_get(cres, "vsmIds"));
			const char *cfile = url_path(json_string_value(json_object_get(cres, "url")));
			if (cfile)
				unlink(cfile);
		}
		free(bad);
		json_decref(ct);
	}
	unlink(image);
	json_decref(task);
	cf_drop_vsm(cf, s);
	cf_drop_vsm(cf, t);
	cf_drop_vsm(cf, u);
}

/* ---- --destructive: backup and restore, upgrade, reboot ---- */

static void check_packages(struct cf *cf)
{
	char dir[1200], pkg[1300], sum[CF_FP_LEN + 1], why[256] = "", body[1600], url[1400];
	if (!cf->image_dir) {
		cf_add(cf, CF_S10, CF_SKIP, "7.2.10 upgrade with packages", "needs --image-dir for the package files");
		return;
	}
	snprintf(dir, sizeof(dir), "%s", cf->image_dir);
	snprintf(pkg, sizeof(pkg), "%s/%s-selfsigned.pkg", dir, cf->prefix);
	const char *fw = json_string_value(json_object_get(cf->details, "firmwareVersion")) ?: "0.0.0";
	if (cf_make_package(pkg, "chsm", "999.0.0", cf->platform_key, why, sizeof(why)) < 0 ||
	    cf_file_sm3(pkg, sum) < 0) {
		cf_add(cf, CF_SA, CF_FAIL, "4001 upgrade with a package not signed by the vendor", "%s", why);
		return;
	}
	snprintf(url, sizeof(url), "file://%s", pkg);
	snprintf(body, sizeof(body), "{\"url\":\"%s\",\"sm3\":\"%s\"}", url, sum);
	cf_expect_refused(cf, CF_SA, "4001 7.2.10 upgrade with a package not signed by the vendor",
			  "POST", "/chsm/upgrade", body, 4001);
	snprintf(body, sizeof(body), "{\"url\":\"%s\",\"sm3\":\"%s\"}", url, ZERO_SM3);
	cf_expect_refused(cf, CF_S10, "4008 7.2.10 upgrade with a wrong sm3", "POST", "/chsm/upgrade", body, 4008);
	snprintf(body, sizeof(body), "{\"url\":\"file://%s/%s-none.pkg\",\"sm3\":\"%s\"}", dir, cf->prefix, ZERO_SM3);
	cf_expect_refused(cf, CF_S10, "4005 7.2.10 upgrade from a URL that cannot be read", "POST", "/chsm/upgrade", body, 4005);
	char uv[80];
	if (cf_make_vsm(cf, "upg0", false, uv)) {
		char path[160];
		snprintf(path, sizeof(path), "/vsms/%s/upgrade", uv);
		snprintf(body, sizeof(body), "{\"url\":\"%s\",\"sm3\":\"%s\"}", url, sum);
		cf_expect_refused(cf, CF_SA, "4001 7.3.11 upgrade VSM with a package not signed by the vendor",
				  "POST", path, body, 4001);
		cf_drop_vsm(cf, uv);
	}
	unlink(pkg);

	if (!cf->vendor_key_path) {
		cf_add(cf, CF_SA, CF_SKIP, "4006 upgrade with a vendor-signed package for the wrong component or not newer",
		       "needs the vendor's signing key (--vendor-key FILE)");
		return;
	}
	char *pem = NULL;
	size_t pl = 0;
	crypto_sm2_key *vk = NULL;
	if (chsm_read_file(cf->vendor_key_path, 65536, &pem, &pl) < 0 ||
	    crypto_sm2_load_private_pem(pem, pl, &vk) < 0) {
		cf_add(cf, CF_SA, CF_FAIL, "4006 upgrade with a vendor-signed package", "cannot read --vendor-key %s",
		       cf->vendor_key_path);
		crypto_free_secret(pem, pl);
		return;
	}
	crypto_free_secret(pem, pl);
	static const struct {
		const char *name, *component;
		bool same_version;
		bool vsm;
	} cases[] = {
		{"4006 7.2.10 upgrade with a vsm package", "vsm", false, false},
		{"4006 7.2.10 upgrade to the running version (not newer)", "chsm", true, false},
		{"4006 7.3.11 upgrade VSM with a chsm package", "chsm", false, true},
	};
	char vsm[80] = "";
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (cases[i].vsm && !vsm[0] && !cf_make_vsm(cf, "upg", false, vsm))
			continue;
		snprintf(pkg, sizeof(pkg), "%s/%s-vendor-%zu.pkg", dir, cf->prefix, i);
		if (cf_make_package(pkg, cases[i].component, cases[i].same_version ? fw : "999.0.0", vk,
				    why, sizeof(why)) < 0 || cf_file_sm3(pkg, sum) < 0) {
			cf_add(cf, CF_SA, CF_FAIL, cases[i].name, "%s", why);
			continue;
		}
		char path[160];
		if (cases[i].vsm)
			snprintf(path, sizeof(path), "/vsms/%s/upgrade", vsm);
		else
			snprintf(path, sizeof(path), "/chsm/upgrade");
		snprintf(body, sizeof(body), "{\"url\":\"file://%s\",\"sm3\":\"%s\"}", pkg, sum);
		cf_expect_refused(cf, CF_SA, cases[i].name, "POST", path, body, 4006);
		unlink(pkg);
	}
	crypto_sm2_key_free(vk);
	if (vsm[0])
		cf_drop_vsm(cf, vsm);
}

static void check_backup_restore(struct cf *cf)
{
	char tid[80], body[1600];
	if (!cf->image_dir) {
		cf_add(cf, CF_S9, CF_SKIP, "7.2.12 backup and 7.2.13 restore", "needs --image-dir");
		return;
	}
	if (!cf_async(cf, CF_S9, "7.2.12 back up CHSM: accepted", "POST", "/chsm/backup", "{}",
		      "chsm.backup", "chsm", tid))
		return;
	json_t *t = cf_task_ends(cf, CF_S7, "7.2.12 back up CHSM: task succeeds", tid, "succeeded", 0);
	if (!t)
		return;
	json_t *res = json_object_get(t, "result");
	char *bad = cf_shape(res, "imageId:s url:s sizeBytes:i sm3:s vsmIds:a");
	if (bad) {
		cf_add(cf, CF_S9, CF_FAIL, "7.2.12 result as 7.2.8", "%s", bad);
		free(bad);
		json_decref(t);
		return;
	}
	cf_add(cf, CF_S9, CF_PASS, "7.2.12 result as 7.2.8", NULL);
	const char *url = json_string_value(json_object_get(res, "url"));
	const char *sum = json_string_value(json_object_get(res, "sm3"));
	snprintf(body, sizeof(body), "{\"url\":\"%s\",\"sm3\":\"%s\"}", url, ZERO_SM3);
	cf_expect_refused(cf, CF_S10, "4008 7.2.13 restore with a wrong sm3", "POST", "/chsm/restore", body, 4008);
	snprintf(body, sizeof(body), "{\"url\":\"%s\",\"sm3\":\"%s\"}", url, sum);
	if (cf_async(cf, CF_S9, "7.2.13 restore CHSM from its own backup: accepted", "POST",
		     "/chsm/restore", body, "chsm.restore", "chsm", tid))
		json_decref(cf_task_ends(cf, CF_S7, "7.2.13 restore CHSM: task succeeds", tid, "succeeded", 0));
	struct cf_resp r;
	cf_get(cf, "/chsm", &r);
	cf_expect(cf, CF_S9, "7.2.1 answers after a restore, with the platform key", &r, 0, 200);
	cf_resp_free(&r);
	const char *file = url_path(url);
	if (file)
		unlink(file);
	json_decref(t);
}

static void check_reboot(struct cf *cf)
{
	char v[80], tid[80], body[300];
	if (!cf_make_vsm(cf, "rb", false, v))
		return;
	json_decref(op(cf, v, "start", "7.3.7 start VSM before a reboot", NULL, "running"));
	snprintf(body, sizeof(body), "{\"callbackUrl\":\"%s/cb/reboot\"}", cf->callback_base);
	if (cf_async(cf, CF_S9, "7.2.11 reboot CHSM: accepted", "POST", "/chsm/reboot", body,
		     "chsm.reboot", "chsm", tid)) {
		/* §9: requests between the stop and the return answer 5003. */
		bool seen = false, other = false;
		char other_body[400] = "";
		int64_t end = chsm_monotonic_ms() + cf->task_timeout_ms;
		while (!seen && chsm_monotonic_ms() < end) {
			struct cf_resp r;
			char ap[160];
			snprintf(ap, sizeof(ap), "/vsms/%s-absent/start", cf->prefix);
			cf_call(cf, "POST", ap, "{}", &r);
			if (r.code == 5003) {
				seen = true;
				cf_expect(cf, CF_SA, "5003 a request while the CHSM reboots", &r, 5003, 503);
			} else if (r.status && r.code != 3001) {
				other = true;
				snprintf(other_body, sizeof(other_body), "%.300s", r.body);
			}
			json_t *tk = NULL;
			if (!seen && r.status && r.code == 3001) {
				char tp[160];
				snprintf(tp, sizeof(tp), "/tasks/%s", tid);
				tk = get_data(cf, tp);
				const char *ts = json_string_value(json_object_get(tk, "state"));
				bool done = ts && (strcmp(ts, "succeeded") == 0 || strcmp(ts, "failed") == 0);
				json_decref(tk);
				cf_resp_free(&r);
				if (done)
					break;
				usleep(20000);
				continue;
			}
			cf_resp_free(&r);
			usleep(20000);
		}
		if (!seen)
			cf_add(cf, CF_SA, other ? CF_FAIL : CF_SKIP, "5003 a request while the CHSM reboots",
			       other ? "got another error during the reboot: %s"
				     : "%snot observed: every request was answered as usual (3001) or not at all",
			       other_body);
		json_t *t = cf_task_ends(cf, CF_S7, "7.2.11 reboot CHSM: task succeeds once the CHSM is back",
					 tid, "succeeded", 0);
		if (t) {
			cf_check_callback(cf, "7.2.11 callback of a reboot, signed by the device key", t, "/cb/reboot");
			const char *st = cf_vsm_state(cf, v);
			if (strcmp(st, "running") == 0)
				cf_add(cf, CF_S9, CF_PASS, "7.2.11 a VSM that was running runs again", NULL);
			else
				cf_add(cf, CF_S9, CF_FAIL, "7.2.11 a VSM that was running runs again", "state %s", st);
		}
		json_decref(t);
	}
	cf_drop_vsm(cf, v);
}

void cf_check_destructive(struct cf *cf)
{
	if (!cf->destructive) {
		static const char *const names[] = {"7.2.10 upgrade CHSM (packages)", "7.2.11 reboot CHSM",
						    "7.2.12 back up and 7.2.13 restore CHSM"};
		for (size_t i = 0; i < 3; i++)
			cf_add(cf, CF_S9, CF_SKIP, names[i], "only with --destructive");
		return;
	}
	check_packages(cf);
	check_backup_restore(cf);
	check_reboot(cf);
}
