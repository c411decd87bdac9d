/* Unit tests of the VSM protocol codec: frames round trip, and every
 * malformed header or payload is refused without reading past the end. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "vsmp/vsmp.h"

static void test_roundtrip(void **state)
{
	struct vsmp_writer w;
	vsmp_writer_begin(&w, VSMP_INTERNAL_SIGN | VSMP_RESPONSE, 77, VSMP_SDR_OK);
	vsmp_put_u32(&w, 5);
	vsmp_put_u64(&w, 0x0102030405060708ULL);
	vsmp_put_bytes(&w, "abc", 3);
	vsmp_put_bytes(&w, NULL, 0);
	assert_int_equal(vsmp_writer_end(&w), 0);
	assert_int_equal(w.len, VSMP_HEADER_LEN + 4 + 8 + 7 + 4);
	static const uint8_t head[] = {0x56, 0x4d, 0x50, 0x31, 0x80, 0x40, 0, 0, 0, 0, 0, 77, 0, 0, 0, 0, 0, 0, 0, 23};
	assert_memory_equal(w.buf, head, sizeof(head));

	struct vsmp_header h;
	assert_int_equal(vsmp_header_decode(w.buf, VSMP_MAX_PAYLOAD, &h), 0);
	assert_int_equal(h.type, VSMP_INTERNAL_SIGN | VSMP_RESPONSE);
	assert_int_equal(h.request_id, 77);
	assert_int_equal(h.length, 23);
	struct vsmp_reader r;
	vsmp_reader_init(&r, w.buf + VSMP_HEADER_LEN, h.length);
	assert_int_equal(vsmp_get_u32(&r), 5);
	assert_true(vsmp_get_u64(&r) == 0x0102030405060708ULL);
	size_t n;
	const uint8_t *p = vsmp_get_bytes(&r, 3, &n);
	assert_int_equal(n, 3);
	assert_memory_equal(p, "abc", 3);
	p = vsmp_get_bytes(&r, 10, &n);
	assert_non_null(p);
	assert_int_equal(n, 0);
	assert_int_equal(vsmp_reader_finish(&r), 0);
	vsmp_writer_free(&w);
}

static void test_bad_headers(void **state)
{
	uint8_t good[VSMP_HEADER_LEN] = {0x56, 0x4d, 0x50, 0x31, 0, 0x10, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 2, 0};
	struct vsmp_header h;
	assert_int_equal(vsmp_header_decode(good, 512, &h), 0);
	static const struct {
		size_t off;
		uint8_t val;
	} mutations[] = {{0, 0x57}, {3, 0x32}, {6, 1}, {7, 1}, {18, 3}, {16, 1}};
	for (size_t i = 0; i < sizeof(mutations) / sizeof(mutations[0]); i++) {
		uint8_t b[VSMP_HEADER_LEN];
		memcpy(b, good, sizeof(b));
		b[mutations[i].off] = mutations[i].val;
		assert_int_equal(vsmp_header_decode(b, 512, &h), -EPROTO);
	}
}

static void test_bad_payloads(void **state)
{
	static const struct {
		uint8_t bytes[12];
		size_t len;
	} cases[] = {
		{{0, 0, 0}, 3},                       /* u32 cut short */
		{{0, 0, 0, 4, 'a', 'b'}, 6},          /* bytes longer than the payload */
		{{0, 0, 0, 9, 1, 2, 3, 4, 5, 6, 7, 8}, 12}, /* bytes over the maximum */
		{{0, 0, 0, 1, 'a', 'x'}, 6},          /* a byte left over */
		{{0xff, 0xff, 0xff, 0xff}, 4},        /* a huge claimed length */
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct vsmp_reader r;
		size_t n = 99;
		vsmp_reader_init(&r, cases[i].bytes, cases[i].len);
		(void)vsmp_get_bytes(&r, 8, &n);
		assert_int_equal(vsmp_reader_finish(&r), -EPROTO);
		/* once failed, reads return zeros */
		if (r.failed)
			assert_int_equal(vsmp_get_u32(&r), 0);
	}
}

static void test_proofs(void **state)
{
	uint8_t secret[16] = {1}, sn[VSMP_NONCE_LEN] = {2}, cn[VSMP_NONCE_LEN] = {3};
	uint8_t a[VSMP_PROOF_LEN], b[VSMP_PROOF_LEN], c[VSMP_PROOF_LEN];
	assert_int_equal(vsmp_client_proof(secret, 16, sn, cn, (const uint8_t *)"t1", 2, a), 0);
	assert_int_equal(vsmp_server_proof(secret, 16, sn, cn, (const uint8_t *)"t1", 2, b), 0);
	assert_memory_not_equal(a, b, VSMP_PROOF_LEN);
	secret[0] = 9;
	assert_int_equal(vsmp_client_proof(secret, 16, sn, cn, (const uint8_t *)"t1", 2, c), 0);
	assert_memory_not_equal(a, c, VSMP_PROOF_LEN);
}

static void test_request_types(void **state)
{
	assert_true(vsmp_request_known(VSMP_AUTH));
	assert_true(vsmp_request_known(VSMP_KEY_SET_PASSWORD));
	assert_false(vsmp_request_known(VSMP_HELLO));
	assert_false(vsmp_request_known(VSMP_AUTH | VSMP_RESPONSE));
	assert_false(vsmp_request_known(0x0999));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip),   cmocka_unit_test(test_bad_headers),
		cmocka_unit_test(test_bad_payloads), cmocka_unit_test(test_proofs),
		cmocka_unit_test(test_request_types),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
