/*
 * load_pool.c: pre-signed requests for chsm-load (load_pool.h).
 */
#define _GNU_SOURCE
#include "load_pool.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"

/* Requests signed per round of the signer thread, per kind, before it
 * looks at the other rings again. */
#define SIGN_BATCH 256
/* Nice value of the signer thread: it yields to the CHSM on a shared host. */
#define SIGNER_NICE 10

/* A ring entry: the request, and for LOAD_CREATE its DELETE. */
struct slot {
	struct load_req req, del;
};

struct ring {
	struct slot *slots;
	size_t cap, head, count;
};

struct load_pool {
	struct load_pool_config cfg;
	char host[128], tag[48];
	struct ring rings[LOAD_KINDS];
	uint32_t next_seq[LOAD_KINDS]; /* created VSMs (LOAD_CREATE), base VSM rotation */
	pthread_mutex_t lock;
	pthread_cond_t wake;
	pthread_t signer;
	bool signer_running, stopping;
	clockid_t signer_clock;
	struct load_pool_stats stats;
};

void load_vsm_id(const char *tag, bool base, uint32_t n, char *out, size_t outlen)
{
	snprintf(out, outlen, "%s-%c%u", tag, base ? 'b' : 'c', n);
}

void load_req_free(struct load_req *r)
{
	if (!r)
		return;
	free(r->wire);
	memset(r, 0, sizeof(*r));
}

/* Signs one request of a kind for VSM number seq into *ret. */
static int sign_one(const load_pool *p, enum load_kind kind, uint32_t seq, struct load_req *ret)
{
	char target[160], id[80], body[256] = "";
	const char *method = "GET";
	char *secret = NULL, *wire = NULL;
	uint8_t raw[32];
	int r;
	load_vsm_id(p->tag, kind != LOAD_CREATE && kind != LOAD_DELETE, seq, id, sizeof(id));
	switch (kind) {
	case LOAD_STATUS:
		snprintf(target, sizeof(target), GMT_API_BASE "/chsm/status");
		break;
	case LOAD_STATUS_ALL:
		snprintf(target, sizeof(target), GMT_API_BASE "/chsm/status/all");
		break;
	case LOAD_VSM_GET:
		snprintf(target, sizeof(target), GMT_API_BASE "/vsms/%s", id);
		break;
	case LOAD_VSM_STATUS:
		snprintf(target, sizeof(target), GMT_API_BASE "/vsms/%s/status", id);
		break;
	case LOAD_TOKEN:
		method = "PUT";
		snprintf(target, sizeof(target), GMT_API_BASE "/vsms/%s/token", id);
		if ((r = crypto_random(raw, sizeof(raw))) < 0 ||
		    (r = crypto_base64_encode(raw, sizeof(raw), &secret)) < 0)
			goto out;
		snprintf(body, sizeof(body), "{\"tokenId\":\"load\",\"secret\":\"%s\"}", secret);
		break;
	case LOAD_CREATE:
		method = "POST";
		snprintf(target, sizeof(target), GMT_API_BASE "/vsms");
		/* (address, port) is unique per CHSM: one address per VSM. */
		snprintf(body, sizeof(body),
			 "{\"vsmId\":\"%s\",\"name\":\"load\",\"network\":{\"ipAddress\":"
			 "\"127.78.%u.%u\",\"prefixLength\":8,\"port\":30000}}",
			 id, (seq >> 8) & 255u, seq & 255u);
		break;
	case LOAD_DELETE:
		method = "DELETE";
		snprintf(target, sizeof(target), GMT_API_BASE "/vsms/%s", id);
		break;
	case LOAD_FINGERPRINT:
		snprintf(target, sizeof(target), GMT_API_BASE "/auth/platform-key/fingerprint");
		break;
	default:
		return -EINVAL;
	}
	struct gmt_signed_headers h;
	int64_t now = chsm_now_ms();
	size_t blen = strlen(body);
	r = gmt_sign_request(p->cfg.key, method, target, blen ? body : NULL, blen, now, &h);
	if (r < 0)
		goto out;
	char clen[80] = "";
	if (blen)
		snprintf(clen, sizeof(clen),
			 "Content-Type: application/json\r\nContent-Length: %zu\r\n", blen);
	else if (strcmp(method, "GET") != 0)
		snprintf(clen, sizeof(clen), "Content-Length: 0\r\n");
	int n = asprintf(&wire,
			 "%s %s HTTP/1.1\r\nHost: %s\r\n" GMT_HDR_TIMESTAMP ": %s\r\n" GMT_HDR_NONCE
			 ": %s\r\n" GMT_HDR_KEY_ID ": %s\r\n" GMT_HDR_ALG ": %s\r\n" GMT_HDR_SIGNATURE
			 ": %s\r\n%s\r\n%s",
			 method, target, p->host, h.timestamp, h.nonce, h.key_id, h.alg, h.signature,
			 clen, body);
	if (n < 0) {
		r = -ENOMEM;
		wire = NULL;
		goto out;
	}
	*ret = (struct load_req){.wire = wire, .len = (size_t)n, .signed_ms = now, .seq = seq,
				 .kind = (uint8_t)kind};
	snprintf(ret->nonce, sizeof(ret->nonce), "%s", h.nonce);
	wire = NULL;
	r = 0;
out:
	free(wire);
	if (secret) {
		crypto_wipe(secret, strlen(secret));
		free(secret);
	}
	crypto_wipe(raw, sizeof(raw));
	crypto_wipe(body, sizeof(body));
	return r;
}

/* The VSM number the next request of a kind is for (under the lock). */
static uint32_t next_seq(load_pool *p, enum load_kind kind)
{
	uint32_t s = p->next_seq[kind]++;
	if (kind == LOAD_CREATE)
		return s;
	return p->cfg.base_vsms ? s % p->cfg.base_vsms : 0;
}

/* Signs a slot of a kind: the request, and the DELETE of a LOAD_CREATE. */
static int sign_slot(load_pool *p, enum load_kind kind, uint32_t seq, struct slot *ret)
{
	struct slot s = {0};
	int r = sign_one(p, kind, seq, &s.req);
	if (r == 0 && kind == LOAD_CREATE && (r = sign_one(p, LOAD_DELETE, seq, &s.del)) < 0)
		load_req_free(&s.req);
	if (r == 0)
		*ret = s;
	return r;
}

/* Fills the rings up to a count each: at most `batch` per kind per call
 * (0: without limit). Signs outside the lock. Returns the number signed,
 * or a negative errno. */
static long fill(load_pool *p, size_t batch)
{
	long total = 0;
	for (int k = 0; k < LOAD_KINDS; k++) {
		struct ring *g = &p->rings[k];
		pthread_mutex_lock(&p->lock);
		size_t want = g->cap - g->count;
		pthread_mutex_unlock(&p->lock);
		if (batch && want > batch)
			want = batch;
		for (size_t i = 0; i < want; i++) {
			pthread_mutex_lock(&p->lock);
			uint32_t seq = next_seq(p, (enum load_kind)k);
			pthread_mutex_unlock(&p->lock);
			struct slot s;
			int r = sign_slot(p, (enum load_kind)k, seq, &s);
			if (r < 0)
				return r;
			pthread_mutex_lock(&p->lock);
			g->slots[(g->head + g->count) % g->cap] = s;
			g->count++;
			p->stats.signed_ahead++;
			pthread_mutex_unlock(&p->lock);
			total++;
		}
	}
	return total;
}

static bool any_below_half(load_pool *p)
{
	for (int k = 0; k < LOAD_KINDS; k++)
		if (p->rings[k].cap && p->rings[k].count < p->rings[k].cap / 2)
			return true;
	return false;
}

static void *signer_main(void *arg)
{
	load_pool *p = arg;
	setpriority(PRIO_PROCESS, (id_t)gettid(), SIGNER_NICE);
	for (;;) {
		pthread_mutex_lock(&p->lock);
		while (!p->stopping && !any_below_half(p))
			pthread_cond_wait(&p->wake, &p->lock);
		bool stop = p->stopping;
		pthread_mutex_unlock(&p->lock);
		if (stop || fill(p, SIGN_BATCH) < 0)
			break;
	}
	return NULL;
}

int load_pool_new(const struct load_pool_config *cfg, load_pool **ret)
{
	load_pool *p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->cfg = *cfg;
	snprintf(p->host, sizeof(p->host), "%s", cfg->host_header);
	snprintf(p->tag, sizeof(p->tag), "%s", cfg->tag);
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->wake, NULL);
	int r = 0;
	for (int k = 0; k < LOAD_KINDS; k++) {
		size_t cap = k == LOAD_DELETE ? 0 : cfg->capacity[k];
		p->rings[k].cap = cap;
		if (cap && !(p->rings[k].slots = calloc(cap, sizeof(struct slot)))) {
			r = -ENOMEM;
			goto fail;
		}
	}
	long n = fill(p, 0);
	if (n < 0) {
		r = (int)n;
		goto fail;
	}
	if (pthread_create(&p->signer, NULL, signer_main, p) != 0) {
		r = -EAGAIN;
		goto fail;
	}
	p->signer_running = true;
	if (pthread_getcpuclockid(p->signer, &p->signer_clock) != 0)
		p->signer_clock = 0;
	*ret = p;
	return 0;
fail:
	load_pool_free(p);
	return r;
}

void load_pool_free(load_pool *p)
{
	if (!p)
		return;
	if (p->signer_running) {
		pthread_mutex_lock(&p->lock);
		p->stopping = true;
		pthread_cond_signal(&p->wake);
		pthread_mutex_unlock(&p->lock);
		pthread_join(p->signer, NULL);
	}
	for (int k = 0; k < LOAD_KINDS; k++) {
		struct ring *g = &p->rings[k];
		for (size_t i = 0; i < g->count; i++) {
			struct slot *s = &g->slots[(g->head + i) % g->cap];
			load_req_free(&s->req);
			load_req_free(&s->del);
		}
		free(g->slots);
	}
	pthread_cond_destroy(&p->wake);
	pthread_mutex_destroy(&p->lock);
	free(p);
}

int load_pool_take(load_pool *p, enum load_kind kind, struct load_req *ret,
		   struct load_req *ret_delete)
{
	if (kind >= LOAD_KINDS || kind == LOAD_DELETE || !p->rings[kind].cap)
		return -EINVAL;
	struct ring *g = &p->rings[kind];
	int64_t oldest = chsm_now_ms() - LOAD_POOL_MAX_AGE_MS;
	struct slot s;
	bool got = false;
	pthread_mutex_lock(&p->lock);
	while (g->count) {
		s = g->slots[g->head];
		g->head = (g->head + 1) % g->cap;
		g->count--;
		if (s.req.signed_ms >= oldest) {
			got = true;
			break;
		}
		p->stats.stale_dropped++;
		load_req_free(&s.req);
		load_req_free(&s.del);
	}
	if (g->count < g->cap / 2)
		pthread_cond_signal(&p->wake);
	uint32_t seq = got ? 0 : next_seq(p, kind);
	pthread_mutex_unlock(&p->lock);
	if (!got) {
		int r = sign_slot(p, kind, seq, &s);
		if (r < 0)
			return r;
		pthread_mutex_lock(&p->lock);
		p->stats.signed_inline++;
		pthread_mutex_unlock(&p->lock);
	}
	*ret = s.req;
	if (ret_delete)
		*ret_delete = s.del;
	else
		load_req_free(&s.del);
	return 0;
}

int load_pool_sign_now(load_pool *p, enum load_kind kind, uint32_t seq, struct load_req *ret)
{
	int r = sign_one(p, kind, seq, ret);
	if (r == 0) {
		pthread_mutex_lock(&p->lock);
		p->stats.signed_inline++;
		pthread_mutex_unlock(&p->lock);
	}
	return r;
}

void load_pool_get_stats(load_pool *p, struct load_pool_stats *ret)
{
	pthread_mutex_lock(&p->lock);
	*ret = p->stats;
	pthread_mutex_unlock(&p->lock);
	struct timespec ts;
	ret->signer_cpu_s = p->signer_clock && clock_gettime(p->signer_clock, &ts) == 0
				    ? (double)ts.tv_sec + (double)ts.tv_nsec / 1e9
				    : 0.0;
}
