/*
 * main.c: chsmctl, the platform's command-line tool for a GM/T 0088 CHSM.
 *
 * Contract with scripts (docs/chsmctl.md): on success the response's data
 * (or, with --json, the whole envelope) goes to stdout as JSON indented by
 * two spaces, and the exit status is 0. A CHSM error prints "CODE MESSAGE"
 * to stderr and exits 1; so do a failed task under --wait, a network
 * failure and a response that does not carry a valid device signature.
 * Usage and input errors exit 2 with the relevant usage text on stderr.
 * stdout never holds anything but JSON (or keygen's fingerprint line);
 * progress of --wait goes to stderr, and only when stderr is a terminal.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "chsmctl/cli.h"
#include "openchsm/chsm_client.h"

enum { EXIT_OK = 0, EXIT_FAILED = 1, EXIT_USAGE = 2, EXIT_REFUSED = 3, EXIT_MISMATCH = 4 };

/* Prints JSON text indented by two spaces, with a final newline. */
static void print_json(FILE *f, const char *text)
{
	json_t *j = json_loads(text, JSON_DECODE_ANY, NULL);
	if (j) {
		json_dumpf(j, f, JSON_INDENT(2) | JSON_ENCODE_ANY | JSON_REAL_PRECISION(12));
		fputc('\n', f);
		json_decref(j);
	} else {
		fprintf(f, "%s\n", text);
	}
}

static int library_error(chsm_client *cl, int r)
{
	const char *detail = chsm_client_last_error(cl);
	fprintf(stderr, "chsmctl: %s%s%s\n", chsm_client_strerror(r), *detail ? ": " : "",
		detail);
	return EXIT_FAILED;
}

/* Prints a response the way the exit status will tell: data or envelope on
 * stdout, "CODE MESSAGE" on stderr for an error. */
static int report(const struct cli_invocation *inv, const struct chsm_client_response *resp)
{
	if (inv->g.json)
		print_json(stdout, resp->body);
	else if (resp->code == 0 && resp->data)
		print_json(stdout, resp->data);
	if (resp->code != 0) {
		fprintf(stderr, "%d %s\n", resp->code, resp->message ? resp->message : "");
		return EXIT_FAILED;
	}
	return EXIT_OK;
}

struct progress {
	bool tty;
	bool printed;
};

static void on_progress(void *userdata, const char *state, const char *task_json)
{
	struct progress *pr = userdata;
	if (!pr->tty)
		return;
	json_t *t = json_loads(task_json, 0, NULL);
	const char *id = json_string_value(json_object_get(t, "taskId"));
	const char *op = json_string_value(json_object_get(t, "operation"));
	const char *target = json_string_value(json_object_get(t, "target"));
	fprintf(stderr, "\r\033[K%s %s %s: %s", id ? id : "task", op ? op : "",
		target ? target : "", state);
	fflush(stderr);
	pr->printed = true;
	json_decref(t);
}

/* Follows a task to its end and reports it; a failed task exits 1 with its
 * code and message on stderr. */
static int follow_task(chsm_client *cl, const struct cli_invocation *inv, const char *task_id)
{
	struct chsm_client_response resp = {0};
	struct progress pr = {.tty = isatty(STDERR_FILENO) == 1};
	int r = chsm_client_wait_task(cl, task_id, inv->g.timeout_ms, on_progress, &pr, &resp);
	if (pr.printed)
		fputc('\n', stderr);
	if (r < 0)
		return library_error(cl, r);
	int status = report(inv, &resp);
	if (status == EXIT_OK) {
		json_t *task = json_loads(resp.data ? resp.data : "{}", 0, NULL);
		const char *state = json_string_value(json_object_get(task, "state"));
		if (state && strcmp(state, "failed") == 0) {
			const char *msg = json_string_value(json_object_get(task, "message"));
			fprintf(stderr, "%lld %s\n",
				(long long)json_integer_value(json_object_get(task, "code")),
				msg ? msg : "task failed");
			status = EXIT_FAILED;
		}
		json_decref(task);
	}
	chsm_client_response_free(&resp);
	return status;
}

static int run_remote(const struct cli_invocation *inv)
{
	const struct cli_command *c = inv->cmd;
	struct chsm_client_options opts = {
		.url = inv->g.url,
		.platform_key_path = (c->flags & CMD_NOKEY) ? NULL : inv->g.key,
		.device_fingerprint = inv->g.device_fingerprint,
		.cacert_path = inv->g.cacert,
		.insecure = inv->g.insecure,
		.timeout_ms = inv->g.timeout_ms,
	};
	struct chsm_client_response resp = {0};
	chsm_client *cl = NULL;
	int status, r = chsm_client_new(&opts, &cl);
	if (r < 0) {
		fprintf(stderr, "chsmctl: %s\n", chsm_client_strerror(r));
		if (r == CHSM_CLIENT_E_UNTRUSTED)
			fputs("chsmctl: give --device-fingerprint FP (or CHSMCTL_DEVICE_FINGERPRINT), "
			      "--cacert FILE, or --insecure\n",
			      stderr);
		return r == -ENOMEM ? EXIT_FAILED : EXIT_USAGE;
	}
	if ((c->flags & CMD_TASK_ID) && inv->g.wait) {
		status = follow_task(cl, inv, inv->target_id);
		goto out;
	}
	if (c->action == CLI_ENROLL)
		r = chsm_client_enroll(cl, inv->enrollment_code, NULL, &resp);
	else
		r = chsm_client_request(cl, inv->method, inv->path, inv->body,
					inv->g.idempotency_key, &resp);
	if (r < 0) {
		status = library_error(cl, r);
		goto out;
	}
	const char *task_id = NULL;
	json_t *data = NULL;
	if (inv->g.wait && (c->flags & CMD_ASYNC) && resp.code == 0 && resp.data) {
		data = json_loads(resp.data, 0, NULL);
		task_id = json_string_value(json_object_get(data, "taskId"));
	}
	status = task_id ? follow_task(cl, inv, task_id) : report(inv, &resp);
	json_decref(data);
out:
	chsm_client_response_free(&resp);
	chsm_client_free(cl);
	return status;
}

/* ---- drift ---- */

/* One client for one side of a drift: --from-X / --to-X, else the global
 * --key, --cacert and --insecure. */
static int drift_client(const struct cli_invocation *inv, const char *side, chsm_client **ret)
{
	char name[64];
	const char *url = cli_opt_value(inv, side);
	snprintf(name, sizeof(name), "%s-key", side);
	const char *key = cli_opt_value(inv, name);
	snprintf(name, sizeof(name), "%s-device-fingerprint", side);
	const char *fp = cli_opt_value(inv, name);
	snprintf(name, sizeof(name), "%s-cacert", side);
	const char *ca = cli_opt_value(inv, name);
	struct chsm_client_options opts = {
		.url = url,
		.platform_key_path = key ? key : inv->g.key,
		.device_fingerprint = fp,
		.cacert_path = ca ? ca : inv->g.cacert,
		.insecure = inv->g.insecure,
		.timeout_ms = inv->g.timeout_ms,
	};
	int r = chsm_client_new(&opts, ret);
	if (r < 0) {
		fprintf(stderr, "chsmctl: --%s %s: %s\n", side, url, chsm_client_strerror(r));
		if (r == CHSM_CLIENT_E_UNTRUSTED)
			fprintf(stderr, "chsmctl: give --%s-device-fingerprint FP, --%s-cacert "
				"FILE (or --cacert), or --insecure\n", side, side);
	}
	return r;
}

static void on_drift_step(void *userdata, enum chsm_client_drift_step step,
			  enum chsm_client_drift_outcome outcome, long duration_ms,
			  const char *detail)
{
	static const char *const outcomes[] = {"ok", "skipped", "FAILED"};
	(void)userdata;
	fprintf(stderr, "drift: %-13s %-7s %7ld ms  %s\n", chsm_client_drift_step_name(step),
		outcomes[outcome], duration_ms, detail);
}

/* Runs chsm_client_drift: a line per step on stderr, the summary JSON on
 * stdout on success. Exit: 0 done and verified, 1 failed, 2 usage,
 * 3 refused (nothing changed), 4 the target does not hold the source's
 * state. */
static int run_drift(const struct cli_invocation *inv)
{
	chsm_client *from = NULL, *to = NULL;
	struct chsm_client_drift_result res = {0};
	struct chsm_client_drift_options o = {
		.vsm_id = cli_opt_value(inv, "vsm"),
		.target_vsm_id = cli_opt_value(inv, "target-vsm"),
		.image_url = cli_opt_value(inv, "image"),
		.image_sm3 = cli_opt_value(inv, "sm3"),
		.image_cacert_path = cli_opt_value(inv, "image-cacert"),
		.move_network = cli_opt_value(inv, "move-network") != NULL,
		.stop_source = cli_opt_value(inv, "stop-source") != NULL,
		.timeout_ms = inv->g.timeout_ms,
	};
	int status, r = drift_client(inv, "from", &from);
	if (r == 0)
		r = drift_client(inv, "to", &to);
	if (r < 0) {
		status = r == -ENOMEM ? EXIT_FAILED : EXIT_USAGE;
		goto out;
	}
	r = chsm_client_drift(from, to, &o, on_drift_step, NULL, &res);
	if (r == -EINVAL) {
		fputs("chsmctl: drift: invalid options\n", stderr);
		status = EXIT_USAGE;
		goto out;
	}
	fprintf(stderr, "drift: %-13s %-7s %7ld ms\n", "total", r == 0 ? "ok" : "FAILED",
		res.total_ms);
	if (r == 0) {
		if (res.json)
			print_json(stdout, res.json);
		status = EXIT_OK;
		goto out;
	}
	if (res.code)
		fprintf(stderr, "%d %s\n", res.code, res.message);
	else
		fprintf(stderr, "chsmctl: %s: %s\n", chsm_client_strerror(r), res.message);
	status = r == CHSM_CLIENT_E_DRIFT_REFUSED   ? EXIT_REFUSED
		 : r == CHSM_CLIENT_E_DRIFT_MISMATCH ? EXIT_MISMATCH
						     : EXIT_FAILED;
out:
	chsm_client_drift_result_free(&res);
	chsm_client_free(from);
	chsm_client_free(to);
	return status;
}

static int run_keygen(const struct cli_invocation *inv)
{
	char fp[CHSM_CLIENT_FINGERPRINT_LEN + 1];
	int r = chsm_client_keygen(inv->keygen_out, fp);
	if (r < 0) {
		fprintf(stderr, "chsmctl: %s: %s\n", inv->keygen_out, chsm_client_strerror(r));
		return EXIT_FAILED;
	}
	printf("fingerprint: %s\n", fp);
	return EXIT_OK;
}

int main(int argc, char **argv)
{
	struct cli_invocation inv;
	const struct cli_command *scope_cmd = NULL;
	const char *scope_group = NULL;
	char err[512];
	int status;

	cli_wipe_json_memory();
	if (cli_parse(argc, argv, &inv, err, sizeof(err), &scope_cmd, &scope_group) < 0) {
		fprintf(stderr, "chsmctl: %s\n\n", err);
		cli_usage(stderr, scope_group, scope_cmd);
		return EXIT_USAGE;
	}
	switch (inv.action) {
	case CLI_HELP:
		cli_usage(stdout, inv.help_group, inv.cmd);
		status = EXIT_OK;
		break;
	case CLI_KEYGEN:
		status = run_keygen(&inv);
		break;
	case CLI_DRIFT:
		status = run_drift(&inv);
		break;
	default:
		status = run_remote(&inv);
		break;
	}
	cli_invocation_free(&inv);
	if (fflush(stdout) != 0 && status == EXIT_OK)
		status = EXIT_FAILED;
	return status;
}
