/*
 * service.h: the network service of one VSM process: a libevent loop that
 * owns the VSM's listening socket. At this stage a connection is accepted
 * and closed at once; the tenant protocol (PROFILE.md §12) will be served
 * from vsm_service's connection handler, on the same loop.
 *
 * Guarantees: SIGTERM and SIGINT end the loop (the listener stops accepting
 * first); accepted sockets are non-blocking and close-on-exec; running out
 * of descriptors pauses accepting briefly instead of spinning. Never logs.
 */
#ifndef CHSM_VSM_SERVICE_H
#define CHSM_VSM_SERVICE_H

#include <stdint.h>

typedef struct vsm_service vsm_service;

/* Builds a service around listen_fd (bound, listening, non-blocking), which it owns
 * from then on, even on failure. Returns 0, -ENOMEM or -EIO. */
int vsm_service_new(int listen_fd, vsm_service **ret_svc);

/* Serves until SIGTERM or SIGINT arrives. Returns 0 with *ret_signal the
 * signal that ended it, or -EIO if the event loop failed. */
int vsm_service_run(vsm_service *svc, int *ret_signal);

/* Connections accepted so far. */
uint64_t vsm_service_accepted(const vsm_service *svc);

/* Closes the listener and frees everything. Accepts NULL. */
void vsm_service_free(vsm_service *svc);

#endif
