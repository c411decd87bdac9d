/*
 * siphash.h: SipHash-2-4 (Aumasson and Bernstein, 2012), a keyed 64-bit
 * hash. With a secret random key, someone who sees neither the key nor the
 * hashes cannot choose inputs that collide more often than at random
 * (about 2^-64 for two given inputs). Not a MAC for long-lived secrets;
 * here it keys in-memory tables.
 */
#ifndef CHSM_COMMON_SIPHASH_H
#define CHSM_COMMON_SIPHASH_H

#include <stddef.h>
#include <stdint.h>

#define CHSM_SIPHASH_KEY_LEN 16

/* SipHash-2-4 of len bytes of data under key; the 64-bit result is the
 * reference's little-endian output read as a number. */
uint64_t chsm_siphash24(const uint8_t key[CHSM_SIPHASH_KEY_LEN], const void *data, size_t len);

#endif
