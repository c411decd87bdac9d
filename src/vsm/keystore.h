/*
 * keystore.h: the internal keys of one VSM (PROFILE.md §11, §12): SM2
 * signing and encryption key pairs and SM4 key-encryption keys at indexes
 * 1..max_keys, kept in the VSM's store as a material blob
 * (docs/vsm-protocol.md, "Appendix: key material") and cached in memory,
 * decoded, after first use.
 *
 * Guarantees: every change (generate, destroy, password) is committed in
 * the store before the call returns; a key is never in the cache unless it
 * is in the store; a cached key is wiped when its last reference is dropped
 * after it was destroyed or replaced, and at vsm_keystore_free. Passwords
 * are kept only as a PBKDF2-HMAC-SM3 verifier. Thread-safe: lookups may run
 * from any number of threads; changes are serialised. Never logs.
 */
#ifndef CHSM_VSM_KEYSTORE_H
#define CHSM_VSM_KEYSTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "crypto/crypto.h"
#include "store/store.h"

typedef struct vsm_keystore vsm_keystore;

/* Key types, as on the wire (enum vsmp_key_type). */
enum { VSM_KEY_SIGN = 1, VSM_KEY_ENC = 2, VSM_KEY_KEK = 3 };

/* A decoded key. Immutable while referenced; release with vsm_key_put. */
struct vsm_key {
	int type;
	int index;
	uint64_t generation;      /* unique per key instance and password */
	int64_t created_at;       /* Unix ms */
	bool has_password;
	crypto_sm2_key *sm2;      /* SIGN and ENC */
	uint8_t point[CRYPTO_SM2_POINT_LEN];
	uint8_t sm4[CRYPTO_SM4_KEY_LEN]; /* KEK */
	/* private to keystore.c */
	uint32_t iterations;
	uint8_t salt[16];
	uint8_t verifier[32];
	int refs;
};

struct vsm_key_info {
	int type;
	int index;
	bool has_password;
	int64_t created_at;
};

/* A keystore over store (not owned) for VSM id (not copied: must outlive
 * it). -ENOMEM. */
int vsm_keystore_new(chsm_store *store, const char *id, int max_keys, vsm_keystore **ret_ks);
/* Drops and wipes every cached key. Accepts NULL. */
void vsm_keystore_free(vsm_keystore *ks);

/* A reference to key (type, index): -EINVAL for a type or index out of
 * range, -ENOENT when there is none, -EBADMSG when its material is
 * invalid, or a store error. */
int vsm_keystore_get(vsm_keystore *ks, int type, int index, struct vsm_key **ret_key);
/* Releases a reference. Accepts NULL. */
void vsm_key_put(vsm_keystore *ks, struct vsm_key *key);

/* Generates and stores key (type, index) with password (len 0: none).
 * -EINVAL out of range, -EEXIST when the index is taken. For SM2 keys the
 * public point is copied into ret_point (65 bytes) when not NULL. */
int vsm_keystore_generate(vsm_keystore *ks, int type, int index, const uint8_t *password,
			  size_t password_len, uint8_t *ret_point);
/* Destroys key (type, index): -ENOENT when there is none. */
int vsm_keystore_destroy(vsm_keystore *ks, int type, int index);
/* Sets (len > 0) or removes (len 0) the password of an SM2 key. */
int vsm_keystore_set_password(vsm_keystore *ks, int type, int index, const uint8_t *password,
			      size_t password_len);
/* True when password matches key's password (constant-time comparison of
 * the verifiers). False for a key without a password. */
bool vsm_key_check_password(const struct vsm_key *key, const uint8_t *password, size_t len);

/* Every key, in (type, index) order; *ret_info is malloc'ed (free()). */
int vsm_keystore_list(vsm_keystore *ks, struct vsm_key_info **ret_info, size_t *ret_count);

/* The material blob codec, exposed for tests. encode: *ret_blob is secret
 * (crypto_free_secret). decode: strict; -EBADMSG for anything malformed. */
int vsm_key_encode(const struct vsm_key *key, uint8_t **ret_blob, size_t *ret_len);
int vsm_key_decode(int type, int index, const uint8_t *blob, size_t len,
		   struct vsm_key **ret_key);

#endif
