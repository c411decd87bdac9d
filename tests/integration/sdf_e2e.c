/*
 * sdf_e2e.c: a test driver of libopenchsm-sdf against a real VSM started
 * through chsmd (tests/integration/test_sdf_chsmd.sh runs it). It is built
 * the way a tenant application is: the public header <openchsm/sdf.h> and
 * the shared library, nothing else of the tree. The device comes from the
 * environment the library documents (OPENCHSM_SDF_ENDPOINT, _TOKEN_ID,
 * _TOKEN_SECRET_FILE or OPENCHSM_SDF_CONFIG) or from configuration files
 * given as arguments.
 *
 *   sdf_e2e functions DIR VSMID   every SDF function, exact codes; writes
 *                                 files in DIR for the openssl CLI checks
 *   sdf_e2e open CODE CONF...     SDF_OpenDevice + SDF_OpenSession give CODE
 *                                 (CONF "-": the environment), pairs in turn
 *   sdf_e2e open-wait             a session opens within 15 s (back-off)
 *   sdf_e2e sessions N            N sessions open, the next is refused,
 *                                 closing one lets another open
 *   sdf_e2e frames                malformed frames on raw sockets
 *   sdf_e2e killed DIR            a session whose VSM is killed meanwhile
 *   sdf_e2e threads CONF:IDX...   threads signing and verifying at once
 *
 * Prints one "ok - ..." or "not ok - ..." line per check (the format of
 * lib.sh's check), and exits 0 only when every check passed. Every
 * scenario runs under alarm(): a hang is a failure, never a stuck CI job.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openchsm/sdf.h>

#define SCENARIO_SECONDS 90
#define DEFAULT_ID       "1234567812345678"

static int failures;
static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;
static const char *dir = ".";

/* ---- reporting ---- */

static void report(int pass, const char *fmt, ...)
{
	va_list ap;
	pthread_mutex_lock(&out_lock);
	printf("%s - ", pass ? "ok" : "not ok");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	if (!pass)
		failures++;
	pthread_mutex_unlock(&out_lock);
}

/* rc must be want (by name, so that a failure reads well). */
static int expect_rc(int rc, int want, const char *what)
{
	if (rc == want)
		report(1, "%s: %s", what, SDFX_ErrorName(want));
	else
		report(0, "%s: want %s, got %s (0x%08X)", what, SDFX_ErrorName(want),
		       SDFX_ErrorName(rc), (unsigned)rc);
	return rc == want;
}

static void on_alarm(int sig)
{
	static const char msg[] = "not ok - the scenario did not finish in time (a hang)\n";
	(void)sig;
	if (write(STDOUT_FILENO, msg, sizeof(msg) - 1) < 0)
		_exit(3);
	_exit(3);
}

static void sleep_ms(long ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* ---- files shared with the script ---- */

static void put_file(const char *name, const void *data, size_t len)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "wb");
	int ok = f && fwrite(data, 1, len, f) == len;
	if (f && fclose(f) != 0)
		ok = 0;
	if (!ok)
		report(0, "write %s", path);
}

/* Reads a whole file (at most cap bytes); returns its length or -1. */
static long get_file(const char *name, unsigned char *buf, size_t cap)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "rb");
	if (!f)
		return -1;
	size_t n = fread(buf, 1, cap, f);
	int more = fgetc(f) != EOF;
	fclose(f);
	return more ? -1 : (long)n;
}

static int file_exists(const char *name)
{
	char path[4096];
	struct stat st;
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return stat(path, &st) == 0;
}

/* ---- SM2 values in SDF structures, and DER as OpenSSL writes it ---- */

/* 04 || X || Y of an SM2 public key (right-aligned 32-byte coordinates). */
static void point_of(const ECCrefPublicKey *pub, unsigned char out[65])
{
	out[0] = 0x04;
	memcpy(out + 1, pub->x + 32, 32);
	memcpy(out + 33, pub->y + 32, 32);
}

static int pub_from_point(const unsigned char p[65], ECCrefPublicKey *pub)
{
	if (p[0] != 0x04)
		return -1;
	memset(pub, 0, sizeof(*pub));
	pub->bits = 256;
	memcpy(pub->x + 32, p + 1, 32);
	memcpy(pub->y + 32, p + 33, 32);
	return 0;
}

static size_t der_len(unsigned char *out, size_t n)
{
	if (n < 128) {
		out[0] = (unsigned char)n;
		return 1;
	}
	out[0] = 0x81 + (n > 255);
	if (n > 255) {
		out[1] = (unsigned char)(n >> 8);
		out[2] = (unsigned char)n;
		return 3;
	}
	out[1] = (unsigned char)n;
	return 2;
}

/* A DER INTEGER of an unsigned big-endian value. */
static size_t der_uint(unsigned char *out, const unsigned char *v, size_t n)
{
	while (n > 1 && v[0] == 0) {
		v++;
		n--;
	}
	size_t pad = v[0] & 0x80 ? 1 : 0, k = 0;
	out[k++] = 0x02;
	k += der_len(out + k, n + pad);
	if (pad)
		out[k++] = 0;
	memcpy(out + k, v, n);
	return k + n;
}

static size_t der_octets(unsigned char *out, const unsigned char *v, size_t n)
{
	size_t k = 0;
	out[k++] = 0x04;
	k += der_len(out + k, n);
	memcpy(out + k, v, n);
	return k + n;
}

static size_t der_seq(unsigned char *out, const unsigned char *body, size_t n)
{
	size_t k = 0;
	out[k++] = 0x30;
	k += der_len(out + k, n);
	memcpy(out + k, body, n);
	return k + n;
}

static size_t sig_to_der(const ECCSignature *sig, unsigned char out[80])
{
	unsigned char body[80];
	size_t n = der_uint(body, sig->r + 32, 32);
	n += der_uint(body + n, sig->s + 32, 32);
	return der_seq(out, body, n);
}

/* GM/T 0009 SM2Cipher: SEQUENCE { x INTEGER, y INTEGER, hash OCTET
 * STRING, cipher OCTET STRING }, what `openssl pkeyutl -decrypt` reads. */
static size_t cipher_to_der(const ECCCipher *c, unsigned char *out)
{
	unsigned char body[512];
	size_t n = der_uint(body, c->x + 32, 32);
	n += der_uint(body + n, c->y + 32, 32);
	n += der_octets(body + n, c->M, 32);
	n += der_octets(body + n, c->C, c->L);
	return der_seq(out, body, n);
}

/* Reads a DER length; returns it or -1. */
static long read_len(const unsigned char **p, const unsigned char *end)
{
	if (*p >= end)
		return -1;
	unsigned c = *(*p)++;
	if (c < 128)
		return c;
	if (c != 0x81 || *p >= end)
		return -1;
	return *(*p)++;
}

static int read_uint(const unsigned char **p, const unsigned char *end, unsigned char out[64])
{
	if (*p >= end || *(*p)++ != 0x02)
		return -1;
	long n = read_len(p, end);
	if (n < 1 || n > 33 || end - *p < n)
		return -1;
	const unsigned char *v = *p;
	*p += n;
	while (n > 32 && v[0] == 0) {
		v++;
		n--;
	}
	if (n > 32)
		return -1;
	memset(out, 0, 64);
	memcpy(out + 64 - n, v, (size_t)n);
	return 0;
}

static int sig_from_der(const unsigned char *der, size_t len, ECCSignature *sig)
{
	const unsigned char *p = der, *end = der + len;
	if (len < 2 || *p++ != 0x30 || read_len(&p, end) != end - p)
		return -1;
	if (read_uint(&p, end, sig->r) < 0 || read_uint(&p, end, sig->s) < 0 || p != end)
		return -1;
	return 0;
}

/* ---- sessions ---- */

/* Opens a session, retrying while the VSM still counts a session that was
 * just closed (it notices a closed connection asynchronously). */
static int open_session_retry(void *dev, void **ret)
{
	int rc = SDR_OPENSESSION;
	for (int i = 0; i < 100; i++) {
		if ((rc = SDF_OpenSession(dev, ret)) != SDR_OPENSESSION)
			break;
		sleep_ms(100);
	}
	return rc;
}

static int open_device_from(const char *conf, void **dev)
{
	return conf ? SDFX_OpenDeviceWithConfig(conf, dev) : SDF_OpenDevice(dev);
}

/* e = SM3(Z || msg) for pub and id (NULL: the library's default). */
static int hash_e(void *s, ECCrefPublicKey *pub, const char *id, const unsigned char *msg,
		  unsigned int len, unsigned char e[32])
{
	unsigned int elen = 0;
	int rc = SDF_HashInit(s, SGD_SM3, pub, (unsigned char *)id, id ? (unsigned)strlen(id) : 0);
	if (rc == SDR_OK)
		rc = SDF_HashUpdate(s, (unsigned char *)msg, len);
	if (rc == SDR_OK)
		rc = SDF_HashFinal(s, e, &elen);
	if (rc == SDR_OK && elen != 32)
		rc = SDR_UNKNOWERR;
	return rc;
}

/* ---- scenario: every function ---- */

struct fx {
	void *dev, *s;
	unsigned char msg[4096];
	unsigned int msglen;
	ECCrefPublicKey ext; /* made by the openssl CLI */
};

static void device_and_random(struct fx *f, const char *vsm_id)
{
	DEVICEINFO info;
	memset(&info, 0xAA, sizeof(info));
	if (expect_rc(SDF_GetDeviceInfo(f->s, &info), SDR_OK, "SDF_GetDeviceInfo")) {
		char serial[17] = {0};
		memcpy(serial, info.DeviceSerial, 16);
		report(memcmp(info.IssuerName, "OpenCHSM", 9) == 0, "device info: issuer OpenCHSM");
		report(memcmp(info.DeviceName, "OpenCHSM VSM", 13) == 0,
		       "device info: name OpenCHSM VSM");
		report(strncmp(serial, vsm_id, 16) == 0, "device info: serial is the VSM id (%s)",
		       serial);
		report(info.AsymAlgAbility[0] == (SGD_SM2_1 | SGD_SM2_3) &&
			       info.AsymAlgAbility[1] == 256,
		       "device info: SM2 sign and encrypt, 256 bits");
		report(info.SymAlgAbility == (SGD_SM4_ECB | SGD_SM4_CBC | SGD_SM4_MAC),
		       "device info: SM4 ECB, CBC, MAC");
		report(info.HashAlgAbility == SGD_SM3, "device info: SM3");
		report(info.BufferSize >= 1024 * 1024, "device info: buffer %u", info.BufferSize);
	}
	expect_rc(SDF_GetDeviceInfo(f->s, NULL), SDR_INARGERR, "SDF_GetDeviceInfo NULL");
	expect_rc(SDF_GetDeviceInfo(NULL, &info), SDR_INARGERR, "SDF_GetDeviceInfo no session");

	unsigned char a[32] = {0}, b[32] = {0}, zero[32] = {0};
	static unsigned char big[65537];
	expect_rc(SDF_GenerateRandom(f->s, 32, a), SDR_OK, "SDF_GenerateRandom 32");
	expect_rc(SDF_GenerateRandom(f->s, 32, b), SDR_OK, "SDF_GenerateRandom 32 again");
	report(memcmp(a, b, 32) != 0 && memcmp(a, zero, 32) != 0, "random: two draws differ");
	expect_rc(SDF_GenerateRandom(f->s, 65536, big), SDR_OK, "SDF_GenerateRandom 65536");
	expect_rc(SDF_GenerateRandom(f->s, 0, big), SDR_INARGERR, "SDF_GenerateRandom 0");
	expect_rc(SDF_GenerateRandom(f->s, 65537, big), SDR_INARGERR, "SDF_GenerateRandom 65537");
}

/* Keys of this scenario: sign 1 (password), enc 2 (password), kek 3,
 * sign 4 (no password). */
static void key_management(struct fx *f)
{
	SDFX_KEYINFO k[16];
	unsigned int n = 16;
	expect_rc(SDFX_ListKeys(f->s, k, &n), SDR_OK, "SDFX_ListKeys on a new VSM");
	report(n == 0, "a new VSM has no keys (%u)", n);

	expect_rc(SDFX_GenerateInternalKey(f->s, SDFX_KEY_SIGN, 1, "sign-pw"), SDR_OK,
		  "SDFX_GenerateInternalKey sign 1 with a password");
	expect_rc(SDFX_GenerateInternalKey(f->s, SDFX_KEY_ENC, 2, "enc-pw"), SDR_OK,
		  "SDFX_GenerateInternalKey enc 2 with a password");
	expect_rc(SDFX_GenerateInternalKey(f->s, SDFX_KEY_KEK, 3, NULL), SDR_OK,
		  "SDFX_GenerateInternalKey kek 3");
	expect_rc(SDFX_GenerateInternalKey(f->s, SDFX_KEY_SIGN, 4, ""), SDR_OK,
		  "SDFX_GenerateInternalKey sign 4 without a password");
	expect_rc(SDFX_GenerateInternalKey(f->s, SDFX_KEY_SIGN, 1, NULL), SDR_KEYERR,
		  "SDFX_GenerateInternalKey at a taken index");
	expect_rc(SDFX_GenerateInternalKey(f->s, 4, 1, NULL), SDR_INARGERR,
		  "SDFX_GenerateInternalKey of an unknown type");
	expect_rc(SDFX_GenerateInternalKey(f->s, SDFX_KEY_SIGN, 0, NULL), SDR_INARGERR,
		  "SDFX_GenerateInternalKey at index 0");
	char longpw[66];
	memset(longpw, 'p', 65);
	longpw[65] = 0;
	expect_rc(SDFX_GenerateInternalKey(f->s, SDFX_KEY_ENC, 1, longpw), SDR_INARGERR,
		  "SDFX_GenerateInternalKey with a 65-byte password");

	n = 16;
	expect_rc(SDFX_ListKeys(f->s, k, &n), SDR_OK, "SDFX_ListKeys");
	int seen = 0;
	for (unsigned int i = 0; i < n && i < 16; i++) {
		if (k[i].type == SDFX_KEY_SIGN && k[i].index == 1 && k[i].hasPassword)
			seen |= 1;
		if (k[i].type == SDFX_KEY_ENC && k[i].index == 2 && k[i].hasPassword)
			seen |= 2;
		if (k[i].type == SDFX_KEY_KEK && k[i].index == 3 && !k[i].hasPassword)
			seen |= 4;
		if (k[i].type == SDFX_KEY_SIGN && k[i].index == 4 && !k[i].hasPassword)
			seen |= 8;
		if (k[i].createdAtMs < 1600000000000ULL)
			seen |= 16;
	}
	report(n == 4 && seen == 15, "SDFX_ListKeys: the four keys, their passwords and times");
	n = 2;
	expect_rc(SDFX_ListKeys(f->s, k, &n), SDR_NOBUFFER, "SDFX_ListKeys into 2 entries");
	report(n == 4, "SDFX_ListKeys: the full count when they do not fit (%u)", n);

	/* passwords of key pairs */
	expect_rc(SDFX_SetKeyPassword(f->s, SDFX_KEY_KEK, 3, "x"), SDR_INARGERR,
		  "SDFX_SetKeyPassword on a KEK");
	expect_rc(SDFX_SetKeyPassword(f->s, SDFX_KEY_SIGN, 3, "x"), SDR_KEYNOTEXIST,
		  "SDFX_SetKeyPassword on a missing key");
	unsigned char e[32] = {1, 2, 3};
	ECCSignature sig;
	expect_rc(SDFX_SetKeyPassword(f->s, SDFX_KEY_SIGN, 4, "four"), SDR_OK,
		  "SDFX_SetKeyPassword sign 4");
	expect_rc(SDF_InternalSign_ECC(f->s, 4, e, 32, &sig), SDR_PARDENY,
		  "sign 4 once it has a password, without the right");
	expect_rc(SDFX_SetKeyPassword(f->s, SDFX_KEY_SIGN, 4, NULL), SDR_OK,
		  "SDFX_SetKeyPassword removes the password of sign 4");
	expect_rc(SDF_InternalSign_ECC(f->s, 4, e, 32, &sig), SDR_OK,
		  "sign 4 without a password again");

	/* destroy and make again */
	expect_rc(SDFX_GenerateInternalKey(f->s, SDFX_KEY_ENC, 3, NULL), SDR_OK,
		  "SDFX_GenerateInternalKey enc 3");
	expect_rc(SDFX_DestroyInternalKey(f->s, SDFX_KEY_ENC, 3), SDR_OK,
		  "SDFX_DestroyInternalKey enc 3");
	expect_rc(SDFX_DestroyInternalKey(f->s, SDFX_KEY_ENC, 3), SDR_KEYNOTEXIST,
		  "SDFX_DestroyInternalKey enc 3 again");
	ECCrefPublicKey pub;
	expect_rc(SDF_ExportEncPublicKey_ECC(f->s, 3, &pub), SDR_KEYNOTEXIST,
		  "export of the destroyed enc 3");
	expect_rc(SDFX_DestroyInternalKey(f->s, SDFX_KEY_KEK, 9), SDR_INARGERR,
		  "SDFX_DestroyInternalKey past maxKeys");
}

static void exports_and_rights(struct fx *f)
{
	ECCrefPublicKey pub;
	unsigned char point[65];
	if (expect_rc(SDF_ExportSignPublicKey_ECC(f->s, 1, &pub), SDR_OK,
		      "SDF_ExportSignPublicKey_ECC 1")) {
		report(pub.bits == 256, "sign 1: 256 bits");
		point_of(&pub, point);
		put_file("sign1.point", point, 65);
	}
	if (expect_rc(SDF_ExportEncPublicKey_ECC(f->s, 2, &pub), SDR_OK,
		      "SDF_ExportEncPublicKey_ECC 2")) {
		point_of(&pub, point);
		put_file("enc2.point", point, 65);
	}
	expect_rc(SDF_ExportSignPublicKey_ECC(f->s, 2, &pub), SDR_KEYNOTEXIST,
		  "SDF_ExportSignPublicKey_ECC of an index without a sign key");
	expect_rc(SDF_ExportEncPublicKey_ECC(f->s, 1, &pub), SDR_KEYNOTEXIST,
		  "SDF_ExportEncPublicKey_ECC of an index without an enc key");
	expect_rc(SDF_ExportSignPublicKey_ECC(f->s, 0, &pub), SDR_INARGERR,
		  "SDF_ExportSignPublicKey_ECC index 0");
	expect_rc(SDF_ExportSignPublicKey_ECC(f->s, 5, &pub), SDR_INARGERR,
		  "SDF_ExportSignPublicKey_ECC past maxKeys");

	unsigned char e[32] = {9};
	ECCSignature sig;
	expect_rc(SDF_InternalSign_ECC(f->s, 1, e, 32, &sig), SDR_PARDENY,
		  "SDF_InternalSign_ECC without the access right");
	expect_rc(SDF_GetPrivateKeyAccessRight(f->s, 1, (unsigned char *)"wrong", 5), SDR_PARDENY,
		  "SDF_GetPrivateKeyAccessRight with a wrong password");
	expect_rc(SDF_InternalSign_ECC(f->s, 1, e, 32, &sig), SDR_PARDENY,
		  "still no right after a wrong password");
	expect_rc(SDF_GetPrivateKeyAccessRight(f->s, 3, (unsigned char *)"x", 1), SDR_KEYNOTEXIST,
		  "SDF_GetPrivateKeyAccessRight where no key pair is");
	expect_rc(SDF_GetPrivateKeyAccessRight(f->s, 1, (unsigned char *)"sign-pw", 7), SDR_OK,
		  "SDF_GetPrivateKeyAccessRight sign 1");
	expect_rc(SDF_InternalSign_ECC(f->s, 1, e, 32, &sig), SDR_OK,
		  "SDF_InternalSign_ECC with the right");
	expect_rc(SDF_ReleasePrivateKeyAccessRight(f->s, 1), SDR_OK,
		  "SDF_ReleasePrivateKeyAccessRight 1");
	expect_rc(SDF_InternalSign_ECC(f->s, 1, e, 32, &sig), SDR_PARDENY,
		  "SDF_InternalSign_ECC after the release");
	expect_rc(SDF_InternalSign_ECC(f->s, 2, e, 32, &sig), SDR_KEYNOTEXIST,
		  "SDF_InternalSign_ECC with a missing key");
	unsigned char longpw[65];
	memset(longpw, 'p', sizeof(longpw));
	expect_rc(SDF_GetPrivateKeyAccessRight(f->s, 1, longpw, 65), SDR_INARGERR,
		  "SDF_GetPrivateKeyAccessRight with a 65-byte password");
	expect_rc(SDF_GetPrivateKeyAccessRight(f->s, 1, (unsigned char *)"sign-pw", 7), SDR_OK,
		  "SDF_GetPrivateKeyAccessRight sign 1 again");

	/* the right is the session's: another session has none */
	void *s2 = NULL;
	if (expect_rc(open_session_retry(f->dev, &s2), SDR_OK, "a second session")) {
		expect_rc(SDF_InternalSign_ECC(s2, 1, e, 32, &sig), SDR_PARDENY,
			  "an access right does not carry to another session");
		SDF_CloseSession(s2);
	}
}

static void hashing(struct fx *f)
{
	unsigned char h[32], h2[32], e[32];
	unsigned int hl = 0;
	void *s2 = NULL;
	/* a fresh session has no hash in progress */
	if (expect_rc(open_session_retry(f->dev, &s2), SDR_OK, "a session for the hash steps")) {
		expect_rc(SDF_HashUpdate(s2, f->msg, 1), SDR_STEPERR, "SDF_HashUpdate before Init");
		expect_rc(SDF_HashFinal(s2, h, &hl), SDR_STEPERR, "SDF_HashFinal before Init");
		SDF_CloseSession(s2);
	}
	expect_rc(SDF_HashInit(f->s, SGD_SM4_ECB, NULL, NULL, 0), SDR_ALGNOTSUPPORT,
		  "SDF_HashInit with SM4");
	expect_rc(SDF_HashInit(f->s, SGD_SM3, NULL, NULL, 0), SDR_OK, "SDF_HashInit SM3");
	unsigned int half = f->msglen / 2;
	expect_rc(SDF_HashUpdate(f->s, f->msg, half), SDR_OK, "SDF_HashUpdate first half");
	expect_rc(SDF_HashUpdate(f->s, f->msg + half, f->msglen - half), SDR_OK,
		  "SDF_HashUpdate second half");
	if (expect_rc(SDF_HashFinal(f->s, h, &hl), SDR_OK, "SDF_HashFinal")) {
		report(hl == 32, "SDF_HashFinal: 32 bytes");
		put_file("msg.sm3", h, 32);
	}
	expect_rc(SDF_HashFinal(f->s, h, &hl), SDR_STEPERR, "SDF_HashFinal twice");

	ECCrefPublicKey pub, bad;
	if (SDF_ExportSignPublicKey_ECC(f->s, 1, &pub) != SDR_OK)
		return;
	expect_rc(hash_e(f->s, &pub, DEFAULT_ID, f->msg, f->msglen, h), SDR_OK,
		  "SM3 with a public key and the ID " DEFAULT_ID);
	expect_rc(hash_e(f->s, &pub, NULL, f->msg, f->msglen, h2), SDR_OK,
		  "SM3 with a public key and no ID");
	report(memcmp(h, h2, 32) == 0, "no ID is the default ID");
	expect_rc(hash_e(f->s, &pub, "alice@example", f->msg, f->msglen, h2), SDR_OK,
		  "SM3 with a public key and another ID");
	report(memcmp(h, h2, 32) != 0, "another ID, another e");
	bad = pub;
	bad.y[63] ^= 1;
	expect_rc(SDF_HashInit(f->s, SGD_SM3, &bad, NULL, 0), SDR_INARGERR,
		  "SDF_HashInit with a point off the curve");

	/* sign e = SM3(Z || msg) with sign 1 (right held): openssl checks it */
	ECCSignature sig;
	unsigned char der[80];
	memcpy(e, h, 32);
	if (expect_rc(SDF_InternalSign_ECC(f->s, 1, e, 32, &sig), SDR_OK,
		      "SDF_InternalSign_ECC over the message")) {
		size_t n = sig_to_der(&sig, der);
		put_file("sign1.sig.der", der, n);
		expect_rc(SDF_InternalVerify_ECC(f->s, 1, e, 32, &sig), SDR_OK,
			  "SDF_InternalVerify_ECC of it");
		expect_rc(SDF_ExternalVerify_ECC(f->s, SGD_SM2_1, &pub, e, 32, &sig), SDR_OK,
			  "SDF_ExternalVerify_ECC of it");
		e[0] ^= 1;
		expect_rc(SDF_InternalVerify_ECC(f->s, 1, e, 32, &sig), SDR_VERIFYERR,
			  "SDF_InternalVerify_ECC of another digest");
		expect_rc(SDF_ExternalVerify_ECC(f->s, SGD_SM2_1, &pub, e, 32, &sig),
			  SDR_VERIFYERR, "SDF_ExternalVerify_ECC of another digest");
		e[0] ^= 1;
		expect_rc(SDF_InternalVerify_ECC(f->s, 4, e, 32, &sig), SDR_VERIFYERR,
			  "SDF_InternalVerify_ECC with another key");
		expect_rc(SDF_InternalVerify_ECC(f->s, 2, e, 32, &sig), SDR_KEYNOTEXIST,
			  "SDF_InternalVerify_ECC with a missing key");
		expect_rc(SDF_ExternalVerify_ECC(f->s, SGD_SM4_ECB, &pub, e, 32, &sig),
			  SDR_ALGNOTSUPPORT, "SDF_ExternalVerify_ECC with SM4");
		expect_rc(SDF_InternalSign_ECC(f->s, 1, e, 31, &sig), SDR_INARGERR,
			  "SDF_InternalSign_ECC of 31 bytes");
		expect_rc(SDF_ExternalVerify_ECC(f->s, SGD_SM2_1, &bad, e, 32, &sig), SDR_INARGERR,
			  "SDF_ExternalVerify_ECC with a point off the curve");
	}

	/* a signature made by the openssl CLI verifies here */
	unsigned char osig[128];
	long n = get_file("ossl.sig.der", osig, sizeof(osig));
	ECCSignature s2sig;
	if (n < 0 || sig_from_der(osig, (size_t)n, &s2sig) < 0) {
		report(0, "read the openssl signature");
		return;
	}
	expect_rc(hash_e(f->s, &f->ext, DEFAULT_ID, f->msg, f->msglen, e), SDR_OK,
		  "SM3 with the openssl key");
	expect_rc(SDF_ExternalVerify_ECC(f->s, SGD_SM2_1, &f->ext, e, 32, &s2sig), SDR_OK,
		  "SDF_ExternalVerify_ECC of an openssl signature");
	s2sig.s[63] ^= 1;
	expect_rc(SDF_ExternalVerify_ECC(f->s, SGD_SM2_1, &f->ext, e, 32, &s2sig), SDR_VERIFYERR,
		  "SDF_ExternalVerify_ECC of a tampered openssl signature");
}

/* ECB and CBC under a handle into files NAME.ecb, NAME.cbc, NAME.mac for
 * the openssl CLI; checks the round trips. */
static void sm4_with(struct fx *f, void *key, const char *name)
{
	unsigned char data[64], out[64], back[64], iv[16], iv0[16], mac[16], chain[64];
	unsigned int ol = 0, bl = 0, ml = 0;
	char fname[64];
	for (int i = 0; i < 64; i++)
		data[i] = (unsigned char)(i * 7 + 1);
	for (int i = 0; i < 16; i++)
		iv0[i] = (unsigned char)(0xF0 + i);
	put_file("sm4.data", data, 64);
	put_file("sm4.iv", iv0, 16);

	if (expect_rc(SDF_Encrypt(f->s, key, SGD_SM4_ECB, NULL, data, 64, out, &ol), SDR_OK,
		      "SDF_Encrypt ECB")) {
		snprintf(fname, sizeof(fname), "%s.ecb", name);
		put_file(fname, out, ol);
		expect_rc(SDF_Decrypt(f->s, key, SGD_SM4_ECB, NULL, out, 64, back, &bl), SDR_OK,
			  "SDF_Decrypt ECB");
		report(ol == 64 && bl == 64 && memcmp(back, data, 64) == 0,
		       "SM4 ECB round trip (%s)", name);
	}
	memcpy(iv, iv0, 16);
	if (expect_rc(SDF_Encrypt(f->s, key, SGD_SM4_CBC, iv, data, 64, out, &ol), SDR_OK,
		      "SDF_Encrypt CBC")) {
		snprintf(fname, sizeof(fname), "%s.cbc", name);
		put_file(fname, out, ol);
		report(memcmp(iv, out + 48, 16) == 0, "CBC: the IV becomes the last block");
		memcpy(iv, iv0, 16);
		expect_rc(SDF_Decrypt(f->s, key, SGD_SM4_CBC, iv, out, 64, back, &bl), SDR_OK,
			  "SDF_Decrypt CBC");
		report(bl == 64 && memcmp(back, data, 64) == 0, "SM4 CBC round trip (%s)", name);
		/* two calls chain like one */
		memcpy(iv, iv0, 16);
		int rc = SDF_Encrypt(f->s, key, SGD_SM4_CBC, iv, data, 32, chain, &ol);
		if (rc == SDR_OK)
			rc = SDF_Encrypt(f->s, key, SGD_SM4_CBC, iv, data + 32, 32, chain + 32, &ol);
		report(rc == SDR_OK && memcmp(chain, out, 64) == 0, "CBC in two calls chains");
	}
	memcpy(iv, iv0, 16);
	if (expect_rc(SDF_CalculateMAC(f->s, key, SGD_SM4_MAC, iv, data, 64, mac, &ml), SDR_OK,
		      "SDF_CalculateMAC")) {
		report(ml == 16, "MAC: 16 bytes");
		snprintf(fname, sizeof(fname), "%s.mac", name);
		put_file(fname, mac, 16);
		memcpy(iv, iv0, 16);
		int rc = SDF_CalculateMAC(f->s, key, SGD_SM4_MAC, iv, data, 32, chain, &ml);
		if (rc == SDR_OK)
			rc = SDF_CalculateMAC(f->s, key, SGD_SM4_MAC, iv, data + 32, 32, chain, &ml);
		report(rc == SDR_OK && memcmp(chain, mac, 16) == 0, "MAC in two calls");
	}
}

/* SM4-ECB over the largest payload (1 MiB) into big.ecb for openssl;
 * one block more is refused. */
static void sm4_large(struct fx *f, void *key)
{
	unsigned int n = 1024 * 1024, ol = 0;
	unsigned char *data = malloc(n + 16), *out = malloc(n + 16);
	if (!data || !out) {
		report(0, "memory");
		goto out;
	}
	for (unsigned int i = 0; i < n + 16; i++)
		data[i] = (unsigned char)(i * 31 + (i >> 8));
	put_file("big.data", data, n);
	if (expect_rc(SDF_Encrypt(f->s, key, SGD_SM4_ECB, NULL, data, n, out, &ol), SDR_OK,
		      "SDF_Encrypt of 1 MiB")) {
		report(ol == n, "1 MiB out");
		put_file("big.ecb", out, ol);
		expect_rc(SDF_Decrypt(f->s, key, SGD_SM4_ECB, NULL, out, n, out, &ol), SDR_OK,
			  "SDF_Decrypt of 1 MiB in place");
		report(ol == n && memcmp(out, data, n) == 0, "1 MiB round trip");
	}
	expect_rc(SDF_Encrypt(f->s, key, SGD_SM4_ECB, NULL, data, n + 16, out, &ol), SDR_INARGERR,
		  "SDF_Encrypt of 1 MiB + 16");
out:
	free(data);
	free(out);
}

static int same_ecb(struct fx *f, void *k1, void *k2)
{
	unsigned char d[16] = "sixteen bytes!!", a[16], b[16];
	unsigned int al, bl;
	return SDF_Encrypt(f->s, k1, SGD_SM4_ECB, NULL, d, 16, a, &al) == SDR_OK &&
	       SDF_Encrypt(f->s, k2, SGD_SM4_ECB, NULL, d, 16, b, &bl) == SDR_OK &&
	       memcmp(a, b, 16) == 0;
}

static void session_keys(struct fx *f)
{
	ECCCipher *c = calloc(1, ECCCIPHER_SIZE(136));
	ECCCipher *c2 = calloc(1, ECCCIPHER_SIZE(136));
	unsigned char der[600], k[16], plain[136];
	unsigned int pl = 0;
	void *h1 = NULL, *h2 = NULL, *h3 = NULL, *h4 = NULL;
	ECCrefPublicKey enc2;
	if (!c || !c2) {
		report(0, "memory");
		goto out;
	}

	/* EPK: the session key under the openssl key; openssl decrypts it */
	expect_rc(SDF_GenerateKeyWithEPK_ECC(f->s, 128, SGD_SM2_1, &f->ext, c, &h1),
		  SDR_ALGNOTSUPPORT, "SDF_GenerateKeyWithEPK_ECC with SGD_SM2_1");
	expect_rc(SDF_GenerateKeyWithEPK_ECC(f->s, 256, SGD_SM2_3, &f->ext, c, &h1), SDR_INARGERR,
		  "SDF_GenerateKeyWithEPK_ECC of 256 bits");
	if (expect_rc(SDF_GenerateKeyWithEPK_ECC(f->s, 128, SGD_SM2_3, &f->ext, c, &h1), SDR_OK,
		      "SDF_GenerateKeyWithEPK_ECC")) {
		report(c->L == 16, "EPK: a 16-byte key in the cipher");
		put_file("epk.cipher.der", der, cipher_to_der(c, der));
		sm4_with(f, h1, "epk");
	}

	/* external encrypt to the openssl key: openssl decrypts it */
	static const char secret[] = "a secret for the openssl CLI";
	expect_rc(SDF_ExternalEncrypt_ECC(f->s, SGD_SM2_1, &f->ext, (unsigned char *)secret, 10, c),
		  SDR_ALGNOTSUPPORT, "SDF_ExternalEncrypt_ECC with SGD_SM2_1");
	expect_rc(SDF_ExternalEncrypt_ECC(f->s, SGD_SM2_3, &f->ext, plain, 137, c), SDR_INARGERR,
		  "SDF_ExternalEncrypt_ECC of 137 bytes");
	if (expect_rc(SDF_ExternalEncrypt_ECC(f->s, SGD_SM2_3, &f->ext, (unsigned char *)secret,
					      sizeof(secret) - 1, c),
		      SDR_OK, "SDF_ExternalEncrypt_ECC to the openssl key"))
		put_file("ext.cipher.der", der, cipher_to_der(c, der));

	/* external encrypt of a key to enc 2; the VSM decrypts it */
	if (SDF_ExportEncPublicKey_ECC(f->s, 2, &enc2) != SDR_OK ||
	    SDF_GenerateRandom(f->s, 16, k) != SDR_OK) {
		report(0, "enc 2 and a random key");
		goto out;
	}
	put_file("isk.key", k, 16);
	if (expect_rc(SDF_ExternalEncrypt_ECC(f->s, SGD_SM2_3, &enc2, k, 16, c), SDR_OK,
		      "SDF_ExternalEncrypt_ECC of a key to enc 2")) {
		expect_rc(SDF_ImportKeyWithISK_ECC(f->s, 2, c, &h2), SDR_PARDENY,
			  "SDF_ImportKeyWithISK_ECC without the right");
		expect_rc(SDFX_InternalDecrypt_ECC(f->s, 2, c, plain, &pl), SDR_PARDENY,
			  "SDFX_InternalDecrypt_ECC without the right");
		expect_rc(SDF_GetPrivateKeyAccessRight(f->s, 2, (unsigned char *)"enc-pw", 6),
			  SDR_OK, "SDF_GetPrivateKeyAccessRight enc 2");
		if (expect_rc(SDF_ImportKeyWithISK_ECC(f->s, 2, c, &h2), SDR_OK,
			      "SDF_ImportKeyWithISK_ECC")) {
			sm4_with(f, h2, "isk");
			sm4_large(f, h2);
		}
		if (expect_rc(SDFX_InternalDecrypt_ECC(f->s, 2, c, plain, &pl), SDR_OK,
			      "SDFX_InternalDecrypt_ECC"))
			report(pl == 16 && memcmp(plain, k, 16) == 0,
			       "the VSM decrypts what SDF_ExternalEncrypt_ECC made");
		unsigned char twenty[20] = "twenty bytes, not 16";
		ECCCipher *c20 = calloc(1, ECCCIPHER_SIZE(20));
		if (c20 && SDF_ExternalEncrypt_ECC(f->s, SGD_SM2_3, &enc2, twenty, 20, c20) == SDR_OK) {
			expect_rc(SDF_ImportKeyWithISK_ECC(f->s, 2, c20, &h3), SDR_KEYERR,
				  "SDF_ImportKeyWithISK_ECC of 20 bytes");
			if (expect_rc(SDFX_InternalDecrypt_ECC(f->s, 2, c20, plain, &pl), SDR_OK,
				      "SDFX_InternalDecrypt_ECC of 20 bytes"))
				report(pl == 20 && memcmp(plain, twenty, 20) == 0,
				       "the VSM decrypts the 20 bytes");
		} else {
			report(0, "SDF_ExternalEncrypt_ECC of 20 bytes");
		}
		free(c20);
		c->M[0] ^= 1;
		expect_rc(SDF_ImportKeyWithISK_ECC(f->s, 2, c, &h3), SDR_ENCDATAERR,
			  "SDF_ImportKeyWithISK_ECC of a tampered cipher");
		expect_rc(SDF_ImportKeyWithISK_ECC(f->s, 1, c, &h3), SDR_KEYNOTEXIST,
			  "SDF_ImportKeyWithISK_ECC with a missing enc key");
	}

	/* IPK: generated under enc 2, imported back */
	expect_rc(SDF_GenerateKeyWithIPK_ECC(f->s, 1, 128, c2, &h3), SDR_KEYNOTEXIST,
		  "SDF_GenerateKeyWithIPK_ECC with a missing enc key");
	expect_rc(SDF_GenerateKeyWithIPK_ECC(f->s, 2, 64, c2, &h3), SDR_INARGERR,
		  "SDF_GenerateKeyWithIPK_ECC of 64 bits");
	if (expect_rc(SDF_GenerateKeyWithIPK_ECC(f->s, 2, 128, c2, &h3), SDR_OK,
		      "SDF_GenerateKeyWithIPK_ECC") &&
	    expect_rc(SDF_ImportKeyWithISK_ECC(f->s, 2, c2, &h4), SDR_OK,
		      "SDF_ImportKeyWithISK_ECC of its cipher"))
		report(same_ecb(f, h3, h4), "IPK and ISK handles hold the same key");
	if (h4)
		expect_rc(SDF_DestroyKey(f->s, h4), SDR_OK, "SDF_DestroyKey (ISK)");
	expect_rc(SDF_ReleasePrivateKeyAccessRight(f->s, 2), SDR_OK,
		  "SDF_ReleasePrivateKeyAccessRight 2");
	expect_rc(SDF_ImportKeyWithISK_ECC(f->s, 2, c2, &h4), SDR_PARDENY,
		  "SDF_ImportKeyWithISK_ECC after the release");

	/* KEK */
	unsigned char wrapped[16];
	unsigned int wl = 0;
	void *k1 = NULL, *k2 = NULL;
	expect_rc(SDF_GenerateKeyWithKEK(f->s, 128, SGD_SM4_ECB, 1, wrapped, &wl, &k1),
		  SDR_KEYNOTEXIST, "SDF_GenerateKeyWithKEK with a missing KEK");
	expect_rc(SDF_GenerateKeyWithKEK(f->s, 128, SGD_SM4_CBC, 3, wrapped, &wl, &k1),
		  SDR_ALGNOTSUPPORT, "SDF_GenerateKeyWithKEK with SM4 CBC");
	if (expect_rc(SDF_GenerateKeyWithKEK(f->s, 128, SGD_SM4_ECB, 3, wrapped, &wl, &k1),
		      SDR_OK, "SDF_GenerateKeyWithKEK")) {
		report(wl == 16, "the wrapped key is 16 bytes");
		if (expect_rc(SDF_ImportKeyWithKEK(f->s, SGD_SM4_ECB, 3, wrapped, wl, &k2), SDR_OK,
			      "SDF_ImportKeyWithKEK"))
			report(same_ecb(f, k1, k2), "KEK generate and import hold the same key");
		expect_rc(SDF_ImportKeyWithKEK(f->s, SGD_SM4_ECB, 3, wrapped, 15, &k2), SDR_INARGERR,
			  "SDF_ImportKeyWithKEK of 15 bytes");
		expect_rc(SDF_ImportKeyWithKEK(f->s, SGD_SM4_ECB, 4, wrapped, 16, &k2),
			  SDR_KEYNOTEXIST, "SDF_ImportKeyWithKEK with a missing KEK");
		expect_rc(SDF_DestroyKey(f->s, k1), SDR_OK, "SDF_DestroyKey");
		unsigned char d[16] = {0}, o[16];
		unsigned int ol;
		expect_rc(SDF_Encrypt(f->s, k1, SGD_SM4_ECB, NULL, d, 16, o, &ol), SDR_KEYNOTEXIST,
			  "SDF_Encrypt with a destroyed key");
		expect_rc(SDF_DestroyKey(f->s, k1), SDR_KEYNOTEXIST, "SDF_DestroyKey twice");
		expect_rc(SDF_Encrypt(f->s, k2, SGD_SM4_ECB, NULL, d, 15, o, &ol), SDR_INARGERR,
			  "SDF_Encrypt of 15 bytes");
		expect_rc(SDF_Encrypt(f->s, k2, SGD_SM4_CBC, NULL, d, 16, o, &ol), SDR_INARGERR,
			  "SDF_Encrypt CBC without an IV");
		expect_rc(SDF_Encrypt(f->s, k2, SGD_SM4_MAC, NULL, d, 16, o, &ol), SDR_ALGNOTSUPPORT,
			  "SDF_Encrypt with SGD_SM4_MAC");
		expect_rc(SDF_CalculateMAC(f->s, k2, SGD_SM4_ECB, d, d, 16, o, &ol),
			  SDR_ALGNOTSUPPORT, "SDF_CalculateMAC with SGD_SM4_ECB");
		/* a handle of this session means nothing in another one */
		void *s2 = NULL;
		if (expect_rc(open_session_retry(f->dev, &s2), SDR_OK, "another session")) {
			expect_rc(SDF_Encrypt(s2, k2, SGD_SM4_ECB, NULL, d, 16, o, &ol),
				  SDR_KEYNOTEXIST, "a session key of another session");
			SDF_CloseSession(s2);
		}
	}

	/* at most 64 session keys per session */
	static void *hs[80];
	int made = 0, rc = SDR_OK, freed = 0;
	for (int i = 0; i < 80 && rc == SDR_OK; i++) {
		rc = SDF_GenerateKeyWithKEK(f->s, 128, SGD_SM4_ECB, 3, wrapped, &wl, &hs[made]);
		made += rc == SDR_OK;
	}
	expect_rc(rc, SDR_NOBUFFER, "session keys past 64");
	report(made > 0 && made <= 64, "session keys made before the limit: %d", made);
	for (int i = 0; i < made; i++)
		freed += SDF_DestroyKey(f->s, hs[i]) == SDR_OK;
	report(freed == made, "SDF_DestroyKey frees them (%d)", freed);
	expect_rc(SDF_GenerateKeyWithKEK(f->s, 128, SGD_SM4_ECB, 3, wrapped, &wl, &hs[0]), SDR_OK,
		  "a session key once they are destroyed");
	SDF_DestroyKey(f->s, hs[0]);
out:
	free(c);
	free(c2);
}

static void key_pair(struct fx *f)
{
	ECCrefPublicKey pub;
	ECCrefPrivateKey priv;
	expect_rc(SDF_GenerateKeyPair_ECC(f->s, SGD_SM4_ECB, 256, &pub, &priv), SDR_ALGNOTSUPPORT,
		  "SDF_GenerateKeyPair_ECC with SM4");
	expect_rc(SDF_GenerateKeyPair_ECC(f->s, SGD_SM2_1, 512, &pub, &priv), SDR_INARGERR,
		  "SDF_GenerateKeyPair_ECC of 512 bits");
	if (expect_rc(SDF_GenerateKeyPair_ECC(f->s, SGD_SM2_1, 256, &pub, &priv), SDR_OK,
		      "SDF_GenerateKeyPair_ECC")) {
		unsigned char point[65];
		point_of(&pub, point);
		report(pub.bits == 256 && priv.bits == 256, "key pair: 256 bits");
		put_file("pair.point", point, 65);
		put_file("pair.d", priv.K + 32, 32);
		memset(&priv, 0, sizeof(priv));
	}
}

/* Fills every index with a KEK until the VSM refuses: the refusal is at
 * maxKeys + 1, and the keys made before still work. */
static void max_keys(struct fx *f, unsigned int max)
{
	unsigned int idx = 1, made = 0;
	int rc = SDR_OK;
	for (; idx <= 64; idx++) {
		rc = SDFX_GenerateInternalKey(f->s, SDFX_KEY_KEK, idx, NULL);
		if (rc == SDR_KEYERR)
			continue; /* kek 3 is there */
		if (rc != SDR_OK)
			break;
		made++;
	}
	expect_rc(rc, SDR_INARGERR, "a key past maxKeys");
	report(idx == max + 1, "refused at index %u (maxKeys %u)", idx, max);
	SDFX_KEYINFO k[32];
	unsigned int n = 32;
	expect_rc(SDFX_ListKeys(f->s, k, &n), SDR_OK, "SDFX_ListKeys when full");
	report(n == 4 + made, "%u keys listed", n);
	unsigned char e[32] = {7}, w[16];
	unsigned int wl;
	ECCSignature sig;
	void *h;
	expect_rc(SDF_InternalSign_ECC(f->s, 4, e, 32, &sig), SDR_OK, "sign 4 still signs");
	expect_rc(SDF_InternalVerify_ECC(f->s, 4, e, 32, &sig), SDR_OK, "and verifies");
	if (expect_rc(SDF_GenerateKeyWithKEK(f->s, 128, SGD_SM4_ECB, 1, w, &wl, &h), SDR_OK,
		      "a KEK made at index 1 works"))
		SDF_DestroyKey(f->s, h);
	expect_rc(SDFX_DestroyInternalKey(f->s, SDFX_KEY_KEK, 1), SDR_OK, "destroy kek 1");
	expect_rc(SDFX_GenerateInternalKey(f->s, SDFX_KEY_KEK, 1, NULL), SDR_OK,
		  "and make it again");
}

static int scenario_functions(int argc, char **argv)
{
	struct fx f;
	memset(&f, 0, sizeof(f));
	if (argc < 2) {
		fprintf(stderr, "usage: functions DIR VSMID\n");
		return 2;
	}
	dir = argv[0];
	unsigned char point[80];
	long n = get_file("msg.bin", f.msg, sizeof(f.msg));
	long pn = get_file("ext.point", point, sizeof(point));
	if (n <= 0 || pn != 65 || pub_from_point(point, &f.ext) < 0) {
		report(0, "read msg.bin and ext.point");
		return 1;
	}
	f.msglen = (unsigned int)n;
	expect_rc(SDF_OpenDevice(NULL), SDR_INARGERR, "SDF_OpenDevice NULL");
	if (!expect_rc(SDF_OpenDevice(&f.dev), SDR_OK, "SDF_OpenDevice from the environment"))
		return 1;
	expect_rc(SDF_OpenSession(f.dev, NULL), SDR_INARGERR, "SDF_OpenSession NULL");
	if (!expect_rc(open_session_retry(f.dev, &f.s), SDR_OK, "SDF_OpenSession")) {
		SDF_CloseDevice(f.dev);
		return 1;
	}
	void *dev2 = NULL, *s2 = NULL;
	unsigned char r[8];
	if (expect_rc(SDF_OpenDevice(&dev2), SDR_OK, "a second device") &&
	    expect_rc(open_session_retry(dev2, &s2), SDR_OK, "a session of it")) {
		expect_rc(SDF_CloseDevice(dev2), SDR_OK, "SDF_CloseDevice with a session open");
		expect_rc(SDF_GenerateRandom(s2, sizeof(r), r), SDR_OK,
			  "the session outlives its device");
		SDF_CloseSession(s2);
	}
	device_and_random(&f, argv[1]);
	key_management(&f);
	exports_and_rights(&f);
	hashing(&f);
	session_keys(&f);
	key_pair(&f);
	max_keys(&f, 4);
	expect_rc(SDF_CloseSession(f.s), SDR_OK, "SDF_CloseSession");
	expect_rc(SDF_CloseSession(NULL), SDR_INARGERR, "SDF_CloseSession NULL");
	expect_rc(SDF_CloseSession(f.dev), SDR_INARGERR, "SDF_CloseSession of a device");
	expect_rc(SDF_CloseDevice(f.dev), SDR_OK, "SDF_CloseDevice");
	expect_rc(SDF_CloseDevice(NULL), SDR_INARGERR, "SDF_CloseDevice NULL");
	return failures ? 1 : 0;
}

/* ---- scenario: opening ---- */

static int code_by_name(const char *name)
{
	for (int c = SDR_BASE; c <= SDR_OUTARGERR; c++)
		if (strcmp(SDFX_ErrorName(c), name) == 0)
			return c;
	return strcmp(name, "SDR_OK") == 0 ? SDR_OK : -1;
}

/* Pairs of CODE and CONFIG ("-": the environment), tried in order in one
 * process (so that the second of two comes right after the first). */
static int scenario_open(int argc, char **argv)
{
	if (argc < 2 || argc % 2) {
		fprintf(stderr, "usage: open SDR_NAME CONFIG|- [SDR_NAME CONFIG|-]...\n");
		return 2;
	}
	for (int i = 0; i + 1 < argc; i += 2) {
		int want = code_by_name(argv[i]);
		const char *conf = strcmp(argv[i + 1], "-") == 0 ? NULL : argv[i + 1];
		void *dev = NULL, *s = NULL;
		char what[4200];
		if (want < 0)
			return 2;
		int rc = open_device_from(conf, &dev);
		if (rc == SDR_OK) {
			rc = SDF_OpenSession(dev, &s);
			if (rc == SDR_OK) {
				unsigned char r[8];
				expect_rc(SDF_GenerateRandom(s, sizeof(r), r), SDR_OK,
					  "the session works");
				SDF_CloseSession(s);
			}
			SDF_CloseDevice(dev);
		}
		snprintf(what, sizeof(what), "open %s", conf ? conf : "from the environment");
		expect_rc(rc, want, what);
	}
	return failures ? 1 : 0;
}

/* A session opens within 15 s (once the back-off after failures ends). */
static int scenario_open_wait(void)
{
	void *dev = NULL, *s = NULL;
	int rc = SDF_OpenDevice(&dev);
	for (int i = 0; dev && i < 150; i++) {
		rc = SDF_OpenSession(dev, &s);
		if (rc != SDR_PARDENY)
			break;
		sleep_ms(100);
	}
	if (rc == SDR_OK)
		SDF_CloseSession(s);
	if (dev)
		SDF_CloseDevice(dev);
	expect_rc(rc, SDR_OK, "the right token opens a session once the back-off ends");
	return failures ? 1 : 0;
}

/* ---- scenario: maxSessions ---- */

static int scenario_sessions(int argc, char **argv)
{
	if (argc < 1)
		return 2;
	char *end;
	long lmax = strtol(argv[0], &end, 10);
	int max = *end == 0 && lmax > 0 && lmax < 60 ? (int)lmax : 0;
	void *dev = NULL, *s[64];
	int n = 0, rc = SDR_OK;
	if (!max || !expect_rc(SDF_OpenDevice(&dev), SDR_OK, "SDF_OpenDevice"))
		return 1;
	/* the sessions of an earlier run may still be counted for a moment */
	rc = open_session_retry(dev, &s[n]);
	while (rc == SDR_OK) {
		unsigned char r[4];
		if (SDF_GenerateRandom(s[n], 4, r) != SDR_OK)
			report(0, "session %d works", n + 1);
		n++;
		if (n == max + 2)
			break;
		rc = SDF_OpenSession(dev, &s[n]);
	}
	report(n == max, "%d sessions open at once (maxSessions %d)", n, max);
	expect_rc(rc, SDR_OPENSESSION, "one session more is refused");
	if (n > 0) {
		expect_rc(SDF_CloseSession(s[0]), SDR_OK, "close one");
		s[0] = NULL;
		void *again = NULL;
		if (expect_rc(open_session_retry(dev, &again), SDR_OK,
			      "a session opens after one closed")) {
			unsigned char r[4];
			expect_rc(SDF_GenerateRandom(again, 4, r), SDR_OK, "and works");
			SDF_CloseSession(again);
		}
	}
	for (int i = 1; i < n; i++) {
		unsigned char r[4];
		if (SDF_GenerateRandom(s[i], 4, r) != SDR_OK)
			report(0, "session %d still works", i + 1);
		SDF_CloseSession(s[i]);
	}
	SDF_CloseDevice(dev);
	return failures ? 1 : 0;
}

/* ---- scenario: malformed frames on a raw socket ---- */

static int raw_connect(void)
{
	const char *ep = getenv("OPENCHSM_SDF_ENDPOINT");
	char host[256];
	const char *colon = ep ? strrchr(ep, ':') : NULL;
	if (!colon || (size_t)(colon - ep) >= sizeof(host))
		return -1;
	memcpy(host, ep, (size_t)(colon - ep));
	host[colon - ep] = 0;
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
	if (getaddrinfo(host, colon + 1, &hints, &res) != 0)
		return -1;
	int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd >= 0 && connect(fd, res->ai_addr, res->ai_addrlen) < 0) {
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd >= 0) {
		struct timeval tv = {.tv_sec = 20};
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	}
	return fd;
}

static int read_n(int fd, unsigned char *p, size_t n)
{
	while (n > 0) {
		ssize_t k = recv(fd, p, n, 0);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return -1;
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

static unsigned long be32(const unsigned char *p)
{
	return (unsigned long)p[0] << 24 | (unsigned long)p[1] << 16 | (unsigned long)p[2] << 8 |
	       p[3];
}

/* Reads one frame header and its payload; returns the status or -1. */
static long read_frame(int fd, unsigned *ret_type, unsigned long *ret_len)
{
	unsigned char h[20], sink[512];
	if (read_n(fd, h, 20) < 0 || be32(h) != 0x564D5031UL)
		return -1;
	unsigned long len = be32(h + 16);
	if (len > sizeof(sink) || read_n(fd, sink, len) < 0)
		return -1;
	*ret_type = (unsigned)(h[4] << 8 | h[5]);
	*ret_len = len;
	return (long)be32(h + 12);
}

static void header(unsigned char *h, unsigned type, unsigned flags, unsigned long len)
{
	memset(h, 0, 20);
	h[0] = 0x56, h[1] = 0x4D, h[2] = 0x50, h[3] = 0x31;
	h[4] = (unsigned char)(type >> 8), h[5] = (unsigned char)type;
	h[6] = (unsigned char)(flags >> 8), h[7] = (unsigned char)flags;
	h[11] = 1;
	h[16] = (unsigned char)(len >> 24), h[17] = (unsigned char)(len >> 16);
	h[18] = (unsigned char)(len >> 8), h[19] = (unsigned char)len;
}

struct bad_frame {
	const char *name;
	unsigned char bytes[64];
	size_t len;
	int half_close; /* shut our side after sending */
	int error_frame; /* an SDR_COMMFAIL frame is expected before the close */
};

static int scenario_frames(void)
{
	struct bad_frame cases[7];
	memset(cases, 0, sizeof(cases));
	int nc = 0;
	cases[nc].name = "garbage (an HTTP request)";
	memcpy(cases[nc].bytes, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27);
	cases[nc].len = 27, cases[nc].error_frame = 1, nc++;
	cases[nc].name = "an oversized length (1 MiB before AUTH)";
	header(cases[nc].bytes, 0x0002, 0, 1024 * 1024);
	cases[nc].len = 20, cases[nc].error_frame = 1, nc++;
	cases[nc].name = "the largest length (4 GiB - 1)";
	header(cases[nc].bytes, 0x0002, 0, 0xFFFFFFFFUL);
	cases[nc].len = 20, cases[nc].error_frame = 1, nc++;
	cases[nc].name = "flags not 0";
	header(cases[nc].bytes, 0x0002, 1, 0);
	cases[nc].len = 20, cases[nc].error_frame = 1, nc++;
	cases[nc].name = "a request before AUTH";
	header(cases[nc].bytes, 0x0010, 0, 0);
	cases[nc].len = 20, cases[nc].error_frame = 1, nc++;
	cases[nc].name = "a truncated AUTH, then silence (10 s)";
	header(cases[nc].bytes, 0x0002, 0, 100);
	memset(cases[nc].bytes + 20, 0, 10);
	cases[nc].len = 30, cases[nc].error_frame = 1, nc++;
	cases[nc].name = "a truncated AUTH, then end of stream";
	header(cases[nc].bytes, 0x0002, 0, 100);
	cases[nc].len = 30, cases[nc].half_close = 1, nc++;

	for (int i = 0; i < nc; i++) {
		struct bad_frame *c = &cases[i];
		unsigned type;
		unsigned long len;
		int fd = raw_connect();
		if (fd < 0 || read_frame(fd, &type, &len) != 0 || type != 0x0001) {
			report(0, "%s: connect and HELLO", c->name);
			if (fd >= 0)
				close(fd);
			continue;
		}
		if (send(fd, c->bytes, c->len, MSG_NOSIGNAL) != (ssize_t)c->len) {
			report(0, "%s: send", c->name);
			close(fd);
			continue;
		}
		if (c->half_close)
			shutdown(fd, SHUT_WR);
		if (c->error_frame) {
			long st = read_frame(fd, &type, &len);
			report(st == SDR_COMMFAIL && len == 0 && (type & 0x8000),
			       "%s: an SDR_COMMFAIL frame (status 0x%lX, type 0x%04X)", c->name,
			       (unsigned long)st, type);
		}
		unsigned char b;
		ssize_t k;
		do
			k = recv(fd, &b, 1, 0);
		while (k < 0 && errno == EINTR);
		report(k == 0 || (k < 0 && errno == ECONNRESET), "%s: the VSM closes the connection",
		       c->name);
		close(fd);

		void *dev = NULL, *s = NULL;
		unsigned char r[8];
		int rc = SDF_OpenDevice(&dev);
		if (rc == SDR_OK)
			rc = open_session_retry(dev, &s);
		if (rc == SDR_OK) {
			rc = SDF_GenerateRandom(s, sizeof(r), r);
			SDF_CloseSession(s);
		}
		if (dev)
			SDF_CloseDevice(dev);
		expect_rc(rc, SDR_OK, "after it, a new client is served");
	}
	return failures ? 1 : 0;
}

/* ---- scenario: the VSM is killed under an open session ---- */

static int scenario_killed(int argc, char **argv)
{
	if (argc < 1)
		return 2;
	dir = argv[0];
	void *dev = NULL, *s = NULL;
	DEVICEINFO info;
	if (!expect_rc(SDF_OpenDevice(&dev), SDR_OK, "SDF_OpenDevice") ||
	    !expect_rc(open_session_retry(dev, &s), SDR_OK, "SDF_OpenSession") ||
	    !expect_rc(SDF_GetDeviceInfo(s, &info), SDR_OK, "the session works"))
		return 1;
	put_file("ready", "1", 1);
	for (int i = 0; i < 600 && !file_exists("killed"); i++)
		sleep_ms(100);
	if (!file_exists("killed")) {
		report(0, "the script killed the VSM");
		return 1;
	}
	alarm(30); /* the calls below must answer, not hang */
	unsigned char r[16], e[32] = {1};
	ECCSignature sig;
	expect_rc(SDF_GenerateRandom(s, sizeof(r), r), SDR_COMMFAIL,
		  "SDF_GenerateRandom on a killed VSM");
	expect_rc(SDF_InternalSign_ECC(s, 4, e, 32, &sig), SDR_COMMFAIL,
		  "every later call on the session");
	expect_rc(SDF_HashInit(s, SGD_SM3, NULL, NULL, 0), SDR_OK,
		  "the library's hash still works on the broken session");
	void *s2 = NULL;
	expect_rc(SDF_OpenSession(dev, &s2), SDR_OPENSESSION, "SDF_OpenSession to a killed VSM");
	expect_rc(SDF_CloseSession(s), SDR_OK, "SDF_CloseSession of the broken session");
	SDF_CloseDevice(dev);
	return failures ? 1 : 0;
}

/* ---- scenario: threads ---- */

#define THREAD_ROUNDS 50

struct worker {
	const char *conf;
	unsigned int index;
	void *dev;     /* shared device, or NULL to open its own */
	void *session; /* shared session, or NULL to open its own */
	int id, errors;
	pthread_t t;
};

static void *work(void *arg)
{
	struct worker *w = arg;
	void *dev = w->dev, *s = w->session;
	ECCrefPublicKey pub;
	int rc = SDR_OK;
	if (!dev)
		rc = open_device_from(w->conf, &dev);
	if (rc == SDR_OK && !s)
		rc = open_session_retry(dev, &s);
	if (rc == SDR_OK)
		rc = SDF_ExportSignPublicKey_ECC(s, w->index, &pub);
	if (rc != SDR_OK) {
		report(0, "thread %d: open and export: %s", w->id, SDFX_ErrorName(rc));
		w->errors++;
		goto out;
	}
	for (int i = 0; i < THREAD_ROUNDS; i++) {
		unsigned char e[32];
		ECCSignature sig;
		if (SDF_GenerateRandom(s, 32, e) != SDR_OK ||
		    SDF_InternalSign_ECC(s, w->index, e, 32, &sig) != SDR_OK ||
		    SDF_InternalVerify_ECC(s, w->index, e, 32, &sig) != SDR_OK ||
		    SDF_ExternalVerify_ECC(s, SGD_SM2_1, &pub, e, 32, &sig) != SDR_OK) {
			w->errors++;
			continue;
		}
		e[i % 32] ^= 0x80;
		if (SDF_ExternalVerify_ECC(s, SGD_SM2_1, &pub, e, 32, &sig) != SDR_VERIFYERR)
			w->errors++;
	}
	report(w->errors == 0, "thread %d (%s, key %u%s): %d signatures and verifications, %d errors",
	       w->id, w->conf, w->index, w->session ? ", a shared session" : "", THREAD_ROUNDS,
	       w->errors);
out:
	if (s && !w->session)
		SDF_CloseSession(s);
	if (dev && !w->dev)
		SDF_CloseDevice(dev);
	return NULL;
}

static int scenario_threads(int argc, char **argv)
{
	/* Per CONF:INDEX argument: a thread with its own session on the shared
	 * device, a thread with its own device; on the first, also two threads
	 * sharing one session on the shared device. */
	struct worker w[32];
	void *devs[8] = {0}, *shared_s = NULL;
	int nw = 0;
	memset(w, 0, sizeof(w));
	for (int a = 0; a < argc && a < 8; a++) {
		char *colon = strrchr(argv[a], ':');
		if (!colon)
			return 2;
		*colon = 0;
		char *end;
		unsigned long index = strtoul(colon + 1, &end, 10);
		if (*end || index < 1 || index > 1000000)
			return 2;
		if (!expect_rc(SDFX_OpenDeviceWithConfig(argv[a], &devs[a]), SDR_OK, argv[a]))
			return 1;
		for (int k = 0; k < 2; k++) {
			w[nw].conf = argv[a];
			w[nw].index = (unsigned int)index;
			w[nw].dev = k == 0 ? devs[a] : NULL;
			w[nw].id = nw;
			nw++;
		}
		if (a == 0) {
			if (!expect_rc(open_session_retry(devs[a], &shared_s), SDR_OK,
				       "a session shared by two threads"))
				return 1;
			for (int k = 0; k < 2; k++) {
				w[nw].conf = argv[a];
				w[nw].index = (unsigned int)index;
				w[nw].dev = devs[a];
				w[nw].session = shared_s;
				w[nw].id = nw;
				nw++;
			}
		}
	}
	for (int i = 0; i < nw; i++)
		if (pthread_create(&w[i].t, NULL, work, &w[i]) != 0) {
			report(0, "pthread_create");
			return 1;
		}
	for (int i = 0; i < nw; i++)
		pthread_join(w[i].t, NULL);
	if (shared_s)
		SDF_CloseSession(shared_s);
	for (int a = 0; a < 8; a++)
		if (devs[a])
			SDF_CloseDevice(devs[a]);
	return failures ? 1 : 0;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: sdf_e2e SCENARIO [ARGS] (see the source)\n");
		return 2;
	}
	signal(SIGALRM, on_alarm);
	alarm(SCENARIO_SECONDS);
	const char *sc = argv[1];
	if (strcmp(sc, "functions") == 0)
		return scenario_functions(argc - 2, argv + 2);
	if (strcmp(sc, "open") == 0)
		return scenario_open(argc - 2, argv + 2);
	if (strcmp(sc, "open-wait") == 0)
		return scenario_open_wait();
	if (strcmp(sc, "sessions") == 0)
		return scenario_sessions(argc - 2, argv + 2);
	if (strcmp(sc, "frames") == 0)
		return scenario_frames();
	if (strcmp(sc, "killed") == 0)
		return scenario_killed(argc - 2, argv + 2);
	if (strcmp(sc, "threads") == 0)
		return scenario_threads(argc - 2, argv + 2);
	fprintf(stderr, "unknown scenario %s\n", sc);
	return 2;
}
