/*
 * chsmd: the CHSM management service.
 *
 *   chsmd init --state-dir DIR [--device-id ID] [--domain-name NAME
 *              [--domain-secret-file FILE]] [--vendor-key PEM] [--max-vsms N]
 *   chsmd run --state-dir DIR [--listen HOST:PORT] [--threads N]
 *             [--metrics-listen HOST:PORT] [--plain-http] [--syslog]
 *             [--log-level error|warning|info|debug] [--vsmd PATH]
 *             [--log-spool-bytes N] [--ntp-port N] [--ntp-interval-ms N]
 *             [--platform sandbox|linux] [--vsm-bridge NAME] [--resolv-conf PATH]
 *             [--chrony-sources PATH] [--chronyc-socket PATH]
 *             [--health-timeout-ms N] [--reboot-pause-ms N] [--vsm-cpus LIST]
 *   chsmd admin reset-platform-key --state-dir DIR
 *
 * `run` is the launcher (launcher.h): it takes the state dir's lock, binds
 * the listening socket and starts the service, `chsmd serve` (internal),
 * with the same options plus --listen-fd, --control-fd and --lock-fd. The
 * service serves the management interface until SIGTERM or SIGINT (or a
 * reboot or upgrade task asks it to stop), then stops the listener, lets
 * running tasks finish and stops every VSM process. VSMs that were
 * running are started again at the next start.
 */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/api.h"
#include "chsmd/boot.h"
#include "chsmd/device.h"
#include "chsmd/launcher.h"
#include "chsmd/prompt.h"
#include "common/limits.h"
#include "common/log.h"
#include "common/util.h"
#include "common/version.h"
#include "logship/logship.h"

/* How often the clock's offset to the NTP servers is measured, by default
 * and at least (--ntp-interval-ms, for tests), and at most (one day). */
#define NTP_INTERVAL_MS (64 * 1000)
#define NTP_INTERVAL_MIN_MS 1000
#define NTP_INTERVAL_MAX_MS (86400 * 1000)
/* How long the service waits for its launcher's answer to "ready". */
#define READY_ANSWER_MS 30000
/* Longest --reboot-pause-ms (test only). */
#define REBOOT_PAUSE_MAX_MS 60000

static void usage(FILE *f)
{
	fprintf(f,
		"usage:\n"
		"  chsmd init --state-dir DIR [--device-id ID] [--domain-name NAME [--domain-secret-file FILE]]\n"
		"             [--vendor-key PEM] [--max-vsms N]\n"
		"  chsmd run --state-dir DIR [--listen HOST:PORT] [--threads N] [--metrics-listen HOST:PORT]\n"
		"            [--plain-http] [--syslog] [--log-level LEVEL] [--vsmd PATH]\n"
		"            [--log-spool-bytes N] [--ntp-port N] [--ntp-interval-ms N]\n"
		"            [--platform sandbox|linux] [--vsm-bridge NAME] [--resolv-conf PATH]\n"
		"            [--chrony-sources PATH] [--chronyc-socket PATH]\n"
		"            [--health-timeout-ms N] [--reboot-pause-ms N] [--vsm-cpus LIST]\n"
		"  chsmd admin reset-platform-key --state-dir DIR\n"
		"  chsmd version\n");
}

/* Splits "host:port" or "[v6]:port". */
static int parse_listen(const char *s, char *host, size_t cap, int *port)
{
	const char *colon;
	size_t hl;
	if (s[0] == '[') {
		const char *end = strchr(s, ']');
		if (!end || end[1] != ':')
			return -EINVAL;
		hl = (size_t)(end - s - 1);
		s++;
		colon = end + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon)
			return -EINVAL;
		hl = (size_t)(colon - s);
	}
	uint64_t p;
	if (hl == 0 || hl >= cap || chsm_parse_u64(colon + 1, 65535, &p) < 0)
		return -EINVAL;
	memcpy(host, s, hl);
	host[hl] = '\0';
	*port = (int)p;
	return 0;
}

static int cmd_init(int argc, char **argv)
{
	static const struct option opts[] = {
		{"state-dir", required_argument, NULL, 's'}, {"device-id", required_argument, NULL, 'i'},
		{"domain-name", required_argument, NULL, 'n'},
		{"domain-secret-file", required_argument, NULL, 'f'},
		{"vendor-key", required_argument, NULL, 'v'}, {"max-vsms", required_argument, NULL, 'm'},
		{"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
	struct device_init_options o = {.max_vsms = CHSM_DEFAULT_MAX_VSMS};
	int c;
	uint64_t n;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 's': o.state_dir = optarg; break;
		case 'i': o.device_id = optarg; break;
		case 'n': o.domain_name = optarg; break;
		case 'f': o.domain_secret_file = optarg; break;
		case 'v': o.vendor_key_file = optarg; break;
		case 'm':
			if (chsm_parse_u64(optarg, CHSM_MAX_VSMS_CEILING, &n) < 0 || n < 1) {
				fprintf(stderr, "chsmd: --max-vsms must be 1..%d\n", CHSM_MAX_VSMS_CEILING);
				return 2;
			}
			o.max_vsms = (int)n;
			break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	/* --domain-name alone prompts for the secret, on a terminal only. */
	if (!o.state_dir || (o.domain_secret_file && !o.domain_name) ||
	    (o.domain_name && !o.domain_secret_file && !isatty(STDIN_FILENO))) {
		fprintf(stderr, "chsmd init: --state-dir is required; --domain-name and "
				"--domain-secret-file go together\n");
		return 2;
	}
	if (o.domain_name && (strlen(o.domain_name) < 1 || strlen(o.domain_name) > 64 ||
			      !chsm_str_charset(o.domain_name, strlen(o.domain_name), "_.-"))) {
		fprintf(stderr, "chsmd init: --domain-name must be 1-64 characters of [A-Za-z0-9_.-]\n");
		return 2;
	}
	char *secret = NULL;
	size_t secret_len = 0;
	if (o.domain_name && !o.domain_secret_file) {
		int pr = prompt_secret_twice("domain secret", DEVICE_DOMAIN_SECRET_MAX, &secret,
					     &secret_len);
		if (pr < 0) {
			fprintf(stderr, "chsmd init: %s\n",
				pr == -EINVAL ? "the two entries differ"
				: pr == -EMSGSIZE ? "the domain secret is longer than 4096 bytes"
				: strerror(-pr));
			return 1;
		}
		o.domain_secret = secret;
		o.domain_secret_len = secret_len;
	}
	int r = device_init(&o);
	crypto_free_secret(secret, secret ? secret_len + 1 : 0);
	if (r == -EEXIST) {
		fprintf(stderr, "chsmd init: %s is already initialised\n", o.state_dir);
		return 1;
	}
	if (r == -EBUSY) {
		fprintf(stderr, "chsmd init: a chsmd is running on %s\n", o.state_dir);
		return 1;
	}
	if (r < 0) {
		fprintf(stderr, "chsmd init: failed: %s\n", strerror(-r));
		return 1;
	}
	return 0;
}

static int cmd_admin(int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "reset-platform-key") != 0) {
		usage(stderr);
		return 2;
	}
	static const struct option opts[] = {{"state-dir", required_argument, NULL, 's'},
					     {NULL, 0, NULL, 0}};
	const char *dir = NULL;
	int c;
	optind = 2;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (c != 's') {
			usage(stderr);
			return 2;
		}
		dir = optarg;
	}
	if (!dir) {
		usage(stderr);
		return 2;
	}
	int lock_fd = -1;
	int r = device_lock(dir, &lock_fd);
	if (r == -EBUSY) {
		fprintf(stderr, "chsmd admin: stop the running chsmd on %s first\n", dir);
		return 1;
	}
	chsm_store *s = NULL;
	char code[CHSM_ENROLL_CODE_CHARS + 1];
	if (r == 0)
		r = device_open_store(dir, &s);
	if (r == 0 && (r = store_begin(s)) == 0) {
		if ((r = store_setting_set(s, "platform.public_key", NULL)) < 0 ||
		    (r = store_setting_set(s, "platform.fingerprint", NULL)) < 0 ||
		    (r = store_setting_set(s, "platform.configured_at", NULL)) < 0 ||
		    (r = device_new_enrollment_code(s, code)) < 0)
			store_rollback(s);
		else
			r = store_commit(s);
	}
	store_close(s);
	if (lock_fd >= 0)
		close(lock_fd);
	if (r < 0) {
		fprintf(stderr, "chsmd admin: failed: %s\n", strerror(-r));
		return 1;
	}
	printf("platform key cleared\nenrollment-code: %s\n", code);
	crypto_wipe(code, sizeof(code));
	return 0;
}

/* The chsm-vsmd beside this executable, unless told otherwise. */
static int find_vsmd(const char *given, char *out, size_t cap)
{
	const char *env = getenv("CHSM_VSMD");
	if (given || env) {
		snprintf(out, cap, "%s", given ? given : env);
		return 0;
	}
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n < 0)
		return -errno;
	self[n] = '\0';
	char *slash = strrchr(self, '/');
	if (!slash)
		return -ENOENT;
	*slash = '\0';
	return snprintf(out, cap, "%s/chsm-vsmd", self) >= (int)cap ? -ENAMETOOLONG : 0;
}

static int load_identity(struct api_ctx *ctx)
{
	char *v = NULL;
	uint64_t n;
	int r;
	static const struct {
		const char *name;
		size_t off, cap;
	} fields[] = {
		{"device.id", offsetof(struct api_ctx, device_id), sizeof(((struct api_ctx *)0)->device_id)},
		{"device.serial", offsetof(struct api_ctx, serial_number), sizeof(((struct api_ctx *)0)->serial_number)},
		{"domain.fingerprint", offsetof(struct api_ctx, domain_fp), sizeof(((struct api_ctx *)0)->domain_fp)},
	};
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		if ((r = store_setting_get(ctx->store, fields[i].name, &v)) < 0)
			return r;
		snprintf((char *)ctx + fields[i].off, fields[i].cap, "%s", v);
		free(v);
	}
	if ((r = store_setting_get(ctx->store, "device.max_vsms", &v)) < 0)
		return r;
	r = chsm_parse_u64(v, CHSM_MAX_VSMS_CEILING, &n);
	free(v);
	if (r < 0)
		return r;
	ctx->max_vsms = (int)n;
	if ((r = device_load_key(ctx->store, &ctx->device_key)) < 0 ||
	    (r = crypto_sm2_fingerprint(ctx->device_key, ctx->device_fp)) < 0)
		return r;
	size_t len;
	return crypto_sm2_public_pem(ctx->device_key, &ctx->device_public_pem, &len);
}

struct run_options {
	const char *state_dir;
	char host[64];
	int port;
	int threads;
	bool plain_http;
	bool metrics;
	char metrics_host[64];
	int metrics_port;
	const char *vsmd;
	const char *vsm_cpus;   /* --vsm-cpus: every VSM process's CPUs */
	uint64_t log_spool_bytes;
	int ntp_port;        /* asked on every NTP server (--ntp-port) */
	int ntp_interval_ms;
	struct platform_options platform;   /* instance filled at start */
	int health_timeout_ms;  /* the launcher's, for a new version */
	int reboot_pause_ms;    /* test only: pause in state rebooting */
	int listen_fd, control_fd, lock_fd;   /* serve: from the launcher */
};

static int fail(const char *what, int r)
{
	chsm_log(CHSM_LOG_ERROR, "startup.failed", "step", what, "error", strerror(r < 0 ? -r : r), NULL);
	return 1;
}

/* Makes <state_dir>/run (0700), where VSM processes write their
 * statistics files; an existing one must be a directory (not a link) and is
 * made 0700. Returns 0 or -errno. */
static int make_run_dir(const char *state_dir)
{
	char path[PATH_MAX];
	struct stat st;
	int r = device_path(state_dir, "run", path, sizeof(path));
	if (r < 0)
		return r;
	if (mkdir(path, 0700) == 0)
		return 0;
	if (errno != EEXIST)
		return -errno;
	if (lstat(path, &st) < 0)
		return -errno;
	if (!S_ISDIR(st.st_mode))
		return -ENOTDIR;
	if ((st.st_mode & 07777) != 0700 && chmod(path, 0700) < 0)
		return -errno;
	return 0;
}

/* The 7.2.7 log upload address, for the log shipper. */
static int log_upload_config(void *vctx, char **ret_json, size_t *ret_len)
{
	struct api_ctx *ctx = vctx;
	uint8_t *raw = NULL;
	size_t len = 0;
	int r = store_secret_get(ctx->store, "config.log_upload", &raw, &len);
	if (r < 0)
		return r;
	*ret_json = (char *)raw;
	*ret_len = len;
	return 0;
}

static int serve(const struct run_options *o)
{
	struct api_ctx ctx;
	memset(&ctx, 0, sizeof(ctx));
	ctx.boot_ms = chsm_now_ms();
	ctx.boot_mono_ms = chsm_monotonic_ms();
	atomic_store(&ctx.chsm_state, CHSM_STATE_INITIALIZING);
	snprintf(ctx.state_dir, sizeof(ctx.state_dir), "%s", o->state_dir);
	int lock_fd = o->lock_fd, rc = 1, r, boot = API_BOOT_NONE;
	http_server *srv = NULL, *msrv = NULL;
	logship *ship = NULL;
	char vsmd[PATH_MAX], cert[PATH_MAX], key[PATH_MAX], spool[PATH_MAX];

	/* Signals are taken by sigwait() in this thread only. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	/* The launcher's descriptors stay out of VSM processes. */
	const int inherited[3] = {o->listen_fd, o->control_fd, o->lock_fd};
	for (int i = 0; i < 3; i++)
		if (fcntl(inherited[i], F_SETFD, FD_CLOEXEC) < 0) {
			rc = fail("launcher descriptors", -errno);
			goto out;
		}
	if ((r = make_run_dir(o->state_dir)) < 0) {
		rc = fail("run directory", r);
		goto out;
	}
	if ((r = device_open_store(o->state_dir, &ctx.store)) < 0) {
		rc = fail("open store (is the state dir initialised?)", r);
		goto out;
	}
	if ((r = load_identity(&ctx)) < 0) {
		rc = fail("load identity", r);
		goto out;
	}
	struct logship_options lcfg = {
		.spool_dir = spool, .spool_bytes = o->log_spool_bytes,
		.config = log_upload_config, .config_ctx = &ctx,
	};
	if ((r = device_path(o->state_dir, "spool", spool, sizeof(spool))) < 0 ||
	    (r = logship_start(&lcfg, &ship)) < 0) {
		rc = fail("log shipper", r);
		goto out;
	}
	chsm_log_set_sink(logship_sink, ship);
	struct platform_options popt = o->platform;
	popt.instance = ctx.device_id;
	if ((r = platform_new(&popt, &ctx.platform)) < 0) {
		rc = fail(r == -EPERM ? "platform (linux needs root)" :
			  r == -ENOENT ? "platform (linux needs the ip command)" : "platform", r);
		goto out;
	}
	if ((r = api_init(&ctx)) < 0) {
		rc = fail("api init", r);
		goto out;
	}
	if ((r = find_vsmd(o->vsmd, vsmd, sizeof(vsmd))) < 0 ||
	    (r = vsm_supervisor_new(vsmd, api_vsm_died, &ctx, &ctx.supervisor)) < 0 ||
	    (r = vsm_supervisor_set_cpus(ctx.supervisor, o->vsm_cpus, NULL, 0)) < 0) {
		rc = fail("vsm supervisor", r);
		goto out;
	}
	if ((r = api_vsm_versions_init(&ctx, vsmd)) < 0) {
		rc = fail("vsm versions", r);
		goto out;
	}
	if ((r = ntp_monitor_start(o->ntp_interval_ms, api_ntp_result, &ctx, &ctx.ntp)) < 0 ||
	    (r = ntp_monitor_set_port(ctx.ntp, o->ntp_port)) < 0) {
		rc = fail("ntp monitor", r);
		goto out;
	}
	api_apply_ntp_config(&ctx);
	struct task_engine_config tcfg = {
		.store = ctx.store, .device_key = ctx.device_key, .run = api_run_task,
		.interrupted = api_task_interrupted, .owned = api_boot_owns_task,
		.retrying = api_task_retrying, .ctx = &ctx,
		.workers = 2,
	};
	if ((r = task_engine_start(&tcfg, &ctx.tasks)) < 0) {
		rc = fail("task engine", r);
		goto out;
	}
	/* Serving from here on: mutations get 5003 until VSMs are resumed. */
	int start_state = api_boot_start_state(&ctx);
	atomic_store(&ctx.chsm_state, start_state);
	device_path(o->state_dir, "tls-cert.pem", cert, sizeof(cert));
	device_path(o->state_dir, "tls-key.pem", key, sizeof(key));
	struct http_server_config hcfg = {
		.host = o->host, .port = o->port, .cert_file = cert, .key_file = key,
		.plain_http = o->plain_http, .threads = o->threads, .listen_fd = o->listen_fd,
	};
	if ((r = http_server_start(&hcfg, api_handle, &ctx, &srv)) < 0) {
		rc = fail("listen", r);
		goto out;
	}
	if (start_state == CHSM_STATE_REBOOTING && o->reboot_pause_ms > 0) {
		struct timespec pause = {o->reboot_pause_ms / 1000, (o->reboot_pause_ms % 1000) * 1000000L};
		nanosleep(&pause, NULL);
	}
	/* After the engine settled interrupted tasks: VSMs with work queued
	 * are left to it, the others that were running run again. */
	api_resume_vsms(&ctx);
	atomic_store(&ctx.chsm_state, CHSM_STATE_RUNNING);
	if (o->metrics) {
		struct http_server_config mcfg = {
			.host = o->metrics_host, .port = o->metrics_port, .plain_http = true, .threads = 1,
		};
		if ((r = http_server_start(&mcfg, api_handle_metrics_only, &ctx, &msrv)) < 0) {
			rc = fail("metrics listener", r);
			goto out;
		}
	}
	char port_s[12];
	snprintf(port_s, sizeof(port_s), "%d", http_server_port(srv));
	chsm_log(CHSM_LOG_INFO, "started", "device_id", ctx.device_id, "device_key", ctx.device_fp,
		 "listen", o->host, "port", port_s, "tls", o->plain_http ? "off" : "on",
		 "version", chsm_version(), NULL);
	struct boot_msg ready = {.type = BOOT_MSG_READY};
	snprintf(ready.version, sizeof(ready.version), "%s", chsm_version());
	if ((r = boot_send(o->control_fd, &ready)) < 0 ||
	    (r = boot_await_ok(o->control_fd, READY_ANSWER_MS)) < 0)
		chsm_log(CHSM_LOG_ERROR, "launcher.no_answer", "error", strerror(-r), NULL);
	else
		api_boot_finish(&ctx);
	int sig = 0;
	do
		sigwait(&set, &sig);
	while (sig == SIGUSR1 && atomic_load(&ctx.boot_request) == API_BOOT_NONE);
	boot = sig == SIGUSR1 ? atomic_load(&ctx.boot_request) : API_BOOT_NONE;
	chsm_log(CHSM_LOG_INFO, "stopping", "signal",
		 boot == API_BOOT_UPGRADE ? "upgrade" : boot == API_BOOT_RESTART ? "reboot"
			: sig == SIGTERM ? "TERM" : "INT", NULL);
	rc = 0;
out:
	http_server_stop(msrv);
	http_server_stop(srv);
	task_engine_stop(ctx.tasks);
	ntp_monitor_stop(ctx.ntp);
	vsm_supervisor_free(ctx.supervisor);
	api_fini(&ctx);
	platform_free(ctx.platform);
	chsm_log_set_sink(NULL, NULL);
	logship_stop(ship);
	crypto_sm2_key_free(ctx.device_key);
	free(ctx.device_public_pem);
	store_close(ctx.store);
	if (lock_fd >= 0)
		close(lock_fd);
	if (rc == 0)
		chsm_log(CHSM_LOG_INFO, "stopped", NULL);
	/* Everything is stopped: the launcher may start the next service. */
	if (rc == 0 && boot != API_BOOT_NONE) {
		struct boot_msg m = {.type = boot == API_BOOT_UPGRADE ? BOOT_MSG_UPGRADE
								      : BOOT_MSG_RESTART};
		snprintf(m.version, sizeof(m.version), "%s", ctx.boot_version);
		if ((r = boot_send(o->control_fd, &m)) < 0) {
			chsm_log(CHSM_LOG_ERROR, "launcher.send_failed", "error", strerror(-r), NULL);
			rc = 1;
		}
	}
	return rc;
}

/* An inherited descriptor number (serve). */
static int parse_fd(const char *s, int *ret)
{
	uint64_t n;
	if (chsm_parse_u64(s, INT32_MAX, &n) < 0 || n < 3)
		return -EINVAL;
	*ret = (int)n;
	return 0;
}

/* `run` (serve false) and `serve` take the same options; serve also the
 * launcher's descriptors. */
static int cmd_run(int argc, char **argv, bool serving)
{
	static const struct option opts[] = {
		{"state-dir", required_argument, NULL, 's'}, {"listen", required_argument, NULL, 'l'},
		{"threads", required_argument, NULL, 't'}, {"metrics-listen", required_argument, NULL, 'm'},
		{"plain-http", no_argument, NULL, 'p'}, {"syslog", no_argument, NULL, 'y'},
		{"log-level", required_argument, NULL, 'L'}, {"vsmd", required_argument, NULL, 'v'},
		{"log-spool-bytes", required_argument, NULL, 'S'},
		{"ntp-port", required_argument, NULL, 'N'}, {"ntp-interval-ms", required_argument, NULL, 'I'},
		{"platform", required_argument, NULL, 'P'}, {"vsm-bridge", required_argument, NULL, 'B'},
		{"resolv-conf", required_argument, NULL, 'R'},
		{"chrony-sources", required_argument, NULL, 'C'},
		{"chronyc-socket", required_argument, NULL, 'K'},
		{"health-timeout-ms", required_argument, NULL, 'H'},
		{"reboot-pause-ms", required_argument, NULL, 'Q'},
		{"vsm-cpus", required_argument, NULL, 'U'},
		{"listen-fd", required_argument, NULL, 'F'}, {"control-fd", required_argument, NULL, 'X'},
		{"lock-fd", required_argument, NULL, 'Y'},
		{"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
	struct run_options o = {.port = 8443, .log_spool_bytes = LOGSHIP_DEFAULT_SPOOL_BYTES,
				.ntp_port = 123, .ntp_interval_ms = NTP_INTERVAL_MS,
				.health_timeout_ms = LAUNCHER_HEALTH_TIMEOUT_MS,
				.listen_fd = -1, .control_fd = -1, .lock_fd = -1};
	snprintf(o.host, sizeof(o.host), "127.0.0.1");
	bool use_syslog = false;
	enum chsm_log_level level = CHSM_LOG_INFO;
	uint64_t n;
	int c;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 's': o.state_dir = optarg; break;
		case 'l':
			if (parse_listen(optarg, o.host, sizeof(o.host), &o.port) < 0) {
				fprintf(stderr, "chsmd: --listen takes HOST:PORT\n");
				return 2;
			}
			break;
		case 'm':
			if (parse_listen(optarg, o.metrics_host, sizeof(o.metrics_host), &o.metrics_port) < 0) {
				fprintf(stderr, "chsmd: --metrics-listen takes HOST:PORT\n");
				return 2;
			}
			o.metrics = true;
			break;
		case 't':
			if (chsm_parse_u64(optarg, 64, &n) < 0) {
				fprintf(stderr, "chsmd: --threads takes 0..64\n");
				return 2;
			}
			o.threads = (int)n;
			break;
		case 'p': o.plain_http = true; break;
		case 'y': use_syslog = true; break;
		case 'L':
			if (!strcmp(optarg, "error")) level = CHSM_LOG_ERROR;
			else if (!strcmp(optarg, "warning")) level = CHSM_LOG_WARNING;
			else if (!strcmp(optarg, "info")) level = CHSM_LOG_INFO;
			else if (!strcmp(optarg, "debug")) level = CHSM_LOG_DEBUG;
			else {
				fprintf(stderr, "chsmd: --log-level takes error, warning, info or debug\n");
				return 2;
			}
			break;
		case 'v': o.vsmd = optarg; break;
		case 'S':
			if (chsm_parse_u64(optarg, UINT64_MAX / 2, &n) < 0 || n < LOGSHIP_MIN_SPOOL_BYTES) {
				fprintf(stderr, "chsmd: --log-spool-bytes takes at least %d\n", LOGSHIP_MIN_SPOOL_BYTES);
				return 2;
			}
			o.log_spool_bytes = n;
			break;
		case 'N':
			if (chsm_parse_u64(optarg, 65535, &n) < 0 || n < 1) {
				fprintf(stderr, "chsmd: --ntp-port takes 1..65535\n");
				return 2;
			}
			o.ntp_port = (int)n;
			break;
		case 'I':
			if (chsm_parse_u64(optarg, NTP_INTERVAL_MAX_MS, &n) < 0 || n < NTP_INTERVAL_MIN_MS) {
				fprintf(stderr, "chsmd: --ntp-interval-ms takes %d..%d\n", NTP_INTERVAL_MIN_MS,
					NTP_INTERVAL_MAX_MS);
				return 2;
			}
			o.ntp_interval_ms = (int)n;
			break;
		case 'P':
			if (strcmp(optarg, "sandbox") && strcmp(optarg, "linux")) {
				fprintf(stderr, "chsmd: --platform takes sandbox or linux\n");
				return 2;
			}
			o.platform.kind = strcmp(optarg, "linux") ? PLATFORM_SANDBOX : PLATFORM_LINUX;
			break;
		case 'B':
			if (!platform_ifname_valid(optarg)) {
				fprintf(stderr, "chsmd: --vsm-bridge takes an interface name (1-15 of [A-Za-z0-9_.-])\n");
				return 2;
			}
			o.platform.vsm_bridge = optarg;
			break;
		case 'R': case 'C': case 'K':
			if (optarg[0] != '/') {
				fprintf(stderr, "chsmd: --resolv-conf, --chrony-sources and --chronyc-socket take absolute paths\n");
				return 2;
			}
			*(c == 'R' ? &o.platform.resolv_conf : c == 'C' ? &o.platform.chrony_sources
				   : &o.platform.chronyc_socket) = optarg;
			break;
		case 'H':
			if (chsm_parse_u64(optarg, LAUNCHER_HEALTH_TIMEOUT_MAX_MS, &n) < 0 ||
			    n < LAUNCHER_HEALTH_TIMEOUT_MIN_MS) {
				fprintf(stderr, "chsmd: --health-timeout-ms takes %d..%d\n",
					LAUNCHER_HEALTH_TIMEOUT_MIN_MS, LAUNCHER_HEALTH_TIMEOUT_MAX_MS);
				return 2;
			}
			o.health_timeout_ms = (int)n;
			break;
		case 'Q':
			if (chsm_parse_u64(optarg, REBOOT_PAUSE_MAX_MS, &n) < 0) {
				fprintf(stderr, "chsmd: --reboot-pause-ms takes 0..%d\n", REBOOT_PAUSE_MAX_MS);
				return 2;
			}
			o.reboot_pause_ms = (int)n;
			break;
		case 'U': {
			char why[160];
			if (vsm_cpus_check(optarg, why, sizeof(why)) < 0) {
				fprintf(stderr, "chsmd: --vsm-cpus: %s\n", why);
				return 2;
			}
			o.vsm_cpus = optarg;
			break;
		}
		case 'F':
		case 'X':
		case 'Y':
			if (!serving || parse_fd(optarg, c == 'F' ? &o.listen_fd : c == 'X' ? &o.control_fd
											: &o.lock_fd) < 0) {
				usage(stderr);
				return 2;
			}
			break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (!o.state_dir || (serving && (o.listen_fd < 0 || o.control_fd < 0 || o.lock_fd < 0))) {
		usage(stderr);
		return 2;
	}
	chsm_log_setup("chsmd", use_syslog, level);
	if (serving)
		return serve(&o);
	struct launcher_options lo = {
		.state_dir = o.state_dir, .host = o.host, .port = o.port,
		.health_timeout_ms = o.health_timeout_ms, .vsmd = o.vsmd,
		.serve_args = argv + 1, .serve_argc = argc - 1,
	};
	return launcher_run(&lo);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	const char *cmd = argv[1];
	if (!strcmp(cmd, "init"))
		return cmd_init(argc - 1, argv + 1);
	if (!strcmp(cmd, "run") || !strcmp(cmd, "serve"))
		return cmd_run(argc - 1, argv + 1, !strcmp(cmd, "serve"));
	if (!strcmp(cmd, "admin"))
		return cmd_admin(argc - 1, argv + 1);
	if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
		printf("chsmd %s\n", chsm_version());
		return 0;
	}
	if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
		usage(stdout);
		return 0;
	}
	usage(stderr);
	return 2;
}
