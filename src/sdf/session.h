/*
 * session.h: devices, sessions and request/response exchanges of the SDF
 * library, shared by session.c (transport and authentication) and ops.c
 * (one function per SDF call). Private to src/sdf.
 *
 * Guarantees: an exchange either returns the server's status with a fully
 * received payload, or SDR_COMMFAIL, in which case the connection is
 * closed and every later call on the session is SDR_COMMFAIL. Payloads are
 * wiped when freed (they may carry key material).
 */
#ifndef CHSM_SDF_SESSION_H
#define CHSM_SDF_SESSION_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "sdf/sdf_internal.h"
#include "vsmp/vsmp.h"

struct sdf_device {
	uint32_t magic;
	struct sdf_config cfg;
};

struct sdf_session {
	uint32_t magic;
	pthread_mutex_t lock;
	int fd;                 /* -1 once the connection failed */
	struct vsmp_in in;      /* received bytes (freed with the connection) */
	uint32_t next_id;       /* request id of the next request */
	struct sdf_hash hash;
};

/* A received response payload (in the session's input buffer) and a
 * reader over it. */
struct sdf_reply {
	struct sdf_session *s; /* locked while the reply lives */
	struct vsmp_header h;
	struct vsmp_reader r;
};

/* Validates and locks a session handle. need_conn: SDR_COMMFAIL when the
 * connection has failed. Returns SDR_OK (then call session_leave) or an
 * SDR code. */
int session_enter(void *handle, bool need_conn, struct sdf_session **ret);
void session_leave(struct sdf_session *s);
/* Closes the connection and wipes its input buffer: every later call is
 * SDR_COMMFAIL. The caller holds the session's lock. */
void session_break(struct sdf_session *s);

/* One request on the session named by handle: w is a frame started with
 * vsmp_writer_begin(w, type, 0, 0) (the request id is set here) and is
 * always freed. Returns the answer's status; with SDR_OK the session stays
 * locked and *rp holds the payload until reply_free. */
int sdf_exchange(void *handle, struct vsmp_writer *w, struct sdf_reply *rp);
/* SDR_OK when the payload was consumed exactly and ok holds; otherwise
 * breaks the session and returns SDR_COMMFAIL. */
int reply_check(struct sdf_reply *rp, bool ok);
/* Wipes the payload and unlocks the session. */
void reply_free(struct sdf_reply *rp);
/* sdf_exchange for answers without fields. */
int sdf_exchange_empty(void *handle, struct vsmp_writer *w);

#endif
