/*
 * device.h: a CHSM's identity and secrets in its state directory:
 *
 *   master.key      32 random bytes (0600): seals every secret in chsm.db
 *   chsm.db         the store: settings, sealed secrets (device key, domain
 *                   key, enrollment code, upload credentials), VSMs, tasks
 *   tls-key.pem     TLS private key (ECDSA P-256, 0600)
 *   tls-cert.pem    self-signed TLS certificate for the management listener
 *   vendor-key.pem  the vendor's SM2 public key, when given at init
 *   chsmd.lock      held (flock) by the running daemon
 *
 * The device SM2 key and the domain key live sealed in chsm.db, never in
 * clear on disk.
 */
#ifndef CHSM_CHSMD_DEVICE_H
#define CHSM_CHSMD_DEVICE_H

#include <stddef.h>

#include "crypto/crypto.h"
#include "store/store.h"

/* Longest domain secret, in a file or typed. */
#define DEVICE_DOMAIN_SECRET_MAX 4096

struct device_init_options {
	const char *state_dir;
	const char *device_id;            /* NULL: generated */
	const char *domain_name;          /* NULL: a domain of this device only */
	const char *domain_secret_file;   /* with domain_name */
	const char *domain_secret;        /* or the secret itself (prompted) */
	size_t domain_secret_len;
	const char *vendor_key_file;      /* NULL: none */
	int max_vsms;
};

/* Paths inside a state dir. */
int device_path(const char *state_dir, const char *name, char *out, size_t cap);

/* Creates a new CHSM in opts->state_dir and prints the three lines of
 * `chsmd init`. Refuses (-EEXIST) an initialised directory. */
int device_init(const struct device_init_options *opts);

/* Takes the state dir's lock; -EBUSY when a daemon holds it. *ret_fd is
 * kept open for as long as the lock is needed. */
int device_lock(const char *state_dir, int *ret_fd);

/* Opens the store with the master key of state_dir. */
int device_open_store(const char *state_dir, chsm_store **ret_store);

/* Loads the device key pair sealed in the store. */
int device_load_key(chsm_store *store, crypto_sm2_key **ret_key);

/* A new enrollment code (CHSM_ENROLL_CODE_CHARS of base32) sealed in the
 * store, with the failure count reset, in the caller's transaction;
 * written to out (CHSM_ENROLL_CODE_CHARS + 1 bytes). */
int device_new_enrollment_code(chsm_store *store, char *out);

#endif
