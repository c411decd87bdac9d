/*
 * nonce.c: group commit of request nonces (see nonce.h).
 *
 * A caller appends a waiter (on its own stack) to the pending list under
 * the mutex. When no batch is being committed it becomes the leader: it
 * takes up to API_NONCE_BATCH_MAX waiters from the front of the list,
 * releases the mutex, commits them with one store_nonces_use, and, with the
 * mutex again, publishes every waiter's result and wakes each of them.
 * Callers that arrived during the commit are still pending; the leader
 * wakes only the first of them, which leads the next batch (or it leads it
 * itself, if it had to leave its own waiter behind). A waiter is answered
 * only after the commit that holds its nonce returned, so an answered nonce
 * is durable. Each waiter sleeps on its own condition variable, so the end
 * of a batch wakes the threads it answered and one more, not every waiting
 * thread.
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
	pthread_cond_t wake;        /* answered, or its turn to lead */
	struct nonce_waiter *next;
};

struct api_nonces {
	chsm_store *store;
	pthread_mutex_t lock;
	pthread_cond_t room;        /* the pending list got shorter */
	struct nonce_waiter *head, **tail;
	size_t pending;
	size_t waiting_for_room;
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
	pthread_cond_init(&b->room, NULL);
	*ret = b;
	return 0;
}

void api_nonces_free(struct api_nonces *b)
{
	if (!b)
		return;
	pthread_cond_destroy(&b->room);
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
		pthread_cond_signal(&w[i]->wake);
	}
	b->committing = false;
	if (b->head)
		pthread_cond_signal(&b->head->wake);
	if (b->waiting_for_room)
		pthread_cond_broadcast(&b->room);
}

int api_nonces_use(struct api_nonces *b, const char *nonce, int64_t timestamp_ms, int64_t now_ms)
{
	if (!b)
		return -EINVAL;
	struct nonce_waiter me = {.item = {.nonce = nonce, .timestamp_ms = timestamp_ms}};
	pthread_cond_init(&me.wake, NULL);
	pthread_mutex_lock(&b->lock);
	while (b->pending >= API_NONCE_PENDING_MAX) {
		b->waiting_for_room++;
		pthread_cond_wait(&b->room, &b->lock);
		b->waiting_for_room--;
	}
	*b->tail = &me;
	b->tail = &me.next;
	b->pending++;
	while (!me.done) {
		if (!b->committing)
			lead_batch(b, now_ms);
		else
			pthread_cond_wait(&me.wake, &b->lock);
	}
	pthread_mutex_unlock(&b->lock);
	pthread_cond_destroy(&me.wake);
	return me.result;
}
