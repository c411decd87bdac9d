/*
 * client.c: signed requests and verified responses (PROFILE.md §5, §6).
 *
 * Guarantees:
 *  - A request is signed over "/gmt0088/v1" + path, exactly the target the
 *    transport puts on the request line, and the body bytes it sends.
 *  - Before the first request, the device key is fetched from 7.4.1
 *    (devicePublicKey), and accepted only when its fingerprint equals the
 *    pinned one (if any), the X-GMT-Device-Key-Id header and the
 *    deviceKeyFingerprint field, and when that very response's signature
 *    verifies with it over the nonce the client sent.
 *  - Afterwards no response is returned unless its X-GMT-Device-Key-Id is
 *    that key's fingerprint and its X-GMT-Device-Signature verifies over
 *    the request's nonce, the HTTP status and the body.
 *  - The platform key is wiped when the client is freed.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "client/client_internal.h"
#include "common/util.h"
#include "proto/auth.h"
#include "proto/envelope.h"

#define FINGERPRINT_PATH "/auth/platform-key/fingerprint"
#define PLATFORM_KEY_PATH "/auth/platform-key"

enum auth_mode { AUTH_NONE, AUTH_PLATFORM, AUTH_ENROLLMENT };

void client_set_error(struct chsm_client *cl, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cl->last_error, sizeof(cl->last_error), fmt, ap);
	va_end(ap);
}

/* Copies the base URL without a trailing '/', after checking it is
 * "http(s)://authority" with nothing after the authority. */
static int parse_base_url(const char *url, char **ret)
{
	const char *rest;
	if (!url)
		return -EINVAL;
	if (strncmp(url, "https://", 8) == 0)
		rest = url + 8;
	else if (strncmp(url, "http://", 7) == 0)
		rest = url + 7;
	else
		return -EINVAL;
	size_t len = strlen(url), alen = strcspn(rest, "/?#");
	if (alen == 0 || len > CHSM_JSON_MAX_URL)
		return -EINVAL;
	if (rest[alen] != '\0' && strcmp(rest + alen, "/") != 0)
		return -EINVAL;
	if (!chsm_str_charset(rest, alen, ".-_:[]%@"))
		return -EINVAL;
	char *copy = strndup(url, (size_t)(rest - url) + alen);
	if (!copy)
		return -ENOMEM;
	*ret = copy;
	return 0;
}

/* Lowercase copy of a 64-hex-digit fingerprint into out. */
static int parse_fingerprint(const char *fp, char out[CRYPTO_SM3_HEX_LEN + 1])
{
	uint8_t raw[CRYPTO_SM3_LEN];
	if (!fp || strlen(fp) != CRYPTO_SM3_HEX_LEN ||
	    chsm_hex_decode(fp, CRYPTO_SM3_HEX_LEN, raw, sizeof(raw)) < 0)
		return -EINVAL;
	chsm_hex_encode(raw, sizeof(raw), out);
	return 0;
}

/* Loads an SM2 private key from a PEM file. */
static int load_private_key(const char *path, crypto_sm2_key **ret)
{
	char *pem = NULL;
	size_t len = 0;
	int r = chsm_read_file(path, CHSM_CLIENT_MAX_KEY_FILE, &pem, &len);
	if (r < 0)
		return r;
	r = crypto_sm2_load_private_pem(pem, len, ret);
	crypto_free_secret(pem, len);
	return r < 0 ? -EINVAL : 0;
}

int chsm_client_new(const struct chsm_client_options *opts, chsm_client **ret)
{
	struct chsm_client *cl = NULL;
	int r;
	if (!opts || !ret)
		return -EINVAL;
	cl = calloc(1, sizeof(*cl));
	if (!cl)
		return -ENOMEM;
	r = parse_base_url(opts->url, &cl->base_url);
	if (r < 0)
		goto fail;
	if (opts->device_fingerprint) {
		r = parse_fingerprint(opts->device_fingerprint, cl->pinned_fp);
		if (r < 0)
			goto fail;
		cl->pinned = true;
	}
	if (opts->cacert_path) {
		cl->cacert_path = strdup(opts->cacert_path);
		if (!cl->cacert_path) {
			r = -ENOMEM;
			goto fail;
		}
	}
	/* Plain http protects no request body (token secrets): only when asked. */
	if ((!cl->pinned && !cl->cacert_path && !opts->insecure) ||
	    (strncmp(cl->base_url, "http://", 7) == 0 && !opts->insecure)) {
		r = CHSM_CLIENT_E_UNTRUSTED;
		goto fail;
	}
	if (opts->connect_timeout_ms < 0 || opts->timeout_ms < 0) {
		r = -EINVAL;
		goto fail;
	}
	cl->connect_timeout_ms = opts->connect_timeout_ms ? opts->connect_timeout_ms
							  : CHSM_CLIENT_DEFAULT_CONNECT_TIMEOUT_MS;
	cl->timeout_ms = opts->timeout_ms ? opts->timeout_ms : CHSM_CLIENT_DEFAULT_TIMEOUT_MS;
	if (opts->platform_key_path) {
		r = load_private_key(opts->platform_key_path, &cl->platform_key);
		if (r < 0)
			goto fail;
	}
	r = transport_init(cl);
	if (r < 0)
		goto fail;
	*ret = cl;
	return 0;
fail:
	chsm_client_free(cl);
	return r;
}

void chsm_client_free(chsm_client *cl)
{
	if (!cl)
		return;
	transport_free(cl);
	crypto_sm2_key_free(cl->platform_key);
	crypto_sm2_key_free(cl->device_key);
	free(cl->base_url);
	free(cl->cacert_path);
	free(cl);
}

const char *chsm_client_last_error(const chsm_client *cl)
{
	return cl ? cl->last_error : "";
}

void chsm_client_response_free(struct chsm_client_response *r)
{
	if (!r)
		return;
	free(r->message);
	free(r->request_id);
	free(r->data);
	free(r->body);
	memset(r, 0, sizeof(*r));
}

/* A method is an upper-case token; a path starts with '/' and holds only
 * printable ASCII that needs no escaping on a request line. */
static bool valid_method(const char *m)
{
	size_t n = m ? strlen(m) : 0;
	if (n == 0 || n > 16)
		return false;
	for (size_t i = 0; i < n; i++)
		if (m[i] < 'A' || m[i] > 'Z')
			return false;
	return true;
}

static bool valid_path(const char *p)
{
	size_t n = p ? strlen(p) : 0;
	if (n == 0 || p[0] != '/' || n + strlen(GMT_API_BASE) > CHSM_MAX_TARGET_BYTES)
		return false;
	return chsm_str_charset(p, n, "/_.-~?=&%:+,;@!$'()*");
}

static bool valid_idempotency_key(const char *k)
{
	size_t n = strlen(k);
	return n >= 1 && n <= CHSM_IDEMPOTENCY_KEY_MAX_LEN && chsm_str_charset(k, n, "_.:-");
}

/* Sends one request with the given authentication and returns the raw
 * reply and the nonce it carried. */
static int exchange(struct chsm_client *cl, const char *method, const char *path,
		    const char *body, const char *idempotency_key, enum auth_mode auth,
		    const char *enrollment_code, char nonce[CHSM_NONCE_MAX_LEN + 1],
		    struct client_reply *ret)
{
	char target[CHSM_MAX_TARGET_BYTES + 1];
	char *url = NULL;
	struct gmt_signed_headers sh;
	size_t body_len = body ? strlen(body) : 0;
	char h_ts[64], h_nonce[96], h_kid[128], h_alg[64], h_sig[CHSM_SIGNATURE_B64_MAX + 32],
		h_idem[CHSM_IDEMPOTENCY_KEY_MAX_LEN + 32];
	const char *headers[12];
	size_t nh = 0;
	int r;

	snprintf(target, sizeof(target), "%s%s", GMT_API_BASE, path);
	size_t url_size = strlen(cl->base_url) + strlen(target) + 1;
	url = malloc(url_size);
	if (!url) {
		r = -ENOMEM;
		goto out;
	}
	snprintf(url, url_size, "%s%s", cl->base_url, target);
	memset(&sh, 0, sizeof(sh));
	if (auth == AUTH_PLATFORM)
		r = gmt_sign_request(cl->platform_key, method, target, body, body_len,
				     chsm_now_ms(), &sh);
	else if (auth == AUTH_ENROLLMENT)
		r = gmt_mac_enrollment_request(enrollment_code, method, target, body, body_len,
					       chsm_now_ms(), &sh);
	else
		r = gmt_new_nonce(sh.nonce);
	if (r < 0) {
		client_set_error(cl, "cannot authenticate the request: %s", crypto_strerror(r));
		goto out;
	}
	snprintf(h_nonce, sizeof(h_nonce), "%s: %s", GMT_HDR_NONCE, sh.nonce);
	headers[nh++] = h_nonce;
	if (auth != AUTH_NONE) {
		snprintf(h_ts, sizeof(h_ts), "%s: %s", GMT_HDR_TIMESTAMP, sh.timestamp);
		snprintf(h_kid, sizeof(h_kid), "%s: %s", GMT_HDR_KEY_ID, sh.key_id);
		snprintf(h_alg, sizeof(h_alg), "%s: %s", GMT_HDR_ALG, sh.alg);
		snprintf(h_sig, sizeof(h_sig), "%s: %s", GMT_HDR_SIGNATURE, sh.signature);
		headers[nh++] = h_ts;
		headers[nh++] = h_kid;
		headers[nh++] = h_alg;
		headers[nh++] = h_sig;
	}
	if (idempotency_key) {
		snprintf(h_idem, sizeof(h_idem), "%s: %s", GMT_HDR_IDEMPOTENCY, idempotency_key);
		headers[nh++] = h_idem;
	}
	/* A body is JSON; a bodiless PUT/POST/DELETE must not get libcurl's
	 * default form Content-Type. Never wait for "100 Continue". */
	headers[nh++] = body ? "Content-Type: application/json" : "Content-Type:";
	headers[nh++] = "Accept: application/json";
	headers[nh++] = "Expect:";
	headers[nh] = NULL;
	r = transport_exchange(cl, method, url, headers, body, body_len, ret);
	if (r == 0)
		memcpy(nonce, sh.nonce, sizeof(sh.nonce));
out:
	free(url);
	return r;
}

/* Checks that reply was signed by key (fingerprint fp) over nonce. */
static int verify_reply(struct chsm_client *cl, const crypto_sm2_key *key, const char *fp,
			const char *nonce, const struct client_reply *reply)
{
	const char *kid = reply->device_key_id;
	if (!kid || strcmp(kid, fp) != 0) {
		/* The header is the peer's text: shown only when it looks like a
		 * fingerprint, never raw control characters. */
		bool printable = kid && strlen(kid) == CRYPTO_SM3_HEX_LEN &&
				 chsm_str_charset(kid, CRYPTO_SM3_HEX_LEN, NULL);
		client_set_error(cl, "response names device key %s, expected %s",
				 printable ? kid : kid ? "(malformed)" : "(none)", fp);
		return CHSM_CLIENT_E_DEVICE_KEY;
	}
	if (!reply->device_signature) {
		client_set_error(cl, "response carries no single %s header",
				 GMT_HDR_DEVICE_SIGNATURE);
		return CHSM_CLIENT_E_DEVICE_SIGNATURE;
	}
	int r = gmt_verify_response(key, nonce, (int)reply->status, reply->body, reply->body_len,
				    reply->device_signature);
	if (r == -ENOMEM)
		return r;
	if (r < 0) {
		client_set_error(cl, "HTTP %ld response: %s does not verify", reply->status,
				 GMT_HDR_DEVICE_SIGNATURE);
		return CHSM_CLIENT_E_DEVICE_SIGNATURE;
	}
	return 0;
}

/* Turns a reply into a response: the envelope of §6 (code, message,
 * requestId, data) and a copy of the body. */
static int parse_reply(struct chsm_client *cl, const struct client_reply *reply,
		       struct chsm_client_response *ret)
{
	struct chsm_client_response resp = {0};
	json_t *data = NULL;
	/* One parse gives every member (a 7.2.3 body is 141 KB). */
	int r = gmt_envelope_parse_id(reply->body, reply->body_len, &resp.code, &resp.message,
				      &resp.request_id, &data);
	if (r == -ENOMEM)
		goto out;
	if (r < 0) {
		client_set_error(cl, "HTTP %ld response is not a response envelope",
				 reply->status);
		r = CHSM_CLIENT_E_BAD_RESPONSE;
		goto out;
	}
	r = -ENOMEM;
	if (data && !(resp.data = json_dumps(data, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(12))))
		goto out;
	if (!(resp.body = malloc(reply->body_len + 1)))
		goto out;
	memcpy(resp.body, reply->body, reply->body_len + 1);
	resp.body_len = reply->body_len;
	resp.http_status = (int)reply->status;
	*ret = resp;
	memset(&resp, 0, sizeof(resp));
	r = 0;
out:
	json_decref(data);
	chsm_client_response_free(&resp);
	return r;
}

/* Fetches 7.4.1, learns the device key from it and checks it (see the
 * guarantees at the top). On success cl->device_key is set and, when
 * ret_resp is not NULL, the verified 7.4.1 answer is returned. */
static int fetch_device_key(struct chsm_client *cl, struct chsm_client_response *ret_resp)
{
	struct client_reply reply = {0};
	struct chsm_client_response resp = {0};
	crypto_sm2_key *key = NULL;
	json_t *data = NULL;
	char nonce[CHSM_NONCE_MAX_LEN + 1], fp[CRYPTO_SM3_HEX_LEN + 1];
	int r = exchange(cl, "GET", FINGERPRINT_PATH, NULL, NULL, AUTH_NONE, NULL, nonce, &reply);
	if (r < 0)
		goto out;
	r = parse_reply(cl, &reply, &resp);
	if (r < 0)
		goto out;
	data = resp.data ? json_loads(resp.data, 0, NULL) : NULL;
	const char *pem = json_string_value(json_object_get(data, "devicePublicKey"));
	const char *claimed = json_string_value(json_object_get(data, "deviceKeyFingerprint"));
	if (resp.code != 0 || !pem) {
		/* Unverified text: the code only, not the peer's message. */
		client_set_error(cl, "the CHSM did not give its device key (code %d)", resp.code);
		r = CHSM_CLIENT_E_BAD_RESPONSE;
		goto out;
	}
	if (crypto_sm2_load_public_pem(pem, strlen(pem), &key) < 0 ||
	    crypto_sm2_fingerprint(key, fp) < 0) {
		client_set_error(cl, "devicePublicKey is not an SM2 public key");
		r = CHSM_CLIENT_E_BAD_RESPONSE;
		goto out;
	}
	if (cl->pinned && strcmp(fp, cl->pinned_fp) != 0) {
		client_set_error(cl, "device key %s is not the pinned %s", fp, cl->pinned_fp);
		r = CHSM_CLIENT_E_DEVICE_KEY;
		goto out;
	}
	if (claimed && strcmp(claimed, fp) != 0) {
		client_set_error(cl, "deviceKeyFingerprint is not the fingerprint %s of "
				 "devicePublicKey", fp);
		r = CHSM_CLIENT_E_DEVICE_KEY;
		goto out;
	}
	r = verify_reply(cl, key, fp, nonce, &reply);
	if (r < 0)
		goto out;
	cl->device_key = key;
	key = NULL;
	memcpy(cl->device_fp, fp, sizeof(fp));
	if (ret_resp) {
		*ret_resp = resp;
		memset(&resp, 0, sizeof(resp));
	}
out:
	json_decref(data);
	crypto_sm2_key_free(key);
	chsm_client_response_free(&resp);
	client_reply_free(&reply);
	return r;
}

/* Sends a request once the device key is known and returns the verified
 * response. */
static int request(struct chsm_client *cl, const char *method, const char *path,
		   const char *body, const char *idempotency_key, enum auth_mode auth,
		   const char *enrollment_code, struct chsm_client_response *ret)
{
	struct client_reply reply = {0};
	char nonce[CHSM_NONCE_MAX_LEN + 1];
	int r;

	cl->last_error[0] = '\0';
	if (!valid_method(method) || !valid_path(path) || (body && strcmp(method, "GET") == 0) ||
	    (idempotency_key && !valid_idempotency_key(idempotency_key))) {
		client_set_error(cl, "invalid method, path, body or idempotency key");
		return -EINVAL;
	}
	bool fingerprint_get = strcmp(method, "GET") == 0 && strcmp(path, FINGERPRINT_PATH) == 0;
	if (!cl->device_key) {
		/* The first answer to GET 7.4.1 is already the one asked for. */
		r = fetch_device_key(cl, fingerprint_get ? ret : NULL);
		if (r < 0 || fingerprint_get)
			return r;
	}
	if (auth == AUTH_PLATFORM && (!cl->platform_key || fingerprint_get))
		auth = AUTH_NONE;
	r = exchange(cl, method, path, body, idempotency_key, auth, enrollment_code, nonce, &reply);
	if (r < 0)
		goto out;
	r = verify_reply(cl, cl->device_key, cl->device_fp, nonce, &reply);
	if (r < 0)
		goto out;
	r = parse_reply(cl, &reply, ret);
out:
	client_reply_free(&reply);
	return r;
}

int chsm_client_request(chsm_client *cl, const char *method, const char *path, const char *body,
			const char *idempotency_key, struct chsm_client_response *ret)
{
	if (!cl || !ret)
		return -EINVAL;
	return request(cl, method, path, body, idempotency_key, AUTH_PLATFORM, NULL, ret);
}

int chsm_client_enroll(chsm_client *cl, const char *enrollment_code, const char *key_path,
		       struct chsm_client_response *ret)
{
	char *pem = NULL, *body = NULL;
	size_t pem_len = 0;
	json_t *obj = NULL;
	int r;
	if (!cl || !ret || !enrollment_code || !*enrollment_code)
		return -EINVAL;
	cl->last_error[0] = '\0';
	if (key_path)
		r = chsm_client_key_info(key_path, &pem, NULL);
	else if (cl->platform_key)
		r = crypto_sm2_public_pem(cl->platform_key, &pem, &pem_len);
	else
		r = CHSM_CLIENT_E_NO_KEY;
	if (r < 0)
		goto out;
	obj = json_pack("{s:s}", "publicKey", pem);
	body = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
	if (!body) {
		r = -ENOMEM;
		goto out;
	}
	r = request(cl, "PUT", PLATFORM_KEY_PATH, body, NULL, AUTH_ENROLLMENT, enrollment_code,
		    ret);
out:
	json_decref(obj);
	free(body);
	free(pem);
	return r;
}

int chsm_client_device_fingerprint(chsm_client *cl,
				   char ret_fingerprint[CHSM_CLIENT_FINGERPRINT_LEN + 1])
{
	if (!cl || !ret_fingerprint)
		return -EINVAL;
	if (!cl->device_key) {
		cl->last_error[0] = '\0';
		int r = fetch_device_key(cl, NULL);
		if (r < 0)
			return r;
	}
	memcpy(ret_fingerprint, cl->device_fp, sizeof(cl->device_fp));
	return 0;
}

static const struct {
	int err;
	const char *text;
} client_errors[] = {
	{CHSM_CLIENT_E_TRANSPORT, "cannot reach the CHSM"},
	{CHSM_CLIENT_E_DEVICE_SIGNATURE, "device signature invalid"},
	{CHSM_CLIENT_E_DEVICE_KEY, "device key does not match the pinned fingerprint"},
	{CHSM_CLIENT_E_UNTRUSTED,
	 "insecure connection refused: pin the device fingerprint or give a CA certificate, "
	 "use https, or allow insecure operation"},
	{CHSM_CLIENT_E_BAD_RESPONSE, "response is not a GM/T 0088 response"},
	{CHSM_CLIENT_E_NO_KEY, "no platform key"},
	{CHSM_CLIENT_E_DRIFT_REFUSED, "drift refused"},
	{CHSM_CLIENT_E_DRIFT_FAILED, "drift failed"},
	{CHSM_CLIENT_E_DRIFT_MISMATCH, "drift verification failed"},
	{CHSM_CLIENT_E_BAD_IMAGE, "not a readable image"},
};

const char *chsm_client_strerror(int err)
{
	for (size_t i = 0; i < sizeof(client_errors) / sizeof(client_errors[0]); i++)
		if (client_errors[i].err == err)
			return client_errors[i].text;
	if (err < 0 && err > -4096)
		return strerror(-err);
	return err == 0 ? "success" : "unknown error";
}
