/*
 * run.c: running the host's tools (ip, chronyc) without a shell: a fixed
 * argument vector, posix_spawn, an environment of LC_ALL=C only, every
 * descriptor above stderr closed in the child.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "platform/internal.h"

/* Output kept from a tool, for its error message. */
#define RUN_OUTPUT_MAX 1024

void plat_set_err(char *err, size_t errlen, const char *fmt, ...)
{
	if (!err || errlen == 0)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

uint32_t plat_hash(const char *s)
{
	uint32_t h = 2166136261u;
	for (; *s; s++) {
		h ^= (uint8_t)*s;
		h *= 16777619u;
	}
	return h;
}

static void describe(const char *const *argv, const char *out, char *err, size_t errlen)
{
	size_t used = 0;
	if (!err || errlen == 0)
		return;
	err[0] = '\0';
	const char *base = strrchr(argv[0], '/');
	base = base ? base + 1 : argv[0];
	for (int i = 0; argv[i] && used + 1 < errlen; i++) {
		int n = snprintf(err + used, errlen - used, "%s%s", i ? " " : "", i ? argv[i] : base);
		if (n < 0)
			break;
		used += (size_t)n;
	}
	if (used < errlen)
		snprintf(err + used, errlen - used, ": %.*s", (int)strcspn(out, "\n"),
			 out[0] ? out : "failed");
}

int plat_run(const char *const *argv, char *err, size_t errlen)
{
	static char *const envp[] = {"LC_ALL=C", NULL};
	char out[RUN_OUTPUT_MAX + 1];
	size_t len = 0;
	int pipefd[2], r;
	posix_spawn_file_actions_t fa;
	pid_t pid;
	if (pipe2(pipefd, O_CLOEXEC) < 0)
		return -errno;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, pipefd[1], 1);
	posix_spawn_file_actions_adddup2(&fa, pipefd[1], 2);
	posix_spawn_file_actions_addclosefrom_np(&fa, 3);
	r = posix_spawn(&pid, argv[0], &fa, NULL, (char *const *)argv, envp);
	posix_spawn_file_actions_destroy(&fa);
	close(pipefd[1]);
	if (r != 0) {
		close(pipefd[0]);
		describe(argv, strerror(r), err, errlen);
		return -r;
	}
	for (;;) {
		char buf[512];
		ssize_t n = read(pipefd[0], buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		size_t keep = (size_t)n < RUN_OUTPUT_MAX - len ? (size_t)n : RUN_OUTPUT_MAX - len;
		memcpy(out + len, buf, keep);
		len += keep;
	}
	close(pipefd[0]);
	out[len] = '\0';
	int status = 0;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -errno;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	describe(argv, out, err, errlen);
	if (strstr(out, "File exists"))
		return -EEXIST;
	if (strstr(out, "Cannot find device") || strstr(out, "does not exist"))
		return -ENODEV;
	if (strstr(out, "Operation not permitted"))
		return -EPERM;
	return -EIO;
}
