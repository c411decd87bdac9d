/*
 * http_test_util.h: helpers for the tests of src/http: a throw-away
 * directory with a self-signed certificate, an echo handler that records
 * what it saw, shell commands (curl) and raw loopback sockets.
 */
#ifndef CHSM_TESTS_HTTP_UTIL_H
#define CHSM_TESTS_HTTP_UTIL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include "http/server.h"

/* The certificate, key and scratch files of one test process. */
struct test_tls {
	char dir[64];
	char cert[128];
	char key[128];
};

/* Makes a temp dir with a self-signed certificate for localhost and
 * 127.0.0.1. Returns 0 or a negative errno. */
int test_tls_setup(struct test_tls *t);
/* Removes the temp dir and everything in it. */
void test_tls_teardown(struct test_tls *t);

/* What the echo handler saw last, and how often it ran. */
struct echo_seen {
	pthread_mutex_t lock;
	int calls;
	int refusals;
	char method[16];
	char target[512];
	size_t body_len;
	int refusal;
};
extern struct echo_seen echo_seen;

/* Handler: answers a JSON object with the method, target, path, body length,
 * refusal, the X-Test header and whether the peer is known; status 413 when the request was refused, else 200. */
void echo_handler(void *ctx, const struct http_request *req, struct http_response *resp);
/* Number of calls of echo_handler so far. */
int echo_calls(void);

/* Starts a server on 127.0.0.1 port 0 with cfg's other fields (host, port,
 * cert and key are filled in; TLS unless cfg->plain_http). */
int test_server_start(const struct test_tls *t, struct http_server_config cfg,
		      http_server **ret_srv);

/* Runs cmd through /bin/sh; *ret_out gets its stdout (malloc'ed, NUL-
 * terminated). Returns the exit status, or -1. */
int run_cmd(const char *cmd, char **ret_out);
/* The curl command prefix for TLS requests to the test server. */
void curl_prefix(const struct test_tls *t, char *buf, size_t cap);

/* A TCP connection to 127.0.0.1:port, or -1. */
int raw_connect(int port);
/* Writes all of data. Returns 0 or -1. */
int raw_send(int fd, const void *data, size_t len);
/* Reads until the peer closes, cap-1 bytes were read, or timeout_ms passed
 * without news; buf is NUL-terminated. Returns the bytes read; *ret_closed
 * says whether the peer closed (EOF or reset). */
size_t raw_read(int fd, char *buf, size_t cap, int timeout_ms, bool *ret_closed);
/* True when the peer of fd closes within timeout_ms (data is discarded). */
bool raw_wait_closed(int fd, int timeout_ms);
/* The refusal the echo handler saw last (1 or 0). */
int echo_last_refusal(void);
/* Copies in to out replacing every token by value. 0, or -ENOSPC. */
int replace_all(const char *in, const char *token, const char *value, char *out, size_t cap);
/* Counts the occurrences of needle in hay. */
int count_substr(const char *hay, const char *needle);
/* Writes a file of len bytes of 'a' into t->dir; path into out. */
int write_body_file(const struct test_tls *t, const char *name, size_t len, char *out, size_t cap);

#endif
