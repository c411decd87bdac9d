/*
 * jsonw.h: writes compact JSON text straight into one growing buffer, the
 * same bytes jansson's json_dumps gives with GMT_JSON_DUMP_FLAGS (the
 * flags of every envelope, envelope.h) for the same values, without
 * building a tree. For large answers (7.2.3) whose tree cost more than
 * the rest of the request.
 *
 * A writer that failed (memory, a string that is not UTF-8, a real that
 * is not finite) ignores every later call and reports the failure once,
 * in gmt_jsonw_finish. Never logs.
 */
#ifndef CHSM_PROTO_JSONW_H
#define CHSM_PROTO_JSONW_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* How envelopes are printed: compact, members in insertion order, reals
 * with 12 significant digits. */
#define GMT_JSON_DUMP_FLAGS (JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(12))

struct gmt_jsonw {
	char *buf;
	size_t len, cap;
	int err; /* 0, -ENOMEM or -EINVAL */
};

/* An empty writer with room for about hint bytes (0: a default). */
void gmt_jsonw_init(struct gmt_jsonw *w, size_t hint);
/* Frees the text. Accepts a zeroed or finished writer. */
void gmt_jsonw_free(struct gmt_jsonw *w);
/* The text written (malloc'ed, NUL-terminated) into *ret_text and its
 * length into *ret_len; the writer is then empty. Returns 0, or the first
 * failure (-ENOMEM, -EINVAL) with nothing set and the writer freed. */
int gmt_jsonw_finish(struct gmt_jsonw *w, char **ret_text, size_t *ret_len);

/* Appends n bytes of text as they are (punctuation, "\"key\":", or text
 * an earlier writer produced). */
void gmt_jsonw_raw(struct gmt_jsonw *w, const char *text, size_t n);
/* The same for a NUL-terminated literal. */
void gmt_jsonw_lit(struct gmt_jsonw *w, const char *text);
/* s as a JSON string, escaped as jansson escapes it; NULL writes null. A
 * string that is not UTF-8 fails the writer (-EINVAL). */
void gmt_jsonw_string(struct gmt_jsonw *w, const char *s);
/* An integer, as json_integer(v). */
void gmt_jsonw_int(struct gmt_jsonw *w, int64_t v);
/* A real, as json_real(v); a value that is not finite fails the writer. */
void gmt_jsonw_real(struct gmt_jsonw *w, double v);
/* The real tenths / 10.0, as json_real((double)tenths / 10) prints it,
 * without printf for |tenths| < 10^11 (larger values take the
 * gmt_jsonw_real path). */
void gmt_jsonw_tenths(struct gmt_jsonw *w, int64_t tenths);
/* Any jansson value (NULL writes null), printed by jansson. */
void gmt_jsonw_json(struct gmt_jsonw *w, const json_t *v);

#endif
