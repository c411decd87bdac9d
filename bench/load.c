/*
 * load.c: chsm-load, a load generator for the management API of a CHSM
 * (docs/PERFORMANCE.md "Management API"; the long load test of issue #7).
 *
 *   chsm-load --url https://HOST:PORT --key PLATFORM.pem
 *             (--ca CACERT.pem | --device-fingerprint HEX) [options]
 *
 * It keeps N keep-alive TLS connections busy with a mix of signed requests
 * (closed loop: each connection sends its next request when the answer
 * came; or open loop with --rate: requests start at fixed times whatever
 * the answers do, and latency counts from that time, so a slow server
 * cannot hide its queue). Requests are signed ahead of time by a pool
 * (load_pool.h), so the sending thread only writes bytes. Every
 * --verify-every'th answer has its device signature checked.
 *
 * Printed: requests per second, latency p50/p99/p99.9/max, counts per kind,
 * per HTTP status and per Appendix A code, connection errors and drops, and
 * with --server-pid the CHSM's CPU time per request and its RSS after the
 * warm-up and at the end; with --crypto-bound the cost of one SM2 verify
 * and one SM2 sign on this machine (the crypto module, as chsmd uses it)
 * and the request rate that bounds. --report-json writes the same as JSON.
 *
 * --not-chsm sends the same pre-signed requests to a server that is not a
 * CHSM (bench/mgmt.sh's floor: nginx answering a static 200): no set-up
 * calls, no device signature checks; answers count by their HTTP status.
 *
 * Exit status: 0; 1 with --fail-on-error when any answer was 5xx, a
 * connection was dropped or could not be made, a request timed out or a
 * device signature did not verify; 2 for bad usage; 3 when the set-up
 * (key, device key, base VSMs) failed.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <jansson.h>

#include "common/util.h"
#include "crypto/crypto.h"
#include "crypto/tls.h"
#include "load_pool.h"
#include "load_stats.h"
#include "openchsm/chsm_client.h"
#include "proto/auth.h"

#define MAX_CONNECTIONS  1024
#define MAX_HEAD_BYTES   (64 * 1024)
#define MAX_BODY_BYTES   (8 * 1024 * 1024)
#define RECONNECT_MS     100
#define DRAIN_MS         10000
/* Open loop: requests waiting for a free connection, at most. */
#define MAX_BACKLOG      (1 << 20)

static const char *const KIND_NAMES[LOAD_KINDS] = {
	"status", "status-all", "vsm-get", "vsm-status", "token", "create", "delete",
	"fingerprint",
};

struct options {
	const char *url, *key_path, *ca_path, *device_fp, *report_json, *tag;
	char host[256], port[8];
	unsigned connections, base_vsms, verify_every;
	double duration_s, warmup_s, rate;
	unsigned weights[LOAD_KINDS]; /* LOAD_CREATE: create-delete */
	size_t presign;
	long timeout_ms, delete_delay_ms;
	int server_pid;
	bool fail_on_error, crypto_bound, keep_vsms, not_chsm;
	double crypto_seconds;
};

enum conn_state { C_DOWN, C_CONNECTING, C_IDLE, C_BUSY };

struct conn {
	struct loadgen *lg;
	unsigned id;
	struct bufferevent *bev;
	enum conn_state st;
	bool established;
	/* the request in flight */
	struct load_req req;
	struct load_req del;  /* a create's DELETE, queued once it is accepted */
	int64_t start_us;  /* intended start (open loop) or send time */
	bool verify;
	/* the answer being read */
	bool have_head, close_after;
	int status;
	size_t clen;
	char sig[CHSM_SIGNATURE_B64_MAX + 1];
	struct conn *next_idle;
	struct event *retry;
};

/* A DELETE waiting for its turn (create-delete). */
struct pending_delete {
	struct load_req req;
	int64_t due_us;
	struct pending_delete *next;
};

struct loadgen {
	struct options o;
	struct event_base *base;
	crypto_tls_client_ctx *tls;
	load_pool *pool;
	crypto_sm2_key *device_key;
	struct sockaddr_storage addr;
	socklen_t addrlen;
	struct conn *conns;
	struct conn *idle_head, *idle_tail;
	struct pending_delete *del_head, *del_tail;
	/* created VSMs whose DELETE was not yet accepted: 1 per seq */
	uint8_t *live;
	size_t live_cap;
	unsigned cum_weight[LOAD_KINDS];
	unsigned total_weight;
	uint64_t rng;
	/* phases (monotonic µs) */
	int64_t t_begin, t_measure, t_end;
	bool measuring, sending, stopped;
	uint64_t issued;       /* open loop: requests started since t_begin */
	uint64_t backlog;      /* open loop: started, waiting for a connection */
	int64_t *backlog_times;
	size_t backlog_head;
	uint64_t responses_seen;
	struct load_stats st;
	struct event *tick;
	/* server and client samples */
	int service_pid;
	struct proc_sample srv0, srv1, cli0, cli1;
	long rss_max_kib;
};

static int64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---- options ---- */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: chsm-load --url https://HOST:PORT --key PLATFORM.pem\n"
		"                 (--ca CACERT.pem | --device-fingerprint HEX) [options]\n"
		"  --connections N       keep-alive TLS connections (default 32, at most %d)\n"
		"  --duration S          measured seconds (default 10)\n"
		"  --warmup S            seconds before measuring (default 2)\n"
		"  --rate R              open loop: R requests/s in all (default: closed loop)\n"
		"  --mix K=W,...         weights of: status status-all vsm-get vsm-status token\n"
		"                        create-delete fingerprint (default status=100)\n"
		"  --vsms N              base VSMs created for vsm-get/vsm-status/token (default 4)\n"
		"  --presign N           requests signed before the run (default 20000)\n"
		"  --verify-every N      check the device signature of every Nth answer (default 100; 0: none)\n"
		"  --timeout MS          an answer later than this drops the connection (default 30000)\n"
		"  --delete-delay MS     create-delete: DELETE a created VSM this long after (default 500)\n"
		"  --server-pid PID      chsmd (the launcher or the service): CPU per request, RSS\n"
		"  --crypto-bound        measure one SM2 verify + one SM2 sign here, and the bound\n"
		"  --crypto-seconds S    CPU seconds per operation for --crypto-bound (default 1)\n"
		"  --tag T               VSM ids T-bN and T-cN (default ld<pid>)\n"
		"  --keep-vsms           do not delete the base VSMs at the end\n"
		"  --not-chsm            the server is not a CHSM (e.g. nginx as a floor): no set-up\n"
		"                        calls, no device signature checks; any answer counts by its\n"
		"                        HTTP status\n"
		"  --report-json FILE    also write the figures as JSON\n"
		"  --fail-on-error       exit 1 on any 5xx, dropped or failed connection, timeout\n"
		"                        or bad device signature\n",
		MAX_CONNECTIONS);
}

static int parse_double(const char *s, double max, double *ret)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || *end || !(v >= 0) || v > max)
		return -EINVAL;
	*ret = v;
	return 0;
}

static int parse_uint(const char *s, uint64_t max, unsigned *ret)
{
	uint64_t v;
	if (chsm_parse_u64(s, max, &v) < 0)
		return -EINVAL;
	*ret = (unsigned)v;
	return 0;
}

static int parse_mix(const char *s, unsigned w[LOAD_KINDS])
{
	memset(w, 0, sizeof(unsigned) * LOAD_KINDS);
	char *copy = strdup(s), *save = NULL;
	int r = copy ? 0 : -ENOMEM;
	for (char *item = copy ? strtok_r(copy, ",", &save) : NULL; item && r == 0;
	     item = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(item, '=');
		unsigned v;
		if (!eq || parse_uint(eq + 1, 1000000, &v) < 0) {
			r = -EINVAL;
			break;
		}
		*eq = '\0';
		int k = -1;
		for (int i = 0; i < LOAD_KINDS; i++)
			if (i != LOAD_DELETE && i != LOAD_CREATE && strcmp(item, KIND_NAMES[i]) == 0)
				k = i;
		if (strcmp(item, "create-delete") == 0)
			k = LOAD_CREATE;
		if (k < 0)
			r = -EINVAL;
		else
			w[k] = v;
	}
	free(copy);
	unsigned total = 0;
	for (int i = 0; i < LOAD_KINDS; i++)
		total += w[i];
	return r < 0 ? r : total ? 0 : -EINVAL;
}

/* "https://HOST:PORT" or "https://[V6]:PORT". */
static int parse_url(struct options *o)
{
	const char *u = o->url;
	if (strncmp(u, "https://", 8) != 0)
		return -EINVAL;
	u += 8;
	const char *colon;
	size_t hlen;
	if (*u == '[') {
		const char *close = strchr(u, ']');
		if (!close || close[1] != ':')
			return -EINVAL;
		hlen = (size_t)(close - u - 1);
		memcpy(o->host, u + 1, hlen < sizeof(o->host) ? hlen : 0);
		colon = close + 1;
	} else {
		colon = strrchr(u, ':');
		if (!colon)
			return -EINVAL;
		hlen = (size_t)(colon - u);
		memcpy(o->host, u, hlen < sizeof(o->host) ? hlen : 0);
	}
	if (hlen == 0 || hlen >= sizeof(o->host))
		return -EINVAL;
	o->host[hlen] = '\0';
	unsigned port;
	const char *ps = colon + 1;
	size_t plen = strcspn(ps, "/");
	if (plen == 0 || plen >= sizeof(o->port) || (ps[plen] && strcmp(ps + plen, "/") != 0))
		return -EINVAL;
	memcpy(o->port, ps, plen);
	o->port[plen] = '\0';
	if (parse_uint(o->port, 65535, &port) < 0 || port == 0)
		return -EINVAL;
	return 0;
}

static int parse_options(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
		{"url", required_argument, NULL, 'u'},
		{"key", required_argument, NULL, 'k'},
		{"ca", required_argument, NULL, 'c'},
		{"device-fingerprint", required_argument, NULL, 'f'},
		{"connections", required_argument, NULL, 'n'},
		{"duration", required_argument, NULL, 'd'},
		{"warmup", required_argument, NULL, 'w'},
		{"rate", required_argument, NULL, 'r'},
		{"mix", required_argument, NULL, 'm'},
		{"vsms", required_argument, NULL, 'v'},
		{"presign", required_argument, NULL, 'p'},
		{"verify-every", required_argument, NULL, 'V'},
		{"timeout", required_argument, NULL, 't'},
		{"delete-delay", required_argument, NULL, 'D'},
		{"server-pid", required_argument, NULL, 's'},
		{"crypto-bound", no_argument, NULL, 'B'},
		{"crypto-seconds", required_argument, NULL, 'S'},
		{"tag", required_argument, NULL, 'T'},
		{"keep-vsms", no_argument, NULL, 'K'},
		{"not-chsm", no_argument, NULL, 'N'},
		{"report-json", required_argument, NULL, 'j'},
		{"fail-on-error", no_argument, NULL, 'F'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	static char tag[32];
	*o = (struct options){.connections = 32, .duration_s = 10, .warmup_s = 2,
			      .base_vsms = 4, .verify_every = 100, .presign = 20000,
			      .timeout_ms = 30000, .delete_delay_ms = 500, .crypto_seconds = 1};
	o->weights[LOAD_STATUS] = 100;
	snprintf(tag, sizeof(tag), "ld%ld", (long)getpid());
	o->tag = tag;
	int c, li = 0;
	unsigned u;
	uint64_t v;
	while ((c = getopt_long(argc, argv, "", longopts, &li)) != -1) {
		int bad = 0;
		switch (c) {
		case 'u': o->url = optarg; break;
		case 'k': o->key_path = optarg; break;
		case 'c': o->ca_path = optarg; break;
		case 'f': o->device_fp = optarg; break;
		case 'n': bad = parse_uint(optarg, MAX_CONNECTIONS, &o->connections) < 0 ||
			      o->connections == 0; break;
		case 'd': bad = parse_double(optarg, 86400, &o->duration_s) < 0 ||
			      o->duration_s <= 0; break;
		case 'w': bad = parse_double(optarg, 3600, &o->warmup_s) < 0; break;
		case 'r': bad = parse_double(optarg, 1e6, &o->rate) < 0 || o->rate <= 0; break;
		case 'm': bad = parse_mix(optarg, o->weights) < 0; break;
		case 'v': bad = parse_uint(optarg, 256, &o->base_vsms) < 0 || !o->base_vsms; break;
		case 'p': bad = chsm_parse_u64(optarg, 10000000, &v) < 0; o->presign = v; break;
		case 'V': bad = parse_uint(optarg, 1000000000, &o->verify_every) < 0; break;
		case 't': bad = parse_uint(optarg, 3600000, &u) < 0 || !u; o->timeout_ms = u; break;
		case 'D': bad = parse_uint(optarg, 600000, &u) < 0; o->delete_delay_ms = u; break;
		case 's': bad = parse_uint(optarg, INT32_MAX, &u) < 0 || !u; o->server_pid = (int)u;
			break;
		case 'B': o->crypto_bound = true; break;
		case 'S': bad = parse_double(optarg, 60, &o->crypto_seconds) < 0 ||
			      o->crypto_seconds <= 0; break;
		case 'T': o->tag = optarg;
			bad = strlen(optarg) == 0 || strlen(optarg) > 24 ||
			      strspn(optarg, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
					     "0123456789") != strlen(optarg);
			break;
		case 'K': o->keep_vsms = true; break;
		case 'N': o->not_chsm = true; break;
		case 'j': o->report_json = optarg; break;
		case 'F': o->fail_on_error = true; break;
		case 'h': usage(stdout); exit(0);
		default: return -EINVAL;
		}
		if (bad) {
			fprintf(stderr, "chsm-load: bad value for --%s: %s\n", longopts[li].name,
				optarg ? optarg : "");
			return -EINVAL;
		}
	}
	if (optind != argc || !o->url || !o->key_path || (!o->ca_path && !o->device_fp)) {
		fprintf(stderr, "chsm-load: --url, --key and --ca or --device-fingerprint are required\n");
		return -EINVAL;
	}
	if (parse_url(o) < 0) {
		fprintf(stderr, "chsm-load: --url must be https://HOST:PORT\n");
		return -EINVAL;
	}
	return 0;
}

/* ---- set-up through libchsmclient ---- */

static int client_call(chsm_client *cl, const char *method, const char *path, const char *body,
		       struct chsm_client_response *ret)
{
	int r = chsm_client_request(cl, method, path, body, NULL, ret);
	if (r < 0)
		fprintf(stderr, "chsm-load: %s %s: %s (%s)\n", method, path, chsm_client_strerror(r),
			chsm_client_last_error(cl));
	return r;
}

/* Runs an asynchronous request to its end; retries while the target is
 * busy (3005). Returns 0 when the task succeeded, or when `missing_ok` and
 * the VSM is not there (3001). */
static int client_task(chsm_client *cl, const char *method, const char *path, const char *body,
		       bool missing_ok)
{
	for (int attempt = 0; attempt < 100; attempt++) {
		struct chsm_client_response resp = {0};
		int r = client_call(cl, method, path, body, &resp);
		if (r < 0)
			return r;
		if (resp.code == 3005) {
			chsm_client_response_free(&resp);
			usleep(100000);
			continue;
		}
		if (missing_ok && resp.code == 3001) {
			chsm_client_response_free(&resp);
			return 0;
		}
		json_t *data = resp.code == 0 && resp.data ? json_loads(resp.data, 0, NULL) : NULL;
		const char *task = json_string_value(json_object_get(data, "taskId"));
		if (!task) {
			fprintf(stderr, "chsm-load: %s %s: %d %s\n", method, path, resp.code,
				resp.message ? resp.message : "");
			json_decref(data);
			chsm_client_response_free(&resp);
			return -EIO;
		}
		struct chsm_client_response done = {0};
		r = chsm_client_wait_task(cl, task, 120000, NULL, NULL, &done);
		json_decref(data);
		chsm_client_response_free(&resp);
		json_t *t = r == 0 && done.data ? json_loads(done.data, 0, NULL) : NULL;
		const char *state = json_string_value(json_object_get(t, "state"));
		bool ok = state && strcmp(state, "succeeded") == 0;
		if (!ok)
			fprintf(stderr, "chsm-load: %s %s: task %s\n", method, path,
				state ? state : chsm_client_strerror(r));
		json_decref(t);
		chsm_client_response_free(&done);
		return ok ? 0 : -EIO;
	}
	return -EBUSY;
}

static int setup(struct loadgen *lg, chsm_client **ret_cl)
{
	struct options *o = &lg->o;
	struct chsm_client_options co = {.url = o->url, .platform_key_path = o->key_path,
					  .device_fingerprint = o->device_fp,
					  .cacert_path = o->ca_path};
	chsm_client *cl = NULL;
	int r = chsm_client_new(&co, &cl);
	if (r < 0) {
		fprintf(stderr, "chsm-load: client: %s\n", chsm_client_strerror(r));
		return r;
	}
	*ret_cl = cl;
	/* The device key, as the client verified it (7.2.1 is signed by it). */
	struct chsm_client_response resp = {0};
	if ((r = client_call(cl, "GET", "/chsm", NULL, &resp)) < 0)
		return r;
	json_t *d = resp.data ? json_loads(resp.data, 0, NULL) : NULL;
	const char *pem = json_string_value(json_object_get(d, "devicePublicKey"));
	r = pem ? crypto_sm2_load_public_pem(pem, strlen(pem), &lg->device_key) : -EIO;
	json_decref(d);
	chsm_client_response_free(&resp);
	if (r < 0) {
		fprintf(stderr, "chsm-load: no device key in 7.2.1\n");
		return r;
	}
	bool need_base = lg->o.weights[LOAD_VSM_GET] || lg->o.weights[LOAD_VSM_STATUS] ||
			 lg->o.weights[LOAD_TOKEN];
	for (unsigned i = 0; need_base && i < o->base_vsms; i++) {
		char id[80], body[256];
		load_vsm_id(o->tag, true, i, id, sizeof(id));
		snprintf(body, sizeof(body),
			 "{\"vsmId\":\"%s\",\"name\":\"load\",\"network\":{\"ipAddress\":"
			 "\"127.77.0.%u\",\"prefixLength\":8,\"port\":30000}}",
			 id, i + 1);
		if ((r = client_task(cl, "POST", "/vsms", body, false)) < 0)
			return r;
	}
	return 0;
}

/* Deletes what the run created: created VSMs not yet deleted, and the base
 * VSMs unless kept. */
static void teardown(struct loadgen *lg, chsm_client *cl)
{
	char id[80], path[128];
	for (size_t i = 0; i < lg->live_cap; i++) {
		if (!lg->live[i])
			continue;
		load_vsm_id(lg->o.tag, false, (uint32_t)i, id, sizeof(id));
		snprintf(path, sizeof(path), "/vsms/%s", id);
		client_task(cl, "DELETE", path, NULL, true);
	}
	bool had_base = lg->o.weights[LOAD_VSM_GET] || lg->o.weights[LOAD_VSM_STATUS] ||
			lg->o.weights[LOAD_TOKEN];
	for (unsigned i = 0; had_base && !lg->o.keep_vsms && i < lg->o.base_vsms; i++) {
		load_vsm_id(lg->o.tag, true, i, id, sizeof(id));
		snprintf(path, sizeof(path), "/vsms/%s", id);
		client_task(cl, "DELETE", path, NULL, true);
	}
}

/* ---- connections ---- */

static void conn_open(struct conn *c);
static void dispatch(struct loadgen *lg);

static void mark_live(struct loadgen *lg, uint32_t seq, uint8_t v)
{
	if (seq >= lg->live_cap) {
		size_t cap = lg->live_cap ? lg->live_cap : 4096;
		while (cap <= seq)
			cap *= 2;
		uint8_t *n = realloc(lg->live, cap);
		if (!n)
			return;
		memset(n + lg->live_cap, 0, cap - lg->live_cap);
		lg->live = n;
		lg->live_cap = cap;
	}
	lg->live[seq] = v;
}

static void idle_push(struct loadgen *lg, struct conn *c)
{
	c->st = C_IDLE;
	c->next_idle = NULL;
	if (lg->idle_tail)
		lg->idle_tail->next_idle = c;
	else
		lg->idle_head = c;
	lg->idle_tail = c;
}

static struct conn *idle_pop(struct loadgen *lg)
{
	struct conn *c = lg->idle_head;
	while (c && c->st != C_IDLE) { /* went down while idle */
		lg->idle_head = c->next_idle;
		c = lg->idle_head;
	}
	if (!c) {
		lg->idle_tail = NULL;
		return NULL;
	}
	lg->idle_head = c->next_idle;
	if (!lg->idle_head)
		lg->idle_tail = NULL;
	c->next_idle = NULL;
	return c;
}

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	if (!c->lg->stopped)
		conn_open(c);
}

/* The connection ended: count it, free it, and open it again later. */
static void conn_down(struct conn *c, bool timed_out)
{
	struct loadgen *lg = c->lg;
	if (c->st == C_BUSY) {
		load_stats_dropped(&lg->st, timed_out);
		if (c->req.kind == LOAD_CREATE)
			mark_live(lg, c->req.seq, 1); /* it may exist: delete it at the end */
		load_req_free(&c->req);
		load_req_free(&c->del);
	} else if (c->established) {
		if (!lg->stopped)
			load_stats_closed_idle(&lg->st);
	} else {
		load_stats_connect_error(&lg->st);
	}
	if (c->bev)
		bufferevent_free(c->bev);
	c->bev = NULL;
	c->st = C_DOWN;
	c->established = false;
	if (!lg->stopped) {
		struct timeval tv = {0, RECONNECT_MS * 1000};
		evtimer_add(c->retry, &tv);
	}
}

/* Open loop: the oldest intended start waiting for a connection, or -1. */
static int64_t backlog_pop(struct loadgen *lg)
{
	if (!lg->backlog)
		return -1;
	int64_t t = lg->backlog_times[lg->backlog_head];
	lg->backlog_head = (lg->backlog_head + 1) % MAX_BACKLOG;
	lg->backlog--;
	return t;
}

static enum load_kind pick_kind(struct loadgen *lg)
{
	/* xorshift64 */
	lg->rng ^= lg->rng << 13;
	lg->rng ^= lg->rng >> 7;
	lg->rng ^= lg->rng << 17;
	unsigned x = (unsigned)(lg->rng % lg->total_weight);
	for (int k = 0; k < LOAD_KINDS; k++)
		if (x < lg->cum_weight[k])
			return (enum load_kind)k;
	return LOAD_STATUS;
}

/* Sends the next request on an idle connection; start_us: its intended
 * start. Returns false when nothing could be sent. */
static bool conn_send(struct conn *c, int64_t start_us)
{
	struct loadgen *lg = c->lg;
	enum load_kind k = pick_kind(lg);
	int r;
	if (k == LOAD_CREATE && lg->del_head && lg->del_head->due_us <= now_us()) {
		struct pending_delete *d = lg->del_head;
		lg->del_head = d->next;
		if (!lg->del_head)
			lg->del_tail = NULL;
		c->req = d->req;
		free(d);
		if (chsm_now_ms() - c->req.signed_ms > LOAD_POOL_MAX_AGE_MS) {
			uint32_t seq = c->req.seq;
			load_req_free(&c->req);
			if (load_pool_sign_now(lg->pool, LOAD_DELETE, seq, &c->req) < 0)
				return false;
		}
	} else {
		r = load_pool_take(lg->pool, k, &c->req, k == LOAD_CREATE ? &c->del : NULL);
		if (r < 0) {
			fprintf(stderr, "chsm-load: signing: %s\n", crypto_strerror(r));
			return false;
		}
		if (k == LOAD_CREATE)
			mark_live(lg, c->req.seq, 1);
	}
	c->start_us = start_us;
	c->have_head = false;
	c->close_after = false;
	c->sig[0] = '\0';
	c->verify = lg->o.verify_every && ++lg->responses_seen % lg->o.verify_every == 0;
	c->st = C_BUSY;
	struct timeval tv = {lg->o.timeout_ms / 1000, (lg->o.timeout_ms % 1000) * 1000};
	bufferevent_set_timeouts(c->bev, &tv, NULL);
	if (bufferevent_write(c->bev, c->req.wire, c->req.len) < 0) {
		conn_down(c, false);
		return false;
	}
	return true;
}

/* Puts idle connections to work: closed loop, every one; open loop, as
 * many as requests are due. */
static void dispatch(struct loadgen *lg)
{
	if (!lg->sending)
		return;
	if (lg->o.rate <= 0) {
		struct conn *c;
		while ((c = idle_pop(lg)) != NULL)
			if (!conn_send(c, now_us()))
				break;
		return;
	}
	while (lg->backlog) {
		struct conn *c = idle_pop(lg);
		if (!c)
			return;
		int64_t t = backlog_pop(lg);
		if (!conn_send(c, t))
			return;
	}
}

/* Queues a DELETE (taking *req) to be sent delete_delay_ms after t. */
static void delete_later(struct loadgen *lg, struct load_req *req, int64_t t)
{
	struct pending_delete *d = calloc(1, sizeof(*d));
	if (!d) {
		load_req_free(req);
		return;
	}
	d->req = *req;
	memset(req, 0, sizeof(*req));
	d->due_us = t + lg->o.delete_delay_ms * 1000;
	if (lg->del_tail)
		lg->del_tail->next = d;
	else
		lg->del_head = d;
	lg->del_tail = d;
}

/* The answer in c is complete: record it and go on. */
static void answered(struct conn *c, const char *body, size_t blen)
{
	struct loadgen *lg = c->lg;
	int64_t t = now_us();
	int code = -1;
	if (blen > 8 && memcmp(body, "{\"code\":", 8) == 0) {
		char *end;
		long v = strtol(body + 8, &end, 10);
		if (end != body + 8 && v >= 0 && v < 100000)
			code = (int)v;
	} else if (blen) {
		json_t *j = json_loadb(body, blen, 0, NULL);
		json_t *jc = json_object_get(j, "code");
		if (json_is_integer(jc))
			code = (int)json_integer_value(jc);
		json_decref(j);
	}
	int verified = 0;
	if (c->verify) {
		int r = gmt_verify_response(lg->device_key, c->req.nonce, c->status, body, blen,
					    c->sig);
		verified = r == 0 ? 1 : -1;
	}
	enum load_kind k = (enum load_kind)c->req.kind;
	load_stats_record(&lg->st, k, c->status, code, t - c->start_us, verified, lg->measuring);
	if (k == LOAD_CREATE && c->status == 202) {
		/* The create was accepted: its DELETE goes after the delay. */
		delete_later(lg, &c->del, t);
	} else if (k == LOAD_CREATE) {
		mark_live(lg, c->req.seq, 0);
	} else if (k == LOAD_DELETE && c->status == 202) {
		mark_live(lg, c->req.seq, 0);
	} else if (k == LOAD_DELETE && code == 3005) {
		/* still busy (its create task): again later, signed anew */
		struct load_req again;
		if (load_pool_sign_now(lg->pool, LOAD_DELETE, c->req.seq, &again) == 0)
			delete_later(lg, &again, t);
	}
	load_req_free(&c->del);
	load_req_free(&c->req);
	bufferevent_set_timeouts(c->bev, NULL, NULL);
	if (c->close_after) {
		conn_down(c, false);
		return;
	}
	idle_push(lg, c);
	dispatch(lg);
}

/* Parses the status line and the headers we need. Returns 0 or -EPROTO. */
static int parse_head(struct conn *c, const char *h, size_t len)
{
	if (len < 12 || memcmp(h, "HTTP/1.", 7) != 0)
		return -EPROTO;
	int status = 0;
	for (int i = 9; i < 12; i++) {
		if (h[i] < '0' || h[i] > '9')
			return -EPROTO;
		status = status * 10 + (h[i] - '0');
	}
	c->status = status;
	c->clen = 0;
	bool have_len = false;
	const char *p = memchr(h, '\n', len), *end = h + len;
	while (p && p + 1 < end) {
		const char *line = p + 1;
		const char *eol = memchr(line, '\n', (size_t)(end - line));
		if (!eol)
			break;
		size_t ll = (size_t)(eol - line);
		if (ll && line[ll - 1] == '\r')
			ll--;
		const char *colon = memchr(line, ':', ll);
		if (colon) {
			size_t nl = (size_t)(colon - line);
			const char *v = colon + 1;
			while (v < line + ll && (*v == ' ' || *v == '\t'))
				v++;
			size_t vl = (size_t)(line + ll - v);
			if (nl == 14 && strncasecmp(line, "Content-Length", 14) == 0) {
				char num[24];
				uint64_t n;
				if (vl == 0 || vl >= sizeof(num))
					return -EPROTO;
				memcpy(num, v, vl);
				num[vl] = '\0';
				if (chsm_parse_u64(num, MAX_BODY_BYTES, &n) < 0)
					return -EPROTO;
				c->clen = (size_t)n;
				have_len = true;
			} else if (nl == 10 && strncasecmp(line, "Connection", 10) == 0 &&
				   vl == 5 && strncasecmp(v, "close", 5) == 0) {
				c->close_after = true;
			} else if (nl == strlen(GMT_HDR_DEVICE_SIGNATURE) &&
				   strncasecmp(line, GMT_HDR_DEVICE_SIGNATURE, nl) == 0 &&
				   vl < sizeof(c->sig)) {
				memcpy(c->sig, v, vl);
				c->sig[vl] = '\0';
			}
		}
		p = eol;
	}
	/* The CHSM always sends Content-Length; anything else is not followed. */
	return have_len ? 0 : -EPROTO;
}

static void read_cb(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	for (;;) {
		if (c->st != C_BUSY) {
			/* bytes nobody asked for */
			if (evbuffer_get_length(in))
				conn_down(c, false);
			return;
		}
		if (!c->have_head) {
			struct evbuffer_ptr e = evbuffer_search(in, "\r\n\r\n", 4, NULL);
			if (e.pos < 0) {
				if (evbuffer_get_length(in) > MAX_HEAD_BYTES)
					conn_down(c, false);
				return;
			}
			size_t hl = (size_t)e.pos + 4;
			const char *h = (const char *)evbuffer_pullup(in, (ssize_t)hl);
			if (!h || parse_head(c, h, hl) < 0) {
				load_stats_bad_answer(&c->lg->st);
				conn_down(c, false);
				return;
			}
			evbuffer_drain(in, hl);
			c->have_head = true;
		}
		if (evbuffer_get_length(in) < c->clen)
			return;
		const char *body = c->clen ? (const char *)evbuffer_pullup(in, (ssize_t)c->clen) : "";
		if (!body) {
			conn_down(c, false);
			return;
		}
		answered(c, body, c->clen);
		if (c->bev)
			evbuffer_drain(in, c->clen);
		if (!c->bev || c->st != C_BUSY)
			return;
	}
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct conn *c = arg;
	if (what & BEV_EVENT_CONNECTED) {
		c->established = true;
		load_stats_opened(&c->lg->st);
		idle_push(c->lg, c);
		dispatch(c->lg);
		return;
	}
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT))
		conn_down(c, (what & BEV_EVENT_TIMEOUT) != 0);
}

static void conn_open(struct conn *c)
{
	struct loadgen *lg = c->lg;
	int fd = socket(lg->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&lg->addr, lg->addrlen) < 0) {
		if (fd >= 0)
			close(fd);
		c->established = false;
		c->st = C_CONNECTING;
		conn_down(c, false);
		return;
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	evutil_make_socket_nonblocking(fd);
	c->bev = crypto_tls_client_bufferevent_new(lg->tls, lg->base, fd, lg->o.host);
	if (!c->bev) {
		close(fd);
		c->st = C_CONNECTING;
		conn_down(c, false);
		return;
	}
	c->st = C_CONNECTING;
	c->established = false;
	bufferevent_setcb(c->bev, read_cb, NULL, event_cb, c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	/* a bufferevent made on a connected socket reports CONNECTED after
	 * the handshake */
}

/* ---- phases ---- */

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct loadgen *lg = arg;
	int64_t t = now_us();
	if (lg->service_pid) {
		struct proc_sample s;
		if (proc_sample_read(lg->service_pid, &s) == 0 && s.rss_kib > lg->rss_max_kib &&
		    lg->measuring)
			lg->rss_max_kib = s.rss_kib;
	}
	if (!lg->measuring && lg->sending && t >= lg->t_measure) {
		load_stats_reset(&lg->st);
		lg->measuring = true;
		if (lg->service_pid)
			proc_sample_read(lg->service_pid, &lg->srv0);
		proc_sample_read(0, &lg->cli0);
		lg->rss_max_kib = lg->srv0.rss_kib;
		lg->st.t0_us = t;
	}
	if (lg->sending && t >= lg->t_end) {
		lg->sending = false;
		lg->measuring = false;
		lg->st.t1_us = t;
		if (lg->service_pid)
			proc_sample_read(lg->service_pid, &lg->srv1);
		proc_sample_read(0, &lg->cli1);
	}
	if (lg->sending && lg->o.rate > 0) {
		uint64_t due = (uint64_t)((double)(t - lg->t_begin) * lg->o.rate / 1e6);
		while (lg->issued < due) {
			int64_t at = lg->t_begin + (int64_t)((double)lg->issued * 1e6 / lg->o.rate);
			lg->issued++;
			if (lg->backlog >= MAX_BACKLOG) {
				load_stats_backlog_full(&lg->st);
				continue;
			}
			lg->backlog_times[(lg->backlog_head + lg->backlog) % MAX_BACKLOG] = at;
			lg->backlog++;
		}
		dispatch(lg);
	}
	if (!lg->sending) {
		bool busy = false;
		for (unsigned i = 0; i < lg->o.connections; i++)
			busy |= lg->conns[i].st == C_BUSY;
		if (!busy || t >= lg->t_end + DRAIN_MS * 1000) {
			lg->stopped = true;
			event_base_loopexit(lg->base, NULL);
		}
	}
}

static int service_pid_of(int pid)
{
	/* chsmd run may be a launcher with the service as its chsmd child. */
	char path[64], buf[4096];
	snprintf(path, sizeof(path), "/proc/%d/task/%d/children", pid, pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return pid;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	char *save = NULL;
	for (char *tok = strtok_r(buf, " \n", &save); tok; tok = strtok_r(NULL, " \n", &save)) {
		char comm[64] = "";
		snprintf(path, sizeof(path), "/proc/%s/comm", tok);
		FILE *cf = fopen(path, "re");
		if (!cf)
			continue;
		if (fgets(comm, sizeof(comm), cf))
			comm[strcspn(comm, "\n")] = '\0';
		fclose(cf);
		uint64_t child;
		if (strcmp(comm, "chsmd") == 0 && chsm_parse_u64(tok, INT32_MAX, &child) == 0)
			return (int)child;
	}
	return pid;
}

static int resolve(struct loadgen *lg)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV}, *ai;
	int r = getaddrinfo(lg->o.host, lg->o.port, &hints, &ai);
	if (r != 0) {
		fprintf(stderr, "chsm-load: %s: %s\n", lg->o.host, gai_strerror(r));
		return -EINVAL;
	}
	memcpy(&lg->addr, ai->ai_addr, ai->ai_addrlen);
	lg->addrlen = ai->ai_addrlen;
	freeaddrinfo(ai);
	return 0;
}

int main(int argc, char **argv)
{
	static struct loadgen lg;
	int status = 3;
	chsm_client *cl = NULL;
	crypto_sm2_key *key = NULL;
	char *pem = NULL;
	size_t pemlen = 0;
	if (parse_options(argc, argv, &lg.o) < 0) {
		usage(stderr);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	struct options *o = &lg.o;
	struct crypto_figures cf = {0};
	if (o->crypto_bound && crypto_figures_measure(o->crypto_seconds, &cf) < 0) {
		fprintf(stderr, "chsm-load: crypto measurement failed\n");
		return 3;
	}
	if (resolve(&lg) < 0)
		return 3;
	int r = chsm_read_file(o->key_path, 64 * 1024, &pem, &pemlen);
	if (r == 0)
		r = crypto_sm2_load_private_pem(pem, pemlen, &key);
	crypto_free_secret(pem, pemlen);
	if (r < 0) {
		fprintf(stderr, "chsm-load: %s: not an SM2 private key (%s)\n", o->key_path,
			crypto_strerror(r));
		return 3;
	}
	if ((r = crypto_tls_client_ctx_new(o->ca_path, &lg.tls)) < 0) {
		fprintf(stderr, "chsm-load: %s: %s\n", o->ca_path, strerror(-r));
		goto out;
	}
	if (o->not_chsm)
		o->verify_every = 0; /* no device key to check against */
	else if (setup(&lg, &cl) < 0)
		goto out;
	/* Pools: --presign requests, shared out by weight. */
	struct load_pool_config pc = {.key = key, .tag = o->tag, .base_vsms = o->base_vsms};
	char hosthdr[300];
	snprintf(hosthdr, sizeof(hosthdr), strchr(o->host, ':') ? "[%s]:%s" : "%s:%s", o->host,
		 o->port);
	pc.host_header = hosthdr;
	for (int k = 0; k < LOAD_KINDS; k++) {
		lg.total_weight += o->weights[k];
		lg.cum_weight[k] = lg.total_weight;
	}
	for (int k = 0; k < LOAD_KINDS; k++)
		if (o->weights[k]) {
			size_t n = (size_t)((double)o->presign * o->weights[k] / lg.total_weight);
			pc.capacity[k] = n < 64 ? 64 : n;
		}
	int64_t s0 = now_us();
	if ((r = load_pool_new(&pc, &lg.pool)) < 0) {
		fprintf(stderr, "chsm-load: signing: %s\n", crypto_strerror(r));
		goto out;
	}
	double presign_s = (double)(now_us() - s0) / 1e6;
	lg.base = event_base_new();
	lg.conns = calloc(o->connections, sizeof(*lg.conns));
	lg.backlog_times = o->rate > 0 ? calloc(MAX_BACKLOG, sizeof(int64_t)) : NULL;
	if (!lg.base || !lg.conns || (o->rate > 0 && !lg.backlog_times) ||
	    load_stats_init(&lg.st) < 0) {
		fprintf(stderr, "chsm-load: out of memory\n");
		goto out;
	}
	lg.rng = (uint64_t)now_us() | 1;
	lg.service_pid = o->server_pid ? service_pid_of(o->server_pid) : 0;
	cpu_set_t cpus;
	if (lg.service_pid && sched_getaffinity(lg.service_pid, sizeof(cpus), &cpus) == 0)
		cf.cores = CPU_COUNT(&cpus);
	for (unsigned i = 0; i < o->connections; i++) {
		lg.conns[i] = (struct conn){.lg = &lg, .id = i};
		lg.conns[i].retry = evtimer_new(lg.base, retry_cb, &lg.conns[i]);
	}
	lg.t_begin = now_us();
	lg.t_measure = lg.t_begin + (int64_t)(o->warmup_s * 1e6);
	lg.t_end = lg.t_measure + (int64_t)(o->duration_s * 1e6);
	lg.sending = true;
	for (unsigned i = 0; i < o->connections; i++)
		conn_open(&lg.conns[i]);
	lg.tick = event_new(lg.base, -1, EV_PERSIST, tick_cb, &lg);
	struct timeval tv = {0, 1000};
	event_add(lg.tick, &tv);
	event_base_dispatch(lg.base);

	struct load_pool_stats ps;
	load_pool_get_stats(lg.pool, &ps);
	struct load_report rep = {
		.connections = o->connections, .rate = o->rate, .duration_s = o->duration_s,
		.warmup_s = o->warmup_s, .presign_s = presign_s, .pool = ps,
		.server_pid = lg.service_pid, .srv0 = lg.srv0, .srv1 = lg.srv1,
		.rss_max_kib = lg.rss_max_kib, .cli0 = lg.cli0, .cli1 = lg.cli1,
		.crypto = o->crypto_bound ? &cf : NULL, .kind_names = KIND_NAMES,
	};
	load_report_print(&lg.st, &rep, stdout);
	if (o->report_json && load_report_json(&lg.st, &rep, o->report_json) < 0)
		fprintf(stderr, "chsm-load: cannot write %s\n", o->report_json);
	status = o->fail_on_error && load_stats_failed(&lg.st) ? 1 : 0;
out:
	for (unsigned i = 0; lg.conns && i < o->connections; i++) {
		if (lg.conns[i].bev)
			bufferevent_free(lg.conns[i].bev);
		if (lg.conns[i].retry)
			event_free(lg.conns[i].retry);
		load_req_free(&lg.conns[i].req);
		load_req_free(&lg.conns[i].del);
	}
	while (lg.del_head) {
		struct pending_delete *d = lg.del_head;
		lg.del_head = d->next;
		mark_live(&lg, d->req.seq, 1);
		load_req_free(&d->req);
		free(d);
	}
	if (cl)
		teardown(&lg, cl);
	if (lg.tick)
		event_free(lg.tick);
	load_pool_free(lg.pool);
	load_stats_free(&lg.st);
	free(lg.conns);
	free(lg.backlog_times);
	free(lg.live);
	if (lg.base)
		event_base_free(lg.base);
	crypto_tls_client_ctx_free(lg.tls);
	crypto_sm2_key_free(lg.device_key);
	crypto_sm2_key_free(key);
	chsm_client_free(cl);
	return status;
}
