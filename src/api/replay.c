/*
 * replay.c: the replay window (see replay.h).
 *
 * The table is open addressing with linear probing over API_REPLAY_SLOTS
 * slots of {hash, timestamp}; hash 0 marks an empty slot. A slot whose
 * timestamp is more than API_REPLAY_KEEP_MS behind the clock is expired:
 * a lookup passes over it (and does not count it as a match), an insert
 * may take it. Expired slots are emptied (backward-shift deletion, so no
 * tombstones) only when the table reaches API_REPLAY_MAX_ENTRIES, at most
 * once a second. One mutex guards the table; it is held for a probe, never
 * across a commit.
 *
 * The ceiling is an atomic: requests read it without a lock, and only the
 * raiser (one at a time, raise_mutex) writes it, after its commit.
 */
#include "api/replay.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "api/nonce.h"
#include "common/siphash.h"
#include "common/util.h"
#include "crypto/crypto.h"

#define SLOT_MASK ((size_t)API_REPLAY_SLOTS - 1)

struct slot {
	uint64_t hash;      /* 0: empty */
	int64_t ts;
};

struct api_replay {
	chsm_store *store;
	struct api_nonces *durable;     /* the group commit of the slow path */
	uint8_t key[CHSM_SIPHASH_KEY_LEN];
	int64_t floor;
	_Atomic int64_t ceiling;
	_Atomic int64_t fast_max_ts;    /* highest T accepted on the fast path */

	pthread_mutex_t lock;           /* the table and the overflow state */
	struct slot *slots;
	size_t count;                   /* non-empty slots, expired or not */
	int64_t swept_at;
	bool overflow;                  /* fast path off ... */
	int64_t overflow_max_ts;        /* ... until this is KEEP_MS old */

	pthread_mutex_t raise_mutex;    /* one raise at a time */
	pthread_mutex_t wake_lock;
	pthread_cond_t wake;
	atomic_bool raise_wanted;
	bool stop, started;
	pthread_t thread;
};

enum put_result { PUT_FOUND, PUT_ABSENT, PUT_INSERTED, PUT_FULL };

static bool live(int64_t ts, int64_t now)
{
	return ts >= now - API_REPLAY_KEEP_MS;
}

/* Empties slot i and moves later entries of its run back into the hole
 * (an entry moves unless its home lies cyclically in (hole, its slot]). */
static void delete_at(struct api_replay *w, size_t i)
{
	size_t j = i;
	for (;;) {
		j = (j + 1) & SLOT_MASK;
		if (!w->slots[j].hash)
			break;
		size_t k = w->slots[j].hash & SLOT_MASK;
		bool stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
		if (!stays) {
			w->slots[i] = w->slots[j];
			i = j;
		}
	}
	w->slots[i] = (struct slot){0};
	w->count--;
}

static void sweep(struct api_replay *w, int64_t now)
{
	for (size_t i = 0; i < API_REPLAY_SLOTS; i++)
		while (w->slots[i].hash && !live(w->slots[i].ts, now))
			delete_at(w, i);
	w->swept_at = now;
}

/* Looks hash up; with insert, records it when absent. Lock held. */
static enum put_result put(struct api_replay *w, uint64_t hash, int64_t ts, int64_t now,
			   bool insert)
{
	for (int attempt = 0; attempt < 2; attempt++) {
		size_t i = hash & SLOT_MASK;
		struct slot *reuse = NULL;
		for (;; i = (i + 1) & SLOT_MASK) {
			struct slot *s = &w->slots[i];
			if (!s->hash)
				break;
			bool alive = live(s->ts, now);
			if (s->hash == hash && alive)
				return PUT_FOUND;
			if (!alive && !reuse)
				reuse = s;
		}
		if (!insert)
			return PUT_ABSENT;
		if (reuse) {
			*reuse = (struct slot){.hash = hash, .ts = ts};
			return PUT_INSERTED;
		}
		if (w->count < API_REPLAY_MAX_ENTRIES) {
			w->slots[i] = (struct slot){.hash = hash, .ts = ts};
			w->count++;
			return PUT_INSERTED;
		}
		if (attempt > 0 || (now - w->swept_at < 1000 && now >= w->swept_at))
			break;
		sweep(w, now);
	}
	return PUT_FULL;
}

/* Removes hash (a durable commit that failed). Lock held. */
static void forget(struct api_replay *w, uint64_t hash)
{
	for (size_t i = hash & SLOT_MASK; w->slots[i].hash; i = (i + 1) & SLOT_MASK) {
		if (w->slots[i].hash == hash) {
			delete_at(w, i);
			return;
		}
	}
}

static void enter_overflow(struct api_replay *w, int64_t ts)
{
	if (!w->overflow || ts > w->overflow_max_ts)
		w->overflow_max_ts = ts;
	w->overflow = true;
}

/* Lock held. */
static bool overflow_on(struct api_replay *w, int64_t now)
{
	if (w->overflow && !live(w->overflow_max_ts, now))
		w->overflow = false;
	return w->overflow;
}

static uint64_t nonce_hash(const struct api_replay *w, const char *nonce, size_t len)
{
	uint64_t h = chsm_siphash24(w->key, nonce, len);
	return h ? h : 1;
}

struct load_ctx {
	struct api_replay *w;
	int64_t now;
};

static int load_one(void *vctx, const char *nonce, int64_t ts)
{
	struct load_ctx *l = vctx;
	size_t len = strlen(nonce);
	if (len == 0 || len > CHSM_NONCE_MAX_LEN)
		return 0;
	if (put(l->w, nonce_hash(l->w, nonce, len), ts, l->now, true) == PUT_FULL)
		enter_overflow(l->w, ts);
	return 0;
}

#define SLOTS_BYTES ((size_t)API_REPLAY_SLOTS * sizeof(struct slot))

/* The table, zeroed and resident from the start (MAP_POPULATE): its pages
 * would otherwise become resident one by one, or a huge page at a time, as
 * nonces land on them, and the service's RSS would creep for minutes
 * (test_load saw 2.7 MiB after its warm-up). NULL on failure. */
static struct slot *slots_alloc(void)
{
	void *p = mmap(NULL, SLOTS_BYTES, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

static void slots_free(struct slot *slots)
{
	if (slots)
		munmap(slots, SLOTS_BYTES);
}

int api_replay_open(chsm_store *store, int64_t now_ms, struct api_replay **ret)
{
	struct api_replay *w = calloc(1, sizeof(*w));
	char *c = NULL;
	uint64_t floor = 0;
	int r;
	if (!w)
		return -ENOMEM;
	w->slots = slots_alloc();
	r = w->slots ? api_nonces_new(store, &w->durable) : -ENOMEM;
	if (r < 0)
		goto fail;
	r = crypto_random(w->key, sizeof(w->key));
	if (r < 0)
		goto fail;
	r = store_setting_get(store, API_REPLAY_SETTING, &c);
	if (r == 0) {
		r = chsm_parse_u64(c, INT64_MAX, &floor) == 0 ? 0 : -EIO;
		free(c);
	} else if (r == -ENOENT) {
		r = 0;
	}
	if (r < 0)
		goto fail;
	w->store = store;
	w->floor = (int64_t)floor;
	atomic_init(&w->ceiling, w->floor);
	atomic_init(&w->fast_max_ts, w->floor);
	w->swept_at = now_ms;
	pthread_mutex_init(&w->lock, NULL);
	pthread_mutex_init(&w->raise_mutex, NULL);
	pthread_mutex_init(&w->wake_lock, NULL);
	pthread_cond_init(&w->wake, NULL);
	atomic_init(&w->raise_wanted, false);
	int64_t after = now_ms - API_REPLAY_KEEP_MS - 1;
	struct load_ctx l = {.w = w, .now = now_ms};
	r = store_nonces_each(store, after > w->floor ? after : w->floor, load_one, &l);
	if (r < 0) {
		api_replay_free(w);
		return r;
	}
	*ret = w;
	return 0;
fail:
	api_nonces_free(w->durable);
	slots_free(w->slots);
	free(w);
	return r;
}

static void stop_raiser(struct api_replay *w)
{
	if (!w->started)
		return;
	pthread_mutex_lock(&w->wake_lock);
	w->stop = true;
	pthread_cond_signal(&w->wake);
	pthread_mutex_unlock(&w->wake_lock);
	pthread_join(w->thread, NULL);
	w->started = false;
}

int api_replay_shutdown(struct api_replay *w)
{
	if (!w)
		return -EINVAL;
	stop_raiser(w);
	int r = 0;
	pthread_mutex_lock(&w->raise_mutex);
	int64_t c = atomic_load(&w->ceiling), top = atomic_load(&w->fast_max_ts);
	if (top < c) {
		char buf[24];
		snprintf(buf, sizeof(buf), "%lld", (long long)top);
		r = store_setting_set(w->store, API_REPLAY_SETTING, buf);
		if (r == 0)
			atomic_store(&w->ceiling, top);
	}
	pthread_mutex_unlock(&w->raise_mutex);
	return r;
}

static void *raiser_main(void *arg)
{
	struct api_replay *w = arg;
	pthread_mutex_lock(&w->wake_lock);
	while (!w->stop) {
		if (!atomic_load(&w->raise_wanted)) {
			pthread_cond_wait(&w->wake, &w->wake_lock);
			continue;
		}
		pthread_mutex_unlock(&w->wake_lock);
		/* A failure leaves C as it was: requests take the durable path
		 * and the next one asks again. */
		(void)api_replay_raise(w, chsm_now_ms());
		atomic_store(&w->raise_wanted, false);
		pthread_mutex_lock(&w->wake_lock);
	}
	pthread_mutex_unlock(&w->wake_lock);
	return NULL;
}

int api_replay_start(struct api_replay *w)
{
	if (!w || w->started)
		return -EINVAL;
	int r = pthread_create(&w->thread, NULL, raiser_main, w);
	if (r != 0)
		return -r;
	w->started = true;
	return 0;
}

void api_replay_free(struct api_replay *w)
{
	if (!w)
		return;
	stop_raiser(w);
	api_nonces_free(w->durable);
	pthread_cond_destroy(&w->wake);
	pthread_mutex_destroy(&w->wake_lock);
	pthread_mutex_destroy(&w->raise_mutex);
	pthread_mutex_destroy(&w->lock);
	crypto_wipe(w->key, sizeof(w->key));
	slots_free(w->slots);
	free(w);
}

int64_t api_replay_floor(const struct api_replay *w)
{
	return w->floor;
}

int64_t api_replay_ceiling(const struct api_replay *w)
{
	return atomic_load(&((struct api_replay *)w)->ceiling);
}

bool api_replay_overflowed(struct api_replay *w, int64_t now_ms)
{
	pthread_mutex_lock(&w->lock);
	bool on = overflow_on(w, now_ms);
	pthread_mutex_unlock(&w->lock);
	return on;
}

int api_replay_raise(struct api_replay *w, int64_t now_ms)
{
	int r = 0;
	pthread_mutex_lock(&w->raise_mutex);
	int64_t c = atomic_load(&w->ceiling);
	if (now_ms + API_REPLAY_RAISE_MS > c) {
		int64_t next = now_ms + API_REPLAY_AHEAD_MS;
		char buf[24];
		snprintf(buf, sizeof(buf), "%lld", (long long)next);
		r = store_setting_set(w->store, API_REPLAY_SETTING, buf);
		if (r == 0)
			atomic_store(&w->ceiling, next);   /* only once durable */
	}
	pthread_mutex_unlock(&w->raise_mutex);
	return r;
}

/* Asks the raiser for a raise when C is about to fall behind: one wake-up
 * per raise, not per request. */
static void want_raise(struct api_replay *w, int64_t now, int64_t c)
{
	if (!w->started || now + API_REPLAY_RAISE_MS <= c)
		return;
	if (atomic_exchange(&w->raise_wanted, true))
		return;
	pthread_mutex_lock(&w->wake_lock);
	pthread_cond_signal(&w->wake);
	pthread_mutex_unlock(&w->wake_lock);
}

int api_replay_use(struct api_replay *w, const char *nonce, int64_t ts, int64_t now_ms)
{
	size_t len = nonce ? strlen(nonce) : 0;
	if (!w || len == 0 || len > CHSM_NONCE_MAX_LEN)
		return -EINVAL;
	if (ts <= w->floor)
		return 1;
	uint64_t hash = nonce_hash(w, nonce, len);
	int64_t c = atomic_load(&w->ceiling);
	want_raise(w, now_ms, c);

	pthread_mutex_lock(&w->lock);
	bool overflow = overflow_on(w, now_ms);
	enum put_result p = put(w, hash, ts, now_ms, !overflow);
	if (p == PUT_FOUND) {
		pthread_mutex_unlock(&w->lock);
		return 1;
	}
	if (p != PUT_INSERTED)   /* overflow, or it just began: the store only */
		enter_overflow(w, ts);
	pthread_mutex_unlock(&w->lock);
	if (p == PUT_INSERTED && ts <= c) {
		int64_t top = atomic_load(&w->fast_max_ts);
		while (ts > top && !atomic_compare_exchange_weak(&w->fast_max_ts, &top, ts))
			;
		return 0;
	}
	/* The durable path: the nonce is committed before the answer. */
	int r = api_nonces_use(w->durable, nonce, ts, now_ms);
	if (r < 0 && p == PUT_INSERTED) {
		pthread_mutex_lock(&w->lock);
		forget(w, hash);
		pthread_mutex_unlock(&w->lock);
	}
	return r;
}

int64_t api_replay_wait_ms(const struct api_replay *w, int64_t now_ms)
{
	if (now_ms > w->floor)
		return 0;
	if (w->floor - now_ms > API_REPLAY_AHEAD_MS)
		return -ERANGE;
	return w->floor - now_ms + 1;
}
