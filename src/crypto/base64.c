/*
 * base64.c: standard base64 (RFC 4648 section 4) with padding.
 *
 * The decoder is strict so that every byte string has exactly one accepted
 * encoding: the length must be a multiple of 4, only the alphabet may occur,
 * '=' only as one or two final padding characters, and the unused low bits
 * of the last group must be zero. Anything else is -EINVAL.
 */
#include "crypto/crypto.h"

#include <errno.h>
#include <stdlib.h>

static const char b64_alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int crypto_base64_encode(const void *data, size_t len, char **ret_b64)
{
	const uint8_t *in = data;
	if (in == NULL && len > 0)
		return -EINVAL;
	if (len > (SIZE_MAX - 1) / 4 * 3 - 3)
		return -EINVAL;
	size_t outlen = (len + 2) / 3 * 4;
	char *out = malloc(outlen + 1);
	if (out == NULL)
		return -ENOMEM;
	char *o = out;
	size_t i = 0;
	for (; i + 3 <= len; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
		*o++ = b64_alphabet[v >> 18];
		*o++ = b64_alphabet[(v >> 12) & 63];
		*o++ = b64_alphabet[(v >> 6) & 63];
		*o++ = b64_alphabet[v & 63];
	}
	if (len - i == 1) {
		uint32_t v = (uint32_t)in[i] << 16;
		*o++ = b64_alphabet[v >> 18];
		*o++ = b64_alphabet[(v >> 12) & 63];
		*o++ = '=';
		*o++ = '=';
	} else if (len - i == 2) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
		*o++ = b64_alphabet[v >> 18];
		*o++ = b64_alphabet[(v >> 12) & 63];
		*o++ = b64_alphabet[(v >> 6) & 63];
		*o++ = '=';
	}
	*o = '\0';
	*ret_b64 = out;
	return 0;
}

/* The 6-bit value of an alphabet character, or -1 (locale-free). */
static int b64_value(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

int crypto_base64_decode(const char *b64, size_t b64len, uint8_t **ret_data, size_t *ret_len)
{
	if ((b64 == NULL && b64len > 0) || b64len % 4 != 0)
		return -EINVAL;
	size_t pad = 0;
	if (b64len > 0 && b64[b64len - 1] == '=')
		pad = (b64len > 1 && b64[b64len - 2] == '=') ? 2 : 1;
	size_t outlen = b64len / 4 * 3 - pad;
	/* malloc(0) may return NULL: always ask for at least one byte. */
	uint8_t *out = malloc(outlen > 0 ? outlen : 1);
	if (out == NULL)
		return -ENOMEM;

	size_t o = 0;
	for (size_t i = 0; i < b64len; i += 4) {
		bool last = i + 4 == b64len;
		size_t n = last ? 4 - pad : 4; /* significant characters */
		uint32_t v = 0;
		for (size_t j = 0; j < 4; j++) {
			int d = 0;
			if (j < n) {
				d = b64_value(b64[i + j]);
				if (d < 0)
					goto bad;
			}
			v = v << 6 | (uint32_t)d;
		}
		out[o++] = (uint8_t)(v >> 16);
		if (n >= 3)
			out[o++] = (uint8_t)(v >> 8);
		if (n == 4)
			out[o++] = (uint8_t)v;
		/* Non-canonical encodings leave bits set below the last byte. */
		if ((n == 2 && (v & 0xffff) != 0) || (n == 3 && (v & 0xff) != 0))
			goto bad;
	}
	*ret_data = out;
	*ret_len = outlen;
	return 0;
bad:
	/* The input may be a secret: do not leave part of it behind. */
	crypto_free_secret(out, outlen);
	return -EINVAL;
}
