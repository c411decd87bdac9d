/*
 * service.c: see service.h. Threads: the libevent loop (the caller of
 * vsm_service_run) accepts connections and handles signals and control
 * requests; a pool of workers, one per CPU the process may run on (its
 * affinity, e.g. chsmd run --vsm-cpus), at most max_sessions and
 * MAX_WORKERS, serves the connections. Each accepted connection goes to
 * the worker with the fewest and stays there: the worker's epoll set holds
 * it (level-triggered, EPOLLIN or EPOLLOUT as the session asks), and the
 * worker goes from one ready request to the next without sleeping while
 * any is ready, so under load a request costs a read and a send, and no
 * switch between threads. A session never blocks (session.h): a frame
 * that arrives in pieces, a peer that does not read its answers, and the
 * drain after a protocol error wait in the epoll set, bounded by the
 * session's deadline, which the worker enforces. Only the worker touches
 * its sessions; its lock guards the list (insertion by the accept path,
 * removal by the worker). free stops the workers through their eventfd,
 * joins them, then frees every session left.
 */
#define _GNU_SOURCE
#include "vsm/service.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
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
/* Workers at most, whatever the CPU count. */
#define MAX_WORKERS          64
/* Events one epoll_wait takes. */
#define EVENTS_PER_WAIT      64
/* Stack of a worker: handlers keep their buffers on the heap. */
#define WORKER_STACK_BYTES   (256 * 1024)

struct worker;

struct conn {
	struct worker *w;
	int fd;
	vsm_conn *session;
	uint32_t events;        /* EPOLLIN or EPOLLOUT, as registered */
	struct conn *prev, *next;
};

struct worker {
	vsm_service *svc;
	int epfd, wake_fd;
	pthread_t thread;
	bool started;
	pthread_mutex_t lock;   /* conns, nconns */
	struct conn *conns;
	int nconns;
	int64_t next_deadline;  /* worker only: the earliest session deadline
	                         * known (-1: none), a lower bound */
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
	atomic_bool stopping;
	atomic_int active;      /* connections open */
	struct worker *workers;
	int nworkers;
};

/* Puts c at the front of w's list. Under w->lock. */
static void conn_link(struct worker *w, struct conn *c)
{
	c->prev = NULL;
	c->next = w->conns;
	if (w->conns)
		w->conns->prev = c;
	w->conns = c;
	w->nconns++;
}

/* Takes c out of w's list. Under w->lock. */
static void conn_unlink(struct worker *w, struct conn *c)
{
	if (c->prev)
		c->prev->next = c->next;
	else
		w->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	w->nconns--;
}

/* Ends a session: unlisted, freed, its socket closed. Worker only. */
static void conn_close(struct worker *w, struct conn *c)
{
	pthread_mutex_lock(&w->lock);
	conn_unlink(w, c);
	pthread_mutex_unlock(&w->lock);
	vsm_conn_free(c->session);
	close(c->fd);
	atomic_fetch_sub(&w->svc->active, 1);
	free(c);
}

/* After a step that returned want: the epoll interest follows it, and the
 * session's deadline lowers the worker's. False when the session is over
 * (it is then closed). */
static bool conn_after(struct worker *w, struct conn *c, int want)
{
	if (want < 0) {
		conn_close(w, c);
		return false;
	}
	uint32_t ev = want == VSM_CONN_WANT_WRITE ? EPOLLOUT : EPOLLIN;
	if (ev != c->events) {
		struct epoll_event e = { .events = ev, .data.ptr = c };
		if (epoll_ctl(w->epfd, EPOLL_CTL_MOD, c->fd, &e) < 0) {
			conn_close(w, c);
			return false;
		}
		c->events = ev;
	}
	int64_t d = vsm_conn_deadline(c->session);
	if (d >= 0 && (w->next_deadline < 0 || d < w->next_deadline))
		w->next_deadline = d;
	return true;
}

/* Times out the sessions whose deadline passed and recomputes
 * w->next_deadline. Worker only. */
static void expire(struct worker *w, int64_t now)
{
	struct conn *c, *next;
	w->next_deadline = -1;
	pthread_mutex_lock(&w->lock);
	c = w->conns;
	pthread_mutex_unlock(&w->lock);
	/* Only this thread removes from the list; new ones go to the front. */
	for (; c; c = next) {
		pthread_mutex_lock(&w->lock);
		next = c->next;
		pthread_mutex_unlock(&w->lock);
		int64_t d = vsm_conn_deadline(c->session);
		if (d >= 0 && now >= d)
			conn_after(w, c, vsm_conn_timeout(c->session));
		else if (d >= 0 && (w->next_deadline < 0 || d < w->next_deadline))
			w->next_deadline = d;
	}
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct epoll_event evs[EVENTS_PER_WAIT];
	w->next_deadline = -1;
	while (!atomic_load(&w->svc->stopping)) {
		int timeout = -1;
		if (w->next_deadline >= 0) {
			int64_t now = chsm_monotonic_ms();
			if (now >= w->next_deadline) {
				expire(w, now);
				continue;
			}
			timeout = (int)(w->next_deadline - now);
		}
		int n = epoll_wait(w->epfd, evs, EVENTS_PER_WAIT, timeout);
		if (n < 0 && errno != EINTR)
			break;
		for (int i = 0; i < n; i++) {
			struct conn *c = evs[i].data.ptr;
			if (!c) {
				uint64_t v;
				(void)!read(w->wake_fd, &v, sizeof(v));
				continue;
			}
			bool readable = (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) != 0;
			conn_after(w, c, vsm_conn_step(c->session, readable));
		}
	}
	return NULL;
}

/* The worker with the fewest connections. */
static struct worker *least_loaded(vsm_service *svc)
{
	struct worker *best = NULL;
	int best_n = 0;
	for (int i = 0; i < svc->nworkers; i++) {
		struct worker *w = &svc->workers[i];
		pthread_mutex_lock(&w->lock);
		int n = w->nconns;
		pthread_mutex_unlock(&w->lock);
		if (!best || n < best_n) {
			best = w;
			best_n = n;
		}
	}
	return best;
}

/* One accepted connection: a session on a worker, or closed at once when
 * max_sessions connections are open. */
static void handle_connection(vsm_service *svc, evutil_socket_t fd, const struct sockaddr *addr,
			      int addrlen)
{
	int one = 1;
	struct conn *c = NULL;
	svc->accepted++;
	if (atomic_fetch_add(&svc->active, 1) >= svc->max_sessions)
		goto refuse;
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || (!(fl & O_NONBLOCK) && fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0))
		goto refuse;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c = calloc(1, sizeof(*c));
	if (!c || vsm_conn_new(svc->engine, fd, addr,
			       addrlen > 0 ? (socklen_t)addrlen : 0, &c->session) < 0)
		goto refuse;
	struct worker *w = least_loaded(svc);
	c->w = w;
	c->fd = fd;
	/* The worker sends HELLO when the socket is writable (at once). */
	c->events = EPOLLOUT;
	struct epoll_event e = { .events = EPOLLOUT, .data.ptr = c };
	pthread_mutex_lock(&w->lock);
	conn_link(w, c);
	if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &e) < 0) {
		conn_unlink(w, c);
		pthread_mutex_unlock(&w->lock);
		goto refuse;
	}
	pthread_mutex_unlock(&w->lock);
	return;
refuse:
	if (c)
		vsm_conn_free(c->session);
	free(c);
	atomic_fetch_sub(&svc->active, 1);
	evutil_closesocket(fd);
}

/* Workers: as many as the CPUs this process may run on, at most
 * max_sessions and MAX_WORKERS. */
static int start_workers(vsm_service *svc)
{
	cpu_set_t cpus;
	int n = sched_getaffinity(0, sizeof(cpus), &cpus) == 0 ? CPU_COUNT(&cpus) : 1;
	if (n > svc->max_sessions)
		n = svc->max_sessions;
	if (n > MAX_WORKERS)
		n = MAX_WORKERS;
	if (n < 1)
		n = 1;
	svc->workers = calloc((size_t)n, sizeof(*svc->workers));
	if (!svc->workers)
		return -ENOMEM;
	svc->nworkers = n;
	for (int i = 0; i < n; i++) {
		struct worker *w = &svc->workers[i];
		w->svc = svc;
		w->epfd = w->wake_fd = -1;
		pthread_mutex_init(&w->lock, NULL);
	}
	for (int i = 0; i < n; i++) {
		struct worker *w = &svc->workers[i];
		w->epfd = epoll_create1(EPOLL_CLOEXEC);
		w->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (w->epfd < 0 || w->wake_fd < 0)
			return -errno;
		struct epoll_event e = { .events = EPOLLIN, .data.ptr = NULL };
		if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->wake_fd, &e) < 0)
			return -errno;
		pthread_attr_t attr;
		pthread_attr_init(&attr);
		pthread_attr_setstacksize(&attr, WORKER_STACK_BYTES);
		int r = pthread_create(&w->thread, &attr, worker_main, w);
		pthread_attr_destroy(&attr);
		if (r != 0)
			return -r;
		w->started = true;
	}
	return 0;
}

/* Stops and joins the workers, then ends every session left. */
static void stop_workers(vsm_service *svc)
{
	atomic_store(&svc->stopping, true);
	for (int i = 0; i < svc->nworkers; i++) {
		struct worker *w = &svc->workers[i];
		uint64_t one = 1;
		if (w->started && w->wake_fd >= 0)
			(void)!write(w->wake_fd, &one, sizeof(one));
	}
	for (int i = 0; i < svc->nworkers; i++) {
		struct worker *w = &svc->workers[i];
		if (w->started)
			pthread_join(w->thread, NULL);
		while (w->conns)
			conn_close(w, w->conns);
		if (w->epfd >= 0)
			close(w->epfd);
		if (w->wake_fd >= 0)
			close(w->wake_fd);
		pthread_mutex_destroy(&w->lock);
	}
	free(svc->workers);
	svc->workers = NULL;
	svc->nworkers = 0;
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
	svc->control_fd = cfg->control_fd > 2 ? cfg->control_fd : -1;
	svc->max_sessions = cfg->max_sessions > 0 ? cfg->max_sessions : DEFAULT_MAX_SESSIONS;
	r = open_engine(svc, cfg);
	if (r < 0)
		goto fail;
	r = start_workers(svc);
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
	/* Stop accepting, stop the workers, end every session. */
	if (svc->listener)
		evconnlistener_free(svc->listener);
	stop_workers(svc);
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
	free(svc);
}
