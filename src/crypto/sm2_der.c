/*
 * sm2_der.c: conversions between OpenSSL's DER forms and the fixed-width
 * fields of the SDF structures:
 *   signature   SEQUENCE { r INTEGER, s INTEGER }       <-> r(32) || s(32)
 *   ciphertext  SEQUENCE { x INTEGER, y INTEGER,
 *                          hash OCTET STRING (32),
 *                          ciphertext OCTET STRING }    <-> x, y, C3, C2
 * Decoding is strict DER (definite minimal lengths, minimal non-negative
 * INTEGERs that fit 32 bytes, no trailing bytes); anything else is -EINVAL.
 * Encoding produces minimal DER. The parser reads through a cursor that
 * carries its remaining length, so every read is bounds-checked.
 */
#include "crypto/crypto.h"
#include "crypto/crypto_internal.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/ec.h>

#define DER_INTEGER      0x02
#define DER_OCTET_STRING 0x04
#define DER_SEQUENCE     0x30
/* Longest length field accepted: 4 bytes (contents below 4 GiB). */
#define DER_LEN_BYTES_MAX 4
/* Largest C2 encoded: leaves room for the rest below DER_LEN_BYTES_MAX. */
#define DER_C2_MAX (UINT32_MAX - 256u)

int crypto_sm2_sig_der_to_rs(const uint8_t *der, size_t derlen, uint8_t r[32], uint8_t s[32])
{
	if (der == NULL || derlen == 0 || derlen > CRYPTO_SM2_SIG_DER_MAX || r == NULL ||
	    s == NULL)
		return -EINVAL;
	const unsigned char *p = der;
	ECDSA_SIG *sig = d2i_ECDSA_SIG(NULL, &p, (long)derlen);
	unsigned char *again = NULL;
	uint8_t rbuf[32], sbuf[32];
	int ret = -EINVAL;
	if (sig == NULL || p != der + derlen)
		goto out;
	/* Strict DER: the encoding must be the one OpenSSL would produce. */
	int againlen = i2d_ECDSA_SIG(sig, &again);
	if (againlen < 0 || (size_t)againlen != derlen || memcmp(again, der, derlen) != 0)
		goto out;
	const BIGNUM *br = NULL, *bs = NULL;
	ECDSA_SIG_get0(sig, &br, &bs);
	if (BN_is_negative(br) || BN_is_negative(bs) || BN_bn2binpad(br, rbuf, 32) != 32 ||
	    BN_bn2binpad(bs, sbuf, 32) != 32)
		goto out;
	memcpy(r, rbuf, 32);
	memcpy(s, sbuf, 32);
	ret = 0;
out:
	OPENSSL_free(again);
	ECDSA_SIG_free(sig);
	return ret < 0 ? crypto_fail(ret) : 0;
}

int crypto_sm2_sig_rs_to_der(const uint8_t r[32], const uint8_t s[32],
			     uint8_t der[CRYPTO_SM2_SIG_DER_MAX], size_t *ret_len)
{
	if (r == NULL || s == NULL || der == NULL || ret_len == NULL)
		return -EINVAL;
	ECDSA_SIG *sig = ECDSA_SIG_new();
	BIGNUM *br = BN_bin2bn(r, 32, NULL), *bs = BN_bin2bn(s, 32, NULL);
	int ret = -ENOMEM;
	if (sig == NULL || br == NULL || bs == NULL || ECDSA_SIG_set0(sig, br, bs) != 1)
		goto out;
	br = bs = NULL; /* owned by sig */
	ret = -EIO;
	int len = i2d_ECDSA_SIG(sig, NULL);
	if (len <= 0 || len > CRYPTO_SM2_SIG_DER_MAX)
		goto out;
	unsigned char *p = der;
	if (i2d_ECDSA_SIG(sig, &p) != len)
		goto out;
	*ret_len = (size_t)len;
	ret = 0;
out:
	BN_free(br);
	BN_free(bs);
	ECDSA_SIG_free(sig);
	return ret < 0 ? crypto_fail(ret) : 0;
}

/* ---- a minimal DER reader ---- */

struct der_cursor {
	const uint8_t *p;
	size_t len;
};

/* Reads one element with the given tag from c into *ret_body (its
 * contents) and advances c past it. */
static int der_read(struct der_cursor *c, uint8_t tag, struct der_cursor *ret_body)
{
	if (c->len < 2 || c->p[0] != tag)
		return -EINVAL;
	size_t hdr = 2, n = c->p[1];
	if (n & 0x80) {
		size_t k = n & 0x7f;
		/* k == 0 is the indefinite form, not DER. */
		if (k == 0 || k > DER_LEN_BYTES_MAX || c->len - 2 < k || c->p[2] == 0)
			return -EINVAL;
		n = 0;
		for (size_t i = 0; i < k; i++)
			n = n << 8 | c->p[2 + i];
		if (n < 0x80) /* should have used the short form */
			return -EINVAL;
		hdr += k;
	}
	if (c->len - hdr < n)
		return -EINVAL;
	ret_body->p = c->p + hdr;
	ret_body->len = n;
	c->p += hdr + n;
	c->len -= hdr + n;
	return 0;
}

/* Reads a non-negative minimal INTEGER of at most 32 significant bytes,
 * left-padded with zeros into out. */
static int der_read_uint256(struct der_cursor *c, uint8_t out[32])
{
	struct der_cursor v;
	int r = der_read(c, DER_INTEGER, &v);
	if (r < 0)
		return r;
	if (v.len == 0 || (v.p[0] & 0x80) != 0) /* empty or negative */
		return -EINVAL;
	if (v.len > 1 && v.p[0] == 0) {
		if ((v.p[1] & 0x80) == 0) /* needless leading zero */
			return -EINVAL;
		v.p++;
		v.len--;
	}
	if (v.len > 32)
		return -EINVAL;
	memset(out, 0, 32 - v.len);
	memcpy(out + 32 - v.len, v.p, v.len);
	return 0;
}

int crypto_sm2_cipher_der_to_parts(const uint8_t *der, size_t derlen, uint8_t x[32],
				   uint8_t y[32], uint8_t hash[32], uint8_t **ret_c,
				   size_t *ret_clen)
{
	if (der == NULL || x == NULL || y == NULL || hash == NULL || ret_c == NULL ||
	    ret_clen == NULL)
		return -EINVAL;
	struct der_cursor in = {der, derlen}, seq, h, c;
	uint8_t xb[32], yb[32];
	int r;
	if ((r = der_read(&in, DER_SEQUENCE, &seq)) < 0 ||
	    (r = der_read_uint256(&seq, xb)) < 0 || (r = der_read_uint256(&seq, yb)) < 0 ||
	    (r = der_read(&seq, DER_OCTET_STRING, &h)) < 0 ||
	    (r = der_read(&seq, DER_OCTET_STRING, &c)) < 0)
		return r;
	/* Nothing may follow, inside the SEQUENCE or after it. */
	if (in.len != 0 || seq.len != 0 || h.len != CRYPTO_SM3_LEN)
		return -EINVAL;
	uint8_t *cbuf = malloc(c.len > 0 ? c.len : 1);
	if (cbuf == NULL)
		return -ENOMEM;
	memcpy(cbuf, c.p, c.len);
	memcpy(x, xb, 32);
	memcpy(y, yb, 32);
	memcpy(hash, h.p, CRYPTO_SM3_LEN);
	*ret_c = cbuf;
	*ret_clen = c.len;
	return 0;
}

/* ---- a minimal DER writer ---- */

/* Size of the header (tag and length) of an element with n content bytes. */
static size_t der_header_size(size_t n)
{
	size_t k = 0;
	if (n < 0x80)
		return 2;
	for (; n > 0; n >>= 8)
		k++;
	return 2 + k;
}

/* Writes a header at o and returns the position after it. */
static uint8_t *der_put_header(uint8_t *o, uint8_t tag, size_t n)
{
	*o++ = tag;
	if (n < 0x80) {
		*o++ = (uint8_t)n;
		return o;
	}
	size_t k = der_header_size(n) - 2;
	*o++ = (uint8_t)(0x80 | k);
	for (size_t i = k; i > 0; i--)
		*o++ = (uint8_t)(n >> (8 * (i - 1)));
	return o;
}

/* The minimal INTEGER contents of the unsigned big-endian v: its significant
 * bytes from *ret_start, with a 0x00 in front when *ret_pad. Returns the
 * contents length. Zero is the single byte 0x00. */
static size_t der_uint256_body(const uint8_t v[32], const uint8_t **ret_start, bool *ret_pad)
{
	size_t i = 0;
	while (i < 31 && v[i] == 0)
		i++;
	*ret_start = v + i;
	*ret_pad = (v[i] & 0x80) != 0;
	return 32 - i + (*ret_pad ? 1 : 0);
}

static uint8_t *der_put_uint256(uint8_t *o, const uint8_t v[32])
{
	const uint8_t *start;
	bool pad;
	size_t n = der_uint256_body(v, &start, &pad);
	o = der_put_header(o, DER_INTEGER, n);
	if (pad)
		*o++ = 0x00;
	memcpy(o, start, n - (pad ? 1 : 0));
	return o + n - (pad ? 1 : 0);
}

int crypto_sm2_cipher_parts_to_der(const uint8_t x[32], const uint8_t y[32],
				   const uint8_t hash[32], const uint8_t *c, size_t clen,
				   uint8_t **ret_der, size_t *ret_len)
{
	if (x == NULL || y == NULL || hash == NULL || (c == NULL && clen > 0) ||
	    clen > DER_C2_MAX || ret_der == NULL || ret_len == NULL)
		return -EINVAL;
	const uint8_t *start;
	bool pad;
	size_t xn = der_uint256_body(x, &start, &pad), yn = der_uint256_body(y, &start, &pad);
	size_t body = der_header_size(xn) + xn + der_header_size(yn) + yn +
		      der_header_size(CRYPTO_SM3_LEN) + CRYPTO_SM3_LEN + der_header_size(clen) +
		      clen;
	size_t total = der_header_size(body) + body;
	uint8_t *der = malloc(total);
	if (der == NULL)
		return -ENOMEM;
	uint8_t *o = der_put_header(der, DER_SEQUENCE, body);
	o = der_put_uint256(o, x);
	o = der_put_uint256(o, y);
	o = der_put_header(o, DER_OCTET_STRING, CRYPTO_SM3_LEN);
	memcpy(o, hash, CRYPTO_SM3_LEN);
	o += CRYPTO_SM3_LEN;
	o = der_put_header(o, DER_OCTET_STRING, clen);
	if (clen > 0)
		memcpy(o, c, clen);
	*ret_der = der;
	*ret_len = total;
	return 0;
}
