/*
 * codes.c: the one table of PROFILE.md Appendix A: code, HTTP status and
 * fixed English message.
 *
 * Guarantees: every code of Appendix A has exactly one row; messages are
 * static strings that never carry request data; an unknown code answers as
 * an internal error (500, "internal error"). Rows are only ever added.
 */
#include "proto/codes.h"

#include <stddef.h>

struct code_entry {
	int code;
	int http_status;
	const char *message;
};

static const struct code_entry code_table[] = {
	{GMT_OK,                   200, "OK"},
	{GMT_E_NOT_JSON_OBJECT,    400, "body is not a JSON object"},
	{GMT_E_PARAM_MISSING,      400, "required parameter missing"},
	{GMT_E_PARAM_INVALID,      400, "parameter invalid"},
	{GMT_E_NO_INTERFACE,       404, "no such interface"},
	{GMT_E_METHOD_NOT_ALLOWED, 405, "method not allowed"},
	{GMT_E_BODY_TOO_LARGE,     413, "body too large"},
	{GMT_E_CONTENT_TYPE,       415, "unsupported content type"},
	{GMT_E_AUTH_HEADERS,       401, "authentication headers missing or malformed"},
	{GMT_E_SIGNATURE,          401, "signature invalid"},
	{GMT_E_TIMESTAMP,          401, "timestamp outside the window"},
	{GMT_E_NONCE_REPLAYED,     401, "nonce replayed"},
	{GMT_E_NO_PLATFORM_KEY,    403, "platform key not configured"},
	{GMT_E_UNKNOWN_KEY_ID,     401, "unknown key id"},
	{GMT_E_ENROLLMENT,         401, "enrollment code invalid, used or locked"},
	{GMT_E_VSM_NOT_FOUND,      404, "VSM not found"},
	{GMT_E_VSM_EXISTS,         409, "VSM already exists"},
	{GMT_E_STATE,              409, "not allowed in the current state"},
	{GMT_E_CAPACITY,           409, "capacity exhausted"},
	{GMT_E_BUSY,               409, "target busy with another task"},
	{GMT_E_TASK_NOT_FOUND,     404, "task not found"},
	{GMT_E_NO_UPLOAD_ADDRESS,  409, "image upload address not configured"},
	{GMT_E_TOO_MANY_TASKS,     429, "too many tasks"},
	{GMT_E_ADDRESS_IN_USE,     409, "network address already in use"},
	{GMT_E_IDEMPOTENCY_REUSED, 409, "idempotency key reused for another request"},
	{GMT_E_IMAGE_SIGNATURE,    422, "signature of image or package invalid"},
	{GMT_E_IMAGE_INTEGRITY,    422, "image integrity or decryption failed"},
	{GMT_E_IMAGE_FORMAT,       422, "image or package format unsupported"},
	{GMT_E_UPLOAD,             502, "upload failed"},
	{GMT_E_DOWNLOAD,           502, "download failed"},
	{GMT_E_PACKAGE,            422, "package invalid for this component or not newer"},
	{GMT_E_DOMAIN,             422, "security domain mismatch"},
	{GMT_E_DIGEST,             422, "digest mismatch"},
	{GMT_E_INTERNAL,           500, "internal error"},
	{GMT_E_STORAGE,            500, "storage error"},
	{GMT_E_CRYPTO,             500, "cryptographic module error"},
	{GMT_E_UNAVAILABLE,        503, "unavailable"},
};

static const struct code_entry *code_find(int code)
{
	for (size_t i = 0; i < sizeof(code_table) / sizeof(code_table[0]); i++)
		if (code_table[i].code == code)
			return &code_table[i];
	return NULL;
}

bool gmt_code_known(int code)
{
	return code_find(code) != NULL;
}

int gmt_code_http_status(int code)
{
	const struct code_entry *e = code_find(code);
	return e ? e->http_status : 500;
}

const char *gmt_code_message(int code)
{
	const struct code_entry *e = code_find(code);
	return e ? e->message : code_find(GMT_E_INTERNAL)->message;
}
