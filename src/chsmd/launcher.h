/*
 * launcher.h: `chsmd run`, a small stateless process that keeps the
 * management service running (docs/architecture.md, "Launcher and
 * service").
 *
 * The launcher takes the state directory's lock, binds the management
 * listening socket, and starts the service as `<program> serve <the run
 * options> --listen-fd N --control-fd N --lock-fd N`, where program is the
 * installed version boot/current names (boot.h), or the launcher's own
 * executable. The service dies with the launcher (PR_SET_PDEATHSIG).
 * SIGTERM and SIGINT are forwarded to the service and the launcher exits
 * with its status. On "restart" the launcher starts the service again;
 * on "upgrade X" it records a trial, switches boot/current to X, starts X
 * and rolls back to the previous version if X does not report ready
 * within the health timeout or exits first. Any other end of the service
 * ends the launcher with a non-zero status (it never loops restarting).
 */
#ifndef CHSM_CHSMD_LAUNCHER_H
#define CHSM_CHSMD_LAUNCHER_H

/* How long the launcher waits for the state directory's lock (the service
 * of a launcher that was killed may still be exiting). */
#define LAUNCHER_LOCK_WAIT_MS 5000
/* Default and bounds of --health-timeout-ms. */
#define LAUNCHER_HEALTH_TIMEOUT_MS 60000
#define LAUNCHER_HEALTH_TIMEOUT_MIN_MS 100
#define LAUNCHER_HEALTH_TIMEOUT_MAX_MS (3600 * 1000)
/* After forwarding SIGTERM/SIGINT, how long the service may take before it
 * is killed. */
#define LAUNCHER_STOP_GRACE_MS 60000

struct launcher_options {
	const char *state_dir;
	const char *host;             /* listening address and port */
	int port;
	int health_timeout_ms;
	const char *vsmd;             /* --vsmd given, or NULL */
	char **serve_args;            /* the run options, passed on to serve */
	int serve_argc;
};

/* Runs the launcher until the service ends for good; returns the exit
 * status for main. */
int launcher_run(const struct launcher_options *o);

#endif
