/*
 * h_vsm.c: the VSM interfaces 7.3.1-7.3.13 and the VSM list.
 *
 * Reads answer from the store and the supervisor. Changes that complete at
 * once (network, token) are one store transaction. Lifecycle operations are
 * tasks: the request checks existence (3001), the state table of
 * PROFILE.md §8 (3003), admission (3005/3008), moves the VSM to its
 * transitional state and records the task, all in one transaction; ops.c
 * does the work.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/internal.h"
#include "common/log.h"
#include "common/util.h"
#include "proto/jsonw.h"

#define DEFAULT_MAX_KEYS     1024
#define DEFAULT_MAX_SESSIONS 256
#define DEFAULT_MEMORY_MIB   64

static bool state_in(const char *state, const char *const *allowed)
{
	for (; *allowed; allowed++)
		if (strcmp(state, *allowed) == 0)
			return true;
	return false;
}

static json_t *network_json(const struct store_vsm_network *n)
{
	if (!n->configured)
		return json_null();
	json_t *o = json_object();
	json_object_set_new(o, "ipAddress", json_string(n->ip_address));
	json_object_set_new(o, "prefixLength", json_integer(n->prefix_length));
	json_object_set_new(o, "gateway", n->gateway[0] ? json_string(n->gateway) : json_null());
	json_object_set_new(o, "port", json_integer(n->port));
	return o;
}

static json_t *endpoint_json(const struct store_vsm_network *n)
{
	if (!n->configured)
		return json_null();
	char buf[80];
	if (strchr(n->ip_address, ':'))
		snprintf(buf, sizeof(buf), "[%s]:%d", n->ip_address, n->port);
	else
		snprintf(buf, sizeof(buf), "%s:%d", n->ip_address, n->port);
	return json_string(buf);
}

static json_t *token_json(const struct store_vsm *v)
{
	json_t *o = json_object();
	json_object_set_new(o, "tokenId", v->token_id[0] ? json_string(v->token_id) : json_null());
	json_object_set_new(o, "configured", json_boolean(v->token_configured));
	json_object_set_new(o, "updatedAt", v->token_updated_at ? json_integer(v->token_updated_at) : json_null());
	return o;
}

json_t *api_vsm_details(struct api_ctx *ctx, const struct store_vsm *v)
{
	size_t keys = 0;
	(void)store_vsm_key_count(ctx->store, v->id, &keys);
	json_t *o = json_object();
	json_object_set_new(o, "vsmId", json_string(v->id));
	json_object_set_new(o, "name", json_string(v->name));
	json_object_set_new(o, "state", json_string(v->state));
	json_object_set_new(o, "version", json_string(v->version));
	json_object_set_new(o, "createdAt", json_integer(v->created_at));
	json_object_set_new(o, "updatedAt", json_integer(v->updated_at));
	json_object_set_new(o, "stateVersion", json_integer(v->state_version));
	json_object_set_new(o, "resources", json_pack("{s:i,s:i,s:i}", "maxKeys", v->max_keys,
						      "maxSessions", v->max_sessions, "memoryMiB",
						      v->memory_mib));
	json_object_set_new(o, "network", network_json(&v->network));
	json_object_set_new(o, "token", token_json(v));
	json_object_set_new(o, "keyCount", json_integer((json_int_t)keys));
	json_object_set_new(o, "serviceEndpoint", endpoint_json(&v->network));
	return o;
}

/* A statistics file older than this is a VSM process that stopped writing:
 * its figures are not shown. */
#define VSM_STATS_FRESH_MS 10000
/* Bounds on what a VSM process's statistics file may hold. */
#define VSM_STATS_MAX_BYTES (16 * 1024)
#define VSM_STATS_MAX_OPS   64
/* The statistics files' names: <state_dir>/run/vsm-<id>.stats.json. */
#define STATS_NAME_PREFIX "vsm-"
#define STATS_NAME_SUFFIX ".stats.json"

/* A non-negative JSON integer. */
static bool stat_count(json_t *j, json_int_t *ret)
{
	if (!json_is_integer(j) || json_integer_value(j) < 0)
		return false;
	*ret = json_integer_value(j);
	return true;
}

/* A VSM's statistics as last read from its file, and which file that was
 * (a new document replaces the file: a new inode). */
struct stats_entry {
	char id[CHSM_VSM_ID_MAX_LEN + 1];
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime;
	/* Nothing touched the file since it was read (the watch saw no event
	 * for its name): used without a stat. */
	bool clean;
	/* An event named the file since it was read: read it again (a
	 * rewrite in place may keep its size and modification time). */
	bool touched;
	json_int_t sessions, total, updated;
	char *ops_text; /* the "ops" object as compact JSON (jsonw.h) */
};

/* Statistics by VSM id, sorted by id, under lock; watch_fd is an inotify
 * descriptor on the statistics files' directory, or -1 (then every use
 * checks the file with stat). */
struct api_stats_cache {
	pthread_mutex_t lock;
	struct stats_entry *e;
	size_t count, cap;
	int watch_fd;
	/* Counts the events that made entries unclean: an entry read while
	 * it moved is not marked clean (a concurrent sync may have taken the
	 * event of a change that came after the read). */
	uint64_t gen;
};

/* Entries the cache holds at most; when full it starts again empty (ids
 * of deleted VSMs would otherwise stay). */
#define STATS_CACHE_MAX (2 * CHSM_MAX_VSMS_CEILING)

/* What changes a file in the directory: a document renamed over it (the
 * VSM's way), written in place, or removed; and the directory's own end. */
#define STATS_WATCH_MASK                                                                    \
	(IN_MOVED_TO | IN_MOVED_FROM | IN_CLOSE_WRITE | IN_MODIFY | IN_CREATE | IN_DELETE |  \
	 IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF)

int api_stats_cache_new(const char *dir, struct api_stats_cache **ret)
{
	struct api_stats_cache *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	pthread_mutex_init(&c->lock, NULL);
	c->watch_fd = dir ? inotify_init1(IN_NONBLOCK | IN_CLOEXEC) : -1;
	if (c->watch_fd >= 0 && inotify_add_watch(c->watch_fd, dir, STATS_WATCH_MASK) < 0) {
		close(c->watch_fd);
		c->watch_fd = -1;
	}
	*ret = c;
	return 0;
}

bool api_stats_cache_watching(const struct api_stats_cache *c)
{
	return c->watch_fd >= 0;
}

/* Drops every entry; the caller holds the lock (or is the only user). */
static void stats_cache_empty(struct api_stats_cache *c)
{
	for (size_t i = 0; i < c->count; i++)
		free(c->e[i].ops_text);
	c->count = 0;
}

void api_stats_cache_free(struct api_stats_cache *c)
{
	if (!c)
		return;
	stats_cache_empty(c);
	free(c->e);
	if (c->watch_fd >= 0)
		close(c->watch_fd);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

/* True when the stat a is of the same file as b, unchanged. */
static bool same_file(const struct stats_entry *a, const struct stat *b)
{
	return a->dev == b->st_dev && a->ino == b->st_ino && a->size == b->st_size &&
	       a->mtime.tv_sec == b->st_mtim.tv_sec && a->mtime.tv_nsec == b->st_mtim.tv_nsec;
}

/* The index of id's entry in c, or where it would go (*ret_found false). */
static size_t stats_find(const struct api_stats_cache *c, const char *id, bool *ret_found)
{
	size_t lo = 0, hi = c->count;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int cmp = strcmp(id, c->e[mid].id);
		if (cmp == 0) {
			*ret_found = true;
			return mid;
		}
		if (cmp < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	*ret_found = false;
	return lo;
}

/* Every entry must be checked with stat again. Under lock. */
static void stats_cache_unsure(struct api_stats_cache *c)
{
	for (size_t i = 0; i < c->count; i++)
		c->e[i].clean = false;
	c->gen++;
}

/* The event for name: its VSM's entry (if any) is no longer clean. */
static void stats_cache_touched(struct api_stats_cache *c, const char *name)
{
	size_t plen = strlen(STATS_NAME_PREFIX), slen = strlen(STATS_NAME_SUFFIX);
	size_t len = strlen(name);
	char id[CHSM_VSM_ID_MAX_LEN + 1];
	bool found = false;
	if (len <= plen + slen || len - plen - slen >= sizeof(id) ||
	    strncmp(name, STATS_NAME_PREFIX, plen) != 0 ||
	    strcmp(name + len - slen, STATS_NAME_SUFFIX) != 0)
		return; /* a temporary file, or not a statistics file */
	memcpy(id, name + plen, len - plen - slen);
	id[len - plen - slen] = '\0';
	c->gen++;
	size_t at = stats_find(c, id, &found);
	if (found) {
		c->e[at].clean = false;
		c->e[at].touched = true;
	}
}

/* Reads every event queued on the watch: the entries of the files they
 * name are no longer clean. The kernel queues an event before the
 * rename or write that causes it returns, so after this call no clean
 * entry is older than its file was when the call began. A lost watch or
 * an overflowed queue makes every entry unclean (and a lost watch turns
 * watching off: stat from then on). */
static void stats_cache_sync(struct api_stats_cache *c)
{
	char buf[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
	pthread_mutex_lock(&c->lock);
	while (c->watch_fd >= 0) {
		ssize_t n = read(c->watch_fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0 || errno != EAGAIN) {
				close(c->watch_fd);
				c->watch_fd = -1;
				stats_cache_unsure(c);
			}
			break;
		}
		for (ssize_t off = 0; off + (ssize_t)sizeof(struct inotify_event) <= n;) {
			const struct inotify_event *ev = (const void *)(buf + off);
			if (ev->mask & (IN_Q_OVERFLOW | IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF |
					IN_UNMOUNT))
				stats_cache_unsure(c);
			if (ev->mask & (IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF | IN_UNMOUNT)) {
				close(c->watch_fd);
				c->watch_fd = -1;
				break;
			}
			if (ev->len && ev->name[ev->len - 1] == '\0')
				stats_cache_touched(c, ev->name);
			off += (ssize_t)(sizeof(struct inotify_event) + ev->len);
		}
	}
	pthread_mutex_unlock(&c->lock);
}

/* Parses and checks a statistics document (data, len) into e's figures
 * and ops_text (the "ops" object holding only "<alg>.<op>" or "<op>":
 * {count, rate} entries, as compact JSON). False when it is malformed.
 * The file comes from the VSM process, so every field is checked and only
 * known fields are copied. */
static bool parse_vsm_stats(const char *data, size_t len, struct stats_entry *e)
{
	json_t *doc = json_loadb(data, len, JSON_REJECT_DUPLICATES, NULL), *ops = NULL;
	bool ok = false;
	if (!json_is_object(doc) || !stat_count(json_object_get(doc, "sessions"), &e->sessions) ||
	    !stat_count(json_object_get(doc, "opsTotal"), &e->total) ||
	    !stat_count(json_object_get(doc, "updatedAt"), &e->updated))
		goto out;
	json_t *in = json_object_get(doc, "ops");
	if (!json_is_object(in) || json_object_size(in) > VSM_STATS_MAX_OPS)
		goto out;
	ops = json_object();
	const char *name;
	json_t *entry;
	json_object_foreach(in, name, entry) {
		json_int_t count = 0;
		json_t *rate = json_object_get(entry, "rate");
		if (!json_is_object(entry) || !stat_count(json_object_get(entry, "count"), &count) ||
		    !json_is_number(rate) || json_number_value(rate) < 0 || !name[0] ||
		    strlen(name) > 64 || !chsm_str_charset(name, strlen(name), "._-"))
			goto out;
		json_object_set_new(ops, name, json_pack("{s:I,s:f}", "count", count, "rate",
							 json_number_value(rate)));
	}
	e->ops_text = json_dumps(ops, GMT_JSON_DUMP_FLAGS);
	ok = e->ops_text != NULL;
out:
	json_decref(ops);
	json_decref(doc);
	return ok;
}

/* Puts fresh (its ops_text stolen) into c as id's entry. Under lock. */
static void stats_cache_put(struct api_stats_cache *c, const char *id, struct stats_entry *fresh)
{
	bool found = false;
	size_t at = stats_find(c, id, &found);
	if (found) {
		free(c->e[at].ops_text);
		c->e[at] = *fresh;
		fresh->ops_text = NULL;
		return;
	}
	if (c->count >= STATS_CACHE_MAX) {
		stats_cache_empty(c);
		at = 0;
	}
	if (c->count == c->cap) {
		size_t ncap = c->cap ? 2 * c->cap : 64;
		void *grown = realloc(c->e, ncap * sizeof(*c->e));
		if (!grown)
			return;
		c->e = grown;
		c->cap = ncap;
	}
	memmove(&c->e[at + 1], &c->e[at], (c->count - at) * sizeof(*c->e));
	c->e[at] = *fresh;
	fresh->ops_text = NULL;
	c->count++;
}

/* Into *ret (ops_text a new string), the statistics of the file at path:
 * the cached ones when that very file was read before (known untouched
 * since, or the same by stat), else read, parsed and cached. False when
 * it cannot be read or is malformed. The caller ran stats_cache_sync
 * since its request began. */
static bool stats_of_file(struct api_ctx *ctx, const char *id, const char *path,
			  struct stats_entry *ret)
{
	struct api_stats_cache *c = ctx->stats_cache;
	struct stat st;
	bool found = false;
	pthread_mutex_lock(&c->lock);
	size_t at = stats_find(c, id, &found);
	if (found && c->e[at].clean) {
		*ret = c->e[at];
		ret->ops_text = strdup(c->e[at].ops_text);
		pthread_mutex_unlock(&c->lock);
		return ret->ops_text != NULL;
	}
	/* An entry is clean only if no sync saw an event from here until it
	 * is stored. */
	uint64_t gen = c->gen;
	pthread_mutex_unlock(&c->lock);
	if (stat(path, &st) < 0 || !S_ISREG(st.st_mode))
		return false;
	pthread_mutex_lock(&c->lock);
	at = stats_find(c, id, &found);
	if (found && !c->e[at].touched && same_file(&c->e[at], &st)) {
		c->e[at].clean = c->watch_fd >= 0 && c->gen == gen;
		*ret = c->e[at];
		ret->ops_text = strdup(c->e[at].ops_text);
		pthread_mutex_unlock(&c->lock);
		return ret->ops_text != NULL;
	}
	pthread_mutex_unlock(&c->lock);
	char *data = NULL;
	size_t len = 0;
	struct stats_entry fresh = {.dev = st.st_dev, .ino = st.st_ino, .size = st.st_size,
				    .mtime = st.st_mtim};
	memcpy(fresh.id, id, strlen(id) + 1);
	struct stat after;
	bool ok = chsm_read_file(path, VSM_STATS_MAX_BYTES, &data, &len) == 0 &&
		  parse_vsm_stats(data, len, &fresh);
	free(data);
	if (!ok)
		return false;
	*ret = fresh;
	ret->ops_text = strdup(fresh.ops_text);
	/* Kept only when the file read is the one stat saw (the process did
	 * not replace it meanwhile). It is clean when watched and no event
	 * was taken since before that stat: a later change queues an event
	 * that the next sync sees. */
	if (ret->ops_text && stat(path, &after) == 0 && same_file(&fresh, &after)) {
		pthread_mutex_lock(&c->lock);
		fresh.clean = c->watch_fd >= 0 && c->gen == gen;
		stats_cache_put(c, id, &fresh);
		pthread_mutex_unlock(&c->lock);
	}
	free(fresh.ops_text);
	return ret->ops_text != NULL;
}

/* The statistics VSM id's process wrote (docs/vsm.md) into *ret
 * (ops_text a new string): false, with nothing set, when the file is
 * absent, malformed or older than VSM_STATS_FRESH_MS. The caller ran
 * stats_cache_sync since its request began. */
static bool read_vsm_stats(struct api_ctx *ctx, const char *id, struct stats_entry *ret)
{
	char path[sizeof(ctx->state_dir) + 96];
	struct stats_entry e;
	if (api_vsm_stats_path(ctx, id, path, sizeof(path)) < 0 ||
	    !stats_of_file(ctx, id, path, &e))
		return false;
	int64_t now = chsm_now_ms();
	if (e.updated < now - VSM_STATS_FRESH_MS || e.updated > now + VSM_STATS_FRESH_MS) {
		free(e.ops_text);
		return false;
	}
	*ret = e;
	return true;
}

void api_vsm_status_write(struct gmt_jsonw *w, const struct store_vsm *v, const char *digest,
			  const struct api_vsm_figures *f)
{
	gmt_jsonw_lit(w, "{\"vsmId\":");
	gmt_jsonw_string(w, v->id);
	gmt_jsonw_lit(w, ",\"state\":");
	gmt_jsonw_string(w, v->state);
	gmt_jsonw_lit(w, ",\"uptimeSeconds\":");
	gmt_jsonw_int(w, f->uptime_seconds);
	gmt_jsonw_lit(w, ",\"sessions\":");
	gmt_jsonw_int(w, f->sessions);
	gmt_jsonw_lit(w, ",\"opsTotal\":");
	gmt_jsonw_int(w, f->ops_total);
	gmt_jsonw_lit(w, ",\"ops\":");
	gmt_jsonw_lit(w, f->ops_text ? f->ops_text : "{}");
	gmt_jsonw_lit(w, ",\"cpuPercent\":");
	gmt_jsonw_tenths(w, f->cpu_tenths);
	gmt_jsonw_lit(w, ",\"memoryMiB\":");
	gmt_jsonw_tenths(w, f->memory_tenths);
	gmt_jsonw_lit(w, ",\"stateVersion\":");
	gmt_jsonw_int(w, v->state_version);
	gmt_jsonw_lit(w, ",\"stateDigest\":");
	gmt_jsonw_string(w, digest);
	gmt_jsonw_lit(w, ",\"lastError\":");
	/* A message that is not UTF-8 (no JSON string can hold it) is null. */
	json_t *error = v->last_error[0] ? json_string(v->last_error) : NULL;
	gmt_jsonw_json(w, error);
	json_decref(error);
	gmt_jsonw_lit(w, "}");
}

bool api_vsm_stats_read(struct api_ctx *ctx, const char *id, bool sync, struct api_vsm_figures *f)
{
	struct stats_entry e;
	if (sync)
		stats_cache_sync(ctx->stats_cache);
	if (!read_vsm_stats(ctx, id, &e))
		return false;
	f->sessions = e.sessions;
	f->ops_total = e.total;
	f->ops_text = e.ops_text;
	return true;
}

/* Writes v's 7.3.2 object, its process as pv says, into w. The caller ran
 * stats_cache_sync since its request began. */
static void vsm_status_write(struct api_ctx *ctx, const struct store_vsm *v, const char *digest,
			     const struct vsm_proc_view *pv, struct gmt_jsonw *w)
{
	struct api_vsm_figures f = {0};
	if (pv->running) {
		f.uptime_seconds = (chsm_now_ms() - pv->started_ms) / 1000;
		/* One decimal, cut as before: (int)(x * 10) tenths. */
		if (pv->has_stats) {
			f.cpu_tenths = (int)(pv->stats.cpu_percent * 10);
			f.memory_tenths = (int)(pv->stats.rss_bytes * 10 / (1024 * 1024));
		}
		(void)api_vsm_stats_read(ctx, v->id, false, &f);
	}
	api_vsm_status_write(w, v, digest, &f);
	free(f.ops_text);
}

json_t *api_vsm_status(struct api_ctx *ctx, const struct store_vsm *v)
{
	char digest[65] = "";
	(void)store_vsm_state_digest(ctx->store, v->id, digest);
	return api_vsm_status_digest(ctx, v, digest);
}

json_t *api_vsm_status_digest(struct api_ctx *ctx, const struct store_vsm *v, const char *digest)
{
	struct vsm_proc_view pv;
	struct gmt_jsonw w;
	char *text = NULL;
	size_t len = 0;
	const char *id = v->id;
	stats_cache_sync(ctx->stats_cache);
	vsm_supervisor_view(ctx->supervisor, &id, 1, &pv);
	gmt_jsonw_init(&w, 1024);
	vsm_status_write(ctx, v, digest, &pv, &w);
	if (gmt_jsonw_finish(&w, &text, &len) < 0)
		return NULL;
	json_t *o = json_loadb(text, len, 0, NULL);
	free(text);
	return o;
}

int api_vsm_status_all_write(struct api_ctx *ctx, const struct store_vsm *v,
			     const char (*digests)[65], size_t n, struct gmt_jsonw *w)
{
	const char **ids = n ? malloc(n * sizeof(*ids)) : NULL;
	struct vsm_proc_view *pv = n ? malloc(n * sizeof(*pv)) : NULL;
	if (n && (!ids || !pv)) {
		free(ids);
		free(pv);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++)
		ids[i] = v[i].id;
	stats_cache_sync(ctx->stats_cache);
	vsm_supervisor_view(ctx->supervisor, ids, n, pv);
	gmt_jsonw_lit(w, "[");
	for (size_t i = 0; i < n; i++) {
		if (i)
			gmt_jsonw_lit(w, ",");
		vsm_status_write(ctx, &v[i], digests[i], &pv[i], w);
	}
	gmt_jsonw_lit(w, "]");
	free(ids);
	free(pv);
	return 0;
}

/* Loads the VSM named in the path; sets 3001/5001 on failure. */
static bool load_vsm(struct api_call *c, struct store_vsm *v)
{
	int r = store_vsm_get(c->ctx->store, c->param, v);
	if (r == 0)
		return true;
	api_fail(c, r == -ENOENT ? GMT_E_VSM_NOT_FOUND : GMT_E_STORAGE, NULL);
	return false;
}

void h_vsm_list(struct api_call *c)
{
	struct store_vsm *v = NULL;
	size_t n = 0;
	if (store_vsm_list(c->ctx->store, &v, &n) < 0) {
		api_fail(c, GMT_E_STORAGE, NULL);
		return;
	}
	json_t *arr = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(arr, api_vsm_details(c->ctx, &v[i]));
	free(v);
	api_ok(c, json_pack("{s:o}", "vsms", arr));
}

void h_vsm_info(struct api_call *c)
{
	struct store_vsm v;
	if (load_vsm(c, &v))
		api_ok(c, api_vsm_details(c->ctx, &v));
}

void h_vsm_status(struct api_call *c)
{
	struct store_vsm v;
	if (load_vsm(c, &v))
		api_ok(c, api_vsm_status(c->ctx, &v));
}

/* ---- network and token ---- */

/* Validates a network object into ret; sets c's error and returns false. */
static bool parse_network(struct api_call *c, const json_t *obj, struct store_vsm_network *ret)
{
	static const struct api_field fields[] = {
		{"ipAddress", API_STRING, true}, {"prefixLength", API_INT, true},
		{"gateway", API_STRING, false}, {"port", API_INT, true}, {NULL}};
	const char *field = NULL;
	int code = api_check_fields(obj, fields, &field);
	if (code != GMT_OK) {
		api_fail(c, code, "%s: network", code == GMT_E_PARAM_MISSING ? "required parameter missing"
									  : "parameter invalid");
		return false;
	}
	const char *ip = json_string_value(json_object_get(obj, "ipAddress"));
	const char *gw = json_string_value(json_object_get(obj, "gateway"));
	json_int_t prefix = json_integer_value(json_object_get(obj, "prefixLength"));
	json_int_t port = json_integer_value(json_object_get(obj, "port"));
	int family = 0, gw_family = 0;
	if (!api_valid_ip(ip, &family)) {
		api_fail(c, GMT_E_PARAM_INVALID, "parameter invalid: ipAddress");
		return false;
	}
	if (prefix < 0 || prefix > (family == AF_INET ? 32 : 128)) {
		api_fail(c, GMT_E_PARAM_INVALID, "parameter invalid: prefixLength");
		return false;
	}
	if (gw && (!api_valid_ip(gw, &gw_family) || gw_family != family)) {
		api_fail(c, GMT_E_PARAM_INVALID, "parameter invalid: gateway");
		return false;
	}
	if (port < 1 || port > 65535) {
		api_fail(c, GMT_E_PARAM_INVALID, "parameter invalid: port");
		return false;
	}
	/* Canonical text, so that uniqueness compares like with like. */
	unsigned char bin[16];
	memset(ret, 0, sizeof(*ret));
	inet_pton(family, ip, bin);
	inet_ntop(family, bin, ret->ip_address, sizeof(ret->ip_address));
	if (gw) {
		inet_pton(family, gw, bin);
		inet_ntop(family, bin, ret->gateway, sizeof(ret->gateway));
	}
	ret->configured = true;
	ret->prefix_length = (int)prefix;
	ret->port = (int)port;
	return true;
}

/* 3009 when another VSM has this endpoint. */
static bool endpoint_free(struct api_call *c, const struct store_vsm_network *n, const char *self)
{
	char other[CHSM_VSM_ID_MAX_LEN + 1];
	int r = store_vsm_find_endpoint(c->ctx->store, n->ip_address, n->port, self, other);
	if (r == -ENOENT)
		return true;
	api_fail(c, r == 0 ? GMT_E_ADDRESS_IN_USE : GMT_E_STORAGE, NULL);
	return false;
}

/* A token {tokenId, secret}: secret decoded into *ret_secret (secret). */
static bool parse_token(struct api_call *c, const json_t *obj, const char **ret_id,
			uint8_t **ret_secret, size_t *ret_len)
{
	static const struct api_field fields[] = {
		{"tokenId", API_STRING, true}, {"secret", API_STRING, true}, {NULL}};
	const char *field = NULL;
	int code = api_check_fields(obj, fields, &field);
	if (code != GMT_OK) {
		api_fail(c, code, "%s: %s", code == GMT_E_PARAM_MISSING ? "required parameter missing"
									: "parameter invalid",
			 field && (!strcmp(field, "tokenId") || !strcmp(field, "secret")) ? field : "token");
		return false;
	}
	const char *id = json_string_value(json_object_get(obj, "tokenId"));
	if (strlen(id) < 1 || strlen(id) > 64 || !chsm_str_charset(id, strlen(id), "_.-")) {
		api_fail(c, GMT_E_PARAM_INVALID, "parameter invalid: tokenId");
		return false;
	}
	const char *b64 = json_string_value(json_object_get(obj, "secret"));
	uint8_t *sec = NULL;
	size_t len = 0;
	if (strlen(b64) > 128 || crypto_base64_decode(b64, strlen(b64), &sec, &len) < 0 ||
	    len < CHSM_TOKEN_SECRET_MIN || len > CHSM_TOKEN_SECRET_MAX) {
		crypto_free_secret(sec, len);
		api_fail(c, GMT_E_PARAM_INVALID, "parameter invalid: secret (base64 of %d to %d bytes)",
			 CHSM_TOKEN_SECRET_MIN, CHSM_TOKEN_SECRET_MAX);
		return false;
	}
	*ret_id = id;
	*ret_secret = sec;
	*ret_len = len;
	return true;
}

static const char *const configurable_states[] = {"stopped", "running", NULL};

/* The common frame of 7.3.3 and 7.3.4: load, check state, apply, bump the
 * state version, commit, answer with the details and when it applies:
 * "now" for a stopped VSM; for a running one what the change says
 * ("next-start" unless it sets *applied: "now" for a token, which the VSM
 * reads at every session, "live" for a network it moved to). */
typedef bool (*vsm_change_fn)(struct api_call *c, struct store_vsm *v, void *arg,
			      const char **applied);

static void change_vsm(struct api_call *c, vsm_change_fn change, void *arg, const char *event)
{
	struct api_ctx *ctx = c->ctx;
	struct store_vsm v;
	if (store_begin(ctx->store) < 0) {
		api_fail(c, GMT_E_STORAGE, NULL);
		return;
	}
	if (!load_vsm(c, &v))
		goto rollback;
	char busy[32];
	if (store_task_active_for_target(ctx->store, v.id, busy) == 0) {
		api_fail(c, GMT_E_BUSY, NULL);
		goto rollback;
	}
	if (!state_in(v.state, configurable_states)) {
		api_fail(c, GMT_E_STATE, "not allowed in the current state: %s", v.state);
		goto rollback;
	}
	const char *applied = strcmp(v.state, "running") == 0 ? "next-start" : "now";
	if (!change(c, &v, arg, &applied))
		goto rollback;
	v.state_version++;
	v.updated_at = chsm_now_ms();
	if (store_vsm_update(ctx->store, &v) < 0 || store_commit(ctx->store) < 0) {
		api_fail(c, GMT_E_STORAGE, NULL);
		store_rollback(ctx->store);
		return;
	}
	(void)store_vsm_get(ctx->store, v.id, &v);
	chsm_log(CHSM_LOG_INFO, event, "vsm", v.id, "request_id", c->request_id, NULL);
	json_t *d = api_vsm_details(ctx, &v);
	json_object_set_new(d, "applied", json_string(applied));
	api_ok(c, d);
	return;
rollback:
	store_rollback(ctx->store);
}

struct network_arg {
	struct store_vsm_network next, old;
	bool moved;
};

/* A running VSM moves its listener before the change commits: the answer
 * says "live", and a failed move changes nothing (hostnet.c). */
static bool apply_network(struct api_call *c, struct store_vsm *v, void *arg,
			  const char **applied)
{
	struct network_arg *a = arg;
	if (!endpoint_free(c, &a->next, v->id) || !api_vsm_ip_free(c, &a->next, v->id))
		return false;
	a->old = v->network;
	if (strcmp(v->state, "running") == 0 && v->network.configured) {
		int r = api_vsm_move(c, v->id, &v->network, &a->next);
		if (r < 0 && r != -ENOENT)
			return false;
		if (r == 0) {
			a->moved = true;
			*applied = "live";
		}
	}
	v->network = a->next;
	return true;
}

void h_vsm_network(struct api_call *c)
{
	struct network_arg a = {0};
	if (!parse_network(c, c->body, &a.next))
		return;
	change_vsm(c, apply_network, &a, "vsm.network");
	if (a.moved && c->code != GMT_OK) {
		/* Moved but not recorded: back to the recorded address. */
		struct api_call back = *c;
		(void)api_vsm_move(&back, c->param, &a.next, &a.old);
	}
}

struct token_arg {
	const char *id;
	uint8_t *secret;
	size_t len;
};

static bool apply_token(struct api_call *c, struct store_vsm *v, void *arg, const char **applied)
{
	struct token_arg *t = arg;
	if (store_vsm_token_set(c->ctx->store, v->id, t->id, t->secret, t->len, chsm_now_ms()) < 0) {
		api_fail(c, GMT_E_STORAGE, NULL);
		return false;
	}
	/* store_vsm_update ignores token fields; keep v's copy in step. The
	 * VSM reads its token at every AUTH (docs/vsm.md): live. */
	*applied = "now";
	return true;
}

void h_vsm_token(struct api_call *c)
{
	struct token_arg t = {0};
	if (!parse_token(c, c->body, &t.id, &t.secret, &t.len))
		return;
	change_vsm(c, apply_token, &t, "vsm.token");
	crypto_free_secret(t.secret, t.len);
}

/* ---- lifecycle tasks ---- */

struct transition {
	const char *const *allowed;   /* NULL: any state */
	const char *next;             /* transitional state */
	bool need_no_keys;
};

static int prepare_transition(struct api_call *c, void *arg)
{
	const struct transition *tr = arg;
	struct store_vsm v;
	if (!load_vsm(c, &v))
		return c->code;
	if (tr->allowed && !state_in(v.state, tr->allowed)) {
		char busy[32];
		/* A task in flight explains the state better than 3003. */
		if (store_task_active_for_target(c->ctx->store, v.id, busy) == 0)
			return GMT_E_BUSY;
		api_fail(c, GMT_E_STATE, "not allowed in the current state: %s", v.state);
		return GMT_E_STATE;
	}
	if (tr->need_no_keys) {
		size_t keys = 0;
		if (store_vsm_key_count(c->ctx->store, v.id, &keys) < 0)
			return GMT_E_STORAGE;
		if (keys > 0) {
			api_fail(c, GMT_E_STATE, "not allowed: the VSM holds keys");
			return GMT_E_STATE;
		}
	}
	if (!tr->next)
		return GMT_OK;
	/* api_submit_task admits the task in this same transaction; a refusal
	 * rolls this change back. */
	snprintf(v.state, sizeof(v.state), "%s", tr->next);
	v.updated_at = chsm_now_ms();
	return store_vsm_update(c->ctx->store, &v) < 0 ? GMT_E_STORAGE : GMT_OK;
}

static void lifecycle(struct api_call *c, const char *operation, const struct transition *tr)
{
	static const struct api_field fields[] = {{"callbackUrl", API_STRING, false}, {NULL}};
	if (api_fields(c, fields))
		api_submit_task(c, operation, c->param, NULL, prepare_transition, (void *)tr);
}

static const char *const from_start[] = {"stopped", "fault", NULL};
static const char *const from_stop[] = {"running", "fault", NULL};
static const char *const from_reset[] = {"stopped", "running", "fault", NULL};
static const char *const from_stopped_running[] = {"stopped", "running", NULL};
static const char *const from_import[] = {"stopped", NULL};
static const char *const from_export[] = {"stopped", "running", "fault", NULL};

void h_vsm_start(struct api_call *c)
{
	static const struct transition tr = {from_start, "starting", false};
	lifecycle(c, "vsm.start", &tr);
}

void h_vsm_stop(struct api_call *c)
{
	static const struct transition tr = {from_stop, "stopping", false};
	lifecycle(c, "vsm.stop", &tr);
}

void h_vsm_restart(struct api_call *c)
{
	static const struct transition tr = {from_stop, "restarting", false};
	lifecycle(c, "vsm.restart", &tr);
}

void h_vsm_reset(struct api_call *c)
{
	static const struct transition tr = {from_reset, "resetting", false};
	lifecycle(c, "vsm.reset", &tr);
}

void h_vsm_delete(struct api_call *c)
{
	static const struct transition tr = {NULL, "deleting", false};
	lifecycle(c, "vsm.delete", &tr);
}

static bool download_request(struct api_call *c)
{
	static const struct api_field fields[] = {
		{"url", API_STRING, true}, {"sm3", API_STRING, true},
		{"callbackUrl", API_STRING, false}, {NULL}};
	return api_download_fields(c, fields);
}

/* 7.3.5: the VSM keeps its state (a running VSM keeps serving); the
 * export reads a consistent snapshot (images.c). */
void h_vsm_image_export(struct api_call *c)
{
	static const struct api_field fields[] = {{"callbackUrl", API_STRING, false}, {NULL}};
	static const struct transition tr = {from_export, NULL, false};
	const char *cb;
	if (!api_fields(c, fields) || !api_callback_url(c, &cb))
		return;
	uint8_t *raw = NULL;
	size_t len = 0;
	int r = store_secret_get(c->ctx->store, "config.image_upload", &raw, &len);
	crypto_free_secret(raw, len);
	struct store_vsm v;
	if (!load_vsm(c, &v))
		return;
	if (r == -ENOENT) {
		api_fail(c, GMT_E_NO_UPLOAD_ADDRESS, NULL);
		return;
	}
	if (r < 0) {
		api_fail(c, GMT_E_STORAGE, NULL);
		return;
	}
	api_submit_task(c, "vsm.image.export", c->param, NULL, prepare_transition, (void *)&tr);
}

/* 7.3.6: a stopped VSM without keys moves to importing until the task
 * ends (stopped again, with or without the image). */
void h_vsm_image_import(struct api_call *c)
{
	static const struct transition tr = {from_import, "importing", true};
	if (!download_request(c))
		return;
	json_t *params = json_pack("{s:O,s:O}", "url", json_object_get(c->body, "url"), "sm3",
				   json_object_get(c->body, "sm3"));
	api_submit_task(c, "vsm.image.import", c->param, params, prepare_transition, (void *)&tr);
	json_decref(params);
}

/* 7.3.11: a stopped or running VSM moves to upgrading until the task ends
 * (upgrade.c); the task's parameters remember which, in fromState. */
static int prepare_upgrade(struct api_call *c, void *arg)
{
	static const struct transition tr = {from_stopped_running, "upgrading", false};
	struct store_vsm v;
	if (store_vsm_get(c->ctx->store, c->param, &v) == 0)
		json_object_set_new(arg, "fromState", json_string(v.state));
	return prepare_transition(c, (void *)&tr);
}

void h_vsm_upgrade(struct api_call *c)
{
	if (!download_request(c))
		return;
	json_t *params = json_pack("{s:O,s:O}", "url", json_object_get(c->body, "url"), "sm3",
				   json_object_get(c->body, "sm3"));
	api_submit_task(c, "vsm.upgrade", c->param, params, prepare_upgrade, params);
	json_decref(params);
}

/* ---- create ---- */

struct create_arg {
	struct store_vsm v;
	const char *token_id;
	uint8_t *secret;
	size_t secret_len;
};

static int prepare_create(struct api_call *c, void *varg)
{
	struct create_arg *a = varg;
	struct api_ctx *ctx = c->ctx;
	struct store_vsm existing;
	if (store_vsm_get(ctx->store, a->v.id, &existing) == 0) {
		api_fail(c, GMT_E_VSM_EXISTS, NULL);
		return GMT_E_VSM_EXISTS;
	}
	size_t n = 0;
	if (store_vsm_count(ctx->store, &n) < 0)
		return GMT_E_STORAGE;
	if ((int)n >= ctx->max_vsms)
		return GMT_E_CAPACITY;
	if (!endpoint_free(c, &a->v.network, a->v.id) || !api_vsm_ip_free(c, &a->v.network, a->v.id))
		return c->code;
	if (store_vsm_insert(ctx->store, &a->v) < 0)
		return GMT_E_STORAGE;
	if (a->secret && store_vsm_token_set(ctx->store, a->v.id, a->token_id, a->secret,
					     a->secret_len, a->v.created_at) < 0)
		return GMT_E_STORAGE;
	return GMT_OK;
}

static bool parse_resources(struct api_call *c, const json_t *obj, struct store_vsm *v)
{
	static const struct api_field fields[] = {
		{"maxKeys", API_INT, false}, {"maxSessions", API_INT, false},
		{"memoryMiB", API_INT, false}, {NULL}};
	static const struct {
		const char *name;
		json_int_t min, max;
	} ranges[] = {{"maxKeys", 1, 1000000}, {"maxSessions", 1, 4096}, {"memoryMiB", 4, 65536}};
	int *dest[] = {&v->max_keys, &v->max_sessions, &v->memory_mib};
	v->max_keys = DEFAULT_MAX_KEYS;
	v->max_sessions = DEFAULT_MAX_SESSIONS;
	v->memory_mib = DEFAULT_MEMORY_MIB;
	if (!obj)
		return true;
	const char *field = NULL;
	if (api_check_fields(obj, fields, &field) != GMT_OK) {
		api_fail(c, GMT_E_PARAM_INVALID, "parameter invalid: resources");
		return false;
	}
	for (size_t i = 0; i < 3; i++) {
		json_t *val = json_object_get(obj, ranges[i].name);
		if (!val)
			continue;
		json_int_t x = json_integer_value(val);
		if (x < ranges[i].min || x > ranges[i].max) {
			api_fail(c, GMT_E_PARAM_INVALID, "parameter invalid: resources.%s", ranges[i].name);
			return false;
		}
		*dest[i] = (int)x;
	}
	return true;
}

void h_vsm_create(struct api_call *c)
{
	static const struct api_field fields[] = {
		{"vsmId", API_STRING, false},  {"name", API_STRING, true},
		{"resources", API_OBJECT, false}, {"network", API_OBJECT, true},
		{"token", API_OBJECT, false},  {"start", API_BOOL, false},
		{"callbackUrl", API_STRING, false}, {NULL}};
	if (!api_fields(c, fields))
		return;
	struct create_arg a;
	memset(&a, 0, sizeof(a));
	const char *id = json_string_value(json_object_get(c->body, "vsmId"));
	if (id && !api_valid_vsm_id(id)) {
		api_fail(c, GMT_E_PARAM_INVALID, "parameter invalid: vsmId");
		return;
	}
	if (id) {
		snprintf(a.v.id, sizeof(a.v.id), "%s", id);
	} else {
		uint8_t rnd[6];
		char hex[13];
		if (crypto_random(rnd, sizeof(rnd)) < 0) {
			api_fail(c, GMT_E_CRYPTO, NULL);
			return;
		}
		chsm_hex_encode(rnd, sizeof(rnd), hex);
		snprintf(a.v.id, sizeof(a.v.id), "vsm-%s", hex);
	}
	const char *name = json_string_value(json_object_get(c->body, "name"));
	if (!api_valid_text(name, CHSM_VSM_NAME_MAX_LEN)) {
		api_fail(c, GMT_E_PARAM_INVALID, "parameter invalid: name");
		return;
	}
	snprintf(a.v.name, sizeof(a.v.name), "%s", name);
	if (!parse_resources(c, json_object_get(c->body, "resources"), &a.v) ||
	    !parse_network(c, json_object_get(c->body, "network"), &a.v.network))
		return;
	json_t *token = json_object_get(c->body, "token");
	if (token && !parse_token(c, token, &a.token_id, &a.secret, &a.secret_len))
		return;
	snprintf(a.v.state, sizeof(a.v.state), "creating");
	snprintf(a.v.version, sizeof(a.v.version), "%s", api_vsm_default_version(c->ctx));
	a.v.created_at = a.v.updated_at = chsm_now_ms();
	a.v.state_version = 1;
	json_t *params = json_pack("{s:b}", "start", json_is_true(json_object_get(c->body, "start")));
	api_submit_task(c, "vsm.create", a.v.id, params, prepare_create, &a);
	json_decref(params);
	crypto_free_secret(a.secret, a.secret_len);
}
