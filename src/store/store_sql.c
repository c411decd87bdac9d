/*
 * store_sql.c: the store's plumbing: error mapping, locking, write
 * transactions (BEGIN IMMEDIATE, or a savepoint inside store_begin),
 * statements with typed bound parameters, zeroising deletes, column copies
 * and sealing under the store's key with row-bound associated data.
 *
 * Guarantees: values reach SQLite only as bound parameters; a write helper
 * either commits all it did or rolls all of it back; after a committed
 * zeroising delete the WAL is checkpointed and truncated, so the old page
 * images holding the sealed values leave the state directory; a restricted
 * (VSM) store never seals or opens with the device's sealing key.
 */
#include "store/store_int.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int store_sqlite_err(int rc)
{
	switch (rc & 0xff) {
	case SQLITE_OK:
	case SQLITE_ROW:
	case SQLITE_DONE:
		return 0;
	case SQLITE_FULL:
		return -ENOSPC;
	case SQLITE_NOMEM:
		return -ENOMEM;
	case SQLITE_CONSTRAINT:
		return rc == SQLITE_CONSTRAINT_FOREIGNKEY ? -ENOENT : -EEXIST;
	default:
		return -EIO;
	}
}

void store_lock(chsm_store *s)
{
	pthread_mutex_lock(&s->lock);
}

void store_unlock(chsm_store *s)
{
	pthread_mutex_unlock(&s->lock);
}

/* Runs one fixed statement without parameters or rows (transaction
 * control, PRAGMAs without a result). */
static int exec_fixed(chsm_store *s, const char *sql)
{
	return store_run(s, NULL, sql, "");
}

int store_checkpoint_pending(chsm_store *s)
{
	if (!s->need_checkpoint || s->in_tx || s->snapshots > 0)
		return 0;
	/* Another connection (a VSM process, a snapshot of another process)
	 * may be reading or checkpointing: wait for it briefly, not for the
	 * whole busy timeout with the mutex held; the next write tries again. */
	(void)sqlite3_busy_timeout(s->db, STORE_CHECKPOINT_WAIT_MS);
	int rc = sqlite3_wal_checkpoint_v2(s->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
	(void)sqlite3_busy_timeout(s->db, STORE_BUSY_TIMEOUT_MS);
	if (rc != SQLITE_OK)
		return store_sqlite_err(rc);
	s->need_checkpoint = false;
	return 0;
}

int store_write_begin(chsm_store *s)
{
	int r;
	if (s->snapshot)
		return -EPERM;
	store_lock(s);
	if (s->in_tx) {
		/* A failure that SQLite answers by rolling the whole transaction
		 * back leaves autocommit on: nothing more may run in it. */
		if (sqlite3_get_autocommit(s->db)) {
			r = -EIO;
			goto out;
		}
		r = exec_fixed(s, "SAVEPOINT store_op");
	} else {
		r = exec_fixed(s, "BEGIN IMMEDIATE");
	}
out:
	if (r < 0)
		store_unlock(s);
	return r;
}

int store_write_end(chsm_store *s, int r)
{
	if (s->in_tx) {
		if (r < 0) {
			(void)exec_fixed(s, "ROLLBACK TO store_op");
			(void)exec_fixed(s, "RELEASE store_op");
		} else {
			r = exec_fixed(s, "RELEASE store_op");
		}
		goto out;
	}
	if (r < 0) {
		if (!sqlite3_get_autocommit(s->db))
			(void)exec_fixed(s, "ROLLBACK");
		goto out;
	}
	r = exec_fixed(s, "COMMIT");
	if (r < 0) {
		if (!sqlite3_get_autocommit(s->db))
			(void)exec_fixed(s, "ROLLBACK");
		goto out;
	}
	/* The change is committed: a checkpoint that cannot run now stays
	 * pending (store.h, zeroisation) and must not turn it into a failure. */
	(void)store_checkpoint_pending(s);
out:
	store_unlock(s);
	return r;
}

/* FNV-1a of the SQL text: the statement cache's hash. */
static uint32_t sql_hash(const char *sql)
{
	uint32_t h = 2166136261u;
	for (const unsigned char *p = (const unsigned char *)sql; *p; p++)
		h = (h ^ *p) * 16777619u;
	return h;
}

/* Into *ret_stmt, sql's statement marked in use: the cached one when it is
 * free, else a newly prepared one, cached when sql has no slot yet and one
 * is left (slots are never emptied before store_close, so a probe ends at
 * the first empty slot). */
static int stmt_take(chsm_store *s, const char *sql, sqlite3_stmt **ret_stmt)
{
	uint32_t h = sql_hash(sql);
	struct store_stmt_slot *slot = NULL;
	for (size_t i = 0; i < STORE_STMT_CACHE_SLOTS; i++) {
		struct store_stmt_slot *p = &s->stmts[(h + i) % STORE_STMT_CACHE_SLOTS];
		if (!p->sql) {
			slot = p;
			break;
		}
		if (p->hash == h && strcmp(p->sql, sql) == 0) {
			if (p->busy)           /* nested use: one of its own */
				break;
			p->busy = true;
			s->stmt_reused++;
			*ret_stmt = p->st;
			return 0;
		}
	}
	sqlite3_stmt *st = NULL;
	int r = store_sqlite_err(sqlite3_prepare_v2(s->db, sql, -1, &st, NULL));
	if (r < 0)
		return r;
	if (!st)                         /* empty SQL: a programming error */
		return -EINVAL;
	s->stmt_prepared++;
	char *copy = slot ? strdup(sql) : NULL;
	if (copy) {                      /* no memory: the statement is not cached */
		slot->sql = copy;
		slot->hash = h;
		slot->st = st;
		slot->busy = true;
	}
	*ret_stmt = st;
	return 0;
}

void store_release(chsm_store *s, sqlite3_stmt *st)
{
	if (!st)
		return;
	for (size_t i = 0; i < STORE_STMT_CACHE_SLOTS; i++) {
		struct store_stmt_slot *p = &s->stmts[i];
		if (p->st == st && p->sql) {
			(void)sqlite3_reset(st);
			(void)sqlite3_clear_bindings(st);
			p->busy = false;
			return;
		}
	}
	sqlite3_finalize(st);
}

void store_stmt_cache_clear(chsm_store *s)
{
	for (size_t i = 0; i < STORE_STMT_CACHE_SLOTS; i++) {
		struct store_stmt_slot *p = &s->stmts[i];
		sqlite3_finalize(p->st);
		free(p->sql);
		*p = (struct store_stmt_slot){0};
	}
}

int store_prepare_v(chsm_store *s, sqlite3_stmt **ret_stmt, const char *sql, const char *types,
		    va_list ap)
{
	sqlite3_stmt *st = NULL;
	int r = stmt_take(s, sql, &st);
	if (r < 0)
		return r;
	for (int i = 0; types[i]; i++) {
		int rc;
		switch (types[i]) {
		case 't':
			rc = sqlite3_bind_text(st, i + 1, va_arg(ap, const char *), -1,
					       SQLITE_STATIC);
			break;
		case 'i':
			rc = sqlite3_bind_int(st, i + 1, va_arg(ap, int));
			break;
		case 'I':
			rc = sqlite3_bind_int64(st, i + 1, va_arg(ap, int64_t));
			break;
		case 'b': {
			const void *p = va_arg(ap, const void *);
			size_t len = va_arg(ap, size_t);
			/* SQLite binds a NULL pointer as SQL NULL; an empty
			 * blob is still a blob. */
			rc = sqlite3_bind_blob64(st, i + 1, p ? p : "", len, SQLITE_STATIC);
			break;
		}
		default:
			rc = SQLITE_MISUSE;
			break;
		}
		r = store_sqlite_err(rc);
		if (r < 0)
			goto out;
	}
	*ret_stmt = st;
	st = NULL;
out:
	store_release(s, st);
	return r;
}

int store_prepare(chsm_store *s, sqlite3_stmt **ret_stmt, const char *sql, const char *types,
		  ...)
{
	va_list ap;
	va_start(ap, types);
	int r = store_prepare_v(s, ret_stmt, sql, types, ap);
	va_end(ap);
	return r;
}

/* store_query_row with a va_list. */
static int query_row_v(chsm_store *s, sqlite3_stmt **ret_stmt, const char *sql,
		       const char *types, va_list ap)
{
	sqlite3_stmt *st = NULL;
	int r = store_prepare_v(s, &st, sql, types, ap);
	if (r >= 0)
		r = store_step(st);
	if (r == 0)
		r = -ENOENT;
	if (r < 0) {
		store_release(s, st);
		return r;
	}
	*ret_stmt = st;
	return 0;
}

int store_query_row(chsm_store *s, sqlite3_stmt **ret_stmt, const char *sql,
		    const char *types, ...)
{
	va_list ap;
	va_start(ap, types);
	int r = query_row_v(s, ret_stmt, sql, types, ap);
	va_end(ap);
	return r;
}

/* store_run with a va_list. */
static int run_v(chsm_store *s, int *ret_changes, const char *sql, const char *types,
		 va_list ap)
{
	sqlite3_stmt *st = NULL;
	int r = store_prepare_v(s, &st, sql, types, ap);
	if (r < 0)
		goto out;
	r = store_step(st);
	if (r < 0)
		goto out;
	if (ret_changes)
		*ret_changes = sqlite3_changes(s->db);
	r = 0;
out:
	store_release(s, st);
	return r;
}

int store_run(chsm_store *s, int *ret_changes, const char *sql, const char *types, ...)
{
	va_list ap;
	va_start(ap, types);
	int r = run_v(s, ret_changes, sql, types, ap);
	va_end(ap);
	return r;
}

int store_count(chsm_store *s, size_t *ret_count, const char *sql, const char *types, ...)
{
	sqlite3_stmt *st = NULL;
	va_list ap;
	va_start(ap, types);
	int r = query_row_v(s, &st, sql, types, ap);
	va_end(ap);
	if (r == -ENOENT)         /* a count always has a row */
		r = -EIO;
	if (r >= 0) {
		int64_t n = sqlite3_column_int64(st, 0);
		r = n < 0 ? -EIO : 0;
		if (r == 0)
			*ret_count = (size_t)n;
	}
	store_release(s, st);
	return r;
}

int store_zeroise(chsm_store *s, int *ret_count, const char *zero_sql, const char *delete_sql,
		  const char *types, ...)
{
	va_list ap, ap2;
	int deleted = 0;
	va_start(ap, types);
	va_copy(ap2, ap);
	int r = run_v(s, NULL, zero_sql, types, ap);
	if (r < 0)
		goto out;
	r = run_v(s, &deleted, delete_sql, types, ap2);
	if (r < 0)
		goto out;
	if (deleted > 0)
		s->need_checkpoint = true;
	if (ret_count)
		*ret_count = deleted;
out:
	va_end(ap2);
	va_end(ap);
	return r;
}

int store_grow(void **array, size_t *cap, size_t count, size_t elem_size)
{
	if (count < *cap)
		return 0;
	size_t ncap = *cap ? 2 * *cap : 16;
	if (ncap > SIZE_MAX / elem_size)
		return -ENOMEM;
	void *n = realloc(*array, ncap * elem_size);
	if (!n)
		return -ENOMEM;
	*array = n;
	*cap = ncap;
	return 0;
}

int store_step(sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		return 1;
	if (rc == SQLITE_DONE)
		return 0;
	int r = store_sqlite_err(rc);
	return r < 0 ? r : -EIO;
}

int store_col_copy(sqlite3_stmt *st, int col, char *dst, size_t cap)
{
	const unsigned char *text = sqlite3_column_text(st, col);
	size_t len = (size_t)sqlite3_column_bytes(st, col);
	if (!text) {
		if (sqlite3_column_type(st, col) != SQLITE_NULL)
			return -ENOMEM;
		dst[0] = '\0';
		return 0;
	}
	if (len >= cap || memchr(text, '\0', len))
		return -EIO;
	memcpy(dst, text, len + 1);
	return 0;
}

int store_col_dup(sqlite3_stmt *st, int col, char **ret)
{
	if (sqlite3_column_type(st, col) == SQLITE_NULL) {
		*ret = NULL;
		return 0;
	}
	const unsigned char *text = sqlite3_column_text(st, col);
	if (!text)
		return -ENOMEM;
	size_t len = (size_t)sqlite3_column_bytes(st, col);
	char *copy = malloc(len + 1);
	if (!copy)
		return -ENOMEM;
	memcpy(copy, text, len + 1);
	*ret = copy;
	return 0;
}

int store_col_int(sqlite3_stmt *st, int col, int *ret)
{
	int64_t v = sqlite3_column_int64(st, col);
	if (v < INT_MIN || v > INT_MAX)
		return -EIO;
	*ret = (int)v;
	return 0;
}

bool store_fits(const char *s, size_t cap)
{
	return s && memchr(s, '\0', cap) != NULL;
}

bool store_nonempty_fits(const char *s, size_t cap)
{
	return store_fits(s, cap) && s[0] != '\0';
}

int store_aad(char *buf, size_t cap, size_t *ret_len, const char *tag, ...)
{
	va_list ap;
	size_t len = 0;
	int r = 0;
	va_start(ap, tag);
	for (const char *part = tag; part; part = va_arg(ap, const char *)) {
		size_t n = strlen(part) + 1;
		if (n > cap - len) {
			r = -EINVAL;
			goto out;
		}
		memcpy(buf + len, part, n);
		len += n;
	}
	*ret_len = len;
out:
	va_end(ap);
	return r;
}

int store_need_master(const chsm_store *s)
{
	return s->restricted ? -EPERM : 0;
}

int store_may_reach(const chsm_store *s, const char *id)
{
	if (!s->restricted)
		return 0;
	return id && strcmp(id, s->vsm_id) == 0 ? 0 : -EPERM;
}

int store_vsm_seal_key(chsm_store *s, const char *id, uint8_t out[STORE_VSM_KEY_LEN])
{
	int r = store_may_reach(s, id);
	if (r < 0)
		return r;
	if (s->restricted) {
		memcpy(out, s->vsm_key, STORE_VSM_KEY_LEN);
		return 0;
	}
	return crypto_kdf_sm3(s->vsm_root, sizeof(s->vsm_root), "vsm-seal-v1", id, strlen(id),
			      out, STORE_VSM_KEY_LEN);
}

int store_seal(chsm_store *s, const char *aad, size_t aadlen, const void *plain, size_t len,
	       uint8_t **ret_sealed, size_t *ret_len)
{
	if (s->restricted)
		return -EPERM;
	return crypto_seal(s->seal_key, aad, aadlen, plain, len, ret_sealed, ret_len);
}

int store_unseal(chsm_store *s, const char *aad, size_t aadlen, const void *sealed, size_t len,
		 uint8_t **ret_plain, size_t *ret_len)
{
	if (s->restricted)
		return -EPERM;
	return crypto_unseal(s->seal_key, aad, aadlen, sealed, len, ret_plain, ret_len);
}
