/*
 * task.c: following an asynchronous task (PROFILE.md §7) to its end by
 * polling GET /tasks/{taskId}.
 *
 * Guarantees: polls start 50 ms apart and the interval doubles up to 1 s,
 * so short tasks finish fast and long ones cost the CHSM one request a
 * second. Only transport failures, answers 5003 (the CHSM is rebooting,
 * upgrading or restoring) and answers 2004 are retried; a response whose
 * device signature fails is never retried nor accepted. A 2004 (nonce
 * replayed) to a poll means the CHSM saw that very request before: libcurl
 * resends a request, unchanged, when a kept-alive connection dies before
 * any answer, and a busy CHSM may have closed it after checking the nonce.
 * A poll is a GET, so the next one (with a new nonce) is safe. The wait never exceeds its timeout
 * by more than one HTTP exchange.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "client/client_internal.h"
#include "common/util.h"
#include "proto/codes.h"

#define POLL_FIRST_MS 50
#define POLL_MAX_MS   1000
#define TASK_ID_MAX   64

static void sleep_ms(long ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* The task's state when resp is a successful answer holding a task object
 * (copied into state), else false. */
static bool task_state(const struct chsm_client_response *resp, char *state, size_t size)
{
	if (resp->code != 0 || !resp->data)
		return false;
	json_t *task = json_loads(resp->data, 0, NULL);
	const char *s = json_string_value(json_object_get(task, "state"));
	bool ok = s && strlen(s) < size;
	if (ok)
		strcpy(state, s);
	json_decref(task);
	return ok;
}

int chsm_client_wait_task(chsm_client *cl, const char *task_id, long timeout_ms,
			  chsm_client_progress_fn *progress, void *userdata,
			  struct chsm_client_response *ret)
{
	char path[sizeof("/tasks/") + TASK_ID_MAX];
	size_t idlen = task_id ? strlen(task_id) : 0;
	int64_t start = chsm_monotonic_ms();
	long interval = POLL_FIRST_MS;

	if (!cl || !ret || idlen == 0 || idlen > TASK_ID_MAX ||
	    !chsm_str_charset(task_id, idlen, "_.-"))
		return -EINVAL;
	snprintf(path, sizeof(path), "/tasks/%s", task_id);
	for (;;) {
		struct chsm_client_response resp = {0};
		char state[32];
		int r = chsm_client_request(cl, "GET", path, NULL, NULL, &resp);
		if (r < 0 && r != CHSM_CLIENT_E_TRANSPORT)
			return r;
		if (r == 0 && resp.code != GMT_E_UNAVAILABLE && resp.code != GMT_E_NONCE_REPLAYED) {
			if (!task_state(&resp, state, sizeof(state))) {
				*ret = resp; /* an error answer ends the wait */
				return 0;
			}
			if (progress)
				progress(userdata, state, resp.data);
			if (strcmp(state, "succeeded") == 0 || strcmp(state, "failed") == 0) {
				*ret = resp;
				return 0;
			}
		}
		chsm_client_response_free(&resp);
		int64_t elapsed = chsm_monotonic_ms() - start;
		if (timeout_ms > 0 && elapsed >= timeout_ms) {
			client_set_error(cl, "task %s did not end within %ld ms", task_id,
					 timeout_ms);
			return -ETIMEDOUT;
		}
		long wait = interval;
		if (timeout_ms > 0 && wait > timeout_ms - elapsed)
			wait = (long)(timeout_ms - elapsed);
		sleep_ms(wait);
		interval = interval * 2 > POLL_MAX_MS ? POLL_MAX_MS : interval * 2;
	}
}
