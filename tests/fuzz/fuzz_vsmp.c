/*
 * fuzz_vsmp.c: the codec of the VSM service protocol (src/vsmp) as both
 * ends use it: a header decoded with either payload limit, then the
 * payload read through a reader by a script of field reads.
 *
 * Input: 20 header bytes; one byte, the number of reads (at most 64); that
 * many script bytes (bits 0-1: u32, u64 or bytes; for bytes, the maximum
 * length is a table entry picked by the upper bits); the rest is the
 * payload. Checks: a failed reader yields zeros/NULL and never recovers,
 * and finish reports failure exactly when a read failed or bytes are left.
 */
#include <stdlib.h>
#include <string.h>

#include "vsmp/vsmp.h"

static const size_t MAXES[] = {0, 1, VSMP_NONCE_LEN, VSMP_MAX_TOKEN_ID, VSMP_POINT_LEN, 255,
			       65536, VSMP_MAX_PAYLOAD};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < VSMP_HEADER_LEN + 1)
		return 0;
	struct vsmp_header h;
	(void)vsmp_header_decode(data, VSMP_MAX_PAYLOAD_PREAUTH, &h);
	if (vsmp_header_decode(data, VSMP_MAX_PAYLOAD, &h) == 0 && h.length > VSMP_MAX_PAYLOAD)
		abort();
	(void)vsmp_request_known((uint16_t)(data[4] << 8 | data[5]));
	size_t nops = data[VSMP_HEADER_LEN] % 65;
	data += VSMP_HEADER_LEN + 1;
	size -= VSMP_HEADER_LEN + 1;
	if (size < nops)
		return 0;
	const uint8_t *ops = data;
	data += nops;
	size -= nops;
	/* A copy of exactly the payload's size, so ASan sees any overread. */
	uint8_t *payload = malloc(size ? size : 1);
	if (!payload)
		abort();
	memcpy(payload, data, size);
	struct vsmp_reader r;
	vsmp_reader_init(&r, payload, size);
	size_t consumed = 0;
	bool failed = false;
	for (size_t i = 0; i < nops; i++) {
		size_t len = 0;
		switch (ops[i] & 3) {
		case 0:
			if (vsmp_get_u32(&r) != 0 && failed)
				abort();
			if (!failed && consumed + 4 <= size)
				consumed += 4;
			else
				failed = true;
			break;
		case 1:
			if (vsmp_get_u64(&r) != 0 && failed)
				abort();
			if (!failed && consumed + 8 <= size)
				consumed += 8;
			else
				failed = true;
			break;
		default: {
			const uint8_t *p = vsmp_get_bytes(&r, MAXES[(ops[i] >> 2) % 8], &len);
			if (p) {
				if (failed)
					abort();
				volatile uint8_t sum = 0;
				for (size_t k = 0; k < len; k++)
					sum ^= p[k];
				(void)sum;
				consumed += 4 + len;
			} else if (len != 0) {
				abort();
			} else {
				failed = true;
			}
		}
		}
		if (r.failed != failed)
			abort();
	}
	bool ok = vsmp_reader_finish(&r) == 0;
	if (ok != (!failed && consumed == size))
		abort();
	free(payload);
	return 0;
}
