/*
 * format.c: see format.h.
 */
#include "logship/format.h"

#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const level_names[] = {"error", "warning", "info"};

/* Length of the valid UTF-8 sequence at s (at most n bytes), 0 if none. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	size_t len;
	uint32_t cp;
	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		len = 2;
		cp = s[0] & 0x1f;
	} else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		len = 3;
		cp = s[0] & 0x0f;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		len = 4;
		cp = s[0] & 0x07;
	} else {
		return 0;
	}
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
	    (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
		return 0;
	return len;
}

/* A copy of s with every byte outside a valid UTF-8 sequence made '?'. */
static json_t *utf8_string(const char *s)
{
	json_t *j = json_string(s);
	if (j)
		return j;
	size_t n = strlen(s);
	char *c = malloc(n + 1);
	if (!c)
		return NULL;
	for (size_t i = 0; i < n;) {
		size_t l = utf8_len((const unsigned char *)s + i, n - i);
		if (l == 0) {
			c[i++] = '?';
		} else {
			memcpy(c + i, s + i, l);
			i += l;
		}
	}
	c[n] = '\0';
	j = json_string(c);
	free(c);
	return j;
}

int logship_record_encode(int level, int64_t ts_ms, const char *event, const char *const *kv,
			  size_t n, char **ret, size_t *ret_len)
{
	json_t *f = json_array();
	json_t *o = json_pack("{s:I,s:i,s:o,s:o}", "t", (json_int_t)ts_ms, "l", level, "e",
			      utf8_string(event), "f", f);
	if (!o)
		return -ENOMEM;
	for (size_t i = 0; i < 2 * n; i++) {
		if (json_array_append_new(f, utf8_string(kv[i])) < 0) {
			json_decref(o);
			return -ENOMEM;
		}
	}
	char *s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	if (!s)
		return -ENOMEM;
	*ret = s;
	*ret_len = strlen(s);
	return 0;
}

int logship_record_decode(const char *data, size_t len, struct logship_event *ret)
{
	json_t *o = json_loadb(data, len, 0, NULL);
	json_t *t = json_object_get(o, "t"), *l = json_object_get(o, "l");
	json_t *e = json_object_get(o, "e"), *f = json_object_get(o, "f");
	if (!json_is_integer(t) || !json_is_integer(l) || !json_is_string(e) || !json_is_array(f) ||
	    json_integer_value(l) < 0 || json_integer_value(l) > 2 || json_array_size(f) % 2) {
		json_decref(o);
		return -EBADMSG;
	}
	size_t n = json_array_size(f);
	const char **kv = calloc(n ? n : 1, sizeof(*kv));
	if (!kv) {
		json_decref(o);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		kv[i] = json_string_value(json_array_get(f, i));
		if (!kv[i]) {
			free(kv);
			json_decref(o);
			return -EBADMSG;
		}
	}
	*ret = (struct logship_event){
		.ts_ms = json_integer_value(t), .level = (int)json_integer_value(l),
		.event = json_string_value(e), .kv = kv, .n = n / 2, .doc = o,
	};
	return 0;
}

void logship_event_clear(struct logship_event *e)
{
	if (!e)
		return;
	free(e->kv);
	json_decref(e->doc);
	memset(e, 0, sizeof(*e));
}

static void rfc3339(int64_t ms, char out[64])
{
	time_t secs = (time_t)(ms / 1000);
	struct tm tm;
	gmtime_r(&secs, &tm);
	snprintf(out, 64, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
		 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
}

struct out {
	char *p;
	size_t len, cap;
	bool failed;
};

static void put(struct out *o, const char *s, size_t n)
{
	if (o->failed)
		return;
	if (o->len + n + 1 > o->cap) {
		size_t ncap = (o->len + n + 1) * 2;
		char *np = realloc(o->p, ncap);
		if (!np) {
			o->failed = true;
			return;
		}
		o->p = np;
		o->cap = ncap;
	}
	memcpy(o->p + o->len, s, n);
	o->len += n;
	o->p[o->len] = '\0';
}

static void puts_(struct out *o, const char *s)
{
	put(o, s, strlen(s));
}

/* An RFC 5424 header field: printable US-ASCII only, at most max
 * characters, "-" when empty. */
static void put_token(struct out *o, const char *s, size_t max)
{
	size_t n = 0;
	for (; s[n] && n < max; n++) {
		char c = (unsigned char)s[n] > 32 && (unsigned char)s[n] < 127 ? s[n] : '_';
		put(o, &c, 1);
	}
	if (n == 0)
		put(o, "-", 1);
}

/* An SD-NAME: printable US-ASCII except '=', ' ', ']', '"'; at most 32. */
static void put_sd_name(struct out *o, const char *s)
{
	size_t n = 0;
	for (; s[n] && n < 32; n++) {
		unsigned char c = (unsigned char)s[n];
		char ch = c > 32 && c < 127 && c != '=' && c != ']' && c != '"' ? (char)c : '_';
		put(o, &ch, 1);
	}
	if (n == 0)
		put(o, "_", 1);
}

/* A PARAM-VALUE: at most cap bytes of s, cut at a character boundary,
 * control characters as '?', then '"', '\' and ']' escaped. */
static void put_sd_value(struct out *o, const char *s, size_t cap)
{
	size_t n = strlen(s), used = 0;
	for (size_t i = 0; i < n;) {
		size_t l = utf8_len((const unsigned char *)s + i, n - i);
		if (l == 0)
			l = 1;
		if (used + l > cap)
			break;
		unsigned char c = (unsigned char)s[i];
		if (l == 1 && (c < 0x20 || c == 0x7f || c >= 0x80)) {
			put(o, "?", 1);
		} else {
			if (c == '"' || c == '\\' || c == ']')
				put(o, "\\", 1);
			put(o, s + i, l);
		}
		used += l;
		i += l;
	}
}

static void build_syslog(struct out *o, const struct logship_event *e, uint64_t seq,
			 const char *hostname, long pid, size_t value_cap, bool with_sd)
{
	static const int severity[] = {3, 4, 6};
	char head[96], ts[64];
	rfc3339(e->ts_ms, ts);
	snprintf(head, sizeof(head), "<%d>1 %s ", LOGSHIP_SYSLOG_FACILITY * 8 + severity[e->level], ts);
	puts_(o, head);
	put_token(o, hostname, 255);
	snprintf(head, sizeof(head), " chsmd %ld ", pid);
	puts_(o, head);
	put_token(o, e->event, 32);
	put(o, " ", 1);
	if (with_sd) {
		snprintf(head, sizeof(head), "[%s seq=\"%llu\"", LOGSHIP_SD_ID, (unsigned long long)seq);
		puts_(o, head);
		for (size_t i = 0; i < e->n; i++) {
			put(o, " ", 1);
			put_sd_name(o, e->kv[2 * i]);
			put(o, "=\"", 2);
			put_sd_value(o, e->kv[2 * i + 1], value_cap);
			put(o, "\"", 1);
		}
		put(o, "]", 1);
	} else {
		put(o, "-", 1);
	}
	put(o, " ", 1);
	put_sd_value(o, e->event, 256);
}

int logship_format_syslog(const struct logship_event *e, uint64_t seq, const char *hostname,
			  long pid, size_t max, char **ret, size_t *ret_len)
{
	static const size_t caps[] = {SIZE_MAX, 1024, 256, 64, 16, 0};
	if (e->level < 0 || e->level > 2)
		return -EINVAL;
	struct out o = {0};
	for (size_t k = 0; k <= sizeof(caps) / sizeof(caps[0]); k++) {
		o.len = 0;
		bool sd = k < sizeof(caps) / sizeof(caps[0]);
		build_syslog(&o, e, seq, hostname, pid, sd ? caps[k] : 0, sd);
		if (o.failed) {
			free(o.p);
			return -ENOMEM;
		}
		if (o.len <= max)
			break;
	}
	if (o.len > max) {
		free(o.p);
		return -EMSGSIZE;
	}
	*ret = o.p;
	*ret_len = o.len;
	return 0;
}

int logship_format_json(const struct logship_event *ev, const uint64_t *seqs, size_t n,
			const char *hostname, char **ret, size_t *ret_len)
{
	static const char *const fixed[] = {"seq", "ts", "level", "host", "app", "event", NULL};
	json_t *arr = json_array();
	if (!arr)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		const struct logship_event *e = &ev[i];
		char ts[64];
		rfc3339(e->ts_ms, ts);
		json_t *o = json_pack("{s:I,s:s,s:s,s:o,s:s,s:s}", "seq", (json_int_t)seqs[i], "ts", ts,
				      "level", level_names[e->level < 0 || e->level > 2 ? 2 : e->level],
				      "host", utf8_string(hostname), "app", "chsmd", "event", e->event);
		if (!o || json_array_append_new(arr, o) < 0) {
			json_decref(arr);
			return -ENOMEM;
		}
		for (size_t k = 0; k < e->n; k++) {
			const char *key = e->kv[2 * k];
			char name[80];
			bool clash = false;
			for (const char *const *f = fixed; *f; f++)
				clash |= strcmp(*f, key) == 0;
			snprintf(name, sizeof(name), "%s%s", clash ? "_" : "", key);
			json_object_set_new(o, name, json_string(e->kv[2 * k + 1]));
		}
	}
	char *s = json_dumps(arr, JSON_COMPACT);
	json_decref(arr);
	if (!s)
		return -ENOMEM;
	*ret = s;
	*ret_len = strlen(s);
	return 0;
}
