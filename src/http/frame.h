/*
 * frame.h: the request-framing guard of the HTTP server (internal to
 * src/http).
 *
 * libevent 2.1's evhttp answers a body over its limit with its own HTML 413
 * page and never shows the request to the application, but PROFILE.md §2
 * wants a signed JSON envelope (1006) from the handler. The guard sits in
 * front of evhttp on each connection: bytes arrive in `hold`, and the guard
 * passes on to evhttp's input only what evhttp may see. It follows HTTP/1.1
 * framing exactly as evhttp 2.1 parses it (lines end at "\n" or "\r\n";
 * GET, POST, PUT, DELETE, OPTIONS, PATCH and CONNECT may carry a body;
 * Transfer-Encoding "chunked", else Content-Length) and guarantees:
 *
 * - evhttp sees a request head only once it is complete, and a request with
 *   a body over max_body never reaches evhttp as sent. The guard reads and
 *   discards the body (up to drain_cap bytes, so the client can read the
 *   answer; at once if the client waits on "Expect: 100-continue"), then
 *   hands evhttp a stand-in: for Content-Length the same request line and
 *   headers with "Content-Length: 0" and "Connection: close" in place of
 *   the framing; for chunked bodies the chunks within the limit and then a
 *   last chunk. `refused` then holds the number of that request (counting
 *   the heads passed on, from 1), which is how the server knows which
 *   request evhttp delivers is the refused one. Everything after a refusal
 *   is discarded.
 * - Body bytes within the limit flow through as they arrive; nothing but a
 *   partial head or a partial chunk-size/trailer line is held back.
 * - A request whose framing the guard cannot be sure to read the way evhttp
 *   does (obsolete line folding, several Content-Length or
 *   Transfer-Encoding headers, both at once, an unknown method or version,
 *   an odd chunk-size line, ...) switches the connection to pass-through:
 *   evhttp then applies its own limits (max body, max headers), which the
 *   server sets to the same values, and answers or closes on its own.
 * - in_request is true from the first byte of a request until its last byte
 *   was passed on (or its refusal was), so the caller can bound how long one
 *   request may take to arrive.
 */
#ifndef CHSM_HTTP_FRAME_H
#define CHSM_HTTP_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct evbuffer;

struct http_frame_limits {
	size_t max_body;          /* larger bodies are refused */
	size_t max_headers;       /* evhttp's header limit; heads past twice
				     this switch to pass-through */
	uint64_t drain_cap;       /* body bytes read and dropped after a refusal */
};

enum http_frame_mode {
	HTTP_FRAME_HEAD,          /* reading a request head */
	HTTP_FRAME_LENGTH,        /* passing on a Content-Length body */
	HTTP_FRAME_CHUNK_SIZE,    /* reading a chunk-size line */
	HTTP_FRAME_CHUNK_DATA,    /* passing on (or dropping) chunk data */
	HTTP_FRAME_TRAILER,       /* reading trailer lines */
	HTTP_FRAME_DRAIN_LENGTH,  /* dropping a refused Content-Length body */
	HTTP_FRAME_PASS,          /* passing everything on, unexamined */
	HTTP_FRAME_DEAD,          /* dropping everything (after a refusal) */
};

struct http_frame {
	const struct http_frame_limits *limits;
	enum http_frame_mode mode;
	bool in_request;
	bool draining;            /* refusing: chunk data is dropped */
	unsigned long requests;   /* requests started so far */
	unsigned long heads;      /* request heads passed on so far */
	unsigned long refused;    /* number of the refused request, or 0 */
	size_t scan;              /* head bytes already split into lines */
	uint64_t remaining;       /* LENGTH and DRAIN_LENGTH */
	uint64_t chunk_left;
	uint64_t body_total;      /* sum of chunk sizes so far */
	size_t trailer_bytes;
	struct evbuffer *refusal; /* the stand-in, until it is passed on */
};

/* Prepares f for a new connection. Returns 0 or -ENOMEM. */
int http_frame_init(struct http_frame *f, const struct http_frame_limits *limits);
/* Frees what f holds. Accepts a zeroed or half-made f. */
void http_frame_fini(struct http_frame *f);

/* n bytes arrived at the end of evhttp's input and nothing is held: returns
 * how many of them (a prefix) are body bytes that may stay there as they
 * are; the caller moves the rest into hold and calls http_frame_process. */
size_t http_frame_absorb(struct http_frame *f, size_t n);

/* Consumes hold: appends to out what evhttp may see, drops what it must not
 * see, keeps the incomplete rest. Returns 0, or a negative errno when an
 * evbuffer operation failed (the connection must then be closed). */
int http_frame_process(struct http_frame *f, struct evbuffer *hold, struct evbuffer *out);

#endif
