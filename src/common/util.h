/*
 * util.h: small helpers every module uses: time, hex, strict number parsing
 * and durable file writes. Nothing here logs or allocates behind the caller's
 * back; every function returns 0 or a negative errno value.
 */
#ifndef CHSM_COMMON_UTIL_H
#define CHSM_COMMON_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Wall-clock time in Unix milliseconds. */
int64_t chsm_now_ms(void);
/* Monotonic time in milliseconds, for durations and timeouts. */
int64_t chsm_monotonic_ms(void);

/* Writes 2*len lowercase hex digits and a NUL into out (2*len+1 bytes). */
void chsm_hex_encode(const void *data, size_t len, char *out);
/* The value of one hex digit (either case), or -1. */
int chsm_hex_value(char c);
/* Decodes exactly 2*cap hex digits (either case) from hex into out.
 * Returns 0, or -EINVAL if hexlen != 2*cap or a digit is not hex. */
int chsm_hex_decode(const char *hex, size_t hexlen, uint8_t *out, size_t cap);

/* Parses a whole decimal string (no sign, no spaces, no leading '+')
 * into *ret, refusing values over max. Returns 0 or -EINVAL/-ERANGE. */
int chsm_parse_u64(const char *s, uint64_t max, uint64_t *ret);

/* True when every byte of s[0..len) is in [A-Za-z0-9] or in extra. */
bool chsm_str_charset(const char *s, size_t len, const char *extra);

/* Reads a whole regular file of at most max bytes. *ret_data is
 * NUL-terminated and malloc'ed. Returns 0, -EFBIG, or -errno. */
int chsm_read_file(const char *path, size_t max, char **ret_data, size_t *ret_len);
/* Writes data to path durably: temp file, fsync, rename, fsync of the
 * directory. mode is the new file's permission bits. */
int chsm_write_file_atomic(const char *path, const void *data, size_t len, unsigned mode);
/* fsyncs the directory that holds path (after a rename or unlink in it).
 * Returns 0 or -errno. */
int chsm_fsync_parent(const char *path);

#endif
