/*
 * envelope.h: the response body of PROFILE.md §6:
 *   {"code": 0, "message": "OK", "requestId": "...", "data": {...}}
 * and unique request/task identifiers. Uses jansson.
 */
#ifndef CHSM_PROTO_ENVELOPE_H
#define CHSM_PROTO_ENVELOPE_H

#include <jansson.h>
#include <stddef.h>

/* Size of the buffers that receive request and task IDs. */
#define GMT_ID_SIZE 32

/* Writes a request ID, "req-" followed by 24 random lowercase hex digits
 * (96 bits from crypto_random, drawn for 64 IDs at a time per thread;
 * a fork empties the forking thread's pool in the child), NUL-terminated,
 * into out. Returns 0 or the
 * error of crypto_random. */
int gmt_new_request_id(char out[GMT_ID_SIZE]);
/* Writes a task ID, "task-" followed by 24 random lowercase hex digits, as
 * gmt_new_request_id. */
int gmt_new_task_id(char out[GMT_ID_SIZE]);

/* Serialises an envelope, members in the order code, message, requestId,
 * data. data may be NULL (omitted); it is not stolen or changed. message NULL
 * means the code's standard message (gmt_code_message). Returns 0 and sets
 * *ret_body (malloc'ed compact JSON, no trailing newline) and *ret_len;
 * -EINVAL for a negative code, a NULL request_id, a message that is not
 * UTF-8, data that is not an object, or data with a code other than GMT_OK
 * (the profile omits data on errors); -ENOMEM. */
int gmt_envelope(int code, const char *message, const char *request_id, const json_t *data,
		 char **ret_body, size_t *ret_len);

/* The same with data given as the text of a JSON object (data_text,
 * data_len bytes; jsonw.h writes it), spliced in as it is: the caller
 * guarantees it is one compact JSON object. Only for GMT_OK answers:
 * -EINVAL for any other code, an empty data_text, or what gmt_envelope
 * refuses; -ENOMEM. */
int gmt_envelope_text(int code, const char *message, const char *request_id,
		      const char *data_text, size_t data_len, char **ret_body, size_t *ret_len);

/* Parses an envelope from a response body: code, message (malloc'ed), and
 * data (a new reference, or NULL when absent). Strict: the body is one JSON
 * object without duplicate keys, "code" an integer in 0..INT_MAX, "message"
 * a string without NUL, "requestId" a string when present, "data" an object
 * when present; other members are ignored. ret_message and ret_data may be
 * NULL when not wanted. Returns 0, -EINVAL when the body is not an envelope,
 * or -ENOMEM; the out-parameters are set only on success. */
int gmt_envelope_parse(const char *body, size_t len, int *ret_code, char **ret_message,
		       json_t **ret_data);
/* The same, also giving requestId (malloc'ed, NULL when absent) when
 * ret_request_id is not NULL: one parse of the body for all of them. */
int gmt_envelope_parse_id(const char *body, size_t len, int *ret_code, char **ret_message,
			  char **ret_request_id, json_t **ret_data);

#endif
