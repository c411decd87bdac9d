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
 * -EEXIST (unique key taken), -EINVAL (bad argument, or a string that does
 * not fit its field: nothing is ever truncated), -EIO (SQLite failure),
 * -ENOSPC (disk full), -EBADMSG (a sealed value failed to open: wrong master
 * key or tampering), -ENOMEM. Every change is committed (WAL fsynced) before
 * the function that made it returns, unless it runs inside store_begin.
 * This module is the only one that includes sqlite3.h. It never logs.
 *
 * Zeroisation (PROFILE.md §11): a sealed value that is deleted or replaced
 * is first overwritten with zeros of the same length, then deleted
 * (secure_delete zeroes the freed space), and the WAL is checkpointed and
 * truncated after the commit, so neither the value nor its sealed form stays
 * readable in the database, -wal or -shm file. Should that checkpoint not
 * complete (another connection reads or checkpoints the WAL for longer than
 * STORE_CHECKPOINT_WAIT_MS), the call still succeeds, since its change is
 * committed, and the checkpoint stays pending: every later write and
 * store_close try again. docs/storage.md has the design and the schema.
 */
#ifndef CHSM_STORE_H
#define CHSM_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/limits.h"

typedef struct chsm_store chsm_store;

#define STORE_MASTER_KEY_LEN 32
/* Setting and secret names are internal identifiers, never peer input. */
#define STORE_NAME_MAX_LEN     128
/* Key types ("sign", "enc", "kek", ...). */
#define STORE_KEY_TYPE_MAX_LEN 31
/* A secret, token secret or key's material: PEM keys and credential header
 * sets are a few KiB; this bounds what one row can hold. */
#define STORE_VALUE_MAX_LEN    (64 * 1024)
/* Milliseconds a call waits for another process holding the database. */
#define STORE_BUSY_TIMEOUT_MS  5000
/* How long a zeroisation's checkpoint waits for other connections. */
#define STORE_CHECKPOINT_WAIT_MS 200

/* Opens (creating if needed, mode 0600) the database at path and runs the
 * migrations the database lacks. Derives the sealing key from master_key
 * (a wrong master key is only noticed when a sealed value is read: -EBADMSG).
 * Returns -EPROTO when the database's schema is newer than this code knows
 * (it is left untouched), -EIO when it cannot be opened or is not a database. */
int store_open(const char *path, const uint8_t master_key[STORE_MASTER_KEY_LEN],
	       chsm_store **ret_store);
/* Checkpoints, closes the database and wipes the sealing key. Accepts NULL. */
void store_close(chsm_store *s);
/* The schema version after migrations (> 0), or -EINVAL when s is NULL. */
int store_schema_version(chsm_store *s);

/* Transactions (see thread safety above). store_begin starts a write
 * transaction and keeps the store's mutex until store_commit or
 * store_rollback, which the same thread must call. A nested begin, or a
 * commit/rollback without begin, is -EINVAL. A call failing inside the
 * transaction undoes only its own changes; if SQLite had to abort the whole
 * transaction (disk full, I/O error), later calls and store_commit return an
 * error and the caller rolls back. Zeroised rows leave the WAL at commit. */
int store_begin(chsm_store *s);
int store_commit(chsm_store *s);
int store_rollback(chsm_store *s);
/* A read transaction: store_read_begin takes the store's mutex and opens a
 * (deferred) read transaction, so the reads until store_read_end see one
 * state of the database and take SQLite's locks once; store_read_end ends
 * it and releases the mutex (the same thread calls it). Only reads may run
 * in between; nested, or inside store_begin or a snapshot, it only holds
 * the mutex. Keep it short: other threads' store calls wait for it. */
int store_read_begin(chsm_store *s);
void store_read_end(chsm_store *s);

/* ---- device settings: named values ---- */
/* Plain values (device configuration as JSON text, fingerprints, ...).
 * *ret_value is malloc'ed. -ENOENT when unset. */
int store_setting_get(chsm_store *s, const char *name, char **ret_value);
/* Sets name to value; value NULL deletes (0 also when it was unset). */
int store_setting_set(chsm_store *s, const char *name, const char *value);
/* Sealed values: same, but encrypted at rest (AAD "secret" NUL name NUL).
 * *ret_data is secret (crypto_free_secret(*ret_data, *ret_len)) and
 * NUL-terminated (ret_len excludes the NUL). -ENOENT when
 * unset, -EBADMSG when it does not open under this master key. */
int store_secret_get(chsm_store *s, const char *name, uint8_t **ret_data, size_t *ret_len);
/* Seals and stores len bytes of data (at most STORE_VALUE_MAX_LEN) under
 * name; data NULL deletes. A replaced or deleted value is zeroised. */
int store_secret_set(chsm_store *s, const char *name, const void *data, size_t len);

/* ---- replay protection (PROFILE.md §5) ---- */
/* Records nonce (1..CHSM_NONCE_MAX_LEN characters) with its timestamp.
 * Returns 0 when it was new, 1 when it is already recorded (replay). At most
 * once per second of now_ms, forgets nonces whose timestamp is older than
 * now_ms - 2 * CHSM_AUTH_WINDOW_MS (they can no longer pass the window). */
int store_nonce_use(chsm_store *s, const char *nonce, int64_t timestamp_ms, int64_t now_ms);
/* The batch form (group commit): records the n items in one write
 * transaction, with the purge above, and one commit. On success returns 0
 * with results[i] 0 (new), 1 (already recorded, or equal to an earlier item
 * of the same batch) or -EINVAL (empty or longer than CHSM_NONCE_MAX_LEN;
 * the other items are recorded all the same). On a storage failure returns
 * -errno and records none of them (results undefined). Every 0 is durable
 * when the call returns. n == 0 does nothing. */
struct store_nonce {
	const char *nonce;
	int64_t timestamp_ms;
};
int store_nonces_use(chsm_store *s, const struct store_nonce *items, size_t n, int64_t now_ms,
		     int *results);

/* Calls fn for every recorded nonce whose timestamp is above after_ms, in
 * no particular order, under the store's mutex (fn must not call the
 * store). Stops at fn's first negative answer and returns it; 0 when all
 * were seen, or the store's -errno. */
int store_nonces_each(chsm_store *s, int64_t after_ms,
		      int (*fn)(void *ctx, const char *nonce, int64_t timestamp_ms), void *ctx);

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
/* Looks key up among records newer than now_ms - CHSM_IDEMPOTENCY_TTL_MS;
 * -ENOENT when there is none. On success *ret holds malloc'ed strings
 * (response is never NULL and is NUL-terminated); free with store_idem_clear. */
int store_idem_get(chsm_store *s, const char *key, int64_t now_ms, struct store_idem *ret);
/* Records the first response to key (1..CHSM_IDEMPOTENCY_KEY_MAX_LEN
 * characters). Records older than rec->created_at - CHSM_IDEMPOTENCY_TTL_MS,
 * this key's included, are forgotten first; -EEXIST when key still has a
 * live record. rec->response may be NULL only with response_len 0. */
int store_idem_put(chsm_store *s, const char *key, const struct store_idem *rec);
/* Frees the strings of rec and zeroes it. Accepts NULL. */
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

/* -EEXIST when the id is taken; -EINVAL when id is empty or a string field
 * is not NUL-terminated. Token fields are ignored (see below). */
int store_vsm_insert(chsm_store *s, const struct store_vsm *v);
/* The VSM id, with its token fields; -ENOENT when there is none. */
int store_vsm_get(chsm_store *s, const char *id, struct store_vsm *ret);
/* All VSMs ordered by id; *ret_vsms is malloc'ed (free()). */
int store_vsm_list(chsm_store *s, struct store_vsm **ret_vsms, size_t *ret_count);
int store_vsm_count(chsm_store *s, size_t *ret_count);
/* How many VSMs there are, and how many in state "running" and "fault":
 * what store_vsm_list would show, without its query on most calls. The
 * counts are kept in memory from one query until a write of a VSM row
 * (insert, update, delete) or the end of an explicit transaction; a hit
 * takes neither the store's mutex nor SQLite's file locks, so it does not
 * wait for a commit in progress. -EPERM on a restricted store. */
struct store_vsm_counts {
	size_t total, running, fault;
};
int store_vsm_counts(chsm_store *s, struct store_vsm_counts *ret);
/* Replaces every column of the row with v (token fields ignored); -ENOENT
 * when there is no VSM v->id. */
int store_vsm_update(chsm_store *s, const struct store_vsm *v);
/* Removes the VSM, its token and every key, zeroised; nothing remains
 * readable. -ENOENT when there is no such VSM. */
int store_vsm_delete(chsm_store *s, const char *id);
/* The id of the VSM other than exclude_id (NULL: none excluded) whose
 * configured network has this address (compared as text) and port, into
 * ret_id; -ENOENT when none. */
int store_vsm_find_endpoint(chsm_store *s, const char *ip_address, int port,
			    const char *exclude_id, char ret_id[CHSM_VSM_ID_MAX_LEN + 1]);

/* Token: sets token_id, the sealed secret (1..STORE_VALUE_MAX_LEN bytes,
 * AAD "token" NUL id NUL token_id NUL), token_configured and
 * token_updated_at = now_ms; a previous token is zeroised. Every token and
 * key change below also adds one to the VSM's state_version. -ENOENT when
 * there is no such VSM. */
int store_vsm_token_set(chsm_store *s, const char *id, const char *token_id,
			const uint8_t *secret, size_t secret_len, int64_t now_ms);
/* *ret_secret is secret (crypto_free_secret). -ENOENT when there is no
 * such VSM or it has no token; -EBADMSG when it does not open. */
int store_vsm_token_get(chsm_store *s, const char *id, uint8_t **ret_secret, size_t *ret_len);
/* Destroys the token (zeroised: the row is overwritten, then deleted).
 * 0 also when the VSM had none; -ENOENT when there is no such VSM. */
int store_vsm_token_clear(chsm_store *s, const char *id);

/* Keys of a VSM, by (type, index). type is a short string ("sign",
 * "enc", "kek"; 1..STORE_KEY_TYPE_MAX_LEN characters), index >= 0; material
 * is the key's secret encoding (1..STORE_VALUE_MAX_LEN bytes), sealed at
 * rest with AAD "key" NUL id NUL type NUL decimal-index NUL.
 * Put stores the key, zeroising a key it replaces; -ENOENT when there is no
 * such VSM. */
int store_vsm_key_put(chsm_store *s, const char *id, const char *type, int index,
		      const uint8_t *material, size_t len);
/* *ret_material is secret (crypto_free_secret). -ENOENT when there is no
 * such key; -EBADMSG when it does not open. */
int store_vsm_key_get(chsm_store *s, const char *id, const char *type, int index,
		      uint8_t **ret_material, size_t *ret_len);
/* Destroys one key (zeroised); -ENOENT when there is no such key. */
int store_vsm_key_delete(chsm_store *s, const char *id, const char *type, int index);
/* Number of keys of the VSM; -ENOENT when there is no such VSM. */
int store_vsm_key_count(chsm_store *s, const char *id, size_t *ret_count);
/* Destroys every key of the VSM (zeroised); -ENOENT when there is no such
 * VSM. */
int store_vsm_keys_clear(chsm_store *s, const char *id);
/* SM3 over the VSM's keys and token, not its ID, name or network: equal on
 * two VSMs exactly when they hold the same keys and token. The digested
 * bytes are, for each key in (type, index) order (types compared byte-wise,
 * a type before the longer types it prefixes; indexes ascending):
 *     type bytes, 0x00, index (4 bytes big-endian),
 *     material length (4 bytes big-endian), plaintext material
 * then, when the VSM has a token:
 *     "token", 0x00, token_id bytes, 0x00,
 *     secret length (4 bytes big-endian), plaintext secret
 * or, when it has none: "notoken", 0x00.
 * Lowercase hex (64 digits and a NUL) into out. -ENOENT when there is no
 * such VSM, -EBADMSG when a sealed value does not open. Plaintexts are wiped. */
int store_vsm_state_digest(chsm_store *s, const char *id, char out[65]);
/* Every VSM as store_vsm_list gives them (*ret_vsms, *ret_count) and, in
 * the same order, each one's state digest as store_vsm_state_digest gives
 * it (*ret_digests, malloc'ed), all read in one read transaction. A digest
 * is computed again only when the sealed token or keys it covers changed
 * since the store last computed it (the store keeps the digests and a
 * fingerprint of the sealed values they came from). Master stores and
 * their snapshots only (-EPERM on a restricted store). */
int store_vsm_list_digests(chsm_store *s, struct store_vsm **ret_vsms, char (**ret_digests)[65],
			   size_t *ret_count);

/* ---- per-VSM sealing and the VSM process's restricted view ----
 * A VSM's token and keys are sealed under its own subkey,
 *     k_vsm = crypto_kdf_sm3(vsm_root, 32, "vsm-seal-v1", vsm_id, len, 32)
 * where vsm_root is derived from the master key at store_open. chsmd hands
 * k_vsm (never the master key) to the VSM's process, which opens the same
 * database with store_open_vsm and can then reach only that VSM's row,
 * token and keys. */
#define STORE_VSM_KEY_LEN 32

/* The subkey of VSM id, into out (secret: wipe it). Only on a store opened
 * with the master key (-EPERM otherwise). */
int store_vsm_subkey(chsm_store *s, const char *id, uint8_t out[STORE_VSM_KEY_LEN]);

/* Opens an existing, migrated database for VSM id only, with its subkey:
 * store_vsm_get, store_vsm_token_get and the store_vsm_key_* functions work
 * for that id (and store_vsm_state_digest); every other function, and any
 * other id, returns -EPERM. -EPROTO when the schema version is not the
 * one this code knows (the VSM never migrates). */
int store_open_vsm(const char *path, const char *id, const uint8_t vsm_key[STORE_VSM_KEY_LEN],
		   chsm_store **ret_store);

struct store_key_ref {
	char type[STORE_KEY_TYPE_MAX_LEN + 1];
	int index;
};
/* The VSM's keys in (type, index) order, without material. *ret_keys is
 * malloc'ed (free()); -ENOENT when there is no such VSM. */
int store_vsm_key_list(chsm_store *s, const char *id, struct store_key_ref **ret_keys,
		       size_t *ret_count);

/* ---- consistent snapshots and secret walks (images, backups) ----
 * A snapshot is a second, read-only connection to the same database file
 * (not a copy), in one deferred read transaction: thanks to WAL it sees the
 * database exactly as it was when store_snapshot_begin returned, whatever
 * other connections (chsmd's own, a VSM process's) commit afterwards, and
 * it blocks none of them: they write on. The one exception is the WAL
 * checkpoint a zeroising write asks for (store.h, top): on the snapshot's
 * own parent store it is deferred until the last snapshot ends (which runs
 * it); in another process (a VSM's restricted store) it waits, within the
 * busy timeout, for the snapshot to end. Snapshots are meant to be
 * short-lived: the time to stream an image, not to upload it. End every
 * snapshot before closing its parent store.
 *
 * Every read function of this header works on a snapshot (store_vsm_get,
 * store_vsm_list, store_vsm_key_count, store_vsm_state_digest,
 * store_setting_get, store_secret_get, store_vsm_walk, ...); every write,
 * and store_begin, is -EPERM. Use it from one thread at a time. */

/* Opens a snapshot of master store s into *ret_snapshot (-EPERM on a
 * restricted store or on a snapshot). */
int store_snapshot_begin(chsm_store *s, chsm_store **ret_snapshot);
/* Ends the read transaction, closes the connection and wipes the keys.
 * Accepts NULL (and does nothing for a store that is not a snapshot). */
void store_snapshot_end(chsm_store *snapshot);

/* Visits the token and keys of VSM id in plaintext: token (once, when the
 * VSM has one) with its id and secret, then key for every key in (type,
 * index) order (the state digest's order). Each plaintext is wiped as soon
 * as its callback returns; a callback keeps no pointer to it. A callback's
 * non-zero return stops the walk and is returned as is. -ENOENT when there
 * is no such VSM, -EBADMSG when a sealed value does not open. */
struct store_vsm_visitor {
	int (*token)(void *arg, const char *token_id, const uint8_t *secret, size_t len);
	int (*key)(void *arg, const char *type, int index, const uint8_t *material, size_t len);
	void *arg;
};
int store_vsm_walk(chsm_store *s, const char *id, const struct store_vsm_visitor *vis);

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
/* -EEXIST when the id is taken; -EINVAL when id is empty or a string field
 * is not NUL-terminated. */
int store_task_insert(chsm_store *s, const struct store_task *t);
/* On success *ret holds malloc'ed params/result/callback_url (or NULL);
 * free with store_task_clear. -ENOENT when there is no such task. */
int store_task_get(chsm_store *s, const char *id, struct store_task *ret);
/* Replaces every column of task t->id with t; -ENOENT when there is none. */
int store_task_update(chsm_store *s, const struct store_task *t);
/* Tasks in a state (oldest first). *ret_tasks is malloc'ed; free with
 * store_task_array_free. */
int store_task_list_by_state(chsm_store *s, const char *state, struct store_task **ret_tasks,
			     size_t *ret_count);
/* Pending plus running tasks. */
int store_task_count_active(chsm_store *s, size_t *ret_count);
/* The id of a pending or running task on target; -ENOENT when none. */
int store_task_active_for_target(chsm_store *s, const char *target, char ret_id[32]);
/* Finished tasks with a callback URL, not delivered, and
 * 0 < callback_next_at <= now_ms, earliest due first. Free as above. */
int store_task_callbacks_due(chsm_store *s, int64_t now_ms, struct store_task **ret_tasks,
			     size_t *ret_count);
/* Deletes finished tasks that finished before cutoff_ms and whose callback
 * is delivered or abandoned (callback_next_at == 0). */
int store_task_purge(chsm_store *s, int64_t cutoff_ms);
/* Frees the strings of t and zeroes it. Accepts NULL. */
void store_task_clear(struct store_task *t);
/* Clears each of count tasks and frees the array. Accepts NULL. */
void store_task_array_free(struct store_task *tasks, size_t count);

#endif
