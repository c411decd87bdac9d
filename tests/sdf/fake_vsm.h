/*
 * fake_vsm.h: a tiny VSM service for the SDF library's unit tests: it
 * listens on 127.0.0.1 (an ephemeral port), runs HELLO/AUTH with the codec
 * of src/vsmp and answers a few requests with a local SM2 key at index 1.
 * One connection at a time, on its own thread.
 */
#ifndef SDF_TEST_FAKE_VSM_H
#define SDF_TEST_FAKE_VSM_H

#include <stdint.h>

#include "crypto/crypto.h"

enum fake_mode {
	FAKE_GOOD,            /* behaves */
	FAKE_BAD_SERVER_PROOF,/* accepts AUTH but answers a wrong server proof */
	FAKE_TRAILING_BYTES,  /* adds a byte to every response payload */
	FAKE_BAD_HELLO,       /* announces protocol version 2 */
	FAKE_SPLIT_FRAMES,    /* sends every frame in three pieces, pausing
	                       * between them (the client reads partial frames) */
	FAKE_CLOSE_MID_FRAME, /* after AUTH, sends the first half of a response
	                       * and closes the connection */
};

struct fake_vsm;

/* Starts the server with the token (id, secret). Returns NULL on failure. */
struct fake_vsm *fake_vsm_start(enum fake_mode mode, const char *token_id,
				const uint8_t *secret, size_t secret_len);
/* The port it listens on. */
int fake_vsm_port(const struct fake_vsm *f);
/* The signing key at index 1 (for checking signatures). */
const crypto_sm2_key *fake_vsm_key(const struct fake_vsm *f);
/* Stops the thread and frees everything. */
void fake_vsm_stop(struct fake_vsm *f);

#endif
