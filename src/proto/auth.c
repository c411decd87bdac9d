/*
 * auth.c: request and response authentication of PROFILE.md §5.
 *
 * Guarantees:
 *  - the string to sign and the response string are each built in one place
 *    (join_lines), the same for the signing and the verifying side;
 *  - gmt_verify_request runs the checks in the profile's order and answers
 *    the first failure; header syntax is checked before any key or signature
 *    work, and nonce_use is called only after the signature or MAC verified;
 *  - the enrollment MAC is compared in constant time and every MAC buffer is
 *    wiped before it goes out of scope;
 *  - nothing here keeps state or logs.
 */
#include "proto/auth.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "proto/codes.h"

/* Shortest DER SEQUENCE { INTEGER, INTEGER }: 30 06 02 01 r 02 01 s. */
#define SM2_SIG_DER_MIN 8
/* Extra characters allowed besides [A-Za-z0-9]. */
#define NONCE_EXTRA       "_-"
#define KEY_ID_EXTRA      "_-"
#define KEY_ID_MAX_LEN    64
#define IDEMPOTENCY_EXTRA "_.:-"

/* 64 symbols: a random byte's low 6 bits pick one without bias. */
static const char nonce_alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
_Static_assert(sizeof(nonce_alphabet) - 1 == 64, "nonce alphabet must have 64 symbols");

enum sig_alg { ALG_SM2, ALG_HMAC };

/* The authentication headers once checked for syntax. */
struct parsed_auth {
	enum sig_alg alg;
	int64_t timestamp_ms;
	uint8_t sig[CRYPTO_SM2_SIG_DER_MAX];
	size_t siglen;
};

/* A line of the string to sign: present, no control character. */
static bool line_ok(const char *s, bool may_be_empty)
{
	if (!s || (!*s && !may_be_empty))
		return false;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			return false;
	return true;
}

static int body_sm3_hex(const void *body, size_t bodylen, char out[CRYPTO_SM3_HEX_LEN + 1])
{
	if (!body && bodylen)
		return -EINVAL;
	return crypto_sm3_hex(body ? body : "", bodylen, out);
}

/* Joins n lines with '\n' into a malloc'ed NUL-terminated string. */
static int join_lines(const char *const *lines, size_t n, char **ret, size_t *ret_len)
{
	size_t total = 0;
	for (size_t i = 0; i < n; i++)
		total += strlen(lines[i]) + 1;
	char *s = malloc(total);
	if (!s)
		return -ENOMEM;
	size_t off = 0;
	for (size_t i = 0; i < n; i++) {
		size_t l = strlen(lines[i]);
		memcpy(s + off, lines[i], l);
		off += l;
		s[off++] = i + 1 < n ? '\n' : '\0';
	}
	*ret = s;
	*ret_len = total - 1;
	return 0;
}

int gmt_string_to_sign(const char *method, const char *target, const char *timestamp,
		       const char *nonce, const char *key_id, const void *body, size_t bodylen,
		       char **ret, size_t *ret_len)
{
	char hex[CRYPTO_SM3_HEX_LEN + 1];
	if (!line_ok(method, false) || !line_ok(target, false) || !line_ok(timestamp, false) ||
	    !line_ok(nonce, false) || !line_ok(key_id, false) || !ret || !ret_len)
		return -EINVAL;
	int r = body_sm3_hex(body, bodylen, hex);
	if (r < 0)
		return r;
	const char *lines[] = {GMT_SIGN_PREFIX, method, target, timestamp, nonce, key_id, hex};
	return join_lines(lines, sizeof(lines) / sizeof(lines[0]), ret, ret_len);
}

int gmt_response_string(const char *nonce, int http_status, const void *body, size_t bodylen,
			char **ret, size_t *ret_len)
{
	char hex[CRYPTO_SM3_HEX_LEN + 1], status[8];
	if (!nonce)
		nonce = "";
	if (!line_ok(nonce, true) || http_status < 100 || http_status > 599 || !ret || !ret_len)
		return -EINVAL;
	snprintf(status, sizeof(status), "%d", http_status);
	int r = body_sm3_hex(body, bodylen, hex);
	if (r < 0)
		return r;
	const char *lines[] = {GMT_RESPONSE_PREFIX, nonce, status, hex};
	return join_lines(lines, sizeof(lines) / sizeof(lines[0]), ret, ret_len);
}

int gmt_new_nonce(char out[CHSM_NONCE_MAX_LEN + 1])
{
	uint8_t rnd[GMT_NONCE_LEN];
	int r = crypto_random(rnd, sizeof(rnd));
	if (r < 0)
		return r;
	for (size_t i = 0; i < GMT_NONCE_LEN; i++)
		out[i] = nonce_alphabet[rnd[i] & 0x3f];
	out[GMT_NONCE_LEN] = '\0';
	crypto_wipe(rnd, sizeof(rnd));
	return 0;
}

/* Copies a malloc'ed base64 string into a header field if it fits. */
static int put_b64(const void *data, size_t len, char out[CHSM_SIGNATURE_B64_MAX + 1])
{
	char *b64 = NULL;
	int r = crypto_base64_encode(data, len, &b64);
	if (r < 0)
		return r;
	size_t l = strlen(b64);
	if (l > CHSM_SIGNATURE_B64_MAX) {
		r = -EOVERFLOW;
		goto out;
	}
	memcpy(out, b64, l + 1);
out:
	free(b64);
	return r;
}

/* Strict base64 of a signature or MAC decoding to min..max bytes. */
static int decode_sig(const char *b64, size_t min, size_t max,
		      uint8_t out[CRYPTO_SM2_SIG_DER_MAX], size_t *ret_len)
{
	uint8_t *raw = NULL;
	size_t rawlen = 0;
	if (!b64)
		return -EINVAL;
	size_t l = strlen(b64);
	if (l == 0 || l > CHSM_SIGNATURE_B64_MAX)
		return -EINVAL;
	int r = crypto_base64_decode(b64, l, &raw, &rawlen);
	if (r < 0)
		return r;
	if (rawlen < min || rawlen > max || rawlen > CRYPTO_SM2_SIG_DER_MAX) {
		r = -EINVAL;
		goto out;
	}
	memcpy(out, raw, rawlen);
	*ret_len = rawlen;
out:
	crypto_free_secret(raw, rawlen);
	return r;
}

/* Fills the timestamp, a fresh nonce, key id and alg of h, and builds the
 * string to sign over them. */
static int prepare_request(const char *key_id, const char *alg, const char *method,
			   const char *target, const void *body, size_t bodylen, int64_t now_ms,
			   struct gmt_signed_headers *h, char **ret_tbs, size_t *ret_tbslen)
{
	if (now_ms < 0)
		return -EINVAL;
	memset(h, 0, sizeof(*h));
	snprintf(h->timestamp, sizeof(h->timestamp), "%" PRId64, now_ms);
	snprintf(h->key_id, sizeof(h->key_id), "%s", key_id);
	snprintf(h->alg, sizeof(h->alg), "%s", alg);
	int r = gmt_new_nonce(h->nonce);
	if (r < 0)
		return r;
	return gmt_string_to_sign(method, target, h->timestamp, h->nonce, h->key_id, body,
				  bodylen, ret_tbs, ret_tbslen);
}

/* SM2 signature (default ID) of msg, base64 into out. */
static int sign_b64(const crypto_sm2_key *key, const char *msg, size_t len,
		    char out[CHSM_SIGNATURE_B64_MAX + 1])
{
	uint8_t sig[CRYPTO_SM2_SIG_DER_MAX];
	size_t siglen = 0;
	if (!key || !crypto_sm2_key_has_private(key))
		return -EINVAL;
	int r = crypto_sm2_sign(key, NULL, msg, len, sig, &siglen);
	if (r < 0)
		return r;
	return put_b64(sig, siglen, out);
}

int gmt_sign_request(const crypto_sm2_key *key, const char *method, const char *target,
		     const void *body, size_t bodylen, int64_t now_ms,
		     struct gmt_signed_headers *ret)
{
	struct gmt_signed_headers h;
	char fp[CRYPTO_SM3_HEX_LEN + 1];
	char *tbs = NULL;
	size_t tbslen = 0;
	if (!key || !ret || !crypto_sm2_key_has_private(key))
		return -EINVAL;
	int r = crypto_sm2_fingerprint(key, fp);
	if (r < 0)
		goto out;
	r = prepare_request(fp, GMT_ALG_SM2, method, target, body, bodylen, now_ms, &h, &tbs,
			    &tbslen);
	if (r < 0)
		goto out;
	r = sign_b64(key, tbs, tbslen, h.signature);
	if (r < 0)
		goto out;
	*ret = h;
out:
	free(tbs);
	return r;
}

int gmt_mac_enrollment_request(const char *enrollment_code, const char *method,
			       const char *target, const void *body, size_t bodylen,
			       int64_t now_ms, struct gmt_signed_headers *ret)
{
	struct gmt_signed_headers h;
	uint8_t mac[CRYPTO_SM3_LEN];
	char *tbs = NULL;
	size_t tbslen = 0;
	if (!enrollment_code || !*enrollment_code || !ret)
		return -EINVAL;
	int r = prepare_request(GMT_KEY_ID_ENROLLMENT, GMT_ALG_HMAC, method, target, body,
				bodylen, now_ms, &h, &tbs, &tbslen);
	if (r < 0)
		goto out;
	r = crypto_hmac_sm3(enrollment_code, strlen(enrollment_code), tbs, tbslen, mac);
	if (r < 0)
		goto out;
	r = put_b64(mac, sizeof(mac), h.signature);
	if (r < 0)
		goto out;
	*ret = h;
out:
	crypto_wipe(mac, sizeof(mac));
	free(tbs);
	return r;
}

/* Step 1 of §5: every header present and well formed. 0 or -EINVAL. */
static int parse_auth_headers(const struct gmt_auth_headers *h, struct parsed_auth *ret)
{
	struct parsed_auth p = {0};
	uint64_t ts = 0;
	if (!h->timestamp || !h->nonce || !h->key_id || !h->signature)
		return -EINVAL;
	if (chsm_parse_u64(h->timestamp, INT64_MAX, &ts) < 0)
		return -EINVAL;
	p.timestamp_ms = (int64_t)ts;

	size_t l = strlen(h->nonce);
	if (l < CHSM_NONCE_MIN_LEN || l > CHSM_NONCE_MAX_LEN ||
	    !chsm_str_charset(h->nonce, l, NONCE_EXTRA))
		return -EINVAL;

	l = strlen(h->key_id);
	if (l == 0 || l > KEY_ID_MAX_LEN || !chsm_str_charset(h->key_id, l, KEY_ID_EXTRA))
		return -EINVAL;

	if (!h->alg || strcmp(h->alg, GMT_ALG_SM2) == 0)
		p.alg = ALG_SM2;
	else if (strcmp(h->alg, GMT_ALG_HMAC) == 0)
		p.alg = ALG_HMAC;
	else
		return -EINVAL;
	/* HMAC-SM3 exactly when the key id is "enrollment". */
	if ((p.alg == ALG_HMAC) != (strcmp(h->key_id, GMT_KEY_ID_ENROLLMENT) == 0))
		return -EINVAL;

	if (p.alg == ALG_SM2) {
		if (decode_sig(h->signature, SM2_SIG_DER_MIN, CRYPTO_SM2_SIG_DER_MAX, p.sig,
			       &p.siglen) < 0)
			return -EINVAL;
	} else if (decode_sig(h->signature, CRYPTO_SM3_LEN, CRYPTO_SM3_LEN, p.sig, &p.siglen) <
		   0) {
		return -EINVAL;
	}

	if (h->idempotency_key) {
		l = strlen(h->idempotency_key);
		if (l == 0 || l > CHSM_IDEMPOTENCY_KEY_MAX_LEN ||
		    !chsm_str_charset(h->idempotency_key, l, IDEMPOTENCY_EXTRA))
			return -EINVAL;
	}
	*ret = p;
	return 0;
}

/* The code for a failure inside this process rather than in the request. */
static int internal_code(int err)
{
	return err == -ENOMEM ? GMT_E_INTERNAL : GMT_E_CRYPTO;
}

/* Step 2, SM2: a platform key is configured and the key id names it. */
static int check_platform_key(const struct gmt_verifier *v, const char *key_id)
{
	char fp[CRYPTO_SM3_HEX_LEN + 1];
	const char *expected = v->platform_fingerprint;
	if (!v->platform_key)
		return GMT_E_NO_PLATFORM_KEY;
	if (!expected) {
		int r = crypto_sm2_fingerprint(v->platform_key, fp);
		if (r < 0)
			return internal_code(r);
		expected = fp;
	}
	return strcmp(key_id, expected) == 0 ? GMT_OK : GMT_E_UNKNOWN_KEY_ID;
}

static bool enrollment_open(const struct gmt_verifier *v)
{
	return v->enrollment_open && v->enrollment_code && *v->enrollment_code &&
	       !v->platform_key;
}

/* Step 3: |ts - now| <= CHSM_AUTH_WINDOW_MS, without overflow. */
static bool within_window(int64_t ts, int64_t now)
{
	uint64_t diff = ts >= now ? (uint64_t)ts - (uint64_t)now : (uint64_t)now - (uint64_t)ts;
	return diff <= (uint64_t)CHSM_AUTH_WINDOW_MS;
}

/* Step 4, enrollment: HMAC-SM3 keyed by the code, compared in constant time. */
static int check_enrollment_mac(const struct gmt_verifier *v, const struct parsed_auth *p,
				const char *tbs, size_t tbslen, struct gmt_auth_result *res)
{
	uint8_t mac[CRYPTO_SM3_LEN];
	int code = GMT_OK;
	int r = crypto_hmac_sm3(v->enrollment_code, strlen(v->enrollment_code), tbs, tbslen, mac);
	if (r < 0) {
		code = internal_code(r);
		goto out;
	}
	if (p->siglen != sizeof(mac) || !crypto_memeq(mac, p->sig, sizeof(mac))) {
		res->enrollment_mac_bad = true;
		code = GMT_E_ENROLLMENT;
		goto out;
	}
	res->enrollment = true;
out:
	crypto_wipe(mac, sizeof(mac));
	return code;
}

/* Step 5: record the nonce; fail closed without a store. */
static int use_nonce(const struct gmt_verifier *v, const char *nonce, int64_t ts,
		     struct gmt_auth_result *res)
{
	if (!v->nonce_use)
		return GMT_E_INTERNAL;
	int r = v->nonce_use(v->nonce_ctx, nonce, ts);
	if (r < 0) {
		res->storage_failed = true;
		return GMT_E_STORAGE;
	}
	return r == 0 ? GMT_OK : GMT_E_NONCE_REPLAYED;
}

int gmt_verify_request(const struct gmt_auth_headers *h, const char *method, const char *target,
		       const void *body, size_t bodylen, const struct gmt_verifier *v,
		       struct gmt_auth_result *ret_result)
{
	struct gmt_auth_result res = {0};
	struct parsed_auth p;
	char *tbs = NULL;
	size_t tbslen = 0;
	int code, r;

	if (!h || !v || !method || !target || (!body && bodylen)) {
		code = GMT_E_INTERNAL;
		goto out;
	}
	/* 1. headers present and well formed */
	if (parse_auth_headers(h, &p) < 0 || !line_ok(method, false) || !line_ok(target, false)) {
		code = GMT_E_AUTH_HEADERS;
		goto out;
	}
	res.timestamp_ms = p.timestamp_ms;
	if (p.alg == ALG_HMAC && !v->route_allows_enrollment) {
		code = GMT_E_AUTH_HEADERS;
		goto out;
	}
	/* 2. the key */
	if (p.alg == ALG_SM2)
		code = check_platform_key(v, h->key_id);
	else
		code = enrollment_open(v) ? GMT_OK : GMT_E_ENROLLMENT;
	if (code != GMT_OK)
		goto out;
	/* 3. timestamp: within the window and above the restart floor */
	if (!within_window(p.timestamp_ms, v->now_ms) || p.timestamp_ms <= v->timestamp_floor_ms) {
		code = GMT_E_TIMESTAMP;
		goto out;
	}
	/* 4. signature or MAC */
	r = gmt_string_to_sign(method, target, h->timestamp, h->nonce, h->key_id, body, bodylen,
			       &tbs, &tbslen);
	if (r < 0) {
		code = internal_code(r);
		goto out;
	}
	if (p.alg == ALG_SM2) {
		r = crypto_sm2_verify(v->platform_key, NULL, tbs, tbslen, p.sig, p.siglen);
		code = r == 0 ? GMT_OK : r == -EBADMSG ? GMT_E_SIGNATURE : internal_code(r);
	} else {
		code = check_enrollment_mac(v, &p, tbs, tbslen, &res);
	}
	if (code != GMT_OK)
		goto out;
	/* 5. nonce, remembered only now */
	code = use_nonce(v, h->nonce, p.timestamp_ms, &res);
out:
	free(tbs);
	if (ret_result)
		*ret_result = res;
	return code;
}

int gmt_sign_response(const crypto_sm2_key *device_key, const char *request_nonce,
		      int http_status, const void *body, size_t bodylen,
		      char sig_b64[CHSM_SIGNATURE_B64_MAX + 1])
{
	char *msg = NULL;
	size_t len = 0;
	if (!sig_b64)
		return -EINVAL;
	int r = gmt_response_string(request_nonce, http_status, body, bodylen, &msg, &len);
	if (r < 0)
		return r;
	r = sign_b64(device_key, msg, len, sig_b64);
	free(msg);
	return r;
}

int gmt_verify_response(const crypto_sm2_key *device_key, const char *request_nonce,
			int http_status, const void *body, size_t bodylen, const char *sig_b64)
{
	uint8_t sig[CRYPTO_SM2_SIG_DER_MAX];
	size_t siglen = 0;
	char *msg = NULL;
	size_t len = 0;
	if (!device_key)
		return -EINVAL;
	int r = decode_sig(sig_b64, SM2_SIG_DER_MIN, CRYPTO_SM2_SIG_DER_MAX, sig, &siglen);
	if (r < 0)
		return -EINVAL;
	r = gmt_response_string(request_nonce, http_status, body, bodylen, &msg, &len);
	if (r < 0)
		return r;
	r = crypto_sm2_verify(device_key, NULL, msg, len, sig, siglen);
	free(msg);
	return r;
}

int gmt_verify_callback(const crypto_sm2_key *device_key, const struct gmt_auth_headers *h,
			const char *method, const char *target, const void *body, size_t bodylen)
{
	struct parsed_auth p;
	char fp[CRYPTO_SM3_HEX_LEN + 1];
	char *tbs = NULL;
	size_t tbslen = 0;
	if (!device_key || !h)
		return -EINVAL;
	if (parse_auth_headers(h, &p) < 0 || p.alg != ALG_SM2 || !line_ok(method, false) ||
	    !line_ok(target, false) || (!body && bodylen))
		return -EBADMSG;
	int r = crypto_sm2_fingerprint(device_key, fp);
	if (r < 0)
		return r;
	if (strcmp(h->key_id, fp) != 0)
		return -EBADMSG;
	r = gmt_string_to_sign(method, target, h->timestamp, h->nonce, h->key_id, body, bodylen,
			       &tbs, &tbslen);
	if (r < 0)
		return r;
	r = crypto_sm2_verify(device_key, NULL, tbs, tbslen, p.sig, p.siglen);
	free(tbs);
	return r;
}
