/*
 * Unit tests of the store's VSM part: rows, endpoints, tokens, keys, the
 * state digest (including its exact byte layout) and zeroisation at rest.
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

static struct store_vsm make_vsm(const char *id, const char *name, const char *ip, int port)
{
	struct store_vsm v;
	memset(&v, 0, sizeof(v));
	snprintf(v.id, sizeof(v.id), "%s", id);
	snprintf(v.name, sizeof(v.name), "%s", name);
	snprintf(v.state, sizeof(v.state), "stopped");
	snprintf(v.version, sizeof(v.version), "1.0.0");
	v.created_at = 1700000000000LL;
	v.updated_at = 1700000000001LL;
	v.state_version = 1;
	v.max_keys = 64;
	v.max_sessions = 32;
	v.memory_mib = 256;
	if (ip) {
		v.network.configured = true;
		snprintf(v.network.ip_address, sizeof(v.network.ip_address), "%s", ip);
		v.network.prefix_length = 24;
		snprintf(v.network.gateway, sizeof(v.network.gateway), "10.0.0.1");
		v.network.port = port;
	}
	return v;
}

static void assert_vsm_equal(const struct store_vsm *a, const struct store_vsm *b)
{
	assert_string_equal(a->id, b->id);
	assert_string_equal(a->name, b->name);
	assert_string_equal(a->state, b->state);
	assert_string_equal(a->version, b->version);
	assert_true(a->created_at == b->created_at);
	assert_true(a->updated_at == b->updated_at);
	assert_true(a->state_version == b->state_version);
	assert_int_equal(a->max_keys, b->max_keys);
	assert_int_equal(a->max_sessions, b->max_sessions);
	assert_int_equal(a->memory_mib, b->memory_mib);
	assert_int_equal(a->network.configured, b->network.configured);
	assert_string_equal(a->network.ip_address, b->network.ip_address);
	assert_int_equal(a->network.prefix_length, b->network.prefix_length);
	assert_string_equal(a->network.gateway, b->network.gateway);
	assert_int_equal(a->network.port, b->network.port);
	assert_string_equal(a->last_error, b->last_error);
	assert_int_equal(a->desired_running, b->desired_running);
	assert_true(a->started_at == b->started_at);
}

static void test_vsm_rows(void **state)
{
	struct test_store *t = *state;
	struct store_vsm a = make_vsm("vsm-b", "bee", "10.0.0.2", 5000);
	struct store_vsm b = make_vsm("vsm-a", "ay", NULL, 0);
	struct store_vsm got;
	a.desired_running = true;
	a.started_at = 42;
	snprintf(a.last_error, sizeof(a.last_error), "service exited with 1");
	/* Token fields are ignored on insert. */
	a.token_configured = true;
	snprintf(a.token_id, sizeof(a.token_id), "ignored");

	assert_int_equal(store_vsm_get(t->s, "vsm-a", &got), -ENOENT);
	assert_int_equal(store_vsm_insert(t->s, &a), 0);
	assert_int_equal(store_vsm_insert(t->s, &b), 0);
	assert_int_equal(store_vsm_insert(t->s, &a), -EEXIST);
	assert_int_equal(store_vsm_get(t->s, "vsm-b", &got), 0);
	assert_vsm_equal(&got, &a);
	assert_false(got.token_configured);
	assert_string_equal(got.token_id, "");

	size_t count = 0;
	struct store_vsm *list = NULL;
	assert_int_equal(store_vsm_count(t->s, &count), 0);
	assert_int_equal(count, 2);
	assert_int_equal(store_vsm_list(t->s, &list, &count), 0);
	assert_int_equal(count, 2);
	assert_vsm_equal(&list[0], &b);
	assert_vsm_equal(&list[1], &a);
	free(list);

	a.state_version = 7;
	snprintf(a.state, sizeof(a.state), "running");
	snprintf(a.name, sizeof(a.name), "renamed");
	a.network.configured = false;
	a.desired_running = false;
	snprintf(a.version, sizeof(a.version), "10.20.30");   /* a VSM upgrade */
	assert_int_equal(store_vsm_update(t->s, &a), 0);
	assert_int_equal(store_vsm_get(t->s, "vsm-b", &got), 0);
	assert_vsm_equal(&got, &a);

	struct store_vsm missing = make_vsm("nope", "n", NULL, 0);
	assert_int_equal(store_vsm_update(t->s, &missing), -ENOENT);
	assert_int_equal(store_vsm_delete(t->s, "nope"), -ENOENT);
	assert_int_equal(store_vsm_delete(t->s, "vsm-b"), 0);
	assert_int_equal(store_vsm_get(t->s, "vsm-b", &got), -ENOENT);
	assert_int_equal(store_vsm_delete(t->s, "vsm-b"), -ENOENT);
	assert_int_equal(store_vsm_count(t->s, &count), 0);
	assert_int_equal(count, 1);

	/* Strings that do not fit are refused, never truncated. */
	struct store_vsm bad = make_vsm("bad", "b", NULL, 0);
	memset(bad.name, 'x', sizeof(bad.name));
	assert_int_equal(store_vsm_insert(t->s, &bad), -EINVAL);
	bad = make_vsm("bad", "b", NULL, 0);
	memset(bad.last_error, 'x', sizeof(bad.last_error));
	assert_int_equal(store_vsm_insert(t->s, &bad), -EINVAL);
	bad = make_vsm("", "b", NULL, 0);
	assert_int_equal(store_vsm_insert(t->s, &bad), -EINVAL);
	assert_int_equal(store_vsm_get(t->s, "", &got), -EINVAL);
}

/* store_vsm_counts against the rows: every write of a VSM row and the end
 * of a transaction change what it says, a rollback included. */
static void assert_counts(chsm_store *s, size_t total, size_t running, size_t fault)
{
	struct store_vsm_counts c;
	for (int i = 0; i < 2; i++) {    /* the query, then the kept answer */
		assert_int_equal(store_vsm_counts(s, &c), 0);
		assert_int_equal(c.total, total);
		assert_int_equal(c.running, running);
		assert_int_equal(c.fault, fault);
	}
}

static void test_vsm_counts(void **state)
{
	struct test_store *t = *state;
	struct store_vsm a = make_vsm("vsm-a", "a", NULL, 0);
	struct store_vsm b = make_vsm("vsm-b", "b", NULL, 0);
	struct store_vsm_counts c;
	assert_int_equal(store_vsm_counts(NULL, &c), -EINVAL);
	assert_int_equal(store_vsm_counts(t->s, NULL), -EINVAL);
	assert_counts(t->s, 0, 0, 0);
	assert_int_equal(store_vsm_insert(t->s, &a), 0);
	assert_counts(t->s, 1, 0, 0);
	assert_int_equal(store_vsm_insert(t->s, &b), 0);
	snprintf(a.state, sizeof(a.state), "running");
	assert_int_equal(store_vsm_update(t->s, &a), 0);
	assert_counts(t->s, 2, 1, 0);
	snprintf(b.state, sizeof(b.state), "fault");
	assert_int_equal(store_vsm_update(t->s, &b), 0);
	assert_counts(t->s, 2, 1, 1);

	/* Inside a transaction: its own rows; after a rollback: none of them. */
	struct store_vsm d = make_vsm("vsm-d", "d", NULL, 0);
	snprintf(d.state, sizeof(d.state), "running");
	assert_int_equal(store_begin(t->s), 0);
	assert_int_equal(store_vsm_insert(t->s, &d), 0);
	assert_counts(t->s, 3, 2, 1);
	assert_int_equal(store_rollback(t->s), 0);
	assert_counts(t->s, 2, 1, 1);
	assert_int_equal(store_begin(t->s), 0);
	assert_int_equal(store_vsm_insert(t->s, &d), 0);
	assert_int_equal(store_commit(t->s), 0);
	assert_counts(t->s, 3, 2, 1);

	/* A failed write changes nothing. */
	assert_int_equal(store_vsm_insert(t->s, &d), -EEXIST);
	assert_counts(t->s, 3, 2, 1);
	assert_int_equal(store_vsm_delete(t->s, "vsm-a"), 0);
	assert_counts(t->s, 2, 1, 1);
	assert_int_equal(store_vsm_delete(t->s, "vsm-b"), 0);
	assert_int_equal(store_vsm_delete(t->s, "vsm-d"), 0);
	assert_counts(t->s, 0, 0, 0);
}

static void test_find_endpoint(void **state)
{
	struct test_store *t = *state;
	struct store_vsm a = make_vsm("a", "a", "10.0.0.5", 8000);
	struct store_vsm b = make_vsm("b", "b", "10.0.0.5", 8001);
	struct store_vsm c = make_vsm("c", "c", NULL, 0);
	assert_int_equal(store_vsm_insert(t->s, &a), 0);
	assert_int_equal(store_vsm_insert(t->s, &b), 0);
	assert_int_equal(store_vsm_insert(t->s, &c), 0);
	char id[CHSM_VSM_ID_MAX_LEN + 1] = "";
	assert_int_equal(store_vsm_find_endpoint(t->s, "10.0.0.5", 8000, NULL, id), 0);
	assert_string_equal(id, "a");
	assert_int_equal(store_vsm_find_endpoint(t->s, "10.0.0.5", 8001, "a", id), 0);
	assert_string_equal(id, "b");
	assert_int_equal(store_vsm_find_endpoint(t->s, "10.0.0.5", 8000, "a", id), -ENOENT);
	assert_int_equal(store_vsm_find_endpoint(t->s, "10.0.0.6", 8000, NULL, id), -ENOENT);
	/* An unconfigured network matches nothing. */
	assert_int_equal(store_vsm_find_endpoint(t->s, "", 0, NULL, id), -ENOENT);
}

static void test_token(void **state)
{
	struct test_store *t = *state;
	struct store_vsm v = make_vsm("v1", "one", NULL, 0), got;
	uint8_t secret[32], *out = NULL;
	size_t len = 0;
	assert_int_equal(crypto_random(secret, sizeof(secret)), 0);
	assert_int_equal(store_vsm_token_set(t->s, "v1", "tok", secret, 32, 5), -ENOENT);
	assert_int_equal(store_vsm_insert(t->s, &v), 0);
	assert_int_equal(store_vsm_token_get(t->s, "v1", &out, &len), -ENOENT);
	assert_int_equal(store_vsm_token_clear(t->s, "v1"), 0);
	assert_int_equal(store_vsm_get(t->s, "v1", &got), 0);
	assert_true(got.state_version == 1);   /* nothing changed */

	assert_int_equal(store_vsm_token_set(t->s, "v1", "tok-1", secret, 32, 1234), 0);
	assert_int_equal(store_vsm_get(t->s, "v1", &got), 0);
	assert_true(got.token_configured);
	assert_string_equal(got.token_id, "tok-1");
	assert_true(got.token_updated_at == 1234);
	assert_true(got.state_version == 2);
	assert_int_equal(store_vsm_token_get(t->s, "v1", &out, &len), 0);
	assert_int_equal(len, 32);
	assert_memory_equal(out, secret, 32);
	crypto_free_secret(out, len);

	/* Replace. */
	secret[0] ^= 0xff;
	assert_int_equal(store_vsm_token_set(t->s, "v1", "tok-2", secret, 20, 2000), 0);
	assert_int_equal(store_vsm_token_get(t->s, "v1", &out, &len), 0);
	assert_int_equal(len, 20);
	assert_memory_equal(out, secret, 20);
	crypto_free_secret(out, len);
	assert_int_equal(store_vsm_get(t->s, "v1", &got), 0);
	assert_string_equal(got.token_id, "tok-2");

	assert_int_equal(store_vsm_token_clear(t->s, "v1"), 0);
	assert_int_equal(store_vsm_token_get(t->s, "v1", &out, &len), -ENOENT);
	assert_int_equal(store_vsm_get(t->s, "v1", &got), 0);
	assert_false(got.token_configured);
	assert_string_equal(got.token_id, "");
	assert_true(got.token_updated_at == 0);
	assert_true(got.state_version == 4);
	assert_int_equal(store_vsm_token_clear(t->s, "nope"), -ENOENT);

	assert_int_equal(store_vsm_token_set(t->s, "v1", "", secret, 32, 1), -EINVAL);
	assert_int_equal(store_vsm_token_set(t->s, "v1", "t", secret, 0, 1), -EINVAL);
	assert_int_equal(store_vsm_token_set(t->s, "v1", "t", NULL, 32, 1), -EINVAL);
	char long_id[CHSM_VSM_NAME_MAX_LEN + 2];
	memset(long_id, 'i', sizeof(long_id) - 1);
	long_id[sizeof(long_id) - 1] = '\0';
	assert_int_equal(store_vsm_token_set(t->s, "v1", long_id, secret, 32, 1), -EINVAL);
}

static void test_keys(void **state)
{
	struct test_store *t = *state;
	struct store_vsm v = make_vsm("v1", "one", NULL, 0), got;
	uint8_t k1[32], k2[48], *out = NULL;
	size_t len = 0, count = 99;
	assert_int_equal(crypto_random(k1, sizeof(k1)), 0);
	assert_int_equal(crypto_random(k2, sizeof(k2)), 0);
	assert_int_equal(store_vsm_key_put(t->s, "v1", "sign", 0, k1, 32), -ENOENT);
	assert_int_equal(store_vsm_key_count(t->s, "v1", &count), -ENOENT);
	assert_int_equal(store_vsm_insert(t->s, &v), 0);
	assert_int_equal(store_vsm_key_count(t->s, "v1", &count), 0);
	assert_int_equal(count, 0);

	assert_int_equal(store_vsm_key_put(t->s, "v1", "sign", 0, k1, sizeof(k1)), 0);
	assert_int_equal(store_vsm_key_put(t->s, "v1", "enc", 0, k2, sizeof(k2)), 0);
	assert_int_equal(store_vsm_key_put(t->s, "v1", "sign", 1, k2, sizeof(k2)), 0);
	assert_int_equal(store_vsm_key_count(t->s, "v1", &count), 0);
	assert_int_equal(count, 3);
	assert_int_equal(store_vsm_key_get(t->s, "v1", "sign", 0, &out, &len), 0);
	assert_int_equal(len, sizeof(k1));
	assert_memory_equal(out, k1, len);
	crypto_free_secret(out, len);
	assert_int_equal(store_vsm_key_get(t->s, "v1", "enc", 0, &out, &len), 0);
	assert_int_equal(len, sizeof(k2));
	assert_memory_equal(out, k2, len);
	crypto_free_secret(out, len);
	assert_int_equal(store_vsm_key_get(t->s, "v1", "enc", 1, &out, &len), -ENOENT);
	assert_int_equal(store_vsm_get(t->s, "v1", &got), 0);
	assert_true(got.state_version == 4);

	/* Put replaces. */
	assert_int_equal(store_vsm_key_put(t->s, "v1", "sign", 0, k2, 16), 0);
	assert_int_equal(store_vsm_key_get(t->s, "v1", "sign", 0, &out, &len), 0);
	assert_int_equal(len, 16);
	assert_memory_equal(out, k2, 16);
	crypto_free_secret(out, len);
	assert_int_equal(store_vsm_key_count(t->s, "v1", &count), 0);
	assert_int_equal(count, 3);

	assert_int_equal(store_vsm_key_delete(t->s, "v1", "sign", 0), 0);
	assert_int_equal(store_vsm_key_delete(t->s, "v1", "sign", 0), -ENOENT);
	assert_int_equal(store_vsm_key_get(t->s, "v1", "sign", 0, &out, &len), -ENOENT);
	assert_int_equal(store_vsm_key_count(t->s, "v1", &count), 0);
	assert_int_equal(count, 2);

	assert_int_equal(store_vsm_keys_clear(t->s, "v1"), 0);
	assert_int_equal(store_vsm_key_count(t->s, "v1", &count), 0);
	assert_int_equal(count, 0);
	assert_int_equal(store_vsm_keys_clear(t->s, "v1"), 0);
	assert_int_equal(store_vsm_keys_clear(t->s, "nope"), -ENOENT);
	assert_int_equal(store_vsm_get(t->s, "v1", &got), 0);
	assert_true(got.state_version == 7);

	/* Deleting the VSM removes its keys: a new VSM with its id has none. */
	assert_int_equal(store_vsm_key_put(t->s, "v1", "kek", 3, k1, sizeof(k1)), 0);
	assert_int_equal(store_vsm_delete(t->s, "v1"), 0);
	assert_int_equal(store_vsm_insert(t->s, &v), 0);
	assert_int_equal(store_vsm_key_count(t->s, "v1", &count), 0);
	assert_int_equal(count, 0);

	assert_int_equal(store_vsm_key_put(t->s, "v1", "", 0, k1, 32), -EINVAL);
	assert_int_equal(store_vsm_key_put(t->s, "v1", "sign", -1, k1, 32), -EINVAL);
	assert_int_equal(store_vsm_key_put(t->s, "v1", "sign", 0, k1, 0), -EINVAL);
	assert_int_equal(store_vsm_key_put(t->s, "v1", "a-type-name-much-longer-than-31-chars", 0,
					     k1, 32),
			 -EINVAL);
}

/* Adds the 4-byte big-endian v to buf at *len. */
static void put_be32(uint8_t *buf, size_t *len, uint32_t v)
{
	buf[(*len)++] = (uint8_t)(v >> 24);
	buf[(*len)++] = (uint8_t)(v >> 16);
	buf[(*len)++] = (uint8_t)(v >> 8);
	buf[(*len)++] = (uint8_t)v;
}

static void put_bytes(uint8_t *buf, size_t *len, const void *p, size_t n)
{
	memcpy(buf + *len, p, n);
	*len += n;
}

static void test_digest_layout(void **state)
{
	struct test_store *t = *state;
	struct store_vsm v = make_vsm("v1", "one", NULL, 0);
	char got[65], want[65];
	uint8_t k[32], tok[20], buf[256];
	size_t len = 0;
	assert_int_equal(store_vsm_state_digest(t->s, "v1", got), -ENOENT);
	assert_int_equal(store_vsm_insert(t->s, &v), 0);

	assert_int_equal(store_vsm_state_digest(t->s, "v1", got), 0);
	assert_int_equal(crypto_sm3_hex("notoken", 8, want), 0);
	assert_string_equal(got, want);

	assert_int_equal(crypto_random(k, sizeof(k)), 0);
	assert_int_equal(crypto_random(tok, sizeof(tok)), 0);
	assert_int_equal(store_vsm_key_put(t->s, "v1", "sign", 258, k, sizeof(k)), 0);
	assert_int_equal(store_vsm_key_put(t->s, "v1", "enc", 1, k, 16), 0);
	assert_int_equal(store_vsm_token_set(t->s, "v1", "tk", tok, sizeof(tok), 1), 0);
	/* "enc" sorts before "sign". */
	put_bytes(buf, &len, "enc", 4);
	put_be32(buf, &len, 1);
	put_be32(buf, &len, 16);
	put_bytes(buf, &len, k, 16);
	put_bytes(buf, &len, "sign", 5);
	put_be32(buf, &len, 258);
	put_be32(buf, &len, 32);
	put_bytes(buf, &len, k, 32);
	put_bytes(buf, &len, "token", 6);
	put_bytes(buf, &len, "tk", 3);
	put_be32(buf, &len, sizeof(tok));
	put_bytes(buf, &len, tok, sizeof(tok));
	assert_int_equal(crypto_sm3_hex(buf, len, want), 0);
	assert_int_equal(store_vsm_state_digest(t->s, "v1", got), 0);
	assert_string_equal(got, want);
}

static void test_digest_compare(void **state)
{
	struct test_store *t = *state;
	struct store_vsm a = make_vsm("alpha", "first", "10.1.1.1", 1000);
	struct store_vsm b = make_vsm("beta", "second", "10.2.2.2", 2000);
	char da[65], db[65];
	uint8_t k1[32], k2[32], tok[32];
	assert_int_equal(crypto_random(k1, 32), 0);
	assert_int_equal(crypto_random(k2, 32), 0);
	assert_int_equal(crypto_random(tok, 32), 0);
	assert_int_equal(store_vsm_insert(t->s, &a), 0);
	assert_int_equal(store_vsm_insert(t->s, &b), 0);

	/* Same keys and token, put in another order: equal. */
	assert_int_equal(store_vsm_key_put(t->s, "alpha", "sign", 0, k1, 32), 0);
	assert_int_equal(store_vsm_key_put(t->s, "alpha", "enc", 2, k2, 32), 0);
	assert_int_equal(store_vsm_token_set(t->s, "alpha", "tok", tok, 32, 1), 0);
	assert_int_equal(store_vsm_token_set(t->s, "beta", "tok", tok, 32, 99), 0);
	assert_int_equal(store_vsm_key_put(t->s, "beta", "enc", 2, k2, 32), 0);
	assert_int_equal(store_vsm_key_put(t->s, "beta", "sign", 0, k1, 32), 0);
	assert_int_equal(store_vsm_state_digest(t->s, "alpha", da), 0);
	assert_int_equal(store_vsm_state_digest(t->s, "beta", db), 0);
	assert_int_equal(strlen(da), 64);
	assert_string_equal(da, db);

	/* A different key material, index or type: different. */
	assert_int_equal(store_vsm_key_put(t->s, "beta", "sign", 0, k2, 32), 0);
	assert_int_equal(store_vsm_state_digest(t->s, "beta", db), 0);
	assert_string_not_equal(da, db);
	assert_int_equal(store_vsm_key_delete(t->s, "beta", "sign", 0), 0);
	assert_int_equal(store_vsm_key_put(t->s, "beta", "sign", 1, k1, 32), 0);
	assert_int_equal(store_vsm_state_digest(t->s, "beta", db), 0);
	assert_string_not_equal(da, db);
	assert_int_equal(store_vsm_key_delete(t->s, "beta", "sign", 1), 0);
	assert_int_equal(store_vsm_key_put(t->s, "beta", "sign", 0, k1, 32), 0);
	assert_int_equal(store_vsm_state_digest(t->s, "beta", db), 0);
	assert_string_equal(da, db);

	/* A different token secret or id, or none: different. */
	tok[31] ^= 1;
	assert_int_equal(store_vsm_token_set(t->s, "beta", "tok", tok, 32, 99), 0);
	assert_int_equal(store_vsm_state_digest(t->s, "beta", db), 0);
	assert_string_not_equal(da, db);
	tok[31] ^= 1;
	assert_int_equal(store_vsm_token_set(t->s, "beta", "tok2", tok, 32, 99), 0);
	assert_int_equal(store_vsm_state_digest(t->s, "beta", db), 0);
	assert_string_not_equal(da, db);
	assert_int_equal(store_vsm_token_clear(t->s, "beta"), 0);
	assert_int_equal(store_vsm_state_digest(t->s, "beta", db), 0);
	assert_string_not_equal(da, db);
	assert_int_equal(store_vsm_token_set(t->s, "beta", "tok", tok, 32, 5), 0);
	assert_int_equal(store_vsm_state_digest(t->s, "beta", db), 0);
	assert_string_equal(da, db);

	/* Name, network and timestamps do not count. */
	b.network.configured = false;
	snprintf(b.name, sizeof(b.name), "renamed");
	b.updated_at = 5;
	assert_int_equal(store_vsm_update(t->s, &b), 0);
	assert_int_equal(store_vsm_state_digest(t->s, "beta", db), 0);
	assert_string_equal(da, db);
}

/* The sealing key the store derives for a value: the device's for
 * secrets, the VSM's subkey (store.h) for a VSM's token and keys. */
static void seal_key_for(const char *vsm_id, uint8_t key[CRYPTO_SEAL_KEY_LEN])
{
	uint8_t root[32];
	if (!vsm_id) {
		assert_int_equal(crypto_kdf_sm3(test_master_key, STORE_MASTER_KEY_LEN,
					       "store-seal-v1", NULL, 0, key, CRYPTO_SEAL_KEY_LEN),
				 0);
		return;
	}
	assert_int_equal(crypto_kdf_sm3(test_master_key, STORE_MASTER_KEY_LEN, "vsm-root-v1",
				       NULL, 0, root, sizeof(root)),
			 0);
	assert_int_equal(crypto_kdf_sm3(root, sizeof(root), "vsm-seal-v1", vsm_id,
				       strlen(vsm_id), key, CRYPTO_SEAL_KEY_LEN),
			 0);
}

/* Finds in data the sealed form of a value of plain_len bytes under aad and
 * the key of vsm_id (NULL: a device secret), the only window that opens,
 * copying it into ret (plain_len + overhead). */
static bool find_sealed(const uint8_t *data, size_t n, const char *vsm_id, const void *aad,
			size_t aadlen, size_t plain_len, uint8_t *ret)
{
	uint8_t key[CRYPTO_SEAL_KEY_LEN];
	size_t sealed_len = plain_len + CRYPTO_SEAL_OVERHEAD;
	seal_key_for(vsm_id, key);
	for (size_t off = 0; off + sealed_len <= n; off++) {
		uint8_t *plain = NULL;
		size_t len = 0;
		if (crypto_unseal(key, aad, aadlen, data + off, sealed_len, &plain, &len) == 0) {
			crypto_free_secret(plain, len);
			memcpy(ret, data + off, sealed_len);
			return true;
		}
	}
	return false;
}

#define SECRETS 5

static void test_zeroisation(void **state)
{
	struct test_store *t = *state;
	/* 0: token of v1, 1: key sign/0 of v1, 2: key enc/1 of v1,
	 * 3: key kek/0 of v2 (VSM deleted), 4: device secret. */
	/* The documented associated data: tag and parts, each NUL-terminated
	 * (sizeof counts the literal's own final NUL). */
#define AAD(s) s, sizeof(s)
	static const struct {
		const char *vsm_id;
		const char *aad;
		size_t len;
	} aads[SECRETS] = {
		{"v1", AAD("token\0v1\0tok-z")}, {"v1", AAD("key\0v1\0sign\0" "0")},
		{"v1", AAD("key\0v1\0enc\0" "1")}, {"v2", AAD("key\0v2\0kek\0" "0")},
		{NULL, AAD("secret\0device.secret")},
	};
#undef AAD
	uint8_t plain[SECRETS][32], sealed[SECRETS][32 + CRYPTO_SEAL_OVERHEAD];
	for (int i = 0; i < SECRETS; i++)
		assert_int_equal(crypto_random(plain[i], 32), 0);

	struct store_vsm v1 = make_vsm("v1", "one", NULL, 0);
	struct store_vsm v2 = make_vsm("v2", "two", NULL, 0);
	assert_int_equal(store_vsm_insert(t->s, &v1), 0);
	assert_int_equal(store_vsm_insert(t->s, &v2), 0);
	assert_int_equal(store_vsm_token_set(t->s, "v1", "tok-z", plain[0], 32, 1), 0);
	assert_int_equal(store_vsm_key_put(t->s, "v1", "sign", 0, plain[1], 32), 0);
	assert_int_equal(store_vsm_key_put(t->s, "v1", "enc", 1, plain[2], 32), 0);
	assert_int_equal(store_vsm_key_put(t->s, "v2", "kek", 0, plain[3], 32), 0);
	assert_int_equal(store_secret_set(t->s, "device.secret", plain[4], 32), 0);

	/* Closed, everything is in the main file: find each sealed value. */
	store_close(t->s);
	t->s = NULL;
	size_t n = 0;
	uint8_t *db = test_read_all(t->path, &n);
	for (int i = 0; i < SECRETS; i++) {
		assert_true(find_sealed(db, n, aads[i].vsm_id, aads[i].aad, aads[i].len, 32,
					sealed[i]));
		assert_false(test_dir_contains(t->dir, plain[i], 32));
	}
	free(db);

	assert_int_equal(test_store_reopen(t, test_master_key), 0);
	assert_int_equal(store_vsm_token_clear(t->s, "v1"), 0);
	assert_int_equal(store_vsm_key_delete(t->s, "v1", "sign", 0), 0);
	assert_int_equal(store_begin(t->s), 0);     /* zeroised at commit */
	assert_int_equal(store_vsm_keys_clear(t->s, "v1"), 0);
	assert_int_equal(store_vsm_delete(t->s, "v2"), 0);
	assert_int_equal(store_commit(t->s), 0);
	assert_int_equal(store_secret_set(t->s, "device.secret", NULL, 0), 0);

	/* Nothing readable, neither while open (db, -wal, -shm) nor closed. */
	for (int pass = 0; pass < 2; pass++) {
		for (int i = 0; i < SECRETS; i++) {
			assert_false(test_dir_contains(t->dir, plain[i], 32));
			assert_false(test_dir_contains(t->dir, sealed[i],
						       sizeof(sealed[i])));
			/* Not even the MAC or the nonce alone. */
			assert_false(test_dir_contains(t->dir, sealed[i], 16));
			assert_false(test_dir_contains(t->dir, sealed[i] + 48, 32));
		}
		store_close(t->s);
		t->s = NULL;
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		TEST_STORE_CASE(test_vsm_rows),
		TEST_STORE_CASE(test_vsm_counts),
		TEST_STORE_CASE(test_find_endpoint),
		TEST_STORE_CASE(test_token),
		TEST_STORE_CASE(test_keys),
		TEST_STORE_CASE(test_digest_layout),
		TEST_STORE_CASE(test_digest_compare),
		TEST_STORE_CASE(test_zeroisation),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
