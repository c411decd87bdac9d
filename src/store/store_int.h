/*
 * store_int.h: what the files of the store module share and nothing else
 * sees: the chsm_store structure, locking and write-transaction helpers,
 * statement helpers with typed bound parameters, and sealing helpers that
 * bind a sealed value to its row.
 *
 * Guarantees: every helper returns 0 (or a count) or a negative errno and
 * writes its ret_* out-parameters only on success; statement helpers bind
 * every value as a parameter, never into the SQL text.
 */
#ifndef CHSM_STORE_INT_H
#define CHSM_STORE_INT_H

#include <pthread.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "crypto/crypto.h"
#include "store/store.h"

/* Longest associated data a sealed value carries: a tag and three NUL
 * terminated parts (ids, names, types, a decimal index). */
#define STORE_AAD_MAX 512

/* Prepared statements a connection keeps for reuse (store_prepare): more
 * than the distinct SQL texts of the module, so every one stays cached. */
#define STORE_STMT_CACHE_SLOTS 128

/* A VSM's state digest as last computed, and the fingerprint (SM3 over
 * the sealed forms of its token and keys, with their ids, types and
 * indexes) of what it was computed from: a sealed value opens to one
 * plaintext only, and every seal draws a fresh nonce, so an equal
 * fingerprint means an equal digest. */
struct store_digest_entry {
	char id[CHSM_VSM_ID_MAX_LEN + 1];
	uint8_t fingerprint[CRYPTO_SM3_LEN];
	char digest[CRYPTO_SM3_HEX_LEN + 1];
};

/* One cached statement: its SQL text (a copy: the key), the text's hash,
 * and whether a caller holds it now (between store_prepare and
 * store_release). */
struct store_stmt_slot {
	char *sql;
	uint32_t hash;
	sqlite3_stmt *st;
	bool busy;
};

struct chsm_store {
	sqlite3 *db;
	pthread_mutex_t lock;          /* recursive; see store.h */
	uint8_t seal_key[CRYPTO_SEAL_KEY_LEN];   /* master stores only */
	uint8_t vsm_root[CRYPTO_SEAL_KEY_LEN];   /* master stores only */
	/* A VSM's restricted store (store_open_vsm): the one VSM it may reach
	 * and that VSM's subkey; seal_key and vsm_root stay zero. */
	bool restricted;
	char vsm_id[CHSM_VSM_ID_MAX_LEN + 1];
	uint8_t vsm_key[STORE_VSM_KEY_LEN];
	int schema_version;
	bool in_tx;                    /* between store_begin and commit/rollback */
	/* A read-only connection in one read transaction (store_snapshot_begin):
	 * every write is -EPERM. */
	bool snapshot;
	chsm_store *parent;            /* a snapshot's store */
	/* Open snapshots of this store (under lock): while there are any, the
	 * WAL checkpoint that zeroisation asks for is deferred (it would wait
	 * for their read mark); the last one to end runs it. */
	int snapshots;
	bool need_checkpoint;          /* a zeroised row may linger in the WAL */
	int64_t nonce_purged_at;       /* now_ms of the last nonce purge */
	/* Prepared statements by SQL text, open addressing (under lock); each
	 * connection has its own, finalized at store_close. */
	struct store_stmt_slot stmts[STORE_STMT_CACHE_SLOTS];
	uint64_t stmt_prepared;        /* statements compiled (cache misses) */
	uint64_t stmt_reused;          /* statements taken from the cache */
	int read_depth;                /* store_read_begin nesting */
	/* store_vsm_counts' answer while counts_valid; counts_gen counts the
	 * invalidations (store_vsm_counts_changed), so that a query that ran
	 * across one is not kept. All three under counts_lock only. */
	pthread_mutex_t counts_lock;
	struct store_vsm_counts counts;
	uint64_t counts_gen;
	bool counts_valid;
	bool read_began;               /* the outermost one ran BEGIN */
	/* State digests by VSM id, sorted by id (under lock). */
	struct store_digest_entry *digests;
	size_t digests_count, digests_cap;
	uint64_t digests_computed;     /* digests computed (cache misses) */
};

/* -EPERM when s is a VSM's restricted store, else 0: the first check of
 * every function a VSM process may not call. */
int store_need_master(const chsm_store *s);
/* 0 when s may reach the rows of VSM id: always on a master store, only
 * its own id on a restricted one (-EPERM). */
int store_may_reach(const chsm_store *s, const char *id);
/* The sealing key of VSM id's token and keys into out (secret: the caller
 * wipes it): derived from vsm_root on a master store, the store's own
 * subkey on a restricted one; -EPERM for another VSM there. */
int store_vsm_seal_key(chsm_store *s, const char *id, uint8_t out[STORE_VSM_KEY_LEN]);

/* Maps an SQLite result code to a negative errno: SQLITE_FULL -ENOSPC,
 * foreign-key violation -ENOENT, other constraints -EEXIST, SQLITE_NOMEM
 * -ENOMEM, anything else -EIO. */
int store_sqlite_err(int rc);

void store_lock(chsm_store *s);
/* Forgets store_vsm_counts' kept answer: call (under lock) after any write
 * of the vsms table and at the end of an explicit transaction. */
void store_vsm_counts_changed(chsm_store *s);
void store_unlock(chsm_store *s);

/* Takes the mutex and opens a write transaction (BEGIN IMMEDIATE), or a
 * savepoint inside a store_begin transaction. Returns 0, or an error with
 * the mutex released. */
int store_write_begin(chsm_store *s);
/* Ends what store_write_begin opened: commits when r == 0, rolls back when
 * r < 0; after a commit outside store_begin, checkpoints the WAL if a row was
 * zeroised (a checkpoint that cannot run stays pending and is not an error).
 * Releases the mutex. Returns r, or the commit's error. */
int store_write_end(chsm_store *s, int r);

/* Checkpoints the WAL into the database and truncates it, if a zeroising
 * delete asked for it and no store_begin transaction is open. The request
 * stays pending when it fails, so the next write (or close) tries again. */
int store_checkpoint_pending(chsm_store *s);

/* Prepares sql and binds the values listed by types, one letter each:
 * 't' const char * (NULL binds NULL), 'i' int, 'I' int64_t,
 * 'b' const void *, size_t (a blob). The caller holds the mutex and hands
 * *ret_stmt back with store_release before it lets the mutex go. The
 * statement comes from the connection's cache when sql was prepared before
 * and that statement is not in use (a nested use of the same SQL gets a
 * statement of its own, finalized at its release). */
int store_prepare(chsm_store *s, sqlite3_stmt **ret_stmt, const char *sql,
		  const char *types, ...);
int store_prepare_v(chsm_store *s, sqlite3_stmt **ret_stmt, const char *sql,
		    const char *types, va_list ap);
/* Ends the use of a statement of store_prepare: a cached one is reset and
 * its bindings cleared (it then holds no pointer to the caller's values and
 * no read transaction) for the next store_prepare of its SQL; any other is
 * finalized. The caller holds the mutex. Accepts NULL. */
void store_release(chsm_store *s, sqlite3_stmt *st);
/* Finalizes every cached statement (store_close, before the connection
 * closes). The caller holds the mutex; no statement may be in use. */
void store_stmt_cache_clear(chsm_store *s);
/* Prepares sql with its values (as store_prepare) and steps it to its first
 * row: 0 with *ret_stmt on that row, -ENOENT when there is none (the
 * statement is then released), or another error. */
int store_query_row(chsm_store *s, sqlite3_stmt **ret_stmt, const char *sql,
		    const char *types, ...);
/* Runs one statement that returns no rows; *ret_changes (may be NULL) gets
 * the number of rows it changed. */
int store_run(chsm_store *s, int *ret_changes, const char *sql, const char *types, ...);
/* Runs a query whose first row's first column is a count (SELECT count(*)
 * ...) into *ret_count. The caller holds the mutex. */
int store_count(chsm_store *s, size_t *ret_count, const char *sql, const char *types, ...);
/* Zeroises rows: runs zero_sql (which overwrites their sealed column with
 * zeros of the same length), then delete_sql, both with the same bound
 * values. *ret_count (may be NULL) gets the number of rows deleted; when it
 * is not 0 the WAL is checkpointed at the end of the write. */
int store_zeroise(chsm_store *s, int *ret_count, const char *zero_sql, const char *delete_sql,
		  const char *types, ...);

/* Makes room for one more element of elem_size bytes in *array, which
 * holds count of *cap: doubles the capacity (16 at first) when full.
 * Returns 0 or -ENOMEM (*array and *cap unchanged). */
int store_grow(void **array, size_t *cap, size_t count, size_t elem_size);

/* Steps st: 1 when a row is ready, 0 when done, or a negative errno. */
int store_step(sqlite3_stmt *st);
/* Copies text column col into dst (cap bytes with the NUL); -EIO when it does
 * not fit (the database holds what the code never writes). NULL gives "". */
int store_col_copy(sqlite3_stmt *st, int col, char *dst, size_t cap);
/* A malloc'ed copy of text column col, NULL when the column is NULL. */
int store_col_dup(sqlite3_stmt *st, int col, char **ret);
/* Integer column col that must fit an int; -EIO when it does not. */
int store_col_int(sqlite3_stmt *st, int col, int *ret);

/* True when s is NUL-terminated within cap bytes. */
bool store_fits(const char *s, size_t cap);
/* True when s is a non-empty string shorter than cap bytes. */
bool store_nonempty_fits(const char *s, size_t cap);

/* Associated data binding a sealed value to its row: tag, then each of the
 * NULL-terminated list of strings, every one followed by a NUL byte.
 * -EINVAL when it would exceed cap. */
int store_aad(char *buf, size_t cap, size_t *ret_len, const char *tag, ...);
/* crypto_seal / crypto_unseal under the store's sealing key (device
 * secrets; -EPERM on a restricted store). VSM tokens and keys use
 * crypto_seal under store_vsm_seal_key instead. */
int store_seal(chsm_store *s, const char *aad, size_t aadlen, const void *plain, size_t len,
	       uint8_t **ret_sealed, size_t *ret_len);
int store_unseal(chsm_store *s, const char *aad, size_t aadlen, const void *sealed, size_t len,
		 uint8_t **ret_plain, size_t *ret_len);

#endif
