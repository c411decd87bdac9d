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
	struct sdf_session *s;
	int rc = session_enter(hSessionHandle, true, &s);
	if (rc != SDR_OK)
		return rc;
	if (!pstDeviceInfo) {
		rc = SDR_INARGERR;
		goto out;
	}
	struct vsmp_writer w;
	struct sdf_reply rp;
	session_begin(s, &w, VSMP_DEVICE_INFO);
	if ((rc = session_call(s, &w, &rp)) != SDR_OK)
		goto out;
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
	if ((rc = reply_check(s, &rp, true)) == SDR_OK) {
		memcpy(info.IssuerName, issuer, n1);
		memcpy(info.DeviceName, name, n2);
		memcpy(info.DeviceSerial, serial, n3);
		*pstDeviceInfo = info;
	}
	reply_free(&rp);
out:
	session_leave(s);
	return rc;
}

int SDF_GenerateRandom(void *hSessionHandle, unsigned int uiLength, unsigned char *pucRandom)
{
	struct sdf_session *s;
	int rc = session_enter(hSessionHandle, true, &s);
	if (rc != SDR_OK)
		return rc;
	if (!pucRandom || uiLength == 0 || uiLength > MAX_RANDOM) {
		rc = SDR_INARGERR;
		goto out;
	}
	struct vsmp_writer w;
	struct sdf_reply rp;
	session_begin(s, &w, VSMP_GENERATE_RANDOM);
	vsmp_put_u32(&w, uiLength);
	if ((rc = session_call(s, &w, &rp)) != SDR_OK)
		goto out;
	size_t n;
	const uint8_t *p = vsmp_get_bytes(&rp.r, uiLength, &n);
	if ((rc = reply_check(s, &rp, n == uiLength)) == SDR_OK)
		memcpy(pucRandom, p, n);
	reply_free(&rp);
out:
	session_leave(s);
	return rc;
}

int SDF_GetPrivateKeyAccessRight(void *hSessionHandle, unsigned int uiKeyIndex,
				 unsigned char *pucPassword, unsigned int uiPwdLength)
{
	struct sdf_session *s;
	int rc = session_enter(hSessionHandle, true, &s);
	if (rc != SDR_OK)
		return rc;
	if (uiPwdLength > VSMP_MAX_PASSWORD || (uiPwdLength && !pucPassword)) {
		rc = SDR_INARGERR;
		goto out;
	}
	struct vsmp_writer w;
	session_begin(s, &w, VSMP_GET_ACCESS_RIGHT);
	vsmp_put_u32(&w, uiKeyIndex);
	vsmp_put_bytes(&w, pucPassword, uiPwdLength);
	rc = session_call_empty(s, &w);
out:
	session_leave(s);
	return rc;
}

/* A request with one u32 field and an empty answer. */
static int call_u32(void *hSessionHandle, uint16_t type, uint32_t v)
{
	struct sdf_session *s;
	int rc = session_enter(hSessionHandle, true, &s);
	if (rc != SDR_OK)
		return rc;
	struct vsmp_writer w;
	session_begin(s, &w, type);
	vsmp_put_u32(&w, v);
	rc = session_call_empty(s, &w);
	session_leave(s);
	return rc;
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
	struct sdf_session *s;
	int rc = session_enter(hSessionHandle, true, &s);
	if (rc != SDR_OK)
		return rc;
	if (!pub) {
		rc = SDR_INARGERR;
		goto out;
	}
	struct vsmp_writer w;
	struct sdf_reply rp;
	session_begin(s, &w, type);
	vsmp_put_u32(&w, index);
	if ((rc = session_call(s, &w, &rp)) != SDR_OK)
		goto out;
	ECCrefPublicKey k;
	bool ok = get_point(&rp.r, &k);
	if ((rc = reply_check(s, &rp, ok)) == SDR_OK)
		*pub = k;
	reply_free(&rp);
out:
	session_leave(s);
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
	struct sdf_session *s;
	int rc = session_enter(hSessionHandle, true, &s);
	if (rc != SDR_OK)
		return rc;
	if (!sm2_alg(uiAlgID)) {
		rc = SDR_ALGNOTSUPPORT;
		goto out;
	}
	if (uiKeyBits != SM2_KEY_BITS || !pucPublicKey || !pucPrivateKey) {
		rc = SDR_INARGERR;
		goto out;
	}
	struct vsmp_writer w;
	struct sdf_reply rp;
	session_begin(s, &w, VSMP_GENERATE_KEY_PAIR);
	vsmp_put_u32(&w, uiKeyBits);
	if ((rc = session_call(s, &w, &rp)) != SDR_OK)
		goto out;
	ECCrefPublicKey pub;
	bool ok = get_point(&rp.r, &pub);
	size_t n;
	const uint8_t *d = vsmp_get_bytes(&rp.r, CRYPTO_SM2_SCALAR_LEN, &n);
	if ((rc = reply_check(s, &rp, ok && n == CRYPTO_SM2_SCALAR_LEN)) == SDR_OK) {
		*pucPublicKey = pub;
		memset(pucPrivateKey, 0, sizeof(*pucPrivateKey));
		pucPrivateKey->bits = SM2_KEY_BITS;
		memcpy(pucPrivateKey->K + ECCref_MAX_LEN - CRYPTO_SM2_SCALAR_LEN, d, n);
	}
	reply_free(&rp);
out:
	session_leave(s);
	return rc;
}

/* Reads "u32 handle, bytes cipher" (a wrapped 16-byte session key). */
static int get_handle_and_cipher(struct sdf_session *s, struct sdf_reply *rp, ECCCipher *out,
				 void **ret_handle)
{
	uint32_t id = vsmp_get_u32(&rp->r);
	size_t n;
	const uint8_t *der = vsmp_get_bytes(&rp->r, SM4_KEY_LEN + 128, &n);
	ECCCipher *c = malloc(ECCCIPHER_SIZE(SM4_KEY_LEN));
	void *h = NULL;
	bool ok = c && der && sdf_cipher_from_der(der, n, SM4_KEY_LEN, c) == 0 &&
		  c->L == SM4_KEY_LEN && handle_out(id, &h) == 0;
	int rc = reply_check(s, rp, ok);
	if (rc == SDR_OK) {
		memcpy(out, c, offsetof(ECCCipher, C) + SM4_KEY_LEN);
		*ret_handle = h;
	}
	crypto_free_secret(c, c ? ECCCIPHER_SIZE(SM4_KEY_LEN) : 0);
	return rc;
}

int SDF_GenerateKeyWithIPK_ECC(void *hSessionHandle, unsigned int uiIPKIndex,
			       unsigned int uiKeyBits, ECCCipher *pucKey, void **phKeyHandle)
{
	struct sdf_session *s;
	int rc = session_enter(hSessionHandle, true, &s);
	if (rc != SDR_OK)
		return rc;
	if (uiKeyBits != SM4_KEY_BITS || !pucKey || !phKeyHandle) {
		rc = SDR_INARGERR;
		goto out;
	}
	struct vsmp_writer w;
	struct sdf_reply rp;
	session_begin(s, &w, VSMP_GEN_KEY_WITH_IPK);
	vsmp_put_u32(&w, uiIPKIndex);
	vsmp_put_u32(&w, uiKeyBits);
	if ((rc = session_call(s, &w, &rp)) != SDR_OK)
		goto out;
	rc = get_handle_and_cipher(s, &rp, pucKey, phKeyHandle);
	reply_free(&rp);
out:
	session_leave(s);
	return rc;
}

int SDF_GenerateKeyWithEPK_ECC(void *hSessionHandle, unsigned int uiKeyBits,
			       unsigned int uiAlgID, ECCrefPublicKey *pucPublicKey,
			       ECCCipher *pucKey, void **phKeyHandle)
{
	struct sdf_session *s;
	int rc = session_enter(hSessionHandle, true, &s);
	if (rc != SDR_OK)
		return rc;
	uint8_t point[VSMP_POINT_LEN];
	if (uiAlgID != SGD_SM2_3 && uiAlgID != SGD_SM2) {
		rc = SDR_ALGNOTSUPPORT;
		goto out;
	}
	if (uiKeyBits != SM4_KEY_BITS || !pucKey || !phKeyHandle ||
	    sdf_pub_to_point(pucPublicKey, point) < 0) {
		rc = SDR_INARGERR;
		goto out;
	}
	struct vsmp_writer w;
	struct sdf_reply rp;
	session_begin(s, &w, VSMP_GEN_KEY_WITH_EPK);
	vsmp_put_u32(&w, uiKeyBits);
	vsmp_put_bytes(&w, point, sizeof(point));
	if ((rc = session_call(s, &w, &rp)) != SDR_OK)
		goto out;
	rc = get_handle_and_cipher(s, &rp, pucKey, phKeyHandle);
	reply_free(&rp);
out:
	session_leave(s);
	return rc;
}

/* Reads "u32 handle" alone. */
static int get_handle(struct sdf_session *s, struct sdf_reply *rp, void **ret_handle)
{
	void *h = NULL;
	bool ok = handle_out(vsmp_get_u32(&rp->r), &h) == 0;
	int rc = reply_check(s, rp, ok);
	if (rc == SDR_OK)
		*ret_handle = h;
	return rc;
}

int SDF_ImportKeyWithISK_ECC(void *hSessionHandle, unsigned int uiISKIndex, ECCCipher *pucKey,
			     void **phKeyHandle)
{
	struct sdf_session *s;
	int rc = session_enter(hSessionHandle, true, &s);
	if (rc != SDR_OK)
		return rc;
	uint8_t *der = NULL;
	size_t len = 0;
	if (!phKeyHandle || !pucKey || pucKey->L > MAX_ISK_CIPHER ||
	    sdf_cipher_to_der(pucKey, &der, &len) < 0 || len > MAX_ISK_CIPHER) {
		rc = SDR_INARGERR;
		goto out;
	}
	struct vsmp_writer w;
	struct sdf_reply rp;
	session_begin(s, &w, VSMP_IMPORT_KEY_WITH_ISK);
	vsmp_put_u32(&w, uiISKIndex);
	vsmp_put_bytes(&w, der, len);
	if ((rc = session_call(s, &w, &rp)) != SDR_OK)
		goto out;
	rc = get_handle(s, &rp, phKeyHandle);
	reply_free(&rp);
out:
	crypto_free_secret(der, len);
	session_leave(s);
	return rc;
}

int SDF_GenerateKeyWithKEK(void *hSessionHandle, unsigned int uiKeyBits, unsigned int uiAlgID,
			   unsigned int uiKEKIndex, unsigned char *pucKey,
			   unsigned int *puiKeyLength, void **phKeyHandle)
{
	struct sdf_session *s;
	int rc = session_enter(hSessionHandle, true, &s);
	if (rc != SDR_OK)
		return rc;
	if (uiAlgID != SGD_SM4_ECB) {
		rc = SDR_ALGNOTSUPPORT;
		goto out;
	}
	if (uiKeyBits != SM4_KEY_BITS || !pucKey || !puiKeyLength || !phKeyHandle) {
		rc = SDR_INARGERR;
		goto out;
	}
	struct vsmp_writer w;
	struct sdf_reply rp;
	session_begin(s, &w, VSMP_GEN_KEY_WITH_KEK);
	vsmp_put_u32(&w, uiKeyBits);
	vsmp_put_u32(&w, uiAlgID);
	vsmp_put_u32(&w, uiKEKIndex);
	if ((rc = session_call(s, &w, &rp)) != SDR_OK)
		goto out;
	void *h = NULL;
	bool ok = handle_out(vsmp_get_u32(&rp.r), &h) == 0;
	size_t n;
	const uint8_t *wrapped = vsmp_get_bytes(&rp.r, SM4_KEY_LEN, &n);
	if ((rc = reply_check(s, &rp, ok && n == SM4_KEY_LEN)) == SDR_OK) {
		memcpy(pucKey, wrapped, n);
		*puiKeyLength = (unsigned int)n;
		*phKeyHandle = h;
	}
	reply_free(&rp);
out:
	session_leave(s);
	return rc;
}

int SDF_ImportKeyWithKEK(void *hSessionHandle, unsigned int uiAlgID, unsigned int uiKEKIndex,
			 unsigned char *pucKey, unsigned int uiKeyLength, void **phKeyHandle)
{
	struct sdf_session *s;
	int rc = session_enter(hSessionHandle, true, &s);
	if (rc != SDR_OK)
		return rc;
	if (uiAlgID != SGD_SM4_ECB) {
		rc = SDR_ALGNOTSUPPORT;
		goto out;
	}
	if (!pucKey || uiKeyLength != SM4_KEY_LEN || !phKeyHandle) {
		rc = SDR_INARGERR;
		goto out;
	}
	struct vsmp_writer w;
	struct sdf_reply rp;
	session_begin(s, &w, VSMP_IMPORT_KEY_WITH_KEK);
	vsmp_put_u32(&w, uiAlgID);
	vsmp_put_u32(&w, uiKEKIndex);
	vsmp_put_bytes(&w, pucKey, uiKeyLength);
	if ((rc = session_call(s, &w, &rp)) != SDR_OK)
		goto out;
	rc = get_handle(s, &rp, phKeyHandle);
	reply_free(&rp);
out:
	session_leave(s);
	return rc;
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
	struct sdf_session *s;
	int rc = session_enter(hSessionHandle, true, &s);
	if (rc != SDR_OK)
		return rc;
	uint8_t point[VSMP_POINT_LEN], rs[VSMP_RS_LEN];
	if (uiAlgID != SGD_SM2_1 && uiAlgID != SGD_SM2) {
		rc = SDR_ALGNOTSUPPORT;
		goto out;
	}
	if (!pucDataInput || uiInputLength != CRYPTO_SM3_LEN ||
	    sdf_pub_to_point(pucPublicKey, point) < 0 || sdf_sig_to_rs(pucSignature, rs) < 0) {
		rc = SDR_INARGERR;
		goto out;
	}
	struct vsmp_writer w;
	session_begin(s, &w, VSMP_EXTERNAL_VERIFY);
	vsmp_put_bytes(&w, point, sizeof(point));
	vsmp_put_bytes(&w, pucDataInput, uiInputLength);
	vsmp_put_bytes(&w, rs, sizeof(rs));
	rc = session_call_empty(s, &w);
out:
	session_leave(s);
	return rc;
}

int SDF_InternalSign_ECC(void *hSessionHandle, unsigned int uiISKIndex, unsigned char *pucData,
			 unsigned int uiDataLength, ECCSignature *pucSignature)
{
	struct sdf_session *s;
	int rc = session_enter(hSessionHandle, true, &s);
	if (rc != SDR_OK)
		return rc;
	if (!pucData || uiDataLength != CRYPTO_SM3_LEN || !pucSignature) {
		rc = SDR_INARGERR;
		goto out;
	}
	struct vsmp_writer w;
	struct sdf_reply rp;
	session_begin(s, &w, VSMP_INTERNAL_SIGN);
	vsmp_put_u32(&w, uiISKIndex);
	vsmp_put_bytes(&w, pucData, uiDataLength);
	if ((rc = session_call(s, &w, &rp)) != SDR_OK)
		goto out;
	size_t n;
	const uint8_t *rs = vsmp_get_bytes(&rp.r, VSMP_RS_LEN, &n);
	if ((rc = reply_check(s, &rp, n == VSMP_RS_LEN)) == SDR_OK)
		sdf_sig_from_rs(rs, pucSignature);
	reply_free(&rp);
out:
	session_leave(s);
	return rc;
}

int SDF_InternalVerify_ECC(void *hSessionHandle, unsigned int uiIPKIndex, unsigned char *pucData,
			   unsigned int uiDataLength, ECCSignature *pucSignature)
{
	struct sdf_session *s;
	int rc = session_enter(hSessionHandle, true, &s);
	if (rc != SDR_OK)
		return rc;
	uint8_t rs[VSMP_RS_LEN];
	if (!pucData || uiDataLength != CRYPTO_SM3_LEN || sdf_sig_to_rs(pucSignature, rs) < 0) {
		rc = SDR_INARGERR;
		goto out;
	}
	struct vsmp_writer w;
	session_begin(s, &w, VSMP_INTERNAL_VERIFY);
	vsmp_put_u32(&w, uiIPKIndex);
	vsmp_put_bytes(&w, pucData, uiDataLength);
	vsmp_put_bytes(&w, rs, sizeof(rs));
	rc = session_call_empty(s, &w);
out:
	session_leave(s);
	return rc;
}

int SDF_ExternalEncrypt_ECC(void *hSessionHandle, unsigned int uiAlgID,
			    ECCrefPublicKey *pucPublicKey, unsigned char *pucData,
			    unsigned int uiDataLength, ECCCipher *pucEncData)
{
	struct sdf_session *s;
	int rc = session_enter(hSessionHandle, true, &s);
	if (rc != SDR_OK)
		return rc;
	uint8_t point[VSMP_POINT_LEN];
	if (uiAlgID != SGD_SM2_3 && uiAlgID != SGD_SM2) {
		rc = SDR_ALGNOTSUPPORT;
		goto out;
	}
	if (!pucData || uiDataLength == 0 || uiDataLength > MAX_SM2_PLAIN || !pucEncData ||
	    sdf_pub_to_point(pucPublicKey, point) < 0) {
		rc = SDR_INARGERR;
		goto out;
	}
	struct vsmp_writer w;
	struct sdf_reply rp;
	session_begin(s, &w, VSMP_EXTERNAL_ENCRYPT);
	vsmp_put_bytes(&w, point, sizeof(point));
	vsmp_put_bytes(&w, pucData, uiDataLength);
	if ((rc = session_call(s, &w, &rp)) != SDR_OK)
		goto out;
	size_t n;
	const uint8_t *der = vsmp_get_bytes(&rp.r, uiDataLength + 128, &n);
	ECCCipher *c = malloc(ECCCIPHER_SIZE(uiDataLength));
	bool ok = c && der && sdf_cipher_from_der(der, n, uiDataLength, c) == 0 &&
		  c->L == uiDataLength;
	if ((rc = reply_check(s, &rp, ok)) == SDR_OK)
		memcpy(pucEncData, c, offsetof(ECCCipher, C) + uiDataLength);
	free(c);
	reply_free(&rp);
out:
	session_leave(s);
	return rc;
}

/* ---- symmetric operations ---- */

static int sym_crypt(void *hSessionHandle, uint16_t type, void *hKeyHandle, unsigned int alg,
		     unsigned char *iv, const unsigned char *in, unsigned int len,
		     unsigned char *out, unsigned int *outlen)
{
	struct sdf_session *s;
	int rc = session_enter(hSessionHandle, true, &s);
	if (rc != SDR_OK)
		return rc;
	uint32_t id;
	if (alg != SGD_SM4_ECB && alg != SGD_SM4_CBC) {
		rc = SDR_ALGNOTSUPPORT;
		goto out;
	}
	bool cbc = alg == SGD_SM4_CBC;
	if (handle_in(hKeyHandle, &id) < 0 || (cbc && !iv) || !in || !out || !outlen ||
	    len == 0 || len % CRYPTO_SM4_BLOCK_LEN || len > MAX_SYM_DATA) {
		rc = SDR_INARGERR;
		goto out;
	}
	struct vsmp_writer w;
	struct sdf_reply rp;
	session_begin(s, &w, type);
	vsmp_put_u32(&w, id);
	vsmp_put_u32(&w, alg);
	vsmp_put_bytes(&w, iv, cbc ? CRYPTO_SM4_BLOCK_LEN : 0);
	vsmp_put_bytes(&w, in, len);
	if ((rc = session_call(s, &w, &rp)) != SDR_OK)
		goto out;
	size_t ivn, n;
	const uint8_t *iv_out = vsmp_get_bytes(&rp.r, CRYPTO_SM4_BLOCK_LEN, &ivn);
	const uint8_t *data = vsmp_get_bytes(&rp.r, len, &n);
	bool ok = n == len && ivn == (cbc ? CRYPTO_SM4_BLOCK_LEN : 0);
	if ((rc = reply_check(s, &rp, ok)) == SDR_OK) {
		memcpy(out, data, n);
		*outlen = (unsigned int)n;
		if (cbc)
			memcpy(iv, iv_out, ivn);
	}
	reply_free(&rp);
out:
	session_leave(s);
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
	struct sdf_session *s;
	int rc = session_enter(hSessionHandle, true, &s);
	if (rc != SDR_OK)
		return rc;
	uint32_t id;
	if (uiAlgID != SGD_SM4_MAC) {
		rc = SDR_ALGNOTSUPPORT;
		goto out;
	}
	if (handle_in(hKeyHandle, &id) < 0 || !pucIV || !pucData || !pucMAC || !puiMACLength ||
	    uiDataLength == 0 || uiDataLength % CRYPTO_SM4_BLOCK_LEN ||
	    uiDataLength > MAX_SYM_DATA) {
		rc = SDR_INARGERR;
		goto out;
	}
	struct vsmp_writer w;
	struct sdf_reply rp;
	session_begin(s, &w, VSMP_CALCULATE_MAC);
	vsmp_put_u32(&w, id);
	vsmp_put_u32(&w, uiAlgID);
	vsmp_put_bytes(&w, pucIV, CRYPTO_SM4_BLOCK_LEN);
	vsmp_put_bytes(&w, pucData, uiDataLength);
	if ((rc = session_call(s, &w, &rp)) != SDR_OK)
		goto out;
	size_t mn, ivn;
	const uint8_t *mac = vsmp_get_bytes(&rp.r, CRYPTO_SM4_BLOCK_LEN, &mn);
	const uint8_t *iv_out = vsmp_get_bytes(&rp.r, CRYPTO_SM4_BLOCK_LEN, &ivn);
	bool ok = mn == CRYPTO_SM4_BLOCK_LEN && ivn == CRYPTO_SM4_BLOCK_LEN;
	if ((rc = reply_check(s, &rp, ok)) == SDR_OK) {
		memcpy(pucMAC, mac, mn);
		*puiMACLength = (unsigned int)mn;
		memcpy(pucIV, iv_out, ivn);
	}
	reply_free(&rp);
out:
	session_leave(s);
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
	struct sdf_session *s;
	int rc = session_enter(hSessionHandle, true, &s);
	if (rc != SDR_OK)
		return rc;
	size_t plen;
	if (!key_type_ok(uiKeyType) || password_len(pcPassword, &plen) < 0) {
		rc = SDR_INARGERR;
		goto out;
	}
	if (uiKeyType == SDFX_KEY_KEK)
		plen = 0;
	struct vsmp_writer w;
	struct sdf_reply rp;
	session_begin(s, &w, VSMP_KEY_GENERATE);
	vsmp_put_u32(&w, uiKeyType);
	vsmp_put_u32(&w, uiKeyIndex);
	vsmp_put_bytes(&w, pcPassword, plen);
	if ((rc = session_call(s, &w, &rp)) != SDR_OK)
		goto out;
	size_t n;
	(void)vsmp_get_bytes(&rp.r, VSMP_POINT_LEN, &n);
	rc = reply_check(s, &rp, n == (uiKeyType == SDFX_KEY_KEK ? 0 : VSMP_POINT_LEN));
	reply_free(&rp);
out:
	session_leave(s);
	return rc;
}

int SDFX_ListKeys(void *hSessionHandle, SDFX_KEYINFO *pKeys, unsigned int *puiCount)
{
	struct sdf_session *s;
	int rc = session_enter(hSessionHandle, true, &s);
	if (rc != SDR_OK)
		return rc;
	if (!puiCount || (*puiCount && !pKeys)) {
		rc = SDR_INARGERR;
		goto out;
	}
	struct vsmp_writer w;
	struct sdf_reply rp;
	session_begin(s, &w, VSMP_KEY_LIST);
	if ((rc = session_call(s, &w, &rp)) != SDR_OK)
		goto out;
	uint32_t count = vsmp_get_u32(&rp.r);
	bool ok = rp.len >= 4 && count == (rp.len - 4) / KEY_INFO_WIRE;
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
	if ((rc = reply_check(s, &rp, ok)) == SDR_OK) {
		*puiCount = count;
		if (count > cap)
			rc = SDR_NOBUFFER;
	}
	reply_free(&rp);
out:
	session_leave(s);
	return rc;
}

int SDFX_DestroyInternalKey(void *hSessionHandle, unsigned int uiKeyType,
			    unsigned int uiKeyIndex)
{
	struct sdf_session *s;
	int rc = session_enter(hSessionHandle, true, &s);
	if (rc != SDR_OK)
		return rc;
	if (!key_type_ok(uiKeyType)) {
		rc = SDR_INARGERR;
		goto out;
	}
	struct vsmp_writer w;
	session_begin(s, &w, VSMP_KEY_DESTROY);
	vsmp_put_u32(&w, uiKeyType);
	vsmp_put_u32(&w, uiKeyIndex);
	rc = session_call_empty(s, &w);
out:
	session_leave(s);
	return rc;
}

int SDFX_SetKeyPassword(void *hSessionHandle, unsigned int uiKeyType, unsigned int uiKeyIndex,
			const char *pcPassword)
{
	struct sdf_session *s;
	int rc = session_enter(hSessionHandle, true, &s);
	if (rc != SDR_OK)
		return rc;
	size_t plen;
	if ((uiKeyType != SDFX_KEY_SIGN && uiKeyType != SDFX_KEY_ENC) ||
	    password_len(pcPassword, &plen) < 0) {
		rc = SDR_INARGERR;
		goto out;
	}
	struct vsmp_writer w;
	session_begin(s, &w, VSMP_KEY_SET_PASSWORD);
	vsmp_put_u32(&w, uiKeyType);
	vsmp_put_u32(&w, uiKeyIndex);
	vsmp_put_bytes(&w, pcPassword, plen);
	rc = session_call_empty(s, &w);
out:
	session_leave(s);
	return rc;
}

int SDFX_InternalDecrypt_ECC(void *hSessionHandle, unsigned int uiISKIndex,
			     ECCCipher *pucEncData, unsigned char *pucData,
			     unsigned int *puiDataLength)
{
	struct sdf_session *s;
	int rc = session_enter(hSessionHandle, true, &s);
	if (rc != SDR_OK)
		return rc;
	uint8_t *der = NULL;
	size_t len = 0;
	if (!pucData || !puiDataLength || !pucEncData || pucEncData->L > MAX_SM2_PLAIN ||
	    sdf_cipher_to_der(pucEncData, &der, &len) < 0 || len > MAX_DEC_CIPHER) {
		rc = SDR_INARGERR;
		goto out;
	}
	struct vsmp_writer w;
	struct sdf_reply rp;
	session_begin(s, &w, VSMP_INTERNAL_DECRYPT);
	vsmp_put_u32(&w, uiISKIndex);
	vsmp_put_bytes(&w, der, len);
	if ((rc = session_call(s, &w, &rp)) != SDR_OK)
		goto out;
	size_t n;
	const uint8_t *data = vsmp_get_bytes(&rp.r, pucEncData->L, &n);
	if ((rc = reply_check(s, &rp, n == pucEncData->L)) == SDR_OK) {
		memcpy(pucData, data, n);
		*puiDataLength = (unsigned int)n;
	}
	reply_free(&rp);
out:
	free(der);
	session_leave(s);
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
