/*
 * keyload.c: fills a VSM with SM2 signing keys through the SDF library, for
 * the drift benchmark (bench/drift.sh): many sessions in parallel, each
 * generating a disjoint set of indexes. Prints "keys N seconds S rate R/s".
 *
 *   bench_keyload FIRST COUNT [SESSIONS]
 *
 * The VSM and token come from the SDF library's environment
 * (OPENCHSM_SDF_ENDPOINT, OPENCHSM_SDF_TOKEN_ID,
 * OPENCHSM_SDF_TOKEN_SECRET_BASE64_FILE; docs/sdf.md). Exit 1 on the first
 * failed key, with its SDR name.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "common/util.h"
#include "openchsm/sdf.h"

#define MAX_SESSIONS 16

struct worker {
	void *device;
	unsigned first, count, step, offset;
	int rc;
	unsigned failed_index;
};

static void *work(void *arg)
{
	struct worker *w = arg;
	void *session = NULL;
	w->rc = SDF_OpenSession(w->device, &session);
	for (unsigned i = w->offset; w->rc == SDR_OK && i < w->count; i += w->step) {
		w->rc = SDFX_GenerateInternalKey(session, SDFX_KEY_SIGN, w->first + i, NULL);
		if (w->rc != SDR_OK)
			w->failed_index = w->first + i;
	}
	if (session)
		SDF_CloseSession(session);
	return NULL;
}

int main(int argc, char **argv)
{
	uint64_t first, count, sessions = 2;
	if (argc < 3 || argc > 4 || chsm_parse_u64(argv[1], 1000000, &first) < 0 || first == 0 ||
	    chsm_parse_u64(argv[2], 1000000, &count) < 0 ||
	    (argc == 4 && (chsm_parse_u64(argv[3], MAX_SESSIONS, &sessions) < 0 || sessions == 0))) {
		fprintf(stderr, "usage: bench_keyload FIRST COUNT [SESSIONS (1-%d)]\n",
			MAX_SESSIONS);
		return 2;
	}
	void *device = NULL;
	int rc = SDF_OpenDevice(&device);
	if (rc != SDR_OK) {
		fprintf(stderr, "bench_keyload: SDF_OpenDevice: %s\n", SDFX_ErrorName(rc));
		return 1;
	}
	struct worker w[MAX_SESSIONS];
	pthread_t t[MAX_SESSIONS];
	int64_t t0 = chsm_monotonic_ms();
	for (unsigned i = 0; i < sessions; i++) {
		w[i] = (struct worker){device, (unsigned)first, (unsigned)count, (unsigned)sessions,
				       i, SDR_OK, 0};
		if (pthread_create(&t[i], NULL, work, &w[i]) != 0) {
			fprintf(stderr, "bench_keyload: pthread_create failed\n");
			return 1;
		}
	}
	int status = 0;
	for (unsigned i = 0; i < sessions; i++) {
		pthread_join(t[i], NULL);
		if (w[i].rc != SDR_OK) {
			fprintf(stderr, "bench_keyload: key %u: %s\n", w[i].failed_index,
				SDFX_ErrorName(w[i].rc));
			status = 1;
		}
	}
	double s = (double)(chsm_monotonic_ms() - t0) / 1000.0;
	SDF_CloseDevice(device);
	if (status == 0)
		printf("keys %llu seconds %.3f rate %.0f/s\n", (unsigned long long)count, s,
		       s > 0 ? (double)count / s : 0.0);
	return status;
}
