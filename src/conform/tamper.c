/*
 * tamper.c: the checker's own reading and writing of the container of
 * images and packages (docs/image-format.md §1–§2), to make the bad inputs
 * of PROFILE.md §10 from an image the device exported itself:
 *   CF_T_MAGIC          first byte of the magic changed       -> 4003
 *   CF_T_SIGNATURE      one byte of the trailer's r changed   -> 4001
 *   CF_T_DOMAIN         header domainFingerprint changed      -> 4007
 *   CF_T_RESIGN_HEADER  header's signer key replaced by the checker's and
 *                       the file re-signed with it: the signature holds,
 *                       the MAC (keyed from the domain) does not -> 4002
 * and a package signed by a key of the checker's choosing. Files are read
 * whole into memory (images the checker makes are small; at most 256 MiB).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "conform/conform.h"

#define PROLOGUE 16
#define TRAILER  112
#define MAX_FILE (256u * 1024 * 1024)

static void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

static void put_be64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

static uint32_t get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int write_all(const char *path, const uint8_t *data, size_t len)
{
	FILE *f = fopen(path, "wbe");
	if (!f)
		return -1;
	bool ok = fwrite(data, 1, len, f) == len;
	return fclose(f) == 0 && ok ? 0 : -1;
}

/* Signs bytes [0, len-64) of buf with key into its last 64 bytes (r || s). */
static int sign_trailer(uint8_t *buf, size_t len, const crypto_sm2_key *key)
{
	uint8_t der[CRYPTO_SM2_SIG_DER_MAX];
	size_t dlen = 0;
	if (crypto_sm2_sign(key, NULL, buf, len - 64, der, &dlen) < 0)
		return -1;
	return crypto_sm2_sig_der_to_rs(der, dlen, buf + len - 64, buf + len - 32) < 0 ? -1 : 0;
}

/* Assembles prologue(type) || header || payload || P || OCHSMEND || mac ||
 * signature (zero) into a new buffer. */
static uint8_t *assemble(int type, const char *header, const uint8_t *payload, size_t plen,
			 const uint8_t mac[32], size_t *ret_len)
{
	size_t hlen = strlen(header), len = PROLOGUE + hlen + plen + TRAILER;
	uint8_t *b = calloc(1, len);
	if (!b)
		return NULL;
	memcpy(b, "OCHSMIMG", 8);
	b[8] = (uint8_t)type;
	b[9] = 1;
	put_be32(b + 12, (uint32_t)hlen);
	memcpy(b + PROLOGUE, header, hlen);
	if (plen)
		memcpy(b + PROLOGUE + hlen, payload, plen);
	uint8_t *t = b + PROLOGUE + hlen + plen;
	put_be64(t, plen);
	memcpy(t + 8, "OCHSMEND", 8);
	if (mac)
		memcpy(t + 16, mac, 32);
	*ret_len = len;
	return b;
}

int cf_tamper(const char *src, const char *dst, enum cf_tamper how, const crypto_sm2_key *key,
	      char *why, size_t whylen)
{
	char *data = NULL;
	size_t len = 0;
	uint8_t *out = NULL;
	json_t *hdr = NULL;
	char *htext = NULL, *pem = NULL;
	int rc = -1;
	if (chsm_read_file(src, MAX_FILE, &data, &len) < 0) {
		snprintf(why, whylen, "cannot read %s", src);
		return -1;
	}
	uint8_t *b = (uint8_t *)data;
	if (len < PROLOGUE + TRAILER || memcmp(b, "OCHSMIMG", 8) != 0) {
		snprintf(why, whylen, "%s is not an image container", src);
		goto out;
	}
	uint32_t hlen = get_be32(b + 12);
	if (hlen > len - PROLOGUE - TRAILER) {
		snprintf(why, whylen, "header length out of range");
		goto out;
	}
	switch (how) {
	case CF_T_MAGIC:
		b[0] ^= 0x20;
		rc = write_all(dst, b, len);
		goto out;
	case CF_T_SIGNATURE:
		b[len - 40] ^= 0x01;
		rc = write_all(dst, b, len);
		goto out;
	case CF_T_DOMAIN:
	case CF_T_RESIGN_HEADER:
		break;
	}
	hdr = json_loadb((char *)b + PROLOGUE, hlen, JSON_REJECT_DUPLICATES, NULL);
	if (!json_is_object(hdr)) {
		snprintf(why, whylen, "header is not a JSON object");
		goto out;
	}
	if (how == CF_T_DOMAIN) {
		const char *d = json_string_value(json_object_get(hdr, "domainFingerprint"));
		if (!d || strlen(d) != CF_FP_LEN) {
			snprintf(why, whylen, "header has no domainFingerprint");
			goto out;
		}
		char nd[CF_FP_LEN + 1];
		memcpy(nd, d, sizeof(nd));
		nd[0] = nd[0] == '0' ? '1' : '0';
		json_object_set_new(hdr, "domainFingerprint", json_string(nd));
	} else {
		size_t pl;
		char fp[CF_FP_LEN + 1];
		if (crypto_sm2_public_pem(key, &pem, &pl) < 0 || crypto_sm2_fingerprint(key, fp) < 0)
			goto out;
		json_object_set_new(hdr, "sourceDevicePublicKey", json_string(pem));
		json_object_set_new(hdr, "sourceDeviceFingerprint", json_string(fp));
	}
	htext = json_dumps(hdr, JSON_COMPACT | JSON_SORT_KEYS);
	if (!htext)
		goto out;
	size_t plen = len - PROLOGUE - hlen - TRAILER, olen = 0;
	out = assemble(b[8], htext, b + PROLOGUE + hlen, plen, b + len - 96, &olen);
	if (!out)
		goto out;
	memcpy(out + olen - 64, b + len - 64, 64);
	if (how == CF_T_RESIGN_HEADER && sign_trailer(out, olen, key) < 0)
		goto out;
	rc = write_all(dst, out, olen);
out:
	if (rc < 0 && !why[0])
		snprintf(why, whylen, "cannot write %s", dst);
	free(data);
	free(out);
	free(htext);
	free(pem);
	json_decref(hdr);
	return rc;
}

int cf_make_package(const char *dst, const char *component, const char *version,
		    const crypto_sm2_key *key, char *why, size_t whylen)
{
	static const char content[] = "chsm-conform test file\n";
	char digest[CF_FP_LEN + 1], fp[CF_FP_LEN + 1], id[32];
	char *pem = NULL, *htext = NULL, *ftext = NULL;
	uint8_t *payload = NULL, *out = NULL, rnd[12];
	size_t pl = 0, olen = 0;
	int rc = -1;
	json_t *file = NULL, *hdr = NULL;
	crypto_sm3_hex(content, sizeof(content) - 1, digest);
	crypto_random(rnd, sizeof(rnd));
	memcpy(id, "img-", 4);
	chsm_hex_encode(rnd, sizeof(rnd), id + 4);
	if (crypto_sm2_public_pem(key, &pem, &pl) < 0 || crypto_sm2_fingerprint(key, fp) < 0)
		goto out;
	file = json_pack("{s:s, s:I, s:i, s:s}", "name", "conform.txt", "size",
			 (json_int_t)(sizeof(content) - 1), "mode", 420, "sm3", digest);
	hdr = json_pack("{s:i, s:s, s:s, s:I, s:s, s:s, s:s, s:{s:s}, s:{s:s, s:s, s:[O]}}",
			"formatVersion", 1, "type", "package", "imageId", id, "createdAt",
			(json_int_t)chsm_now_ms(), "sourceDeviceId", "vendor",
			"sourceDevicePublicKey", pem, "sourceDeviceFingerprint", fp, "algorithms",
			"signature", "SM2-SM3", "contents", "component", component, "version",
			version, "files", file);
	ftext = json_dumps(file, JSON_COMPACT | JSON_SORT_KEYS);
	htext = json_dumps(hdr, JSON_COMPACT | JSON_SORT_KEYS);
	if (!ftext || !htext)
		goto out;
	size_t fl = strlen(ftext), cl = sizeof(content) - 1;
	size_t plen = 5 + fl + 5 + cl + 5;
	payload = malloc(plen);
	if (!payload)
		goto out;
	uint8_t *p = payload;
	*p++ = 6, put_be32(p, (uint32_t)fl), p += 4, memcpy(p, ftext, fl), p += fl;
	*p++ = 7, put_be32(p, (uint32_t)cl), p += 4, memcpy(p, content, cl), p += cl;
	*p++ = 255, put_be32(p, 0);
	out = assemble(4, htext, payload, plen, NULL, &olen);
	if (!out || sign_trailer(out, olen, key) < 0)
		goto out;
	rc = write_all(dst, out, olen);
out:
	if (rc < 0)
		snprintf(why, whylen, "cannot build a package at %s", dst);
	free(pem);
	free(htext);
	free(ftext);
	free(payload);
	free(out);
	json_decref(file);
	json_decref(hdr);
	return rc;
}

int cf_file_sm3(const char *path, char out[CF_FP_LEN + 1])
{
	FILE *f = fopen(path, "rbe");
	crypto_sm3_ctx *ctx = NULL;
	uint8_t buf[65536], d[CRYPTO_SM3_LEN];
	int rc = -1;
	if (!f || crypto_sm3_new(&ctx) < 0)
		goto out;
	size_t n;
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
		crypto_sm3_update(ctx, buf, n);
	if (ferror(f) || crypto_sm3_final(ctx, d) < 0)
		goto out;
	chsm_hex_encode(d, sizeof(d), out);
	rc = 0;
out:
	crypto_sm3_free(ctx);
	if (f)
		fclose(f);
	return rc;
}
