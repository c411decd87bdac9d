/*
 * sm2_key.c: SM2 keys: generation, PEM import and export, raw public points
 * and private scalars, fingerprints.
 *
 * Every key this file hands out is an OpenSSL "SM2" key on the SM2 curve
 * with its public point present (a public key from a raw point gets its
 * OpenSSL key at first need: crypto_sm2_key_pkey). Keys from outside (PEM,
 * points, scalars) are validated before use: a public point must lie on
 * the curve, a private key must match its public point and have d in
 * [1, n-2]. Keys of any other
 * type or curve are refused with -EINVAL. Encrypted PEM is refused (there is
 * no passphrase prompt).
 *
 * Every key also carries its raw form (struct sm2_fast_key) for sm2_fast.c:
 * the public point is validated again there (coordinates < p, on the
 * curve), and for a private key d * G is recomputed and must equal the
 * public point. Generation and keys from a scalar use sm2_fast.c unless
 * OPENCHSM_SM2_IMPL=openssl selects OpenSSL.
 */
#include "crypto/crypto.h"
#include "crypto/crypto_internal.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/obj_mac.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>

/* Builds an "SM2" key from OSSL_PARAMs (selection: EVP_PKEY_PUBLIC_KEY or
 * EVP_PKEY_KEYPAIR). */
static int sm2_fromdata(OSSL_PARAM *params, int selection, EVP_PKEY **ret_pkey)
{
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "SM2", NULL);
	EVP_PKEY *pkey = NULL;
	if (ctx == NULL)
		return crypto_fail(-EIO);
	int ok = EVP_PKEY_fromdata_init(ctx) == 1 &&
		 EVP_PKEY_fromdata(ctx, &pkey, selection, params) == 1;
	EVP_PKEY_CTX_free(ctx);
	if (!ok)
		return crypto_fail(-EINVAL);
	*ret_pkey = pkey;
	return 0;
}

static bool pkey_has_private(EVP_PKEY *pkey)
{
	BIGNUM *d = NULL;
	bool has = EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_PRIV_KEY, &d) == 1;
	BN_clear_free(d);
	ERR_clear_error();
	return has;
}

static bool pkey_on_sm2_curve(EVP_PKEY *pkey)
{
	char group[32];
	size_t len = 0;
	if (EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group,
					   sizeof(group), &len) != 1) {
		ERR_clear_error();
		return false;
	}
	return strcmp(group, "SM2") == 0;
}

/* Builds an "SM2" key from the public point and, when d is not NULL, the
 * private scalar. */
static int sm2_build(const uint8_t point[CRYPTO_SM2_POINT_LEN], const BIGNUM *d,
		     EVP_PKEY **ret_pkey)
{
	OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
	OSSL_PARAM *params = NULL;
	int r = -ENOMEM;
	if (bld == NULL)
		goto out;
	if (OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "SM2", 0) != 1 ||
	    OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point,
					     CRYPTO_SM2_POINT_LEN) != 1 ||
	    (d != NULL && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_PRIV_KEY, d) != 1) ||
	    (params = OSSL_PARAM_BLD_to_param(bld)) == NULL) {
		r = crypto_fail(-EIO);
		goto out;
	}
	r = sm2_fromdata(params, d != NULL ? EVP_PKEY_KEYPAIR : EVP_PKEY_PUBLIC_KEY, ret_pkey);
out:
	/* A secure BIGNUM d lands in the secure part, which is cleared. */
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	return r;
}

/* Fills key->fast from key->pkey: the public point, validated, and for a
 * private key d, checked against the point. */
static int sm2_key_cache(crypto_sm2_key *key)
{
	BIGNUM *x = NULL, *y = NULL, *d = NULL;
	uint8_t point[CRYPTO_SM2_POINT_LEN], db[CRYPTO_SM2_SCALAR_LEN];
	int r = -EIO;
	EVP_PKEY *pkey = atomic_load(&key->pkey);
	if (EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_EC_PUB_X, &x) != 1 ||
	    EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_EC_PUB_Y, &y) != 1 ||
	    BN_bn2binpad(x, point + 1, 32) != 32 || BN_bn2binpad(y, point + 33, 32) != 32)
		goto out;
	point[0] = 0x04;
	if (!key->has_private) {
		r = sm2_fast_key_set_public(&key->fast, point);
		goto out;
	}
	if (EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_PRIV_KEY, &d) != 1 ||
	    BN_bn2binpad(d, db, sizeof(db)) != (int)sizeof(db))
		goto out;
	r = sm2_fast_key_set_private(&key->fast, db);
	if (r == 0 && memcmp(key->fast.point, point, sizeof(point)) != 0)
		r = -EINVAL;
out:
	crypto_wipe(db, sizeof(db));
	BN_clear_free(d);
	BN_free(x);
	BN_free(y);
	return r < 0 ? crypto_fail(r) : 0;
}

/* Makes a key of pkey (owned from here on, freed on failure; NULL for a
 * public key of fast, made at first need) with the raw form fast, or
 * with the raw form read from pkey when fast is NULL. */
static int sm2_key_new(EVP_PKEY *pkey, bool priv, const struct sm2_fast_key *fast,
		       crypto_sm2_key **ret_key)
{
	int r;
	crypto_sm2_key *key = calloc(1, sizeof(*key));
	if (key == NULL) {
		EVP_PKEY_free(pkey);
		return -ENOMEM;
	}
	atomic_init(&key->pkey, pkey);
	key->has_private = priv;
	atomic_init(&key->verifies, 0);
	atomic_init(&key->pub_table, NULL);
	atomic_init(&key->extra_refs, 0);
	if (fast != NULL) {
		key->fast = *fast;
	} else if ((r = sm2_key_cache(key)) < 0) {
		crypto_sm2_key_free(key);
		return r;
	}
	if ((r = crypto_sm2_z(key, NULL, key->z_default)) < 0) {
		crypto_sm2_key_free(key);
		return r;
	}
	key->has_z_default = true;
	*ret_key = key;
	return 0;
}

int crypto_sm2_key_pkey(const crypto_sm2_key *ckey, EVP_PKEY **ret_pkey)
{
	/* Keys are only made by sm2_key_new (calloc), never const objects:
	 * the OpenSSL key is set once, through an atomic. */
	crypto_sm2_key *key = (crypto_sm2_key *)ckey;
	EVP_PKEY *pkey = atomic_load_explicit(&key->pkey, memory_order_acquire);
	if (pkey == NULL) {
		/* only public keys from a raw point, already validated */
		EVP_PKEY *made = NULL;
		int r = sm2_build(key->fast.point, NULL, &made);
		if (r < 0)
			return r;
		if (atomic_compare_exchange_strong_explicit(&key->pkey, &pkey, made,
							    memory_order_acq_rel,
							    memory_order_acquire))
			pkey = made;
		else
			EVP_PKEY_free(made); /* another thread's is kept */
	}
	*ret_pkey = pkey;
	return 0;
}

/* Takes ownership of pkey (freeing it on failure) and makes a key of it.
 * check: run OpenSSL's key validation (for keys from outside). fast: the
 * raw form when the caller computed it already, else NULL. */
static int sm2_key_adopt(EVP_PKEY *pkey, bool check, const struct sm2_fast_key *fast,
			 crypto_sm2_key **ret_key)
{
	int r = -EINVAL;
	/* OpenSSL 3.0 decodes every key on the SM2 curve as "SM2" (PKCS#8,
	 * SEC1 "SM2/EC PRIVATE KEY", SPKI, named or explicit parameters);
	 * an "EC" key is one on another curve, or one made the wrong way. */
	if (!EVP_PKEY_is_a(pkey, "SM2") || !pkey_on_sm2_curve(pkey))
		goto fail;
	bool priv = pkey_has_private(pkey);
	if (check) {
		EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
		if (ctx == NULL) {
			r = -ENOMEM;
			goto fail;
		}
		int ok = priv ? EVP_PKEY_check(ctx) : EVP_PKEY_public_check(ctx);
		EVP_PKEY_CTX_free(ctx);
		if (ok != 1) {
			r = -EINVAL;
			goto fail;
		}
	}
	return sm2_key_new(pkey, priv, fast, ret_key);
fail:
	EVP_PKEY_free(pkey);
	return crypto_fail(r);
}

int crypto_sm2_ossl_generate(crypto_sm2_key **ret_key)
{
	if (ret_key == NULL)
		return -EINVAL;
	EVP_PKEY *pkey = EVP_PKEY_Q_keygen(NULL, NULL, "SM2");
	if (pkey == NULL)
		return crypto_fail(-EIO);
	return sm2_key_adopt(pkey, false, NULL, ret_key);
}

/* Makes a key pair of the raw key fk (whose d is known valid). */
static int sm2_key_from_fast(const struct sm2_fast_key *fk, crypto_sm2_key **ret_key)
{
	uint8_t db[CRYPTO_SM2_SCALAR_LEN];
	sm2_u256_to_be(db, &fk->d);
	BIGNUM *d = BN_secure_new();
	EVP_PKEY *pkey = NULL;
	int r = -ENOMEM;
	if (d != NULL) {
		r = -EIO;
		if (BN_bin2bn(db, sizeof(db), d) != NULL)
			r = sm2_build(fk->point, d, &pkey);
	}
	BN_clear_free(d);
	crypto_wipe(db, sizeof(db));
	if (r < 0)
		return crypto_fail(r);
	return sm2_key_adopt(pkey, false, fk, ret_key);
}

int crypto_sm2_generate(crypto_sm2_key **ret_key)
{
	if (ret_key == NULL)
		return -EINVAL;
	if (crypto_sm2_use_openssl())
		return crypto_sm2_ossl_generate(ret_key);
	struct sm2_fast_key fk;
	int r = sm2_fast_key_generate(&fk);
	if (r == 0)
		r = sm2_key_from_fast(&fk, ret_key);
	sm2_fast_key_wipe(&fk);
	return r;
}

crypto_sm2_key *crypto_sm2_key_ref(crypto_sm2_key *key)
{
	if (key != NULL)
		atomic_fetch_add(&key->extra_refs, 1);
	return key;
}

void crypto_sm2_key_free(crypto_sm2_key *key)
{
	if (key == NULL || atomic_fetch_sub(&key->extra_refs, 1) > 0)
		return;
	EVP_PKEY_free(atomic_load(&key->pkey)); /* OpenSSL clears the private scalar */
	sm2_fast_key_wipe(&key->fast);
	free(atomic_load(&key->pub_table)); /* public data */
	free(key);
}

bool crypto_sm2_key_has_private(const crypto_sm2_key *key)
{
	return key != NULL && key->has_private;
}

/* Never prompts: an encrypted PEM fails to load. */
static int no_password(char *buf, int size, int rwflag, void *u)
{
	return -1;
}

int crypto_sm2_load_private_pem(const char *pem, size_t len, crypto_sm2_key **ret_key)
{
	if (pem == NULL || len == 0 || len > INT_MAX)
		return -EINVAL;
	BIO *bio = BIO_new_mem_buf(pem, (int)len);
	if (bio == NULL)
		return crypto_fail(-ENOMEM);
	EVP_PKEY *pkey = PEM_read_bio_PrivateKey_ex(bio, NULL, no_password, NULL, NULL, NULL);
	BIO_free(bio);
	if (pkey == NULL)
		return crypto_fail(-EINVAL);
	if (!pkey_has_private(pkey)) {
		EVP_PKEY_free(pkey);
		return -EINVAL;
	}
	return sm2_key_adopt(pkey, true, NULL, ret_key);
}

int crypto_sm2_load_public_pem(const char *pem, size_t len, crypto_sm2_key **ret_key)
{
	if (pem == NULL || len == 0 || len > INT_MAX)
		return -EINVAL;
	BIO *bio = BIO_new_mem_buf(pem, (int)len);
	if (bio == NULL)
		return crypto_fail(-ENOMEM);
	EVP_PKEY *pkey = PEM_read_bio_PUBKEY_ex(bio, NULL, no_password, NULL, NULL, NULL);
	BIO_free(bio);
	if (pkey == NULL)
		return crypto_fail(-EINVAL);
	return sm2_key_adopt(pkey, true, NULL, ret_key);
}

/* Copies a memory BIO's contents into a NUL-terminated malloc'ed string. */
static int bio_to_string(BIO *bio, char **ret_str, size_t *ret_len)
{
	char *data = NULL;
	long n = BIO_get_mem_data(bio, &data);
	if (n <= 0 || data == NULL)
		return -EIO;
	char *s = malloc((size_t)n + 1);
	if (s == NULL)
		return -ENOMEM;
	memcpy(s, data, (size_t)n);
	s[n] = '\0';
	*ret_str = s;
	*ret_len = (size_t)n;
	return 0;
}

int crypto_sm2_private_pem(const crypto_sm2_key *key, char **ret_pem, size_t *ret_len)
{
	if (key == NULL || !key->has_private)
		return -EINVAL;
	/* A secure-memory BIO wipes its buffer when it grows and when freed. */
	BIO *bio = BIO_new(BIO_s_secmem());
	if (bio == NULL)
		return crypto_fail(-ENOMEM);
	int r = -EIO;
	if (PEM_write_bio_PrivateKey(bio, atomic_load(&key->pkey), NULL, NULL, 0, NULL, NULL) == 1)
		r = bio_to_string(bio, ret_pem, ret_len);
	BIO_free(bio);
	return r < 0 ? crypto_fail(r) : 0;
}

int crypto_sm2_public_pem(const crypto_sm2_key *key, char **ret_pem, size_t *ret_len)
{
	if (key == NULL)
		return -EINVAL;
	EVP_PKEY *pkey = NULL;
	int r = crypto_sm2_key_pkey(key, &pkey);
	if (r < 0)
		return r;
	BIO *bio = BIO_new(BIO_s_mem());
	if (bio == NULL)
		return crypto_fail(-ENOMEM);
	r = -EIO;
	if (PEM_write_bio_PUBKEY(bio, pkey) == 1)
		r = bio_to_string(bio, ret_pem, ret_len);
	BIO_free(bio);
	return r < 0 ? crypto_fail(r) : 0;
}

int crypto_sm2_public_point(const crypto_sm2_key *key, uint8_t out[CRYPTO_SM2_POINT_LEN])
{
	if (key == NULL || out == NULL)
		return -EINVAL;
	/* Cached from the coordinates when the key was made: the result does
	 * not depend on the point conversion form the key was loaded with. */
	memcpy(out, key->fast.point, CRYPTO_SM2_POINT_LEN);
	return 0;
}

int crypto_sm2_from_public_point(const uint8_t point[CRYPTO_SM2_POINT_LEN],
				 crypto_sm2_key **ret_key)
{
	if (point == NULL || point[0] != 0x04 || ret_key == NULL)
		return -EINVAL;
	/* The own validation (coordinates below p, on the curve; with
	 * cofactor 1 that makes a point of order n) replaces OpenSSL's public
	 * key check, which costs a scalar multiplication, and the OpenSSL key
	 * (about 100 us more) is made only when something needs it. */
	if (!crypto_sm2_use_openssl()) {
		struct sm2_fast_key fk;
		if (sm2_fast_key_set_public(&fk, point) < 0)
			return -EINVAL;
		return sm2_key_new(NULL, false, &fk, ret_key);
	}
	EVP_PKEY *pkey = NULL;
	int r = sm2_build(point, NULL, &pkey);
	if (r < 0)
		return r;
	return sm2_key_adopt(pkey, true, NULL, ret_key);
}

int crypto_sm2_private_scalar(const crypto_sm2_key *key, uint8_t out[CRYPTO_SM2_SCALAR_LEN])
{
	if (key == NULL || !key->has_private || out == NULL)
		return -EINVAL;
	sm2_u256_to_be(out, &key->fast.d);
	return 0;
}

int crypto_sm2_from_private_scalar(const uint8_t d_bytes[CRYPTO_SM2_SCALAR_LEN],
				   crypto_sm2_key **ret_key)
{
	if (d_bytes == NULL || ret_key == NULL)
		return -EINVAL;
	if (!crypto_sm2_use_openssl()) {
		struct sm2_fast_key fk;
		int r = sm2_fast_key_set_private(&fk, d_bytes);
		if (r == 0)
			r = sm2_key_from_fast(&fk, ret_key);
		sm2_fast_key_wipe(&fk);
		return r;
	}
	EC_GROUP *group = EC_GROUP_new_by_curve_name(NID_sm2);
	BN_CTX *bnctx = BN_CTX_secure_new();
	BIGNUM *d = BN_secure_new(), *limit = BN_new();
	EC_POINT *pub = group != NULL ? EC_POINT_new(group) : NULL;
	EVP_PKEY *pkey = NULL;
	uint8_t point[CRYPTO_SM2_POINT_LEN];
	int r = -ENOMEM;
	if (group == NULL || bnctx == NULL || d == NULL || limit == NULL || pub == NULL)
		goto out;
	r = -EIO;
	/* GB/T 32918.1: d in [1, n-2]. */
	if (BN_bin2bn(d_bytes, CRYPTO_SM2_SCALAR_LEN, d) == NULL ||
	    BN_copy(limit, EC_GROUP_get0_order(group)) == NULL || BN_sub_word(limit, 1) != 1)
		goto out;
	if (BN_is_zero(d) || BN_cmp(d, limit) >= 0) {
		r = -EINVAL;
		goto out;
	}
	BN_set_flags(d, BN_FLG_CONSTTIME);
	if (EC_POINT_mul(group, pub, d, NULL, NULL, bnctx) != 1 ||
	    EC_POINT_point2oct(group, pub, POINT_CONVERSION_UNCOMPRESSED, point, sizeof(point),
			       bnctx) != sizeof(point))
		goto out;
	r = sm2_build(point, d, &pkey);
out:
	EC_POINT_free(pub);
	BN_clear_free(d);
	BN_free(limit);
	BN_CTX_free(bnctx);
	EC_GROUP_free(group);
	if (r < 0)
		return crypto_fail(r);
	return sm2_key_adopt(pkey, false, NULL, ret_key);
}

int crypto_sm2_fingerprint(const crypto_sm2_key *key, char out[CRYPTO_SM3_HEX_LEN + 1])
{
	uint8_t point[CRYPTO_SM2_POINT_LEN];
	int r = crypto_sm2_public_point(key, point);
	if (r < 0)
		return r;
	return crypto_sm3_hex(point, sizeof(point), out);
}
