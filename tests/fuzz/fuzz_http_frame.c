/*
 * fuzz_http_frame.c: the HTTP request-framing guard (src/http/frame.c)
 * over an arbitrary byte stream, fed the way the server's input callback
 * feeds it (bytes arrive at the end of evhttp's input; what is not absorbed
 * moves into hold; http_frame_process passes on what evhttp may see).
 *
 * Input: byte 0 picks the limits (max_body, max_headers, drain_cap),
 * byte 1 the size of the pieces the stream arrives in (0: all at once),
 * the rest is the stream. Checks, besides the sanitizers: the guard never
 * fails on memory it has, `refused` never names a request it did not see,
 * and once refused (DEAD) it passes nothing more on.
 */
#include <stdint.h>
#include <stdlib.h>

#include <event2/buffer.h>

#include "http/frame.h"

static const size_t BODIES[] = {0, 1, 16, 1024, 1024 * 1024};
static const size_t HEADERS[] = {64, 512, 16 * 1024};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	struct http_frame_limits lim = {
		.max_body = BODIES[data[0] % 5],
		.max_headers = HEADERS[(data[0] / 5) % 3],
		.drain_cap = (data[0] & 0x80) ? 8 : 64 * 1024,
	};
	size_t piece = data[1] ? data[1] : size;
	data += 2;
	size -= 2;
	struct http_frame f;
	struct evbuffer *input = evbuffer_new(), *hold = evbuffer_new(), *tail = evbuffer_new();
	if (!input || !hold || !tail || http_frame_init(&f, &lim) < 0)
		abort();
	for (size_t off = 0; off < size;) {
		size_t n = size - off < piece ? size - off : piece;
		evbuffer_add(input, data + off, n);
		off += n;
		bool dead = f.mode == HTTP_FRAME_DEAD;
		size_t before = evbuffer_get_length(input) - n;
		size_t fresh = n;
		if (evbuffer_get_length(hold) == 0)
			fresh -= http_frame_absorb(&f, fresh);
		if (fresh > 0) {
			/* take_tail of server.c: the last fresh bytes into hold. */
			size_t keep = evbuffer_get_length(input) - fresh;
			evbuffer_remove_buffer(input, tail, keep);
			evbuffer_add_buffer(hold, input);
			evbuffer_add_buffer(input, tail);
			if (http_frame_process(&f, hold, input) < 0)
				abort();
		}
		if (dead && evbuffer_get_length(input) != before)
			abort(); /* passed bytes on after a refusal */
		if (f.refused > f.heads + 1 || f.heads > f.requests)
			abort();
		/* evhttp reads everything it was given. */
		evbuffer_drain(input, evbuffer_get_length(input));
	}
	http_frame_fini(&f);
	evbuffer_free(input);
	evbuffer_free(hold);
	evbuffer_free(tail);
	return 0;
}
