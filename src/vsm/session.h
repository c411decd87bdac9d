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
 * when dropped. The engine is shared by every connection thread. Never logs.
 */
#ifndef CHSM_VSM_SESSION_H
#define CHSM_VSM_SESSION_H

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

/* Serves the connected socket fd from peer until the connection ends (the
 * caller closes fd; the engine clears its O_NONBLOCK). Returns when the
 * peer closes, on a protocol error or timeout, or when fd is shut down
 * (shutdown(2)) by another thread. */
void vsm_engine_serve(vsm_engine *e, int fd, const struct sockaddr *peer, socklen_t peer_len);

#endif
