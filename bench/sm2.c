/*
 * bench_sm2: SM2 operations per second on one core, the module's own
 * implementation beside the OpenSSL reference (crypto_sm2_ossl_*), with the
 * ratio and the bar of issue #8. Sign and verify include the Z value and
 * SM3 over a 32-byte message each time (as FACTS.md's figures do); encrypt
 * and decrypt use 32 bytes.
 *
 * Usage: bench_sm2 [seconds per measurement, default 1]
 *        bench_sm2 --count N [--adx | --portable]
 * Rates are per second of this thread's CPU time (CLOCK_THREAD_CPUTIME_ID),
 * so time spent waiting for a core on a shared machine does not count; the
 * wall-clock rate of the run is printed too. Run it more than once.
 * The bar: GmSSL's per-core figures of FACTS.md for sign and verify, and
 * three times OpenSSL's rate measured in the same run for encrypt and
 * decrypt (GmSSL's figures for those are printed beside it).
 * --count runs every operation N times without timing, for an instruction
 * count under `valgrind --tool=callgrind` (the own_* and ossl_* functions'
 * inclusive cost divided by N). --adx / --portable select the own field
 * arithmetic (Valgrind hides ADX from cpuid, so the assembly must be
 * selected by hand there; it runs it).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "crypto/crypto.h"
#include "crypto/crypto_internal.h"

static double clock_of(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_now(void)
{
	return clock_of(CLOCK_THREAD_CPUTIME_ID);
}

struct ctx {
	crypto_sm2_key *key;
	uint8_t point[CRYPTO_SM2_POINT_LEN];
	uint8_t msg[32];
	uint8_t sig[CRYPTO_SM2_SIG_DER_MAX];
	size_t siglen;
	uint8_t *der;
	size_t derlen;
};

typedef int (*op_fn)(struct ctx *c);

/* One function per operation and implementation, so that callgrind
 * reports each apart. */
__attribute__((noinline)) static int own_sign(struct ctx *c)
{
	uint8_t sig[CRYPTO_SM2_SIG_DER_MAX];
	size_t len = 0;
	return crypto_sm2_sign(c->key, NULL, c->msg, sizeof(c->msg), sig, &len);
}

__attribute__((noinline)) static int ossl_sign(struct ctx *c)
{
	uint8_t sig[CRYPTO_SM2_SIG_DER_MAX];
	size_t len = 0;
	return crypto_sm2_ossl_sign(c->key, NULL, c->msg, sizeof(c->msg), sig, &len);
}

__attribute__((noinline)) static int own_verify(struct ctx *c)
{
	return crypto_sm2_verify(c->key, NULL, c->msg, sizeof(c->msg), c->sig, c->siglen);
}

__attribute__((noinline)) static int ossl_verify(struct ctx *c)
{
	return crypto_sm2_ossl_verify(c->key, NULL, c->msg, sizeof(c->msg), c->sig, c->siglen);
}

/* A new key object from the public point for each verification: no
 * per-key table and Z computed once for the one verification, as for a
 * key seen once. */
__attribute__((noinline)) static int own_verify_new_key(struct ctx *c)
{
	crypto_sm2_key *key = NULL;
	int r = crypto_sm2_from_public_point(c->point, &key);
	if (r == 0)
		r = crypto_sm2_verify(key, NULL, c->msg, sizeof(c->msg), c->sig, c->siglen);
	crypto_sm2_key_free(key);
	return r;
}

__attribute__((noinline)) static int ossl_verify_new_key(struct ctx *c)
{
	crypto_sm2_key *key = NULL;
	int r = crypto_sm2_from_public_point(c->point, &key);
	if (r == 0)
		r = crypto_sm2_ossl_verify(key, NULL, c->msg, sizeof(c->msg), c->sig, c->siglen);
	crypto_sm2_key_free(key);
	return r;
}

/* The key object alone (validation of the point, the OpenSSL key, Z). */
__attribute__((noinline)) static int own_key_from_point(struct ctx *c)
{
	crypto_sm2_key *key = NULL;
	int r = crypto_sm2_from_public_point(c->point, &key);
	crypto_sm2_key_free(key);
	return r;
}

__attribute__((noinline)) static int own_encrypt(struct ctx *c)
{
	uint8_t *der = NULL;
	size_t len = 0;
	int r = crypto_sm2_encrypt(c->key, c->msg, sizeof(c->msg), &der, &len);
	free(der);
	return r;
}

__attribute__((noinline)) static int ossl_encrypt(struct ctx *c)
{
	uint8_t *der = NULL;
	size_t len = 0;
	int r = crypto_sm2_ossl_encrypt(c->key, c->msg, sizeof(c->msg), &der, &len);
	free(der);
	return r;
}

__attribute__((noinline)) static int own_decrypt(struct ctx *c)
{
	uint8_t *plain = NULL;
	size_t len = 0;
	int r = crypto_sm2_decrypt(c->key, c->der, c->derlen, &plain, &len);
	crypto_free_secret(plain, len);
	return r;
}

__attribute__((noinline)) static int ossl_decrypt(struct ctx *c)
{
	uint8_t *plain = NULL;
	size_t len = 0;
	int r = crypto_sm2_ossl_decrypt(c->key, c->der, c->derlen, &plain, &len);
	crypto_free_secret(plain, len);
	return r;
}

__attribute__((noinline)) static int own_keygen(struct ctx *c)
{
	(void)c;
	crypto_sm2_key *key = NULL;
	int r = crypto_sm2_generate(&key);
	crypto_sm2_key_free(key);
	return r;
}

__attribute__((noinline)) static int ossl_keygen(struct ctx *c)
{
	(void)c;
	crypto_sm2_key *key = NULL;
	int r = crypto_sm2_ossl_generate(&key);
	crypto_sm2_key_free(key);
	return r;
}

/* GmSSL 3.3-dev per core (FACTS.md); bar_x3: the bar is 3 x OpenSSL's
 * measured rate instead (encrypt, decrypt); 0: no bar (keygen). ossl
 * NULL: no OpenSSL counterpart. */
static const struct {
	const char *name;
	op_fn own, ossl;
	double gmssl;
	bool bar_x3;
} ops[] = {
	{"sign (Z+SM3)", own_sign, ossl_sign, 12198, false},
	{"verify (Z+SM3)", own_verify, ossl_verify, 16948, false},
	{"verify, new key", own_verify_new_key, ossl_verify_new_key, 16948, false},
	{"encrypt 32 B", own_encrypt, ossl_encrypt, 17222, true},
	{"decrypt 32 B", own_decrypt, ossl_decrypt, 21362, true},
	{"keygen", own_keygen, ossl_keygen, 0, false},
	{"key from point", own_key_from_point, NULL, 0, false},
};

static void run(op_fn op, struct ctx *c)
{
	if (op(c) != 0) {
		fprintf(stderr, "bench_sm2: operation failed\n");
		exit(1);
	}
}

/* Runs op for about secs seconds of CPU time; returns operations per CPU
 * second. */
static double measure(op_fn op, struct ctx *c, double secs)
{
	long n = 0;
	double start = cpu_now(), t;
	do {
		for (int i = 0; i < 50; i++)
			run(op, c);
		n += 50;
		t = cpu_now() - start;
	} while (t < secs);
	return (double)n / t;
}

static int usage(void)
{
	fprintf(stderr, "usage: bench_sm2 [seconds 0-60]\n"
			"       bench_sm2 --count N [--adx | --portable]\n");
	return 2;
}

int main(int argc, char **argv)
{
	double secs = 1.0;
	long count = 0;
	int path = -1; /* field arithmetic: -1 as detected, 0 portable, 1 assembly */
	for (int i = 1; i < argc; i++) {
		char *end = NULL;
		if (strcmp(argv[i], "--count") == 0 && i + 1 < argc) {
			count = strtol(argv[++i], &end, 10);
			if (end == argv[i] || *end != '\0' || count <= 0 || count > 1000000)
				return usage();
		} else if (strcmp(argv[i], "--adx") == 0) {
			path = 1;
		} else if (strcmp(argv[i], "--portable") == 0) {
			path = 0;
		} else {
			secs = strtod(argv[i], &end);
			if (end == argv[i] || *end != '\0' || secs <= 0 || secs > 60)
				return usage();
		}
	}
#if SM2_HAVE_X86_ASM
	if (path >= 0)
		sm2_fe_force_adx(path == 1);
	const char *field = sm2_fe_use_adx ? "mulx/adx assembly" : "portable C";
#else
	if (path == 1)
		return usage();
	const char *field = "portable C";
#endif
	if (crypto_sm2_use_openssl()) {
		fprintf(stderr, "bench_sm2: unset OPENCHSM_SM2_IMPL to compare both\n");
		return 2;
	}
	struct ctx c = {0};
	if (crypto_sm2_generate(&c.key) != 0 || crypto_random(c.msg, sizeof(c.msg)) != 0 ||
	    crypto_sm2_public_point(c.key, c.point) != 0 ||
	    crypto_sm2_sign(c.key, NULL, c.msg, sizeof(c.msg), c.sig, &c.siglen) != 0 ||
	    crypto_sm2_encrypt(c.key, c.msg, sizeof(c.msg), &c.der, &c.derlen) != 0) {
		fprintf(stderr, "bench_sm2: setup failed\n");
		return 1;
	}
	size_t nops = sizeof(ops) / sizeof(ops[0]);
	if (count > 0) {
		for (size_t i = 0; i < nops; i++) {
			for (long j = 0; j < count; j++) {
				run(ops[i].own, &c);
				if (ops[i].ossl != NULL)
					run(ops[i].ossl, &c);
			}
		}
		printf("bench_sm2: %ld of each operation, own field arithmetic: %s\n", count, field);
	} else {
		double wall = clock_of(CLOCK_MONOTONIC), cpu = cpu_now();
		printf("own field arithmetic: %s\n", field);
		printf("%-16s %9s %9s %7s %9s %9s %7s\n", "per CPU second", "own", "openssl",
		       "ratio", "GmSSL", "bar", "own/bar");
		for (size_t i = 0; i < nops; i++) {
			double own = measure(ops[i].own, &c, secs);
			if (ops[i].ossl == NULL) {
				printf("%-16s %9.0f %9s %7s\n", ops[i].name, own, "-", "-");
				continue;
			}
			double ref = measure(ops[i].ossl, &c, secs);
			printf("%-16s %9.0f %9.0f %6.2fx", ops[i].name, own, ref, own / ref);
			if (ops[i].gmssl > 0) {
				double bar = ops[i].bar_x3 ? 3 * ref : ops[i].gmssl;
				printf(" %9.0f %9.0f %6.2fx%s", ops[i].gmssl, bar, own / bar,
				       ops[i].bar_x3 ? " (bar: 3 x openssl)" : "");
			}
			printf("\n");
			fflush(stdout);
		}
		wall = clock_of(CLOCK_MONOTONIC) - wall;
		cpu = cpu_now() - cpu;
		printf("CPU time / wall time: %.0f%% (below 100%%: the core was shared)\n",
		       100.0 * cpu / wall);
	}
	free(c.der);
	crypto_sm2_key_free(c.key);
	return 0;
}
