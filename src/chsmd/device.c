/*
 * device.c: initialisation and opening of a CHSM state directory (see
 * device.h). Initialisation writes everything or, on failure, leaves no
 * database behind, so it can be run again.
 */
#include "chsmd/device.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/limits.h"
#include "common/util.h"
#include "crypto/tls.h"

#define DOMAIN_PBKDF2_ITERATIONS 100000
#define DOMAIN_KEY_LEN 32
#define DOMAIN_SECRET_MAX DEVICE_DOMAIN_SECRET_MAX

int device_path(const char *state_dir, const char *name, char *out, size_t cap)
{
	int n = snprintf(out, cap, "%s/%s", state_dir, name);
	return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}

int device_lock(const char *state_dir, int *ret_fd)
{
	char path[PATH_MAX];
	int r = device_path(state_dir, "chsmd.lock", path, sizeof(path));
	if (r < 0)
		return r;
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		r = errno == EWOULDBLOCK ? -EBUSY : -errno;
		close(fd);
		return r;
	}
	*ret_fd = fd;
	return 0;
}

int device_open_store(const char *state_dir, chsm_store **ret_store)
{
	char path[PATH_MAX];
	char *key = NULL;
	size_t len = 0;
	int r = device_path(state_dir, "master.key", path, sizeof(path));
	if (r < 0)
		return r;
	r = chsm_read_file(path, 64, &key, &len);
	if (r < 0)
		return r;
	if (len != STORE_MASTER_KEY_LEN) {
		crypto_free_secret(key, len + 1);
		return -EINVAL;
	}
	r = device_path(state_dir, "chsm.db", path, sizeof(path));
	if (r == 0)
		r = store_open(path, (const uint8_t *)key, ret_store);
	crypto_free_secret(key, len + 1);
	return r;
}

int device_load_key(chsm_store *store, crypto_sm2_key **ret_key)
{
	uint8_t *pem = NULL;
	size_t len = 0;
	int r = store_secret_get(store, "device.key", &pem, &len);
	if (r < 0)
		return r;
	r = crypto_sm2_load_private_pem((const char *)pem, len, ret_key);
	crypto_free_secret(pem, len);
	return r;
}

int device_new_enrollment_code(chsm_store *store, char *out)
{
	static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
	uint8_t rnd[CHSM_ENROLL_CODE_CHARS];
	int r = crypto_random(rnd, sizeof(rnd));
	if (r < 0)
		return r;
	for (size_t i = 0; i < CHSM_ENROLL_CODE_CHARS; i++)
		out[i] = alphabet[rnd[i] & 31]; /* 32 divides 256: unbiased */
	out[CHSM_ENROLL_CODE_CHARS] = '\0';
	crypto_wipe(rnd, sizeof(rnd));
	r = store_secret_set(store, "enrollment.code", out, CHSM_ENROLL_CODE_CHARS);
	if (r == 0)
		r = store_setting_set(store, "enrollment.failures", NULL);
	return r;
}

/* Derives the domain key: PBKDF2-HMAC-SM3 of the secret, salted with the
 * domain name; or a random key for a device-local domain. */
static int domain_key(const struct device_init_options *o, uint8_t key[DOMAIN_KEY_LEN])
{
	if (!o->domain_name)
		return crypto_random(key, DOMAIN_KEY_LEN);
	char *file = NULL;
	size_t len = 0;
	const char *secret = o->domain_secret;
	int r;
	if (secret) {
		len = o->domain_secret_len;
	} else {
		if ((r = chsm_read_file(o->domain_secret_file, DOMAIN_SECRET_MAX, &file, &len)) < 0)
			return r;
		secret = file;
	}
	size_t n = len;
	while (n > 0 && (secret[n - 1] == '\n' || secret[n - 1] == '\r'))
		n--;
	if (n < 8) {
		if (file)
			crypto_free_secret(file, len + 1);
		return -EINVAL;
	}
	char salt[CHSM_VSM_NAME_MAX_LEN + 32];
	snprintf(salt, sizeof(salt), "OpenCHSM-domain-v1:%s", o->domain_name);
	r = crypto_pbkdf2_sm3(secret, n, salt, strlen(salt), DOMAIN_PBKDF2_ITERATIONS, key,
			      DOMAIN_KEY_LEN);
	if (file)
		crypto_free_secret(file, len + 1);
	return r;
}

static int make_device_id(const char *given, char *out, size_t cap)
{
	if (given) {
		size_t n = strlen(given);
		if (n < 1 || n > CHSM_VSM_ID_MAX_LEN || !chsm_str_charset(given, n, "_.-"))
			return -EINVAL;
		snprintf(out, cap, "%s", given);
		return 0;
	}
	uint8_t rnd[6];
	char hex[13];
	int r = crypto_random(rnd, sizeof(rnd));
	if (r < 0)
		return r;
	chsm_hex_encode(rnd, sizeof(rnd), hex);
	snprintf(out, cap, "chsm-%s", hex);
	return 0;
}

static int store_identity(chsm_store *s, const struct device_init_options *o, const char *device_id,
			  crypto_sm2_key *device_key, const uint8_t dkey[DOMAIN_KEY_LEN],
			  char *ret_code)
{
	char *pem = NULL, buf[64], serial[32], fp_hex[CRYPTO_SM3_HEX_LEN + 1];
	size_t pem_len = 0;
	uint8_t rnd[8], derived[32];
	int r = crypto_sm2_private_pem(device_key, &pem, &pem_len);
	if (r < 0)
		return r;
	r = crypto_random(rnd, sizeof(rnd));
	if (r < 0)
		goto out;
	memcpy(serial, "OC-", 3);
	chsm_hex_encode(rnd, sizeof(rnd), serial + 3);
	r = crypto_kdf_sm3(dkey, DOMAIN_KEY_LEN, "domain-fingerprint", NULL, 0, derived, sizeof(derived));
	if (r == 0)
		r = crypto_sm3_hex(derived, sizeof(derived), fp_hex);
	if (r < 0)
		goto out;
	char name[CHSM_VSM_NAME_MAX_LEN + 16];
	if (o->domain_name)
		snprintf(name, sizeof(name), "%s", o->domain_name);
	else
		snprintf(name, sizeof(name), "local-%s", device_id);
	snprintf(buf, sizeof(buf), "%d", o->max_vsms);
	char created[24];
	snprintf(created, sizeof(created), "%lld", (long long)chsm_now_ms());
	if ((r = store_begin(s)) < 0)
		goto out;
	if ((r = store_secret_set(s, "device.key", pem, pem_len)) < 0 ||
	    (r = store_secret_set(s, "domain.key", dkey, DOMAIN_KEY_LEN)) < 0 ||
	    (r = store_setting_set(s, "device.id", device_id)) < 0 ||
	    (r = store_setting_set(s, "device.serial", serial)) < 0 ||
	    (r = store_setting_set(s, "device.created_at", created)) < 0 ||
	    (r = store_setting_set(s, "device.max_vsms", buf)) < 0 ||
	    (r = store_setting_set(s, "domain.name", name)) < 0 ||
	    (r = store_setting_set(s, "domain.fingerprint", fp_hex)) < 0 ||
	    (r = device_new_enrollment_code(s, ret_code)) < 0) {
		store_rollback(s);
		goto out;
	}
	r = store_commit(s);
out:
	crypto_wipe(derived, sizeof(derived));
	crypto_free_secret(pem, pem_len);
	return r;
}

static int copy_vendor_key(const char *state_dir, const char *file)
{
	char *pem = NULL, path[PATH_MAX];
	size_t len = 0;
	crypto_sm2_key *k = NULL;
	int r = chsm_read_file(file, CHSM_JSON_MAX_PEM, &pem, &len);
	if (r < 0)
		return r;
	r = crypto_sm2_load_public_pem(pem, len, &k);
	if (r == 0)
		r = device_path(state_dir, "vendor-key.pem", path, sizeof(path));
	if (r == 0)
		r = chsm_write_file_atomic(path, pem, len, 0644);
	crypto_sm2_key_free(k);
	free(pem);
	return r;
}

int device_init(const struct device_init_options *o)
{
	char db[PATH_MAX], mk[PATH_MAX], tk[PATH_MAX], tc[PATH_MAX];
	char device_id[CHSM_VSM_ID_MAX_LEN + 1], code[CHSM_ENROLL_CODE_CHARS + 1];
	char fp[CRYPTO_SM3_HEX_LEN + 1];
	uint8_t master[STORE_MASTER_KEY_LEN], dkey[DOMAIN_KEY_LEN];
	crypto_sm2_key *key = NULL;
	chsm_store *s = NULL;
	int lock_fd = -1;
	bool created_db = false;
	int r;

	if (mkdir(o->state_dir, 0700) < 0 && errno != EEXIST)
		return -errno;
	if ((r = device_path(o->state_dir, "chsm.db", db, sizeof(db))) < 0 ||
	    (r = device_path(o->state_dir, "master.key", mk, sizeof(mk))) < 0 ||
	    (r = device_path(o->state_dir, "tls-key.pem", tk, sizeof(tk))) < 0 ||
	    (r = device_path(o->state_dir, "tls-cert.pem", tc, sizeof(tc))) < 0)
		return r;
	if ((r = device_lock(o->state_dir, &lock_fd)) < 0)
		return r;
	if (access(db, F_OK) == 0 || access(mk, F_OK) == 0) {
		r = -EEXIST;
		goto out;
	}
	if ((r = make_device_id(o->device_id, device_id, sizeof(device_id))) < 0)
		goto out;
	if (o->vendor_key_file && (r = copy_vendor_key(o->state_dir, o->vendor_key_file)) < 0)
		goto out;
	if ((r = domain_key(o, dkey)) < 0)
		goto out;
	if ((r = crypto_random(master, sizeof(master))) < 0 ||
	    (r = chsm_write_file_atomic(mk, master, sizeof(master), 0600)) < 0)
		goto out;
	created_db = true;
	if ((r = store_open(db, master, &s)) < 0 || (r = crypto_sm2_generate(&key)) < 0 ||
	    (r = crypto_sm2_fingerprint(key, fp)) < 0 ||
	    (r = store_identity(s, o, device_id, key, dkey, code)) < 0)
		goto out;
	static const char *const dns[] = {"localhost", NULL};
	static const char *const ips[] = {"127.0.0.1", "::1", NULL};
	if ((r = crypto_tls_make_self_signed(tk, tc, device_id, dns, ips, 3650)) < 0)
		goto out;
	printf("device-id: %s\ndevice-key-fingerprint: %s\nenrollment-code: %s\n", device_id, fp, code);
	fflush(stdout);
out:
	store_close(s);
	if (r < 0 && created_db) {
		char path[PATH_MAX];
		static const char *const leftovers[] = {"chsm.db", "chsm.db-wal", "chsm.db-shm",
							"master.key", "tls-key.pem", "tls-cert.pem",
							"vendor-key.pem", NULL};
		for (const char *const *f = leftovers; *f; f++)
			if (device_path(o->state_dir, *f, path, sizeof(path)) == 0)
				unlink(path);
	}
	crypto_wipe(code, sizeof(code));
	crypto_wipe(master, sizeof(master));
	crypto_wipe(dkey, sizeof(dkey));
	crypto_sm2_key_free(key);
	close(lock_fd);
	return r;
}
