/*
 * codes.h: the status codes of PROFILE.md Appendix A, with their HTTP status
 * and message, in one table (codes.c). Codes are only ever added, never
 * renumbered.
 */
#ifndef CHSM_PROTO_CODES_H
#define CHSM_PROTO_CODES_H

#include <stdbool.h>

enum gmt_code {
	GMT_OK                    = 0,
	GMT_E_NOT_JSON_OBJECT     = 1001,
	GMT_E_PARAM_MISSING       = 1002,
	GMT_E_PARAM_INVALID       = 1003,
	GMT_E_NO_INTERFACE        = 1004,
	GMT_E_METHOD_NOT_ALLOWED  = 1005,
	GMT_E_BODY_TOO_LARGE      = 1006,
	GMT_E_CONTENT_TYPE        = 1007,
	GMT_E_AUTH_HEADERS        = 2001,
	GMT_E_SIGNATURE           = 2002,
	GMT_E_TIMESTAMP           = 2003,
	GMT_E_NONCE_REPLAYED      = 2004,
	GMT_E_NO_PLATFORM_KEY     = 2005,
	GMT_E_UNKNOWN_KEY_ID      = 2006,
	GMT_E_ENROLLMENT          = 2007,
	GMT_E_VSM_NOT_FOUND       = 3001,
	GMT_E_VSM_EXISTS          = 3002,
	GMT_E_STATE               = 3003,
	GMT_E_CAPACITY            = 3004,
	GMT_E_BUSY                = 3005,
	GMT_E_TASK_NOT_FOUND      = 3006,
	GMT_E_NO_UPLOAD_ADDRESS   = 3007,
	GMT_E_TOO_MANY_TASKS      = 3008,
	GMT_E_ADDRESS_IN_USE      = 3009,
	GMT_E_IDEMPOTENCY_REUSED  = 3010,
	GMT_E_IMAGE_SIGNATURE     = 4001,
	GMT_E_IMAGE_INTEGRITY     = 4002,
	GMT_E_IMAGE_FORMAT        = 4003,
	GMT_E_UPLOAD              = 4004,
	GMT_E_DOWNLOAD            = 4005,
	GMT_E_PACKAGE             = 4006,
	GMT_E_DOMAIN              = 4007,
	GMT_E_DIGEST              = 4008,
	GMT_E_INTERNAL            = 5000,
	GMT_E_STORAGE             = 5001,
	GMT_E_CRYPTO              = 5002,
	GMT_E_UNAVAILABLE         = 5003,
};

/* True for a code of Appendix A. */
bool gmt_code_known(int code);
/* HTTP status for a code (500 for an unknown one). GMT_OK gives 200; an
 * accepted async request is answered 202 by the caller. */
int gmt_code_http_status(int code);
/* The code's fixed English message ("OK", "required parameter missing", ...);
 * "internal error" for an unknown code. Never contains request data. */
const char *gmt_code_message(int code);

#endif
