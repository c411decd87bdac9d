/*
 * Unit tests of the request-framing guard (src/http/frame.c): a table of
 * byte streams, each fed whole, one byte at a time and in 7-byte pieces the
 * way the server feeds it, with what evhttp must then see.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <event2/buffer.h>

#include "http/frame.h"

static const struct http_frame_limits LIMITS = {
	.max_body = 16,
	.max_headers = 128,
	.drain_cap = 64,
};

#define SAME NULL /* evhttp sees the input unchanged */

struct frame_case {
	const char *name;
	const char *in;
	const char *out;          /* SAME, or exactly what evhttp sees */
	unsigned long refused;    /* frame.refused at the end */
	enum http_frame_mode mode;/* frame.mode at the end */
};

static const struct frame_case CASES[] = {
	{"get", "GET /a HTTP/1.1\r\nHost: x\r\n\r\n", SAME, 0, HTTP_FRAME_HEAD},
	{"bare LF lines", "GET /a HTTP/1.1\nHost: x\n\n", SAME, 0, HTTP_FRAME_HEAD},
	{"post at the limit",
	 "POST /p HTTP/1.1\r\nContent-Length: 16\r\n\r\n0123456789abcdef", SAME, 0, HTTP_FRAME_HEAD},
	{"get with a body", "GET /g HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", SAME, 0, HTTP_FRAME_HEAD},
	{"pipelined",
	 "GET /1 HTTP/1.1\r\n\r\nPUT /2 HTTP/1.1\r\ncontent-length: 2\r\n\r\nokDELETE /3 HTTP/1.0\r\n\r\n",
	 SAME, 0, HTTP_FRAME_HEAD},
	{"head ignores framing", "HEAD /h HTTP/1.1\r\nContent-Length: 5\r\n\r\n", SAME, 0,
	 HTTP_FRAME_HEAD},
	{"chunked at the limit",
	 "POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
	 "8\r\n01234567\r\n8 \r\n89abcdef\r\n0\r\nX-Trailer: 1\r\n\r\n",
	 SAME, 0, HTTP_FRAME_HEAD},
	{"content-length over the limit, drained first",
	 "POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: 17\r\nConnection: keep-alive\r\n\r\n"
	 "0123456789abcdefgGET /next HTTP/1.1\r\n\r\n",
	 "POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", 1,
	 HTTP_FRAME_DEAD},
	{"content-length over the drain cap: refused at once",
	 "PUT /huge HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\nabc",
	 "PUT /huge HTTP/1.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", 1, HTTP_FRAME_DEAD},
	{"expect 100-continue over the limit: refused at once",
	 "POST /e HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 20\r\n\r\n",
	 "POST /e HTTP/1.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", 1, HTTP_FRAME_DEAD},
	{"refusal after a good request",
	 "GET /ok HTTP/1.1\r\n\r\nPOST /no HTTP/1.1\r\nContent-Length: 40\r\n\r\n",
	 "GET /ok HTTP/1.1\r\n\r\n", 2, HTTP_FRAME_DRAIN_LENGTH},
	{"chunked over the limit",
	 "POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
	 "8\r\n01234567\r\n9\r\n89abcdefg\r\n0\r\n\r\nGET /x HTTP/1.1\r\n\r\n",
	 "POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n01234567\r\n0\r\n\r\n", 1,
	 HTTP_FRAME_DEAD},
	{"chunked over the drain cap",
	 "POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nffffffff\r\nabc",
	 "POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 1, HTTP_FRAME_DEAD},
	{"malformed chunk while draining",
	 "POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n20\r\n0123456789abcdef0123456789abcdefzz\r\n",
	 "POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 1, HTTP_FRAME_DEAD},
	/* Framing the guard leaves to evhttp. */
	{"folded header", "POST /f HTTP/1.1\r\nContent-Length:\r\n 40\r\n\r\n", SAME, 0,
	 HTTP_FRAME_PASS},
	{"two content-lengths",
	 "POST /f HTTP/1.1\r\nContent-Length: 40\r\nContent-Length: 1\r\n\r\n", SAME, 0,
	 HTTP_FRAME_PASS},
	{"content-length and chunked",
	 "POST /f HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", SAME, 0,
	 HTTP_FRAME_PASS},
	{"other transfer coding", "POST /f HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", SAME, 0,
	 HTTP_FRAME_PASS},
	{"signed content-length", "POST /f HTTP/1.1\r\nContent-Length: +40\r\n\r\n", SAME, 0,
	 HTTP_FRAME_PASS},
	{"unknown method", "BREW /pot HTTP/1.1\r\nContent-Length: 99\r\n\r\n", SAME, 0,
	 HTTP_FRAME_PASS},
	{"lower-case method", "post /p HTTP/1.1\r\nContent-Length: 99\r\n\r\n", SAME, 0,
	 HTTP_FRAME_PASS},
	{"http/2 version", "POST /p HTTP/2.0\r\nContent-Length: 99\r\n\r\n", SAME, 0,
	 HTTP_FRAME_PASS},
	{"no version", "GET /\r\n\r\n", SAME, 0, HTTP_FRAME_PASS},
	{"empty request line", "\r\nGET / HTTP/1.1\r\n\r\n", SAME, 0, HTTP_FRAME_PASS},
	{"other expectation",
	 "POST /e HTTP/1.1\r\nExpect: something\r\nContent-Length: 2\r\n\r\nab", SAME, 0,
	 HTTP_FRAME_PASS},
	{"chunk extension",
	 "POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\nabcd\r\n0\r\n\r\n", SAME, 0,
	 HTTP_FRAME_PASS},
	{"nul in a header", "POST /n HTTP/1.1\r\nX: a\0b\r\nContent-Length: 1\r\n\r\nz", SAME, 0,
	 HTTP_FRAME_PASS},
};

/* Feeds n bytes as the server does: body bytes may stay in evhttp's input,
 * the rest goes through hold. */
static void feed(struct http_frame *f, struct evbuffer *hold, struct evbuffer *out,
		 const char *p, size_t n)
{
	size_t k = evbuffer_get_length(hold) == 0 ? http_frame_absorb(f, n) : 0;
	assert_true(k <= n);
	assert_int_equal(evbuffer_add(out, p, k), 0);
	assert_int_equal(evbuffer_add(hold, p + k, n - k), 0);
	assert_int_equal(http_frame_process(f, hold, out), 0);
}

static size_t case_len(const struct frame_case *c)
{
	/* One case carries a NUL; its input ends at "z". */
	size_t n = strlen(c->in);
	if (strstr(c->name, "nul"))
		n += strlen(c->in + n + 1) + 1;
	return n;
}

static void run_case(const struct frame_case *c, size_t piece)
{
	struct http_frame f;
	struct evbuffer *hold = evbuffer_new(), *out = evbuffer_new();
	assert_non_null(hold);
	assert_non_null(out);
	assert_int_equal(http_frame_init(&f, &LIMITS), 0);
	size_t len = case_len(c);
	for (size_t off = 0; off < len; off += piece)
		feed(&f, hold, out, c->in + off, len - off < piece ? len - off : piece);

	const char *want = c->out ? c->out : c->in;
	size_t want_len = c->out ? strlen(c->out) : len;
	size_t got_len = evbuffer_get_length(out);
	const char *got = (const char *)evbuffer_pullup(out, -1);
	if (got_len != want_len || memcmp(got, want, want_len) != 0)
		fail_msg("%s (pieces of %zu): evhttp saw\n[%.*s]\nwanted\n[%s]", c->name, piece,
			 (int)got_len, got ? got : "", want);
	if (f.refused != c->refused || f.mode != c->mode)
		fail_msg("%s (pieces of %zu): refused %lu mode %d, wanted %lu and %d", c->name, piece,
			 f.refused, (int)f.mode, c->refused, (int)c->mode);
	http_frame_fini(&f);
	evbuffer_free(hold);
	evbuffer_free(out);
}

static void test_cases(void **state)
{
	static const size_t pieces[] = {1, 2, 7, 4096};
	for (size_t i = 0; i < sizeof(CASES) / sizeof(CASES[0]); i++)
		for (size_t j = 0; j < sizeof(pieces) / sizeof(pieces[0]); j++)
			run_case(&CASES[i], pieces[j]);
}

/* in_request spans a request from its first byte to its last, and the
 * request counter moves once per request. */
static void test_request_span(void **state)
{
	struct http_frame f;
	struct evbuffer *hold = evbuffer_new(), *out = evbuffer_new();
	assert_int_equal(http_frame_init(&f, &LIMITS), 0);
	assert_false(f.in_request);
	feed(&f, hold, out, "POST /a HTTP/1.1\r\n", 18);
	assert_true(f.in_request);
	assert_int_equal(f.requests, 1);
	assert_int_equal(evbuffer_get_length(out), 0); /* the head is held */
	feed(&f, hold, out, "Content-Length: 4\r\n\r\nab", 23);
	assert_true(f.in_request);
	assert_int_equal(evbuffer_get_length(out), 41); /* body bytes flow */
	feed(&f, hold, out, "cd", 2);
	assert_false(f.in_request);
	assert_int_equal(f.heads, 1);
	feed(&f, hold, out, "G", 1);
	assert_true(f.in_request);
	assert_int_equal(f.requests, 2);
	http_frame_fini(&f);
	http_frame_fini(&f); /* idempotent */
	evbuffer_free(hold);
	evbuffer_free(out);
}

/* A head that never ends is passed on once it exceeds twice the header
 * limit, for evhttp to refuse. */
static void test_endless_head(void **state)
{
	struct http_frame f;
	struct evbuffer *hold = evbuffer_new(), *out = evbuffer_new();
	assert_int_equal(http_frame_init(&f, &LIMITS), 0);
	feed(&f, hold, out, "GET / HTTP/1.1\r\n", 16);
	char line[64];
	memset(line, 'h', sizeof(line));
	for (int i = 0; i < 40 && f.mode == HTTP_FRAME_HEAD; i++)
		feed(&f, hold, out, line, sizeof(line));
	assert_int_equal(f.mode, HTTP_FRAME_PASS);
	assert_false(f.in_request);
	assert_int_equal(evbuffer_get_length(hold), 0);
	assert_true(evbuffer_get_length(out) > 2 * LIMITS.max_headers);
	http_frame_fini(&f);
	evbuffer_free(hold);
	evbuffer_free(out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cases),
		cmocka_unit_test(test_request_span),
		cmocka_unit_test(test_endless_head),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
