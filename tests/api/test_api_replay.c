/*
 * test_api_replay.c: the replay window (src/api/replay.h) over a real
 * store, with the clock injected: the fast path (T <= C, nonce in memory
 * only), the durable path (T > C, nonce committed), the floor after a
 * restart, the durable nonces loaded at a restart, expiry, the memory
 * bound (durable path, never a replay accepted, never an error), a failed
 * commit that records nothing, and the background raiser.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>
#include <sqlite3.h>

#include "api/replay.h"
#include "common/util.h"
#include "test_store_util.h"

static const int64_t T0 = 1700000000000;

static int64_t setting_ms(chsm_store *s)
{
	char *v = NULL;
	uint64_t n = 0;
	assert_int_equal(store_setting_get(s, API_REPLAY_SETTING, &v), 0);
	assert_int_equal(chsm_parse_u64(v, INT64_MAX, &n), 0);
	free(v);
	return (int64_t)n;
}

/* Whether nonce is in the store (it is recorded there by this check when
 * it was not). */
static bool stored(chsm_store *s, const char *nonce, int64_t ts)
{
	return store_nonce_use(s, nonce, ts, ts) == 1;
}

static void test_paths_and_restart(void **state)
{
	struct test_store *t = *state;
	struct api_replay *w = NULL;
	assert_int_equal(api_replay_open(t->s, T0, &w), 0);
	assert_int_equal(api_replay_floor(w), 0);
	assert_int_equal(api_replay_ceiling(w), 0);

	/* Before any raise every request is durable. */
	assert_int_equal(api_replay_use(w, "durable-before-raise", T0, T0), 0);
	/* The raise: C = now + 2 s, durable (the setting) before published. */
	assert_int_equal(api_replay_raise(w, T0), 0);
	assert_int_equal(api_replay_ceiling(w), T0 + API_REPLAY_AHEAD_MS);
	assert_int_equal(setting_ms(t->s), T0 + API_REPLAY_AHEAD_MS);
	/* No new raise while now + 1 s <= C; one once it is past. */
	assert_int_equal(api_replay_raise(w, T0 + API_REPLAY_AHEAD_MS - API_REPLAY_RAISE_MS), 0);
	assert_int_equal(api_replay_ceiling(w), T0 + API_REPLAY_AHEAD_MS);
	assert_int_equal(api_replay_raise(w, T0 + 1500), 0);
	const int64_t C = T0 + 1500 + API_REPLAY_AHEAD_MS;
	assert_int_equal(api_replay_ceiling(w), C);
	/* A clock stepped back never lowers C. */
	assert_int_equal(api_replay_raise(w, T0 - 60000), 0);
	assert_int_equal(api_replay_ceiling(w), C);

	/* Fast path: T <= C, accepted once, in memory only. */
	assert_int_equal(api_replay_use(w, "fast-path-nonce-0001", T0 + 1000, T0 + 1000), 0);
	assert_int_equal(api_replay_use(w, "fast-path-nonce-0001", T0 + 1000, T0 + 1001), 1);
	assert_int_equal(api_replay_use(w, "fast-path-nonce-0001", T0 + 9, T0 + 1002), 1);
	assert_int_equal(api_replay_use(w, "fast-path-at-ceiling", C, T0 + 1000), 0);
	/* Slow path: T > C (a client clock ahead), committed before the answer. */
	const int64_t AHEAD = T0 + 200000;
	assert_int_equal(api_replay_use(w, "clock-ahead-nonce-01", AHEAD, T0 + 1000), 0);
	assert_int_equal(api_replay_use(w, "clock-ahead-nonce-01", AHEAD, T0 + 1001), 1);
	/* A fast-path nonce again with T > C is still a replay. */
	assert_int_equal(api_replay_use(w, "fast-path-nonce-0001", AHEAD, T0 + 1002), 1);
	assert_int_equal(api_replay_use(w, "", T0, T0), -EINVAL);
	api_replay_free(w);
	assert_true(stored(t->s, "clock-ahead-nonce-01", AHEAD));
	assert_true(stored(t->s, "durable-before-raise", T0));
	assert_false(stored(t->s, "fast-path-nonce-0001", T0 + 1000));

	/* Restart (the store opened again): F = the durable C. */
	assert_int_equal(test_store_reopen(t, test_master_key), 0);
	const int64_t NOW = T0 + 1600;
	assert_int_equal(api_replay_open(t->s, NOW, &w), 0);
	assert_int_equal(api_replay_floor(w), C);
	assert_int_equal(api_replay_ceiling(w), C);
	/* Start: wait until the clock passes F, unless it is far behind. */
	assert_int_equal(api_replay_wait_ms(w, NOW), C - NOW + 1);
	assert_int_equal(api_replay_wait_ms(w, C + 1), 0);
	assert_int_equal(api_replay_wait_ms(w, C - API_REPLAY_AHEAD_MS), API_REPLAY_AHEAD_MS + 1);
	assert_int_equal(api_replay_wait_ms(w, C - API_REPLAY_AHEAD_MS - 1), -ERANGE);
	/* T <= F: refused whatever the nonce (the verifier answers 2003 first). */
	assert_int_equal(api_replay_use(w, "fast-path-nonce-0001", T0 + 1000, C + 10), 1);
	assert_int_equal(api_replay_use(w, "never-seen-nonce-001", C, C + 10), 1);
	/* The durable nonce with T > F is still refused (2004), from memory. */
	assert_int_equal(api_replay_use(w, "clock-ahead-nonce-01", AHEAD, C + 10), 1);
	/* A fresh request after the floor is accepted (durable: C = F). */
	assert_int_equal(api_replay_use(w, "fresh-after-restart1", C + 5, C + 10), 0);
	api_replay_free(w);
}

/* A clean stop lowers C to the highest fast-path timestamp: after the
 * restart, requests signed after the stop pass, the accepted ones do not. */
static void test_clean_stop(void **state)
{
	struct test_store *t = *state;
	struct api_replay *w = NULL;
	assert_int_equal(api_replay_open(t->s, T0, &w), 0);
	assert_int_equal(api_replay_use(w, "durable-above-top-01", T0 + 500, T0), 0);
	assert_int_equal(api_replay_raise(w, T0), 0);
	assert_int_equal(api_replay_use(w, "fast-path-before-top", T0 + 100, T0 + 100), 0);
	assert_int_equal(api_replay_use(w, "fast-path-the-top-01", T0 + 300, T0 + 100), 0);
	assert_int_equal(api_replay_shutdown(w), 0);
	assert_int_equal(api_replay_ceiling(w), T0 + 300);
	assert_int_equal(setting_ms(t->s), T0 + 300);
	api_replay_free(w);
	assert_int_equal(test_store_reopen(t, test_master_key), 0);
	assert_int_equal(api_replay_open(t->s, T0 + 400, &w), 0);
	assert_int_equal(api_replay_floor(w), T0 + 300);
	assert_int_equal(api_replay_wait_ms(w, T0 + 400), 0);
	assert_int_equal(api_replay_use(w, "fast-path-the-top-01", T0 + 300, T0 + 400), 1);
	assert_int_equal(api_replay_use(w, "durable-above-top-01", T0 + 500, T0 + 400), 1);
	assert_int_equal(api_replay_use(w, "signed-after-stop-01", T0 + 301, T0 + 400), 0);
	/* A stop with no fast-path request leaves C at F. */
	assert_int_equal(api_replay_shutdown(w), 0);
	assert_int_equal(setting_ms(t->s), T0 + 300);
	api_replay_free(w);
}

static void test_expiry(void **state)
{
	struct test_store *t = *state;
	struct api_replay *w = NULL;
	assert_int_equal(api_replay_open(t->s, T0, &w), 0);
	assert_int_equal(api_replay_raise(w, T0), 0);
	assert_int_equal(api_replay_use(w, "expiring-nonce-00001", T0, T0), 0);
	/* Kept until its timestamp is API_REPLAY_KEEP_MS behind the clock... */
	assert_int_equal(api_replay_use(w, "expiring-nonce-00001", T0, T0 + API_REPLAY_KEEP_MS), 1);
	/* ... then forgotten (it can no longer pass the window anyway). */
	assert_int_equal(api_replay_use(w, "expiring-nonce-00001", T0 + 1, T0 + API_REPLAY_KEEP_MS + 1), 0);
	/* A clock stepped back keeps it, not forgets it. */
	assert_int_equal(api_replay_use(w, "expiring-nonce-00001", T0 + 1, T0 - 100000), 1);
	api_replay_free(w);
}

static void nonce_name(size_t i, char *out, size_t cap)
{
	snprintf(out, cap, "bound-%012zu-abcdef", i);
}

static void test_bound(void **state)
{
	struct test_store *t = *state;
	struct api_replay *w = NULL;
	char n[64];
	assert_int_equal(api_replay_open(t->s, T0, &w), 0);
	assert_int_equal(api_replay_raise(w, T0), 0);
	/* Fill memory to the bound on the fast path. */
	for (size_t i = 0; i < API_REPLAY_MAX_ENTRIES; i++) {
		nonce_name(i, n, sizeof(n));
		assert_int_equal(api_replay_use(w, n, T0, T0), 0);
	}
	assert_false(api_replay_overflowed(w, T0));
	assert_false(stored(t->s, "bound-000000000001-abcdef", T0));
	/* One more (nothing expired): accepted on the durable path. */
	assert_int_equal(api_replay_use(w, "one-over-the-bound-1", T0, T0), 0);
	assert_true(api_replay_overflowed(w, T0));
	/* Fast path off: a new nonce with T <= C is committed as well. */
	assert_int_equal(api_replay_use(w, "two-over-the-bound-2", T0 + 1, T0 + 1), 0);
	/* Replays of both kinds are refused, never accepted. */
	assert_int_equal(api_replay_use(w, "bound-000000000007-abcdef", T0, T0 + 2), 1);
	assert_int_equal(api_replay_use(w, "one-over-the-bound-1", T0, T0 + 2), 1);
	assert_int_equal(api_replay_use(w, "two-over-the-bound-2", T0 + 1, T0 + 2), 1);
	assert_true(stored(t->s, "one-over-the-bound-1", T0));
	assert_true(stored(t->s, "two-over-the-bound-2", T0 + 1));
	/* Once the overflow nonces are API_REPLAY_KEEP_MS old the fast path is
	 * back and the expired entries make room. */
	const int64_t LATER = T0 + 1 + API_REPLAY_KEEP_MS + 1;
	assert_false(api_replay_overflowed(w, LATER));
	assert_int_equal(api_replay_raise(w, LATER), 0);
	assert_int_equal(api_replay_use(w, "after-the-overflow-1", LATER, LATER), 0);
	assert_false(api_replay_overflowed(w, LATER));
	assert_false(stored(t->s, "after-the-overflow-1", LATER));
	api_replay_free(w);
}

/* A durable commit that fails records the nonce nowhere: the same request
 * is accepted once the store works again. */
static void test_storage_failure(void **state)
{
	struct test_store *t = *state;
	struct api_replay *w = NULL;
	assert_int_equal(api_replay_open(t->s, T0, &w), 0);
	sqlite3 *other = NULL;
	assert_int_equal(sqlite3_open(t->path, &other), SQLITE_OK);
	assert_int_equal(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
	assert_int_equal(api_replay_use(w, "failing-commit-00001", T0, T0), -EIO);
	/* The raise fails too, and C stays where it was. */
	assert_true(api_replay_raise(w, T0) < 0);
	assert_int_equal(api_replay_ceiling(w), 0);
	assert_int_equal(sqlite3_exec(other, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(other);
	assert_int_equal(api_replay_use(w, "failing-commit-00001", T0, T0), 0);
	assert_int_equal(api_replay_use(w, "failing-commit-00001", T0, T0), 1);
	api_replay_free(w);
}

/* The background raiser: requests at the real clock raise C (polled, no
 * timing asserted), and a raised C is above the clock of the request. */
static void test_raiser(void **state)
{
	struct test_store *t = *state;
	struct api_replay *w = NULL;
	assert_int_equal(api_replay_open(t->s, chsm_now_ms(), &w), 0);
	assert_int_equal(api_replay_start(w), 0);
	char n[64];
	int64_t asked = 0;
	for (int i = 0; i < 2000 && api_replay_ceiling(w) == 0; i++) {
		snprintf(n, sizeof(n), "raiser-test-%08d", i);
		asked = chsm_now_ms();
		assert_int_equal(api_replay_use(w, n, asked, asked), 0);
		nanosleep(&(struct timespec){.tv_nsec = 5000000}, NULL);
	}
	int64_t c = api_replay_ceiling(w);
	assert_true(c > 0);
	assert_int_equal(setting_ms(t->s), c);
	api_replay_free(w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		TEST_STORE_CASE(test_paths_and_restart),
		TEST_STORE_CASE(test_clean_stop),
		TEST_STORE_CASE(test_expiry),
		TEST_STORE_CASE(test_bound),
		TEST_STORE_CASE(test_storage_failure),
		TEST_STORE_CASE(test_raiser),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
