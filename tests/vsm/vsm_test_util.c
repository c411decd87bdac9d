/*
 * vsm_test_util.c: see vsm_test_util.h.
 */
#include "vsm_test_util.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

void test_pick_endpoint(struct test_endpoint *ep)
{
	static atomic_uint counter;
	unsigned pid = (unsigned)getpid(), n = atomic_fetch_add(&counter, 1);
	snprintf(ep->ip, sizeof(ep->ip), "127.%u.%u.%u", (pid >> 8) & 0xff, pid & 0xff,
		 n % 250 + 1);
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof(sin);
	inet_pton(AF_INET, ep->ip, &sin.sin_addr);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sin, &len) < 0) {
		perror("test_pick_endpoint");
		abort();
	}
	close(fd);
	ep->port = ntohs(sin.sin_port);
	snprintf(ep->text, sizeof(ep->text), "%s:%d", ep->ip, ep->port);
}

int test_connect(const char *ip, int port)
{
	struct sockaddr_storage ss;
	socklen_t len;
	memset(&ss, 0, sizeof(ss));
	struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
	if (inet_pton(AF_INET, ip, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)port);
		len = sizeof(*sin);
	} else if (inet_pton(AF_INET6, ip, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
		len = sizeof(*sin6);
	} else {
		return -EINVAL;
	}
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&ss, len) < 0) {
		int r = -errno;
		close(fd);
		return r;
	}
	return fd;
}

bool test_connect_and_see_close(const char *ip, int port)
{
	int fd = test_connect(ip, port);
	if (fd < 0)
		return false;
	struct timeval tv = { .tv_sec = 10 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	char c;
	ssize_t n = read(fd, &c, 1);
	int err = errno;
	close(fd);
	/* The VSM service answers with HELLO; a bare listener closes. */
	return n >= 0 || err == ECONNRESET;
}

int test_listen(const struct test_endpoint *ep)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)ep->port) };
	inet_pton(AF_INET, ep->ip, &sin.sin_addr);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 || listen(fd, 4) < 0) {
		int r = -errno;
		close(fd);
		return r;
	}
	return fd;
}

int test_mkdtemp(char *dir, size_t len)
{
	const char *base = getenv("TMPDIR");
	snprintf(dir, len, "%s/chsm-vsm-test-XXXXXX", base && *base ? base : "/tmp");
	return mkdtemp(dir) ? 0 : -errno;
}

void test_write_script(const char *dir, const char *name, const char *body, char *path,
		       size_t len)
{
	snprintf(path, len, "%s/%s", dir, name);
	FILE *f = fopen(path, "we");
	if (!f) {
		perror("test_write_script");
		abort();
	}
	fprintf(f, "#!/bin/sh\n%s\n", body);
	fclose(f);
	chmod(path, 0700);
}

void test_rmtree(const char *dir)
{
	DIR *d = opendir(dir);
	if (d) {
		struct dirent *e;
		char path[512];
		while ((e = readdir(d))) {
			if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
				continue;
			snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
			unlink(path);
		}
		closedir(d);
	}
	rmdir(dir);
}
