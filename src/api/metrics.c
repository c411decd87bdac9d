/*
 * metrics.c: request counters and latency histogram, rendered in the
 * Prometheus text format together with task and VSM gauges read from the
 * store at scrape time, and each VSM's service statistics (operations by
 * algorithm, sessions) as 7.3.2 reports them. Counters are atomics: recording never blocks a
 * request. Nothing here is secret.
 */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/internal.h"
#include "common/util.h"
#include "logship/logship.h"

/* Every Appendix A code, for the counter table (index = position). */
static const int known_codes[] = {
	0,    1001, 1002, 1003, 1004, 1005, 1006, 1007, 2001, 2002, 2003, 2004,
	2005, 2006, 2007, 3001, 3002, 3003, 3004, 3005, 3006, 3007, 3008, 3009,
	3010, 4001, 4002, 4003, 4004, 4005, 4006, 4007, 4008, 5000, 5001, 5002, 5003,
};
#define NCODES ((int)(sizeof(known_codes) / sizeof(known_codes[0])))
#define MAX_ROUTES 48 /* api_routes plus the "no route" row */
static const double bucket_seconds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5};
#define NBUCKETS ((int)(sizeof(bucket_seconds) / sizeof(bucket_seconds[0])))

struct api_metrics {
	atomic_ullong requests[MAX_ROUTES][NCODES];
	atomic_ullong buckets[NBUCKETS + 1];
	atomic_ullong latency_sum_us;
	atomic_ullong latency_count;
};

int api_metrics_new(struct api_metrics **ret)
{
	struct api_metrics *m = calloc(1, sizeof(*m));
	if (!m)
		return -12;
	*ret = m;
	return 0;
}

void api_metrics_free(struct api_metrics *m)
{
	free(m);
}

static int code_index(int code)
{
	for (int i = 0; i < NCODES; i++)
		if (known_codes[i] == code)
			return i;
	return NCODES - 4; /* 5000 */
}

void api_metrics_record(struct api_metrics *m, int route_index, int code, int64_t micros)
{
	if (!m)
		return;
	int row = route_index >= 0 && route_index < api_route_count ? route_index : api_route_count;
	atomic_fetch_add(&m->requests[row][code_index(code)], 1);
	int b = 0;
	while (b < NBUCKETS && (double)micros / 1e6 > bucket_seconds[b])
		b++;
	atomic_fetch_add(&m->buckets[b], 1);
	atomic_fetch_add(&m->latency_sum_us, (unsigned long long)(micros > 0 ? micros : 0));
	atomic_fetch_add(&m->latency_count, 1);
}

struct buf {
	char *p;
	size_t len, cap;
	bool failed;
};

static void put(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct buf *b, const char *fmt, ...)
{
	if (b->failed)
		return;
	for (;;) {
		va_list ap;
		va_start(ap, fmt);
		int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			b->failed = true;
			return;
		}
		if ((size_t)n < b->cap - b->len) {
			b->len += (size_t)n;
			return;
		}
		size_t ncap = b->cap * 2 + (size_t)n;
		char *np = realloc(b->p, ncap);
		if (!np) {
			b->failed = true;
			return;
		}
		b->p = np;
		b->cap = ncap;
	}
}

/* Writes s as a label value: backslash, double quote and newline escaped
 * as the text exposition format requires. */
static void put_label(struct buf *b, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\' || *s == '"')
			put(b, "\\%c", *s);
		else if (*s == '\n')
			put(b, "\\n");
		else
			put(b, "%c", *s);
	}
}

/* Writes alg="...",op="..." for a statistics name: "sm2.sign" gives SM2
 * and sign, a name without a dot ("random", "keygen") gives none and the
 * name. */
static void put_alg_op(struct buf *b, const char *name)
{
	const char *dot = strchr(name, '.');
	put(b, "alg=\"");
	if (dot) {
		for (const char *p = name; p < dot; p++)
			put(b, "%c", *p >= 'a' && *p <= 'z' ? *p - 'a' + 'A' : *p);
	} else {
		put(b, "none");
	}
	put(b, "\",op=\"");
	put_label(b, dot ? dot + 1 : name);
	put(b, "\"");
}

/* The per-VSM service statistics (7.3.2's sessions and ops, read from each
 * VSM process's statistics file): chsm_vsm_ops_total and
 * chsm_vsm_ops_rate per VSM, algorithm and operation, and
 * chsm_vsm_sessions per VSM. A VSM without a running process has no
 * operation series and 0 sessions. Each family is written contiguously. */
static void put_vsm_ops(struct buf *b, struct api_ctx *ctx, const struct store_vsm *v, size_t nv)
{
	json_t **st = nv ? calloc(nv, sizeof(*st)) : NULL;
	if (nv && !st) {
		b->failed = true;
		return;
	}
	for (size_t i = 0; i < nv; i++)
		st[i] = api_vsm_status(ctx, &v[i]);
	static const struct {
		const char *name, *help, *type, *field;
	} families[] = {
		{"chsm_vsm_ops_total",
		 "Operations a VSM's service performed since its process started, by algorithm and "
		 "operation.",
		 "counter", "count"},
		{"chsm_vsm_ops_rate",
		 "Operations per second of a VSM's service over its last statistics interval (about "
		 "1 s).",
		 "gauge", "rate"},
	};
	for (size_t f = 0; f < 2; f++) {
		put(b, "# HELP %s %s\n# TYPE %s %s\n", families[f].name, families[f].help,
		    families[f].name, families[f].type);
		for (size_t i = 0; i < nv; i++) {
			const char *op;
			json_t *entry;
			json_object_foreach(json_object_get(st[i], "ops"), op, entry) {
				json_t *val = json_object_get(entry, families[f].field);
				put(b, "%s{vsm=\"", families[f].name);
				put_label(b, v[i].id);
				put(b, "\",");
				put_alg_op(b, op);
				if (json_is_integer(val))
					put(b, "} %lld\n", (long long)json_integer_value(val));
				else
					put(b, "} %.1f\n", json_number_value(val));
			}
		}
	}
	put(b, "# HELP chsm_vsm_sessions Open sessions on a VSM's service.\n"
	       "# TYPE chsm_vsm_sessions gauge\n");
	for (size_t i = 0; i < nv; i++) {
		put(b, "chsm_vsm_sessions{vsm=\"");
		put_label(b, v[i].id);
		put(b, "\"} %lld\n",
		    (long long)json_integer_value(json_object_get(st[i], "sessions")));
	}
	for (size_t i = 0; i < nv; i++)
		json_decref(st[i]);
	free(st);
}

char *api_metrics_render(struct api_ctx *ctx)
{
	struct api_metrics *m = ctx->metrics;
	struct buf b = {.p = malloc(8192), .cap = 8192};
	if (!b.p)
		return NULL;
	b.p[0] = '\0';
	put(&b, "# HELP chsm_requests_total Management requests by interface and code.\n");
	put(&b, "# TYPE chsm_requests_total counter\n");
	for (int r = 0; r <= api_route_count; r++) {
		for (int i = 0; i < NCODES; i++) {
			unsigned long long n = atomic_load(&m->requests[r][i]);
			if (!n)
				continue;
			put(&b, "chsm_requests_total{interface=\"%s\",code=\"%d\"} %llu\n",
			    r < api_route_count ? api_routes[r].interface : "none", known_codes[i], n);
		}
	}
	put(&b, "# HELP chsm_request_duration_seconds Time to answer a management request.\n");
	put(&b, "# TYPE chsm_request_duration_seconds histogram\n");
	unsigned long long cum = 0;
	for (int i = 0; i < NBUCKETS; i++) {
		cum += atomic_load(&m->buckets[i]);
		put(&b, "chsm_request_duration_seconds_bucket{le=\"%g\"} %llu\n", bucket_seconds[i], cum);
	}
	cum += atomic_load(&m->buckets[NBUCKETS]);
	put(&b, "chsm_request_duration_seconds_bucket{le=\"+Inf\"} %llu\n", cum);
	put(&b, "chsm_request_duration_seconds_sum %.6f\n", (double)atomic_load(&m->latency_sum_us) / 1e6);
	put(&b, "chsm_request_duration_seconds_count %llu\n", atomic_load(&m->latency_count));

	static const char *const task_states[] = {"pending", "running", "succeeded", "failed"};
	put(&b, "# HELP chsm_tasks Tasks kept by the CHSM, by state.\n# TYPE chsm_tasks gauge\n");
	for (size_t i = 0; i < 4; i++) {
		struct store_task *t = NULL;
		size_t n = 0;
		if (store_task_list_by_state(ctx->store, task_states[i], &t, &n) == 0) {
			put(&b, "chsm_tasks{state=\"%s\"} %zu\n", task_states[i], n);
			store_task_array_free(t, n);
		}
	}
	static const char *const vsm_states[] = {"creating", "stopped", "starting", "running",
						  "stopping", "restarting", "resetting", "upgrading",
						  "importing", "exporting", "deleting", "fault"};
	size_t counts[12] = {0};
	struct store_vsm *v = NULL;
	size_t nv = 0;
	if (store_vsm_list(ctx->store, &v, &nv) < 0) {
		v = NULL;
		nv = 0;
	}
	for (size_t i = 0; i < nv; i++)
		for (size_t s = 0; s < 12; s++)
			if (strcmp(v[i].state, vsm_states[s]) == 0)
				counts[s]++;
	put(&b, "# HELP chsm_vsms VSMs on this CHSM, by state.\n# TYPE chsm_vsms gauge\n");
	for (size_t s = 0; s < 12; s++)
		put(&b, "chsm_vsms{state=\"%s\"} %zu\n", vsm_states[s], counts[s]);
	put_vsm_ops(&b, ctx, v, nv);
	free(v);
	put(&b, "# HELP chsm_uptime_seconds Seconds since chsmd started.\n# TYPE chsm_uptime_seconds gauge\n");
	put(&b, "chsm_uptime_seconds %lld\n", (long long)((chsm_monotonic_ms() - ctx->boot_mono_ms) / 1000));
	put(&b, "# HELP chsm_log_dropped_total Log records not shipped: the spool was full.\n"
	    "# TYPE chsm_log_dropped_total counter\nchsm_log_dropped_total %llu\n",
	    (unsigned long long)logship_dropped_total());
	if (b.failed) {
		free(b.p);
		return NULL;
	}
	return b.p;
}
