/*
 * internal.h: what the API's router and its handlers share. Private to
 * src/api.
 */
#ifndef CHSM_API_INTERNAL_H
#define CHSM_API_INTERNAL_H

#include <jansson.h>
#include <stdbool.h>

#include "api/api.h"
#include "api/replay.h"
#include "api/validate.h"
#include "pkg/pkg.h"
#include "proto/codes.h"
#include "proto/jsonw.h"

enum api_auth { API_AUTH_NONE, API_AUTH_PLATFORM, API_AUTH_ENROLL_OR_PLATFORM };

struct api_call;
typedef void (*api_handler_fn)(struct api_call *c);

struct api_route {
	const char *method;
	const char *pattern;        /* under /gmt0088/v1; {vsmId} and {taskId} */
	const char *interface;      /* "7.3.1", "vsm.list", ... for logs/metrics */
	api_handler_fn handler;
	enum api_auth auth;
	bool async;
};

struct api_call {
	struct api_ctx *ctx;
	const struct http_request *req;
	const struct api_route *route;
	int route_index;
	char request_id[32];
	char key_id[CRYPTO_SM3_HEX_LEN + 1];
	char param[CHSM_VSM_ID_MAX_LEN + 1];   /* {vsmId} or {taskId} */
	bool enrollment;
	json_t *body;                           /* the request object ({} if none) */
	/* A mutating request with an idempotency key (§5): the key, the SM3
	 * of the body, and whether the answer is recorded already (by
	 * api_submit_task, in the transaction that queued the task). */
	const char *idem_key;
	char idem_sm3[CRYPTO_SM3_HEX_LEN + 1];
	bool idem_recorded;
	/* results */
	int code;
	char message[256];
	json_t *data;
	char *data_text;                        /* data as JSON text instead (api_ok_text) */
	size_t data_text_len;
	bool accepted;                          /* 202 */
	char *raw_body;                         /* non-JSON answer (metrics) */
	const char *raw_content_type;
};

/* Sets a failure; msg (may be NULL: the code's message) is printf-style and
 * must never carry a secret. */
void api_fail(struct api_call *c, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Sets success with data (stolen; may be NULL). */
void api_ok(struct api_call *c, json_t *data);
/* Sets success with data given as the text of a JSON object (stolen;
 * written by proto/jsonw.h), for answers too large to build as a tree. */
void api_ok_text(struct api_call *c, char *text, size_t len);
/* Field checks for c->body; on failure sets c's error and returns false. */
bool api_fields(struct api_call *c, const struct api_field *fields);
/* The optional "callbackUrl" of an async request, validated (NULL if absent).
 * Returns false (with c's error set) when present and invalid. */
bool api_callback_url(struct api_call *c, const char **ret_url);
/* Checks fields, then the url (https, http or file) and sm3 (64 hex) of
 * a request that downloads an image or package, and its callbackUrl. On
 * failure sets c's error and returns false. */
bool api_download_fields(struct api_call *c, const struct api_field *fields);
/* Admits, records and queues a task on target with params (may be NULL),
 * applying prepare(ctx, arg) inside the same transaction; prepare returns a
 * gmt_code (e.g. 3003) to refuse. On success answers 202 with the task. */
typedef int (*api_prepare_fn)(struct api_call *c, void *arg);
void api_submit_task(struct api_call *c, const char *operation, const char *target,
		     const json_t *params, api_prepare_fn prepare, void *arg);

/* Route table and its size (router.c). */
extern const struct api_route api_routes[];
extern const int api_route_count;

/* Handlers. */
void h_chsm_info(struct api_call *c);
void h_chsm_status(struct api_call *c);
void h_chsm_status_all(struct api_call *c);
void h_chsm_network(struct api_call *c);
void h_chsm_ntp(struct api_call *c);
void h_chsm_image_upload(struct api_call *c);
void h_chsm_log_upload(struct api_call *c);
void h_chsm_image_export(struct api_call *c);
void h_chsm_image_import(struct api_call *c);
void h_chsm_upgrade(struct api_call *c);
void h_chsm_reboot(struct api_call *c);
void h_chsm_backup(struct api_call *c);
void h_chsm_restore(struct api_call *c);
void h_vsm_list(struct api_call *c);
void h_vsm_info(struct api_call *c);
void h_vsm_status(struct api_call *c);
void h_vsm_network(struct api_call *c);
void h_vsm_token(struct api_call *c);
void h_vsm_image_export(struct api_call *c);
void h_vsm_image_import(struct api_call *c);
void h_vsm_start(struct api_call *c);
void h_vsm_stop(struct api_call *c);
void h_vsm_restart(struct api_call *c);
void h_vsm_reset(struct api_call *c);
void h_vsm_upgrade(struct api_call *c);
void h_vsm_create(struct api_call *c);
void h_vsm_delete(struct api_call *c);
void h_auth_fingerprint(struct api_call *c);
void h_auth_platform_key(struct api_call *c);
void h_task_get(struct api_call *c);
void h_metrics(struct api_call *c);

/* VSM JSON views (h_vsm.c), used by status-all too. */
json_t *api_vsm_details(struct api_ctx *ctx, const struct store_vsm *v);
json_t *api_vsm_status(struct api_ctx *ctx, const struct store_vsm *v);
/* The same with VSM v's state digest already known (store_vsm_list_digests). */
json_t *api_vsm_status_digest(struct api_ctx *ctx, const struct store_vsm *v, const char *digest);
/* What a 7.3.2 object shows besides the stored VSM: its process's
 * figures (0 when it does not run) and statistics (0, 0 and NULL, shown
 * as {}, when there are none). */
struct api_vsm_figures {
	int64_t uptime_seconds, sessions, ops_total;
	char *ops_text;               /* the "ops" object as compact JSON, or NULL */
	int64_t cpu_tenths, memory_tenths;
};
/* Writes the 7.3.2 object of v, with digest and f, into w: the bytes
 * json_dumps gives for the object 7.3.2 describes (GMT_JSON_DUMP_FLAGS). */
void api_vsm_status_write(struct gmt_jsonw *w, const struct store_vsm *v, const char *digest,
			  const struct api_vsm_figures *f);
/* The statistics VSM id's process wrote (docs/vsm.md) into f's
 * sessions, ops_total and ops_text (a new string the caller frees):
 * false, with f unchanged, when the file is absent, malformed, or its
 * updatedAt is not within 10 s of now. Never older than the file at the
 * time of the call when sync (the cache of the files is brought up to
 * date first); a caller that passes false synced since its request
 * began. */
bool api_vsm_stats_read(struct api_ctx *ctx, const char *id, bool sync, struct api_vsm_figures *f);
/* Writes 7.2.3's "vsms" array for the n VSMs v (sorted by id, as the
 * store lists them) with their digests into w: the process figures of
 * all of them under one hold of the supervisor's lock, the statistics
 * files' cache brought up to date once. Returns 0 or -ENOMEM (w's own
 * failures stay in w). */
int api_vsm_status_all_write(struct api_ctx *ctx, const struct store_vsm *v,
			     const char (*digests)[65], size_t n, struct gmt_jsonw *w);
/* The cache of the VSM processes' statistics files (read_vsm_stats in
 * h_vsm.c): api_init makes it, watching dir (the files' directory; NULL
 * or a failed watch: every use checks each file with stat), api_fini
 * frees it (accepts NULL). */
int api_stats_cache_new(const char *dir, struct api_stats_cache **ret);
void api_stats_cache_free(struct api_stats_cache *c);
/* Whether c watches its directory (for tests). */
bool api_stats_cache_watching(const struct api_stats_cache *c);
/* CHSM running status object of 7.2.2 (h_chsm.c). */
json_t *api_chsm_status(struct api_ctx *ctx);
/* The statistics file VSM id's process writes,
 * <state_dir>/run/vsm-<id>.stats.json, into out (ops.c). Returns 0, or
 * -ENAMETOOLONG when it does not fit len bytes. */
int api_vsm_stats_path(const struct api_ctx *ctx, const char *id, char *out, size_t len);

/* VSM lifecycle steps (ops.c), for the image tasks: write a VSM's state
 * in one transaction (desired_running -1 keeps it); start its process,
 * ending running or fault. Both return 0/a negative errno and a gmt_code. */
int api_vsm_set_state(struct api_ctx *ctx, const char *id, const char *state, const char *error,
		      int desired_running, bool started);
int api_vsm_do_start(struct api_ctx *ctx, const char *id, char *msg, size_t msglen);
/* Starts v's process on binary (NULL: the program of v's version,
 * api_vsm_binary) in network namespace netns (NULL: none; from
 * api_vsm_net_prepare), leaving its state and network to the caller.
 * Returns 0 (also when it runs already) or the -errno of
 * vsm_supervisor_start, with a reason in err. */
int api_vsm_spawn(struct api_ctx *ctx, const struct store_vsm *v, const char *binary,
		  const char *netns, char *err, size_t errlen);
/* set_state for a task's last word on a VSM: while the store fails with a
 * full disk or an I/O error it tries again (logging "store.retry" once) for
 * up to two minutes, after which the next start settles the VSM. */
int api_vsm_settle_state(struct api_ctx *ctx, const char *id, const char *state,
			 const char *error);

/* The platform's side of the API (hostnet.c). */
/* Checks a 7.2.4 body strictly into ret; on failure sets c's error (1003)
 * and returns false. */
bool api_parse_chsm_network(struct api_call *c, const json_t *body, struct platform_network *ret);
/* Applies next through the platform and stores c->body; answers c. */
void api_chsm_network_apply(struct api_call *c, const struct platform_network *next);
/* At start (api_init): the linux platform's cleanup and re-application. */
void api_platform_resume(struct api_ctx *ctx);
/* Applies a 7.2.5 document (NULL: the stored one; -ENOENT when none) to
 * the platform's time service: 0 with *ret_applied, or -errno with err. */
int api_time_apply(struct api_ctx *ctx, const json_t *cfg, const char **ret_applied, char *err,
		   size_t errlen);
/* A stored VSM network as the platform's; -EINVAL when it does not parse. */
int api_vsm_platform_net(const char *id, const struct store_vsm_network *n,
			 struct platform_vsm_net *ret);
/* Before VSM id's process starts: its network (netns: "" or the
 * namespace file to run in). 0 or -errno with err. */
int api_vsm_net_prepare(struct api_ctx *ctx, const char *id, const struct store_vsm_network *n,
			char *netns, size_t cap, char *err, size_t errlen);
/* After it stopped (or failed to start): what prepare made goes. */
void api_vsm_net_release(struct api_ctx *ctx, const char *id);
/* On the linux platform an address is one VSM's only (3009 otherwise). */
bool api_vsm_ip_free(struct api_call *c, const struct store_vsm_network *n, const char *self);
/* Moves running VSM id's listener from old to next (platform, then the
 * process). Returns 0; -ENOENT when the process does not run (nothing
 * moved, c untouched); or another -errno with c's error set (3009, 1003
 * or 5000), nothing moved. */
int api_vsm_move(struct api_call *c, const char *id, const struct store_vsm_network *old,
		 const struct store_vsm_network *next);

/* Image tasks (images.c): whether op is one of them, and running one. */
bool api_image_operation(const char *op);
int api_run_image_task(struct api_ctx *ctx, const struct store_task *t, json_t **ret_result,
		       char *msg, size_t msglen);


/* CHSM upgrade and reboot (chsm_boot.c): whether op is one of them, and
 * running one: an error code, or TASK_DEFERRED once chsmd was asked to
 * stop (api.h). */
bool api_boot_operation(const char *op);
/* The vendor's public key, <state>/vendor-key.pem (chsmd init
 * --vendor-key), into *ret_key: GMT_OK, 4001 when none is configured (no
 * package can be verified), 5001 when it cannot be read (chsm_boot.c). */
int api_vendor_key(struct api_ctx *ctx, crypto_sm2_key **ret_key, char *msg, size_t msglen);
/* Removes path and everything under it, links not followed: 0 or -errno
 * (chsm_boot.c). */
int api_remove_tree(const char *path);
/* Verifies the upgrade package in fd with the vendor key (4001, 4003,
 * "package: <reason>") and checks that it is for component, strictly
 * newer than current, and holds program as an executable (4006). On
 * success *ret_info is filled (pkg_info_free) and *ret_prog points into
 * it; on failure *ret_info is empty (chsm_boot.c). */
int api_package_check(int fd, const crypto_sm2_key *vendor, const char *component,
		      const char *current, const char *program, struct pkg_info *ret_info,
		      const struct pkg_file **ret_prog, char *msg, size_t msglen);
int api_run_boot_task(struct api_ctx *ctx, const struct store_task *t, char *msg, size_t msglen);
/* Downloads url (at most max_bytes) into an unlinked temporary file under
 * <state_dir>/tmp and checks its SM3 against sm3 (4008); on success
 * *ret_fd is the file (close it). 4005 download, 5001 local file
 * (images.c). */
int api_download_checked(struct api_ctx *ctx, const char *url, const char *sm3, uint64_t max_bytes,
			 int *ret_fd, char *msg, size_t msglen);

/* VSM upgrades (upgrade.c): the program a VSM of version runs, into buf
 * (cap bytes): the installed <state>/vsm-versions/<version>/chsm-vsmd, or
 * NULL when it is not installed (the supervisor's default). */
const char *api_vsm_binary(struct api_ctx *ctx, const char *version, char *buf, size_t cap);
/* The version of the default chsm-vsmd (new VSMs are on it). */
const char *api_vsm_default_version(const struct api_ctx *ctx);
/* The vsm.upgrade task (7.3.11). */
int api_run_vsm_upgrade(struct api_ctx *ctx, const struct store_task *t, json_t **ret_result,
			char *msg, size_t msglen);

/* Metrics (metrics.c). */
int api_metrics_new(struct api_metrics **ret);
void api_metrics_free(struct api_metrics *m);
void api_metrics_record(struct api_metrics *m, int route_index, int code, int64_t micros);
/* Prometheus text of everything, malloc'ed. */
char *api_metrics_render(struct api_ctx *ctx);

#endif
