/*
 * validate.c: see validate.h. Every check is locale-free and bounded.
 */
#include "api/validate.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "common/limits.h"
#include "common/util.h"
#include "proto/codes.h"

static bool type_matches(const json_t *v, enum api_type t)
{
	switch (t) {
	case API_STRING: return json_is_string(v);
	case API_INT:    return json_is_integer(v);
	case API_BOOL:   return json_is_boolean(v);
	case API_OBJECT: return json_is_object(v);
	case API_ARRAY:  return json_is_array(v);
	}
	return false;
}

int api_check_fields(const json_t *obj, const struct api_field *fields, const char **ret_field)
{
	const char *key;
	const json_t *val;

	json_object_foreach((json_t *)obj, key, val) {
		const struct api_field *f = fields;
		while (f->name && strcmp(f->name, key) != 0)
			f++;
		if (!f->name || !type_matches(val, f->type)) {
			if (ret_field)
				*ret_field = key;
			return GMT_E_PARAM_INVALID;
		}
	}
	for (const struct api_field *f = fields; f->name; f++) {
		if (f->required && !json_object_get(obj, f->name)) {
			if (ret_field)
				*ret_field = f->name;
			return GMT_E_PARAM_MISSING;
		}
	}
	return GMT_OK;
}

int api_json_depth(const json_t *v)
{
	int max = 0;
	if (json_is_object(v)) {
		const char *k;
		const json_t *c;
		json_object_foreach((json_t *)v, k, c) {
			int d = api_json_depth(c);
			if (d > max)
				max = d;
		}
		return max + 1;
	}
	if (json_is_array(v)) {
		size_t i;
		const json_t *c;
		json_array_foreach(v, i, c) {
			int d = api_json_depth(c);
			if (d > max)
				max = d;
		}
		return max + 1;
	}
	return 0;
}

bool api_valid_vsm_id(const char *s)
{
	size_t n = s ? strlen(s) : 0;
	if (n < 1 || n > CHSM_VSM_ID_MAX_LEN)
		return false;
	if (!chsm_str_charset(s, 1, NULL))
		return false;
	return chsm_str_charset(s, n, "_.-");
}

bool api_valid_ip(const char *s, int *ret_family)
{
	unsigned char buf[16];
	if (!s || strlen(s) > 45)
		return false;
	if (inet_pton(AF_INET, s, buf) == 1) {
		if (ret_family)
			*ret_family = AF_INET;
		return true;
	}
	if (inet_pton(AF_INET6, s, buf) == 1) {
		if (ret_family)
			*ret_family = AF_INET6;
		return true;
	}
	return false;
}

bool api_valid_cidr(const char *s)
{
	char addr[64];
	const char *slash = s ? strchr(s, '/') : NULL;
	if (!slash || (size_t)(slash - s) >= sizeof(addr))
		return false;
	memcpy(addr, s, (size_t)(slash - s));
	addr[slash - s] = '\0';
	int family;
	uint64_t prefix;
	if (!api_valid_ip(addr, &family) || chsm_parse_u64(slash + 1, 128, &prefix) < 0)
		return false;
	return prefix <= (family == AF_INET ? 32u : 128u);
}

bool api_valid_hostname(const char *s)
{
	size_t n = s ? strlen(s) : 0;
	if (n < 1 || n > 253)
		return false;
	size_t label = 0;
	for (size_t i = 0; i <= n; i++) {
		char c = s[i];
		if (c == '.' || c == '\0') {
			if (label == 0 || label > 63 || s[i - 1] == '-')
				return false;
			label = 0;
			continue;
		}
		if (label == 0 && c == '-')
			return false;
		if (!chsm_str_charset(&c, 1, "-"))
			return false;
		label++;
	}
	return true;
}

bool api_valid_url(const char *s, const char *const *schemes)
{
	size_t n = s ? strlen(s) : 0;
	if (n < 1 || n > CHSM_JSON_MAX_URL)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c <= 0x20 || c >= 0x7f)
			return false;
	}
	for (const char *const *sc = schemes; *sc; sc++) {
		size_t sl = strlen(*sc);
		if (n > sl + 3 && strncmp(s, *sc, sl) == 0 && strncmp(s + sl, "://", 3) == 0) {
			const char *rest = s + sl + 3;
			if (strcmp(*sc, "file") == 0)
				return rest[0] == '/' && rest[1] != '\0';
			/* a host must follow: not empty, not starting with '/' */
			return rest[0] != '/' && rest[0] != '?' && rest[0] != '#';
		}
	}
	return false;
}

bool api_valid_header_name(const char *s)
{
	size_t n = s ? strlen(s) : 0;
	return n >= 1 && n <= 64 && chsm_str_charset(s, n, "!#$%&'*+-.^_`|~");
}

bool api_valid_header_value(const char *s)
{
	size_t n = s ? strlen(s) : 0;
	if (n > 4096)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return false;
	}
	return true;
}

bool api_valid_sm3_hex(const char *s)
{
	uint8_t tmp[32];
	return s && strlen(s) == 64 && chsm_hex_decode(s, 64, tmp, 32) == 0;
}

bool api_valid_text(const char *s, size_t max)
{
	size_t n = s ? strlen(s) : 0;
	if (n < 1 || n > max)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c == 0x7f)
			return false;
	}
	return true;
}

char *api_url_redacted(const char *url)
{
	const char *scheme_end = strstr(url, "://");
	const char *start = scheme_end ? scheme_end + 3 : url;
	size_t hostlen = strcspn(start, "/?#");
	const char *at = memchr(start, '@', hostlen);
	const char *host = at ? at + 1 : start;
	size_t pathlen = strcspn(host, "?#");
	size_t prefix = (size_t)(start - url);
	char *out = malloc(prefix + pathlen + 1);
	if (!out)
		return NULL;
	memcpy(out, url, prefix);
	memcpy(out + prefix, host, pathlen);
	out[prefix + pathlen] = '\0';
	return out;
}
