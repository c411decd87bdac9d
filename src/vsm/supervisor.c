/*
 * supervisor.c: see supervisor.h.
 *
 * Each VSM is a vsm_proc on one list, guarded by s->lock, in one of three
 * states, and whoever owns a state is the only one to wait for its exit:
 *  - SPAWN_PENDING: start() asked the monitor thread to fork it;
 *  - STARTING: forked, start() reads its readiness pipe and, on failure,
 *    kills and reaps it itself;
 *  - RUNNING: up; the monitor thread polls its pidfd and reaps it when it
 *    exits on its own, unless `stopping` is set, in which case stop() reaps.
 * A pidfd is closed only by its reaper; stop() first waits for the monitor
 * to rebuild its poll set without it, so the monitor never polls a closed
 * (and possibly reused) descriptor number.
 *
 * Without pidfds: Valgrind 3.19 (Debian 12's) does not implement
 * pidfd_open and pidfd_send_signal (ENOSYS), so under memcheck no VSM
 * could start. When pidfd_open answers ENOSYS (probed once, in
 * vsm_supervisor_new), or when the test switch CHSM_TEST_NO_PIDFD=1 is set
 * (so that the fallback is tested on any kernel), every process is watched
 * by its pid instead: the monitor asks waitid(P_PID, WNOHANG) every
 * NOPIDFD_POLL_MS (an exit is still reported well within the 1 s of
 * PROFILE.md), signals go through kill(), and a reaper waits for the exit
 * with a WNOWAIT poll loop. kill() is as safe as a pidfd here because of the
 * rule above: a pid is signalled only by its reaper, before it reaps it, and
 * a pid cannot be reused before it is reaped. pidfds stay the normal path.
 */
/* For pipe2(): the pipe must be close-on-exec from birth, or another
 * thread's fork+exec (popen) could inherit it. */
#define _GNU_SOURCE
#include "vsm/supervisor.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/limits.h"
#include "common/util.h"
#include "vsm/endpoint.h"
#include "vsm/ready.h"

/* The descriptor numbers chsm-vsmd receives its readiness pipe and its
 * key pipe on. */
#define READY_FD 3
#define READY_FD_TEXT "3"
#define KEY_FD 4
#define KEY_FD_TEXT "4"
/* The descriptor chsm-vsmd receives its control socket on. */
#define CONTROL_FD 5
#define CONTROL_FD_TEXT "5"
/* Longest control message, either way. */
#define CONTROL_MSG_MAX (VSM_READY_LINE_MAX + 32)
/* The longest argv spawn builds, with its NULL. */
#define ARGV_MAX 24
/* How long a process that reported ERROR or closed its pipe gets to exit. */
#define FAILED_EXIT_GRACE_MS 1000
/* Exits reported per round of the monitor loop; the rest wait a round. */
#define MAX_EXITS_PER_ROUND 16
/* Longest exit description, e.g. "killed by signal 11 (core dumped)". */
#define REASON_MAX 64
/* Without pidfds: how often the monitor, and a reaper waiting for an exit,
 * look at the processes. */
#define NOPIDFD_POLL_MS 100

enum proc_state { PROC_SPAWN_PENDING, PROC_STARTING, PROC_RUNNING };

struct vsm_proc {
	struct vsm_proc *next;
	char id[CHSM_VSM_ID_MAX_LEN + 1];
	char endpoint[VSM_ENDPOINT_MAX_LEN];
	enum proc_state state;
	bool stopping;
	uint64_t serial;
	int spawn_err;
	pid_t pid;
	int pidfd;                 /* -1 without pidfds (see the top) */
	int ready_fd;
	int control_fd;            /* our end of the control socket */
	uint32_t move_seq;
	/* What the process is started with (start() owns these until the
	 * spawn; the key is wiped right after it). */
	char *db_path;
	char *stats_path;
	char *netns_path;
	char *vsmd_path;           /* NULL: the supervisor's */
	char max_sessions[16];     /* "" when not passed */
	char max_keys[16];
	bool has_key;
	uint8_t key[VSM_KEY_LEN];
	int64_t started_ms;
	/* CPU accounting for vsm_supervisor_stats, and its last figures. */
	uint64_t prev_ticks;
	int64_t prev_mono_ms;
	bool has_figures;
	struct vsm_proc_stats figures;
	bool exec_failed;          /* spawn_direct's exec failed (spawn_err) */
};

struct exit_event {
	char id[CHSM_VSM_ID_MAX_LEN + 1];
	char reason[REASON_MAX];
};

struct vsm_supervisor {
	char *vsmd_path;
	vsm_exit_fn on_exit;
	void *ctx;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct vsm_proc *procs;
	size_t nprocs;
	uint64_t next_serial;
	/* Bumped each time the monitor rebuilds its poll set. */
	uint64_t poll_gen;
	int wake_fd;
	bool use_pidfd;            /* false: the fallback described at the top */
	int64_t ready_ms;          /* CHSM_VSM_READY_TIMEOUT_SECONDS, scaled */
	int64_t grace_ms;          /* CHSM_VSM_STOP_GRACE_SECONDS, scaled */
	int64_t failed_grace_ms;   /* FAILED_EXIT_GRACE_MS, scaled */
	bool quit;
	bool monitor_started;
	pthread_t monitor;
	long clk_tck;
	long page_size;
	int max_fd;
	/* The monitor thread's poll set: wake_fd, then one pidfd per VSM. */
	struct pollfd *pfds;
	pid_t *pfd_pids;
	/* --vsm-cpus: the affinity of every VSM process (under lock). */
	bool has_cpus;
	cpu_set_t cpus;
};

static void set_err(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
	if (!err || errlen == 0)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static int sys_pidfd_open(pid_t pid)
{
	return (int)syscall(SYS_pidfd_open, pid, 0);
}

/* Whether processes are watched through pidfds: not when pidfd_open is
 * missing (ENOSYS, e.g. under Valgrind 3.19) or the test switch
 * CHSM_TEST_NO_PIDFD=1 is set. */
static bool pidfd_usable(void)
{
	const char *test_off = getenv("CHSM_TEST_NO_PIDFD");
	if (test_off && strcmp(test_off, "1") == 0)
		return false;
	int fd = sys_pidfd_open(getpid());
	if (fd < 0)
		return errno != ENOSYS;
	close(fd);
	return true;
}

static void sleep_ms(int64_t ms)
{
	struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static bool in_monitor(vsm_supervisor *s)
{
	return s->monitor_started && pthread_equal(pthread_self(), s->monitor);
}

static void wake_monitor(vsm_supervisor *s)
{
	uint64_t one = 1;
	while (write(s->wake_fd, &one, sizeof(one)) < 0 && errno == EINTR)
		;
}

static struct vsm_proc *find_id(vsm_supervisor *s, const char *id)
{
	for (struct vsm_proc *p = s->procs; p; p = p->next)
		if (strcmp(p->id, id) == 0)
			return p;
	return NULL;
}

static struct vsm_proc *find_pid(vsm_supervisor *s, pid_t pid)
{
	for (struct vsm_proc *p = s->procs; p; p = p->next)
		if (p->pid == pid)
			return p;
	return NULL;
}

static void unlink_proc(vsm_supervisor *s, struct vsm_proc *p)
{
	for (struct vsm_proc **pp = &s->procs; *pp; pp = &(*pp)->next) {
		if (*pp == p) {
			*pp = p->next;
			s->nprocs--;
			return;
		}
	}
}

static void free_proc(struct vsm_proc *p)
{
	if (!p)
		return;
	if (p->pidfd >= 0)
		close(p->pidfd);
	if (p->ready_fd >= 0)
		close(p->ready_fd);
	if (p->control_fd >= 0)
		close(p->control_fd);
	explicit_bzero(p->key, sizeof(p->key));
	free(p->db_path);
	free(p->stats_path);
	free(p->netns_path);
	free(p->vsmd_path);
	free(p);
}

static void describe_exit(const siginfo_t *info, char *buf, size_t len)
{
	if (info->si_code == CLD_EXITED)
		snprintf(buf, len, "exited with status %d", info->si_status);
	else if (info->si_code == CLD_DUMPED)
		snprintf(buf, len, "killed by signal %d (core dumped)", info->si_status);
	else
		snprintf(buf, len, "killed by signal %d", info->si_status);
}

/* Waits up to timeout_ms for fd to become readable; true when it did. */
static bool wait_readable(int fd, int64_t timeout_ms)
{
	int64_t deadline = chsm_monotonic_ms() + timeout_ms;
	for (;;) {
		int64_t left = deadline - chsm_monotonic_ms();
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		int rc = poll(&pfd, 1, left > 0 ? (int)left : 0);
		if (rc > 0)
			return true;
		if (rc == 0 || (rc < 0 && errno != EINTR))
			return false;
	}
}

/* Sends sig to p's process, which only its caller (its reaper) may do,
 * before reaping it: through the pidfd, or with kill() without pidfds (the
 * pid cannot have been reused, as the process is not reaped yet). */
static void proc_signal(const struct vsm_proc *p, int sig)
{
	if (p->pidfd >= 0)
		syscall(SYS_pidfd_send_signal, p->pidfd, sig, NULL, 0);
	else
		kill(p->pid, sig);
}

/* waitid(WEXITED | flags) on p's process, through its pidfd or its pid.
 * Returns 0 with *info (si_pid 0: WNOHANG and still running), or -errno. */
static int proc_wait(const struct vsm_proc *p, int flags, siginfo_t *info)
{
	int rc;
	memset(info, 0, sizeof(*info));
	do {
		if (p->pidfd >= 0)
			rc = waitid((idtype_t)P_PIDFD, (id_t)p->pidfd, info, WEXITED | flags);
		else
			rc = waitid(P_PID, (id_t)p->pid, info, WEXITED | flags);
	} while (rc < 0 && errno == EINTR);
	return rc < 0 ? -errno : 0;
}

/* Waits up to timeout_ms for p's process to exit, without reaping it; true
 * when it did (or cannot be waited for, which the reap then reports). */
static bool wait_exit(const struct vsm_proc *p, int64_t timeout_ms)
{
	if (p->pidfd >= 0)
		return wait_readable(p->pidfd, timeout_ms);
	int64_t deadline = chsm_monotonic_ms() + timeout_ms;
	for (;;) {
		siginfo_t info;
		if (proc_wait(p, WNOHANG | WNOWAIT, &info) < 0 || info.si_pid != 0)
			return true;
		int64_t left = deadline - chsm_monotonic_ms();
		if (left <= 0)
			return false;
		sleep_ms(left < NOPIDFD_POLL_MS ? left : NOPIDFD_POLL_MS);
	}
}

/* Sends sig (0: none), gives the process grace_ms to exit, then SIGKILL,
 * and reaps it; only p's reaper calls this. Returns 0 with *ret_info, or
 * -errno from waitid. */
static int terminate_and_reap(const struct vsm_proc *p, int sig, int64_t grace_ms,
			      siginfo_t *ret_info)
{
	if (sig)
		proc_signal(p, sig);
	if (sig != SIGKILL && !wait_exit(p, grace_ms))
		proc_signal(p, SIGKILL);
	return proc_wait(p, 0, ret_info);
}

/* The forked child: joins netns_fd's network namespace if any, keeps
 * stdio, the readiness pipe (as READY_FD), the key pipe if any (key_fd >=
 * 0, as KEY_FD) and the control socket (as CONTROL_FD), closes everything
 * else, resets signals, ties its life to the parent's, and execs. Only
 * async-signal-safe calls: the parent has threads. */
static void child_exec(const char *path, char *const argv[], int ready_fd, int key_fd,
		       int control_fd, int netns_fd, pid_t parent, int max_fd,
		       const char *exec_text)
{
	char line[VSM_READY_LINE_MAX];
	sigset_t none;
	struct sigaction dfl;
	memset(&dfl, 0, sizeof(dfl));
	dfl.sa_handler = SIG_DFL;
	for (int sig = 1; sig < NSIG; sig++)
		sigaction(sig, &dfl, NULL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	if (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0 || getppid() != parent)
		_exit(127);
	setpgid(0, 0);
	int exec_err = 0;
	if (netns_fd >= 0 && setns(netns_fd, CLONE_NEWNET) < 0) {
		exec_err = errno;
		exec_text = "cannot enter the VSM's network namespace";
	}
	/* Above every target first, so no dup2 overwrites another's source;
	 * dup2 leaves the targets without close-on-exec. */
	int rfd = fcntl(ready_fd, F_DUPFD_CLOEXEC, CONTROL_FD + 1);
	int kfd = key_fd >= 0 ? fcntl(key_fd, F_DUPFD_CLOEXEC, CONTROL_FD + 1) : -1;
	int cfd = fcntl(control_fd, F_DUPFD_CLOEXEC, CONTROL_FD + 1);
	if (rfd < 0 || (key_fd >= 0 && kfd < 0) || cfd < 0 || dup2(rfd, READY_FD) < 0 ||
	    (kfd >= 0 && dup2(kfd, KEY_FD) < 0) || dup2(cfd, CONTROL_FD) < 0)
		_exit(127);
	if (kfd < 0)
		close(KEY_FD);
	int first_closed = CONTROL_FD + 1;
	if (syscall(SYS_close_range, first_closed, ~0U, 0) < 0)
		for (int fd = first_closed; fd < max_fd; fd++)
			close(fd);
	if (!exec_err) {
		execv(path, argv);
		exec_err = errno;
	}
	size_t n = vsm_ready_error_line(exec_err, exec_text, line, sizeof(line));
	ssize_t w = write(READY_FD, line, n);
	(void)w;
	_exit(127);
}

/* The variable naming the supervisor's pid to a spawned chsm-vsmd, which
 * checks it after PR_SET_PDEATHSIG (vsmd_main.c). */
#define PARENT_PID_ENV "CHSM_VSMD_PARENT_PID"

extern char **environ;

/* A copy of the environment without PARENT_PID_ENV, with it set to
 * parent_text ("NAME=PID", which must outlive the copy); free() it. NULL
 * when out of memory. */
static char **spawn_environment(char *parent_text)
{
	size_t n = 0, k = 0, plen = strlen(PARENT_PID_ENV);
	while (environ && environ[n])
		n++;
	char **env = calloc(n + 2, sizeof(*env));
	if (!env)
		return NULL;
	for (size_t i = 0; i < n; i++)
		if (strncmp(environ[i], PARENT_PID_ENV, plen) != 0 || environ[i][plen] != '=')
			env[k++] = environ[i];
	env[k] = parent_text;
	return env;
}

/* Starts argv[0] without a fork of this multi-threaded process:
 * posix_spawn (glibc clones with CLONE_VM | CLONE_VFORK: no page tables
 * copied). The child gets stdio, ready_fd as READY_FD, key_fd (if >= 0) as
 * KEY_FD and control_fd as CONTROL_FD and nothing else, every signal at
 * its default and none blocked, a process group of its own, and
 * PARENT_PID_ENV naming this process: chsm-vsmd sets PR_SET_PDEATHSIG
 * itself and exits when its parent is not this process any more (a
 * spawned process cannot be given the flag). Returns 0 with *ret_pid, or
 * -errno (of the exec when it failed). */
static int spawn_direct(char *const argv[], int ready_fd, int key_fd, int control_fd,
			pid_t *ret_pid)
{
	static const int target[3] = {READY_FD, KEY_FD, CONTROL_FD};
	const int source[3] = {ready_fd, key_fd, control_fd};
	int copy[3] = {-1, -1, -1};
	char parent_text[sizeof(PARENT_PID_ENV) + 24];
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t all, none;
	char **env = NULL;
	pid_t pid = 0;
	int r = 0;
	snprintf(parent_text, sizeof(parent_text), "%s=%ld", PARENT_PID_ENV, (long)getpid());
	env = spawn_environment(parent_text);
	if (!env)
		return -ENOMEM;
	/* Above every target first, so no dup2 overwrites another's source. */
	for (int i = 0; i < 3; i++) {
		if (source[i] >= 0 && (copy[i] = fcntl(source[i], F_DUPFD_CLOEXEC, CONTROL_FD + 1)) < 0) {
			r = -errno;
			goto out_copies;
		}
	}
	r = -posix_spawn_file_actions_init(&fa);
	if (r < 0)
		goto out_copies;
	r = -posix_spawnattr_init(&attr);
	if (r < 0)
		goto out_fa;
	/* dup2 leaves the targets without close-on-exec; a target with no
	 * source is closed, and so is everything above CONTROL_FD. */
	for (int i = 0; i < 3 && r == 0; i++)
		r = copy[i] >= 0 ? -posix_spawn_file_actions_adddup2(&fa, copy[i], target[i]) :
				   -posix_spawn_file_actions_addclose(&fa, target[i]);
	if (r == 0)
		r = -posix_spawn_file_actions_addclosefrom_np(&fa, CONTROL_FD + 1);
	sigfillset(&all);
	sigemptyset(&none);
	if (r == 0)
		r = -posix_spawnattr_setsigdefault(&attr, &all);
	if (r == 0)
		r = -posix_spawnattr_setsigmask(&attr, &none);
	if (r == 0)
		r = -posix_spawnattr_setpgroup(&attr, 0);
	if (r == 0)
		r = -posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK |
						   POSIX_SPAWN_SETPGROUP);
	if (r == 0)
		r = -posix_spawn(&pid, argv[0], &fa, &attr, argv, env);
	posix_spawnattr_destroy(&attr);
out_fa:
	posix_spawn_file_actions_destroy(&fa);
out_copies:
	for (int i = 0; i < 3; i++)
		if (copy[i] >= 0)
			close(copy[i]);
	free(env);
	if (r == 0)
		*ret_pid = pid;
	return r;
}

/* A close-on-exec pipe already holding p's key, its write end closed:
 * returns the read end (the key is wiped from p) or -errno. */
static int key_pipe(struct vsm_proc *p)
{
	int kp[2];
	size_t done = 0;
	if (pipe2(kp, O_CLOEXEC) < 0)
		return -errno;
	/* 32 bytes fit any pipe buffer: this never blocks. */
	while (done < sizeof(p->key)) {
		ssize_t n = write(kp[1], p->key + done, sizeof(p->key) - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			int r = n < 0 ? -errno : -EIO;
			close(kp[0]);
			close(kp[1]);
			return r;
		}
		done += (size_t)n;
	}
	close(kp[1]);
	explicit_bzero(p->key, sizeof(p->key));
	return kp[0];
}

/* Fills argv (ARGV_MAX entries) with p's command line. */
static void build_argv(vsm_supervisor *s, struct vsm_proc *p, char *argv[ARGV_MAX])
{
	size_t n = 0;
	argv[n++] = p->vsmd_path ? p->vsmd_path : s->vsmd_path;
	argv[n++] = "--vsm-id";
	argv[n++] = p->id;
	argv[n++] = "--listen";
	argv[n++] = p->endpoint;
	argv[n++] = "--ready-fd";
	argv[n++] = READY_FD_TEXT;
	argv[n++] = "--control-fd";
	argv[n++] = CONTROL_FD_TEXT;
	if (p->db_path) {
		argv[n++] = "--db";
		argv[n++] = p->db_path;
	}
	if (p->has_key) {
		argv[n++] = "--key-fd";
		argv[n++] = KEY_FD_TEXT;
	}
	if (p->max_sessions[0]) {
		argv[n++] = "--max-sessions";
		argv[n++] = p->max_sessions;
	}
	if (p->max_keys[0]) {
		argv[n++] = "--max-keys";
		argv[n++] = p->max_keys;
	}
	if (p->stats_path) {
		argv[n++] = "--stats-file";
		argv[n++] = p->stats_path;
	}
	argv[n] = NULL;
}

/* Starts p's process: spawn_direct, or, to enter a network namespace
 * first (which a spawned process cannot be asked to), a fork and
 * child_exec. Called with s->lock held. Returns 0 with p->pid, p->pidfd
 * and p->ready_fd set, or -errno; sets p->exec_failed when posix_spawn
 * failed (mostly: the exec did). */
static int spawn(vsm_supervisor *s, struct vsm_proc *p)
{
	char exec_text[VSM_READY_LINE_MAX];
	char *argv[ARGV_MAX];
	int pipefd[2] = { -1, -1 }, ctl[2] = { -1, -1 }, key_fd = -1, netns_fd = -1, r;
	build_argv(s, p, argv);
	if (p->netns_path) {
		netns_fd = open(p->netns_path, O_RDONLY | O_CLOEXEC);
		if (netns_fd < 0)
			return -errno;
	}
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ctl) < 0) {
		r = -errno;
		goto fail;
	}
	snprintf(exec_text, sizeof(exec_text), "cannot execute %s", argv[0]);
	if (p->has_key) {
		key_fd = key_pipe(p);
		if (key_fd < 0) {
			r = key_fd;
			goto fail;
		}
	}
	if (pipe2(pipefd, O_CLOEXEC) < 0) {
		r = -errno;
		goto fail;
	}
	pid_t parent = getpid(), pid = -1;
	p->prev_mono_ms = chsm_monotonic_ms();
	p->has_figures = false;
	/* The child inherits this thread's affinity (--vsm-cpus). */
	cpu_set_t own;
	bool pinned = false;
	if (s->has_cpus) {
		if (sched_getaffinity(0, sizeof(own), &own) < 0 ||
		    sched_setaffinity(0, sizeof(s->cpus), &s->cpus) < 0) {
			r = -errno;
			goto fail;
		}
		pinned = true;
	}
	if (netns_fd < 0) {
		r = spawn_direct(argv, pipefd[1], key_fd, ctl[1], &pid);
		p->exec_failed = r < 0;
	} else {
		pid = fork();
		if (pid == 0)
			child_exec(argv[0], argv, pipefd[1], key_fd, ctl[1], netns_fd, parent,
				   s->max_fd, exec_text);
		r = pid < 0 ? -errno : 0;
	}
	if (pinned)
		(void)sched_setaffinity(0, sizeof(own), &own);
	if (r < 0)
		goto fail;
	close(pipefd[1]);
	pipefd[1] = -1;
	if (key_fd >= 0)
		close(key_fd);
	key_fd = -1;
	close(ctl[1]);
	ctl[1] = -1;
	if (netns_fd >= 0)
		close(netns_fd);
	netns_fd = -1;
	int pidfd = s->use_pidfd ? sys_pidfd_open(pid) : -1;
	if (s->use_pidfd && pidfd < 0) {
		r = -errno;
		kill(pid, SIGKILL);
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
		goto fail;
	}
	p->pid = pid;
	p->pidfd = pidfd;
	p->ready_fd = pipefd[0];
	p->control_fd = ctl[0];
	return 0;
fail:
	for (int i = 0; i < 2; i++)
		if (ctl[i] >= 0)
			close(ctl[i]);
	if (netns_fd >= 0)
		close(netns_fd);
	if (pipefd[0] >= 0)
		close(pipefd[0]);
	if (pipefd[1] >= 0)
		close(pipefd[1]);
	if (key_fd >= 0)
		close(key_fd);
	return r;
}

/* Reads the readiness line of a STARTING process (no lock held). On
 * anything but READY the process is killed and reaped. Returns 0 or the
 * error documented for vsm_supervisor_start. */
static int await_ready(vsm_supervisor *s, struct vsm_proc *p, char *err, size_t errlen)
{
	char buf[VSM_READY_LINE_MAX];
	size_t len = 0;
	bool eof = false, timed_out = false;
	int64_t deadline = chsm_monotonic_ms() + s->ready_ms;
	char *nl = NULL;
	while (!nl && !eof && len < sizeof(buf) - 1) {
		int64_t left = deadline - chsm_monotonic_ms();
		if (left <= 0 || !wait_readable(p->ready_fd, left)) {
			timed_out = true;
			break;
		}
		ssize_t n = read(p->ready_fd, buf + len, sizeof(buf) - 1 - len);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0) {
			eof = true;
			break;
		}
		len += (size_t)n;
		buf[len] = '\0';
		nl = memchr(buf, '\n', len);
	}
	close(p->ready_fd);
	p->ready_fd = -1;

	int code = 0, r;
	const char *text = "";
	siginfo_t info;
	char reason[REASON_MAX];
	/* A full buffer without a newline is as malformed as a bad line. */
	bool malformed = !nl && !eof && !timed_out;
	if (nl) {
		*nl = '\0';
		if (vsm_ready_parse(buf, &code, &text) < 0)
			malformed = true;
		else if (code == 0)
			return 0;
	}
	if (timed_out) {
		r = terminate_and_reap(p, SIGKILL, 0, &info);
		set_err(err, errlen, "VSM process not ready within %lld s; killed",
			(long long)(s->ready_ms / 1000));
		return r < 0 ? r : -ETIMEDOUT;
	}
	if (malformed) {
		r = terminate_and_reap(p, SIGKILL, 0, &info);
		set_err(err, errlen, "VSM process sent a malformed readiness line; killed");
		return r < 0 ? r : -EPROTO;
	}
	r = terminate_and_reap(p, 0, s->failed_grace_ms, &info);
	if (r < 0) {
		set_err(err, errlen, "cannot reap VSM process: %s", strerror(-r));
		return r;
	}
	if (nl) {
		set_err(err, errlen, "%s: %s", text, strerror(-code));
		return code;
	}
	describe_exit(&info, reason, sizeof(reason));
	set_err(err, errlen, "VSM process %s before it was ready", reason);
	return -EIO;
}

/* Spawns every pending process; called with s->lock held. */
static void spawn_pending(vsm_supervisor *s)
{
	bool any = false;
	for (struct vsm_proc *p = s->procs; p; p = p->next) {
		if (p->state != PROC_SPAWN_PENDING)
			continue;
		p->spawn_err = spawn(s, p);
		p->state = PROC_STARTING;
		any = true;
	}
	if (any)
		pthread_cond_broadcast(&s->cond);
}

/* Reaps p if it is running, was not asked to stop, and has exited; then
 * fills *ev and frees p. Called with s->lock held; true when it did. */
static bool reap_exited(vsm_supervisor *s, struct vsm_proc *p, struct exit_event *ev)
{
	siginfo_t info;
	if (!p || p->state != PROC_RUNNING || p->stopping || proc_wait(p, WNOHANG, &info) < 0 ||
	    info.si_pid == 0)
		return false;
	memcpy(ev->id, p->id, sizeof(p->id));
	describe_exit(&info, ev->reason, sizeof(ev->reason));
	unlink_proc(s, p);
	free_proc(p);
	return true;
}

/* Reaps the running processes that exited and were not asked to stop:
 * those whose pidfd fired, or without pidfds every one that exited; called
 * with s->lock held. Returns how many events it filled. */
static size_t collect_exits(vsm_supervisor *s, size_t npfds, struct exit_event *events)
{
	size_t nevents = 0;
	if (!s->use_pidfd) {
		struct vsm_proc *next;
		for (struct vsm_proc *p = s->procs; p && nevents < MAX_EXITS_PER_ROUND; p = next) {
			next = p->next;
			if (reap_exited(s, p, &events[nevents]))
				nevents++;
		}
		return nevents;
	}
	for (size_t i = 1; i < npfds && nevents < MAX_EXITS_PER_ROUND; i++)
		if (s->pfds[i].revents &&
		    reap_exited(s, find_pid(s, s->pfd_pids[i]), &events[nevents]))
			nevents++;
	return nevents;
}

static void *monitor_main(void *arg)
{
	vsm_supervisor *s = arg;
	struct exit_event events[MAX_EXITS_PER_ROUND];
	sigset_t all;
	/* Signals are the daemon's business, not this thread's. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);

	pthread_mutex_lock(&s->lock);
	for (;;) {
		spawn_pending(s);
		if (s->quit)
			break;
		size_t n = 1;
		bool watched = false;
		s->pfds[0] = (struct pollfd){ .fd = s->wake_fd, .events = POLLIN };
		for (struct vsm_proc *p = s->procs; p; p = p->next) {
			if (p->state != PROC_RUNNING || p->stopping)
				continue;
			watched = true;
			if (p->pidfd < 0)
				continue;
			s->pfds[n] = (struct pollfd){ .fd = p->pidfd, .events = POLLIN };
			s->pfd_pids[n] = p->pid;
			n++;
		}
		s->poll_gen++;
		pthread_cond_broadcast(&s->cond);
		pthread_mutex_unlock(&s->lock);

		/* Without pidfds, the running processes are looked at on a timer. */
		int rc = poll(s->pfds, n, !s->use_pidfd && watched ? NOPIDFD_POLL_MS : -1);
		if (rc > 0 && s->pfds[0].revents) {
			uint64_t count;
			ssize_t got = read(s->wake_fd, &count, sizeof(count));
			(void)got;
		}

		pthread_mutex_lock(&s->lock);
		size_t nevents = rc > 0 || (rc == 0 && !s->use_pidfd) ? collect_exits(s, n, events) : 0;
		if (nevents && s->on_exit) {
			pthread_mutex_unlock(&s->lock);
			for (size_t i = 0; i < nevents; i++)
				s->on_exit(s->ctx, events[i].id, events[i].reason);
			pthread_mutex_lock(&s->lock);
		}
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

int vsm_supervisor_new(const char *vsmd_path, vsm_exit_fn on_unexpected_exit, void *ctx,
		       vsm_supervisor **ret_sup)
{
	if (!vsmd_path || !*vsmd_path)
		return -EINVAL;
	int r = -ENOMEM;
	vsm_supervisor *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->cond, NULL);
	s->wake_fd = -1;
	s->on_exit = on_unexpected_exit;
	s->ctx = ctx;
	s->clk_tck = sysconf(_SC_CLK_TCK);
	s->page_size = sysconf(_SC_PAGESIZE);
	struct rlimit rl;
	s->max_fd = 65536;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)s->max_fd)
		s->max_fd = (int)rl.rlim_cur;
	s->use_pidfd = pidfd_usable();
	s->ready_ms = CHSM_VSM_READY_TIMEOUT_SECONDS * 1000LL * vsm_wait_scale();
	s->grace_ms = CHSM_VSM_STOP_GRACE_SECONDS * 1000LL * vsm_wait_scale();
	s->failed_grace_ms = FAILED_EXIT_GRACE_MS * vsm_wait_scale();
	s->vsmd_path = strdup(vsmd_path);
	s->pfds = calloc(CHSM_MAX_VSMS_CEILING + 1, sizeof(*s->pfds));
	s->pfd_pids = calloc(CHSM_MAX_VSMS_CEILING + 1, sizeof(*s->pfd_pids));
	if (!s->vsmd_path || !s->pfds || !s->pfd_pids)
		goto fail;
	s->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (s->wake_fd < 0) {
		r = -errno;
		goto fail;
	}
	r = -pthread_create(&s->monitor, NULL, monitor_main, s);
	if (r < 0)
		goto fail;
	s->monitor_started = true;
	*ret_sup = s;
	return 0;
fail:
	vsm_supervisor_free(s);
	return r;
}

/* Parses a CPU list (vsm_cpus_check) into *ret. */
static int parse_cpus(const char *list, cpu_set_t *ret, char *err, size_t errlen)
{
	cpu_set_t allowed, set;
	const char *p = list;
	CPU_ZERO(&set);
	if (sched_getaffinity(0, sizeof(allowed), &allowed) < 0)
		CPU_ZERO(&allowed);
	if (!*p) {
		set_err(err, errlen, "empty CPU list");
		return -EINVAL;
	}
	while (*p) {
		unsigned long lo, hi;
		char *end;
		if (*p < '0' || *p > '9' || (lo = strtoul(p, &end, 10)) >= CPU_SETSIZE)
			goto bad;
		hi = lo;
		if (*end == '-') {
			p = end + 1;
			if (*p < '0' || *p > '9' || (hi = strtoul(p, &end, 10)) >= CPU_SETSIZE ||
			    hi < lo)
				goto bad;
		}
		for (unsigned long c = lo; c <= hi; c++) {
			if (!CPU_ISSET(c, &allowed)) {
				set_err(err, errlen, "CPU %lu in \"%s\" is not one this process may run on",
					c, list);
				return -EINVAL;
			}
			CPU_SET(c, &set);
		}
		if (*end == ',' && end[1])
			end++;
		else if (*end)
			goto bad;
		p = end;
	}
	*ret = set;
	return 0;
bad:
	set_err(err, errlen, "invalid CPU list \"%s\" (want e.g. 0,2-3)", list);
	return -EINVAL;
}

int vsm_cpus_check(const char *list, char *err, size_t errlen)
{
	cpu_set_t set;
	return parse_cpus(list, &set, err, errlen);
}

int vsm_supervisor_set_cpus(vsm_supervisor *s, const char *list, char *err, size_t errlen)
{
	cpu_set_t set;
	if (list && parse_cpus(list, &set, err, errlen) < 0)
		return -EINVAL;
	pthread_mutex_lock(&s->lock);
	s->has_cpus = list != NULL;
	if (list)
		s->cpus = set;
	pthread_mutex_unlock(&s->lock);
	return 0;
}

/* Checks the options other than id and endpoint; a message into err. */
static int check_options(const struct vsm_start_options *o, char *err, size_t errlen)
{
	if ((o->key && o->key_len != VSM_KEY_LEN) || (!o->key && o->key_len)) {
		set_err(err, errlen, "invalid VSM key");
		return -EINVAL;
	}
	if (o->max_sessions < 0 || o->max_keys < 0) {
		set_err(err, errlen, "invalid limit");
		return -EINVAL;
	}
	if ((o->db_path && (!*o->db_path || strlen(o->db_path) >= PATH_MAX)) ||
	    (o->stats_path && (!*o->stats_path || strlen(o->stats_path) >= PATH_MAX)) ||
	    (o->netns_path && (!*o->netns_path || strlen(o->netns_path) >= PATH_MAX)) ||
	    (o->vsmd_path && (!*o->vsmd_path || strlen(o->vsmd_path) >= PATH_MAX))) {
		set_err(err, errlen, "invalid path");
		return -EINVAL;
	}
	return 0;
}

/* Copies what o gives the process into p. */
static int fill_proc(struct vsm_proc *p, const struct vsm_start_options *o)
{
	if (o->db_path && !(p->db_path = strdup(o->db_path)))
		return -ENOMEM;
	if (o->stats_path && !(p->stats_path = strdup(o->stats_path)))
		return -ENOMEM;
	if (o->netns_path && !(p->netns_path = strdup(o->netns_path)))
		return -ENOMEM;
	if (o->vsmd_path && !(p->vsmd_path = strdup(o->vsmd_path)))
		return -ENOMEM;
	if (o->max_sessions > 0)
		snprintf(p->max_sessions, sizeof(p->max_sessions), "%d", o->max_sessions);
	if (o->max_keys > 0)
		snprintf(p->max_keys, sizeof(p->max_keys), "%d", o->max_keys);
	if (o->key) {
		memcpy(p->key, o->key, VSM_KEY_LEN);
		p->has_key = true;
	}
	return 0;
}

int vsm_supervisor_start(vsm_supervisor *s, const struct vsm_start_options *o)
{
	char endpoint[VSM_ENDPOINT_MAX_LEN];
	int r;
	if (!o)
		return -EINVAL;
	const char *vsm_id = o->vsm_id;
	char *err = o->err;
	size_t errlen = o->errlen;
	if (!vsm_id_valid(vsm_id)) {
		set_err(err, errlen, "invalid VSM id");
		return -EINVAL;
	}
	if (vsm_endpoint_format(o->ip, o->port, endpoint, sizeof(endpoint)) < 0) {
		set_err(err, errlen, "invalid address or port");
		return -EINVAL;
	}
	r = check_options(o, err, errlen);
	if (r < 0)
		return r;

	pthread_mutex_lock(&s->lock);
	struct vsm_proc *p = find_id(s, vsm_id);
	if (p) {
		r = p->state == PROC_RUNNING && !p->stopping ? -EALREADY : -EBUSY;
		pthread_mutex_unlock(&s->lock);
		set_err(err, errlen, r == -EALREADY ? "VSM %s already runs" :
			"VSM %s is being started or stopped", vsm_id);
		return r;
	}
	if (s->nprocs >= CHSM_MAX_VSMS_CEILING) {
		pthread_mutex_unlock(&s->lock);
		set_err(err, errlen, "too many VSM processes");
		return -ENOSPC;
	}
	p = calloc(1, sizeof(*p));
	if (!p || fill_proc(p, o) < 0) {
		pthread_mutex_unlock(&s->lock);
		free_proc(p);
		set_err(err, errlen, "out of memory");
		return -ENOMEM;
	}
	strcpy(p->id, vsm_id);
	strcpy(p->endpoint, endpoint);
	p->state = PROC_SPAWN_PENDING;
	p->pidfd = p->ready_fd = p->control_fd = -1;
	p->pid = -1;
	p->serial = ++s->next_serial;
	p->next = s->procs;
	s->procs = p;
	s->nprocs++;
	if (in_monitor(s)) {
		spawn_pending(s);
	} else {
		wake_monitor(s);
		while (p->state == PROC_SPAWN_PENDING)
			pthread_cond_wait(&s->cond, &s->lock);
	}
	r = p->spawn_err;
	pthread_mutex_unlock(&s->lock);

	if (r < 0 && p->exec_failed)
		set_err(err, errlen, "cannot execute %s: %s",
			p->vsmd_path ? p->vsmd_path : s->vsmd_path, strerror(-r));
	else if (r < 0)
		set_err(err, errlen, "cannot start VSM process: %s", strerror(-r));
	else
		r = await_ready(s, p, err, errlen);

	pthread_mutex_lock(&s->lock);
	if (r == 0) {
		p->state = PROC_RUNNING;
		p->started_ms = chsm_now_ms();
		wake_monitor(s);
		p = NULL;
	} else {
		unlink_proc(s, p);
	}
	pthread_mutex_unlock(&s->lock);
	free_proc(p);
	return r;
}

/* Reads the answer to move request seq from fd for timeout_ms: 0, the
 * reported error, -ETIMEDOUT or -EIO. */
static int await_move_answer(int fd, uint32_t seq, int64_t timeout_ms, char *err, size_t errlen)
{
	char buf[CONTROL_MSG_MAX + 1];
	int64_t deadline = chsm_monotonic_ms() + timeout_ms;
	for (;;) {
		int64_t left = deadline - chsm_monotonic_ms();
		if (left <= 0 || !wait_readable(fd, left)) {
			set_err(err, errlen, "VSM process did not answer the move within %lld s",
				(long long)(timeout_ms / 1000));
			return -ETIMEDOUT;
		}
		ssize_t n = recv(fd, buf, CONTROL_MSG_MAX, MSG_DONTWAIT);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0) {
			set_err(err, errlen, "VSM process went away during the move");
			return -EIO;
		}
		buf[n] = '\0';
		char *nl = memchr(buf, '\n', (size_t)n), *sp = strchr(buf, ' ');
		uint64_t got;
		if (!nl || !sp || sp > nl)
			continue;
		*nl = '\0';
		*sp = '\0';
		/* An answer to an earlier request that timed out is skipped. */
		if (chsm_parse_u64(buf, UINT32_MAX, &got) < 0 || got != seq)
			continue;
		int code = 0;
		const char *text = "";
		if (vsm_ready_parse(sp + 1, &code, &text) < 0) {
			set_err(err, errlen, "VSM process sent a malformed answer to the move");
			return -EPROTO;
		}
		if (code < 0)
			set_err(err, errlen, "%s: %s", text, strerror(-code));
		return code;
	}
}

int vsm_supervisor_move(vsm_supervisor *s, const char *vsm_id, const char *ip, int port,
			char *err, size_t errlen)
{
	char endpoint[VSM_ENDPOINT_MAX_LEN], msg[CONTROL_MSG_MAX];
	if (!vsm_id || vsm_endpoint_format(ip, port, endpoint, sizeof(endpoint)) < 0) {
		set_err(err, errlen, "invalid address or port");
		return -EINVAL;
	}
	pthread_mutex_lock(&s->lock);
	struct vsm_proc *p = find_id(s, vsm_id);
	if (!p || p->state != PROC_RUNNING || p->stopping || p->control_fd < 0) {
		pthread_mutex_unlock(&s->lock);
		set_err(err, errlen, "VSM %s does not run", vsm_id);
		return -ENOENT;
	}
	/* A copy: a concurrent stop may free p (and close its descriptor). */
	int fd = fcntl(p->control_fd, F_DUPFD_CLOEXEC, 0);
	uint32_t seq = ++p->move_seq;
	uint64_t serial = p->serial;
	pthread_mutex_unlock(&s->lock);
	if (fd < 0) {
		set_err(err, errlen, "cannot reach VSM process: %s", strerror(errno));
		return -errno;
	}
	int n = snprintf(msg, sizeof(msg), "LISTEN %u %s\n", (unsigned)seq, endpoint);
	int r = 0;
	if (send(fd, msg, (size_t)n, MSG_NOSIGNAL) != n) {
		set_err(err, errlen, "cannot reach VSM process: %s", strerror(errno));
		r = -EIO;
	} else {
		r = await_move_answer(fd, seq, s->ready_ms, err, errlen);
	}
	close(fd);
	if (r == 0) {
		pthread_mutex_lock(&s->lock);
		p = find_id(s, vsm_id);
		if (p && p->serial == serial)
			strcpy(p->endpoint, endpoint);
		pthread_mutex_unlock(&s->lock);
	}
	return r;
}

int vsm_supervisor_stop(vsm_supervisor *s, const char *vsm_id)
{
	int r;
	if (!vsm_id)
		return -EINVAL;
	pthread_mutex_lock(&s->lock);
	struct vsm_proc *p = find_id(s, vsm_id);
	if (!p || p->state != PROC_RUNNING) {
		r = p ? -EBUSY : -ENOENT;
		goto out;
	}
	if (p->stopping) {
		/* Another call stops it: wait until it is gone. */
		uint64_t serial = p->serial;
		while ((p = find_id(s, vsm_id)) && p->serial == serial)
			pthread_cond_wait(&s->cond, &s->lock);
		r = 0;
		goto out;
	}
	p->stopping = true;
	uint64_t gen = s->poll_gen;
	wake_monitor(s);
	pthread_mutex_unlock(&s->lock);

	siginfo_t info;
	r = terminate_and_reap(p, SIGTERM, s->grace_ms, &info);

	pthread_mutex_lock(&s->lock);
	/* The monitor must stop polling the pidfd before it is closed. */
	if (!in_monitor(s))
		while (s->poll_gen == gen)
			pthread_cond_wait(&s->cond, &s->lock);
	unlink_proc(s, p);
	free_proc(p);
	pthread_cond_broadcast(&s->cond);
out:
	pthread_mutex_unlock(&s->lock);
	return r;
}

bool vsm_supervisor_running(vsm_supervisor *s, const char *vsm_id, int *ret_pid,
			    int64_t *ret_started_ms)
{
	if (!vsm_id)
		return false;
	pthread_mutex_lock(&s->lock);
	struct vsm_proc *p = find_id(s, vsm_id);
	bool running = p && p->state == PROC_RUNNING && !p->stopping;
	if (running) {
		if (ret_pid)
			*ret_pid = p->pid;
		if (ret_started_ms)
			*ret_started_ms = p->started_ms;
	}
	pthread_mutex_unlock(&s->lock);
	return running;
}

/* Reads /proc/<pid>/<name> into buf (NUL-terminated). Returns 0 or -errno. */
static int read_proc(pid_t pid, const char *name, char *buf, size_t cap)
{
	char path[64];
	size_t len = 0;
	int r = 0;
	snprintf(path, sizeof(path), "/proc/%ld/%s", (long)pid, name);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	while (len < cap - 1) {
		ssize_t n = read(fd, buf + len, cap - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			r = -errno;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	close(fd);
	return r;
}

/* Parses the idx-th (from 0) space-separated field of s as a number.
 * Returns 0 or -EIO. */
static int field_u64(const char *s, int idx, uint64_t *ret)
{
	char tok[32];
	for (int i = 0;; i++) {
		while (*s == ' ' || *s == '\t')
			s++;
		size_t n = strcspn(s, " \t\n");
		if (n == 0)
			return -EIO;
		if (i == idx) {
			if (n >= sizeof(tok))
				return -EIO;
			memcpy(tok, s, n);
			tok[n] = '\0';
			return chsm_parse_u64(tok, UINT64_MAX, ret) < 0 ? -EIO : 0;
		}
		s += n;
	}
}

/* CPU ticks (user + system) and resident set of pid, from /proc/PID/stat
 * alone: its rss field is the resident figure of statm, so one file is
 * read, not two (the proportional set, from smaps_rollup, walks every
 * mapping: about 2 ms a process on a loaded host, for each VSM of a 7.2.3
 * answer). */
static int read_proc_figures(vsm_supervisor *s, pid_t pid, uint64_t *ret_ticks,
			     uint64_t *ret_rss)
{
	char buf[4096];
	uint64_t utime, stime, resident;
	int r = read_proc(pid, "stat", buf, sizeof(buf));
	if (r < 0)
		return r;
	/* Fields after the command name, which may itself hold ") ": state is
	 * field 0 here, utime 11, stime 12 and rss 21 (proc(5) fields 14, 15
	 * and 24). */
	const char *rest = strrchr(buf, ')');
	if (!rest || field_u64(rest + 1, 11, &utime) < 0 || field_u64(rest + 1, 12, &stime) < 0 ||
	    field_u64(rest + 1, 21, &resident) < 0)
		return -EIO;
	*ret_ticks = utime + stime;
	*ret_rss = resident * (uint64_t)s->page_size;
	return 0;
}

/* vsm_supervisor_stats for p, under s->lock. */
static int proc_stats_locked(vsm_supervisor *s, struct vsm_proc *p, struct vsm_proc_stats *ret)
{
	uint64_t ticks, rss;
	/* Only the monitor reaps a RUNNING, non-stopping process, and it needs
	 * the lock to: the pid cannot be recycled while this reads /proc. */
	if (!p || p->state != PROC_RUNNING || p->stopping)
		return -ENOENT;
	int64_t now = chsm_monotonic_ms();
	/* A 7.2.3 answer asks for every VSM: /proc is read at most once per
	 * VSM_STATS_SAMPLE_MS, and the CPU figure covers that long at least. */
	if (p->has_figures && now - p->prev_mono_ms < VSM_STATS_SAMPLE_MS) {
		*ret = p->figures;
		return 0;
	}
	int r = read_proc_figures(s, p->pid, &ticks, &rss);
	if (r < 0)
		return r;
	int64_t interval = now - p->prev_mono_ms;
	double cpu = 0.0;
	if (interval > 0 && ticks >= p->prev_ticks && s->clk_tck > 0)
		cpu = (double)(ticks - p->prev_ticks) * 1000.0 / (double)s->clk_tck /
		      (double)interval * 100.0;
	p->prev_ticks = ticks;
	p->prev_mono_ms = now;
	p->figures = (struct vsm_proc_stats){.cpu_percent = cpu, .rss_bytes = rss};
	p->has_figures = true;
	*ret = p->figures;
	return 0;
}

int vsm_supervisor_stats(vsm_supervisor *s, const char *vsm_id, struct vsm_proc_stats *ret)
{
	if (!vsm_id)
		return -EINVAL;
	pthread_mutex_lock(&s->lock);
	int r = proc_stats_locked(s, find_id(s, vsm_id), ret);
	pthread_mutex_unlock(&s->lock);
	return r;
}

/* One VSM's view, under s->lock. */
static void view_locked(vsm_supervisor *s, struct vsm_proc *p, struct vsm_proc_view *ret)
{
	*ret = (struct vsm_proc_view){0};
	if (!p || p->state != PROC_RUNNING || p->stopping)
		return;
	ret->running = true;
	ret->pid = p->pid;
	ret->started_ms = p->started_ms;
	ret->has_stats = proc_stats_locked(s, p, &ret->stats) == 0;
}

void vsm_supervisor_view(vsm_supervisor *s, const char *const *ids, size_t n,
			 struct vsm_proc_view *ret)
{
	bool sorted = true;
	for (size_t i = 1; i < n && sorted; i++)
		sorted = strcmp(ids[i - 1], ids[i]) < 0;
	/* Which ids met their process: find_id's is the first in the list. */
	bool *seen = sorted && n ? calloc(n, sizeof(*seen)) : NULL;
	pthread_mutex_lock(&s->lock);
	if (!seen) {
		for (size_t i = 0; i < n; i++)
			view_locked(s, find_id(s, ids[i]), &ret[i]);
		pthread_mutex_unlock(&s->lock);
		return;
	}
	/* One pass over the processes, each placed by binary search. */
	for (size_t i = 0; i < n; i++)
		ret[i] = (struct vsm_proc_view){0};
	for (struct vsm_proc *p = s->procs; p; p = p->next) {
		size_t lo = 0, hi = n;
		while (lo < hi) {
			size_t mid = lo + (hi - lo) / 2;
			int cmp = strcmp(p->id, ids[mid]);
			if (cmp == 0) {
				if (!seen[mid])
					view_locked(s, p, &ret[mid]);
				seen[mid] = true;
				break;
			}
			if (cmp < 0)
				hi = mid;
			else
				lo = mid + 1;
		}
	}
	pthread_mutex_unlock(&s->lock);
	free(seen);
}

bool vsm_supervisor_uses_pidfd(const vsm_supervisor *s)
{
	return s->use_pidfd;
}

void vsm_supervisor_free(vsm_supervisor *s)
{
	if (!s)
		return;
	if (s->monitor_started) {
		for (;;) {
			char id[CHSM_VSM_ID_MAX_LEN + 1] = "";
			pthread_mutex_lock(&s->lock);
			for (struct vsm_proc *p = s->procs; p; p = p->next) {
				if (p->state == PROC_RUNNING && !p->stopping) {
					strcpy(id, p->id);
					break;
				}
			}
			pthread_mutex_unlock(&s->lock);
			if (!id[0])
				break;
			vsm_supervisor_stop(s, id);
		}
		pthread_mutex_lock(&s->lock);
		s->quit = true;
		wake_monitor(s);
		pthread_mutex_unlock(&s->lock);
		pthread_join(s->monitor, NULL);
	}
	while (s->procs) {
		struct vsm_proc *p = s->procs;
		s->procs = p->next;
		free_proc(p);
	}
	if (s->wake_fd >= 0)
		close(s->wake_fd);
	pthread_cond_destroy(&s->cond);
	pthread_mutex_destroy(&s->lock);
	free(s->pfds);
	free(s->pfd_pids);
	free(s->vsmd_path);
	free(s);
}
