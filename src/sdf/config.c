/*
 * config.c: where a device finds its VSM and token: the environment or a
 * small configuration file (docs/sdf.md#configuration).
 *
 * Guarantees: the parser is strict (an unknown or repeated key, a line
 * without '=', an empty value, a control character or a missing key is
 * -EINVAL); the token secret is read from its file straight into the
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

/* Builds a configuration from its three settings. */
static int config_build(const char *endpoint, const char *token_id, const char *secret_path,
			struct sdf_config *ret)
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
	if ((r = sdf_read_secret_file(secret_path, c.secret, &c.secret_len)) < 0)
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

enum { KEY_ENDPOINT, KEY_TOKEN_ID, KEY_SECRET_FILE, KEY_COUNT };
static const char *const config_keys[KEY_COUNT] = {"endpoint", "token_id", "token_secret_file"};

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
	for (size_t k = 0; k < KEY_COUNT; k++)
		if (!values[k])
			goto out;
	const char *secret = values[KEY_SECRET_FILE];
	if (secret[0] != '/' && base_dir && *base_dir) {
		size_t n = strlen(base_dir) + 1 + strlen(secret) + 1;
		if (!(path = malloc(n))) {
			r = -ENOMEM;
			goto out;
		}
		snprintf(path, n, "%s/%s", base_dir, secret);
		secret = path;
	}
	r = config_build(values[KEY_ENDPOINT], values[KEY_TOKEN_ID], secret, ret);
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
	return config_build(getenv("OPENCHSM_SDF_ENDPOINT"), getenv("OPENCHSM_SDF_TOKEN_ID"),
			    getenv("OPENCHSM_SDF_TOKEN_SECRET_FILE"), ret);
}
