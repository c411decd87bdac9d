/*
 * frame.c: the request-framing guard; see frame.h for what it guarantees.
 *
 * Each step function looks at the start of `hold` and returns 1 when it
 * made progress (the loop goes on), 0 when it needs more bytes, or a
 * negative errno when an evbuffer operation failed.
 */
#include "http/frame.h"

#include <errno.h>
#include <string.h>

#include <event2/buffer.h>

#include "common/util.h"

/* A chunk-size line longer than this is not one a real client sends. */
#define FRAME_CHUNK_LINE_MAX 256
/* Longest Content-Length value copied for strict parsing (20 digits hold
 * any uint64_t; longer all-digit values are simply too large). */
#define FRAME_NUMBER_MAX 20

enum body_kind { BODY_NONE, BODY_LENGTH, BODY_CHUNKED, BODY_UNSURE };

struct head_info {
	enum body_kind kind;
	uint64_t length;          /* BODY_LENGTH; UINT64_MAX if it overflows */
	bool expect_continue;
};

/* Methods as evhttp 2.1 spells them, and whether it reads a body for them. */
static const struct {
	const char *name;
	bool body;
} METHODS[] = {
	{"GET", true},     {"POST", true},  {"PUT", true},   {"DELETE", true}, {"OPTIONS", true},
	{"PATCH", true},   {"CONNECT", true}, {"HEAD", false}, {"TRACE", false},
};

static size_t head_cap(const struct http_frame *f)
{
	return 2 * f->limits->max_headers + 1024;
}

static char ascii_lower(char c)
{
	return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

/* Case-insensitive (ASCII) comparison of s[0..len) with the string name. */
static bool token_is(const char *s, size_t len, const char *name)
{
	if (strlen(name) != len)
		return false;
	for (size_t i = 0; i < len; i++)
		if (ascii_lower(s[i]) != ascii_lower(name[i]))
			return false;
	return true;
}

/* The next line of buf[*off..len) as evbuffer's EVBUFFER_EOL_CRLF splits
 * it: it ends at the first "\n", which a "\r" before it joins. */
static bool next_line(const char *buf, size_t len, size_t *off, const char **ret_line,
		      size_t *ret_len)
{
	const char *start = buf + *off;
	const char *nl = memchr(start, '\n', len - *off);
	if (!nl)
		return false;
	size_t n = (size_t)(nl - start);
	*ret_line = start;
	*ret_len = (n > 0 && start[n - 1] == '\r') ? n - 1 : n;
	*off += n + 1;
	return true;
}

/* Content-Length digits: 0 and *ret, or -EINVAL when not all digits.
 * Values that do not fit in 64 bits come back as UINT64_MAX. */
static int parse_length(const char *s, size_t len, uint64_t *ret)
{
	if (len == 0)
		return -EINVAL;
	for (size_t i = 0; i < len; i++)
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
	if (len > FRAME_NUMBER_MAX) {
		*ret = UINT64_MAX;
		return 0;
	}
	char buf[FRAME_NUMBER_MAX + 1];
	memcpy(buf, s, len);
	buf[len] = '\0';
	int r = chsm_parse_u64(buf, UINT64_MAX, ret);
	if (r == -ERANGE) {
		*ret = UINT64_MAX;
		return 0;
	}
	return r;
}

/* Chunk size: hex digits, then the end or a space and anything (as evhttp
 * reads it). Saturates at UINT64_MAX. 0 or -EINVAL. */
static int parse_chunk_size(const char *s, size_t len, uint64_t *ret)
{
	uint64_t v = 0;
	size_t i = 0;
	for (; i < len; i++) {
		char c = s[i];
		unsigned d;
		if (c >= '0' && c <= '9')
			d = (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			d = (unsigned)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			d = (unsigned)(c - 'A' + 10);
		else
			break;
		v = (v > (UINT64_MAX - d) / 16) ? UINT64_MAX : v * 16 + d;
	}
	if (i == 0 || (i < len && s[i] != ' '))
		return -EINVAL;
	*ret = v;
	return 0;
}

static bool method_known(const char *m, size_t len, bool *ret_body)
{
	for (size_t i = 0; i < sizeof(METHODS) / sizeof(METHODS[0]); i++) {
		if (strlen(METHODS[i].name) == len && memcmp(METHODS[i].name, m, len) == 0) {
			*ret_body = METHODS[i].body;
			return true;
		}
	}
	return false;
}

/* Splits a header line the way evhttp does: the key is everything before
 * the first ':'; the value skips leading spaces and loses trailing spaces
 * and tabs. False for lines evhttp would refuse or fold. */
static bool split_header(const char *line, size_t len, const char **key, size_t *key_len,
			 const char **val, size_t *val_len)
{
	if (len == 0 || line[0] == ' ' || line[0] == '\t' || memchr(line, '\0', len) ||
	    memchr(line, '\r', len))
		return false;
	const char *colon = memchr(line, ':', len);
	if (!colon)
		return false;
	*key = line;
	*key_len = (size_t)(colon - line);
	const char *v = colon + 1, *end = line + len;
	while (v < end && *v == ' ')
		v++;
	while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	*val = v;
	*val_len = (size_t)(end - v);
	return true;
}

/* Reads a complete head (request line, headers, empty line) and decides
 * how its body is framed. */
static void parse_head(const char *h, size_t len, struct head_info *ret)
{
	const char *line, *key, *val, *cl = NULL, *te = NULL, *expect = NULL;
	size_t n, key_len, val_len, cl_len = 0, te_len = 0, expect_len = 0, off = 0;
	int n_cl = 0, n_te = 0, n_expect = 0;
	bool has_body = false, http11;

	memset(ret, 0, sizeof(*ret));
	ret->kind = BODY_UNSURE;
	if (!next_line(h, len, &off, &line, &n) || memchr(line, '\0', n) || memchr(line, '\r', n))
		return;
	const char *sp1 = memchr(line, ' ', n);
	const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(line + n - sp1 - 1)) : NULL;
	if (!sp2 || memchr(sp2 + 1, ' ', (size_t)(line + n - sp2 - 1)))
		return;
	if (!method_known(line, (size_t)(sp1 - line), &has_body))
		return;
	const char *version = sp2 + 1;
	size_t version_len = (size_t)(line + n - version);
	if (version_len == 8 && memcmp(version, "HTTP/1.1", 8) == 0)
		http11 = true;
	else if (version_len == 8 && memcmp(version, "HTTP/1.0", 8) == 0)
		http11 = false;
	else
		return;

	while (next_line(h, len, &off, &line, &n) && n > 0) {
		if (!split_header(line, n, &key, &key_len, &val, &val_len))
			return;
		if (token_is(key, key_len, "Content-Length")) {
			n_cl++;
			cl = val;
			cl_len = val_len;
		} else if (token_is(key, key_len, "Transfer-Encoding")) {
			n_te++;
			te = val;
			te_len = val_len;
		} else if (token_is(key, key_len, "Expect")) {
			n_expect++;
			expect = val;
			expect_len = val_len;
		}
	}

	if (!has_body) {
		ret->kind = BODY_NONE; /* evhttp ignores any framing headers */
		return;
	}
	if (n_te > 1 || n_cl > 1 || (n_te && n_cl))
		return;
	if (n_te) {
		if (!token_is(te, te_len, "chunked"))
			return;
		ret->kind = BODY_CHUNKED;
	} else if (n_cl) {
		if (parse_length(cl, cl_len, &ret->length) < 0)
			return;
		ret->kind = ret->length ? BODY_LENGTH : BODY_NONE;
	} else {
		ret->kind = BODY_NONE;
	}
	if (http11 && n_expect && ret->kind != BODY_NONE) {
		if (n_expect > 1 || !token_is(expect, expect_len, "100-continue")) {
			ret->kind = BODY_UNSURE; /* evhttp answers 417 and closes */
			return;
		}
		ret->expect_continue = true;
	}
}

/* The stand-in for a refused Content-Length request: its head without
 * framing, Connection and Expect headers, with Content-Length: 0 and
 * Connection: close. */
static int build_head_refusal(struct http_frame *f, const char *h, size_t len)
{
	const char *line, *key, *val;
	size_t n, key_len, val_len, off = 0;

	if (!next_line(h, len, &off, &line, &n) || evbuffer_add(f->refusal, line, n) < 0 ||
	    evbuffer_add(f->refusal, "\r\n", 2) < 0)
		return -ENOMEM;
	while (next_line(h, len, &off, &line, &n) && n > 0) {
		if (!split_header(line, n, &key, &key_len, &val, &val_len))
			continue;
		if (token_is(key, key_len, "Content-Length") ||
		    token_is(key, key_len, "Transfer-Encoding") ||
		    token_is(key, key_len, "Connection") || token_is(key, key_len, "Expect"))
			continue;
		if (evbuffer_add(f->refusal, line, n) < 0 || evbuffer_add(f->refusal, "\r\n", 2) < 0)
			return -ENOMEM;
	}
	static const char tail[] = "Content-Length: 0\r\nConnection: close\r\n\r\n";
	if (evbuffer_add(f->refusal, tail, sizeof(tail) - 1) < 0)
		return -ENOMEM;
	f->refused = f->heads + 1; /* the stand-in is the next head */
	return 0;
}

/* The stand-in end of a refused chunked body: a last chunk. */
static int build_chunk_refusal(struct http_frame *f)
{
	static const char last[] = "0\r\n\r\n";
	if (evbuffer_add(f->refusal, last, sizeof(last) - 1) < 0)
		return -ENOMEM;
	f->refused = f->heads; /* its head was passed on already */
	return 0;
}

static void request_done(struct http_frame *f)
{
	f->mode = HTTP_FRAME_HEAD;
	f->in_request = false;
	f->draining = false;
	f->scan = 0;
	f->remaining = f->chunk_left = f->body_total = 0;
	f->trailer_bytes = 0;
}

static int pass_on(struct evbuffer *hold, struct evbuffer *out, size_t n)
{
	return evbuffer_remove_buffer(hold, out, n) == (int)n ? 0 : -EIO;
}

static int pass_head(struct http_frame *f, struct evbuffer *hold, struct evbuffer *out, size_t n)
{
	int r = pass_on(hold, out, n);
	if (r == 0)
		f->heads++;
	return r;
}

static int drop(struct evbuffer *hold, size_t n)
{
	return evbuffer_drain(hold, n) == 0 ? 0 : -EIO;
}

/* Passes n bytes on, or drops them while a refusal drains the body. */
static int consume(struct http_frame *f, struct evbuffer *hold, struct evbuffer *out, size_t n)
{
	return f->draining ? drop(hold, n) : pass_on(hold, out, n);
}

/* Hands evhttp the stand-in; everything after it is dropped. */
static int finish_refusal(struct http_frame *f, struct evbuffer *out)
{
	if (evbuffer_add_buffer(out, f->refusal) < 0)
		return -EIO;
	if (f->refused > f->heads)
		f->heads = f->refused;
	f->mode = HTTP_FRAME_DEAD;
	f->in_request = false;
	f->draining = false;
	return 1;
}

static int enter_pass(struct http_frame *f)
{
	f->mode = HTTP_FRAME_PASS;
	f->in_request = false;
	return 1;
}

/* Framing the guard cannot follow: a refusal in progress is answered now,
 * anything else is left to evhttp. */
static int malformed(struct http_frame *f, struct evbuffer *out)
{
	return f->draining ? finish_refusal(f, out) : enter_pass(f);
}

/* Finds the end of the line starting at offset `from` of hold. */
static bool find_eol(struct evbuffer *hold, size_t from, size_t *ret_pos, size_t *ret_eol_len)
{
	struct evbuffer_ptr p;
	if (evbuffer_ptr_set(hold, &p, from, EVBUFFER_PTR_SET) < 0)
		return false;
	size_t eol_len = 0;
	struct evbuffer_ptr e = evbuffer_search_eol(hold, &p, &eol_len, EVBUFFER_EOL_CRLF);
	if (e.pos < 0)
		return false;
	*ret_pos = (size_t)e.pos;
	*ret_eol_len = eol_len;
	return true;
}

static int refuse_length(struct http_frame *f, struct evbuffer *hold, struct evbuffer *out,
			 const char *h, size_t head_len, const struct head_info *info)
{
	int r = build_head_refusal(f, h, head_len);
	if (r < 0)
		return r;
	r = drop(hold, head_len);
	if (r < 0)
		return r;
	if (info->expect_continue || info->length > f->limits->drain_cap)
		return finish_refusal(f, out);
	f->mode = HTTP_FRAME_DRAIN_LENGTH;
	f->remaining = info->length;
	f->draining = true;
	return 1;
}

static int step_head(struct http_frame *f, struct evbuffer *hold, struct evbuffer *out)
{
	size_t pos, eol_len;
	if (!f->in_request) {
		f->in_request = true;
		f->requests++;
	}
	for (;;) {
		if (!find_eol(hold, f->scan, &pos, &eol_len))
			return evbuffer_get_length(hold) > head_cap(f) ? enter_pass(f) : 0;
		bool empty = pos == f->scan, first = f->scan == 0;
		f->scan = pos + eol_len;
		if (f->scan > head_cap(f) || (empty && first))
			return enter_pass(f);
		if (empty)
			break;
	}

	size_t head_len = f->scan;
	const char *h = (const char *)evbuffer_pullup(hold, (ev_ssize_t)head_len);
	if (!h)
		return -ENOMEM;
	struct head_info info;
	parse_head(h, head_len, &info);
	int r;
	switch (info.kind) {
	case BODY_NONE:
		if ((r = pass_head(f, hold, out, head_len)) < 0)
			return r;
		request_done(f);
		return 1;
	case BODY_CHUNKED:
		if ((r = pass_head(f, hold, out, head_len)) < 0)
			return r;
		f->mode = HTTP_FRAME_CHUNK_SIZE;
		return 1;
	case BODY_LENGTH:
		if (info.length > f->limits->max_body)
			return refuse_length(f, hold, out, h, head_len, &info);
		if ((r = pass_head(f, hold, out, head_len)) < 0)
			return r;
		f->mode = HTTP_FRAME_LENGTH;
		f->remaining = info.length;
		return 1;
	case BODY_UNSURE:
	default:
		return enter_pass(f);
	}
}

static int step_chunk_size(struct http_frame *f, struct evbuffer *hold, struct evbuffer *out)
{
	size_t pos, eol_len;
	if (!find_eol(hold, 0, &pos, &eol_len))
		return evbuffer_get_length(hold) > FRAME_CHUNK_LINE_MAX ? malformed(f, out) : 0;
	size_t total = pos + eol_len;
	if (pos > FRAME_CHUNK_LINE_MAX)
		return malformed(f, out);
	if (pos == 0) /* evhttp skips empty lines, e.g. the CRLF after data */
		return consume(f, hold, out, total) < 0 ? -EIO : 1;

	char line[FRAME_CHUNK_LINE_MAX];
	uint64_t size;
	if (evbuffer_copyout(hold, line, pos) != (ev_ssize_t)pos)
		return -EIO;
	if (parse_chunk_size(line, pos, &size) < 0)
		return malformed(f, out);
	if (size == 0) {
		f->mode = HTTP_FRAME_TRAILER;
		f->trailer_bytes = 0;
		return consume(f, hold, out, total) < 0 ? -EIO : 1;
	}

	uint64_t limit = f->draining ? f->limits->drain_cap : f->limits->max_body;
	bool over = f->body_total > limit || size > limit - f->body_total;
	f->body_total = (size > UINT64_MAX - f->body_total) ? UINT64_MAX : f->body_total + size;
	if (over) {
		if (f->draining || f->body_total > f->limits->drain_cap) {
			int r = f->draining ? 0 : build_chunk_refusal(f);
			return r < 0 ? r : finish_refusal(f, out);
		}
		/* Refuse: this chunk and the rest of the body are dropped. */
		int r = build_chunk_refusal(f);
		if (r < 0)
			return r;
		f->draining = true;
	}
	f->chunk_left = size;
	f->mode = HTTP_FRAME_CHUNK_DATA;
	return consume(f, hold, out, total) < 0 ? -EIO : 1;
}

static int step_trailer(struct http_frame *f, struct evbuffer *hold, struct evbuffer *out)
{
	size_t pos, eol_len;
	if (!find_eol(hold, 0, &pos, &eol_len))
		return f->trailer_bytes + evbuffer_get_length(hold) > head_cap(f) ? malformed(f, out)
										  : 0;
	size_t total = pos + eol_len;
	f->trailer_bytes += total;
	if (f->trailer_bytes > head_cap(f))
		return malformed(f, out);
	if (pos > 0)
		return consume(f, hold, out, total) < 0 ? -EIO : 1;
	if (f->draining)
		return drop(hold, total) < 0 ? -EIO : finish_refusal(f, out);
	if (pass_on(hold, out, total) < 0)
		return -EIO;
	request_done(f);
	return 1;
}

/* Body bytes: n of them are available at the start of hold. */
static int step_body(struct http_frame *f, struct evbuffer *hold, struct evbuffer *out, size_t n)
{
	uint64_t *left = f->mode == HTTP_FRAME_CHUNK_DATA ? &f->chunk_left : &f->remaining;
	size_t k = (uint64_t)n < *left ? n : (size_t)*left;
	int r = f->mode == HTTP_FRAME_DRAIN_LENGTH ? drop(hold, k) : consume(f, hold, out, k);
	if (r < 0)
		return r;
	*left -= k;
	if (*left > 0)
		return 1;
	switch (f->mode) {
	case HTTP_FRAME_CHUNK_DATA:
		f->mode = HTTP_FRAME_CHUNK_SIZE;
		return 1;
	case HTTP_FRAME_DRAIN_LENGTH:
		return finish_refusal(f, out);
	default:
		request_done(f);
		return 1;
	}
}

int http_frame_init(struct http_frame *f, const struct http_frame_limits *limits)
{
	memset(f, 0, sizeof(*f));
	f->limits = limits;
	f->mode = HTTP_FRAME_HEAD;
	f->refusal = evbuffer_new();
	return f->refusal ? 0 : -ENOMEM;
}

void http_frame_fini(struct http_frame *f)
{
	if (f->refusal)
		evbuffer_free(f->refusal);
	f->refusal = NULL;
}

size_t http_frame_absorb(struct http_frame *f, size_t n)
{
	size_t k;
	switch (f->mode) {
	case HTTP_FRAME_PASS:
		return n;
	case HTTP_FRAME_LENGTH:
		k = (uint64_t)n < f->remaining ? n : (size_t)f->remaining;
		f->remaining -= k;
		if (f->remaining == 0)
			request_done(f);
		return k;
	case HTTP_FRAME_CHUNK_DATA:
		if (f->draining)
			return 0;
		k = (uint64_t)n < f->chunk_left ? n : (size_t)f->chunk_left;
		f->chunk_left -= k;
		if (f->chunk_left == 0)
			f->mode = HTTP_FRAME_CHUNK_SIZE;
		return k;
	default:
		return 0;
	}
}

int http_frame_process(struct http_frame *f, struct evbuffer *hold, struct evbuffer *out)
{
	for (;;) {
		size_t avail = evbuffer_get_length(hold);
		int r;
		if (avail == 0)
			return 0;
		switch (f->mode) {
		case HTTP_FRAME_PASS:
			return pass_on(hold, out, avail);
		case HTTP_FRAME_DEAD:
			return drop(hold, avail);
		case HTTP_FRAME_HEAD:
			r = step_head(f, hold, out);
			break;
		case HTTP_FRAME_CHUNK_SIZE:
			r = step_chunk_size(f, hold, out);
			break;
		case HTTP_FRAME_TRAILER:
			r = step_trailer(f, hold, out);
			break;
		case HTTP_FRAME_LENGTH:
		case HTTP_FRAME_CHUNK_DATA:
		case HTTP_FRAME_DRAIN_LENGTH:
		default:
			r = step_body(f, hold, out, avail);
			break;
		}
		if (r <= 0)
			return r;
	}
}
