/*
 * service.c: see service.h. Threads: the libevent loop (the caller of
 * vsm_service_run) accepts connections and handles signals; each accepted
 * connection gets its own thread running the protocol (session.c) with
 * blocking I/O, up to max_sessions at once, so SM2 work spreads over every
 * core. Finished threads are joined by the accept path and at free; free
 * shuts every connection down and joins every thread before it frees what
 * they use.
 */
#include "vsm/service.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <stdio.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>

#include "crypto/crypto.h"
#include "store/store.h"
#include "common/util.h"
#include "vsm/endpoint.h"
#include "vsm/ready.h"
#include "vsm/session.h"
#include "vsm/stats.h"

/* Pause before accepting again after an accept error such as EMFILE. */
#define ACCEPT_BACKOFF_MS 100
/* Used when the configuration leaves them 0. */
#define DEFAULT_MAX_SESSIONS 64
#define DEFAULT_MAX_KEYS     1024
/* Stack of a connection thread: handlers keep their buffers on the heap. */
#define CONN_STACK_BYTES     (256 * 1024)

struct conn {
	vsm_service *svc;
	int fd;
	struct sockaddr_storage peer;
	socklen_t peer_len;
	pthread_t thread;
	bool done;
	struct conn *next;
};

struct vsm_service {
	struct event_base *base;
	struct evconnlistener *listener;
	struct event *sigterm, *sigint, *backoff, *control;
	int control_fd;
	int stop_signal;
	uint64_t accepted;
	int max_sessions;
	chsm_store *store;
	vsm_stats *stats;
	vsm_engine *engine;
	pthread_mutex_t lock;   /* conns, active */
	struct conn *conns;
	int active;
};

static void *conn_main(void *arg)
{
	struct conn *c = arg;
	vsm_service *svc = c->svc;
	vsm_engine_serve(svc->engine, c->fd, (const struct sockaddr *)&c->peer, c->peer_len);
	pthread_mutex_lock(&svc->lock);
	close(c->fd);
	c->fd = -1;
	c->done = true;
	svc->active--;
	pthread_mutex_unlock(&svc->lock);
	return NULL;
}

/* Joins and frees finished connections; with svc->lock held. */
static void reap_locked(vsm_service *svc)
{
	struct conn **pc = &svc->conns;
	while (*pc) {
		struct conn *c = *pc;
		if (!c->done) {
			pc = &c->next;
			continue;
		}
		*pc = c->next;
		pthread_join(c->thread, NULL);
		free(c);
	}
}

/* One accepted connection: a thread serves it, or it is closed at once
 * when max_sessions connections are open. */
static void handle_connection(vsm_service *svc, evutil_socket_t fd, const struct sockaddr *addr,
			      int addrlen)
{
	pthread_attr_t attr;
	int one = 1;
	svc->accepted++;
	pthread_mutex_lock(&svc->lock);
	reap_locked(svc);
	struct conn *c = svc->active < svc->max_sessions ? calloc(1, sizeof(*c)) : NULL;
	if (!c)
		goto refuse;
	c->svc = svc;
	c->fd = fd;
	c->peer_len = addrlen > 0 && (size_t)addrlen <= sizeof(c->peer) ? (socklen_t)addrlen : 0;
	memcpy(&c->peer, addr, c->peer_len);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, CONN_STACK_BYTES);
	int r = pthread_create(&c->thread, &attr, conn_main, c);
	pthread_attr_destroy(&attr);
	if (r != 0) {
		free(c);
		goto refuse;
	}
	c->next = svc->conns;
	svc->conns = c;
	svc->active++;
	pthread_mutex_unlock(&svc->lock);
	return;
refuse:
	pthread_mutex_unlock(&svc->lock);
	evutil_closesocket(fd);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *addr,
		      int addrlen, void *arg)
{
	handle_connection(arg, fd, addr, addrlen);
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

/* Longest control message. */
#define CONTROL_MSG_MAX (VSM_READY_LINE_MAX + 32)

/* Replaces the listener by one on fd (bound, listening, non-blocking,
 * owned from then on). Returns 0 or -ENOMEM (fd closed, old kept). */
static int replace_listener(vsm_service *svc, int fd)
{
	struct evconnlistener *l = evconnlistener_new(svc->base, on_accept, svc,
						      LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
						      0, fd);
	if (!l) {
		close(fd);
		return -ENOMEM;
	}
	evconnlistener_set_error_cb(l, on_accept_error);
	evtimer_del(svc->backoff);
	evconnlistener_free(svc->listener);
	svc->listener = l;
	return 0;
}

/* "LISTEN <seq> <endpoint>": binds the endpoint, then swaps listeners. */
static void handle_control(vsm_service *svc, char *msg, char *reply, size_t cap)
{
	char line[VSM_READY_LINE_MAX], text[VSM_READY_LINE_MAX];
	char *nl = strchr(msg, '\n');
	char *seq = msg + 7, *ep = NULL;
	struct sockaddr_storage addr;
	socklen_t len;
	const char *op = "";
	uint64_t n;
	if (nl)
		*nl = '\0';
	if (strncmp(msg, "LISTEN ", 7) != 0 || !(ep = strchr(seq, ' '))) {
		vsm_ready_error_line(EINVAL, "unknown control request", line, sizeof(line));
		snprintf(reply, cap, "0 %s", line);
		return;
	}
	*ep++ = '\0';
	if (chsm_parse_u64(seq, UINT32_MAX, &n) < 0 || vsm_endpoint_parse(ep, &addr, &len) < 0) {
		vsm_ready_error_line(EINVAL, "invalid LISTEN request", line, sizeof(line));
		snprintf(reply, cap, "0 %s", line);
		return;
	}
	int fd = vsm_listen_open(&addr, len, &op);
	if (fd >= 0)
		fd = replace_listener(svc, fd);
	if (fd < 0) {
		snprintf(text, sizeof(text), "cannot %s %s", op[0] ? op : "listen on", ep);
		vsm_ready_error_line(-fd, text, line, sizeof(line));
		snprintf(reply, cap, "%llu %s", (unsigned long long)n, line);
		return;
	}
	snprintf(reply, cap, "%llu READY\n", (unsigned long long)n);
}

static void on_control(evutil_socket_t fd, short what, void *arg)
{
	vsm_service *svc = arg;
	char msg[CONTROL_MSG_MAX + 1], reply[CONTROL_MSG_MAX + 32];
	ssize_t n = recv(fd, msg, CONTROL_MSG_MAX, MSG_DONTWAIT);
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n <= 0) {
		/* chsmd closed its end: no more requests (it ends us itself). */
		event_del(svc->control);
		return;
	}
	msg[n] = '\0';
	handle_control(svc, msg, reply, sizeof(reply));
	(void)send(fd, reply, strlen(reply), MSG_NOSIGNAL | MSG_DONTWAIT);
}

/* The store, statistics and protocol engine of cfg. */
static int open_engine(vsm_service *svc, const struct vsm_service_config *cfg)
{
	int r;
	if (cfg->db_path && cfg->has_key) {
		r = store_open_vsm(cfg->db_path, cfg->vsm_id, cfg->vsm_key, &svc->store);
		if (r < 0)
			return r;
	}
	r = vsm_stats_new(cfg->stats_path, &svc->stats);
	if (r < 0)
		return r;
	struct vsm_engine_config ec = {
		.vsm_id = cfg->vsm_id,
		.store = svc->store,
		.max_keys = cfg->max_keys > 0 ? cfg->max_keys : DEFAULT_MAX_KEYS,
		.stats = svc->stats,
	};
	return vsm_engine_new(&ec, &svc->engine);
}

int vsm_service_new(int listen_fd, const struct vsm_service_config *cfg, vsm_service **ret_svc)
{
	int r = -ENOMEM;
	vsm_service *svc = calloc(1, sizeof(*svc));
	if (!svc)
		goto fail;
	pthread_mutex_init(&svc->lock, NULL);
	svc->control_fd = cfg->control_fd > 2 ? cfg->control_fd : -1;
	svc->max_sessions = cfg->max_sessions > 0 ? cfg->max_sessions : DEFAULT_MAX_SESSIONS;
	r = open_engine(svc, cfg);
	if (r < 0)
		goto fail;
	r = -ENOMEM;
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
	if (svc->control_fd >= 0 &&
	    !(svc->control = event_new(svc->base, svc->control_fd, EV_READ | EV_PERSIST, on_control,
				       svc)))
		goto fail;
	r = -EIO;
	if (evsignal_add(svc->sigterm, NULL) < 0 || evsignal_add(svc->sigint, NULL) < 0 ||
	    (svc->control && event_add(svc->control, NULL) < 0))
		goto fail;
	*ret_svc = svc;
	return 0;
fail:
	if (listen_fd >= 0)
		close(listen_fd);
	if (!svc && cfg->control_fd > 2)
		close(cfg->control_fd);
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
	/* Stop accepting, end every session, and join its thread. */
	if (svc->listener)
		evconnlistener_free(svc->listener);
	pthread_mutex_lock(&svc->lock);
	for (struct conn *c = svc->conns; c; c = c->next)
		if (!c->done)
			shutdown(c->fd, SHUT_RDWR);
	pthread_mutex_unlock(&svc->lock);
	while (svc->conns) {
		struct conn *c = svc->conns;
		svc->conns = c->next;
		pthread_join(c->thread, NULL);
		free(c);
	}
	if (svc->sigterm)
		event_free(svc->sigterm);
	if (svc->sigint)
		event_free(svc->sigint);
	if (svc->backoff)
		event_free(svc->backoff);
	if (svc->control)
		event_free(svc->control);
	if (svc->control_fd >= 0)
		close(svc->control_fd);
	if (svc->base)
		event_base_free(svc->base);
	vsm_engine_free(svc->engine);
	vsm_stats_free(svc->stats);
	store_close(svc->store);
	pthread_mutex_destroy(&svc->lock);
	free(svc);
}
