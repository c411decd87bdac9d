/*
 * load_stats.h: what chsm-load counts and prints (load.c): a latency
 * histogram, counts per kind, HTTP status and Appendix A code, connection
 * events, CPU and memory samples of processes, and the cost of the SM2
 * operations that bound a signed management request.
 *
 * Latencies go into a log-linear histogram of microseconds: exact below
 * 128 µs, then 64 buckets per power of two (under 1.6 % error), up to
 * about 19 hours. Percentiles report the middle of their bucket.
 */
#ifndef CHSM_BENCH_LOAD_STATS_H
#define CHSM_BENCH_LOAD_STATS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "load_pool.h"

#define LOAD_HIST_BUCKETS 2048
#define LOAD_MAX_CODE     9999
#define LOAD_MAX_STATUS   599

struct load_stats {
	int64_t t0_us, t1_us;             /* the measured interval */
	/* measured interval only */
	uint64_t hist[LOAD_HIST_BUCKETS];
	uint64_t count, max_us;
	uint64_t per_kind[LOAD_KINDS];
	uint64_t per_status[LOAD_MAX_STATUS + 1];
	uint64_t *per_code;               /* LOAD_MAX_CODE + 1 entries */
	uint64_t no_code;                 /* answers without an envelope code */
	uint64_t verified_ok, verified_bad;
	/* the whole run, warm-up and drain included */
	uint64_t all_answers, all_5xx, opened, connect_errors, dropped, timeouts, closed_idle,
		bad_answers, backlog_full, all_verified_bad;
};

int load_stats_init(struct load_stats *s);
void load_stats_free(struct load_stats *s);
/* Forgets the measured figures (the end of the warm-up); keeps the
 * whole-run counters. */
void load_stats_reset(struct load_stats *s);
/* One answer: verified is 1 (signature checked and good), -1 (bad), 0 (not
 * checked); code -1 when the body had no envelope code. */
void load_stats_record(struct load_stats *s, enum load_kind kind, int http_status, int code,
		       int64_t latency_us, int verified, bool measuring);
void load_stats_opened(struct load_stats *s);
void load_stats_connect_error(struct load_stats *s);
/* A connection ended with a request in flight (timed_out: no answer in
 * time). */
void load_stats_dropped(struct load_stats *s, bool timed_out);
void load_stats_closed_idle(struct load_stats *s);
void load_stats_bad_answer(struct load_stats *s);
void load_stats_backlog_full(struct load_stats *s);
/* Any 5xx, dropped or failed connection, timeout, malformed answer or bad
 * device signature in the whole run. */
bool load_stats_failed(const struct load_stats *s);
/* The latency at quantile q (0..1) in µs, 0 when nothing was measured. */
double load_stats_quantile_us(const struct load_stats *s, double q);

/* CPU time (user + system, all threads) and resident set of a process:
 * pid 0 is this process. Returns 0 or -errno. */
struct proc_sample {
	double cpu_s;
	long rss_kib;
};
int proc_sample_read(int pid, struct proc_sample *ret);

/* One SM2 verify and one SM2 sign of a 200-byte message (about a request's
 * string to sign) with the default ID, by the crypto module on this thread,
 * in µs of this thread's CPU time; cores: the CPUs the server may use. */
struct crypto_figures {
	double sign_us, verify_us;
	int cores;
};
/* Runs each operation for `seconds` of CPU time. Returns 0 or an error of
 * the crypto module. */
int crypto_figures_measure(double seconds, struct crypto_figures *ret);

struct load_report {
	unsigned connections;
	double rate, duration_s, warmup_s, presign_s;
	struct load_pool_stats pool;
	int server_pid;                  /* 0: none */
	struct proc_sample srv0, srv1;   /* after the warm-up, at the end */
	long rss_max_kib;
	struct proc_sample cli0, cli1;
	const struct crypto_figures *crypto; /* NULL: not measured */
	const char *const *kind_names;
};
/* Prints the figures as Markdown tables. */
void load_report_print(const struct load_stats *s, const struct load_report *r, FILE *f);
/* Writes them as a JSON object into path. Returns 0 or -errno. */
int load_report_json(const struct load_stats *s, const struct load_report *r, const char *path);

#endif
