/*
 * supervisor.h: runs one chsm-vsmd process per running VSM and watches them.
 *
 * Guarantees:
 *  - A VSM process starts by fork+exec of vsmd_path (or the start's own
 *    vsmd_path) with only stdin, stdout,
 *    stderr, its readiness pipe (as fd 3) and, when given a key, the pipe
 *    holding that key (as fd 4); every other descriptor is closed before
 *    exec. The key travels only through that pipe, never in argv or the
 *    environment, and the supervisor's copy is wiped once it is written. Its signal mask and ignored signals are reset, it
 *    gets its own process group (terminal signals go to the daemon, which
 *    stops VSMs in order), and PR_SET_PDEATHSIG(SIGTERM) is set before exec,
 *    so it dies with the daemon. The fork happens on the supervisor's own
 *    monitor thread: PDEATHSIG follows the forking *thread*, and that
 *    thread lives as long as the supervisor.
 *  - An exit that nobody asked for is reported through on_unexpected_exit
 *    within milliseconds (the monitor thread polls a pidfd per VSM; 100 ms
 *    without pidfds, below), from
 *    the monitor thread, without any supervisor lock held. By then the VSM
 *    no longer counts as running, so the callback may call
 *    vsm_supervisor_start() (and any other function here). It is never
 *    called for a VSM stopped through vsm_supervisor_stop() or
 *    vsm_supervisor_free(). Keep it short: while it runs, no other exit is
 *    noticed and no VSM can be spawned.
 *  - Only the supervisor's own children are reaped (waitid on their pidfd),
 *    so the daemon may have other children. Signals go through pidfds, so a
 *    recycled pid is never signalled.
 *  - Without pidfds (pidfd_open answers ENOSYS, as under Valgrind 3.19,
 *    which does not implement it), the same guarantees hold by other means:
 *    the monitor looks at each running VSM with waitid(P_PID, WNOHANG)
 *    every 100 ms, and signals go through kill() only from the one thread
 *    that reaps that process, before it reaps it, so never to a reused pid.
 *    The environment variable CHSM_TEST_NO_PIDFD=1, read by
 *    vsm_supervisor_new, forces this fallback; it exists for the tests
 *    only (tests/vsm: test_vsm_supervisor_nopidfd).
 *  - Every VSM process gets a control socket (SOCK_SEQPACKET, as fd 5,
 *    --control-fd 5) through which vsm_supervisor_move asks it to move
 *    its listener (docs/vsm.md, "Moving a running VSM").
 *  - With netns_path, the child joins that network namespace before exec;
 *    if it cannot, the start fails with the setns error.
 *  - Under Valgrind (RUNNING_ON_VALGRIND, where the build has
 *    <valgrind/valgrind.h>), the waits for a process's readiness, for its
 *    answer to a move and for its exit after SIGTERM or a start error are
 *    10 times longer: chsm-vsmd then runs under Valgrind too, tens of times
 *    slower. Elsewhere they are the constants of common/limits.h.
 *  - All functions are thread-safe, except vsm_supervisor_free, which must
 *    not race with other calls on the same supervisor.
 *
 * Requires Linux >= 5.4 (pidfd_open, waitid(P_PIDFD); the fallback needs
 * neither), and that the daemon
 * does not set SIGCHLD to SIG_IGN (its children would reap themselves).
 * Never logs.
 */
#ifndef CHSM_VSM_SUPERVISOR_H
#define CHSM_VSM_SUPERVISOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct vsm_supervisor vsm_supervisor;

/* Called from the monitor thread when a VSM process exits without having
 * been asked to stop. reason is a short text: "exited with status 3",
 * "killed by signal 9" or "killed by signal 11 (core dumped)". */
typedef void (*vsm_exit_fn)(void *ctx, const char *vsm_id, const char *reason);

/* Creates a supervisor that runs vsmd_path (copied) and starts its monitor
 * thread. on_unexpected_exit may be NULL. Returns 0, -EINVAL, -ENOMEM, or
 * -errno from eventfd/pthread_create. */
int vsm_supervisor_new(const char *vsmd_path, vsm_exit_fn on_unexpected_exit, void *ctx,
		       vsm_supervisor **ret_sup);

/* Checks a CPU list as `chsmd run --vsm-cpus` takes it: comma-separated
 * CPU numbers and ranges ("0", "2-3", "0,2-3"), each CPU below 1024 and
 * one this process may run on (sched_getaffinity). Returns 0, or -EINVAL
 * with a message for the operator in err (may be NULL). */
int vsm_cpus_check(const char *list, char *err, size_t errlen);

/* Pins every VSM process started from now on to the CPUs of list (as
 * vsm_cpus_check): the monitor thread runs on them while it spawns or
 * forks, so the process and every thread it makes have that affinity from
 * its first instruction (sched_setaffinity; an exec keeps it). NULL: VSMs
 * inherit the daemon's affinity again. Returns 0 or -EINVAL (list
 * invalid; nothing changes), with err as vsm_cpus_check. */
int vsm_supervisor_set_cpus(vsm_supervisor *s, const char *list, char *err, size_t errlen);

/* What a VSM process is started with. */
struct vsm_start_options {
	const char *vsm_id;
	const char *ip;           /* an IPv4 or IPv6 literal */
	int port;
	const char *db_path;      /* the database, passed as --db; NULL: none */
	const uint8_t *key;       /* the VSM's store subkey (secret), passed through
	                           * a pipe as --key-fd 4; NULL: none */
	size_t key_len;           /* VSM_KEY_LEN when key is set */
	int max_sessions;         /* --max-sessions; 0: not passed */
	int max_keys;             /* --max-keys; 0: not passed */
	const char *stats_path;   /* --stats-file; NULL: none */
	const char *netns_path;   /* a network namespace file (e.g. /run/netns/X)
	                           * the process runs in: the child joins it with
	                           * setns before exec; NULL: the daemon's own */
	const char *vsmd_path;    /* the program to run; NULL: the supervisor's
	                           * vsmd_path (VSM upgrades, docs/vsm.md) */
	char *err;                /* may be NULL */
	size_t errlen;
};
#define VSM_KEY_LEN 32

/* Starts the VSM's process listening on o->ip:o->port with the rest of o
 * and waits up to CHSM_VSM_READY_TIMEOUT_SECONDS for READY. The key is
 * not kept. Returns 0; -EINVAL for a bad id, ip or port, a key not
 * VSM_KEY_LEN long, a negative limit, or a path of PATH_MAX or more; -EALREADY if it runs;
 * -EBUSY while another call starts or stops it; -ENOSPC beyond
 * CHSM_MAX_VSMS_CEILING processes; the bind error the process reported
 * (-EADDRINUSE, -EADDRNOTAVAIL, -EACCES, ...); the exec error (-ENOENT,
 * -EACCES, ...); -ETIMEDOUT (the process was killed); -EPROTO if it wrote
 * anything but a readiness line (it is killed); -EIO if it exited
 * without a word; or another -errno. On failure no process is left and
 * o->err receives a short human message; it is untouched on success. */
int vsm_supervisor_start(vsm_supervisor *s, const struct vsm_start_options *o);

/* Asks the running VSM's process to listen on ip:port instead of its
 * current endpoint: it binds the new address first and closes the old
 * listener only once the new one listens; sessions already open go on.
 * Waits up to CHSM_VSM_READY_TIMEOUT_SECONDS for the answer. Returns 0;
 * -EINVAL for a bad ip or port; -ENOENT if it does not run (or is being
 * started or stopped); the bind error it reported (-EADDRINUSE,
 * -EADDRNOTAVAIL, -EACCES, ...), in which case it still listens where it
 * did; -ETIMEDOUT; -EIO if it went away. err (may be NULL) receives a
 * short message on failure. */
int vsm_supervisor_move(vsm_supervisor *s, const char *vsm_id, const char *ip, int port,
			char *err, size_t errlen);

/* Stops the VSM's process: SIGTERM, up to CHSM_VSM_STOP_GRACE_SECONDS for
 * it to exit, then SIGKILL, and waits for the exit. Not reported to
 * on_unexpected_exit. Returns 0 (also when another call was already
 * stopping it and it has now exited), -ENOENT if it does not run, -EBUSY
 * while it is still starting, or -errno. */
int vsm_supervisor_stop(vsm_supervisor *s, const char *vsm_id);

/* True when the VSM's process is up (READY seen) and not being stopped;
 * then sets *ret_pid and *ret_started_ms (Unix ms of READY) if non-NULL. */
bool vsm_supervisor_running(vsm_supervisor *s, const char *vsm_id, int *ret_pid,
			    int64_t *ret_started_ms);

struct vsm_proc_stats {
	double cpu_percent; /* of one core, since the previous reading (or start) */
	uint64_t rss_bytes; /* resident set */
};

/* Milliseconds the figures of vsm_supervisor_stats are reused before /proc
 * is read again (a 7.2.3 answer asks for every VSM). */
#define VSM_STATS_SAMPLE_MS 1000

/* The running VSM's figures into *ret: read from /proc, or the last ones
 * when they are younger than VSM_STATS_SAMPLE_MS. A reading restarts the
 * CPU measurement interval. Returns 0, -ENOENT if it does not run, or
 * -EIO/-errno when /proc could not be read. */
int vsm_supervisor_stats(vsm_supervisor *s, const char *vsm_id, struct vsm_proc_stats *ret);

/* What vsm_supervisor_running and vsm_supervisor_stats say of one VSM. */
struct vsm_proc_view {
	bool running;        /* as vsm_supervisor_running */
	int pid;             /* the rest only when running */
	int64_t started_ms;
	bool has_stats;      /* vsm_supervisor_stats returned 0 */
	struct vsm_proc_stats stats;
};

/* For each of the n VSMs ids[i], into ret[i] what vsm_supervisor_running
 * and then vsm_supervisor_stats (when running) give, under one hold of
 * the lock: for a 7.2.3 answer over every VSM. Fastest when ids is sorted
 * ascending (strcmp), as the store lists VSMs. */
void vsm_supervisor_view(vsm_supervisor *s, const char *const *ids, size_t n,
			 struct vsm_proc_view *ret);

/* Whether s watches its processes through pidfds (false: the fallback
 * without them, above). */
bool vsm_supervisor_uses_pidfd(const vsm_supervisor *s);

/* Stops every VSM (as vsm_supervisor_stop), joins the monitor thread and
 * frees everything. Accepts NULL. */
void vsm_supervisor_free(vsm_supervisor *s);

#endif
