/*
 * config.c: where a device finds its VSM and token: the environment or a
 * small configuration file (docs/sdf.md#configuration).
 *
 * Guarantees: the parser is strict (an unknown or repeated key, a line
 * without '=', an empty value, a control character or a missing key is
 * -EINVAL); the token secret is read from its file (raw bytes, or the
 * base64 text the platform configures, decoded strictly) straight into the
 * configuration and every temporary copy is wiped. Nothing here logs.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "crypto/crypto.h"
#include "sdf/sdf_internal.h"

void sdf_config_wipe(struct sdf_config *cfg)
{
	if (cfg)
		crypto_wipe(cfg, sizeof(*cfg));
}

int sdf_parse_endpoint(const char *s, char host[SDF_HOST_MAX + 1], char port[6])
{
	if (!s)
		return -EINVAL;
	const char *h, *colon;
	size_t hlen;
	if (s[0] == '[') {
		const char *close = strchr(s, ']');
		if (!close || close[1] != ':')
			return -EINVAL;
		h = s + 1;
		hlen = (size_t)(close - h);
		colon = close + 1;
		if (!chsm_str_charset(h, hlen, ":.%") || !memchr(h, ':', hlen))
			return -EINVAL;
	} else {
		colon = strchr(s, ':');
		if (!colon || strchr(colon + 1, ':'))
			return -EINVAL;
		h = s;
		hlen = (size_t)(colon - s);
		if (!chsm_str_charset(h, hlen, ".-_"))
			return -EINVAL;
	}
	if (hlen == 0 || hlen > SDF_HOST_MAX)
		return -EINVAL;
	const char *p = colon + 1;
	uint64_t v;
	if (strlen(p) > 5 || chsm_parse_u64(p, 65535, &v) < 0 || v == 0 || p[0] == '0')
		return -EINVAL;
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	memcpy(port, p, strlen(p) + 1);
	return 0;
}

/* Token IDs are printable ASCII without spaces, 1..64 bytes. */
static int check_token_id(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > SDF_TOKEN_ID_MAX)
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
			return -EINVAL;
	return 0;
}

int sdf_read_secret_file(const char *path, uint8_t out[SDF_SECRET_MAX], size_t *ret_len)
{
	if (!path || !*path)
		return -EINVAL;
	char *data = NULL;
	size_t len = 0;
	int r = chsm_read_file(path, SDF_SECRET_MAX, &data, &len);
	if (r < 0)
		return r;
	if (len < SDF_SECRET_MIN) {
		crypto_free_secret(data, len + 1);
		return -EINVAL;
	}
	memcpy(out, data, len);
	crypto_free_secret(data, len + 1);
	*ret_len = len;
	return 0;
}

/* The longest base64 secret file: base64 of SDF_SECRET_MAX bytes and a
 * final newline. */
#define SECRET_B64_FILE_MAX (4 * ((SDF_SECRET_MAX + 2) / 3) + 1)

/* Reads a secret file holding the base64 form of the secret (as 7.3.4 of
 * the platform interface takes it): strict standard base64 of
 * SDF_SECRET_MIN..SDF_SECRET_MAX bytes, optionally followed by one "\n". */
static int read_secret_base64_file(const char *path, uint8_t out[SDF_SECRET_MAX],
				   size_t *ret_len)
{
	if (!path || !*path)
		return -EINVAL;
	char *text = NULL;
	uint8_t *raw = NULL;
	size_t len = 0, rawlen = 0;
	int r = chsm_read_file(path, SECRET_B64_FILE_MAX, &text, &len);
	if (r < 0)
		return r;
	size_t n = len > 0 && text[len - 1] == '\n' ? len - 1 : len;
	if ((r = crypto_base64_decode(text, n, &raw, &rawlen)) < 0)
		goto out;
	if (rawlen < SDF_SECRET_MIN || rawlen > SDF_SECRET_MAX) {
		r = -EINVAL;
		goto out;
	}
	memcpy(out, raw, rawlen);
	*ret_len = rawlen;
out:
	crypto_free_secret(raw, rawlen);
	crypto_free_secret(text, len + 1);
	return r;
}

/* Builds a configuration from its three settings; the secret file holds
 * raw bytes, or base64 when secret_base64. */
static int config_build(const char *endpoint, const char *token_id, const char *secret_path,
			bool secret_base64, struct sdf_config *ret)
{
	struct sdf_config c;
	memset(&c, 0, sizeof(c));
	int r = -EINVAL;
	if (!endpoint || !token_id || !secret_path)
		goto out;
	if ((r = sdf_parse_endpoint(endpoint, c.host, c.port)) < 0)
		goto out;
	if ((r = check_token_id(token_id)) < 0)
		goto out;
	memcpy(c.token_id, token_id, strlen(token_id) + 1);
	r = secret_base64 ? read_secret_base64_file(secret_path, c.secret, &c.secret_len)
			  : sdf_read_secret_file(secret_path, c.secret, &c.secret_len);
	if (r < 0)
		goto out;
	*ret = c;
out:
	sdf_config_wipe(&c);
	return r;
}

static char *trim(char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	size_t n = strlen(s);
	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
		s[--n] = '\0';
	return s;
}

enum { KEY_ENDPOINT, KEY_TOKEN_ID, KEY_SECRET_FILE, KEY_SECRET_B64_FILE, KEY_COUNT };
static const char *const config_keys[KEY_COUNT] = {"endpoint", "token_id", "token_secret_file",
						   "token_secret_base64_file"};

int sdf_config_parse(const char *text, size_t len, const char *base_dir, struct sdf_config *ret)
{
	if (!text || len > SDF_CONFIG_MAX_BYTES || memchr(text, '\0', len))
		return -EINVAL;
	char *copy = malloc(len + 1);
	if (!copy)
		return -ENOMEM;
	memcpy(copy, text, len);
	copy[len] = '\0';
	char *values[KEY_COUNT] = {NULL};
	char *path = NULL;
	int r = -EINVAL;

	char *save = NULL;
	/* strtok_r would merge empty lines, which is what we want here. */
	for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *t = trim(line);
		if (*t == '\0' || *t == '#')
			continue;
		for (char *q = t; *q; q++)
			if ((unsigned char)*q < 0x20 && *q != '\t')
				goto out;
		char *eq = strchr(t, '=');
		if (!eq)
			goto out;
		*eq = '\0';
		char *key = trim(t), *value = trim(eq + 1);
		if (*value == '\0')
			goto out;
		size_t k;
		for (k = 0; k < KEY_COUNT; k++)
			if (strcmp(key, config_keys[k]) == 0)
				break;
		if (k == KEY_COUNT || values[k])
			goto out;
		values[k] = value;
	}
	/* endpoint, token_id and exactly one of the two secret files */
	bool b64 = values[KEY_SECRET_B64_FILE] != NULL;
	if (!values[KEY_ENDPOINT] || !values[KEY_TOKEN_ID] || b64 == (values[KEY_SECRET_FILE] != NULL))
		goto out;
	const char *secret = b64 ? values[KEY_SECRET_B64_FILE] : values[KEY_SECRET_FILE];
	if (secret[0] != '/' && base_dir && *base_dir) {
		size_t n = strlen(base_dir) + 1 + strlen(secret) + 1;
		if (!(path = malloc(n))) {
			r = -ENOMEM;
			goto out;
		}
		snprintf(path, n, "%s/%s", base_dir, secret);
		secret = path;
	}
	r = config_build(values[KEY_ENDPOINT], values[KEY_TOKEN_ID], secret, b64, ret);
out:
	free(path);
	crypto_free_secret(copy, len + 1);
	return r;
}

int sdf_config_load_file(const char *path, struct sdf_config *ret)
{
	if (!path || !*path)
		return -EINVAL;
	char *text = NULL;
	size_t len = 0;
	int r = chsm_read_file(path, SDF_CONFIG_MAX_BYTES, &text, &len);
	if (r < 0)
		return r;
	char *dir = strdup(path);
	if (!dir) {
		free(text);
		return -ENOMEM;
	}
	char *slash = strrchr(dir, '/');
	if (slash)
		slash[slash == dir ? 1 : 0] = '\0';
	r = sdf_config_parse(text, len, slash ? dir : NULL, ret);
	free(dir);
	crypto_free_secret(text, len + 1);
	return r;
}

int sdf_config_from_env(struct sdf_config *ret)
{
	const char *file = getenv("OPENCHSM_SDF_CONFIG");
	if (file && *file)
		return sdf_config_load_file(file, ret);
	const char *raw = getenv("OPENCHSM_SDF_TOKEN_SECRET_FILE");
	const char *b64 = getenv("OPENCHSM_SDF_TOKEN_SECRET_BASE64_FILE");
	if (raw && *raw && b64 && *b64)
		return -EINVAL; /* which one? */
	bool use_b64 = b64 && *b64;
	return config_build(getenv("OPENCHSM_SDF_ENDPOINT"), getenv("OPENCHSM_SDF_TOKEN_ID"),
			    use_b64 ? b64 : raw, use_b64, ret);
}
