/*
 * fuzz_auth.c: the authentication headers of PROFILE.md §5 as the server
 * checks them (gmt_verify_request) and as a platform checks a callback
 * (gmt_verify_callback) and a response signature (gmt_verify_response).
 *
 * Input: byte 0 is flags (bit 0: the route allows enrollment; bit 1: the
 * enrollment is open instead of a platform key being set; bit 2: the
 * nonce store answers "replay"; bit 3: it fails), then lines ended by
 * '\n': X-GMT-Timestamp, X-GMT-Nonce, X-GMT-Key-Id, X-GMT-Signature-Alg,
 * X-GMT-Signature, X-GMT-Idempotency-Key (an empty line: header absent),
 * the method and the target; the rest is the body. The CHSM's clock is
 * the request's own timestamp when it parses (so that seeds signed with the
 * fixed platform key, or MACed with FUZZ_ENROLLMENT_CODE, verify), else 0.
 * Checks: the answer is a code of Appendix A's authentication group, OK,
 * or 5000/5001/5002; nonce_use runs at most once, and only on success or
 * replay.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "proto/auth.h"
#include "proto/codes.h"

static crypto_sm2_key *platform, *device;
static char platform_fp[CRYPTO_SM3_HEX_LEN + 1];

struct nonce_state {
	int answer;
	int calls;
};

static int nonce_use(void *ctx, const char *nonce, int64_t ts)
{
	struct nonce_state *n = ctx;
	n->calls++;
	return n->answer;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!platform) {
		platform = fuzz_key(FUZZ_KEY_PLATFORM);
		device = fuzz_key(FUZZ_KEY_DEVICE);
		if (crypto_sm2_fingerprint(platform, platform_fp) < 0)
			abort();
	}
	if (size < 1)
		return 0;
	uint8_t flags = data[0];
	/* A NUL-terminated copy, cut into lines in place. */
	char *buf = malloc(size);
	if (!buf)
		abort();
	memcpy(buf, data + 1, size - 1);
	buf[size - 1] = '\0';
	char *field[8] = {0};
	char *p = buf, *end = buf + size - 1;
	int nf = 0;
	for (; nf < 8 && p < end; nf++) {
		char *nl = memchr(p, '\n', (size_t)(end - p));
		if (!nl)
			break;
		*nl = '\0';
		field[nf] = p;
		p = nl + 1;
	}
	if (nf < 8) {
		free(buf);
		return 0;
	}
	const char *body = p;
	size_t bodylen = (size_t)(end - p);
	struct gmt_auth_headers h = {
		.timestamp = field[0][0] ? field[0] : NULL,
		.nonce = field[1][0] ? field[1] : NULL,
		.key_id = field[2][0] ? field[2] : NULL,
		.alg = field[3][0] ? field[3] : NULL,
		.signature = field[4][0] ? field[4] : NULL,
		.idempotency_key = field[5][0] ? field[5] : NULL,
	};
	int64_t now = 0;
	if (h.timestamp) {
		char *e;
		long long t = strtoll(h.timestamp, &e, 10);
		if (*e == '\0' && t >= 0)
			now = t;
	}
	struct nonce_state ns = {.answer = (flags & 8) ? -5 : (flags & 4) ? 1 : 0};
	bool open = flags & 2;
	struct gmt_verifier v = {
		.now_ms = now,
		.platform_key = open ? NULL : platform,
		.platform_fingerprint = open ? NULL : platform_fp,
		.route_allows_enrollment = flags & 1,
		.enrollment_open = open,
		.enrollment_code = open ? FUZZ_ENROLLMENT_CODE : NULL,
		.nonce_use = nonce_use,
		.nonce_ctx = &ns,
	};
	struct gmt_auth_result res;
	int rc = gmt_verify_request(&h, field[6], field[7], body, bodylen, &v, &res);
	if (!(rc == GMT_OK || (rc >= 2001 && rc <= 2007) || rc == GMT_E_INTERNAL ||
	      rc == GMT_E_STORAGE || rc == GMT_E_CRYPTO))
		abort();
	if (ns.calls > 1 || (ns.calls == 0 && rc == GMT_OK))
		abort();
	if (rc == GMT_OK && (res.enrollment != open || res.storage_failed))
		abort();

	/* The same headers as a callback signed by the device key, and the
	 * signature as a response signature. */
	(void)gmt_verify_callback(device, &h, field[6], field[7], body, bodylen);
	if (h.signature)
		(void)gmt_verify_response(device, h.nonce, 200, body, bodylen, h.signature);
	free(buf);
	return 0;
}
