/*
 * server.h: the HTTPS server of chsmd (PROFILE.md §2), on libevent's evhttp
 * with bufferevent_openssl.
 *
 * One event loop per worker thread, each with its own listening socket on the
 * same address (SO_REUSEPORT), so SM2 work in handlers runs on all cores.
 * TCP_NODELAY on every connection; TLS 1.2/1.3 with
 * SSL_OP_IGNORE_UNEXPECTED_EOF; bounded header bytes, body bytes,
 * connections and idle/slow time (common/limits.h). docs/http.md has the
 * design.
 *
 * The server hands every complete request to one handler callback, on the
 * worker thread that read it; the handler fills an http_response, which the
 * server sends. The handler may run concurrently on several threads. A
 * request whose body is over the limit is answered through the same handler
 * with req->refusal set (and no body), so the caller can answer with its
 * own envelope; the connection is closed after that answer. What the server
 * refuses without a request to show (connections over the cap, heads over
 * the header limit, malformed requests, slow or idle connections) is
 * closed, or answered with a bare 4xx by evhttp, without calling the
 * handler. This module never logs; it reports through the handler and
 * return codes.
 */
#ifndef CHSM_HTTP_SERVER_H
#define CHSM_HTTP_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum http_refusal {
	HTTP_REFUSAL_NONE = 0,
	HTTP_REFUSAL_BODY_TOO_LARGE,   /* answered 413 / 1006 by the handler */
};

struct http_request {
	const char *method;       /* "GET", "PUT", "POST", "DELETE", ... */
	const char *target;       /* request-target exactly as on the request line */
	const char *path;         /* target without the query, not decoded */
	const uint8_t *body;      /* NULL when empty */
	size_t body_len;
	const char *peer;         /* "ip:port" of the client */
	enum http_refusal refusal;
	void *internal;           /* the server's, for http_request_header */
};

/* The value of a request header (case-insensitive name), or NULL. When the
 * header appears more than once, the first. */
const char *http_request_header(const struct http_request *req, const char *name);

struct http_response {
	int status;
	/* Up to 8 extra headers; name/value owned by the handler until it
	 * returns (copied by the server). */
	struct {
		const char *name;
		char value[160];
	} headers[8];
	int header_count;
	const char *content_type;  /* default "application/json" */
	char *body;                /* malloc'ed by the handler; freed by server */
	size_t body_len;
};

/* Adds a header to resp; returns 0, -ENOSPC when full or the value too
 * long, -EINVAL when the name or value holds CR/LF (or the name a ':'). */
int http_response_add_header(struct http_response *resp, const char *name, const char *value);

typedef void (*http_handler_fn)(void *ctx, const struct http_request *req,
				struct http_response *resp);

struct http_server_config {
	const char *host;            /* IPv4 or IPv6 literal, e.g. "127.0.0.1" */
	int port;                    /* 0: pick one (see http_server_port) */
	const char *cert_file;       /* PEM certificate chain */
	const char *key_file;        /* PEM private key */
	bool plain_http;             /* development only: refused unless host
					is a loopback address */
	int threads;                 /* worker loops; 0 = number of cores,
					but at least 16 (handlers may wait
					for the disk) */
	size_t max_body;             /* 0 = CHSM_MAX_BODY_BYTES */
	size_t max_headers;          /* 0 = CHSM_MAX_HEADER_BYTES */
	int max_connections;         /* 0 = CHSM_MAX_CONNECTIONS; one client
					address gets at most
					CHSM_MAX_CONNECTIONS_PER_PEER of them */
	int timeout_seconds;         /* 0 = CHSM_CONN_TIMEOUT_SECONDS */
	/* A bound, listening TCP socket to serve instead of binding host:port
	 * (from http_listen_socket, e.g. in another process); borrowed: each
	 * worker serves a duplicate and the caller keeps its own descriptor
	 * open, so connections that arrive while no server runs wait in the
	 * kernel's backlog. 0 or less: bind host:port. */
	int listen_fd;
};

typedef struct http_server http_server;

/* Binds, loads the TLS material and starts the worker threads. Returns 0,
 * -EADDRINUSE (someone listens on that port already), -EACCES, -EINVAL (bad
 * config, a plain_http host that is not loopback, TLS files that do not
 * parse or do not match), -ENOENT (a TLS file is missing), or -errno. */
int http_server_start(const struct http_server_config *cfg, http_handler_fn handler, void *ctx,
		      http_server **ret_server);
/* A listening socket (O_CLOEXEC, non-blocking, TCP_NODELAY, IPV6_V6ONLY
 * for IPv6, no SO_REUSEPORT, so nobody else can share the port) on
 * host:port (port 0: pick one), for http_server_config.listen_fd. Returns 0
 * with *ret_fd and *ret_port, -EINVAL for a bad host, -EADDRINUSE, or
 * -errno. */
int http_listen_socket(const char *host, int port, int *ret_fd, int *ret_port);
/* The bound port (useful with port 0), or -EINVAL for NULL. */
int http_server_port(const http_server *srv);
/* Stops accepting, lets responses already being sent flush (for up to a
 * second), closes every connection, joins the threads and frees the server.
 * No handler call is running when it returns. Accepts NULL. */
void http_server_stop(http_server *srv);

#endif
