/*
 * upgrade.c: 7.3.11, upgrading a VSM to a new version of the VSM service,
 * and which chsm-vsmd each VSM runs (docs/operations.md, "VSM upgrade").
 *
 * Guarantees:
 * - Nothing about the VSM changes before the package passed every check,
 *   in this order: download (4005), SM3 of the file (4008), container and
 *   type (4003), the vendor signature with <state>/vendor-key.pem (4001),
 *   contents (4006), component "vsm", a version strictly newer than the
 *   VSM's, an executable chsm-vsmd in it that answers --version with the
 *   package's version (4006). After a refusal the VSM is back in the state
 *   it had; a running VSM served throughout.
 * - A version is installed once, in <state>/vsm-versions/<version>, shared
 *   by every VSM on it: extracted into a temporary folder beside it,
 *   checked, then renamed into place (or exchanged atomically with a
 *   folder whose chsm-vsmd is not the package's), so no VSM ever starts a
 *   half-written program. Installs are serialised (one chsmd per state
 *   folder), so two VSMs upgraded to one version at once share one install.
 * - The VSM's record takes the new version in the one transaction that ends
 *   the upgrade: stopped, or running on the new program. When a running
 *   VSM's new program does not start, the record keeps the old version and
 *   the VSM runs the old program again; the task fails. A crash before that
 *   transaction leaves the old version (api_task_interrupted).
 * - Keys, token and stateVersion are untouched: an upgrade changes neither
 *   keys nor configuration, so the platform's last image stays current.
 */
#define _GNU_SOURCE   /* renameat2 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/internal.h"
#include "common/log.h"
#include "common/util.h"
#include "common/version.h"
#include "pkg/pkg.h"
#include "vsm/versions.h"

/* Serialises installs into <state>/vsm-versions. */
static pthread_mutex_t install_lock = PTHREAD_MUTEX_INITIALIZER;

/* Paths under the state folder (ctx->state_dir is at most 511 bytes). */
#define PATH_CAP 1024

const char *api_vsm_default_version(const struct api_ctx *ctx)
{
	return ctx->vsmd_version[0] ? ctx->vsmd_version : chsm_version();
}

const char *api_vsm_binary(struct api_ctx *ctx, const char *version, char *buf, size_t cap)
{
	return vsm_version_binary(ctx->state_dir, version, buf, cap) == 1 ? buf : NULL;
}

/* Sets VSM id's recorded version, in one transaction. */
static int set_version(struct api_ctx *ctx, const char *id, const char *version)
{
	struct store_vsm v;
	int r = store_begin(ctx->store);
	if (r < 0)
		return r;
	r = store_vsm_get(ctx->store, id, &v);
	if (r == 0) {
		snprintf(v.version, sizeof(v.version), "%s", version);
		v.updated_at = chsm_now_ms();
		r = store_vsm_update(ctx->store, &v);
	}
	if (r == 0)
		r = store_commit(ctx->store);
	else
		store_rollback(ctx->store);
	return r;
}

int api_vsm_versions_init(struct api_ctx *ctx, const char *vsmd_path)
{
	if (strlen(vsmd_path) >= sizeof(ctx->vsmd_path))
		return -ENAMETOOLONG;
	snprintf(ctx->vsmd_path, sizeof(ctx->vsmd_path), "%s", vsmd_path);
	int r = vsm_binary_version(vsmd_path, ctx->vsmd_version, sizeof(ctx->vsmd_version));
	if (r < 0) {
		snprintf(ctx->vsmd_version, sizeof(ctx->vsmd_version), "%s", chsm_version());
		chsm_log(CHSM_LOG_WARNING, "vsm.version", "program", vsmd_path, "error",
			 strerror(-r), "version", ctx->vsmd_version, "note",
			 "the default chsm-vsmd does not answer --version: taken as chsmd's version",
			 NULL);
	}
	struct store_vsm *v = NULL;
	size_t n = 0;
	if ((r = store_vsm_list(ctx->store, &v, &n)) < 0)
		return r;
	for (size_t i = 0; i < n && r == 0; i++) {
		char bin[PATH_CAP];
		if (api_vsm_binary(ctx, v[i].version, bin, sizeof(bin)) ||
		    strcmp(v[i].version, ctx->vsmd_version) == 0)
			continue;
		r = set_version(ctx, v[i].id, ctx->vsmd_version);
		if (r == 0)
			chsm_log(CHSM_LOG_WARNING, "vsm.version", "vsm", v[i].id, "from", v[i].version,
				 "to", ctx->vsmd_version, "note",
				 "no installed chsm-vsmd of its version: the VSM runs the default", NULL);
	}
	free(v);
	return r;
}

/* ---- the package ---- */

/* 4006 unless the program at path answers --version with want. */
static int probe(const char *path, const char *want, char *msg, size_t msglen)
{
	char got[VSM_VERSION_MAX_LEN + 1];
	int r = vsm_binary_version(path, got, sizeof(got));
	if (r < 0) {
		snprintf(msg, msglen, "the package's %s does not answer --version (%s)",
			 VSM_VERSIONS_PROGRAM, strerror(-r));
		return GMT_E_PACKAGE;
	}
	if (strcmp(got, want) != 0) {
		snprintf(msg, msglen, "the package's %s reports version %s, not %s",
			 VSM_VERSIONS_PROGRAM, got, want);
		return GMT_E_PACKAGE;
	}
	return GMT_OK;
}

/* The SM3 of the regular file at path (not followed if a link), in hex. */
static int file_sm3(const char *path, char out[CRYPTO_SM3_HEX_LEN + 1])
{
	crypto_sm3_ctx *h = NULL;
	uint8_t buf[65536], md[CRYPTO_SM3_LEN];
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int r = crypto_sm3_new(&h);
	while (r == 0) {
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			r = -errno;
		if (n <= 0)
			break;
		r = crypto_sm3_update(h, buf, (size_t)n);
	}
	if (r == 0)
		r = crypto_sm3_final(h, md);
	if (r == 0)
		chsm_hex_encode(md, sizeof(md), out);
	crypto_sm3_free(h);
	close(fd);
	return r;
}

/* Makes the package's version available as <state>/vsm-versions/<version>
 * with the package's chsm-vsmd (prog), answering --version with its
 * version; writes that program's path into bin. */
static int install_version(struct api_ctx *ctx, int fd, const crypto_sm2_key *vendor,
			   const struct pkg_info *info, const struct pkg_file *prog, char *bin,
			   size_t cap, char *msg, size_t msglen)
{
	char root[sizeof(ctx->state_dir) + 32], dir[PATH_CAP], tmp[PATH_CAP], path[PATH_CAP + 16];
	char sm3[CRYPTO_SM3_HEX_LEN + 1] = "", err[PKG_ERR_LEN] = "";
	struct stat st;
	int code = GMT_OK;
	snprintf(root, sizeof(root), "%s/%s", ctx->state_dir, VSM_VERSIONS_DIR);
	if (vsm_version_dir(ctx->state_dir, info->version, dir, sizeof(dir)) < 0 ||
	    (size_t)snprintf(path, sizeof(path), "%s/%s", dir, VSM_VERSIONS_PROGRAM) >= cap) {
		snprintf(msg, msglen, "the version folder's name is too long");
		return GMT_E_INTERNAL;
	}
	if (mkdir(root, 0700) < 0 && errno != EEXIST) {
		snprintf(msg, msglen, "cannot create %s: %s", VSM_VERSIONS_DIR, strerror(errno));
		return GMT_E_STORAGE;
	}
	pthread_mutex_lock(&install_lock);
	bool exists = lstat(dir, &st) == 0;
	if (exists && S_ISDIR(st.st_mode) && vsm_version_binary(ctx->state_dir, info->version, bin, cap) == 1 &&
	    file_sm3(path, sm3) == 0 && strcmp(sm3, prog->sm3) == 0) {
		/* Installed already (another VSM's upgrade): shared. */
		code = probe(path, info->version, msg, msglen);
		goto out;
	}
	snprintf(tmp, sizeof(tmp), "%s/.install-%s-XXXXXX", root, info->version);
	if (!mkdtemp(tmp)) {
		snprintf(msg, msglen, "cannot create a temporary folder: %s", strerror(errno));
		code = GMT_E_STORAGE;
		goto out;
	}
	code = pkg_extract(fd, vendor, tmp, NULL, err, sizeof(err));
	if (code != GMT_OK) {
		snprintf(msg, msglen, "package: %s", err);
		rmdir(tmp);
		goto out;
	}
	char tmp_prog[PATH_CAP + 16];
	snprintf(tmp_prog, sizeof(tmp_prog), "%s/%s", tmp, VSM_VERSIONS_PROGRAM);
	code = probe(tmp_prog, info->version, msg, msglen);
	if (code == GMT_OK && exists) {
		/* A folder of this version whose program is not the package's
		 * (damaged, or another build): swapped in one step, so a VSM
		 * starting meanwhile sees one or the other, whole. */
		if (renameat2(AT_FDCWD, tmp, AT_FDCWD, dir, RENAME_EXCHANGE) < 0)
			code = GMT_E_STORAGE;
		else
			chsm_log(CHSM_LOG_WARNING, "vsm.version.replaced", "version", info->version,
				 "note", "the installed chsm-vsmd was not the package's", NULL);
	} else if (code == GMT_OK && rename(tmp, dir) < 0) {
		code = GMT_E_STORAGE;
	}
	if (code == GMT_E_STORAGE && !msg[0])
		snprintf(msg, msglen, "cannot install version %s: %s", info->version, strerror(errno));
	(void)api_remove_tree(tmp);   /* what failed, or the folder swapped out */
	(void)chsm_fsync_parent(dir);   /* the folder <state>/vsm-versions */
	if (code == GMT_OK) {
		snprintf(bin, cap, "%s", path);
		chsm_log(CHSM_LOG_INFO, "vsm.version.installed", "version", info->version, NULL);
	}
out:
	pthread_mutex_unlock(&install_lock);
	return code;
}

/* ---- the task ---- */

/* Ends an upgrade that changed nothing: the VSM, if still upgrading, goes
 * back to state (its process, if any, kept running). */
static void leave_upgrading(struct api_ctx *ctx, const char *id, const char *state)
{
	struct store_vsm v;
	if (store_begin(ctx->store) < 0)
		return;
	if (store_vsm_get(ctx->store, id, &v) == 0 && strcmp(v.state, "upgrading") == 0) {
		snprintf(v.state, sizeof(v.state), "%s", state);
		v.updated_at = chsm_now_ms();
		if (store_vsm_update(ctx->store, &v) == 0 && store_commit(ctx->store) == 0) {
			chsm_log(CHSM_LOG_INFO, "vsm.state", "vsm", id, "state", state, "error", "",
				 NULL);
			return;
		}
	}
	store_rollback(ctx->store);
}

/* The transaction that ends a successful upgrade: version, and state
 * stopped or running (started now). 3003 if the VSM left "upgrading". */
static int finish_upgrade(struct api_ctx *ctx, const char *id, const char *version, bool running)
{
	struct store_vsm v;
	if (store_begin(ctx->store) < 0)
		return GMT_E_STORAGE;
	int code = store_vsm_get(ctx->store, id, &v) < 0 ? GMT_E_STORAGE : GMT_OK;
	if (code == GMT_OK && strcmp(v.state, "upgrading") != 0)
		code = GMT_E_STATE;
	if (code == GMT_OK) {
		snprintf(v.version, sizeof(v.version), "%s", version);
		snprintf(v.state, sizeof(v.state), "%s", running ? "running" : "stopped");
		v.updated_at = chsm_now_ms();
		if (running) {
			v.desired_running = true;
			v.started_at = v.updated_at;
			v.last_error[0] = '\0';
		}
		if (store_vsm_update(ctx->store, &v) < 0 || store_commit(ctx->store) < 0)
			code = GMT_E_STORAGE;
	}
	if (code != GMT_OK) {
		store_rollback(ctx->store);
		return code;
	}
	chsm_log(CHSM_LOG_INFO, "vsm.state", "vsm", id, "state", v.state, "error", "", NULL);
	return GMT_OK;
}

/* A running VSM: stops its process and starts it on bin; the record takes
 * the new version only once that runs. Otherwise the old program runs
 * again and the task fails with 5000 and result {previousVersion, version
 * (the old), attemptedVersion}. */
static int switch_running(struct api_ctx *ctx, const char *id, const char *old,
			  const char *version, const char *bin, json_t **ret_result, char *msg,
			  size_t msglen)
{
	struct store_vsm v;
	char err[160] = "";
	if (store_vsm_get(ctx->store, id, &v) < 0)
		return GMT_E_STORAGE;
	if (strcmp(v.state, "upgrading") != 0) {
		/* Its service died meanwhile (fault): left as it is. */
		snprintf(msg, msglen, "the VSM left the upgrading state (%s)", v.state);
		return GMT_E_STATE;
	}
	int r = vsm_supervisor_stop(ctx->supervisor, id);
	if (r < 0 && r != -ENOENT) {
		snprintf(msg, msglen, "the VSM service could not be stopped: %s", strerror(-r));
		leave_upgrading(ctx, id, "running");
		return GMT_E_INTERNAL;
	}
	/* A restart: the network goes with the process and comes back. */
	api_vsm_net_release(ctx, id);
	char netns[256];
	r = api_vsm_net_prepare(ctx, id, &v.network, netns, sizeof(netns), err, sizeof(err));
	if (r == 0)
		r = api_vsm_spawn(ctx, &v, bin, netns[0] ? netns : NULL, err, sizeof(err));
	if (r == 0) {
		int code = finish_upgrade(ctx, id, version, true);
		if (code == GMT_OK)
			return GMT_OK;
		(void)vsm_supervisor_stop(ctx->supervisor, id);
		snprintf(err, sizeof(err), "the new version could not be recorded (%s)",
			 gmt_code_message(code));
	} else if (!err[0]) {
		snprintf(err, sizeof(err), "%s", strerror(-r));
	}
	api_vsm_net_release(ctx, id);
	/* The record still names the old version: start it again. */
	char again[200] = "";
	int code = api_vsm_do_start(ctx, id, again, sizeof(again));
	snprintf(msg, msglen, "version %s of the VSM service failed to start (%s); %s %s", version,
		 err, code == GMT_OK ? "the VSM runs again on version" :
		 "the VSM could not start again on version", old);
	*ret_result = json_pack("{s:s,s:s,s:s}", "previousVersion", old, "version", old,
				"attemptedVersion", version);
	chsm_log(CHSM_LOG_ERROR, "vsm.upgrade.rolled_back", "vsm", id, "version", old,
		 "attempted", version, "error", err, NULL);
	return GMT_E_INTERNAL;
}

int api_run_vsm_upgrade(struct api_ctx *ctx, const struct store_task *t, json_t **ret_result,
			char *msg, size_t msglen)
{
	const char *id = t->target;
	json_t *params = t->params ? json_loads(t->params, 0, NULL) : NULL;
	const char *url = json_string_value(json_object_get(params, "url"));
	const char *sm3 = json_string_value(json_object_get(params, "sm3"));
	const char *from = json_string_value(json_object_get(params, "fromState"));
	bool running = from && strcmp(from, "running") == 0;
	struct pkg_info info;
	const struct pkg_file *prog = NULL;
	crypto_sm2_key *vendor = NULL;
	struct store_vsm v;
	char old[sizeof(v.version)], bin[PATH_CAP + 16];
	int fd = -1, code = url && sm3 ? GMT_OK : GMT_E_INTERNAL;
	memset(&info, 0, sizeof(info));
	if (code == GMT_OK) {
		int r = store_vsm_get(ctx->store, id, &v);
		code = r == -ENOENT ? GMT_E_VSM_NOT_FOUND : r < 0 ? GMT_E_STORAGE : GMT_OK;
	}
	if (code == GMT_OK) {
		snprintf(old, sizeof(old), "%s", v.version);
		code = api_download_checked(ctx, url, sm3, CHSM_IMAGE_MAX_BYTES, &fd, msg, msglen);
	}
	if (code == GMT_OK)
		code = api_vendor_key(ctx, &vendor, msg, msglen);
	if (code == GMT_OK)
		code = api_package_check(fd, vendor, "vsm", old, VSM_VERSIONS_PROGRAM, &info, &prog,
					 msg, msglen);
	if (code == GMT_OK && vsm_version_name_check(info.version) < 0) {
		snprintf(msg, msglen, "version %s cannot be installed", info.version);
		code = GMT_E_PACKAGE;
	}
	if (code == GMT_OK)
		code = install_version(ctx, fd, vendor, &info, prog, bin, sizeof(bin), msg, msglen);
	if (code != GMT_OK) {
		/* Nothing changed: the VSM is as it was. */
		leave_upgrading(ctx, id, running ? "running" : "stopped");
	} else if (running) {
		code = switch_running(ctx, id, old, info.version, bin, ret_result, msg, msglen);
	} else {
		code = finish_upgrade(ctx, id, info.version, false);
		if (code != GMT_OK)
			leave_upgrading(ctx, id, "stopped");
	}
	if (code == GMT_OK) {
		*ret_result = json_pack("{s:s,s:s}", "previousVersion", old, "version", info.version);
		chsm_log(CHSM_LOG_INFO, "vsm.upgraded", "vsm", id, "from", old, "to", info.version,
			 "running", running ? "yes" : "no", NULL);
	}
	pkg_info_free(&info);
	crypto_sm2_key_free(vendor);
	if (fd >= 0)
		close(fd);
	json_decref(params);
	return code;
}
