/*
 * session.h: the VSM service protocol (docs/vsm-protocol.md) on one
 * connection: HELLO, AUTH with the VSM's token, then the requests of the
 * message table, against the VSM's keys (keystore.h) and counters
 * (stats.h).
 *
 * Guarantees: a connection that is not authenticated can send only AUTH,
 * at most VSMP_MAX_PAYLOAD_PREAUTH bytes, and is closed after 10 s without
 * a complete frame; failed AUTHs are rate limited per client address; a
 * protocol error is answered with SDR_COMMFAIL (when possible) and closes
 * the connection; nothing is allocated from a size the peer claims beyond
 * the protocol's limits; session keys, payloads and token secrets are wiped
 * when dropped. The engine is shared by every thread serving connections.
 * Never logs.
 */
#ifndef CHSM_VSM_SESSION_H
#define CHSM_VSM_SESSION_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "store/store.h"
#include "vsm/stats.h"

typedef struct vsm_engine vsm_engine;

struct vsm_engine_config {
	const char *vsm_id;   /* copied */
	chsm_store *store;    /* not owned; must outlive the engine; NULL:
	                       * no token, every AUTH is refused */
	int max_keys;         /* internal key indexes are 1..max_keys */
	vsm_stats *stats;     /* not owned */
};

/* -ENOMEM, -EINVAL (no id or stats, max_keys < 1). */
int vsm_engine_new(const struct vsm_engine_config *cfg, vsm_engine **ret_engine);
/* Wipes the key cache and frees. No session may still run. Accepts NULL. */
void vsm_engine_free(vsm_engine *e);

/* One connection's session. It never blocks: the caller waits for what
 * vsm_conn_step asks (readable or writable socket) and calls it again, and
 * calls vsm_conn_timeout once vsm_conn_deadline has passed. A connection
 * is served by one thread at a time; different connections may be served
 * by different threads at once. */
typedef struct vsm_conn vsm_conn;

/* What a connection waits for; vsm_conn_step returns one or a negative
 * errno when the connection is over. */
#define VSM_CONN_WANT_READ  1
#define VSM_CONN_WANT_WRITE 2

/* A session on the connected, non-blocking socket fd (not owned: the
 * caller closes it after vsm_conn_free) from peer, with HELLO queued: call
 * vsm_conn_step(c, false) to send it. 0, -ENOMEM, or the random
 * generator's error. */
int vsm_conn_new(vsm_engine *e, int fd, const struct sockaddr *peer, socklen_t peer_len,
		 vsm_conn **ret_conn);

/* Does what the socket allows without blocking: sends what is left of the
 * pending response; with readable, reads once; then serves each whole
 * request buffered, sending its response before taking the next (a
 * request is processed inline, SM4 over 1 MiB included). Returns
 * VSM_CONN_WANT_READ or VSM_CONN_WANT_WRITE, or a negative errno: the
 * session is over (peer closed, protocol error answered and drained,
 * failed AUTH answered, I/O error); free it and close fd. */
int vsm_conn_step(vsm_conn *c, bool readable);

/* Monotonic ms (chsm_monotonic_ms) at which the connection times out
 * unless vsm_conn_step makes progress, or -1 for never: before AUTH each
 * frame within 10 s of the previous answer; after it, the rest of a frame
 * once begun within 30 s, an idle connection without limit; a response
 * the peer does not read within 30 s; the drain after a protocol error
 * within 0.5 s. */
int64_t vsm_conn_deadline(const vsm_conn *c);

/* The deadline passed: a frame whose header came is answered COMMFAIL
 * (then drained); anything else ends the session. Returns as
 * vsm_conn_step. */
int vsm_conn_timeout(vsm_conn *c);

/* Wipes the session's keys and buffers and frees it; fd stays open.
 * Accepts NULL. */
void vsm_conn_free(vsm_conn *c);

/* Serves the connected socket fd from peer until the connection ends, on
 * the calling thread, with the functions above and poll() (it sets fd's
 * O_NONBLOCK; the caller closes fd). Returns when the peer closes, on a
 * protocol error or timeout, or when fd is shut down (shutdown(2)) by
 * another thread. For tests and the fuzz harness; the service uses its
 * worker pool (service.h). */
void vsm_engine_serve(vsm_engine *e, int fd, const struct sockaddr *peer, socklen_t peer_len);

#endif
