/*
 * fake_chsm.h: a minimal CHSM for the client tests: plain HTTP/1.1 with
 * keep-alive on an ephemeral loopback port, requests checked with the real
 * gmt_verify_request, responses signed with the real gmt_sign_response, and
 * faults that a test can switch on (bad signatures, wrong key ids, ...).
 * Not a server: just enough of one to exercise every check of the client.
 */
#ifndef CHSM_TEST_FAKE_CHSM_H
#define CHSM_TEST_FAKE_CHSM_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include "crypto/crypto.h"

enum fake_fault {
	FAULT_NONE,
	FAULT_TAMPER_SIG,      /* a well-formed signature over something else */
	FAULT_NO_SIG,          /* no X-GMT-Device-Signature */
	FAULT_TWO_SIGS,        /* the signature header twice */
	FAULT_WRONG_KEY_ID,    /* X-GMT-Device-Key-Id names another key */
	FAULT_CLAIM_OTHER_FP,  /* 7.4.1's deviceKeyFingerprint names another key */
	FAULT_NOT_ENVELOPE,    /* a signed body that is not an envelope */
};

/* One request as received. */
struct fake_request {
	char method[16];
	char target[512];
	char body[8192];
	size_t body_len;
	bool has_content_type, has_expect, has_signature, has_idempotency, has_nonce;
	char content_type[128];
	char content_length[32];
	char idempotency[96];
	char nonce[96];
};

struct fake_chsm {
	char url[64];                      /* http://127.0.0.1:PORT */
	crypto_sm2_key *device_key;
	char device_fp[CRYPTO_SM3_HEX_LEN + 1];
	char *device_pem;
	crypto_sm2_key *platform_key;      /* NULL: no platform key configured */
	char platform_fp[CRYPTO_SM3_HEX_LEN + 1];
	const char *enrollment_code;       /* open while no platform key */

	/* behaviour, set by the test before the client runs */
	enum fake_fault fault;
	bool fault_after_bootstrap;        /* spare the 7.4.1 answers */
	/* GET /tasks/...: poll i answers task_states[i] (the last one for
	 * ever), "unavailable" meaning 5003; when set, every PUT/POST/DELETE
	 * answers 202 with task "task-1". */
	const char *task_states[8];
	size_t n_task_states;

	/* observations, under lock */
	pthread_mutex_t lock;
	int accepts;
	int requests;
	int fingerprint_requests;
	size_t task_polls;
	struct fake_request last;          /* the last request other than 7.4.1 */
	int last_auth_code;                /* gmt_verify_request's answer */
	bool last_enrollment;

	/* internals */
	int listen_fd;
	pthread_t thread;
	pthread_t conn_threads[32];
	int conn_fds[32];
	size_t n_conns;
	char nonces[64][96];
	size_t n_nonces;
};

/* Starts a fake CHSM with a fresh device key; platform_key may be NULL
 * (not configured; enrollment_code then opens enrollment). */
struct fake_chsm *fake_chsm_start(crypto_sm2_key *platform_key, const char *enrollment_code);
/* Loads an SM2 key pair from a PEM file (aborts on failure). */
crypto_sm2_key *fake_load_key(const char *path);
/* Stops it, joins its threads and frees it (and platform_key). */
void fake_chsm_stop(struct fake_chsm *f);

#endif
