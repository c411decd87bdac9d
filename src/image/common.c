/*
 * common.c: the parts of the image format that writer and reader share:
 * type names, big-endian integers and the key derivations of image.h.
 */
#include <errno.h>
#include <string.h>

#include "image/image_internal.h"
#include "proto/codes.h"

const char *image_type_name(int type)
{
	switch (type) {
	case IMAGE_VSM: return "vsm-image";
	case IMAGE_CHSM: return "chsm-image";
	case IMAGE_BACKUP: return "backup";
	case IMAGE_PACKAGE: return "package";
	default: return NULL;
	}
}

void image_put_be16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

void image_put_be32(uint8_t *p, uint32_t v)
{
	for (int i = 3; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

void image_put_be64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

uint16_t image_get_be16(const uint8_t *p)
{
	return (uint16_t)((unsigned)p[0] << 8 | p[1]);
}

uint32_t image_get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

uint64_t image_get_be64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

int image_derive_data_keys(const uint8_t dk[IMAGE_DATA_KEY_LEN], const char *image_id,
			   uint8_t k_enc[IMAGE_ENC_KEY_LEN], uint8_t k_mac[IMAGE_MAC_KEY_LEN])
{
	size_t n = strlen(image_id);
	int r = crypto_kdf_sm3(dk, IMAGE_DATA_KEY_LEN, "image-enc-v1", image_id, n, k_enc,
			       IMAGE_ENC_KEY_LEN);
	if (r == 0)
		r = crypto_kdf_sm3(dk, IMAGE_DATA_KEY_LEN, "image-mac-v1", image_id, n, k_mac,
				   IMAGE_MAC_KEY_LEN);
	return r;
}

int image_derive_wrap_key(const uint8_t domain_key[IMAGE_DOMAIN_KEY_LEN],
			  uint8_t k_wrap[IMAGE_WRAP_KEY_LEN])
{
	return crypto_kdf_sm3(domain_key, IMAGE_DOMAIN_KEY_LEN, "image-wrap-v1", NULL, 0, k_wrap,
			      IMAGE_WRAP_KEY_LEN);
}

int image_crypto_code(int err)
{
	return err == -ENOMEM ? GMT_E_INTERNAL : GMT_E_CRYPTO;
}

bool image_is_hex64(const char *s)
{
	if (!s || strlen(s) != CRYPTO_SM3_HEX_LEN)
		return false;
	for (const char *p = s; *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
			return false;
	return true;
}
