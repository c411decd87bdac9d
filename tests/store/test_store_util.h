/*
 * test_store_util.h: what the store tests share: a store in a fresh
 * temporary directory, and searching every file of that directory for
 * bytes (to prove that secrets are not readable at rest).
 */
#ifndef CHSM_TEST_STORE_UTIL_H
#define CHSM_TEST_STORE_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

struct test_store {
	char dir[64];      /* a mkdtemp directory of its own */
	char path[128];    /* dir/chsm.db */
	chsm_store *s;
};

/* The master key most tests use, and another one. */
extern const uint8_t test_master_key[STORE_MASTER_KEY_LEN];
extern const uint8_t test_other_key[STORE_MASTER_KEY_LEN];

/* Makes a fresh directory and opens a store in it with test_master_key
 * (cmocka-asserts on failure). */
void test_store_setup(struct test_store *t);
/* (Re)opens t->path with key; returns what store_open returned. */
int test_store_reopen(struct test_store *t, const uint8_t key[STORE_MASTER_KEY_LEN]);
/* Closes the store and removes the directory and its files. */
void test_store_teardown(struct test_store *t);

/* cmocka fixtures: *state becomes a malloc'ed struct test_store, set up
 * as test_store_setup does; teardown undoes it. */
int test_store_cmocka_setup(void **state);
int test_store_cmocka_teardown(void **state);
#define TEST_STORE_CASE(f) \
	cmocka_unit_test_setup_teardown(f, test_store_cmocka_setup, test_store_cmocka_teardown)

/* Inserts VSM id (name "name-<id>", the given state, version 1.0.0, 64 keys,
 * 8 sessions, 64 MiB) into s (cmocka-asserts on failure). */
void test_store_add_vsm(chsm_store *s, const char *id, const char *state);

/* True when any regular file in dir contains needle. */
bool test_dir_contains(const char *dir, const void *needle, size_t len);
/* Reads the whole file at path into a malloc'ed buffer (asserts). */
uint8_t *test_read_all(const char *path, size_t *ret_len);

#endif
