/*
 * chsm_boot.c: the CHSM upgrade (7.2.10) and reboot (7.2.11) tasks.
 *
 * Both end in another process: the task's worker prepares (for an upgrade:
 * download, SM3, vendor signature, component, a strictly newer version,
 * install into <state>/versions/<v>), records the task in the setting
 * "boot.task", sets the CHSM state (upgrading, rebooting), asks chsmd's
 * main thread to stop (api.h: boot_request) and answers TASK_DEFERRED.
 * chsmd stops as on SIGTERM and tells its launcher to start the service
 * again, or the new version (src/chsmd/launcher.h). The service that comes
 * up healthy ends the task with api_boot_finish: an upgrade succeeded when
 * it runs the target version, failed when the launcher rolled back.
 *
 * Guarantees: a failed check changes nothing (a leftover install folder of
 * the same version at most, replaced by the next attempt). The task stays
 * `running` only while "boot.task" names it; every start of the service
 * either ends it (after reporting ready) or, when the record is gone, the
 * task engine fails it as interrupted.
 */
/* nftw and its flags */
#define _XOPEN_SOURCE 700

#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/internal.h"
#include "common/log.h"
#include "common/util.h"
#include "common/version.h"
#include "pkg/pkg.h"
#include "xfer/xfer.h"

/* The setting that names the deferred task. */
#define BOOT_TASK_SETTING "boot.task"
/* Largest upgrade package downloaded. */
#define BOOT_PACKAGE_MAX_BYTES (1ULL << 30)
/* Largest vendor key file read. */
#define BOOT_VENDOR_KEY_MAX 8192

bool api_boot_operation(const char *op)
{
	return strcmp(op, "chsm.upgrade") == 0 || strcmp(op, "chsm.reboot") == 0;
}

int api_vendor_key(struct api_ctx *ctx, crypto_sm2_key **ret_key, char *msg, size_t msglen)
{
	char path[sizeof(ctx->state_dir) + 32];
	char *pem = NULL;
	size_t len = 0;
	snprintf(path, sizeof(path), "%s/vendor-key.pem", ctx->state_dir);
	int r = chsm_read_file(path, BOOT_VENDOR_KEY_MAX, &pem, &len);
	if (r == -ENOENT) {
		snprintf(msg, msglen, "no vendor key is configured (chsmd init --vendor-key): "
				      "no package can be verified");
		return GMT_E_IMAGE_SIGNATURE;
	}
	if (r == 0)
		r = crypto_sm2_load_public_pem(pem, len, ret_key);
	free(pem);
	if (r < 0) {
		snprintf(msg, msglen, "the vendor key cannot be read: %s", strerror(-r));
		return GMT_E_STORAGE;
	}
	return GMT_OK;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	return (flag == FTW_DP ? rmdir(path) : unlink(path)) < 0 && errno != ENOENT ? -1 : 0;
}

int api_remove_tree(const char *path)
{
	struct stat st;
	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISDIR(st.st_mode))
		return unlink(path) < 0 ? -errno : 0;
	return nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS) < 0 ? -errno : 0;
}

/* Extracts the package in fd into <state>/versions/<version> (through
 * <version>.tmp, replacing what an earlier attempt left). */
static int install(struct api_ctx *ctx, int fd, const crypto_sm2_key *key, const char *version,
		   char *msg, size_t msglen)
{
	char dir[PATH_MAX], tmp[PATH_MAX + 8], final[PATH_MAX + 8], err[PKG_ERR_LEN] = "";
	snprintf(dir, sizeof(dir), "%s/versions", ctx->state_dir);
	snprintf(tmp, sizeof(tmp), "%s/%s.tmp", dir, version);
	snprintf(final, sizeof(final), "%s/%s", dir, version);
	int r;
	if ((mkdir(dir, 0755) < 0 && errno != EEXIST) || (r = api_remove_tree(tmp)) < 0 ||
	    mkdir(tmp, 0755) < 0) {
		snprintf(msg, msglen, "cannot prepare %s: %s", tmp, strerror(errno));
		return GMT_E_STORAGE;
	}
	int code = pkg_extract(fd, key, tmp, NULL, err, sizeof(err));
	if (code != GMT_OK) {
		rmdir(tmp);
		snprintf(msg, msglen, "%s", err[0] ? err : gmt_code_message(code));
		return code;
	}
	if ((r = api_remove_tree(final)) < 0 || rename(tmp, final) < 0 || chsm_fsync_parent(final) < 0) {
		snprintf(msg, msglen, "cannot install %s: %s", final, strerror(r < 0 ? -r : errno));
		api_remove_tree(tmp);
		return GMT_E_STORAGE;
	}
	return GMT_OK;
}

int api_package_check(int fd, const crypto_sm2_key *vendor, const char *component,
		      const char *current, const char *program, struct pkg_info *ret_info,
		      const struct pkg_file **ret_prog, char *msg, size_t msglen)
{
	char err[PKG_ERR_LEN] = "";
	int code = pkg_verify(fd, vendor, ret_info, err, sizeof(err));
	if (code != GMT_OK) {
		snprintf(msg, msglen, "package: %s", err[0] ? err : gmt_code_message(code));
		return code;
	}
	const struct pkg_file *prog = NULL;
	for (size_t i = 0; i < ret_info->nfiles; i++)
		if (strcmp(ret_info->files[i].name, program) == 0 &&
		    ret_info->files[i].mode == PKG_MODE_EXEC)
			prog = &ret_info->files[i];
	code = GMT_E_PACKAGE;
	if (strcmp(ret_info->component, component) != 0)
		snprintf(msg, msglen, "the package is for component %s, not %s", ret_info->component,
			 component);
	else if (pkg_version_cmp(ret_info->version, current) <= 0)
		snprintf(msg, msglen, "version %s is not newer than the installed %s",
			 ret_info->version, current);
	else if (!prog)
		snprintf(msg, msglen, "the package holds no executable %s", program);
	else
		code = GMT_OK;
	if (code != GMT_OK)
		pkg_info_free(ret_info);
	*ret_prog = prog;
	return code;
}

static int defer(struct api_ctx *ctx, const struct store_task *t, json_t *record, int state,
		 int request, const char *version, char *msg, size_t msglen)
{
	json_object_set_new(record, "taskId", json_string(t->id));
	json_object_set_new(record, "operation", json_string(t->operation));
	char *text = json_dumps(record, JSON_COMPACT);
	json_decref(record);
	int prev = atomic_exchange(&ctx->chsm_state, state);
	int r = text ? store_setting_set(ctx->store, BOOT_TASK_SETTING, text) : -ENOMEM;
	free(text);
	if (r < 0) {
		/* A reboot's handler set the state already: back to running. */
		atomic_store(&ctx->chsm_state, prev == state ? CHSM_STATE_RUNNING : prev);
		snprintf(msg, msglen, "the task cannot be recorded: %s", strerror(-r));
		return GMT_E_STORAGE;
	}
	snprintf(ctx->boot_version, sizeof(ctx->boot_version), "%s", version ? version : "");
	atomic_store(&ctx->boot_request, request);
	kill(getpid(), SIGUSR1);
	return TASK_DEFERRED;
}

static int run_upgrade(struct api_ctx *ctx, const struct store_task *t, char *msg, size_t msglen)
{
	json_t *params = t->params ? json_loads(t->params, 0, NULL) : NULL;
	const char *url = json_string_value(json_object_get(params, "url"));
	const char *sm3 = json_string_value(json_object_get(params, "sm3"));
	crypto_sm2_key *key = NULL;
	struct pkg_info info;
	const struct pkg_file *prog;
	char redacted[256], version[PKG_VERSION_MAX_LEN + 1];
	int fd = -1, code;
	memset(&info, 0, sizeof(info));
	if (!url || !sm3) {
		json_decref(params);
		snprintf(msg, msglen, "the task's parameters are missing");
		return GMT_E_INTERNAL;
	}
	xfer_redact_url(url, redacted, sizeof(redacted));
	if ((code = api_vendor_key(ctx, &key, msg, msglen)) != GMT_OK ||
	    (code = api_download_checked(ctx, url, sm3, BOOT_PACKAGE_MAX_BYTES, &fd, msg, msglen)) !=
		    GMT_OK)
		goto out;
	chsm_log(CHSM_LOG_INFO, "upgrade.downloaded", "task", t->id, "url", redacted, "sm3", sm3, NULL);
	if ((code = api_package_check(fd, key, "chsm", chsm_version(), "chsmd", &info, &prog, msg,
				      msglen)) != GMT_OK)
		goto out;
	snprintf(version, sizeof(version), "%s", info.version);
	pkg_info_free(&info);
	chsm_log(CHSM_LOG_INFO, "upgrade.verified", "task", t->id, "version", version, NULL);
	if ((code = install(ctx, fd, key, version, msg, msglen)) != GMT_OK)
		goto out;
	chsm_log(CHSM_LOG_INFO, "upgrade.installed", "task", t->id, "version", version, NULL);
	code = defer(ctx, t,
		     json_pack("{s:s,s:s}", "previousVersion", chsm_version(), "version", version),
		     CHSM_STATE_UPGRADING, API_BOOT_UPGRADE, version, msg, msglen);
out:
	if (fd >= 0)
		close(fd);
	crypto_sm2_key_free(key);
	json_decref(params);
	return code;
}

int api_run_boot_task(struct api_ctx *ctx, const struct store_task *t, char *msg, size_t msglen)
{
	if (strcmp(t->operation, "chsm.upgrade") == 0)
		return run_upgrade(ctx, t, msg, msglen);
	chsm_log(CHSM_LOG_INFO, "reboot.stopping", "task", t->id, NULL);
	return defer(ctx, t, json_pack("{s:I}", "previousBootTime", (json_int_t)ctx->boot_ms),
		     CHSM_STATE_REBOOTING, API_BOOT_RESTART, NULL, msg, msglen);
}

/* The deferred task's record, or NULL. */
static json_t *boot_record(struct api_ctx *ctx)
{
	char *text = NULL;
	if (store_setting_get(ctx->store, BOOT_TASK_SETTING, &text) < 0)
		return NULL;
	json_t *o = json_loads(text, JSON_REJECT_DUPLICATES, NULL);
	free(text);
	if (!json_is_object(o) || !json_is_string(json_object_get(o, "taskId")) ||
	    !json_is_string(json_object_get(o, "operation"))) {
		json_decref(o);
		return NULL;
	}
	return o;
}

bool api_boot_owns_task(void *vctx, const struct store_task *t)
{
	json_t *o = boot_record(vctx);
	bool mine = o && strcmp(json_string_value(json_object_get(o, "taskId")), t->id) == 0 &&
		    api_boot_operation(t->operation);
	json_decref(o);
	if (mine)
		chsm_log(CHSM_LOG_INFO, "task.resumed", "task", t->id, "operation", t->operation, NULL);
	return mine;
}

int api_boot_start_state(struct api_ctx *ctx)
{
	json_t *o = boot_record(ctx);
	const char *op = o ? json_string_value(json_object_get(o, "operation")) : "";
	int st = strcmp(op, "chsm.reboot") == 0    ? CHSM_STATE_REBOOTING
		 : strcmp(op, "chsm.upgrade") == 0 ? CHSM_STATE_UPGRADING
						   : CHSM_STATE_INITIALIZING;
	json_decref(o);
	return st;
}

void api_boot_finish(struct api_ctx *ctx)
{
	json_t *o = boot_record(ctx), *result = NULL;
	if (!o)
		return;
	const char *id = json_string_value(json_object_get(o, "taskId"));
	const char *op = json_string_value(json_object_get(o, "operation"));
	const char *prev = json_string_value(json_object_get(o, "previousVersion"));
	const char *target = json_string_value(json_object_get(o, "version"));
	int code = GMT_OK;
	char msg[200] = "";
	if (strcmp(op, "chsm.upgrade") == 0 && prev && target) {
		if (strcmp(target, chsm_version()) == 0) {
			result = json_pack("{s:s,s:s}", "previousVersion", prev, "version", target);
			chsm_log(CHSM_LOG_INFO, "upgrade.finished", "task", id, "version", target, NULL);
		} else {
			code = GMT_E_INTERNAL;
			snprintf(msg, sizeof(msg), "version %s did not come up healthy; running %s again",
				 target, chsm_version());
			result = json_pack("{s:s,s:s,s:s}", "previousVersion", prev, "version",
					   chsm_version(), "attemptedVersion", target);
			chsm_log(CHSM_LOG_WARNING, "upgrade.failed", "task", id, "attempted", target,
				 "version", chsm_version(), NULL);
		}
	} else if (strcmp(op, "chsm.reboot") == 0) {
		json_t *pb = json_object_get(o, "previousBootTime");
		result = json_pack("{s:I,s:O?}", "bootTime", (json_int_t)ctx->boot_ms,
				   "previousBootTime", pb);
		chsm_log(CHSM_LOG_INFO, "reboot.finished", "task", id, NULL);
	} else {
		code = GMT_E_INTERNAL;
		snprintf(msg, sizeof(msg), "interrupted by a CHSM restart");
	}
	int r = task_engine_finish(ctx->tasks, id, code, result, msg);
	/* Ended now or before (a crash between the two writes): forget it. */
	if (r == 0 || r == -ENOENT || r == -EALREADY)
		(void)store_setting_set(ctx->store, BOOT_TASK_SETTING, NULL);
	json_decref(result);
	json_decref(o);
}
