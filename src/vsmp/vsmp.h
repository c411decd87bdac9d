/*
 * vsmp.h: the codec of the VSM service protocol (docs/vsm-protocol.md),
 * shared by the VSM server and the SDF client library.
 *
 * Frames are parsed through a reader that carries its length: every read
 * past the end, or a `bytes` field over its maximum, marks the reader
 * failed and returns zeros, and vsmp_reader_finish() then reports the
 * error, so a handler reads its fields straight through and checks once.
 * Sizes the peer claims are checked before anything is allocated. Writers
 * grow a buffer and wipe it when freed (payloads may carry key material).
 * Nothing here logs.
 */
#ifndef CHSM_VSMP_H
#define CHSM_VSMP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VSMP_MAGIC               0x564D5031u   /* "VMP1" */
#define VSMP_VERSION             1
#define VSMP_HEADER_LEN          20
#define VSMP_MAX_PAYLOAD_PREAUTH 512
#define VSMP_MAX_PAYLOAD         (1024 * 1024 + 4096)
#define VSMP_RESPONSE            0x8000u
#define VSMP_NONCE_LEN           32
#define VSMP_PROOF_LEN           32
#define VSMP_MAX_TOKEN_ID        64
#define VSMP_MAX_PASSWORD        64
#define VSMP_MAX_SESSION_KEYS    64
#define VSMP_POINT_LEN           65
#define VSMP_RS_LEN              64

enum vsmp_type {
	VSMP_HELLO                = 0x0001,
	VSMP_AUTH                 = 0x0002,
	VSMP_DEVICE_INFO          = 0x0010,
	VSMP_GENERATE_RANDOM      = 0x0011,
	VSMP_GET_ACCESS_RIGHT     = 0x0020,
	VSMP_RELEASE_ACCESS_RIGHT = 0x0021,
	VSMP_EXPORT_SIGN_PUBLIC   = 0x0022,
	VSMP_EXPORT_ENC_PUBLIC    = 0x0023,
	VSMP_GENERATE_KEY_PAIR    = 0x0024,
	VSMP_GEN_KEY_WITH_IPK     = 0x0030,
	VSMP_GEN_KEY_WITH_EPK     = 0x0031,
	VSMP_IMPORT_KEY_WITH_ISK  = 0x0032,
	VSMP_GEN_KEY_WITH_KEK     = 0x0033,
	VSMP_IMPORT_KEY_WITH_KEK  = 0x0034,
	VSMP_DESTROY_KEY          = 0x0035,
	VSMP_INTERNAL_SIGN        = 0x0040,
	VSMP_INTERNAL_VERIFY      = 0x0041,
	VSMP_EXTERNAL_VERIFY      = 0x0042,
	VSMP_EXTERNAL_ENCRYPT     = 0x0043,
	VSMP_INTERNAL_ENCRYPT     = 0x0044,
	VSMP_INTERNAL_DECRYPT     = 0x0045,
	VSMP_ENCRYPT              = 0x0050,
	VSMP_DECRYPT              = 0x0051,
	VSMP_CALCULATE_MAC        = 0x0052,
	VSMP_KEY_GENERATE         = 0x0100,
	VSMP_KEY_LIST             = 0x0101,
	VSMP_KEY_DESTROY          = 0x0102,
	VSMP_KEY_SET_PASSWORD     = 0x0103,
};

enum vsmp_key_type { VSMP_KEY_SIGN = 1, VSMP_KEY_ENC = 2, VSMP_KEY_KEK = 3 };

/* GM/T 0018 status codes used on the wire. */
#define VSMP_SDR_OK            0x00000000u
#define VSMP_SDR_BASE          0x01000000u
#define VSMP_SDR_UNKNOWERR     (VSMP_SDR_BASE + 0x01)
#define VSMP_SDR_NOTSUPPORT    (VSMP_SDR_BASE + 0x02)
#define VSMP_SDR_COMMFAIL      (VSMP_SDR_BASE + 0x03)
#define VSMP_SDR_PARDENY       (VSMP_SDR_BASE + 0x07)
#define VSMP_SDR_KEYNOTEXIST   (VSMP_SDR_BASE + 0x08)
#define VSMP_SDR_ALGNOTSUPPORT (VSMP_SDR_BASE + 0x09)
#define VSMP_SDR_PKOPERR       (VSMP_SDR_BASE + 0x0B)
#define VSMP_SDR_SKOPERR       (VSMP_SDR_BASE + 0x0C)
#define VSMP_SDR_SIGNERR       (VSMP_SDR_BASE + 0x0D)
#define VSMP_SDR_VERIFYERR     (VSMP_SDR_BASE + 0x0E)
#define VSMP_SDR_SYMOPERR      (VSMP_SDR_BASE + 0x0F)
#define VSMP_SDR_KEYTYPEERR    (VSMP_SDR_BASE + 0x14)
#define VSMP_SDR_KEYERR        (VSMP_SDR_BASE + 0x15)
#define VSMP_SDR_ENCDATAERR    (VSMP_SDR_BASE + 0x16)
#define VSMP_SDR_RANDERR       (VSMP_SDR_BASE + 0x17)
#define VSMP_SDR_NOBUFFER      (VSMP_SDR_BASE + 0x1C)
#define VSMP_SDR_INARGERR      (VSMP_SDR_BASE + 0x1D)

/* Algorithm identifiers (GM/T 0006). */
#define VSMP_SGD_SM3     0x00000001u
#define VSMP_SGD_SM4_ECB 0x00000401u
#define VSMP_SGD_SM4_CBC 0x00000402u
#define VSMP_SGD_SM4_MAC 0x00000410u
#define VSMP_SGD_SM2_1   0x00020200u
#define VSMP_SGD_SM2_3   0x00020800u

struct vsmp_header {
	uint16_t type;
	uint16_t flags;
	uint32_t request_id;
	uint32_t status;
	uint32_t length;
};

/* True for a request type of the protocol (not HELLO, not responses). */
bool vsmp_request_known(uint16_t type);

/* Decodes a header; -EPROTO for a bad magic, non-zero flags, or a payload
 * longer than max_payload. */
int vsmp_header_decode(const uint8_t buf[VSMP_HEADER_LEN], uint32_t max_payload,
		       struct vsmp_header *ret);

/* ---- reading a payload ---- */
struct vsmp_reader {
	const uint8_t *p;
	size_t left;
	bool failed;
};
void vsmp_reader_init(struct vsmp_reader *r, const uint8_t *payload, size_t len);
uint32_t vsmp_get_u32(struct vsmp_reader *r);
uint64_t vsmp_get_u64(struct vsmp_reader *r);
/* A bytes field of at most max bytes: a pointer into the payload (not a
 * copy) and its length; NULL and 0 once the reader failed. */
const uint8_t *vsmp_get_bytes(struct vsmp_reader *r, size_t max, size_t *ret_len);
/* 0 when every read succeeded and the payload was consumed exactly,
 * -EPROTO otherwise. */
int vsmp_reader_finish(const struct vsmp_reader *r);

/* ---- writing a frame ---- */
struct vsmp_writer {
	uint8_t *buf;
	size_t len;
	size_t cap;
	bool failed;
};
/* Starts a frame (header reserved). */
void vsmp_writer_begin(struct vsmp_writer *w, uint16_t type, uint32_t request_id, uint32_t status);
void vsmp_put_u32(struct vsmp_writer *w, uint32_t v);
void vsmp_put_u64(struct vsmp_writer *w, uint64_t v);
void vsmp_put_bytes(struct vsmp_writer *w, const void *p, size_t n);
/* Fills the header's length: returns 0 with the whole frame in w->buf /
 * w->len, or -ENOMEM if any step failed, or -EMSGSIZE over VSMP_MAX_PAYLOAD. */
int vsmp_writer_end(struct vsmp_writer *w);
/* Wipes and frees the buffer. */
void vsmp_writer_free(struct vsmp_writer *w);

/* Makes room for n more bytes at once (a hint before a large field, so
 * that the buffer is not grown and copied step by step). */
void vsmp_writer_reserve(struct vsmp_writer *w, size_t n);
/* Reuses w's buffer for a new frame (the old bytes are wiped first); as
 * vsmp_writer_begin when w holds none. w must have been begun or zeroed. */
void vsmp_writer_restart(struct vsmp_writer *w, uint16_t type, uint32_t request_id,
			 uint32_t status);

/* ---- buffering received frames ----
 * One input buffer per connection, so that a read takes as many bytes as
 * the socket has (a whole small frame, or several) instead of a header
 * and then a payload. The caller reads into vsmp_in_space() and reports
 * the count with vsmp_in_commit(); vsmp_in_header() and vsmp_in_payload()
 * then look at the frame at the front, which vsmp_in_consume() drops.
 * The buffer grows only after the header passed vsmp_header_decode()
 * against the caller's maximum, to at most one frame of VSMP_MAX_PAYLOAD;
 * consumed and moved bytes are wiped (payloads may carry key material),
 * and vsmp_in_free() wipes everything. A zeroed struct is an empty
 * buffer. */
#define VSMP_IN_INITIAL 4096
struct vsmp_in {
	uint8_t *buf;
	size_t cap;
	size_t start;   /* first byte of the front frame */
	size_t end;     /* end of the received bytes */
};
/* The front frame's header: 1 with *ret_h, 0 while fewer than
 * VSMP_HEADER_LEN bytes are buffered, -EPROTO when vsmp_header_decode
 * refuses it (its raw bytes stay at in->buf + in->start). */
int vsmp_in_header(const struct vsmp_in *in, uint32_t max_payload, struct vsmp_header *ret_h);
/* The payload of the front frame, whose header is h (from vsmp_in_header):
 * 1 with *ret_payload pointing into the buffer (writable, valid until the
 * next call that changes in), 0 while part of it is still to come (room
 * for the whole frame is then made), -ENOMEM, or -EPROTO when h->length
 * is over VSMP_MAX_PAYLOAD. */
int vsmp_in_payload(struct vsmp_in *in, const struct vsmp_header *h, uint8_t **ret_payload);
/* Where to read the next bytes: at least one byte of room, and room for a
 * whole header at the front. 0, -ENOMEM, or -ENOBUFS when the buffer is
 * full with a frame whose vsmp_in_payload() was not asked for. */
int vsmp_in_space(struct vsmp_in *in, uint8_t **ret_p, size_t *ret_len);
/* Takes n bytes just written at vsmp_in_space()'s pointer. */
void vsmp_in_commit(struct vsmp_in *in, size_t n);
/* Drops the front frame (header h, whole) and wipes its bytes. */
void vsmp_in_consume(struct vsmp_in *in, const struct vsmp_header *h);
/* Bytes buffered that belong to frames not yet consumed. */
size_t vsmp_in_buffered(const struct vsmp_in *in);
/* Wipes and frees the buffer; in is then empty. */
void vsmp_in_free(struct vsmp_in *in);

/* ---- authentication proofs (HMAC-SM3, see the protocol document) ---- */
int vsmp_client_proof(const uint8_t *secret, size_t secret_len,
		      const uint8_t server_nonce[VSMP_NONCE_LEN],
		      const uint8_t client_nonce[VSMP_NONCE_LEN], const uint8_t *token_id,
		      size_t token_id_len, uint8_t out[VSMP_PROOF_LEN]);
int vsmp_server_proof(const uint8_t *secret, size_t secret_len,
		      const uint8_t server_nonce[VSMP_NONCE_LEN],
		      const uint8_t client_nonce[VSMP_NONCE_LEN], const uint8_t *token_id,
		      size_t token_id_len, uint8_t out[VSMP_PROOF_LEN]);

#endif
