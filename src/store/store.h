/*
 * store.h: the CHSM's durable state, in one SQLite database (WAL,
 * synchronous=FULL, secure_delete=ON), so that a change is on disk before
 * the request that made it is answered, and deleted secrets do not linger in
 * free pages.
 *
 * Secrets (token secrets, upload credentials, the enrollment code, VSM key
 * material) are sealed with crypto_seal under a key derived from the master
 * key, with the row's identity as associated data, so a sealed value cannot
 * be moved to another row. Schema migrations run at open, in order, each in
 * its own transaction; the schema version is kept in PRAGMA user_version.
 *
 * Thread safety: one chsm_store may be used from many threads; calls are
 * serialised by an internal recursive mutex. store_begin() takes that mutex
 * and holds it until store_commit()/store_rollback(), so a sequence of calls
 * between them is atomic with respect to other threads.
 *
 * Every function returns 0 or a negative errno: -ENOENT (no such row),
 * -EEXIST (unique key taken), -EINVAL (bad argument), -EIO (SQLite failure),
 * -EBADMSG (a sealed value failed to open: wrong master key or tampering),
 * -ENOMEM. This module is the only one that includes sqlite3.h. It never logs.
 */
#ifndef CHSM_STORE_H
#define CHSM_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/limits.h"

typedef struct chsm_store chsm_store;

#define STORE_MASTER_KEY_LEN 32

/* Opens (creating if needed) the database at path, runs migrations. */
int store_open(const char *path, const uint8_t master_key[STORE_MASTER_KEY_LEN],
	       chsm_store **ret_store);
void store_close(chsm_store *s);
/* The schema version after migrations. */
int store_schema_version(chsm_store *s);

/* Transactions (see thread safety above). Nested begin is an error. */
int store_begin(chsm_store *s);
int store_commit(chsm_store *s);
int store_rollback(chsm_store *s);

/* ---- device settings: named values ---- */
/* Plain values (device configuration as JSON text, fingerprints, ...).
 * *ret_value is malloc'ed. -ENOENT when unset. */
int store_setting_get(chsm_store *s, const char *name, char **ret_value);
/* value NULL deletes. */
int store_setting_set(chsm_store *s, const char *name, const char *value);
/* Sealed values: same, but encrypted at rest. *ret_data is secret
 * (crypto_free_secret) and NUL-terminated (ret_len excludes the NUL). */
int store_secret_get(chsm_store *s, const char *name, uint8_t **ret_data, size_t *ret_len);
int store_secret_set(chsm_store *s, const char *name, const void *data, size_t len);

/* ---- replay protection (PROFILE.md §5) ---- */
/* Records nonce with its timestamp. Returns 0 when it was new, 1 when it is
 * already recorded (replay). Forgets nonces whose timestamp is older than
 * now_ms - 2 * CHSM_AUTH_WINDOW_MS (they can no longer pass the window). */
int store_nonce_use(chsm_store *s, const char *nonce, int64_t timestamp_ms, int64_t now_ms);

/* ---- idempotency keys (PROFILE.md §5) ---- */
struct store_idem {
	char *method;
	char *target;
	char body_sm3[65];
	int http_status;
	char *response;      /* the response body first sent */
	size_t response_len;
	int64_t created_at;
};
/* Looks key up among records newer than now_ms - CHSM_IDEMPOTENCY_TTL_MS. */
int store_idem_get(chsm_store *s, const char *key, int64_t now_ms, struct store_idem *ret);
/* Records the first response to key (replacing an expired record). */
int store_idem_put(chsm_store *s, const char *key, const struct store_idem *rec);
void store_idem_clear(struct store_idem *rec);

/* ---- VSMs ---- */
struct store_vsm_network {
	bool configured;
	char ip_address[48];   /* IPv4 or IPv6 text */
	int prefix_length;
	char gateway[48];      /* "" when none */
	int port;
};

struct store_vsm {
	char id[CHSM_VSM_ID_MAX_LEN + 1];
	char name[CHSM_VSM_NAME_MAX_LEN + 1];
	char state[16];            /* PROFILE.md §8 VSM state */
	char version[32];          /* VSM software version */
	int64_t created_at;
	int64_t updated_at;
	int64_t state_version;     /* grows with every change of keys or config */
	int max_keys;
	int max_sessions;
	int memory_mib;
	struct store_vsm_network network;
	char token_id[CHSM_VSM_NAME_MAX_LEN + 1];   /* "" when none */
	bool token_configured;
	int64_t token_updated_at;
	char last_error[256];      /* "" when none */
	bool desired_running;      /* run it again after a CHSM restart */
	int64_t started_at;        /* 0 when not running */
};

/* -EEXIST when the id is taken. Token fields are ignored (see below). */
int store_vsm_insert(chsm_store *s, const struct store_vsm *v);
int store_vsm_get(chsm_store *s, const char *id, struct store_vsm *ret);
/* All VSMs ordered by id; *ret_vsms is malloc'ed (free()). */
int store_vsm_list(chsm_store *s, struct store_vsm **ret_vsms, size_t *ret_count);
int store_vsm_count(chsm_store *s, size_t *ret_count);
/* Replaces every column of the row with v (token fields ignored). */
int store_vsm_update(chsm_store *s, const struct store_vsm *v);
/* Removes the VSM, its token and every key; nothing remains readable. */
int store_vsm_delete(chsm_store *s, const char *id);
/* The id of the VSM other than exclude_id whose network has this address
 * and port, into ret_id; -ENOENT when none. */
int store_vsm_find_endpoint(chsm_store *s, const char *ip_address, int port,
			    const char *exclude_id, char ret_id[CHSM_VSM_ID_MAX_LEN + 1]);

/* Token: sets token_id, the sealed secret, token_configured and
 * token_updated_at = now_ms. */
int store_vsm_token_set(chsm_store *s, const char *id, const char *token_id,
			const uint8_t *secret, size_t secret_len, int64_t now_ms);
/* *ret_secret is secret (crypto_free_secret). -ENOENT when none. */
int store_vsm_token_get(chsm_store *s, const char *id, uint8_t **ret_secret, size_t *ret_len);
/* Destroys the token (zeroised: the row is overwritten, then deleted). */
int store_vsm_token_clear(chsm_store *s, const char *id);

/* Keys of a VSM, by (type, index). type is a short string ("sign",
 * "enc", "kek"); material is the key's secret encoding, sealed at rest. */
int store_vsm_key_put(chsm_store *s, const char *id, const char *type, int index,
		      const uint8_t *material, size_t len);
int store_vsm_key_get(chsm_store *s, const char *id, const char *type, int index,
		      uint8_t **ret_material, size_t *ret_len);
int store_vsm_key_delete(chsm_store *s, const char *id, const char *type, int index);
int store_vsm_key_count(chsm_store *s, const char *id, size_t *ret_count);
/* Destroys every key of the VSM (zeroised). */
int store_vsm_keys_clear(chsm_store *s, const char *id);
/* SM3 over the VSM's keys (in (type, index) order, each as type, index,
 * length and plaintext material) and its token (id and secret), not its ID,
 * name or network: equal on two VSMs exactly when they hold the same keys
 * and token. Lowercase hex into out. */
int store_vsm_state_digest(chsm_store *s, const char *id, char out[65]);

/* ---- tasks (PROFILE.md §7) ---- */
struct store_task {
	char id[32];
	char operation[32];        /* e.g. "vsm.start" */
	char target[CHSM_VSM_ID_MAX_LEN + 1];   /* VSM id, or "chsm" */
	char state[12];            /* pending, running, succeeded, failed */
	int code;
	char message[256];
	int64_t created_at;
	int64_t started_at;        /* 0 until started */
	int64_t finished_at;       /* 0 until finished */
	char *params;              /* JSON text of the task's parameters, or NULL */
	char *result;              /* JSON text of the result, or NULL */
	char *callback_url;        /* or NULL */
	int callback_attempts;
	bool callback_delivered;
	int64_t callback_next_at;  /* when to try again; 0 when nothing is due */
};
int store_task_insert(chsm_store *s, const struct store_task *t);
int store_task_get(chsm_store *s, const char *id, struct store_task *ret);
int store_task_update(chsm_store *s, const struct store_task *t);
/* Tasks in a state (oldest first). *ret_tasks is malloc'ed; free with
 * store_task_array_free. */
int store_task_list_by_state(chsm_store *s, const char *state, struct store_task **ret_tasks,
			     size_t *ret_count);
/* Pending plus running tasks. */
int store_task_count_active(chsm_store *s, size_t *ret_count);
/* The id of a pending or running task on target; -ENOENT when none. */
int store_task_active_for_target(chsm_store *s, const char *target, char ret_id[32]);
/* Finished tasks with a callback not delivered and callback_next_at <= now. */
int store_task_callbacks_due(chsm_store *s, int64_t now_ms, struct store_task **ret_tasks,
			     size_t *ret_count);
/* Deletes finished tasks that finished before cutoff_ms and whose callback
 * is delivered or abandoned (callback_next_at == 0). */
int store_task_purge(chsm_store *s, int64_t cutoff_ms);
void store_task_clear(struct store_task *t);
void store_task_array_free(struct store_task *tasks, size_t count);

#endif
