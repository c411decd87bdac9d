/* test_store_util.c: see test_store_util.h. */
#define _GNU_SOURCE   /* memmem */
#include "test_store_util.h"

#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

const uint8_t test_master_key[STORE_MASTER_KEY_LEN] = {
	0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x10, 0x32, 0x54,
	0x76, 0x98, 0xba, 0xdc, 0xfe, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66,
	0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, 0x00};
const uint8_t test_other_key[STORE_MASTER_KEY_LEN] = {0x5a};

void test_store_setup(struct test_store *t)
{
	memset(t, 0, sizeof(*t));
	snprintf(t->dir, sizeof(t->dir), "/tmp/chsm-store-XXXXXX");
	assert_non_null(mkdtemp(t->dir));
	snprintf(t->path, sizeof(t->path), "%s/chsm.db", t->dir);
	assert_int_equal(test_store_reopen(t, test_master_key), 0);
}

int test_store_reopen(struct test_store *t, const uint8_t key[STORE_MASTER_KEY_LEN])
{
	store_close(t->s);
	t->s = NULL;
	return store_open(t->path, key, &t->s);
}

void test_store_teardown(struct test_store *t)
{
	store_close(t->s);
	t->s = NULL;
	DIR *d = opendir(t->dir);
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		char p[512];
		snprintf(p, sizeof(p), "%s/%s", t->dir, e->d_name);
		unlink(p);
	}
	closedir(d);
	rmdir(t->dir);
}

int test_store_cmocka_setup(void **state)
{
	struct test_store *t = malloc(sizeof(*t));
	assert_non_null(t);
	test_store_setup(t);
	*state = t;
	return 0;
}

int test_store_cmocka_teardown(void **state)
{
	test_store_teardown(*state);
	free(*state);
	return 0;
}

uint8_t *test_read_all(const char *path, size_t *ret_len)
{
	FILE *f = fopen(path, "rb");
	assert_non_null(f);
	size_t cap = 4096, len = 0;
	uint8_t *buf = malloc(cap);
	assert_non_null(buf);
	size_t n;
	while ((n = fread(buf + len, 1, cap - len, f)) > 0) {
		len += n;
		if (len == cap) {
			cap *= 2;
			buf = realloc(buf, cap);
			assert_non_null(buf);
		}
	}
	fclose(f);
	*ret_len = len;
	return buf;
}

bool test_dir_contains(const char *dir, const void *needle, size_t len)
{
	bool found = false;
	DIR *d = opendir(dir);
	assert_non_null(d);
	struct dirent *e;
	while (!found && (e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		char p[512];
		snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
		size_t n = 0;
		uint8_t *data = test_read_all(p, &n);
		found = memmem(data, n, needle, len) != NULL;
		free(data);
	}
	closedir(d);
	return found;
}

void test_store_add_vsm(chsm_store *s, const char *id, const char *state)
{
	struct store_vsm v;
	memset(&v, 0, sizeof(v));
	snprintf(v.id, sizeof(v.id), "%s", id);
	snprintf(v.name, sizeof(v.name), "name-%s", id);
	snprintf(v.state, sizeof(v.state), "%s", state);
	snprintf(v.version, sizeof(v.version), "1.0.0");
	v.created_at = v.updated_at = 1700000000000LL;
	v.state_version = 1;
	v.max_keys = 64;
	v.max_sessions = 8;
	v.memory_mib = 64;
	assert_int_equal(store_vsm_insert(s, &v), 0);
}
