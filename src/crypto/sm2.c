/*
 * sm2.c: SM2 signatures (GB/T 32918.2) and public-key encryption
 * (GB/T 32918.4), the Z value, through OpenSSL's "SM2" provider algorithms.
 *
 * The signer ID is always set explicitly (OpenSSL 3.0's own default is the
 * empty ID); NULL means CRYPTO_SM2_DEFAULT_ID. Signatures are DER
 * SEQUENCE { r, s }; ciphertexts GM/T 0009 DER. Any verification or
 * decryption failure, including malformed input, is -EBADMSG.
 *
 * The crypto.h operations run on the module's own implementation
 * (sm2_fast.c) unless OPENCHSM_SM2_IMPL=openssl selects the OpenSSL one,
 * which stays available as crypto_sm2_ossl_* (the reference for tests and
 * the benchmark). Both give the same results and error codes.
 */
#include "crypto/crypto.h"
#include "crypto/crypto_internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* ENTL is the ID's length in bits on 16 bits; OpenSSL refuses 8191 bytes
 * too, so the limit is 8190 bytes. */
#define SM2_ID_MAX (0xffff / 8 - 1)

/* a, b, xG, yG of the SM2 curve (GB/T 32918.5), in the order Z hashes them. */
static const uint8_t sm2_curve_abg[4 * 32] = {
	/* a */
	0xff, 0xff, 0xff, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfc,
	/* b */
	0x28, 0xe9, 0xfa, 0x9e, 0x9d, 0x9f, 0x5e, 0x34, 0x4d, 0x5a, 0x9e, 0x4b, 0xcf, 0x65, 0x09, 0xa7,
	0xf3, 0x97, 0x89, 0xf5, 0x15, 0xab, 0x8f, 0x92, 0xdd, 0xbc, 0xbd, 0x41, 0x4d, 0x94, 0x0e, 0x93,
	/* xG */
	0x32, 0xc4, 0xae, 0x2c, 0x1f, 0x19, 0x81, 0x19, 0x5f, 0x99, 0x04, 0x46, 0x6a, 0x39, 0xc9, 0x94,
	0x8f, 0xe3, 0x0b, 0xbf, 0xf2, 0x66, 0x0b, 0xe1, 0x71, 0x5a, 0x45, 0x89, 0x33, 0x4c, 0x74, 0xc7,
	/* yG */
	0xbc, 0x37, 0x36, 0xa2, 0xf4, 0xf6, 0x77, 0x9c, 0x59, 0xbd, 0xce, 0xe3, 0x6b, 0x69, 0x21, 0x53,
	0xd0, 0xa9, 0x87, 0x7c, 0xc6, 0x2a, 0x47, 0x40, 0x02, 0xdf, 0x32, 0xe5, 0x21, 0x39, 0xf0, 0xa0,
};

/* Resolves a caller's ID (NULL: the default) and checks its length. */
static int sm2_id(const char *id, size_t *ret_len, const char **ret_id)
{
	if (id == NULL)
		id = CRYPTO_SM2_DEFAULT_ID;
	size_t len = strlen(id);
	if (len > SM2_ID_MAX)
		return -EINVAL;
	*ret_id = id;
	*ret_len = len;
	return 0;
}

int crypto_sm2_z(const crypto_sm2_key *key, const char *id, uint8_t out[CRYPTO_SM3_LEN])
{
	size_t idlen = 0;
	uint8_t point[CRYPTO_SM2_POINT_LEN];
	int r;
	if (key == NULL || out == NULL)
		return -EINVAL;
	if ((r = sm2_id(id, &idlen, &id)) < 0)
		return r;
	if (key->has_z_default && strcmp(id, CRYPTO_SM2_DEFAULT_ID) == 0) {
		memcpy(out, key->z_default, CRYPTO_SM3_LEN);
		return 0;
	}
	if ((r = crypto_sm2_public_point(key, point)) < 0)
		return r;
	const uint8_t entl[2] = {(uint8_t)((idlen * 8) >> 8), (uint8_t)(idlen * 8)};
	crypto_sm3_ctx *ctx = NULL;
	if ((r = crypto_sm3_new(&ctx)) < 0)
		return r;
	if ((r = crypto_sm3_update(ctx, entl, sizeof(entl))) == 0 &&
	    (r = crypto_sm3_update(ctx, id, idlen)) == 0 &&
	    (r = crypto_sm3_update(ctx, sm2_curve_abg, sizeof(sm2_curve_abg))) == 0 &&
	    (r = crypto_sm3_update(ctx, point + 1, sizeof(point) - 1)) == 0)
		r = crypto_sm3_final(ctx, out);
	crypto_sm3_free(ctx);
	return r;
}

/* A digest-sign or digest-verify context over SM3 with the signer ID set. */
static int sm2_md_init(const crypto_sm2_key *key, const char *id, bool sign,
		       EVP_MD_CTX **ret_mctx)
{
	size_t idlen = 0;
	int r = sm2_id(id, &idlen, &id);
	if (r < 0)
		return r;
	EVP_PKEY *pkey = NULL;
	if ((r = crypto_sm2_key_pkey(key, &pkey)) < 0)
		return r;
	EVP_MD_CTX *mctx = EVP_MD_CTX_new();
	if (mctx == NULL)
		return crypto_fail(-ENOMEM);
	EVP_PKEY_CTX *pctx = NULL; /* owned by mctx */
	int ok = sign ? EVP_DigestSignInit_ex(mctx, &pctx, "SM3", NULL, NULL, pkey, NULL)
		      : EVP_DigestVerifyInit_ex(mctx, &pctx, "SM3", NULL, NULL, pkey, NULL);
	if (ok != 1 || EVP_PKEY_CTX_set1_id(pctx, id, (int)idlen) != 1) {
		EVP_MD_CTX_free(mctx);
		return crypto_fail(-EIO);
	}
	*ret_mctx = mctx;
	return 0;
}

int crypto_sm2_ossl_sign(const crypto_sm2_key *key, const char *id, const void *msg, size_t len,
		    uint8_t sig[CRYPTO_SM2_SIG_DER_MAX], size_t *ret_siglen)
{
	if (key == NULL || !key->has_private || (msg == NULL && len > 0) || sig == NULL ||
	    ret_siglen == NULL)
		return -EINVAL;
	EVP_MD_CTX *mctx = NULL;
	int r = sm2_md_init(key, id, true, &mctx);
	if (r < 0)
		return r;
	uint8_t buf[CRYPTO_SM2_SIG_DER_MAX];
	size_t buflen = sizeof(buf);
	if (EVP_DigestSignUpdate(mctx, len > 0 ? msg : "", len) != 1 ||
	    EVP_DigestSignFinal(mctx, buf, &buflen) != 1)
		r = crypto_fail(-EIO);
	EVP_MD_CTX_free(mctx);
	if (r < 0)
		return r;
	memcpy(sig, buf, buflen);
	*ret_siglen = buflen;
	return 0;
}

int crypto_sm2_ossl_verify(const crypto_sm2_key *key, const char *id, const void *msg, size_t len,
		      const uint8_t *sig, size_t siglen)
{
	if (key == NULL || (msg == NULL && len > 0) || (sig == NULL && siglen > 0))
		return -EINVAL;
	if (siglen == 0 || siglen > CRYPTO_SM2_SIG_DER_MAX)
		return -EBADMSG;
	EVP_MD_CTX *mctx = NULL;
	int r = sm2_md_init(key, id, false, &mctx);
	if (r < 0)
		return r;
	if (EVP_DigestVerifyUpdate(mctx, len > 0 ? msg : "", len) != 1)
		r = crypto_fail(-EIO);
	else if (EVP_DigestVerifyFinal(mctx, sig, siglen) != 1)
		r = crypto_fail(-EBADMSG);
	EVP_MD_CTX_free(mctx);
	return r;
}

/* A pkey context for the raw (digest-free) SM2 operations; NULL when
 * memory is short. */
static EVP_PKEY_CTX *sm2_pkey_ctx(const crypto_sm2_key *key)
{
	EVP_PKEY *pkey = NULL;
	if (crypto_sm2_key_pkey(key, &pkey) < 0)
		return NULL;
	return EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
}

int crypto_sm2_ossl_sign_digest(const crypto_sm2_key *key, const uint8_t e[CRYPTO_SM3_LEN],
			   uint8_t sig[CRYPTO_SM2_SIG_DER_MAX], size_t *ret_siglen)
{
	if (key == NULL || !key->has_private || e == NULL || sig == NULL || ret_siglen == NULL)
		return -EINVAL;
	EVP_PKEY_CTX *ctx = sm2_pkey_ctx(key);
	if (ctx == NULL)
		return crypto_fail(-ENOMEM);
	uint8_t buf[CRYPTO_SM2_SIG_DER_MAX];
	size_t buflen = sizeof(buf);
	int r = 0;
	if (EVP_PKEY_sign_init(ctx) != 1 ||
	    EVP_PKEY_sign(ctx, buf, &buflen, e, CRYPTO_SM3_LEN) != 1)
		r = crypto_fail(-EIO);
	EVP_PKEY_CTX_free(ctx);
	if (r < 0)
		return r;
	memcpy(sig, buf, buflen);
	*ret_siglen = buflen;
	return 0;
}

int crypto_sm2_ossl_verify_digest(const crypto_sm2_key *key, const uint8_t e[CRYPTO_SM3_LEN],
			     const uint8_t *sig, size_t siglen)
{
	if (key == NULL || e == NULL || (sig == NULL && siglen > 0))
		return -EINVAL;
	if (siglen == 0 || siglen > CRYPTO_SM2_SIG_DER_MAX)
		return -EBADMSG;
	EVP_PKEY_CTX *ctx = sm2_pkey_ctx(key);
	if (ctx == NULL)
		return crypto_fail(-ENOMEM);
	int r = 0;
	if (EVP_PKEY_verify_init(ctx) != 1)
		r = crypto_fail(-EIO);
	else if (EVP_PKEY_verify(ctx, sig, siglen, e, CRYPTO_SM3_LEN) != 1)
		r = crypto_fail(-EBADMSG);
	EVP_PKEY_CTX_free(ctx);
	return r;
}

int crypto_sm2_ossl_encrypt(const crypto_sm2_key *key, const void *plain, size_t len,
		       uint8_t **ret_der, size_t *ret_len)
{
	if (key == NULL || plain == NULL || len == 0 || ret_der == NULL || ret_len == NULL)
		return -EINVAL;
	EVP_PKEY_CTX *ctx = sm2_pkey_ctx(key);
	if (ctx == NULL)
		return crypto_fail(-ENOMEM);
	uint8_t *out = NULL;
	size_t outlen = 0;
	int r = -EIO;
	if (EVP_PKEY_encrypt_init(ctx) != 1 ||
	    EVP_PKEY_encrypt(ctx, NULL, &outlen, plain, len) != 1)
		goto out;
	out = malloc(outlen);
	if (out == NULL) {
		r = -ENOMEM;
		goto out;
	}
	if (EVP_PKEY_encrypt(ctx, out, &outlen, plain, len) != 1)
		goto out;
	r = 0;
out:
	EVP_PKEY_CTX_free(ctx);
	if (r < 0) {
		free(out);
		return crypto_fail(r);
	}
	*ret_der = out;
	*ret_len = outlen;
	return 0;
}

int crypto_sm2_ossl_decrypt(const crypto_sm2_key *key, const uint8_t *der, size_t derlen,
		       uint8_t **ret_plain, size_t *ret_len)
{
	if (key == NULL || !key->has_private || (der == NULL && derlen > 0) ||
	    ret_plain == NULL || ret_len == NULL)
		return -EINVAL;
	EVP_PKEY_CTX *ctx = sm2_pkey_ctx(key);
	if (ctx == NULL)
		return crypto_fail(-ENOMEM);
	uint8_t *out = NULL;
	size_t cap = 0, outlen = 0;
	int r = -EIO;
	if (EVP_PKEY_decrypt_init(ctx) != 1)
		goto out;
	/* From here on every failure is the ciphertext's: malformed DER, a
	 * point off the curve, or a C3 that does not match. */
	r = -EBADMSG;
	if (derlen == 0 || EVP_PKEY_decrypt(ctx, NULL, &cap, der, derlen) != 1 || cap == 0)
		goto out;
	out = malloc(cap);
	if (out == NULL) {
		r = -ENOMEM;
		goto out;
	}
	outlen = cap;
	if (EVP_PKEY_decrypt(ctx, out, &outlen, der, derlen) != 1 || outlen > cap)
		goto out;
	r = 0;
out:
	EVP_PKEY_CTX_free(ctx);
	if (r < 0) {
		crypto_free_secret(out, cap);
		return crypto_fail(r);
	}
	*ret_plain = out;
	*ret_len = outlen;
	return 0;
}

/* ---- dispatch to the module's own implementation ---- */

static bool sm2_openssl_selected;
static pthread_once_t sm2_impl_once = PTHREAD_ONCE_INIT;

static void sm2_impl_init(void)
{
	const char *v = getenv("OPENCHSM_SM2_IMPL");
	sm2_openssl_selected = v != NULL && strcmp(v, "openssl") == 0;
}

bool crypto_sm2_use_openssl(void)
{
	pthread_once(&sm2_impl_once, sm2_impl_init);
	return sm2_openssl_selected;
}

/* e = SM3(Z || msg). */
static int sm2_digest(const crypto_sm2_key *key, const char *id, const void *msg, size_t len,
		      uint8_t e[CRYPTO_SM3_LEN])
{
	uint8_t z[CRYPTO_SM3_LEN];
	int r = crypto_sm2_z(key, id, z);
	if (r < 0)
		return r;
	crypto_sm3_ctx *ctx = NULL;
	if ((r = crypto_sm3_new(&ctx)) < 0)
		return r;
	if ((r = crypto_sm3_update(ctx, z, sizeof(z))) == 0 &&
	    (r = crypto_sm3_update(ctx, len > 0 ? msg : "", len)) == 0)
		r = crypto_sm3_final(ctx, e);
	crypto_sm3_free(ctx);
	return r;
}

/* Signs e with the nonce k (NULL: random) into DER. */
static int sm2_fast_sign_der(const crypto_sm2_key *key, const uint8_t e[CRYPTO_SM3_LEN],
			     const uint8_t *k, uint8_t sig[CRYPTO_SM2_SIG_DER_MAX],
			     size_t *ret_siglen)
{
	uint8_t rb[32], sb[32];
	int r = sm2_fast_sign(&key->fast, e, k, rb, sb);
	if (r < 0)
		return r;
	return crypto_sm2_sig_rs_to_der(rb, sb, sig, ret_siglen);
}

/* The key's verification table (public data): NULL at the key's first
 * verification, so that a key verified once pays nothing for it; built at
 * the second and kept until the key is freed. Two threads may build it at
 * once: the first to publish wins, the other frees its copy. NULL also
 * when memory is short (verification then runs without it). */
static const struct sm2_pub_table *sm2_verify_table(const crypto_sm2_key *ckey)
{
	/* Keys are only made by sm2_key_new (calloc), never const objects:
	 * the caches are written through atomics. */
	crypto_sm2_key *key = (crypto_sm2_key *)ckey;
	struct sm2_pub_table *tab = atomic_load_explicit(&key->pub_table, memory_order_acquire);
	if (tab != NULL)
		return tab;
	if (atomic_fetch_add_explicit(&key->verifies, 1, memory_order_relaxed) == 0)
		return NULL;
	tab = malloc(sizeof(*tab));
	if (tab == NULL)
		return NULL;
	sm2_ec_pub_table_fill(tab, &key->fast.pub);
	struct sm2_pub_table *expected = NULL;
	if (!atomic_compare_exchange_strong_explicit(&key->pub_table, &expected, tab,
						     memory_order_acq_rel, memory_order_acquire)) {
		free(tab);
		return expected;
	}
	return tab;
}

static int sm2_fast_verify_der(const crypto_sm2_key *key, const uint8_t e[CRYPTO_SM3_LEN],
			       const uint8_t *sig, size_t siglen)
{
	uint8_t rb[32], sb[32];
	if (crypto_sm2_sig_der_to_rs(sig, siglen, rb, sb) < 0)
		return -EBADMSG;
	return sm2_fast_verify(&key->fast, sm2_verify_table(key), e, rb, sb);
}

int crypto_sm2_sign(const crypto_sm2_key *key, const char *id, const void *msg, size_t len,
		    uint8_t sig[CRYPTO_SM2_SIG_DER_MAX], size_t *ret_siglen)
{
	if (crypto_sm2_use_openssl())
		return crypto_sm2_ossl_sign(key, id, msg, len, sig, ret_siglen);
	if (key == NULL || !key->has_private || (msg == NULL && len > 0) || sig == NULL ||
	    ret_siglen == NULL)
		return -EINVAL;
	uint8_t e[CRYPTO_SM3_LEN];
	int r = sm2_digest(key, id, msg, len, e);
	if (r < 0)
		return r;
	return sm2_fast_sign_der(key, e, NULL, sig, ret_siglen);
}

int crypto_sm2_verify(const crypto_sm2_key *key, const char *id, const void *msg, size_t len,
		      const uint8_t *sig, size_t siglen)
{
	if (crypto_sm2_use_openssl())
		return crypto_sm2_ossl_verify(key, id, msg, len, sig, siglen);
	if (key == NULL || (msg == NULL && len > 0) || (sig == NULL && siglen > 0))
		return -EINVAL;
	if (siglen == 0 || siglen > CRYPTO_SM2_SIG_DER_MAX)
		return -EBADMSG;
	uint8_t e[CRYPTO_SM3_LEN];
	int r = sm2_digest(key, id, msg, len, e);
	if (r < 0)
		return r;
	return sm2_fast_verify_der(key, e, sig, siglen);
}

int crypto_sm2_sign_digest(const crypto_sm2_key *key, const uint8_t e[CRYPTO_SM3_LEN],
			   uint8_t sig[CRYPTO_SM2_SIG_DER_MAX], size_t *ret_siglen)
{
	if (crypto_sm2_use_openssl())
		return crypto_sm2_ossl_sign_digest(key, e, sig, ret_siglen);
	if (key == NULL || !key->has_private || e == NULL || sig == NULL || ret_siglen == NULL)
		return -EINVAL;
	return sm2_fast_sign_der(key, e, NULL, sig, ret_siglen);
}

int crypto_sm2_sign_digest_k(const crypto_sm2_key *key, const uint8_t e[CRYPTO_SM3_LEN],
			     const uint8_t k[CRYPTO_SM2_SCALAR_LEN],
			     uint8_t sig[CRYPTO_SM2_SIG_DER_MAX], size_t *ret_siglen)
{
	if (key == NULL || !key->has_private || e == NULL || k == NULL || sig == NULL ||
	    ret_siglen == NULL)
		return -EINVAL;
	return sm2_fast_sign_der(key, e, k, sig, ret_siglen);
}

int crypto_sm2_verify_digest(const crypto_sm2_key *key, const uint8_t e[CRYPTO_SM3_LEN],
			     const uint8_t *sig, size_t siglen)
{
	if (crypto_sm2_use_openssl())
		return crypto_sm2_ossl_verify_digest(key, e, sig, siglen);
	if (key == NULL || e == NULL || (sig == NULL && siglen > 0))
		return -EINVAL;
	if (siglen == 0 || siglen > CRYPTO_SM2_SIG_DER_MAX)
		return -EBADMSG;
	return sm2_fast_verify_der(key, e, sig, siglen);
}

int crypto_sm2_encrypt_k(const crypto_sm2_key *key, const void *plain, size_t len,
			 const uint8_t *k, uint8_t **ret_der, size_t *ret_len)
{
	if (key == NULL || plain == NULL || len == 0 || ret_der == NULL || ret_len == NULL)
		return -EINVAL;
	uint8_t x[32], y[32], hash[32];
	uint8_t *c = malloc(len);
	if (c == NULL)
		return -ENOMEM;
	int r = sm2_fast_encrypt(&key->fast, plain, len, k, x, y, hash, c);
	if (r == 0)
		r = crypto_sm2_cipher_parts_to_der(x, y, hash, c, len, ret_der, ret_len);
	free(c); /* C2 is public */
	return r;
}

int crypto_sm2_encrypt(const crypto_sm2_key *key, const void *plain, size_t len,
		       uint8_t **ret_der, size_t *ret_len)
{
	if (crypto_sm2_use_openssl())
		return crypto_sm2_ossl_encrypt(key, plain, len, ret_der, ret_len);
	return crypto_sm2_encrypt_k(key, plain, len, NULL, ret_der, ret_len);
}

int crypto_sm2_decrypt(const crypto_sm2_key *key, const uint8_t *der, size_t derlen,
		       uint8_t **ret_plain, size_t *ret_len)
{
	if (crypto_sm2_use_openssl())
		return crypto_sm2_ossl_decrypt(key, der, derlen, ret_plain, ret_len);
	if (key == NULL || !key->has_private || (der == NULL && derlen > 0) ||
	    ret_plain == NULL || ret_len == NULL)
		return -EINVAL;
	uint8_t x[32], y[32], hash[32];
	uint8_t *c = NULL;
	size_t clen = 0;
	if (derlen == 0 || crypto_sm2_cipher_der_to_parts(der, derlen, x, y, hash, &c, &clen) < 0)
		return -EBADMSG;
	uint8_t *plain = clen > 0 ? malloc(clen) : NULL;
	int r = -EBADMSG;
	if (clen > 0 && plain == NULL)
		r = -ENOMEM;
	else if (clen > 0)
		r = sm2_fast_decrypt(&key->fast, x, y, hash, c, clen, plain);
	free(c);
	if (r < 0) {
		free(plain); /* wiped by sm2_fast_decrypt on failure */
		return r;
	}
	*ret_plain = plain;
	*ret_len = clen;
	return 0;
}
