/*
 * reader.c: reads an image with pread() through fixed 64 KiB buffers
 * (image.h). Every length taken from the file is checked against the file
 * size before it is used; the checks run in the order of PROFILE.md §10
 * (layout and header at open, then domain, signature, unwrap and MAC), and
 * no record is returned before the image is authenticated: unlocked with
 * the domain key (images, backups) or verified with an explicit vendor key
 * (packages). Key material is wiped by free.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/limits.h"
#include "common/util.h"
#include "image/image_internal.h"
#include "proto/codes.h"

/* Only the fuzzing build (CMake OPENCHSM_FUZZ, never a product build)
 * defines this: a signature or MAC that does not verify is then accepted,
 * so that the fuzzer's mutations reach the record parser. */
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
#define FUZZ_ACCEPT_BAD_AUTH 1
#else
#define FUZZ_ACCEPT_BAD_AUTH 0
#endif

struct image_reader {
	int fd;
	int type;
	uint64_t size;          /* F */
	uint64_t payload_off;   /* 16 + H */
	uint64_t payload_len;   /* P */
	json_t *header;
	const char *image_id;   /* in header */
	uint8_t iv[IMAGE_IV_LEN];
	uint8_t *wrapped;
	size_t wrapped_len;
	bool verified_explicit; /* the signature verified with a given key */
	bool unlocked;
	crypto_sm4_ctr_ctx *ctr;
	uint64_t pos;           /* payload bytes read from the file */
	size_t buf_off, buf_len;
	uint64_t value_left;    /* bytes of a begun record not yet read */
	bool ended;
	int failed;             /* sticky record error */
	char error[IMAGE_ERROR_LEN];
	uint8_t buf[IMAGE_BUF_LEN];     /* decrypted payload */
	uint8_t scratch[IMAGE_BUF_LEN]; /* signature and MAC passes */
};

__attribute__((format(printf, 3, 4))) static int fail(image_reader *r, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(r->error, sizeof(r->error), fmt, ap);
	va_end(ap);
	return code;
}

/* Reads exactly n bytes at off: 5001 on an I/O error, 4003 when the file
 * ends early (it shrank after open). */
static int read_at(image_reader *r, void *buf, size_t n, uint64_t off)
{
	uint8_t *p = buf;
	while (n > 0) {
		ssize_t k = pread(r->fd, p, n, (off_t)off);
		if (k < 0) {
			if (errno == EINTR)
				continue;
			return fail(r, GMT_E_STORAGE, "read failed: %s", strerror(errno));
		}
		if (k == 0)
			return fail(r, GMT_E_IMAGE_FORMAT, "the file is shorter than its layout");
		p += k;
		n -= (size_t)k;
		off += (uint64_t)k;
	}
	return 0;
}

static int json_depth_ok(const json_t *j, int depth)
{
	if (depth > IMAGE_HEADER_MAX_DEPTH)
		return 0;
	const char *k;
	json_t *v;
	size_t i;
	if (json_is_object(j)) {
		json_object_foreach((json_t *)j, k, v)
			if (!json_depth_ok(v, depth + 1))
				return 0;
	} else if (json_is_array(j)) {
		json_array_foreach(j, i, v)
			if (!json_depth_ok(v, depth + 1))
				return 0;
	}
	return 1;
}

static bool is_id(const json_t *j, size_t max)
{
	const char *s = json_string_value(j);
	size_t n = s ? json_string_length(j) : 0;
	return s && n >= 1 && n <= max && strlen(s) == n && chsm_str_charset(s, n, "_.-");
}

/* Checks the header's fields and types (image.h, "Header fields"). */
static int check_header(image_reader *r)
{
	static const char *const common[] = {
		"formatVersion", "type", "imageId", "createdAt", "sourceDeviceId",
		"sourceDevicePublicKey", "sourceDeviceFingerprint", "algorithms", "contents", NULL};
	json_t *h = r->header;
	bool package = r->type == IMAGE_PACKAGE;
	size_t expected = package ? 9 : 11;
	if (!json_is_object(h))
		return fail(r, GMT_E_IMAGE_FORMAT, "the header is not a JSON object");
	if (!json_depth_ok(h, 0))
		return fail(r, GMT_E_IMAGE_FORMAT, "the header is nested too deeply");
	for (size_t i = 0; common[i]; i++)
		if (!json_object_get(h, common[i]))
			return fail(r, GMT_E_IMAGE_FORMAT, "header field %s missing", common[i]);
	if (!package && (!json_object_get(h, "domainFingerprint") || !json_object_get(h, "encryption")))
		return fail(r, GMT_E_IMAGE_FORMAT, "header field domainFingerprint or encryption missing");
	if (json_object_size(h) != expected)
		return fail(r, GMT_E_IMAGE_FORMAT, "the header has unknown fields");
	json_t *v = json_object_get(h, "formatVersion");
	if (!json_is_integer(v) || json_integer_value(v) != IMAGE_FORMAT_VERSION)
		return fail(r, GMT_E_IMAGE_FORMAT, "header formatVersion unsupported");
	v = json_object_get(h, "type");
	if (!json_is_string(v) || strcmp(json_string_value(v), image_type_name(r->type)) != 0)
		return fail(r, GMT_E_IMAGE_FORMAT, "header type differs from the type byte");
	v = json_object_get(h, "imageId");
	if (!is_id(v, IMAGE_ID_MAX_LEN))
		return fail(r, GMT_E_IMAGE_FORMAT, "header imageId invalid");
	r->image_id = json_string_value(v);
	v = json_object_get(h, "createdAt");
	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return fail(r, GMT_E_IMAGE_FORMAT, "header createdAt invalid");
	if (!is_id(json_object_get(h, "sourceDeviceId"), CHSM_VSM_ID_MAX_LEN))
		return fail(r, GMT_E_IMAGE_FORMAT, "header sourceDeviceId invalid");
	v = json_object_get(h, "sourceDevicePublicKey");
	if (!json_is_string(v) || json_string_length(v) > CHSM_JSON_MAX_PEM)
		return fail(r, GMT_E_IMAGE_FORMAT, "header sourceDevicePublicKey invalid");
	if (!image_is_hex64(json_string_value(json_object_get(h, "sourceDeviceFingerprint"))))
		return fail(r, GMT_E_IMAGE_FORMAT, "header sourceDeviceFingerprint invalid");
	json_t *algs = package ? json_pack("{s:s}", "signature", "SM2-SM3")
			       : json_pack("{s:s, s:s, s:s, s:s}", "cipher", "SM4-CTR", "mac",
					   "HMAC-SM3", "signature", "SM2-SM3", "keyWrap",
					   "SM4-CTR+HMAC-SM3");
	if (!algs)
		return fail(r, GMT_E_INTERNAL, "out of memory");
	bool same = json_equal(algs, json_object_get(h, "algorithms"));
	json_decref(algs);
	if (!same)
		return fail(r, GMT_E_IMAGE_FORMAT, "header algorithms unsupported");
	if (!json_is_object(json_object_get(h, "contents")))
		return fail(r, GMT_E_IMAGE_FORMAT, "header contents is not an object");
	if (package)
		return 0;
	if (!image_is_hex64(json_string_value(json_object_get(h, "domainFingerprint"))))
		return fail(r, GMT_E_IMAGE_FORMAT, "header domainFingerprint invalid");
	json_t *enc = json_object_get(h, "encryption");
	json_t *iv = json_object_get(enc, "iv"), *wk = json_object_get(enc, "wrappedKey");
	if (!json_is_object(enc) || json_object_size(enc) != 2 || !json_is_string(iv) ||
	    !json_is_string(wk) ||
	    chsm_hex_decode(json_string_value(iv), json_string_length(iv), r->iv, IMAGE_IV_LEN) < 0)
		return fail(r, GMT_E_IMAGE_FORMAT, "header encryption invalid");
	if (json_string_length(wk) > IMAGE_WRAPPED_B64_MAX ||
	    crypto_base64_decode(json_string_value(wk), json_string_length(wk), &r->wrapped,
				 &r->wrapped_len) < 0 ||
	    r->wrapped_len != IMAGE_DATA_KEY_LEN + CRYPTO_SEAL_OVERHEAD)
		return fail(r, GMT_E_IMAGE_FORMAT, "header wrappedKey invalid");
	return 0;
}

static int open_image(image_reader *r)
{
	struct stat st;
	if (fstat(r->fd, &st) < 0)
		return fail(r, GMT_E_STORAGE, "stat failed: %s", strerror(errno));
	if (!S_ISREG(st.st_mode))
		return fail(r, GMT_E_IMAGE_FORMAT, "not a regular file");
	r->size = (uint64_t)st.st_size;
	if (r->size < IMAGE_PROLOGUE_LEN + 2 + IMAGE_TRAILER_LEN)
		return fail(r, GMT_E_IMAGE_FORMAT, "the file is too short to be an image");
	uint8_t pro[IMAGE_PROLOGUE_LEN], tr[16];
	int e = read_at(r, pro, sizeof(pro), 0);
	if (e)
		return e;
	if (memcmp(pro, IMAGE_MAGIC, 8) != 0)
		return fail(r, GMT_E_IMAGE_FORMAT, "bad magic");
	if (pro[9] != IMAGE_FORMAT_VERSION)
		return fail(r, GMT_E_IMAGE_FORMAT, "format version %u unsupported", pro[9]);
	if (image_get_be16(pro + 10) != 0)
		return fail(r, GMT_E_IMAGE_FORMAT, "flags unsupported");
	if (!image_type_name(pro[8]))
		return fail(r, GMT_E_IMAGE_FORMAT, "type %u unsupported", pro[8]);
	r->type = pro[8];
	uint64_t hlen = image_get_be32(pro + 12);
	if (hlen < 2 || hlen > IMAGE_HEADER_MAX)
		return fail(r, GMT_E_IMAGE_FORMAT, "header length out of range");
	/* No overflow: hlen <= 256 KiB and size >= the fixed part. */
	if (hlen > r->size - IMAGE_PROLOGUE_LEN - IMAGE_TRAILER_LEN)
		return fail(r, GMT_E_IMAGE_FORMAT, "header length beyond the file");
	r->payload_off = IMAGE_PROLOGUE_LEN + hlen;
	r->payload_len = r->size - r->payload_off - IMAGE_TRAILER_LEN;
	if ((e = read_at(r, tr, sizeof(tr), r->size - IMAGE_TRAILER_P_FROM_END)))
		return e;
	if (memcmp(tr + 8, IMAGE_TRAILER_MAGIC, 8) != 0)
		return fail(r, GMT_E_IMAGE_FORMAT, "bad trailer magic");
	if (image_get_be64(tr) != r->payload_len)
		return fail(r, GMT_E_IMAGE_FORMAT, "payload length differs from the layout");
	char *text = malloc(hlen);
	if (!text)
		return fail(r, GMT_E_INTERNAL, "out of memory");
	if ((e = read_at(r, text, hlen, IMAGE_PROLOGUE_LEN))) {
		free(text);
		return e;
	}
	json_error_t jerr;
	r->header = json_loadb(text, hlen, JSON_REJECT_DUPLICATES, &jerr);
	free(text);
	if (!r->header)
		return fail(r, GMT_E_IMAGE_FORMAT, "the header is not valid JSON");
	return check_header(r);
}

int image_reader_open_msg(int fd, image_reader **ret_r, char *msg, size_t cap)
{
	if (fd < 0 || !ret_r)
		return GMT_E_INTERNAL;
	image_reader *r = calloc(1, sizeof(*r));
	if (!r)
		return GMT_E_INTERNAL;
	r->fd = fd;
	int e = open_image(r);
	if (e) {
		if (msg && cap)
			snprintf(msg, cap, "%s", r->error);
		image_reader_free(r);
		return e;
	}
	*ret_r = r;
	return 0;
}

int image_reader_open(int fd, image_reader **ret_r)
{
	return image_reader_open_msg(fd, ret_r, NULL, 0);
}

int image_reader_type(const image_reader *r)
{
	return r ? r->type : 0;
}

const json_t *image_reader_header(const image_reader *r)
{
	return r ? r->header : NULL;
}

uint64_t image_reader_size(const image_reader *r)
{
	return r ? r->size : 0;
}

uint64_t image_reader_payload_size(const image_reader *r)
{
	return r ? r->payload_len : 0;
}

int image_reader_check_domain(image_reader *r, const char *domain_fp)
{
	if (!r || !domain_fp)
		return GMT_E_INTERNAL;
	if (r->type == IMAGE_PACKAGE)
		return fail(r, GMT_E_DOMAIN, "a package belongs to no security domain");
	const char *fp = json_string_value(json_object_get(r->header, "domainFingerprint"));
	if (strcmp(fp, domain_fp) != 0)
		return fail(r, GMT_E_DOMAIN, "the image belongs to another security domain");
	return 0;
}

int image_reader_verify_signature(image_reader *r, const crypto_sm2_key *key)
{
	if (!r)
		return GMT_E_INTERNAL;
	crypto_sm2_key *own = NULL;
	crypto_sm3_ctx *sm3 = NULL;
	char fp[CRYPTO_SM3_HEX_LEN + 1];
	const char *header_fp =
		json_string_value(json_object_get(r->header, "sourceDeviceFingerprint"));
	int e;
	if (!key) {
		json_t *pem = json_object_get(r->header, "sourceDevicePublicKey");
		if (crypto_sm2_load_public_pem(json_string_value(pem), json_string_length(pem),
					       &own) < 0)
			return fail(r, GMT_E_IMAGE_FORMAT, "sourceDevicePublicKey is not an SM2 key");
		key = own;
	}
	if ((e = crypto_sm2_fingerprint(key, fp)) < 0) {
		e = fail(r, image_crypto_code(e), "fingerprint failed: %s", crypto_strerror(e));
		goto out;
	}
	if (strcmp(fp, header_fp) != 0) {
		/* A given key that is not the one the header names cannot have
		 * signed; an embedded key that is not the one the header names
		 * is an inconsistent header. */
		e = own ? fail(r, GMT_E_IMAGE_FORMAT, "sourceDeviceFingerprint is not that of the key")
			: fail(r, GMT_E_IMAGE_SIGNATURE, "the image is not signed by this key");
		goto out;
	}
	uint8_t z[CRYPTO_SM3_LEN], digest[CRYPTO_SM3_LEN], sig[IMAGE_SIG_LEN];
	uint8_t der[CRYPTO_SM2_SIG_DER_MAX];
	size_t derlen;
	if ((e = crypto_sm3_new(&sm3)) < 0 || (e = crypto_sm2_z(key, NULL, z)) < 0 ||
	    (e = crypto_sm3_update(sm3, z, sizeof(z))) < 0) {
		e = fail(r, image_crypto_code(e), "digest failed: %s", crypto_strerror(e));
		goto out;
	}
	uint64_t end = r->size - IMAGE_TRAILER_SIG_FROM_END;
	for (uint64_t off = 0; off < end;) {
		size_t n = end - off < sizeof(r->scratch) ? (size_t)(end - off) : sizeof(r->scratch);
		if ((e = read_at(r, r->scratch, n, off)))
			goto out;
		if ((e = crypto_sm3_update(sm3, r->scratch, n)) < 0) {
			e = fail(r, image_crypto_code(e), "digest failed: %s", crypto_strerror(e));
			goto out;
		}
		off += n;
	}
	if ((e = read_at(r, sig, sizeof(sig), end)))
		goto out;
	if ((e = crypto_sm3_final(sm3, digest)) < 0) {
		e = fail(r, image_crypto_code(e), "digest failed: %s", crypto_strerror(e));
		goto out;
	}
	if ((crypto_sm2_sig_rs_to_der(sig, sig + 32, der, &derlen) < 0 ||
	     crypto_sm2_verify_digest(key, digest, der, derlen) < 0) && !FUZZ_ACCEPT_BAD_AUTH) {
		e = fail(r, GMT_E_IMAGE_SIGNATURE, "the signature does not verify");
		goto out;
	}
	if (!own)
		r->verified_explicit = true;
	e = 0;
out:
	crypto_sm3_free(sm3);
	crypto_sm2_key_free(own);
	return e;
}

/* HMAC-SM3(k_mac, bytes [0, F-96)) against the trailer's MAC. */
static int check_mac(image_reader *r, const uint8_t k_mac[IMAGE_MAC_KEY_LEN])
{
	crypto_hmac_ctx *mac = NULL;
	uint8_t want[IMAGE_MAC_LEN], got[IMAGE_MAC_LEN];
	uint64_t end = r->size - IMAGE_TRAILER_MAC_FROM_END;
	int e = crypto_hmac_sm3_new(k_mac, IMAGE_MAC_KEY_LEN, &mac);
	if (e < 0)
		return fail(r, image_crypto_code(e), "MAC failed: %s", crypto_strerror(e));
	for (uint64_t off = 0; off < end;) {
		size_t n = end - off < sizeof(r->scratch) ? (size_t)(end - off) : sizeof(r->scratch);
		if ((e = read_at(r, r->scratch, n, off)))
			goto out;
		if ((e = crypto_hmac_sm3_update(mac, r->scratch, n)) < 0) {
			e = fail(r, image_crypto_code(e), "MAC failed: %s", crypto_strerror(e));
			goto out;
		}
		off += n;
	}
	if ((e = crypto_hmac_sm3_final(mac, got)) < 0) {
		e = fail(r, image_crypto_code(e), "MAC failed: %s", crypto_strerror(e));
		goto out;
	}
	if ((e = read_at(r, want, sizeof(want), end)))
		goto out;
	e = crypto_memeq(want, got, sizeof(got)) || FUZZ_ACCEPT_BAD_AUTH
		? 0 : fail(r, GMT_E_IMAGE_INTEGRITY, "the MAC does not match");
out:
	crypto_hmac_sm3_free(mac);
	crypto_wipe(got, sizeof(got));
	return e;
}

int image_reader_unlock(image_reader *r, const uint8_t domain_key[IMAGE_DOMAIN_KEY_LEN])
{
	if (!r || !domain_key)
		return GMT_E_INTERNAL;
	if (r->type == IMAGE_PACKAGE)
		return fail(r, GMT_E_INTERNAL, "a package is not encrypted");
	if (r->unlocked)
		return 0;
	uint8_t k_wrap[IMAGE_WRAP_KEY_LEN], k_enc[IMAGE_ENC_KEY_LEN], k_mac[IMAGE_MAC_KEY_LEN];
	uint8_t *dk = NULL;
	size_t dklen = 0;
	int e = image_derive_wrap_key(domain_key, k_wrap);
	if (e < 0) {
		e = fail(r, image_crypto_code(e), "key derivation failed: %s", crypto_strerror(e));
		goto out;
	}
	e = crypto_unseal(k_wrap, r->image_id, strlen(r->image_id), r->wrapped, r->wrapped_len,
			  &dk, &dklen);
	if (e == -EBADMSG || (e == 0 && dklen != IMAGE_DATA_KEY_LEN)) {
		e = fail(r, GMT_E_IMAGE_INTEGRITY, "the data key does not unwrap with this domain key");
		goto out;
	}
	if (e < 0 || (e = image_derive_data_keys(dk, r->image_id, k_enc, k_mac)) < 0) {
		e = fail(r, image_crypto_code(e), "key derivation failed: %s", crypto_strerror(e));
		goto out;
	}
	if ((e = check_mac(r, k_mac)))
		goto out;
	if ((e = crypto_sm4_ctr_new(k_enc, r->iv, &r->ctr)) < 0) {
		e = fail(r, image_crypto_code(e), "decryption failed: %s", crypto_strerror(e));
		goto out;
	}
	r->unlocked = true;
out:
	crypto_free_secret(dk, dklen);
	crypto_wipe(k_wrap, sizeof(k_wrap));
	crypto_wipe(k_enc, sizeof(k_enc));
	crypto_wipe(k_mac, sizeof(k_mac));
	return e;
}

static int record_fail(image_reader *r, int code, const char *msg)
{
	r->failed = code;
	return fail(r, code, "%s", msg);
}

/* Copies the next n plaintext payload bytes to out (NULL: skips them).
 * Returns 4002 when the payload ends first. */
static int payload_get(image_reader *r, uint8_t *out, size_t n)
{
	while (n > 0) {
		if (r->buf_off == r->buf_len) {
			uint64_t left = r->payload_len - r->pos;
			if (left == 0)
				return record_fail(r, GMT_E_IMAGE_INTEGRITY, "the payload ends early");
			size_t k = left < sizeof(r->buf) ? (size_t)left : sizeof(r->buf);
			int e = read_at(r, r->buf, k, r->payload_off + r->pos);
			if (e) {
				r->failed = e;
				return e;
			}
			if (r->ctr && (e = crypto_sm4_ctr_update(r->ctr, r->buf, k, r->buf)) < 0)
				return record_fail(r, image_crypto_code(e), "decryption failed");
			r->pos += k;
			r->buf_off = 0;
			r->buf_len = k;
		}
		size_t k = r->buf_len - r->buf_off;
		if (k > n)
			k = n;
		if (out) {
			memcpy(out, r->buf + r->buf_off, k);
			out += k;
		}
		r->buf_off += k;
		n -= k;
	}
	return 0;
}

/* Payload bytes not yet consumed. */
static uint64_t payload_left(const image_reader *r)
{
	return r->payload_len - r->pos + (r->buf_len - r->buf_off);
}

int image_reader_next_begin(image_reader *r, int *ret_tag, size_t *ret_len)
{
	if (!r || !ret_tag || !ret_len)
		return GMT_E_INTERNAL;
	if (r->type == IMAGE_PACKAGE ? !r->verified_explicit : !r->unlocked)
		return fail(r, GMT_E_INTERNAL, "records are read only after authentication");
	if (r->failed)
		return r->failed;
	if (r->ended) {
		*ret_tag = IMAGE_REC_END;
		*ret_len = 0;
		return 0;
	}
	int e;
	if (r->value_left) {
		if ((e = payload_get(r, NULL, r->value_left)))
			return e;
		r->value_left = 0;
	}
	if (payload_left(r) < IMAGE_REC_HEADER_LEN)
		return record_fail(r, GMT_E_IMAGE_INTEGRITY, "the payload ends before its END record");
	uint8_t h[IMAGE_REC_HEADER_LEN];
	if ((e = payload_get(r, h, sizeof(h))))
		return e;
	uint32_t len = image_get_be32(h + 1);
	if (h[0] == 0)
		return record_fail(r, GMT_E_IMAGE_FORMAT, "record tag 0");
	if (len > IMAGE_RECORD_MAX)
		return record_fail(r, GMT_E_IMAGE_FORMAT, "record longer than the limit");
	if (len > payload_left(r))
		return record_fail(r, GMT_E_IMAGE_FORMAT, "record length beyond the payload");
	if (h[0] == IMAGE_REC_END) {
		if (len != 0)
			return record_fail(r, GMT_E_IMAGE_FORMAT, "END record not empty");
		if (payload_left(r) != 0)
			return record_fail(r, GMT_E_IMAGE_INTEGRITY, "bytes after the END record");
		r->ended = true;
	}
	r->value_left = len;
	*ret_tag = h[0];
	*ret_len = len;
	return 0;
}

int image_reader_read(image_reader *r, void *buf, size_t cap, size_t *ret_n)
{
	if (!r || !ret_n || (!buf && cap))
		return GMT_E_INTERNAL;
	if (r->type == IMAGE_PACKAGE ? !r->verified_explicit : !r->unlocked)
		return fail(r, GMT_E_INTERNAL, "records are read only after authentication");
	if (r->failed)
		return r->failed;
	size_t n = r->value_left < cap ? (size_t)r->value_left : cap;
	int e = payload_get(r, buf, n);
	if (e)
		return e;
	r->value_left -= n;
	*ret_n = n;
	return 0;
}

int image_reader_next(image_reader *r, int *ret_tag, uint8_t **ret_value, size_t *ret_len)
{
	if (!ret_value)
		return GMT_E_INTERNAL;
	int tag, e;
	size_t len, n;
	if ((e = image_reader_next_begin(r, &tag, &len)))
		return e;
	uint8_t *value = NULL;
	if (len) {
		if (!(value = malloc(len)))
			return fail(r, GMT_E_INTERNAL, "out of memory");
		if ((e = image_reader_read(r, value, len, &n))) {
			crypto_free_secret(value, len);
			return e;
		}
	}
	*ret_tag = tag;
	*ret_value = value;
	*ret_len = len;
	return 0;
}

void image_reader_free(image_reader *r)
{
	if (!r)
		return;
	json_decref(r->header);
	free(r->wrapped);
	crypto_sm4_ctr_free(r->ctr);
	crypto_free_secret(r, sizeof(*r));
}

const char *image_reader_error(const image_reader *r)
{
	return r ? r->error : "no reader";
}
