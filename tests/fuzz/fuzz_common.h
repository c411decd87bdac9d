/*
 * fuzz_common.h: what the libFuzzer harnesses of tests/fuzz and their seed
 * maker (fuzz_make_seeds.c) share: fixed keys, so that seeds made with them
 * verify inside the harnesses, and a file made from the input.
 *
 * These keys are test material only: they are in the source.
 */
#ifndef CHSM_FUZZ_COMMON_H
#define CHSM_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "crypto/crypto.h"

enum fuzz_key { FUZZ_KEY_PLATFORM, FUZZ_KEY_DEVICE, FUZZ_KEY_VENDOR };

/* The enrollment code of the auth harness. */
#define FUZZ_ENROLLMENT_CODE "FUZZ-CODE-0123-4567"

/* A fixed SM2 key pair (abort()s on failure; owned by the caller). */
crypto_sm2_key *fuzz_key(enum fuzz_key which);
/* The fixed domain key of the image harness. */
extern const uint8_t fuzz_domain_key[32];

/* A fresh folder for the harness's files (in /dev/shm when writable, else
 * /tmp), named after name, removed with its contents when the process
 * exits. Returns its path (static storage); abort()s on failure. */
const char *fuzz_tmpdir(const char *name);

/* A regular file holding data (a memfd, or an unlinked temp file),
 * positioned at 0. abort()s on failure. */
int fuzz_file(const uint8_t *data, size_t size);

#endif
