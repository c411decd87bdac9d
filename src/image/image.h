/*
 * image.h: the one container format of PROFILE.md §10, for VSM images, CHSM
 * images, backups and upgrade packages. docs/image-format.md is the
 * normative description; this is its code.
 *
 * Layout (all integers big-endian; F = file size, H = header length):
 *
 *   offset     size  field
 *   0          8     magic "OCHSMIMG"
 *   8          1     type: 1 VSM image, 2 CHSM image, 3 backup, 4 package
 *   9          1     format version: 1
 *   10         2     flags: 0 (anything else is unsupported)
 *   12         4     H: header length, 2..IMAGE_HEADER_MAX
 *   16         H     header: a UTF-8 JSON object (fields below)
 *   16+H       P     payload, P = F - 16 - H - IMAGE_TRAILER_LEN
 *   F-112      8     P again (a cross-check of the layout)
 *   F-104      8     trailer magic "OCHSMEND"
 *   F-96       32    MAC: HMAC-SM3(k_mac, bytes [0, F-96)); zero in packages
 *   F-64       64    signature r || s (32 bytes each): SM2 with the default
 *                    ID "1234567812345678" over bytes [0, F-64), i.e.
 *                    e = SM3(Z || bytes [0, F-64)), by the device key (images,
 *                    backups) or the vendor key (packages)
 *
 * Header fields: formatVersion (1), type ("vsm-image", "chsm-image",
 * "backup", "package"; must agree with the type byte), imageId, createdAt
 * (Unix ms), sourceDeviceId, sourceDevicePublicKey (PEM),
 * sourceDeviceFingerprint, algorithms {cipher "SM4-CTR", mac "HMAC-SM3",
 * signature "SM2-SM3", keyWrap "SM4-CTR+HMAC-SM3"} (packages: {signature
 * "SM2-SM3"} alone), contents (the caller's summary object), and, except in
 * packages, domainFingerprint and encryption {iv (32 hex digits),
 * wrappedKey (base64)}. No other field is accepted.
 *
 * Keys: every image has a fresh random 32-byte data key DK;
 *   k_enc = crypto_kdf_sm3(DK, "image-enc-v1", imageId, 16)
 *   k_mac = crypto_kdf_sm3(DK, "image-mac-v1", imageId, 32)
 *   payload ciphertext = SM4-CTR(k_enc, iv, plaintext payload)
 *   k_wrap = crypto_kdf_sm3(domain key, "image-wrap-v1", no context, 32)
 *   wrappedKey = crypto_seal(k_wrap, aad = imageId, DK)
 * Packages carry their payload in clear, unMACed (the MAC field is zero):
 * they are authenticated by the vendor signature alone.
 *
 * The payload (after decryption) is a sequence of records,
 *   tag (1 byte) | length (4 bytes) | value (length bytes)
 * ending with exactly one IMAGE_REC_END record of length 0; the meaning of
 * the tags is the caller's (docs/image-format.md lists them), except that
 * the reader enforces the END record and IMAGE_RECORD_MAX.
 *
 * Every function returns 0 or a code of PROFILE.md Appendix A (proto/codes.h):
 *   4003 GMT_E_IMAGE_FORMAT     bad magic, version, flags, type, layout,
 *                               header or record framing
 *   4007 GMT_E_DOMAIN           domain fingerprint differs
 *   4001 GMT_E_IMAGE_SIGNATURE  signature does not verify
 *   4002 GMT_E_IMAGE_INTEGRITY  data key does not unwrap, MAC mismatch,
 *                               truncated payload
 *   5001 GMT_E_STORAGE          read/write/fsync failure (ENOSPC included)
 *   5002 GMT_E_CRYPTO           crypto module failure
 *   5000 GMT_E_INTERNAL         out of memory, misuse
 * with a short message (never a secret) in the object's last_error.
 *
 * Memory: reader and writer work in fixed-size buffers (64 KiB), whatever
 * the image size; the reader reads the file with pread() and never trusts
 * a length before checking it against the file size.
 * Thread safety: an object is used by one thread at a time.
 */
#ifndef CHSM_IMAGE_H
#define CHSM_IMAGE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "crypto/crypto.h"

#define IMAGE_MAGIC          "OCHSMIMG"
#define IMAGE_TRAILER_MAGIC  "OCHSMEND"
#define IMAGE_FORMAT_VERSION 1
#define IMAGE_PROLOGUE_LEN   16
#define IMAGE_TRAILER_LEN    112
#define IMAGE_HEADER_MAX     (256 * 1024)
#define IMAGE_DOMAIN_KEY_LEN 32
/* Largest record value; a larger length is 4003. */
#define IMAGE_RECORD_MAX     (1024 * 1024)
#define IMAGE_ID_MAX_LEN     40

enum image_type {
	IMAGE_VSM = 1,
	IMAGE_CHSM = 2,
	IMAGE_BACKUP = 3,
	IMAGE_PACKAGE = 4,
};
/* "vsm-image", "chsm-image", "backup", "package"; NULL for another value. */
const char *image_type_name(int type);

/* Record tags used by chsmd (docs/image-format.md, "Payload records"). */
enum image_record_tag {
	IMAGE_REC_VSM = 1,      /* JSON: one VSM's metadata; starts a VSM */
	IMAGE_REC_TOKEN = 2,    /* token_id NUL secret: the last VSM's token */
	IMAGE_REC_KEY = 3,      /* type NUL index(4) material: one key */
	IMAGE_REC_SETTING = 4,  /* JSON {name, value}: a device setting */
	IMAGE_REC_SECRET = 5,   /* name NUL data: a sealed device setting */
	IMAGE_REC_FILE = 6,     /* JSON {name, size, mode, sm3} then the bytes in
	                           IMAGE_REC_DATA records (packages) */
	IMAGE_REC_DATA = 7,
	IMAGE_REC_END = 255,    /* last record, empty */
};

/* Who writes an image: the device (or vendor) key signs, and its id and
 * public key go into the header. The key is borrowed: it must live until
 * image_writer_finish (or image_writer_free). */
struct image_signer {
	const char *device_id;          /* "vendor" for packages */
	const crypto_sm2_key *key;      /* with its private part */
};

/* ---- writing ---- */
typedef struct image_writer image_writer;

/* Starts an image of type on fd (a new, empty, writable file: the writer
 * writes sequentially from offset 0). contents is the header's summary
 * object (borrowed; copied). domain_key and domain_fp (64 hex) are required
 * for images and backups and must be NULL for packages. The image ID is
 * "img-" + 24 random hex digits (image_writer_id). */
int image_writer_new(int fd, int type, const json_t *contents, const struct image_signer *signer,
		     const uint8_t *domain_key, const char *domain_fp, image_writer **ret_w);
const char *image_writer_id(const image_writer *w);
/* Appends one record (value may be NULL with len 0). len <= IMAGE_RECORD_MAX. */
int image_writer_record(image_writer *w, int tag, const void *value, size_t len);
/* Appends the start of a record whose value is written by the following
 * image_writer_data calls, which must add up to exactly len bytes (for
 * streaming large values, e.g. package files). */
int image_writer_record_begin(image_writer *w, int tag, size_t len);
int image_writer_data(image_writer *w, const void *data, size_t len);
/* Writes the END record and the trailer, fsyncs fd, and returns the file's
 * size and SM3 (64 lowercase hex digits and NUL). The writer is done. */
int image_writer_finish(image_writer *w, uint64_t *ret_size, char ret_sm3[CRYPTO_SM3_HEX_LEN + 1]);
/* Wipes keys and frees. Accepts NULL. Does not close fd. */
void image_writer_free(image_writer *w);
const char *image_writer_error(const image_writer *w);

/* ---- reading ---- */
typedef struct image_reader image_reader;

/* Opens the image in fd (a regular file, read with pread; not closed by the
 * reader): checks the prologue, the trailer's magic and length, and parses
 * the header (4003 on any mismatch). No secret is needed. */
int image_reader_open(int fd, image_reader **ret_r);
int image_reader_type(const image_reader *r);
/* The parsed header (borrowed; lives as long as r). */
const json_t *image_reader_header(const image_reader *r);
uint64_t image_reader_size(const image_reader *r);
uint64_t image_reader_payload_size(const image_reader *r);
/* 4007 unless the header's domainFingerprint equals domain_fp. */
int image_reader_check_domain(image_reader *r, const char *domain_fp);
/* Verifies the trailer signature over the file: with key when given (a
 * package's vendor key), else with the header's sourceDevicePublicKey
 * (4003 if that is not an SM2 PEM key). 4001 when it does not verify. */
int image_reader_verify_signature(image_reader *r, const crypto_sm2_key *key);
/* Unwraps the data key with the domain key and checks the MAC over the
 * whole file (4002 on either failure). Required before reading records of
 * an image or backup; a package needs image_reader_verify_signature with
 * the vendor key instead. */
int image_reader_unlock(image_reader *r, const uint8_t domain_key[IMAGE_DOMAIN_KEY_LEN]);
/* The next record, decrypted: *ret_tag, and *ret_value (malloc'ed, secret:
 * free with crypto_free_secret(value, len); NULL when len is 0). Returns 0
 * with *ret_tag IMAGE_REC_END at the end (and again on later calls). 4003 on
 * bad framing, 4002 when the payload ends before the END record or has
 * bytes after it. */
int image_reader_next(image_reader *r, int *ret_tag, uint8_t **ret_value, size_t *ret_len);
/* For large values (tag IMAGE_REC_DATA or IMAGE_REC_FILE contents):
 * image_reader_next_begin returns the tag and length without reading the
 * value; image_reader_read then yields it in pieces of at most cap bytes
 * (*ret_n 0 once the value is consumed). */
int image_reader_next_begin(image_reader *r, int *ret_tag, size_t *ret_len);
int image_reader_read(image_reader *r, void *buf, size_t cap, size_t *ret_n);
void image_reader_free(image_reader *r);
const char *image_reader_error(const image_reader *r);

#endif
