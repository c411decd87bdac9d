/*
 * jsonw.c: see jsonw.h. Plain ASCII strings, integers and tenths are
 * written here; everything else (strings that need escaping or UTF-8
 * checks, nested jansson values) is printed by jansson itself, and reals
 * go through the same "%.12g" and clean-up that jansson applies, so the
 * text cannot drift from json_dumps (tests/proto/test_jsonw.c compares
 * them).
 */
#include "proto/jsonw.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_HINT 4096
/* Tenths below this print as "q.r" with at most 12 significant digits,
 * exactly what "%.12g" gives for them. */
#define TENTHS_FAST_LIMIT 100000000000LL

void gmt_jsonw_init(struct gmt_jsonw *w, size_t hint)
{
	*w = (struct gmt_jsonw){0};
	w->cap = hint ? hint : DEFAULT_HINT;
	w->buf = malloc(w->cap);
	if (!w->buf) {
		w->cap = 0;
		w->err = -ENOMEM;
	}
}

void gmt_jsonw_free(struct gmt_jsonw *w)
{
	free(w->buf);
	*w = (struct gmt_jsonw){0};
}

int gmt_jsonw_finish(struct gmt_jsonw *w, char **ret_text, size_t *ret_len)
{
	int r = w->err;
	if (r == 0 && !w->buf)
		r = -ENOMEM;
	if (r < 0) {
		gmt_jsonw_free(w);
		return r;
	}
	w->buf[w->len] = '\0';
	*ret_text = w->buf;
	*ret_len = w->len;
	*w = (struct gmt_jsonw){0};
	return 0;
}

/* Room for n more bytes and the final NUL; false (writer failed) if not. */
static bool reserve(struct gmt_jsonw *w, size_t n)
{
	if (w->err < 0)
		return false;
	if (w->len + n + 1 <= w->cap)
		return true;
	size_t cap = w->cap ? w->cap : DEFAULT_HINT;
	while (cap < w->len + n + 1) {
		if (cap > SIZE_MAX / 2) {
			w->err = -ENOMEM;
			return false;
		}
		cap *= 2;
	}
	char *grown = realloc(w->buf, cap);
	if (!grown) {
		w->err = -ENOMEM;
		return false;
	}
	w->buf = grown;
	w->cap = cap;
	return true;
}

void gmt_jsonw_raw(struct gmt_jsonw *w, const char *text, size_t n)
{
	if (!reserve(w, n))
		return;
	memcpy(w->buf + w->len, text, n);
	w->len += n;
}

void gmt_jsonw_lit(struct gmt_jsonw *w, const char *text)
{
	gmt_jsonw_raw(w, text, strlen(text));
}

void gmt_jsonw_json(struct gmt_jsonw *w, const json_t *v)
{
	if (w->err < 0)
		return;
	if (!v) {
		gmt_jsonw_lit(w, "null");
		return;
	}
	char *s = json_dumps(v, GMT_JSON_DUMP_FLAGS | JSON_ENCODE_ANY);
	if (!s) {
		w->err = -ENOMEM;
		return;
	}
	gmt_jsonw_lit(w, s);
	free(s);
}

void gmt_jsonw_string(struct gmt_jsonw *w, const char *s)
{
	if (!s) {
		gmt_jsonw_lit(w, "null");
		return;
	}
	size_t n = 0;
	bool plain = true;
	for (; s[n]; n++) {
		unsigned char ch = (unsigned char)s[n];
		if (ch < 0x20 || ch > 0x7e || ch == '"' || ch == '\\')
			plain = false;
	}
	if (plain) {
		if (!reserve(w, n + 2))
			return;
		w->buf[w->len++] = '"';
		memcpy(w->buf + w->len, s, n);
		w->len += n;
		w->buf[w->len++] = '"';
		return;
	}
	/* Escapes and UTF-8 checks exactly as jansson does them. */
	json_t *j = json_stringn(s, n);
	if (!j) {
		if (w->err == 0)
			w->err = -EINVAL;
		return;
	}
	gmt_jsonw_json(w, j);
	json_decref(j);
}

void gmt_jsonw_int(struct gmt_jsonw *w, int64_t v)
{
	char tmp[24];
	size_t i = sizeof(tmp);
	uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
	do {
		tmp[--i] = (char)('0' + u % 10);
		u /= 10;
	} while (u);
	if (v < 0)
		tmp[--i] = '-';
	gmt_jsonw_raw(w, tmp + i, sizeof(tmp) - i);
}

void gmt_jsonw_real(struct gmt_jsonw *w, double v)
{
	char tmp[48];
	if (!isfinite(v)) {
		if (w->err == 0)
			w->err = -EINVAL;
		return;
	}
	int n = snprintf(tmp, sizeof(tmp), "%.12g", v);
	if (n < 0 || (size_t)n + 3 > sizeof(tmp)) {
		if (w->err == 0)
			w->err = -EINVAL;
		return;
	}
	size_t len = (size_t)n;
	/* A locale's decimal comma becomes a point, as jansson does. */
	char *comma = strchr(tmp, ',');
	if (comma)
		*comma = '.';
	/* Without a point or an exponent the text would read as an integer. */
	if (!strchr(tmp, '.') && !strchr(tmp, 'e')) {
		memcpy(tmp + len, ".0", 3);
		len += 2;
	}
	/* The exponent loses its '+' and its leading zeros: "1e+05" is "1e5",
	 * "1e-05" is "1e-5". */
	char *e = strchr(tmp, 'e');
	if (e) {
		char *digits = e + 1, *from = e + 2;
		if (*digits == '-')
			digits++;
		while (*from == '0')
			from++;
		if (from != digits) {
			memmove(digits, from, len - (size_t)(from - tmp) + 1);
			len -= (size_t)(from - digits);
		}
	}
	gmt_jsonw_raw(w, tmp, len);
}

void gmt_jsonw_tenths(struct gmt_jsonw *w, int64_t tenths)
{
	if (tenths <= -TENTHS_FAST_LIMIT || tenths >= TENTHS_FAST_LIMIT) {
		gmt_jsonw_real(w, (double)tenths / 10);
		return;
	}
	char tmp[24];
	size_t i = sizeof(tmp);
	uint64_t u = tenths < 0 ? (uint64_t)-tenths : (uint64_t)tenths;
	tmp[--i] = (char)('0' + u % 10);
	tmp[--i] = '.';
	u /= 10;
	do {
		tmp[--i] = (char)('0' + u % 10);
		u /= 10;
	} while (u);
	if (tenths < 0)
		tmp[--i] = '-';
	gmt_jsonw_raw(w, tmp + i, sizeof(tmp) - i);
}
