/*
 * vsm.c: bench_vsm, the VSM service through the SDF library over loopback
 * beside the same primitives in this process (docs/PERFORMANCE.md "VSM
 * service").
 *
 *   bench_vsm [--seconds S] [--sessions 1,8,64] [--vsm-pid PID] [--ops LIST]
 *
 * The VSM and its token come from the SDF library's environment
 * (OPENCHSM_SDF_ENDPOINT, OPENCHSM_SDF_TOKEN_ID,
 * OPENCHSM_SDF_TOKEN_SECRET_BASE64_FILE; docs/sdf.md). The VSM must hold no
 * key at indexes 1-3: the program makes an SM2 signing key at 1, an SM2
 * encryption key at 2 and a KEK at 3, and each session an SM4 session key
 * under that KEK.
 *
 * Operations: SM2 internal sign and external verify of a 32-byte digest,
 * SM2 encrypt (external key) and decrypt (internal key) of 32 bytes,
 * SM4-CBC encrypt of 1 KiB and 1 MiB with a session key, SM3 of 1 MiB
 * (which the library computes itself), and round-trip: SDF_GetDeviceInfo,
 * which the VSM answers without crypto, so its VSM CPU per request is what
 * the service itself (framing, epoll, the loopback TCP send and receive and
 * the wake-ups) costs every request. Each runs for S wall-clock seconds
 * (default 2) with N threads, each with its own session, for each N of
 * --sessions. The raw figures run the crypto module's functions
 * (src/crypto, what chsm-vsmd runs) in this process: on one thread per CPU
 * second, and on as many threads as the VSM may use cores, per wall-clock
 * second over the same S. With --vsm-pid (chsm-vsmd), the VSM's CPU time per
 * operation is printed too, beside the raw CPU time per operation, and the
 * raw figures run on the CPUs the VSM may use (its affinity), so that raw
 * and VSM run on the same cores; the header says which CPUs the VSM, the
 * SDF client (this process) and the raw figures had.
 * Prints Markdown tables; exit 1 when an operation fails (with its SDR
 * name), 2 for bad usage.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"
#include "crypto/crypto.h"
#include "load_stats.h"
#include "openchsm/sdf.h"

#define MAX_THREADS 256
#define MIB (1024 * 1024)

enum op {
	OP_SIGN,
	OP_VERIFY,
	OP_ENC,
	OP_DEC,
	OP_SM4_1K,
	OP_SM4_1M,
	OP_SM3_1M,
	OP_ROUND_TRIP,
	OP_COUNT
};

static const struct {
	const char *name;
	size_t bytes; /* per operation, for MB/s; 0: ops/s only */
} OPS[OP_COUNT] = {
	{"sm2-sign", 0},       {"sm2-verify", 0},     {"sm2-encrypt", 0}, {"sm2-decrypt", 0},
	{"sm4-cbc-1k", 1024},  {"sm4-cbc-1m", MIB},   {"sm3-1m", MIB},    {"round-trip", 0},
};

/* What every thread shares: the keys' public halves, a signature and a
 * ciphertext to verify and decrypt, the digest. */
struct shared {
	void *device;
	ECCrefPublicKey sign_pub, enc_pub;
	uint8_t e[32];
	ECCSignature sig;
	ECCCipher *cipher; /* of 32 bytes */
	/* raw */
	crypto_sm2_key *sign_key, *enc_key;
	uint8_t raw_sig[CRYPTO_SM2_SIG_DER_MAX];
	size_t raw_siglen;
	uint8_t *raw_cipher;
	size_t raw_cipherlen;
	uint8_t sm4_key[16];
};

struct worker {
	struct shared *sh;
	enum op op;
	bool raw;
	volatile int *stop;
	pthread_barrier_t *ready;
	uint64_t ops;
	int rc;
	const char *what;
};

static volatile int stop_flag;
/* Where raw work runs: the VSM's CPUs (with --vsm-pid), else anywhere. */
static bool raw_pinned;
static cpu_set_t raw_cpus;

static void pin_raw(void)
{
	if (raw_pinned)
		(void)sched_setaffinity(0, sizeof(raw_cpus), &raw_cpus);
}

/* A CPU set as a list ("0-1,3"). */
static const char *cpu_list(const cpu_set_t *set, char *buf, size_t cap)
{
	size_t n = 0;
	buf[0] = '\0';
	for (int c = 0; c < CPU_SETSIZE && n < cap; c++) {
		if (!CPU_ISSET(c, set) || (c > 0 && CPU_ISSET(c - 1, set)))
			continue;
		int e = c;
		while (e + 1 < CPU_SETSIZE && CPU_ISSET(e + 1, set))
			e++;
		n += (size_t)snprintf(buf + n, cap - n, e > c ? "%s%d-%d" : "%s%d", n ? "," : "", c, e);
	}
	return buf;
}

static double thread_cpu_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *sdf_worker(void *arg)
{
	struct worker *w = arg;
	struct shared *sh = w->sh;
	void *s = NULL, *key = NULL;
	uint8_t *buf = NULL, *out = NULL, iv[16] = {0};
	ECCCipher *c = malloc(ECCCIPHER_SIZE(32));
	uint8_t kek_cipher[512];
	unsigned kek_len = sizeof(kek_cipher), outlen;
	uint8_t plain[136], msg[32] = {1};
	ECCSignature sig;
	DEVICEINFO info;
	int rc = SDF_OpenSession(sh->device, &s);
	w->what = "SDF_OpenSession";
	if (rc == SDR_OK && (w->op == OP_SM4_1K || w->op == OP_SM4_1M)) {
		rc = SDF_GenerateKeyWithKEK(s, 128, SGD_SM4_ECB, 3, kek_cipher, &kek_len, &key);
		w->what = "SDF_GenerateKeyWithKEK";
	}
	buf = calloc(1, MIB);
	out = malloc(MIB);
	if (!buf || !out || !c)
		rc = SDR_NOBUFFER;
	pthread_barrier_wait(w->ready);
	while (rc == SDR_OK && !*w->stop) {
		switch (w->op) {
		case OP_SIGN:
			rc = SDF_InternalSign_ECC(s, 1, sh->e, 32, &sig);
			break;
		case OP_VERIFY:
			rc = SDF_ExternalVerify_ECC(s, SGD_SM2_1, &sh->sign_pub, sh->e, 32, &sh->sig);
			break;
		case OP_ENC:
			rc = SDF_ExternalEncrypt_ECC(s, SGD_SM2_3, &sh->enc_pub, msg, 32, c);
			break;
		case OP_DEC:
			rc = SDFX_InternalDecrypt_ECC(s, 2, sh->cipher, plain, &outlen);
			break;
		case OP_SM4_1K:
		case OP_SM4_1M:
			rc = SDF_Encrypt(s, key, SGD_SM4_CBC, iv, buf, (unsigned)OPS[w->op].bytes, out,
					 &outlen);
			break;
		case OP_ROUND_TRIP:
			rc = SDF_GetDeviceInfo(s, &info);
			break;
		case OP_SM3_1M:
			rc = SDF_HashInit(s, SGD_SM3, NULL, NULL, 0);
			if (rc == SDR_OK)
				rc = SDF_HashUpdate(s, buf, MIB);
			if (rc == SDR_OK)
				rc = SDF_HashFinal(s, out, &outlen);
			break;
		default:
			rc = SDR_INARGERR;
		}
		if (rc == SDR_OK)
			w->ops++;
		else
			w->what = OPS[w->op].name;
	}
	if (key)
		SDF_DestroyKey(s, key);
	if (s)
		SDF_CloseSession(s);
	free(buf);
	free(out);
	free(c);
	w->rc = rc;
	return NULL;
}

/* One raw operation in this process; 0 or a negative errno. */
static int raw_once(struct shared *sh, enum op op, uint8_t *buf, uint8_t *out,
		    crypto_sm3_ctx *sm3)
{
	uint8_t sig[CRYPTO_SM2_SIG_DER_MAX], digest[32], msg[32] = {1}, iv[16] = {0};
	size_t siglen, len;
	uint8_t *p = NULL;
	int r;
	switch (op) {
	case OP_SIGN:
		return crypto_sm2_sign_digest(sh->sign_key, sh->e, sig, &siglen);
	case OP_VERIFY:
		return crypto_sm2_verify_digest(sh->sign_key, sh->e, sh->raw_sig, sh->raw_siglen);
	case OP_ENC:
		r = crypto_sm2_encrypt(sh->enc_key, msg, sizeof(msg), &p, &len);
		free(p);
		return r;
	case OP_DEC:
		r = crypto_sm2_decrypt(sh->enc_key, sh->raw_cipher, sh->raw_cipherlen, &p, &len);
		crypto_free_secret(p, len);
		return r;
	case OP_SM4_1K:
	case OP_SM4_1M:
		return crypto_sm4_cbc(true, sh->sm4_key, iv, buf, OPS[op].bytes, out);
	case OP_SM3_1M:
		if ((r = crypto_sm3_reset(sm3)) < 0 || (r = crypto_sm3_update(sm3, buf, MIB)) < 0)
			return r;
		return crypto_sm3_final(sm3, digest);
	default:
		return -EINVAL;
	}
}

static void *raw_worker(void *arg)
{
	struct worker *w = arg;
	uint8_t *buf = calloc(1, MIB), *out = malloc(MIB);
	crypto_sm3_ctx *sm3 = NULL;
	int r = buf && out ? crypto_sm3_new(&sm3) : -ENOMEM;
	pin_raw();
	pthread_barrier_wait(w->ready);
	while (r == 0 && !*w->stop) {
		r = raw_once(w->sh, w->op, buf, out, sm3);
		if (r == 0)
			w->ops++;
	}
	crypto_sm3_free(sm3);
	free(buf);
	free(out);
	w->rc = r;
	w->what = OPS[w->op].name;
	return NULL;
}

/* Runs op on n threads for `seconds`; returns the operations done (and the
 * wall time in *ret_s), or -1 when one failed. */
static int64_t run(struct shared *sh, enum op op, bool raw, unsigned n, double seconds,
		   double *ret_s)
{
	static struct worker w[MAX_THREADS];
	pthread_t t[MAX_THREADS];
	pthread_barrier_t ready;
	pthread_barrier_init(&ready, NULL, n + 1);
	stop_flag = 0;
	for (unsigned i = 0; i < n; i++) {
		w[i] = (struct worker){.sh = sh, .op = op, .raw = raw, .stop = &stop_flag,
				       .ready = &ready};
		if (pthread_create(&t[i], NULL, raw ? raw_worker : sdf_worker, &w[i]) != 0) {
			fprintf(stderr, "bench_vsm: pthread_create failed\n");
			exit(1);
		}
	}
	pthread_barrier_wait(&ready);
	int64_t t0 = chsm_monotonic_ms();
	/* stop, unless a worker failed early */
	while (chsm_monotonic_ms() - t0 < (int64_t)(seconds * 1000))
		usleep(10000);
	stop_flag = 1;
	int64_t total = 0;
	bool failed = false;
	for (unsigned i = 0; i < n; i++) {
		pthread_join(t[i], NULL);
		total += (int64_t)w[i].ops;
		if (w[i].rc != 0 && !failed) {
			failed = true;
			fprintf(stderr, "bench_vsm: %s%s: %s\n", raw ? "raw " : "", w[i].what,
				raw ? crypto_strerror(w[i].rc) : SDFX_ErrorName(w[i].rc));
		}
	}
	*ret_s = (double)(chsm_monotonic_ms() - t0) / 1000.0;
	pthread_barrier_destroy(&ready);
	return failed ? -1 : total;
}

static void *raw_cpu_main(void *arg);

/* One thread's CPU time per raw operation, in µs, on a thread of its own
 * (on the raw CPUs). */
struct raw_cpu_arg {
	struct shared *sh;
	enum op op;
	double seconds, us;
};

static double raw_cpu_us(struct shared *sh, enum op op, double seconds)
{
	struct raw_cpu_arg a = {sh, op, seconds, 0};
	pthread_t t;
	if (pthread_create(&t, NULL, raw_cpu_main, &a) != 0)
		return 0;
	pthread_join(t, NULL);
	return a.us;
}

static double raw_cpu_measure(struct shared *sh, enum op op, double seconds)
{
	uint8_t *buf = calloc(1, MIB), *out = malloc(MIB);
	crypto_sm3_ctx *sm3 = NULL;
	double t0 = thread_cpu_s(), t = 0;
	uint64_t n = 0;
	if (buf && out && crypto_sm3_new(&sm3) == 0) {
		do {
			if (raw_once(sh, op, buf, out, sm3) < 0)
				break;
			n++;
			t = thread_cpu_s() - t0;
		} while (t < seconds);
	}
	crypto_sm3_free(sm3);
	free(buf);
	free(out);
	return n ? t * 1e6 / (double)n : 0;
}

static void *raw_cpu_main(void *arg)
{
	struct raw_cpu_arg *a = arg;
	pin_raw();
	a->us = raw_cpu_measure(a->sh, a->op, a->seconds);
	return NULL;
}

static int setup(struct shared *sh)
{
	void *s = NULL;
	int rc = SDF_OpenDevice(&sh->device);
	const char *what = "SDF_OpenDevice";
	if (rc == SDR_OK && (rc = SDF_OpenSession(sh->device, &s)) != SDR_OK)
		what = "SDF_OpenSession";
	if (rc == SDR_OK && (rc = SDFX_GenerateInternalKey(s, SDFX_KEY_SIGN, 1, NULL)) != SDR_OK)
		what = "generate sign key 1";
	if (rc == SDR_OK && (rc = SDFX_GenerateInternalKey(s, SDFX_KEY_ENC, 2, NULL)) != SDR_OK)
		what = "generate enc key 2";
	if (rc == SDR_OK && (rc = SDFX_GenerateInternalKey(s, SDFX_KEY_KEK, 3, NULL)) != SDR_OK)
		what = "generate KEK 3";
	if (rc == SDR_OK && (rc = SDF_ExportSignPublicKey_ECC(s, 1, &sh->sign_pub)) != SDR_OK)
		what = "SDF_ExportSignPublicKey_ECC";
	if (rc == SDR_OK && (rc = SDF_ExportEncPublicKey_ECC(s, 2, &sh->enc_pub)) != SDR_OK)
		what = "SDF_ExportEncPublicKey_ECC";
	crypto_random(sh->e, sizeof(sh->e));
	if (rc == SDR_OK && (rc = SDF_InternalSign_ECC(s, 1, sh->e, 32, &sh->sig)) != SDR_OK)
		what = "SDF_InternalSign_ECC";
	uint8_t msg[32] = {1};
	sh->cipher = malloc(ECCCIPHER_SIZE(32));
	if (rc == SDR_OK && !sh->cipher)
		rc = SDR_NOBUFFER;
	if (rc == SDR_OK &&
	    (rc = SDF_ExternalEncrypt_ECC(s, SGD_SM2_3, &sh->enc_pub, msg, 32, sh->cipher)) != SDR_OK)
		what = "SDF_ExternalEncrypt_ECC";
	if (s)
		SDF_CloseSession(s);
	if (rc != SDR_OK) {
		fprintf(stderr, "bench_vsm: %s: %s\n", what, SDFX_ErrorName(rc));
		return -1;
	}
	/* raw keys of the same kind, made here */
	if (crypto_sm2_generate(&sh->sign_key) < 0 || crypto_sm2_generate(&sh->enc_key) < 0 ||
	    crypto_sm2_sign_digest(sh->sign_key, sh->e, sh->raw_sig, &sh->raw_siglen) < 0 ||
	    crypto_sm2_encrypt(sh->enc_key, msg, sizeof(msg), &sh->raw_cipher,
			       &sh->raw_cipherlen) < 0 ||
	    crypto_random(sh->sm4_key, sizeof(sh->sm4_key)) < 0) {
		fprintf(stderr, "bench_vsm: raw key set-up failed\n");
		return -1;
	}
	return 0;
}

/* chsm-vsmd's CPU time so far (user + system, s), 0 without a pid. */
static double cpu_of(int pid)
{
	struct proc_sample s;
	return pid && proc_sample_read(pid, &s) == 0 ? s.cpu_s : 0;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"seconds", required_argument, NULL, 's'}, {"sessions", required_argument, NULL, 'n'},
		{"vsm-pid", required_argument, NULL, 'p'}, {"ops", required_argument, NULL, 'o'},
		{NULL, 0, NULL, 0},
	};
	double seconds = 2;
	unsigned sessions[8] = {1, 8, 64}, nsessions = 3;
	int vsm_pid = 0;
	bool want[OP_COUNT];
	for (int i = 0; i < OP_COUNT; i++)
		want[i] = true;
	int c;
	uint64_t v;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		char *copy, *save = NULL, *tok;
		switch (c) {
		case 's':
			seconds = strtod(optarg, NULL);
			if (!(seconds > 0 && seconds <= 600))
				goto usage;
			break;
		case 'n':
			nsessions = 0;
			copy = strdup(optarg);
			for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
				if (nsessions == 8 || chsm_parse_u64(tok, MAX_THREADS, &v) < 0 || !v)
					goto usage;
				sessions[nsessions++] = (unsigned)v;
			}
			free(copy);
			if (!nsessions)
				goto usage;
			break;
		case 'p':
			if (chsm_parse_u64(optarg, INT32_MAX, &v) < 0 || !v)
				goto usage;
			vsm_pid = (int)v;
			break;
		case 'o':
			for (int i = 0; i < OP_COUNT; i++)
				want[i] = strstr(optarg, OPS[i].name) != NULL;
			break;
		default:
			goto usage;
		}
	}
	if (optind != argc)
		goto usage;

	struct shared sh = {0};
	if (setup(&sh) < 0)
		return 1;
	cpu_set_t cpus, own;
	char vsm_list[256], own_list[256];
	raw_pinned = vsm_pid && sched_getaffinity(vsm_pid, sizeof(cpus), &cpus) == 0;
	if (raw_pinned)
		raw_cpus = cpus;
	int cores = raw_pinned ? CPU_COUNT(&cpus) : (int)sysconf(_SC_NPROCESSORS_ONLN);
	if (cores < 1 || cores > MAX_THREADS)
		cores = 1;
	if (sched_getaffinity(0, sizeof(own), &own) < 0)
		CPU_ZERO(&own);
	printf("VSM service through libopenchsm-sdf over loopback; %.1f s per figure; the VSM may use %d core%s",
	       seconds, cores, cores > 1 ? "s" : "");
	if (raw_pinned)
		printf(" (CPU %s; raw figures ran there too)", cpu_list(&cpus, vsm_list, sizeof(vsm_list)));
	printf("; the SDF client ran on CPU %s of %ld\n\n", cpu_list(&own, own_list, sizeof(own_list)),
	       sysconf(_SC_NPROCESSORS_ONLN));
	const char *plural = cores > 1 ? "s" : "";
	printf("| operation | raw 1 thread (ops/s per CPU s) | raw %d thread%s (ops/s) |", cores, plural);
	for (unsigned i = 0; i < nsessions; i++)
		printf(" SDF %u session%s (ops/s) |", sessions[i], sessions[i] > 1 ? "s" : "");
	printf(" SDF at 8 / raw %d thread%s |", cores, plural);
	if (vsm_pid)
		printf(" VSM CPU per op at 8 (µs) | raw CPU per op (µs) | raw / VSM CPU per op |");
	printf("\n|---|---:|---:|");
	for (unsigned i = 0; i < nsessions; i++)
		printf("---:|");
	printf("---:|%s\n", vsm_pid ? "---:|---:|---:|" : "");
	int status = 0;
	for (int op = 0; op < OP_COUNT; op++) {
		if (!want[op])
			continue;
		bool has_raw = op != OP_ROUND_TRIP; /* the round trip has no crypto */
		double s = 0, rawcpu = has_raw ? raw_cpu_us(&sh, (enum op)op, seconds / 2) : 0;
		int64_t n = has_raw ? run(&sh, (enum op)op, true, (unsigned)cores, seconds, &s) : 0;
		if (n < 0) {
			status = 1;
			continue;
		}
		double raw_rate = has_raw ? (double)n / s : 0, at8 = -1, vsm_us = -1;
		char cell[64];
#define FMT(rate)                                                                               \
	(!has_raw && (rate) <= 0 ? snprintf(cell, sizeof(cell), "-")                            \
	 : OPS[op].bytes         ? snprintf(cell, sizeof(cell), "%.0f (%.1f MB/s)", (rate),     \
					    (rate) * (double)OPS[op].bytes / 1e6)               \
				 : snprintf(cell, sizeof(cell), "%.0f", (rate)))
		FMT(rawcpu > 0 ? 1e6 / rawcpu : 0);
		printf("| %s | %s |", OPS[op].name, cell);
		FMT(raw_rate);
		printf(" %s |", cell);
		for (unsigned i = 0; i < nsessions; i++) {
			double c0 = cpu_of(vsm_pid);
			n = run(&sh, (enum op)op, false, sessions[i], seconds, &s);
			double c1 = cpu_of(vsm_pid);
			if (n < 0) {
				status = 1;
				printf(" failed |");
				continue;
			}
			double rate = (double)n / s;
			if (sessions[i] == 8) {
				at8 = rate;
				vsm_us = n ? (c1 - c0) * 1e6 / (double)n : 0;
			}
			FMT(rate);
			printf(" %s |", cell);
		}
		if (at8 >= 0 && has_raw)
			printf(" %.0f %% |", 100.0 * at8 / raw_rate);
		else
			printf(" - |");
		if (vsm_pid) {
			if (vsm_us > 0 && op != OP_SM3_1M) /* SM3 runs in the library */
				printf(" %.1f |", vsm_us);
			else
				printf(" - |");
			if (vsm_us > 0 && has_raw && op != OP_SM3_1M)
				printf(" %.1f | %.0f %% |", rawcpu, 100.0 * rawcpu / vsm_us);
			else if (has_raw)
				printf(" %.1f | - |", rawcpu);
			else
				printf(" - | - |");
		}
		printf("\n");
		fflush(stdout);
	}
	printf("\n(sm3-1m is computed by the library in the caller's process, as docs/sdf.md says; "
	       "VSM CPU per op counts chsm-vsmd's user + system time; round-trip is "
	       "SDF_GetDeviceInfo, which the VSM answers without crypto: its VSM CPU per op is "
	       "what the service costs every request)\n");
	free(sh.cipher);
	free(sh.raw_cipher);
	crypto_sm2_key_free(sh.sign_key);
	crypto_sm2_key_free(sh.enc_key);
	SDF_CloseDevice(sh.device);
	return status;
usage:
	fprintf(stderr, "usage: bench_vsm [--seconds S] [--sessions N,N,...] [--vsm-pid PID] "
			"[--ops sm2-sign,sm2-verify,sm2-encrypt,sm2-decrypt,sm4-cbc-1k,sm4-cbc-1m,sm3-1m,"
			"round-trip]\n");
	return 2;
}
