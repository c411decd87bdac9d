/*
 * shipper.c: see logship.h. One thread owns the destination (its socket or
 * curl handle); log threads only append to the spool and, for the 7.2.7
 * event, refresh the level filter. The thread never logs while it holds
 * its mutex, since the log sink takes that mutex.
 */
#include "logship/logship.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"
#include "logship/format.h"
#include "logship/spool.h"

enum dest_kind { DEST_NONE, DEST_UDP, DEST_TCP, DEST_HTTP };

struct dest {
	enum dest_kind kind;
	char host[256];
	char port[8];
	char *url;                    /* HTTP(S) only: may hold credentials */
	struct curl_slist *headers;   /* configured headers: secret values */
	int fd;
	CURL *curl;
};

struct logship {
	logship_spool *spool;
	logship_config_fn config;
	void *config_ctx;
	pthread_t thread;
	bool thread_started;
	pthread_mutex_t mu;
	pthread_cond_t cond;
	atomic_bool stop;
	bool reload;
	atomic_int level;             /* most verbose level spooled, -1: none */
	char *cfg;                    /* the 7.2.7 document in use (secret) */
	size_t cfg_len;
	struct dest d;                /* the thread's only */
	char hostname[256];
	long pid;
};

static atomic_uint_least64_t dropped_total;

uint64_t logship_dropped_total(void)
{
	return atomic_load(&dropped_total);
}

static void wipe_free(char *p, size_t len)
{
	if (!p)
		return;
	explicit_bzero(p, len);
	free(p);
}

static int level_of(const char *s)
{
	if (!s)
		return -1;
	if (!strcmp(s, "error"))
		return CHSM_LOG_ERROR;
	if (!strcmp(s, "warning"))
		return CHSM_LOG_WARNING;
	if (!strcmp(s, "info"))
		return CHSM_LOG_INFO;
	return -1;
}

/* The level of a 7.2.7 document, -1 when it has none. */
static int doc_level(const char *text, size_t len)
{
	json_t *o = json_loadb(text, len, 0, NULL);
	int l = level_of(json_string_value(json_object_get(o, "level")));
	json_decref(o);
	return l;
}

static void dest_close(struct dest *d)
{
	if (d->fd >= 0)
		close(d->fd);
	d->fd = -1;
	if (d->curl)
		curl_easy_cleanup(d->curl);
	d->curl = NULL;
}

static void dest_clear(struct dest *d)
{
	dest_close(d);
	if (d->url)
		wipe_free(d->url, strlen(d->url));
	curl_slist_free_all(d->headers);   /* values are secret: best effort */
	memset(d, 0, sizeof(*d));
	d->fd = -1;
}

/* Splits "HOST[:PORT][/...]" or "[V6][:PORT][/...]"; port 514 by default. */
static int parse_hostport(const char *s, struct dest *d)
{
	const char *h = s, *end;
	size_t hl;
	if (*s == '[') {
		end = strchr(s, ']');
		if (!end)
			return -EINVAL;
		h = s + 1;
		hl = (size_t)(end - h);
		end++;
	} else {
		end = s + strcspn(s, ":/");
		hl = (size_t)(end - s);
	}
	if (hl == 0 || hl >= sizeof(d->host))
		return -EINVAL;
	memcpy(d->host, h, hl);
	d->host[hl] = '\0';
	if (*end == ':') {
		uint64_t p;
		char digits[8];
		size_t pl = strcspn(end + 1, "/");
		if (pl == 0 || pl >= sizeof(digits))
			return -EINVAL;
		memcpy(digits, end + 1, pl);
		digits[pl] = '\0';
		if (chsm_parse_u64(digits, 65535, &p) < 0 || p == 0)
			return -EINVAL;
		snprintf(d->port, sizeof(d->port), "%u", (unsigned)p);
	} else if (*end == '\0' || *end == '/') {
		snprintf(d->port, sizeof(d->port), "514");
	} else {
		return -EINVAL;
	}
	return 0;
}

/* Builds the destination from a 7.2.7 document. */
static int dest_parse(const char *text, size_t len, struct dest *d)
{
	json_t *o = json_loadb(text, len, 0, NULL);
	const char *url = json_string_value(json_object_get(o, "url"));
	int r = -EINVAL;
	memset(d, 0, sizeof(*d));
	d->fd = -1;
	if (!url)
		goto out;
	if (!strncmp(url, "syslog+udp://", 13)) {
		d->kind = DEST_UDP;
		r = parse_hostport(url + 13, d);
	} else if (!strncmp(url, "syslog+tcp://", 13)) {
		d->kind = DEST_TCP;
		r = parse_hostport(url + 13, d);
	} else if (!strncmp(url, "http://", 7) || !strncmp(url, "https://", 8)) {
		d->kind = DEST_HTTP;
		r = (d->url = strdup(url)) ? 0 : -ENOMEM;
		const char *k;
		json_t *v;
		json_object_foreach(json_object_get(o, "headers"), k, v) {
			const char *val = json_string_value(v);
			size_t n = strlen(k) + (val ? strlen(val) : 0) + 3;
			char *line = malloc(n);
			if (!line) {
				r = -ENOMEM;
				break;
			}
			snprintf(line, n, "%s: %s", k, val ? val : "");
			struct curl_slist *l = curl_slist_append(d->headers, line);
			wipe_free(line, n);
			if (!l) {
				r = -ENOMEM;
				break;
			}
			d->headers = l;
		}
		struct curl_slist *l = curl_slist_append(d->headers, "Content-Type: application/json");
		if (l)
			l = curl_slist_append(l, "Expect:");
		if (!l)
			r = -ENOMEM;
		else
			d->headers = l;
	}
out:
	json_decref(o);
	if (r < 0)
		dest_clear(d);
	return r;
}

static const char *kind_name(enum dest_kind k)
{
	switch (k) {
	case DEST_UDP: return "syslog+udp";
	case DEST_TCP: return "syslog+tcp";
	case DEST_HTTP: return "http";
	case DEST_NONE: break;
	}
	return "none";
}

/* Reads the address again; on a change, rebuilds the destination.
 * Returns true when it changed. Called by the thread (or before it). */
static bool reload(logship *ls)
{
	char *text = NULL;
	size_t len = 0;
	int r = ls->config(ls->config_ctx, &text, &len);
	if (r < 0 && r != -ENOENT)
		return false;   /* keep what we have: a storage hiccup */
	bool same = r == -ENOENT ? ls->cfg == NULL
				 : ls->cfg && ls->cfg_len == len && memcmp(ls->cfg, text, len) == 0;
	if (same) {
		wipe_free(text, len);
		return false;
	}
	struct dest nd = {.fd = -1};
	int level = -1;
	if (text && dest_parse(text, len, &nd) == 0)
		level = doc_level(text, len);
	dest_clear(&ls->d);
	ls->d = nd;
	pthread_mutex_lock(&ls->mu);
	wipe_free(ls->cfg, ls->cfg_len);
	ls->cfg = text;
	ls->cfg_len = len;
	atomic_store(&ls->level, ls->d.kind == DEST_NONE ? -1 : level);
	pthread_mutex_unlock(&ls->mu);
	chsm_log(CHSM_LOG_INFO, "logship.configured", "transport", kind_name(ls->d.kind), "level",
		 level == CHSM_LOG_ERROR ? "error" : level == CHSM_LOG_WARNING ? "warning"
		 : level == CHSM_LOG_INFO ? "info" : "-", NULL);
	return true;
}

void logship_sink(void *ctx, enum chsm_log_level level, int64_t ts_ms, const char *event,
		  const char *const *kv, size_t n)
{
	logship *ls = ctx;
	if (strcmp(event, "config.log_upload") == 0) {
		/* Apply the new level to the events that follow at once (the
		 * 7.2.7 request's own line among them); the thread rebuilds
		 * the destination. */
		char *text = NULL;
		size_t len = 0;
		if (ls->config(ls->config_ctx, &text, &len) == 0) {
			atomic_store(&ls->level, doc_level(text, len));
			wipe_free(text, len);
		}
		pthread_mutex_lock(&ls->mu);
		ls->reload = true;
		pthread_cond_signal(&ls->cond);
		pthread_mutex_unlock(&ls->mu);
	}
	int max = atomic_load(&ls->level);
	if (max < 0 || (int)level > max)
		return;
	char *rec = NULL;
	size_t len = 0;
	int r = logship_record_encode(level, ts_ms, event, kv, n, &rec, &len);
	if (r == 0)
		r = len <= SPOOL_RECORD_MAX ? spool_append(ls->spool, rec, len) : -EMSGSIZE;
	free(rec);
	if (r < 0)
		atomic_fetch_add(&dropped_total, 1);
}

/* ---- transports ---- */

static int sock_connect(struct dest *d, int type)
{
	struct addrinfo hints = {.ai_socktype = type, .ai_flags = AI_ADDRCONFIG}, *ai = NULL;
	int r = getaddrinfo(d->host, d->port, &hints, &ai);
	if (r != 0)
		return -EHOSTUNREACH;
	r = -ECONNREFUSED;
	for (struct addrinfo *a = ai; a; a = a->ai_next) {
		int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (fd < 0) {
			r = -errno;
			continue;
		}
		if (connect(fd, a->ai_addr, a->ai_addrlen) < 0 && errno != EINPROGRESS) {
			r = -errno;
			close(fd);
			continue;
		}
		struct pollfd p = {.fd = fd, .events = POLLOUT};
		int err = 0;
		socklen_t el = sizeof(err);
		if (poll(&p, 1, LOGSHIP_CONNECT_TIMEOUT_MS) != 1 ||
		    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0 || err) {
			r = err ? -err : -ETIMEDOUT;
			close(fd);
			continue;
		}
		int fl = fcntl(fd, F_GETFL);
		fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
		struct timeval tv = {.tv_sec = LOGSHIP_IO_TIMEOUT_MS / 1000};
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		d->fd = fd;
		r = 0;
		break;
	}
	freeaddrinfo(ai);
	return r;
}

static int send_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return errno == EAGAIN ? -ETIMEDOUT : -errno;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Sends the batch's records as syslog messages; *ret_done: how many the
 * collector took. */
static int ship_syslog(logship *ls, const struct spool_batch *b, size_t *ret_done)
{
	struct dest *d = &ls->d;
	bool tcp = d->kind == DEST_TCP;
	int r = 0;
	if (tcp && d->fd >= 0) {
		/* A peer that closed (collector restarted) would swallow one
		 * write: check first. */
		char c;
		ssize_t n = recv(d->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK))
			dest_close(d);
	}
	if (d->fd < 0 && (r = sock_connect(d, tcp ? SOCK_STREAM : SOCK_DGRAM)) < 0)
		return r;
	size_t done = 0;
	for (; done < b->n; done++) {
		struct logship_event e;
		if (logship_record_decode(b->rec[done].data, b->rec[done].len, &e) < 0)
			continue;   /* unreadable: nothing to deliver */
		char *msg = NULL;
		size_t len = 0;
		r = logship_format_syslog(&e, b->rec[done].seq, ls->hostname, ls->pid,
					  tcp ? LOGSHIP_TCP_MAX : LOGSHIP_UDP_MAX, &msg, &len);
		logship_event_clear(&e);
		if (r < 0)
			continue;
		if (tcp) {
			char prefix[24];
			int pl = snprintf(prefix, sizeof(prefix), "%zu ", len);
			r = send_all(d->fd, prefix, (size_t)pl);
			if (r == 0)
				r = send_all(d->fd, msg, len);
		} else {
			ssize_t w = send(d->fd, msg, len, MSG_NOSIGNAL);
			r = w == (ssize_t)len ? 0 : w < 0 ? -errno : -EMSGSIZE;
		}
		free(msg);
		if (r < 0)
			break;
	}
	*ret_done = done;
	if (r < 0)
		dest_close(d);
	return r;
}

static size_t discard(char *p, size_t size, size_t n, void *u)
{
	return size * n;
}

static int abort_on_stop(void *u, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t e)
{
	return atomic_load(&((logship *)u)->stop) ? 1 : 0;
}

static int ship_http(logship *ls, const struct spool_batch *b, size_t *ret_done, char *err, size_t errlen)
{
	struct dest *d = &ls->d;
	struct logship_event *ev = calloc(b->n, sizeof(*ev));
	uint64_t *seqs = calloc(b->n, sizeof(*seqs));
	size_t n = 0;
	int r = -ENOMEM;
	char *body = NULL;
	size_t len = 0;
	if (!ev || !seqs)
		goto out;
	for (size_t i = 0; i < b->n; i++) {
		if (logship_record_decode(b->rec[i].data, b->rec[i].len, &ev[n]) == 0)
			seqs[n++] = b->rec[i].seq;
	}
	if (n == 0) {
		*ret_done = b->n;
		r = 0;
		goto out;
	}
	if ((r = logship_format_json(ev, seqs, n, ls->hostname, &body, &len)) < 0)
		goto out;
	if (!d->curl && !(d->curl = curl_easy_init())) {
		r = -ENOMEM;
		goto out;
	}
	CURL *c = d->curl;
	curl_easy_setopt(c, CURLOPT_URL, d->url);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_POST, 1L);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, d->headers);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)LOGSHIP_CONNECT_TIMEOUT_MS);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, (long)(LOGSHIP_IO_TIMEOUT_MS / 1000));
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
	curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, abort_on_stop);
	curl_easy_setopt(c, CURLOPT_XFERINFODATA, ls);
	curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
	CURLcode cc = curl_easy_perform(c);
	long status = 0;
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	if (cc != CURLE_OK) {
		snprintf(err, errlen, "%s", curl_easy_strerror(cc));
		r = -EIO;
	} else if (status < 200 || status > 299) {
		snprintf(err, errlen, "HTTP status %ld", status);
		r = -EIO;
	} else {
		*ret_done = b->n;
		r = 0;
	}
out:
	for (size_t i = 0; ev && i < n; i++)
		logship_event_clear(&ev[i]);
	free(ev);
	free(seqs);
	free(body);
	return r;
}

/* Delivers one batch. Returns how many records left the spool (0: none
 * waiting), or a negative errno with err set. */
static long ship_once(logship *ls, char *err, size_t errlen)
{
	bool http = ls->d.kind == DEST_HTTP;
	struct spool_batch b = {0};
	int r = spool_peek(ls->spool, http ? LOGSHIP_HTTP_BATCH_RECORDS : LOGSHIP_SYSLOG_BATCH_RECORDS,
			   http ? LOGSHIP_HTTP_BATCH_BYTES : 64 * 1024, &b);
	if (r < 0) {
		snprintf(err, errlen, "spool: %s", strerror(-r));
		return r;
	}
	if (b.n == 0)
		return 0;
	size_t done = 0;
	err[0] = '\0';
	r = http ? ship_http(ls, &b, &done, err, errlen) : ship_syslog(ls, &b, &done);
	if (r < 0 && !err[0])
		snprintf(err, errlen, "%s", strerror(-r));
	int ar = spool_ack(ls->spool, &b, done);
	spool_batch_free(&b);
	if (ar < 0 && r == 0) {
		snprintf(err, errlen, "spool ack: %s", strerror(-ar));
		r = ar;
	}
	return r < 0 ? r : (long)done;
}

static void *run(void *arg)
{
	logship *ls = arg;
	int64_t now = chsm_monotonic_ms();
	int64_t next_reload = now + LOGSHIP_RELOAD_MS, next_try = 0, next_drop_report = 0;
	int64_t backoff = LOGSHIP_BACKOFF_MIN_MS;
	uint64_t reported = 0;
	bool down = false;
	char err[256];
	pthread_mutex_lock(&ls->mu);
	while (!atomic_load(&ls->stop)) {
		bool want_reload = ls->reload;
		ls->reload = false;
		pthread_mutex_unlock(&ls->mu);
		now = chsm_monotonic_ms();
		if (want_reload || now >= next_reload) {
			if (reload(ls)) {
				next_try = 0;
				backoff = LOGSHIP_BACKOFF_MIN_MS;
				down = false;
			}
			next_reload = now + LOGSHIP_RELOAD_MS;
		}
		long shipped = 0;
		if (ls->d.kind != DEST_NONE && now >= next_try) {
			shipped = ship_once(ls, err, sizeof(err));
			if (shipped < 0) {
				if (!down) {
					uint64_t pending, bytes;
					char p[24];
					spool_usage(ls->spool, &pending, &bytes);
					snprintf(p, sizeof(p), "%llu", (unsigned long long)pending);
					chsm_log(CHSM_LOG_WARNING, "logship.down", "transport",
						 kind_name(ls->d.kind), "error", err, "pending", p, NULL);
				}
				down = true;
				next_try = now + backoff;
				backoff = backoff * 2 > LOGSHIP_BACKOFF_MAX_MS ? LOGSHIP_BACKOFF_MAX_MS : backoff * 2;
			} else {
				if (down && shipped > 0)
					chsm_log(CHSM_LOG_INFO, "logship.up", "transport", kind_name(ls->d.kind), NULL);
				if (shipped > 0)
					down = false;
				backoff = LOGSHIP_BACKOFF_MIN_MS;
			}
		}
		spool_sync(ls->spool);
		uint64_t dropped = logship_dropped_total();
		if (dropped > reported && now >= next_drop_report) {
			char t[24];
			snprintf(t, sizeof(t), "%llu", (unsigned long long)dropped);
			chsm_log(CHSM_LOG_WARNING, "logship.dropped", "total", t, "reason", "spool full", NULL);
			reported = dropped;
			next_drop_report = now + 60 * 1000;
		}
		pthread_mutex_lock(&ls->mu);
		if (shipped > 0 || ls->reload || atomic_load(&ls->stop))
			continue;
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_nsec += LOGSHIP_SYNC_MS * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&ls->cond, &ls->mu, &ts);
	}
	pthread_mutex_unlock(&ls->mu);
	return NULL;
}

int logship_start(const struct logship_options *o, logship **ret)
{
	if (!o->spool_dir || !o->config)
		return -EINVAL;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		return -ENOMEM;
	logship *ls = calloc(1, sizeof(*ls));
	if (!ls) {
		curl_global_cleanup();
		return -ENOMEM;
	}
	pthread_mutex_init(&ls->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&ls->cond, &ca);
	pthread_condattr_destroy(&ca);
	atomic_init(&ls->stop, false);
	atomic_init(&ls->level, -1);
	ls->d.fd = -1;
	ls->config = o->config;
	ls->config_ctx = o->config_ctx;
	ls->pid = (long)getpid();
	if (gethostname(ls->hostname, sizeof(ls->hostname) - 1) < 0)
		ls->hostname[0] = '\0';
	int r = spool_open(o->spool_dir, o->spool_bytes, &ls->spool);
	if (r < 0) {
		logship_stop(ls);
		return r;
	}
	reload(ls);
	if ((r = -pthread_create(&ls->thread, NULL, run, ls)) < 0) {
		logship_stop(ls);
		return r;
	}
	ls->thread_started = true;
	*ret = ls;
	return 0;
}

void logship_stop(logship *ls)
{
	if (!ls)
		return;
	if (ls->thread_started) {
		pthread_mutex_lock(&ls->mu);
		atomic_store(&ls->stop, true);
		pthread_cond_signal(&ls->cond);
		pthread_mutex_unlock(&ls->mu);
		pthread_join(ls->thread, NULL);
	}
	dest_clear(&ls->d);
	spool_close(ls->spool);
	wipe_free(ls->cfg, ls->cfg_len);
	pthread_cond_destroy(&ls->cond);
	pthread_mutex_destroy(&ls->mu);
	free(ls);
	curl_global_cleanup();
}
