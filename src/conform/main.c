/*
 * chsm-conform: checks a CHSM against OpenCHSM wire profile v1 (PROFILE.md)
 * from the platform's side and prints a pass/fail table per profile
 * section. docs/conformance.md is its manual.
 *
 * Exit status: 0 when no check failed, 1 when one did, 2 for a usage or
 * set-up error (nothing was checked).
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/util.h"
#include "conform/conform.h"

static const char usage[] =
	"usage: chsm-conform --url URL (--enrollment-code CODE | --enrollment-code-file FILE)\n"
	"                    (--device-fingerprint FP | --cacert FILE | --trust-on-first-use)\n"
	"                    [--image-dir DIR] [--destructive] [--vendor-key FILE]\n"
	"                    [--record DIR] [--callback-listen HOST:PORT] [--callback-url URL]\n"
	"                    [--vsm-ip IP] [--vsm-port-base PORT] [--timeout S] [--task-timeout S]\n"
	"                    [--verbose]\n"
	"Checks a CHSM against OpenCHSM wire profile v1; see docs/conformance.md.\n";

enum {
	OPT_URL = 1, OPT_CODE, OPT_CODE_FILE, OPT_FP, OPT_CACERT, OPT_TOFU, OPT_IMAGE_DIR,
	OPT_DESTRUCTIVE, OPT_VENDOR, OPT_RECORD, OPT_CB_LISTEN, OPT_CB_URL, OPT_VSM_IP,
	OPT_VSM_PORT, OPT_TIMEOUT, OPT_TASK_TIMEOUT, OPT_VERBOSE, OPT_HELP,
};

static const struct option options[] = {
	{"url", required_argument, NULL, OPT_URL},
	{"enrollment-code", required_argument, NULL, OPT_CODE},
	{"enrollment-code-file", required_argument, NULL, OPT_CODE_FILE},
	{"device-fingerprint", required_argument, NULL, OPT_FP},
	{"cacert", required_argument, NULL, OPT_CACERT},
	{"trust-on-first-use", no_argument, NULL, OPT_TOFU},
	{"image-dir", required_argument, NULL, OPT_IMAGE_DIR},
	{"destructive", no_argument, NULL, OPT_DESTRUCTIVE},
	{"vendor-key", required_argument, NULL, OPT_VENDOR},
	{"record", required_argument, NULL, OPT_RECORD},
	{"callback-listen", required_argument, NULL, OPT_CB_LISTEN},
	{"callback-url", required_argument, NULL, OPT_CB_URL},
	{"vsm-ip", required_argument, NULL, OPT_VSM_IP},
	{"vsm-port-base", required_argument, NULL, OPT_VSM_PORT},
	{"timeout", required_argument, NULL, OPT_TIMEOUT},
	{"task-timeout", required_argument, NULL, OPT_TASK_TIMEOUT},
	{"verbose", no_argument, NULL, OPT_VERBOSE},
	{"help", no_argument, NULL, OPT_HELP},
	{NULL, 0, NULL, 0},
};

static int fail_usage(const char *msg)
{
	fprintf(stderr, "chsm-conform: %s\n%s", msg, usage);
	return 2;
}

static int seconds(const char *s, long *ret)
{
	uint64_t v;
	if (chsm_parse_u64(s, 86400, &v) < 0 || v == 0)
		return -1;
	*ret = (long)v * 1000;
	return 0;
}

/* Deletes the VSMs a failed run left, without recording results. */
static void clean_up(struct cf *cf)
{
	for (size_t i = 0; i < cf->ncreated; i++) {
		char path[160];
		struct cf_resp r, w;
		snprintf(path, sizeof(path), "/vsms/%s", cf->created[i]);
		cf_call(cf, "DELETE", path, NULL, &r);
		const char *tid = json_string_value(json_object_get(r.data, "taskId"));
		if (tid && cf_wait_task(cf, tid, &w) == 0)
			cf_resp_free(&w);
		else if (r.code != 3001)
			fprintf(stderr, "chsm-conform: could not delete VSM %s it created: %.200s\n",
				cf->created[i], r.body ? r.body : r.transport);
		cf_resp_free(&r);
	}
	cf->ncreated = 0;
}

int main(int argc, char **argv)
{
	struct cf cf = {.timeout_ms = 30000, .task_timeout_ms = 120000, .vsm_ip = "127.0.0.1"};
	char *code_buf = NULL, base[2048];
	size_t code_len = 0;
	const char *fp = NULL, *code_file = NULL;
	int o, rc = 2;
	while ((o = getopt_long(argc, argv, "", options, NULL)) != -1) {
		switch (o) {
		case OPT_URL:
			if (strlen(optarg) >= sizeof(base))
				return fail_usage("--url: too long");
			snprintf(base, sizeof(base), "%s", optarg);
			cf.base = base;
			break;
		case OPT_CODE: cf.enrollment_code = optarg; break;
		case OPT_CODE_FILE: code_file = optarg; break;
		case OPT_FP: fp = optarg; break;
		case OPT_CACERT: cf.cacert = optarg; break;
		case OPT_TOFU: cf.tofu = true; break;
		case OPT_IMAGE_DIR: cf.image_dir = optarg; break;
		case OPT_DESTRUCTIVE: cf.destructive = true; break;
		case OPT_VENDOR: cf.vendor_key_path = optarg; break;
		case OPT_RECORD: cf.record_dir = optarg; break;
		case OPT_CB_LISTEN: cf.callback_listen = optarg; break;
		case OPT_CB_URL: cf.callback_base_opt = optarg; break;
		case OPT_VSM_IP: cf.vsm_ip = optarg; break;
		case OPT_VSM_PORT: {
			uint64_t v;
			if (chsm_parse_u64(optarg, 65000, &v) < 0 || v == 0)
				return fail_usage("--vsm-port-base: a port number");
			cf.vsm_port_base = (int)v;
			break;
		}
		case OPT_TIMEOUT:
			if (seconds(optarg, &cf.timeout_ms) < 0)
				return fail_usage("--timeout: whole seconds, 1..86400");
			break;
		case OPT_TASK_TIMEOUT:
			if (seconds(optarg, &cf.task_timeout_ms) < 0)
				return fail_usage("--task-timeout: whole seconds, 1..86400");
			break;
		case OPT_VERBOSE: cf.verbose = true; break;
		case OPT_HELP: fputs(usage, stdout); return 0;
		default: return fail_usage("unknown option");
		}
	}
	if (optind != argc)
		return fail_usage("unexpected argument");
	if (!cf.base || (strncmp(cf.base, "https://", 8) != 0 && strncmp(cf.base, "http://", 7) != 0))
		return fail_usage("--url https://HOST:PORT is required");
	size_t bl = strlen(cf.base);
	while (bl > 8 && cf.base[bl - 1] == '/')
		cf.base[--bl] = '\0';
	if (fp) {
		uint8_t raw[32];
		if (strlen(fp) != CF_FP_LEN || chsm_hex_decode(fp, CF_FP_LEN, raw, sizeof(raw)) < 0)
			return fail_usage("--device-fingerprint: 64 hex digits");
		chsm_hex_encode(raw, sizeof(raw), cf.pin_fp);
		cf.pinned = true;
	}
	if (!cf.pinned && !cf.cacert && !cf.tofu)
		return fail_usage("nothing authenticates the device: give --device-fingerprint, "
				  "--cacert or --trust-on-first-use");
	char image_dir[PATH_MAX];
	if (cf.image_dir) {
		if (!realpath(cf.image_dir, image_dir))
			return fail_usage("--image-dir: not an existing folder");
		cf.image_dir = image_dir;
	}

	/* Read last, so that no usage error leaves it in memory. */
	if (code_file) {
		if (chsm_read_file(code_file, 4096, &code_buf, &code_len) < 0)
			return fail_usage("cannot read the enrollment code file");
		code_buf[strcspn(code_buf, "\r\n")] = '\0';
		cf.enrollment_code = code_buf;
	}
	if (!cf.enrollment_code || !cf.enrollment_code[0]) {
		crypto_free_secret(code_buf, code_len);
		return fail_usage("--enrollment-code is required");
	}

	uint8_t rnd[3];
	crypto_random(rnd, sizeof(rnd));
	memcpy(cf.prefix, "conform-", 8);
	chsm_hex_encode(rnd, sizeof(rnd), cf.prefix + 8);

	if (cf_wire_init(&cf) < 0 || crypto_sm2_generate(&cf.platform_key) < 0 ||
	    crypto_sm2_fingerprint(cf.platform_key, cf.platform_fp) < 0) {
		fprintf(stderr, "chsm-conform: cannot initialise libcurl or make a key\n");
		goto out;
	}
	char why[512];
	if (cf_learn_device_key(&cf, why, sizeof(why)) < 0) {
		fprintf(stderr, "chsm-conform: %s\n", why);
		goto out;
	}
	printf("device key fingerprint: %s%s\n", cf.device_fp,
	       cf.pinned ? " (pinned)" : cf.tofu && !cf.cacert ? " (trusted on first use: compare it with the one the device showed at initialisation)" : "");
	printf("platform key made for this run: %s\n", cf.platform_fp);
	if (cf_receiver_start(&cf) < 0) {
		fprintf(stderr, "chsm-conform: cannot listen for callbacks on %s\n",
			cf.callback_listen ? cf.callback_listen : "127.0.0.1:0");
		goto out;
	}
	printf("callbacks to: %s\n", cf.callback_base);
	fflush(stdout);

	cf_run_checks(&cf);
	clean_up(&cf);
	rc = cf_report(&cf) ? 1 : 0;
out:
	cf_receiver_stop(&cf);
	cf_wire_free(&cf);
	crypto_sm2_key_free(cf.platform_key);
	crypto_sm2_key_free(cf.device_key);
	json_decref(cf.details);
	json_decref(cf.config);
	cf_results_free(&cf);
	crypto_free_secret(code_buf, code_len);
	return rc;
}
