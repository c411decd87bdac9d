/*
 * test_vsmd.c: chsm-vsmd run directly: argument validation (a table of bad
 * command lines, each must exit non-zero without listening or reporting
 * READY), the readiness line, reading the key from --key-fd, serving and
 * stopping on SIGTERM/SIGINT.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/util.h"
#include "vsm_test_util.h"

#define MAX_ARGS 12

/* Runs chsm-vsmd with args (NULL-terminated), a pipe on fd 3 and, when
 * key is not NULL, a pipe holding key_len bytes of key (then EOF) on fd 4.
 * Returns its pid; *ret_ready is the ready pipe's read end. */
static pid_t run_vsmd_key(const char *const *args, const void *key, size_t key_len,
			  int *ret_ready)
{
	const char *argv[MAX_ARGS + 2] = { VSMD_PATH };
	int pipefd[2], keyfd[2] = { -1, -1 };
	size_t n = 0;
	if (key) {
		assert_int_equal(pipe(keyfd), 0);
		fcntl(keyfd[0], F_SETFD, FD_CLOEXEC);
		fcntl(keyfd[1], F_SETFD, FD_CLOEXEC);
		assert_int_equal(write(keyfd[1], key, key_len), (ssize_t)key_len);
		close(keyfd[1]);
	}
	while (args[n] && n < MAX_ARGS) {
		argv[n + 1] = args[n];
		n++;
	}
	argv[n + 1] = NULL;
	assert_int_equal(pipe(pipefd), 0);
	fcntl(pipefd[0], F_SETFD, FD_CLOEXEC);
	fcntl(pipefd[1], F_SETFD, FD_CLOEXEC);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* Only the write end survives exec, as fd 3, and the key's
		 * read end as fd 4 (both moved above 4 first). */
		int rfd = fcntl(pipefd[1], F_DUPFD_CLOEXEC, 10);
		int kfd = key ? fcntl(keyfd[0], F_DUPFD_CLOEXEC, 10) : -1;
		dup2(rfd, 3);
		if (kfd >= 0)
			dup2(kfd, 4);
		execv(VSMD_PATH, (char *const *)argv);
		_exit(126);
	}
	close(pipefd[1]);
	if (keyfd[0] >= 0)
		close(keyfd[0]);
	*ret_ready = pipefd[0];
	return pid;
}

static pid_t run_vsmd(const char *const *args, int *ret_ready)
{
	return run_vsmd_key(args, NULL, 0, ret_ready);
}


/* Reads what chsm-vsmd wrote to the ready pipe until EOF or a newline
 * (up to 10 s). */
static void read_ready(int fd, char *buf, size_t len)
{
	size_t got = 0;
	int64_t deadline = chsm_monotonic_ms() + 10000;
	buf[0] = '\0';
	while (got < len - 1 && !strchr(buf, '\n')) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		int64_t left = deadline - chsm_monotonic_ms();
		if (left <= 0 || poll(&pfd, 1, (int)left) <= 0)
			break;
		ssize_t n = read(fd, buf + got, len - 1 - got);
		if (n <= 0)
			break;
		got += (size_t)n;
		buf[got] = '\0';
	}
}

/* Waits for pid to exit (up to 10 s, then kills it); returns the raw
 * wait status. */
static int wait_exit(pid_t pid)
{
	int status = 0;
	int64_t deadline = chsm_monotonic_ms() + 10000;
	while (waitpid(pid, &status, WNOHANG) == 0) {
		if (chsm_monotonic_ms() > deadline) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			fail_msg("chsm-vsmd did not exit");
		}
		usleep(10000);
	}
	return status;
}

static void test_bad_command_lines(void **state)
{
	struct test_endpoint ep;
	char buf[256], port_text[16], long_id[70];
	test_pick_endpoint(&ep);
	snprintf(port_text, sizeof(port_text), "%d", ep.port);
	memset(long_id, 'a', 65);
	long_id[65] = '\0';
	char ip_only[64], ip_colon[64], v4_leading0[64], plus_port[64], v6_colon[64];
	snprintf(ip_only, sizeof(ip_only), "%s", ep.ip);
	snprintf(ip_colon, sizeof(ip_colon), "%s:", ep.ip);
	snprintf(v4_leading0, sizeof(v4_leading0), "%s:0%d", ep.ip, ep.port);
	snprintf(plus_port, sizeof(plus_port), "%s:+%d", ep.ip, ep.port);
	snprintf(v6_colon, sizeof(v6_colon), "::1:%d", ep.port);
	const char *const L = ep.text;
	const char *cases[][MAX_ARGS + 1] = {
		/* bad ids */
		{ "--vsm-id", "-lead", "--listen", L, "--ready-fd", "3" },
		{ "--vsm-id", "", "--listen", L, "--ready-fd", "3" },
		{ "--vsm-id", "a b", "--listen", L, "--ready-fd", "3" },
		{ "--vsm-id", "a/b", "--listen", L, "--ready-fd", "3" },
		{ "--vsm-id", "caf\xc3\xa9", "--listen", L, "--ready-fd", "3" },
		{ "--vsm-id", long_id, "--listen", L, "--ready-fd", "3" },
		/* bad addresses */
		{ "--vsm-id", "v", "--listen", ip_only, "--ready-fd", "3" },
		{ "--vsm-id", "v", "--listen", ip_colon, "--ready-fd", "3" },
		{ "--vsm-id", "v", "--listen", "localhost:5000", "--ready-fd", "3" },
		{ "--vsm-id", "v", "--listen", "1.2.3:5000", "--ready-fd", "3" },
		{ "--vsm-id", "v", "--listen", "256.1.1.1:5000", "--ready-fd", "3" },
		{ "--vsm-id", "v", "--listen", v6_colon, "--ready-fd", "3" },
		{ "--vsm-id", "v", "--listen", "[::1]5000", "--ready-fd", "3" },
		{ "--vsm-id", "v", "--listen", "[fe80::1%lo]:5000", "--ready-fd", "3" },
		{ "--vsm-id", "v", "--listen", "[]:5000", "--ready-fd", "3" },
		{ "--vsm-id", "v", "--listen", "[127.0.0.1]:5000", "--ready-fd", "3" },
		/* bad ports */
		{ "--vsm-id", "v", "--listen", "127.0.0.1:0", "--ready-fd", "3" },
		{ "--vsm-id", "v", "--listen", "127.0.0.1:65536", "--ready-fd", "3" },
		{ "--vsm-id", "v", "--listen", "127.0.0.1:99999999999999999999999", "--ready-fd", "3" },
		{ "--vsm-id", "v", "--listen", "127.0.0.1:abc", "--ready-fd", "3" },
		{ "--vsm-id", "v", "--listen", "127.0.0.1:-1", "--ready-fd", "3" },
		{ "--vsm-id", "v", "--listen", v4_leading0, "--ready-fd", "3" },
		{ "--vsm-id", "v", "--listen", plus_port, "--ready-fd", "3" },
		/* bad ready fds */
		{ "--vsm-id", "v", "--listen", L, "--ready-fd", "x" },
		{ "--vsm-id", "v", "--listen", L, "--ready-fd", "2" },
		{ "--vsm-id", "v", "--listen", L, "--ready-fd", "-3" },
		{ "--vsm-id", "v", "--listen", L, "--ready-fd", "900" },
		/* bad shapes */
		{ "--vsm-id", "v", "--ready-fd", "3" },
		{ "--listen", L, "--ready-fd", "3" },
		{ "--vsm-id", "v", "--vsm-id", "w", "--listen", L, "--ready-fd", "3" },
		{ "--vsm-id", "v", "--listen", L, "--ready-fd", "3", "extra" },
		{ "--vsm-id", "v", "--listen", L, "--ready-fd", "3", "--bogus" },
		{ "--vsm-id", "v", "--listen" },
		/* bad service options */
		{ "--vsm-id", "v", "--listen", L, "--ready-fd", "3", "--max-sessions", "0" },
		{ "--vsm-id", "v", "--listen", L, "--ready-fd", "3", "--max-sessions", "4097" },
		{ "--vsm-id", "v", "--listen", L, "--ready-fd", "3", "--max-sessions", "1x" },
		{ "--vsm-id", "v", "--listen", L, "--ready-fd", "3", "--max-sessions", " 5" },
		{ "--vsm-id", "v", "--listen", L, "--ready-fd", "3", "--max-keys", "0" },
		{ "--vsm-id", "v", "--listen", L, "--ready-fd", "3", "--max-keys", "-1" },
		{ "--vsm-id", "v", "--listen", L, "--ready-fd", "3", "--max-keys", "1000001" },
		{ "--vsm-id", "v", "--listen", L, "--ready-fd", "3", "--key-fd", "2" },
		{ "--vsm-id", "v", "--listen", L, "--ready-fd", "3", "--key-fd", "3" },
		{ "--vsm-id", "v", "--listen", L, "--ready-fd", "3", "--key-fd", "900" },
		{ "--vsm-id", "v", "--listen", L, "--ready-fd", "3", "--key-fd", "four" },
		{ "--vsm-id", "v", "--listen", L, "--ready-fd", "3", "--db", "" },
		{ "--vsm-id", "v", "--listen", L, "--ready-fd", "3", "--stats-file", "" },
		{ "--vsm-id", "v", "--listen", L, "--ready-fd", "3", "--db", "a", "--db", "b" },
		{ "--vsm-id", "v", "--listen", L, "--ready-fd", "3", "--max-keys" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int ready;
		pid_t pid = run_vsmd(cases[i], &ready);
		int status = wait_exit(pid);
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 1)
			fail_msg("case %zu: status %#x, want exit 1", i, status);
		read_ready(ready, buf, sizeof(buf));
		close(ready);
		if (buf[0] != '\0')
			fail_msg("case %zu: ready pipe got \"%s\"", i, buf);
		assert_int_equal(test_connect(ep.ip, ep.port), -ECONNREFUSED);
	}
}

static void test_serves_until_sigterm(void **state)
{
	struct test_endpoint ep;
	char buf[256];
	int ready;
	test_pick_endpoint(&ep);
	const char *args[] = { "--vsm-id", "Good_1.v-2", "--listen", ep.text, "--ready-fd", "3",
			       NULL };
	pid_t pid = run_vsmd(args, &ready);
	read_ready(ready, buf, sizeof(buf));
	assert_string_equal(buf, "READY\n");
	/* Then the pipe is closed. */
	assert_int_equal(read(ready, buf, sizeof(buf)), 0);
	close(ready);
	for (int i = 0; i < 3; i++)
		assert_true(test_connect_and_see_close(ep.ip, ep.port));
	assert_int_equal(kill(pid, SIGTERM), 0);
	int status = wait_exit(pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_int_equal(test_connect(ep.ip, ep.port), -ECONNREFUSED);
}

/* CHSM_VSMD_PARENT_PID (the supervisor's spawn sets it): a process whose
 * parent is not the one named, or with a malformed value, exits 1 without
 * listening; the right one serves. */
static void test_parent_pid_env(void **state)
{
	(void)state;
	static const char *const wrong[] = { "1", "0", "abc", "", "99999999999" };
	struct test_endpoint ep;
	char buf[256], self[24];
	int ready;
	test_pick_endpoint(&ep);
	const char *args[] = { "--vsm-id", "v", "--listen", ep.text, "--ready-fd", "3", NULL };
	for (size_t i = 0; i < sizeof(wrong) / sizeof(wrong[0]); i++) {
		assert_int_equal(setenv("CHSM_VSMD_PARENT_PID", wrong[i], 1), 0);
		pid_t pid = run_vsmd(args, &ready);
		unsetenv("CHSM_VSMD_PARENT_PID");
		read_ready(ready, buf, sizeof(buf));
		close(ready);
		assert_null(strstr(buf, "READY"));
		int status = wait_exit(pid);
		assert_true(WIFEXITED(status));
		assert_int_equal(WEXITSTATUS(status), 1);
	}
	snprintf(self, sizeof(self), "%ld", (long)getpid());
	assert_int_equal(setenv("CHSM_VSMD_PARENT_PID", self, 1), 0);
	pid_t pid = run_vsmd(args, &ready);
	unsetenv("CHSM_VSMD_PARENT_PID");
	read_ready(ready, buf, sizeof(buf));
	close(ready);
	assert_string_equal(buf, "READY\n");
	assert_int_equal(kill(pid, SIGTERM), 0);
	int status = wait_exit(pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_sigint_and_no_ready_fd(void **state)
{
	struct test_endpoint ep;
	int ready;
	test_pick_endpoint(&ep);
	const char *args[] = { "--vsm-id", "v", "--listen", ep.text, NULL };
	pid_t pid = run_vsmd(args, &ready);
	close(ready);
	/* No readiness pipe: poll the port instead (generous bound). */
	int64_t deadline = chsm_monotonic_ms() + 10000;
	while (!test_connect_and_see_close(ep.ip, ep.port)) {
		assert_true(chsm_monotonic_ms() < deadline);
		usleep(20000);
	}
	assert_int_equal(kill(pid, SIGINT), 0);
	int status = wait_exit(pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_ipv6(void **state)
{
	char text[64], buf[256];
	int ready;
	int probe = test_connect("::1", 1);
	if (probe == -EADDRNOTAVAIL || probe == -EAFNOSUPPORT || probe == -ENETUNREACH)
		skip();
	if (probe >= 0)
		close(probe);
	struct test_endpoint ep;
	test_pick_endpoint(&ep); /* a port free on IPv4; try it on ::1 */
	snprintf(text, sizeof(text), "[::1]:%d", ep.port);
	const char *args[] = { "--vsm-id", "v6", "--listen", text, "--ready-fd", "3", NULL };
	pid_t pid = run_vsmd(args, &ready);
	read_ready(ready, buf, sizeof(buf));
	close(ready);
	if (strncmp(buf, "ERROR EADDRINUSE", 16) == 0) {
		wait_exit(pid);
		skip();
	}
	assert_string_equal(buf, "READY\n");
	assert_true(test_connect_and_see_close("::1", ep.port));
	kill(pid, SIGTERM);
	int status = wait_exit(pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* --key-fd: exactly 32 bytes are read; fewer is refused before listening.
 * With a key and a database that does not exist, the service (which opens
 * it) fails; with a key and no database it serves. */
static void test_key_fd(void **state)
{
	static const uint8_t key[32] = { 0x4b, 1, 2, 3 };
	struct test_endpoint ep;
	char buf[256], missing[64];
	int ready;
	(void)state;
	test_pick_endpoint(&ep);
	const char *args[] = { "--vsm-id", "k", "--listen", ep.text, "--ready-fd", "3",
			       "--key-fd", "4", "--max-sessions", "2", "--max-keys", "5", NULL };

	pid_t pid = run_vsmd_key(args, key, 31, &ready);
	int status = wait_exit(pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 1);
	read_ready(ready, buf, sizeof(buf));
	close(ready);
	assert_non_null(strstr(buf, "ERROR EINVAL cannot read the VSM key"));
	assert_int_equal(test_connect(ep.ip, ep.port), -ECONNREFUSED);

	pid = run_vsmd_key(args, key, sizeof(key), &ready);
	read_ready(ready, buf, sizeof(buf));
	close(ready);
	assert_string_equal(buf, "READY\n");
	assert_true(test_connect_and_see_close(ep.ip, ep.port));
	/* The key's descriptor is closed once read. */
	char fd_path[64], link[256];
	snprintf(fd_path, sizeof(fd_path), "/proc/%d/fd/4", (int)pid);
	ssize_t n = readlink(fd_path, link, sizeof(link) - 1);
	if (n >= 0) {
		link[n] = '\0';
		assert_null(strstr(link, "pipe:"));
	}
	kill(pid, SIGTERM);
	status = wait_exit(pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);

	snprintf(missing, sizeof(missing), "/nonexistent-%d/chsm.db", (int)getpid());
	const char *with_db[] = { "--vsm-id", "k", "--listen", ep.text, "--ready-fd", "3",
				  "--key-fd", "4", "--db", missing, NULL };
	pid = run_vsmd_key(with_db, key, sizeof(key), &ready);
	status = wait_exit(pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 3);
	read_ready(ready, buf, sizeof(buf));
	close(ready);
	assert_true(strncmp(buf, "ERROR ENOENT", 12) == 0);
}

static void test_address_in_use(void **state)
{
	struct test_endpoint ep;
	char buf[256], want[128];
	int ready;
	test_pick_endpoint(&ep);
	int lfd = test_listen(&ep);
	assert_true(lfd >= 0);
	const char *args[] = { "--vsm-id", "v", "--listen", ep.text, "--ready-fd", "3", NULL };
	pid_t pid = run_vsmd(args, &ready);
	read_ready(ready, buf, sizeof(buf));
	close(ready);
	snprintf(want, sizeof(want), "ERROR EADDRINUSE cannot bind %s\n", ep.text);
	assert_string_equal(buf, want);
	int status = wait_exit(pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 2);
	close(lfd);
}

static void test_address_not_available(void **state)
{
	char buf[256];
	int ready;
	/* TEST-NET-1: not configured on this machine. */
	const char *args[] = { "--vsm-id", "v", "--listen", "192.0.2.1:5000", "--ready-fd", "3",
			       NULL };
	pid_t pid = run_vsmd(args, &ready);
	read_ready(ready, buf, sizeof(buf));
	close(ready);
	assert_string_equal(buf, "ERROR EADDRNOTAVAIL cannot bind 192.0.2.1:5000\n");
	int status = wait_exit(pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bad_command_lines),
		cmocka_unit_test(test_key_fd),
		cmocka_unit_test(test_serves_until_sigterm),
		cmocka_unit_test(test_sigint_and_no_ready_fd),
		cmocka_unit_test(test_parent_pid_env),
		cmocka_unit_test(test_ipv6),
		cmocka_unit_test(test_address_in_use),
		cmocka_unit_test(test_address_not_available),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
