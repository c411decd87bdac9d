/*
 * Unit tests of the store's prepared-statement cache (store_sql.c): a
 * statement is compiled once per connection and SQL text and reused; its
 * release resets it and clears its bindings; a nested use of the same SQL
 * gets a statement of its own; a schema change is seen by a cached
 * statement; statements beyond the cache's slots are finalized; the master,
 * snapshot and restricted (VSM) connections each have their own cache, and
 * closing finalizes every cached statement. Also the state digest cache
 * (store_vsm_list_digests, store_vsm_state_digest: computed again only when
 * a sealed token or key changed) and read transactions.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "store/store_int.h"
#include "test_store_util.h"

/* Prepares "SELECT ?1" bound to text (or unbound when text is NULL), steps
 * it and returns its statement, on its row; the column is in *ret. */
static sqlite3_stmt *select_text(chsm_store *s, const char *text, char ret[32])
{
	sqlite3_stmt *st = NULL;
	if (text)
		assert_int_equal(store_prepare(s, &st, "SELECT ?1", "t", text), 0);
	else
		assert_int_equal(store_prepare(s, &st, "SELECT ?1", ""), 0);
	assert_int_equal(store_step(st), 1);
	assert_int_equal(store_col_copy(st, 0, ret, 32), 0);
	return st;
}

static void test_reuse_and_reset(void **state)
{
	struct test_store *t = *state;
	chsm_store *s = t->s;
	char got[32];
	store_lock(s);
	uint64_t prepared = s->stmt_prepared, reused = s->stmt_reused;
	sqlite3_stmt *first = select_text(s, "one", got);
	assert_string_equal(got, "one");
	store_release(s, first);
	/* Released: reset (no read transaction held), bindings cleared. */
	assert_int_equal(sqlite3_stmt_busy(first), 0);
	sqlite3_stmt *again = select_text(s, "two", got);
	assert_ptr_equal(again, first);
	assert_string_equal(got, "two");
	store_release(s, again);
	again = select_text(s, NULL, got);
	assert_ptr_equal(again, first);
	assert_string_equal(got, "");          /* the old binding is gone */
	store_release(s, again);
	assert_true(s->stmt_prepared == prepared + 1);
	assert_true(s->stmt_reused == reused + 2);
	store_unlock(s);
	store_release(s, NULL);                 /* accepted */
}

static void test_nested_use(void **state)
{
	struct test_store *t = *state;
	chsm_store *s = t->s;
	char a[32], b[32];
	store_lock(s);
	sqlite3_stmt *outer = select_text(s, "outer", a);
	sqlite3_stmt *inner = select_text(s, "inner", b);
	assert_ptr_not_equal(inner, outer);
	assert_string_equal(a, "outer");
	assert_string_equal(b, "inner");
	store_release(s, inner);                /* not cached: finalized */
	/* The outer statement kept its row and binding through the inner use. */
	assert_int_equal(store_col_copy(outer, 0, a, sizeof(a)), 0);
	assert_string_equal(a, "outer");
	store_release(s, outer);
	sqlite3_stmt *next = select_text(s, "next", a);
	assert_ptr_equal(next, outer);
	store_release(s, next);
	store_unlock(s);
}

static void test_schema_change(void **state)
{
	struct test_store *t = *state;
	chsm_store *s = t->s;
	sqlite3_stmt *st = NULL;
	store_lock(s);
	assert_int_equal(store_run(s, NULL, "CREATE TEMP TABLE cache_t(a)", ""), 0);
	assert_int_equal(store_run(s, NULL, "INSERT INTO cache_t VALUES(1)", ""), 0);
	assert_int_equal(store_prepare(s, &st, "SELECT * FROM cache_t", ""), 0);
	assert_int_equal(store_step(st), 1);
	assert_int_equal(sqlite3_column_count(st), 1);
	store_release(s, st);
	assert_int_equal(store_run(s, NULL, "ALTER TABLE cache_t ADD COLUMN b DEFAULT 7", ""), 0);
	sqlite3_stmt *again = NULL;
	assert_int_equal(store_prepare(s, &again, "SELECT * FROM cache_t", ""), 0);
	assert_ptr_equal(again, st);
	assert_int_equal(store_step(again), 1);
	assert_int_equal(sqlite3_column_count(again), 2);
	assert_int_equal(sqlite3_column_int(again, 1), 7);
	store_release(s, again);
	/* A failing statement is not cached and leaves the cache usable. */
	assert_int_equal(store_prepare(s, &st, "SELECT * FROM no_such_table", ""), -EIO);
	store_unlock(s);
}

static void test_more_texts_than_slots(void **state)
{
	struct test_store *t = *state;
	chsm_store *s = t->s;
	enum { N = STORE_STMT_CACHE_SLOTS + 8 };
	char sql[N][32];
	store_lock(s);
	for (int round = 0; round < 2; round++) {
		uint64_t prepared = s->stmt_prepared;
		for (int i = 0; i < N; i++) {
			sqlite3_stmt *st = NULL;
			snprintf(sql[i], sizeof(sql[i]), "SELECT %d", i);
			assert_int_equal(store_prepare(s, &st, sql[i], ""), 0);
			assert_int_equal(store_step(st), 1);
			assert_int_equal(sqlite3_column_int(st, 0), i);
			store_release(s, st);
		}
		/* The first round fills the free slots; the second compiles only
		 * the texts that found none. */
		if (round == 1)
			assert_true(s->stmt_prepared - prepared < N);
	}
	/* Every statement of the connection is a cached one (the others were
	 * finalized at their release); clearing finalizes them all. */
	int live = 0;
	for (sqlite3_stmt *st = sqlite3_next_stmt(s->db, NULL); st; st = sqlite3_next_stmt(s->db, st))
		live++;
	assert_true(live <= STORE_STMT_CACHE_SLOTS);
	store_stmt_cache_clear(s);
	assert_null(sqlite3_next_stmt(s->db, NULL));
	/* and the cache fills again. */
	sqlite3_stmt *st = NULL;
	assert_int_equal(store_prepare(s, &st, sql[0], ""), 0);
	store_release(s, st);
	assert_non_null(sqlite3_next_stmt(s->db, NULL));
	store_unlock(s);
}

static void test_caches_per_connection(void **state)
{
	struct test_store *t = *state;
	test_store_add_vsm(t->s, "v1", "stopped");
	size_t n = 0;
	chsm_store *snap = NULL;
	assert_int_equal(store_snapshot_begin(t->s, &snap), 0);
	uint64_t parent_reused = t->s->stmt_reused;
	assert_int_equal(store_vsm_count(snap, &n), 0);
	uint64_t snap_reused = snap->stmt_reused;
	assert_int_equal(store_vsm_count(snap, &n), 0);
	assert_int_equal((int)n, 1);
	assert_true(snap->stmt_reused > snap_reused);
	assert_true(t->s->stmt_reused == parent_reused);
	/* A write on the master connection while the snapshot's cached
	 * statements sit reset: the snapshot still sees its instant. */
	test_store_add_vsm(t->s, "v2", "stopped");
	assert_int_equal(store_vsm_count(snap, &n), 0);
	assert_int_equal((int)n, 1);
	store_snapshot_end(snap);

	uint8_t sub[STORE_VSM_KEY_LEN];
	chsm_store *vs = NULL;
	assert_int_equal(store_vsm_subkey(t->s, "v1", sub), 0);
	assert_int_equal(store_open_vsm(t->path, "v1", sub, &vs), 0);
	struct store_vsm v;
	assert_int_equal(store_vsm_get(vs, "v1", &v), 0);
	uint64_t vs_reused = vs->stmt_reused;
	assert_int_equal(store_vsm_get(vs, "v1", &v), 0);
	assert_true(vs->stmt_reused > vs_reused);
	/* The restricted connection's cached statement does not widen what it
	 * may reach. */
	assert_int_equal(store_vsm_get(vs, "v2", &v), -EPERM);
	struct store_vsm_counts vc;
	assert_int_equal(store_vsm_counts(vs, &vc), -EPERM);
	store_close(vs);
	/* Closing with cached statements: the master store keeps working. */
	assert_int_equal(store_vsm_count(t->s, &n), 0);
	assert_int_equal((int)n, 2);
}

/* Asserts that store_vsm_list_digests lists ids[0..n) with the digests
 * store_vsm_state_digest gives; returns how many digests the store
 * computed meanwhile (the single digests being cache hits after the list). */
static uint64_t check_list(chsm_store *s, const char *const *ids, size_t n)
{
	struct store_vsm *v = NULL;
	char (*d)[65] = NULL;
	size_t count = 0;
	uint64_t before = s->digests_computed;
	assert_int_equal(store_vsm_list_digests(s, &v, &d, &count), 0);
	uint64_t computed = s->digests_computed - before;
	assert_int_equal((int)count, (int)n);
	for (size_t i = 0; i < n; i++) {
		char one[65];
		assert_string_equal(v[i].id, ids[i]);
		assert_int_equal(store_vsm_state_digest(s, ids[i], one), 0);
		assert_string_equal(d[i], one);
		assert_int_equal((int)strlen(d[i]), 64);
	}
	assert_true(s->digests_computed - before == computed);
	free(v);
	free(d);
	return computed;
}

static void test_digest_cache(void **state)
{
	struct test_store *t = *state;
	chsm_store *s = t->s;
	static const char *const ids[] = {"a1", "b2", "c3"};
	char empty[65], before[65], after[65];
	for (size_t i = 0; i < 3; i++)
		test_store_add_vsm(s, ids[i], "stopped");
	assert_int_equal(store_vsm_state_digest(s, "b2", empty), 0);
	assert_int_equal(store_vsm_key_put(s, "a1", "sign", 1, (const uint8_t *)"k1", 2), 0);
	assert_int_equal(store_vsm_token_set(s, "c3", "tok", (const uint8_t *)"secret", 6, 1), 0);
	assert_true(check_list(s, ids, 3) >= 2);       /* a1 and c3 changed */
	assert_true(check_list(s, ids, 3) == 0);       /* nothing changed */
	/* A changed key: that VSM's digest only is computed again. */
	assert_int_equal(store_vsm_state_digest(s, "a1", before), 0);
	assert_int_equal(store_vsm_key_put(s, "a1", "sign", 1, (const uint8_t *)"k2", 2), 0);
	assert_true(check_list(s, ids, 3) == 1);
	assert_int_equal(store_vsm_state_digest(s, "a1", after), 0);
	assert_string_not_equal(before, after);
	/* The same material sealed again (a fresh nonce): computed again, equal. */
	assert_int_equal(store_vsm_key_put(s, "a1", "sign", 1, (const uint8_t *)"k1", 2), 0);
	uint64_t n = s->digests_computed;
	assert_int_equal(store_vsm_state_digest(s, "a1", after), 0);
	assert_true(s->digests_computed == n + 1);
	/* A token replaced, then cleared: back to the digest of no token. */
	assert_int_equal(store_vsm_token_set(s, "c3", "tok", (const uint8_t *)"other", 5, 2), 0);
	assert_true(check_list(s, ids, 3) == 1);
	assert_int_equal(store_vsm_token_clear(s, "c3"), 0);
	assert_true(check_list(s, ids, 3) == 1);
	assert_int_equal(store_vsm_state_digest(s, "c3", after), 0);
	assert_string_equal(after, empty);
	/* A VSM deleted and made again under its id, without a key. */
	assert_int_equal(store_vsm_delete(s, "a1"), 0);
	assert_int_equal(store_vsm_state_digest(s, "a1", after), -ENOENT);
	assert_true(check_list(s, ids + 1, 2) == 0);
	test_store_add_vsm(s, "a1", "stopped");
	check_list(s, ids, 3);
	assert_int_equal(store_vsm_state_digest(s, "a1", after), 0);
	assert_string_equal(after, empty);
	/* A key written behind the store's back, by another connection (a VSM
	 * process), is seen. */
	uint8_t sub[STORE_VSM_KEY_LEN];
	chsm_store *vs = NULL;
	assert_int_equal(store_vsm_subkey(s, "b2", sub), 0);
	assert_int_equal(store_open_vsm(t->path, "b2", sub, &vs), 0);
	assert_int_equal(store_vsm_key_put(vs, "b2", "enc", 3, (const uint8_t *)"kk", 2), 0);
	assert_true(check_list(s, ids, 3) == 1);
	char from_vsm[65];
	assert_int_equal(store_vsm_state_digest(vs, "b2", from_vsm), 0);
	assert_int_equal(store_vsm_state_digest(s, "b2", after), 0);
	assert_string_equal(from_vsm, after);
	struct store_vsm *v = NULL;
	char (*d)[65] = NULL;
	size_t count = 0;
	assert_int_equal(store_vsm_list_digests(vs, &v, &d, &count), -EPERM);
	assert_int_equal(store_vsm_list_digests(s, NULL, &d, &count), -EINVAL);
	store_close(vs);
	/* A snapshot lists what it sees. */
	chsm_store *snap = NULL;
	assert_int_equal(store_snapshot_begin(s, &snap), 0);
	check_list(snap, ids, 3);
	store_snapshot_end(snap);
}

static void test_read_transaction(void **state)
{
	struct test_store *t = *state;
	chsm_store *s = t->s;
	size_t n = 0;
	test_store_add_vsm(s, "v1", "stopped");
	assert_int_equal(store_read_begin(s), 0);
	assert_int_equal(store_read_begin(s), 0);         /* nested */
	assert_int_equal(store_vsm_count(s, &n), 0);
	store_read_end(s);
	assert_false(sqlite3_get_autocommit(s->db));       /* still open */
	assert_int_equal(store_vsm_count(s, &n), 0);
	assert_int_equal((int)n, 1);
	store_read_end(s);
	assert_true(sqlite3_get_autocommit(s->db));
	/* Inside store_begin it only holds the mutex. */
	assert_int_equal(store_begin(s), 0);
	assert_int_equal(store_read_begin(s), 0);
	store_read_end(s);
	test_store_add_vsm(s, "v2", "stopped");
	assert_int_equal(store_commit(s), 0);
	assert_int_equal(store_vsm_count(s, &n), 0);
	assert_int_equal((int)n, 2);
	assert_int_equal(store_read_begin(NULL), -EINVAL);
	store_read_end(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		TEST_STORE_CASE(test_reuse_and_reset),
		TEST_STORE_CASE(test_nested_use),
		TEST_STORE_CASE(test_schema_change),
		TEST_STORE_CASE(test_more_texts_than_slots),
		TEST_STORE_CASE(test_caches_per_connection),
		TEST_STORE_CASE(test_digest_cache),
		TEST_STORE_CASE(test_read_transaction),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
