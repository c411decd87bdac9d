/*
 * auth.h: authentication of PROFILE.md §5, for both sides.
 *
 * The platform (and the CHSM, for callbacks) signs requests; the CHSM
 * verifies them and signs its responses; the platform verifies responses.
 * This module holds no state: replay protection is delegated to the caller
 * through gmt_verifier.nonce_use, so that the server can make it durable.
 * It never logs. Functions return 0 or a negative errno, except
 * gmt_verify_request, which returns a code of Appendix A.
 */
#ifndef CHSM_PROTO_AUTH_H
#define CHSM_PROTO_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/limits.h"
#include "crypto/crypto.h"

#define GMT_API_BASE              "/gmt0088/v1"
#define GMT_SIGN_PREFIX           "GMT0088-V1"
#define GMT_RESPONSE_PREFIX       "GMT0088-V1-RESPONSE"
#define GMT_KEY_ID_ENROLLMENT     "enrollment"
#define GMT_ALG_SM2               "SM2-SM3"
#define GMT_ALG_HMAC              "HMAC-SM3"

#define GMT_HDR_TIMESTAMP         "X-GMT-Timestamp"
#define GMT_HDR_NONCE             "X-GMT-Nonce"
#define GMT_HDR_KEY_ID            "X-GMT-Key-Id"
#define GMT_HDR_ALG               "X-GMT-Signature-Alg"
#define GMT_HDR_SIGNATURE         "X-GMT-Signature"
#define GMT_HDR_IDEMPOTENCY       "X-GMT-Idempotency-Key"
#define GMT_HDR_DEVICE_KEY_ID     "X-GMT-Device-Key-Id"
#define GMT_HDR_DEVICE_SIGNATURE  "X-GMT-Device-Signature"

/* The authentication headers of a request, as received: each NULL when the
 * header is absent. */
struct gmt_auth_headers {
	const char *timestamp;
	const char *nonce;
	const char *key_id;
	const char *alg;
	const char *signature;
	const char *idempotency_key;
};

/* Headers made by the signing side, ready to send. */
struct gmt_signed_headers {
	char timestamp[24];
	char nonce[CHSM_NONCE_MAX_LEN + 1];
	char key_id[CRYPTO_SM3_HEX_LEN + 1];
	char alg[16];
	char signature[CHSM_SIGNATURE_B64_MAX + 1];
};

/* Length of the nonces gmt_new_nonce makes. */
#define GMT_NONCE_LEN             32

/* The string to sign of §5 (lines joined by '\n', no final newline).
 * body may be NULL when bodylen is 0. Returns 0 and sets *ret (malloc'ed,
 * NUL-terminated) and *ret_len; -EINVAL when a field is NULL, empty or holds
 * a control character (which would make the string ambiguous). */
int gmt_string_to_sign(const char *method, const char *target, const char *timestamp,
		       const char *nonce, const char *key_id, const void *body, size_t bodylen,
		       char **ret, size_t *ret_len);

/* The response string of §5: prefix, nonce (may be NULL: empty line), HTTP
 * status, SM3 hex of the body. Returns 0 and sets *ret (malloc'ed) and
 * *ret_len; -EINVAL for a status outside 100..599 or a nonce holding a
 * control character. */
int gmt_response_string(const char *nonce, int http_status, const void *body, size_t bodylen,
			char **ret, size_t *ret_len);

/* Writes a fresh nonce of GMT_NONCE_LEN characters of [A-Za-z0-9_-] (each
 * uniformly distributed, from crypto_random), NUL-terminated, into out.
 * Returns 0 or the error of crypto_random. */
int gmt_new_nonce(char out[CHSM_NONCE_MAX_LEN + 1]);

/* Signs a request with an SM2 key pair (the platform key, or the device key
 * for callbacks) and the default signer ID: fills every header of *ret
 * (timestamp = now_ms, a fresh nonce, key id = the key's fingerprint, alg
 * SM2-SM3). Returns 0, or -EINVAL (no private key, negative time, bad
 * method/target) or another error of the crypto module. */
int gmt_sign_request(const crypto_sm2_key *key, const char *method, const char *target,
		     const void *body, size_t bodylen, int64_t now_ms,
		     struct gmt_signed_headers *ret);
/* Authenticates an enrollment request with HMAC-SM3 keyed by the code's
 * ASCII characters: fills *ret with key id "enrollment", alg "HMAC-SM3" and
 * the base64 MAC. Returns 0, -EINVAL (empty code, negative time, bad
 * method/target) or another error of the crypto module. */
int gmt_mac_enrollment_request(const char *enrollment_code, const char *method,
			       const char *target, const void *body, size_t bodylen,
			       int64_t now_ms, struct gmt_signed_headers *ret);

/* What the server knows when it checks a request. */
struct gmt_verifier {
	int64_t now_ms;                   /* the CHSM's clock */
	/* A timestamp at or below it is refused like one outside the window
	 * (2003): the restart floor of a server that keeps nonces in memory
	 * (0: none). */
	int64_t timestamp_floor_ms;
	const crypto_sm2_key *platform_key;   /* NULL: none configured */
	const char *platform_fingerprint;     /* its fingerprint, or NULL */
	bool route_allows_enrollment;     /* 7.4.2 only */
	bool enrollment_open;             /* a code exists, unused, unlocked,
					     and no platform key is set */
	const char *enrollment_code;      /* the open code, or NULL */
	/* Called only after the signature or MAC verified: records the nonce
	 * and returns 0 when it was fresh, 1 when it was seen before inside the
	 * window (replay), or a negative errno on a storage failure. */
	int (*nonce_use)(void *ctx, const char *nonce, int64_t timestamp_ms);
	void *nonce_ctx;
};

struct gmt_auth_result {
	bool enrollment;          /* authenticated with the enrollment code */
	bool enrollment_mac_bad;  /* the code was tried and was wrong: count it */
	bool storage_failed;      /* nonce_use failed: answer 5001 */
	int64_t timestamp_ms;
};

/* Checks a request in the order of §5 and returns GMT_OK or the code of the
 * first failure (2001..2007, or 5001 when the nonce store failed).
 * Rules beyond the profile's list:
 *  - Well formed (else 2001): X-GMT-Timestamp only decimal digits, at most
 *    INT64_MAX; X-GMT-Nonce 16..64 of [A-Za-z0-9_-]; X-GMT-Key-Id 1..64 of
 *    [A-Za-z0-9_-]; X-GMT-Signature strict base64 of at most
 *    CHSM_SIGNATURE_B64_MAX characters decoding to 8..72 bytes (SM2 DER) or
 *    exactly 32 bytes (HMAC-SM3); X-GMT-Idempotency-Key, when present,
 *    1..64 of [A-Za-z0-9_.:-]; method and target without control
 *    characters.
 *  - X-GMT-Signature-Alg absent means SM2-SM3; any other value than the two
 *    algorithms is 2001.
 *  - HMAC-SM3 requires key id "enrollment" and vice versa (else 2001);
 *    HMAC-SM3 on a route that does not allow enrollment is 2001.
 *  - For a route that allows enrollment, an SM2 request is checked as a
 *    platform request (key rotation), an HMAC-SM3 one as enrollment.
 *  - The enrollment is open only when v->enrollment_open, a non-empty
 *    v->enrollment_code and no v->platform_key (else 2007).
 *  - A timestamp at or below v->timestamp_floor_ms is 2003 (step 3).
 *  - A v without nonce_use, or NULL arguments, give 5000; a failure inside
 *    the crypto module gives 5002 (5000 when out of memory).
 *  - nonce_use is called only after the signature or MAC verified, at most
 *    once; a positive answer is a replay (2004), a negative one 5001.
 * *ret_result is always written (when not NULL): enrollment is set once an
 * enrollment MAC verified, enrollment_mac_bad when it did not, storage_failed
 * when nonce_use failed, timestamp_ms once the timestamp parsed. */
int gmt_verify_request(const struct gmt_auth_headers *h, const char *method, const char *target,
		       const void *body, size_t bodylen, const struct gmt_verifier *v,
		       struct gmt_auth_result *ret_result);

/* Signs the response string of §5 with the device key (default signer ID):
 * writes the base64 DER signature, NUL-terminated, into sig_b64. Returns 0,
 * -EINVAL (no private key, bad status or nonce) or a crypto error. */
int gmt_sign_response(const crypto_sm2_key *device_key, const char *request_nonce,
		      int http_status, const void *body, size_t bodylen,
		      char sig_b64[CHSM_SIGNATURE_B64_MAX + 1]);
/* Verifies a response signature: 0, -EBADMSG, or -EINVAL (malformed). */
int gmt_verify_response(const crypto_sm2_key *device_key, const char *request_nonce,
			int http_status, const void *body, size_t bodylen, const char *sig_b64);

/* Verifies a signed callback (§7) as a platform would: headers well formed
 * (as for gmt_verify_request), alg SM2-SM3, key id equal to the device
 * fingerprint, signature valid. No timestamp or nonce policy (the receiver
 * de-duplicates by taskId). Returns 0, -EBADMSG when any of these fails, or
 * -ENOMEM/-EIO on an internal failure. */
int gmt_verify_callback(const crypto_sm2_key *device_key, const struct gmt_auth_headers *h,
			const char *method, const char *target, const void *body, size_t bodylen);

#endif
