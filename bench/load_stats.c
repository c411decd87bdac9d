/*
 * load_stats.c: counters, histogram, samples and the report of chsm-load
 * (load_stats.h).
 */
#define _GNU_SOURCE
#include "load_stats.h"

#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "crypto/crypto.h"

/* ---- histogram ---- */

static unsigned bucket_of(uint64_t v)
{
	if (v < 128)
		return (unsigned)v;
	int msb = 63 - __builtin_clzll(v);
	unsigned shift = (unsigned)(msb - 6);
	unsigned idx = (unsigned)(msb - 6) * 64 + (unsigned)(v >> shift);
	return idx < LOAD_HIST_BUCKETS ? idx : LOAD_HIST_BUCKETS - 1;
}

/* The middle of a bucket, in µs. */
static double bucket_value(unsigned idx)
{
	if (idx < 128)
		return idx;
	unsigned k = idx / 64, m = idx % 64 + 64, shift = k - 1;
	return (double)((uint64_t)m << shift) + (double)(1ull << shift) / 2.0;
}

int load_stats_init(struct load_stats *s)
{
	memset(s, 0, sizeof(*s));
	s->per_code = calloc(LOAD_MAX_CODE + 1, sizeof(uint64_t));
	return s->per_code ? 0 : -ENOMEM;
}

void load_stats_free(struct load_stats *s)
{
	free(s->per_code);
	s->per_code = NULL;
}

void load_stats_reset(struct load_stats *s)
{
	memset(s->hist, 0, sizeof(s->hist));
	s->count = s->max_us = 0;
	memset(s->per_kind, 0, sizeof(s->per_kind));
	memset(s->per_status, 0, sizeof(s->per_status));
	memset(s->per_code, 0, (LOAD_MAX_CODE + 1) * sizeof(uint64_t));
	s->no_code = s->verified_ok = s->verified_bad = 0;
}

void load_stats_record(struct load_stats *s, enum load_kind kind, int http_status, int code,
		       int64_t latency_us, int verified, bool measuring)
{
	s->all_answers++;
	if (http_status >= 500)
		s->all_5xx++;
	if (verified < 0)
		s->all_verified_bad++;
	if (!measuring)
		return;
	uint64_t v = latency_us > 0 ? (uint64_t)latency_us : 0;
	s->hist[bucket_of(v)]++;
	s->count++;
	if (v > s->max_us)
		s->max_us = v;
	s->per_kind[kind]++;
	if (http_status >= 0 && http_status <= LOAD_MAX_STATUS)
		s->per_status[http_status]++;
	if (code >= 0 && code <= LOAD_MAX_CODE)
		s->per_code[code]++;
	else
		s->no_code++;
	if (verified > 0)
		s->verified_ok++;
	else if (verified < 0)
		s->verified_bad++;
}

void load_stats_opened(struct load_stats *s) { s->opened++; }
void load_stats_connect_error(struct load_stats *s) { s->connect_errors++; }
void load_stats_closed_idle(struct load_stats *s) { s->closed_idle++; }
void load_stats_bad_answer(struct load_stats *s) { s->bad_answers++; }
void load_stats_backlog_full(struct load_stats *s) { s->backlog_full++; }

void load_stats_dropped(struct load_stats *s, bool timed_out)
{
	s->dropped++;
	if (timed_out)
		s->timeouts++;
}

bool load_stats_failed(const struct load_stats *s)
{
	return s->all_5xx || s->dropped || s->connect_errors || s->closed_idle || s->bad_answers ||
	       s->all_verified_bad || s->backlog_full;
}

double load_stats_quantile_us(const struct load_stats *s, double q)
{
	if (!s->count)
		return 0;
	uint64_t rank = (uint64_t)((double)s->count * q);
	if (rank >= s->count)
		rank = s->count - 1;
	uint64_t seen = 0;
	for (unsigned i = 0; i < LOAD_HIST_BUCKETS; i++) {
		seen += s->hist[i];
		if (seen > rank) {
			double v = bucket_value(i);
			return v > (double)s->max_us ? (double)s->max_us : v;
		}
	}
	return (double)s->max_us;
}

/* ---- processes ---- */

int proc_sample_read(int pid, struct proc_sample *ret)
{
	char path[64], buf[2048];
	if (pid)
		snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	else
		snprintf(path, sizeof(path), "/proc/self/stat");
	FILE *f = fopen(path, "re");
	if (!f)
		return -errno;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* fields after the command, which may hold spaces: from the last ')' */
	char *p = strrchr(buf, ')');
	if (!p)
		return -EIO;
	unsigned long long utime = 0, stime = 0;
	long rss_pages = 0;
	/* state(3) ... utime(14) stime(15) ... rss(24) */
	if (sscanf(p + 2,
		   "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d %*d "
		   "%*d %*u %*u %ld",
		   &utime, &stime, &rss_pages) != 3)
		return -EIO;
	long tick = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
	ret->cpu_s = (double)(utime + stime) / (double)(tick > 0 ? tick : 100);
	ret->rss_kib = rss_pages * (page > 0 ? page : 4096) / 1024;
	return 0;
}

/* ---- the crypto bound ---- */

static double thread_cpu_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int crypto_figures_measure(double seconds, struct crypto_figures *ret)
{
	crypto_sm2_key *key = NULL;
	uint8_t msg[200], sig[CRYPTO_SM2_SIG_DER_MAX];
	size_t siglen = 0;
	int r = crypto_sm2_generate(&key);
	if (r < 0)
		return r;
	if ((r = crypto_random(msg, sizeof(msg))) < 0)
		goto out;
	uint64_t n = 0;
	double t0 = thread_cpu_s(), t;
	do {
		for (int i = 0; i < 16; i++, n++)
			if ((r = crypto_sm2_sign(key, NULL, msg, sizeof(msg), sig, &siglen)) < 0)
				goto out;
		t = thread_cpu_s() - t0;
	} while (t < seconds);
	ret->sign_us = t * 1e6 / (double)n;
	n = 0;
	t0 = thread_cpu_s();
	do {
		for (int i = 0; i < 16; i++, n++)
			if ((r = crypto_sm2_verify(key, NULL, msg, sizeof(msg), sig, siglen)) < 0)
				goto out;
		t = thread_cpu_s() - t0;
	} while (t < seconds);
	ret->verify_us = t * 1e6 / (double)n;
	cpu_set_t set;
	ret->cores = sched_getaffinity(0, sizeof(set), &set) == 0 ? CPU_COUNT(&set)
								   : (int)sysconf(_SC_NPROCESSORS_ONLN);
	r = 0;
out:
	crypto_sm2_key_free(key);
	return r;
}

/* ---- the report ---- */

struct figures {
	double seconds, rps, p50, p99, p999, max_ms;
	double srv_cpu_s, srv_us_per_req, cli_cpu_s;
	double crypto_us, bound_rps, ratio;
	long rss0, rss1;
	double rss_growth_pct;
};

static void compute(const struct load_stats *s, const struct load_report *r, struct figures *f)
{
	memset(f, 0, sizeof(*f));
	f->seconds = (double)(s->t1_us - s->t0_us) / 1e6;
	f->rps = f->seconds > 0 ? (double)s->count / f->seconds : 0;
	f->p50 = load_stats_quantile_us(s, 0.50) / 1000.0;
	f->p99 = load_stats_quantile_us(s, 0.99) / 1000.0;
	f->p999 = load_stats_quantile_us(s, 0.999) / 1000.0;
	f->max_ms = (double)s->max_us / 1000.0;
	f->cli_cpu_s = r->cli1.cpu_s - r->cli0.cpu_s;
	if (r->server_pid) {
		f->srv_cpu_s = r->srv1.cpu_s - r->srv0.cpu_s;
		f->srv_us_per_req = s->count ? f->srv_cpu_s * 1e6 / (double)s->count : 0;
		f->rss0 = r->srv0.rss_kib;
		f->rss1 = r->srv1.rss_kib;
		f->rss_growth_pct = f->rss0 ? 100.0 * (double)(f->rss1 - f->rss0) / (double)f->rss0 : 0;
	}
	if (r->crypto) {
		f->crypto_us = r->crypto->sign_us + r->crypto->verify_us;
		f->bound_rps = f->crypto_us > 0 ? r->crypto->cores * 1e6 / f->crypto_us : 0;
		f->ratio = f->crypto_us > 0 ? f->srv_us_per_req / f->crypto_us : 0;
	}
}

void load_report_print(const struct load_stats *s, const struct load_report *r, FILE *out)
{
	struct figures f;
	compute(s, r, &f);
	if (r->rate > 0)
		fprintf(out, "chsm-load: %u connections, open loop at %.0f req/s, %.1f s measured after %.1f s warm-up\n\n",
			r->connections, r->rate, f.seconds, r->warmup_s);
	else
		fprintf(out, "chsm-load: %u connections, closed loop, %.1f s measured after %.1f s warm-up\n\n",
			r->connections, f.seconds, r->warmup_s);
	fprintf(out, "| figure | value |\n|---|---:|\n");
	fprintf(out, "| requests | %llu |\n", (unsigned long long)s->count);
	fprintf(out, "| req/s | %.1f |\n", f.rps);
	fprintf(out, "| latency p50 (ms) | %.2f |\n", f.p50);
	fprintf(out, "| latency p99 (ms) | %.2f |\n", f.p99);
	fprintf(out, "| latency p99.9 (ms) | %.2f |\n", f.p999);
	fprintf(out, "| latency max (ms) | %.2f |\n", f.max_ms);
	if (r->server_pid) {
		fprintf(out, "| server CPU per request (µs) | %.1f |\n", f.srv_us_per_req);
		fprintf(out, "| server CPU (s) | %.2f |\n", f.srv_cpu_s);
		fprintf(out, "| server RSS after warm-up (KiB) | %ld |\n", f.rss0);
		fprintf(out, "| server RSS at end (KiB) | %ld |\n", f.rss1);
		fprintf(out, "| server RSS max (KiB) | %ld |\n", r->rss_max_kib);
		fprintf(out, "| server RSS growth (%%) | %.1f |\n", f.rss_growth_pct);
	}
	if (r->crypto) {
		fprintf(out, "| SM2 sign (µs CPU) | %.1f |\n", r->crypto->sign_us);
		fprintf(out, "| SM2 verify (µs CPU) | %.1f |\n", r->crypto->verify_us);
		fprintf(out, "| crypto bound (%d cores, req/s) | %.0f |\n", r->crypto->cores,
			f.bound_rps);
		if (r->server_pid)
			fprintf(out, "| server CPU per request / crypto cost | %.2f |\n", f.ratio);
	}
	fprintf(out, "| client CPU (s) | %.2f |\n", f.cli_cpu_s);
	fprintf(out, "| signer: ahead / inline / stale | %llu / %llu / %llu |\n",
		(unsigned long long)r->pool.signed_ahead, (unsigned long long)r->pool.signed_inline,
		(unsigned long long)r->pool.stale_dropped);
	fprintf(out, "\n| requests by | counts |\n|---|---|\n| kind |");
	for (int k = 0; k < LOAD_KINDS; k++)
		if (s->per_kind[k])
			fprintf(out, " %s %llu", r->kind_names[k], (unsigned long long)s->per_kind[k]);
	fprintf(out, " |\n| HTTP status |");
	for (int i = 0; i <= LOAD_MAX_STATUS; i++)
		if (s->per_status[i])
			fprintf(out, " %d: %llu", i, (unsigned long long)s->per_status[i]);
	fprintf(out, " |\n| code |");
	for (int i = 0; i <= LOAD_MAX_CODE; i++)
		if (s->per_code[i])
			fprintf(out, " %d: %llu", i, (unsigned long long)s->per_code[i]);
	if (s->no_code)
		fprintf(out, " none: %llu", (unsigned long long)s->no_code);
	fprintf(out, " |\n");
	fprintf(out, "| connections (whole run) | opened %llu, connect errors %llu, dropped in flight %llu (timed out %llu), closed while idle %llu, malformed answers %llu |\n",
		(unsigned long long)s->opened, (unsigned long long)s->connect_errors,
		(unsigned long long)s->dropped, (unsigned long long)s->timeouts,
		(unsigned long long)s->closed_idle, (unsigned long long)s->bad_answers);
	fprintf(out, "| answers (whole run) | %llu, 5xx %llu%s |\n",
		(unsigned long long)s->all_answers, (unsigned long long)s->all_5xx,
		s->backlog_full ? ", open-loop backlog overflowed" : "");
	fprintf(out, "| device signatures checked | %llu good, %llu bad |\n",
		(unsigned long long)s->verified_ok, (unsigned long long)s->all_verified_bad);
}

static json_t *counts_object(const uint64_t *v, int n, const char *const *names)
{
	json_t *o = json_object();
	char key[16];
	for (int i = 0; i < n; i++) {
		if (!v[i])
			continue;
		if (!names)
			snprintf(key, sizeof(key), "%d", i);
		json_object_set_new(o, names ? names[i] : key, json_integer((json_int_t)v[i]));
	}
	return o;
}

int load_report_json(const struct load_stats *s, const struct load_report *r, const char *path)
{
	struct figures f;
	compute(s, r, &f);
	json_t *j = json_pack(
		"{s:i, s:f, s:f, s:f, s:I, s:f, s:{s:f, s:f, s:f, s:f}, s:o, s:o, s:o, s:I,"
		" s:{s:I, s:I, s:I, s:I, s:I, s:I}, s:I, s:I, s:{s:I, s:I}, s:f,"
		" s:{s:I, s:I, s:I, s:f}}",
		"connections", (int)r->connections, "rate", r->rate, "seconds", f.seconds,
		"warmupSeconds", r->warmup_s, "requests", (json_int_t)s->count, "reqPerSec", f.rps,
		"latencyMs", "p50", f.p50, "p99", f.p99, "p999", f.p999, "max", f.max_ms, "kinds",
		counts_object(s->per_kind, LOAD_KINDS, r->kind_names), "httpStatus",
		counts_object(s->per_status, LOAD_MAX_STATUS + 1, NULL), "codes",
		counts_object(s->per_code, LOAD_MAX_CODE + 1, NULL), "noCode",
		(json_int_t)s->no_code, "connectionsEvents", "opened", (json_int_t)s->opened,
		"connectErrors", (json_int_t)s->connect_errors, "dropped", (json_int_t)s->dropped,
		"timeouts", (json_int_t)s->timeouts, "closedIdle", (json_int_t)s->closed_idle,
		"malformed", (json_int_t)s->bad_answers, "answersWholeRun",
		(json_int_t)s->all_answers, "http5xxWholeRun", (json_int_t)s->all_5xx,
		"deviceSignatures", "good", (json_int_t)s->verified_ok, "bad",
		(json_int_t)s->all_verified_bad, "clientCpuSeconds", f.cli_cpu_s, "signer",
		"ahead", (json_int_t)r->pool.signed_ahead, "inline",
		(json_int_t)r->pool.signed_inline, "stale", (json_int_t)r->pool.stale_dropped,
		"cpuSeconds", r->pool.signer_cpu_s);
	if (!j)
		return -ENOMEM;
	json_object_set_new(j, "failed", json_boolean(load_stats_failed(s)));
	if (r->server_pid)
		json_object_set_new(j, "server",
				    json_pack("{s:i, s:f, s:f, s:I, s:I, s:I, s:f}", "pid",
					      r->server_pid, "cpuSeconds", f.srv_cpu_s,
					      "cpuUsPerRequest", f.srv_us_per_req, "rssKibStart",
					      (json_int_t)f.rss0, "rssKibEnd", (json_int_t)f.rss1,
					      "rssKibMax", (json_int_t)r->rss_max_kib,
					      "rssGrowthPercent", f.rss_growth_pct));
	if (r->crypto)
		json_object_set_new(j, "crypto",
				    json_pack("{s:f, s:f, s:i, s:f, s:f}", "sm2SignUs",
					      r->crypto->sign_us, "sm2VerifyUs", r->crypto->verify_us,
					      "cores", r->crypto->cores, "boundReqPerSec", f.bound_rps,
					      "serverCpuOverCrypto", f.ratio));
	int rc = json_dump_file(j, path, JSON_INDENT(2) | JSON_PRESERVE_ORDER) == 0 ? 0 : -EIO;
	json_decref(j);
	return rc;
}
