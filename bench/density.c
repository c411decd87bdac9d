/*
 * density.c: bench_density, many running VSMs on one CHSM
 * (docs/PERFORMANCE.md "Density").
 *
 *   bench_density --url https://HOST:PORT --key PLATFORM.pem --ca CACERT.pem
 *                 --server-pid PID [--count N] [--port P] [--status-requests M]
 *
 * Creates and starts N VSMs (default 256) one after the other, each with
 * one request (7.3.12 with "start": true and a callbackUrl on this
 * program's own plain HTTP listener on loopback) on its own loopback address
 * 127.10.X.Y, port P (default 30000): create+start time is from sending the
 * request to receiving the task's callback (the task is read with
 * GET /tasks when no callback came within 200 ms; polling instead of the
 * callback would put a signed request, and its durable nonce, beside the
 * task every few milliseconds). Beside it, the task's own
 * finishedAt - createdAt, and the CPU time the chsmd service spent per VSM
 * over the whole loop and each idle chsm-vsmd's own CPU time. Then,
 * with all of them running and idle: the proportional set size (PSS,
 * /proc/PID/smaps_rollup) and RSS of every chsm-vsmd child of the chsmd
 * service process, chsmd's own RSS and PSS, and M (default 100) signed
 * GET /chsm/status/all one after the other, each timed from sending to the
 * verified answer. Prints a Markdown table with the targets of issue #8.
 * Exit 1 when a VSM could not be created or started (the figures so far
 * are printed), 2 for bad usage.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <jansson.h>

#include "common/util.h"
#include "load_stats.h"
#include "openchsm/chsm_client.h"

static int64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* The q-quantile of n sorted values (nearest rank). */
static double quantile(const double *v, size_t n, double q)
{
	if (!n)
		return 0;
	size_t i = (size_t)(q * (double)n);
	return v[i >= n ? n - 1 : i];
}

/* A "Name:  N kB" line of a /proc file, in KiB; -1 when missing. */
static long proc_kib(int pid, const char *file, const char *name)
{
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/%d/%s", pid, file);
	FILE *f = fopen(path, "re");
	long v = -1;
	size_t nl = strlen(name);
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, name, nl) == 0 && line[nl] == ':') {
			v = strtol(line + nl + 1, NULL, 10);
			break;
		}
	fclose(f);
	return v;
}

/* Children of pid whose command is comm (scans /proc). Returns how many
 * were written to out (at most cap). */
static size_t children_named(int pid, const char *comm, int *out, size_t cap)
{
	DIR *d = opendir("/proc");
	size_t n = 0;
	struct dirent *de;
	if (!d)
		return 0;
	while ((de = readdir(d)) != NULL && n < cap) {
		uint64_t p;
		char path[300], buf[512];
		if (chsm_parse_u64(de->d_name, INT32_MAX, &p) < 0)
			continue;
		snprintf(path, sizeof(path), "/proc/%s/stat", de->d_name);
		FILE *f = fopen(path, "re");
		if (!f)
			continue;
		size_t len = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
		buf[len] = '\0';
		char *open = strchr(buf, '('), *close = strrchr(buf, ')');
		if (!open || !close || close < open)
			continue;
		int ppid = 0;
		if (sscanf(close + 2, "%*c %d", &ppid) != 1 || ppid != pid)
			continue;
		*close = '\0';
		if (strcmp(open + 1, comm) == 0)
			out[n++] = (int)p;
	}
	closedir(d);
	return n;
}

/* The chsmd that serves: the pid itself, or its chsmd child when it is a
 * launcher. */
static int service_pid_of(int pid)
{
	int child;
	return children_named(pid, "chsmd", &child, 1) == 1 ? child : pid;
}

/* Sends one request; returns the answer's code (or -1 on a library error)
 * and the data object in *ret_data (NULL when none). */
static int call(chsm_client *cl, const char *method, const char *path, const char *body,
		json_t **ret_data)
{
	struct chsm_client_response r = {0};
	int rc = chsm_client_request(cl, method, path, body, NULL, &r);
	if (rc < 0) {
		fprintf(stderr, "bench_density: %s %s: %s (%s)\n", method, path,
			chsm_client_strerror(rc), chsm_client_last_error(cl));
		return -1;
	}
	if (ret_data)
		*ret_data = r.data ? json_loads(r.data, 0, NULL) : NULL;
	int code = r.code;
	if (code != 0)
		fprintf(stderr, "bench_density: %s %s: %d %s\n", method, path, code,
			r.message ? r.message : "");
	chsm_client_response_free(&r);
	return code;
}

/* A plain HTTP listener on 127.0.0.1 for task callbacks: returns the fd
 * and sets *ret_port, or -1. */
static int callback_listener(unsigned *ret_port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t alen = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 64) < 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &alen) < 0) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	*ret_port = ntohs(a.sin_port);
	return fd;
}

/* Waits up to timeout_ms for one callback; answers it 200. Returns the
 * task object (new ref) or NULL when none came or it did not parse. */
static json_t *callback_wait(int lfd, int timeout_ms)
{
	struct pollfd p = {.fd = lfd, .events = POLLIN};
	if (poll(&p, 1, timeout_ms) <= 0)
		return NULL;
	int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		return NULL;
	struct timeval tv = {2, 0};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	char buf[65536];
	size_t len = 0;
	json_t *task = NULL;
	for (;;) {
		ssize_t n = recv(fd, buf + len, sizeof(buf) - 1 - len, 0);
		if (n <= 0)
			break;
		len += (size_t)n;
		buf[len] = '\0';
		char *body = strstr(buf, "\r\n\r\n");
		char *cl = strcasestr(buf, "\r\nContent-Length:");
		if (!body || !cl)
			continue;
		size_t want = (size_t)strtoul(cl + 17, NULL, 10);
		body += 4;
		if ((size_t)(buf + len - body) >= want) {
			task = json_loadb(body, want, 0, NULL);
			break;
		}
		if (len == sizeof(buf) - 1)
			break;
	}
	static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
	ssize_t w = send(fd, ok, sizeof(ok) - 1, MSG_NOSIGNAL);
	(void)w;
	close(fd);
	return task;
}

/* Creates and starts VSM i; sets the client-observed and the task's own
 * time in ms. Returns 0 or -1. */
static int create_start(chsm_client *cl, int lfd, unsigned cb_port, unsigned i, unsigned port,
			double *ret_ms, double *ret_task_ms)
{
	char body[384], path[128], id[16];
	json_t *d = NULL;
	snprintf(id, sizeof(id), "d%u", i);
	snprintf(body, sizeof(body),
		 "{\"vsmId\":\"%s\",\"name\":\"density\",\"network\":{\"ipAddress\":"
		 "\"127.10.%u.%u\",\"prefixLength\":8,\"port\":%u},\"start\":true,"
		 "\"callbackUrl\":\"http://127.0.0.1:%u/cb\"}",
		 id, i / 250, i % 250 + 1, port, cb_port);
	int64_t t0 = now_us();
	if (call(cl, "POST", "/vsms", body, &d) != 0) {
		json_decref(d);
		return -1;
	}
	snprintf(path, sizeof(path), "/tasks/%s",
		 json_string_value(json_object_get(d, "taskId")) ?: "none");
	json_decref(d);
	for (int64_t limit = t0 + 120 * 1000000LL; now_us() < limit;) {
		json_t *t = callback_wait(lfd, 200);
		const char *tgt = t ? json_string_value(json_object_get(t, "target")) : NULL;
		if (t && (!tgt || strcmp(tgt, id) != 0)) {
			json_decref(t); /* a late callback of another VSM */
			continue;
		}
		if (!t && call(cl, "GET", path, NULL, &t) != 0) {
			json_decref(t);
			return -1;
		}
		const char *state = json_string_value(json_object_get(t, "state"));
		if (state && (strcmp(state, "succeeded") == 0 || strcmp(state, "failed") == 0)) {
			bool ok = strcmp(state, "succeeded") == 0;
			*ret_ms = (double)(now_us() - t0) / 1000.0;
			*ret_task_ms =
				(double)(json_integer_value(json_object_get(t, "finishedAt")) -
					 json_integer_value(json_object_get(t, "createdAt")));
			if (!ok)
				fprintf(stderr, "bench_density: %s: task failed: %s\n", id,
					json_string_value(json_object_get(t, "message")) ?: "?");
			json_decref(t);
			return ok ? 0 : -1;
		}
		json_decref(t);
	}
	fprintf(stderr, "bench_density: %s: no end of its task in 120 s\n", id);
	return -1;
}

/* CPU time (user + system) of a process in seconds, or 0. */
static double cpu_s(int pid)
{
	struct proc_sample ps;
	return proc_sample_read(pid, &ps) == 0 ? ps.cpu_s : 0;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"url", required_argument, NULL, 'u'},	 {"key", required_argument, NULL, 'k'},
		{"ca", required_argument, NULL, 'c'},	 {"server-pid", required_argument, NULL, 's'},
		{"count", required_argument, NULL, 'n'}, {"port", required_argument, NULL, 'p'},
		{"status-requests", required_argument, NULL, 'm'},
		{NULL, 0, NULL, 0},
	};
	struct chsm_client_options co = {0};
	uint64_t v, count = 256, port = 30000, requests = 100;
	int pid = 0, c;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'u': co.url = optarg; break;
		case 'k': co.platform_key_path = optarg; break;
		case 'c': co.cacert_path = optarg; break;
		case 's':
			if (chsm_parse_u64(optarg, INT32_MAX, &v) < 0 || !v)
				goto usage;
			pid = (int)v;
			break;
		case 'n':
			if (chsm_parse_u64(optarg, 4096, &count) < 0 || !count)
				goto usage;
			break;
		case 'p':
			if (chsm_parse_u64(optarg, 65535, &port) < 0 || !port)
				goto usage;
			break;
		case 'm':
			if (chsm_parse_u64(optarg, 100000, &requests) < 0 || !requests)
				goto usage;
			break;
		default:
			goto usage;
		}
	}
	if (optind != argc || !co.url || !co.platform_key_path || !co.cacert_path || !pid)
		goto usage;
	chsm_client *cl = NULL;
	int r = chsm_client_new(&co, &cl);
	if (r < 0) {
		fprintf(stderr, "bench_density: %s\n", chsm_client_strerror(r));
		return 1;
	}
	double *ms = calloc(count, sizeof(double)), *task_ms = calloc(count, sizeof(double));
	double *lat = calloc(requests, sizeof(double));
	int *vsmd = calloc(count + 16, sizeof(int));
	double *pss = calloc(count + 16, sizeof(double)), *rss = calloc(count + 16, sizeof(double));
	if (!ms || !task_ms || !lat || !vsmd || !pss || !rss)
		return 1;
	unsigned made = 0, cb_port = 0;
	int status = 0;
	int lfd = callback_listener(&cb_port);
	if (lfd < 0) {
		fprintf(stderr, "bench_density: no callback listener\n");
		return 1;
	}
	int svc = service_pid_of(pid);
	double svc_cpu0 = cpu_s(svc);
	int64_t t_all = now_us();
	for (; made < count; made++)
		if (create_start(cl, lfd, cb_port, made, (unsigned)port, &ms[made], &task_ms[made]) <
		    0) {
			status = 1;
			break;
		}
	double all_s = (double)(now_us() - t_all) / 1e6;
	double svc_cpu = cpu_s(svc) - svc_cpu0;
	close(lfd);
	/* the first and the last quarter, before sorting */
	size_t quarter = made / 4 ? made / 4 : 1;
	double first[1024], last[1024];
	size_t nq = quarter < 1024 ? quarter : 1024;
	for (size_t i = 0; made && i < nq; i++) {
		first[i] = ms[i];
		last[i] = ms[made - nq + i];
	}
	qsort(first, nq, sizeof(double), cmp_double);
	qsort(last, nq, sizeof(double), cmp_double);
	qsort(ms, made, sizeof(double), cmp_double);
	qsort(task_ms, made, sizeof(double), cmp_double);

	sleep(2); /* let the new processes settle (idle) */
	size_t nv = children_named(svc, "chsm-vsmd", vsmd, count + 16);
	double vsmd_cpu = 0;
	for (size_t i = 0; i < nv; i++) {
		vsmd_cpu += cpu_s(vsmd[i]);
		pss[i] = (double)proc_kib(vsmd[i], "smaps_rollup", "Pss");
		rss[i] = (double)proc_kib(vsmd[i], "status", "VmRSS");
	}
	qsort(pss, nv, sizeof(double), cmp_double);
	qsort(rss, nv, sizeof(double), cmp_double);
	double pss_sum = 0;
	for (size_t i = 0; i < nv; i++)
		pss_sum += pss[i];
	json_t *st = NULL;
	long running = -1;
	if (call(cl, "GET", "/chsm/status", NULL, &st) == 0)
		running = (long)json_integer_value(json_object_get(json_object_get(st, "vsms"),
								   "running"));
	json_decref(st);
	size_t got = 0;
	size_t all_bytes = 0;
	double all_cpu0 = cpu_s(svc), self_cpu0 = cpu_s(getpid());
	for (; got < requests; got++) {
		struct chsm_client_response resp = {0};
		int64_t t0 = now_us();
		r = chsm_client_request(cl, "GET", "/chsm/status/all", NULL, NULL, &resp);
		lat[got] = (double)(now_us() - t0) / 1000.0;
		all_bytes = resp.body_len;
		bool ok = r == 0 && resp.code == 0;
		chsm_client_response_free(&resp);
		if (!ok) {
			fprintf(stderr, "bench_density: GET /chsm/status/all failed\n");
			status = 1;
			break;
		}
	}
	double all_cpu = cpu_s(svc) - all_cpu0, self_cpu = cpu_s(getpid()) - self_cpu0;
	qsort(lat, got, sizeof(double), cmp_double);

	printf("Density: %u VSMs created and started one after the other (%.1f s in all)\n\n",
	       made, all_s);
	printf("| figure | value | target (issue #8) |\n|---|---:|---|\n");
	printf("| VSMs running (7.2.2) / chsm-vsmd processes | %ld / %zu | 256 |\n", running, nv);
	printf("| create+start median (ms) | %.1f | ≤ 50 |\n", quantile(ms, made, 0.5));
	printf("| create+start p99 (ms) | %.1f | |\n", quantile(ms, made, 0.99));
	printf("| create+start median, first / last quarter (ms) | %.1f / %.1f | |\n",
	       quantile(first, nq, 0.5), quantile(last, nq, 0.5));
	printf("| task createdAt → finishedAt median / p99 (ms) | %.0f / %.0f | |\n",
	       quantile(task_ms, made, 0.5), quantile(task_ms, made, 0.99));
	printf("| CPU per create+start: chsmd service / the new chsm-vsmd (ms) | %.1f / %.1f | |\n",
	       made ? svc_cpu * 1000.0 / made : 0.0, nv ? vsmd_cpu * 1000.0 / (double)nv : 0.0);
	printf("| idle chsm-vsmd PSS median / max (KiB) | %.0f / %.0f | ≤ 4096 |\n",
	       quantile(pss, nv, 0.5), nv ? pss[nv - 1] : 0.0);
	printf("| idle chsm-vsmd PSS sum (MiB) | %.1f | |\n", pss_sum / 1024.0);
	printf("| idle chsm-vsmd RSS median (KiB) | %.0f | |\n", quantile(rss, nv, 0.5));
	printf("| chsmd service RSS / PSS (KiB) | %ld / %ld | |\n", proc_kib(svc, "status", "VmRSS"),
	       proc_kib(svc, "smaps_rollup", "Pss"));
	printf("| GET /chsm/status/all p50 (ms) | %.1f | ≤ 20 |\n", quantile(lat, got, 0.5));
	printf("| GET /chsm/status/all p99 (ms) | %.1f | |\n", quantile(lat, got, 0.99));
	printf("| GET /chsm/status/all body (bytes) | %zu | |\n", all_bytes);
	printf("| CPU per GET /chsm/status/all: chsmd service / this client (ms) | %.2f / %.2f | |\n",
	       got ? all_cpu * 1000.0 / (double)got : 0.0,
	       got ? self_cpu * 1000.0 / (double)got : 0.0);
	printf("\n(create+start: from sending 7.3.12 with \"start\": true to the task's callback;"
	       " status/all: %zu signed requests one after the other, each timed to the verified"
	       " answer)\n",
	       got);
	chsm_client_free(cl);
	free(ms);
	free(task_ms);
	free(lat);
	free(vsmd);
	free(pss);
	free(rss);
	return status;
usage:
	fprintf(stderr, "usage: bench_density --url https://HOST:PORT --key PLATFORM.pem --ca CACERT.pem "
			"--server-pid PID [--count N] [--port P] [--status-requests M]\n");
	return 2;
}
