/*
 * bench_sm2: SM2 operations per second on one core, the module's own
 * implementation beside the OpenSSL reference (crypto_sm2_ossl_*), with the
 * ratio. Sign and verify include the Z value and SM3 over a 32-byte message
 * each time (as FACTS.md's figures do); encrypt and decrypt use 32 bytes.
 *
 * Usage: bench_sm2 [seconds per measurement, default 1]
 * Rates are per second of this thread's CPU time (CLOCK_THREAD_CPUTIME_ID),
 * so time spent waiting for a core on a shared machine does not count; the
 * wall-clock rate of the run is printed too. Run it more than once.
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
	uint8_t msg[32];
	uint8_t sig[CRYPTO_SM2_SIG_DER_MAX];
	size_t siglen;
	uint8_t *der;
	size_t derlen;
	bool ossl;
};

typedef int (*op_fn)(struct ctx *c);

static int op_sign(struct ctx *c)
{
	uint8_t sig[CRYPTO_SM2_SIG_DER_MAX];
	size_t len = 0;
	return c->ossl ? crypto_sm2_ossl_sign(c->key, NULL, c->msg, sizeof(c->msg), sig, &len)
		       : crypto_sm2_sign(c->key, NULL, c->msg, sizeof(c->msg), sig, &len);
}

static int op_verify(struct ctx *c)
{
	return c->ossl ? crypto_sm2_ossl_verify(c->key, NULL, c->msg, sizeof(c->msg), c->sig,
						c->siglen)
		       : crypto_sm2_verify(c->key, NULL, c->msg, sizeof(c->msg), c->sig, c->siglen);
}

static int op_encrypt(struct ctx *c)
{
	uint8_t *der = NULL;
	size_t len = 0;
	int r = c->ossl ? crypto_sm2_ossl_encrypt(c->key, c->msg, sizeof(c->msg), &der, &len)
			: crypto_sm2_encrypt(c->key, c->msg, sizeof(c->msg), &der, &len);
	free(der);
	return r;
}

static int op_decrypt(struct ctx *c)
{
	uint8_t *plain = NULL;
	size_t len = 0;
	int r = c->ossl ? crypto_sm2_ossl_decrypt(c->key, c->der, c->derlen, &plain, &len)
			: crypto_sm2_decrypt(c->key, c->der, c->derlen, &plain, &len);
	crypto_free_secret(plain, len);
	return r;
}

static int op_keygen(struct ctx *c)
{
	crypto_sm2_key *key = NULL;
	int r = c->ossl ? crypto_sm2_ossl_generate(&key) : crypto_sm2_generate(&key);
	crypto_sm2_key_free(key);
	return r;
}

/* Runs op for about secs seconds of CPU time; returns operations per CPU
 * second. */
static double measure(op_fn op, struct ctx *c, double secs)
{
	long n = 0;
	double start = cpu_now(), t;
	do {
		for (int i = 0; i < 50; i++) {
			if (op(c) != 0) {
				fprintf(stderr, "bench_sm2: operation failed\n");
				exit(1);
			}
		}
		n += 50;
		t = cpu_now() - start;
	} while (t < secs);
	return (double)n / t;
}

int main(int argc, char **argv)
{
	double secs = 1.0;
	if (argc > 1) {
		char *end = NULL;
		secs = strtod(argv[1], &end);
		if (end == argv[1] || *end != '\0' || secs <= 0 || secs > 60) {
			fprintf(stderr, "usage: bench_sm2 [seconds 0-60]\n");
			return 2;
		}
	}
	if (crypto_sm2_use_openssl()) {
		fprintf(stderr, "bench_sm2: unset OPENCHSM_SM2_IMPL to compare both\n");
		return 2;
	}
	struct ctx c = {0};
	if (crypto_sm2_generate(&c.key) != 0 || crypto_random(c.msg, sizeof(c.msg)) != 0 ||
	    crypto_sm2_sign(c.key, NULL, c.msg, sizeof(c.msg), c.sig, &c.siglen) != 0 ||
	    crypto_sm2_encrypt(c.key, c.msg, sizeof(c.msg), &c.der, &c.derlen) != 0) {
		fprintf(stderr, "bench_sm2: setup failed\n");
		return 1;
	}
	static const struct {
		const char *name;
		op_fn fn;
	} ops[] = {
		{"sign (Z+SM3)", op_sign},     {"verify (Z+SM3)", op_verify},
		{"encrypt 32 B", op_encrypt}, {"decrypt 32 B", op_decrypt},
		{"keygen", op_keygen},
	};
	double wall = clock_of(CLOCK_MONOTONIC), cpu = cpu_now();
	printf("%-16s %12s %12s %8s\n", "per CPU second", "own", "openssl", "ratio");
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		c.ossl = false;
		double own = measure(ops[i].fn, &c, secs);
		c.ossl = true;
		double ref = measure(ops[i].fn, &c, secs);
		printf("%-16s %12.0f %12.0f %7.2fx\n", ops[i].name, own, ref, own / ref);
		fflush(stdout);
	}
	wall = clock_of(CLOCK_MONOTONIC) - wall;
	cpu = cpu_now() - cpu;
	printf("CPU time / wall time: %.0f%% (below 100%%: the core was shared)\n",
	       100.0 * cpu / wall);
	free(c.der);
	crypto_sm2_key_free(c.key);
	return 0;
}
