/*
 * service.h: the network service of one VSM process: a libevent loop that
 * owns the VSM's listening socket and hands each accepted connection to one
 * of a pool of worker threads (one per CPU the process may run on) serving
 * the VSM service protocol (PROFILE.md §12, docs/vsm-protocol.md;
 * session.h).
 *
 * Guarantees: SIGTERM and SIGINT end the loop (the listener stops accepting
 * first); accepted sockets are close-on-exec; at most max_sessions
 * connections are served at once, further ones are closed at once; a
 * session that stalls (a frame in pieces, answers not read) never holds
 * its worker, so it delays no other session; running
 * out of descriptors pauses accepting briefly instead of spinning;
 * vsm_service_free ends every session and wipes every key it held. A
 * LISTEN request on the control socket moves the listener: the new
 * endpoint is bound and listening before the old listener is closed, and
 * open sessions go on; the answer is "<seq> READY" or "<seq> ERROR <ERRNO>
 * <text>" (docs/vsm.md). Never logs.
 */
#ifndef CHSM_VSM_SERVICE_H
#define CHSM_VSM_SERVICE_H

#include <stdbool.h>
#include <stdint.h>

typedef struct vsm_service vsm_service;

struct vsm_service_config {
	const char *vsm_id;
	const char *db_path;     /* with has_key: the VSM's store (store_open_vsm);
	                          * without: no token, every AUTH is refused */
	uint8_t vsm_key[32];     /* the VSM's store subkey (secret) */
	bool has_key;
	int max_sessions;        /* 0: a default */
	int max_keys;            /* 0: a default */
	const char *stats_path;  /* NULL: no statistics file */
	int control_fd;          /* > 2: a SOCK_SEQPACKET socket taking LISTEN
	                          * requests (owned by the service from then
	                          * on); <= 2: none */
};

/* Builds a service around listen_fd (bound, listening, non-blocking), which it owns
 * from then on, even on failure; cfg is not kept (the caller wipes vsm_key).
 * Returns 0, -ENOMEM, -EIO, or the store's error. */
int vsm_service_new(int listen_fd, const struct vsm_service_config *cfg, vsm_service **ret_svc);

/* Serves until SIGTERM or SIGINT arrives. Returns 0 with *ret_signal the
 * signal that ended it, or -EIO if the event loop failed. */
int vsm_service_run(vsm_service *svc, int *ret_signal);

/* Connections accepted so far. */
uint64_t vsm_service_accepted(const vsm_service *svc);

/* Closes the listener and frees everything. Accepts NULL. */
void vsm_service_free(vsm_service *svc);

#endif
