/*
 * nonce.c: group commit of request nonces (see nonce.h).
 *
 * A caller appends a waiter (on its own stack) to the pending list under
 * the mutex. When no batch is being committed it becomes the leader: it
 * takes up to API_NONCE_BATCH_MAX waiters from the front of the list,
 * releases the mutex, commits them with one store_nonces_use, and, with the
 * mutex again, publishes every waiter's result and wakes them all. Callers
 * that arrived during the commit are still pending; the first of them to
 * wake (or the leader itself, if it had to leave its own waiter behind)
 * leads the next batch. A waiter is answered only after the commit that
 * holds its nonce returned, so an answered nonce is durable.
 */
#include "api/nonce.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

struct nonce_waiter {
	struct store_nonce item;
	int result;
	bool done;
	struct nonce_waiter *next;
};

struct api_nonces {
	chsm_store *store;
	pthread_mutex_t lock;
	pthread_cond_t changed;     /* a batch ended or room was made */
	struct nonce_waiter *head, **tail;
	size_t pending;
	bool committing;
};

int api_nonces_new(chsm_store *store, struct api_nonces **ret)
{
	struct api_nonces *b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	b->store = store;
	b->tail = &b->head;
	pthread_mutex_init(&b->lock, NULL);
	pthread_cond_init(&b->changed, NULL);
	*ret = b;
	return 0;
}

void api_nonces_free(struct api_nonces *b)
{
	if (!b)
		return;
	pthread_cond_destroy(&b->changed);
	pthread_mutex_destroy(&b->lock);
	free(b);
}

/* Called with b->lock held and no batch committing; returns with it held. */
static void lead_batch(struct api_nonces *b, int64_t now_ms)
{
	struct nonce_waiter *w[API_NONCE_BATCH_MAX];
	struct store_nonce items[API_NONCE_BATCH_MAX];
	int results[API_NONCE_BATCH_MAX];
	size_t n = 0;
	while (b->head && n < API_NONCE_BATCH_MAX) {
		w[n] = b->head;
		items[n] = w[n]->item;
		b->head = w[n]->next;
		n++;
	}
	if (!b->head)
		b->tail = &b->head;
	b->pending -= n;
	b->committing = true;
	pthread_mutex_unlock(&b->lock);
	int r = store_nonces_use(b->store, items, n, now_ms, results);
	pthread_mutex_lock(&b->lock);
	for (size_t i = 0; i < n; i++) {
		w[i]->result = r < 0 ? r : results[i];
		w[i]->done = true;
	}
	b->committing = false;
	pthread_cond_broadcast(&b->changed);
}

int api_nonces_use(struct api_nonces *b, const char *nonce, int64_t timestamp_ms, int64_t now_ms)
{
	if (!b)
		return -EINVAL;
	struct nonce_waiter me = {.item = {.nonce = nonce, .timestamp_ms = timestamp_ms}};
	pthread_mutex_lock(&b->lock);
	while (b->pending >= API_NONCE_PENDING_MAX)
		pthread_cond_wait(&b->changed, &b->lock);
	*b->tail = &me;
	b->tail = &me.next;
	b->pending++;
	while (!me.done) {
		if (!b->committing)
			lead_batch(b, now_ms);
		else
			pthread_cond_wait(&b->changed, &b->lock);
	}
	pthread_mutex_unlock(&b->lock);
	return me.result;
}
