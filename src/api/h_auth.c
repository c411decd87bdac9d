/*
 * h_auth.c: the authorisation interfaces 7.4.1 and 7.4.2 (PROFILE.md §4).
 *
 * 7.4.2 either consumes the one-time enrollment code (the first platform
 * key) or, signed by the current platform key, rotates to a new key. Both
 * are one store transaction: the key, its fingerprint and the end of the
 * enrollment code change together or not at all.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/internal.h"
#include "common/log.h"
#include "common/util.h"

int api_reload_platform_key(struct api_ctx *ctx)
{
	char *pem = NULL, *at = NULL;
	crypto_sm2_key *key = NULL;
	int64_t configured_at = 0;
	int r = store_setting_get(ctx->store, "platform.public_key", &pem);
	if (r == 0) {
		r = crypto_sm2_load_public_pem(pem, strlen(pem), &key);
		if (r < 0)
			goto out;
		uint64_t v = 0;
		if (store_setting_get(ctx->store, "platform.configured_at", &at) == 0 &&
		    chsm_parse_u64(at, INT64_MAX, &v) == 0)
			configured_at = (int64_t)v;
	} else if (r != -ENOENT) {
		goto out;
	}
	r = 0;
	pthread_mutex_lock(&ctx->auth_lock);
	crypto_sm2_key_free(ctx->platform_key);
	ctx->platform_key = key;
	ctx->platform_fp[0] = '\0';
	if (key)
		crypto_sm2_fingerprint(key, ctx->platform_fp);
	ctx->platform_configured_at = configured_at;
	pthread_mutex_unlock(&ctx->auth_lock);
	key = NULL;
out:
	crypto_sm2_key_free(key);
	free(pem);
	free(at);
	return r;
}

void h_auth_fingerprint(struct api_call *c)
{
	struct api_ctx *ctx = c->ctx;
	json_t *d = json_object();
	pthread_mutex_lock(&ctx->auth_lock);
	bool configured = ctx->platform_key != NULL;
	json_object_set_new(d, "configured", json_boolean(configured));
	json_object_set_new(d, "fingerprint", configured ? json_string(ctx->platform_fp) : json_null());
	json_object_set_new(d, "configuredAt",
			    configured ? json_integer(ctx->platform_configured_at) : json_null());
	pthread_mutex_unlock(&ctx->auth_lock);
	json_object_set_new(d, "deviceKeyFingerprint", json_string(ctx->device_fp));
	json_object_set_new(d, "devicePublicKey", json_string(ctx->device_public_pem));
	api_ok(c, d);
}

void h_auth_platform_key(struct api_call *c)
{
	static const struct api_field fields[] = {{"publicKey", API_STRING, true}, {NULL}};
	struct api_ctx *ctx = c->ctx;
	if (!api_fields(c, fields))
		return;
	const char *pem = json_string_value(json_object_get(c->body, "publicKey"));
	crypto_sm2_key *key = NULL;
	if (strlen(pem) > CHSM_JSON_MAX_PEM || crypto_sm2_load_public_pem(pem, strlen(pem), &key) < 0) {
		api_fail(c, GMT_E_PARAM_INVALID, "parameter invalid: publicKey (an SM2 public key in PEM)");
		return;
	}
	char fp[CRYPTO_SM3_HEX_LEN + 1], *norm = NULL;
	size_t norm_len;
	if (crypto_sm2_fingerprint(key, fp) < 0 || crypto_sm2_public_pem(key, &norm, &norm_len) < 0) {
		crypto_sm2_key_free(key);
		api_fail(c, GMT_E_CRYPTO, NULL);
		return;
	}
	crypto_sm2_key_free(key);
	char at[24];
	int64_t now = chsm_now_ms();
	snprintf(at, sizeof(at), "%lld", (long long)now);

	int code = GMT_E_STORAGE;
	if (store_begin(ctx->store) < 0)
		goto out;
	if (c->enrollment) {
		/* The code is consumed exactly once, even under concurrency. */
		uint8_t *code_bytes = NULL;
		size_t code_len = 0;
		char *existing = NULL;
		bool still_open = store_secret_get(ctx->store, "enrollment.code", &code_bytes, &code_len) == 0 &&
				  store_setting_get(ctx->store, "platform.public_key", &existing) == -ENOENT;
		crypto_free_secret(code_bytes, code_len);
		free(existing);
		if (!still_open) {
			code = GMT_E_ENROLLMENT;
			store_rollback(ctx->store);
			goto out;
		}
		if (store_secret_set(ctx->store, "enrollment.code", NULL, 0) < 0 ||
		    store_setting_set(ctx->store, "enrollment.failures", NULL) < 0)
			goto rollback;
	}
	if (store_setting_set(ctx->store, "platform.public_key", norm) < 0 ||
	    store_setting_set(ctx->store, "platform.fingerprint", fp) < 0 ||
	    store_setting_set(ctx->store, "platform.configured_at", at) < 0)
		goto rollback;
	if (store_commit(ctx->store) < 0)
		goto out;
	code = api_reload_platform_key(ctx) < 0 ? GMT_E_STORAGE : GMT_OK;
	if (code == GMT_OK) {
		chsm_log(CHSM_LOG_INFO, "platform_key.configured", "fingerprint", fp, "by",
			 c->enrollment ? "enrollment" : "rotation", NULL);
		json_t *d = json_object();
		json_object_set_new(d, "fingerprint", json_string(fp));
		json_object_set_new(d, "configuredAt", json_integer(now));
		api_ok(c, d);
	}
	goto out;
rollback:
	store_rollback(ctx->store);
out:
	free(norm);
	if (code != GMT_OK)
		api_fail(c, code, NULL);
}

void h_task_get(struct api_call *c)
{
	struct store_task t;
	int r = store_task_get(c->ctx->store, c->param, &t);
	if (r == -ENOENT) {
		api_fail(c, GMT_E_TASK_NOT_FOUND, NULL);
		return;
	}
	if (r < 0) {
		api_fail(c, GMT_E_STORAGE, NULL);
		return;
	}
	api_ok(c, task_to_json(&t, true));
	store_task_clear(&t);
}

void h_metrics(struct api_call *c)
{
	c->raw_body = api_metrics_render(c->ctx);
	c->raw_content_type = "text/plain; version=0.0.4";
	if (!c->raw_body)
		api_fail(c, GMT_E_INTERNAL, NULL);
	else
		c->code = GMT_OK;
}
