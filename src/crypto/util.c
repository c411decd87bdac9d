/*
 * util.c: randomness, secret hygiene, error strings and the per-process
 * cache of fetched OpenSSL algorithms (see crypto_internal.h).
 */
#include "crypto/crypto.h"
#include "crypto/crypto_internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>

/* Written once under pthread_once, read-only afterwards. */
static struct {
	EVP_MD *sm3;
	EVP_CIPHER *sm4_ecb, *sm4_cbc, *sm4_ctr;
	EVP_MAC *hmac;
	EVP_KDF *pbkdf2;
} algs;
static pthread_once_t algs_once = PTHREAD_ONCE_INIT;

static void algs_fetch(void)
{
	algs.sm3 = EVP_MD_fetch(NULL, "SM3", NULL);
	algs.sm4_ecb = EVP_CIPHER_fetch(NULL, "SM4-ECB", NULL);
	algs.sm4_cbc = EVP_CIPHER_fetch(NULL, "SM4-CBC", NULL);
	algs.sm4_ctr = EVP_CIPHER_fetch(NULL, "SM4-CTR", NULL);
	algs.hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	algs.pbkdf2 = EVP_KDF_fetch(NULL, "PBKDF2", NULL);
	ERR_clear_error();
}

#define ALG_GETTER(type, name)                            \
	type *crypto_alg_##name(void)                     \
	{                                                 \
		pthread_once(&algs_once, algs_fetch);     \
		return algs.name;                         \
	}
ALG_GETTER(const EVP_MD, sm3)
ALG_GETTER(const EVP_CIPHER, sm4_ecb)
ALG_GETTER(const EVP_CIPHER, sm4_cbc)
ALG_GETTER(const EVP_CIPHER, sm4_ctr)
ALG_GETTER(EVP_MAC, hmac)
ALG_GETTER(EVP_KDF, pbkdf2)

int crypto_fail(int err)
{
	ERR_clear_error();
	return err;
}

int crypto_random(void *buf, size_t len)
{
	uint8_t *p = buf;
	while (len > 0) {
		size_t n = len < CRYPTO_CHUNK_MAX ? len : CRYPTO_CHUNK_MAX;
		if (RAND_bytes(p, (int)n) != 1)
			return crypto_fail(-EIO);
		p += n;
		len -= n;
	}
	return 0;
}

void crypto_wipe(void *p, size_t len)
{
	if (p != NULL && len > 0)
		OPENSSL_cleanse(p, len);
}

void crypto_free_secret(void *p, size_t len)
{
	if (p == NULL)
		return;
	crypto_wipe(p, len);
	free(p);
}

bool crypto_memeq(const void *a, const void *b, size_t len)
{
	if (len == 0)
		return true;
	return CRYPTO_memcmp(a, b, len) == 0;
}

const char *crypto_strerror(int err)
{
	static const struct {
		int err;
		const char *text;
	} table[] = {
		{0, "success"},
		{-EINVAL, "malformed input"},
		{-EBADMSG, "verification or decryption failed"},
		{-ENOMEM, "out of memory"},
		{-EIO, "internal cryptographic library failure"},
	};
	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
		if (table[i].err == err)
			return table[i].text;
	return "unknown crypto error";
}
