/*
 * vsmd_main.c: chsm-vsmd, the process of one running VSM.
 *
 *     chsm-vsmd --vsm-id ID --listen IP:PORT [--ready-fd N] [--db PATH]
 *               [--key-fd N] [--max-sessions N] [--max-keys N]
 *               [--stats-file PATH] [--control-fd N]
 *     chsm-vsmd --version
 *
 * It listens on the VSM's service endpoint and serves it until SIGTERM or
 * SIGINT, with its keys in the database at --db, reached with the subkey
 * read from --key-fd (docs/vsm.md). Guarantees:
 *  - it never outlives the process that started it: PR_SET_PDEATHSIG sends
 *    it SIGTERM when that parent dies, and it exits at once if the parent
 *    was already gone before the request took effect (when the environment
 *    holds CHSM_VSMD_PARENT_PID, as the supervisor's spawn sets it: when
 *    its parent is not that process, so a parent that died before this
 *    process ran is noticed too);
 *  - the ready fd receives exactly one line, "READY" once the socket
 *    listens, or "ERROR <ERRNO-NAME> <text>" if it could not (see ready.h),
 *    and is then closed;
 *  - the key descriptor is read for exactly VSM_KEY_BYTES bytes and closed
 *    before anything else happens; the key is wiped once the service has
 *    it, and on every exit path;
 *  - with --control-fd, a LISTEN request on that socket moves the listener
 *    (bind the new endpoint, then close the old listener; sessions go on)
 *    and is answered READY or ERROR (docs/vsm.md, "Moving a running VSM");
 *  - one structured line goes to stderr when it starts listening and one
 *    when it stops; nothing secret is ever printed.
 * Exit status: 0 after SIGTERM/SIGINT, 1 bad arguments or parent gone,
 * 2 bind or listen failed, 3 the service could not start or failed.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/util.h"
#include "common/version.h"
#include "vsm/endpoint.h"
#include "vsm/ready.h"
#include "vsm/service.h"

enum {
	EXIT_STOPPED = 0,
	EXIT_USAGE = 1,
	EXIT_BIND = 2,
	EXIT_SERVICE = 3,
};

/* The VSM's store subkey (store.h STORE_VSM_KEY_LEN, supervisor.h
 * VSM_KEY_LEN). */
#define VSM_KEY_BYTES 32
/* Bounds of --max-sessions and --max-keys (those of the management API). */
#define MAX_SESSIONS_LIMIT 4096
#define MAX_KEYS_LIMIT     1000000
_Static_assert(sizeof(((struct vsm_service_config *)0)->vsm_key) == VSM_KEY_BYTES,
	       "the service holds the whole key");

struct options {
	const char *vsm_id;
	const char *listen;
	int ready_fd;
	const char *db_path;     /* NULL: none */
	int key_fd;              /* -1: none */
	int max_sessions;        /* 0: the service's default */
	int max_keys;
	const char *stats_path;  /* NULL: none */
	int control_fd;          /* -1: none */
};

static void usage(FILE *f)
{
	fputs("usage: chsm-vsmd --vsm-id ID --listen IP:PORT [--ready-fd N] [--db PATH]\n"
	      "                 [--key-fd N] [--max-sessions N] [--max-keys N]\n"
	      "                 [--stats-file PATH] [--control-fd N]\n"
	      "       chsm-vsmd --version   (prints the version, MAJOR.MINOR.PATCH)\n"
	      "  ID       [A-Za-z0-9][A-Za-z0-9_.-]{0,63}\n"
	      "  IP:PORT  an IPv4 literal and port, or [IPv6]:PORT; port 1-65535\n"
	      "  --ready-fd    a descriptor (>= 3) that receives READY or ERROR, then is closed\n"
	      "  --db          the CHSM database holding this VSM's token and keys\n"
	      "  --key-fd      a descriptor (>= 3) holding the VSM's 32-byte store key;\n"
	      "                read once and closed\n"
	      "  --max-sessions 1-4096, --max-keys 1-1000000: the VSM's resources\n"
	      "  --stats-file  where the VSM writes its statistics (JSON)\n"
	      "  --control-fd  a SOCK_SEQPACKET descriptor (>= 3) taking LISTEN requests\n",
	      f);
}

/* Parses an open descriptor number >= 3 (what is after stdio). */
static int parse_fd(const char *text, int *ret_fd)
{
	uint64_t fd;
	if (chsm_parse_u64(text, INT_MAX, &fd) < 0 || fd < 3 || fcntl((int)fd, F_GETFD) < 0)
		return -EINVAL;
	*ret_fd = (int)fd;
	return 0;
}

/* Parses a whole decimal in 1..max. */
static int parse_count(const char *text, uint64_t max, int *ret)
{
	uint64_t v;
	if (chsm_parse_u64(text, max, &v) < 0 || v == 0)
		return -EINVAL;
	*ret = (int)v;
	return 0;
}

/* Reads exactly VSM_KEY_BYTES from fd into key and closes fd (always).
 * Returns 0, -EINVAL when fewer bytes come, or -errno. */
static int read_key(int fd, uint8_t key[VSM_KEY_BYTES])
{
	size_t done = 0;
	int r = 0;
	while (done < VSM_KEY_BYTES) {
		ssize_t n = read(fd, key + done, VSM_KEY_BYTES - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			r = n < 0 ? -errno : -EINVAL;
			break;
		}
		done += (size_t)n;
	}
	close(fd);
	if (r < 0)
		explicit_bzero(key, VSM_KEY_BYTES);
	return r;
}

static int parse_options(int argc, char **argv, struct options *ret_opts)
{
	static const struct option longopts[] = {
		{ "vsm-id", required_argument, NULL, 'i' },
		{ "listen", required_argument, NULL, 'l' },
		{ "ready-fd", required_argument, NULL, 'r' },
		{ "db", required_argument, NULL, 'd' },
		{ "key-fd", required_argument, NULL, 'k' },
		{ "max-sessions", required_argument, NULL, 's' },
		{ "max-keys", required_argument, NULL, 'm' },
		{ "stats-file", required_argument, NULL, 'f' },
		{ "control-fd", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	struct options o = { .ready_fd = -1, .key_fd = -1, .control_fd = -1 };
	const char *ready_text = NULL, *key_text = NULL, *sessions_text = NULL,
		   *keys_text = NULL, *control_text = NULL;
	int c;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+", longopts, NULL)) != -1) {
		const char **slot = c == 'i' ? &o.vsm_id : c == 'l' ? &o.listen :
				    c == 'r' ? &ready_text : c == 'd' ? &o.db_path :
				    c == 'k' ? &key_text : c == 's' ? &sessions_text :
				    c == 'm' ? &keys_text : c == 'f' ? &o.stats_path :
				    c == 'c' ? &control_text : NULL;
		if (c == 'h') {
			usage(stdout);
			return 1;
		}
		if (c == 'V' && argc == 2) {
			/* The supervisor learns a binary's version this way
			 * (docs/vsm.md, VSM upgrades). */
			printf("%s\n", chsm_version());
			return 1;
		}
		if (!slot || *slot) {
			fprintf(stderr, "chsm-vsmd: unknown or repeated option\n");
			return -EINVAL;
		}
		*slot = optarg;
	}
	if (optind != argc || !o.vsm_id || !o.listen) {
		fprintf(stderr, "chsm-vsmd: --vsm-id and --listen are required, nothing else\n");
		return -EINVAL;
	}
	if (!vsm_id_valid(o.vsm_id)) {
		fprintf(stderr, "chsm-vsmd: invalid --vsm-id\n");
		return -EINVAL;
	}
	if (ready_text && parse_fd(ready_text, &o.ready_fd) < 0) {
		fprintf(stderr, "chsm-vsmd: --ready-fd must be an open descriptor >= 3\n");
		return -EINVAL;
	}
	if (key_text && (parse_fd(key_text, &o.key_fd) < 0 || o.key_fd == o.ready_fd)) {
		fprintf(stderr, "chsm-vsmd: --key-fd must be an open descriptor >= 3, not the ready fd\n");
		return -EINVAL;
	}
	if (control_text && (parse_fd(control_text, &o.control_fd) < 0 ||
			     o.control_fd == o.ready_fd || o.control_fd == o.key_fd)) {
		fprintf(stderr, "chsm-vsmd: --control-fd must be an open descriptor >= 3, not the ready or key fd\n");
		return -EINVAL;
	}
	if (sessions_text && parse_count(sessions_text, MAX_SESSIONS_LIMIT, &o.max_sessions) < 0) {
		fprintf(stderr, "chsm-vsmd: --max-sessions must be 1-%d\n", MAX_SESSIONS_LIMIT);
		return -EINVAL;
	}
	if (keys_text && parse_count(keys_text, MAX_KEYS_LIMIT, &o.max_keys) < 0) {
		fprintf(stderr, "chsm-vsmd: --max-keys must be 1-%d\n", MAX_KEYS_LIMIT);
		return -EINVAL;
	}
	if ((o.db_path && !*o.db_path) || (o.stats_path && !*o.stats_path)) {
		fprintf(stderr, "chsm-vsmd: --db and --stats-file must not be empty\n");
		return -EINVAL;
	}
	*ret_opts = o;
	return 0;
}

/* Writes line to the ready fd, if any, and closes it. */
static void send_ready(int *fd, const char *line)
{
	if (*fd < 0)
		return;
	size_t len = strlen(line), done = 0;
	while (done < len) {
		ssize_t n = write(*fd, line + done, len - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		done += (size_t)n;
	}
	close(*fd);
	*fd = -1;
}

/* Name of the variable through which the supervisor names the parent it
 * spawned this process from (supervisor.c). */
#define PARENT_PID_ENV "CHSM_VSMD_PARENT_PID"

/* After PR_SET_PDEATHSIG: true when the parent is still the process that
 * started this one: before, the parent seen before the request; and the
 * one PARENT_PID_ENV names, if set (it is then removed from the
 * environment). */
static bool parent_alive(pid_t before)
{
	const char *text = getenv(PARENT_PID_ENV);
	uint64_t want = 0;
	if (getppid() != before)
		return false;
	if (!text)
		return true;
	bool ok = chsm_parse_u64(text, INT_MAX, &want) == 0 && want > 1 &&
		  getppid() == (pid_t)want;
	unsetenv(PARENT_PID_ENV);
	return ok;
}

int main(int argc, char **argv)
{
	struct options opts;
	struct vsm_service_config cfg;
	struct sockaddr_storage addr;
	socklen_t addrlen;
	char line[VSM_READY_LINE_MAX], text[VSM_READY_LINE_MAX];
	vsm_service *svc = NULL;
	const char *op = "";
	int status = EXIT_SERVICE, sig = 0;

	pid_t parent = getppid();
	if (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0 || !parent_alive(parent))
		return EXIT_USAGE;

	memset(&cfg, 0, sizeof(cfg));
	int r = parse_options(argc, argv, &opts);
	if (r != 0) {
		if (r < 0)
			usage(stderr);
		return r < 0 ? EXIT_USAGE : EXIT_STOPPED;
	}
	if (opts.ready_fd >= 0)
		fcntl(opts.ready_fd, F_SETFD, FD_CLOEXEC);
	if (opts.control_fd >= 0)
		fcntl(opts.control_fd, F_SETFD, FD_CLOEXEC);
	if (opts.key_fd >= 0) {
		r = read_key(opts.key_fd, cfg.vsm_key);
		opts.key_fd = -1;
		if (r < 0) {
			fprintf(stderr, "vsm=%s event=error op=key error=%s\n", opts.vsm_id,
				vsm_errno_name(-r));
			vsm_ready_error_line(-r, "cannot read the VSM key", line, sizeof(line));
			send_ready(&opts.ready_fd, line);
			return EXIT_USAGE;
		}
		cfg.has_key = true;
	}
	cfg.vsm_id = opts.vsm_id;
	cfg.db_path = opts.db_path;
	cfg.max_sessions = opts.max_sessions;
	cfg.max_keys = opts.max_keys;
	cfg.stats_path = opts.stats_path;
	cfg.control_fd = opts.control_fd;
	if (vsm_endpoint_parse(opts.listen, &addr, &addrlen) < 0) {
		fprintf(stderr, "chsm-vsmd: invalid --listen (IPv4:PORT or [IPv6]:PORT, port 1-65535)\n");
		usage(stderr);
		status = EXIT_USAGE;
		goto out;
	}
	/* The canonical form of the address, for the log. */
	char endpoint[VSM_ENDPOINT_MAX_LEN];
	vsm_endpoint_from_sockaddr((const struct sockaddr *)&addr, endpoint, sizeof(endpoint));
	signal(SIGPIPE, SIG_IGN);

	int fd = vsm_listen_open(&addr, addrlen, &op);
	if (fd < 0) {
		fprintf(stderr, "vsm=%s event=error op=%s addr=%s error=%s\n", opts.vsm_id, op,
			endpoint, vsm_errno_name(-fd));
		snprintf(text, sizeof(text), "cannot %s %s", op, endpoint);
		vsm_ready_error_line(-fd, text, line, sizeof(line));
		send_ready(&opts.ready_fd, line);
		status = EXIT_BIND;
		goto out;
	}
	r = vsm_service_new(fd, &cfg, &svc);
	explicit_bzero(cfg.vsm_key, sizeof(cfg.vsm_key));
	if (r < 0) {
		fprintf(stderr, "vsm=%s event=error op=service error=%s\n", opts.vsm_id,
			vsm_errno_name(-r));
		vsm_ready_error_line(-r, "service setup failed", line, sizeof(line));
		send_ready(&opts.ready_fd, line);
		goto out;
	}
	fprintf(stderr, "vsm=%s event=listening addr=%s pid=%ld\n", opts.vsm_id, endpoint,
		(long)getpid());
	send_ready(&opts.ready_fd, "READY\n");

	r = vsm_service_run(svc, &sig);
	if (r < 0) {
		fprintf(stderr, "vsm=%s event=stopped reason=failure accepted=%llu\n", opts.vsm_id,
			(unsigned long long)vsm_service_accepted(svc));
		goto out;
	}
	fprintf(stderr, "vsm=%s event=stopped reason=%s accepted=%llu\n", opts.vsm_id,
		sig == SIGTERM ? "SIGTERM" : "SIGINT",
		(unsigned long long)vsm_service_accepted(svc));
	status = EXIT_STOPPED;
out:
	explicit_bzero(cfg.vsm_key, sizeof(cfg.vsm_key));
	vsm_service_free(svc);
	return status;
}
