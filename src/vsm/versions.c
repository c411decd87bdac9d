/*
 * versions.c: installed versions of the VSM service and the `--version`
 * probe (versions.h).
 */
#define _GNU_SOURCE   /* renameat2, pipe2, nftw */
#include "vsm/versions.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"
#include "vsm/ready.h"

extern char **environ;

int vsm_version_name_check(const char *version)
{
	size_t len = version ? strlen(version) : 0;
	if (len == 0 || len > VSM_VERSION_MAX_LEN || version[0] == '.' || version[len - 1] == '.' ||
	    strstr(version, ".."))
		return -EINVAL;
	for (size_t i = 0; i < len; i++)
		if (version[i] != '.' && (version[i] < '0' || version[i] > '9'))
			return -EINVAL;
	return 0;
}

int vsm_version_dir(const char *state_dir, const char *version, char *out, size_t cap)
{
	if (!state_dir || vsm_version_name_check(version) < 0)
		return -EINVAL;
	int n = snprintf(NULL, 0, "%s/%s/%s", state_dir, VSM_VERSIONS_DIR, version);
	if (n < 0 || (size_t)n >= cap)
		return -ENAMETOOLONG;
	snprintf(out, cap, "%s/%s/%s", state_dir, VSM_VERSIONS_DIR, version);
	return 0;
}

int vsm_version_binary(const char *state_dir, const char *version, char *out, size_t cap)
{
	char dir[4096], path[4096 + sizeof(VSM_VERSIONS_PROGRAM) + 1];
	struct stat st;
	int r = vsm_version_dir(state_dir, version, dir, sizeof(dir));
	if (r < 0)
		return r;
	snprintf(path, sizeof(path), "%s/%s", dir, VSM_VERSIONS_PROGRAM);
	if (lstat(path, &st) < 0 || !S_ISREG(st.st_mode) || !(st.st_mode & S_IXUSR))
		return 0;
	if (strlen(path) >= cap)
		return -ENAMETOOLONG;
	memcpy(out, path, strlen(path) + 1);
	return 1;
}

/* Waits for child pid until deadline (monotonic ms), then kills it; reaps
 * it either way. Returns its wait status, or -ETIMEDOUT when it was
 * killed. */
static int reap(pid_t pid, int64_t deadline)
{
	int status = 0;
	for (;;) {
		pid_t w = waitpid(pid, &status, WNOHANG);
		if (w == pid)
			return status;
		if (w < 0 && errno != EINTR)
			return -ECHILD;
		if (chsm_monotonic_ms() >= deadline)
			break;
		struct timespec ts = {0, 10 * 1000000L};
		nanosleep(&ts, NULL);
	}
	kill(pid, SIGKILL);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	return -ETIMEDOUT;
}

/* Spawns path --version with stdout on out_fd; *ret_pid on success. */
static int spawn_probe(const char *path, int out_fd, pid_t *ret_pid)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	sigset_t none, all;
	char *argv[] = {(char *)path, "--version", NULL};
	int r = posix_spawn_file_actions_init(&fa);
	if (r != 0)
		return -r;
	r = posix_spawnattr_init(&at);
	if (r != 0) {
		posix_spawn_file_actions_destroy(&fa);
		return -r;
	}
	sigemptyset(&none);
	sigfillset(&all);
	if ((r = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0)) == 0 &&
	    (r = posix_spawn_file_actions_adddup2(&fa, out_fd, 1)) == 0 &&
	    (r = posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0)) == 0 &&
	    (r = posix_spawnattr_setsigmask(&at, &none)) == 0 &&
	    (r = posix_spawnattr_setsigdefault(&at, &all)) == 0 &&
	    (r = posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF)) == 0)
		r = posix_spawn(ret_pid, path, &fa, &at, argv, environ);
	posix_spawnattr_destroy(&at);
	posix_spawn_file_actions_destroy(&fa);
	return -r;
}

int vsm_binary_version(const char *path, char *out, size_t cap)
{
	char buf[VSM_VERSION_MAX_LEN + 2];
	size_t len = 0;
	bool overflow = false;
	int p[2];
	pid_t pid;
	if (!path || cap < 2)
		return -EINVAL;
	if (pipe2(p, O_CLOEXEC) < 0)
		return -errno;
	int r = spawn_probe(path, p[1], &pid);
	close(p[1]);
	if (r < 0) {
		close(p[0]);
		return r;
	}
	int64_t deadline =
		chsm_monotonic_ms() + VSM_VERSION_PROBE_TIMEOUT_MS * vsm_wait_scale();
	for (;;) {
		int64_t left = deadline - chsm_monotonic_ms();
		struct pollfd pfd = {p[0], POLLIN, 0};
		if (left <= 0)
			break;
		int n = poll(&pfd, 1, (int)left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		char chunk[64];
		ssize_t got = read(p[0], chunk, sizeof(chunk));
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			break;
		if (len + (size_t)got > sizeof(buf) - 1) {
			overflow = true;
			break;
		}
		memcpy(buf + len, chunk, (size_t)got);
		len += (size_t)got;
	}
	close(p[0]);
	int status = reap(pid, overflow ? 0 : deadline);
	if (status == -ETIMEDOUT && !overflow)
		return -ETIMEDOUT;
	if (overflow || status < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return -EPROTO;
	buf[len] = '\0';
	if (len < 2 || buf[len - 1] != '\n')
		return -EPROTO;
	buf[--len] = '\0';
	if (vsm_version_name_check(buf) < 0)
		return -EPROTO;
	if (len >= cap)
		return -EPROTO;
	memcpy(out, buf, len + 1);
	return 0;
}
