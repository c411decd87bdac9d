/*
 * keystore.c: see keystore.h. The material blob (docs/vsm-protocol.md,
 * "Appendix: key material") is sealed by the store; here it is built and
 * parsed strictly. The cache is a hash table of reference-counted decoded
 * keys under one mutex; changes also take a second mutex for their whole
 * duration so that two sessions cannot change the same index at once.
 */
#include "vsm/keystore.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

#define BLOB_VERSION     1
#define BLOB_HEADER_LEN  64
#define BLOB_SM2_LEN     (BLOB_HEADER_LEN + CRYPTO_SM2_SCALAR_LEN + CRYPTO_SM2_POINT_LEN)
#define BLOB_KEK_LEN     (BLOB_HEADER_LEN + CRYPTO_SM4_KEY_LEN)
#define FLAG_PASSWORD    0x01
/* PBKDF2-HMAC-SM3 iterations for new verifiers, and the most a stored
 * blob may ask for (bounds the work a corrupt row can cause). */
#define PBKDF2_ITERATIONS     10000
#define PBKDF2_MAX_ITERATIONS 10000000u
#define CACHE_BUCKETS    4096

struct entry {
	struct vsm_key *key;
	struct entry *next;
};

struct vsm_keystore {
	chsm_store *store;
	const char *id;
	int max_keys;
	pthread_mutex_t lock;        /* cache and refcounts */
	pthread_mutex_t change_lock; /* serialises changes */
	uint64_t next_generation;
	struct entry *buckets[CACHE_BUCKETS];
};

static const char *type_name(int type)
{
	return type == VSM_KEY_SIGN ? "sign" : type == VSM_KEY_ENC ? "enc" :
	       type == VSM_KEY_KEK ? "kek" : NULL;
}

static int type_from_name(const char *name)
{
	return strcmp(name, "sign") == 0 ? VSM_KEY_SIGN : strcmp(name, "enc") == 0 ? VSM_KEY_ENC :
	       strcmp(name, "kek") == 0 ? VSM_KEY_KEK : 0;
}

static unsigned bucket_of(int type, int index)
{
	return ((unsigned)index * 3u + (unsigned)type) % CACHE_BUCKETS;
}

static void put_be(uint8_t *p, uint64_t v, int n)
{
	for (int i = n - 1; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

static uint64_t get_be(const uint8_t *p, int n)
{
	uint64_t v = 0;
	for (int i = 0; i < n; i++)
		v = v << 8 | p[i];
	return v;
}

static void key_free(struct vsm_key *key)
{
	if (!key)
		return;
	crypto_sm2_key_free(key->sm2);
	crypto_wipe(key, sizeof(*key));
	free(key);
}

int vsm_keystore_new(chsm_store *store, const char *id, int max_keys, vsm_keystore **ret_ks)
{
	vsm_keystore *ks = calloc(1, sizeof(*ks));
	if (!ks)
		return -ENOMEM;
	ks->store = store;
	ks->id = id;
	ks->max_keys = max_keys;
	ks->next_generation = 1;
	pthread_mutex_init(&ks->lock, NULL);
	pthread_mutex_init(&ks->change_lock, NULL);
	*ret_ks = ks;
	return 0;
}

void vsm_keystore_free(vsm_keystore *ks)
{
	if (!ks)
		return;
	for (int b = 0; b < CACHE_BUCKETS; b++) {
		struct entry *e = ks->buckets[b];
		while (e) {
			struct entry *next = e->next;
			key_free(e->key);
			free(e);
			e = next;
		}
	}
	pthread_mutex_destroy(&ks->lock);
	pthread_mutex_destroy(&ks->change_lock);
	free(ks);
}

static bool in_range(const vsm_keystore *ks, int type, int index)
{
	return type_name(type) && index >= 1 && index <= ks->max_keys;
}

int vsm_key_encode(const struct vsm_key *key, uint8_t **ret_blob, size_t *ret_len)
{
	size_t len = key->type == VSM_KEY_KEK ? BLOB_KEK_LEN : BLOB_SM2_LEN;
	uint8_t *b = calloc(1, len);
	int r;
	if (!b)
		return -ENOMEM;
	b[0] = BLOB_VERSION;
	b[1] = (uint8_t)key->type;
	b[2] = key->has_password ? FLAG_PASSWORD : 0;
	put_be(b + 4, (uint64_t)key->created_at, 8);
	if (key->has_password) {
		put_be(b + 12, key->iterations, 4);
		memcpy(b + 16, key->salt, sizeof(key->salt));
		memcpy(b + 32, key->verifier, sizeof(key->verifier));
	}
	if (key->type == VSM_KEY_KEK) {
		memcpy(b + BLOB_HEADER_LEN, key->sm4, CRYPTO_SM4_KEY_LEN);
	} else {
		r = crypto_sm2_private_scalar(key->sm2, b + BLOB_HEADER_LEN);
		if (r < 0)
			goto fail;
		memcpy(b + BLOB_HEADER_LEN + CRYPTO_SM2_SCALAR_LEN, key->point,
		       CRYPTO_SM2_POINT_LEN);
	}
	*ret_blob = b;
	*ret_len = len;
	return 0;
fail:
	crypto_free_secret(b, len);
	return r;
}

int vsm_key_decode(int type, int index, const uint8_t *b, size_t len, struct vsm_key **ret_key)
{
	int r = -EBADMSG;
	struct vsm_key *key = calloc(1, sizeof(*key));
	if (!key)
		return -ENOMEM;
	size_t want = type == VSM_KEY_KEK ? BLOB_KEK_LEN : BLOB_SM2_LEN;
	if (!type_name(type) || len != want || b[0] != BLOB_VERSION || b[1] != type ||
	    (b[2] & ~FLAG_PASSWORD) != 0 || b[3] != 0)
		goto fail;
	key->type = type;
	key->index = index;
	key->created_at = (int64_t)get_be(b + 4, 8);
	key->has_password = b[2] & FLAG_PASSWORD;
	key->iterations = (uint32_t)get_be(b + 12, 4);
	if (key->has_password ? key->iterations == 0 || key->iterations > PBKDF2_MAX_ITERATIONS :
				key->iterations != 0)
		goto fail;
	memcpy(key->salt, b + 16, sizeof(key->salt));
	memcpy(key->verifier, b + 32, sizeof(key->verifier));
	if (type == VSM_KEY_KEK) {
		memcpy(key->sm4, b + BLOB_HEADER_LEN, CRYPTO_SM4_KEY_LEN);
	} else {
		if (crypto_sm2_from_private_scalar(b + BLOB_HEADER_LEN, &key->sm2) < 0 ||
		    crypto_sm2_public_point(key->sm2, key->point) < 0 ||
		    memcmp(key->point, b + BLOB_HEADER_LEN + CRYPTO_SM2_SCALAR_LEN,
			   CRYPTO_SM2_POINT_LEN) != 0)
			goto fail;
	}
	*ret_key = key;
	return 0;
fail:
	key_free(key);
	return r;
}

/* Sets or clears key's verifier for password. */
static int set_verifier(struct vsm_key *key, const uint8_t *password, size_t len)
{
	int r;
	key->has_password = len > 0;
	key->iterations = 0;
	crypto_wipe(key->salt, sizeof(key->salt));
	crypto_wipe(key->verifier, sizeof(key->verifier));
	if (len == 0)
		return 0;
	key->iterations = PBKDF2_ITERATIONS;
	r = crypto_random(key->salt, sizeof(key->salt));
	if (r < 0)
		return r;
	return crypto_pbkdf2_sm3(password, len, key->salt, sizeof(key->salt), key->iterations,
				 key->verifier, sizeof(key->verifier));
}

bool vsm_key_check_password(const struct vsm_key *key, const uint8_t *password, size_t len)
{
	uint8_t v[32];
	bool ok = false;
	if (key->has_password && len > 0 &&
	    crypto_pbkdf2_sm3(password, len, key->salt, sizeof(key->salt), key->iterations, v,
			      sizeof(v)) == 0)
		ok = crypto_memeq(v, key->verifier, sizeof(v));
	crypto_wipe(v, sizeof(v));
	return ok;
}

/* Cache operations, with ks->lock held. */
static struct entry **cache_slot(vsm_keystore *ks, int type, int index)
{
	struct entry **pe = &ks->buckets[bucket_of(type, index)];
	while (*pe && ((*pe)->key->type != type || (*pe)->key->index != index))
		pe = &(*pe)->next;
	return pe;
}

static void unref_locked(struct vsm_key *key)
{
	if (--key->refs == 0)
		key_free(key);
}

/* Drops (type, index) from the cache; the key lives on while referenced. */
static void cache_drop(vsm_keystore *ks, int type, int index)
{
	pthread_mutex_lock(&ks->lock);
	struct entry **pe = cache_slot(ks, type, index);
	struct entry *e = *pe;
	if (e) {
		*pe = e->next;
		unref_locked(e->key);
		free(e);
	}
	pthread_mutex_unlock(&ks->lock);
}

/* Puts key in the cache (taking over the caller's reference) and returns a
 * new reference to what the cache holds (key, or a key another thread
 * inserted first, in which case key is freed). */
static int cache_insert(vsm_keystore *ks, struct vsm_key *key, struct vsm_key **ret_key)
{
	struct entry *e = malloc(sizeof(*e));
	pthread_mutex_lock(&ks->lock);
	struct entry **pe = cache_slot(ks, key->type, key->index);
	if (*pe) {
		struct vsm_key *cached = (*pe)->key;
		cached->refs++;
		pthread_mutex_unlock(&ks->lock);
		free(e);
		key_free(key);
		*ret_key = cached;
		return 0;
	}
	key->generation = ks->next_generation++;
	if (!e) {
		/* Not cached, but usable: the one reference is the caller's. */
		key->refs = 1;
		pthread_mutex_unlock(&ks->lock);
		*ret_key = key;
		return 0;
	}
	key->refs = 2;
	e->key = key;
	e->next = NULL;
	*pe = e;
	pthread_mutex_unlock(&ks->lock);
	*ret_key = key;
	return 0;
}

int vsm_keystore_get(vsm_keystore *ks, int type, int index, struct vsm_key **ret_key)
{
	uint8_t *blob = NULL;
	size_t len = 0;
	struct vsm_key *key = NULL;
	int r;
	if (!in_range(ks, type, index))
		return -EINVAL;
	pthread_mutex_lock(&ks->lock);
	struct entry *e = *cache_slot(ks, type, index);
	if (e) {
		e->key->refs++;
		*ret_key = e->key;
		pthread_mutex_unlock(&ks->lock);
		return 0;
	}
	pthread_mutex_unlock(&ks->lock);
	/* Loading under change_lock: a concurrent destroy cannot slip between
	 * reading the store and filling the cache. */
	pthread_mutex_lock(&ks->change_lock);
	r = store_vsm_key_get(ks->store, ks->id, type_name(type), index, &blob, &len);
	if (r < 0)
		goto out;
	r = vsm_key_decode(type, index, blob, len, &key);
	if (r < 0)
		goto out;
	r = cache_insert(ks, key, ret_key);
out:
	pthread_mutex_unlock(&ks->change_lock);
	crypto_free_secret(blob, len);
	return r;
}

void vsm_key_put(vsm_keystore *ks, struct vsm_key *key)
{
	if (!key)
		return;
	pthread_mutex_lock(&ks->lock);
	unref_locked(key);
	pthread_mutex_unlock(&ks->lock);
}

/* Stores key and replaces the cached copy; with change_lock held. */
static int store_and_cache(vsm_keystore *ks, struct vsm_key *key)
{
	uint8_t *blob = NULL;
	size_t len = 0;
	struct vsm_key *ref = NULL;
	int r = vsm_key_encode(key, &blob, &len);
	if (r < 0)
		goto fail;
	r = store_vsm_key_put(ks->store, ks->id, type_name(key->type), key->index, blob, len);
	if (r < 0)
		goto fail;
	cache_drop(ks, key->type, key->index);
	r = cache_insert(ks, key, &ref);
	key = NULL;
	if (r == 0)
		vsm_key_put(ks, ref);
fail:
	key_free(key);
	crypto_free_secret(blob, len);
	return r;
}

int vsm_keystore_generate(vsm_keystore *ks, int type, int index, const uint8_t *password,
			  size_t password_len, uint8_t *ret_point)
{
	struct vsm_key *key = NULL;
	uint8_t *old = NULL;
	size_t oldlen = 0;
	int r = -EINVAL;
	if (!in_range(ks, type, index))
		return -EINVAL;
	pthread_mutex_lock(&ks->change_lock);
	r = store_vsm_key_get(ks->store, ks->id, type_name(type), index, &old, &oldlen);
	if (r == 0 || (r < 0 && r != -ENOENT)) {
		r = r == 0 ? -EEXIST : r;
		goto out;
	}
	r = -ENOMEM;
	key = calloc(1, sizeof(*key));
	if (!key)
		goto out;
	key->type = type;
	key->index = index;
	key->created_at = chsm_now_ms();
	if (type == VSM_KEY_KEK) {
		r = crypto_random(key->sm4, sizeof(key->sm4));
	} else {
		r = crypto_sm2_generate(&key->sm2);
		if (r == 0)
			r = crypto_sm2_public_point(key->sm2, key->point);
	}
	if (r == 0 && type != VSM_KEY_KEK)
		r = set_verifier(key, password, password_len);
	if (r < 0)
		goto out;
	if (ret_point && type != VSM_KEY_KEK)
		memcpy(ret_point, key->point, CRYPTO_SM2_POINT_LEN);
	r = store_and_cache(ks, key);
	key = NULL;
out:
	pthread_mutex_unlock(&ks->change_lock);
	crypto_free_secret(old, oldlen);
	key_free(key);
	return r;
}

int vsm_keystore_destroy(vsm_keystore *ks, int type, int index)
{
	if (!in_range(ks, type, index))
		return -EINVAL;
	pthread_mutex_lock(&ks->change_lock);
	int r = store_vsm_key_delete(ks->store, ks->id, type_name(type), index);
	/* Drop the cached copy also when the store failed midway: it reloads. */
	cache_drop(ks, type, index);
	pthread_mutex_unlock(&ks->change_lock);
	return r;
}

int vsm_keystore_set_password(vsm_keystore *ks, int type, int index, const uint8_t *password,
			      size_t password_len)
{
	struct vsm_key *cur = NULL, *key = NULL;
	uint8_t *blob = NULL;
	size_t len = 0;
	int r;
	if (!in_range(ks, type, index) || type == VSM_KEY_KEK)
		return -EINVAL;
	r = vsm_keystore_get(ks, type, index, &cur);
	if (r < 0)
		return r;
	pthread_mutex_lock(&ks->change_lock);
	/* A fresh copy from the store: cur may have been destroyed meanwhile. */
	r = store_vsm_key_get(ks->store, ks->id, type_name(type), index, &blob, &len);
	if (r == 0)
		r = vsm_key_decode(type, index, blob, len, &key);
	if (r == 0)
		r = set_verifier(key, password, password_len);
	if (r == 0) {
		r = store_and_cache(ks, key);
		key = NULL;
	}
	pthread_mutex_unlock(&ks->change_lock);
	key_free(key);
	crypto_free_secret(blob, len);
	vsm_key_put(ks, cur);
	return r;
}

static int info_cmp(const void *a, const void *b)
{
	const struct vsm_key_info *x = a, *y = b;
	if (x->type != y->type)
		return x->type < y->type ? -1 : 1;
	return x->index < y->index ? -1 : x->index > y->index;
}

int vsm_keystore_list(vsm_keystore *ks, struct vsm_key_info **ret_info, size_t *ret_count)
{
	struct store_key_ref *refs = NULL;
	struct vsm_key_info *info = NULL;
	size_t n = 0, count = 0;
	int r = store_vsm_key_list(ks->store, ks->id, &refs, &n);
	if (r < 0)
		return r;
	info = calloc(n ? n : 1, sizeof(*info));
	r = -ENOMEM;
	if (!info)
		goto fail;
	for (size_t i = 0; i < n; i++) {
		struct vsm_key *key;
		int type = type_from_name(refs[i].type);
		if (type == 0 || !in_range(ks, type, refs[i].index))
			continue; /* not one of ours: ignored, as the protocol cannot name it */
		r = vsm_keystore_get(ks, type, refs[i].index, &key);
		if (r == -ENOENT)
			continue; /* destroyed meanwhile */
		if (r < 0)
			goto fail;
		info[count++] = (struct vsm_key_info){ type, key->index, key->has_password,
						       key->created_at };
		vsm_key_put(ks, key);
	}
	/* The store lists by type name; the protocol's order is by type number. */
	qsort(info, count, sizeof(*info), info_cmp);
	free(refs);
	*ret_info = info;
	*ret_count = count;
	return 0;
fail:
	free(refs);
	free(info);
	return r;
}
