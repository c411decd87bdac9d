/*
 * replay.h: the management API's replay window (PROFILE.md §5) without a
 * synchronous write per request. Private to src/api.
 *
 * Guarantee: a nonce is accepted at most once while its timestamp can
 * still pass the ±300 s window, across restarts and crashes too. How:
 *  - Nonces live in memory: a table of SipHash-2-4 (random per-process
 *    key) of the nonce with its timestamp, kept until the timestamp is
 *    API_REPLAY_KEEP_MS behind the clock (twice the window, as the store
 *    keeps them, so a clock stepped back by up to one window lets no
 *    replay through).
 *  - A durable ceiling C (setting "auth.ceilingMs"), raised by a
 *    background thread to now + API_REPLAY_AHEAD_MS whenever a request
 *    finds now + API_REPLAY_RAISE_MS > C: one commit per raise, none while
 *    no request arrives. C never goes down.
 *  - A request with timestamp T <= C (as published, i.e. durable) is
 *    accepted with its nonce only in memory. T > C takes the durable path:
 *    the nonce is committed to the store (nonce.h) before the answer.
 *  - At open, the floor F is the durable C: the verifier refuses T <= F
 *    with 2003 (such a request might have been accepted before the restart
 *    with its nonce only in memory), and the stored nonces with T > F are
 *    loaded into memory, so their replays get 2004.
 *  - At a clean stop (api_replay_shutdown) C is lowered to the highest
 *    timestamp accepted on the fast path, so that a restart right after a
 *    stop or a reboot does not refuse requests signed after the stop.
 *  - Memory is bounded (API_REPLAY_SLOTS slots, at most
 *    API_REPLAY_MAX_ENTRIES nonces). At the bound, after dropping what
 *    expired, a request is not refused: it takes the durable path, and so
 *    does every request (fast path off) until every nonce accepted that
 *    way is API_REPLAY_KEEP_MS old (those nonces are in the store only).
 *    So the bound costs speed, never a replay and never an error.
 * A false replay (two different nonces with the same 64-bit hash) has
 * probability at most API_REPLAY_MAX_ENTRIES / 2^64 < 2^-44 per request.
 */
#ifndef CHSM_API_REPLAY_H
#define CHSM_API_REPLAY_H

#include <stdbool.h>
#include <stdint.h>

#include "common/limits.h"
#include "store/store.h"

/* Slots of the in-memory table (16 bytes each: 16 MiB, made resident when
 * the table is made, so that the service's memory does not grow with it). */
#define API_REPLAY_SLOTS (1u << 20)
/* At most this many nonces in memory (linear probing stays short). */
#define API_REPLAY_MAX_ENTRIES (API_REPLAY_SLOTS / 4 * 3)
/* A raise sets C = now + this; it is also the longest the start waits for
 * the clock to pass the floor. */
#define API_REPLAY_AHEAD_MS 2000
/* A request raises C once now + this > C, i.e. a second before it falls
 * behind the clock. */
#define API_REPLAY_RAISE_MS 1000
/* How long after its timestamp a nonce is kept (memory and store). */
#define API_REPLAY_KEEP_MS (2 * (int64_t)CHSM_AUTH_WINDOW_MS)
/* The settings row that holds C, decimal milliseconds. */
#define API_REPLAY_SETTING "auth.ceilingMs"

struct api_replay;

/* Reads C from store (absent: 0) as the floor, loads the stored nonces with
 * a timestamp above it that are not older than API_REPLAY_KEEP_MS at
 * now_ms, draws the hash key. No thread yet (api_replay_start). 0,
 * -ENOMEM, -EIO (the setting is not a number) or the store's -errno. */
int api_replay_open(chsm_store *store, int64_t now_ms, struct api_replay **ret);
/* Stops the raiser and frees w (NULL is fine); no caller may be inside
 * api_replay_use. */
void api_replay_free(struct api_replay *w);
/* Starts the background thread that raises C. 0 or -errno. Without it (unit
 * tests) C moves only through api_replay_raise. */
int api_replay_start(struct api_replay *w);

/* At a clean stop, once no request is in flight and none will come: stops
 * the raiser and lowers the durable C to the highest timestamp accepted on
 * the fast path in this run (never below F; nothing written when that is
 * C already). 0, or the store's -errno (C stays, which is also safe). */
int api_replay_shutdown(struct api_replay *w);

/* The floor F: timestamps at or below it are refused (2003). */
int64_t api_replay_floor(const struct api_replay *w);
/* The durable ceiling C as published. */
int64_t api_replay_ceiling(const struct api_replay *w);
/* Whether the fast path is off (the memory bound was hit, or nonces did
 * not fit at open), as of now_ms. */
bool api_replay_overflowed(struct api_replay *w, int64_t now_ms);

/* Records nonce with its timestamp ts at the clock now_ms: 0 when new (in
 * memory, and durable too when ts > C or the fast path is off), 1 when
 * seen before (replay; also ts <= F, which the verifier refuses earlier),
 * -EINVAL for an empty or too long nonce, or the store's -errno on the
 * durable path (the nonce is then not recorded). May signal the raiser.
 * Thread-safe; blocks for a commit only on the durable path. */
int api_replay_use(struct api_replay *w, const char *nonce, int64_t ts, int64_t now_ms);

/* Raises C to now_ms + API_REPLAY_AHEAD_MS when now_ms + API_REPLAY_RAISE_MS
 * > C (else does nothing): commits the setting, then publishes it. 0 or the
 * store's -errno (C unchanged). What the background thread calls. */
int api_replay_raise(struct api_replay *w, int64_t now_ms);

/* Before answering: when the clock now_ms is at or below F by at most
 * API_REPLAY_AHEAD_MS, returns how many ms to wait until it passes F; 0
 * when it is past F; -ERANGE when it is further behind (the clock stepped
 * back: requests with T <= F get 2003 until it passes F). */
int64_t api_replay_wait_ms(const struct api_replay *w, int64_t now_ms);

#endif
