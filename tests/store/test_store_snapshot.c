/*
 * Unit tests of store snapshots and secret walks: a snapshot sees the
 * database as it was when it began, while another connection (chsmd's own
 * store, or a VSM process's restricted store) keeps writing; it refuses
 * writes; the walk yields the token and keys in plaintext, in digest order,
 * and stops on a callback's return.
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

#include "common/limits.h"
#include "crypto/crypto.h"
#include "store/store.h"
#include "test_store_util.h"

struct seen {
	int tokens, keys;
	char token_id[64];
	uint8_t token[64];
	size_t token_len;
	char order[256];          /* "type:index;" for each key */
	uint8_t last_material[64];
	size_t last_len;
	int stop_after;           /* return 7 at this key (1-based); 0 never */
};

static int on_token(void *arg, const char *token_id, const uint8_t *secret, size_t len)
{
	struct seen *s = arg;
	s->tokens++;
	snprintf(s->token_id, sizeof(s->token_id), "%s", token_id);
	assert_true(len <= sizeof(s->token));
	memcpy(s->token, secret, len);
	s->token_len = len;
	return 0;
}

static int on_key(void *arg, const char *type, int index, const uint8_t *material, size_t len)
{
	struct seen *s = arg;
	s->keys++;
	size_t n = strlen(s->order);
	snprintf(s->order + n, sizeof(s->order) - n, "%s:%d;", type, index);
	assert_true(len <= sizeof(s->last_material));
	memcpy(s->last_material, material, len);
	s->last_len = len;
	return s->stop_after && s->keys == s->stop_after ? 7 : 0;
}

static void walk(chsm_store *s, const char *id, struct seen *seen, int expect)
{
	struct store_vsm_visitor vis = {on_token, on_key, seen};
	assert_int_equal(store_vsm_walk(s, id, &vis), expect);
}

static void test_snapshot_isolated_from_writers(void **state)
{
	struct test_store *t = *state;
	test_store_add_vsm(t->s, "v1", "running");
	const uint8_t tok[16] = "0123456789abcdef";
	assert_int_equal(store_vsm_token_set(t->s, "v1", "tok-1", tok, sizeof(tok), 1), 0);
	assert_int_equal(store_vsm_key_put(t->s, "v1", "sign", 1, (const uint8_t *)"key-one", 7), 0);
	assert_int_equal(store_vsm_key_put(t->s, "v1", "enc", 2, (const uint8_t *)"key-two", 7), 0);
	assert_int_equal(store_setting_set(t->s, "config.ntp", "{\"a\":1}"), 0);
	char digest_before[65];
	assert_int_equal(store_vsm_state_digest(t->s, "v1", digest_before), 0);
	struct store_vsm before;
	assert_int_equal(store_vsm_get(t->s, "v1", &before), 0);

	chsm_store *snap = NULL;
	assert_int_equal(store_snapshot_begin(t->s, &snap), 0);

	/* The VSM's own process writes keys through its restricted store, and
	 * chsmd changes rows and settings, while the snapshot is open. */
	uint8_t sub[STORE_VSM_KEY_LEN];
	chsm_store *vs = NULL;
	assert_int_equal(store_vsm_subkey(t->s, "v1", sub), 0);
	assert_int_equal(store_open_vsm(t->path, "v1", sub, &vs), 0);
	crypto_wipe(sub, sizeof(sub));
	assert_int_equal(store_vsm_key_put(vs, "v1", "sign", 3, (const uint8_t *)"key-three", 9), 0);
	store_close(vs);
	/* Replacing a key zeroises the old one: the checkpoint that follows is
	 * deferred, not waited for, while the snapshot is open. */
	assert_int_equal(store_vsm_key_put(t->s, "v1", "sign", 1, (const uint8_t *)"key-ONE", 7), 0);
	assert_int_equal(store_vsm_token_clear(t->s, "v1"), 0);
	assert_int_equal(store_setting_set(t->s, "config.ntp", "{\"a\":2}"), 0);
	test_store_add_vsm(t->s, "v2", "running");

	/* The snapshot still sees the state at its start. */
	struct store_vsm v;
	assert_int_equal(store_vsm_get(snap, "v1", &v), 0);
	assert_true(v.state_version == before.state_version);
	assert_true(v.token_configured);
	size_t n = 0;
	assert_int_equal(store_vsm_key_count(snap, "v1", &n), 0);
	assert_int_equal((int)n, 2);
	assert_int_equal(store_vsm_count(snap, &n), 0);
	assert_int_equal((int)n, 1);
	assert_int_equal(store_vsm_get(snap, "v2", &v), -ENOENT);
	char *val = NULL;
	assert_int_equal(store_setting_get(snap, "config.ntp", &val), 0);
	assert_string_equal(val, "{\"a\":1}");
	free(val);
	char digest_snap[65];
	assert_int_equal(store_vsm_state_digest(snap, "v1", digest_snap), 0);
	assert_string_equal(digest_snap, digest_before);
	struct seen seen;
	memset(&seen, 0, sizeof(seen));
	walk(snap, "v1", &seen, 0);
	assert_int_equal(seen.tokens, 1);
	assert_string_equal(seen.token_id, "tok-1");
	assert_memory_equal(seen.token, tok, sizeof(tok));
	assert_int_equal(seen.keys, 2);
	assert_string_equal(seen.order, "enc:2;sign:1;");
	assert_int_equal((int)seen.last_len, 7);
	assert_memory_equal(seen.last_material, "key-one", 7);

	/* Writes through the snapshot are refused. */
	assert_int_equal(store_setting_set(snap, "x", "y"), -EPERM);
	assert_int_equal(store_vsm_key_put(snap, "v1", "sign", 9, (const uint8_t *)"k", 1), -EPERM);
	assert_int_equal(store_begin(snap), -EPERM);
	chsm_store *nested = NULL;
	assert_int_equal(store_snapshot_begin(snap, &nested), -EPERM);
	store_snapshot_end(snap);
	/* Ending it ran the deferred checkpoint: the WAL is empty again and
	 * the replaced key's sealed form is gone from every file. */
	char wal[160];
	snprintf(wal, sizeof(wal), "%s-wal", t->path);
	size_t wal_len = 0;
	free(test_read_all(wal, &wal_len));
	assert_int_equal((int)wal_len, 0);

	/* The live store has every change. */
	assert_int_equal(store_vsm_key_count(t->s, "v1", &n), 0);
	assert_int_equal((int)n, 3);
	memset(&seen, 0, sizeof(seen));
	walk(t->s, "v1", &seen, 0);
	assert_int_equal(seen.tokens, 0);
	assert_string_equal(seen.order, "enc:2;sign:1;sign:3;");
}

static void test_walk_stops_and_errors(void **state)
{
	struct test_store *t = *state;
	test_store_add_vsm(t->s, "v1", "running");
	for (int i = 0; i < 5; i++)
		assert_int_equal(store_vsm_key_put(t->s, "v1", "sign", i, (const uint8_t *)"m", 1), 0);
	struct seen seen;
	memset(&seen, 0, sizeof(seen));
	seen.stop_after = 2;
	walk(t->s, "v1", &seen, 7);
	assert_int_equal(seen.keys, 2);
	memset(&seen, 0, sizeof(seen));
	walk(t->s, "nope", &seen, -ENOENT);
	assert_int_equal(seen.keys + seen.tokens, 0);
	struct store_vsm_visitor bad = {NULL, on_key, &seen};
	assert_int_equal(store_vsm_walk(t->s, "v1", &bad), -EINVAL);
	/* A VSM's restricted store walks its own VSM only. */
	test_store_add_vsm(t->s, "v2", "running");
	uint8_t sub[STORE_VSM_KEY_LEN];
	chsm_store *vs = NULL;
	assert_int_equal(store_vsm_subkey(t->s, "v2", sub), 0);
	assert_int_equal(store_open_vsm(t->path, "v2", sub, &vs), 0);
	crypto_wipe(sub, sizeof(sub));
	walk(vs, "v1", &seen, -EPERM);
	chsm_store *snap = NULL;
	assert_int_equal(store_snapshot_begin(vs, &snap), -EPERM);
	store_close(vs);
}

static void test_snapshot_writer_not_blocked(void **state)
{
	struct test_store *t = *state;
	test_store_add_vsm(t->s, "v1", "running");
	chsm_store *snap = NULL;
	assert_int_equal(store_snapshot_begin(t->s, &snap), 0);
	/* A whole write transaction commits while the snapshot is open. */
	assert_int_equal(store_begin(t->s), 0);
	assert_int_equal(store_vsm_key_put(t->s, "v1", "sign", 1, (const uint8_t *)"m", 1), 0);
	test_store_add_vsm(t->s, "v2", "running");
	assert_int_equal(store_commit(t->s), 0);
	size_t n = 0;
	assert_int_equal(store_vsm_count(snap, &n), 0);
	assert_int_equal((int)n, 1);
	store_snapshot_end(snap);
	/* A new snapshot sees the commit. */
	assert_int_equal(store_snapshot_begin(t->s, &snap), 0);
	assert_int_equal(store_vsm_count(snap, &n), 0);
	assert_int_equal((int)n, 2);
	store_snapshot_end(snap);
	store_snapshot_end(NULL);
}

/* A zeroisation's checkpoint that another connection blocks (here a
 * snapshot of a second store on the same file, which the first cannot
 * know of) does not fail the committed change: the call succeeds, and the
 * checkpoint runs at the next write once the reader has gone. */
static void test_blocked_checkpoint_stays_pending(void **state)
{
	struct test_store *t = *state;
	test_store_add_vsm(t->s, "v1", "running");
	test_store_add_vsm(t->s, "v2", "running");
	const uint8_t tok[16] = "TOKEN-0123456789";
	assert_int_equal(store_vsm_token_set(t->s, "v1", "tok-1", tok, sizeof(tok), 1), 0);
	assert_int_equal(store_vsm_key_put(t->s, "v1", "sign", 1, (const uint8_t *)"key-one", 7), 0);

	chsm_store *other = NULL, *snap = NULL;
	assert_int_equal(store_open(t->path, test_master_key, &other), 0);
	assert_int_equal(store_snapshot_begin(other, &snap), 0);
	assert_int_equal(store_vsm_delete(t->s, "v1"), 0);
	struct store_vsm v;
	assert_int_equal(store_vsm_get(t->s, "v1", &v), -ENOENT);
	char wal[160];
	snprintf(wal, sizeof(wal), "%s-wal", t->path);
	size_t wal_len = 0;
	free(test_read_all(wal, &wal_len));
	assert_true(wal_len > 0);       /* the checkpoint could not run */

	store_snapshot_end(snap);
	store_close(other);
	/* The next write, of anything, runs the pending checkpoint. */
	assert_int_equal(store_setting_set(t->s, "config.ntp", "{\"a\":3}"), 0);
	free(test_read_all(wal, &wal_len));
	assert_int_equal((int)wal_len, 0);
	assert_false(test_dir_contains(t->dir, tok, sizeof(tok)));
	assert_false(test_dir_contains(t->dir, "key-one", 7));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		TEST_STORE_CASE(test_snapshot_isolated_from_writers),
		TEST_STORE_CASE(test_blocked_checkpoint_stays_pending),
		TEST_STORE_CASE(test_walk_stops_and_errors),
		TEST_STORE_CASE(test_snapshot_writer_not_blocked),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
