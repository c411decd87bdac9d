/*
 * store_vsm.c: VSM rows, their tokens and their keys, and the VSM state
 * digest.
 *
 * Guarantees: token secrets and key material exist in the database only
 * sealed, under the VSM's own subkey (store.h), each bound by its associated
 * data to its row (VSM id, token id, key type and index), so a sealed value
 * moved to another row or VSM does not open. A VSM's restricted store
 * reaches that VSM's row, token and keys only (-EPERM for anything else).
 * A token or key that is replaced or destroyed is zeroised (overwritten with
 * zeros, deleted, WAL checkpointed). Every change of a token or a key adds
 * one to the VSM's state_version in the same transaction. Plaintexts read
 * for the digest are wiped as soon as they are hashed.
 */
#include "store/store_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

/* The columns row_to_vsm reads, in its order. */
#define VSM_SELECT                                                                     \
	"SELECT v.id, v.name, v.state, v.version, v.created_at, v.updated_at,"         \
	" v.state_version, v.max_keys, v.max_sessions, v.memory_mib,"                 \
	" v.net_configured, v.net_ip, v.net_prefix, v.net_gateway, v.net_port,"       \
	" v.last_error, v.desired_running, v.started_at, t.token_id, t.updated_at"    \
	" FROM vsms v LEFT JOIN vsm_tokens t ON t.vsm_id = v.id"

/* One key, and all keys of a VSM: separate statements, because SQLite
 * cannot use the (vsm_id, type, idx) key for "type = ?2 OR ?2 IS NULL", and
 * scanning every key of the VSM per key made an import of n keys O(n^2). */
static const char key_zero_sql[] =
	"UPDATE vsm_keys SET sealed = zeroblob(length(sealed))"
	" WHERE vsm_id = ?1 AND type = ?2 AND idx = ?3";
static const char key_delete_sql[] =
	"DELETE FROM vsm_keys WHERE vsm_id = ?1 AND type = ?2 AND idx = ?3";
static const char keys_zero_sql[] =
	"UPDATE vsm_keys SET sealed = zeroblob(length(sealed)) WHERE vsm_id = ?1";
static const char keys_delete_sql[] = "DELETE FROM vsm_keys WHERE vsm_id = ?1";

static bool id_valid(const char *id)
{
	return store_nonempty_fits(id, CHSM_VSM_ID_MAX_LEN + 1);
}

/* True when every string field of v is NUL-terminated inside its array. */
static bool vsm_valid(const struct store_vsm *v)
{
	return v && id_valid(v->id) && store_fits(v->name, sizeof(v->name)) &&
	       store_fits(v->state, sizeof(v->state)) &&
	       store_fits(v->version, sizeof(v->version)) &&
	       store_fits(v->network.ip_address, sizeof(v->network.ip_address)) &&
	       store_fits(v->network.gateway, sizeof(v->network.gateway)) &&
	       store_fits(v->last_error, sizeof(v->last_error));
}

/* Runs sql (an INSERT or UPDATE with ?1..?18 in the column order of the
 * vsms table) with the fields of v. */
static int vsm_write(chsm_store *s, const char *sql, const struct store_vsm *v, int *ret_changes)
{
	return store_run(s, ret_changes, sql, "tttt" "III" "iiii" "titi" "tiI",
			 v->id, v->name, v->state, v->version,
			 (int64_t)v->created_at, (int64_t)v->updated_at, (int64_t)v->state_version,
			 v->max_keys, v->max_sessions, v->memory_mib, v->network.configured ? 1 : 0,
			 v->network.ip_address, v->network.prefix_length, v->network.gateway,
			 v->network.port, v->last_error, v->desired_running ? 1 : 0,
			 (int64_t)v->started_at);
}

/* Fills *ret from a row of VSM_SELECT. */
static int row_to_vsm(sqlite3_stmt *st, struct store_vsm *ret)
{
	struct store_vsm v;
	int configured = 0, desired = 0;
	memset(&v, 0, sizeof(v));
	int r = store_col_copy(st, 0, v.id, sizeof(v.id));
	if (r >= 0)
		r = store_col_copy(st, 1, v.name, sizeof(v.name));
	if (r >= 0)
		r = store_col_copy(st, 2, v.state, sizeof(v.state));
	if (r >= 0)
		r = store_col_copy(st, 3, v.version, sizeof(v.version));
	if (r >= 0)
		r = store_col_int(st, 7, &v.max_keys);
	if (r >= 0)
		r = store_col_int(st, 8, &v.max_sessions);
	if (r >= 0)
		r = store_col_int(st, 9, &v.memory_mib);
	if (r >= 0)
		r = store_col_int(st, 10, &configured);
	if (r >= 0)
		r = store_col_copy(st, 11, v.network.ip_address, sizeof(v.network.ip_address));
	if (r >= 0)
		r = store_col_int(st, 12, &v.network.prefix_length);
	if (r >= 0)
		r = store_col_copy(st, 13, v.network.gateway, sizeof(v.network.gateway));
	if (r >= 0)
		r = store_col_int(st, 14, &v.network.port);
	if (r >= 0)
		r = store_col_copy(st, 15, v.last_error, sizeof(v.last_error));
	if (r >= 0)
		r = store_col_int(st, 16, &desired);
	if (r >= 0)
		r = store_col_copy(st, 18, v.token_id, sizeof(v.token_id));
	if (r < 0)
		return r;
	v.created_at = sqlite3_column_int64(st, 4);
	v.updated_at = sqlite3_column_int64(st, 5);
	v.state_version = sqlite3_column_int64(st, 6);
	v.network.configured = configured != 0;
	v.desired_running = desired != 0;
	v.started_at = sqlite3_column_int64(st, 17);
	v.token_configured = sqlite3_column_type(st, 18) != SQLITE_NULL;
	v.token_updated_at = sqlite3_column_int64(st, 19);
	*ret = v;
	return 0;
}

/* 0 when VSM id exists, -ENOENT when not. The caller holds the mutex. */
static int vsm_exists(chsm_store *s, const char *id)
{
	sqlite3_stmt *st = NULL;
	int r = store_query_row(s, &st, "SELECT 1 FROM vsms WHERE id = ?", "t", id);
	store_release(s, st);
	return r < 0 ? r : 0;
}

/* Adds one to the VSM's state_version; -ENOENT when there is no such VSM. */
static int bump_state_version(chsm_store *s, const char *id)
{
	int changes = 0;
	int r = store_run(s, &changes,
			  "UPDATE vsms SET state_version = state_version + 1 WHERE id = ?", "t", id);
	if (r >= 0 && changes == 0)
		r = -ENOENT;
	return r;
}

/* crypto_seal / crypto_unseal under the subkey of VSM id (-EPERM when s
 * may not reach it); the subkey is wiped before returning. */
static int vsm_seal(chsm_store *s, const char *id, const char *aad, size_t aadlen,
		    const void *plain, size_t len, uint8_t **ret_sealed, size_t *ret_len)
{
	uint8_t key[STORE_VSM_KEY_LEN];
	int r = store_vsm_seal_key(s, id, key);
	if (r >= 0)
		r = crypto_seal(key, aad, aadlen, plain, len, ret_sealed, ret_len);
	crypto_wipe(key, sizeof(key));
	return r;
}

static int vsm_unseal(chsm_store *s, const char *id, const char *aad, size_t aadlen,
		      const void *sealed, size_t len, uint8_t **ret_plain, size_t *ret_len)
{
	uint8_t key[STORE_VSM_KEY_LEN];
	int r = store_vsm_seal_key(s, id, key);
	if (r >= 0)
		r = crypto_unseal(key, aad, aadlen, sealed, len, ret_plain, ret_len);
	crypto_wipe(key, sizeof(key));
	return r;
}

/* Zeroises the token of VSM id; *ret_count gets 1 when there was one. */
static int token_zeroise(chsm_store *s, const char *id, int *ret_count)
{
	return store_zeroise(s, ret_count,
			     "UPDATE vsm_tokens SET sealed = zeroblob(length(sealed)) WHERE vsm_id = ?",
			     "DELETE FROM vsm_tokens WHERE vsm_id = ?", "t", id);
}

/* ---- VSM rows ---- */

int store_vsm_insert(chsm_store *s, const struct store_vsm *v)
{
	if (s && s->restricted)
		return -EPERM;
	if (!s || !vsm_valid(v))
		return -EINVAL;
	int r = store_write_begin(s);
	if (r < 0)
		return r;
	store_vsm_counts_changed(s);
	r = vsm_write(s,
		      "INSERT INTO vsms(id, name, state, version, created_at, updated_at,"
		      " state_version, max_keys, max_sessions, memory_mib, net_configured,"
		      " net_ip, net_prefix, net_gateway, net_port, last_error,"
		      " desired_running, started_at)"
		      " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14,"
		      " ?15, ?16, ?17, ?18)",
		      v, NULL);
	return store_write_end(s, r);
}

int store_vsm_update(chsm_store *s, const struct store_vsm *v)
{
	if (s && s->restricted)
		return -EPERM;
	int changes = 0;
	if (!s || !vsm_valid(v))
		return -EINVAL;
	int r = store_write_begin(s);
	if (r < 0)
		return r;
	store_vsm_counts_changed(s);
	r = vsm_write(s,
		      "UPDATE vsms SET name = ?2, state = ?3, version = ?4, created_at = ?5,"
		      " updated_at = ?6, state_version = ?7, max_keys = ?8, max_sessions = ?9,"
		      " memory_mib = ?10, net_configured = ?11, net_ip = ?12, net_prefix = ?13,"
		      " net_gateway = ?14, net_port = ?15, last_error = ?16,"
		      " desired_running = ?17, started_at = ?18 WHERE id = ?1",
		      v, &changes);
	if (r >= 0 && changes == 0)
		r = -ENOENT;
	return store_write_end(s, r);
}

int store_vsm_get(chsm_store *s, const char *id, struct store_vsm *ret)
{
	sqlite3_stmt *st = NULL;
	if (!s || !id_valid(id) || !ret)
		return -EINVAL;
	int r = store_may_reach(s, id);
	if (r < 0)
		return r;
	store_lock(s);
	r = store_query_row(s, &st, VSM_SELECT " WHERE v.id = ?", "t", id);
	if (r >= 0)
		r = row_to_vsm(st, ret);
	store_release(s, st);
	store_unlock(s);
	return r;
}

int store_vsm_list(chsm_store *s, struct store_vsm **ret_vsms, size_t *ret_count)
{
	if (s && s->restricted)
		return -EPERM;
	sqlite3_stmt *st = NULL;
	struct store_vsm *vsms = NULL;
	size_t count = 0, cap = 0;
	int r;
	if (!s || !ret_vsms || !ret_count)
		return -EINVAL;
	store_lock(s);
	r = store_prepare(s, &st, VSM_SELECT " ORDER BY v.id", "");
	if (r < 0)
		goto out;
	while ((r = store_step(st)) == 1) {
		void *grown = vsms;
		r = store_grow(&grown, &cap, count, sizeof(*vsms));
		if (r < 0)
			goto out;
		vsms = grown;
		r = row_to_vsm(st, &vsms[count]);
		if (r < 0)
			goto out;
		count++;
	}
	if (r < 0)
		goto out;
	*ret_vsms = vsms;
	*ret_count = count;
	vsms = NULL;
out:
	free(vsms);
	store_release(s, st);
	store_unlock(s);
	return r;
}

int store_vsm_count(chsm_store *s, size_t *ret_count)
{
	if (s && s->restricted)
		return -EPERM;
	if (!s || !ret_count)
		return -EINVAL;
	store_lock(s);
	int r = store_count(s, ret_count, "SELECT count(*) FROM vsms", "");
	store_unlock(s);
	return r;
}

void store_vsm_counts_changed(chsm_store *s)
{
	pthread_mutex_lock(&s->counts_lock);
	s->counts_valid = false;
	s->counts_gen++;
	pthread_mutex_unlock(&s->counts_lock);
}

int store_vsm_counts(chsm_store *s, struct store_vsm_counts *ret)
{
	if (s && s->restricted)
		return -EPERM;
	if (!s || !ret)
		return -EINVAL;
	pthread_mutex_lock(&s->counts_lock);
	bool hit = s->counts_valid;
	struct store_vsm_counts c = s->counts;
	uint64_t gen = s->counts_gen;
	pthread_mutex_unlock(&s->counts_lock);
	if (hit) {
		*ret = c;
		return 0;
	}
	sqlite3_stmt *st = NULL;
	store_lock(s);
	/* Inside an explicit transaction the query sees its uncommitted rows:
	 * answered, not kept. */
	bool keep = !s->in_tx;
	int r = store_query_row(s, &st,
				"SELECT count(*), count(CASE WHEN state = 'running' THEN 1 END),"
				" count(CASE WHEN state = 'fault' THEN 1 END) FROM vsms", "");
	if (r == -ENOENT)
		r = -EIO;
	if (r >= 0) {
		int64_t n[3];
		for (int i = 0; i < 3; i++)
			n[i] = sqlite3_column_int64(st, i);
		if (n[0] < 0 || n[1] < 0 || n[2] < 0) {
			r = -EIO;
		} else {
			c = (struct store_vsm_counts){(size_t)n[0], (size_t)n[1], (size_t)n[2]};
			r = 0;
		}
	}
	store_release(s, st);
	store_unlock(s);
	if (r < 0)
		return r;
	pthread_mutex_lock(&s->counts_lock);
	if (keep && s->counts_gen == gen) {
		s->counts = c;
		s->counts_valid = true;
	}
	pthread_mutex_unlock(&s->counts_lock);
	*ret = c;
	return 0;
}

int store_vsm_delete(chsm_store *s, const char *id)
{
	if (s && s->restricted)
		return -EPERM;
	int changes = 0;
	if (!s || !id_valid(id))
		return -EINVAL;
	int r = store_write_begin(s);
	if (r < 0)
		return r;
	r = token_zeroise(s, id, NULL);
	if (r >= 0)
		r = store_zeroise(s, NULL, keys_zero_sql, keys_delete_sql, "t", id);
	store_vsm_counts_changed(s);
	if (r >= 0)
		r = store_run(s, &changes, "DELETE FROM vsms WHERE id = ?", "t", id);
	if (r >= 0 && changes == 0)
		r = -ENOENT;
	return store_write_end(s, r);
}

int store_vsm_find_endpoint(chsm_store *s, const char *ip_address, int port,
			    const char *exclude_id, char ret_id[CHSM_VSM_ID_MAX_LEN + 1])
{
	if (s && s->restricted)
		return -EPERM;
	sqlite3_stmt *st = NULL;
	if (!s || !ip_address || !ret_id)
		return -EINVAL;
	store_lock(s);
	int r = store_query_row(s, &st,
				"SELECT id FROM vsms WHERE net_configured = 1 AND net_ip = ?1"
				" AND net_port = ?2 AND (?3 IS NULL OR id <> ?3) ORDER BY id LIMIT 1",
				"tit", ip_address, port, exclude_id);
	if (r >= 0)
		r = store_col_copy(st, 0, ret_id, CHSM_VSM_ID_MAX_LEN + 1);
	store_release(s, st);
	store_unlock(s);
	return r;
}

/* ---- tokens ---- */

static int token_aad(const char *id, const char *token_id, char aad[STORE_AAD_MAX],
		     size_t *ret_len)
{
	return store_aad(aad, STORE_AAD_MAX, ret_len, "token", id, token_id, NULL);
}

int store_vsm_token_set(chsm_store *s, const char *id, const char *token_id,
			const uint8_t *secret, size_t secret_len, int64_t now_ms)
{
	if (s && s->restricted)
		return -EPERM;
	uint8_t *sealed = NULL;
	size_t sealed_len = 0, aad_len = 0;
	char aad[STORE_AAD_MAX];
	int r;
	if (!s || !id_valid(id) || !store_nonempty_fits(token_id, CHSM_VSM_NAME_MAX_LEN + 1) ||
	    !secret || secret_len == 0 || secret_len > STORE_VALUE_MAX_LEN)
		return -EINVAL;
	r = token_aad(id, token_id, aad, &aad_len);
	if (r >= 0)
		r = vsm_seal(s, id, aad, aad_len, secret, secret_len, &sealed, &sealed_len);
	if (r < 0)
		return r;
	r = store_write_begin(s);
	if (r < 0)
		goto out;
	r = bump_state_version(s, id);
	if (r >= 0)
		r = token_zeroise(s, id, NULL);
	if (r >= 0)
		r = store_run(s, NULL,
			      "INSERT INTO vsm_tokens(vsm_id, token_id, sealed, updated_at)"
			      " VALUES(?, ?, ?, ?)",
			      "ttbI", id, token_id, sealed, sealed_len,
			      (int64_t)now_ms);
	r = store_write_end(s, r);
out:
	free(sealed);
	return r;
}

/* Reads and opens the token of VSM id: its id into token_id and its secret
 * (malloc'ed, secret). -ENOENT when there is none. The caller holds the
 * mutex. */
static int token_read(chsm_store *s, const char *id, char token_id[CHSM_VSM_NAME_MAX_LEN + 1],
		      uint8_t **ret_secret, size_t *ret_len)
{
	sqlite3_stmt *st = NULL;
	char aad[STORE_AAD_MAX];
	size_t aad_len = 0;
	int r = store_query_row(s, &st, "SELECT token_id, sealed FROM vsm_tokens WHERE vsm_id = ?",
				"t", id);
	if (r >= 0)
		r = store_col_copy(st, 0, token_id, CHSM_VSM_NAME_MAX_LEN + 1);
	if (r >= 0)
		r = token_aad(id, token_id, aad, &aad_len);
	if (r >= 0)
		r = vsm_unseal(s, id, aad, aad_len, sqlite3_column_blob(st, 1),
			       (size_t)sqlite3_column_bytes(st, 1), ret_secret, ret_len);
	store_release(s, st);
	return r;
}

int store_vsm_token_get(chsm_store *s, const char *id, uint8_t **ret_secret, size_t *ret_len)
{
	char token_id[CHSM_VSM_NAME_MAX_LEN + 1];
	if (!s || !id_valid(id) || !ret_secret || !ret_len)
		return -EINVAL;
	int r = store_may_reach(s, id);
	if (r < 0)
		return r;
	store_lock(s);
	r = token_read(s, id, token_id, ret_secret, ret_len);
	store_unlock(s);
	return r;
}

/* Zeroises the token (keys false) or every key (keys true) of VSM id, and
 * counts the change in its state_version if anything was destroyed. */
static int vsm_destroy(chsm_store *s, const char *id, bool keys)
{
	int count = 0;
	if (s && s->restricted)
		return -EPERM;
	if (!s || !id_valid(id))
		return -EINVAL;
	int r = store_write_begin(s);
	if (r < 0)
		return r;
	r = vsm_exists(s, id);
	if (r >= 0 && keys)
		r = store_zeroise(s, &count, keys_zero_sql, keys_delete_sql, "t", id);
	else if (r >= 0)
		r = token_zeroise(s, id, &count);
	if (r >= 0 && count > 0)
		r = bump_state_version(s, id);
	return store_write_end(s, r);
}

int store_vsm_token_clear(chsm_store *s, const char *id)
{
	return vsm_destroy(s, id, false);
}

/* ---- keys ---- */

static int key_aad(const char *id, const char *type, int index, char aad[STORE_AAD_MAX],
		   size_t *ret_len)
{
	char idx[16];
	snprintf(idx, sizeof(idx), "%d", index);
	return store_aad(aad, STORE_AAD_MAX, ret_len, "key", id, type, idx, NULL);
}

static bool key_args_valid(const char *id, const char *type, int index)
{
	return id_valid(id) && store_nonempty_fits(type, STORE_KEY_TYPE_MAX_LEN + 1) && index >= 0;
}

int store_vsm_key_put(chsm_store *s, const char *id, const char *type, int index,
		      const uint8_t *material, size_t len)
{
	uint8_t *sealed = NULL;
	size_t sealed_len = 0, aad_len = 0;
	char aad[STORE_AAD_MAX];
	int r;
	if (!s || !key_args_valid(id, type, index) || !material || len == 0 ||
	    len > STORE_VALUE_MAX_LEN)
		return -EINVAL;
	r = key_aad(id, type, index, aad, &aad_len);
	if (r >= 0)
		r = vsm_seal(s, id, aad, aad_len, material, len, &sealed, &sealed_len);
	if (r < 0)
		return r;
	r = store_write_begin(s);
	if (r < 0)
		goto out;
	r = bump_state_version(s, id);
	if (r >= 0)
		r = store_zeroise(s, NULL, key_zero_sql, key_delete_sql, "tti", id, type, index);
	if (r >= 0)
		r = store_run(s, NULL,
			      "INSERT INTO vsm_keys(vsm_id, type, idx, sealed) VALUES(?, ?, ?, ?)",
			      "ttib", id, type, index, sealed, sealed_len);
	r = store_write_end(s, r);
out:
	free(sealed);
	return r;
}

int store_vsm_key_get(chsm_store *s, const char *id, const char *type, int index,
		      uint8_t **ret_material, size_t *ret_len)
{
	sqlite3_stmt *st = NULL;
	char aad[STORE_AAD_MAX];
	size_t aad_len = 0;
	int r;
	if (!s || !key_args_valid(id, type, index) || !ret_material || !ret_len)
		return -EINVAL;
	r = store_may_reach(s, id);
	if (r >= 0)
		r = key_aad(id, type, index, aad, &aad_len);
	if (r < 0)
		return r;
	store_lock(s);
	r = store_query_row(s, &st,
			    "SELECT sealed FROM vsm_keys WHERE vsm_id = ? AND type = ? AND idx = ?",
			    "tti", id, type, index);
	if (r >= 0)
		r = vsm_unseal(s, id, aad, aad_len, sqlite3_column_blob(st, 0),
			       (size_t)sqlite3_column_bytes(st, 0), ret_material, ret_len);
	store_release(s, st);
	store_unlock(s);
	return r;
}

int store_vsm_key_delete(chsm_store *s, const char *id, const char *type, int index)
{
	int count = 0;
	if (!s || !key_args_valid(id, type, index))
		return -EINVAL;
	int r = store_may_reach(s, id);
	if (r < 0)
		return r;
	r = store_write_begin(s);
	if (r < 0)
		return r;
	r = store_zeroise(s, &count, key_zero_sql, key_delete_sql, "tti", id, type, index);
	if (r >= 0 && count == 0)
		r = -ENOENT;
	if (r >= 0)
		r = bump_state_version(s, id);
	return store_write_end(s, r);
}

int store_vsm_key_count(chsm_store *s, const char *id, size_t *ret_count)
{
	if (!s || !id_valid(id) || !ret_count)
		return -EINVAL;
	int r = store_may_reach(s, id);
	if (r < 0)
		return r;
	store_lock(s);
	r = vsm_exists(s, id);
	if (r >= 0)
		r = store_count(s, ret_count, "SELECT count(*) FROM vsm_keys WHERE vsm_id = ?", "t",
				id);
	store_unlock(s);
	return r;
}

int store_vsm_key_list(chsm_store *s, const char *id, struct store_key_ref **ret_keys,
		       size_t *ret_count)
{
	sqlite3_stmt *st = NULL;
	struct store_key_ref *keys = NULL;
	size_t count = 0, cap = 0;
	if (!s || !id_valid(id) || !ret_keys || !ret_count)
		return -EINVAL;
	int r = store_may_reach(s, id);
	if (r < 0)
		return r;
	store_lock(s);
	r = vsm_exists(s, id);
	if (r >= 0)
		r = store_prepare(s, &st,
				  "SELECT type, idx FROM vsm_keys WHERE vsm_id = ? ORDER BY type, idx",
				  "t", id);
	if (r < 0)
		goto out;
	while ((r = store_step(st)) == 1) {
		void *grown = keys;
		r = store_grow(&grown, &cap, count, sizeof(*keys));
		if (r < 0)
			goto out;
		keys = grown;
		r = store_col_copy(st, 0, keys[count].type, sizeof(keys[count].type));
		if (r >= 0)
			r = store_col_int(st, 1, &keys[count].index);
		if (r >= 0 && keys[count].index < 0)
			r = -EIO;
		if (r < 0)
			goto out;
		count++;
	}
	if (r < 0)
		goto out;
	*ret_keys = keys;
	*ret_count = count;
	keys = NULL;
out:
	free(keys);
	store_release(s, st);
	store_unlock(s);
	return r;
}

int store_vsm_keys_clear(chsm_store *s, const char *id)
{
	return vsm_destroy(s, id, true);
}

/* ---- state digest ---- */

/* Hashes a 4-byte big-endian v. */
static int sm3_be32(crypto_sm3_ctx *ctx, uint32_t v)
{
	uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
	return crypto_sm3_update(ctx, b, sizeof(b));
}

typedef int (*key_fn)(void *arg, const char *type, int index, const uint8_t *plain,
		      size_t len);

/* Calls fn with every key of VSM id in (type, index) order, unsealed; the
 * plaintext is wiped as soon as fn returns. Stops at the first non-zero
 * return of fn, which it returns; 0 after the last key. The caller holds
 * the mutex. */
static int each_key(chsm_store *s, const char *id, key_fn fn, void *arg)
{
	sqlite3_stmt *st = NULL;
	uint8_t *plain = NULL;
	size_t plain_len = 0;
	int r = store_prepare(s, &st,
			      "SELECT type, idx, sealed FROM vsm_keys WHERE vsm_id = ?"
			      " ORDER BY type, idx",
			      "t", id);
	if (r < 0)
		return r;
	while ((r = store_step(st)) == 1) {
		char type[STORE_KEY_TYPE_MAX_LEN + 1], aad[STORE_AAD_MAX];
		size_t aad_len = 0;
		int index = 0;
		r = store_col_copy(st, 0, type, sizeof(type));
		if (r >= 0)
			r = store_col_int(st, 1, &index);
		if (r >= 0 && index < 0)
			r = -EIO;
		if (r >= 0)
			r = key_aad(id, type, index, aad, &aad_len);
		if (r >= 0)
			r = vsm_unseal(s, id, aad, aad_len, sqlite3_column_blob(st, 2),
				       (size_t)sqlite3_column_bytes(st, 2), &plain, &plain_len);
		if (r < 0)
			break;
		r = fn(arg, type, index, plain, plain_len);
		crypto_free_secret(plain, plain_len);
		plain = NULL;
		if (r != 0)
			break;
	}
	store_release(s, st);
	return r;
}

/* One key into the state digest, as store.h lays out. */
static int digest_key(void *arg, const char *type, int index, const uint8_t *plain, size_t len)
{
	crypto_sm3_ctx *ctx = arg;
	int r = crypto_sm3_update(ctx, type, strlen(type) + 1);
	if (r >= 0)
		r = sm3_be32(ctx, (uint32_t)index);
	if (r >= 0)
		r = sm3_be32(ctx, (uint32_t)len);
	if (r >= 0)
		r = crypto_sm3_update(ctx, plain, len);
	return r < 0 ? r : 0;
}

/* Hashes the token of VSM id, or "notoken" and a NUL. */
static int digest_token(chsm_store *s, const char *id, crypto_sm3_ctx *ctx)
{
	uint8_t *secret = NULL;
	size_t secret_len = 0;
	char token_id[CHSM_VSM_NAME_MAX_LEN + 1];
	int r = token_read(s, id, token_id, &secret, &secret_len);
	if (r == -ENOENT) {
		r = crypto_sm3_update(ctx, "notoken", sizeof("notoken"));
		goto out;
	}
	if (r < 0)
		goto out;
	r = crypto_sm3_update(ctx, "token", sizeof("token"));
	if (r >= 0)
		r = crypto_sm3_update(ctx, token_id, strlen(token_id) + 1);
	if (r >= 0)
		r = sm3_be32(ctx, (uint32_t)secret_len);
	if (r >= 0)
		r = crypto_sm3_update(ctx, secret, secret_len);
out:
	crypto_free_secret(secret, secret_len);
	return r;
}

/* Computes VSM id's state digest from its unsealed token and keys into
 * out. The caller holds the mutex. */
static int digest_compute(chsm_store *s, const char *id, char out[65])
{
	crypto_sm3_ctx *ctx = NULL;
	uint8_t md[CRYPTO_SM3_LEN];
	int r = vsm_exists(s, id);
	if (r >= 0)
		r = crypto_sm3_new(&ctx);
	if (r >= 0)
		r = each_key(s, id, digest_key, ctx);
	if (r >= 0)
		r = digest_token(s, id, ctx);
	if (r >= 0)
		r = crypto_sm3_final(ctx, md);
	if (r >= 0) {
		chsm_hex_encode(md, sizeof(md), out);
		s->digests_computed++;
	}
	crypto_sm3_free(ctx);
	return r < 0 ? r : 0;
}

/* The digest inputs of every VSM (or of VSM ?1), one row per key (or one
 * with NULL key columns), in VSM id, then key order. */
#define FINGERPRINT_SELECT                                                          \
	"SELECT v.id, t.token_id, t.sealed, k.type, k.idx, k.sealed FROM vsms v"    \
	" LEFT JOIN vsm_tokens t ON t.vsm_id = v.id"                                 \
	" LEFT JOIN vsm_keys k ON k.vsm_id = v.id"
#define FINGERPRINT_ORDER " ORDER BY v.id, k.type, k.idx"

/* Adds text column col and its NUL, then blob column blob with its length
 * (big-endian 4 bytes) before it, to ctx. */
static int fingerprint_part(crypto_sm3_ctx *ctx, sqlite3_stmt *st, int col, int blob)
{
	const unsigned char *text = sqlite3_column_text(st, col);
	if (!text)
		return -ENOMEM;
	int r = crypto_sm3_update(ctx, text, (size_t)sqlite3_column_bytes(st, col) + 1);
	size_t len = (size_t)sqlite3_column_bytes(st, blob);
	if (r >= 0)
		r = sm3_be32(ctx, (uint32_t)len);
	if (r >= 0 && len > 0)
		r = crypto_sm3_update(ctx, sqlite3_column_blob(st, blob), len);
	return r;
}

/* Calls fn(arg, vsm id, fingerprint) for every VSM in id order (id NULL)
 * or for VSM id only (-ENOENT when it does not exist). The caller holds
 * the mutex. */
static int each_fingerprint(chsm_store *s, const char *id,
			    int (*fn)(void *arg, const char *id, const uint8_t *fp), void *arg)
{
	sqlite3_stmt *st = NULL;
	crypto_sm3_ctx *ctx = NULL;
	char cur[CHSM_VSM_ID_MAX_LEN + 1] = "";
	uint8_t fp[CRYPTO_SM3_LEN];
	bool any = false;
	int r = crypto_sm3_new(&ctx);
	if (r < 0)
		return r;
	if (id)
		r = store_prepare(s, &st, FINGERPRINT_SELECT " WHERE v.id = ?" FINGERPRINT_ORDER,
				  "t", id);
	else
		r = store_prepare(s, &st, FINGERPRINT_SELECT FINGERPRINT_ORDER, "");
	while (r >= 0 && (r = store_step(st)) == 1) {
		char row_id[CHSM_VSM_ID_MAX_LEN + 1];
		r = store_col_copy(st, 0, row_id, sizeof(row_id));
		if (r < 0)
			break;
		if (!any || strcmp(row_id, cur) != 0) {
			if (any) {
				r = crypto_sm3_final(ctx, fp);
				if (r >= 0)
					r = fn(arg, cur, fp);
				if (r >= 0)
					r = crypto_sm3_reset(ctx);
				if (r < 0)
					break;
			}
			any = true;
			memcpy(cur, row_id, sizeof(cur));
			if (sqlite3_column_type(st, 1) == SQLITE_NULL)
				r = crypto_sm3_update(ctx, "notoken", sizeof("notoken"));
			else
				r = fingerprint_part(ctx, st, 1, 2);
			if (r < 0)
				break;
		}
		if (sqlite3_column_type(st, 3) != SQLITE_NULL) {
			r = sm3_be32(ctx, (uint32_t)sqlite3_column_int64(st, 4));
			if (r >= 0)
				r = fingerprint_part(ctx, st, 3, 5);
			if (r < 0)
				break;
		}
	}
	if (r == 0 && any) {
		r = crypto_sm3_final(ctx, fp);
		if (r >= 0)
			r = fn(arg, cur, fp);
	}
	if (r == 0 && id && !any)
		r = -ENOENT;
	store_release(s, st);
	crypto_sm3_free(ctx);
	return r < 0 ? r : 0;
}

/* The cache entry of VSM id, or NULL. */
static struct store_digest_entry *digest_find(chsm_store *s, const char *id)
{
	size_t lo = 0, hi = s->digests_count;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(id, s->digests[mid].id);
		if (c == 0)
			return &s->digests[mid];
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

/* Into out, VSM id's digest: the cached one when fp matches, else a new
 * one, which the cache then keeps (inserted in id order when insert; a
 * full pass builds its cache itself). The caller holds the mutex. */
static int digest_by_fingerprint(chsm_store *s, const char *id, const uint8_t *fp, bool insert,
				 char out[65])
{
	struct store_digest_entry *e = digest_find(s, id);
	if (e && memcmp(e->fingerprint, fp, CRYPTO_SM3_LEN) == 0) {
		memcpy(out, e->digest, sizeof(e->digest));
		return 0;
	}
	int r = digest_compute(s, id, out);
	if (r < 0)
		return r;
	if (!e && insert) {
		void *grown = s->digests;
		if (store_grow(&grown, &s->digests_cap, s->digests_count, sizeof(*e)) < 0)
			return 0;           /* not cached: computed again next time */
		s->digests = grown;
		size_t at = 0;
		while (at < s->digests_count && strcmp(s->digests[at].id, id) < 0)
			at++;
		memmove(&s->digests[at + 1], &s->digests[at],
			(s->digests_count - at) * sizeof(*e));
		s->digests_count++;
		e = &s->digests[at];
		memcpy(e->id, id, strlen(id) + 1);
	}
	if (e) {
		memcpy(e->fingerprint, fp, CRYPTO_SM3_LEN);
		memcpy(e->digest, out, sizeof(e->digest));
	}
	return 0;
}

/* each_fingerprint callback of store_vsm_state_digest: keeps the one
 * fingerprint in arg. */
static int one_digest_fn(void *arg, const char *id, const uint8_t *fp)
{
	(void)id;
	memcpy(arg, fp, CRYPTO_SM3_LEN);
	return 0;
}

int store_vsm_state_digest(chsm_store *s, const char *id, char out[65])
{
	uint8_t fp[CRYPTO_SM3_LEN];
	if (!s || !id_valid(id) || !out)
		return -EINVAL;
	int r = store_may_reach(s, id);
	if (r < 0)
		return r;
	r = store_read_begin(s);
	if (r < 0)
		return r;
	r = each_fingerprint(s, id, one_digest_fn, fp);
	if (r >= 0)
		r = digest_by_fingerprint(s, id, fp, true, out);
	store_read_end(s);
	return r < 0 ? r : 0;
}

/* The full pass of store_vsm_list_digests: the VSMs in id order, their
 * digests, the cache being rebuilt for exactly these VSMs. */
struct list_digests {
	chsm_store *s;
	const struct store_vsm *vsms;
	char (*digests)[65];
	struct store_digest_entry *cache;
	size_t count, next;
};

static int list_digest_fn(void *arg, const char *id, const uint8_t *fp)
{
	struct list_digests *l = arg;
	/* Both passes read the same transaction's VSMs in the same order. */
	if (l->next >= l->count || strcmp(l->vsms[l->next].id, id) != 0)
		return -EIO;
	size_t i = l->next++;
	int r = digest_by_fingerprint(l->s, id, fp, false, l->digests[i]);
	if (r < 0)
		return r;
	struct store_digest_entry *e = &l->cache[i];
	memcpy(e->id, id, strlen(id) + 1);
	memcpy(e->fingerprint, fp, CRYPTO_SM3_LEN);
	memcpy(e->digest, l->digests[i], sizeof(e->digest));
	return 0;
}

int store_vsm_list_digests(chsm_store *s, struct store_vsm **ret_vsms, char (**ret_digests)[65],
			   size_t *ret_count)
{
	if (s && s->restricted)
		return -EPERM;
	if (!s || !ret_vsms || !ret_digests || !ret_count)
		return -EINVAL;
	struct list_digests l = {.s = s};
	struct store_vsm *vsms = NULL;
	int r = store_read_begin(s);
	if (r < 0)
		return r;
	r = store_vsm_list(s, &vsms, &l.count);
	if (r < 0)
		goto out;
	l.vsms = vsms;
	l.digests = calloc(l.count ? l.count : 1, sizeof(*l.digests));
	l.cache = calloc(l.count ? l.count : 1, sizeof(*l.cache));
	if (!l.digests || !l.cache) {
		r = -ENOMEM;
		goto out;
	}
	r = each_fingerprint(s, NULL, list_digest_fn, &l);
	if (r >= 0 && l.next != l.count)
		r = -EIO;
	if (r < 0)
		goto out;
	free(s->digests);
	s->digests = l.cache;
	s->digests_cap = l.count ? l.count : 1;
	s->digests_count = l.count;
	l.cache = NULL;
	*ret_vsms = vsms;
	*ret_digests = l.digests;
	*ret_count = l.count;
	vsms = NULL;
	l.digests = NULL;
out:
	store_read_end(s);
	free(l.cache);
	free(l.digests);
	free(vsms);
	return r;
}

/* ---- walking a VSM's secrets (images) ---- */

static int walk_key(void *arg, const char *type, int index, const uint8_t *plain, size_t len)
{
	const struct store_vsm_visitor *vis = arg;
	return vis->key(vis->arg, type, index, plain, len);
}

int store_vsm_walk(chsm_store *s, const char *id, const struct store_vsm_visitor *vis)
{
	uint8_t *plain = NULL;
	size_t plain_len = 0;
	char token_id[CHSM_VSM_NAME_MAX_LEN + 1];
	if (!s || !id_valid(id) || !vis || !vis->token || !vis->key)
		return -EINVAL;
	int r = store_may_reach(s, id);
	if (r < 0)
		return r;
	store_lock(s);
	r = vsm_exists(s, id);
	if (r < 0)
		goto out;
	r = token_read(s, id, token_id, &plain, &plain_len);
	if (r == -ENOENT) {
		r = 0;
	} else if (r >= 0) {
		r = vis->token(vis->arg, token_id, plain, plain_len);
		crypto_free_secret(plain, plain_len);
		plain = NULL;
	}
	if (r == 0)
		r = each_key(s, id, walk_key, (void *)vis);
out:
	store_unlock(s);
	return r;
}
