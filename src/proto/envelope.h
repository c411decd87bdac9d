/*
 * envelope.h: the response body of PROFILE.md §6:
 *   {"code": 0, "message": "OK", "requestId": "...", "data": {...}}
 * and unique request/task identifiers. Uses jansson.
 */
#ifndef CHSM_PROTO_ENVELOPE_H
#define CHSM_PROTO_ENVELOPE_H

#include <jansson.h>
#include <stddef.h>

/* A request ID: "req-" followed by 24 random lowercase hex digits. out has
 * room for 32 bytes. */
int gmt_new_request_id(char out[32]);
/* A task ID: "task-" followed by 24 random lowercase hex digits. */
int gmt_new_task_id(char out[32]);

/* Serialises an envelope. data may be NULL (omitted); it is not stolen.
 * message NULL means the code's standard message. *ret_body is malloc'ed
 * compact JSON (no trailing newline). */
int gmt_envelope(int code, const char *message, const char *request_id, const json_t *data,
		 char **ret_body, size_t *ret_len);

/* Parses an envelope from a response body: code, message (malloc'ed), and
 * data (a new reference, or NULL). -EINVAL when the body is not one. */
int gmt_envelope_parse(const char *body, size_t len, int *ret_code, char **ret_message,
		       json_t **ret_data);

#endif
