/*
 * test_api_nonce.c: the nonce batcher (src/api/nonce.h) over a real store:
 * many threads with random and deliberately repeated nonces get exactly
 * one 0 per distinct nonce and 1 for every other use; every answered nonce
 * is still refused after the store is closed and opened again; a storage
 * failure fails every nonce of its batch and records none of them.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <sqlite3.h>

#include "api/nonce.h"
#include "common/limits.h"
#include "test_store_util.h"

#define THREADS 16
#define CALLS 300          /* per thread */
#define DISTINCT 1500      /* nonces to draw from */

static const int64_t T0 = 1700000000000;

struct shared {
	struct api_nonces *b;
	atomic_int fresh[DISTINCT];
	atomic_int replayed[DISTINCT];
	atomic_int errors;
};

struct worker {
	struct shared *sh;
	unsigned seed;
};

static void nonce_name(int i, char *out, size_t cap)
{
	snprintf(out, cap, "nonce-%06d-%s", i, "abcdefghijklmnopqrstuvwxyz");
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	char nonce[CHSM_NONCE_MAX_LEN + 1];
	for (int k = 0; k < CALLS; k++) {
		/* Every third call takes the same nonce in every thread (a
		 * deliberate concurrent duplicate); the others draw at random. */
		int i = k % 3 == 0 ? k / 3 : (int)(rand_r(&w->seed) % DISTINCT);
		nonce_name(i, nonce, sizeof(nonce));
		int r = api_nonces_use(w->sh->b, nonce, T0, T0);
		if (r == 0)
			atomic_fetch_add(&w->sh->fresh[i], 1);
		else if (r == 1)
			atomic_fetch_add(&w->sh->replayed[i], 1);
		else
			atomic_fetch_add(&w->sh->errors, 1);
	}
	return NULL;
}

static void test_many_threads(void **state)
{
	struct test_store *t = *state;
	struct shared *sh = calloc(1, sizeof(*sh));
	assert_non_null(sh);
	assert_int_equal(api_nonces_new(t->s, &sh->b), 0);
	pthread_t th[THREADS];
	struct worker w[THREADS];
	for (int i = 0; i < THREADS; i++) {
		w[i] = (struct worker){.sh = sh, .seed = 7919u * (unsigned)(i + 1)};
		assert_int_equal(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
	}
	for (int i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);
	assert_int_equal(atomic_load(&sh->errors), 0);
	int used = 0, total = 0;
	for (int i = 0; i < DISTINCT; i++) {
		int f = atomic_load(&sh->fresh[i]), r = atomic_load(&sh->replayed[i]);
		total += f + r;
		if (f + r == 0)
			continue;
		used++;
		assert_int_equal(f, 1);   /* exactly one success per distinct nonce */
	}
	assert_int_equal(total, THREADS * CALLS);
	assert_true(used > 0 && used < total);   /* there were duplicates */
	api_nonces_free(sh->b);

	/* Closed and opened again: every answered nonce is refused. */
	assert_int_equal(test_store_reopen(t, test_master_key), 0);
	char nonce[CHSM_NONCE_MAX_LEN + 1];
	for (int i = 0; i < DISTINCT; i++) {
		if (!atomic_load(&sh->fresh[i]))
			continue;
		nonce_name(i, nonce, sizeof(nonce));
		assert_int_equal(store_nonce_use(t->s, nonce, T0, T0 + 1), 1);
	}
	assert_int_equal(api_nonces_new(t->s, &sh->b), 0);
	nonce_name(0, nonce, sizeof(nonce));
	assert_int_equal(api_nonces_use(sh->b, nonce, T0, T0), 1);
	assert_int_equal(api_nonces_use(sh->b, "never-seen-before", T0, T0), 0);
	assert_int_equal(api_nonces_use(sh->b, "", T0, T0), -EINVAL);
	api_nonces_free(sh->b);
	free(sh);
}

/* ---- storage failure ---- */

#define FAIL_THREADS 6

struct fail_arg {
	struct api_nonces *b;
	char nonce[32];
	int result;
};

static void *fail_main(void *arg)
{
	struct fail_arg *a = arg;
	a->result = api_nonces_use(a->b, a->nonce, T0, T0);
	return NULL;
}

static void test_storage_failure(void **state)
{
	struct test_store *t = *state;
	struct api_nonces *b = NULL;
	assert_int_equal(api_nonces_new(t->s, &b), 0);
	/* Another connection holds the write lock: the batcher's transaction
	 * cannot begin (SQLITE_BUSY after the busy timeout). */
	sqlite3 *other = NULL;
	assert_int_equal(sqlite3_open(t->path, &other), SQLITE_OK);
	assert_int_equal(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
	pthread_t th[FAIL_THREADS];
	struct fail_arg a[FAIL_THREADS];
	for (int i = 0; i < FAIL_THREADS; i++) {
		a[i] = (struct fail_arg){.b = b, .result = 99};
		snprintf(a[i].nonce, sizeof(a[i].nonce), "failing-%d", i % 3);
		assert_int_equal(pthread_create(&th[i], NULL, fail_main, &a[i]), 0);
	}
	for (int i = 0; i < FAIL_THREADS; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(a[i].result, -EIO);
	}
	assert_int_equal(sqlite3_exec(other, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(other);
	/* None of the failed nonces was recorded. */
	for (int i = 0; i < 3; i++)
		assert_int_equal(api_nonces_use(b, a[i].nonce, T0, T0), 0);
	api_nonces_free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		TEST_STORE_CASE(test_many_threads),
		TEST_STORE_CASE(test_storage_failure),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
