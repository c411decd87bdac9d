/*
 * load_pool.h: requests of chsm-load signed ahead of time (PROFILE.md §5),
 * so that the load generator's sending loop never computes a signature.
 *
 * A pool holds, per kind of request, a ring of complete HTTP/1.1 requests
 * (request line, Host, the X-GMT-* headers, body) signed with the platform
 * key by gmt_sign_request, each with its own nonce and a timestamp taken
 * when it was signed. A signer thread fills every ring before the run and
 * tops them up while it runs, in batches, whenever one drops below half.
 * A request signed more than LOAD_POOL_MAX_AGE_MS ago is never handed out
 * (the CHSM accepts timestamps within 300 s of its clock): it is dropped and
 * counted, and the next one taken.
 *
 * Threads: load_pool_take, load_pool_sign_now and the counters may be used
 * from one thread (the sender) while the signer thread runs.
 */
#ifndef CHSM_BENCH_LOAD_POOL_H
#define CHSM_BENCH_LOAD_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "crypto/crypto.h"
#include "proto/auth.h"

/* A pre-signed request older than this is not sent (the CHSM's window is
 * ±300 s; the rest is margin for clocks and queues). */
#define LOAD_POOL_MAX_AGE_MS 240000

/* Kinds of requests (the --mix names in load.c). */
enum load_kind {
	LOAD_STATUS,      /* GET /chsm/status (7.2.2) */
	LOAD_STATUS_ALL,  /* GET /chsm/status/all (7.2.3) */
	LOAD_VSM_GET,     /* GET /vsms/{base VSM} (7.3.1) */
	LOAD_VSM_STATUS,  /* GET /vsms/{base VSM}/status (7.3.2) */
	LOAD_TOKEN,       /* PUT /vsms/{base VSM}/token, a new secret (7.3.4) */
	LOAD_CREATE,      /* POST /vsms, a stopped VSM of its own (7.3.12) */
	LOAD_DELETE,      /* DELETE /vsms/{that VSM} (7.3.13), sent later */
	LOAD_FINGERPRINT, /* GET /auth/platform-key/fingerprint (7.4.1; needs no
			   * signature, gets the same headers as the others) */
	LOAD_KINDS
};

/* One request ready to send. wire/len: the whole request; nonce: its
 * X-GMT-Nonce (responses are signed over it); seq: the number of the
 * created VSM for LOAD_CREATE and LOAD_DELETE, else the base VSM's. */
struct load_req {
	char *wire;
	size_t len;
	int64_t signed_ms;
	uint32_t seq;
	uint8_t kind;
	char nonce[CHSM_NONCE_MAX_LEN + 1];
};

/* What a pool signs. */
struct load_pool_config {
	const crypto_sm2_key *key;  /* the platform key pair */
	const char *host_header;    /* "127.0.0.1:8443" */
	const char *tag;            /* VSM ids are TAG-bN (base) and TAG-cN (created) */
	unsigned base_vsms;         /* VSMs TAG-b0 .. TAG-b(N-1), for vsm-get, token, ... */
	size_t capacity[LOAD_KINDS];/* ring size per kind; 0: the kind is not used */
};

typedef struct load_pool load_pool;

/* The id of a VSM of the run: "TAG-bN" (base) or "TAG-cN" (created). */
void load_vsm_id(const char *tag, bool base, uint32_t n, char *out, size_t outlen);

/* Makes a pool and fills every ring completely (in this thread), then
 * starts the signer thread. Returns 0 and sets *ret; -ENOMEM, or the
 * signing error. */
int load_pool_new(const struct load_pool_config *cfg, load_pool **ret);
/* Stops the signer thread and frees the pool and every request in it.
 * Accepts NULL. */
void load_pool_free(load_pool *pool);

/* Takes the oldest fresh request of a kind (LOAD_DELETE excepted: deletes
 * come with their create). For LOAD_CREATE, *ret_delete receives the
 * matching DELETE, signed at the same time. When the ring is empty, signs
 * one here (counted). Returns 0, or a negative errno. The caller frees
 * what it got with load_req_free. */
int load_pool_take(load_pool *pool, enum load_kind kind, struct load_req *ret,
		   struct load_req *ret_delete);
/* Signs a request now, in this thread: for re-sending a DELETE whose VSM
 * was still busy (the first signature's nonce is spent). */
int load_pool_sign_now(load_pool *pool, enum load_kind kind, uint32_t seq,
		       struct load_req *ret);
void load_req_free(struct load_req *r);

struct load_pool_stats {
	uint64_t signed_ahead;   /* by the signer thread (and before the run) */
	uint64_t signed_inline;  /* in the sender, because a ring was empty or for a re-sent DELETE */
	uint64_t stale_dropped;  /* too old when their turn came */
	double signer_cpu_s;     /* CPU time of the signer thread */
};
void load_pool_get_stats(load_pool *pool, struct load_pool_stats *ret);

#endif
