/*
 * image_internal.h: what the writer, the reader and the tests of the image
 * module share, and nothing else includes: fixed sizes of the layout, the
 * big-endian helpers, the key derivations of image.h, and two test-only
 * hooks of the writer that build malformed payloads with a valid MAC and
 * signature.
 */
#ifndef CHSM_IMAGE_INTERNAL_H
#define CHSM_IMAGE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "image/image.h"

/* The one I/O buffer size of reader and writer (image.h, "Memory"). */
#define IMAGE_BUF_LEN         (64 * 1024)
#define IMAGE_DATA_KEY_LEN    32
#define IMAGE_ENC_KEY_LEN     16
#define IMAGE_MAC_KEY_LEN     32
#define IMAGE_WRAP_KEY_LEN    32
#define IMAGE_IV_LEN          16
#define IMAGE_MAC_LEN         32
#define IMAGE_SIG_LEN         64
/* tag (1) | length (4) */
#define IMAGE_REC_HEADER_LEN  5
/* Offsets of the trailer fields, counted back from the end of the file. */
#define IMAGE_TRAILER_P_FROM_END     112
#define IMAGE_TRAILER_MAGIC_FROM_END 104
#define IMAGE_TRAILER_MAC_FROM_END   96
#define IMAGE_TRAILER_SIG_FROM_END   64
/* Nesting depth of the header JSON: the deepest real header has 4. */
#define IMAGE_HEADER_MAX_DEPTH 16
/* Upper bound of the base64 wrappedKey: seal(32 bytes) = 80 bytes. */
#define IMAGE_WRAPPED_B64_MAX 256
#define IMAGE_ERROR_LEN       160

void image_put_be16(uint8_t *p, uint16_t v);
void image_put_be32(uint8_t *p, uint32_t v);
void image_put_be64(uint8_t *p, uint64_t v);
uint16_t image_get_be16(const uint8_t *p);
uint32_t image_get_be32(const uint8_t *p);
uint64_t image_get_be64(const uint8_t *p);

/* k_enc and k_mac of a data key (image.h, "Keys"). */
int image_derive_data_keys(const uint8_t dk[IMAGE_DATA_KEY_LEN], const char *image_id,
			   uint8_t k_enc[IMAGE_ENC_KEY_LEN], uint8_t k_mac[IMAGE_MAC_KEY_LEN]);
/* k_wrap of a domain key. */
int image_derive_wrap_key(const uint8_t domain_key[IMAGE_DOMAIN_KEY_LEN],
			  uint8_t k_wrap[IMAGE_WRAP_KEY_LEN]);
/* The Appendix A code of a crypto module failure: 5000 for -ENOMEM, else 5002. */
int image_crypto_code(int err);
/* True for 64 lowercase hex digits. */
bool image_is_hex64(const char *s);

/* image_reader_open that also leaves the failure's message in msg. */
int image_reader_open_msg(int fd, image_reader **ret_r, char *msg, size_t cap);

/* ---- test hooks (tests/image only) ---- */
/* Appends raw plaintext payload bytes, encrypted and MACed as records are. */
int image_writer_raw(image_writer *w, const void *data, size_t len);
/* image_writer_finish will not write the END record. */
void image_writer_omit_end(image_writer *w);

#endif
