/*
 * store.c: opening and closing the store, schema migrations, explicit
 * transactions, device settings, sealed secrets, the nonce window and
 * idempotency records. VSMs are in store_vsm.c, tasks in store_task.c.
 *
 * Guarantees: the database file (and SQLite's -wal and -shm beside it) has
 * mode 0600; it runs in WAL mode with synchronous=FULL, secure_delete=ON and
 * foreign keys enforced, each checked after it is set; migration i moves
 * PRAGMA user_version from i to i + 1 in one transaction, so a crash leaves
 * the schema at a version the code knows; a database newer than the code is
 * refused, not touched. The sealing key never leaves the chsm_store and is
 * wiped at close.
 */
#include "store/store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/*
 * Migrations: migrations[i] brings the schema from version i to i + 1 and
 * ends by setting PRAGMA user_version to i + 1. Released entries are never
 * edited: a change to the schema is a new entry at the end.
 */
static const char *const migrations[] = {
	/* 0 -> 1: the first schema. */
	"CREATE TABLE settings ("
	"  name TEXT PRIMARY KEY NOT NULL,"
	"  value TEXT NOT NULL);"
	"CREATE TABLE secrets ("
	"  name TEXT PRIMARY KEY NOT NULL,"
	"  sealed BLOB NOT NULL);"
	"CREATE TABLE nonces ("
	"  nonce TEXT PRIMARY KEY NOT NULL,"
	"  ts INTEGER NOT NULL) WITHOUT ROWID;"
	"CREATE INDEX nonces_ts ON nonces(ts);"
	"CREATE TABLE idempotency ("
	"  key TEXT PRIMARY KEY NOT NULL,"
	"  method TEXT NOT NULL,"
	"  target TEXT NOT NULL,"
	"  body_sm3 TEXT NOT NULL,"
	"  status INTEGER NOT NULL,"
	"  response BLOB NOT NULL,"
	"  created_at INTEGER NOT NULL);"
	"CREATE INDEX idempotency_created ON idempotency(created_at);"
	"CREATE TABLE vsms ("
	"  id TEXT PRIMARY KEY NOT NULL,"
	"  name TEXT NOT NULL,"
	"  state TEXT NOT NULL,"
	"  version TEXT NOT NULL,"
	"  created_at INTEGER NOT NULL,"
	"  updated_at INTEGER NOT NULL,"
	"  state_version INTEGER NOT NULL,"
	"  max_keys INTEGER NOT NULL,"
	"  max_sessions INTEGER NOT NULL,"
	"  memory_mib INTEGER NOT NULL,"
	"  net_configured INTEGER NOT NULL,"
	"  net_ip TEXT NOT NULL,"
	"  net_prefix INTEGER NOT NULL,"
	"  net_gateway TEXT NOT NULL,"
	"  net_port INTEGER NOT NULL,"
	"  last_error TEXT NOT NULL,"
	"  desired_running INTEGER NOT NULL,"
	"  started_at INTEGER NOT NULL);"
	"CREATE INDEX vsms_endpoint ON vsms(net_ip, net_port) WHERE net_configured = 1;"
	"CREATE TABLE vsm_tokens ("
	"  vsm_id TEXT PRIMARY KEY NOT NULL REFERENCES vsms(id) ON DELETE CASCADE,"
	"  token_id TEXT NOT NULL,"
	"  sealed BLOB NOT NULL,"
	"  updated_at INTEGER NOT NULL);"
	"CREATE TABLE vsm_keys ("
	"  vsm_id TEXT NOT NULL REFERENCES vsms(id) ON DELETE CASCADE,"
	"  type TEXT NOT NULL,"
	"  idx INTEGER NOT NULL,"
	"  sealed BLOB NOT NULL,"
	"  PRIMARY KEY (vsm_id, type, idx));"
	"CREATE TABLE tasks ("
	"  id TEXT PRIMARY KEY NOT NULL,"
	"  operation TEXT NOT NULL,"
	"  target TEXT NOT NULL,"
	"  state TEXT NOT NULL,"
	"  code INTEGER NOT NULL,"
	"  message TEXT NOT NULL,"
	"  created_at INTEGER NOT NULL,"
	"  started_at INTEGER NOT NULL,"
	"  finished_at INTEGER NOT NULL,"
	"  params TEXT,"
	"  result TEXT,"
	"  callback_url TEXT,"
	"  callback_attempts INTEGER NOT NULL,"
	"  callback_delivered INTEGER NOT NULL,"
	"  callback_next_at INTEGER NOT NULL);"
	"CREATE INDEX tasks_state ON tasks(state, created_at);"
	"CREATE INDEX tasks_target ON tasks(target, state);"
	"CREATE INDEX tasks_callback ON tasks(callback_next_at)"
	"  WHERE callback_delivered = 0 AND callback_next_at > 0;"
	"PRAGMA user_version = 1;",
};
#define SCHEMA_VERSION ((int)(sizeof(migrations) / sizeof(migrations[0])))

/* ---- opening ---- */

/* fsyncs the directory holding path, so a file just created there survives
 * a crash. */
static int sync_parent_dir(const char *path)
{
	int r = 0, fd = -1;
	char *copy = strdup(path);
	if (!copy)
		return -ENOMEM;
	fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || fsync(fd) < 0)
		r = -errno;
	if (fd >= 0)
		close(fd);
	free(copy);
	return r;
}

/* Creates path as an empty 0600 file if it does not exist, and makes an
 * existing one 0600. Refuses anything but a regular file (no symlinks). */
static int prepare_db_file(const char *path)
{
	int r = 0;
	bool created = true;
	struct stat st;
	int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0 && errno == EEXIST) {
		created = false;
		fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	}
	if (fd < 0) {
		r = errno == ELOOP ? -EINVAL : -errno;
		goto out;
	}
	if (fstat(fd, &st) < 0) {
		r = -errno;
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		r = -EINVAL;
		goto out;
	}
	if ((st.st_mode & 07777) != 0600 && fchmod(fd, 0600) < 0) {
		r = -errno;
		goto out;
	}
	if (created) {
		if (fsync(fd) < 0) {
			r = -errno;
			goto out;
		}
		r = sync_parent_dir(path);
	}
out:
	if (fd >= 0)
		close(fd);
	return r;
}

/* Makes path + suffix 0600 if it exists as a regular file (SQLite creates
 * the -wal and -shm files with the database's mode; this makes sure). */
static int restrict_side_file(const char *path, const char *suffix)
{
	char side[4096];
	struct stat st;
	int n = snprintf(side, sizeof(side), "%s%s", path, suffix);
	if (n < 0 || (size_t)n >= sizeof(side))
		return -ENAMETOOLONG;
	if (lstat(side, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISREG(st.st_mode))
		return -EINVAL;
	if ((st.st_mode & 07777) != 0600 && chmod(side, 0600) < 0)
		return -errno;
	return 0;
}

/* restrict_side_file for the -wal and the -shm file. */
static int restrict_side_files(const char *path)
{
	int r = restrict_side_file(path, "-wal");
	return r < 0 ? r : restrict_side_file(path, "-shm");
}

/* Runs a PRAGMA; when expect is not NULL, its first result must be that
 * text (a build or file that cannot honour the setting is refused). */
static int pragma(chsm_store *s, const char *sql, const char *expect)
{
	sqlite3_stmt *st = NULL;
	int r = store_prepare(s, &st, sql, "");
	if (r < 0)
		goto out;
	r = store_step(st);
	if (r < 0)
		goto out;
	if (expect) {
		const unsigned char *got = r == 1 ? sqlite3_column_text(st, 0) : NULL;
		if (!got || strcmp((const char *)got, expect) != 0) {
			r = -EIO;
			goto out;
		}
	}
	while (r == 1)
		r = store_step(st);
out:
	store_release(s, st);
	return r;
}

static int read_user_version(chsm_store *s, int *ret_version)
{
	sqlite3_stmt *st = NULL;
	int r = store_prepare(s, &st, "PRAGMA user_version", "");
	if (r < 0)
		goto out;
	r = store_step(st);
	if (r == 0)
		r = -EIO;
	if (r < 0)
		goto out;
	r = store_col_int(st, 0, ret_version);
out:
	store_release(s, st);
	return r;
}

/* Runs every statement of a migration script, in the open transaction. */
static int run_script(chsm_store *s, const char *script)
{
	int r = 0;
	const char *sql = script;
	while (*sql) {
		sqlite3_stmt *st = NULL;
		const char *tail = NULL;
		r = store_sqlite_err(sqlite3_prepare_v2(s->db, sql, -1, &st, &tail));
		if (r >= 0 && st)
			r = store_step(st);
		sqlite3_finalize(st);
		if (r < 0)
			break;
		r = 0;
		if (!tail || tail == sql)
			break;
		sql = tail;
	}
	return r;
}

/* Brings the schema to SCHEMA_VERSION, one migration per transaction;
 * -EPROTO when the database is newer. */
static int migrate(chsm_store *s)
{
	for (;;) {
		int version = 0, after = 0;
		bool done = false;
		int r = store_write_begin(s);
		if (r < 0)
			return r;
		r = read_user_version(s, &version);
		if (r < 0)
			goto end;
		if (version > SCHEMA_VERSION || version < 0) {
			r = -EPROTO;
			goto end;
		}
		if (version == SCHEMA_VERSION) {
			done = true;
			goto end;
		}
		r = run_script(s, migrations[version]);
		if (r < 0)
			goto end;
		r = read_user_version(s, &after);
		if (r >= 0 && after != version + 1)
			r = -EIO;
end:
		r = store_write_end(s, r);
		if (r < 0)
			return r;
		if (done) {
			s->schema_version = version;
			return 0;
		}
	}
}

/* A zeroed chsm_store with its recursive mutex, into *ret. */
static int store_alloc(chsm_store **ret)
{
	pthread_mutexattr_t attr;
	chsm_store *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	if (pthread_mutexattr_init(&attr) != 0) {
		free(s);
		return -ENOMEM;
	}
	pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
	int r = pthread_mutex_init(&s->lock, &attr);
	pthread_mutexattr_destroy(&attr);
	if (r != 0) {
		free(s);
		return -ENOMEM;
	}
	if (pthread_mutex_init(&s->counts_lock, NULL) != 0) {
		pthread_mutex_destroy(&s->lock);
		free(s);
		return -ENOMEM;
	}
	*ret = s;
	return 0;
}

/* Opens the database at path with the SQLite flags (plus full mutex and
 * no symlinks), sets the busy timeout and the pragmas every connection
 * needs, and reads each back. */
static int connect_db(chsm_store *s, const char *path, int flags)
{
	int r = store_sqlite_err(sqlite3_open_v2(path, &s->db,
						 flags | SQLITE_OPEN_FULLMUTEX |
						 SQLITE_OPEN_NOFOLLOW,
						 NULL));
	if (r < 0)
		return r;
	sqlite3_extended_result_codes(s->db, 1);
	r = store_sqlite_err(sqlite3_busy_timeout(s->db, STORE_BUSY_TIMEOUT_MS));
	if (r < 0)
		return r;
	/* Before anything else reads the file: a non-database fails here. */
	r = pragma(s, "PRAGMA journal_mode = WAL", "wal");
	if (r < 0)
		return r;
	r = pragma(s, "PRAGMA synchronous = FULL", NULL);
	if (r >= 0)
		r = pragma(s, "PRAGMA synchronous", "2");
	if (r >= 0)
		r = pragma(s, "PRAGMA secure_delete = ON", "1");
	if (r >= 0)
		r = pragma(s, "PRAGMA foreign_keys = ON", NULL);
	if (r >= 0)
		r = pragma(s, "PRAGMA foreign_keys", "1");
	return r;
}

int store_open(const char *path, const uint8_t master_key[STORE_MASTER_KEY_LEN],
	       chsm_store **ret_store)
{
	chsm_store *s = NULL;
	int r;
	if (!path || !*path || !master_key || !ret_store)
		return -EINVAL;
	r = store_alloc(&s);
	if (r < 0)
		return r;
	r = crypto_kdf_sm3(master_key, STORE_MASTER_KEY_LEN, "store-seal-v1", NULL, 0,
			   s->seal_key, sizeof(s->seal_key));
	if (r >= 0)
		r = crypto_kdf_sm3(master_key, STORE_MASTER_KEY_LEN, "vsm-root-v1", NULL, 0,
				   s->vsm_root, sizeof(s->vsm_root));
	if (r < 0)
		goto out;
	r = prepare_db_file(path);
	if (r < 0)
		goto out;
	r = connect_db(s, path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
	if (r < 0)
		goto out;
	r = migrate(s);
	if (r < 0)
		goto out;
	r = restrict_side_files(path);
	if (r < 0)
		goto out;
	*ret_store = s;
	s = NULL;
out:
	store_close(s);
	return r;
}

int store_open_vsm(const char *path, const char *id, const uint8_t vsm_key[STORE_VSM_KEY_LEN],
		   chsm_store **ret_store)
{
	chsm_store *s = NULL;
	struct stat st;
	int r, version = 0;
	if (!path || !*path || !store_nonempty_fits(id, CHSM_VSM_ID_MAX_LEN + 1) || !vsm_key ||
	    !ret_store)
		return -EINVAL;
	/* An existing regular file only: the VSM never creates the database. */
	if (lstat(path, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return -EINVAL;
	r = store_alloc(&s);
	if (r < 0)
		return r;
	s->restricted = true;
	memcpy(s->vsm_id, id, strlen(id) + 1);
	memcpy(s->vsm_key, vsm_key, STORE_VSM_KEY_LEN);
	r = connect_db(s, path, SQLITE_OPEN_READWRITE);
	if (r < 0)
		goto out;
	store_lock(s);
	r = read_user_version(s, &version);
	store_unlock(s);
	if (r < 0)
		goto out;
	if (version != SCHEMA_VERSION) {
		r = -EPROTO;
		goto out;
	}
	s->schema_version = version;
	r = restrict_side_files(path);
	if (r < 0)
		goto out;
	*ret_store = s;
	s = NULL;
out:
	store_close(s);
	return r;
}

int store_vsm_subkey(chsm_store *s, const char *id, uint8_t out[STORE_VSM_KEY_LEN])
{
	if (!s || !store_nonempty_fits(id, CHSM_VSM_ID_MAX_LEN + 1) || !out)
		return -EINVAL;
	int r = store_need_master(s);
	if (r < 0)
		return r;
	return store_vsm_seal_key(s, id, out);
}

int store_snapshot_begin(chsm_store *s, chsm_store **ret_snapshot)
{
	chsm_store *snap = NULL;
	char *path = NULL;
	int r;
	if (!s || !ret_snapshot)
		return -EINVAL;
	if (s->restricted || s->snapshot)
		return -EPERM;
	store_lock(s);
	const char *name = sqlite3_db_filename(s->db, "main");
	path = name && *name ? strdup(name) : NULL;
	store_unlock(s);
	if (!path)
		return name && *name ? -ENOMEM : -EINVAL;
	r = store_alloc(&snap);
	if (r < 0)
		goto out;
	memcpy(snap->seal_key, s->seal_key, sizeof(snap->seal_key));
	memcpy(snap->vsm_root, s->vsm_root, sizeof(snap->vsm_root));
	snap->schema_version = s->schema_version;
	r = connect_db(snap, path, SQLITE_OPEN_READONLY);
	if (r < 0)
		goto out;
	/* A deferred transaction takes its WAL read mark at its first read:
	 * from then on it sees the database as it was at that instant. */
	store_lock(snap);
	r = store_run(snap, NULL, "BEGIN", "");
	if (r >= 0) {
		snap->in_tx = true;
		size_t n = 0;
		r = store_count(snap, &n, "SELECT count(*) FROM vsms", "");
	}
	store_unlock(snap);
	if (r < 0)
		goto out;
	snap->snapshot = true;
	snap->parent = s;
	store_lock(s);
	s->snapshots++;
	store_unlock(s);
	*ret_snapshot = snap;
	snap = NULL;
out:
	store_close(snap);
	free(path);
	return r;
}

void store_snapshot_end(chsm_store *snap)
{
	if (!snap || !snap->snapshot)
		return;
	chsm_store *parent = snap->parent;
	store_close(snap);
	/* The read mark is gone: a deferred checkpoint can run now. */
	store_lock(parent);
	parent->snapshots--;
	(void)store_checkpoint_pending(parent);
	store_unlock(parent);
}

void store_close(chsm_store *s)
{
	if (!s)
		return;
	if (s->db) {
		if (s->in_tx)
			(void)store_run(s, NULL, "ROLLBACK", "");
		s->in_tx = false;
		if (!s->snapshot)
			(void)store_checkpoint_pending(s);
		store_stmt_cache_clear(s);
		sqlite3_close(s->db);
		free(s->digests);
	}
	crypto_wipe(s->seal_key, sizeof(s->seal_key));
	crypto_wipe(s->vsm_root, sizeof(s->vsm_root));
	crypto_wipe(s->vsm_key, sizeof(s->vsm_key));
	pthread_mutex_destroy(&s->counts_lock);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

int store_schema_version(chsm_store *s)
{
	return s ? s->schema_version : -EINVAL;
}

/* ---- explicit transactions ---- */

int store_begin(chsm_store *s)
{
	int r;
	if (!s)
		return -EINVAL;
	if (s->restricted || s->snapshot)
		return -EPERM;
	store_lock(s);
	if (s->in_tx) {
		r = -EINVAL;
		goto out;
	}
	r = store_run(s, NULL, "BEGIN IMMEDIATE", "");
	if (r >= 0)
		s->in_tx = true;
out:
	if (r < 0)
		store_unlock(s);    /* on success the mutex stays held */
	return r;
}

/* Ends the explicit transaction with sql ("COMMIT" or "ROLLBACK"), rolling
 * back if a commit fails, then checkpoints pending zeroisations and releases
 * the mutex store_begin took. */
static int end_transaction(chsm_store *s, const char *sql)
{
	int r;
	if (!s)
		return -EINVAL;
	if (s->restricted || s->snapshot)
		return -EPERM;
	store_lock(s);
	if (!s->in_tx) {
		store_unlock(s);
		return -EINVAL;
	}
	r = store_run(s, NULL, sql, "");
	if (!sqlite3_get_autocommit(s->db))
		(void)store_run(s, NULL, "ROLLBACK", "");
	s->in_tx = false;
	store_vsm_counts_changed(s);    /* a rollback undid what was counted */
	(void)store_checkpoint_pending(s);   /* pending on failure, as in store_write_end */
	store_unlock(s);
	store_unlock(s);
	return r;
}

int store_read_begin(chsm_store *s)
{
	if (!s)
		return -EINVAL;
	store_lock(s);
	if (s->read_depth == 0 && !s->in_tx) {
		int r = store_run(s, NULL, "BEGIN", "");
		if (r < 0) {
			store_unlock(s);
			return r;
		}
		s->read_began = true;
	}
	s->read_depth++;
	return 0;
}

void store_read_end(chsm_store *s)
{
	if (!s)
		return;
	if (--s->read_depth == 0 && s->read_began) {
		s->read_began = false;
		/* Only reads ran: the end cannot lose anything. */
		if (!sqlite3_get_autocommit(s->db))
			(void)store_run(s, NULL, "COMMIT", "");
	}
	store_unlock(s);
}

int store_commit(chsm_store *s)
{
	return end_transaction(s, "COMMIT");
}

int store_rollback(chsm_store *s)
{
	return end_transaction(s, "ROLLBACK");
}

/* ---- settings ---- */

int store_setting_get(chsm_store *s, const char *name, char **ret_value)
{
	if (s && s->restricted)
		return -EPERM;
	sqlite3_stmt *st = NULL;
	char *value = NULL;
	int r;
	if (!s || !store_nonempty_fits(name, STORE_NAME_MAX_LEN + 1) || !ret_value)
		return -EINVAL;
	store_lock(s);
	r = store_query_row(s, &st, "SELECT value FROM settings WHERE name = ?", "t", name);
	if (r < 0)
		goto out;
	r = store_col_dup(st, 0, &value);
	if (r < 0)
		goto out;
	if (!value) {
		r = -EIO;
		goto out;
	}
	*ret_value = value;
	r = 0;
out:
	store_release(s, st);
	store_unlock(s);
	return r;
}

int store_setting_set(chsm_store *s, const char *name, const char *value)
{
	if (s && s->restricted)
		return -EPERM;
	int r;
	if (!s || !store_nonempty_fits(name, STORE_NAME_MAX_LEN + 1))
		return -EINVAL;
	r = store_write_begin(s);
	if (r < 0)
		return r;
	if (value)
		r = store_run(s, NULL,
			      "INSERT INTO settings(name, value) VALUES(?1, ?2)"
			      " ON CONFLICT(name) DO UPDATE SET value = excluded.value",
			      "tt", name, value);
	else
		r = store_run(s, NULL, "DELETE FROM settings WHERE name = ?", "t", name);
	return store_write_end(s, r);
}

/* ---- sealed secrets ---- */

static int secret_aad(const char *name, char aad[STORE_AAD_MAX], size_t *ret_len)
{
	return store_aad(aad, STORE_AAD_MAX, ret_len, "secret", name, NULL);
}

int store_secret_get(chsm_store *s, const char *name, uint8_t **ret_data, size_t *ret_len)
{
	if (s && s->restricted)
		return -EPERM;
	sqlite3_stmt *st = NULL;
	uint8_t *plain = NULL, *copy = NULL;
	size_t plain_len = 0, aad_len = 0;
	char aad[STORE_AAD_MAX];
	int r;
	if (!s || !store_nonempty_fits(name, STORE_NAME_MAX_LEN + 1) || !ret_data || !ret_len)
		return -EINVAL;
	r = secret_aad(name, aad, &aad_len);
	if (r < 0)
		return r;
	store_lock(s);
	r = store_query_row(s, &st, "SELECT sealed FROM secrets WHERE name = ?", "t", name);
	if (r < 0)
		goto out;
	r = store_unseal(s, aad, aad_len, sqlite3_column_blob(st, 0),
			 (size_t)sqlite3_column_bytes(st, 0), &plain, &plain_len);
	if (r < 0)
		goto out;
	copy = malloc(plain_len + 1);
	if (!copy) {
		r = -ENOMEM;
		goto out;
	}
	memcpy(copy, plain, plain_len);
	copy[plain_len] = '\0';
	*ret_data = copy;
	*ret_len = plain_len;
	r = 0;
out:
	crypto_free_secret(plain, plain_len);
	store_release(s, st);
	store_unlock(s);
	return r;
}

int store_secret_set(chsm_store *s, const char *name, const void *data, size_t len)
{
	if (s && s->restricted)
		return -EPERM;
	uint8_t *sealed = NULL;
	size_t sealed_len = 0, aad_len = 0;
	char aad[STORE_AAD_MAX];
	int r;
	if (!s || !store_nonempty_fits(name, STORE_NAME_MAX_LEN + 1) ||
	    len > STORE_VALUE_MAX_LEN || (!data && len))
		return -EINVAL;
	if (data) {
		r = secret_aad(name, aad, &aad_len);
		if (r < 0)
			return r;
		r = store_seal(s, aad, aad_len, data, len, &sealed, &sealed_len);
		if (r < 0)
			return r;
	}
	r = store_write_begin(s);
	if (r < 0)
		goto out;
	r = store_zeroise(s, NULL,
			  "UPDATE secrets SET sealed = zeroblob(length(sealed)) WHERE name = ?",
			  "DELETE FROM secrets WHERE name = ?", "t", name);
	if (r >= 0 && sealed)
		r = store_run(s, NULL, "INSERT INTO secrets(name, sealed) VALUES(?, ?)", "tb",
			      name, sealed, sealed_len);
	r = store_write_end(s, r);
out:
	free(sealed);
	return r;
}

/* ---- nonces ---- */

int store_nonces_use(chsm_store *s, const struct store_nonce *items, size_t n, int64_t now_ms,
		     int *results)
{
	if (s && s->restricted)
		return -EPERM;
	int r;
	bool purge;
	if (!s || (n && (!items || !results)))
		return -EINVAL;
	if (n == 0)
		return 0;
	r = store_write_begin(s);
	if (r < 0)
		return r;
	purge = now_ms - s->nonce_purged_at >= 1000 || now_ms < s->nonce_purged_at;
	if (purge)
		r = store_run(s, NULL, "DELETE FROM nonces WHERE ts < ?", "I",
			      (int64_t)(now_ms - 2 * (int64_t)CHSM_AUTH_WINDOW_MS));
	for (size_t i = 0; i < n && r >= 0; i++) {
		int inserted = 0;
		if (!store_nonempty_fits(items[i].nonce, CHSM_NONCE_MAX_LEN + 1)) {
			results[i] = -EINVAL;
			continue;
		}
		/* An item equal to an earlier one of this batch conflicts with
		 * it like with a committed one: replayed. */
		r = store_run(s, &inserted,
			      "INSERT INTO nonces(nonce, ts) VALUES(?, ?)"
			      " ON CONFLICT(nonce) DO NOTHING",
			      "tI", items[i].nonce, (int64_t)items[i].timestamp_ms);
		results[i] = inserted ? 0 : 1;
	}
	if (r >= 0 && purge)
		s->nonce_purged_at = now_ms;   /* under the mutex */
	return store_write_end(s, r);
}

int store_nonce_use(chsm_store *s, const char *nonce, int64_t timestamp_ms, int64_t now_ms)
{
	struct store_nonce item = {.nonce = nonce, .timestamp_ms = timestamp_ms};
	int result = -EINVAL;
	int r = store_nonces_use(s, &item, 1, now_ms, &result);
	return r < 0 ? r : result;
}

int store_nonces_each(chsm_store *s, int64_t after_ms,
		      int (*fn)(void *ctx, const char *nonce, int64_t timestamp_ms), void *ctx)
{
	if (s && s->restricted)
		return -EPERM;
	sqlite3_stmt *st = NULL;
	char nonce[CHSM_NONCE_MAX_LEN + 1];
	int r;
	if (!s || !fn)
		return -EINVAL;
	store_lock(s);
	r = store_prepare(s, &st, "SELECT nonce, ts FROM nonces WHERE ts > ?", "I", after_ms);
	while (r >= 0 && (r = store_step(st)) == 1) {
		r = store_col_copy(st, 0, nonce, sizeof(nonce));
		if (r >= 0)
			r = fn(ctx, nonce, sqlite3_column_int64(st, 1));
	}
	store_release(s, st);
	store_unlock(s);
	return r < 0 ? r : 0;
}

/* ---- idempotency ---- */

int store_idem_get(chsm_store *s, const char *key, int64_t now_ms, struct store_idem *ret)
{
	if (s && s->restricted)
		return -EPERM;
	sqlite3_stmt *st = NULL;
	struct store_idem rec = {0};
	int r;
	if (!s || !store_nonempty_fits(key, CHSM_IDEMPOTENCY_KEY_MAX_LEN + 1) || !ret)
		return -EINVAL;
	store_lock(s);
	r = store_query_row(s, &st,
			    "SELECT method, target, body_sm3, status, response, created_at"
			    " FROM idempotency WHERE key = ? AND created_at > ?",
			    "tI", key, (int64_t)(now_ms - CHSM_IDEMPOTENCY_TTL_MS));
	if (r < 0)
		goto out;
	r = store_col_dup(st, 0, &rec.method);
	if (r >= 0)
		r = store_col_dup(st, 1, &rec.target);
	if (r >= 0)
		r = store_col_copy(st, 2, rec.body_sm3, sizeof(rec.body_sm3));
	if (r >= 0)
		r = store_col_int(st, 3, &rec.http_status);
	if (r < 0)
		goto out;
	if (!rec.method || !rec.target) {
		r = -EIO;
		goto out;
	}
	const void *body = sqlite3_column_blob(st, 4);
	rec.response_len = (size_t)sqlite3_column_bytes(st, 4);
	rec.response = malloc(rec.response_len + 1);
	if (!rec.response) {
		r = -ENOMEM;
		goto out;
	}
	if (rec.response_len)
		memcpy(rec.response, body, rec.response_len);
	rec.response[rec.response_len] = '\0';
	rec.created_at = sqlite3_column_int64(st, 5);
	*ret = rec;
	memset(&rec, 0, sizeof(rec));
	r = 0;
out:
	store_idem_clear(&rec);
	store_release(s, st);
	store_unlock(s);
	return r;
}

int store_idem_put(chsm_store *s, const char *key, const struct store_idem *rec)
{
	if (s && s->restricted)
		return -EPERM;
	int r;
	if (!s || !store_nonempty_fits(key, CHSM_IDEMPOTENCY_KEY_MAX_LEN + 1) || !rec ||
	    !rec->method || !rec->target || !store_fits(rec->body_sm3, sizeof(rec->body_sm3)) ||
	    (!rec->response && rec->response_len))
		return -EINVAL;
	r = store_write_begin(s);
	if (r < 0)
		return r;
	r = store_run(s, NULL, "DELETE FROM idempotency WHERE created_at <= ?", "I",
		      (int64_t)(rec->created_at - CHSM_IDEMPOTENCY_TTL_MS));
	if (r >= 0)
		r = store_run(s, NULL,
			      "INSERT INTO idempotency(key, method, target, body_sm3, status,"
			      " response, created_at) VALUES(?, ?, ?, ?, ?, ?, ?)",
			      "ttttibI", key, rec->method, rec->target, rec->body_sm3,
			      rec->http_status, (const void *)rec->response, rec->response_len,
			      (int64_t)rec->created_at);
	return store_write_end(s, r);
}

void store_idem_clear(struct store_idem *rec)
{
	if (!rec)
		return;
	free(rec->method);
	free(rec->target);
	free(rec->response);
	memset(rec, 0, sizeof(*rec));
}
