/*
 * sdf.h: the GM/T 0018-2012 SDF API (the subset a VSM serves) on OpenCHSM's
 * VSM service (docs/vsm-protocol.md), plus OpenCHSM extensions (SDFX_*)
 * for the tenant's key management. Reference: docs/sdf.md.
 *
 * Guarantees:
 *  - A session is one TCP connection to the VSM, authenticated both ways:
 *    the library proves the token with HMAC-SM3 and refuses a server that
 *    cannot prove it too (SDR_OPENSESSION). The token secret never leaves
 *    the process; it is kept in memory only and wiped by SDF_CloseDevice.
 *  - Private keys of internal indexes never leave the VSM. Session keys are
 *    handles; their values stay in the VSM and die with the session.
 *  - The library never logs and never prints. Buffers that held key
 *    material or passwords are wiped before they are freed.
 *
 * Threads: a device handle may be shared by any number of threads, each
 * opening its own sessions. A session is meant for one thread at a time; it
 * carries a mutex, so concurrent calls on one session are serialised rather
 * than corrupting it. Closing a handle while another thread uses it is a
 * caller error.
 *
 * Errors: every SDF_ and SDFX_ function returns SDR_OK (0) or an SDR_* code.
 * SDR codes the VSM returns are passed through unchanged. A transport or
 * protocol failure inside a session is SDR_COMMFAIL, and the session is
 * then unusable (close it and open another).
 *
 * ECC structures follow GM/T 0018: coordinates, scalars and signature
 * values are big-endian and right-aligned in their 64-byte fields (for SM2
 * the first 32 bytes are zero) and `bits` is 256.
 */
#ifndef OPENCHSM_SDF_H
#define OPENCHSM_SDF_H

#ifdef __cplusplus
extern "C" {
#endif

/* ---- structures (GM/T 0018-2012 §5) ---- */

typedef struct DeviceInfo_st {
	unsigned char IssuerName[40];
	unsigned char DeviceName[16];
	unsigned char DeviceSerial[16];
	unsigned int DeviceVersion;
	unsigned int StandardVersion;
	unsigned int AsymAlgAbility[2];
	unsigned int SymAlgAbility;
	unsigned int HashAlgAbility;
	unsigned int BufferSize;
} DEVICEINFO;

#define ECCref_MAX_BITS 512
#define ECCref_MAX_LEN  ((ECCref_MAX_BITS + 7) / 8)

typedef struct ECCrefPublicKey_st {
	unsigned int bits;
	unsigned char x[ECCref_MAX_LEN];
	unsigned char y[ECCref_MAX_LEN];
} ECCrefPublicKey;

typedef struct ECCrefPrivateKey_st {
	unsigned int bits;
	unsigned char K[ECCref_MAX_LEN];
} ECCrefPrivateKey;

/* An SM2 ciphertext: the point C1 (x, y), the hash C3 (M) and the L bytes
 * of C2 (C). C is declared with one element as in GM/T 0018: the structure
 * is variable-sized and whoever receives one allocates
 * ECCCIPHER_SIZE(L) bytes, L being the plaintext length (16 for a session
 * key generated with GenerateKeyWith{IPK,EPK}_ECC). */
typedef struct ECCCipher_st {
	unsigned char x[ECCref_MAX_LEN];
	unsigned char y[ECCref_MAX_LEN];
	unsigned char M[32];
	unsigned int L;
	unsigned char C[1];
} ECCCipher;

/* Bytes to allocate for an ECCCipher carrying an L-byte C. */
#define ECCCIPHER_SIZE(L) (sizeof(ECCCipher) + (L))

typedef struct ECCSignature_st {
	unsigned char r[ECCref_MAX_LEN];
	unsigned char s[ECCref_MAX_LEN];
} ECCSignature;

/* ---- algorithm identifiers (GM/T 0006) ---- */
#define SGD_SM3     0x00000001
#define SGD_SM4_ECB 0x00000401
#define SGD_SM4_CBC 0x00000402
#define SGD_SM4_MAC 0x00000410
#define SGD_SM2     0x00020100
#define SGD_SM2_1   0x00020200 /* signature */
#define SGD_SM2_2   0x00020400 /* key exchange (not served) */
#define SGD_SM2_3   0x00020800 /* encryption */

/* ---- status codes (GM/T 0018-2012 Appendix A) ---- */
#define SDR_OK               0x00000000
#define SDR_BASE             0x01000000
#define SDR_UNKNOWERR        (SDR_BASE + 0x00000001)
#define SDR_NOTSUPPORT       (SDR_BASE + 0x00000002)
#define SDR_COMMFAIL         (SDR_BASE + 0x00000003)
#define SDR_HARDFAIL         (SDR_BASE + 0x00000004)
#define SDR_OPENDEVICE       (SDR_BASE + 0x00000005)
#define SDR_OPENSESSION      (SDR_BASE + 0x00000006)
#define SDR_PARDENY          (SDR_BASE + 0x00000007)
#define SDR_KEYNOTEXIST      (SDR_BASE + 0x00000008)
#define SDR_ALGNOTSUPPORT    (SDR_BASE + 0x00000009)
#define SDR_ALGMODNOTSUPPORT (SDR_BASE + 0x0000000A)
#define SDR_PKOPERR          (SDR_BASE + 0x0000000B)
#define SDR_SKOPERR          (SDR_BASE + 0x0000000C)
#define SDR_SIGNERR          (SDR_BASE + 0x0000000D)
#define SDR_VERIFYERR        (SDR_BASE + 0x0000000E)
#define SDR_SYMOPERR         (SDR_BASE + 0x0000000F)
#define SDR_STEPERR          (SDR_BASE + 0x00000010)
#define SDR_FILESIZEERR      (SDR_BASE + 0x00000011)
#define SDR_FILENOEXIST      (SDR_BASE + 0x00000012)
#define SDR_FILEOFSERR       (SDR_BASE + 0x00000013)
#define SDR_KEYTYPEERR       (SDR_BASE + 0x00000014)
#define SDR_KEYERR           (SDR_BASE + 0x00000015)
#define SDR_ENCDATAERR       (SDR_BASE + 0x00000016)
#define SDR_RANDERR          (SDR_BASE + 0x00000017)
#define SDR_PRKRERR          (SDR_BASE + 0x00000018)
#define SDR_MACERR           (SDR_BASE + 0x00000019)
#define SDR_FILEEXSITS       (SDR_BASE + 0x0000001A)
#define SDR_FILEWERR         (SDR_BASE + 0x0000001B)
#define SDR_NOBUFFER         (SDR_BASE + 0x0000001C)
#define SDR_INARGERR         (SDR_BASE + 0x0000001D)
#define SDR_OUTARGERR        (SDR_BASE + 0x0000001E)

/* ---- device and session ---- */
int SDF_OpenDevice(void **phDeviceHandle);
int SDF_CloseDevice(void *hDeviceHandle);
int SDF_OpenSession(void *hDeviceHandle, void **phSessionHandle);
int SDF_CloseSession(void *hSessionHandle);
int SDF_GetDeviceInfo(void *hSessionHandle, DEVICEINFO *pstDeviceInfo);
int SDF_GenerateRandom(void *hSessionHandle, unsigned int uiLength, unsigned char *pucRandom);
int SDF_GetPrivateKeyAccessRight(void *hSessionHandle, unsigned int uiKeyIndex,
				 unsigned char *pucPassword, unsigned int uiPwdLength);
int SDF_ReleasePrivateKeyAccessRight(void *hSessionHandle, unsigned int uiKeyIndex);

/* ---- key management ---- */
int SDF_ExportSignPublicKey_ECC(void *hSessionHandle, unsigned int uiKeyIndex,
				ECCrefPublicKey *pucPublicKey);
int SDF_ExportEncPublicKey_ECC(void *hSessionHandle, unsigned int uiKeyIndex,
			       ECCrefPublicKey *pucPublicKey);
int SDF_GenerateKeyPair_ECC(void *hSessionHandle, unsigned int uiAlgID, unsigned int uiKeyBits,
			    ECCrefPublicKey *pucPublicKey, ECCrefPrivateKey *pucPrivateKey);
int SDF_GenerateKeyWithIPK_ECC(void *hSessionHandle, unsigned int uiIPKIndex,
			       unsigned int uiKeyBits, ECCCipher *pucKey, void **phKeyHandle);
int SDF_GenerateKeyWithEPK_ECC(void *hSessionHandle, unsigned int uiKeyBits,
			       unsigned int uiAlgID, ECCrefPublicKey *pucPublicKey,
			       ECCCipher *pucKey, void **phKeyHandle);
int SDF_ImportKeyWithISK_ECC(void *hSessionHandle, unsigned int uiISKIndex, ECCCipher *pucKey,
			     void **phKeyHandle);
int SDF_GenerateKeyWithKEK(void *hSessionHandle, unsigned int uiKeyBits, unsigned int uiAlgID,
			   unsigned int uiKEKIndex, unsigned char *pucKey,
			   unsigned int *puiKeyLength, void **phKeyHandle);
int SDF_ImportKeyWithKEK(void *hSessionHandle, unsigned int uiAlgID, unsigned int uiKEKIndex,
			 unsigned char *pucKey, unsigned int uiKeyLength, void **phKeyHandle);
int SDF_DestroyKey(void *hSessionHandle, void *hKeyHandle);

/* ---- asymmetric operations ---- */
int SDF_ExternalVerify_ECC(void *hSessionHandle, unsigned int uiAlgID,
			   ECCrefPublicKey *pucPublicKey, unsigned char *pucDataInput,
			   unsigned int uiInputLength, ECCSignature *pucSignature);
int SDF_InternalSign_ECC(void *hSessionHandle, unsigned int uiISKIndex, unsigned char *pucData,
			 unsigned int uiDataLength, ECCSignature *pucSignature);
int SDF_InternalVerify_ECC(void *hSessionHandle, unsigned int uiIPKIndex, unsigned char *pucData,
			   unsigned int uiDataLength, ECCSignature *pucSignature);
int SDF_ExternalEncrypt_ECC(void *hSessionHandle, unsigned int uiAlgID,
			    ECCrefPublicKey *pucPublicKey, unsigned char *pucData,
			    unsigned int uiDataLength, ECCCipher *pucEncData);

/* ---- symmetric operations ---- */
int SDF_Encrypt(void *hSessionHandle, void *hKeyHandle, unsigned int uiAlgID,
		unsigned char *pucIV, unsigned char *pucData, unsigned int uiDataLength,
		unsigned char *pucEncData, unsigned int *puiEncDataLength);
int SDF_Decrypt(void *hSessionHandle, void *hKeyHandle, unsigned int uiAlgID,
		unsigned char *pucIV, unsigned char *pucEncData, unsigned int uiEncDataLength,
		unsigned char *pucData, unsigned int *puiDataLength);
int SDF_CalculateMAC(void *hSessionHandle, void *hKeyHandle, unsigned int uiAlgID,
		     unsigned char *pucIV, unsigned char *pucData, unsigned int uiDataLength,
		     unsigned char *pucMAC, unsigned int *puiMACLength);

/* ---- hashing (computed in the library) ---- */
int SDF_HashInit(void *hSessionHandle, unsigned int uiAlgID, ECCrefPublicKey *pucPublicKey,
		 unsigned char *pucID, unsigned int uiIDLength);
int SDF_HashUpdate(void *hSessionHandle, unsigned char *pucData, unsigned int uiDataLength);
int SDF_HashFinal(void *hSessionHandle, unsigned char *pucHash, unsigned int *puiHashLength);

/* ---- OpenCHSM extensions ---- */

/* Internal key types of SDFX_ key management. */
#define SDFX_KEY_SIGN 1 /* SM2 signing key pair */
#define SDFX_KEY_ENC  2 /* SM2 encryption key pair */
#define SDFX_KEY_KEK  3 /* SM4 key-encryption key */

typedef struct SDFX_KeyInfo_st {
	unsigned int type;        /* SDFX_KEY_* */
	unsigned int index;       /* 1..maxKeys */
	unsigned int hasPassword; /* 1 if a password protects the private key */
	unsigned long long createdAtMs; /* Unix milliseconds */
} SDFX_KEYINFO;

/* Like SDF_OpenDevice, but reads the given configuration file whatever the
 * environment says. */
int SDFX_OpenDeviceWithConfig(const char *pcConfigPath, void **phDeviceHandle);
/* Generates the key of a type at an index. pcPassword: NUL-terminated,
 * at most 64 bytes; NULL or "" for none (ignored for a KEK). */
int SDFX_GenerateInternalKey(void *hSessionHandle, unsigned int uiKeyType,
			     unsigned int uiKeyIndex, const char *pcPassword);
/* Lists the VSM's keys: *puiCount holds the capacity of pKeys on entry and
 * the number of keys on return (SDR_NOBUFFER when they do not fit). */
int SDFX_ListKeys(void *hSessionHandle, SDFX_KEYINFO *pKeys, unsigned int *puiCount);
int SDFX_DestroyInternalKey(void *hSessionHandle, unsigned int uiKeyType,
			    unsigned int uiKeyIndex);
/* Sets (or with NULL / "" removes) the password of a sign or enc key. */
int SDFX_SetKeyPassword(void *hSessionHandle, unsigned int uiKeyType, unsigned int uiKeyIndex,
			const char *pcPassword);
/* Decrypts with the internal encryption key at uiISKIndex. *puiDataLength
 * receives the plaintext length (at most pucEncData->L bytes are written). */
int SDFX_InternalDecrypt_ECC(void *hSessionHandle, unsigned int uiISKIndex,
			     ECCCipher *pucEncData, unsigned char *pucData,
			     unsigned int *puiDataLength);
/* The name of an SDR code ("SDR_PARDENY"), or "SDR_UNKNOWN" for others.
 * A static string. */
const char *SDFX_ErrorName(int iCode);

#ifdef __cplusplus
}
#endif

#endif
