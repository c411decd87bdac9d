/* Unit tests of the VSM protocol codec: frames round trip, and every
 * malformed header or payload is refused without reading past the end. */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
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

/* ---- the input buffer ---- */

/* A DEVICE_INFO frame with request id id and a payload of len bytes of
 * fill into out; returns its size. */
static size_t make_frame(uint8_t *out, uint32_t id, size_t len, uint8_t fill)
{
	struct vsmp_writer w;
	vsmp_writer_begin(&w, VSMP_DEVICE_INFO, id, 0);
	assert_int_equal(vsmp_writer_end(&w), 0);
	memcpy(out, w.buf, VSMP_HEADER_LEN);
	vsmp_writer_free(&w);
	out[16] = (uint8_t)(len >> 24), out[17] = (uint8_t)(len >> 16);
	out[18] = (uint8_t)(len >> 8), out[19] = (uint8_t)len;
	memset(out + VSMP_HEADER_LEN, fill, len);
	return VSMP_HEADER_LEN + len;
}

/* Feeds bytes as a read would: into vsmp_in_space, at most chunk at once. */
static void feed(struct vsmp_in *in, const uint8_t *p, size_t n)
{
	uint8_t *dst;
	size_t room;
	assert_int_equal(vsmp_in_space(in, &dst, &room), 0);
	assert_true(room >= n);
	memcpy(dst, p, n);
	vsmp_in_commit(in, n);
}

/* True when the bytes [from, to) of the buffer are all zero. */
static bool wiped(const struct vsmp_in *in, size_t from, size_t to)
{
	for (size_t i = from; i < to; i++)
		if (in->buf[i])
			return false;
	return true;
}

static void test_in_partial(void **state)
{
	uint8_t f[VSMP_HEADER_LEN + 40];
	size_t n = make_frame(f, 9, 40, 0xA5);
	struct vsmp_in in = {0};
	struct vsmp_header h;
	uint8_t *payload;
	/* Byte by byte: no header before 20 bytes, no payload before all. */
	for (size_t i = 0; i < n; i++) {
		int hr = vsmp_in_header(&in, 512, &h);
		assert_int_equal(hr, i < VSMP_HEADER_LEN ? 0 : 1);
		if (hr > 0)
			assert_int_equal(vsmp_in_payload(&in, &h, &payload), 0);
		feed(&in, f + i, 1);
	}
	assert_int_equal(vsmp_in_header(&in, 512, &h), 1);
	assert_int_equal(h.request_id, 9);
	assert_int_equal(h.length, 40);
	assert_int_equal(vsmp_in_payload(&in, &h, &payload), 1);
	assert_memory_equal(payload, f + VSMP_HEADER_LEN, 40);
	vsmp_in_consume(&in, &h);
	assert_int_equal(vsmp_in_buffered(&in), 0);
	assert_true(wiped(&in, 0, n));
	assert_int_equal(vsmp_in_header(&in, 512, &h), 0);
	vsmp_in_free(&in);
	assert_null(in.buf);
}

static void test_in_several(void **state)
{
	/* Three frames and the first 5 bytes of a fourth in one read. */
	uint8_t all[4 * (VSMP_HEADER_LEN + 64)];
	size_t n = 0;
	n += make_frame(all + n, 1, 0, 0);
	n += make_frame(all + n, 2, 64, 0x11);
	n += make_frame(all + n, 3, 7, 0x22);
	size_t whole = n;
	n += make_frame(all + n, 4, 16, 0x33);
	struct vsmp_in in = {0};
	struct vsmp_header h;
	uint8_t *payload;
	feed(&in, all, whole + 5);
	static const uint32_t lens[] = {0, 64, 7};
	static const uint8_t fills[] = {0, 0x11, 0x22};
	for (uint32_t i = 0; i < 3; i++) {
		assert_int_equal(vsmp_in_header(&in, 512, &h), 1);
		assert_int_equal(h.request_id, i + 1);
		assert_int_equal(h.length, lens[i]);
		assert_int_equal(vsmp_in_payload(&in, &h, &payload), 1);
		for (uint32_t k = 0; k < lens[i]; k++)
			assert_int_equal(payload[k], fills[i]);
		size_t at = in.start;
		vsmp_in_consume(&in, &h);
		assert_true(wiped(&in, at, at + VSMP_HEADER_LEN + lens[i]));
	}
	assert_int_equal(vsmp_in_buffered(&in), 5);
	assert_int_equal(vsmp_in_header(&in, 512, &h), 0);
	/* The rest of the fourth frame. */
	feed(&in, all + whole + 5, n - whole - 5);
	assert_int_equal(vsmp_in_header(&in, 512, &h), 1);
	assert_int_equal(h.request_id, 4);
	assert_int_equal(vsmp_in_payload(&in, &h, &payload), 1);
	assert_memory_equal(payload, all + whole + VSMP_HEADER_LEN, 16);
	vsmp_in_consume(&in, &h);
	assert_int_equal(vsmp_in_buffered(&in), 0);
	vsmp_in_free(&in);
}

static void test_in_oversized(void **state)
{
	uint8_t f[VSMP_HEADER_LEN];
	make_frame(f, 1, 0, 0);
	struct vsmp_in in = {0};
	struct vsmp_header h;
	uint8_t *payload;
	/* 513 bytes against a limit of 512: refused, nothing grows. */
	f[18] = 2, f[19] = 1;
	feed(&in, f, sizeof(f));
	assert_int_equal(vsmp_in_header(&in, 512, &h), -EPROTO);
	assert_int_equal(in.cap, VSMP_IN_INITIAL);
	vsmp_in_free(&in);
	/* 4 GiB - 1 against no limit: the payload is still refused. */
	memset(f + 16, 0xff, 4);
	feed(&in, f, sizeof(f));
	assert_int_equal(vsmp_in_header(&in, UINT32_MAX, &h), 1);
	assert_int_equal(vsmp_in_payload(&in, &h, &payload), -EPROTO);
	assert_int_equal(in.cap, VSMP_IN_INITIAL);
	/* The largest frame allowed fits exactly. */
	h.length = VSMP_MAX_PAYLOAD;
	assert_int_equal(vsmp_in_payload(&in, &h, &payload), 0);
	assert_int_equal(in.cap, VSMP_HEADER_LEN + (size_t)VSMP_MAX_PAYLOAD);
	vsmp_in_free(&in);
}

/* A frame larger than the buffer, arriving behind a consumed one: the
 * rest is moved to the front (the old place wiped) and the buffer grows. */
static void test_in_grow_and_full(void **state)
{
	size_t big = 3 * VSMP_IN_INITIAL;
	uint8_t *all = malloc(2 * VSMP_HEADER_LEN + 100 + big);
	assert_non_null(all);
	size_t first = make_frame(all, 1, 100, 0x44);
	size_t second = make_frame(all + first, 2, big, 0x55);
	struct vsmp_in in = {0};
	struct vsmp_header h;
	uint8_t *payload, *dst;
	size_t room;
	feed(&in, all, first + 30);
	assert_int_equal(vsmp_in_header(&in, VSMP_MAX_PAYLOAD, &h), 1);
	assert_int_equal(vsmp_in_payload(&in, &h, &payload), 1);
	vsmp_in_consume(&in, &h);
	assert_int_equal(vsmp_in_header(&in, VSMP_MAX_PAYLOAD, &h), 1);
	assert_int_equal(h.length, big);
	/* Without asking for the payload, the buffer fills (moving the frame
	 * to the front once, wiping its old place) and then stops. */
	size_t off = 30;
	int r, rounds = 0;
	while ((r = vsmp_in_space(&in, &dst, &room)) == 0) {
		assert_true(++rounds <= 2);
		if (rounds == 2) /* after the move */
			assert_true(wiped(&in, in.end, in.cap));
		memcpy(dst, all + first + off, room);
		vsmp_in_commit(&in, room);
		off += room;
	}
	assert_int_equal(r, -ENOBUFS);
	assert_int_equal(rounds, 2);
	assert_int_equal(in.start, 0);
	assert_int_equal(in.end, VSMP_IN_INITIAL);
	assert_int_equal(vsmp_in_payload(&in, &h, &payload), 0);
	assert_true(in.cap >= VSMP_HEADER_LEN + big);
	assert_memory_equal(in.buf, all + first, off);
	while (off < second) {
		assert_int_equal(vsmp_in_space(&in, &dst, &room), 0);
		size_t k = room < second - off ? room : second - off;
		memcpy(dst, all + first + off, k);
		vsmp_in_commit(&in, k);
		off += k;
	}
	assert_int_equal(vsmp_in_payload(&in, &h, &payload), 1);
	assert_memory_equal(payload, all + first + VSMP_HEADER_LEN, big);
	vsmp_in_consume(&in, &h);
	assert_true(wiped(&in, 0, in.cap));
	vsmp_in_free(&in);
	free(all);
}

static void test_writer_restart(void **state)
{
	struct vsmp_writer w = {0};
	vsmp_writer_restart(&w, VSMP_DEVICE_INFO | VSMP_RESPONSE, 5, 0);
	vsmp_put_bytes(&w, "secret", 6);
	assert_int_equal(vsmp_writer_end(&w), 0);
	uint8_t *buf = w.buf;
	size_t old = w.len;
	vsmp_writer_restart(&w, VSMP_GENERATE_RANDOM | VSMP_RESPONSE, 6, VSMP_SDR_RANDERR);
	assert_ptr_equal(w.buf, buf);
	for (size_t i = VSMP_HEADER_LEN; i < old; i++)
		assert_int_equal(w.buf[i], 0);
	assert_int_equal(vsmp_writer_end(&w), 0);
	struct vsmp_header h;
	assert_int_equal(vsmp_header_decode(w.buf, 0, &h), 0);
	assert_int_equal(h.type, VSMP_GENERATE_RANDOM | VSMP_RESPONSE);
	assert_int_equal(h.request_id, 6);
	assert_int_equal(h.status, VSMP_SDR_RANDERR);
	assert_int_equal(h.length, 0);
	/* A reserved buffer takes the field without growing again. */
	static uint8_t big[100000];
	vsmp_writer_reserve(&w, 4 + sizeof(big));
	buf = w.buf;
	assert_true(w.cap >= w.len + 4 + sizeof(big));
	vsmp_put_bytes(&w, big, sizeof(big));
	assert_ptr_equal(w.buf, buf);
	assert_int_equal(vsmp_writer_end(&w), 0);
	vsmp_writer_free(&w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip),   cmocka_unit_test(test_bad_headers),
		cmocka_unit_test(test_bad_payloads), cmocka_unit_test(test_proofs),
		cmocka_unit_test(test_request_types), cmocka_unit_test(test_in_partial),
		cmocka_unit_test(test_in_several),    cmocka_unit_test(test_in_oversized),
		cmocka_unit_test(test_in_grow_and_full), cmocka_unit_test(test_writer_restart),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
