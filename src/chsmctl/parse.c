/*
 * parse.c: chsmctl's argv -> an invocation: the global options, the
 * command found in the table of commands.c, its positional ID and options,
 * and, for a request, the path and the JSON body built from the options'
 * fields. No network, no output: errors come back as one-line messages.
 *
 * Rules: options are "--name VALUE" or "--name=VALUE"; global options may
 * appear before or after the command words; "--help" or "-h" anywhere asks
 * for the usage of the command named so far. A non-repeatable option given
 * twice, an unknown option, a missing or malformed value, a missing
 * required option, or an ID that does not match the profile's pattern is a
 * usage error (-EINVAL).
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "chsmctl/cli.h"
#include "common/limits.h"
#include "common/util.h"
#include "crypto/crypto.h"
#include "openchsm/chsm_client.h"

/* Most options a command has, most values of one repeatable option. */
#define MAX_CMD_OPTS CLI_MAX_CMD_OPTS
#define MAX_VALUES   32
#define TASK_ID_MAX  64

struct values {
	const char *v[MAX_VALUES];
	size_t n;
};

struct parser {
	int argc;
	char *const *argv;
	char *err;
	size_t errlen;
	const struct cli_command *cmd;
	const char *group;
	bool in_command;              /* past the command words */
	struct values global[16];
	struct values opt[MAX_CMD_OPTS];
	struct values body, callback;
	const char *positional;
};

static int fail(struct parser *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(struct parser *p, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(p->err, p->errlen, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

static const struct cli_opt *find_opt(const struct cli_opt *opts, const char *name, size_t len)
{
	for (size_t i = 0; opts[i].name; i++)
		if (strlen(opts[i].name) == len && strncmp(opts[i].name, name, len) == 0)
			return &opts[i];
	return NULL;
}

static bool takes_value(const struct cli_opt *o)
{
	return o->kind != OPT_FLAG_TRUE && o->kind != OPT_FLAG_FALSE;
}

static bool repeatable(const struct cli_opt *o)
{
	return o->kind == OPT_STRINGS || o->kind == OPT_HEADERS || o->kind == OPT_INTERFACES;
}

static bool is_help(const char *a)
{
	return strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0;
}

static const struct cli_command *find_command(const char *group, const char *name)
{
	for (const struct cli_command *c = cli_commands; c->name; c++) {
		bool same_group = group ? c->group && strcmp(c->group, group) == 0 : !c->group;
		if (same_group && strcmp(c->name, name) == 0)
			return c;
	}
	return NULL;
}

static const char *find_group(const char *name)
{
	for (size_t i = 0; cli_groups[i]; i++)
		if (strcmp(cli_groups[i], name) == 0)
			return cli_groups[i];
	return NULL;
}

/* The values slot of option o, which is one of the command's options, the
 * body/callback options or a global one. */
static struct values *slot(struct parser *p, const struct cli_opt *o)
{
	if (o == &cli_body_opt)
		return &p->body;
	if (o == &cli_callback_opt)
		return &p->callback;
	for (size_t i = 0; cli_global_opts[i].name; i++)
		if (o == &cli_global_opts[i])
			return &p->global[i];
	return &p->opt[o - p->cmd->opts];
}

/* Looks an option up among those allowed here: the command's (when a
 * command is known), then the global ones. */
static const struct cli_opt *lookup(struct parser *p, const char *name, size_t len)
{
	const struct cli_opt *o = NULL;
	if (p->cmd && p->in_command) {
		o = find_opt(p->cmd->opts, name, len);
		if (!o && (p->cmd->flags & CMD_BODY) && strncmp("body", name, len) == 0 && len == 4)
			o = &cli_body_opt;
		if (!o && (p->cmd->flags & CMD_ASYNC) && len == strlen(cli_callback_opt.name) &&
		    strncmp(cli_callback_opt.name, name, len) == 0)
			o = &cli_callback_opt;
	}
	return o ? o : find_opt(cli_global_opts, name, len);
}

/* Consumes the option at argv[*i] (and its value). */
static int take_option(struct parser *p, int *i)
{
	const char *arg = p->argv[*i];
	if (strncmp(arg, "--", 2) != 0)
		return fail(p, "unknown option %.64s", arg);
	const char *name = arg + 2, *eq = strchr(name, '=');
	size_t len = eq ? (size_t)(eq - name) : strlen(name);
	const struct cli_opt *o = lookup(p, name, len);
	if (!o) /* never the value after '=': it may be a secret */
		return fail(p, "unknown option --%.*s", (int)(len > 64 ? 64 : len), name);
	const char *value = NULL;
	if (takes_value(o)) {
		if (eq)
			value = eq + 1;
		else if (*i + 1 < p->argc)
			value = p->argv[++*i];
		else
			return fail(p, "--%s needs a value (%s)", o->name, o->metavar);
	} else if (eq) {
		return fail(p, "--%s takes no value", o->name);
	}
	struct values *vs = slot(p, o);
	if (vs->n > 0 && !repeatable(o))
		return fail(p, "--%s given twice", o->name);
	if (vs->n == MAX_VALUES || (o->max && repeatable(o) && vs->n == o->max))
		return fail(p, "--%s given more than %zu times", o->name,
			    o->max && repeatable(o) ? (size_t)o->max : (size_t)MAX_VALUES);
	vs->v[vs->n++] = value ? value : "";
	return 0;
}

static const char *global_value(struct parser *p, const char *name)
{
	const struct cli_opt *o = find_opt(cli_global_opts, name, strlen(name));
	struct values *vs = &p->global[o - cli_global_opts];
	return vs->n ? vs->v[0] : NULL;
}

static const char *env_value(const char *name)
{
	const char *v = getenv(name);
	return v && *v ? v : NULL;
}

/* Where the scan for --help or the first error stops: finds the command
 * words, skipping global options before them. Returns the index after
 * them. */
static int find_command_words(struct parser *p)
{
	int i = 1;
	while (i < p->argc && strncmp(p->argv[i], "--", 2) == 0 && !is_help(p->argv[i])) {
		const char *name = p->argv[i] + 2, *eq = strchr(name, '=');
		size_t len = eq ? (size_t)(eq - name) : strlen(name);
		const struct cli_opt *o = find_opt(cli_global_opts, name, len);
		if (!o)
			return i; /* reported by the full parse */
		i += takes_value(o) && !eq ? 2 : 1;
	}
	if (i >= p->argc || p->argv[i][0] == '-')
		return i;
	p->group = find_group(p->argv[i]);
	if (!p->group) {
		p->cmd = find_command(NULL, p->argv[i]);
		return p->cmd ? i + 1 : i;
	}
	i++;
	if (i < p->argc && p->argv[i][0] != '-') {
		p->cmd = find_command(p->group, p->argv[i]);
		if (p->cmd)
			i++;
	}
	return i;
}

static bool valid_vsm_id(const char *s)
{
	size_t n = strlen(s);
	return n >= 1 && n <= CHSM_VSM_ID_MAX_LEN && chsm_str_charset(s, 1, NULL) &&
	       chsm_str_charset(s, n, "_.-");
}

static bool valid_task_id(const char *s)
{
	size_t n = strlen(s);
	return n >= 1 && n <= TASK_ID_MAX && chsm_str_charset(s, n, "-");
}

/* ---- values -> JSON ---- */

static json_t *string_or_fail(struct parser *p, const struct cli_opt *o, const char *s)
{
	json_t *j = json_string(s);
	if (!j)
		fail(p, "--%s: not valid UTF-8", o->name);
	return j;
}

static bool http_token(const char *s, size_t n)
{
	return n > 0 && chsm_str_charset(s, n, "!#$%&'*+.^_`|~-");
}

/* "Name: value" pairs into an object; names unique regardless of case. */
static json_t *headers_json(struct parser *p, const struct cli_opt *o, const struct values *vs)
{
	json_t *obj = json_object();
	for (size_t i = 0; obj && i < vs->n; i++) {
		const char *h = vs->v[i], *colon = strchr(h, ':');
		size_t nlen = colon ? (size_t)(colon - h) : 0;
		const char *value = colon ? colon + 1 : "";
		while (*value == ' ' || *value == '\t')
			value++;
		if (!http_token(h, nlen) || !*value || strpbrk(value, "\r\n")) {
			fail(p, "--%s: expected 'NAME: VALUE'", o->name);
			goto fail;
		}
		const char *k;
		json_t *unused;
		json_object_foreach(obj, k, unused) {
			if (strlen(k) == nlen && strncasecmp(k, h, nlen) == 0) {
				fail(p, "--%s: header %.*s given twice", o->name, (int)nlen, h);
				goto fail;
			}
		}
		json_t *v = string_or_fail(p, o, value);
		if (!v || json_object_setn_new(obj, h, nlen, v) < 0)
			goto fail;
	}
	return obj;
fail:
	json_decref(obj);
	return NULL;
}

/* One "name=eth0,address=10.0.0.2/24,gateway=10.0.0.1" into an object. */
static json_t *interface_json(struct parser *p, const struct cli_opt *o, const char *spec)
{
	static const char *const keys[] = {"name", "address", "gateway"};
	json_t *obj = json_object();
	const char *s = spec;
	while (obj && *s) {
		size_t len = strcspn(s, ","), klen = strcspn(s, "=");
		if (klen >= len || klen + 1 == len) {
			fail(p, "--%s: expected KEY=VALUE pairs separated by ','", o->name);
			goto fail;
		}
		size_t k = 0;
		while (k < 3 && !(strlen(keys[k]) == klen && strncmp(keys[k], s, klen) == 0))
			k++;
		if (k == 3 || json_object_get(obj, keys[k])) {
			fail(p, "--%s: unknown or repeated key %.*s (name, address, gateway)",
			     o->name, (int)klen, s);
			goto fail;
		}
		json_t *v = json_stringn(s + klen + 1, len - klen - 1);
		if (!v || json_object_set_new(obj, keys[k], v) < 0) {
			fail(p, "--%s: not valid UTF-8", o->name);
			goto fail;
		}
		s += len;
		if (*s == ',' && *++s == '\0') {
			fail(p, "--%s: trailing ','", o->name);
			goto fail;
		}
	}
	if (obj && (!json_object_get(obj, "name") || !json_object_get(obj, "address"))) {
		fail(p, "--%s: name= and address= are required", o->name);
		goto fail;
	}
	return obj;
fail:
	json_decref(obj);
	return NULL;
}

/* The token secret file: the secret in base64, exactly as 7.3.4 takes it
 * and as vsmtool reads it (one final newline allowed), so one file serves
 * both. Decoded strictly to check its length, then sent re-encoded. */
static json_t *secret_file_json(struct parser *p, const struct cli_opt *o, const char *path)
{
	char *data = NULL, *b64 = NULL;
	uint8_t *raw = NULL;
	size_t len = 0, raw_len = 0;
	json_t *j = NULL;
	/* base64 of CHSM_TOKEN_SECRET_MAX bytes, and a newline */
	const size_t cap = (CHSM_TOKEN_SECRET_MAX + 2) / 3 * 4 + 1;
	int r = chsm_read_file(path, cap, &data, &len);
	if (r < 0 && r != -EFBIG) {
		fail(p, "--%s: %s: %s", o->name, path, strerror(-r));
		goto out;
	}
	size_t text_len = len > 0 && data[len - 1] == '\n' ? len - 1 : len;
	if (r == -EFBIG || crypto_base64_decode(data, text_len, &raw, &raw_len) < 0 ||
	    raw_len < CHSM_TOKEN_SECRET_MIN || raw_len > CHSM_TOKEN_SECRET_MAX) {
		fail(p, "--%s: the file must hold the secret in base64: %d to %d bytes, "
			"one final newline allowed", o->name, CHSM_TOKEN_SECRET_MIN, CHSM_TOKEN_SECRET_MAX);
		goto out;
	}
	if (crypto_base64_encode(raw, raw_len, &b64) < 0) {
		fail(p, "--%s: out of memory", o->name);
		goto out;
	}
	j = json_string(b64);
out:
	crypto_free_secret(data, len);
	crypto_free_secret(raw, raw_len);
	if (b64)
		crypto_free_secret(b64, strlen(b64));
	return j;
}

static json_t *pubkey_file_json(struct parser *p, const struct cli_opt *o, const char *path)
{
	char *pem = NULL;
	int r = chsm_client_key_info(path, &pem, NULL);
	if (r < 0) {
		fail(p, "--%s: %s: %s", o->name, path,
		     r == -EINVAL ? "not an SM2 key PEM file" : chsm_client_strerror(r));
		return NULL;
	}
	json_t *j = json_string(pem);
	free(pem);
	return j;
}

static bool choice_ok(const char *choices, const char *v)
{
	size_t n = strlen(v);
	for (const char *c = choices; *c;) {
		size_t len = strcspn(c, "|");
		if (len == n && strncmp(c, v, n) == 0)
			return true;
		c += len + (c[len] == '|');
	}
	return false;
}

/* An array of one element per value of a repeatable option. */
static json_t *array_json(struct parser *p, const struct cli_opt *o, const struct values *vs,
			  json_t *(*element)(struct parser *, const struct cli_opt *, const char *))
{
	json_t *a = json_array();
	for (size_t i = 0; a && i < vs->n; i++) {
		json_t *e = element(p, o, vs->v[i]);
		if (!e || json_array_append_new(a, e) < 0) {
			json_decref(a);
			return NULL;
		}
	}
	return a;
}

/* The JSON value of a given option. */
static json_t *option_json(struct parser *p, const struct cli_opt *o, const struct values *vs)
{
	const char *v = vs->v[0];
	uint64_t n;
	uint8_t digest[CRYPTO_SM3_LEN];
	char hex[CRYPTO_SM3_HEX_LEN + 1];

	switch (o->kind) {
	case OPT_STRING:
		return string_or_fail(p, o, v);
	case OPT_STRINGS:
		return array_json(p, o, vs, string_or_fail);
	case OPT_UINT:
		if (chsm_parse_u64(v, o->max, &n) < 0) {
			fail(p, "--%s: expected a whole number from 0 to %llu", o->name,
			     (unsigned long long)o->max);
			return NULL;
		}
		return json_integer((json_int_t)n);
	case OPT_HEX64:
		if (strlen(v) != CRYPTO_SM3_HEX_LEN ||
		    chsm_hex_decode(v, CRYPTO_SM3_HEX_LEN, digest, sizeof(digest)) < 0) {
			fail(p, "--%s: expected 64 hex digits", o->name);
			return NULL;
		}
		chsm_hex_encode(digest, sizeof(digest), hex);
		return json_string(hex);
	case OPT_CHOICE:
		if (!choice_ok(o->choices, v)) {
			fail(p, "--%s: expected one of %s", o->name, o->choices);
			return NULL;
		}
		return json_string(v);
	case OPT_FLAG_TRUE:
		return json_true();
	case OPT_FLAG_FALSE:
		return json_false();
	case OPT_HEADERS:
		return headers_json(p, o, vs);
	case OPT_INTERFACES:
		return array_json(p, o, vs, interface_json);
	case OPT_SECRET_FILE:
		return secret_file_json(p, o, v);
	case OPT_PUBKEY_FILE:
		return pubkey_file_json(p, o, v);
	case OPT_LOCAL:
		break;
	}
	return NULL;
}

/* Sets value (stolen) at the dotted path in root, creating objects on the
 * way. */
static int body_set(struct parser *p, json_t *root, const char *path, json_t *value)
{
	json_t *obj = root;
	const char *seg = path;
	for (const char *dot; (dot = strchr(seg, '.')); seg = dot + 1) {
		char key[64];
		snprintf(key, sizeof(key), "%.*s", (int)(dot - seg), seg);
		json_t *next = json_object_get(obj, key);
		if (!next) {
			next = json_object();
			if (!next || json_object_set_new(obj, key, next) < 0)
				goto nomem;
		} else if (!json_is_object(next)) {
			json_decref(value);
			return fail(p, "--body: %s is not an object", key);
		}
		obj = next;
	}
	if (json_object_set_new(obj, seg, value) < 0)
		return -ENOMEM;
	return 0;
nomem:
	json_decref(value);
	return -ENOMEM;
}

/* Required options and all-or-none groups; skipped with --body, where the
 * CHSM is the judge. */
static int check_required(struct parser *p)
{
	const struct cli_opt *opts = p->cmd->opts;
	for (size_t i = 0; opts[i].name; i++) {
		const struct cli_opt *o = &opts[i];
		if (!(o->flags & OPTF_REQUIRED) || p->opt[i].n > 0)
			continue;
		if (o->group == 0)
			return fail(p, "missing --%s", o->name);
		for (size_t j = 0; opts[j].name; j++)
			if (opts[j].group == o->group && p->opt[j].n > 0)
				return fail(p, "--%s needs --%s too", opts[j].name, o->name);
	}
	return 0;
}

/* Builds the JSON body from --body and the options' fields. */
static int build_body(struct parser *p, char **ret)
{
	json_t *root = NULL;
	int r = 0;
	if (p->body.n) {
		json_error_t jerr;
		root = json_loads(p->body.v[0], JSON_REJECT_DUPLICATES, &jerr);
		if (!json_is_object(root)) {
			r = fail(p, "--body: not a JSON object (%s)", root ? "other type" : jerr.text);
			goto out;
		}
	} else {
		r = check_required(p);
		if (r < 0)
			goto out;
		root = json_object();
		if (!root) {
			r = -ENOMEM;
			goto out;
		}
	}
	for (size_t i = 0; p->cmd->opts[i].name; i++) {
		const struct cli_opt *o = &p->cmd->opts[i];
		const struct values *vs = &p->opt[i];
		if (!o->field)
			continue;
		json_t *v = NULL;
		if (vs->n > 0) {
			v = option_json(p, o, vs);
			if (!v) {
				r = p->err[0] ? -EINVAL : -ENOMEM;
				goto out;
			}
		} else if (p->body.n) {
			continue; /* --body: nothing but what was given */
		} else if (o->kind == OPT_FLAG_FALSE) {
			v = json_true();
		} else if (o->kind == OPT_STRINGS && (o->flags & OPTF_EMPTY_ARRAY)) {
			v = json_array();
		} else {
			continue;
		}
		r = body_set(p, root, o->field, v);
		if (r < 0)
			goto out;
	}
	if (p->callback.n) {
		json_t *v = string_or_fail(p, &cli_callback_opt, p->callback.v[0]);
		r = v ? body_set(p, root, cli_callback_opt.field, v) : -EINVAL;
		if (r < 0)
			goto out;
	}
	char *body = json_dumps(root, JSON_COMPACT);
	if (!body) {
		r = -ENOMEM;
		goto out;
	}
	*ret = body;
out:
	json_decref(root);
	return r;
}

/* The request path: the command's path with {id} replaced. */
static int build_path(struct parser *p, char **ret)
{
	const char *tmpl = p->cmd->path, *mark = strstr(tmpl, "{id}");
	const char *id = p->positional ? p->positional : "";
	size_t size = strlen(tmpl) + strlen(id) + 1;
	char *path = malloc(size);
	if (!path)
		return -ENOMEM;
	if (mark)
		snprintf(path, size, "%.*s%s%s", (int)(mark - tmpl), tmpl, id, mark + 4);
	else
		snprintf(path, size, "%s", tmpl);
	*ret = path;
	return 0;
}

/* The global options, with the environment as fallback. */
static int build_globals(struct parser *p, struct cli_globals *g)
{
	const char *timeout = global_value(p, "timeout");
	g->url = global_value(p, "url");
	g->key = global_value(p, "key");
	g->device_fingerprint = global_value(p, "device-fingerprint");
	g->cacert = global_value(p, "cacert");
	g->idempotency_key = global_value(p, "idempotency-key");
	g->insecure = global_value(p, "insecure") != NULL;
	g->wait = global_value(p, "wait") != NULL;
	g->json = global_value(p, "json") != NULL;
	if (!g->url)
		g->url = env_value("CHSMCTL_URL");
	if (!g->key)
		g->key = env_value("CHSMCTL_KEY");
	if (!g->device_fingerprint)
		g->device_fingerprint = env_value("CHSMCTL_DEVICE_FINGERPRINT");
	if (!g->cacert)
		g->cacert = env_value("CHSMCTL_CACERT");
	if (timeout) {
		const struct cli_opt *o = find_opt(cli_global_opts, "timeout", 7);
		uint64_t s;
		if (chsm_parse_u64(timeout, o->max, &s) < 0 || s == 0)
			return fail(p, "--timeout: expected seconds from 1 to %llu",
				    (unsigned long long)o->max);
		g->timeout_ms = (long)s * 1000;
	}
	if (g->idempotency_key) {
		size_t n = strlen(g->idempotency_key);
		if (n == 0 || n > CHSM_IDEMPOTENCY_KEY_MAX_LEN ||
		    !chsm_str_charset(g->idempotency_key, n, "_.:-"))
			return fail(p, "--idempotency-key: 1 to %d of A-Z a-z 0-9 _ . : -",
				    CHSM_IDEMPOTENCY_KEY_MAX_LEN);
	}
	if (g->device_fingerprint) {
		uint8_t raw[CRYPTO_SM3_LEN];
		if (strlen(g->device_fingerprint) != CRYPTO_SM3_HEX_LEN ||
		    chsm_hex_decode(g->device_fingerprint, CRYPTO_SM3_HEX_LEN, raw, sizeof(raw)) < 0)
			return fail(p, "device fingerprint: expected 64 hex digits");
	}
	return 0;
}

static bool hex64(const char *s)
{
	uint8_t raw[CRYPTO_SM3_LEN];
	return strlen(s) == CRYPTO_SM3_HEX_LEN &&
	       chsm_hex_decode(s, CRYPTO_SM3_HEX_LEN, raw, sizeof(raw)) == 0;
}

/* drift: two CHSMs instead of --url, each with its own trust options. */
static int check_drift(struct parser *p, struct cli_invocation *inv)
{
	static const char *const ids[] = {"vsm", "target-vsm"};
	static const char *const fps[] = {"from-device-fingerprint", "to-device-fingerprint"};
	int r = check_required(p);
	if (r < 0)
		return r;
	if (global_value(p, "url") || global_value(p, "device-fingerprint"))
		return fail(p, "drift talks to two CHSMs: give --from and --to, and "
			    "--from-device-fingerprint and --to-device-fingerprint, "
			    "instead of --url and --device-fingerprint");
	for (size_t i = 0; i < 2; i++) {
		const char *id = cli_opt_value(inv, ids[i]);
		if (!valid_vsm_id(id))
			return fail(p, "--%s: invalid VSM ID '%.64s': expected "
				    "[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", ids[i], id);
		const char *fp = cli_opt_value(inv, fps[i]);
		if (fp && !hex64(fp))
			return fail(p, "--%s: expected 64 hex digits", fps[i]);
	}
	const char *sm3 = cli_opt_value(inv, "sm3");
	if (sm3 && !hex64(sm3))
		return fail(p, "--sm3: expected 64 hex digits");
	if (!cli_opt_value(inv, "from-key") && !inv->g.key)
		return fail(p, "no platform key for the source CHSM: give --from-key or --key");
	if (!cli_opt_value(inv, "to-key") && !inv->g.key)
		return fail(p, "no platform key for the target CHSM: give --to-key or --key");
	return 0;
}

const char *cli_opt_value(const struct cli_invocation *inv, const char *name)
{
	if (!inv || !inv->cmd)
		return NULL;
	for (size_t i = 0; inv->cmd->opts[i].name && i < CLI_MAX_CMD_OPTS; i++)
		if (strcmp(inv->cmd->opts[i].name, name) == 0)
			return inv->opt_values[i];
	return NULL;
}

static int parse_command(struct parser *p, int start, struct cli_invocation *inv)
{
	const struct cli_command *c = p->cmd;
	size_t nopts = 0;
	int r;
	while (c->opts[nopts].name)
		nopts++;
	if (nopts > MAX_CMD_OPTS)
		return fail(p, "internal error: too many options for %s", c->name);
	for (int i = start; i < p->argc; i++) {
		const char *a = p->argv[i];
		if (a[0] == '-' && a[1] != '\0') {
			r = take_option(p, &i);
			if (r < 0)
				return r;
		} else if ((c->flags & (CMD_ID | CMD_TASK_ID)) && !p->positional) {
			p->positional = a;
		} else {
			return fail(p, "unexpected argument '%.64s'", a);
		}
	}
	if ((c->flags & (CMD_ID | CMD_TASK_ID)) && !p->positional)
		return fail(p, "missing %s ID", c->flags & CMD_ID ? "VSM" : "task");
	if ((c->flags & CMD_ID) && !valid_vsm_id(p->positional))
		return fail(p, "invalid VSM ID '%.64s': expected [A-Za-z0-9][A-Za-z0-9_.-]{0,63}",
			    p->positional);
	if ((c->flags & CMD_TASK_ID) && !valid_task_id(p->positional))
		return fail(p, "invalid task ID '%.64s'", p->positional);
	r = build_globals(p, &inv->g);
	if (r < 0)
		return r;
	if (!(c->flags & CMD_NOURL) && !inv->g.url)
		return fail(p, "no CHSM address: give --url or set CHSMCTL_URL");
	if (!(c->flags & CMD_NOKEY) && !inv->g.key)
		return fail(p, "no platform key: give --key or set CHSMCTL_KEY");
	inv->action = c->action;
	inv->cmd = c;
	inv->target_id = p->positional;
	for (size_t i = 0; c->opts[i].name; i++) {
		inv->opt_values[i] = p->opt[i].n ? p->opt[i].v[0] : NULL;
		if (c->opts[i].kind != OPT_LOCAL)
			continue;
		if (p->opt[i].n == 0 && (c->opts[i].flags & OPTF_REQUIRED) && !c->opts[i].group)
			return fail(p, "missing --%s", c->opts[i].name);
		if (strcmp(c->opts[i].name, "out") == 0)
			inv->keygen_out = p->opt[i].n ? p->opt[i].v[0] : NULL;
		else if (strcmp(c->opts[i].name, "enrollment-code") == 0)
			inv->enrollment_code = p->opt[i].n ? p->opt[i].v[0] : NULL;
	}
	if (c->action == CLI_DRIFT)
		return check_drift(p, inv);
	if (c->action != CLI_REQUEST)
		return 0;
	inv->method = c->method;
	r = build_path(p, &inv->path);
	if (r == 0 && (c->flags & CMD_BODY))
		r = build_body(p, &inv->body);
	return r;
}

int cli_parse(int argc, char *const *argv, struct cli_invocation *ret, char *err, size_t errlen,
	      const struct cli_command **ret_scope_cmd, const char **ret_scope_group)
{
	struct parser p = {.argc = argc, .argv = argv, .err = err, .errlen = errlen};
	struct cli_invocation inv = {0};
	int r;

	err[0] = '\0';
	int after = find_command_words(&p);
	for (int i = 1; i < argc; i++) {
		if (is_help(argv[i])) {
			inv.action = CLI_HELP;
			inv.cmd = p.cmd;
			inv.help_group = p.cmd ? p.cmd->group : p.group;
			*ret = inv;
			return 0;
		}
	}
	/* Global options before the command words. */
	int i = 1;
	for (; i < after && argv[i][0] == '-'; i++) {
		r = take_option(&p, &i);
		if (r < 0)
			goto out;
	}
	if (!p.cmd) {
		if (i < argc && argv[i][0] == '-')
			r = take_option(&p, &i) < 0 ? -EINVAL : fail(&p, "missing command");
		else if (p.group && i + 1 < argc && argv[i + 1][0] != '-')
			r = fail(&p, "unknown %s command '%.64s'", p.group, argv[i + 1]);
		else if (p.group)
			r = fail(&p, "missing %s command", p.group);
		else if (i < argc)
			r = fail(&p, "unknown command '%.64s'", argv[i]);
		else
			r = fail(&p, "missing command");
		goto out;
	}
	p.in_command = true;
	r = parse_command(&p, after, &inv);
	if (r < 0)
		goto out;
	*ret = inv;
	memset(&inv, 0, sizeof(inv));
out:
	if (r < 0) {
		if (r == -ENOMEM && !err[0])
			snprintf(err, errlen, "out of memory");
		*ret_scope_cmd = p.cmd;
		*ret_scope_group = p.cmd ? p.cmd->group : p.group;
	}
	cli_invocation_free(&inv);
	return r;
}

void cli_invocation_free(struct cli_invocation *inv)
{
	if (!inv)
		return;
	if (inv->body)
		crypto_free_secret(inv->body, strlen(inv->body));
	free(inv->path);
	memset(inv, 0, sizeof(*inv));
}
