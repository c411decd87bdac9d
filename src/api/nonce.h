/*
 * nonce.h: group commit of request nonces (PROFILE.md §5): the durable
 * path of the replay window (replay.h), for requests whose timestamp is
 * above the durable ceiling; their nonce must be durable before the request
 * is answered, and one commit (one fdatasync) per request would bound them
 * at the disk's sync rate. Callers that arrive while a batch commits
 * wait together and go to disk as the next batch, in one transaction
 * (store_nonces_use): the leader/follower scheme, without a thread of its
 * own. Private to src/api.
 */
#ifndef CHSM_API_NONCE_H
#define CHSM_API_NONCE_H

#include <stdint.h>

#include "store/store.h"

/* At most this many nonces go to disk in one transaction. */
#define API_NONCE_BATCH_MAX 256
/* At most this many callers wait in the pending list; more wait for room
 * before they join it (the list's nodes live on the callers' stacks). */
#define API_NONCE_PENDING_MAX 1024

struct api_nonces;

/* A batcher writing into store (which must outlive it). 0 or -ENOMEM. */
int api_nonces_new(chsm_store *store, struct api_nonces **ret);
/* Frees b (NULL is fine); no caller may be inside api_nonces_use. */
void api_nonces_free(struct api_nonces *b);

/* Records nonce with its timestamp, as store_nonce_use does (now_ms for
 * the purge), and returns only once the batch holding it is committed:
 * 0 when the nonce was new (and is durable now), 1 when it was recorded
 * already, also by an earlier caller of the same batch or by a concurrent
 * one (replay), -EINVAL for an empty or too long nonce, or the store's
 * -errno: a storage failure fails every nonce of that batch, and none of
 * them is recorded. Thread-safe; it blocks the caller for about one
 * commit, or two when a batch is being committed as it arrives. */
int api_nonces_use(struct api_nonces *b, const char *nonce, int64_t timestamp_ms, int64_t now_ms);

#endif
