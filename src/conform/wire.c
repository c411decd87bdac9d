/*
 * wire.c: the checker's requests and what it checks on every answer, from
 * PROFILE.md §5 and §6 and Appendix A: the string to sign, SM2-SM3 and
 * HMAC-SM3 authentication, the device signature over each answer, the
 * envelope and the HTTP status of each code. libcurl carries the bytes,
 * exactly as built here (the request-target is sent as is).
 *
 * With --record DIR each exchange is also written to DIR/NNNN.json
 * (method, path, status, content type, body) for schema validation.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "common/util.h"
#include "conform/conform.h"

/* Appendix A, code and HTTP status, as the profile lists them. */
static const struct {
	int code, http;
} appendix_a[] = {
	{0, 200},    {1001, 400}, {1002, 400}, {1003, 400}, {1004, 404}, {1005, 405},
	{1006, 413}, {1007, 415}, {2001, 401}, {2002, 401}, {2003, 401}, {2004, 401},
	{2005, 403}, {2006, 401}, {2007, 401}, {3001, 404}, {3002, 409}, {3003, 409},
	{3004, 409}, {3005, 409}, {3006, 404}, {3007, 409}, {3008, 429}, {3009, 409},
	{3010, 409}, {4001, 422}, {4002, 422}, {4003, 422}, {4004, 502}, {4005, 502},
	{4006, 422}, {4007, 422}, {4008, 422}, {5000, 500}, {5001, 500}, {5002, 500},
	{5003, 503},
};

int cf_code_http(int code)
{
	for (size_t i = 0; i < sizeof(appendix_a) / sizeof(appendix_a[0]); i++)
		if (appendix_a[i].code == code)
			return appendix_a[i].http;
	return 0;
}

void cf_new_nonce(char out[33])
{
	static const char set[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
	uint8_t r[32];
	if (crypto_random(r, sizeof(r)) < 0)
		memset(r, 0, sizeof(r));
	for (int i = 0; i < 32; i++)
		out[i] = set[r[i] & 63];
	out[32] = '\0';
}

static void sm3_hex(const void *data, size_t len, char out[CF_FP_LEN + 1])
{
	if (crypto_sm3_hex(data, len, out) < 0)
		out[0] = '\0';
}

char *cf_string_to_sign(const char *method, const char *target, const char *ts,
			const char *nonce, const char *key_id, const void *body, size_t len)
{
	char digest[CF_FP_LEN + 1];
	sm3_hex(body ? body : "", body ? len : 0, digest);
	char *s = NULL;
	if (asprintf(&s, "GMT0088-V1\n%s\n%s\n%s\n%s\n%s\n%s", method, target, ts, nonce, key_id,
		     digest) < 0)
		return NULL;
	return s;
}

bool cf_sm2_ok(const crypto_sm2_key *key, const char *msg, size_t len, const char *sig_b64)
{
	uint8_t *sig = NULL;
	size_t siglen = 0;
	if (!key || !sig_b64 || crypto_base64_decode(sig_b64, strlen(sig_b64), &sig, &siglen) < 0)
		return false;
	bool ok = crypto_sm2_verify(key, NULL, msg, len, sig, siglen) == 0;
	free(sig);
	return ok;
}

void cf_secret(struct cf *cf, const char *secret)
{
	if (secret && secret[0] && cf->nsecrets < sizeof(cf->secrets) / sizeof(cf->secrets[0]))
		cf->secrets[cf->nsecrets++] = secret;
}

/* §6: no secret the checker sent comes back in an answer. */
static void check_secrets(struct cf *cf, const struct cf_resp *r)
{
	cf->answers++;
	for (size_t i = 0; i < cf->nsecrets; i++)
		if (memmem(r->body, r->body_len, cf->secrets[i], strlen(cf->secrets[i]))) {
			if (!cf->leaks++)
				snprintf(cf->leak_evidence, sizeof(cf->leak_evidence),
					 "request: %.320s | got a body holding secret #%zu: %.300s", r->what,
					 i + 1, r->body);
			return;
		}
}

int cf_wire_init(struct cf *cf)
{
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		return -1;
	cf->curl = curl_easy_init();
	return cf->curl ? 0 : -1;
}

void cf_wire_free(struct cf *cf)
{
	if (cf->curl)
		curl_easy_cleanup(cf->curl);
	cf->curl = NULL;
	curl_global_cleanup();
}

void cf_resp_free(struct cf_resp *r)
{
	if (!r)
		return;
	free(r->body);
	free(r->allow);
	free(r->ctype);
	free(r->dev_key_id_raw);
	free(r->dev_sig_raw);
	json_decref(r->json);
	memset(r, 0, sizeof(*r));
}

struct sink {
	char *data;
	size_t len, cap;
};

static size_t sink_write(char *p, size_t size, size_t n, void *ud)
{
	struct sink *s = ud;
	size_t add = size * n;
	if (s->len + add + 1 > s->cap) {
		size_t cap = s->cap ? s->cap : 4096;
		while (cap < s->len + add + 1)
			cap *= 2;
		if (cap > 128u * 1024 * 1024)
			return 0;
		char *q = realloc(s->data, cap);
		if (!q)
			return 0;
		s->data = q;
		s->cap = cap;
	}
	memcpy(s->data + s->len, p, add);
	s->len += add;
	s->data[s->len] = '\0';
	return add;
}

/* Response headers the checker reads, each with how often it came. */
static size_t header_cb(char *p, size_t size, size_t n, void *ud)
{
	struct cf_resp *r = ud;
	size_t len = size * n;
	const char *colon = memchr(p, ':', len);
	if (!colon)
		return len;
	size_t nlen = (size_t)(colon - p);
	const char *v = colon + 1;
	size_t vlen = len - nlen - 1;
	while (vlen && (*v == ' ' || *v == '\t'))
		v++, vlen--;
	while (vlen && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n' || v[vlen - 1] == ' '))
		vlen--;
	char **slot = NULL;
	if (nlen == 19 && strncasecmp(p, "X-GMT-Device-Key-Id", nlen) == 0) {
		slot = &r->dev_key_id_raw;
		r->dev_key_id_count++;
	} else if (nlen == 22 && strncasecmp(p, "X-GMT-Device-Signature", nlen) == 0) {
		slot = &r->dev_sig_raw;
		r->dev_sig_count++;
	} else if (nlen == 5 && strncasecmp(p, "Allow", nlen) == 0) {
		slot = &r->allow;
	} else if (nlen == 12 && strncasecmp(p, "Content-Type", nlen) == 0) {
		slot = &r->ctype;
	}
	if (slot) {
		free(*slot);
		*slot = strndup(v, vlen);
	}
	return len;
}

/* The §6 envelope: an object with an integer code, a non-empty message, a
 * non-empty requestId, and data (an object) exactly when code is 0. */
static void check_envelope(struct cf_resp *r)
{
	json_t *j = r->json;
	r->code = -1;
	if (!j || !json_is_object(j)) {
		snprintf(r->env_problem, sizeof(r->env_problem), "body is not a JSON object");
		return;
	}
	json_t *code = json_object_get(j, "code"), *msg = json_object_get(j, "message"),
	       *rid = json_object_get(j, "requestId"), *data = json_object_get(j, "data");
	if (!json_is_integer(code)) {
		snprintf(r->env_problem, sizeof(r->env_problem), "no integer \"code\"");
		return;
	}
	r->code = (int)json_integer_value(code);
	if (!json_is_string(msg) || json_string_length(msg) == 0)
		snprintf(r->env_problem, sizeof(r->env_problem), "no non-empty \"message\"");
	else if (!json_is_string(rid) || json_string_length(rid) == 0)
		snprintf(r->env_problem, sizeof(r->env_problem), "no non-empty \"requestId\"");
	else if (r->code == 0 && !json_is_object(data))
		snprintf(r->env_problem, sizeof(r->env_problem), "code 0 without a \"data\" object");
	else if (r->code != 0 && data)
		snprintf(r->env_problem, sizeof(r->env_problem), "\"data\" present on an error");
	else if (cf_code_http(r->code) == 0)
		snprintf(r->env_problem, sizeof(r->env_problem), "code %d is not in Appendix A",
			 r->code);
	else if (r->status != cf_code_http(r->code) && !(r->code == 0 && r->status == 202))
		snprintf(r->env_problem, sizeof(r->env_problem),
			 "HTTP %ld does not follow code %d (Appendix A: %d)", r->status, r->code,
			 cf_code_http(r->code));
	if (r->code == 0 && json_is_object(data))
		r->data = data;
}

/* §5: X-GMT-Device-Key-Id is the device key, once; X-GMT-Device-Signature,
 * once, verifies over the response string. */
static void check_device_signature(struct cf *cf, struct cf_resp *r)
{
	if (!cf->device_key) {
		snprintf(r->sig_problem, sizeof(r->sig_problem), "device key not known yet");
		return;
	}
	if (r->dev_key_id_count != 1 || !r->dev_key_id_raw) {
		snprintf(r->sig_problem, sizeof(r->sig_problem),
			 "X-GMT-Device-Key-Id present %d times", r->dev_key_id_count);
		return;
	}
	if (strcasecmp(r->dev_key_id_raw, cf->device_fp) != 0) {
		snprintf(r->sig_problem, sizeof(r->sig_problem),
			 "X-GMT-Device-Key-Id %.64s is not the device key %s", r->dev_key_id_raw,
			 cf->device_fp);
		return;
	}
	if (r->dev_sig_count != 1 || !r->dev_sig_raw) {
		snprintf(r->sig_problem, sizeof(r->sig_problem),
			 "X-GMT-Device-Signature present %d times", r->dev_sig_count);
		return;
	}
	char digest[CF_FP_LEN + 1], *msg = NULL;
	sm3_hex(r->body, r->body_len, digest);
	int n = asprintf(&msg, "GMT0088-V1-RESPONSE\n%s\n%ld\n%s", r->nonce, r->status, digest);
	if (n < 0 || !cf_sm2_ok(cf->device_key, msg, (size_t)n, r->dev_sig_raw))
		snprintf(r->sig_problem, sizeof(r->sig_problem),
			 "X-GMT-Device-Signature does not verify over the nonce, status %ld and body",
			 r->status);
	free(msg);
}

/* Writes one exchange to the record folder. */
static void record(struct cf *cf, const char *method, const char *path, const char *body,
		   size_t blen, const struct cf_resp *r)
{
	if (!cf->record_dir || r->status == 0)
		return;
	json_t *o = json_object();
	json_object_set_new(o, "method", json_string(method));
	json_object_set_new(o, "path", json_string(path));
	json_object_set_new(o, "status", json_integer(r->status));
	json_object_set_new(o, "contentType", r->ctype ? json_string(r->ctype) : json_null());
	json_object_set_new(o, "body", json_stringn(r->body ? r->body : "", r->body_len));
	if (body && blen <= 65536)
		json_object_set_new(o, "requestBody", json_stringn(body, blen));
	char file[4096];
	snprintf(file, sizeof(file), "%s/%04d.json", cf->record_dir, ++cf->record_seq);
	json_dump_file(o, file, JSON_COMPACT);
	json_decref(o);
}

void cf_record_callback(struct cf *cf, const struct cf_received *cb)
{
	if (!cf->record_dir)
		return;
	json_t *o = json_object();
	json_object_set_new(o, "method", json_string(cb->method));
	json_object_set_new(o, "path", json_string(cb->target));
	json_object_set_new(o, "body", json_stringn(cb->body ? cb->body : "", cb->body_len));
	char file[4096];
	snprintf(file, sizeof(file), "%s/cb-%04d.json", cf->record_dir, ++cf->record_seq);
	json_dump_file(o, file, JSON_COMPACT);
	json_decref(o);
}

static void describe(struct cf_resp *r, const struct cf_req *q, const char *target)
{
	const char *b = q->body ? q->body : "";
	size_t blen = q->body ? (q->body_len ? q->body_len : strlen(q->body)) : 0;
	bool printable = blen < 160;
	for (size_t i = 0; printable && i < blen; i++)
		if ((unsigned char)b[i] < 0x20)
			printable = false;
	if (!blen)
		snprintf(r->what, sizeof(r->what), "%.8s %.120s", q->method, target);
	else if (printable)
		snprintf(r->what, sizeof(r->what), "%.8s %.120s %.*s", q->method, target, (int)blen, b);
	else
		snprintf(r->what, sizeof(r->what), "%.8s %.120s (%zu-byte body)", q->method, target, blen);
}

int cf_send(struct cf *cf, const struct cf_req *q, struct cf_resp *ret)
{
	struct cf_resp r = {0};
	struct sink sink = {0};
	struct curl_slist *h = NULL;
	char target[2048], url[4096], ts[32], nonce[80], hdr[512], errbuf[CURL_ERROR_SIZE] = "";
	char *tbs = NULL, *sig_b64 = NULL;
	const char *body = q->body;
	size_t blen = body ? (q->body_len ? q->body_len : strlen(body)) : 0;
	int rc = -1;

	r.code = -1;
	snprintf(target, sizeof(target), "%s%s", q->raw_target ? "" : CF_API_BASE, q->path);
	snprintf(url, sizeof(url), "%s%s", cf->base, target);
	describe(&r, q, target);
	if (q->timestamp)
		snprintf(ts, sizeof(ts), "%s", q->timestamp);
	else
		snprintf(ts, sizeof(ts), "%lld", (long long)(chsm_now_ms() + q->ts_offset_ms));
	if (q->nonce)
		snprintf(nonce, sizeof(nonce), "%s", q->nonce);
	else
		cf_new_nonce(nonce);

	if (q->auth != CF_AUTH_NONE) {
		const char *kid;
		if (q->key_id)
			kid = q->key_id;
		else if (q->auth == CF_AUTH_HMAC)
			kid = "enrollment";
		else if (q->auth == CF_AUTH_KEY) {
			static __thread char fp[CF_FP_LEN + 1];
			crypto_sm2_fingerprint(q->key, fp);
			kid = fp;
		} else
			kid = cf->platform_fp;
		const char *sb = q->sign_body ? q->sign_body : body;
		size_t sblen = q->sign_body ? strlen(q->sign_body) : blen;
		tbs = cf_string_to_sign(q->method, target, ts, nonce, kid, sb, sblen);
		if (!tbs)
			goto out;
		if (q->signature) {
			sig_b64 = strdup(q->signature);
		} else if (q->auth == CF_AUTH_HMAC) {
			uint8_t mac[CRYPTO_SM3_LEN];
			const char *code = q->hmac_code ? q->hmac_code : "";
			if (crypto_hmac_sm3(code, strlen(code), tbs, strlen(tbs), mac) == 0)
				crypto_base64_encode(mac, sizeof(mac), &sig_b64);
		} else {
			uint8_t sig[CRYPTO_SM2_SIG_DER_MAX];
			size_t siglen = 0;
			const crypto_sm2_key *k = q->auth == CF_AUTH_KEY ? q->key : cf->platform_key;
			if (k && crypto_sm2_sign(k, NULL, tbs, strlen(tbs), sig, &siglen) == 0)
				crypto_base64_encode(sig, siglen, &sig_b64);
		}
		if (!sig_b64)
			goto out;
		const char *alg = q->alg ? q->alg : q->auth == CF_AUTH_HMAC ? "HMAC-SM3" : "SM2-SM3";
#define ADD(name, val)                                                          \
	do {                                                                    \
		if (!q->omit || strcasecmp(q->omit, name) != 0) {              \
			snprintf(hdr, sizeof(hdr), "%s: %s", name, val);        \
			h = curl_slist_append(h, hdr);                          \
		}                                                               \
	} while (0)
		ADD("X-GMT-Timestamp", ts);
		ADD("X-GMT-Nonce", nonce);
		ADD("X-GMT-Key-Id", kid);
		ADD("X-GMT-Signature-Alg", alg);
		ADD("X-GMT-Signature", sig_b64);
	} else if (q->nonce) {
		ADD("X-GMT-Nonce", nonce);
#undef ADD
	}
	/* The nonce the device must sign over: the one sent, when well formed. */
	if ((q->auth != CF_AUTH_NONE || q->nonce) &&
	    !(q->omit && strcasecmp(q->omit, "X-GMT-Nonce") == 0)) {
		size_t nl = strlen(nonce);
		if (nl >= 16 && nl <= 64 && chsm_str_charset(nonce, nl, "_-"))
			snprintf(r.nonce, sizeof(r.nonce), "%s", nonce);
	}
	if (q->idem) {
		snprintf(hdr, sizeof(hdr), "X-GMT-Idempotency-Key: %s", q->idem);
		h = curl_slist_append(h, hdr);
	}
	if (q->content_type) {
		snprintf(hdr, sizeof(hdr), "Content-Type: %s", q->content_type);
		h = curl_slist_append(h, hdr);
	} else if (body) {
		h = curl_slist_append(h, "Content-Type: application/json");
	} else {
		h = curl_slist_append(h, "Content-Type:");
	}
	h = curl_slist_append(h, "Expect:");

	CURL *c = cf->curl;
	curl_easy_reset(c);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https,http");
	curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
	curl_easy_setopt(c, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, cf->timeout_ms);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink_write);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &sink);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, header_cb);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, &r);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	if (cf->cacert) {
		curl_easy_setopt(c, CURLOPT_CAINFO, cf->cacert);
		curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
		curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
	} else {
		curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
	}
	if (strcmp(q->method, "GET") == 0 && !body) {
		curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
	} else {
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body ? body : "");
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)blen);
		curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, q->method);
	}
	CURLcode cc = curl_easy_perform(c);
	if (cc != CURLE_OK) {
		snprintf(r.transport, sizeof(r.transport), "%s",
			 errbuf[0] ? errbuf : curl_easy_strerror(cc));
		goto out;
	}
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
	r.body = sink.data ? sink.data : strdup("");
	r.body_len = sink.len;
	sink.data = NULL;
	r.json = json_loadb(r.body, r.body_len, JSON_REJECT_DUPLICATES, NULL);
	check_envelope(&r);
	check_device_signature(cf, &r);
	check_secrets(cf, &r);
	rc = 0;
out:
	curl_easy_reset(cf->curl);
	curl_slist_free_all(h);
	free(sink.data);
	free(tbs);
	free(sig_b64);
	{
		char path[2048];
		snprintf(path, sizeof(path), "%s", q->raw_target ? target : q->path);
		path[strcspn(path, "?")] = '\0';
		record(cf, q->method, path, body, blen, &r);
	}
	if (cf->verbose)
		fprintf(stderr, "> %s\n< %ld %.300s\n", r.what, r.status, r.body ? r.body : r.transport);
	*ret = r;
	return rc;
}

int cf_get(struct cf *cf, const char *path, struct cf_resp *ret)
{
	struct cf_req q = {.method = "GET", .path = path};
	return cf_send(cf, &q, ret);
}

int cf_call(struct cf *cf, const char *method, const char *path, const char *body,
	    struct cf_resp *ret)
{
	struct cf_req q = {.method = method, .path = path, .body = body};
	return cf_send(cf, &q, ret);
}

int cf_get_fingerprint(struct cf *cf, struct cf_resp *ret)
{
	char nonce[33];
	cf_new_nonce(nonce);
	struct cf_req q = {.method = "GET", .path = "/auth/platform-key/fingerprint",
			   .auth = CF_AUTH_NONE, .nonce = nonce};
	return cf_send(cf, &q, ret);
}

int cf_learn_device_key(struct cf *cf, char *why, size_t whylen)
{
	struct cf_resp r;
	int rc = -1;
	if (cf_get_fingerprint(cf, &r) < 0) {
		snprintf(why, whylen, "7.4.1 did not answer: %s", r.transport);
		goto out;
	}
	const char *pem = json_string_value(json_object_get(r.data, "devicePublicKey"));
	crypto_sm2_key *k = NULL;
	if (!pem || crypto_sm2_load_public_pem(pem, strlen(pem), &k) < 0) {
		snprintf(why, whylen, "7.4.1 carries no devicePublicKey (SM2 PEM): %.200s",
			 r.body ? r.body : "");
		goto out;
	}
	char fp[CF_FP_LEN + 1];
	crypto_sm2_fingerprint(k, fp);
	if (cf->pinned && strcmp(fp, cf->pin_fp) != 0) {
		snprintf(why, whylen, "device key %s is not the pinned %s", fp, cf->pin_fp);
		crypto_sm2_key_free(k);
		goto out;
	}
	cf->device_key = k;
	memcpy(cf->device_fp, fp, sizeof(fp));
	rc = 0;
out:
	cf_resp_free(&r);
	return rc;
}
