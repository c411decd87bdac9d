/*
 * launcher.c: `chsmd run` (see launcher.h). One thread, no state of its
 * own beyond the records of boot.h: a launcher that dies loses nothing,
 * and the next one rolls back an unfinished trial.
 */
#include "chsmd/launcher.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "chsmd/boot.h"
#include "chsmd/device.h"
#include "common/log.h"
#include "common/util.h"
#include "http/server.h"

/* Extra arguments the launcher adds to the run options for serve. */
#define LAUNCHER_EXTRA_ARGS 12

enum want { WANT_NONE, WANT_RESTART, WANT_UPGRADE };

struct launcher {
	const struct launcher_options *o;
	char self[PATH_MAX];                      /* the launcher's executable */
	int lock_fd, listen_fd, sig_fd;
	pid_t child;                              /* -1: none */
	int ctrl;                                 /* our end of its socket */
	char version[PKG_VERSION_MAX_LEN + 1];    /* what runs; "": self */
	bool trial;
	struct boot_trial tr;
	int64_t deadline_ms;                      /* of the trial */
	enum want want;
	char want_version[PKG_VERSION_MAX_LEN + 1];
	bool terminating;
	int64_t kill_at_ms;
};

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

static const char *label(const char *version)
{
	return version[0] ? version : "launcher";
}

/* Takes the state dir's lock, waiting up to LAUNCHER_LOCK_WAIT_MS. */
static int take_lock(const char *state_dir, int *ret_fd)
{
	int64_t until = chsm_monotonic_ms() + LAUNCHER_LOCK_WAIT_MS;
	int r;
	while ((r = device_lock(state_dir, ret_fd)) == -EBUSY && chsm_monotonic_ms() < until)
		sleep_ms(100);
	return r;
}

/* The program of version ("" or an unusable version: the launcher's own,
 * with version cleared) into prog. */
static void program_of(struct launcher *l, char *version, char *prog, size_t cap)
{
	if (version[0]) {
		int r = boot_version_program(l->o->state_dir, version, prog, cap);
		if (r == 0)
			return;
		chsm_log(CHSM_LOG_ERROR, "launcher.version_unusable", "version", version, "error",
			 strerror(-r), "using", l->self, NULL);
		version[0] = '\0';
	}
	snprintf(prog, cap, "%s", l->self);
}

/* Starts prog as the service running version; 0 or -errno. */
static int spawn(struct launcher *l, const char *version, const char *prog)
{
	const struct launcher_options *o = l->o;
	char fds[3][12], vsmd[PATH_MAX + 16];
	int sv[2];
	char **argv = calloc((size_t)o->serve_argc + LAUNCHER_EXTRA_ARGS, sizeof(*argv));
	if (!argv)
		return -ENOMEM;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		free(argv);
		return -errno;
	}
	int n = 0;
	argv[n++] = (char *)prog;
	argv[n++] = "serve";
	for (int i = 0; i < o->serve_argc; i++)
		argv[n++] = o->serve_args[i];
	/* A version packaged without chsm-vsmd uses the launcher's. */
	const char *slash = strrchr(prog, '/'), *self_slash = strrchr(l->self, '/');
	if (!o->vsmd && !getenv("CHSM_VSMD") && slash && self_slash) {
		snprintf(vsmd, sizeof(vsmd), "%.*s/chsm-vsmd", (int)(slash - prog), prog);
		if (access(vsmd, X_OK) < 0) {
			snprintf(vsmd, sizeof(vsmd), "%.*s/chsm-vsmd", (int)(self_slash - l->self),
				 l->self);
			argv[n++] = "--vsmd";
			argv[n++] = vsmd;
		}
	}
	snprintf(fds[0], sizeof(fds[0]), "%d", l->listen_fd);
	snprintf(fds[1], sizeof(fds[1]), "%d", sv[1]);
	snprintf(fds[2], sizeof(fds[2]), "%d", l->lock_fd);
	argv[n++] = "--listen-fd";
	argv[n++] = fds[0];
	argv[n++] = "--control-fd";
	argv[n++] = fds[1];
	argv[n++] = "--lock-fd";
	argv[n++] = fds[2];
	argv[n] = NULL;
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid == 0) {
		/* Only async-signal-safe calls until exec. */
		sigset_t none;
		sigemptyset(&none);
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
			_exit(127);
		int keep[3] = {l->listen_fd, sv[1], l->lock_fd};
		for (int i = 0; i < 3; i++)
			if (fcntl(keep[i], F_SETFD, 0) < 0)
				_exit(127);
		sigprocmask(SIG_SETMASK, &none, NULL);
		execv(prog, argv);
		_exit(127);
	}
	int err = errno;
	free(argv);
	close(sv[1]);
	if (pid < 0) {
		close(sv[0]);
		return -err;
	}
	l->child = pid;
	l->ctrl = sv[0];
	l->want = WANT_NONE;
	snprintf(l->version, sizeof(l->version), "%s", version);
	char pid_s[16];
	snprintf(pid_s, sizeof(pid_s), "%d", (int)pid);
	chsm_log(CHSM_LOG_INFO, "launcher.service_started", "pid", pid_s, "version", label(version),
		 "program", prog, NULL);
	return 0;
}

/* Starts the version boot/current names. */
static int spawn_current(struct launcher *l)
{
	char version[PKG_VERSION_MAX_LEN + 1] = "", prog[PATH_MAX];
	int r = boot_current_read(l->o->state_dir, version);
	if (r < 0 && r != -ENOENT)
		chsm_log(CHSM_LOG_ERROR, "launcher.current_unreadable", "error", strerror(-r), NULL);
	if (r < 0)
		version[0] = '\0';
	program_of(l, version, prog, sizeof(prog));
	return spawn(l, version, prog);
}

/* Ends the trial of l->tr by returning to its previous version, and starts
 * that. */
static int roll_back(struct launcher *l, const char *reason)
{
	chsm_log(CHSM_LOG_ERROR, "upgrade.rolled_back", "attempted", l->tr.next, "previous",
		 label(l->tr.previous), "reason", reason, NULL);
	int r = boot_current_write(l->o->state_dir, l->tr.previous);
	if (r == 0)
		r = boot_trial_write(l->o->state_dir, NULL);
	if (r < 0)
		chsm_log(CHSM_LOG_ERROR, "upgrade.rollback_record_failed", "error", strerror(-r), NULL);
	l->trial = false;
	char version[PKG_VERSION_MAX_LEN + 1], prog[PATH_MAX];
	snprintf(version, sizeof(version), "%s", l->tr.previous);
	program_of(l, version, prog, sizeof(prog));
	return spawn(l, version, prog);
}

/* The service asked for version l->want_version: record the trial, switch
 * and start it. */
static int begin_trial(struct launcher *l)
{
	char prog[PATH_MAX];
	struct boot_trial tr;
	memset(&tr, 0, sizeof(tr));
	snprintf(tr.previous, sizeof(tr.previous), "%s", l->version);
	snprintf(tr.next, sizeof(tr.next), "%s", l->want_version);
	int r = boot_version_program(l->o->state_dir, tr.next, prog, sizeof(prog));
	if (r == 0)
		r = boot_trial_write(l->o->state_dir, &tr);
	if (r == 0 && (r = boot_current_write(l->o->state_dir, tr.next)) < 0)
		(void)boot_trial_write(l->o->state_dir, NULL);
	if (r < 0) {
		chsm_log(CHSM_LOG_ERROR, "upgrade.switch_failed", "version", tr.next, "error",
			 strerror(-r), NULL);
		return spawn_current(l);
	}
	char ms[16];
	snprintf(ms, sizeof(ms), "%d", l->o->health_timeout_ms);
	chsm_log(CHSM_LOG_INFO, "upgrade.switching", "previous", label(tr.previous), "version",
		 tr.next, "health_timeout_ms", ms, NULL);
	l->tr = tr;
	l->trial = true;
	l->deadline_ms = chsm_monotonic_ms() + l->o->health_timeout_ms;
	return spawn(l, tr.next, prog);
}

static void send_ok(struct launcher *l)
{
	struct boot_msg m = {.type = BOOT_MSG_OK};
	char text[BOOT_MSG_MAX + 1];
	int n = boot_msg_format(&m, text, sizeof(text));
	if (n > 0 && send(l->ctrl, text, (size_t)n, MSG_NOSIGNAL) < 0)
		chsm_log(CHSM_LOG_WARNING, "launcher.send_failed", "error", strerror(errno), NULL);
}

/* Kills the service and reaps it. */
static void kill_child(struct launcher *l)
{
	if (l->child <= 0)
		return;
	kill(l->child, SIGKILL);
	while (waitpid(l->child, NULL, 0) < 0 && errno == EINTR)
		;
	l->child = -1;
	if (l->ctrl >= 0)
		close(l->ctrl);
	l->ctrl = -1;
}

/* A message from the service. Returns 0 or -errno (fatal). */
static int on_message(struct launcher *l)
{
	char buf[BOOT_MSG_MAX + 1];
	ssize_t n = recv(l->ctrl, buf, sizeof(buf), 0);
	if (n <= 0) {
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			return 0;
		close(l->ctrl); /* the service closed it: its exit follows */
		l->ctrl = -1;
		return 0;
	}
	struct boot_msg m;
	if (boot_msg_parse(buf, (size_t)n, &m) < 0 || m.type == BOOT_MSG_OK) {
		chsm_log(CHSM_LOG_WARNING, "launcher.bad_message", NULL);
		return 0;
	}
	switch (m.type) {
	case BOOT_MSG_READY:
		if (l->trial && strcmp(m.version, l->tr.next) != 0) {
			char reason[96];
			snprintf(reason, sizeof(reason), "the new program reports version %s", m.version);
			kill_child(l);
			return roll_back(l, reason);
		}
		if (l->trial) {
			int r = boot_trial_write(l->o->state_dir, NULL);
			if (r < 0) {
				/* Without the commit on disk, a restart would roll
				 * back a version that already answered: retry. */
				chsm_log(CHSM_LOG_ERROR, "upgrade.commit_failed", "error", strerror(-r), NULL);
				return 0;
			}
			l->trial = false;
			chsm_log(CHSM_LOG_INFO, "upgrade.committed", "previous", label(l->tr.previous),
				 "version", l->tr.next, NULL);
		}
		chsm_log(CHSM_LOG_INFO, "launcher.service_ready", "version", m.version, NULL);
		send_ok(l);
		break;
	case BOOT_MSG_RESTART:
		l->want = WANT_RESTART;
		break;
	case BOOT_MSG_UPGRADE:
		l->want = WANT_UPGRADE;
		snprintf(l->want_version, sizeof(l->want_version), "%s", m.version);
		break;
	case BOOT_MSG_OK:
		break;
	}
	return 0;
}

/* The service ended with wait status st. Returns -1 to go on, or the
 * launcher's exit status. */
static int on_exit_status(struct launcher *l, int st)
{
	int code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
	char code_s[16];
	snprintf(code_s, sizeof(code_s), "%d", code);
	l->child = -1;
	if (l->ctrl >= 0)
		close(l->ctrl);
	l->ctrl = -1;
	if (l->terminating)
		return code;
	int r;
	if (l->trial) {
		char reason[96];
		snprintf(reason, sizeof(reason), "the new program exited (status %d) before it was ready",
			 code);
		r = roll_back(l, reason);
	} else if (l->want == WANT_RESTART && code == 0) {
		chsm_log(CHSM_LOG_INFO, "reboot.restarting", "version", label(l->version), NULL);
		r = spawn_current(l);
	} else if (l->want == WANT_UPGRADE && code == 0) {
		r = begin_trial(l);
	} else {
		if (code != 0)
			chsm_log(CHSM_LOG_ERROR, "launcher.service_died", "status", code_s, NULL);
		return code;
	}
	if (r < 0) {
		chsm_log(CHSM_LOG_ERROR, "launcher.spawn_failed", "error", strerror(-r), NULL);
		return 1;
	}
	return -1;
}

static int on_signal(struct launcher *l)
{
	struct signalfd_siginfo si;
	ssize_t n = read(l->sig_fd, &si, sizeof(si));
	if (n != (ssize_t)sizeof(si))
		return -1;
	if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) {
		if (!l->terminating) {
			l->terminating = true;
			l->kill_at_ms = chsm_monotonic_ms() + LAUNCHER_STOP_GRACE_MS;
		}
		if (l->child > 0)
			kill(l->child, (int)si.ssi_signo);
		else
			return 0;
		return -1;
	}
	int st;
	pid_t p;
	while ((p = waitpid(-1, &st, WNOHANG)) > 0) {
		if (p != l->child)
			continue;
		int r = on_exit_status(l, st);
		if (r >= 0)
			return r;
	}
	return -1;
}

static int loop(struct launcher *l)
{
	for (;;) {
		int64_t now = chsm_monotonic_ms(), wait = -1;
		if (l->trial && l->child > 0)
			wait = l->deadline_ms > now ? l->deadline_ms - now : 0;
		if (l->terminating && l->child > 0) {
			int64_t k = l->kill_at_ms > now ? l->kill_at_ms - now : 0;
			wait = wait < 0 || k < wait ? k : wait;
		}
		struct pollfd p[2] = {{.fd = l->sig_fd, .events = POLLIN},
				      {.fd = l->ctrl, .events = POLLIN}};
		int n = poll(p, l->ctrl >= 0 ? 2 : 1, wait > INT32_MAX ? INT32_MAX : (int)wait);
		if (n < 0 && errno != EINTR)
			return 1;
		now = chsm_monotonic_ms();
		if (l->ctrl >= 0 && n > 0 && (p[1].revents & (POLLIN | POLLHUP | POLLERR)) &&
		    on_message(l) < 0)
			return 1;
		if (n > 0 && (p[0].revents & POLLIN)) {
			int r = on_signal(l);
			if (r >= 0)
				return r;
		}
		if (l->terminating && l->child > 0 && now >= l->kill_at_ms) {
			chsm_log(CHSM_LOG_ERROR, "launcher.stop_timeout", NULL);
			kill(l->child, SIGKILL);
			l->kill_at_ms = now + LAUNCHER_STOP_GRACE_MS;
		}
		if (!l->terminating && l->trial && l->child > 0 && now >= l->deadline_ms) {
			char reason[96];
			snprintf(reason, sizeof(reason), "not ready within %d ms",
				 l->o->health_timeout_ms);
			kill_child(l);
			if (roll_back(l, reason) < 0)
				return 1;
		}
	}
}

int launcher_run(const struct launcher_options *o)
{
	struct launcher l = {.o = o, .lock_fd = -1, .listen_fd = -1, .sig_fd = -1, .child = -1,
			     .ctrl = -1};
	int r, port = 0, rc = 1;
	ssize_t n = readlink("/proc/self/exe", l.self, sizeof(l.self) - 1);
	if (n <= 0) {
		chsm_log(CHSM_LOG_ERROR, "startup.failed", "step", "own executable", NULL);
		return 1;
	}
	l.self[n] = '\0';
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigprocmask(SIG_BLOCK, &set, NULL);
	if ((l.sig_fd = signalfd(-1, &set, SFD_CLOEXEC)) < 0) {
		chsm_log(CHSM_LOG_ERROR, "startup.failed", "step", "signalfd", "error", strerror(errno),
			 NULL);
		goto out;
	}
	if ((r = take_lock(o->state_dir, &l.lock_fd)) < 0) {
		chsm_log(CHSM_LOG_ERROR, "startup.failed", "step",
			 r == -EBUSY ? "lock (another chsmd runs on this state dir)" : "lock", "error",
			 strerror(-r), NULL);
		goto out;
	}
	if ((r = http_listen_socket(o->host, o->port, &l.listen_fd, &port)) < 0) {
		chsm_log(CHSM_LOG_ERROR, "startup.failed", "step", "listen", "error", strerror(-r), NULL);
		goto out;
	}
	char port_s[12], pid_s[16];
	snprintf(port_s, sizeof(port_s), "%d", port);
	snprintf(pid_s, sizeof(pid_s), "%d", (int)getpid());
	chsm_log(CHSM_LOG_INFO, "launcher.listening", "listen", o->host, "port", port_s, "pid", pid_s,
		 NULL);
	/* A trial record left behind: the launcher died before the new
	 * version was ready. */
	if (boot_trial_read(o->state_dir, &l.tr) == 0)
		r = roll_back(&l, "the launcher stopped during the trial");
	else
		r = spawn_current(&l);
	if (r < 0) {
		chsm_log(CHSM_LOG_ERROR, "startup.failed", "step", "start the service", "error",
			 strerror(-r), NULL);
		goto out;
	}
	rc = loop(&l);
out:
	kill_child(&l);
	if (l.sig_fd >= 0)
		close(l.sig_fd);
	if (l.listen_fd >= 0)
		close(l.listen_fd);
	if (l.lock_fd >= 0)
		close(l.lock_fd);
	return rc;
}
