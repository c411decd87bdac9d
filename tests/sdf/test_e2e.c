/* End-to-end tests of the SDF library and vsmtool against the real
 * chsm-vsmd on loopback: a store with one VSM and its token is made in a
 * temporary directory, chsm-vsmd serves it, and the tests generate keys,
 * sign and verify (also with the openssl CLI), run SM4 through session
 * keys, and open many sessions from many threads at once. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "common/util.h"
#include "sdf/sdf_internal.h"
#include "store/store.h"

#define VSM_ID "vsm-sdf-e2e"
#define THREADS 8
#define ROUNDS  20

static char dir[64], conf[128], listen_at[64];
static pid_t vsmd_pid;

static void write_file(const char *path, const void *data, size_t len)
{
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
}

/* A loopback address of this process (127.x.y.z from the pid) and a port
 * free on it, so that parallel test runs do not collide. */
static void pick_endpoint(char *out, size_t cap)
{
	unsigned pid = (unsigned)getpid();
	char ip[32];
	snprintf(ip, sizeof(ip), "127.%u.%u.%u", (pid >> 16) & 0xff, (pid >> 8) & 0xff,
		 (pid & 0xff) ? (pid & 0xff) : 1);
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t al = sizeof(a);
	inet_pton(AF_INET, ip, &a.sin_addr);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &al), 0);
	close(fd);
	snprintf(out, cap, "%s:%d", ip, ntohs(a.sin_port));
}

/* Starts chsm-vsmd with the VSM's subkey on a pipe and waits for READY. */
static void start_vsmd(const char *db, const uint8_t key[STORE_VSM_KEY_LEN])
{
	int keyp[2], readyp[2];
	assert_int_equal(pipe2(keyp, O_CLOEXEC), 0);
	assert_int_equal(pipe2(readyp, O_CLOEXEC), 0);
	vsmd_pid = fork();
	assert_true(vsmd_pid >= 0);
	if (vsmd_pid == 0) {
		int k = fcntl(keyp[0], F_DUPFD_CLOEXEC, 10), r = fcntl(readyp[1], F_DUPFD_CLOEXEC, 10);
		if (k < 0 || r < 0 || dup2(k, 3) < 0 || dup2(r, 4) < 0)
			_exit(127);
		execl(VSMD_PATH, VSMD_PATH, "--vsm-id", VSM_ID, "--listen", listen_at, "--db", db,
		      "--key-fd", "3", "--ready-fd", "4", "--max-keys", "16", "--max-sessions", "64",
		      (char *)NULL);
		_exit(127);
	}
	close(keyp[0]);
	close(readyp[1]);
	assert_int_equal(write(keyp[1], key, STORE_VSM_KEY_LEN), STORE_VSM_KEY_LEN);
	close(keyp[1]);
	char line[256] = "";
	size_t got = 0;
	ssize_t n;
	while (got < sizeof(line) - 1 && (n = read(readyp[0], line + got, sizeof(line) - 1 - got)) > 0)
		got += (size_t)n;
	close(readyp[0]);
	line[got] = '\0';
	if (strncmp(line, "READY", 5) != 0)
		fail_msg("chsm-vsmd did not start: %s", line);
}

static int setup(void **state)
{
	snprintf(dir, sizeof(dir), "/tmp/sdf-e2e-XXXXXX");
	assert_non_null(mkdtemp(dir));
	char db[128], secret_path[128];
	snprintf(db, sizeof(db), "%s/chsm.db", dir);
	snprintf(secret_path, sizeof(secret_path), "%s/app.secret", dir);
	snprintf(conf, sizeof(conf), "%s/sdf.conf", dir);
	pick_endpoint(listen_at, sizeof(listen_at));

	uint8_t master[STORE_MASTER_KEY_LEN], secret[32], subkey[STORE_VSM_KEY_LEN];
	assert_int_equal(crypto_random(master, sizeof(master)), 0);
	assert_int_equal(crypto_random(secret, sizeof(secret)), 0);
	chsm_store *st;
	assert_int_equal(store_open(db, master, &st), 0);
	struct store_vsm v;
	memset(&v, 0, sizeof(v));
	snprintf(v.id, sizeof(v.id), VSM_ID);
	snprintf(v.name, sizeof(v.name), "sdf e2e");
	snprintf(v.state, sizeof(v.state), "running");
	snprintf(v.version, sizeof(v.version), "0.1.0");
	v.created_at = v.updated_at = chsm_now_ms();
	v.max_keys = 16;
	v.max_sessions = 64;
	v.memory_mib = 64;
	assert_int_equal(store_vsm_insert(st, &v), 0);
	assert_int_equal(store_vsm_token_set(st, VSM_ID, "app", secret, sizeof(secret),
					     chsm_now_ms()), 0);
	assert_int_equal(store_vsm_subkey(st, VSM_ID, subkey), 0);
	store_close(st);
	crypto_wipe(master, sizeof(master));

	write_file(secret_path, secret, sizeof(secret));
	char text[512];
	int n = snprintf(text, sizeof(text),
			 "endpoint = %s\ntoken_id = app\ntoken_secret_file = app.secret\n", listen_at);
	write_file(conf, text, (size_t)n);
	setenv("OPENCHSM_SDF_CONFIG", conf, 1);

	start_vsmd(db, subkey);
	crypto_wipe(subkey, sizeof(subkey));
	return 0;
}

static int teardown(void **state)
{
	if (vsmd_pid > 0) {
		kill(vsmd_pid, SIGTERM);
		waitpid(vsmd_pid, NULL, 0);
	}
	char cmd[160];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static void *open_session(void **dev)
{
	void *s = NULL;
	assert_int_equal(SDF_OpenDevice(dev), SDR_OK);
	assert_int_equal(SDF_OpenSession(*dev, &s), SDR_OK);
	return s;
}

static void close_session(void *dev, void *s)
{
	assert_int_equal(SDF_CloseSession(s), SDR_OK);
	assert_int_equal(SDF_CloseDevice(dev), SDR_OK);
}

/* e = SM3(Z || msg) for the signing key at index, through the library. */
static void digest(void *s, unsigned int index, const char *msg, ECCrefPublicKey *pub,
		   uint8_t e[32])
{
	unsigned int elen;
	assert_int_equal(SDF_ExportSignPublicKey_ECC(s, index, pub), SDR_OK);
	assert_int_equal(SDF_HashInit(s, SGD_SM3, pub, (unsigned char *)"1234567812345678", 16),
			 SDR_OK);
	assert_int_equal(SDF_HashUpdate(s, (unsigned char *)msg, (unsigned int)strlen(msg)), SDR_OK);
	assert_int_equal(SDF_HashFinal(s, e, &elen), SDR_OK);
}

static void test_sign_verify(void **state)
{
	void *dev, *s = open_session(&dev);
	DEVICEINFO info;
	assert_int_equal(SDF_GetDeviceInfo(s, &info), SDR_OK);
	uint8_t rnd[64];
	assert_int_equal(SDF_GenerateRandom(s, sizeof(rnd), rnd), SDR_OK);

	assert_int_equal(SDFX_GenerateInternalKey(s, SDFX_KEY_SIGN, 1, NULL), SDR_OK);
	assert_int_equal(SDFX_GenerateInternalKey(s, SDFX_KEY_SIGN, 1, NULL), SDR_KEYERR);
	assert_int_equal(SDFX_GenerateInternalKey(s, SDFX_KEY_SIGN, 17, NULL), SDR_INARGERR);
	ECCrefPublicKey pub;
	uint8_t e[32];
	ECCSignature sig;
	digest(s, 1, "hello VSM", &pub, e);
	assert_int_equal(SDF_InternalSign_ECC(s, 1, e, 32, &sig), SDR_OK);
	assert_int_equal(SDF_ExternalVerify_ECC(s, SGD_SM2_1, &pub, e, 32, &sig), SDR_OK);
	assert_int_equal(SDF_InternalVerify_ECC(s, 1, e, 32, &sig), SDR_OK);
	/* the signature is a standard SM2 signature over the message */
	uint8_t point[65], der[CRYPTO_SM2_SIG_DER_MAX];
	size_t dlen;
	crypto_sm2_key *key;
	assert_int_equal(sdf_pub_to_point(&pub, point), 0);
	assert_int_equal(crypto_sm2_from_public_point(point, &key), 0);
	assert_int_equal(sdf_sig_to_der(&sig, der, &dlen), 0);
	assert_int_equal(crypto_sm2_verify(key, NULL, "hello VSM", 9, der, dlen), 0);
	crypto_sm2_key_free(key);
	e[0] ^= 1;
	assert_int_equal(SDF_ExternalVerify_ECC(s, SGD_SM2_1, &pub, e, 32, &sig), SDR_VERIFYERR);
	assert_int_equal(SDF_InternalVerify_ECC(s, 1, e, 32, &sig), SDR_VERIFYERR);
	assert_int_equal(SDF_ExportSignPublicKey_ECC(s, 9, &pub), SDR_KEYNOTEXIST);

	/* A password-protected key needs the access right. */
	assert_int_equal(SDFX_GenerateInternalKey(s, SDFX_KEY_SIGN, 2, "pw-2"), SDR_OK);
	digest(s, 2, "m", &pub, e);
	assert_int_equal(SDF_InternalSign_ECC(s, 2, e, 32, &sig), SDR_PARDENY);
	assert_int_equal(SDF_GetPrivateKeyAccessRight(s, 2, (unsigned char *)"pw-x", 4), SDR_PARDENY);
	assert_int_equal(SDF_GetPrivateKeyAccessRight(s, 2, (unsigned char *)"pw-2", 4), SDR_OK);
	assert_int_equal(SDF_InternalSign_ECC(s, 2, e, 32, &sig), SDR_OK);
	assert_int_equal(SDF_ReleasePrivateKeyAccessRight(s, 2), SDR_OK);
	assert_int_equal(SDF_InternalSign_ECC(s, 2, e, 32, &sig), SDR_PARDENY);
	assert_int_equal(SDFX_SetKeyPassword(s, SDFX_KEY_SIGN, 2, NULL), SDR_OK);
	assert_int_equal(SDF_InternalSign_ECC(s, 2, e, 32, &sig), SDR_OK);

	SDFX_KEYINFO keys[16];
	unsigned int count = 16;
	assert_int_equal(SDFX_ListKeys(s, keys, &count), SDR_OK);
	assert_true(count >= 2);
	assert_int_equal(SDFX_DestroyInternalKey(s, SDFX_KEY_SIGN, 2), SDR_OK);
	assert_int_equal(SDFX_DestroyInternalKey(s, SDFX_KEY_SIGN, 2), SDR_KEYNOTEXIST);
	close_session(dev, s);
}

static void test_session_keys(void **state)
{
	void *dev, *s1 = open_session(&dev), *s2 = NULL;
	assert_int_equal(SDF_OpenSession(dev, &s2), SDR_OK);
	assert_int_equal(SDFX_GenerateInternalKey(s1, SDFX_KEY_KEK, 3, NULL), SDR_OK);
	unsigned char wrapped[16], iv[16] = {1}, iv2[16] = {1}, data[64], enc[64], dec[64];
	unsigned int wlen, n;
	void *k1, *k2;
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (unsigned char)i;
	assert_int_equal(SDF_GenerateKeyWithKEK(s1, 128, SGD_SM4_ECB, 3, wrapped, &wlen, &k1),
			 SDR_OK);
	assert_int_equal(wlen, 16);
	assert_int_equal(SDF_ImportKeyWithKEK(s2, SGD_SM4_ECB, 3, wrapped, wlen, &k2), SDR_OK);
	assert_int_equal(SDF_Encrypt(s1, k1, SGD_SM4_CBC, iv, data, 64, enc, &n), SDR_OK);
	assert_int_equal(n, 64);
	assert_memory_not_equal(enc, data, 64);
	assert_memory_equal(iv, enc + 48, 16); /* IV advanced to the last block */
	assert_int_equal(SDF_Decrypt(s2, k2, SGD_SM4_CBC, iv2, enc, 64, dec, &n), SDR_OK);
	assert_memory_equal(dec, data, 64);
	assert_int_equal(SDF_Encrypt(s1, k1, SGD_SM4_ECB, NULL, data, 32, enc, &n), SDR_OK);
	assert_int_equal(SDF_Decrypt(s2, k2, SGD_SM4_ECB, NULL, enc, 32, dec, &n), SDR_OK);
	assert_memory_equal(dec, data, 32);
	unsigned char mac1[16], mac2[16], miv1[16] = {0}, miv2[16] = {0};
	assert_int_equal(SDF_CalculateMAC(s1, k1, SGD_SM4_MAC, miv1, data, 64, mac1, &n), SDR_OK);
	assert_int_equal(SDF_CalculateMAC(s2, k2, SGD_SM4_MAC, miv2, data, 64, mac2, &n), SDR_OK);
	assert_memory_equal(mac1, mac2, 16);
	assert_int_equal(SDF_DestroyKey(s1, k1), SDR_OK);
	assert_int_equal(SDF_Encrypt(s1, k1, SGD_SM4_ECB, NULL, data, 16, enc, &n), SDR_KEYNOTEXIST);

	/* Session keys under an internal encryption key pair. */
	assert_int_equal(SDFX_GenerateInternalKey(s1, SDFX_KEY_ENC, 4, NULL), SDR_OK);
	ECCCipher *c = calloc(1, ECCCIPHER_SIZE(136));
	assert_non_null(c);
	void *k3, *k4;
	assert_int_equal(SDF_GenerateKeyWithIPK_ECC(s1, 4, 128, c, &k3), SDR_OK);
	assert_int_equal(c->L, 16);
	assert_int_equal(SDF_ImportKeyWithISK_ECC(s2, 4, c, &k4), SDR_OK);
	assert_int_equal(SDF_Encrypt(s1, k3, SGD_SM4_ECB, NULL, data, 16, enc, &n), SDR_OK);
	assert_int_equal(SDF_Decrypt(s2, k4, SGD_SM4_ECB, NULL, enc, 16, dec, &n), SDR_OK);
	assert_memory_equal(dec, data, 16);
	/* External encryption to it, internal decryption. */
	ECCrefPublicKey pub;
	assert_int_equal(SDF_ExportEncPublicKey_ECC(s1, 4, &pub), SDR_OK);
	assert_int_equal(SDF_ExternalEncrypt_ECC(s1, SGD_SM2_3, &pub, data, 40, c), SDR_OK);
	assert_int_equal(c->L, 40);
	assert_int_equal(SDFX_InternalDecrypt_ECC(s2, 4, c, dec, &n), SDR_OK);
	assert_int_equal(n, 40);
	assert_memory_equal(dec, data, 40);
	free(c);
	assert_int_equal(SDF_CloseSession(s2), SDR_OK);
	close_session(dev, s1);
}

static int run(const char *cmd)
{
	int st = system(cmd);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_vsmtool_openssl(void **state)
{
	char cmd[1024], msg[128], pem[128], sig[128];
	snprintf(msg, sizeof(msg), "%s/msg.txt", dir);
	snprintf(pem, sizeof(pem), "%s/pub.pem", dir);
	snprintf(sig, sizeof(sig), "%s/sig.der", dir);
	write_file(msg, "signed by a VSM\n", 16);
	snprintf(cmd, sizeof(cmd), "%s keygen --index 5 >/dev/null", VSMTOOL_PATH);
	assert_int_equal(run(cmd), 0);
	snprintf(cmd, sizeof(cmd), "%s keygen --index 5 2>/dev/null", VSMTOOL_PATH);
	assert_int_equal(run(cmd), 1); /* SDR_KEYERR */
	snprintf(cmd, sizeof(cmd), "%s pubkey --index 5 > %s", VSMTOOL_PATH, pem);
	assert_int_equal(run(cmd), 0);
	snprintf(cmd, sizeof(cmd), "%s sign --index 5 --in %s > %s.b64 && base64 -d %s.b64 > %s",
		 VSMTOOL_PATH, msg, sig, sig, sig);
	assert_int_equal(run(cmd), 0);
	snprintf(cmd, sizeof(cmd),
		 "openssl dgst -sm3 -verify %s -sigopt distid:1234567812345678 -signature %s %s "
		 ">/dev/null",
		 pem, sig, msg);
	assert_int_equal(run(cmd), 0);
	snprintf(cmd, sizeof(cmd), "%s verify --index 5 --in %s --sig %s >/dev/null", VSMTOOL_PATH, msg, sig);
	assert_int_equal(run(cmd), 0);
	write_file(msg, "signed by a VSM?", 16);
	snprintf(cmd, sizeof(cmd), "%s verify --index 5 --in %s --sig %s 2>/dev/null", VSMTOOL_PATH, msg, sig);
	assert_int_equal(run(cmd), 1); /* SDR_VERIFYERR */
	snprintf(cmd, sizeof(cmd),
		 "openssl dgst -sm3 -verify %s -sigopt distid:1234567812345678 -signature %s %s "
		 ">/dev/null 2>&1",
		 pem, sig, msg);
	assert_int_equal(run(cmd), 1);
	snprintf(cmd, sizeof(cmd), "%s random --bytes 16 | grep -Eq '^[0-9a-f]{32}$'", VSMTOOL_PATH);
	assert_int_equal(run(cmd), 0);
	snprintf(cmd, sizeof(cmd), "%s list | grep -q '^sign 5 password=no '", VSMTOOL_PATH);
	assert_int_equal(run(cmd), 0);
	snprintf(cmd, sizeof(cmd), "%s random --bytes 0 2>/dev/null", VSMTOOL_PATH);
	assert_int_equal(run(cmd), 2);
	snprintf(cmd, sizeof(cmd), "%s delete --index 5 && %s pubkey --index 5 2>&1 >/dev/null | grep -q SDR_KEYNOTEXIST",
		 VSMTOOL_PATH, VSMTOOL_PATH);
	assert_int_equal(run(cmd), 0);
}

static void *thread_main(void *arg)
{
	void *dev = arg, *s = NULL;
	intptr_t failures = 0;
	if (SDF_OpenSession(dev, &s) != SDR_OK)
		return (void *)(intptr_t)ROUNDS;
	ECCrefPublicKey pub;
	if (SDF_ExportSignPublicKey_ECC(s, 1, &pub) != SDR_OK)
		failures = ROUNDS;
	for (int i = 0; i < ROUNDS && !failures; i++) {
		uint8_t e[32];
		ECCSignature sig;
		if (SDF_GenerateRandom(s, sizeof(e), e) != SDR_OK ||
		    SDF_InternalSign_ECC(s, 1, e, 32, &sig) != SDR_OK ||
		    SDF_ExternalVerify_ECC(s, SGD_SM2_1, &pub, e, 32, &sig) != SDR_OK)
			failures++;
	}
	SDF_CloseSession(s);
	return (void *)failures;
}

static void test_threads(void **state)
{
	void *dev;
	assert_int_equal(SDF_OpenDevice(&dev), SDR_OK);
	pthread_t t[THREADS];
	for (int i = 0; i < THREADS; i++)
		assert_int_equal(pthread_create(&t[i], NULL, thread_main, dev), 0);
	for (int i = 0; i < THREADS; i++) {
		void *ret;
		assert_int_equal(pthread_join(t[i], &ret), 0);
		assert_int_equal((intptr_t)ret, 0);
	}
	assert_int_equal(SDF_CloseDevice(dev), SDR_OK);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sign_verify),
		cmocka_unit_test(test_session_keys),
		cmocka_unit_test(test_vsmtool_openssl),
		cmocka_unit_test(test_threads),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
