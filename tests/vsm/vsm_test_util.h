/*
 * vsm_test_util.h: helpers shared by the VSM tests: free loopback endpoints
 * (a 127.x.y.z address unique to the test process, and a port the kernel
 * handed out), TCP probes and small file helpers.
 */
#ifndef CHSM_TEST_VSM_UTIL_H
#define CHSM_TEST_VSM_UTIL_H

#include <stdbool.h>
#include <stddef.h>

struct test_endpoint {
	char ip[32];
	int port;
	char text[64]; /* "ip:port" */
};

/* Fills ep with an address and port nothing listens on right now.
 * Thread-safe. */
void test_pick_endpoint(struct test_endpoint *ep);

/* Connects to ip:port. Returns the connected socket, or -errno. */
int test_connect(const char *ip, int port);

/* Connects and waits (up to 10 s) for the peer to answer: its first byte
 * (the VSM service's HELLO) or a close. True when the connection was made
 * and the peer answered. */
bool test_connect_and_see_close(const char *ip, int port);

/* A listening socket on ep (no SO_REUSEADDR). Returns it or -errno. */
int test_listen(const struct test_endpoint *ep);

/* Makes a fresh temp directory; returns 0 and fills dir (>= 64 bytes). */
int test_mkdtemp(char *dir, size_t len);

/* Writes an executable shell script at dir/name with body; fills path. */
void test_write_script(const char *dir, const char *name, const char *body, char *path,
		       size_t len);

/* Removes dir and the files directly in it. */
void test_rmtree(const char *dir);

#endif
