/*
 * images.c: the work behind the image tasks of PROFILE.md §9-§10: 7.3.5
 * export and 7.3.6 import of a VSM image, 7.2.8 export and 7.2.9 import of
 * a CHSM image, 7.2.12 backup and 7.2.13 restore.
 *
 * Guarantees:
 * - Export reads one consistent snapshot of the store (store_snapshot_begin:
 *   a second, read-only connection) and streams it through the image writer
 *   into an unlinked temporary file under <state_dir>/tmp, then uploads it.
 *   Nothing in the CHSM changes; a running VSM keeps serving throughout.
 * - Import downloads into an unlinked temporary file (at most
 *   CHSM_IMAGE_MAX_BYTES), then checks in this order, before any change:
 *   SM3 of the file (4008), format (4003), type (4003), security domain
 *   (4007), signature (4001), data key and MAC (4002). Only then does one
 *   store transaction apply every record, and it commits only when all of
 *   them applied: a bad record, a full disk or a crash leaves the CHSM
 *   exactly as it was.
 * - Plaintexts (key material, token secrets, credentials, the domain key)
 *   live in memory only while a record is written or applied, and are wiped.
 * - Temporary files are unlinked as soon as they are created, so no path
 *   (error, crash) leaves an image behind.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "api/internal.h"
#include "common/log.h"
#include "common/util.h"
#include "image/image.h"
#include "xfer/xfer.h"

/* Device configuration a backup carries (docs/operations.md): plain
 * settings and sealed secrets, by store name. Nothing else of the device
 * (device.key, domain.key, master key, enrollment code, device identity)
 * is ever written into an image. */
static const char *const backup_settings[] = {
	"config.network", "config.ntp", "platform.public_key", "platform.fingerprint",
	"platform.configured_at", NULL};
static const char *const backup_secrets[] = {"config.image_upload", "config.log_upload", NULL};

/* Seconds a restore waits for other tasks in flight to end. */
#define RESTORE_WAIT_TASKS_S 30

static bool name_in(const char *name, const char *const *list)
{
	for (; *list; list++)
		if (strcmp(name, *list) == 0)
			return true;
	return false;
}

/* A store error as a code: every failure of the store is 5001. */
static int store_code(int r)
{
	return r < 0 ? GMT_E_STORAGE : r;
}

/* ---- temporary files ---- */

/* An unlinked read-write file in <state_dir>/tmp (the folder is created
 * 0700), into *ret_fd. */
static int temp_file(struct api_ctx *ctx, int *ret_fd, char *msg, size_t msglen)
{
	char dir[sizeof(ctx->state_dir) + 8], path[sizeof(dir) + 24];
	snprintf(dir, sizeof(dir), "%s/tmp", ctx->state_dir);
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		goto fail;
	if (chmod(dir, 0700) < 0)
		goto fail;
	snprintf(path, sizeof(path), "%s/image-XXXXXX", dir);
	int fd = mkstemp(path);
	if (fd < 0)
		goto fail;
	unlink(path);
	if (fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
		close(fd);
		goto fail;
	}
	*ret_fd = fd;
	return GMT_OK;
fail:
	snprintf(msg, msglen, "cannot create a temporary file: %s", strerror(errno));
	return GMT_E_STORAGE;
}

/* ---- keys and configuration the tasks need ---- */

/* The domain key, sealed in the store, into key (secret: wipe it). */
static int domain_key(struct api_ctx *ctx, uint8_t key[IMAGE_DOMAIN_KEY_LEN], char *msg,
		      size_t msglen)
{
	uint8_t *raw = NULL;
	size_t len = 0;
	int r = store_secret_get(ctx->store, "domain.key", &raw, &len);
	if (r >= 0 && len != IMAGE_DOMAIN_KEY_LEN)
		r = -EIO;
	if (r >= 0)
		memcpy(key, raw, IMAGE_DOMAIN_KEY_LEN);
	crypto_free_secret(raw, len);
	if (r < 0) {
		snprintf(msg, msglen, "the domain key cannot be read");
		return GMT_E_STORAGE;
	}
	return GMT_OK;
}

/* Frees an upload address after overwriting its URL and header values,
 * which may hold credentials. Accepts NULL. */
static void free_upload_config(json_t *cfg)
{
	json_t *url = json_object_get(cfg, "url"), *v;
	const char *k;
	if (json_is_string(url))
		crypto_wipe((char *)json_string_value(url), json_string_length(url));
	json_object_foreach(json_object_get(cfg, "headers"), k, v)
		if (json_is_string(v))
			crypto_wipe((char *)json_string_value(v), json_string_length(v));
	json_decref(cfg);
}

/* The 7.2.6 upload address {url, headers} (a new reference, secret: it
 * may hold credentials). 3007 when unset. */
static int upload_config(struct api_ctx *ctx, json_t **ret_cfg, char *msg, size_t msglen)
{
	uint8_t *raw = NULL;
	size_t len = 0;
	int r = store_secret_get(ctx->store, "config.image_upload", &raw, &len);
	if (r == -ENOENT) {
		snprintf(msg, msglen, "no image upload address is configured");
		return GMT_E_NO_UPLOAD_ADDRESS;
	}
	if (r < 0)
		return GMT_E_STORAGE;
	json_t *cfg = json_loadb((const char *)raw, len, 0, NULL);
	crypto_free_secret(raw, len);
	if (!json_is_string(json_object_get(cfg, "url"))) {
		free_upload_config(cfg);
		snprintf(msg, msglen, "the stored image upload address is unreadable");
		return GMT_E_STORAGE;
	}
	*ret_cfg = cfg;
	return GMT_OK;
}

/* ---- writing records ---- */

static void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static json_t *network_record(const struct store_vsm_network *n)
{
	if (!n->configured)
		return json_null();
	return json_pack("{s:s,s:i,s:o,s:i}", "ipAddress", n->ip_address, "prefixLength",
			 n->prefix_length, "gateway",
			 n->gateway[0] ? json_string(n->gateway) : json_null(), "port", n->port);
}

/* Writes a value that is secret: wiped (and freed) after the write. */
static int write_secret_record(image_writer *w, int tag, uint8_t *buf, size_t len)
{
	int code = image_writer_record(w, tag, buf, len);
	crypto_free_secret(buf, len);
	return code;
}

static int on_token(void *arg, const char *token_id, const uint8_t *secret, size_t len)
{
	size_t idlen = strlen(token_id), total = idlen + 1 + len;
	uint8_t *buf = malloc(total);
	if (!buf)
		return GMT_E_INTERNAL;
	memcpy(buf, token_id, idlen + 1);
	memcpy(buf + idlen + 1, secret, len);
	return write_secret_record(arg, IMAGE_REC_TOKEN, buf, total);
}

static int on_key(void *arg, const char *type, int index, const uint8_t *material, size_t len)
{
	size_t tlen = strlen(type), total = tlen + 1 + 4 + len;
	uint8_t *buf = malloc(total);
	if (!buf)
		return GMT_E_INTERNAL;
	memcpy(buf, type, tlen + 1);
	put_be32(buf + tlen + 1, (uint32_t)index);
	memcpy(buf + tlen + 5, material, len);
	return write_secret_record(arg, IMAGE_REC_KEY, buf, total);
}

/* Writes VSM v of snapshot snap: its VSM record, token and keys. */
static int write_vsm(image_writer *w, chsm_store *snap, const struct store_vsm *v)
{
	json_t *rec = json_object();
	json_object_set_new(rec, "vsmId", json_string(v->id));
	json_object_set_new(rec, "name", json_string(v->name));
	json_object_set_new(rec, "version", json_string(v->version));
	json_object_set_new(rec, "createdAt", json_integer(v->created_at));
	json_object_set_new(rec, "stateVersion", json_integer(v->state_version));
	json_object_set_new(rec, "resources",
			    json_pack("{s:i,s:i,s:i}", "maxKeys", v->max_keys, "maxSessions",
				      v->max_sessions, "memoryMiB", v->memory_mib));
	json_object_set_new(rec, "network", network_record(&v->network));
	json_object_set_new(rec, "tokenId",
			    v->token_configured ? json_string(v->token_id) : json_null());
	json_object_set_new(rec, "desiredRunning", json_boolean(v->desired_running));
	char *text = json_dumps(rec, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(rec);
	if (!text)
		return GMT_E_INTERNAL;
	int code = image_writer_record(w, IMAGE_REC_VSM, text, strlen(text));
	free(text);
	if (code != GMT_OK)
		return code;
	struct store_vsm_visitor vis = {on_token, on_key, w};
	return store_code(store_vsm_walk(snap, v->id, &vis));
}

/* Writes the device configuration of a backup from snapshot snap. */
static int write_device_config(image_writer *w, chsm_store *snap)
{
	for (const char *const *n = backup_settings; *n; n++) {
		char *value = NULL;
		int r = store_setting_get(snap, *n, &value);
		if (r == -ENOENT)
			continue;
		if (r < 0)
			return GMT_E_STORAGE;
		json_t *rec = json_pack("{s:s,s:s}", "name", *n, "value", value);
		free(value);
		char *text = rec ? json_dumps(rec, JSON_COMPACT) : NULL;
		json_decref(rec);
		if (!text)
			return GMT_E_INTERNAL;
		int code = image_writer_record(w, IMAGE_REC_SETTING, text, strlen(text));
		free(text);
		if (code != GMT_OK)
			return code;
	}
	for (const char *const *n = backup_secrets; *n; n++) {
		uint8_t *data = NULL;
		size_t len = 0;
		int r = store_secret_get(snap, *n, &data, &len);
		if (r == -ENOENT)
			continue;
		if (r < 0)
			return GMT_E_STORAGE;
		size_t nlen = strlen(*n), total = nlen + 1 + len;
		uint8_t *buf = malloc(total);
		if (buf) {
			memcpy(buf, *n, nlen + 1);
			memcpy(buf + nlen + 1, data, len);
		}
		crypto_free_secret(data, len);
		if (!buf)
			return GMT_E_INTERNAL;
		int code = write_secret_record(w, IMAGE_REC_SECRET, buf, total);
		if (code != GMT_OK)
			return code;
	}
	return GMT_OK;
}

/* ---- export ---- */

struct export_job {
	int type;               /* IMAGE_VSM, IMAGE_CHSM or IMAGE_BACKUP */
	const char *vsm_id;     /* IMAGE_VSM */
	/* results */
	char image_id[IMAGE_ID_MAX_LEN + 1];
	char url[XFER_URL_MAX];
	uint64_t size;
	char sm3[CRYPTO_SM3_HEX_LEN + 1];
	json_t *vsm_ids;        /* CHSM images and backups */
	size_t key_count;       /* VSM images */
	int64_t state_version;
	char state_digest[65];
};

/* The contents summary of the header, from snapshot snap. */
static int export_contents(struct export_job *j, chsm_store *snap, struct store_vsm *vsms,
			   size_t n, json_t **ret)
{
	if (j->type == IMAGE_VSM) {
		if (store_vsm_key_count(snap, vsms[0].id, &j->key_count) < 0 ||
		    store_vsm_state_digest(snap, vsms[0].id, j->state_digest) < 0)
			return GMT_E_STORAGE;
		j->state_version = vsms[0].state_version;
		*ret = json_pack("{s:s,s:s,s:s,s:I,s:I,s:s,s:o}", "vsmId", vsms[0].id, "name",
				 vsms[0].name, "version", vsms[0].version, "keyCount",
				 (json_int_t)j->key_count, "stateVersion",
				 (json_int_t)vsms[0].state_version, "stateDigest", j->state_digest,
				 "network", network_record(&vsms[0].network));
		return *ret ? GMT_OK : GMT_E_INTERNAL;
	}
	json_t *list = json_array();
	j->vsm_ids = json_array();
	for (size_t i = 0; i < n; i++) {
		size_t keys = 0;
		if (store_vsm_key_count(snap, vsms[i].id, &keys) < 0) {
			json_decref(list);
			return GMT_E_STORAGE;
		}
		json_array_append_new(list, json_pack("{s:s,s:s,s:I,s:I}", "vsmId", vsms[i].id,
						      "name", vsms[i].name, "keyCount",
						      (json_int_t)keys, "stateVersion",
						      (json_int_t)vsms[i].state_version));
		json_array_append_new(j->vsm_ids, json_string(vsms[i].id));
	}
	*ret = json_pack("{s:o,s:b}", "vsms", list, "deviceConfig", j->type == IMAGE_BACKUP);
	return *ret ? GMT_OK : GMT_E_INTERNAL;
}

/* Streams the image of job j from one snapshot into fd. */
static int export_write(struct api_ctx *ctx, struct export_job *j, int fd, char *msg, size_t msglen)
{
	chsm_store *snap = NULL;
	image_writer *w = NULL;
	json_t *contents = NULL;
	struct store_vsm *vsms = NULL;
	size_t n = 0;
	uint8_t dk[IMAGE_DOMAIN_KEY_LEN];
	int code = domain_key(ctx, dk, msg, msglen);
	if (code != GMT_OK)
		return code;
	int r = store_snapshot_begin(ctx->store, &snap);
	if (r >= 0 && j->type == IMAGE_VSM) {
		vsms = calloc(1, sizeof(*vsms));
		r = vsms ? store_vsm_get(snap, j->vsm_id, vsms) : -ENOMEM;
		n = 1;
	} else if (r >= 0) {
		r = store_vsm_list(snap, &vsms, &n);
	}
	if (r == -ENOENT) {
		code = GMT_E_VSM_NOT_FOUND;
		goto out;
	}
	if (r < 0) {
		code = GMT_E_STORAGE;
		goto out;
	}
	code = export_contents(j, snap, vsms, n, &contents);
	if (code != GMT_OK)
		goto out;
	struct image_signer signer = {ctx->device_id, ctx->device_key};
	code = image_writer_new(fd, j->type, contents, &signer, dk, ctx->domain_fp, &w);
	if (code != GMT_OK)
		goto out;
	snprintf(j->image_id, sizeof(j->image_id), "%s", image_writer_id(w));
	for (size_t i = 0; i < n && code == GMT_OK; i++)
		code = write_vsm(w, snap, &vsms[i]);
	if (code == GMT_OK && j->type == IMAGE_BACKUP)
		code = write_device_config(w, snap);
	/* The snapshot ends before the file is sealed and uploaded. */
	store_snapshot_end(snap);
	snap = NULL;
	if (code == GMT_OK)
		code = image_writer_finish(w, &j->size, j->sm3);
	if (code != GMT_OK && w && image_writer_error(w)[0])
		snprintf(msg, msglen, "image: %s", image_writer_error(w));
out:
	image_writer_free(w);
	store_snapshot_end(snap);
	json_decref(contents);
	free(vsms);
	crypto_wipe(dk, sizeof(dk));
	return code;
}

/* Uploads fd (size bytes) as <imageId>.img under the upload address; the
 * object URL, without credentials, into j->url. */
static int export_upload(struct export_job *j, json_t *cfg, int fd, char *msg, size_t msglen)
{
	char name[IMAGE_ID_MAX_LEN + 8], url[XFER_URL_MAX];
	snprintf(name, sizeof(name), "%s.img", j->image_id);
	if (xfer_object_url(json_string_value(json_object_get(cfg, "url")), name, url,
			    sizeof(url)) < 0) {
		snprintf(msg, msglen, "the upload address cannot take the image name");
		return GMT_E_UPLOAD;
	}
	struct xfer_options opt = {json_object_get(cfg, "headers"), NULL};
	int code = xfer_upload(url, fd, j->size, &opt, msg, msglen);
	xfer_redact_url(url, j->url, sizeof(j->url));
	crypto_wipe(url, sizeof(url));
	return code;
}

static int run_export(struct api_ctx *ctx, struct export_job *j, char *msg, size_t msglen)
{
	json_t *cfg = NULL;
	int fd = -1;
	int code = upload_config(ctx, &cfg, msg, msglen);
	if (code == GMT_OK)
		code = temp_file(ctx, &fd, msg, msglen);
	if (code == GMT_OK)
		code = export_write(ctx, j, fd, msg, msglen);
	if (code == GMT_OK)
		code = export_upload(j, cfg, fd, msg, msglen);
	if (fd >= 0)
		close(fd);
	free_upload_config(cfg);
	if (code == GMT_OK) {
		char size_s[24];
		snprintf(size_s, sizeof(size_s), "%llu", (unsigned long long)j->size);
		chsm_log(CHSM_LOG_INFO, "image.exported", "image", j->image_id, "type",
			 image_type_name(j->type), "url", j->url, "size", size_s, "sm3", j->sm3,
			 NULL);
	}
	return code;
}

/* ---- fetching and checking an image ---- */

int api_download_checked(struct api_ctx *ctx, const char *url, const char *sm3, uint64_t max_bytes,
			 int *ret_fd, char *msg, size_t msglen)
{
	int fd = -1;
	uint64_t size = 0;
	char got[CRYPTO_SM3_HEX_LEN + 1] = "";
	int code = temp_file(ctx, &fd, msg, msglen);
	if (code != GMT_OK)
		return code;
	code = xfer_download(url, fd, max_bytes, NULL, &size, got, msg, msglen);
	if (code == GMT_OK && strcasecmp(got, sm3) != 0) {
		snprintf(msg, msglen, "the downloaded file's SM3 differs from the request's");
		code = GMT_E_DIGEST;
	}
	if (code != GMT_OK) {
		close(fd);
		return code;
	}
	*ret_fd = fd;
	return GMT_OK;
}

/* Downloads url into an unlinked temporary file and checks it in the order
 * of PROFILE.md §10 against sm3 and type; on success *ret_r reads it,
 * unlocked, and *ret_fd is its file (close it after freeing the reader). */
static int fetch_image(struct api_ctx *ctx, const char *url, const char *sm3, int type,
		       image_reader **ret_r, int *ret_fd, char *msg, size_t msglen)
{
	image_reader *r = NULL;
	int fd = -1;
	uint8_t dk[IMAGE_DOMAIN_KEY_LEN];
	int code = api_download_checked(ctx, url, sm3, CHSM_IMAGE_MAX_BYTES, &fd, msg, msglen);
	if (code != GMT_OK)
		return code;
	code = image_reader_open(fd, &r);
	if (code == GMT_OK && image_reader_type(r) != type) {
		snprintf(msg, msglen, "the file is a %s, not a %s",
			 image_type_name(image_reader_type(r)) ? image_type_name(image_reader_type(r))
								: "file of another type",
			 image_type_name(type));
		code = GMT_E_IMAGE_FORMAT;
		goto fail;
	}
	if (code == GMT_OK)
		code = image_reader_check_domain(r, ctx->domain_fp);
	if (code == GMT_OK)
		code = image_reader_verify_signature(r, NULL);
	if (code == GMT_OK)
		code = domain_key(ctx, dk, msg, msglen);
	if (code == GMT_OK) {
		code = image_reader_unlock(r, dk);
		crypto_wipe(dk, sizeof(dk));
	}
	if (code != GMT_OK)
		goto fail;
	*ret_r = r;
	*ret_fd = fd;
	return GMT_OK;
fail:
	if (r && !msg[0])
		snprintf(msg, msglen, "image: %s", image_reader_error(r));
	image_reader_free(r);
	close(fd);
	return code;
}

/* ---- reading records ---- */

static uint32_t get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Integer field name of o within [min, max] into *ret. */
static bool int_field(const json_t *o, const char *name, json_int_t min, json_int_t max,
		      json_int_t *ret)
{
	json_t *v = json_object_get(o, name);
	if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max)
		return false;
	*ret = json_integer_value(v);
	return true;
}

static bool copy_string(const json_t *v, char *dst, size_t cap)
{
	const char *s = json_string_value(v);
	if (!s || strlen(s) >= cap)
		return false;
	memcpy(dst, s, strlen(s) + 1);
	return true;
}

static bool parse_network_record(const json_t *n, struct store_vsm_network *ret)
{
	memset(ret, 0, sizeof(*ret));
	if (json_is_null(n))
		return true;
	json_int_t prefix = 0, port = 0;
	int family = 0, gw_family = 0;
	json_t *gw = json_object_get(n, "gateway");
	if (!json_is_object(n) || !copy_string(json_object_get(n, "ipAddress"), ret->ip_address,
						 sizeof(ret->ip_address)) ||
	    !api_valid_ip(ret->ip_address, &family) ||
	    !int_field(n, "prefixLength", 0, family == AF_INET ? 32 : 128, &prefix) ||
	    !int_field(n, "port", 1, 65535, &port))
		return false;
	if (gw && !json_is_null(gw) &&
	    (!copy_string(gw, ret->gateway, sizeof(ret->gateway)) ||
	     !api_valid_ip(ret->gateway, &gw_family) || gw_family != family))
		return false;
	ret->configured = true;
	ret->prefix_length = (int)prefix;
	ret->port = (int)port;
	return true;
}

/* A VSM record into *ret (state stopped, not running); *ret_has_token says
 * whether a TOKEN record must follow. 4003 when malformed. */
static int parse_vsm_record(const uint8_t *val, size_t len, struct store_vsm *ret,
			    bool *ret_has_token)
{
	struct store_vsm v;
	memset(&v, 0, sizeof(v));
	json_t *o = json_loadb((const char *)val, len, JSON_REJECT_DUPLICATES, NULL);
	json_t *res = json_object_get(o, "resources"), *tok = json_object_get(o, "tokenId");
	json_t *desired = json_object_get(o, "desiredRunning");
	json_int_t created = 0, sv = 0, keys = 0, sessions = 0, mem = 0;
	bool ok = json_is_object(o) && copy_string(json_object_get(o, "vsmId"), v.id, sizeof(v.id)) &&
		  api_valid_vsm_id(v.id) &&
		  copy_string(json_object_get(o, "name"), v.name, sizeof(v.name)) &&
		  api_valid_text(v.name, CHSM_VSM_NAME_MAX_LEN) &&
		  copy_string(json_object_get(o, "version"), v.version, sizeof(v.version)) &&
		  int_field(o, "createdAt", 0, INT64_MAX, &created) &&
		  int_field(o, "stateVersion", 0, INT64_MAX, &sv) && json_is_object(res) &&
		  int_field(res, "maxKeys", 1, 1000000, &keys) &&
		  int_field(res, "maxSessions", 1, 4096, &sessions) &&
		  int_field(res, "memoryMiB", 4, 65536, &mem) &&
		  parse_network_record(json_object_get(o, "network"), &v.network) &&
		  (json_is_null(tok) || json_is_string(tok)) && json_is_boolean(desired);
	if (ok && json_is_string(tok))
		ok = copy_string(tok, v.token_id, sizeof(v.token_id)) && v.token_id[0];
	if (ok) {
		snprintf(v.state, sizeof(v.state), "stopped");
		v.created_at = created;
		v.updated_at = chsm_now_ms();
		v.state_version = sv;
		v.max_keys = (int)keys;
		v.max_sessions = (int)sessions;
		v.memory_mib = (int)mem;
		v.desired_running = json_is_true(desired);
		*ret_has_token = json_is_string(tok);
		*ret = v;
	}
	json_decref(o);
	return ok ? GMT_OK : GMT_E_IMAGE_FORMAT;
}

/* Where the records of one VSM go. */
struct vsm_apply {
	struct store_vsm v;        /* from the image */
	const char *target;        /* the store VSM receiving token and keys */
	bool has_token;
	bool token_seen;
	size_t keys;
};

/* Applies a TOKEN record to a->target. */
static int apply_token(struct api_ctx *ctx, struct vsm_apply *a, const uint8_t *val, size_t len)
{
	const uint8_t *nul = memchr(val, 0, len);
	if (!nul || a->token_seen || !a->has_token)
		return GMT_E_IMAGE_FORMAT;
	size_t idlen = (size_t)(nul - val), slen = len - idlen - 1;
	if (idlen == 0 || idlen > CHSM_VSM_NAME_MAX_LEN || slen == 0 ||
	    strcmp((const char *)val, a->v.token_id) != 0)
		return GMT_E_IMAGE_FORMAT;
	a->token_seen = true;
	return store_code(store_vsm_token_set(ctx->store, a->target, (const char *)val, nul + 1,
					      slen, chsm_now_ms()));
}

/* Applies a KEY record to a->target. */
static int apply_key(struct api_ctx *ctx, struct vsm_apply *a, const uint8_t *val, size_t len)
{
	const uint8_t *nul = memchr(val, 0, len);
	if (!nul)
		return GMT_E_IMAGE_FORMAT;
	size_t tlen = (size_t)(nul - val);
	if (tlen == 0 || tlen > STORE_KEY_TYPE_MAX_LEN || len < tlen + 1 + 4 + 1 ||
	    !chsm_str_charset((const char *)val, tlen, "_.-"))
		return GMT_E_IMAGE_FORMAT;
	uint32_t index = get_be32(nul + 1);
	if (index > INT32_MAX)
		return GMT_E_IMAGE_FORMAT;
	if (++a->keys > (size_t)a->v.max_keys)
		return GMT_E_IMAGE_FORMAT;
	size_t mlen = len - tlen - 5;
	int r = store_vsm_key_put(ctx->store, a->target, (const char *)val, (int)index, nul + 5, mlen);
	return store_code(r);
}

/* Reads the next record into *ret_tag / *ret_val / *ret_len (secret). */
static int next_record(image_reader *r, int *ret_tag, uint8_t **ret_val, size_t *ret_len,
		       char *msg, size_t msglen)
{
	int code = image_reader_next(r, ret_tag, ret_val, ret_len);
	if (code != GMT_OK)
		snprintf(msg, msglen, "image: %s", image_reader_error(r));
	return code;
}

/* Test-only (docs/operations.md): with CHSM_TEST_IMPORT_DELAY_MS set, an
 * import logs event=test.import_delay with the phase and sleeps that long:
 * inside its transaction before committing ("apply"), so that a test can
 * kill chsmd there, and, for a restore, also once the CHSM is restoring
 * and before the transaction ("restoring"), so that a test can see other
 * requests refused. Never set in production. */
static void test_import_delay(const char *phase)
{
	const char *s = getenv("CHSM_TEST_IMPORT_DELAY_MS");
	uint64_t ms = 0;
	if (!s || chsm_parse_u64(s, 600000, &ms) < 0 || ms == 0)
		return;
	chsm_log(CHSM_LOG_WARNING, "test.import_delay", "phase", phase, "ms", s, NULL);
	struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* ---- 7.3.6 ---- */

/* Inside the transaction: the records of a VSM image into target. */
static int apply_vsm_image(struct api_ctx *ctx, image_reader *r, const char *target,
			   struct vsm_apply *a, char *msg, size_t msglen)
{
	int tag = 0, code;
	uint8_t *val = NULL;
	size_t len = 0;
	bool have_vsm = false;
	a->target = target;
	while ((code = next_record(r, &tag, &val, &len, msg, msglen)) == GMT_OK &&
	       tag != IMAGE_REC_END) {
		if (tag == IMAGE_REC_VSM && !have_vsm) {
			code = parse_vsm_record(val, len, &a->v, &a->has_token);
			have_vsm = true;
		} else if (tag == IMAGE_REC_TOKEN && have_vsm) {
			code = apply_token(ctx, a, val, len);
		} else if (tag == IMAGE_REC_KEY && have_vsm) {
			code = apply_key(ctx, a, val, len);
		} else {
			code = GMT_E_IMAGE_FORMAT;
		}
		crypto_free_secret(val, len);
		val = NULL;
		if (code != GMT_OK)
			break;
	}
	if (code == GMT_OK && (!have_vsm || a->has_token != a->token_seen))
		code = GMT_E_IMAGE_FORMAT;
	if (code == GMT_E_IMAGE_FORMAT && !msg[0])
		snprintf(msg, msglen, "the image's records are malformed");
	return code;
}

static int vsm_import(struct api_ctx *ctx, const char *id, const char *url, const char *sm3,
		      json_t **ret_result, char *msg, size_t msglen)
{
	image_reader *r = NULL;
	int fd = -1;
	struct vsm_apply a;
	memset(&a, 0, sizeof(a));
	int code = fetch_image(ctx, url, sm3, IMAGE_VSM, &r, &fd, msg, msglen);
	if (code != GMT_OK)
		return code;
	const json_t *hdr = image_reader_header(r);
	char source_device[CHSM_VSM_ID_MAX_LEN + 1] = "";
	copy_string(json_object_get(hdr, "sourceDeviceId"), source_device, sizeof(source_device));

	struct store_vsm v;
	size_t keys = 0;
	if (store_begin(ctx->store) < 0) {
		code = GMT_E_STORAGE;
		goto out;
	}
	/* Re-checked inside the transaction: the target is ours (importing)
	 * and holds no key. */
	int sr = store_vsm_get(ctx->store, id, &v);
	if (sr == -ENOENT)
		code = GMT_E_VSM_NOT_FOUND;
	else if (sr < 0 || store_vsm_key_count(ctx->store, id, &keys) < 0)
		code = GMT_E_STORAGE;
	else if (strcmp(v.state, "importing") != 0 || keys > 0)
		code = GMT_E_STATE;
	if (code == GMT_OK && v.token_configured && store_vsm_token_clear(ctx->store, id) < 0)
		code = GMT_E_STORAGE;
	if (code == GMT_OK)
		code = apply_vsm_image(ctx, r, id, &a, msg, msglen);
	if (code == GMT_OK && store_vsm_get(ctx->store, id, &v) < 0)
		code = GMT_E_STORAGE;
	if (code == GMT_OK) {
		/* The image's keys, token and resources; the target's own ID,
		 * name and network. */
		v.max_keys = a.v.max_keys;
		v.max_sessions = a.v.max_sessions;
		v.memory_mib = a.v.memory_mib;
		snprintf(v.state, sizeof(v.state), "stopped");
		v.last_error[0] = '\0';
		v.state_version++;
		v.updated_at = chsm_now_ms();
		if (store_vsm_update(ctx->store, &v) < 0)
			code = GMT_E_STORAGE;
	}
	if (code == GMT_OK)
		test_import_delay("apply");
	if (code == GMT_OK && store_commit(ctx->store) < 0)
		code = GMT_E_STORAGE;
	else if (code != GMT_OK)
		store_rollback(ctx->store);
	if (code == GMT_OK) {
		*ret_result = json_pack("{s:s,s:s,s:s,s:I}", "vsmId", id, "sourceVsmId", a.v.id,
					"sourceDeviceId", source_device, "keyCount",
					(json_int_t)a.keys);
		chsm_log(CHSM_LOG_INFO, "image.imported", "vsm", id, "source_vsm", a.v.id,
			 "source_device", source_device, NULL);
	}
out:
	crypto_wipe(&a, sizeof(a));
	image_reader_free(r);
	close(fd);
	return code;
}

/* ---- 7.2.9 and 7.2.13: whole-CHSM images ---- */

/* Applies a SETTING or SECRET record (restore). */
static int apply_config(struct api_ctx *ctx, int tag, const uint8_t *val, size_t len)
{
	if (tag == IMAGE_REC_SETTING) {
		json_t *o = json_loadb((const char *)val, len, JSON_REJECT_DUPLICATES, NULL);
		const char *name = json_string_value(json_object_get(o, "name"));
		const char *value = json_string_value(json_object_get(o, "value"));
		int code = GMT_E_IMAGE_FORMAT;
		if (name && value && json_object_size(o) == 2 && name_in(name, backup_settings))
			code = store_code(store_setting_set(ctx->store, name, value));
		json_decref(o);
		return code;
	}
	const uint8_t *nul = memchr(val, 0, len);
	if (!nul || !name_in((const char *)val, backup_secrets) || nul + 1 == val + len)
		return GMT_E_IMAGE_FORMAT;
	size_t nlen = (size_t)(nul - val);
	return store_code(store_secret_set(ctx->store, (const char *)val, nul + 1, len - nlen - 1));
}

struct chsm_apply {
	bool restore;
	bool replace;
	json_t *vsm_ids;          /* imported VSMs, in order */
	json_t *start;            /* restore: VSMs to start afterwards */
};

/* Inside the transaction: inserts the VSM of record (val, len), checking
 * clashes for an import. */
static int begin_vsm(struct api_ctx *ctx, struct chsm_apply *c, struct vsm_apply *a,
		     const uint8_t *val, size_t len, char *msg, size_t msglen)
{
	bool has_token = false;
	memset(a, 0, sizeof(*a));
	int code = parse_vsm_record(val, len, &a->v, &has_token);
	if (code != GMT_OK)
		return code;
	a->has_token = has_token;
	a->target = a->v.id;
	struct store_vsm old;
	int r = store_vsm_get(ctx->store, a->v.id, &old);
	if (r == 0 && c->restore) {
		return GMT_E_IMAGE_FORMAT;   /* twice in one backup */
	} else if (r == 0) {
		if (!c->replace) {
			snprintf(msg, msglen, "VSM %s already exists", a->v.id);
			return GMT_E_VSM_EXISTS;
		}
		if (strcmp(old.state, "stopped") != 0 && strcmp(old.state, "fault") != 0) {
			snprintf(msg, msglen, "VSM %s is %s, not stopped or fault", a->v.id, old.state);
			return GMT_E_STATE;
		}
		if (json_array_size(c->vsm_ids) > 0) {
			size_t i;
			json_t *it;
			json_array_foreach(c->vsm_ids, i, it)
				if (strcmp(json_string_value(it), a->v.id) == 0)
					return GMT_E_IMAGE_FORMAT;
		}
		if (store_vsm_delete(ctx->store, a->v.id) < 0)
			return GMT_E_STORAGE;
	} else if (r != -ENOENT) {
		return GMT_E_STORAGE;
	}
	size_t n = 0;
	if (store_vsm_count(ctx->store, &n) < 0)
		return GMT_E_STORAGE;
	if ((int)n >= ctx->max_vsms) {
		snprintf(msg, msglen, "more VSMs than this CHSM's capacity (%d)", ctx->max_vsms);
		return GMT_E_CAPACITY;
	}
	char other[CHSM_VSM_ID_MAX_LEN + 1];
	if (a->v.network.configured) {
		r = store_vsm_find_endpoint(ctx->store, a->v.network.ip_address, a->v.network.port,
					    a->v.id, other);
		if (r == 0) {
			snprintf(msg, msglen, "VSM %s's address is used by VSM %s", a->v.id, other);
			return GMT_E_ADDRESS_IN_USE;
		}
		if (r != -ENOENT)
			return GMT_E_STORAGE;
	}
	/* A restored VSM keeps desiredRunning, so that chsmd runs it again
	 * should it restart before the restore has started it. */
	bool desired = a->v.desired_running;
	a->v.desired_running = c->restore && desired;
	snprintf(a->v.version, sizeof(a->v.version), "%s", api_vsm_default_version(ctx));
	if (store_vsm_insert(ctx->store, &a->v) < 0)
		return GMT_E_STORAGE;
	json_array_append_new(c->vsm_ids, json_string(a->v.id));
	if (c->restore && desired)
		json_array_append_new(c->start, json_string(a->v.id));
	return GMT_OK;
}

/* Ends the VSM being applied: checks its token, and sets its state
 * version back to the image's (key and token writes counted up). */
static int end_vsm(struct api_ctx *ctx, struct vsm_apply *a)
{
	if (!a->target)
		return GMT_OK;
	if (a->has_token != a->token_seen)
		return GMT_E_IMAGE_FORMAT;
	struct store_vsm v;
	if (store_vsm_get(ctx->store, a->target, &v) < 0)
		return GMT_E_STORAGE;
	v.state_version = a->v.state_version;
	if (store_vsm_update(ctx->store, &v) < 0)
		return GMT_E_STORAGE;
	a->target = NULL;
	return GMT_OK;
}

/* Inside the transaction: every record of a CHSM image or backup. */
static int apply_chsm_image(struct api_ctx *ctx, image_reader *r, struct chsm_apply *c,
			    char *msg, size_t msglen)
{
	struct vsm_apply a;
	memset(&a, 0, sizeof(a));
	int tag = 0, code;
	uint8_t *val = NULL;
	size_t len = 0;
	while ((code = next_record(r, &tag, &val, &len, msg, msglen)) == GMT_OK &&
	       tag != IMAGE_REC_END) {
		if (tag == IMAGE_REC_VSM) {
			code = end_vsm(ctx, &a);
			if (code == GMT_OK)
				code = begin_vsm(ctx, c, &a, val, len, msg, msglen);
		} else if (tag == IMAGE_REC_TOKEN && a.target) {
			code = apply_token(ctx, &a, val, len);
		} else if (tag == IMAGE_REC_KEY && a.target) {
			code = apply_key(ctx, &a, val, len);
		} else if ((tag == IMAGE_REC_SETTING || tag == IMAGE_REC_SECRET) && c->restore) {
			code = end_vsm(ctx, &a);
			if (code == GMT_OK)
				code = apply_config(ctx, tag, val, len);
		} else {
			code = GMT_E_IMAGE_FORMAT;
		}
		crypto_free_secret(val, len);
		val = NULL;
		if (code != GMT_OK)
			break;
	}
	if (code == GMT_OK)
		code = end_vsm(ctx, &a);
	crypto_wipe(&a, sizeof(a));
	if (code == GMT_E_IMAGE_FORMAT && !msg[0])
		snprintf(msg, msglen, "the image's records are malformed");
	return code;
}

/* Restore: removes every VSM and the device configuration a backup
 * replaces, inside the transaction. */
static int clear_for_restore(struct api_ctx *ctx)
{
	struct store_vsm *v = NULL;
	size_t n = 0;
	if (store_vsm_list(ctx->store, &v, &n) < 0)
		return GMT_E_STORAGE;
	int code = GMT_OK;
	for (size_t i = 0; i < n && code == GMT_OK; i++)
		if (store_vsm_delete(ctx->store, v[i].id) < 0)
			code = GMT_E_STORAGE;
	free(v);
	for (const char *const *s = backup_settings; *s && code == GMT_OK; s++)
		if (store_setting_set(ctx->store, *s, NULL) < 0)
			code = GMT_E_STORAGE;
	for (const char *const *s = backup_secrets; *s && code == GMT_OK; s++)
		if (store_secret_set(ctx->store, *s, NULL, 0) < 0)
			code = GMT_E_STORAGE;
	return code;
}

/* Stops the processes of VSMs (restore: all; import: those it replaces,
 * which are stopped or fault anyway). The stored states stay: should the
 * transaction fail, the caller starts again those it stopped. */
static json_t *stop_processes(struct api_ctx *ctx)
{
	json_t *stopped = json_array();
	struct store_vsm *v = NULL;
	size_t n = 0;
	if (store_vsm_list(ctx->store, &v, &n) < 0)
		return stopped;
	for (size_t i = 0; i < n; i++) {
		int pid = 0;
		int64_t started = 0;
		if (vsm_supervisor_running(ctx->supervisor, v[i].id, &pid, &started)) {
			(void)vsm_supervisor_stop(ctx->supervisor, v[i].id);
			api_vsm_net_release(ctx, v[i].id);
			json_array_append_new(stopped, json_string(v[i].id));
		}
	}
	free(v);
	return stopped;
}

static void start_all(struct api_ctx *ctx, const json_t *ids)
{
	size_t i;
	json_t *it;
	json_array_foreach(ids, i, it) {
		char msg[200] = "";
		(void)api_vsm_do_start(ctx, json_string_value(it), msg, sizeof(msg));
	}
}

/* Waits until this task is the only one active (restore). */
static bool wait_alone(struct api_ctx *ctx)
{
	for (int i = 0; i < RESTORE_WAIT_TASKS_S * 10; i++) {
		size_t active = 0;
		if (store_task_count_active(ctx->store, &active) < 0)
			return false;
		if (active <= 1)
			return true;
		struct timespec ts = {0, 100 * 1000000L};
		nanosleep(&ts, NULL);
	}
	return false;
}

static int chsm_import(struct api_ctx *ctx, const json_t *params, bool restore,
		       json_t **ret_result, char *msg, size_t msglen)
{
	const char *url = json_string_value(json_object_get(params, "url"));
	const char *sm3 = json_string_value(json_object_get(params, "sm3"));
	image_reader *r = NULL;
	int fd = -1;
	json_t *stopped = NULL;
	struct chsm_apply c = {restore, json_is_true(json_object_get(params, "replaceExisting")),
			       json_array(), json_array()};
	int code = url && sm3 ? fetch_image(ctx, url, sm3, restore ? IMAGE_BACKUP : IMAGE_CHSM, &r,
					    &fd, msg, msglen)
			      : GMT_E_INTERNAL;
	if (code != GMT_OK)
		goto out;
	const json_t *hdr = image_reader_header(r);
	const char *source = json_string_value(json_object_get(hdr, "sourceDeviceId"));
	if (restore && (!source || strcmp(source, ctx->device_id) != 0) &&
	    !json_is_true(json_object_get(params, "allowOtherDevice"))) {
		snprintf(msg, msglen, "the backup is from another device (set allowOtherDevice)");
		code = GMT_E_PARAM_INVALID;
		goto out;
	}
	atomic_store(&ctx->chsm_state, restore ? CHSM_STATE_RESTORING : CHSM_STATE_IMPORTING);
	if (restore) {
		if (!wait_alone(ctx)) {
			snprintf(msg, msglen, "other tasks are still running");
			code = GMT_E_BUSY;
			goto out;
		}
		stopped = stop_processes(ctx);
		test_import_delay("restoring");
	}
	if (store_begin(ctx->store) < 0) {
		code = GMT_E_STORAGE;
		goto out;
	}
	if (restore)
		code = clear_for_restore(ctx);
	if (code == GMT_OK)
		code = apply_chsm_image(ctx, r, &c, msg, msglen);
	if (code == GMT_OK)
		test_import_delay("apply");
	if (code == GMT_OK && store_commit(ctx->store) < 0)
		code = GMT_E_STORAGE;
	else if (code != GMT_OK)
		store_rollback(ctx->store);
	if (code != GMT_OK) {
		start_all(ctx, stopped);   /* the old state is back: run it again */
		goto out;
	}
	if (restore) {
		(void)api_reload_platform_key(ctx);
		api_apply_ntp_config(ctx);
		start_all(ctx, c.start);
	}
	*ret_result = json_pack("{s:s,s:s,s:O}", "imageId",
				json_string_value(json_object_get(hdr, "imageId"))
					? json_string_value(json_object_get(hdr, "imageId")) : "",
				"sourceDeviceId", source ? source : "", "vsmIds", c.vsm_ids);
	chsm_log(CHSM_LOG_INFO, restore ? "chsm.restored" : "chsm.image.imported",
		 "source_device", source ? source : "", NULL);
out:
	atomic_store(&ctx->chsm_state, CHSM_STATE_RUNNING);
	json_decref(stopped);
	json_decref(c.vsm_ids);
	json_decref(c.start);
	image_reader_free(r);
	if (fd >= 0)
		close(fd);
	return code;
}

/* ---- dispatch ---- */

bool api_image_operation(const char *op)
{
	static const char *const ops[] = {"vsm.image.export", "vsm.image.import",
					  "chsm.image.export", "chsm.image.import",
					  "chsm.backup", "chsm.restore", NULL};
	return name_in(op, ops);
}

int api_run_image_task(struct api_ctx *ctx, const struct store_task *t, json_t **ret_result,
		       char *msg, size_t msglen)
{
	const char *op = t->operation;
	json_t *params = t->params ? json_loads(t->params, 0, NULL) : NULL;
	int code;
	if (strcmp(op, "vsm.image.import") == 0) {
		const char *url = json_string_value(json_object_get(params, "url"));
		const char *sm3 = json_string_value(json_object_get(params, "sm3"));
		code = url && sm3 ? vsm_import(ctx, t->target, url, sm3, ret_result, msg, msglen)
				  : GMT_E_INTERNAL;
		if (code != GMT_OK)   /* it was stopped, and nothing changed */
			(void)api_vsm_settle_state(ctx, t->target, "stopped", NULL);
	} else if (strcmp(op, "chsm.image.import") == 0 || strcmp(op, "chsm.restore") == 0) {
		code = chsm_import(ctx, params, strcmp(op, "chsm.restore") == 0, ret_result, msg,
				   msglen);
	} else {
		struct export_job j;
		memset(&j, 0, sizeof(j));
		bool whole = strcmp(op, "vsm.image.export") != 0;
		j.type = !whole ? IMAGE_VSM : strcmp(op, "chsm.backup") == 0 ? IMAGE_BACKUP : IMAGE_CHSM;
		j.vsm_id = t->target;
		if (whole)
			atomic_store(&ctx->chsm_state, CHSM_STATE_EXPORTING);
		code = run_export(ctx, &j, msg, msglen);
		if (whole)
			atomic_store(&ctx->chsm_state, CHSM_STATE_RUNNING);
		if (code == GMT_OK && !whole)
			*ret_result = json_pack("{s:s,s:s,s:I,s:s,s:s,s:I,s:I,s:s}", "imageId",
						j.image_id, "url", j.url, "sizeBytes",
						(json_int_t)j.size, "sm3", j.sm3, "vsmId", t->target,
						"keyCount", (json_int_t)j.key_count, "stateVersion",
						(json_int_t)j.state_version, "stateDigest",
						j.state_digest);
		else if (code == GMT_OK)
			*ret_result = json_pack("{s:s,s:s,s:I,s:s,s:O}", "imageId", j.image_id, "url",
						j.url, "sizeBytes", (json_int_t)j.size, "sm3", j.sm3,
						"vsmIds", j.vsm_ids);
		json_decref(j.vsm_ids);
	}
	json_decref(params);
	return code;
}
