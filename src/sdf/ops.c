/*
 * ops.c: the SDF and SDFX calls: each checks its arguments, sends one
 * request of docs/vsm-protocol.md and converts the answer into the GM/T
 * 0018 structures; hashing runs in the library.
 *
 * Guarantees: arguments the protocol would refuse are refused here with
 * SDR_INARGERR / SDR_ALGNOTSUPPORT before anything is sent; outputs are
 * written only when the call succeeds; an answer whose fields are not what
 * the protocol says (wrong sizes, extra bytes) is SDR_COMMFAIL and closes
 * the session; passwords and key material pass only through buffers that
 * are wiped. Nothing here logs.
 */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/crypto.h"
#include "sdf/session.h"

#define SM4_KEY_BITS     128
#define SM4_KEY_LEN      16
#define SM2_KEY_BITS     256
#define MAX_SM2_PLAIN    136   /* EXTERNAL_ENCRYPT / INTERNAL_DECRYPT data */
#define MAX_ISK_CIPHER   256   /* IMPORT_KEY_WITH_ISK cipher */
#define MAX_DEC_CIPHER   264   /* INTERNAL_DECRYPT cipher */
#define MAX_SYM_DATA     (1024 * 1024)
#define MAX_RANDOM       65536
#define KEY_INFO_WIRE    20    /* u32 type, u32 index, u32 has_password, u64 created */

/* Session key handles are the server's u32 handle plus one, so that no
 * valid handle is NULL. */
static int handle_out(uint32_t id, void **ret)
{
	if ((uint64_t)id + 1 > (uint64_t)UINTPTR_MAX)
		return -ERANGE;
	*ret = (void *)(uintptr_t)((uint64_t)id + 1);
	return 0;
}

static int handle_in(void *h, uint32_t *ret)
{
	uintptr_t v = (uintptr_t)h;
	if (v == 0 || (uint64_t)(v - 1) > UINT32_MAX)
		return -EINVAL;
	*ret = (uint32_t)(v - 1);
	return 0;
}

/* Password bytes of a NUL-terminated string (NULL = none). */
static int password_len(const char *p, size_t *ret)
{
	size_t n = p ? strnlen(p, VSMP_MAX_PASSWORD + 1) : 0;
	if (n > VSMP_MAX_PASSWORD)
		return -EINVAL;
	*ret = n;
	return 0;
}

int SDF_GetDeviceInfo(void *hSessionHandle, DEVICEINFO *pstDeviceInfo)
{
	if (!pstDeviceInfo)
		return SDR_INARGERR;
	struct vsmp_writer w;
	struct sdf_reply rp;
	vsmp_writer_begin(&w, VSMP_DEVICE_INFO, 0, 0);
	int rc = sdf_exchange(hSessionHandle, &w, &rp);
	if (rc != SDR_OK)
		return rc;
	DEVICEINFO info;
	memset(&info, 0, sizeof(info));
	size_t n1, n2, n3;
	const uint8_t *issuer = vsmp_get_bytes(&rp.r, sizeof(info.IssuerName), &n1);
	const uint8_t *name = vsmp_get_bytes(&rp.r, sizeof(info.DeviceName), &n2);
	const uint8_t *serial = vsmp_get_bytes(&rp.r, sizeof(info.DeviceSerial), &n3);
	info.DeviceVersion = vsmp_get_u32(&rp.r);
	info.StandardVersion = vsmp_get_u32(&rp.r);
	info.AsymAlgAbility[0] = vsmp_get_u32(&rp.r);
	info.AsymAlgAbility[1] = vsmp_get_u32(&rp.r);
	info.SymAlgAbility = vsmp_get_u32(&rp.r);
	info.HashAlgAbility = vsmp_get_u32(&rp.r);
	info.BufferSize = vsmp_get_u32(&rp.r);
	if ((rc = reply_check(&rp, true)) == SDR_OK) {
		memcpy(info.IssuerName, issuer, n1);
		memcpy(info.DeviceName, name, n2);
		memcpy(info.DeviceSerial, serial, n3);
		*pstDeviceInfo = info;
	}
	reply_free(&rp);
	return rc;
}

/* Reads one bytes field of exactly len bytes into out. */
static int exchange_bytes(void *hSessionHandle, struct vsmp_writer *w, void *out, size_t len)
{
	struct sdf_reply rp;
	int rc = sdf_exchange(hSessionHandle, w, &rp);
	if (rc != SDR_OK)
		return rc;
	size_t n;
	const uint8_t *p = vsmp_get_bytes(&rp.r, len, &n);
	if ((rc = reply_check(&rp, n == len)) == SDR_OK)
		memcpy(out, p, n);
	reply_free(&rp);
	return rc;
}

int SDF_GenerateRandom(void *hSessionHandle, unsigned int uiLength, unsigned char *pucRandom)
{
	if (!pucRandom || uiLength == 0 || uiLength > MAX_RANDOM)
		return SDR_INARGERR;
	struct vsmp_writer w;
	vsmp_writer_begin(&w, VSMP_GENERATE_RANDOM, 0, 0);
	vsmp_put_u32(&w, uiLength);
	return exchange_bytes(hSessionHandle, &w, pucRandom, uiLength);
}

int SDF_GetPrivateKeyAccessRight(void *hSessionHandle, unsigned int uiKeyIndex,
				 unsigned char *pucPassword, unsigned int uiPwdLength)
{
	if (uiPwdLength > VSMP_MAX_PASSWORD || (uiPwdLength && !pucPassword))
		return SDR_INARGERR;
	struct vsmp_writer w;
	vsmp_writer_begin(&w, VSMP_GET_ACCESS_RIGHT, 0, 0);
	vsmp_put_u32(&w, uiKeyIndex);
	vsmp_put_bytes(&w, pucPassword, uiPwdLength);
	return sdf_exchange_empty(hSessionHandle, &w);
}

/* A request with one u32 field and an empty answer. */
static int call_u32(void *hSessionHandle, uint16_t type, uint32_t v)
{
	struct vsmp_writer w;
	vsmp_writer_begin(&w, type, 0, 0);
	vsmp_put_u32(&w, v);
	return sdf_exchange_empty(hSessionHandle, &w);
}

int SDF_ReleasePrivateKeyAccessRight(void *hSessionHandle, unsigned int uiKeyIndex)
{
	return call_u32(hSessionHandle, VSMP_RELEASE_ACCESS_RIGHT, uiKeyIndex);
}

/* ---- key management ---- */

/* Reads a 65-byte point field into pub; false if malformed. */
static bool get_point(struct vsmp_reader *r, ECCrefPublicKey *pub)
{
	size_t n;
	const uint8_t *p = vsmp_get_bytes(r, VSMP_POINT_LEN, &n);
	return n == VSMP_POINT_LEN && sdf_pub_from_point(p, pub) == 0;
}

static int export_public(void *hSessionHandle, uint16_t type, unsigned int index,
			 ECCrefPublicKey *pub)
{
	if (!pub)
		return SDR_INARGERR;
	struct vsmp_writer w;
	struct sdf_reply rp;
	vsmp_writer_begin(&w, type, 0, 0);
	vsmp_put_u32(&w, index);
	int rc = sdf_exchange(hSessionHandle, &w, &rp);
	if (rc != SDR_OK)
		return rc;
	ECCrefPublicKey k;
	bool ok = get_point(&rp.r, &k);
	if ((rc = reply_check(&rp, ok)) == SDR_OK)
		*pub = k;
	reply_free(&rp);
	return rc;
}

int SDF_ExportSignPublicKey_ECC(void *hSessionHandle, unsigned int uiKeyIndex,
				ECCrefPublicKey *pucPublicKey)
{
	return export_public(hSessionHandle, VSMP_EXPORT_SIGN_PUBLIC, uiKeyIndex, pucPublicKey);
}

int SDF_ExportEncPublicKey_ECC(void *hSessionHandle, unsigned int uiKeyIndex,
			       ECCrefPublicKey *pucPublicKey)
{
	return export_public(hSessionHandle, VSMP_EXPORT_ENC_PUBLIC, uiKeyIndex, pucPublicKey);
}

static bool sm2_alg(unsigned int alg)
{
	return alg == SGD_SM2 || alg == SGD_SM2_1 || alg == SGD_SM2_3;
}

int SDF_GenerateKeyPair_ECC(void *hSessionHandle, unsigned int uiAlgID, unsigned int uiKeyBits,
			    ECCrefPublicKey *pucPublicKey, ECCrefPrivateKey *pucPrivateKey)
{
	if (!sm2_alg(uiAlgID))
		return SDR_ALGNOTSUPPORT;
	if (uiKeyBits != SM2_KEY_BITS || !pucPublicKey || !pucPrivateKey)
		return SDR_INARGERR;
	struct vsmp_writer w;
	struct sdf_reply rp;
	vsmp_writer_begin(&w, VSMP_GENERATE_KEY_PAIR, 0, 0);
	vsmp_put_u32(&w, uiKeyBits);
	int rc = sdf_exchange(hSessionHandle, &w, &rp);
	if (rc != SDR_OK)
		return rc;
	ECCrefPublicKey pub;
	bool ok = get_point(&rp.r, &pub);
	size_t n;
	const uint8_t *d = vsmp_get_bytes(&rp.r, CRYPTO_SM2_SCALAR_LEN, &n);
	if ((rc = reply_check(&rp, ok && n == CRYPTO_SM2_SCALAR_LEN)) == SDR_OK) {
		*pucPublicKey = pub;
		memset(pucPrivateKey, 0, sizeof(*pucPrivateKey));
		pucPrivateKey->bits = SM2_KEY_BITS;
		memcpy(pucPrivateKey->K + ECCref_MAX_LEN - CRYPTO_SM2_SCALAR_LEN, d, n);
	}
	reply_free(&rp);
	return rc;
}

/* Sends w and reads "u32 handle, bytes cipher" (a session key wrapped
 * under an SM2 key) into out and *ret_handle. */
static int exchange_handle_cipher(void *hSessionHandle, struct vsmp_writer *w, ECCCipher *out,
				  void **ret_handle)
{
	struct sdf_reply rp;
	int rc = sdf_exchange(hSessionHandle, w, &rp);
	if (rc != SDR_OK)
		return rc;
	uint32_t id = vsmp_get_u32(&rp.r);
	size_t n;
	const uint8_t *der = vsmp_get_bytes(&rp.r, SM4_KEY_LEN + 128, &n);
	ECCCipher *c = malloc(ECCCIPHER_SIZE(SM4_KEY_LEN));
	void *h = NULL;
	bool ok = c && der && sdf_cipher_from_der(der, n, SM4_KEY_LEN, c) == 0 &&
		  c->L == SM4_KEY_LEN && handle_out(id, &h) == 0;
	if ((rc = reply_check(&rp, ok)) == SDR_OK) {
		memcpy(out, c, offsetof(ECCCipher, C) + SM4_KEY_LEN);
		*ret_handle = h;
	}
	crypto_free_secret(c, c ? ECCCIPHER_SIZE(SM4_KEY_LEN) : 0);
	reply_free(&rp);
	return rc;
}

int SDF_GenerateKeyWithIPK_ECC(void *hSessionHandle, unsigned int uiIPKIndex,
			       unsigned int uiKeyBits, ECCCipher *pucKey, void **phKeyHandle)
{
	if (uiKeyBits != SM4_KEY_BITS || !pucKey || !phKeyHandle)
		return SDR_INARGERR;
	struct vsmp_writer w;
	vsmp_writer_begin(&w, VSMP_GEN_KEY_WITH_IPK, 0, 0);
	vsmp_put_u32(&w, uiIPKIndex);
	vsmp_put_u32(&w, uiKeyBits);
	return exchange_handle_cipher(hSessionHandle, &w, pucKey, phKeyHandle);
}

int SDF_GenerateKeyWithEPK_ECC(void *hSessionHandle, unsigned int uiKeyBits,
			       unsigned int uiAlgID, ECCrefPublicKey *pucPublicKey,
			       ECCCipher *pucKey, void **phKeyHandle)
{
	uint8_t point[VSMP_POINT_LEN];
	if (uiAlgID != SGD_SM2_3 && uiAlgID != SGD_SM2)
		return SDR_ALGNOTSUPPORT;
	if (uiKeyBits != SM4_KEY_BITS || !pucKey || !phKeyHandle ||
	    sdf_pub_to_point(pucPublicKey, point) < 0)
		return SDR_INARGERR;
	struct vsmp_writer w;
	vsmp_writer_begin(&w, VSMP_GEN_KEY_WITH_EPK, 0, 0);
	vsmp_put_u32(&w, uiKeyBits);
	vsmp_put_bytes(&w, point, sizeof(point));
	return exchange_handle_cipher(hSessionHandle, &w, pucKey, phKeyHandle);
}

/* Sends w and reads "u32 handle" alone. */
static int exchange_handle(void *hSessionHandle, struct vsmp_writer *w, void **ret_handle)
{
	struct sdf_reply rp;
	int rc = sdf_exchange(hSessionHandle, w, &rp);
	if (rc != SDR_OK)
		return rc;
	void *h = NULL;
	bool ok = handle_out(vsmp_get_u32(&rp.r), &h) == 0;
	if ((rc = reply_check(&rp, ok)) == SDR_OK)
		*ret_handle = h;
	reply_free(&rp);
	return rc;
}

int SDF_ImportKeyWithISK_ECC(void *hSessionHandle, unsigned int uiISKIndex, ECCCipher *pucKey,
			     void **phKeyHandle)
{
	uint8_t *der = NULL;
	size_t len = 0;
	if (!phKeyHandle || !pucKey || pucKey->L > MAX_ISK_CIPHER ||
	    sdf_cipher_to_der(pucKey, &der, &len) < 0 || len > MAX_ISK_CIPHER) {
		free(der);
		return SDR_INARGERR;
	}
	struct vsmp_writer w;
	vsmp_writer_begin(&w, VSMP_IMPORT_KEY_WITH_ISK, 0, 0);
	vsmp_put_u32(&w, uiISKIndex);
	vsmp_put_bytes(&w, der, len);
	free(der);
	return exchange_handle(hSessionHandle, &w, phKeyHandle);
}

int SDF_GenerateKeyWithKEK(void *hSessionHandle, unsigned int uiKeyBits, unsigned int uiAlgID,
			   unsigned int uiKEKIndex, unsigned char *pucKey,
			   unsigned int *puiKeyLength, void **phKeyHandle)
{
	if (uiAlgID != SGD_SM4_ECB)
		return SDR_ALGNOTSUPPORT;
	if (uiKeyBits != SM4_KEY_BITS || !pucKey || !puiKeyLength || !phKeyHandle)
		return SDR_INARGERR;
	struct vsmp_writer w;
	struct sdf_reply rp;
	vsmp_writer_begin(&w, VSMP_GEN_KEY_WITH_KEK, 0, 0);
	vsmp_put_u32(&w, uiKeyBits);
	vsmp_put_u32(&w, uiAlgID);
	vsmp_put_u32(&w, uiKEKIndex);
	int rc = sdf_exchange(hSessionHandle, &w, &rp);
	if (rc != SDR_OK)
		return rc;
	void *h = NULL;
	bool ok = handle_out(vsmp_get_u32(&rp.r), &h) == 0;
	size_t n;
	const uint8_t *wrapped = vsmp_get_bytes(&rp.r, SM4_KEY_LEN, &n);
	if ((rc = reply_check(&rp, ok && n == SM4_KEY_LEN)) == SDR_OK) {
		memcpy(pucKey, wrapped, n);
		*puiKeyLength = (unsigned int)n;
		*phKeyHandle = h;
	}
	reply_free(&rp);
	return rc;
}

int SDF_ImportKeyWithKEK(void *hSessionHandle, unsigned int uiAlgID, unsigned int uiKEKIndex,
			 unsigned char *pucKey, unsigned int uiKeyLength, void **phKeyHandle)
{
	if (uiAlgID != SGD_SM4_ECB)
		return SDR_ALGNOTSUPPORT;
	if (!pucKey || uiKeyLength != SM4_KEY_LEN || !phKeyHandle)
		return SDR_INARGERR;
	struct vsmp_writer w;
	vsmp_writer_begin(&w, VSMP_IMPORT_KEY_WITH_KEK, 0, 0);
	vsmp_put_u32(&w, uiAlgID);
	vsmp_put_u32(&w, uiKEKIndex);
	vsmp_put_bytes(&w, pucKey, uiKeyLength);
	return exchange_handle(hSessionHandle, &w, phKeyHandle);
}

int SDF_DestroyKey(void *hSessionHandle, void *hKeyHandle)
{
	uint32_t id;
	if (handle_in(hKeyHandle, &id) < 0)
		return SDR_INARGERR;
	return call_u32(hSessionHandle, VSMP_DESTROY_KEY, id);
}

/* ---- asymmetric operations ---- */

int SDF_ExternalVerify_ECC(void *hSessionHandle, unsigned int uiAlgID,
			   ECCrefPublicKey *pucPublicKey, unsigned char *pucDataInput,
			   unsigned int uiInputLength, ECCSignature *pucSignature)
{
	uint8_t point[VSMP_POINT_LEN], rs[VSMP_RS_LEN];
	if (uiAlgID != SGD_SM2_1 && uiAlgID != SGD_SM2)
		return SDR_ALGNOTSUPPORT;
	if (!pucDataInput || uiInputLength != CRYPTO_SM3_LEN ||
	    sdf_pub_to_point(pucPublicKey, point) < 0 || sdf_sig_to_rs(pucSignature, rs) < 0)
		return SDR_INARGERR;
	struct vsmp_writer w;
	vsmp_writer_begin(&w, VSMP_EXTERNAL_VERIFY, 0, 0);
	vsmp_put_bytes(&w, point, sizeof(point));
	vsmp_put_bytes(&w, pucDataInput, uiInputLength);
	vsmp_put_bytes(&w, rs, sizeof(rs));
	return sdf_exchange_empty(hSessionHandle, &w);
}

int SDF_InternalSign_ECC(void *hSessionHandle, unsigned int uiISKIndex, unsigned char *pucData,
			 unsigned int uiDataLength, ECCSignature *pucSignature)
{
	uint8_t rs[VSMP_RS_LEN];
	if (!pucData || uiDataLength != CRYPTO_SM3_LEN || !pucSignature)
		return SDR_INARGERR;
	struct vsmp_writer w;
	vsmp_writer_begin(&w, VSMP_INTERNAL_SIGN, 0, 0);
	vsmp_put_u32(&w, uiISKIndex);
	vsmp_put_bytes(&w, pucData, uiDataLength);
	int rc = exchange_bytes(hSessionHandle, &w, rs, sizeof(rs));
	if (rc == SDR_OK)
		sdf_sig_from_rs(rs, pucSignature);
	return rc;
}

int SDF_InternalVerify_ECC(void *hSessionHandle, unsigned int uiIPKIndex, unsigned char *pucData,
			   unsigned int uiDataLength, ECCSignature *pucSignature)
{
	uint8_t rs[VSMP_RS_LEN];
	if (!pucData || uiDataLength != CRYPTO_SM3_LEN || sdf_sig_to_rs(pucSignature, rs) < 0)
		return SDR_INARGERR;
	struct vsmp_writer w;
	vsmp_writer_begin(&w, VSMP_INTERNAL_VERIFY, 0, 0);
	vsmp_put_u32(&w, uiIPKIndex);
	vsmp_put_bytes(&w, pucData, uiDataLength);
	vsmp_put_bytes(&w, rs, sizeof(rs));
	return sdf_exchange_empty(hSessionHandle, &w);
}

int SDF_ExternalEncrypt_ECC(void *hSessionHandle, unsigned int uiAlgID,
			    ECCrefPublicKey *pucPublicKey, unsigned char *pucData,
			    unsigned int uiDataLength, ECCCipher *pucEncData)
{
	uint8_t point[VSMP_POINT_LEN];
	if (uiAlgID != SGD_SM2_3 && uiAlgID != SGD_SM2)
		return SDR_ALGNOTSUPPORT;
	if (!pucData || uiDataLength == 0 || uiDataLength > MAX_SM2_PLAIN || !pucEncData ||
	    sdf_pub_to_point(pucPublicKey, point) < 0)
		return SDR_INARGERR;
	struct vsmp_writer w;
	struct sdf_reply rp;
	vsmp_writer_begin(&w, VSMP_EXTERNAL_ENCRYPT, 0, 0);
	vsmp_put_bytes(&w, point, sizeof(point));
	vsmp_put_bytes(&w, pucData, uiDataLength);
	int rc = sdf_exchange(hSessionHandle, &w, &rp);
	if (rc != SDR_OK)
		return rc;
	size_t n;
	const uint8_t *der = vsmp_get_bytes(&rp.r, uiDataLength + 128, &n);
	ECCCipher *c = malloc(ECCCIPHER_SIZE(uiDataLength));
	bool ok = c && der && sdf_cipher_from_der(der, n, uiDataLength, c) == 0 &&
		  c->L == uiDataLength;
	if ((rc = reply_check(&rp, ok)) == SDR_OK)
		memcpy(pucEncData, c, offsetof(ECCCipher, C) + uiDataLength);
	free(c);
	reply_free(&rp);
	return rc;
}

/* ---- symmetric operations ---- */

/* Sends w and reads "bytes first (len1), bytes second (len2)" into out1 and
 * out2 (SM4 answers: iv_out and data, or mac and iv_out). */
static int exchange_two(void *hSessionHandle, struct vsmp_writer *w, void *out1, size_t len1,
			void *out2, size_t len2)
{
	struct sdf_reply rp;
	int rc = sdf_exchange(hSessionHandle, w, &rp);
	if (rc != SDR_OK)
		return rc;
	size_t n1, n2;
	const uint8_t *p1 = vsmp_get_bytes(&rp.r, len1, &n1);
	const uint8_t *p2 = vsmp_get_bytes(&rp.r, len2, &n2);
	if ((rc = reply_check(&rp, n1 == len1 && n2 == len2)) == SDR_OK) {
		memcpy(out1, p1, n1);
		memcpy(out2, p2, n2);
	}
	reply_free(&rp);
	return rc;
}

static int sym_crypt(void *hSessionHandle, uint16_t type, void *hKeyHandle, unsigned int alg,
		     unsigned char *iv, const unsigned char *in, unsigned int len,
		     unsigned char *out, unsigned int *outlen)
{
	uint32_t id;
	if (alg != SGD_SM4_ECB && alg != SGD_SM4_CBC)
		return SDR_ALGNOTSUPPORT;
	bool cbc = alg == SGD_SM4_CBC;
	if (handle_in(hKeyHandle, &id) < 0 || (cbc && !iv) || !in || !out || !outlen ||
	    len == 0 || len % CRYPTO_SM4_BLOCK_LEN || len > MAX_SYM_DATA)
		return SDR_INARGERR;
	struct vsmp_writer w;
	uint8_t iv_out[CRYPTO_SM4_BLOCK_LEN];
	size_t ivlen = cbc ? CRYPTO_SM4_BLOCK_LEN : 0;
	vsmp_writer_begin(&w, type, 0, 0);
	vsmp_writer_reserve(&w, 4 + 4 + 4 + ivlen + 4 + len);
	vsmp_put_u32(&w, id);
	vsmp_put_u32(&w, alg);
	vsmp_put_bytes(&w, iv, ivlen);
	vsmp_put_bytes(&w, in, len);
	/* out may be in: the request was copied into w. */
	int rc = exchange_two(hSessionHandle, &w, iv_out, ivlen, out, len);
	if (rc == SDR_OK) {
		*outlen = len;
		if (cbc)
			memcpy(iv, iv_out, ivlen);
	}
	return rc;
}

int SDF_Encrypt(void *hSessionHandle, void *hKeyHandle, unsigned int uiAlgID,
		unsigned char *pucIV, unsigned char *pucData, unsigned int uiDataLength,
		unsigned char *pucEncData, unsigned int *puiEncDataLength)
{
	return sym_crypt(hSessionHandle, VSMP_ENCRYPT, hKeyHandle, uiAlgID, pucIV, pucData,
			 uiDataLength, pucEncData, puiEncDataLength);
}

int SDF_Decrypt(void *hSessionHandle, void *hKeyHandle, unsigned int uiAlgID,
		unsigned char *pucIV, unsigned char *pucEncData, unsigned int uiEncDataLength,
		unsigned char *pucData, unsigned int *puiDataLength)
{
	return sym_crypt(hSessionHandle, VSMP_DECRYPT, hKeyHandle, uiAlgID, pucIV, pucEncData,
			 uiEncDataLength, pucData, puiDataLength);
}

int SDF_CalculateMAC(void *hSessionHandle, void *hKeyHandle, unsigned int uiAlgID,
		     unsigned char *pucIV, unsigned char *pucData, unsigned int uiDataLength,
		     unsigned char *pucMAC, unsigned int *puiMACLength)
{
	uint32_t id;
	if (uiAlgID != SGD_SM4_MAC)
		return SDR_ALGNOTSUPPORT;
	if (handle_in(hKeyHandle, &id) < 0 || !pucIV || !pucData || !pucMAC || !puiMACLength ||
	    uiDataLength == 0 || uiDataLength % CRYPTO_SM4_BLOCK_LEN ||
	    uiDataLength > MAX_SYM_DATA)
		return SDR_INARGERR;
	struct vsmp_writer w;
	uint8_t mac[CRYPTO_SM4_BLOCK_LEN], iv_out[CRYPTO_SM4_BLOCK_LEN];
	vsmp_writer_begin(&w, VSMP_CALCULATE_MAC, 0, 0);
	vsmp_put_u32(&w, id);
	vsmp_put_u32(&w, uiAlgID);
	vsmp_put_bytes(&w, pucIV, CRYPTO_SM4_BLOCK_LEN);
	vsmp_put_bytes(&w, pucData, uiDataLength);
	int rc = exchange_two(hSessionHandle, &w, mac, sizeof(mac), iv_out, sizeof(iv_out));
	if (rc == SDR_OK) {
		memcpy(pucMAC, mac, sizeof(mac));
		*puiMACLength = sizeof(mac);
		memcpy(pucIV, iv_out, sizeof(iv_out));
	}
	return rc;
}

/* ---- hashing ---- */

int SDF_HashInit(void *hSessionHandle, unsigned int uiAlgID, ECCrefPublicKey *pucPublicKey,
		 unsigned char *pucID, unsigned int uiIDLength)
{
	struct sdf_session *s;
	int rc = session_enter(hSessionHandle, false, &s);
	if (rc != SDR_OK)
		return rc;
	if (uiAlgID != SGD_SM3)
		rc = SDR_ALGNOTSUPPORT;
	else {
		int r = sdf_hash_init(&s->hash, pucPublicKey, pucID, pucPublicKey ? uiIDLength : 0);
		rc = r == 0 ? SDR_OK : r == -ENOMEM ? SDR_NOBUFFER : SDR_INARGERR;
	}
	session_leave(s);
	return rc;
}

int SDF_HashUpdate(void *hSessionHandle, unsigned char *pucData, unsigned int uiDataLength)
{
	struct sdf_session *s;
	int rc = session_enter(hSessionHandle, false, &s);
	if (rc != SDR_OK)
		return rc;
	if (!pucData && uiDataLength)
		rc = SDR_INARGERR;
	else {
		int r = sdf_hash_update(&s->hash, pucData, uiDataLength);
		rc = r == 0 ? SDR_OK : r == -EPERM ? SDR_STEPERR : SDR_UNKNOWERR;
	}
	session_leave(s);
	return rc;
}

int SDF_HashFinal(void *hSessionHandle, unsigned char *pucHash, unsigned int *puiHashLength)
{
	struct sdf_session *s;
	int rc = session_enter(hSessionHandle, false, &s);
	if (rc != SDR_OK)
		return rc;
	if (!pucHash || !puiHashLength)
		rc = SDR_INARGERR;
	else {
		int r = sdf_hash_final(&s->hash, pucHash);
		rc = r == 0 ? SDR_OK : r == -EPERM ? SDR_STEPERR : SDR_UNKNOWERR;
		if (rc == SDR_OK)
			*puiHashLength = CRYPTO_SM3_LEN;
	}
	session_leave(s);
	return rc;
}

/* ---- OpenCHSM extensions ---- */

static bool key_type_ok(unsigned int t)
{
	return t == SDFX_KEY_SIGN || t == SDFX_KEY_ENC || t == SDFX_KEY_KEK;
}

int SDFX_GenerateInternalKey(void *hSessionHandle, unsigned int uiKeyType,
			     unsigned int uiKeyIndex, const char *pcPassword)
{
	size_t plen;
	if (!key_type_ok(uiKeyType) || password_len(pcPassword, &plen) < 0)
		return SDR_INARGERR;
	if (uiKeyType == SDFX_KEY_KEK)
		plen = 0;
	struct vsmp_writer w;
	struct sdf_reply rp;
	vsmp_writer_begin(&w, VSMP_KEY_GENERATE, 0, 0);
	vsmp_put_u32(&w, uiKeyType);
	vsmp_put_u32(&w, uiKeyIndex);
	vsmp_put_bytes(&w, pcPassword, plen);
	int rc = sdf_exchange(hSessionHandle, &w, &rp);
	if (rc != SDR_OK)
		return rc;
	size_t n;
	(void)vsmp_get_bytes(&rp.r, VSMP_POINT_LEN, &n);
	rc = reply_check(&rp, n == (uiKeyType == SDFX_KEY_KEK ? 0 : VSMP_POINT_LEN));
	reply_free(&rp);
	return rc;
}

int SDFX_ListKeys(void *hSessionHandle, SDFX_KEYINFO *pKeys, unsigned int *puiCount)
{
	if (!puiCount || (*puiCount && !pKeys))
		return SDR_INARGERR;
	struct vsmp_writer w;
	struct sdf_reply rp;
	vsmp_writer_begin(&w, VSMP_KEY_LIST, 0, 0);
	int rc = sdf_exchange(hSessionHandle, &w, &rp);
	if (rc != SDR_OK)
		return rc;
	uint32_t count = vsmp_get_u32(&rp.r);
	bool ok = rp.h.length >= 4 && count == (rp.h.length - 4) / KEY_INFO_WIRE;
	unsigned int cap = *puiCount;
	for (uint32_t i = 0; ok && i < count; i++) {
		SDFX_KEYINFO k;
		k.type = vsmp_get_u32(&rp.r);
		k.index = vsmp_get_u32(&rp.r);
		k.hasPassword = vsmp_get_u32(&rp.r) ? 1 : 0;
		k.createdAtMs = vsmp_get_u64(&rp.r);
		if (i < cap)
			pKeys[i] = k;
	}
	if ((rc = reply_check(&rp, ok)) == SDR_OK) {
		*puiCount = count;
		if (count > cap)
			rc = SDR_NOBUFFER;
	}
	reply_free(&rp);
	return rc;
}

/* KEY_DESTROY and KEY_SET_PASSWORD: type, index and maybe a password. */
static int key_request(void *hSessionHandle, uint16_t type, unsigned int key_type,
		       unsigned int index, const char *password, bool with_password)
{
	size_t plen;
	if (password_len(password, &plen) < 0)
		return SDR_INARGERR;
	struct vsmp_writer w;
	vsmp_writer_begin(&w, type, 0, 0);
	vsmp_put_u32(&w, key_type);
	vsmp_put_u32(&w, index);
	if (with_password)
		vsmp_put_bytes(&w, password, plen);
	return sdf_exchange_empty(hSessionHandle, &w);
}

int SDFX_DestroyInternalKey(void *hSessionHandle, unsigned int uiKeyType,
			    unsigned int uiKeyIndex)
{
	if (!key_type_ok(uiKeyType))
		return SDR_INARGERR;
	return key_request(hSessionHandle, VSMP_KEY_DESTROY, uiKeyType, uiKeyIndex, NULL, false);
}

int SDFX_SetKeyPassword(void *hSessionHandle, unsigned int uiKeyType, unsigned int uiKeyIndex,
			const char *pcPassword)
{
	if (uiKeyType != SDFX_KEY_SIGN && uiKeyType != SDFX_KEY_ENC)
		return SDR_INARGERR;
	return key_request(hSessionHandle, VSMP_KEY_SET_PASSWORD, uiKeyType, uiKeyIndex,
			   pcPassword, true);
}

int SDFX_InternalDecrypt_ECC(void *hSessionHandle, unsigned int uiISKIndex,
			     ECCCipher *pucEncData, unsigned char *pucData,
			     unsigned int *puiDataLength)
{
	uint8_t *der = NULL;
	size_t len = 0;
	if (!pucData || !puiDataLength || !pucEncData || pucEncData->L > MAX_SM2_PLAIN ||
	    sdf_cipher_to_der(pucEncData, &der, &len) < 0 || len > MAX_DEC_CIPHER) {
		free(der);
		return SDR_INARGERR;
	}
	struct vsmp_writer w;
	vsmp_writer_begin(&w, VSMP_INTERNAL_DECRYPT, 0, 0);
	vsmp_put_u32(&w, uiISKIndex);
	vsmp_put_bytes(&w, der, len);
	free(der);
	int rc = exchange_bytes(hSessionHandle, &w, pucData, pucEncData->L);
	if (rc == SDR_OK)
		*puiDataLength = pucEncData->L;
	return rc;
}

const char *SDFX_ErrorName(int iCode)
{
	static const struct {
		int code;
		const char *name;
	} names[] = {
		{SDR_OK, "SDR_OK"},
		{SDR_UNKNOWERR, "SDR_UNKNOWERR"},
		{SDR_NOTSUPPORT, "SDR_NOTSUPPORT"},
		{SDR_COMMFAIL, "SDR_COMMFAIL"},
		{SDR_HARDFAIL, "SDR_HARDFAIL"},
		{SDR_OPENDEVICE, "SDR_OPENDEVICE"},
		{SDR_OPENSESSION, "SDR_OPENSESSION"},
		{SDR_PARDENY, "SDR_PARDENY"},
		{SDR_KEYNOTEXIST, "SDR_KEYNOTEXIST"},
		{SDR_ALGNOTSUPPORT, "SDR_ALGNOTSUPPORT"},
		{SDR_ALGMODNOTSUPPORT, "SDR_ALGMODNOTSUPPORT"},
		{SDR_PKOPERR, "SDR_PKOPERR"},
		{SDR_SKOPERR, "SDR_SKOPERR"},
		{SDR_SIGNERR, "SDR_SIGNERR"},
		{SDR_VERIFYERR, "SDR_VERIFYERR"},
		{SDR_SYMOPERR, "SDR_SYMOPERR"},
		{SDR_STEPERR, "SDR_STEPERR"},
		{SDR_FILESIZEERR, "SDR_FILESIZEERR"},
		{SDR_FILENOEXIST, "SDR_FILENOEXIST"},
		{SDR_FILEOFSERR, "SDR_FILEOFSERR"},
		{SDR_KEYTYPEERR, "SDR_KEYTYPEERR"},
		{SDR_KEYERR, "SDR_KEYERR"},
		{SDR_ENCDATAERR, "SDR_ENCDATAERR"},
		{SDR_RANDERR, "SDR_RANDERR"},
		{SDR_PRKRERR, "SDR_PRKRERR"},
		{SDR_MACERR, "SDR_MACERR"},
		{SDR_FILEEXSITS, "SDR_FILEEXSITS"},
		{SDR_FILEWERR, "SDR_FILEWERR"},
		{SDR_NOBUFFER, "SDR_NOBUFFER"},
		{SDR_INARGERR, "SDR_INARGERR"},
		{SDR_OUTARGERR, "SDR_OUTARGERR"},
	};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (names[i].code == iCode)
			return names[i].name;
	return "SDR_UNKNOWN";
}
