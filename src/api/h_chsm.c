/*
 * h_chsm.c: the CHSM configuration interfaces 7.2.1-7.2.13.
 *
 * Configuration changes (7.2.4-7.2.7) are validated completely, then stored
 * in one write; 7.2.4 and 7.2.5 are applied to the host through the
 * platform first (hostnet.c), and a failure there changes nothing; upload addresses, whose headers may carry credentials, are
 * sealed at rest and shown only without credentials. The image, backup
 * and restore interfaces validate, then queue a task on target "chsm"
 * (images.c does the work); upgrade and reboot queue a task on "chsm"
 * too, which chsm_boot.c runs and ends after the service came back.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/statvfs.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#include "api/internal.h"
#include "common/log.h"
#include "common/util.h"
#include "common/version.h"

static const char *const upload_schemes[] = {"https", "http", "file", NULL};
static const char *const log_schemes[] = {"syslog+udp", "syslog+tcp", "https", "http", NULL};

const char *api_chsm_state_name(int state)
{
	static const char *const names[] = {"initializing", "running", "upgrading", "restoring",
					    "importing", "exporting", "rebooting", "fault"};
	return state >= 0 && state < 8 ? names[state] : "fault";
}

/* ---- 7.2.1 ---- */

void h_chsm_info(struct api_call *c)
{
	struct api_ctx *ctx = c->ctx;
	size_t nvsm = 0;
	if (store_vsm_count(ctx->store, &nvsm) < 0) {
		api_fail(c, GMT_E_STORAGE, NULL);
		return;
	}
	struct sysinfo si;
	uint64_t mem_mib = sysinfo(&si) == 0 ? (uint64_t)si.totalram * si.mem_unit / (1024 * 1024) : 0;
	json_t *d = json_object();
	json_object_set_new(d, "deviceId", json_string(ctx->device_id));
	json_object_set_new(d, "vendor", json_string("OpenCHSM"));
	json_object_set_new(d, "model", json_string("OpenCHSM software CHSM"));
	json_object_set_new(d, "serialNumber", json_string(ctx->serial_number));
	json_object_set_new(d, "firmwareVersion", json_string(chsm_version()));
	json_object_set_new(d, "apiVersion", json_string("v1"));
	json_object_set_new(d, "deviceKeyFingerprint", json_string(ctx->device_fp));
	json_object_set_new(d, "devicePublicKey", json_string(ctx->device_public_pem));
	json_object_set_new(d, "domainFingerprint", json_string(ctx->domain_fp));
	json_object_set_new(d, "algorithms", json_pack("[sss]", "SM2", "SM3", "SM4"));
	json_object_set_new(d, "capacity", json_pack("{s:i,s:i,s:I}", "maxVsms", ctx->max_vsms,
						     "cpuCores", (int)sysconf(_SC_NPROCESSORS_ONLN),
						     "memoryMiB", (json_int_t)mem_mib));
	json_object_set_new(d, "vsmCount", json_integer((json_int_t)nvsm));
	json_object_set_new(d, "bootTime", json_integer(ctx->boot_ms));
	json_object_set_new(d, "time", json_integer(chsm_now_ms()));
	api_ok(c, d);
}

/* ---- 7.2.2 / 7.2.3 ---- */

/* System-wide CPU use since the previous call, in percent. Called only
 * under host_lock (host_figures). */
static double cpu_percent(void)
{
	static unsigned long long prev_total, prev_idle;
	unsigned long long v[8] = {0};
	FILE *f = fopen("/proc/stat", "re");
	if (!f)
		return 0;
	int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
		       &v[4], &v[5], &v[6], &v[7]);
	fclose(f);
	if (n < 4)
		return 0;
	unsigned long long total = 0, idle = v[3] + v[4];
	for (int i = 0; i < 8; i++)
		total += v[i];
	double pct = 0;
	if (prev_total && total > prev_total)
		pct = 100.0 * (double)((total - prev_total) - (idle - prev_idle)) /
		      (double)(total - prev_total);
	prev_total = total;
	prev_idle = idle;
	return pct < 0 ? 0 : pct;
}

static void meminfo(uint64_t *total_mib, uint64_t *used_mib)
{
	unsigned long long total = 0, avail = 0, val;
	char key[64];
	*total_mib = *used_mib = 0;
	FILE *f = fopen("/proc/meminfo", "re");
	if (!f)
		return;
	while (fscanf(f, "%63s %llu kB\n", key, &val) == 2) {
		if (strcmp(key, "MemTotal:") == 0)
			total = val;
		else if (strcmp(key, "MemAvailable:") == 0)
			avail = val;
	}
	fclose(f);
	*total_mib = total / 1024;
	*used_mib = (total > avail ? total - avail : 0) / 1024;
}

/* The host's figures of a status answer are read again only when the last
 * reading is this old: reading /proc and statvfs took a few percent of the
 * CPU of each signed status request, and the figures mean nothing finer. */
#define HOST_FIGURES_MAX_AGE_MS 1000

struct host_figures {
	double cpu_percent;
	uint64_t mem_total_mib, mem_used_mib, disk_total_mib, disk_used_mib;
};

/* The host's CPU, memory and disk (of ctx->state_dir) figures, at most
 * HOST_FIGURES_MAX_AGE_MS old. Kept per process: chsmd serves one CHSM. */
static void host_figures(struct api_ctx *ctx, struct host_figures *ret)
{
	static pthread_mutex_t host_lock = PTHREAD_MUTEX_INITIALIZER;
	static struct host_figures last;
	static int64_t read_at;
	static bool have;
	int64_t now = chsm_monotonic_ms();
	pthread_mutex_lock(&host_lock);
	if (!have || now - read_at >= HOST_FIGURES_MAX_AGE_MS || now < read_at) {
		struct statvfs sv;
		last.cpu_percent = cpu_percent();
		meminfo(&last.mem_total_mib, &last.mem_used_mib);
		last.disk_total_mib = last.disk_used_mib = 0;
		if (statvfs(ctx->state_dir, &sv) == 0) {
			last.disk_total_mib = (uint64_t)sv.f_blocks * sv.f_frsize / (1024 * 1024);
			last.disk_used_mib = (uint64_t)(sv.f_blocks - sv.f_bfree) * sv.f_frsize / (1024 * 1024);
		}
		read_at = now;
		have = true;
	}
	*ret = last;
	pthread_mutex_unlock(&host_lock);
}

static json_t *setting_json(struct api_ctx *ctx, const char *name);

static json_t *ntp_status(struct api_ctx *ctx)
{
	struct ntp_status st = {0};
	if (ctx->ntp)
		ntp_monitor_status(ctx->ntp, &st);
	json_t *o = json_object();
	json_object_set_new(o, "synced", json_boolean(st.synced));
	json_object_set_new(o, "offsetMs", st.synced ? json_integer(st.offset_ms) : json_null());
	json_object_set_new(o, "server", st.synced ? json_string(st.server) : json_null());
	return o;
}

void api_apply_ntp_config(struct api_ctx *ctx)
{
	json_t *cfg = setting_json(ctx, "config.ntp");
	const char *servers[CHSM_MAX_NTP_SERVERS];
	int n = 0;
	size_t i;
	json_t *it;
	json_array_foreach(json_object_get(cfg, "servers"), i, it) {
		if (n < CHSM_MAX_NTP_SERVERS && json_is_string(it))
			servers[n++] = json_string_value(it);
	}
	if (ctx->ntp)
		(void)ntp_monitor_configure(ctx->ntp, servers, n, n > 0 && !json_is_false(json_object_get(cfg, "enabled")));
	json_decref(cfg);
}

/* Offsets past this are logged as warnings: request timestamps are only
 * accepted within ±300 s of this clock. */
#define NTP_WARN_OFFSET_MS 10000

void api_ntp_result(void *vctx, const struct ntp_status *st)
{
	char off[24];
	snprintf(off, sizeof(off), "%lld", (long long)st->offset_ms);
	if (!st->synced)
		chsm_log(CHSM_LOG_WARNING, "ntp.unsynced", "reason", "no configured server answered", NULL);
	else if (st->offset_ms > NTP_WARN_OFFSET_MS || st->offset_ms < -NTP_WARN_OFFSET_MS)
		chsm_log(CHSM_LOG_WARNING, "ntp.clock_offset", "server", st->server, "offset_ms", off, NULL);
	else
		chsm_log(CHSM_LOG_DEBUG, "ntp.measured", "server", st->server, "offset_ms", off, NULL);
}

/* 7.2.2's answer for the VSM counts n. */
static json_t *chsm_status_of(struct api_ctx *ctx, const struct store_vsm_counts *n)
{
	struct host_figures host;
	host_figures(ctx, &host);
	json_t *o = json_object();
	json_object_set_new(o, "state", json_string(api_chsm_state_name(atomic_load(&ctx->chsm_state))));
	json_object_set_new(o, "uptimeSeconds", json_integer((chsm_monotonic_ms() - ctx->boot_mono_ms) / 1000));
	json_object_set_new(o, "time", json_integer(chsm_now_ms()));
	json_object_set_new(o, "cpuPercent", json_real((double)(int)(host.cpu_percent * 10) / 10));
	json_object_set_new(o, "memoryUsedMiB", json_integer((json_int_t)host.mem_used_mib));
	json_object_set_new(o, "memoryTotalMiB", json_integer((json_int_t)host.mem_total_mib));
	json_object_set_new(o, "diskUsedMiB", json_integer((json_int_t)host.disk_used_mib));
	json_object_set_new(o, "diskTotalMiB", json_integer((json_int_t)host.disk_total_mib));
	json_object_set_new(o, "vsms", json_pack("{s:I,s:I,s:I}", "total", (json_int_t)n->total,
						 "running", (json_int_t)n->running, "fault",
						 (json_int_t)n->fault));
	json_object_set_new(o, "tasksRunning", json_integer(task_engine_running(ctx->tasks)));
	json_object_set_new(o, "ntp", ntp_status(ctx));
	return o;
}

/* The counts come from the store's kept figures (store_vsm_counts), not a
 * query: a status request neither waits for the store's mutex, which a
 * commit holds through its fdatasync, nor takes SQLite's file locks. */
json_t *api_chsm_status(struct api_ctx *ctx)
{
	struct store_vsm_counts n;
	if (store_vsm_counts(ctx->store, &n) < 0)
		return NULL;
	return chsm_status_of(ctx, &n);
}

void h_chsm_status(struct api_call *c)
{
	json_t *o = api_chsm_status(c->ctx);
	if (!o)
		api_fail(c, GMT_E_STORAGE, NULL);
	else
		api_ok(c, o);
}

/* An upload address without its credentials: URL without userinfo or
 * query, and only the names of its headers. */
static json_t *upload_address_view(struct api_ctx *ctx, const char *name, const char *extra)
{
	uint8_t *raw = NULL;
	size_t len = 0;
	if (store_secret_get(ctx->store, name, &raw, &len) < 0)
		return json_null();
	json_t *cfg = json_loadb((const char *)raw, len, 0, NULL);
	crypto_free_secret(raw, len);
	json_t *o = json_object();
	const char *url = json_string_value(json_object_get(cfg, "url"));
	char *red = url ? api_url_redacted(url) : NULL;
	json_object_set_new(o, "url", red ? json_string(red) : json_null());
	free(red);
	json_t *names = json_array();
	const char *k;
	json_t *val;
	json_object_foreach(json_object_get(cfg, "headers"), k, val)
		json_array_append_new(names, json_string(k));
	json_object_set_new(o, "headerNames", names);
	if (extra && json_object_get(cfg, extra))
		json_object_set(o, extra, json_object_get(cfg, extra));
	json_decref(cfg);
	return o;
}

static json_t *setting_json(struct api_ctx *ctx, const char *name)
{
	char *s = NULL;
	if (store_setting_get(ctx->store, name, &s) < 0)
		return json_null();
	json_t *v = json_loads(s, 0, NULL);
	free(s);
	return v ? v : json_null();
}

void h_chsm_status_all(struct api_call *c)
{
	struct api_ctx *ctx = c->ctx;
	struct store_vsm *v = NULL;
	char (*digests)[65] = NULL;
	size_t n = 0;
	/* Every stored figure from one read transaction, each VSM's digest
	 * computed only when its keys or token changed (store.h). */
	if (store_read_begin(ctx->store) < 0) {
		api_fail(c, GMT_E_STORAGE, NULL);
		return;
	}
	int r = store_vsm_list_digests(ctx->store, &v, &digests, &n);
	json_t *cfg = json_object();
	if (r >= 0) {
		json_object_set_new(cfg, "network", setting_json(ctx, "config.network"));
		json_object_set_new(cfg, "ntp", setting_json(ctx, "config.ntp"));
		json_object_set_new(cfg, "imageUploadAddress",
				    upload_address_view(ctx, "config.image_upload", NULL));
		json_object_set_new(cfg, "logUploadAddress",
				    upload_address_view(ctx, "config.log_upload", "level"));
	}
	store_read_end(ctx->store);
	if (r < 0) {
		json_decref(cfg);
		api_fail(c, GMT_E_STORAGE, NULL);
		return;
	}
	/* auth_lock only after the store's mutex is released (lock order). */
	pthread_mutex_lock(&ctx->auth_lock);
	json_object_set_new(cfg, "platformKeyFingerprint",
			    ctx->platform_key ? json_string(ctx->platform_fp) : json_null());
	pthread_mutex_unlock(&ctx->auth_lock);
	/* The answer is written as text: a tree of 256 VSMs cost more than
	 * the rest of the request (docs/PERFORMANCE.md, "Density"). */
	/* Counted from the list itself, so that both parts agree. */
	struct store_vsm_counts counts = {.total = n};
	for (size_t i = 0; i < n; i++) {
		counts.running += strcmp(v[i].state, "running") == 0;
		counts.fault += strcmp(v[i].state, "fault") == 0;
	}
	json_t *chsm = chsm_status_of(ctx, &counts);
	struct gmt_jsonw w;
	char *text = NULL;
	size_t len = 0;
	gmt_jsonw_init(&w, 1024 + 640 * n);
	gmt_jsonw_lit(&w, "{\"chsm\":");
	gmt_jsonw_json(&w, chsm);
	gmt_jsonw_lit(&w, ",\"vsms\":");
	r = api_vsm_status_all_write(ctx, v, (const char (*)[65])digests, n, &w);
	gmt_jsonw_lit(&w, ",\"config\":");
	gmt_jsonw_json(&w, cfg);
	gmt_jsonw_lit(&w, "}");
	json_decref(chsm);
	json_decref(cfg);
	free(v);
	free(digests);
	if (r < 0 || gmt_jsonw_finish(&w, &text, &len) < 0) {
		gmt_jsonw_free(&w);
		api_fail(c, GMT_E_INTERNAL, NULL);
		return;
	}
	api_ok_text(c, text, len);
}

/* ---- 7.2.4 - 7.2.7 ---- */

/* Stores a plain configuration document and answers with it. */
static void store_config(struct api_call *c, const char *name, const char *event)
{
	char *text = json_dumps(c->body, JSON_COMPACT | JSON_SORT_KEYS);
	int r = text ? store_setting_set(c->ctx->store, name, text) : -ENOMEM;
	free(text);
	if (r < 0) {
		api_fail(c, GMT_E_STORAGE, NULL);
		return;
	}
	chsm_log(CHSM_LOG_INFO, event, "request_id", c->request_id, NULL);
	api_ok(c, json_deep_copy(c->body));
}

void h_chsm_network(struct api_call *c)
{
	static const struct api_field fields[] = {
		{"hostname", API_STRING, true}, {"interfaces", API_ARRAY, true},
		{"dns", API_ARRAY, false}, {NULL}};
	static const struct api_field iface_fields[] = {
		{"name", API_STRING, true}, {"address", API_STRING, true},
		{"gateway", API_STRING, false}, {NULL}};
	struct platform_network net;
	size_t i;
	json_t *it;
	if (!api_fields(c, fields))
		return;
	/* Presence and types of every element first (1002/1003), then values. */
	json_array_foreach(json_object_get(c->body, "interfaces"), i, it) {
		const char *field = NULL;
		int code = json_is_object(it) ? api_check_fields(it, iface_fields, &field) : GMT_E_PARAM_INVALID;
		if (code != GMT_OK) {
			api_fail(c, code, "%s: interfaces[%zu]",
				 code == GMT_E_PARAM_MISSING ? "required parameter missing" : "parameter invalid", i);
			return;
		}
	}
	if (api_parse_chsm_network(c, c->body, &net))
		api_chsm_network_apply(c, &net);
}

void h_chsm_ntp(struct api_call *c)
{
	static const struct api_field fields[] = {
		{"servers", API_ARRAY, true}, {"enabled", API_BOOL, false}, {NULL}};
	if (!api_fields(c, fields))
		return;
	json_t *servers = json_object_get(c->body, "servers");
	size_t n = json_array_size(servers), i;
	json_t *it;
	if (n < 1 || n > CHSM_MAX_NTP_SERVERS) {
		api_fail(c, GMT_E_PARAM_INVALID, "parameter invalid: servers (1 to %d)", CHSM_MAX_NTP_SERVERS);
		return;
	}
	json_array_foreach(servers, i, it) {
		const char *s = json_string_value(it);
		if (!s || !(api_valid_ip(s, NULL) || api_valid_hostname(s))) {
			api_fail(c, GMT_E_PARAM_INVALID, "parameter invalid: servers[%zu]", i);
			return;
		}
	}
	if (!json_object_get(c->body, "enabled"))
		json_object_set_new(c->body, "enabled", json_true());
	/* The host's time service first: a failure leaves everything as it was. */
	const char *applied = "stored";
	char err[256] = "";
	int r = api_time_apply(c->ctx, c->body, &applied, err, sizeof(err));
	if (r < 0) {
		api_fail(c, GMT_E_INTERNAL, "the time service could not be configured (nothing "
			 "changed): %s", err);
		return;
	}
	if (strcmp(applied, "next-start") == 0)
		chsm_log(CHSM_LOG_WARNING, "config.ntp.not_reloaded", "error", err, NULL);
	store_config(c, "config.ntp", "config.ntp");
	if (c->code != GMT_OK)
		return;
	api_apply_ntp_config(c->ctx);
	json_object_set_new(c->data, "applied", json_string(applied));
}

/* Validates {url, headers?, level?} and stores it sealed under name. */
static void upload_address(struct api_call *c, const char *name, const char *const *schemes,
			   bool with_level)
{
	static const struct api_field image_fields[] = {
		{"url", API_STRING, true}, {"headers", API_OBJECT, false}, {NULL}};
	static const struct api_field log_fields[] = {
		{"url", API_STRING, true}, {"level", API_STRING, true},
		{"headers", API_OBJECT, false}, {NULL}};
	if (!api_fields(c, with_level ? log_fields : image_fields))
		return;
	if (!api_valid_url(json_string_value(json_object_get(c->body, "url")), schemes)) {
		api_fail(c, GMT_E_PARAM_INVALID, "parameter invalid: url");
		return;
	}
	if (with_level) {
		const char *lvl = json_string_value(json_object_get(c->body, "level"));
		if (strcmp(lvl, "error") && strcmp(lvl, "warning") && strcmp(lvl, "info")) {
			api_fail(c, GMT_E_PARAM_INVALID, "parameter invalid: level");
			return;
		}
	}
	json_t *headers = json_object_get(c->body, "headers");
	if (json_object_size(headers) > CHSM_MAX_UPLOAD_HEADERS) {
		api_fail(c, GMT_E_PARAM_INVALID, "parameter invalid: headers");
		return;
	}
	const char *k;
	json_t *v;
	json_object_foreach(headers, k, v) {
		if (!api_valid_header_name(k) || !json_is_string(v) ||
		    !api_valid_header_value(json_string_value(v))) {
			api_fail(c, GMT_E_PARAM_INVALID, "parameter invalid: headers");
			return;
		}
	}
	char *text = json_dumps(c->body, JSON_COMPACT | JSON_SORT_KEYS);
	int r = text ? store_secret_set(c->ctx->store, name, text, strlen(text)) : -ENOMEM;
	if (text)
		crypto_free_secret(text, strlen(text));
	if (r < 0) {
		api_fail(c, GMT_E_STORAGE, NULL);
		return;
	}
	chsm_log(CHSM_LOG_INFO, name, "request_id", c->request_id, NULL);
	api_ok(c, upload_address_view(c->ctx, name, with_level ? "level" : NULL));
}

void h_chsm_image_upload(struct api_call *c)
{
	upload_address(c, "config.image_upload", upload_schemes, false);
}

void h_chsm_log_upload(struct api_call *c)
{
	upload_address(c, "config.log_upload", log_schemes, true);
}

/* ---- 7.2.8 - 7.2.13 ---- */

static bool upload_configured(struct api_call *c)
{
	uint8_t *raw = NULL;
	size_t len = 0;
	int r = store_secret_get(c->ctx->store, "config.image_upload", &raw, &len);
	crypto_free_secret(raw, len);
	if (r == -ENOENT) {
		api_fail(c, GMT_E_NO_UPLOAD_ADDRESS, NULL);
		return false;
	}
	if (r < 0) {
		api_fail(c, GMT_E_STORAGE, NULL);
		return false;
	}
	return true;
}

static const struct api_field callback_only[] = {{"callbackUrl", API_STRING, false}, {NULL}};

/* Copies the named fields of the request body into a new params object. */
static json_t *params_of(struct api_call *c, const char *const *names)
{
	json_t *p = json_object();
	for (; *names; names++) {
		json_t *v = json_object_get(c->body, *names);
		if (v)
			json_object_set(p, *names, v);
	}
	return p;
}

/* The whole-CHSM image tasks run on target "chsm" (one at a time). */
static void submit_chsm(struct api_call *c, const char *operation, const char *const *names)
{
	json_t *params = names ? params_of(c, names) : NULL;
	api_submit_task(c, operation, "chsm", params, NULL, NULL);
	json_decref(params);
}

void h_chsm_image_export(struct api_call *c)
{
	const char *cb;
	if (api_fields(c, callback_only) && api_callback_url(c, &cb) && upload_configured(c))
		submit_chsm(c, "chsm.image.export", NULL);
}

void h_chsm_image_import(struct api_call *c)
{
	static const struct api_field fields[] = {
		{"url", API_STRING, true}, {"sm3", API_STRING, true},
		{"replaceExisting", API_BOOL, false}, {"callbackUrl", API_STRING, false}, {NULL}};
	static const char *const names[] = {"url", "sm3", "replaceExisting", NULL};
	if (api_download_fields(c, fields))
		submit_chsm(c, "chsm.image.import", names);
}

void h_chsm_upgrade(struct api_call *c)
{
	static const struct api_field fields[] = {
		{"url", API_STRING, true}, {"sm3", API_STRING, true},
		{"callbackUrl", API_STRING, false}, {NULL}};
	static const char *const names[] = {"url", "sm3", NULL};
	if (api_download_fields(c, fields))
		submit_chsm(c, "chsm.upgrade", names);
}

void h_chsm_reboot(struct api_call *c)
{
	const char *cb;
	if (!api_fields(c, callback_only) || !api_callback_url(c, &cb))
		return;
	submit_chsm(c, "chsm.reboot", NULL);
	/* Accepted: mutations get 5003 from now on, not only once a worker
	 * runs the task. */
	if (c->accepted)
		atomic_store(&c->ctx->chsm_state, CHSM_STATE_REBOOTING);
}

void h_chsm_backup(struct api_call *c)
{
	const char *cb;
	if (api_fields(c, callback_only) && api_callback_url(c, &cb) && upload_configured(c))
		submit_chsm(c, "chsm.backup", NULL);
}

void h_chsm_restore(struct api_call *c)
{
	static const struct api_field fields[] = {
		{"url", API_STRING, true}, {"sm3", API_STRING, true},
		{"allowOtherDevice", API_BOOL, false}, {"callbackUrl", API_STRING, false}, {NULL}};
	static const char *const names[] = {"url", "sm3", "allowOtherDevice", NULL};
	if (api_download_fields(c, fields))
		submit_chsm(c, "chsm.restore", names);
}
