/*
 * Unit tests of the store core: open/close/reopen and schema versions,
 * file modes, settings, sealed secrets, nonces, idempotency records,
 * explicit transactions, crash durability and concurrent use.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "common/limits.h"
#include "crypto/crypto.h"
#include "store/store.h"
#include "test_store_util.h"

static void assert_mode_0600(const char *path)
{
	struct stat st;
	if (stat(path, &st) < 0) {
		assert_int_equal(errno, ENOENT);
		return;
	}
	assert_int_equal(st.st_mode & 07777, 0600);
}

static void test_open_reopen(void **state)
{
	struct test_store *t = *state;
	char side[160];
	int version = store_schema_version(t->s);
	assert_true(version >= 1);
	assert_int_equal(store_setting_set(t->s, "device.name", "alpha"), 0);
	assert_mode_0600(t->path);
	snprintf(side, sizeof(side), "%s-wal", t->path);
	assert_mode_0600(side);
	snprintf(side, sizeof(side), "%s-shm", t->path);
	assert_mode_0600(side);

	assert_int_equal(test_store_reopen(t, test_master_key), 0);
	assert_int_equal(store_schema_version(t->s), version);
	char *value = NULL;
	assert_int_equal(store_setting_get(t->s, "device.name", &value), 0);
	assert_string_equal(value, "alpha");
	free(value);
	assert_int_equal(store_schema_version(NULL), -EINVAL);
	store_close(NULL);
}

static void test_open_refuses(void **state)
{
	struct test_store *t = *state;
	chsm_store *s = (chsm_store *)1;
	assert_int_equal(store_open(NULL, test_master_key, &s), -EINVAL);
	assert_int_equal(store_open("", test_master_key, &s), -EINVAL);
	assert_int_equal(store_open(t->path, NULL, &s), -EINVAL);
	assert_ptr_equal(s, (chsm_store *)1);

	/* A file that is not a database. */
	char junk[160];
	snprintf(junk, sizeof(junk), "%s/junk.db", t->dir);
	int fd = open(junk, O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	char bytes[1024];
	memset(bytes, 'x', sizeof(bytes));
	assert_int_equal(write(fd, bytes, sizeof(bytes)), (ssize_t)sizeof(bytes));
	close(fd);
	assert_int_equal(store_open(junk, test_master_key, &s), -EIO);
	assert_ptr_equal(s, (chsm_store *)1);
}

static void test_newer_schema_refused(void **state)
{
	struct test_store *t = *state;
	int version = store_schema_version(t->s);
	store_close(t->s);   /* checkpoints and removes the WAL */
	t->s = NULL;
	/* PRAGMA user_version is the 4-byte big-endian field at offset 60 of
	 * the database header. */
	int fd = open(t->path, O_RDWR);
	assert_true(fd >= 0);
	uint8_t be[4];
	assert_int_equal(pread(fd, be, 4, 60), 4);
	assert_int_equal((be[0] << 24) | (be[1] << 16) | (be[2] << 8) | be[3], version);
	uint32_t newer = (uint32_t)version + 1;
	uint8_t nb[4] = {(uint8_t)(newer >> 24), (uint8_t)(newer >> 16), (uint8_t)(newer >> 8),
			 (uint8_t)newer};
	assert_int_equal(pwrite(fd, nb, 4, 60), 4);
	close(fd);

	assert_int_equal(test_store_reopen(t, test_master_key), -EPROTO);
	assert_null(t->s);
	/* Refused, not touched: the version is still the newer one. */
	fd = open(t->path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, be, 4, 60), 4);
	close(fd);
	assert_memory_equal(be, nb, 4);
}

static void test_settings(void **state)
{
	struct test_store *t = *state;
	char *value = (char *)1;
	assert_int_equal(store_setting_get(t->s, "config.ntp", &value), -ENOENT);
	assert_ptr_equal(value, (char *)1);
	assert_int_equal(store_setting_set(t->s, "config.ntp", "{\"servers\":[]}"), 0);
	assert_int_equal(store_setting_get(t->s, "config.ntp", &value), 0);
	assert_string_equal(value, "{\"servers\":[]}");
	free(value);
	assert_int_equal(store_setting_set(t->s, "config.ntp", ""), 0);
	assert_int_equal(store_setting_get(t->s, "config.ntp", &value), 0);
	assert_string_equal(value, "");
	free(value);
	assert_int_equal(store_setting_set(t->s, "config.ntp", NULL), 0);
	assert_int_equal(store_setting_get(t->s, "config.ntp", &value), -ENOENT);
	assert_int_equal(store_setting_set(t->s, "config.ntp", NULL), 0);

	char longname[STORE_NAME_MAX_LEN + 2];
	memset(longname, 'n', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	assert_int_equal(store_setting_set(t->s, longname, "v"), -EINVAL);
	longname[STORE_NAME_MAX_LEN] = '\0';
	assert_int_equal(store_setting_set(t->s, longname, "v"), 0);
	assert_int_equal(store_setting_set(t->s, "", "v"), -EINVAL);
	assert_int_equal(store_setting_set(t->s, NULL, "v"), -EINVAL);
	assert_int_equal(store_setting_get(t->s, "x", NULL), -EINVAL);
}

static void test_secrets(void **state)
{
	struct test_store *t = *state;
	static const char marker[] = "Authorization: Bearer SECRET-MARKER-7f3a9c";
	uint8_t *data = NULL;
	size_t len = 0;
	assert_int_equal(store_secret_get(t->s, "upload.headers", &data, &len), -ENOENT);
	assert_int_equal(store_secret_set(t->s, "upload.headers", marker, strlen(marker)), 0);
	assert_int_equal(store_secret_get(t->s, "upload.headers", &data, &len), 0);
	assert_int_equal(len, strlen(marker));
	assert_memory_equal(data, marker, len);
	assert_int_equal(data[len], '\0');
	crypto_free_secret(data, len);
	assert_false(test_dir_contains(t->dir, marker, strlen(marker)));

	/* Binary values, and replacing. */
	const uint8_t bin[] = {0x00, 0xff, 0x00, 0x10};
	assert_int_equal(store_secret_set(t->s, "upload.headers", bin, sizeof(bin)), 0);
	assert_int_equal(store_secret_get(t->s, "upload.headers", &data, &len), 0);
	assert_int_equal(len, sizeof(bin));
	assert_memory_equal(data, bin, sizeof(bin));
	crypto_free_secret(data, len);

	assert_int_equal(test_store_reopen(t, test_master_key), 0);
	assert_false(test_dir_contains(t->dir, marker, strlen(marker)));
	assert_int_equal(store_secret_get(t->s, "upload.headers", &data, &len), 0);
	assert_memory_equal(data, bin, sizeof(bin));
	crypto_free_secret(data, len);

	assert_int_equal(store_secret_set(t->s, "upload.headers", NULL, 0), 0);
	assert_int_equal(store_secret_get(t->s, "upload.headers", &data, &len), -ENOENT);
	assert_int_equal(store_secret_set(t->s, "x", NULL, 3), -EINVAL);
	assert_int_equal(store_secret_set(t->s, "x", bin, STORE_VALUE_MAX_LEN + 1), -EINVAL);
}

static void test_wrong_master_key(void **state)
{
	struct test_store *t = *state;
	assert_int_equal(store_secret_set(t->s, "enroll.code", "ABCDEFGHIJKLMNOPQRSTUVWXYZ", 26), 0);
	assert_int_equal(store_setting_set(t->s, "plain", "yes"), 0);
	assert_int_equal(test_store_reopen(t, test_other_key), 0);
	uint8_t *data = (uint8_t *)1;
	size_t len = 7;
	assert_int_equal(store_secret_get(t->s, "enroll.code", &data, &len), -EBADMSG);
	assert_ptr_equal(data, (uint8_t *)1);
	assert_int_equal(len, 7);
	char *value = NULL;
	assert_int_equal(store_setting_get(t->s, "plain", &value), 0);
	assert_string_equal(value, "yes");
	free(value);
	assert_int_equal(test_store_reopen(t, test_master_key), 0);
	assert_int_equal(store_secret_get(t->s, "enroll.code", &data, &len), 0);
	assert_int_equal(len, 26);
	crypto_free_secret(data, len);
}

static void test_nonces(void **state)
{
	struct test_store *t = *state;
	const int64_t t0 = 1700000000000LL;
	assert_int_equal(store_nonce_use(t->s, "nonce-aaaaaaaaaaaa", t0, t0), 0);
	assert_int_equal(store_nonce_use(t->s, "nonce-aaaaaaaaaaaa", t0, t0), 1);
	assert_int_equal(store_nonce_use(t->s, "nonce-bbbbbbbbbbbb", t0, t0 + 10), 0);

	/* The window survives a restart. */
	assert_int_equal(test_store_reopen(t, test_master_key), 0);
	assert_int_equal(store_nonce_use(t->s, "nonce-aaaaaaaaaaaa", t0, t0 + 20), 1);

	/* Once older than two windows, nonces are forgotten. */
	int64_t later = t0 + 2 * (int64_t)CHSM_AUTH_WINDOW_MS + 5000;
	assert_int_equal(store_nonce_use(t->s, "nonce-cccccccccccc", later, later), 0);
	assert_int_equal(store_nonce_use(t->s, "nonce-aaaaaaaaaaaa", later, later), 0);
	assert_int_equal(store_nonce_use(t->s, "nonce-aaaaaaaaaaaa", later, later), 1);
	assert_int_equal(store_nonce_use(t->s, "nonce-cccccccccccc", later, later), 1);

	char longnonce[CHSM_NONCE_MAX_LEN + 2];
	memset(longnonce, 'n', sizeof(longnonce) - 1);
	longnonce[sizeof(longnonce) - 1] = '\0';
	assert_int_equal(store_nonce_use(t->s, longnonce, t0, t0), -EINVAL);
	assert_int_equal(store_nonce_use(t->s, "", t0, t0), -EINVAL);
}

/* The batch form: one transaction, a result per item; an item equal to an
 * earlier one of the same batch is a replay; a bad item does not fail the
 * others; the batch is durable across a reopen. */
static void test_nonces_batch(void **state)
{
	struct test_store *t = *state;
	const int64_t t0 = 1700000000000LL;
	struct store_nonce items[] = {
		{"batch-aaaaaaaaaaaa", t0}, {"batch-bbbbbbbbbbbb", t0}, {"batch-aaaaaaaaaaaa", t0},
		{"", t0}, {"batch-bbbbbbbbbbbb", t0},
	};
	int res[5] = {9, 9, 9, 9, 9};
	assert_int_equal(store_nonces_use(t->s, items, 5, t0, res), 0);
	assert_int_equal(res[0], 0);
	assert_int_equal(res[1], 0);
	assert_int_equal(res[2], 1);
	assert_int_equal(res[3], -EINVAL);
	assert_int_equal(res[4], 1);
	assert_int_equal(store_nonces_use(t->s, items, 0, t0, NULL), 0);
	assert_int_equal(store_nonces_use(t->s, NULL, 1, t0, res), -EINVAL);
	assert_int_equal(test_store_reopen(t, test_master_key), 0);
	assert_int_equal(store_nonces_use(t->s, items, 2, t0, res), 0);
	assert_int_equal(res[0], 1);
	assert_int_equal(res[1], 1);
}

static void test_idempotency(void **state)
{
	struct test_store *t = *state;
	const int64_t t0 = 1700000000000LL;
	struct store_idem rec = {
		.method = "POST",
		.target = "/gmt0088/v1/vsms",
		.http_status = 202,
		.response = "{\"code\":0}",
		.response_len = 10,
		.created_at = t0,
	};
	memset(rec.body_sm3, 'a', 64);
	struct store_idem got;
	assert_int_equal(store_idem_get(t->s, "key-1", t0, &got), -ENOENT);
	assert_int_equal(store_idem_put(t->s, "key-1", &rec), 0);
	assert_int_equal(store_idem_put(t->s, "key-1", &rec), -EEXIST);

	assert_int_equal(store_idem_get(t->s, "key-1", t0 + 1000, &got), 0);
	assert_string_equal(got.method, "POST");
	assert_string_equal(got.target, "/gmt0088/v1/vsms");
	assert_string_equal(got.body_sm3, rec.body_sm3);
	assert_int_equal(got.http_status, 202);
	assert_int_equal(got.response_len, 10);
	assert_string_equal(got.response, "{\"code\":0}");
	assert_true(got.created_at == t0);
	store_idem_clear(&got);
	store_idem_clear(NULL);

	/* Expired: not found, and a new record may take the key. */
	int64_t later = t0 + CHSM_IDEMPOTENCY_TTL_MS + 1;
	assert_int_equal(store_idem_get(t->s, "key-1", later, &got), -ENOENT);
	struct store_idem rec2 = rec;
	rec2.method = "DELETE";
	rec2.response = NULL;
	rec2.response_len = 0;
	rec2.created_at = later;
	assert_int_equal(store_idem_put(t->s, "key-1", &rec2), 0);
	assert_int_equal(store_idem_get(t->s, "key-1", later, &got), 0);
	assert_string_equal(got.method, "DELETE");
	assert_int_equal(got.response_len, 0);
	assert_string_equal(got.response, "");
	store_idem_clear(&got);

	rec2.response_len = 3;
	assert_int_equal(store_idem_put(t->s, "key-2", &rec2), -EINVAL);
	memset(rec.body_sm3, 'a', sizeof(rec.body_sm3));
	assert_int_equal(store_idem_put(t->s, "key-2", &rec), -EINVAL);
}

static void test_transactions(void **state)
{
	struct test_store *t = *state;
	char *value = NULL;
	assert_int_equal(store_commit(t->s), -EINVAL);
	assert_int_equal(store_rollback(t->s), -EINVAL);

	assert_int_equal(store_begin(t->s), 0);
	assert_int_equal(store_begin(t->s), -EINVAL);
	assert_int_equal(store_setting_set(t->s, "a", "1"), 0);
	assert_int_equal(store_setting_get(t->s, "a", &value), 0);   /* visible inside */
	free(value);
	assert_int_equal(store_rollback(t->s), 0);
	assert_int_equal(store_setting_get(t->s, "a", &value), -ENOENT);

	/* A failing call inside a transaction undoes only itself. */
	struct store_vsm v = {.id = "v1", .name = "one", .state = "stopped"};
	assert_int_equal(store_begin(t->s), 0);
	assert_int_equal(store_setting_set(t->s, "a", "2"), 0);
	assert_int_equal(store_vsm_insert(t->s, &v), 0);
	assert_int_equal(store_vsm_insert(t->s, &v), -EEXIST);
	assert_int_equal(store_setting_set(t->s, "b", "3"), 0);
	assert_int_equal(store_commit(t->s), 0);
	assert_int_equal(test_store_reopen(t, test_master_key), 0);
	assert_int_equal(store_setting_get(t->s, "a", &value), 0);
	assert_string_equal(value, "2");
	free(value);
	assert_int_equal(store_setting_get(t->s, "b", &value), 0);
	free(value);
	struct store_vsm got;
	assert_int_equal(store_vsm_get(t->s, "v1", &got), 0);
}

/* A child process writes and exits without closing: what it was told is
 * written must be there for the next opener. */
static void test_crash_durability(void **state)
{
	struct test_store *t = *state;
	store_close(t->s);
	t->s = NULL;
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		chsm_store *s = NULL;
		int r = store_open(t->path, test_master_key, &s);
		if (r == 0)
			r = store_setting_set(s, "crash.test", "written");
		if (r == 0) {
			struct store_vsm v = {.id = "crash-vsm", .name = "c", .state = "stopped"};
			r = store_vsm_insert(s, &v);
		}
		if (r == 0)
			r = store_secret_set(s, "crash.secret", "s3", 2);
		_exit(r == 0 ? 0 : 1);
	}
	int status = 0;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);

	assert_int_equal(test_store_reopen(t, test_master_key), 0);
	char *value = NULL;
	assert_int_equal(store_setting_get(t->s, "crash.test", &value), 0);
	assert_string_equal(value, "written");
	free(value);
	struct store_vsm v;
	assert_int_equal(store_vsm_get(t->s, "crash-vsm", &v), 0);
	uint8_t *data = NULL;
	size_t len = 0;
	assert_int_equal(store_secret_get(t->s, "crash.secret", &data, &len), 0);
	assert_int_equal(len, 2);
	crypto_free_secret(data, len);
}

#define THREADS 4
#define PER_THREAD 25

struct worker {
	chsm_store *s;
	int n;
	int failures;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	for (int i = 0; i < PER_THREAD; i++) {
		struct store_vsm v = {.state = "stopped", .max_keys = i};
		snprintf(v.id, sizeof(v.id), "t%d-v%02d", w->n, i);
		snprintf(v.name, sizeof(v.name), "vsm %d/%d", w->n, i);
		if (store_vsm_insert(w->s, &v) != 0)
			w->failures++;
		struct store_vsm got;
		if (store_vsm_get(w->s, v.id, &got) != 0 || got.max_keys != i ||
		    strcmp(got.name, v.name) != 0)
			w->failures++;
		/* Two settings written atomically must read back together. */
		char a[32], b[32], val[32];
		snprintf(a, sizeof(a), "t%d.a", w->n);
		snprintf(b, sizeof(b), "t%d.b", w->n);
		snprintf(val, sizeof(val), "%d", i);
		if (store_begin(w->s) != 0 || store_setting_set(w->s, a, val) != 0 ||
		    store_setting_set(w->s, b, val) != 0 || store_commit(w->s) != 0)
			w->failures++;
		char *va = NULL, *vb = NULL;
		if (store_setting_get(w->s, a, &va) != 0 || store_setting_get(w->s, b, &vb) != 0 ||
		    strcmp(va, val) != 0 || strcmp(vb, val) != 0)
			w->failures++;
		free(va);
		free(vb);
	}
	return NULL;
}

static void test_concurrency(void **state)
{
	struct test_store *t = *state;
	pthread_t threads[THREADS];
	struct worker workers[THREADS];
	for (int i = 0; i < THREADS; i++) {
		workers[i] = (struct worker){.s = t->s, .n = i};
		assert_int_equal(pthread_create(&threads[i], NULL, worker_main, &workers[i]), 0);
	}
	for (int i = 0; i < THREADS; i++) {
		assert_int_equal(pthread_join(threads[i], NULL), 0);
		assert_int_equal(workers[i].failures, 0);
	}
	size_t count = 0;
	assert_int_equal(store_vsm_count(t->s, &count), 0);
	assert_int_equal(count, THREADS * PER_THREAD);
	struct store_vsm *list = NULL;
	assert_int_equal(store_vsm_list(t->s, &list, &count), 0);
	assert_int_equal(count, THREADS * PER_THREAD);
	for (size_t i = 1; i < count; i++)
		assert_true(strcmp(list[i - 1].id, list[i].id) < 0);
	free(list);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		TEST_STORE_CASE(test_open_reopen),
		TEST_STORE_CASE(test_open_refuses),
		TEST_STORE_CASE(test_newer_schema_refused),
		TEST_STORE_CASE(test_settings),
		TEST_STORE_CASE(test_secrets),
		TEST_STORE_CASE(test_wrong_master_key),
		TEST_STORE_CASE(test_nonces),
		TEST_STORE_CASE(test_nonces_batch),
		TEST_STORE_CASE(test_idempotency),
		TEST_STORE_CASE(test_transactions),
		TEST_STORE_CASE(test_crash_durability),
		TEST_STORE_CASE(test_concurrency),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
