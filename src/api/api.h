/*
 * api.h: the management interface of PROFILE.md §3-§9, between the HTTP
 * server and the CHSM's state.
 *
 * api_handle() is the server's request handler. For every request it runs,
 * once and in this order: the body limit (1006, from the HTTP layer), route
 * lookup (1004/1005), authentication (§5), the path parameter (1003),
 * content type and body (1007/1001/1003), availability (5003), idempotency
 * (§5: 3010 or the first answer again), the handler of the interface, the
 * envelope (§6), the response signature, the request log line and the
 * metrics. Handlers only validate their fields and do their work.
 */
#ifndef CHSM_API_H
#define CHSM_API_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "crypto/crypto.h"
#include "http/server.h"
#include "ntp/ntp.h"
#include "platform/platform.h"
#include "store/store.h"
#include "task/task.h"
#include "vsm/supervisor.h"

struct api_metrics;
struct api_stats_cache;

/* Everything the interfaces act on; owned by chsmd. */
struct api_ctx {
	chsm_store *store;
	crypto_sm2_key *device_key;
	char device_fp[CRYPTO_SM3_HEX_LEN + 1];
	char *device_public_pem;
	char device_id[CHSM_VSM_ID_MAX_LEN + 1];
	char serial_number[64];
	char domain_fp[CRYPTO_SM3_HEX_LEN + 1];
	char state_dir[512];
	/* The default chsm-vsmd and the version it reports (VSM upgrades:
	 * api_vsm_versions_init). */
	char vsmd_path[4096];
	char vsmd_version[32];
	int max_vsms;
	int64_t boot_ms;
	int64_t boot_mono_ms;
	vsm_supervisor *supervisor;
	task_engine *tasks;
	ntp_monitor *ntp;                /* NULL when not started */
	chsm_platform *platform;         /* the host (platform.h); NULL: sandbox */
	struct api_metrics *metrics;
	atomic_int chsm_state;          /* enum api_chsm_state */

	/* The platform key, cached from the store; guarded by auth_lock. A
	 * request verifies with its own hold on the key (crypto_sm2_key_ref),
	 * outside the lock, so a rotation may replace it meanwhile. */
	pthread_mutex_t auth_lock;
	crypto_sm2_key *platform_key;
	char platform_fp[CRYPTO_SM3_HEX_LEN + 1];
	int64_t platform_configured_at;

	/* Serialises requests that carry an idempotency key. */
	pthread_mutex_t idem_lock;

	/* Set by the upgrade and reboot tasks (enum api_boot_request, and the
	 * version to start) just before they raise SIGUSR1, which chsmd's
	 * main thread waits for: it then stops like on SIGTERM and asks its
	 * launcher to start the service again (or that version). */
	atomic_int boot_request;
	char boot_version[21];          /* PKG_VERSION_MAX_LEN + 1 */

	/* The replay window: nonces in memory, a durable timestamp ceiling,
	 * the restart floor (replay.h). */
	struct api_replay *replay;
	/* The VSM processes' statistics files as last read (h_vsm.c). */
	struct api_stats_cache *stats_cache;
};

enum api_boot_request { API_BOOT_NONE, API_BOOT_RESTART, API_BOOT_UPGRADE };

enum api_chsm_state {
	CHSM_STATE_INITIALIZING,
	CHSM_STATE_RUNNING,
	CHSM_STATE_UPGRADING,
	CHSM_STATE_RESTORING,
	CHSM_STATE_IMPORTING,
	CHSM_STATE_EXPORTING,
	CHSM_STATE_REBOOTING,
	CHSM_STATE_FAULT,
};
const char *api_chsm_state_name(int state);

/* Sets up ctx's locks and metrics, loads the platform key from the
 * store and, on the linux platform, removes the VSM namespaces an earlier
 * run left and applies the stored 7.2.4 and 7.2.5 configuration to the
 * host again (failures are logged). The other fields are filled by the
 * caller first. */
int api_init(struct api_ctx *ctx);
/* Frees what api_init made; on the linux platform also removes the VSM
 * namespaces (call it after the supervisor stopped every VSM). */
void api_fini(struct api_ctx *ctx);

/* The HTTP handler (ctx is a struct api_ctx *). */
void api_handle(void *ctx, const struct http_request *req, struct http_response *resp);
/* Handler for the optional unauthenticated metrics listener: serves only
 * GET /metrics, unsigned. */
void api_handle_metrics_only(void *ctx, const struct http_request *req,
			     struct http_response *resp);

/* Task executor and interruption hook for the task engine (ctx: api_ctx). */
int api_run_task(void *ctx, const struct store_task *t, json_t **ret_result, char *msg,
		 size_t msglen);
void api_task_interrupted(void *ctx, const struct store_task *t);
/* The engine's retry hook: logs event=store.retry for task t. */
void api_task_retrying(void *ctx, const struct store_task *t, int err);

/* The deferred upgrade and reboot tasks (chsm_boot.c). Task engine hook:
 * whether t is the task the last service deferred (it stays running). */
bool api_boot_owns_task(void *ctx, const struct store_task *t);
/* The CHSM state while the service starts: rebooting or upgrading when a
 * deferred task waits, else initializing. */
int api_boot_start_state(struct api_ctx *ctx);
/* Once the service is healthy and its launcher answered: ends the deferred
 * task, if any (an upgrade succeeds when this is its version). */
void api_boot_finish(struct api_ctx *ctx);

/* Supervisor callback: a VSM process died without being asked to. */
void api_vsm_died(void *ctx, const char *vsm_id, const char *reason);

/* At start, before the task engine: records the supervisor's default
 * chsm-vsmd (vsmd_path) and learns its version by running it with
 * --version (chsm_version() when it does not answer, logged); then every
 * VSM whose version has no installed folder (<state>/vsm-versions) runs the
 * default, so its record takes the default's version (logged). Returns 0,
 * -ENAMETOOLONG, or a store error. */
int api_vsm_versions_init(struct api_ctx *ctx, const char *vsmd_path);

/* At start: runs again the VSMs that were running (desired_running), and
 * settles VSMs left in a transitional state. */
void api_resume_vsms(struct api_ctx *ctx);

/* Hands the stored NTP configuration (7.2.5) to ctx->ntp. */
void api_apply_ntp_config(struct api_ctx *ctx);
/* NTP monitor callback: logs a clock that is off or unsynchronised. */
void api_ntp_result(void *ctx, const struct ntp_status *st);

/* Reloads the platform key from the store into the cache. */
int api_reload_platform_key(struct api_ctx *ctx);

#endif
