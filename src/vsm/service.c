/*
 * service.c: see service.h.
 */
#include "vsm/service.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>

/* Pause before accepting again after an accept error such as EMFILE. */
#define ACCEPT_BACKOFF_MS 100

struct vsm_service {
	struct event_base *base;
	struct evconnlistener *listener;
	struct event *sigterm, *sigint, *backoff;
	int stop_signal;
	uint64_t accepted;
};

/* One accepted connection. The tenant protocol will start here; for now the
 * VSM only proves it is reachable, so the connection is closed. */
static void handle_connection(vsm_service *svc, evutil_socket_t fd)
{
	svc->accepted++;
	evutil_closesocket(fd);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *addr,
		      int addrlen, void *arg)
{
	handle_connection(arg, fd);
}

static void on_backoff_end(evutil_socket_t fd, short what, void *arg)
{
	vsm_service *svc = arg;
	if (svc->stop_signal == 0)
		evconnlistener_enable(svc->listener);
}

static void on_accept_error(struct evconnlistener *l, void *arg)
{
	vsm_service *svc = arg;
	const struct timeval tv = { 0, ACCEPT_BACKOFF_MS * 1000 };
	evconnlistener_disable(svc->listener);
	evtimer_add(svc->backoff, &tv);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	vsm_service *svc = arg;
	svc->stop_signal = (int)sig;
	evconnlistener_disable(svc->listener);
	event_base_loopbreak(svc->base);
}

int vsm_service_new(int listen_fd, vsm_service **ret_svc)
{
	int r = -ENOMEM;
	vsm_service *svc = calloc(1, sizeof(*svc));
	if (!svc)
		goto fail;
	svc->base = event_base_new();
	if (!svc->base)
		goto fail;
	svc->listener = evconnlistener_new(svc->base, on_accept, svc,
					   LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0,
					   listen_fd);
	if (!svc->listener)
		goto fail;
	listen_fd = -1;
	evconnlistener_set_error_cb(svc->listener, on_accept_error);
	svc->sigterm = evsignal_new(svc->base, SIGTERM, on_signal, svc);
	svc->sigint = evsignal_new(svc->base, SIGINT, on_signal, svc);
	svc->backoff = evtimer_new(svc->base, on_backoff_end, svc);
	if (!svc->sigterm || !svc->sigint || !svc->backoff)
		goto fail;
	r = -EIO;
	if (evsignal_add(svc->sigterm, NULL) < 0 || evsignal_add(svc->sigint, NULL) < 0)
		goto fail;
	*ret_svc = svc;
	return 0;
fail:
	if (listen_fd >= 0)
		close(listen_fd);
	vsm_service_free(svc);
	return r;
}

int vsm_service_run(vsm_service *svc, int *ret_signal)
{
	/* Only on_signal breaks the loop; any other return is a failure. */
	event_base_dispatch(svc->base);
	if (svc->stop_signal == 0)
		return -EIO;
	*ret_signal = svc->stop_signal;
	return 0;
}

uint64_t vsm_service_accepted(const vsm_service *svc)
{
	return svc->accepted;
}

void vsm_service_free(vsm_service *svc)
{
	if (!svc)
		return;
	if (svc->sigterm)
		event_free(svc->sigterm);
	if (svc->sigint)
		event_free(svc->sigint);
	if (svc->backoff)
		event_free(svc->backoff);
	if (svc->listener)
		evconnlistener_free(svc->listener);
	if (svc->base)
		event_base_free(svc->base);
	free(svc);
}
