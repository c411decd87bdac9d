/*
 * validate.h: strict validation of request bodies (PROFILE.md §9).
 *
 * A handler declares its fields in a table; api_check_fields() answers, in
 * one place, the three rules every interface shares: an unknown field is
 * 1003, a missing required one is 1002, a wrong JSON type is 1003. The value
 * checks (formats, ranges) are small functions below, each returning a
 * gmt_code so that handlers stay declarative.
 */
#ifndef CHSM_API_VALIDATE_H
#define CHSM_API_VALIDATE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

enum api_type { API_STRING, API_INT, API_BOOL, API_OBJECT, API_ARRAY };

struct api_field {
	const char *name;
	enum api_type type;
	bool required;
};

/* Checks obj against fields (terminated by a {NULL} entry). Returns GMT_OK,
 * 1002 or 1003; *ret_field (may be NULL) names the offending field. */
int api_check_fields(const json_t *obj, const struct api_field *fields, const char **ret_field);

/* Depth of nesting of a JSON value (a scalar is 0). */
int api_json_depth(const json_t *v);

/* Format checks: each returns true when the value is acceptable. */
bool api_valid_vsm_id(const char *s);
bool api_valid_ip(const char *s, int *ret_family);           /* AF_INET / AF_INET6 */
/* "addr/prefix" with a valid prefix for its family. */
bool api_valid_cidr(const char *s);
/* RFC 1123 host name (labels of [A-Za-z0-9-], no leading/trailing '-'). */
bool api_valid_hostname(const char *s);
/* A URL whose scheme is one of schemes (NULL-terminated list), with a host
 * (or a path for file://), no spaces or control characters, bounded. */
bool api_valid_url(const char *s, const char *const *schemes);
/* HTTP header name (token) and value (printable, no CR/LF). */
bool api_valid_header_name(const char *s);
bool api_valid_header_value(const char *s);
/* Lowercase or uppercase 64-digit hex (an SM3 digest). */
bool api_valid_sm3_hex(const char *s);
/* 1..max bytes without control characters (ASCII controls and DEL);
 * bytes of 0x80 and above pass, so names may be UTF-8. */
bool api_valid_text(const char *s, size_t max);

/* Writes url without userinfo and without query/fragment into a malloc'ed
 * string (NULL on allocation failure): what may be shown of an upload
 * address without revealing credentials. */
char *api_url_redacted(const char *url);

#endif
