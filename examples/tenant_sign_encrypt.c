/*
 * tenant_sign_encrypt.c: a small tenant application on libopenchsm-sdf.
 *
 * It opens the VSM named by the environment (OPENCHSM_SDF_CONFIG, or
 * OPENCHSM_SDF_ENDPOINT, OPENCHSM_SDF_TOKEN_ID and
 * OPENCHSM_SDF_TOKEN_SECRET_FILE; see docs/sdf.md), makes sure a signing
 * key and a KEK exist at the given indexes (generating them if not), signs
 * a message with the signing key and verifies the signature, then wraps a
 * fresh SM4 session key under the KEK, encrypts the message with it (CBC,
 * zero-padded to whole blocks), decrypts it again and compares.
 *
 *   tenant_sign_encrypt SIGN_INDEX KEK_INDEX MESSAGE
 *
 * Exit status: 0 when everything worked, 1 on an SDR error (printed with
 * its name and value), 2 on bad arguments.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openchsm/sdf.h>

#define SIGNER_ID "1234567812345678"
#define MAX_MESSAGE 4096

/* Prints what failed and why; returns rc so calls can be chained. */
static int fail(const char *what, int rc)
{
	fprintf(stderr, "error: %s: %s (0x%08X)", what, SDFX_ErrorName(rc), (unsigned)rc);
	switch (rc) {
	case SDR_OPENDEVICE:
		fprintf(stderr, " - check OPENCHSM_SDF_* or the configuration file");
		break;
	case SDR_OPENSESSION:
		fprintf(stderr, " - the VSM cannot be reached or did not prove the token");
		break;
	case SDR_PARDENY:
		fprintf(stderr, " - the VSM refused the token or the key's password");
		break;
	case SDR_KEYNOTEXIST:
		fprintf(stderr, " - no such key");
		break;
	case SDR_INARGERR:
		fprintf(stderr, " - an argument was refused (an index past maxKeys?)");
		break;
	case SDR_COMMFAIL:
		fprintf(stderr, " - the connection to the VSM failed; open a new session");
		break;
	default:
		break;
	}
	fprintf(stderr, "\n");
	return rc;
}

static void print_hex(const char *label, const unsigned char *p, unsigned int n)
{
	printf("%s", label);
	for (unsigned int i = 0; i < n; i++)
		printf("%02x", p[i]);
	printf("\n");
}

static int parse_index(const char *s, unsigned int *ret)
{
	char *end;
	unsigned long v = strtoul(s, &end, 10);
	if (*s < '0' || *s > '9' || *end || v == 0 || v > 1000000)
		return -1;
	*ret = (unsigned int)v;
	return 0;
}

/* The public key of the signing key at index, generated first if missing. */
static int signing_key(void *s, unsigned int index, ECCrefPublicKey *pub)
{
	int rc = SDF_ExportSignPublicKey_ECC(s, index, pub);
	if (rc == SDR_OK) {
		printf("signing key %u: present\n", index);
		return rc;
	}
	if (rc != SDR_KEYNOTEXIST)
		return fail("export the signing public key", rc);
	if ((rc = SDFX_GenerateInternalKey(s, SDFX_KEY_SIGN, index, NULL)) != SDR_OK)
		return fail("generate the signing key", rc);
	printf("signing key %u: generated\n", index);
	if ((rc = SDF_ExportSignPublicKey_ECC(s, index, pub)) != SDR_OK)
		return fail("export the signing public key", rc);
	return rc;
}

static int sign_and_verify(void *s, unsigned int index, const unsigned char *msg, unsigned int len)
{
	ECCrefPublicKey pub;
	ECCSignature sig;
	unsigned char e[32];
	unsigned int elen = 0;
	int rc = signing_key(s, index, &pub);
	if (rc != SDR_OK)
		return rc;
	/* e = SM3(Z || message), Z from the public key and the signer ID */
	if ((rc = SDF_HashInit(s, SGD_SM3, &pub, (unsigned char *)SIGNER_ID,
			       (unsigned int)strlen(SIGNER_ID))) != SDR_OK ||
	    (rc = SDF_HashUpdate(s, (unsigned char *)msg, len)) != SDR_OK ||
	    (rc = SDF_HashFinal(s, e, &elen)) != SDR_OK)
		return fail("hash the message", rc);
	if ((rc = SDF_InternalSign_ECC(s, index, e, elen, &sig)) != SDR_OK)
		return fail("sign", rc);
	print_hex("signature r: ", sig.r + 32, 32);
	print_hex("signature s: ", sig.s + 32, 32);
	if ((rc = SDF_ExternalVerify_ECC(s, SGD_SM2_1, &pub, e, elen, &sig)) != SDR_OK)
		return fail("verify the signature", rc);
	printf("signature verified\n");
	return SDR_OK;
}

/* A session key wrapped under the KEK at index, the KEK generated first
 * if missing. */
static int session_key(void *s, unsigned int index, unsigned char wrapped[16], void **key)
{
	unsigned int wlen = 16;
	int rc = SDF_GenerateKeyWithKEK(s, 128, SGD_SM4_ECB, index, wrapped, &wlen, key);
	if (rc == SDR_OK) {
		printf("KEK %u: present\n", index);
	} else if (rc == SDR_KEYNOTEXIST) {
		if ((rc = SDFX_GenerateInternalKey(s, SDFX_KEY_KEK, index, NULL)) != SDR_OK)
			return fail("generate the KEK", rc);
		printf("KEK %u: generated\n", index);
		rc = SDF_GenerateKeyWithKEK(s, 128, SGD_SM4_ECB, index, wrapped, &wlen, key);
	}
	if (rc != SDR_OK)
		return fail("generate a session key under the KEK", rc);
	print_hex("session key wrapped by the KEK: ", wrapped, wlen);
	return SDR_OK;
}

static int encrypt_and_decrypt(void *s, unsigned int kek, const unsigned char *msg, unsigned int len)
{
	static unsigned char plain[MAX_MESSAGE + 16], cipher[MAX_MESSAGE + 16], back[MAX_MESSAGE + 16];
	unsigned char wrapped[16], iv[16], iv0[16];
	unsigned int padded = (len + 15) / 16 * 16, clen = 0, blen = 0;
	void *key = NULL, *again = NULL;
	int rc = session_key(s, kek, wrapped, &key);
	if (rc != SDR_OK)
		return rc;
	memset(plain, 0, sizeof(plain));
	memcpy(plain, msg, len);
	if ((rc = SDF_GenerateRandom(s, 16, iv0)) != SDR_OK) {
		fail("random IV", rc);
		goto out;
	}
	memcpy(iv, iv0, 16);
	if ((rc = SDF_Encrypt(s, key, SGD_SM4_CBC, iv, plain, padded, cipher, &clen)) != SDR_OK) {
		fail("encrypt", rc);
		goto out;
	}
	print_hex("iv: ", iv0, 16);
	print_hex("ciphertext: ", cipher, clen);
	/* As a receiver holding the wrapped key would: import it under the KEK. */
	if ((rc = SDF_ImportKeyWithKEK(s, SGD_SM4_ECB, kek, wrapped, 16, &again)) != SDR_OK) {
		fail("import the wrapped session key", rc);
		goto out;
	}
	memcpy(iv, iv0, 16);
	if ((rc = SDF_Decrypt(s, again, SGD_SM4_CBC, iv, cipher, clen, back, &blen)) != SDR_OK) {
		fail("decrypt", rc);
		goto out;
	}
	if (blen != padded || memcmp(back, plain, padded) != 0) {
		fprintf(stderr, "error: the decrypted message differs\n");
		rc = SDR_UNKNOWERR;
		goto out;
	}
	printf("decrypted: %.*s\n", (int)len, (const char *)back);
	printf("decryption matches\n");
out:
	if (key)
		SDF_DestroyKey(s, key);
	if (again)
		SDF_DestroyKey(s, again);
	memset(plain, 0, sizeof(plain));
	memset(back, 0, sizeof(back));
	return rc;
}

int main(int argc, char **argv)
{
	unsigned int sign_index, kek_index;
	if (argc != 4 || parse_index(argv[1], &sign_index) < 0 ||
	    parse_index(argv[2], &kek_index) < 0 || strlen(argv[3]) > MAX_MESSAGE) {
		fprintf(stderr, "usage: %s SIGN_INDEX KEK_INDEX MESSAGE\n"
				"  the VSM comes from OPENCHSM_SDF_CONFIG or OPENCHSM_SDF_ENDPOINT,\n"
				"  OPENCHSM_SDF_TOKEN_ID and OPENCHSM_SDF_TOKEN_SECRET_FILE\n",
			argv[0]);
		return 2;
	}
	const unsigned char *msg = (const unsigned char *)argv[3];
	unsigned int len = (unsigned int)strlen(argv[3]);
	void *dev = NULL, *s = NULL;
	DEVICEINFO info;

	int rc = SDF_OpenDevice(&dev);
	if (rc != SDR_OK) {
		fail("open the device", rc);
		return 1;
	}
	if ((rc = SDF_OpenSession(dev, &s)) != SDR_OK) {
		fail("open a session", rc);
		SDF_CloseDevice(dev);
		return 1;
	}
	if ((rc = SDF_GetDeviceInfo(s, &info)) == SDR_OK)
		printf("device: %.40s %.16s, serial %.16s\n", (const char *)info.IssuerName,
		       (const char *)info.DeviceName, (const char *)info.DeviceSerial);
	else
		fail("device information", rc);
	if (rc == SDR_OK)
		rc = sign_and_verify(s, sign_index, msg, len);
	if (rc == SDR_OK)
		rc = encrypt_and_decrypt(s, kek_index, msg, len);
	SDF_CloseSession(s);
	SDF_CloseDevice(dev);
	printf("%s\n", rc == SDR_OK ? "done" : "failed");
	return rc == SDR_OK ? 0 : 1;
}
