/*
 * speed.c: raw SM4-CTR and SM3 throughput of the project's crypto module
 * (src/crypto), in this process, one core: the ceiling against which the
 * drift benchmark's image export/import rates are read. Each is run for
 * about SECONDS (default 1) over 64 KiB buffers, the size the image and
 * transfer modules stream in. Prints "sm4-ctr W MB/s (cpu C MB/s)" and the
 * same for sm3 (MB = 10^6 bytes): W per wall-clock second, as the drift
 * figures are, and C per second of this process's CPU time, which is what
 * the code does when it gets the core (the machine may be shared).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/util.h"
#include "crypto/crypto.h"

#define BUF_LEN (64 * 1024)

static double cpu_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	static uint8_t in[BUF_LEN], out[BUF_LEN];
	uint8_t key[CRYPTO_SM4_KEY_LEN], iv[CRYPTO_SM4_BLOCK_LEN], digest[CRYPTO_SM3_LEN];
	uint64_t seconds = 1;
	if (argc > 2 || (argc == 2 && (chsm_parse_u64(argv[1], 60, &seconds) < 0 || !seconds))) {
		fprintf(stderr, "usage: bench_speed [SECONDS (1-60)]\n");
		return 2;
	}
	if (crypto_random(in, sizeof(in)) < 0 || crypto_random(key, sizeof(key)) < 0 ||
	    crypto_random(iv, sizeof(iv)) < 0)
		return 1;

	crypto_sm4_ctr_ctx *ctr = NULL;
	if (crypto_sm4_ctr_new(key, iv, &ctr) < 0)
		return 1;
	int64_t t0 = chsm_monotonic_ms(), limit = (int64_t)seconds * 1000, elapsed;
	double c0 = cpu_seconds();
	uint64_t bytes = 0;
	do {
		for (int i = 0; i < 16; i++, bytes += BUF_LEN)
			if (crypto_sm4_ctr_update(ctr, in, BUF_LEN, out) < 0)
				return 1;
		elapsed = chsm_monotonic_ms() - t0;
	} while (elapsed < limit);
	crypto_sm4_ctr_free(ctr);
	printf("sm4-ctr %.1f MB/s (cpu %.1f MB/s)\n", (double)bytes / 1e3 / (double)elapsed,
	       (double)bytes / 1e6 / (cpu_seconds() - c0));

	crypto_sm3_ctx *sm3 = NULL;
	if (crypto_sm3_new(&sm3) < 0)
		return 1;
	t0 = chsm_monotonic_ms();
	c0 = cpu_seconds();
	bytes = 0;
	do {
		for (int i = 0; i < 16; i++, bytes += BUF_LEN)
			if (crypto_sm3_update(sm3, out, BUF_LEN) < 0)
				return 1;
		elapsed = chsm_monotonic_ms() - t0;
	} while (elapsed < limit);
	if (crypto_sm3_final(sm3, digest) < 0)
		return 1;
	crypto_sm3_free(sm3);
	double cpu = cpu_seconds() - c0;
	printf("sm3 %.1f MB/s (cpu %.1f MB/s)\n", (double)bytes / 1e3 / (double)elapsed,
	       (double)bytes / 1e6 / cpu);
	crypto_wipe(key, sizeof(key));
	return 0;
}
