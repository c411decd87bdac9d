/*
 * test_supervisor.c: the VSM supervisor driving the real chsm-vsmd (and a
 * few shell scripts standing in for a misbehaving one) on loopback.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/limits.h"
#include "common/util.h"
#include "vsm/supervisor.h"
#include "vsm_test_util.h"

/* vsm_supervisor_start with only an id and an endpoint. */
static int start(vsm_supervisor *sup, const char *id, const char *ip, int port, char *err,
		 size_t errlen)
{
	struct vsm_start_options o = {
		.vsm_id = id, .ip = ip, .port = port, .err = err, .errlen = errlen,
	};
	return vsm_supervisor_start(sup, &o);
}

/* True when something accepts connections on ip:port (the service keeps
 * the connection open for a HELLO; this closes it). */
static bool accepts(const char *ip, int port)
{
	int fd = test_connect(ip, port);
	if (fd < 0)
		return false;
	close(fd);
	return true;
}

/* Records the unexpected exits the supervisor reports. */
struct recorder {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int count;
	char id[128];
	char reason[128];
	/* When set, the callback starts the VSM again on this endpoint. */
	vsm_supervisor *restart_sup;
	struct test_endpoint restart_ep;
	int restart_result;
};

static void record_exit(void *ctx, const char *vsm_id, const char *reason)
{
	struct recorder *rec = ctx;
	pthread_mutex_lock(&rec->lock);
	snprintf(rec->id, sizeof(rec->id), "%s", vsm_id);
	snprintf(rec->reason, sizeof(rec->reason), "%s", reason);
	vsm_supervisor *sup = rec->restart_sup;
	pthread_mutex_unlock(&rec->lock);
	/* No supervisor lock is held here: calling back into it must work. */
	int r = sup ? start(sup, vsm_id, rec->restart_ep.ip, rec->restart_ep.port,
					   NULL, 0) : 0;
	pthread_mutex_lock(&rec->lock);
	rec->restart_result = r;
	rec->count++;
	pthread_cond_broadcast(&rec->cond);
	pthread_mutex_unlock(&rec->lock);
}

/* Waits up to timeout_s for at least n reports; returns the count seen. */
static int wait_reports(struct recorder *rec, int n, int timeout_s)
{
	struct timespec deadline;
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += timeout_s;
	pthread_mutex_lock(&rec->lock);
	while (rec->count < n)
		if (pthread_cond_timedwait(&rec->cond, &rec->lock, &deadline) == ETIMEDOUT)
			break;
	int count = rec->count;
	pthread_mutex_unlock(&rec->lock);
	return count;
}

static int report_count(struct recorder *rec)
{
	return wait_reports(rec, 0, 0);
}

struct fixture {
	struct recorder rec;
	vsm_supervisor *sup;
	char dir[128];
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	pthread_mutex_init(&f->rec.lock, NULL);
	pthread_cond_init(&f->rec.cond, NULL);
	if (test_mkdtemp(f->dir, sizeof(f->dir)) < 0)
		return -1;
	if (vsm_supervisor_new(VSMD_PATH, record_exit, &f->rec, &f->sup) < 0)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	vsm_supervisor_free(f->sup);
	test_rmtree(f->dir);
	pthread_cond_destroy(&f->rec.cond);
	pthread_mutex_destroy(&f->rec.lock);
	free(f);
	return 0;
}

static bool pid_gone(int pid)
{
	return kill(pid, 0) < 0 && errno == ESRCH;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static void test_start_connect_stop(void **state)
{
	struct fixture *f = *state;
	struct test_endpoint ep;
	char err[256] = "";
	int pid = 0;
	int64_t started = 0, before = chsm_now_ms();
	test_pick_endpoint(&ep);

	assert_int_equal(start(f->sup, "vsm-1", ep.ip, ep.port, err, sizeof(err)), 0);
	assert_true(vsm_supervisor_running(f->sup, "vsm-1", &pid, &started));
	assert_true(pid > 0);
	assert_true(started >= before && started <= chsm_now_ms());
	assert_true(accepts(ep.ip, ep.port));

	/* chsm-vsmd honours SIGTERM: the stop does not need the SIGKILL that
	 * follows the grace period. */
	int64_t t0 = chsm_monotonic_ms();
	assert_int_equal(vsm_supervisor_stop(f->sup, "vsm-1"), 0);
	assert_true(chsm_monotonic_ms() - t0 < CHSM_VSM_STOP_GRACE_SECONDS * 1000);
	assert_false(vsm_supervisor_running(f->sup, "vsm-1", NULL, NULL));
	assert_true(pid_gone(pid));
	assert_int_equal(test_connect(ep.ip, ep.port), -ECONNREFUSED);
	assert_int_equal(vsm_supervisor_stop(f->sup, "vsm-1"), -ENOENT);
	/* A requested stop is not a fault: give a wrong report time to show. */
	sleep_ms(500);
	assert_int_equal(report_count(&f->rec), 0);
}

/* CTest runs this file twice: test_vsm_supervisor watches the processes
 * through pidfds, test_vsm_supervisor_nopidfd (CHSM_TEST_NO_PIDFD=1)
 * through the fallback without them, so every test here runs both ways. */
static void test_watch_mode(void **state)
{
	struct fixture *f = *state;
	const char *off = getenv("CHSM_TEST_NO_PIDFD");
	bool forced_off = off && strcmp(off, "1") == 0;
	assert_int_equal(vsm_supervisor_uses_pidfd(f->sup), !forced_off);
}

static void test_start_twice(void **state)
{
	struct fixture *f = *state;
	struct test_endpoint ep, ep2;
	char err[256] = "";
	test_pick_endpoint(&ep);
	test_pick_endpoint(&ep2);
	assert_int_equal(start(f->sup, "twice", ep.ip, ep.port, NULL, 0), 0);
	assert_int_equal(start(f->sup, "twice", ep2.ip, ep2.port, err, sizeof(err)),
			 -EALREADY);
	assert_non_null(strstr(err, "already"));
	assert_int_equal(test_connect(ep2.ip, ep2.port), -ECONNREFUSED);
	assert_int_equal(vsm_supervisor_stop(f->sup, "twice"), 0);
	assert_int_equal(report_count(&f->rec), 0);
}

static void test_port_in_use(void **state)
{
	struct fixture *f = *state;
	struct test_endpoint ep;
	char err[256] = "";
	test_pick_endpoint(&ep);
	int lfd = test_listen(&ep);
	assert_true(lfd >= 0);
	assert_int_equal(start(f->sup, "busy", ep.ip, ep.port, err, sizeof(err)),
			 -EADDRINUSE);
	assert_non_null(strstr(err, ep.text));
	assert_non_null(strstr(err, "in use"));
	assert_false(vsm_supervisor_running(f->sup, "busy", NULL, NULL));
	close(lfd);
	/* The failed attempt left nothing behind: the same id starts now. */
	assert_int_equal(start(f->sup, "busy", ep.ip, ep.port, err, sizeof(err)), 0);
	assert_int_equal(vsm_supervisor_stop(f->sup, "busy"), 0);
	assert_int_equal(report_count(&f->rec), 0);
}

static void test_bad_arguments(void **state)
{
	struct fixture *f = *state;
	char err[256] = "";
	static const struct {
		const char *id, *ip;
		int port;
	} cases[] = {
		{ "-lead", "127.0.0.1", 5000 },  { "", "127.0.0.1", 5000 },
		{ "a/b", "127.0.0.1", 5000 },    { "ok", "localhost", 5000 },
		{ "ok", "127.0.0.1", 0 },        { "ok", "127.0.0.1", 65536 },
		{ "ok", "127.0.0.1:1", 5000 },   { "ok", "[::1]", 5000 },
		{ "ok", "1.2.3", 5000 },         { "ok", "127.0.0.1", -1 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		err[0] = '\0';
		assert_int_equal(start(f->sup, cases[i].id, cases[i].ip, cases[i].port,
						      err, sizeof(err)),
				 -EINVAL);
		assert_true(err[0] != '\0');
	}
	char long_id[66];
	memset(long_id, 'a', 65);
	long_id[65] = '\0';
	assert_int_equal(start(f->sup, long_id, "127.0.0.1", 5000, NULL, 0), -EINVAL);
}

static void test_kill9_is_reported(void **state)
{
	struct fixture *f = *state;
	struct test_endpoint ep;
	int pid = 0;
	test_pick_endpoint(&ep);
	assert_int_equal(start(f->sup, "victim", ep.ip, ep.port, NULL, 0), 0);
	assert_true(vsm_supervisor_running(f->sup, "victim", &pid, NULL));
	assert_int_equal(kill(pid, SIGKILL), 0);

	assert_int_equal(wait_reports(&f->rec, 1, 10), 1);
	pthread_mutex_lock(&f->rec.lock);
	assert_string_equal(f->rec.id, "victim");
	assert_string_equal(f->rec.reason, "killed by signal 9");
	pthread_mutex_unlock(&f->rec.lock);
	assert_false(vsm_supervisor_running(f->sup, "victim", NULL, NULL));
	assert_true(pid_gone(pid));
	assert_int_equal(vsm_supervisor_stop(f->sup, "victim"), -ENOENT);

	/* It can be started again, and that stop is not reported. */
	assert_int_equal(start(f->sup, "victim", ep.ip, ep.port, NULL, 0), 0);
	assert_int_equal(vsm_supervisor_stop(f->sup, "victim"), 0);
	sleep_ms(300);
	assert_int_equal(report_count(&f->rec), 1);
}

static void test_stats(void **state)
{
	struct fixture *f = *state;
	struct test_endpoint ep;
	struct vsm_proc_stats st;
	test_pick_endpoint(&ep);
	assert_int_equal(vsm_supervisor_stats(f->sup, "stats", &st), -ENOENT);
	assert_int_equal(start(f->sup, "stats", ep.ip, ep.port, NULL, 0), 0);
	assert_int_equal(vsm_supervisor_stats(f->sup, "stats", &st), 0);
	assert_true(st.rss_bytes > 0);
	/* A small daemon: more than a page, less than a GiB. */
	assert_true(st.rss_bytes > 4096 && st.rss_bytes < (1ULL << 30));
	assert_true(st.cpu_percent >= 0.0 && st.cpu_percent <= 100.0 * 64);
	assert_int_equal(vsm_supervisor_stats(f->sup, "stats", &st), 0);
	assert_true(st.cpu_percent >= 0.0);
	/* Within VSM_STATS_SAMPLE_MS of a reading, the same figures come back
	 * without /proc being read (checked only when the two calls did fall
	 * within it: a loaded host may stall between them). */
	struct vsm_proc_stats again;
	int64_t t0 = chsm_monotonic_ms();
	assert_int_equal(vsm_supervisor_stats(f->sup, "stats", &st), 0);
	assert_int_equal(vsm_supervisor_stats(f->sup, "stats", &again), 0);
	if (chsm_monotonic_ms() - t0 < VSM_STATS_SAMPLE_MS) {
		assert_true(again.rss_bytes == st.rss_bytes);
		assert_true(again.cpu_percent == st.cpu_percent);
	}
	assert_int_equal(vsm_supervisor_stop(f->sup, "stats"), 0);
	assert_int_equal(vsm_supervisor_stats(f->sup, "stats", &st), -ENOENT);
}

static void test_free_stops_running(void **state)
{
	struct fixture *f = *state;
	struct test_endpoint ep1, ep2;
	int pid1 = 0, pid2 = 0;
	test_pick_endpoint(&ep1);
	test_pick_endpoint(&ep2);
	assert_int_equal(start(f->sup, "a", ep1.ip, ep1.port, NULL, 0), 0);
	assert_int_equal(start(f->sup, "b", ep2.ip, ep2.port, NULL, 0), 0);
	assert_true(vsm_supervisor_running(f->sup, "a", &pid1, NULL));
	assert_true(vsm_supervisor_running(f->sup, "b", &pid2, NULL));
	vsm_supervisor_free(f->sup);
	f->sup = NULL;
	assert_true(pid_gone(pid1));
	assert_true(pid_gone(pid2));
	assert_int_equal(test_connect(ep1.ip, ep1.port), -ECONNREFUSED);
	assert_int_equal(report_count(&f->rec), 0);
}

static void test_callback_may_restart(void **state)
{
	struct fixture *f = *state;
	int pid = 0, pid2 = 0;
	test_pick_endpoint(&f->rec.restart_ep);
	const struct test_endpoint *ep = &f->rec.restart_ep;
	assert_int_equal(start(f->sup, "phoenix", ep->ip, ep->port, NULL, 0), 0);
	assert_true(vsm_supervisor_running(f->sup, "phoenix", &pid, NULL));
	pthread_mutex_lock(&f->rec.lock);
	f->rec.restart_sup = f->sup;
	f->rec.restart_result = 1;
	pthread_mutex_unlock(&f->rec.lock);
	assert_int_equal(kill(pid, SIGKILL), 0);
	assert_int_equal(wait_reports(&f->rec, 1, 10), 1);
	pthread_mutex_lock(&f->rec.lock);
	assert_int_equal(f->rec.restart_result, 0);
	f->rec.restart_sup = NULL;
	pthread_mutex_unlock(&f->rec.lock);
	assert_true(vsm_supervisor_running(f->sup, "phoenix", &pid2, NULL));
	assert_true(pid2 != pid);
	assert_true(accepts(ep->ip, ep->port));
	assert_int_equal(vsm_supervisor_stop(f->sup, "phoenix"), 0);
	assert_int_equal(report_count(&f->rec), 1);
}

struct worker {
	vsm_supervisor *sup;
	char id[16];
	int failures;
};

static void *start_stop_worker(void *arg)
{
	struct worker *w = arg;
	for (int i = 0; i < 3; i++) {
		struct test_endpoint ep;
		test_pick_endpoint(&ep);
		if (start(w->sup, w->id, ep.ip, ep.port, NULL, 0) != 0 ||
		    !accepts(ep.ip, ep.port) ||
		    vsm_supervisor_stop(w->sup, w->id) != 0)
			w->failures++;
	}
	return NULL;
}

static void *stop_worker(void *arg)
{
	struct worker *w = arg;
	w->failures = vsm_supervisor_stop(w->sup, w->id);
	return NULL;
}

static void test_concurrent_calls(void **state)
{
	struct fixture *f = *state;
	struct worker w[4];
	pthread_t t[4];
	for (int i = 0; i < 4; i++) {
		w[i] = (struct worker){ .sup = f->sup };
		snprintf(w[i].id, sizeof(w[i].id), "conc-%d", i);
		assert_int_equal(pthread_create(&t[i], NULL, start_stop_worker, &w[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(w[i].failures, 0);
	}

	/* Two stops of one VSM: both succeed once it is gone. */
	struct test_endpoint ep;
	int pid = 0;
	test_pick_endpoint(&ep);
	assert_int_equal(start(f->sup, "shared", ep.ip, ep.port, NULL, 0), 0);
	assert_true(vsm_supervisor_running(f->sup, "shared", &pid, NULL));
	for (int i = 0; i < 2; i++) {
		w[i] = (struct worker){ .sup = f->sup, .id = "shared", .failures = 1 };
		assert_int_equal(pthread_create(&t[i], NULL, stop_worker, &w[i]), 0);
	}
	for (int i = 0; i < 2; i++) {
		pthread_join(t[i], NULL);
		assert_true(w[i].failures == 0 || w[i].failures == -ENOENT);
	}
	assert_true(pid_gone(pid));
	assert_int_equal(report_count(&f->rec), 0);
}

/* Only stdio and the readiness pipe reach the VSM process: a descriptor
 * the daemon leaked without O_CLOEXEC does not. */
static void test_no_stray_descriptors(void **state)
{
	struct fixture *f = *state;
	struct test_endpoint ep;
	char leak_path[256], fd_path[64], link[PATH_MAX];
	int pid = 0;
	snprintf(leak_path, sizeof(leak_path), "%s/leaked", f->dir);
	int leak = open(leak_path, O_WRONLY | O_CREAT, 0600); /* no O_CLOEXEC on purpose */
	assert_true(leak >= 0);
	test_pick_endpoint(&ep);
	assert_int_equal(start(f->sup, "fds", ep.ip, ep.port, NULL, 0), 0);
	assert_true(vsm_supervisor_running(f->sup, "fds", &pid, NULL));
	for (int fd = 0; fd < 1024; fd++) {
		snprintf(fd_path, sizeof(fd_path), "/proc/%d/fd/%d", pid, fd);
		ssize_t n = readlink(fd_path, link, sizeof(link) - 1);
		if (n < 0)
			continue;
		link[n] = '\0';
		assert_null(strstr(link, "leaked"));
	}
	close(leak);
	assert_int_equal(vsm_supervisor_stop(f->sup, "fds"), 0);
}

static void test_exec_failure(void **state)
{
	struct fixture *f = *state;
	struct test_endpoint ep;
	vsm_supervisor *sup = NULL;
	char err[256] = "";
	test_pick_endpoint(&ep);
	assert_int_equal(vsm_supervisor_new("/nonexistent/chsm-vsmd", record_exit, &f->rec, &sup), 0);
	assert_int_equal(start(sup, "x", ep.ip, ep.port, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "cannot execute /nonexistent/chsm-vsmd"));
	assert_false(vsm_supervisor_running(sup, "x", NULL, NULL));
	vsm_supervisor_free(sup);
	assert_int_equal(report_count(&f->rec), 0);
}

/* Stand-ins for chsm-vsmd (the readiness pipe is fd 3). */
static vsm_supervisor *script_supervisor(struct fixture *f, const char *name, const char *body)
{
	char path[256];
	vsm_supervisor *sup = NULL;
	test_write_script(f->dir, name, body, path, sizeof(path));
	assert_int_equal(vsm_supervisor_new(path, record_exit, &f->rec, &sup), 0);
	return sup;
}

static void test_exit_after_ready_is_reported(void **state)
{
	struct fixture *f = *state;
	vsm_supervisor *sup = script_supervisor(f, "ready-then-exit",
						"printf 'READY\\n' >&3\nexec 3>&-\nexit 3");
	assert_int_equal(start(sup, "s1", "127.0.0.1", 9, NULL, 0), 0);
	assert_int_equal(wait_reports(&f->rec, 1, 10), 1);
	pthread_mutex_lock(&f->rec.lock);
	assert_string_equal(f->rec.id, "s1");
	assert_string_equal(f->rec.reason, "exited with status 3");
	pthread_mutex_unlock(&f->rec.lock);
	assert_false(vsm_supervisor_running(sup, "s1", NULL, NULL));
	vsm_supervisor_free(sup);
}

/* Stand-ins that fail to start: each start fails with the given error, no
 * process is left and nothing is reported as an unexpected exit. */
static void test_bad_vsmd_start_failures(void **state)
{
	struct fixture *f = *state;
	static const struct {
		const char *name, *body;
		int want;
		const char *message;
	} cases[] = {
		{ "silent", "exit 4", -EIO, "exited with status 4" },
		{ "garbage", "printf 'HELLO\\n' >&3\nexec sleep 60", -EPROTO, "malformed" },
		{ "bad-error", "printf 'ERROR\\n' >&3\nexec sleep 60", -EPROTO, "malformed" },
		{ "unknown-errno", "printf 'ERROR EBOGUS nope\\n' >&3\nexit 2", -EIO, "nope" },
		{ "refused", "printf 'ERROR EACCES cannot bind x\\n' >&3\nexit 2", -EACCES,
		  "cannot bind x: Permission denied" },
		{ "mute", "exec sleep 60", -ETIMEDOUT, "not ready" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char err[256] = "";
		vsm_supervisor *sup = script_supervisor(f, cases[i].name, cases[i].body);
		int64_t t0 = chsm_monotonic_ms();
		int r = start(sup, "s", "127.0.0.1", 9, err, sizeof(err));
		if (r != cases[i].want || !strstr(err, cases[i].message))
			fail_msg("%s: got %d \"%s\", want %d \"%s\"", cases[i].name, r, err,
				 cases[i].want, cases[i].message);
		/* Generous upper bound: the ready timeout is seconds, not a minute. */
		assert_true(chsm_monotonic_ms() - t0 < 30000);
		assert_false(vsm_supervisor_running(sup, "s", NULL, NULL));
		vsm_supervisor_free(sup);
	}
	assert_int_equal(report_count(&f->rec), 0);
}

/* The VSM gets its options on the command line and its key through fd 4:
 * the key is in neither its argv nor its environment. */
static void test_key_and_options_reach_vsm(void **state)
{
	struct fixture *f = *state;
	static const uint8_t key[VSM_KEY_LEN] = "K0123456789abcdefghijklmnopqrst";
	char body[1024], path[256], *data = NULL;
	size_t len = 0;
	int pid = 0;
	snprintf(body, sizeof(body),
		 "cat <&4 > %s/key\nprintf '%%s\\n' \"$@\" > %s/argv\nenv > %s/env\n"
		 "printf 'READY\\n' >&3\nexec 3>&-\nexec sleep 60",
		 f->dir, f->dir, f->dir);
	vsm_supervisor *sup = script_supervisor(f, "keyed", body);
	struct vsm_start_options o = {
		.vsm_id = "keyed", .ip = "127.0.0.1", .port = 9, .db_path = "/state/chsm.db",
		.key = key, .key_len = sizeof(key), .max_sessions = 7, .max_keys = 9,
		.stats_path = "/state/run/vsm-keyed.stats.json",
	};
	assert_int_equal(vsm_supervisor_start(sup, &o), 0);
	assert_true(vsm_supervisor_running(sup, "keyed", &pid, NULL));

	snprintf(path, sizeof(path), "%s/key", f->dir);
	assert_int_equal(chsm_read_file(path, 4096, &data, &len), 0);
	assert_int_equal(len, sizeof(key));
	assert_memory_equal(data, key, sizeof(key));
	free(data);

	snprintf(path, sizeof(path), "%s/argv", f->dir);
	assert_int_equal(chsm_read_file(path, 4096, &data, &len), 0);
	assert_string_equal(data, "--vsm-id\nkeyed\n--listen\n127.0.0.1:9\n--ready-fd\n3\n--control-fd\n5\n"
				  "--db\n/state/chsm.db\n--key-fd\n4\n--max-sessions\n7\n"
				  "--max-keys\n9\n--stats-file\n/state/run/vsm-keyed.stats.json\n");
	free(data);
	snprintf(path, sizeof(path), "%s/env", f->dir);
	assert_int_equal(chsm_read_file(path, 1 << 20, &data, &len), 0);
	assert_null(strstr(data, "K0123456789"));
	free(data);

	vsm_supervisor_free(sup);
	assert_true(pid_gone(pid));
	assert_int_equal(report_count(&f->rec), 0);
}

/* Without a key no fd 4 is passed, and no option the caller left unset. */
static void test_no_key_no_options(void **state)
{
	struct fixture *f = *state;
	char body[512], path[256], *data = NULL;
	size_t len = 0;
	snprintf(body, sizeof(body),
		 "if [ -e /proc/self/fd/4 ]; then echo open; else echo closed; fi > %s/fd4\n"
		 "printf '%%s ' \"$@\" > %s/argv\nprintf 'READY\\n' >&3\nexec 3>&-\n"
		 "exec sleep 60",
		 f->dir, f->dir);
	vsm_supervisor *sup = script_supervisor(f, "plain", body);
	assert_int_equal(start(sup, "plain", "127.0.0.1", 9, NULL, 0), 0);
	snprintf(path, sizeof(path), "%s/fd4", f->dir);
	assert_int_equal(chsm_read_file(path, 4096, &data, &len), 0);
	assert_string_equal(data, "closed\n");
	free(data);
	snprintf(path, sizeof(path), "%s/argv", f->dir);
	assert_int_equal(chsm_read_file(path, 4096, &data, &len), 0);
	assert_string_equal(data, "--vsm-id plain --listen 127.0.0.1:9 --ready-fd 3 --control-fd 5 ");
	free(data);
	vsm_supervisor_free(sup);
}

static void test_bad_start_options(void **state)
{
	struct fixture *f = *state;
	static const uint8_t key[VSM_KEY_LEN] = {1};
	char long_path[PATH_MAX + 8];
	memset(long_path, 'p', sizeof(long_path) - 1);
	long_path[0] = '/';
	long_path[sizeof(long_path) - 1] = '\0';
	struct vsm_start_options base = { .vsm_id = "opt", .ip = "127.0.0.1", .port = 9 };
	struct vsm_start_options cases[7];
	for (size_t i = 0; i < 7; i++)
		cases[i] = base;
	cases[0].key = key;                    /* key without its length */
	cases[1].key = key;
	cases[1].key_len = 16;                 /* wrong length */
	cases[2].key_len = 32;                 /* length without a key */
	cases[3].max_sessions = -1;
	cases[4].max_keys = -5;
	cases[5].db_path = "";
	cases[6].stats_path = long_path;
	for (size_t i = 0; i < 7; i++) {
		char err[128] = "";
		cases[i].err = err;
		cases[i].errlen = sizeof(err);
		if (vsm_supervisor_start(f->sup, &cases[i]) != -EINVAL || !err[0])
			fail_msg("case %zu: not refused", i);
		assert_false(vsm_supervisor_running(f->sup, "opt", NULL, NULL));
	}
	assert_int_equal(vsm_supervisor_start(f->sup, NULL), -EINVAL);
}

/* A stop that has to fall back to SIGKILL still stops it, unreported. */
static void test_stop_ignoring_sigterm(void **state)
{
	struct fixture *f = *state;
	int pid = 0;
	vsm_supervisor *sup = script_supervisor(f, "stubborn",
						"trap '' TERM\nprintf 'READY\\n' >&3\nexec 3>&-\n"
						"while :; do sleep 1; done");
	assert_int_equal(start(sup, "s5", "127.0.0.1", 9, NULL, 0), 0);
	assert_true(vsm_supervisor_running(sup, "s5", &pid, NULL));
	assert_int_equal(vsm_supervisor_stop(sup, "s5"), 0);
	assert_true(pid_gone(pid));
	vsm_supervisor_free(sup);
	assert_int_equal(report_count(&f->rec), 0);
}

/* A running VSM moves its listener: the new endpoint listens before the
 * old one closes, a connection made before goes on, a taken or foreign
 * address leaves it where it was with the bind error. */
static void test_move_listener(void **state)
{
	struct fixture *f = *state;
	struct test_endpoint a, b, held;
	char err[256] = "";
	test_pick_endpoint(&a);
	test_pick_endpoint(&b);
	assert_int_equal(start(f->sup, "mv", a.ip, a.port, NULL, 0), 0);
	int before = test_connect(a.ip, a.port);
	assert_true(before >= 0);
	assert_int_equal(vsm_supervisor_move(f->sup, "mv", b.ip, b.port, err, sizeof(err)), 0);
	assert_true(accepts(b.ip, b.port));
	assert_false(accepts(a.ip, a.port));
	/* The connection accepted on the old listener is still open and
	 * served: its HELLO comes (at once or soon, as the service gets to it). */
	char byte;
	struct pollfd pfd = { .fd = before, .events = POLLIN };
	assert_int_equal(poll(&pfd, 1, 10000), 1);
	assert_int_equal(recv(before, &byte, 1, MSG_DONTWAIT), 1);
	close(before);

	test_pick_endpoint(&held);
	int lfd = test_listen(&held);
	assert_true(lfd >= 0);
	assert_int_equal(vsm_supervisor_move(f->sup, "mv", held.ip, held.port, err, sizeof(err)),
			 -EADDRINUSE);
	assert_non_null(strstr(err, "cannot bind"));
	assert_true(accepts(b.ip, b.port));
	close(lfd);
	assert_int_equal(vsm_supervisor_move(f->sup, "mv", "192.0.2.1", b.port, err, sizeof(err)),
			 -EADDRNOTAVAIL);
	assert_true(accepts(b.ip, b.port));
	assert_int_equal(vsm_supervisor_move(f->sup, "mv", "not-an-ip", 1, err, sizeof(err)),
			 -EINVAL);
	assert_int_equal(vsm_supervisor_move(f->sup, "nope", b.ip, b.port, err, sizeof(err)),
			 -ENOENT);
	/* And back again. */
	assert_int_equal(vsm_supervisor_move(f->sup, "mv", a.ip, a.port, err, sizeof(err)), 0);
	assert_true(accepts(a.ip, a.port));
	assert_int_equal(vsm_supervisor_stop(f->sup, "mv"), 0);
	assert_int_equal(vsm_supervisor_move(f->sup, "mv", b.ip, b.port, err, sizeof(err)), -ENOENT);
	assert_int_equal(report_count(&f->rec), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_watch_mode, setup, teardown),
		cmocka_unit_test_setup_teardown(test_start_connect_stop, setup, teardown),
		cmocka_unit_test_setup_teardown(test_start_twice, setup, teardown),
		cmocka_unit_test_setup_teardown(test_port_in_use, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_arguments, setup, teardown),
		cmocka_unit_test_setup_teardown(test_kill9_is_reported, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stats, setup, teardown),
		cmocka_unit_test_setup_teardown(test_free_stops_running, setup, teardown),
		cmocka_unit_test_setup_teardown(test_callback_may_restart, setup, teardown),
		cmocka_unit_test_setup_teardown(test_concurrent_calls, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_stray_descriptors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_exec_failure, setup, teardown),
		cmocka_unit_test_setup_teardown(test_exit_after_ready_is_reported, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_vsmd_start_failures, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stop_ignoring_sigterm, setup, teardown),
		cmocka_unit_test_setup_teardown(test_key_and_options_reach_vsm, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_key_no_options, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_start_options, setup, teardown),
		cmocka_unit_test_setup_teardown(test_move_listener, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
