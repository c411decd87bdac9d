/* Unit tests of SDF sessions against a fake VSM (fake_vsm.c): mutual
 * authentication (good and bad server proof, wrong secret), requests and
 * their conversions, malformed answers, and handle checks. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "fake_vsm.h"
#include "sdf/sdf_internal.h"

static const uint8_t secret[20] = "token-secret-0123456";
static char dir[64];

/* Writes a configuration for 127.0.0.1:port with the given secret and
 * opens a device on it. */
static void *device_for(int port, const uint8_t *sec, size_t len)
{
	char path[256], text[256];
	snprintf(path, sizeof(path), "%s/secret", dir);
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(sec, 1, len, f), len);
	fclose(f);
	snprintf(path, sizeof(path), "%s/sdf.conf", dir);
	f = fopen(path, "w");
	assert_non_null(f);
	snprintf(text, sizeof(text), "endpoint = 127.0.0.1:%d\ntoken_id = app\ntoken_secret_file = secret\n",
		 port);
	fputs(text, f);
	fclose(f);
	void *dev = NULL;
	assert_int_equal(SDFX_OpenDeviceWithConfig(path, &dev), SDR_OK);
	return dev;
}

static int setup(void **state)
{
	snprintf(dir, sizeof(dir), "/tmp/sdf-session-XXXXXX");
	assert_non_null(mkdtemp(dir));
	return 0;
}

static int teardown(void **state)
{
	char path[256];
	snprintf(path, sizeof(path), "%s/secret", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/sdf.conf", dir);
	unlink(path);
	rmdir(dir);
	return 0;
}

/* A session with a fake VSM in mode: the fake and the device into *ret_f
 * and *ret_dev. */
static void *open_with(enum fake_mode mode, struct fake_vsm **ret_f, void **ret_dev)
{
	struct fake_vsm *f = fake_vsm_start(mode, "app", secret, sizeof(secret));
	assert_non_null(f);
	void *dev = device_for(fake_vsm_port(f), secret, sizeof(secret));
	void *s = NULL;
	assert_int_equal(SDF_OpenSession(dev, &s), SDR_OK);
	*ret_f = f;
	*ret_dev = dev;
	return s;
}

static void test_good_session(void **state)
{
	struct fake_vsm *f;
	void *dev, *s = open_with(FAKE_GOOD, &f, &dev);

	DEVICEINFO info;
	assert_int_equal(SDF_GetDeviceInfo(s, &info), SDR_OK);
	assert_memory_equal(info.IssuerName, "OpenCHSM test", 13);
	assert_int_equal(info.IssuerName[13], 0);
	assert_memory_equal(info.DeviceName, "fake", 4);
	assert_int_equal(info.DeviceVersion, 1);
	assert_int_equal(info.AsymAlgAbility[1], 4);
	assert_int_equal(info.BufferSize, 7);

	uint8_t rnd[32] = {0}, zeros[32] = {0};
	assert_int_equal(SDF_GenerateRandom(s, sizeof(rnd), rnd), SDR_OK);
	assert_memory_not_equal(rnd, zeros, sizeof(rnd));
	assert_int_equal(SDF_GenerateRandom(s, 0, rnd), SDR_INARGERR);

	/* Export, hash with Z, sign inside, check the signature locally. */
	ECCrefPublicKey pub;
	assert_int_equal(SDF_ExportSignPublicKey_ECC(s, 2, &pub), SDR_KEYNOTEXIST);
	assert_int_equal(SDF_ExportSignPublicKey_ECC(s, 1, &pub), SDR_OK);
	uint8_t point[65], expect_point[65];
	assert_int_equal(sdf_pub_to_point(&pub, point), 0);
	assert_int_equal(crypto_sm2_public_point(fake_vsm_key(f), expect_point), 0);
	assert_memory_equal(point, expect_point, 65);
	uint8_t e[32];
	unsigned int elen = 0;
	assert_int_equal(SDF_HashUpdate(s, (unsigned char *)"x", 1), SDR_STEPERR);
	assert_int_equal(SDF_HashInit(s, SGD_SM4_ECB, NULL, NULL, 0), SDR_ALGNOTSUPPORT);
	assert_int_equal(SDF_HashInit(s, SGD_SM3, &pub, (unsigned char *)"1234567812345678", 16),
			 SDR_OK);
	assert_int_equal(SDF_HashUpdate(s, (unsigned char *)"hello", 5), SDR_OK);
	assert_int_equal(SDF_HashFinal(s, e, &elen), SDR_OK);
	assert_int_equal(elen, 32);
	ECCSignature sig;
	assert_int_equal(SDF_InternalSign_ECC(s, 1, e, 31, &sig), SDR_INARGERR);
	assert_int_equal(SDF_InternalSign_ECC(s, 1, e, 32, &sig), SDR_OK);
	uint8_t der[CRYPTO_SM2_SIG_DER_MAX];
	size_t dlen;
	assert_int_equal(sdf_sig_to_der(&sig, der, &dlen), 0);
	assert_int_equal(crypto_sm2_verify(fake_vsm_key(f), NULL, "hello", 5, der, dlen), 0);

	/* Key list: too small a buffer, then enough. */
	SDFX_KEYINFO keys[2];
	unsigned int count = 1;
	assert_int_equal(SDFX_ListKeys(s, keys, &count), SDR_NOBUFFER);
	assert_int_equal(count, 2);
	assert_int_equal(SDFX_ListKeys(s, keys, &count), SDR_OK);
	assert_int_equal(keys[0].type, SDFX_KEY_SIGN);
	assert_int_equal(keys[1].type, SDFX_KEY_KEK);
	assert_int_equal(keys[1].index, 7);
	assert_int_equal(keys[1].hasPassword, 1);
	assert_true(keys[1].createdAtMs == 1700000001000ULL);

	/* A status from the VSM passes through; the session goes on. */
	assert_int_equal(SDF_ReleasePrivateKeyAccessRight(s, 1), SDR_NOTSUPPORT);
	assert_int_equal(SDF_GenerateRandom(s, 8, rnd), SDR_OK);

	/* Arguments refused before anything is sent. */
	assert_int_equal(SDF_DestroyKey(s, NULL), SDR_INARGERR);
	unsigned char buf[32], out[32], iv[16] = {0};
	unsigned int outlen;
	assert_int_equal(SDF_Encrypt(s, (void *)1, SGD_SM4_CBC, iv, buf, 15, out, &outlen),
			 SDR_INARGERR);
	assert_int_equal(SDF_Encrypt(s, (void *)1, 0x1234, iv, buf, 16, out, &outlen),
			 SDR_ALGNOTSUPPORT);
	assert_int_equal(SDF_Encrypt(s, (void *)1, SGD_SM4_CBC, NULL, buf, 16, out, &outlen),
			 SDR_INARGERR);
	assert_int_equal(SDFX_GenerateInternalKey(s, 4, 1, NULL), SDR_INARGERR);
	char longpw[66];
	memset(longpw, 'p', 65);
	longpw[65] = '\0';
	assert_int_equal(SDFX_SetKeyPassword(s, SDFX_KEY_SIGN, 1, longpw), SDR_INARGERR);
	assert_int_equal(SDFX_SetKeyPassword(s, SDFX_KEY_KEK, 1, NULL), SDR_INARGERR);
	pub.bits = 0;
	assert_int_equal(SDF_ExternalVerify_ECC(s, SGD_SM2_1, &pub, e, 32, &sig), SDR_INARGERR);
	assert_string_equal(SDFX_ErrorName(SDR_PARDENY), "SDR_PARDENY");
	assert_string_equal(SDFX_ErrorName(42), "SDR_UNKNOWN");

	assert_int_equal(SDF_CloseSession(s), SDR_OK);
	assert_int_equal(SDF_CloseSession(NULL), SDR_INARGERR);
	assert_int_equal(SDF_GenerateRandom(NULL, 8, rnd), SDR_INARGERR);
	assert_int_equal(SDF_CloseDevice(dev), SDR_OK);
	fake_vsm_stop(f);
}

static void test_bad_server_proof(void **state)
{
	struct fake_vsm *f = fake_vsm_start(FAKE_BAD_SERVER_PROOF, "app", secret, sizeof(secret));
	assert_non_null(f);
	void *dev = device_for(fake_vsm_port(f), secret, sizeof(secret));
	void *s = NULL;
	assert_int_equal(SDF_OpenSession(dev, &s), SDR_OPENSESSION);
	assert_null(s);
	assert_int_equal(SDF_CloseDevice(dev), SDR_OK);
	fake_vsm_stop(f);
}

static void test_bad_hello(void **state)
{
	struct fake_vsm *f = fake_vsm_start(FAKE_BAD_HELLO, "app", secret, sizeof(secret));
	assert_non_null(f);
	void *dev = device_for(fake_vsm_port(f), secret, sizeof(secret));
	void *s = NULL;
	assert_int_equal(SDF_OpenSession(dev, &s), SDR_OPENSESSION);
	assert_null(s);
	assert_int_equal(SDF_CloseDevice(dev), SDR_OK);
	fake_vsm_stop(f);
}

#define SHARERS 4
#define SHARED_ROUNDS 50

static void *share_main(void *arg)
{
	intptr_t failures = 0;
	for (int i = 0; i < SHARED_ROUNDS; i++) {
		uint8_t rnd[16];
		if (SDF_GenerateRandom(arg, sizeof(rnd), rnd) != SDR_OK)
			failures++;
	}
	return (void *)failures;
}

/* Misuse: one session from several threads at once is serialised by its
 * mutex, so every call still gets its own answer. */
static void test_shared_session(void **state)
{
	struct fake_vsm *f = fake_vsm_start(FAKE_GOOD, "app", secret, sizeof(secret));
	assert_non_null(f);
	void *dev = device_for(fake_vsm_port(f), secret, sizeof(secret));
	void *s = NULL;
	assert_int_equal(SDF_OpenSession(dev, &s), SDR_OK);
	pthread_t t[SHARERS];
	for (int i = 0; i < SHARERS; i++)
		assert_int_equal(pthread_create(&t[i], NULL, share_main, s), 0);
	for (int i = 0; i < SHARERS; i++) {
		void *ret;
		assert_int_equal(pthread_join(t[i], &ret), 0);
		assert_int_equal((intptr_t)ret, 0);
	}
	assert_int_equal(SDF_CloseSession(s), SDR_OK);
	assert_int_equal(SDF_CloseDevice(dev), SDR_OK);
	fake_vsm_stop(f);
}

static void test_wrong_secret(void **state)
{
	struct fake_vsm *f = fake_vsm_start(FAKE_GOOD, "app", secret, sizeof(secret));
	assert_non_null(f);
	uint8_t other[sizeof(secret)];
	memcpy(other, secret, sizeof(other));
	other[0] ^= 1;
	void *dev = device_for(fake_vsm_port(f), other, sizeof(other));
	void *s = NULL;
	assert_int_equal(SDF_OpenSession(dev, &s), SDR_PARDENY);
	assert_null(s);
	assert_int_equal(SDF_CloseDevice(dev), SDR_OK);
	fake_vsm_stop(f);
}

static void test_malformed_answer(void **state)
{
	struct fake_vsm *f = fake_vsm_start(FAKE_TRAILING_BYTES, "app", secret, sizeof(secret));
	assert_non_null(f);
	int port = fake_vsm_port(f);
	void *dev = device_for(port, secret, sizeof(secret));
	void *s = NULL;
	assert_int_equal(SDF_OpenSession(dev, &s), SDR_OK);
	uint8_t rnd[8];
	assert_int_equal(SDF_GenerateRandom(s, sizeof(rnd), rnd), SDR_COMMFAIL);
	/* The session is closed for good; the hash still works locally. */
	assert_int_equal(SDF_GenerateRandom(s, sizeof(rnd), rnd), SDR_COMMFAIL);
	assert_int_equal(SDF_HashInit(s, SGD_SM3, NULL, NULL, 0), SDR_OK);
	assert_int_equal(SDF_CloseSession(s), SDR_OK);
	assert_int_equal(SDF_CloseDevice(dev), SDR_OK);
	fake_vsm_stop(f);

	/* Nobody listening any more. */
	dev = device_for(port, secret, sizeof(secret));
	assert_int_equal(SDF_OpenSession(dev, &s), SDR_OPENSESSION);
	assert_int_equal(SDF_CloseDevice(dev), SDR_OK);
}

static void close_with(struct fake_vsm *f, void *dev, void *s)
{
	assert_int_equal(SDF_CloseSession(s), SDR_OK);
	assert_int_equal(SDF_CloseDevice(dev), SDR_OK);
	fake_vsm_stop(f);
}

/* Answers that arrive in pieces (a byte, the rest of the header and a
 * byte, the rest) are put together by the session's input buffer. */
static void test_split_frames(void **state)
{
	struct fake_vsm *f;
	void *dev, *s = open_with(FAKE_SPLIT_FRAMES, &f, &dev);
	DEVICEINFO info;
	assert_int_equal(SDF_GetDeviceInfo(s, &info), SDR_OK);
	assert_int_equal(info.BufferSize, 7);
	uint8_t rnd[32] = {0}, zeros[32] = {0};
	assert_int_equal(SDF_GenerateRandom(s, sizeof(rnd), rnd), SDR_OK);
	assert_memory_not_equal(rnd, zeros, sizeof(rnd));
	ECCrefPublicKey pub;
	assert_int_equal(SDF_ExportSignPublicKey_ECC(s, 2, &pub), SDR_KEYNOTEXIST);
	assert_int_equal(SDF_ExportSignPublicKey_ECC(s, 1, &pub), SDR_OK);
	close_with(f, dev, s);
}

/* A server that closes in the middle of an answer: SDR_COMMFAIL, and the
 * session stays closed. */
static void test_close_mid_frame(void **state)
{
	struct fake_vsm *f;
	void *dev, *s = open_with(FAKE_CLOSE_MID_FRAME, &f, &dev);
	uint8_t rnd[32];
	assert_int_equal(SDF_GenerateRandom(s, sizeof(rnd), rnd), SDR_COMMFAIL);
	assert_int_equal(SDF_GenerateRandom(s, sizeof(rnd), rnd), SDR_COMMFAIL);
	close_with(f, dev, s);
}

static int run(const char *cmd)
{
	int st = system(cmd);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* vsmtool against the fake: exit codes, and a signature that the openssl
 * CLI verifies. */
static void test_vsmtool(void **state)
{
	struct fake_vsm *f = fake_vsm_start(FAKE_GOOD, "app", secret, sizeof(secret));
	assert_non_null(f);
	SDF_CloseDevice(device_for(fake_vsm_port(f), secret, sizeof(secret)));
	char cmd[1024], conf[128], msg[128], pem[128], sig[128];
	snprintf(conf, sizeof(conf), "%s/sdf.conf", dir);
	snprintf(msg, sizeof(msg), "%s/msg", dir);
	snprintf(pem, sizeof(pem), "%s/pub.pem", dir);
	snprintf(sig, sizeof(sig), "%s/sig.der", dir);
	FILE *m = fopen(msg, "w");
	assert_non_null(m);
	fputs("a message\n", m);
	fclose(m);
	static const struct {
		const char *args;
		int status;
	} cases[] = {
		{"--help >/dev/null", 0},
		{"sign --help >/dev/null", 0},
		{"", 2},
		{"bogus", 2},
		{"random", 2},
		{"random 8", 2},
		{"random --bytes 65537", 2},
		{"random --bytes 4x", 2},
		{"kek-gen --index 1 --password-file /nonexistent", 2},
		{"keygen --index 0", 2},
		{"keygen --index 1 --usage kek", 2},
		{"sign --index 1", 2},
		{"sign --index 1 --in /nonexistent/file", 2},
		{"verify --index 1 --in x", 2},
		{"--bogus info", 2},
		{"info >/dev/null", 0},
		{"random --bytes 8 | grep -Eq '^[0-9a-f]{16}$'", 0},
		{"list | grep -q '^kek 7 password=yes '", 0},
		{"pubkey --index 2", 1},
		{"pubkey --index 2 2>&1 | grep -q 'SDR_KEYNOTEXIST (0x01000008)'", 0},
		{"delete --index 7 --usage kek", 1}, /* the fake does not support it */
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(cmd, sizeof(cmd), "%s --config %s %s 2>/dev/null", VSMTOOL_PATH, conf,
			 cases[i].args);
		int st = run(cmd);
		if (st != cases[i].status)
			fail_msg("vsmtool %s: exit %d, expected %d", cases[i].args, st, cases[i].status);
	}
	snprintf(cmd, sizeof(cmd), "%s --config %s pubkey --index 1 > %s", VSMTOOL_PATH, conf, pem);
	assert_int_equal(run(cmd), 0);
	snprintf(cmd, sizeof(cmd), "%s --config %s sign --index 1 --in %s > %s.b64 && base64 -d %s.b64 > %s",
		 VSMTOOL_PATH, conf, msg, sig, sig, sig);
	assert_int_equal(run(cmd), 0);
	snprintf(cmd, sizeof(cmd),
		 "openssl dgst -sm3 -verify %s -sigopt distid:1234567812345678 -signature %s %s "
		 ">/dev/null", pem, sig, msg);
	assert_int_equal(run(cmd), 0);
	snprintf(cmd, sizeof(cmd), "%s --config %s verify --index 1 --in %s --sig %s >/dev/null",
		 VSMTOOL_PATH, conf, msg, sig);
	assert_int_equal(run(cmd), 0);
	/* base64 output verifies too; another ID does not */
	snprintf(cmd, sizeof(cmd), "%s --config %s sign --index 1 --in %s --id alice > %s.b64 && "
		 "%s --config %s verify --index 1 --in %s --id alice --sig %s.b64 >/dev/null",
		 VSMTOOL_PATH, conf, msg, sig, VSMTOOL_PATH, conf, msg, sig);
	assert_int_equal(run(cmd), 0);
	snprintf(cmd, sizeof(cmd), "%s --config %s verify --index 1 --in %s --sig %s.b64 2>/dev/null",
		 VSMTOOL_PATH, conf, msg, sig);
	assert_int_equal(run(cmd), 1);
	unlink(msg);
	unlink(pem);
	unlink(sig);
	snprintf(cmd, sizeof(cmd), "%s.b64", sig);
	unlink(cmd);
	fake_vsm_stop(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good_session),
		cmocka_unit_test(test_bad_server_proof),
		cmocka_unit_test(test_bad_hello),
		cmocka_unit_test(test_shared_session),
		cmocka_unit_test(test_wrong_secret),
		cmocka_unit_test(test_malformed_answer),
		cmocka_unit_test(test_split_frames),
		cmocka_unit_test(test_close_mid_frame),
		cmocka_unit_test(test_vsmtool),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
