/*
 * writer.c: writes an image in one sequential pass (image.h). Everything
 * after the prologue and header goes through one fixed 64 KiB buffer; the
 * SM3 of the file, the HMAC-SM3 of the MAC region and the SM2 message digest
 * SM3(Z || ...) are computed over the bytes as they are written, so the
 * writer never reads the file back. Keys are wiped as soon as the contexts
 * that need them exist, and the contexts are wiped by free.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/util.h"
#include "image/image_internal.h"
#include "proto/codes.h"

enum writer_state { WRITER_OPEN, WRITER_DONE, WRITER_FAILED };

struct image_writer {
	int fd;
	int type;
	enum writer_state state;
	int failed_code;
	char id[IMAGE_ID_MAX_LEN + 1];
	const crypto_sm2_key *key;
	crypto_sm3_ctx *file_sm3;       /* SM3 of the whole file */
	crypto_sm3_ctx *sig_sm3;        /* SM3(Z || bytes [0, F-64)) */
	crypto_hmac_ctx *mac;           /* bytes [0, F-96); NULL in packages */
	crypto_sm4_ctr_ctx *ctr;        /* NULL in packages */
	uint64_t size;                  /* bytes handed to the buffer so far */
	uint64_t payload_len;
	uint64_t pending;               /* value bytes still due after a begin */
	bool omit_end;
	size_t buflen;
	char error[IMAGE_ERROR_LEN];
	uint8_t buf[IMAGE_BUF_LEN];
};

__attribute__((format(printf, 3, 4))) static int fail(image_writer *w, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(w->error, sizeof(w->error), fmt, ap);
	va_end(ap);
	if (w->state != WRITER_DONE) {
		w->state = WRITER_FAILED;
		w->failed_code = code;
	}
	return code;
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
	while (n > 0) {
		ssize_t k = write(fd, p, n);
		if (k < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (k == 0)
			return -EIO;
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

/* Hashes the buffered bytes into every running digest and writes them. */
static int flush(image_writer *w)
{
	if (w->buflen == 0)
		return 0;
	int r = crypto_sm3_update(w->file_sm3, w->buf, w->buflen);
	if (r == 0)
		r = crypto_sm3_update(w->sig_sm3, w->buf, w->buflen);
	if (r == 0 && w->mac)
		r = crypto_hmac_sm3_update(w->mac, w->buf, w->buflen);
	if (r < 0)
		return fail(w, image_crypto_code(r), "digest failed: %s", crypto_strerror(r));
	r = write_all(w->fd, w->buf, w->buflen);
	if (r < 0)
		return fail(w, GMT_E_STORAGE, "write failed: %s", strerror(-r));
	w->buflen = 0;
	return 0;
}

/* Appends bytes to the file; payload bytes are encrypted when encrypt. */
static int emit(image_writer *w, const void *data, size_t len, bool encrypt)
{
	const uint8_t *p = data;
	while (len > 0) {
		if (w->buflen == sizeof(w->buf)) {
			int r = flush(w);
			if (r)
				return r;
		}
		size_t n = sizeof(w->buf) - w->buflen;
		if (n > len)
			n = len;
		if (encrypt && w->ctr) {
			int r = crypto_sm4_ctr_update(w->ctr, p, n, w->buf + w->buflen);
			if (r < 0)
				return fail(w, image_crypto_code(r), "encryption failed: %s",
					    crypto_strerror(r));
		} else {
			memcpy(w->buf + w->buflen, p, n);
		}
		w->buflen += n;
		w->size += n;
		if (encrypt)
			w->payload_len += n;
		p += n;
		len -= n;
	}
	return 0;
}

static int check_open(image_writer *w)
{
	if (!w)
		return GMT_E_INTERNAL;
	if (w->state == WRITER_FAILED)
		return w->failed_code;
	if (w->state != WRITER_OPEN)
		return fail(w, GMT_E_INTERNAL, "the writer is finished");
	return 0;
}

static int emit_record_header(image_writer *w, int tag, size_t len)
{
	uint8_t h[IMAGE_REC_HEADER_LEN];
	h[0] = (uint8_t)tag;
	image_put_be32(h + 1, (uint32_t)len);
	return emit(w, h, sizeof(h), true);
}

static int check_record(image_writer *w, int tag, size_t len)
{
	int r = check_open(w);
	if (r)
		return r;
	if (w->pending)
		return fail(w, GMT_E_INTERNAL, "the previous record is incomplete");
	if (tag < 1 || tag >= IMAGE_REC_END)
		return fail(w, GMT_E_INTERNAL, "record tag %d is not allowed", tag);
	if (len > IMAGE_RECORD_MAX)
		return fail(w, GMT_E_INTERNAL, "record of %zu bytes is over the limit", len);
	return 0;
}

int image_writer_record(image_writer *w, int tag, const void *value, size_t len)
{
	int r = check_record(w, tag, len);
	if (r)
		return r;
	if (!value && len)
		return fail(w, GMT_E_INTERNAL, "record value missing");
	if ((r = emit_record_header(w, tag, len)) == 0 && len)
		r = emit(w, value, len, true);
	return r;
}

int image_writer_record_begin(image_writer *w, int tag, size_t len)
{
	int r = check_record(w, tag, len);
	if (r)
		return r;
	if ((r = emit_record_header(w, tag, len)) == 0)
		w->pending = len;
	return r;
}

int image_writer_data(image_writer *w, const void *data, size_t len)
{
	int r = check_open(w);
	if (r)
		return r;
	if (len > w->pending)
		return fail(w, GMT_E_INTERNAL, "more data than the record's length");
	if (!data && len)
		return fail(w, GMT_E_INTERNAL, "data missing");
	if ((r = emit(w, data, len, true)) == 0)
		w->pending -= len;
	return r;
}

int image_writer_raw(image_writer *w, const void *data, size_t len)
{
	int r = check_open(w);
	return r ? r : emit(w, data, len, true);
}

void image_writer_omit_end(image_writer *w)
{
	if (w)
		w->omit_end = true;
}

static int build_header(image_writer *w, const json_t *contents, const struct image_signer *signer,
			const char *domain_fp, const uint8_t iv[IMAGE_IV_LEN], const char *wrapped_b64,
			char **ret_text)
{
	char *pem = NULL, fp[CRYPTO_SM3_HEX_LEN + 1], iv_hex[2 * IMAGE_IV_LEN + 1];
	size_t pemlen;
	int r = crypto_sm2_public_pem(signer->key, &pem, &pemlen);
	if (r == 0)
		r = crypto_sm2_fingerprint(signer->key, fp);
	if (r < 0) {
		free(pem);
		return fail(w, image_crypto_code(r), "signer key: %s", crypto_strerror(r));
	}
	json_t *algs;
	if (w->type == IMAGE_PACKAGE)
		algs = json_pack("{s:s}", "signature", "SM2-SM3");
	else
		algs = json_pack("{s:s, s:s, s:s, s:s}", "cipher", "SM4-CTR", "mac", "HMAC-SM3",
				 "signature", "SM2-SM3", "keyWrap", "SM4-CTR+HMAC-SM3");
	json_t *h = json_pack("{s:i, s:s, s:s, s:I, s:s, s:s, s:s, s:o, s:O}", "formatVersion",
			      IMAGE_FORMAT_VERSION, "type", image_type_name(w->type), "imageId", w->id,
			      "createdAt", (json_int_t)chsm_now_ms(), "sourceDeviceId", signer->device_id,
			      "sourceDevicePublicKey", pem, "sourceDeviceFingerprint", fp, "algorithms",
			      algs, "contents", (json_t *)contents);
	free(pem);
	if (h && w->type != IMAGE_PACKAGE) {
		chsm_hex_encode(iv, IMAGE_IV_LEN, iv_hex);
		if (json_object_set_new(h, "domainFingerprint", json_string(domain_fp)) < 0 ||
		    json_object_set_new(h, "encryption",
					json_pack("{s:s, s:s}", "iv", iv_hex, "wrappedKey",
						  wrapped_b64)) < 0) {
			json_decref(h);
			h = NULL;
		}
	}
	char *text = h ? json_dumps(h, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	json_decref(h);
	if (!text)
		return fail(w, GMT_E_INTERNAL, "cannot build the header");
	*ret_text = text;
	return 0;
}

/* Sets up the data key, its derived keys and the wrapped copy. */
static int setup_keys(image_writer *w, const uint8_t *domain_key, uint8_t iv[IMAGE_IV_LEN],
		      char **ret_wrapped_b64)
{
	uint8_t dk[IMAGE_DATA_KEY_LEN], k_enc[IMAGE_ENC_KEY_LEN], k_mac[IMAGE_MAC_KEY_LEN];
	uint8_t k_wrap[IMAGE_WRAP_KEY_LEN], *wrapped = NULL;
	size_t wrapped_len = 0;
	char *b64 = NULL;
	int r;
	if ((r = crypto_random(dk, sizeof(dk))) < 0 || (r = crypto_random(iv, IMAGE_IV_LEN)) < 0 ||
	    (r = image_derive_data_keys(dk, w->id, k_enc, k_mac)) < 0 ||
	    (r = image_derive_wrap_key(domain_key, k_wrap)) < 0 ||
	    (r = crypto_seal(k_wrap, w->id, strlen(w->id), dk, sizeof(dk), &wrapped,
			     &wrapped_len)) < 0 ||
	    (r = crypto_base64_encode(wrapped, wrapped_len, &b64)) < 0 ||
	    (r = crypto_hmac_sm3_new(k_mac, sizeof(k_mac), &w->mac)) < 0 ||
	    (r = crypto_sm4_ctr_new(k_enc, iv, &w->ctr)) < 0) {
		free(b64);
		b64 = NULL;
		r = fail(w, image_crypto_code(r), "key setup failed: %s", crypto_strerror(r));
	}
	free(wrapped);
	crypto_wipe(dk, sizeof(dk));
	crypto_wipe(k_enc, sizeof(k_enc));
	crypto_wipe(k_mac, sizeof(k_mac));
	crypto_wipe(k_wrap, sizeof(k_wrap));
	if (b64)
		*ret_wrapped_b64 = b64;
	return r;
}

int image_writer_new(int fd, int type, const json_t *contents, const struct image_signer *signer,
		     const uint8_t *domain_key, const char *domain_fp, image_writer **ret_w)
{
	bool package = type == IMAGE_PACKAGE;
	if (fd < 0 || !image_type_name(type) || !json_is_object(contents) || !signer ||
	    !signer->key || !signer->device_id || !crypto_sm2_key_has_private(signer->key) ||
	    !ret_w)
		return GMT_E_INTERNAL;
	if (package ? (domain_key || domain_fp) : (!domain_key || !image_is_hex64(domain_fp)))
		return GMT_E_INTERNAL;
	image_writer *w = calloc(1, sizeof(*w));
	if (!w)
		return GMT_E_INTERNAL;
	w->fd = fd;
	w->type = type;
	w->key = signer->key;
	uint8_t rnd[12], iv[IMAGE_IV_LEN] = {0}, z[CRYPTO_SM3_LEN];
	char *wrapped_b64 = NULL, *text = NULL;
	int r = crypto_random(rnd, sizeof(rnd));
	if (r < 0) {
		r = fail(w, image_crypto_code(r), "no randomness");
		goto out;
	}
	memcpy(w->id, "img-", 4);
	chsm_hex_encode(rnd, sizeof(rnd), w->id + 4);
	if ((r = crypto_sm3_new(&w->file_sm3)) < 0 || (r = crypto_sm3_new(&w->sig_sm3)) < 0 ||
	    (r = crypto_sm2_z(signer->key, NULL, z)) < 0 ||
	    (r = crypto_sm3_update(w->sig_sm3, z, sizeof(z))) < 0) {
		r = fail(w, image_crypto_code(r), "digest setup failed: %s", crypto_strerror(r));
		goto out;
	}
	if (!package && (r = setup_keys(w, domain_key, iv, &wrapped_b64)))
		goto out;
	if ((r = build_header(w, contents, signer, domain_fp, iv, wrapped_b64, &text)))
		goto out;
	size_t hlen = strlen(text);
	if (hlen < 2 || hlen > IMAGE_HEADER_MAX) {
		r = fail(w, GMT_E_INTERNAL, "header of %zu bytes is over the limit", hlen);
		goto out;
	}
	uint8_t pro[IMAGE_PROLOGUE_LEN];
	memcpy(pro, IMAGE_MAGIC, 8);
	pro[8] = (uint8_t)type;
	pro[9] = IMAGE_FORMAT_VERSION;
	image_put_be16(pro + 10, 0);
	image_put_be32(pro + 12, (uint32_t)hlen);
	if ((r = emit(w, pro, sizeof(pro), false)) || (r = emit(w, text, hlen, false)))
		goto out;
	*ret_w = w;
	w = NULL;
out:
	free(text);
	free(wrapped_b64);
	image_writer_free(w);
	return r;
}

const char *image_writer_id(const image_writer *w)
{
	return w ? w->id : NULL;
}

int image_writer_finish(image_writer *w, uint64_t *ret_size, char ret_sm3[CRYPTO_SM3_HEX_LEN + 1])
{
	int r = check_open(w);
	if (r)
		return r;
	if (w->pending)
		return fail(w, GMT_E_INTERNAL, "the last record is incomplete");
	if (!w->omit_end && (r = emit_record_header(w, IMAGE_REC_END, 0)))
		return r;
	uint8_t t[16], mac[IMAGE_MAC_LEN] = {0}, e[CRYPTO_SM3_LEN], der[CRYPTO_SM2_SIG_DER_MAX];
	uint8_t sig[IMAGE_SIG_LEN], digest[CRYPTO_SM3_LEN];
	size_t derlen;
	image_put_be64(t, w->payload_len);
	memcpy(t + 8, IMAGE_TRAILER_MAGIC, 8);
	if ((r = emit(w, t, sizeof(t), false)) || (r = flush(w)))
		return r;
	/* The digests now cover bytes [0, F-96). */
	if (w->mac && (r = crypto_hmac_sm3_final(w->mac, mac)) < 0)
		return fail(w, image_crypto_code(r), "MAC failed: %s", crypto_strerror(r));
	if ((r = crypto_sm3_update(w->sig_sm3, mac, sizeof(mac))) < 0 ||
	    (r = crypto_sm3_final(w->sig_sm3, e)) < 0 ||
	    (r = crypto_sm2_sign_digest(w->key, e, der, &derlen)) < 0 ||
	    (r = crypto_sm2_sig_der_to_rs(der, derlen, sig, sig + 32)) < 0 ||
	    (r = crypto_sm3_update(w->file_sm3, mac, sizeof(mac))) < 0 ||
	    (r = crypto_sm3_update(w->file_sm3, sig, sizeof(sig))) < 0 ||
	    (r = crypto_sm3_final(w->file_sm3, digest)) < 0)
		return fail(w, image_crypto_code(r), "signing failed: %s", crypto_strerror(r));
	if ((r = write_all(w->fd, mac, sizeof(mac))) < 0 ||
	    (r = write_all(w->fd, sig, sizeof(sig))) < 0)
		return fail(w, GMT_E_STORAGE, "write failed: %s", strerror(-r));
	if (fsync(w->fd) < 0)
		return fail(w, GMT_E_STORAGE, "fsync failed: %s", strerror(errno));
	w->size += sizeof(mac) + sizeof(sig);
	w->state = WRITER_DONE;
	if (ret_size)
		*ret_size = w->size;
	if (ret_sm3)
		chsm_hex_encode(digest, sizeof(digest), ret_sm3);
	return 0;
}

void image_writer_free(image_writer *w)
{
	if (!w)
		return;
	crypto_sm3_free(w->file_sm3);
	crypto_sm3_free(w->sig_sm3);
	crypto_hmac_sm3_free(w->mac);
	crypto_sm4_ctr_free(w->ctr);
	crypto_free_secret(w, sizeof(*w));
}

const char *image_writer_error(const image_writer *w)
{
	return w ? w->error : "no writer";
}
