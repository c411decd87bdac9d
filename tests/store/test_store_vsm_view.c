/*
 * Unit tests of per-VSM sealing and the VSM process's restricted store:
 * the documented subkey derivation, a restricted store reading and writing
 * the rows chsmd reads (and the other way round), -EPERM for every function
 * outside the allowed set and for every other VSM id, the schema check at
 * open, and a forked process writing keys through its restricted store while
 * this one reads counts and digests through the master store.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "common/limits.h"
#include "crypto/crypto.h"
#include "store/store.h"
#include "test_store_util.h"

/* Opens the restricted store of id on t's database with the subkey the
 * master store gives. */
static chsm_store *open_view(struct test_store *t, const char *id)
{
	uint8_t key[STORE_VSM_KEY_LEN];
	chsm_store *v = NULL;
	assert_int_equal(store_vsm_subkey(t->s, id, key), 0);
	assert_int_equal(store_open_vsm(t->path, id, key, &v), 0);
	crypto_wipe(key, sizeof(key));
	assert_non_null(v);
	return v;
}

static int64_t state_version(chsm_store *s, const char *id)
{
	struct store_vsm v;
	assert_int_equal(store_vsm_get(s, id, &v), 0);
	return v.state_version;
}

static void assert_key(chsm_store *s, const char *id, const char *type, int index,
		       const char *want)
{
	uint8_t *m = NULL;
	size_t n = 0;
	assert_int_equal(store_vsm_key_get(s, id, type, index, &m, &n), 0);
	assert_int_equal(n, strlen(want));
	assert_memory_equal(m, want, n);
	crypto_free_secret(m, n);
}

static void test_subkey_derivation(void **state)
{
	struct test_store *t = *state;
	uint8_t root[32], want[32], got[STORE_VSM_KEY_LEN], other[STORE_VSM_KEY_LEN];
	assert_int_equal(crypto_kdf_sm3(test_master_key, STORE_MASTER_KEY_LEN, "vsm-root-v1",
				       NULL, 0, root, sizeof(root)),
			 0);
	assert_int_equal(crypto_kdf_sm3(root, sizeof(root), "vsm-seal-v1", "vsm-1", 5, want,
				       sizeof(want)),
			 0);
	/* Derived for any id, whether or not the VSM exists yet. */
	assert_int_equal(store_vsm_subkey(t->s, "vsm-1", got), 0);
	assert_memory_equal(got, want, sizeof(want));
	assert_int_equal(store_vsm_subkey(t->s, "vsm-2", other), 0);
	assert_memory_not_equal(got, other, sizeof(got));
	assert_int_equal(store_vsm_subkey(t->s, "", got), -EINVAL);
	assert_int_equal(store_vsm_subkey(NULL, "vsm-1", got), -EINVAL);

	/* Another master key, other subkeys. */
	assert_int_equal(test_store_reopen(t, test_other_key), 0);
	assert_int_equal(store_vsm_subkey(t->s, "vsm-1", other), 0);
	assert_memory_not_equal(want, other, sizeof(want));
}

static void test_shared_rows(void **state)
{
	struct test_store *t = *state;
	test_store_add_vsm(t->s, "vsm-1", "running");
	assert_int_equal(store_vsm_token_set(t->s, "vsm-1", "tok", (const uint8_t *)"tsecret", 7,
					     5),
			 0);
	assert_int_equal(store_vsm_key_put(t->s, "vsm-1", "sign", 1, (const uint8_t *)"by-chsmd",
					   8),
			 0);
	chsm_store *v = open_view(t, "vsm-1");

	/* The VSM reads what chsmd wrote: its row, token and keys. */
	struct store_vsm row;
	assert_int_equal(store_vsm_get(v, "vsm-1", &row), 0);
	assert_string_equal(row.name, "name-vsm-1");
	assert_true(row.token_configured);
	assert_string_equal(row.token_id, "tok");
	uint8_t *secret = NULL;
	size_t secret_len = 0;
	assert_int_equal(store_vsm_token_get(v, "vsm-1", &secret, &secret_len), 0);
	assert_int_equal(secret_len, 7);
	assert_memory_equal(secret, "tsecret", 7);
	crypto_free_secret(secret, secret_len);
	assert_key(v, "vsm-1", "sign", 1, "by-chsmd");

	/* chsmd reads what the VSM writes, and each write counts in
	 * state_version. */
	int64_t sv = state_version(t->s, "vsm-1");
	assert_int_equal(store_vsm_key_put(v, "vsm-1", "enc", 0, (const uint8_t *)"by-vsm", 6), 0);
	assert_int_equal(store_vsm_key_put(v, "vsm-1", "sign", 0, (const uint8_t *)"s0", 2), 0);
	assert_true(state_version(t->s, "vsm-1") == sv + 2);
	assert_key(t->s, "vsm-1", "enc", 0, "by-vsm");
	assert_int_equal(store_vsm_key_delete(v, "vsm-1", "sign", 1), 0);
	assert_true(state_version(v, "vsm-1") == sv + 3);
	assert_int_equal(store_vsm_key_delete(v, "vsm-1", "sign", 1), -ENOENT);
	assert_int_equal(store_vsm_key_get(t->s, "vsm-1", "sign", 1, &secret, &secret_len),
			 -ENOENT);

	size_t count = 0;
	assert_int_equal(store_vsm_key_count(v, "vsm-1", &count), 0);
	assert_int_equal(count, 2);
	struct store_key_ref *keys = NULL;
	assert_int_equal(store_vsm_key_list(v, "vsm-1", &keys, &count), 0);
	assert_int_equal(count, 2);
	assert_string_equal(keys[0].type, "enc");
	assert_int_equal(keys[0].index, 0);
	assert_string_equal(keys[1].type, "sign");
	assert_int_equal(keys[1].index, 0);
	free(keys);

	/* Both see the same state. */
	char d_master[65], d_view[65];
	assert_int_equal(store_vsm_state_digest(t->s, "vsm-1", d_master), 0);
	assert_int_equal(store_vsm_state_digest(v, "vsm-1", d_view), 0);
	assert_string_equal(d_master, d_view);
	store_close(v);
}

static void test_key_list(void **state)
{
	struct test_store *t = *state;
	struct store_key_ref *keys = (struct store_key_ref *)1;
	size_t count = 7;
	assert_int_equal(store_vsm_key_list(t->s, "nope", &keys, &count), -ENOENT);
	assert_ptr_equal(keys, (struct store_key_ref *)1);
	test_store_add_vsm(t->s, "vsm-1", "running");
	assert_int_equal(store_vsm_key_list(t->s, "vsm-1", &keys, &count), 0);
	assert_int_equal(count, 0);
	free(keys);
	/* (type, index) order: types byte-wise, a prefix first; indexes
	 * numerically. */
	static const struct {
		const char *type;
		int index;
	} want[] = {{"enc", 2}, {"enc", 10}, {"sign", 0}, {"signx", 0}};
	for (size_t i = sizeof(want) / sizeof(want[0]); i-- > 0;)
		assert_int_equal(store_vsm_key_put(t->s, "vsm-1", want[i].type, want[i].index,
						   (const uint8_t *)"m", 1),
				 0);
	assert_int_equal(store_vsm_key_list(t->s, "vsm-1", &keys, &count), 0);
	assert_int_equal(count, sizeof(want) / sizeof(want[0]));
	for (size_t i = 0; i < count; i++) {
		assert_string_equal(keys[i].type, want[i].type);
		assert_int_equal(keys[i].index, want[i].index);
	}
	free(keys);
	assert_int_equal(store_vsm_key_list(t->s, "vsm-1", NULL, &count), -EINVAL);
}

static void test_restricted_refuses(void **state)
{
	struct test_store *t = *state;
	test_store_add_vsm(t->s, "vsm-1", "running");
	test_store_add_vsm(t->s, "vsm-2", "running");
	assert_int_equal(store_vsm_key_put(t->s, "vsm-2", "sign", 0, (const uint8_t *)"two", 3),
			 0);
	assert_int_equal(store_vsm_token_set(t->s, "vsm-2", "tok", (const uint8_t *)"x", 1, 1), 0);
	assert_int_equal(store_secret_set(t->s, "device.secret", "s", 1), 0);
	assert_int_equal(store_setting_set(t->s, "config", "{}"), 0);
	chsm_store *v = open_view(t, "vsm-1");

	/* Another VSM: nothing, not even whether it exists. */
	struct store_vsm row;
	uint8_t *m = NULL, key[STORE_VSM_KEY_LEN];
	size_t n = 0;
	char digest[65];
	struct store_key_ref *keys = NULL;
	const uint8_t one = 1;
	for (int i = 0; i < 2; i++) {
		const char *id = i == 0 ? "vsm-2" : "vsm-9";
		assert_int_equal(store_vsm_get(v, id, &row), -EPERM);
		assert_int_equal(store_vsm_token_get(v, id, &m, &n), -EPERM);
		assert_int_equal(store_vsm_key_put(v, id, "sign", 1, &one, 1), -EPERM);
		assert_int_equal(store_vsm_key_get(v, id, "sign", 0, &m, &n), -EPERM);
		assert_int_equal(store_vsm_key_delete(v, id, "sign", 0), -EPERM);
		assert_int_equal(store_vsm_key_count(v, id, &n), -EPERM);
		assert_int_equal(store_vsm_key_list(v, id, &keys, &n), -EPERM);
		assert_int_equal(store_vsm_state_digest(v, id, digest), -EPERM);
	}

	/* Functions outside the allowed set, even for its own id. */
	char *text = NULL;
	struct store_vsm *vsms = NULL;
	struct store_task task;
	struct store_idem idem;
	memset(&task, 0, sizeof(task));
	memset(&idem, 0, sizeof(idem));
	snprintf(task.id, sizeof(task.id), "t1");
	memset(&row, 0, sizeof(row));
	snprintf(row.id, sizeof(row.id), "vsm-1");
	assert_int_equal(store_setting_get(v, "config", &text), -EPERM);
	assert_int_equal(store_setting_set(v, "config", "x"), -EPERM);
	assert_int_equal(store_secret_get(v, "device.secret", &m, &n), -EPERM);
	assert_int_equal(store_secret_set(v, "device.secret", NULL, 0), -EPERM);
	assert_int_equal(store_nonce_use(v, "n1", 1, 1), -EPERM);
	assert_int_equal(store_idem_get(v, "k1", 1, &idem), -EPERM);
	assert_int_equal(store_vsm_list(v, &vsms, &n), -EPERM);
	assert_int_equal(store_vsm_count(v, &n), -EPERM);
	assert_int_equal(store_vsm_insert(v, &row), -EPERM);
	assert_int_equal(store_vsm_update(v, &row), -EPERM);
	assert_int_equal(store_vsm_delete(v, "vsm-1"), -EPERM);
	assert_int_equal(store_vsm_token_set(v, "vsm-1", "tok", &one, 1, 1), -EPERM);
	assert_int_equal(store_vsm_token_clear(v, "vsm-1"), -EPERM);
	assert_int_equal(store_vsm_keys_clear(v, "vsm-1"), -EPERM);
	assert_int_equal(store_vsm_subkey(v, "vsm-1", key), -EPERM);
	assert_int_equal(store_vsm_find_endpoint(v, "10.0.0.1", 1, NULL, digest), -EPERM);
	assert_int_equal(store_task_insert(v, &task), -EPERM);
	assert_int_equal(store_task_get(v, "t1", &task), -EPERM);
	assert_int_equal(store_task_count_active(v, &n), -EPERM);
	assert_int_equal(store_task_purge(v, 0), -EPERM);
	assert_int_equal(store_begin(v), -EPERM);
	assert_int_equal(store_commit(v), -EPERM);

	/* Nothing changed: chsmd still sees everything as it was. */
	assert_int_equal(store_secret_get(t->s, "device.secret", &m, &n), 0);
	crypto_free_secret(m, n);
	assert_key(t->s, "vsm-2", "sign", 0, "two");
	assert_int_equal(store_vsm_get(t->s, "vsm-1", &row), 0);
	assert_int_equal(store_vsm_count(t->s, &n), 0);
	assert_int_equal(n, 2);
	store_close(v);
}

static void test_sealed_per_vsm(void **state)
{
	struct test_store *t = *state;
	test_store_add_vsm(t->s, "vsm-1", "running");
	assert_int_equal(store_vsm_key_put(t->s, "vsm-1", "sign", 0, (const uint8_t *)"k", 1), 0);
	assert_int_equal(store_vsm_token_set(t->s, "vsm-1", "tok", (const uint8_t *)"s", 1, 1), 0);

	/* vsm-2's subkey opened as vsm-1 (a VSM claiming another's id): the
	 * row is reachable but nothing sealed opens. */
	uint8_t wrong[STORE_VSM_KEY_LEN];
	chsm_store *v = NULL;
	uint8_t *m = NULL;
	size_t n = 0;
	char digest[65];
	assert_int_equal(store_vsm_subkey(t->s, "vsm-2", wrong), 0);
	assert_int_equal(store_open_vsm(t->path, "vsm-1", wrong, &v), 0);
	assert_int_equal(store_vsm_key_get(v, "vsm-1", "sign", 0, &m, &n), -EBADMSG);
	assert_int_equal(store_vsm_token_get(v, "vsm-1", &m, &n), -EBADMSG);
	assert_int_equal(store_vsm_state_digest(v, "vsm-1", digest), -EBADMSG);
	store_close(v);

	/* The master key alone (the device sealing key) does not open a VSM's
	 * key either: its sealed blob is bound to the subkey. A store under
	 * another master key derives other subkeys. */
	assert_int_equal(test_store_reopen(t, test_other_key), 0);
	assert_int_equal(store_vsm_key_get(t->s, "vsm-1", "sign", 0, &m, &n), -EBADMSG);
}

static void test_open_vsm_errors(void **state)
{
	struct test_store *t = *state;
	uint8_t key[STORE_VSM_KEY_LEN] = {0};
	chsm_store *v = (chsm_store *)1;
	char missing[160];
	snprintf(missing, sizeof(missing), "%s/absent.db", t->dir);
	assert_int_equal(store_open_vsm(missing, "vsm-1", key, &v), -ENOENT);
	assert_int_equal(access(missing, F_OK), -1);   /* never created */
	assert_int_equal(store_open_vsm(t->path, "", key, &v), -EINVAL);
	assert_int_equal(store_open_vsm(t->path, "vsm-1", NULL, &v), -EINVAL);
	assert_int_equal(store_open_vsm(NULL, "vsm-1", key, &v), -EINVAL);
	assert_ptr_equal(v, (chsm_store *)1);

	/* Another schema version: the VSM never migrates. */
	int version = store_schema_version(t->s);
	store_close(t->s);
	t->s = NULL;
	int fd = open(t->path, O_RDWR | O_CLOEXEC);
	assert_true(fd >= 0);
	uint32_t newer = (uint32_t)version + 1;
	uint8_t nb[4] = {(uint8_t)(newer >> 24), (uint8_t)(newer >> 16), (uint8_t)(newer >> 8),
			 (uint8_t)newer};
	assert_int_equal(pwrite(fd, nb, 4, 60), 4);
	close(fd);
	assert_int_equal(store_open_vsm(t->path, "vsm-1", key, &v), -EPROTO);
	assert_ptr_equal(v, (chsm_store *)1);
}

#define CHILD_KEYS 200

/* The forked VSM process: puts CHILD_KEYS keys and deletes every tenth
 * again, through its restricted store. Exits 0 on success, else the step
 * that failed. */
static void child_writes(const char *path, const uint8_t key[STORE_VSM_KEY_LEN])
{
	chsm_store *v = NULL;
	if (store_open_vsm(path, "vsm-1", key, &v) < 0)
		_exit(10);
	for (int i = 0; i < CHILD_KEYS; i++) {
		uint8_t m[16];
		memset(m, i & 0xff, sizeof(m));
		if (store_vsm_key_put(v, "vsm-1", "sign", i, m, sizeof(m)) < 0)
			_exit(11);
		if (i % 10 == 9 && store_vsm_key_delete(v, "vsm-1", "sign", i) < 0)
			_exit(12);
	}
	store_close(v);
	_exit(0);
}

static void test_two_processes(void **state)
{
	struct test_store *t = *state;
	uint8_t key[STORE_VSM_KEY_LEN];
	test_store_add_vsm(t->s, "vsm-1", "running");
	test_store_add_vsm(t->s, "vsm-2", "running");
	assert_int_equal(store_vsm_subkey(t->s, "vsm-1", key), 0);
	int64_t sv0 = state_version(t->s, "vsm-1");

	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		child_writes(t->path, key);   /* never returns */
	crypto_wipe(key, sizeof(key));

	/* While the child writes, this process reads (and writes other
	 * rows): every call succeeds and the count never goes backwards by
	 * more than the one key a delete removes. */
	int status = 0, reads = 0;
	size_t last = 0;
	pid_t done = 0;
	while (done == 0) {
		size_t count = 0;
		char digest[65];
		assert_int_equal(store_vsm_key_count(t->s, "vsm-1", &count), 0);
		assert_true(count + 1 >= last);
		last = count;
		assert_int_equal(store_vsm_state_digest(t->s, "vsm-1", digest), 0);
		assert_int_equal(store_vsm_key_put(t->s, "vsm-2", "enc", reads % 8,
						   (const uint8_t *)"p", 1),
				 0);
		reads++;
		/* SQLite's busy handler is not fair: a writer looping without a
		 * pause can starve the other process past its busy timeout on a
		 * loaded machine (the child then exits 11). A daemon pauses
		 * between requests; so does this loop. */
		struct timespec pause = {0, 1000000};
		nanosleep(&pause, NULL);
		done = waitpid(pid, &status, WNOHANG);
		assert_true(done >= 0);
	}
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);

	size_t count = 0;
	assert_int_equal(store_vsm_key_count(t->s, "vsm-1", &count), 0);
	assert_int_equal(count, CHILD_KEYS - CHILD_KEYS / 10);
	assert_true(state_version(t->s, "vsm-1") == sv0 + CHILD_KEYS + CHILD_KEYS / 10);
	uint8_t *m = NULL;
	size_t n = 0;
	assert_int_equal(store_vsm_key_get(t->s, "vsm-1", "sign", 8, &m, &n), 0);
	assert_int_equal(n, 16);
	assert_int_equal(m[0], 8);
	crypto_free_secret(m, n);
	assert_int_equal(store_vsm_key_get(t->s, "vsm-1", "sign", 9, &m, &n), -ENOENT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		TEST_STORE_CASE(test_subkey_derivation),
		TEST_STORE_CASE(test_shared_rows),
		TEST_STORE_CASE(test_key_list),
		TEST_STORE_CASE(test_restricted_refuses),
		TEST_STORE_CASE(test_sealed_per_vsm),
		TEST_STORE_CASE(test_open_vsm_errors),
		TEST_STORE_CASE(test_two_processes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
