/*
 * server.c: chsmd's HTTPS server on libevent 2.1 evhttp; see server.h for
 * the contract and docs/http.md for the design.
 *
 * Guarantees:
 * - One event loop per worker thread, each with its own evhttp and its own
 *   listening socket on the same address (SO_REUSEPORT), or its own
 *   duplicate of the caller's listening socket (listen_fd); a connection lives
 *   and dies on the loop that accepted it, so no connection state is shared
 *   between threads except the connection count (an atomic) and the count
 *   per client address (under a mutex).
 * - Every connection is TLS (crypto/tls.h) unless plain HTTP was asked for
 *   on a loopback address; TCP_NODELAY is set on the listening sockets and
 *   again on each accepted socket.
 * - Connections beyond max_connections, or beyond CHSM_MAX_CONNECTIONS_PER_PEER
 *   (at most max_connections) from one client address, are closed at once,
 *   so that one peer cannot take every slot from the others. A request must
 *   arrive completely within timeout_seconds of its first byte (or of the
 *   accept, for the first one, TLS handshake included); an idle keep-alive
 *   connection is closed after timeout_seconds (evhttp's timeout).
 * - A body over max_body is refused through the handler (req->refusal)
 *   thanks to the framing guard (frame.h) that runs on each connection's
 *   input before evhttp parses it; the connection is closed after that
 *   answer.
 * - http_server_stop stops accepting, lets responses already queued flush
 *   for up to HTTP_STOP_GRACE_MS, then closes everything and frees every
 *   byte it allocated.
 *
 * libevent 2.1 offers no hook when evhttp creates or frees a server
 * connection. The server learns the evhttp_connection of a new connection
 * right after accepting it, on the same loop, from the callback argument
 * evhttp gives the connection's bufferevent (evhttp 2.0 to 2.2 pass the
 * evhttp_connection there), and registers a close callback on it. A
 * request is matched to its connection by that evhttp_connection.
 */
#include "http/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>
#include <event2/thread.h>

#include "common/limits.h"
#include "common/util.h"
#include "crypto/tls.h"
#include "http/frame.h"

/* Worker loops at most, whatever cfg->threads or the CPU count say. */
#define HTTP_MAX_THREADS 64
/* Worker loops by default at least: a handler may hold its loop while it
 * waits for the disk (chsmd's mutations commit, and so do the nonces of
 * requests above the replay window's durable ceiling, in groups), so loops
 * beyond the cores let those waits overlap. Measured 2026-11-26 after the
 * nonces moved to memory: 2 loops cost the mixed load a quarter of its
 * rate; 4, 8 and 16 were within the noise of a loaded machine. */
#define HTTP_DEFAULT_MIN_THREADS 16
/* Pending connections the kernel queues per listening socket. */
#define HTTP_LISTEN_BACKLOG 511
/* Largest accepted max_body / max_headers settings (sanity bounds). */
#define HTTP_MAX_BODY_SETTING ((size_t)1 << 30)
#define HTTP_MAX_HEADERS_SETTING ((size_t)1 << 20)
/* Body bytes read and dropped after refusing a body as too large, so that
 * the client, still sending, can read the 413 instead of a reset. Larger
 * declared bodies are answered at once. */
#define HTTP_REFUSED_BODY_DRAIN_BYTES ((uint64_t)4 * CHSM_MAX_BODY_BYTES)
/* At stop, how long queued responses may take to flush, and how often the
 * loop checks. */
#define HTTP_STOP_GRACE_MS 1000
#define HTTP_STOP_POLL_MS 10

struct worker;

/* One accepted connection, owned by its worker's loop. */
struct conn {
	struct worker *w;
	struct bufferevent *bev;          /* TLS or socket; evhttp's */
	struct evhttp_connection *evcon;  /* set when attached */
	struct evbuffer_cb_entry *guard;  /* the framing guard on its input */
	struct event *timer;              /* per-request deadline */
	struct evbuffer *hold;            /* bytes evhttp may not see yet */
	struct evbuffer *scratch;
	struct http_frame frame;
	unsigned long requests_seen;      /* frame.requests when timer armed */
	unsigned long delivered;          /* requests handed to the handler */
	struct conn *prev, *next;         /* worker->conns */
	struct conn *pending_next;        /* worker->pending */
	bool in_pending;
	bool attached;                    /* close callback registered */
	bool counted;                     /* holds one of max_connections */
	bool peer_counted;                /* holds one of its address's slots */
	uint8_t peer[16];                 /* the client address (IPv4 mapped) */
	bool rejected;                    /* over the cap: closed at once */
	bool in_guard;
};

struct worker {
	http_server *srv;
	struct event_base *base;
	struct evhttp *http;
	struct evhttp_bound_socket *bound;
	struct event *stop_ev;            /* activated by http_server_stop */
	struct event *drain_ev;           /* polls for flushed output at stop */
	struct event *kick_ev;            /* attaches new connections */
	struct conn *conns;
	struct conn *pending;             /* accepted, not attached yet */
	int64_t stop_deadline_ms;
	pthread_t thread;
	bool thread_started;
};

struct http_server {
	http_handler_fn handler;
	void *handler_ctx;
	crypto_tls_server_ctx *tls;       /* NULL for plain HTTP */
	size_t max_body, max_headers;
	int max_connections;
	int timeout_seconds;
	int port;
	int listen_fd;                    /* the caller's socket, or <= 0 */
	atomic_int connections;
	/* Connections per client address: max_connections entries (a live
	 * connection holds one, so they never run out), scanned under the
	 * lock when a connection is attached and when it ends. */
	pthread_mutex_t peers_lock;
	struct peer_count *peers;
	int max_per_peer;
	struct http_frame_limits frame_limits;
	int n_workers;
	struct worker *workers;
};

struct peer_count {
	uint8_t addr[16];
	int count;                        /* 0: a free entry */
};

static pthread_once_t threads_once = PTHREAD_ONCE_INIT;
static int threads_ok;

static void enable_libevent_threads(void)
{
	threads_ok = evthread_use_pthreads() == 0;
}

/* ---- requests and responses ---- */

const char *http_request_header(const struct http_request *req, const char *name)
{
	if (!req || !req->internal || !name)
		return NULL;
	return evhttp_find_header(evhttp_request_get_input_headers(req->internal), name);
}

int http_response_add_header(struct http_response *resp, const char *name, const char *value)
{
	if (!resp || !name || !value || strpbrk(name, "\r\n:") || strpbrk(value, "\r\n"))
		return -EINVAL;
	size_t cap = sizeof(resp->headers[0].value);
	if (resp->header_count < 0 ||
	    resp->header_count >= (int)(sizeof(resp->headers) / sizeof(resp->headers[0])) ||
	    strlen(value) >= cap)
		return -ENOSPC;
	resp->headers[resp->header_count].name = name;
	memcpy(resp->headers[resp->header_count].value, value, strlen(value) + 1);
	resp->header_count++;
	return 0;
}

static const char *method_name(enum evhttp_cmd_type type)
{
	switch (type) {
	case EVHTTP_REQ_GET: return "GET";
	case EVHTTP_REQ_POST: return "POST";
	case EVHTTP_REQ_HEAD: return "HEAD";
	case EVHTTP_REQ_PUT: return "PUT";
	case EVHTTP_REQ_DELETE: return "DELETE";
	case EVHTTP_REQ_OPTIONS: return "OPTIONS";
	case EVHTTP_REQ_TRACE: return "TRACE";
	case EVHTTP_REQ_CONNECT: return "CONNECT";
	case EVHTTP_REQ_PATCH: return "PATCH";
	default: return "UNKNOWN";
	}
}

/* Reason phrases evhttp 2.1 lacks or words differently (RFC 9110). */
static const char *reason_phrase(int status)
{
	switch (status) {
	case 202: return "Accepted";
	case 409: return "Conflict";
	case 413: return "Content Too Large";
	case 415: return "Unsupported Media Type";
	case 422: return "Unprocessable Content";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 503: return "Service Unavailable";
	default: return NULL; /* evhttp's table */
	}
}

static void free_body(const void *data, size_t len, void *extra)
{
	free((void *)data);
}

/* Sends the handler's answer and frees its body. close: ask evhttp to close
 * the connection once the answer is written. */
static void send_response(struct evhttp_request *ereq, struct http_response *resp, bool close)
{
	struct evkeyvalq *out = evhttp_request_get_output_headers(ereq);
	int status = resp->status >= 200 && resp->status <= 599 ? resp->status : 500;
	bool head = evhttp_request_get_command(ereq) == EVHTTP_REQ_HEAD;
	/* evhttp 2.1 writes the body even where HTTP forbids one, which would
	 * corrupt the next response on the connection. */
	bool no_body = head || status == 204 || status == 304;
	int n = resp->header_count;
	if (n < 0 || n > (int)(sizeof(resp->headers) / sizeof(resp->headers[0])))
		n = 0;
	for (int i = 0; i < n; i++)
		if (resp->headers[i].name)
			evhttp_add_header(out, resp->headers[i].name, resp->headers[i].value);
	evhttp_add_header(out, "Content-Type",
			  resp->content_type ? resp->content_type : "application/json");
	if (close) {
		/* evhttp closes the connection once this answer is written. */
		evhttp_remove_header(out, "Connection");
		evhttp_add_header(out, "Connection", "close");
	}
	if (head) {
		char len[24];
		snprintf(len, sizeof(len), "%zu", resp->body ? resp->body_len : 0);
		evhttp_add_header(out, "Content-Length", len);
	}
	if (resp->body && resp->body_len > 0 && !no_body) {
		if (evbuffer_add_reference(evhttp_request_get_output_buffer(ereq), resp->body,
					   resp->body_len, free_body, NULL) < 0) {
			free(resp->body);
			status = 500;
		}
	} else {
		free(resp->body);
	}
	resp->body = NULL;
	evhttp_send_reply(ereq, status, reason_phrase(status), NULL);
}

static void format_peer(struct evhttp_connection *evcon, char *buf, size_t cap)
{
	char *addr = NULL;
	ev_uint16_t port = 0;
	evhttp_connection_get_peer(evcon, &addr, &port);
	if (!addr)
		snprintf(buf, cap, "-");
	else if (strchr(addr, ':'))
		snprintf(buf, cap, "[%s]:%u", addr, (unsigned)port);
	else
		snprintf(buf, cap, "%s:%u", addr, (unsigned)port);
}

/* The connection a request came on; moved to the front of the list, where
 * the next lookups for a busy connection find it first. */
static struct conn *find_conn(struct worker *w, struct evhttp_connection *evcon)
{
	struct conn *c = w->conns;
	while (c && (!c->attached || c->evcon != evcon))
		c = c->next;
	if (c && c->prev) {
		c->prev->next = c->next;
		if (c->next)
			c->next->prev = c->prev;
		c->prev = NULL;
		c->next = w->conns;
		w->conns->prev = c;
		w->conns = c;
	}
	return c;
}

/* evhttp's callback for every complete request. */
static void on_request(struct evhttp_request *ereq, void *arg)
{
	struct worker *w = arg;
	http_server *srv = w->srv;
	struct evhttp_connection *evcon = evhttp_request_get_connection(ereq);
	struct conn *c = evcon ? find_conn(w, evcon) : NULL;

	/* Not one of the server's connections: evhttp made its own plain
	 * bufferevent because on_accept failed. Never serve it. */
	if (!c) {
		if (evcon)
			evhttp_connection_free(evcon);
		return;
	}
	c->delivered++;
	bool refused = c->frame.refused != 0 && c->delivered == c->frame.refused;

	struct http_request req;
	struct http_response resp;
	char peer[INET6_ADDRSTRLEN + 16];
	memset(&req, 0, sizeof(req));
	memset(&resp, 0, sizeof(resp));
	struct evbuffer *in = evhttp_request_get_input_buffer(ereq);
	const char *target = evhttp_request_get_uri(ereq);
	char *path = target ? strndup(target, strcspn(target, "?")) : NULL;
	size_t body_len = evbuffer_get_length(in);
	const uint8_t *body = body_len ? evbuffer_pullup(in, -1) : NULL;
	if (!path || (body_len && !body)) {
		free(path);
		evhttp_send_error(ereq, HTTP_SERVUNAVAIL, NULL);
		return;
	}
	format_peer(evcon, peer, sizeof(peer));
	req.method = method_name(evhttp_request_get_command(ereq));
	req.target = target;
	req.path = path;
	/* A refused request's body, if any, is only a part: not shown. */
	req.body = refused ? NULL : body;
	req.body_len = refused ? 0 : body_len;
	req.peer = peer;
	req.refusal = refused ? HTTP_REFUSAL_BODY_TOO_LARGE : HTTP_REFUSAL_NONE;
	req.internal = ereq;
	srv->handler(srv->handler_ctx, &req, &resp);
	send_response(ereq, &resp, refused);
	free(path);
}

/* ---- connections ---- */

static void set_nodelay(int fd)
{
	int one = 1;
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static void unlink_pending(struct conn *c)
{
	struct conn **pp = &c->w->pending;
	while (*pp && *pp != c)
		pp = &(*pp)->pending_next;
	if (*pp)
		*pp = c->pending_next;
	c->in_pending = false;
}

/* Takes one of the peer's CHSM_MAX_CONNECTIONS_PER_PEER slots for c
 * (whose socket is sock). Returns false when the peer holds them all. */
static bool peer_take(struct conn *c, int sock)
{
	http_server *srv = c->w->srv;
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	if (getpeername(sock, (struct sockaddr *)&ss, &len) < 0)
		return true; /* gone already: evhttp sees it end */
	memset(c->peer, 0, sizeof(c->peer));
	if (ss.ss_family == AF_INET) {
		c->peer[10] = c->peer[11] = 0xff;
		memcpy(c->peer + 12, &((struct sockaddr_in *)&ss)->sin_addr, 4);
	} else if (ss.ss_family == AF_INET6) {
		memcpy(c->peer, &((struct sockaddr_in6 *)&ss)->sin6_addr, 16);
	} else {
		return true;
	}
	bool ok = false;
	pthread_mutex_lock(&srv->peers_lock);
	struct peer_count *hit = NULL, *free_entry = NULL;
	for (int i = 0; i < srv->max_connections && !hit; i++) {
		struct peer_count *e = &srv->peers[i];
		if (e->count == 0)
			free_entry = free_entry ? free_entry : e;
		else if (memcmp(e->addr, c->peer, sizeof(c->peer)) == 0)
			hit = e;
	}
	if (!hit && free_entry) {
		hit = free_entry;
		memcpy(hit->addr, c->peer, sizeof(c->peer));
	}
	if (hit && hit->count < srv->max_per_peer) {
		hit->count++;
		ok = c->peer_counted = true;
	}
	pthread_mutex_unlock(&srv->peers_lock);
	return ok;
}

static void peer_release(struct conn *c)
{
	http_server *srv = c->w->srv;
	pthread_mutex_lock(&srv->peers_lock);
	for (int i = 0; i < srv->max_connections; i++) {
		struct peer_count *e = &srv->peers[i];
		if (e->count > 0 && memcmp(e->addr, c->peer, sizeof(c->peer)) == 0) {
			e->count--;
			break;
		}
	}
	pthread_mutex_unlock(&srv->peers_lock);
	c->peer_counted = false;
}

/* Frees c and what it holds, but not its bufferevent; c is in no list. */
static void conn_free(struct conn *c)
{
	if (c->timer)
		event_free(c->timer);
	if (c->hold)
		evbuffer_free(c->hold);
	if (c->scratch)
		evbuffer_free(c->scratch);
	http_frame_fini(&c->frame);
	if (c->counted)
		atomic_fetch_sub(&c->w->srv->connections, 1);
	if (c->peer_counted)
		peer_release(c);
	free(c);
}

/* Unlinks and frees c. bev_alive: c->bev may still be used (to unhook the
 * guard from its input). */
static void conn_destroy(struct conn *c, bool bev_alive)
{
	struct worker *w = c->w;
	if (c->prev)
		c->prev->next = c->next;
	else
		w->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	if (c->in_pending)
		unlink_pending(c);
	if (bev_alive && c->guard)
		evbuffer_remove_cb_entry(bufferevent_get_input(c->bev), c->guard);
	conn_free(c);
}

/* evhttp frees the connection: the close callback. */
static void on_close(struct evhttp_connection *evcon, void *arg)
{
	conn_destroy(arg, true);
}

static void arm_timer(struct conn *c)
{
	struct timeval tv = {.tv_sec = c->w->srv->timeout_seconds, .tv_usec = 0};
	evtimer_add(c->timer, &tv);
}

/* The deadline passed (or the guard failed): evhttp closes the connection
 * as on any timeout, which frees c through on_close. */
static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	bufferevent_trigger_event(c->bev, BEV_EVENT_TIMEOUT | BEV_EVENT_READING, 0);
}

/* Moves the last n bytes of input (those that just arrived) into hold. */
static int take_tail(struct conn *c, struct evbuffer *input, size_t n)
{
	size_t keep = evbuffer_get_length(input) - n;
	if (keep == 0)
		return evbuffer_add_buffer(c->hold, input) == 0 ? 0 : -EIO;
	if (evbuffer_remove_buffer(input, c->scratch, keep) != (int)keep ||
	    evbuffer_add_buffer(c->hold, input) < 0 || evbuffer_add_buffer(input, c->scratch) < 0)
		return -EIO;
	return 0;
}

/* The framing guard: runs whenever bytes are added to the connection's
 * input, before evhttp's read callback looks at them. */
static void on_input(struct evbuffer *input, const struct evbuffer_cb_info *info, void *arg)
{
	struct conn *c = arg;
	if (c->in_guard || info->n_added == 0)
		return;
	c->in_guard = true;
	size_t fresh = info->n_added;
	int r = 0;
	if (evbuffer_get_length(c->hold) == 0)
		fresh -= http_frame_absorb(&c->frame, fresh);
	if (fresh > 0) {
		r = take_tail(c, input, fresh);
		if (r == 0)
			r = http_frame_process(&c->frame, c->hold, input);
	}
	if (r < 0) {
		/* The stream can no longer be followed: drop it, close soon. */
		c->frame.mode = HTTP_FRAME_DEAD;
		evbuffer_drain(c->hold, evbuffer_get_length(c->hold));
		event_active(c->timer, EV_TIMEOUT, 1);
	} else if (c->frame.in_request && c->frame.requests != c->requests_seen) {
		c->requests_seen = c->frame.requests;
		arm_timer(c);
	} else if (!c->frame.in_request) {
		evtimer_del(c->timer);
	}
	c->in_guard = false;
}

/* Runs on the loop right after new connections were accepted, once evhttp
 * has set them up: registers the close callback, sets TCP_NODELAY, starts
 * the first deadline, and closes connections over the cap or over their
 * address's share of it. */
static void on_kick(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	struct conn *c;
	while ((c = w->pending) != NULL) {
		w->pending = c->pending_next;
		c->pending_next = NULL;
		c->in_pending = false;
		void *cbarg = NULL;
		bufferevent_getcb(c->bev, NULL, NULL, NULL, &cbarg);
		struct evhttp_connection *evcon = cbarg;
		if (!evcon || evhttp_connection_get_bufferevent(evcon) != c->bev) {
			/* evhttp gave up on it already (its callbacks are gone). */
			conn_destroy(c, true);
			continue;
		}
		evhttp_connection_set_closecb(evcon, on_close, c);
		c->evcon = evcon;
		c->attached = true;
		int sock = bufferevent_getfd(c->bev);
		if (sock >= 0)
			set_nodelay(sock);
		if (!c->rejected && sock >= 0 && !peer_take(c, sock))
			c->rejected = true;
		if (c->rejected) {
			bufferevent_trigger_event(c->bev, BEV_EVENT_EOF | BEV_EVENT_READING, 0);
			continue; /* c is gone */
		}
		arm_timer(c);
	}
}

/* evhttp's bevcb: makes the bufferevent of a newly accepted connection. */
static struct bufferevent *on_accept(struct event_base *base, void *arg)
{
	struct worker *w = arg;
	http_server *srv = w->srv;
	struct conn *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->w = w;
	if (atomic_fetch_add(&srv->connections, 1) >= srv->max_connections) {
		atomic_fetch_sub(&srv->connections, 1);
		c->rejected = true;
	} else {
		c->counted = true;
	}
	if (http_frame_init(&c->frame, &srv->frame_limits) < 0 ||
	    !(c->hold = evbuffer_new()) || !(c->scratch = evbuffer_new()) ||
	    !(c->timer = evtimer_new(base, on_timer, c)))
		goto fail;
	if (srv->tls && !c->rejected)
		c->bev = crypto_tls_bufferevent_new(srv->tls, base, -1);
	else
		c->bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (!c->bev)
		goto fail;
	if (!c->rejected) {
		c->guard = evbuffer_add_cb(bufferevent_get_input(c->bev), on_input, c);
		if (!c->guard)
			goto fail;
	}
	c->next = w->conns;
	if (w->conns)
		w->conns->prev = c;
	w->conns = c;
	c->pending_next = w->pending;
	c->in_pending = true;
	w->pending = c;
	event_active(w->kick_ev, EV_TIMEOUT, 1);
	return c->bev;
fail:
	if (c->bev)
		bufferevent_free(c->bev);
	conn_free(c);
	return NULL;
}

/* ---- workers ---- */

static bool output_pending(const struct worker *w)
{
	for (const struct conn *c = w->conns; c; c = c->next)
		if (c->attached && evbuffer_get_length(bufferevent_get_output(c->bev)) > 0)
			return true;
	return false;
}

static void on_drain_check(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	if (!output_pending(w) || chsm_monotonic_ms() >= w->stop_deadline_ms) {
		event_base_loopbreak(w->base);
		return;
	}
	struct timeval tv = {.tv_sec = 0, .tv_usec = HTTP_STOP_POLL_MS * 1000};
	evtimer_add(w->drain_ev, &tv);
}

static void on_stop(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	if (w->bound) {
		evhttp_del_accept_socket(w->http, w->bound);
		w->bound = NULL;
	}
	w->stop_deadline_ms = chsm_monotonic_ms() + HTTP_STOP_GRACE_MS;
	on_drain_check(-1, 0, w);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	event_base_loop(w->base, EVLOOP_NO_EXIT_ON_EMPTY);
	return NULL;
}

/* Frees what a worker holds; its thread has ended (or never started). */
static void worker_cleanup(struct worker *w)
{
	/* Deadlines go before their loop does. */
	for (struct conn *c = w->conns; c; c = c->next) {
		if (c->timer)
			event_free(c->timer);
		c->timer = NULL;
	}
	w->pending = NULL;
	for (struct conn *c = w->conns; c; c = c->next)
		c->in_pending = false;
	if (w->http)
		evhttp_free(w->http); /* closes every connection: on_close */
	if (w->stop_ev)
		event_free(w->stop_ev);
	if (w->drain_ev)
		event_free(w->drain_ev);
	if (w->kick_ev)
		event_free(w->kick_ev);
	if (w->base) {
		/* A bufferevent is only released once the deferred callbacks
		 * that hold a reference to it have run (the TLS bufferevent
		 * queues one after every write), and event_base_free drops
		 * them unrun: the loop stopped right after a write would leak
		 * that connection's bufferevent and SSL object. Run what is
		 * queued (those callbacks, then the finalizers they queue)
		 * until nothing is; none of the server's callbacks is left. */
		event_base_loop(w->base, EVLOOP_NONBLOCK);
		event_base_free(w->base);
	}
	/* Connections evhttp freed before they were attached. */
	while (w->conns)
		conn_destroy(w->conns, false);
}

static int parse_host(const char *host, int port, struct sockaddr_storage *ss, socklen_t *len,
		      bool *ret_loopback)
{
	memset(ss, 0, sizeof(*ss));
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
	if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)port);
		*len = sizeof(*sin);
		*ret_loopback = (ntohl(sin->sin_addr.s_addr) >> 24) == 127;
		return 0;
	}
	if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
		*len = sizeof(*sin6);
		*ret_loopback = IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr);
		return 0;
	}
	return -EINVAL;
}

/* The port a socket is bound to, or -errno. */
static int bound_port(int fd, bool *ret_loopback)
{
	struct sockaddr_storage bound;
	socklen_t blen = sizeof(bound);
	if (getsockname(fd, (struct sockaddr *)&bound, &blen) < 0)
		return -errno;
	if (bound.ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)&bound;
		if (ret_loopback)
			*ret_loopback = (ntohl(sin->sin_addr.s_addr) >> 24) == 127;
		return ntohs(sin->sin_port);
	}
	if (bound.ss_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&bound;
		if (ret_loopback)
			*ret_loopback = IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr);
		return ntohs(sin6->sin6_port);
	}
	return -EINVAL;
}

/* A listening socket on addr; with reuseport (SO_REUSEPORT) every worker
 * has its own. *ret_port is the port it is bound to. */
static int make_listener(struct sockaddr_storage *ss, socklen_t len, bool reuseport, int *ret_fd,
			 int *ret_port)
{
	int r, one = 1;
	int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) ||
	    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0 ||
	    (ss->ss_family == AF_INET6 &&
	     setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0) ||
	    bind(fd, (struct sockaddr *)ss, len) < 0 || listen(fd, HTTP_LISTEN_BACKLOG) < 0) {
		r = -errno;
		goto fail;
	}
	if ((r = bound_port(fd, NULL)) < 0)
		goto fail;
	*ret_port = r;
	*ret_fd = fd;
	return 0;
fail:
	close(fd);
	return r;
}

/* With SO_REUSEPORT a second server of the same user would silently share
 * a fixed port; a plain bind first tells whether someone listens there. */
static int probe_port(struct sockaddr_storage *ss, socklen_t len)
{
	int one = 1, r = 0;
	int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    (ss->ss_family == AF_INET6 &&
	     setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0) ||
	    bind(fd, (struct sockaddr *)ss, len) < 0)
		r = -errno;
	close(fd);
	return r;
}

static int worker_init(struct worker *w, http_server *srv, struct sockaddr_storage *ss,
		       socklen_t len)
{
	int fd = -1, port = 0, r;
	w->srv = srv;
	if (srv->listen_fd > 0) {
		fd = fcntl(srv->listen_fd, F_DUPFD_CLOEXEC, 3);
		if (fd < 0)
			return -errno;
		port = srv->port;
	} else if ((r = make_listener(ss, len, true, &fd, &port)) < 0) {
		return r;
	}
	if (srv->port == 0)
		srv->port = port;
	/* Later workers bind the port the first one got. */
	if (ss->ss_family == AF_INET6)
		((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)srv->port);
	else
		((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)srv->port);

	/* The epoll changelist: evhttp stops reading a connection while it
	 * answers a request and reads again once the answer is queued, and
	 * bufferevent_openssl adds and removes its write event; with the
	 * changelist, changes that cancel out within one pass of the loop
	 * cost no epoll_ctl. No descriptor of a loop is a dup() of another of
	 * the same loop (the caveat of event_config_set_flag(3)): each loop
	 * has one listening socket and its own connections. */
	struct event_config *ecfg = event_config_new();
	if (ecfg)
		(void)event_config_set_flag(ecfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
	w->base = ecfg ? event_base_new_with_config(ecfg) : NULL;
	if (ecfg)
		event_config_free(ecfg);
	w->http = w->base ? evhttp_new(w->base) : NULL;
	if (w->base) {
		w->stop_ev = event_new(w->base, -1, 0, on_stop, w);
		w->drain_ev = evtimer_new(w->base, on_drain_check, w);
		w->kick_ev = event_new(w->base, -1, 0, on_kick, w);
	}
	if (!w->http || !w->stop_ev || !w->drain_ev || !w->kick_ev) {
		close(fd);
		return -ENOMEM;
	}
	evhttp_set_max_headers_size(w->http, (ev_ssize_t)srv->max_headers);
	evhttp_set_max_body_size(w->http, (ev_ssize_t)srv->max_body); /* a backstop */
	evhttp_set_timeout(w->http, srv->timeout_seconds);
	evhttp_set_allowed_methods(w->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
						    EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
						    EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
	evhttp_set_default_content_type(w->http, "application/json");
	evhttp_set_gencb(w->http, on_request, w);
	evhttp_set_bevcb(w->http, on_accept, w);
	/* Backlog 0: listen() was called already. */
	struct evconnlistener *listener = evconnlistener_new(
		w->base, NULL, NULL, LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_CLOSE_ON_FREE, 0, fd);
	if (!listener) {
		close(fd);
		return -ENOMEM;
	}
	w->bound = evhttp_bind_listener(w->http, listener);
	if (!w->bound) {
		evconnlistener_free(listener); /* closes fd */
		return -ENOMEM;
	}
	return 0;
}

static int check_config(const struct http_server_config *cfg)
{
	if ((!cfg->host && cfg->listen_fd <= 0) || cfg->port < 0 || cfg->port > 65535 || cfg->threads < 0 ||
	    cfg->threads > HTTP_MAX_THREADS || cfg->max_connections < 0 ||
	    cfg->timeout_seconds < 0 || cfg->timeout_seconds > 24 * 3600 ||
	    cfg->max_body > HTTP_MAX_BODY_SETTING || cfg->max_headers > HTTP_MAX_HEADERS_SETTING)
		return -EINVAL;
	if (!cfg->plain_http && (!cfg->cert_file || !cfg->key_file))
		return -EINVAL;
	return 0;
}

static int default_threads(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	if (n < HTTP_DEFAULT_MIN_THREADS)
		return HTTP_DEFAULT_MIN_THREADS;
	return n > HTTP_MAX_THREADS ? HTTP_MAX_THREADS : (int)n;
}

static int start_threads(http_server *srv)
{
	sigset_t all, old;
	sigfillset(&all);
	/* Workers take no signals (SIGPIPE included): the daemon handles them. */
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int r = 0;
	for (int i = 0; i < srv->n_workers; i++) {
		struct worker *w = &srv->workers[i];
		r = -pthread_create(&w->thread, NULL, worker_main, w);
		if (r < 0)
			break;
		w->thread_started = true;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return r;
}

int http_server_start(const struct http_server_config *cfg, http_handler_fn handler, void *ctx,
		      http_server **ret_server)
{
	int r;
	struct sockaddr_storage ss;
	socklen_t ss_len = 0;
	memset(&ss, 0, sizeof(ss));
	bool loopback = false;
	http_server *srv = NULL;

	if (!cfg || !handler || !ret_server)
		return -EINVAL;
	r = check_config(cfg);
	if (r < 0)
		return r;
	if (cfg->listen_fd > 0) {
		int flags = fcntl(cfg->listen_fd, F_GETFL);
		if (flags < 0 || fcntl(cfg->listen_fd, F_SETFL, flags | O_NONBLOCK) < 0)
			return -errno;
		if ((r = bound_port(cfg->listen_fd, &loopback)) < 0)
			return r;
	} else if ((r = parse_host(cfg->host, cfg->port, &ss, &ss_len, &loopback)) < 0) {
		return r;
	}
	if (cfg->plain_http && !loopback)
		return -EINVAL;
	pthread_once(&threads_once, enable_libevent_threads);
	if (!threads_ok)
		return -ENOMEM;

	srv = calloc(1, sizeof(*srv));
	if (!srv)
		return -ENOMEM;
	srv->handler = handler;
	srv->handler_ctx = ctx;
	srv->max_body = cfg->max_body ? cfg->max_body : CHSM_MAX_BODY_BYTES;
	srv->max_headers = cfg->max_headers ? cfg->max_headers : CHSM_MAX_HEADER_BYTES;
	srv->max_connections = cfg->max_connections ? cfg->max_connections : CHSM_MAX_CONNECTIONS;
	srv->timeout_seconds = cfg->timeout_seconds ? cfg->timeout_seconds
						    : CHSM_CONN_TIMEOUT_SECONDS;
	srv->listen_fd = cfg->listen_fd;
	if (cfg->listen_fd > 0)
		srv->port = bound_port(cfg->listen_fd, NULL);
	atomic_init(&srv->connections, 0);
	srv->max_per_peer = srv->max_connections < CHSM_MAX_CONNECTIONS_PER_PEER
				    ? srv->max_connections
				    : CHSM_MAX_CONNECTIONS_PER_PEER;
	pthread_mutex_init(&srv->peers_lock, NULL);
	srv->peers = calloc((size_t)srv->max_connections, sizeof(*srv->peers));
	if (!srv->peers) {
		r = -ENOMEM;
		goto fail;
	}
	srv->frame_limits = (struct http_frame_limits){
		.max_body = srv->max_body,
		.max_headers = srv->max_headers,
		.drain_cap = srv->max_body > HTTP_REFUSED_BODY_DRAIN_BYTES ? srv->max_body
									     : HTTP_REFUSED_BODY_DRAIN_BYTES,
	};
	if (!cfg->plain_http) {
		r = crypto_tls_server_ctx_new(cfg->cert_file, cfg->key_file, &srv->tls);
		if (r < 0)
			goto fail;
	}
	if (cfg->port != 0 && cfg->listen_fd <= 0) {
		r = probe_port(&ss, ss_len);
		if (r < 0)
			goto fail;
	}
	srv->n_workers = cfg->threads ? cfg->threads : default_threads();
	srv->workers = calloc((size_t)srv->n_workers, sizeof(*srv->workers));
	if (!srv->workers) {
		r = -ENOMEM;
		goto fail;
	}
	for (int i = 0; i < srv->n_workers; i++) {
		r = worker_init(&srv->workers[i], srv, &ss, ss_len);
		if (r < 0)
			goto fail;
	}
	r = start_threads(srv);
	if (r < 0)
		goto fail;
	*ret_server = srv;
	return 0;
fail:
	http_server_stop(srv);
	return r;
}

int http_listen_socket(const char *host, int port, int *ret_fd, int *ret_port)
{
	struct sockaddr_storage ss;
	socklen_t len = 0;
	bool loopback;
	if (!host || port < 0 || port > 65535 || !ret_fd || !ret_port)
		return -EINVAL;
	int r = parse_host(host, port, &ss, &len, &loopback);
	if (r < 0)
		return r;
	return make_listener(&ss, len, false, ret_fd, ret_port);
}

int http_server_port(const http_server *srv)
{
	return srv ? srv->port : -EINVAL;
}

void http_server_stop(http_server *srv)
{
	if (!srv)
		return;
	for (int i = 0; srv->workers && i < srv->n_workers; i++)
		if (srv->workers[i].thread_started)
			event_active(srv->workers[i].stop_ev, EV_READ, 0);
	for (int i = 0; srv->workers && i < srv->n_workers; i++)
		if (srv->workers[i].thread_started)
			pthread_join(srv->workers[i].thread, NULL);
	for (int i = 0; srv->workers && i < srv->n_workers; i++)
		worker_cleanup(&srv->workers[i]);
	free(srv->workers);
	crypto_tls_server_ctx_free(srv->tls);
	free(srv->peers);
	pthread_mutex_destroy(&srv->peers_lock);
	free(srv);
}
